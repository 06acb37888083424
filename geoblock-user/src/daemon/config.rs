//! The configuration: a TOML file (default `/etc/geoblock/geoblock.toml`)
//! overlaid with command-line flags, which win setting by setting. Every
//! setting has a flag; every default is written down here and in README.
//!
//! ```toml
//! interfaces = ["eth0"]
//! xdp_mode = "auto"                       # auto | native | skb
//! lookup = "trie"                         # trie | lpm
//! data = []                               # files or https:// URLs; empty: the embedded data
//! format = "csv"                          # csv | ip2location | mmdb | maxmind-csv | rir | cidr; default: detected
//! mmdb_field = "country.iso_code,registered_country.iso_code,country_code"
//! cache_dir = "/var/cache/geoblock"       # where downloads are kept
//! refresh = "6h"                          # download URLs again this often; default: never
//! max_shrink = 10                         # % a new data set may shrink by before it is refused
//! state_dir = "/sys/fs/bpf/geoblock"
//! control_socket = "/run/geoblock/control.sock"
//! detach_on_exit = false
//! management = ["192.0.2.0/24"]           # never dropped: refused unless --force
//! event_rate = 100                        # sampled drop events per second at most; 0: off
//! metrics = "127.0.0.1:9717"              # serve /metrics there; absent: off
//!
//! [policy]
//! block = ["CN", "RU"]                    # or allow = [...], not both
//! block_unknown = false
//! except = ["203.0.113.0/24"]
//! monitor = false
//! ```

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use geoblock_common::Backend;
use ipnetwork::IpNetwork;
use serde::Deserialize;

use crate::{
    country,
    data::{self, parse_network, CidrError, CountryFields, DataSources},
    kernel::XdpMode,
    policy::{Mode, Policy},
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
/// Where `--metrics` listens when given no address: loopback only.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9717";

/// What `geoblock run` does: the config file and the flags, resolved.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpMode,
    pub policy: Policy,
    pub state_dir: PathBuf,
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
    /// Where `/metrics` is served; `None`: nowhere.
    pub metrics: Option<SocketAddr>,
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
    pub format: Option<String>,
    pub mmdb_field: Option<String>,
    pub cache_dir: Option<PathBuf>,
    /// A duration: `90s`, `15m`, `6h`, `1d`.
    pub refresh: Option<String>,
    /// Percent of covered addresses (per family, and per country the policy names).
    pub max_shrink: Option<f64>,
    pub state_dir: Option<PathBuf>,
    pub control_socket: Option<PathBuf>,
    pub detach_on_exit: Option<bool>,
    /// Networks a policy may not drop (the lock-out guard).
    pub management: Option<Vec<String>>,
    /// Sampled drop events per second, over all CPUs (0: off).
    pub event_rate: Option<u32>,
    /// Where to serve `/metrics` (`IP:PORT`, or a port on loopback).
    pub metrics: Option<String>,
    /// Flag only (`--force`): a file cannot switch the guard off.
    #[serde(skip)]
    pub force: Option<bool>,
    #[serde(default)]
    pub policy: PolicyConfig,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub block: Option<Vec<String>>,
    pub allow: Option<Vec<String>>,
    pub block_unknown: Option<bool>,
    pub except: Option<Vec<String>>,
    pub monitor: Option<bool>,
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
    pub fn read(&self) -> Result<RunOptions, ConfigError> {
        Config::load(&self.path, self.required)?.overlaid(&self.flags).resolve()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("no interface to attach to (--iface, or interfaces = [...] in the config)")]
    NoInterfaces,
    #[error("no policy: give --block or --allow (policy.block or policy.allow in the config)")]
    NoPolicy,
    #[error("both a block list and an allow list are given; keep one")]
    BlockAndAllow,
    #[error(transparent)]
    Country(#[from] country::UnknownCountry),
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
            format: flags.format.clone().or(self.format),
            mmdb_field: flags.mmdb_field.clone().or(self.mmdb_field),
            cache_dir: flags.cache_dir.clone().or(self.cache_dir),
            refresh: flags.refresh.clone().or(self.refresh),
            max_shrink: flags.max_shrink.or(self.max_shrink),
            state_dir: flags.state_dir.clone().or(self.state_dir),
            control_socket: flags.control_socket.clone().or(self.control_socket),
            detach_on_exit: flags.detach_on_exit.or(self.detach_on_exit),
            management: flags.management.clone().or(self.management),
            event_rate: flags.event_rate.or(self.event_rate),
            metrics: flags.metrics.clone().or(self.metrics),
            force: flags.force,
            policy: PolicyConfig {
                block: if list_given { p.block.clone() } else { self.policy.block },
                allow: if list_given { p.allow.clone() } else { self.policy.allow },
                block_unknown: p.block_unknown.or(self.policy.block_unknown),
                except: p.except.clone().or(self.policy.except),
                monitor: p.monitor.or(self.policy.monitor),
            },
        }
    }

    /// Validates and fills in the defaults. Touches nothing.
    pub fn resolve(self) -> Result<RunOptions, ConfigError> {
        let interfaces = self.interfaces.filter(|i| !i.is_empty()).ok_or(ConfigError::NoInterfaces)?;
        Ok(RunOptions {
            interfaces,
            xdp_mode: self.xdp_mode.unwrap_or(XdpMode::Auto),
            policy: self.policy.resolve()?,
            state_dir: self.state_dir.unwrap_or_else(|| DEFAULT_STATE_DIR.into()),
            backend: match self.lookup.unwrap_or(Lookup::Trie) {
                Lookup::Trie => Backend::Trie,
                Lookup::Lpm => Backend::Lpm,
            },
            data: DataSources {
                sources: self.data.unwrap_or_default(),
                options: data::Options {
                    format: self.format.as_deref().map(str::parse).transpose().map_err(ConfigError::Format)?,
                    mmdb_fields: self.mmdb_field.as_deref().map(CountryFields::parse).unwrap_or_default(),
                },
                cache_dir: self.cache_dir.unwrap_or_else(|| DEFAULT_CACHE_DIR.into()),
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
            force: self.force.unwrap_or(false),
            metrics: self.metrics.as_deref().map(parse_metrics_addr).transpose().map_err(ConfigError::Metrics)?,
        })
    }
}

impl PolicyConfig {
    pub fn resolve(self) -> Result<Policy, ConfigError> {
        let (mode, codes) = match (self.block, self.allow) {
            (Some(_), Some(_)) => return Err(ConfigError::BlockAndAllow),
            (Some(block), None) => (Mode::Deny, block),
            (None, Some(allow)) => (Mode::Allow, allow),
            (None, None) => return Err(ConfigError::NoPolicy),
        };
        let countries = codes.iter().map(|c| country::parse(c)).collect::<Result<BTreeSet<_>, _>>()?;
        Ok(Policy {
            mode,
            countries,
            monitor: self.monitor.unwrap_or(false),
            block_unknown: self.block_unknown.unwrap_or(false),
            exceptions: cidrs("policy.except", self.except)?,
        })
    }
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
        assert_eq!(opts.policy.mode, Mode::Deny);
        assert_eq!(opts.policy.countries.len(), 1);
        assert!(opts.data.sources.is_empty() && !opts.detach_on_exit && !opts.policy.monitor);
        assert_eq!((opts.refresh, opts.max_shrink), (None, 0.10));
        assert_eq!(opts.event_rate, DEFAULT_EVENT_RATE);
        assert_eq!(opts.metrics, None, "no metrics unless asked for");
    }

    #[test]
    fn metrics_listen_where_told() {
        let opts = parse("interfaces = [\"e\"]\nmetrics = \"9100\"\n[policy]\nblock = [\"CN\"]\n").resolve().unwrap();
        assert_eq!(opts.metrics, Some("127.0.0.1:9100".parse().unwrap()));
        let bad = parse("interfaces = [\"e\"]\nmetrics = \"anywhere\"\n[policy]\nblock = [\"CN\"]\n").resolve();
        assert!(bad.unwrap_err().to_string().contains("metrics"));
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
        assert_eq!(opts.policy.mode, Mode::Allow, "an --allow flag replaces the file's block list");
        assert_eq!(opts.policy.exceptions.len(), 1);
    }

    #[test]
    fn invalid_settings_are_refused() {
        let bad = |text: &str| parse(text).resolve().unwrap_err().to_string();
        assert!(bad("[policy]\nblock = [\"CN\"]\n").contains("no interface"));
        assert!(bad("interfaces = [\"eth0\"]\n").contains("no policy"));
        assert!(bad("interfaces = [\"e\"]\n[policy]\nblock = [\"CN\"]\nallow = [\"DE\"]\n").contains("keep one"));
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

    #[test]
    fn metrics_addresses_default_to_loopback() {
        assert_eq!(parse_metrics_addr("9100").unwrap(), "127.0.0.1:9100".parse().unwrap());
        assert_eq!(parse_metrics_addr("[::]:9100").unwrap(), "[::]:9100".parse().unwrap());
        assert!(parse_metrics_addr("localhost").is_err());
    }
}
