//! Rejecting: the sender of a packet a rule rejects is told so, in place
//! of the packet, which goes back out of the interface it came in on
//! (XDP_TX). A TCP segment draws a reset (RFC 9293 §3.10.7.1); anything
//! else an ICMP destination unreachable, communication administratively
//! prohibited (type 3 code 13), or its ICMPv6 twin (type 1 code 1),
//! quoting the packet from its IP header on (RFC 792, RFC 4443), cut to
//! [`ICMP_ERROR_MAX_V4`] / [`ICMP_ERROR_MAX_V6`] bytes in all.
//!
//! Nothing answers a packet that may itself be an answer, or whose answer
//! would go to many or to no one (see [`answerable`]), and a per-CPU token
//! bucket bounds how much a spoofed flood can reflect: past it, and for
//! what is not answered, rejecting is dropping. The frame is rewritten
//! in place: its MAC addresses swapped, its VLAN tags kept, a new IP
//! header with the addresses swapped. Writes and reads of variable offsets
//! go through `bpf_xdp_store_bytes`/`bpf_xdp_load_bytes`, which check
//! them at run time, and checksums through `bpf_csum_diff`.

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_TX},
    helpers::generated::{
        bpf_csum_diff, bpf_xdp_adjust_head, bpf_xdp_adjust_tail, bpf_xdp_load_bytes, bpf_xdp_store_bytes,
    },
    macros::map,
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};
use geoblock_common::{
    packet::{
        ETH_HLEN, ICMPV6_ADMIN_PROHIBITED, ICMPV6_DEST_UNREACH, ICMPV6_ECHO_REQUEST, ICMP_ADMIN_PROHIBITED,
        ICMP_CHECKSUM, ICMP_DEST_UNREACH, ICMP_ECHO, ICMP_ERROR_MAX_V4, ICMP_ERROR_MAX_V6, ICMP_HLEN, IPPROTO_ICMP,
        IPPROTO_ICMPV6, IPPROTO_TCP, IPV4_CHECKSUM, IPV4_DF, IPV4_DST, IPV4_FRAG_OFF, IPV4_HLEN, IPV4_MF, IPV4_SRC,
        IPV4_TOTAL_LEN, IPV6_DST, IPV6_HLEN, IPV6_PAYLOAD_LEN, IPV6_SRC, L4_DST_PORT, L4_SRC_PORT, MAX_VLAN_TAGS,
        REPLY_HOP_LIMIT, TCP_ACK, TCP_ACK_SEQ, TCP_CHECKSUM, TCP_DATA_OFF, TCP_FIN, TCP_FLAGS, TCP_HLEN, TCP_RST,
        TCP_SEQ, TCP_SYN, VLAN_HLEN,
    },
    EventConfig, RejectBucket,
};

use crate::{
    bucket,
    frame::{parse, read, read_be16, Ip, Packet},
};

#[map]
static REJECT_CONFIG: Array<EventConfig> = Array::with_max_entries(1, 0);
#[map]
static REJECT_BUCKET: PerCpuArray<RejectBucket> = PerCpuArray::with_max_entries(1, 0);
/// Where answers are put together: the stack, which the verdict's frame
/// already half fills, has no room for them.
#[map]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// An answer's parts before they are written into the frame.
#[repr(C)]
struct Scratch {
    /// The IP header (IPv4 in the first 20 bytes).
    ip: [u8; IPV6_HLEN],
    /// The TCP header, or the ICMP header in the first 8 bytes.
    l4: [u8; TCP_HLEN],
    /// The checksums' pseudo-header (IPv4's in the first 12 bytes).
    pseudo: [u8; IPV6_HLEN],
    /// The Ethernet header and tags moved to the front of an ICMP error.
    link: [u8; MAX_L2 + 2],
    /// The frame's bytes being summed for a checksum.
    chunk: [u8; CHUNK],
}

/// The Ethernet header and the most VLAN tags before the IP header: what
/// an answer keeps of the frame it answers.
const MAX_L2: usize = ETH_HLEN + MAX_VLAN_TAGS * VLAN_HLEN;
/// `bpf_csum_diff` sums at most 512 bytes a call, of a size the verifier
/// knows: the quote is summed in chunks of this size, then smaller ones.
const CHUNK: usize = 128;

/// What a rejected packet draws.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    Nothing,
    Reset,
    Unreachable,
}

/// Answers the packet in `ctx`, which a rule rejects: `XDP_TX` with the
/// frame rewritten into the answer, or `XDP_DROP` when it draws none.
#[inline(always)]
pub fn answer(ctx: &XdpContext) -> u32 {
    respond(XdpContext::new(ctx.ctx))
}

/// [`answer`], in a function of its own (as are the answers it builds):
/// the buffers it needs get a stack frame of their own, and the verdict's
/// frame stays as small as without rejecting.
#[inline(never)]
fn respond(ctx: XdpContext) -> u32 {
    let ctx = &ctx;
    // Parsed again rather than handed down: only rejected packets pay.
    let (ip, v4) = match parse(ctx) {
        Packet::V4(ip) => (ip, true),
        Packet::V6(ip) => (ip, false),
        _ => return XDP_DROP,
    };
    let answer = answerable(ctx, ip, v4);
    if answer == Answer::Nothing || !take_token() {
        return XDP_DROP;
    }
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return XDP_DROP;
    };
    // SAFETY: a per-CPU slot; XDP runs with preemption off, so no other user.
    let scratch = unsafe { &mut *scratch };
    let sent = match (answer, v4) {
        (Answer::Reset, true) => reset::<4, IPV4_HLEN>(ctx, ip.l3, ip.l4.offset, scratch),
        (Answer::Reset, false) => reset::<16, IPV6_HLEN>(ctx, ip.l3, ip.l4.offset, scratch),
        (_, true) => unreachable::<4, IPV4_HLEN>(ctx, ip.l3, ip.l4.offset, scratch),
        (_, false) => unreachable::<16, IPV6_HLEN>(ctx, ip.l3, ip.l4.offset, scratch),
    };
    if !sent {
        return XDP_DROP;
    }
    if let Some(b) = REJECT_BUCKET.get_ptr_mut(0) {
        // SAFETY: a per-CPU slot; XDP runs with preemption off, so no other writer.
        unsafe { (*b).sent += 1 };
    }
    XDP_TX
}

/// What the packet may draw. Nothing for a frame to a group MAC address,
/// a packet to or from a group, broadcast, unspecified or loopback
/// address, a fragment after the first, a TCP reset, and any ICMP message
/// but an echo request (errors must not draw errors, RFC 1122 §3.2.2;
/// replies and the other queries are not worth the reflection). A TCP
/// segment draws a reset, unless it is a first fragment (its length is
/// not known): that and every other protocol an ICMP error.
#[inline(always)]
fn answerable(ctx: &XdpContext, ip: Ip, v4: bool) -> Answer {
    let l3 = ip.l3;
    let group_mac = read::<u8>(ctx, 0).is_none_or(|b| b & 1 != 0);
    let (unanswerable, first_fragment) = if v4 {
        let Some(header) = read::<[u8; IPV4_HLEN]>(ctx, l3) else {
            return Answer::Nothing;
        };
        let src = [header[IPV4_SRC], header[IPV4_SRC + 1], header[IPV4_SRC + 2], header[IPV4_SRC + 3]];
        let dst = [header[IPV4_DST], header[IPV4_DST + 1], header[IPV4_DST + 2], header[IPV4_DST + 3]];
        let frag = u16::from_be_bytes([header[IPV4_FRAG_OFF], header[IPV4_FRAG_OFF + 1]]);
        // 0/8 unspecified, 127/8 loopback, 224/4 multicast, 240/4 reserved
        // and the limited broadcast.
        let group = |a: [u8; 4]| a[0] == 0 || a[0] == 127 || a[0] >= 224;
        (group(src) || group(dst), frag & IPV4_MF != 0)
    } else {
        let Some(src) = read::<[u8; 16]>(ctx, l3 + IPV6_SRC) else {
            return Answer::Nothing;
        };
        let Some(dst) = read::<[u8; 16]>(ctx, l3 + IPV6_DST) else {
            return Answer::Nothing;
        };
        // :: and ::1, and ff00::/8 multicast. (A first fragment is not
        // told apart: its reset counts the fragment's length.)
        (u128::from_be_bytes(src) <= 1 || src[0] == 0xff || dst[0] == 0xff, false)
    };
    if group_mac || unanswerable || ip.l4.later_fragment {
        return Answer::Nothing;
    }
    let l4 = ip.l4.offset;
    match ip.l4.protocol {
        IPPROTO_TCP => match read::<u8>(ctx, l4 + TCP_FLAGS) {
            Some(flags) if flags & TCP_RST == 0 && !first_fragment => Answer::Reset,
            Some(flags) if flags & TCP_RST == 0 => Answer::Unreachable,
            _ => Answer::Nothing,
        },
        IPPROTO_ICMP if v4 => match read::<u8>(ctx, l4) {
            Some(ICMP_ECHO) => Answer::Unreachable,
            _ => Answer::Nothing,
        },
        IPPROTO_ICMPV6 if !v4 => match read::<u8>(ctx, l4) {
            Some(ICMPV6_ECHO_REQUEST) => Answer::Unreachable,
            _ => Answer::Nothing,
        },
        _ => Answer::Unreachable,
    }
}

/// A token from this CPU's bucket; counts the packet as suppressed when
/// there is none. Answers off (rate 0): nothing is counted.
#[inline(always)]
fn take_token() -> bool {
    let (Some(config), Some(b)) = (REJECT_CONFIG.get(0), REJECT_BUCKET.get_ptr_mut(0)) else {
        return false;
    };
    if config.rate == 0 {
        return false;
    }
    // SAFETY: a per-CPU slot; XDP runs with preemption off, so no other writer.
    let b = unsafe { &mut *b };
    if bucket::take(config, &mut b.tokens, &mut b.last_ns) {
        return true;
    }
    b.suppressed += 1;
    false
}

/// Rewrites the segment into a reset of `HLEN` bytes of IP header (IPv4
/// without options, or IPv6 without extension headers; addresses of `N`
/// bytes) and a TCP header without options. (The IP header is at `l3`,
/// the L4 one at `l4`: a function of its own takes at most five
/// arguments, each in a register.)
#[inline(never)]
fn reset<const N: usize, const HLEN: usize>(ctx: &XdpContext, l3: usize, l4: usize, s: &mut Scratch) -> bool {
    // One read of the fixed header: a tuple of Options would leave LLVM
    // spilling the payloads of Nones uninitialised, which the verifier refuses.
    let Some(segment) = read::<[u8; TCP_HLEN]>(ctx, l4) else {
        return false;
    };
    let [ports, seq, ack] =
        [0, TCP_SEQ, TCP_ACK_SEQ].map(|at| [segment[at], segment[at + 1], segment[at + 2], segment[at + 3]]);
    let (offset, flags) = (segment[TCP_DATA_OFF], segment[TCP_FLAGS]);
    let Some(src) = read::<[u8; N]>(ctx, l3 + if N == 4 { IPV4_SRC } else { IPV6_SRC }) else {
        return false;
    };
    let Some(dst) = read::<[u8; N]>(ctx, l3 + if N == 4 { IPV4_DST } else { IPV6_DST }) else {
        return false;
    };
    let Some(ip_payload) = ip_payload::<N>(ctx, l3, l4) else {
        return false;
    };
    // Every byte is written: zeroing the buffer first would cost a memset
    // call, which clobbers registers the verifier then finds unread.
    let (seq, ack, flags) = if flags & TCP_ACK != 0 {
        (ack, [0; 4], TCP_RST)
    } else {
        // SEG.LEN: the data, and SYN and FIN, which count one each.
        let data = ip_payload.wrapping_sub(u32::from(offset >> 4) * 4);
        let len = data + u32::from(flags & TCP_SYN != 0) + u32::from(flags & TCP_FIN != 0);
        ([0; 4], u32::from_be_bytes(seq).wrapping_add(len).to_be_bytes(), TCP_RST | TCP_ACK)
    };
    let tcp = &mut s.l4;
    tcp[L4_SRC_PORT..L4_SRC_PORT + 2].copy_from_slice(&ports[L4_DST_PORT..L4_DST_PORT + 2]);
    tcp[L4_DST_PORT..L4_DST_PORT + 2].copy_from_slice(&ports[L4_SRC_PORT..L4_SRC_PORT + 2]);
    tcp[TCP_SEQ..TCP_SEQ + 4].copy_from_slice(&seq);
    tcp[TCP_ACK_SEQ..TCP_ACK_SEQ + 4].copy_from_slice(&ack);
    // Data offset, flags, window 0; checksum and urgent pointer 0.
    tcp[TCP_DATA_OFF..TCP_DATA_OFF + 4].copy_from_slice(&[((TCP_HLEN / 4) as u8) << 4, flags, 0, 0]);
    tcp[TCP_CHECKSUM..TCP_CHECKSUM + 4].copy_from_slice(&[0; 4]);
    let checksum = fold(sum::<TCP_HLEN>(&s.l4, pseudo_sum(&mut s.pseudo, &dst, &src, IPPROTO_TCP, TCP_HLEN as u32)));
    s.l4[TCP_CHECKSUM..TCP_CHECKSUM + 2].copy_from_slice(&checksum);
    ip_header::<N, HLEN>(&mut s.ip, &dst, &src, IPPROTO_TCP, TCP_HLEN);
    let len = l3 + HLEN + TCP_HLEN;
    swap_macs(ctx) && store::<HLEN>(ctx, l3, &s.ip) && store::<TCP_HLEN>(ctx, l3 + HLEN, &s.l4) && trim(ctx, len)
}

/// Rewrites the packet into an ICMP (IPv4, `N` = 4) or ICMPv6 error
/// quoting it: the head grows by the new IP and ICMP headers, the
/// Ethernet header and tags move to the new front, and the tail is cut
/// where the error reaches its largest size (or the packet ends).
#[inline(never)]
fn unreachable<const N: usize, const HLEN: usize>(ctx: &XdpContext, l3: usize, l4: usize, s: &mut Scratch) -> bool {
    let Some(src) = read::<[u8; N]>(ctx, l3 + if N == 4 { IPV4_SRC } else { IPV6_SRC }) else {
        return false;
    };
    let Some(dst) = read::<[u8; N]>(ctx, l3 + if N == 4 { IPV4_DST } else { IPV6_DST }) else {
        return false;
    };
    let Some(ip_payload) = ip_payload::<N>(ctx, l3, l4) else {
        return false;
    };
    let frame_len = ctx.data_end() - ctx.data();
    let max = if N == 4 { ICMP_ERROR_MAX_V4 } else { ICMP_ERROR_MAX_V6 };
    // What the IP header counts, not the Ethernet padding behind it.
    let packet = (l4 - l3 + ip_payload as usize).min(frame_len - l3);
    let quote = packet.min(max - HLEN - ICMP_HLEN);
    let grow = (HLEN + ICMP_HLEN) as i32;
    // SAFETY: the context is the program's own; the helper checks the headroom.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -grow) } != 0 {
        return false;
    }
    // The whole of the largest link header moves: what it takes of the
    // old IP header lands where the new one is written.
    if !load::<MAX_L2>(ctx, HLEN + ICMP_HLEN, &mut s.link) {
        return false;
    }
    let link = &mut s.link;
    for i in 0..6 {
        (link[i], link[i + 6]) = (link[i + 6], link[i]);
    }
    let (protocol, kind, code) = if N == 4 {
        (IPPROTO_ICMP, ICMP_DEST_UNREACH, ICMP_ADMIN_PROHIBITED)
    } else {
        (IPPROTO_ICMPV6, ICMPV6_DEST_UNREACH, ICMPV6_ADMIN_PROHIBITED)
    };
    let icmp_len = ICMP_HLEN + quote;
    ip_header::<N, HLEN>(&mut s.ip, &dst, &src, protocol, icmp_len);
    s.l4[..ICMP_HLEN].copy_from_slice(&[kind, code, 0, 0, 0, 0, 0, 0]);
    // ICMPv6 sums a pseudo-header (RFC 4443 §2.3), ICMP does not.
    let seed = if N == 4 { 0 } else { pseudo_sum(&mut s.pseudo, &dst, &src, protocol, icmp_len as u32) };
    let quoted = l3 + HLEN + ICMP_HLEN;
    if !(store::<MAX_L2>(ctx, 0, &s.link) && store::<HLEN>(ctx, l3, &s.ip) && trim(ctx, quoted + quote)) {
        return false;
    }
    let checksum = fold(sum_frame(ctx, quoted, quote, sum::<ICMP_HLEN>(&s.l4, seed), &mut s.chunk));
    s.l4[ICMP_CHECKSUM..ICMP_CHECKSUM + 2].copy_from_slice(&checksum);
    store::<ICMP_HLEN>(ctx, l3 + HLEN, &s.l4)
}

/// How long the packet's L4 part is, as its IP header says: the IPv4
/// total length or the IPv6 payload length, less the headers up to L4
/// (options, extension headers).
#[inline(always)]
fn ip_payload<const N: usize>(ctx: &XdpContext, l3: usize, l4: usize) -> Option<u32> {
    let headers = (l4 - l3) as u32;
    Some(if N == 4 {
        u32::from(read_be16(ctx, l3 + IPV4_TOTAL_LEN)?).wrapping_sub(headers)
    } else {
        u32::from(read_be16(ctx, l3 + IPV6_PAYLOAD_LEN)?).wrapping_sub(headers - IPV6_HLEN as u32)
    })
}

/// Writes an answer's IP header from `src` to `dst` into `h`: IPv4 (TTL
/// 64, DF, id 0, no options, its checksum; the first 20 bytes) or IPv6
/// (hop limit 64, no extension headers). Every byte is written (see `reset`).
#[inline(always)]
fn ip_header<const N: usize, const HLEN: usize>(
    h: &mut [u8; IPV6_HLEN],
    src: &[u8; N],
    dst: &[u8; N],
    protocol: u8,
    payload: usize,
) {
    if N == 4 {
        let [len0, len1] = ((IPV4_HLEN + payload) as u16).to_be_bytes();
        let [df0, df1] = IPV4_DF.to_be_bytes();
        // Version and IHL, TOS, total length; id, flags and offset; TTL,
        // protocol, checksum.
        h[..12].copy_from_slice(&[0x45, 0, len0, len1, 0, 0, df0, df1, REPLY_HOP_LIMIT, protocol, 0, 0]);
        h[IPV4_SRC..IPV4_SRC + N].copy_from_slice(src);
        h[IPV4_DST..IPV4_DST + N].copy_from_slice(dst);
        let checksum = fold(sum::<IPV4_HLEN>(h, 0));
        h[IPV4_CHECKSUM..IPV4_CHECKSUM + 2].copy_from_slice(&checksum);
    } else {
        let [len0, len1] = (payload as u16).to_be_bytes();
        // Version, traffic class and flow label; payload length, next
        // header, hop limit.
        h[..8].copy_from_slice(&[0x60, 0, 0, 0, len0, len1, protocol, REPLY_HOP_LIMIT]);
        h[IPV6_SRC..IPV6_SRC + N].copy_from_slice(src);
        h[IPV6_DST..IPV6_DST + N].copy_from_slice(dst);
    }
}

/// The sum of the pseudo-header TCP (and ICMPv6) checksums cover, written
/// into `p`: RFC 9293 §3.1 for IPv4 (12 bytes), RFC 8200 §8.1 for IPv6 (40).
#[inline(always)]
fn pseudo_sum<const N: usize>(p: &mut [u8; IPV6_HLEN], src: &[u8; N], dst: &[u8; N], protocol: u8, len: u32) -> u32 {
    p[..N].copy_from_slice(src);
    p[N..2 * N].copy_from_slice(dst);
    if N == 4 {
        let [_, _, len0, len1] = len.to_be_bytes();
        p[8..12].copy_from_slice(&[0, protocol, len0, len1]);
        sum::<12>(p, 0)
    } else {
        p[32..36].copy_from_slice(&len.to_be_bytes());
        p[36..40].copy_from_slice(&[0, 0, 0, protocol]);
        sum::<40>(p, 0)
    }
}

/// Swaps the frame's destination and source MAC addresses.
#[inline(always)]
fn swap_macs(ctx: &XdpContext) -> bool {
    let Some(macs) = read::<[u8; 12]>(ctx, 0) else {
        return false;
    };
    store::<6>(ctx, 0, &macs[6..]) && store::<6>(ctx, 6, &macs[..6])
}

/// Cuts the frame to `len` bytes (never longer than it is). A frame of
/// that length already (a bare SYN's reset) is left alone: no helper call.
#[inline(always)]
fn trim(ctx: &XdpContext, len: usize) -> bool {
    let delta = len as i64 - (ctx.data_end() - ctx.data()) as i64;
    // SAFETY: the context is the program's own; the helper checks the delta.
    delta == 0 || (delta < 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta as i32) } == 0)
}

/// Writes the first `L` bytes of `bytes` into the frame at `offset`.
#[inline(always)]
fn store<const L: usize>(ctx: &XdpContext, offset: usize, bytes: &[u8]) -> bool {
    if bytes.len() < L {
        return false;
    }
    // SAFETY: `bytes` holds at least L bytes; the helper checks the frame's bounds.
    unsafe { bpf_xdp_store_bytes(ctx.ctx, offset as u32, bytes.as_ptr() as *mut _, L as u32) == 0 }
}

/// Reads `L` bytes of the frame at `offset` into the start of `bytes`.
#[inline(always)]
fn load<const L: usize>(ctx: &XdpContext, offset: usize, bytes: &mut [u8]) -> bool {
    if bytes.len() < L {
        return false;
    }
    // SAFETY: `bytes` holds at least L bytes; the helper checks the frame's bounds.
    unsafe { bpf_xdp_load_bytes(ctx.ctx, offset as u32, bytes.as_mut_ptr().cast(), L as u32) == 0 }
}

/// Adds the first `L` bytes of `bytes` (L a multiple of 4) to the one's
/// complement sum `seed`.
#[inline(always)]
fn sum<const L: usize>(bytes: &[u8], seed: u32) -> u32 {
    const { assert!(L % 4 == 0 && L <= 512) };
    if bytes.len() < L {
        return seed;
    }
    // SAFETY: `bytes` holds at least L bytes; nothing is subtracted (no `from`).
    unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, bytes.as_ptr() as *mut _, L as u32, seed) as u32 }
}

/// Adds `len` bytes of the frame from `offset` (which it holds) to the sum
/// `seed`, read through `chunk`: chunks of [`CHUNK`] bytes, then of halving
/// sizes down to 4, then the last bytes padded with zeros (RFC 1071). The
/// frame's bounds were checked when `len` was chosen: the loads succeed.
#[inline(always)]
fn sum_frame(ctx: &XdpContext, offset: usize, len: usize, seed: u32, chunk: &mut [u8; CHUNK]) -> u32 {
    let mut part = (offset, len, seed);
    for _ in 0..ICMP_ERROR_MAX_V6 / CHUNK {
        if part.1 < CHUNK {
            break;
        }
        part = sum_part::<CHUNK>(ctx, part, chunk);
    }
    part = sum_part::<64>(ctx, part, chunk);
    part = sum_part::<32>(ctx, part, chunk);
    part = sum_part::<16>(ctx, part, chunk);
    part = sum_part::<8>(ctx, part, chunk);
    let (at, left, total) = sum_part::<4>(ctx, part, chunk);
    chunk[..4].copy_from_slice(&[0; 4]);
    let _ = match left {
        1 => load::<1>(ctx, at, chunk),
        2 => load::<2>(ctx, at, chunk),
        3 => load::<3>(ctx, at, chunk),
        _ => true,
    };
    sum::<4>(chunk, total)
}

/// One step of [`sum_frame`] on (offset, bytes left, sum so far): the
/// next `L` bytes, if that many are left.
#[inline(always)]
fn sum_part<const L: usize>(
    ctx: &XdpContext,
    (at, left, total): (usize, usize, u32),
    chunk: &mut [u8; CHUNK],
) -> (usize, usize, u32) {
    if left < L {
        return (at, left, total);
    }
    load::<L>(ctx, at, chunk);
    (at + L, left - L, sum::<L>(chunk, total))
}

/// The 16-bit one's complement of the sum, as the header holds it.
#[inline(always)]
fn fold(sum: u32) -> [u8; 2] {
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    (!(sum as u16)).to_ne_bytes()
}
