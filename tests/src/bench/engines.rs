//! The configurations under test on the receiving veth, each installed by
//! [`Receiver::install`] and removed when the [`Receiver`] is dropped.

use std::{collections::BTreeSet, fmt::Write as _, time::Instant};

use aya::programs::{links::FdLink, Xdp};
use geoblock::{
    data::table::Table,
    kernel::{Geoblock, XdpMode},
    policy::{Mode, Policy, Rule, DEFAULT_RULE},
};
use geoblock_common::{Backend, CountryId};

use crate::{
    netns::{Netns, Pair},
    programs::{BENCH_DROP, BENCH_SENDER},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// A bare XDP_DROP program: the floor.
    Drop,
    /// A bare XDP_PASS program: every packet goes up the stack, as
    /// geoblock's passed packets do; the floor for receiver CPU per passed
    /// packet.
    Pass,
    /// Reads the source address, then XDP_DROP: the floor for any program
    /// that looks at the packet.
    Parse,
    /// geoblock, multibit trie backend.
    Trie,
    /// geoblock, kernel LPM trie backend.
    Lpm,
    /// nftables: netdev ingress chain on the veth, interval sets.
    Nft,
    /// ipset hash:net sets matched by iptables/ip6tables raw PREROUTING.
    Ipset,
}

impl Engine {
    /// The bare XDP_PASS came last and runs last: the others run in the
    /// order of earlier runs.
    pub const ALL: [Engine; 7] =
        [Engine::Drop, Engine::Parse, Engine::Trie, Engine::Lpm, Engine::Nft, Engine::Ipset, Engine::Pass];

    pub fn name(self) -> &'static str {
        match self {
            Engine::Drop => "xdp-drop",
            Engine::Pass => "xdp-pass",
            Engine::Parse => "xdp-parse-drop",
            Engine::Trie => "geoblock-trie",
            Engine::Lpm => "geoblock-lpm",
            Engine::Nft => "nftables",
            Engine::Ipset => "ipset",
        }
    }

    pub fn is_geoblock(self) -> bool {
        matches!(self, Engine::Trie | Engine::Lpm)
    }

    /// Whether the engine's whole per-packet cost shows in `bpf_stats`.
    pub fn is_xdp(self) -> bool {
        !matches!(self, Engine::Nft | Engine::Ipset)
    }
}

/// An installed configuration: its XDP program attached to the receiving
/// veth (bench_pass for the netfilter engines: veth then accepts the
/// redirected frames), and its rules.
pub struct Receiver<'a> {
    pub engine: Engine,
    /// The program's bpf_link: closing it detaches the program (and takes
    /// veth's NAPI with it), so it lives as long as the receiver.
    _link: FdLink,
    xdp: Geoblock,
    ns: &'a Netns,
    dev: String,
    /// Time to load the table into the engine, in ms (0 for the baselines).
    pub load_ms: f64,
    /// Kernel memory of the set, for ipset (its own report), in bytes.
    pub set_bytes: Option<u64>,
}

impl<'a> Receiver<'a> {
    /// Installs `engine` with `table` and a deny-list of `blocked` (the
    /// netfilter engines get only the blocked countries' prefixes).
    pub fn install(engine: Engine, pair: &'a Pair, table: &Table, blocked: &BTreeSet<CountryId>) -> Receiver<'a> {
        Self::install_with(engine, pair, table, blocked, &deny(blocked))
    }

    /// As [`Receiver::install`], geoblock enforcing `policy`.
    pub fn install_with(
        engine: Engine,
        pair: &'a Pair,
        table: &Table,
        blocked: &BTreeSet<CountryId>,
        policy: &Policy,
    ) -> Receiver<'a> {
        let ns = &pair.receiver;
        let dev = pair.receiver_if.as_str();
        let mut load_ms = 0.0;
        let mut set_bytes = None;
        let mut xdp = match engine {
            Engine::Drop => load(BENCH_DROP, "bench_drop", Backend::Trie),
            Engine::Parse => load(BENCH_SENDER, "bench_parse", Backend::Trie),
            Engine::Trie | Engine::Lpm => {
                let backend = if engine == Engine::Trie { Backend::Trie } else { Backend::Lpm };
                let mut gb = load(geoblock::kernel::objects::GEOBLOCK, "geoblock", backend);
                load_ms = timed(|| gb.load_table(table).expect("loading the table"));
                gb.apply_policy(policy).expect("applying the policy");
                gb
            }
            Engine::Pass | Engine::Nft | Engine::Ipset => load(BENCH_SENDER, "bench_pass", Backend::Trie),
        };
        let blocked_table = crate::bench::workload::subset(table, blocked);
        match engine {
            Engine::Nft => {
                load_ms = timed(|| ns.exec("nft", &["-f", "-"], Some(nft_ruleset(dev, &blocked_table).as_bytes())))
            }
            Engine::Ipset => {
                load_ms = timed(|| ns.exec("ipset", &["restore"], Some(ipset_script(&blocked_table).as_bytes())));
                for (iptables, set) in [("iptables", "gb4"), ("ip6tables", "gb6")] {
                    let rule = [
                        "-t",
                        "raw",
                        "-A",
                        "PREROUTING",
                        "-i",
                        dev,
                        "-m",
                        "set",
                        "--match-set",
                        set,
                        "src",
                        "-j",
                        "DROP",
                    ];
                    ns.exec(iptables, &rule, None);
                }
                set_bytes = Some(ipset_memory(ns));
            }
            _ => {}
        }
        let link = ns.run(|| xdp.attach(dev, XdpMode::Native)).expect("attaching XDP to the receiving veth (native)");
        Receiver { engine, _link: link, xdp, ns, dev: dev.into(), load_ms, set_bytes }
    }

    /// Packets the receiving veth handled.
    fn received(&self) -> u64 {
        super::linerate::rx_packets(self.ns, &self.dev)
    }

    /// The loaded program, to configure beyond its policy.
    pub fn geoblock(&mut self) -> &mut Geoblock {
        &mut self.xdp
    }

    /// The attached XDP program.
    pub fn program(&mut self) -> &Xdp {
        self.xdp.program().expect("the loaded program")
    }

    /// Packets dropped so far by the engine itself (None for the baselines).
    pub fn dropped(&mut self) -> Option<u64> {
        match self.engine {
            Engine::Drop | Engine::Pass | Engine::Parse => None,
            Engine::Trie | Engine::Lpm => {
                Some(self.xdp.stats().expect("geoblock stats").inbound.all.totals.dropped.packets)
            }
            // Listing nft's counters fetches the set elements too (seconds
            // for the EU): what it did not drop reached IP, and IP counts.
            Engine::Nft => Some(self.received() - ip_received(self.ns)),
            Engine::Ipset => Some(
                ["iptables", "ip6tables"]
                    .iter()
                    .map(|t| {
                        let out = self.ns.exec(t, &["-t", "raw", "-L", "PREROUTING", "-v", "-x", "-n"], None);
                        out.lines()
                            .skip(2)
                            .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
                            .sum::<u64>()
                    })
                    .sum(),
            ),
        }
    }

    /// The geoblock table program's kernel memory, per map (geoblock engines only).
    pub fn map_memory(&mut self) -> Vec<super::kernel::MapMemory> {
        super::kernel::map_memory(self.xdp.table_program().expect("the table program"))
    }
}

impl Drop for Receiver<'_> {
    /// Removes the rules; dropping the link detaches the XDP program.
    fn drop(&mut self) {
        let quiet = |program: &str, args: &[&str]| {
            let mut cmd = std::process::Command::new(program);
            cmd.args(args);
            self.ns.command(&mut cmd);
            let _ = cmd.output();
        };
        match self.engine {
            Engine::Nft => quiet("nft", &["delete", "table", "netdev", NFT_TABLE]),
            Engine::Ipset => {
                quiet("iptables", &["-t", "raw", "-F", "PREROUTING"]);
                quiet("ip6tables", &["-t", "raw", "-F", "PREROUTING"]);
                quiet("ipset", &["destroy"]);
            }
            _ => {}
        }
    }
}

fn load(object: &'static [u8], name: &str, backend: Backend) -> Geoblock {
    Geoblock::load_object(object, name, backend).unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

pub fn deny(blocked: &BTreeSet<CountryId>) -> Policy {
    Policy::from(Rule::new(DEFAULT_RULE, Mode::Deny, blocked.clone()))
}

/// Runs `f`, returns its wall time in ms.
pub fn timed<T>(f: impl FnOnce() -> T) -> f64 {
    let start = Instant::now();
    f();
    start.elapsed().as_secs_f64() * 1e3
}

const NFT_TABLE: &str = "gbbench";

/// A netdev table with an ingress chain on `dev` dropping sources in the
/// table's prefixes (interval sets, one per family).
fn nft_ruleset(dev: &str, blocked: &Table) -> String {
    let mut s = format!("table netdev {NFT_TABLE} {{\n");
    let v4: Vec<String> = blocked.v4.iter().map(|(n, _)| n.to_string()).collect();
    let v6: Vec<String> = blocked.v6.iter().map(|(n, _)| n.to_string()).collect();
    for (set, ty, elems) in [("b4", "ipv4_addr", v4), ("b6", "ipv6_addr", v6)] {
        let _ = write!(s, "  set {set} {{ type {ty}; flags interval;");
        if !elems.is_empty() {
            let _ = write!(s, " elements = {{ {} }};", elems.join(", "));
        }
        s.push_str(" }\n");
    }
    let _ = write!(
        s,
        "  chain ingress {{ type filter hook ingress device \"{dev}\" priority -500; policy accept;\n    ip saddr @b4 drop\n    ip6 saddr @b6 drop\n  }}\n}}\n"
    );
    s
}

/// `ipset restore` input: hash:net sets gb4 and gb6 with the table's prefixes.
fn ipset_script(blocked: &Table) -> String {
    let max = (blocked.v4.len().max(blocked.v6.len()) * 2).max(1024);
    let mut s = format!(
        "create gb4 hash:net family inet hashsize {h} maxelem {max}\ncreate gb6 hash:net family inet6 hashsize {h} maxelem {max}\n",
        h = (max / 2).next_power_of_two()
    );
    for (n, _) in &blocked.v4 {
        let _ = writeln!(s, "add gb4 {n}");
    }
    for (n, _) in &blocked.v6 {
        let _ = writeln!(s, "add gb6 {n}");
    }
    s
}

/// "Size in memory" of both sets, as ipset reports it.
fn ipset_memory(ns: &Netns) -> u64 {
    let out = ns.exec("ipset", &["list", "-t"], None);
    out.lines().filter_map(|l| l.strip_prefix("Size in memory:")?.trim().parse::<u64>().ok()).sum()
}

/// Packets that reached the receiver's IPv4 and IPv6 layers.
fn ip_received(ns: &Netns) -> u64 {
    let snmp = super::linerate::snmp(ns);
    snmp["Ip:InReceives"] + snmp["Ip6InReceives"]
}
