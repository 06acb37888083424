//! `geoblock config check`: everything `run` would refuse, without the kernel.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use geoblock::daemon::config::Config;

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Check a config file (syntax, countries, CIDRs, data files) without touching the kernel.
    Check { file: PathBuf },
}

pub fn config(command: ConfigCommand) -> Result<()> {
    match command {
        ConfigCommand::Check { file } => check(&file),
    }
}

/// `geoblock config check FILE`: everything `run` would refuse, without the kernel.
fn check(file: &std::path::Path) -> Result<()> {
    let opts = Config::load(file, true)?.resolve()?;
    let table = opts.data.load()?.table;
    // One rule for everything reads as the policy always did; more, as a count.
    let policy = match opts.policy.whole_list() {
        Some(_) => opts.policy.to_string(),
        None => format!("{} rules", opts.policy.rules.len()),
    };
    println!(
        "{}: ok; {policy} on {}, {} IPv4 and {} IPv6 prefixes",
        file.display(),
        opts.interfaces.join(", "),
        table.v4.len(),
        table.v6.len()
    );
    print!("{}", opts.policy.render());
    Ok(())
}
