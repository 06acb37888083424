//! Types shared by the XDP program and the daemon.
//!
//! Everything here is `no_std` and `#[repr(C)]`: these are the layouts of the
//! kernel maps, so a change here is a change of the kernel ABI between the
//! daemon and the program it loads. [`packet`] is the frame layout both
//! sides (and the tests) read packets with.
#![no_std]

pub mod packet;

/// Map names, as the daemon looks them up in the loaded object.
pub mod maps {
    /// The table program in force: a program array of one slot, which the
    /// program the links run tail-calls. A new table comes with a new table
    /// program and replaces the old in one update.
    pub const TABLES: &str = "TABLES";
    /// The egress side of the table program in force (one slot), which the
    /// egress program tail-calls when the policy has outbound rules.
    pub const EGRESS_TABLES: &str = "EGRESS_TABLES";
    /// The table program's socket hooks, one program array per attach type
    /// (the kernel refuses tail calls between attach types): `connect()`
    /// and `sendmsg()` of IPv4 and IPv6 sockets.
    pub const CONNECT4_TABLES: &str = "CONNECT4_TABLES";
    pub const CONNECT6_TABLES: &str = "CONNECT6_TABLES";
    pub const SENDMSG4_TABLES: &str = "SENDMSG4_TABLES";
    pub const SENDMSG6_TABLES: &str = "SENDMSG6_TABLES";
    /// A table program's multibit tries ([`TrieNode`](super::TrieNode)
    /// arrays), each made with as many nodes as its table needs.
    pub const GEO_V4: &str = "GEO_V4";
    pub const GEO_V6: &str = "GEO_V6";
    /// A table program's LPM tries: the reference lookup backend.
    pub const LPM_V4: &str = "LPM_V4";
    pub const LPM_V6: &str = "LPM_V6";
    pub const EXCEPT_V4: &str = "EXCEPT_V4";
    pub const EXCEPT_V6: &str = "EXCEPT_V6";
    pub const POLICY: &str = "POLICY";
    pub const COUNTRY_STATS: &str = "COUNTRY_STATS";
    pub const TOTALS: &str = "TOTALS";
    /// Sampled drop events ([`DropEvent`](super::DropEvent) records), a ring buffer.
    pub const EVENTS: &str = "EVENTS";
    /// The events' token bucket settings ([`EventConfig`](super::EventConfig), one slot).
    pub const EVENT_CONFIG: &str = "EVENT_CONFIG";
    /// Each CPU's token bucket and event counters ([`EventBucket`](super::EventBucket), per CPU, one slot).
    pub const EVENT_BUCKET: &str = "EVENT_BUCKET";
    /// The token bucket bounding the answers to rejected packets
    /// ([`EventConfig`](super::EventConfig), one slot).
    pub const REJECT_CONFIG: &str = "REJECT_CONFIG";
    /// Each CPU's bucket and answer counters ([`RejectBucket`](super::RejectBucket), per CPU, one slot).
    pub const REJECT_BUCKET: &str = "REJECT_BUCKET";
    /// ifindex → counter slot of each attached interface (0, the default:
    /// [`OTHER_IFACE`](super::OTHER_IFACE)).
    pub const IFINDEX_SLOTS: &str = "IFINDEX_SLOTS";
    /// Counter slot → [`IfaceSlot`](super::IfaceSlot), so that another
    /// process (in another namespace) can name the counters.
    pub const IFACES: &str = "IFACES";
    /// Verdicts per rule position and address family ([`rule_stats_index`](super::rule_stats_index)).
    pub const RULE_STATS: &str = "RULE_STATS";
    /// IP protocol → rule ([`RuleSlots`](super::RuleSlots), see [`proto_rules_index`](super::proto_rules_index)).
    pub const PROTO_RULES: &str = "PROTO_RULES";
    /// Destination port → rule ([`RuleSlots`](super::RuleSlots), see [`port_rules_index`](super::port_rules_index)).
    pub const PORT_RULES: &str = "PORT_RULES";
    /// Settings the program reads on the drop path ([`Settings`](super::Settings), one slot).
    pub const SETTINGS: &str = "SETTINGS";
    /// Rule position → its name, NUL-padded (`[u8; RULE_NAME_LEN]`), so
    /// that `geoblock stats` can name the rule counters.
    pub const RULE_NAMES: &str = "RULE_NAMES";
    /// A table program's selector tries ([`TrieNode`](super::TrieNode) arrays,
    /// values below [`SELECTOR_CHILD`](super::SELECTOR_CHILD)): address →
    /// selector class, the set of selectors in use the address belongs to.
    pub const SELECTORS_V4: &str = "SELECTORS_V4";
    pub const SELECTORS_V6: &str = "SELECTORS_V6";
    /// A table program's (class, rule) → [`SelectorVerdict`](super::SelectorVerdict)
    /// (see [`selector_policy_index`](super::selector_policy_index)).
    pub const SELECTOR_POLICY: &str = "SELECTOR_POLICY";
    /// Verdicts per selector slot and direction ([`selector_stats_index`](super::selector_stats_index)).
    pub const SELECTOR_STATS: &str = "SELECTOR_STATS";
    /// Selector slot → its name, NUL-padded (`[u8; SELECTOR_NAME_LEN]`),
    /// so that `geoblock stats` can name the selector counters.
    pub const SELECTOR_NAMES: &str = "SELECTOR_NAMES";
    /// Which remote addresses may have a flow (see [`FLOW_FILTER_FLAGS`](super::FLOW_FILTER_FLAGS)).
    pub const FLOW_FILTER: &str = "FLOW_FILTER";
    /// Connections this host opened ([`FlowKey`](super::FlowKey) → last
    /// outbound packet, ns), an LRU hash the egress program writes.
    pub const FLOWS: &str = "FLOWS";
}

/// Version of the map layout above and below. A daemon that starts and finds
/// pinned maps of another version recreates them instead of reusing them:
/// bump it whenever a map's key, value, size or meaning changes.
pub const ABI_VERSION: u32 = 7;

/// Capacity of the LPM tries. The world table (DB-IP Lite) is about 600k
/// IPv4 and 780k IPv6 prefixes; leave room for growth and denser sources.
pub const MAX_V4_PREFIXES: u32 = 1 << 20;
pub const MAX_V6_PREFIXES: u32 = 1 << 21;

/// Which structure answers "which country is this address in?". Chosen at
/// load time; the verifier prunes the other path.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Multibit trie in array maps: one to three memory reads for IPv4.
    Trie = 0,
    /// The kernel's LPM trie: exact, but a pointer chase of up to 32 (IPv4)
    /// or 128 (IPv6) levels per packet.
    Lpm = 1,
}

/// One node of the multibit trie: the next byte of the address indexes it.
///
/// A slot below [`TRIE_CHILD`] is a country (0 = none); from [`TRIE_CHILD`]
/// up it names a child node, `TRIE_ROOTS + (slot - TRIE_CHILD)`. The first
/// [`TRIE_ROOTS`] nodes are the roots, one per first address byte, so the
/// first lookup consumes 16 bits and every later one 8. Nodes of equal
/// content are stored once (a node may have several parents).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TrieNode(pub [u16; 256]);
pub const TRIE_ROOTS: u32 = 256;
pub const TRIE_CHILD: u16 = 1024;
/// The most nodes a slot can name: the roots and 64,512 children. With
/// equal nodes shared the world tables need 22k to 28k per family (DB-IP,
/// GeoLite2); each trie map is made with as many nodes as its table needs.
pub const TRIE_MAX_NODES: u32 = TRIE_ROOTS + (u16::MAX - TRIE_CHILD) as u32 + 1;
/// The kernel's LPM tries are created with no preallocation (they must be).
pub const BPF_F_NO_PREALLOC: u32 = 1;
const _: () = assert!(COUNTRY_SLOTS <= TRIE_CHILD as u32);
/// Exceptions are a handful of management networks, not a data set.
pub const MAX_EXCEPTIONS: u32 = 1024;

/// A country as the kernel sees it: `1 + 26 * (c0 - 'A') + (c1 - 'A')` for an
/// ISO 3166-1 alpha-2 code, so every code has a fixed slot and the tables and
/// the policy never need a translation map. 0 means "no country".
pub type CountryId = u16;
pub const NO_COUNTRY: CountryId = 0;
/// Number of slots in the per-country maps (index 0 = no country).
pub const COUNTRY_SLOTS: u32 = 1 + 26 * 26;

/// The slot of a two-letter code (upper case ASCII), or `None`.
pub const fn country_id(code: [u8; 2]) -> Option<CountryId> {
    let [a, b] = code;
    if a.is_ascii_uppercase() && b.is_ascii_uppercase() {
        Some(1 + 26 * (a - b'A') as u16 + (b - b'A') as u16)
    } else {
        None
    }
}

/// The two-letter code of a slot, or `None` for 0 and out-of-range slots.
pub const fn country_code(id: CountryId) -> Option<[u8; 2]> {
    if id == NO_COUNTRY || id as u32 >= COUNTRY_SLOTS {
        return None;
    }
    let i = id - 1;
    Some([b'A' + (i / 26) as u8, b'A' + (i % 26) as u8])
}

/// What the program does with a packet of a country (the `POLICY` map value).
/// Written `pass`, `drop` and `would-drop` in every output ([`Action::name`]).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "kebab-case"))]
pub enum Action {
    Pass = 0,
    Drop = 1,
    /// Monitor mode: counted as a drop, delivered anyway.
    WouldDrop = 2,
    /// Dropped, and the sender told so (a TCP reset or an ICMP
    /// administratively prohibited); counted as a drop.
    Reject = 3,
}

impl Action {
    pub const fn from_u8(v: u8) -> Action {
        match v {
            1 => Action::Drop,
            2 => Action::WouldDrop,
            3 => Action::Reject,
            _ => Action::Pass,
        }
    }

    /// The one spelling of the action in text, JSON and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Action::Pass => "pass",
            Action::Drop => "drop",
            Action::WouldDrop => "would-drop",
            Action::Reject => "reject",
        }
    }

    /// Whether the packet is kept from its destination.
    pub const fn blocks(self) -> bool {
        matches!(self, Action::Drop | Action::Reject)
    }
}

/// Which way a packet goes, and so which address a rule judges: an
/// inbound packet's source, an outbound packet's destination.
#[repr(u8)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "kebab-case"))]
pub enum Direction {
    #[default]
    Inbound = 0,
    Outbound = 1,
}
pub const DIRECTIONS: u32 = 2;

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::Inbound, Direction::Outbound];

    /// The one spelling of the direction in config, text, JSON and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// Rules: the policy is an ordered list of at most [`MAX_RULES`] rules,
/// each matching a protocol and destination ports and carrying its own
/// country policy. The kernel names a rule by its id: its position plus
/// [`RULE_BANK`] times its bank. Two banks let a new rule set be written
/// beside the one in force and switched to in one step per protocol (the
/// `PROTO_RULES` entries), so that every packet sees one whole rule set.
pub const MAX_RULES: u32 = 16;
pub const RULE_BANK: u8 = MAX_RULES as u8;
pub const RULE_BANKS: u32 = 2;
/// A rule's name is at most this long less one (NUL-padded in `RULE_NAMES`).
pub const RULE_NAME_LEN: usize = 32;
/// No rule matches: the packet passes.
pub const RULE_NONE: u8 = 0xff;
/// In `PROTO_RULES`: the destination port decides, in `PORT_RULES` of
/// bank `value - RULE_BY_PORT`.
pub const RULE_BY_PORT: u8 = 0x80;

/// Eight rule ids in one map value: array map values take 8 bytes each
/// however small, so the rule maps pack eight entries per slot.
pub type RuleSlots = [u8; 8];

/// Set in a `POLICY` entry (beside the [`Action`]) when the rule has
/// selectors: the program then asks the selector table, which may decide
/// instead of the country (see [`SelectorVerdict`]). Rules without
/// selectors never pay for that lookup.
pub const POLICY_SELECTORS: u8 = 0x80;

/// Index in `POLICY` of a rule's action for a country.
pub const fn policy_index(rule: u8, country: CountryId) -> u32 {
    rule as u32 * COUNTRY_SLOTS + country as u32
}
pub const POLICY_SLOTS: u32 = RULE_BANKS * MAX_RULES * COUNTRY_SLOTS;

/// `PROTO_RULES` holds, per direction, one entry per IP protocol for
/// packets whose ports are read (or that have none), and one per protocol
/// for fragments after the first, which carry no ports: those match only
/// rules without ports. Returns (slot, byte in the slot).
pub const fn proto_rules_index(direction: Direction, protocol: u8, later_fragment: bool) -> (u32, usize) {
    let entry = (direction as u32 * 2 + later_fragment as u32) * 256 + protocol as u32;
    (entry / 8, (entry % 8) as usize)
}
pub const PROTO_RULES_SLOTS: u32 = DIRECTIONS * 2 * 256 / 8;

/// The protocols whose destination port a rule can match, and their place
/// in `PORT_RULES`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortProtocol {
    Tcp = 0,
    Udp = 1,
    Sctp = 2,
}
pub const PORT_PROTOCOLS: u32 = 3;

/// Index in `PORT_RULES` of a bank's entry for a protocol's destination
/// port in a direction: (slot, byte in the slot). A bank's entries, both
/// directions, are one stretch of the map.
pub const fn port_rules_index(bank: u8, direction: Direction, protocol: PortProtocol, port: u16) -> (u32, usize) {
    let entry =
        ((bank as u32 * DIRECTIONS + direction as u32) * PORT_PROTOCOLS + protocol as u32) * 65536 + port as u32;
    (entry / 8, (entry % 8) as usize)
}
pub const PORT_RULES_SLOTS: u32 = RULE_BANKS * DIRECTIONS * PORT_PROTOCOLS * 65536 / 8;

/// Index in `RULE_STATS` of a rule position's counters for a direction
/// and family; [`RULE_NONE`] (packets no rule matched) counts after the
/// rules. (A rule counts in its own direction only: its slots of the
/// other stay zero.)
pub const fn rule_stats_index(rule: u8, direction: Direction, family: Family) -> u32 {
    let position = if rule == RULE_NONE { MAX_RULES } else { (rule % RULE_BANK) as u32 };
    ((direction as u32 * (MAX_RULES + 1)) + position) * FAMILY_SLOTS + family as u32
}
pub const RULE_STATS_SLOTS: u32 = DIRECTIONS * (MAX_RULES + 1) * FAMILY_SLOTS;

/// Selectors: autonomous systems and named address lists that rules block
/// or allow beside countries. The daemon compiles only the selectors rules
/// use into a small trie per table program, mapping an address to its
/// *class*: the set of selectors in use it belongs to (an address has one
/// AS and may be on several lists). Slots below this value are classes
/// (0: none), from it up they name children, as [`TRIE_CHILD`] does for
/// countries.
pub const SELECTOR_CHILD: u16 = 4096;
/// Rule ids, both banks: the stride of a class's entries in `SELECTOR_POLICY`.
pub const RULE_IDS: u32 = RULE_BANKS * MAX_RULES;

/// Index in `SELECTOR_POLICY` of a rule id's verdict for a selector class.
/// A class's entries are side by side: one or two cache lines per class.
pub const fn selector_policy_index(class: u16, rule: u8) -> u32 {
    class as u32 * RULE_IDS + rule as u32
}

/// What a rule does with the addresses of a selector class
/// (`SELECTOR_POLICY`): all zero (the array's default) when none of the
/// rule's selectors holds them, so its country policy decides.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SelectorVerdict {
    /// 1: a selector of the rule decides, with `action`.
    pub decided: u8,
    /// An [`Action`]: `Pass` for an allow selector, the rule's blocking
    /// action for a block selector.
    pub action: u8,
    /// The slot of the selector that decided (its counters, its name).
    pub selector: u16,
}

/// Selectors the counters tell apart (slots of `SELECTOR_STATS` and
/// `SELECTOR_NAMES`): the daemon gives each selector in use a slot and
/// keeps it while the selector stays in use.
pub const MAX_SELECTORS: u32 = 2048;
/// No selector decided (in a [`DropEvent`]).
pub const SELECTOR_NONE: u16 = u16::MAX;
/// A selector's name (`AS4134`, `list:tor`) is at most this long less one.
pub const SELECTOR_NAME_LEN: usize = 32;

/// Index in `SELECTOR_STATS` of a selector slot's counters in a direction.
pub const fn selector_stats_index(direction: Direction, slot: u16) -> u32 {
    direction as u32 * MAX_SELECTORS + slot as u32
}
pub const SELECTOR_STATS_SLOTS: u32 = DIRECTIONS * MAX_SELECTORS;

/// What the program reads only when it is about to drop (`SETTINGS`, one slot).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Replies to connections this host opened pass (1) whatever their source.
    pub replies: u8,
    /// The half of `FLOW_FILTER` the XDP program reads (0 or 1).
    pub filter: u8,
    /// The lowest ephemeral port (`ip_local_port_range`): a UDP or SCTP
    /// datagram opens a flow only when the host sends it from a port at
    /// or above it, as clients do. A service's answers, sent from its own
    /// port, open none, so a policy change cuts its clients off at once.
    pub ephemeral_low: u16,
    /// The policy has outbound rules (1): only then do the egress program
    /// and the socket hooks judge anything, so that without them they
    /// cost this one read.
    pub outbound: u8,
    pub _reserved: [u8; 3],
    /// How long after the host's last packet of a flow its replies still
    /// pass, per protocol (see [`FLOW_TIMEOUT_TCP_NS`] for the defaults).
    pub tcp_timeout_ns: u64,
    pub udp_timeout_ns: u64,
    pub icmp_timeout_ns: u64,
}

/// A connection this host opened, as the egress program records it and
/// the XDP program looks up the reversed packet: the remote address (IPv4
/// as `::ffff:a.b.c.d`), the remote and local ports (for ICMP echo: 0 and
/// the identifier) and the protocol. Padding is explicit and zero: the
/// kernel hashes every byte of a key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowKey {
    pub remote: [u8; 16],
    pub remote_port: u16,
    pub local_port: u16,
    pub protocol: u8,
    pub _pad: [u8; 3],
}

/// The flow filter (`FLOW_FILTER`, two halves of [`FLOW_FILTER_FLAGS`]
/// byte flags, eight per slot): a flag per hash of a remote address, set
/// by the egress program in both halves whenever it records a flow. The
/// XDP program reads the flag before the flow table: a packet from an
/// address the host never talked to (nearly all of a flood) costs one read
/// of a small array instead of a hash table lookup. A set flag of an
/// address long gone costs only that lookup; the daemon clears the half
/// the XDP program does not read, then switches to it once every live flow
/// must have set its flag there again (see [`Settings::filter`]).
pub const FLOW_FILTER_FLAGS: u32 = 1 << 16;
pub const FLOW_FILTER_SLOTS: u32 = 2 * FLOW_FILTER_FLAGS / 8;

/// The flag of `remote` in the filter's half `half`: (slot, byte in the slot).
pub fn flow_filter_index(remote: &[u8; 16], half: u8) -> (u32, usize) {
    let word = |i: usize| u32::from_ne_bytes([remote[i], remote[i + 1], remote[i + 2], remote[i + 3]]);
    // Multiplicative hashing (Knuth): the top bits of the product mix all
    // of the address.
    let mixed = (word(0) ^ word(4).rotate_left(7) ^ word(8).rotate_left(14) ^ word(12).rotate_left(21))
        .wrapping_mul(0x9e37_79b1);
    let flag = (mixed >> (32 - FLOW_FILTER_FLAGS.trailing_zeros())) + half as u32 * FLOW_FILTER_FLAGS;
    (flag / 8, (flag % 8) as usize)
}

/// Flows the `FLOWS` LRU hash holds by default: a busy server's outbound
/// connections. When full, the least recently used entry makes room.
pub const DEFAULT_FLOWS: u32 = 256 * 1024;
/// Default flow timeouts. TCP: RFC 5382's established idle timeout (2 h 4
/// min); UDP: RFC 4787's recommended 5 minutes; ICMP echo: RFC 5508's 60 s.
/// Other protocols with ports (SCTP) take TCP's.
pub const FLOW_TIMEOUT_TCP_NS: u64 = 7440 * 1_000_000_000;
pub const FLOW_TIMEOUT_UDP_NS: u64 = 300 * 1_000_000_000;
pub const FLOW_TIMEOUT_ICMP_NS: u64 = 60 * 1_000_000_000;
/// The egress program rewrites a flow's time at most this often: a busy
/// connection does not write the shared entry on every packet.
pub const FLOW_REFRESH_NS: u64 = 1_000_000_000;

/// Interfaces the counters tell apart: the daemon gives each attached
/// interface a slot of its own; packets of any other ifindex are counted in
/// slot [`OTHER_IFACE`]. Every slot costs `COUNTRY_SLOTS` counters per CPU.
pub const IFACE_SLOTS: u32 = 8;
pub const OTHER_IFACE: u32 = 0;
/// `IFINDEX_SLOTS` is an array indexed by ifindex, whose lookup the
/// verifier inlines (a hash map costs a hash per packet): interfaces of a
/// higher ifindex are counted as other.
pub const IFINDEX_LIMIT: u32 = 1 << 16;

/// What a counter slot counts (`IFACES`, indexed by slot).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceSlot {
    /// The interface name, NUL-padded to the kernel's IFNAMSIZ; empty: a free slot.
    pub name: [u8; 16],
    /// The ifindex `IFINDEX_SLOTS` maps to this slot (0: none).
    pub ifindex: u32,
}

/// Index in `COUNTRY_STATS` of a country's counters on an interface slot
/// in a direction.
pub const fn country_stats_index(direction: Direction, iface: u32, country: CountryId) -> u32 {
    (direction as u32 * IFACE_SLOTS + iface) * COUNTRY_SLOTS + country as u32
}
pub const COUNTRY_STATS_SLOTS: u32 = DIRECTIONS * IFACE_SLOTS * COUNTRY_SLOTS;

/// Index in `TOTALS` of a total on an interface slot in a direction.
pub const fn total_index(direction: Direction, iface: u32, total: Total) -> u32 {
    (direction as u32 * IFACE_SLOTS + iface) * TOTAL_SLOTS + total as u32
}
pub const TOTALS_SLOTS: u32 = DIRECTIONS * IFACE_SLOTS * TOTAL_SLOTS;

/// Address family (see [`rule_stats_index`]).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4 = 0,
    V6 = 1,
}
pub const FAMILY_SLOTS: u32 = 2;

/// Verdict counters (`COUNTRY_STATS`, per CPU, indexed by
/// [`country_stats_index`]; `RULE_STATS`, indexed by [`rule_stats_index`]). Its JSON
/// form is part of `geoblock stats --json`: fields are added, never renamed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
pub struct CountryCounters {
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
    pub passed_packets: u64,
    pub passed_bytes: u64,
    pub would_drop_packets: u64,
    pub would_drop_bytes: u64,
}

impl core::ops::Add for CountryCounters {
    type Output = CountryCounters;
    fn add(self, c: CountryCounters) -> CountryCounters {
        CountryCounters {
            dropped_packets: self.dropped_packets + c.dropped_packets,
            dropped_bytes: self.dropped_bytes + c.dropped_bytes,
            passed_packets: self.passed_packets + c.passed_packets,
            passed_bytes: self.passed_bytes + c.passed_bytes,
            would_drop_packets: self.would_drop_packets + c.would_drop_packets,
            would_drop_bytes: self.would_drop_bytes + c.would_drop_bytes,
        }
    }
}

impl CountryCounters {
    /// The dropped, passed and would-drop pairs.
    pub const fn by_action(&self) -> [(Action, Counter); 3] {
        [
            (Action::Drop, Counter { packets: self.dropped_packets, bytes: self.dropped_bytes }),
            (Action::Pass, Counter { packets: self.passed_packets, bytes: self.passed_bytes }),
            (Action::WouldDrop, Counter { packets: self.would_drop_packets, bytes: self.would_drop_bytes }),
        ]
    }
}

/// A packet/byte pair (`TOTALS`, per CPU, indexed by [`total_index`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

impl core::ops::Add for Counter {
    type Output = Counter;
    fn add(self, c: Counter) -> Counter {
        Counter { packets: self.packets + c.packets, bytes: self.bytes + c.bytes }
    }
}

/// Packets that never reach a country verdict.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Total {
    /// ARP, LLDP and other non-IP frames: passed.
    NonIp = 0,
    /// Too short or malformed to read a source address: passed to the kernel,
    /// which validates (and usually drops) them itself. Also, dropped: IPv6
    /// header chains too long to judge, and packets whose ports the rules
    /// need but whose header ends before them.
    Unparsed = 1,
    /// Would have been dropped (or would-dropped), but the source is inside
    /// an exception CIDR: passed, and not counted against its country.
    Exception = 2,
    /// Would have been dropped, but answers a connection this host opened
    /// (see [`FlowKey`]): passed, and not counted against its country.
    Reply = 3,
}
pub const TOTAL_SLOTS: u32 = 4;

impl Total {
    pub const ALL: [Total; 4] = [Total::NonIp, Total::Unparsed, Total::Exception, Total::Reply];

    /// The one spelling of the total in text and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Total::NonIp => "non-ip",
            Total::Unparsed => "unparsed",
            Total::Exception => "exception",
            Total::Reply => "reply",
        }
    }
}

/// Bytes of the frame an event carries (the pcap snap length): enough for
/// Ethernet, two VLAN tags, an IPv4 header with options or an IPv6 header,
/// and the ports.
pub const EVENT_SNAPLEN: usize = 128;
/// Size of the events ring buffer: about 1700 events, many seconds of
/// backlog at the default rate should the daemon be slow to read.
pub const EVENT_RING_BYTES: u32 = 256 * 1024;

/// A dropped (or, in monitor mode, would-drop) packet, as the XDP program
/// samples it into `EVENTS`. Addresses, protocol and ports are not copied
/// out separately: userspace reads them from `frame`, which keeps the
/// packet path to one copy.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropEvent {
    /// `bpf_ktime_get_ns`: CLOCK_MONOTONIC.
    pub timestamp_ns: u64,
    /// The frame's length on the wire (what the counters count).
    pub frame_len: u32,
    pub ifindex: u32,
    pub country: CountryId,
    /// The [`Action`] taken: `Drop`, `Reject` or `WouldDrop`.
    pub action: u8,
    /// How many bytes of `frame` hold the frame's start.
    pub captured: u8,
    /// The position of the rule that decided.
    pub rule: u8,
    /// The [`Direction`] the packet went.
    pub direction: u8,
    /// The slot of the selector that decided, or [`SELECTOR_NONE`].
    pub selector: u16,
    pub frame: [u8; EVENT_SNAPLEN],
}

/// A per-CPU token bucket's settings: the events' (`EVENT_CONFIG`, one
/// slot) and the answers to rejected packets' (`REJECT_CONFIG`). Tokens are counted in units, `cost` per event; every nanosecond
/// adds `rate` units to each CPU's bucket, up to `burst` units. With `cost =
/// 1e9 × CPUs`, the CPUs together emit at most `rate` events per second
/// (plus the burst); userspace computes the numbers.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventConfig {
    /// Events (answers) per second over all CPUs; 0 turns them off.
    pub rate: u64,
    pub cost: u64,
    pub burst: u64,
    /// Idle time after which a bucket is full: elapsed time is capped to it,
    /// so that `elapsed × rate` cannot overflow.
    pub fill_ns: u64,
}

/// One CPU's token bucket, and what became of the drops it saw
/// (`EVENT_BUCKET`, per CPU, one slot). The counters live beside the bucket
/// so that a flood's packets touch one map slot, not two.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventBucket {
    pub tokens: u64,
    /// When the bucket was last refilled (CLOCK_MONOTONIC_COARSE, ns).
    pub last_ns: u64,
    /// Written to the ring buffer.
    pub emitted: u64,
    /// Not sampled: the bucket was empty.
    pub suppressed: u64,
    /// Sampled, but the ring buffer was full (its reader is behind or gone).
    pub lost: u64,
}

/// One CPU's token bucket for answers to rejected packets, and what
/// became of them (`REJECT_BUCKET`, per CPU, one slot).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RejectBucket {
    pub tokens: u64,
    /// When the bucket was last refilled (CLOCK_MONOTONIC_COARSE, ns).
    pub last_ns: u64,
    /// A TCP reset or an ICMP error sent.
    pub sent: u64,
    /// Dropped without an answer: the bucket was empty.
    pub suppressed: u64,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] structs of u64, no padding (so are the next three).
    unsafe impl aya::Pod for super::CountryCounters {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Counter {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::EventConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::EventBucket {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RejectBucket {}
    // SAFETY: #[repr(C)], fields laid out without padding (24 + 128 bytes).
    unsafe impl aya::Pod for super::DropEvent {}
    // SAFETY: #[repr(C)] bytes then a u32: 20 bytes, no padding.
    unsafe impl aya::Pod for super::IfaceSlot {}
    // SAFETY: #[repr(C)] array of u16.
    unsafe impl aya::Pod for super::TrieNode {}
    // SAFETY: #[repr(C)], 8 bytes then u64s: no padding.
    unsafe impl aya::Pod for super::Settings {}
    // SAFETY: #[repr(C)], two bytes then a u16: no padding.
    unsafe impl aya::Pod for super::SelectorVerdict {}
    // SAFETY: #[repr(C)], 16 + 2 + 2 + 1 + 3 bytes, padding explicit.
    unsafe impl aya::Pod for super::FlowKey {}
}

const _: () = assert!(core::mem::size_of::<DropEvent>() == 24 + EVENT_SNAPLEN);
const _: () = assert!(core::mem::size_of::<FlowKey>() == 24);
const _: () =
    assert!(RULE_BY_PORT as u32 + RULE_BANKS <= RULE_NONE as u32 && RULE_BANKS * MAX_RULES <= RULE_BY_PORT as u32);
const _: () = assert!(EVENT_SNAPLEN <= u8::MAX as usize);
const _: () = assert!(MAX_SELECTORS <= SELECTOR_NONE as u32);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn country_slots_round_trip() {
        assert_eq!(country_id(*b"AA"), Some(1));
        assert_eq!(country_id(*b"ZZ"), Some(COUNTRY_SLOTS as u16 - 1));
        for a in b'A'..=b'Z' {
            for b in b'A'..=b'Z' {
                let id = country_id([a, b]).unwrap();
                assert_eq!(country_code(id), Some([a, b]));
            }
        }
        assert_eq!(country_code(NO_COUNTRY), None);
        assert_eq!(country_code(COUNTRY_SLOTS as u16), None);
        assert_eq!(country_id(*b"us"), None);
        assert_eq!(country_id(*b"A1"), None);
    }

    /// `geoblock stats --json` prints these, and the privileged tests read
    /// them back: the names are an interface.
    #[cfg(feature = "user")]
    #[test]
    fn counters_keep_their_json_names() {
        let country = CountryCounters {
            dropped_packets: 1,
            dropped_bytes: 2,
            passed_packets: 3,
            passed_bytes: 4,
            would_drop_packets: 5,
            would_drop_bytes: 6,
        };
        let json = serde_json::to_string(&country).unwrap();
        assert_eq!(
            json,
            r#"{"dropped_packets":1,"dropped_bytes":2,"passed_packets":3,"passed_bytes":4,"would_drop_packets":5,"would_drop_bytes":6}"#
        );
        assert_eq!(serde_json::from_str::<CountryCounters>(&json).unwrap(), country);
        let total = Counter { packets: 7, bytes: 8 };
        let json = serde_json::to_string(&total).unwrap();
        assert_eq!(json, r#"{"packets":7,"bytes":8}"#);
        assert_eq!(serde_json::from_str::<Counter>(&json).unwrap(), total);
    }
}
