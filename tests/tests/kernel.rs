//! The XDP program in the kernel, through BPF_PROG_TEST_RUN: frames in,
//! verdicts and counters out. No interface is involved.
//!
//! - crafted frames, each with its verdict and exact counter effect;
//! - every truncation of those frames, the expectation derived from the
//!   program's parsing contract;
//! - a differential check of the world tables (the embedded DB-IP one,
//!   and GeoLite2 as MaxMind ships it): random addresses through the kernel
//!   against the userspace reference `Policy::verdict`.
//!
//! Needs root (CAP_BPF and CAP_NET_ADMIN), and the npm registry for
//! GeoLite2: without them the tests fail, none skips.

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::{Mutex, OnceLock},
    time::Instant,
};

use aya::programs::{TestRun as _, TestRunOptions};
use geoblock::{
    country,
    daemon::events::{decode, WallClock},
    data::{table::Table, Options},
    errno,
    kernel::{
        counters::Traffic,
        events::{EventCounts, EventRing},
        Geoblock,
    },
    policy::{Mode, Policy, Reason, Verdict},
};
use geoblock_common::{
    country_id,
    packet::{ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, IPV4_HLEN, IPV6_HLEN, MAX_VLAN_TAGS},
    Action, Backend, Counter, CountryCounters, CountryId, DropEvent, EVENT_SNAPLEN, NO_COUNTRY,
};
use geoblock_tests::{
    frames::{arp_request_tagged, l3_offset, Udp},
    registry,
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
    g.stats().expect("reading the counters").all
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
    NonIp,
    Unparsed,
}

impl Effect {
    fn of(verdict: Verdict) -> Effect {
        match verdict {
            Verdict::Exception => Effect::Exception,
            Verdict::Country(c, Action::Drop) => Effect::Dropped(c),
            Verdict::Country(c, Action::Pass) => Effect::Passed(c),
            Verdict::Country(c, Action::WouldDrop) => Effect::WouldDrop(c),
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
            Effect::Dropped(_) => XDP_DROP,
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
            Effect::NonIp => return bump(&mut t.non_ip, bytes),
            Effect::Unparsed => return bump(&mut t.unparsed, bytes),
            Effect::Dropped(c) => (&mut t.dropped, c),
            Effect::Passed(c) => (&mut t.passed, c),
            Effect::WouldDrop(c) => (&mut t.would_drop, c),
        };
        bump(total, bytes);
        let slot = match country {
            NO_COUNTRY => &mut stats.unknown,
            c => stats.countries.entry(country::code(c).to_string()).or_default(),
        };
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
            Effect::NonIp => f.write_str("NonIp"),
            Effect::Unparsed => f.write_str("Unparsed"),
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
            let dst = match src {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xd, 0, 0, 0, 0, 2)),
            };
            Udp { vlans: self.vlans, src, dst, ipv4_options: options, ..Udp::default() }.build()
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
        mode: Mode::Deny,
        countries: [cc(b"CN"), cc(b"RU")].into(),
        monitor,
        block_unknown: false,
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
    Policy { mode, countries: codes.iter().map(|c| cc(c)).collect(), monitor, block_unknown, exceptions: vec![] }
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
fn sample(
    rng: &mut StdRng,
    family: Family,
    prefixes: &[(u128, u128)],
    exceptions: &[(u128, u128)],
    n: usize,
) -> Vec<IpAddr> {
    (0..n)
        .map(|i| {
            let pool = match rng.random_ratio(1, 10) && !exceptions.is_empty() {
                true => exceptions,
                false => prefixes,
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
}

/// Sends `per_family` sampled addresses of each family through the kernel,
/// holding `world`'s table, under `policy` and compares every verdict, then
/// all counters, with the userspace reference.
fn differential(world: World, mut policy: Policy, per_family: usize, backend: Backend) -> Tally {
    let mut loaded = loaded(world, backend);
    let Loaded { table, g } = &mut *loaded;
    policy.exceptions = world_exceptions(table);
    g.apply_policy(&policy).expect("writing the policy");

    let seed = std::env::var("GEOBLOCK_TEST_SEED")
        .map(|s| s.parse().expect("GEOBLOCK_TEST_SEED: a u64"))
        .unwrap_or_else(|_| rand::rng().random());
    let mut rng = StdRng::seed_from_u64(seed);
    let v4_nets: Vec<IpNetwork> = table.v4.iter().map(|(n, _)| IpNetwork::V4(*n)).collect();
    let v6_nets: Vec<IpNetwork> = table.v6.iter().map(|(n, _)| IpNetwork::V6(*n)).collect();

    let start = Instant::now();
    let before = stats(g);
    let mut want = before.clone();
    let mut tally = Tally::default();
    let mut mismatches = vec![];
    let mut kernel_drops = 0u64;
    for (family, nets) in [(Family::V4, &v4_nets), (Family::V6, &v6_nets)] {
        let (prefixes, exceptions) = (family.ranges(nets.iter()), family.ranges(policy.exceptions.iter()));
        for src in sample(&mut rng, family, &prefixes, &exceptions, per_family) {
            let frame = Udp { src, dst: family.dst(), ..Udp::default() }.build();
            let verdict = policy.verdict(table, src);
            let effect = Effect::of(verdict);
            let action = run(g, &frame);
            kernel_drops += u64::from(action == XDP_DROP);
            if action != effect.action() {
                mismatches.push((src, verdict, action));
            }
            effect.count(&mut want, frame.len() as u64);
            match effect {
                Effect::Dropped(_) => tally.drops += 1,
                Effect::WouldDrop(_) => tally.would_drops += 1,
                Effect::Exception => tally.exceptions += 1,
                _ => {}
            }
            tally.unknown += u64::from(matches!(verdict, Verdict::Country(NO_COUNTRY, _)));
        }
    }
    let elapsed = start.elapsed();
    let context = format!(
        "{world:?} table, {backend:?} backend, {}, seed {seed} (rerun with GEOBLOCK_TEST_SEED={seed})",
        describe(&policy)
    );
    if !mismatches.is_empty() {
        let mut sample = String::new();
        for (src, verdict, action) in mismatches.iter().take(20) {
            let prefix = table.lookup(*src).map(|(net, _)| net.to_string()).unwrap_or("none".into());
            let want = Effect::of(*verdict);
            writeln!(sample, "  {src}: reference {want:?} (table prefix {prefix}), kernel {}", action_name(*action))
                .unwrap();
        }
        panic!("{} of {} verdicts differ; {context}; first ones:\n{sample}", mismatches.len(), 2 * per_family);
    }
    let got = stats(g);
    assert!(got == want, "counters differ from the reference's; {context}:\n{}", stats_diff(&want, &got));
    let country_drops: u64 = got.countries.values().chain([&got.unknown]).map(|c| c.dropped_packets).sum::<u64>()
        - before.countries.values().chain([&before.unknown]).map(|c| c.dropped_packets).sum::<u64>();
    assert_eq!(country_drops, kernel_drops, "per-country drop counters vs XDP_DROP verdicts; {context}");
    println!(
        "{} addresses in {elapsed:.1?} ({:.1} µs each), {tally:?}; seed {seed}",
        2 * per_family,
        elapsed.as_secs_f64() * 1e6 / (2 * per_family) as f64
    );
    tally
}

fn describe(policy: &Policy) -> String {
    let codes: Vec<&str> = policy.countries.iter().map(|c| country::code(*c)).collect();
    let exceptions: Vec<String> = policy.exceptions.iter().map(|n| n.to_string()).collect();
    format!(
        "policy {:?} [{}], monitor {}, block unknown {}, exceptions [{}]",
        policy.mode,
        codes.join(" "),
        policy.monitor,
        policy.block_unknown,
        exceptions.join(" ")
    )
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
    let tally = differential(world, differential_policy(Mode::Deny, &DENIED, false, false), 100_000, backend);
    assert!(tally.drops > 0 && tally.exceptions > 0 && tally.unknown > 0, "sample too narrow: {tally:?}");
}

#[test]
fn differential_allow_list_blocking_unknown() {
    let allowed = [b"DE", b"FR", b"NL", b"JP"];
    let policy = differential_policy(Mode::Allow, &allowed, false, true);
    let tally = differential(World::DbIp, policy, 30_000, Backend::Trie);
    assert!(tally.drops > 0 && tally.exceptions > 0 && tally.unknown > 0, "sample too narrow: {tally:?}");
}

#[test]
fn differential_monitor_mode() {
    let tally = differential(World::DbIp, differential_policy(Mode::Deny, &DENIED, true, true), 30_000, Backend::Trie);
    assert!(tally.drops == 0 && tally.would_drops > 0, "monitor mode: {tally:?}");
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
            let policy = Policy {
                mode: Mode::Deny,
                countries: blocked.iter().copied().collect(),
                monitor: false,
                block_unknown: round % 2 == 1,
                exceptions: vec![],
            };
            let mut g = load(&table, &policy, backend);
            for &src in &sources {
                let dst = if src.is_ipv4() { Family::V4.dst() } else { Family::V6.dst() };
                let want = match policy.action(lpm(src)) {
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
    let decoded = decode(&events[1], &WallClock::now(), &crafted_policy(false)).expect("decoding the IPv6 event");
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
