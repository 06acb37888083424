//! `geoblock data`: pack, inspect and convert GeoIP data sets.

use std::{
    io::{self, Write as _},
    path::PathBuf,
};

use anyhow::{Context as _, Result};
use clap::{Subcommand, ValueEnum};
use geoblock::{
    data::{
        self,
        embedded::{self, Meta},
        inspect, DataSources, Format, Options,
    },
    protocol::Versioned,
};
use geoblock_common::CountryId;

use crate::args::{parse_country, ReadArgs};

#[derive(Subcommand)]
pub enum DataCommand {
    /// Pack `start,end,cc` CSV files into geoblock's compact format (how the embedded data is made).
    Pack {
        /// The packed file to write.
        #[arg(long)]
        out: PathBuf,
        /// The data's release, e.g. 2026-06.
        #[arg(long)]
        release: String,
        #[arg(long, default_value = "dbip-country")]
        name: String,
        /// The credit the data's licence asks for.
        #[arg(long, default_value = "IP Geolocation by DB-IP")]
        attribution: String,
        #[arg(required = true)]
        csv: Vec<PathBuf>,
    },
    /// What sources hold: format, date, ranges and prefixes per family, countries, prefix lengths.
    Inspect {
        #[arg(required = true)]
        sources: Vec<String>,
        #[command(flatten)]
        read: ReadArgs,
        /// Countries listed, most prefixes first.
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// Only these countries (comma-separated ISO codes).
        #[arg(long, value_delimiter = ',', value_parser = parse_country)]
        country: Vec<CountryId>,
        #[arg(long)]
        json: bool,
        /// Also print the wall time and peak memory of reading and converting.
        #[arg(long)]
        timing: bool,
        /// Read the sources as AS data (what --asn-data takes): prefixes and ASes per source,
        /// the largest ASes (--top).
        #[arg(long)]
        asn: bool,
    },
    /// Print the exact prefixes (or ranges) geoblock would load from the sources.
    Convert {
        #[arg(required = true)]
        sources: Vec<String>,
        #[command(flatten)]
        read: ReadArgs,
        /// `cidr`: "PREFIX CC" lines; `csv`: "start,end,cc" maximal ranges; `mmdb`: a MaxMind DB.
        /// All read back to the same table.
        #[arg(long, value_enum)]
        to: ConvertTo,
        /// Only these countries (comma-separated ISO codes).
        #[arg(long, value_delimiter = ',', value_parser = parse_country)]
        country: Vec<CountryId>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ConvertTo {
    Cidr,
    Csv,
    /// A MaxMind DB (`country.iso_code`), e.g. to benchmark or test MMDB input.
    Mmdb,
}

pub fn data(command: DataCommand) -> Result<()> {
    match command {
        DataCommand::Pack { out, release, name, attribution, csv } => {
            pack(&out, Meta { attribution, name, version: release }, &csv)
        }
        DataCommand::Inspect { sources, read, top, country: _, json, timing, asn: true } => {
            inspect_asn(sources, &read, top, json, timing)
        }
        DataCommand::Inspect { sources, read, top, country, json, timing, asn: false } => {
            inspect_sources(sources, &read, top, &country, json, timing)
        }
        DataCommand::Convert { sources, read, to, country } => convert(sources, &read, to, &country),
    }
}

/// Packs range CSV files, read as the daemon reads them, into the embedded format.
fn pack(out: &std::path::Path, meta: Meta, csv: &[PathBuf]) -> Result<()> {
    let table = data::load(csv, &Options { format: Some(Format::Csv), ..Options::default() })?.table;
    std::fs::write(out, embedded::pack(&meta, &table)).with_context(|| format!("writing {}", out.display()))?;
    let counts = table.counts();
    println!("{}: {} IPv4 and {} IPv6 prefixes, {meta}", out.display(), counts.v4, counts.v6);
    Ok(())
}

/// `inspect --asn`: the AS data the sources make.
fn inspect_asn(sources: Vec<String>, read: &ReadArgs, top: usize, json: bool, timing: bool) -> Result<()> {
    let started = std::time::Instant::now();
    let data = DataSources { asn: sources, ..read.sources(vec![]) }.load_asn()?;
    let report = inspect::asn_report(&data, top);
    let printed = match json {
        true => format!("{}\n", Versioned::new(&report).pretty()),
        false => inspect::render_asn(&report),
    };
    print_report(&printed, started.elapsed(), timing);
    Ok(())
}

/// A report, and with `timing` how long reading took and at what memory.
fn print_report(report: &str, elapsed: std::time::Duration, timing: bool) {
    print!("{report}");
    if timing {
        let rss = inspect::peak_rss_mib().map_or("unknown".into(), |m| format!("{m:.0} MiB"));
        eprintln!("read + exact conversion: {:.3} s wall, peak RSS {rss}", elapsed.as_secs_f64());
    }
}

fn inspect_sources(
    sources: Vec<String>,
    read: &ReadArgs,
    top: usize,
    countries: &[CountryId],
    json: bool,
    timing: bool,
) -> Result<()> {
    let started = std::time::Instant::now();
    let loaded = read.sources(sources).load()?;
    let elapsed = started.elapsed();
    let report = inspect::report(&loaded, top, countries);
    let printed = match json {
        true => format!("{}\n", Versioned::new(&report).pretty()),
        false => inspect::render(&report),
    };
    print_report(&printed, elapsed, timing);
    Ok(())
}

fn convert(sources: Vec<String>, read: &ReadArgs, to: ConvertTo, countries: &[CountryId]) -> Result<()> {
    let table = inspect::only(read.sources(sources).load()?.table, countries);
    let mut out = io::BufWriter::new(io::stdout().lock());
    match to {
        ConvertTo::Cidr => inspect::write_cidr(&mut out, &table)?,
        ConvertTo::Csv => inspect::write_csv(&mut out, &table)?,
        ConvertTo::Mmdb => {
            let epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
            out.write_all(&data::mmdb::write(&table, &["country", "iso_code"], "geoblock-Country", epoch))?;
            out.flush()?;
        }
    }
    Ok(())
}
