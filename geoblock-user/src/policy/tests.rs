use geoblock_common::country_id;

use super::*;

fn rule(mode: Mode, codes: &[&[u8; 2]]) -> Rule {
    Rule::new(DEFAULT_RULE, mode, codes.iter().map(|c| id(c)).collect())
}

fn policy(mode: Mode, codes: &[&[u8; 2]]) -> Policy {
    Policy::from(rule(mode, codes))
}

fn id(code: &[u8; 2]) -> CountryId {
    country_id(*code).unwrap()
}

#[test]
fn deny_list_drops_only_listed() {
    let r = rule(Mode::Deny, &[b"RU", b"KP"]);
    assert_eq!(r.action(id(b"RU")), Action::Drop);
    assert_eq!(r.action(id(b"KP")), Action::Drop);
    assert_eq!(r.action(id(b"DE")), Action::Pass);
    assert_eq!(r.action(NO_COUNTRY), Action::Pass);
}

#[test]
fn allow_list_drops_the_rest_but_not_unknown() {
    let r = rule(Mode::Allow, &[b"DE"]);
    assert_eq!(r.action(id(b"DE")), Action::Pass);
    assert_eq!(r.action(id(b"US")), Action::Drop);
    assert_eq!(r.action(NO_COUNTRY), Action::Pass);
    let strict = Rule { block_unknown: true, ..r };
    assert_eq!(strict.action(NO_COUNTRY), Action::Drop);
}

#[test]
fn monitor_turns_drops_into_would_drops() {
    let r = Rule { monitor: true, ..rule(Mode::Deny, &[b"CN"]) };
    assert_eq!(r.action(id(b"CN")), Action::WouldDrop);
    assert_eq!(r.action(id(b"FR")), Action::Pass);
}

#[test]
fn exceptions_override_drops_only() {
    let table = Table { v4: vec![("10.0.0.0/8".parse().unwrap(), id(b"CN"))], v6: vec![] };
    let p = Policy { exceptions: vec!["10.1.0.0/16".parse().unwrap()], ..policy(Mode::Deny, &[b"CN"]) };
    let verdict = |p: &Policy, ip: &str| p.verdict(&table, &[], ip.parse().unwrap(), 17, Some(53));
    assert_eq!(verdict(&p, "10.1.2.3"), Verdict::Exception);
    assert_eq!(verdict(&p, "10.2.0.1"), Verdict::Country(id(b"CN"), Action::Drop));
    assert_eq!(verdict(&p, "11.0.0.1"), Verdict::Country(NO_COUNTRY, Action::Pass));
    let mut allow_cn = p.clone();
    allow_cn.rules[0].mode = Mode::Allow;
    assert_eq!(verdict(&allow_cn, "10.1.2.3"), Verdict::Country(id(b"CN"), Action::Pass));
}

#[test]
fn a_packet_no_rule_matches_passes() {
    let table = Table { v4: vec![("10.0.0.0/8".parse().unwrap(), id(b"CN"))], v6: vec![] };
    let ssh = Rule { protocol: Protocol::Tcp, ports: vec!["22".parse().unwrap()], ..rule(Mode::Allow, &[b"DE"]) };
    let p = Policy::from(ssh);
    let ip = "10.0.0.1".parse().unwrap();
    assert_eq!(p.verdict(&table, &[], ip, 6, Some(22)), Verdict::Country(id(b"CN"), Action::Drop));
    assert_eq!(p.verdict(&table, &[], ip, 6, Some(80)), Verdict::NoRule);
    assert_eq!(p.verdict(&table, &[], ip, 17, Some(22)), Verdict::NoRule);
}

#[test]
fn every_reason_and_its_action() {
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    let none: &[IpNetwork] = &[];
    let deny = rule(Mode::Deny, &[b"CN"]);
    assert_eq!(
        deny.decide(id(b"CN"), &[], ip, none),
        Decision { action: Action::Drop, reason: Reason::BlockedCountry, selector: None }
    );
    assert_eq!(
        deny.decide(id(b"DE"), &[], ip, none),
        Decision { action: Action::Pass, reason: Reason::NotBlocked, selector: None }
    );
    assert_eq!(
        deny.decide(NO_COUNTRY, &[], ip, none),
        Decision { action: Action::Pass, reason: Reason::NoCountry, selector: None }
    );
    let allow = rule(Mode::Allow, &[b"DE"]);
    assert_eq!(
        allow.decide(id(b"DE"), &[], ip, none),
        Decision { action: Action::Pass, reason: Reason::Allowed, selector: None }
    );
    assert_eq!(
        allow.decide(id(b"CN"), &[], ip, none),
        Decision { action: Action::Drop, reason: Reason::NotAllowed, selector: None }
    );
    let strict = Rule { block_unknown: true, ..allow.clone() };
    assert_eq!(
        strict.decide(NO_COUNTRY, &[], ip, none),
        Decision { action: Action::Drop, reason: Reason::NoCountryBlocked, selector: None }
    );
    let monitor = Rule { monitor: true, ..deny.clone() };
    assert_eq!(
        monitor.decide(id(b"CN"), &[], ip, none),
        Decision { action: Action::WouldDrop, reason: Reason::BlockedCountry, selector: None }
    );
    let excepted = ["192.0.2.0/24".parse().unwrap()];
    assert_eq!(
        deny.decide(id(b"CN"), &[], ip, &excepted),
        Decision { action: Action::Pass, reason: Reason::Exception, selector: None }
    );
    assert_eq!(
        deny.decide(id(b"DE"), &[], ip, &excepted),
        Decision { action: Action::Pass, reason: Reason::NotBlocked, selector: None }
    );
}

fn codes(list: &[&str]) -> Vec<String> {
    list.iter().map(|c| c.to_string()).collect()
}

fn block(list: &[&str]) -> Change {
    Change::Block { countries: codes(list), rule: None }
}

fn unblock(list: &[&str]) -> Change {
    Change::Unblock { countries: codes(list), rule: None }
}

#[test]
fn block_and_unblock_follow_the_list_mode() {
    let deny = policy(Mode::Deny, &[b"CN"]);
    let blocked = deny.changed(&block(&["ru"])).unwrap();
    assert_eq!(blocked.rules[0].action(id(b"RU")), Action::Drop);
    let unblocked = blocked.changed(&unblock(&["CN"])).unwrap();
    assert_eq!(unblocked.rules[0].action(id(b"CN")), Action::Pass);
    let allow = policy(Mode::Allow, &[b"DE", b"FR"]);
    let blocked = allow.changed(&block(&["FR"])).unwrap();
    assert_eq!(blocked.rules[0].action(id(b"FR")), Action::Drop);
    let unblocked = allow.changed(&unblock(&["US"])).unwrap();
    assert_eq!(unblocked.rules[0].action(id(b"US")), Action::Pass);
    assert_eq!(
        deny.changed(&block(&["XX"])),
        Err(ChangeError::Entry(selectors::EntryError::Country(country::UnknownCountry("XX".into()))))
    );
    assert_eq!(deny.changed(&block(&[])), Err(ChangeError::NoCountries));
}

#[test]
fn allow_and_mode_switch_the_list() {
    let deny = policy(Mode::Deny, &[b"CN"]);
    let allow = deny.changed(&Change::Allow { countries: codes(&["DE"]), rule: None }).unwrap();
    assert_eq!(allow, policy(Mode::Allow, &[b"DE"]));
    let monitor = allow.changed(&Change::Mode { mode: Enforcement::Monitor, rule: None }).unwrap();
    assert_eq!(monitor.rules[0].action(id(b"US")), Action::WouldDrop);
    let deny_de = monitor.changed(&Change::Mode { mode: Enforcement::Deny, rule: None }).unwrap();
    assert_eq!(deny_de, policy(Mode::Deny, &[b"DE"]));
}

/// "SSH only from DE", "the API closed to CN": two rules.
fn two_rules() -> Policy {
    let ssh = Rule {
        name: "ssh".into(),
        protocol: Protocol::Tcp,
        ports: vec!["22".parse().unwrap()],
        ..rule(Mode::Allow, &[b"DE"])
    };
    let api = Rule { name: "api".into(), ports: vec!["443".parse().unwrap()], ..rule(Mode::Deny, &[b"CN"]) };
    Policy::new(vec![ssh, api], vec![], true).unwrap()
}

#[test]
fn changes_name_their_rule_when_there_are_several() {
    let p = two_rules();
    let named = |rule: &str| Change::Block { countries: codes(&["RU"]), rule: Some(rule.into()) };
    let api = p.changed(&named("api")).unwrap();
    assert_eq!(api.rules[1].action(id(b"RU")), Action::Drop);
    assert_eq!(api.rules[0], p.rules[0], "the other rule is left alone");
    let ssh = p.changed(&Change::Mode { mode: Enforcement::Monitor, rule: Some("ssh".into()) }).unwrap();
    assert!(ssh.rules[0].monitor && !ssh.rules[1].monitor);
    assert_eq!(
        p.changed(&block(&["RU"])).unwrap_err().to_string(),
        "which rule? The policy has several (ssh, api): name one with --rule"
    );
    assert_eq!(p.changed(&named("web")).unwrap_err().to_string(), "no rule is named 'web' (the rules: ssh, api)");
    let one = policy(Mode::Deny, &[b"CN"]);
    assert!(one.changed(&Change::Block { countries: codes(&["RU"]), rule: Some("default".into()) }).is_ok());
    assert!(one.changed(&Change::Block { countries: codes(&["RU"]), rule: Some("ssh".into()) }).is_err());
    let except = p.changed(&Change::ExceptAdd { cidr: "10.0.0.0/8".into() }).unwrap();
    assert_eq!(except.exceptions.len(), 1, "exceptions are global: no rule to name");
}

#[test]
fn a_change_without_a_rule_reads_as_before() {
    let json = serde_json::to_value(block(&["KP"])).unwrap();
    assert_eq!(json, serde_json::json!({"change": "block", "countries": ["KP"]}));
    let named: Change = serde_json::from_str(r#"{"change":"mode","mode":"monitor","rule":"api"}"#).unwrap();
    assert_eq!(named, Change::Mode { mode: Enforcement::Monitor, rule: Some("api".into()) });
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
    for change in [Change::ExceptAdd { cidr: "10.1.0.7/16".into() }, Change::ExceptDel { cidr: "10.1.0.7/16".into() }] {
        let err = p.changed(&change).unwrap_err();
        assert_eq!(err.to_string(), "'10.1.0.7/16' has host bits set (the network is 10.1.0.0)");
    }
}

#[test]
fn json_names_countries_by_code_and_exceptions_as_cidrs() {
    let p = Policy { exceptions: vec!["10.1.0.0/16".parse().unwrap()], ..policy(Mode::Deny, &[b"RU", b"CN"]) };
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["countries"], serde_json::json!(["CN", "RU"]));
    assert_eq!(json["mode"], "deny", "a policy of one rule for everything reads as schema 2 wrote it");
    assert_eq!(json["rules"][0]["countries"], serde_json::json!(["CN", "RU"]));
    assert_eq!(json["rules"][0]["protocol"], "any");
    assert_eq!(
        (&json["exceptions"], &json["replies"]),
        (&serde_json::json!(["10.1.0.0/16"]), &serde_json::json!(true))
    );
    assert_eq!(serde_json::from_value::<Policy>(json).unwrap(), p);
    assert_eq!(p.to_string(), "deny-list, blocking CN,RU; exceptions 10.1.0.0/16");
}

#[test]
fn json_of_several_rules_has_only_the_rules() {
    let p = two_rules();
    let json = serde_json::to_value(&p).unwrap();
    assert!(json.get("mode").is_none() && json.get("countries").is_none(), "{json}");
    assert_eq!(json["rules"][0]["ports"], serde_json::json!(["22"]));
    assert_eq!(json["rules"][1]["name"], "api");
    assert_eq!(serde_json::from_value::<Policy>(json).unwrap(), p);
}

#[test]
fn json_of_a_daemon_without_rules_is_one_rule() {
    let old = serde_json::json!({"mode": "allow", "countries": ["DE"], "monitor": true, "block_unknown": false,
                                 "exceptions": []});
    let p: Policy = serde_json::from_value(old).unwrap();
    assert_eq!(p, Policy::from(Rule { monitor: true, ..rule(Mode::Allow, &[b"DE"]) }));
}

#[test]
fn several_rules_read_in_order() {
    let mut p = two_rules();
    assert_eq!(
        p.to_string(),
        "rule ssh (inbound, tcp port 22): allow-list, allowing only DE; rule api (inbound, tcp, udp and sctp port \
         443): deny-list, blocking CN; other traffic passes"
    );
    p.replies = false;
    p.rules[1].monitor = true;
    assert!(p.to_string().ends_with(
        "blocking CN; MONITOR mode: nothing is dropped, would-drops are counted; other traffic passes; replies \
         are judged like any packet (replies off)"
    ));
    assert_eq!(p.countries(), BTreeSet::from([id(b"DE"), id(b"CN")]));
}

#[test]
fn rule_sets_are_checked() {
    let named = |name: &str| Rule { name: name.into(), ..rule(Mode::Deny, &[b"CN"]) };
    let new = |rules: Vec<Rule>| Policy::new(rules, vec![], true).map(|_| ()).map_err(|e| e.to_string());
    assert!(new(vec![named("ssh"), named("a_b-9")]).is_ok());
    assert!(new(vec![]).unwrap_err().starts_with("no rule"));
    assert_eq!(new(vec![named("ssh"), named("ssh")]).unwrap_err(), "two rules are named 'ssh'");
    for bad in ["", "SSH", "web server", "é", &"x".repeat(32)] {
        assert!(new(vec![named(bad)]).unwrap_err().starts_with("rule name"), "{bad:?}");
    }
    assert!(new(vec![named(&"x".repeat(31))]).is_ok());
    let many: Vec<Rule> = (0..17).map(|i| named(&format!("r{i}"))).collect();
    assert_eq!(new(many[..16].to_vec()), Ok(()));
    assert_eq!(new(many).unwrap_err(), "17 rules: at most 16");
    let icmp = Rule { protocol: Protocol::Icmp, ports: vec!["7".parse().unwrap()], ..named("ping") };
    assert_eq!(new(vec![icmp]).unwrap_err(), "rule 'ping': icmp has no ports");
}

/// "Nothing to CN from this host, rejected", beside the inbound rule.
fn both_ways() -> Policy {
    let out = Rule {
        name: "out".into(),
        direction: Direction::Outbound,
        action: RuleAction::Reject,
        ..rule(Mode::Deny, &[b"CN"])
    };
    Policy::new(vec![out, rule(Mode::Deny, &[b"RU"])], vec![], true).unwrap()
}

#[test]
fn the_direction_and_the_action_are_shown() {
    let p = both_ways();
    assert_eq!(
        p.to_string(),
        "rule out (outbound, every protocol and port): deny-list, blocking CN; blocked packets are rejected \
         (local senders get an error at once); rule default (inbound, every protocol and port): deny-list, blocking RU"
    );
    assert_eq!(
        p.render(),
        "rule        out (outbound, every protocol and port): deny-list, blocking CN; enforcing: reject; addresses \
         without a country passed\n\
         rule        default (inbound, every protocol and port): deny-list, blocking RU; enforcing: drop; addresses \
         without a country passed\n\
         exceptions  none\n\
         replies     replies to this host's own connections pass (replies on)\n"
    );
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!((&json["rules"][0]["direction"], &json["rules"][0]["action"]), (&"outbound".into(), &"reject".into()));
    assert_eq!(serde_json::from_value::<Policy>(json).unwrap(), p);
}

#[test]
fn an_outbound_policy_never_reads_as_the_inbound_list_of_old() {
    let out = Policy::from(Rule { direction: Direction::Outbound, ..rule(Mode::Deny, &[b"CN"]) });
    assert_eq!(out.whole_list(), None);
    assert_eq!(
        out.to_string(),
        "rule default (outbound, every protocol and port): deny-list, blocking CN",
        "an outbound rule says so, and inbound traffic, which no rule judges, is not mentioned"
    );
    let json = serde_json::to_value(&out).unwrap();
    assert!(json.get("mode").is_none(), "schema 2 readers would take it for an inbound list: {json}");
    assert_eq!(serde_json::from_value::<Policy>(json).unwrap(), out);
    // An inbound rule for some ports beside it: the outbound packets it leaves pass.
    let ssh = Rule { ports: vec!["22".parse().unwrap()], name: "ssh".into(), ..rule(Mode::Allow, &[b"DE"]) };
    let p = Policy::new(vec![ssh, out.rules[0].clone()], vec![], true).unwrap();
    assert!(p.covers(Direction::Outbound) && !p.covers(Direction::Inbound));
    assert!(p.render().contains("\nno rule     pass: inbound packets no rule matches\n"), "{}", p.render());
    assert!(!p.render().contains("outbound packets no rule"));
}
