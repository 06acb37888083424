//! `cargo xtask data`: regenerates the GeoIP table embedded in the daemon
//! from db-ip's country lite database, as published on the npm registry.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{self, Command},
};

use anyhow::{anyhow, Context as _, Result};

use crate::{cmd, setup::Scope, tasks, toolchain::workspace_root};

const DBIP_PACKAGE: &str = "@ip-location-db/dbip-country";
/// The one place that names the data's version (CC BY 4.0, db-ip.com):
/// 2.3.YYYYMMDDHH, from DB-IP's release YYYY-MM.
const DBIP_VERSION: &str = "2.3.2026060120";
const CSV_FILES: [&str; 2] = ["dbip-country-ipv4.csv", "dbip-country-ipv6.csv"];
/// Relative to the workspace root.
const OUTPUT: &str = "geoblock-user/data/dbip-country.bin";

pub fn data() -> Result<()> {
    let toolchain = tasks::prepare(Scope::Build)?;
    let dir = TempDir::create()?;
    let package = unpack_npm_package(dir.path())?;
    let output = workspace_root().join(OUTPUT);
    fs::create_dir_all(output.parent().expect("OUTPUT is in a directory"))?;
    let mut pack = toolchain.cargo();
    pack.args(["run", "--release", "--package", "geoblock-user", "--bin", "geoblock", "--"])
        .args(["data", "pack", "--release", &release(DBIP_VERSION)?, "--out"])
        .arg(&output)
        .args(CSV_FILES.map(|csv| package.join(csv)));
    cmd::run(&mut pack)?;
    println!("data: wrote {}", output.display());
    Ok(())
}

/// `npm pack`s the data package into `dir` and untars it; returns the
/// package's directory.
fn unpack_npm_package(dir: &Path) -> Result<PathBuf> {
    let package = format!("{DBIP_PACKAGE}@{DBIP_VERSION}");
    cmd::run(Command::new("npm").args(["pack", "--silent", &package]).current_dir(dir))
        .context("fetching the GeoIP data from the npm registry (needs npm)")?;
    let tarball = only_tarball(dir)?;
    cmd::run(Command::new("tar").arg("-xzf").arg(&tarball).current_dir(dir))?;
    Ok(dir.join("package"))
}

/// DB-IP's release (`2026-06`) in the npm version (`2.3.2026060120`).
fn release(version: &str) -> Result<String> {
    let stamp = version.split('.').nth(2).filter(|stamp| stamp.len() >= 6);
    let stamp = stamp.ok_or_else(|| anyhow!("version {version} is not 2.3.YYYYMMDDHH"))?;
    Ok(format!("{}-{}", &stamp[..4], &stamp[4..6]))
}

fn only_tarball(dir: &Path) -> Result<PathBuf> {
    fs::read_dir(dir)?
        .filter_map(|entry| Some(entry.ok()?.path()))
        .find(|path| path.extension().is_some_and(|ext| ext == "tgz"))
        .ok_or_else(|| anyhow!("npm pack left no .tgz in {}", dir.display()))
}

/// A scratch directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn create() -> Result<TempDir> {
        let path = std::env::temp_dir().join(format!("geoblock-data-{}", process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_is_year_and_month_of_the_npm_version() {
        assert_eq!(release(DBIP_VERSION).unwrap(), "2026-06");
        assert!(release("2.3").is_err());
    }
}
