//! The tasks: each installs what it needs, then runs cargo with the chosen
//! toolchain.

use anyhow::Result;

use crate::{
    cmd,
    setup::{self, Scope},
    toolchain::Toolchain,
};

/// Builds only for bpfel-unknown-none (geoblock-user/build.rs builds it).
const EBPF_CRATE: &str = "geoblock-ebpf";
/// Privileged kernel and end-to-end tests, the demo and the benchmark.
const PRIVILEGED_CRATE: &str = "geoblock-tests";

/// Chooses the toolchain, says which, and installs what `scope` needs.
pub fn prepare(scope: Scope) -> Result<Toolchain> {
    let toolchain = Toolchain::choose()?;
    println!("{}", toolchain.describe());
    setup::ensure(toolchain, scope)?;
    Ok(toolchain)
}

pub fn setup() -> Result<()> {
    let toolchain = Toolchain::choose()?;
    println!("{}", toolchain.describe());
    if setup::ensure(toolchain, Scope::Run)? {
        println!("setup: done");
    } else {
        println!(
            "setup: nothing to do, everything for the {} toolchain is installed",
            toolchain.name()
        );
    }
    Ok(())
}

/// `cargo build ARGS` of the default members.
pub fn build(args: &[String]) -> Result<()> {
    let toolchain = prepare(Scope::Build)?;
    cmd::run(toolchain.cargo().arg("build").args(args))
}

/// Builds the binaries the tests run (target/debug/geoblock), then runs the
/// unit tests of every host crate, then the privileged tests; ARGS go to
/// both `cargo test`s.
pub fn test(args: &[String]) -> Result<()> {
    let toolchain = prepare(Scope::Run)?;
    cmd::run(toolchain.cargo().arg("build"))?;
    println!("xtask: unit tests (every host crate but {PRIVILEGED_CRATE})");
    let mut unit = toolchain.cargo();
    unit.args([
        "test",
        "--workspace",
        "--exclude",
        EBPF_CRATE,
        "--exclude",
        PRIVILEGED_CRATE,
    ]);
    cmd::run(unit.args(args))?;
    println!("xtask: privileged kernel and end-to-end tests ({PRIVILEGED_CRATE}, as root)");
    cmd::run(
        toolchain
            .cargo()
            .args(["test", "--package", PRIVILEGED_CRATE])
            .args(args),
    )
}

/// Builds everything in release, then runs `bin` of the tests crate with ARGS.
pub fn run_release_bin(bin: &str, args: &[String]) -> Result<()> {
    let toolchain = prepare(Scope::Run)?;
    cmd::run(toolchain.cargo().args(["build", "--release"]))?;
    let mut run = toolchain.cargo();
    run.args([
        "run",
        "--release",
        "--package",
        PRIVILEGED_CRATE,
        "--bin",
        bin,
        "--",
    ]);
    cmd::run(run.args(args))
}
