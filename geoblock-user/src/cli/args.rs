//! Arguments several subcommands share: the policy, the data, the daemon's
//! control socket, and how countries are written.

use std::path::PathBuf;

use clap::Args;
use geoblock::{
    country,
    daemon::config::{PolicyConfig, DEFAULT_CACHE_DIR, DEFAULT_CONTROL_SOCKET},
    data::{self, parse_network, CountryFields, DataSources, Format},
    policy::{
        rules::parse_scope,
        selectors::{self, Entry, EntryError},
        Direction, RuleAction, ScopeError,
    },
};
use geoblock_common::CountryId;
use ipnetwork::IpNetwork;

/// The policy, as `run` takes it.
#[derive(Args)]
pub struct PolicyArgs {
    /// Deny-list: drop these countries (comma-separated ISO codes), ASes (AS4134) and lists
    /// (list:tor).
    #[arg(long, value_delimiter = ',', value_parser = parse_entry)]
    pub block: Vec<String>,
    /// Allow-list: drop every country but these (and these ASes and lists); with --block, only
    /// one of them may name countries.
    #[arg(long, value_delimiter = ',', value_parser = parse_entry)]
    pub allow: Vec<String>,
    /// CIDRs that always pass, checked before the country (e.g. a management network).
    #[arg(long = "except", value_delimiter = ',', value_parser = parse_network)]
    pub exceptions: Vec<IpNetwork>,
    /// Count what would be dropped, drop nothing.
    #[arg(long)]
    pub monitor: bool,
    /// Answer what is blocked: a TCP reset, or an ICMP administratively prohibited (at most
    /// --reject-rate per second; beyond it, and for what must not be answered, a silent drop).
    #[arg(long)]
    pub reject: bool,
    /// Also drop addresses no country claims (private, unassigned...).
    #[arg(long)]
    pub block_unknown: bool,
    /// What the policy applies to: tcp:22,443, udp:53, icmp, tcp (every TCP port), or ports alone
    /// (8000-8999: TCP, UDP and SCTP); other packets pass [default: every packet].
    #[arg(long, value_name = "SPEC", value_parser = parse_ports)]
    pub ports: Option<String>,
    /// Judge replies to this host's own connections like any packet (by default they pass).
    #[arg(long)]
    pub no_replies: bool,
    /// Outbound: the packets this host sends, judged by their destination, instead of those it
    /// receives, by their source (explain: the addresses as destinations).
    #[arg(long)]
    pub outbound: bool,
}

impl PolicyArgs {
    /// The flags as a config layer: only what was given.
    pub fn overrides(self) -> PolicyConfig {
        let codes = |entries: Vec<String>| (!entries.is_empty()).then_some(entries);
        let exceptions: Vec<String> = self.exceptions.iter().map(|n| n.to_string()).collect();
        PolicyConfig {
            block: codes(self.block),
            allow: codes(self.allow),
            block_unknown: self.block_unknown.then_some(true),
            except: (!exceptions.is_empty()).then_some(exceptions),
            monitor: self.monitor.then_some(true),
            replies: self.no_replies.then_some(false),
            direction: self.outbound.then_some(Direction::Outbound),
            action: self.reject.then_some(RuleAction::Reject),
            ports: self.ports,
        }
    }

    pub fn given(&self) -> bool {
        !self.block.is_empty() || !self.allow.is_empty()
    }
}

#[derive(Args)]
pub struct ControlArgs {
    /// The running daemon's control socket.
    #[arg(long, default_value = DEFAULT_CONTROL_SOCKET)]
    pub control_socket: PathBuf,
    /// Print the daemon's JSON response instead of text.
    #[arg(long)]
    pub json: bool,
    /// Apply a policy change even if it drops this SSH session's client or a management network;
    /// with reload, load data even if it shrinks by more than --max-shrink.
    #[arg(long)]
    pub force: bool,
}

/// How sources are read.
#[derive(Args)]
pub struct ReadArgs {
    /// The format of every source: csv, ip2location, mmdb, maxmind-csv, rir, cidr
    /// [default: detected from each file's name and content].
    #[arg(long, value_parser = parse_format)]
    pub format: Option<Format>,
    /// Where MMDB records keep the country code: dotted paths, tried in order
    /// [default: country.iso_code,registered_country.iso_code,country_code].
    #[arg(long)]
    pub mmdb_field: Option<String>,
    /// Where https:// and http:// sources are downloaded to (and kept for the next start)
    /// [default: /var/cache/geoblock].
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

impl ReadArgs {
    /// `sources` read this way.
    pub fn sources(&self, sources: Vec<String>) -> DataSources {
        DataSources {
            sources,
            asn: vec![],
            options: data::Options {
                format: self.format,
                mmdb_fields: self.mmdb_field.as_deref().map(CountryFields::parse).unwrap_or_default(),
            },
            cache_dir: self.cache_dir.clone().unwrap_or_else(|| DEFAULT_CACHE_DIR.into()),
            lists: vec![],
        }
    }
}

#[derive(Args)]
pub struct DataArgs {
    /// GeoIP data instead of the embedded DB-IP data: range CSV (DB-IP, Tor geoip), IP2Location
    /// DB1, MMDB, MaxMind CSV (zip or folder), RIR delegated stats or CIDR lists, plain or
    /// .gz/.xz/.zip, or an https:// URL of one. Repeat to combine: a later source wins where it
    /// gives a country.
    #[arg(long)]
    pub data: Vec<String>,
    /// AS data, so addresses get their autonomous system: ip-location-db asn CSV, iptoasn TSV,
    /// GeoLite2-ASN CSV (zip or folder) or MMDB, plain or .gz/.xz/.zip, or an https:// URL of
    /// one. Repeat to combine: a later source wins where it gives an AS.
    #[arg(long = "asn-data", value_name = "PATH|URL")]
    pub asn_data: Vec<String>,
    #[command(flatten)]
    pub read: ReadArgs,
}

impl DataArgs {
    /// The country and AS sources given.
    pub fn sources(&self) -> DataSources {
        DataSources { asn: self.asn_data.clone(), ..self.read.sources(self.data.clone()) }
    }
}

/// Named address lists, for rules' `list:NAME`.
#[derive(Args)]
pub struct ListArgs {
    /// A named address list rules use as list:NAME: a text file (one address or CIDR a line, #
    /// and ; comments: Tor exit list, FireHOL .netset, Spamhaus DROP), AWS ip-ranges.json or
    /// Google Cloud cloud.json, plain or .gz/.xz, or an https:// URL of one. Repeat for more.
    #[arg(long = "list", value_name = "NAME=PATH|URL", value_parser = parse_list)]
    pub lists: Vec<(String, String)>,
}

impl ListArgs {
    /// `sources` with these lists.
    pub fn added_to(&self, sources: DataSources) -> DataSources {
        DataSources { lists: self.lists.clone(), ..sources }
    }
}

pub fn parse_list(spec: &str) -> Result<(String, String), String> {
    data::list::parse_spec(spec).map_err(|e| e.to_string())
}

pub fn parse_format(name: &str) -> Result<Format, String> {
    name.parse()
}

/// `--ports`: checked here, kept as written (a config layer).
pub fn parse_ports(spec: &str) -> Result<String, ScopeError> {
    parse_scope(spec).map(|_| spec.to_string())
}

pub fn parse_country(code: &str) -> Result<CountryId, country::UnknownCountry> {
    country::parse(code)
}

/// A country, an AS or a list, as the one spelling the policy writes it.
pub fn parse_entry(text: &str) -> Result<String, EntryError> {
    Ok(match selectors::parse_entry(text)? {
        Entry::Country(id) => country::code(id).to_string(),
        Entry::Selector(selector) => selector.to_string(),
    })
}

/// A row of the stats table: a country code, or `--` (no country).
pub fn parse_row(code: &str) -> Result<String, country::UnknownCountry> {
    match code.trim() {
        "--" => Ok("--".into()),
        code => country::parse(code).map(|id| country::code(id).to_string()),
    }
}
