//! Observability, end to end: per-interface and per-family counters under
//! real traffic on two veth pairs, the Prometheus endpoint scraped over
//! HTTP inside the daemon's namespace and compared with `geoblock stats
//! --json`, `geoblock explain` for every reason, against the running
//! daemon and offline, and both listeners through a connection flood.
//! Needs root; fails (never skips) without it.
//!
//! Build the binary first: `cargo build -p geoblock-user --bin geoblock`.
//! GEOBLOCK_TEST_LOG=1 echoes the daemons' logs.

use std::{
    collections::BTreeMap,
    io::ErrorKind,
    net::{IpAddr, SocketAddr, TcpStream},
    os::unix::net::UnixStream,
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use aya::maps::{Array, Map, MapData, PerCpuArray, PerCpuValues};
use geoblock_common::{
    country_stats_index, selector_stats_index, CountryCounters, CountryId, COUNTRY_SLOTS, SELECTOR_NAME_LEN,
};

use geoblock_tests::{
    geoblock::{self, Daemon, Scratch},
    http,
    netns::{Link, Netns, Pair},
    traffic::{Receiver, Sender},
    user::User,
};
use serde_json::Value;

/// A small data set: the daemon starts in milliseconds, and every address
/// below has a known country. `TOP` overrides part of `BASE`.
const BASE: &str = "\
1.0.1.0,1.0.1.255,CN
240e::,240e::ffff,CN
88.198.0.0,88.198.255.255,FR
2a01:4f8::,2a01:4f8::ffff,DE
";
const TOP: &str = "\
88.198.0.0,88.198.0.255,DE
";
const CN4: &str = "1.0.1.1";
const CN6: &str = "240e::1";
const DE4: &str = "88.198.0.1";
const DE6: &str = "2a01:4f8::1";
/// FR in `BASE`, left alone by `TOP`.
const FR4: &str = "88.198.1.1";
/// Inside the exception of [`explain_args`].
const CN_EXCEPTED: &str = "1.0.1.200";
const PRIVATE: &str = "192.168.1.1";
const METRICS_PORT: u16 = 9717;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// A counter of `stats --json` at `path` (0 when absent).
fn count(stats: &Value, path: &[&str]) -> u64 {
    path.iter().fold(stats, |v, key| &v[*key]).as_u64().unwrap_or(0)
}

/// A pair with a second link, and `BASE` in a scratch file: its path.
fn two_links() -> (Pair, Link, Scratch, String) {
    let pair = Pair::create();
    let second = pair.add_link(2);
    let scratch = Scratch::new("obs");
    let data = scratch.file("base.csv", BASE);
    (pair, second, scratch, data)
}

#[test]
fn counters_are_kept_per_interface_and_family_and_survive_a_restart() {
    let (pair, second, _scratch, data) = two_links();
    let (if1, if2) = (pair.receiver_if.as_str(), second.receiver_if.as_str());
    let args = ["--iface", if1, "--iface", if2, "--xdp-mode", "native", "--block", "CN", "--data", &data];
    let daemon = Daemon::start(&pair.receiver, &args);
    let receiver = Receiver::new(&pair);
    let (first, other) = (Sender::new(&pair), Sender::on_link(&pair, &second));
    let len4 = first.send(ip(CN4), 3) as u64;
    let len6 = other.send(ip(CN6), 4) as u64;
    first.send(ip(DE6), 2);
    other.send(ip(FR4), 5);
    let got = receiver.collect(Duration::from_millis(500));
    assert_eq!(got, BTreeMap::from([(ip(DE6), 2), (ip(FR4), 5)]), "only DE and FR may arrive");

    let stats = daemon.stats().0;
    let on = |iface: &str, cc: &str, field: &str| count(&stats, &["interfaces", iface, "countries", cc, field]);
    assert_eq!((on(if1, "CN", "dropped_packets"), on(if1, "CN", "dropped_bytes")), (3, 3 * len4), "{stats:#}");
    assert_eq!((on(if2, "CN", "dropped_packets"), on(if2, "CN", "dropped_bytes")), (4, 4 * len6), "{stats:#}");
    assert_eq!((on(if1, "DE", "passed_packets"), on(if2, "FR", "passed_packets")), (2, 5), "{stats:#}");
    assert_eq!((on(if1, "FR", "passed_packets"), on(if2, "DE", "passed_packets")), (0, 0), "{stats:#}");
    assert_eq!(count(&stats, &["interfaces", if2, "totals", "dropped", "packets"]), 4);
    // Every interface together, as before interfaces were told apart.
    assert_eq!(count(&stats, &["countries", "CN", "dropped_packets"]), 7);
    assert_eq!(count(&stats, &["totals", "dropped", "bytes"]), 3 * len4 + 4 * len6);
    // Per family; passed IPv6 also holds the links' own link-local chatter.
    assert_eq!(count(&stats, &["families", "ipv4", "dropped_packets"]), 3);
    assert_eq!(count(&stats, &["families", "ipv6", "dropped_packets"]), 4);
    assert_eq!(count(&stats, &["families", "ipv4", "passed_packets"]), 5);
    assert!(count(&stats, &["families", "ipv6", "passed_packets"]) >= 2);

    let table = stats_cli(&daemon.state_dir, &["--iface", if2, "--country", "CN"]);
    let rows: Vec<&str> = table.lines().filter(|l| ["CN", "DE", "FR"].iter().any(|cc| l.starts_with(cc))).collect();
    assert_eq!(rows.len(), 1, "--iface and --country select one row:\n{table}");
    assert_eq!(rows[0].split_whitespace().nth(1), Some("4"), "CN's drops on {if2}:\n{table}");

    // A new daemon on the same state: each interface keeps its counters.
    let state_dir = daemon.state_dir.clone();
    assert!(daemon.stop().success(), "geoblock run did not exit cleanly");
    let daemon = Daemon::start_in(&pair.receiver, &args, state_dir);
    other.send(ip(CN4), 6);
    std::thread::sleep(Duration::from_millis(200));
    let after = daemon.stats().0;
    let on = |iface: &str| count(&after, &["interfaces", iface, "countries", "CN", "dropped_packets"]);
    assert_eq!((on(if1), on(if2)), (3, 10), "counts after the restart: {after:#}");
    let state_dir = daemon.state_dir.clone();
    assert!(daemon.stop().success());
    // Maps of another layout are refused, not misread.
    let abi = MapData::from_pin(state_dir.join("ABI")).expect("ABI pin");
    Array::<MapData, u32>::try_from(Map::Array(abi)).unwrap().set(0, 999, 0).unwrap();
    let out = geoblock::run_to_end(None, &["stats", "--state-dir", state_dir.to_str().unwrap()], |_| {});
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("maps of layout 999"), "{err}");
    let out = geoblock::detach(&state_dir);
    assert!(out.status.success(), "geoblock detach: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn stats_watch_redraws_rates_while_traffic_flows() {
    let pair = Pair::create();
    let scratch = Scratch::new("obs");
    let data = scratch.file("base.csv", BASE);
    let args = ["--iface", &pair.receiver_if, "--xdp-mode", "native", "--block", "CN", "--data", &data];
    let daemon = Daemon::start(&pair.receiver, &args);
    let mut watch = std::process::Command::new(geoblock::binary())
        .args(["stats", "--watch", "0.3", "--state-dir", daemon.state_dir.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("starting geoblock stats --watch");
    let sender = Sender::new(&pair);
    let until = Instant::now() + Duration::from_millis(1600);
    while Instant::now() < until {
        sender.send(ip(CN4), 20);
        sender.send(ip(FR4), 10);
        std::thread::sleep(Duration::from_millis(20));
    }
    watch.kill().expect("stopping geoblock stats --watch");
    let out = String::from_utf8(watch.wait_with_output().unwrap().stdout).unwrap();
    // One frame per redraw; the last may have been cut short by the kill.
    let frames: Vec<&str> = out.split("geoblock stats: per second over").skip(1).collect();
    assert!(frames.len() >= 3, "expected a redraw every 0.3 s, got:\n{out}");
    let frame = frames[frames.len() - 2];
    // Columns of 16 after the country: drop, drop B, pass, ...
    let column = |cc: &str, n: usize| {
        let row = frame.lines().find(|l| l.starts_with(cc)).unwrap_or_else(|| panic!("no {cc} row in:\n{frame}"));
        row[8 + 16 * n..8 + 16 * (n + 1)].trim().to_string()
    };
    assert_ne!(column("CN", 0), "0", "CN drops per second:\n{frame}");
    assert_eq!(column("CN", 2), "0", "CN passes per second:\n{frame}");
    assert_eq!(column("FR", 0), "0", "FR drops per second:\n{frame}");
    assert_ne!(column("FR", 2), "0", "FR passes per second:\n{frame}");
}

/// `geoblock stats ARGS --state-dir DIR`, as a table.
fn stats_cli(state_dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["stats", "--state-dir", state_dir.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = geoblock::run_to_end(None, &all, |_| {});
    assert!(out.status.success(), "geoblock stats: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `GET path` on the daemon's metrics port, from inside its namespace:
/// the status code and body.
fn http_get(ns: &Netns, path: &str) -> (u16, String) {
    http::get(ns, METRICS_PORT, path)
}

/// Samples of a metrics text: `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {l:?}"));
            (series.to_string(), value.parse().unwrap_or_else(|_| panic!("not a number: {l:?}")))
        })
        .collect()
}

/// The `geoblock_packets_total` and `geoblock_bytes_total` series that
/// `stats --json` implies, per interface, country and action.
fn implied_series(stats: &Value) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (iface, counts) in stats["interfaces"].as_object().unwrap() {
        let mut rows: Vec<(&str, &Value)> =
            counts["countries"].as_object().unwrap().iter().map(|(cc, c)| (cc.as_str(), c)).collect();
        rows.push(("unknown", &counts["unknown"]));
        for (country, c) in rows {
            // The stats JSON keeps its field names; metrics name the action.
            for (field, action) in [("dropped", "drop"), ("passed", "pass"), ("would_drop", "would-drop")] {
                let packets = c[format!("{field}_packets")].as_u64().unwrap();
                if packets == 0 {
                    continue;
                }
                let labels =
                    format!("{{country=\"{country}\",action=\"{action}\",iface=\"{iface}\",direction=\"inbound\"}}");
                out.insert(format!("geoblock_packets_total{labels}"), packets as f64);
                out.insert(
                    format!("geoblock_bytes_total{labels}"),
                    c[format!("{field}_bytes")].as_u64().unwrap() as f64,
                );
            }
        }
    }
    out
}

#[test]
fn metrics_scraped_over_http_equal_stats_json() {
    let pair = Pair::create();
    let scratch = Scratch::new("obs");
    let data = scratch.file("base.csv", BASE);
    let metrics = format!("127.0.0.1:{METRICS_PORT}");
    let args =
        ["--iface", &pair.receiver_if, "--xdp-mode", "native", "--block", "CN", "--data", &data, "--metrics", &metrics];
    let daemon = Daemon::start(&pair.receiver, &args);
    let url = format!("http://{metrics}/metrics");
    assert!(daemon.log().contains(&format!("metrics on {url}")), "{}", daemon.log());
    let status = daemon.control(&["status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains(&format!("metrics     {url}\n")), "geoblock status:\n{status}");
    let (sender, receiver) = (Sender::new(&pair), Receiver::new(&pair));
    let sources = [ip(CN4), ip(CN6), ip(DE4), ip(DE6)];
    let (stop, done) = (AtomicBool::new(false), AtomicBool::new(false));
    std::thread::scope(|s| {
        let rx = s.spawn(|| receiver.collect_until(&done, Duration::from_millis(200)));
        let tx = s.spawn(|| sender.stream(&sources, Duration::from_millis(1), &stop, Duration::from_secs(60)));
        std::thread::sleep(Duration::from_millis(300));
        // While traffic flows: scrapes answer and move forward.
        let (code, first) = http_get(&pair.receiver, "/metrics");
        assert_eq!(code, 200, "{first}");
        std::thread::sleep(Duration::from_millis(200));
        let (_, second) = http_get(&pair.receiver, "/metrics");
        let key = format!(
            "geoblock_packets_total{{country=\"CN\",action=\"drop\",iface=\"{}\",direction=\"inbound\"}}",
            pair.receiver_if
        );
        let (a, b) = (samples(&first)[&key], samples(&second)[&key]);
        assert!(0.0 < a && a < b, "CN drops must grow while traffic flows: {a} then {b}");
        stop.store(true, Ordering::Relaxed);
        tx.join().unwrap();
        done.store(true, Ordering::Relaxed);
        rx.join().unwrap();
    });
    // Traffic stopped: only the link's own chatter (unknown sources) may
    // still move, so it is bounded by a read before and one after.
    let before = daemon.stats().0;
    let (code, text) = http_get(&pair.receiver, "/metrics");
    let after = daemon.stats().0;
    assert_eq!(code, 200);
    let scraped = samples(&text);
    let (low, high) = (implied_series(&before), implied_series(&after));
    for (series, &value) in &high {
        let floor = low.get(series).copied().unwrap_or(0.0);
        let got = scraped.get(series).copied().unwrap_or(0.0);
        assert!(
            floor <= got && got <= value,
            "{series}: scraped {got}, stats --json said {floor} then {value}\n{text}"
        );
        if !series.contains("unknown") {
            assert_eq!(floor, value, "{series} moved after the traffic stopped");
        }
    }
    for series in
        scraped.keys().filter(|s| s.starts_with("geoblock_packets_total") || s.starts_with("geoblock_bytes_total"))
    {
        assert!(high.contains_key(series), "{series} is scraped but not in stats --json:\n{after:#}");
    }
    let totals = |v: &Value, name: &str| count(v, &["totals", name, "packets"]) as f64;
    let non_ip = scraped[&format!(
        "geoblock_bypass_packets_total{{reason=\"non-ip\",iface=\"{}\",direction=\"inbound\"}}",
        pair.receiver_if
    )];
    assert!(totals(&before, "non_ip") <= non_ip && non_ip <= totals(&after, "non_ip"));
    for family in ["ipv4", "ipv6"] {
        let series =
            format!("geoblock_family_packets_total{{family=\"{family}\",action=\"drop\",direction=\"inbound\"}}");
        assert_eq!(scraped[&series], count(&after, &["families", family, "dropped_packets"]) as f64, "{series}");
    }
    assert_eq!(scraped["geoblock_prefixes{family=\"ipv4\"}"], 2.0, "{text}");
    assert_eq!(scraped["geoblock_table_generation"], 1.0);
    assert!(scraped.contains_key(&format!("geoblock_data_age_seconds{{source=\"{data}\"}}")), "{text}");

    // Reloads are counted and timed; other paths are not served.
    let out = daemon.control(&["reload"]);
    assert!(out.status.success(), "geoblock reload: {}", String::from_utf8_lossy(&out.stderr));
    let scraped = samples(&http_get(&pair.receiver, "/metrics").1);
    assert_eq!(scraped["geoblock_reloads_total{result=\"ok\"}"], 1.0);
    assert_eq!(scraped["geoblock_reload_duration_seconds_count"], 1.0);
    assert_eq!(scraped["geoblock_table_generation"], 2.0);
    assert_eq!(http_get(&pair.receiver, "/").0, 404);
}

/// `/ready` answers while the daemon starts: 503 at once, not a hang,
/// while the world table (the embedded data) loads.
#[test]
fn ready_answers_not_ready_while_the_tables_load() {
    let pair = Pair::create();
    let metrics = format!("127.0.0.1:{METRICS_PORT}");
    let daemon = Daemon::spawn(&pair.receiver, &geoblock::run_args(&pair, &["--block", "CN", "--metrics", &metrics]));
    let first = within(Duration::from_secs(60), || http::try_get(&pair.receiver, METRICS_PORT, "/ready").ok());
    let (code, why) = first.expect("/ready answers within a minute of the start");
    assert_eq!(code, 503, "the first answer, while the tables load: {why}\n{}", daemon.log());
    assert!(!daemon.log().contains("attached to"), "the start was over before the first probe:\n{}", daemon.log());
    daemon.wait_attached();
    let ready = within(Duration::from_secs(5), || Some(http_get(&pair.receiver, "/ready")).filter(|(c, _)| *c == 200));
    assert!(ready.is_some(), "not ready once attached:\n{}", daemon.log());
}

/// `/ready`, which the Kubernetes probes ask: 200 once the daemon enforces
/// every interface, 503 while one of them is gone.
#[test]
fn ready_says_whether_every_interface_is_enforced() {
    let (pair, extra, _scratch, data) = two_links();
    let metrics = format!("127.0.0.1:{METRICS_PORT}");
    let ifaces = ["--iface", &pair.receiver_if, "--iface", &extra.receiver_if];
    let _daemon = Daemon::start(
        &pair.receiver,
        &[&ifaces[..], &["--block", "CN", "--data", &data, "--metrics", &metrics]].concat(),
    );
    let answer =
        |code| within(Duration::from_secs(5), || Some(http_get(&pair.receiver, "/ready")).filter(|(c, _)| *c == code));
    assert_eq!(answer(200).expect("ready once attached").1, "ready\n");
    pair.sender.ip(&["link", "del", &extra.sender_if]);
    let (_, why) = answer(503).expect("not ready while an interface is gone");
    assert!(why.starts_with("not ready: "), "{why}");
}

/// The daemon's limit of open files in [`a_connection_flood_leaves_metrics_and_the_control_socket_answering`]:
/// systemd's 1,024, smaller, so that a flood reaches it quickly.
const FD_LIMIT: u64 = 256;
/// Connections the daemon serves at once: scrapes, control commands.
const METRICS_CONNECTIONS: usize = 64;
const CONTROL_CONNECTIONS: usize = 32;
/// Long enough for the daemon to drop idle connections (5 s without a
/// request), and then answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// Up to `n` idle connections to /metrics from `user`, until one does not
/// connect within 3 s (the daemon's backlog is full): what a flood holds open.
fn flood_metrics(ns: &Netns, user: &User, n: usize) -> Vec<TcpStream> {
    let addr = SocketAddr::from(([127, 0, 0, 1], METRICS_PORT));
    let connect = || TcpStream::connect_timeout(&addr, Duration::from_secs(3)).ok();
    ns.run_as(user.uid, user.gid, || std::iter::repeat_with(connect).take(n).map_while(|c| c).collect())
}

/// `n` idle connections to the control socket (only root can open them).
fn flood_control(socket: &Path, n: usize) -> Vec<UnixStream> {
    (0..n).map(|_| UnixStream::connect(socket).expect("connecting to the control socket")).collect()
}

/// What `f` gives, once it gives something: tried every 200 ms for at most `timeout`.
fn within<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Some(found) => return Some(found),
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            None => return None,
        }
    }
}

/// Waits (bounded) until the daemon has logged `text`.
fn wait_logged(daemon: &Daemon, text: &str) {
    let logged = within(ANSWER_TIMEOUT, || daemon.log().contains(text).then_some(()));
    assert!(logged.is_some(), "geoblock run did not log {text:?}:\n{}", daemon.log());
}

/// A scrape and `geoblock status` are answered, within [`ANSWER_TIMEOUT`].
fn assert_answering(daemon: &Daemon, ns: &Netns, when: &str) {
    let scrape =
        within(ANSWER_TIMEOUT, || http::try_get(ns, METRICS_PORT, "/metrics").ok().filter(|(code, _)| *code == 200));
    let (_, text) = scrape.unwrap_or_else(|| panic!("no scrape answered {when}:\n{}", daemon.log()));
    assert!(text.contains("geoblock_table_generation 1"), "{text}");
    let status = within(ANSWER_TIMEOUT, || Some(daemon.control(&["status"])).filter(|out| out.status.success()));
    let status = status.unwrap_or_else(|| panic!("geoblock status did not answer {when}:\n{}", daemon.log()));
    assert!(String::from_utf8_lossy(&status.stdout).contains("metrics"), "{status:?}");
}

/// The flood of issue 13: idle connections held open, up to the file
/// descriptor limit, from a local user to /metrics and from root's scripts
/// to the control socket. The caps keep the daemon below its limit; when it
/// reaches it anyway, accepting fails, is logged, and is survived.
#[test]
fn a_connection_flood_leaves_metrics_and_the_control_socket_answering() {
    let pair = Pair::create();
    let scratch = Scratch::new("obs");
    let data = scratch.file("base.csv", BASE);
    let metrics = format!("127.0.0.1:{METRICS_PORT}");
    let args = geoblock::run_args(&pair, &["--block", "CN", "--data", &data, "--metrics", &metrics]);
    let daemon = Daemon::start(&pair.receiver, &args);
    daemon.limit_open_files(FD_LIMIT);
    let idle = daemon.open_files();
    let user = User::create();
    let socket = daemon.control_socket.clone();

    // Beyond the caps, connections are closed at once: the daemon's open
    // files stay bounded, and once the held ones time out it answers again.
    let scrapers = flood_metrics(&pair.receiver, &user, 400);
    assert!(
        scrapers.len() > 2 * METRICS_CONNECTIONS,
        "{} connections: the ones beyond the cap are accepted (and closed)",
        scrapers.len()
    );
    let denied = pair.receiver.run_as(user.uid, user.gid, || UnixStream::connect(&socket).map_err(|e| e.kind()));
    assert_eq!(denied.err(), Some(ErrorKind::PermissionDenied), "a user reaches the control socket");
    let commands = flood_control(&socket, 100);
    let open = daemon.open_files();
    let bound = idle + METRICS_CONNECTIONS + CONTROL_CONNECTIONS + 8;
    assert!(open <= bound, "{open} files open under the flood, {idle} before: the caps allow {bound}");
    assert_answering(&daemon, &pair.receiver, "while the flood is held");
    wait_logged(&daemon, &format!("metrics: {METRICS_CONNECTIONS} connections open already, closing new ones"));
    wait_logged(&daemon, &format!("control socket: {CONTROL_CONNECTIONS} connections open already"));
    drop((scrapers, commands));

    // Fewer files left than the caps would serve: accepting fails.
    daemon.limit_open_files(daemon.open_files() as u64 + 16);
    let scrapers = flood_metrics(&pair.receiver, &user, 400);
    let commands = flood_control(&socket, 100);
    wait_logged(&daemon, "metrics: accepting a connection failed: Too many open files");
    wait_logged(&daemon, "control socket: accepting a connection failed: Too many open files");
    drop((scrapers, commands));
    // Each listener says it recovered at an accept a second after its last failure.
    let recovered = |listener: &str| daemon.log().contains(&format!("{listener}: accepting connections again, after"));
    let said = within(ANSWER_TIMEOUT, || {
        assert_answering(&daemon, &pair.receiver, "after the flood");
        (recovered("metrics") && recovered("control socket")).then_some(())
    });
    assert!(said.is_some(), "no listener said it recovered:\n{}", daemon.log());
    assert!(!daemon.log().contains("is gone"), "out of files is not out of interfaces:\n{}", daemon.log());
}

/// Gives every country, on interface slots 1 to `slots`, one packet of
/// each action on every CPU, straight into the pinned counters.
fn fill_counters(state_dir: &Path, slots: u32) -> usize {
    let map = MapData::from_pin(state_dir.join("COUNTRY_STATS")).expect("COUNTRY_STATS pin");
    let mut counters: PerCpuArray<MapData, CountryCounters> = Map::PerCpuArray(map).try_into().unwrap();
    let cpus = aya::util::nr_cpus().unwrap();
    let one = CountryCounters {
        dropped_packets: 1,
        dropped_bytes: 60,
        passed_packets: 1,
        passed_bytes: 60,
        would_drop_packets: 1,
        would_drop_bytes: 60,
    };
    // Every code that names its own slot: the 250 assigned ones and the
    // codes kept as their own (aliases such as UK name another slot).
    let countries: Vec<CountryId> = (1..COUNTRY_SLOTS as CountryId)
        .filter(|&c| ::geoblock::country::parse(::geoblock::country::code(c)) == Ok(c))
        .collect();
    assert_eq!(countries.len(), 250 + ::geoblock::country::OWN_CODES.len());
    for slot in 1..=slots {
        for &country in &countries {
            let values = PerCpuValues::try_from(vec![one; cpus]).unwrap();
            counters.set(country_stats_index(geoblock_common::Direction::Inbound, slot, country), values, 0).unwrap();
        }
    }
    cpus
}

/// Names counter slot `slot` after `name` and gives it `counts` inbound on
/// every CPU, straight into the pinned maps, as a selector in use would have.
fn fill_selector(state_dir: &Path, slot: u16, name: &str, counts: CountryCounters) {
    let names = MapData::from_pin(state_dir.join("SELECTOR_NAMES")).expect("SELECTOR_NAMES pin");
    let mut names: Array<MapData, [u8; SELECTOR_NAME_LEN]> = Map::Array(names).try_into().unwrap();
    let mut raw = [0; SELECTOR_NAME_LEN];
    raw[..name.len()].copy_from_slice(name.as_bytes());
    names.set(u32::from(slot), raw, 0).unwrap();
    let stats = MapData::from_pin(state_dir.join("SELECTOR_STATS")).expect("SELECTOR_STATS pin");
    let mut stats: PerCpuArray<MapData, CountryCounters> = Map::PerCpuArray(stats).try_into().unwrap();
    let values = PerCpuValues::try_from(vec![counts; aya::util::nr_cpus().unwrap()]).unwrap();
    stats.set(selector_stats_index(geoblock_common::Direction::Inbound, slot), values, 0).unwrap();
}

#[test]
fn a_scrape_of_every_country_on_four_interfaces_stays_cheap() {
    let pair = Pair::create();
    let links: Vec<_> = (2..5).map(|n| pair.add_link(n)).collect();
    let scratch = Scratch::new("obs");
    let data = scratch.file("base.csv", BASE);
    let metrics = format!("127.0.0.1:{METRICS_PORT}");
    let mut args = vec!["--iface", pair.receiver_if.as_str()];
    for link in &links {
        args.extend_from_slice(&["--iface", &link.receiver_if]);
    }
    args.extend_from_slice(&["--xdp-mode", "native", "--block", "CN", "--data", &data, "--metrics", &metrics]);
    let daemon = Daemon::start(&pair.receiver, &args);
    let cpus = fill_counters(&daemon.state_dir, 4);
    let dropped = CountryCounters { dropped_packets: 2, dropped_bytes: 120, ..CountryCounters::default() };
    fill_selector(&daemon.state_dir, 7, "AS4134", dropped);
    let mut times = Vec::new();
    let mut text = String::new();
    for _ in 0..20 {
        let started = Instant::now();
        let (code, body) = http_get(&pair.receiver, "/metrics");
        times.push(started.elapsed());
        assert_eq!(code, 200, "{body}");
        text = body;
    }
    let scraped = samples(&text);
    let series = scraped.keys().filter(|k| k.starts_with("geoblock_packets_total")).count();
    assert!(series >= 250 * 3 * 4, "{series} series of geoblock_packets_total");
    let key = format!(
        "geoblock_packets_total{{country=\"KP\",action=\"would-drop\",iface=\"{}\",direction=\"inbound\"}}",
        links[2].receiver_if
    );
    assert_eq!(scraped[&key], cpus as f64, "the sum over {cpus} CPUs");
    let selector = "geoblock_selector_packets_total{selector=\"AS4134\",action=\"drop\",direction=\"inbound\"}";
    assert_eq!(scraped[selector], (2 * cpus) as f64, "{text}");
    // The table, not --json: every country on four interfaces is more JSON than a pipe holds.
    let table = stats_cli(&daemon.state_dir, &["--top", "1"]);
    let row = table.lines().skip_while(|l| !l.starts_with("selector ")).nth(1).unwrap_or_default();
    assert_eq!(row.split_whitespace().take(2).collect::<Vec<_>>(), ["AS4134", &(2 * cpus).to_string()], "{table}");
    times.sort();
    eprintln!(
        "scrape of {series} packet series ({} bytes, {cpus} CPUs): median {:?}, slowest {:?}",
        text.len(),
        times[times.len() / 2],
        times[times.len() - 1]
    );
    assert!(times[times.len() - 1] < Duration::from_secs(2), "scrapes must stay cheap: {times:?}");
}

/// `geoblock explain --json ARGS`: the explanations, by address.
fn explain(args: &[&str]) -> BTreeMap<String, Value> {
    let mut all = vec!["explain", "--json"];
    all.extend_from_slice(args);
    let out = geoblock::run_to_end(None, &all, |_| {});
    assert!(out.status.success(), "geoblock {}: {}", all.join(" "), String::from_utf8_lossy(&out.stderr));
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).expect("explain --json is JSON");
    list.into_iter().map(|e| (e["address"].as_str().unwrap().to_string(), e)).collect()
}

/// `(action, reason)` of an explanation.
fn verdict(e: &Value) -> (&str, &str) {
    assert_eq!(e["schema"], 2, "{e}");
    (e["action"].as_str().unwrap(), e["reason"].as_str().unwrap())
}

#[test]
fn explain_gives_every_reason_from_the_daemon_and_offline() {
    let pair = Pair::create();
    let scratch = Scratch::new("obs");
    let (base, top) = (scratch.file("base.csv", BASE), scratch.file("top.csv", TOP));
    let policy = ["--block", "CN", "--except", "1.0.1.128/25"];
    let mut args = vec!["--iface", &pair.receiver_if, "--xdp-mode", "native", "--data", &base, "--data", &top];
    args.extend_from_slice(&policy);
    let daemon = Daemon::start(&pair.receiver, &args);
    let socket = daemon.control_socket.to_str().unwrap().to_string();
    let addresses = [CN4, CN_EXCEPTED, DE4, FR4, PRIVATE];
    let ask = |extra: &[&str]| {
        let mut all = vec!["--control-socket", socket.as_str()];
        all.extend_from_slice(extra);
        all.extend_from_slice(&addresses);
        explain(&all)
    };

    let live = ask(&[]);
    let cn = &live[CN4];
    assert_eq!(verdict(cn), ("drop", "blocked-country"), "{cn:#}");
    assert_eq!((cn["prefix"].as_str(), cn["country"].as_str()), (Some("1.0.1.0/24"), Some("CN")));
    assert_eq!(cn["source"]["origin"].as_str(), Some(base.as_str()), "CN comes from the base file");
    assert_eq!(cn["generation"].as_u64(), Some(1));
    assert_eq!(verdict(&live[CN_EXCEPTED]), ("pass", "exception"));
    assert_eq!(verdict(&live[DE4]), ("pass", "not-blocked"));
    assert_eq!(live[DE4]["source"]["origin"].as_str(), Some(top.as_str()), "the later file gives DE");
    assert_eq!(
        (live[FR4]["country"].as_str(), live[FR4]["source"]["origin"].as_str()),
        (Some("FR"), Some(base.as_str()))
    );
    let private = &live[PRIVATE];
    assert_eq!(verdict(private), ("pass", "no-country"));
    assert!(private["prefix"].is_null() && private["source"].is_null(), "{private:#}");
    assert_eq!(cn["direction"], "inbound", "{cn:#}");

    // As destinations: no outbound rule judges them, offline one does.
    let outbound = ask(&["--outbound"]);
    assert_eq!((verdict(&outbound[CN4]), &outbound[CN4]["direction"]), (("pass", "no-rule"), &"outbound".into()));
    let offline = explain(&["--data", &base, "--outbound", "--block", "CN", CN4, DE4]);
    assert_eq!((verdict(&offline[CN4]), &offline[CN4]["direction"]), (("drop", "blocked-country"), &"outbound".into()));
    assert_eq!(verdict(&offline[DE4]), ("pass", "not-blocked"));

    // Offline, with the same data and policy: the same answers (no generation).
    let mut offline_args = vec!["--data", base.as_str(), "--data", top.as_str()];
    offline_args.extend_from_slice(&policy);
    for (address, mut e) in ask(&offline_args) {
        e["generation"] = live[&address]["generation"].clone();
        assert_eq!(e, live[&address], "offline and daemon differ for {address}");
    }
    let strict = explain(&["--data", &base, "--allow", "DE", "--block-unknown", PRIVATE, CN4]);
    assert_eq!(verdict(&strict[PRIVATE]), ("drop", "no-country-blocked"));
    assert_eq!(verdict(&strict[CN4]), ("drop", "not-allowed"));
    assert_eq!(strict[CN4]["source"]["origin"].as_str(), Some(base.as_str()), "one source gives everything");

    // The running policy changes, and so do the daemon's answers.
    for change in [&["allow", "DE"][..], &["mode", "monitor"]] {
        let out = daemon.control(change);
        assert!(out.status.success(), "geoblock {change:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let monitored = ask(&[]);
    assert_eq!(verdict(&monitored[CN4]), ("would-drop", "not-allowed"));
    assert_eq!(monitored[CN4]["monitor"].as_bool(), Some(true));
    assert_eq!(verdict(&monitored[DE4]), ("pass", "allowed"));
    let text = geoblock::run_to_end(None, &["explain", "--control-socket", &socket, CN4], |_| {});
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("CN is not on the allow list") && text.contains("monitor mode"), "{text}");
    assert!(text.contains(&base), "the text names the source: {text}");
}
