//! `geoblock explain IP...`: why an address gets its verdict. The prefix and
//! country of the table, the data source that gave them, and the policy's
//! verdict with its reason, from the same functions the daemon fills the
//! kernel's maps with. An address is explained as a source (the inbound
//! rules decide) or as a destination (`--outbound`: the outbound rules).

use std::net::IpAddr;

use geoblock_common::{Action, NO_COUNTRY};
use serde::{Deserialize, Serialize};

use crate::{
    country,
    data::{Loaded, SourceInfo},
    policy::{replies_text, rules::protocol_name, selectors, Decision, Direction, Policy, Reason},
};

/// One address explained. A stable schema (`--json`): fields are added,
/// never renamed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    pub address: IpAddr,
    /// `inbound`: the address as a packet's source, judged by the inbound
    /// rules; `outbound`: as its destination, by the outbound rules.
    #[serde(default)]
    pub direction: Direction,
    /// The prefix of the table in force that holds it; none when no
    /// country claims it.
    pub prefix: Option<String>,
    pub country: Option<String>,
    /// The address's autonomous system (with `--asn-data`).
    #[serde(default)]
    pub asn: Option<AsInfo>,
    /// Every selector that holds the address: its AS and the lists it is
    /// on (`AS4134`, `list:tor`), whether a rule uses them or not.
    #[serde(default)]
    pub selectors: Vec<String>,
    /// The data source that gave the country (a later source wins).
    pub source: Option<Provenance>,
    /// The daemon's table generation (none offline).
    pub generation: Option<u64>,
    /// `drop`, `pass` or `would-drop` (monitor mode: counted, delivered):
    /// for the packet asked about, else the strictest any rule gives.
    pub action: Action,
    pub reason: Reason,
    pub monitor: bool,
    /// The rule that gives `action`; none when no rule matches the packet.
    #[serde(default)]
    pub rule: Option<String>,
    /// The packet asked about (`--protocol`, `--port`); none: every packet.
    #[serde(default)]
    pub packet: Option<Packet>,
    /// Every rule's verdict on the address, in rule order: the rules of
    /// `direction` only.
    #[serde(default)]
    pub rules: Vec<RuleVerdict>,
    /// Some packets going `direction` match no rule (they pass).
    #[serde(default)]
    pub unmatched: bool,
    /// Replies to this host's own connections pass, whatever the verdict.
    #[serde(default)]
    pub replies: bool,
}

/// A packet to explain: its IP protocol number and destination port (for
/// TCP, UDP and SCTP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Packet {
    pub protocol: u8,
    pub port: Option<u16>,
}

/// What one rule does with the address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleVerdict {
    pub rule: String,
    /// What it matches: "tcp ports 22,443".
    pub scope: String,
    pub action: Action,
    pub reason: Reason,
    pub monitor: bool,
    /// The rule's selectors that hold the address (allow and block).
    #[serde(default)]
    pub matched: Vec<String>,
    /// The selector that decided (`reason` allowed-selector or blocked-selector).
    #[serde(default)]
    pub selector: Option<String>,
}

/// An autonomous system: its number and, where the data names it, its
/// organisation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsInfo {
    pub number: u32,
    pub org: Option<String>,
}

/// Where an address's country came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The file or URL, as given to `--data` (or the embedded data's name).
    pub origin: String,
    /// The data's release date, when the source tells it.
    pub date: Option<String>,
}

/// The source that gives `ip` its country: the last one with a country
/// for it, as in the combined table.
fn source_of(data: &Loaded, ip: IpAddr) -> Option<&SourceInfo> {
    let index = match data.layers.is_empty() {
        true => data.table.lookup(ip).map(|_| 0),
        false => data.layers.iter().rposition(|layer| layer.lookup(ip).is_some()),
    };
    data.sources.get(index?)
}

/// Explains `ip` against `data` and `policy` as the source (inbound) or
/// destination (outbound) of `packet`, or of every packet going
/// `direction`; `generation` is the daemon's.
pub fn explain(
    data: &Loaded,
    policy: &Policy,
    ip: IpAddr,
    direction: Direction,
    packet: Option<Packet>,
    generation: Option<u64>,
) -> Explanation {
    let found = data.table.lookup(ip);
    let country = found.map_or(NO_COUNTRY, |(_, c)| c);
    let held = selectors::memberships(ip, &data.asn, &data.lists, |_| true);
    let rules: Vec<RuleVerdict> = policy
        .rules
        .iter()
        .filter(|rule| rule.direction == direction)
        .map(|rule| {
            let Decision { action, reason, selector } = rule.decide(country, &held, ip, &policy.exceptions);
            RuleVerdict {
                rule: rule.name.clone(),
                scope: rule.scope(),
                action,
                reason,
                monitor: rule.monitor,
                matched: rule.selectors().filter(|s| held.contains(s)).map(ToString::to_string).collect(),
                selector: selector.map(ToString::to_string),
            }
        })
        .collect();
    // A position among `rules`, the rules of `direction`.
    let deciding = match packet {
        Some(p) => {
            let rule = policy.rule_for(direction, p.protocol, p.port).map(|i| &policy.rules[i].name);
            rule.and_then(|name| rules.iter().position(|v| &v.rule == name))
        }
        None => strictest(&rules),
    };
    let source = source_of(data, ip);
    let (action, reason, monitor) = match deciding.map(|i| &rules[i]) {
        Some(v) => (v.action, v.reason, v.monitor),
        None => (Action::Pass, Reason::NoRule, false),
    };
    let asn = data.asn.table.lookup(ip).map(|(_, number)| AsInfo { number, org: data.asn.orgs.get(&number).cloned() });
    Explanation {
        address: ip,
        direction,
        prefix: found.map(|(net, _)| net.to_string()),
        country: found.map(|(_, c)| country::code(c).to_string()),
        asn,
        selectors: held.iter().map(ToString::to_string).collect(),
        source: source.map(|s| Provenance { origin: s.origin.clone(), date: s.date.clone() }),
        generation,
        action,
        reason,
        monitor,
        rule: deciding.map(|i| rules[i].rule.clone()),
        packet,
        unmatched: !policy.covers(direction),
        rules,
        replies: policy.replies,
    }
}

/// The first rule with the strictest action: what the address risks.
fn strictest(rules: &[RuleVerdict]) -> Option<usize> {
    let severity = |a: Action| match a {
        Action::Drop | Action::Reject => 2,
        Action::WouldDrop => 1,
        Action::Pass => 0,
    };
    let worst = rules.iter().map(|v| severity(v.action)).max()?;
    rules.iter().position(|v| severity(v.action) == worst)
}

impl Explanation {
    /// The human-readable form: the address line, then indented details.
    pub fn render(&self) -> String {
        let mut out = format!("{}\n", self.address);
        out += match self.direction {
            Direction::Inbound => "  direction   inbound: the address as a source\n",
            Direction::Outbound => "  direction   outbound: the address as a destination\n",
        };
        match (&self.prefix, &self.country) {
            (Some(prefix), Some(country)) => out += &format!("  prefix      {prefix} ({country})\n"),
            _ => out += "  prefix      none: no country claims this address\n",
        }
        if let Some(asn) = &self.asn {
            out += &format!(
                "  as          AS{}{}\n",
                asn.number,
                asn.org.as_deref().map_or(String::new(), |o| format!(" ({o})"))
            );
        }
        let lists: Vec<&str> = self.selectors.iter().filter(|s| s.starts_with("list:")).map(String::as_str).collect();
        if !lists.is_empty() {
            out += &format!("  lists       {}\n", lists.join(", "));
        }
        if let Some(source) = &self.source {
            let date = source.date.as_deref().map_or(String::new(), |d| format!(", dated {d}"));
            let generation = self.generation.map_or(String::new(), |g| format!(", table generation {g}"));
            out += &format!("  source      {}{date}{generation}\n", source.origin);
        }
        out += &self.render_rules();
        let by = match (&self.rule, self.packet.is_some() || self.rules.len() == 1) {
            (Some(rule), false) => format!(" (rule {rule})"),
            _ => String::new(),
        };
        let deciding = self.rule.as_ref().and_then(|name| self.rules.iter().find(|v| &v.rule == name));
        let selector = deciding.and_then(|v| v.selector.as_deref());
        out += &format!("  verdict     {}{by}: {}\n", self.action.name(), self.why(self.action, self.reason, selector));
        // Replies are inbound packets: what becomes of them is no outbound verdict's.
        match self.direction {
            Direction::Inbound => out + &format!("  replies     {}\n", replies_text(self.replies)),
            Direction::Outbound => out,
        }
    }

    /// The rule lines: which rule takes the packet asked about, or what
    /// each rule does (nothing for one rule that matches everything).
    fn render_rules(&self) -> String {
        if let Some(packet) = &self.packet {
            let what = packet.describe();
            return match (&self.rule, self.rules.iter().find(|v| Some(&v.rule) == self.rule.as_ref())) {
                (Some(name), Some(v)) => format!("  rule        {name} ({}) takes {what}\n", v.scope),
                _ => format!("  rule        none matches {what}\n"),
            };
        }
        if self.rules.len() == 1 && !self.unmatched {
            return String::new();
        }
        let mut out = String::new();
        for v in &self.rules {
            let why = self.why(v.action, v.reason, v.selector.as_deref());
            out += &format!("  rule        {} ({}): {}, {why}\n", v.rule, v.scope, v.action.name());
            if v.matched.len() > 1 || (v.matched.len() == 1 && v.selector.is_none()) {
                out += &format!("              its selectors holding the address: {}\n", v.matched.join(", "));
            }
        }
        if self.unmatched {
            out += "  no rule     pass: a packet no rule matches passes\n";
        }
        out
    }

    fn why(&self, action: Action, reason: Reason, selector: Option<&str>) -> String {
        let country = self.country.as_deref().unwrap_or("--");
        let selector = selector.unwrap_or("a selector");
        let why = match reason {
            Reason::AllowedSelector => format!("{selector} is allowed, whatever the country ({country})"),
            Reason::BlockedSelector => format!("{selector} is blocked, whatever the country ({country})"),
            Reason::BlockedCountry => format!("{country} is on the block list"),
            Reason::NotBlocked => format!("{country} is not on the block list"),
            Reason::Allowed => format!("{country} is on the allow list"),
            Reason::NotAllowed => format!("{country} is not on the allow list"),
            Reason::NoCountryBlocked => "no country, and addresses without one are blocked (--block-unknown)".into(),
            Reason::NoCountry => "no country; such addresses pass unless --block-unknown".into(),
            Reason::Exception => "inside an exception (--except), which overrides the drop".into(),
            Reason::NoRule => "no rule matches the packet".into(),
        };
        match action {
            Action::WouldDrop => format!("{why}; monitor mode: counted as a would-drop, delivered"),
            Action::Reject => format!("{why}; the sender is answered (a TCP reset or an ICMP error, within the rate)"),
            _ => why,
        }
    }
}

impl Packet {
    /// "tcp port 22", "icmp", "protocol 47".
    pub fn describe(&self) -> String {
        let name = protocol_name(self.protocol);
        match self.port {
            Some(port) => format!("{name} port {port}"),
            None => name,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use geoblock_common::country_id;

    use super::*;
    use crate::{
        data::{asn::AsnData, list::AddressList, table::Table, Format},
        policy::{rules::parse_ports, Mode, Protocol, Rule, RuleAction, DEFAULT_RULE},
    };

    fn table(rows: &[(&str, &[u8; 2])]) -> Table {
        let v4 = rows.iter().map(|(net, cc)| (net.parse().unwrap(), country_id(**cc).unwrap())).collect();
        Table { v4, v6: vec![] }
    }

    fn info(origin: &str) -> SourceInfo {
        SourceInfo {
            origin: origin.into(),
            formats: vec![Format::Cidr],
            date: Some("2026-11-01".into()),
            ranges: Default::default(),
            prefixes: Default::default(),
            modified: None,
            codes: Default::default(),
            country_field: None,
        }
    }

    #[test]
    fn the_later_source_with_a_country_is_named() {
        let (base, top) = (table(&[("10.0.0.0/8", b"CN")]), table(&[("10.1.0.0/16", b"DE")]));
        let loaded = Loaded {
            table: base.overlay(&top).unwrap(),
            sources: vec![info("base.txt"), info("top.txt")],
            layers: vec![base, top],
            ..Loaded::default()
        };
        let policy = Policy::from(rule(DEFAULT_RULE, Protocol::Any, "", Mode::Deny, b"CN"));
        let explain = |ip: &str| explain(&loaded, &policy, ip.parse().unwrap(), Direction::Inbound, None, Some(3));
        let de = explain("10.1.2.3");
        assert_eq!((de.prefix.as_deref(), de.country.as_deref()), (Some("10.1.0.0/16"), Some("DE")));
        assert_eq!(de.source.unwrap().origin, "top.txt");
        assert_eq!((de.action, de.reason), (Action::Pass, Reason::NotBlocked));
        let cn = explain("10.2.0.1");
        assert_eq!(cn.source.as_ref().unwrap().origin, "base.txt");
        assert_eq!((cn.action, cn.reason), (Action::Drop, Reason::BlockedCountry));
        assert!(cn.render().contains("CN is on the block list"), "{}", cn.render());
        let none = explain("192.168.1.1");
        assert_eq!((none.prefix, none.source, none.reason), (None, None, Reason::NoCountry));
        let rejecting = Policy::from(Rule {
            action: RuleAction::Reject,
            ..rule(DEFAULT_RULE, Protocol::Any, "", Mode::Deny, b"CN")
        });
        let cn = super::explain(&loaded, &rejecting, "10.2.0.1".parse().unwrap(), Direction::Inbound, None, Some(3));
        assert_eq!(cn.action, Action::Reject);
        assert!(cn.render().contains("reject") && cn.render().contains("TCP reset"), "{}", cn.render());
    }

    fn rule(name: &str, protocol: Protocol, ports: &str, mode: Mode, code: &[u8; 2]) -> Rule {
        let ports = if ports.is_empty() { vec![] } else { parse_ports(ports).unwrap() };
        let countries = BTreeSet::from([country_id(*code).unwrap()]);
        Rule { protocol, ports, ..Rule::new(name, mode, countries) }
    }

    fn cn_data() -> Loaded {
        Loaded { table: table(&[("1.0.1.0/24", b"CN")]), sources: vec![info("cn.txt")], ..Loaded::default() }
    }

    /// "SSH only from DE", "the API closed to CN", everything else untouched.
    fn two_rules() -> Policy {
        let ssh = rule("ssh", Protocol::Tcp, "22", Mode::Allow, b"DE");
        let api = rule("api", Protocol::Tcp, "443", Mode::Deny, b"RU");
        Policy::new(vec![ssh, api], vec![], true).unwrap()
    }

    #[test]
    fn one_rule_for_everything_reads_as_before() {
        let policy = Policy::from(rule(DEFAULT_RULE, Protocol::Any, "", Mode::Deny, b"CN"));
        let cn = explain(&cn_data(), &policy, "1.0.1.1".parse().unwrap(), Direction::Inbound, None, None);
        assert_eq!(cn.rule.as_deref(), Some(DEFAULT_RULE));
        assert_eq!(
            cn.render(),
            "1.0.1.1\n  direction   inbound: the address as a source\n  prefix      1.0.1.0/24 (CN)\n  source      \
             cn.txt, dated 2026-11-01\n  verdict     drop: CN is on the block list\n  replies     replies to this \
             host's own connections pass (replies on)\n"
        );
    }

    #[test]
    fn the_rule_that_takes_the_packet_decides() {
        let policy = two_rules();
        let ask = |protocol, port| {
            explain(
                &cn_data(),
                &policy,
                "1.0.1.1".parse().unwrap(),
                Direction::Inbound,
                Some(Packet { protocol, port }),
                None,
            )
        };
        let ssh = ask(6, Some(22));
        assert_eq!((ssh.rule.as_deref(), ssh.action, ssh.reason), (Some("ssh"), Action::Drop, Reason::NotAllowed));
        assert!(ssh.render().contains("  rule        ssh (tcp port 22) takes tcp port 22\n"), "{}", ssh.render());
        assert!(ssh.render().contains("  verdict     drop: CN is not on the allow list\n"), "{}", ssh.render());
        let api = ask(6, Some(443));
        assert_eq!((api.rule.as_deref(), api.action, api.reason), (Some("api"), Action::Pass, Reason::NotBlocked));
        let web = ask(6, Some(80));
        assert_eq!((web.rule.as_deref(), web.action, web.reason), (None, Action::Pass, Reason::NoRule));
        assert!(web.render().contains("  rule        none matches tcp port 80\n"), "{}", web.render());
        assert!(web.render().contains("  verdict     pass: no rule matches the packet\n"), "{}", web.render());
        let ping = ask(1, None);
        assert!(ping.render().contains("none matches icmp\n"), "{}", ping.render());
    }

    #[test]
    fn without_a_packet_every_rule_is_shown() {
        let mut policy = two_rules();
        policy.replies = false;
        let cn = explain(&cn_data(), &policy, "1.0.1.1".parse().unwrap(), Direction::Inbound, None, None);
        assert_eq!((cn.rule.as_deref(), cn.action), (Some("ssh"), Action::Drop), "the strictest rule");
        assert_eq!(cn.rules.len(), 2);
        assert_eq!(
            cn.render(),
            "1.0.1.1\n  direction   inbound: the address as a source\n  prefix      1.0.1.0/24 (CN)\n  \
             source      cn.txt, dated 2026-11-01\n  rule        ssh (tcp port 22): drop, CN is not on the allow list\n  \
             rule        api (tcp port 443): pass, CN is not on the block list\n  \
             no rule     pass: a packet no rule matches passes\n  \
             verdict     drop (rule ssh): CN is not on the allow list\n  \
             replies     replies are judged like any packet (replies off)\n"
        );
        let json = serde_json::to_value(&cn).unwrap();
        assert_eq!((json["rule"].as_str(), json["unmatched"].as_bool()), (Some("ssh"), Some(true)));
        assert_eq!(json["rules"][1]["reason"], "not-blocked");
        assert_eq!(serde_json::from_value::<Explanation>(json).unwrap(), cn);
    }

    #[test]
    fn an_exception_shows_in_every_rule() {
        let mut policy = two_rules();
        policy.exceptions = vec!["1.0.1.0/24".parse().unwrap()];
        let cn = explain(&cn_data(), &policy, "1.0.1.1".parse().unwrap(), Direction::Inbound, None, None);
        assert_eq!((cn.action, cn.reason, cn.rule.as_deref()), (Action::Pass, Reason::Exception, Some("ssh")));
    }

    /// `two_rules`, and outbound: nothing to CN on port 443, DE only otherwise.
    fn both_ways() -> Policy {
        let outbound = |r: Rule| Rule { direction: Direction::Outbound, ..r };
        let https = outbound(rule("https", Protocol::Tcp, "443", Mode::Deny, b"CN"));
        let out = outbound(rule("out", Protocol::Any, "", Mode::Allow, b"DE"));
        let mut rules = two_rules().rules;
        rules.extend([https, out]);
        Policy::new(rules, vec![], true).unwrap()
    }

    #[test]
    fn as_a_destination_the_outbound_rules_decide() {
        let policy = both_ways();
        let cn: IpAddr = "1.0.1.1".parse().unwrap();
        let ask = |direction, packet| explain(&cn_data(), &policy, cn, direction, packet, None);
        let out = ask(Direction::Outbound, None);
        assert_eq!(out.rules.iter().map(|v| v.rule.as_str()).collect::<Vec<_>>(), ["https", "out"]);
        assert_eq!((out.action, out.rule.as_deref(), out.unmatched), (Action::Drop, Some("https"), false));
        assert!(out.render().starts_with("1.0.1.1\n  direction   outbound: the address as a destination\n"));
        assert!(!out.render().contains("replies"), "replies are inbound: {}", out.render());
        assert!(out
            .render()
            .contains("  rule        out (every protocol and port): drop, CN is not on the allow list\n"));
        let web = ask(Direction::Outbound, Some(Packet { protocol: 6, port: Some(80) }));
        assert_eq!(
            (web.rule.as_deref(), web.reason),
            (Some("out"), Reason::NotAllowed),
            "the port is the destination's"
        );
        let https = ask(Direction::Outbound, Some(Packet { protocol: 6, port: Some(443) }));
        assert_eq!((https.rule.as_deref(), https.reason), (Some("https"), Reason::BlockedCountry));
        let json = serde_json::to_value(&https).unwrap();
        assert_eq!(json["direction"], "outbound");
        assert_eq!(serde_json::from_value::<Explanation>(json).unwrap(), https);
        // As a source, the outbound rules are none of its business.
        let inbound = ask(Direction::Inbound, None);
        assert_eq!(inbound.rules.iter().map(|v| v.rule.as_str()).collect::<Vec<_>>(), ["ssh", "api"]);
        assert_eq!((inbound.direction, inbound.unmatched), (Direction::Inbound, true));
    }

    /// `cn_data`, 1.0.1.0/24 in AS4134 (CHINANET) and 1.0.2.0/24 (DE) in AS64500.
    fn as_data() -> Loaded {
        let ases = Table {
            v4: vec![("1.0.1.0/24".parse().unwrap(), 4134), ("1.0.2.0/24".parse().unwrap(), 64500)],
            v6: vec![],
        };
        let mut asn = AsnData { table: ases, ..AsnData::default() };
        asn.orgs.insert(4134, "CHINANET".into());
        let countries = table(&[("1.0.1.0/24", b"CN"), ("1.0.2.0/24", b"DE")]);
        Loaded { table: countries, sources: vec![info("geo.txt")], asn, ..Loaded::default() }
    }

    /// A deny-list of `code` with `allow` and `block` selectors.
    fn with_selectors(code: &[u8; 2], allow: &[&str], block: &[&str]) -> Policy {
        let parse = |texts: &[&str]| texts.iter().map(|t| t.parse().unwrap()).collect();
        Policy::from(Rule {
            allow: parse(allow),
            block: parse(block),
            ..rule(DEFAULT_RULE, Protocol::Any, "", Mode::Deny, code)
        })
    }

    #[test]
    fn an_allowed_selector_overrides_a_blocked_country() {
        let policy = with_selectors(b"CN", &["AS4134"], &[]);
        let cn = explain(&as_data(), &policy, "1.0.1.1".parse().unwrap(), Direction::Inbound, None, None);
        assert_eq!((cn.action, cn.reason), (Action::Pass, Reason::AllowedSelector));
        assert_eq!(
            (cn.rules[0].selector.as_deref(), cn.selectors.as_slice()),
            (Some("AS4134"), &["AS4134".to_string()][..])
        );
        let text = cn.render();
        assert!(text.contains("  as          AS4134 (CHINANET)\n"), "{text}");
        assert!(text.contains("  verdict     pass: AS4134 is allowed, whatever the country (CN)\n"), "{text}");
    }

    #[test]
    fn a_blocked_selector_overrides_an_allowed_country() {
        let policy = with_selectors(b"CN", &[], &["AS64500"]);
        let de = explain(&as_data(), &policy, "1.0.2.1".parse().unwrap(), Direction::Inbound, None, None);
        assert_eq!((de.action, de.reason, de.country.as_deref()), (Action::Drop, Reason::BlockedSelector, Some("DE")));
        assert!(
            de.render().contains("  verdict     drop: AS64500 is blocked, whatever the country (DE)\n"),
            "{}",
            de.render()
        );
        let json = serde_json::to_value(&de).unwrap();
        assert_eq!((&json["reason"], &json["rules"][0]["selector"]), (&"blocked-selector".into(), &"AS64500".into()));
        assert_eq!(json["asn"]["number"], 64500);
        assert_eq!(serde_json::from_value::<Explanation>(json).unwrap(), de);
        // Its country decides an address the selector does not hold.
        let cn = explain(&as_data(), &policy, "1.0.1.1".parse().unwrap(), Direction::Inbound, None, None);
        assert_eq!((cn.reason, cn.rules[0].selector.as_deref()), (Reason::BlockedCountry, None));
    }

    #[test]
    fn when_allow_and_block_selectors_hold_it_allow_wins() {
        let mut policy = with_selectors(b"RU", &["AS4134"], &["list:tor"]);
        let tor = AddressList {
            name: "tor".into(),
            v4: vec!["1.0.1.7/32".parse().unwrap()],
            v6: vec![],
            info: Default::default(),
        };
        let data = Loaded { lists: vec![tor], ..as_data() };
        policy.rules.push(Rule {
            name: "ssh".into(),
            protocol: Protocol::Tcp,
            ports: parse_ports("22").unwrap(),
            ..policy.rules[0].clone()
        });
        policy.rules.swap(0, 1);
        let ip = "1.0.1.7".parse().unwrap();
        let both = explain(&data, &policy, ip, Direction::Inbound, None, None);
        assert_eq!((both.action, both.reason), (Action::Pass, Reason::AllowedSelector));
        assert_eq!(both.rules[0].matched, ["AS4134", "list:tor"]);
        let text = both.render();
        assert!(text.contains("  lists       list:tor\n"), "{text}");
        assert!(text.contains("  rule        ssh (tcp port 22): pass, AS4134 is allowed, whatever the country (CN)\n              its selectors holding the address: AS4134, list:tor\n"), "{text}");
        assert!(
            text.contains("  verdict     pass (rule ssh): AS4134 is allowed, whatever the country (CN)\n"),
            "{text}"
        );
    }

    #[test]
    fn without_a_rule_of_its_direction_an_address_passes() {
        let policy = two_rules();
        let out = explain(&cn_data(), &policy, "1.0.1.1".parse().unwrap(), Direction::Outbound, None, None);
        assert_eq!(
            (out.action, out.reason, out.rule.as_deref(), out.rules.len()),
            (Action::Pass, Reason::NoRule, None, 0)
        );
        assert!(out.render().contains("  no rule     pass: a packet no rule matches passes\n"), "{}", out.render());
        let mut old = serde_json::to_value(&out).unwrap();
        old.as_object_mut().unwrap().remove("direction");
        let old: Explanation = serde_json::from_value(old).unwrap();
        assert_eq!(old.direction, Direction::Inbound, "a daemon older than directions explains sources");
    }
}
