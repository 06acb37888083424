//! Who is blocked: the operator's policy, and the per-country actions the
//! kernel's `POLICY` map holds.

pub mod explain;
pub mod lockout;

use std::{collections::BTreeSet, fmt, net::IpAddr};

use geoblock_common::{Action, CountryId, COUNTRY_SLOTS, NO_COUNTRY};
use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use crate::{
    country,
    data::{parse_network, table::Table, CidrError},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Drop the listed countries, pass the rest.
    Deny,
    /// Pass the listed countries, drop the rest.
    Allow,
}

/// The JSON form (in `geoblock status`) names countries by their codes and
/// exceptions as CIDRs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub mode: Mode,
    /// Blocked countries (deny-list) or allowed ones (allow-list).
    #[serde(with = "codes")]
    pub countries: BTreeSet<CountryId>,
    /// Count what would be dropped, drop nothing.
    pub monitor: bool,
    /// Drop addresses with no country (private, unassigned...). Off by
    /// default so an allow-list cannot cut off the LAN or loopback.
    pub block_unknown: bool,
    /// Sources never dropped, whatever their country (a management network).
    pub exceptions: Vec<IpNetwork>,
}

/// A change to the running policy (`geoblock block CN`, ...), applied
/// without touching the tables. Countries and CIDRs travel as text and are
/// validated here, so every client gets the same errors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "change")]
pub enum Change {
    /// Drop these countries: added to a deny-list, removed from an allow-list.
    Block {
        countries: Vec<String>,
    },
    /// Pass these countries: removed from a deny-list, added to an allow-list.
    Unblock {
        countries: Vec<String>,
    },
    /// Allow-list of exactly these countries (as `run --allow`).
    Allow {
        countries: Vec<String>,
    },
    /// `deny` / `allow`: enforce, reading the country list that way;
    /// `monitor`: keep the list, count would-drops, drop nothing.
    Mode {
        mode: Enforcement,
    },
    ExceptAdd {
        cidr: String,
    },
    ExceptDel {
        cidr: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Enforcement {
    Deny,
    Allow,
    Monitor,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChangeError {
    #[error(transparent)]
    Country(#[from] country::UnknownCountry),
    #[error(transparent)]
    Cidr(#[from] CidrError),
    #[error("{0} is not an exception")]
    NoSuchException(IpNetwork),
    #[error("no country given")]
    NoCountries,
}

/// Why a packet got its verdict: the userspace twin of the XDP program's
/// decision, used by `lookup` and by the tests as the reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Exception,
    Country(CountryId, Action),
}

/// Why the policy treats an address as it does: the one vocabulary of
/// `geoblock explain`, drop events and their JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// Deny-list: its country is on the list.
    BlockedCountry,
    /// Deny-list: its country is not on the list.
    NotBlocked,
    /// Allow-list: its country is on the list.
    Allowed,
    /// Allow-list: its country is not on the list.
    NotAllowed,
    /// No country claims it, and `--block-unknown` drops such sources.
    NoCountryBlocked,
    /// No country claims it: passed (no `--block-unknown`).
    NoCountry,
    /// Inside an exception: passed, though its country's action drops.
    Exception,
}

impl Reason {
    /// How text output names it (the same as its JSON value).
    pub fn name(self) -> &'static str {
        match self {
            Reason::BlockedCountry => "blocked-country",
            Reason::NotBlocked => "not-blocked",
            Reason::Allowed => "allowed",
            Reason::NotAllowed => "not-allowed",
            Reason::NoCountryBlocked => "no-country-blocked",
            Reason::NoCountry => "no-country",
            Reason::Exception => "exception",
        }
    }

    /// Whether the country's action drops (or, monitoring, would drop).
    fn drops(self) -> bool {
        matches!(self, Reason::BlockedCountry | Reason::NotAllowed | Reason::NoCountryBlocked)
    }
}

/// The verdict on an address and its reason; with `monitor`, a drop is a
/// would-drop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    pub reason: Reason,
}

impl Policy {
    /// The list and how it reads: "deny-list, blocking CN,RU".
    pub fn list(&self) -> String {
        let codes: Vec<&str> = self.countries.iter().map(|&c| country::code(c)).collect();
        match self.mode {
            Mode::Deny => format!("deny-list, blocking {}", codes.join(",")),
            Mode::Allow => format!("allow-list, allowing only {}", codes.join(",")),
        }
    }

    pub fn action(&self, country: CountryId) -> Action {
        match (self.reason(country).drops(), self.monitor) {
            (false, _) => Action::Pass,
            (true, false) => Action::Drop,
            (true, true) => Action::WouldDrop,
        }
    }

    /// Why `country` gets its action.
    pub fn reason(&self, country: CountryId) -> Reason {
        if country == NO_COUNTRY {
            return if self.block_unknown { Reason::NoCountryBlocked } else { Reason::NoCountry };
        }
        match (self.mode, self.countries.contains(&country)) {
            (Mode::Deny, true) => Reason::BlockedCountry,
            (Mode::Deny, false) => Reason::NotBlocked,
            (Mode::Allow, true) => Reason::Allowed,
            (Mode::Allow, false) => Reason::NotAllowed,
        }
    }

    /// What the XDP program decides for a packet from `ip` of `country`,
    /// and why: an exception only shows when it overrides a drop (it cannot
    /// change a pass).
    pub fn decide(&self, country: CountryId, ip: IpAddr) -> Decision {
        let action = self.action(country);
        if action != Action::Pass && self.exceptions.iter().any(|net| net.contains(ip)) {
            return Decision { action: Action::Pass, reason: Reason::Exception };
        }
        Decision { action, reason: self.reason(country) }
    }

    /// This policy with `change` made.
    pub fn changed(&self, change: &Change) -> Result<Policy, ChangeError> {
        let mut new = self.clone();
        match change {
            Change::Block { countries } => new.edit_list(countries, self.mode == Mode::Deny)?,
            Change::Unblock { countries } => new.edit_list(countries, self.mode == Mode::Allow)?,
            Change::Allow { countries } => {
                new.countries.clear();
                new.edit_list(countries, true)?;
                (new.mode, new.monitor) = (Mode::Allow, false);
            }
            Change::Mode { mode: Enforcement::Monitor } => new.monitor = true,
            Change::Mode { mode: Enforcement::Deny } => (new.mode, new.monitor) = (Mode::Deny, false),
            Change::Mode { mode: Enforcement::Allow } => (new.mode, new.monitor) = (Mode::Allow, false),
            Change::ExceptAdd { cidr } => {
                let net = parse_network(cidr)?;
                if !new.exceptions.contains(&net) {
                    new.exceptions.push(net);
                }
            }
            Change::ExceptDel { cidr } => {
                let net = parse_network(cidr)?;
                let before = new.exceptions.len();
                new.exceptions.retain(|n| *n != net);
                if new.exceptions.len() == before {
                    return Err(ChangeError::NoSuchException(net));
                }
            }
        }
        Ok(new)
    }

    /// Adds `codes` to the country list (`add`) or removes them.
    fn edit_list(&mut self, codes: &[String], add: bool) -> Result<(), ChangeError> {
        if codes.is_empty() {
            return Err(ChangeError::NoCountries);
        }
        let ids = codes.iter().map(|c| country::parse(c)).collect::<Result<Vec<_>, _>>()?;
        for id in ids {
            match add {
                true => self.countries.insert(id),
                false => self.countries.remove(&id),
            };
        }
        Ok(())
    }

    /// The `POLICY` map contents: one action per country slot.
    pub fn actions(&self) -> impl Iterator<Item = (u32, Action)> + '_ {
        (0..COUNTRY_SLOTS).map(|slot| (slot, self.action(slot as CountryId)))
    }

    /// What the XDP program decides for a packet from `ip`: an exception
    /// only shows when it overrides a drop (it cannot change a pass).
    pub fn verdict(&self, table: &Table, ip: IpAddr) -> Verdict {
        let country = table.lookup(ip).map_or(NO_COUNTRY, |(_, c)| c);
        match self.decide(country, ip) {
            Decision { reason: Reason::Exception, .. } => Verdict::Exception,
            Decision { action, .. } => Verdict::Country(country, action),
        }
    }
}

/// The policy in one line, for logs, `config check` and control answers.
impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.list())?;
        if self.block_unknown {
            f.write_str("; addresses without a country are dropped")?;
        }
        if !self.exceptions.is_empty() {
            let nets: Vec<String> = self.exceptions.iter().map(|n| n.to_string()).collect();
            write!(f, "; exceptions {}", nets.join(","))?;
        }
        if self.monitor {
            f.write_str("; MONITOR mode: nothing is dropped, would-drops are counted")?;
        }
        Ok(())
    }
}

/// Countries as their ISO codes in JSON.
mod codes {
    use std::collections::BTreeSet;

    use geoblock_common::CountryId;
    use serde::{de::Error as _, Deserialize as _, Deserializer, Serializer};

    use crate::country;

    pub fn serialize<S: Serializer>(ids: &BTreeSet<CountryId>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(ids.iter().map(|&id| country::code(id)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeSet<CountryId>, D::Error> {
        let codes = Vec::<String>::deserialize(d)?;
        codes.iter().map(|code| country::parse(code).map_err(D::Error::custom)).collect()
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
        let table = Table { v4: vec![("10.0.0.0/8".parse().unwrap(), id(b"CN"))], v6: vec![] };
        let p = Policy { exceptions: vec!["10.1.0.0/16".parse().unwrap()], ..policy(Mode::Deny, &[b"CN"]) };
        assert_eq!(p.verdict(&table, "10.1.2.3".parse().unwrap()), Verdict::Exception);
        assert_eq!(p.verdict(&table, "10.2.0.1".parse().unwrap()), Verdict::Country(id(b"CN"), Action::Drop));
        assert_eq!(p.verdict(&table, "11.0.0.1".parse().unwrap()), Verdict::Country(NO_COUNTRY, Action::Pass));
        let allow_cn = Policy { mode: Mode::Allow, ..p };
        assert_eq!(allow_cn.verdict(&table, "10.1.2.3".parse().unwrap()), Verdict::Country(id(b"CN"), Action::Pass));
    }

    #[test]
    fn every_reason_and_its_action() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let decide = |p: &Policy, c| p.decide(c, ip);
        let deny = policy(Mode::Deny, &[b"CN"]);
        assert_eq!(decide(&deny, id(b"CN")), Decision { action: Action::Drop, reason: Reason::BlockedCountry });
        assert_eq!(decide(&deny, id(b"DE")), Decision { action: Action::Pass, reason: Reason::NotBlocked });
        assert_eq!(decide(&deny, NO_COUNTRY), Decision { action: Action::Pass, reason: Reason::NoCountry });
        let allow = policy(Mode::Allow, &[b"DE"]);
        assert_eq!(decide(&allow, id(b"DE")), Decision { action: Action::Pass, reason: Reason::Allowed });
        assert_eq!(decide(&allow, id(b"CN")), Decision { action: Action::Drop, reason: Reason::NotAllowed });
        let strict = Policy { block_unknown: true, ..allow.clone() };
        assert_eq!(decide(&strict, NO_COUNTRY), Decision { action: Action::Drop, reason: Reason::NoCountryBlocked });
        let monitor = Policy { monitor: true, ..deny.clone() };
        assert_eq!(decide(&monitor, id(b"CN")), Decision { action: Action::WouldDrop, reason: Reason::BlockedCountry });
        let excepted = Policy { exceptions: vec!["192.0.2.0/24".parse().unwrap()], ..deny };
        assert_eq!(decide(&excepted, id(b"CN")), Decision { action: Action::Pass, reason: Reason::Exception });
        assert_eq!(decide(&excepted, id(b"DE")), Decision { action: Action::Pass, reason: Reason::NotBlocked });
    }

    fn codes(list: &[&str]) -> Vec<String> {
        list.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn block_and_unblock_follow_the_list_mode() {
        let deny = policy(Mode::Deny, &[b"CN"]);
        let blocked = deny.changed(&Change::Block { countries: codes(&["ru"]) }).unwrap();
        assert_eq!(blocked.action(id(b"RU")), Action::Drop);
        let unblocked = blocked.changed(&Change::Unblock { countries: codes(&["CN"]) }).unwrap();
        assert_eq!(unblocked.action(id(b"CN")), Action::Pass);
        let allow = policy(Mode::Allow, &[b"DE", b"FR"]);
        let blocked = allow.changed(&Change::Block { countries: codes(&["FR"]) }).unwrap();
        assert_eq!(blocked.action(id(b"FR")), Action::Drop);
        let unblocked = allow.changed(&Change::Unblock { countries: codes(&["US"]) }).unwrap();
        assert_eq!(unblocked.action(id(b"US")), Action::Pass);
        assert_eq!(
            deny.changed(&Change::Block { countries: codes(&["XX"]) }),
            Err(ChangeError::Country(country::UnknownCountry("XX".into())))
        );
        assert_eq!(deny.changed(&Change::Block { countries: vec![] }), Err(ChangeError::NoCountries));
    }

    #[test]
    fn allow_and_mode_switch_the_list() {
        let deny = policy(Mode::Deny, &[b"CN"]);
        let allow = deny.changed(&Change::Allow { countries: codes(&["DE"]) }).unwrap();
        assert_eq!(allow, policy(Mode::Allow, &[b"DE"]));
        let monitor = allow.changed(&Change::Mode { mode: Enforcement::Monitor }).unwrap();
        assert_eq!(monitor.action(id(b"US")), Action::WouldDrop);
        let deny_de = monitor.changed(&Change::Mode { mode: Enforcement::Deny }).unwrap();
        assert_eq!(deny_de, policy(Mode::Deny, &[b"DE"]));
    }

    #[test]
    fn exceptions_are_added_once_and_removed() {
        let p = policy(Mode::Deny, &[b"CN"]);
        let add = Change::ExceptAdd { cidr: "10.1.0.0/16".into() };
        let with = p.changed(&add).unwrap().changed(&add).unwrap();
        assert_eq!(with.exceptions, vec!["10.1.0.0/16".parse::<IpNetwork>().unwrap()]);
        let del = Change::ExceptDel { cidr: "10.1.0.0/16".into() };
        assert_eq!(with.changed(&del).unwrap(), p);
        assert!(matches!(p.changed(&del), Err(ChangeError::NoSuchException(_))));
        assert!(matches!(p.changed(&Change::ExceptAdd { cidr: "10.1/99".into() }), Err(ChangeError::Cidr(_))));
    }

    #[test]
    fn exceptions_with_host_bits_are_refused_not_widened() {
        let p = policy(Mode::Deny, &[b"CN"]);
        for change in
            [Change::ExceptAdd { cidr: "10.1.0.7/16".into() }, Change::ExceptDel { cidr: "10.1.0.7/16".into() }]
        {
            let err = p.changed(&change).unwrap_err();
            assert_eq!(err.to_string(), "'10.1.0.7/16' has host bits set (the network is 10.1.0.0)");
        }
    }

    #[test]
    fn json_names_countries_by_code_and_exceptions_as_cidrs() {
        let p = Policy { exceptions: vec!["10.1.0.0/16".parse().unwrap()], ..policy(Mode::Deny, &[b"RU", b"CN"]) };
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["countries"], serde_json::json!(["CN", "RU"]));
        assert_eq!(json["exceptions"], serde_json::json!(["10.1.0.0/16"]));
        assert_eq!(serde_json::from_value::<Policy>(json).unwrap(), p);
        assert_eq!(p.to_string(), "deny-list, blocking CN,RU; exceptions 10.1.0.0/16");
    }

    #[test]
    fn actions_cover_every_slot() {
        let p = policy(Mode::Allow, &[b"DE"]);
        let actions: Vec<_> = p.actions().collect();
        assert_eq!(actions.len(), COUNTRY_SLOTS as usize);
        assert_eq!(actions[id(b"DE") as usize], (u32::from(id(b"DE")), Action::Pass));
    }
}
