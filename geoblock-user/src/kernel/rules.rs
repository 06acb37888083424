//! The rule maps: `POLICY`, `PROTO_RULES`, `PORT_RULES` and `RULE_NAMES`.
//!
//! A policy is written into the bank the packets do not use, then switched
//! to by rewriting `PROTO_RULES`, one protocol entry at a time: every
//! packet is judged by the whole old rule set or the whole new one, never
//! by a mix (see `geoblock_common::RULE_BANK`). Only entries that differ
//! from what the bank held are written, so a policy change costs what it
//! changes: a country blocked is a few hundred writes, however many ports
//! the rules name.

use aya::maps::{Array, MapData, PerCpuArray};
use geoblock_common::{
    maps, rule_stats_index, CountryCounters, Direction, Family, RuleSlots, MAX_RULES, PROTO_RULES_SLOTS, RULE_BANK,
    RULE_BANKS, RULE_BY_PORT, RULE_NAME_LEN,
};

use super::program::{zeroes, Geoblock};
use crate::{
    policy::{Policy, RuleMaps},
    Error,
};

/// What this process wrote into each bank, and which bank is in force.
#[derive(Default)]
pub struct Banks {
    /// The bank `PROTO_RULES` points into (`None`: not read yet).
    active: Option<u8>,
    /// Each bank's contents as last written; `None`: unknown (written whole).
    written: [Option<RuleMaps>; RULE_BANKS as usize],
}

impl Geoblock {
    /// Writes `rules` into the spare bank and switches to it; names the
    /// rule positions, zeroing the counters of a position whose rule
    /// changed. The first time, both banks are written whole (tens of
    /// milliseconds): later changes then write only what they change.
    pub(super) fn write_rules(&mut self, policy: &Policy) -> Result<(), Error> {
        let written = self.switch_rules(policy).and_then(|()| match self.banks.written.iter().any(Option::is_none) {
            true => self.switch_rules(policy),
            false => Ok(()),
        });
        if written.is_err() {
            // Which bank each protocol reads is no longer known: the next
            // policy finds out again, and writes both banks whole.
            self.banks = Banks::default();
        }
        written
    }

    fn switch_rules(&mut self, policy: &Policy) -> Result<(), Error> {
        let active = self.active_bank()?;
        let spare = 1 - active;
        let new = policy.rule_maps(spare);
        let old = self.banks.written[spare as usize].take();
        let mut actions: Array<&mut MapData, u8> = self.map_mut(maps::POLICY)?;
        for &(index, action) in changed(&new.actions, old.as_ref().map(|o| o.actions.as_slice())) {
            actions.set(index, action, 0)?;
        }
        let mut ports: Array<&mut MapData, RuleSlots> = self.map_mut(maps::PORT_RULES)?;
        for (index, slots) in changed(&new.ports, old.as_ref().map(|o| o.ports.as_slice())) {
            ports.set(*index, slots, 0)?;
        }
        self.write_selector_verdicts(spare, policy)?;
        self.name_rules(&policy.rule_names().collect::<Vec<_>>())?;
        // The switch: after this loop every protocol reads the spare bank.
        let current = self.banks.written[active as usize].take();
        let mut protocols: Array<&mut MapData, RuleSlots> = self.map_mut(maps::PROTO_RULES)?;
        for (index, slots) in changed(&new.protocols, current.as_ref().map(|o| o.protocols.as_slice())) {
            protocols.set(*index, slots, 0)?;
        }
        self.banks.written[active as usize] = current;
        self.banks.written[spare as usize] = Some(new);
        self.banks.active = Some(spare);
        Ok(())
    }

    /// The bank the packets use.
    pub(super) fn active_bank(&self) -> Result<u8, Error> {
        match self.banks.active {
            Some(bank) => Ok(bank),
            None => self.bank_in_force(),
        }
    }

    /// The bank `PROTO_RULES` points into, as a daemon before this one left
    /// it (fresh maps hold zeroes: rule 0, bank 0).
    fn bank_in_force(&self) -> Result<u8, Error> {
        let protocols: Array<&MapData, RuleSlots> = self.map(maps::PROTO_RULES)?.try_into()?;
        for slot in 0..PROTO_RULES_SLOTS {
            for rule in protocols.get(&slot, 0)? {
                match rule {
                    r if r < RULE_BANK * RULE_BANKS as u8 => return Ok(r / RULE_BANK),
                    r if r.wrapping_sub(RULE_BY_PORT) < RULE_BANKS as u8 => return Ok(r - RULE_BY_PORT),
                    _ => {}
                }
            }
        }
        Ok(0)
    }

    /// Writes the rule names by position; a position that changes name
    /// starts counting from zero.
    fn name_rules(&mut self, names: &[&str]) -> Result<(), Error> {
        for position in 0..MAX_RULES {
            let name = encode(names.get(position as usize).copied().unwrap_or_default());
            let mut held: Array<&mut MapData, [u8; RULE_NAME_LEN]> = self.map_mut(maps::RULE_NAMES)?;
            if held.get(&position, 0)? == name {
                continue;
            }
            held.set(position, name, 0)?;
            let mut stats: PerCpuArray<&mut MapData, CountryCounters> = self.map_mut(maps::RULE_STATS)?;
            for (direction, family) in Direction::ALL.into_iter().flat_map(|d| [(d, Family::V4), (d, Family::V6)]) {
                stats.set(rule_stats_index(position as u8, direction, family), zeroes()?, 0)?;
            }
        }
        Ok(())
    }
}

/// The entries of `new` that differ from `old` (all of them when `old` is unknown).
fn changed<'a, T: PartialEq>(new: &'a [(u32, T)], old: Option<&'a [(u32, T)]>) -> impl Iterator<Item = &'a (u32, T)> {
    new.iter().enumerate().filter(move |(i, entry)| old.and_then(|o| o.get(*i)) != Some(*entry)).map(|(_, e)| e)
}

/// `name` NUL-padded, as `RULE_NAMES` and `SELECTOR_NAMES` hold it.
pub(super) fn encode<const N: usize>(name: &str) -> [u8; N] {
    let mut raw = [0; N];
    let len = name.len().min(N - 1);
    raw[..len].copy_from_slice(&name.as_bytes()[..len]);
    raw
}

/// A name from `RULE_NAMES` or `SELECTOR_NAMES` (`None`: none at that position).
pub fn decode<const N: usize>(raw: &[u8; N]) -> Option<String> {
    let len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    (len > 0).then(|| String::from_utf8_lossy(&raw[..len]).into_owned())
}
