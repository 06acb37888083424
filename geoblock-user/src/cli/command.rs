//! The command line: every subcommand, and which file serves it.

use anyhow::Result;
use clap::{Parser, Subcommand};
use geoblock::{policy::Change, protocol::Request};

use crate::{
    args::ControlArgs,
    completions::{self, CompletionsArgs, ManpagesArgs},
    config::{self, ConfigCommand},
    control::{self, CountriesArgs, RuleArg},
    data::{self, DataCommand},
    detach::{self, DetachArgs},
    events::{self, EventsArgs},
    explain::{self, ExplainArgs},
    lookup::{self, LookupArgs},
    run::{self, RunArgs},
    stats::{self, StatsArgs},
};

const ATTRIBUTION: &str = "Embedded country data: IP Geolocation by DB-IP (https://db-ip.com), CC BY 4.0.";

#[derive(Parser)]
#[command(name = "geoblock", version, about = "Drop traffic by country in XDP, at line rate.", after_help = ATTRIBUTION)]
pub struct Cli {
    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Load the XDP program, attach it and enforce the policy until SIGINT/SIGTERM
    /// (enforcement stays in place after the daemon exits; SIGHUP reloads the data).
    Run(Box<RunArgs>),
    /// Validate configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Remove what `geoblock run` left in place: the program, its links and the pins.
    Detach(DetachArgs),
    /// Per-country counters (per interface too) of a running `geoblock run`, or of the state it left.
    Stats(StatsArgs),
    /// Why addresses get their verdict: prefix, country, data source, and the policy's reason.
    /// Asks the running daemon, or, given --data or a policy, decides offline.
    Explain(ExplainArgs),
    /// The running daemon: interfaces, policy, data (age, generation, prefixes), last reload, a reload in progress.
    Status(ControlArgs),
    /// Drop these countries from now on (deny-list: added; allow-list: removed), in one rule (--rule).
    Block(CountriesArgs),
    /// Pass these countries from now on (deny-list: removed; allow-list: added), in one rule (--rule).
    Unblock(CountriesArgs),
    /// Switch a rule (--rule) to an allow-list of exactly these countries.
    Allow(CountriesArgs),
    /// deny / allow: enforce, reading a rule's (--rule) country list that way; monitor: drop nothing, count
    /// would-drops.
    Mode {
        #[arg(value_enum)]
        mode: control::EnforcementArg,
        #[command(flatten)]
        rule: RuleArg,
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Add or remove an exception (a CIDR never dropped).
    Except {
        #[arg(value_enum)]
        op: control::ExceptOp,
        cidr: String,
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Re-read the config and data and swap the new table in (as SIGHUP does), reporting the
    /// result; --force loads data the shrink guard refuses.
    Reload(ControlArgs),
    /// Live tail of sampled drop (and would-drop) events from the running daemon, until Ctrl-C.
    Events(EventsArgs),
    /// Country and prefix of addresses ('-' reads them from stdin), from the data `run` would load.
    Lookup(LookupArgs),
    /// Work with GeoIP data sets.
    #[command(subcommand)]
    Data(DataCommand),
    /// Tab completion for a shell, on stdout (the Debian package installs bash, zsh and fish's).
    Completions(CompletionsArgs),
    /// Write the man pages (geoblock.1, one per subcommand) into a directory, e.g.
    /// /usr/local/share/man/man1 (the Debian package ships them).
    Manpages(ManpagesArgs),
}

impl Command {
    pub fn execute(self) -> Result<()> {
        match self {
            Command::Run(args) => run::run(*args),
            Command::Config(command) => config::config(command),
            Command::Detach(args) => detach::detach(&args),
            Command::Stats(args) => stats::stats(args),
            Command::Explain(args) => explain::explain(args),
            Command::Status(control) => control::ask(&control, Request::Status),
            Command::Block(a) => {
                control::change(&a.control, Change::Block { countries: a.countries, rule: a.rule.name })
            }
            Command::Unblock(a) => {
                control::change(&a.control, Change::Unblock { countries: a.countries, rule: a.rule.name })
            }
            Command::Allow(a) => {
                control::change(&a.control, Change::Allow { countries: a.countries, rule: a.rule.name })
            }
            Command::Mode { mode, rule, control } => control::mode(&control, mode, rule),
            Command::Except { op, cidr, control } => control::except(&control, op, cidr),
            Command::Reload(control) => control::ask(&control, Request::Reload { force: control.force }),
            Command::Events(args) => events::events(args),
            Command::Lookup(args) => lookup::lookup(&args),
            Command::Data(command) => data::data(command),
            Command::Completions(args) => completions::completions(&args),
            Command::Manpages(args) => completions::manpages(&args),
        }
    }
}
