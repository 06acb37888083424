//! The frame layout, as on the wire: the XDP program parses it, the daemon
//! decodes sampled frames with it, the tests and the benchmark build frames
//! with it. Offsets are in bytes from the start of their header.

/// Ethernet: destination and source MAC, then the EtherType.
pub const ETH_HLEN: usize = 14;
/// Where the Ethernet header's EtherType sits (a tag's TPID, when tagged).
pub const ETH_PROTO: usize = 12;

/// EtherTypes.
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86DD;
/// 802.1Q (C-tag) and 802.1ad (S-tag) VLAN tags.
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88A8;

/// A VLAN tag after the Ethernet header: its TCI, then the inner EtherType.
pub const VLAN_HLEN: usize = 4;
/// Where a tag's inner EtherType sits.
pub const VLAN_PROTO: usize = 2;
/// VLAN tags the XDP program walks to reach the IP header; behind a third
/// it does not look, the kernel does.
pub const MAX_VLAN_TAGS: usize = 2;

/// IPv4 header without options.
pub const IPV4_HLEN: usize = 20;
pub const IPV4_TOTAL_LEN: usize = 2;
/// Flags and fragment offset.
pub const IPV4_FRAG_OFF: usize = 6;
pub const IPV4_TTL: usize = 8;
pub const IPV4_PROTOCOL: usize = 9;
pub const IPV4_CHECKSUM: usize = 10;
pub const IPV4_SRC: usize = 12;
pub const IPV4_DST: usize = 16;

/// IPv6 fixed header.
pub const IPV6_HLEN: usize = 40;
pub const IPV6_PAYLOAD_LEN: usize = 4;
pub const IPV6_NEXT_HEADER: usize = 6;
pub const IPV6_HOP_LIMIT: usize = 7;
pub const IPV6_SRC: usize = 8;
pub const IPV6_DST: usize = 24;

/// Source and destination ports: the first two fields of TCP, UDP and SCTP.
pub const L4_SRC_PORT: usize = 0;
pub const L4_DST_PORT: usize = 2;
pub const UDP_HLEN: usize = 8;
pub const UDP_LEN: usize = 4;
pub const UDP_CHECKSUM: usize = 6;

/// IP protocol numbers (IPv4 protocol, IPv6 next header).
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_SCTP: u8 = 132;

/// IPv4: more-fragments flag and fragment offset (8-byte units) in the
/// flags/offset field; the IHL in 4-byte words is the first byte's low nibble.
pub const IPV4_MF: u16 = 0x2000;
pub const IPV4_OFFSET_MASK: u16 = 0x1fff;

/// IPv6 extension headers geoblock walks to reach the L4 header. Each
/// starts with its next header; its length follows, in 8-byte units not
/// counting the first 8 (the fragment header is always 8 bytes).
pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_ROUTING: u8 = 43;
pub const IPPROTO_FRAGMENT: u8 = 44;
pub const IPPROTO_DSTOPTS: u8 = 60;
pub const IPV6_EXT_LEN: usize = 1;
pub const IPV6_FRAG_HLEN: usize = 8;
/// In the fragment header: offset (8-byte units) in the top 13 bits of this field.
pub const IPV6_FRAG_OFF: usize = 2;
pub const IPV6_OFFSET_MASK: u16 = 0xfff8;
/// Extension headers walked before giving up: no real packet has more,
/// and a longer chain is dropped (RFC 9098: such chains exist to hide the
/// L4 header).
pub const MAX_IPV6_EXT_HEADERS: usize = 8;
/// The furthest into a frame an IPv6 header chain may push the L4 header:
/// real chains (a router alert, a segment routing header) take a few
/// hundred bytes; a longer one is dropped like a chain of too many headers.
pub const MAX_L4_OFFSET: usize = 1024;

/// TCP: sequence and acknowledgment numbers, the data offset (header
/// length in 4-byte words, high nibble), the flags byte and its flags.
pub const TCP_SEQ: usize = 4;
pub const TCP_ACK_SEQ: usize = 8;
pub const TCP_DATA_OFF: usize = 12;
pub const TCP_FLAGS: usize = 13;
pub const TCP_WINDOW: usize = 14;
pub const TCP_CHECKSUM: usize = 16;
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;
pub const TCP_HLEN: usize = 20;

/// ICMP and ICMPv6: type, code, checksum, then 4 bytes (the echo identifier
/// and sequence, or for errors unused/MTU/pointer), then for errors the
/// offending packet's headers.
pub const ICMP_HLEN: usize = 8;
pub const ICMP_ECHO_ID: usize = 4;
pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_ECHO: u8 = 8;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
pub const ICMP_PARAMETER_PROBLEM: u8 = 12;
pub const ICMPV6_DEST_UNREACH: u8 = 1;
pub const ICMPV6_PACKET_TOO_BIG: u8 = 2;
pub const ICMPV6_TIME_EXCEEDED: u8 = 3;
pub const ICMPV6_PARAMETER_PROBLEM: u8 = 4;
pub const ICMPV6_ECHO_REQUEST: u8 = 128;
pub const ICMPV6_ECHO_REPLY: u8 = 129;
pub const ICMP_CHECKSUM: usize = 2;
/// Destination unreachable, communication administratively prohibited:
/// ICMP type 3 code 13 (RFC 1812), ICMPv6 type 1 code 1 (RFC 4443).
pub const ICMP_ADMIN_PROHIBITED: u8 = 13;
pub const ICMPV6_ADMIN_PROHIBITED: u8 = 1;
/// The longest ICMP error a rejected packet draws, IP header included:
/// RFC 1812's 576 bytes for IPv4, RFC 4443's 1280 for IPv6. The rest of
/// the offending packet is cut from the quote.
pub const ICMP_ERROR_MAX_V4: usize = 576;
pub const ICMP_ERROR_MAX_V6: usize = 1280;
/// The hop limit (IPv4 TTL) of geoblock's answers.
pub const REPLY_HOP_LIMIT: u8 = 64;
/// IPv4 flags: don't fragment.
pub const IPV4_DF: u16 = 0x4000;
