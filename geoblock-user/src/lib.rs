//! geoblock: drop traffic by country in XDP, at line rate.
//!
//! Data flows one way: a GeoIP source ([`source`]; range CSV alone: [`parse`]) → ranges → the exact
//! minimal prefix set per country ([`prefix`]) → kernel tables ([`program`])
//! → a verdict per packet → counters ([`stats`]).

pub mod bpffs;
mod calendar;
pub mod config;
pub mod control;
pub mod country;
pub mod daemon;
pub mod events;
pub mod dataset;
pub mod explain;
pub mod guard;
pub mod metrics;
pub mod notify;
mod error;
pub mod parse;
pub mod pcap;
pub mod policy;
pub mod prefix;
pub mod program;
pub mod programs;
pub mod source;
pub mod stats;
pub mod trie;

pub use error::{errno, Error};
