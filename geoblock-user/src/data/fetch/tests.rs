//! Against a real HTTP server on loopback, scripted per request.

use std::{
    io::{BufRead, BufReader, Write},
    net::TcpListener,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    thread,
};

use super::*;

/// What the server does with one request.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// Declare this Content-Length instead of the body's (to truncate).
    length: Option<usize>,
    delay: Duration,
}

fn reply(status: u16, body: &str) -> Reply {
    Reply { status, headers: vec![], body: body.as_bytes().to_vec(), length: None, delay: Duration::ZERO }
}

/// Serves `handler(request number, request head)` on loopback; gives the base URL and the request count.
fn serve(handler: impl Fn(usize, &str) -> Reply + Send + 'static) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            while reader.read_line(&mut head).is_ok_and(|n| n > 2) {}
            let r = handler(seen.fetch_add(1, Ordering::SeqCst), &head.to_ascii_lowercase());
            thread::sleep(r.delay);
            let mut out = format!(
                "HTTP/1.1 {} X\r\nConnection: close\r\nContent-Length: {}\r\n",
                r.status,
                r.length.unwrap_or(r.body.len())
            );
            for (name, value) in &r.headers {
                out += &format!("{name}: {value}\r\n");
            }
            out += "\r\n";
            let _ = stream.write_all(out.as_bytes()).and_then(|()| stream.write_all(&r.body));
        }
    });
    (url, count)
}

fn quick() -> FetchConfig {
    FetchConfig {
        connect_timeout: Duration::from_secs(2),
        attempt_timeout: Duration::from_secs(2),
        retries: 2,
        backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        max_size: 1 << 20,
    }
}

fn dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("geoblock-fetch-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Whatever the umask: a cache others can write is refused.
    set_mode(&dir, 0o755);
    dir
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
}

/// Only the data file and its validators, never a leftover temporary file.
fn assert_clean(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.contains(".part-"), "left behind: {name}");
    }
}

const GOOD: &str = "1.0.0.0,1.0.0.255,AU\n";

#[test]
fn downloads_then_asks_conditionally_and_keeps_the_file_on_304() {
    let (url, count) =
        serve(|_, head| match head.contains("if-none-match: \"v1\"") && head.contains("if-modified-since: ") {
            true => reply(304, ""),
            false => Reply {
                headers: vec![("ETag", "\"v1\"".into()), ("Last-Modified", "Mon, 01 Jun 2026 00:00:00 GMT".into())],
                ..reply(200, GOOD)
            },
        });
    let dir = dir("304");
    let remote = Remote::new(&format!("{url}/data/dbip-country-lite-2026-06.csv?key=x"), &dir, quick()).unwrap();
    assert_eq!(remote.path(), dir.join("dbip-country-lite-2026-06.csv"));
    assert_eq!(remote.refresh().unwrap(), Some(remote.path().to_path_buf()));
    assert_eq!(std::fs::read_to_string(remote.path()).unwrap(), GOOD);
    assert_eq!(remote.refresh().unwrap(), None);
    assert_eq!(count.load(Ordering::SeqCst), 2);
    assert_eq!(std::fs::read_to_string(remote.path()).unwrap(), GOOD);
    assert_clean(&dir);
}

#[test]
fn client_errors_are_not_retried_and_change_nothing() {
    let (url, count) = serve(|n, _| if n == 0 { reply(200, GOOD) } else { reply(404, "gone") });
    let dir = dir("404");
    let remote = Remote::new(&format!("{url}/x.csv"), &dir, quick()).unwrap();
    remote.refresh().unwrap();
    let err = remote.refresh().unwrap_err();
    assert!(matches!(err, FetchError::Status { status: 404, .. }), "{err}");
    assert_eq!(count.load(Ordering::SeqCst), 2);
    assert_eq!(std::fs::read_to_string(remote.path()).unwrap(), GOOD);
    assert_clean(&dir);
}

#[test]
fn server_errors_are_retried_with_backoff() {
    let (url, count) = serve(|n, _| if n < 2 { reply(500, "busy") } else { reply(200, GOOD) });
    let dir = dir("500");
    let remote = Remote::new(&format!("{url}/x.csv"), &dir, quick()).unwrap();
    assert!(remote.refresh().unwrap().is_some());
    assert_eq!(count.load(Ordering::SeqCst), 3);

    let (url, count) = serve(|_, _| reply(503, "down"));
    let remote = Remote::new(&format!("{url}/x.csv"), &dir, quick()).unwrap();
    assert!(matches!(remote.refresh().unwrap_err(), FetchError::Status { status: 503, .. }));
    assert_eq!(count.load(Ordering::SeqCst), 3, "the first attempt and two retries");
    assert_eq!(std::fs::read_to_string(remote.path()).unwrap(), GOOD);
    assert_clean(&dir);
}

#[test]
fn slow_and_truncated_responses_change_nothing() {
    let dir = dir("slow");
    std::fs::write(dir.join("x.csv"), GOOD).unwrap();
    let (url, _) = serve(|_, _| Reply { delay: Duration::from_secs(3), ..reply(200, "2.0.0.0,2.0.0.255,FR\n") });
    let config = FetchConfig { attempt_timeout: Duration::from_millis(300), retries: 0, ..quick() };
    let remote = Remote::new(&format!("{url}/x.csv"), &dir, config).unwrap();
    let err = remote.refresh().unwrap_err();
    assert!(matches!(err, FetchError::Transfer { .. }), "{err}");

    let (url, _) = serve(|_, _| Reply { length: Some(500), ..reply(200, "2.0.0.0,2.0.0.255,FR\n") });
    let remote = Remote::new(&format!("{url}/x.csv"), &dir, FetchConfig { retries: 1, ..quick() }).unwrap();
    let err = remote.refresh().unwrap_err();
    assert!(matches!(err, FetchError::Transfer { .. } | FetchError::Truncated { .. }), "{err}");
    assert_eq!(std::fs::read_to_string(dir.join("x.csv")).unwrap(), GOOD);
    assert_clean(&dir);
}

#[test]
fn a_download_the_check_refuses_changes_nothing() {
    let dir = dir("refused");
    std::fs::write(dir.join("x.csv"), GOOD).unwrap();
    let (url, _) = serve(|_, _| reply(200, "<html>login</html>"));
    let remote = Remote::new(&format!("{url}/x.csv"), &dir, quick()).unwrap();
    let check = |path: &Path| {
        crate::data::load_one(path, &crate::data::Options::default()).map(|_| ()).map_err(|e| e.to_string())
    };
    let err = remote.refresh_with(check).unwrap_err();
    assert!(matches!(err, FetchError::Refused { .. }), "{err}");
    assert_eq!(std::fs::read_to_string(dir.join("x.csv")).unwrap(), GOOD);
    assert_clean(&dir);
}

#[test]
fn oversized_bodies_and_bad_urls_are_refused() {
    let dir = dir("large");
    let (url, _) = serve(|_, _| reply(200, &"x".repeat(2000)));
    let remote = Remote::new(&format!("{url}/x.csv"), &dir, FetchConfig { max_size: 1000, ..quick() }).unwrap();
    assert!(matches!(remote.refresh().unwrap_err(), FetchError::TooLarge { .. }));
    assert!(!dir.join("x.csv").exists());
    assert_clean(&dir);
    for bad in ["ftp://x/y.csv", "https://host/", "/etc/passwd"] {
        assert!(matches!(Remote::new(bad, &dir, quick()), Err(FetchError::Url(_))), "{bad}");
    }
}

#[test]
fn local_path_falls_back_to_the_earlier_download() {
    let dir = dir("local");
    assert_eq!(local_path("some/file.csv", &dir, quick()).unwrap(), PathBuf::from("some/file.csv"));
    let (url, _) = serve(|n, _| if n == 0 { reply(200, GOOD) } else { reply(404, "") });
    let cache = dir.join("cache");
    let path = local_path(&format!("{url}/x.csv"), &cache, quick()).unwrap();
    assert_eq!(path, cache.join("x.csv"));
    assert_eq!(local_path(&format!("{url}/x.csv"), &cache, quick()).unwrap(), path, "404: the earlier file");
    assert!(local_path(&format!("{url}/y.csv"), &cache, quick()).is_err(), "no earlier file");
}

/// HTTPS is verified: a server whose certificate no system root signed is
/// refused (here a self-signed one for localhost), and nothing changes.
#[test]
fn https_with_an_untrusted_certificate_is_refused() {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.signing_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![key.cert.der().clone()], private)
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let seen = handshakes.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut tcp) = stream else { continue };
            seen.fetch_add(1, Ordering::SeqCst);
            let mut tls = rustls::ServerConnection::new(config.clone()).unwrap();
            let _ = tls.complete_io(&mut tcp);
        }
    });
    let dir = dir("https");
    std::fs::write(dir.join("x.csv"), GOOD).unwrap();
    let remote =
        Remote::new(&format!("https://localhost:{port}/x.csv"), &dir, FetchConfig { retries: 0, ..quick() }).unwrap();
    let err = remote.refresh().unwrap_err().to_string();
    assert!(err.to_ascii_lowercase().contains("certificate") || err.contains("UnknownIssuer"), "{err}");
    assert_eq!(handshakes.load(Ordering::SeqCst), 1, "the client did reach the server");
    assert_eq!(std::fs::read_to_string(dir.join("x.csv")).unwrap(), GOOD);
    assert_clean(&dir);
}

#[test]
fn data_sources_download_what_changed_and_name_urls_as_given() {
    let (url, count) = serve(|_, head| match head.contains("if-none-match: \"v1\"") {
        true => reply(304, ""),
        false => Reply { headers: vec![("ETag", "\"v1\"".into())], ..reply(200, GOOD) },
    });
    let dir = dir("sources");
    let url = format!("{url}/au.csv");
    let data = crate::data::DataSources {
        sources: vec![url.clone()],
        asn: vec![],
        options: Default::default(),
        cache_dir: dir.clone(),
        lists: vec![],
    };
    assert_eq!(data.modified(), [None], "nothing downloaded yet");
    assert_eq!(data.fetch().unwrap(), 1);
    assert_eq!(data.fetch().unwrap(), 0, "304: unchanged");
    assert_eq!(count.load(Ordering::SeqCst), 2);
    // Loading asks once more (304) and reads the download.
    let loaded = data.load().unwrap();
    assert_eq!((loaded.sources[0].origin.as_str(), loaded.table.v4.len()), (url.as_str(), 1));
    assert_eq!(data.modified(), [loaded.sources[0].modified], "what a watcher compares");
    assert!(data.modified()[0].is_some());
}

/// Root downloading into a cache where someone planted symlinks (as
/// another user could in a shared directory) writes through none of them.
#[test]
fn symlinks_planted_in_the_cache_are_never_written_through() {
    let (url, _) = serve(|_, _| Reply { headers: vec![("ETag", "\"v1\"".into())], ..reply(200, GOOD) });
    let dir = dir("symlinks");
    let (precious, cache) = (dir.join("precious"), dir.join("cache"));
    std::fs::write(&precious, "precious").unwrap();
    let remote = Remote::new(&format!("{url}/x.csv"), &cache, quick()).unwrap();
    for name in ["x.csv.http".to_string(), format!("x.csv.part-{}", std::process::id())] {
        std::os::unix::fs::symlink(&precious, cache.join(name)).unwrap();
    }
    assert!(remote.refresh().unwrap().is_some());
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "precious");
    assert_eq!(std::fs::read_to_string(remote.path()).unwrap(), GOOD);
    let validators = std::fs::symlink_metadata(cache.join("x.csv.http")).unwrap();
    assert!(validators.is_file(), "the validators go to a file of their own");
    assert_clean(&cache);
}

#[test]
fn a_cache_dir_others_can_write_is_refused() {
    let dir = dir("shared");
    // An earlier download there is not used either: anyone could have written it.
    std::fs::write(dir.join("x.csv"), GOOD).unwrap();
    for mode in [0o775, 0o757, 0o1777] {
        set_mode(&dir, mode);
        let err = local_path("http://127.0.0.1:9/x.csv", &dir, quick()).unwrap_err();
        assert!(matches!(err, FetchError::CacheDir { .. }), "{err}");
        assert!(err.to_string().contains(&format!("writable by other users (mode {mode:04o})")), "{err}");
    }
}

#[test]
fn secrets_in_urls_are_redacted_for_labels() {
    let maxmind =
        "https://download.maxmind.com/app/geoip_download?edition_id=GeoLite2-Country&license_key=abc&suffix=tar.gz";
    assert_eq!(
        redacted(maxmind),
        "https://download.maxmind.com/app/geoip_download?edition_id=GeoLite2-Country&license_key=REDACTED&suffix=tar.gz"
    );
    assert_eq!(
        redacted("https://user:pw@example.net/p.toml?Token=x"),
        "https://REDACTED@example.net/p.toml?Token=REDACTED"
    );
    assert_eq!(redacted("https://example.net"), "https://example.net");
    assert_eq!(redacted("/var/lib/geoblock/a.csv?key=1"), "/var/lib/geoblock/a.csv?key=1", "a path is not a URL");
}
