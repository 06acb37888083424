//! What the benchmark loads and sends: table scopes, blocked countries, and
//! random source addresses drawn from them.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use geoblock::data::table::Table;
use geoblock_common::{country_id, CountryId};
use ipnetwork::IpNetwork;
use rand::{rngs::StdRng, seq::IndexedRandom as _, Rng as _, SeedableRng as _};

/// The 27 member states of the European Union.
pub const EU27: [&str; 27] = [
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV", "LT", "LU", "MT",
    "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
];
/// The deny-list of the world-table runs: "a few countries".
pub const FEW: [&str; 4] = ["CN", "RU", "IR", "KP"];

/// How much of the world each engine holds. Every engine blocks the same
/// countries: geoblock holds the scope's table and a deny-list policy,
/// nftables and ipset hold the blocked countries' prefixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Table: China's prefixes; blocked: CN.
    Cn,
    /// Table: the EU's prefixes; blocked: the 27 member states.
    Eu27,
    /// Table: the whole world; blocked: CN, RU, IR, KP.
    World,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Cn, Scope::Eu27, Scope::World];

    pub fn name(self) -> &'static str {
        match self {
            Scope::Cn => "cn",
            Scope::Eu27 => "eu27",
            Scope::World => "world",
        }
    }

    pub fn blocked(self) -> BTreeSet<CountryId> {
        match self {
            Scope::Cn => ids(&["CN"]),
            Scope::Eu27 => ids(&EU27),
            Scope::World => ids(&FEW),
        }
    }

    /// The table geoblock loads for this scope.
    pub fn table(self, world: &Table) -> Table {
        match self {
            Scope::World => world.clone(),
            _ => subset(world, &self.blocked()),
        }
    }
}

fn ids(codes: &[&str]) -> BTreeSet<CountryId> {
    codes.iter().map(|c| country_id(c.as_bytes().try_into().unwrap()).expect("a country code")).collect()
}

/// The prefixes of `table` whose country is in `countries`.
pub fn subset(table: &Table, countries: &BTreeSet<CountryId>) -> Table {
    Table {
        v4: table.v4.iter().filter(|(_, c)| countries.contains(c)).copied().collect(),
        v6: table.v6.iter().filter(|(_, c)| countries.contains(c)).copied().collect(),
    }
}

/// Which sources the sender draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Traffic {
    /// Every source in a blocked country.
    Blocked,
    /// Every source in a country that is not blocked.
    Allowed,
    /// Half and half.
    Mix,
}

impl Traffic {
    pub const ALL: [Traffic; 3] = [Traffic::Blocked, Traffic::Allowed, Traffic::Mix];

    pub fn name(self) -> &'static str {
        match self {
            Traffic::Blocked => "blocked",
            Traffic::Allowed => "allowed",
            Traffic::Mix => "mix",
        }
    }

    /// The share of packets every engine should drop.
    pub fn blocked_share(self) -> f64 {
        match self {
            Traffic::Blocked => 1.0,
            Traffic::Allowed => 0.0,
            Traffic::Mix => 0.5,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }
}

/// `n` random source addresses of `family` (fixed seed): a random prefix of
/// the world table, then random host bits. Blocked and allowed sources
/// alternate for [`Traffic::Mix`].
pub fn sources(
    world: &Table,
    blocked: &BTreeSet<CountryId>,
    traffic: Traffic,
    family: Family,
    n: usize,
) -> Vec<IpAddr> {
    let prefixes: Vec<(IpNetwork, bool)> = match family {
        Family::V4 => world.v4.iter().map(|&(p, c)| (p.into(), blocked.contains(&c))).collect(),
        Family::V6 => world.v6.iter().map(|&(p, c)| (p.into(), blocked.contains(&c))).collect(),
    };
    let pool =
        |want: bool| -> Vec<IpNetwork> { prefixes.iter().filter(|(_, b)| *b == want).map(|(p, _)| *p).collect() };
    let (deny, allow) = (pool(true), pool(false));
    let mut rng = StdRng::seed_from_u64(0x6765_6f62);
    (0..n)
        .map(|i| {
            let from_deny = match traffic {
                Traffic::Blocked => true,
                Traffic::Allowed => false,
                Traffic::Mix => i % 2 == 0,
            };
            let list = if from_deny { &deny } else { &allow };
            random_in(*list.choose(&mut rng).expect("no prefixes to draw from"), &mut rng)
        })
        .collect()
}

/// Sources anywhere in the world table (any country), for the test runs.
pub fn anywhere(world: &Table, family: Family, n: usize) -> Vec<IpAddr> {
    sources(world, &BTreeSet::new(), Traffic::Allowed, family, n)
}

/// A random address of `net`.
pub fn random_in(net: IpNetwork, rng: &mut StdRng) -> IpAddr {
    match net {
        IpNetwork::V4(n) => {
            let host = u32::MAX.checked_shr(u32::from(n.prefix())).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(n.network()) | (rng.random::<u32>() & host)))
        }
        IpNetwork::V6(n) => {
            let host = u128::MAX.checked_shr(u32::from(n.prefix())).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(n.network()) | (rng.random::<u128>() & host)))
        }
    }
}
