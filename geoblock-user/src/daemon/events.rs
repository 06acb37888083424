//! Drop events as the daemon streams them: each kernel record decoded once
//! (the daemon knows the policy, so the reason, and the interface names of
//! its namespace) into the JSON of [`crate::protocol::Event`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use geoblock_common::{
    packet::{
        ETH_HLEN, ETH_PROTO, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, IPPROTO_DSTOPTS, IPPROTO_FRAGMENT,
        IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, IPV4_DST, IPV4_FRAG_OFF, IPV4_HLEN,
        IPV4_PROTOCOL, IPV4_SRC, IPV6_DST, IPV6_EXT_LEN, IPV6_FRAG_HLEN, IPV6_FRAG_OFF, IPV6_HLEN, IPV6_NEXT_HEADER,
        IPV6_OFFSET_MASK, IPV6_SRC, L4_DST_PORT, L4_SRC_PORT, MAX_IPV6_EXT_HEADERS, MAX_VLAN_TAGS, VLAN_HLEN,
        VLAN_PROTO,
    },
    Action, DropEvent, NO_COUNTRY, SELECTOR_NONE,
};

use crate::{
    country,
    policy::{Direction, Policy, Reason},
    protocol::Event,
};

const NS_PER_SEC: u64 = 1_000_000_000;

/// Decodes a kernel record; `None` if its frame does not hold an IP header
/// (the programs only sample frames they parsed, so: never). The rule is
/// the policy's at its position, and the reason that rule's for the judged
/// address's country (none such: the policy changed since, and no rule is
/// named). When a selector of the rule decided, the reason is
/// `blocked-selector` and the event names it (`selector_name`: a counter
/// slot's selector). The judged address is the source of an inbound
/// packet, the destination of an outbound one.
pub fn decode(
    raw: &DropEvent,
    clock: &WallClock,
    policy: &Policy,
    selector_name: impl Fn(u16) -> Option<String>,
) -> Option<Event> {
    let captured = &raw.frame[..usize::from(raw.captured).min(raw.frame.len())];
    let packet = Packet::parse(captured)?;
    let direction = direction(raw.direction);
    let timestamp_ns = clock.unix_ns(raw.timestamp_ns);
    let action = Action::from_u8(raw.action);
    let rule = policy.rules.get(usize::from(raw.rule));
    let by_selector = raw.selector != SELECTOR_NONE;
    let reason = match rule {
        None => Reason::NoRule,
        // Events are of blocked packets: a selector that decided blocked.
        Some(_) if by_selector => Reason::BlockedSelector,
        Some(rule) => rule.reason(raw.country),
    };
    Some(Event {
        time: rfc3339(timestamp_ns),
        timestamp_ns,
        iface: iface_name(raw.ifindex),
        ifindex: raw.ifindex,
        direction,
        action,
        reason,
        rule: rule.map(|r| r.name.clone()),
        country: (raw.country != NO_COUNTRY).then(|| country::code(raw.country).to_string()),
        selector: by_selector.then(|| selector_name(raw.selector)).flatten(),
        src: packet.src,
        dst: packet.dst,
        protocol: packet.protocol,
        src_port: packet.ports.map(|p| p.0),
        dst_port: packet.ports.map(|p| p.1),
        frame_len: raw.frame_len,
        frame: captured.iter().map(|b| format!("{b:02x}")).collect(),
    })
}

/// The kernel's direction byte; the programs write only the two values.
fn direction(raw: u8) -> Direction {
    match raw {
        raw if raw == Direction::Outbound as u8 => Direction::Outbound,
        _ => Direction::Inbound,
    }
}

/// What the start of a frame says about its packet.
#[derive(Debug, PartialEq, Eq)]
struct Packet {
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    ports: Option<(u16, u16)>,
}

impl Packet {
    /// Walks Ethernet and up to two VLAN tags, as the XDP program does.
    fn parse(frame: &[u8]) -> Option<Packet> {
        let be16 = |at| field(frame, at).map(u16::from_be_bytes);
        let mut l3 = ETH_HLEN;
        let mut proto = be16(ETH_PROTO)?;
        for _ in 0..MAX_VLAN_TAGS {
            if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
                break;
            }
            proto = be16(l3 + VLAN_PROTO)?;
            l3 += VLAN_HLEN;
        }
        let ip = frame.get(l3..)?;
        match proto {
            ETH_P_IP => Packet::v4(ip),
            ETH_P_IPV6 => Packet::v6(ip),
            _ => None,
        }
    }

    fn v4(ip: &[u8]) -> Option<Packet> {
        let header = ip.get(..IPV4_HLEN)?;
        let ihl = usize::from(header[0] & 0x0f) * 4;
        let fragment_offset = u16::from_be_bytes(field(header, IPV4_FRAG_OFF)?) & 0x1fff;
        let src = Ipv4Addr::from(field::<4>(header, IPV4_SRC)?);
        let dst = Ipv4Addr::from(field::<4>(header, IPV4_DST)?);
        let protocol = header[IPV4_PROTOCOL];
        let ports = if fragment_offset == 0 { ports(protocol, ip.get(ihl..)) } else { None };
        Some(Packet { src: src.into(), dst: dst.into(), protocol, ports })
    }

    fn v6(ip: &[u8]) -> Option<Packet> {
        let header = ip.get(..IPV6_HLEN)?;
        let src = Ipv6Addr::from(field::<16>(header, IPV6_SRC)?);
        let dst = Ipv6Addr::from(field::<16>(header, IPV6_DST)?);
        let (protocol, l4) = skip_extensions(header[IPV6_NEXT_HEADER], ip.get(IPV6_HLEN..));
        Some(Packet { src: src.into(), dst: dst.into(), protocol, ports: ports(protocol, l4) })
    }
}

/// Walks IPv6 extension headers as the XDP program does, so that an event
/// shows the protocol and ports its rule was chosen by: the last next
/// header reached and what follows it (none for a fragment after the
/// first, which has no L4 header, or when the capture ends first).
fn skip_extensions(mut next: u8, mut rest: Option<&[u8]>) -> (u8, Option<&[u8]>) {
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        let Some(header) = rest else { break };
        let len = match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                header.get(IPV6_EXT_LEN).map(|&units| (usize::from(units) + 1) * 8)
            }
            IPPROTO_FRAGMENT => match field(header, IPV6_FRAG_OFF).map(u16::from_be_bytes) {
                Some(offset) if offset & IPV6_OFFSET_MASK == 0 => Some(IPV6_FRAG_HLEN),
                _ => None,
            },
            _ => return (next, rest),
        };
        let Some(&following) = header.first() else { break };
        (next, rest) = (following, len.and_then(|len| header.get(len..)));
    }
    (next, None)
}

/// Source and destination port of a TCP, UDP or SCTP header.
fn ports(protocol: u8, l4: Option<&[u8]>) -> Option<(u16, u16)> {
    if !matches!(protocol, IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP) {
        return None;
    }
    let port = |at| field(l4?, at).map(u16::from_be_bytes);
    Some((port(L4_SRC_PORT)?, port(L4_DST_PORT)?))
}

/// The `N` bytes at `at`, if `bytes` holds them.
fn field<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at + N)?.try_into().ok()
}

fn iface_name(ifindex: u32) -> String {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf holds IF_NAMESIZE bytes, as if_indextoname requires.
    let name = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if name.is_null() {
        return format!("if{ifindex}");
    }
    // SAFETY: on success buf holds a NUL-terminated name.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
}

/// Converts the kernel's CLOCK_MONOTONIC timestamps to wall-clock time, as
/// the two clocks stood when it was made.
pub struct WallClock {
    offset_ns: i128,
}

impl WallClock {
    pub fn now() -> WallClock {
        WallClock { offset_ns: clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_MONOTONIC) }
    }

    fn unix_ns(&self, monotonic_ns: u64) -> u64 {
        (i128::from(monotonic_ns) + self.offset_ns).max(0) as u64
    }
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid timespec to write to.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * i128::from(NS_PER_SEC) + i128::from(ts.tv_nsec)
}

/// `2026-11-25T07:01:02.123456789Z`.
fn rfc3339(unix_ns: u64) -> String {
    let secs = unix_ns / NS_PER_SEC;
    let (days, day_secs) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = crate::calendar::civil(days as i64);
    let (hh, mm, ss) = (day_secs / 3600, day_secs % 3600 / 60, day_secs % 60);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{:09}Z", unix_ns % NS_PER_SEC)
}

#[cfg(test)]
mod tests {
    use geoblock_common::{country_id, CountryId, EVENT_SNAPLEN};

    use super::*;
    use crate::policy::{Mode, Protocol, Rule, DEFAULT_RULE};

    /// Ethernet + one VLAN tag + IPv4 + UDP 40000 → 53, 74 bytes.
    fn udp_v4_frame() -> Vec<u8> {
        let mut f = vec![0; 12];
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x64, 0x08, 0x00]);
        f.extend_from_slice(&[0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&[1, 0, 1, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&[0x9c, 0x40, 0, 53, 0, 8, 0, 0]);
        f.resize(74, 0);
        f
    }

    fn raw(frame: &[u8], country: CountryId, action: Action) -> DropEvent {
        let mut bytes = [0; EVENT_SNAPLEN];
        let n = frame.len().min(EVENT_SNAPLEN);
        bytes[..n].copy_from_slice(&frame[..n]);
        DropEvent {
            timestamp_ns: 5 * NS_PER_SEC,
            frame_len: frame.len() as u32,
            ifindex: 1,
            country,
            action: action as u8,
            captured: n as u8,
            rule: 0,
            direction: 0,
            selector: geoblock_common::SELECTOR_NONE,
            frame: bytes,
        }
    }

    #[test]
    fn an_event_decodes_to_addresses_ports_country_and_reason() {
        let cn = country_id(*b"CN").unwrap();
        let clock = WallClock { offset_ns: 1_700_000_000 * i128::from(NS_PER_SEC) };
        let deny_cn = Policy::from(rule(Mode::Deny, cn));
        let event = decode(&raw(&udp_v4_frame(), cn, Action::Drop), &clock, &deny_cn, no_selector).unwrap();
        assert_eq!(event.src, "1.0.1.1".parse::<IpAddr>().unwrap());
        assert_eq!(event.dst, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!((event.protocol, event.src_port, event.dst_port), (17, Some(40000), Some(53)));
        assert_eq!(
            (event.country.as_deref(), event.reason, event.action),
            (Some("CN"), Reason::BlockedCountry, Action::Drop)
        );
        assert_eq!(event.timestamp_ns, 1_700_000_005 * NS_PER_SEC);
        assert_eq!(event.time, "2023-11-14T22:13:25.000000000Z");
        assert_eq!(event.frame_bytes(), udp_v4_frame());
        assert_eq!(
            event.render(),
            format!("{} lo inbound default blocked-country CN 1.0.1.1:40000 -> 10.0.0.2:53 udp 74 bytes", event.time)
        );
        assert_eq!(event.direction, Direction::Inbound);
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), event);
    }

    #[test]
    fn an_outbound_event_judges_its_destination() {
        let de = country_id(*b"DE").unwrap();
        let out =
            Policy::from(Rule { direction: Direction::Outbound, ..rule(Mode::Allow, country_id(*b"CN").unwrap()) });
        let raw = DropEvent { direction: Direction::Outbound as u8, ..raw(&udp_v4_frame(), de, Action::Drop) };
        let event = decode(&raw, &WallClock { offset_ns: 0 }, &out, no_selector).unwrap();
        assert_eq!((event.direction, event.reason), (Direction::Outbound, Reason::NotAllowed));
        assert_eq!(event.country.as_deref(), Some("DE"), "the destination's country");
        assert!(
            event.render().ends_with(" lo outbound default not-allowed DE 1.0.1.1:40000 -> 10.0.0.2:53 udp 74 bytes"),
            "{}",
            event.render()
        );
        let mut json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["direction"], "outbound");
        // A daemon older than directions sends none: its events are inbound.
        json.as_object_mut().unwrap().remove("direction");
        assert_eq!(serde_json::from_value::<Event>(json).unwrap().direction, Direction::Inbound);
        // A byte the programs never write reads as inbound, not as garbage.
        let odd = decode(&DropEvent { direction: 7, ..raw }, &WallClock { offset_ns: 0 }, &out, no_selector).unwrap();
        assert_eq!(odd.direction, Direction::Inbound);
    }

    fn no_selector(_: u16) -> Option<String> {
        None
    }

    #[test]
    fn a_selector_that_blocked_is_named_whatever_the_country() {
        let (cn, de) = (country_id(*b"CN").unwrap(), country_id(*b"DE").unwrap());
        let mut allow_de = rule(Mode::Allow, de);
        allow_de.block.insert("AS4134".parse().unwrap());
        let policy = Policy::from(allow_de);
        let names = |slot| (slot == 3).then(|| "AS4134".to_string());
        let blocked = DropEvent { selector: 3, ..raw(&udp_v4_frame(), de, Action::Drop) };
        let event = decode(&blocked, &WallClock { offset_ns: 0 }, &policy, names).unwrap();
        assert_eq!(
            (event.reason, event.selector.as_deref(), event.country.as_deref()),
            (Reason::BlockedSelector, Some("AS4134"), Some("DE")),
            "an allowed country, blocked by its AS"
        );
        assert!(
            event.render().contains(" lo inbound default blocked-selector AS4134 DE 1.0.1.1:40000 "),
            "{}",
            event.render()
        );
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!((&json["selector"], &json["reason"]), (&"AS4134".into(), &"blocked-selector".into()));
        assert_eq!(serde_json::from_value::<Event>(json).unwrap(), event);
        let by_country = decode(&raw(&udp_v4_frame(), cn, Action::Drop), &WallClock { offset_ns: 0 }, &policy, names);
        let by_country = serde_json::to_value(by_country.unwrap()).unwrap();
        assert_eq!((&by_country["selector"], &by_country["reason"]), (&serde_json::Value::Null, &"not-allowed".into()));
        // A slot renamed since (the selector no longer in use): the reason stays.
        let renamed = DropEvent { selector: 9, ..blocked };
        let event = decode(&renamed, &WallClock { offset_ns: 0 }, &policy, names).unwrap();
        assert_eq!((event.reason, event.selector), (Reason::BlockedSelector, None));
    }

    fn rule(mode: Mode, country: CountryId) -> Rule {
        Rule::new(DEFAULT_RULE, mode, [country].into())
    }

    #[test]
    fn reasons_are_the_policys() {
        let de = country_id(*b"DE").unwrap();
        let clock = WallClock { offset_ns: 0 };
        let reason = |policy: &Policy, country| {
            decode(&raw(&udp_v4_frame(), country, Action::Drop), &clock, policy, no_selector).unwrap().reason
        };
        assert_eq!(reason(&rule(Mode::Allow, de).into(), country_id(*b"CN").unwrap()), Reason::NotAllowed);
        let strict = Rule { block_unknown: true, ..rule(Mode::Allow, de) };
        assert_eq!(reason(&strict.into(), NO_COUNTRY), Reason::NoCountryBlocked);
        let monitored = Rule { monitor: true, ..rule(Mode::Deny, de) };
        assert_eq!(
            reason(&monitored.into(), de),
            Reason::BlockedCountry,
            "monitor mode shows in the action, not the reason"
        );
    }

    #[test]
    fn the_rule_that_decided_is_named() {
        let (cn, de) = (country_id(*b"CN").unwrap(), country_id(*b"DE").unwrap());
        let ssh = Rule { name: "ssh".into(), protocol: Protocol::Tcp, ..rule(Mode::Allow, de) };
        let dns = Rule { name: "dns".into(), protocol: Protocol::Udp, ..rule(Mode::Deny, cn) };
        let policy = Policy::new(vec![ssh, dns], vec![], true).unwrap();
        let clock = WallClock { offset_ns: 0 };
        let event =
            decode(&DropEvent { rule: 1, ..raw(&udp_v4_frame(), cn, Action::Drop) }, &clock, &policy, no_selector)
                .unwrap();
        assert_eq!((event.rule.as_deref(), event.reason), (Some("dns"), Reason::BlockedCountry));
        assert!(event.render().contains(" dns blocked-country CN "), "{}", event.render());
        let gone =
            decode(&DropEvent { rule: 5, ..raw(&udp_v4_frame(), cn, Action::Drop) }, &clock, &policy, no_selector)
                .unwrap();
        assert_eq!((gone.rule, gone.reason), (None, Reason::NoRule));
    }

    #[test]
    fn ipv6_and_truncated_frames() {
        let mut f = vec![0; 12];
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 8, 6, 64]);
        f.extend_from_slice(&"2001:da8::1".parse::<Ipv6Addr>().unwrap().octets());
        f.extend_from_slice(&"fd00::2".parse::<Ipv6Addr>().unwrap().octets());
        f.extend_from_slice(&[0x01, 0xbb, 0x30, 0x39]);
        let p = Packet::parse(&f).unwrap();
        assert_eq!((p.protocol, p.ports), (6, Some((443, 12345))));
        assert_eq!(p.src, "2001:da8::1".parse::<IpAddr>().unwrap());
        assert_eq!(Packet::parse(&f[..f.len() - 2]).unwrap().ports, None, "ports cut off");
        assert_eq!(Packet::parse(&f[..40]), None, "IPv6 header cut off");
    }

    /// IPv6 to TCP 443 behind `extensions`: (next header, header bytes) each.
    fn v6_behind(extensions: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let first = extensions.first().map_or(6, |(next, _)| *next);
        let mut f = vec![0; 12];
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 8, first, 64]);
        f.extend_from_slice(&[0x20, 1, 0x0d, 0xa8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        for (i, (_, header)) in extensions.iter().enumerate() {
            let mut header = header.clone();
            header[0] = extensions.get(i + 1).map_or(6, |(next, _)| *next);
            f.extend_from_slice(&header);
        }
        f.extend_from_slice(&[0x30, 0x39, 0x01, 0xbb]);
        f
    }

    #[test]
    fn ipv6_extension_headers_are_walked_to_the_ports() {
        let hop = (IPPROTO_HOPOPTS, vec![0; 8]);
        let routing = (IPPROTO_ROUTING, vec![0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let first_fragment = (IPPROTO_FRAGMENT, vec![0, 0, 0, 1, 0, 0, 0, 7]);
        let p = Packet::parse(&v6_behind(&[hop.clone(), routing, first_fragment])).unwrap();
        assert_eq!((p.protocol, p.ports), (6, Some((12345, 443))));
        let later_fragment = (IPPROTO_FRAGMENT, vec![0, 0, 0x05, 0x18, 0, 0, 0, 7]);
        let p = Packet::parse(&v6_behind(&[hop.clone(), later_fragment])).unwrap();
        assert_eq!((p.protocol, p.ports), (6, None), "a later fragment has no ports");
        let endless = vec![hop; MAX_IPV6_EXT_HEADERS + 1];
        let p = Packet::parse(&v6_behind(&endless)).unwrap();
        assert_eq!((p.protocol, p.ports), (IPPROTO_HOPOPTS, None), "the walk is bounded as the kernel's");
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400 * NS_PER_SEC + 7), "2000-02-29T00:00:00.000000007Z");
    }
}
