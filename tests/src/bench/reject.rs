//! What rejecting costs the receiver under a flood of SYNs from random
//! blocked sources, in the same run: dropping them, rejecting them with
//! every one answered (a rate the flood cannot reach), and rejecting them
//! beyond the rate (the default 1,000 answers per second: nearly all are
//! dropped after the bucket's check).

use std::{collections::BTreeSet, net::IpAddr};

use geoblock::{
    data::table::Table,
    policy::{Mode, Policy, Rule, RuleAction, DEFAULT_RULE},
};
use geoblock_common::CountryId;
use serde::Serialize;

use super::{
    engines::{Engine, Receiver},
    kernel,
    linerate::{Napi, Sender},
    measure,
    report::median,
    rules::syn,
    workload::{self, Family, Scope, Traffic},
    Settings, SOURCES,
};
use crate::netns::Pair;

#[derive(Clone, Debug, Serialize)]
pub struct RejectRow {
    pub config: &'static str,
    pub family: &'static str,
    pub round: usize,
    pub mpps: f64,
    /// Receiver CPU per packet, and the program's own run time.
    pub rx_ns: f64,
    pub prog_ns: Option<f64>,
    /// Answers sent and suppressed over the measurement.
    pub sent: u64,
    pub suppressed: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct RejectCost {
    pub rows: Vec<RejectRow>,
}

/// The configurations: (name, action, answers per second).
const CONFIGS: [(&str, RuleAction, u32); 3] = [
    ("drop", RuleAction::Drop, 0),
    ("reject, all answered", RuleAction::Reject, 100_000_000),
    ("reject, beyond the rate", RuleAction::Reject, 1000),
];

pub fn measure_all(world: &Table, settings: Settings) -> RejectCost {
    let pid = std::process::id();
    let pair = Pair::create_named(&format!("js{pid}"), &format!("jr{pid}"));
    let _stats = kernel::enable_bpf_stats();
    let mut sender = Sender::load(&pair);
    // Answers are written into the sender's pages: restore every frame.
    sender.restore_frames(true);
    let blocked = Scope::World.blocked();
    let mut cost = RejectCost::default();
    // Rounds outside, configurations inside, each round starting one
    // configuration later (see rules.rs).
    for round in 0..settings.rounds {
        for (config, action, rate) in (0..CONFIGS.len()).map(|i| CONFIGS[(i + round) % CONFIGS.len()]) {
            let mut rx = Receiver::install_with(Engine::Trie, &pair, world, &blocked, &policy(&blocked, action));
            rx.geoblock().set_reject_rate(rate).expect("the reject rate");
            let napi = Napi::threaded(&pair.receiver, &pair.receiver_if);
            eprintln!("bench: reject / round {round} / {config}");
            for family in Family::ALL {
                let sources: Vec<IpAddr> = workload::sources(world, &blocked, Traffic::Blocked, family, SOURCES);
                sender.set_frame(family, syn(&pair, family));
                sender.set_sources(&sources);
                sender.send(&pair.sender, family, settings.sample / 5);
                let before = rx.geoblock().stats().expect("stats").rejects;
                let m = measure(&pair, &sender, &mut rx, &napi, family, settings.sample);
                let after = rx.geoblock().stats().expect("stats").rejects;
                cost.rows.push(RejectRow {
                    config,
                    family: family.name(),
                    round,
                    mpps: m.mpps,
                    rx_ns: m.rx_ns,
                    prog_ns: m.prog_ns,
                    sent: after.sent - before.sent,
                    suppressed: after.suppressed - before.suppressed,
                });
            }
        }
    }
    cost
}

/// A deny-list of `blocked` for every packet, dropping or rejecting.
fn policy(blocked: &BTreeSet<CountryId>, action: RuleAction) -> Policy {
    Policy::from(Rule { action, ..Rule::new(DEFAULT_RULE, Mode::Deny, blocked.clone()) })
}

impl RejectCost {
    pub fn print(&self) {
        println!("\n== Reject under a SYN flood: world table, blocked random sources, median over rounds ==");
        println!(
            "{:<24} {:<5} {:>6} {:>7} {:>8} {:>9} {:>12} {:>12}",
            "config", "fam", "Mpps", "rx ns", "prog ns", "rx vs drop", "sent/s", "suppressed/s"
        );
        for family in Family::ALL.map(Family::name) {
            let rows = |config: &str| -> Vec<&RejectRow> {
                self.rows.iter().filter(|r| r.config == config && r.family == family).collect()
            };
            let rx = |config: &str| median(rows(config).iter().map(|r| r.rx_ns).collect());
            for (config, _, _) in CONFIGS {
                let m = |f: fn(&RejectRow) -> f64| median(rows(config).iter().map(|r| f(r)).collect());
                println!(
                    "{config:<24} {family:<5} {:>6.2} {:>7.1} {:>8.1} {:>9.2} {:>12.0} {:>12.0}",
                    m(|r| r.mpps),
                    rx(config),
                    median(rows(config).iter().filter_map(|r| r.prog_ns).collect()),
                    rx(config) / rx("drop"),
                    m(|r| r.sent as f64),
                    m(|r| r.suppressed as f64),
                );
            }
        }
    }
}
