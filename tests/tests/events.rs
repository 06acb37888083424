//! End to end: sampled drop events. The real `geoblock run` on a veth end
//! in a throwaway namespace, a flood of blocked packets from the other end,
//! and `geoblock events` clients on the daemon's control socket: what they
//! receive must stay within the rate limit, describe the packets sent, and
//! the pcap file must read back with tcpdump. Needs root.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use geoblock_tests::{
    geoblock::Daemon,
    netns::{self, Pair},
    sources,
    traffic::{Sender, PORT},
};
use serde_json::Value;

/// Events per second the daemon is configured for: low, so the flood
/// overruns it many times over.
const RATE: u64 = 20;
const FLOOD: Duration = Duration::from_secs(2);
/// The source port of the test frames (see `frames::Udp`).
const SRC_PORT: u64 = 40000;

/// Sends `src`'s datagram back to back for `duration`; returns how many.
fn flood(sender: &Sender, src: IpAddr, duration: Duration) -> u64 {
    let frame = sender.frame(src);
    let (started, mut sent) = (Instant::now(), 0);
    while started.elapsed() < duration {
        for _ in 0..256 {
            sender.send_frame(&frame);
        }
        sent += 256;
    }
    sent
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON event ({e}): {l}"))).collect()
}

/// The `events` part of `geoblock status --json`.
fn event_status(daemon: &Daemon) -> Value {
    let out = daemon.control(&["status", "--json"]);
    assert!(out.status.success(), "geoblock status: {}", String::from_utf8_lossy(&out.stderr));
    let response: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    response["status"]["events"].clone()
}

#[test]
fn a_flood_yields_rate_limited_events_that_describe_it_and_a_readable_pcap() {
    netns::assert_root();
    let pair = Pair::create();
    let rate = RATE.to_string();
    let args = ["--iface", &pair.receiver_if, "--xdp-mode", "native", "--block", "CN,RU", "--event-rate", &rate];
    let daemon = Daemon::start(&pair.receiver, &args);
    let pcap = std::env::temp_dir().join(format!("{}.pcap", daemon.state_dir.file_name().unwrap().to_string_lossy()));
    let all = daemon.events(&["--json", "--pcap", pcap.to_str().unwrap()]);
    let ru_only = daemon.events(&["--country", "RU"]);

    let sender = Sender::new(&pair);
    let [cn, _] = sources::of("CN");
    let [ru_v4, ru_v6] = sources::of("RU");
    // A few RU packets while the bucket is full, then the CN flood.
    sender.send(ru_v4, 1);
    sender.send(ru_v6, 1);
    let started = Instant::now();
    let flooded = flood(&sender, cn, FLOOD);
    let elapsed = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let (status, stdout, stderr) = all.stop(libc::SIGINT);
    assert!(status.success(), "geoblock events --json exited with {status}: {stderr}");
    let (ru_status, ru_text, ru_stderr) = ru_only.stop(libc::SIGTERM);
    assert!(ru_status.success(), "geoblock events --country RU exited with {ru_status}: {ru_stderr}");

    // The packet path: every flood packet that reached XDP was dropped and counted.
    let stats = daemon.stats();
    let link_losses =
        netns::link_drops(&pair.sender, &pair.sender_if).0 + netns::link_drops(&pair.receiver, &pair.receiver_if).1;
    assert_eq!(stats.country("CN").dropped_packets + link_losses, flooded, "flood packets dropped + lost on the link");

    // The rate limit: the bucket starts full (one second's worth).
    let events = json_lines(&stdout);
    let cpus = aya::util::nr_cpus().unwrap() as u64;
    let bound = RATE.max(cpus) + (elapsed.as_secs_f64() * RATE as f64).ceil() as u64 + 2;
    assert!(events.len() >= 3 && events.len() as u64 <= bound, "{} events, expected 3..={bound}", events.len());
    let counts = event_status(&daemon);
    eprintln!("{flooded} flood packets in {elapsed:?}: {} events; kernel: {counts}", events.len());
    assert_eq!(counts["rate"], RATE);
    assert_eq!(counts["emitted"].as_u64(), Some(events.len() as u64), "every emitted event reached the client");
    assert!(counts["suppressed"].as_u64().unwrap() > flooded / 2, "suppressed samples counted: {counts}");
    assert_eq!(counts["lost"], 0);

    // What the events say is what was sent.
    let receiver_ip = |src: IpAddr| pair.receiver_ip(src).to_string();
    for e in &events {
        let src: IpAddr = e["src"].as_str().unwrap().parse().unwrap();
        let country = if src == cn { "CN" } else { "RU" };
        assert!([cn, ru_v4, ru_v6].contains(&src), "unexpected source in {e}");
        assert_eq!(e["dst"], receiver_ip(src), "{e}");
        assert_eq!((e["src_port"].as_u64(), e["dst_port"].as_u64()), (Some(SRC_PORT), Some(u64::from(PORT))), "{e}");
        assert_eq!((e["protocol"].as_u64(), e["country"].as_str()), (Some(17), Some(country)), "{e}");
        assert_eq!(
            (e["iface"].as_str(), e["reason"].as_str()),
            (Some(pair.receiver_if.as_str()), Some("blocked-country")),
            "{e}"
        );
        assert_eq!((&e["action"], &e["schema"]), (&"drop".into(), &2.into()), "{e}");
        assert_eq!(e["direction"], "inbound", "the source was judged: {e}");
    }
    let ru_events = events.iter().filter(|e| e["country"] == "RU").count();
    assert_eq!(ru_events, 2, "both RU packets sampled (the bucket was full)");
    let ru_lines: Vec<&str> = ru_text.lines().collect();
    assert_eq!(ru_lines.len(), ru_events, "--country RU shows only RU: {ru_text}");
    let inbound = format!(" {} inbound ", pair.receiver_if);
    assert!(ru_lines.iter().all(|l| l.contains(" RU ") && l.contains(&inbound)), "{ru_text}");

    check_pcap(&pcap, &events, cn, &receiver_ip(cn));
    let _ = std::fs::remove_file(&pcap);
}

/// The pcap file: Ethernet link type, the 128-byte snap length, one record
/// per event, and tcpdump reads the addresses and ports back.
fn check_pcap(path: &std::path::Path, events: &[Value], cn: IpAddr, dst: &str) {
    let bytes = std::fs::read(path).expect("reading the pcap file");
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    assert_eq!((u32_at(0), u32_at(16), u32_at(20)), (0xa1b2_c3d4, 128, 1), "magic, snaplen, LINKTYPE_ETHERNET");
    let out = std::process::Command::new("tcpdump")
        .args(["-nn", "-r"])
        .arg(path)
        .output()
        .expect("running tcpdump (apt-get install tcpdump)");
    let (text, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && !err.contains("truncated"), "tcpdump -r: {err}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), events.len(), "one pcap record per event:\n{text}");
    let flood_line = format!("IP {cn}.{SRC_PORT} > {dst}.{PORT}: UDP");
    let flood_events = events.iter().filter(|e| e["country"] == "CN").count();
    assert_eq!(lines.iter().filter(|l| l.contains(&flood_line)).count(), flood_events, "{flood_line} in\n{text}");
    assert!(lines.iter().any(|l| l.contains("IP6 2a02:6b8::1.40000 >")), "the IPv6 event in\n{text}");
}
