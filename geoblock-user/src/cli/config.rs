//! `geoblock config check`: everything `run` would refuse, without the kernel.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use geoblock::daemon::{config::Config, policy_url::Take};

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
    let opts = Config::load(file, true)?.published(Take::Latest)?.resolve()?;
    let loaded = opts.data.load()?;
    let table = &loaded.table;
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
    for source in &loaded.asn.sources {
        let (v4, v6, ases) = (source.prefixes.v4, source.prefixes.v6, source.ases);
        println!("asn data {}: {v4} IPv4 and {v6} IPv6 prefixes of {ases} ASes", source.origin);
    }
    for list in &loaded.lists {
        let (v4, v6) = (list.v4.len(), list.v6.len());
        println!("list {}: {v4} IPv4 and {v6} IPv6 prefixes from {}", list.name, list.info.origin);
    }
    if let (Some(url), Some(serial)) = (&opts.policy_url, opts.policy_serial()) {
        let signed = if url.key.is_some() { "signature verified" } else { "unsigned" };
        println!("policy from {}: serial {serial}, {signed}", url.url);
    }
    print!("{}", opts.policy.render());
    Ok(())
}
