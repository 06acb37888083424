//! RIR statistics exchange format, `delegated-{afrinic,apnic,arin,lacnic,ripencc}-extended-latest`:
//!
//! ```text
//! 2|apnic|20260101|63001|19830613|20251231|+1000          version line
//! apnic|*|ipv4|*|52130|summary                            summary lines
//! apnic|AU|ipv4|1.0.0.0|256|20110811|assigned|A91872ED    records
//! apnic|JP|ipv6|2001:200::|35|19990813|allocated|A9…
//! ```
//!
//! Only `allocated` and `assigned` records are loaded (`available` and
//! `reserved` space belongs to no country), and `asn` records are skipped.
//! An IPv4 `value` counts addresses and is often not a power of two (ARIN's
//! legacy blocks); an IPv6 `value` is a prefix length. The registries'
//! files combine into one table: give them as one source each.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::Ipv6Network;

use super::{
    rows::{country_of, show, Loc, RowError, Rows, SourceError},
    text,
};

const NAMES: [&str; 7] = ["registry", "cc", "type", "start", "value", "date", "status"];

/// Parses one registry file; gives the data's date (the version line's end date).
pub(crate) fn parse_into(rows: &mut Rows, text: &[u8], origin: usize) -> Result<Option<String>, SourceError> {
    let mut date = None;
    rows.each_line(text, origin, |rows, line, bytes| {
        let fields: Vec<&[u8]> = text::fields(bytes, b'|').take(NAMES.len()).collect();
        if date.is_none() && is_version(&fields) {
            // The end date, 20251231, as 2025-12-31.
            date = fields.get(5).and_then(|d| super::detect::date_in_name(&show(d)));
            return Ok(());
        }
        if fields.get(5) == Some(&&b"summary"[..]) || fields.get(1) == Some(&&b"*"[..]) {
            return Ok(());
        }
        record(rows, Loc::new(origin, line), bytes)
    })?;
    Ok(date)
}

/// `2|apnic|20260101|…` or `2.3|…`: a version number first.
fn is_version(fields: &[&[u8]]) -> bool {
    fields.first().is_some_and(|v| !v.is_empty() && v.iter().all(|b| b.is_ascii_digit() || *b == b'.'))
}

fn record(rows: &mut Rows, loc: Loc, bytes: &[u8]) -> Result<(), RowError> {
    let [_, cc, kind, start, value, _, status] = text::record(bytes, b'|', NAMES, false)?;
    let loaded = match status {
        b"allocated" | b"assigned" => true,
        b"available" | b"reserved" => false,
        _ => return Err(("status", format!("'{}' is not allocated, assigned, available or reserved", show(status)))),
    };
    let (start, end) = match kind {
        b"asn" => return Ok(()),
        b"ipv4" => v4_block(start, value)?,
        b"ipv6" => v6_block(start, value)?,
        _ => return Err(("type", format!("'{}' is not asn, ipv4 or ipv6", show(kind)))),
    };
    // Registries leave the country of unassigned space empty.
    let country = match (loaded, cc) {
        (false, _) | (true, b"") => return Ok(()),
        (true, cc) => rows.tally(country_of(cc).map_err(|p| ("cc", p))?),
    };
    rows.push(loc, start, end, country).map_err(|p| ("value", p))
}

fn address<A: std::str::FromStr>(field: &[u8], family: &str) -> Result<A, RowError> {
    let bad = || ("start", format!("'{}' is not an {family} address", show(field)));
    std::str::from_utf8(field).map_err(|_| bad())?.parse().map_err(|_| bad())
}

fn number(field: &[u8]) -> Result<u128, RowError> {
    let bad = || ("value", format!("'{}' is not a number", show(field)));
    std::str::from_utf8(field).map_err(|_| bad())?.parse().map_err(|_| bad())
}

/// An address count from `start`: non-zero, within IPv4.
fn v4_block(start: &[u8], value: &[u8]) -> Result<(IpAddr, IpAddr), RowError> {
    let first: Ipv4Addr = address(start, "IPv4")?;
    let count = number(value)?;
    let last = (u128::from(u32::from(first)) + count).checked_sub(1).filter(|_| count > 0);
    let last = last.and_then(|l| u32::try_from(l).ok());
    let last = last.ok_or_else(|| ("value", format!("{count} addresses from {first} do not fit IPv4")))?;
    Ok((first.into(), Ipv4Addr::from(last).into()))
}

/// A prefix length; the start must be the network address.
fn v6_block(start: &[u8], value: &[u8]) -> Result<(IpAddr, IpAddr), RowError> {
    let first: Ipv6Addr = address(start, "IPv6")?;
    let len = number(value)?;
    let net = u8::try_from(len).ok().and_then(|l| Ipv6Network::new(first, l).ok());
    let net = net.filter(|n| n.network() == first);
    let net = net.ok_or_else(|| ("value", format!("{first}/{len} is not an IPv6 network")))?;
    Ok((first.into(), super::rows::last_address(net.into())))
}
