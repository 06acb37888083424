//! Builds an eBPF crate of this workspace for bpfel-unknown-none, from the
//! build script of the crate that embeds its objects: geoblock-user embeds
//! the XDP program (geoblock-ebpf), the tests crate the benchmark's programs
//! (bench-ebpf). Each binary of the crate is left in OUT_DIR under its name.
//!
//! Which toolchain builds the eBPF side is decided here, once, on purpose:
//!
//! 1. `GEOBLOCK_EBPF_TOOLCHAIN=NAME`: that rustup toolchain (needs rust-src;
//!    core is built with -Zbuild-std).
//! 2. The toolchain building the embedding crate, when its sysroot ships a
//!    prebuilt `core` for bpfel-unknown-none (Debian's
//!    `libstd-rust-web-dev-bpf`, which `cargo xtask setup` installs). Only
//!    aya-ebpf is allowed the unstable features it uses
//!    (`RUSTC_BOOTSTRAP=aya_ebpf`).
//! 3. Otherwise rustup's nightly, if it has rust-src.
//!
//! The nested cargo runs quietly: its progress would reach the user as
//! `warning:` lines on every build. Only rustc's own diagnostics are passed
//! on (they are warnings), and everything it said when it fails. The build
//! script runs again only when a source or manifest of the eBPF crate or of
//! a workspace crate it uses changes, or the workspace's manifest or lock.
//!
//! This is the body of build scripts, so its errors are anyhow's.
use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

pub use anyhow::Result;
use anyhow::{anyhow, bail, Context as _};
use serde_json::Value;

const TARGET: &str = "bpfel-unknown-none";
const TOOLCHAIN_VAR: &str = "GEOBLOCK_EBPF_TOOLCHAIN";

/// Builds the binaries of `package` in release and copies them to OUT_DIR.
pub fn build(package: &str) -> Result<()> {
    println!("cargo:rerun-if-env-changed={TOOLCHAIN_VAR}");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR is not set")?);
    let messages = cargo_build(package, &out_dir)?;
    for line in messages.diagnostics.iter().flat_map(|d| d.lines()) {
        println!("cargo:warning={line}");
    }
    for path in messages.sources.iter().chain(&workspace_files()?) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    for (name, binary) in messages.binaries {
        let copy = out_dir.join(&name);
        fs::copy(&binary, &copy).with_context(|| format!("copying {} to {}", binary.display(), copy.display()))?;
    }
    Ok(())
}

/// Runs the nested `cargo build`, its output kept: what it says, or the
/// failure with everything it said.
fn cargo_build(package: &str, out_dir: &Path) -> Result<Messages> {
    let mut cargo = Toolchain::choose()?.cargo()?;
    cargo
        .args(["build", "--package", package, "--bins", "--release", "--target", TARGET])
        .arg("--message-format=json")
        // Not the outer build's target dir: cargo holds a lock on it.
        .arg("--target-dir")
        .arg(out_dir.join("ebpf-target"))
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags()?)
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    let output = cargo.output().with_context(|| format!("running {cargo:?}"))?;
    let messages = Messages::parse(&output.stdout)?;
    if !output.status.success() {
        let said = format!("{}{}", messages.diagnostics.concat(), String::from_utf8_lossy(&output.stderr));
        bail!("building {package} failed ({}):\n{said}\nThe command: {cargo:?}", output.status);
    }
    Ok(messages)
}

enum Toolchain {
    /// A rustup toolchain with rust-src.
    Rustup(String),
    /// The host's cargo and rustc, whose sysroot has `core` for TARGET.
    Host { rustc: PathBuf, linker: PathBuf },
}

impl Toolchain {
    fn choose() -> Result<Toolchain> {
        if let Ok(name) = env::var(TOOLCHAIN_VAR) {
            return Ok(Toolchain::Rustup(name));
        }
        let host_rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        let sysroot = sysroot(Command::new(&host_rustc))?;
        if sysroot.join("lib/rustlib").join(TARGET).is_dir() {
            return Ok(Toolchain::Host {
                rustc: which::which(&host_rustc).context("locating the host rustc")?,
                linker: which::which("bpf-linker").context("bpf-linker is not installed: run `cargo xtask setup`")?,
            });
        }
        if nightly_has_rust_src() {
            return Ok(Toolchain::Rustup("nightly".into()));
        }
        bail!(
            "no toolchain here can build the eBPF programs: the host rustc ({}) has no \
             {TARGET} core and rustup nightly has no rust-src. Run `cargo xtask setup`, \
             or `rustup toolchain install nightly --component rust-src`.",
            sysroot.display()
        )
    }

    /// The cargo to run. rustup's gets its own rustc, not the one building
    /// the embedding crate, and builds `core` itself; bpf-linker is the
    /// target's default linker there.
    fn cargo(self) -> Result<Command> {
        Ok(match self {
            Toolchain::Rustup(name) => {
                let mut cargo = Command::new("rustup");
                cargo.args(["run", &name, "cargo"]).env_remove("RUSTC");
                cargo.args(["-Z", "build-std=core"]);
                cargo
            }
            Toolchain::Host { rustc, linker } => {
                let bin = rustc.parent().ok_or_else(|| anyhow!("rustc has no parent dir"))?;
                let mut cargo = Command::new(bin.join("cargo"));
                cargo
                    .env("RUSTC", &rustc)
                    .env("RUSTC_BOOTSTRAP", "aya_ebpf")
                    .env("CARGO_TARGET_BPFEL_UNKNOWN_NONE_LINKER", linker);
                cargo
            }
        })
    }
}

/// What aya-build gives eBPF crates: the architecture whose kernel structs
/// aya-ebpf uses, and the debug info bpf-linker turns into BTF.
fn rustflags() -> Result<String> {
    let arch = env::var("CARGO_CFG_TARGET_ARCH").context("CARGO_CFG_TARGET_ARCH is not set")?;
    Ok(format!("--cfg=bpf_target_arch=\"{arch}\"\x1f-Cdebuginfo=2\x1f-Clink-arg=--btf"))
}

/// What the nested cargo's JSON messages say.
#[derive(Default)]
struct Messages {
    /// rustc's rendered warnings and errors.
    diagnostics: Vec<String>,
    /// The sources and manifest of each workspace crate built.
    sources: Vec<PathBuf>,
    /// Each binary built, by name.
    binaries: Vec<(String, PathBuf)>,
}

impl Messages {
    fn parse(stdout: &[u8]) -> Result<Messages> {
        let mut messages = Messages::default();
        for line in stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let message: Value = serde_json::from_slice(line).context("cargo's JSON messages")?;
            match message["reason"].as_str() {
                Some("compiler-message") => {
                    let rendered = message["message"]["rendered"].as_str();
                    messages.diagnostics.extend(rendered.map(str::to_owned));
                }
                Some("compiler-artifact") => messages.artifact(&message),
                _ => {}
            }
        }
        Ok(messages)
    }

    fn artifact(&mut self, artifact: &Value) {
        if let Some(binary) = artifact["executable"].as_str() {
            let name = artifact["target"]["name"].as_str().unwrap_or_default();
            self.binaries.push((name.to_owned(), binary.into()));
        }
        // Registry crates do not change; path dependencies are this workspace's.
        let ours = artifact["package_id"].as_str().is_some_and(|id| id.starts_with("path+"));
        let Some(manifest) = artifact["manifest_path"].as_str().filter(|_| ours) else {
            return;
        };
        let manifest = PathBuf::from(manifest);
        for path in [manifest.with_file_name("src"), manifest] {
            if !self.sources.contains(&path) {
                self.sources.push(path);
            }
        }
    }
}

/// The workspace's manifest (profiles, shared dependencies) and lock
/// (dependency versions): they shape the eBPF objects too. Cargo.lock sits
/// at the workspace root.
fn workspace_files() -> Result<[PathBuf; 2]> {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").context("no CARGO_MANIFEST_DIR")?);
    let root = manifest_dir
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .ok_or_else(|| anyhow!("no Cargo.lock above {}", manifest_dir.display()))?;
    Ok([root.join("Cargo.toml"), root.join("Cargo.lock")])
}

fn sysroot(mut rustc: Command) -> Result<PathBuf> {
    let out = rustc.args(["--print", "sysroot"]).output().context("running rustc --print sysroot")?;
    if !out.status.success() {
        bail!("rustc --print sysroot failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

fn nightly_has_rust_src() -> bool {
    let mut rustc = Command::new("rustup");
    rustc.args(["run", "nightly", "rustc"]);
    sysroot(rustc).map(|root| Path::new(&root).join("lib/rustlib/src/rust/library").is_dir()).unwrap_or(false)
}
