//! The kernel side, and the only code that uses aya: the XDP program loaded,
//! attached and pinned ([`program`], [`state`]), its links checked
//! ([`link`]), its tables ([`trie`]), its counters ([`counters`]) and its
//! drop events ring ([`events`]).

pub mod counters;
pub mod events;
pub mod flows;
pub mod link;
pub mod objects;
pub mod program;
pub mod rules;
pub mod selectors;
pub mod sockets;
pub mod state;
pub mod trie;

pub use program::{Geoblock, KernelLog, NewLink, PinnedMaps, XdpMode};
