//! Every format against its fixture (`tests/fixtures`, written in the real
//! layouts): detection, parsing, and exactness — thousands of addresses
//! answered alike by the table and by a plain scan of the source's rows,
//! written here independently of the parsers.

use std::{
    collections::HashMap,
    io::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use ipnetwork::IpNetwork;
use proptest::prelude::*;
use rand::{rngs::StdRng, Rng as _, SeedableRng as _};

use super::*;
use crate::country;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn text(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap()
}

fn load_paths(paths: &[PathBuf]) -> Table {
    load(paths, &Options::default()).unwrap().table
}

fn at(t: &Table, ip: &str) -> String {
    t.lookup(ip.parse().unwrap()).map_or("-".into(), |(_, c)| country::code(c).into())
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("geoblock-source-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The oracle: source rows as (first, last, country), scanned in order.
type Oracle = Vec<(IpAddr, IpAddr, String)>;

fn unknown(cc: &str) -> bool {
    ["ZZ", "-", "??", "EU", "AP", ""].contains(&cc)
}

fn scan(rows: &Oracle, ip: IpAddr) -> Option<String> {
    let inside = |a: &IpAddr, b: &IpAddr| match (ip, a, b) {
        (IpAddr::V4(x), IpAddr::V4(a), IpAddr::V4(b)) => a <= &x && &x <= b,
        (IpAddr::V6(x), IpAddr::V6(a), IpAddr::V6(b)) => a <= &x && &x <= b,
        _ => false,
    };
    rows.iter().find(|(a, b, cc)| !unknown(cc) && inside(a, b)).map(|(_, _, cc)| cc.clone())
}

fn net_row(net: &str, cc: &str) -> (IpAddr, IpAddr, String) {
    let net: IpNetwork = net.parse().unwrap();
    let last = match net {
        IpNetwork::V4(n) => IpAddr::V4(n.broadcast()),
        IpNetwork::V6(n) => IpAddr::V6((u128::from(n.network()) | (u128::MAX >> n.prefix())).into()),
    };
    (net.network(), last, cc.to_string())
}

/// Addresses worth asking: each row's edges and their neighbours, and random ones.
fn probes(rows: &Oracle, rng: &mut StdRng) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for (a, b, _) in rows {
        for ip in [*a, *b] {
            match ip {
                IpAddr::V4(x) => {
                    let x = u32::from(x);
                    out.extend([x.wrapping_sub(1), x, x.wrapping_add(1)].map(|n| IpAddr::V4(n.into())));
                }
                IpAddr::V6(x) => {
                    let x = u128::from(x);
                    out.extend([x.wrapping_sub(1), x, x.wrapping_add(1)].map(|n| IpAddr::V6(n.into())));
                }
            }
        }
    }
    while out.len() < 4000 {
        let (a, b, _) = &rows[rng.random_range(0..rows.len())];
        out.push(match (a, b) {
            (IpAddr::V4(a), IpAddr::V4(b)) => IpAddr::V4(rng.random_range(u32::from(*a)..=u32::from(*b)).into()),
            (IpAddr::V6(a), IpAddr::V6(b)) => IpAddr::V6(rng.random_range(u128::from(*a)..=u128::from(*b)).into()),
            _ => unreachable!(),
        });
        out.push(IpAddr::V4(rng.random::<u32>().into()));
        out.push(IpAddr::V6(rng.random::<u128>().into()));
    }
    out
}

fn assert_exact(table: &Table, answer: impl Fn(IpAddr) -> Option<String>, probes: &[IpAddr]) {
    for &ip in probes {
        let got = table.lookup(ip).map(|(_, c)| country::code(c).to_string());
        assert_eq!(got, answer(ip), "{ip}");
    }
}

fn check_exact(table: &Table, rows: &Oracle) {
    let probes = probes(rows, &mut StdRng::seed_from_u64(7));
    assert_exact(table, |ip| scan(rows, ip), &probes);
}

fn range_rows(name: &str) -> Oracle {
    let int_family = if name == "geoip" { 4 } else { 6 };
    let bound = |s: &str| match s.parse::<u128>() {
        Ok(n) if int_family == 4 => IpAddr::V4(Ipv4Addr::from(n as u32)),
        Ok(n) => IpAddr::V6(Ipv6Addr::from(n)),
        Err(_) => s.parse().unwrap(),
    };
    let text = text(name);
    let lines = text.lines().filter(|l| !l.starts_with('#') && !l.is_empty());
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (bound(f[0]), bound(f[1]), f[2].to_string())
        })
        .collect()
}

#[test]
fn dbip_lite_csv_is_exact() {
    let path = fixture("dbip-country-lite-2026-06.csv");
    let (table, info) = load_one(&path, &Options::default()).unwrap();
    assert_eq!(info.formats, [Format::Csv]);
    assert_eq!(info.date.as_deref(), Some("2026-06"));
    assert_eq!(at(&table, "1.0.64.5"), "KR");
    assert_eq!(at(&table, "2.16.0.1"), "-", "EU is a region, not a country");
    check_exact(&table, &range_rows("dbip-country-lite-2026-06.csv"));
}

#[test]
fn tor_geoip_files_are_exact() {
    for name in ["geoip", "geoip6"] {
        let (table, info) = load_one(&fixture(name), &Options::default()).unwrap();
        assert_eq!(info.formats, [Format::Csv], "{name}");
        check_exact(&table, &range_rows(name));
    }
    let both = load_paths(&[fixture("geoip"), fixture("geoip6")]);
    assert_eq!((at(&both, "8.8.8.8"), at(&both, "2001:4860::8888")), ("US".into(), "US".into()));
}

/// IP2Location as written, the IPv6 file's mapped block answered for IPv4.
/// Tor's geoip file writes `UK`, and a few rows carry `AN`.
#[test]
fn reserved_codes_read_as_their_country_and_are_counted() {
    let csv = |text: &str| {
        let input = Input { origin: "geoip".into(), name: "geoip".into(), bytes: text.into() };
        read("geoip".into(), vec![input], &Options { format: Some(Format::Csv), ..Options::default() })
    };
    let text = "1.0.0.0,1.0.0.255,UK\n2.0.0.0,2.0.0.255,AN\n3.0.0.0,3.0.0.255,ZZ\n4.0.0.0,4.0.0.255,DE\n";
    let (table, info) = csv(text).unwrap();
    let answers: Vec<String> = ["1.0.0.1", "2.0.0.1", "3.0.0.1", "4.0.0.1"].iter().map(|ip| at(&table, ip)).collect();
    assert_eq!(answers, ["GB", "AN", "-", "DE"]);
    assert_eq!(info.codes, CodeCounts { mapped: 1, unclaimed: 1 });
    let err = csv("4.0.0.0,4.0.0.255,DE\n5.0.0.0,5.0.0.255,QQ\n").unwrap_err().to_string();
    assert!(err.starts_with("geoip:2: field 'country': 'QQ'"), "{err}");
}

fn ip2location_answer(name: &str) -> impl Fn(IpAddr) -> Option<String> {
    let rows: Vec<(u128, u128, String)> = text(name)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.trim_matches('"').split("\",\"").collect();
            (f[0].parse().unwrap(), f[1].parse().unwrap(), f[2].to_string())
        })
        .collect();
    let v6_file = name.contains("IPV6");
    move |ip| {
        let key = match (ip, v6_file) {
            (IpAddr::V4(a), false) => u128::from(u32::from(a)),
            (IpAddr::V4(a), true) => (0xffff << 32) | u128::from(u32::from(a)),
            (IpAddr::V6(_), false) => return None,
            (IpAddr::V6(a), true) if a.to_ipv4_mapped().is_some() => return None,
            (IpAddr::V6(a), true) => a.into(),
        };
        rows.iter().find(|(s, e, cc)| !unknown(cc) && *s <= key && key <= *e).map(|r| r.2.clone())
    }
}

#[test]
fn ip2location_db1_is_exact_and_maps_ipv4_out_of_ipv6() {
    let mut rng = StdRng::seed_from_u64(11);
    let mut probes: Vec<IpAddr> =
        (0..2000).map(|_| IpAddr::V4(rng.random_range(16_000_000u32..17_000_000).into())).collect();
    probes.extend(
        (0..2000).map(|_| IpAddr::V6(Ipv6Addr::from(rng.random_range(0x2001_0000u128 << 96..0x2003u128 << 112)))),
    );
    probes.extend(
        ["1.1.1.1", "1.1.1.0", "1.0.255.255", "2001:200::1", "2002::", "2002::1"].map(|s| s.parse::<IpAddr>().unwrap()),
    );
    for name in ["IP2LOCATION-LITE-DB1.CSV", "IP2LOCATION-LITE-DB1.IPV6.CSV"] {
        let (table, info) = load_one(&fixture(name), &Options::default()).unwrap();
        assert_eq!(info.formats, [Format::Ip2Location]);
        assert_exact(&table, ip2location_answer(name), &probes);
    }
    let v6 = load_paths(&[fixture("IP2LOCATION-LITE-DB1.IPV6.CSV")]);
    assert_eq!(at(&v6, "1.0.0.1"), "US", "::ffff:1.0.0.1 lands in the IPv4 table");
    assert_eq!(at(&v6, "::ffff:1.0.0.1"), "-");
    let v4 = load_paths(&[fixture("IP2LOCATION-LITE-DB1.CSV")]);
    assert_eq!(at(&v4, "1.1.2.1"), "BQ", "a quoted country name with a comma");
}

#[test]
fn ip2location_rows_straddling_the_mapped_block_are_cut() {
    let lo = 0xffffu128 << 32;
    let text = format!(
        "\"{}\",\"{}\",\"DE\",\"Germany\"\n\"{}\",\"{}\",\"FR\",\"France\"\n",
        lo - 16,
        lo + 255,
        lo + 256,
        (lo | 0xffff_ffff) + 16
    );
    let inputs =
        vec![Input { origin: "x.csv".into(), name: "IP2LOCATION-LITE-DB1.IPV6.CSV".into(), bytes: text.into_bytes() }];
    let (t, _) = read("x.csv".into(), inputs, &Options::default()).unwrap();
    assert_eq!(at(&t, "::fffe:ffff:fff0"), "DE");
    assert_eq!((at(&t, "0.0.0.0"), at(&t, "0.0.0.255"), at(&t, "0.0.1.0")), ("DE".into(), "DE".into(), "FR".into()));
    assert_eq!((at(&t, "255.255.255.255"), at(&t, "::1:0:0:f")), ("FR".into(), "FR".into()));
    assert_eq!(at(&t, "::ffff:0.0.0.1"), "-");
}

fn rir_rows(name: &str) -> Oracle {
    let text = text(name);
    let mut out = Vec::new();
    for f in text.lines().map(|l| l.split('|').collect::<Vec<_>>()) {
        if f.len() < 7 || f[1] == "*" || !["allocated", "assigned"].contains(&f[6]) {
            continue;
        }
        let (first, last) = match f[2] {
            "ipv4" => {
                let s = u32::from(f[3].parse::<Ipv4Addr>().unwrap());
                (IpAddr::V4(s.into()), IpAddr::V4((s + f[4].parse::<u32>().unwrap() - 1).into()))
            }
            "ipv6" => {
                let (a, b, _) = net_row(&format!("{}/{}", f[3], f[4]), "");
                (a, b)
            }
            _ => continue,
        };
        out.push((first, last, f[1].to_string()));
    }
    out
}

#[test]
fn rir_delegated_files_are_exact_and_combine() {
    let names = ["delegated-apnic-extended-latest", "delegated-arin-extended-latest"];
    let mut all = Vec::new();
    for name in names {
        let (table, info) = load_one(&fixture(name), &Options::default()).unwrap();
        assert_eq!(info.formats, [Format::Rir]);
        check_exact(&table, &rir_rows(name));
        all.extend(rir_rows(name));
    }
    let (_, info) = load_one(&fixture(names[0]), &Options::default()).unwrap();
    assert_eq!(info.date.as_deref(), Some("2025-12-31"));
    let both = load_paths(&names.map(fixture));
    check_exact(&both, &all);
    // 24.36.0.0 + 294912 addresses is not a power of two: /14 + /16.
    assert_eq!(
        (at(&both, "24.39.255.255"), at(&both, "24.40.128.0"), at(&both, "24.40.0.0")),
        ("CA".into(), "-".into(), "CA".into())
    );
    assert_eq!(at(&both, "1.1.3.1"), "-", "reserved space has no country");
}

#[test]
fn cidr_lists_are_exact() {
    let zone = text("cn-aggregated.zone");
    let rows: Oracle = zone.lines().map(|l| net_row(l, "CN")).collect();
    let (table, info) = load_one(&fixture("cn-aggregated.zone"), &Options::default()).unwrap();
    assert_eq!(info.formats, [Format::Cidr]);
    check_exact(&table, &rows);

    let v6 = text("ipv6/de-aggregated.zone");
    let rows: Oracle = v6.lines().map(|l| net_row(l, "DE")).collect();
    check_exact(&load_paths(&[fixture("ipv6/de-aggregated.zone")]), &rows);

    let list = text("blocklist.cidr");
    let rows: Oracle = list
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split(|c: char| c == ',' || c.is_whitespace()).filter(|f| !f.is_empty()).collect();
            net_row(f[0], f[1])
        })
        .collect();
    let (table, info) = load_one(&fixture("blocklist.cidr"), &Options::default()).unwrap();
    assert_eq!(info.formats, [Format::Cidr]);
    check_exact(&table, &rows);
}

fn maxmind_rows() -> Oracle {
    let dir = "GeoLite2-Country-CSV_20260101/GeoLite2-Country-";
    let mut countries = HashMap::new();
    for line in text(&format!("{dir}Locations-en.csv")).lines().skip(1) {
        // The country code is the fifth field; names with commas come later.
        let f: Vec<&str> = line.splitn(6, ',').collect();
        countries.insert(f[0].to_string(), f[4].to_string());
    }
    let mut out = Vec::new();
    for family in ["IPv4", "IPv6"] {
        for line in text(&format!("{dir}Blocks-{family}.csv")).lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let own = countries.get(f[1]).cloned().unwrap_or_default();
            let cc = if own.is_empty() { countries.get(f[2]).cloned().unwrap_or_default() } else { own };
            out.push(net_row(f[0], &cc));
        }
    }
    out
}

#[test]
fn maxmind_csv_folder_and_zip_are_exact() {
    let folder = fixture("GeoLite2-Country-CSV_20260101");
    let (table, info) = load_one(&folder, &Options::default()).unwrap();
    assert_eq!(info.formats, [Format::MaxmindCsv]);
    assert_eq!(info.date.as_deref(), Some("2026-01-01"));
    check_exact(&table, &maxmind_rows());
    assert_eq!(at(&table, "2.16.0.1"), "DE", "a continent-only geoname falls back to the registered country");
    assert_eq!(at(&table, "2.16.2.1"), "GB", "an anonymous proxy: the registered country");
    assert_eq!(at(&table, "5.145.149.1"), "-", "a satellite provider without either");

    let dir = temp_dir("maxmind-zip");
    let zip_path = dir.join("GeoLite2-Country-CSV_20260101.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
    let options = zip::write::SimpleFileOptions::default();
    zip.add_directory("GeoLite2-Country-CSV_20260101/", options).unwrap();
    for entry in std::fs::read_dir(&folder).unwrap() {
        let entry = entry.unwrap().path();
        let name = format!("GeoLite2-Country-CSV_20260101/{}", entry.file_name().unwrap().to_string_lossy());
        zip.start_file(name, options).unwrap();
        zip.write_all(&std::fs::read(&entry).unwrap()).unwrap();
    }
    zip.finish().unwrap();
    let (from_zip, info) = load_one(&zip_path, &Options::default()).unwrap();
    assert_eq!(from_zip, table);
    assert_eq!(info.formats, [Format::MaxmindCsv]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mmdb_is_exact_against_the_readers_own_lookups() {
    let csv = load_paths(&[fixture("dbip-country-lite-2026-06.csv"), fixture("geoip6")]);
    let dir = temp_dir("mmdb");
    let path = dir.join("dbip-country-lite.mmdb");
    std::fs::write(&path, mmdb::write(&csv, &["country", "iso_code"], "DBIP-Country-Lite", 1_767_225_600)).unwrap();
    let (table, info) = load_one(&path, &Options::default()).unwrap();
    assert_eq!(info.formats, [Format::Mmdb]);
    assert_eq!(info.date.as_deref(), Some("2026-01-01"));
    assert_eq!(table, csv);

    // The oracle: maxminddb's own lookup, address by address.
    let reader = maxminddb::Reader::open_readfile(&path).unwrap();
    let answer = |ip: IpAddr| -> Option<String> {
        let found = reader.lookup(ip).unwrap();
        found
            .decode_path::<String>(&[maxminddb::PathElement::Key("country"), maxminddb::PathElement::Key("iso_code")])
            .unwrap()
    };
    let mut rows = range_rows("dbip-country-lite-2026-06.csv");
    rows.extend(range_rows("geoip6"));
    let probes: Vec<IpAddr> = probes(&rows, &mut StdRng::seed_from_u64(3))
        .into_iter()
        .filter(|ip| match ip {
            // The reader answers ::/96 with the IPv4 subtree; a packet's IPv6 source there is not IPv4.
            IpAddr::V6(a) => u128::from(*a) >> 32 != 0,
            IpAddr::V4(_) => true,
        })
        .collect();
    assert_exact(&table, answer, &probes);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mmdb_country_field_is_found_reported_and_configurable() {
    let csv = load_paths(&[fixture("cn-aggregated.zone")]);
    let dir = temp_dir("mmdb-fields");
    let field_of = |path: &Path, options: &Options| {
        let (table, info) = load_one(path, options).unwrap();
        assert_eq!(table, csv, "{}", path.display());
        info.country_field.unwrap()
    };
    // MaxMind's layouts, and DB-IP's (and ip-location-db's) flat one.
    for (layout, file) in
        [(&["registered_country", "iso_code"][..], "registered.mmdb"), (&["country_code"], "flat.mmdb")]
    {
        std::fs::write(dir.join(file), mmdb::write(&csv, layout, "Country", 0)).unwrap();
        assert_eq!(field_of(&dir.join(file), &Options::default()), layout.join("."));
    }
    let other = dir.join("other.mmdb");
    std::fs::write(&other, mmdb::write(&csv, &["location", "cc"], "Country", 0)).unwrap();
    let err = load_one(&other, &Options::default()).unwrap_err().to_string();
    assert!(
        err.contains("no network has a country at country.iso_code, registered_country.iso_code, country_code"),
        "{err}"
    );
    assert!(err.contains("records with the keys location"), "{err}");
    let options = Options { mmdb_fields: CountryFields::parse("location.cc"), ..Options::default() };
    assert_eq!(field_of(&other, &options), "location.cc");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn compressed_files_read_transparently() {
    let dir = temp_dir("compressed");
    let plain = std::fs::read(fixture("dbip-country-lite-2026-06.csv")).unwrap();
    let want = load_paths(&[fixture("dbip-country-lite-2026-06.csv")]);
    let gz = dir.join("dbip-country-lite-2026-06.csv.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&plain).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let xz = dir.join("delegated-apnic-extended-latest.xz");
    let mut out = Vec::new();
    lzma_rs::xz_compress(&mut &std::fs::read(fixture("delegated-apnic-extended-latest")).unwrap()[..], &mut out)
        .unwrap();
    std::fs::write(&xz, out).unwrap();
    let (t, info) = load_one(&gz, &Options::default()).unwrap();
    assert_eq!((t, info.date.as_deref()), (want, Some("2026-06")));
    let (t, info) = load_one(&xz, &Options::default()).unwrap();
    assert_eq!((t, info.formats), (load_paths(&[fixture("delegated-apnic-extended-latest")]), vec![Format::Rir]));
    // Garbage behind a gzip magic is an error, not a panic.
    std::fs::write(&gz, b"\x1f\x8bnot really gzip").unwrap();
    assert!(load_one(&gz, &Options::default()).unwrap_err().to_string().contains("gzip data"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An MMDB of a few hundred bytes whose nodes all point at the next one
/// describes 2^40 networks: refused at once, not enumerated.
#[test]
fn an_mmdb_tree_that_reuses_nodes_is_refused() {
    let cn = country::parse("CN").unwrap();
    let table = Table { v4: vec![], v6: vec![("2001:db8::/40".parse().unwrap(), cn)] };
    let mut bytes = mmdb::write(&table, &["country", "iso_code"], "Country", 0);
    let nodes = maxminddb::Reader::from_source(bytes.clone()).unwrap().metadata().node_count;
    // Each node's empty record (the value `nodes`) now points where its
    // other one does: the next node, or the data at the end of the chain.
    for node in bytes[..nodes as usize * 8].chunks_mut(8) {
        let records = [0, 4].map(|at| u32::from_be_bytes(node[at..at + 4].try_into().unwrap()));
        let target = records.into_iter().find(|&r| r != nodes).unwrap_or(nodes).to_be_bytes();
        node[..4].copy_from_slice(&target);
        node[4..].copy_from_slice(&target);
    }
    let dir = temp_dir("mmdb-cycle");
    std::fs::write(dir.join("bomb.mmdb"), &bytes).unwrap();
    let started = std::time::Instant::now();
    let err = load_one(&dir.join("bomb.mmdb"), &Options::default()).unwrap_err().to_string();
    assert!(err.contains("its search tree reaches node") && err.contains("from more than one place"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every network with a record of its own, each leading to a large map:
/// past the distinct records of a country database, refused before the
/// reading takes hours.
#[test]
fn an_mmdb_of_more_distinct_records_than_a_country_database_is_refused() {
    let dir = temp_dir("mmdb-records");
    let error = |networks| {
        let path = dir.join(format!("distinct-{networks}.mmdb"));
        mmdb::write_distinct(std::fs::File::create(&path).unwrap(), networks, 4).unwrap();
        load_one(&path, &Options::default()).unwrap_err().to_string()
    };
    assert!(error(16_384).contains("no network has a country"), "{}", error(16_384));
    assert!(error(16_385).contains("more than 16384 distinct records"), "{}", error(16_385));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A FIFO would block the reader, a device never end: refused at once.
#[test]
fn only_regular_files_are_read() {
    let dir = temp_dir("special");
    let fifo = dir.join("geoip.csv");
    let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path; mkfifo only creates a node.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0, "mkfifo");
    for special in [fifo.as_path(), Path::new("/dev/zero")] {
        let err = load_one(special, &Options::default()).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{}: {err}", special.display());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The budget holds for a source as a whole: members of a zip and layers of
/// compression add up, so small archives cannot unpack to gigabytes.
#[test]
fn one_byte_budget_per_source() {
    let dir = temp_dir("budget");
    // A gzip member that unpacks to 16 MiB of rows, and enough copies of it
    // to pass the budget: concatenated, and as the members of a zip.
    let row = b"1.0.0.0,1.0.0.255,AU\n";
    let chunk: Vec<u8> = row.iter().copied().cycle().take(16 << 20).collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &chunk).unwrap();
    let gz = gz.finish().unwrap();
    let copies = (archive::BUDGET >> 24) as usize + 1;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..copies {
        zip.start_file(format!("part{i}.csv.gz"), stored).unwrap();
        std::io::Write::write_all(&mut zip, &gz).unwrap();
    }
    let zip = zip.finish().unwrap().into_inner();
    assert!(zip.len() < 8 << 20, "a small archive: {} bytes", zip.len());
    std::fs::write(dir.join("parts.zip"), &zip).unwrap();
    std::fs::write(dir.join("copies.csv.gz"), gz.repeat(copies)).unwrap();
    for name in ["parts.zip", "copies.csv.gz"] {
        let err = load_one(&dir.join(name), &Options::default()).unwrap_err().to_string();
        assert!(err.contains("MiB read and unpacked"), "{name}: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_later_source_wins_where_it_has_a_country() {
    let dir = temp_dir("precedence");
    let fix = dir.join("fixes.cidr");
    std::fs::write(&fix, "1.0.1.128/25 US\n2001:200:8000::/33 DE\n203.0.113.0/24 FR\n").unwrap();
    let base = fixture("dbip-country-lite-2026-06.csv");
    let t = load_paths(&[base.clone(), fix.clone()]);
    assert_eq!(at(&t, "1.0.1.127"), "CN");
    assert_eq!(at(&t, "1.0.1.128"), "US");
    assert_eq!(at(&t, "1.0.2.0"), "CN");
    assert_eq!(at(&t, "2001:200:7fff::"), "JP");
    assert_eq!(at(&t, "2001:200:8000::"), "DE");
    assert_eq!(at(&t, "203.0.113.1"), "FR");
    // The other way round the CSV wins again, and the fix only fills its gaps.
    let t = load_paths(&[fix, base]);
    assert_eq!((at(&t, "1.0.1.128"), at(&t, "203.0.113.1")), ("CN".into(), "FR".into()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn overlay_matches_a_plain_scan() {
    let mut rng = StdRng::seed_from_u64(5);
    let us = country::parse("US").unwrap();
    for _ in 0..50 {
        let mut layers: Vec<Vec<(u32, u32, CountryIdT)>> = Vec::new();
        for _ in 0..3 {
            let mut rows = Vec::new();
            let mut at = rng.random_range(0u32..50);
            for _ in 0..rng.random_range(0..8) {
                let end = at + rng.random_range(0..20);
                rows.push((at, end, us + rng.random_range(0..3u8) as CountryIdT));
                at = end + rng.random_range(1..20);
            }
            layers.push(rows);
        }
        let tables: Vec<Table> = layers
            .iter()
            .map(|rows| {
                let v4 = rows
                    .iter()
                    .map(|&(s, e, c)| crate::data::table::Range { start: s.into(), end: e.into(), country: c })
                    .collect();
                Table::from_ranges(crate::data::table::Ranges { v4, v6: vec![] }).unwrap()
            })
            .collect();
        let combined = tables[1..].iter().fold(tables[0].clone(), |acc, t| acc.overlay(t).unwrap());
        for ip in 0u32..500 {
            let want = layers.iter().rev().find_map(|rows| rows.iter().find(|r| r.0 <= ip && ip <= r.1).map(|r| r.2));
            assert_eq!(combined.lookup(IpAddr::V4(ip.into())).map(|(_, c)| c), want, "{ip} {layers:?}");
        }
    }
}

type CountryIdT = geoblock_common::CountryId;

#[test]
fn formats_are_detected_and_can_be_forced() {
    let cases = [
        ("dbip-country-lite-2026-06.csv", Format::Csv),
        ("geoip", Format::Csv),
        ("IP2LOCATION-LITE-DB1.CSV", Format::Ip2Location),
        ("delegated-arin-extended-latest", Format::Rir),
        ("cn-aggregated.zone", Format::Cidr),
        ("blocklist.cidr", Format::Cidr),
        ("GeoLite2-Country-CSV_20260101/GeoLite2-Country-Blocks-IPv4.csv", Format::MaxmindCsv),
    ];
    for (name, want) in cases {
        let bytes = std::fs::read(fixture(name)).unwrap();
        assert_eq!(detect::detect(name, &bytes), Some(want), "{name}");
        // Content alone, under an uninformative name.
        assert_eq!(detect::detect("data", &bytes), Some(want), "{name} by content");
    }
    assert_eq!(detect::detect("x", b"\x00\x01garbage"), None);
    let inputs = vec![Input { origin: "x".into(), name: "x".into(), bytes: b"1.0.0.0/24 DE\n".to_vec() }];
    let forced = Options { format: Some(Format::Csv), ..Options::default() };
    let err = read("x".into(), inputs, &forced).unwrap_err().to_string();
    assert_eq!(err, "x:1: field 'end': missing (a row is start,end,country)");
    assert_eq!("MaxMind-CSV".parse::<Format>(), Ok(Format::MaxmindCsv));
    assert!("geo".parse::<Format>().unwrap_err().contains("csv, ip2location, mmdb, maxmind-csv, rir, cidr"));
}

fn read_error(name: &str, text: &str) -> String {
    let inputs = vec![Input { origin: name.into(), name: name.into(), bytes: text.as_bytes().to_vec() }];
    read(name.into(), inputs, &Options::default()).unwrap_err().to_string()
}

#[test]
fn errors_name_file_line_and_field_in_every_format() {
    let cases = [
        ("IP2LOCATION-LITE-DB1.CSV", "\"1\",\"2\",\"US\",\"x\"\n\"5\",\"3\",\"US\",\"x\"\n", "IP2LOCATION-LITE-DB1.CSV:2: field 'ip_to': 3 comes before ip_from 5"),
        ("IP2LOCATION-LITE-DB1.CSV", "\"1\",\"2\",\"US\"\n", "IP2LOCATION-LITE-DB1.CSV:1: field 'country_name': missing (a row is ip_from,ip_to,country_code,country_name)"),
        ("IP2LOCATION-LITE-DB1.CSV", "\"1\",\"2x\",\"US\",\"x\"\n", "IP2LOCATION-LITE-DB1.CSV:1: field 'ip_to': '2x' is not a decimal integer"),
        ("delegated-ripencc-extended-latest", "2|ripencc|1\nripencc|DE|ipv4|1.2.3.0|0|2001|allocated\n", "delegated-ripencc-extended-latest:2: field 'value': 0 addresses from 1.2.3.0 do not fit IPv4"),
        ("delegated-ripencc-extended-latest", "ripencc|DE|ipv6|2001:db8::1|32|2001|allocated\n", "delegated-ripencc-extended-latest:1: field 'value': 2001:db8::1/32 is not an IPv6 network"),
        ("delegated-ripencc-extended-latest", "ripencc|XX|ipv4|1.2.3.0|256|2001|assigned\n", "delegated-ripencc-extended-latest:1: field 'cc': 'XX' is not an ISO 3166-1 alpha-2 country code"),
        ("delegated-ripencc-extended-latest", "ripencc|DE|ipv4|1.2.3.0|256|2001|stolen\n", "delegated-ripencc-extended-latest:1: field 'status': 'stolen' is not allocated, assigned, available or reserved"),
        ("de.zone", "1.2.3.0/24\n1.2.3.4/24\n", "de.zone:2: field 'network': '1.2.3.4/24' has host bits set (the network is 1.2.3.0)"),
        ("list.cidr", "1.2.3.0/24\n", "list.cidr:1: field 'country': missing, and the file name 'list.cidr' does not start with a country code (as cn-aggregated.zone does)"),
        ("list.cidr", "1.2.3.0/24 DE\n1.2.3.128/25 FR\n", "list.cidr:1 and list.cidr:2: ranges 1.2.3.0-1.2.3.255 DE and 1.2.3.128-1.2.3.255 FR overlap but have different countries"),
    ];
    for (name, text, want) in cases {
        assert_eq!(read_error(name, text), want);
    }
    let blocks = "network,geoname_id,registered_country_geoname_id\n1.0.0.0/24,999,\n";
    let inputs = vec![
        Input {
            origin: "z/GeoLite2-Country-Blocks-IPv4.csv".into(),
            name: "GeoLite2-Country-Blocks-IPv4.csv".into(),
            bytes: blocks.into(),
        },
        Input {
            origin: "z/GeoLite2-Country-Locations-en.csv".into(),
            name: "GeoLite2-Country-Locations-en.csv".into(),
            bytes: b"geoname_id,country_iso_code\n1,DE\n".to_vec(),
        },
    ];
    let err = read("z".into(), inputs.clone(), &Options::default()).unwrap_err().to_string();
    assert_eq!(err, "z/GeoLite2-Country-Blocks-IPv4.csv:2: field 'geoname_id': 999 is not in the Locations-en.csv");
    let mut wrong_family = inputs.clone();
    wrong_family[0].bytes = b"network,geoname_id,registered_country_geoname_id\n2001:db8::/32,1,\n".to_vec();
    let err = read("z".into(), wrong_family, &Options::default()).unwrap_err().to_string();
    assert_eq!(
        err,
        "z/GeoLite2-Country-Blocks-IPv4.csv:2: field 'network': 2001:db8::/32 is of the other family than this file's"
    );
    let err = read("z".into(), inputs[..1].to_vec(), &Options::default()).unwrap_err().to_string();
    assert_eq!(err, "z/GeoLite2-Country-Blocks-IPv4.csv: MaxMind CSV without its Locations-en.csv");
    let err = read_error("x.mmdb", "not a database").to_string();
    assert!(err.starts_with("x.mmdb: not a readable MMDB"), "{err}");
}

/// Every fixture's bytes, and each as every format: the mutation corpus.
fn corpus() -> Vec<(String, Vec<u8>)> {
    let names = [
        "dbip-country-lite-2026-06.csv",
        "geoip",
        "geoip6",
        "IP2LOCATION-LITE-DB1.CSV",
        "IP2LOCATION-LITE-DB1.IPV6.CSV",
        "delegated-apnic-extended-latest",
        "cn-aggregated.zone",
        "blocklist.cidr",
        "GeoLite2-Country-CSV_20260101/GeoLite2-Country-Blocks-IPv4.csv",
    ];
    let mut out: Vec<(String, Vec<u8>)> =
        names.iter().map(|n| (n.to_string(), std::fs::read(fixture(n)).unwrap())).collect();
    let small = load_paths(&[fixture("cn-aggregated.zone"), fixture("geoip6")]);
    out.push(("x.mmdb".into(), mmdb::write(&small, &["country", "iso_code"], "t", 1)));
    out
}

/// Parsing must give a table or an error, whatever the bytes.
fn never_panics(name: &str, bytes: Vec<u8>) {
    for format in Format::ALL.map(Some).into_iter().chain([None]) {
        let inputs = vec![Input { origin: name.into(), name: name.into(), bytes: bytes.clone() }];
        let _ = read(name.into(), inputs, &Options { format, ..Options::default() });
    }
    let _ = archive::unpack(name.into(), bytes);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn mutated_fixtures_never_panic(which in 0usize..10, edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..12)) {
        let corpus = corpus();
        let (name, mut bytes) = corpus[which % corpus.len()].clone();
        for (at, byte, op) in edits {
            if bytes.is_empty() { break; }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => { bytes.insert(i, byte); }
                _ => { bytes.truncate(i); }
            }
        }
        never_panics(&name, bytes);
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(
        prop_oneof![any::<u8>(), prop::sample::select(b"0123456789abcdef:./|,#\"\r\n -ZZUSassignedipv4".to_vec())],
        0..400,
    )) {
        for name in ["data", "x.mmdb", "delegated-x", "cn.zone", "IP2LOCATION-LITE-DB1.IPV6.CSV", "geoip"] {
            never_panics(name, bytes.clone());
        }
        let mut gz = b"\x1f\x8b".to_vec();
        gz.extend(&bytes);
        never_panics("g", gz);
        let mut zip = b"PK\x03\x04".to_vec();
        zip.extend(&bytes);
        never_panics("z", zip);
    }
}

#[test]
fn dates_come_from_names_and_epochs() {
    assert_eq!(detect::date_in_name("dbip-country-lite-2026-06.csv.gz").as_deref(), Some("2026-06"));
    assert_eq!(detect::date_in_name("GeoLite2-Country-CSV_20260101.zip").as_deref(), Some("2026-01-01"));
    assert_eq!(detect::date_in_name("GeoLite2-Country.mmdb"), None);
    assert_eq!(detect::date_in_name("x-123456789.csv"), None);
    assert_eq!(date_of_epoch(1_767_225_600).as_deref(), Some("2026-01-01"));
    assert_eq!(date_of_epoch(951_782_400).as_deref(), Some("2000-02-29"));
}

/// The full DB-IP Lite data (npm `@ip-location-db/dbip-country`, unpacked in
/// `GEOBLOCK_DBIP_DIR`, default /tmp/package): CSV and an MMDB made from it
/// give the same table. `cargo test -p geoblock-user -- --ignored real_dbip`
#[test]
#[ignore = "needs the DB-IP Lite CSVs (see data/README.md)"]
fn real_dbip_csv_and_mmdb_agree() {
    let dir = PathBuf::from(std::env::var("GEOBLOCK_DBIP_DIR").unwrap_or("/tmp/package".into()));
    let csv = load_paths(&[dir.join("dbip-country-ipv4.csv"), dir.join("dbip-country-ipv6.csv")]);
    assert_eq!(csv.counts(), crate::data::table::PerFamily { v4: 593_597, v6: 773_898 });
    let out = temp_dir("real-mmdb");
    let mmdb = out.join("renamed.bin");
    std::fs::write(&mmdb, mmdb::write(&csv, &["country", "iso_code"], "DBIP-Country-Lite", 1_780_000_000)).unwrap();
    let (from_mmdb, info) = load_one(&mmdb, &Options::default()).unwrap();
    assert_eq!(info.formats, [Format::Mmdb], "detected by content");
    assert!(from_mmdb == csv);
    std::fs::remove_dir_all(&out).unwrap();
}
