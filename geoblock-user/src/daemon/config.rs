//! The configuration: a TOML file (default `/etc/geoblock/geoblock.toml`)
//! overlaid with command-line flags, which win setting by setting. Every
//! setting but the `[[rule]]` tables and the flow timeouts has a flag;
//! every default is written down here and in README.
//!
//! ```toml
//! interfaces = ["eth0"]
//! xdp_mode = "auto"                       # auto | native | skb
//! lookup = "trie"                         # trie | lpm
//! data = []                               # files or https:// URLs; empty: the embedded data
//! asn_data = []                           # AS data: files or URLs (ip-location-db, iptoasn, GeoLite2-ASN)
//! format = "csv"                          # csv | ip2location | mmdb | maxmind-csv | rir | cidr; default: detected
//! mmdb_field = "country.iso_code,registered_country.iso_code,country_code"
//! cache_dir = "/var/cache/geoblock"       # where downloads are kept
//! refresh = "6h"                          # download URLs again this often; default: never
//! max_shrink = 10                         # % a new data set may shrink by before it is refused
//! state_dir = "/sys/fs/bpf/geoblock"
//! cgroup = "/sys/fs/cgroup"               # whose sockets outbound rules refuse; default: the cgroup v2 root
//! control_socket = "/run/geoblock/control.sock"
//! detach_on_exit = false
//! management = ["192.0.2.0/24"]           # never dropped: refused unless --force
//! event_rate = 100                        # sampled drop events per second at most; 0: off
//! metrics = "127.0.0.1:9717"              # serve /metrics there; absent: off
//! policy_url = "https://example.net/geoblock/policy.toml"  # the policy tables from there (see policy_url)
//! policy_key = "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3"  # minisign: signed documents only
//! policy_refresh = "5m"                   # ask the policy URL for changes this often
//!
//! [lists]                                 # named address lists, for rules' list:NAME (or --list NAME=...)
//! tor = "https://check.torproject.org/torbulkexitlist"   # a path or URL: text (one address or
//! hosting = "/etc/geoblock/hosting.netset"               #   CIDR a line) or AWS/GCP JSON, .gz too
//!
//! [reject]                                # answers to packets a rule rejects
//! rate = 1000                             # TCP resets and ICMP errors per second at most; 0: none
//!
//! [flows]                                 # connections this host opens: their replies pass
//! size = 262144                           # flows recorded at most (restart to change)
//! tcp_timeout = "2h 4m"                   # replies pass this long after the host's last packet
//! udp_timeout = "5m"
//! icmp_timeout = "60s"
//!
//! [policy]
//! block = ["CN", "RU"]                    # or allow = [...], not both: the rule `default`
//! block_unknown = false
//! except = ["203.0.113.0/24"]             # for every rule
//! monitor = false
//! direction = "inbound"                   # or "outbound": the rule `default` judges destinations
//! action = "drop"                         # drop | reject: a TCP reset or an ICMP error to the sender
//! replies = true                          # replies to this host's own connections pass
//!
//! [[rule]]                                # tried in order, before `default`
//! name = "ssh"
//! direction = "inbound"                   # inbound (default): by source | outbound: by destination
//! protocol = "tcp"                        # any (default) | tcp | udp | sctp | icmp
//! ports = [22, "8000-8999"]               # or "22,8000-8999"; absent: every port
//! allow = ["DE"]                          # or block = [...]
//! block_unknown = false
//! monitor = false
//! action = "drop"                         # drop | reject
//! ```
//!
//! `[policy]`'s list makes the rule `default`, which matches every packet
//! (or what `--ports` says) and comes after the `[[rule]]` tables: the
//! catch-all. Without it, a packet no rule matches passes.
//!
//! With `policy_url`, the `[policy]`, `[[rule]]` and `[lists]` tables come
//! from the published document (see [`super::policy_url`]) and the file
//! gives none of `[policy]` and `[[rule]]`; its `[lists]` add to the
//! document's. Everything else, the management networks above all, stays
//! this host's own.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use geoblock_common::{Backend, CountryId};
use ipnetwork::IpNetwork;
use serde::Deserialize;

use super::policy_url::{PolicyUrl, PolicyUrlError, Published, Take, DEFAULT_POLICY_REFRESH};
use crate::{
    data::{
        self,
        list::{self, ListError},
        parse_network, CidrError, CountryFields, DataSources,
    },
    kernel::{flows::FlowTable, XdpMode},
    policy::{
        rules::{merged, parse_ports, parse_scope},
        selectors::{self, EntryError},
        Direction, Mode, Policy, PolicyError, PortRange, Protocol, Rule, RuleAction, ScopeError, Selector,
        DEFAULT_RULE,
    },
};

pub const DEFAULT_CONFIG: &str = "/etc/geoblock/geoblock.toml";
/// Where pins go: what keeps enforcement alive between daemons.
pub const DEFAULT_STATE_DIR: &str = "/sys/fs/bpf/geoblock";
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/geoblock/control.sock";
/// Where downloads of `https://` sources are kept (and found by the next start).
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/geoblock";
/// The share of covered addresses a new data set may lose: 10 %.
pub const DEFAULT_MAX_SHRINK: f64 = 0.10;
/// Sampled drop events per second, over all CPUs.
pub const DEFAULT_EVENT_RATE: u32 = 100;
/// Answers to rejected packets per second, over all CPUs.
pub const DEFAULT_REJECT_RATE: u32 = 1000;
/// Where `--metrics` listens when given no address: loopback only.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9717";

/// What `geoblock run` does: the config file and the flags, resolved.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpMode,
    pub policy: Policy,
    pub state_dir: PathBuf,
    /// The cgroup whose processes' connects and sends the outbound rules
    /// refuse (`None`: the root of the cgroup v2 hierarchy, found at start).
    pub cgroup: Option<PathBuf>,
    pub backend: Backend,
    pub data: DataSources,
    /// Download URL sources again this often.
    pub refresh: Option<Duration>,
    /// The share of prefixes or addresses a new data set may lose (the shrink guard).
    pub max_shrink: f64,
    /// Remove program, links and pins on SIGINT/SIGTERM instead of leaving
    /// enforcement in place.
    pub detach_on_exit: bool,
    pub control_socket: PathBuf,
    /// Networks the lock-out guard keeps reachable (with the SSH client).
    pub management: Vec<IpNetwork>,
    /// Skip the lock-out guard.
    pub force: bool,
    /// Sampled drop events per second at most, over all CPUs (0: off).
    pub event_rate: u32,
    /// Answers to rejected packets per second at most, over all CPUs (0: none).
    pub reject_rate: u32,
    /// Where `/metrics` is served; `None`: nowhere.
    pub metrics: Option<SocketAddr>,
    /// The flow table of the connections this host opens.
    pub flows: FlowTable,
    /// Where the policy is published, if it is.
    pub policy_url: Option<PolicyUrl>,
    /// The published document the policy is from.
    pub published: Option<Published>,
}

impl RunOptions {
    /// The serial of the published document the policy is from.
    pub fn policy_serial(&self) -> Option<u64> {
        self.published.as_ref().map(|published| published.document.serial)
    }
}

/// Settings as written (file) or given (flags): all optional, so that one
/// can be laid over the other.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub interfaces: Option<Vec<String>>,
    pub xdp_mode: Option<XdpMode>,
    pub lookup: Option<Lookup>,
    pub data: Option<Vec<String>>,
    pub asn_data: Option<Vec<String>>,
    /// `[lists]`: `NAME = "PATH or URL"`, in the file's order.
    #[serde(default, deserialize_with = "ordered_lists")]
    pub lists: Option<Vec<(String, String)>>,
    pub format: Option<String>,
    pub mmdb_field: Option<String>,
    pub cache_dir: Option<PathBuf>,
    /// A duration: `90s`, `15m`, `6h`, `1d`.
    pub refresh: Option<String>,
    /// Percent of covered addresses (per family, and per country the policy names).
    pub max_shrink: Option<f64>,
    pub state_dir: Option<PathBuf>,
    pub cgroup: Option<PathBuf>,
    pub control_socket: Option<PathBuf>,
    pub detach_on_exit: Option<bool>,
    /// Networks a policy may not drop (the lock-out guard).
    pub management: Option<Vec<String>>,
    /// Sampled drop events per second, over all CPUs (0: off).
    pub event_rate: Option<u32>,
    /// Where to serve `/metrics` (`IP:PORT`, or a port on loopback).
    pub metrics: Option<String>,
    /// An `https://` URL the policy tables are published at.
    pub policy_url: Option<String>,
    /// The minisign public key the published policy must be signed with.
    pub policy_key: Option<String>,
    /// A duration: how often the policy URL is asked for changes.
    pub policy_refresh: Option<String>,
    /// The published document laid in (not a setting).
    #[serde(skip)]
    pub published: Option<Published>,
    /// Flag only (`--force`): a file cannot switch the guard off.
    #[serde(skip)]
    pub force: Option<bool>,
    #[serde(default)]
    pub policy: PolicyConfig,
    /// `[[rule]]` tables, in order (file only).
    #[serde(default)]
    pub rule: Vec<RuleConfig>,
    /// The flow table of the connections this host opens (config file only).
    #[serde(default)]
    pub flows: FlowsConfig,
    #[serde(default)]
    pub reject: RejectConfig,
}

/// `[reject]`: how many answers rejected packets draw.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectConfig {
    /// TCP resets and ICMP errors per second, over all CPUs (0: none).
    pub rate: Option<u32>,
}

/// `[flows]`: how many flows are recorded, and how long each lasts after
/// the host's last packet on it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowsConfig {
    pub size: Option<u32>,
    pub tcp_timeout: Option<String>,
    pub udp_timeout: Option<String>,
    pub icmp_timeout: Option<String>,
}

/// `[policy]`: the rule `default` (its list, `block_unknown`, `monitor`),
/// and what holds for every rule (`except`, `replies`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub block: Option<Vec<String>>,
    pub allow: Option<Vec<String>>,
    pub block_unknown: Option<bool>,
    pub except: Option<Vec<String>>,
    pub monitor: Option<bool>,
    /// Replies to this host's own connections pass (default: on).
    pub replies: Option<bool>,
    /// Which packets the rule `default` judges: inbound ones by their
    /// source (default), or outbound ones by their destination.
    pub direction: Option<Direction>,
    /// What the rule `default` does to what it blocks (default: drop).
    pub action: Option<RuleAction>,
    /// Flag only (`--ports tcp:22`): what the rule `default` matches.
    #[serde(skip)]
    pub ports: Option<String>,
}

/// A `[[rule]]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    #[serde(default)]
    pub direction: Direction,
    #[serde(default)]
    pub protocol: Protocol,
    pub ports: Option<PortsConfig>,
    pub block: Option<Vec<String>>,
    pub allow: Option<Vec<String>>,
    pub block_unknown: Option<bool>,
    pub monitor: Option<bool>,
    #[serde(default)]
    pub action: RuleAction,
}

/// `ports = [22, "8000-8999"]`, or `ports = "22,8000-8999"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum PortsConfig {
    Text(String),
    List(Vec<PortItem>),
}

#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum PortItem {
    Port(i64),
    Range(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Lookup {
    /// Multibit trie in array maps (fast).
    Trie,
    /// The kernel's LPM trie (reference).
    Lpm,
}

/// The daemon's settings, read again on every reload: the config file with
/// the command line's flags laid over it.
#[derive(Clone, Debug)]
pub struct ConfigLayers {
    pub path: PathBuf,
    /// Named explicitly (--config): then it must exist.
    pub required: bool,
    pub flags: Config,
}

impl ConfigLayers {
    /// The settings, with the last good download of the published policy.
    pub fn read(&self) -> Result<RunOptions, ConfigError> {
        self.local()?.published(Take::InForce)?.resolve()
    }

    /// The file with the flags laid over it: all but the published policy.
    pub fn local(&self) -> Result<Config, ConfigError> {
        Ok(Config::load(&self.path, self.required)?.overlaid(&self.flags))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("lists: {0}")]
    List(#[from] ListError),
    #[error("lists: '{0}' is given twice")]
    ListTwice(String),
    #[error("{0}: a rule names it, but {missing}", missing = missing_data(.0))]
    NoSelectorData(Selector),
    #[error("no interface to attach to (--iface, or interfaces = [...] in the config)")]
    NoInterfaces,
    #[error(
        "countries are given in both a block list and an allow list; keep them in one (selectors may be in either)"
    )]
    BlockAndAllow,
    #[error("{rule}: {error}")]
    Rule { rule: String, error: Box<ConfigError> },
    #[error("no list: give block = [...] or allow = [...]")]
    NoList,
    #[error("ports: {0}")]
    Ports(#[from] ScopeError),
    #[error(
        "{0} is given without a block or allow list (policy.block, policy.allow, --block, --allow): it belongs to \
         the rule such a list makes; with [[rule]] tables alone, set it in each rule"
    )]
    NoDefaultRule(&'static str),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Entry(#[from] EntryError),
    #[error("refresh: '{0}' is not a duration (e.g. 30m, 6h, 1d)")]
    Refresh(String),
    #[error("max_shrink: {0} is not a percentage from 0 to 100")]
    MaxShrink(f64),
    #[error("format: {0}")]
    Format(String),
    #[error("{setting}: {error}")]
    Cidr { setting: &'static str, error: CidrError },
    #[error("metrics: {0}")]
    Metrics(String),
    #[error("flows.{setting}: {message}")]
    Flows { setting: &'static str, message: String },
    #[error("policy_url: {0}")]
    PolicyUrl(#[from] PolicyUrlError),
    #[error("policy_refresh: '{0}' is not a duration (e.g. 1m, 5m, 1h)")]
    PolicyRefresh(String),
    #[error(
        "the policy comes from policy_url: give no [policy] or [[rule]] tables, nor policy flags \
         (--block, --allow, --monitor...), in this host's config"
    )]
    PolicyTwice,
    #[error("policy_url: the published policy was not read")]
    NotPublished,
    #[error(
        "lists.{0}: a published policy names lists by URL only (a path would make every host read a file of \
         the publisher's choosing); put host files in this host's [lists]"
    )]
    PublishedListPath(String),
}

impl Config {
    /// Reads `path`. A missing file is an error only when `required` (it
    /// was named explicitly): the default file is optional.
    pub fn load(path: &Path, required: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(Config::default()),
            Err(source) => return Err(ConfigError::Read { path: path.into(), source }),
        };
        toml::from_str(&text).map_err(|e| ConfigError::Syntax { path: path.into(), message: e.to_string() })
    }

    /// `self` with every setting `flags` gives replaced by the flag's.
    pub fn overlaid(self, flags: &Config) -> Config {
        let p = &flags.policy;
        // A block or allow flag replaces the file's list, of either kind.
        let list_given = p.block.is_some() || p.allow.is_some();
        Config {
            interfaces: flags.interfaces.clone().or(self.interfaces),
            xdp_mode: flags.xdp_mode.or(self.xdp_mode),
            lookup: flags.lookup.or(self.lookup),
            data: flags.data.clone().or(self.data),
            asn_data: flags.asn_data.clone().or(self.asn_data),
            lists: flags.lists.clone().or(self.lists),
            format: flags.format.clone().or(self.format),
            mmdb_field: flags.mmdb_field.clone().or(self.mmdb_field),
            cache_dir: flags.cache_dir.clone().or(self.cache_dir),
            refresh: flags.refresh.clone().or(self.refresh),
            max_shrink: flags.max_shrink.or(self.max_shrink),
            state_dir: flags.state_dir.clone().or(self.state_dir),
            cgroup: flags.cgroup.clone().or(self.cgroup),
            control_socket: flags.control_socket.clone().or(self.control_socket),
            detach_on_exit: flags.detach_on_exit.or(self.detach_on_exit),
            management: flags.management.clone().or(self.management),
            event_rate: flags.event_rate.or(self.event_rate),
            metrics: flags.metrics.clone().or(self.metrics),
            policy_url: flags.policy_url.clone().or(self.policy_url),
            policy_key: flags.policy_key.clone().or(self.policy_key),
            policy_refresh: flags.policy_refresh.clone().or(self.policy_refresh),
            published: self.published,
            force: flags.force,
            flows: FlowsConfig { size: flags.flows.size.or(self.flows.size), ..self.flows },
            reject: RejectConfig { rate: flags.reject.rate.or(self.reject.rate) },
            policy: PolicyConfig {
                block: if list_given { p.block.clone() } else { self.policy.block },
                allow: if list_given { p.allow.clone() } else { self.policy.allow },
                block_unknown: p.block_unknown.or(self.policy.block_unknown),
                except: p.except.clone().or(self.policy.except),
                monitor: p.monitor.or(self.policy.monitor),
                replies: p.replies.or(self.policy.replies),
                direction: p.direction.or(self.policy.direction),
                action: p.action.or(self.policy.action),
                ports: p.ports.clone().or(self.policy.ports),
            },
            rule: self.rule,
        }
    }

    /// Where the policy is published, from `policy_url`, `policy_key`,
    /// `policy_refresh` and `cache_dir`; `None` without `policy_url`.
    pub fn policy_url(&self) -> Result<Option<PolicyUrl>, ConfigError> {
        let Some(url) = &self.policy_url else {
            return Ok(None);
        };
        let refresh = match &self.policy_refresh {
            None => DEFAULT_POLICY_REFRESH,
            Some(text) => humantime::parse_duration(text)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| ConfigError::PolicyRefresh(text.clone()))?,
        };
        let cache_dir = self.cache_dir.clone().unwrap_or_else(|| DEFAULT_CACHE_DIR.into());
        Ok(Some(PolicyUrl::new(url.clone(), self.policy_key.clone(), refresh, cache_dir)?))
    }

    /// With `policy_url`: the published document `take` names laid in.
    pub fn published(self, take: Take) -> Result<Config, ConfigError> {
        match self.policy_url()? {
            Some(url) => self.with_published(url.take(take)?),
            None => Ok(self),
        }
    }

    /// `published`'s policy tables laid into this host's settings.
    pub fn with_published(mut self, published: Published) -> Result<Config, ConfigError> {
        if self.policy != PolicyConfig::default() || !self.rule.is_empty() {
            return Err(ConfigError::PolicyTwice);
        }
        let document = &published.document;
        if let Some((name, _)) = document.lists.iter().flatten().find(|(_, source)| !data::fetch::is_url(source)) {
            return Err(ConfigError::PublishedListPath(name.clone()));
        }
        self.lists = match (self.lists, document.lists.clone()) {
            (Some(mut own), Some(listed)) => {
                own.extend(listed);
                Some(own)
            }
            (own, listed) => own.or(listed),
        };
        (self.policy, self.rule) = (document.policy.clone(), document.rule.clone());
        self.published = Some(published);
        Ok(self)
    }

    /// Validates and fills in the defaults. Touches nothing.
    pub fn resolve(self) -> Result<RunOptions, ConfigError> {
        let policy_url = self.policy_url()?;
        if policy_url.is_some() && self.published.is_none() {
            return Err(ConfigError::NotPublished);
        }
        let interfaces = self.interfaces.filter(|i| !i.is_empty()).ok_or(ConfigError::NoInterfaces)?;
        let opts = RunOptions {
            interfaces,
            xdp_mode: self.xdp_mode.unwrap_or(XdpMode::Auto),
            policy: self.policy.resolve(self.rule)?,
            state_dir: self.state_dir.unwrap_or_else(|| DEFAULT_STATE_DIR.into()),
            cgroup: self.cgroup,
            backend: match self.lookup.unwrap_or(Lookup::Trie) {
                Lookup::Trie => Backend::Trie,
                Lookup::Lpm => Backend::Lpm,
            },
            data: DataSources {
                sources: self.data.unwrap_or_default(),
                asn: self.asn_data.unwrap_or_default(),
                options: data::Options {
                    format: self.format.as_deref().map(str::parse).transpose().map_err(ConfigError::Format)?,
                    mmdb_fields: self.mmdb_field.as_deref().map(CountryFields::parse).unwrap_or_default(),
                },
                cache_dir: self.cache_dir.unwrap_or_else(|| DEFAULT_CACHE_DIR.into()),
                lists: checked_lists(self.lists.unwrap_or_default())?,
            },
            refresh: self.refresh.as_deref().map(refresh_interval).transpose()?,
            max_shrink: match self.max_shrink.unwrap_or(DEFAULT_MAX_SHRINK * 100.0) {
                percent if (0.0..=100.0).contains(&percent) => percent / 100.0,
                percent => return Err(ConfigError::MaxShrink(percent)),
            },
            detach_on_exit: self.detach_on_exit.unwrap_or(false),
            control_socket: self.control_socket.unwrap_or_else(|| DEFAULT_CONTROL_SOCKET.into()),
            management: cidrs("management", self.management)?,
            event_rate: self.event_rate.unwrap_or(DEFAULT_EVENT_RATE),
            reject_rate: self.reject.rate.unwrap_or(DEFAULT_REJECT_RATE),
            force: self.force.unwrap_or(false),
            metrics: self.metrics.as_deref().map(parse_metrics_addr).transpose().map_err(ConfigError::Metrics)?,
            flows: self.flows.resolve()?,
            policy_url,
            published: self.published,
        };
        selectors_have_data(&opts.policy, &opts.data)?;
        Ok(opts)
    }
}

/// What a selector without data lacks.
fn missing_data(selector: &Selector) -> &'static str {
    match selector {
        Selector::List(_) => "no list of that name is given ([lists] NAME = \"PATH or URL\", or --list NAME=...)",
        Selector::Asn(_) => "no AS data is given (asn_data = [...], or --asn-data)",
    }
}

/// Every `list:NAME` a rule names is a configured list, and AS data is
/// given when a rule names an AS: a typo or a forgotten flag would
/// otherwise block (or allow) nothing.
fn selectors_have_data(policy: &Policy, data: &DataSources) -> Result<(), ConfigError> {
    for selector in policy.selectors() {
        let given = match &selector {
            Selector::List(name) => data.lists.iter().any(|(n, _)| n == name),
            Selector::Asn(_) => !data.asn.is_empty(),
        };
        if !given {
            return Err(ConfigError::NoSelectorData(selector));
        }
    }
    Ok(())
}

impl FlowsConfig {
    fn resolve(self) -> Result<FlowTable, ConfigError> {
        let default = FlowTable::default();
        let timeout = |setting: &'static str, text: Option<String>, default: Duration| match text {
            None => Ok(default),
            Some(text) => humantime::parse_duration(&text).ok().filter(|d| !d.is_zero()).ok_or(ConfigError::Flows {
                setting,
                message: format!("'{text}' is not a duration (e.g. 30s, 5m, 2h)"),
            }),
        };
        let size = match self.size.unwrap_or(default.size) {
            0 => return Err(ConfigError::Flows { setting: "size", message: "must be at least 1".into() }),
            size => size,
        };
        Ok(FlowTable {
            size,
            tcp_timeout: timeout("tcp_timeout", self.tcp_timeout, default.tcp_timeout)?,
            udp_timeout: timeout("udp_timeout", self.udp_timeout, default.udp_timeout)?,
            icmp_timeout: timeout("icmp_timeout", self.icmp_timeout, default.icmp_timeout)?,
        })
    }
}

impl PolicyConfig {
    /// The policy: the `[[rule]]` tables in order, then the rule `default`
    /// this list makes (if it gives one).
    pub fn resolve(self, tables: Vec<RuleConfig>) -> Result<Policy, ConfigError> {
        let mut rules = tables.into_iter().map(RuleConfig::resolve).collect::<Result<Vec<_>, _>>()?;
        if let Some(rule) = self.default_rule(!rules.is_empty())? {
            rules.push(rule);
        }
        let exceptions = cidrs("policy.except", self.except)?;
        Ok(Policy::new(rules, exceptions, self.replies.unwrap_or(true))?)
    }

    /// The rule `default`, from the list here; none when `[[rule]]` tables
    /// (`tables`) give the policy and this gives no list.
    fn default_rule(&self, tables: bool) -> Result<Option<Rule>, ConfigError> {
        let list = list(self.block.as_ref(), self.allow.as_ref());
        if tables && matches!(list, Err(ConfigError::NoList)) {
            let stray = [
                ("policy.block_unknown (--block-unknown)", self.block_unknown.is_some()),
                ("policy.monitor (--monitor)", self.monitor.is_some()),
                ("policy.direction (--outbound)", self.direction.is_some()),
                ("policy.action (--reject)", self.action.is_some()),
                ("--ports", self.ports.is_some()),
            ];
            return match stray.into_iter().find(|(_, given)| *given) {
                Some((setting, _)) => Err(ConfigError::NoDefaultRule(setting)),
                None => Ok(None),
            };
        }
        let listed = list.map_err(|e| match e {
            ConfigError::NoList => PolicyError::NoRules.into(),
            e => e,
        })?;
        let (protocol, ports) = self.ports.as_deref().map(parse_scope).transpose()?.unwrap_or_default();
        Ok(Some(Rule {
            direction: self.direction.unwrap_or_default(),
            protocol,
            ports,
            monitor: self.monitor.unwrap_or(false),
            block_unknown: self.block_unknown.unwrap_or(false),
            action: self.action.unwrap_or_default(),
            ..listed.rule(DEFAULT_RULE)
        }))
    }
}

impl RuleConfig {
    /// The rule; errors name it.
    fn resolve(self) -> Result<Rule, ConfigError> {
        let in_rule =
            |error: ConfigError| ConfigError::Rule { rule: format!("rule '{}'", self.name), error: error.into() };
        let listed = list(self.block.as_ref(), self.allow.as_ref()).map_err(in_rule)?;
        let ports = match &self.ports {
            None => vec![],
            Some(ports) => ports.ranges().map_err(|e| in_rule(e.into()))?,
        };
        Ok(Rule {
            direction: self.direction,
            protocol: self.protocol,
            action: self.action,
            ports,
            monitor: self.monitor.unwrap_or(false),
            block_unknown: self.block_unknown.unwrap_or(false),
            ..listed.rule(&self.name)
        })
    }
}

impl PortsConfig {
    fn ranges(&self) -> Result<Vec<PortRange>, ScopeError> {
        match self {
            PortsConfig::Text(text) => parse_ports(text),
            PortsConfig::List(items) => {
                let range = |item: &PortItem| match item {
                    PortItem::Port(port) => port.to_string().parse(),
                    PortItem::Range(text) => text.parse(),
                };
                Ok(merged(items.iter().map(range).collect::<Result<_, _>>()?))
            }
        }
    }
}

/// What a rule's block and allow lists say.
struct Listed {
    mode: Mode,
    countries: BTreeSet<CountryId>,
    allow: BTreeSet<Selector>,
    block: BTreeSet<Selector>,
}

impl Listed {
    /// A rule of these lists, for every protocol and port.
    fn rule(self, name: &str) -> Rule {
        Rule { allow: self.allow, block: self.block, ..Rule::new(name, self.mode, self.countries) }
    }
}

/// A rule's block and allow lists: countries and selectors (`AS4134`,
/// `list:tor`). The list holding countries gives the rule's mode (a
/// deny-list or an allow-list); selectors may be in either, so that an
/// allow-list can still block `list:tor` and a deny-list allow a partner's
/// AS. Lists of selectors alone make a deny-list, unless only `allow` is
/// given: that allows only them.
fn list(block: Option<&Vec<String>>, allow: Option<&Vec<String>>) -> Result<Listed, ConfigError> {
    let none = Vec::new();
    if block.is_none() && allow.is_none() {
        return Err(ConfigError::NoList);
    }
    let (blocked, block_selectors) = selectors::parse_entries(block.unwrap_or(&none))?;
    let (allowed, allow_selectors) = selectors::parse_entries(allow.unwrap_or(&none))?;
    let (mode, countries) = match (blocked.is_empty(), allowed.is_empty()) {
        (false, false) => return Err(ConfigError::BlockAndAllow),
        (true, false) => (Mode::Allow, allowed),
        (false, true) => (Mode::Deny, blocked),
        (true, true) if block.is_none() => (Mode::Allow, allowed),
        (true, true) => (Mode::Deny, blocked),
    };
    Ok(Listed { mode, countries, allow: allow_selectors, block: block_selectors })
}

/// `--metrics ADDR`: `IP:PORT`, or a port alone (on loopback).
pub fn parse_metrics_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    text.parse().map_err(|_| format!("'{text}' is not IP:PORT or a port (e.g. {DEFAULT_METRICS_ADDR})"))
}

fn refresh_interval(text: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(text).ok().filter(|d| !d.is_zero()).ok_or_else(|| ConfigError::Refresh(text.into()))
}

/// `[lists]` as written: a TOML table, its entries kept in order.
pub(super) fn ordered_lists<'de, D: serde::Deserializer<'de>>(
    de: D,
) -> Result<Option<Vec<(String, String)>>, D::Error> {
    struct Entries;
    impl<'de> serde::de::Visitor<'de> for Entries {
        type Value = Vec<(String, String)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a table of NAME = \"PATH or URL\"")
        }
        fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
            let mut entries = Vec::new();
            while let Some(entry) = map.next_entry()? {
                entries.push(entry);
            }
            Ok(entries)
        }
    }
    de.deserialize_map(Entries).map(Some)
}

/// The lists with their names checked, each name once.
fn checked_lists(lists: Vec<(String, String)>) -> Result<Vec<(String, String)>, ConfigError> {
    let mut names = BTreeSet::new();
    for (name, _) in &lists {
        list::check_name(name)?;
        if !names.insert(name) {
            return Err(ConfigError::ListTwice(name.clone()));
        }
    }
    Ok(lists)
}

/// The networks of `setting`, each checked as data CIDRs are.
fn cidrs(setting: &'static str, texts: Option<Vec<String>>) -> Result<Vec<IpNetwork>, ConfigError> {
    let parse = |text: &String| parse_network(text).map_err(|error| ConfigError::Cidr { setting, error });
    texts.unwrap_or_default().iter().map(parse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults_fill_what_the_file_leaves_out() {
        let opts = parse("interfaces = [\"eth0\"]\n[policy]\nblock = [\"cn\"]\n").resolve().unwrap();
        assert_eq!(opts.interfaces, ["eth0"]);
        assert_eq!(opts.xdp_mode, XdpMode::Auto);
        assert_eq!(opts.backend, Backend::Trie);
        assert_eq!(opts.state_dir, Path::new(DEFAULT_STATE_DIR));
        assert_eq!(opts.control_socket, Path::new(DEFAULT_CONTROL_SOCKET));
        let rule = &opts.policy.rules[0];
        assert_eq!((opts.policy.rules.len(), rule.name.as_str(), rule.mode), (1, DEFAULT_RULE, Mode::Deny));
        assert!(rule.matches_everything() && opts.policy.replies);
        assert_eq!(rule.countries.len(), 1);
        assert!(opts.data.sources.is_empty() && !opts.detach_on_exit && !rule.monitor);
        assert_eq!((opts.refresh, opts.max_shrink), (None, 0.10));
        assert_eq!(opts.event_rate, DEFAULT_EVENT_RATE);
        assert_eq!(opts.metrics, None, "no metrics unless asked for");
    }

    #[test]
    fn reject_is_a_rule_action_and_its_rate_a_setting() {
        let file = "interfaces = [\"e\"]\n[reject]\nrate = 50\n[policy]\nblock = [\"CN\"]\naction = \"reject\"\n\
                    [[rule]]\nname = \"ssh\"\nports = [22]\nallow = [\"DE\"]\n";
        let opts = parse(file).resolve().unwrap();
        let actions: Vec<RuleAction> = opts.policy.rules.iter().map(|r| r.action).collect();
        assert_eq!(actions, [RuleAction::Drop, RuleAction::Reject], "ssh drops, default rejects");
        assert_eq!(opts.reject_rate, 50);
        let flags = Config { reject: RejectConfig { rate: Some(0) }, ..Config::default() };
        assert_eq!(parse(file).overlaid(&flags).resolve().unwrap().reject_rate, 0, "the flag wins");
        let plain = parse("interfaces = [\"e\"]\n[policy]\nblock = [\"CN\"]\n").resolve().unwrap();
        assert_eq!((plain.reject_rate, plain.policy.rules[0].action), (DEFAULT_REJECT_RATE, RuleAction::Drop));
        let stray =
            parse("interfaces = [\"e\"]\n[policy]\naction = \"reject\"\n[[rule]]\nname = \"a\"\nblock = [\"CN\"]\n");
        assert!(stray.resolve().unwrap_err().to_string().contains("--reject"));
    }

    #[test]
    fn metrics_listen_where_told() {
        let opts = parse("interfaces = [\"e\"]\nmetrics = \"9100\"\n[policy]\nblock = [\"CN\"]\n").resolve().unwrap();
        assert_eq!(opts.metrics, Some("127.0.0.1:9100".parse().unwrap()));
        let bad = parse("interfaces = [\"e\"]\nmetrics = \"anywhere\"\n[policy]\nblock = [\"CN\"]\n").resolve();
        assert!(bad.unwrap_err().to_string().contains("metrics"));
    }

    #[test]
    fn asn_data_comes_from_the_file_or_the_flags() {
        let policy = "[policy]\nblock = [\"CN\"]\n";
        let file = parse(&format!("interfaces = [\"e\"]\nasn_data = [\"asn-ipv4.csv\", \"asn-ipv6.csv\"]\n{policy}"));
        assert_eq!(file.clone().resolve().unwrap().data.asn, ["asn-ipv4.csv", "asn-ipv6.csv"]);
        let flags = Config { asn_data: Some(vec!["https://example.net/ip2asn-v4.tsv.gz".into()]), ..Config::default() };
        assert_eq!(file.overlaid(&flags).resolve().unwrap().data.asn, ["https://example.net/ip2asn-v4.tsv.gz"]);
        let none = parse(&format!("interfaces = [\"e\"]\n{policy}")).resolve().unwrap();
        assert!(none.data.asn.is_empty(), "no AS data unless given");
    }

    #[test]
    fn flags_win_setting_by_setting() {
        let file = parse(
            "interfaces = [\"eth0\"]\nxdp_mode = \"skb\"\n[policy]\nblock = [\"CN\"]\nexcept = [\"10.0.0.0/8\"]\n",
        );
        let flags = Config {
            xdp_mode: Some(XdpMode::Native),
            policy: PolicyConfig { allow: Some(vec!["DE".into()]), ..PolicyConfig::default() },
            ..Config::default()
        };
        let opts = file.overlaid(&flags).resolve().unwrap();
        assert_eq!(opts.interfaces, ["eth0"]);
        assert_eq!(opts.xdp_mode, XdpMode::Native);
        assert_eq!(opts.policy.rules[0].mode, Mode::Allow, "an --allow flag replaces the file's block list");
        assert_eq!(opts.policy.exceptions.len(), 1);
    }

    #[test]
    fn invalid_settings_are_refused() {
        let bad = |text: &str| parse(text).resolve().unwrap_err().to_string();
        assert!(bad("[policy]\nblock = [\"CN\"]\n").contains("no interface"));
        assert!(bad("interfaces = [\"eth0\"]\n").contains("no rule"));
        assert!(
            bad("interfaces = [\"e\"]\n[policy]\nblock = [\"CN\"]\nallow = [\"DE\"]\n").contains("keep them in one")
        );
        assert!(bad("interfaces = [\"e\"]\n[policy]\nblock = [\"XX\"]\n").contains("'XX'"));
        assert!(bad("interfaces = [\"e\"]\n[policy]\nblock = [\"CN\"]\nexcept = [\"10/99\"]\n").contains("10/99"));
        assert_eq!(
            bad("interfaces = [\"e\"]\n[policy]\nblock = [\"CN\"]\nexcept = [\"10.1.0.7/16\"]\n"),
            "policy.except: '10.1.0.7/16' has host bits set (the network is 10.1.0.0)"
        );
        assert_eq!(
            bad("interfaces = [\"e\"]\nmanagement = [\"192.0.2.9/24\"]\n[policy]\nblock = [\"CN\"]\n"),
            "management: '192.0.2.9/24' has host bits set (the network is 192.0.2.0)"
        );
        assert!(bad("interfaces = [\"e\"]\nrefresh = \"soon\"\n[policy]\nblock = [\"CN\"]\n").contains("'soon'"));
        assert!(bad("interfaces = [\"e\"]\nrefresh = \"0s\"\n[policy]\nblock = [\"CN\"]\n").contains("'0s'"));
        let opts = parse("interfaces = [\"e\"]\nrefresh = \"6h\"\nmax_shrink = 25\n[policy]\nblock = [\"CN\"]\n");
        let opts = opts.resolve().unwrap();
        assert_eq!((opts.refresh, opts.max_shrink), (Some(Duration::from_secs(6 * 3600)), 0.25));
        assert!(bad("interfaces = [\"e\"]\nmax_shrink = 150.0\n[policy]\nblock = [\"CN\"]\n").contains("150"));
        assert!(toml::from_str::<Config>("interface = [\"eth0\"]\n").is_err(), "unknown keys are errors");
        assert!(toml::from_str::<Config>("xdp_mode = \"fast\"\n").is_err());
    }

    const RULES: &str = r#"
interfaces = ["eth0"]

[policy]
except = ["192.0.2.0/24"]
replies = false

[[rule]]
name = "ssh"
protocol = "tcp"
ports = [22]
allow = ["DE"]

[[rule]]
name = "api"
ports = "443,8000-8999"
block = ["CN", "RU"]
block_unknown = true
monitor = true

[[rule]]
name = "ping"
protocol = "icmp"
block = ["KP"]
"#;

    #[test]
    fn rule_tables_are_tried_in_order() {
        let policy = parse(RULES).resolve().unwrap().policy;
        let names: Vec<&str> = policy.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["ssh", "api", "ping"]);
        let [ssh, api, ping] = &policy.rules[..] else { panic!() };
        assert_eq!((ssh.protocol, ssh.scope(), ssh.mode), (Protocol::Tcp, "tcp port 22".to_string(), Mode::Allow));
        assert_eq!(api.scope(), "tcp, udp and sctp ports 443,8000-8999");
        assert!(api.block_unknown && api.monitor && !ssh.monitor);
        assert_eq!((ping.protocol, ping.ports.len()), (Protocol::Icmp, 0));
        assert_eq!((policy.exceptions.len(), policy.replies), (1, false));
        assert_eq!(
            (policy.rule_for(Direction::Inbound, 6, Some(22)), policy.rule_for(Direction::Inbound, 17, Some(8080))),
            (Some(0), Some(1))
        );
        assert_eq!(policy.rule_for(Direction::Inbound, 6, Some(80)), None, "no catch-all: other packets pass");
    }

    #[test]
    fn the_policy_list_is_the_catch_all_after_the_rules() {
        let text = RULES.replace("replies = false", "block = [\"CN\"]\nmonitor = true");
        let policy = parse(&text).resolve().unwrap().policy;
        let last = policy.rules.last().unwrap();
        assert_eq!((policy.rules.len(), last.name.as_str()), (4, DEFAULT_RULE));
        assert!(last.matches_everything() && last.monitor && policy.replies);
        assert_eq!(policy.rule_for(Direction::Inbound, 6, Some(80)), Some(3));
        let flags = Config {
            policy: PolicyConfig { ports: Some("udp:53".into()), ..PolicyConfig::default() },
            ..Config::default()
        };
        let scoped = parse(&text).overlaid(&flags).resolve().unwrap().policy;
        assert_eq!(scoped.rules[3].scope(), "udp port 53", "--ports scopes the rule the list makes");
    }

    #[test]
    fn rule_tables_are_checked_and_errors_name_the_rule() {
        let bad = |rules: &str| parse(&format!("interfaces = [\"e\"]\n{rules}")).resolve().unwrap_err().to_string();
        assert_eq!(
            bad("[[rule]]\nname = \"ssh\"\nallow = [\"DE\"]\nblock = [\"CN\"]\n"),
            "rule 'ssh': countries are given in both a block list and an allow list; keep them in one (selectors may be \
         in either)"
        );
        assert_eq!(bad("[[rule]]\nname = \"ssh\"\n"), "rule 'ssh': no list: give block = [...] or allow = [...]");
        assert_eq!(
            bad("[[rule]]\nname = \"ssh\"\nblock = [\"XX\"]\n"),
            "rule 'ssh': unknown country code 'XX' (expected an ISO 3166-1 alpha-2 code such as US, DE, CN)"
        );
        assert_eq!(
            bad("[[rule]]\nname = \"ssh\"\nports = [70000]\nblock = [\"CN\"]\n"),
            "rule 'ssh': ports: '70000' is not a port or a range of ports (0 to 65535, e.g. 22 or 8000-8999)"
        );
        assert_eq!(
            bad("[[rule]]\nname = \"ssh\"\nports = [\"30-20\"]\nblock = [\"CN\"]\n"),
            "rule 'ssh': ports: '30-20': the range ends before it starts"
        );
        assert_eq!(
            bad("[[rule]]\nname = \"ping\"\nprotocol = \"icmp\"\nports = \"8\"\nblock = [\"CN\"]\n"),
            "rule 'ping': icmp has no ports"
        );
        let twice = "[[rule]]\nname = \"a\"\nblock = [\"CN\"]\n".repeat(2);
        assert_eq!(bad(&twice), "two rules are named 'a'");
        let default_twice = "[policy]\nblock = [\"CN\"]\n[[rule]]\nname = \"default\"\nblock = [\"CN\"]\n";
        assert_eq!(bad(default_twice), "two rules are named 'default'");
        let many: String = (0..17).map(|i| format!("[[rule]]\nname = \"r{i}\"\nblock = [\"CN\"]\n")).collect();
        assert_eq!(bad(&many), "17 rules: at most 16");
        assert!(bad(&format!("[[rule]]\nname = \"{}\"\nblock = [\"CN\"]\n", "x".repeat(32))).starts_with("rule name"));
        assert_eq!(
            bad("[policy]\nmonitor = true\n[[rule]]\nname = \"a\"\nblock = [\"CN\"]\n"),
            "policy.monitor (--monitor) is given without a block or allow list (policy.block, policy.allow, --block, \
             --allow): it belongs to the rule such a list makes; with [[rule]] tables alone, set it in each rule"
        );
        let flags = Config {
            policy: PolicyConfig { ports: Some("tcp:22".into()), ..PolicyConfig::default() },
            ..Config::default()
        };
        let tables = parse("interfaces = [\"e\"]\n[[rule]]\nname = \"a\"\nblock = [\"CN\"]\n");
        let err = tables.overlaid(&flags).resolve().unwrap_err().to_string();
        assert!(err.starts_with("--ports is given without a block or allow list"), "{err}");
        assert!(toml::from_str::<Config>("[[rule]]\nname = \"a\"\nport = 22\n").is_err(), "unknown keys");
        assert!(toml::from_str::<Config>("[[rule]]\nname = \"a\"\nprotocol = \"gre\"\n").is_err());
    }

    #[test]
    fn metrics_addresses_default_to_loopback() {
        assert_eq!(parse_metrics_addr("9100").unwrap(), "127.0.0.1:9100".parse().unwrap());
        assert_eq!(parse_metrics_addr("[::]:9100").unwrap(), "[::]:9100".parse().unwrap());
        assert!(parse_metrics_addr("localhost").is_err());
    }

    #[test]
    fn the_default_rule_may_judge_destinations() {
        let text = "interfaces = [\"e\"]\n[policy]\nblock = [\"CN\"]\ndirection = \"outbound\"\n";
        let rule = parse(text).resolve().unwrap().policy.rules[0].clone();
        assert_eq!((rule.name.as_str(), rule.direction), (DEFAULT_RULE, Direction::Outbound));
        let flags = Config {
            policy: PolicyConfig { direction: Some(Direction::Outbound), ..PolicyConfig::default() },
            ..Config::default()
        };
        let file = parse("interfaces = [\"e\"]\n[policy]\nblock = [\"CN\"]\n");
        assert_eq!(file.overlaid(&flags).resolve().unwrap().policy.rules[0].direction, Direction::Outbound);
        let tables = parse(
            "interfaces = [\"e\"]\n[policy]\ndirection = \"outbound\"\n[[rule]]\nname = \"a\"\nblock = [\"CN\"]\n",
        );
        let err = tables.resolve().unwrap_err().to_string();
        assert!(err.starts_with("policy.direction (--outbound) is given without a block or allow list"), "{err}");
        let rules =
            parse("interfaces = [\"e\"]\n[[rule]]\nname = \"out\"\ndirection = \"outbound\"\nblock = [\"CN\"]\n");
        assert_eq!(rules.resolve().unwrap().policy.rules[0].direction, Direction::Outbound);
        assert!(toml::from_str::<Config>("[policy]\ndirection = \"out\"\n").is_err());
    }

    #[test]
    fn lists_keep_the_files_order_and_flags_replace_them() {
        let file = "interfaces = [\"e\"]\n[policy]\nblock = [\"CN\"]\n[lists]\ntor = \"https://h/torbulkexitlist\"\n\
                    hosting = \"/etc/geoblock/hosting.netset\"\naws = \"/etc/geoblock/ip-ranges.json\"\n";
        let pair = |n: &str, s: &str| (n.to_string(), s.to_string());
        let opts = parse(file).resolve().unwrap();
        assert_eq!(
            opts.data.lists,
            [
                pair("tor", "https://h/torbulkexitlist"),
                pair("hosting", "/etc/geoblock/hosting.netset"),
                pair("aws", "/etc/geoblock/ip-ranges.json")
            ]
        );
        let flags = Config { lists: Some(vec![pair("x4b", "/x4b.txt")]), ..Config::default() };
        assert_eq!(parse(file).overlaid(&flags).resolve().unwrap().data.lists, [pair("x4b", "/x4b.txt")]);
        assert_eq!(parse(file).overlaid(&Config::default()).resolve().unwrap().data.lists.len(), 3);
        assert!(parse("interfaces = [\"e\"]\n[policy]\nblock = [\"CN\"]\n").resolve().unwrap().data.lists.is_empty());
    }

    #[test]
    fn bad_list_names_and_twice_given_ones_are_refused() {
        let bad = |lists: &str| {
            let text = format!("interfaces = [\"e\"]\n[policy]\nblock = [\"CN\"]\n[lists]\n{lists}");
            parse(&text).resolve().unwrap_err().to_string()
        };
        assert!(bad("Tor = \"/x\"\n").starts_with("lists: list name 'Tor': "), "{}", bad("Tor = \"/x\"\n"));
        let unnamed = "interfaces = [\"e\"]\n[policy]\nblock = [\"list:vpn\"]\n[lists]\ntor = \"/x\"\n";
        assert!(parse(unnamed).resolve().unwrap_err().to_string().starts_with("list:vpn: a rule names it"));
        let no_asn = "interfaces = [\"e\"]\n[policy]\nblock = [\"AS4134\"]\n";
        assert!(parse(no_asn).resolve().unwrap_err().to_string().contains("AS4134: a rule names it, but no AS data"));
        assert!(bad("\"a.b\" = \"/x\"\n").contains("'a.b'"));
        let twice =
            Config { lists: Some(vec![("a".into(), "/x".into()), ("a".into(), "/y".into())]), ..Config::default() };
        let flags = parse("interfaces = [\"e\"]\n[policy]\nblock = [\"CN\"]\n");
        let err = twice.overlaid(&flags).resolve();
        assert!(matches!(err, Err(ConfigError::ListTwice(ref n)) if n == "a"), "{err:?}");
        assert!(toml::from_str::<Config>("[lists]\ntor = 3\n").is_err());
    }
}
