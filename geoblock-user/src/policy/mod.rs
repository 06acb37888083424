//! Who is blocked: the operator's policy, an ordered list of rules each
//! scoped by protocol and destination port with its own country list, and
//! the actions and rule maps the kernel holds.

pub mod explain;
pub mod lockout;
pub mod rules;
pub mod selectors;

use std::{collections::BTreeSet, fmt, net::IpAddr};

use geoblock_common::{Action, CountryId, MAX_RULES, NO_COUNTRY, RULE_NAME_LEN};
use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

pub use geoblock_common::Direction;

pub use self::rules::{PortRange, Protocol, RuleMaps, ScopeError};
pub use self::selectors::{Selector, SelectorTable};
use crate::{
    country,
    data::{parse_network, table::Table, CidrError},
};

/// The rule today's flags and `[policy]` make: every protocol and port.
pub const DEFAULT_RULE: &str = "default";
/// How counters name the packets no rule matched: parentheses, which no
/// rule name has.
pub const UNMATCHED_RULE: &str = "(none)";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Drop the listed countries, pass the rest.
    Deny,
    /// Pass the listed countries, drop the rest.
    Allow,
}

/// How a rule keeps out what it blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleAction {
    /// Silently.
    #[default]
    Drop,
    /// Telling the sender: a TCP reset or an ICMP administratively
    /// prohibited inbound, an error from the kernel to a local sender
    /// outbound.
    Reject,
}

/// One rule: the packets it matches (a direction, a protocol, destination
/// ports) and the country policy they get. The JSON form (in `geoblock status`) names
/// countries by their codes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// `[a-z0-9_-]`, 1 to 31 bytes, unique in the policy.
    pub name: String,
    /// Inbound rules judge a packet's source, outbound ones its destination.
    #[serde(default)]
    pub direction: Direction,
    #[serde(default)]
    pub protocol: Protocol,
    /// Destination ports, sorted and merged; empty: every port.
    #[serde(default)]
    pub ports: Vec<PortRange>,
    pub mode: Mode,
    /// Blocked countries (deny-list) or allowed ones (allow-list).
    #[serde(with = "codes")]
    pub countries: BTreeSet<CountryId>,
    /// Count what would be dropped, drop nothing.
    pub monitor: bool,
    /// Drop addresses with no country (private, unassigned...). Off by
    /// default so an allow-list cannot cut off the LAN or loopback.
    pub block_unknown: bool,
    /// Drop or reject what the rule blocks.
    #[serde(default)]
    pub action: RuleAction,
    /// Selectors whose addresses pass, whatever their country (tried
    /// before the block selectors).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub allow: BTreeSet<Selector>,
    /// Selectors whose addresses are blocked, whatever their country.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub block: BTreeSet<Selector>,
}

/// The policy: the first rule that matches a packet decides, and a packet
/// no rule matches passes. Exceptions and replies hold for every rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "json::PolicyJson", into = "json::PolicyJson")]
pub struct Policy {
    /// 1 to [`MAX_RULES`], in the order they are tried.
    pub rules: Vec<Rule>,
    /// Sources never dropped, whatever their country (a management network).
    pub exceptions: Vec<IpNetwork>,
    /// Replies to connections this host opened pass, whatever their source.
    pub replies: bool,
}

/// Why a set of rules was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("no rule: give --block or --allow (policy.block or policy.allow, or [[rule]] tables, in the config)")]
    NoRules,
    #[error("{0} rules: at most {MAX_RULES}")]
    TooManyRules(usize),
    #[error("rule name '{0}': 1 to {max} characters of a-z, 0-9, _ and -", max = RULE_NAME_LEN - 1)]
    Name(String),
    #[error("two rules are named '{0}'")]
    DuplicateName(String),
    #[error("rule '{0}': icmp has no ports")]
    IcmpPorts(String),
}

/// A change to the running policy (`geoblock block CN`, ...), applied
/// without touching the tables. Countries and CIDRs travel as text and are
/// validated here, so every client gets the same errors. `rule` names the
/// rule to change; it may be left out when the policy has one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "change")]
pub enum Change {
    /// Drop these countries: added to a deny-list, removed from an allow-list.
    Block {
        countries: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rule: Option<String>,
    },
    /// Pass these countries: removed from a deny-list, added to an allow-list.
    Unblock {
        countries: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rule: Option<String>,
    },
    /// Allow-list of exactly these countries (as `run --allow`).
    Allow {
        countries: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rule: Option<String>,
    },
    /// `deny` / `allow`: enforce, reading the country list that way;
    /// `monitor`: keep the list, count would-drops, drop nothing.
    Mode {
        mode: Enforcement,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rule: Option<String>,
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
    Entry(#[from] selectors::EntryError),
    #[error(transparent)]
    Cidr(#[from] CidrError),
    #[error("{0} is not an exception")]
    NoSuchException(IpNetwork),
    #[error("no country given")]
    NoCountries,
    #[error("no rule is named '{name}' (the rules: {rules})")]
    NoSuchRule { name: String, rules: String },
    #[error("which rule? The policy has several ({0}): name one with --rule")]
    WhichRule(String),
}

/// Why a packet got its verdict: the userspace twin of the XDP program's
/// decision, used by the tests as the reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No rule matches the packet: it passes.
    NoRule,
    Exception,
    Country(CountryId, Action),
    /// A selector of the rule decided (see [`Rule::selector_decision`]);
    /// the address's country is counted as for any verdict.
    Selector(CountryId, Selector, Action),
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
    /// One of the rule's allow selectors holds it: passed.
    AllowedSelector,
    /// One of the rule's block selectors holds it (and no allow selector).
    BlockedSelector,
    /// No rule matches the packet: passed.
    NoRule,
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
            Reason::AllowedSelector => "allowed-selector",
            Reason::BlockedSelector => "blocked-selector",
            Reason::NoRule => "no-rule",
        }
    }

    /// Whether the country's action drops (or, monitoring, would drop).
    fn drops(self) -> bool {
        matches!(self, Reason::BlockedCountry | Reason::NotAllowed | Reason::NoCountryBlocked | Reason::BlockedSelector)
    }
}

/// The verdict on an address, its reason, and the selector that decided
/// (if one did); with `monitor`, a drop is a would-drop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision<'a> {
    pub action: Action,
    pub reason: Reason,
    pub selector: Option<&'a Selector>,
}

impl Rule {
    /// A rule for every protocol and port, enforcing, passing addresses
    /// without a country.
    pub fn new(name: &str, mode: Mode, countries: BTreeSet<CountryId>) -> Rule {
        Rule {
            name: name.into(),
            direction: Direction::Inbound,
            protocol: Protocol::Any,
            ports: vec![],
            mode,
            countries,
            monitor: false,
            block_unknown: false,
            action: RuleAction::Drop,
            allow: BTreeSet::new(),
            block: BTreeSet::new(),
        }
    }

    /// The list and how it reads: "deny-list, blocking CN,RU,AS4134;
    /// allowing AS64500 whatever its country".
    pub fn list(&self) -> String {
        let named = |set: &BTreeSet<Selector>| set.iter().map(Selector::to_string).collect::<Vec<_>>();
        let mut entries: Vec<String> = self.countries.iter().map(|&c| country::code(c).to_string()).collect();
        let (listed, other, other_verb) = match self.mode {
            Mode::Deny => (&self.block, &self.allow, "allowing"),
            Mode::Allow => (&self.allow, &self.block, "blocking"),
        };
        entries.extend(named(listed));
        // A deny-list of `allow` selectors alone (`block = []`) lists nothing.
        let mut out = match (self.mode, entries.is_empty()) {
            (Mode::Deny, true) => "deny-list, blocking nothing".to_string(),
            (Mode::Allow, true) => "allow-list, allowing nothing".to_string(),
            (Mode::Deny, false) => format!("deny-list, blocking {}", entries.join(",")),
            (Mode::Allow, false) => format!("allow-list, allowing only {}", entries.join(",")),
        };
        if !other.is_empty() {
            out += &format!("; {other_verb} {} whatever their country", named(other).join(","));
        }
        out
    }

    pub fn action(&self, country: CountryId) -> Action {
        match self.reason(country).drops() {
            false => Action::Pass,
            true => self.blocking_action(),
        }
    }

    /// What the rule does with what it blocks.
    fn blocking_action(&self) -> Action {
        match (self.monitor, self.action) {
            (true, _) => Action::WouldDrop,
            (false, RuleAction::Drop) => Action::Drop,
            (false, RuleAction::Reject) => Action::Reject,
        }
    }

    /// The rule's selectors, allow and block.
    pub fn selectors(&self) -> impl Iterator<Item = &Selector> {
        self.allow.iter().chain(&self.block)
    }

    /// What the rule's selectors decide for an address `held` by these
    /// selectors (in [`Selector`] order): the first allow selector passes
    /// it, else the first block selector blocks it; `None`: the country
    /// decides. The kernel's selector verdicts are made by this too.
    pub fn selector_decision<'a>(&self, held: &'a [Selector]) -> Option<(Action, &'a Selector)> {
        if let Some(allowed) = held.iter().find(|s| self.allow.contains(s)) {
            return Some((Action::Pass, allowed));
        }
        held.iter().find(|s| self.block.contains(s)).map(|blocked| (self.blocking_action(), blocked))
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
    /// held by the selectors `held`, that this rule matches, and why: the
    /// rule's selectors (see [`Rule::selector_decision`]), else its
    /// country policy. An exception only shows when it overrides a drop
    /// (it cannot change a pass).
    pub fn decide<'a>(
        &self,
        country: CountryId,
        held: &'a [Selector],
        ip: IpAddr,
        exceptions: &[IpNetwork],
    ) -> Decision<'a> {
        let decision = match self.selector_decision(held) {
            Some((Action::Pass, s)) => {
                Decision { action: Action::Pass, reason: Reason::AllowedSelector, selector: Some(s) }
            }
            Some((action, s)) => Decision { action, reason: Reason::BlockedSelector, selector: Some(s) },
            None => Decision { action: self.action(country), reason: self.reason(country), selector: None },
        };
        if decision.action != Action::Pass && exceptions.iter().any(|net| net.contains(ip)) {
            return Decision { action: Action::Pass, reason: Reason::Exception, selector: None };
        }
        decision
    }

    /// The list, and what else the rule does: "deny-list, blocking CN;
    /// MONITOR mode: ...".
    pub fn summary(&self) -> String {
        let mut out = self.list();
        if self.block_unknown {
            out += "; addresses without a country are dropped";
        }
        if self.monitor {
            out += "; MONITOR mode: nothing is dropped, would-drops are counted";
        } else if self.action == RuleAction::Reject {
            out += match self.direction {
                Direction::Inbound => "; blocked packets are rejected (a TCP reset or an ICMP error to the sender)",
                Direction::Outbound => "; blocked packets are rejected (local senders get an error at once)",
            };
        }
        out
    }

    /// Blocks (`block`) or passes the entries of `codes`: countries are
    /// added to or removed from the country list as its mode reads;
    /// a selector moves to the block or the allow selectors.
    fn edit_list(&mut self, codes: &[String], block: bool) -> Result<(), ChangeError> {
        if codes.is_empty() {
            return Err(ChangeError::NoCountries);
        }
        let (countries, selectors) = selectors::parse_entries(codes)?;
        for id in countries {
            match block == (self.mode == Mode::Deny) {
                true => self.countries.insert(id),
                false => self.countries.remove(&id),
            };
        }
        let (to, from) = if block { (&mut self.block, &mut self.allow) } else { (&mut self.allow, &mut self.block) };
        for selector in selectors {
            from.remove(&selector);
            to.insert(selector);
        }
        Ok(())
    }

    /// Makes `change`, a country or mode change, to this rule.
    fn change(&mut self, change: &Change) -> Result<(), ChangeError> {
        match change {
            Change::Block { countries, .. } => self.edit_list(countries, true)?,
            Change::Unblock { countries, .. } => self.edit_list(countries, false)?,
            Change::Allow { countries, .. } => {
                (self.mode, self.monitor) = (Mode::Allow, false);
                self.countries.clear();
                self.allow.clear();
                self.edit_list(countries, false)?;
            }
            Change::Mode { mode: Enforcement::Monitor, .. } => self.monitor = true,
            Change::Mode { mode: Enforcement::Deny, .. } => (self.mode, self.monitor) = (Mode::Deny, false),
            Change::Mode { mode: Enforcement::Allow, .. } => (self.mode, self.monitor) = (Mode::Allow, false),
            // Exceptions are the policy's, not a rule's: Policy::changed makes them.
            Change::ExceptAdd { .. } | Change::ExceptDel { .. } => {}
        }
        Ok(())
    }
}

/// "ssh (inbound, tcp port 22): allow-list, allowing only DE".
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.name, self.traffic(), self.summary())
    }
}

impl RuleAction {
    /// The one spelling in config, text and JSON.
    pub fn name(self) -> &'static str {
        match self {
            RuleAction::Drop => "drop",
            RuleAction::Reject => "reject",
        }
    }
}

impl Change {
    /// The rule a country or mode change names, if it names one.
    fn rule(&self) -> Option<&str> {
        match self {
            Change::Block { rule, .. }
            | Change::Unblock { rule, .. }
            | Change::Allow { rule, .. }
            | Change::Mode { rule, .. } => rule.as_deref(),
            Change::ExceptAdd { .. } | Change::ExceptDel { .. } => None,
        }
    }
}

impl Policy {
    /// Checks `rules`: 1 to [`MAX_RULES`], valid unique names, no ports
    /// for icmp.
    pub fn new(rules: Vec<Rule>, exceptions: Vec<IpNetwork>, replies: bool) -> Result<Policy, PolicyError> {
        match rules.len() {
            0 => return Err(PolicyError::NoRules),
            n if n > MAX_RULES as usize => return Err(PolicyError::TooManyRules(n)),
            _ => {}
        }
        for (i, rule) in rules.iter().enumerate() {
            if !valid_name(&rule.name) {
                return Err(PolicyError::Name(rule.name.clone()));
            }
            if rules[..i].iter().any(|r| r.name == rule.name) {
                return Err(PolicyError::DuplicateName(rule.name.clone()));
            }
            if !rule.protocol.has_ports() && !rule.ports.is_empty() {
                return Err(PolicyError::IcmpPorts(rule.name.clone()));
            }
        }
        Ok(Policy { rules, exceptions, replies })
    }

    /// The rules' names, in order: "ssh, api".
    pub fn names(&self) -> String {
        self.rules.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// Whether every packet going `direction` meets a rule (one of that
    /// direction matches everything).
    pub fn covers(&self, direction: Direction) -> bool {
        self.rules.iter().any(|r| r.direction == direction && r.matches_everything())
    }

    /// Whether rules judge packets going `direction` at all.
    pub fn judges(&self, direction: Direction) -> bool {
        self.rules.iter().any(|r| r.direction == direction)
    }

    /// The policy's one rule when it reads as a policy did before rules
    /// had scopes: inbound, every protocol and port.
    pub fn whole_list(&self) -> Option<&Rule> {
        match self.rules.as_slice() {
            [rule] if rule.direction == Direction::Inbound && rule.matches_everything() => Some(rule),
            _ => None,
        }
    }

    /// Every country a rule names (the shrink guard watches them).
    pub fn countries(&self) -> BTreeSet<CountryId> {
        self.rules.iter().flat_map(|r| r.countries.iter().copied()).collect()
    }

    /// Every selector a rule names: what the selector table is compiled for.
    pub fn selectors(&self) -> BTreeSet<Selector> {
        self.rules.iter().flat_map(Rule::selectors).cloned().collect()
    }

    /// This policy with `change` made.
    pub fn changed(&self, change: &Change) -> Result<Policy, ChangeError> {
        let mut new = self.clone();
        match change {
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
            _ => new.rule_named(change.rule())?.change(change)?,
        }
        Ok(new)
    }

    /// The rule called `name`; without a name, the only rule.
    fn rule_named(&mut self, name: Option<&str>) -> Result<&mut Rule, ChangeError> {
        let names = self.names();
        match name {
            Some(name) => self
                .rules
                .iter_mut()
                .find(|r| r.name == name)
                .ok_or_else(|| ChangeError::NoSuchRule { name: name.into(), rules: names }),
            None if self.rules.len() == 1 => Ok(&mut self.rules[0]),
            None => Err(ChangeError::WhichRule(names)),
        }
    }

    /// The policy's lines in `status` and `config check`: each rule in
    /// order (what it matches, its list, monitor, addresses without a
    /// country), what no rule matches, exceptions, replies.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for rule in &self.rules {
            let mode = match rule.monitor {
                true => "MONITOR (nothing dropped)".to_string(),
                false => format!("enforcing: {}", rule.action.name()),
            };
            let unknown = if rule.block_unknown { "blocked" } else { "passed" };
            out += &format!(
                "rule        {} ({}): {}; {mode}; addresses without a country {unknown}\n",
                rule.name,
                rule.traffic(),
                rule.list()
            );
        }
        for direction in Direction::ALL.into_iter().filter(|&d| self.judges(d) && !self.covers(d)) {
            out += &format!("no rule     pass: {} packets no rule matches\n", direction.name());
        }
        let exceptions: Vec<String> = self.exceptions.iter().map(|n| n.to_string()).collect();
        out += &format!("exceptions  {}\n", if exceptions.is_empty() { "none".into() } else { exceptions.join(",") });
        out + &format!("replies     {}\n", replies_text(self.replies))
    }

    /// What the XDP program decides for a packet from `ip`, held by the
    /// selectors `held`, of IP protocol `protocol` to `port` (see
    /// [`Policy::rule_for`]).
    pub fn verdict(&self, table: &Table, held: &[Selector], ip: IpAddr, protocol: u8, port: Option<u16>) -> Verdict {
        let Some(rule) = self.rule_for(Direction::Inbound, protocol, port) else {
            return Verdict::NoRule;
        };
        let country = table.lookup(ip).map_or(NO_COUNTRY, |(_, c)| c);
        match self.rules[rule].decide(country, held, ip, &self.exceptions) {
            Decision { reason: Reason::Exception, .. } => Verdict::Exception,
            Decision { action, selector: Some(s), .. } => Verdict::Selector(country, s.clone(), action),
            Decision { action, .. } => Verdict::Country(country, action),
        }
    }
}

/// How output says whether replies pass.
pub fn replies_text(on: bool) -> &'static str {
    match on {
        true => "replies to this host's own connections pass (replies on)",
        false => "replies are judged like any packet (replies off)",
    }
}

/// A policy of this one rule, without exceptions, replies passing.
impl From<Rule> for Policy {
    fn from(rule: Rule) -> Policy {
        Policy { rules: vec![rule], exceptions: vec![], replies: true }
    }
}

/// `[a-z0-9_-]`, 1 to 31 bytes: it fits `RULE_NAMES` and a metrics label.
fn valid_name(name: &str) -> bool {
    (1..RULE_NAME_LEN).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The policy in one line, for logs, `config check` and control answers.
/// A policy of one inbound rule that matches everything reads as that
/// rule's list.
impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.whole_list() {
            Some(rule) => f.write_str(&rule.summary())?,
            None => {
                let rules: Vec<String> = self.rules.iter().map(|r| format!("rule {r}")).collect();
                f.write_str(&rules.join("; "))?;
                if Direction::ALL.into_iter().any(|d| self.judges(d) && !self.covers(d)) {
                    f.write_str("; other traffic passes")?;
                }
            }
        }
        if !self.exceptions.is_empty() {
            let nets: Vec<String> = self.exceptions.iter().map(|n| n.to_string()).collect();
            write!(f, "; exceptions {}", nets.join(","))?;
        }
        if !self.replies {
            write!(f, "; {}", replies_text(false))?;
        }
        Ok(())
    }
}

/// How a policy travels in JSON (`geoblock status`): its rules, and for a
/// policy of one rule that matches everything also that rule's list as
/// schema 2 wrote the whole policy (`mode`, `countries`, `monitor`,
/// `block_unknown`), so that scripts reading those keep working.
mod json {
    use std::collections::BTreeSet;

    use geoblock_common::CountryId;
    use ipnetwork::IpNetwork;
    use serde::{Deserialize, Serialize};

    use super::{Mode, Policy, Rule, DEFAULT_RULE};

    #[derive(Serialize, Deserialize)]
    pub struct PolicyJson {
        #[serde(default)]
        rules: Vec<Rule>,
        exceptions: Vec<IpNetwork>,
        #[serde(default = "on")]
        replies: bool,
        #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
        whole: Option<WholeList>,
    }

    /// Schema 2's policy: one list for every packet.
    #[derive(Serialize, Deserialize)]
    struct WholeList {
        mode: Mode,
        #[serde(with = "super::codes")]
        countries: BTreeSet<CountryId>,
        monitor: bool,
        block_unknown: bool,
    }

    fn on() -> bool {
        true
    }

    impl From<Policy> for PolicyJson {
        fn from(p: Policy) -> PolicyJson {
            // Schema 2's readers know of no direction: an outbound rule is
            // not theirs to read as the whole policy.
            let whole = p.whole_list().map(|r| WholeList {
                mode: r.mode,
                countries: r.countries.clone(),
                monitor: r.monitor,
                block_unknown: r.block_unknown,
            });
            PolicyJson { rules: p.rules, exceptions: p.exceptions, replies: p.replies, whole }
        }
    }

    /// A daemon of schema 2 without rules sends only the whole list.
    impl From<PolicyJson> for Policy {
        fn from(j: PolicyJson) -> Policy {
            let mut rules = j.rules;
            if let (true, Some(w)) = (rules.is_empty(), j.whole) {
                let rule = Rule::new(DEFAULT_RULE, w.mode, w.countries);
                rules.push(Rule { monitor: w.monitor, block_unknown: w.block_unknown, ..rule });
            }
            Policy { rules, exceptions: j.exceptions, replies: j.replies }
        }
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
mod tests;
