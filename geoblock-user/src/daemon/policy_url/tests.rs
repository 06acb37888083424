use std::io::Cursor;

use super::*;
use crate::daemon::config::{Config, ConfigError};

const DOCUMENT: &str = "serial = 3\n[policy]\nblock = [\"KP\", \"list:tor\"]\n[lists]\ntor = \"/etc/tor.txt\"\n";

/// A publisher's key pair, and its public key as `policy_key` takes it.
fn publisher() -> (minisign::KeyPair, String) {
    let pair = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let key = pair.pk.to_base64();
    (pair, key)
}

/// What `minisign -S` writes beside `document`.
fn sign(pair: &minisign::KeyPair, document: &str) -> String {
    minisign::sign(Some(&pair.pk), &pair.sk, Cursor::new(document.as_bytes()), Some("serial 3"), None)
        .unwrap()
        .into_string()
}

/// A cache directory of the test's own, with `files` in its `policy/`.
fn cache(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("geoblock-policy-url-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join(CACHE_SUBDIR)).unwrap();
    for (file, text) in files {
        std::fs::write(dir.join(CACHE_SUBDIR).join(file), text).unwrap();
    }
    dir
}

fn url(key: Option<String>, cache_dir: PathBuf) -> PolicyUrl {
    PolicyUrl::new("https://example.net/fleet/policy.toml".into(), key, DEFAULT_POLICY_REFRESH, cache_dir).unwrap()
}

#[test]
fn a_document_is_the_policy_tables_and_a_serial() {
    let document = parse(DOCUMENT).unwrap();
    assert_eq!(document.serial, 3);
    assert_eq!(document.policy.block.as_deref(), Some(&["KP".to_string(), "list:tor".to_string()][..]));
    assert_eq!(document.lists, Some(vec![("tor".to_string(), "/etc/tor.txt".to_string())]));
    for (text, problem) in [
        ("[policy]\nblock = [\"KP\"]\n", "serial"),
        ("serial = 0\n[policy]\nblock = [\"KP\"]\n", "serial must be 1 or more"),
        ("serial = 1\ninterfaces = [\"eth0\"]\n", "unknown field `interfaces`"),
        ("serial = 1\nmanagement = [\"0.0.0.0/0\"]\n", "unknown field `management`"),
        ("serial = 1\n[policy\n", "unclosed table"),
    ] {
        let error = parse(text).unwrap_err();
        assert!(error.contains(problem), "{text:?}: {error}");
    }
}

#[test]
fn the_signature_is_published_beside_the_document() {
    assert_eq!(signature_url("https://a.example/p.toml"), "https://a.example/p.toml.minisig");
    assert_eq!(signature_url("https://a.example/p.toml?v=2"), "https://a.example/p.toml.minisig?v=2");
}

#[test]
fn a_signed_document_verifies_and_any_change_or_other_key_is_refused() {
    let (pair, key) = publisher();
    let signature = sign(&pair, DOCUMENT);
    verify(&key, DOCUMENT.as_bytes(), signature.as_bytes()).unwrap();
    let opened = DOCUMENT.replace("\"KP\", ", "");
    let error = verify(&key, opened.as_bytes(), signature.as_bytes()).unwrap_err();
    assert!(error.contains("does not verify"), "{error}");
    let (_, other) = publisher();
    assert!(verify(&other, DOCUMENT.as_bytes(), signature.as_bytes()).is_err(), "another key");
    assert!(verify(&key, DOCUMENT.as_bytes(), b"untrusted comment: x\nnot base64\n").is_err(), "garbage");
    let bad_key = PolicyUrl::new(
        "https://a.example/p.toml".into(),
        Some("RWnotakey".into()),
        DEFAULT_POLICY_REFRESH,
        "/x".into(),
    );
    assert!(matches!(bad_key, Err(PolicyUrlError::Key(_))));
}

#[test]
fn the_last_good_download_is_verified_again_when_read() {
    let (pair, key) = publisher();
    let signed = cache("signed", &[("policy.toml", DOCUMENT), ("policy.toml.minisig", &sign(&pair, DOCUMENT))]);
    assert_eq!(url(Some(key.clone()), signed.clone()).cached().unwrap().serial, 3);
    assert_eq!(url(None, signed.clone()).cached().unwrap().serial, 3, "no key: no signature needed");
    // The document changed behind the daemon's back (or the key did).
    std::fs::write(signed.join("policy/policy.toml"), DOCUMENT.replace("3", "4")).unwrap();
    let error = url(Some(key.clone()), signed.clone()).cached().unwrap_err().to_string();
    assert!(error.contains("does not verify"), "{error}");
    let unsigned = cache("unsigned", &[("policy.toml", DOCUMENT)]);
    let error = url(Some(key), unsigned.clone()).cached().unwrap_err().to_string();
    assert!(error.contains("policy.toml.minisig"), "{error}");
    let empty = cache("empty", &[]);
    assert!(matches!(url(None, empty.clone()).cached(), Err(PolicyUrlError::NotDownloaded { .. })));
    for dir in [signed, unsigned, empty] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn the_published_policy_replaces_none_of_the_hosts_own_settings() {
    let host = "interfaces = [\"eth0\"]\nmanagement = [\"192.0.2.0/24\"]\npolicy_url = \"https://a.example/p.toml\"\n\
                [lists]\nmine = \"/etc/mine.txt\"\n";
    let config: Config = toml::from_str(host).unwrap();
    assert!(matches!(config.clone().resolve(), Err(ConfigError::NotPublished)), "not without the document");
    let opts = config.clone().with_document(parse(DOCUMENT).unwrap()).unwrap().resolve().unwrap();
    assert_eq!((opts.policy_serial, opts.policy.rules.len()), (Some(3), 1));
    assert_eq!(opts.management.len(), 1);
    let lists: Vec<&str> = opts.data.lists.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(lists, ["mine", "tor"], "the host's lists and the document's");
    assert_eq!(opts.policy_url.unwrap().refresh, DEFAULT_POLICY_REFRESH);
    let twice: Config = toml::from_str(&format!("{host}[policy]\nmonitor = true\n")).unwrap();
    assert!(matches!(twice.with_document(parse(DOCUMENT).unwrap()), Err(ConfigError::PolicyTwice)));
    let same_list = parse(&DOCUMENT.replace("tor = ", "mine = ").replace("list:tor", "list:mine")).unwrap();
    let error = config.with_document(same_list).unwrap().resolve().unwrap_err();
    assert!(matches!(error, ConfigError::ListTwice(_)), "{error}");
}

#[test]
fn a_serial_may_not_go_down() {
    use crate::daemon::config::not_older;
    assert!(not_older(3, None).is_ok() && not_older(3, Some(3)).is_ok() && not_older(4, Some(3)).is_ok());
    assert!(not_older(2, Some(3)).unwrap_err().contains("older than the policy in force (serial 3)"));
}
