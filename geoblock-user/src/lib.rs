//! geoblock: drop traffic by country in XDP, at line rate.
//!
//! Data flows one way, and so do the imports, top to bottom:
//!
//! | layer | what it does |
//! | --- | --- |
//! | [`daemon`] | the run loop: config, control socket server, metrics, reloads |
//! | [`protocol`] | the control socket's requests and answers, and every JSON schema |
//! | [`kernel`] | the only user of aya: load, attach, pin (and check the links), tables, counters, events ring |
//! | [`policy`] | who is dropped and why: the rules, their reasons and the kernel's rule maps, the lock-out guard, explain |
//! | [`data`] | data sources → ranges → the exact minimal prefix [`data::table::Table`] |
//! | [`country`] | ISO 3166-1 codes, over `geoblock_common` (shared with the XDP program) |
//! | [`trust`] | directories no other user can change: for the state and the downloads |
//!
//! The `geoblock` binary (`src/cli`) sits on top: it parses arguments,
//! calls one of these, and prints.

mod calendar;
pub mod country;
pub mod daemon;
pub mod data;
mod error;
pub mod kernel;
pub mod policy;
pub mod protocol;
pub mod trust;

pub use error::{errno, Error};
