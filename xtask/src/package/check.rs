//! The Debian package's test, a phase of `cargo xtask test` (run as root, as
//! CI runs it). It builds the .deb as `cargo xtask package` does (a release
//! build; lintian fails it on any warning), checks its file list and
//! control, then installs it with dpkg's own install path into a throwaway
//! root (`dpkg --root DIR --force-script-chrootless`: unpack, conffile,
//! postinst configure; the maintainer scripts run with DPKG_ROOT=DIR, so
//! they leave the host's systemd and kernel alone), runs the installed
//! binary on the installed conffile, sources the bash completion, checks
//! the unit and the third-party licences, reinstalls the same version over
//! an edited conffile, then removes and purges it. Each check counts as one
//! test in the closing tally; a check that the next ones need (the build,
//! the install) skips them when it fails.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, ensure, Context as _, Result};

use super::{build, debian::RECOMMENDS, licenses, COMPLETIONS, DOC_DIR, MAN_DIR};
use crate::{
    cmd::{self, Tally},
    install::{CONFIG_MODE, CONFIG_PATH},
    toolchain::Toolchain,
};

const BINARY: &str = "/usr/bin/geoblock";
const UNIT: &str = "/usr/lib/systemd/system/geoblock.service";
/// A few of the man pages: the command's, a subcommand's and a nested one's.
const MAN_PAGES: [&str; 3] = ["geoblock.1.gz", "geoblock-run.1.gz", "geoblock-config-check.1.gz"];

/// Builds the .deb into `out`, installs it into `out`/root.
pub fn test(toolchain: Toolchain, out: &Path, tally: &mut Tally) -> Result<()> {
    let mut checks = Checks { tally, failed: Vec::new() };
    let Some(deb) = checks.run("builds, lintian clean", || build(toolchain, out)) else {
        return checks.finish();
    };
    checks.run("file list, owners and modes", || file_list(&deb));
    checks.run("control fields and conffiles", || control(&deb));
    let root = out.join("root");
    if checks.run("dpkg installs it into a throwaway root", || install_into(&root, &deb)).is_some() {
        checks.run("installed geoblock --version names the version and the data", || version(&root));
        checks.run("installed geoblock config check accepts the conffile", || config_check(&root));
        checks.run("installed bash completion completes geoblock", || bash_completion(&root));
        checks.run("the unit runs the installed binary on the conffile", || unit(&root));
        checks.run("third-party licences list the crates compiled in", || third_party_licenses(&root));
        checks.run("reinstalling the same version keeps the operator's edits to the conffile", || {
            reinstall_same_version(&root, &deb)
        });
        checks.run("remove keeps the conffile, purge removes it and the cache", || remove_then_purge(&root));
    }
    checks.finish()
}

/// Runs checks one by one as `cargo test` reports tests, and counts them.
struct Checks<'a> {
    tally: &'a mut Tally,
    failed: Vec<&'static str>,
}

impl Checks<'_> {
    fn run<T>(&mut self, name: &'static str, check: impl FnOnce() -> Result<T>) -> Option<T> {
        match check() {
            Ok(value) => {
                println!("test package: {name} ... ok");
                self.tally.passed += 1;
                Some(value)
            }
            Err(err) => {
                println!("test package: {name} ... FAILED\n  {err:#}");
                self.tally.failed += 1;
                self.failed.push(name);
                None
            }
        }
    }

    fn finish(self) -> Result<()> {
        match self.failed.as_slice() {
            [] => Ok(()),
            failed => bail!("package checks failed: {}", failed.join("; ")),
        }
    }
}

/// Every path an operator is promised is in the .deb, owned by root, the
/// conffile readable by root only.
fn file_list(deb: &Path) -> Result<()> {
    let listing = cmd::capture(Command::new("dpkg-deb").arg("--contents").arg(deb))?;
    let entries: Vec<Entry> = listing.lines().map(Entry::parse).collect::<Result<_>>()?;
    let mode_of = |path: &str| entries.iter().find(|entry| entry.path == path).map(|entry| entry.mode.as_str());
    let config_mode = format!("-{}", rwx(CONFIG_MODE));
    let mut wanted = vec![(BINARY.to_owned(), "-rwxr-xr-x"), (UNIT.to_owned(), "-rw-r--r--")];
    wanted.push((CONFIG_PATH.to_owned(), &config_mode));
    let licenses = format!("{}.gz", licenses::FILE);
    for doc in ["copyright", "README.md.gz", "changelog.gz", &licenses] {
        wanted.push((format!("/{DOC_DIR}/{doc}"), "-rw-r--r--"));
    }
    wanted.extend(MAN_PAGES.map(|page| (format!("/{MAN_DIR}/{page}"), "-rw-r--r--")));
    wanted.extend(COMPLETIONS.map(|(_, path)| (format!("/{path}"), "-rw-r--r--")));
    for (path, mode) in &wanted {
        let found = mode_of(path).with_context(|| format!("{path} is not in the package"))?;
        ensure!(found == *mode, "{path} has mode {found}, expected {mode}");
    }
    if let Some(entry) = entries.iter().find(|entry| entry.owner != "root/root") {
        bail!("{} is owned by {}, not root/root", entry.path, entry.owner);
    }
    Ok(())
}

/// One line of `dpkg-deb --contents`: `-rw-r--r-- root/root 123 2026-01-01 00:00 ./usr/...`.
struct Entry {
    mode: String,
    owner: String,
    path: String,
}

impl Entry {
    fn parse(line: &str) -> Result<Entry> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [mode, owner, _size, _date, _time, path, ..] => Ok(Entry {
                mode: (*mode).to_owned(),
                owner: (*owner).to_owned(),
                path: path.trim_start_matches('.').trim_end_matches('/').to_owned(),
            }),
            _ => bail!("unexpected dpkg-deb --contents line `{line}`"),
        }
    }
}

/// `0o600` as `ls` shows it: `rw-------`.
fn rwx(mode: u32) -> String {
    (0..9).rev().map(|bit| if mode & (1 << bit) == 0 { '-' } else { b"xwr"[bit % 3] as char }).collect()
}

fn control(deb: &Path) -> Result<()> {
    let field = |name: &str| cmd::capture(Command::new("dpkg-deb").arg("--field").arg(deb).arg(name));
    ensure!(field("Version")?.trim() == env!("CARGO_PKG_VERSION"), "Version is not the workspace's");
    let arch = cmd::capture(Command::new("dpkg").arg("--print-architecture"))?;
    ensure!(field("Architecture")? == arch, "Architecture is not dpkg's");
    let depends = field("Depends")?;
    ensure!(depends.contains("libc6 (>= "), "Depends does not name libc6 with a version: {depends}");
    ensure!(field("Recommends")?.trim() == RECOMMENDS, "Recommends is not {RECOMMENDS}");
    let conffiles = cmd::capture(Command::new("dpkg-deb").arg("--info").arg(deb).arg("conffiles"))?;
    ensure!(conffiles.trim() == CONFIG_PATH, "conffiles: `{conffiles}`, expected {CONFIG_PATH}");
    Ok(())
}

/// A fresh root with an empty dpkg database, the package installed by dpkg.
/// --force-depends: the root has no libc6 (the host's runs the binary).
fn install_into(root: &Path, deb: &Path) -> Result<()> {
    ensure!(
        cmd::stdout(Command::new("id").arg("-u")).as_deref() == Some("0"),
        "dpkg installs as root only (CI runs as root)"
    );
    if root.exists() {
        fs::remove_dir_all(root).with_context(|| format!("removing {}", root.display()))?;
    }
    let db = root.join("var/lib/dpkg");
    for dir in [db.join("info"), db.join("updates"), root.join("var/log")] {
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(db.join("status"), "")?;
    cmd::run(dpkg(root).arg("--install").arg(deb))?;
    let status = cmd::capture(dpkg(root).args(["--status", "geoblock"]))?;
    ensure!(status.contains("Status: install ok installed"), "dpkg does not say installed:\n{status}");
    ensure!(status.contains(&format!("Conffiles:\n {CONFIG_PATH} ")), "dpkg does not list the conffile:\n{status}");
    Ok(())
}

fn dpkg(root: &Path) -> Command {
    let mut dpkg = Command::new("dpkg");
    dpkg.arg("--root").arg(root).args(["--force-script-chrootless", "--force-depends"]);
    dpkg
}

fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

fn version(root: &Path) -> Result<()> {
    let out = cmd::capture(Command::new(under(root, BINARY)).arg("--version"))?;
    ensure!(out.starts_with(&format!("geoblock {}", env!("CARGO_PKG_VERSION"))), "unexpected version: {out}");
    ensure!(out.contains("DB-IP") && out.contains("CC BY 4.0"), "the version does not credit the data: {out}");
    Ok(())
}

fn config_check(root: &Path) -> Result<()> {
    let config = under(root, CONFIG_PATH);
    let out = cmd::capture(Command::new(under(root, BINARY)).args(["config", "check"]).arg(&config))?;
    ensure!(out.contains(": ok;") && out.contains("MONITOR mode"), "unexpected config check: {out}");
    Ok(())
}

/// bash sources the script and then completes `geoblock` with it.
fn bash_completion(root: &Path) -> Result<()> {
    let (_, script) = COMPLETIONS.iter().find(|(shell, _)| *shell == "bash").context("no bash completion")?;
    let source = format!(". '{}' && complete -p geoblock", root.join(script).display());
    let out = cmd::capture(Command::new("bash").arg("-c").arg(source))?;
    ensure!(out.contains("_geoblock") && out.trim_end().ends_with(" geoblock"), "bash registered: {out}");
    Ok(())
}

/// ExecStart is the installed binary on the conffile, and systemd-analyze
/// (where it is there) has nothing to say about the unit.
fn unit(root: &Path) -> Result<()> {
    let text = fs::read_to_string(under(root, UNIT)).context("reading the installed unit")?;
    let exec = text.lines().find_map(|line| line.strip_prefix("ExecStart=")).context("the unit has no ExecStart")?;
    ensure!(exec == format!("{BINARY} run --config {CONFIG_PATH}"), "ExecStart={exec}");
    if cmd::stdout(Command::new("systemd-analyze").arg("--version")).is_none() {
        println!("package: no systemd-analyze here; the unit's ExecStart alone was checked");
        return Ok(());
    }
    verify(root, &text)
}

/// `systemd-analyze verify` on the host, as `systemd-analyze --root` wants
/// a whole system in the root: on a copy of the unit whose binary is the one
/// dpkg installed (verify checks that it is executable). Any complaint fails.
fn verify(root: &Path, unit: &str) -> Result<()> {
    let dir = root.with_file_name("unit");
    fs::create_dir_all(&dir)?;
    let copy = dir.join("geoblock.service");
    fs::write(&copy, unit.replace(BINARY, &under(root, BINARY).to_string_lossy()))?;
    let out = Command::new("systemd-analyze").arg("verify").arg(&copy).output().context("running systemd-analyze")?;
    let said = String::from_utf8_lossy(&out.stderr);
    println!("+ systemd-analyze verify {}\n{said}", copy.display());
    ensure!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {}", said.trim());
    Ok(())
}

/// The installed third-party-licenses.gz has a heading (`NAME VERSION`,
/// then `License: ...`) for tokio and aya (the binary's crates) and
/// aya-ebpf (the XDP program's).
fn third_party_licenses(root: &Path) -> Result<()> {
    let path = under(root, &format!("/{DOC_DIR}/{}.gz", licenses::FILE));
    let text = cmd::capture(Command::new("gzip").arg("-dc").arg(&path))?;
    for name in ["tokio", "aya", "aya-ebpf"] {
        let heading = text.lines().position(|line| line.strip_prefix(name).is_some_and(|v| v.starts_with(' ')));
        let heading = heading.with_context(|| format!("{} does not name {name}", path.display()))?;
        ensure!(
            text.lines().nth(heading + 1).is_some_and(|line| line.starts_with("License: ")),
            "{name} has no License"
        );
    }
    Ok(())
}

/// `dpkg --install` of the same .deb over an edited conffile: dpkg keeps the
/// operator's version, without asking, as the package's own is unchanged.
/// (An upgrade, from another version, would need a second package built.)
fn reinstall_same_version(root: &Path, deb: &Path) -> Result<()> {
    let config = under(root, CONFIG_PATH);
    let edited = fs::read_to_string(&config)? + "# edited by the operator\n";
    fs::write(&config, &edited)?;
    cmd::run(dpkg(root).arg("--install").arg(deb))?;
    ensure!(fs::read_to_string(&config)? == edited, "reinstalling replaced the edited {CONFIG_PATH}");
    Ok(())
}

/// Remove keeps the edited conffile (the operator's), purge removes it and
/// what the daemon made at run time.
fn remove_then_purge(root: &Path) -> Result<()> {
    let cache = under(root, "/var/cache/geoblock");
    fs::create_dir_all(&cache)?;
    fs::write(cache.join("download"), "")?;
    cmd::run(dpkg(root).args(["--remove", "geoblock"]))?;
    ensure!(!under(root, BINARY).exists(), "remove left {BINARY}");
    ensure!(under(root, CONFIG_PATH).exists(), "remove took {CONFIG_PATH}");
    cmd::run(dpkg(root).args(["--purge", "geoblock"]))?;
    for gone in [CONFIG_PATH, "/var/cache/geoblock"] {
        ensure!(!under(root, gone).exists(), "purge left {gone}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_read_as_ls_shows_them() {
        assert_eq!(rwx(0o600), "rw-------");
        assert_eq!(rwx(0o755), "rwxr-xr-x");
    }

    #[test]
    fn parses_dpkg_deb_contents_lines() {
        let entry = Entry::parse("-rw------- root/root 1234 2026-12-02 04:50 ./etc/geoblock/geoblock.toml").unwrap();
        assert_eq!((entry.mode.as_str(), entry.owner.as_str()), ("-rw-------", "root/root"));
        assert_eq!(entry.path, "/etc/geoblock/geoblock.toml");
        assert_eq!(Entry::parse("drwxr-xr-x root/root 0 2026-12-02 04:50 ./").unwrap().path, "");
        assert!(Entry::parse("garbage").is_err());
    }
}
