//! Helpers for geoblock's privileged tests, demo and benchmark: frames,
//! network namespaces, and the real `geoblock` binary.

pub mod frames;
