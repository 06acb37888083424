//! `geoblock stats`: the counters of a running daemon (or of the state it
//! left) as a table, as JSON, or as rates redrawn every few seconds.

use std::{collections::BTreeMap, io::Write as _, path::PathBuf, time::Duration};

use anyhow::{Context as _, Result};
use clap::Args;
use geoblock::{
    daemon::config::DEFAULT_STATE_DIR,
    kernel::counters::{Counts, Rejects, Stats, Traffic},
    policy::UNMATCHED_RULE,
    protocol::Versioned,
};
use geoblock_common::{Action, CountryCounters};

use crate::args::parse_row;

#[derive(Args)]
pub struct StatsArgs {
    /// Print the documented JSON schema (every counter) instead of a table.
    #[arg(long, conflicts_with = "watch")]
    json: bool,
    /// Rows shown, busiest droppers first (0: all).
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// Only these countries (comma-separated ISO codes; -- for addresses without a country).
    #[arg(long, value_delimiter = ',', value_parser = parse_row)]
    country: Vec<String>,
    /// Only the counters of this interface.
    #[arg(long)]
    iface: Option<String>,
    /// Redraw every SECONDS (default 1) with per-second rates, until Ctrl-C.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "1")]
    watch: Option<f64>,
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
}

pub fn stats(args: StatsArgs) -> Result<()> {
    let view = View { top: args.top, countries: args.country, iface: args.iface };
    if let Some(seconds) = args.watch {
        return watch(&args.state_dir, &view, seconds);
    }
    let stats = Stats::read_pinned(&args.state_dir)?;
    match args.json {
        true => println!("{}", Versioned::new(&stats).pretty()),
        false => print!("{}", view.render(&stats)),
    }
    Ok(())
}

/// `stats --watch`: rates between consecutive reads, redrawn until interrupted.
fn watch(state_dir: &std::path::Path, view: &View, seconds: f64) -> Result<()> {
    let interval = Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|i| !i.is_zero())
        .with_context(|| format!("--watch {seconds}: give a positive number of seconds"))?;
    let mut before = (Stats::read_pinned(state_dir)?, std::time::Instant::now());
    loop {
        std::thread::sleep(interval);
        let now = (Stats::read_pinned(state_dir)?, std::time::Instant::now());
        let elapsed = now.1 - before.1;
        // Home and clear: a redraw in place on any terminal.
        println!("\x1b[H\x1b[2Jgeoblock stats: per second over {:.1} s (Ctrl-C stops)", elapsed.as_secs_f64());
        print!("{}", view.render_rates(&before.0, &now.0, elapsed));
        std::io::stdout().flush()?;
        before = now;
    }
}

/// Which rows `geoblock stats` shows.
#[derive(Clone, Debug, Default)]
pub struct View {
    /// Rows shown, busiest droppers first (0: all).
    pub top: usize,
    /// Only these country codes (`--` for no country); empty: all.
    pub countries: Vec<String>,
    /// Only this interface's counters; `None`: every interface.
    pub iface: Option<String>,
}

/// A table row: six numbers in the order of [`CountryCounters`]'s fields.
type Row = (String, [f64; 6]);

/// Each action's packets and bytes, in the order of [`CountryCounters`]'s fields.
const COLUMNS: [(Action, &str); 6] = [
    (Action::Drop, ""),
    (Action::Drop, " B"),
    (Action::Pass, ""),
    (Action::Pass, " B"),
    (Action::WouldDrop, ""),
    (Action::WouldDrop, " B"),
];

/// What heads the outbound counters, shown once there are any.
const OUTBOUND_HEAD: &str = "\noutbound (by destination; refused connects and sends: drops of 0 bytes on (other))\n";

impl View {
    /// The counters as tables: inbound, then outbound if it counted anything.
    pub fn render(&self, stats: &Stats) -> String {
        let mut out = self.render_direction(&stats.inbound, true);
        // Answers count every interface together: no line for one interface.
        if self.iface.is_none() && stats.rejects != Rejects::default() {
            let r = stats.rejects;
            out += &format!("rejects: {} answers sent, {} suppressed by the rate limit\n", r.sent, r.suppressed);
        }
        if stats.outbound.all != Traffic::default() {
            out += OUTBOUND_HEAD;
            out += &self.render_direction(&stats.outbound, false);
        }
        out
    }

    /// One direction's counters as a table; its selectors when they
    /// counted anything, or `inbound` and there are any.
    fn render_direction(&self, stats: &Counts, inbound: bool) -> String {
        let Some(counts) = stats.counts(self.iface.as_deref()) else {
            return self.no_such_iface(stats);
        };
        let rows = counts.rows().into_iter().map(|(cc, c)| (cc, values(&c))).collect();
        let mut out = self.table(rows, "");
        for (name, p) in counts.totals.named() {
            out += &format!(
                "total {name:<12}{:>10} packets {:>10}\n",
                human(p.packets as f64, ""),
                human(p.bytes as f64, "B")
            );
        }
        // Rules count every interface together: no section for one interface.
        if self.iface.is_none() && !stats.rules.is_empty() {
            out += &rules_table(stats);
        }
        let counted = stats.selectors.iter().any(|s| s.counters != CountryCounters::default());
        if self.iface.is_none() && (counted || inbound && !stats.selectors.is_empty()) {
            out += &named_table("selector", stats.selectors.iter().map(|s| (s.name.as_str(), s.counters)));
        }
        out
    }

    /// Per-second rates between two reads `elapsed` apart, as tables:
    /// inbound, then outbound if it counted anything.
    pub fn render_rates(&self, before: &Stats, now: &Stats, elapsed: Duration) -> String {
        let mut out = self.direction_rates(&before.inbound, &now.inbound, elapsed);
        if now.outbound.all != Traffic::default() {
            out += OUTBOUND_HEAD;
            out += &self.direction_rates(&before.outbound, &now.outbound, elapsed);
        }
        out
    }

    fn direction_rates(&self, before: &Counts, now: &Counts, elapsed: Duration) -> String {
        let (Some(b), Some(n)) = (before.counts(self.iface.as_deref()), now.counts(self.iface.as_deref())) else {
            return self.no_such_iface(now);
        };
        self.table(rates(b, n, elapsed), "/s")
    }

    fn no_such_iface(&self, stats: &Counts) -> String {
        let known: Vec<&str> = stats.interfaces.keys().map(String::as_str).collect();
        format!("no counters for interface {} (known: {})\n", self.iface.as_deref().unwrap_or(""), known.join(", "))
    }

    /// The selected rows, busiest droppers first, with units `per`.
    fn table(&self, mut rows: Vec<Row>, per: &str) -> String {
        rows.retain(|(cc, _)| self.countries.is_empty() || self.countries.iter().any(|c| c.eq_ignore_ascii_case(cc)));
        rows.sort_by(|(a, x), (b, y)| y[0].total_cmp(&x[0]).then_with(|| a.cmp(b)));
        if self.top > 0 {
            rows.truncate(self.top);
        }
        let mut out = header("country", 8, per);
        for (cc, v) in rows {
            out += &row(&cc, 8, &v);
        }
        out
    }
}

/// The column heads after `first`, `width` wide, with units `per`.
fn header(first: &str, width: usize, per: &str) -> String {
    let mut out = format!("{first:<width$}");
    for (action, unit) in COLUMNS {
        out += &format!("{:>16}", format!("{}{unit}{per}", action.name()));
    }
    out + "\n"
}

/// A row: its name, `width` wide, and the six numbers.
fn row(name: &str, width: usize, values: &[f64; 6]) -> String {
    let mut out = format!("{name:<width$}");
    for (i, value) in values.iter().enumerate() {
        out += &format!("{:>16}", human(*value, if i % 2 == 1 { "B" } else { "" }));
    }
    out + "\n"
}

/// The verdicts of each rule, in rule order, both families together; then
/// the packets no rule matched, as `(none)` (no rule name has parentheses).
fn rules_table(stats: &Counts) -> String {
    let rules = stats.rules.iter().map(|r| (r.name.as_str(), r.families));
    let rows = rules.chain([(UNMATCHED_RULE, stats.unmatched)]).map(|(name, f)| (name, f.ipv4 + f.ipv6));
    named_table("rule", rows)
}

/// A table headed `first` of named counters, in their order.
fn named_table<'a>(first: &str, rows: impl Iterator<Item = (&'a str, CountryCounters)>) -> String {
    let rows: Vec<_> = rows.collect();
    let width = rows.iter().map(|(name, _)| name.len() + 2).chain([8]).max().unwrap_or(8);
    let mut out = format!("\n{}", header(first, width, ""));
    for (name, c) in rows {
        out += &row(name, width, &values(&c));
    }
    out
}

fn values(c: &CountryCounters) -> [f64; 6] {
    [c.dropped_packets, c.dropped_bytes, c.passed_packets, c.passed_bytes, c.would_drop_packets, c.would_drop_bytes]
        .map(|v| v as f64)
}

/// Per-second rates of every row of `now` since `before`. A counter that
/// went down (the maps were recreated) counts from zero.
pub fn rates(before: &Traffic, now: &Traffic, elapsed: Duration) -> Vec<Row> {
    let secs = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
    let earlier: BTreeMap<String, CountryCounters> = before.rows().into_iter().collect();
    now.rows()
        .into_iter()
        .map(|(cc, c)| {
            let then = values(&earlier.get(&cc).copied().unwrap_or_default());
            let mut rate = values(&c);
            for (r, t) in rate.iter_mut().zip(then) {
                *r = if *r >= t { (*r - t) / secs } else { *r / secs };
            }
            (cc, rate)
        })
        .collect()
}

/// `n` in SI units: 999, 1.2k, 3.4M... with `unit` after a space when given.
pub fn human(n: f64, unit: &str) -> String {
    let (mut value, mut prefix) = (n, "");
    for p in ["k", "M", "G", "T", "P"] {
        if value < 999.5 {
            break;
        }
        (value, prefix) = (value / 1000.0, p);
    }
    let number = match (prefix, value.fract() == 0.0) {
        ("", true) => format!("{value:.0}"),
        ("", false) => format!("{value:.1}"),
        _ if value < 9.995 => format!("{value:.2}"),
        _ if value < 99.95 => format!("{value:.1}"),
        _ => format!("{value:.0}"),
    };
    match unit {
        "" => format!("{number}{prefix}"),
        _ => format!("{number} {prefix}{unit}"),
    }
}

#[cfg(test)]
mod tests {
    use geoblock::{
        country,
        kernel::counters::{Families, RuleCounts, SelectorCounts},
    };

    use super::*;

    fn counts(rows: &[(&str, u64, u64)]) -> Traffic {
        let mut c = Traffic::default();
        for &(cc, dropped, passed) in rows {
            let counters = CountryCounters {
                dropped_packets: dropped,
                dropped_bytes: dropped * 100,
                passed_packets: passed,
                passed_bytes: passed * 100,
                ..CountryCounters::default()
            };
            c.add_country(country::parse(cc).unwrap(), counters);
        }
        c
    }

    #[test]
    fn rates_are_differences_per_second() {
        let before = counts(&[("CN", 100, 10), ("RU", 50, 0)]);
        let now = counts(&[("CN", 300, 10), ("RU", 50, 0), ("KP", 4, 0)]);
        let rates: BTreeMap<String, [f64; 6]> = rates(&before, &now, Duration::from_secs(2)).into_iter().collect();
        assert_eq!(rates["CN"], [100.0, 10_000.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(rates["RU"], [0.0; 6]);
        // A country first seen in the second read counts from zero.
        assert_eq!(rates["KP"], [2.0, 200.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn rates_of_reset_counters_count_from_zero() {
        let before = counts(&[("CN", 1000, 0)]);
        let now = counts(&[("CN", 30, 0)]);
        let rates = rates(&before, &now, Duration::from_millis(500));
        assert_eq!(rates, vec![("CN".to_string(), [60.0, 6000.0, 0.0, 0.0, 0.0, 0.0])]);
    }

    #[test]
    fn table_is_sorted_by_drops_filtered_and_cut() {
        let inbound =
            Counts { all: counts(&[("CN", 5, 0), ("RU", 9, 0), ("DE", 0, 7), ("KP", 1, 0)]), ..Counts::default() };
        let stats = Stats { inbound, ..Stats::default() };
        let view = View { top: 2, ..View::default() };
        let text = view.render(&stats);
        let rows: Vec<&str> = text.lines().skip(1).take(2).map(|l| &l[..2]).collect();
        assert_eq!(rows, ["RU", "CN"]);
        assert!(!text.contains("\nDE") && !text.contains("\nKP"));
        let only = View { countries: vec!["de".into()], ..View::default() }.render(&stats);
        assert!(only.contains("\nDE") && !only.contains("\nRU"));
        let none = View { iface: Some("eth9".into()), ..View::default() }.render(&stats);
        assert!(none.contains("no counters for interface eth9"));
        assert!(!text.contains("outbound"), "no outbound section without outbound traffic");
    }

    #[test]
    fn outbound_counts_follow_inbound_ones() {
        let outbound = Counts { all: counts(&[("CN", 2, 0)]), ..Counts::default() };
        let stats = Stats {
            inbound: Counts { all: counts(&[("RU", 9, 0)]), ..Counts::default() },
            outbound,
            ..Stats::default()
        };
        let text = View::default().render(&stats);
        let (inbound, outbound) = text.split_once("\noutbound (by destination").expect(&text);
        assert!(inbound.contains("\nRU") && !inbound.contains("\nCN"), "{text}");
        assert!(outbound.contains("\nCN") && !outbound.contains("\nRU"), "{text}");
    }

    #[test]
    fn rules_are_listed_in_order_with_what_no_rule_matched() {
        let dropped = |packets| CountryCounters { dropped_packets: packets, ..CountryCounters::default() };
        let rule = |name: &str, v4, v6| RuleCounts {
            name: name.into(),
            families: Families { ipv4: dropped(v4), ipv6: dropped(v6) },
        };
        let inbound = Counts {
            rules: vec![rule("ssh", 3, 4), rule("a-long-rule-name", 0, 1)],
            unmatched: Families {
                ipv4: CountryCounters { passed_packets: 9, ..CountryCounters::default() },
                ..Families::default()
            },
            ..Counts::default()
        };
        let stats = Stats { inbound, ..Stats::default() };
        let text = View::default().render(&stats);
        let rules: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("rule ")).collect();
        assert_eq!(rules.len(), 4, "{text}");
        assert!(rules[1].starts_with("ssh   ") && rules[1].split_whitespace().nth(1) == Some("7"), "{text}");
        assert!(rules[2].starts_with("a-long-rule-name  "), "{text}");
        let unmatched: Vec<&str> = rules[3].split_whitespace().collect();
        assert_eq!((unmatched[0], unmatched[4]), ("(none)", "9"), "passed packets no rule matched: {text}");
        let one_iface = View { iface: Some("(other)".into()), ..View::default() };
        let inbound = Counts { interfaces: [("(other)".to_string(), Traffic::default())].into(), ..stats.inbound };
        let stats = Stats { inbound, ..Stats::default() };
        assert!(!one_iface.render(&stats).contains("ssh"), "rules count every interface together");
    }

    #[test]
    fn selectors_follow_the_rules_and_show_outbound_when_they_counted() {
        let selector = |name: &str, dropped| SelectorCounts {
            name: name.into(),
            counters: CountryCounters { dropped_packets: dropped, ..CountryCounters::default() },
        };
        let inbound = Counts {
            all: counts(&[("CN", 5, 0)]),
            rules: vec![RuleCounts { name: "default".into(), ..RuleCounts::default() }],
            selectors: vec![selector("AS4134", 5), selector("list:tor", 0)],
            ..Counts::default()
        };
        let outbound = Counts {
            all: counts(&[("DE", 0, 1)]),
            selectors: vec![selector("AS4134", 0), selector("list:tor", 0)],
            ..Counts::default()
        };
        let text = View::default().render(&Stats { inbound, outbound, ..Stats::default() });
        let (inbound, outbound) = text.split_once("\noutbound (by destination").expect(&text);
        let table: Vec<&str> = inbound.lines().skip_while(|l| !l.starts_with("selector ")).collect();
        assert_eq!(table.len(), 3, "{text}");
        assert!(table[0].starts_with("selector  ") && table[0].contains("drop"), "{text}");
        assert_eq!(table[1].split_whitespace().take(2).collect::<Vec<_>>(), ["AS4134", "5"], "{text}");
        assert!(table[2].starts_with("list:tor  "), "a selector that counted nothing yet is listed: {text}");
        assert!(!outbound.contains("selector"), "outbound selectors that counted nothing: no section: {text}");
        assert!(!View::default().render(&Stats::default()).contains("selector"), "no selectors, no section");
    }

    #[test]
    fn human_units() {
        assert_eq!(human(0.0, ""), "0");
        assert_eq!(human(999.0, ""), "999");
        assert_eq!(human(2.5, ""), "2.5");
        assert_eq!(human(1234.0, ""), "1.23k");
        assert_eq!(human(56_789.0, "B"), "56.8 kB");
        assert_eq!(human(987_654_321.0, "B"), "988 MB");
        assert_eq!(human(3e12, ""), "3.00T");
    }
}
