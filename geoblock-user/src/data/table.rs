//! Address ranges → the exact, minimal set of prefixes per country.
//!
//! A [`Table`] holds, per family, prefixes sorted by network address and
//! pairwise disjoint, so a longest-prefix match and a plain binary search
//! give the same answer. [`Table::from_ranges`] builds it: ranges of one
//! country that touch are merged, then each merged range is cut into the
//! fewest aligned CIDR blocks. Since every prefix of an equivalent disjoint
//! table must lie inside one merged range, that count is the minimum.
//!
//! All arithmetic is on `u128` (IPv4 addresses widened), so the whole address
//! space of either family is an ordinary range with no overflow.

use std::{
    collections::BTreeMap,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use geoblock_common::CountryId;
use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};

use crate::country;

/// An inclusive address range of one country, as sources give them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range<A> {
    pub start: A,
    pub end: A,
    pub country: CountryId,
}

impl<A: fmt::Display> fmt::Display for Range<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{} {}", self.start, self.end, country::code(self.country))
    }
}

/// Ranges of both families, as parsed (any order, not yet checked).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ranges {
    pub v4: Vec<Range<Ipv4Addr>>,
    pub v6: Vec<Range<Ipv6Addr>>,
}

/// Prefixes of one family a table may hold. No kernel table of geoblock
/// takes more (the LPM tries hold 1M IPv4 and 2M IPv6 prefixes, the trie
/// runs out of nodes at about 1.2 times the world's 0.6M and 0.8M), so more
/// is broken or hostile data: a few rows can describe millions of prefixes,
/// and building them would only cost memory and time.
pub const MAX_PREFIXES: usize = 1 << 21;

/// Why ranges do not make a table. The ranges are the source's own rows, so a
/// parser can find and name their lines.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TableError {
    #[error("range {0} ends before it starts")]
    Reversed(Range<IpAddr>),
    #[error("ranges {0} and {1} overlap but have different countries")]
    Overlap(Range<IpAddr>, Range<IpAddr>),
    #[error(
        "more than {MAX_PREFIXES} {0} prefixes, more than geoblock loads (the world has about 0.6M IPv4 and 0.8M IPv6)"
    )]
    TooMany(&'static str),
}

/// What a table maps addresses to: a country, an autonomous system, a
/// selector class. `NONE` (0 for all of them) is "nothing": rows of it
/// are not loaded, and a table without an answer gives none.
pub trait Label: Copy + Eq + fmt::Debug {
    const NONE: Self;
}

/// Countries and selector classes.
impl Label for u16 {
    const NONE: u16 = 0;
}

/// Autonomous system numbers (AS0 is reserved: "not routed").
impl Label for u32 {
    const NONE: u32 = 0;
}

/// A row a table is built from: its range and label, and whatever its
/// maker keeps beside it (a parser: where the row is, to name it in an error).
pub(crate) trait AsRange<A>: Copy {
    type Label: Label;
    fn start(&self) -> A;
    fn end(&self) -> A;
    fn label(&self) -> Self::Label;
}

impl<A: Copy> AsRange<A> for Range<A> {
    type Label = CountryId;
    fn start(&self) -> A {
        self.start
    }
    fn end(&self) -> A {
        self.end
    }
    fn label(&self) -> CountryId {
        self.country
    }
}

/// A row of a table made from something other than a source's rows.
impl<A: Copy, L: Label> AsRange<A> for (A, A, L) {
    type Label = L;
    fn start(&self) -> A {
        self.0
    }
    fn end(&self) -> A {
        self.1
    }
    fn label(&self) -> L {
        self.2
    }
}

/// Why rows make no table, with the rows at fault.
#[derive(Debug)]
pub(crate) enum Fault<R> {
    Reversed(R),
    Overlap(R, R),
    TooMany(&'static str),
}

impl<A: Address> Fault<Range<A>> {
    fn of_ranges(self) -> TableError {
        self.error(|r| widen(&r))
    }
}

impl<R> Fault<R> {
    /// The fault as the error it is, its rows as `show` names them.
    pub(crate) fn error(self, mut show: impl FnMut(R) -> Range<IpAddr>) -> TableError {
        match self {
            Fault::Reversed(r) => TableError::Reversed(show(r)),
            Fault::Overlap(a, b) => TableError::Overlap(show(a), show(b)),
            Fault::TooMany(family) => TableError::TooMany(family),
        }
    }
}

/// The prefixes to load: sorted, disjoint, fewest for the same answers.
/// Of countries unless said otherwise (the AS data is a `Table<Asn>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table<L = CountryId> {
    pub v4: Vec<(Ipv4Network, L)>,
    pub v6: Vec<(Ipv6Network, L)>,
}

impl<L> Default for Table<L> {
    fn default() -> Self {
        Table { v4: vec![], v6: vec![] }
    }
}

/// One value per address family: prefix or range counts, covered
/// addresses, prefix-length histograms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PerFamily<T> {
    pub v4: T,
    pub v6: T,
}

impl Table {
    /// The exact, minimal table for `ranges`. Rows of [`NO_COUNTRY`] are not
    /// loaded; overlapping or adjacent rows of one country are merged.
    pub fn from_ranges(ranges: Ranges) -> Result<Table, TableError> {
        Ok(Table {
            v4: prefixes(ranges.v4).map_err(Fault::of_ranges)?,
            v6: prefixes(ranges.v6).map_err(Fault::of_ranges)?,
        })
    }

    /// The maximal ranges this table answers for: the inverse of [`Table::from_ranges`].
    pub fn ranges(&self) -> Ranges {
        Ranges { v4: ranges(&self.v4), v6: ranges(&self.v6) }
    }
}

impl<L: Label> Table<L> {
    /// This table with `top` laid over it: `top`'s label wherever `top`
    /// has one, this table's elsewhere. How later sources win ([`crate::data`]).
    /// Refused only if that takes more than [`MAX_PREFIXES`] (a small range
    /// laid over a large one cuts it into up to 254 prefixes).
    pub fn overlay(&self, top: &Table<L>) -> Result<Table<L>, TableError> {
        Ok(Table {
            v4: overlay_prefixes::<Ipv4Addr, L>(&self.v4, &top.v4)?,
            v6: overlay_prefixes::<Ipv6Addr, L>(&self.v6, &top.v6)?,
        })
    }

    /// The prefix containing `ip` and its label, if any.
    pub fn lookup(&self, ip: IpAddr) -> Option<(IpNetwork, L)> {
        match ip {
            IpAddr::V4(a) => find(&self.v4, a).map(|(n, c)| (n.into(), c)),
            IpAddr::V6(a) => find(&self.v6, a).map(|(n, c)| (n.into(), c)),
        }
    }

    pub fn counts(&self) -> PerFamily<usize> {
        PerFamily { v4: self.v4.len(), v6: self.v6.len() }
    }
}

impl Table {
    /// Prefixes per country (countries without any are absent).
    pub fn counts_by_country(&self) -> BTreeMap<CountryId, PerFamily<usize>> {
        let mut by_country = BTreeMap::<CountryId, PerFamily<usize>>::new();
        for &(_, c) in &self.v4 {
            by_country.entry(c).or_default().v4 += 1;
        }
        for &(_, c) in &self.v6 {
            by_country.entry(c).or_default().v6 += 1;
        }
        by_country
    }
}

/// What range arithmetic needs of an address family.
pub(crate) trait Address: Copy + Ord + Into<IpAddr> {
    type Net: Copy;
    const BITS: u32;
    /// For errors: `IPv4`, `IPv6`.
    const FAMILY: &'static str;
    fn to_int(self) -> u128;
    /// `bits` must fit the family (callers only pass values they got from it).
    fn from_int(bits: u128) -> Self;
    /// `start` is aligned to `prefix` by the caller.
    fn net(start: u128, prefix: u32) -> Self::Net;
    /// First and last address of a prefix.
    fn span(net: Self::Net) -> (u128, u128);
}

impl Address for Ipv4Addr {
    type Net = Ipv4Network;
    const BITS: u32 = 32;
    const FAMILY: &'static str = "IPv4";
    fn to_int(self) -> u128 {
        u32::from(self).into()
    }
    fn from_int(bits: u128) -> Self {
        Ipv4Addr::from(bits as u32)
    }
    fn net(start: u128, prefix: u32) -> Ipv4Network {
        Ipv4Network::new(Self::from_int(start), prefix as u8).expect("prefix <= 32 by construction")
    }
    fn span(net: Ipv4Network) -> (u128, u128) {
        let start = net.network().to_int();
        (start, start + low_mask(Self::BITS - u32::from(net.prefix())))
    }
}

impl Address for Ipv6Addr {
    type Net = Ipv6Network;
    const BITS: u32 = 128;
    const FAMILY: &'static str = "IPv6";
    fn to_int(self) -> u128 {
        self.into()
    }
    fn from_int(bits: u128) -> Self {
        bits.into()
    }
    fn net(start: u128, prefix: u32) -> Ipv6Network {
        Ipv6Network::new(start.into(), prefix as u8).expect("prefix <= 128 by construction")
    }
    fn span(net: Ipv6Network) -> (u128, u128) {
        let start = net.network().to_int();
        (start, start + low_mask(Self::BITS - u32::from(net.prefix())))
    }
}

/// The `k` low bits set (`k` ≤ 128).
fn low_mask(k: u32) -> u128 {
    u128::MAX.checked_shr(128 - k).unwrap_or(0)
}

/// One family's prefixes, sorted and disjoint, with their labels.
pub(crate) type Prefixes<A, L> = Vec<(<A as Address>::Net, L)>;

/// A merged range as integers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Run<L> {
    start: u128,
    end: u128,
    label: L,
}

impl<A: Address, L: Label> AsRange<A> for Run<L> {
    type Label = L;
    fn start(&self) -> A {
        A::from_int(self.start)
    }
    fn end(&self) -> A {
        A::from_int(self.end)
    }
    fn label(&self) -> L {
        self.label
    }
}

/// The table of one family's rows: sorted in place, merged into maximal
/// runs of one label, each run cut into prefixes as soon as it is
/// complete; so nothing but the rows and the prefixes is held.
pub(crate) fn prefixes<A: Address, R: AsRange<A>>(mut rows: Vec<R>) -> Result<Prefixes<A, R::Label>, Fault<R>> {
    rows.retain(|r| r.label() != R::Label::NONE);
    if let Some(r) = rows.iter().find(|r| r.start() > r.end()) {
        return Err(Fault::Reversed(*r));
    }
    rows.sort_unstable_by_key(|r| (r.start(), r.end()));
    let mut out = Vec::new();
    let mut run: Option<Run<R::Label>> = None;
    // The row reaching furthest so far. Every earlier row that overlaps the
    // next one also overlaps this one, so checking it alone finds conflicts.
    let mut reach: Option<R> = None;
    for &row in &rows {
        if let Some(prev) = reach.filter(|p| row.start() <= p.end()) {
            if prev.label() != row.label() {
                return Err(Fault::Overlap(prev, row));
            }
        }
        if reach.is_none_or(|p| row.end() > p.end()) {
            reach = Some(row);
        }
        let (start, end, label) = (row.start().to_int(), row.end().to_int(), row.label());
        match run.as_mut() {
            Some(last) if last.label == label && start <= last.end.saturating_add(1) => {
                last.end = last.end.max(end);
            }
            _ => {
                if let Some(done) = run.replace(Run { start, end, label }) {
                    split::<A, _, R>(done, &mut out)?;
                }
            }
        }
    }
    if let Some(done) = run {
        split::<A, _, R>(done, &mut out)?;
    }
    Ok(out)
}

/// Sorted disjoint prefixes → maximal ranges of one country.
fn ranges<A: Address>(prefixes: &[(A::Net, CountryId)]) -> Vec<Range<A>> {
    let range = |r: Run<CountryId>| Range { start: A::from_int(r.start), end: A::from_int(r.end), country: r.label };
    runs::<A, _>(prefixes).into_iter().map(range).collect()
}

fn widen<A: Address>(r: &Range<A>) -> Range<IpAddr> {
    Range { start: r.start.into(), end: r.end.into(), country: r.country }
}

/// Cuts a run into the fewest aligned blocks: from the left, always the
/// largest block that is aligned at the cursor and does not pass the end.
fn split<A: Address, L: Copy, R>(run: Run<L>, out: &mut Vec<(A::Net, L)>) -> Result<(), Fault<R>> {
    let mut start = run.start;
    loop {
        if out.len() == MAX_PREFIXES {
            return Err(Fault::TooMany(A::FAMILY));
        }
        let align = start.trailing_zeros().min(A::BITS);
        let span = run.end - start;
        // floor(log2(span + 1)), without overflowing on the whole v6 space.
        let fits = span.checked_add(1).map_or(128, |n| 127 - n.leading_zeros());
        let k = align.min(fits);
        out.push((A::net(start, A::BITS - k), run.label));
        let last = start + low_mask(k);
        if last >= run.end {
            return Ok(());
        }
        start = last + 1;
    }
}

/// Sorted disjoint prefixes → maximal runs, merging touching ones of one label.
fn runs<A: Address, L: Label>(prefixes: &[(A::Net, L)]) -> Vec<Run<L>> {
    let mut out: Vec<Run<L>> = Vec::with_capacity(prefixes.len());
    for &(net, label) in prefixes {
        let (start, end) = A::span(net);
        match out.last_mut() {
            Some(last) if last.label == label && last.end.checked_add(1) == Some(start) => last.end = end,
            _ => out.push(Run { start, end, label }),
        }
    }
    out
}

fn overlay_prefixes<A: Address, L: Label>(
    base: &[(A::Net, L)],
    top: &[(A::Net, L)],
) -> Result<Vec<(A::Net, L)>, TableError> {
    // The common case, an IPv4 source and an IPv6 one, needs no work.
    match (base.is_empty(), top.is_empty()) {
        (_, true) => Ok(base.to_vec()),
        (true, false) => Ok(top.to_vec()),
        (false, false) => {
            prefixes::<A, _>(overlay(&runs::<A, L>(base), &runs::<A, L>(top))).map_err(|fault| match fault {
                Fault::TooMany(family) => TableError::TooMany(family),
                // Runs cut from sorted, disjoint prefixes are neither.
                Fault::Reversed(_) | Fault::Overlap(..) => unreachable!("overlaid runs are sorted and disjoint"),
            })
        }
    }
}

/// `top` and the parts of `base` it does not cover; both sorted and disjoint.
fn overlay<L: Copy>(base: &[Run<L>], top: &[Run<L>]) -> Vec<Run<L>> {
    let mut out = top.to_vec();
    let mut first = 0; // the first top range that may reach the current base range
    for b in base {
        let mut start = Some(b.start);
        while first < top.len() && top[first].end < b.start {
            first += 1;
        }
        for t in top[first..].iter().take_while(|t| t.start <= b.end) {
            let Some(s) = start else { break };
            if t.start > s {
                out.push(Run { start: s, end: t.start - 1, label: b.label });
            }
            start = t.end.checked_add(1).filter(|&n| n <= b.end);
        }
        if let Some(s) = start {
            out.push(Run { start: s, end: b.end, label: b.label });
        }
    }
    out
}

fn find<A: Address, L: Copy>(prefixes: &[(A::Net, L)], ip: A) -> Option<(A::Net, L)> {
    let ip = ip.to_int();
    let after = prefixes.partition_point(|&(net, _)| A::span(net).0 <= ip);
    let (net, label) = *prefixes.get(after.checked_sub(1)?)?;
    (A::span(net).1 >= ip).then_some((net, label))
}

#[cfg(test)]
mod tests;
