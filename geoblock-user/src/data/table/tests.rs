use geoblock_common::{country_id, NO_COUNTRY};
use proptest::prelude::*;

use super::*;

fn id(code: &[u8; 2]) -> CountryId {
    country_id(*code).unwrap()
}

fn v4(start: &str, end: &str, c: &[u8; 2]) -> Range<Ipv4Addr> {
    Range { start: start.parse().unwrap(), end: end.parse().unwrap(), country: id(c) }
}

fn v6(start: &str, end: &str, c: &[u8; 2]) -> Range<Ipv6Addr> {
    Range { start: start.parse().unwrap(), end: end.parse().unwrap(), country: id(c) }
}

fn table_v4(ranges: Vec<Range<Ipv4Addr>>) -> Vec<String> {
    let t = Table::from_ranges(Ranges { v4: ranges, v6: vec![] }).unwrap();
    t.v4.iter().map(|(n, c)| format!("{n} {}", country::code(*c))).collect()
}

#[test]
fn aligned_range_is_one_prefix() {
    assert_eq!(table_v4(vec![v4("10.0.0.0", "10.0.0.255", b"DE")]), ["10.0.0.0/24 DE"]);
}

#[test]
fn unaligned_range_takes_the_fewest_blocks() {
    assert_eq!(
        table_v4(vec![v4("0.0.0.1", "0.0.0.6", b"DE")]),
        ["0.0.0.1/32 DE", "0.0.0.2/31 DE", "0.0.0.4/31 DE", "0.0.0.6/32 DE"]
    );
}

#[test]
fn whole_spaces_and_single_addresses() {
    let t = Table::from_ranges(Ranges {
        v4: vec![v4("0.0.0.0", "255.255.255.255", b"FR")],
        v6: vec![v6("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", b"JP")],
    })
    .unwrap();
    assert_eq!(t.v4, [("0.0.0.0/0".parse().unwrap(), id(b"FR"))]);
    assert_eq!(t.v6, [("::/0".parse().unwrap(), id(b"JP"))]);
    assert_eq!(t.ranges().v4, [v4("0.0.0.0", "255.255.255.255", b"FR")]);

    let single = vec![v4("255.255.255.255", "255.255.255.255", b"FR"), v4("0.0.0.0", "0.0.0.0", b"FR")];
    assert_eq!(table_v4(single), ["0.0.0.0/32 FR", "255.255.255.255/32 FR"]);
    let tail = Table::from_ranges(Ranges {
        v4: vec![],
        v6: vec![v6("8000::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", b"JP")],
    })
    .unwrap();
    assert_eq!(tail.v6.len(), 127);
}

#[test]
fn same_country_merges_different_country_stays() {
    let ranges = vec![
        v4("10.0.1.0", "10.0.1.255", b"DE"),
        v4("10.0.0.0", "10.0.0.255", b"DE"),
        v4("10.0.0.128", "10.0.0.200", b"DE"),
        v4("10.0.2.0", "10.0.3.255", b"FR"),
    ];
    assert_eq!(table_v4(ranges), ["10.0.0.0/23 DE", "10.0.2.0/23 FR"]);
}

#[test]
fn no_country_rows_are_not_loaded() {
    let ranges = vec![
        v4("10.0.0.0", "10.0.0.255", b"DE"),
        Range { country: NO_COUNTRY, ..v4("0.0.0.0", "255.255.255.255", b"DE") },
    ];
    assert_eq!(table_v4(ranges), ["10.0.0.0/24 DE"]);
}

#[test]
fn reversed_and_conflicting_ranges_are_named() {
    let reversed = Table::from_ranges(Ranges { v4: vec![v4("10.0.0.9", "10.0.0.1", b"DE")], v6: vec![] });
    assert_eq!(reversed.unwrap_err().to_string(), "range 10.0.0.9-10.0.0.1 DE ends before it starts");

    let overlap = vec![
        v4("10.0.0.0", "10.0.255.255", b"DE"),
        v4("10.0.0.0", "10.0.0.9", b"DE"),
        v4("10.0.1.0", "10.0.1.0", b"FR"),
    ];
    let err = Table::from_ranges(Ranges { v4: overlap, v6: vec![] }).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ranges 10.0.0.0-10.0.255.255 DE and 10.0.1.0-10.0.1.0 FR overlap but have different countries"
    );
}

/// `X::1` to `X:ffff:…:fffe` for X = 0, 1, …: 190 prefixes each.
fn many_prefixes(rows: usize) -> Vec<Range<Ipv6Addr>> {
    (0..rows as u128)
        .map(|x| {
            let base = x << 96;
            let start = Ipv6Addr::from(base + 1);
            Range { start, end: Ipv6Addr::from(base + low_mask(96) - 1), country: id(b"DE") }
        })
        .collect()
}

/// A few thousand rows can describe millions of prefixes: a table of more
/// than geoblock loads is refused as it is built, not held first.
#[test]
fn more_prefixes_than_geoblock_loads_are_refused() {
    let fits = MAX_PREFIXES / 190;
    let table = Table::from_ranges(Ranges { v4: vec![], v6: many_prefixes(fits) }).unwrap();
    assert_eq!(table.v6.len(), fits * 190);
    let err = Table::from_ranges(Ranges { v4: vec![], v6: many_prefixes(fits + 1) }).unwrap_err();
    assert_eq!(err, TableError::TooMany("IPv6"));
    assert!(err.to_string().starts_with("more than 2097152 IPv6 prefixes"), "{err}");
}

/// Single addresses laid over one large range cut it into up to 254
/// prefixes each: the combined table is held to the same limit.
#[test]
fn an_overlay_of_more_prefixes_than_geoblock_loads_is_refused() {
    let base =
        Table::from_ranges(Ranges { v4: vec![], v6: vec![v6("::", "7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", b"JP")] })
            .unwrap();
    let holes = |n: u128| {
        let v6 = (1..=n).map(|i| (Ipv6Network::new(Ipv6Addr::from(i << 100 | 1), 128).unwrap(), id(b"DE"))).collect();
        Table { v4: vec![], v6 }
    };
    // Each address and the rest of its 2^100 block: about 100 prefixes.
    let prefixes = |holes| base.overlay(&holes).map(|t| t.v6.len());
    assert_eq!(prefixes(holes(1_000)), Ok(101_022));
    assert_eq!(prefixes(holes(25_000)), Err(TableError::TooMany("IPv6")));
}

#[test]
fn lookup_finds_the_covering_prefix() {
    let t = Table::from_ranges(Ranges {
        v4: vec![v4("1.0.0.0", "1.0.0.255", b"AU"), v4("1.0.1.0", "1.0.3.255", b"CN")],
        v6: vec![v6("2001:db8::", "2001:db8::ffff", b"NL")],
    })
    .unwrap();
    let at = |s: &str| t.lookup(s.parse().unwrap()).map(|(n, c)| format!("{n} {}", country::code(c)));
    assert_eq!(at("1.0.0.7").as_deref(), Some("1.0.0.0/24 AU"));
    assert_eq!(at("1.0.2.9").as_deref(), Some("1.0.2.0/23 CN"));
    assert_eq!(at("1.0.4.0"), None);
    assert_eq!(at("0.255.255.255"), None);
    assert_eq!(at("2001:db8::1").as_deref(), Some("2001:db8::/112 NL"));
    assert_eq!(at("2001:db8::1:0"), None);
    assert_eq!(at("::1"), None);
    assert_eq!(t.counts(), PerFamily { v4: 3, v6: 1 });
    assert_eq!(t.counts_by_country()[&id(b"CN")], PerFamily { v4: 2, v6: 0 });
}

/// Canonical CIDR cover of [s, e] inside the block [base, base + 2^k): an
/// independent, recursive way to count the fewest prefixes.
fn min_prefixes(s: u128, e: u128, base: u128, k: u32) -> usize {
    let top = base + low_mask(k);
    if top < s || base > e {
        0
    } else if s <= base && top <= e {
        1
    } else {
        let half = base + (1u128 << (k - 1));
        min_prefixes(s, e, base, k - 1) + min_prefixes(s, e, half, k - 1)
    }
}

/// Disjoint, sorted (start, end, country) segments within `bits` bits, with
/// log-uniform gaps (often 0: adjacent) and lengths, over three countries.
fn segments(bits: u32) -> impl Strategy<Value = Vec<(u128, u128, CountryId)>> {
    let size = move || (0..=bits).prop_flat_map(|k| 0..=low_mask(k));
    let gap = prop_oneof![Just(0u128), size()];
    let country = prop::sample::select(vec![id(b"DE"), id(b"FR"), id(b"US")]);
    prop::collection::vec((gap, size(), country), 1..12).prop_map(move |raw| {
        let max = low_mask(bits);
        let mut out = Vec::new();
        let mut cursor = 0u128;
        for (gap, len, c) in raw {
            let Some(start) = cursor.checked_add(gap).filter(|&s| s <= max) else { break };
            let end = start.saturating_add(len).min(max);
            out.push((start, end, c));
            match end.checked_add(1).filter(|&n| n <= max) {
                Some(next) => cursor = next,
                None => break,
            }
        }
        out
    })
}

/// Rows for the segments (shuffled, some doubled by a same-country sub-range),
/// and probes: every boundary, its neighbours, and random addresses.
fn check_family<A: Address + std::fmt::Debug>(
    segs: &[(u128, u128, CountryId)],
    random: &[u128],
    extra: &[bool],
    build: impl Fn(Vec<Range<A>>) -> Vec<(A::Net, CountryId)>,
) -> Result<(), TestCaseError> {
    let max = low_mask(A::BITS);
    let mut rows: Vec<Range<A>> =
        segs.iter().map(|&(s, e, c)| Range { start: A::from_int(s), end: A::from_int(e), country: c }).collect();
    for (&(s, e, c), _) in segs.iter().zip(extra).filter(|(_, &x)| x) {
        rows.push(Range { start: A::from_int(s + (e - s) / 3), end: A::from_int(e - (e - s) / 3), country: c });
    }
    rows.reverse();
    let table = build(rows);

    let oracle = |ip: u128| segs.iter().find(|&&(s, e, _)| s <= ip && ip <= e).map(|&(_, _, c)| c);
    let mut probes: Vec<u128> = random.iter().map(|r| r & max).collect();
    for &(s, e, _) in segs {
        probes.extend([s, e, s + (e - s) / 2]);
        probes.extend(s.checked_sub(1));
        probes.extend(e.checked_add(1).filter(|&n| n <= max));
    }
    for ip in probes {
        let got = find(&table, A::from_int(ip)).map(|(_, c)| c);
        prop_assert_eq!(got, oracle(ip), "address {:?}", A::from_int(ip));
    }

    // Sorted, disjoint, aligned.
    for pair in table.windows(2) {
        prop_assert!(A::span(pair[0].0).1 < A::span(pair[1].0).0);
    }
    // Minimal: per maximal same-country run, exactly the canonical cover.
    let merged = ranges::<A>(&table);
    for r in &merged {
        let (s, e) = (r.start.to_int(), r.end.to_int());
        let used = table.iter().filter(|&&(n, _)| s <= A::span(n).0 && A::span(n).1 <= e).count();
        prop_assert_eq!(used, min_prefixes(s, e, 0, A::BITS));
    }
    Ok(())
}

proptest! {
    #[test]
    fn v4_prefixes_are_exact_and_minimal(
        segs in segments(32),
        random in prop::collection::vec(any::<u128>(), 32),
        extra in prop::collection::vec(any::<bool>(), 12),
    ) {
        check_family::<Ipv4Addr>(&segs, &random, &extra, |rows| prefixes(rows).unwrap())?;
    }

    #[test]
    fn v6_prefixes_are_exact_and_minimal(
        segs in segments(128),
        random in prop::collection::vec(any::<u128>(), 32),
        extra in prop::collection::vec(any::<bool>(), 12),
    ) {
        check_family::<Ipv6Addr>(&segs, &random, &extra, |rows| prefixes(rows).unwrap())?;
    }

    #[test]
    fn ranges_of_a_table_rebuild_it(segs in segments(32)) {
        let rows = segs.iter().map(|&(s, e, c)| Range { start: Ipv4Addr::from_int(s), end: Ipv4Addr::from_int(e), country: c });
        let table = Table::from_ranges(Ranges { v4: rows.collect(), v6: vec![] }).unwrap();
        prop_assert_eq!(Table::from_ranges(table.ranges()).unwrap(), table);
    }
}
