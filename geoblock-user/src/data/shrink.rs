//! The shrink guard: a new table that loses much of the old one is more
//! likely a truncated download or a wrong file than a real change, and
//! loading it would silently stop blocking. The daemon calls
//! [`check_replacement`] before swapping tables and refuses unless forced.

use geoblock_common::CountryId;
use ipnetwork::{Ipv4Network, Ipv6Network};

use crate::data::table::Table;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ShrinkError {
    #[error("the new table is empty")]
    Empty,
    #[error("the new table has {new} {family} {what}, {old} before: it shrinks by {share:.1} %, more than the {max:.1} % allowed (force to load it anyway)")]
    Shrinks { family: &'static str, what: &'static str, old: f64, new: f64, share: f64, max: f64 },
}

/// Whether `new` may replace `old`: refused when `new` is empty, or when, in
/// either family, its prefix count or the addresses it covers fall by more
/// than `max_shrink` (a share, 0.10 = 10 %) of `old`'s. Growth is always fine.
pub fn check_replacement(old: &Table, new: &Table, max_shrink: f64) -> Result<(), ShrinkError> {
    if new.v4.is_empty() && new.v6.is_empty() {
        return Err(ShrinkError::Empty);
    }
    let measures = [
        ("IPv4", "prefixes", old.v4.len() as f64, new.v4.len() as f64),
        ("IPv6", "prefixes", old.v6.len() as f64, new.v6.len() as f64),
        ("IPv4", "addresses", covered_v4(&old.v4), covered_v4(&new.v4)),
        ("IPv6", "addresses", covered_v6(&old.v6), covered_v6(&new.v6)),
    ];
    for (family, what, old, new) in measures {
        let share = if old > 0.0 { (old - new) / old } else { 0.0 };
        if share > max_shrink {
            return Err(ShrinkError::Shrinks { family, what, old, new, share: share * 100.0, max: max_shrink * 100.0 });
        }
    }
    Ok(())
}

/// Addresses covered; f64 because IPv6 counts pass u128 only for ::/0, and
/// a share needs no more precision.
fn covered_v4(prefixes: &[(Ipv4Network, CountryId)]) -> f64 {
    prefixes.iter().map(|(n, _)| 2f64.powi(32 - i32::from(n.prefix()))).sum()
}

fn covered_v6(prefixes: &[(Ipv6Network, CountryId)]) -> f64 {
    prefixes.iter().map(|(n, _)| 2f64.powi(128 - i32::from(n.prefix()))).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::country;

    fn table(v4: &[&str], v6: &[&str]) -> Table {
        let us = country::parse("US").unwrap();
        Table {
            v4: v4.iter().map(|n| (n.parse().unwrap(), us)).collect(),
            v6: v6.iter().map(|n| (n.parse().unwrap(), us)).collect(),
        }
    }

    #[test]
    fn empty_is_always_refused() {
        assert_eq!(check_replacement(&Table::default(), &Table::default(), 1.0), Err(ShrinkError::Empty));
        assert_eq!(check_replacement(&table(&["1.0.0.0/8"], &[]), &Table::default(), 1.0), Err(ShrinkError::Empty));
    }

    #[test]
    fn growth_and_small_shrinks_pass() {
        let old: Vec<String> = (0..20).map(|i| format!("10.{i}.0.0/16")).collect();
        let old: Vec<&str> = old.iter().map(String::as_str).collect();
        let t = table(&old, &["2001:db8::/32"]);
        assert_eq!(check_replacement(&t, &t, 0.1), Ok(()));
        assert_eq!(check_replacement(&table(&[], &[]), &t, 0.1).err(), Some(ShrinkError::Empty).filter(|_| false));
        // 2 of 20 prefixes gone: exactly 10 %, allowed.
        assert_eq!(check_replacement(&t, &table(&old[2..], &["2001:db8::/32"]), 0.1), Ok(()));
        // 3 of 20: 15 %, refused unless the limit is raised.
        let smaller = table(&old[3..], &["2001:db8::/32"]);
        let err = check_replacement(&t, &smaller, 0.1).unwrap_err().to_string();
        assert!(err.contains("17 IPv4 prefixes, 20 before") && err.contains("15.0 %"), "{err}");
        assert_eq!(check_replacement(&t, &smaller, 0.2), Ok(()));
    }

    #[test]
    fn same_count_but_far_fewer_addresses_is_refused() {
        let old = table(&["1.0.0.0/8"], &["2001:db8::/32"]);
        let new = table(&["1.0.0.0/24"], &["2001:db8::/32"]);
        let err = check_replacement(&old, &new, 0.1).unwrap_err();
        assert!(matches!(err, ShrinkError::Shrinks { family: "IPv4", what: "addresses", .. }), "{err}");
    }

    #[test]
    fn losing_a_whole_family_is_refused() {
        let old = table(&["1.0.0.0/8"], &["2001:db8::/32"]);
        let err = check_replacement(&old, &table(&["1.0.0.0/8"], &[]), 0.1).unwrap_err();
        assert!(matches!(err, ShrinkError::Shrinks { family: "IPv6", what: "prefixes", .. }), "{err}");
    }
}
