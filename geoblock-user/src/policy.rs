//! Who is blocked: the operator's policy, and the per-country actions the
//! kernel's `POLICY` map holds.

use std::{collections::BTreeSet, net::IpAddr};

use geoblock_common::{Action, CountryId, COUNTRY_SLOTS, NO_COUNTRY};
use ipnetwork::IpNetwork;

use crate::prefix::Table;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Drop the listed countries, pass the rest.
    Deny,
    /// Pass the listed countries, drop the rest.
    Allow,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    /// Blocked countries (deny-list) or allowed ones (allow-list).
    pub countries: BTreeSet<CountryId>,
    /// Count what would be dropped, drop nothing.
    pub monitor: bool,
    /// Drop addresses with no country (private, unassigned...). Off by
    /// default so an allow-list cannot cut off the LAN or loopback.
    pub block_unknown: bool,
    /// Sources never dropped, whatever their country (a management network).
    pub exceptions: Vec<IpNetwork>,
}

/// Why a packet got its verdict: the userspace twin of the XDP program's
/// decision, used by `lookup` and by the tests as the reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Exception,
    Country(CountryId, Action),
}

impl Policy {
    pub fn action(&self, country: CountryId) -> Action {
        let drop = if country == NO_COUNTRY {
            self.block_unknown
        } else {
            let listed = self.countries.contains(&country);
            match self.mode {
                Mode::Deny => listed,
                Mode::Allow => !listed,
            }
        };
        match (drop, self.monitor) {
            (false, _) => Action::Pass,
            (true, false) => Action::Drop,
            (true, true) => Action::WouldDrop,
        }
    }

    /// The `POLICY` map contents: one action per country slot.
    pub fn actions(&self) -> impl Iterator<Item = (u32, Action)> + '_ {
        (0..COUNTRY_SLOTS).map(|slot| (slot, self.action(slot as CountryId)))
    }

    /// What the XDP program decides for a packet from `ip`: an exception
    /// only shows when it overrides a drop (it cannot change a pass).
    pub fn verdict(&self, table: &Table, ip: IpAddr) -> Verdict {
        let country = table.lookup(ip).map_or(NO_COUNTRY, |(_, c)| c);
        let action = self.action(country);
        if action != Action::Pass && self.exceptions.iter().any(|net| net.contains(ip)) {
            return Verdict::Exception;
        }
        Verdict::Country(country, action)
    }
}

#[cfg(test)]
mod tests {
    use geoblock_common::country_id;

    use super::*;

    fn policy(mode: Mode, codes: &[&[u8; 2]]) -> Policy {
        Policy {
            mode,
            countries: codes.iter().map(|c| country_id(**c).unwrap()).collect(),
            monitor: false,
            block_unknown: false,
            exceptions: vec![],
        }
    }

    fn id(code: &[u8; 2]) -> CountryId {
        country_id(*code).unwrap()
    }

    #[test]
    fn deny_list_drops_only_listed() {
        let p = policy(Mode::Deny, &[b"RU", b"KP"]);
        assert_eq!(p.action(id(b"RU")), Action::Drop);
        assert_eq!(p.action(id(b"KP")), Action::Drop);
        assert_eq!(p.action(id(b"DE")), Action::Pass);
        assert_eq!(p.action(NO_COUNTRY), Action::Pass);
    }

    #[test]
    fn allow_list_drops_the_rest_but_not_unknown() {
        let p = policy(Mode::Allow, &[b"DE"]);
        assert_eq!(p.action(id(b"DE")), Action::Pass);
        assert_eq!(p.action(id(b"US")), Action::Drop);
        assert_eq!(p.action(NO_COUNTRY), Action::Pass);
        let strict = Policy { block_unknown: true, ..p };
        assert_eq!(strict.action(NO_COUNTRY), Action::Drop);
    }

    #[test]
    fn monitor_turns_drops_into_would_drops() {
        let p = Policy { monitor: true, ..policy(Mode::Deny, &[b"CN"]) };
        assert_eq!(p.action(id(b"CN")), Action::WouldDrop);
        assert_eq!(p.action(id(b"FR")), Action::Pass);
    }

    #[test]
    fn exceptions_override_drops_only() {
        let table = Table {
            v4: vec![("10.0.0.0/8".parse().unwrap(), id(b"CN"))],
            v6: vec![],
        };
        let p = Policy {
            exceptions: vec!["10.1.0.0/16".parse().unwrap()],
            ..policy(Mode::Deny, &[b"CN"])
        };
        assert_eq!(p.verdict(&table, "10.1.2.3".parse().unwrap()), Verdict::Exception);
        assert_eq!(
            p.verdict(&table, "10.2.0.1".parse().unwrap()),
            Verdict::Country(id(b"CN"), Action::Drop)
        );
        assert_eq!(
            p.verdict(&table, "11.0.0.1".parse().unwrap()),
            Verdict::Country(NO_COUNTRY, Action::Pass)
        );
        let allow_cn = Policy { mode: Mode::Allow, ..p };
        assert_eq!(
            allow_cn.verdict(&table, "10.1.2.3".parse().unwrap()),
            Verdict::Country(id(b"CN"), Action::Pass)
        );
    }

    #[test]
    fn actions_cover_every_slot() {
        let p = policy(Mode::Allow, &[b"DE"]);
        let actions: Vec<_> = p.actions().collect();
        assert_eq!(actions.len(), COUNTRY_SLOTS as usize);
        assert_eq!(actions[id(b"DE") as usize], (u32::from(id(b"DE")), Action::Pass));
    }
}
