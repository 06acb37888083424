//! `start,end,country` CSV (DB-IP Lite, ip-location-db) → ranges → [`Table`].
//!
//! The format, one row per line:
//! - `start` and `end` are inclusive bounds, each an IPv4/IPv6 address as
//!   text (`1.0.0.0`, `2001:db8::`) or a decimal integer. v4 and v6 rows may
//!   be mixed in one file, but both bounds of a row are of one family.
//! - `country` is an ISO 3166-1 alpha-2 code ([`crate::country`]). `ZZ`, `-`
//!   (unknown) and the region placeholders `EU`, `AP` are "no country": such
//!   rows are checked but not loaded, so these addresses count as unknown.
//! - Blank lines and lines starting with `#` are skipped; CRLF and a UTF-8
//!   BOM are fine; fields may be padded with spaces or wrapped in double
//!   quotes. A first row whose `start` begins with a letter and holds no `:`
//!   or `.` is a header.
//!
//! Integers are ambiguous: `16777216` is 1.0.0.0 or ::100:0. ip-location-db
//! keeps the families apart (`…-ipv4-num.csv`, `…-ipv6-num.csv`), so the
//! family comes from [`Integers`]: [`load`] picks it from a file name that
//! contains `ipv4` or `ipv6`, and otherwise a row's integers are IPv6 only if
//! one of them exceeds `u32::MAX`.
//!
//! Every error names the source, the 1-based line and the field.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use geoblock_common::{CountryId, NO_COUNTRY};

use crate::{
    country,
    prefix::{Range, Ranges, Table, TableError},
};

/// Which family a decimal integer address belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Integers {
    V4,
    V6,
    /// Per row: IPv6 if any integer of the row exceeds `u32::MAX`, else IPv4.
    Auto,
}

impl Integers {
    /// The family an ip-location-db style file name implies.
    pub fn from_file_name(path: &Path) -> Integers {
        let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        match (name.contains("ipv4"), name.contains("ipv6")) {
            (true, false) => Integers::V4,
            (false, true) => Integers::V6,
            _ => Integers::Auto,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("{origin}:{line}: field '{field}': {problem}")]
    Field { origin: String, line: usize, field: Field, problem: String },
    #[error("{origin}: {error}")]
    Read { origin: String, error: std::io::Error },
    /// Rows that each parse but do not fit together, with where they are.
    #[error("{at}: {error}")]
    Table { at: String, error: TableError },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Start,
    End,
    Country,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Start => "start",
            Field::End => "end",
            Field::Country => "country",
        })
    }
}

/// Reads and parses the files (as one data set) and builds the table; the
/// integer family of each file comes from its name.
pub fn load(paths: &[&Path]) -> Result<Table, ParseError> {
    let mut rows = Rows::default();
    let mut origins = Vec::with_capacity(paths.len());
    for (index, path) in paths.iter().enumerate() {
        let origin = path.display().to_string();
        let text = std::fs::read(path).map_err(|error| ParseError::Read { origin: origin.clone(), error })?;
        rows.parse(&text, &origin, index, Integers::from_file_name(path))?;
        origins.push(origin);
    }
    rows.into_table(&origins)
}

/// Parses one text (`origin` names it in errors, e.g. "embedded" or "stdin").
pub fn parse(text: &[u8], origin: &str, integers: Integers) -> Result<Table, ParseError> {
    let mut rows = Rows::default();
    rows.parse(text, origin, 0, integers)?;
    rows.into_table(&[origin.to_string()])
}

/// Where a row came from: index into the origins, 1-based line.
#[derive(Clone, Copy)]
struct Loc {
    origin: usize,
    line: usize,
}

/// Parsed ranges, each with its location for error messages.
#[derive(Default)]
struct Rows {
    ranges: Ranges,
    v4_locs: Vec<Loc>,
    v6_locs: Vec<Loc>,
}

/// One row's fields, trimmed, before interpretation.
struct RawRow<'a> {
    start: &'a [u8],
    end: &'a [u8],
    country: &'a [u8],
}

impl Rows {
    fn parse(&mut self, text: &[u8], origin: &str, index: usize, integers: Integers) -> Result<(), ParseError> {
        // Spreadsheet exports often start with a UTF-8 byte order mark.
        let text = text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(text);
        let mut seen_content = false;
        for (i, line) in text.split(|&b| b == b'\n').enumerate() {
            let line = line.trim_ascii();
            if line.is_empty() || line.starts_with(b"#") {
                continue;
            }
            let first = !std::mem::replace(&mut seen_content, true);
            let loc = Loc { origin: index, line: i + 1 };
            let fail =
                |field, problem| ParseError::Field { origin: origin.to_string(), line: loc.line, field, problem };
            let raw = split_row(line).map_err(|(f, p)| fail(f, p))?;
            if first && is_header(raw.start) {
                continue;
            }
            self.push(&raw, integers, loc).map_err(|(f, p)| fail(f, p))?;
        }
        Ok(())
    }

    fn push(&mut self, raw: &RawRow, integers: Integers, loc: Loc) -> Result<(), (Field, String)> {
        let pair = addresses(raw, integers)?;
        let country = country_of(raw.country)?;
        if country == NO_COUNTRY {
            return Ok(());
        }
        match pair {
            Pair::V4(start, end) => {
                self.ranges.v4.push(Range { start, end, country });
                self.v4_locs.push(loc);
            }
            Pair::V6(start, end) => {
                self.ranges.v6.push(Range { start, end, country });
                self.v6_locs.push(loc);
            }
        }
        Ok(())
    }

    fn into_table(self, origins: &[String]) -> Result<Table, ParseError> {
        // A copy, so a conflict can still be traced to its lines.
        Table::from_ranges(self.ranges.clone()).map_err(|error| {
            let rows = match &error {
                TableError::Reversed(r) => vec![*r],
                TableError::Overlap(a, b) => vec![*a, *b],
            };
            // In file order, which is how a reader will look for them.
            let mut locs: Vec<Loc> = rows.iter().filter_map(|r| self.locate(r)).collect();
            locs.sort_by_key(|l| (l.origin, l.line));
            let at: Vec<String> = locs.iter().map(|l| format!("{}:{}", origins[l.origin], l.line)).collect();
            let at = if at.is_empty() { origins.join(", ") } else { at.join(" and ") };
            ParseError::Table { at, error }
        })
    }

    /// Where the row equal to `r` is.
    fn locate(&self, r: &Range<IpAddr>) -> Option<Loc> {
        match r.start {
            IpAddr::V4(_) => position(&self.ranges.v4, r).map(|i| self.v4_locs[i]),
            IpAddr::V6(_) => position(&self.ranges.v6, r).map(|i| self.v6_locs[i]),
        }
    }
}

fn position<A: Copy + Into<IpAddr>>(rows: &[Range<A>], r: &Range<IpAddr>) -> Option<usize> {
    rows.iter().position(|x| x.start.into() == r.start && x.end.into() == r.end && x.country == r.country)
}

/// Both bounds of a row, of one family.
enum Pair {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

/// A bound as written: text keeps its family, an integer gets one per row.
#[derive(Clone, Copy)]
enum Bound {
    Ip(IpAddr),
    Int(u128),
}

/// Splits a trimmed line into its three fields.
fn split_row(line: &[u8]) -> Result<RawRow<'_>, (Field, String)> {
    let mut fields = line.split(|&b| b == b',').map(unquote);
    let mut next = |field| fields.next().ok_or_else(|| (field, "missing (a row is start,end,country)".to_string()));
    let row = RawRow { start: next(Field::Start)?, end: next(Field::End)?, country: next(Field::Country)? };
    match fields.next() {
        Some(extra) => {
            Err((Field::Country, format!("followed by an extra field '{}' (a row is start,end,country)", show(extra))))
        }
        None => Ok(row),
    }
}

fn unquote(field: &[u8]) -> &[u8] {
    let field = field.trim_ascii();
    match field {
        [b'"', inner @ .., b'"'] => inner.trim_ascii(),
        _ => field,
    }
}

/// A column title rather than an address: starts with a letter, no `:` or `.`.
fn is_header(start: &[u8]) -> bool {
    start.first().is_some_and(u8::is_ascii_alphabetic) && !start.iter().any(|&b| b == b':' || b == b'.')
}

fn show(field: &[u8]) -> String {
    String::from_utf8_lossy(field).into_owned()
}

fn addresses(raw: &RawRow, integers: Integers) -> Result<Pair, (Field, String)> {
    let start = bound(raw.start).map_err(|p| (Field::Start, p))?;
    let end = bound(raw.end).map_err(|p| (Field::End, p))?;
    let ints_are_v6 = match integers {
        Integers::V4 => false,
        Integers::V6 => true,
        Integers::Auto => [start, end].iter().any(|b| matches!(b, Bound::Int(n) if *n > u32::MAX as u128)),
    };
    let start = resolve(start, ints_are_v6).map_err(|p| (Field::Start, p))?;
    let end = resolve(end, ints_are_v6).map_err(|p| (Field::End, p))?;
    let pair = match (start, end) {
        (IpAddr::V4(s), IpAddr::V4(e)) => Pair::V4(s, e),
        (IpAddr::V6(s), IpAddr::V6(e)) => Pair::V6(s, e),
        _ => return Err((Field::End, format!("'{end}' is not of the family of start '{start}'"))),
    };
    if start > end {
        return Err((Field::End, format!("'{end}' comes before start '{start}'")));
    }
    Ok(pair)
}

fn bound(field: &[u8]) -> Result<Bound, String> {
    let bad = || format!("'{}' is not an IP address or integer", show(field));
    let text = std::str::from_utf8(field).map_err(|_| bad())?;
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map(Bound::Int).map_err(|_| format!("'{text}' is too large for an address"));
    }
    text.parse().map(Bound::Ip).map_err(|_| bad())
}

fn resolve(bound: Bound, ints_are_v6: bool) -> Result<IpAddr, String> {
    match bound {
        Bound::Ip(ip) => Ok(ip),
        Bound::Int(n) if ints_are_v6 => Ok(IpAddr::V6(n.into())),
        Bound::Int(n) => u32::try_from(n)
            .map(|n| IpAddr::V4(n.into()))
            .map_err(|_| format!("'{n}' is too large for an IPv4 address")),
    }
}

/// The row's country; [`NO_COUNTRY`] for the "unknown" markers and regions.
fn country_of(field: &[u8]) -> Result<CountryId, (Field, String)> {
    const NONE: [&[u8]; 4] = [b"ZZ", b"-", b"EU", b"AP"];
    if NONE.iter().any(|n| n.eq_ignore_ascii_case(field)) {
        return Ok(NO_COUNTRY);
    }
    let unknown = || (Field::Country, format!("'{}' is not an ISO 3166-1 alpha-2 country code", show(field)));
    country::parse(std::str::from_utf8(field).map_err(|_| unknown())?).map_err(|_| unknown())
}

#[cfg(test)]
mod tests;
