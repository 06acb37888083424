//! Live operations: how long until a reloaded world table is in force
//! (in-process `load_table`, broken down, and end to end through the
//! daemon's `geoblock reload`), how long a policy change takes (in-process
//! and `geoblock block`/`unblock`), and how long packets wait while tables
//! are swapped and released ([`super::stall`]).

use std::time::Instant;

use geoblock::{
    data::table::Table,
    kernel::{trie::Trie, Geoblock},
    policy::Policy,
};
use geoblock_common::{country_id, Backend};
use serde::Serialize;

use super::{
    engines::{deny, timed},
    report::median,
    stall::{self, Stall, Window},
    workload::{self, Family, Scope},
};
use crate::{
    geoblock::{run_args, Daemon},
    netns::Pair,
};

const BACKENDS: [Backend; 2] = [Backend::Trie, Backend::Lpm];
/// Policy changes timed per way (in-process and through the daemon):
/// they are short, so many.
const POLICY_CHANGES: usize = 20;
/// The country the policy changes block and unblock: one no operator
/// reaches the machine from (the lock-out guard would refuse it).
const TOGGLED: &str = "AQ";
/// Random-source frames the packet thread cycles through, per family.
const STALL_FRAMES: usize = 4096;

#[derive(Debug, Default, Serialize)]
pub struct Live {
    pub loads: Vec<TableLoad>,
    /// In-process `apply_policy`, µs per change.
    pub apply_policy_us: Vec<f64>,
    pub commands: Vec<CommandTime>,
    pub stalls: Vec<Stall>,
}

/// One in-process `load_table` of the world table over a full one.
#[derive(Clone, Debug, Serialize)]
pub struct TableLoad {
    pub backend: &'static str,
    pub round: usize,
    /// The userspace trie build (trie backend); the rest of `total_ms` is
    /// filling the new inner maps and the two swaps.
    pub compile_ms: Option<f64>,
    pub total_ms: f64,
}

/// One control command against a running daemon.
#[derive(Clone, Debug, Serialize)]
pub struct CommandTime {
    pub backend: &'static str,
    pub command: &'static str,
    /// Wall time of `geoblock COMMAND`, process start to exit: the reply
    /// comes once the change is in the kernel.
    pub wall_ms: f64,
    /// The duration the daemon logs for a reload (reading the data
    /// included).
    pub daemon_ms: Option<f64>,
}

/// Everything above, for the world table.
pub fn measure(world: &Table, rounds: usize) -> Live {
    let mut live = Live::default();
    for backend in BACKENDS {
        eprintln!("bench: live / load_table / {}", backend_name(backend));
        live.loads.extend(table_loads(world, backend, rounds));
    }
    live.apply_policy_us = policy_changes();
    live.commands = daemon_commands(rounds);
    live.stalls = stall::measure(world, &stall_frames(world), rounds);
    live
}

fn table_loads(world: &Table, backend: Backend, rounds: usize) -> Vec<TableLoad> {
    let mut gb = Geoblock::load(backend).expect("loading geoblock");
    // A full table in place first: every timed load replaces one, as a reload does.
    gb.load_table(world).expect("loading the world table");
    (0..rounds)
        .map(|round| TableLoad {
            backend: backend_name(backend),
            round,
            compile_ms: (backend == Backend::Trie)
                .then(|| timed(|| (Trie::v4(world).expect("IPv4 trie"), Trie::v6(world).expect("IPv6 trie")))),
            total_ms: timed(|| gb.load_table(world).expect("loading the world table")),
        })
        .collect()
}

/// The bench's deny-list with and without [`TOGGLED`].
fn policies() -> [Policy; 2] {
    let few = Scope::World.blocked();
    let mut more = few.clone();
    more.insert(country_id(TOGGLED.as_bytes().try_into().unwrap()).expect("a country code"));
    [deny(&few), deny(&more)]
}

/// In-process `apply_policy`, alternating the two [`policies`], in µs.
fn policy_changes() -> Vec<f64> {
    let mut gb = Geoblock::load(Backend::Trie).expect("loading geoblock");
    policies()
        .iter()
        .cycle()
        .take(POLICY_CHANGES)
        .map(|policy| timed(|| gb.apply_policy(policy).expect("applying the policy")) * 1e3)
        .collect()
}

/// `geoblock reload`, `block`, `unblock` and `status` (the floor: a CLI
/// process and a socket round trip) against `geoblock run` with the
/// embedded world data, in a namespace of its own, per backend.
fn daemon_commands(rounds: usize) -> Vec<CommandTime> {
    let pair = Pair::create();
    let mut times = Vec::new();
    for backend in BACKENDS {
        let name = backend_name(backend);
        eprintln!("bench: live / geoblock run --lookup {name}");
        let daemon = Daemon::start(&pair.receiver, &run_args(&pair, &["--block", "CN,RU,IR,KP", "--lookup", name]));
        for _ in 0..rounds {
            let wall_ms = command(&daemon, &["reload"]);
            let line = daemon.wait_line("reloaded:", crate::geoblock::READY_TIMEOUT);
            times.push(CommandTime { backend: name, command: "reload", wall_ms, daemon_ms: logged_ms(&line) });
        }
        for _ in 0..POLICY_CHANGES / 2 {
            for (label, args) in [("block", ["block", TOGGLED]), ("unblock", ["unblock", TOGGLED])] {
                times.push(CommandTime {
                    backend: name,
                    command: label,
                    wall_ms: command(&daemon, &args),
                    daemon_ms: None,
                });
            }
            times.push(CommandTime {
                backend: name,
                command: "status",
                wall_ms: command(&daemon, &["status"]),
                daemon_ms: None,
            });
        }
    }
    times
}

/// Runs a control command, which must succeed; its wall time in ms. Not
/// through [`Daemon::control`]: its wait for the exit polls every 20 ms.
fn command(daemon: &Daemon, args: &[&str]) -> f64 {
    let mut cmd = std::process::Command::new(crate::geoblock::binary());
    cmd.args(args).arg("--control-socket").arg(&daemon.control_socket);
    let start = Instant::now();
    let out = cmd.output().unwrap_or_else(|e| panic!("geoblock {args:?}: {e}"));
    let ms = start.elapsed().as_secs_f64() * 1e3;
    assert!(out.status.success(), "geoblock {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    ms
}

/// "... in 412 ms" of the daemon's `reloaded:` line.
fn logged_ms(line: &str) -> Option<f64> {
    line.rsplit_once(" in ")?.1.strip_suffix(" ms")?.trim().parse().ok()
}

/// Sources anywhere in the world, IPv4 and IPv6 alternating.
fn stall_frames(world: &Table) -> Vec<Vec<u8>> {
    let [v4, v6] = Family::ALL.map(|f| workload::anywhere(world, f, STALL_FRAMES));
    let sources: Vec<_> = v4.into_iter().zip(v6).flat_map(|(a, b)| [a, b]).collect();
    super::kernel::frames_from(&sources, super::frame)
}

fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Trie => "trie",
        Backend::Lpm => "lpm",
    }
}

/// "median (max)".
fn median_max(v: &[f64]) -> String {
    format!("{:.1} ({:.1})", median(v.to_vec()), v.iter().copied().fold(f64::NAN, f64::max))
}

impl Live {
    pub fn print(&self) {
        println!("\n== Live: world table reload until in force, ms, median (max) over rounds ==");
        println!(
            "{:<8} {:>22} {:>18} {:>22} {:>20}",
            "backend", "load_table in-process", "of which compile", "`geoblock reload` wall", "daemon's own count"
        );
        for backend in BACKENDS.map(backend_name) {
            let loads: Vec<&TableLoad> = self.loads.iter().filter(|l| l.backend == backend).collect();
            let compile: Vec<f64> = loads.iter().filter_map(|l| l.compile_ms).collect();
            let reloads = self.command_times(backend, "reload");
            let logged: Vec<f64> = reloads.iter().filter_map(|c| c.daemon_ms).collect();
            let wall: Vec<f64> = reloads.iter().map(|c| c.wall_ms).collect();
            let compile = if compile.is_empty() { "-".into() } else { median_max(&compile) };
            let total: Vec<f64> = loads.iter().map(|l| l.total_ms).collect();
            println!(
                "{backend:<8} {:>22} {compile:>18} {:>22} {:>20}",
                median_max(&total),
                median_max(&wall),
                median_max(&logged)
            );
        }
        println!("\n== Live: policy change, median (max) ==");
        println!("apply_policy in-process: {} us", median_max(&self.apply_policy_us));
        for backend in BACKENDS.map(backend_name) {
            for command in ["block", "unblock", "status"] {
                let wall: Vec<f64> = self.command_times(backend, command).iter().map(|c| c.wall_ms).collect();
                println!(
                    "{backend:<5} `geoblock {command} {}`: {} ms",
                    if command == "status" { "" } else { TOGGLED },
                    median_max(&wall)
                );
            }
        }
        self.print_stalls();
    }

    fn command_times(&self, backend: &str, command: &str) -> Vec<&CommandTime> {
        self.commands.iter().filter(|c| c.backend == backend && c.command == command).collect()
    }

    fn print_stalls(&self) {
        println!("\n== Live: packet waits (gap between BPF_PROG_TEST_RUN calls of one frame), us: p99.9 / max ==");
        println!(
            "{:<11} {:<6} {:>5} {:>16} {:>16} {:>16} {:>9} {:>9} {:>9} {:>9} {:>6}",
            "tables",
            "cpus",
            "round",
            "quiet",
            "build+swap",
            "release",
            "load ms",
            "drain ms",
            "delay ms",
            "free ms",
            "free@"
        );
        let cell = |w: Option<&Window>| w.map_or("-".into(), |w| format!("{:.0} / {:.0}", w.p999_us, w.max_us));
        let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
        for s in &self.stalls {
            let cpus: Vec<String> = s
                .free_cpus
                .iter()
                .map(|(from, to)| if from == to { from.to_string() } else { format!("{from}>{to}") })
                .collect();
            println!(
                "{:<11} {:<6} {:>5} {:>16} {:>16} {:>16} {:>9.0} {:>9} {:>9} {:>9} {:>6}",
                s.backend,
                s.placement,
                s.round,
                cell(Some(&s.quiet)),
                cell(Some(&s.swap)),
                cell(s.release.as_ref()),
                s.load_ms,
                ms(s.drain_ms),
                ms(s.release_delay_ms),
                ms(s.free_ms),
                cpus.join(",")
            );
        }
        println!("(cpus: split = packets on CPU 1, swapping on CPU 0; same = both on CPU 1; flip = packets on CPU 0, swapping on CPU 1. free@: CPUs the two frees ran on (start>end if moved), the longest first)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemons_reload_duration_is_read() {
        assert_eq!(
            logged_ms("INFO reloaded: generation 2, 593597 IPv4 and 773898 IPv6 prefixes in 412 ms"),
            Some(412.0)
        );
        assert_eq!(logged_ms("INFO reloaded: nothing"), None);
    }
}
