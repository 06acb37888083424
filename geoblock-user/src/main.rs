//! The `geoblock` command: the daemon (`run`) and the tools around it.

use std::{
    collections::BTreeSet,
    io::{self, BufRead as _, Write as _},
    net::IpAddr,
    path::PathBuf,
    process::ExitCode,
};

use anyhow::{Context as _, Result};
use aya::programs::XdpMode;
use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand, ValueEnum};
use geoblock::{
    bpffs::DEFAULT_STATE_DIR,
    country,
    dataset::{self, Meta},
    parse,
    daemon::{self, RunOptions},
    policy::{Mode, Policy},
    prefix::Table,
    source::{self, inspect, CountryFields, Format, Loaded},
    stats::Stats,
};
use geoblock_common::{Backend, CountryId};
use ipnetwork::IpNetwork;

const ATTRIBUTION: &str = "Embedded country data: IP Geolocation by DB-IP (https://db-ip.com), CC BY 4.0.";

#[derive(Parser)]
#[command(name = "geoblock", version, about = "Drop traffic by country in XDP, at line rate.", after_help = ATTRIBUTION)]
struct Cli {
    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load the XDP program, attach it and enforce the policy until SIGINT/SIGTERM.
    Run(RunArgs),
    /// Per-country counters of a running `geoblock run`.
    Stats {
        /// Print the documented JSON schema instead of a table.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Country and prefix of addresses ('-' reads them from stdin), from the data `run` would load.
    Lookup {
        #[arg(required = true)]
        addresses: Vec<String>,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Work with GeoIP data sets.
    #[command(subcommand)]
    Data(DataCommand),
}

#[derive(Subcommand)]
enum DataCommand {
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
        sources: Vec<PathBuf>,
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
    },
    /// Print the exact prefixes (or ranges) geoblock would load from the sources.
    Convert {
        #[arg(required = true)]
        sources: Vec<PathBuf>,
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
enum ConvertTo {
    Cidr,
    Csv,
    /// A MaxMind DB (`country.iso_code`), e.g. to benchmark or test MMDB input.
    Mmdb,
}

/// How sources are read.
#[derive(Args)]
struct ReadArgs {
    /// The format of every source: csv, ip2location, mmdb, maxmind-csv, rir, cidr
    /// (default: detected from each file's name and content).
    #[arg(long, value_parser = parse_format)]
    format: Option<Format>,
    /// Where MMDB records keep the country code: dotted paths, tried in order.
    #[arg(long, default_value = "country.iso_code,registered_country.iso_code")]
    mmdb_field: String,
    /// Where https:// and http:// sources are downloaded to (and kept for the next start).
    #[arg(long, default_value = "/var/cache/geoblock")]
    cache_dir: PathBuf,
}

impl ReadArgs {
    fn options(&self) -> source::Options {
        source::Options { format: self.format, mmdb_fields: CountryFields::parse(&self.mmdb_field) }
    }

    /// Reads the sources, downloading URLs first.
    fn load(&self, sources: &[PathBuf]) -> Result<Loaded> {
        let mut paths = Vec::with_capacity(sources.len());
        for s in sources {
            let config = source::fetch::FetchConfig::default();
            paths.push(source::fetch::local_path(&s.to_string_lossy(), &self.cache_dir, config)?);
        }
        Ok(source::load(&paths, &self.options())?)
    }
}

#[derive(Args)]
struct RunArgs {
    /// Interface to attach to (repeat for several).
    #[arg(long = "iface", required = true)]
    interfaces: Vec<String>,
    /// Deny-list: drop these countries (comma-separated ISO codes).
    #[arg(long, value_delimiter = ',', value_parser = parse_country, conflicts_with = "allow", required_unless_present = "allow")]
    block: Vec<CountryId>,
    /// Allow-list: drop every country but these.
    #[arg(long, value_delimiter = ',', value_parser = parse_country)]
    allow: Vec<CountryId>,
    /// CIDRs that always pass, checked before the country (e.g. a management network).
    #[arg(long = "except", value_delimiter = ',')]
    exceptions: Vec<IpNetwork>,
    /// Count what would be dropped, drop nothing.
    #[arg(long)]
    monitor: bool,
    /// Also drop addresses no country claims (private, unassigned...).
    #[arg(long)]
    block_unknown: bool,
    #[arg(long, value_enum, default_value_t = XdpModeArg::Auto)]
    xdp_mode: XdpModeArg,
    /// Address → country structure: `trie` (fast) or the kernel's `lpm` trie (reference).
    #[arg(long, value_enum, default_value_t = LookupArg::Trie)]
    lookup: LookupArg,
    /// bpffs directory where the counters are pinned for `geoblock stats`.
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    #[command(flatten)]
    data: DataArgs,
}

#[derive(Args)]
struct DataArgs {
    /// GeoIP data instead of the embedded DB-IP data: range CSV (DB-IP, Tor geoip), IP2Location
    /// DB1, MMDB, MaxMind CSV (zip or folder), RIR delegated stats or CIDR lists, plain or
    /// .gz/.xz/.zip, or an https:// URL of one. Repeat to combine: a later source wins where it
    /// gives a country.
    #[arg(long)]
    data: Vec<PathBuf>,
    #[command(flatten)]
    read: ReadArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum LookupArg {
    Trie,
    Lpm,
}

#[derive(Clone, Copy, ValueEnum)]
enum XdpModeArg {
    /// Native if the driver supports it, else generic.
    Auto,
    Native,
    Skb,
}

fn main() -> ExitCode {
    let cli = match parse_cli() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    init_logging(cli.verbose);
    match execute(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("geoblock: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn execute(command: Command) -> Result<()> {
    match command {
        Command::Run(args) => run(args),
        Command::Stats { json, state_dir } => {
            let stats = Stats::read_pinned(&state_dir)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                print!("{}", stats.render());
            }
            Ok(())
        }
        Command::Lookup { addresses, data } => lookup(&addresses, &data),
        Command::Data(DataCommand::Pack { out, release, name, attribution, csv }) => {
            let paths: Vec<&std::path::Path> = csv.iter().map(PathBuf::as_path).collect();
            let table = parse::load(&paths)?;
            let meta = Meta { attribution, name, version: release };
            std::fs::write(&out, dataset::pack(&meta, &table))
                .with_context(|| format!("writing {}", out.display()))?;
            let counts = table.counts();
            println!("{}: {} IPv4 and {} IPv6 prefixes, {meta}", out.display(), counts.v4, counts.v6);
            Ok(())
        }
        Command::Data(DataCommand::Inspect { sources, read, top, country, json, timing }) => {
            let started = std::time::Instant::now();
            let loaded = read.load(&sources)?;
            let elapsed = started.elapsed();
            let report = inspect::report(&loaded, top, &country);
            match json {
                true => println!("{}", serde_json::to_string_pretty(&report)?),
                false => print!("{}", inspect::render(&report)),
            }
            if timing {
                let rss = inspect::peak_rss_mib().map_or("unknown".into(), |m| format!("{m:.0} MiB"));
                eprintln!("read + exact conversion: {:.3} s wall, peak RSS {rss}", elapsed.as_secs_f64());
            }
            Ok(())
        }
        Command::Data(DataCommand::Convert { sources, read, to, country }) => {
            let table = read.load(&sources)?.table;
            let keep = |c: &CountryId| country.is_empty() || country.contains(c);
            let mut out = io::BufWriter::new(io::stdout().lock());
            match to {
                ConvertTo::Cidr => inspect::write_cidr(&mut out, &table, keep)?,
                ConvertTo::Csv => inspect::write_csv(&mut out, &table, keep)?,
                ConvertTo::Mmdb => {
                    let table = Table {
                        v4: table.v4.into_iter().filter(|(_, c)| keep(c)).collect(),
                        v6: table.v6.into_iter().filter(|(_, c)| keep(c)).collect(),
                    };
                    let epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
                    out.write_all(&source::mmdb::write(&table, &["country", "iso_code"], "geoblock-Country", epoch))?;
                }
            }
            Ok(())
        }
    }
}

/// `--version` names the embedded data set, as its licence asks.
fn parse_cli() -> Result<Cli, ExitCode> {
    let data = dataset::embedded_meta().map_or_else(|e| format!("embedded data unreadable: {e}"), |m| m.to_string());
    let version = format!("{}\n{data}, https://db-ip.com, CC BY 4.0", env!("CARGO_PKG_VERSION"));
    let parsed = Cli::command()
        .long_version(version)
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches));
    match parsed {
        Ok(cli) => Ok(cli),
        // A bad value (unknown country code, malformed CIDR) is an operator
        // error like any other: one `geoblock: ...` line, exit 1.
        Err(e) if e.kind() == clap::error::ErrorKind::ValueValidation => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            eprintln!("geoblock: {}", first.strip_prefix("error: ").unwrap_or(first));
            Err(ExitCode::FAILURE)
        }
        Err(e) => e.exit(),
    }
}

fn run(args: RunArgs) -> Result<()> {
    let (mode, countries) = match args.allow.is_empty() {
        true => (Mode::Deny, args.block),
        false => (Mode::Allow, args.allow),
    };
    let policy = Policy {
        mode,
        countries: countries.into_iter().collect::<BTreeSet<_>>(),
        monitor: args.monitor,
        block_unknown: args.block_unknown,
        exceptions: args.exceptions,
    };
    let table = load_table(&args.data)?;
    let opts = RunOptions {
        interfaces: args.interfaces,
        xdp_mode: match args.xdp_mode {
            XdpModeArg::Auto => XdpMode::Default,
            XdpModeArg::Native => XdpMode::Driver,
            XdpModeArg::Skb => XdpMode::Skb,
        },
        policy,
        state_dir: args.state_dir,
        backend: match args.lookup {
            LookupArg::Trie => Backend::Trie,
            LookupArg::Lpm => Backend::Lpm,
        },
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    Ok(runtime.block_on(daemon::run(opts, &table))?)
}

fn lookup(addresses: &[String], data: &DataArgs) -> Result<()> {
    let table = load_table(data)?;
    let answer = |text: &str| -> Result<()> {
        let ip: IpAddr = text.trim().parse().with_context(|| format!("'{text}' is not an IP address"))?;
        match table.lookup(ip) {
            Some((net, c)) => println!("{ip} {} {net}", country::code(c)),
            None => println!("{ip} - -"),
        }
        Ok(())
    };
    for text in addresses {
        if text == "-" {
            for line in io::stdin().lock().lines() {
                let line = line?;
                if !line.trim().is_empty() {
                    answer(&line)?;
                }
            }
        } else {
            answer(text)?;
        }
    }
    Ok(())
}

fn load_table(data: &DataArgs) -> Result<Table> {
    if data.data.is_empty() {
        return Ok(dataset::embedded()?);
    }
    let Loaded { table, .. } = data.read.load(&data.data)?;
    Ok(table)
}

fn parse_format(name: &str) -> Result<Format, String> {
    name.parse()
}

fn parse_country(code: &str) -> Result<CountryId, country::UnknownCountry> {
    country::parse(code)
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_target(false)
        .init();
}
