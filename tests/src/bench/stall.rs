//! How long packets wait while the world table is swapped and the old one
//! released. A thread pinned to one CPU runs the program back to back
//! (BPF_PROG_TEST_RUN, one frame per call, a new random source each call) and stamps the end of every call; another thread
//! swaps the world table in the way the daemon does (`load_table`). The
//! gap between two stamps is how long the next packet waited: a stall
//! anywhere (the program, the syscall, the scheduler) widens it. The
//! kernel's frees of the replaced maps are located with tracepoints
//! ([`FreeTrace`]), since they run later, in a worker, on any CPU. The LPM
//! trie is also measured drained from userspace before it goes
//! ([`Release::Drained`]).

use std::{
    os::fd::{AsFd as _, BorrowedFd},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use geoblock::{data::table::Table, kernel::Geoblock};
use geoblock_common::{maps, Backend};
use serde::Serialize;

use super::{
    kernel,
    linerate::pin_to_cpu,
    tracefs::{monotonic_ns, Free, FreeTrace},
};

/// Runs of the frame per call. One: with more, the kernel re-patches its
/// XDP dispatcher before and after the runs (RCU waits, milliseconds),
/// which would hide any stall of the packet path itself.
const REPEAT: u32 = 1;
/// Calls the packet thread records at most (8 bytes each, preallocated so
/// that growing the vector never shows as a stall).
const MAX_CALLS: usize = 1 << 24;
/// Undisturbed running before the swap: the reference.
const QUIET: Duration = Duration::from_millis(500);
/// The frees of the old maps come after an RCU grace period, which the
/// kernel may batch lazily (CONFIG_RCU_LAZY: up to seconds).
const RELEASE_TIMEOUT: Duration = Duration::from_secs(30);
/// The frees of the old maps stayed the longest for this long: the
/// release is over.
const SETTLE: Duration = Duration::from_millis(300);
/// Freeing a world table's map takes longer than this (a 25 MB array:
/// milliseconds; an LPM trie: far more); the small maps other processes
/// free meanwhile take microseconds.
const MIN_FREE: Duration = Duration::from_micros(500);

/// How the replaced table goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// Let go at the swap: the kernel frees it in a worker.
    Kernel,
    /// Held past the swap (fds taken before it) and emptied from userspace,
    /// one deletion per entry, each a syscall the scheduler can switch at;
    /// then let go, empty. A way around the kernel's long, unbroken free of
    /// an LPM trie.
    Drained,
}

/// The tables measured, with the names they are reported under.
const CASES: [(Backend, Release, &str); 3] = [
    (Backend::Trie, Release::Kernel, "trie"),
    (Backend::Lpm, Release::Kernel, "lpm"),
    (Backend::Lpm, Release::Drained, "lpm-drained"),
];

/// Where the packet thread and the swapping thread run.
#[derive(Clone, Copy, Debug)]
pub struct Placement {
    pub name: &'static str,
    pub packet_cpu: usize,
    pub swap_cpu: usize,
}

pub const PLACEMENTS: [Placement; 3] = [
    Placement { name: "split", packet_cpu: 1, swap_cpu: 0 },
    Placement { name: "same", packet_cpu: 1, swap_cpu: 1 },
    // The free worker's CPU is the scheduler's choice: packets on the
    // other CPU too.
    Placement { name: "flip", packet_cpu: 0, swap_cpu: 1 },
];

/// The waits between consecutive packet calls in one window of time.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Window {
    pub calls: usize,
    pub median_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

/// One swap of the world table under packet load.
#[derive(Clone, Debug, Serialize)]
pub struct Stall {
    pub backend: &'static str,
    pub placement: &'static str,
    pub round: usize,
    pub packet_cpu: usize,
    /// Before the swap.
    pub quiet: Window,
    /// While the new table is built beside the old one and swapped in.
    pub swap: Window,
    /// From the start of the first free of an old map (or of the drain) to
    /// the end of the last (None: no free seen within [`RELEASE_TIMEOUT`]).
    pub release: Option<Window>,
    /// Emptying the old tables from userspace ([`Release::Drained`]).
    pub drain_ms: Option<f64>,
    pub load_ms: f64,
    /// From the swap to the first free (0: before the swap was stamped).
    pub release_delay_ms: Option<f64>,
    /// The longest single free (the largest map), and the CPUs the two
    /// frees started and ended on.
    pub free_ms: Option<f64>,
    pub free_cpus: Vec<(u32, u32)>,
}

/// `rounds` swaps of `world` per backend and placement; the program holds
/// the world table before each, so every swap releases a full one.
pub fn measure(world: &Table, frames: &[Vec<u8>], rounds: usize) -> Vec<Stall> {
    let trace = FreeTrace::start();
    let mut stalls = Vec::new();
    for (backend, release, name) in CASES {
        let mut gb = Geoblock::load(backend).expect("loading geoblock");
        gb.load_table(world).expect("loading the world table");
        for placement in PLACEMENTS {
            for round in 0..rounds {
                eprintln!("bench: live / stall / {name} / {} / round {round}", placement.name);
                let mut stall = swap_under_load(&mut gb, world, frames, (placement, release), &trace);
                (stall.backend, stall.round) = (name, round);
                stalls.push(stall);
            }
        }
    }
    stalls
}

/// One swap of `world` into `gb` while packets run; labels left to the caller.
fn swap_under_load(
    gb: &mut Geoblock,
    world: &Table,
    frames: &[Vec<u8>],
    (at, release): (Placement, Release),
    trace: &FreeTrace,
) -> Stall {
    let program = gb.program().expect("the program").fd().expect("its fd").try_clone().expect("dup");
    let stop = AtomicBool::new(false);
    trace.clear();
    let start = monotonic_ns();
    std::thread::scope(|s| {
        let packets = s.spawn(|| run_packets(program.as_fd(), frames, at.packet_cpu, &stop));
        // A thread of its own, so that pinning it leaves the caller free.
        s.spawn(|| {
            pin_to_cpu(0, at.swap_cpu);
            std::thread::sleep(QUIET);
            let held = (release == Release::Drained).then(|| {
                kernel::maps_named(gb.table_program().expect("the table program"), &[maps::LPM_V4, maps::LPM_V6])
            });
            let fill = monotonic_ns();
            gb.load_table(world).expect("swapping the world table in");
            let swap = monotonic_ns();
            let drain = held.map(drain);
            // Two maps per table (IPv4, IPv6). The IPv4 map's free can
            // start before the IPv6 swap returns, so frees count from `fill`.
            // Emptied maps are freed in microseconds.
            let min = if drain.is_some() { Duration::ZERO } else { MIN_FREE };
            let frees = trace.wait(fill, 2, min, SETTLE, RELEASE_TIMEOUT);
            stop.store(true, Ordering::Relaxed);
            let ends = packets.join().expect("the packet thread");
            summarize(&ends, start, (fill, swap), drain, &frees, at)
        })
        .join()
        .expect("the swapping thread")
    })
}

/// Runs the program on CPU `cpu` until `stop`, cycling through `frames`;
/// returns the end stamp of every call.
fn run_packets(program: BorrowedFd<'_>, frames: &[Vec<u8>], cpu: usize, stop: &AtomicBool) -> Vec<u64> {
    pin_to_cpu(0, cpu);
    let mut ends = Vec::with_capacity(MAX_CALLS);
    for frame in frames.iter().cycle() {
        if stop.load(Ordering::Relaxed) || ends.len() == MAX_CALLS {
            break;
        }
        kernel::test_run_fd(program, frame, REPEAT);
        ends.push(monotonic_ns());
    }
    ends
}

/// Empties the held maps and lets them go; returns when that started and ended.
fn drain(held: Vec<aya::maps::MapFd>) -> (u64, u64) {
    let start = monotonic_ns();
    for map in &held {
        kernel::empty_map(map.as_fd());
    }
    (start, monotonic_ns())
}

fn summarize(
    ends: &[u64],
    start: u64,
    (fill, swap): (u64, u64),
    drain: Option<(u64, u64)>,
    frees: &[Free],
    at: Placement,
) -> Stall {
    let freed = frees.iter().map(|f| f.start).min().zip(frees.iter().map(|f| f.end).max());
    let release = match drain {
        Some((from, to)) => Some((from, freed.map_or(to, |(_, end)| end.max(to)))),
        None => freed,
    };
    let ms = |ns: u64| ns as f64 / 1e6;
    Stall {
        backend: "",
        placement: at.name,
        round: 0,
        packet_cpu: at.packet_cpu,
        quiet: window(ends, start, fill),
        swap: window(ends, fill, swap),
        release: release.map(|(from, to)| window(ends, from, to)),
        drain_ms: drain.map(|(from, to)| ms(to - from)),
        load_ms: ms(swap - fill),
        release_delay_ms: release.map(|(from, _)| ms(from.saturating_sub(swap))),
        free_ms: frees.iter().map(|f| ms(f.end - f.start)).reduce(f64::max),
        free_cpus: frees.iter().map(|f| (f.cpu, f.end_cpu)).collect(),
    }
}

/// The waits between consecutive call ends that overlap [from, to].
fn window(ends: &[u64], from: u64, to: u64) -> Window {
    let mut waits: Vec<u64> = ends.windows(2).filter(|w| w[0] < to && w[1] > from).map(|w| w[1] - w[0]).collect();
    waits.sort_unstable();
    let at = |q: f64| waits.get(((waits.len() as f64 * q) as usize).min(waits.len().saturating_sub(1))).copied();
    let us = |v: Option<u64>| v.map_or(f64::NAN, |ns| ns as f64 / 1e3);
    Window { calls: waits.len(), median_us: us(at(0.5)), p999_us: us(at(0.999)), max_us: us(waits.last().copied()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_counts_in_every_window_it_overlaps() {
        let ends = [0, 10, 20, 1020, 1030];
        let w = window(&ends, 500, 600);
        assert_eq!((w.calls, w.max_us), (1, 1.0));
        let all = window(&ends, 0, 2000);
        assert_eq!((all.calls, all.median_us, all.max_us), (4, 0.01, 1.0));
    }
}
