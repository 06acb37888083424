//! `geoblock explain IP...`: why an address gets its verdict. The prefix and
//! country of the table, the data source that gave them, and the policy's
//! verdict with its reason, from the same functions the daemon fills the
//! kernel's maps with.

use std::net::IpAddr;

use geoblock_common::{Action, NO_COUNTRY};
use serde::{Deserialize, Serialize};

use crate::{
    country,
    data::{Loaded, SourceInfo},
    policy::{Policy, Reason},
};

/// One address explained. A stable schema (`--json`): fields are added,
/// never renamed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    pub address: IpAddr,
    /// The prefix of the table in force that holds it; none when no
    /// country claims it.
    pub prefix: Option<String>,
    pub country: Option<String>,
    /// The data source that gave the country (a later source wins).
    pub source: Option<Provenance>,
    /// The daemon's table generation (none offline).
    pub generation: Option<u64>,
    /// `drop`, `pass` or `would-drop` (monitor mode: counted, delivered).
    pub action: Action,
    pub reason: Reason,
    pub monitor: bool,
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

/// Explains `ip` against `data` and `policy`; `generation` is the daemon's.
pub fn explain(data: &Loaded, policy: &Policy, ip: IpAddr, generation: Option<u64>) -> Explanation {
    let found = data.table.lookup(ip);
    let decision = policy.decide(found.map_or(NO_COUNTRY, |(_, c)| c), ip);
    let source = source_of(data, ip);
    Explanation {
        address: ip,
        prefix: found.map(|(net, _)| net.to_string()),
        country: found.map(|(_, c)| country::code(c).to_string()),
        source: source.map(|s| Provenance { origin: s.origin.clone(), date: s.date.clone() }),
        generation,
        action: decision.action,
        reason: decision.reason,
        monitor: policy.monitor,
    }
}

impl Explanation {
    /// The human-readable form: the address line, then indented details.
    pub fn render(&self) -> String {
        let mut out = format!("{}\n", self.address);
        match (&self.prefix, &self.country) {
            (Some(prefix), Some(country)) => out += &format!("  prefix      {prefix} ({country})\n"),
            _ => out += "  prefix      none: no country claims this address\n",
        }
        if let Some(source) = &self.source {
            let date = source.date.as_deref().map_or(String::new(), |d| format!(", dated {d}"));
            let generation = self.generation.map_or(String::new(), |g| format!(", table generation {g}"));
            out += &format!("  source      {}{date}{generation}\n", source.origin);
        }
        out += &format!("  verdict     {}: {}\n", self.action.name(), self.why());
        out
    }

    fn why(&self) -> String {
        let country = self.country.as_deref().unwrap_or("--");
        let why = match self.reason {
            Reason::BlockedCountry => format!("{country} is on the block list"),
            Reason::NotBlocked => format!("{country} is not on the block list"),
            Reason::Allowed => format!("{country} is on the allow list"),
            Reason::NotAllowed => format!("{country} is not on the allow list"),
            Reason::NoCountryBlocked => "no country, and addresses without one are blocked (--block-unknown)".into(),
            Reason::NoCountry => "no country; such addresses pass unless --block-unknown".into(),
            Reason::Exception => "inside an exception (--except), which overrides the drop".into(),
        };
        match self.action {
            Action::WouldDrop => format!("{why}; monitor mode: counted as a would-drop, delivered"),
            _ => why,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use geoblock_common::country_id;

    use super::*;
    use crate::{
        data::{table::Table, Format},
        policy::Mode,
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
        };
        let policy = Policy {
            mode: Mode::Deny,
            countries: BTreeSet::from([country_id(*b"CN").unwrap()]),
            monitor: false,
            block_unknown: false,
            exceptions: vec![],
        };
        let explain = |ip: &str| explain(&loaded, &policy, ip.parse().unwrap(), Some(3));
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
    }
}
