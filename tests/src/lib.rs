//! Helpers for geoblock's privileged tests, demo and benchmark: frames,
//! network namespaces, traffic between them, the real `geoblock` binary,
//! real unprivileged users, and hostile data sources.

pub mod bench;
pub mod cgroup;
pub mod exchange;
pub mod frames;
pub mod geoblock;
pub mod hostile;
pub mod http;
pub mod maxmind;
pub mod netns;
pub mod objects;
pub mod programs;
pub mod registry;
pub mod selectors;
pub mod sources;
pub mod traffic;
pub mod user;
