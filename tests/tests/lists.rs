//! Named address lists in the running daemon: a list given as a URL is
//! downloaded, shown in `status` beside a local one and enforced by a rule
//! naming it, refreshed with the data, and a download that shrinks it past
//! the guard is refused while the list in force stays (and keeps blocking). Needs root (a throwaway namespace serves the
//! list); fails, never skips, without it.
//!
//! Build the binary first: `cargo build -p geoblock-user --bin geoblock`.

use std::{fmt::Write as _, net::Ipv4Addr, time::Duration};

use geoblock_tests::{
    geoblock::{self, passing, ConfigFile, Daemon, Scratch},
    http::FileServer,
    netns::Pair,
};

/// A Tor bulk exit list of `n` relays (one address a line, none adjacent).
fn exits(n: u32) -> String {
    let first = u32::from(Ipv4Addr::new(185, 220, 0, 0));
    (0..n).fold(String::new(), |mut text, i| {
        writeln!(text, "{}", Ipv4Addr::from(first + 2 * i)).unwrap();
        text
    })
}

/// A FireHOL-style netset with its header comments, both families.
const HOSTING: &str = "#\n# hosting.netset\n#\n5.9.0.0/16\n88.198.0.0/16\n88.198.0.0/17 ; dup\n2a01:4f8::/32\n";

fn ctl(daemon: &Daemon, args: &[&str]) -> String {
    let out = daemon.control(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "geoblock {}: {stderr}\ndaemon log:\n{}", args.join(" "), daemon.log());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn status(daemon: &Daemon) -> serde_json::Value {
    let response: serde_json::Value = serde_json::from_str(&ctl(daemon, &["status", "--json"])).unwrap();
    response["status"].clone()
}

#[test]
fn a_url_list_is_downloaded_shown_and_a_shrunken_download_refused() {
    let pair = Pair::create();
    let server = FileServer::start(&pair.receiver, &exits(1200));
    let url = server.url("torbulkexitlist");
    let scratch = Scratch::new("lists");
    let data = scratch.file("countries.csv", "1.0.1.0,1.0.1.255,CN\n88.198.0.0,88.198.0.255,DE\n");
    let hosting = scratch.file("hosting.netset", HOSTING);
    let cache = scratch.0.join("cache");
    let config = ConfigFile::new(&format!(
        "[lists]\ntor = \"{url}\"\nhosting = \"{hosting}\"\n[policy]\nblock = [\"CN\", \"list:tor\"]\n"
    ));
    let cache = cache.to_str().unwrap();
    let args = geoblock::run_args(
        &pair,
        &["--data", &data, "--config", config.arg(), "--cache-dir", cache, "--refresh", "1s"],
    );
    let daemon = Daemon::start(&pair.receiver, &args);
    let log = daemon.log();
    assert!(log.contains("list tor: 1200 IPv4 and 0 IPv6 entries (text) as 1200 and 0 prefixes"), "{log}");

    let s = status(&daemon);
    let lists = &s["data"]["lists"];
    assert_eq!((lists[0]["name"].as_str(), lists[0]["origin"].as_str()), (Some("tor"), Some(url.as_str())), "{s}");
    assert_eq!((lists[0]["entries_v4"].as_u64(), lists[0]["prefixes_v4"].as_u64()), (Some(1200), Some(1200)), "{s}");
    assert_eq!((lists[1]["name"].as_str(), lists[1]["format"].as_str()), (Some("hosting"), Some("text")), "{s}");
    let hosting_counts = ["entries_v4", "entries_v6", "prefixes_v4", "prefixes_v6"].map(|k| lists[1][k].as_u64());
    assert_eq!(hosting_counts, [Some(3), Some(1), Some(2), Some(1)], "{s}");
    assert!(lists[0]["age_seconds"].as_u64().is_some_and(|a| a < 60), "{s}");
    let text = ctl(&daemon, &["status"]);
    assert!(
        text.contains(&format!("list        tor: {url} (text: 1200 IPv4 and 0 IPv6 entries, 1200 and 0 prefixes")),
        "{text}"
    );

    // The rule blocks the list's addresses; the hosting list is in no rule.
    let (first, fiftieth, hosting) = ("185.220.0.0", "185.220.0.100", "88.198.0.1");
    assert_eq!(passing(&pair, &daemon, &[first, fiftieth, hosting, "1.0.1.1"]), [hosting]);

    // A truncated download: ten of the relays. Refused; the list stays.
    server.serve(&exits(10));
    daemon.wait_line("downloaded 1 changed URL source", Duration::from_secs(30));
    let line = daemon.wait_line("reload failed (shrink guard)", Duration::from_secs(30));
    assert!(line.contains("list tor covers 10 entries, 1200 before") && line.contains("stay in force"), "{line}");
    let s = status(&daemon);
    assert_eq!(s["data"]["lists"][0]["entries_v4"], 1200, "{s}");
    assert_eq!((s["data"]["generation"].as_u64(), s["last_reload"]["ok"].as_bool()), (Some(1), Some(false)), "{s}");
    assert!(s["last_reload"]["message"].as_str().unwrap().contains("list tor covers 10 entries"), "{s}");
    assert_eq!(passing(&pair, &daemon, &[first, fiftieth, hosting]), [hosting], "the list in force still blocks");

    // An operator who means it forces the short list in.
    assert!(ctl(&daemon, &["reload", "--force"]).contains("generation 2"));
    let s = status(&daemon);
    assert_eq!(s["data"]["lists"][0]["entries_v4"], 10, "{s}");
    assert_eq!(s["data"]["lists"][1]["entries_v4"], 3, "{s}");
    assert_eq!(passing(&pair, &daemon, &[first, fiftieth, hosting]), [fiftieth, hosting]);

    // A list file edited on disk is reloaded without a signal.
    scratch.file("hosting.netset", &format!("{HOSTING}78.46.0.0/15\n"));
    daemon.wait_line("data changed on disk", Duration::from_secs(30));
    daemon.wait_line("reloaded: generation 3", Duration::from_secs(30));
    let s = status(&daemon);
    assert_eq!(
        (s["data"]["lists"][1]["entries_v4"].as_u64(), s["data"]["lists"][1]["prefixes_v4"].as_u64()),
        (Some(4), Some(3)),
        "{s}"
    );
    geoblock::stop_and_detach(&pair, daemon);
}
