use std::io::Cursor;

use super::*;
use crate::daemon::config::{Config, ConfigError};

const DOCUMENT: &str =
    "serial = 3\n[policy]\nblock = [\"KP\", \"list:tor\"]\n[lists]\ntor = \"https://example.net/tor.txt\"\n";

/// A publisher's key pair, and its public key as `policy_key` takes it.
fn publisher() -> (minisign::KeyPair, String) {
    let pair = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let key = pair.pk.to_base64();
    (pair, key)
}

/// What `minisign -S` writes beside `document`.
fn sign(pair: &minisign::KeyPair, document: &str) -> String {
    minisign::sign(Some(&pair.pk), &pair.sk, Cursor::new(document.as_bytes()), None, None).unwrap().into_string()
}

/// A cache directory of the test's own: `files` (path under `policy/`, text).
struct Cache(PathBuf);

impl Cache {
    fn new(name: &str, files: &[(&str, &str)]) -> Cache {
        let dir = std::env::temp_dir().join(format!("geoblock-policy-url-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (file, text) in files {
            let path = dir.join("policy").join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        Cache(dir)
    }

    /// A URL nothing answers (connections to it are refused at once).
    fn url(&self, key: Option<&str>) -> PolicyUrl {
        let url = "http://127.0.0.1:9/fleet/policy.toml".into();
        PolicyUrl::new(url, key.map(str::to_string), DEFAULT_POLICY_REFRESH, self.0.clone()).unwrap()
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_document_is_the_policy_tables_and_a_serial() {
    let document = parse(DOCUMENT).unwrap().document;
    assert_eq!(document.serial, 3);
    assert_eq!(document.policy.block.as_deref(), Some(&["KP".to_string(), "list:tor".to_string()][..]));
    assert_eq!(document.lists, Some(vec![("tor".to_string(), "https://example.net/tor.txt".to_string())]));
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
    let typo = PolicyUrl::new(
        "https://a.example/p.toml".into(),
        Some("RWnotakey".into()),
        DEFAULT_POLICY_REFRESH,
        "/x".into(),
    );
    assert!(matches!(typo, Err(PolicyUrlError::Key(_))));
}

#[test]
fn a_reload_takes_the_document_in_force_verified_again() {
    let (pair, key) = publisher();
    let signature = sign(&pair, DOCUMENT);
    let newer = DOCUMENT.replace("serial = 3", "serial = 4");
    let cache = Cache::new(
        "in-force",
        &[
            ("in-force/policy.toml", DOCUMENT),
            ("in-force/policy.toml.minisig", &signature),
            ("downloaded/policy.toml", &newer),
            ("downloaded/policy.toml.minisig", &sign(&pair, &newer)),
        ],
    );
    let url = cache.url(Some(&key));
    assert_eq!(url.take(Take::InForce).unwrap().document.serial, 3, "the one in force, not the download");
    assert_eq!(url.changed().unwrap().map(|p| p.document.serial), Some(4), "the download is new");
    // The copy in force was changed behind the daemon's back (or the key
    // was): it is downloaded again, and failing that the last download,
    // verified, is taken instead.
    std::fs::write(cache.0.join("policy/in-force/policy.toml"), DOCUMENT.replace("KP", "FR")).unwrap();
    assert_eq!(url.take(Take::InForce).unwrap().document.serial, 4);
    let (_, other) = publisher();
    let error = cache.url(Some(&other)).take(Take::InForce).unwrap_err().to_string();
    assert!(error.contains("does not verify"), "{error}");
}

#[test]
fn the_document_in_force_is_kept_whole_and_sets_the_lowest_serial() {
    let (pair, key) = publisher();
    let cache = Cache::new("keep", &[]);
    let url = cache.url(Some(&key));
    assert!(matches!(url.take(Take::InForce), Err(PolicyUrlError::Fetch(_))), "nothing in force or downloaded");
    let newer = DOCUMENT.replace("serial = 3", "serial = 4");
    let mut published = parse(&newer).unwrap();
    published.signature = Some(sign(&pair, &newer).into_bytes());
    url.keep(&published).unwrap();
    assert_eq!(url.take(Take::InForce).unwrap().document.serial, 4);
    let error = url.changed().unwrap_err().to_string();
    assert!(error.contains("policy/downloaded/policy.toml"), "nothing downloaded: {error}");
    // A download older than the document in force is refused, even signed.
    let downloaded = cache.0.join("policy/downloaded");
    std::fs::create_dir_all(&downloaded).unwrap();
    std::fs::write(downloaded.join("policy.toml"), DOCUMENT).unwrap();
    std::fs::write(downloaded.join("policy.toml.minisig"), sign(&pair, DOCUMENT)).unwrap();
    std::fs::remove_file(cache.0.join("policy/in-force/policy.toml.minisig")).unwrap();
    let error = url.take(Take::InForce).unwrap_err().to_string();
    assert!(error.contains("serial 3 is older than the policy in force (serial 4)"), "{error}");
}

#[test]
fn the_published_policy_replaces_none_of_the_hosts_own_settings() {
    let host = "interfaces = [\"eth0\"]\nmanagement = [\"192.0.2.0/24\"]\npolicy_url = \"https://a.example/p.toml\"\n\
                [lists]\nmine = \"/etc/mine.txt\"\n";
    let config: Config = toml::from_str(host).unwrap();
    assert!(matches!(config.clone().resolve(), Err(ConfigError::NotPublished)), "not without the document");
    let opts = config.clone().with_published(parse(DOCUMENT).unwrap()).unwrap().resolve().unwrap();
    assert_eq!((opts.policy_serial(), opts.policy.rules.len()), (Some(3), 1));
    assert_eq!(opts.management.len(), 1);
    let lists: Vec<&str> = opts.data.lists.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(lists, ["mine", "tor"], "the host's lists and the document's");
    assert_eq!(opts.policy_url.unwrap().refresh, DEFAULT_POLICY_REFRESH);
    let twice: Config = toml::from_str(&format!("{host}[policy]\nmonitor = true\n")).unwrap();
    assert!(matches!(twice.with_published(parse(DOCUMENT).unwrap()), Err(ConfigError::PolicyTwice)));
    let same_list = parse(&DOCUMENT.replace("tor = ", "mine = ").replace("list:tor", "list:mine")).unwrap();
    let error = config.clone().with_published(same_list).unwrap().resolve().unwrap_err();
    assert!(matches!(error, ConfigError::ListTwice(_)), "{error}");
    let path = parse(&DOCUMENT.replace("https://example.net/tor.txt", "/etc/shadow")).unwrap();
    assert!(matches!(config.with_published(path), Err(ConfigError::PublishedListPath(_))));
}

#[test]
fn a_serial_may_not_go_down() {
    assert!(not_older(3, None).is_ok() && not_older(3, Some(3)).is_ok() && not_older(4, Some(3)).is_ok());
    assert!(not_older(2, Some(3)).unwrap_err().contains("older than the policy in force (serial 3)"));
}
