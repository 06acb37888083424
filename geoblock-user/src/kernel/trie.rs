//! The multibit trie the XDP program walks, compiled from a [`Table`].
//!
//! Layout and encoding are in `geoblock_common::TrieNode`: 256 root nodes
//! indexed by the first address byte (so the first step consumes 16 bits),
//! then one node per further byte. A prefix whose length falls inside a
//! node's byte fills the run of slots it covers (controlled prefix
//! expansion). Prefixes go in shortest first and a new child starts out
//! with its parent slot's country, so a longer prefix always wins, as in a
//! longest-prefix match: overlapping input is answered exactly too.

use geoblock_common::{CountryId, TrieNode, NO_COUNTRY, TRIE_CHILD, TRIE_NODES, TRIE_ROOTS};

use crate::{data::table::Table, Error};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trie {
    nodes: Vec<TrieNode>,
}

impl Trie {
    pub fn v4(table: &Table) -> Result<Trie, Error> {
        let prefixes = table.v4.iter().map(|(n, c)| (n.network().octets(), n.prefix(), *c));
        Trie::compile(prefixes, "IPv4")
    }

    pub fn v6(table: &Table) -> Result<Trie, Error> {
        let prefixes = table.v6.iter().map(|(n, c)| (n.network().octets(), n.prefix(), *c));
        Trie::compile(prefixes, "IPv6")
    }

    fn compile<const N: usize>(
        prefixes: impl Iterator<Item = ([u8; N], u8, CountryId)>,
        family: &'static str,
    ) -> Result<Trie, Error> {
        let mut trie = Trie { nodes: vec![TrieNode([NO_COUNTRY; 256]); TRIE_ROOTS as usize] };
        let mut prefixes: Vec<_> = prefixes.collect();
        prefixes.sort_by_key(|&(_, len, _)| len);
        for (addr, len, country) in prefixes {
            trie.insert(&addr, u32::from(len), country).ok_or(Error::TableTooLarge { family })?;
        }
        Ok(trie)
    }

    /// The nodes to load, roots first.
    pub fn nodes(&self) -> &[TrieNode] {
        &self.nodes
    }

    /// The same walk as the XDP program's `trie_country`, for tests.
    pub fn lookup(&self, addr: &[u8]) -> CountryId {
        let mut node = usize::from(addr[0]);
        for &byte in &addr[1..] {
            let slot = self.nodes[node].0[usize::from(byte)];
            if slot < TRIE_CHILD {
                return slot;
            }
            node = child_index(slot);
        }
        NO_COUNTRY
    }

    /// Fills the slots `addr/len` covers; `None` when out of nodes.
    fn insert(&mut self, addr: &[u8], len: u32, country: CountryId) -> Option<()> {
        if len < 8 {
            // Wider than one root node: fill whole roots.
            let roots = 1usize << (8 - len);
            let first = usize::from(addr[0]) & !(roots - 1);
            self.nodes[first..first + roots].iter_mut().for_each(|n| n.0.fill(country));
            return Some(());
        }
        let mut node = usize::from(addr[0]);
        for (depth, &byte) in addr.iter().enumerate().skip(1) {
            // Address bits decided once this node's slot is read.
            let decided = 8 * (depth as u32 + 1);
            let byte = usize::from(byte);
            if len <= decided {
                let run = 1usize << (decided - len);
                let first = byte & !(run - 1);
                self.nodes[node].0[first..first + run].fill(country);
                return Some(());
            }
            node = self.child(node, byte)?;
        }
        unreachable!("prefix length {len} longer than the address")
    }

    /// The child under `node[byte]`, created on first use.
    fn child(&mut self, node: usize, byte: usize) -> Option<usize> {
        let slot = self.nodes[node].0[byte];
        if slot >= TRIE_CHILD {
            return Some(child_index(slot));
        }
        let index = self.nodes.len();
        if index >= TRIE_NODES as usize {
            return None;
        }
        // The slot's country (from a shorter prefix) still holds for the
        // rest of the child's range.
        self.nodes.push(TrieNode([slot; 256]));
        self.nodes[node].0[byte] = TRIE_CHILD + (index - TRIE_ROOTS as usize) as u16;
        Some(index)
    }
}

fn child_index(slot: u16) -> usize {
    TRIE_ROOTS as usize + usize::from(slot - TRIE_CHILD)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use geoblock_common::country_id;
    use rand::Rng as _;

    use super::*;

    fn id(code: &[u8; 2]) -> CountryId {
        country_id(*code).unwrap()
    }

    fn table(v4: &[(&str, CountryId)], v6: &[(&str, CountryId)]) -> Table {
        Table {
            v4: v4.iter().map(|(n, c)| (n.parse().unwrap(), *c)).collect(),
            v6: v6.iter().map(|(n, c)| (n.parse().unwrap(), *c)).collect(),
        }
    }

    fn v4(t: &Trie, a: &str) -> CountryId {
        t.lookup(&a.parse::<Ipv4Addr>().unwrap().octets())
    }

    #[test]
    fn every_prefix_length_and_its_boundaries() {
        // One prefix per length /0.. /32, each alone in a table, checked at
        // its first and last address and just outside.
        for len in 0..=32u8 {
            let base = if len == 0 { 0 } else { 0xC0A8_0000u32 & (u32::MAX << (32 - len)) };
            let net = ipnetwork::Ipv4Network::new(Ipv4Addr::from(base), len).unwrap();
            let t = Trie::v4(&Table { v4: vec![(net, id(b"DE"))], v6: vec![] }).unwrap();
            let last = u32::from(net.broadcast());
            assert_eq!(t.lookup(&base.to_be_bytes()), id(b"DE"), "/{len} first");
            assert_eq!(t.lookup(&last.to_be_bytes()), id(b"DE"), "/{len} last");
            if let Some(before) = base.checked_sub(1) {
                assert_eq!(t.lookup(&before.to_be_bytes()), NO_COUNTRY, "/{len} before");
            }
            if let Some(after) = last.checked_add(1) {
                assert_eq!(t.lookup(&after.to_be_bytes()), NO_COUNTRY, "/{len} after");
            }
        }
    }

    #[test]
    fn every_ipv6_prefix_length_and_its_boundaries() {
        for len in 0..=128u8 {
            let base = if len == 0 { 0 } else { 0x2a02_0db8_u128 << 96 & (u128::MAX << (128 - len)) };
            let net = ipnetwork::Ipv6Network::new(Ipv6Addr::from(base), len).unwrap();
            let t = Trie::v6(&Table { v4: vec![], v6: vec![(net, id(b"FI"))] }).unwrap();
            let last = u128::from(net.broadcast());
            assert_eq!(t.lookup(&base.to_be_bytes()), id(b"FI"), "/{len} first");
            assert_eq!(t.lookup(&last.to_be_bytes()), id(b"FI"), "/{len} last");
            if let Some(before) = base.checked_sub(1) {
                assert_eq!(t.lookup(&before.to_be_bytes()), NO_COUNTRY, "/{len} before");
            }
            if let Some(after) = last.checked_add(1) {
                assert_eq!(t.lookup(&after.to_be_bytes()), NO_COUNTRY, "/{len} after");
            }
        }
    }

    #[test]
    fn overlapping_prefixes_answer_as_longest_prefix_match() {
        // Random nested prefixes of random countries, in random order: the
        // trie must agree with a brute-force longest-prefix match.
        let mut rng = rand::rng();
        for _ in 0..50 {
            let nets: Vec<(ipnetwork::Ipv4Network, CountryId)> = (0..40)
                .map(|_| {
                    let len = rng.random_range(0..=32u8);
                    let addr = 0x0a00_0000 | rng.random_range(0..1u32 << 20);
                    let net = ipnetwork::Ipv4Network::new(Ipv4Addr::from(addr), len).unwrap();
                    let net = ipnetwork::Ipv4Network::new(net.network(), len).unwrap();
                    (net, rng.random_range(1..600))
                })
                .collect();
            // Duplicated prefixes would make the answer order-dependent.
            let mut seen = std::collections::HashSet::new();
            let nets: Vec<_> = nets.into_iter().filter(|(n, _)| seen.insert(*n)).collect();
            let t = Trie::v4(&Table { v4: nets.clone(), v6: vec![] }).unwrap();
            for _ in 0..2000 {
                let ip = Ipv4Addr::from(0x0a00_0000 | rng.random_range(0..1u32 << 20));
                let want = nets
                    .iter()
                    .filter(|(n, _)| n.contains(ip))
                    .max_by_key(|(n, _)| n.prefix())
                    .map_or(NO_COUNTRY, |(_, c)| *c);
                assert_eq!(t.lookup(&ip.octets()), want, "{ip} in {nets:?}");
            }
        }
    }

    #[test]
    fn nested_and_neighbouring_prefixes_of_other_countries() {
        let t = Trie::v4(&table(
            &[("10.0.0.0/9", id(b"US")), ("10.128.0.0/24", id(b"CA")), ("10.128.1.7/32", id(b"MX"))],
            &[],
        ))
        .unwrap();
        assert_eq!(v4(&t, "10.127.255.255"), id(b"US"));
        assert_eq!(v4(&t, "10.128.0.200"), id(b"CA"));
        assert_eq!(v4(&t, "10.128.1.7"), id(b"MX"));
        assert_eq!(v4(&t, "10.128.1.6"), NO_COUNTRY);
        assert_eq!(v4(&t, "10.128.1.8"), NO_COUNTRY);
        assert_eq!(v4(&t, "11.0.0.0"), NO_COUNTRY);
    }

    #[test]
    fn ipv6_reaches_128_bits() {
        let t = Trie::v6(&table(&[], &[("2001:db8::/32", id(b"NL")), ("2a00::1/128", id(b"SE")), ("::/3", id(b"JP"))]))
            .unwrap();
        let at = |a: &str| t.lookup(&a.parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(at("2001:db8:ffff::1"), id(b"NL"));
        assert_eq!(at("2a00::1"), id(b"SE"));
        assert_eq!(at("2a00::2"), NO_COUNTRY);
        assert_eq!(at("1fff:ffff::"), id(b"JP"));
        assert_eq!(at("2000::"), NO_COUNTRY);
    }

    #[test]
    fn runs_out_of_nodes_with_a_clear_error() {
        // Each /32 in its own /16 costs two nodes.
        let many: Vec<_> = (0..TRIE_NODES)
            .map(|i| (ipnetwork::Ipv4Network::new(Ipv4Addr::from(i << 16 | 1), 32).unwrap(), 1))
            .collect();
        let err = Trie::v4(&Table { v4: many, v6: vec![] }).unwrap_err();
        assert!(matches!(err, Error::TableTooLarge { family: "IPv4" }), "{err}");
    }
}
