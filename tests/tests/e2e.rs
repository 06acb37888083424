//! End to end: the real `geoblock run`, attached in native XDP mode to a veth
//! end in a throwaway network namespace, and real frames with spoofed
//! sources of several countries sent from the other end. What the receiver's
//! UDP sockets get, and what `geoblock stats --json` says, must match the
//! policy exactly. Needs root; fails (never skips) without it.
//!
//! Build the binary first: `cargo build -p geoblock-user --bin geoblock`
//! (`cargo xtask test` does), or point GEOBLOCK_BIN at one.
//! GEOBLOCK_TEST_LOG=1 echoes the daemons' logs.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    path::Path,
    process::Output,
    time::Duration,
};

use geoblock_common::{Counter, CountryCounters};
use geoblock_tests::{
    geoblock::{self, Daemon},
    netns::{self, Netns, Pair},
    sources,
    traffic::{Receiver, Sender},
};

/// What should happen to the datagrams of one source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Dropped,
    Passed,
    /// Monitor mode: delivered, counted as a would-drop.
    WouldDrop,
    /// Inside an `--except` CIDR: delivered, counted in totals.exception only.
    Exception,
}

struct Flow {
    cc: &'static str,
    src: IpAddr,
    fate: Fate,
}

fn flow(cc: &'static str, src: IpAddr, fate: Fate) -> Flow {
    Flow { cc, src, fate }
}

/// The pseudo-country of addresses no country claims.
const UNKNOWN: &str = "--";

/// Private sources, which no country claims: they pass unless --block-unknown.
fn unknown_flows(fate: Fate) -> Vec<Flow> {
    let srcs: [IpAddr; 2] = ["192.168.77.7".parse().unwrap(), "fd00:dead:beef::7".parse().unwrap()];
    assert_eq!(geoblock::lookup(&srcs), [None, None], "private addresses must have no country");
    srcs.into_iter().map(|src| flow(UNKNOWN, src, fate)).collect()
}

/// Both sources (v4, v6) of each country with the same fate.
fn flows(ccs: &[&'static str], fate: Fate) -> Vec<Flow> {
    ccs.iter().flat_map(|&cc| sources::of(cc).map(|src| flow(cc, src, fate))).collect()
}

/// Starts `geoblock run --iface <receiver veth> --xdp-mode native ARGS`,
/// sends a distinct number of datagrams from every flow's source, and checks
/// deliveries and counters exactly; then stops the daemon with SIGTERM and
/// checks it left nothing behind.
fn scenario(args: &[&str], flows: &[Flow]) {
    scenario_in_mode("native", args, flows)
}

fn scenario_in_mode(xdp_mode: &str, args: &[&str], flows: &[Flow]) {
    let pair = Pair::create();
    let mut run_args = vec!["--iface", pair.receiver_if.as_str(), "--xdp-mode", xdp_mode];
    run_args.extend_from_slice(args);
    let daemon = Daemon::start(&pair.receiver, &run_args);
    assert!(pair.receiver_has_xdp(), "no XDP program on {} after 'attached to'", pair.receiver_if);
    assert!(
        daemon.state_dir.join("COUNTRY_STATS").exists() && daemon.state_dir.join("TOTALS").exists(),
        "counters not pinned in {}",
        daemon.state_dir.display()
    );

    let receiver = Receiver::new(&pair);
    let sender = Sender::new(&pair);
    // Distinct counts per source, so a swapped or misattributed flow shows.
    let mut sent = Vec::new();
    for (i, f) in flows.iter().enumerate() {
        let count = 5 + 3 * i;
        let len = sender.send(f.src, count);
        sent.push((count as u64, len as u64));
    }
    let got = receiver.collect(Duration::from_millis(500));

    // Deliveries, per source.
    let mut failures = Vec::new();
    for (f, &(count, _)) in flows.iter().zip(&sent) {
        let expected = if f.fate == Fate::Dropped { 0 } else { count as usize };
        let delivered = got.get(&f.src).copied().unwrap_or(0);
        if delivered != expected {
            failures.push(format!(
                "{} {} ({:?}): {delivered} of {count} datagrams delivered, expected {expected}",
                f.cc, f.src, f.fate
            ));
        }
    }
    let ours: BTreeSet<IpAddr> = flows.iter().map(|f| f.src).collect();
    for (src, n) in &got {
        if !ours.contains(src) {
            failures.push(format!("{n} datagrams from unexpected source {src}"));
        }
    }

    // Counters, per country, exact: bytes are whole frames.
    let stats = daemon.stats();
    let mut expected: BTreeMap<&str, CountryCounters> = BTreeMap::new();
    let [mut dropped, mut would_drop, mut exception] = [Counter::default(); 3];
    for (f, &(count, len)) in flows.iter().zip(&sent) {
        let c = expected.entry(f.cc).or_default();
        let bytes = count * len;
        let flow = Counter { packets: count, bytes };
        match f.fate {
            Fate::Dropped => {
                c.dropped_packets += count;
                c.dropped_bytes += bytes;
                dropped = dropped + flow;
            }
            Fate::Passed => {
                c.passed_packets += count;
                c.passed_bytes += bytes;
            }
            Fate::WouldDrop => {
                c.would_drop_packets += count;
                c.would_drop_bytes += bytes;
                would_drop = would_drop + flow;
            }
            Fate::Exception => exception = exception + flow,
        }
    }
    for (cc, want) in &expected {
        if *cc == UNKNOWN {
            // The link's own IPv6 chatter (link-local sources) adds to it.
            let have = stats.unknown();
            let at_least = have.passed_packets >= want.passed_packets
                && have.passed_bytes >= want.passed_bytes
                && have.dropped_packets == want.dropped_packets
                && have.would_drop_packets == want.would_drop_packets;
            if !at_least {
                failures.push(format!("stats for unknown sources: {have:?}\n    expected at least {want:?}"));
            }
            continue;
        }
        let have = stats.country(cc);
        if have != *want {
            failures.push(format!("stats for {cc}: {have:?}\n    expected {want:?}"));
        }
    }
    // Only our countries have traffic (the namespaces' own addresses and
    // link-local IPv6 chatter have none).
    for cc in stats.countries() {
        let counted = expected.get(cc.as_str());
        if counted.is_none_or(|c| *c == CountryCounters::default()) {
            failures.push(format!("stats show traffic for {cc}, which sent nothing counted: {:?}", stats.country(&cc)));
        }
    }
    // Nothing unknown was dropped (no --block-unknown here), so the totals
    // of drops are exactly ours; passed also holds the link's own chatter.
    for (name, want) in [("dropped", dropped), ("would_drop", would_drop), ("exception", exception)] {
        if stats.total(name) != want {
            failures.push(format!("totals.{name}: {:?}, expected {want:?}", stats.total(name)));
        }
    }
    assert!(
        failures.is_empty(),
        "geoblock run {}:\n  {}\nreceived: {got:?}\nstats: {}\nveth drops (tx, rx) sender {:?}, receiver {:?} \
         (XDP drops are not counted there; other drops mean the harness lost frames)\ndaemon log:\n{}",
        run_args.join(" "),
        failures.join("\n  "),
        stats.0,
        netns::link_drops(&pair.sender, &pair.sender_if),
        netns::link_drops(&pair.receiver, &pair.receiver_if),
        daemon.log()
    );

    geoblock::stop_and_detach(&pair, daemon);
}

#[test]
fn deny_list_drops_blocked_countries_v4_and_v6() {
    let mut f = flows(&["CN", "RU"], Fate::Dropped);
    f.extend(flows(&["DE", "US", "FR"], Fate::Passed));
    scenario(&["--block", "CN,RU"], &f);
}

#[test]
fn allow_list_drops_everyone_else() {
    let mut f = flows(&["DE", "FR"], Fate::Passed);
    f.extend(flows(&["CN", "RU", "US"], Fate::Dropped));
    // An allow-list must not cut off addresses without a country (the LAN).
    f.extend(unknown_flows(Fate::Passed));
    scenario(&["--allow", "DE,FR"], &f);
}

#[test]
fn deny_list_in_generic_skb_mode() {
    let mut f = flows(&["CN", "KP"], Fate::Dropped);
    f.extend(flows(&["DE", "US"], Fate::Passed));
    f.extend(unknown_flows(Fate::Passed));
    scenario_in_mode("skb", &["--block", "CN,KP"], &f);
}

#[test]
fn exceptions_pass_before_the_country() {
    // The CN sources themselves are exceptions; their neighbours are not.
    let [cn4, cn6] = sources::of("CN");
    let [cn4b, cn6b] = sources::after("CN", 1);
    // An exception covering a passing source changes nothing: it counts as
    // its country's pass (exceptions only ever rescue drops).
    let [de4, de6] = sources::of("DE");
    let network = |ip: IpAddr, len: u8| ipnetwork::IpNetwork::new(ip, len).unwrap().network();
    let except = format!("{cn4}/32,{cn6}/128,{}/24,{}/64", network(de4, 24), network(de6, 64));
    let mut f = vec![
        flow("CN", cn4, Fate::Exception),
        flow("CN", cn6, Fate::Exception),
        flow("CN", cn4b, Fate::Dropped),
        flow("CN", cn6b, Fate::Dropped),
        flow("DE", de4, Fate::Passed),
        flow("DE", de6, Fate::Passed),
    ];
    f.extend(flows(&["RU"], Fate::Dropped));
    f.extend(flows(&["US"], Fate::Passed));
    scenario(&["--block", "CN,RU", "--except", &except], &f);
}

#[test]
fn exceptions_in_monitor_mode_and_allow_list() {
    // Allow-list DE in monitor mode: US and CN would be dropped; the CN
    // sources are exceptions, so they count as such, not as would-drops.
    let [cn4, cn6] = sources::of("CN");
    let except = format!("{cn4}/32,{cn6}/128");
    let mut f = vec![flow("CN", cn4, Fate::Exception), flow("CN", cn6, Fate::Exception)];
    f.extend(flows(&["US", "RU"], Fate::WouldDrop));
    f.extend(flows(&["DE"], Fate::Passed));
    scenario(&["--allow", "DE", "--monitor", "--except", &except], &f);
}

#[test]
fn monitor_mode_counts_would_drops_and_delivers_everything() {
    let mut f = flows(&["CN", "RU"], Fate::WouldDrop);
    f.extend(flows(&["DE", "US"], Fate::Passed));
    scenario(&["--block", "CN,RU", "--monitor"], &f);
}

#[test]
fn monitor_mode_with_allow_list() {
    let mut f = flows(&["DE"], Fate::Passed);
    f.extend(flows(&["CN", "US"], Fate::WouldDrop));
    scenario(&["--allow", "DE", "--monitor"], &f);
}

#[test]
fn block_unknown_drops_addresses_without_a_country() {
    let pair = Pair::create();
    let daemon = Daemon::start(&pair.receiver, &geoblock::run_args(&pair, &["--block", "CN", "--block-unknown"]));
    // Private addresses: no country in any data.
    let unknown: [IpAddr; 2] = ["192.168.77.7".parse().unwrap(), "fd00:dead:beef::7".parse().unwrap()];
    assert_eq!(geoblock::lookup(&unknown), [None, None]);
    let [de4, de6] = sources::of("DE");
    let receiver = Receiver::new(&pair);
    let sender = Sender::new(&pair);
    let len4 = sender.send(unknown[0], 6) as u64;
    let len6 = sender.send(unknown[1], 9) as u64;
    sender.send(de4, 4);
    sender.send(de6, 3);
    let got = receiver.collect(Duration::from_millis(500));
    assert_eq!(got.get(&unknown[0]), None, "unknown IPv4 source delivered: {got:?}");
    assert_eq!(got.get(&unknown[1]), None, "unknown IPv6 source delivered: {got:?}");
    assert_eq!((got.get(&de4), got.get(&de6)), (Some(&4), Some(&3)), "{got:?}");
    let stats = daemon.stats();
    // The link's own chatter (IPv6 neighbour discovery from link-local
    // sources) is unknown too and may add to the count.
    let u = stats.unknown();
    assert!(
        u.dropped_packets >= 15 && u.dropped_bytes >= 6 * len4 + 9 * len6,
        "unknown sources: {u:?}, expected at least 15 dropped"
    );
    assert_eq!(stats.country("DE").passed_packets, 7);
    geoblock::stop_and_detach(&pair, daemon);
}

#[test]
fn sigterm_leaves_enforcement_until_detach() {
    let pair = Pair::create();
    let daemon = Daemon::start(&pair.receiver, &geoblock::run_args(&pair, &["--block", "CN"]));
    let state_dir = daemon.state_dir.clone();
    let [cn4, _] = sources::of("CN");
    let receiver = Receiver::new(&pair);
    let sender = Sender::new(&pair);
    assert!(daemon.stop().success());
    // The daemon is gone; its program still drops CN and still counts.
    sender.send(cn4, 3);
    let got = receiver.collect(Duration::from_millis(300));
    assert_eq!(got.get(&cn4), None, "CN delivered after SIGTERM: {got:?}");
    assert_eq!(geoblock::stats(&state_dir).country("CN").dropped_packets, 3);
    geoblock::detach_all(&pair, &state_dir);
    sender.send(cn4, 3);
    let got = receiver.collect(Duration::from_millis(300));
    assert_eq!(got.get(&cn4), Some(&3), "after geoblock detach, CN traffic must flow again: {got:?}");
}

#[test]
fn detach_on_exit_removes_everything() {
    let pair = Pair::create();
    let daemon = Daemon::start(&pair.receiver, &["--iface", &pair.receiver_if, "--block", "CN", "--detach-on-exit"]);
    let state_dir = daemon.state_dir.clone();
    assert!(daemon.stop().success());
    assert!(!pair.receiver_has_xdp(), "--detach-on-exit left XDP attached");
    assert!(!state_dir.exists(), "--detach-on-exit left {}", state_dir.display());
}

#[test]
fn several_interfaces_are_all_enforced_and_all_released() {
    let pair = Pair::create();
    let second = pair.add_link(2);
    let daemon = Daemon::start(
        &pair.receiver,
        &["--iface", &pair.receiver_if, "--iface", &second.receiver_if, "--xdp-mode", "native", "--block", "CN"],
    );
    assert!(netns::has_xdp(&pair.receiver, &second.receiver_if), "no XDP on the second interface");
    let [cn4, cn6] = sources::of("CN");
    let [de4, de6] = sources::of("DE");
    let receiver = Receiver::new(&pair);
    let (first, other) = (Sender::new(&pair), Sender::on_link(&pair, &second));
    let len4 = first.send(cn4, 3) as u64;
    let len6 = other.send(cn6, 4) as u64;
    assert_eq!(len4 + 20, len6, "an IPv6 frame is 20 bytes longer");
    other.send(cn4, 5);
    first.send(de4, 2);
    other.send(de6, 6);
    let got = receiver.collect(Duration::from_millis(500));
    let expected: BTreeMap<IpAddr, usize> = [(de4, 2), (de6, 6)].into();
    assert_eq!(got, expected, "only DE may arrive, on both interfaces");
    let stats = daemon.stats();
    assert_eq!(
        stats.country("CN"),
        CountryCounters { dropped_packets: 12, dropped_bytes: 8 * len4 + 4 * len6, ..CountryCounters::default() }
    );
    assert_eq!(stats.country("DE").passed_packets, 8);
    geoblock::stop_and_detach(&pair, daemon);
    assert!(!netns::has_xdp(&pair.receiver, &second.receiver_if), "XDP left on the second interface");
}

#[test]
fn a_second_daemon_fails_without_disturbing_the_first() {
    let pair = Pair::create();
    let first = Daemon::start(&pair.receiver, &geoblock::run_args(&pair, &["--block", "CN"]));
    // Same state dir (as with the default one): refused before touching it.
    run_fails_keeping(
        &pair.receiver,
        &["--iface", &pair.receiver_if, "--block", "RU"],
        &first.state_dir,
        "is in use by another geoblock run",
    );
    // Another state dir, same interface: the attach is refused.
    run_fails(
        &pair.receiver,
        &geoblock::run_args(&pair, &["--block", "RU"]),
        &format!("interface {} already has an XDP program attached", pair.receiver_if),
        |_| {},
    );
    // The first daemon still enforces, counts and reports.
    assert!(pair.receiver_has_xdp());
    let [cn4, _] = sources::of("CN");
    let [ru4, _] = sources::of("RU");
    let receiver = Receiver::new(&pair);
    let sender = Sender::new(&pair);
    sender.send(cn4, 4);
    sender.send(ru4, 3);
    let got = receiver.collect(Duration::from_millis(500));
    assert_eq!((got.get(&cn4), got.get(&ru4)), (None, Some(&3)), "{got:?}");
    let stats = first.stats();
    assert_eq!((stats.country("CN").dropped_packets, stats.country("RU").passed_packets), (4, 3));
    geoblock::stop_and_detach(&pair, first);
}

/// Like [`run_fails`] on the state directory `dir` of a running daemon,
/// which must survive (with another control socket than the daemon's).
fn run_fails_keeping(ns: &Netns, args: &[&str], dir: &Path, expect: &str) {
    let socket = geoblock::control_socket(dir).with_extension("second");
    let out = geoblock::run_refused(ns, args, dir, &socket, |_| {});
    assert_one_error(&out, args, expect);
    for pin in ["COUNTRY_STATS", "TOTALS"] {
        assert!(dir.join(pin).exists(), "a failed run removed {}", dir.join(pin).display());
    }
}

#[test]
fn data_file_replaces_the_embedded_data() {
    // A one-line data set: the CN source's /24 is "DE", nothing else exists.
    let [cn4, cn6] = sources::of("CN");
    let [de4, _] = sources::of("DE");
    let dir = std::env::temp_dir().join(format!("geoblock-e2e-{}", netns::unique_tag()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("countries.csv");
    let IpAddr::V4(a) = cn4 else { unreachable!() };
    let [o0, o1, o2, _] = a.octets();
    std::fs::write(&csv, format!("{o0}.{o1}.{o2}.0,{o0}.{o1}.{o2}.255,DE\n")).unwrap();
    let data = csv.to_str().unwrap();
    let f = vec![
        flow("DE", cn4, Fate::Dropped),
        // Not in the file: no country, so it passes (counted as unknown).
        flow(UNKNOWN, cn6, Fate::Passed),
        flow(UNKNOWN, de4, Fate::Passed),
    ];
    scenario(&["--block", "DE,CN", "--data", data], &f);
    run_fails(
        &Pair::create().receiver,
        &["--iface", "lo", "--block", "CN", "--data", "/nonexistent/geoblock.csv"],
        "/nonexistent/geoblock.csv",
        |_| {},
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- error paths: one line `geoblock: ...`, exit non-zero, nothing attached.

/// Runs `geoblock run ARGS --state-dir <fresh>` in `ns` to its end and checks
/// it failed with exactly one `geoblock: ` line containing `expect`.
fn run_fails(ns: &Netns, args: &[&str], expect: &str, setup: impl FnOnce(&mut std::process::Command)) {
    let state_dir = geoblock::state_dir();
    let socket = geoblock::control_socket(&state_dir);
    let out = geoblock::run_refused(ns, args, &state_dir, &socket, setup);
    assert_one_error(&out, args, expect);
    assert!(!state_dir.exists(), "a failed run left {}", state_dir.display());
}

/// Exit status 1 and one `geoblock: ` line about `expect`, the last.
fn assert_one_error(out: &Output, args: &[&str], expect: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let run = args.join(" ");
    // Log lines (warnings) may precede it; the error is the last line, alone.
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("geoblock: ")).collect();
    assert_eq!(out.status.code(), Some(1), "geoblock run {run}: exit status {}:\n{stderr}", out.status);
    assert!(
        errors.len() == 1 && stderr.trim_end().lines().last() == Some(errors[0]),
        "geoblock run {run}: expected one final `geoblock: ...` line, got:\n{stderr}"
    );
    assert!(errors[0].contains(expect), "geoblock run {run}: expected an error about {expect:?}, got: {}", errors[0]);
}

fn assert_nothing_attached(pair: &Pair) {
    for (ns, dev) in [(&pair.receiver, "lo"), (&pair.receiver, pair.receiver_if.as_str())] {
        assert!(!netns::has_xdp(ns, dev), "XDP left on {dev} in {} after a failed run", ns.name());
    }
}

#[test]
fn unknown_country_code_is_refused() {
    let pair = Pair::create();
    run_fails(&pair.receiver, &["--iface", &pair.receiver_if, "--block", "CN,XX"], "unknown country code 'XX'", |_| {});
    run_fails(&pair.receiver, &["--iface", &pair.receiver_if, "--allow", "de,Q1"], "unknown country code 'Q1'", |_| {});
    assert_nothing_attached(&pair);
}

#[test]
fn exceptions_and_management_networks_with_host_bits_are_refused_not_widened() {
    let pair = Pair::create();
    let host_bits = "'10.1.0.7/16' has host bits set (the network is 10.1.0.0)";
    for flag in ["--except", "--management"] {
        let args = ["--iface", &pair.receiver_if, "--block", "CN", flag, "203.0.113.0/24,10.1.0.7/16"];
        run_fails(&pair.receiver, &args, host_bits, |_| {});
    }
    assert_nothing_attached(&pair);
    // The config file, as `config check` and `run --config` read it.
    let dir = std::env::temp_dir().join(format!("geoblock-e2e-{}", netns::unique_tag()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("geoblock.toml");
    std::fs::write(&config, "interfaces = [\"eth0\"]\n[policy]\nblock = [\"CN\"]\nexcept = [\"10.1.0.7/16\"]\n")
        .unwrap();
    let out = geoblock::run_to_end(None, &["config", "check", config.to_str().unwrap()], |_| {});
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim_end(), format!("geoblock: policy.except: {host_bits}"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unknown_interface_is_refused() {
    let pair = Pair::create();
    run_fails(&pair.receiver, &["--iface", "gb-nosuch0", "--block", "CN"], "unknown interface 'gb-nosuch0'", |_| {});
    // One good and one bad interface: nothing attached to the good one.
    run_fails(
        &pair.receiver,
        &["--iface", &pair.receiver_if, "--iface", "gb-nosuch0", "--block", "CN"],
        "unknown interface 'gb-nosuch0'",
        |_| {},
    );
    assert_nothing_attached(&pair);
}

#[test]
fn native_mode_without_driver_support_is_refused() {
    let pair = Pair::create();
    // The loopback of our own receiver namespace: no native XDP.
    run_fails(
        &pair.receiver,
        &["--iface", "lo", "--xdp-mode", "native", "--block", "CN"],
        "native XDP is not supported",
        |_| {},
    );
    // veth first (attaches), then lo (fails): the veth must be released too.
    run_fails(
        &pair.receiver,
        &["--iface", &pair.receiver_if, "--iface", "lo", "--xdp-mode", "native", "--block", "CN"],
        "native XDP is not supported",
        |_| {},
    );
    assert_nothing_attached(&pair);
}

#[test]
fn unprivileged_user_gets_the_permission_message() {
    let pair = Pair::create();
    run_fails(&pair.receiver, &["--iface", &pair.receiver_if, "--block", "CN"], "permission denied", |cmd| {
        use std::os::unix::process::CommandExt as _;
        // After the setns of Netns::command (which needs root): drop to
        // nobody, with no supplementary groups.
        // SAFETY: async-signal-safe syscalls only.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    assert_nothing_attached(&pair);
}

#[test]
fn stats_without_a_daemon_is_a_clear_error() {
    let dir = geoblock::state_dir();
    let out = geoblock::run_to_end(None, &["stats", "--json", "--state-dir", dir.to_str().unwrap()], |_| {});
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("geoblock: no geoblock state at"), "{stderr}");
}
