//! Counters: read the per-CPU maps, sum them, present them.
//!
//! The JSON form is a stable interface for scripts (see README, "stats JSON"):
//! fields are added, never renamed.

use std::{collections::BTreeMap, path::Path};

use aya::maps::{Map, MapData, PerCpuArray};
use geoblock_common::{maps, CountryCounters, Counter, Total, NO_COUNTRY};
use serde::Serialize;

use crate::{country, Error};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Countries with any traffic, by code.
    pub countries: BTreeMap<String, CountryStats>,
    /// Addresses no country claims (private, unassigned...).
    pub unknown: CountryStats,
    pub totals: Totals,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CountryStats {
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
    pub passed_packets: u64,
    pub passed_bytes: u64,
    pub would_drop_packets: u64,
    pub would_drop_bytes: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub dropped: Packets,
    pub passed: Packets,
    pub would_drop: Packets,
    /// Would have been dropped, but the source is inside an exception.
    pub exception: Packets,
    /// ARP, LLDP and other non-IP frames: passed.
    pub non_ip: Packets,
    /// Too short or malformed to read a source: passed to the kernel.
    pub unparsed: Packets,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Packets {
    pub packets: u64,
    pub bytes: u64,
}

impl Stats {
    /// Reads the counters from live maps.
    pub fn read(countries: &Map, totals: &Map) -> Result<Stats, Error> {
        let countries: PerCpuArray<&MapData, CountryCounters> = countries.try_into()?;
        let totals: PerCpuArray<&MapData, Counter> = totals.try_into()?;
        let mut stats = Stats::default();
        for (slot, per_cpu) in countries.iter().enumerate() {
            let sum = per_cpu?.iter().fold(CountryStats::default(), |acc, c| acc.add(c));
            stats.add_country(slot as u16, sum);
        }
        for total in [Total::NonIp, Total::Unparsed, Total::Exception] {
            let per_cpu = totals.get(&(total as u32), 0)?;
            *stats.totals.slot(total) =
                per_cpu.iter().fold(Packets::default(), |acc, c| acc.add(c.packets, c.bytes));
        }
        Ok(stats)
    }

    /// Reads the counters a running daemon pinned in `dir`.
    pub fn read_pinned(dir: &Path) -> Result<Stats, Error> {
        let open = |name: &str| {
            let path = dir.join(name);
            MapData::from_pin(&path)
                .map(Map::PerCpuArray)
                .map_err(|_| Error::NoState(dir.to_path_buf()))
        };
        Stats::read(&open(maps::COUNTRY_STATS)?, &open(maps::TOTALS)?)
    }

    fn add_country(&mut self, slot: u16, c: CountryStats) {
        if c == CountryStats::default() {
            return;
        }
        let t = &mut self.totals;
        t.dropped = t.dropped.add(c.dropped_packets, c.dropped_bytes);
        t.passed = t.passed.add(c.passed_packets, c.passed_bytes);
        t.would_drop = t.would_drop.add(c.would_drop_packets, c.would_drop_bytes);
        if slot == NO_COUNTRY {
            self.unknown = c;
        } else {
            self.countries.insert(country::code(slot).to_string(), c);
        }
    }

    /// Human-readable table, busiest droppers first.
    pub fn render(&self) -> String {
        let mut rows: Vec<(&str, &CountryStats)> =
            self.countries.iter().map(|(cc, c)| (cc.as_str(), c)).collect();
        if self.unknown != CountryStats::default() {
            rows.push(("--", &self.unknown));
        }
        rows.sort_by_key(|(cc, c)| (std::cmp::Reverse(c.dropped_packets), *cc));
        let mut out = format!(
            "{:<8}{:>14}{:>14}{:>14}{:>14}{:>14}{:>14}\n",
            "country", "dropped", "dropped B", "passed", "passed B", "would-drop", "would-drop B"
        );
        for (cc, c) in rows {
            out += &format!(
                "{cc:<8}{:>14}{:>14}{:>14}{:>14}{:>14}{:>14}\n",
                c.dropped_packets,
                c.dropped_bytes,
                c.passed_packets,
                c.passed_bytes,
                c.would_drop_packets,
                c.would_drop_bytes
            );
        }
        let t = &self.totals;
        for (name, p) in [
            ("dropped", t.dropped),
            ("passed", t.passed),
            ("would-drop", t.would_drop),
            ("exception", t.exception),
            ("non-ip", t.non_ip),
            ("unparsed", t.unparsed),
        ] {
            out += &format!("total {name:<12}{:>12} packets {:>14} bytes\n", p.packets, p.bytes);
        }
        out
    }
}

impl Totals {
    fn slot(&mut self, total: Total) -> &mut Packets {
        match total {
            Total::NonIp => &mut self.non_ip,
            Total::Unparsed => &mut self.unparsed,
            Total::Exception => &mut self.exception,
        }
    }
}

impl CountryStats {
    fn add(self, c: &CountryCounters) -> CountryStats {
        CountryStats {
            dropped_packets: self.dropped_packets + c.dropped_packets,
            dropped_bytes: self.dropped_bytes + c.dropped_bytes,
            passed_packets: self.passed_packets + c.passed_packets,
            passed_bytes: self.passed_bytes + c.passed_bytes,
            would_drop_packets: self.would_drop_packets + c.would_drop_packets,
            would_drop_bytes: self.would_drop_bytes + c.would_drop_bytes,
        }
    }
}

impl Packets {
    fn add(self, packets: u64, bytes: u64) -> Packets {
        Packets { packets: self.packets + packets, bytes: self.bytes + bytes }
    }
}
