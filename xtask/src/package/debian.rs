//! DEBIAN/: control (Depends read off the binary by dpkg-shlibdeps,
//! Recommends what it reads at run time),
//! conffiles, md5sums and the maintainer scripts of dist/debian; and the
//! package's changelog.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use super::{DIST, TREE};
use crate::{
    cmd,
    install::{copy, CONFIG_PATH},
    toolchain::workspace_root,
};

const PACKAGE: &str = "geoblock";
const MAINTAINER: &str = "geoblock maintainers <geoblock@example.invalid>";
/// The workspace's version (xtask's is `version.workspace`). Without a
/// Debian revision: the package is built from geoblock's own repository, a
/// native package, so its changelog is changelog.gz.
const VERSION: &str = env!("CARGO_PKG_VERSION");
const HOMEPAGE: &str = env!("CARGO_PKG_REPOSITORY");
const DESCRIPTION: &str = "\
drop network traffic by country in XDP, at line rate
 geoblock drops packets by the country of their source address in an XDP
 program, before the kernel's network stack sees them; rules also take
 autonomous systems, address lists, ports and directions. A daemon loads
 the program, reloads the GeoIP data and the policy live, and reports
 counters, Prometheus metrics, drop events and why each address gets its
 verdict.
 .
 Installing the package enables and starts nothing: the systemd service
 waits for `systemctl enable --now geoblock`, and the configuration
 starts in monitor mode (it counts what would be dropped, drops nothing).
 The embedded country data is DB-IP's IP to Country Lite (CC BY 4.0).";
const SCRIPTS: [&str; 3] = ["postinst", "prerm", "postrm"];
/// What dpkg-shlibdeps cannot see: HTTPS downloads (https:// sources,
/// policy_url) check servers against the system's CA roots, which rustls
/// reads from /etc/ssl/certs at run time. Recommends, not Depends: a host
/// with local sources only needs none.
pub const RECOMMENDS: &str = "ca-certificates";

/// What names the .deb.
pub struct Control {
    pub version: String,
    pub architecture: String,
}

/// Writes `tree`/DEBIAN once everything else is in `tree`; `work` is the
/// directory holding debian/ (dpkg-shlibdeps runs there).
pub fn write(work: &Path, tree: &Path) -> Result<Control> {
    let meta = tree.join("DEBIAN");
    for script in SCRIPTS {
        copy(&fs::read(workspace_root().join(DIST).join(script))?, &meta.join(script), 0o755)?;
    }
    copy(format!("{CONFIG_PATH}\n").as_bytes(), &meta.join("conffiles"), 0o644)?;
    let (files, dirs) = contents(tree)?;
    copy(md5sums(tree, &files)?.as_bytes(), &meta.join("md5sums"), 0o644)?;

    let architecture = cmd::capture(Command::new("dpkg").arg("--print-architecture"))?.trim().to_owned();
    let depends = depends(work, &Path::new(TREE).join("usr/bin/geoblock"))?;
    let installed_kib = installed_size(tree, &files, dirs)?;
    let control = format!(
        "Package: {PACKAGE}\nVersion: {VERSION}\nArchitecture: {architecture}\nMaintainer: {MAINTAINER}\n\
         Installed-Size: {installed_kib}\nDepends: {depends}\nRecommends: {RECOMMENDS}\n\
         Section: net\nPriority: optional\n\
         Homepage: {HOMEPAGE}\nDescription: {DESCRIPTION}\n"
    );
    copy(control.as_bytes(), &meta.join("control"), 0o644)?;
    Ok(Control { version: VERSION.to_owned(), architecture })
}

/// One entry for this version, dated by SOURCE_DATE_EPOCH or else the last
/// commit, so that the same commit packs the same changelog.
pub fn changelog() -> Result<String> {
    let date = cmd::capture(Command::new("date").args(["-u", "-R", "-d"]).arg(format!("@{}", source_date()?)))?;
    Ok(format!(
        "{PACKAGE} ({VERSION}) unstable; urgency=medium\n\n  \
         * Packaged by `cargo xtask package` from geoblock's repository; the\n    \
         repository's history lists the changes.\n\n -- {MAINTAINER}  {}\n",
        date.trim()
    ))
}

/// Seconds since the epoch: SOURCE_DATE_EPOCH (the reproducible-builds
/// convention), else the last commit's time.
fn source_date() -> Result<String> {
    if let Ok(epoch) = std::env::var("SOURCE_DATE_EPOCH") {
        return Ok(epoch);
    }
    let mut git = Command::new("git");
    git.current_dir(workspace_root()).args(["log", "-1", "--format=%ct"]);
    let epoch = cmd::capture(&mut git).context("dating the changelog: set SOURCE_DATE_EPOCH outside a git checkout")?;
    Ok(epoch.trim().to_owned())
}

/// The package's files (relative to `tree`, sorted, DEBIAN/ left out) and
/// how many directories hold them.
fn contents(tree: &Path) -> Result<(Vec<PathBuf>, u64)> {
    let (mut files, mut dirs) = (Vec::new(), 0);
    let mut pending = vec![PathBuf::new()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(tree.join(&dir)).with_context(|| format!("reading {}", dir.display()))? {
            let entry = entry?;
            let path = dir.join(entry.file_name());
            match entry.file_type()?.is_dir() {
                true if path == Path::new("DEBIAN") => {}
                true => {
                    dirs += 1;
                    pending.push(path);
                }
                false => files.push(path),
            }
        }
    }
    files.sort();
    Ok((files, dirs))
}

/// `md5sum` of every file but the conffile (dpkg keeps its own sum of
/// conffiles, as dh_md5sums leaves them out).
fn md5sums(tree: &Path, files: &[PathBuf]) -> Result<String> {
    let conffile = Path::new(CONFIG_PATH.trim_start_matches('/'));
    let listed = files.iter().filter(|file| file.as_path() != conffile);
    cmd::capture(Command::new("md5sum").args(listed).current_dir(tree))
}

/// As dpkg-gencontrol counts it: each file rounded up to a KiB, plus one
/// per directory.
fn installed_size(tree: &Path, files: &[PathBuf], dirs: u64) -> Result<u64> {
    let mut kib = dirs;
    for file in files {
        kib += tree.join(file).metadata()?.len().div_ceil(1024);
    }
    Ok(kib)
}

/// The packages providing the libraries the binary links, with the
/// versions its symbols need, as dpkg-shlibdeps reads them; `binary` is
/// relative to `work` (dpkg-shlibdeps wants it under debian/PACKAGE).
fn depends(work: &Path, binary: &Path) -> Result<String> {
    // dpkg-shlibdeps reads debian/control to know the source's packages.
    let control = format!("Source: {PACKAGE}\n\nPackage: {PACKAGE}\nArchitecture: any\n");
    copy(control.as_bytes(), &work.join("debian/control"), 0o644)?;
    let mut shlibdeps = Command::new("dpkg-shlibdeps");
    // -eFILE in one word: with a space, FILE is taken as a second binary.
    shlibdeps.current_dir(work).arg("-O").arg(format!("-e{}", binary.display()));
    let out = cmd::capture(&mut shlibdeps)?;
    match out.lines().find_map(|line| line.strip_prefix("shlibs:Depends=")) {
        Some(depends) if !depends.trim().is_empty() => Ok(depends.trim().to_owned()),
        _ => bail!("dpkg-shlibdeps named no dependency for {}: {out}", binary.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_fits_lintian_line_lengths() {
        let mut lines = DESCRIPTION.lines();
        assert!(lines.next().is_some_and(|synopsis| synopsis.len() <= 80 && !synopsis.ends_with('.')));
        assert!(lines.all(|line| line.starts_with(' ') && line.len() <= 80));
    }
}
