//! `geoblock run`: the daemon, with every setting of the config file as a
//! flag that overrides it.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use geoblock::{
    daemon::{
        self,
        config::{Config, ConfigLayers, FlowsConfig, Lookup, RejectConfig, DEFAULT_CONFIG, DEFAULT_METRICS_ADDR},
        policy_url::Take,
    },
    data::parse_network,
    kernel::XdpMode,
};
use ipnetwork::IpNetwork;

use crate::args::{DataArgs, ListArgs, PolicyArgs};

/// Every setting of the config file, as a flag that overrides it.
#[derive(Args)]
pub struct RunArgs {
    /// TOML config file; flags override its settings [default: /etc/geoblock/geoblock.toml, if present].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Interface to attach to (repeat for several).
    #[arg(long = "iface")]
    pub interfaces: Vec<String>,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// [default: auto]
    #[arg(long, value_enum)]
    pub xdp_mode: Option<XdpMode>,
    /// Address → country structure [default: trie].
    #[arg(long, value_enum)]
    pub lookup: Option<Lookup>,
    /// bpffs directory where program, links and maps are pinned (what a restarted daemon adopts)
    /// [default: /sys/fs/bpf/geoblock].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// cgroup (v2) whose processes the outbound rules refuse to connect and send, at the call
    /// [default: the root of the cgroup v2 hierarchy].
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,
    /// On SIGINT/SIGTERM, detach and remove the pins instead of leaving enforcement in place.
    #[arg(long)]
    pub detach_on_exit: bool,
    /// A management network the policy must never drop (repeat or comma-separate).
    #[arg(long, value_delimiter = ',', value_parser = parse_network)]
    pub management: Vec<IpNetwork>,
    /// Start even if the policy drops this SSH session's client or a management network.
    #[arg(long)]
    pub force: bool,
    /// Unix socket (mode 0600) for `geoblock status`, `block`, `reload`...
    /// [default: /run/geoblock/control.sock].
    #[arg(long)]
    pub control_socket: Option<PathBuf>,
    /// Sampled drop events per second at most, over all CPUs; 0 turns them off [default: 100].
    #[arg(long)]
    pub event_rate: Option<u32>,
    /// TCP resets and ICMP errors per second at most, over all CPUs, that rejected packets draw;
    /// 0: none (reject drops silently) [default: 1000].
    #[arg(long, value_name = "N")]
    pub reject_rate: Option<u32>,
    /// Serve Prometheus metrics at http://ADDR/metrics (IP:PORT, or a port on loopback)
    /// [default: off; without ADDR: 127.0.0.1:9717].
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = DEFAULT_METRICS_ADDR)]
    pub metrics: Option<String>,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub lists: ListArgs,
    /// Download URL sources again this often (e.g. 6h, 1d); local files are reloaded whenever they
    /// change [default: only on reload].
    #[arg(long)]
    pub refresh: Option<String>,
    /// Refuse new data that covers this many percent fewer addresses than the table in force, in
    /// either family or for a country the policy names (`geoblock reload --force` loads it
    /// anyway) [default: 10].
    #[arg(long)]
    pub max_shrink: Option<f64>,
    /// Connections this host opens that the flow table records, whose
    /// replies pass (default 262144; timeouts: [flows] in the config).
    #[arg(long, value_name = "N")]
    pub flows: Option<u32>,
    /// Take the policy ([policy], [[rule]] and [lists]) from the document published at this
    /// https:// URL, asked for changes every --policy-refresh; the config then gives no policy.
    #[arg(long, value_name = "URL")]
    pub policy_url: Option<String>,
    /// The minisign public key (RW...) the published policy must be signed with, in URL.minisig.
    #[arg(long, value_name = "KEY")]
    pub policy_key: Option<String>,
    /// How often the policy URL is asked for changes (a conditional GET) [default: 5m].
    #[arg(long, value_name = "DURATION")]
    pub policy_refresh: Option<String>,
}

impl RunArgs {
    /// The flags as a config layer: only what was given.
    pub fn overrides(self) -> Config {
        let some = |v: Vec<String>| (!v.is_empty()).then_some(v);
        Config {
            interfaces: some(self.interfaces),
            xdp_mode: self.xdp_mode,
            lookup: self.lookup,
            format: self.data.read.format.map(|f| f.to_string()),
            mmdb_field: self.data.read.mmdb_field,
            cache_dir: self.data.read.cache_dir,
            refresh: self.refresh,
            max_shrink: self.max_shrink,
            data: some(self.data.data),
            asn_data: some(self.data.asn_data),
            lists: (!self.lists.lists.is_empty()).then_some(self.lists.lists),
            state_dir: self.state_dir,
            cgroup: self.cgroup,
            control_socket: self.control_socket,
            detach_on_exit: self.detach_on_exit.then_some(true),
            management: some(self.management.iter().map(|n| n.to_string()).collect()),
            force: self.force.then_some(true),
            event_rate: self.event_rate,
            metrics: self.metrics,
            policy_url: self.policy_url,
            policy_key: self.policy_key,
            policy_refresh: self.policy_refresh,
            published: None,
            policy: self.policy.overrides(),
            rule: vec![],
            flows: FlowsConfig { size: self.flows, ..FlowsConfig::default() },
            reject: RejectConfig { rate: self.reject_rate },
        }
    }
}

pub fn run(args: RunArgs) -> Result<()> {
    let layers = ConfigLayers {
        required: args.config.is_some(),
        path: args.config.clone().unwrap_or_else(|| DEFAULT_CONFIG.into()),
        flags: args.overrides(),
    };
    // A start takes the published policy in force (if any), else downloads
    // it; the daemon's timer asks for changes from then on.
    let opts = layers.local()?.published(Take::InForce)?.resolve()?;
    // One worker thread beside the daemon's own: the metrics and control
    // connections are accepted there, so `/ready` answers (503) while the
    // start loads the tables, which holds the daemon's thread for seconds.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let ran = runtime.block_on(daemon::run(opts, layers));
    // A reload or a download still running on a blocking thread is
    // abandoned, not waited for: a stop is prompt, and what was enforced
    // stays in the pins. Dropping the runtime would wait for them.
    runtime.shutdown_background();
    Ok(ran?)
}
