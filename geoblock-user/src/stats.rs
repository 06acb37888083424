//! Counters: read the per-CPU maps, sum them, present them.
//!
//! The JSON form is a stable interface for scripts (see README, "stats JSON"):
//! fields are added, never renamed. The top-level `countries`, `unknown` and
//! `totals` count every interface; `interfaces` splits them per interface.

use std::{collections::BTreeMap, path::Path, time::Duration};

use aya::maps::{Array, Map, MapData, PerCpuArray, PerCpuValues};
use geoblock_common::{
    country_stats_index, maps, total_index, Counter, CountryCounters, CountryId, Family, IfaceSlot, Total, ABI_VERSION,
    COUNTRY_SLOTS, IFACE_SLOTS, NO_COUNTRY, OTHER_IFACE,
};
use serde::Serialize;

use crate::{country, Error};

/// What `geoblock stats` reads: every counter, once.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Every interface together.
    #[serde(flatten)]
    pub all: Counts,
    /// Per interface, by name; [`OTHER_IFACE_NAME`] for interfaces without
    /// a counter slot of their own.
    pub interfaces: BTreeMap<String, Counts>,
    /// Country verdicts per address family.
    pub families: Families,
}

/// Counters of one interface, or of all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Countries with any traffic, by code.
    pub countries: BTreeMap<String, CountryCounters>,
    /// Addresses no country claims (private, unassigned...).
    pub unknown: CountryCounters,
    pub totals: Totals,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub dropped: Counter,
    pub passed: Counter,
    pub would_drop: Counter,
    /// Would have been dropped, but the source is inside an exception.
    pub exception: Counter,
    /// ARP, LLDP and other non-IP frames: passed.
    pub non_ip: Counter,
    /// Too short or malformed to read a source: passed to the kernel.
    pub unparsed: Counter,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Families {
    pub ipv4: CountryCounters,
    pub ipv6: CountryCounters,
}

/// How the counters of interfaces without a slot (more interfaces than
/// [`IFACE_SLOTS`], or traffic the daemon did not attach for) are named.
/// Parentheses: no interface name has them.
pub const OTHER_IFACE_NAME: &str = "(other)";

/// The counter maps, from a loaded program or from pins.
pub struct CounterMaps<'a> {
    pub countries: &'a Map,
    pub totals: &'a Map,
    pub families: &'a Map,
    pub ifaces: &'a Map,
}

/// The counters `geoblock stats` reads, in the order of [`CounterMaps`].
pub const COUNTER_MAPS: [&str; 4] = [maps::COUNTRY_STATS, maps::TOTALS, maps::FAMILY_STATS, maps::IFACES];

impl Stats {
    /// Reads every counter once.
    pub fn read(maps: &CounterMaps) -> Result<Stats, Error> {
        let countries: PerCpuArray<&MapData, CountryCounters> = maps.countries.try_into()?;
        let totals: PerCpuArray<&MapData, Counter> = maps.totals.try_into()?;
        let families: PerCpuArray<&MapData, CountryCounters> = maps.families.try_into()?;
        let names = iface_names(maps.ifaces)?;
        let mut stats = Stats {
            families: Families {
                ipv4: sum(families.get(&(Family::V4 as u32), 0)?),
                ipv6: sum(families.get(&(Family::V6 as u32), 0)?),
            },
            ..Stats::default()
        };
        for (slot, name) in names.into_iter().enumerate() {
            let slot = slot as u32;
            let mut counts = Counts::default();
            for country in 0..COUNTRY_SLOTS as CountryId {
                counts.add_country(country, sum(countries.get(&country_stats_index(slot, country), 0)?));
            }
            for total in [Total::NonIp, Total::Unparsed, Total::Exception] {
                *counts.totals.slot(total) = sum(totals.get(&total_index(slot, total), 0)?);
            }
            stats.all.merge(&counts);
            if name.is_some() || counts != Counts::default() {
                let name = name.unwrap_or_else(|| format!("(slot {slot})"));
                stats.interfaces.insert(name, counts);
            }
        }
        Ok(stats)
    }

    /// Reads the counters a running daemon pinned in `dir`.
    pub fn read_pinned(dir: &Path) -> Result<Stats, Error> {
        // Maps of another layout would be misread (or fail on a missing map).
        match crate::program::pinned_abi(dir) {
            Some(ABI_VERSION) | None => {}
            Some(found) => return Err(Error::OtherAbi { dir: dir.into(), found }),
        }
        let open = |name: &str, map: fn(MapData) -> Map| {
            MapData::from_pin(dir.join(name)).map(map).map_err(|_| Error::NoState(dir.to_path_buf()))
        };
        let [countries, totals, families, ifaces] = COUNTER_MAPS;
        Stats::read(&CounterMaps {
            countries: &open(countries, Map::PerCpuArray)?,
            totals: &open(totals, Map::PerCpuArray)?,
            families: &open(families, Map::PerCpuArray)?,
            ifaces: &open(ifaces, Map::Array)?,
        })
    }

    /// The counters of `iface`, or of all interfaces.
    pub fn counts(&self, iface: Option<&str>) -> Option<&Counts> {
        match iface {
            None => Some(&self.all),
            Some(name) => self.interfaces.get(name),
        }
    }
}

/// Slot → interface name; slot [`OTHER_IFACE`] is [`OTHER_IFACE_NAME`],
/// other slots without a name are `None`.
fn iface_names(map: &Map) -> Result<Vec<Option<String>>, Error> {
    let ifaces: Array<&MapData, IfaceSlot> = map.try_into()?;
    (0..IFACE_SLOTS)
        .map(|slot| match slot {
            OTHER_IFACE => Ok(Some(OTHER_IFACE_NAME.to_string())),
            _ => Ok(iface_name(&ifaces.get(&slot, 0)?.name)),
        })
        .collect()
}

/// A NUL-padded name, or `None` for an empty one.
pub fn iface_name(raw: &[u8; 16]) -> Option<String> {
    let len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    (len > 0).then(|| String::from_utf8_lossy(&raw[..len]).into_owned())
}

fn sum<T: aya::Pod + Default + std::ops::Add<Output = T>>(per_cpu: PerCpuValues<T>) -> T {
    per_cpu.iter().fold(T::default(), |acc, c| acc + *c)
}

impl Counts {
    fn add_country(&mut self, country: CountryId, c: CountryCounters) {
        if c == CountryCounters::default() {
            return;
        }
        let t = &mut self.totals;
        for (total, (_, pair)) in [&mut t.dropped, &mut t.passed, &mut t.would_drop].into_iter().zip(c.by_action()) {
            *total = *total + pair;
        }
        let slot = match country {
            NO_COUNTRY => &mut self.unknown,
            _ => self.countries.entry(country::code(country).to_string()).or_default(),
        };
        *slot = *slot + c;
    }

    /// Adds `other`'s counters to these.
    fn merge(&mut self, other: &Counts) {
        for (code, c) in &other.countries {
            let slot = self.countries.entry(code.clone()).or_default();
            *slot = *slot + *c;
        }
        self.unknown = self.unknown + other.unknown;
        let t = &mut self.totals;
        let mine = [&mut t.dropped, &mut t.passed, &mut t.would_drop, &mut t.exception, &mut t.non_ip, &mut t.unparsed];
        for (total, (_, theirs)) in mine.into_iter().zip(other.totals.named()) {
            *total = *total + theirs;
        }
    }

    /// Countries (and `--` for no country) with their counters.
    pub fn rows(&self) -> Vec<(String, CountryCounters)> {
        let mut rows: Vec<_> = self.countries.iter().map(|(cc, c)| (cc.clone(), *c)).collect();
        if self.unknown != CountryCounters::default() {
            rows.push(("--".into(), self.unknown));
        }
        rows
    }
}

impl Totals {
    fn slot(&mut self, total: Total) -> &mut Counter {
        match total {
            Total::NonIp => &mut self.non_ip,
            Total::Unparsed => &mut self.unparsed,
            Total::Exception => &mut self.exception,
        }
    }

    /// Every total with its name in the table, in field order.
    pub fn named(&self) -> [(&'static str, Counter); 6] {
        [
            ("dropped", self.dropped),
            ("passed", self.passed),
            ("would-drop", self.would_drop),
            ("exception", self.exception),
            ("non-ip", self.non_ip),
            ("unparsed", self.unparsed),
        ]
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

const COLUMNS: [&str; 6] = ["dropped", "dropped B", "passed", "passed B", "would-drop", "would-drop B"];

impl View {
    /// The counters as a table.
    pub fn render(&self, stats: &Stats) -> String {
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
        out
    }

    /// Per-second rates between two reads `elapsed` apart, as a table.
    pub fn render_rates(&self, before: &Stats, now: &Stats, elapsed: Duration) -> String {
        let (Some(b), Some(n)) = (before.counts(self.iface.as_deref()), now.counts(self.iface.as_deref())) else {
            return self.no_such_iface(now);
        };
        self.table(rates(b, n, elapsed), "/s")
    }

    fn no_such_iface(&self, stats: &Stats) -> String {
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
        let mut out = format!("{:<8}", "country");
        for column in COLUMNS {
            out += &format!("{:>16}", format!("{column}{per}"));
        }
        out.push('\n');
        for (cc, v) in rows {
            out += &format!("{cc:<8}");
            for (i, value) in v.iter().enumerate() {
                out += &format!("{:>16}", human(*value, if i % 2 == 1 { "B" } else { "" }));
            }
            out.push('\n');
        }
        out
    }
}

fn values(c: &CountryCounters) -> [f64; 6] {
    [c.dropped_packets, c.dropped_bytes, c.passed_packets, c.passed_bytes, c.would_drop_packets, c.would_drop_bytes]
        .map(|v| v as f64)
}

/// Per-second rates of every row of `now` since `before`. A counter that
/// went down (the maps were recreated) counts from zero.
pub fn rates(before: &Counts, now: &Counts, elapsed: Duration) -> Vec<Row> {
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
    use super::*;

    fn counts(rows: &[(&str, u64, u64)]) -> Counts {
        let mut c = Counts::default();
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
        let stats =
            Stats { all: counts(&[("CN", 5, 0), ("RU", 9, 0), ("DE", 0, 7), ("KP", 1, 0)]), ..Stats::default() };
        let view = View { top: 2, ..View::default() };
        let text = view.render(&stats);
        let rows: Vec<&str> = text.lines().skip(1).take(2).map(|l| &l[..2]).collect();
        assert_eq!(rows, ["RU", "CN"]);
        assert!(!text.contains("\nDE") && !text.contains("\nKP"));
        let only = View { countries: vec!["de".into()], ..View::default() }.render(&stats);
        assert!(only.contains("\nDE") && !only.contains("\nRU"));
        let none = View { iface: Some("eth9".into()), ..View::default() }.render(&stats);
        assert!(none.contains("no counters for interface eth9"));
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

    #[test]
    fn merge_adds_interfaces_up() {
        let mut all = counts(&[("CN", 1, 2)]);
        let mut other = counts(&[("CN", 3, 0), ("RU", 1, 0)]);
        other.totals.non_ip = Counter { packets: 2, bytes: 120 };
        all.merge(&other);
        assert_eq!(all.countries["CN"].dropped_packets, 4);
        assert_eq!(all.countries["RU"].dropped_packets, 1);
        assert_eq!(all.totals.dropped, Counter { packets: 5, bytes: 500 });
        assert_eq!(all.totals.non_ip, Counter { packets: 2, bytes: 120 });
    }

    #[test]
    fn names_are_nul_padded() {
        let mut raw = [0u8; 16];
        raw[..4].copy_from_slice(b"eth0");
        assert_eq!(iface_name(&raw).as_deref(), Some("eth0"));
        assert_eq!(iface_name(&[0; 16]), None);
    }
}
