//! Which format a file is in, from its name and its first content line.
//!
//! Names are checked first because they are the registries' own
//! conventions (`delegated-…`, `….zone`, `.mmdb`); content decides the rest:
//! RIR records are `|`-separated, MaxMind blocks start with a `network`
//! header, CIDR lists have a `/` in their first field, IP2Location quotes
//! four fields, and anything else with three fields is range CSV.

use std::fmt;

use super::{maxmind_csv, text};

/// The formats geoblock reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// `start,end,cc` range CSV: DB-IP Lite, ip-location-db, Tor/IPFire geoip.
    Csv,
    /// IP2Location LITE DB1 (IPv4 or IPv6 file).
    Ip2Location,
    /// MaxMind DB: GeoLite2/GeoIP2 Country, DB-IP MMDB.
    Mmdb,
    /// MaxMind GeoLite2/GeoIP2 Country CSV (zip or folder).
    MaxmindCsv,
    /// RIR delegated-extended statistics.
    Rir,
    /// One CIDR per line, country in a column or the file name.
    Cidr,
}

impl Format {
    pub const ALL: [Format; 6] =
        [Format::Csv, Format::Ip2Location, Format::Mmdb, Format::MaxmindCsv, Format::Rir, Format::Cidr];

    /// The name `--format` takes.
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Ip2Location => "ip2location",
            Format::Mmdb => "mmdb",
            Format::MaxmindCsv => "maxmind-csv",
            Format::Rir => "rir",
            Format::Cidr => "cidr",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Format, String> {
        Format::ALL.into_iter().find(|f| f.name().eq_ignore_ascii_case(s)).ok_or_else(|| {
            let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
            format!("unknown format '{s}' (one of {})", names.join(", "))
        })
    }
}

/// The MMDB metadata marker; it sits in the last 128 KiB of every database.
pub(crate) const MMDB_MARKER: &[u8] = b"\xab\xcd\xefMaxMind.com";

/// The format of one file, or `None` if neither name nor content tell.
pub fn detect(name: &str, bytes: &[u8]) -> Option<Format> {
    by_name(name).or_else(|| by_content(bytes))
}

fn by_name(name: &str) -> Option<Format> {
    let lower = name.to_ascii_lowercase();
    let base = lower.rsplit('/').next().unwrap_or(&lower);
    if base.ends_with(".mmdb") {
        Some(Format::Mmdb)
    } else if base.starts_with("delegated-") {
        Some(Format::Rir)
    } else if base.ends_with(".zone") {
        Some(Format::Cidr)
    } else if base.starts_with("ip2location") {
        Some(Format::Ip2Location)
    } else if maxmind_csv::role(base).is_some() {
        Some(Format::MaxmindCsv)
    } else {
        None
    }
}

fn by_content(bytes: &[u8]) -> Option<Format> {
    let tail = &bytes[bytes.len().saturating_sub(128 * 1024)..];
    if tail.windows(MMDB_MARKER.len()).any(|w| w == MMDB_MARKER) {
        return Some(Format::Mmdb);
    }
    let (_, line) = text::lines(bytes).next()?;
    // Enough to tell 3 fields from 4 and more, however long the line.
    let fields: Vec<&[u8]> = text::fields(line, b',').take(5).collect();
    let quoted = line.starts_with(b"\"") && line.ends_with(b"\"");
    if line.contains(&b'|') {
        Some(Format::Rir)
    } else if fields[0].eq_ignore_ascii_case(b"network") {
        Some(Format::MaxmindCsv)
    } else if fields[0].contains(&b'/') {
        Some(Format::Cidr)
    } else if quoted && fields.len() == 4 {
        Some(Format::Ip2Location)
    } else if fields.len() == 3 {
        Some(Format::Csv)
    } else {
        None
    }
}

/// A release date in a file name: `2026-06` (DB-IP) or `20260101` (MaxMind).
pub fn date_in_name(name: &str) -> Option<String> {
    let b = name.as_bytes();
    let digits = |at: usize, n: usize| b.get(at..at + n).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let plausible = |at: usize| b.get(at..at + 2).is_some_and(|y| y == b"19" || y == b"20");
    let boundary = |at: usize| at == 0 || !b[at - 1].is_ascii_digit();
    (0..b.len()).filter(|&i| boundary(i) && plausible(i) && digits(i, 4)).find_map(|i| {
        if digits(i, 8) && !digits(i + 8, 1) {
            Some(format!("{}-{}-{}", &name[i..i + 4], &name[i + 4..i + 6], &name[i + 6..i + 8]))
        } else if b.get(i + 4) == Some(&b'-') && digits(i + 5, 2) {
            Some(name[i..i + 7].to_string())
        } else {
            None
        }
    })
}
