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
    rows::{country_of, Loc, Rows, SourceError},
    text,
};

const NAMES: [&str; 4] = ["ip_from", "ip_to", "country_code", "country_name"];
/// `::ffff:0:0/96`, the IPv4-mapped block, as integers.
const MAPPED: (u128, u128) = (0xffff << 32, (0xffff << 32) | u32::MAX as u128);

struct Row {
    line: usize,
    from: u128,
    to: u128,
    country: CountryId,
}

pub(crate) fn parse_into(rows: &mut Rows, text: &[u8], origin: usize, name_says_v6: bool) -> Result<(), SourceError> {
    let name = rows.origin_name(origin).to_string();
    let mut parsed = Vec::new();
    text::each_line(text, &name, |line, bytes| {
        let [from, to, country, _] = text::record(bytes, b',', NAMES, true)?;
        let from = integer(from).map_err(|p| ("ip_from", p))?;
        let to = integer(to).map_err(|p| ("ip_to", p))?;
        if from > to {
            return Err(("ip_to", format!("{to} comes before ip_from {from}")));
        }
        let country = rows.tally(country_of(country).map_err(|p| ("country_code", p))?);
        parsed.push(Row { line, from, to, country });
        Ok(())
    })?;
    let v6 = name_says_v6 || parsed.iter().any(|r| r.to > u32::MAX as u128);
    for r in parsed {
        let loc = Loc { origin, line: r.line };
        match v6 {
            true => push_v6(rows, loc, r.from, r.to, r.country),
            false => push(rows.push_v4(loc, v4(r.from), v4(r.to), r.country)),
        }
    }
    Ok(())
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
