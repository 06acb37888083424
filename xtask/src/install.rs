//! `cargo xtask install [--prefix DIR] [--destdir DIR]`: the release binary,
//! the systemd unit and an example config, where a packager or an operator
//! expects them. An existing config is never overwritten. `cargo xtask
//! package` stages the Debian package's tree with the same code.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _, Result};

use crate::{
    cmd,
    setup::Scope,
    tasks::prepare,
    toolchain::{target_dir, workspace_root, Toolchain},
};

const UNIT: &str = "dist/geoblock.service";
const CONFIG: &str = "dist/geoblock.toml";
pub const CONFIG_PATH: &str = "/etc/geoblock/geoblock.toml";
/// Root only: the config names the networks that bypass the blocker
/// (`management`, `except`); only root reads it (the daemon, `config check`).
pub const CONFIG_MODE: u32 = 0o600;
/// The binary path the unit file is written with.
const UNIT_BINARY: &str = "/usr/local/bin/geoblock";

pub fn install(args: &[String]) -> Result<()> {
    let (prefix, destdir) = options(args)?;
    let toolchain = prepare(Scope::Build)?;
    stage(toolchain, &prefix, &destdir)?;
    println!("install: next: edit /etc/geoblock/geoblock.toml, `geoblock config check` it, then");
    println!("         systemctl daemon-reload && systemctl enable --now geoblock");
    Ok(())
}

/// Builds the release binary and installs it as PREFIX/bin/geoblock under
/// DESTDIR, with the unit and the example config (an existing config is
/// kept); returns the installed binary's path (under DESTDIR).
pub fn stage(toolchain: Toolchain, prefix: &Path, destdir: &Path) -> Result<PathBuf> {
    cmd::run(toolchain.cargo().args(["build", "--release", "--package", "geoblock-user", "--bin", "geoblock"]))?;
    let root = workspace_root();
    let under = |path: &Path| destdir.join(path.strip_prefix("/").unwrap_or(path));

    let binary = prefix.join("bin/geoblock");
    copy(&fs::read(target_dir().join("release/geoblock"))?, &under(&binary), 0o755)?;
    let unit = fs::read_to_string(root.join(UNIT))?.replace(UNIT_BINARY, &binary.to_string_lossy());
    copy(unit.as_bytes(), &under(&unit_dir(prefix).join("geoblock.service")), 0o644)?;
    let config = under(Path::new(CONFIG_PATH));
    let example = fs::read(root.join(CONFIG))?;
    if config.exists() {
        copy(&example, &config.with_extension("toml.example"), CONFIG_MODE)?;
        println!("install: kept the existing {}", config.display());
    } else {
        copy(&example, &config, CONFIG_MODE)?;
    }
    Ok(under(&binary))
}

/// Where the unit goes: /usr/lib/systemd/system is the distribution's (a
/// package's, with --prefix /usr), /etc/systemd/system the administrator's.
fn unit_dir(prefix: &Path) -> PathBuf {
    match prefix == Path::new("/usr") {
        true => PathBuf::from("/usr/lib/systemd/system"),
        false => PathBuf::from("/etc/systemd/system"),
    }
}

/// `--prefix DIR` (default /usr/local) and `--destdir DIR` (default /).
fn options(args: &[String]) -> Result<(PathBuf, PathBuf)> {
    let (mut prefix, mut destdir) = (PathBuf::from("/usr/local"), PathBuf::from("/"));
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let value = it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--prefix" => prefix = PathBuf::from(value?),
            "--destdir" => destdir = PathBuf::from(value?),
            _ => bail!("install: unknown argument `{arg}` (expected --prefix DIR, --destdir DIR)"),
        }
    }
    if !prefix.is_absolute() {
        bail!("install: --prefix must be absolute");
    }
    Ok((prefix, destdir))
}

pub fn copy(contents: &[u8], to: &Path, mode: u32) -> Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(to, contents).with_context(|| format!("writing {}", to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    println!("install: {}", to.display());
    Ok(())
}
