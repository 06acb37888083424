//! `geoblock run`: take over (or create) the pinned state, fill the tables,
//! attach, then enforce until SIGINT/SIGTERM, reloading the data on SIGHUP
//! and re-attaching to interfaces that come back.
//!
//! Enforcement lives in the pins (see [`crate::bpffs`]), not in this
//! process: when the daemon exits or dies, the program stays attached with
//! the last table it loaded, and the next daemon adopts it without a gap.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use aya::{
    maps::{MapData, RingBuf},
    programs::XdpMode,
};
use geoblock_common::Backend;
use ipnetwork::IpNetwork;
use tracing::{error, info, warn};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, Signal, SignalKind},
};

use crate::{
    bpffs::StateDir,
    config::ConfigSource,
    control::{self, ControlSocket, Peer, Request, Response},
    country,
    events::{Event, EventStatus, WallClock},
    explain, guard,
    metrics::{self, MetricsServer, Reloads},
    notify,
    policy::{Change, Mode, Policy},
    prefix::Table,
    source::{fetch::FetchError, guard::check_replacement, DataSources, Loaded, SourceInfo},
    program::{mode_name, Geoblock, PinnedMaps},
    Error,
};

/// How often interfaces are checked for having disappeared or come back.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

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

/// Runs until SIGINT or SIGTERM. Everything is validated, filled and
/// attached before the `attached to` line. When a first start fails, what
/// it created is removed; when a takeover fails, the pinned state (and the
/// enforcement it carries) is left as it was.
pub async fn run(opts: RunOptions, config: ConfigSource) -> Result<(), Error> {
    for iface in &opts.interfaces {
        ifindex(iface)?;
    }
    // Before anything is attached: a signal that arrives during start-up
    // is handled once serving, not fatal (SIGHUP's default) or half-way.
    let signals = Signals::new()?;
    let state = StateDir::open(&opts.state_dir)?;
    let first_start = state.is_empty();
    let started = ControlSocket::bind(&opts.control_socket)
        .and_then(|control| Ok((Daemon::start(opts, config, &state)?, control)));
    let (mut daemon, control) = match started {
        Ok(started) => started,
        Err(e) if first_start => {
            let _ = state.remove_all();
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    notify::ready();
    daemon.serve(&state, signals, control).await?;
    notify::stopping();
    if daemon.opts.detach_on_exit {
        drop(daemon.geoblock);
        state.remove_all()?;
        info!("detached from {}; pins removed", daemon.opts.interfaces.join(", "));
    } else {
        info!(
            "exiting; enforcement stays in place (`geoblock detach --state-dir {}` removes it)",
            state.path().display()
        );
    }
    Ok(())
}

/// `geoblock detach`: removes the program, its links and every pin of a
/// state directory no daemon is using. Returns the interfaces released.
pub fn detach(state_dir: &std::path::Path) -> Result<Vec<String>, Error> {
    let state = StateDir::open_existing(state_dir)?;
    let interfaces = state.linked_interfaces();
    state.remove_all()?;
    Ok(interfaces)
}

struct Daemon {
    opts: RunOptions,
    /// Read again on every reload.
    config: ConfigSource,
    geoblock: Geoblock,
    /// Configured interfaces and the ifindex each is attached at (0: gone).
    attached: Vec<(String, u32)>,
    /// Tables loaded so far, and the one in force (for the lock-out guard).
    generation: u64,
    table: Table,
    /// What the table in force was read from.
    sources: Vec<SourceInfo>,
    /// Each source's table, when there are several (for `explain`).
    layers: Vec<Table>,
    last_reload: Option<Outcome>,
    data_watch: DataWatch,
    /// When URL sources are next downloaded (with `--refresh`).
    next_download: Option<Instant>,
    last_download: Option<Outcome>,
    /// Taken by [`Daemon::serve`].
    metrics: Option<MetricsServer>,
    /// Where it listens, for `status` (the port bound when 0 was asked for).
    metrics_addr: Option<SocketAddr>,
    reloads: Reloads,
}

/// What an operation said, and when.
type Outcome = (Result<String, String>, Instant);

/// Changes of the data files, seen by their modification times.
#[derive(Default)]
struct DataWatch {
    /// A change seen one tick ago: loaded once it holds still for a tick,
    /// so a file being copied in is not read half-written.
    settling: Option<Vec<Option<SystemTime>>>,
    /// Files whose reload was refused: not tried again until they change.
    refused: Option<Vec<Option<SystemTime>>>,
}

/// A blocking download of the URL sources, running off the main loop.
type Download = tokio::task::JoinHandle<Result<usize, FetchError>>;

impl Daemon {
    fn start(opts: RunOptions, config: ConfigSource, state: &StateDir) -> Result<Daemon, Error> {
        let started = Instant::now();
        // First: a port in use fails the start before the kernel is touched.
        let metrics = opts.metrics.map(MetricsServer::bind).transpose()?;
        let Loaded { table, sources, layers } = opts.data.load()?;
        // Before anything changes in the kernel. Whatever table a previous
        // daemon left is not known here: only an empty one is refused.
        if !opts.force {
            check_replacement(&Table::default(), &table, opts.max_shrink)?;
            guarded(&opts.management, &opts.policy, &table, None)?;
        }
        let (mut geoblock, maps) = Geoblock::load_pinned(opts.backend, state)?;
        match maps {
            PinnedMaps::Created => {}
            PinnedMaps::Reused => info!("adopting the pinned state in {}", state.path().display()),
            PinnedMaps::Replaced { found } => warn!(
                "pinned maps in {} are of ABI version {found}, this geoblock uses {}: replacing them",
                state.path().display(),
                geoblock_common::ABI_VERSION
            ),
        }
        // Tables and policy go in before any link runs this program, so an
        // adopted interface switches from the old verdicts to the new ones.
        geoblock.load_table(&table)?;
        geoblock.apply_policy(&opts.policy)?;
        geoblock.set_event_rate(opts.event_rate)?;
        info!(
            "loaded {} IPv4 and {} IPv6 prefixes in {} ms",
            table.v4.len(),
            table.v6.len(),
            started.elapsed().as_millis()
        );
        let mut daemon = Daemon {
            attached: Vec::new(),
            geoblock,
            opts,
            config,
            generation: 1,
            table,
            sources,
            layers,
            last_reload: None,
            data_watch: DataWatch::default(),
            next_download: None,
            last_download: None,
            metrics_addr: metrics.as_ref().map(|m| m.addr),
            metrics,
            reloads: Reloads::default(),
        };
        daemon.next_download = daemon.opts.refresh.map(|every| Instant::now() + every);
        daemon.count_interfaces()?;
        let how = daemon.attach_all(state)?;
        daemon.geoblock.pin_program(state)?;
        daemon.release_unconfigured(state)?;
        info!("policy: {}", describe(&daemon.opts.policy));
        if let Some(url) = daemon.metrics_url() {
            info!("metrics on {url}");
        }
        info!(
            "attached to {} (xdp mode {}; {}); state pinned in {}",
            daemon.opts.interfaces.join(", "),
            mode_name(daemon.opts.xdp_mode),
            how.join(", "),
            state.path().display()
        );
        Ok(daemon)
    }

    /// Moves each configured interface to this program: a live pinned link
    /// is updated in place, an interface without one gets a new link. New
    /// links are pinned only once all interfaces succeeded, so a failure
    /// leaves no new attachment behind.
    fn attach_all(&mut self, state: &StateDir) -> Result<Vec<String>, Error> {
        let mut fresh = Vec::new();
        let mut how = Vec::new();
        for iface in &self.opts.interfaces {
            let pinned = aya::programs::links::PinnedLink::from_pin(state.link(iface)).ok();
            let adopted = match pinned {
                Some(link) => self.geoblock.replace(link.into())?,
                None => None,
            };
            match adopted {
                Some(_) => how.push(format!("{iface}: pinned link taken over")),
                None => {
                    fresh.push((iface, self.geoblock.attach(iface, self.opts.xdp_mode)?));
                    how.push(format!("{iface}: new link"));
                }
            }
            self.attached.push((iface.clone(), ifindex(iface)?));
        }
        for (iface, link) in fresh {
            state.replace(&StateDir::link_name(iface), |path| link.pin(path).map(drop))?;
        }
        Ok(how)
    }

    /// Gives every configured interface its counter slot, before any link
    /// runs this program, so that its packets are counted under its name.
    fn count_interfaces(&mut self) -> Result<(), Error> {
        let interfaces: Vec<(String, u32)> =
            self.opts.interfaces.iter().map(|iface| (iface.clone(), ifindex(iface).unwrap_or(0))).collect();
        let slots = self.geoblock.set_interfaces(&interfaces)?;
        for ((iface, _), slot) in interfaces.iter().zip(slots) {
            if slot.is_none() {
                warn!(
                    "{iface}: counted as (other): no counter slot of its own (there are {}; or its ifindex is {} or more)",
                    geoblock_common::IFACE_SLOTS - 1,
                    geoblock_common::IFINDEX_LIMIT
                );
            }
        }
        Ok(())
    }

    /// Detaches interfaces a previous daemon attached that are no longer
    /// configured.
    fn release_unconfigured(&self, state: &StateDir) -> Result<(), Error> {
        for iface in state.linked_interfaces() {
            if !self.opts.interfaces.contains(&iface) {
                state.unpin(&state.link(&iface))?;
                info!("detached from {iface}: no longer configured");
            }
        }
        Ok(())
    }

    /// Waits for SIGINT/SIGTERM; meanwhile reloads on SIGHUP, answers the
    /// control socket, watches the interfaces and forwards kernel-side log
    /// records.
    async fn serve(&mut self, state: &StateDir, mut signals: Signals, mut control: ControlSocket) -> Result<(), Error> {
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        let mut metrics = self.metrics.take();
        // SAFETY: the logger owns its ring buffer's fd for as long as it
        // lives, and the AsyncFd owns the logger.
        let mut logs = match self.geoblock.take_logger() {
            Some(logger) => Some(unsafe { AsyncFd::register(logger) }.map_err(|e| io_error(e.into_parts().1))?),
            None => None,
        };
        let mut download: Option<Download> = None;
        // SAFETY: the ring buffer owns its fd, and the AsyncFd owns it.
        let mut events = Some(unsafe { AsyncFd::register(self.geoblock.take_events()?) }.map_err(|e| io_error(e.into_parts().1))?);
        loop {
            tokio::select! {
                _ = signals.int.recv() => return Ok(()),
                _ = signals.term.recv() => return Ok(()),
                _ = signals.hup.recv() => {
                    info!("SIGHUP: reloading the config and the data");
                    drop(self.reload(false));
                }
                Some(incoming) = control.next() => {
                    let response = self.handle(incoming.request, incoming.peer, state);
                    drop(incoming.reply.send(response));
                }
                _ = tick.tick() => {
                    self.watch_interfaces(state);
                    self.watch_data();
                    if download.is_none() {
                        download = self.start_download();
                    }
                }
                done = finished(&mut download) => self.downloaded(done),
                Some(scrape) = MetricsServer::next(&mut metrics) => drop(scrape.send(self.metrics_text())),
                ready = readable(&mut events) => {
                    let mut ready = ready.map_err(io_error)?;
                    self.forward_events(ready.get_inner_mut(), control.events());
                    ready.clear_ready();
                }
                ready = readable(&mut logs) => {
                    let mut ready = ready.map_err(io_error)?;
                    ready.get_inner_mut().flush();
                    ready.clear_ready();
                }
            }
        }
    }

    /// Drains the events ring buffer, sending each event as a JSON line to
    /// the `geoblock events` clients. Without clients, events are only
    /// consumed: the ring must not fill up and count later samples as lost.
    fn forward_events(&self, ring: &mut RingBuf<MapData>, clients: &tokio::sync::broadcast::Sender<std::sync::Arc<str>>) {
        let clock = WallClock::now();
        while let Some(item) = ring.next() {
            if clients.receiver_count() == 0 || item.len() < std::mem::size_of::<geoblock_common::DropEvent>() {
                continue;
            }
            // SAFETY: the record is a DropEvent the program wrote, checked for size; read unaligned.
            let raw: geoblock_common::DropEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            if let Some(event) = Event::decode(&raw, &clock, self.opts.policy.mode) {
                let mut line = serde_json::to_string(&event).unwrap_or_default();
                line.push('\n');
                let _ = clients.send(line.into());
            }
        }
    }

    /// Re-reads the config and the data, swaps the new table in and
    /// applies the new policy. An invalid config or data set changes
    /// nothing in the kernel: what is in force stays in force. `force`
    /// loads data the shrink guard would refuse.
    fn reload(&mut self, force: bool) -> Result<String, String> {
        let started = Instant::now();
        let outcome = self.config.read().map_err(|e| refused("config", &e)).and_then(|new| self.swap_in(new, force));
        self.record(outcome, started)
    }

    /// Logs a reload's outcome, and keeps it for `status` and the metrics.
    fn record(&mut self, outcome: Result<String, String>, started: Instant) -> Result<String, String> {
        self.reloads.record(outcome.is_ok(), started.elapsed());
        match &outcome {
            Ok(text) => info!("{text}"),
            Err(text) => error!("{text}"),
        }
        self.last_reload = Some((outcome.clone(), Instant::now()));
        outcome
    }

    /// Loads `new`'s data and policy into the kernel, if the guards let it.
    fn swap_in(&mut self, new: RunOptions, force: bool) -> Result<String, String> {
        let started = Instant::now();
        let Loaded { table, sources, layers } = new.data.load().map_err(|e| refused("data", &e))?;
        if !force {
            check_replacement(&self.table, &table, new.max_shrink).map_err(|e| refused("shrink guard", &e))?;
        }
        if !new.force {
            guarded(&new.management, &new.policy, &table, None).map_err(|e| refused("lock-out guard", &e))?;
        }
        self.warn_restart_only(&new);
        self.geoblock.load_table(&table).map_err(|e| refused("kernel", &e))?;
        self.generation += 1;
        if new.policy != self.opts.policy {
            self.geoblock.apply_policy(&new.policy).map_err(|e| refused("kernel", &e))?;
            info!("policy changed by the reloaded config: {}", describe(&new.policy));
        }
        if new.event_rate != self.opts.event_rate {
            self.geoblock.set_event_rate(new.event_rate).map_err(|e| refused("kernel", &e))?;
            info!("drop events: at most {} per second", new.event_rate);
        }
        let text = format!(
            "reloaded: generation {}, {} IPv4 and {} IPv6 prefixes in {} ms",
            self.generation,
            table.v4.len(),
            table.v6.len(),
            started.elapsed().as_millis()
        );
        (self.table, self.sources, self.layers) = (table, sources, layers);
        (self.opts.data, self.opts.policy, self.opts.detach_on_exit) = (new.data, new.policy, new.detach_on_exit);
        (self.opts.management, self.opts.force, self.opts.event_rate) = (new.management, new.force, new.event_rate);
        if new.refresh != self.opts.refresh {
            self.next_download = new.refresh.map(|every| Instant::now() + every);
        }
        (self.opts.refresh, self.opts.max_shrink) = (new.refresh, new.max_shrink);
        Ok(text)
    }

    /// Reloads the data (config and policy as they are) once a data file
    /// changed and held still for a tick: an edited file, or a finished download.
    fn watch_data(&mut self) {
        if self.opts.data.sources.is_empty() {
            return;
        }
        let now = self.opts.data.modified();
        let loaded: Vec<_> = self.sources.iter().map(|s| s.modified).collect();
        let watch = &mut self.data_watch;
        if now == loaded || watch.refused.as_ref() == Some(&now) {
            watch.settling = None;
            return;
        }
        if watch.settling.as_ref() != Some(&now) {
            watch.settling = Some(now);
            return;
        }
        watch.settling = None;
        info!("data changed on disk: reloading it");
        let started = Instant::now();
        let outcome = self.swap_in(self.opts.clone(), false);
        self.data_watch.refused = outcome.is_err().then_some(now);
        drop(self.record(outcome, started));
    }

    /// With `--refresh`, starts downloading the URL sources when it is time.
    fn start_download(&mut self) -> Option<Download> {
        let (every, due) = (self.opts.refresh?, self.next_download?);
        if Instant::now() < due {
            return None;
        }
        self.next_download = Some(Instant::now() + every);
        let data = self.opts.data.clone();
        Some(tokio::task::spawn_blocking(move || data.fetch()))
    }

    /// A new download is loaded by [`Daemon::watch_data`]; a failed one
    /// changes nothing.
    fn downloaded(&mut self, done: Result<Result<usize, FetchError>, tokio::task::JoinError>) {
        let outcome = match done.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string())) {
            Ok(0) => Ok("the URL sources are unchanged".to_string()),
            Ok(n) => Ok(format!("downloaded {n} changed URL source(s)")),
            Err(e) => Err(format!("download failed, the table in force stays: {e}")),
        };
        match &outcome {
            Ok(text) => info!("{text}"),
            Err(text) => warn!("{text}"),
        }
        self.last_download = Some((outcome, Instant::now()));
    }

    /// Settings a running daemon cannot change: say so instead of ignoring
    /// them silently.
    fn warn_restart_only(&self, new: &RunOptions) {
        let old = &self.opts;
        let changed = [
            ("interfaces", old.interfaces != new.interfaces),
            ("xdp_mode", old.xdp_mode != new.xdp_mode),
            ("lookup", old.backend != new.backend),
            ("state_dir", old.state_dir != new.state_dir),
            ("control_socket", old.control_socket != new.control_socket),
            ("metrics", old.metrics != new.metrics),
        ];
        for (setting, _) in changed.iter().filter(|(_, changed)| *changed) {
            warn!("{setting} changed in the config: it takes effect when the daemon restarts");
        }
    }

    fn handle(&mut self, request: Request, peer: Peer, state: &StateDir) -> Response {
        match request {
            Request::Status => Response { status: Some(self.status(state)), ..Response::ok("") },
            Request::Reload { force } => {
                info!("reload requested by {peer} through the control socket{}", if force { ", forced" } else { "" });
                self.reload(force).map_or_else(Response::error, Response::ok)
            }
            Request::Explain { addresses } => {
                let data = explain::Data { table: &self.table, sources: &self.sources, layers: &self.layers };
                let explained = addresses
                    .into_iter()
                    .map(|ip| explain::explain(data, &self.opts.policy, ip, Some(self.generation)))
                    .collect();
                Response { explain: Some(explained), ..Response::ok("") }
            }
            Request::Change { change, ssh_client, force } => {
                let outcome = self.change_policy(&change, ssh_client, force);
                match &outcome {
                    Ok(text) => info!("policy changed by {peer} through the control socket ({}): {text}", change_text(&change)),
                    Err(e) => warn!("policy change {} by {peer} refused: {e}", change_text(&change)),
                }
                outcome.map_or_else(Response::error, Response::ok)
            }
            // The control socket answers it itself, by streaming.
            Request::Events => Response::error("events are streamed by the control socket, not the daemon loop"),
        }
    }

    /// Applies `change` to the policy in force (the tables stay as they are).
    /// `ssh_client` is the address of the SSH session the command came
    /// from: the guard keeps it reachable unless `force`.
    fn change_policy(&mut self, change: &Change, ssh_client: Option<IpAddr>, force: bool) -> Result<String, String> {
        let policy = self.opts.policy.changed(change).map_err(|e| e.to_string())?;
        if !force {
            guarded(&self.opts.management, &policy, &self.table, ssh_client).map_err(|e| e.to_string())?;
        }
        self.geoblock.apply_policy(&policy).map_err(|e| e.to_string())?;
        let text = format!("policy: {}", describe(&policy));
        self.opts.policy = policy;
        Ok(text)
    }

    fn status(&self, state: &StateDir) -> control::Status {
        let p = &self.opts.policy;
        control::Status {
            state_dir: state.path().display().to_string(),
            interfaces: self
                .attached
                .iter()
                .map(|(name, index)| control::InterfaceStatus {
                    name: name.clone(),
                    attached: *index != 0,
                    xdp_mode: mode_name(self.opts.xdp_mode).into(),
                })
                .collect(),
            policy: control::PolicyStatus {
                mode: p.mode,
                countries: p.countries.iter().map(|&c| country::code(c).to_string()).collect(),
                monitor: p.monitor,
                block_unknown: p.block_unknown,
                exceptions: p.exceptions.iter().map(|n| n.to_string()).collect(),
            },
            data: control::DataStatus {
                sources: data_sources(&self.sources),
                generation: self.generation,
                prefixes_v4: self.table.v4.len(),
                prefixes_v6: self.table.v6.len(),
                refresh_seconds: self.opts.refresh.map(|d| d.as_secs()),
                last_download: self.last_download.as_ref().map(outcome_status),
            },
            last_reload: self.last_reload.as_ref().map(outcome_status),
            metrics: self.metrics_url(),
            events: self.geoblock.event_counts().ok().map(|counts| EventStatus { rate: self.opts.event_rate, counts }),
        }
    }

    fn metrics_url(&self) -> Option<String> {
        self.metrics_addr.map(|addr| format!("http://{addr}/metrics"))
    }

    /// The `/metrics` text: the counters, read once, and the daemon's state.
    fn metrics_text(&self) -> Result<String, String> {
        let stats = self.geoblock.stats().map_err(|e| {
            warn!("metrics: reading the counters: {e}");
            e.to_string()
        })?;
        let state = metrics::DaemonState {
            generation: self.generation,
            prefixes_v4: self.table.v4.len(),
            prefixes_v6: self.table.v6.len(),
            sources: self.sources.iter().map(|s| (s.origin.clone(), age(s).map(|a| a.as_secs_f64()))).collect(),
            reloads: &self.reloads,
        };
        Ok(metrics::render(&stats, &state))
    }

    /// Attaches again to interfaces that came back under a new ifindex
    /// (deleted and recreated): the kernel released the old link with the
    /// old device.
    fn watch_interfaces(&mut self, state: &StateDir) {
        let before = self.attached.clone();
        self.reattach(state);
        if self.attached != before {
            if let Err(e) = self.geoblock.set_interfaces(&self.attached) {
                warn!("counting per interface after a change of interfaces: {e}");
            }
        }
    }

    fn reattach(&mut self, state: &StateDir) {
        for (iface, attached_at) in &mut self.attached {
            let now = ifindex(iface).unwrap_or(0);
            if now == *attached_at {
                continue;
            }
            if now == 0 {
                warn!("{iface} is gone; geoblock attaches again when it comes back");
                *attached_at = 0;
                continue;
            }
            let attach = self.geoblock.attach(iface, self.opts.xdp_mode).and_then(|link| {
                state.replace(&StateDir::link_name(iface), |path| link.pin(path).map(drop))
            });
            match attach {
                Ok(()) => {
                    info!("attached to {iface} again (ifindex {now})");
                    *attached_at = now;
                }
                Err(e) => warn!("{iface} is back but attaching failed (retrying): {e}"),
            }
        }
    }
}

/// SIGINT and SIGTERM stop the daemon; SIGHUP reloads.
struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    fn new() -> Result<Signals, Error> {
        let on = |kind| signal(kind).map_err(io_error);
        Ok(Signals {
            int: on(SignalKind::interrupt())?,
            term: on(SignalKind::terminate())?,
            hup: on(SignalKind::hangup())?,
        })
    }
}

fn io_error(e: std::io::Error) -> Error {
    Error::Io { path: "signal handler".into(), source: e }
}

/// The next readiness of the log ring buffer; never, without one.
async fn readable<T: std::os::fd::AsRawFd>(
    fd: &mut Option<AsyncFd<T>>,
) -> std::io::Result<tokio::io::unix::AsyncFdReadyMutGuard<'_, T>> {
    match fd {
        Some(fd) => fd.readable_mut().await,
        None => std::future::pending().await,
    }
}

/// The index of `iface`, or [`Error::UnknownInterface`].
fn ifindex(iface: &str) -> Result<u32, Error> {
    let name = std::ffi::CString::new(iface).map_err(|_| Error::UnknownInterface(iface.into()))?;
    // SAFETY: name is NUL-terminated.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(Error::UnknownInterface(iface.into())),
        index => Ok(index),
    }
}

/// Runs the lock-out guard on `policy`: the management networks, the SSH
/// session the daemon was started from, and the one a control command came
/// from stay reachable.
fn guarded(management: &[IpNetwork], policy: &Policy, table: &Table, ssh_client: Option<IpAddr>) -> Result<(), Error> {
    let ssh = std::env::var("SSH_CONNECTION").ok();
    let mut protected = guard::protected(management, ssh.as_deref());
    protected.extend(ssh_client.map(|ip| guard::Protected { net: ip.into(), what: "the SSH client" }));
    Ok(guard::check(policy, table, &protected)?)
}

fn outcome_status((outcome, at): &Outcome) -> control::ReloadStatus {
    control::ReloadStatus {
        ok: outcome.is_ok(),
        message: outcome.clone().unwrap_or_else(|e| e),
        seconds_ago: at.elapsed().as_secs(),
    }
}

fn refused(what: &str, e: &dyn std::fmt::Display) -> String {
    format!("reload failed ({what}), the previous table and policy stay in force: {e}")
}

/// The result of a background job; never, without one.
async fn finished<T>(job: &mut Option<tokio::task::JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    let result = match job {
        Some(handle) => handle.await,
        None => std::future::pending().await,
    };
    *job = None;
    result
}

/// The sources of the table in force, with their age.
fn data_sources(sources: &[SourceInfo]) -> Vec<control::SourceStatus> {
    sources
        .iter()
        .map(|info| control::SourceStatus {
            source: info.origin.clone(),
            age_seconds: age(info).map(|a| a.as_secs()),
            date: info.date.clone(),
        })
        .collect()
}

/// How long ago a source's file was written (none for the embedded data).
fn age(source: &SourceInfo) -> Option<Duration> {
    source.modified.and_then(|t| SystemTime::now().duration_since(t).ok())
}

/// A change as the log shows it: its JSON form, short and unambiguous.
fn change_text(change: &Change) -> String {
    serde_json::to_string(change).unwrap_or_default()
}

/// The policy in one line, for logs and `config check`.
pub fn describe(policy: &Policy) -> String {
    let codes: Vec<&str> = policy.countries.iter().map(|&c| country::code(c)).collect();
    let mut text = match policy.mode {
        Mode::Deny => format!("deny-list, blocking {}", codes.join(",")),
        Mode::Allow => format!("allow-list, allowing only {}", codes.join(",")),
    };
    if policy.block_unknown {
        text += "; addresses without a country are dropped";
    }
    if !policy.exceptions.is_empty() {
        let nets: Vec<String> = policy.exceptions.iter().map(|n| n.to_string()).collect();
        text += &format!("; exceptions {}", nets.join(","));
    }
    if policy.monitor {
        text += "; MONITOR mode: nothing is dropped, would-drops are counted";
    }
    text
}
