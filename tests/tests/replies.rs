//! Replies to the host's own connections pass (issue 14), end to end: the
//! real `geoblock run --allow US` on the receiver's veth end, whose own
//! processes talk to a host in CN on the sender's side (TCP, UDP, ping),
//! and frames crafted on the sender's end (unsolicited traffic, spoofed
//! replies, ICMP errors). What reached the receiver is read on a tap on its
//! veth end, which sees only what the XDP program passed; the counters must
//! match it exactly. Needs root; fails (never skips) without it.
//!
//! Build the binary first: `cargo build -p geoblock-user --bin geoblock`
//! (`cargo xtask test` does), or point GEOBLOCK_BIN at one.
//! GEOBLOCK_TEST_LOG=1 echoes the daemons' logs.

use std::{
    cell::RefCell,
    collections::BTreeMap,
    io::ErrorKind,
    net::{IpAddr, TcpListener, UdpSocket},
    time::{Duration, Instant},
};

use geoblock_common::{
    packet::{
        ICMPV6_PACKET_TOO_BIG, ICMPV6_TIME_EXCEEDED, ICMP_DEST_UNREACH, ICMP_TIME_EXCEEDED, IPPROTO_TCP, IPPROTO_UDP,
    },
    Counter, CountryCounters,
};
use geoblock_tests::{
    exchange::{receive_within, EchoServers, Pinger, TcpClient, UdpClient},
    frames::{self, icmp_echo, icmp_message, icmp_protocol, tcp_segment, udp_segment, TCP_ACK, TCP_SYN},
    geoblock::{self, pinned_flows, run_args, ConfigFile, Daemon},
    netns::{self, Pair},
    sources,
    traffic::{Sender, Tap},
};

/// The policy under which CN is dropped unless a reply rescues it.
const ALLOW_US: [&str; 2] = ["--allow", "US"];

/// How long the tap waits for stragglers.
const QUIET: Duration = Duration::from_millis(300);

/// A pair with a tap on the receiver's end and a sender of crafted frames.
/// The daemon is the caller's, declared after it so that it stops first.
struct Net {
    tap: Tap,
    sender: Sender,
    pair: Pair,
    /// Every frame the tap listed so far.
    seen: RefCell<Vec<Vec<u8>>>,
}

impl Net {
    /// The pair, with `hosts` (CN addresses) on the sender's side: `live`,
    /// as addresses of its namespace (with sockets, answering pings);
    /// otherwise only routed to through it (what goes there is lost).
    fn new(hosts: &[IpAddr], live: bool) -> Net {
        let pair = Pair::create();
        for &host in hosts {
            match live {
                true => pair.host_on_sender(host),
                false => pair.route_through_sender(host),
            }
        }
        Net { tap: Tap::new(&pair), sender: Sender::new(&pair), pair, seen: RefCell::default() }
    }

    fn start(&self, extra: &[&str]) -> Daemon {
        let policy = [&ALLOW_US[..], extra].concat();
        Daemon::start(&self.pair.receiver, &run_args(&self.pair, &policy))
    }

    /// The frames that reached the receiver since the last call.
    fn arrived(&self) -> Vec<Vec<u8>> {
        let frames = self.tap.frames(QUIET);
        self.seen.borrow_mut().extend(frames.iter().cloned());
        frames
    }

    /// Sends `frame` and says whether it reached the receiver.
    fn passes(&self, frame: &[u8]) -> bool {
        self.sender.send_frame(frame);
        self.arrived().iter().any(|f| f == frame)
    }

    /// The counters against everything the tap listed: the frames from
    /// `cn` (CN addresses) that reached the receiver all passed as replies,
    /// exactly (packets and bytes); `dropped` (frames sent from CN) are
    /// CN's drops, exactly; nothing passed as CN's own.
    fn check_accounting(&self, daemon: &Daemon, cn: &[IpAddr], dropped: &[Vec<u8>]) {
        self.arrived();
        let seen = self.seen.borrow();
        let from_cn = |f: &&Vec<u8>| frames::ip_summary(f).is_some_and(|(src, _)| cn.contains(&src));
        let replies = seen.iter().filter(from_cn).fold(Counter::default(), |c, f| c + counter(f));
        let leaked: Vec<&Vec<u8>> = dropped.iter().filter(|d| seen.contains(d)).collect();
        let drops = dropped.iter().fold(Counter::default(), |c, f| c + counter(f));
        let stats = daemon.stats();
        let want_cn =
            CountryCounters { dropped_packets: drops.packets, dropped_bytes: drops.bytes, ..Default::default() };
        let mut failures = vec![];
        if !leaked.is_empty() {
            failures.push(format!("{} frames that must be dropped reached the receiver: {leaked:02x?}", leaked.len()));
        }
        if stats.total("reply") != replies {
            failures.push(format!("totals.reply {:?}, the CN frames that arrived {replies:?}", stats.total("reply")));
        }
        if stats.country("CN") != want_cn {
            failures.push(format!("CN's counters {:?}, expected {want_cn:?}", stats.country("CN")));
        }
        if stats.total("dropped") != drops {
            failures.push(format!("totals.dropped {:?}, expected {drops:?}", stats.total("dropped")));
        }
        println!("replies {replies:?}, CN drops {drops:?}");
        assert!(
            failures.is_empty(),
            "{}\nstats: {}\nveth drops (tx, rx) sender {:?}, receiver {:?}\ndaemon log:\n{}",
            failures.join("\n"),
            stats.0,
            netns::link_drops(&self.pair.sender, &self.pair.sender_if),
            netns::link_drops(&self.pair.receiver, &self.pair.receiver_if),
            daemon.log()
        );
    }
}

/// One frame, as the counters count it.
fn counter(frame: &[u8]) -> Counter {
    Counter { packets: 1, bytes: frame.len() as u64 }
}

/// The IP protocol of each frame from `src` in `frames`, counted.
fn protocols_from(frames: &[Vec<u8>], src: IpAddr) -> BTreeMap<u8, usize> {
    let mut counts = BTreeMap::new();
    for (from, protocol) in frames.iter().filter_map(|f| frames::ip_summary(f)) {
        if from == src {
            *counts.entry(protocol).or_default() += 1;
        }
    }
    counts
}

// ---------------------------------------------------------------------------
// The host's own connections
// ---------------------------------------------------------------------------

/// The receiver's processes open a TCP connection, a UDP exchange and a
/// ping to a host in CN, IPv4 and IPv6: every reply arrives (the clients
/// would panic otherwise), and the counters hold each as a `reply`: the
/// tap's CN frames exactly, which are at least the 3 UDP echoes, the 3
/// echo replies, and the SYN-ACK, 3 echoes and FIN of the TCP connection.
#[test]
fn replies_to_the_receivers_own_tcp_udp_and_pings_pass_as_replies() {
    let cn = sources::of("CN");
    let net = Net::new(&cn, true);
    let daemon = net.start(&[]);
    let messages: [&[u8]; 3] = [b"one", b"two", b"three"];
    for host in cn {
        let servers = EchoServers::start(&net.pair, host);
        let mut tcp = TcpClient::connect(&net.pair.receiver, servers.tcp);
        messages.iter().for_each(|m| tcp.exchange(m));
        tcp.close();
        let udp = UdpClient::connect(&net.pair.receiver, servers.udp);
        messages.iter().for_each(|m| udp.exchange(m));
        let pinger = Pinger::new(&net.pair.receiver, host);
        (1..=3).for_each(|seq| pinger.ping(seq));
    }
    let arrived = net.arrived();
    for host in cn {
        let got = protocols_from(&arrived, host);
        let (tcp, udp, icmp) = (got.get(&IPPROTO_TCP), got.get(&IPPROTO_UDP), got.get(&icmp_protocol(host)));
        assert!(
            tcp >= Some(&5) && udp == Some(&3) && icmp == Some(&3) && got.len() == 3,
            "frames from {host} that reached the receiver, per IP protocol: {got:?}; expected TCP at least 5, \
             UDP 3, ICMP echo replies 3, nothing else"
        );
    }
    net.check_accounting(&daemon, &cn, &[]);
    geoblock::stop_and_detach(&net.pair, daemon);
}

/// With the receiver's TCP connection, UDP exchange and ping to the CN
/// host live, crafted frames from CN: those that answer them exactly pass
/// (a control: the frames are well made, and the receiver's sockets get
/// them); the same ports from another CN address the receiver never talked
/// to, another source port, another protocol, another echo identifier, and
/// a new SYN (to a listening port, or even the live connection's own
/// ports: a bare SYN is never a reply) are all dropped, counted as CN's.
#[test]
fn unsolicited_and_spoofed_cn_traffic_is_dropped() {
    let cn = sources::of("CN");
    let strangers = sources::after("CN", 2);
    let net = Net::new(&cn, true);
    let daemon = net.start(&[]);
    let mut dropped = vec![];
    for (host, stranger) in cn.into_iter().zip(strangers) {
        let servers = EchoServers::start(&net.pair, host);
        let mut tcp = TcpClient::connect(&net.pair.receiver, servers.tcp);
        tcp.exchange(b"flow");
        let udp = UdpClient::connect(&net.pair.receiver, servers.udp);
        udp.exchange(b"flow");
        let pinger = Pinger::new(&net.pair.receiver, host);
        pinger.ping(1);
        let id = pinger.id();
        let listener = net.pair.receiver.run(|| TcpListener::bind((net.pair.receiver_ip(host), 0))).unwrap();
        listener.set_nonblocking(true).unwrap();
        let (tcp_local, udp_local, listening) =
            (tcp.local().port(), udp.local().port(), listener.local_addr().unwrap().port());
        let (tcp_port, udp_port) = (servers.tcp.port(), servers.udp.port());

        let sender = &net.sender;
        let tcp_from = |src, ports, flags| {
            sender.ip_frame(src, IPPROTO_TCP, |dst| tcp_segment(src, dst, ports, flags, (1, 1), b""))
        };
        let udp_from = |src, (sport, dport), payload: &[u8]| {
            sender.ip_frame(src, IPPROTO_UDP, |dst| udp_segment(src, dst, sport, dport, payload))
        };
        let echo_reply_from =
            |src, id, seq| sender.ip_frame(src, icmp_protocol(src), |dst| icmp_echo(src, dst, true, id, seq, b"gb"));

        // Controls: exact answers to the live flows pass, and arrive.
        let controls = [
            ("UDP from the echo server's port", udp_from(host, (udp_port, udp_local), b"control")),
            ("a TCP ACK from the connection's peer", tcp_from(host, (tcp_port, tcp_local), TCP_ACK)),
            ("an echo reply with the ping's identifier", echo_reply_from(host, id, 77)),
        ];
        for (what, frame) in &controls {
            assert!(net.passes(frame), "{what} ({host}): a reply to the receiver's own flow was dropped");
        }
        assert_eq!(udp.receive().as_deref(), Some(&b"control"[..]), "the crafted UDP reply did not reach the socket");
        assert_eq!(pinger.receive(), Some(77), "the crafted echo reply did not reach the ping socket");

        let unsolicited = [
            ("a SYN to a listening port", tcp_from(host, (40000, listening), TCP_SYN)),
            ("a bare SYN on the live connection's own ports", tcp_from(host, (tcp_port, tcp_local), TCP_SYN)),
            ("UDP to the receiver's port from another source port", udp_from(host, (udp_port + 1, udp_local), b"x")),
            ("UDP on the TCP connection's ports", udp_from(host, (tcp_port, tcp_local), b"x")),
            ("an echo reply with another identifier", echo_reply_from(host, id.wrapping_add(1), 78)),
            ("UDP from a stranger, from the server's port", udp_from(stranger, (udp_port, udp_local), b"x")),
            ("a TCP ACK from a stranger", tcp_from(stranger, (tcp_port, tcp_local), TCP_ACK)),
            ("a TCP SYN-ACK from a stranger", tcp_from(stranger, (tcp_port, tcp_local), TCP_SYN | TCP_ACK)),
            ("an echo reply from a stranger", echo_reply_from(stranger, id, 79)),
        ];
        for (what, frame) in unsolicited {
            assert!(!net.passes(&frame), "{what} ({host} or {stranger}): reached the receiver, must be dropped");
            dropped.push(frame);
        }
        assert!(
            matches!(listener.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock),
            "the listener accepted a connection"
        );
        assert_eq!(receive_within(&udp.socket, QUIET), None, "the UDP socket got an unsolicited datagram");
        tcp.exchange(b"still up");
        tcp.close();
    }
    net.check_accounting(&daemon, &[&cn[..], &strangers[..]].concat(), &dropped);
    geoblock::stop_and_detach(&net.pair, daemon);
}

// ---------------------------------------------------------------------------
// ICMP errors
// ---------------------------------------------------------------------------

/// The MTU a router on the path reports.
const PATH_MTU: u16 = 1300;

/// The path MTU the receiver's kernel holds for `dst` (`mtu` in `ip route
/// get`), if it learnt one.
fn route_mtu(pair: &Pair, dst: IpAddr) -> Option<u32> {
    let out = pair.receiver.ip(&["route", "get", &dst.to_string()]);
    let mut words = out.split_whitespace();
    words.find(|w| *w == "mtu").map(|_| words.next().and_then(|m| m.parse().ok()).expect("ip route get: mtu N"))
}

/// A CN router on the path of the receiver's UDP and TCP flows to the CN
/// host reports "fragmentation needed" (IPv4) / "packet too big" (IPv6)
/// and "time exceeded", quoting the receiver's packets: those arrive (the
/// kernel learns the path MTU of the UDP flow from it, `ip route get`
/// shows it), counted as replies. The same errors quoting a flow that does
/// not exist (another port of the host, or another host), and a redirect
/// (not an error about a flow) quoting a live one, are dropped; the
/// kernel learns no MTU from the dropped one sent first.
#[test]
fn icmp_errors_about_the_receivers_flows_pass_others_are_dropped() {
    let cn = sources::of("CN");
    let routers = sources::after("CN", 1);
    let strangers = sources::after("CN", 2);
    let net = Net::new(&cn, true);
    let daemon = net.start(&[]);
    let mut dropped = vec![];
    for ((host, router), stranger) in cn.into_iter().zip(routers).zip(strangers) {
        let servers = EchoServers::start(&net.pair, host);
        let mut tcp = TcpClient::connect(&net.pair.receiver, servers.tcp);
        tcp.exchange(b"flow");
        let udp = UdpClient::connect(&net.pair.receiver, servers.udp);
        udp.exchange(b"flow");
        let me = net.pair.receiver_ip(host);
        let (udp_local, udp_port) = (udp.local().port(), servers.udp.port());
        // What the receiver sent, as the router quotes it.
        let quoted = |dst: IpAddr, protocol, l4: Vec<u8>| frames::ip_packet(me, dst, 0, protocol, &l4).1;
        let quoted_udp = |dst, dport| quoted(dst, IPPROTO_UDP, udp_segment(me, dst, udp_local, dport, b"flow"));
        let ports = (tcp.local().port(), servers.tcp.port());
        let quoted_tcp = quoted(host, IPPROTO_TCP, tcp_segment(me, host, ports, TCP_ACK, (1, 1), b"flow"));
        let error = |kind: (u8, u8), rest: [u8; 4], quoted: &[u8]| {
            net.sender.ip_frame(router, icmp_protocol(router), |dst| icmp_message(router, dst, kind, rest, quoted))
        };
        let [m0, m1] = PATH_MTU.to_be_bytes();
        let (too_big, time_exceeded, redirect, rest) = match host {
            IpAddr::V4(_) => ((ICMP_DEST_UNREACH, 4), (ICMP_TIME_EXCEEDED, 0), (5, 1), [0, 0, m0, m1]),
            IpAddr::V6(_) => ((ICMPV6_PACKET_TOO_BIG, 0), (ICMPV6_TIME_EXCEEDED, 0), (137, 0), [0, 0, m0, m1]),
        };
        let strays = [
            ("too big, about another port of the host", error(too_big, rest, &quoted_udp(host, udp_port + 1))),
            ("too big, about another host", error(too_big, rest, &quoted_udp(stranger, udp_port))),
            ("time exceeded, about another port", error(time_exceeded, [0; 4], &quoted_udp(host, udp_port + 1))),
            ("a redirect about the live UDP flow", error(redirect, [0; 4], &quoted_udp(host, udp_port))),
        ];
        for (what, frame) in strays {
            assert!(!net.passes(&frame), "{what} (from {router}): reached the receiver, must be dropped");
            dropped.push(frame);
        }
        assert_eq!(route_mtu(&net.pair, host), None, "the receiver learnt a path MTU to {host} from a dropped error");

        let about_flows = [
            ("too big, about the UDP flow", error(too_big, rest, &quoted_udp(host, udp_port))),
            ("too big, about the TCP connection", error(too_big, rest, &quoted_tcp)),
            ("time exceeded, about the UDP flow", error(time_exceeded, [0; 4], &quoted_udp(host, udp_port))),
        ];
        for (what, frame) in about_flows {
            assert!(net.passes(&frame), "{what} (from {router}): dropped, must reach the receiver");
        }
        assert_eq!(
            route_mtu(&net.pair, host),
            Some(PATH_MTU.into()),
            "the receiver did not learn the path MTU to {host} from the error about its UDP flow"
        );
        tcp.close();
    }
    net.check_accounting(&daemon, &[&cn[..], &routers[..]].concat(), &dropped);
    geoblock::stop_and_detach(&net.pair, daemon);
}

// ---------------------------------------------------------------------------
// The flow table: bound, expiry, restarts
// ---------------------------------------------------------------------------

/// The flows the daemon's table holds, as remote ports of `remote` (others
/// there make the count fail).
fn flow_ports(daemon: &Daemon, remote: IpAddr) -> Vec<u16> {
    let IpAddr::V4(v4) = remote else { panic!("IPv4 only") };
    let mapped = v4.to_ipv6_mapped().octets();
    let flows = pinned_flows(&daemon.state_dir);
    let strays: Vec<_> = flows.entries.iter().filter(|(k, _)| k.remote != mapped).collect();
    assert!(strays.is_empty(), "flows the test did not open: {strays:?}");
    let mut ports: Vec<u16> = flows.entries.iter().map(|(k, _)| k.remote_port).collect();
    ports.sort();
    ports
}

/// `--flows 64`: the receiver sends UDP to 5,000 ports of a CN host. After
/// every burst of 250 the table holds at most 64 flows (an LRU hash may
/// hold fewer: it frees entries in batches); the most recent flows are
/// among them, and their replies pass; a reply to the first flow, long
/// evicted, is dropped.
#[test]
fn the_flow_table_holds_at_most_its_size_and_keeps_the_latest_flows() {
    const SIZE: usize = 64;
    const RECENT: usize = 16;
    let [cn4, _] = sources::of("CN");
    let net = Net::new(&[cn4], false);
    let daemon = net.start(&["--flows", &SIZE.to_string()]);
    assert_eq!(pinned_flows(&daemon.state_dir).max_entries, SIZE as u32, "--flows {SIZE}: the table's size");
    let me = net.pair.receiver_ip(cn4);
    let socket = net.pair.receiver.run(|| UdpSocket::bind((me, 0))).unwrap();
    let local = socket.local_addr().unwrap().port();
    let ports: Vec<u16> = (20_000..25_000).collect();
    let mut held = vec![];
    for burst in ports.chunks(250) {
        for &port in burst {
            socket.send_to(b"flood", (cn4, port)).unwrap_or_else(|e| panic!("sending to {cn4}:{port}: {e}"));
        }
        held.push(flow_ports(&daemon, cn4).len());
    }
    let (min, max) = (held.iter().min().unwrap(), held.iter().max().unwrap());
    println!("flows held after each burst of 250: {min} to {max} (size {SIZE})");
    assert!(*max <= SIZE, "the table held {max} flows, more than its {SIZE}: {held:?}");
    let latest = flow_ports(&daemon, cn4);
    let recent = &ports[ports.len() - RECENT..];
    let missing: Vec<_> = recent.iter().filter(|p| !latest.contains(p)).collect();
    assert!(missing.is_empty(), "the {RECENT} latest flows are not all held: missing {missing:?}, held {latest:?}");

    let reply = |port: u16| {
        net.sender.ip_frame(cn4, IPPROTO_UDP, |dst| udp_segment(cn4, dst, port, local, &port.to_be_bytes()))
    };
    for &port in recent {
        let frame = reply(port);
        assert!(net.passes(&frame), "the reply from port {port}, a recent flow, was dropped");
        let got = receive_within(&socket, QUIET);
        assert_eq!(got, Some(port.to_be_bytes().to_vec()), "the reply from port {port} did not reach the socket");
    }
    let first = reply(ports[0]);
    assert!(!net.passes(&first), "the reply to the first, evicted, flow reached the receiver");
    net.check_accounting(&daemon, &[cn4], &[first]);
    geoblock::stop_and_detach(&net.pair, daemon);
}

/// `[flows] udp_timeout = "2s"`: after the receiver's datagram to a CN
/// host, a reply 1 s later passes, one 3.5 s later (no datagram sent
/// meanwhile) is dropped; a datagram sent again revives the flow. IPv4 and
/// IPv6 side by side. The margins (1 s either side) dwarf the kernel's
/// coarse clock (a tick).
#[test]
fn udp_flows_expire_after_their_timeout() {
    let cn = sources::of("CN");
    let net = Net::new(&cn, false);
    let config = ConfigFile::new("[flows]\nudp_timeout = \"2s\"\n");
    let daemon = net.start(&["--config", config.arg()]);
    let sockets: Vec<(IpAddr, UdpSocket)> = cn
        .iter()
        .map(|&host| (host, net.pair.receiver.run(|| UdpSocket::bind((net.pair.receiver_ip(host), 0))).unwrap()))
        .collect();
    const PORT: u16 = 7000;
    let send_all = || {
        for (host, socket) in &sockets {
            socket.send_to(b"hello", (*host, PORT)).unwrap();
        }
        Instant::now()
    };
    let reply = |host: IpAddr, socket: &UdpSocket, n: u8| {
        let local = socket.local_addr().unwrap().port();
        net.sender.ip_frame(host, IPPROTO_UDP, |dst| udp_segment(host, dst, PORT, local, &[n]))
    };
    let sent = send_all();
    let mut dropped = vec![];
    for (at, n, passes) in [(Duration::from_secs(1), 1, true), (Duration::from_millis(3500), 2, false)] {
        std::thread::sleep(at.saturating_sub(sent.elapsed()));
        for (host, socket) in &sockets {
            let frame = reply(*host, socket, n);
            let arrived = net.passes(&frame);
            let after = sent.elapsed();
            assert!(
                arrived == passes,
                "a reply from {host} {after:?} after the last datagram (timeout 2 s): arrived {arrived}"
            );
            match passes {
                true => assert_eq!(receive_within(socket, QUIET), Some(vec![n]), "the reply from {host} at {after:?}"),
                false => dropped.push(frame),
            }
        }
    }
    send_all();
    for (host, socket) in &sockets {
        let frame = reply(*host, socket, 3);
        assert!(net.passes(&frame), "a reply from {host} right after a new datagram (the flow revived) was dropped");
    }
    net.check_accounting(&daemon, &cn, &dropped);
    geoblock::stop_and_detach(&net.pair, daemon);
}

/// The one program tcx runs at egress on the receiver's end: (id, name).
fn only_egress_program(pair: &Pair) -> (u32, String) {
    let programs = pair.receiver_tcx_egress();
    assert_eq!(programs.len(), 1, "tcx programs at egress on {}: {programs:?}", pair.receiver_if);
    programs.into_iter().next().unwrap()
}

/// A daemon stopped (SIGTERM, enforcement left in place) and started again
/// on the same state directory: the receiver's TCP connection to the CN
/// host keeps getting its replies throughout (with no daemon, and after the
/// restart), the new daemon adopts the flow table (the same map, the
/// connection's flow still in it) and replaces the egress program on the
/// same tcx link (one program at egress, the new one), which records new
/// connections. `geoblock detach` then removes the egress link with the
/// rest: no tcx program at egress, no XDP, no pins.
#[test]
fn a_restarted_daemon_adopts_the_flows_and_detach_removes_the_egress_program() {
    let cn = sources::of("CN");
    let net = Net::new(&cn, true);
    let daemon = net.start(&[]);
    let egress_pin = daemon.state_dir.join(format!("egress-{}", net.pair.receiver_if));
    assert!(egress_pin.exists(), "no egress link pinned at {}", egress_pin.display());
    let first_program = only_egress_program(&net.pair);
    assert_eq!(first_program.1, "geoblock_egress", "the program at egress");
    let servers: Vec<EchoServers> = cn.iter().map(|&host| EchoServers::start(&net.pair, host)).collect();
    let mut connections: Vec<TcpClient> =
        servers.iter().map(|s| TcpClient::connect(&net.pair.receiver, s.tcp)).collect();
    connections.iter_mut().for_each(|c| c.exchange(b"before"));
    let before = pinned_flows(&daemon.state_dir);

    let state_dir = daemon.state_dir.clone();
    let status = daemon.stop();
    assert!(status.success(), "geoblock run exited with {status} on SIGTERM");
    connections.iter_mut().for_each(|c| c.exchange(b"no daemon"));

    let daemon = Daemon::start_in(&net.pair.receiver, &run_args(&net.pair, &ALLOW_US), state_dir);
    let after = pinned_flows(&daemon.state_dir);
    assert_eq!(after.id, before.id, "the restarted daemon made a new flow table: the flows recorded so far are lost");
    for connection in &connections {
        let local = connection.local().port();
        let flow = after.entries.iter().find(|(k, _)| k.local_port == local && k.protocol == IPPROTO_TCP);
        assert!(flow.is_some(), "the connection from port {local} is not in the adopted flow table: {after:?}");
    }
    let program = only_egress_program(&net.pair);
    assert!(
        program.1 == "geoblock_egress" && program.0 != first_program.0,
        "after the restart, the program at egress is {program:?}, expected the new daemon's (not {first_program:?})"
    );
    connections.iter_mut().for_each(|c| c.exchange(b"after"));
    // The new daemon's egress program records new connections.
    for s in &servers {
        let mut fresh = TcpClient::connect(&net.pair.receiver, s.tcp);
        fresh.exchange(b"new");
        fresh.close();
    }
    connections.into_iter().for_each(TcpClient::close);
    net.check_accounting(&daemon, &cn, &[]);

    let state_dir = daemon.state_dir.clone();
    let status = daemon.stop();
    assert!(status.success(), "geoblock run exited with {status} on SIGTERM");
    geoblock::detach_all(&net.pair, &state_dir);
    let left = net.pair.receiver_tcx_egress();
    assert!(left.is_empty(), "tcx programs left at egress after geoblock detach: {left:?}");
}

/// A UDP reply larger than the link's MTU (a DNS answer with EDNS0, say)
/// arrives in IP fragments, IPv4 and IPv6: the receiver's socket must get
/// the whole datagram. Only the first fragment carries the ports that name
/// the flow: the program drops the later ones (no ports, no flow), so the
/// datagram never reassembles. Left for the design to settle (track the
/// fragment id of a first fragment that passed as a reply?).
#[test]
#[ignore = "known gap: later fragments of a reply carry no ports and are dropped"]
fn a_fragmented_udp_reply_arrives_whole() {
    let cn = sources::of("CN");
    let net = Net::new(&cn, true);
    let daemon = net.start(&[]);
    for host in cn {
        let servers = EchoServers::start(&net.pair, host);
        let udp = UdpClient::connect(&net.pair.receiver, servers.udp);
        udp.exchange(&[7; 3000]);
    }
    net.check_accounting(&daemon, &cn, &[]);
    geoblock::stop_and_detach(&net.pair, daemon);
}
