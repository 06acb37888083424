//! Selectors: what a rule blocks or allows beside countries. An autonomous
//! system (`AS4134`) or a named address list (`list:tor`), written where
//! the rule's countries are.
//!
//! The kernel never sees the AS data or the lists whole: [`SelectorTable`]
//! compiles only the selectors the rules use into prefixes → *class*, the
//! set of those selectors an address belongs to (an address has one AS and
//! may be on several lists). The classes are few (each combination that
//! occurs once), so the kernel's table of (class, rule) → verdict is small,
//! and a packet pays for it only when its rule has selectors.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use geoblock_common::{CountryId, SELECTOR_CHILD};
use serde::{Deserialize, Serialize};

use crate::{
    country,
    data::{
        asn::{Asn, AsnData},
        list::{self, AddressList},
        table::{self, Address, PerFamily, Table, TableError},
    },
};

/// An autonomous system or a named list. Ordered ASes first, then lists by
/// name: the order in which a rule's selectors are tried (see
/// [`super::Rule::selector_decision`]).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Selector {
    Asn(Asn),
    List(String),
}

/// A list's name is at most this long (see [`list::MAX_NAME`]).
pub const MAX_LIST_NAME: usize = list::MAX_NAME;
const LIST_PREFIX: &str = list::SELECTOR_PREFIX;

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Asn(asn) => write!(f, "AS{asn}"),
            Selector::List(name) => write!(f, "{LIST_PREFIX}{name}"),
        }
    }
}

/// Why an entry of a rule's list is neither a country nor a selector.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    #[error(transparent)]
    Country(#[from] country::UnknownCountry),
    #[error("'{0}' is not an AS number (AS1 to AS4294967295)")]
    Asn(String),
    #[error("'{0}': a list's name is 1 to {MAX_LIST_NAME} characters of a-z, 0-9, _ and -")]
    ListName(String),
}

impl FromStr for Selector {
    type Err = EntryError;

    /// `AS4134` (any case), `list:NAME`.
    fn from_str(text: &str) -> Result<Selector, EntryError> {
        let text = text.trim();
        if let Some(name) = text.strip_prefix(LIST_PREFIX) {
            return match valid_list_name(name) {
                true => Ok(Selector::List(name.into())),
                false => Err(EntryError::ListName(text.into())),
            };
        }
        let digits = text.get(2..).filter(|_| text[..2].eq_ignore_ascii_case("as")).unwrap_or_default();
        match digits.parse::<Asn>() {
            Ok(asn) if asn != 0 && digits.bytes().all(|b| b.is_ascii_digit()) => Ok(Selector::Asn(asn)),
            _ => Err(EntryError::Asn(text.into())),
        }
    }
}

impl TryFrom<String> for Selector {
    type Error = EntryError;

    fn try_from(text: String) -> Result<Selector, EntryError> {
        text.parse()
    }
}

impl From<Selector> for String {
    fn from(selector: Selector) -> String {
        selector.to_string()
    }
}

/// `[a-z0-9_-]`, 1 to [`MAX_LIST_NAME`] bytes: the operator's names.
pub fn valid_list_name(name: &str) -> bool {
    list::check_name(name).is_ok()
}

/// An entry of a rule's list: a country or a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Country(CountryId),
    Selector(Selector),
}

/// `CN`, `AS4134` or `list:tor`. "AS" alone is American Samoa; "AS"
/// followed by digits an autonomous system.
pub fn parse_entry(text: &str) -> Result<Entry, EntryError> {
    let trimmed = text.trim();
    let selector = trimmed.starts_with(LIST_PREFIX)
        || (trimmed.len() > 2 && trimmed.get(..2).is_some_and(|head| head.eq_ignore_ascii_case("as")));
    match selector {
        true => trimmed.parse().map(Entry::Selector),
        false => Ok(Entry::Country(country::parse(trimmed)?)),
    }
}

/// Entries split into countries and selectors.
pub fn parse_entries(texts: &[String]) -> Result<(BTreeSet<CountryId>, BTreeSet<Selector>), EntryError> {
    let (mut countries, mut selectors) = (BTreeSet::new(), BTreeSet::new());
    for text in texts {
        match parse_entry(text)? {
            Entry::Country(id) => countries.insert(id),
            Entry::Selector(s) => selectors.insert(s),
        };
    }
    Ok((countries, selectors))
}

/// The selectors that hold `ip`: its AS (if any), then the lists it is on
/// by name, each only if `wanted` says so.
pub fn memberships(
    ip: IpAddr,
    asn: &AsnData,
    lists: &[AddressList],
    wanted: impl Fn(&Selector) -> bool,
) -> Vec<Selector> {
    let of_as = asn.table.lookup(ip).map(|(_, asn)| Selector::Asn(asn));
    let on_lists = lists.iter().filter(|l| l.contains(ip)).map(|l| Selector::List(l.name.clone()));
    let mut held: Vec<Selector> = of_as.into_iter().chain(on_lists).filter(|s| wanted(s)).collect();
    // In selector order, as the rules try them (the lists come in the config's).
    held.sort();
    held
}

/// The most classes a selector table may have: the values of the
/// kernel's selector trie (class 0 is "none").
pub const MAX_CLASSES: usize = SELECTOR_CHILD as usize;

/// Why the selectors in use make no table.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectorError {
    #[error("{selector}: no list of that name is configured (--list NAME=PATH, [lists] in the config)")]
    NoSuchList { selector: Selector },
    #[error(
        "the selectors in use hold addresses in {0} different combinations, more than the {max} the kernel's \
         selector table takes: use fewer selectors",
        max = MAX_CLASSES - 1
    )]
    TooManyClasses(usize),
    #[error(transparent)]
    Table(#[from] TableError),
}

/// The selectors in use compiled for the kernel: exact minimal prefixes →
/// class, and each class's selectors (class 0: none, the addresses no
/// selector in use holds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectorTable {
    /// What it was compiled for (an AS the data does not know holds no
    /// address, yet is compiled in).
    pub selectors: BTreeSet<Selector>,
    pub table: Table<u16>,
    pub classes: Vec<Vec<Selector>>,
}

/// No selector: one class, empty.
impl Default for SelectorTable {
    fn default() -> SelectorTable {
        SelectorTable { selectors: BTreeSet::new(), table: Table::default(), classes: vec![vec![]] }
    }
}

impl SelectorTable {
    /// The table of `selectors` from the AS data and the lists. A list
    /// that is not configured is an error; an AS the data does not know
    /// holds no address.
    pub fn compile(
        selectors: &BTreeSet<Selector>,
        asn: &AsnData,
        lists: &[AddressList],
    ) -> Result<SelectorTable, SelectorError> {
        let index: BTreeMap<&Selector, u16> = selectors.iter().zip(0..).collect();
        let mut spans = PerFamily { v4: vec![], v6: vec![] };
        // Every prefix of the world's AS data is looked up: in a small
        // sorted array of numbers, which stays in the first-level cache.
        let asns: Vec<(Asn, u16)> =
            index.iter().filter_map(|(s, &i)| if let Selector::Asn(a) = s { Some((*a, i)) } else { None }).collect();
        let asn_index = |asn: Asn| asns.binary_search_by_key(&asn, |&(a, _)| a).ok().map(|at| asns[at].1);
        spans.v4.extend(asn.table.v4.iter().filter_map(|&(net, a)| Some((Ipv4Addr::span(net), asn_index(a)?))));
        spans.v6.extend(asn.table.v6.iter().filter_map(|&(net, a)| Some((Ipv6Addr::span(net), asn_index(a)?))));
        for selector in selectors.iter().filter(|s| matches!(s, Selector::List(_))) {
            let Selector::List(name) = selector else { continue };
            let list = lists.iter().find(|l| &l.name == name);
            let list = list.ok_or_else(|| SelectorError::NoSuchList { selector: selector.clone() })?;
            let at = index[selector];
            spans.v4.extend(list.v4.iter().map(|&net| (Ipv4Addr::span(net), at)));
            spans.v6.extend(list.v6.iter().map(|&net| (Ipv6Addr::span(net), at)));
        }
        let mut classes = Classes::default();
        let v4 = classes.runs::<Ipv4Addr>(spans.v4);
        let v6 = classes.runs::<Ipv6Addr>(spans.v6);
        if classes.sets.len() > MAX_CLASSES {
            return Err(SelectorError::TooManyClasses(classes.sets.len() - 1));
        }
        let table = Table { v4: table::prefixes(v4).map_err(fault)?, v6: table::prefixes(v6).map_err(fault)? };
        let by_index: Vec<&Selector> = selectors.iter().collect();
        let classes = classes.sets.iter().map(|set| set.iter().map(|&i| by_index[i as usize].clone()).collect());
        Ok(SelectorTable { selectors: selectors.clone(), table, classes: classes.collect() })
    }
}

/// Only the prefix count can fail: the runs are sorted and disjoint.
fn fault<R>(fault: table::Fault<R>) -> TableError {
    match fault {
        table::Fault::TooMany(family) => TableError::TooMany(family),
        table::Fault::Reversed(_) | table::Fault::Overlap(..) => unreachable!("class runs are sorted and disjoint"),
    }
}

/// The classes found so far: each distinct set of selector indexes, by
/// number (0: the empty set).
struct Classes {
    sets: Vec<Vec<u16>>,
    numbers: BTreeMap<Vec<u16>, u16>,
}

impl Default for Classes {
    fn default() -> Classes {
        Classes { sets: vec![vec![]], numbers: BTreeMap::from([(vec![], 0)]) }
    }
}

impl Classes {
    /// Address runs of one class each, from (span, selector index) pairs
    /// that may overlap: a sweep over the spans' edges, keeping the set of
    /// selectors that hold the addresses between two edges.
    fn runs<A: Address>(&mut self, spans: Vec<((u128, u128), u16)>) -> Vec<(A, A, u16)> {
        let last = u128::MAX >> (128 - A::BITS);
        // (address, joins, selector): a span's selector joins at its start
        // and leaves after its end (never, at the family's last address).
        let mut edges: Vec<(u128, bool, u16)> = Vec::with_capacity(2 * spans.len());
        for ((start, end), selector) in spans {
            edges.push((start, true, selector));
            if end < last {
                edges.push((end + 1, false, selector));
            }
        }
        edges.sort_unstable();
        let mut holding: BTreeMap<u16, u32> = BTreeMap::new();
        let mut out = Vec::new();
        let mut at = 0;
        while at < edges.len() {
            let start = edges[at].0;
            for &(_, joins, selector) in edges[at..].iter().take_while(|e| e.0 == start) {
                let count = holding.entry(selector).or_default();
                *count = if joins { *count + 1 } else { *count - 1 };
                if *count == 0 {
                    holding.remove(&selector);
                }
                at += 1;
            }
            if holding.is_empty() {
                continue;
            }
            let end = edges.get(at).map_or(last, |e| e.0 - 1);
            let class = self.number(holding.keys().copied().collect());
            out.push((A::from_int(start), A::from_int(end), class));
        }
        out
    }

    /// The class of a set of selector indexes, numbered on first sight.
    fn number(&mut self, set: Vec<u16>) -> u16 {
        if let Some(&n) = self.numbers.get(&set) {
            return n;
        }
        // Past MAX_CLASSES the caller refuses the table; the number is
        // only kept distinct until then.
        let n = self.sets.len().min(u16::MAX as usize) as u16;
        self.sets.push(set.clone());
        self.numbers.insert(set, n);
        n
    }
}

#[cfg(test)]
mod tests;
