//! MaxMind's ASN data: the GeoLite2/GeoIP2 ASN CSV (`network,
//! autonomous_system_number,autonomous_system_organization`, one file per
//! family) and the ASN database (records of `autonomous_system_number` and
//! `autonomous_system_organization`).

use std::collections::HashMap;

use maxminddb::{Reader, WithinOptions};

use super::{asn_of, Asn, AsnRows};
use crate::data::{
    maxmind_csv::blocks,
    mmdb::check_tree,
    rows::{Loc, Place, SourceError},
    Input,
};

/// One blocks file; columns are found by their header names.
pub(crate) fn csv(rows: &mut AsnRows, input: &Input, origin: usize) -> Result<(), SourceError> {
    const NAMES: [&str; 3] = ["network", "autonomous_system_number", "autonomous_system_organization"];
    let AsnRows { rows, orgs } = rows;
    blocks(rows, input, origin, NAMES, |rows, loc, net, [asn, org]| {
        let asn = asn_of(asn?).map_err(|p| (NAMES[1], p))?;
        rows.push_net(loc, net, asn);
        orgs.name(asn, org?);
        Ok(())
    })
}

/// A record of MaxMind's ASN layout.
#[derive(serde::Deserialize)]
struct Record<'a> {
    autonomous_system_number: Option<Asn>,
    #[serde(borrow)]
    autonomous_system_organization: Option<&'a str>,
}

/// Distinct records an ASN database may have: GeoLite2-ASN has one per AS,
/// about 80,000; see the country reader's limit for why there is one.
const MAX_RECORDS: usize = 1 << 18;

/// Every network of the database; gives its build date.
pub(crate) fn mmdb(rows: &mut AsnRows, bytes: Vec<u8>, origin: usize) -> Result<Option<String>, SourceError> {
    let name = rows.rows.origin_name(origin).to_string();
    let corrupt = |e: maxminddb::MaxMindDbError| SourceError::invalid(&name, format!("not a readable MMDB: {e}"));
    let reader = Reader::from_source(bytes.as_slice()).map_err(corrupt)?;
    check_tree(reader.metadata(), &bytes).map_err(|problem| SourceError::invalid(&name, problem))?;
    let mut known: HashMap<usize, Asn> = HashMap::new();
    for item in reader.networks(WithinOptions::default()).map_err(corrupt)? {
        let found = item.map_err(corrupt)?;
        let net = found.network().map_err(corrupt)?;
        rows.rows.record(origin, Place::Network(net))?;
        let at = |problem: String| SourceError::Field {
            origin: name.clone(),
            at: Place::Network(net),
            field: "autonomous_system_number",
            problem,
        };
        let asn = match found.offset().and_then(|o| known.get(&o)) {
            Some(&asn) => asn,
            None if known.len() == MAX_RECORDS => {
                return Err(SourceError::invalid(
                    &name,
                    format!("more than {MAX_RECORDS} distinct records: not an ASN database"),
                ))
            }
            None => {
                let record: Option<Record> = found.decode().map_err(|e| at(e.to_string()))?;
                let (asn, org) = record
                    .map_or((0, None), |r| (r.autonomous_system_number.unwrap_or(0), r.autonomous_system_organization));
                rows.orgs.name(asn, org.unwrap_or_default().as_bytes());
                known.extend(found.offset().map(|o| (o, asn)));
                asn
            }
        };
        rows.rows.push_net(Loc::new(origin, 0), net, asn);
    }
    Ok(crate::data::date_of_epoch(reader.metadata().build_epoch))
}
