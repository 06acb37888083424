//! Helpers for geoblock's privileged tests, demo and benchmark: frames,
//! network namespaces, traffic between them, and the real `geoblock` binary.

pub mod bench;
pub mod frames;
pub mod geoblock;
pub mod http;
pub mod netns;
pub mod objects;
pub mod programs;
pub mod registry;
pub mod sources;
pub mod traffic;
pub mod user;
