//! Selectors for the kernel tests and the benchmark: the world's AS table
//! (ip-location-db's, from npm: ASN data: ip-location-db (CC BY 4.0),
//! RouteViews), ASes picked from it, and address lists made around them.
//!
//! The CSVs are read minimally here rather than by geoblock's AS sources:
//! the tests compare the kernel with the userspace reference on some AS
//! table, and only need one of the world's shape.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    path::Path,
    sync::OnceLock,
};

use geoblock::data::{
    asn::{Asn, AsnData},
    list::AddressList,
    table::Table,
};
use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use rand::{rngs::StdRng, seq::IndexedRandom as _};

use crate::bench::workload::random_in;

/// The world's AS table, read once per process (a few seconds).
pub fn world_asn() -> &'static AsnData {
    static DATA: OnceLock<AsnData> = OnceLock::new();
    DATA.get_or_init(|| {
        let [v4, v6] = crate::registry::asn_ranges();
        let mut orgs = BTreeMap::new();
        let v4 = read_ranges(&v4, 32, &mut orgs, |start, len| Ipv4Network::new((start as u32).into(), len).unwrap());
        let v6 = read_ranges(&v6, 128, &mut orgs, |start, len| Ipv6Network::new(start.into(), len).unwrap());
        // The AS sources will add what they were read from.
        #[allow(clippy::needless_update)]
        AsnData { table: Table { v4, v6 }, orgs, ..AsnData::default() }
    })
}

/// The prefixes of a `start,end,asn,org` file of `bits`-bit addresses,
/// sorted and disjoint: a row overlapping the one before keeps only what
/// that one left (one row of the world's does).
fn read_ranges<N>(
    path: &Path,
    bits: u32,
    orgs: &mut BTreeMap<Asn, String>,
    net: impl Fn(u128, u8) -> N,
) -> Vec<(N, Asn)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut rows: Vec<(u128, u128, Asn)> = text
        .lines()
        .enumerate()
        .map(|(at, line)| {
            let bad = || -> ! { panic!("{}:{}: not start,end,asn,org: {line}", path.display(), at + 1) };
            let mut fields = line.splitn(4, ',');
            let mut addr = || match fields.next().and_then(|f| f.parse::<IpAddr>().ok()) {
                Some(IpAddr::V4(a)) => u128::from(u32::from(a)),
                Some(IpAddr::V6(a)) => u128::from(a),
                None => bad(),
            };
            let (start, end) = (addr(), addr());
            let asn: Asn = fields.next().and_then(|f| f.parse().ok()).unwrap_or_else(|| bad());
            orgs.entry(asn).or_insert_with(|| fields.next().unwrap_or_default().trim_matches('"').to_string());
            (start, end, asn)
        })
        .collect();
    rows.sort_unstable();
    let mut out = Vec::with_capacity(rows.len());
    let mut next = 0u128;
    for (start, end, asn) in rows {
        let start = start.max(next);
        if start > end || asn == 0 {
            continue;
        }
        cidrs(start, end, bits, |first, len| out.push((net(first, len), asn)));
        next = end.saturating_add(1);
    }
    out
}

/// The fewest prefixes covering `start..=end` exactly, in order.
fn cidrs(mut start: u128, end: u128, bits: u32, mut each: impl FnMut(u128, u8)) {
    loop {
        let aligned = if start == 0 { bits } else { start.trailing_zeros().min(bits) };
        // log2 of the largest power of two within the rest of the range.
        let fits = (end - start).checked_add(1).map_or(128, |n| 127 - n.leading_zeros());
        let k = aligned.min(fits);
        each(start, (bits - k) as u8);
        let last = start + u128::MAX.checked_shr(128 - k).unwrap_or(0);
        if last >= end {
            return;
        }
        start = last + 1;
    }
}

/// A named list of `nets`: the one place the tests make lists.
pub fn address_list(name: &str, nets: impl IntoIterator<Item = IpNetwork>) -> AddressList {
    let (mut v4, mut v6) = (vec![], vec![]);
    for net in nets {
        match net {
            IpNetwork::V4(n) => v4.push(n),
            IpNetwork::V6(n) => v6.push(n),
        }
    }
    v4.sort();
    v6.sort();
    AddressList { name: name.into(), v4, v6 }
}

/// Addresses each AS holds: IPv4 addresses, and IPv6 /64s (saturating).
fn sizes(asn: &AsnData) -> BTreeMap<Asn, u128> {
    let mut sizes = BTreeMap::new();
    for (net, a) in &asn.table.v4 {
        *sizes.entry(*a).or_default() += 1u128 << (32 - net.prefix());
    }
    for (net, a) in &asn.table.v6 {
        let size: &mut u128 = sizes.entry(*a).or_default();
        *size = size.saturating_add(1u128.checked_shl(64u32.saturating_sub(net.prefix().into())).unwrap_or(1));
    }
    sizes
}

/// `n` distinct ASes of the table, large and small: a quarter among the
/// `n` largest, a quarter among the next `20 n`, half among the rest.
pub fn pick_asns(asn: &AsnData, n: usize, rng: &mut StdRng) -> Vec<Asn> {
    let mut by_size: Vec<(u128, Asn)> = sizes(asn).into_iter().map(|(a, s)| (s, a)).collect();
    by_size.sort_unstable_by(|a, b| b.cmp(a));
    let ranked: Vec<Asn> = by_size.into_iter().map(|(_, a)| a).collect();
    let tiers = [(0, n, n / 4), (n, 21 * n, n / 4), (21 * n, ranked.len(), n - 2 * (n / 4))];
    let mut picked = BTreeSet::new();
    for (from, to, count) in tiers {
        let tier = &ranked[from.min(ranked.len())..to.min(ranked.len())];
        assert!(tier.len() >= count, "the AS table has too few ASes to pick {n}");
        picked.extend(tier.choose_multiple(rng, count).copied());
    }
    picked.into_iter().collect()
}

/// A list of `n` entries (about): IPv4 /32s (60 %) and /24s (15 %), IPv6
/// /48s (25 %), half of them inside prefixes of `near` (so that the list
/// and those ASes overlap), the rest inside any AS's prefixes.
pub fn random_list(name: &str, asn: &AsnData, near: &[Asn], n: usize, rng: &mut StdRng) -> AddressList {
    let near: BTreeSet<Asn> = near.iter().copied().collect();
    let v4 = asn.table.v4.iter().map(|(p, a)| (IpNetwork::V4(*p), *a));
    let v6 = asn.table.v6.iter().map(|(p, a)| (IpNetwork::V6(*p), *a));
    let (near4, all): (Vec<_>, Vec<_>) = v4.map(|(p, a)| (near.contains(&a).then_some(p), p)).unzip();
    let (near6, all6): (Vec<_>, Vec<_>) = v6.map(|(p, a)| (near.contains(&a).then_some(p), p)).unzip();
    let (near4, near6): (Vec<IpNetwork>, Vec<IpNetwork>) =
        (near4.into_iter().flatten().collect(), near6.into_iter().flatten().collect());
    let mut nets = BTreeSet::new();
    for i in 0..n {
        let (pools, len) = match i % 20 {
            0..12 => ([&near4, &all], 32),
            12..15 => ([&near4, &all], 24),
            _ => ([&near6, &all6], 48),
        };
        let pool = if i % 2 == 0 && !pools[0].is_empty() { pools[0] } else { pools[1] };
        let within = *pool.choose(rng).expect("an AS table with prefixes");
        nets.insert(IpNetwork::new(random_in(within, rng), len).map(network).unwrap());
    }
    // Disjoint, as a list's prefixes are: no /32 inside a /24 of the list.
    let wide: BTreeSet<IpNetwork> = nets.iter().filter(|n| n.prefix() == 24).copied().collect();
    let covered = |n: &IpNetwork| n.prefix() == 32 && wide.contains(&network(IpNetwork::new(n.ip(), 24).unwrap()));
    let kept: Vec<IpNetwork> = nets.iter().filter(|n| !covered(n)).copied().collect();
    address_list(name, kept)
}

/// `net` with its host bits cleared.
fn network(net: IpNetwork) -> IpNetwork {
    IpNetwork::new(net.network(), net.prefix()).unwrap()
}

#[cfg(test)]
mod tests {
    use super::cidrs;

    fn of(start: u128, end: u128, bits: u32) -> Vec<(u128, u8)> {
        let mut out = vec![];
        cidrs(start, end, bits, |first, len| out.push((first, len)));
        out
    }

    #[test]
    fn ranges_become_the_fewest_prefixes() {
        assert_eq!(of(0, u32::MAX.into(), 32), [(0, 0)]);
        assert_eq!(of(0, u128::MAX, 128), [(0, 0)]);
        assert_eq!(of(0x0100_0000, 0x0100_00ff, 32), [(0x0100_0000, 24)]);
        assert_eq!(of(1, 6, 32), [(1, 32), (2, 31), (4, 31), (6, 32)]);
        assert_eq!(of(u32::MAX.into(), u32::MAX.into(), 32), [(u32::MAX.into(), 32)]);
        assert_eq!(of(u128::MAX - 1, u128::MAX, 128), [(u128::MAX - 1, 127)]);
    }
}
