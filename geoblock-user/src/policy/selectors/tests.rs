use std::net::IpAddr;

use geoblock_common::{country_id, Action};

use super::*;
use crate::{
    data::{list::ListInfo, table::Table},
    policy::{Mode, Rule, RuleAction, DEFAULT_RULE},
};

fn asn_data(v4: &[(&str, Asn)], v6: &[(&str, Asn)]) -> AsnData {
    let table = Table {
        v4: v4.iter().map(|(n, a)| (n.parse().unwrap(), *a)).collect(),
        v6: v6.iter().map(|(n, a)| (n.parse().unwrap(), *a)).collect(),
    };
    AsnData { table, ..AsnData::default() }
}

fn list(name: &str, nets: &[&str]) -> AddressList {
    let v4 = nets.iter().filter(|n| !n.contains(':')).map(|n| n.parse().unwrap()).collect();
    let v6 = nets.iter().filter(|n| n.contains(':')).map(|n| n.parse().unwrap()).collect();
    AddressList { name: name.into(), v4, v6, info: ListInfo::default() }
}

fn selectors(texts: &[&str]) -> BTreeSet<Selector> {
    texts.iter().map(|t| t.parse().unwrap()).collect()
}

/// The selectors of the class `ip` falls in, as the kernel's trie answers.
fn class_of(table: &SelectorTable, ip: &str) -> Vec<String> {
    let ip: IpAddr = ip.parse().unwrap();
    let class = table.table.lookup(ip).map_or(0, |(_, c)| c);
    table.classes[class as usize].iter().map(Selector::to_string).collect()
}

#[test]
fn entries_are_countries_or_selectors() {
    assert_eq!(parse_entry("cn"), Ok(Entry::Country(country_id(*b"CN").unwrap())));
    assert_eq!(parse_entry("AS"), Ok(Entry::Country(country_id(*b"AS").unwrap())), "American Samoa");
    assert_eq!(parse_entry("as4134"), Ok(Entry::Selector(Selector::Asn(4134))));
    assert_eq!(parse_entry(" AS4294967295 "), Ok(Entry::Selector(Selector::Asn(u32::MAX))));
    assert_eq!(parse_entry("list:tor"), Ok(Entry::Selector(Selector::List("tor".into()))));
    assert_eq!(parse_entry("AS0"), Err(EntryError::Asn("AS0".into())));
    assert_eq!(parse_entry("AS4294967296"), Err(EntryError::Asn("AS4294967296".into())));
    assert_eq!(parse_entry("AS+12"), Err(EntryError::Asn("AS+12".into())));
    assert_eq!(parse_entry("ASX"), Err(EntryError::Asn("ASX".into())));
    assert_eq!(parse_entry("list:"), Err(EntryError::ListName("list:".into())));
    assert_eq!(parse_entry("list:Tor"), Err(EntryError::ListName("list:Tor".into())));
    let long = format!("list:{}", "a".repeat(MAX_LIST_NAME + 1));
    assert_eq!(parse_entry(&long), Err(EntryError::ListName(long.clone())));
    assert!(matches!(parse_entry("XX"), Err(EntryError::Country(_))));
    // Not ASCII where "AS" would be: an error, never a panic.
    for text in ["aé", "dé", "é", "éAS1", "Aé1"] {
        assert!(matches!(parse_entry(text), Err(EntryError::Country(_))), "{text}");
    }
    assert_eq!(Selector::Asn(4134).to_string(), "AS4134");
    assert_eq!(serde_json::to_string(&Selector::List("tor".into())).unwrap(), "\"list:tor\"");
}

#[test]
fn classes_are_exact_at_every_edge() {
    let asn = asn_data(&[("10.0.0.0/24", 64500), ("10.0.1.0/24", 64501), ("10.0.2.0/24", 64502)], &[]);
    let tor = list("tor", &["10.0.0.128/32", "10.0.1.0/25", "2001:db8::1/128"]);
    let table = SelectorTable::compile(&selectors(&["AS64500", "AS64501", "list:tor"]), &asn, &[tor]).unwrap();
    assert_eq!(class_of(&table, "9.255.255.255"), Vec::<String>::new());
    assert_eq!(class_of(&table, "10.0.0.0"), ["AS64500"]);
    assert_eq!(class_of(&table, "10.0.0.127"), ["AS64500"]);
    assert_eq!(class_of(&table, "10.0.0.128"), ["AS64500", "list:tor"]);
    assert_eq!(class_of(&table, "10.0.0.129"), ["AS64500"]);
    assert_eq!(class_of(&table, "10.0.1.0"), ["AS64501", "list:tor"]);
    assert_eq!(class_of(&table, "10.0.1.127"), ["AS64501", "list:tor"]);
    assert_eq!(class_of(&table, "10.0.1.128"), ["AS64501"]);
    assert_eq!(class_of(&table, "10.0.2.1"), Vec::<String>::new(), "AS64502 is not in use");
    assert_eq!(class_of(&table, "2001:db8::1"), ["list:tor"]);
    assert_eq!(class_of(&table, "2001:db8::2"), Vec::<String>::new());
    // None, AS64500, AS64500+tor, AS64501+tor, AS64501, tor.
    assert_eq!(table.classes.len(), 6);
}

#[test]
fn an_unknown_list_is_refused_and_an_unknown_as_holds_nothing() {
    let asn = asn_data(&[], &[]);
    let err = SelectorTable::compile(&selectors(&["list:vpn"]), &asn, &[]).unwrap_err();
    assert_eq!(err, SelectorError::NoSuchList { selector: Selector::List("vpn".into()) });
    let table = SelectorTable::compile(&selectors(&["AS64500"]), &asn, &[]).unwrap();
    assert_eq!((table.classes.len(), table.selectors.len()), (1, 1));
}

#[test]
fn whole_spaces_compile() {
    let asn = asn_data(&[("0.0.0.0/0", 1)], &[("::/0", 2)]);
    let table = SelectorTable::compile(&selectors(&["AS1", "AS2"]), &asn, &[]).unwrap();
    assert_eq!(class_of(&table, "255.255.255.255"), ["AS1"]);
    assert_eq!(class_of(&table, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), ["AS2"]);
    assert_eq!(table.table.counts().v4 + table.table.counts().v6, 2);
}

/// A deny-list of CN that allows AS64500 and blocks list:tor and AS64501.
fn deny_cn_with_selectors() -> Rule {
    Rule {
        allow: selectors(&["AS64500"]),
        block: selectors(&["list:tor", "AS64501"]),
        ..Rule::new(DEFAULT_RULE, Mode::Deny, [country_id(*b"CN").unwrap()].into())
    }
}

#[test]
fn allow_selectors_come_before_block_selectors_before_countries() {
    let cn = country_id(*b"CN").unwrap();
    let rule = deny_cn_with_selectors();
    let held = |texts: &[&str]| texts.iter().map(|t| t.parse().unwrap()).collect::<Vec<Selector>>();
    let both = held(&["AS64500", "list:tor"]);
    assert_eq!(rule.selector_decision(&both), Some((Action::Pass, &both[0])));
    let tor = held(&["AS64502", "list:tor"]);
    assert_eq!(rule.selector_decision(&tor), Some((Action::Drop, &tor[1])));
    assert_eq!(rule.selector_decision(&held(&["AS64502"])), None);
    let ip = "192.0.2.1".parse().unwrap();
    assert_eq!(rule.decide(cn, &both, ip, &[]).reason, crate::policy::Reason::AllowedSelector);
    let excepted = ["192.0.2.0/24".parse().unwrap()];
    assert_eq!(rule.decide(cn, &tor, ip, &excepted).reason, crate::policy::Reason::Exception);
    let monitor = Rule { monitor: true, ..rule.clone() };
    assert_eq!(monitor.selector_decision(&tor).map(|d| d.0), Some(Action::WouldDrop));
    let reject = Rule { action: RuleAction::Reject, ..rule.clone() };
    assert_eq!(reject.selector_decision(&tor).map(|d| d.0), Some(Action::Reject));
}

#[test]
fn verdicts_name_the_deciding_selector_per_class_and_rule() {
    let asn = asn_data(&[("10.0.0.0/24", 64500)], &[]);
    let tor = list("tor", &["10.0.0.1/32", "10.9.0.0/16"]);
    let rule = Rule { block: selectors(&["list:tor"]), ..Rule::new("web", Mode::Deny, BTreeSet::new()) };
    let other = Rule { allow: selectors(&["AS64500"]), ..Rule::new("ssh", Mode::Allow, BTreeSet::new()) };
    let policy = crate::policy::Policy::new(vec![rule, other], vec![], true).unwrap();
    let table = SelectorTable::compile(&policy.selectors(), &asn, &[tor]).unwrap();
    let slot = |s: &Selector| if s.to_string() == "list:tor" { 7 } else { 9 };
    let verdicts = policy.selector_verdicts(1, &table.classes, slot);
    let at = |ip: &str, position: u8| {
        let class = table.table.lookup(ip.parse().unwrap()).map_or(0, |(_, c)| c);
        let index = geoblock_common::selector_policy_index(class, geoblock_common::RULE_BANK + position);
        verdicts.iter().find(|(i, _)| *i == index).map(|(_, v)| (v.action, v.selector))
    };
    assert_eq!(at("10.0.0.1", 0), Some((Action::Drop as u8, 7)), "tor blocks under web");
    assert_eq!(at("10.0.0.1", 1), Some((Action::Pass as u8, 9)), "the AS is allowed under ssh");
    assert_eq!(at("10.0.0.2", 0), None, "the AS is not web's");
    assert_eq!(at("10.9.1.1", 1), None);
    assert_eq!(at("11.0.0.1", 0), None);
}

#[test]
fn a_rules_line_names_its_selectors() {
    let cn = country_id(*b"CN").unwrap();
    let deny = deny_cn_with_selectors();
    assert_eq!(deny.list(), "deny-list, blocking CN,AS64501,list:tor; allowing AS64500 whatever their country");
    let allow = Rule { block: selectors(&["list:tor"]), ..Rule::new(DEFAULT_RULE, Mode::Allow, [cn].into()) };
    assert_eq!(allow.list(), "allow-list, allowing only CN; blocking list:tor whatever their country");
    let only_allowed = Rule { allow: selectors(&["AS64500"]), ..Rule::new(DEFAULT_RULE, Mode::Deny, [].into()) };
    assert_eq!(only_allowed.list(), "deny-list, blocking nothing; allowing AS64500 whatever their country");
    let policy = crate::policy::Policy::from(deny);
    assert!(policy.render().starts_with("rule        default (inbound, every protocol and port): deny-list, blocking CN,AS64501,list:tor; allowing AS64500 whatever their country; enforcing: drop;"), "{}", policy.render());
}
