//! Range CSV, `start,end,country`: DB-IP Lite (`dbip-country-lite-2026-06.csv`),
//! ip-location-db, and Tor's / IPFire's `geoip` and `geoip6` files.
//!
//! - `start` and `end` are inclusive bounds, each an IPv4/IPv6 address as
//!   text (`1.0.0.0`, `2001:db8::`) or a decimal integer. v4 and v6 rows may
//!   be mixed in one file, but both bounds of a row are of one family.
//! - `country` is an ISO 3166-1 alpha-2 code; the unknown markers (`ZZ`,
//!   `-`, `??`) and regions (`EU`, `AP`) are "no country" ([`country_of`]).
//! - Blank lines and `#` lines (Tor's header) are skipped; CRLF and a UTF-8
//!   BOM are fine; fields may be padded or quoted. A first row whose `start`
//!   begins with a letter and holds no `:` or `.` is a header.
//!
//! Integers are ambiguous: `16777216` is 1.0.0.0 or ::100:0. ip-location-db
//! keeps the families apart (`…-ipv4-num.csv`, `…-ipv6-num.csv`) and Tor's
//! `geoip` is IPv4 only, so the family comes from [`Integers`], picked from
//! the file name; otherwise a row's integers are IPv6 only if one of them
//! exceeds `u32::MAX`.

use std::{
    net::{IpAddr, Ipv6Addr},
    path::Path,
};

use super::{
    rows::{country_of, show, Loc, RowError, Rows, SourceError},
    text,
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
    /// The family a file name implies: ip-location-db's `ipv4`/`ipv6`, Tor's `geoip`/`geoip6`.
    pub fn from_file_name(path: &Path) -> Integers {
        let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        let stem = name.split('.').next().unwrap_or_default();
        match (name.contains("ipv4") || stem == "geoip", name.contains("ipv6") || stem == "geoip6") {
            (true, false) => Integers::V4,
            (false, true) => Integers::V6,
            _ => Integers::Auto,
        }
    }
}

const NAMES: [&str; 3] = ["start", "end", "country"];

/// Parses one file's text into `rows`.
pub(crate) fn parse_into(rows: &mut Rows, text: &[u8], origin: usize, integers: Integers) -> Result<(), SourceError> {
    let mut first = true;
    rows.each_line(text, origin, |rows, line, bytes| {
        let [start, end, country] = text::record(bytes, b',', NAMES, true)?;
        if std::mem::replace(&mut first, false) && is_header(start) {
            return Ok(());
        }
        let (start, end) = addresses(start, end, integers)?;
        let country = rows.tally(country_of(country).map_err(|p| ("country", p))?);
        rows.push(Loc::new(origin, line), start, end, country).map_err(|p| ("end", p))
    })
}

/// A column title rather than an address: starts with a letter, no `:` or `.`.
fn is_header(start: &[u8]) -> bool {
    start.first().is_some_and(u8::is_ascii_alphabetic) && !start.iter().any(|&b| b == b':' || b == b'.')
}

/// A bound as written: text keeps its family, an integer gets one per row.
#[derive(Clone, Copy)]
enum Bound {
    Ip(IpAddr),
    Int(u128),
}

pub(crate) fn addresses(start: &[u8], end: &[u8], integers: Integers) -> Result<(IpAddr, IpAddr), RowError> {
    let start = bound(start).map_err(|p| ("start", p))?;
    let end = bound(end).map_err(|p| ("end", p))?;
    let ints_are_v6 = match integers {
        Integers::V4 => false,
        Integers::V6 => true,
        Integers::Auto => [start, end].iter().any(|b| matches!(b, Bound::Int(n) if *n > u32::MAX as u128)),
    };
    Ok((resolve(start, ints_are_v6).map_err(|p| ("start", p))?, resolve(end, ints_are_v6).map_err(|p| ("end", p))?))
}

fn bound(field: &[u8]) -> Result<Bound, String> {
    let bad = || format!("'{}' is not an IP address or integer", show(field));
    let text = std::str::from_utf8(field).map_err(|_| bad())?;
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return integer(field).map(Bound::Int);
    }
    text.parse().map(Bound::Ip).map_err(|_| bad())
}

/// A decimal integer address (any family).
pub(crate) fn integer(field: &[u8]) -> Result<u128, String> {
    let text = std::str::from_utf8(field).ok().filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()));
    let text = text.ok_or_else(|| format!("'{}' is not a decimal integer", show(field)))?;
    text.parse().map_err(|_| format!("'{}' is too large for an address", show(field)))
}

fn resolve(bound: Bound, ints_are_v6: bool) -> Result<IpAddr, String> {
    match bound {
        Bound::Ip(ip) => Ok(ip),
        Bound::Int(n) if ints_are_v6 => Ok(IpAddr::V6(Ipv6Addr::from(n))),
        Bound::Int(n) => u32::try_from(n)
            .map(|n| IpAddr::V4(n.into()))
            .map_err(|_| format!("'{n}' is too large for an IPv4 address")),
    }
}

#[cfg(test)]
mod tests;
