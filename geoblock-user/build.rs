//! Builds the XDP program (geoblock-ebpf) for bpfel-unknown-none and leaves
//! it in OUT_DIR, where `src/programs.rs` embeds it.
//!
//! Which toolchain builds the eBPF side is decided here, once, on purpose:
//!
//! 1. `GEOBLOCK_EBPF_TOOLCHAIN=NAME`: that rustup toolchain (needs rust-src;
//!    core is built with -Zbuild-std).
//! 2. The toolchain building this crate, when its sysroot ships a prebuilt
//!    `core` for bpfel-unknown-none (Debian's `libstd-rust-web-dev-bpf`, which
//!    `cargo xtask setup` installs). rustup is hidden from aya-build so it
//!    cannot swap in another toolchain, and only aya-ebpf is allowed the
//!    unstable features it uses (`RUSTC_BOOTSTRAP=aya_ebpf`).
//! 3. Otherwise rustup's nightly, if it has rust-src.
use std::{
    env,
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{anyhow, bail, Context as _, Result};
use aya_build::{Package, Toolchain};

const EBPF_TARGET: &str = "bpfel-unknown-none";

fn main() -> Result<()> {
    println!("cargo:rerun-if-env-changed=GEOBLOCK_EBPF_TOOLCHAIN");
    let package = Package {
        name: "geoblock-ebpf",
        root_dir: "../geoblock-ebpf",
        ..Default::default()
    };
    if let Ok(name) = env::var("GEOBLOCK_EBPF_TOOLCHAIN") {
        return build(package, Toolchain::Custom(&name));
    }
    let host_rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = sysroot(Command::new(&host_rustc))?;
    if sysroot.join("lib/rustlib").join(EBPF_TARGET).is_dir() {
        use_host_toolchain(&host_rustc)?;
        return build(package, Toolchain::Nightly /* unused: rustup is hidden */);
    }
    if nightly_has_rust_src() {
        return build(package, Toolchain::Nightly);
    }
    bail!(
        "no toolchain here can build the XDP program: the host rustc ({}) has no \
         {EBPF_TARGET} core and rustup nightly has no rust-src. Run `cargo xtask setup`, \
         or `rustup toolchain install nightly --component rust-src`.",
        sysroot.display()
    )
}

fn build(package: Package<'_>, toolchain: Toolchain<'_>) -> Result<()> {
    aya_build::build_ebpf([package], toolchain)
}

/// Makes aya-build run the host's own cargo and rustc: their directory goes
/// first on PATH and every directory holding `rustup` is dropped. bpf-linker
/// is found before that and passed as the target's linker.
fn use_host_toolchain(host_rustc: &OsString) -> Result<()> {
    let linker = which::which("bpf-linker")
        .context("bpf-linker is not installed: run `cargo xtask setup`")?;
    let rustc = which::which(host_rustc).context("locating the host rustc")?;
    let bin = rustc.parent().ok_or_else(|| anyhow!("rustc has no parent dir"))?;
    let path = env::var_os("PATH").unwrap_or_default();
    let kept = env::split_paths(&path).filter(|dir| !dir.join("rustup").exists());
    let path = env::join_paths(std::iter::once(bin.to_path_buf()).chain(kept))?;
    // A build script is single-threaded; aya-build's child cargo inherits these.
    env::set_var("PATH", path);
    env::set_var("RUSTC_BOOTSTRAP", "aya_ebpf");
    env::set_var("CARGO_TARGET_BPFEL_UNKNOWN_NONE_LINKER", linker);
    Ok(())
}

fn sysroot(mut rustc: Command) -> Result<PathBuf> {
    let out = rustc
        .args(["--print", "sysroot"])
        .output()
        .context("running rustc --print sysroot")?;
    if !out.status.success() {
        bail!("rustc --print sysroot failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

fn nightly_has_rust_src() -> bool {
    let mut rustc = Command::new("rustup");
    rustc.args(["run", "nightly", "rustc"]);
    sysroot(rustc)
        .map(|root| Path::new(&root).join("lib/rustlib/src/rust/library").is_dir())
        .unwrap_or(false)
}
