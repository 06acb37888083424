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

/// The first and last address of the first row of the `start,end,cc`
/// file `file` whose country is `cc` (Tor's IPv4 file writes integers, its
/// IPv6 file and ip-location-db's files addresses).
fn row_of(file: &Path, cc: &str) -> [IpAddr; 2] {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
    let row = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_suffix(&format!(",{cc}"))?.split_once(','))
        .unwrap_or_else(|| panic!("no {cc} row in {}", file.display()));
    let addr = |a: &str| a.parse::<u32>().map_or_else(|_| a.parse().expect("an address"), |n| Ipv4Addr::from(n).into());
    [addr(row.0), addr(row.1)]
}

fn first_of(file: &Path, cc: &str) -> IpAddr {
    row_of(file, cc)[0]
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

/// The prefixes the daemon says it loaded: (IPv4, IPv6).
fn loaded_prefixes(log: &str) -> (usize, usize) {
    let line = log.lines().find(|l| l.contains("loaded ") && l.contains(" IPv6 prefixes"));
    let line = line.unwrap_or_else(|| panic!("the daemon does not say what it loaded:\n{log}"));
    let counts: Vec<usize> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    match counts[..] {
        [v4, v6, ..] => (v4, v6),
        _ => panic!("no prefix counts in {line:?}"),
    }
}

/// GeoLite2 in `data` enforced by the real daemon with `--block CN,RU`: the
/// ends of the first GeoLite2 range of CN and RU (blocked) and DE and US
/// (allowed), IPv4 and IPv6. Gives the daemon's log.
fn geolite2_is_enforced(data: &Path) -> String {
    let ranges = registry::geolite2_country_ranges();
    let mut flows: Vec<(&str, IpAddr)> = ["CN", "RU", "DE", "US"]
        .into_iter()
        .flat_map(|cc| ranges.iter().flat_map(move |file| row_of(file, cc).map(|src| (cc, src))))
        .collect();
    // A range of one address has one end.
    flows.dedup();
    let pair = Pair::create();
    let args = geoblock::run_args(&pair, &["--block", "CN,RU", "--data", data.to_str().unwrap()]);
    let daemon = Daemon::start(&pair.receiver, &args);
    let log = daemon.log();
    // GeoLite2 has about 580k IPv4 and 598k IPv6 networks.
    let (v4, v6) = loaded_prefixes(&log);
    assert!(v4 > 100_000 && v6 > 100_000, "{} loaded as only {v4} IPv4 and {v6} IPv6 prefixes", data.display());
    // With equal nodes shared, the world's tables take under half of what a trie can name.
    let out = daemon.control(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json");
    for family in ["trie_nodes_v4", "trie_nodes_v6"] {
        let nodes = status["status"]["data"][family].as_u64().unwrap_or(0);
        let room = 10_000..u64::from(geoblock_common::TRIE_MAX_NODES) / 2;
        assert!(room.contains(&nodes), "{}: {family} {nodes}, not in {room:?}: {status}", data.display());
    }

    let (receiver, sender) = (Receiver::new(&pair), Sender::new(&pair));
    for &(_, src) in &flows {
        sender.send(src, COUNT);
    }
    let got = receiver.collect(Duration::from_millis(500));
    for &(cc, src) in &flows {
        let want = if ["CN", "RU"].contains(&cc) { None } else { Some(&COUNT) };
        assert_eq!(got.get(&src), want, "{cc} {src} with {} and --block CN,RU: {got:?}", data.display());
    }
    let stats = daemon.stats();
    for cc in ["CN", "RU"] {
        let sent = flows.iter().filter(|&&(c, _)| c == cc).count() * COUNT;
        assert_eq!(stats.country(cc).dropped_packets, sent as u64, "{cc}: {}", stats.0);
    }
    geoblock::stop_and_detach(&pair, daemon);
    log
}

/// MaxMind's CSV zip as an operator downloads it: the blocks joined with
/// the English locations, the other locales and licence files ignored.
#[test]
fn geolite2_csv_zip_as_maxmind_ships_it_is_enforced() {
    geolite2_is_enforced(&registry::geolite2_country_csv_zip());
}

/// ip-location-db's GeoLite2 MMDB keeps the code in `country_code`.
#[test]
fn geolite2_mmdb_is_enforced() {
    let log = geolite2_is_enforced(&registry::geolite2_country_mmdb());
    assert!(log.contains("countries from the field country_code"), "loading does not say where countries are:\n{log}");
}
