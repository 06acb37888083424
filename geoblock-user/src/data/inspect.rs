//! What a data set holds, for `geoblock data inspect` and `convert`: the
//! operator's check before loading a new source.

use std::{
    collections::BTreeMap,
    io::{self, Write},
};

use geoblock_common::CountryId;
use serde::Serialize;

use super::{
    asn::{Asn, AsnData},
    CodeCounts, Loaded,
};
use crate::{
    country,
    data::table::{PerFamily, Table},
};

#[derive(Debug, Serialize)]
pub struct Report {
    pub sources: Vec<SourceReport>,
    /// The combined table.
    pub prefixes: PerFamily<usize>,
    pub addresses: PerFamily<u128>,
    /// Countries with prefixes, most first (all of `--country`, or the top N).
    pub countries: Vec<CountryReport>,
    pub countries_total: usize,
    /// Prefix length → count.
    pub prefix_lengths: PerFamily<BTreeMap<u8, usize>>,
}

/// What is said of every source, of countries or ASes.
#[derive(Debug, Serialize)]
pub struct SourceSummary {
    pub origin: String,
    pub formats: Vec<String>,
    pub date: Option<String>,
    /// Rows with a country (an AS), as the source has them.
    pub ranges: PerFamily<usize>,
    /// The exact prefixes of this source alone.
    pub prefixes: PerFamily<usize>,
}

impl SourceSummary {
    fn render(&self) -> String {
        let date = self.date.as_deref().unwrap_or("not given");
        format!(
            "{}\n  format {}, data date {date}\n  ranges   {:>9} IPv4 {:>9} IPv6\n  prefixes {:>9} IPv4 {:>9} IPv6\n",
            self.origin,
            self.formats.join("+"),
            self.ranges.v4,
            self.ranges.v6,
            self.prefixes.v4,
            self.prefixes.v6
        )
    }
}

#[derive(Debug, Serialize)]
pub struct SourceReport {
    #[serde(flatten)]
    pub summary: SourceSummary,
    /// Rows under reserved codes read as their country, and under placeholders.
    pub codes: CodeCounts,
    /// Where an MMDB's records keep the country.
    pub country_field: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct CountryReport {
    pub country: String,
    pub prefixes: PerFamily<usize>,
    pub addresses: PerFamily<u128>,
}

/// The report; `only` (if not empty) picks countries, else the `top` largest.
pub fn report(loaded: &Loaded, top: usize, only: &[CountryId]) -> Report {
    let table = &loaded.table;
    let mut by_country: BTreeMap<CountryId, CountryReport> = BTreeMap::new();
    let mut lengths = PerFamily::<BTreeMap<u8, usize>>::default();
    for &(net, c) in &table.v4 {
        let e = entry(&mut by_country, c);
        e.prefixes.v4 += 1;
        e.addresses.v4 += 1u128 << (32 - net.prefix());
        *lengths.v4.entry(net.prefix()).or_default() += 1;
    }
    for &(net, c) in &table.v6 {
        let e = entry(&mut by_country, c);
        e.prefixes.v6 += 1;
        e.addresses.v6 = e.addresses.v6.saturating_add(size_v6(net.prefix()));
        *lengths.v6.entry(net.prefix()).or_default() += 1;
    }
    let countries_total = by_country.len();
    let mut countries: Vec<CountryReport> = match only.is_empty() {
        true => by_country.into_values().collect(),
        false => by_country.into_iter().filter(|(c, _)| only.contains(c)).map(|(_, r)| r).collect(),
    };
    countries.sort_by_key(|r| std::cmp::Reverse(r.prefixes.v4 + r.prefixes.v6));
    if only.is_empty() {
        countries.truncate(top);
    }
    Report {
        sources: loaded.sources.iter().map(source_report).collect(),
        prefixes: PerFamily { v4: table.v4.len(), v6: table.v6.len() },
        addresses: addresses(table),
        countries,
        countries_total,
        prefix_lengths: lengths,
    }
}

fn entry(by_country: &mut BTreeMap<CountryId, CountryReport>, c: CountryId) -> &mut CountryReport {
    by_country.entry(c).or_insert_with(|| CountryReport {
        country: country::code(c).to_string(),
        prefixes: PerFamily::default(),
        addresses: PerFamily::default(),
    })
}

fn size_v6(prefix: u8) -> u128 {
    1u128.checked_shl(128 - u32::from(prefix)).unwrap_or(u128::MAX)
}

fn source_report(info: &super::SourceInfo) -> SourceReport {
    SourceReport {
        summary: SourceSummary {
            origin: info.origin.clone(),
            formats: info.formats.iter().map(|f| f.name().to_string()).collect(),
            date: info.date.clone(),
            ranges: info.ranges,
            prefixes: info.prefixes,
        },
        codes: info.codes,
        country_field: info.country_field.clone(),
    }
}

/// The report as text for a terminal.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    for s in &r.sources {
        out += &s.summary.render();
        if let Some(field) = &s.country_field {
            out += &format!("  country  from the field {field}\n");
        }
        if s.codes != CodeCounts::default() {
            out += &format!("  codes    {}\n", s.codes);
        }
    }
    out += &combined(r.sources.len(), r.prefixes, r.addresses);
    out += &format!("countries: {} (shown: {})\n", r.countries_total, r.countries.len());
    out += "  CC  IPv4 prefixes  IPv6 prefixes  IPv4 addresses\n";
    for c in &r.countries {
        out += &format!("  {}  {:>13}  {:>13}  {:>14}\n", c.country, c.prefixes.v4, c.prefixes.v6, c.addresses.v4);
    }
    for (family, lengths) in [("IPv4", &r.prefix_lengths.v4), ("IPv6", &r.prefix_lengths.v6)] {
        let cells: Vec<String> = lengths.iter().map(|(l, n)| format!("/{l}:{n}")).collect();
        out +=
            &format!("{family} prefix lengths: {}\n", if cells.is_empty() { "none".into() } else { cells.join(" ") });
    }
    out
}

/// What AS data holds (`geoblock data inspect --asn`).
#[derive(Debug, Serialize)]
pub struct AsnReport {
    pub sources: Vec<AsnSourceReport>,
    /// The combined table.
    pub prefixes: PerFamily<usize>,
    pub addresses: PerFamily<u128>,
    pub ases: usize,
    /// The ASes with the most IPv4 addresses, most first.
    pub largest: Vec<AsReport>,
}

#[derive(Debug, Serialize)]
pub struct AsnSourceReport {
    #[serde(flatten)]
    pub summary: SourceSummary,
    pub ases: usize,
}

#[derive(Debug, Serialize)]
pub struct AsReport {
    pub asn: Asn,
    pub org: Option<String>,
    pub prefixes: PerFamily<usize>,
    pub addresses: PerFamily<u128>,
}

/// The report of AS data, with its `top` largest ASes.
pub fn asn_report(data: &AsnData, top: usize) -> AsnReport {
    let mut by_as: BTreeMap<Asn, AsReport> = BTreeMap::new();
    for &(net, asn) in &data.table.v4 {
        let e = as_entry(&mut by_as, data, asn);
        e.prefixes.v4 += 1;
        e.addresses.v4 += 1u128 << (32 - net.prefix());
    }
    for &(net, asn) in &data.table.v6 {
        let e = as_entry(&mut by_as, data, asn);
        e.prefixes.v6 += 1;
        e.addresses.v6 = e.addresses.v6.saturating_add(size_v6(net.prefix()));
    }
    let ases = by_as.len();
    let mut largest: Vec<AsReport> = by_as.into_values().collect();
    largest.sort_by_key(|r| std::cmp::Reverse((r.addresses.v4, r.addresses.v6)));
    largest.truncate(top);
    let sources = data.sources.iter().map(|info| AsnSourceReport {
        summary: SourceSummary {
            origin: info.origin.clone(),
            formats: info.formats.iter().map(ToString::to_string).collect(),
            date: info.date.clone(),
            ranges: info.ranges,
            prefixes: info.prefixes,
        },
        ases: info.ases,
    });
    AsnReport {
        sources: sources.collect(),
        prefixes: data.table.counts(),
        addresses: addresses(&data.table),
        ases,
        largest,
    }
}

fn as_entry<'a>(by_as: &'a mut BTreeMap<Asn, AsReport>, data: &AsnData, asn: Asn) -> &'a mut AsReport {
    by_as.entry(asn).or_insert_with(|| AsReport {
        asn,
        org: data.orgs.get(&asn).cloned(),
        prefixes: PerFamily::default(),
        addresses: PerFamily::default(),
    })
}

/// Addresses a table covers, per family (IPv6 saturating at u128::MAX).
fn addresses<L>(table: &Table<L>) -> PerFamily<u128> {
    PerFamily {
        v4: table.v4.iter().map(|(n, _)| 1u128 << (32 - n.prefix())).sum(),
        v6: table.v6.iter().fold(0u128, |sum, (n, _)| sum.saturating_add(size_v6(n.prefix()))),
    }
}

/// The AS report as text for a terminal.
pub fn render_asn(r: &AsnReport) -> String {
    let mut out = String::new();
    for s in &r.sources {
        out += &s.summary.render();
        out += &format!("  ASes     {:>9}\n", s.ases);
    }
    out += &combined(r.sources.len(), r.prefixes, r.addresses);
    out += &format!("autonomous systems: {} (shown: {}, most IPv4 addresses first)\n", r.ases, r.largest.len());
    out += "  AS            IPv4 prefixes  IPv6 prefixes  IPv4 addresses  organisation\n";
    for a in &r.largest {
        let org = a.org.as_deref().unwrap_or("-");
        out += &format!(
            "  {:<12}  {:>13}  {:>13}  {:>14}  {org}\n",
            format!("AS{}", a.asn),
            a.prefixes.v4,
            a.prefixes.v6,
            a.addresses.v4
        );
    }
    out
}

/// The combined prefixes (of several sources) and the addresses covered.
fn combined(sources: usize, prefixes: PerFamily<usize>, addresses: PerFamily<u128>) -> String {
    let mut out = String::new();
    if sources > 1 {
        out += &format!("combined (later sources win)\n  prefixes {:>9} IPv4 {:>9} IPv6\n", prefixes.v4, prefixes.v6);
    }
    out + &format!("addresses covered: {} IPv4, {} IPv6\n", addresses.v4, addresses.v6)
}

/// The table restricted to `countries` (all of it if empty).
pub fn only(table: Table, countries: &[CountryId]) -> Table {
    if countries.is_empty() {
        return table;
    }
    Table {
        v4: table.v4.into_iter().filter(|(_, c)| countries.contains(c)).collect(),
        v6: table.v6.into_iter().filter(|(_, c)| countries.contains(c)).collect(),
    }
}

/// `PREFIX CC` lines, the exact prefixes geoblock loads (a CIDR list it reads back).
pub fn write_cidr(out: &mut impl Write, table: &Table) -> io::Result<()> {
    for (net, c) in &table.v4 {
        writeln!(out, "{net} {}", country::code(*c))?;
    }
    for (net, c) in &table.v6 {
        writeln!(out, "{net} {}", country::code(*c))?;
    }
    out.flush()
}

/// `start,end,cc` maximal ranges (range CSV, read back the same).
pub fn write_csv(out: &mut impl Write, table: &Table) -> io::Result<()> {
    let ranges = table.ranges();
    for r in &ranges.v4 {
        writeln!(out, "{},{},{}", r.start, r.end, country::code(r.country))?;
    }
    for r in &ranges.v6 {
        writeln!(out, "{},{},{}", r.start, r.end, country::code(r.country))?;
    }
    out.flush()
}

/// The process's peak resident set so far (Linux `VmHWM`), for `--timing`.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{load, Options};

    fn fixture(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
    }

    #[test]
    fn reports_sources_countries_and_lengths() {
        let paths = [fixture("cn-aggregated.zone"), fixture("blocklist.cidr")];
        let loaded = load(&paths, &Options::default()).unwrap();
        let r = report(&loaded, 2, &[]);
        assert_eq!(r.sources.len(), 2);
        assert_eq!(r.sources[0].summary.formats, ["cidr"]);
        assert_eq!((r.sources[0].summary.ranges.v4, r.sources[0].summary.prefixes.v4), (8, 8));
        assert_eq!(r.countries_total, 5);
        assert_eq!((r.countries.len(), r.countries[0].country.as_str()), (2, "CN"));
        assert_eq!(r.prefix_lengths.v4[&24], 2);
        // cn-aggregated.zone, then the IPv4 lines of blocklist.cidr.
        let cn = 256 + 512 + 2048 + 8192 + 256 + 512 + 1024 + (1 << 22);
        assert_eq!(r.addresses.v4, cn + 65536 + 16384 + 1024);
        let only = report(&loaded, 2, &[country::parse("RU").unwrap()]);
        assert_eq!(only.countries.len(), 1);
        let ru = super::only(loaded.table.clone(), &[country::parse("RU").unwrap()]);
        assert_eq!((ru.v4.len(), ru.v6.len()), (1, 0));
        let text = render(&r);
        assert!(
            text.contains("format cidr, data date not given") && text.contains("IPv4 prefix lengths: /10:1"),
            "{text}"
        );
        serde_json::to_string(&r).unwrap();
    }

    #[test]
    fn converted_output_reads_back_to_the_same_table() {
        let loaded = load(&[fixture("dbip-country-lite-2026-06.csv")], &Options::default()).unwrap();
        let dir = std::env::temp_dir().join(format!("geoblock-convert-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cidr, csv) = (dir.join("all.cidr"), dir.join("all.csv"));
        let mut bytes = Vec::new();
        write_cidr(&mut bytes, &loaded.table).unwrap();
        std::fs::write(&cidr, bytes).unwrap();
        let mut bytes = Vec::new();
        write_csv(&mut bytes, &loaded.table).unwrap();
        std::fs::write(&csv, bytes).unwrap();
        for path in [cidr, csv] {
            assert_eq!(load(&[&path], &Options::default()).unwrap().table, loaded.table, "{}", path.display());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
