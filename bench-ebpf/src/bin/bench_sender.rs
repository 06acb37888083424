//! The traffic generator of `cargo xtask bench`, and the receiver's stand-in.
//!
//! `bench_sender` runs under BPF_PROG_TEST_RUN with live frames: each run
//! writes a random source address from `BENCH_SOURCES` into the frame and
//! sends it out with XDP_TX (the kernel turns that into a redirect out of the
//! sender's veth, to its peer). The IPv4 header checksum and the UDP checksum
//! (both families) are updated incrementally (RFC 1624), so every packet is
//! valid for the kernel's stack, nftables and ipset alike.
//!
//! A receiver that answers (geoblock's reject) writes its answer into the
//! very page the sender recycles: veth hands live frames over without a
//! copy, and the test run re-sends a page as it finds it. With
//! `BENCH_RESTORE` set, every run first writes the frame back from
//! `BENCH_FRAMES`, so the receiver always meets the frame the bench chose.
//!
//! `bench_parse` reads the source address and drops: a baseline that touches
//! the packet. `bench_pass` is a bare XDP_PASS: attached to the receiving veth when the
//! filter under test is not XDP (nftables, ipset), because veth only accepts
//! redirected frames while its peer has an XDP program (or GRO) on.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action::{XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX},
    helpers::{bpf_get_prandom_u32, generated::bpf_xdp_store_bytes},
    macros::{map, xdp},
    maps::Array,
    programs::XdpContext,
};
use geoblock_common::packet::{
    ETH_HLEN, ETH_PROTO, ETH_P_IP, ETH_P_IPV6, IPV4_CHECKSUM, IPV4_HLEN, IPV4_SRC, IPV6_HLEN, IPV6_SRC, UDP_CHECKSUM,
};

/// Source addresses to draw from; IPv4 ones in the first 4 bytes. The bench
/// fills every slot, so a random index needs no length.
const SOURCES: u32 = 1 << 16;
#[map]
static BENCH_SOURCES: Array<[u8; 16]> = Array::with_max_entries(SOURCES, 0);
/// The frame of each family (0: IPv4, 1: IPv6), its first
/// [`FRAME_BYTES`] bytes, and whether to restore it before every run (slot
/// 0 of `BENCH_RESTORE`, 1: restore).
#[map]
static BENCH_FRAMES: Array<[u8; FRAME_BYTES]> = Array::with_max_entries(2, 0);
#[map]
static BENCH_RESTORE: Array<u32> = Array::with_max_entries(1, 0);
const FRAME_BYTES: usize = 128;

/// (source offset, IPv4 header checksum offset, UDP checksum offset) from the
/// L3 header, for frames with no options or extension headers.
const V4: (usize, usize, usize) = (IPV4_SRC, IPV4_CHECKSUM, IPV4_HLEN + UDP_CHECKSUM);
const V6: (usize, usize, usize) = (IPV6_SRC, 0, IPV6_HLEN + UDP_CHECKSUM);

#[xdp]
pub fn bench_sender(ctx: XdpContext) -> u32 {
    // SAFETY: a helper without arguments.
    let index = unsafe { bpf_get_prandom_u32() } & (SOURCES - 1);
    let Some(source) = BENCH_SOURCES.get(index) else {
        return XDP_ABORTED;
    };
    if BENCH_RESTORE.get(0).is_some_and(|r| *r != 0) && !restore(&ctx) {
        return XDP_ABORTED;
    }
    let done = match read_be16(&ctx, ETH_PROTO) {
        Some(ETH_P_IP) => rewrite::<2>(&ctx, V4, true, source),
        Some(ETH_P_IPV6) => rewrite::<8>(&ctx, V6, false, source),
        _ => None,
    };
    match done {
        Some(()) => XDP_TX,
        None => XDP_ABORTED,
    }
}

/// Writes the frame of its family (by its EtherType, which no answer
/// changes) back over it: at most [`FRAME_BYTES`], never past its end.
#[inline(always)]
fn restore(ctx: &XdpContext) -> bool {
    let family = match read_be16(ctx, ETH_PROTO) {
        Some(ETH_P_IPV6) => 1,
        _ => 0,
    };
    let Some(frame) = BENCH_FRAMES.get(family) else {
        return false;
    };
    // Between 1 and FRAME_BYTES, as the verifier must see it.
    let len = (ctx.data_end() - ctx.data()).min(FRAME_BYTES) as u32;
    let len = (len.wrapping_sub(1) & (FRAME_BYTES as u32 - 1)) + 1;
    // SAFETY: the map value holds FRAME_BYTES >= len bytes; the helper
    // checks the frame's bounds.
    unsafe { bpf_xdp_store_bytes(ctx.ctx, 0, frame.as_ptr() as *mut _, len) == 0 }
}

#[xdp]
pub fn bench_pass(_ctx: XdpContext) -> u32 {
    XDP_PASS
}

/// A second baseline: reads what geoblock reads of the frame (EtherType and
/// the source address), then drops. Between it and a bare XDP_DROP lies the
/// cost of touching the packet; between it and geoblock, the lookup's.
#[xdp]
pub fn bench_parse(ctx: XdpContext) -> u32 {
    let (src, len) = match read_be16(&ctx, ETH_PROTO) {
        Some(ETH_P_IP) => (V4.0, 4),
        Some(ETH_P_IPV6) => (V6.0, 16),
        _ => return XDP_PASS,
    };
    let at = ctx.data() + ETH_HLEN + src;
    if at + 16 > ctx.data_end() {
        return XDP_PASS;
    }
    // SAFETY: inside the frame, checked above.
    let first = unsafe { (at as *const u8).read_volatile() };
    let last = unsafe { ((at + len - 1) as *const u8).read_volatile() };
    // Never true for the bench's sources; keeps the reads.
    if first == 0 && last == 0 {
        return XDP_PASS;
    }
    XDP_DROP
}

/// Writes the first `WORDS` 16-bit words of `new` as the source address and
/// folds the change into the checksums: HC' = ~(~HC + ~m + m') per word.
#[inline(always)]
fn rewrite<const WORDS: usize>(
    ctx: &XdpContext,
    (src, ip_csum, udp_csum): (usize, usize, usize),
    has_ip_csum: bool,
    new: &[u8; 16],
) -> Option<()> {
    let l3 = ctx.data() + ETH_HLEN;
    if l3 + udp_csum + 2 > ctx.data_end() {
        return None;
    }
    let mut delta: u32 = 0;
    for i in 0..WORDS {
        let at = (l3 + src + 2 * i) as *mut [u8; 2];
        let word = [new[2 * i], new[2 * i + 1]];
        // SAFETY: inside the frame, checked above (src + 16 <= udp_csum).
        let old = unsafe { at.read_unaligned() };
        delta += u32::from(!u16::from_ne_bytes(old)) + u32::from(u16::from_ne_bytes(word));
        unsafe { at.write_unaligned(word) };
    }
    if has_ip_csum {
        update(l3 + ip_csum, delta, false);
    }
    update(l3 + udp_csum, delta, true);
    Some(())
}

/// Adds `delta` (a sum of 16-bit words) to the checksum at `at`, which the
/// caller checked lies in the frame. A UDP checksum of 0 means "none": its
/// equal 0xffff is written instead; a zero UDP checksum (IPv4 only) stays.
#[inline(always)]
fn update(at: usize, delta: u32, udp: bool) {
    let at = at as *mut u16;
    // SAFETY: in the frame, see `rewrite`.
    let old = unsafe { at.read_unaligned() };
    if udp && old == 0 {
        return;
    }
    let mut sum = u32::from(!old) + delta;
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    let mut new = !(sum as u16);
    if udp && new == 0 {
        new = 0xffff;
    }
    unsafe { at.write_unaligned(new) };
}

#[inline(always)]
fn read_be16(ctx: &XdpContext, offset: usize) -> Option<u16> {
    let at = ctx.data() + offset;
    if at + 2 > ctx.data_end() {
        return None;
    }
    // SAFETY: checked above.
    Some(u16::from_be_bytes(unsafe { (at as *const [u8; 2]).read_unaligned() }))
}

geoblock_ebpf::object_boilerplate!();
