//! What rules and replies cost, at line rate in the same run as the
//! baselines: geoblock with today's single policy, with 4 and with 16
//! rules, and with replies off, under a UDP flood and a SYN flood from
//! random blocked sources; and the egress program's cost per packet the
//! host sends.

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use geoblock::{country, daemon::config::Config, data::table::Table, kernel::Geoblock, policy::Policy};
use geoblock_common::{
    packet::{IPPROTO_TCP, TCP_SYN},
    Backend, CountryId,
};
use serde::Serialize;

use super::{
    engines::{Engine, Receiver},
    kernel,
    linerate::{pin_to_cpu, Napi, Sender, RECEIVER_CPU},
    measure,
    report::median,
    workload::{self, Family, Scope, Traffic},
    Settings, SOURCES,
};
use crate::{
    frames::{ethernet, ip_packet, tcp_segment},
    netns::Pair,
};

/// One line-rate measurement of a configuration under a flood.
#[derive(Clone, Debug, Serialize)]
pub struct RuleRow {
    pub config: &'static str,
    pub family: &'static str,
    pub flood: &'static str,
    pub round: usize,
    pub mpps: f64,
    pub rx_ns: f64,
    pub prog_ns: Option<f64>,
}

/// The egress program's cost per packet the host sends.
#[derive(Clone, Debug, Serialize)]
pub struct EgressRow {
    /// `one flow` (every packet refreshes the same flow) or `new flows`
    /// (every packet to another port: a flow written per packet).
    pub traffic: &'static str,
    pub round: usize,
    /// Sending thread CPU per packet without and with the egress program.
    pub bare_ns: f64,
    pub egress_ns: f64,
    /// The egress program's own run time per packet (bpf_stats).
    pub prog_ns: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct RulesCost {
    pub line_rate: Vec<RuleRow>,
    pub egress: Vec<EgressRow>,
}

/// The configurations, each measured under each flood.
const CONFIGS: [&str; 5] = ["xdp-drop", "1 rule", "4 rules", "16 rules", "replies off"];
const FLOODS: [&str; 2] = ["udp", "syn"];

pub fn measure_all(world: &Table, settings: Settings) -> RulesCost {
    let pid = std::process::id();
    let pair = Pair::create_named(&format!("rs{pid}"), &format!("rr{pid}"));
    let _stats = kernel::enable_bpf_stats();
    let mut sender = Sender::load(&pair);
    let blocked = Scope::World.blocked();
    let sources: Vec<(Family, Vec<IpAddr>)> =
        Family::ALL.iter().map(|&f| (f, workload::sources(world, &blocked, Traffic::Blocked, f, SOURCES))).collect();
    let udp: Vec<Vec<u8>> = Family::ALL.iter().map(|&f| sender.frame(f).to_vec()).collect();
    let mut cost = RulesCost::default();
    // Rounds outside, configurations inside, each round starting one
    // configuration later: a drift of the machine over the run, or what
    // one configuration leaves behind for the next, favours none.
    for round in 0..settings.rounds {
        for config in (0..CONFIGS.len()).map(|i| CONFIGS[(i + round) % CONFIGS.len()]) {
            let mut rx = match config {
                "xdp-drop" => Receiver::install(Engine::Drop, &pair, world, &blocked),
                _ => Receiver::install_with(Engine::Trie, &pair, world, &blocked, &policy(config, &blocked)),
            };
            let napi = Napi::threaded(&pair.receiver, &pair.receiver_if);
            eprintln!("bench: rules / round {round} / {config}");
            for flood in FLOODS {
                for (family, srcs) in &sources {
                    let frame = match flood {
                        "syn" => syn(&pair, *family),
                        _ => udp[*family as usize].clone(),
                    };
                    sender.set_frame(*family, frame);
                    sender.set_sources(srcs);
                    sender.send(&pair.sender, *family, settings.sample / 5);
                    let m = measure(&pair, &sender, &mut rx, &napi, *family, settings.sample);
                    cost.line_rate.push(RuleRow {
                        config,
                        family: family.name(),
                        flood,
                        round,
                        mpps: m.mpps,
                        rx_ns: m.rx_ns,
                        prog_ns: m.prog_ns,
                    });
                }
            }
        }
    }
    for (family, frame) in Family::ALL.iter().zip(udp) {
        sender.set_frame(*family, frame);
    }
    cost.egress = egress(&pair, settings);
    cost
}

/// The policy of a configuration: a deny-list of `blocked` for every
/// packet, behind 3 or 15 port rules the floods (to UDP and TCP port 9)
/// do not match; or with replies off.
fn policy(config: &str, blocked: &std::collections::BTreeSet<CountryId>) -> Policy {
    let codes: Vec<String> = blocked.iter().map(|&c| format!("\"{}\"", country::code(c))).collect();
    let list = codes.join(",");
    let port_rules = match config {
        "4 rules" => 3,
        "16 rules" => 15,
        _ => 0,
    };
    let mut toml = String::from("interfaces = [\"bench\"]\n");
    for n in 0..port_rules {
        let (protocol, port) = if n % 2 == 0 { ("tcp", 1000 + n) } else { ("udp", 2000 + n) };
        toml += &format!("[[rule]]\nname = \"r{n}\"\nprotocol = \"{protocol}\"\nports = [{port}]\nallow = [\"DE\"]\n");
    }
    match port_rules {
        0 => toml += &format!("[policy]\nblock = [{list}]\nreplies = {}\n", config != "replies off"),
        _ => toml += &format!("[[rule]]\nname = \"rest\"\nblock = [{list}]\n"),
    }
    let path = std::env::temp_dir().join(format!("geoblock-bench-{}.toml", std::process::id()));
    std::fs::write(&path, &toml).expect("writing the bench policy");
    let loaded = Config::load(&path, true).and_then(Config::resolve);
    let _ = std::fs::remove_file(&path);
    loaded.unwrap_or_else(|e| panic!("bench policy {config}: {e}\n{toml}")).policy
}

/// A TCP SYN from the sender's address of `family` to the receiver's port
/// 9, for the sender to rewrite the source of. Its checksum goes stale
/// with each rewrite: nothing reads it, XDP drops the packets first.
pub(super) fn syn(pair: &Pair, family: Family) -> Vec<u8> {
    let src: IpAddr = match family {
        Family::V4 => pair.sender_v4.into(),
        Family::V6 => pair.sender_v6.into(),
    };
    let dst = pair.receiver_ip(src);
    let (kind, packet) = ip_packet(src, dst, 0, IPPROTO_TCP, &tcp_segment(src, dst, (40000, 9), TCP_SYN, (1, 0), b""));
    ethernet(pair.receiver_mac, pair.sender_mac, &[], kind, &packet)
}

/// The receiver sends UDP to the sender for `settings.sample`, once to one
/// port, once to a new port per packet; without the egress program, then
/// with it.
fn egress(pair: &Pair, settings: Settings) -> Vec<EgressRow> {
    let mut gb = Geoblock::load(Backend::Trie).expect("loading geoblock");
    let mut rows = Vec::new();
    for round in 0..settings.rounds {
        for traffic in ["one flow", "new flows"] {
            let bare = send(pair, traffic, settings.sample).0;
            let link = pair.receiver.run(|| gb.attach_egress(&pair.receiver_if)).expect("attaching egress");
            let program = gb.egress().expect("the egress program");
            let before = program.info().expect("program info");
            let (egress_ns, packets) = send(pair, traffic, settings.sample);
            let after = program.info().expect("program info");
            let runs = (after.run_count() - before.run_count()).max(1);
            let prog_ns = (after.run_time() - before.run_time()).as_nanos() as f64 / runs as f64;
            drop(link);
            assert!(runs + 1000 >= packets, "the egress program ran {runs} times for {packets} packets");
            rows.push(EgressRow { traffic, round, bare_ns: bare, egress_ns, prog_ns });
        }
    }
    rows
}

/// Sends UDP from the receiver namespace for `time`; the sending thread's
/// CPU per packet, and the packets.
pub(super) fn send(pair: &Pair, traffic: &str, time: Duration) -> (f64, u64) {
    pair.receiver.run(|| {
        pin_to_cpu(0, RECEIVER_CPU);
        let socket = UdpSocket::bind((pair.receiver_v4, 0)).expect("a UDP socket");
        let cpu = || {
            let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: clock_gettime writes `ts`.
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
            ts.tv_sec as f64 * 1e9 + ts.tv_nsec as f64
        };
        let (start, cpu0) = (Instant::now(), cpu());
        let mut sent: u64 = 0;
        while start.elapsed() < time {
            for _ in 0..1000 {
                let port = if traffic == "one flow" { 9 } else { 1024 + (sent % 60_000) as u16 };
                let _ = socket.send_to(b"geoblock", SocketAddr::new(pair.sender_v4.into(), port));
                sent += 1;
            }
        }
        ((cpu() - cpu0) / sent as f64, sent)
    })
}

impl RulesCost {
    pub fn print(&self) {
        println!("\n== Rules and replies at line rate: world table, blocked random sources, median over rounds ==");
        println!(
            "{:<12} {:<5} {:<5} {:>6} {:>7} {:>8} {:>9} {:>10}",
            "config", "fam", "flood", "Mpps", "rx ns", "prog ns", "rx vs 1", "prog vs 1"
        );
        for family in Family::ALL.map(Family::name) {
            for flood in FLOODS {
                let rows = |config: &str| -> Vec<&RuleRow> {
                    let of = |r: &&RuleRow| r.config == config && r.family == family && r.flood == flood;
                    self.line_rate.iter().filter(of).collect()
                };
                let rx = |config: &str| median(rows(config).iter().map(|r| r.rx_ns).collect());
                let prog = |config: &str| median(rows(config).iter().filter_map(|r| r.prog_ns).collect());
                for config in CONFIGS {
                    let mpps = median(rows(config).iter().map(|r| r.mpps).collect());
                    println!(
                        "{config:<12} {family:<5} {flood:<5} {mpps:>6.2} {:>7.1} {:>8.1} {:>9.2} {:>10.2}",
                        rx(config),
                        prog(config),
                        rx(config) / rx("1 rule"),
                        prog(config) / prog("1 rule")
                    );
                }
            }
        }
        println!("\n== Egress program: sending thread CPU per UDP packet, median over rounds ==");
        for traffic in ["one flow", "new flows"] {
            let rows: Vec<&EgressRow> = self.egress.iter().filter(|r| r.traffic == traffic).collect();
            let m = |f: fn(&EgressRow) -> f64| median(rows.iter().map(|r| f(r)).collect());
            let (bare, with, prog) = (m(|r| r.bare_ns), m(|r| r.egress_ns), m(|r| r.prog_ns));
            println!(
                "{traffic:<9}: without {bare:.0} ns, with {with:.0} ns ({:.2}x); program {prog:.1} ns",
                with / bare
            );
        }
    }
}
