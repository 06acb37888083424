//! The shrink guard: a new table that loses much of the old one's coverage
//! is more likely a truncated download or a wrong file than a real change,
//! and loading it would silently stop blocking. What counts is addresses,
//! not prefixes: two vendors aggregate the same coverage differently. The
//! daemon calls [`check_replacement`] before swapping tables and refuses
//! unless forced.
//!
//! Named address lists are guarded one by one ([`check_lists`]), against
//! the list of the same name in force.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, Ipv6Addr},
};

use geoblock_common::CountryId;

use crate::{
    country,
    data::{
        list::AddressList,
        table::{Address, Label, Table},
    },
};

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ShrinkError {
    #[error("the new table is empty")]
    Empty,
    #[error(
        "{whose} covers {new} {what}, {old} before: it shrinks by {share:.1} %, more than the {max:.1} % allowed \
         (force to load it anyway)"
    )]
    Shrinks { whose: String, what: &'static str, old: f64, new: f64, share: f64, max: f64 },
    #[error(
        "{lost} of the {old} {family} addresses of {country}, which the policy names, are in no country it names \
         in the new table: it shrinks by {share:.1} %, more than the {max:.1} % allowed (force to load it anyway)"
    )]
    CountryShrinks { country: &'static str, family: &'static str, lost: f64, old: f64, share: f64, max: f64 },
}

/// Whether `new` may replace `old`: refused when `new` is empty, when the
/// addresses it covers fall by more than `max_shrink` (a share, 0.10 = 10 %)
/// of `old`'s in either family ([`check_coverage`]), or when, in either
/// family, more than that share of the addresses of a country the policy
/// names (`named`: blocked countries of a deny-list, allowed ones of an
/// allow-list) would no longer be in any named country. Growth is always
/// fine, and so is a range that moves between named countries: the policy
/// treats it the same.
pub fn check_replacement(
    old: &Table,
    new: &Table,
    max_shrink: f64,
    named: &BTreeSet<CountryId>,
) -> Result<(), ShrinkError> {
    check_coverage("the new table", old, new, max_shrink)?;
    let families = [
        ("IPv4", spans::<Ipv4Addr, _>(&old.v4), spans::<Ipv4Addr, _>(&new.v4)),
        ("IPv6", spans::<Ipv6Addr, _>(&old.v6), spans::<Ipv6Addr, _>(&new.v6)),
    ];
    for (family, old, new) in &families {
        for (country, (old, lost)) in lost_by_country(old, new, named) {
            let share = lost / old;
            if share > max_shrink {
                let country = country::code(country);
                return Err(ShrinkError::CountryShrinks {
                    country,
                    family,
                    lost,
                    old,
                    share: share * 100.0,
                    max: max_shrink * 100.0,
                });
            }
        }
    }
    Ok(())
}

/// Whether `new` may replace `old` by what they cover, whatever their
/// labels (countries, ASes): refused when `new` is empty or covers more
/// than `max_shrink` fewer addresses than `old` in either family. `whose`
/// names `new` in the error.
pub fn check_coverage<L: Label>(
    whose: &str,
    old: &Table<L>,
    new: &Table<L>,
    max_shrink: f64,
) -> Result<(), ShrinkError> {
    if new.v4.is_empty() && new.v6.is_empty() {
        return Err(ShrinkError::Empty);
    }
    let (v4, v6) =
        (|t: &Table<L>| covered(&spans::<Ipv4Addr, _>(&t.v4)), |t: &Table<L>| covered(&spans::<Ipv6Addr, _>(&t.v6)));
    within(whose, "IPv4 addresses", v4(old), v4(new), max_shrink)?;
    within(whose, "IPv6 addresses", v6(old), v6(new), max_shrink)
}

/// Whether the lists `new` may replace those in force (`old`), each
/// against the one of its name: refused when a list's entries (lines or
/// JSON prefixes read, both families together) or the addresses it covers
/// in either family fall by more than `max_shrink`. Entries catch a
/// truncated download (a Tor exit list of 1,200 addresses cut to 10) even
/// where the wide prefixes at a file's start keep most of the addresses;
/// addresses catch a /16 that became a /24. A list new to the config, or
/// gone from it, is no shrink.
pub fn check_lists(old: &[AddressList], new: &[AddressList], max_shrink: f64) -> Result<(), ShrinkError> {
    let entries = |list: &AddressList| (list.info.entries.v4 + list.info.entries.v6) as f64;
    for list in new {
        let Some(before) = old.iter().find(|o| o.name == list.name) else {
            continue;
        };
        let whose = format!("list {}", list.name);
        within(&whose, "entries", entries(before), entries(list), max_shrink)?;
        let (was, is) = (before.addresses(), list.addresses());
        within(&whose, "IPv4 addresses", was.v4, is.v4, max_shrink)?;
        within(&whose, "IPv6 addresses", was.v6, is.v6, max_shrink)?;
    }
    Ok(())
}

/// Refused when `after` is more than `max_shrink` (a share) below `before`.
fn within(whose: &str, what: &'static str, before: f64, after: f64, max_shrink: f64) -> Result<(), ShrinkError> {
    let share = if before > 0.0 { (before - after) / before } else { 0.0 };
    match share > max_shrink {
        true => Err(ShrinkError::Shrinks {
            whose: whose.to_string(),
            what,
            old: before,
            new: after,
            share: share * 100.0,
            max: max_shrink * 100.0,
        }),
        false => Ok(()),
    }
}

/// A prefix as its first and last address, and its label.
type Span<L> = (u128, u128, L);

fn spans<A: Address, L: Copy>(prefixes: &[(A::Net, L)]) -> Vec<Span<L>> {
    prefixes.iter().map(|&(net, label)| (A::span(net).0, A::span(net).1, label)).collect()
}

/// Addresses covered; f64 because IPv6 counts pass u128 only for ::/0, and
/// a share needs no more precision.
fn covered<L>(spans: &[Span<L>]) -> f64 {
    spans.iter().map(|&(first, last, _)| size(first, last)).sum()
}

fn size(first: u128, last: u128) -> f64 {
    (last - first) as f64 + 1.0
}

/// For each named country of `old`: the addresses it covered, and those of
/// them that `new` puts in no named country. One walk over both tables,
/// which are sorted and disjoint.
fn lost_by_country(
    old: &[Span<CountryId>],
    new: &[Span<CountryId>],
    named: &BTreeSet<CountryId>,
) -> BTreeMap<CountryId, (f64, f64)> {
    let mut out: BTreeMap<CountryId, (f64, f64)> = BTreeMap::new();
    let mut next = 0;
    for &(first, last, country) in old.iter().filter(|(_, _, c)| named.contains(c)) {
        while new.get(next).is_some_and(|&(_, end, _)| end < first) {
            next += 1;
        }
        let kept: f64 = new[next..]
            .iter()
            .take_while(|&&(start, _, _)| start <= last)
            .filter(|(_, _, c)| named.contains(c))
            .map(|&(start, end, _)| size(start.max(first), end.min(last)))
            .sum();
        let entry = out.entry(country).or_default();
        entry.0 += size(first, last);
        entry.1 += size(first, last) - kept;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{
        list::{ListFormat, ListInfo},
        table::PerFamily,
    };

    fn id(code: &str) -> CountryId {
        country::parse(code).unwrap()
    }

    /// `(prefix, country)` rows of both families.
    fn table(rows: &[(&str, &str)]) -> Table {
        let mut t = Table::default();
        for &(net, cc) in rows {
            match net.parse().unwrap() {
                ipnetwork::IpNetwork::V4(n) => t.v4.push((n, id(cc))),
                ipnetwork::IpNetwork::V6(n) => t.v6.push((n, id(cc))),
            }
        }
        t
    }

    fn check(old: &Table, new: &Table, max: f64) -> Result<(), ShrinkError> {
        check_replacement(old, new, max, &BTreeSet::new())
    }

    fn sixteens(range: std::ops::Range<u8>) -> Vec<(String, &'static str)> {
        range.map(|i| (format!("10.{i}.0.0/16"), "US")).collect()
    }

    fn rows<'a>(owned: &'a [(String, &'static str)]) -> Vec<(&'a str, &'static str)> {
        owned.iter().map(|(n, c)| (n.as_str(), *c)).chain([("2001:db8::/32", "US")]).collect()
    }

    #[test]
    fn empty_is_always_refused() {
        assert_eq!(check(&Table::default(), &Table::default(), 1.0), Err(ShrinkError::Empty));
        assert_eq!(check(&table(&[("1.0.0.0/8", "US")]), &Table::default(), 1.0), Err(ShrinkError::Empty));
    }

    #[test]
    fn growth_and_small_shrinks_pass() {
        let t = table(&rows(&sixteens(0..20)));
        assert_eq!(check(&t, &t, 0.1), Ok(()));
        // 2 of 20 /16s gone: exactly 10 % of the addresses, allowed.
        assert_eq!(check(&t, &table(&rows(&sixteens(2..20))), 0.1), Ok(()));
        // 3 of 20: 15 %, refused unless the limit is raised.
        let smaller = table(&rows(&sixteens(3..20)));
        let err = check(&t, &smaller, 0.1).unwrap_err().to_string();
        assert!(err.contains("1114112 IPv4 addresses, 1310720 before") && err.contains("15.0 %"), "{err}");
        assert_eq!(check(&t, &smaller, 0.2), Ok(()));
    }

    /// GeoLite2 and DB-IP cover the same addresses with different prefixes.
    #[test]
    fn the_same_coverage_aggregated_differently_passes() {
        let fine = table(&[
            ("10.0.0.0/24", "US"),
            ("10.0.1.0/24", "US"),
            ("2001:db8::/33", "US"),
            ("2001:db8:8000::/33", "US"),
        ]);
        let coarse = table(&[("10.0.0.0/23", "US"), ("2001:db8::/32", "US")]);
        assert_eq!(check(&fine, &coarse, 0.1), Ok(()));
    }

    #[test]
    fn same_count_but_far_fewer_addresses_is_refused() {
        let old = table(&[("1.0.0.0/8", "US"), ("2001:db8::/32", "US")]);
        let new = table(&[("1.0.0.0/24", "US"), ("2001:db8::/32", "US")]);
        let err = check(&old, &new, 0.1).unwrap_err();
        assert!(matches!(&err, ShrinkError::Shrinks { what: "IPv4 addresses", .. }), "{err}");
    }

    #[test]
    fn losing_a_whole_family_is_refused() {
        let old = table(&[("1.0.0.0/8", "US"), ("2001:db8::/32", "US")]);
        let err = check(&old, &table(&[("1.0.0.0/8", "US")]), 0.1).unwrap_err();
        assert!(matches!(&err, ShrinkError::Shrinks { what: "IPv6 addresses", .. }), "{err}");
    }

    /// The world barely changes, but a blocked country loses half its
    /// addresses: the policy would stop blocking them.
    #[test]
    fn a_named_country_that_loses_coverage_is_refused() {
        let old = table(&[("1.0.0.0/16", "CN"), ("2.0.0.0/8", "US"), ("2001:db8::/32", "US")]);
        let new = table(&[("1.0.0.0/17", "CN"), ("2.0.0.0/8", "US"), ("3.0.0.0/17", "US"), ("2001:db8::/32", "US")]);
        assert_eq!(check(&old, &new, 0.1), Ok(()), "no country named");
        let err = check_replacement(&old, &new, 0.1, &BTreeSet::from([id("CN")])).unwrap_err().to_string();
        assert!(err.starts_with("32768 of the 65536 IPv4 addresses of CN") && err.contains("50.0 %"), "{err}");
        assert_eq!(check_replacement(&old, &new, 0.1, &BTreeSet::from([id("US")])), Ok(()));
    }

    /// Vendors move ranges between countries: a range that goes from one
    /// named country to another is treated the same by the policy.
    #[test]
    fn a_range_moving_between_named_countries_is_no_loss() {
        let old = table(&[("1.0.0.0/24", "RU"), ("1.0.1.0/24", "CN"), ("2001:db8::/32", "US")]);
        let new = table(&[("1.0.0.0/23", "CN"), ("2001:db8::/32", "US")]);
        assert_eq!(check_replacement(&old, &new, 0.1, &BTreeSet::from([id("CN"), id("RU")])), Ok(()));
        let err = check_replacement(&old, &new, 0.1, &BTreeSet::from([id("RU")])).unwrap_err();
        assert!(matches!(err, ShrinkError::CountryShrinks { country: "RU", family: "IPv4", .. }), "{err}");
    }

    /// A list of these networks, each an entry.
    fn list(name: &str, nets: &[String]) -> AddressList {
        let (mut v4, mut v6) = (vec![], vec![]);
        for net in nets {
            match net.parse().unwrap() {
                ipnetwork::IpNetwork::V4(n) => v4.push(n),
                ipnetwork::IpNetwork::V6(n) => v6.push(n),
            }
        }
        let info = ListInfo {
            origin: format!("{name}.txt"),
            format: ListFormat::Text,
            entries: PerFamily { v4: v4.len(), v6: v6.len() },
            modified: None,
        };
        AddressList { name: name.to_string(), v4, v6, info }
    }

    /// Tor exit relays: every other address of 10.0.0.0/8, so none merge.
    fn exits(n: u32) -> Vec<String> {
        (0..n).map(|i| std::net::Ipv4Addr::from(0x0a00_0000 + 2 * i).to_string()).collect()
    }

    fn owned(nets: &[&str]) -> Vec<String> {
        nets.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_truncated_list_is_refused() {
        let old = [list("tor", &exits(1200))];
        let err = check_lists(&old, &[list("tor", &exits(10))], 0.1).unwrap_err().to_string();
        assert!(err.starts_with("list tor covers 10 entries, 1200 before: it shrinks by 99.2 %"), "{err}");
        assert_eq!(check_lists(&old, &[list("tor", &exits(1100))], 0.1), Ok(()));
        assert_eq!(check_lists(&old, &[list("tor", &exits(5000))], 0.1), Ok(()));
        assert_eq!(check_lists(&old, &[list("tor", &exits(10))], 1.0), Ok(()));
    }

    /// A truncated file keeps its wide prefixes first: the entries tell.
    #[test]
    fn losing_entries_but_few_addresses_is_refused() {
        let mut nets = owned(&["11.0.0.0/8"]);
        nets.extend(exits(100));
        let err = check_lists(&[list("level1", &nets)], &[list("level1", &nets[..5])], 0.1).unwrap_err();
        assert!(matches!(&err, ShrinkError::Shrinks { what: "entries", .. }), "{err}");
    }

    #[test]
    fn losing_addresses_with_as_many_entries_is_refused() {
        let old = list("hosting", &owned(&["192.0.0.0/16", "2001:db8::/32"]));
        let narrower = list("hosting", &owned(&["192.0.0.0/24", "2001:db8::/32"]));
        let err = check_lists(std::slice::from_ref(&old), &[narrower], 0.1).unwrap_err().to_string();
        assert!(err.starts_with("list hosting covers 256 IPv4 addresses, 65536 before"), "{err}");
        let no_v6 = list("hosting", &owned(&["192.0.0.0/16", "192.1.0.0/16"]));
        let err = check_lists(&[old], &[no_v6], 0.1).unwrap_err();
        assert!(matches!(&err, ShrinkError::Shrinks { what: "IPv6 addresses", .. }), "{err}");
    }

    /// Only a list of the same name is compared: one added, renamed or
    /// dropped from the config is no shrink.
    #[test]
    fn lists_are_compared_by_name_only() {
        let old = [list("tor", &exits(1200)), list("hosting", &owned(&["192.0.0.0/16"]))];
        assert_eq!(check_lists(&old, &[list("hosting", &owned(&["192.0.0.0/16"]))], 0.1), Ok(()));
        assert_eq!(check_lists(&old, &[list("tor2", &exits(3))], 0.1), Ok(()));
        assert_eq!(check_lists(&[], &[list("tor", &exits(3))], 0.1), Ok(()));
        let err = check_lists(&old, &[list("tor2", &exits(3)), list("tor", &exits(3))], 0.1).unwrap_err();
        assert!(err.to_string().starts_with("list tor covers 3 entries"), "{err}");
    }
}
