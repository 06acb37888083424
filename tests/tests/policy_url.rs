//! One policy for many hosts, end to end: the real `geoblock run` with
//! `--policy-url` and `--policy-key`, the signed policy document served by
//! an HTTP server in the test's namespace, real frames from addresses of
//! the embedded data (CN, FR, DE). A new document is applied under traffic
//! without a leak or a wrong drop; a 404, a malformed document, a document
//! that would drop the management network and a bad signature are each
//! refused, counted, shown in `status`, and the policy in force stays.
//! Needs root; fails (never skips) without it.

use std::{io::Cursor, net::IpAddr, time::Duration};

use geoblock_tests::{
    geoblock::{self, run_args, ConfigFile, Daemon, Scratch},
    http::{self, FileServer},
    netns::Pair,
    sources,
    traffic::{deliveries, under_traffic},
};
use serde_json::Value;

/// The document's name on the server.
const DOCUMENT: &str = "policy.toml";
const SIGNATURE: &str = "policy.toml.minisig";
/// The daemon asks the server every second; a change may take a few on a
/// loaded machine.
const APPLIED: Duration = Duration::from_secs(30);
const COPIES: usize = 4;
/// Where the daemon under test serves its metrics (in its namespace).
const METRICS_PORT: u16 = 9718;

/// A publisher: its key pair, and the server its documents are served from.
struct Publisher {
    pair: minisign::KeyPair,
    server: FileServer,
}

impl Publisher {
    fn new(pair: &Pair) -> Publisher {
        let server = FileServer::start(&pair.receiver, "");
        Publisher { pair: minisign::KeyPair::generate_unencrypted_keypair().unwrap(), server }
    }

    /// `policy_key` for the daemons.
    fn key(&self) -> String {
        self.pair.pk.to_base64()
    }

    fn url(&self) -> String {
        self.server.url(DOCUMENT)
    }

    /// Publishes `text`, signed with `by` (this publisher's key, or another).
    fn publish_signed(&self, text: &str, by: &minisign::KeyPair) {
        let signature = minisign::sign(Some(&by.pk), &by.sk, Cursor::new(text.as_bytes()), None, None).unwrap();
        self.server.serve_named(SIGNATURE, &signature.into_string());
        self.server.serve_named(DOCUMENT, text);
    }

    fn publish(&self, text: &str) {
        self.publish_signed(text, &self.pair);
    }
}

/// A document of `serial` whose rule `default` blocks `countries`.
fn document(serial: u64, countries: &[&str]) -> String {
    let list: Vec<String> = countries.iter().map(|c| format!("\"{c}\"")).collect();
    format!("serial = {serial}\n[policy]\nblock = [{}]\n", list.join(", "))
}

/// The config of a daemon taking its policy from `publisher`, with DE's
/// test source as its management network.
fn config(publisher: &Publisher, cache: &Scratch) -> ConfigFile {
    ConfigFile::new(&config_text(publisher, &publisher.key(), cache))
}

/// That config, with `key` as `policy_key`.
fn config_text(publisher: &Publisher, key: &str, cache: &Scratch) -> String {
    let [de4, _] = sources::of("DE");
    format!(
        "policy_url = \"{}\"\npolicy_key = \"{key}\"\npolicy_refresh = \"1s\"\nmanagement = [\"{de4}/32\"]\n\
         metrics = \"127.0.0.1:{METRICS_PORT}\"\ncache_dir = \"{}\"\n",
        publisher.url(),
        cache.0.display()
    )
}

/// A new pair and publisher, serial 1 (CN blocked) published, and a
/// daemon started with it (its config and cache live as long as it).
fn started() -> (Pair, Publisher, Scratch, ConfigFile, Daemon) {
    let pair = Pair::create();
    let (publisher, cache) = (Publisher::new(&pair), Scratch::new("policy-url"));
    publisher.publish(&document(1, &["CN"]));
    let config = config(&publisher, &cache);
    let daemon = Daemon::start(&pair.receiver, &run_args(&pair, &["--config", config.arg()]));
    (pair, publisher, cache, config, daemon)
}

/// `status --json`'s `policy_url`.
fn published(daemon: &Daemon) -> Value {
    let out = daemon.control(&["status", "--json"]);
    assert!(out.status.success(), "status: {}", String::from_utf8_lossy(&out.stderr));
    let status: Value = serde_json::from_slice(&out.stdout).expect("status --json");
    status["status"]["policy_url"].clone()
}

/// Waits until `status` says the last download ended as `ok` with a
/// message holding `text`; returns the `policy_url` status then.
fn await_fetch(daemon: &Daemon, ok: bool, text: &str) -> Value {
    let deadline = std::time::Instant::now() + APPLIED;
    loop {
        let status = published(daemon);
        let last = &status["last_fetch"];
        if last["ok"] == ok && last["message"].as_str().is_some_and(|m| m.contains(text)) {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {} download saying {text:?} within {APPLIED:?}: {status}\n{}",
            if ok { "good" } else { "refused" },
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Exactly `dropped` of `srcs` are dropped.
fn assert_dropped(pair: &Pair, daemon: &Daemon, srcs: &[IpAddr], dropped: &[IpAddr]) {
    let got = deliveries(pair, srcs, COPIES);
    for src in srcs {
        let want = if dropped.contains(src) { 0 } else { COPIES };
        assert_eq!(got[src], want, "{src}: {} of {COPIES} delivered\n{}", got[src], daemon.log());
    }
}

/// The metrics the fleet alerts on.
fn policy_metrics(pair: &Pair) -> (u64, u64) {
    let (code, text) = http::get(&pair.receiver, METRICS_PORT, "/metrics");
    assert_eq!(code, 200, "{text}");
    let value = |name: &str| {
        let series = |l: &&str| l.strip_prefix(name).is_some_and(|rest| rest.starts_with([' ', '{']));
        let line = text.lines().find(series).unwrap_or_else(|| panic!("{name}: {text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    (value("geoblock_policy_generation"), value("geoblock_policy_fetch_failures_total"))
}

/// A new signed document is applied while traffic flows: CN, blocked by
/// both versions, is never delivered; DE, allowed by both, never dropped;
/// FR is dropped once the new version is in force.
#[test]
fn an_edited_policy_is_applied_under_traffic_with_zero_leaks() {
    let (pair, publisher, _cache, config, daemon) = started();
    let [cn4, cn6] = sources::of("CN");
    let [fr4, fr6] = sources::of("FR");
    let [de4, de6] = sources::of("DE");
    assert_eq!(published(&daemon)["serial"], 1, "{}", daemon.log());
    assert_dropped(&pair, &daemon, &[cn4, cn6, fr4, fr6, de4, de6], &[cn4, cn6]);
    let flowed = under_traffic(&pair, &[cn4, cn6, de4, de6], || {
        publisher.publish(&document(2, &["CN", "FR"]));
        await_fetch(&daemon, true, "published policy serial 2 applied");
    });
    flowed.assert_enforced(&[cn4, cn6], &[de4, de6], &pair, &daemon.log());
    assert_dropped(&pair, &daemon, &[cn4, fr4, fr6, de4, de6], &[cn4, fr4, fr6]);
    let status = await_fetch(&daemon, true, "unchanged, serial 2");
    assert_eq!((status["serial"].as_u64(), status["signed"].as_bool()), (Some(2), Some(true)), "{status}");
    assert_eq!(policy_metrics(&pair), (2, 0));
    // A restart while the server is down starts with the policy in force.
    let state_dir = daemon.state_dir.clone();
    assert!(daemon.stop().success());
    publisher.server.fail_named(DOCUMENT, 503);
    let daemon = Daemon::start_in(&pair.receiver, &run_args(&pair, &["--config", config.arg()]), state_dir);
    assert_eq!(published(&daemon)["serial"], 2, "{}", daemon.log());
    assert_dropped(&pair, &daemon, &[cn4, fr4, de4], &[cn4, fr4]);
    await_fetch(&daemon, false, "HTTP 503");
    geoblock::stop_and_detach(&pair, daemon);
}

/// Whatever is wrong with a download, the policy in force (serial 1:
/// CN blocked) stays and the failure is counted and shown; a good document
/// afterwards is applied.
#[test]
fn a_404_a_malformed_document_a_lock_out_and_a_bad_signature_are_each_refused() {
    let (pair, publisher, _cache, _config, daemon) = started();
    let [cn4, _] = sources::of("CN");
    let [fr4, _] = sources::of("FR");
    let [de4, _] = sources::of("DE");
    let probes = [cn4, fr4, de4];
    let forger = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let mut failures = 0;
    let refusals: [(&str, &dyn Fn()); 4] = [
        ("HTTP 404", &|| publisher.server.fail_named(DOCUMENT, 404)),
        ("TOML parse error", &|| publisher.publish("serial = 2\n[policy]\nblock = [\"FR\"\n")),
        ("lock-out guard", &|| publisher.publish(&document(3, &["CN", "DE"]))),
        ("does not verify", &|| publisher.publish_signed(&document(4, &["CN", "FR"]), &forger)),
    ];
    for (problem, publish) in refusals {
        publish();
        let status = await_fetch(&daemon, false, problem);
        assert_eq!(status["serial"], 1, "{problem}: {status}");
        let counted = status["fetch_failures"].as_u64().unwrap();
        assert!(counted > failures, "{problem}: failures not counted: {status}");
        failures = counted;
        assert_dropped(&pair, &daemon, &probes, &[cn4]);
    }
    let text = String::from_utf8_lossy(&daemon.control(&["status"]).stdout).into_owned();
    assert!(text.contains("policy get  FAILED") && text.contains("does not verify"), "{text}");
    let (serial, counted) = policy_metrics(&pair);
    assert!(serial == 1 && counted >= failures, "metrics: serial {serial}, failures {counted}");
    // A control command changes this host's policy: status says so until
    // the next published change.
    let out = daemon.control(&["block", "RU"]);
    assert!(out.status.success(), "block RU: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(published(&daemon)["changed_locally"], true);
    publisher.publish(&document(5, &["CN", "FR"]));
    let status = await_fetch(&daemon, true, "published policy serial 5 applied");
    assert_eq!(status["changed_locally"], false, "{status}");
    assert_dropped(&pair, &daemon, &probes, &[cn4, fr4]);
    // An older document, signed, served again: refused.
    publisher.publish(&document(4, &["CN"]));
    await_fetch(&daemon, false, "serial 4 is older than the policy in force (serial 5)");
    assert_dropped(&pair, &daemon, &probes, &[cn4, fr4]);
    geoblock::stop_and_detach(&pair, daemon);
}

/// A publisher's new key: documents signed with it are refused until the
/// host's config names it and the daemon reloads; then the new document
/// goes into force, though the one in force was signed with the old key.
#[test]
fn a_new_policy_key_takes_effect_at_a_reload() {
    let (pair, publisher, cache, config, daemon) = started();
    let [cn4, _] = sources::of("CN");
    let [fr4, _] = sources::of("FR");
    let [de4, _] = sources::of("DE");
    let rotated = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    publisher.publish_signed(&document(2, &["CN", "FR"]), &rotated);
    await_fetch(&daemon, false, "does not verify");
    std::fs::write(&config.path, config_text(&publisher, &rotated.pk.to_base64(), &cache)).unwrap();
    await_fetch(&daemon, false, "changed in the config: `geoblock reload` applies them");
    let out = daemon.control(&["reload"]);
    assert!(out.status.success(), "reload: {}\n{}", String::from_utf8_lossy(&out.stderr), daemon.log());
    let status = published(&daemon);
    assert_eq!((status["serial"].as_u64(), status["signed"].as_bool()), (Some(2), Some(true)), "{status}");
    assert_dropped(&pair, &daemon, &[cn4, fr4, de4], &[cn4, fr4]);
    await_fetch(&daemon, true, "unchanged, serial 2");
    geoblock::stop_and_detach(&pair, daemon);
}
