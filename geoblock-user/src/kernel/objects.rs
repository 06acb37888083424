//! The eBPF objects built by build.rs, embedded in the binary.

/// The geoblock XDP program and its maps.
pub static GEOBLOCK: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/geoblock"));
