//! The eBPF objects built by build.rs, embedded in the binary.

/// The geoblock XDP program and its maps.
pub static GEOBLOCK: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/geoblock"));

/// A bare XDP_DROP program: the baseline of the benchmarks.
#[cfg(feature = "bench-programs")]
pub static BENCH_DROP: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench-drop"));

/// The benchmark's traffic generator (`bench_sender`) and a bare XDP_PASS
/// (`bench_pass`).
#[cfg(feature = "bench-programs")]
pub static BENCH_SENDER: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench-sender"));
