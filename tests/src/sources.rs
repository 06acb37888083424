//! Source addresses of known countries, for spoofed traffic.
//!
//! Hardcoded, then checked against the data `geoblock run` loads (through
//! `geoblock lookup`), so a data update that moves one fails clearly here
//! instead of as a puzzling count mismatch.

use std::{net::IpAddr, sync::OnceLock};

use crate::geoblock;

/// `(country, address)`: an IPv4 and an IPv6 source per country, in
/// long-stable allocations of large operators.
pub const SOURCES: &[(&str, &str)] = &[
    ("CN", "1.0.1.1"),
    ("CN", "240e::1"),
    ("RU", "77.88.8.8"),
    ("RU", "2a02:6b8::1"),
    ("KP", "175.45.176.1"),
    ("KP", "2a11:f145::1"),
    ("DE", "88.198.0.1"),
    ("DE", "2a01:4f8::1"),
    ("US", "12.0.0.1"),
    ("US", "2600::1"),
    ("FR", "90.0.0.1"),
    ("FR", "2a01:cb00::1"),
];

/// Every source in [`SOURCES`], after checking each against `geoblock
/// lookup` (once per process).
pub fn all() -> &'static [(&'static str, IpAddr)] {
    static CHECKED: OnceLock<Vec<(&'static str, IpAddr)>> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let sources: Vec<(&str, IpAddr)> =
            SOURCES.iter().map(|&(cc, a)| (cc, a.parse().expect("source address"))).collect();
        let addrs: Vec<IpAddr> = sources.iter().map(|&(_, a)| a).collect();
        let found = geoblock::lookup(&addrs);
        let wrong: Vec<String> = sources
            .iter()
            .zip(&found)
            .filter(|((cc, _), got)| got.as_deref() != Some(*cc))
            .map(|((cc, a), got)| format!("{a}: expected {cc}, data says {}", got.as_deref().unwrap_or("-")))
            .collect();
        assert!(
            wrong.is_empty(),
            "the embedded data moved some test sources (update tests/src/sources.rs):\n  {}",
            wrong.join("\n  ")
        );
        sources
    })
}

/// The IPv4 and IPv6 source of `cc`.
pub fn of(cc: &str) -> [IpAddr; 2] {
    let mut it = all().iter().filter(|(c, _)| *c == cc).map(|&(_, a)| a);
    let v4 = it.next().unwrap_or_else(|| panic!("no test source for {cc}"));
    let v6 = it.next().unwrap_or_else(|| panic!("no IPv6 test source for {cc}"));
    [v4, v6]
}

/// The IPv4 and IPv6 addresses `n` after those of [`of`]`(cc)`, checked to
/// be `cc`'s too: more addresses of a country, none of them [`of`]'s.
pub fn after(cc: &str, n: u8) -> [IpAddr; 2] {
    let [v4, v6] = of(cc).map(|ip| match ip {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) + u32::from(n)).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) + u128::from(n)).into()),
    });
    let found = geoblock::lookup(&[v4, v6]);
    let want = Some(cc.to_string());
    assert!(found == [want.clone(), want], "{v4} and {v6}, {n} after the {cc} sources, must be {cc} too: {found:?}");
    [v4, v6]
}
