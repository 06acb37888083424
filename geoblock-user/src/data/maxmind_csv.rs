//! MaxMind GeoLite2/GeoIP2 Country CSV, as downloaded (the zip) or unpacked:
//! `…-Blocks-IPv4.csv` and `…-Blocks-IPv6.csv` hold networks and geoname ids,
//! `…-Locations-en.csv` maps a geoname id to `country_iso_code`.
//!
//! A network's country is its `geoname_id`'s; when that is empty (anonymous
//! proxies, satellite providers) or names a continent without a country,
//! `registered_country_geoname_id`'s. Networks with neither are unknown.
//! Columns are found by their header names, which MaxMind keeps stable while
//! adding columns (`is_anycast`).

use std::collections::HashMap;

use ipnetwork::IpNetwork;

use super::{
    rows::{country_of, network, show, Loc, RowError, Rows, SourceError},
    table::Label,
    text, Input,
};
use crate::country::Coded;

/// Whether a file of a set belongs to this format, and as what.
pub(crate) fn role(name: &str) -> Option<Role> {
    let name = name.to_ascii_lowercase();
    if name.ends_with("-blocks-ipv4.csv") || name.ends_with("-blocks-ipv6.csv") {
        Some(Role::Blocks)
    } else if name.ends_with("-locations-en.csv") {
        Some(Role::Locations)
    } else {
        None
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Blocks,
    Locations,
}

/// Reads the blocks of `inputs` joined with their locations file.
pub(crate) fn parse_into(rows: &mut Rows, inputs: &[Input]) -> Result<(), SourceError> {
    let with = |role| inputs.iter().filter(move |i| self::role(&i.name) == Some(role));
    let origin = inputs.first().map_or("(no files)", |i| i.origin.as_str());
    let Some(locations) = with(Role::Locations).next() else {
        return Err(SourceError::invalid(origin, "MaxMind CSV without its Locations-en.csv"));
    };
    let countries = locations_of(rows, locations)?;
    if with(Role::Blocks).next().is_none() {
        return Err(SourceError::invalid(origin, "MaxMind CSV without Blocks-IPv4.csv or Blocks-IPv6.csv"));
    }
    for blocks in with(Role::Blocks) {
        let index = rows.origin(&blocks.origin);
        blocks_into(rows, blocks, index, &countries)?;
    }
    Ok(())
}

/// geoname id → country (unclaimed for continents). Its lines count as
/// records of the source: a map of millions of ids is no country list.
fn locations_of(rows: &mut Rows, input: &Input) -> Result<HashMap<u32, Coded>, SourceError> {
    let mut columns: Option<[usize; 2]> = None;
    let mut out = HashMap::new();
    let index = rows.origin(&input.origin);
    rows.each_line(&input.bytes, index, |_, _, line| {
        let Some(cols @ [id, iso]) = columns else {
            columns = Some(text::columns(line, b',', ["geoname_id", "country_iso_code"]).map_err(|p| ("header", p))?);
            return Ok(());
        };
        let fields = up_to(line, &cols);
        let id = geoname(field(&fields, id, "geoname_id")?, "geoname_id")?.ok_or(("geoname_id", "empty".into()))?;
        let iso = field(&fields, iso, "country_iso_code")?;
        let country = match iso {
            b"" => Coded::Unclaimed,
            iso => country_of(iso).map_err(|p| ("country_iso_code", p))?,
        };
        out.insert(id, country);
        Ok(())
    })?;
    Ok(out)
}

fn blocks_into(
    rows: &mut Rows,
    input: &Input,
    index: usize,
    countries: &HashMap<u32, Coded>,
) -> Result<(), SourceError> {
    const NAMES: [&str; 3] = ["network", "geoname_id", "registered_country_geoname_id"];
    blocks(rows, input, index, NAMES, |rows, loc, net, [own, registered]| {
        let country = match country_at(countries, own?, "geoname_id")? {
            Coded::Unclaimed => country_at(countries, registered?, "registered_country_geoname_id")?,
            own => own,
        };
        let country = rows.tally(country);
        rows.push_net(loc, net, country);
        Ok(())
    })
}

/// The other fields of a blocks line, each read only if asked for.
pub(crate) type Fields<'a> = [Result<&'a [u8], RowError>; 2];

/// Each line of a blocks file (GeoLite2 Country's or ASN's) after its
/// header: its place, its network (host bits refused, of the file's family
/// if the name says `-IPv4.csv` or `-IPv6.csv`) and the fields named
/// `names[1]` and `names[2]`, columns found by the header.
pub(crate) fn blocks<L: Label>(
    rows: &mut Rows<L>,
    input: &Input,
    index: usize,
    names: [&'static str; 3],
    mut record: impl FnMut(&mut Rows<L>, Loc, IpNetwork, Fields) -> Result<(), RowError>,
) -> Result<(), SourceError> {
    let lower = input.name.to_ascii_lowercase();
    let v4_file = [("-ipv4.csv", true), ("-ipv6.csv", false)].into_iter().find(|(end, _)| lower.ends_with(end));
    let mut columns: Option<[usize; 3]> = None;
    rows.each_line(&input.bytes, index, |rows, line, bytes| {
        let Some(cols) = columns else {
            columns = Some(text::columns(bytes, b',', names).map_err(|p| ("header", p))?);
            return Ok(());
        };
        let fields = up_to(bytes, &cols);
        let [net, first, second] = [0, 1, 2].map(|i| field(&fields, cols[i], names[i]));
        let net = network(net?).map_err(|p| (names[0], p))?;
        if v4_file.is_some_and(|(_, v4)| v4 != net.is_ipv4()) {
            return Err((names[0], format!("{net} is of the other family than this file's")));
        }
        record(rows, Loc::new(index, line), net, [first, second])
    })
}

/// The fields of a line up to the last of `columns`: the rest, however
/// many, are never split.
fn up_to<'a>(line: &'a [u8], columns: &[usize]) -> Vec<&'a [u8]> {
    let last = columns.iter().max().map_or(0, |&c| c + 1);
    text::fields(line, b',').take(last).collect()
}

fn field<'a>(fields: &[&'a [u8]], at: usize, name: &'static str) -> Result<&'a [u8], RowError> {
    fields.get(at).copied().ok_or((name, "missing".to_string()))
}

fn geoname(field: &[u8], name: &'static str) -> Result<Option<u32>, RowError> {
    if field.is_empty() {
        return Ok(None);
    }
    let bad = || (name, format!("'{}' is not a geoname id", show(field)));
    std::str::from_utf8(field).map_err(|_| bad())?.parse().map(Some).map_err(|_| bad())
}

/// The country of a geoname id field; an id missing from the locations is an error.
fn country_at(countries: &HashMap<u32, Coded>, field: &[u8], name: &'static str) -> Result<Coded, RowError> {
    match geoname(field, name)? {
        None => Ok(Coded::Unclaimed),
        Some(id) => countries.get(&id).copied().ok_or((name, format!("{id} is not in the Locations-en.csv"))),
    }
}
