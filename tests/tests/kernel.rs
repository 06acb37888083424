//! The XDP program in the kernel, through BPF_PROG_TEST_RUN: frames in,
//! verdicts and counters out. No interface is involved.
//!
//! - crafted frames, each with its verdict and exact counter effect;
//! - every truncation of those frames, the expectation derived from the
//!   program's parsing contract;
//! - a differential check of the world tables (the embedded DB-IP one,
//!   and GeoLite2 as MaxMind ships it): random addresses through the kernel
//!   against the userspace reference `Policy::verdict`;
//! - the same with selectors: 100 ASes of the world's AS data and a list
//!   beside the countries, and a change of selectors swapping the selector
//!   table alone.
//!
//! Needs root (CAP_BPF and CAP_NET_ADMIN), and the npm registry for
//! GeoLite2 and the AS data: without them the tests fail, none skips.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::{Mutex, OnceLock},
    time::Instant,
};

use aya::{
    maps::MapInfo,
    programs::{TestRun as _, TestRunOptions},
};
use geoblock::{
    country,
    daemon::events::{decode, WallClock},
    data::{
        asn::{Asn, AsnData},
        list::AddressList,
        table::Table,
        Options,
    },
    errno,
    kernel::{
        counters::Traffic,
        events::{EventCounts, EventRing},
        Geoblock,
    },
    policy::{
        selectors, Direction, Mode, Policy, PortRange, Protocol, Reason, Rule, Selector, SelectorTable, Verdict,
        DEFAULT_RULE,
    },
};
use geoblock_common::{
    country_id, maps,
    packet::{
        ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IPV6, IPPROTO_DSTOPTS, IPPROTO_HOPOPTS, IPPROTO_ICMP,
        IPPROTO_ICMPV6, IPPROTO_ROUTING, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, IPV4_FRAG_OFF, IPV4_HLEN, IPV6_HLEN,
        L4_DST_PORT, MAX_IPV6_EXT_HEADERS, MAX_VLAN_TAGS,
    },
    Action, Backend, Counter, CountryCounters, CountryId, DropEvent, FlowKey, EVENT_SNAPLEN, NO_COUNTRY,
};
use geoblock_tests::{
    frames::{
        self, arp_request_tagged, ethernet, ext, fragment, icmp_echo, icmp_message, icmp_protocol, ip_packet,
        ipv6_extended, l3_offset, tcp_segment, udp_segment, Udp, TCP_ACK, TCP_RST, TCP_SYN,
    },
    registry, selectors as selectors_data,
};
use ipnetwork::IpNetwork;
use rand::{rngs::StdRng, Rng, SeedableRng};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

// ---------------------------------------------------------------------------
// Running the program
// ---------------------------------------------------------------------------

fn cc(code: &[u8; 2]) -> CountryId {
    country_id(*code).unwrap()
}

fn load(table: &Table, policy: &Policy, backend: Backend) -> Geoblock {
    let mut g = Geoblock::load(backend)
        .unwrap_or_else(|e| panic!("loading the XDP program failed (these tests need root): {e}"));
    g.load_table(table).expect("filling the prefix tries");
    g.apply_policy(policy).expect("writing the policy");
    g
}

/// One BPF_PROG_TEST_RUN of `frame`: the XDP action, or the errno with which
/// the kernel refused to run it.
fn try_run(g: &mut Geoblock, frame: &[u8]) -> Result<u32, i32> {
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(frame);
    let program = g.program().expect("the loaded program");
    program
        .test_run(opts)
        .map(|r| r.return_value)
        .map_err(|e| errno(&e).unwrap_or_else(|| panic!("BPF_PROG_TEST_RUN failed without an errno: {e}")))
}

/// Like [`try_run`] for frames the kernel must accept.
fn run(g: &mut Geoblock, frame: &[u8]) -> u32 {
    try_run(g, frame).unwrap_or_else(|errno| {
        panic!(
            "BPF_PROG_TEST_RUN of a {}-byte frame failed: {} (need root)",
            frame.len(),
            std::io::Error::from_raw_os_error(errno)
        )
    })
}

fn action_name(action: u32) -> String {
    match action {
        XDP_DROP => "XDP_DROP".into(),
        XDP_PASS => "XDP_PASS".into(),
        other => format!("XDP action {other}"),
    }
}

/// Every interface's counters together: BPF_PROG_TEST_RUN frames arrive
/// on no interface the daemon counts by name.
fn stats(g: &Geoblock) -> Traffic {
    g.stats().expect("reading the counters").inbound.all
}

// ---------------------------------------------------------------------------
// Expected effects
// ---------------------------------------------------------------------------

/// Where one frame lands in the counters: exactly one slot moves, by one
/// packet and the frame's length in bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Effect {
    Dropped(CountryId),
    Passed(CountryId),
    WouldDrop(CountryId),
    Exception,
    /// Rescued from a drop as a reply to a flow the host opened.
    Reply,
    NonIp,
    Unparsed,
    /// Not judged, and dropped: a header chain too long, or ports the rules
    /// need cut off. Counted as unparsed.
    Hidden,
}

impl Effect {
    fn of(verdict: &Verdict) -> Effect {
        match *verdict {
            Verdict::Exception => Effect::Exception,
            Verdict::Country(c, Action::Drop | Action::Reject)
            | Verdict::Selector(c, _, Action::Drop | Action::Reject) => Effect::Dropped(c),
            Verdict::Country(c, Action::Pass) | Verdict::Selector(c, _, Action::Pass) => Effect::Passed(c),
            Verdict::Country(c, Action::WouldDrop) | Verdict::Selector(c, _, Action::WouldDrop) => Effect::WouldDrop(c),
            Verdict::NoRule => panic!("these policies have one rule, for every packet"),
        }
    }

    /// The same frame in monitor mode.
    fn monitored(self) -> Effect {
        match self {
            Effect::Dropped(c) => Effect::WouldDrop(c),
            other => other,
        }
    }

    fn action(self) -> u32 {
        match self {
            Effect::Dropped(_) | Effect::Hidden => XDP_DROP,
            _ => XDP_PASS,
        }
    }

    /// Traffic a frame of `bytes` into `stats`, as the program should.
    fn count(self, stats: &mut Traffic, bytes: u64) {
        fn bump(p: &mut Counter, bytes: u64) {
            p.packets += 1;
            p.bytes += bytes;
        }
        let t = &mut stats.totals;
        let (total, country) = match self {
            Effect::Exception => return bump(&mut t.exception, bytes),
            Effect::Reply => return bump(&mut t.reply, bytes),
            Effect::NonIp => return bump(&mut t.non_ip, bytes),
            Effect::Unparsed | Effect::Hidden => return bump(&mut t.unparsed, bytes),
            Effect::Dropped(c) => (&mut t.dropped, c),
            Effect::Passed(c) => (&mut t.passed, c),
            Effect::WouldDrop(c) => (&mut t.would_drop, c),
        };
        bump(total, bytes);
        let slot = match country {
            NO_COUNTRY => &mut stats.unknown,
            c => stats.countries.entry(country::code(c).to_string()).or_default(),
        };
        self.tally(slot, bytes);
    }

    /// Counts a judged frame of `bytes` into a country's or a selector's slot.
    fn tally(self, slot: &mut CountryCounters, bytes: u64) {
        let (packets, sum) = match self {
            Effect::Dropped(_) => (&mut slot.dropped_packets, &mut slot.dropped_bytes),
            Effect::Passed(_) => (&mut slot.passed_packets, &mut slot.passed_bytes),
            _ => (&mut slot.would_drop_packets, &mut slot.would_drop_bytes),
        };
        *packets += 1;
        *sum += bytes;
    }
}

/// Countries by code, so failures read "Dropped(CN)".
impl std::fmt::Debug for Effect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let code = |c: &CountryId| match *c {
            NO_COUNTRY => "no country",
            c => country::code(c),
        };
        match self {
            Effect::Dropped(c) => write!(f, "Dropped({})", code(c)),
            Effect::Passed(c) => write!(f, "Passed({})", code(c)),
            Effect::WouldDrop(c) => write!(f, "WouldDrop({})", code(c)),
            Effect::Exception => f.write_str("Exception"),
            Effect::Reply => f.write_str("Reply"),
            Effect::NonIp => f.write_str("NonIp"),
            Effect::Unparsed => f.write_str("Unparsed"),
            Effect::Hidden => f.write_str("Hidden (dropped, counted as unparsed)"),
        }
    }
}

/// The counters that differ between `want` and `got`, one per line.
fn stats_diff(want: &Traffic, got: &Traffic) -> String {
    let mut out = String::new();
    let codes: BTreeSet<&String> = want.countries.keys().chain(got.countries.keys()).collect();
    let zero = CountryCounters::default();
    for code in codes {
        let (w, g) = (want.countries.get(code).unwrap_or(&zero), got.countries.get(code).unwrap_or(&zero));
        if w != g {
            writeln!(out, "  {code}: expected {w:?}\n      got {g:?}").unwrap();
        }
    }
    if want.unknown != got.unknown {
        writeln!(out, "  no country: expected {:?}\n      got {:?}", want.unknown, got.unknown).unwrap();
    }
    if want.totals != got.totals {
        writeln!(out, "  totals: expected {:?}\n      got {:?}", want.totals, got.totals).unwrap();
    }
    out
}

/// Runs frames one by one and checks each one's verdict and counter effect
/// against the counters read after the previous frame.
struct Checker {
    g: Geoblock,
    seen: Traffic,
}

impl Checker {
    fn new(g: Geoblock) -> Checker {
        let seen = stats(&g);
        Checker { g, seen }
    }

    /// `expected`: the effect, or the errno the kernel must refuse with.
    fn check(&mut self, what: &str, frame: &[u8], expected: Result<Effect, i32>) {
        let got = try_run(&mut self.g, frame);
        assert!(
            got == expected.map(Effect::action),
            "{what} ({} bytes): expected {}, got {}",
            frame.len(),
            match expected {
                Ok(effect) => format!("{effect:?}, i.e. {}", action_name(effect.action())),
                Err(errno) => format!("the kernel to refuse the run ({})", std::io::Error::from_raw_os_error(errno)),
            },
            match got {
                Ok(action) => action_name(action),
                Err(errno) => format!("a refused run ({})", std::io::Error::from_raw_os_error(errno)),
            },
        );
        let mut want = self.seen.clone();
        if let Ok(effect) = expected {
            effect.count(&mut want, frame.len() as u64);
        }
        let now = stats(&self.g);
        assert!(
            now == want,
            "{what} ({} bytes), expected {expected:?}: counters moved wrong:\n{}",
            frame.len(),
            stats_diff(&want, &now)
        );
        self.seen = now;
    }
}

// ---------------------------------------------------------------------------
// Crafted frames
// ---------------------------------------------------------------------------

/// What the program sees after the Ethernet header and tags.
#[derive(Clone, Copy, Debug)]
enum L3 {
    /// A UDP datagram from `src`; for IPv4 with `options` bytes of options.
    Ip {
        src: IpAddr,
        options: usize,
    },
    /// A 20/40-byte IP header from `src` whose first byte (version, IHL) is `first`.
    Mangled {
        src: IpAddr,
        first: u8,
    },
    Arp,
}

struct Case {
    name: String,
    vlans: &'static [(u16, u16)],
    l3: L3,
    /// What the whole frame does under [`crafted_policy`].
    effect: Effect,
}

const ONE_TAG: &[(u16, u16)] = &[(ETH_P_8021Q, 100)];
const TWO_TAGS: &[(u16, u16)] = &[(ETH_P_8021AD, 100), (ETH_P_8021Q, 200)];
const THREE_TAGS: &[(u16, u16)] = &[(ETH_P_8021AD, 100), (ETH_P_8021Q, 200), (ETH_P_8021Q, 300)];

impl Case {
    fn frame(&self) -> Vec<u8> {
        let udp = |src: IpAddr, options| {
            Udp { vlans: self.vlans, src, dst: host(src), ipv4_options: options, ..Udp::default() }.build()
        };
        match self.l3 {
            L3::Ip { src, options } => udp(src, options),
            L3::Mangled { src, first } => {
                let mut f = udp(src, 0);
                f[l3_offset(self.vlans.len())] = first;
                f
            }
            L3::Arp => arp_request_tagged(
                [0x02, 0, 0, 0, 0, 1],
                self.vlans,
                Ipv4Addr::new(192, 0, 2, 1),
                Ipv4Addr::new(192, 0, 2, 2),
            ),
        }
    }

    /// The fixed L3 header the program needs in the buffer (0: none, non-IP).
    fn fixed_l3_len(&self) -> usize {
        match self.l3 {
            L3::Ip { src: IpAddr::V4(_), .. } | L3::Mangled { src: IpAddr::V4(_), .. } => IPV4_HLEN,
            L3::Ip { src: IpAddr::V6(_), .. } | L3::Mangled { src: IpAddr::V6(_), .. } => IPV6_HLEN,
            L3::Arp => 0,
        }
    }

    /// The parsing contract: what the frame cut to its first `len` bytes does.
    /// Err: the kernel refuses XDP test runs shorter than an Ethernet header.
    fn effect_truncated(&self, len: usize) -> Result<Effect, i32> {
        if len < ETH_HLEN {
            return Err(libc::EINVAL);
        }
        let tags = self.vlans.len();
        // Each walked tag must be whole to read the EtherType it ends with.
        let l3 = l3_offset(tags.min(MAX_VLAN_TAGS));
        if len < l3 || tags > MAX_VLAN_TAGS || len < l3 + self.fixed_l3_len() {
            return Ok(Effect::Unparsed);
        }
        Ok(self.effect)
    }
}

/// Test table: CN 1/8 and 2001:db8::/32, DE 2/8 and 2001:db9::/32, RU 5/8.
fn crafted_table() -> Table {
    fn net<N: std::str::FromStr<Err: std::fmt::Debug>>(s: &str, code: &[u8; 2]) -> (N, CountryId) {
        (s.parse().unwrap(), cc(code))
    }
    Table {
        v4: vec![net("1.0.0.0/8", b"CN"), net("2.0.0.0/8", b"DE"), net("5.0.0.0/8", b"RU")],
        v6: vec![net("2001:db8::/32", b"CN"), net("2001:db9::/32", b"DE")],
    }
}

/// Deny CN and RU; exceptions inside CN (blocked), DE (allowed) and no
/// country's space.
fn crafted_policy(monitor: bool) -> Policy {
    Policy {
        rules: vec![Rule { monitor, ..Rule::new(DEFAULT_RULE, Mode::Deny, [cc(b"CN"), cc(b"RU")].into()) }],
        replies: true,
        exceptions: ["1.2.3.0/24", "2.2.0.0/16", "10.9.0.0/16", "2001:db8:e::/48", "2001:db9:e::/48", "fd00::/8"]
            .iter()
            .map(|net| net.parse().unwrap())
            .collect(),
    }
}

fn crafted_cases() -> Vec<Case> {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let (cn, de, ru) = (cc(b"CN"), cc(b"DE"), cc(b"RU"));
    let case = |name: String, vlans, l3, effect| Case { name, vlans, l3, effect };
    let udp = |src: &str| L3::Ip { src: ip(src), options: 0 };
    let mut cases = vec![];
    for (tags, vlans) in [("", &[][..]), (", one 802.1Q tag", ONE_TAG), (", 802.1ad + 802.1Q tags", TWO_TAGS)] {
        for (what, src, effect) in [
            ("IPv4 from a blocked country", "1.1.1.1", Effect::Dropped(cn)),
            ("IPv4 from a second blocked country", "5.6.7.8", Effect::Dropped(ru)),
            ("IPv4 from an allowed country", "2.2.2.2", Effect::Passed(de)),
            ("IPv4 from no country", "10.0.0.1", Effect::Passed(NO_COUNTRY)),
            ("IPv4 exception inside a blocked country", "1.2.3.4", Effect::Exception),
            // An exception only shows when it overrides a drop.
            ("IPv4 exception inside an allowed country", "2.2.3.4", Effect::Passed(de)),
            ("IPv4 exception inside no country", "10.9.0.1", Effect::Passed(NO_COUNTRY)),
            ("IPv6 from a blocked country", "2001:db8::1", Effect::Dropped(cn)),
            ("IPv6 from an allowed country", "2001:db9::1", Effect::Passed(de)),
            ("IPv6 from no country", "fe80::1", Effect::Passed(NO_COUNTRY)),
            ("IPv6 exception inside a blocked country", "2001:db8:e::5", Effect::Exception),
            ("IPv6 exception inside an allowed country", "2001:db9:e::5", Effect::Passed(de)),
            ("IPv6 exception inside no country", "fd00::1", Effect::Passed(NO_COUNTRY)),
        ] {
            cases.push(case(format!("{what}{tags}"), vlans, udp(src), effect));
        }
        cases.push(case(format!("ARP{tags}"), vlans, L3::Arp, Effect::NonIp));
    }
    for src in ["1.1.1.1", "2001:db8::1"] {
        cases.push(case(format!("three VLAN tags around {src}"), THREE_TAGS, udp(src), Effect::Unparsed));
    }
    cases.push(case("ARP in three VLAN tags".into(), THREE_TAGS, L3::Arp, Effect::Unparsed));
    for ihl in 6..=15 {
        let options = L3::Ip { src: ip("1.1.1.1"), options: (ihl - 5) * 4 };
        cases.push(case(format!("IPv4 with IHL {ihl} from a blocked country"), &[], options, Effect::Dropped(cn)));
    }
    let options = L3::Ip { src: ip("2.2.2.2"), options: 40 };
    cases.push(case("IPv4 with IHL 15, two tags, allowed".into(), TWO_TAGS, options, Effect::Passed(de)));
    for ihl in 0..5u8 {
        let l3 = L3::Mangled { src: ip("1.1.1.1"), first: 0x40 | ihl };
        cases.push(case(format!("IPv4 with IHL {ihl}"), &[], l3, Effect::Unparsed));
    }
    for (what, src, first) in [
        ("IPv4 EtherType, version 6", "1.1.1.1", 0x65),
        ("IPv4 EtherType, version 0", "1.1.1.1", 0x05),
        ("IPv4 EtherType, version 15", "1.1.1.1", 0xf5),
        ("IPv6 EtherType, version 4", "2001:db8::1", 0x45),
        ("IPv6 EtherType, version 0", "2001:db8::1", 0x00),
        ("IPv6 EtherType, version 7", "2001:db8::1", 0x70),
    ] {
        let l3 = L3::Mangled { src: ip(src), first };
        cases.push(case(what.into(), &[], l3, Effect::Unparsed));
        cases.push(case(format!("{what}, one tag"), ONE_TAG, l3, Effect::Unparsed));
    }
    cases
}

#[test]
fn crafted_frames_have_their_verdict_and_exact_counter_effect() {
    let cases = crafted_cases();
    let mut checker = Checker::new(load(&crafted_table(), &crafted_policy(false), Backend::Trie));
    for case in &cases {
        checker.check(&case.name, &case.frame(), Ok(case.effect));
    }
    // Monitor mode: the same frames, every drop turned into a counted pass.
    checker.g.apply_policy(&crafted_policy(true)).expect("switching to monitor mode");
    for case in &cases {
        checker.check(&format!("monitor mode: {}", case.name), &case.frame(), Ok(case.effect.monitored()));
    }
}

#[test]
fn every_truncation_of_every_crafted_frame() {
    let mut checker = Checker::new(load(&crafted_table(), &crafted_policy(false), Backend::Trie));
    let mut runs = 0;
    for case in crafted_cases() {
        let frame = case.frame();
        for len in 0..=frame.len() {
            let what = format!("{}, cut from {} bytes", case.name, frame.len());
            checker.check(&what, &frame[..len], case.effect_truncated(len));
            runs += 1;
        }
    }
    println!("{runs} truncated frames checked");
}

// ---------------------------------------------------------------------------
// Differential: the kernel against the userspace reference
// ---------------------------------------------------------------------------

/// A world table the differential tests compare on: vendors aggregate and
/// nest their prefixes differently, which shapes the kernel's tables.
#[derive(Clone, Copy, Debug)]
enum World {
    /// The embedded DB-IP table, as `geoblock run` loads it by default.
    DbIp,
    /// GeoLite2 Country's CSV zip, as MaxMind ships it (from the registries).
    GeoLite2,
}

impl World {
    /// The table, read once for both backends (reading takes seconds).
    fn table(self) -> &'static Table {
        static TABLES: [OnceLock<Table>; 2] = [const { OnceLock::new() }; 2];
        TABLES[self as usize].get_or_init(|| match self {
            World::DbIp => geoblock::data::embedded::embedded().expect("the embedded world table"),
            World::GeoLite2 => {
                let zip = registry::geolite2_country_csv_zip();
                let (table, _) = geoblock::data::load_one(&zip, &Options::default())
                    .unwrap_or_else(|e| panic!("loading {}: {e}", zip.display()));
                table
            }
        })
    }
}

/// A world table in the kernel, loaded once per table and lookup backend
/// for all differential tests (filling the tables takes seconds).
struct Loaded {
    table: &'static Table,
    g: Geoblock,
}

fn loaded(world: World, backend: Backend) -> std::sync::MutexGuard<'static, Loaded> {
    static LOADED: [[OnceLock<Mutex<Loaded>>; 2]; 2] = [const { [const { OnceLock::new() }; 2] }; 2];
    LOADED[world as usize][backend as usize]
        .get_or_init(|| {
            let start = Instant::now();
            let table = world.table();
            let g = load(table, &differential_policy(Mode::Deny, &[], false, false), backend);
            println!(
                "{world:?} table: {} IPv4 and {} IPv6 prefixes loaded into {backend:?} in {:.1?}",
                table.v4.len(),
                table.v6.len(),
                start.elapsed()
            );
            Mutex::new(Loaded { table, g })
        })
        .lock()
        // A failed test poisons the lock; the program and table are still fine.
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Exceptions carved out of a world table: per family, the first quarter
/// of a CN prefix (an exception inside a blocked country) and the /16 (/32
/// for IPv6) around an RU prefix (an exception spanning whatever is there).
fn world_exceptions(table: &Table) -> Vec<IpNetwork> {
    let v4 = |code: &[u8; 2]| {
        let net = table.v4.iter().find(|(n, c)| *c == cc(code) && n.prefix() <= 22);
        net.unwrap_or_else(|| panic!("no IPv4 prefix of {} up to /22 in the table", code.escape_ascii())).0
    };
    let v6 = |code: &[u8; 2]| {
        let net = table.v6.iter().find(|(n, c)| *c == cc(code) && n.prefix() <= 44);
        net.unwrap_or_else(|| panic!("no IPv6 prefix of {} up to /44 in the table", code.escape_ascii())).0
    };
    let (cn4, ru4, cn6, ru6) = (v4(b"CN"), v4(b"RU"), v6(b"CN"), v6(b"RU"));
    let net = |addr: IpAddr, len: u8| {
        let net = IpNetwork::new(addr, len).unwrap();
        IpNetwork::new(net.network(), len).unwrap()
    };
    vec![
        net(cn4.network().into(), cn4.prefix() + 2),
        net(ru4.network().into(), ru4.prefix().min(16)),
        net(cn6.network().into(), cn6.prefix() + 2),
        net(ru6.network().into(), ru6.prefix().min(32)),
    ]
}

fn differential_policy(mode: Mode, codes: &[&[u8; 2]], monitor: bool, block_unknown: bool) -> Policy {
    let rule = Rule::new(DEFAULT_RULE, mode, codes.iter().map(|c| cc(c)).collect());
    Policy::from(Rule { monitor, block_unknown, ..rule })
}

/// An address family as a range of integers, for sampling.
#[derive(Clone, Copy)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn bits(self) -> u32 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    fn addr(self, x: u128) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(Ipv4Addr::from(x as u32)),
            Family::V6 => IpAddr::V6(Ipv6Addr::from(x)),
        }
    }

    /// The destination of every sampled frame.
    fn dst(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
            Family::V6 => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xd, 0, 0, 0, 0, 2)),
        }
    }

    fn mask(self) -> u128 {
        u128::MAX >> (128 - self.bits())
    }

    /// First and last address of every prefix of this family in `nets`.
    fn ranges<'a>(self, nets: impl Iterator<Item = &'a IpNetwork>) -> Vec<(u128, u128)> {
        let host_bits = |prefix: u8| self.bits() - u32::from(prefix);
        nets.filter_map(|net| {
            let first = match (self, net.network()) {
                (Family::V4, IpAddr::V4(a)) => u128::from(u32::from(a)),
                (Family::V6, IpAddr::V6(a)) => u128::from(a),
                _ => return None,
            };
            let span = u128::MAX.checked_shr(128 - host_bits(net.prefix())).unwrap_or(0);
            Some((first, first | span))
        })
        .collect()
    }
}

/// `n` addresses worth asking about: a third uniform over the family's space,
/// a third inside random prefixes, a third at their edges (first address,
/// last address, and one just outside either side). One prefix in ten is an
/// exception: there are a handful of those among a million table prefixes.
/// The others come from each of `pools` alike (the country table's, the
/// selector table's: a few thousand prefixes among a million).
fn sample(
    rng: &mut StdRng,
    family: Family,
    pools: &[Vec<(u128, u128)>],
    exceptions: &[(u128, u128)],
    n: usize,
) -> Vec<IpAddr> {
    let pools: Vec<&Vec<(u128, u128)>> = pools.iter().filter(|p| !p.is_empty()).collect();
    (0..n)
        .map(|i| {
            let pool = match rng.random_ratio(1, 10) && !exceptions.is_empty() {
                true => exceptions,
                false => pools[rng.random_range(0..pools.len())],
            };
            let (first, last) = pool[rng.random_range(0..pool.len())];
            let x = match i % 3 {
                0 => rng.random::<u128>(),
                1 => rng.random_range(first..=last),
                _ => [first, last, first.wrapping_sub(1), last.wrapping_add(1)][rng.random_range(0..4)],
            };
            family.addr(x & family.mask())
        })
        .collect()
}

/// Tallies of one differential run, for the report and the sanity checks.
#[derive(Default, Debug)]
struct Tally {
    drops: u64,
    exceptions: u64,
    unknown: u64,
    would_drops: u64,
    /// Verdicts a selector made: blocked (or would-dropped) and allowed.
    selector_blocks: u64,
    selector_allows: u64,
    /// Addresses a rule both allows and blocks by selector (the allow wins).
    contested: u64,
}

/// The selectors a differential run's policy may use: the AS data and the
/// lists the reference reads, and the selector table compiled from them
/// for the kernel.
struct Selection<'a> {
    asn: &'a AsnData,
    lists: Vec<AddressList>,
    table: SelectorTable,
}

impl Selection<'_> {
    /// No AS data, no list: what a policy of countries alone needs.
    fn none() -> Selection<'static> {
        static NO_ASN: OnceLock<AsnData> = OnceLock::new();
        let asn = NO_ASN.get_or_init(AsnData::default);
        Selection { asn, lists: vec![], table: SelectorTable::default() }
    }

    /// `selectors` compiled from `asn` and `lists`.
    fn compile<'a>(asn: &'a AsnData, lists: Vec<AddressList>, selectors: &BTreeSet<Selector>) -> Selection<'a> {
        let table = SelectorTable::compile(selectors, asn, &lists).expect("compiling the selector table");
        Selection { asn, lists, table }
    }

    /// The selectors of `policy` holding `ip`, in [`Selector`] order (as
    /// `Rule::selector_decision` takes them).
    fn held(&self, ip: IpAddr, policy: &BTreeSet<Selector>) -> Vec<Selector> {
        let mut held = selectors::memberships(ip, self.asn, &self.lists, |s| policy.contains(s));
        held.sort();
        held
    }
}

/// A table's prefixes, both families.
fn networks<L>(table: &Table<L>) -> Vec<IpNetwork> {
    let v4 = table.v4.iter().map(|(n, _)| IpNetwork::V4(*n));
    v4.chain(table.v6.iter().map(|(n, _)| IpNetwork::V6(*n))).collect()
}

/// The ids of the maps named `names` that the table program in force uses.
fn table_map_ids(g: &Geoblock, names: &[&str]) -> Vec<u32> {
    let program = g.table_program().expect("the table program");
    let ids = program.info().expect("program info").map_ids().expect("map ids").unwrap_or_default();
    let named = |id: &u32| MapInfo::from_id(*id).is_ok_and(|m| m.name_as_str().is_some_and(|n| names.contains(&n)));
    ids.into_iter().filter(named).collect()
}

/// Inbound counters of every selector that has a counter slot, by name.
fn selector_stats(g: &Geoblock) -> BTreeMap<String, CountryCounters> {
    let stats = g.stats().expect("reading the counters");
    stats.inbound.selectors.into_iter().map(|s| (s.name, s.counters)).collect()
}

/// The seed of a differential run: `GEOBLOCK_TEST_SEED`, or a random one.
fn seed() -> u64 {
    std::env::var("GEOBLOCK_TEST_SEED")
        .map(|s| s.parse().expect("GEOBLOCK_TEST_SEED: a u64"))
        .unwrap_or_else(|_| rand::rng().random())
}

/// Sends `per_family` sampled addresses of each family through the kernel,
/// holding `world`'s table, under `policy` with the selectors of
/// `selection`, and compares every verdict, then all counters, with the
/// userspace reference.
fn differential(world: World, mut policy: Policy, per_family: usize, backend: Backend, selection: &Selection) -> Tally {
    let mut loaded = loaded(world, backend);
    let Loaded { table, g } = &mut *loaded;
    policy.exceptions = world_exceptions(table);
    if !selection.table.selectors.is_empty() {
        g.load_selectors(&selection.table, &policy).expect("loading the selector table");
    }
    g.apply_policy(&policy).expect("writing the policy");
    judge(g, table, &policy, selection, per_family, &format!("{world:?} table, {backend:?} backend"))
}

/// The comparison of [`differential`] on `g`, holding `table` and in force
/// for `policy` and `selection`: verdicts, the counters of every country,
/// and those of every selector.
fn judge(
    g: &mut Geoblock,
    table: &Table,
    policy: &Policy,
    selection: &Selection,
    per_family: usize,
    what: &str,
) -> Tally {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let in_use = policy.selectors();

    let start = Instant::now();
    let (before, before_selectors) = (stats(g), selector_stats(g));
    let (mut want, mut want_selectors) = (before.clone(), before_selectors.clone());
    let mut tally = Tally::default();
    let mut mismatches = vec![];
    let mut kernel_drops = 0u64;
    let pools = [networks(table), networks(&selection.table.table)];
    for family in [Family::V4, Family::V6] {
        let pools = pools.each_ref().map(|nets| family.ranges(nets.iter()));
        let exceptions = family.ranges(policy.exceptions.iter());
        for src in sample(&mut rng, family, &pools, &exceptions, per_family) {
            let udp = Udp { src, dst: family.dst(), ..Udp::default() };
            let held = selection.held(src, &in_use);
            let verdict = policy.verdict(table, &held, src, IPPROTO_UDP, Some(udp.dst_port));
            let frame = udp.build();
            let effect = Effect::of(&verdict);
            let action = run(g, &frame);
            kernel_drops += u64::from(action == XDP_DROP);
            if action != effect.action() {
                mismatches.push((src, verdict.clone(), held.clone(), action));
            }
            effect.count(&mut want, frame.len() as u64);
            if let Verdict::Selector(_, selector, _) = &verdict {
                effect.tally(want_selectors.entry(selector.to_string()).or_default(), frame.len() as u64);
                match effect {
                    Effect::Passed(_) => tally.selector_allows += 1,
                    _ => tally.selector_blocks += 1,
                }
            }
            match effect {
                Effect::Dropped(_) => tally.drops += 1,
                Effect::WouldDrop(_) => tally.would_drops += 1,
                Effect::Exception => tally.exceptions += 1,
                _ => {}
            }
            tally.unknown += u64::from(matches!(verdict, Verdict::Country(NO_COUNTRY, _)));
            let holds = |set: &BTreeSet<Selector>| held.iter().any(|s| set.contains(s));
            tally.contested += u64::from(policy.rules.iter().any(|r| holds(&r.allow) && holds(&r.block)));
        }
    }
    let elapsed = start.elapsed();
    let context = format!("{what}, {}, seed {seed} (rerun with GEOBLOCK_TEST_SEED={seed})", describe(policy));
    if !mismatches.is_empty() {
        let mut sample = String::new();
        for (src, verdict, held, action) in mismatches.iter().take(20) {
            let prefix = table.lookup(*src).map(|(net, _)| net.to_string()).unwrap_or("none".into());
            let want = Effect::of(verdict);
            writeln!(
                sample,
                "  {src}: reference {want:?} (table prefix {prefix}, selectors {held:?}), kernel {}",
                action_name(*action)
            )
            .unwrap();
        }
        panic!("{} of {} verdicts differ; {context}; first ones:\n{sample}", mismatches.len(), 2 * per_family);
    }
    let got = stats(g);
    assert!(got == want, "counters differ from the reference's; {context}:\n{}", stats_diff(&want, &got));
    let country_drops: u64 = got.countries.values().chain([&got.unknown]).map(|c| c.dropped_packets).sum::<u64>()
        - before.countries.values().chain([&before.unknown]).map(|c| c.dropped_packets).sum::<u64>();
    assert_eq!(country_drops, kernel_drops, "per-country drop counters vs XDP_DROP verdicts; {context}");
    assert_eq!(selector_stats(g), want_selectors, "selector counters differ from the reference's; {context}");
    println!(
        "{} addresses in {elapsed:.1?} ({:.1} µs each), {tally:?}; seed {seed}",
        2 * per_family,
        elapsed.as_secs_f64() * 1e6 / (2 * per_family) as f64
    );
    tally
}

fn describe(policy: &Policy) -> String {
    format!("policy: {policy}")
}

const DENIED: [&[u8; 2]; 4] = [b"CN", b"RU", b"IR", b"US"];

#[test]
fn differential_deny_list_trie() {
    differential_deny_list(World::DbIp, Backend::Trie);
}

#[test]
fn differential_deny_list_lpm() {
    differential_deny_list(World::DbIp, Backend::Lpm);
}

#[test]
fn differential_geolite2_deny_list_trie() {
    differential_deny_list(World::GeoLite2, Backend::Trie);
}

#[test]
fn differential_geolite2_deny_list_lpm() {
    differential_deny_list(World::GeoLite2, Backend::Lpm);
}

fn differential_deny_list(world: World, backend: Backend) {
    let tally = differential(
        world,
        differential_policy(Mode::Deny, &DENIED, false, false),
        100_000,
        backend,
        &Selection::none(),
    );
    assert!(tally.drops > 0 && tally.exceptions > 0 && tally.unknown > 0, "sample too narrow: {tally:?}");
}

#[test]
fn differential_allow_list_blocking_unknown() {
    let allowed = [b"DE", b"FR", b"NL", b"JP"];
    let policy = differential_policy(Mode::Allow, &allowed, false, true);
    let tally = differential(World::DbIp, policy, 30_000, Backend::Trie, &Selection::none());
    assert!(tally.drops > 0 && tally.exceptions > 0 && tally.unknown > 0, "sample too narrow: {tally:?}");
}

#[test]
fn differential_monitor_mode() {
    let tally = differential(
        World::DbIp,
        differential_policy(Mode::Deny, &DENIED, true, true),
        30_000,
        Backend::Trie,
        &Selection::none(),
    );
    assert!(tally.drops == 0 && tally.would_drops > 0, "monitor mode: {tally:?}");
}

// ---------------------------------------------------------------------------
// Differential with selectors: ASes and a list beside the countries
// ---------------------------------------------------------------------------

/// ASes a selector rule names: 100 of the world's AS table, large and
/// small (the same ones for every test of a run).
fn selector_asns() -> &'static [Asn] {
    static ASNS: OnceLock<Vec<Asn>> = OnceLock::new();
    ASNS.get_or_init(|| selectors_data::pick_asns(selectors_data::world_asn(), 100, &mut StdRng::seed_from_u64(16)))
}

/// A list of about 1,000 entries (IPv4 /32s and /24s, IPv6 /48s), half of
/// them inside the prefixes of [`selector_asns`].
fn bad_list() -> AddressList {
    let mut rng = StdRng::seed_from_u64(17);
    selectors_data::random_list("bad", selectors_data::world_asn(), selector_asns(), 1000, &mut rng)
}

/// A rule of `mode` over `countries` that allows the ASes `allow` and
/// blocks the ASes `block` and `lists` (with `block_unknown`: also what
/// has no country).
fn selector_rule(mode: Mode, countries: &[&[u8; 2]], allow: &[Asn], block: &[Asn], lists: &[&str]) -> Rule {
    let rule = Rule::new(DEFAULT_RULE, mode, countries.iter().map(|c| cc(c)).collect());
    let lists = lists.iter().map(|name| Selector::List(name.to_string()));
    Rule {
        allow: allow.iter().map(|&a| Selector::Asn(a)).collect(),
        block: block.iter().map(|&a| Selector::Asn(a)).chain(lists).collect(),
        block_unknown: mode == Mode::Allow,
        ..rule
    }
}

/// Countries, 100 ASes and the list in one rule: 10 ASes allowed, which
/// wins over the list (an address has one AS: an allowed AS never meets a
/// blocked one) and over the countries; 90 blocked with the list.
fn differential_selectors(mode: Mode, countries: &[&[u8; 2]], per_family: usize, backend: Backend) {
    let asns = selector_asns();
    let allowed: Vec<Asn> = asns.iter().step_by(10).copied().collect();
    let blocked: Vec<Asn> = asns.iter().filter(|a| !allowed.contains(a)).copied().collect();
    let policy = Policy::from(selector_rule(mode, countries, &allowed, &blocked, &["bad"]));
    let selection = Selection::compile(selectors_data::world_asn(), vec![bad_list()], &policy.selectors());
    let tally = differential(World::DbIp, policy, per_family, backend, &selection);
    assert!(
        tally.selector_blocks > 0 && tally.selector_allows > 0 && tally.contested > 0,
        "sample too narrow: {tally:?}"
    );
    assert!(tally.drops > tally.selector_blocks && tally.exceptions > 0, "sample too narrow: {tally:?}");
}

#[test]
fn differential_selectors_deny_list_trie() {
    differential_selectors(Mode::Deny, &DENIED, 100_000, Backend::Trie);
}

#[test]
fn differential_selectors_deny_list_lpm() {
    differential_selectors(Mode::Deny, &DENIED, 30_000, Backend::Lpm);
}

#[test]
fn differential_selectors_allow_list() {
    differential_selectors(Mode::Allow, &[b"DE", b"FR", b"NL", b"JP"], 30_000, Backend::Trie);
}

/// Changing which selectors the rules use swaps the selector table alone:
/// the country tries stay the same maps, and every verdict (country and
/// selector) and counter still agrees with the reference. A policy that
/// needs a selector the table in force was not compiled with is refused,
/// and the policy in force stays.
#[test]
fn a_selector_change_swaps_the_selector_table_alone() {
    let table = World::DbIp.table();
    let asns = selector_asns();
    let exceptions = world_exceptions(table);
    let policy = |block: &[Asn], lists: &[&str]| Policy {
        exceptions: exceptions.clone(),
        ..Policy::from(selector_rule(Mode::Deny, &DENIED, &asns[90..], block, lists))
    };
    let (first, second) = (policy(&asns[..60], &["bad"]), policy(&asns[30..90], &[]));
    let asn = selectors_data::world_asn();
    let first_selection = Selection::compile(asn, vec![bad_list()], &first.selectors());
    let mut g = Geoblock::load(Backend::Trie).expect("loading the XDP program (these tests need root)");
    g.load_table_with_selectors(table, &first_selection.table, &first).expect("loading the tables");
    g.apply_policy(&first).expect("writing the policy");
    judge(&mut g, table, &first, &first_selection, 20_000, "first selectors");

    let countries = table_map_ids(&g, &[maps::GEO_V4, maps::GEO_V6]);
    let selector_tries = table_map_ids(&g, &[maps::SELECTORS_V4, maps::SELECTORS_V6]);
    // Compiled for both policies, as the daemon does for a change.
    let both = Selection::compile(asn, vec![bad_list()], &(&first.selectors() | &second.selectors()));
    g.load_selectors(&both.table, &second).expect("swapping the selector table");
    g.apply_policy(&second).expect("writing the second policy");
    assert_eq!(table_map_ids(&g, &[maps::GEO_V4, maps::GEO_V6]), countries, "the country tries were replaced");
    assert_ne!(table_map_ids(&g, &[maps::SELECTORS_V4, maps::SELECTORS_V6]), selector_tries, "no new selector tries");
    judge(&mut g, table, &second, &both, 20_000, "after the swap");

    let outside = asns.iter().map(|a| a + 1).find(|a| !asns.contains(a)).unwrap();
    let third = policy(&[outside], &[]);
    assert!(
        matches!(g.apply_policy(&third), Err(geoblock::Error::SelectorsNotLoaded)),
        "a policy blocking AS{outside}, which the selector table does not hold, was not refused"
    );
    judge(&mut g, table, &second, &both, 5_000, "after the refused policy");
}

// ---------------------------------------------------------------------------
// Overlapping prefixes: longest match wins in every backend
// ---------------------------------------------------------------------------

/// Sources (GeoIP CIDR lists among them) may nest a country's prefix inside
/// another's. Both backends must answer as a longest-prefix match would:
/// nested IPv4 and IPv6 prefixes of random countries, every boundary address
/// and random ones, under random blocked sets.
#[test]
fn overlapping_prefixes_answer_as_longest_prefix_match() {
    let mut rng = StdRng::seed_from_u64(11);
    let v4: Vec<(ipnetwork::Ipv4Network, CountryId)> = (0..60)
        .map(|_| {
            let len = rng.random_range(8..=32u8);
            let net = ipnetwork::Ipv4Network::new(Ipv4Addr::from(0x0a00_0000 | rng.random_range(0..1u32 << 18)), len)
                .unwrap();
            (ipnetwork::Ipv4Network::new(net.network(), len).unwrap(), rng.random_range(1..100))
        })
        .collect();
    let v6: Vec<(ipnetwork::Ipv6Network, CountryId)> = (0..60)
        .map(|_| {
            let len = rng.random_range(16..=128u8);
            let addr = 0x2001_0db8u128 << 96 | u128::from(rng.random::<u64>()) << 40;
            let net = ipnetwork::Ipv6Network::new(Ipv6Addr::from(addr), len).unwrap();
            (ipnetwork::Ipv6Network::new(net.network(), len).unwrap(), rng.random_range(1..100))
        })
        .collect();
    let mut unique = BTreeSet::new();
    let table = Table {
        v4: v4.into_iter().filter(|(n, _)| unique.insert(IpNetwork::V4(*n))).collect(),
        v6: v6.into_iter().filter(|(n, _)| unique.insert(IpNetwork::V6(*n))).collect(),
    };
    let lpm = |ip: IpAddr| {
        let nets = table.v4.iter().map(|(n, c)| (IpNetwork::V4(*n), *c));
        let nets = nets.chain(table.v6.iter().map(|(n, c)| (IpNetwork::V6(*n), *c)));
        nets.filter(|(n, _)| n.contains(ip)).max_by_key(|(n, _)| n.prefix()).map_or(NO_COUNTRY, |(_, c)| c)
    };
    let mut sources: Vec<IpAddr> = vec![];
    for net in &unique {
        let (first, last) = (net.network(), net.broadcast());
        sources.extend([first, last]);
        sources.extend(neighbour(first, -1));
        sources.extend(neighbour(last, 1));
    }
    for backend in [Backend::Trie, Backend::Lpm] {
        for round in 0..4 {
            let blocked: Vec<CountryId> = (1..100).filter(|_| rng.random_bool(0.5)).collect();
            let rule = Rule::new(DEFAULT_RULE, Mode::Deny, blocked.iter().copied().collect());
            let policy = Policy::from(Rule { block_unknown: round % 2 == 1, ..rule });
            let mut g = load(&table, &policy, backend);
            for &src in &sources {
                let dst = if src.is_ipv4() { Family::V4.dst() } else { Family::V6.dst() };
                let want = match policy.rules[0].action(lpm(src)) {
                    Action::Drop => XDP_DROP,
                    _ => XDP_PASS,
                };
                let got = run(&mut g, &Udp { src, dst, ..Udp::default() }.build());
                assert_eq!(got, want, "{backend:?}: {src} (longest match {:?})", country::code(lpm(src)));
            }
        }
    }
}

/// The address `step` (±1) away, if there is one.
fn neighbour(ip: IpAddr, step: i8) -> Option<IpAddr> {
    match ip {
        IpAddr::V4(a) => u32::from(a).checked_add_signed(step.into()).map(|a| Ipv4Addr::from(a).into()),
        IpAddr::V6(a) => u128::from(a).checked_add_signed(step.into()).map(|a| Ipv6Addr::from(a).into()),
    }
}

// ---------------------------------------------------------------------------
// Sampled drop events
// ---------------------------------------------------------------------------

/// Every record in the events ring buffer.
fn drain_events(ring: &mut EventRing) -> Vec<DropEvent> {
    let mut events = vec![];
    ring.drain(|event| events.push(*event));
    events
}

fn udp(src: &str, vlans: &'static [(u16, u16)], payload: &'static [u8]) -> Vec<u8> {
    Udp { src: src.parse().unwrap(), dst: "192.0.2.2".parse().unwrap(), vlans, payload, ..Udp::default() }.build()
}

#[test]
fn drops_and_would_drops_are_sampled_with_their_frame() {
    let mut g = load(&crafted_table(), &crafted_policy(false), Backend::Trie);
    g.set_event_rate(1000).expect("configuring events");
    let mut ring = g.take_events().expect("the events ring buffer");
    let short = udp("1.1.1.1", ONE_TAG, b"short");
    let (src, dst) = ("2001:db8::1".parse().unwrap(), "2001:db9::2".parse().unwrap());
    let long = Udp { src, dst, vlans: TWO_TAGS, payload: &[7; 300], ..Udp::default() }.build();
    assert_eq!(run(&mut g, &udp("2.2.2.2", &[], b"passed")), XDP_PASS);
    assert_eq!(run(&mut g, &udp("1.2.3.4", &[], b"exception")), XDP_PASS);
    assert_eq!(run(&mut g, &short), XDP_DROP);
    assert_eq!(run(&mut g, &long), XDP_DROP);
    g.apply_policy(&crafted_policy(true)).expect("monitor mode");
    assert_eq!(run(&mut g, &short), XDP_PASS);

    let events = drain_events(&mut ring);
    assert_eq!(events.len(), 3, "passes and exceptions are not sampled: {events:?}");
    let expected = [(&short, Action::Drop), (&long, Action::Drop), (&short, Action::WouldDrop)];
    for (event, (frame, action)) in events.iter().zip(expected) {
        let captured = frame.len().min(EVENT_SNAPLEN);
        assert_eq!((event.country, event.action), (cc(b"CN"), action as u8));
        assert_eq!((event.frame_len as usize, event.captured as usize), (frame.len(), captured));
        assert_eq!(&event.frame[..captured], &frame[..captured]);
        assert!(event.timestamp_ns > 0);
    }
    let decoded =
        decode(&events[1], &WallClock::now(), &crafted_policy(false), |_| None).expect("decoding the IPv6 event");
    assert_eq!((decoded.src, decoded.dst), (src, dst));
    assert_eq!((decoded.src_port, decoded.dst_port, decoded.protocol), (Some(40000), Some(5555), 17));
    assert_eq!((decoded.country.as_deref(), decoded.reason), (Some("CN"), Reason::BlockedCountry));
    let counts = g.event_counts().expect("event counters");
    assert_eq!(counts, EventCounts { emitted: 3, suppressed: 0, lost: 0 });
}

#[test]
fn the_token_bucket_limits_events_and_counts_the_rest() {
    let mut g = load(&crafted_table(), &crafted_policy(false), Backend::Trie);
    let mut ring = g.take_events().expect("the events ring buffer");
    let frame = udp("5.6.7.8", &[], b"flood");
    // Off (the default of a program no daemon configured): nothing sampled or counted.
    g.set_event_rate(0).expect("events off");
    for _ in 0..100 {
        assert_eq!(run(&mut g, &frame), XDP_DROP);
    }
    assert!(drain_events(&mut ring).is_empty());
    assert_eq!(g.event_counts().unwrap(), EventCounts::default());

    let rate = 2;
    g.set_event_rate(rate).expect("configuring events");
    let started = Instant::now();
    let floods = 2000;
    for _ in 0..floods {
        assert_eq!(run(&mut g, &frame), XDP_DROP, "the packet path is unchanged");
    }
    let cpus = aya::util::nr_cpus().unwrap() as u64;
    let bound = u64::from(rate).max(cpus) + (started.elapsed().as_secs_f64() * f64::from(rate)).ceil() as u64;
    let events = drain_events(&mut ring);
    let counts = g.event_counts().unwrap();
    assert!(!events.is_empty() && events.len() as u64 <= bound, "{} events, at most {bound} allowed", events.len());
    assert!(events.iter().all(|e| e.country == cc(b"RU")));
    assert_eq!(counts, EventCounts { emitted: events.len() as u64, suppressed: floods - events.len() as u64, lost: 0 });
}

// ---------------------------------------------------------------------------
// Rules: the protocol and destination port pick the rule
// ---------------------------------------------------------------------------

fn rule(name: &str, protocol: Protocol, ports: &[(u16, u16)], mode: Mode, codes: &[&[u8; 2]]) -> Rule {
    Rule {
        protocol,
        ports: ports.iter().map(|&(first, last)| PortRange { first, last }).collect(),
        ..Rule::new(name, mode, codes.iter().map(|c| cc(c)).collect())
    }
}

/// ssh: tcp/22 only from DE; dns: udp/53 closed to CN; web: tcp/80,443
/// closed to RU; ping: ICMP closed to CN; with `catch_all`, then everything
/// else closed to CN.
fn rules_policy(catch_all: bool) -> Policy {
    let mut rules = vec![
        rule("ssh", Protocol::Tcp, &[(22, 22)], Mode::Allow, &[b"DE"]),
        rule("dns", Protocol::Udp, &[(53, 53)], Mode::Deny, &[b"CN"]),
        rule("web", Protocol::Tcp, &[(80, 80), (443, 443)], Mode::Deny, &[b"RU"]),
        rule("ping", Protocol::Icmp, &[], Mode::Deny, &[b"CN"]),
    ];
    if catch_all {
        rules.push(rule("rest", Protocol::Any, &[], Mode::Deny, &[b"CN"]));
    }
    Policy { rules, exceptions: vec![], replies: true }
}

/// A frame for the rules, and what the program needs of it.
struct RuleCase {
    name: String,
    frame: Vec<u8>,
    /// Bytes the walk to the L4 header reads: fewer, the frame is unparsed.
    walk: usize,
    /// Where the destination port ends, if the rule may depend on it
    /// (a TCP, UDP or SCTP packet that is not a later fragment).
    ports_end: Option<usize>,
    /// The IP protocol, for the rule of a packet whose ports are cut.
    protocol: u8,
    country: CountryId,
}

const L3: usize = ETH_HLEN;

impl RuleCase {
    /// The effect of the frame cut to `len` bytes under `policy`.
    fn effect(&self, policy: &Policy, len: usize) -> Result<Effect, i32> {
        if len < ETH_HLEN {
            return Err(libc::EINVAL);
        }
        if len < self.walk {
            return Ok(Effect::Unparsed);
        }
        let port = match self.ports_end {
            Some(end) if len >= end => Some(u16::from_be_bytes([self.frame[end - 2], self.frame[end - 1]])),
            // The rules tell this protocol's ports apart: without them the
            // packet cannot be judged (the kernel rejects a cut header).
            Some(_) if tells_ports_apart(policy, self.protocol) => return Ok(Effect::Hidden),
            _ => None,
        };
        let action = policy
            .rule_for(Direction::Inbound, self.protocol, port)
            .map_or(Action::Pass, |r| policy.rules[r].action(self.country));
        Ok(match action {
            Action::Drop => Effect::Dropped(self.country),
            _ => Effect::Passed(self.country),
        })
    }
}

/// Whether `protocol`'s ports fall under more than one rule.
fn tells_ports_apart(policy: &Policy, protocol: u8) -> bool {
    let first = policy.rule_for(Direction::Inbound, protocol, Some(0));
    (1..=u16::MAX).any(|port| policy.rule_for(Direction::Inbound, protocol, Some(port)) != first)
}

/// `l4` of `protocol` from `src` to the host, in IPv6 with the extension
/// headers `exts` before it, in an Ethernet frame.
fn ipv6_with(src: IpAddr, exts: &[(u8, Vec<u8>)], protocol: u8, l4: &[u8]) -> Vec<u8> {
    let packet = ipv6_extended(src, host(src), exts, protocol, l4);
    ethernet([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1], &[], ETH_P_IPV6, &packet)
}

/// The receiving host, in `src`'s family.
fn host(src: IpAddr) -> IpAddr {
    match src {
        IpAddr::V4(_) => Family::V4.dst(),
        IpAddr::V6(_) => Family::V6.dst(),
    }
}

fn rule_cases() -> Vec<RuleCase> {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let (cn, de, ru) = (cc(b"CN"), cc(b"DE"), cc(b"RU"));
    let syn = |src: IpAddr, port| tcp_segment(src, host(src), (40000, port), TCP_SYN, (1, 0), b"");
    let udp = |src: IpAddr, port| udp_segment(src, host(src), 40000, port, b"geoblock");
    let sctp = |port: u16| [&40000u16.to_be_bytes()[..], &port.to_be_bytes(), &[0; 8]].concat();
    let v4 = |src: IpAddr, options: usize, protocol, l4: &[u8]| {
        let (kind, packet) = ip_packet(src, host(src), options, protocol, l4);
        ethernet([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1], &[], kind, &packet)
    };
    let mut cases = Vec::new();
    let mut add = |name: &str, frame: Vec<u8>, walk: usize, l4: Option<usize>, protocol, country| {
        let ports_end = l4.map(|at| at + L4_DST_PORT + 2);
        cases.push(RuleCase { name: name.into(), frame, walk, ports_end, protocol, country });
    };
    for (family, cn_src, de_src) in
        [("IPv4", ip("1.1.1.1"), ip("2.2.2.2")), ("IPv6", ip("2001:db8::1"), ip("2001:db9::1"))]
    {
        let (walk, l4) = match family {
            "IPv4" => (L3 + IPV4_HLEN, L3 + IPV4_HLEN),
            _ => (L3 + IPV6_HLEN, L3 + IPV6_HLEN),
        };
        let frame = |src: IpAddr, protocol, l4: &[u8]| match src {
            IpAddr::V4(_) => v4(src, 0, protocol, l4),
            IpAddr::V6(_) => ipv6_with(src, &[], protocol, l4),
        };
        add(
            &format!("{family} CN to tcp/22 (ssh: DE only)"),
            frame(cn_src, IPPROTO_TCP, &syn(cn_src, 22)),
            walk,
            Some(l4),
            IPPROTO_TCP,
            cn,
        );
        add(
            &format!("{family} DE to tcp/22"),
            frame(de_src, IPPROTO_TCP, &syn(de_src, 22)),
            walk,
            Some(l4),
            IPPROTO_TCP,
            de,
        );
        add(
            &format!("{family} CN to tcp/80 (web: RU closed)"),
            frame(cn_src, IPPROTO_TCP, &syn(cn_src, 80)),
            walk,
            Some(l4),
            IPPROTO_TCP,
            cn,
        );
        add(
            &format!("{family} CN to udp/53 (dns: CN closed)"),
            frame(cn_src, IPPROTO_UDP, &udp(cn_src, 53)),
            walk,
            Some(l4),
            IPPROTO_UDP,
            cn,
        );
        add(
            &format!("{family} CN to udp/54 (no rule)"),
            frame(cn_src, IPPROTO_UDP, &udp(cn_src, 54)),
            walk,
            Some(l4),
            IPPROTO_UDP,
            cn,
        );
        add(
            &format!("{family} CN to sctp/22 (ssh is tcp)"),
            frame(cn_src, IPPROTO_SCTP, &sctp(22)),
            walk,
            Some(l4),
            IPPROTO_SCTP,
            cn,
        );
        let echo = icmp_echo(cn_src, host(cn_src), false, 7, 1, b"ping");
        let icmp = if family == "IPv4" { IPPROTO_ICMP } else { IPPROTO_ICMPV6 };
        add(&format!("{family} CN echo request (ping: CN closed)"), frame(cn_src, icmp, &echo), walk, None, icmp, cn);
    }
    let ru4 = ip("5.6.7.8");
    let frame = v4(ru4, 0, IPPROTO_TCP, &syn(ru4, 443));
    add("IPv4 RU to tcp/443", frame, L3 + IPV4_HLEN, Some(L3 + IPV4_HLEN), IPPROTO_TCP, ru);
    let cn4 = ip("1.1.1.1");
    for options in [4, 40] {
        let frame = v4(cn4, options, IPPROTO_TCP, &syn(cn4, 22));
        let l4 = L3 + IPV4_HLEN + options;
        add(
            &format!("IPv4 with {options} bytes of options, CN to tcp/22"),
            frame,
            L3 + IPV4_HLEN,
            Some(l4),
            IPPROTO_TCP,
            cn,
        );
    }
    let mut first = v4(cn4, 0, IPPROTO_TCP, &syn(cn4, 22));
    first[L3 + IPV4_FRAG_OFF] = 0x20; // more fragments, offset 0
    add("IPv4 first fragment, CN to tcp/22", first, L3 + IPV4_HLEN, Some(L3 + IPV4_HLEN), IPPROTO_TCP, cn);
    let mut later = v4(cn4, 0, IPPROTO_TCP, &syn(cn4, 22));
    later[L3 + IPV4_FRAG_OFF..L3 + IPV4_FRAG_OFF + 2].copy_from_slice(&185u16.to_be_bytes());
    add("IPv4 later fragment of CN tcp", later, L3 + IPV4_HLEN, None, IPPROTO_TCP, cn);
    let cn6 = ip("2001:db8::1");
    let chain = [ext(IPPROTO_HOPOPTS), ext(IPPROTO_DSTOPTS), ext(IPPROTO_ROUTING), ext(IPPROTO_DSTOPTS)];
    let l4 = L3 + IPV6_HLEN + 32;
    let frame = ipv6_with(cn6, &chain, IPPROTO_TCP, &syn(cn6, 22));
    add("IPv6 hop-by-hop, dst opts, routing, dst opts, CN to tcp/22", frame, l4 - 8 + 3, Some(l4), IPPROTO_TCP, cn);
    let frame = ipv6_with(cn6, &[ext(IPPROTO_HOPOPTS), fragment(0)], IPPROTO_TCP, &syn(cn6, 22));
    let l4 = L3 + IPV6_HLEN + 16;
    add("IPv6 first fragment, CN to tcp/22", frame, l4 - 8 + 4, Some(l4), IPPROTO_TCP, cn);
    let frame = ipv6_with(cn6, &[fragment(185)], IPPROTO_TCP, &syn(cn6, 22));
    add("IPv6 later fragment of CN tcp", frame, L3 + IPV6_HLEN + 4, None, IPPROTO_TCP, cn);
    let eight = vec![ext(IPPROTO_DSTOPTS); MAX_IPV6_EXT_HEADERS];
    let l4 = L3 + IPV6_HLEN + 8 * MAX_IPV6_EXT_HEADERS;
    let frame = ipv6_with(cn6, &eight, IPPROTO_TCP, &syn(cn6, 22));
    add("IPv6 with 8 extension headers, CN to tcp/22", frame, l4 - 8 + 3, Some(l4), IPPROTO_TCP, cn);
    cases
}

#[test]
fn the_protocol_and_port_pick_the_rule_on_crafted_frames_and_every_truncation() {
    for catch_all in [false, true] {
        let policy = rules_policy(catch_all);
        let mut checker = Checker::new(load(&crafted_table(), &policy, Backend::Trie));
        let mut by_rule: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
        for case in rule_cases() {
            let effect = case.effect(&policy, case.frame.len()).unwrap();
            checker.check(&format!("{} (catch-all {catch_all})", case.name), &case.frame, Ok(effect));
            let port = case.ports_end.map(|end| u16::from_be_bytes([case.frame[end - 2], case.frame[end - 1]]));
            let name =
                policy.rule_for(Direction::Inbound, case.protocol, port).map_or("(none)", |r| &policy.rules[r].name);
            let slot = by_rule.entry(name.to_string()).or_default();
            match effect {
                Effect::Dropped(_) => slot.0 += 1,
                _ => slot.1 += 1,
            }
        }
        let stats = checker.g.stats().expect("the counters").inbound;
        for counts in
            stats.rules.iter().map(|r| (&r.name, r.families)).chain([(&"(none)".to_string(), stats.unmatched)])
        {
            let (name, f) = counts;
            let got = (f.ipv4.dropped_packets + f.ipv6.dropped_packets, f.ipv4.passed_packets + f.ipv6.passed_packets);
            assert_eq!(got, by_rule.get(name.as_str()).copied().unwrap_or_default(), "rule {name}: (dropped, passed)");
        }
        for case in rule_cases() {
            for len in 0..case.frame.len() {
                let what = format!("{}, cut to {len} of {} bytes (catch-all {catch_all})", case.name, case.frame.len());
                checker.check(&what, &case.frame[..len], case.effect(&policy, len));
            }
        }
    }
}

/// An options header of `bytes` (a multiple of 8, at most 2048) of `kind`.
fn long_ext(kind: u8, bytes: usize) -> (u8, Vec<u8>) {
    let mut h = vec![0; bytes];
    h[1] = (bytes / 8 - 1) as u8;
    (kind, h)
}

#[test]
fn an_ipv6_header_chain_too_long_to_judge_is_dropped() {
    let mut checker = Checker::new(load(&crafted_table(), &rules_policy(false), Backend::Trie));
    let src: IpAddr = "2001:db9::1".parse().unwrap();
    let nine = vec![ext(IPPROTO_DSTOPTS); MAX_IPV6_EXT_HEADERS + 1];
    let l4 = tcp_segment(src, host(src), (40000, 22), TCP_SYN, (1, 0), b"");
    let frame = ipv6_with(src, &nine, IPPROTO_TCP, &l4);
    assert_eq!(run(&mut checker.g, &frame), XDP_DROP, "9 extension headers: dropped, even from an allowed country");
    assert_eq!(stats(&checker.g).totals.unparsed.packets, 1, "counted as unparsed");
    // Two long headers push TCP past what the program judges (byte 1024).
    let long = [long_ext(IPPROTO_HOPOPTS, 512), long_ext(IPPROTO_ROUTING, 2048), ext(IPPROTO_DSTOPTS)];
    let frame = ipv6_with(src, &long, IPPROTO_TCP, &l4);
    assert_eq!(run(&mut checker.g, &frame), XDP_DROP, "TCP at byte {}: dropped", 14 + 40 + 512 + 2048 + 8);
    let fits = [long_ext(IPPROTO_HOPOPTS, 512), long_ext(IPPROTO_ROUTING, 448)];
    let frame = ipv6_with(src, &fits, IPPROTO_TCP, &l4);
    assert_eq!(run(&mut checker.g, &frame), XDP_PASS, "TCP at byte 1014 from DE to tcp/22: judged, and passed");
    assert_eq!(stats(&checker.g).totals.unparsed.packets, 2, "counted as unparsed");
}

// ---------------------------------------------------------------------------
// Replies: frames that answer flows the host opened
// ---------------------------------------------------------------------------

/// Ports of the flows [`record_flows`] writes.
const TCP_LOCAL: u16 = 40000;
const UDP_LOCAL: u16 = 40001;
const EXPIRED_LOCAL: u16 = 40002;
const SCTP_LOCAL: u16 = 40003;
const ECHO_ID: u16 = 77;

/// A reply case: a frame from a remote end (or a router) to this host,
/// its effect with the flows of [`record_flows`] under [`crafted_policy`],
/// and how much of it the flow lookup reads.
struct ReplyCase {
    name: String,
    frame: Vec<u8>,
    effect: Effect,
    /// The frame's length up to the end of the last field the lookup
    /// reads: shorter, the packet cannot be told a reply (and is dropped).
    /// A one-byte field counts with the byte after it, as the program
    /// reads it (see `read` in geoblock-ebpf's frame.rs).
    needs: usize,
}

impl ReplyCase {
    /// The parsing contract for the frame cut to `len` bytes: what cannot
    /// hold the whole flow key is no reply, and is dropped as its country's.
    fn effect_truncated(&self, len: usize) -> Result<Effect, i32> {
        if len < ETH_HLEN {
            return Err(libc::EINVAL);
        }
        let fixed = match self.frame[ETH_HLEN] >> 4 {
            4 => IPV4_HLEN,
            _ => IPV6_HLEN,
        };
        match self.effect {
            _ if len < ETH_HLEN + fixed => Ok(Effect::Unparsed),
            Effect::Reply if len < self.needs => Ok(Effect::Dropped(cc(b"CN"))),
            effect => Ok(effect),
        }
    }
}

/// The flows the host opened, for `remote` (CN) in each family: a TCP
/// connection from port 40000 to 443, a UDP flow from 40001 to 53, an
/// SCTP association from 40003 to 5000, a ping
/// with identifier 77, and a UDP flow from 40002 to 123 whose last packet
/// is older than the UDP timeout. Also a TCP flow to an exception's
/// address and to a DE address, whose frames never reach the lookup.
fn record_flows(g: &mut Geoblock) {
    let now = coarse_now();
    let udp_timeout = geoblock_common::FLOW_TIMEOUT_UDP_NS;
    assert!(now > udp_timeout + 1_000_000_000, "the machine is up for less than the UDP timeout: cannot age a flow");
    let mut add = |remote: &str, (remote_port, local_port), protocol, seen| {
        let key = FlowKey { remote: flow_address(remote), remote_port, local_port, protocol, _pad: [0; 3] };
        g.record_flow(&key, seen).expect("recording a flow");
    };
    for (remote, icmp) in [("1.1.1.1", IPPROTO_ICMP), ("2001:db8::1", IPPROTO_ICMPV6)] {
        add(remote, (443, TCP_LOCAL), IPPROTO_TCP, now);
        add(remote, (53, UDP_LOCAL), IPPROTO_UDP, now);
        add(remote, (5000, SCTP_LOCAL), IPPROTO_SCTP, now);
        add(remote, (0, ECHO_ID), icmp, now);
        add(remote, (123, EXPIRED_LOCAL), IPPROTO_UDP, now - udp_timeout - 1_000_000_000);
    }
    for remote in ["1.2.3.4", "2.2.2.2", "2001:db8:e::5", "2001:db9::1"] {
        add(remote, (443, TCP_LOCAL), IPPROTO_TCP, now);
    }
}

/// An address as flows name it (IPv4 mapped into IPv6).
fn flow_address(addr: &str) -> [u8; 16] {
    match addr.parse::<IpAddr>().unwrap() {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// CLOCK_MONOTONIC_COARSE, the flows' clock, in ns.
fn coarse_now() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec to fill.
    assert_eq!(unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) }, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn reply_cases() -> Vec<ReplyCase> {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let (cn, de) = (cc(b"CN"), cc(b"DE"));
    let mut cases = vec![];
    for (remote, stranger, router, exception, allowed) in [
        ("1.1.1.1", "1.1.1.2", "1.9.9.9", "1.2.3.4", "2.2.2.2"),
        ("2001:db8::1", "2001:db8::2", "2001:db8:9::9", "2001:db8:e::5", "2001:db9::1"),
    ] {
        let (remote, stranger, router) = (ip(remote), ip(stranger), ip(router));
        // This host's address.
        let me = host(remote);
        let v4 = remote.is_ipv4();
        let l4 = ETH_HLEN + if v4 { IPV4_HLEN } else { IPV6_HLEN };
        let frame = |src: IpAddr, protocol, segment: Vec<u8>| {
            frames::ip_frame([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], src, host(src), protocol, &segment)
        };
        let tcp = |src, ports, flags| frame(src, IPPROTO_TCP, tcp_segment(src, me, ports, flags, (1, 1), b"data"));
        let udp = |src, (sport, dport)| frame(src, IPPROTO_UDP, udp_segment(src, me, sport, dport, b"data"));
        let echo = |src, reply, id| frame(src, icmp_protocol(src), icmp_echo(src, me, reply, id, 1, b"data"));
        // What the host sent, quoted by an error: an IPv4 header of
        // `options` bytes of options (IPv6: none).
        let quoted = |protocol, options, segment: Vec<u8>| frames::ip_packet(me, remote, options, protocol, &segment).1;
        let quoted_udp = |dport, options| quoted(IPPROTO_UDP, options, udp_segment(me, remote, UDP_LOCAL, dport, b"q"));
        let quoted_tcp = quoted(IPPROTO_TCP, 0, tcp_segment(me, remote, (TCP_LOCAL, 443), TCP_ACK, (1, 1), b"q"));
        let quoted_echo = quoted(icmp_protocol(remote), 0, icmp_echo(me, remote, false, ECHO_ID, 1, b"q"));
        let error = |kind, quoted: &[u8]| {
            frame(router, icmp_protocol(router), icmp_message(router, me, kind, [0, 0, 5, 20], quoted))
        };
        // Where the L4 header of an error's quote starts.
        let quoted_l4 = l4 + 8 + if v4 { IPV4_HLEN } else { IPV6_HLEN };
        let (reply, dropped) = (Effect::Reply, Effect::Dropped(cn));
        let family = if v4 { "IPv4" } else { "IPv6" };
        let mut add = |what: &str, frame: Vec<u8>, effect, needs| {
            cases.push(ReplyCase { name: format!("{family}: {what}"), frame, effect, needs });
        };
        let (flow_tcp, flow_udp) = ((443, TCP_LOCAL), (53, UDP_LOCAL));
        add("TCP SYN-ACK of the host's connection", tcp(remote, flow_tcp, TCP_SYN | TCP_ACK), reply, l4 + 15);
        add("TCP ACK with data on it", tcp(remote, flow_tcp, TCP_ACK), reply, l4 + 15);
        add("TCP RST on it", tcp(remote, flow_tcp, TCP_RST), reply, l4 + 15);
        add("TCP bare SYN on its very ports", tcp(remote, flow_tcp, TCP_SYN), dropped, 0);
        add("TCP ACK from another remote port", tcp(remote, (444, TCP_LOCAL), TCP_ACK), dropped, 0);
        add("TCP ACK to another local port", tcp(remote, (443, 40009), TCP_ACK), dropped, 0);
        add("TCP ACK from another address of the country", tcp(stranger, flow_tcp, TCP_ACK), dropped, 0);
        add("UDP reply", udp(remote, flow_udp), reply, l4 + 4);
        add("UDP from another remote port", udp(remote, (54, UDP_LOCAL)), dropped, 0);
        add("UDP on the TCP connection's ports", udp(remote, flow_tcp), dropped, 0);
        add("UDP reply to an expired flow", udp(remote, (123, EXPIRED_LOCAL)), dropped, 0);
        // SCTP's common header: ports, verification tag, checksum (which
        // the program does not read).
        let sctp = |(sport, dport): (u16, u16)| {
            let header = [sport.to_be_bytes(), dport.to_be_bytes(), [0; 2], [0; 2], [0; 2], [0; 2]].concat();
            frame(remote, IPPROTO_SCTP, header)
        };
        add("SCTP reply", sctp((5000, SCTP_LOCAL)), reply, l4 + 4);
        add("SCTP from another remote port", sctp((5001, SCTP_LOCAL)), dropped, 0);
        add("echo reply with the ping's identifier", echo(remote, true, ECHO_ID), reply, l4 + 6);
        add("echo reply with another identifier", echo(remote, true, ECHO_ID + 1), dropped, 0);
        add("echo request with the ping's identifier", echo(remote, false, ECHO_ID), dropped, 0);
        add("TCP ACK from an exception, with a flow", tcp(ip(exception), flow_tcp, TCP_ACK), Effect::Exception, 0);
        add("TCP ACK from an allowed country, with a flow", tcp(ip(allowed), flow_tcp, TCP_ACK), Effect::Passed(de), 0);
        let (too_big, unreachable, time_exceeded, parameter, redirect) = match v4 {
            true => ((3, 4), (3, 3), (11, 0), (12, 0), (5, 1)),
            false => ((2, 0), (1, 4), (3, 0), (4, 0), (137, 0)),
        };
        add("too big, quoting the UDP flow", error(too_big, &quoted_udp(53, 0)), reply, quoted_l4 + 4);
        add("unreachable, quoting the TCP connection", error(unreachable, &quoted_tcp), reply, quoted_l4 + 4);
        add("time exceeded, quoting the ping", error(time_exceeded, &quoted_echo), reply, quoted_l4 + 6);
        add("parameter problem, quoting the UDP flow", error(parameter, &quoted_udp(53, 0)), reply, quoted_l4 + 4);
        add("too big, quoting a flow the host never opened", error(too_big, &quoted_udp(54, 0)), dropped, 0);
        add(
            "too big, quoting the expired flow",
            error(too_big, &quoted(IPPROTO_UDP, 0, udp_segment(me, remote, EXPIRED_LOCAL, 123, b"q"))),
            dropped,
            0,
        );
        add("a redirect quoting the UDP flow", error(redirect, &quoted_udp(53, 0)), dropped, 0);
        add(
            "too big, quoting the UDP flow, from the remote end itself",
            {
                frame(
                    remote,
                    icmp_protocol(remote),
                    icmp_message(remote, me, too_big, [0, 0, 5, 20], &quoted_udp(53, 0)),
                )
            },
            reply,
            quoted_l4 + 4,
        );
        if v4 {
            let options = 8;
            add(
                "too big, quoting the UDP flow with IP options",
                error(too_big, &quoted_udp(53, options)),
                reply,
                quoted_l4 + options + 4,
            );
            let mut mangled = quoted_udp(53, 0);
            mangled[0] = 0x44;
            add("too big, quoting an IPv4 header of IHL 4", error(too_big, &mangled), dropped, 0);
            let mut v6 = quoted_udp(53, 0);
            v6[0] = 0x65;
            add("too big, quoting a header of version 6", error(too_big, &v6), dropped, 0);
        } else {
            add("a neighbour solicitation", error((135, 0), &[0; 16]), dropped, 0);
        }
    }
    cases
}

/// Frames that answer flows the host opened pass under a policy that drops
/// their country, counted as replies; frames that do not (another port,
/// address, protocol, identifier, an expired flow, a bare SYN, an echo
/// request, an ICMP message that is no error about a flow) are dropped;
/// an exception and an allowed country decide before any lookup. Monitor
/// mode counts replies the same; with replies off, they are dropped.
#[test]
fn replies_pass_only_when_the_flow_table_holds_their_flow() {
    let mut g = load(&crafted_table(), &crafted_policy(false), Backend::Trie);
    record_flows(&mut g);
    let mut checker = Checker::new(g);
    let cases = reply_cases();
    for case in &cases {
        checker.check(&case.name, &case.frame, Ok(case.effect));
    }
    checker.g.apply_policy(&crafted_policy(true)).expect("switching to monitor mode");
    for case in &cases {
        checker.check(&format!("monitor mode: {}", case.name), &case.frame, Ok(case.effect.monitored()));
    }
    let off = Policy { replies: false, ..crafted_policy(false) };
    checker.g.apply_policy(&off).expect("turning replies off");
    for case in &cases {
        let effect = match case.effect {
            Effect::Reply => Effect::Dropped(cc(b"CN")),
            other => other,
        };
        checker.check(&format!("replies off: {}", case.name), &case.frame, Ok(effect));
    }
}

/// Every truncation of every reply case: a frame cut before the end of its
/// flow key is no reply (dropped as its country's); one cut after passes
/// as the whole frame does; a frame that is no reply stays dropped.
#[test]
fn every_truncation_of_every_reply_case() {
    let g = load(&crafted_table(), &crafted_policy(false), Backend::Trie);
    let mut checker = Checker::new(g);
    let mut runs = 0;
    for case in reply_cases() {
        // Recorded afresh for each case: a slow run (a loaded machine)
        // must not outlive the ICMP flows' minute.
        record_flows(&mut checker.g);
        assert!(case.needs <= case.frame.len(), "{}: needs {} of {} bytes", case.name, case.needs, case.frame.len());
        for len in 0..=case.frame.len() {
            let what = format!("{}, cut to {len} of {} bytes", case.name, case.frame.len());
            checker.check(&what, &case.frame[..len], case.effect_truncated(len));
            runs += 1;
        }
    }
    println!("{runs} truncated reply frames checked");
}

/// The flow filter in front of the flow table: a rotation keeps the flags
/// of the flows recorded before it (both halves hold them); a second one
/// forgets the flows the host did not send on since, though the table
/// still holds them (within their timeout): their replies are dropped
/// until the host sends again.
#[test]
fn the_flow_filter_gates_the_flow_table_and_rotations_forget_idle_flows() {
    let mut checker = Checker::new(load(&crafted_table(), &crafted_policy(false), Backend::Trie));
    let remote: IpAddr = "1.1.1.1".parse().unwrap();
    let reply = Udp { src: remote, dst: host(remote), src_port: 53, dst_port: UDP_LOCAL, ..Udp::default() }.build();
    let key = FlowKey {
        remote: flow_address("1.1.1.1"),
        remote_port: 53,
        local_port: UDP_LOCAL,
        protocol: IPPROTO_UDP,
        _pad: [0; 3],
    };
    let dropped = Ok(Effect::Dropped(cc(b"CN")));
    checker.check("a reply before the host sent anything", &reply, dropped);
    checker.g.record_flow(&key, coarse_now()).expect("recording the flow");
    checker.check("a reply to a recorded flow", &reply, Ok(Effect::Reply));
    checker.g.rotate_flow_filter().expect("rotating the flow filter");
    checker.check("a reply to a flow recorded before a rotation", &reply, Ok(Effect::Reply));
    checker.g.rotate_flow_filter().expect("rotating the flow filter again");
    checker.check("a reply to a flow the host did not send on for two rotations", &reply, dropped);
    checker.g.record_flow(&key, coarse_now()).expect("recording the flow again");
    checker.check("a reply once the host sent again", &reply, Ok(Effect::Reply));
}

// ---------------------------------------------------------------------------
// Outbound rules: the egress program
// ---------------------------------------------------------------------------

/// tcx verdicts: "next in line decides" and "drop".
const TC_ACT_UNSPEC: i32 = -1;
const TC_ACT_SHOT: i32 = 2;

/// One BPF_PROG_TEST_RUN of `frame` through the egress program (which
/// hands it to the table's egress side when there are outbound rules).
fn run_egress(g: &mut Geoblock, frame: &[u8]) -> i32 {
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(frame);
    let program = g.egress().expect("the egress program");
    program.test_run(opts).expect("BPF_PROG_TEST_RUN of the egress program").return_value as i32
}

/// Outbound rules judge an outgoing frame by its destination, its protocol
/// and destination port: tcp/443 to CN is dropped (IPv4 and IPv6), other
/// ports of CN pass (no rule), RU is would-dropped (monitor), destinations
/// inside an exception pass as exceptions, and neither the source's country
/// nor the inbound rule (which denies DE) counts. Each verdict is counted
/// exactly, outbound only. Without outbound rules the egress side is not
/// even called: everything goes on, and nothing more is counted.
#[test]
fn outbound_rules_judge_the_destination_on_egress() {
    let out = Direction::Outbound;
    let web = Rule {
        direction: out,
        protocol: Protocol::Tcp,
        ports: vec![PortRange { first: 443, last: 443 }],
        ..Rule::new("web-out", Mode::Deny, [cc(b"CN")].into())
    };
    let watch = Rule { direction: out, monitor: true, ..Rule::new("watch-out", Mode::Deny, [cc(b"RU")].into()) };
    let inbound = Rule::new(DEFAULT_RULE, Mode::Deny, [cc(b"DE")].into());
    let exceptions = ["1.2.3.0/24", "2001:db8:e::/48"].iter().map(|n| n.parse().unwrap()).collect();
    let policy = Policy { rules: vec![web, watch, inbound], replies: true, exceptions };
    let mut g = load(&crafted_table(), &policy, Backend::Trie);
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let from = |dst: IpAddr| if dst.is_ipv4() { ip("192.0.2.2") } else { ip("fd00::2") };
    let tcp = |src: IpAddr, dst: IpAddr, port| {
        let l4 = tcp_segment(src, dst, (40000, port), TCP_SYN, (1, 0), b"");
        let (kind, packet) = ip_packet(src, dst, 0, IPPROTO_TCP, &l4);
        ethernet([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], &[], kind, &packet)
    };
    let (cn, de, ru) = (cc(b"CN"), cc(b"DE"), cc(b"RU"));
    let mut want = Traffic::default();
    let mut count = |country, action: Action, len: usize| {
        let pair = |a| if a == action { (1, len as u64) } else { (0, 0) };
        let (d, p, w) = (pair(Action::Drop), pair(Action::Pass), pair(Action::WouldDrop));
        let c = CountryCounters {
            dropped_packets: d.0,
            dropped_bytes: d.1,
            passed_packets: p.0,
            passed_bytes: p.1,
            would_drop_packets: w.0,
            would_drop_bytes: w.1,
        };
        want.add_country(country, c);
    };
    let mut exception = Counter::default();
    for (what, dst, port, verdict, counted) in [
        ("IPv4 to CN tcp/443", ip("1.1.1.1"), 443, TC_ACT_SHOT, Some((cn, Action::Drop))),
        ("IPv6 to CN tcp/443", ip("2001:db8::1"), 443, TC_ACT_SHOT, Some((cn, Action::Drop))),
        ("IPv4 to CN tcp/80: no rule", ip("1.1.1.1"), 80, TC_ACT_UNSPEC, Some((cn, Action::Pass))),
        ("IPv4 to RU: monitored", ip("5.6.7.8"), 22, TC_ACT_UNSPEC, Some((ru, Action::WouldDrop))),
        (
            "IPv4 to DE tcp/443: the inbound rule does not judge",
            ip("2.2.2.2"),
            443,
            TC_ACT_UNSPEC,
            Some((de, Action::Pass)),
        ),
        ("IPv4 to an exception in CN", ip("1.2.3.4"), 443, TC_ACT_UNSPEC, None),
        ("IPv6 to an exception in CN", ip("2001:db8:e::1"), 443, TC_ACT_UNSPEC, None),
    ] {
        let frame = tcp(from(dst), dst, port);
        assert_eq!(run_egress(&mut g, &frame), verdict, "{what}");
        match counted {
            Some((country, action)) => count(country, action, frame.len()),
            None => exception = exception + Counter { packets: 1, bytes: frame.len() as u64 },
        }
    }
    // From CN to an address of no country: the source is not judged.
    let reply = tcp(ip("1.1.1.1"), ip("10.9.9.9"), 443);
    assert_eq!(run_egress(&mut g, &reply), TC_ACT_UNSPEC, "from CN to no country");
    count(NO_COUNTRY, Action::Pass, reply.len());
    let stats = g.stats().expect("the counters");
    let got = &stats.outbound.all;
    assert_eq!((&got.countries, got.unknown), (&want.countries, want.unknown), "outbound counters");
    assert_eq!(got.totals.exception, exception, "outbound exceptions");
    assert_eq!(stats.inbound.all, Traffic::default(), "nothing counts inbound");
    let rule = |name: &str| stats.outbound.rules.iter().find(|r| r.name == name).unwrap().families;
    assert_eq!(rule("web-out").ipv4.dropped_packets + rule("web-out").ipv6.dropped_packets, 2);
    assert_eq!(rule("watch-out").ipv4.would_drop_packets, 1);

    g.apply_policy(&crafted_policy(false)).expect("a policy without outbound rules");
    assert_eq!(run_egress(&mut g, &tcp(from(ip("1.1.1.1")), ip("1.1.1.1"), 443)), TC_ACT_UNSPEC);
    assert_eq!(g.stats().expect("the counters").outbound.all, stats.outbound.all, "no outbound rules: not judged");
}
