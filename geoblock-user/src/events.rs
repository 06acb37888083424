//! Sampled drop events: what the XDP program puts in its ring buffer,
//! decoded for people (`geoblock events`), scripts (`--json`) and packet
//! tools (`--pcap`).
//!
//! The daemon is the ring buffer's only reader, and streams the events to
//! `geoblock events` clients over the control socket. A BPF ring buffer has
//! one consumer position: two CLIs reading the pinned map themselves would
//! steal each other's events, and with none reading it would fill up and
//! count every later sample as lost. The daemon drains it continuously,
//! decodes each event once (it knows the policy, so the reason, and the
//! interface names of its namespace) and fans it out to any number of
//! clients; it stays the one process that touches kernel state.
//!
//! The JSON form of [`Event`] is a stable interface: fields are added, never
//! renamed.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
};

use geoblock_common::{
    packet::{
        ETH_HLEN, ETH_PROTO, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, IPPROTO_SCTP,
        IPPROTO_TCP, IPPROTO_UDP, IPV4_DST, IPV4_FRAG_OFF, IPV4_HLEN, IPV4_PROTOCOL, IPV4_SRC,
        IPV6_DST, IPV6_HLEN, IPV6_NEXT_HEADER, IPV6_SRC, L4_DST_PORT, L4_SRC_PORT, MAX_VLAN_TAGS,
        VLAN_HLEN, VLAN_PROTO,
    },
    Action, CountryId, DropEvent, EventConfig, NO_COUNTRY,
};
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::UnixStream,
    signal::unix::{signal, SignalKind},
};

use crate::{
    control::{Request, Response},
    country,
    pcap::PcapWriter,
    policy::Mode,
    Error,
};

/// Events per second over all CPUs unless `--event-rate` says otherwise.
pub const DEFAULT_EVENT_RATE: u32 = 100;
const NS_PER_SEC: u64 = 1_000_000_000;

/// The token bucket for `rate` events per second in total on `cpus` CPUs
/// (the kernel's possible CPUs): each CPU refills at `rate / cpus`, and
/// holds at most `max(rate, cpus) / cpus` events (at least one), so all of
/// them together emit at most `rate` per second after a burst of at most
/// `max(rate, cpus)`. Rate 0: events off.
pub fn bucket(rate: u32, cpus: u32) -> EventConfig {
    let rate = u64::from(rate);
    let cpus = u64::from(cpus.max(1));
    let burst = rate.max(cpus) * NS_PER_SEC;
    EventConfig { rate, cost: cpus * NS_PER_SEC, burst, fill_ns: burst.div_ceil(rate.max(1)) }
}

/// Why a packet was dropped (or would have been).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// Its country is on the deny-list.
    BlockedCountry,
    /// Its country is not on the allow-list.
    NotAllowed,
    /// No country claims the source, and `--block-unknown` drops those.
    Unknown,
    /// Monitor mode: it would have been dropped, and was delivered.
    Monitor,
}

impl Reason {
    fn of(action: Action, country: CountryId, mode: Mode) -> Reason {
        match (action, mode) {
            (Action::WouldDrop, _) => Reason::Monitor,
            _ if country == NO_COUNTRY => Reason::Unknown,
            (_, Mode::Deny) => Reason::BlockedCountry,
            (_, Mode::Allow) => Reason::NotAllowed,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Reason::BlockedCountry => "blocked-country",
            Reason::NotAllowed => "not-allowed",
            Reason::Unknown => "unknown",
            Reason::Monitor => "monitor",
        }
    }
}

/// One sampled packet (`geoblock events --json`: one object per line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When the XDP program saw it, RFC 3339 UTC with nanoseconds.
    pub time: String,
    /// The same instant, in nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    pub iface: String,
    pub ifindex: u32,
    /// `true`: dropped; `false`: monitor mode, delivered.
    pub dropped: bool,
    pub reason: Reason,
    /// ISO code of the source's country; none for an address no country claims.
    pub country: Option<String>,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number (IPv6: the fixed header's next header).
    pub protocol: u8,
    /// TCP, UDP and SCTP ports; none for other protocols and IPv4 fragments after the first.
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    /// The frame's length on the wire.
    pub frame_len: u32,
    /// Its first bytes (up to 128), from the Ethernet header on, in hex.
    pub frame: String,
}

impl Event {
    /// Decodes a kernel record; `None` if its frame does not hold an IP
    /// header (the program only samples frames it parsed, so: never).
    pub fn decode(raw: &DropEvent, clock: &WallClock, mode: Mode) -> Option<Event> {
        let captured = &raw.frame[..usize::from(raw.captured).min(raw.frame.len())];
        let packet = Packet::parse(captured)?;
        let timestamp_ns = clock.unix_ns(raw.timestamp_ns);
        let action = Action::from_u8(raw.action);
        Some(Event {
            time: rfc3339(timestamp_ns),
            timestamp_ns,
            iface: iface_name(raw.ifindex),
            ifindex: raw.ifindex,
            dropped: action == Action::Drop,
            reason: Reason::of(action, raw.country, mode),
            country: (raw.country != NO_COUNTRY).then(|| country::code(raw.country).to_string()),
            src: packet.src,
            dst: packet.dst,
            protocol: packet.protocol,
            src_port: packet.ports.map(|p| p.0),
            dst_port: packet.ports.map(|p| p.1),
            frame_len: raw.frame_len,
            frame: captured.iter().map(|b| format!("{b:02x}")).collect(),
        })
    }

    /// One line: time, interface, reason, country, source → destination, protocol.
    pub fn render(&self) -> String {
        let endpoint = |ip: IpAddr, port: Option<u16>| match port {
            Some(port) => SocketAddr::new(ip, port).to_string(),
            None => ip.to_string(),
        };
        format!(
            "{} {} {} {} {} -> {} {} {} bytes",
            self.time,
            self.iface,
            self.reason.name(),
            self.country.as_deref().unwrap_or("--"),
            endpoint(self.src, self.src_port),
            endpoint(self.dst, self.dst_port),
            protocol_name(self.protocol),
            self.frame_len
        )
    }

    /// The captured bytes, from [`Event::frame`].
    pub fn frame_bytes(&self) -> Vec<u8> {
        let hex = self.frame.as_bytes();
        hex.chunks(2)
            .filter_map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
            .collect()
    }
}

fn protocol_name(protocol: u8) -> String {
    match protocol {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        other => format!("proto-{other}"),
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
        let protocol = header[IPV6_NEXT_HEADER];
        Some(Packet { src: src.into(), dst: dst.into(), protocol, ports: ports(protocol, ip.get(IPV6_HLEN..)) })
    }
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

/// Events emitted, suppressed (token bucket empty) and lost (ring buffer
/// full), summed over CPUs; in `geoblock status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventCounts {
    pub emitted: u64,
    pub suppressed: u64,
    pub lost: u64,
}

/// The event settings and counters in `geoblock status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventStatus {
    /// Events per second at most, over all CPUs (0: off).
    pub rate: u32,
    #[serde(flatten)]
    pub counts: EventCounts,
}

/// How `geoblock events` shows what it receives.
pub struct TailOptions {
    pub json: bool,
    /// Only events from this country.
    pub country: Option<CountryId>,
    /// Also append every event's frame to this pcap file.
    pub pcap: Option<PathBuf>,
}

/// The daemon's event stream, subscribed to.
pub struct Subscription {
    socket: PathBuf,
    lines: tokio::io::Lines<BufReader<UnixStream>>,
}

/// `geoblock events`: shows the events of `subscription` on `out` until
/// SIGINT, SIGTERM or the daemon's exit; a pcap file is complete then.
/// Returns how many were shown.
pub async fn tail(subscription: Subscription, opts: &TailOptions, out: &mut impl std::io::Write) -> Result<u64, Error> {
    let Subscription { socket, mut lines } = subscription;
    let io = |e: std::io::Error| Error::Io { path: socket.clone(), source: e };
    let (mut int, mut term) = (signal(SignalKind::interrupt()).map_err(io)?, signal(SignalKind::terminate()).map_err(io)?);
    let mut pcap = match &opts.pcap {
        Some(path) => {
            let file = std::fs::File::create(path).map_err(Error::io(path))?;
            Some(PcapWriter::new(file, geoblock_common::EVENT_SNAPLEN as u32).map_err(Error::io(path))?)
        }
        None => None,
    };
    let mut shown = 0;
    loop {
        let line = tokio::select! {
            _ = int.recv() => break,
            _ = term.recv() => break,
            line = lines.next_line() => match line.map_err(io)? {
                Some(line) => line,
                None => break,
            },
        };
        let event: Event = serde_json::from_str(&line).map_err(|e| io(std::io::Error::other(e)))?;
        if opts.country.is_some_and(|c| event.country.as_deref() != Some(country::code(c))) {
            continue;
        }
        let text = if opts.json { line } else { event.render() };
        writeln!(out, "{text}").and_then(|()| out.flush()).map_err(io)?;
        if let (Some(pcap), Some(path)) = (&mut pcap, &opts.pcap) {
            pcap.write(event.timestamp_ns, &event.frame_bytes(), event.frame_len).map_err(Error::io(path))?;
        }
        shown += 1;
    }
    Ok(shown)
}

/// Asks the daemon at `socket` for its events; the lines that follow its
/// answer are events.
pub async fn subscribe(socket: &Path) -> Result<Subscription, Error> {
    let io = |e: std::io::Error| Error::Io { path: socket.into(), source: e };
    let mut stream = UnixStream::connect(socket).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => Error::Permission,
        _ => Error::NoDaemon(socket.into()),
    })?;
    let mut request = serde_json::to_string(&Request::Events).expect("requests serialize");
    request.push('\n');
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    let mut lines = BufReader::new(stream).lines();
    let answer = lines.next_line().await.map_err(io)?.unwrap_or_default();
    let response: Response = serde_json::from_str(&answer).map_err(|e| io(std::io::Error::other(e)))?;
    if !response.ok {
        return Err(io(std::io::Error::other(response.message)));
    }
    Ok(Subscription { socket: socket.into(), lines })
}

#[cfg(test)]
mod tests {
    use super::*;
    use geoblock_common::{country_id, EVENT_SNAPLEN};

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
            _reserved: 0,
            frame: bytes,
        }
    }

    #[test]
    fn an_event_decodes_to_addresses_ports_country_and_reason() {
        let cn = country_id(*b"CN").unwrap();
        let clock = WallClock { offset_ns: 1_700_000_000 * i128::from(NS_PER_SEC) };
        let event = Event::decode(&raw(&udp_v4_frame(), cn, Action::Drop), &clock, Mode::Deny).unwrap();
        assert_eq!(event.src, "1.0.1.1".parse::<IpAddr>().unwrap());
        assert_eq!(event.dst, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!((event.protocol, event.src_port, event.dst_port), (17, Some(40000), Some(53)));
        assert_eq!((event.country.as_deref(), event.reason, event.dropped), (Some("CN"), Reason::BlockedCountry, true));
        assert_eq!(event.timestamp_ns, 1_700_000_005 * NS_PER_SEC);
        assert_eq!(event.time, "2023-11-14T22:13:25.000000000Z");
        assert_eq!(event.frame_bytes(), udp_v4_frame());
        assert_eq!(event.render(), format!("{} lo blocked-country CN 1.0.1.1:40000 -> 10.0.0.2:53 udp 74 bytes", event.time));
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), event);
    }

    #[test]
    fn reasons_follow_the_policy_mode_and_the_action() {
        let de = country_id(*b"DE").unwrap();
        assert_eq!(Reason::of(Action::Drop, de, Mode::Allow), Reason::NotAllowed);
        assert_eq!(Reason::of(Action::Drop, NO_COUNTRY, Mode::Allow), Reason::Unknown);
        assert_eq!(Reason::of(Action::WouldDrop, de, Mode::Deny), Reason::Monitor);
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

    #[test]
    fn the_bucket_divides_the_rate_among_cpus() {
        let b = bucket(100, 4);
        // Per CPU: 25 events per second, up to 25 in a burst.
        assert_eq!(NS_PER_SEC * b.rate / b.cost, 25);
        assert_eq!(b.burst / b.cost, 25);
        assert!(b.fill_ns * b.rate >= b.burst);
        // Fewer events than CPUs: each CPU still holds one.
        assert_eq!(bucket(2, 8).burst / bucket(2, 8).cost, 1);
        assert_eq!(bucket(0, 2).rate, 0, "off");
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400 * NS_PER_SEC + 7), "2000-02-29T00:00:00.000000007Z");
    }
}
