//! The selector maps: each table program's selector tries and verdicts
//! (`SELECTORS_V4`, `SELECTORS_V6`, `SELECTOR_POLICY`), and the counter
//! slot each selector in use keeps (`SELECTOR_NAMES`, `SELECTOR_STATS`).
//!
//! The verdicts are written per rule bank, like `POLICY`: a new policy's
//! go into the bank the packets do not use before the rules switch to it
//! (see [`super::rules`]), so every packet sees one policy's verdicts. A
//! new selector table comes with a new table program, which carries the
//! verdicts of both banks: the policy in force and the one to come.

use std::collections::{BTreeMap, HashMap, HashSet};

use aya::{
    maps::{Array, MapData, PerCpuArray},
    Ebpf,
};
use geoblock_common::{
    maps, selector_stats_index, CountryCounters, Direction, SelectorVerdict, MAX_SELECTORS, RULE_BANKS, RULE_IDS,
    SELECTOR_NAME_LEN, SELECTOR_NONE,
};
use serde::{Deserialize, Serialize};

use super::{
    program::{fill_trie, memlock, zeroes, Geoblock},
    rules,
    trie::Trie,
};
use crate::{
    policy::{Policy, Selector, SelectorTable},
    Error,
};

/// A selector table's tries, compiled for loading.
pub(super) struct SelectorTries {
    v4: Trie,
    v6: Trie,
    classes: u32,
}

impl SelectorTries {
    pub fn compile(table: &SelectorTable) -> Result<SelectorTries, Error> {
        Ok(SelectorTries {
            v4: Trie::selectors_v4(&table.table)?,
            v6: Trie::selectors_v6(&table.table)?,
            classes: table.classes.len() as u32,
        })
    }

    /// The sizes of a table program's selector maps (a map has at least one entry).
    pub fn sizes(&self) -> Vec<(&'static str, u32)> {
        vec![
            (maps::SELECTORS_V4, self.v4.nodes().len() as u32),
            (maps::SELECTORS_V6, self.v6.nodes().len() as u32),
            (maps::SELECTOR_POLICY, self.classes.max(1) * RULE_IDS),
        ]
    }
}

/// Verdict entries of one bank.
type Verdicts = Vec<(u32, SelectorVerdict)>;

/// The selector table in force, the counter slots of its selectors, and
/// the verdicts its table program holds per bank.
#[derive(Default)]
pub struct Selectors {
    table: SelectorTable,
    /// Each selector's slot; `None` until read from `SELECTOR_NAMES`.
    slots: Option<BTreeMap<Selector, u16>>,
    written: [Verdicts; RULE_BANKS as usize],
}

/// The selector table in force, as `geoblock status` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectorSummary {
    /// Selectors compiled in: those the rules use.
    pub selectors: usize,
    /// Combinations of selectors that hold addresses (the kernel's
    /// selector trie tells [`MAX_CLASSES`](crate::policy::selectors::MAX_CLASSES) less one apart).
    pub classes: usize,
    /// Prefixes of the selector tries.
    pub prefixes_v4: usize,
    pub prefixes_v6: usize,
    /// Kernel memory of the selector maps of the table program in force
    /// (tries and verdicts), bytes.
    pub bytes: u64,
}

impl Geoblock {
    /// What the selector table in force holds, and its kernel memory.
    pub fn selector_summary(&self) -> SelectorSummary {
        let table = &self.selectors.table;
        let maps = [maps::SELECTORS_V4, maps::SELECTORS_V6, maps::SELECTOR_POLICY];
        let in_force = self.table.as_ref();
        let bytes = maps.iter().filter_map(|&name| in_force?.map(name)).map(array_memory).sum();
        SelectorSummary {
            selectors: table.selectors.len(),
            // Class 0 is the empty one: addresses no selector holds.
            classes: table.classes.len().saturating_sub(1),
            prefixes_v4: table.table.v4.len(),
            prefixes_v6: table.table.v6.len(),
            bytes,
        }
    }

    /// Whether the selector table in force holds every selector of `policy`.
    pub fn selectors_cover(&self, policy: &Policy) -> bool {
        policy.selectors().is_subset(&self.selectors.table.selectors)
    }

    /// The name of the selector counted in `slot` (as events carry it).
    pub fn selector_name(&self, slot: u16) -> Option<String> {
        let slots = self.selectors.slots.as_ref()?;
        slots.iter().find(|(_, &s)| s == slot).map(|(selector, _)| selector.to_string())
    }

    /// Fills a new table program's selector maps: the tries, and the
    /// verdicts of both banks, the bank in force for the policy in force
    /// (`policy`, when this process wrote none yet), the other for
    /// `policy` (the policy in force, when none is given). Gives the
    /// selectors their counter slots.
    pub(super) fn fill_selectors(
        &mut self,
        instance: &mut Ebpf,
        table: &SelectorTable,
        tries: &SelectorTries,
        policy: Option<&Policy>,
    ) -> Result<[Verdicts; RULE_BANKS as usize], Error> {
        fill_trie(instance, maps::SELECTORS_V4, &tries.v4)?;
        fill_trie(instance, maps::SELECTORS_V6, &tries.v6)?;
        let slots = self.assign_selector_slots(table)?;
        let active = self.active_bank()?;
        let (in_force, to_come) = (self.policy.as_ref().or(policy), policy.or(self.policy.as_ref()));
        let verdicts = [0, 1].map(|bank| {
            let policy = if bank == active { in_force } else { to_come };
            policy.map_or_else(Vec::new, |p| p.selector_verdicts(bank, &table.classes, |s| slot_of(&slots, s)))
        });
        let map = instance.map_mut(maps::SELECTOR_POLICY).ok_or(Error::MissingMap(maps::SELECTOR_POLICY))?;
        let mut map: Array<&mut MapData, SelectorVerdict> = map.try_into()?;
        for (index, verdict) in verdicts.iter().flatten() {
            map.set(*index, verdict, 0)?;
        }
        self.selectors.slots = Some(slots);
        Ok(verdicts)
    }

    /// Records `table` as the selector table in force, its table program
    /// holding `verdicts`.
    pub(super) fn selectors_in_force(&mut self, table: &SelectorTable, verdicts: [Verdicts; RULE_BANKS as usize]) {
        (self.selectors.table, self.selectors.written) = (table.clone(), verdicts);
    }

    /// Writes `policy`'s verdicts for `bank` into the table program in
    /// force: what differs from what the bank held.
    pub(super) fn write_selector_verdicts(&mut self, bank: u8, policy: &Policy) -> Result<(), Error> {
        let empty = BTreeMap::new();
        let slots = self.selectors.slots.as_ref().unwrap_or(&empty);
        let new = policy.selector_verdicts(bank, &self.selectors.table.classes, |s| slot_of(slots, s));
        let old: HashMap<u32, SelectorVerdict> =
            std::mem::take(&mut self.selectors.written[bank as usize]).into_iter().collect();
        if let Some(instance) = self.table.as_mut() {
            let map = instance.map_mut(maps::SELECTOR_POLICY).ok_or(Error::MissingMap(maps::SELECTOR_POLICY))?;
            let mut map: Array<&mut MapData, SelectorVerdict> = map.try_into()?;
            for (index, verdict) in new.iter().filter(|(i, v)| old.get(i) != Some(v)) {
                map.set(*index, verdict, 0)?;
            }
            let kept: HashSet<u32> = new.iter().map(|(i, _)| *i).collect();
            for index in old.keys().filter(|i| !kept.contains(i)) {
                map.set(*index, SelectorVerdict::default(), 0)?;
            }
        }
        self.selectors.written[bank as usize] = new;
        Ok(())
    }

    /// Gives each selector of `table` a counter slot: the slot of its name
    /// if it has one, else a free slot, else that of a selector no longer
    /// in use (whose counts go). Slots keep their names across restarts.
    fn assign_selector_slots(&mut self, table: &SelectorTable) -> Result<BTreeMap<Selector, u16>, Error> {
        let held = self.selector_names()?;
        let by_name: HashMap<&str, usize> =
            held.iter().enumerate().filter_map(|(slot, name)| Some((name.as_deref()?, slot))).collect();
        let mut slots = BTreeMap::new();
        let mut taken = vec![false; held.len()];
        for selector in &table.selectors {
            if let Some(&slot) = by_name.get(selector.to_string().as_str()) {
                taken[slot] = true;
                slots.insert(selector.clone(), slot as u16);
            }
        }
        // Every slot of a selector in use is taken: the named rest are stale.
        let free = (0..held.len()).filter(|&s| held[s].is_none());
        let stale = (0..held.len()).filter(|&s| held[s].is_some());
        let mut spare: Vec<usize> = free.chain(stale).filter(|&s| !taken[s]).collect();
        spare.reverse();
        let unslotted: Vec<&Selector> = table.selectors.iter().filter(|s| !slots.contains_key(*s)).collect();
        for selector in unslotted {
            let slot = spare.pop().ok_or(Error::TooManySelectors)?;
            self.name_selector_slot(slot as u16, &selector.to_string())?;
            slots.insert(selector.clone(), slot as u16);
        }
        Ok(slots)
    }

    /// The name each counter slot holds (`None`: free).
    fn selector_names(&self) -> Result<Vec<Option<String>>, Error> {
        let names: Array<&MapData, [u8; SELECTOR_NAME_LEN]> = self.map(maps::SELECTOR_NAMES)?.try_into()?;
        (0..MAX_SELECTORS).map(|slot| Ok(rules::decode(&names.get(&slot, 0)?))).collect()
    }

    /// Names `slot` after `name`, its counts starting from zero.
    fn name_selector_slot(&mut self, slot: u16, name: &str) -> Result<(), Error> {
        let mut names: Array<&mut MapData, [u8; SELECTOR_NAME_LEN]> = self.map_mut(maps::SELECTOR_NAMES)?;
        names.set(u32::from(slot), rules::encode(name), 0)?;
        let mut stats: PerCpuArray<&mut MapData, CountryCounters> = self.map_mut(maps::SELECTOR_STATS)?;
        for direction in Direction::ALL {
            stats.set(selector_stats_index(direction, slot), zeroes()?, 0)?;
        }
        Ok(())
    }
}

/// The kernel memory of an array (the selector maps all are).
fn array_memory(map: &aya::maps::Map) -> u64 {
    match map {
        aya::maps::Map::Array(data) => memlock(data),
        _ => 0,
    }
}

/// The counter slot of `selector` ([`SELECTOR_NONE`], uncounted, if it has none).
fn slot_of(slots: &BTreeMap<Selector, u16>, selector: &Selector) -> u16 {
    slots.get(selector).copied().unwrap_or(SELECTOR_NONE)
}
