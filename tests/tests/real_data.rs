//! Vendors' files as they ship them, loaded by the real daemon and enforced
//! on real frames: Debian's `tor-geoipdb` (Tor's geoip files) writes `UK`
//! for the United Kingdom and keeps `AN` for the Netherlands Antilles. Needs
//! root and the Debian package registry; fails (never skips) without them.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::Path,
    time::Duration,
};

use geoblock_tests::{
    geoblock::{self, Daemon},
    netns::Pair,
    registry,
    traffic::{Receiver, Sender},
};

const COUNT: usize = 7;

/// The first address of the first row of `file` whose country is `cc`
/// (Tor's IPv4 file writes integers, its IPv6 file addresses).
fn first_of(file: &Path, cc: &str) -> IpAddr {
    let text = std::fs::read_to_string(file).expect("reading Tor's geoip file");
    let start = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_suffix(&format!(",{cc}"))?.split(',').next())
        .unwrap_or_else(|| panic!("no {cc} row in {}", file.display()));
    start.parse::<u32>().map_or_else(|_| start.parse().expect("an address"), |n| Ipv4Addr::from(n).into())
}

#[test]
fn tor_geoip_reserved_codes_are_enforced_as_their_country() {
    let [v4, v6] = registry::tor_geoip();
    let (uk4, uk6, an4, de4) = (first_of(&v4, "UK"), first_of(&v6, "UK"), first_of(&v4, "AN"), first_of(&v4, "DE"));
    let pair = Pair::create();
    let data = ["--data", v4.to_str().unwrap(), "--data", v6.to_str().unwrap()];
    let daemon =
        Daemon::start(&pair.receiver, &geoblock::run_args(&pair, &[&["--block", "GB,AN"][..], &data].concat()));
    let log = daemon.log();
    assert!(log.contains("rows under reserved codes read as their country"), "loading says nothing of UK:\n{log}");

    let (receiver, sender) = (Receiver::new(&pair), Sender::new(&pair));
    for src in [uk4, uk6, an4, de4] {
        sender.send(src, COUNT);
    }
    let got = receiver.collect(Duration::from_millis(500));
    assert_eq!(got.get(&de4), Some(&COUNT), "DE must pass: {got:?}");
    for blocked in [uk4, uk6, an4] {
        assert_eq!(got.get(&blocked), None, "{blocked} (UK or AN in Tor's data) must be dropped: {got:?}");
    }
    let stats = daemon.stats();
    assert_eq!(stats.country("GB").dropped_packets, 2 * COUNT as u64, "UK rows count as GB");
    assert_eq!(stats.country("AN").dropped_packets, COUNT as u64);
    geoblock::stop_and_detach(&pair, daemon);
}
