//! Every AS format at the bounds of its rows, compressed and archived, and
//! hostile rows with the place named.

use std::{io::Write as _, net::IpAddr, path::PathBuf};

use super::*;
use crate::data::shrink::{check_coverage, ShrinkError};

fn input(name: &str, bytes: &[u8]) -> Input {
    Input { origin: name.to_string(), name: name.to_string(), bytes: bytes.to_vec() }
}

/// One in-memory file read as an AS source.
fn parse(name: &str, text: &str) -> Result<AsnData, SourceError> {
    read(name.to_string(), vec![input(name, text.as_bytes())])
}

fn error(name: &str, text: &str) -> String {
    parse(name, text).map(|_| ()).expect_err("refused").to_string()
}

fn asn_at(data: &AsnData, ip: IpAddr) -> Option<Asn> {
    data.lookup(ip).map(|(_, asn, _)| asn)
}

/// The address `delta` away from `ip`, if in its family.
fn beside(ip: IpAddr, delta: i8) -> Option<IpAddr> {
    let bits = match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    let moved = bits.checked_add_signed(delta.into())?;
    Some(match ip {
        IpAddr::V4(_) => IpAddr::V4(u32::try_from(moved).ok()?.into()),
        IpAddr::V6(_) => IpAddr::V6(moved.into()),
    })
}

/// The first and last address of a row get its AS; the addresses just
/// outside it do not.
fn assert_row(data: &AsnData, first: &str, last: &str, asn: Asn) {
    let (first, last): (IpAddr, IpAddr) = (first.parse().unwrap(), last.parse().unwrap());
    assert_eq!(asn_at(data, first), Some(asn), "{first}");
    assert_eq!(asn_at(data, last), Some(asn), "{last}");
    for outside in [beside(first, -1), beside(last, 1)].into_iter().flatten() {
        assert_ne!(asn_at(data, outside), Some(asn), "{outside} is outside the row");
    }
}

const IP_LOCATION_DB: &str = "1.0.0.0,1.0.0.255,13335,\"Cloudflare, Inc.\"\n\
    1.0.4.0,1.0.7.255,38803,Gtelecom Pty Ltd\n\
    1.0.16.0,1.0.16.255,2519,\n\
    2001:200::,2001:200:ffff:ffff:ffff:ffff:ffff:ffff,2500,WIDE Project\n";

fn check_ip_location_db(data: &AsnData) {
    assert_row(data, "1.0.0.0", "1.0.0.255", 13335);
    assert_row(data, "1.0.4.0", "1.0.7.255", 38803);
    assert_row(data, "1.0.16.0", "1.0.16.255", 2519);
    assert_row(data, "2001:200::", "2001:200:ffff:ffff:ffff:ffff:ffff:ffff", 2500);
    assert_eq!(asn_at(data, "1.0.1.0".parse().unwrap()), None, "no row: no AS");
    assert_eq!(data.lookup("1.0.0.1".parse().unwrap()).unwrap().2, Some("Cloudflare, Inc."));
    assert_eq!(data.lookup("1.0.16.1".parse().unwrap()).unwrap().2, None, "an AS without a name");
}

#[test]
fn ip_location_db_rows_are_exact() {
    let data = parse("asn-ipv4.csv", IP_LOCATION_DB).unwrap();
    check_ip_location_db(&data);
    let info = &data.sources[0];
    assert_eq!(info.formats, [AsnFormat::IpLocationDb]);
    assert_eq!((info.ranges, info.ases), (PerFamily { v4: 3, v6: 1 }, 4));
    assert_eq!(info.prefixes, PerFamily { v4: 3, v6: 1 });
}

#[test]
fn ip_location_db_integer_files_read_as_their_family() {
    let v4 = "16777216,16777471,13335,\"Cloudflare, Inc.\"\n16778240,16779263,38803,Gtelecom Pty Ltd\n";
    let data = parse("asn-ipv4-num.csv", v4).unwrap();
    assert_row(&data, "1.0.0.0", "1.0.0.255", 13335);
    assert_row(&data, "1.0.4.0", "1.0.7.255", 38803);
    let v6 = "42540528726795050063891204319802818560,42540528806023212578155541913346768895,2500,WIDE Project\n";
    let data = parse("asn-ipv6-num.csv", v6).unwrap();
    assert_row(&data, "2001:200::", "2001:200:ffff:ffff:ffff:ffff:ffff:ffff", 2500);
}

const IPTOASN: &str = "1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET\n\
    1.0.1.0\t1.0.3.255\t0\tNone\tNot routed\n\
    1.0.4.0\t1.0.7.255\t38803\tAU\tGTELECOM-AUSTRALIA Gtelecom Pty Ltd\n\
    1.0.16.0\t1.0.16.255\t2519\tJP\tVECTANT ARTERIA Networks Corporation\n\
    2001:200::\t2001:200:ffff:ffff:ffff:ffff:ffff:ffff\t2500\tJP\tWIDE-BB WIDE Project\n";

#[test]
fn iptoasn_rows_are_exact_and_not_routed_is_no_as() {
    let data = parse("ip2asn-combined.tsv", IPTOASN).unwrap();
    assert_eq!(data.sources[0].formats, [AsnFormat::Iptoasn]);
    assert_row(&data, "1.0.0.0", "1.0.0.255", 13335);
    assert_row(&data, "1.0.4.0", "1.0.7.255", 38803);
    assert_row(&data, "2001:200::", "2001:200:ffff:ffff:ffff:ffff:ffff:ffff", 2500);
    assert_eq!(asn_at(&data, "1.0.2.0".parse().unwrap()), None, "AS 0, not routed");
    assert_eq!(data.orgs.get(&13335).map(String::as_str), Some("CLOUDFLARENET"));
    assert!(!data.orgs.contains_key(&0));
    // By content, whatever the name.
    assert_eq!(parse("asns", IPTOASN).unwrap().sources[0].formats, [AsnFormat::Iptoasn]);
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("geoblock-asn-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[test]
fn gzipped_files_read_as_plain_ones() {
    let dir = temp_dir("gz");
    std::fs::write(dir.join("ip2asn-v4.tsv.gz"), gzip(IPTOASN.as_bytes())).unwrap();
    std::fs::write(dir.join("asn-ipv4.csv.gz"), gzip(IP_LOCATION_DB.as_bytes())).unwrap();
    let data = load(&[dir.join("ip2asn-v4.tsv.gz")]).unwrap();
    assert_row(&data, "1.0.4.0", "1.0.7.255", 38803);
    assert!(data.sources[0].modified.is_some());
    check_ip_location_db(&load(&[dir.join("asn-ipv4.csv.gz")]).unwrap());
}

const BLOCKS_V4: &str = "network,autonomous_system_number,autonomous_system_organization\n\
    1.0.0.0/24,13335,CLOUDFLARENET\n\
    1.0.4.0/22,38803,\"Gtelecom Pty Ltd\"\n";
const BLOCKS_V6: &str = "network,autonomous_system_number,autonomous_system_organization\n\
    2001:200::/32,2500,\"WIDE Project\"\n";

#[test]
fn maxmind_csv_files_folder_and_zip_are_exact() {
    let dir = temp_dir("maxmind");
    let folder = dir.join("GeoLite2-ASN-CSV_20260101");
    std::fs::create_dir(&folder).unwrap();
    let files = [("GeoLite2-ASN-Blocks-IPv4.csv", BLOCKS_V4), ("GeoLite2-ASN-Blocks-IPv6.csv", BLOCKS_V6)];
    for (name, text) in files {
        std::fs::write(folder.join(name), text).unwrap();
    }
    std::fs::write(folder.join("LICENSE.txt"), "licence").unwrap();
    let check = |data: &AsnData| {
        assert_row(data, "1.0.0.0", "1.0.0.255", 13335);
        assert_row(data, "1.0.4.0", "1.0.7.255", 38803);
        assert_row(data, "2001:200::", "2001:200:ffff:ffff:ffff:ffff:ffff:ffff", 2500);
        assert_eq!(data.orgs.get(&38803).map(String::as_str), Some("Gtelecom Pty Ltd"));
        assert_eq!(data.sources[0].formats, [AsnFormat::MaxmindCsv]);
        assert_eq!(data.sources[0].date.as_deref(), Some("2026-01-01"));
    };
    check(&load(&[&folder]).unwrap());

    let zip_path = dir.join("GeoLite2-ASN-CSV_20260101.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
    let options = zip::write::SimpleFileOptions::default();
    for (name, text) in files {
        zip.start_file(format!("GeoLite2-ASN-CSV_20260101/{name}"), options).unwrap();
        zip.write_all(text.as_bytes()).unwrap();
    }
    zip.finish().unwrap();
    check(&load(&[&zip_path]).unwrap());
}

#[test]
fn mmdb_networks_get_their_as_and_organisation() {
    let data = parse("asn-ipv4.csv", IP_LOCATION_DB).unwrap();
    let mut orgs = data.orgs.clone();
    orgs.remove(&2500);
    let bytes = crate::data::mmdb::write_asn(&data.table, &orgs, 1_767_225_600);
    let read_back = read("GeoLite2-ASN.mmdb".into(), vec![input("GeoLite2-ASN.mmdb", &bytes)]).unwrap();
    assert_eq!((&read_back.table, &read_back.orgs), (&data.table, &orgs));
    let info = &read_back.sources[0];
    assert_eq!((&info.formats[..], info.date.as_deref()), (&[AsnFormat::Mmdb][..], Some("2026-01-01")));
    // By content, whatever the name.
    assert_eq!(read("asns".into(), vec![input("asns", &bytes)]).unwrap().table, data.table);
}

#[test]
fn hostile_rows_are_refused_with_their_place() {
    let cases = [
        ("x.csv", "1.0.0.0,1.0.0.255,AS-x,org\n", "x.csv:1: field 'asn': 'AS-x' is not an AS number"),
        (
            "x.csv",
            "1.0.0.0,1.0.0.255,4294967296,org\n",
            "x.csv:1: field 'asn': '4294967296' is not an AS number (above 4294967295)",
        ),
        ("x.csv", "1.0.0.0,1.0.0.255,-1,org\n", "x.csv:1: field 'asn': '-1' is not an AS number"),
        ("x.csv", "\n1.0.0.255,1.0.0.0,1,org\n", "x.csv:2: field 'end': '1.0.0.0' comes before start '1.0.0.255'"),
        // A file cut short within a line.
        ("x.csv", "1.0.0.0,1.0.0.255,1,o\n1.0.1.0,1.0.1", "x.csv:2: field 'asn': missing (a row is start,end,asn)"),
        ("x.csv", "1.0.1.0,1.0.1,5,o\n", "x.csv:1: field 'end': '1.0.1' is not an IP address or integer"),
        ("x.csv", "1.0.0.0,1.0.0.255\n", "x.csv:1: field 'asn': missing (a row is start,end,asn)"),
        ("x.csv", "one,1.0.0.255,1,o\n", "x.csv:1: field 'start': 'one' is not an IP address or integer"),
        ("x.csv", "1.0.0.0,::1,1,o\n", "x.csv:1: field 'end': '::1' is not of the family of start '1.0.0.0'"),
        (
            "x.csv",
            "1.0.0.0,1.0.0.255,1,o,extra\n",
            "x.csv:1: field 'org': followed by an extra field (a row is start,end,asn,org)",
        ),
        (
            "ip2asn-v4.tsv",
            "1.0.0.0\t1.0.0.255\tx\tUS\to\n",
            "ip2asn-v4.tsv:1: field 'AS_number': 'x' is not an AS number",
        ),
        (
            "ip2asn-v4.tsv",
            "1.0.0.0\t1.0.0.255\n",
            "ip2asn-v4.tsv:1: field 'AS_number': missing (a row is range_start\trange_end\tAS_number\tcountry_code)",
        ),
        (
            "GeoLite2-ASN-Blocks-IPv4.csv",
            "network,autonomous_system_number,autonomous_system_organization\n1.0.0.7/24,1,o\n",
            "GeoLite2-ASN-Blocks-IPv4.csv:2: field 'network': '1.0.0.7/24' has host bits set (the network is 1.0.0.0)",
        ),
        (
            "GeoLite2-ASN-Blocks-IPv4.csv",
            "network,autonomous_system_number,autonomous_system_organization\n::/64,1,o\n",
            "GeoLite2-ASN-Blocks-IPv4.csv:2: field 'network': ::/64 is of the other family than this file's",
        ),
        (
            "GeoLite2-ASN-Blocks-IPv4.csv",
            "network,asn\n1.0.0.0/24,1\n",
            "GeoLite2-ASN-Blocks-IPv4.csv:1: field 'header': the header has no column 'autonomous_system_number'",
        ),
    ];
    for (name, text, expected) in cases {
        assert_eq!(error(name, text), expected, "{text:?}");
    }
}

#[test]
fn rows_of_one_size_and_different_ases_that_overlap_name_both_lines() {
    let text = "1.0.0.0,1.0.0.255,1,a\n2.0.0.0,2.0.0.255,5,e\n1.0.0.128,1.0.1.127,2,b\n";
    assert_eq!(
        error("x.csv", text),
        "x.csv:1 and x.csv:3: rows 1.0.0.0-1.0.0.255 AS1 and 1.0.0.128-1.0.1.127 AS2 overlap, are of one size and \
         have different ASes: which one holds is unknown"
    );
    // Named as the rows are, though a wider row's piece lies between them.
    let text = "1.0.0.0,1.0.3.255,1,wide\n1.0.1.0,1.0.1.255,2,b\n1.0.1.128,1.0.2.127,3,c\n";
    assert!(
        error("x.csv", text).starts_with("x.csv:2 and x.csv:3: rows 1.0.1.0-1.0.1.255 AS2 and 1.0.1.128-1.0.2.127 AS3"),
        "{}",
        error("x.csv", text)
    );
    // One AS twice is no conflict.
    let data = parse("x.csv", "1.0.0.0,1.0.0.255,1,a\n1.0.0.0,1.0.0.255,1,a\n1.0.0.128,1.0.1.127,1,a\n").unwrap();
    assert_row(&data, "1.0.0.0", "1.0.1.127", 1);
}

#[test]
fn the_narrower_row_wins_where_rows_overlap() {
    // As in ip-location-db's IPv4 file of 2026-06-17, and a nested announcement.
    let text = "214.95.0.0,215.0.255.255,749,DoD\n215.0.0.0,215.1.3.255,721,DoD NIC\n\
        10.0.0.0,10.0.3.255,1,wide\n10.0.2.0,10.0.2.255,2,inner\n";
    let data = parse("asn-ipv4.csv", text).unwrap();
    let at = |ip: &str| asn_at(&data, ip.parse().unwrap());
    assert_eq!([at("214.95.0.0"), at("214.255.255.255"), at("215.0.0.0")], [Some(749), Some(749), Some(721)]);
    assert_eq!([at("215.1.3.255"), at("215.1.4.0"), at("214.94.255.255")], [Some(721), None, None]);
    assert_eq!(
        [at("10.0.1.255"), at("10.0.2.0"), at("10.0.2.255"), at("10.0.3.0")],
        [Some(1), Some(2), Some(2), Some(1)]
    );
}

#[test]
fn a_later_source_wins_where_it_has_an_as() {
    let dir = temp_dir("later");
    std::fs::write(dir.join("base.csv"), "1.0.0.0,1.0.3.255,1,base\n").unwrap();
    std::fs::write(dir.join("fix.csv"), "1.0.1.0,1.0.1.255,2,fix\n1.0.8.0,1.0.8.255,3,new\n").unwrap();
    let data = load(&[dir.join("base.csv"), dir.join("fix.csv")]).unwrap();
    let at = |ip: &str| asn_at(&data, ip.parse().unwrap());
    assert_eq!([at("1.0.0.255"), at("1.0.1.0"), at("1.0.2.0"), at("1.0.8.8")], [Some(1), Some(2), Some(1), Some(3)]);
    assert_eq!(data.sources.len(), 2);
    assert_eq!(data.orgs.get(&2).map(String::as_str), Some("fix"));
}

#[test]
fn an_as_table_covering_far_less_is_refused() {
    let old = parse("a.csv", "1.0.0.0,1.0.3.255,1,a\n").unwrap().table;
    let half = parse("a.csv", "1.0.0.0,1.0.1.255,1,a\n").unwrap().table;
    let moved = parse("a.csv", "1.0.0.0,1.0.3.255,2,b\n").unwrap().table;
    assert_eq!(check_coverage("the new AS table", &old, &Table::default(), 0.1), Err(ShrinkError::Empty));
    assert!(
        matches!(check_coverage("the new AS table", &old, &half, 0.1), Err(ShrinkError::Shrinks { share, .. }) if share == 50.0)
    );
    assert_eq!(check_coverage("the new AS table", &old, &half, 0.6), Ok(()));
    assert_eq!(check_coverage("the new AS table", &old, &moved, 0.1), Ok(()), "another AS, same coverage");
}

/// Networks that each have a record of their own, all pointing to one
/// large map: read by their two paths, quickly; none has an AS.
#[test]
fn an_mmdb_of_distinct_records_reads_only_the_as_paths() {
    let mut bytes = Vec::new();
    crate::data::mmdb::write_distinct(&mut bytes, 1 << 16, 60_000).unwrap();
    let started = std::time::Instant::now();
    let data = read("hostile.mmdb".into(), vec![input("hostile.mmdb", &bytes)]).unwrap();
    assert!(data.table.v4.is_empty() && data.table.v6.is_empty());
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
}

/// A country database given as AS data: its networks have no AS number; a
/// record whose number is text is refused, naming the network.
#[test]
fn an_mmdb_without_as_numbers_gives_no_as() {
    let countries = crate::data::Table::from_ranges(crate::data::table::Ranges {
        v4: vec![crate::data::table::Range {
            start: "1.0.0.0".parse().unwrap(),
            end: "1.0.0.255".parse().unwrap(),
            country: crate::country::parse("DE").unwrap(),
        }],
        v6: vec![],
    })
    .unwrap();
    let bytes = crate::data::mmdb::write(&countries, &["country", "iso_code"], "GeoLite2-Country", 0);
    let data = read("GeoLite2-Country.mmdb".into(), vec![input("GeoLite2-Country.mmdb", &bytes)]).unwrap();
    assert!(data.table.v4.is_empty());
    let bytes = crate::data::mmdb::write(&countries, &["autonomous_system_number"], "GeoLite2-ASN", 0);
    let error = read("x.mmdb".into(), vec![input("x.mmdb", &bytes)]).map(|_| ()).unwrap_err().to_string();
    assert!(error.starts_with("x.mmdb: network 1.0.0.0/24: field 'autonomous_system_number': "), "{error}");
}
