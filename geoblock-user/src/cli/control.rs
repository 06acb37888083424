//! The commands that ask the running daemon: `status`, `block`, `unblock`,
//! `allow`, `mode`, `except` and `reload`.

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use geoblock::{
    policy::{lockout, Change, Enforcement},
    protocol::{self, Request},
};

use crate::args::ControlArgs;

#[derive(Args)]
pub struct CountriesArgs {
    /// ISO country codes, ASes (AS4134) and lists (list:tor), space- or comma-separated.
    #[arg(required = true, value_delimiter = ',')]
    pub countries: Vec<String>,
    #[command(flatten)]
    pub rule: RuleArg,
    #[command(flatten)]
    pub control: ControlArgs,
}

#[derive(Args)]
pub struct RuleArg {
    /// The rule to change (`geoblock status` lists them); needed when the policy has several.
    #[arg(long = "rule", value_name = "NAME")]
    pub name: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum EnforcementArg {
    Deny,
    Allow,
    Monitor,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ExceptOp {
    Add,
    Del,
}

/// A policy change, naming the SSH client this runs under for the daemon's lock-out guard.
pub fn change(control: &ControlArgs, change: Change) -> Result<()> {
    ask(control, Request::Change { change, ssh_client: lockout::ssh_client(), force: control.force })
}

pub fn mode(control: &ControlArgs, mode: EnforcementArg, rule: RuleArg) -> Result<()> {
    let mode = match mode {
        EnforcementArg::Deny => Enforcement::Deny,
        EnforcementArg::Allow => Enforcement::Allow,
        EnforcementArg::Monitor => Enforcement::Monitor,
    };
    change(control, Change::Mode { mode, rule: rule.name })
}

pub fn except(control: &ControlArgs, op: ExceptOp, cidr: String) -> Result<()> {
    match op {
        ExceptOp::Add => change(control, Change::ExceptAdd { cidr }),
        ExceptOp::Del => change(control, Change::ExceptDel { cidr }),
    }
}

/// Sends `request` to the daemon and prints its answer; a refusal is an error.
pub fn ask(control: &ControlArgs, request: Request) -> Result<()> {
    let response = protocol::request(&control.control_socket, &request)?;
    if control.json {
        println!("{}", serde_json::to_string_pretty(&response)?);
    } else if let Some(status) = &response.status {
        print!("{}", status.render());
    } else if response.ok {
        println!("{}", response.message);
    }
    if !response.ok {
        bail!("{}", response.message);
    }
    Ok(())
}
