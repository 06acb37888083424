//! What outbound rules cost per packet the host sends, in the same run:
//! no egress program at all, the egress program with a policy without
//! outbound rules (it records flows, reads one flag and stops), and with
//! an outbound rule (the table's egress side judges every packet's
//! destination: country lookup, rule, policy, counters). The packets go to
//! a destination the rule lets through, so that each is judged and sent.

use geoblock::{daemon::config::Config, data::table::Table, kernel::Geoblock, policy::Policy};
use geoblock_common::Backend;
use serde::Serialize;

use super::{kernel, report::median, rules::send, Settings};
use crate::netns::Pair;

#[derive(Clone, Debug, Serialize)]
pub struct OutboundRow {
    pub config: &'static str,
    pub round: usize,
    /// Sending thread CPU per UDP packet.
    pub send_ns: f64,
    /// The egress program's run time per packet, tail call included (bpf_stats).
    pub prog_ns: Option<f64>,
}

const CONFIGS: [&str; 3] = ["no egress program", "no outbound rules", "outbound rule"];

pub fn measure(world: &Table, settings: Settings) -> Vec<OutboundRow> {
    let pid = std::process::id();
    let pair = Pair::create_named(&format!("os{pid}"), &format!("or{pid}"));
    let _stats = kernel::enable_bpf_stats();
    let mut gb = Geoblock::load(Backend::Trie).expect("loading geoblock");
    gb.load_table(world).expect("loading the world table");
    let mut rows = Vec::new();
    for round in 0..settings.rounds {
        // Each round starts one configuration later: a drift of the machine favours none.
        for config in (0..CONFIGS.len()).map(|i| CONFIGS[(i + round) % CONFIGS.len()]) {
            eprintln!("bench: outbound / round {round} / {config}");
            if config == "no egress program" {
                rows.push(OutboundRow {
                    config,
                    round,
                    send_ns: send(&pair, "one flow", settings.sample).0,
                    prog_ns: None,
                });
                continue;
            }
            gb.apply_policy(&policy(config == "outbound rule")).expect("writing the policy");
            let link = pair.receiver.run(|| gb.attach_egress(&pair.receiver_if)).expect("attaching egress");
            let before = gb.egress().expect("the egress program").info().expect("program info");
            let (send_ns, packets) = send(&pair, "one flow", settings.sample);
            let after = gb.egress().expect("the egress program").info().expect("program info");
            drop(link);
            let runs = (after.run_count() - before.run_count()).max(1);
            assert!(runs + 1000 >= packets, "the egress program ran {runs} times for {packets} packets");
            let prog_ns = (after.run_time() - before.run_time()).as_nanos() as f64 / runs as f64;
            rows.push(OutboundRow { config, round, send_ns, prog_ns: Some(prog_ns) });
        }
    }
    rows
}

/// An inbound deny-list of CN, with (`outbound`) an outbound one of CN
/// too: the benchmark's packets, to the sender's countryless address,
/// pass it after a full judgement.
fn policy(outbound: bool) -> Policy {
    let mut toml = String::from("interfaces = [\"bench\"]\n[[rule]]\nname = \"in\"\nblock = [\"CN\"]\n");
    if outbound {
        toml += "[[rule]]\nname = \"out\"\ndirection = \"outbound\"\nblock = [\"CN\"]\n";
    }
    let path = std::env::temp_dir().join(format!("geoblock-bench-outbound-{}.toml", std::process::id()));
    std::fs::write(&path, &toml).expect("writing the bench policy");
    let loaded = Config::load(&path, true).and_then(Config::resolve);
    let _ = std::fs::remove_file(&path);
    loaded.unwrap_or_else(|e| panic!("bench policy: {e}\n{toml}")).policy
}

pub fn print(rows: &[OutboundRow]) {
    println!("\n== Outbound: sending thread CPU and egress program time per UDP packet, median over rounds ==");
    let of = |config: &str| rows.iter().filter(|r| r.config == config).collect::<Vec<_>>();
    let bare = median(of(CONFIGS[0]).iter().map(|r| r.send_ns).collect());
    for config in CONFIGS {
        let send = median(of(config).iter().map(|r| r.send_ns).collect());
        let prog = median(of(config).iter().filter_map(|r| r.prog_ns).collect());
        println!("{config:<18}: send {send:>6.0} ns ({:.2}x), program {prog:>6.1} ns", send / bare);
    }
}
