//! geoblock's XDP program: read the sender's address, find its country, apply
//! the policy, count.
//!
//! Everything a verdict depends on lives in maps the daemon fills: the prefix
//! tries (address → country), the policy (country → action), and the
//! exceptions (addresses never dropped). Changing who is blocked never touches the tries.
//!
//! Two programs: `geoblock`, which the links run, only tail-calls the table
//! program in force; `geoblock_table` does the work. The daemon loads a
//! table program for each table, its tries made exactly as large as the
//! table needs (plain arrays, whose lookups the verifier inlines), fills
//! them and swaps the program into `TABLES` in one update. Every other map
//! is shared by all of them.
#![no_std]
#![no_main]

mod events;

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
    packet::{
        ETH_HLEN, ETH_PROTO, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, IPV4_HLEN, IPV4_SRC, IPV6_HLEN, IPV6_SRC,
        MAX_VLAN_TAGS, VLAN_HLEN, VLAN_PROTO,
    },
    total_index, Action, Backend, Counter, CountryCounters, CountryId, Family, IfaceSlot, Total, TrieNode,
    BPF_F_NO_PREALLOC, COUNTRY_SLOTS, COUNTRY_STATS_SLOTS, FAMILY_SLOTS, IFACE_SLOTS, IFINDEX_LIMIT, MAX_EXCEPTIONS,
    MAX_V4_PREFIXES, MAX_V6_PREFIXES, NO_COUNTRY, OTHER_IFACE, TOTALS_SLOTS, TRIE_CHILD, TRIE_ROOTS,
};

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
#[map]
static EXCEPT_V4: LpmTrie<[u8; 4], u8> = LpmTrie::with_max_entries(MAX_EXCEPTIONS, 0);
#[map]
static EXCEPT_V6: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(MAX_EXCEPTIONS, 0);
/// Country → [`Action`] as u8.
#[map]
static POLICY: Array<u8> = Array::with_max_entries(COUNTRY_SLOTS, 0);
/// Counters per interface slot and country (see `country_stats_index`).
#[map]
static COUNTRY_STATS: PerCpuArray<CountryCounters> = PerCpuArray::with_max_entries(COUNTRY_STATS_SLOTS, 0);
#[map]
static TOTALS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(TOTALS_SLOTS, 0);
#[map]
static FAMILY_STATS: PerCpuArray<CountryCounters> = PerCpuArray::with_max_entries(FAMILY_SLOTS, 0);
/// ifindex → counter slot, written by the daemon for the interfaces it
/// attaches to: one inlined array lookup per packet.
#[map]
static IFINDEX_SLOTS: Array<u32> = Array::with_max_entries(IFINDEX_LIMIT, 0);
/// Slot → interface: only the daemon and `geoblock stats` use it; it lives
/// here so that it is created, pinned and adopted with the counters.
#[map]
static IFACES: Array<IfaceSlot> = Array::with_max_entries(IFACE_SLOTS, 0);

const LPM: u8 = Backend::Lpm as u8;

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
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    let iface = IFINDEX_SLOTS.get(ctx.ingress_ifindex() as u32).map_or(OTHER_IFACE, |s| *s);
    let count = Count { iface, bytes };
    match sender(&ctx) {
        Sender::V4(addr) => {
            let v4 = Tables { family: Family::V4, trie: &GEO_V4, lpm: &LPM_V4, exceptions: &EXCEPT_V4 };
            ip_verdict(&ctx, addr, v4, count)
        }
        Sender::V6(addr) => {
            let v6 = Tables { family: Family::V6, trie: &GEO_V6, lpm: &LPM_V6, exceptions: &EXCEPT_V6 };
            ip_verdict(&ctx, addr, v6, count)
        }
        Sender::NotIp => count_total(Total::NonIp, count),
        Sender::Unparsed => {
            debug!(&ctx, "geoblock: unparsed frame of {} bytes passed", bytes);
            count_total(Total::Unparsed, count)
        }
    }
}

/// Where a packet is counted: its interface's slot, and its length.
#[derive(Clone, Copy)]
struct Count {
    iface: u32,
    bytes: u64,
}

/// Who sent a frame: its IP source address, or why there is none.
enum Sender {
    V4([u8; 4]),
    V6([u8; 16]),
    NotIp,
    Unparsed,
}

/// Walks Ethernet and up to two VLAN tags to the L3 header. A frame counts as
/// parsed when the fixed part of its L3 header is in the buffer and names the
/// right IP version: the sender's address is then known, whatever follows
/// (IPv4 options included). Anything less is for the kernel to reject.
#[inline(always)]
fn sender(ctx: &XdpContext) -> Sender {
    let Some(mut proto) = read_be16(ctx, ETH_PROTO) else {
        return Sender::Unparsed;
    };
    let mut l3 = ETH_HLEN;
    for _ in 0..MAX_VLAN_TAGS {
        if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
            break;
        }
        let Some(inner) = read_be16(ctx, l3 + VLAN_PROTO) else {
            return Sender::Unparsed;
        };
        proto = inner;
        l3 += VLAN_HLEN;
    }
    match proto {
        ETH_P_IP => ip_sender(ctx, l3, IPV4_HLEN, 4, |ctx| read(ctx, l3 + IPV4_SRC).map(Sender::V4)),
        ETH_P_IPV6 => ip_sender(ctx, l3, IPV6_HLEN, 6, |ctx| read(ctx, l3 + IPV6_SRC).map(Sender::V6)),
        // A third tag: we do not look deeper, the kernel will.
        ETH_P_8021Q | ETH_P_8021AD => Sender::Unparsed,
        _ => Sender::NotIp,
    }
}

/// Checks the header's length and version, then reads the sender's address. The one
/// length check up front covers every read after it, which is also what
/// lets the verifier prove them safe.
#[inline(always)]
fn ip_sender(
    ctx: &XdpContext,
    l3: usize,
    hlen: usize,
    version: u8,
    read_addr: impl FnOnce(&XdpContext) -> Option<Sender>,
) -> Sender {
    if !fits(ctx, l3 + hlen) {
        return Sender::Unparsed;
    }
    let Some(first) = read::<u8>(ctx, l3) else {
        return Sender::Unparsed;
    };
    // IPv4's IHL counts 4-byte words and cannot be below 5.
    let valid = first >> 4 == version && (version != 4 || usize::from(first & 0x0f) * 4 >= IPV4_HLEN);
    match valid {
        true => read_addr(ctx).unwrap_or(Sender::Unparsed),
        false => Sender::Unparsed,
    }
}

/// An address family's maps: with them one path serves IPv4 (N = 4) and
/// IPv6 (N = 16).
struct Tables<const N: usize> {
    family: Family,
    trie: &'static Array<TrieNode>,
    lpm: &'static LpmTrie<[u8; N], CountryId>,
    exceptions: &'static LpmTrie<[u8; N], u8>,
}

/// The sender's country, from the backend the loader chose, and its verdict.
#[inline(always)]
fn ip_verdict<const N: usize>(ctx: &XdpContext, addr: [u8; N], tables: Tables<N>, count: Count) -> u32 {
    let key = Key::new(8 * N as u32, addr);
    let country = match BACKEND.load() {
        LPM => tables.lpm.get(&key).copied(),
        _ => trie_country(tables.trie, &addr),
    };
    let excepted = || tables.exceptions.get(&key).is_some();
    verdict(ctx, country.unwrap_or(NO_COUNTRY), excepted, tables.family, count)
}

/// Walks the multibit trie: the first two address bytes pick a root slot,
/// each later byte a slot in the child named by the previous one, until a
/// slot holds a country. IPv4 takes at most 3 reads, IPv6 at most 15.
#[inline(always)]
fn trie_country<const N: usize>(trie: &Array<TrieNode>, addr: &[u8; N]) -> Option<CountryId> {
    let mut node = u32::from(addr[0]);
    for byte in &addr[1..] {
        let slot = trie.get(node)?.0[usize::from(*byte)];
        if slot < TRIE_CHILD {
            return Some(slot);
        }
        node = TRIE_ROOTS + u32::from(slot - TRIE_CHILD);
    }
    None
}

/// The country's action, unless an exception rescues a packet that would be
/// dropped. Exceptions are only consulted on that path: they cannot change a
/// pass, so passing traffic never pays for the lookup. Drops and would-drops
/// are sampled as events.
#[inline(always)]
fn verdict(ctx: &XdpContext, country: CountryId, excepted: impl FnOnce() -> bool, family: Family, count: Count) -> u32 {
    let action = POLICY.get(u32::from(country)).map_or(Action::Pass, |a| Action::from_u8(*a));
    if action != Action::Pass && excepted() {
        return count_total(Total::Exception, count);
    }
    count_action(&COUNTRY_STATS, country_stats_index(count.iface, country), action, count.bytes);
    count_action(&FAMILY_STATS, family as u32, action, count.bytes);
    match action {
        Action::Drop => {
            events::sample(ctx, country, Action::Drop as u8);
            XDP_DROP
        }
        Action::WouldDrop => {
            events::sample(ctx, country, Action::WouldDrop as u8);
            XDP_PASS
        }
        Action::Pass => XDP_PASS,
    }
}

#[inline(always)]
fn count_action(map: &PerCpuArray<CountryCounters>, index: u32, action: Action, bytes: u64) {
    let Some(stats) = map.get_ptr_mut(index) else {
        return;
    };
    // SAFETY: a per-CPU slot; XDP runs with preemption off, so no other writer.
    let stats = unsafe { &mut *stats };
    let (packets, sum) = match action {
        Action::Drop => (&mut stats.dropped_packets, &mut stats.dropped_bytes),
        Action::WouldDrop => (&mut stats.would_drop_packets, &mut stats.would_drop_bytes),
        Action::Pass => (&mut stats.passed_packets, &mut stats.passed_bytes),
    };
    *packets += 1;
    *sum += bytes;
}

#[inline(always)]
fn count_total(total: Total, count: Count) -> u32 {
    if let Some(c) = TOTALS.get_ptr_mut(total_index(count.iface, total)) {
        // SAFETY: per-CPU slot, see `count_action`.
        let c = unsafe { &mut *c };
        c.packets += 1;
        c.bytes += count.bytes;
    }
    XDP_PASS
}

#[inline(always)]
fn fits(ctx: &XdpContext, len: usize) -> bool {
    ctx.data() + len <= ctx.data_end()
}

/// Bounds-checked read at `offset`: the only way this program touches the frame.
#[inline(always)]
fn read<T: Copy>(ctx: &XdpContext, offset: usize) -> Option<T> {
    let start = ctx.data() + offset;
    if start + core::mem::size_of::<T>() > ctx.data_end() {
        return None;
    }
    // SAFETY: [start, start + size) lies inside the frame, checked above.
    Some(unsafe { core::ptr::read_unaligned(start as *const T) })
}

#[inline(always)]
fn read_be16(ctx: &XdpContext, offset: usize) -> Option<u16> {
    read::<[u8; 2]>(ctx, offset).map(u16::from_be_bytes)
}

geoblock_ebpf::object_boilerplate!();
