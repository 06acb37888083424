//! The tasks: each installs what it needs, then runs cargo with the chosen
//! toolchain.

use std::process::Command;

use anyhow::{bail, Result};

use crate::{
    cmd, package,
    setup::{self, Scope},
    toolchain::Toolchain,
};

/// Build only for bpfel-unknown-none (the build scripts of geoblock-user and
/// geoblock-tests build them).
const EBPF_CRATES: [&str; 2] = ["geoblock-ebpf", "bench-ebpf"];
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
        println!("setup: nothing to do, everything for the {} toolchain is installed", toolchain.name());
    }
    Ok(())
}

/// `cargo build ARGS` of the default members.
pub fn build(args: &[String]) -> Result<()> {
    let toolchain = prepare(Scope::Build)?;
    cmd::run(toolchain.cargo().arg("build").args(args))
}

/// Checks formatting and lints, builds the binaries the tests run
/// (target/debug/geoblock), then runs the unit tests of every host crate,
/// then the privileged tests, then the Debian package's checks (each counts
/// as a test): every phase runs even if others failed. ARGS go to both
/// `cargo test`s.
pub fn test(args: &[String]) -> Result<()> {
    let toolchain = prepare(Scope::Run)?;
    let mut failed = lint(toolchain);
    cmd::run(toolchain.cargo().arg("build"))?;
    let mut tally = cmd::Tally::default();
    failed.extend(test_phases(toolchain).into_iter().filter_map(|(phase, mut cargo)| {
        println!("xtask: {phase}");
        let err = cmd::run_tests(cargo.args(args), &mut tally).err()?;
        eprintln!("xtask: {err:#}");
        Some(phase)
    }));
    let package = "Debian package (release build, installed into a throwaway root, lintian)";
    println!("xtask: {package}");
    if let Err(err) = package::check::test(toolchain, &package::default_out(), &mut tally) {
        eprintln!("xtask: {err:#}");
        failed.push(package);
    }
    // One closing line for the whole suite, whatever each phase printed last.
    println!("summary: {} passed, {} failed", tally.passed, tally.failed);
    if !failed.is_empty() {
        bail!("failed: {}", failed.join("; "));
    }
    Ok(())
}

/// `cargo fmt --check` and clippy with warnings as errors, over every host
/// crate and target: the phases that failed.
fn lint(toolchain: Toolchain) -> Vec<&'static str> {
    let mut fmt = toolchain.cargo();
    fmt.args(["fmt", "--all", "--check"]);
    let mut clippy = toolchain.cargo();
    clippy.args(["clippy", "--workspace", "--all-targets"]);
    for excluded in EBPF_CRATES {
        clippy.args(["--exclude", excluded]);
    }
    clippy.args(["--", "-D", "warnings"]);
    [("formatting (cargo fmt --check)", fmt), ("lints (cargo clippy -D warnings)", clippy)]
        .into_iter()
        .filter_map(|(phase, mut cargo)| {
            println!("xtask: {phase}");
            let err = cmd::run(&mut cargo).err()?;
            eprintln!("xtask: {err:#}");
            Some(phase)
        })
        .collect()
}

fn test_phases(toolchain: Toolchain) -> [(&'static str, Command); 2] {
    let mut unit = toolchain.cargo();
    unit.args(["test", "--no-fail-fast", "--workspace"]);
    for excluded in EBPF_CRATES.iter().chain([&PRIVILEGED_CRATE]) {
        unit.args(["--exclude", excluded]);
    }
    let mut privileged = toolchain.cargo();
    privileged.args(["test", "--no-fail-fast", "--package", PRIVILEGED_CRATE]);
    [
        ("unit tests (every host crate but geoblock-tests)", unit),
        ("privileged kernel and end-to-end tests (geoblock-tests, as root)", privileged),
    ]
}

/// Builds everything in release, then runs `bin` of the tests crate with ARGS.
pub fn run_release_bin(bin: &str, args: &[String]) -> Result<()> {
    let toolchain = prepare(Scope::Run)?;
    cmd::run(toolchain.cargo().args(["build", "--release"]))?;
    let mut run = toolchain.cargo();
    run.args(["run", "--release", "--package", PRIVILEGED_CRATE, "--bin", bin, "--"]);
    cmd::run(run.args(args))
}
