//! Data files as their vendors ship them, taken from the package registries
//! and cached outside the repository: `$GEOBLOCK_TEST_CACHE`, by default
//! /var/cache/geoblock-tests. CI reaches the same registries.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

/// Debian's `tor-geoipdb`: Tor's `geoip` (IPv4, integer ranges) and `geoip6`.
pub fn tor_geoip() -> [PathBuf; 2] {
    static FILES: OnceLock<PathBuf> = OnceLock::new();
    let root = FILES.get_or_init(|| debian_package("tor-geoipdb"));
    ["geoip", "geoip6"].map(|name| root.join("usr/share/tor").join(name))
}

fn cache() -> PathBuf {
    std::env::var_os("GEOBLOCK_TEST_CACHE").map_or_else(|| PathBuf::from("/var/cache/geoblock-tests"), PathBuf::from)
}

/// The files of a Debian package, unpacked once into the cache. Another test
/// process unpacking at the same time works in a directory of its own and
/// renames it into place, so nobody reads a half-unpacked tree.
fn debian_package(name: &str) -> PathBuf {
    let unpacked = cache().join(name);
    if unpacked.is_dir() {
        return unpacked;
    }
    let work = cache().join(format!("{name}.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("creating the test data cache");
    download(name, &work);
    let deb = std::fs::read_dir(&work)
        .expect("the download directory")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .unwrap_or_else(|| panic!("apt-get download {name} left no .deb in {}", work.display()));
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(work.join("root")));
    if std::fs::rename(work.join("root"), &unpacked).is_err() && !unpacked.is_dir() {
        panic!("could not move {name} into {}", unpacked.display());
    }
    let _ = std::fs::remove_dir_all(&work);
    unpacked
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
