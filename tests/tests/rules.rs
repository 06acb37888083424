//! Rules end to end: the real `geoblock run` with `[[rule]]` tables on a
//! veth end in a throwaway namespace, and real frames of TCP, UDP and ICMP
//! from countries in the embedded data, with IPv4 options, IPv6 extension
//! headers and fragments: each lands under the rule its protocol and
//! destination port pick, and that rule's countries decide. Needs root;
//! fails (never skips) without it.
//!
//! Build the binary first: `cargo build -p geoblock-user --bin geoblock`.

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use geoblock_common::packet::{
    IPPROTO_DSTOPTS, IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_TCP, IPPROTO_UDP, IPV4_FRAG_OFF, TCP_SYN,
};
use geoblock_tests::{
    bench::linerate::veth_stat,
    frames::{ethernet, ext, fragment, ip_packet, ipv6_extended, l3_offset, tcp_segment, udp_segment},
    geoblock::{self, Daemon},
    netns::{self, Pair},
    sources,
    traffic::Sender,
};

const CONFIG: &str = "\
[[rule]]
name = \"ssh\"
protocol = \"tcp\"
ports = [22]
allow = [\"DE\"]

[[rule]]
name = \"dns\"
protocol = \"udp\"
ports = [53]
block = [\"CN\"]
";

/// Copies of each frame sent.
const COPIES: u64 = 5;

#[test]
fn rules_scope_the_policy_by_protocol_and_port_on_real_frames() {
    let pair = Pair::create();
    let dir = tempdir();
    let config = dir.join("geoblock.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let daemon = Daemon::start(&pair.receiver, &geoblock::run_args(&pair, &["--config", config.to_str().unwrap()]));
    let [cn4, cn6] = sources::of("CN");
    let [de4, de6] = sources::of("DE");
    let macs = (pair.sender_mac, pair.receiver_mac);
    let to = |src: IpAddr| pair.receiver_ip(src);
    let frame = |src: IpAddr, options: usize, protocol: u8, l4: &[u8]| {
        let (kind, packet) = ip_packet(src, to(src), options, protocol, l4);
        ethernet(macs.1, macs.0, &[], kind, &packet)
    };
    let syn = |src: IpAddr, port: u16| tcp_segment(src, to(src), (40000, port), TCP_SYN, (1, 0), b"");
    let udp = |src: IpAddr, port: u16| udp_segment(src, to(src), 40000, port, b"geoblock");
    // (what, frame, the rule it falls under, dropped)
    let mut cases: Vec<(String, Vec<u8>, &str, bool)> = Vec::new();
    for src in [cn4, cn6] {
        cases.push((format!("{src} to tcp/22"), frame(src, 0, IPPROTO_TCP, &syn(src, 22)), "ssh", true));
        cases.push((format!("{src} to tcp/80"), frame(src, 0, IPPROTO_TCP, &syn(src, 80)), "(none)", false));
        cases.push((format!("{src} to udp/53"), frame(src, 0, IPPROTO_UDP, &udp(src, 53)), "dns", true));
        cases.push((format!("{src} to udp/54"), frame(src, 0, IPPROTO_UDP, &udp(src, 54)), "(none)", false));
    }
    for src in [de4, de6] {
        cases.push((format!("{src} to tcp/22"), frame(src, 0, IPPROTO_TCP, &syn(src, 22)), "ssh", false));
    }
    cases.push(("IPv4 with options, CN to tcp/22".into(), frame(cn4, 40, IPPROTO_TCP, &syn(cn4, 22)), "ssh", true));
    let chain = [ext(IPPROTO_HOPOPTS), ext(IPPROTO_DSTOPTS), ext(IPPROTO_ROUTING)];
    let v6 = |exts: &[(u8, Vec<u8>)], l4: &[u8]| {
        ethernet(macs.1, macs.0, &[], 0x86dd, &ipv6_extended(cn6, to(cn6), exts, IPPROTO_TCP, l4))
    };
    cases.push(("IPv6 extension headers, CN to tcp/22".into(), v6(&chain, &syn(cn6, 22)), "ssh", true));
    cases.push(("IPv6 first fragment, CN to tcp/22".into(), v6(&[fragment(0)], &syn(cn6, 22)), "ssh", true));
    // Later fragments carry no ports: only rules without ports match them.
    cases.push(("IPv6 later fragment of CN tcp".into(), v6(&[fragment(100)], &syn(cn6, 22)), "(none)", false));
    let mut later = frame(cn4, 0, IPPROTO_TCP, &syn(cn4, 22));
    let at = l3_offset(0) + IPV4_FRAG_OFF;
    later[at..at + 2].copy_from_slice(&100u16.to_be_bytes());
    cases.push(("IPv4 later fragment of CN tcp".into(), later, "(none)", false));

    let sender = Sender::new(&pair);
    let xdp_drops = || veth_stat(&pair.receiver, &pair.receiver_if, "rx_queue_0_xdp_drops");
    let drops_before = xdp_drops();
    let mut want: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (_, frame, rule, dropped) in &cases {
        for _ in 0..COPIES {
            sender.send_frame(frame);
        }
        let slot = want.entry(rule).or_default();
        match dropped {
            true => slot.0 += COPIES,
            false => slot.1 += COPIES,
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let stats = daemon.stats();
    let rules = stats.0["rules"].as_array().expect("rules in stats --json").clone();
    let counts = |rule: &serde_json::Value, field: &str| -> u64 {
        ["ipv4", "ipv6"].iter().map(|f| rule[f][field].as_u64().unwrap_or(0)).sum()
    };
    for rule in &rules {
        let name = rule["name"].as_str().unwrap();
        let got = (counts(rule, "dropped_packets"), counts(rule, "passed_packets"));
        assert_eq!(got, want.get(name).copied().unwrap_or_default(), "rule {name}: (dropped, passed)\n{rule}");
    }
    // What no rule matched passes; the namespace's own IPv6 neighbour
    // discovery may add to it.
    let unmatched = &stats.0["unmatched"];
    let (dropped, passed) = (counts(unmatched, "dropped_packets"), counts(unmatched, "passed_packets"));
    assert_eq!(dropped, 0, "nothing unmatched is dropped: {unmatched}");
    assert!(passed >= want["(none)"].1, "unmatched passed {passed}, sent {}: {unmatched}", want["(none)"].1);
    let drops = xdp_drops() - drops_before;
    let dropped: u64 = want.values().map(|(d, _)| d).sum();
    assert_eq!(drops, dropped, "frames the receiving veth dropped (XDP_DROP)");
    geoblock::stop_and_detach(&pair, daemon);
    let _ = std::fs::remove_dir_all(dir);
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("geoblock-rules-{}", netns::unique_tag()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
