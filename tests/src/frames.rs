//! Ethernet frames built byte by byte, as a NIC would hand them to XDP.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use geoblock_common::packet::{
    ETH_HLEN, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, IPPROTO_UDP, IPV4_CHECKSUM, IPV4_DST, IPV4_FRAG_OFF, IPV4_HLEN,
    IPV4_PROTOCOL, IPV4_SRC, IPV4_TOTAL_LEN, IPV4_TTL, IPV6_DST, IPV6_HLEN, IPV6_HOP_LIMIT, IPV6_NEXT_HEADER,
    IPV6_PAYLOAD_LEN, IPV6_SRC, L4_DST_PORT, L4_SRC_PORT, UDP_CHECKSUM, UDP_HLEN, UDP_LEN, VLAN_HLEN,
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
        let (proto, l3) = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => (ETH_P_IP, ipv4_packet(s, d, self.ipv4_options, &udp)),
            (IpAddr::V6(s), IpAddr::V6(d)) => (ETH_P_IPV6, ipv6_packet(s, d, &udp)),
            _ => panic!("source and destination of different families"),
        };
        ethernet(self.dst_mac, self.src_mac, self.vlans, proto, &l3)
    }
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

pub fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, options: usize, payload: &[u8]) -> Vec<u8> {
    assert!(options.is_multiple_of(4) && options <= 40, "IPv4 options must be 4-byte words, at most 40");
    let hlen = IPV4_HLEN + options;
    let total = (hlen + payload.len()) as u16;
    let mut h = vec![0u8; hlen];
    h[0] = 0x40 | (hlen / 4) as u8;
    put(&mut h, IPV4_TOTAL_LEN, &total.to_be_bytes());
    h[IPV4_FRAG_OFF] = 0x40; // don't fragment
    h[IPV4_TTL] = 64;
    h[IPV4_PROTOCOL] = IPPROTO_UDP;
    put(&mut h, IPV4_SRC, &src.octets());
    put(&mut h, IPV4_DST, &dst.octets());
    // NOP options: valid, and they push the payload to a variable offset.
    h[IPV4_HLEN..].fill(1);
    let sum = checksum(&h, 0);
    put(&mut h, IPV4_CHECKSUM, &sum.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

pub fn ipv6_packet(src: Ipv6Addr, dst: Ipv6Addr, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; IPV6_HLEN];
    h[0] = 0x60;
    put(&mut h, IPV6_PAYLOAD_LEN, &(payload.len() as u16).to_be_bytes());
    h[IPV6_NEXT_HEADER] = IPPROTO_UDP;
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
    let mut pseudo = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&[0, IPPROTO_UDP]);
            pseudo.extend_from_slice(&len.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&u32::from(len).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, IPPROTO_UDP]);
        }
        _ => panic!("source and destination of different families"),
    }
    let mut sum = checksum(&seg, sum_words(&pseudo));
    if sum == 0 {
        sum = 0xffff; // 0 means "no checksum" in UDP
    }
    put(&mut seg, UDP_CHECKSUM, &sum.to_be_bytes());
    seg
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

#[cfg(test)]
mod tests {
    use geoblock_common::packet::{ETH_P_8021AD, ETH_P_8021Q};

    use super::*;

    #[test]
    fn ipv4_header_checksum_verifies() {
        let p = ipv4_packet(Ipv4Addr::new(1, 2, 3, 4), Ipv4Addr::new(5, 6, 7, 8), 8, b"x");
        assert_eq!(p[0], 0x47);
        assert_eq!(checksum(&p[..28], 0), 0);
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
