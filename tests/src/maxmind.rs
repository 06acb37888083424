//! MaxMind's GeoLite2 Country CSV download, made from `start,end,country`
//! ranges of the same data. MaxMind serves it only to an account, so the
//! tests rebuild it, laid out as MaxMind ships it:
//!
//! ```text
//! GeoLite2-Country-CSV_YYYYMMDD/
//!   COPYRIGHT.txt  LICENSE.txt
//!   GeoLite2-Country-Blocks-IPv4.csv  GeoLite2-Country-Blocks-IPv6.csv
//!   GeoLite2-Country-Locations-{de,en,es,fr,ja,pt-BR,ru,zh-CN}.csv
//! ```

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    io::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

/// The locales MaxMind ships a Locations file for; geoblock reads `en`.
const LOCALES: [&str; 8] = ["de", "en", "es", "fr", "ja", "pt-BR", "ru", "zh-CN"];
const BLOCKS_HEADER: &str = "network,geoname_id,registered_country_geoname_id,represented_country_geoname_id,\
                             is_anonymous_proxy,is_satellite_provider,is_anycast";
const LOCATIONS_HEADER: &str =
    "geoname_id,locale_code,continent_code,continent_name,country_iso_code,country_name,is_in_european_union";
/// GeoLite2 Country has about 580k IPv4 and 598k IPv6 networks: far fewer
/// means the ranges were cut or misread.
const MIN_NETWORKS: usize = 400_000;

/// Writes `GeoLite2-Country-CSV_{date}.zip` (`date`: `YYYYMMDD`) into `dir`
/// from the IPv4 and IPv6 range files `ranges`, with `licence` as its
/// LICENSE.txt.
pub fn write_zip(ranges: &[PathBuf; 2], date: &str, licence: &str, dir: &Path) {
    let [v4, v6] = ranges.each_ref().map(|file| read_ranges(file));
    let codes: BTreeSet<&str> = v4.iter().chain(&v6).map(|(_, _, cc)| cc.as_str()).collect();
    let codes: Vec<&str> = codes.into_iter().collect();
    let folder = format!("GeoLite2-Country-CSV_{date}");
    let mut files = vec![
        ("COPYRIGHT.txt".to_string(), format!("Database and Contents Copyright (c) {} MaxMind, Inc.\n", &date[..4])),
        ("LICENSE.txt".to_string(), licence.to_string()),
    ];
    for (family, rows, bits) in [("IPv4", &v4, 32), ("IPv6", &v6, 128)] {
        files.push((format!("GeoLite2-Country-Blocks-{family}.csv"), blocks(rows, bits, &codes)));
    }
    for locale in LOCALES {
        files.push((format!("GeoLite2-Country-Locations-{locale}.csv"), locations(&codes, locale)));
    }
    let path = dir.join(format!("{folder}.zip"));
    let file = std::fs::File::create(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    zip.add_directory(format!("{folder}/"), options).expect("the zip's folder");
    for (name, text) in files {
        zip.start_file(format!("{folder}/{name}"), options).expect("a zip member");
        zip.write_all(text.as_bytes()).expect("writing a zip member");
    }
    zip.finish().expect("finishing the zip");
}

/// `(first, last, country)` of every `start,end,country` row of `file`.
fn read_ranges(file: &Path) -> Vec<(IpAddr, IpAddr, String)> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
    let row = |line: &str| -> Option<(IpAddr, IpAddr, String)> {
        let mut fields = line.split(',');
        let (first, last, cc) = (fields.next()?, fields.next()?, fields.next()?);
        Some((first.parse().ok()?, last.parse().ok()?, cc.to_string()))
    };
    let lines = text.lines().filter(|l| !l.is_empty());
    lines.map(|l| row(l).unwrap_or_else(|| panic!("{}: not a start,end,country row: {l}", file.display()))).collect()
}

/// A Blocks file: one line per network of the exact CIDR split of each
/// range, with the country's geoname id as its own and registered one.
fn blocks(rows: &[(IpAddr, IpAddr, String)], bits: u32, codes: &[&str]) -> String {
    let mut out = format!("{BLOCKS_HEADER}\n");
    let mut networks = 0;
    for (first, last, cc) in rows {
        let id = geoname_id(codes, cc);
        for (start, len) in cidrs(number(*first), number(*last), bits) {
            let addr = match bits {
                32 => IpAddr::V4(Ipv4Addr::from(start as u32)),
                _ => IpAddr::V6(Ipv6Addr::from(start)),
            };
            writeln!(out, "{addr}/{len},{id},{id},,0,0,").unwrap();
            networks += 1;
        }
    }
    assert!(networks >= MIN_NETWORKS, "only {networks} networks of {bits}-bit addresses: the ranges are cut short");
    out
}

/// The Locations file of `locale`. The ranges carry only country codes:
/// continent and country names stay empty (geoblock reads neither).
fn locations(codes: &[&str], locale: &str) -> String {
    let mut out = format!("{LOCATIONS_HEADER}\n");
    for cc in codes {
        writeln!(out, "{},{locale},,,{cc},,0", geoname_id(codes, cc)).unwrap();
    }
    out
}

/// A consistent stand-in for the country's GeoNames id (the ranges do not
/// carry MaxMind's): 1,000,000 plus the code's rank among all codes.
fn geoname_id(codes: &[&str], cc: &str) -> usize {
    1_000_000 + codes.binary_search(&cc).expect("a code of the ranges")
}

fn number(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u32::from(a).into(),
        IpAddr::V6(a) => a.into(),
    }
}

/// The fewest CIDR blocks covering exactly `first..=last` in a `bits`-bit
/// space, as (first address, prefix length): each block the largest one
/// aligned at its start that does not run past `last`.
fn cidrs(mut first: u128, last: u128, bits: u32) -> Vec<(u128, u32)> {
    let mut out = vec![];
    loop {
        // log2 of the largest power of two not above the addresses left.
        let fits = (last - first).checked_add(1).map_or(128, |n| 127 - n.leading_zeros());
        let host_bits = fits.min(first.trailing_zeros()).min(bits);
        out.push((first, bits - host_bits));
        let end = first + u128::MAX.checked_shr(128 - host_bits).unwrap_or(0);
        if end == last {
            return out;
        }
        first = end + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::cidrs;

    #[test]
    fn ranges_split_into_the_fewest_exact_blocks() {
        assert_eq!(cidrs(0, u128::from(u32::MAX), 32), [(0, 0)]);
        assert_eq!(cidrs(0, u128::MAX, 128), [(0, 0)]);
        assert_eq!(cidrs(5, 5, 32), [(5, 32)]);
        // 1.0.1.0-1.0.3.255: a /24 and a /23.
        assert_eq!(cidrs(0x0100_0100, 0x0100_03ff, 32), [(0x0100_0100, 24), (0x0100_0200, 23)]);
        assert_eq!(cidrs(1, 6, 32), [(1, 32), (2, 31), (4, 31), (6, 32)]);
        assert_eq!(cidrs(u128::MAX - 1, u128::MAX, 128), [(u128::MAX - 1, 127)]);
    }
}
