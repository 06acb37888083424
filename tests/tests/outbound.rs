//! Outbound rules end to end: the real `geoblock run` on the receiver's
//! veth end, with `[[rule]] direction = "outbound"` tables, and peers in CN
//! and DE on the sender's side. Local senders in the daemon's cgroup (one
//! of the test's own) are refused at the call (EPERM, at once); a
//! connection opened before the rule has its later packets dropped by the
//! egress program. What reached the peers is read on a tap on the sender's
//! veth end; the counters must match. Needs root; fails (never skips)
//! without it.
//!
//! Build the binary first: `cargo build -p geoblock-user --bin geoblock`
//! (`cargo xtask test` does), or point GEOBLOCK_BIN at one.
//! GEOBLOCK_TEST_LOG=1 echoes the daemons' logs.

use std::{
    io::Write as _,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use geoblock_common::CountryCounters;
use geoblock_tests::{
    cgroup::{Call, Cgroup},
    exchange::{EchoServers, TcpClient},
    frames,
    geoblock::{self, run_args, ConfigFile, Daemon},
    netns::Pair,
    sources,
    traffic::Tap,
};

/// An outbound rule refusing CN.
const DENY_CN: &str = "[[rule]]\nname = \"out\"\ndirection = \"outbound\"\nblock = [\"CN\"]\n";
/// An outbound rule allowing the EU only.
const EU_ONLY: &str = "[[rule]]\nname = \"eu\"\ndirection = \"outbound\"\nallow = [\"AT\", \"BE\", \"BG\", \"CY\", \
                       \"CZ\", \"DE\", \"DK\", \"EE\", \"ES\", \"FI\", \"FR\", \"GR\", \"HR\", \"HU\", \"IE\", \"IT\", \
                       \"LT\", \"LU\", \"LV\", \"MT\", \"NL\", \"PL\", \"PT\", \"RO\", \"SE\", \"SI\", \"SK\"]\n";
/// An inbound rule that no test traffic meets: a policy without outbound rules.
const INBOUND_ONLY: &str = "[[rule]]\nname = \"in\"\nblock = [\"KP\"]\n";

/// How long the peer's tap waits for stragglers.
const QUIET: Duration = Duration::from_millis(300);
/// The daemon checks its links every second; this bound is for a loaded machine.
const REPAIRED: Duration = Duration::from_secs(10);
/// A refusal is immediate; this bound only keeps a loaded machine from failing.
const AT_ONCE: Duration = Duration::from_millis(500);

/// The pair with `hosts` on the sender's side (live addresses with
/// sockets), and a tap on the sender's veth end: what reached the peers.
struct Net {
    peer: Tap,
    pair: Pair,
}

impl Net {
    fn new(hosts: &[IpAddr]) -> Net {
        let pair = Pair::create();
        for &host in hosts {
            pair.host_on_sender(host);
        }
        Net { peer: Tap::on(&pair.sender, &pair.sender_if), pair }
    }

    fn start(&self, config: &ConfigFile) -> Daemon {
        Daemon::start(&self.pair.receiver, &run_args(&self.pair, &["--config", config.arg()]))
    }

    /// How many frames to one of `hosts` reached the peer since the last call.
    fn reached(&self, hosts: &[IpAddr]) -> usize {
        let to = |f: &Vec<u8>| frames::ip_destination(f).is_some_and(|dst| hosts.contains(&dst));
        self.peer.frames(QUIET).iter().filter(|f| to(f)).count()
    }
}

/// The daemon's cgroup, where the test's callers go.
fn cgroup(daemon: &Daemon) -> &Cgroup {
    daemon.cgroup.as_ref().expect("the harness gives every daemon a cgroup of the test's own")
}

/// A connect or send, from the daemon's cgroup in the receiver's namespace,
/// to `to` from a socket of `family`, must fail with EPERM at once.
fn assert_refused(net: &Net, daemon: &Daemon, call: Call, family: i32, to: SocketAddr) {
    refused_in(net, cgroup(daemon), (call, family, to), &daemon.log());
}

/// [`assert_refused`] from `cgroup`; `log` tells what happened.
fn refused_in(net: &Net, cgroup: &Cgroup, (call, family, to): (Call, i32, SocketAddr), log: &str) {
    let (errno, took) = cgroup.call(&net.pair.receiver, call, family, to);
    assert!(
        errno == libc::EPERM && took < AT_ONCE,
        "{call:?} to {to} (family {family}): errno {errno} after {took:?}, expected EPERM at once\n{log}"
    );
}

/// Drops only: `packets` of 0 bytes, the socket hooks' refusals.
fn refusals(packets: u64) -> CountryCounters {
    CountryCounters { dropped_packets: packets, ..CountryCounters::default() }
}

/// TCP connects and unconnected UDP sends to CN from the daemon's cgroup
/// are refused with EPERM at once, IPv4, IPv6 and IPv4 mapped into an IPv6
/// socket; nothing reaches the peer; each refusal counts once, as an
/// outbound drop of 0 bytes of CN and of the rule, nothing inbound.
#[test]
fn local_connects_and_sends_to_a_blocked_country_fail_at_once() {
    let cn = sources::of("CN");
    let net = Net::new(&cn);
    let config = ConfigFile::new(DENY_CN);
    let daemon = net.start(&config);
    let servers: Vec<EchoServers> = cn.iter().map(|&host| EchoServers::start(&net.pair, host)).collect();
    let mut calls = 0;
    for (host, servers) in cn.iter().zip(&servers) {
        let family = if host.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
        assert_refused(&net, &daemon, Call::TcpConnect, family, servers.tcp);
        assert_refused(&net, &daemon, Call::UdpSendTo, family, servers.udp);
        calls += 2;
        if host.is_ipv4() {
            // An IPv6 socket reaching the IPv4 address: judged as IPv4.
            assert_refused(&net, &daemon, Call::TcpConnect, libc::AF_INET6, servers.tcp);
            assert_refused(&net, &daemon, Call::UdpSendTo, libc::AF_INET6, servers.udp);
            calls += 2;
        }
    }
    assert_eq!(net.reached(&cn), 0, "frames to CN reached the peer");
    let stats = daemon.stats();
    assert_eq!(stats.outbound().country("CN"), refusals(calls), "outbound CN: {}", stats.0);
    // The rule judges every packet going out: the link's own chatter
    // (neighbour discovery, MLD), which no country claims, passes under it.
    let judged = refusals(calls) + stats.outbound().unknown();
    assert_eq!(stats.outbound().rule("out"), judged, "the rule's counters: {}", stats.0);
    assert_eq!(stats.country("CN"), CountryCounters::default(), "nothing inbound from CN: {}", stats.0);
    geoblock::stop_and_detach(&net.pair, daemon);
}

/// With an EU-only outbound allow-list, the daemon's cgroup connects to DE
/// and sends to it; to CN it is refused, and nothing reaches CN.
#[test]
fn an_eu_only_outbound_allow_list_lets_the_eu_through_and_refuses_cn() {
    let (de, cn) = (sources::of("DE"), sources::of("CN"));
    let net = Net::new(&[&de[..], &cn[..]].concat());
    let config = ConfigFile::new(EU_ONLY);
    let daemon = net.start(&config);
    for (de, cn) in de.into_iter().zip(cn) {
        let family = if de.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
        let (to_de, to_cn) = (EchoServers::start(&net.pair, de), EchoServers::start(&net.pair, cn));
        for (call, to) in [(Call::TcpConnect, to_de.tcp), (Call::UdpSendTo, to_de.udp)] {
            let (errno, took) = cgroup(&daemon).call(&net.pair.receiver, call, family, to);
            assert_eq!(errno, 0, "{call:?} to DE {to} failed after {took:?}\n{}", daemon.log());
        }
        assert!(net.reached(&[de]) >= 2, "the connect and the datagram to DE {de} did not reach it");
        assert_refused(&net, &daemon, Call::TcpConnect, family, to_cn.tcp);
        assert_refused(&net, &daemon, Call::UdpSendTo, family, to_cn.udp);
        assert_eq!(net.reached(&[cn]), 0, "frames to CN {cn} reached the peer");
    }
    let stats = daemon.stats();
    assert_eq!(stats.outbound().country("CN"), refusals(4), "outbound CN: {}", stats.0);
    assert_eq!(stats.outbound().country("DE").dropped_packets, 0, "outbound DE: {}", stats.0);
    assert!(stats.outbound().country("DE").passed_packets >= 4, "DE's packets pass the egress: {}", stats.0);
    geoblock::stop_and_detach(&net.pair, daemon);
}

/// A TCP connection to CN opened before the outbound rule: once a reload
/// brings the rule, its later packets are dropped by the egress program
/// (the socket hooks judge only new calls): the peer receives nothing
/// more, and every drop counts as CN's outbound drop, of the rule, on the
/// receiver's interface, with its bytes.
#[test]
fn a_connection_opened_before_the_rule_is_cut_on_egress() {
    let cn = sources::of("CN");
    let net = Net::new(&cn);
    let config = ConfigFile::new(INBOUND_ONLY);
    let daemon = net.start(&config);
    let mut clients = vec![];
    for &host in &cn {
        let servers = EchoServers::start(&net.pair, host);
        let mut tcp = TcpClient::connect(&net.pair.receiver, servers.tcp);
        tcp.exchange(b"before the rule");
        clients.push((tcp, servers));
    }
    assert!(net.reached(&cn) > 0, "a control: the connections reached CN before the rule");
    std::fs::write(&config.path, DENY_CN).unwrap();
    let out = daemon.control(&["reload"]);
    assert!(out.status.success(), "reload: {}", String::from_utf8_lossy(&out.stderr));
    for (tcp, _) in &mut clients {
        tcp.stream.write_all(b"after the rule").expect("queueing data on the connection");
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(net.reached(&cn), 0, "frames to CN reached the peer after the rule");
    let stats = daemon.stats();
    let (outbound, iface) = (stats.outbound(), net.pair.receiver_if.as_str());
    let dropped = outbound.country("CN");
    assert!(dropped.dropped_packets >= 2 && dropped.dropped_bytes > 0, "outbound CN: {}", stats.0);
    // The rule judges every packet going out: the link's own chatter
    // (neighbour discovery, MLD) too, which no country claims.
    let judged = dropped + outbound.unknown();
    assert_eq!(outbound.rule("out"), judged, "the rule counts what CN's and no country's counters count: {}", stats.0);
    assert_eq!(outbound.total("dropped").packets, dropped.dropped_packets, "only CN's drops: {}", stats.0);
    let on_iface = &outbound.0["interfaces"][iface]["countries"]["CN"]["dropped_packets"];
    assert_eq!(on_iface.as_u64(), Some(dropped.dropped_packets), "counted on {iface}: {}", stats.0);
    assert_eq!(stats.country("CN").dropped_packets, 0, "nothing inbound dropped: {}", stats.0);
    drop(clients);
    geoblock::stop_and_detach(&net.pair, daemon);
}

/// The socket hooks' links outlive the daemon (its pins keep them): with no
/// daemon running, connects to CN are still refused; the next daemon adopts
/// them; a link pin removed (which detaches that hook) is found within the
/// daemon's tick and attached again.
#[test]
fn hook_links_outlive_the_daemon_are_adopted_and_repaired() {
    let cn = sources::of("CN");
    let net = Net::new(&cn);
    let cgroup = Cgroup::new();
    let config = ConfigFile::new(DENY_CN);
    let args = run_args(&net.pair, &["--config", config.arg(), "--cgroup", cgroup.arg()]);
    let to_cn = (Call::TcpConnect, libc::AF_INET, SocketAddr::new(cn[0], 9));
    let daemon = Daemon::start(&net.pair.receiver, &args);
    refused_in(&net, &cgroup, to_cn, &daemon.log());
    let state = daemon.state_dir.clone();
    daemon.stop();
    refused_in(&net, &cgroup, to_cn, "(no daemon running: the pinned links refuse)");
    let daemon = Daemon::start_in(&net.pair.receiver, &args, state.clone());
    refused_in(&net, &cgroup, to_cn, &daemon.log());
    std::fs::remove_file(state.join("cgroup-connect4")).expect("removing the connect4 link pin");
    daemon.wait_line("cgroup-connect4: enforcement tampered with: link pin removed; re-attached", REPAIRED);
    refused_in(&net, &cgroup, to_cn, &daemon.log());
    assert_eq!(net.reached(&cn), 0, "frames to CN reached the peer");
    geoblock::stop_and_detach(&net.pair, daemon);
    let (errno, _) = cgroup.call(&net.pair.receiver, Call::UdpSendTo, libc::AF_INET, SocketAddr::new(cn[0], 9));
    assert_eq!(errno, 0, "detached: the hooks refuse nothing");
}

/// Loopback destinations never leave the host and are never judged: under
/// an outbound rule that blocks every address without a country, connects
/// to 127.0.0.1, ::1 and ::ffff:127.0.0.1 reach their listeners, while one
/// to an address without a country beyond the link is refused.
#[test]
fn loopback_destinations_are_never_judged() {
    let net = Net::new(&[]);
    let unknown: IpAddr = "10.9.9.9".parse().unwrap();
    net.pair.route_through_sender(unknown);
    let config = ConfigFile::new(&format!("{DENY_CN}block_unknown = true\n"));
    // The machine's own resolvers may have no country either, which the
    // lock-out guard rightly refuses to block: forced, since the daemon
    // runs in the test's namespace, whose traffic only reaches the peer.
    let daemon = Daemon::start(&net.pair.receiver, &run_args(&net.pair, &["--config", config.arg(), "--force"]));
    let listen = |addr: &str| net.pair.receiver.run(|| std::net::TcpListener::bind(addr)).expect("a loopback listener");
    let (v4, v6) = (listen("127.0.0.1:0"), listen("[::1]:0"));
    let (v4, v6) = (v4.local_addr().unwrap(), v6.local_addr().unwrap());
    for (family, to) in [(libc::AF_INET, v4), (libc::AF_INET6, v6), (libc::AF_INET6, v4)] {
        let (errno, took) = cgroup(&daemon).call(&net.pair.receiver, Call::TcpConnect, family, to);
        assert_eq!(errno, 0, "connect to {to} (family {family}) failed after {took:?}\n{}", daemon.log());
    }
    assert_refused(&net, &daemon, Call::TcpConnect, libc::AF_INET, SocketAddr::new(unknown, 9));
    let stats = daemon.stats();
    assert_eq!(stats.outbound().unknown(), refusals(1), "only the refusal counts: {}", stats.0);
    geoblock::stop_and_detach(&net.pair, daemon);
}
