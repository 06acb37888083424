use std::path::PathBuf;

use super::*;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("geoblock-list-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The list `name` read from a file `file` holding `bytes`.
fn read(name: &str, file: &str, bytes: &[u8]) -> Result<AddressList, ListError> {
    let dir = temp_dir(name);
    let path = dir.join(file);
    std::fs::write(&path, bytes).unwrap();
    let list = load(name, &path, file);
    std::fs::remove_dir_all(&dir).unwrap();
    list
}

fn nets(list: &AddressList) -> Vec<String> {
    list.v4.iter().map(ToString::to_string).chain(list.v6.iter().map(ToString::to_string)).collect()
}

#[test]
fn text_takes_comments_blank_lines_crlf_and_bare_addresses() {
    // Tor's bulk exit list, Spamhaus DROP and FireHOL's headers in one file.
    let text = "\u{feff}; Spamhaus DROP List 2026/12/01\r\n\
                # FireHOL netset\r\n\
                \r\n\
                1.10.16.0/20 ; SBL256894\r\n\
                185.220.101.7\r\n\
                \t2001:db8::/32   # documentation\r\n\
                2001:db9::1\n\
                ;1.2.3.0/24 commented out\n";
    let list = read("mixed", "mixed.netset", text.as_bytes()).unwrap();
    assert_eq!(nets(&list), ["1.10.16.0/20", "185.220.101.7/32", "2001:db8::/32", "2001:db9::1/128"]);
    assert_eq!(list.info.entries, PerFamily { v4: 2, v6: 2 });
    assert_eq!((list.info.format, list.info.origin.as_str()), (ListFormat::Text, "mixed.netset"));
    assert!(list.info.modified.is_some());
}

#[test]
fn overlapping_and_repeated_entries_merge_into_the_fewest_prefixes() {
    let text = "10.0.0.0/25\n10.0.0.128/25\n10.0.0.5\n10.0.0.0/24\n10.0.0.0/24\n10.0.1.0/24\n10.0.2.0/23\n\
                10.0.4.0/24\n2001:db8::/33\n2001:db8:8000::/33\n2001:db8::1\n";
    let list = read("merge", "merge.txt", text.as_bytes()).unwrap();
    assert_eq!(nets(&list), ["10.0.0.0/22", "10.0.4.0/24", "2001:db8::/32"]);
    assert_eq!(list.info.entries, PerFamily { v4: 8, v6: 3 });
    assert_eq!(list.addresses(), PerFamily { v4: 1280.0, v6: 2f64.powi(96) });
}

#[test]
fn contains_answers_for_every_address_of_the_list_and_no_other() {
    let list = read("contains", "c.txt", b"10.0.0.0/23\n10.0.4.0/24\n192.0.2.7\n2001:db8::/32\n").unwrap();
    for inside in ["10.0.0.0", "10.0.1.255", "10.0.4.9", "192.0.2.7", "2001:db8:1::1"] {
        assert!(list.contains(inside.parse().unwrap()), "{inside}");
    }
    for outside in ["9.255.255.255", "10.0.2.0", "10.0.3.255", "10.0.5.0", "192.0.2.8", "2001:db9::", "::"] {
        assert!(!list.contains(outside.parse().unwrap()), "{outside}");
    }
}

#[test]
fn host_bits_are_refused_with_the_file_and_line() {
    let err = read("hosting", "hosting.netset", b"# hosting\n10.0.0.0/8\n10.0.0.1/8\n").unwrap_err().to_string();
    assert_eq!(
        err,
        "list hosting: hosting.netset:3: field 'address': '10.0.0.1/8' has host bits set (the network is 10.0.0.0)"
    );
}

#[test]
fn what_is_not_one_address_a_line_is_refused_with_the_line() {
    let err = read("bad", "bad.txt", b"1.2.3.4\n1.2.3.0/24 1.2.4.0/24\n").unwrap_err().to_string();
    assert!(err.contains("bad.txt:2: field 'address': followed by '1.2.4.0/24'"), "{err}");
    let err = read("bad", "bad.txt", b"1.2.3.4\r\n\r\nexample.com\r\n").unwrap_err().to_string();
    assert!(err.contains("bad.txt:3: field 'address': 'example.com' is not a CIDR network"), "{err}");
}

#[test]
fn a_list_that_names_nothing_is_refused() {
    for text in ["", "# only comments\n; and more\n\n", "; Spamhaus DROP\n  # nothing\r\n"] {
        let err = read("empty", "empty.txt", text.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("list empty: empty.txt: names no address"), "{err}");
    }
    let err = read("empty", "e.json", br#"{"syncToken": "1", "prefixes": [], "ipv6_prefixes": []}"#).unwrap_err();
    assert!(err.to_string().contains("names no address"), "{err}");
}

/// As AWS publishes it (https://ip-ranges.amazonaws.com/ip-ranges.json), shortened.
const AWS: &str = r#"{
  "syncToken": "1764633784",
  "createDate": "2026-12-01-23-23-04",
  "prefixes": [
    {"ip_prefix": "3.4.12.4/32", "region": "eu-west-1", "service": "AMAZON", "network_border_group": "eu-west-1"},
    {"ip_prefix": "3.5.140.0/22", "region": "ap-northeast-2", "service": "AMAZON", "network_border_group": "ap-northeast-2"},
    {"ip_prefix": "3.5.140.0/22", "region": "ap-northeast-2", "service": "S3", "network_border_group": "ap-northeast-2"},
    {"ip_prefix": "13.34.37.64/27", "region": "ap-southeast-4", "service": "AMAZON", "network_border_group": "ap-southeast-4"}
  ],
  "ipv6_prefixes": [
    {"ipv6_prefix": "2600:1f69:7400::/40", "region": "mx-central-1", "service": "AMAZON", "network_border_group": "mx-central-1"},
    {"ipv6_prefix": "2a05:d07a:a000::/40", "region": "eu-south-1", "service": "S3", "network_border_group": "eu-south-1"}
  ]
}"#;

/// As Google publishes it (https://www.gstatic.com/ipranges/cloud.json), shortened.
const GCP: &str = r#"{
  "syncToken": "1764590700930",
  "creationTime": "2026-12-01T04:05:00.93077",
  "prefixes": [{
    "ipv4Prefix": "34.1.208.0/20",
    "service": "Google Cloud",
    "scope": "africa-south1"
  }, {
    "ipv6Prefix": "2600:1900:8000::/44",
    "service": "Google Cloud",
    "scope": "africa-south1"
  }, {
    "ipv4Prefix": "34.35.0.0/16",
    "service": "Google Cloud",
    "scope": "africa-south1"
  }]
}"#;

#[test]
fn aws_ip_ranges_give_every_prefix() {
    let list = read("aws", "ip-ranges.json", AWS.as_bytes()).unwrap();
    assert_eq!(
        nets(&list),
        ["3.4.12.4/32", "3.5.140.0/22", "13.34.37.64/27", "2600:1f69:7400::/40", "2a05:d07a:a000::/40"]
    );
    assert_eq!((list.info.format, list.info.entries), (ListFormat::AwsJson, PerFamily { v4: 4, v6: 2 }));
}

#[test]
fn google_cloud_ranges_give_every_prefix() {
    let list = read("gcp", "cloud.json", GCP.as_bytes()).unwrap();
    assert_eq!(nets(&list), ["34.1.208.0/20", "34.35.0.0/16", "2600:1900:8000::/44"]);
    assert_eq!((list.info.format, list.info.entries), (ListFormat::GcpJson, PerFamily { v4: 2, v6: 1 }));
}

#[test]
fn json_errors_name_the_entry() {
    let host_bits = AWS.replace(
        "3.5.140.0/22\", \"region\": \"ap-northeast-2\", \"service\": \"S3",
        "3.5.140.1/22\", \"region\": \"ap-northeast-2\", \"service\": \"S3",
    );
    let err = read("aws", "ip-ranges.json", host_bits.as_bytes()).unwrap_err().to_string();
    assert!(err.contains("ip-ranges.json: prefixes[2].ip_prefix: '3.5.140.1/22' has host bits set"), "{err}");
    let missing = GCP.replace("\"ipv6Prefix\"", "\"ipPrefix\"");
    let err = read("gcp", "cloud.json", missing.as_bytes()).unwrap_err().to_string();
    assert!(err.contains("cloud.json: prefixes[1]: has no ip_prefix"), "{err}");
    let err = read("gcp", "cloud.json", &GCP.as_bytes()[..200]).unwrap_err().to_string();
    assert!(err.contains("cloud.json: not AWS or Google Cloud address ranges: EOF"), "{err}");
}

#[test]
fn a_gzipped_list_reads_as_the_plain_one() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, AWS.as_bytes()).unwrap();
    let list = read("aws", "ip-ranges.json.gz", &gz.finish().unwrap()).unwrap();
    assert_eq!(list.v4, read("aws", "ip-ranges.json", AWS.as_bytes()).unwrap().v4);
}

/// A small file that unpacks past the byte budget is refused, not held.
#[test]
fn a_list_past_the_byte_budget_is_refused() {
    let chunk: Vec<u8> = b"192.0.2.1\n".iter().copied().cycle().take(16 << 20).collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &chunk).unwrap();
    let gz = gz.finish().unwrap();
    let copies = (crate::data::BUDGET >> 24) as usize + 1;
    let err = read("bomb", "bomb.txt.gz", &gz.repeat(copies)).unwrap_err().to_string();
    assert!(err.starts_with("list bomb: ") && err.contains("bomb.txt.gz: gzip data: larger than 512 MiB"), "{err}");
}

#[test]
fn list_names_are_checked() {
    for good in ["tor", "hosting", "aws_eu-1", "a", "abcdefghijklmnopqrstuvwxyz"] {
        assert_eq!(check_name(good).unwrap(), good);
    }
    for (bad, problem) in [
        ("", "1 to 26"),
        ("abcdefghijklmnopqrstuvwxyz0", "1 to 26"),
        ("Tor", "only a-z"),
        ("tor exits", "only a-z"),
        ("list:tor", "only a-z"),
        ("tör", "only a-z"),
    ] {
        let err = check_name(bad).unwrap_err().to_string();
        assert!(err.starts_with(&format!("list name '{bad}': ")) && err.contains(problem), "{err}");
    }
    let err = read("Bad", "x.txt", b"1.2.3.4\n").unwrap_err().to_string();
    assert!(err.starts_with("list name 'Bad'"), "{err}");
}

#[test]
fn list_flags_are_name_and_source() {
    let spec = parse_spec("tor=https://check.torproject.org/torbulkexitlist").unwrap();
    assert_eq!(spec, ("tor".to_string(), "https://check.torproject.org/torbulkexitlist".to_string()));
    assert_eq!(parse_spec("x=/etc/a=b").unwrap().1, "/etc/a=b");
    for bad in ["tor", "tor=", "=/etc/x"] {
        assert!(parse_spec(bad).is_err(), "{bad}");
    }
    assert!(parse_spec("TOR=/x").unwrap_err().to_string().contains("'TOR'"));
}

/// Lists load with the country data, and their files are watched with the
/// sources': what the daemon compares to tell a change on disk.
#[test]
fn data_sources_load_lists_and_watch_their_files() {
    let dir = temp_dir("sources");
    let file = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text).unwrap();
        dir.join(name).display().to_string()
    };
    let countries = file("cc.csv", "1.0.1.0,1.0.1.255,CN\n");
    let lists = vec![("tor".to_string(), file("tor.txt", "192.0.2.7\n")), ("aws".to_string(), file("a.json", AWS))];
    let data = crate::data::DataSources {
        sources: vec![countries],
        asn: vec![],
        options: Default::default(),
        cache_dir: dir.join("cache"),
        lists: lists.clone(),
    };
    let loaded = data.load().unwrap();
    let names: Vec<&str> = loaded.lists.iter().map(|l| l.name.as_str()).collect();
    assert_eq!((names, loaded.table.v4.len()), (vec!["tor", "aws"], 1));
    assert_eq!(loaded.modified(&data), data.modified());
    assert_eq!(data.modified().len(), 3);
    let embedded = crate::data::DataSources { sources: vec![], lists: lists[..1].to_vec(), ..data.clone() };
    let loaded = embedded.load().unwrap();
    assert_eq!((loaded.modified(&embedded), loaded.lists.len()), (embedded.modified(), 1));
    // A list that cannot be read fails the load, naming the list.
    let broken = crate::data::DataSources { lists: vec![("tor".into(), file("bad.txt", "1.2.3.4/8\n"))], ..data };
    assert!(broken.load().unwrap_err().to_string().starts_with("list tor: "));
    std::fs::remove_dir_all(&dir).unwrap();
}
