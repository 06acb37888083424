//! `geoblock completions SHELL`: tab completion of geoblock's subcommands and
//! flags, and `geoblock manpages DIR`: its man pages (the Debian package's,
//! and an operator's who installed with `cargo xtask install`). Both are
//! written from the clap definitions that parse the command line, so they
//! cannot drift from it.

use std::{
    fs,
    io::{self, Write as _},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use clap::{Args, CommandFactory as _};
use clap_complete::Shell;

use crate::command::Cli;

#[derive(Args)]
pub struct CompletionsArgs {
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(Args)]
pub struct ManpagesArgs {
    /// Directory to write geoblock.1 and geoblock-SUBCOMMAND.1 into (created if missing).
    dir: PathBuf,
}

/// Prints the completion script; an operator's shell sources it (see README).
pub fn completions(args: &CompletionsArgs) -> Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "geoblock", &mut script);
    io::stdout().write_all(&script).context("writing the completion script")
}

/// One page per command and subcommand. `cargo xtask package` runs it on
/// the built binary, the only place the `Cli` is.
pub fn manpages(args: &ManpagesArgs) -> Result<()> {
    fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    // Built first, so that each subcommand knows its full name (geoblock-config-check).
    let mut cli = Cli::command().disable_help_subcommand(true);
    cli.build();
    write_pages(cli, &args.dir).with_context(|| format!("writing man pages into {}", args.dir.display()))
}

/// As `clap_mangen::generate_to`, but every page's footer names geoblock
/// and its version (a subcommand's would name only itself).
fn write_pages(command: clap::Command, dir: &Path) -> io::Result<()> {
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        write_pages(sub.clone(), dir)?;
    }
    let source = format!("geoblock {}", env!("CARGO_PKG_VERSION"));
    clap_mangen::Man::new(command).source(source).generate_to(dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_page_per_subcommand_each_naming_geoblock_and_its_version() {
        let dir = std::env::temp_dir().join(format!("geoblock-manpages-{}", std::process::id()));
        manpages(&ManpagesArgs { dir: dir.clone() }).unwrap();
        let read = |name: &str| fs::read_to_string(dir.join(name));
        let nested = read("geoblock-config-check.1");
        let every = Cli::command().get_subcommands().all(|sub| read(&format!("geoblock-{}.1", sub.get_name())).is_ok());
        fs::remove_dir_all(&dir).unwrap();
        assert!(every, "a subcommand has no page");
        assert!(nested.unwrap().contains(&format!("\"geoblock {}\"", env!("CARGO_PKG_VERSION"))));
    }
}
