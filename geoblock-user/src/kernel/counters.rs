//! Counters: read the per-CPU maps, sum them, present them.
//!
//! The JSON form is a stable interface for scripts (see README, "stats JSON"):
//! fields are added, never renamed. The top-level fields count inbound
//! traffic (judged by its source), `outbound` the same for outbound traffic
//! (judged by its destination). In each, `countries`, `unknown` and
//! `totals` count every interface; `interfaces` splits them per interface.
//! `rules` and `selectors` count every interface together: a selector
//! (`AS4134`, `list:tor`) counts the verdicts it decided.

use std::{collections::BTreeMap, path::Path};

use aya::maps::{Array, Map, MapData, PerCpuArray, PerCpuValues};
use geoblock_common::{
    country_stats_index, maps, rule_stats_index, selector_stats_index, total_index, Action, Counter, CountryCounters,
    CountryId, Direction, Family, IfaceSlot, RejectBucket, Total, ABI_VERSION, COUNTRY_SLOTS, IFACE_SLOTS, MAX_RULES,
    MAX_SELECTORS, NO_COUNTRY, OTHER_IFACE, RULE_NAME_LEN, RULE_NONE, SELECTOR_NAME_LEN,
};
use serde::Serialize;

use crate::{country, policy::Selector, Error};

/// What `geoblock stats` reads: every counter, once.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Inbound packets: the top level, as before there were outbound rules.
    #[serde(flatten)]
    pub inbound: Counts,
    /// Outbound packets, and the connects and sends the socket hooks
    /// refused (drops of 0 bytes, on [`OTHER_IFACE_NAME`]).
    pub outbound: Counts,
    /// What became of the answers rejected inbound packets may draw.
    pub rejects: Rejects,
}

/// The counters of one direction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Every interface together.
    #[serde(flatten)]
    pub all: Traffic,
    /// Per interface, by name; [`OTHER_IFACE_NAME`] for interfaces without
    /// a counter slot of their own.
    pub interfaces: BTreeMap<String, Traffic>,
    /// Country verdicts per address family.
    pub families: Families,
    /// Country verdicts per rule, in rule order (every rule; a rule counts
    /// in its own direction only).
    pub rules: Vec<RuleCounts>,
    /// Packets no rule matched (passed).
    pub unmatched: Families,
    /// Verdicts each selector decided (both families together), every
    /// selector that has a counter slot, in selector order.
    pub selectors: Vec<SelectorCounts>,
}

/// Answers to rejected packets (TCP resets, ICMP errors), summed over CPUs.
/// Rejected packets are counted as dropped besides.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Rejects {
    pub sent: u64,
    /// Dropped without an answer: the rate limit was reached.
    pub suppressed: u64,
}

/// A rule's verdicts per family.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RuleCounts {
    pub name: String,
    #[serde(flatten)]
    pub families: Families,
}

/// The verdicts a selector decided.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SelectorCounts {
    /// `AS4134`, `list:tor`.
    pub name: String,
    #[serde(flatten)]
    pub counters: CountryCounters,
}

/// Counters of one interface, or of all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Traffic {
    /// Countries with any traffic, by code.
    pub countries: BTreeMap<String, CountryCounters>,
    /// Addresses no country claims (private, unassigned...).
    pub unknown: CountryCounters,
    pub totals: Totals,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub dropped: Counter,
    pub passed: Counter,
    pub would_drop: Counter,
    /// Would have been dropped, but the sender's address is inside an exception.
    pub exception: Counter,
    /// ARP, LLDP and other non-IP frames: passed.
    pub non_ip: Counter,
    /// Too short or malformed to read a source: passed to the kernel. Also
    /// what cannot be judged and is dropped (see [`Total::Unparsed`]).
    pub unparsed: Counter,
    /// Would have been dropped, but answers a connection this host opened.
    pub reply: Counter,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Families {
    pub ipv4: CountryCounters,
    pub ipv6: CountryCounters,
}

impl core::ops::Add for Families {
    type Output = Families;
    fn add(self, f: Families) -> Families {
        Families { ipv4: self.ipv4 + f.ipv4, ipv6: self.ipv6 + f.ipv6 }
    }
}

/// How the counters of interfaces without a slot (more interfaces than
/// [`IFACE_SLOTS`], or traffic the daemon did not attach for) are named.
/// Parentheses: no interface name has them.
pub const OTHER_IFACE_NAME: &str = "(other)";

/// The counter maps, from a loaded program or from pins.
pub struct CounterMaps<'a> {
    pub countries: &'a Map,
    pub totals: &'a Map,
    pub rules: &'a Map,
    pub ifaces: &'a Map,
    pub rule_names: &'a Map,
    pub rejects: &'a Map,
    pub selectors: &'a Map,
    pub selector_names: &'a Map,
}

/// The counters `geoblock stats` reads, in the order of [`CounterMaps`].
pub const COUNTER_MAPS: [&str; 8] = [
    maps::COUNTRY_STATS,
    maps::TOTALS,
    maps::RULE_STATS,
    maps::IFACES,
    maps::RULE_NAMES,
    maps::REJECT_BUCKET,
    maps::SELECTOR_STATS,
    maps::SELECTOR_NAMES,
];

impl Stats {
    /// Reads every counter once.
    pub fn read(maps: &CounterMaps) -> Result<Stats, Error> {
        let names = iface_names(maps.ifaces)?;
        let selectors = selector_slots(maps.selector_names)?;
        let buckets: PerCpuArray<&MapData, RejectBucket> = maps.rejects.try_into()?;
        let rejects = buckets.get(&0, 0)?.iter().fold(Rejects::default(), |sum, b| Rejects {
            sent: sum.sent + b.sent,
            suppressed: sum.suppressed + b.suppressed,
        });
        Ok(Stats {
            inbound: Counts::read(maps, &names, &selectors, Direction::Inbound)?,
            outbound: Counts::read(maps, &names, &selectors, Direction::Outbound)?,
            rejects,
        })
    }

    /// The counters of `direction`.
    pub fn direction(&self, direction: Direction) -> &Counts {
        match direction {
            Direction::Inbound => &self.inbound,
            Direction::Outbound => &self.outbound,
        }
    }

    /// Reads the counters a running daemon pinned in `dir`.
    pub fn read_pinned(dir: &Path) -> Result<Stats, Error> {
        // Maps of another layout would be misread (or fail on a missing map).
        match super::state::pinned_abi(dir) {
            Some(ABI_VERSION) | None => {}
            Some(found) => return Err(Error::OtherAbi { dir: dir.into(), found }),
        }
        let open = |name: &str, map: fn(MapData) -> Map| {
            MapData::from_pin(dir.join(name)).map(map).map_err(|e| match crate::errno(&e) {
                // The state is root's (see super::state): say so, not that there is none.
                Some(libc::EACCES | libc::EPERM) => Error::Permission,
                _ => Error::NoState(dir.to_path_buf()),
            })
        };
        let [countries, totals, rules, ifaces, rule_names, rejects, selectors, selector_names] = COUNTER_MAPS;
        Stats::read(&CounterMaps {
            countries: &open(countries, Map::PerCpuArray)?,
            totals: &open(totals, Map::PerCpuArray)?,
            rules: &open(rules, Map::PerCpuArray)?,
            ifaces: &open(ifaces, Map::Array)?,
            rule_names: &open(rule_names, Map::Array)?,
            rejects: &open(rejects, Map::PerCpuArray)?,
            selectors: &open(selectors, Map::PerCpuArray)?,
            selector_names: &open(selector_names, Map::Array)?,
        })
    }
}

impl Counts {
    /// Reads the counters of `direction`; `names` are the interface
    /// slots', `selectors` the named selector slots.
    fn read(
        maps: &CounterMaps,
        names: &[Option<String>],
        selectors: &[(u16, String)],
        direction: Direction,
    ) -> Result<Counts, Error> {
        let countries: PerCpuArray<&MapData, CountryCounters> = maps.countries.try_into()?;
        let totals: PerCpuArray<&MapData, Counter> = maps.totals.try_into()?;
        let (rules, unmatched) = rule_counts(maps, direction)?;
        let families = rules.iter().fold(unmatched, |sum, rule| sum + rule.families);
        let selectors = selector_counts(maps, selectors, direction)?;
        let mut stats = Counts { families, rules, unmatched, selectors, ..Counts::default() };
        for (slot, name) in names.iter().enumerate() {
            let slot = slot as u32;
            let mut counts = Traffic::default();
            for country in 0..COUNTRY_SLOTS as CountryId {
                counts.add_country(country, sum(countries.get(&country_stats_index(direction, slot, country), 0)?));
            }
            for total in Total::ALL {
                *counts.totals.slot(total) = sum(totals.get(&total_index(direction, slot, total), 0)?);
            }
            stats.all.merge(&counts);
            if name.is_some() || counts != Traffic::default() {
                let name = name.clone().unwrap_or_else(|| format!("(slot {slot})"));
                stats.interfaces.insert(name, counts);
            }
        }
        Ok(stats)
    }

    /// The counters of `iface`, or of all interfaces.
    pub fn counts(&self, iface: Option<&str>) -> Option<&Traffic> {
        match iface {
            None => Some(&self.all),
            Some(name) => self.interfaces.get(name),
        }
    }
}

/// Each named rule position's counters in `direction`, and those of
/// packets no rule matched.
fn rule_counts(maps: &CounterMaps, direction: Direction) -> Result<(Vec<RuleCounts>, Families), Error> {
    let counters: PerCpuArray<&MapData, CountryCounters> = maps.rules.try_into()?;
    let families = |rule: u8| -> Result<Families, Error> {
        Ok(Families {
            ipv4: sum(counters.get(&rule_stats_index(rule, direction, Family::V4), 0)?),
            ipv6: sum(counters.get(&rule_stats_index(rule, direction, Family::V6), 0)?),
        })
    };
    let rules = named_slots::<RULE_NAME_LEN>(maps.rule_names, MAX_RULES)?
        .into_iter()
        .map(|(position, name)| Ok(RuleCounts { name, families: families(position as u8)? }))
        .collect::<Result<_, Error>>()?;
    Ok((rules, families(RULE_NONE)?))
}

/// The selector slots that have a name (a selector in use, or one that
/// was and whose slot no other took yet), in selector order.
fn selector_slots(map: &Map) -> Result<Vec<(u16, String)>, Error> {
    Ok(in_selector_order(named_slots::<SELECTOR_NAME_LEN>(map, MAX_SELECTORS)?))
}

/// Named slots sorted as their selectors are (AS numbers by number, then
/// lists by name), whatever slots they have.
fn in_selector_order(mut slots: Vec<(u32, String)>) -> Vec<(u16, String)> {
    slots.sort_by_cached_key(|(_, name)| (name.parse::<Selector>().ok(), name.clone()));
    slots.into_iter().map(|(slot, name)| (slot as u16, name)).collect()
}

/// Each named selector slot's counters in `direction`.
fn selector_counts(
    maps: &CounterMaps,
    slots: &[(u16, String)],
    direction: Direction,
) -> Result<Vec<SelectorCounts>, Error> {
    let counters: PerCpuArray<&MapData, CountryCounters> = maps.selectors.try_into()?;
    slots
        .iter()
        .map(|(slot, name)| {
            let counters = sum(counters.get(&selector_stats_index(direction, *slot), 0)?);
            Ok(SelectorCounts { name: name.clone(), counters })
        })
        .collect()
}

/// The positions of the name map `map` (of `N`-byte NUL-padded names,
/// `len` of them) that hold a name, with it.
fn named_slots<const N: usize>(map: &Map, len: u32) -> Result<Vec<(u32, String)>, Error> {
    let names: Array<&MapData, [u8; N]> = map.try_into()?;
    let mut named = Vec::new();
    for position in 0..len {
        if let Some(name) = super::rules::decode(&names.get(&position, 0)?) {
            named.push((position, name));
        }
    }
    Ok(named)
}

/// Slot → interface name; slot [`OTHER_IFACE`] is [`OTHER_IFACE_NAME`],
/// other slots without a name are `None`.
fn iface_names(map: &Map) -> Result<Vec<Option<String>>, Error> {
    let ifaces: Array<&MapData, IfaceSlot> = map.try_into()?;
    (0..IFACE_SLOTS)
        .map(|slot| match slot {
            OTHER_IFACE => Ok(Some(OTHER_IFACE_NAME.to_string())),
            _ => Ok(iface_name(&ifaces.get(&slot, 0)?.name)),
        })
        .collect()
}

/// A NUL-padded name, or `None` for an empty one.
pub fn iface_name(raw: &[u8; 16]) -> Option<String> {
    let len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    (len > 0).then(|| String::from_utf8_lossy(&raw[..len]).into_owned())
}

fn sum<T: aya::Pod + Default + std::ops::Add<Output = T>>(per_cpu: PerCpuValues<T>) -> T {
    per_cpu.iter().fold(T::default(), |acc, c| acc + *c)
}

impl Traffic {
    /// Adds a country's counters (of one interface) to these.
    pub fn add_country(&mut self, country: CountryId, c: CountryCounters) {
        if c == CountryCounters::default() {
            return;
        }
        let t = &mut self.totals;
        for (total, (_, pair)) in [&mut t.dropped, &mut t.passed, &mut t.would_drop].into_iter().zip(c.by_action()) {
            *total = *total + pair;
        }
        let slot = match country {
            NO_COUNTRY => &mut self.unknown,
            _ => self.countries.entry(country::code(country).to_string()).or_default(),
        };
        *slot = *slot + c;
    }

    /// Adds `other`'s counters to these.
    fn merge(&mut self, other: &Traffic) {
        for (code, c) in &other.countries {
            let slot = self.countries.entry(code.clone()).or_default();
            *slot = *slot + *c;
        }
        self.unknown = self.unknown + other.unknown;
        let t = &mut self.totals;
        let mine = [
            &mut t.dropped,
            &mut t.passed,
            &mut t.would_drop,
            &mut t.exception,
            &mut t.reply,
            &mut t.non_ip,
            &mut t.unparsed,
        ];
        for (total, (_, theirs)) in mine.into_iter().zip(other.totals.named()) {
            *total = *total + theirs;
        }
    }

    /// Countries (and `--` for no country) with their counters.
    pub fn rows(&self) -> Vec<(String, CountryCounters)> {
        let mut rows: Vec<_> = self.countries.iter().map(|(cc, c)| (cc.clone(), *c)).collect();
        if self.unknown != CountryCounters::default() {
            rows.push(("--".into(), self.unknown));
        }
        rows
    }
}

impl Totals {
    fn slot(&mut self, total: Total) -> &mut Counter {
        match total {
            Total::NonIp => &mut self.non_ip,
            Total::Unparsed => &mut self.unparsed,
            Total::Exception => &mut self.exception,
            Total::Reply => &mut self.reply,
        }
    }

    /// Every total with its name in the table, in field order.
    pub fn named(&self) -> [(&'static str, Counter); 7] {
        [
            (Action::Drop.name(), self.dropped),
            (Action::Pass.name(), self.passed),
            (Action::WouldDrop.name(), self.would_drop),
            (Total::Exception.name(), self.exception),
            (Total::Reply.name(), self.reply),
            (Total::NonIp.name(), self.non_ip),
            (Total::Unparsed.name(), self.unparsed),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Traffic of countries with `dropped` packets of 100 bytes each.
    fn dropped(rows: &[(&str, u64)]) -> Traffic {
        let mut traffic = Traffic::default();
        for &(cc, packets) in rows {
            let c = CountryCounters { dropped_packets: packets, dropped_bytes: packets * 100, ..Default::default() };
            traffic.add_country(country::parse(cc).unwrap(), c);
        }
        traffic
    }

    #[test]
    fn merge_adds_interfaces_up() {
        let mut all = dropped(&[("CN", 1)]);
        let mut other = dropped(&[("CN", 3), ("RU", 1)]);
        other.totals.non_ip = Counter { packets: 2, bytes: 120 };
        all.merge(&other);
        assert_eq!(all.countries["CN"].dropped_packets, 4);
        assert_eq!(all.countries["RU"].dropped_packets, 1);
        assert_eq!(all.totals.dropped, Counter { packets: 5, bytes: 500 });
        assert_eq!(all.totals.non_ip, Counter { packets: 2, bytes: 120 });
    }

    #[test]
    fn selectors_are_in_selector_order() {
        let slots = [(0, "list:tor"), (1, "AS4134"), (7, "AS13335"), (2, "list:bogons")];
        let sorted = in_selector_order(slots.map(|(slot, name)| (slot, name.to_string())).to_vec());
        let names: Vec<(u16, &str)> = sorted.iter().map(|(slot, name)| (*slot, name.as_str())).collect();
        assert_eq!(names, [(1, "AS4134"), (7, "AS13335"), (2, "list:bogons"), (0, "list:tor")]);
    }

    #[test]
    fn selector_counts_are_flat_in_json() {
        let counters = CountryCounters { dropped_packets: 2, dropped_bytes: 120, ..Default::default() };
        let counts =
            Counts { selectors: vec![SelectorCounts { name: "AS4134".into(), counters }], ..Default::default() };
        let json = serde_json::to_value(&counts).unwrap();
        assert_eq!(json["selectors"][0]["name"], "AS4134");
        assert_eq!(json["selectors"][0]["dropped_packets"], 2);
        assert_eq!(json["selectors"][0]["would_drop_bytes"], 0);
        assert!(json["rules"].is_array() && json["unmatched"].is_object(), "the fields before stay: {json}");
    }

    #[test]
    fn names_are_nul_padded() {
        let mut raw = [0u8; 16];
        raw[..4].copy_from_slice(b"eth0");
        assert_eq!(iface_name(&raw).as_deref(), Some("eth0"));
        assert_eq!(iface_name(&[0; 16]), None);
    }
}
