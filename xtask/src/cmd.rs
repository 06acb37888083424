//! Running commands: loudly (`+ cmd args`) for the work, quietly for probes.

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

/// Prints `cmd` as `+ ...`, runs it, and fails unless it exits successfully.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = show(cmd);
    println!("+ {shown}");
    let status = cmd.status().with_context(|| format!("could not start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Like [`run`], and returns what `cmd` wrote on standard output.
pub fn capture(cmd: &mut Command) -> Result<String> {
    let shown = show(cmd);
    println!("+ {shown}");
    let out = cmd.stderr(Stdio::inherit()).output().with_context(|| format!("could not start `{shown}`"))?;
    if !out.status.success() {
        bail!("`{shown}` failed ({}): {}", out.status, String::from_utf8_lossy(&out.stdout).trim());
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{shown}` wrote something that is not UTF-8"))
}

/// Passed and failed tests, summed over `cargo test`'s "test result" lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub passed: u64,
    pub failed: u64,
}

impl Tally {
    /// Adds a line like `test result: ok. 37 passed; 0 failed; 0 ignored; ...`.
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        let count = |word: &str| {
            rest.split(';')
                .find_map(|part| part.trim().trim_start_matches(|c: char| !c.is_ascii_digit()).strip_suffix(word))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        self.passed += count(" passed");
        self.failed += count(" failed");
    }
}

/// Like [`run`] for `cargo test`: its output is passed through and its test
/// counts are added to `tally`, whether or not it succeeds.
pub fn run_tests(cmd: &mut Command, tally: &mut Tally) -> Result<()> {
    let shown = show(cmd);
    println!("+ {shown}");
    let mut child = cmd.stdout(Stdio::piped()).spawn().with_context(|| format!("could not start `{shown}`"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test's output")?;
        println!("{line}");
        tally.add_line(&line);
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// The trimmed standard output of a successful probe, or `None`.
pub fn stdout(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    out.status.success().then(|| text.trim().to_owned())
}

/// `cmd` as a shell would read it: the variables it sets (but PATH), the
/// program and its arguments.
fn show(cmd: &Command) -> String {
    let vars = cmd
        .get_envs()
        .filter(|(key, _)| *key != "PATH")
        .filter_map(|(key, value)| Some(format!("{}={}", key.to_string_lossy(), value?.to_string_lossy())));
    let words = std::iter::once(cmd.get_program()).chain(cmd.get_args()).map(|word| quote(&word.to_string_lossy()));
    vars.chain(words).collect::<Vec<_>>().join(" ")
}

fn quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_sums_test_result_lines_only() {
        let mut tally = Tally::default();
        for line in [
            "test result: ok. 37 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 3.95s",
            "test result: FAILED. 5 passed; 2 failed; 1 ignored; 0 measured; 0 filtered out",
            "test foo ... ok",
            "running 3 tests",
        ] {
            tally.add_line(line);
        }
        assert_eq!(tally, Tally { passed: 42, failed: 2 });
    }

    #[test]
    fn shows_set_variables_program_and_quoted_args() {
        let mut cmd = Command::new("cargo");
        cmd.env("LLVM_PREFIX", "/usr/lib/llvm-22")
            .env("PATH", "/usr/bin")
            .env_remove("RUSTC")
            .args(["test", "--", "a b", "it's"]);
        assert_eq!(show(&cmd), r"LLVM_PREFIX=/usr/lib/llvm-22 cargo test -- 'a b' 'it'\''s'");
    }
}
