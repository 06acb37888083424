//! Address ranges → the exact, minimal set of prefixes per country.
//!
//! CONTRACT (shared with the rest of the crate; bodies are being written):
//! a [`Table`] holds, per family, prefixes sorted by network address and
//! pairwise disjoint, so a longest-prefix match and a plain binary search
//! give the same answer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use geoblock_common::CountryId;
use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};

/// An inclusive address range of one country, as sources give them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range<A> {
    pub start: A,
    pub end: A,
    pub country: CountryId,
}

/// Ranges of both families, as parsed (any order, not yet checked).
#[derive(Clone, Debug, Default)]
pub struct Ranges {
    pub v4: Vec<Range<Ipv4Addr>>,
    pub v6: Vec<Range<Ipv6Addr>>,
}

/// The prefixes to load: sorted, disjoint, fewest for the same answers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    pub v4: Vec<(Ipv4Network, CountryId)>,
    pub v6: Vec<(Ipv6Network, CountryId)>,
}

impl Table {
    /// The prefix containing `ip` and its country, if any.
    pub fn lookup(&self, ip: IpAddr) -> Option<(IpNetwork, CountryId)> {
        todo!("{ip}")
    }
}
