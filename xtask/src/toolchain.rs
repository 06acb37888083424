//! The one place that decides which Rust toolchain builds the workspace.

use std::{
    env,
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Result};

use crate::cmd;

/// Forces the choice: `debian` or `nightly`.
const CHOICE_VAR: &str = "GEOBLOCK_TOOLCHAIN";
/// Where Debian's rustc-web and cargo-web put `rustc`, `rustdoc` and `cargo`.
const DEBIAN_BIN: &str = "/usr/bin";
const EBPF_TARGET: &str = "bpfel-unknown-none";
/// Variables of the cargo that runs xtask, which must not leak into the build.
const CALLER_VARS: [&str; 4] = ["CARGO", "RUSTC", "RUSTDOC", "RUSTUP_TOOLCHAIN"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Toolchain {
    /// Debian's rustc-web 1.96 with a prebuilt `core` for bpfel-unknown-none.
    Debian,
    /// rustup's `nightly` with rust-src (eBPF `core` built with -Zbuild-std).
    Nightly,
}

impl Toolchain {
    /// `GEOBLOCK_TOOLCHAIN` if set; else Debian's if installed, else rustup
    /// nightly if it has rust-src, else Debian's (which setup installs).
    pub fn choose() -> Result<Toolchain> {
        match env::var(CHOICE_VAR) {
            Ok(name) => Toolchain::parse(&name),
            Err(_) if debian_ready() || !nightly_ready() => Ok(Toolchain::Debian),
            Err(_) => Ok(Toolchain::Nightly),
        }
    }

    fn parse(name: &str) -> Result<Toolchain> {
        match name {
            "debian" => Ok(Toolchain::Debian),
            "nightly" => Ok(Toolchain::Nightly),
            _ => bail!("{CHOICE_VAR}={name}: expected `debian` or `nightly`"),
        }
    }

    /// One line saying what builds the workspace, printed before the work.
    pub fn describe(self) -> String {
        let how = match self {
            Toolchain::Debian => "Debian's cargo and rustc from /usr/bin (rustc-web)",
            Toolchain::Nightly => "rustup's nightly with rust-src",
        };
        format!("xtask: toolchain {} = {how}; {CHOICE_VAR}=debian|nightly forces one", self.name())
    }

    pub fn name(self) -> &'static str {
        match self {
            Toolchain::Debian => "debian",
            Toolchain::Nightly => "nightly",
        }
    }

    /// Fails with the fix when the toolchain cannot build the XDP program.
    pub fn check(self) -> Result<()> {
        match self {
            Toolchain::Debian if !debian_ready() => {
                bail!("{DEBIAN_BIN}/rustc has no {EBPF_TARGET} core: is libstd-rust-web-dev-bpf installed?")
            }
            Toolchain::Nightly if !nightly_ready() => bail!(
                "rustup's nightly has no rust-src: run `rustup toolchain install nightly \
                 --component rust-src`, or use {CHOICE_VAR}=debian"
            ),
            _ => Ok(()),
        }
    }

    /// A `cargo` of this toolchain, run in the workspace root, with
    /// `cargo install`'s bin directory (bpf-linker) on PATH.
    pub fn cargo(self) -> Command {
        let mut cargo = match self {
            Toolchain::Debian => Command::new(Path::new(DEBIAN_BIN).join("cargo")),
            Toolchain::Nightly => {
                let mut rustup = Command::new("rustup");
                rustup.args(["run", "nightly", "cargo"]);
                rustup
            }
        };
        for var in CALLER_VARS {
            cargo.env_remove(var);
        }
        cargo.env("PATH", self.path()).current_dir(workspace_root());
        cargo
    }

    /// PATH for the build: Debian's bin directory first (so its rustc and
    /// rustdoc win over rustup's proxies), and cargo's bin directory last.
    pub fn path(self) -> OsString {
        let inherited = env::var_os("PATH").unwrap_or_default();
        let mut dirs: Vec<PathBuf> = env::split_paths(&inherited).collect();
        if self == Toolchain::Debian {
            dirs.insert(0, DEBIAN_BIN.into());
        }
        if !dirs.contains(&cargo_bin()) {
            dirs.push(cargo_bin());
        }
        env::join_paths(dirs).expect("PATH entries came from PATH")
    }
}

/// The repository's root, where xtask runs every build.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace")
}

/// Where cargo builds: CARGO_TARGET_DIR, else the workspace's target/.
pub fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

/// Where `cargo install` puts binaries.
pub fn cargo_bin() -> PathBuf {
    let home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env::var_os("HOME").unwrap_or_default()).join(".cargo"));
    home.join("bin")
}

fn debian_ready() -> bool {
    sysroot(&mut Command::new(Path::new(DEBIAN_BIN).join("rustc")))
        .is_some_and(|root| root.join("lib/rustlib").join(EBPF_TARGET).is_dir())
}

fn nightly_ready() -> bool {
    sysroot(Command::new("rustup").args(["run", "nightly", "rustc"]))
        .is_some_and(|root| root.join("lib/rustlib/src/rust/library").is_dir())
}

fn sysroot(rustc: &mut Command) -> Option<PathBuf> {
    cmd::stdout(rustc.args(["--print", "sysroot"])).map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forced_choice() {
        assert_eq!(Toolchain::parse("debian").unwrap(), Toolchain::Debian);
        assert_eq!(Toolchain::parse("nightly").unwrap(), Toolchain::Nightly);
        assert!(Toolchain::parse("stable").is_err());
    }

    #[test]
    fn debian_bin_comes_first_and_cargo_bin_is_on_path() {
        let dirs: Vec<PathBuf> = env::split_paths(&Toolchain::Debian.path()).collect();
        assert_eq!(dirs[0], Path::new(DEBIAN_BIN));
        assert!(dirs.contains(&cargo_bin()));
    }
}
