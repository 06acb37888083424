//! `cargo xtask`: geoblock's entry point for developers, operators and CI.
//!
//! # Which toolchain builds geoblock
//!
//! `cargo xtask` itself runs under whatever cargo is first on PATH (on a new
//! machine, rustup's stable 1.95), so this crate has no `rust-version` and
//! depends on anyhow only. The workspace needs rustc >= 1.96 (aya 0.14), and
//! its XDP program needs a `core` for bpfel-unknown-none plus bpf-linker, so
//! xtask picks the toolchain for the real builds here, in `toolchain.rs`:
//!
//! - `debian` (the toolchain of record): Debian's `rustc-web`/`cargo-web` 1.96
//!   with `libstd-rust-web-dev-bpf` (a prebuilt eBPF `core`). Builds run
//!   `/usr/bin/cargo` with `/usr/bin` first on PATH, so rustup's proxies never
//!   answer for `rustc` or `rustdoc`.
//! - `nightly`: rustup's nightly with rust-src (`core` built with
//!   -Zbuild-std); builds run `rustup run nightly cargo`, and no Debian Rust
//!   packages are needed.
//!
//! `GEOBLOCK_TOOLCHAIN=debian|nightly` forces one. Otherwise: `debian` if it
//! is installed, else `nightly` if it has rust-src, else `debian`, which
//! `setup` installs. Either way bpf-linker 0.13.0 is built against Debian's
//! LLVM 22. ebpf-build (the build scripts of geoblock-user and the tests)
//! then picks the matching eBPF toolchain from the host rustc it is built with.
//!
//! bpffs is not mounted here: the daemon mounts it at /sys/fs/bpf when it
//! pins there, so the tests exercise that.

mod cmd;
mod data;
mod install;
mod package;
mod setup;
mod tasks;
mod toolchain;

use std::process::ExitCode;

use anyhow::{bail, Result};

const USAGE: &str = "\
usage: cargo xtask TASK [ARGS]

tasks:
  setup          install what is missing (as root): Debian's Rust 1.96 and LLVM 22,
                 bpf-linker, the network tools the tests use, dpkg-dev and lintian
  build [ARGS]   setup, then `cargo build ARGS` (e.g. --release)
  test [ARGS]    setup, build, then `cargo test ARGS` of the host crates and then
                 of the privileged tests (geoblock-tests, as root), then the Debian
                 package's checks; e.g. `cargo xtask test -- --test-threads=1`
  demo [ARGS]    setup, build in release, run the demo with ARGS
  bench [ARGS]   setup, build in release, run the benchmark with ARGS
  install [--prefix DIR] [--destdir DIR]
                 build in release, install the binary (PREFIX/bin, default /usr/local),
                 the systemd unit and an example /etc/geoblock/geoblock.toml (kept if present)
  package [--out DIR] [--check]
                 build geoblock_VERSION_ARCH.deb (default DIR: target/debian) and lint it;
                 --check: then install it into a throwaway root and test it (as root;
                 `test` runs these checks too)
  data           regenerate geoblock-user/data/dbip-country.bin from db-ip's
                 country lite database (npm package)

environment:
  GEOBLOCK_TOOLCHAIN=debian|nightly   force the toolchain (default: see xtask/src/main.rs)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<()> {
    let Some((task, rest)) = args.split_first() else {
        bail!("no task given\n\n{USAGE}");
    };
    match task.as_str() {
        "setup" => no_args(task, rest).and_then(|()| tasks::setup()),
        "build" => tasks::build(rest),
        "test" => tasks::test(rest),
        "demo" => tasks::run_release_bin("demo", rest),
        "bench" => tasks::run_release_bin("bench", rest),
        "data" => no_args(task, rest).and_then(|()| data::data()),
        "install" => install::install(rest),
        "package" => package::package(rest),
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            Ok(())
        }
        _ => bail!("unknown task `{task}`\n\n{USAGE}"),
    }
}

fn no_args(task: &str, rest: &[String]) -> Result<()> {
    match rest {
        [] => Ok(()),
        _ => bail!("`{task}` takes no arguments, got `{}`", rest.join(" ")),
    }
}
