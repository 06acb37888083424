//! MaxMind DB (`.mmdb`): GeoLite2/GeoIP2 Country, DB-IP's MMDB, and others
//! built the same way. The whole database is enumerated with the
//! `maxminddb` crate; each network's country comes from the first of the
//! [`CountryFields`] paths that holds one. By default these are the layouts
//! vendors use: `country.iso_code`, then `registered_country.iso_code` (as
//! MaxMind advises for country-level blocking), then `country_code` (DB-IP's
//! and ip-location-db's MMDB). Which one answered is reported; a database
//! in which none does is refused, naming what its records hold.
//!
//! [`write`] builds such a database from a table (the tests' fixtures and
//! the benchmark's MMDB).

use std::collections::{BTreeMap, HashMap};

use geoblock_common::NO_COUNTRY;
use maxminddb::{LookupResult, PathElement, Reader, WithinOptions};
use serde::de::IgnoredAny;

use super::{
    rows::{country_of, Loc, Place, Rows, SourceError},
    Notes,
};
use crate::country::Coded;

mod write;
pub use write::{write, write_asn, write_complete, write_distinct};

/// Where in a record the country code is: paths tried in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CountryFields(pub Vec<Vec<String>>);

impl Default for CountryFields {
    fn default() -> Self {
        CountryFields::parse("country.iso_code,registered_country.iso_code,country_code")
    }
}

impl CountryFields {
    /// Dotted paths, comma-separated: `country.iso_code,registered_country.iso_code`, `country_code`.
    pub fn parse(text: &str) -> CountryFields {
        CountryFields(text.split(',').map(|p| p.trim().split('.').map(str::to_string).collect()).collect())
    }
}

/// Reads every network of the database.
pub(crate) fn parse_into(
    rows: &mut Rows,
    bytes: Vec<u8>,
    origin: usize,
    fields: &CountryFields,
) -> Result<Notes, SourceError> {
    let name = rows.origin_name(origin).to_string();
    let corrupt = |e: maxminddb::MaxMindDbError| SourceError::invalid(&name, format!("not a readable MMDB: {e}"));
    let reader = Reader::from_source(bytes.as_slice()).map_err(corrupt)?;
    let date = super::date_of_epoch(reader.metadata().build_epoch);
    let paths: Vec<Vec<PathElement>> =
        fields.0.iter().map(|p| p.iter().map(|k| PathElement::Key(k)).collect()).collect();
    let mut answered = vec![0usize; paths.len()];
    let mut first_keys = None;
    check_tree(reader.metadata(), &bytes).map_err(|problem| SourceError::invalid(&name, problem))?;
    // Networks share a few hundred records (one per country): each is read
    // once, however large a hostile one is.
    let mut known: HashMap<usize, Option<Answer>> = HashMap::new();
    let too_many =
        || SourceError::invalid(&name, format!("more than {MAX_RECORDS} distinct records: not a country database"));
    for item in reader.networks(WithinOptions::default()).map_err(corrupt)? {
        let found = item.map_err(corrupt)?;
        let net = found.network().map_err(corrupt)?;
        rows.record(origin, Place::Network(net))?;
        let at = |problem: String| SourceError::Field {
            origin: name.clone(),
            at: Place::Network(net),
            field: "country",
            problem,
        };
        let offset = found.offset();
        let answer = match offset.and_then(|o| known.get(&o)) {
            Some(&answer) => answer,
            None if known.len() == MAX_RECORDS => return Err(too_many()),
            None => {
                let answer = country_in(&found, &paths).map_err(at)?;
                known.extend(offset.map(|o| (o, answer)));
                answer
            }
        };
        let country = answer.map_or(NO_COUNTRY, |(coded, path)| {
            answered[path] += 1;
            rows.tally(coded)
        });
        if first_keys.is_none() {
            first_keys = found.decode::<BTreeMap<String, IgnoredAny>>().ok().flatten().map(|r| r.into_keys().collect());
        }
        rows.push_net(Loc::new(origin, 0), net, country);
    }
    let Some(most) = (0..paths.len()).filter(|&i| answered[i] > 0).max_by_key(|&i| answered[i]) else {
        return Err(no_country(&name, fields, first_keys.unwrap_or_default()));
    };
    Ok(Notes { date, country_field: Some(fields.0[most].join(".")) })
}

/// Distinct data records a database may have. A country database has a
/// few hundred (DB-IP's and GeoLite2's from npm: 250), one per country and
/// traits; reading one may visit 65,536 values (the reader's limit), so a
/// hostile database whose millions of networks each have a record of their
/// own, each leading to one large map, would take hours. (A city database
/// has hundreds of thousands: it is refused too.)
const MAX_RECORDS: usize = 1 << 14;

/// A record's country and the index of the path that held it.
type Answer = (Coded, usize);

/// The country of a network's record: the first path that holds a code.
fn country_in(found: &LookupResult<&[u8]>, paths: &[Vec<PathElement>]) -> Result<Option<Answer>, String> {
    for (index, path) in paths.iter().enumerate() {
        let code: Option<&str> = found.decode_path(path).map_err(|e| e.to_string())?;
        if let Some(code) = code.filter(|c| !c.is_empty()) {
            return Ok(Some((country_of(code.as_bytes())?, index)));
        }
    }
    Ok(None)
}

/// The search tree must be a tree: a node reached from two places makes
/// every path below it count twice, and a small hostile file describes (and
/// the reader walks) exponentially many networks. Only the IPv4 subtree of
/// an IPv6 database may be reached from more than one place: MaxMind's own
/// databases alias it at `::ffff:0:0/96`, `2001::/32` and `2002::/16`.
pub(crate) fn check_tree(meta: &maxminddb::Metadata, bytes: &[u8]) -> Result<(), String> {
    let nodes = meta.node_count as usize;
    let node_bytes = usize::from(meta.record_size) / 4;
    let tree = bytes.get(..nodes * node_bytes).ok_or("its search tree is cut short")?;
    let records = |node: usize| records(&tree[node * node_bytes..(node + 1) * node_bytes], meta.record_size);
    let mut seen = vec![0u8; nodes];
    for node in 0..nodes {
        for child in records(node)?.into_iter().filter(|&c| (c as usize) < nodes) {
            seen[child as usize] = seen[child as usize].saturating_add(1);
        }
    }
    let ipv4_start = (meta.ip_version == 6).then(|| {
        let mut node = 0;
        for _ in 0..96 {
            match records(node) {
                Ok([left, _]) if (left as usize) < nodes => node = left as usize,
                _ => break,
            }
        }
        node
    });
    match seen.iter().enumerate().find(|&(node, &refs)| refs > 1 && !(Some(node) == ipv4_start && refs <= 4)) {
        Some((node, _)) => Err(format!("its search tree reaches node {node} from more than one place")),
        None if seen.first().is_some_and(|&r| r > 0) => Err("its search tree leads back to its root".into()),
        None => Ok(()),
    }
}

/// A node's two records, for the record sizes the format has.
fn records(node: &[u8], record_size: u16) -> Result<[u32; 2], String> {
    let be = |b: &[u8]| b.iter().fold(0u32, |n, &byte| n << 8 | u32::from(byte));
    match record_size {
        24 => Ok([be(&node[..3]), be(&node[3..])]),
        28 => Ok([u32::from(node[3] >> 4) << 24 | be(&node[..3]), u32::from(node[3] & 0x0f) << 24 | be(&node[4..])]),
        32 => Ok([be(&node[..4]), be(&node[4..])]),
        other => Err(format!("record size {other} is not one of the format's (24, 28, 32)")),
    }
}

/// A database in which no path gives any network a country: most likely a
/// layout geoblock does not know, which `--mmdb-field` can name.
fn no_country(origin: &str, fields: &CountryFields, keys: Vec<String>) -> SourceError {
    let tried: Vec<String> = fields.0.iter().map(|p| p.join(".")).collect();
    let holds = match keys.is_empty() {
        true => "no records".to_string(),
        false => format!("records with the keys {}", keys.join(", ")),
    };
    SourceError::invalid(
        origin,
        format!("no network has a country at {} ({holds}); name the field with --mmdb-field", tried.join(", ")),
    )
}
