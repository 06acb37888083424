//! Running commands: loudly (`+ cmd args`) for the work, quietly for probes.

use std::process::{Command, Stdio};

use anyhow::{bail, Context as _, Result};

/// Prints `cmd` as `+ ...`, runs it, and fails unless it exits successfully.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = show(cmd);
    println!("+ {shown}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{shown}`"))?;
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
        .filter_map(|(key, value)| {
            Some(format!(
                "{}={}",
                key.to_string_lossy(),
                value?.to_string_lossy()
            ))
        });
    let words = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|word| quote(&word.to_string_lossy()));
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
    fn shows_set_variables_program_and_quoted_args() {
        let mut cmd = Command::new("cargo");
        cmd.env("LLVM_PREFIX", "/usr/lib/llvm-22")
            .env("PATH", "/usr/bin")
            .env_remove("RUSTC")
            .args(["test", "--", "a b", "it's"]);
        assert_eq!(
            show(&cmd),
            r"LLVM_PREFIX=/usr/lib/llvm-22 cargo test -- 'a b' 'it'\''s'"
        );
    }
}
