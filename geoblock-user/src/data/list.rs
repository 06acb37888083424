//! Named address lists (placeholder until the list sources land).
use std::net::IpAddr;

use ipnetwork::{Ipv4Network, Ipv6Network};

#[derive(Clone, Debug, PartialEq)]
pub struct AddressList {
    pub name: String,
    pub v4: Vec<Ipv4Network>,
    pub v6: Vec<Ipv6Network>,
}

impl AddressList {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.v4.iter().any(|n| n.contains(a)),
            IpAddr::V6(a) => self.v6.iter().any(|n| n.contains(a)),
        }
    }
}
