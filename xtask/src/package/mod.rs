//! `cargo xtask package [--out DIR] [--check]`: `geoblock_VERSION_ARCH.deb`,
//! and with --check the test CI runs on it (`check.rs`).
//!
//! The tree is staged by the code of `cargo xtask install --prefix /usr`
//! (the release binary, stripped here; the unit in /usr/lib/systemd/system;
//! /etc/geoblock/geoblock.toml), then gets what a Debian package carries:
//! man pages and shell completions that the built binary writes from its own
//! clap definitions (`geoblock manpages DIR`, `geoblock completions SHELL`),
//! the README, changelog and copyright, the licences of the crates compiled
//! in (`licenses.rs`), the lintian overrides, and DEBIAN/ (see `debian.rs`).
//! `dpkg-deb --root-owner-group` builds the .deb, so neither fakeroot nor
//! cargo-deb (another `cargo install` in CI) is needed, and lintian checks
//! it: a warning fails the build.

pub mod check;
mod debian;
mod licenses;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use crate::{
    cmd,
    install::{self, copy},
    setup::Scope,
    tasks::prepare,
    toolchain::{target_dir, workspace_root, Toolchain},
};

/// Static parts of the package, relative to the workspace root.
const DIST: &str = "dist/debian";
/// Where each shell looks for completions shipped by packages.
const COMPLETIONS: [(&str, &str); 3] = [
    ("bash", "usr/share/bash-completion/completions/geoblock"),
    ("zsh", "usr/share/zsh/vendor-completions/_geoblock"),
    ("fish", "usr/share/fish/vendor_completions.d/geoblock.fish"),
];
/// The staged tree, relative to the work directory: debhelper's layout
/// (debian/PACKAGE), where dpkg-shlibdeps expects a package's files.
const TREE: &str = "debian/geoblock";
const MAN_DIR: &str = "usr/share/man/man1";
const DOC_DIR: &str = "usr/share/doc/geoblock";

pub fn package(args: &[String]) -> Result<()> {
    let (out, check) = options(args)?;
    let toolchain = prepare(Scope::Package)?;
    if check {
        let mut tally = cmd::Tally::default();
        let result = check::test(toolchain, &out, &mut tally);
        println!("package: {} passed, {} failed", tally.passed, tally.failed);
        return result;
    }
    let deb = build(toolchain, &out)?;
    println!("package: built {}", deb.display());
    println!("package: install it with `apt install {}` (README: \"Install from the Debian package\")", deb.display());
    Ok(())
}

/// `[--out DIR] [--check]`; DIR is target/debian by default.
fn options(args: &[String]) -> Result<(PathBuf, bool)> {
    let (mut out, mut check) = (default_out(), false);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--out" => out = PathBuf::from(it.next().context("--out needs a directory")?),
            "--check" => check = true,
            _ => bail!("package: unknown argument `{arg}` (expected --out DIR, --check)"),
        }
    }
    Ok((out, check))
}

pub fn default_out() -> PathBuf {
    target_dir().join("debian")
}

/// Builds the .deb into `out` and runs lintian on it; returns its path.
pub fn build(toolchain: Toolchain, out: &Path) -> Result<PathBuf> {
    let work = target_dir().join("debian/work");
    let tree = work.join(TREE);
    if tree.exists() {
        fs::remove_dir_all(&tree).with_context(|| format!("removing {}", tree.display()))?;
    }
    let binary = install::stage(toolchain, Path::new("/usr"), &tree)?;
    strip(&binary)?;
    man_pages(&binary, &tree.join(MAN_DIR))?;
    completions(&binary, &tree)?;
    docs(&tree)?;
    licenses::write(toolchain, &tree.join(DOC_DIR))?;
    let control = debian::write(&work, &tree)?;

    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let deb = out.join(format!("geoblock_{}_{}.deb", control.version, control.architecture));
    cmd::run(Command::new("dpkg-deb").args(["--root-owner-group", "-Zxz", "--build"]).arg(&tree).arg(&deb))?;
    lintian(&deb)?;
    Ok(deb)
}

/// What dh_strip removes: symbols and the sections no one needs at run time.
fn strip(binary: &Path) -> Result<()> {
    cmd::run(
        Command::new("strip")
            .args(["--remove-section=.comment", "--remove-section=.note", "--strip-unneeded"])
            .arg(binary),
    )
}

/// geoblock.1 and one page per subcommand, gzipped as Debian ships them
/// (-n: no name nor time inside, so that rebuilding gives the same bytes).
fn man_pages(binary: &Path, dir: &Path) -> Result<()> {
    cmd::run(Command::new(binary).arg("manpages").arg(dir))?;
    let mut pages: Vec<PathBuf> = fs::read_dir(dir)?.map(|entry| Ok(entry?.path())).collect::<Result<_>>()?;
    pages.sort();
    cmd::run(Command::new("gzip").arg("-9n").args(&pages))
}

fn completions(binary: &Path, tree: &Path) -> Result<()> {
    for (shell, path) in COMPLETIONS {
        let script = cmd::capture(Command::new(binary).args(["completions", shell]))?;
        copy(script.as_bytes(), &tree.join(path), 0o644)?;
    }
    Ok(())
}

/// copyright (not compressed: policy), README.md.gz, changelog.gz, and the
/// lintian overrides, each with its reason.
fn docs(tree: &Path) -> Result<()> {
    let root = workspace_root();
    let doc = tree.join(DOC_DIR);
    copy(&fs::read(root.join(DIST).join("copyright"))?, &doc.join("copyright"), 0o644)?;
    copy(&fs::read(root.join("README.md"))?, &doc.join("README.md"), 0o644)?;
    copy(debian::changelog()?.as_bytes(), &doc.join("changelog"), 0o644)?;
    cmd::run(Command::new("gzip").arg("-9n").arg(doc.join("README.md")).arg(doc.join("changelog")))?;
    let overrides = fs::read(root.join(DIST).join("lintian-overrides"))?;
    copy(&overrides, &tree.join("usr/share/lintian/overrides/geoblock"), 0o644)
}

/// Fails on any error or warning, and shows the informational tags too.
/// (--show-overrides would make lintian fail on the overridden ones.)
fn lintian(deb: &Path) -> Result<()> {
    cmd::run(Command::new("lintian").args(["--fail-on", "error,warning", "--display-info"]).arg(deb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_defaults_to_the_target_dir() {
        assert_eq!(options(&[]).unwrap(), (default_out(), false));
        let args = ["--check", "--out", "/tmp/x"].map(String::from);
        assert_eq!(options(&args).unwrap(), (PathBuf::from("/tmp/x"), true));
        assert!(options(&["--out".into()]).is_err());
    }
}
