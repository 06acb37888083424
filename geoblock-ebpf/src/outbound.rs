//! Outbound rules: what the host may send, by the destination's country.
//!
//! Two kinds of programs enforce them, each an entry program the links run
//! and a table program it tail-calls (loaded with each table, sharing its
//! tries, like `geoblock_table`):
//! - the egress program (`flows`) hands every packet on an attached
//!   interface to `geoblock_egress_table`, which judges it like the XDP
//!   program judges an inbound one, by its destination, and drops what the
//!   rules block: forwarded traffic, raw sockets, packets of connections
//!   opened before the rule;
//! - the socket hooks refuse a local `connect()` or `sendmsg()` to a
//!   blocked destination with EPERM, so that local senders fail at once
//!   instead of retransmitting into a silent drop.
//!
//! Without outbound rules (`Settings::outbound`) the entry programs stop
//! after that one read.

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC},
    macros::{cgroup_sock_addr, classifier, map},
    maps::{lpm_trie::Key, ProgramArray},
    programs::{SockAddrContext, TcContext},
};
use geoblock_common::{Action, Direction, OTHER_IFACE, RULE_BANKS, RULE_BY_PORT, SELECTOR_CHILD};

use crate::{
    count_verdict, country, decide, judge, port_rule, protocol_rule, trie_walk, Count, Judged, Tables, OUTBOUND, V4, V6,
};

/// The table program's egress side in force, slot 0.
#[map]
static EGRESS_TABLES: ProgramArray = ProgramArray::with_max_entries(1, 0);
/// The table program's socket hooks in force, one array per attach type.
#[map]
static CONNECT4_TABLES: ProgramArray = ProgramArray::with_max_entries(1, 0);
#[map]
static CONNECT6_TABLES: ProgramArray = ProgramArray::with_max_entries(1, 0);
#[map]
static SENDMSG4_TABLES: ProgramArray = ProgramArray::with_max_entries(1, 0);
#[map]
static SENDMSG6_TABLES: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// What a socket hook returns to let the call go on; 0 refuses it (EPERM).
const ALLOW: i32 = 1;
const REFUSE: i32 = 0;

const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;

/// Hands an outgoing packet to the table's egress program, when there are
/// outbound rules; returns (no rules, or no table program yet) otherwise.
#[inline(always)]
pub fn enforce(ctx: &TcContext) {
    if crate::flows::outbound_rules() {
        // SAFETY: the context is this program's own, handed on unchanged.
        unsafe { EGRESS_TABLES.tail_call(ctx, 0) };
    }
}

#[classifier]
pub fn geoblock_egress_table(ctx: TcContext) -> i32 {
    match judge::<_, OUTBOUND>(&ctx) {
        // The local sender learns it from the socket hooks; what reaches
        // the egress is not the host's to answer.
        Action::Drop | Action::Reject => TC_ACT_SHOT,
        // Next in line decides (tcx's "next", clsact's "continue").
        Action::WouldDrop | Action::Pass => TC_ACT_UNSPEC,
    }
}

#[cgroup_sock_addr(connect4)]
pub fn geoblock_connect4(ctx: SockAddrContext) -> i32 {
    enter(&ctx, &CONNECT4_TABLES)
}

#[cgroup_sock_addr(connect6)]
pub fn geoblock_connect6(ctx: SockAddrContext) -> i32 {
    enter(&ctx, &CONNECT6_TABLES)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn geoblock_sendmsg4(ctx: SockAddrContext) -> i32 {
    enter(&ctx, &SENDMSG4_TABLES)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn geoblock_sendmsg6(ctx: SockAddrContext) -> i32 {
    enter(&ctx, &SENDMSG6_TABLES)
}

#[inline(always)]
fn enter(ctx: &SockAddrContext, tables: &ProgramArray) -> i32 {
    if crate::flows::outbound_rules() {
        // SAFETY: the context is this program's own, handed on unchanged.
        unsafe { tables.tail_call(ctx, 0) };
    }
    ALLOW
}

// The table's socket hooks: one per attach type, the same judgement.
#[cgroup_sock_addr(connect4)]
pub fn geoblock_connect4_table(ctx: SockAddrContext) -> i32 {
    socket_verdict::<false>(&ctx)
}

#[cgroup_sock_addr(connect6)]
pub fn geoblock_connect6_table(ctx: SockAddrContext) -> i32 {
    socket_verdict::<true>(&ctx)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn geoblock_sendmsg4_table(ctx: SockAddrContext) -> i32 {
    socket_verdict::<false>(&ctx)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn geoblock_sendmsg6_table(ctx: SockAddrContext) -> i32 {
    socket_verdict::<true>(&ctx)
}

/// Refuses a connect or send to a destination the outbound rules block.
/// The hooks of IPv6 sockets (`IPV6`) read the IPv6 address, those of IPv4
/// sockets the IPv4 one: the verifier refuses the other's fields. An IPv4
/// address mapped into IPv6 (`::ffff:a.b.c.d`) is judged as the IPv4
/// address it is; loopback destinations never leave the host and are
/// never judged.
#[inline(always)]
fn socket_verdict<const IPV6: bool>(ctx: &SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    // Each field read on its own, 4 bytes wide: the verifier refuses wider
    // reads of the context, which LLVM would make of a copied struct.
    // SAFETY: fields of the program's own context.
    let (family, protocol, port) = unsafe {
        let port = core::ptr::read_volatile(&(*sa).user_port);
        (core::ptr::read_volatile(&(*sa).user_family), core::ptr::read_volatile(&(*sa).protocol), port)
    };
    let socket = Socket { protocol: protocol as u8, port: u16::from_be(port as u16) };
    if !IPV6 {
        return match family {
            // SAFETY: as above.
            AF_INET => v4(unsafe { core::ptr::read_volatile(&(*sa).user_ip4) }.to_ne_bytes(), socket),
            _ => ALLOW,
        };
    }
    if family != AF_INET6 {
        return ALLOW;
    }
    let mut addr = [0u8; 16];
    for (i, chunk) in addr.chunks_exact_mut(4).enumerate() {
        // SAFETY: as above; i < 4.
        chunk.copy_from_slice(&unsafe { core::ptr::read_volatile(&(*sa).user_ip6[i]) }.to_ne_bytes());
    }
    match addr {
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d] => v4([a, b, c, d], socket),
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1] => ALLOW,
        _ => judge_socket(addr, V6, socket),
    }
}

#[inline(always)]
fn v4(addr: [u8; 4], socket: Socket) -> i32 {
    match addr[0] {
        127 => ALLOW,
        _ => judge_socket(addr, V4, socket),
    }
}

/// What a socket sends: its protocol, and the destination port.
#[derive(Clone, Copy)]
struct Socket {
    protocol: u8,
    port: u16,
}

/// The outbound rule's verdict on the destination `addr`: a blocking rule
/// refuses, counted as an outbound drop of 0 bytes on no interface (the
/// packet never exists). Passes and would-drops are counted by the egress
/// program, packet by packet; an exception lets the call through.
#[inline(always)]
fn judge_socket<const N: usize>(addr: [u8; N], tables: Tables<N>, socket: Socket) -> i32 {
    let key = Key::new(8 * N as u32, addr);
    let country = country(&tables, &key, &addr);
    let by_protocol = protocol_rule(Direction::Outbound, socket.protocol, false);
    let bank = by_protocol.wrapping_sub(RULE_BY_PORT);
    let rule = match u32::from(bank) < RULE_BANKS {
        true => port_rule(Direction::Outbound, bank, socket.protocol, socket.port),
        false => by_protocol,
    };
    let class = || trie_walk::<N, SELECTOR_CHILD>(tables.selectors, &addr);
    let (action, selector) = decide(rule, country, class);
    if !action.blocks() || tables.exceptions.get(&key).is_some() {
        return ALLOW;
    }
    let count = Count { iface: OTHER_IFACE, bytes: 0, direction: Direction::Outbound };
    count_verdict(Judged { country, rule, family: tables.family }, selector, action, count);
    REFUSE
}
