//! The lock-out guard: a policy that would drop the operator's own SSH
//! session or a management network is refused (unless `--force`), because
//! once it is in force nobody can log in to undo it.

use std::net::IpAddr;

use geoblock_common::{Action, NO_COUNTRY};
use ipnetwork::IpNetwork;

use crate::{country, data::table::Table, policy::Policy};

/// Sources that must stay reachable, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Protected {
    pub net: IpNetwork,
    pub what: &'static str,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "refusing a policy that drops {what} {net} ({reason}): add an exception for it, \
     or use --force if that is really meant"
)]
pub struct LockedOut {
    pub what: &'static str,
    pub net: IpNetwork,
    pub reason: String,
}

/// The client of the SSH session this process runs in, from
/// `SSH_CONNECTION` ("client port server port").
pub fn ssh_client() -> Option<IpAddr> {
    parse_ssh_connection(&std::env::var("SSH_CONNECTION").ok()?)
}

fn parse_ssh_connection(value: &str) -> Option<IpAddr> {
    value.split_whitespace().next()?.parse().ok()
}

/// The management networks, plus the clients of SSH sessions (the one the
/// daemon was started from, the one a control command came from).
pub fn protected(management: &[IpNetwork], ssh_clients: impl IntoIterator<Item = IpAddr>) -> Vec<Protected> {
    let ssh = ssh_clients.into_iter().map(|ip| Protected { net: IpNetwork::from(ip), what: "the SSH client" });
    management.iter().map(|&net| Protected { net, what: "management network" }).chain(ssh).collect()
}

/// Refuses `policy` if it drops any part of a protected network: any
/// country the data gives part of it, or (with `block_unknown`) its first
/// address when no country claims it. An exception covering the whole
/// network makes it safe. Monitor mode drops nothing, so it always passes.
pub fn check(policy: &Policy, table: &Table, protected: &[Protected]) -> Result<(), LockedOut> {
    for p in protected {
        if policy.exceptions.iter().any(|e| covers(e, &p.net)) {
            continue;
        }
        let refuse = |reason: String| Err(LockedOut { what: p.what, net: p.net, reason });
        for country in countries_in(table, &p.net) {
            if policy.action(country) == Action::Drop {
                return refuse(format!("it is in {}", country::code(country)));
            }
        }
        if table.lookup(p.net.network()).is_none() && policy.action(NO_COUNTRY) == Action::Drop {
            return refuse("it has no country and unknown addresses are dropped".into());
        }
    }
    Ok(())
}

/// Every country of a table prefix overlapping `net`.
fn countries_in(table: &Table, net: &IpNetwork) -> Vec<u16> {
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
    use crate::policy::Mode;

    fn cc(code: &[u8; 2]) -> u16 {
        country_id(*code).unwrap()
    }

    fn table() -> Table {
        Table {
            v4: vec![("10.0.0.0/16".parse().unwrap(), cc(b"US")), ("10.1.0.0/16".parse().unwrap(), cc(b"CN"))],
            v6: vec![("2001:db8::/32".parse().unwrap(), cc(b"DE"))],
        }
    }

    fn policy(mode: Mode, codes: &[&[u8; 2]]) -> Policy {
        Policy {
            mode,
            countries: codes.iter().map(|c| cc(c)).collect::<BTreeSet<_>>(),
            monitor: false,
            block_unknown: false,
            exceptions: vec![],
        }
    }

    fn ssh(ip: &str) -> Vec<Protected> {
        protected(&[], parse_ssh_connection(&format!("{ip} 51234 10.9.9.9 22")))
    }

    #[test]
    fn the_ssh_client_may_not_be_dropped() {
        let deny_us = policy(Mode::Deny, &[b"US"]);
        let err = check(&deny_us, &table(), &ssh("10.0.3.4")).unwrap_err();
        assert_eq!((err.what, err.reason.as_str()), ("the SSH client", "it is in US"));
        assert!(check(&deny_us, &table(), &ssh("10.1.3.4")).is_ok());
        let allow_de = policy(Mode::Allow, &[b"DE"]);
        assert!(check(&allow_de, &table(), &ssh("2001:db8::1")).is_ok());
        assert!(check(&allow_de, &table(), &ssh("10.1.0.1")).is_err());
        assert_eq!(parse_ssh_connection("garbage"), None);
        assert!(protected(&[], None).is_empty());
    }

    #[test]
    fn any_part_of_a_management_network_counts() {
        let mgmt = protected(&["10.0.0.0/15".parse().unwrap()], None);
        let deny_cn = policy(Mode::Deny, &[b"CN"]);
        let err = check(&deny_cn, &table(), &mgmt).unwrap_err();
        assert_eq!(err.what, "management network");
        // A narrower network inside a dropped prefix, too.
        let inside = protected(&["10.1.2.0/24".parse().unwrap()], None);
        assert!(check(&deny_cn, &table(), &inside).is_err());
    }

    #[test]
    fn exceptions_monitor_and_unknown_addresses() {
        let mgmt = protected(&["10.1.2.0/24".parse().unwrap()], None);
        let deny_cn = policy(Mode::Deny, &[b"CN"]);
        let excepted = Policy { exceptions: vec!["10.1.0.0/16".parse().unwrap()], ..deny_cn.clone() };
        assert!(check(&excepted, &table(), &mgmt).is_ok());
        let partly = Policy { exceptions: vec!["10.1.2.0/25".parse().unwrap()], ..deny_cn.clone() };
        assert!(check(&partly, &table(), &mgmt).is_err(), "half an exception is not enough");
        assert!(check(&Policy { monitor: true, ..deny_cn.clone() }, &table(), &mgmt).is_ok());
        let lan = ssh("192.168.1.5");
        assert!(check(&deny_cn, &table(), &lan).is_ok());
        let strict = Policy { block_unknown: true, ..deny_cn };
        assert!(check(&strict, &table(), &lan).unwrap_err().reason.contains("no country"));
    }
}
