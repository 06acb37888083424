//! IP2Location LITE DB1 CSV (`IP2LOCATION-LITE-DB1.CSV`, `…DB1.IPV6.CSV`):
//! `"ip_from","ip_to","country_code","country_name"`, every field quoted,
//! addresses as decimal integers, `"-"` for unknown.
//!
//! The IPv6 file covers all of IPv6 with 128-bit integers and carries IPv4 as
//! IPv4-mapped addresses (`::ffff:0:0/96`). A packet's IPv4 source is looked
//! up in the IPv4 table, so that part is moved there; rows that straddle the
//! block's edges are cut at them.
//!
//! A file is IPv6 if its name says `IPV6` or any of its integers exceeds
//! `u32::MAX`: the first rows of both files are alike (`"0","16777215","-"`),
//! so the whole file decides, not each row.

use std::net::{Ipv4Addr, Ipv6Addr};

use geoblock_common::CountryId;

use super::{
    csv::integer,
    rows::{country_of, Loc, RowError, Rows, SourceError, MAX_ROWS},
    text,
};

const NAMES: [&str; 4] = ["ip_from", "ip_to", "country_code", "country_name"];
/// `::ffff:0:0/96`, the IPv4-mapped block, as integers.
const MAPPED: (u128, u128) = (0xffff << 32, (0xffff << 32) | u32::MAX as u128);

pub(crate) fn parse_into(rows: &mut Rows, text: &[u8], origin: usize, name_says_v6: bool) -> Result<(), SourceError> {
    // A look ahead rather than keeping the rows until the end: rows past
    // the limit, or that do not parse, are refused below anyway.
    let v6 = name_says_v6
        || text::lines(text).take(MAX_ROWS).any(|(_, line)| bounds(line).is_ok_and(|(_, to, _)| to > u32::MAX as u128));
    rows.each_line(text, origin, |rows, line, bytes| {
        let (from, to, country) = bounds(bytes)?;
        let country = rows.tally(country_of(country).map_err(|p| ("country_code", p))?);
        let loc = Loc::new(origin, line);
        match v6 {
            true => push_v6(rows, loc, from, to, country),
            false => push(rows.push_v4(loc, v4(from), v4(to), country)),
        }
        Ok(())
    })
}

/// A row's addresses, in order, and its country code.
fn bounds(bytes: &[u8]) -> Result<(u128, u128, &[u8]), RowError> {
    let [from, to, country, _] = text::record(bytes, b',', NAMES, true)?;
    let from = integer(from).map_err(|p| ("ip_from", p))?;
    let to = integer(to).map_err(|p| ("ip_to", p))?;
    match from > to {
        true => Err(("ip_to", format!("{to} comes before ip_from {from}"))),
        false => Ok((from, to, country)),
    }
}

/// The IPv6 file's row, its IPv4-mapped part moved to IPv4.
fn push_v6(rows: &mut Rows, loc: Loc, from: u128, to: u128, country: CountryId) {
    let (lo, hi) = MAPPED;
    if from < lo {
        push(rows.push_v6(loc, Ipv6Addr::from(from), Ipv6Addr::from(to.min(lo - 1)), country));
    }
    if from <= hi && to >= lo {
        push(rows.push_v4(loc, v4(from.max(lo) - lo), v4(to.min(hi) - lo), country));
    }
    if to > hi {
        push(rows.push_v6(loc, Ipv6Addr::from(from.max(hi + 1)), Ipv6Addr::from(to), country));
    }
}

/// Bounds were checked to fit and be in order above.
fn push(result: Result<(), String>) {
    debug_assert!(result.is_ok(), "{result:?}");
}

fn v4(n: u128) -> Ipv4Addr {
    Ipv4Addr::from(n as u32)
}
