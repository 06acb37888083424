//! The range formats: ip-location-db's `start,end,asn,org` and iptoasn's
//! `range_start\trange_end\tAS_number\tcountry_code\tAS_description`.

use std::{net::IpAddr, path::Path};

use super::{asn_of, AsnRows, Orgs};
use crate::data::{
    csv::{addresses, Integers},
    rows::{Loc, RowError, Rows, SourceError},
    text, Input,
};

/// ip-location-db: no header; the organisation is quoted when it holds a
/// comma (`"Cloudflare, Inc."`); addresses are text or, in the `-num`
/// files, decimal integers of the family the name says.
pub(crate) fn ip_location_db(rows: &mut AsnRows, input: &Input, origin: usize) -> Result<(), SourceError> {
    const NAMES: [&str; 4] = ["start", "end", "asn", "org"];
    let integers = Integers::from_file_name(Path::new(&input.name));
    let AsnRows { rows, orgs } = rows;
    rows.each_line(&input.bytes, origin, |rows, line, bytes| {
        let [start, end, asn] = text::record(bytes, b',', [NAMES[0], NAMES[1], NAMES[2]], false)?;
        let mut rest = text::fields(bytes, b',').skip(3);
        // A name may be missing; a fifth field is a shifted column.
        let org = rest.next().unwrap_or_default();
        if rest.next().is_some() {
            return Err(("org", format!("followed by an extra field (a row is {})", NAMES.join(","))));
        }
        let asn = asn_of(asn).map_err(|p| ("asn", p))?;
        range(rows, orgs, Loc::new(origin, line), addresses(start, end, integers)?, asn, org)
    })
}

/// iptoasn: tab-separated, addresses as text, AS 0 for "Not routed".
pub(crate) fn iptoasn(rows: &mut AsnRows, text: &[u8], origin: usize) -> Result<(), SourceError> {
    const NAMES: [&str; 4] = ["range_start", "range_end", "AS_number", "country_code"];
    let AsnRows { rows, orgs } = rows;
    rows.each_line(text, origin, |rows, line, bytes| {
        let [start, end, asn, _country] = text::record(bytes, b'\t', NAMES, false)?;
        let org = text::fields(bytes, b'\t').nth(4).unwrap_or_default();
        let bounds = addresses(start, end, Integers::Auto)
            .map_err(|(field, problem)| (if field == "start" { NAMES[0] } else { NAMES[1] }, problem))?;
        let asn = asn_of(asn).map_err(|p| (NAMES[2], p))?;
        range(rows, orgs, Loc::new(origin, line), bounds, asn, org)
    })
}

/// One row: its range, AS (0 is none) and organisation.
fn range(
    rows: &mut Rows<u32>,
    orgs: &mut Orgs,
    loc: Loc,
    (start, end): (IpAddr, IpAddr),
    asn: u32,
    org: &[u8],
) -> Result<(), RowError> {
    rows.push(loc, start, end, asn).map_err(|p| ("end", p))?;
    orgs.name(asn, org);
    Ok(())
}
