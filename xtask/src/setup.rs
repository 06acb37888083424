//! Installs what building and testing geoblock needs, only what is missing.

use std::process::Command;

use anyhow::{bail, Result};

use crate::{cmd, toolchain::Toolchain};

/// Debian's Rust 1.96 (the toolchain of record), its prebuilt eBPF `core`,
/// and the formatter and linter CI runs.
const RUST_PACKAGES: [&str; 5] =
    ["rustc-web", "cargo-web", "libstd-rust-web-dev-bpf", "rustfmt-web", "rust-web-clippy"];
/// The LLVM that bpf-linker is built against (and Debian's rustc uses).
const LLVM_PACKAGE: &str = "llvm-22-dev";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const LLVM_FEATURE: &str = "llvm-22";
const BPF_LINKER_VERSION: &str = "0.13.0";
/// What the privileged tests, the demo and the benchmark drive.
const RUNTIME_PACKAGES: [&str; 6] = ["iproute2", "ethtool", "nftables", "ipset", "iptables", "tcpdump"];
/// What builds and checks the Debian package: dpkg-shlibdeps (its Depends)
/// and lintian.
const PACKAGING_PACKAGES: [&str; 2] = ["dpkg-dev", "lintian"];

/// What the caller is about to do; each scope needs what the ones before it do.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Compile the workspace.
    Build,
    /// Also build the Debian package.
    Package,
    /// Also run tests (the package's among them), the demo or the benchmark.
    Run,
}

/// Installs what is missing for `scope` with `toolchain`; says whether it
/// installed anything. Quiet when everything is there.
pub fn ensure(toolchain: Toolchain, scope: Scope) -> Result<bool> {
    let linker_missing = !bpf_linker_ready(toolchain);
    let missing: Vec<&str> =
        wanted_packages(toolchain, scope, linker_missing).into_iter().filter(|package| !installed(package)).collect();
    if !missing.is_empty() {
        apt_install(&missing)?;
    }
    if linker_missing {
        install_bpf_linker(toolchain)?;
    }
    toolchain.check()?;
    Ok(linker_missing || !missing.is_empty())
}

fn wanted_packages(toolchain: Toolchain, scope: Scope, linker_missing: bool) -> Vec<&'static str> {
    let mut wanted = Vec::new();
    if toolchain == Toolchain::Debian {
        wanted.extend(RUST_PACKAGES);
    }
    if toolchain == Toolchain::Debian || linker_missing {
        wanted.push(LLVM_PACKAGE);
    }
    if scope >= Scope::Package {
        wanted.extend(PACKAGING_PACKAGES);
    }
    if scope == Scope::Run {
        wanted.extend(RUNTIME_PACKAGES);
    }
    wanted
}

fn installed(package: &str) -> bool {
    let status = cmd::stdout(Command::new("dpkg-query").args(["-W", "-f=${db:Status-Status}", package]));
    status.as_deref() == Some("installed")
}

fn apt_install(packages: &[&str]) -> Result<()> {
    let list = packages.join(" ");
    if cmd::stdout(Command::new("apt-get").arg("--version")).is_none() {
        bail!(
            "missing Debian packages: {list}; apt-get is not here to install them: install their equivalents yourself"
        );
    }
    if cmd::stdout(Command::new("id").arg("-u")).as_deref() != Some("0") {
        bail!("missing Debian packages: {list}; installing them needs root: run `cargo xtask setup` as root");
    }
    cmd::run(apt_get().args(["update", "-qq"]))?;
    cmd::run(apt_get().args(["install", "-qq", "-y", "--no-install-recommends"]).args(packages))
}

fn apt_get() -> Command {
    let mut apt = Command::new("apt-get");
    apt.env("DEBIAN_FRONTEND", "noninteractive");
    apt
}

fn bpf_linker_ready(toolchain: Toolchain) -> bool {
    let version = cmd::stdout(Command::new("bpf-linker").arg("--version").env("PATH", toolchain.path()));
    version.as_deref() == Some(&format!("bpf-linker {BPF_LINKER_VERSION}"))
}

/// Builds bpf-linker against Debian's LLVM, with the chosen toolchain's cargo.
fn install_bpf_linker(toolchain: Toolchain) -> Result<()> {
    let mut cargo = toolchain.cargo();
    cargo
        .env("LLVM_PREFIX", LLVM_PREFIX)
        .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION, "--locked"])
        .args(["--no-default-features", "--features", LLVM_FEATURE]);
    cmd::run(&mut cargo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nightly_needs_no_debian_rust_nor_llvm_once_bpf_linker_is_there() {
        assert!(wanted_packages(Toolchain::Nightly, Scope::Build, false).is_empty());
        assert_eq!(wanted_packages(Toolchain::Nightly, Scope::Build, true), [LLVM_PACKAGE]);
    }

    #[test]
    fn running_adds_the_network_tools() {
        let wanted = wanted_packages(Toolchain::Debian, Scope::Run, false);
        assert!(wanted.contains(&"rustc-web") && wanted.contains(&"tcpdump"));
    }

    #[test]
    fn packaging_needs_lintian_and_so_do_the_tests() {
        assert!(wanted_packages(Toolchain::Debian, Scope::Package, false).contains(&"lintian"));
        assert!(!wanted_packages(Toolchain::Debian, Scope::Package, false).contains(&"tcpdump"));
        assert!(wanted_packages(Toolchain::Debian, Scope::Run, false).contains(&"lintian"));
    }
}
