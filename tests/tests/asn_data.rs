//! Real AS data as it ships (npm `@ip-location-db/asn`), read by `geoblock
//! lookup` and `data inspect --asn`, checked against its own rows, read again
//! in iptoasn's layout, and loaded by the real daemon. Needs the npm registry
//! (and root for the daemon); fails (never skips) without them.
//!
//! No package registry carries iptoasn's own files (PyPI's `ip2asn`,
//! `pyiptoasn` and `nazo-ip2asn` hold code only), so the iptoasn reader is
//! checked on ip-location-db's rows written in iptoasn's exact layout, with
//! the gaps between them as its "Not routed" rows: both readers must give
//! every address the same AS.

use std::{
    fmt::Write as _,
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use geoblock_tests::{
    geoblock::{self, run_to_end, Daemon},
    netns::Pair,
    registry,
    traffic::deliveries,
};

/// A row of the CSV: first, last address, AS.
type Row = (IpAddr, IpAddr, u32);

fn rows(file: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
    text.lines()
        .map(|line| {
            let mut f = line.splitn(4, ',');
            let mut next = || f.next().unwrap_or_else(|| panic!("a short row {line:?}"));
            (next().parse().unwrap(), next().parse().unwrap(), next().parse().unwrap())
        })
        .collect()
}

fn step(ip: IpAddr, up: bool) -> Option<IpAddr> {
    match ip {
        IpAddr::V4(a) => u32::from(a).checked_add_signed(if up { 1 } else { -1 }).map(|n| IpAddr::V4(n.into())),
        IpAddr::V6(a) => {
            let n = u128::from(a);
            if up { n.checked_add(1) } else { n.checked_sub(1) }.map(|n| IpAddr::V6(n.into()))
        }
    }
}

/// Every `every`th row's first and last address with the AS it has, and
/// the addresses just outside it.
fn probes(rows: &[Row], every: usize) -> Vec<(IpAddr, Option<u32>)> {
    rows.iter()
        .step_by(every)
        .flat_map(|&(first, last, asn)| {
            [(step(first, false), None), (Some(first), Some(asn)), (Some(last), Some(asn)), (step(last, true), None)]
        })
        .filter_map(|(ip, asn)| Some((ip?, asn)))
        .collect()
}

/// `geoblock lookup --asn-data ...` of `addrs` (through files: more than a
/// pipe holds): each address's AS column, `ASn` or `-`.
fn lookup(asn_data: &[&Path], addrs: &[IpAddr]) -> Vec<String> {
    let tag = format!("{}-{:?}", std::process::id(), std::thread::current().id()).replace(['(', ')'], "");
    let [input, output] =
        ["probes", "answers"].map(|what| std::env::temp_dir().join(format!("geoblock-asn-{what}-{tag}")));
    let text: String = addrs.iter().map(|a| format!("{a}\n")).collect();
    std::fs::write(&input, text).unwrap();
    let mut args = vec!["lookup".to_string()];
    for path in asn_data {
        args.extend(["--asn-data".to_string(), path.display().to_string()]);
    }
    args.push("-".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_to_end(None, &args, |cmd| {
        cmd.stdin(std::fs::File::open(&input).expect("the probes"));
        cmd.stdout(std::fs::File::create(&output).expect("the answers"));
    });
    assert!(out.status.success(), "geoblock lookup failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&output).expect("the answers");
    let _ = [input, output].map(std::fs::remove_file);
    let answers: Vec<String> = text.lines().map(|l| l.split_whitespace().nth(3).unwrap_or("").to_string()).collect();
    assert_eq!(answers.len(), addrs.len(), "one line per address expected");
    answers
}

fn as_text(asn: Option<u32>) -> String {
    asn.map_or("-".into(), |a| format!("AS{a}"))
}

/// The AS of the first row starting at `start`, from the file itself.
fn as_of_row(rows: &[Row], start: &str) -> u32 {
    let start: IpAddr = start.parse().unwrap();
    rows.iter().find(|r| r.0 == start).unwrap_or_else(|| panic!("no row starts at {start}")).2
}

#[test]
fn ip_location_db_asn_is_read_exactly() {
    let [v4, v6] = registry::ip_location_db_asn();
    let (rows4, rows6) = (rows(&v4), rows(&v6));
    // Well-known networks, as the file itself has them.
    assert_eq!((as_of_row(&rows4, "8.8.8.0"), as_of_row(&rows4, "1.1.1.0")), (15169, 13335));
    let famous: Vec<IpAddr> = ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888"].map(|a| a.parse().unwrap()).into();
    assert_eq!(lookup(&[&v4, &v6], &famous), ["AS15169", "AS13335", "AS15169"]);

    // The ends of sampled rows get their AS; the addresses just outside
    // them another or none (the file's rows touch: "another" is the next row's).
    let probes: Vec<(IpAddr, Option<u32>)> = probes(&rows4, 997).into_iter().chain(probes(&rows6, 251)).collect();
    let addrs: Vec<IpAddr> = probes.iter().map(|p| p.0).collect();
    let got = lookup(&[&v4, &v6], &addrs);
    let (mut inside, mut right) = (0, 0);
    for ((ip, want), got) in probes.iter().zip(&got) {
        match want {
            Some(_) => {
                inside += 1;
                right += usize::from(*got == as_text(*want));
            }
            None => assert!(got == "-" || got.starts_with("AS"), "{ip}: {got}"),
        }
    }
    // Only a row that a narrower one of another AS overlaps may differ at its ends.
    assert!(right * 1000 >= inside * 999, "{right} of {inside} row ends have their row's AS");

    let out =
        run_to_end(None, &["data", "inspect", "--asn", "--json", v4.to_str().unwrap(), v6.to_str().unwrap()], |_| {});
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("inspect --json");
    let count = |key: &str, family: &str| report[key][family].as_u64().unwrap_or(0);
    // 2026-06-17: 564,579 IPv4 and 167,903 IPv6 prefixes of 91,065 ASes.
    assert!((300_000..2_000_000).contains(&count("prefixes", "v4")), "{report}");
    assert!((100_000..2_000_000).contains(&count("prefixes", "v6")), "{report}");
    assert!((50_000..200_000).contains(&report["ases"].as_u64().unwrap_or(0)), "{report}");
    assert_eq!(report["sources"].as_array().map(Vec::len), Some(2));
}

/// The `-num` files (integer addresses) give every address the AS the
/// address files give it.
#[test]
fn integer_files_agree_with_address_files() {
    let ([v4, v6], [n4, n6]) = (registry::ip_location_db_asn(), registry::ip_location_db_asn_integers());
    let (rows4, rows6) = (rows(&v4), rows(&v6));
    let addrs: Vec<IpAddr> = probes(&rows4, 1999).into_iter().chain(probes(&rows6, 499)).map(|p| p.0).collect();
    assert_eq!(lookup(&[&v4, &v6], &addrs), lookup(&[&n4, &n6], &addrs));
}

/// ip-location-db's IPv4 rows written as iptoasn's `ip2asn-v4.tsv`, each gap
/// between them a "Not routed" row of AS 0.
fn as_iptoasn(rows: &[Row], dir: &Path) -> PathBuf {
    let mut out = String::new();
    let mut next: u32 = 0;
    for &(first, last, asn) in rows {
        let (IpAddr::V4(first), IpAddr::V4(last)) = (first, last) else { panic!("an IPv6 row in the IPv4 file") };
        if u32::from(first) > next {
            let gap_end = std::net::Ipv4Addr::from(u32::from(first) - 1);
            let _ = writeln!(out, "{}\t{gap_end}\t0\tNone\tNot routed", std::net::Ipv4Addr::from(next));
        }
        let _ = writeln!(out, "{first}\t{last}\t{asn}\tZZ\tAS{asn} of ip-location-db");
        next = next.max(u32::from(last).saturating_add(1));
    }
    let path = dir.join("ip2asn-v4.tsv");
    std::fs::write(&path, out).unwrap();
    path
}

#[test]
fn iptoasn_layout_agrees_with_ip_location_db() {
    let [v4, _] = registry::ip_location_db_asn();
    let rows4 = rows(&v4);
    let dir = std::env::temp_dir().join(format!("geoblock-iptoasn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tsv = as_iptoasn(&rows4, &dir);
    let addrs: Vec<IpAddr> = probes(&rows4, 499).into_iter().map(|p| p.0).collect();
    let (csv, iptoasn) = (lookup(&[&v4], &addrs), lookup(&[&tsv], &addrs));
    let differ: Vec<String> = addrs
        .iter()
        .zip(csv.iter().zip(&iptoasn))
        .filter(|(_, (a, b))| a != b)
        .map(|(ip, (a, b))| format!("{ip}: {a} vs {b}"))
        .take(10)
        .collect();
    assert!(differ.is_empty(), "the two readers differ: {differ:?}");
    assert!(csv.iter().any(|a| a == "-"), "no probe fell in a \"Not routed\" gap");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_daemon_loads_ip_location_db_asn_and_shows_it() {
    let [v4, v6] = registry::ip_location_db_asn();
    let pair = Pair::create();
    let asn = ["--asn-data", v4.to_str().unwrap(), "--asn-data", v6.to_str().unwrap()];
    let daemon = Daemon::start(&pair.receiver, &geoblock::run_args(&pair, &[&["--block", "CN"][..], &asn].concat()));
    let out = daemon.control(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json");
    let asn = &status["status"]["data"]["asn"];
    assert_eq!(asn["sources"].as_array().map(Vec::len), Some(2), "{status}");
    assert_eq!(asn["sources"][0]["source"].as_str(), v4.to_str());
    assert!(asn["prefixes_v4"].as_u64().unwrap_or(0) > 300_000, "{asn}");
    assert!(asn["prefixes_v6"].as_u64().unwrap_or(0) > 100_000, "{asn}");
    assert!(asn["ases"].as_u64().unwrap_or(0) > 50_000, "{asn}");
    let text = String::from_utf8_lossy(&daemon.control(&["status"]).stdout).into_owned();
    assert!(text.contains("asn data") && text.contains("autonomous systems"), "{text}");
    geoblock::stop_and_detach(&pair, daemon);
}

/// Blocking one real AS (Google's, holding 8.8.8.8 and
/// 2001:4860:4860::8888) drops exactly its addresses: the rows' first and
/// last addresses, and not the addresses just outside them unless the
/// data gives those the same AS; each drop counts against the AS.
#[test]
fn a_real_as_is_blocked_exactly() {
    let [v4, v6] = registry::ip_location_db_asn();
    let rows = [rows(&v4), rows(&v6)].concat();
    let as_of = |ip: IpAddr| rows.iter().find(|r| r.0 <= ip && ip <= r.1 && r.0.is_ipv4() == ip.is_ipv4());
    let (dns4, dns6): (IpAddr, IpAddr) = ("8.8.8.8".parse().unwrap(), "2001:4860:4860::8888".parse().unwrap());
    let google = as_of(dns4).expect("8.8.8.8 has an AS").2;
    let mut srcs = vec![];
    for ip in [dns4, dns6] {
        let &(first, last, asn) = as_of(ip).unwrap_or_else(|| panic!("{ip} has an AS"));
        assert_eq!(asn, google, "{ip} is in the AS of 8.8.8.8");
        srcs.extend([Some(ip), Some(first), Some(last), step(first, false), step(last, true)].into_iter().flatten());
    }
    let dropped: Vec<IpAddr> = srcs.iter().copied().filter(|&ip| as_of(ip).is_some_and(|r| r.2 == google)).collect();
    assert!(dropped.len() < srcs.len(), "a control: some probes are outside AS{google}");
    let pair = Pair::create();
    let block = format!("AS{google}");
    let asn = ["--asn-data", v4.to_str().unwrap(), "--asn-data", v6.to_str().unwrap()];
    let daemon = Daemon::start(&pair.receiver, &geoblock::run_args(&pair, &[&["--block", &block][..], &asn].concat()));
    let got = deliveries(&pair, &srcs, 3);
    let wrong: Vec<String> = got
        .iter()
        .filter(|(ip, n)| (**n == 0) != dropped.contains(ip))
        .map(|(ip, n)| format!("{ip}: {n} of 3 delivered ({})", as_text(as_of(*ip).map(|r| r.2))))
        .collect();
    assert!(wrong.is_empty(), "blocking {block}:\n{}\n{}", wrong.join("\n"), daemon.log());
    let stats = daemon.stats();
    let counted = stats.0["selectors"].as_array().and_then(|s| s.iter().find(|s| s["name"] == block.as_str()));
    let counted = counted.and_then(|s| s["dropped_packets"].as_u64());
    assert_eq!(counted, Some(3 * dropped.len() as u64), "{block}'s drops: {}", stats.0);
    geoblock::stop_and_detach(&pair, daemon);
}

/// The daemon's status as JSON.
fn status(daemon: &Daemon) -> serde_json::Value {
    let out = daemon.control(&["status", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("status --json")["status"].clone()
}

#[test]
fn edited_asn_data_is_reloaded_and_shrunken_asn_data_refused() {
    let dir = std::env::temp_dir().join(format!("geoblock-asn-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("asn-ipv4.csv");
    std::fs::write(&file, "1.0.0.0,1.0.255.255,1,one\n2.0.0.0,2.0.255.255,2,two\n").unwrap();
    let pair = Pair::create();
    let args = ["--block", "CN", "--asn-data", file.to_str().unwrap()];
    let daemon = Daemon::start(&pair.receiver, &geoblock::run_args(&pair, &args));
    let prefixes = |s: &serde_json::Value| s["data"]["asn"]["prefixes_v4"].as_u64();
    assert_eq!(prefixes(&status(&daemon)), Some(2));

    // Edited in place: reloaded without a signal, with the country data.
    std::fs::write(&file, "1.0.0.0,1.0.255.255,1,one\n2.0.0.0,2.0.255.255,2,two\n3.0.0.0,3.0.0.255,3,three\n").unwrap();
    daemon.wait_line("data changed on disk", Duration::from_secs(30));
    daemon.wait_line("reloaded: generation 2", Duration::from_secs(30));
    assert_eq!(prefixes(&status(&daemon)), Some(3));

    // Most of it gone: refused, the AS data in force stays.
    std::fs::write(&file, "3.0.0.0,3.0.0.255,3,three\n").unwrap();
    let line = daemon.wait_line("reload failed (shrink guard, AS data)", Duration::from_secs(30));
    assert!(line.contains("shrinks by") && line.contains("stay in force"), "{line}");
    let s = status(&daemon);
    assert_eq!((s["data"]["generation"].as_u64(), prefixes(&s)), (Some(2), Some(3)), "{s}");

    // Forced, it loads.
    let out = daemon.control(&["reload", "--force"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("generation 3"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(prefixes(&status(&daemon)), Some(1));
    geoblock::stop_and_detach(&pair, daemon);
    let _ = std::fs::remove_dir_all(&dir);
}
