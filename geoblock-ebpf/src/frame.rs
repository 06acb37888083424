//! Reading frames: bounds-checked reads, and the walk from Ethernet to the
//! L4 header that the XDP program (ingress) and the egress program share.

use aya_ebpf::{
    helpers::generated::{bpf_skb_load_bytes, bpf_xdp_load_bytes},
    programs::{TcContext, XdpContext},
};
use geoblock_common::{
    packet::{
        ETH_HLEN, ETH_PROTO, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, IPPROTO_DSTOPTS, IPPROTO_FRAGMENT,
        IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPV4_FRAG_OFF, IPV4_HLEN, IPV4_OFFSET_MASK, IPV4_PROTOCOL, IPV6_EXT_LEN,
        IPV6_FRAG_HLEN, IPV6_FRAG_OFF, IPV6_HLEN, IPV6_NEXT_HEADER, IPV6_OFFSET_MASK, MAX_IPV6_EXT_HEADERS,
        MAX_L4_OFFSET, MAX_VLAN_TAGS, VLAN_HLEN, VLAN_PROTO,
    },
    EVENT_SNAPLEN,
};

/// A packet buffer: XDP's frame, read in place, or TC's socket buffer,
/// read through `bpf_skb_load_bytes` (which also reaches headers outside
/// the linear part of the buffer, and which the verifier needs no bounds
/// proof for: the egress program's offsets come from a header walk).
pub trait Frame: aya_ebpf::EbpfContext {
    /// The `T` at `offset`, if the frame holds it.
    fn read<T: Copy>(&self, offset: usize) -> Option<T>;
    /// Whether the frame is at least `len` bytes long.
    fn fits(&self, len: usize) -> bool;
    /// The frame's length on the wire: what the counters count.
    fn len(&self) -> u64;
    /// The interface the frame came in on (XDP) or goes out of (egress).
    fn ifindex(&self) -> u32;
    /// Copies the frame's first `n` bytes (1 to [`EVENT_SNAPLEN`]) into
    /// `into`; whether it could.
    fn copy(&self, into: &mut [u8; EVENT_SNAPLEN], n: u32) -> bool;
}

/// The furthest into a frame the programs read: past Ethernet, two tags,
/// IPv6 and its extension headers, an ICMP error's quote.
const MAX_OFFSET: usize = 4096;

impl Frame for XdpContext {
    /// Bounds-checked: the only way the XDP program touches a frame.
    #[inline(always)]
    fn read<T: Copy>(&self, offset: usize) -> Option<T> {
        // Offsets come from header walks: bounded here so that the verifier
        // knows their range (no header the programs read starts further in).
        if offset > MAX_OFFSET {
            return None;
        }
        let start = self.data() + offset;
        // At least two bytes: LLVM turns a one-byte check into `start >=
        // end`, from which the verifier learns nothing.
        if start + core::mem::size_of::<T>().max(2) > self.data_end() {
            return None;
        }
        // SAFETY: [start, start + size) lies inside the frame, checked above.
        Some(unsafe { core::ptr::read_unaligned(start as *const T) })
    }

    #[inline(always)]
    fn fits(&self, len: usize) -> bool {
        self.data() + len <= self.data_end()
    }

    #[inline(always)]
    fn len(&self) -> u64 {
        (self.data_end() - self.data()) as u64
    }

    #[inline(always)]
    fn ifindex(&self) -> u32 {
        self.ingress_ifindex() as u32
    }

    #[inline(always)]
    fn copy(&self, into: &mut [u8; EVENT_SNAPLEN], n: u32) -> bool {
        // SAFETY: `into` holds EVENT_SNAPLEN >= n bytes.
        unsafe { bpf_xdp_load_bytes(self.ctx, 0, into.as_mut_ptr().cast(), n) >= 0 }
    }
}

impl Frame for TcContext {
    #[inline(always)]
    fn read<T: Copy>(&self, offset: usize) -> Option<T> {
        self.load(offset).ok()
    }

    #[inline(always)]
    fn fits(&self, len: usize) -> bool {
        len <= self.skb.len() as usize
    }

    #[inline(always)]
    fn len(&self) -> u64 {
        u64::from(self.skb.len())
    }

    #[inline(always)]
    fn ifindex(&self) -> u32 {
        // SAFETY: the program's own context, a field the verifier allows reading.
        unsafe { (*self.skb.skb).ifindex }
    }

    #[inline(always)]
    fn copy(&self, into: &mut [u8; EVENT_SNAPLEN], n: u32) -> bool {
        // SAFETY: `into` holds EVENT_SNAPLEN >= n bytes.
        unsafe { bpf_skb_load_bytes(self.skb.skb as *const _, 0, into.as_mut_ptr().cast(), n) >= 0 }
    }
}

#[inline(always)]
pub fn fits(frame: &impl Frame, len: usize) -> bool {
    frame.fits(len)
}

#[inline(always)]
pub fn read<T: Copy>(frame: &impl Frame, offset: usize) -> Option<T> {
    frame.read(offset)
}

#[inline(always)]
pub fn read_be16(frame: &impl Frame, offset: usize) -> Option<u16> {
    read::<[u8; 2]>(frame, offset).map(u16::from_be_bytes)
}

/// What a frame carries, as far as the programs look.
pub enum Packet {
    V4(Ip),
    V6(Ip),
    NotIp,
    /// Too short or malformed to read its addresses: for the kernel to reject.
    Unparsed,
    /// An IPv6 header chain longer than geoblock walks
    /// ([`MAX_IPV6_EXT_HEADERS`], [`MAX_L4_OFFSET`]): the kernel would
    /// deliver it, and its ports cannot be judged, so it is dropped.
    Hidden,
}

/// Where an IP packet's headers are.
#[derive(Clone, Copy)]
pub struct Ip {
    pub l3: usize,
    pub l4: L4,
}

/// The L4 header: its offset and protocol, and whether the packet is an IP
/// fragment after the first, which carries no L4 header (`offset` is then
/// meaningless).
#[derive(Clone, Copy)]
pub struct L4 {
    pub offset: usize,
    pub protocol: u8,
    pub later_fragment: bool,
}

/// Walks Ethernet and up to two VLAN tags to the IP header, then to the L4
/// header. A frame counts as IP when the fixed part of its L3 header is in
/// the buffer and names the right IP version: its addresses are then known,
/// whatever follows.
#[inline(always)]
pub fn parse(frame: &impl Frame) -> Packet {
    let Some(mut proto) = read_be16(frame, ETH_PROTO) else {
        return Packet::Unparsed;
    };
    let mut l3 = ETH_HLEN;
    for _ in 0..MAX_VLAN_TAGS {
        if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
            break;
        }
        let Some(inner) = read_be16(frame, l3 + VLAN_PROTO) else {
            return Packet::Unparsed;
        };
        proto = inner;
        l3 += VLAN_HLEN;
    }
    match proto {
        ETH_P_IP => ipv4(frame, l3),
        ETH_P_IPV6 => ipv6(frame, l3),
        // A third tag: we do not look deeper, the kernel will.
        ETH_P_8021Q | ETH_P_8021AD => Packet::Unparsed,
        _ => Packet::NotIp,
    }
}

/// IPv4 of any header length (options are skipped by the IHL).
#[inline(always)]
fn ipv4(frame: &impl Frame, l3: usize) -> Packet {
    if !fits(frame, l3 + IPV4_HLEN) {
        return Packet::Unparsed;
    }
    let (Some(first), Some(frag), Some(protocol)) =
        (read::<u8>(frame, l3), read_be16(frame, l3 + IPV4_FRAG_OFF), read::<u8>(frame, l3 + IPV4_PROTOCOL))
    else {
        return Packet::Unparsed;
    };
    // IHL counts 4-byte words and cannot be below 5.
    let hlen = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || hlen < IPV4_HLEN {
        return Packet::Unparsed;
    }
    let later_fragment = frag & IPV4_OFFSET_MASK != 0;
    Packet::V4(Ip { l3, l4: L4 { offset: l3 + hlen, protocol, later_fragment } })
}

/// IPv6, through hop-by-hop, routing, destination options and fragment
/// headers to the L4 header; a fragment after the first ends the walk.
#[inline(always)]
fn ipv6(frame: &impl Frame, l3: usize) -> Packet {
    if !fits(frame, l3 + IPV6_HLEN) {
        return Packet::Unparsed;
    }
    let (Some(first), Some(mut next)) = (read::<u8>(frame, l3), read::<u8>(frame, l3 + IPV6_NEXT_HEADER)) else {
        return Packet::Unparsed;
    };
    if first >> 4 != 6 {
        return Packet::Unparsed;
    }
    let mut offset = l3 + IPV6_HLEN;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        let len = match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => match read::<u8>(frame, offset + IPV6_EXT_LEN) {
                Some(len) => (usize::from(len) + 1) * 8,
                None => return Packet::Unparsed,
            },
            IPPROTO_FRAGMENT => match read_be16(frame, offset + IPV6_FRAG_OFF) {
                Some(off) if off & IPV6_OFFSET_MASK != 0 => {
                    let protocol = read::<u8>(frame, offset).unwrap_or(next);
                    return Packet::V6(Ip { l3, l4: L4 { offset, protocol, later_fragment: true } });
                }
                Some(_) => IPV6_FRAG_HLEN,
                None => return Packet::Unparsed,
            },
            protocol => return Packet::V6(Ip { l3, l4: L4 { offset, protocol, later_fragment: false } }),
        };
        let Some(following) = read::<u8>(frame, offset) else {
            return Packet::Unparsed;
        };
        next = following;
        offset += len;
        if offset > MAX_L4_OFFSET {
            return Packet::Hidden;
        }
    }
    match next {
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_FRAGMENT => Packet::Hidden,
        protocol => Packet::V6(Ip { l3, l4: L4 { offset, protocol, later_fragment: false } }),
    }
}
