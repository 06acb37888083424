//! What selectors cost, in the same run as a policy of countries alone:
//! a deny-list of countries that also blocks a 10,000-entry list and 0,
//! 10 or 1,000 ASes of the world's AS data, under a flood of UDP from
//! random sources of the blocked countries (every packet walks the
//! selector trie, then reads its class's verdict), and from those of them
//! that the list and the 1,000 ASes hold (a selector decides, and counts);
//! and what a selector table costs to build from the AS data, to swap in,
//! and in kernel memory.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::{Duration, Instant},
};

use geoblock::{
    data::{asn::Asn, list::AddressList, table::Table},
    kernel::trie::Trie,
    policy::{Mode, Policy, Rule, Selector, SelectorTable, DEFAULT_RULE},
};
use geoblock_common::{maps, CountryId, TrieNode, SELECTOR_CHILD, TRIE_ROOTS};
use rand::{rngs::StdRng, SeedableRng as _};
use serde::Serialize;

use super::{
    engines::{deny, Engine, Receiver},
    kernel,
    linerate::{Napi, Sender},
    measure,
    report::median,
    workload::{self, Family, Scope, Traffic},
    Settings, SOURCES,
};
use crate::{netns::Pair, selectors};

/// One line-rate measurement of a configuration.
#[derive(Clone, Debug, Serialize)]
pub struct SelectorRow {
    pub config: &'static str,
    pub family: &'static str,
    pub traffic: &'static str,
    pub round: usize,
    pub mpps: f64,
    pub rx_ns: f64,
    pub prog_ns: Option<f64>,
}

/// A selector table built from the AS data and swapped in.
#[derive(Clone, Debug, Serialize)]
pub struct SelectorBuild {
    pub config: &'static str,
    pub round: usize,
    pub classes: usize,
    pub prefixes: [usize; 2],
    pub trie_nodes: [usize; 2],
    /// `SelectorTable::compile` from the AS data and the list.
    pub compile_ms: f64,
    /// The two selector tries from the compiled table.
    pub tries_ms: f64,
    /// `load_selectors`: a table program with the new selector maps,
    /// filled and swapped in (the tries compiled once more inside).
    pub swap_ms: f64,
    /// Kernel memory of SELECTORS_V4, SELECTORS_V6 and SELECTOR_POLICY.
    pub bytes: [u64; 3],
}

/// How the floods' sources meet a configuration's selector table.
#[derive(Clone, Debug, Serialize)]
pub struct SelectorWalk {
    pub config: &'static str,
    pub family: &'static str,
    pub traffic: &'static str,
    /// Mean selector trie nodes read per packet.
    pub reads: f64,
    /// Sources a selector holds (its block decides, not the country).
    pub held: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct SelectorsCost {
    pub line_rate: Vec<SelectorRow>,
    pub builds: Vec<SelectorBuild>,
    pub walks: Vec<SelectorWalk>,
    /// The 1,000 ASes without the list: compile and tries, ms, per round.
    pub ases_only: Vec<[f64; 2]>,
}

const CONFIGS: [&str; 5] = ["xdp-drop", "countries", "list", "list + 10 ASes", "list + 1,000 ASes"];
const LIST: &str = "bulk";
/// Sources: random ones of the blocked countries, and those of them the
/// largest selector table holds.
const TRAFFIC: [&str; 2] = ["country", "held"];

/// The ASes a configuration blocks beside the list (`None`: no selector).
fn ases(config: &str) -> Option<usize> {
    match config {
        "list" => Some(0),
        "list + 10 ASes" => Some(10),
        "list + 1,000 ASes" => Some(1000),
        _ => None,
    }
}

pub fn measure_all(world: &Table, settings: Settings) -> SelectorsCost {
    let asn = selectors::world_asn();
    let mut rng = StdRng::seed_from_u64(16);
    let blocked = Scope::World.blocked();
    let picked: BTreeMap<&str, Vec<Asn>> =
        CONFIGS.iter().filter_map(|&c| Some((c, selectors::pick_asns(asn, ases(c)?, &mut rng)))).collect();
    let lists = vec![selectors::random_list(LIST, asn, &picked["list + 1,000 ASes"], 10_000, &mut rng)];
    let pid = std::process::id();
    let pair = Pair::create_named(&format!("ss{pid}"), &format!("sr{pid}"));
    let _stats = kernel::enable_bpf_stats();
    let mut sender = Sender::load(&pair);
    let largest = policy(&blocked, &picked["list + 1,000 ASes"]).selectors();
    let largest = SelectorTable::compile(&largest, asn, &lists).expect("the selector table");
    let sources: Vec<Sources> = Family::ALL
        .iter()
        .flat_map(|&f| {
            let country = workload::sources(world, &blocked, Traffic::Blocked, f, SOURCES);
            let many = workload::sources(world, &blocked, Traffic::Blocked, f, 64 * SOURCES);
            let held: Vec<IpAddr> =
                many.into_iter().filter(|ip| largest.table.lookup(*ip).is_some()).take(SOURCES).collect();
            assert!(!held.is_empty(), "no {} source of the blocked countries is held by a selector", f.name());
            [(f, TRAFFIC[0], country), (f, TRAFFIC[1], held)]
        })
        .collect();
    let mut cost = SelectorsCost::default();
    // Rounds outside, configurations inside, each round starting one
    // configuration later (see rules.rs).
    for round in 0..settings.rounds {
        let ases: BTreeSet<Selector> = picked["list + 1,000 ASes"].iter().map(|&a| Selector::Asn(a)).collect();
        cost.ases_only.push(build(&ases, &[]).2);
        for config in (0..CONFIGS.len()).map(|i| CONFIGS[(i + round) % CONFIGS.len()]) {
            let mut rx = match config {
                "xdp-drop" => Receiver::install(Engine::Drop, &pair, world, &blocked),
                _ => Receiver::install_with(Engine::Trie, &pair, world, &blocked, &deny(&blocked)),
            };
            if let Some(ases) = picked.get(config) {
                let policy = policy(&blocked, ases);
                let (build, table) = swap_in(&mut rx, config, round, &policy, &lists);
                if round == 0 {
                    cost.walks.extend(walks(config, &table, &sources));
                }
                cost.builds.push(build);
            }
            let napi = Napi::threaded(&pair.receiver, &pair.receiver_if);
            eprintln!("bench: selectors / round {round} / {config}");
            for (family, traffic, srcs) in &sources {
                sender.set_sources(srcs);
                sender.send(&pair.sender, *family, settings.sample / 5);
                let m = measure(&pair, &sender, &mut rx, &napi, *family, settings.sample);
                let (mpps, rx_ns, prog_ns) = (m.mpps, m.rx_ns, m.prog_ns);
                let family = family.name();
                cost.line_rate.push(SelectorRow { config, family, traffic, round, mpps, rx_ns, prog_ns });
            }
        }
    }
    cost
}

/// The deny-list of `blocked` that also blocks `ases` and the list.
fn policy(blocked: &BTreeSet<CountryId>, ases: &[Asn]) -> Policy {
    let list = Selector::List(LIST.into());
    let block = ases.iter().map(|&a| Selector::Asn(a)).chain([list]).collect();
    Policy::from(Rule { block, ..Rule::new(DEFAULT_RULE, Mode::Deny, blocked.clone()) })
}

/// Builds `policy`'s selector table from the AS data and `lists`, timed,
/// and swaps it into the receiver's program.
fn swap_in(
    rx: &mut Receiver,
    config: &'static str,
    round: usize,
    policy: &Policy,
    lists: &[AddressList],
) -> (SelectorBuild, SelectorTable) {
    let (table, tries, [compile_ms, tries_ms]) = build(&policy.selectors(), lists);
    let start = Instant::now();
    rx.geoblock().load_selectors(&table, policy).expect("swapping the selector table in");
    let swap_ms = ms(start.elapsed());
    rx.geoblock().apply_policy(policy).expect("the selector policy");
    let memory = rx.map_memory();
    let bytes = [maps::SELECTORS_V4, maps::SELECTORS_V6, maps::SELECTOR_POLICY]
        .map(|name| memory.iter().filter(|m| m.name == name).map(|m| m.bytes).sum());
    let build = SelectorBuild {
        config,
        round,
        classes: table.classes.len(),
        prefixes: [table.table.v4.len(), table.table.v6.len()],
        trie_nodes: tries.map(|t| t.nodes().len()),
        compile_ms,
        tries_ms,
        swap_ms,
        bytes,
    };
    (build, table)
}

/// The selector table of `selectors` from the world's AS data and
/// `lists`, and its tries; the ms each took.
fn build(selectors: &BTreeSet<Selector>, lists: &[AddressList]) -> (SelectorTable, [Trie; 2], [f64; 2]) {
    let start = Instant::now();
    let table = SelectorTable::compile(selectors, selectors::world_asn(), lists).expect("the selector table");
    let compile_ms = ms(start.elapsed());
    let start = Instant::now();
    let tries = [Trie::selectors_v4(&table.table).expect("IPv4 trie"), Trie::selectors_v6(&table.table).expect("IPv6")];
    (table, tries, [compile_ms, ms(start.elapsed())])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A family's flood: its sources, and what they are.
type Sources = (Family, &'static str, Vec<IpAddr>);

/// How many selector trie nodes each family's sources read, and how many
/// a selector holds.
fn walks(config: &'static str, table: &SelectorTable, sources: &[Sources]) -> Vec<SelectorWalk> {
    let tries = [Trie::selectors_v4(&table.table).unwrap(), Trie::selectors_v6(&table.table).unwrap()];
    sources
        .iter()
        .map(|(family, traffic, srcs)| {
            let nodes = tries[*family as usize].nodes();
            let reads: u32 = srcs.iter().map(|ip| walk_reads(nodes, &octets(*ip))).sum();
            let held = srcs.iter().filter(|ip| table.table.lookup(**ip).is_some()).count();
            let n = srcs.len() as f64;
            let (family, traffic, reads, held) = (family.name(), *traffic, f64::from(reads) / n, held as f64 / n);
            SelectorWalk { config, family, traffic, reads, held }
        })
        .collect()
}

fn octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// The nodes the program's selector walk reads for `addr` (as
/// `trie_walk` in geoblock-ebpf: a root per first byte, one node per
/// further byte until a slot holds a class).
fn walk_reads(nodes: &[TrieNode], addr: &[u8]) -> u32 {
    let mut node = u32::from(addr[0]);
    for (read, byte) in (1..).zip(&addr[1..]) {
        let slot = nodes[node as usize].0[usize::from(*byte)];
        if slot < SELECTOR_CHILD {
            return read;
        }
        node = TRIE_ROOTS + u32::from(slot - SELECTOR_CHILD);
    }
    addr.len() as u32 - 1
}

impl SelectorsCost {
    pub fn print(&self) {
        println!("\n== Selectors at line rate: world table, blocked random sources (UDP), median over rounds ==");
        let header = ["config", "fam", "sources", "Mpps", "rx ns", "prog ns", "rx/drop", "prog/drop", "rx/ctry"];
        println!(
            "{:<18} {:<5} {:<7} {:>6} {:>7} {:>8} {:>8} {:>9} {:>9} {:>10} {:>6} {:>5}",
            header[0],
            header[1],
            header[2],
            header[3],
            header[4],
            header[5],
            header[6],
            header[7],
            header[8],
            "prog/ctry",
            "reads",
            "held"
        );
        for (family, traffic) in Family::ALL.map(Family::name).into_iter().flat_map(|f| TRAFFIC.map(|t| (f, t))) {
            let rows = |config: &str| -> Vec<&SelectorRow> {
                let of = |r: &&SelectorRow| r.config == config && r.family == family && r.traffic == traffic;
                self.line_rate.iter().filter(of).collect()
            };
            let rx = |config: &str| median(rows(config).iter().map(|r| r.rx_ns).collect());
            let prog = |config: &str| median(rows(config).iter().filter_map(|r| r.prog_ns).collect());
            for config in CONFIGS {
                let mpps = median(rows(config).iter().map(|r| r.mpps).collect());
                let walk = self.walks.iter().find(|w| w.config == config && w.family == family && w.traffic == traffic);
                println!(
                    "{config:<18} {family:<5} {traffic:<7} {mpps:>6.2} {:>7.1} {:>8.1} {:>8.2} {:>9.2} {:>9.2} {:>10.2} {:>6} {:>5}",
                    rx(config),
                    prog(config),
                    rx(config) / rx("xdp-drop"),
                    prog(config) / prog("xdp-drop"),
                    rx(config) / rx("countries"),
                    prog(config) / prog("countries"),
                    walk.map_or("-".into(), |w| format!("{:.2}", w.reads)),
                    walk.map_or("-".into(), |w| format!("{:.0}%", 100.0 * w.held)),
                );
            }
        }
        println!("\n== Selector tables from the AS data, median over rounds ==");
        let m = |i: usize| median(self.ases_only.iter().map(|b| b[i]).collect());
        println!("1,000 ASes alone   : compile {:.1} ms, tries {:.1} ms", m(0), m(1));
        for config in CONFIGS.into_iter().filter(|c| ases(c).is_some()) {
            let builds: Vec<&SelectorBuild> = self.builds.iter().filter(|b| b.config == config).collect();
            let Some(first) = builds.first() else { continue };
            let m = |f: fn(&SelectorBuild) -> f64| median(builds.iter().map(|b| f(b)).collect());
            println!(
                "{config:<18}: {} classes, {} + {} prefixes, {} + {} trie nodes; compile {:.1} ms, tries {:.1} ms, \
                 load_selectors {:.1} ms; memory {} + {} + {} bytes",
                first.classes,
                first.prefixes[0],
                first.prefixes[1],
                first.trie_nodes[0],
                first.trie_nodes[1],
                m(|b| b.compile_ms),
                m(|b| b.tries_ms),
                m(|b| b.swap_ms),
                first.bytes[0],
                first.bytes[1],
                first.bytes[2],
            );
        }
    }
}
