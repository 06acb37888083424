//! MaxMind's ASN data: the GeoLite2/GeoIP2 ASN CSV (`network,
//! autonomous_system_number,autonomous_system_organization`, one file per
//! family) and the ASN database (records of `autonomous_system_number` and
//! `autonomous_system_organization`).

use std::collections::HashMap;

use maxminddb::{PathElement, Reader, WithinOptions};

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

/// Distinct records an ASN database may have: GeoLite2-ASN has one per AS,
/// about 80,000. Each is read by its two paths only, which skip what else
/// the record points to (a hostile record's shared large map), so reading
/// stays linear in the database's size.
const MAX_RECORDS: usize = 1 << 18;

const NUMBER: [PathElement; 1] = [PathElement::Key("autonomous_system_number")];
const ORGANISATION: [PathElement; 1] = [PathElement::Key("autonomous_system_organization")];

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
        let at = |field, problem: maxminddb::MaxMindDbError| SourceError::Field {
            origin: name.clone(),
            at: Place::Network(net),
            field,
            problem: problem.to_string(),
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
                let asn: Option<Asn> = found.decode_path(&NUMBER).map_err(|e| at("autonomous_system_number", e))?;
                let asn = asn.unwrap_or(0);
                if asn != 0 {
                    let org: Option<&str> =
                        found.decode_path(&ORGANISATION).map_err(|e| at("autonomous_system_organization", e))?;
                    rows.orgs.name(asn, org.unwrap_or_default().as_bytes());
                }
                known.extend(found.offset().map(|o| (o, asn)));
                asn
            }
        };
        rows.rows.push_net(Loc::new(origin, 0), net, asn);
    }
    Ok(crate::data::date_of_epoch(reader.metadata().build_epoch))
}
