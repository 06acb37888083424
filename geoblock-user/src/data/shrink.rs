//! The shrink guard: a new table that loses much of the old one's coverage
//! is more likely a truncated download or a wrong file than a real change,
//! and loading it would silently stop blocking. What counts is addresses,
//! not prefixes: two vendors aggregate the same coverage differently. The
//! daemon calls [`check_replacement`] before swapping tables and refuses
//! unless forced.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, Ipv6Addr},
};

use geoblock_common::CountryId;

use crate::{
    country,
    data::table::{Address, Label, Table},
};

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ShrinkError {
    #[error("the new table is empty")]
    Empty,
    #[error(
        "the new table covers {new} {what}, {old} before: it shrinks by {share:.1} %, more than the {max:.1} % \
         allowed (force to load it anyway)"
    )]
    Shrinks { what: &'static str, old: f64, new: f64, share: f64, max: f64 },
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
    check_coverage(old, new, max_shrink)?;
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
/// than `max_shrink` fewer addresses than `old` in either family.
pub fn check_coverage<L: Label>(old: &Table<L>, new: &Table<L>, max_shrink: f64) -> Result<(), ShrinkError> {
    if new.v4.is_empty() && new.v6.is_empty() {
        return Err(ShrinkError::Empty);
    }
    let families = [
        ("IPv4 addresses", covered(&spans::<Ipv4Addr, _>(&old.v4)), covered(&spans::<Ipv4Addr, _>(&new.v4))),
        ("IPv6 addresses", covered(&spans::<Ipv6Addr, _>(&old.v6)), covered(&spans::<Ipv6Addr, _>(&new.v6))),
    ];
    for (what, before, after) in families {
        let share = if before > 0.0 { (before - after) / before } else { 0.0 };
        if share > max_shrink {
            return Err(ShrinkError::Shrinks {
                what,
                old: before,
                new: after,
                share: share * 100.0,
                max: max_shrink * 100.0,
            });
        }
    }
    Ok(())
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
}
