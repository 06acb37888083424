use geoblock_common::{country_id, PORT_RULES_SLOTS, RULE_BANKS};
use proptest::prelude::*;

use super::*;
use crate::policy::{Direction, Mode, DEFAULT_RULE};

fn rule(name: &str, protocol: Protocol, ports: &str) -> Rule {
    let cn = BTreeSet::from([country_id(*b"CN").unwrap()]);
    let ports = if ports.is_empty() { vec![] } else { parse_ports(ports).unwrap() };
    Rule { protocol, ports, ..Rule::new(name, Mode::Deny, cn) }
}

use std::collections::BTreeSet;

fn policy(rules: Vec<Rule>) -> Policy {
    Policy::new(rules, vec![], true).unwrap()
}

/// The compiled maps, read back as the kernel reads them.
struct Kernel {
    bank: u8,
    maps: RuleMaps,
}

impl Kernel {
    fn new(policy: &Policy, bank: u8) -> Kernel {
        Kernel { bank, maps: policy.rule_maps(bank) }
    }

    fn entry(slots: &[(u32, RuleSlots)], (slot, byte): (u32, usize)) -> u8 {
        let first = slots[0].0;
        let (at, value) = slots[(slot - first) as usize];
        assert_eq!(at, slot);
        value[byte]
    }

    fn proto_going(&self, direction: Direction, protocol: u8, later_fragment: bool) -> u8 {
        Kernel::entry(&self.maps.protocols, proto_rules_index(direction, protocol, later_fragment))
    }

    fn proto(&self, protocol: u8, later_fragment: bool) -> u8 {
        self.proto_going(Direction::Inbound, protocol, later_fragment)
    }

    /// The rule id the kernel finds, as its program walks the maps.
    fn rule_going(&self, direction: Direction, protocol: u8, port: Option<u16>, later_fragment: bool) -> u8 {
        let id = self.proto_going(direction, protocol, later_fragment);
        if id != RULE_BY_PORT + self.bank {
            return id;
        }
        let (pp, _) = PORT_PROTOCOL_NUMBERS.iter().find(|(_, n)| *n == protocol).unwrap();
        Kernel::entry(&self.maps.ports, port_rules_index(self.bank, direction, *pp, port.unwrap()))
    }

    fn rule(&self, protocol: u8, port: Option<u16>, later_fragment: bool) -> u8 {
        self.rule_going(Direction::Inbound, protocol, port, later_fragment)
    }

    /// `rule_for`'s answer as an id.
    fn expected(&self, policy: &Policy, direction: Direction, protocol: u8, port: Option<u16>) -> u8 {
        rule_id(self.bank, policy.rule_for(direction, protocol, port))
    }
}

#[test]
fn ports_are_parsed_sorted_and_merged() {
    let ports = parse_ports("443, 22,8000-8999,23,8500-9000,21").unwrap();
    let text: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
    assert_eq!(text, ["21-23", "443", "8000-9000"]);
    assert_eq!(parse_ports("0,65535").unwrap().len(), 2);
    assert_eq!(parse_ports("0-65535").unwrap(), [PortRange { first: 0, last: 65535 }]);
    let err = |text| parse_ports(text).unwrap_err().to_string();
    assert_eq!(err("65536"), "'65536' is not a port or a range of ports (0 to 65535, e.g. 22 or 8000-8999)");
    assert_eq!(err("9000-8000"), "'9000-8000': the range ends before it starts");
    assert!(err("22,").contains("''"));
    assert!(err("ssh").contains("'ssh'"));
    assert!(err("1-2-3").contains("'1-2-3'"));
}

#[test]
fn scopes_as_the_command_line_writes_them() {
    let scope_of = |text| parse_scope(text).map(|(p, ports)| scope(p, &ports));
    assert_eq!(scope_of("tcp:22,443").unwrap(), "tcp ports 22,443");
    assert_eq!(scope_of("udp:53").unwrap(), "udp port 53");
    assert_eq!(scope_of("icmp").unwrap(), "icmp");
    assert_eq!(scope_of("TCP").unwrap(), "tcp, every port");
    assert_eq!(scope_of("8000-8999").unwrap(), "tcp, udp and sctp ports 8000-8999");
    assert_eq!(scope_of("any").unwrap(), "every protocol and port");
    assert_eq!(scope_of("icmp:8"), Err(ScopeError::IcmpPorts));
    assert_eq!(scope_of("gre:1"), Err(ScopeError::Protocol("gre".into())));
    assert_eq!(serde_json::to_value(PortRange { first: 80, last: 81 }).unwrap(), "80-81");
    assert!(serde_json::from_str::<PortRange>("\"81-80\"").is_err());
}

#[test]
fn one_rule_for_everything_never_reads_the_ports() {
    let p = Policy::from(rule(DEFAULT_RULE, Protocol::Any, ""));
    for bank in [0, 1] {
        let k = Kernel::new(&p, bank);
        let id = bank * RULE_BANK;
        for protocol in 0..=u8::MAX {
            assert_eq!((k.proto(protocol, false), k.proto(protocol, true)), (id, id), "protocol {protocol}");
        }
        let (inbound, outbound) = k.maps.ports.split_at(k.maps.ports.len() / 2);
        assert!(inbound.iter().all(|(_, slots)| slots.iter().all(|&b| b == id)));
        assert!(outbound.iter().all(|(_, slots)| slots.iter().all(|&b| b == RULE_NONE)), "an inbound rule");
    }
}

#[test]
fn ports_lists_and_ranges_go_to_their_rule() {
    let p = policy(vec![
        rule("ssh", Protocol::Tcp, "22"),
        rule("web", Protocol::Tcp, "80,443,8000-8999"),
        rule("dns", Protocol::Udp, "53"),
    ]);
    let k = Kernel::new(&p, 0);
    assert_eq!(k.proto(6, false), RULE_BY_PORT);
    assert_eq!(k.proto(17, false), RULE_BY_PORT);
    assert_eq!(k.proto(132, false), RULE_NONE, "no rule for sctp: every port passes, no port read");
    assert_eq!(k.rule(6, Some(22), false), 0);
    for port in [80, 443, 8000, 8500, 8999] {
        assert_eq!(k.rule(6, Some(port), false), 1, "port {port}");
    }
    for port in [0, 21, 23, 79, 7999, 9000, 65535] {
        assert_eq!(k.rule(6, Some(port), false), RULE_NONE, "port {port}");
    }
    assert_eq!(k.rule(17, Some(53), false), 2);
    assert_eq!(k.rule(17, Some(22), false), RULE_NONE, "tcp's port is not udp's");
    assert_eq!(k.proto(1, false), RULE_NONE, "icmp meets no rule");
}

#[test]
fn the_first_rule_that_matches_decides() {
    let p = policy(vec![
        rule("ssh", Protocol::Tcp, "22"),
        rule("low", Protocol::Any, "1-1023"),
        rule("rest", Protocol::Any, ""),
    ]);
    let k = Kernel::new(&p, 1);
    let id = |position: u8| RULE_BANK + position;
    assert_eq!(k.rule(6, Some(22), false), id(0));
    assert_eq!(k.rule(17, Some(22), false), id(1), "any + ports: udp too");
    assert_eq!(k.rule(132, Some(80), false), id(1), "and sctp");
    assert_eq!(k.rule(6, Some(2000), false), id(2));
    assert_eq!(k.proto(1, false), id(2), "icmp: the first rule without ports");
    assert_eq!(k.proto(47, false), id(2), "gre too");
    assert_eq!(p.rule_for(Direction::Inbound, 6, Some(22)), Some(0));
    assert_eq!(p.rule_for(Direction::Inbound, 1, None), Some(2));
}

#[test]
fn any_with_ports_is_tcp_udp_and_sctp_only() {
    let p = Policy::from(rule("web", Protocol::Any, "443"));
    let k = Kernel::new(&p, 0);
    for protocol in [6, 17, 132] {
        assert_eq!(k.rule(protocol, Some(443), false), 0);
        assert_eq!(k.rule(protocol, Some(444), false), RULE_NONE);
    }
    assert_eq!((k.proto(1, false), k.proto(58, false), k.proto(47, false)), (RULE_NONE, RULE_NONE, RULE_NONE));
}

#[test]
fn icmp_rules_match_icmp_and_icmpv6_only() {
    let p = policy(vec![rule("ping", Protocol::Icmp, ""), rule("tcp", Protocol::Tcp, "")]);
    let k = Kernel::new(&p, 0);
    assert_eq!((k.proto(1, false), k.proto(58, false)), (0, 0));
    assert_eq!((k.proto(1, true), k.proto(58, true)), (0, 0), "fragments of icmp: the icmp rule");
    assert_eq!(k.proto(6, false), 1, "every tcp port to one rule: named directly");
    assert_eq!((k.proto(17, false), k.proto(47, false)), (RULE_NONE, RULE_NONE));
}

#[test]
fn later_fragments_match_only_rules_without_ports() {
    let p = policy(vec![
        rule("ssh", Protocol::Tcp, "22"),
        rule("udp", Protocol::Udp, ""),
        rule("web", Protocol::Any, "443"),
    ]);
    let k = Kernel::new(&p, 0);
    assert_eq!(k.proto(6, true), RULE_NONE, "a tcp fragment has no port: not ssh's");
    assert_eq!(k.proto(17, true), 1);
    assert_eq!(k.proto(17, false), 1, "every udp port goes to the udp rule");
    assert_eq!(k.proto(132, true), RULE_NONE);
    let with_rest = policy(vec![rule("ssh", Protocol::Tcp, "22"), rule("rest", Protocol::Any, "")]);
    let k = Kernel::new(&with_rest, 0);
    assert_eq!(k.proto(6, true), 1, "fragments go to the first rule without ports");
    assert_eq!(k.proto(6, false), RULE_BY_PORT);
    assert_eq!(with_rest.rule_for(Direction::Inbound, 6, None), Some(1));
}

#[test]
fn a_uniform_protocol_names_its_rule_directly() {
    // Every tcp port covered, by two rules: not uniform. Every udp port by one: uniform.
    let p = policy(vec![
        rule("low", Protocol::Tcp, "0-1023"),
        rule("high", Protocol::Tcp, "1024-65535"),
        rule("all", Protocol::Udp, "0-65535"),
    ]);
    let k = Kernel::new(&p, 1);
    assert_eq!(k.proto(6, false), RULE_BY_PORT + 1);
    assert_eq!(k.proto(17, false), RULE_BANK + 2);
    assert_eq!(k.proto(17, true), RULE_NONE, "its ports are named: fragments are not its");
    assert_eq!(k.proto_going(Direction::Outbound, 6, false), RULE_NONE, "no outbound rule");
}

#[test]
fn a_direction_sees_only_its_rules() {
    let outbound = |r: Rule| Rule { direction: Direction::Outbound, ..r };
    let p = policy(vec![outbound(rule("web-out", Protocol::Tcp, "443")), rule("ssh", Protocol::Tcp, "22")]);
    assert!(p.has_outbound_rules());
    let k = Kernel::new(&p, 0);
    assert_eq!(k.rule_going(Direction::Outbound, 6, Some(443), false), 0);
    assert_eq!(k.rule(6, Some(443), false), RULE_NONE);
    assert_eq!(k.rule(6, Some(22), false), 1);
    assert_eq!(k.rule_going(Direction::Outbound, 6, Some(22), false), RULE_NONE);
    assert!(!policy(vec![rule("ssh", Protocol::Tcp, "22")]).has_outbound_rules());
}

#[test]
fn maps_cover_every_slot_of_their_bank() {
    let p = policy(vec![rule("ssh", Protocol::Tcp, "22"), rule("dns", Protocol::Udp, "53")]);
    for bank in [0, 1] {
        let maps = p.rule_maps(bank);
        assert_eq!(maps.protocols.len() as u32, PROTO_RULES_SLOTS);
        assert_eq!(maps.ports.len() as u32, PORT_RULES_SLOTS / RULE_BANKS);
        assert_eq!(maps.ports[0].0, port_rules_index(bank, Direction::Inbound, PortProtocol::Tcp, 0).0);
        let last = port_rules_index(bank, Direction::Outbound, PortProtocol::Sctp, u16::MAX).0;
        assert_eq!(maps.ports.last().unwrap().0, last);
        assert_eq!(maps.actions.len() as u32, MAX_RULES * COUNTRY_SLOTS);
        let cn = country_id(*b"CN").unwrap();
        let action = |position: u8, country| {
            let index = policy_index(bank * RULE_BANK + position, country);
            maps.actions.iter().find(|(i, _)| *i == index).unwrap().1
        };
        assert_eq!((action(0, cn), action(1, cn)), (Action::Drop as u8, Action::Drop as u8));
        assert_eq!(action(0, country_id(*b"DE").unwrap()), Action::Pass as u8);
        assert_eq!(action(2, cn), Action::Pass as u8, "no rule there");
    }
}

#[test]
fn names_by_position() {
    let p = policy(vec![rule("ssh", Protocol::Tcp, "22"), rule("rest", Protocol::Any, "")]);
    assert_eq!(p.rule_names().collect::<Vec<_>>(), ["ssh", "rest"]);
}

fn any_rule() -> impl Strategy<Value = (Direction, Protocol, Vec<(u16, u16)>)> {
    let direction = prop::sample::select(Direction::ALL.to_vec());
    let protocol = prop::sample::select(Protocol::ALL.to_vec());
    let ranges = prop::collection::vec((0u16..2000, 0u16..50), 0..4);
    (direction, protocol, ranges).prop_map(|(direction, protocol, ranges)| {
        let ranges = if protocol.has_ports() { ranges } else { vec![] };
        (direction, protocol, ranges.into_iter().map(|(first, len)| (first, first.saturating_add(len))).collect())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The kernel's maps answer as `rule_for` does, in both directions,
    /// for every protocol and a spread of ports, first fragments and later
    /// ones.
    #[test]
    fn maps_agree_with_rule_for(rules in prop::collection::vec(any_rule(), 1..6), bank in 0u8..2) {
        let rules = rules.into_iter().enumerate().map(|(i, (direction, protocol, ranges))| Rule {
            direction,
            protocol,
            ports: merged(ranges.into_iter().map(|(first, last)| PortRange { first, last }).collect()),
            ..rule(&format!("r{i}"), Protocol::Any, "")
        });
        let p = policy(rules.collect());
        let k = Kernel::new(&p, bank);
        for (d, protocol) in Direction::ALL.into_iter().flat_map(|d| (0..=u8::MAX).map(move |n| (d, n))) {
            let ported = PORT_PROTOCOL_NUMBERS.iter().any(|(_, n)| *n == protocol);
            prop_assert_eq!(k.rule_going(d, protocol, None, true), k.expected(&p, d, protocol, None));
            if !ported {
                prop_assert_eq!(k.rule_going(d, protocol, None, false), k.expected(&p, d, protocol, None));
                continue;
            }
            for port in (0..2100).step_by(7).chain([2048, 65535]) {
                prop_assert_eq!(k.rule_going(d, protocol, Some(port), false), k.expected(&p, d, protocol, Some(port)));
            }
        }
    }
}
