//! geoblock's XDP program: read the sender's address, find its country,
//! find the rule the packet's protocol and port fall under, apply that
//! rule's policy for the country, count.
//!
//! Everything a verdict depends on lives in maps the daemon fills: the prefix
//! tries (address → country), the rules (protocol and port → rule), the
//! policy ((rule, country) → action), the exceptions (addresses never
//! dropped) and the flows the host opened (their replies are never
//! dropped). Changing which countries are blocked never touches the tries.
//!
//! A rule may also block or allow selectors (autonomous systems, named
//! address lists). Its policy entries then say so, and only then is the
//! selector trie (address → class, the selectors in use it belongs to)
//! walked and the class's verdict for the rule read: it decides instead
//! of the country when one of the rule's selectors holds the address.
//!
//! Two programs: `geoblock`, which the links run, only tail-calls the table
//! program in force; `geoblock_table` does the work. The daemon loads a
//! table program for each table, its tries made exactly as large as the
//! table needs (plain arrays, whose lookups the verifier inlines), fills
//! them and swaps the program into `TABLES` in one update. Every other map
//! is shared by all of them, and by the egress program (`flows`).
//!
//! Outbound rules judge a packet's destination with the same decision,
//! run by the egress and socket programs of `outbound`.
#![no_std]
#![no_main]

mod bucket;
mod events;
mod flows;
mod frame;
mod outbound;
mod reject;

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS},
    macros::{map, xdp},
    maps::{lpm_trie::Key, Array, LpmTrie, PerCpuArray, ProgramArray},
    programs::XdpContext,
    Global,
};
use aya_log_ebpf::debug;
use geoblock_common::{
    country_stats_index,
    packet::{IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, IPV4_DST, IPV4_SRC, IPV6_DST, IPV6_SRC, L4_DST_PORT},
    policy_index, port_rules_index, proto_rules_index, rule_stats_index, selector_policy_index, selector_stats_index,
    total_index, Action, Backend, Counter, CountryCounters, CountryId, Direction, Family, IfaceSlot, PortProtocol,
    RuleSlots, SelectorVerdict, Total, TrieNode, BPF_F_NO_PREALLOC, COUNTRY_STATS_SLOTS, IFACE_SLOTS, IFINDEX_LIMIT,
    MAX_EXCEPTIONS, MAX_RULES, MAX_SELECTORS, MAX_V4_PREFIXES, MAX_V6_PREFIXES, NO_COUNTRY, OTHER_IFACE,
    POLICY_SELECTORS, POLICY_SLOTS, PORT_RULES_SLOTS, PROTO_RULES_SLOTS, RULE_BANKS, RULE_BY_PORT, RULE_NAME_LEN,
    RULE_NONE, RULE_STATS_SLOTS, SELECTOR_CHILD, SELECTOR_NAME_LEN, SELECTOR_NONE, SELECTOR_STATS_SLOTS, TOTALS_SLOTS,
    TRIE_CHILD, TRIE_ROOTS,
};

use crate::frame::{parse, read, read_be16, Frame, Ip, Packet, L4};

/// Set by the loader; read-only, so the verifier drops the unused backend.
#[unsafe(no_mangle)]
static BACKEND: Global<u8> = Global::new(Backend::Trie as u8);

/// The table program in force, slot 0 (see the top of this file).
#[map]
static TABLES: ProgramArray = ProgramArray::with_max_entries(1, 0);
// The table program's own tables. The loader sizes the tries to the table
// (the 1 is a placeholder); the LPM tries allocate as they fill.
#[map]
static GEO_V4: Array<TrieNode> = Array::with_max_entries(1, 0);
#[map]
static GEO_V6: Array<TrieNode> = Array::with_max_entries(1, 0);
#[map]
static LPM_V4: LpmTrie<[u8; 4], CountryId> = LpmTrie::with_max_entries(MAX_V4_PREFIXES, BPF_F_NO_PREALLOC);
#[map]
static LPM_V6: LpmTrie<[u8; 16], CountryId> = LpmTrie::with_max_entries(MAX_V6_PREFIXES, BPF_F_NO_PREALLOC);
/// The table program's selector tries and verdicts, sized like the tries.
#[map]
static SELECTORS_V4: Array<TrieNode> = Array::with_max_entries(1, 0);
#[map]
static SELECTORS_V6: Array<TrieNode> = Array::with_max_entries(1, 0);
/// (selector class, rule) → [`SelectorVerdict`] (see `selector_policy_index`).
#[map]
static SELECTOR_POLICY: Array<SelectorVerdict> = Array::with_max_entries(1, 0);
#[map]
static EXCEPT_V4: LpmTrie<[u8; 4], u8> = LpmTrie::with_max_entries(MAX_EXCEPTIONS, 0);
#[map]
static EXCEPT_V6: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(MAX_EXCEPTIONS, 0);
/// (rule, country) → [`Action`] as u8 (see `policy_index`).
#[map]
static POLICY: Array<u8> = Array::with_max_entries(POLICY_SLOTS, 0);
/// IP protocol → rule, or "the port decides" (see `proto_rules_index`).
#[map]
static PROTO_RULES: Array<RuleSlots> = Array::with_max_entries(PROTO_RULES_SLOTS, 0);
/// Destination port → rule, per protocol and bank (see `port_rules_index`).
#[map]
static PORT_RULES: Array<RuleSlots> = Array::with_max_entries(PORT_RULES_SLOTS, 0);
/// Rule position → name: only `geoblock stats` reads it (see `IFACES`).
#[map]
static RULE_NAMES: Array<[u8; RULE_NAME_LEN]> = Array::with_max_entries(MAX_RULES, 0);
/// Counters per interface slot and country (see `country_stats_index`).
#[map]
static COUNTRY_STATS: PerCpuArray<CountryCounters> = PerCpuArray::with_max_entries(COUNTRY_STATS_SLOTS, 0);
#[map]
static TOTALS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(TOTALS_SLOTS, 0);
#[map]
static RULE_STATS: PerCpuArray<CountryCounters> = PerCpuArray::with_max_entries(RULE_STATS_SLOTS, 0);
/// Counters per selector slot (see `selector_stats_index`).
#[map]
static SELECTOR_STATS: PerCpuArray<CountryCounters> = PerCpuArray::with_max_entries(SELECTOR_STATS_SLOTS, 0);
/// Selector slot → name: only `geoblock stats` reads it (see `IFACES`).
#[map]
static SELECTOR_NAMES: Array<[u8; SELECTOR_NAME_LEN]> = Array::with_max_entries(MAX_SELECTORS, 0);
/// ifindex → counter slot, written by the daemon for the interfaces it
/// attaches to: one inlined array lookup per packet.
#[map]
static IFINDEX_SLOTS: Array<u32> = Array::with_max_entries(IFINDEX_LIMIT, 0);
/// Slot → interface: only the daemon and `geoblock stats` use it; it lives
/// here so that it is created, pinned and adopted with the counters.
#[map]
static IFACES: Array<IfaceSlot> = Array::with_max_entries(IFACE_SLOTS, 0);

const LPM: u8 = Backend::Lpm as u8;
/// No rule id: the rules tell the packet's ports apart, and its header ends
/// before them. Dropped, counted as unparsed.
const PORT_HIDDEN: u8 = RULE_NONE - 1;

/// What the links run: the table program in force, whose verdict is final
/// (a tail call does not return).
#[xdp]
pub fn geoblock(ctx: XdpContext) -> u32 {
    // SAFETY: the context is this program's own, handed on unchanged.
    unsafe { TABLES.tail_call(&ctx, 0) };
    // No table program yet: the daemon installs one before it attaches, so
    // only a state emptied by hand gets here. Nothing to judge by: pass.
    XDP_PASS
}

#[xdp]
pub fn geoblock_table(ctx: XdpContext) -> u32 {
    match judge::<_, INBOUND>(&ctx) {
        Action::Drop => XDP_DROP,
        // The event was sampled before the answer takes the frame's place.
        Action::Reject => reject::answer(&ctx),
        Action::WouldDrop | Action::Pass => XDP_PASS,
    }
}

/// The directions as [`judge`] takes them: a constant, so that each
/// program is compiled for its own and pays nothing for the other's.
const INBOUND: bool = false;
const OUTBOUND: bool = true;

/// What becomes of the frame going inbound (judged by its source) or
/// outbound (by its destination), counted and sampled: its rule's action
/// for the country; `Pass` for what reaches no country verdict (not IP,
/// an exception, a reply), `Drop` for what the rules cannot judge.
#[inline(always)]
fn judge<F: Frame, const OUT: bool>(frame: &F) -> Action {
    let iface = IFINDEX_SLOTS.get(frame.ifindex()).map_or(OTHER_IFACE, |s| *s);
    let count = Count { iface, bytes: frame.len(), direction: direction(OUT) };
    let (v4, v6) = if OUT { (IPV4_DST, IPV6_DST) } else { (IPV4_SRC, IPV6_SRC) };
    match parse(frame) {
        Packet::V4(ip) => match read::<[u8; 4]>(frame, ip.l3 + v4) {
            Some(addr) => ip_verdict::<_, 4, OUT>(frame, ip, addr, flows::mapped(addr), V4, count),
            None => unparsed(frame, count),
        },
        Packet::V6(ip) => match read::<[u8; 16]>(frame, ip.l3 + v6) {
            Some(addr) => ip_verdict::<_, 16, OUT>(frame, ip, addr, addr, V6, count),
            None => unparsed(frame, count),
        },
        Packet::NotIp => count_total(Total::NonIp, count),
        Packet::Unparsed => unparsed(frame, count),
        Packet::Hidden => hidden(count),
    }
}

#[inline(always)]
const fn direction(out: bool) -> Direction {
    if out {
        Direction::Outbound
    } else {
        Direction::Inbound
    }
}

/// Where a packet is counted: its interface's slot, and its length.
#[derive(Clone, Copy)]
struct Count {
    iface: u32,
    bytes: u64,
    direction: Direction,
}

/// A packet whose ports the rules need cannot be judged: dropped, counted
/// as unparsed.
#[inline(always)]
fn hidden(count: Count) -> Action {
    count_total(Total::Unparsed, count);
    Action::Drop
}

#[inline(always)]
fn unparsed(frame: &impl Frame, count: Count) -> Action {
    debug!(frame, "geoblock: unparsed frame of {} bytes passed", count.bytes);
    count_total(Total::Unparsed, count)
}

/// An address family's maps: with them one path serves IPv4 (N = 4) and
/// IPv6 (N = 16).
struct Tables<const N: usize> {
    family: Family,
    trie: &'static Array<TrieNode>,
    lpm: &'static LpmTrie<[u8; N], CountryId>,
    selectors: &'static Array<TrieNode>,
    exceptions: &'static LpmTrie<[u8; N], u8>,
}

const V4: Tables<4> =
    Tables { family: Family::V4, trie: &GEO_V4, lpm: &LPM_V4, selectors: &SELECTORS_V4, exceptions: &EXCEPT_V4 };
const V6: Tables<16> =
    Tables { family: Family::V6, trie: &GEO_V6, lpm: &LPM_V6, selectors: &SELECTORS_V6, exceptions: &EXCEPT_V6 };

/// The judged address's country, the rule the packet falls under, and
/// their verdict. `remote` is the address as flows name it: an inbound
/// packet answering a flow the host opened passes.
#[inline(always)]
fn ip_verdict<F: Frame, const N: usize, const OUT: bool>(
    frame: &F,
    ip: Ip,
    addr: [u8; N],
    remote: [u8; 16],
    tables: Tables<N>,
    count: Count,
) -> Action {
    let key = Key::new(8 * N as u32, addr);
    let country = country(&tables, &key, &addr);
    let class = || trie_walk::<N, SELECTOR_CHILD>(tables.selectors, &addr);
    let rescued = || {
        if tables.exceptions.get(&key).is_some() {
            Some(Total::Exception)
        } else if !OUT && flows::is_reply(frame, ip, remote, N == 4) {
            Some(Total::Reply)
        } else {
            None
        }
    };
    match rule(frame, count.direction, ip.l4) {
        PORT_HIDDEN => hidden(count),
        rule => verdict(frame, Judged { country, rule, family: tables.family }, class, rescued, count),
    }
}

/// The country of `addr` (`key` for the LPM trie), from the backend the
/// loader chose.
#[inline(always)]
fn country<const N: usize>(tables: &Tables<N>, key: &Key<[u8; N]>, addr: &[u8; N]) -> CountryId {
    // A plain value, not an Option: LLVM would spill the payload of a None
    // uninitialised, which the verifier refuses.
    match BACKEND.load() {
        LPM => tables.lpm.get(key).copied().unwrap_or(NO_COUNTRY),
        _ => trie_walk::<N, TRIE_CHILD>(tables.trie, addr),
    }
}

/// The rule a packet falls under: its protocol's, or, when the rules tell
/// that protocol's ports apart, its destination port's. A fragment after
/// the first has no ports: it falls under the rules that name none. A
/// packet whose ports the rules need but cannot be read is [`PORT_HIDDEN`].
#[inline(always)]
fn rule(frame: &impl Frame, direction: Direction, l4: L4) -> u8 {
    let by_protocol = protocol_rule(direction, l4.protocol, l4.later_fragment);
    let bank = by_protocol.wrapping_sub(RULE_BY_PORT);
    if u32::from(bank) >= RULE_BANKS {
        return by_protocol;
    }
    // Not a later fragment, yet no port: a truncated header, which the
    // kernel rejects anyway, so nothing legitimate is lost by dropping it.
    match read_be16(frame, l4.offset + L4_DST_PORT) {
        Some(port) => port_rule(direction, bank, l4.protocol, port),
        None => PORT_HIDDEN,
    }
}

#[inline(always)]
fn protocol_rule(direction: Direction, protocol: u8, later_fragment: bool) -> u8 {
    let (slot, byte) = proto_rules_index(direction, protocol, later_fragment);
    PROTO_RULES.get(slot).map_or(RULE_NONE, |s| s[byte])
}

/// The rule of a destination `port` of `protocol` in `bank`.
#[inline(always)]
fn port_rule(direction: Direction, bank: u8, protocol: u8, port: u16) -> u8 {
    let protocol = match protocol {
        IPPROTO_TCP => PortProtocol::Tcp,
        IPPROTO_UDP => PortProtocol::Udp,
        IPPROTO_SCTP => PortProtocol::Sctp,
        _ => return RULE_NONE,
    };
    let (slot, byte) = port_rules_index(bank, direction, protocol, port);
    PORT_RULES.get(slot).map_or(RULE_NONE, |s| s[byte])
}

/// Walks a multibit trie: the first two address bytes pick a root slot,
/// each later byte a slot in the child named by the previous one, until a
/// slot holds a value (below `CHILD`: a country, or a selector class).
/// IPv4 takes at most 3 reads, IPv6 at most 15. 0: no value.
#[inline(always)]
fn trie_walk<const N: usize, const CHILD: u16>(trie: &Array<TrieNode>, addr: &[u8; N]) -> u16 {
    let mut node = u32::from(addr[0]);
    for byte in &addr[1..] {
        let Some(n) = trie.get(node) else {
            return NO_COUNTRY;
        };
        let slot = n.0[usize::from(*byte)];
        if slot < CHILD {
            return slot;
        }
        node = TRIE_ROOTS + u32::from(slot - CHILD);
    }
    NO_COUNTRY
}

/// What a packet is judged by: its address's country and family, and
/// the rule it falls under.
#[derive(Clone, Copy)]
struct Judged {
    country: CountryId,
    rule: u8,
    family: Family,
}

/// The rule's action for the address (see [`decide`]), unless an
/// exception or a reply rescues a packet that would be dropped. Both are
/// only consulted on that path: they cannot change a pass, so passing
/// traffic never pays for the lookups. Drops and would-drops are sampled
/// as events.
#[inline(always)]
fn verdict(
    frame: &impl Frame,
    judged: Judged,
    class: impl FnOnce() -> u16,
    rescued: impl FnOnce() -> Option<Total>,
    count: Count,
) -> Action {
    let (action, selector) = decide(judged.rule, judged.country, class);
    if action != Action::Pass {
        if let Some(total) = rescued() {
            return count_total(total, count);
        }
    }
    count_verdict(judged, selector, action, count);
    if action != Action::Pass {
        events::sample(frame, judged, action as u8, selector, count.direction as u8);
    }
    action
}

/// The rule's action for an address of `country` (no rule: pass), and the
/// selector that decided it: when the rule has selectors, the address's
/// selector `class` may hold one of them, whose verdict then stands (the
/// daemon wrote it with the rule's allow selectors before its block ones).
/// A function of its own: inlined, its frame would push the deepest call
/// chain (judging, then answering a reject) past the 512 bytes of stack
/// BPF allows.
#[inline(never)]
fn decide(rule: u8, country: CountryId, class: impl FnOnce() -> u16) -> (Action, u16) {
    if rule == RULE_NONE {
        return (Action::Pass, SELECTOR_NONE);
    }
    let Some(&entry) = POLICY.get(policy_index(rule, country)) else {
        return (Action::Pass, SELECTOR_NONE);
    };
    if entry & POLICY_SELECTORS != 0 {
        if let Some(by) = SELECTOR_POLICY.get(selector_policy_index(class(), rule)) {
            if by.decided != 0 {
                return (Action::from_u8(by.action), by.selector);
            }
        }
    }
    (Action::from_u8(entry & !POLICY_SELECTORS), SELECTOR_NONE)
}

/// Counts `action` against the country (on the interface), the rule and
/// the selector that decided, if one did.
#[inline(always)]
fn count_verdict(judged: Judged, selector: u16, action: Action, count: Count) {
    let at = country_stats_index(count.direction, count.iface, judged.country);
    count_action(&COUNTRY_STATS, at, action, count.bytes);
    let at = rule_stats_index(judged.rule, count.direction, judged.family);
    count_action(&RULE_STATS, at, action, count.bytes);
    if selector != SELECTOR_NONE {
        count_action(&SELECTOR_STATS, selector_stats_index(count.direction, selector), action, count.bytes);
    }
}

#[inline(always)]
fn count_action(map: &PerCpuArray<CountryCounters>, index: u32, action: Action, bytes: u64) {
    let Some(stats) = map.get_ptr_mut(index) else {
        return;
    };
    // SAFETY: a per-CPU slot; BPF programs run with migration off, and
    // the few that share a CPU's slot only count (a lost increment at worst).
    let stats = unsafe { &mut *stats };
    let (packets, sum) = match action {
        Action::Drop | Action::Reject => (&mut stats.dropped_packets, &mut stats.dropped_bytes),
        Action::WouldDrop => (&mut stats.would_drop_packets, &mut stats.would_drop_bytes),
        Action::Pass => (&mut stats.passed_packets, &mut stats.passed_bytes),
    };
    *packets += 1;
    *sum += bytes;
}

/// Counts a packet that reaches no country verdict; it passes.
#[inline(always)]
fn count_total(total: Total, count: Count) -> Action {
    if let Some(c) = TOTALS.get_ptr_mut(total_index(count.direction, count.iface, total)) {
        // SAFETY: per-CPU slot, see `count_action`.
        let c = unsafe { &mut *c };
        c.packets += 1;
        c.bytes += count.bytes;
    }
    Action::Pass
}

geoblock_ebpf::object_boilerplate!();
