//! `cargo xtask bench`: geoblock against a bare XDP_DROP, nftables and
//! ipset, in BPF_PROG_TEST_RUN and at line rate between two namespaces,
//! and the live operations: reloads, policy changes, stalls.
//! See BENCHMARKS.md for the method and the numbers.

pub mod engines;
pub mod events;
pub mod kernel;
pub mod linerate;
pub mod live;
pub mod outbound;
pub mod reject;
pub mod report;
pub mod rules;
pub mod selectors;
pub mod stall;
pub mod tracefs;
pub mod workload;

use std::{net::IpAddr, time::Duration};

use geoblock::{
    data::table::Table,
    kernel::{trie::Trie, Geoblock},
};
use geoblock_common::Backend;

use crate::{frames::Udp, netns::Pair};
use engines::{timed, Engine, Receiver};
use linerate::{Napi, Sender};
use report::{LineRate, Load, Report, TestRun};
use workload::{Family, Scope, Traffic};

/// How long and how often to measure.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Per line-rate sample.
    pub sample: Duration,
    /// Rounds of every measurement (the spread is the noise).
    pub rounds: usize,
    /// Random sources per test-run cold measurement.
    pub cold_frames: usize,
    /// Repeats of the hot measurement.
    pub hot_repeat: u32,
    /// Every traffic at every scope; otherwise the smaller scopes get the
    /// mixed traffic only (the world gets them all).
    pub full: bool,
    /// Line rate: only these scopes and engines (by name); empty: all.
    pub scopes: &'static [String],
    pub engines: &'static [String],
}

/// Whether `name` is selected by `only` (empty: everything is).
fn selected(only: &[String], name: &str) -> bool {
    only.is_empty() || only.iter().any(|o| o == name)
}

/// Sources per line-rate traffic (the sender's array has 65,536 slots).
const SOURCES: usize = 1 << 16;

fn frame(src: IpAddr) -> Vec<u8> {
    let dst: IpAddr = match src {
        IpAddr::V4(_) => "192.0.2.2".parse().unwrap(),
        IpAddr::V6(_) => "2001:db8::2".parse().unwrap(),
    };
    Udp { src, dst, ..Udp::default() }.build()
}

/// Issue A: hot and cold BPF_PROG_TEST_RUN of xdp-drop and geoblock (trie
/// and LPM, world table, deny-list of a few countries), table load times
/// and kernel memory.
pub fn test_runs(world: &Table, settings: Settings, report: &mut Report) {
    let blocked = Scope::World.blocked();
    let mut programs = vec![(Engine::Drop, load(Engine::Drop)), (Engine::Parse, load(Engine::Parse))];
    for engine in [Engine::Trie, Engine::Lpm] {
        let mut gb = load(engine);
        let load_ms = timed(|| gb.load_table(world).expect("loading the world table"));
        let (v4, v6) = (world.v4.len(), world.v6.len());
        report.loads.push(Load { engine: engine.name(), scope: "world", prefixes: v4 + v6, load_ms, bytes: None });
        gb.apply_policy(&engines::deny(&blocked)).expect("policy");
        programs.push((engine, gb));
    }
    for (engine, gb) in &mut programs {
        if engine.is_geoblock() {
            let memory = kernel::map_memory(gb.table_program().expect("the table program"));
            let tables = if *engine == Engine::Trie {
                [geoblock_common::maps::GEO_V4, geoblock_common::maps::GEO_V6]
            } else {
                [geoblock_common::maps::LPM_V4, geoblock_common::maps::LPM_V6]
            };
            let table: u64 = memory.iter().filter(|m| tables.contains(&m.name.as_str())).map(|m| m.bytes).sum();
            report.loads.iter_mut().filter(|l| l.engine == engine.name()).for_each(|l| l.bytes = Some(table));
            if *engine == Engine::Trie {
                report.memory = memory;
            }
        }
    }
    for round in 0..settings.rounds {
        report.trie_build_ms.push(timed(|| (Trie::v4(world).unwrap(), Trie::v6(world).unwrap())));
        for family in Family::ALL {
            let cold = kernel::frames_from(&workload::anywhere(world, family, settings.cold_frames), frame);
            for (engine, gb) in &mut programs {
                let program = gb.program().unwrap();
                report.test_runs.push(TestRun {
                    engine: engine.name(),
                    family: family.name(),
                    round,
                    hot_ns: kernel::hot_ns(program, &cold[0], settings.hot_repeat),
                    cold_ns: kernel::cold_ns(program, &cold),
                });
            }
        }
    }
}

fn load(engine: Engine) -> Geoblock {
    match engine {
        Engine::Drop => Geoblock::load_object(crate::programs::BENCH_DROP, "bench_drop", Backend::Trie),
        Engine::Parse => Geoblock::load_object(crate::programs::BENCH_SENDER, "bench_parse", Backend::Trie),
        Engine::Lpm => Geoblock::load(Backend::Lpm),
        _ => Geoblock::load(Backend::Trie),
    }
    .unwrap_or_else(|e| panic!("loading {}: {e}", engine.name()))
}

/// Issue B: every engine on the receiving veth, fed random sources at line
/// rate; the full matrix of traffics for every scope.
pub fn line_rate(world: &Table, settings: Settings, report: &mut Report) {
    let pid = std::process::id();
    let pair = Pair::create_named(&format!("bs{pid}"), &format!("br{pid}"));
    let _stats = kernel::enable_bpf_stats();
    let mut sender = Sender::load(&pair);
    for scope in Scope::ALL.into_iter().filter(|s| selected(settings.scopes, s.name())) {
        let (table, blocked) = (scope.table(world), scope.blocked());
        let set = workload::subset(world, &blocked);
        let kinds: &[Traffic] = match settings.full || scope == Scope::World {
            true => &Traffic::ALL,
            false => &[Traffic::Mix],
        };
        let traffic: Vec<(Family, Traffic, Vec<IpAddr>)> = Family::ALL
            .iter()
            .flat_map(|&f| kinds.iter().map(move |&t| (f, t)))
            .map(|(f, t)| (f, t, workload::sources(world, &blocked, t, f, SOURCES)))
            .collect();
        for engine in Engine::ALL.into_iter().filter(|e| selected(settings.engines, e.name())) {
            let mut rx = Receiver::install(engine, &pair, &table, &blocked);
            if !matches!(engine, Engine::Drop | Engine::Pass | Engine::Parse) {
                let (prefixes, bytes) = match engine {
                    Engine::Trie | Engine::Lpm => (table.v4.len() + table.v6.len(), None),
                    _ => (set.v4.len() + set.v6.len(), rx.set_bytes),
                };
                report.loads.push(Load {
                    engine: engine.name(),
                    scope: scope.name(),
                    prefixes,
                    load_ms: rx.load_ms,
                    bytes,
                });
            }
            let napi = Napi::threaded(&pair.receiver, &pair.receiver_if);
            eprintln!("bench: {} / {}", scope.name(), engine.name());
            for round in 0..settings.rounds {
                for (family, kind, sources) in &traffic {
                    sender.set_sources(sources);
                    sender.send(&pair.sender, *family, settings.sample / 5); // warm up
                    let sample = measure(&pair, &sender, &mut rx, &napi, *family, settings.sample);
                    let (t, s) = match family {
                        Family::V4 => (table.v4.len(), set.v4.len()),
                        Family::V6 => (table.v6.len(), set.v6.len()),
                    };
                    report.line_rate.push(LineRate {
                        scope: scope.name(),
                        table_prefixes: t,
                        set_prefixes: s,
                        engine: engine.name(),
                        family: family.name(),
                        traffic: kind.name(),
                        round,
                        expected_share: kind.blocked_share(),
                        ..sample
                    });
                }
            }
        }
    }
    report.receiver_snmp = linerate::snmp(&pair.receiver);
}

/// Counters of the receiving side at one instant.
struct Snapshot {
    rx: u64,
    cpu_ns: u64,
    prog: (u64, u64),
    dropped: Option<u64>,
}

fn snapshot(pair: &Pair, rx: &mut Receiver, napi: &Napi) -> Snapshot {
    Snapshot {
        rx: linerate::rx_packets(&pair.receiver, &pair.receiver_if),
        prog: kernel::run_stats(rx.program()),
        dropped: rx.dropped(),
        cpu_ns: napi.cpu_ns(),
    }
}

/// Sends for `time` and returns what the receiver spent (labels unset).
pub fn measure(
    pair: &Pair,
    sender: &Sender,
    rx: &mut Receiver,
    napi: &Napi,
    family: Family,
    time: Duration,
) -> LineRate {
    let before = snapshot(pair, rx, napi);
    let start = std::time::Instant::now();
    sender.send(&pair.sender, family, time);
    let sending = start.elapsed().as_secs_f64();
    let after = snapshot(pair, rx, napi);
    let packets = after.rx - before.rx;
    let per_packet = |v: u64| v as f64 / packets.max(1) as f64;
    let (runs, run_ns) = (after.prog.1 - before.prog.1, after.prog.0 - before.prog.0);
    LineRate {
        scope: "",
        table_prefixes: 0,
        set_prefixes: 0,
        engine: "",
        family: "",
        traffic: "",
        round: 0,
        packets,
        mpps: packets as f64 / sending / 1e6,
        rx_busy: (after.cpu_ns - before.cpu_ns) as f64 / 1e9 / sending,
        rx_ns: per_packet(after.cpu_ns - before.cpu_ns),
        prog_ns: rx.engine.is_xdp().then(|| run_ns as f64 / runs.max(1) as f64),
        dropped_share: after.dropped.zip(before.dropped).map(|(a, b)| per_packet(a - b)),
        expected_share: 0.0,
    }
}
