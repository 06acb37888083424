//! What the kernel says about a loaded program: its run time under
//! BPF_PROG_TEST_RUN, its `bpf_stats`, and the memory of its maps.

use std::{
    net::IpAddr,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, OwnedFd},
};

use aya::{
    maps::{MapFd, MapInfo},
    programs::{TestRun as _, TestRunOptions, Xdp},
};

/// Turns on the kernel's per-program run time and count (`bpf_stats`) for
/// as long as the returned fd is open: BPF_ENABLE_STATS, the same switch as
/// `sysctl kernel.bpf_stats_enabled=1`, reverted by the kernel on close, so
/// also when the bench dies.
pub fn enable_bpf_stats() -> OwnedFd {
    aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .unwrap_or_else(|e| panic!("BPF_ENABLE_STATS (kernel.bpf_stats_enabled): {e}"))
}

/// A program's cumulative (run time ns, run count) from `bpf_stats`.
pub fn run_stats(program: &Xdp) -> (u64, u64) {
    let info = program.info().expect("program info");
    (info.run_time().as_nanos() as u64, info.run_count())
}

/// ns per run of `frame` repeated `repeat` times in one BPF_PROG_TEST_RUN:
/// the same packet, hot in every cache.
pub fn hot_ns(program: &Xdp, frame: &[u8], repeat: u32) -> f64 {
    let opts = TestRunOptions { data_in: Some(frame), repeat, ..TestRunOptions::new() };
    let result = program.test_run(opts).expect("BPF_PROG_TEST_RUN");
    result.duration.as_nanos() as f64
}

/// Mean ns per run with one BPF_PROG_TEST_RUN per frame, each from another
/// source: every lookup walks another path (the kernel's clock reads around
/// a single run are included, for the baseline alike).
pub fn cold_ns(program: &Xdp, frames: &[Vec<u8>]) -> f64 {
    let total: u128 = frames
        .iter()
        .map(|frame| {
            let opts = TestRunOptions { data_in: Some(frame), ..TestRunOptions::new() };
            program.test_run(opts).expect("BPF_PROG_TEST_RUN").duration.as_nanos()
        })
        .sum();
    total as f64 / frames.len() as f64
}

/// Frames from `sources` built by `frame`.
pub fn frames_from(sources: &[IpAddr], frame: impl Fn(IpAddr) -> Vec<u8>) -> Vec<Vec<u8>> {
    sources.iter().map(|&s| frame(s)).collect()
}

/// One map's kernel memory, as `memlock:` in its fdinfo.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MapMemory {
    pub name: String,
    pub bytes: u64,
}

/// The memory of every map `program` uses, and of the maps held in slot 0
/// of its arrays of maps (the tables; named `OUTER[0]`).
pub fn map_memory(program: &Xdp) -> Vec<MapMemory> {
    let ids = program.info().expect("program info").map_ids().expect("map ids").unwrap_or_default();
    let mut maps = Vec::new();
    for id in ids {
        let info = MapInfo::from_id(id).expect("map info");
        let name = info.name_as_str().unwrap_or("?").to_string();
        let fd = info.fd().expect("map fd");
        maps.push(MapMemory { name, bytes: memlock(fd.as_fd().as_raw_fd()) });
    }
    maps
}

fn memlock(fd: i32) -> u64 {
    let path = format!("/proc/self/fdinfo/{fd}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    geoblock::kernel::link::fdinfo_field(&text, "memlock")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no memlock in {path}"))
}

/// The id of what slot 0 of the array `fd` holds: the map of an array of
/// maps, the program of a program array (None when empty).
pub(crate) fn slot_zero(fd: i32) -> Option<u32> {
    const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
    let (key, mut value) = (0u32, 0u32);
    // SAFETY: key and value point at live u32s, the sizes of the array's.
    let rc = unsafe { map_elem(BPF_MAP_LOOKUP_ELEM, fd, (&key as *const u32).cast(), (&mut value as *mut u32).cast()) };
    (rc == 0).then_some(value)
}

/// The maps named `names` that `program` uses, opened by id: held, they
/// outlive the program's replacement.
pub fn maps_named(program: &Xdp, names: &[&str]) -> Vec<MapFd> {
    let ids = program.info().expect("program info").map_ids().expect("map ids").unwrap_or_default();
    ids.into_iter()
        .map(|id| MapInfo::from_id(id).expect("map info"))
        .filter(|info| info.name_as_str().is_some_and(|n| names.contains(&n)))
        .map(|info| info.fd().expect("map fd"))
        .collect()
}

/// Deletes every entry of the map `fd` (keys of at most 20 bytes: an LPM
/// trie's), one syscall each.
pub fn empty_map(fd: BorrowedFd<'_>) {
    const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
    const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
    let fd = fd.as_raw_fd();
    let mut key = [0u8; 20];
    // SAFETY: a null key asks for the first key, written to `key`, which
    // is as long as any LPM trie key.
    while unsafe { map_elem(BPF_MAP_GET_NEXT_KEY, fd, std::ptr::null(), key.as_mut_ptr()) } == 0 {
        // SAFETY: the deletion reads the key just written; no value.
        let rc = unsafe { map_elem(BPF_MAP_DELETE_ELEM, fd, key.as_ptr(), std::ptr::null_mut()) };
        assert!(rc == 0, "deleting a map entry: {}", std::io::Error::last_os_error());
    }
}

/// A BPF_MAP_* element command on map `fd`; `value` is the next key for
/// BPF_MAP_GET_NEXT_KEY.
///
/// # Safety
/// `key` and `value` must be null or point at buffers of the map's key and
/// value sizes, as `cmd` reads or writes them.
unsafe fn map_elem(cmd: libc::c_long, fd: i32, key: *const u8, value: *mut u8) -> libc::c_long {
    #[repr(C)]
    struct ElemAttr {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    let attr = ElemAttr { map_fd: fd as u32, _pad: 0, key: key as u64, value: value as u64, flags: 0 };
    // SAFETY: attr is a valid bpf_attr prefix for the element commands; the
    // caller vouches for key and value.
    unsafe { libc::syscall(libc::SYS_bpf, cmd, &attr as *const ElemAttr, std::mem::size_of::<ElemAttr>()) }
}

/// One BPF_PROG_TEST_RUN of the program `fd` on `frame`, `repeat` times,
/// by fd: for a thread running the program while another one owns its
/// [`Xdp`] handle (and swaps its tables).
pub fn test_run_fd(fd: BorrowedFd<'_>, frame: &[u8], repeat: u32) {
    #[repr(C)]
    #[derive(Default)]
    struct TestAttr {
        prog_fd: u32,
        retval: u32,
        data_size_in: u32,
        data_size_out: u32,
        data_in: u64,
        data_out: u64,
        repeat: u32,
        duration: u32,
        ctx_size_in: u32,
        ctx_size_out: u32,
        ctx_in: u64,
        ctx_out: u64,
        flags: u32,
        cpu: u32,
        batch_size: u32,
        /// Explicit, hence zeroed: the kernel refuses stray bytes past its fields.
        _pad: u32,
    }
    const BPF_PROG_TEST_RUN: libc::c_long = 10;
    let attr = TestAttr {
        prog_fd: fd.as_raw_fd() as u32,
        data_size_in: frame.len() as u32,
        data_in: frame.as_ptr() as u64,
        repeat,
        ..TestAttr::default()
    };
    // SAFETY: the attr points at `frame`, alive for the call; no output buffers.
    let rc = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_PROG_TEST_RUN, &attr as *const TestAttr, std::mem::size_of::<TestAttr>())
    };
    assert!(rc == 0, "BPF_PROG_TEST_RUN: {}", std::io::Error::last_os_error());
}
