//! The lock-out guard: a policy that would drop the operator's own SSH
//! session or a management network is refused (unless `--force`), because
//! once it is in force nobody can log in to undo it; and so is one whose
//! outbound rules would cut the host off from its DNS resolvers or its
//! default gateways, without which it reaches nothing by name, or nothing
//! beyond its link.

pub mod ssh;
pub mod upstream;

use std::{fmt, net::IpAddr};

use geoblock_common::{CountryId, NO_COUNTRY};
use ipnetwork::IpNetwork;

pub use self::{
    ssh::{ssh_client, SshClient},
    upstream::{upstreams, Upstream, Upstreams},
};
use crate::{
    country,
    data::table::Table,
    policy::{Direction, Mode, Policy, Rule, Selector, SelectorTable},
};

/// Addresses that must stay reachable, what they are and how the guard
/// knows of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Protected {
    pub net: IpNetwork,
    pub what: &'static str,
    /// `SSH_CONNECTION`, `connected to port 22`, `--management`,
    /// `/etc/resolv.conf`, `default route via eth0`.
    pub found: String,
    pub role: Role,
}

/// How the host talks with a protected address, and so which rules can
/// cut it off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Both ways, either side opening (an SSH client, a management
    /// network): every rule can.
    Peer,
    /// The host asks, it answers (a resolver, a gateway): outbound rules
    /// can, and inbound ones when replies are judged like any packet.
    Upstream,
}

/// "the SSH client 192.0.2.7 (connected to port 22)"
impl fmt::Display for Protected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match is_host(&self.net) {
            true => write!(f, "{} {} ({})", self.what, self.net.ip(), self.found),
            false => write!(f, "{} {} ({})", self.what, self.net, self.found),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "refusing a policy that drops {protected}: {reason}; add an exception for it, or use --force if that is \
     really meant"
)]
pub struct LockedOut {
    pub protected: Protected,
    pub reason: String,
}

/// The SSH clients the guard keeps reachable, and the sshd ports it looked
/// for connections to.
pub struct SshClients {
    pub clients: Vec<SshClient>,
    pub ports: Vec<u16>,
}

/// Every SSH client the guard keeps reachable, each once: the daemon's own
/// `SSH_CONNECTION`, that of the control command (`command`), and the peers
/// of the established connections to sshd. Loopback clients are left out:
/// XDP never sees their packets.
pub fn ssh_clients(command: Option<IpAddr>) -> SshClients {
    let from_env =
        ssh_client().into_iter().chain(command).map(|addr| SshClient { addr, found: ssh::Found::Environment });
    let (connected, ports) = ssh::connected_clients();
    let mut clients: Vec<SshClient> = Vec::new();
    for client in from_env.chain(connected) {
        if !client.addr.is_loopback() && !clients.iter().any(|c| c.addr == client.addr) {
            clients.push(client);
        }
    }
    SshClients { clients, ports }
}

/// The management networks, the SSH clients and the upstreams. Upstreams
/// on loopback are left out: no program judges loopback traffic (see
/// [`on_loopback`]).
pub fn protected(management: &[IpNetwork], ssh_clients: &[SshClient], upstreams: &[Upstream]) -> Vec<Protected> {
    let management = management.iter().map(|&net| Protected {
        net,
        what: "management network",
        found: "--management".into(),
        role: Role::Peer,
    });
    let ssh = ssh_clients.iter().map(|c| Protected {
        net: IpNetwork::from(c.addr),
        what: "the SSH client",
        found: c.found.to_string(),
        role: Role::Peer,
    });
    let upstreams = upstreams.iter().filter(|u| !u.addr().is_loopback()).map(|u| Protected {
        net: IpNetwork::from(u.addr()),
        what: u.what(),
        found: u.found(),
        role: Role::Upstream,
    });
    management.chain(ssh).chain(upstreams).collect()
}

/// The upstreams on loopback (systemd-resolved's 127.0.0.53, `::1`): safe
/// from every rule, since neither XDP nor the egress programs see loopback
/// traffic, and the socket hooks let it pass.
pub fn on_loopback(upstreams: &[Upstream]) -> impl Iterator<Item = &Upstream> {
    upstreams.iter().filter(|u| u.addr().is_loopback())
}

/// Refuses `policy` if any of its rules that can cut off a protected
/// network (see [`Role`]) blocks any part of it: any country the data
/// gives part of it, or (with `block_unknown`) its first address when no
/// country claims it, or a block selector (`selectors`: the policy's
/// compiled) holding part of it. A single address is judged exactly, so an
/// allow selector holding it keeps it safe; in a network, only what blocks
/// counts. Every such rule counts, whatever its ports: the way in (or out)
/// may use any of them. An exception covering the whole network makes it
/// safe. Monitor mode drops nothing, so it always passes.
pub fn check(
    policy: &Policy,
    table: &Table,
    selectors: &SelectorTable,
    protected: &[Protected],
) -> Result<(), LockedOut> {
    for p in protected {
        if policy.exceptions.iter().any(|e| covers(e, &p.net)) {
            continue;
        }
        let judged = Judged { policy, table, selectors };
        for rule in policy.rules.iter().filter(|rule| cuts_off(policy, rule, p.role)) {
            match is_host(&p.net) {
                true => judged.check_host(rule, p)?,
                false => judged.check_rule(rule, p)?,
            }
        }
    }
    Ok(())
}

/// Whether `rule` can keep the host from an address of `role`: an
/// upstream's answers are replies, which pass inbound rules unless
/// `--no-replies`.
fn cuts_off(policy: &Policy, rule: &Rule, role: Role) -> bool {
    match role {
        Role::Peer => true,
        Role::Upstream => rule.direction == Direction::Outbound || !policy.replies,
    }
}

/// What a protected address is judged by.
struct Judged<'a> {
    policy: &'a Policy,
    table: &'a Table,
    selectors: &'a SelectorTable,
}

impl Judged<'_> {
    /// A protected address, judged as the kernel would.
    fn check_host(&self, rule: &Rule, p: &Protected) -> Result<(), LockedOut> {
        let Judged { policy, table, selectors } = *self;
        let ip = p.net.network();
        let country = table.lookup(ip).map_or(NO_COUNTRY, |(_, c)| c);
        let class = selectors.table.lookup(ip).map_or(0, |(_, k)| k);
        let held = &selectors.classes[usize::from(class)];
        let decision = rule.decide(country, held, ip, &[]);
        if !decision.action.blocks() {
            return Ok(());
        }
        let which = which_rule(policy, rule);
        let reason = match (decision.selector, country) {
            (Some(selector), _) => dropped_selector(&which, &p.net, selector),
            (None, NO_COUNTRY) => unclaimed(&which),
            (None, country) => dropped_country(rule, &which, &p.net, country),
        };
        Err(LockedOut { protected: p.clone(), reason })
    }

    /// A protected network: any part of it blocked refuses the rule.
    fn check_rule(&self, rule: &Rule, p: &Protected) -> Result<(), LockedOut> {
        let Judged { policy, table, selectors } = *self;
        let refuse = |reason: String| Err(LockedOut { protected: p.clone(), reason });
        let which = which_rule(policy, rule);
        for country in labels_in(table, &p.net) {
            if rule.action(country).blocks() {
                return refuse(dropped_country(rule, &which, &p.net, country));
            }
        }
        for class in labels_in(&selectors.table, &p.net) {
            if let Some((action, selector)) = rule.selector_decision(&selectors.classes[usize::from(class)]) {
                if action.blocks() {
                    return refuse(dropped_selector(&which, &p.net, selector));
                }
            }
        }
        if table.lookup(p.net.network()).is_none() && rule.action(NO_COUNTRY).blocks() {
            return refuse(unclaimed(&which));
        }
        Ok(())
    }
}

/// " of rule ssh (inbound, tcp port 22)"; nothing for a policy of one
/// inbound rule that matches everything, which reads as before rules.
fn which_rule(policy: &Policy, rule: &Rule) -> String {
    match policy.whole_list() {
        Some(_) => String::new(),
        None => format!(" of rule {} ({})", rule.name, rule.traffic()),
    }
}

/// Why `net`, (partly) in `country`, is dropped: its country and the rule.
fn dropped_country(rule: &Rule, which: &str, net: &IpNetwork, country: CountryId) -> String {
    let whose = if is_host(net) { "it is" } else { "part of it is" };
    let list = match rule.mode {
        Mode::Deny => format!("which the deny-list{which} blocks"),
        Mode::Allow => format!("which the allow-list{which} does not allow"),
    };
    format!("{whose} in {}, {list}", country::code(country))
}

/// Why an address no country claims is dropped.
fn unclaimed(which: &str) -> String {
    format!("no country claims it, and --block-unknown{which} drops such addresses")
}

/// Why `net`, (partly) held by `selector`, is dropped.
fn dropped_selector(which: &str, net: &IpNetwork, selector: &Selector) -> String {
    let whose = if is_host(net) { "it is" } else { "part of it is" };
    format!("{whose} in {selector}, a block selector{which}")
}

fn is_host(net: &IpNetwork) -> bool {
    net.prefix() == if net.is_ipv4() { 32 } else { 128 }
}

/// Every label (country, selector class) of a table prefix overlapping `net`.
fn labels_in(table: &Table, net: &IpNetwork) -> Vec<CountryId> {
    let overlap = |prefix: IpNetwork| covers(&prefix, net) || covers(net, &prefix);
    match net {
        IpNetwork::V4(_) => table.v4.iter().filter(|(p, _)| overlap(IpNetwork::V4(*p))).map(|&(_, c)| c).collect(),
        IpNetwork::V6(_) => table.v6.iter().filter(|(p, _)| overlap(IpNetwork::V6(*p))).map(|&(_, c)| c).collect(),
    }
}

/// Whether `outer` contains all of `inner`.
fn covers(outer: &IpNetwork, inner: &IpNetwork) -> bool {
    outer.prefix() <= inner.prefix() && outer.contains(inner.network())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use geoblock_common::country_id;

    use super::*;
    use crate::policy::{Protocol, RuleAction, DEFAULT_RULE};

    /// The guard for a policy of countries alone.
    fn guard(policy: &Policy, table: &Table, protected: &[Protected]) -> Result<(), LockedOut> {
        check(policy, table, &SelectorTable::default(), protected)
    }

    #[test]
    fn block_selectors_are_guarded_and_allow_selectors_keep_an_address_safe() {
        let asn = crate::data::asn::AsnData {
            table: Table { v4: vec![("10.0.3.0/24".parse().unwrap(), 64500)], v6: vec![] },
            ..Default::default()
        };
        let block = Rule { block: ["AS64500".parse().unwrap()].into(), ..rule(Mode::Deny, &[]) };
        let policy = Policy::from(block);
        let selectors = SelectorTable::compile(&policy.selectors(), &asn, &[]).unwrap();
        let err = check(&policy, &table(), &selectors, &ssh("10.0.3.4")).unwrap_err();
        assert!(err.reason.contains("it is in AS64500, a block selector"), "{}", err.reason);
        assert!(check(&policy, &table(), &selectors, &ssh("10.0.4.4")).is_ok());
        let mgmt = protected(&["10.0.0.0/16".parse().unwrap()], &[], &[]);
        let err = check(&policy, &table(), &selectors, &mgmt).unwrap_err();
        assert!(err.reason.contains("part of it is in AS64500"), "{}", err.reason);
        // An allow-list that does not allow US, but allows the client's AS.
        let allow = Rule { allow: ["AS64500".parse().unwrap()].into(), ..rule(Mode::Allow, &[b"DE"]) };
        let policy = Policy::from(allow);
        let selectors = SelectorTable::compile(&policy.selectors(), &asn, &[]).unwrap();
        assert!(check(&policy, &table(), &selectors, &ssh("10.0.3.4")).is_ok());
    }

    fn cc(code: &[u8; 2]) -> u16 {
        country_id(*code).unwrap()
    }

    fn table() -> Table {
        Table {
            v4: vec![("10.0.0.0/16".parse().unwrap(), cc(b"US")), ("10.1.0.0/16".parse().unwrap(), cc(b"CN"))],
            v6: vec![("2001:db8::/32".parse().unwrap(), cc(b"DE"))],
        }
    }

    fn rule(mode: Mode, codes: &[&[u8; 2]]) -> Rule {
        Rule::new(DEFAULT_RULE, mode, codes.iter().map(|c| cc(c)).collect::<BTreeSet<_>>())
    }

    fn policy(mode: Mode, codes: &[&[u8; 2]]) -> Policy {
        Policy::from(rule(mode, codes))
    }

    fn ssh(ip: &str) -> Vec<Protected> {
        let client = SshClient { addr: ip.parse().unwrap(), found: ssh::Found::Connection { port: 22 } };
        protected(&[], &[client], &[])
    }

    #[test]
    fn the_ssh_client_may_not_be_dropped() {
        let deny_us = policy(Mode::Deny, &[b"US"]);
        let err = guard(&deny_us, &table(), &ssh("10.0.3.4")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "refusing a policy that drops the SSH client 10.0.3.4 (connected to port 22): it is in US, which the \
             deny-list blocks; add an exception for it, or use --force if that is really meant"
        );
        assert!(guard(&deny_us, &table(), &ssh("10.1.3.4")).is_ok());
        let allow_de = policy(Mode::Allow, &[b"DE"]);
        assert!(guard(&allow_de, &table(), &ssh("2001:db8::1")).is_ok());
        let err = guard(&allow_de, &table(), &ssh("10.1.0.1")).unwrap_err();
        assert_eq!(err.reason, "it is in CN, which the allow-list does not allow");
        assert!(protected(&[], &[], &[]).is_empty());
    }

    #[test]
    fn any_part_of_a_management_network_counts() {
        let mgmt = protected(&["10.0.0.0/15".parse().unwrap()], &[], &[]);
        let deny_cn = policy(Mode::Deny, &[b"CN"]);
        let err = guard(&deny_cn, &table(), &mgmt).unwrap_err();
        assert!(err.to_string().contains("drops management network 10.0.0.0/15 (--management): part of it is in CN"));
        // A narrower network inside a dropped prefix, too.
        let inside = protected(&["10.1.2.0/24".parse().unwrap()], &[], &[]);
        assert!(guard(&deny_cn, &table(), &inside).is_err());
    }

    #[test]
    fn exceptions_monitor_and_unknown_addresses() {
        let mgmt = protected(&["10.1.2.0/24".parse().unwrap()], &[], &[]);
        let deny_cn = policy(Mode::Deny, &[b"CN"]);
        let excepted = Policy { exceptions: vec!["10.1.0.0/16".parse().unwrap()], ..deny_cn.clone() };
        assert!(guard(&excepted, &table(), &mgmt).is_ok());
        let partly = Policy { exceptions: vec!["10.1.2.0/25".parse().unwrap()], ..deny_cn.clone() };
        assert!(guard(&partly, &table(), &mgmt).is_err(), "half an exception is not enough");
        assert!(guard(&Policy::from(Rule { monitor: true, ..rule(Mode::Deny, &[b"CN"]) }), &table(), &mgmt).is_ok());
        let lan = ssh("192.168.1.5");
        assert!(guard(&deny_cn, &table(), &lan).is_ok());
        let strict = Policy::from(Rule { block_unknown: true, ..rule(Mode::Deny, &[b"CN"]) });
        assert!(guard(&strict, &table(), &lan).unwrap_err().reason.contains("--block-unknown"));
    }

    #[test]
    fn every_rule_counts_whatever_its_ports() {
        let web = Rule {
            name: "web".into(),
            protocol: Protocol::Tcp,
            ports: vec!["443".parse().unwrap()],
            ..rule(Mode::Deny, &[b"CN"])
        };
        let login = Rule { name: "ssh".into(), ports: vec!["22".parse().unwrap()], ..rule(Mode::Allow, &[b"CN"]) };
        let p = Policy::new(vec![login, web], vec![], true).unwrap();
        let err = guard(&p, &table(), &ssh("10.1.3.4")).unwrap_err();
        assert_eq!(err.reason, "it is in CN, which the deny-list of rule web (inbound, tcp port 443) blocks");
        let err = guard(&p, &table(), &ssh("10.0.3.4")).unwrap_err();
        assert_eq!(
            err.reason,
            "it is in US, which the allow-list of rule ssh (inbound, tcp, udp and sctp port 22) does not allow"
        );
        let monitored = Policy::new(vec![Rule { monitor: true, ..p.rules[1].clone() }], vec![], true).unwrap();
        assert!(guard(&monitored, &table(), &ssh("10.1.3.4")).is_ok());
        let strict = Policy::from(Rule { block_unknown: true, ..p.rules[1].clone() });
        let err = guard(&strict, &table(), &ssh("192.168.1.5")).unwrap_err();
        assert_eq!(
            err.reason,
            "no country claims it, and --block-unknown of rule web (inbound, tcp port 443) drops such addresses"
        );
    }

    fn outbound(r: Rule) -> Rule {
        Rule { name: "out".into(), direction: Direction::Outbound, ..r }
    }

    fn upstreams(resolver: &str, gateway: &str) -> Vec<Protected> {
        let resolver = Upstream::Resolver { addr: resolver.parse().unwrap(), file: upstream::RESOLVER_FILES[0] };
        let gateway = Upstream::Gateway { addr: gateway.parse().unwrap(), iface: "eth0".into() };
        protected(&[], &[], &[resolver, gateway])
    }

    #[test]
    fn outbound_rules_may_not_cut_off_the_resolvers_or_the_gateway() {
        let host = upstreams("2001:db8::53", "10.1.0.1");
        let deny_cn = Policy::from(outbound(rule(Mode::Deny, &[b"CN"])));
        assert_eq!(
            guard(&deny_cn, &table(), &host).unwrap_err().to_string(),
            "refusing a policy that drops the default gateway 10.1.0.1 (default route via eth0): it is in CN, which \
             the deny-list of rule out (outbound, every protocol and port) blocks; add an exception for it, or use \
             --force if that is really meant"
        );
        let rejecting = Policy::from(Rule { action: RuleAction::Reject, ..deny_cn.rules[0].clone() });
        assert!(guard(&rejecting, &table(), &host).is_err(), "a reject blocks as a drop does");
        let allow_us = Policy::from(outbound(rule(Mode::Allow, &[b"US", b"CN"])));
        let err = guard(&allow_us, &table(), &host).unwrap_err();
        assert_eq!(err.protected.to_string(), "the DNS resolver 2001:db8::53 (/etc/resolv.conf)");
        assert_eq!(
            err.reason,
            "it is in DE, which the allow-list of rule out (outbound, every protocol and port) does not allow"
        );
        let monitored = Policy::from(Rule { monitor: true, ..deny_cn.rules[0].clone() });
        assert!(guard(&monitored, &table(), &host).is_ok(), "monitor mode blocks nothing");
        let excepted = Policy { exceptions: vec!["10.1.0.0/24".parse().unwrap()], ..deny_cn };
        assert!(guard(&excepted, &table(), &host).is_ok());
    }

    #[test]
    fn inbound_rules_cut_off_upstreams_only_when_replies_are_judged() {
        let host = upstreams("192.168.1.53", "10.1.0.1");
        let deny_cn = policy(Mode::Deny, &[b"CN"]);
        assert!(guard(&deny_cn, &table(), &host).is_ok(), "the answers of a server the host asks are replies");
        let strict = Policy { replies: false, ..deny_cn };
        assert_eq!(guard(&strict, &table(), &host).unwrap_err().protected.what, "the default gateway");
        // A resolver no country claims: only --block-unknown cuts it off.
        let unknown = Policy::from(outbound(Rule { block_unknown: true, ..rule(Mode::Deny, &[b"RU"]) }));
        let err = guard(&unknown, &table(), &host).unwrap_err();
        assert_eq!(err.protected.to_string(), "the DNS resolver 192.168.1.53 (/etc/resolv.conf)");
        assert!(
            err.reason.starts_with("no country claims it, and --block-unknown of rule out (outbound"),
            "{}",
            err.reason
        );
    }

    #[test]
    fn loopback_resolvers_are_safe_and_not_protected() {
        let stub = Upstream::Resolver { addr: "127.0.0.53".parse().unwrap(), file: upstream::RESOLVER_FILES[0] };
        let local = Upstream::Resolver { addr: "::1".parse().unwrap(), file: upstream::RESOLVER_FILES[0] };
        let host = [stub.clone(), local.clone()];
        assert!(protected(&[], &[], &host).is_empty());
        assert_eq!(on_loopback(&host).collect::<Vec<_>>(), [&stub, &local]);
        let everything = Policy::from(outbound(Rule { block_unknown: true, ..rule(Mode::Allow, &[b"DE"]) }));
        assert!(guard(&everything, &table(), &protected(&[], &[], &host)).is_ok());
    }

    #[test]
    fn outbound_rules_may_not_cut_off_the_way_in_either() {
        // The host's answers to its SSH client and management network go out.
        let deny_us = Policy::from(outbound(rule(Mode::Deny, &[b"US"])));
        let err = guard(&deny_us, &table(), &ssh("10.0.3.4")).unwrap_err();
        assert_eq!(
            err.reason,
            "it is in US, which the deny-list of rule out (outbound, every protocol and port) blocks"
        );
        let mgmt = protected(&["10.1.2.0/24".parse().unwrap()], &[], &[]);
        let deny_cn = Policy::from(outbound(rule(Mode::Deny, &[b"CN"])));
        assert_eq!(guard(&deny_cn, &table(), &mgmt).unwrap_err().protected.what, "management network");
    }
}
