//! Rejecting: what a rejected packet draws.
//!
//! - through BPF_PROG_TEST_RUN, the answer frames byte for byte (TCP
//!   resets, ICMP and ICMPv6 errors), built here independently with the
//!   test crate's own RFC 1071 checksums; the packets that must draw
//!   nothing; the token bucket;
//! - end to end, with the real daemon between namespaces: a refused TCP
//!   connect, a UDP socket told by ICMP, tagged and untagged, both
//!   families; a spoofed SYN flood answered no faster than the rate.
//!
//! Needs root.

use std::{
    io::ErrorKind,
    net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    time::{Duration, Instant},
};

use aya::programs::{TestRun as _, TestRunOptions};
use geoblock::{
    data::table::Table,
    errno,
    kernel::{counters::Rejects, Geoblock},
    policy::{Mode, Policy, Rule, RuleAction, DEFAULT_RULE},
};
use geoblock_common::{
    country_id,
    packet::{
        ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ICMPV6_DEST_UNREACH, ICMP_DEST_UNREACH, IPPROTO_DSTOPTS, IPPROTO_HOPOPTS,
        IPPROTO_TCP, IPPROTO_UDP, IPV4_CHECKSUM, IPV4_FRAG_OFF, IPV4_HLEN, IPV6_HLEN,
    },
    Backend, CountryId,
};
use geoblock_tests::{
    frames::{
        self, checksum, ethernet, ext, fragment, icmp_echo, icmp_message, icmp_protocol, ip_packet, ipv6_extended,
        l3_offset, tcp_reset, tcp_segment, udp_segment, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN,
    },
    geoblock::{stop_and_detach, Daemon},
    netns::{self, Pair},
    sources,
    traffic::{Sender, Tap},
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
const ONE_TAG: &[(u16, u16)] = &[(ETH_P_8021Q, 100)];
const TWO_TAGS: &[(u16, u16)] = &[(ETH_P_8021AD, 100), (ETH_P_8021Q, 200)];
const TAGS: [&[(u16, u16)]; 3] = [&[], ONE_TAG, TWO_TAGS];

// ---------------------------------------------------------------------------
// BPF_PROG_TEST_RUN
// ---------------------------------------------------------------------------

fn cc(code: &[u8; 2]) -> CountryId {
    country_id(*code).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// CN: 1/8 and 2001:db8::/32; rejected, and so is every address without a
/// country (to reach the answers' own checks with unanswerable sources).
fn load(monitor: bool) -> Geoblock {
    let table = Table {
        v4: vec![("1.0.0.0/8".parse().unwrap(), cc(b"CN"))],
        v6: vec![("2001:db8::/32".parse().unwrap(), cc(b"CN"))],
    };
    let rule = Rule {
        action: RuleAction::Reject,
        block_unknown: true,
        monitor,
        ..Rule::new(DEFAULT_RULE, Mode::Deny, [cc(b"CN")].into())
    };
    let mut g = Geoblock::load(Backend::Trie).unwrap_or_else(|e| panic!("loading the XDP program (need root): {e}"));
    g.load_table(&table).expect("filling the tries");
    g.apply_policy(&Policy::from(rule)).expect("writing the policy");
    g.set_reject_rate(1000).expect("the reject rate");
    g
}

/// One BPF_PROG_TEST_RUN: the action and the frame as the program left it.
fn run(g: &mut Geoblock, frame: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; 4096];
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(frame);
    opts.data_out = Some(&mut out);
    let result = g
        .program()
        .expect("the program")
        .test_run(opts)
        .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN of {} bytes failed: {e} ({:?})", frame.len(), errno(&e)));
    out.truncate(result.data_size_out as usize);
    (result.return_value, out)
}

/// A client's packet to the server: its frame, and what the answer is built from.
struct Sent {
    src: IpAddr,
    dst: IpAddr,
    vlans: &'static [(u16, u16)],
    frame: Vec<u8>,
}

impl Sent {
    fn new(
        src: &str,
        dst: &str,
        vlans: &'static [(u16, u16)],
        l3: impl FnOnce(IpAddr, IpAddr) -> (u16, Vec<u8>),
    ) -> Sent {
        let (src, dst) = (ip(src), ip(dst));
        let (proto, packet) = l3(src, dst);
        Sent { src, dst, vlans, frame: ethernet(SERVER_MAC, CLIENT_MAC, vlans, proto, &packet) }
    }

    fn tcp(src: &str, dst: &str, vlans: &'static [(u16, u16)], flags: u8, seq_ack: (u32, u32), data: &[u8]) -> Sent {
        Sent::new(src, dst, vlans, |s, d| {
            ip_packet(s, d, 0, IPPROTO_TCP, &tcp_segment(s, d, (40000, 443), flags, seq_ack, data))
        })
    }

    fn udp(src: &str, dst: &str, vlans: &'static [(u16, u16)], data: &[u8]) -> Sent {
        Sent::new(src, dst, vlans, |s, d| ip_packet(s, d, 0, IPPROTO_UDP, &udp_segment(s, d, 40000, 53, data)))
    }

    /// The answer: `l3` from the server back to the client, in a frame
    /// with the same tags.
    fn answer(&self, protocol: u8, l4: &[u8]) -> Vec<u8> {
        let (proto, packet) = ip_packet(self.dst, self.src, 0, protocol, l4);
        ethernet(CLIENT_MAC, SERVER_MAC, self.vlans, proto, &packet)
    }

    /// The reset RFC 9293 §3.10.7.1 asks for.
    fn reset(&self, flags: u8, seq_ack: (u32, u32)) -> Vec<u8> {
        self.answer(IPPROTO_TCP, &tcp_reset(self.dst, self.src, (443, 40000), flags, seq_ack))
    }

    /// The ICMP error quoting the packet (`ip_len` bytes of it from its IP
    /// header, Ethernet padding excluded), cut to 576 or 1280 bytes.
    fn unreachable(&self, ip_len: usize) -> Vec<u8> {
        let l3 = l3_offset(self.vlans.len());
        let (kind, max) = match self.src {
            IpAddr::V4(_) => ((ICMP_DEST_UNREACH, 13), 576 - IPV4_HLEN - 8),
            IpAddr::V6(_) => ((ICMPV6_DEST_UNREACH, 1), 1280 - IPV6_HLEN - 8),
        };
        let quote = &self.frame[l3..l3 + ip_len.min(max)];
        self.answer(icmp_protocol(self.src), &icmp_message(self.dst, self.src, kind, [0; 4], quote))
    }

    /// The IP packet's length as its header says (the frame may pad it).
    fn ip_len(&self) -> usize {
        self.frame.len() - l3_offset(self.vlans.len())
    }
}

/// Sets the IPv4 flags and fragment offset field, and the header checksum again.
fn ipv4_fragment(mut sent: Sent, field: u16) -> Sent {
    let l3 = l3_offset(sent.vlans.len());
    sent.frame[l3 + IPV4_FRAG_OFF..l3 + IPV4_FRAG_OFF + 2].copy_from_slice(&field.to_be_bytes());
    sent.frame[l3 + IPV4_CHECKSUM..l3 + IPV4_CHECKSUM + 2].fill(0);
    let sum = checksum(&sent.frame[l3..l3 + IPV4_HLEN], 0);
    sent.frame[l3 + IPV4_CHECKSUM..l3 + IPV4_CHECKSUM + 2].copy_from_slice(&sum.to_be_bytes());
    sent
}

fn hex(frame: &[u8]) -> String {
    frame
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .chunks(16)
        .map(|l| l.join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_answer(g: &mut Geoblock, what: &str, sent: &Sent, want: &[u8]) {
    let (action, got) = run(g, &sent.frame);
    assert_eq!(action, XDP_TX, "{what}: answered");
    assert!(got == want, "{what}: the answer differs\ngot:\n{}\nwant:\n{}", hex(&got), hex(want));
}

#[test]
fn tcp_segments_draw_resets_with_the_sequence_numbers_rfc_9293_asks_for() {
    let mut g = load(false);
    let mut answered = 0;
    for vlans in TAGS {
        let tags = vlans.len();
        // A SYN: no ACK, so seq 0 and ack = SEG.SEQ + SEG.LEN, SYN counting one.
        let syn = Sent::tcp("1.1.1.1", "192.0.2.2", vlans, TCP_SYN, (1000, 0), b"");
        assert_answer(&mut g, &format!("IPv4 SYN, {tags} tags"), &syn, &syn.reset(TCP_RST | TCP_ACK, (0, 1001)));
        // A SYN with data (TCP Fast Open): its bytes count too.
        let syn = Sent::tcp("2001:db8::1", "2001:db9::2", vlans, TCP_SYN, (u32::MAX - 1, 0), b"hello");
        let want = syn.reset(TCP_RST | TCP_ACK, (0, 4));
        assert_answer(&mut g, &format!("IPv6 SYN with data, {tags} tags"), &syn, &want);
        // An ACK: the reset takes its sequence number from SEG.ACK.
        let ack = Sent::tcp("1.2.3.4", "192.0.2.2", vlans, TCP_ACK, (5000, 7777), b"0123456789");
        assert_answer(&mut g, &format!("IPv4 ACK, {tags} tags"), &ack, &ack.reset(TCP_RST, (7777, 0)));
        let ack = Sent::tcp("2001:db8::7", "2001:db9::2", vlans, TCP_ACK | TCP_FIN, (1, 99), b"x");
        assert_answer(&mut g, &format!("IPv6 FIN+ACK, {tags} tags"), &ack, &ack.reset(TCP_RST, (99, 0)));
        // A FIN without ACK, with data: data and FIN count.
        let fin = Sent::tcp("1.9.9.9", "192.0.2.2", vlans, TCP_FIN, (100, 0), b"abcde");
        assert_answer(&mut g, &format!("IPv4 FIN, {tags} tags"), &fin, &fin.reset(TCP_RST | TCP_ACK, (0, 106)));
        answered += 5;
    }
    // IPv4 options and IPv6 extension headers are not part of the answer.
    let with_options = Sent::new("1.1.1.1", "192.0.2.2", ONE_TAG, |s, d| {
        ip_packet(s, d, 12, IPPROTO_TCP, &tcp_segment(s, d, (40000, 443), TCP_SYN, (7, 0), b"abc"))
    });
    assert_answer(&mut g, "IPv4 with options", &with_options, &with_options.reset(TCP_RST | TCP_ACK, (0, 11)));
    let extended = Sent::new("2001:db8::1", "2001:db9::2", TWO_TAGS, |s, d| {
        let seg = tcp_segment(s, d, (40000, 443), TCP_SYN, (7, 0), b"abc");
        (
            geoblock_common::packet::ETH_P_IPV6,
            ipv6_extended(s, d, &[ext(IPPROTO_HOPOPTS), ext(IPPROTO_DSTOPTS)], IPPROTO_TCP, &seg),
        )
    });
    assert_answer(&mut g, "IPv6 with extension headers", &extended, &extended.reset(TCP_RST | TCP_ACK, (0, 11)));
    answered += 2;
    let stats = g.stats().unwrap();
    assert_eq!(stats.rejects, Rejects { sent: answered, suppressed: 0 });
    assert_eq!(stats.inbound.all.countries["CN"].dropped_packets, answered, "rejected packets count as dropped");
}

#[test]
fn other_packets_draw_icmp_errors_quoting_them() {
    let mut g = load(false);
    let mut answered = 0;
    for vlans in TAGS {
        let tags = vlans.len();
        // Quotes of every length modulo 4, the checksum's odd tails.
        for len in [5, 6, 7, 8] {
            let udp = Sent::udp("1.1.1.1", "192.0.2.2", vlans, &vec![0xab; len]);
            assert_answer(&mut g, &format!("IPv4 UDP of {len}, {tags} tags"), &udp, &udp.unreachable(udp.ip_len()));
            let udp = Sent::udp("2001:db8::1", "2001:db9::2", vlans, &vec![0xcd; len]);
            assert_answer(&mut g, &format!("IPv6 UDP of {len}, {tags} tags"), &udp, &udp.unreachable(udp.ip_len()));
        }
        // Long packets: the quote is cut where the error reaches 576 (1280) bytes.
        let long = Sent::udp("1.1.1.1", "192.0.2.2", vlans, &(0..1400).map(|i| i as u8).collect::<Vec<_>>());
        assert_answer(&mut g, &format!("long IPv4, {tags} tags"), &long, &long.unreachable(long.ip_len()));
        let long =
            Sent::udp("2001:db8::1", "2001:db9::2", vlans, &(0..1400).map(|i| (i * 7) as u8).collect::<Vec<_>>());
        assert_answer(&mut g, &format!("long IPv6, {tags} tags"), &long, &long.unreachable(long.ip_len()));
        // Echo requests.
        for (src, dst) in [("1.1.1.1", "192.0.2.2"), ("2001:db8::1", "2001:db9::2")] {
            let echo = Sent::new(src, dst, vlans, |s, d| {
                ip_packet(s, d, 0, icmp_protocol(s), &icmp_echo(s, d, false, 7, 1, b"ping"))
            });
            assert_answer(
                &mut g,
                &format!("echo request from {src}, {tags} tags"),
                &echo,
                &echo.unreachable(echo.ip_len()),
            );
        }
        answered += 12;
    }
    // Ethernet padding is not quoted: the IP header says where the packet ends.
    let mut padded = Sent::udp("1.1.1.1", "192.0.2.2", &[], b"");
    let ip_len = padded.ip_len();
    padded.frame.resize(60, 0);
    assert_answer(&mut g, "padded IPv4", &padded, &padded.unreachable(ip_len));
    // Options, extension headers, another protocol, a first fragment.
    let options = Sent::new("1.1.1.1", "192.0.2.2", ONE_TAG, |s, d| {
        ip_packet(s, d, 8, IPPROTO_UDP, &udp_segment(s, d, 40000, 53, b"query"))
    });
    assert_answer(&mut g, "IPv4 options", &options, &options.unreachable(options.ip_len()));
    let extended = Sent::new("2001:db8::1", "2001:db9::2", ONE_TAG, |s, d| {
        let udp = udp_segment(s, d, 40000, 53, b"query");
        (geoblock_common::packet::ETH_P_IPV6, ipv6_extended(s, d, &[ext(IPPROTO_DSTOPTS)], IPPROTO_UDP, &udp))
    });
    assert_answer(&mut g, "IPv6 extension headers", &extended, &extended.unreachable(extended.ip_len()));
    let gre = Sent::new("1.1.1.1", "192.0.2.2", &[], |s, d| ip_packet(s, d, 0, 47, &[0; 24]));
    assert_answer(&mut g, "GRE", &gre, &gre.unreachable(gre.ip_len()));
    let first = ipv4_fragment(Sent::tcp("1.1.1.1", "192.0.2.2", &[], TCP_SYN, (1, 0), &[1; 64]), 0x2000);
    assert_answer(&mut g, "first fragment of a TCP segment", &first, &first.unreachable(first.ip_len()));
    answered += 5;
    let stats = g.stats().unwrap();
    assert_eq!(stats.rejects, Rejects { sent: answered, suppressed: 0 });
}

#[test]
fn replies_errors_group_traffic_and_later_fragments_draw_nothing() {
    let mut g = load(false);
    let v4 = ("1.1.1.1", "192.0.2.2");
    let v6 = ("2001:db8::1", "2001:db9::2");
    let icmp_error = |(src, dst): (&str, &str), kind: (u8, u8)| {
        Sent::new(src, dst, &[], move |s, d| {
            let quoted = ip_packet(d, s, 0, IPPROTO_UDP, &udp_segment(d, s, 53, 40000, b"x")).1;
            ip_packet(s, d, 0, icmp_protocol(s), &icmp_message(s, d, kind, [0; 4], &quoted))
        })
    };
    let echo_reply = |(src, dst): (&str, &str)| {
        Sent::new(src, dst, &[], |s, d| ip_packet(s, d, 0, icmp_protocol(s), &icmp_echo(s, d, true, 1, 1, b"pong")))
    };
    let mut to_group_mac = Sent::udp(v4.0, v4.1, &[], b"x");
    to_group_mac.frame[..6].copy_from_slice(&[0x01, 0x00, 0x5e, 0, 0, 1]);
    let mut broadcast_mac = Sent::tcp(v4.0, v4.1, ONE_TAG, TCP_SYN, (1, 0), b"");
    broadcast_mac.frame[..6].fill(0xff);
    let later_v6 = Sent::new(v6.0, v6.1, &[], |s, d| {
        (geoblock_common::packet::ETH_P_IPV6, ipv6_extended(s, d, &[fragment(8)], IPPROTO_UDP, &[0; 16]))
    });
    let cases = [
        ("a TCP reset", Sent::tcp(v4.0, v4.1, &[], TCP_RST, (1, 0), b"")),
        ("an IPv6 TCP reset", Sent::tcp(v6.0, v6.1, TWO_TAGS, TCP_RST | TCP_ACK, (1, 2), b"")),
        ("an ICMP error", icmp_error(v4, (ICMP_DEST_UNREACH, 3))),
        ("an ICMPv6 error", icmp_error(v6, (ICMPV6_DEST_UNREACH, 4))),
        ("an echo reply", echo_reply(v4)),
        ("an ICMPv6 echo reply", echo_reply(v6)),
        ("a frame to a multicast MAC", to_group_mac),
        ("a frame to the broadcast MAC", broadcast_mac),
        ("a packet to the limited broadcast", Sent::udp(v4.0, "255.255.255.255", &[], b"x")),
        ("a packet to IPv4 multicast", Sent::udp(v4.0, "224.0.0.251", &[], b"x")),
        ("a packet to IPv6 multicast", Sent::udp(v6.0, "ff02::fb", &[], b"x")),
        ("a packet from 0.0.0.0", Sent::udp("0.0.0.0", v4.1, &[], b"x")),
        ("a packet from loopback", Sent::tcp("127.0.0.1", v4.1, &[], TCP_SYN, (1, 0), b"")),
        ("a packet from IPv4 multicast", Sent::udp("239.1.1.1", v4.1, &[], b"x")),
        ("a packet from ::", Sent::udp("::", v6.1, &[], b"x")),
        ("a packet from ::1", Sent::tcp("::1", v6.1, &[], TCP_SYN, (1, 0), b"")),
        ("a packet from IPv6 multicast", Sent::udp("ff02::1", v6.1, &[], b"x")),
        ("a later IPv4 fragment", ipv4_fragment(Sent::udp(v4.0, v4.1, &[], &[0; 32]), 0x0004)),
        ("a later IPv6 fragment", later_v6),
    ];
    for (what, sent) in &cases {
        let (action, _) = run(&mut g, &sent.frame);
        assert_eq!(action, XDP_DROP, "{what}: dropped without an answer");
    }
    assert_eq!(g.stats().unwrap().rejects, Rejects::default(), "nothing sent, nothing suppressed");

    // Monitor mode answers nothing: the packet goes on as it came.
    let mut g = load(true);
    let syn = Sent::tcp(v4.0, v4.1, &[], TCP_SYN, (1, 0), b"");
    assert_eq!(run(&mut g, &syn.frame), (XDP_PASS, syn.frame.clone()));
    assert_eq!(g.stats().unwrap().rejects, Rejects::default());
}

#[test]
fn the_token_bucket_bounds_the_answers_and_counts_the_rest() {
    let mut g = load(false);
    let syn = Sent::tcp("1.1.1.1", "192.0.2.2", &[], TCP_SYN, (1, 0), b"");
    // Rate 0: reject is a silent drop, and nothing is counted.
    g.set_reject_rate(0).expect("answers off");
    for _ in 0..100 {
        assert_eq!(run(&mut g, &syn.frame).0, XDP_DROP);
    }
    assert_eq!(g.stats().unwrap().rejects, Rejects::default());

    let rate = 2;
    g.set_reject_rate(rate).expect("the reject rate");
    let started = Instant::now();
    let floods = 2000u64;
    let answered = (0..floods).filter(|_| run(&mut g, &syn.frame).0 == XDP_TX).count() as u64;
    let cpus = aya::util::nr_cpus().unwrap() as u64;
    let bound = u64::from(rate).max(cpus) + (started.elapsed().as_secs_f64() * f64::from(rate)).ceil() as u64;
    assert!(answered >= 1 && answered <= bound, "{answered} answers, at most {bound} allowed");
    assert_eq!(g.stats().unwrap().rejects, Rejects { sent: answered, suppressed: floods - answered });
    assert_eq!(
        g.stats().unwrap().inbound.all.countries["CN"].dropped_packets,
        floods + 100,
        "every one counted as dropped"
    );
}

// ---------------------------------------------------------------------------
// End to end: the real daemon between namespaces
// ---------------------------------------------------------------------------

const TCP_PORT: u16 = 8443;
const UDP_PORT: u16 = 8053;

/// `geoblock run` on the receiver's veth end, rejecting CN, then `extra`.
/// In generic (skb) mode: on veth, the answers native XDP sends back
/// (XDP_TX) were counted as sent but never reached the peer here, even
/// with GRO (NAPI) on there; a NIC's driver sends them itself.
fn reject_args<'a>(pair: &'a Pair, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--iface", pair.receiver_if.as_str(), "--xdp-mode", "skb", "--block", "CN", "--reject"];
    args.extend_from_slice(extra);
    args
}

/// Makes `host` (a CN address) an address of the sender's namespace that
/// talks to the receiver's `server`, as a host behind a router would: the
/// routes both ways name it.
fn cn_host(pair: &Pair, host: IpAddr, server: IpAddr) {
    pair.host_on_sender(host);
    let len = if server.is_ipv4() { "32" } else { "128" };
    let (server_net, host) = (format!("{server}/{len}"), host.to_string());
    pair.sender.ip(&["route", "add", &server_net, "dev", &pair.sender_if, "src", &host]);
}

/// The errno a UDP sender gets for ICMP administratively prohibited
/// (`icmp_err_convert`, `icmpv6_err_convert`).
fn prohibited_errno(server: IpAddr) -> i32 {
    if server.is_ipv4() {
        libc::EHOSTUNREACH
    } else {
        libc::EACCES
    }
}

/// From blocked sources, IPv4 and IPv6: a TCP connect() to a listening
/// port is refused at once (the reset), and a connected UDP socket sending
/// to a bound port gets the ICMP error as its errno.
#[test]
fn blocked_senders_are_refused_and_told() {
    let pair = Pair::create();
    let cn = sources::of("CN");
    let servers: [IpAddr; 2] = [pair.receiver_v4.into(), pair.receiver_v6.into()];
    for (host, server) in cn.iter().zip(servers) {
        cn_host(&pair, *host, server);
    }
    // Listening: without geoblock every connect succeeds and no datagram
    // draws an error; the receiver's kernel would refuse only a closed port.
    let (tcp, udp) = pair.receiver.run(|| {
        let tcp = TcpListener::bind((Ipv6Addr::UNSPECIFIED, TCP_PORT)).expect("listening");
        let udp = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, UDP_PORT)).expect("binding");
        (tcp, udp)
    });
    let daemon = Daemon::start(&pair.receiver, &reject_args(&pair, &[]));
    for (host, server) in cn.iter().zip(servers) {
        let (refused, told) = pair.sender.run(|| {
            let started = Instant::now();
            let connect = TcpStream::connect_timeout(&SocketAddr::new(server, TCP_PORT), Duration::from_secs(3));
            let refused = (connect.map(drop).map_err(|e| e.kind()), started.elapsed());
            let any: IpAddr = if server.is_ipv4() { [0u8; 4].into() } else { Ipv6Addr::UNSPECIFIED.into() };
            let socket = UdpSocket::bind((any, 0)).expect("a UDP socket");
            socket.connect((server, UDP_PORT)).expect("connecting it");
            socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            socket.send(b"query").expect("sending");
            let told = socket.recv(&mut [0; 16]).map_err(|e| e.raw_os_error());
            (refused, told)
        });
        let what = format!("from {host} to {server}");
        assert_eq!(refused.0, Err(ErrorKind::ConnectionRefused), "TCP {what}");
        assert!(refused.1 < Duration::from_millis(100), "TCP {what}: refused after {:?}", refused.1);
        assert_eq!(told, Err(Some(prohibited_errno(server))), "UDP {what}");
    }
    let stats = daemon.stats();
    assert_eq!(stats.0["rejects"]["sent"], 4, "{}", stats.0);
    assert_eq!(stats.country("CN").dropped_packets, 4, "{}", stats.0);
    drop((tcp, udp));
    stop_and_detach(&pair, daemon);
}

/// VLAN-tagged frames from blocked sources (this kernel has no 802.1Q
/// devices to send them from sockets: they are crafted) are answered on
/// the wire: a reset for a SYN, an ICMP error for a datagram, IPv4 and
/// IPv6. The sender's kernel takes the tag off before its tap sees the
/// frame (the tags' bytes are checked in the tests above).
#[test]
fn tagged_frames_are_answered_on_the_wire() {
    let pair = Pair::create();
    let tap = Tap::on(&pair.sender, &pair.sender_if);
    let daemon = Daemon::start(&pair.receiver, &reject_args(&pair, &[]));
    let servers: [IpAddr; 2] = [pair.receiver_v4.into(), pair.receiver_v6.into()];
    let mut wanted = vec![];
    for (client, server) in sources::of("CN").into_iter().zip(servers) {
        let frame = |protocol: u8, l4: Vec<u8>| {
            let (proto, packet) = ip_packet(client, server, 0, protocol, &l4);
            ethernet(pair.receiver_mac, pair.sender_mac, ONE_TAG, proto, &packet)
        };
        let syn = frame(IPPROTO_TCP, tcp_segment(client, server, (40000, TCP_PORT), TCP_SYN, (77, 0), b""));
        let datagram = frame(IPPROTO_UDP, udp_segment(client, server, 40000, UDP_PORT, b"query"));
        let reset = tcp_reset(server, client, (TCP_PORT, 40000), TCP_RST | TCP_ACK, (0, 78));
        let kind = if client.is_ipv4() { (ICMP_DEST_UNREACH, 13) } else { (ICMPV6_DEST_UNREACH, 1) };
        let quote = &datagram[l3_offset(1)..];
        let error = icmp_message(server, client, kind, [0; 4], quote);
        let answer = |protocol: u8, l4: &[u8]| {
            let (proto, packet) = ip_packet(server, client, 0, protocol, l4);
            ethernet(pair.sender_mac, pair.receiver_mac, &[], proto, &packet)
        };
        wanted.push(answer(IPPROTO_TCP, &reset));
        wanted.push(answer(icmp_protocol(client), &error));
        let sender = Sender::new(&pair);
        sender.send_frame(&syn);
        sender.send_frame(&datagram);
    }
    let arrived = tap.frames(Duration::from_millis(500));
    for want in &wanted {
        assert!(
            arrived.contains(want),
            "no answer\n{}\namong {} frames arrived:\n{}",
            hex(want),
            arrived.len(),
            arrived.iter().map(|f| hex(f)).collect::<Vec<_>>().join("\n--\n")
        );
    }
    stop_and_detach(&pair, daemon);
}

/// A flood of spoofed SYNs draws at most the rate's resets (and the
/// burst): counted where they arrive, on the sender's veth end.
#[test]
fn a_spoofed_syn_flood_reflects_no_more_than_the_rate() {
    let pair = Pair::create();
    let rate = 50u64;
    let rate_arg = rate.to_string();
    let daemon = Daemon::start(&pair.receiver, &reject_args(&pair, &["--reject-rate", &rate_arg]));
    let tap = Tap::on(&pair.sender, &pair.sender_if);
    let sender = Sender::new(&pair);
    let [cn4, _] = sources::of("CN");
    let floods = 5000u16;
    let started = Instant::now();
    for port in 0..floods {
        let frame =
            sender.ip_frame(cn4, IPPROTO_TCP, |dst| tcp_segment(cn4, dst, (10000 + port, 80), TCP_SYN, (1, 0), b""));
        sender.send_frame(&frame);
    }
    let frames = tap.frames(Duration::from_millis(500));
    let elapsed = started.elapsed();
    let server = IpAddr::from(pair.receiver_v4);
    let resets = frames.iter().filter(|f| is_reset_from(f, server)).count() as u64;
    let cpus = aya::util::nr_cpus().unwrap() as u64;
    // The burst, the rate over the whole run, and a margin for the
    // coarse clock's jiffies: generous, never a timing assertion.
    let bound = rate.max(cpus) + (elapsed.as_secs_f64() * rate as f64).ceil() as u64 + 2 * cpus;
    assert!(
        resets >= 1 && resets <= bound,
        "{resets} resets for {floods} SYNs in {elapsed:?}, at most {bound} allowed; stats {}; veth drops (tx, rx): \
         receiver {:?}, sender {:?}",
        daemon.stats().0,
        netns::link_drops(&pair.receiver, &pair.receiver_if),
        netns::link_drops(&pair.sender, &pair.sender_if),
    );
    let stats = daemon.stats();
    let sent = stats.0["rejects"]["sent"].as_u64().unwrap();
    let suppressed = stats.0["rejects"]["suppressed"].as_u64().unwrap();
    assert!(sent >= resets && sent <= bound, "{sent} sent, {resets} arrived: {}", stats.0);
    assert_eq!(sent + suppressed, stats.country("CN").dropped_packets, "every SYN answered or suppressed: {}", stats.0);
    stop_and_detach(&pair, daemon);
}

/// Whether `frame` is an untagged IPv4 TCP reset from `server`.
fn is_reset_from(frame: &[u8], server: IpAddr) -> bool {
    let l3 = ETH_HLEN;
    frames::ip_summary(frame) == Some((server, IPPROTO_TCP))
        && frame.get(l3 + IPV4_HLEN + 13).is_some_and(|flags| flags & TCP_RST != 0)
}
