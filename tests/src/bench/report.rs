//! The bench's results: one row per measurement, printed as a table, saved
//! as JSON, and drawn as an SVG plot.

use std::{collections::BTreeMap, fmt::Write as _, path::Path};

use serde::Serialize;

/// One line-rate measurement: a configuration, a traffic, a round.
#[derive(Clone, Debug, Serialize)]
pub struct LineRate {
    pub scope: &'static str,
    /// Prefixes in geoblock's table for the scope and family, and in the
    /// netfilter engines' sets (the blocked countries').
    pub table_prefixes: usize,
    pub set_prefixes: usize,
    pub engine: &'static str,
    pub family: &'static str,
    pub traffic: &'static str,
    pub round: usize,
    /// Packets the receiver handled, and per second.
    pub packets: u64,
    pub mpps: f64,
    /// Share of the wall time the receiver's NAPI thread was on its CPU
    /// (near 1: saturated; below: the sender was the bottleneck).
    pub rx_busy: f64,
    /// Receiver CPU (NAPI thread) per packet.
    pub rx_ns: f64,
    /// `bpf_stats` run time per run of the receiver's XDP program (the XDP
    /// baselines and geoblock).
    pub prog_ns: Option<f64>,
    /// Share of packets the engine dropped, and the share it should.
    pub dropped_share: Option<f64>,
    pub expected_share: f64,
}

/// The BPF_PROG_TEST_RUN numbers of one program and family.
#[derive(Clone, Debug, Serialize)]
pub struct TestRun {
    pub engine: &'static str,
    pub family: &'static str,
    pub round: usize,
    pub hot_ns: f64,
    pub cold_ns: f64,
}

/// Table loading: time and kernel memory.
#[derive(Clone, Debug, Serialize)]
pub struct Load {
    pub engine: &'static str,
    pub scope: &'static str,
    pub prefixes: usize,
    pub load_ms: f64,
    /// Kernel memory of the table, where known.
    pub bytes: Option<u64>,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub machine: String,
    pub test_runs: Vec<TestRun>,
    pub loads: Vec<Load>,
    pub memory: Vec<super::kernel::MapMemory>,
    pub trie_build_ms: Vec<f64>,
    pub line_rate: Vec<LineRate>,
    /// The receiver's IP/UDP error and delivery counters after all runs
    /// (checksums the sender kept valid show as no errors).
    pub receiver_snmp: BTreeMap<String, u64>,
    /// Per-packet cost of sampled drop events, off and on.
    pub events: Option<super::events::EventsCost>,
    /// Reload, policy change and packet-path stalls of live operations.
    pub live: Option<super::live::Live>,
    /// Rules, replies and the egress program.
    pub rules: Option<super::rules::RulesCost>,
    /// Rejecting against dropping under a SYN flood.
    pub reject: Option<super::reject::RejectCost>,
    /// Outbound rules on the egress program.
    pub outbound: Option<Vec<super::outbound::OutboundRow>>,
    /// Selector rules against countries alone, and the selector tables.
    pub selectors: Option<super::selectors::SelectorsCost>,
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// "median (min–max)" of `v`.
fn spread(v: &[f64]) -> String {
    let (lo, hi) = v.iter().fold((f64::MAX, f64::MIN), |(l, h), &x| (l.min(x), h.max(x)));
    format!("{:.1} ({:.1}-{:.1})", median(v.to_vec()), lo, hi)
}

/// Line-rate rows grouped by (scope, family, traffic, engine), rounds folded.
pub type Key = (&'static str, &'static str, &'static str, &'static str);

pub fn grouped(rows: &[LineRate]) -> BTreeMap<Key, Vec<&LineRate>> {
    let mut groups: BTreeMap<Key, Vec<&LineRate>> = BTreeMap::new();
    for r in rows {
        groups.entry((r.scope, r.family, r.traffic, r.engine)).or_default().push(r);
    }
    groups
}

impl Report {
    /// Prints the parts that were measured (`--only` runs some of them).
    pub fn print(&self) {
        if !self.test_runs.is_empty() {
            self.print_test_runs();
        }
        if !self.loads.is_empty() {
            self.print_loads();
        }
        if !self.line_rate.is_empty() {
            self.print_line_rate();
        }
    }

    fn print_test_runs(&self) {
        println!("\n== BPF_PROG_TEST_RUN, ns/packet, median (min-max) over rounds ==");
        println!("{:<14} {:<5} {:>22} {:>22}", "program", "fam", "hot (same frame)", "cold (new source)");
        // (family, engine) → hot and cold ns per packet, one per round.
        type Runs<'a> = BTreeMap<(&'a str, &'a str), (Vec<f64>, Vec<f64>)>;
        let mut runs = Runs::new();
        for t in &self.test_runs {
            let e = runs.entry((t.family, t.engine)).or_default();
            e.0.push(t.hot_ns);
            e.1.push(t.cold_ns);
        }
        for ((fam, engine), (hot, cold)) in &runs {
            println!("{engine:<14} {fam:<5} {:>22} {:>22}", spread(hot), spread(cold));
        }
        println!("trie build (userspace, world v4+v6): {} ms", spread(&self.trie_build_ms));
        println!("\n== Kernel memory of geoblock's maps (trie backend, world table) ==");
        for m in &self.memory {
            println!("{:<20} {:>12} bytes", m.name, m.bytes);
        }
        println!("{:<20} {:>12} bytes", "total", self.memory.iter().map(|m| m.bytes).sum::<u64>());
    }

    fn print_loads(&self) {
        println!("\n== Loading tables ==");
        println!("{:<14} {:<6} {:>9} {:>12} {:>14}", "engine", "scope", "prefixes", "load ms", "kernel bytes");
        for l in &self.loads {
            let bytes = l.bytes.map_or("-".into(), |b| b.to_string());
            println!("{:<14} {:<6} {:>9} {:>12.1} {:>14}", l.engine, l.scope, l.prefixes, l.load_ms, bytes);
        }
    }

    fn print_line_rate(&self) {
        println!("\n== Line rate: receiver CPU ns/packet and XDP program ns/run, median (min-max) over rounds ==");
        println!(
            "{:<6} {:<5} {:<8} {:<14} {:>7} {:>5} {:>20} {:>20} {:>8}",
            "scope", "fam", "traffic", "engine", "Mpps", "busy", "rx ns/pkt", "prog ns/run", "dropped"
        );
        for ((scope, fam, traffic, engine), rs) in grouped(&self.line_rate) {
            let rx: Vec<f64> = rs.iter().map(|r| r.rx_ns).collect();
            let prog: Vec<f64> = rs.iter().filter_map(|r| r.prog_ns).collect();
            let mpps = median(rs.iter().map(|r| r.mpps).collect());
            let busy = median(rs.iter().map(|r| r.rx_busy).collect()) * 100.0;
            let dropped = rs[0].dropped_share.map_or("-".into(), |d| format!("{:.1}%", d * 100.0));
            let prog = if prog.is_empty() { "-".into() } else { spread(&prog) };
            println!(
                "{scope:<6} {fam:<5} {traffic:<8} {engine:<14} {mpps:>7.2} {busy:>4.0}% {:>20} {prog:>20} {dropped:>8}",
                spread(&rx)
            );
        }
    }

    pub fn print_snmp(&self) {
        println!("\n== Receiver counters after the line-rate runs ==");
        for (k, v) in &self.receiver_snmp {
            println!("{k:<24} {v}");
        }
    }

    pub fn save_json(&self, path: &Path) {
        write(path, &serde_json::to_string_pretty(self).expect("serializing the report"));
    }
}

pub fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    println!("wrote {}", path.display());
}

const COLORS: [(&str, &str); 7] = [
    ("xdp-drop", "#7f7f7f"),
    ("xdp-pass", "#bcbd22"),
    ("xdp-parse-drop", "#9467bd"),
    ("geoblock-trie", "#1f77b4"),
    ("geoblock-lpm", "#2ca02c"),
    ("nftables", "#d62728"),
    ("ipset", "#ff7f0e"),
];

/// Receiver CPU ns/packet (mixed traffic, median over rounds) against the
/// prefixes each engine holds, log-log, one panel per family.
pub fn svg(rows: &[LineRate]) -> String {
    let (w, h, pad) = (440.0, 340.0, 60.0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
        2.0 * w, h + 60.0
    );
    let _ = writeln!(s, "<text x=\"{}\" y=\"18\" text-anchor=\"middle\" font-size=\"14\">Receiver CPU per packet (mixed traffic) vs prefixes held — cargo xtask bench</text>", w);
    for (panel, fam) in ["ipv4", "ipv6"].iter().enumerate() {
        let series: Vec<(&str, Vec<(f64, f64)>)> = COLORS
            .iter()
            .map(|(engine, _)| {
                let mut pts: Vec<(f64, f64)> = grouped(rows)
                    .into_iter()
                    .filter(|((_, f, t, e), _)| f == fam && *t == "mix" && e == engine)
                    .map(|(_, rs)| {
                        let held = if !matches!(*engine, "nftables" | "ipset") {
                            rs[0].table_prefixes
                        } else {
                            rs[0].set_prefixes
                        };
                        ((held.max(1)) as f64, median(rs.iter().map(|r| r.rx_ns).collect()))
                    })
                    .collect();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                (*engine, pts)
            })
            .collect();
        let all: Vec<(f64, f64)> = series.iter().flat_map(|(_, p)| p.clone()).collect();
        if all.is_empty() {
            continue;
        }
        let (x0, x1) = bounds(all.iter().map(|p| p.0.log10()));
        let (y0, y1) = bounds(all.iter().map(|p| p.1.log10()));
        let ox = panel as f64 * w;
        let px = |x: f64| ox + pad + (x.log10() - x0) / (x1 - x0) * (w - 1.5 * pad);
        let py = |y: f64| 30.0 + h - pad - (y.log10() - y0) / (y1 - y0) * (h - 1.5 * pad);
        let _ =
            writeln!(s, "<text x=\"{}\" y=\"40\" text-anchor=\"middle\" font-size=\"13\">{fam}</text>", ox + w / 2.0);
        axis(&mut s, (x0, x1), (y0, y1), &px, &py, ox, h, pad, w);
        for (engine, pts) in &series {
            let color = COLORS.iter().find(|c| c.0 == *engine).unwrap().1;
            let path: Vec<String> = pts.iter().map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y))).collect();
            let _ = writeln!(
                s,
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
                path.join(" ")
            );
            for &(x, y) in pts {
                let _ = writeln!(s, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"><title>{engine}: {x} prefixes, {y:.0} ns</title></circle>", px(x), py(y));
            }
        }
    }
    for (i, (engine, color)) in COLORS.iter().enumerate() {
        let x = 40.0 + i as f64 * 140.0;
        let _ = writeln!(s, "<rect x=\"{x}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{color}\"/><text x=\"{}\" y=\"{}\">{engine}</text>", h + 38.0, x + 16.0, h + 48.0);
    }
    s.push_str("</svg>\n");
    s
}

/// Decade-padded log bounds of `values` (already log10).
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(v), h.max(v)));
    (lo.floor(), hi.ceil().max(lo.floor() + 1.0))
}

#[allow(clippy::too_many_arguments)]
fn axis(
    s: &mut String,
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
    px: &dyn Fn(f64) -> f64,
    py: &dyn Fn(f64) -> f64,
    ox: f64,
    h: f64,
    pad: f64,
    w: f64,
) {
    let (left, bottom) = (ox + pad, 30.0 + h - pad);
    let _ = writeln!(
        s,
        "<line x1=\"{left}\" y1=\"{bottom}\" x2=\"{}\" y2=\"{bottom}\" stroke=\"black\"/>",
        ox + w - pad / 2.0
    );
    let _ =
        writeln!(s, "<line x1=\"{left}\" y1=\"{bottom}\" x2=\"{left}\" y2=\"{}\" stroke=\"black\"/>", 30.0 + pad / 2.0);
    for d in x0 as i32..=x1 as i32 {
        let x = px(10f64.powi(d));
        let _ = writeln!(s, "<line x1=\"{x:.1}\" y1=\"{bottom}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"black\"/><text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">1e{d}</text>", bottom + 4.0, bottom + 16.0);
    }
    for d in y0 as i32..=y1 as i32 {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(d);
            if v.log10() > y1 + 1e-9 {
                continue;
            }
            let y = py(v);
            let _ = writeln!(s, "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v}</text>", ox + w - pad / 2.0, left - 4.0, y + 4.0);
        }
    }
    let _ = writeln!(s, "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">prefixes held (geoblock: its table; nftables/ipset: the blocked set)</text>", ox + w / 2.0, bottom + 32.0);
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 {0} {1})\">receiver ns/packet</text>",
        ox + 16.0,
        30.0 + h / 2.0
    );
}
