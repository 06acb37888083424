//! Ethernet frames built byte by byte, as a NIC would hand them to XDP.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use geoblock_common::packet::{
    ETH_HLEN, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST, ICMP_ECHO, ICMP_ECHO_REPLY,
    IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, IPV4_CHECKSUM, IPV4_DST, IPV4_FRAG_OFF, IPV4_HLEN,
    IPV4_PROTOCOL, IPV4_SRC, IPV4_TOTAL_LEN, IPV4_TTL, IPV6_DST, IPV6_HLEN, IPV6_HOP_LIMIT, IPV6_NEXT_HEADER,
    IPV6_PAYLOAD_LEN, IPV6_SRC, L4_DST_PORT, L4_SRC_PORT, TCP_FLAGS, TCP_HLEN, UDP_CHECKSUM, UDP_HLEN, UDP_LEN,
    VLAN_HLEN,
};

/// Where the L3 header starts in a frame with `tags` VLAN tags.
pub const fn l3_offset(tags: usize) -> usize {
    ETH_HLEN + VLAN_HLEN * tags
}

/// A UDP datagram from `src` to `dst` in an Ethernet frame, with the given
/// VLAN tags (outer first) and, for IPv4, `options` bytes of IP options
/// (a multiple of 4, at most 40).
#[derive(Clone, Debug)]
pub struct Udp<'a> {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub vlans: &'a [(u16, u16)],
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ipv4_options: usize,
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: &'a [u8],
}

impl Default for Udp<'_> {
    fn default() -> Self {
        Udp {
            src_mac: [0x02, 0, 0, 0, 0, 1],
            dst_mac: [0x02, 0, 0, 0, 0, 2],
            vlans: &[],
            src: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
            ipv4_options: 0,
            src_port: 40000,
            dst_port: 5555,
            payload: b"geoblock",
        }
    }
}

impl Udp<'_> {
    pub fn build(&self) -> Vec<u8> {
        let udp = udp_segment(self.src, self.dst, self.src_port, self.dst_port, self.payload);
        let (proto, l3) = ip_packet(self.src, self.dst, self.ipv4_options, IPPROTO_UDP, &udp);
        ethernet(self.dst_mac, self.src_mac, self.vlans, proto, &l3)
    }
}

/// An IP packet of `protocol` from `src` to `dst` carrying `l4` (for IPv4
/// with `ipv4_options` bytes of options), and its EtherType.
pub fn ip_packet(src: IpAddr, dst: IpAddr, ipv4_options: usize, protocol: u8, l4: &[u8]) -> (u16, Vec<u8>) {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (ETH_P_IP, ipv4_packet(s, d, ipv4_options, protocol, l4)),
        (IpAddr::V6(s), IpAddr::V6(d)) => (ETH_P_IPV6, ipv6_packet(s, d, protocol, l4)),
        _ => panic!("source and destination of different families"),
    }
}

/// [`ip_packet`] without options, in an untagged Ethernet frame.
pub fn ip_frame(src_mac: [u8; 6], dst_mac: [u8; 6], src: IpAddr, dst: IpAddr, protocol: u8, l4: &[u8]) -> Vec<u8> {
    let (proto, l3) = ip_packet(src, dst, 0, protocol, l4);
    ethernet(dst_mac, src_mac, &[], proto, &l3)
}

/// An Ethernet header with VLAN tags `(tpid, vid)` around `payload`.
pub fn ethernet(dst: [u8; 6], src: [u8; 6], vlans: &[(u16, u16)], proto: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(l3_offset(vlans.len()) + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    for &(tpid, vid) in vlans {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&proto.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

pub fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, options: usize, protocol: u8, payload: &[u8]) -> Vec<u8> {
    assert!(options.is_multiple_of(4) && options <= 40, "IPv4 options must be 4-byte words, at most 40");
    let hlen = IPV4_HLEN + options;
    let total = (hlen + payload.len()) as u16;
    let mut h = vec![0u8; hlen];
    h[0] = 0x40 | (hlen / 4) as u8;
    put(&mut h, IPV4_TOTAL_LEN, &total.to_be_bytes());
    h[IPV4_FRAG_OFF] = 0x40; // don't fragment
    h[IPV4_TTL] = 64;
    h[IPV4_PROTOCOL] = protocol;
    put(&mut h, IPV4_SRC, &src.octets());
    put(&mut h, IPV4_DST, &dst.octets());
    // NOP options: valid, and they push the payload to a variable offset.
    h[IPV4_HLEN..].fill(1);
    let sum = checksum(&h, 0);
    put(&mut h, IPV4_CHECKSUM, &sum.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

pub fn ipv6_packet(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; IPV6_HLEN];
    h[0] = 0x60;
    put(&mut h, IPV6_PAYLOAD_LEN, &(payload.len() as u16).to_be_bytes());
    h[IPV6_NEXT_HEADER] = next_header;
    h[IPV6_HOP_LIMIT] = 64;
    put(&mut h, IPV6_SRC, &src.octets());
    put(&mut h, IPV6_DST, &dst.octets());
    h.extend_from_slice(payload);
    h
}

/// A UDP header and payload with a correct checksum over the pseudo-header.
pub fn udp_segment(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = (UDP_HLEN + payload.len()) as u16;
    let mut seg = vec![0u8; UDP_HLEN];
    put(&mut seg, L4_SRC_PORT, &sport.to_be_bytes());
    put(&mut seg, L4_DST_PORT, &dport.to_be_bytes());
    put(&mut seg, UDP_LEN, &len.to_be_bytes());
    seg.extend_from_slice(payload);
    let mut sum = checksum(&seg, pseudo_header_sum(src, dst, IPPROTO_UDP, seg.len()));
    if sum == 0 {
        sum = 0xffff; // 0 means "no checksum" in UDP
    }
    put(&mut seg, UDP_CHECKSUM, &sum.to_be_bytes());
    seg
}

/// TCP flags (the flags byte).
pub const TCP_FIN: u8 = 0x01;
pub use geoblock_common::packet::{TCP_ACK, TCP_RST, TCP_SYN};

/// Where the TCP checksum sits.
const TCP_CHECKSUM: usize = 16;

/// A TCP header (no options, sequence `seq`, acknowledging `ack`) with
/// `flags` and `payload`, with a correct checksum over the pseudo-header.
pub fn tcp_segment(
    src: IpAddr,
    dst: IpAddr,
    ports: (u16, u16),
    flags: u8,
    (seq, ack): (u32, u32),
    payload: &[u8],
) -> Vec<u8> {
    tcp_header(src, dst, ports, flags, (seq, ack), 65535, payload)
}

/// A TCP reset as RFC 9293 §3.10.7.1 makes it: no options, no data, window 0.
pub fn tcp_reset(src: IpAddr, dst: IpAddr, ports: (u16, u16), flags: u8, (seq, ack): (u32, u32)) -> Vec<u8> {
    tcp_header(src, dst, ports, flags, (seq, ack), 0, &[])
}

fn tcp_header(
    src: IpAddr,
    dst: IpAddr,
    ports: (u16, u16),
    flags: u8,
    (seq, ack): (u32, u32),
    window: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut seg = vec![0u8; TCP_HLEN];
    put(&mut seg, L4_SRC_PORT, &ports.0.to_be_bytes());
    put(&mut seg, L4_DST_PORT, &ports.1.to_be_bytes());
    put(&mut seg, 4, &seq.to_be_bytes());
    put(&mut seg, 8, &ack.to_be_bytes());
    seg[12] = ((TCP_HLEN / 4) as u8) << 4;
    seg[TCP_FLAGS] = flags;
    put(&mut seg, 14, &window.to_be_bytes());
    seg.extend_from_slice(payload);
    let sum = checksum(&seg, pseudo_header_sum(src, dst, IPPROTO_TCP, seg.len()));
    put(&mut seg, TCP_CHECKSUM, &sum.to_be_bytes());
    seg
}

/// The ICMP protocol of `addr`'s family: ICMP for IPv4, ICMPv6 for IPv6.
pub fn icmp_protocol(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => IPPROTO_ICMP,
        IpAddr::V6(_) => IPPROTO_ICMPV6,
    }
}

/// An ICMP (IPv4) or ICMPv6 (IPv6) message from `src` to `dst`: `kind`,
/// `code`, the 4 bytes after the checksum (echo identifier and sequence,
/// an error's MTU...), then `body` (an error's: the IP packet that caused
/// it, RFC 792 at least its header and first 8 bytes); with a correct
/// checksum (ICMPv6's over the pseudo-header).
pub fn icmp_message(src: IpAddr, dst: IpAddr, (kind, code): (u8, u8), rest: [u8; 4], body: &[u8]) -> Vec<u8> {
    let mut msg = vec![kind, code, 0, 0];
    msg.extend_from_slice(&rest);
    msg.extend_from_slice(body);
    let initial = match src {
        IpAddr::V4(_) => 0,
        IpAddr::V6(_) => pseudo_header_sum(src, dst, IPPROTO_ICMPV6, msg.len()),
    };
    let sum = checksum(&msg, initial);
    put(&mut msg, 2, &sum.to_be_bytes());
    msg
}

/// An ICMP or ICMPv6 echo request (`reply` false) or reply with
/// identifier `id` and sequence `seq`.
pub fn icmp_echo(src: IpAddr, dst: IpAddr, reply: bool, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let kind = match (src, reply) {
        (IpAddr::V4(_), false) => ICMP_ECHO,
        (IpAddr::V4(_), true) => ICMP_ECHO_REPLY,
        (IpAddr::V6(_), false) => ICMPV6_ECHO_REQUEST,
        (IpAddr::V6(_), true) => ICMPV6_ECHO_REPLY,
    };
    let [i0, i1] = id.to_be_bytes();
    let [s0, s1] = seq.to_be_bytes();
    icmp_message(src, dst, (kind, 0), [i0, i1, s0, s1], payload)
}

/// The sum of the pseudo-header of an L4 segment of `len` bytes of
/// `protocol` from `src` to `dst` (RFC 768, 793, 8200), to start its
/// checksum with.
fn pseudo_header_sum(src: IpAddr, dst: IpAddr, protocol: u8, len: usize) -> u32 {
    let mut pseudo = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&[0, protocol]);
            pseudo.extend_from_slice(&(len as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&(len as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, protocol]);
        }
        _ => panic!("source and destination of different families"),
    }
    sum_words(&pseudo)
}

/// The source address and IP protocol (IPv6: the first next header) of an
/// untagged IPv4 or IPv6 frame.
pub fn ip_summary(frame: &[u8]) -> Option<(IpAddr, u8)> {
    let ethertype = u16::from_be_bytes(frame.get(ETH_HLEN - 2..ETH_HLEN)?.try_into().ok()?);
    let l3 = &frame[ETH_HLEN..];
    match ethertype {
        ETH_P_IP => {
            let src: [u8; 4] = l3.get(IPV4_SRC..IPV4_SRC + 4)?.try_into().ok()?;
            Some((src.into(), *l3.get(IPV4_PROTOCOL)?))
        }
        ETH_P_IPV6 => {
            let src: [u8; 16] = l3.get(IPV6_SRC..IPV6_SRC + 16)?.try_into().ok()?;
            Some((src.into(), *l3.get(IPV6_NEXT_HEADER)?))
        }
        _ => None,
    }
}

/// The destination address of an IP frame.
pub fn ip_destination(frame: &[u8]) -> Option<IpAddr> {
    let ethertype = u16::from_be_bytes(frame.get(ETH_HLEN - 2..ETH_HLEN)?.try_into().ok()?);
    let l3 = &frame[ETH_HLEN..];
    match ethertype {
        ETH_P_IP => Some(<[u8; 4]>::try_from(l3.get(IPV4_DST..IPV4_DST + 4)?).ok()?.into()),
        ETH_P_IPV6 => Some(<[u8; 16]>::try_from(l3.get(IPV6_DST..IPV6_DST + 16)?).ok()?.into()),
        _ => None,
    }
}

/// Writes `field` into `header` at `offset`.
fn put(header: &mut [u8], offset: usize, field: &[u8]) {
    header[offset..offset + field.len()].copy_from_slice(field);
}

/// An ARP request: the non-IP frame every LAN carries.
pub fn arp_request(src_mac: [u8; 6], src: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    arp_request_tagged(src_mac, &[], src, target)
}

/// An ARP request inside VLAN tags `(tpid, vid)`, outer first.
pub fn arp_request_tagged(src_mac: [u8; 6], vlans: &[(u16, u16)], src: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    // Ethernet hardware, IPv4 protocol, their address lengths, a request.
    let mut arp = vec![0, 1];
    arp.extend_from_slice(&ETH_P_IP.to_be_bytes());
    arp.extend_from_slice(&[6, 4, 0, 1]);
    arp.extend_from_slice(&src_mac);
    arp.extend_from_slice(&src.octets());
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&target.octets());
    ethernet([0xff; 6], src_mac, vlans, ETH_P_ARP, &arp)
}

fn sum_words(data: &[u8]) -> u32 {
    data.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum()
}

/// The Internet checksum (RFC 1071) of `data`, starting from `initial`.
pub fn checksum(data: &[u8], initial: u32) -> u16 {
    let mut sum = initial + sum_words(data);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv6 packet from `src` to `dst` whose extension headers `exts` (kind,
/// bytes; each header's next-header byte is filled in) come before `l4` of
/// `protocol`.
pub fn ipv6_extended(src: IpAddr, dst: IpAddr, exts: &[(u8, Vec<u8>)], protocol: u8, l4: &[u8]) -> Vec<u8> {
    let (IpAddr::V6(s), IpAddr::V6(d)) = (src, dst) else {
        panic!("IPv6 addresses only: {src}, {dst}");
    };
    let mut payload = Vec::new();
    for (i, (_, bytes)) in exts.iter().enumerate() {
        let start = payload.len();
        payload.extend_from_slice(bytes);
        payload[start] = exts.get(i + 1).map_or(protocol, |(kind, _)| *kind);
    }
    payload.extend_from_slice(l4);
    ipv6_packet(s, d, exts.first().map_or(protocol, |(kind, _)| *kind), &payload)
}

/// An 8-byte options header of `kind` (hop-by-hop, destination options,
/// routing), for [`ipv6_extended`].
pub fn ext(kind: u8) -> (u8, Vec<u8>) {
    (kind, vec![0, 0, 1, 4, 0, 0, 0, 0])
}

/// A fragment header at `offset` (in 8-byte units), more fragments to
/// come, for [`ipv6_extended`].
pub fn fragment(offset: u16) -> (u8, Vec<u8>) {
    let mut h = vec![0; 8];
    h[2..4].copy_from_slice(&((offset << 3) | 1).to_be_bytes());
    h[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    (geoblock_common::packet::IPPROTO_FRAGMENT, h)
}

#[cfg(test)]
mod tests {
    use geoblock_common::packet::{ETH_P_8021AD, ETH_P_8021Q};

    use super::*;

    #[test]
    fn ipv4_header_checksum_verifies() {
        let p = ipv4_packet(Ipv4Addr::new(1, 2, 3, 4), Ipv4Addr::new(5, 6, 7, 8), 8, IPPROTO_UDP, b"x");
        assert_eq!(p[0], 0x47);
        assert_eq!(checksum(&p[..28], 0), 0);
    }

    #[test]
    fn l4_checksums_verify() {
        let (v4, v6) = (ip("192.0.2.1"), ip("2001:db8::1"));
        let (d4, d6) = (ip("192.0.2.2"), ip("2001:db8::2"));
        for (src, dst) in [(v4, d4), (v6, d6)] {
            let tcp = tcp_segment(src, dst, (1, 2), TCP_SYN, (7, 0), b"odd");
            assert_eq!(checksum(&tcp, pseudo_header_sum(src, dst, IPPROTO_TCP, tcp.len())), 0);
            let udp = udp_segment(src, dst, 1, 2, b"odd");
            assert_eq!(checksum(&udp, pseudo_header_sum(src, dst, IPPROTO_UDP, udp.len())), 0);
            let echo = icmp_echo(src, dst, false, 9, 1, b"odd");
            let pseudo = if src.is_ipv6() { pseudo_header_sum(src, dst, IPPROTO_ICMPV6, echo.len()) } else { 0 };
            assert_eq!(checksum(&echo, pseudo), 0);
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn vlan_tags_sit_between_macs_and_ethertype() {
        let f = Udp { vlans: &[(ETH_P_8021AD, 100), (ETH_P_8021Q, 200)], ..Udp::default() }.build();
        assert_eq!(&f[12..14], &ETH_P_8021AD.to_be_bytes());
        assert_eq!(&f[16..18], &ETH_P_8021Q.to_be_bytes());
        assert_eq!(&f[20..22], &ETH_P_IP.to_be_bytes());
        assert_eq!(f[l3_offset(2)], 0x45);
    }

    #[test]
    fn tagged_arp_keeps_its_ethertype_after_the_tags() {
        let f = arp_request_tagged([2; 6], &[(ETH_P_8021Q, 7)], Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(&f[l3_offset(1) - 2..l3_offset(1)], &ETH_P_ARP.to_be_bytes());
        assert_eq!(f.len(), l3_offset(1) + 28);
    }
}
