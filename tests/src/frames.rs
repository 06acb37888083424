//! Ethernet frames built byte by byte, as a NIC would hand them to XDP.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88A8;

/// Ethernet header (MACs and EtherType) and VLAN tag lengths.
pub const ETH_HLEN: usize = 14;
pub const VLAN_HLEN: usize = 4;

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
    let mut f = Vec::with_capacity(22 + payload.len());
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
    assert!(options % 4 == 0 && options <= 40, "IPv4 options must be 4-byte words, at most 40");
    let hlen = 20 + options;
    let total = (hlen + payload.len()) as u16;
    let mut h = vec![0u8; hlen];
    h[0] = 0x40 | (hlen / 4) as u8;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[6] = 0x40; // don't fragment
    h[8] = 64; // TTL
    h[9] = 17; // UDP
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    // NOP options: valid, and they push the payload to a variable offset.
    h[20..].fill(1);
    let sum = checksum(&h, 0);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

pub fn ipv6_packet(src: Ipv6Addr, dst: Ipv6Addr, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    h[6] = 17; // UDP
    h[7] = 64; // hop limit
    h[8..24].copy_from_slice(&src.octets());
    h[24..40].copy_from_slice(&dst.octets());
    h.extend_from_slice(payload);
    h
}

/// A UDP header and payload with a correct checksum over the pseudo-header.
pub fn udp_segment(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()) as u16;
    let mut seg = Vec::with_capacity(len as usize);
    seg.extend_from_slice(&sport.to_be_bytes());
    seg.extend_from_slice(&dport.to_be_bytes());
    seg.extend_from_slice(&len.to_be_bytes());
    seg.extend_from_slice(&[0, 0]);
    seg.extend_from_slice(payload);
    let mut pseudo = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&[0, 17]);
            pseudo.extend_from_slice(&len.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&u32::from(len).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, 17]);
        }
        _ => panic!("source and destination of different families"),
    }
    let mut sum = checksum(&seg, sum_words(&pseudo));
    if sum == 0 {
        sum = 0xffff; // 0 means "no checksum" in UDP
    }
    seg[6..8].copy_from_slice(&sum.to_be_bytes());
    seg
}

/// An ARP request: the non-IP frame every LAN carries.
pub fn arp_request(src_mac: [u8; 6], src: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    arp_request_tagged(src_mac, &[], src, target)
}

/// An ARP request inside VLAN tags `(tpid, vid)`, outer first.
pub fn arp_request_tagged(src_mac: [u8; 6], vlans: &[(u16, u16)], src: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut arp = vec![0, 1, 0x08, 0x00, 6, 4, 0, 1];
    arp.extend_from_slice(&src_mac);
    arp.extend_from_slice(&src.octets());
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&target.octets());
    ethernet([0xff; 6], src_mac, vlans, ETH_P_ARP, &arp)
}

fn sum_words(data: &[u8]) -> u32 {
    data.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
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
