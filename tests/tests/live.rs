//! Live operations, end to end: the real `geoblock run` on a veth end in a
//! throwaway namespace, under continuous traffic, while it is restarted,
//! killed, reloaded (to another vendor's data too), and while its interface
//! disappears and comes back. Nothing may leak in between: sources blocked
//! before and after are never delivered, sources allowed before and after
//! are never dropped. Needs root, and the npm registry for GeoLite2; fails
//! (never skips) without them.
//!
//! Build the binary first: `cargo build -p geoblock-user --bin geoblock`.
//! GEOBLOCK_TEST_LOG=1 echoes the daemons' logs.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use ::geoblock::kernel::Geoblock;
use aya::{
    maps::{Array, Map, MapData, MapInfo},
    programs::{
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
    },
};
use geoblock_common::Backend;
use geoblock_tests::{
    geoblock::{self, passing, Daemon},
    http,
    netns::{self, Pair},
    objects, programs, registry, sources,
    traffic::{under_traffic, Flowed},
};

/// Two data sets a reload alternates between. The policy blocks CN and RU:
/// some sources are blocked in both (one changing country from RU to CN),
/// some allowed in both (one changing from US to FR), one switches from
/// CN (blocked) to DE (allowed). The switch is a small part of CN, as in real
/// data: the shrink guard refuses a named country that loses much.
const DATA_A: &str = "\
1.0.1.0,1.0.1.255,CN
36.96.0.0,36.127.255.255,CN
77.88.8.0,77.88.8.255,RU
240e::,240e::ffff,CN
88.198.0.0,88.198.0.255,DE
12.0.0.0,12.0.0.255,US
2a01:4f8::,2a01:4f8::ffff,DE
90.0.0.0,90.0.0.255,CN
";
const DATA_B: &str = "\
1.0.1.0,1.0.1.255,CN
36.96.0.0,36.127.255.255,CN
77.88.8.0,77.88.8.255,CN
240e::,240e::ffff,CN
88.198.0.0,88.198.0.255,DE
12.0.0.0,12.0.0.255,FR
2a01:4f8::,2a01:4f8::ffff,DE
90.0.0.0,90.0.0.255,DE
";
const BLOCKED: [&str; 3] = ["1.0.1.1", "77.88.8.8", "240e::1"];
const ALLOWED: [&str; 3] = ["88.198.0.1", "12.0.0.1", "2a01:4f8::1"];
const SWITCHING: &str = "90.0.0.1";

/// A `--data` file the test rewrites between reloads.
struct DataFile {
    dir: PathBuf,
    path: PathBuf,
}

impl DataFile {
    fn new(contents: &str) -> DataFile {
        let dir = std::env::temp_dir().join(format!("geoblock-live-{}", netns::unique_tag()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = DataFile { path: dir.join("countries.csv"), dir };
        file.write(contents);
        file
    }

    /// Replaces the contents atomically, as an operator's tooling should.
    fn write(&self, contents: &str) {
        let staged = self.dir.join("countries.csv.new");
        std::fs::write(&staged, contents).unwrap();
        std::fs::rename(&staged, &self.path).unwrap();
    }

    fn arg(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// Puts a FIFO in place of the file, as a hostile or careless user could.
    fn replace_with_fifo(&self) {
        let staged = self.dir.join("countries.csv.new");
        let path = std::ffi::CString::new(staged.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path; mkfifo only creates a node.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0, "mkfifo");
        std::fs::rename(&staged, &self.path).unwrap();
    }

    /// Makes the file a link to `/dev/zero`, which never ends.
    fn replace_with_device(&self) {
        let staged = self.dir.join("countries.csv.new");
        std::os::unix::fs::symlink("/dev/zero", &staged).unwrap();
        std::fs::rename(&staged, &self.path).unwrap();
    }
}

impl Drop for DataFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ips(texts: &[&str]) -> Vec<IpAddr> {
    texts.iter().map(|t| t.parse().unwrap()).collect()
}

fn run_args<'a>(pair: &'a Pair, data: &'a DataFile) -> Vec<&'a str> {
    geoblock::run_args(pair, &["--block", "CN,RU", "--data", data.arg()])
}

fn all_sources() -> Vec<IpAddr> {
    let mut all = ips(&BLOCKED);
    all.extend(ips(&ALLOWED));
    all
}

/// A pair, data set A and a daemon enforcing `--block CN,RU` with it.
fn started() -> (Pair, DataFile, Daemon) {
    let pair = Pair::create();
    let data = DataFile::new(DATA_A);
    let daemon = Daemon::start(&pair.receiver, &run_args(&pair, &data));
    (pair, data, daemon)
}

/// A daemon replaced under traffic by a second one on the same state dir:
/// `end` stops the first (cleanly or not), nothing runs for a while (the
/// pins enforce), then the second starts and must log each of `expect`.
/// Gives what flowed, both logs and the state dir.
fn handover(pair: &Pair, data: &DataFile, end: impl FnOnce(Daemon), expect: &[&str]) -> (Flowed, String, PathBuf) {
    let args = run_args(pair, data);
    let first = Daemon::start(&pair.receiver, &args);
    let state_dir = first.state_dir.clone();
    let mut log = first.log();
    let flowed = under_traffic(pair, &all_sources(), || {
        end(first);
        std::thread::sleep(Duration::from_millis(300));
        let second = Daemon::start_in(&pair.receiver, &args, state_dir.clone());
        log += &second.log();
        for text in expect {
            assert!(second.log().contains(text), "no {text:?} in:\n{}", second.log());
        }
        std::thread::sleep(Duration::from_millis(300));
        assert!(second.stop().success());
    });
    flowed.assert_enforced(&ips(&BLOCKED), &ips(&ALLOWED), pair, &log);
    (flowed, log, state_dir)
}

#[test]
fn a_restarted_daemon_adopts_the_pinned_state_without_a_gap() {
    let pair = Pair::create();
    let data = DataFile::new(DATA_A);
    let stop = |first: Daemon| assert!(first.stop().success());
    let (flowed, _, state_dir) =
        handover(&pair, &data, stop, &["adopting the pinned state", "gbr: pinned link taken over"]);
    // The counters were adopted too: every CN and RU datagram is in them.
    let stats = geoblock::stats(&state_dir);
    let cn = flowed.sent(ips(&["1.0.1.1"])[0]) + flowed.sent(ips(&["240e::1"])[0]);
    assert_eq!(stats.country("CN").dropped_packets, cn as u64, "{}", stats.0);
    assert_eq!(stats.country("RU").dropped_packets, flowed.sent(ips(&["77.88.8.8"])[0]) as u64);
    geoblock::detach_all(&pair, &state_dir);
}

#[test]
fn killed_daemon_keeps_enforcing_and_maps_of_another_abi_are_replaced() {
    let pair = Pair::create();
    let data = DataFile::new(DATA_A);
    let kill = |first: Daemon| {
        let state_dir = first.crash();
        // Pretend the pinned maps come from an incompatible geoblock.
        let abi = MapData::from_pin(state_dir.join("ABI")).expect("ABI pin");
        let mut abi: Array<MapData, u32> = Map::Array(abi).try_into().unwrap();
        abi.set(0, 999, 0).unwrap();
        // And a map of a name that layout had and this one has not.
        let retired: Array<MapData, u32> = Array::create(1, 0).unwrap();
        retired.pin(state_dir.join("GEO_V4")).unwrap();
    };
    let (_, _, state_dir) = handover(&pair, &data, kill, &["ABI version 999", "gbr: pinned link taken over"]);
    assert!(!state_dir.join("GEO_V4").exists(), "a map pin of the replaced layout was left behind");
    geoblock::detach_all(&pair, &state_dir);
}

#[test]
fn reloads_alternating_data_sets_expose_nothing() {
    const RELOADS: usize = 50;
    let (pair, data, daemon) = started();
    let mut sources = all_sources();
    sources.push(SWITCHING.parse().unwrap());
    let flowed = under_traffic(&pair, &sources, || {
        (0..RELOADS).for_each(|i| reload(&daemon, &data, i));
        // A bad data set is refused; the last good one (A) stays in force.
        data.write("1.0.1.0,1.0.1.255,CN\nnot an address,1.2.3.4,DE\n");
        daemon.signal(libc::SIGHUP);
        let line = daemon.wait_line("reload failed", Duration::from_secs(60));
        assert!(line.contains("not an address"), "{line}");
    });
    flowed.assert_enforced(&ips(&BLOCKED), &ips(&ALLOWED), &pair, &daemon.log());
    // Every drop is accounted for: the blocked sources' and whatever of
    // the switching source's arrived while it was CN.
    let switching: IpAddr = SWITCHING.parse().unwrap();
    let blocked: usize = ips(&BLOCKED).iter().map(|&s| flowed.sent(s)).sum();
    let switched = flowed.sent(switching) - flowed.delivered(switching);
    let stats = daemon.stats();
    assert_eq!(stats.total("dropped").packets, (blocked + switched) as u64, "{}", stats.0);
    assert!(switched > 0 && flowed.delivered(switching) > 0, "the switching source was never switched");
    geoblock::stop_and_detach(&pair, daemon);
}

#[test]
fn kill_during_a_reload_leaves_the_last_good_table_and_a_new_daemon_adopts_it() {
    let pair = Pair::create();
    let data = DataFile::new(DATA_A);
    let kill_reloading = |first: Daemon| {
        data.write(DATA_B);
        first.signal(libc::SIGHUP);
        first.crash();
    };
    let (_, _, state_dir) = handover(&pair, &data, kill_reloading, &["adopting the pinned state"]);
    geoblock::detach_all(&pair, &state_dir);
}

#[test]
fn an_interface_that_comes_back_is_attached_again() {
    let (mut pair, _data, daemon) = started();
    pair.recreate_link();
    daemon.wait_line("attached to gbr again", Duration::from_secs(10));
    assert!(pair.receiver_has_xdp(), "no XDP on the recreated gbr");
    let flowed = under_traffic(&pair, &all_sources(), || {});
    flowed.assert_enforced(&ips(&BLOCKED), &ips(&ALLOWED), &pair, &daemon.log());
    geoblock::stop_and_detach(&pair, daemon);
}

/// Where the tamper test's daemon serves `/metrics`, in its namespace.
const METRICS_PORT: &str = "9717";

/// `geoblock_attached{iface}` of the pair's receiver, scraped from `/metrics`.
fn attached_metric(pair: &Pair) -> Option<u8> {
    let (code, text) = http::get(&pair.receiver, METRICS_PORT.parse().unwrap(), "/metrics");
    assert_eq!(code, 200, "{text}");
    let series = format!("geoblock_attached{{iface=\"{}\"}} ", pair.receiver_if);
    text.lines().find_map(|l| l.strip_prefix(&series)?.parse().ok())
}

/// Waits (bounded) for the daemon's error line about tampering with the
/// receiver's enforcement, which must say `what` was found and how it was
/// dealt with; the incident must have begun at most two ticks before.
fn tamper_logged(daemon: &Daemon, since: Instant, what: &str) {
    let line = daemon.wait_line("enforcement tampered with", Duration::from_secs(5));
    assert!(since.elapsed() < Duration::from_secs(2), "noticed {:?} after tampering: {line}", since.elapsed());
    assert!(line.contains("ERROR") && line.contains(&format!("gbr: enforcement tampered with: {what}")), "{line}");
}

/// The interface line of `geoblock status` and its JSON.
fn interface_status(daemon: &Daemon) -> (String, serde_json::Value) {
    let text = ctl(daemon, &["status"]);
    let line = text.lines().find(|l| l.starts_with("interface")).unwrap_or_else(|| panic!("{text}"));
    (line.to_string(), status(daemon)["interfaces"][0].clone())
}

#[test]
fn tampering_with_enforcement_is_logged_shown_and_repaired_within_two_ticks() {
    let pair = Pair::create();
    let data = DataFile::new(DATA_A);
    let mut args = run_args(&pair, &data);
    args.extend(["--metrics", METRICS_PORT]);
    let daemon = Daemon::start(&pair.receiver, &args);
    assert_eq!(attached_metric(&pair), Some(1));
    let pin = daemon.state_dir.join(format!("link-{}", pair.receiver_if));

    // The pin held the only reference to the link: removing it detached
    // XDP; the daemon attaches and pins a new link.
    let flowed = under_traffic(&pair, &all_sources(), || {
        let removed = Instant::now();
        std::fs::remove_file(&pin).unwrap();
        tamper_logged(&daemon, removed, "link pin removed; re-attached");
    });
    let leaked: usize = ips(&BLOCKED).iter().map(|&s| flowed.delivered(s)).sum();
    eprintln!("{leaked} blocked datagrams delivered before the link pin was replaced");
    assert_eq!(passing(&pair, &daemon, &BLOCKED), Vec::<String>::new(), "blocked sources pass after the repair");
    assert_eq!(passing(&pair, &daemon, &ALLOWED), ALLOWED, "allowed sources are dropped after the repair");
    let (line, json) = interface_status(&daemon);
    assert!(line.starts_with("interface   gbr (attached, xdp mode native); TAMPERED "), "{line}");
    assert!(line.ends_with(": link pin removed, re-attached"), "{line}");
    assert!(json["attached"] == true && json["tampered"]["repaired"] == true, "{json}");
    assert_eq!(json["tampered"]["problem"], "link pin removed", "{json}");
    assert_eq!(attached_metric(&pair), Some(1));
    assert!(pin.exists() && pair.receiver_has_xdp());

    // Another program switched in through the pinned link: switched back.
    {
        let mut other = Geoblock::load_object(programs::BENCH_SENDER, "bench_pass", Backend::Trie).unwrap();
        let link = XdpLink::try_from(FdLink::from(PinnedLink::from_pin(&pin).unwrap())).unwrap();
        let replaced = Instant::now();
        other.program().unwrap().attach_to_link(link).unwrap();
        tamper_logged(&daemon, replaced, "program replaced (the link runs program id ");
        assert!(daemon.log().contains("; program restored"), "{}", daemon.log());
        assert_eq!(passing(&pair, &daemon, &BLOCKED), Vec::<String>::new(), "blocked sources pass after the repair");
    }

    // The pin removed while someone else holds the link: the interface is
    // busy, nothing can be repaired until they let go, and it is said so
    // once, not every tick.
    let held = PinnedLink::from_pin(&pin).unwrap();
    let removed = Instant::now();
    std::fs::remove_file(&pin).unwrap();
    tamper_logged(&daemon, removed, "link pin removed; NOT repaired (retrying every second)");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(daemon.log().matches("enforcement tampered with").count(), 3, "{}", daemon.log());
    let (line, json) = interface_status(&daemon);
    assert!(line.starts_with("interface   gbr (NOT ENFORCING, xdp mode native); TAMPERED "), "{line}");
    assert!(line.contains("link pin removed, NOT repaired: interface gbr already has an XDP program"), "{line}");
    assert!(json["attached"] == false && json["tampered"]["repaired"] == false, "{json}");
    assert_eq!(attached_metric(&pair), Some(0));
    drop(held);
    daemon.wait_line("gbr: enforcement repaired (re-attached) after link pin removed", Duration::from_secs(5));
    assert_eq!(attached_metric(&pair), Some(1));
    assert_eq!(passing(&pair, &daemon, &BLOCKED), Vec::<String>::new(), "blocked sources pass after the repair");
    geoblock::stop_and_detach(&pair, daemon);
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The `i`-th of alternating reloads (by SIGHUP): data set B, A, B...
fn reload(daemon: &Daemon, data: &DataFile, i: usize) {
    data.write(if i.is_multiple_of(2) { DATA_B } else { DATA_A });
    daemon.signal(libc::SIGHUP);
    daemon.wait_line("reloaded", Duration::from_secs(60));
}

#[test]
fn a_thousand_reloads_do_not_grow_kernel_or_daemon_memory() {
    const RELOADS: usize = 1000;
    let (pair, data, daemon) = started();
    // Every table this daemon swaps in, IPv4 and IPv6, by map id.
    let mut tables: BTreeSet<u32> = objects::table_ids(&daemon.state_dir).into_iter().collect();
    let mut reload_noting_tables = |i| {
        reload(&daemon, &data, i);
        tables.extend(objects::table_ids(&daemon.state_dir));
    };
    // Warm up the allocator before taking the daemon's measure.
    (0..50).for_each(&mut reload_noting_tables);
    let (rss, kernel) = (rss_kib(daemon.pid()), objects::kernel_objects(&daemon));
    (0..RELOADS).for_each(&mut reload_noting_tables);
    let grown = rss_kib(daemon.pid()).saturating_sub(rss);
    assert!(grown < 4096, "daemon RSS grew by {grown} KiB over {RELOADS} reloads");
    let now = objects::kernel_objects(&daemon);
    assert!(
        now.len() <= kernel.len() && bytes(&now) <= bytes(&kernel),
        "the daemon's kernel objects grew over {RELOADS} reloads, from {kernel:?} to {now:?}"
    );
    assert_replaced_tables_freed(&daemon, tables, &format!("{RELOADS} reloads"));
    geoblock::stop_and_detach(&pair, daemon);
}

/// Kernel memory of `objects` (see [`objects::kernel_objects`]), in bytes.
fn bytes(objects: &BTreeMap<String, u64>) -> u64 {
    objects.values().sum()
}

/// The kernel frees a replaced table after an RCU grace period, unless
/// something (a pin, an fd, a program) still holds it: of the `swapped`
/// tables (map ids), only the two in force may remain (waited for, bounded).
fn assert_replaced_tables_freed(daemon: &Daemon, mut swapped: BTreeSet<u32>, after: &str) {
    let in_force = objects::table_ids(&daemon.state_dir);
    swapped.retain(|id| !in_force.contains(id));
    for _ in 0..50 {
        swapped.retain(|&id| MapInfo::from_id(id).is_ok());
        if swapped.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("tables replaced but not freed after {after}: {swapped:?}");
}

/// An operator switches vendors under traffic: from the embedded DB-IP
/// table to MaxMind's GeoLite2 CSV zip and back, by editing the config's
/// `data` and running `geoblock reload` (forced to GeoLite2, after the
/// shrink guard refused it for its IPv6 coverage). A source blocked in both (CN) is
/// never delivered, one allowed in both (DE) never dropped, and the
/// daemon's kernel memory is back where it was, every replaced table freed.
#[test]
fn switching_between_db_ip_and_geolite2_under_traffic_drops_and_leaks_nothing() {
    let geolite2 = registry::geolite2_country_csv_zip();
    let (blocked, allowed) = (sources::of("CN"), sources::of("DE"));
    let all = [blocked, allowed].concat();
    let countries = geoblock::lookup_in(&[&geolite2], &all);
    assert_eq!(countries, ["CN", "CN", "DE", "DE"].map(|cc| Some(cc.to_string())), "{all:?} in GeoLite2");
    let pair = Pair::create();
    // Only for its temporary directory, which holds the config.
    let scratch = DataFile::new("");
    let config = scratch.dir.join("geoblock.toml");
    let use_data = |data: &[&Path]| {
        let data: Vec<String> = data.iter().map(|path| format!("\"{}\"", path.display())).collect();
        let text = format!(
            "interfaces = [\"{}\"]\nxdp_mode = \"native\"\ndata = [{}]\n\n[policy]\nblock = [\"CN\"]\n",
            pair.receiver_if,
            data.join(", ")
        );
        std::fs::write(&config, text).unwrap();
    };
    use_data(&[]);
    let daemon = Daemon::start(&pair.receiver, &["--config", config.to_str().unwrap()]);
    let kernel = objects::kernel_objects(&daemon);
    let mut tables: BTreeSet<u32> = objects::table_ids(&daemon.state_dir).into_iter().collect();
    let flowed = under_traffic(&pair, &all, || {
        for (generation, data) in [(2, &[geolite2.as_path()][..]), (3, &[])] {
            use_data(data);
            if generation == 2 {
                // The npm DB-IP data gives unallocated IPv6 space to CH
                // (2040::/10, 2440::/10, ...), which GeoLite2 leaves without
                // a country: the guard reports that loss, the operator forces.
                refused(&daemon, &["reload"], "IPv6 addresses");
            }
            let reloaded = ctl(&daemon, if generation == 2 { &["reload", "--force"] } else { &["reload"] });
            assert!(reloaded.contains(&format!("generation {generation}")), "{reloaded}");
            tables.extend(objects::table_ids(&daemon.state_dir));
            println!("{}; kernel memory {} bytes", reloaded.trim(), bytes(&objects::kernel_objects(&daemon)));
        }
    });
    flowed.assert_enforced(&blocked, &allowed, &pair, &daemon.log());
    let cn: usize = blocked.iter().map(|&src| flowed.sent(src)).sum();
    assert_eq!(daemon.stats().country("CN").dropped_packets, cn as u64, "CN drops vs CN datagrams sent");
    let now = objects::kernel_objects(&daemon);
    assert!(
        now.len() == kernel.len() && bytes(&now) == bytes(&kernel),
        "the daemon's kernel objects went from {kernel:?} to {now:?} over DB-IP, GeoLite2 and DB-IP again"
    );
    assert_replaced_tables_freed(&daemon, tables, "switching to GeoLite2 and back");
    geoblock::stop_and_detach(&pair, daemon);
}

/// Runs a control command against `daemon`; it must succeed.
fn ctl(daemon: &Daemon, args: &[&str]) -> String {
    let out = daemon.control(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "geoblock {}: {stderr}\ndaemon log:\n{}", args.join(" "), daemon.log());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a control command that must be refused with `expect` in its error.
fn refused(daemon: &Daemon, args: &[&str], expect: &str) {
    let out = daemon.control(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "geoblock {} should fail: {stderr}", args.join(" "));
    assert!(stderr.starts_with("geoblock: ") && stderr.contains(expect), "geoblock {}: {stderr}", args.join(" "));
}

/// A FIFO or a device in place of the data file is refused at once: the
/// daemon neither blocks on it nor reads it forever, answers control
/// commands and signals, and the table in force keeps enforcing.
#[test]
fn special_files_as_data_are_refused_and_the_daemon_stays_responsive() {
    let (pair, data, daemon) = started();
    let flowed = under_traffic(&pair, &all_sources(), || {
        for replace in [DataFile::replace_with_fifo, DataFile::replace_with_device] {
            replace(&data);
            let line = daemon.wait_line("not a regular file", Duration::from_secs(30));
            assert!(line.contains("reload failed (data)") && line.contains("stay in force"), "{line}");
            assert_eq!(status(&daemon)["data"]["generation"].as_u64(), Some(1));
            refused(&daemon, &["reload"], "not a regular file");
        }
    });
    flowed.assert_enforced(&ips(&BLOCKED), &ips(&ALLOWED), &pair, &daemon.log());
    geoblock::stop_and_detach(&pair, daemon);
}

#[test]
fn control_commands_change_verdicts_on_live_traffic() {
    let (pair, data, daemon) = started();
    let mode = std::fs::metadata(&daemon.control_socket).unwrap().permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600, "control socket mode");
    let names = [("1.0.1.1", "CN"), ("77.88.8.8", "RU"), ("88.198.0.1", "DE"), ("12.0.0.1", "US")];
    // The countries whose source gets through now.
    let passing = || -> Vec<&str> {
        let through = passing(&pair, &daemon, &names.map(|(ip, _)| ip));
        names.iter().filter(|(ip, _)| through.iter().any(|t| t == ip)).map(|&(_, cc)| cc).collect()
    };
    assert_eq!(passing(), ["DE", "US"]);
    ctl(&daemon, &["block", "DE"]);
    assert_eq!(passing(), ["US"]);
    ctl(&daemon, &["unblock", "CN"]);
    assert_eq!(passing(), ["CN", "US"]);
    ctl(&daemon, &["except", "add", "77.88.8.0/24"]);
    assert_eq!(passing(), ["CN", "RU", "US"]);
    assert!(ctl(&daemon, &["status"]).contains("exceptions  77.88.8.0/24\n"));
    ctl(&daemon, &["except", "del", "77.88.8.0/24"]);
    assert_eq!(passing(), ["CN", "US"]);
    ctl(&daemon, &["mode", "monitor"]);
    assert_eq!(passing(), ["CN", "RU", "DE", "US"]);
    // The list (RU, DE) read as an allow-list.
    ctl(&daemon, &["mode", "allow"]);
    assert_eq!(passing(), ["RU", "DE"]);
    ctl(&daemon, &["allow", "US"]);
    assert_eq!(passing(), ["US"]);
    ctl(&daemon, &["mode", "deny"]);
    assert_eq!(passing(), ["CN", "RU", "DE"]);
    refused(&daemon, &["block", "XX"], "unknown country code 'XX'");
    refused(&daemon, &["except", "del", "10.0.0.0/8"], "10.0.0.0/8 is not an exception");
    refused(&daemon, &["except", "add", "10.0.0/99"], "is not a CIDR");
    refused(&daemon, &["except", "add", "77.88.8.9/24"], "'77.88.8.9/24' has host bits set (the network is 77.88.8.0)");
    assert_eq!(passing(), ["CN", "RU", "DE"], "a refused command changed the policy");

    let status: serde_json::Value = serde_json::from_str(&ctl(&daemon, &["status", "--json"])).unwrap();
    let s = &status["status"];
    assert_eq!(s["policy"]["mode"], "deny", "{status}");
    assert_eq!(s["policy"]["countries"], serde_json::json!(["US"]), "{status}");
    assert_eq!(s["interfaces"][0]["name"], "gbr", "{status}");
    assert_eq!(s["interfaces"][0]["attached"], true, "{status}");
    assert_eq!((s["data"]["generation"].as_u64(), s["data"]["prefixes_v4"].as_u64()), (Some(1), Some(6)), "{status}");
    assert!(ctl(&daemon, &["status"]).contains("deny-list, blocking US"));

    // A reload re-reads the configuration (here: the flags, block CN,RU),
    // whose policy replaces the one the commands made, and the data: in
    // data set B, 77.88.8.0/24 is CN (still blocked), 12.0.0.0/24 FR.
    data.write(DATA_B);
    assert!(ctl(&daemon, &["reload"]).contains("generation 2"));
    assert_eq!(passing(), ["DE", "US"]);
    data.write("1.0.1.0,1.0.1.255,XX-not-a-country\n");
    refused(&daemon, &["reload"], "reload failed");
    assert_eq!(passing(), ["DE", "US"]);
    let status: serde_json::Value = serde_json::from_str(&ctl(&daemon, &["status", "--json"])).unwrap();
    assert_eq!(status["status"]["last_reload"]["ok"], false, "{status}");
    assert_eq!(status["status"]["data"]["generation"], 2, "{status}");

    geoblock::stop_and_detach(&pair, daemon);
}

#[test]
fn config_file_is_checked_reloaded_and_a_bad_one_refused() {
    let pair = Pair::create();
    let data = DataFile::new(DATA_A);
    let config = data.dir.join("geoblock.toml");
    let write_config = |block: &str| {
        let text = format!(
            "interfaces = [\"{}\"]\nxdp_mode = \"native\"\ndata = [\"{}\"]\n\n[policy]\nblock = [{block}]\n",
            pair.receiver_if,
            data.arg()
        );
        std::fs::write(&config, text).unwrap();
    };
    write_config("\"CN\"");
    let check = geoblock::run_to_end(None, &["config", "check", config.to_str().unwrap()], |_| {});
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    assert!(String::from_utf8_lossy(&check.stdout).contains("ok; deny-list, blocking CN"));

    let daemon = Daemon::start(&pair.receiver, &["--config", config.to_str().unwrap()]);
    let (cn, de) = ("1.0.1.1", "88.198.0.1");
    let through = || passing(&pair, &daemon, &[cn, de]);
    assert_eq!(through(), [de]);
    write_config("\"DE\"");
    daemon.signal(libc::SIGHUP);
    daemon.wait_line("policy changed by the reloaded config", Duration::from_secs(30));
    assert_eq!(through(), [cn]);

    // An invalid config is refused by `config check` and by the daemon,
    // which keeps the policy in force.
    write_config("\"XX\"");
    let check = geoblock::run_to_end(None, &["config", "check", config.to_str().unwrap()], |_| {});
    assert_eq!(check.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&check.stderr).contains("unknown country code 'XX'"));
    refused(&daemon, &["reload"], "reload failed (config)");
    assert_eq!(through(), [cn]);

    geoblock::stop_and_detach(&pair, daemon);
}

/// `geoblock run ARGS` in the pair's receiver namespace, which the
/// lock-out guard must refuse, leaving nothing behind: its stderr.
fn refused_start(pair: &Pair, args: &[&str], setup: impl FnOnce(&mut std::process::Command)) -> String {
    let state_dir = geoblock::state_dir();
    let socket = geoblock::control_socket(&state_dir);
    let out = geoblock::run_refused(&pair.receiver, args, &state_dir, &socket, setup);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!pair.receiver_has_xdp() && !state_dir.exists(), "a refused start left state behind");
    stderr
}

#[test]
fn lock_out_guard_refuses_dropping_the_ssh_client_or_management_unless_forced() {
    let pair = Pair::create();
    let data = DataFile::new(DATA_A);
    let de_ssh = |cmd: &mut std::process::Command| {
        cmd.env("SSH_CONNECTION", "88.198.0.1 50000 10.0.0.1 22");
    };
    // Started from an SSH session whose client is in DE: --block DE is refused.
    let block_de = ["--iface", &pair.receiver_if, "--block", "DE", "--data", data.arg()];
    let stderr = refused_start(&pair, &block_de, de_ssh);
    let expect = "refusing a policy that drops the SSH client 88.198.0.1 (SSH_CONNECTION): it is in DE, which the \
                  deny-list blocks";
    assert!(stderr.contains(expect), "{stderr}");

    // A management network: refused, then forced.
    let mut args = run_args(&pair, &data);
    args.extend(["--management", "1.0.1.0/24"]);
    let stderr = refused_start(&pair, &args, |_| {});
    assert!(stderr.contains("drops management network 1.0.1.0/24 (--management): part of it is in CN"), "{stderr}");
    args.push("--force");
    let forced = Daemon::start(&pair.receiver, &args);
    let forced_state = forced.state_dir.clone();
    assert!(forced.stop().success());
    geoblock::detach_all(&pair, &forced_state);

    let daemon = Daemon::start(&pair.receiver, &run_args(&pair, &data));

    // A control command from an SSH client in US may not block US...
    let us_ssh = |cmd: &mut std::process::Command| {
        cmd.env("SSH_CONNECTION", "12.0.0.1 50000 10.0.0.1 22");
    };
    let out = daemon.control_with(&["block", "US"], us_ssh);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("drops the SSH client 12.0.0.1 (SSH_CONNECTION): it is in US")
    );
    // ... unless forced; an exception for the client also makes it safe.
    let out = daemon.control_with(&["block", "US", "--force"], us_ssh);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    ctl(&daemon, &["unblock", "US"]);
    ctl(&daemon, &["except", "add", "12.0.0.0/24"]);
    assert!(daemon.control_with(&["block", "US"], us_ssh).status.success());
    let through = passing(&pair, &daemon, &["12.0.0.1"]);
    assert_eq!(through, ["12.0.0.1"], "the excepted client was dropped");

    geoblock::stop_and_detach(&pair, daemon);
}

/// A TCP connection from the pair's sender to port 22 of its receiver,
/// where `listener` listens: both ends, kept open while held.
fn ssh_connection(pair: &Pair, listener: &TcpListener, to: IpAddr) -> (TcpStream, TcpStream) {
    let client = pair.sender.run(|| TcpStream::connect((to, 22)).expect("connecting to port 22"));
    let (server, _) = listener.accept().expect("accepting on port 22");
    (client, server)
}

#[test]
fn lock_out_guard_sees_ssh_connections_that_ssh_connection_does_not_name() {
    let pair = Pair::create();
    // The sender's addresses, the SSH clients below, are in DE.
    let sender_de = "10.251.0.0,10.251.255.255,DE\nfd00:6762::,fd00:6762:ffff:ffff:ffff:ffff:ffff:ffff,DE\n";
    let data = DataFile::new(&format!("{DATA_A}{sender_de}"));
    // As under systemd or sudo: no SSH_CONNECTION.
    let no_env = [("SSH_CONNECTION", "")];
    let daemon = Daemon::start_with_env(&pair.receiver, &run_args(&pair, &data), &no_env);
    assert!(daemon.log().contains("lock-out guard: no way in to protect"), "{}", daemon.log());
    let no_ssh = |cmd: &mut std::process::Command| {
        cmd.env_remove("SSH_CONNECTION");
    };

    // An sshd stand-in on port 22 (dual-stack, as sshd listens).
    let listener = pair.receiver.run(|| TcpListener::bind("[::]:22").expect("listening on port 22"));
    let v6 = ssh_connection(&pair, &listener, pair.receiver_v6.into());
    let out = daemon.control_with(&["block", "DE"], no_ssh);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let expect = format!(
        "refusing a policy that drops the SSH client {} (connected to port 22): it is in DE, which the deny-list blocks",
        pair.sender_v6
    );
    assert!(stderr.contains(&expect), "{stderr}");
    drop(v6);
    geoblock::stop_and_detach(&pair, daemon);

    // At start, an IPv4 client (which a dual-stack sshd sees as ::ffff:a.b.c.d).
    let _v4 = ssh_connection(&pair, &listener, pair.receiver_v4.into());
    let stderr = refused_start(&pair, &["--iface", &pair.receiver_if, "--block", "DE", "--data", data.arg()], no_ssh);
    let client = format!("the SSH client {} (connected to port 22)", pair.sender_v4);
    assert!(stderr.contains(&format!("lock-out guard: keeping reachable {client}")), "{stderr}");
    assert!(stderr.contains(&format!("drops {client}: it is in DE, which the deny-list blocks")), "{stderr}");
}

/// Default routes from the receiver through addresses beyond its veth end:
/// `v4` and `v6`, in countries of DATA_A.
fn default_routes_via(pair: &Pair, v4: &str, v6: &str) {
    for (family, via) in [("-4", v4), ("-6", v6)] {
        pair.receiver.ip(&[family, "route", "add", "default", "via", via, "dev", &pair.receiver_if, "onlink"]);
    }
}

#[test]
fn lock_out_guard_refuses_cutting_the_host_off_its_default_gateways_unless_forced() {
    let pair = Pair::create();
    let data = DataFile::new(DATA_A);
    default_routes_via(&pair, "1.0.1.1", "2a01:4f8::1");
    let gateway = format!("the default gateway 1.0.1.1 (default route via {})", pair.receiver_if);

    // Starting with an outbound policy that blocks the gateway's country.
    let out_cn = ["--iface", &pair.receiver_if, "--outbound", "--block", "CN", "--data", data.arg()];
    let stderr = refused_start(&pair, &out_cn, |_| {});
    let kept = stderr.lines().find(|l| l.contains("lock-out guard: keeping reachable ")).unwrap_or_default();
    assert!(kept.contains(&gateway), "the start log names the gateway: {stderr}");
    let expect = format!(
        "refusing a policy that drops {gateway}: it is in CN, which the deny-list of rule default (outbound, every \
         protocol and port) blocks"
    );
    assert!(stderr.contains(&expect), "{stderr}");

    // Inbound, the same country is no threat to it: its answers are replies.
    let config = geoblock::ConfigFile::new(
        "[policy]\nblock = [\"CN\"]\n[[rule]]\nname = \"out\"\ndirection = \"outbound\"\nblock = [\"RU\"]\n",
    );
    let args = ["--config", config.arg(), "--iface", &pair.receiver_if, "--data", data.arg()];
    let daemon = Daemon::start(&pair.receiver, &args);
    refused(&daemon, &["block", "--rule", "out", "CN"], &format!("drops {gateway}: it is in CN"));
    let v6 = format!("drops the default gateway 2a01:4f8::1 (default route via {}): it is in DE", pair.receiver_if);
    refused(&daemon, &["block", "--rule", "out", "DE"], &v6);
    let rules = &status(&daemon)["policy"]["rules"];
    assert_eq!(rules[0]["countries"], serde_json::json!(["RU"]), "a refused change changed the policy: {rules}");

    ctl(&daemon, &["block", "--rule", "out", "CN", "--force"]);
    let rules = &status(&daemon)["policy"]["rules"];
    assert_eq!(
        (&rules[0]["direction"], &rules[0]["countries"]),
        (&"outbound".into(), &serde_json::json!(["CN", "RU"]))
    );
    assert!(ctl(&daemon, &["status"])
        .contains("rule        out (outbound, every protocol and port): deny-list, blocking CN,RU"));
    // The gateway as a destination: the outbound rule drops it now.
    let explained = ctl(&daemon, &["explain", "--outbound", "1.0.1.1"]);
    assert!(explained.contains("direction   outbound: the address as a destination"), "{explained}");
    assert!(explained.contains("verdict     drop: CN is on the block list"), "{explained}");
    geoblock::stop_and_detach(&pair, daemon);
}

#[test]
fn systemd_hears_ready_once_attached_and_stopping_at_exit() {
    let pair = Pair::create();
    let data = DataFile::new(DATA_A);
    let socket_path = data.dir.join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let daemon = Daemon::start_with_env(
        &pair.receiver,
        &run_args(&pair, &data),
        &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())],
    );
    let mut buf = [0u8; 64];
    let n = socket.recv(&mut buf).expect("no READY=1 from the daemon");
    assert_eq!(&buf[..n], b"READY=1");
    let state_dir = daemon.state_dir.clone();
    assert!(daemon.stop().success());
    let n = socket.recv(&mut buf).expect("no STOPPING=1 from the daemon");
    assert_eq!(&buf[..n], b"STOPPING=1");
    geoblock::detach_all(&pair, &state_dir);
}

/// What is left of DATA_B after a truncated copy: two of its seven rows.
const SHRUNK: &str = "1.0.1.0,1.0.1.255,CN\n88.198.0.0,88.198.0.255,DE\n";

fn status(daemon: &Daemon) -> serde_json::Value {
    let response: serde_json::Value = serde_json::from_str(&ctl(daemon, &["status", "--json"])).unwrap();
    response["status"].clone()
}

#[test]
fn edited_data_is_reloaded_and_shrunken_or_empty_data_refused_while_the_old_table_enforces() {
    let (pair, data, daemon) = started();
    let flowed = under_traffic(&pair, &all_sources(), || {
        // A file edited in place is reloaded without a signal.
        data.write(DATA_B);
        daemon.wait_line("data changed on disk", Duration::from_secs(30));
        daemon.wait_line("reloaded: generation 2", Duration::from_secs(30));
        // Most of it gone (a truncated copy, the wrong file): refused.
        data.write(SHRUNK);
        let line = daemon.wait_line("reload failed (shrink guard)", Duration::from_secs(30));
        assert!(line.contains("shrinks by") && line.contains("stay in force"), "{line}");
        data.write("1.0.0.0,1.0.0.255,ZZ\n");
        refused(&daemon, &["reload"], "the new table is empty");
    });
    flowed.assert_enforced(&ips(&BLOCKED), &ips(&ALLOWED), &pair, &daemon.log());
    let s = status(&daemon);
    assert_eq!((s["data"]["generation"].as_u64(), s["data"]["prefixes_v4"].as_u64()), (Some(2), Some(6)), "{s}");
    assert_eq!(s["last_reload"]["ok"], false, "{s}");
    assert!(s["last_reload"]["message"].as_str().unwrap().contains("empty"), "{s}");

    // An operator who means it forces the smaller data set in.
    data.write(SHRUNK);
    assert!(ctl(&daemon, &["reload", "--force"]).contains("generation 3"));
    assert_eq!(passing(&pair, &daemon, &["1.0.1.1", "77.88.8.8", "88.198.0.1"]), ["77.88.8.8", "88.198.0.1"]);
    geoblock::stop_and_detach(&pair, daemon);
}

#[test]
fn url_data_is_refreshed_and_a_failed_download_keeps_the_table_in_force() {
    let pair = Pair::create();
    let server = geoblock_tests::http::FileServer::start(&pair.receiver, DATA_A);
    let url = server.url("countries.csv");
    // Only for its temporary directory, which holds the downloads.
    let scratch = DataFile::new("");
    let cache = scratch.dir.join("cache");
    let cache = cache.to_str().unwrap();
    let args =
        geoblock::run_args(&pair, &["--block", "CN,RU", "--data", &url, "--cache-dir", cache, "--refresh", "1s"]);
    let daemon = Daemon::start(&pair.receiver, &args);
    let s = status(&daemon);
    assert_eq!(
        (s["data"]["sources"][0]["source"].as_str(), s["data"]["refresh_seconds"].as_u64()),
        (Some(url.as_str()), Some(1)),
        "{s}"
    );
    assert_eq!(passing(&pair, &daemon, &[SWITCHING]), Vec::<String>::new(), "90.0.0.0/24 is CN in data set A");
    let flowed = under_traffic(&pair, &all_sources(), || {
        server.serve(DATA_B);
        daemon.wait_line("downloaded 1 changed URL source", Duration::from_secs(30));
        daemon.wait_line("reloaded: generation 2", Duration::from_secs(30));
        // The server says "not modified" from then on: nothing reloads.
        daemon.wait_line("the URL sources are unchanged", Duration::from_secs(30));
        server.fail(404);
        let line = daemon.wait_line("download failed", Duration::from_secs(30));
        assert!(line.contains("404") && line.contains("the table in force stays"), "{line}");
    });
    flowed.assert_enforced(&ips(&BLOCKED), &ips(&ALLOWED), &pair, &daemon.log());
    assert_eq!(passing(&pair, &daemon, &[SWITCHING]), [SWITCHING], "90.0.0.0/24 is DE in data set B");
    let s = status(&daemon);
    assert_eq!(s["data"]["generation"], 2, "{s}");
    assert_eq!(s["data"]["last_download"]["ok"], false, "{s}");
    assert!(server.requests() >= 4, "{} requests", server.requests());
    geoblock::stop_and_detach(&pair, daemon);
}

/// Rows the slow data sets add: enough that reading them takes seconds in a
/// debug build (3 to 8 s per million here).
const SLOW_ROWS: u32 = 1_000_000;
/// A range none of the data sets names, DE, which the slow data sets cover
/// with [`SLOW_ROWS`] rows too: data sets with and without them then cover
/// the same addresses, and the shrink guard lets either replace the other.
const COVER: &str = "100.64.0.0,100.127.255.255,DE\n";
/// How long `status` may take while a reload reads data: generous, a busy
/// machine included; a status waiting for the load would take all of it.
const STATUS_BOUND: Duration = Duration::from_secs(3);

/// `base`, [`COVER`] and [`SLOW_ROWS`] rows of one address each inside it:
/// slow to read, one prefix more than `base` once merged, so the kernel's
/// part stays quick.
fn slow_data(base: &str) -> String {
    let first = u32::from(Ipv4Addr::new(100, 64, 0, 0));
    let mut text = String::with_capacity(base.len() + SLOW_ROWS as usize * 32);
    text.push_str(base);
    text.push_str(COVER);
    for address in (first..first + SLOW_ROWS).map(Ipv4Addr::from) {
        writeln!(text, "{address},{address},DE").unwrap();
    }
    text
}

/// Polls `status --json` until `until` holds for it (within 30 s): each
/// must answer within [`STATUS_BOUND`].
fn status_until(daemon: &Daemon, what: &str, until: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let asked = Instant::now();
        let s = status(daemon);
        let took = asked.elapsed();
        assert!(took < STATUS_BOUND, "status took {took:?} during a reload\ndaemon log:\n{}", daemon.log());
        if until(&s) {
            return;
        }
        assert!(Instant::now() < deadline, "status never showed {what}: {s}\ndaemon log:\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `geoblock reload` against the daemon at `socket`: its answer.
fn reload_client(socket: &str) -> String {
    let out = geoblock::run_to_end(None, &["reload", "--control-socket", socket], |_| {});
    assert!(out.status.success(), "geoblock reload: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A reload that reads a large file takes seconds: meanwhile `status`
/// answers at once and shows it, a second `geoblock reload` is queued and
/// then loads the files as they are by then, and each client is answered
/// once its table is in force. A data file changed on disk loads in the
/// background too, and a policy change made meanwhile stays.
#[test]
fn a_slow_reload_reads_in_the_background_and_a_second_one_waits_for_it() {
    let (pair, data, daemon) = started();
    assert_eq!(passing(&pair, &daemon, &[SWITCHING]), Vec::<String>::new(), "90.0.0.0/24 is CN in data set A");
    // In data set B, 90.0.0.0/24 is DE.
    data.write(&slow_data(DATA_B));
    let socket = daemon.control_socket.to_str().unwrap();
    let (first, second) = std::thread::scope(|s| {
        let first = s.spawn(|| reload_client(socket));
        status_until(&daemon, "a reload in progress", |s| !s["reloading"].is_null());
        // Written after the first reload read the file: the queued one reads this.
        data.write(&format!("{DATA_B}{COVER}100.128.0.0,100.128.0.255,DE\n"));
        let second = s.spawn(|| reload_client(socket));
        status_until(&daemon, "a reload queued", |s| s["reloading"]["queued"] == true);
        let text = ctl(&daemon, &["status"]);
        assert!(text.contains("\nreloading   for ") && text.contains("; another one queued\n"), "{text}");
        (first.join().unwrap(), second.join().unwrap())
    });
    assert!(first.contains("reloaded: generation 2"), "{first}");
    assert!(second.contains("reloaded: generation 3"), "{second}");
    let s = status(&daemon);
    assert!(s["reloading"].is_null() && s["last_reload"]["ok"] == true, "{s}");
    // Data set B, COVER and the /24 after it: the second file.
    assert_eq!((s["data"]["generation"].as_u64(), s["data"]["prefixes_v4"].as_u64()), (Some(3), Some(8)), "{s}");
    assert_eq!(passing(&pair, &daemon, &[SWITCHING]), [SWITCHING], "data set B is not in force");

    // Edited on disk: no signal. DE is blocked while the file is read.
    data.write(&slow_data(DATA_A));
    status_until(&daemon, "a reload of the changed file", |s| !s["reloading"].is_null());
    ctl(&daemon, &["block", "DE"]);
    daemon.wait_line("reloaded: generation 4", Duration::from_secs(60));
    assert_eq!(status(&daemon)["policy"]["countries"], serde_json::json!(["CN", "DE", "RU"]));
    let (cn, de, us) = (SWITCHING, ALLOWED[0], ALLOWED[1]);
    assert_eq!(passing(&pair, &daemon, &[cn, de, us]), [us], "data set A, blocking CN, DE and RU, is not in force");
    geoblock::stop_and_detach(&pair, daemon);
}

/// SIGTERM during a reload that reads a large file stops the daemon at
/// once, without the reload: the table in force stays.
#[test]
fn sigterm_during_a_slow_reload_exits_at_once_and_the_table_in_force_stays() {
    let (pair, data, daemon) = started();
    // In data set B, 90.0.0.0/24 is DE; in A, in force, CN.
    data.write(&slow_data(DATA_B));
    daemon.signal(libc::SIGHUP);
    status_until(&daemon, "a reload in progress", |s| !s["reloading"].is_null());
    let (state_dir, log) = (daemon.state_dir.clone(), daemon.log());
    let stopping = Instant::now();
    assert!(daemon.stop().success(), "geoblock run failed on SIGTERM:\n{log}");
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(5), "SIGTERM during a reload took {took:?}:\n{log}");
    // The pins still enforce data set A: the reload was not finished.
    let mut blocked = ips(&BLOCKED);
    blocked.push(SWITCHING.parse().unwrap());
    let flowed = under_traffic(&pair, &[blocked.clone(), ips(&ALLOWED)].concat(), || {});
    flowed.assert_enforced(&blocked, &ips(&ALLOWED), &pair, &log);
    geoblock::detach_all(&pair, &state_dir);
}

/// Rules whose positions shift between two configs: the UDP datagrams of
/// the traffic (to port 5555) fall under `app` in both, which blocks CN and
/// RU, while `rest` blocks RU alone.
const RULES_A: &str = "\
[[rule]]
name = \"app\"
protocol = \"udp\"
ports = [5555]
block = [\"CN\", \"RU\"]

[[rule]]
name = \"rest\"
block = [\"RU\"]
";
const RULES_B: &str = "\
[[rule]]
name = \"ssh\"
protocol = \"tcp\"
ports = [22]
allow = [\"DE\"]

[[rule]]
name = \"web\"
protocol = \"tcp\"
ports = [\"80\", \"443\", \"8000-8999\"]
block = [\"RU\"]

[[rule]]
name = \"app\"
protocol = \"udp\"
ports = [\"5000-5999\"]
block = [\"CN\", \"RU\"]

[[rule]]
name = \"rest\"
block = [\"RU\"]
";

#[test]
fn rules_changed_under_traffic_drop_and_leak_nothing() {
    let pair = Pair::create();
    let data = DataFile::new(DATA_A);
    let config = data.dir.join("geoblock.toml");
    std::fs::write(&config, RULES_A).unwrap();
    let config_arg = config.to_str().unwrap();
    let daemon =
        Daemon::start(&pair.receiver, &geoblock::run_args(&pair, &["--config", config_arg, "--data", data.arg()]));
    let us = "12.0.0.1";
    let steady: Vec<IpAddr> = all_sources().into_iter().filter(|s| s.to_string() != us).collect();
    let flowed = under_traffic(&pair, &steady, || {
        // The rules move to other positions and other ports, in both
        // directions, and one rule's list changes on the control socket.
        std::fs::write(&config, RULES_B).unwrap();
        assert!(ctl(&daemon, &["reload"]).contains("generation 2"));
        ctl(&daemon, &["block", "US", "--rule", "app"]);
        ctl(&daemon, &["unblock", "US", "--rule", "app"]);
        std::fs::write(&config, RULES_A).unwrap();
        assert!(ctl(&daemon, &["reload"]).contains("generation 3"));
    });
    let allowed: Vec<IpAddr> = ips(&ALLOWED).into_iter().filter(|s| s.to_string() != us).collect();
    flowed.assert_enforced(&ips(&BLOCKED), &allowed, &pair, &daemon.log());
    // A change of one rule's list takes effect for the next packet.
    assert!(passing(&pair, &daemon, &[us]) == [us]);
    ctl(&daemon, &["block", "US", "--rule", "app"]);
    assert!(passing(&pair, &daemon, &[us]).is_empty(), "US still passes after `block US --rule app`");
    refused(&daemon, &["block", "US"], "app");
    refused(&daemon, &["block", "US", "--rule", "nope"], "nope");
    let stats = daemon.stats();
    let app = stats.0["rules"].as_array().unwrap().iter().find(|r| r["name"] == "app").cloned().unwrap();
    assert!(app["ipv4"]["dropped_packets"].as_u64().unwrap() > 0, "{app}");
    geoblock::stop_and_detach(&pair, daemon);
}
