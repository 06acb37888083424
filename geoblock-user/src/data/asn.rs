//! Autonomous system data: which AS announces an address, and the AS's
//! organisation, so rules can name networks by AS (`AS4134`) beside countries.
//!
//! | format | files |
//! | --- | --- |
//! | ip-location-db | `asn-ipv4.csv`, `asn-ipv6.csv` (`start,end,asn,org`), `asn-ipv4-num.csv`, `asn-ipv6-num.csv` |
//! | iptoasn | `ip2asn-v4.tsv`, `ip2asn-v6.tsv`, `ip2asn-combined.tsv` (tab-separated, AS 0 is "Not routed") |
//! | MaxMind CSV | `GeoLite2-ASN-Blocks-IPv4.csv`, `-IPv6.csv`: the zip, the folder or the files |
//! | MaxMind DB | `GeoLite2-ASN.mmdb` (`autonomous_system_number`, `autonomous_system_organization`) |
//!
//! A source is one path (plain, `.gz`, `.xz`, `.zip`, a folder) as for the
//! country data; the format of each file is told by its name or content.
//! Every address of a row gets its AS and no other does: what no row covers
//! is in no AS. Several sources combine in order, a later one winning for
//! the addresses it gives an AS.
//!
//! **Overlapping rows.** Routing data nests: a network may announce a part
//! of another's range. Where rows of different ASes overlap, the narrower
//! row gives the overlap its AS, as a router's longest match would (the
//! ip-location-db IPv4 file of 2026-06-17 has one such pair: 214.95.0.0 –
//! 215.0.255.255 of AS749 and 215.0.0.0 – 215.1.3.255 of AS721). Rows of one
//! size that overlap with different ASes leave no way to choose: an error
//! naming both lines.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::IpAddr,
    path::Path,
    time::SystemTime,
};

use ipnetwork::IpNetwork;

use super::{
    archive,
    rows::{places, Loc, Located, Rows, SourceError},
    table::{self, Address, PerFamily, Table, TableError},
    Input,
};

mod maxmind;
mod ranges;

/// An autonomous system number (0: none, "not routed").
pub type Asn = u32;

/// The AS data in force: prefixes to AS, and the organisations named.
#[derive(Clone, Debug, Default)]
pub struct AsnData {
    /// Exact minimal prefixes → AS.
    pub table: Table<Asn>,
    /// AS → organisation name, where a source names it.
    pub orgs: BTreeMap<Asn, String>,
    pub sources: Vec<AsnSourceInfo>,
}

impl AsnData {
    /// The prefix holding `ip`, its AS and the AS's organisation.
    pub fn lookup(&self, ip: IpAddr) -> Option<(IpNetwork, Asn, Option<&str>)> {
        let (net, asn) = self.table.lookup(ip)?;
        Some((net, asn, self.orgs.get(&asn).map(String::as_str)))
    }
}

/// The formats AS data comes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum AsnFormat {
    /// ip-location-db `start,end,asn,org` (addresses as text or integers).
    IpLocationDb,
    /// iptoasn.com `ip2asn-*.tsv`.
    Iptoasn,
    /// MaxMind GeoLite2/GeoIP2 ASN CSV.
    MaxmindCsv,
    /// MaxMind GeoLite2/GeoIP2 ASN database.
    Mmdb,
}

impl fmt::Display for AsnFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AsnFormat::IpLocationDb => "ip-location-db",
            AsnFormat::Iptoasn => "iptoasn",
            AsnFormat::MaxmindCsv => "maxmind-csv",
            AsnFormat::Mmdb => "mmdb",
        })
    }
}

/// What an AS source held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AsnSourceInfo {
    pub origin: String,
    pub formats: Vec<AsnFormat>,
    /// The data's release date, if the source says (file name, MMDB metadata).
    pub date: Option<String>,
    /// Rows with an AS, per family (before merging).
    pub ranges: PerFamily<usize>,
    /// Prefixes of this source alone.
    pub prefixes: PerFamily<usize>,
    /// When the file was written (downloaded, for a URL).
    pub modified: Option<SystemTime>,
    /// Distinct ASes of this source.
    pub ases: usize,
}

/// Rows of ASes and the organisations named beside them.
#[derive(Default)]
pub(crate) struct AsnRows {
    pub rows: Rows<Asn>,
    pub orgs: Orgs,
}

/// AS → organisation, as a source names them.
#[derive(Default)]
pub(crate) struct Orgs(pub BTreeMap<Asn, String>);

/// Characters of an organisation name kept: the longest real ones have
/// about 100; a hostile row must not make every AS's name megabytes.
const MAX_ORG: usize = 200;

impl Orgs {
    /// Names `asn`'s organisation, unless the name is empty (the first name wins within a source).
    pub fn name(&mut self, asn: Asn, org: &[u8]) {
        if asn == 0 || org.is_empty() || self.0.contains_key(&asn) {
            return;
        }
        let org = String::from_utf8_lossy(org).replace("\"\"", "\"");
        let org: String = org.trim().chars().take(MAX_ORG).collect();
        if !org.is_empty() {
            self.0.insert(asn, org);
        }
    }
}

/// An AS number field: decimal, 0 to 4294967295 (`AS` before it is taken too).
pub(crate) fn asn_of(field: &[u8]) -> Result<Asn, String> {
    let digits = field.strip_prefix(b"AS").unwrap_or(field);
    let bad = || format!("'{}' is not an AS number", super::rows::show(field));
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    std::str::from_utf8(digits).map_err(|_| bad())?.parse().map_err(|_| format!("{} (above 4294967295)", bad()))
}

/// Reads AS sources in order and combines them (a later one wins where it has an AS).
pub fn load<P: AsRef<Path>>(paths: &[P]) -> Result<AsnData, SourceError> {
    let mut data = AsnData::default();
    for path in paths {
        let path = path.as_ref();
        let written = super::modified(path);
        let source = read(path.display().to_string(), archive::open(path)?)?;
        data.table = match data.sources.is_empty() {
            true => source.table,
            false => data
                .table
                .overlay(&source.table)
                .map_err(|error| SourceError::Table { at: path.display().to_string(), error })?,
        };
        data.orgs.extend(source.orgs);
        data.sources.extend(source.sources.into_iter().map(|info| AsnSourceInfo { modified: written, ..info }));
    }
    Ok(data)
}

/// The AS data of one source's opened files.
pub(crate) fn read(origin: String, inputs: Vec<Input>) -> Result<AsnData, SourceError> {
    if inputs.is_empty() {
        return Err(SourceError::invalid(&origin, "no data files"));
    }
    let mut rows = AsnRows::default();
    let mut formats = Vec::new();
    let mut date = super::detect::date_in_name(&origin);
    for input in inputs {
        let format = detect(&input.name, &input.bytes);
        let index = rows.rows.origin(&input.origin);
        match format {
            AsnFormat::IpLocationDb => ranges::ip_location_db(&mut rows, &input, index)?,
            AsnFormat::Iptoasn => ranges::iptoasn(&mut rows, &input.bytes, index)?,
            AsnFormat::MaxmindCsv => maxmind::csv(&mut rows, &input, index)?,
            AsnFormat::Mmdb => date = maxmind::mmdb(&mut rows, input.bytes, index)?.or(date),
        }
        if !formats.contains(&format) {
            formats.push(format);
        }
    }
    let (v4, v6) = rows.rows.counts();
    let AsnRows { rows, orgs: Orgs(orgs) } = rows;
    let table = narrowest(rows)?;
    let ases = ases(&table).len();
    let prefixes = table.counts();
    let info = AsnSourceInfo { origin, formats, date, ranges: PerFamily { v4, v6 }, prefixes, modified: None, ases };
    Ok(AsnData { table, orgs, sources: vec![info] })
}

/// The ASes a table names.
pub fn ases(table: &Table<Asn>) -> BTreeSet<Asn> {
    table.v4.iter().map(|&(_, asn)| asn).chain(table.v6.iter().map(|&(_, asn)| asn)).collect()
}

/// The format of one AS file, by name, then by its first line.
fn detect(name: &str, bytes: &[u8]) -> AsnFormat {
    let lower = name.to_ascii_lowercase();
    let base = lower.rsplit('/').next().unwrap_or(&lower);
    let first = super::text::lines(bytes).next().map_or(&b""[..], |(_, line)| line);
    let marker = super::detect::MMDB_MARKER;
    if base.ends_with(".mmdb")
        || bytes[bytes.len().saturating_sub(128 * 1024)..].windows(marker.len()).any(|w| w == marker)
    {
        AsnFormat::Mmdb
    } else if super::maxmind_csv::role(base).is_some() || first.starts_with(b"network,") {
        AsnFormat::MaxmindCsv
    } else if base.starts_with("ip2asn") || first.contains(&b'\t') {
        AsnFormat::Iptoasn
    } else {
        AsnFormat::IpLocationDb
    }
}

/// The table of the rows, the narrower row winning where rows of different
/// ASes overlap (see the module documentation).
fn narrowest(rows: Rows<Asn>) -> Result<Table<Asn>, SourceError> {
    let (v4, v6, origins) = rows.into_parts();
    Ok(Table { v4: family(v4, &origins)?, v6: family(v6, &origins)? })
}

fn family<A: Address>(rows: Vec<Located<A, Asn>>, origins: &[String]) -> Result<Vec<(A::Net, Asn)>, SourceError> {
    let painted = paint(rows).map_err(|conflict| conflict.error(origins))?;
    table::prefixes(painted).map_err(|fault| match fault {
        table::Fault::TooMany(family) => {
            SourceError::Table { at: origins.join(", "), error: TableError::TooMany(family) }
        }
        table::Fault::Reversed(_) | table::Fault::Overlap(..) => unreachable!("painted rows are ordered and disjoint"),
    })
}

/// Two rows of one size and different ASes that overlap: as the addresses
/// and AS of each, with where they are.
struct Conflict([(String, Loc); 2]);

impl Conflict {
    fn error(self, origins: &[String]) -> SourceError {
        let [(a, at_a), (b, at_b)] = self.0;
        SourceError::invalid(
            &places(vec![at_a, at_b], origins),
            format!("rows {a} and {b} overlap, are of one size and have different ASes: which one holds is unknown"),
        )
    }
}

/// A painted piece: its last address, AS, and the row it came from (its
/// first and last address, its place).
type Piece = (u128, Asn, (u128, u128), Loc);

/// Rows laid down widest first, each over what is there: the disjoint
/// pieces that remain, in address order. Each row adds at most three
/// pieces and removes those it covers, so this is O(n log n).
fn paint<A: Address>(mut rows: Vec<Located<A, Asn>>) -> Result<Vec<Located<A, Asn>>, Conflict> {
    let size = |(first, last): (u128, u128)| last - first;
    // Stable: rows of one size stay in file order.
    rows.sort_by_key(|r| std::cmp::Reverse(size((r.start.to_int(), r.end.to_int()))));
    let mut pieces: BTreeMap<u128, Piece> = BTreeMap::new();
    for row in &rows {
        let (start, end) = (row.start.to_int(), row.end.to_int());
        let before = pieces.range(..start).next_back().filter(|(_, p)| p.0 >= start).map(|(&s, _)| s);
        let covered: Vec<u128> = before.into_iter().chain(pieces.range(start..=end).map(|(&s, _)| s)).collect();
        for s in covered {
            let (e, asn, from, loc) = pieces.remove(&s).expect("a piece just found");
            if asn != row.label && size(from) == size((start, end)) {
                let show = |(s, e): (u128, u128), asn: Asn| {
                    format!("{}-{} AS{asn}", A::from_int(s).into(), A::from_int(e).into())
                };
                return Err(Conflict([(show(from, asn), loc), (show((start, end), row.label), row.loc)]));
            }
            if s < start {
                pieces.insert(s, (start - 1, asn, from, loc));
            }
            if e > end {
                pieces.insert(end + 1, (e, asn, from, loc));
            }
        }
        pieces.insert(start, (end, row.label, (start, end), row.loc));
    }
    let located =
        |(s, (e, label, _, loc)): (u128, Piece)| Located { start: A::from_int(s), end: A::from_int(e), label, loc };
    Ok(pieces.into_iter().map(located).collect())
}

#[cfg(test)]
mod tests;
