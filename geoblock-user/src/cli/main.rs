//! The `geoblock` command: the daemon (`run`) and the tools around it. One
//! file per subcommand (or group); each parses its arguments, calls the
//! library, and prints.

mod args;
mod command;
mod completions;
mod config;
mod control;
mod data;
mod detach;
mod events;
mod explain;
mod lookup;
mod pcap;
mod run;
mod stats;

use std::{io, process::ExitCode};

use clap::{CommandFactory as _, FromArgMatches as _};
use geoblock::data::embedded;

use crate::command::Cli;

fn main() -> ExitCode {
    let cli = match parse_cli() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    init_logging(cli.verbose);
    match cli.command.execute() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("geoblock: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--version` names the embedded data set, as its licence asks.
fn parse_cli() -> Result<Cli, ExitCode> {
    let data = embedded::embedded_meta().map_or_else(|e| format!("embedded data unreadable: {e}"), |m| m.to_string());
    let version = format!("{}\n{data}, https://db-ip.com, CC BY 4.0", env!("CARGO_PKG_VERSION"));
    let parsed =
        Cli::command().long_version(version).try_get_matches().and_then(|matches| Cli::from_arg_matches(&matches));
    match parsed {
        Ok(cli) => Ok(cli),
        // A bad value (unknown country code, malformed CIDR) is an operator
        // error like any other: one `geoblock: ...` line, exit 1.
        Err(e) if e.kind() == clap::error::ErrorKind::ValueValidation => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            eprintln!("geoblock: {}", first.strip_prefix("error: ").unwrap_or(first));
            Err(ExitCode::FAILURE)
        }
        Err(e) => e.exit(),
    }
}

/// One line per event on stderr (the journal under systemd). The XDP
/// program's records arrive through aya-log's `log` records, which the
/// subscriber takes in too.
fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_writer(io::stderr).init();
}
