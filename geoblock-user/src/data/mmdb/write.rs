//! A minimal MMDB writer following the MaxMind DB format 2.0 spec: an IPv6
//! tree (IPv4 at `::/96`) with 32-bit records, one data record per country
//! (`{"country": {"iso_code": "XX"}}` or another path), and the metadata map.
//!
//! It exists so tests and benchmarks can make databases of known content; no
//! maintained Rust crate writes MMDB (the Go and Perl writers are MaxMind's).

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{self, Write},
};

use geoblock_common::CountryId;

use crate::{country, data::table::Table};

const METADATA_MARKER: &[u8] = b"\xab\xcd\xefMaxMind.com";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Record<L> {
    Empty,
    Node(u32),
    Data(L),
}

/// The database of `table`, as MaxMind's reader expects it, the country code
/// at `path` in each record (`["country", "iso_code"]` as GeoLite2 has it).
pub fn write(table: &Table, path: &[&str], database_type: &str, build_epoch: u64) -> Vec<u8> {
    let countries = table.v4.iter().map(|&(_, c)| c).chain(table.v6.iter().map(|&(_, c)| c)).collect();
    let (data, offsets) = data_section(countries, path);
    write_records(table, &data, &offsets, database_type, build_epoch)
}

/// A GeoLite2-ASN-like database of `table`: each AS's record holds
/// `autonomous_system_number` and, where `orgs` names it,
/// `autonomous_system_organization`.
pub fn write_asn(table: &Table<u32>, orgs: &BTreeMap<u32, String>, build_epoch: u64) -> Vec<u8> {
    let ases: BTreeSet<u32> = table.v4.iter().map(|&(_, a)| a).chain(table.v6.iter().map(|&(_, a)| a)).collect();
    let mut data = Vec::new();
    let mut offsets = BTreeMap::new();
    for asn in ases {
        offsets.insert(asn, data.len() as u32);
        let org = orgs.get(&asn);
        map(&mut data, 1 + usize::from(org.is_some()));
        string(&mut data, "autonomous_system_number");
        uint(&mut data, 6, asn.into());
        if let Some(org) = org {
            string(&mut data, "autonomous_system_organization");
            string(&mut data, org);
        }
    }
    write_records(table, &data, &offsets, "GeoLite2-ASN", build_epoch)
}

/// The tree of `table` over a data section in which each label's record is at `offsets`.
fn write_records<L: Copy + Ord>(
    table: &Table<L>,
    data: &[u8],
    offsets: &BTreeMap<L, u32>,
    database_type: &str,
    build_epoch: u64,
) -> Vec<u8> {
    let mut tree = vec![[Record::Empty; 2]];
    for &(net, c) in &table.v6 {
        insert(&mut tree, u128::from(net.network()), net.prefix(), c);
    }
    for &(net, c) in &table.v4 {
        insert(&mut tree, u128::from(u32::from(net.network())), 96 + net.prefix(), c);
    }
    let node_count = tree.len() as u32;
    let value = |r: Record<L>| match r {
        Record::Empty => node_count,
        Record::Node(i) => i,
        Record::Data(c) => node_count + 16 + offsets[&c],
    };
    let mut out = Vec::with_capacity(tree.len() * 8 + data.len() + 512);
    let records = tree.iter().map(|node| node.map(value));
    assemble(&mut out, node_count, records, data, database_type, build_epoch).expect("writing to memory");
    out
}

/// A database of `nodes` nodes in one complete binary tree (heap order),
/// whose leaves take turns among `countries`: as many networks as a
/// database of its size can describe, none reached twice. No vendor ships
/// such a thing: it is a hostile input of the tests and benchmarks,
/// written as it is made (it may be as large as a source may be).
pub fn write_complete(out: impl Write, nodes: u32, path: &[&str], countries: &[CountryId]) -> io::Result<()> {
    let (data, offsets) = data_section(countries.iter().copied().collect(), path);
    let leaf = |i: u64| offsets[&countries[(i % countries.len() as u64) as usize]];
    assemble(io::BufWriter::new(out), nodes, complete_tree(nodes, leaf), &data, "geoblock-Complete-Tree", 0)
}

/// A database of `networks` networks (one complete tree), each with a record
/// of its own, `{"country": …}` pointing to one shared map of `entries` keys
/// and no country code: reading each record visits that whole map. The
/// other hostile database of the tests and benchmarks.
pub fn write_distinct(out: impl Write, networks: u32, entries: u16) -> io::Result<()> {
    let mut data = Vec::new();
    map(&mut data, entries.into());
    for i in 0..entries {
        string(&mut data, &format!("k{i:05}"));
        uint(&mut data, 5, i.into());
    }
    let shared = data.len() as u32;
    // {"country": pointer to offset 0}: 11 bytes each.
    const RECORD: [u8; 11] = [0xe1, 0x47, b'c', b'o', b'u', b'n', b't', b'r', b'y', 0x20, 0x00];
    for _ in 0..networks {
        data.extend_from_slice(&RECORD);
    }
    let leaf = |i: u64| shared + i as u32 * RECORD.len() as u32;
    let nodes = networks - 1;
    assemble(io::BufWriter::new(out), nodes, complete_tree(nodes, leaf), &data, "geoblock-Distinct-Records", 0)
}

/// The records of a complete tree of `nodes` nodes in heap order: node `n`'s
/// children are `2n + 1` and `2n + 2`; past the last node, a child is the
/// `i`th leaf, whose data is at `leaf(i)`.
fn complete_tree(nodes: u32, leaf: impl Fn(u64) -> u32) -> impl Iterator<Item = [u32; 2]> {
    let record = move |child: u64| match u32::try_from(child).ok().filter(|&c| c < nodes) {
        Some(node) => node,
        None => nodes + 16 + leaf(child - u64::from(nodes)),
    };
    (0..u64::from(nodes)).map(move |n| [record(2 * n + 1), record(2 * n + 2)])
}

/// Search tree (32-bit records), data section and metadata.
fn assemble(
    mut out: impl Write,
    node_count: u32,
    records: impl Iterator<Item = [u32; 2]>,
    data: &[u8],
    database_type: &str,
    build_epoch: u64,
) -> io::Result<()> {
    for [left, right] in records {
        out.write_all(&left.to_be_bytes())?;
        out.write_all(&right.to_be_bytes())?;
    }
    out.write_all(&[0; 16])?;
    out.write_all(data)?;
    out.write_all(METADATA_MARKER)?;
    let mut meta = Vec::new();
    metadata(&mut meta, node_count, database_type, build_epoch);
    out.write_all(&meta)?;
    out.flush()
}

/// Sets the `len`-bit prefix of `bits` (as a 128-bit address) to `label`.
fn insert<L: Copy>(tree: &mut Vec<[Record<L>; 2]>, bits: u128, len: u8, label: L) {
    let mut node = 0usize;
    for depth in 0..u32::from(len) {
        let side = ((bits >> (127 - depth)) & 1) as usize;
        if depth + 1 == u32::from(len) {
            tree[node][side] = Record::Data(label);
            return;
        }
        node = match tree[node][side] {
            Record::Node(i) => i as usize,
            // A shorter prefix already here: push its data down a level.
            other => {
                tree.push([other; 2]);
                let i = tree.len() - 1;
                tree[node][side] = Record::Node(i as u32);
                i
            }
        };
    }
}

/// One record per country; the offset of each.
fn data_section(countries: BTreeSet<CountryId>, path: &[&str]) -> (Vec<u8>, BTreeMap<CountryId, u32>) {
    let mut data = Vec::new();
    let mut offsets = BTreeMap::new();
    for c in countries {
        offsets.insert(c, data.len() as u32);
        for key in path {
            map(&mut data, 1);
            string(&mut data, key);
        }
        string(&mut data, country::code(c));
    }
    (data, offsets)
}

fn metadata(out: &mut Vec<u8>, node_count: u32, database_type: &str, build_epoch: u64) {
    map(out, 9);
    string(out, "binary_format_major_version");
    uint(out, 5, 2);
    string(out, "binary_format_minor_version");
    uint(out, 5, 0);
    string(out, "build_epoch");
    extended_uint(out, 2, build_epoch); // uint64 is extended type 9
    string(out, "database_type");
    string(out, database_type);
    string(out, "description");
    map(out, 1);
    string(out, "en");
    string(out, "written by geoblock for tests and benchmarks");
    string(out, "ip_version");
    uint(out, 5, 6);
    string(out, "languages");
    out.extend_from_slice(&[0x00, 0x04]); // empty array: extended type 11, size 0
    string(out, "node_count");
    uint(out, 6, node_count.into());
    string(out, "record_size");
    uint(out, 5, 32);
}

/// Control byte(s): type in the top 3 bits, size in the low 5 (with the spec's extensions).
fn control(out: &mut Vec<u8>, kind: u8, size: usize) {
    let head = kind << 5;
    match size {
        0..29 => out.push(head | size as u8),
        29..285 => out.extend_from_slice(&[head | 29, (size - 29) as u8]),
        _ => {
            let n = (size - 285) as u16;
            out.push(head | 30);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

fn string(out: &mut Vec<u8>, s: &str) {
    control(out, 2, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn map(out: &mut Vec<u8>, entries: usize) {
    control(out, 7, entries);
}

/// An unsigned integer of type 5 (uint16) or 6 (uint32), in its fewest bytes.
fn uint(out: &mut Vec<u8>, kind: u8, n: u64) {
    let bytes = n.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    control(out, kind, 8 - skip);
    out.extend_from_slice(&bytes[skip..]);
}

/// An extended type (type number - 7 in the byte after the control byte).
fn extended_uint(out: &mut Vec<u8>, extended: u8, n: u64) {
    let bytes = n.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    out.push((8 - skip) as u8);
    out.push(extended);
    out.extend_from_slice(&bytes[skip..]);
}
