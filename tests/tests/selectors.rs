//! Selectors end to end: the real `geoblock run` with `--asn-data` and
//! `--list`, rules that block or allow an autonomous system or a list
//! beside countries, and real frames from addresses of the embedded data
//! (DE, FR, CN) at the edges of the AS rows and list entries: exactly the
//! selector's addresses get its verdict, counted per selector. Needs root;
//! fails (never skips) without it.
//!
//! The AS data is written in ip-location-db's layout (`start,end,asn,org`)
//! around the test sources, so its edges are known; the real data is
//! loaded by the real-data tests.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use geoblock_common::CountryCounters;
use geoblock_tests::{
    geoblock::{self, run_args, ConfigFile, Daemon, Scratch, Stats},
    http::FileServer,
    netns::Pair,
    sources,
    traffic::deliveries,
};

/// Datagrams sent per source.
const COPIES: usize = 4;
/// How long a refreshed list may take to be enforced on a loaded machine.
const REFRESHED: Duration = Duration::from_secs(20);

/// `ip` moved by `n` addresses (within its family).
fn plus(ip: IpAddr, n: i64) -> IpAddr {
    match ip {
        IpAddr::V4(a) => IpAddr::V4(((u32::from(a) as i64 + n) as u32).into()),
        IpAddr::V6(a) => IpAddr::V6(((u128::from(a) as i128 + n as i128) as u128).into()),
    }
}

/// The AS rows around the DE sources, per family: AS64500 holds the
/// source and the 15 addresses after it, AS64501 the 16 after those; the
/// address before the source has no AS.
fn asn_files(files: &Scratch) -> Vec<String> {
    let [de4, de6] = sources::of("DE");
    let rows = |ip: IpAddr| {
        format!(
            "{},{},64500,Test Partner GmbH\n{},{},64501,\"Other, Inc.\"\n",
            ip,
            plus(ip, 15),
            plus(ip, 16),
            plus(ip, 31)
        )
    };
    vec![files.file("asn-ipv4.csv", &rows(de4)), files.file("asn-ipv6.csv", &rows(de6))]
}

/// Sends [`COPIES`] datagrams from each of `srcs` and returns how many of
/// each were delivered.
fn delivered(pair: &Pair, srcs: &[IpAddr]) -> BTreeMap<IpAddr, usize> {
    deliveries(pair, srcs, COPIES)
}

/// Asserts that exactly the `dropped` sources of `srcs` were dropped.
fn assert_fates(pair: &Pair, daemon: &Daemon, srcs: &[IpAddr], dropped: &[IpAddr]) {
    let got = delivered(pair, srcs);
    let wrong: Vec<String> = got
        .iter()
        .filter(|(src, n)| **n != if dropped.contains(src) { 0 } else { COPIES })
        .map(|(src, n)| {
            format!("{src}: {n} of {COPIES} delivered, expected {}", if dropped.contains(src) { 0 } else { COPIES })
        })
        .collect();
    assert!(wrong.is_empty(), "{}\n{}", wrong.join("\n"), daemon.log());
}

fn start(pair: &Pair, config: &ConfigFile, data: &[&str]) -> Daemon {
    let mut args = vec!["--config", config.arg()];
    args.extend_from_slice(data);
    Daemon::start(&pair.receiver, &run_args(pair, &args))
}

/// A daemon on a new pair, with the rules `config` and the AS rows of
/// [`asn_files`] (the files and config live as long as what is returned).
fn start_with_asn(config: &str) -> (Pair, Scratch, ConfigFile, Daemon) {
    let (pair, files, config) = (Pair::create(), Scratch::new("selectors"), ConfigFile::new(config));
    let asn = asn_files(&files);
    let args: Vec<&str> = asn.iter().flat_map(|f| ["--asn-data", f.as_str()]).collect();
    let daemon = start(&pair, &config, &args);
    (pair, files, config, daemon)
}

/// The inbound counters of the selector `name` in `stats --json`.
fn selector(stats: &Stats, name: &str) -> CountryCounters {
    let all = stats.0["selectors"].as_array().unwrap_or_else(|| panic!("no selectors in stats: {}", stats.0));
    let counters = all.iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("no {name} in stats: {}", stats.0));
    serde_json::from_value(counters.clone()).unwrap_or_else(|e| panic!("selector {name} in stats: {e}\n{}", stats.0))
}

/// A deny-list rule blocking one AS drops exactly that AS's addresses, v4
/// and v6: its first and last address, not the address before it (no AS)
/// nor the first of the next AS, though all are DE's; each drop counts
/// against the AS, and the passes of other addresses against none.
#[test]
fn a_deny_rule_on_one_as_drops_exactly_its_addresses() {
    let (pair, _files, _config, daemon) = start_with_asn("[[rule]]\nname = \"web\"\nblock = [\"AS64500\"]\n");
    let mut srcs = vec![];
    let mut dropped = vec![];
    for de in sources::of("DE") {
        dropped.extend([de, plus(de, 15)]);
        srcs.extend([de, plus(de, 15), plus(de, -1), plus(de, 16)]);
    }
    srcs.extend(sources::of("CN"));
    assert_fates(&pair, &daemon, &srcs, &dropped);
    let stats = daemon.stats();
    let as64500 = selector(&stats, "AS64500");
    assert_eq!(as64500.dropped_packets, (COPIES * dropped.len()) as u64, "AS64500: {}", stats.0);
    assert_eq!(as64500.passed_packets, 0, "AS64500 decides only its drops: {}", stats.0);
    assert_eq!(stats.rule("web").dropped_packets, as64500.dropped_packets, "the rule's drops: {}", stats.0);
    let out = daemon.control(&["explain", &sources::of("DE")[0].to_string()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("AS64500 (Test Partner GmbH)") && text.contains("AS64500 is blocked"), "explain:\n{text}");
    geoblock::stop_and_detach(&pair, daemon);
}

/// An allow-list of FR and AS64500 lets the AS's DE addresses through and
/// drops DE's other addresses and CN; FR passes.
#[test]
fn an_allowed_as_passes_an_allow_list_of_countries() {
    let (pair, _files, _config, daemon) = start_with_asn("[[rule]]\nname = \"api\"\nallow = [\"FR\", \"AS64500\"]\n");
    let (de, fr, cn) = (sources::of("DE"), sources::of("FR"), sources::of("CN"));
    let others: Vec<IpAddr> = de.iter().flat_map(|&ip| [plus(ip, 16), plus(ip, -1)]).collect();
    let srcs = [&de[..], &fr[..], &cn[..], &others[..]].concat();
    let dropped = [&cn[..], &others[..]].concat();
    assert_fates(&pair, &daemon, &srcs, &dropped);
    let stats = daemon.stats();
    assert_eq!(selector(&stats, "AS64500").passed_packets, (COPIES * 2) as u64, "AS64500: {}", stats.0);
    geoblock::stop_and_detach(&pair, daemon);
}

/// `list:tor` is blocked while its addresses' country is allowed: an
/// allow-list of DE that blocks the list drops the DE addresses on it
/// (a /32 and a /128 of a Tor-exit-style list, a /24 of a FireHOL netset
/// style list), and passes DE's others.
#[test]
fn a_blocked_list_wins_over_its_allowed_country() {
    let pair = Pair::create();
    let files = Scratch::new("selectors");
    let [de4, de6] = sources::of("DE");
    let (exit4, exit6) = (plus(de4, 1), plus(de6, 1));
    let tor = files.file("tor-exits.txt", &format!("# Tor bulk exit list\n{exit4}\n{exit6}\n"));
    let config = ConfigFile::new("[[rule]]\nname = \"api\"\nallow = [\"DE\"]\nblock = [\"list:tor\"]\n");
    let list = format!("tor={tor}");
    let daemon = start(&pair, &config, &["--list", &list]);
    let srcs = [de4, de6, exit4, exit6, plus(de4, 2), sources::of("CN")[0]];
    assert_fates(&pair, &daemon, &srcs, &[exit4, exit6, sources::of("CN")[0]]);
    let stats = daemon.stats();
    assert_eq!(selector(&stats, "list:tor").dropped_packets, (COPIES * 2) as u64, "list:tor: {}", stats.0);
    geoblock::stop_and_detach(&pair, daemon);
}

/// A reload whose config drops a list and the rule naming it is taken:
/// the list leaves with the rule, and its addresses pass again.
#[test]
fn a_reload_may_drop_a_list_with_its_rule() {
    let pair = Pair::create();
    let files = Scratch::new("selectors");
    let [de4, _] = sources::of("DE");
    let exit = plus(de4, 1);
    let tor = files.file("tor.txt", &format!("{exit}\n"));
    let with = format!("[lists]\ntor = \"{tor}\"\n[[rule]]\nname = \"api\"\nblock = [\"CN\", \"list:tor\"]\n");
    let config = ConfigFile::new(&with);
    let daemon = start(&pair, &config, &[]);
    assert_fates(&pair, &daemon, &[exit, de4], &[exit]);
    std::fs::write(&config.path, "[[rule]]\nname = \"api\"\nblock = [\"CN\"]\n").unwrap();
    let out = daemon.control(&["reload"]);
    assert!(out.status.success(), "reload: {}", String::from_utf8_lossy(&out.stderr));
    assert_fates(&pair, &daemon, &[exit, de4], &[]);
    geoblock::stop_and_detach(&pair, daemon);
}

/// Waits until the sources' fates are as given, or fails after [`REFRESHED`].
fn await_fates(pair: &Pair, daemon: &Daemon, srcs: &[IpAddr], dropped: &[IpAddr]) {
    let deadline = Instant::now() + REFRESHED;
    loop {
        let got = delivered(pair, srcs);
        let right = got.iter().all(|(src, n)| (*n == 0) == dropped.contains(src));
        if right {
            return;
        }
        assert!(Instant::now() < deadline, "fates not as expected after {REFRESHED:?}: {got:?}\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A list given as a URL is downloaded, enforced, and refreshed: a new
/// version served by the HTTP server in the namespace replaces the old in
/// the kernel; a version that shrinks past the guard is refused, and the
/// list in force keeps enforcing.
#[test]
fn a_list_url_is_refreshed_and_a_shrunk_list_is_refused() {
    let pair = Pair::create();
    let [de4, _] = sources::of("DE");
    // Twenty /32s after the DE source; the first version lists the first
    // ten, the second the next ten, the shrunk one a single address.
    let addrs: Vec<IpAddr> = (1..=20).map(|n| plus(de4, n)).collect();
    let text = |ips: &[IpAddr]| ips.iter().map(|ip| format!("{ip}\n")).collect::<String>();
    let server = FileServer::start(&pair.receiver, &text(&addrs[..10]));
    let config = ConfigFile::new("[[rule]]\nname = \"api\"\nallow = [\"DE\"]\nblock = [\"list:abuse\"]\n");
    let list = format!("abuse={}", server.url("abuse.txt"));
    let daemon = start(&pair, &config, &["--list", &list, "--refresh", "1s"]);
    let probes = [addrs[0], addrs[10], de4];
    assert_fates(&pair, &daemon, &probes, &[addrs[0]]);
    server.serve(&text(&addrs[10..]));
    await_fates(&pair, &daemon, &probes, &[addrs[10]]);
    server.serve(&text(&addrs[..1]));
    daemon.wait_line("shrink guard", REFRESHED);
    assert_fates(&pair, &daemon, &probes, &[addrs[10]]);
    geoblock::stop_and_detach(&pair, daemon);
}

/// A control command blocking an AS no rule used yet compiles it in and
/// enforces it at once; unblocking it passes its addresses again.
#[test]
fn blocking_an_as_by_control_command_takes_effect_at_once() {
    let (pair, _files, _config, daemon) = start_with_asn("[[rule]]\nname = \"web\"\nblock = [\"CN\"]\n");
    let de = sources::of("DE");
    assert_fates(&pair, &daemon, &de, &[]);
    let out = daemon.control(&["block", "AS64500"]);
    assert!(out.status.success(), "block AS64500: {}", String::from_utf8_lossy(&out.stderr));
    assert_fates(&pair, &daemon, &de, &de);
    let out = daemon.control(&["unblock", "AS64500"]);
    assert!(out.status.success(), "unblock AS64500: {}", String::from_utf8_lossy(&out.stderr));
    assert_fates(&pair, &daemon, &de, &[]);
    let out = daemon.control(&["block", "list:nowhere"]);
    assert!(!out.status.success(), "a list the config does not name is refused");
    geoblock::stop_and_detach(&pair, daemon);
}
