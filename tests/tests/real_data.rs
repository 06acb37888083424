//! Vendors' files as they ship them, loaded by the real daemon and enforced
//! on real frames. Needs root and the Debian and npm registries; fails (never
//! skips) without them.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::Path,
    time::Duration,
};

use geoblock_tests::{
    geoblock::{self, Daemon},
    netns::Pair,
    registry, sources,
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

/// Debian's `tor-geoipdb` (Tor's geoip files) writes `UK` for the United
/// Kingdom and keeps `AN` for the Netherlands Antilles.
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

/// ip-location-db's DB-IP MMDB keeps the code in `country_code`, a layout
/// found without `--mmdb-field`.
#[test]
fn dbip_mmdb_country_field_is_found_and_enforced() {
    let mmdb = registry::dbip_country_mmdb();
    let pair = Pair::create();
    let daemon =
        Daemon::start(&pair.receiver, &geoblock::run_args(&pair, &["--block", "CN", "--data", mmdb.to_str().unwrap()]));
    let log = daemon.log();
    assert!(log.contains("countries from the field country_code"), "loading does not say where countries are:\n{log}");

    let (receiver, sender) = (Receiver::new(&pair), Sender::new(&pair));
    let flows: Vec<(&str, IpAddr)> =
        ["CN", "DE"].iter().flat_map(|&cc| sources::of(cc).map(move |src| (cc, src))).collect();
    for &(_, src) in &flows {
        sender.send(src, COUNT);
    }
    let got = receiver.collect(Duration::from_millis(500));
    for (cc, src) in flows {
        let want = if cc == "CN" { None } else { Some(&COUNT) };
        assert_eq!(got.get(&src), want, "{cc} {src} with DB-IP's MMDB and --block CN: {got:?}");
    }
    assert_eq!(daemon.stats().country("CN").dropped_packets, 2 * COUNT as u64);
    geoblock::stop_and_detach(&pair, daemon);
}
