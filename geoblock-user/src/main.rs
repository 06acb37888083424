//! The `geoblock` command: the daemon (`run`) and the tools around it.

use std::{
    io::{self, BufRead as _, Write as _},
    net::IpAddr,
    path::PathBuf,
    process::ExitCode,
};

use anyhow::{Context as _, Result};
use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand, ValueEnum};
use geoblock::{
    bpffs::DEFAULT_STATE_DIR,
    config::{Config, ConfigSource, Lookup, PolicyConfig, XdpModeName, DEFAULT_CONFIG},
    control::{self, Request, DEFAULT_CONTROL_SOCKET},
    country,
    events::{self, TailOptions},
    dataset::{self, Meta},
    explain::{self, Explanation},
    metrics::DEFAULT_METRICS_ADDR,
    parse,
    daemon,
    policy::{Change, Enforcement},
    prefix::Table,
    source::{self, inspect, CountryFields, DataSources, Format, DEFAULT_CACHE_DIR},
    stats::{Stats, View},
};
use geoblock_common::CountryId;
use ipnetwork::IpNetwork;

const ATTRIBUTION: &str = "Embedded country data: IP Geolocation by DB-IP (https://db-ip.com), CC BY 4.0.";

#[derive(Parser)]
#[command(name = "geoblock", version, about = "Drop traffic by country in XDP, at line rate.", after_help = ATTRIBUTION)]
struct Cli {
    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load the XDP program, attach it and enforce the policy until SIGINT/SIGTERM
    /// (enforcement stays in place after the daemon exits; SIGHUP reloads the data).
    Run(RunArgs),
    /// Validate configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Remove what `geoblock run` left in place: the program, its links and the pins.
    Detach {
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Per-country counters (per interface too) of a running `geoblock run`, or of the state it left.
    Stats(StatsArgs),
    /// Why addresses get their verdict: prefix, country, data source, and the policy's reason.
    /// Asks the running daemon, or, given --data or a policy, decides offline.
    Explain(ExplainArgs),
    /// The running daemon: interfaces, policy, data (age, generation, prefixes), last reload.
    Status(ControlArgs),
    /// Drop these countries from now on (deny-list: added; allow-list: removed).
    Block(CountriesArgs),
    /// Pass these countries from now on (deny-list: removed; allow-list: added).
    Unblock(CountriesArgs),
    /// Switch to an allow-list of exactly these countries.
    Allow(CountriesArgs),
    /// deny / allow: enforce, reading the country list that way; monitor: drop nothing, count would-drops.
    Mode {
        #[arg(value_enum)]
        mode: EnforcementArg,
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Add or remove an exception (a CIDR never dropped).
    Except {
        #[arg(value_enum)]
        op: ExceptOp,
        cidr: String,
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Re-read the config and data and swap the new table in (as SIGHUP does), reporting the
    /// result; --force loads data the shrink guard refuses.
    Reload(ControlArgs),
    /// Live tail of sampled drop (and would-drop) events from the running daemon, until Ctrl-C.
    Events {
        /// One JSON object per line (schema in README) instead of text.
        #[arg(long)]
        json: bool,
        /// Only events from this country.
        #[arg(long, value_parser = parse_country)]
        country: Option<CountryId>,
        /// Also write the events' frames (their first 128 bytes) to this pcap file.
        #[arg(long)]
        pcap: Option<PathBuf>,
        /// The running daemon's control socket.
        #[arg(long, default_value = DEFAULT_CONTROL_SOCKET)]
        control_socket: PathBuf,
    },
    /// Country and prefix of addresses ('-' reads them from stdin), from the data `run` would load.
    Lookup {
        #[arg(required = true)]
        addresses: Vec<String>,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Work with GeoIP data sets.
    #[command(subcommand)]
    Data(DataCommand),
}

#[derive(Args)]
struct StatsArgs {
    /// Print the documented JSON schema (every counter) instead of a table.
    #[arg(long, conflicts_with = "watch")]
    json: bool,
    /// Rows shown, busiest droppers first (0: all).
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// Only these countries (comma-separated ISO codes; -- for addresses without a country).
    #[arg(long, value_delimiter = ',', value_parser = parse_row)]
    country: Vec<String>,
    /// Only the counters of this interface.
    #[arg(long)]
    iface: Option<String>,
    /// Redraw every SECONDS (default 1) with per-second rates, until Ctrl-C.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "1")]
    watch: Option<f64>,
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
}

#[derive(Args)]
struct ExplainArgs {
    #[arg(required = true)]
    addresses: Vec<IpAddr>,
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    data: DataArgs,
    /// The running daemon's control socket (when neither --data nor a policy is given).
    #[arg(long, default_value = DEFAULT_CONTROL_SOCKET)]
    control_socket: PathBuf,
    #[arg(long)]
    json: bool,
}

/// The policy, as `run` takes it.
#[derive(Args)]
struct PolicyArgs {
    /// Deny-list: drop these countries (comma-separated ISO codes).
    #[arg(long, value_delimiter = ',', value_parser = parse_country, conflicts_with = "allow")]
    block: Vec<CountryId>,
    /// Allow-list: drop every country but these.
    #[arg(long, value_delimiter = ',', value_parser = parse_country)]
    allow: Vec<CountryId>,
    /// CIDRs that always pass, checked before the country (e.g. a management network).
    #[arg(long = "except", value_delimiter = ',')]
    exceptions: Vec<IpNetwork>,
    /// Count what would be dropped, drop nothing.
    #[arg(long)]
    monitor: bool,
    /// Also drop addresses no country claims (private, unassigned...).
    #[arg(long)]
    block_unknown: bool,
}

impl PolicyArgs {
    /// The flags as a config layer: only what was given.
    fn overrides(self) -> PolicyConfig {
        let codes = |ids: Vec<CountryId>| {
            (!ids.is_empty()).then(|| ids.into_iter().map(|c| country::code(c).to_string()).collect())
        };
        let exceptions: Vec<String> = self.exceptions.iter().map(|n| n.to_string()).collect();
        PolicyConfig {
            block: codes(self.block),
            allow: codes(self.allow),
            block_unknown: self.block_unknown.then_some(true),
            except: (!exceptions.is_empty()).then_some(exceptions),
            monitor: self.monitor.then_some(true),
        }
    }

    fn given(&self) -> bool {
        !self.block.is_empty() || !self.allow.is_empty()
    }
}

#[derive(Args)]
struct ControlArgs {
    /// The running daemon's control socket.
    #[arg(long, default_value = DEFAULT_CONTROL_SOCKET)]
    control_socket: PathBuf,
    /// Print the daemon's JSON response instead of text.
    #[arg(long)]
    json: bool,
    /// Apply a policy change even if it drops this SSH session's client or a management network;
    /// with reload, load data even if it shrinks by more than --max-shrink.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
struct CountriesArgs {
    /// ISO country codes (space- or comma-separated).
    #[arg(required = true, value_delimiter = ',')]
    countries: Vec<String>,
    #[command(flatten)]
    control: ControlArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum EnforcementArg {
    Deny,
    Allow,
    Monitor,
}

#[derive(Clone, Copy, ValueEnum)]
enum ExceptOp {
    Add,
    Del,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check a config file (syntax, countries, CIDRs, data files) without touching the kernel.
    Check { file: PathBuf },
}

#[derive(Subcommand)]
enum DataCommand {
    /// Pack `start,end,cc` CSV files into geoblock's compact format (how the embedded data is made).
    Pack {
        /// The packed file to write.
        #[arg(long)]
        out: PathBuf,
        /// The data's release, e.g. 2026-06.
        #[arg(long)]
        release: String,
        #[arg(long, default_value = "dbip-country")]
        name: String,
        /// The credit the data's licence asks for.
        #[arg(long, default_value = "IP Geolocation by DB-IP")]
        attribution: String,
        #[arg(required = true)]
        csv: Vec<PathBuf>,
    },
    /// What sources hold: format, date, ranges and prefixes per family, countries, prefix lengths.
    Inspect {
        #[arg(required = true)]
        sources: Vec<String>,
        #[command(flatten)]
        read: ReadArgs,
        /// Countries listed, most prefixes first.
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// Only these countries (comma-separated ISO codes).
        #[arg(long, value_delimiter = ',', value_parser = parse_country)]
        country: Vec<CountryId>,
        #[arg(long)]
        json: bool,
        /// Also print the wall time and peak memory of reading and converting.
        #[arg(long)]
        timing: bool,
    },
    /// Print the exact prefixes (or ranges) geoblock would load from the sources.
    Convert {
        #[arg(required = true)]
        sources: Vec<String>,
        #[command(flatten)]
        read: ReadArgs,
        /// `cidr`: "PREFIX CC" lines; `csv`: "start,end,cc" maximal ranges; `mmdb`: a MaxMind DB.
        /// All read back to the same table.
        #[arg(long, value_enum)]
        to: ConvertTo,
        /// Only these countries (comma-separated ISO codes).
        #[arg(long, value_delimiter = ',', value_parser = parse_country)]
        country: Vec<CountryId>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ConvertTo {
    Cidr,
    Csv,
    /// A MaxMind DB (`country.iso_code`), e.g. to benchmark or test MMDB input.
    Mmdb,
}

/// How sources are read.
#[derive(Args)]
struct ReadArgs {
    /// The format of every source: csv, ip2location, mmdb, maxmind-csv, rir, cidr
    /// [default: detected from each file's name and content].
    #[arg(long, value_parser = parse_format)]
    format: Option<Format>,
    /// Where MMDB records keep the country code: dotted paths, tried in order
    /// [default: country.iso_code,registered_country.iso_code].
    #[arg(long)]
    mmdb_field: Option<String>,
    /// Where https:// and http:// sources are downloaded to (and kept for the next start)
    /// [default: /var/cache/geoblock].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

impl ReadArgs {
    /// `sources` read this way.
    fn sources(&self, sources: Vec<String>) -> DataSources {
        DataSources {
            sources,
            options: source::Options {
                format: self.format,
                mmdb_fields: self.mmdb_field.as_deref().map(CountryFields::parse).unwrap_or_default(),
            },
            cache_dir: self.cache_dir.clone().unwrap_or_else(|| DEFAULT_CACHE_DIR.into()),
        }
    }
}

/// Every setting of the config file, as a flag that overrides it.
#[derive(Args)]
struct RunArgs {
    /// TOML config file; flags override its settings [default: /etc/geoblock/geoblock.toml, if present].
    #[arg(long)]
    config: Option<PathBuf>,
    /// Interface to attach to (repeat for several).
    #[arg(long = "iface")]
    interfaces: Vec<String>,
    #[command(flatten)]
    policy: PolicyArgs,
    /// [default: auto]
    #[arg(long, value_enum)]
    xdp_mode: Option<XdpModeName>,
    /// Address → country structure [default: trie].
    #[arg(long, value_enum)]
    lookup: Option<Lookup>,
    /// bpffs directory where program, links and maps are pinned (what a restarted daemon adopts)
    /// [default: /sys/fs/bpf/geoblock].
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// On SIGINT/SIGTERM, detach and remove the pins instead of leaving enforcement in place.
    #[arg(long)]
    detach_on_exit: bool,
    /// A management network the policy must never drop (repeat or comma-separate).
    #[arg(long, value_delimiter = ',')]
    management: Vec<IpNetwork>,
    /// Start even if the policy drops this SSH session's client or a management network.
    #[arg(long)]
    force: bool,
    /// Unix socket (mode 0600) for `geoblock status`, `block`, `reload`...
    /// [default: /run/geoblock/control.sock].
    #[arg(long)]
    control_socket: Option<PathBuf>,
    /// Sampled drop events per second at most, over all CPUs; 0 turns them off [default: 100].
    #[arg(long)]
    event_rate: Option<u32>,
    /// Serve Prometheus metrics at http://ADDR/metrics (IP:PORT, or a port on loopback)
    /// [default: off; without ADDR: 127.0.0.1:9717].
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = DEFAULT_METRICS_ADDR)]
    metrics: Option<String>,
    #[command(flatten)]
    data: DataArgs,
    /// Download URL sources again this often (e.g. 6h, 1d); local files are reloaded whenever they
    /// change [default: only on reload].
    #[arg(long)]
    refresh: Option<String>,
    /// Refuse new data with this many percent fewer prefixes or covered addresses than the
    /// table in force (`geoblock reload --force` loads it anyway) [default: 10].
    #[arg(long)]
    max_shrink: Option<f64>,
}

impl RunArgs {
    /// The flags as a config layer: only what was given.
    fn overrides(self) -> Config {
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
            state_dir: self.state_dir,
            control_socket: self.control_socket,
            detach_on_exit: self.detach_on_exit.then_some(true),
            management: some(self.management.iter().map(|n| n.to_string()).collect()),
            force: self.force.then_some(true),
            event_rate: self.event_rate,
            metrics: self.metrics,
            policy: self.policy.overrides(),
        }
    }
}

#[derive(Args)]
struct DataArgs {
    /// GeoIP data instead of the embedded DB-IP data: range CSV (DB-IP, Tor geoip), IP2Location
    /// DB1, MMDB, MaxMind CSV (zip or folder), RIR delegated stats or CIDR lists, plain or
    /// .gz/.xz/.zip, or an https:// URL of one. Repeat to combine: a later source wins where it
    /// gives a country.
    #[arg(long)]
    data: Vec<String>,
    #[command(flatten)]
    read: ReadArgs,
}

fn main() -> ExitCode {
    let cli = match parse_cli() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    init_logging(cli.verbose);
    match execute(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("geoblock: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn execute(command: Command) -> Result<()> {
    match command {
        Command::Run(args) => run(args),
        Command::Config(ConfigCommand::Check { file }) => check_config(&file),
        Command::Detach { state_dir } => {
            let interfaces = daemon::detach(&state_dir)?;
            println!("detached from {}; removed {}", display_list(&interfaces), state_dir.display());
            Ok(())
        }
        Command::Stats(args) => stats(args),
        Command::Explain(args) => explain_addresses(args),
        Command::Status(control) => ask(&control, Request::Status),
        Command::Block(args) => change(&args.control, Change::Block { countries: args.countries }),
        Command::Unblock(args) => change(&args.control, Change::Unblock { countries: args.countries }),
        Command::Allow(args) => change(&args.control, Change::Allow { countries: args.countries }),
        Command::Mode { mode, control } => {
            let mode = match mode {
                EnforcementArg::Deny => Enforcement::Deny,
                EnforcementArg::Allow => Enforcement::Allow,
                EnforcementArg::Monitor => Enforcement::Monitor,
            };
            change(&control, Change::Mode { mode })
        }
        Command::Except { op, cidr, control } => match op {
            ExceptOp::Add => change(&control, Change::ExceptAdd { cidr }),
            ExceptOp::Del => change(&control, Change::ExceptDel { cidr }),
        },
        Command::Reload(control) => ask(&control, Request::Reload { force: control.force }),
        Command::Events { json, country, pcap, control_socket } => {
            let opts = TailOptions { json, country, pcap };
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let shown = runtime.block_on(async {
                let subscription = events::subscribe(&control_socket).await?;
                eprintln!("geoblock: streaming drop events (Ctrl-C stops)");
                events::tail(subscription, &opts, &mut io::stdout().lock()).await
            })?;
            let written = opts.pcap.map_or(String::new(), |p| format!(", written to {}", p.display()));
            eprintln!("geoblock: {shown} events{written}");
            Ok(())
        }
        Command::Lookup { addresses, data } => lookup(&addresses, &data),
        Command::Data(DataCommand::Pack { out, release, name, attribution, csv }) => {
            let paths: Vec<&std::path::Path> = csv.iter().map(PathBuf::as_path).collect();
            let table = parse::load(&paths)?;
            let meta = Meta { attribution, name, version: release };
            std::fs::write(&out, dataset::pack(&meta, &table))
                .with_context(|| format!("writing {}", out.display()))?;
            let counts = table.counts();
            println!("{}: {} IPv4 and {} IPv6 prefixes, {meta}", out.display(), counts.v4, counts.v6);
            Ok(())
        }
        Command::Data(DataCommand::Inspect { sources, read, top, country, json, timing }) => {
            inspect_sources(sources, &read, top, &country, json, timing)
        }
        Command::Data(DataCommand::Convert { sources, read, to, country }) => convert(sources, &read, to, &country),
    }
}

fn stats(args: StatsArgs) -> Result<()> {
    let view = View { top: args.top, countries: args.country, iface: args.iface };
    if let Some(seconds) = args.watch {
        return watch(&args.state_dir, &view, seconds);
    }
    let stats = Stats::read_pinned(&args.state_dir)?;
    match args.json {
        true => println!("{}", serde_json::to_string_pretty(&stats)?),
        false => print!("{}", view.render(&stats)),
    }
    Ok(())
}

/// `stats --watch`: rates between consecutive reads, redrawn until interrupted.
fn watch(state_dir: &std::path::Path, view: &View, seconds: f64) -> Result<()> {
    let interval = std::time::Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|i| !i.is_zero())
        .with_context(|| format!("--watch {seconds}: give a positive number of seconds"))?;
    let mut before = (Stats::read_pinned(state_dir)?, std::time::Instant::now());
    loop {
        std::thread::sleep(interval);
        let now = (Stats::read_pinned(state_dir)?, std::time::Instant::now());
        let elapsed = now.1 - before.1;
        // Home and clear: a redraw in place on any terminal.
        print!("\x1b[H\x1b[2Jgeoblock stats: per second over {:.1} s (Ctrl-C stops)\n", elapsed.as_secs_f64());
        print!("{}", view.render_rates(&before.0, &now.0, elapsed));
        io::stdout().flush()?;
        before = now;
    }
}

/// `geoblock explain`: offline when given data or a policy, else by the running daemon.
fn explain_addresses(args: ExplainArgs) -> Result<()> {
    let explained: Vec<Explanation> = if args.policy.given() || !args.data.data.is_empty() {
        anyhow::ensure!(args.policy.given(), "explaining offline needs the policy: --block or --allow");
        let policy = args.policy.overrides().resolve()?;
        let loaded = args.data.read.sources(args.data.data).load()?;
        args.addresses.iter().map(|&ip| explain::explain((&loaded).into(), &policy, ip, None)).collect()
    } else {
        let request = Request::Explain { addresses: args.addresses };
        let response = control::request(&args.control_socket, &request)?;
        anyhow::ensure!(response.ok, "{}", response.message);
        response.explain.unwrap_or_default()
    };
    match args.json {
        true => println!("{}", serde_json::to_string_pretty(&explained)?),
        false => explained.iter().for_each(|e| print!("{}", e.render())),
    }
    Ok(())
}

fn inspect_sources(
    sources: Vec<String>,
    read: &ReadArgs,
    top: usize,
    countries: &[CountryId],
    json: bool,
    timing: bool,
) -> Result<()> {
    let started = std::time::Instant::now();
    let loaded = read.sources(sources).load()?;
    let elapsed = started.elapsed();
    let report = inspect::report(&loaded, top, countries);
    match json {
        true => println!("{}", serde_json::to_string_pretty(&report)?),
        false => print!("{}", inspect::render(&report)),
    }
    if timing {
        let rss = inspect::peak_rss_mib().map_or("unknown".into(), |m| format!("{m:.0} MiB"));
        eprintln!("read + exact conversion: {:.3} s wall, peak RSS {rss}", elapsed.as_secs_f64());
    }
    Ok(())
}

fn convert(sources: Vec<String>, read: &ReadArgs, to: ConvertTo, countries: &[CountryId]) -> Result<()> {
    let table = inspect::only(read.sources(sources).load()?.table, countries);
    let mut out = io::BufWriter::new(io::stdout().lock());
    match to {
        ConvertTo::Cidr => inspect::write_cidr(&mut out, &table)?,
        ConvertTo::Csv => inspect::write_csv(&mut out, &table)?,
        ConvertTo::Mmdb => {
            let epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
            out.write_all(&source::mmdb::write(&table, &["country", "iso_code"], "geoblock-Country", epoch))?;
            out.flush()?;
        }
    }
    Ok(())
}

/// `--version` names the embedded data set, as its licence asks.
fn parse_cli() -> Result<Cli, ExitCode> {
    let data = dataset::embedded_meta().map_or_else(|e| format!("embedded data unreadable: {e}"), |m| m.to_string());
    let version = format!("{}\n{data}, https://db-ip.com, CC BY 4.0", env!("CARGO_PKG_VERSION"));
    let parsed = Cli::command()
        .long_version(version)
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches));
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

fn run(args: RunArgs) -> Result<()> {
    let source = ConfigSource {
        required: args.config.is_some(),
        path: args.config.clone().unwrap_or_else(|| DEFAULT_CONFIG.into()),
        flags: args.overrides(),
    };
    let opts = source.read()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    Ok(runtime.block_on(daemon::run(opts, source))?)
}

/// `geoblock config check FILE`: everything `run` would refuse, without the kernel.
fn check_config(file: &std::path::Path) -> Result<()> {
    let opts = Config::load(file, true)?.resolve()?;
    let table = opts.data.load()?.table;
    println!(
        "{}: ok; {} on {}, {} IPv4 and {} IPv6 prefixes",
        file.display(),
        daemon::describe(&opts.policy),
        opts.interfaces.join(", "),
        table.v4.len(),
        table.v6.len()
    );
    Ok(())
}

/// A policy change, naming the SSH client this runs under for the daemon's lock-out guard.
fn change(control: &ControlArgs, change: Change) -> Result<()> {
    let ssh = std::env::var("SSH_CONNECTION").ok();
    let ssh_client = ssh.as_deref().and_then(|s| s.split_whitespace().next()?.parse().ok());
    ask(control, Request::Change { change, ssh_client, force: control.force })
}

/// Sends `request` to the daemon and prints its answer; a refusal is an error.
fn ask(control: &ControlArgs, request: Request) -> Result<()> {
    let response = control::request(&control.control_socket, &request)?;
    if control.json {
        println!("{}", serde_json::to_string_pretty(&response)?);
    } else if let Some(status) = &response.status {
        print!("{}", status.render());
    } else if response.ok {
        println!("{}", response.message);
    }
    if !response.ok {
        anyhow::bail!("{}", response.message);
    }
    Ok(())
}

fn display_list(items: &[String]) -> String {
    match items.is_empty() {
        true => "no interface".into(),
        false => items.join(", "),
    }
}

fn lookup(addresses: &[String], data: &DataArgs) -> Result<()> {
    let table = load_table(data)?;
    let answer = |text: &str| -> Result<()> {
        let ip: IpAddr = text.trim().parse().with_context(|| format!("'{text}' is not an IP address"))?;
        match table.lookup(ip) {
            Some((net, c)) => println!("{ip} {} {net}", country::code(c)),
            None => println!("{ip} - -"),
        }
        Ok(())
    };
    for text in addresses {
        if text == "-" {
            for line in io::stdin().lock().lines() {
                let line = line?;
                if !line.trim().is_empty() {
                    answer(&line)?;
                }
            }
        } else {
            answer(text)?;
        }
    }
    Ok(())
}

fn load_table(data: &DataArgs) -> Result<Table> {
    Ok(data.read.sources(data.data.clone()).load()?.table)
}

fn parse_format(name: &str) -> Result<Format, String> {
    name.parse()
}

fn parse_country(code: &str) -> Result<CountryId, country::UnknownCountry> {
    country::parse(code)
}

/// A row of the stats table: a country code, or `--` (no country).
fn parse_row(code: &str) -> Result<String, country::UnknownCountry> {
    match code.trim() {
        "--" => Ok("--".into()),
        code => country::parse(code).map(|id| country::code(id).to_string()),
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
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(io::stderr)
        .init();
}
