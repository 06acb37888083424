//! The multibit trie the XDP program walks, compiled from a [`Table`].
//!
//! Layout and encoding are in `geoblock_common::TrieNode`: 256 root nodes
//! indexed by the first address byte (so the first step consumes 16 bits),
//! then one node per further byte. A prefix whose length falls inside a
//! node's byte fills the run of slots it covers (controlled prefix
//! expansion). Prefixes go in shortest first and a new child starts out
//! with its parent slot's country, so a longer prefix always wins, as in a
//! longest-prefix match: overlapping input is answered exactly too.
//!
//! Nodes of equal content are then stored once: most nodes below a /16 or
//! a /24 split it in one of a few ways (half one country, the rest none...),
//! so sharing them takes the world DB-IP table from 77k nodes to 49k.
//! Each trie map is made with exactly the nodes that remain.

use std::{collections::HashMap, hash::BuildHasher as _};

use geoblock_common::{CountryId, TrieNode, NO_COUNTRY, SELECTOR_CHILD, TRIE_CHILD, TRIE_ROOTS};

use crate::{data::table::Table, Error};

/// A compiled trie: its nodes, and the slot value from which on a slot
/// names a child ([`TRIE_CHILD`] for countries, [`SELECTOR_CHILD`] for
/// selector classes: below it, the values).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trie {
    nodes: Vec<TrieNode>,
    child: u16,
}

impl Trie {
    /// The country trie of a table's IPv4 prefixes.
    pub fn v4(table: &Table) -> Result<Trie, Error> {
        Trie::compile(table.v4.iter().map(|(n, c)| (n.network().octets(), n.prefix(), *c)), "IPv4", TRIE_CHILD)
    }

    pub fn v6(table: &Table) -> Result<Trie, Error> {
        Trie::compile(table.v6.iter().map(|(n, c)| (n.network().octets(), n.prefix(), *c)), "IPv6", TRIE_CHILD)
    }

    /// The selector trie of a selector table's IPv4 prefixes (→ class).
    pub fn selectors_v4(table: &Table<u16>) -> Result<Trie, Error> {
        Trie::compile(table.v4.iter().map(|(n, c)| (n.network().octets(), n.prefix(), *c)), "IPv4", SELECTOR_CHILD)
    }

    pub fn selectors_v6(table: &Table<u16>) -> Result<Trie, Error> {
        Trie::compile(table.v6.iter().map(|(n, c)| (n.network().octets(), n.prefix(), *c)), "IPv6", SELECTOR_CHILD)
    }

    fn compile<const N: usize>(
        prefixes: impl Iterator<Item = ([u8; N], u8, u16)>,
        family: &'static str,
        child: u16,
    ) -> Result<Trie, Error> {
        let mut build = Build { nodes: vec![[u32::from(NO_COUNTRY); 256]; TRIE_ROOTS as usize] };
        let mut prefixes: Vec<_> = prefixes.collect();
        prefixes.sort_by_key(|&(_, len, _)| len);
        for (addr, len, value) in prefixes {
            build.insert(&addr, u32::from(len), value);
        }
        let nodes = build.shared();
        // The roots, then as many children as slots from `child` up name.
        let max_nodes = TRIE_ROOTS as usize + usize::from(u16::MAX - child) + 1;
        if nodes.len() > max_nodes {
            return Err(Error::TableTooLarge { family, nodes: nodes.len() });
        }
        Ok(Trie { nodes: nodes.iter().map(|node| encode(node, child)).collect(), child })
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
            if slot < self.child {
                return slot;
            }
            node = TRIE_ROOTS as usize + usize::from(slot - self.child);
        }
        NO_COUNTRY
    }
}

/// A node while the trie is built. A slot is a country, or from
/// [`BUILD_CHILD`] up the number of a child: numbers are not yet bound by
/// the 16 bits of a kernel slot.
type Node = [u32; 256];
const BUILD_CHILD: u32 = 1 << 16;

/// The trie being built: one node per place, before equal nodes are shared.
struct Build {
    nodes: Vec<Node>,
}

impl Build {
    /// Fills the slots `addr/len` covers.
    fn insert(&mut self, addr: &[u8], len: u32, country: CountryId) {
        if len < 8 {
            // Wider than one root node: fill whole roots.
            let roots = 1usize << (8 - len);
            let first = usize::from(addr[0]) & !(roots - 1);
            self.nodes[first..first + roots].iter_mut().for_each(|n| n.fill(u32::from(country)));
            return;
        }
        let mut node = usize::from(addr[0]);
        for (depth, &byte) in addr.iter().enumerate().skip(1) {
            // Address bits decided once this node's slot is read.
            let decided = 8 * (depth as u32 + 1);
            let byte = usize::from(byte);
            if len <= decided {
                let run = 1usize << (decided - len);
                let first = byte & !(run - 1);
                self.nodes[node][first..first + run].fill(u32::from(country));
                return;
            }
            node = self.child(node, byte);
        }
        unreachable!("prefix length {len} longer than the address")
    }

    /// The child under `node[byte]`, created on first use.
    fn child(&mut self, node: usize, byte: usize) -> usize {
        let slot = self.nodes[node][byte];
        if slot >= BUILD_CHILD {
            return (slot - BUILD_CHILD) as usize;
        }
        // The slot's country (from a shorter prefix) still holds for the
        // rest of the child's range.
        self.nodes.push([slot; 256]);
        let child = self.nodes.len() - 1;
        self.nodes[node][byte] = BUILD_CHILD + child as u32;
        child
    }

    /// The nodes with equal ones stored once, renumbered, roots first.
    /// Children always come after their parent, so walking from the last
    /// node back finds every node's children already shared: nodes whose
    /// children became equal are then equal too.
    fn shared(mut self) -> Vec<Node> {
        let roots = TRIE_ROOTS as usize;
        // Kept nodes by the hash of their content: the nodes themselves
        // (1 KiB each) are compared, never copied.
        let mut kept_by_hash: HashMap<u64, Vec<usize>> = HashMap::new();
        let hasher = std::hash::RandomState::new();
        let mut same_as: Vec<usize> = (0..self.nodes.len()).collect();
        for index in (0..self.nodes.len()).rev() {
            redirect(&mut self.nodes[index], |child| same_as[child]);
            if index < roots {
                continue;
            }
            let node = &self.nodes[index];
            let kept = kept_by_hash.entry(hasher.hash_one(node)).or_default();
            match kept.iter().find(|&&k| self.nodes[k] == *node) {
                Some(&equal) => same_as[index] = equal,
                None => kept.push(index),
            }
        }
        let kept: Vec<usize> = (0..self.nodes.len()).filter(|&i| same_as[i] == i).collect();
        let mut renumbered = vec![0; self.nodes.len()];
        kept.iter().enumerate().for_each(|(new, &old)| renumbered[old] = new);
        kept.iter()
            .map(|&old| {
                let mut node = self.nodes[old];
                redirect(&mut node, |child| renumbered[child]);
                node
            })
            .collect()
    }
}

fn redirect(node: &mut Node, to: impl Fn(usize) -> usize) {
    for slot in node.iter_mut().filter(|s| **s >= BUILD_CHILD) {
        *slot = BUILD_CHILD + to((*slot - BUILD_CHILD) as usize) as u32;
    }
}

/// A node as the kernel reads it, children named from `child` up; their
/// numbers fit (checked by the caller).
fn encode(node: &Node, child: u16) -> TrieNode {
    TrieNode(node.map(|slot| match slot {
        value if slot < BUILD_CHILD => value as u16,
        number => child + (number - BUILD_CHILD - TRIE_ROOTS) as u16,
    }))
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
    fn equal_nodes_are_stored_once() {
        // Eight /16s, each with the same /24 of DE and /32 of FR: their
        // nodes below the /16 and below the /24 are shared.
        let nets: Vec<_> = (0..8u32)
            .flat_map(|i| {
                let base = 0x0a00_0000 | (i << 16);
                [
                    (ipnetwork::Ipv4Network::new(Ipv4Addr::from(base | 0x0100), 24).unwrap(), id(b"DE")),
                    (ipnetwork::Ipv4Network::new(Ipv4Addr::from(base | 0x0205), 32).unwrap(), id(b"FR")),
                ]
            })
            .collect();
        let t = Trie::v4(&Table { v4: nets, v6: vec![] }).unwrap();
        assert_eq!(t.nodes().len(), TRIE_ROOTS as usize + 2);
        assert_eq!(v4(&t, "10.3.1.77"), id(b"DE"));
        assert_eq!(v4(&t, "10.7.2.5"), id(b"FR"));
        assert_eq!(v4(&t, "10.7.2.6"), NO_COUNTRY);
        assert_eq!(v4(&t, "10.8.1.1"), NO_COUNTRY);
    }

    #[test]
    fn runs_out_of_node_numbers_with_a_clear_error() {
        // Each /32 in its own /16, at its own place or of its own country,
        // costs two nodes no other shares.
        let many: Vec<_> = (0..geoblock_common::TRIE_MAX_NODES / 2 + 1)
            .map(|i| {
                let net = ipnetwork::Ipv4Network::new(Ipv4Addr::from((i << 16) | (i % 251)), 32).unwrap();
                (net, 1 + (i % 600) as CountryId)
            })
            .collect();
        let err = Trie::v4(&Table { v4: many, v6: vec![] }).unwrap_err();
        assert!(matches!(err, Error::TableTooLarge { family: "IPv4", .. }), "{err}");
    }
}
