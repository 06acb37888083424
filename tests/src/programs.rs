//! The benchmark's eBPF objects (bench-ebpf), built by build.rs; the XDP
//! program under test is geoblock's own, `geoblock::programs::GEOBLOCK`.

/// A bare XDP_DROP program (`bench_drop`): the baseline of the benchmarks.
pub static BENCH_DROP: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench-drop"));

/// The benchmark's traffic generator (`bench_sender`), a baseline that
/// reads the source and drops (`bench_parse`) and a bare XDP_PASS
/// (`bench_pass`).
pub static BENCH_SENDER: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench-sender"));
