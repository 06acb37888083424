//! `cargo xtask bench`: see BENCHMARKS.md. Runs as root; everything it
//! creates lives in two network namespaces removed at the end.
//!
//! Options: --secs S (per line-rate sample, default 0.7), --rounds N
//! (default 3), --json PATH (default target/bench.json), --svg PATH
//! (default benchmarks/lookup.svg), --skip-line-rate, --full (every
//! traffic at every table scope; by default only the world gets them all),
//! --only test-run|line-rate|rules|reject|outbound|selectors|live (one part alone), --scopes cn,eu27,world
//! and --engines xdp-drop,geoblock-trie,... (line rate: only these).

use std::{path::PathBuf, time::Duration};

use geoblock_tests::{
    bench::{self, engines::Engine, report::Report, workload::Scope, Settings},
    netns,
};

fn main() {
    netns::assert_root();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| args.iter().position(|a| a == name).map(|i| args.get(i + 1).expect("a value").clone());
    let settings = Settings {
        sample: Duration::from_secs_f64(value("--secs").map_or(0.7, |v| v.parse().expect("--secs S"))),
        rounds: value("--rounds").map_or(3, |v| v.parse().expect("--rounds N")),
        cold_frames: 20_000,
        hot_repeat: 1_000_000,
        full: args.iter().any(|a| a == "--full"),
        scopes: list(value("--scopes"), &Scope::ALL.map(Scope::name)),
        engines: list(value("--engines"), &Engine::ALL.map(Engine::name)),
    };
    let json = PathBuf::from(value("--json").unwrap_or_else(|| "target/bench.json".into()));
    let svg = PathBuf::from(value("--svg").unwrap_or_else(|| "benchmarks/lookup.svg".into()));
    let only = value("--only");
    let part = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let world = geoblock::data::embedded::embedded().expect("the embedded world table");
    let mut report = Report { machine: machine(), ..Report::default() };
    if part("test-run") {
        eprintln!("bench: BPF_PROG_TEST_RUN, {} rounds", settings.rounds);
        bench::test_runs(&world, settings, &mut report);
        report.events = Some(bench::events::measure(&world, settings));
    }
    if part("line-rate") && !args.iter().any(|a| a == "--skip-line-rate") {
        bench::line_rate(&world, settings, &mut report);
        bench::report::write(&svg, &bench::report::svg(&report.line_rate));
    }
    if part("rules") {
        report.rules = Some(bench::rules::measure_all(&world, settings));
    }
    if part("reject") {
        report.reject = Some(bench::reject::measure_all(&world, settings));
    }
    if part("outbound") {
        report.outbound = Some(bench::outbound::measure(&world, settings));
    }
    if part("selectors") {
        report.selectors = Some(bench::selectors::measure_all(&world, settings));
    }
    if part("live") {
        report.live = Some(bench::live::measure(&world, settings.rounds));
    }
    report.print();
    report.events.iter().for_each(|e| e.print());
    if !report.line_rate.is_empty() {
        report.print_snmp();
    }
    if let Some(rules) = &report.rules {
        rules.print();
    }
    if let Some(live) = &report.live {
        live.print();
    }
    if let Some(reject) = &report.reject {
        reject.print();
    }
    if let Some(outbound) = &report.outbound {
        bench::outbound::print(outbound);
    }
    if let Some(selectors) = &report.selectors {
        selectors.print();
    }
    report.save_json(&json);
}

/// A comma-separated option's names, each one of `known`; kept for the whole run.
fn list(value: Option<String>, known: &[&str]) -> &'static [String] {
    let names: Vec<String> = value.map_or(vec![], |v| v.split(',').map(str::to_string).collect());
    if let Some(unknown) = names.iter().find(|n| !known.contains(&n.as_str())) {
        panic!("unknown name '{unknown}': expected some of {}", known.join(","));
    }
    Vec::leak(names)
}

/// CPU model, cores and kernel, for the record.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model =
        cpu.lines().find_map(|l| l.strip_prefix("model name")).map_or("?", |m| m.trim_start_matches([' ', '\t', ':']));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{model}, {} CPUs, Linux {}", std::thread::available_parallelism().map_or(0, |n| n.get()), kernel.trim())
}
