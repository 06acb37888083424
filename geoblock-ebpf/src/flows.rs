//! Connections this host opened: the egress program records them, and the
//! XDP program lets their replies through whatever the sender's country.
//!
//! The egress program writes a flow for every outbound TCP SYN, UDP or SCTP
//! datagram from an ephemeral port and ICMP echo request, keyed by the remote address and port,
//! the local port and the protocol, and refreshes it (at most once a
//! second) on every later packet. The XDP program looks the reversed key
//! up only on its drop path, like the exceptions: passed traffic never pays
//! for it, and neither does a SYN flood (a SYN without ACK is never a reply).
//! Before the flow table it reads the flow filter, one flag per remote
//! address hash: a flood from addresses the host never talked to costs a
//! read of a small array, not a hash table lookup each.
//! A spoofed packet passes only if it names a flow the host opened, exact
//! remote address and ports included.

use aya_ebpf::{
    bindings::TC_ACT_UNSPEC,
    helpers::bpf_ktime_get_coarse_ns,
    macros::{classifier, map},
    maps::{Array, LruHashMap},
    programs::TcContext,
};
use geoblock_common::{
    flow_filter_index,
    packet::{
        ICMPV6_DEST_UNREACH, ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST, ICMPV6_PARAMETER_PROBLEM, ICMP_DEST_UNREACH,
        ICMP_ECHO, ICMP_ECHO_ID, ICMP_ECHO_REPLY, ICMP_HLEN, ICMP_PARAMETER_PROBLEM, ICMP_TIME_EXCEEDED, IPPROTO_ICMP,
        IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, IPV4_DST, IPV4_HLEN, IPV4_PROTOCOL, IPV6_DST,
        IPV6_HLEN, IPV6_NEXT_HEADER, L4_DST_PORT, L4_SRC_PORT, TCP_ACK, TCP_FLAGS, TCP_SYN,
    },
    FlowKey, RuleSlots, Settings, DEFAULT_FLOWS, FLOW_FILTER_SLOTS, FLOW_REFRESH_NS,
};

use crate::frame::{parse, read, read_be16, Frame, Ip, Packet};

/// Flow → when the host last sent on it (CLOCK_MONOTONIC_COARSE, ns). The
/// daemon sizes it (`--flows`); the least recently used flow makes room.
#[map]
static FLOWS: LruHashMap<FlowKey, u64> = LruHashMap::with_max_entries(DEFAULT_FLOWS, 0);
#[map]
static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

/// Whether the policy has outbound rules (see `outbound`).
#[inline(always)]
pub fn outbound_rules() -> bool {
    SETTINGS.get(0).is_some_and(|s| s.outbound != 0)
}
/// Remote address hash → "may have a flow", in two halves (see
/// `FLOW_FILTER_FLAGS`).
#[map]
static FLOW_FILTER: Array<RuleSlots> = Array::with_max_entries(FLOW_FILTER_SLOTS, 0);

/// Records the connections this host opens, then hands the packet to the
/// outbound rules (`outbound`), if there are any.
#[classifier]
pub fn geoblock_egress(ctx: TcContext) -> i32 {
    let (flow, opens) = match parse(&ctx) {
        Packet::V4(ip) => outbound(&ctx, ip, read::<[u8; 4]>(&ctx, ip.l3 + IPV4_DST).map(mapped)),
        Packet::V6(ip) => outbound(&ctx, ip, read::<[u8; 16]>(&ctx, ip.l3 + IPV6_DST)),
        _ => (None, false),
    };
    if let Some(flow) = flow {
        record(&flow, opens);
    }
    crate::outbound::enforce(&ctx);
    // Next in line decides (tcx's "next", clsact's "continue").
    TC_ACT_UNSPEC
}

/// The flow an outbound packet to `remote` belongs to, and whether it opens
/// one: a TCP SYN without ACK (a connection this host opens, not one it
/// accepts), a UDP or SCTP datagram from an ephemeral port (a client's,
/// not a service's answer), an ICMP echo request.
#[inline(always)]
fn outbound(ctx: &TcContext, ip: Ip, remote: Option<[u8; 16]>) -> (Option<FlowKey>, bool) {
    let (Some(remote), l4) = (remote, ip.l4) else {
        return (None, false);
    };
    if l4.later_fragment {
        return (None, false);
    }
    match l4.protocol {
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP => {
            let (Some(local), Some(port)) =
                (read_be16(ctx, l4.offset + L4_SRC_PORT), read_be16(ctx, l4.offset + L4_DST_PORT))
            else {
                return (None, false);
            };
            let opens = match l4.protocol {
                IPPROTO_TCP => {
                    read::<u8>(ctx, l4.offset + TCP_FLAGS).is_some_and(|f| f & (TCP_SYN | TCP_ACK) == TCP_SYN)
                }
                _ => SETTINGS.get(0).is_none_or(|s| local >= s.ephemeral_low),
            };
            (Some(flow(remote, port, local, l4.protocol)), opens)
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            let request = if l4.protocol == IPPROTO_ICMP { ICMP_ECHO } else { ICMPV6_ECHO_REQUEST };
            match (read::<u8>(ctx, l4.offset), read_be16(ctx, l4.offset + ICMP_ECHO_ID)) {
                (Some(kind), Some(id)) if kind == request => (Some(flow(remote, 0, id, l4.protocol)), true),
                _ => (None, false),
            }
        }
        _ => (None, false),
    }
}

/// Refreshes `flow`, at most once per [`FLOW_REFRESH_NS`]; creates it if
/// `opens`.
#[inline(always)]
fn record(flow: &FlowKey, opens: bool) {
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    match FLOWS.get_ptr_mut(flow) {
        Some(seen) => {
            // SAFETY: the map's value; a racing writer writes a time as good.
            let seen = unsafe { &mut *seen };
            if now.wrapping_sub(*seen) >= FLOW_REFRESH_NS {
                *seen = now;
                flag(&flow.remote);
            }
        }
        None if opens => {
            // Full: the LRU map evicts; nothing else can fail that matters.
            let _ = FLOWS.insert(flow, &now, 0);
            flag(&flow.remote);
        }
        None => {}
    }
}

/// Sets `remote`'s flag in both halves of the filter: one byte each, so
/// that CPUs setting flags side by side need no atomic operation.
#[inline(always)]
fn flag(remote: &[u8; 16]) {
    for half in 0..2 {
        let (slot, byte) = flow_filter_index(remote, half);
        if let Some(flags) = FLOW_FILTER.get_ptr_mut(slot) {
            // SAFETY: the map's value; only ever set to 1, by any CPU.
            unsafe { (*flags)[byte] = 1 };
        }
    }
}

/// Whether `remote` may have a flow: its flag in the half in force.
#[inline(always)]
fn flagged(remote: &[u8; 16], settings: &Settings) -> bool {
    let (slot, byte) = flow_filter_index(remote, settings.filter & 1);
    FLOW_FILTER.get(slot).is_some_and(|flags| flags[byte] != 0)
}

/// Whether the inbound packet `ip` from `remote` answers a flow this host
/// opened, with replies on: a TCP segment other than a bare SYN, a UDP or
/// SCTP datagram, an ICMP echo reply, or an ICMP error quoting a packet of
/// the flow.
#[inline(always)]
pub fn is_reply(frame: &impl Frame, ip: Ip, remote: [u8; 16], v4: bool) -> bool {
    let Some(settings) = SETTINGS.get(0).filter(|s| s.replies != 0) else {
        return false;
    };
    if ip.l4.later_fragment {
        return false;
    }
    let l4 = ip.l4.offset;
    let flow = match ip.l4.protocol {
        IPPROTO_TCP if read::<u8>(frame, l4 + TCP_FLAGS).is_none_or(|f| f & (TCP_SYN | TCP_ACK) == TCP_SYN) => None,
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP => {
            match (read_be16(frame, l4 + L4_SRC_PORT), read_be16(frame, l4 + L4_DST_PORT)) {
                (Some(port), Some(local)) => Some(flow(remote, port, local, ip.l4.protocol)),
                _ => None,
            }
        }
        IPPROTO_ICMP if v4 => icmp_answer(frame, l4, remote, ICMP_ECHO_REPLY, IPPROTO_ICMP),
        IPPROTO_ICMPV6 if !v4 => icmp_answer(frame, l4, remote, ICMPV6_ECHO_REPLY, IPPROTO_ICMPV6),
        _ => None,
    };
    flow.is_some_and(|f| flagged(&f.remote, settings) && live(&f, settings))
}

/// The flow an ICMP message answers: an echo reply's own, or the one an
/// error quotes.
#[inline(always)]
fn icmp_answer(frame: &impl Frame, l4: usize, remote: [u8; 16], echo_reply: u8, protocol: u8) -> Option<FlowKey> {
    let kind = read::<u8>(frame, l4)?;
    if kind == echo_reply {
        return Some(flow(remote, 0, read_be16(frame, l4 + ICMP_ECHO_ID)?, protocol));
    }
    let quoted = l4 + ICMP_HLEN;
    match (protocol, kind) {
        (IPPROTO_ICMP, ICMP_DEST_UNREACH | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROBLEM) => quoted_v4(frame, quoted),
        (IPPROTO_ICMPV6, ICMPV6_DEST_UNREACH..=ICMPV6_PARAMETER_PROBLEM) => quoted_v6(frame, quoted),
        _ => None,
    }
}

/// The flow of the IPv4 packet an ICMP error quotes (one the host sent:
/// its destination is the remote end).
#[inline(always)]
fn quoted_v4(frame: &impl Frame, at: usize) -> Option<FlowKey> {
    let first = read::<u8>(frame, at)?;
    let hlen = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || hlen < IPV4_HLEN {
        return None;
    }
    let remote = mapped(read(frame, at + IPV4_DST)?);
    quoted_flow(frame, at + hlen, remote, read(frame, at + IPV4_PROTOCOL)?, ICMP_ECHO)
}

/// The flow of the IPv6 packet an ICMPv6 error quotes (no extension headers
/// are walked in the quote).
#[inline(always)]
fn quoted_v6(frame: &impl Frame, at: usize) -> Option<FlowKey> {
    let remote = read(frame, at + IPV6_DST)?;
    quoted_flow(frame, at + IPV6_HLEN, remote, read(frame, at + IPV6_NEXT_HEADER)?, ICMPV6_ECHO_REQUEST)
}

/// The flow key of a quoted outbound packet's L4 header at `l4`: its source
/// port is ours, its destination port the remote's; an echo request's
/// identifier names an echo flow.
#[inline(always)]
fn quoted_flow(frame: &impl Frame, l4: usize, remote: [u8; 16], protocol: u8, echo_request: u8) -> Option<FlowKey> {
    match protocol {
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP => {
            let (local, port) = (read_be16(frame, l4 + L4_SRC_PORT)?, read_be16(frame, l4 + L4_DST_PORT)?);
            Some(flow(remote, port, local, protocol))
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 if read::<u8>(frame, l4)? == echo_request => {
            Some(flow(remote, 0, read_be16(frame, l4 + ICMP_ECHO_ID)?, protocol))
        }
        _ => None,
    }
}

/// Whether `flow` was recorded and the host sent on it within its
/// protocol's timeout.
#[inline(always)]
fn live(flow: &FlowKey, settings: &Settings) -> bool {
    // SAFETY: the value is a u64 read once; an update racing it is harmless.
    let Some(seen) = (unsafe { FLOWS.get(flow) }).copied() else {
        return false;
    };
    let timeout = match flow.protocol {
        IPPROTO_UDP => settings.udp_timeout_ns,
        IPPROTO_ICMP | IPPROTO_ICMPV6 => settings.icmp_timeout_ns,
        _ => settings.tcp_timeout_ns,
    };
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    now.saturating_sub(seen) <= timeout
}

#[inline(always)]
fn flow(remote: [u8; 16], remote_port: u16, local_port: u16, protocol: u8) -> FlowKey {
    FlowKey { remote, remote_port, local_port, protocol, _pad: [0; 3] }
}

/// An IPv4 address as flows hold it: `::ffff:a.b.c.d`.
#[inline(always)]
pub fn mapped(v4: [u8; 4]) -> [u8; 16] {
    let [a, b, c, d] = v4;
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d]
}
