//! When the kernel frees BPF maps: the workqueue tracepoints of
//! `bpf_map_free_deferred`, the work that releases a map whose last
//! reference went (for an inner map replaced in an array of maps, after an
//! RCU grace period). Recorded in a tracefs instance of our own, removed
//! on drop, so nobody else's tracing is touched.

use std::{
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

const TRACEFS: &str = "/sys/kernel/tracing";
const TRACEFS_MAGIC: i64 = 0x7472_6163;
const EVENTS: [&str; 2] = ["workqueue_execute_start", "workqueue_execute_end"];
const WORK: &str = "bpf_map_free_deferred";

/// One map's release: the kernel worker's run, in CLOCK_MONOTONIC ns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Free {
    /// Where the worker started and ended (it may be moved meanwhile).
    pub cpu: u32,
    pub end_cpu: u32,
    pub start: u64,
    pub end: u64,
}

pub struct FreeTrace {
    dir: PathBuf,
    /// We mounted tracefs (it was not): unmounted again on drop.
    mounted: bool,
}

impl FreeTrace {
    /// Mounts tracefs if needed and starts recording map frees with the
    /// `mono` clock (CLOCK_MONOTONIC, comparable with [`monotonic_ns`]).
    pub fn start() -> FreeTrace {
        let mounted = !geoblock::kernel::state::has_fs_magic(Path::new(TRACEFS), TRACEFS_MAGIC);
        if mounted {
            mount_tracefs();
        }
        let dir = Path::new(TRACEFS).join(format!("instances/geoblock-bench-{}", std::process::id()));
        let trace = FreeTrace { dir, mounted };
        fs::create_dir(&trace.dir).unwrap_or_else(|e| panic!("{}: {e}", trace.dir.display()));
        trace.write("trace_clock", "mono");
        for event in EVENTS {
            trace.write(&format!("events/workqueue/{event}/filter"), &format!("function.function == {WORK}"));
            trace.write(&format!("events/workqueue/{event}/enable"), "1");
        }
        trace
    }

    fn write(&self, file: &str, value: &str) {
        let path = self.dir.join(file);
        fs::write(&path, value).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    /// Forgets what was recorded so far.
    pub fn clear(&self) {
        self.write("trace", "");
    }

    /// The frees recorded so far, complete ones only.
    pub fn frees(&self) -> Vec<Free> {
        let path = self.dir.join("trace");
        parse(&fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
    }

    /// Waits for the `count` longest frees that started after `after`, each
    /// at least `min` long, to be over: they are taken as the ones looked
    /// for (other processes free their small maps at any time). Returns
    /// them once they stay the longest for `settle`, or what there is after
    /// `timeout`.
    pub fn wait(&self, after: u64, count: usize, min: Duration, settle: Duration, timeout: Duration) -> Vec<Free> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            std::thread::sleep(settle);
            let mut now: Vec<Free> = self.frees().into_iter().filter(|f| f.start > after).collect();
            now.sort_by_key(|f| std::cmp::Reverse(f.end - f.start));
            now.truncate(count);
            let long = now.len() == count && now.iter().all(|f| f.end - f.start >= min.as_nanos() as u64);
            if (long && now == seen) || Instant::now() > deadline {
                return now;
            }
            seen = now;
        }
    }
}

impl Drop for FreeTrace {
    fn drop(&mut self) {
        for event in EVENTS {
            let _ = fs::write(self.dir.join(format!("events/workqueue/{event}/enable")), "0");
        }
        let _ = fs::remove_dir(&self.dir);
        if self.mounted {
            // SAFETY: a NUL-terminated path.
            unsafe { libc::umount2(c"/sys/kernel/tracing".as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// CLOCK_MONOTONIC in ns (the tracepoints' `mono` clock).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn mount_tracefs() {
    // SAFETY: valid NUL-terminated strings, null data.
    let rc = unsafe {
        libc::mount(c"nodev".as_ptr(), c"/sys/kernel/tracing".as_ptr(), c"tracefs".as_ptr(), 0, std::ptr::null())
    };
    assert!(rc == 0, "mounting tracefs at {TRACEFS}: {}", std::io::Error::last_os_error());
}

/// Pairs the start and end lines of each work run (same task, same work):
/// `  kworker/u8:0-20676   [001] ..... 13647.513246: workqueue_execute_start: work struct 00000000dfe53f4e: function bpf_map_free_deferred`
fn parse(text: &str) -> Vec<Free> {
    let mut open: Vec<(&str, &str, u32, u64)> = Vec::new();
    let mut frees = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && l.ends_with(WORK)) {
        let Some((head, tail)) = line.split_once(": workqueue_execute_") else { continue };
        let Some((task, rest)) = head.trim_start().split_once(" [") else { continue };
        let Some((cpu, rest)) = rest.split_once(']') else { continue };
        let (Ok(cpu), Some(ns)) = (cpu.parse::<u32>(), rest.split_whitespace().last().and_then(seconds_to_ns)) else {
            continue;
        };
        let work = tail.split_whitespace().nth(3).unwrap_or("");
        if tail.starts_with("start") {
            open.push((task.trim(), work, cpu, ns));
        } else if let Some(i) = open.iter().position(|o| (o.0, o.1) == (task.trim(), work)) {
            let (_, _, start_cpu, start) = open.swap_remove(i);
            frees.push(Free { cpu: start_cpu, end_cpu: cpu, start, end: ns });
        }
    }
    frees
}

/// "13647.513246" (seconds, µs) in ns.
fn seconds_to_ns(text: &str) -> Option<u64> {
    let (s, frac) = text.split_once('.')?;
    let micros = format!("{frac:0<6}");
    Some(s.parse::<u64>().ok()? * 1_000_000_000 + micros.get(..6)?.parse::<u64>().ok()? * 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_and_end_lines_pair_up() {
        let text = "# tracer: nop\n\
            \x20   kworker/u8:0-20676   [001] ..... 13647.513246: workqueue_execute_start: work struct 00000000dfe53f4e: function bpf_map_free_deferred\n\
            \x20   kworker/u8:2-20680   [000] ..... 13647.600000: workqueue_execute_start: work struct 00000000aaaaaaaa: function bpf_map_free_deferred\n\
            \x20   kworker/u8:0-20676   [000] ..... 13647.513275: workqueue_execute_end: work struct 00000000dfe53f4e: function bpf_map_free_deferred\n";
        assert_eq!(parse(text), vec![Free { cpu: 1, end_cpu: 0, start: 13_647_513_246_000, end: 13_647_513_275_000 }]);
    }
}
