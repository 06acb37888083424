//! Selectors for the kernel tests and the benchmark: the world's AS table
//! (ip-location-db's, from npm: ASN data: ip-location-db (CC BY 4.0),
//! RouteViews, read by geoblock's own AS reader), ASes picked from it, and
//! address lists made around them.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::OnceLock,
};

use geoblock::data::{
    asn::{self, Asn, AsnData},
    list::AddressList,
};
use ipnetwork::IpNetwork;
use rand::{rngs::StdRng, seq::IndexedRandom as _};

use crate::bench::workload::random_in;

/// The world's AS table, read once per process (a few seconds).
pub fn world_asn() -> &'static AsnData {
    static DATA: OnceLock<AsnData> = OnceLock::new();
    DATA.get_or_init(|| {
        let files = crate::registry::ip_location_db_asn();
        asn::load(&files).unwrap_or_else(|e| panic!("reading the world's AS data: {e}"))
    })
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
    AddressList { name: name.into(), v4, v6, info: Default::default() }
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
