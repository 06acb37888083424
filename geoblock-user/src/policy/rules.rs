//! What a rule matches (a protocol and destination ports), which rule a
//! packet meets first, and the kernel's rule maps that make the same
//! decision with one array read per packet.
//!
//! Fragments: the first fragment of an IP packet carries the ports and is
//! judged by them. Later fragments carry no ports, so they match only rules
//! without ports (of their protocol, or of any); the kernel never
//! reassembles them, and a later fragment whose first one was dropped is
//! useless to the receiver anyway.

use std::{fmt, str::FromStr};

use geoblock_common::{
    packet::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP},
    policy_index, port_rules_index, proto_rules_index, selector_policy_index, Action, CountryId, PortProtocol,
    RuleSlots, SelectorVerdict, COUNTRY_SLOTS, DIRECTIONS, MAX_RULES, POLICY_SELECTORS, PORT_PROTOCOLS,
    PROTO_RULES_SLOTS, RULE_BANK, RULE_BY_PORT, RULE_NONE,
};
use serde::{Deserialize, Serialize};

use super::{Direction, Policy, Rule, Selector};

/// The protocol a rule matches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// Every protocol; with ports, TCP, UDP and SCTP to those ports.
    #[default]
    Any,
    Tcp,
    Udp,
    Sctp,
    /// ICMP and ICMPv6.
    Icmp,
}

/// The protocols whose packets carry a destination port, with their IP
/// protocol numbers.
const PORT_PROTOCOL_NUMBERS: [(PortProtocol, u8); PORT_PROTOCOLS as usize] =
    [(PortProtocol::Tcp, IPPROTO_TCP), (PortProtocol::Udp, IPPROTO_UDP), (PortProtocol::Sctp, IPPROTO_SCTP)];

impl Protocol {
    pub const ALL: [Protocol; 5] = [Protocol::Any, Protocol::Tcp, Protocol::Udp, Protocol::Sctp, Protocol::Icmp];

    /// The one spelling in config, flags and output.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Any => "any",
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
            Protocol::Icmp => "icmp",
        }
    }

    /// Whether packets of IP protocol `number` are this protocol's.
    pub fn matches(self, number: u8) -> bool {
        match self {
            Protocol::Any => true,
            Protocol::Tcp => number == IPPROTO_TCP,
            Protocol::Udp => number == IPPROTO_UDP,
            Protocol::Sctp => number == IPPROTO_SCTP,
            Protocol::Icmp => number == IPPROTO_ICMP || number == IPPROTO_ICMPV6,
        }
    }

    /// Whether its packets have ports a rule can name.
    pub fn has_ports(self) -> bool {
        self != Protocol::Icmp
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Protocol {
    type Err = ScopeError;

    fn from_str(text: &str) -> Result<Protocol, ScopeError> {
        let text = text.trim().to_ascii_lowercase();
        Protocol::ALL.into_iter().find(|p| p.name() == text).ok_or(ScopeError::Protocol(text))
    }
}

/// How text names IP protocol `number`: "tcp", "icmpv6", "proto-47".
pub fn protocol_name(number: u8) -> String {
    match number {
        IPPROTO_ICMP => "icmp".into(),
        IPPROTO_TCP => "tcp".into(),
        IPPROTO_UDP => "udp".into(),
        IPPROTO_ICMPV6 => "icmpv6".into(),
        IPPROTO_SCTP => "sctp".into(),
        other => format!("proto-{other}"),
    }
}

/// An IP protocol number, or its name as [`protocol_name`] writes it.
pub fn parse_protocol_number(text: &str) -> Result<u8, ScopeError> {
    let text = text.trim().to_ascii_lowercase();
    let named = (0..=u8::MAX).find(|&n| protocol_name(n) == text);
    named.or_else(|| text.parse().ok()).ok_or(ScopeError::ProtocolNumber(text))
}

/// Destination ports `first..=last`; written `22` or `8000-8999`, and so
/// in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.first == self.last {
            true => write!(f, "{}", self.first),
            false => write!(f, "{}-{}", self.first, self.last),
        }
    }
}

impl FromStr for PortRange {
    type Err = ScopeError;

    fn from_str(text: &str) -> Result<PortRange, ScopeError> {
        let text = text.trim();
        let port = |t: &str| t.trim().parse::<u16>().map_err(|_| ScopeError::Port(text.into()));
        let (first, last) = match text.split_once('-') {
            Some((first, last)) => (port(first)?, port(last)?),
            None => (port(text)?, port(text)?),
        };
        if first > last {
            return Err(ScopeError::Reversed(text.into()));
        }
        Ok(PortRange { first, last })
    }
}

impl TryFrom<String> for PortRange {
    type Error = ScopeError;

    fn try_from(text: String) -> Result<PortRange, ScopeError> {
        text.parse()
    }
}

impl From<PortRange> for String {
    fn from(range: PortRange) -> String {
        range.to_string()
    }
}

/// Why a protocol or ports were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScopeError {
    #[error("'{0}' is not a protocol (any, tcp, udp, sctp or icmp)")]
    Protocol(String),
    #[error("'{0}' is not an IP protocol (tcp, udp, sctp, icmp, icmpv6 or a number)")]
    ProtocolNumber(String),
    #[error("'{0}' is not a port or a range of ports (0 to 65535, e.g. 22 or 8000-8999)")]
    Port(String),
    #[error("'{0}': the range ends before it starts")]
    Reversed(String),
    #[error("icmp has no ports")]
    IcmpPorts,
}

/// `22,443,8000-8999`: sorted, overlapping and adjacent ranges merged.
pub fn parse_ports(text: &str) -> Result<Vec<PortRange>, ScopeError> {
    let ranges = text.split(',').map(str::parse).collect::<Result<Vec<_>, _>>()?;
    Ok(merged(ranges))
}

/// `ranges` sorted, overlapping and adjacent ones merged: one spelling of
/// every set of ports.
pub fn merged(mut ranges: Vec<PortRange>) -> Vec<PortRange> {
    ranges.sort();
    let mut out: Vec<PortRange> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match out.last_mut() {
            Some(last) if u32::from(range.first) <= u32::from(last.last) + 1 => last.last = last.last.max(range.last),
            _ => out.push(range),
        }
    }
    out
}

/// `--ports`: `tcp:22,443`, `udp:53`, `icmp`, `tcp` (every TCP port), or
/// ports alone (`8000-8999`: TCP, UDP and SCTP to those ports).
pub fn parse_scope(text: &str) -> Result<(Protocol, Vec<PortRange>), ScopeError> {
    let (protocol, ports) = match text.split_once(':') {
        Some((protocol, ports)) => (protocol.parse()?, parse_ports(ports)?),
        None => match text.parse::<Protocol>() {
            Ok(protocol) => (protocol, vec![]),
            Err(_) => (Protocol::Any, parse_ports(text)?),
        },
    };
    if !protocol.has_ports() && !ports.is_empty() {
        return Err(ScopeError::IcmpPorts);
    }
    Ok((protocol, ports))
}

/// What a rule matches, as status and explain write it: "tcp ports
/// 22,443", "every protocol and port", "icmp".
pub fn scope(protocol: Protocol, ports: &[PortRange]) -> String {
    let list = || ports.iter().map(PortRange::to_string).collect::<Vec<_>>().join(",");
    let plural = if ports.len() == 1 && ports[0].first == ports[0].last { "port" } else { "ports" };
    match (protocol, ports.is_empty()) {
        (Protocol::Any, true) => "every protocol and port".into(),
        (Protocol::Any, false) => format!("tcp, udp and sctp {plural} {}", list()),
        (Protocol::Icmp, _) => "icmp".into(),
        (protocol, true) => format!("{protocol}, every port"),
        (protocol, false) => format!("{protocol} {plural} {}", list()),
    }
}

impl Rule {
    /// Whether a packet going `direction` of IP protocol `protocol` to
    /// destination `port` (none: no ports, or a fragment after the first)
    /// is this rule's.
    pub fn matches(&self, direction: Direction, protocol: u8, port: Option<u16>) -> bool {
        self.direction == direction
            && self.protocol.matches(protocol)
            && (self.ports.is_empty() || port.is_some_and(|p| self.ports.iter().any(|r| r.contains(p))))
    }

    /// Matches every packet: any protocol, every port.
    pub fn matches_everything(&self) -> bool {
        self.protocol == Protocol::Any && self.ports.is_empty()
    }

    /// "tcp ports 22,443" (see [`scope`]).
    pub fn scope(&self) -> String {
        scope(self.protocol, &self.ports)
    }

    /// Its direction and scope: "inbound, tcp ports 22,443".
    pub fn traffic(&self) -> String {
        format!("{}, {}", self.direction.name(), self.scope())
    }
}

/// What the kernel's rule maps hold for a policy, its rules written in one
/// bank (see geoblock-common: a rule's id is `bank * RULE_BANK + position`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleMaps {
    /// `POLICY`: each rule position's action for each country, with
    /// [`POLICY_SELECTORS`] set where the rule has selectors; positions
    /// without a rule pass.
    pub actions: Vec<(u32, u8)>,
    /// `PORT_RULES`: every slot of this bank's region (both directions);
    /// each port's entry is the first rule of its direction and protocol
    /// (or of any) whose ports hold it.
    pub ports: Vec<(u32, RuleSlots)>,
    /// `PROTO_RULES`: every slot, per direction. A port protocol whose
    /// ports all go to one rule names it (so a policy of one rule never
    /// reads `PORT_RULES`), else `RULE_BY_PORT + bank`; other protocols,
    /// and fragments after the first, the first rule without ports that
    /// matches them.
    pub protocols: Vec<(u32, RuleSlots)>,
}

impl Policy {
    /// The rule that decides for a packet going `direction` of IP protocol
    /// `protocol` to destination `port` (none: a protocol without ports,
    /// or a fragment after the first): the first that matches; `None`: no
    /// rule does, and the packet passes. The userspace twin of the
    /// kernel's rule maps.
    pub fn rule_for(&self, direction: Direction, protocol: u8, port: Option<u16>) -> Option<usize> {
        self.rules.iter().position(|rule| rule.matches(direction, protocol, port))
    }

    /// The kernel's rule maps for this policy, its rules written in `bank`
    /// (0 or 1).
    pub fn rule_maps(&self, bank: u8) -> RuleMaps {
        let base = port_rules_index(bank, Direction::Inbound, PortProtocol::Tcp, 0).0;
        let mut ports = Slots::new(base, DIRECTIONS * PORT_PROTOCOLS * 65536);
        let mut protocols = Slots::new(0, PROTO_RULES_SLOTS * 8);
        for direction in Direction::ALL {
            let by_port = PORT_PROTOCOL_NUMBERS.map(|(_, number)| self.port_rules(bank, direction, number));
            for ((protocol, _), ids) in PORT_PROTOCOL_NUMBERS.iter().zip(&by_port) {
                for (port, &id) in ids.iter().enumerate() {
                    ports.set(port_rules_index(bank, direction, *protocol, port as u16), id);
                }
            }
            for number in 0..=u8::MAX {
                let portless = rule_id(bank, self.rule_for(direction, number, None));
                let first = match PORT_PROTOCOL_NUMBERS.iter().position(|&(_, n)| n == number) {
                    Some(i) => uniform(&by_port[i]).unwrap_or(RULE_BY_PORT + bank),
                    None => portless,
                };
                protocols.set(proto_rules_index(direction, number, false), first);
                protocols.set(proto_rules_index(direction, number, true), portless);
            }
        }
        RuleMaps { actions: self.actions(bank), ports: ports.into_entries(), protocols: protocols.into_entries() }
    }

    /// Whether any rule is outbound: only then do the egress program and
    /// the socket hooks judge anything.
    pub fn has_outbound_rules(&self) -> bool {
        self.rules.iter().any(|rule| rule.direction == Direction::Outbound)
    }

    /// Each port's rule id for IP protocol `number` going `direction`:
    /// rules painted in order, a port keeping the first rule that claims it.
    fn port_rules(&self, bank: u8, direction: Direction, number: u8) -> Vec<u8> {
        let mut ids = vec![RULE_NONE; 65536];
        let rules = self.rules.iter().enumerate();
        for (position, rule) in rules.filter(|(_, r)| r.direction == direction && r.protocol.matches(number)) {
            let every = [PortRange { first: 0, last: u16::MAX }];
            let ranges = if rule.ports.is_empty() { &every[..] } else { &rule.ports };
            for range in ranges {
                for id in &mut ids[usize::from(range.first)..=usize::from(range.last)] {
                    if *id == RULE_NONE {
                        *id = rule_id(bank, Some(position));
                    }
                }
            }
        }
        ids
    }

    /// `POLICY`'s entries of `bank`: every position, every country.
    fn actions(&self, bank: u8) -> Vec<(u32, u8)> {
        let mut actions = Vec::with_capacity((MAX_RULES * COUNTRY_SLOTS) as usize);
        for position in 0..MAX_RULES as usize {
            let rule = self.rules.get(position);
            let flag = match rule.is_some_and(|r| r.selectors().next().is_some()) {
                true => POLICY_SELECTORS,
                false => 0,
            };
            for country in 0..COUNTRY_SLOTS as CountryId {
                let action = rule.map_or(Action::Pass, |r| r.action(country));
                actions.push((policy_index(bank * RULE_BANK + position as u8, country), action as u8 | flag));
            }
        }
        actions
    }

    /// `SELECTOR_POLICY`'s entries of `bank` for the classes of a selector
    /// table (the selectors of each, see [`SelectorTable`](super::SelectorTable)): what each
    /// rule's selectors decide for each class, the deciding selector named
    /// by its counter `slot`. Entries where no selector decides are left
    /// out (they stay zero); each class's entries come in rule order.
    pub fn selector_verdicts(
        &self,
        bank: u8,
        classes: &[Vec<Selector>],
        slot: impl Fn(&Selector) -> u16,
    ) -> Vec<(u32, SelectorVerdict)> {
        let mut verdicts = Vec::new();
        for (class, held) in classes.iter().enumerate() {
            for (position, rule) in self.rules.iter().enumerate() {
                if let Some((action, by)) = rule.selector_decision(held) {
                    let verdict = SelectorVerdict { decided: 1, action: action as u8, selector: slot(by) };
                    verdicts.push((selector_policy_index(class as u16, bank * RULE_BANK + position as u8), verdict));
                }
            }
        }
        verdicts
    }

    /// The rules' names by position (`RULE_NAMES`).
    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|rule| rule.name.as_str())
    }
}

/// The kernel's id of the rule at `position` in `bank`.
fn rule_id(bank: u8, position: Option<usize>) -> u8 {
    position.map_or(RULE_NONE, |p| bank * RULE_BANK + p as u8)
}

/// The one id every port has, if they all have the same.
fn uniform(ids: &[u8]) -> Option<u8> {
    ids.iter().all(|&id| id == ids[0]).then_some(ids[0])
}

/// Map slots of eight entries each, from slot `base` on.
struct Slots {
    base: u32,
    slots: Vec<RuleSlots>,
}

impl Slots {
    fn new(base: u32, entries: u32) -> Slots {
        Slots { base, slots: vec![[RULE_NONE; 8]; (entries / 8) as usize] }
    }

    fn set(&mut self, (slot, byte): (u32, usize), id: u8) {
        self.slots[(slot - self.base) as usize][byte] = id;
    }

    fn into_entries(self) -> Vec<(u32, RuleSlots)> {
        (self.base..).zip(self.slots).collect()
    }
}

#[cfg(test)]
mod tests;
