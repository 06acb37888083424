//! `geoblock run`: take over (or create) the pinned state, fill the tables,
//! attach, then enforce until SIGINT/SIGTERM, reloading the data on SIGHUP
//! (read in the background: see `reload`) and re-attaching to interfaces
//! that come back.
//!
//! Enforcement lives in the pins (see [`crate::kernel::state`]), not in this
//! process: when the daemon exits or dies, the program stays attached with
//! the last table it loaded, and the next daemon adopts it without a gap.

pub mod config;
pub mod control;
mod enforcement;
pub mod events;
mod listen;
pub mod metrics;
pub mod notify;
pub mod policy_url;
mod reload;
mod requests;

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use ipnetwork::IpNetwork;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, Signal, SignalKind},
};
use tracing::{info, warn};

use self::{
    config::{ConfigLayers, RunOptions},
    control::{ControlSocket, EventLines},
    enforcement::Incidents,
    events::WallClock,
    metrics::{MetricsServer, Reloads},
    reload::{DataWatch, Loading, PolicyFetch},
};
use crate::{
    data::{
        fetch::FetchError,
        shrink::{check_coverage, check_replacement},
        table::Table,
        CodeCounts, Loaded,
    },
    kernel::{events::EventRing, sockets, state::StateDir, Geoblock, PinnedMaps},
    policy::{lockout, selectors::SelectorError, Policy, SelectorTable},
    protocol::{self, Versioned},
    Error,
};

/// How often interfaces are checked for having disappeared or come back,
/// and for running geoblock's program through its link.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Runs until SIGINT or SIGTERM. Everything is validated, filled and
/// attached before the `attached to` line. When a first start fails, what
/// it created is removed; when a takeover fails, the pinned state (and the
/// enforcement it carries) is left as it was.
pub async fn run(opts: RunOptions, config: ConfigLayers) -> Result<(), Error> {
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
    config: ConfigLayers,
    geoblock: Geoblock,
    /// Configured interfaces and the ifindex each is attached at (0: gone).
    attached: Vec<(String, u32)>,
    /// The cgroup the socket hooks attach to.
    cgroup: PathBuf,
    /// Tampering found on them, checked every tick.
    incidents: Incidents,
    /// Tables loaded so far.
    generation: u64,
    /// The data in force: its table, and what it was read from. Shared
    /// with a background load, whose shrink guard compares against it.
    loaded: Arc<Loaded>,
    last_reload: Option<Outcome>,
    /// The reload reading data in the background, if one is.
    loading: Loading,
    data_watch: DataWatch,
    /// When URL sources are next downloaded (with `--refresh`).
    next_download: Option<Instant>,
    /// When the flow filter is next rotated (see `Geoblock::rotate_flow_filter`):
    /// never sooner than its period after the last rotation, whoever made it.
    next_filter_rotation: Instant,
    last_download: Option<Outcome>,
    /// Taken by [`Daemon::serve`].
    metrics: Option<MetricsServer>,
    /// Where it listens, for `status` (the port bound when 0 was asked for).
    metrics_addr: Option<SocketAddr>,
    reloads: Reloads,
    /// The policy URL's timer and downloads.
    policy_fetch: PolicyFetch,
}

/// What an operation said, and when.
type Outcome = (Result<String, String>, Instant);

/// A blocking download of the URL sources, running off the main loop.
type Download = tokio::task::JoinHandle<Result<usize, FetchError>>;

impl Daemon {
    fn start(opts: RunOptions, config: ConfigLayers, state: &StateDir) -> Result<Daemon, Error> {
        // First: a port in use fails the start before the kernel is touched.
        let metrics = opts.metrics.map(MetricsServer::bind).transpose()?;
        let loaded = opts.data.load()?;
        report_guard(&opts.management);
        // Before anything changes in the kernel. Whatever table a previous
        // daemon left is not known here: only an empty one is refused.
        if !opts.force {
            check_replacement(&Table::default(), &loaded.table, opts.max_shrink, &opts.policy.countries())?;
            if !opts.data.asn.is_empty() {
                check_coverage("the AS table", &Table::default(), &loaded.asn.table, opts.max_shrink)?;
            }
            guarded(&opts.management, &opts.policy, &loaded, None)?;
        }
        let cgroup = match &opts.cgroup {
            Some(path) => path.clone(),
            None => sockets::cgroup_root()?,
        };
        let geoblock = load_kernel(&opts, &loaded, state)?;
        let mut daemon = Daemon {
            attached: Vec::new(),
            cgroup,
            incidents: Incidents::new(),
            geoblock,
            next_download: opts.refresh.map(|every| Instant::now() + every),
            next_filter_rotation: Instant::now() + opts.flows.filter_period(),
            policy_fetch: PolicyFetch::default(),
            opts,
            config,
            generation: 1,
            loaded: Arc::new(loaded),
            last_reload: None,
            loading: Loading::default(),
            data_watch: DataWatch::default(),
            last_download: None,
            metrics_addr: metrics.as_ref().map(|m| m.addr),
            metrics,
            reloads: Reloads::default(),
        };
        daemon.count_interfaces()?;
        let how = daemon.attach_all(state)?;
        daemon.geoblock.attach_hooks(&daemon.cgroup, state)?;
        daemon.geoblock.pin_program(state)?;
        daemon.release_unconfigured(state)?;
        info!("policy: {}", daemon.opts.policy);
        if let Some(url) = &daemon.opts.policy_url {
            daemon.report_policy_url(url);
            daemon.keep_published();
        }
        if let Some(url) = daemon.metrics_url() {
            info!("metrics on {url}");
        }
        info!(
            "attached to {} (xdp mode {}; {}), socket hooks to cgroup {}; state pinned in {}",
            daemon.opts.interfaces.join(", "),
            daemon.opts.xdp_mode.name(),
            how.join(", "),
            daemon.cgroup.display(),
            state.path().display()
        );
        Ok(daemon)
    }

    /// Records the published document the policy in force is from, for the
    /// next start and reload. Failing that, they take an older one (or the
    /// last download), and the timer applies this one again.
    fn keep_published(&self) {
        if let (Some(url), Some(published)) = (&self.opts.policy_url, &self.opts.published) {
            if let Err(e) = url.keep(published) {
                warn!("keeping the published policy in force: {e}");
            }
        }
    }

    /// Says where the policy comes from, and warns when anyone on the
    /// path could change it.
    fn report_policy_url(&self, url: &policy_url::PolicyUrl) {
        let serial = self.opts.policy_serial().unwrap_or_default();
        let signed = if url.key.is_some() { "signed" } else { "unsigned" };
        info!("policy published at {}: serial {serial}, {signed}, asked every {:?}", url.url, url.refresh);
        if url.key.is_none() && url.url.starts_with("http://") {
            warn!("policy_url is plain HTTP without policy_key: anyone on the path can change this host's policy");
        }
    }

    /// Moves each configured interface to this program: a live pinned link
    /// is updated in place, an interface without one gets a new link. New
    /// links are pinned only once all interfaces succeeded, so a failure
    /// leaves no new attachment behind.
    fn attach_all(&mut self, state: &StateDir) -> Result<Vec<String>, Error> {
        let mut fresh = Vec::new();
        let mut how = Vec::new();
        for iface in &self.opts.interfaces {
            let link = self.geoblock.take_over(iface, self.opts.xdp_mode, state)?;
            how.push(match link.attached() {
                false => format!("{iface}: pinned link taken over"),
                true => format!("{iface}: new link"),
            });
            fresh.push(link);
            self.attached.push((iface.clone(), ifindex(iface)?));
        }
        for link in fresh {
            link.pin(state)?;
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

    /// Rotates the flow filter once its period is over.
    fn rotate_flow_filter(&mut self) {
        if Instant::now() < self.next_filter_rotation {
            return;
        }
        if let Err(e) = self.geoblock.rotate_flow_filter() {
            warn!("rotating the flow filter: {e}; retrying in a second");
            return;
        }
        self.next_filter_rotation = Instant::now() + self.opts.flows.filter_period();
    }

    /// Detaches interfaces a previous daemon attached that are no longer
    /// configured.
    fn release_unconfigured(&self, state: &StateDir) -> Result<(), Error> {
        for iface in state.linked_interfaces() {
            if !self.opts.interfaces.contains(&iface) {
                state.unlink(&iface)?;
                info!("detached from {iface}: no longer configured");
            }
        }
        Ok(())
    }

    /// Waits for SIGINT/SIGTERM; meanwhile reloads on SIGHUP, answers the
    /// control socket, watches the interfaces and forwards kernel-side log
    /// records. A reload's data is read on a blocking thread and swapped in
    /// here when it is done: the loop goes on serving meanwhile, and a stop
    /// does not wait for it.
    async fn serve(&mut self, state: &StateDir, mut signals: Signals, mut control: ControlSocket) -> Result<(), Error> {
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        let mut metrics = self.metrics.take();
        let readiness = metrics.as_ref().map(|m| m.readiness.clone()).unwrap_or_default();
        let mut logs = self.geoblock.take_logger().map(watch_fd).transpose()?;
        let mut events = Some(watch_fd(self.geoblock.take_events()?)?);
        let mut download: Option<Download> = None;
        loop {
            tokio::select! {
                _ = signals.int.recv() => return Ok(()),
                _ = signals.term.recv() => return Ok(()),
                _ = signals.hup.recv() => {
                    info!("SIGHUP: reloading the config and the data");
                    self.reload(false, None);
                }
                Some(incoming) = control.next() => self.handle(incoming, state),
                done = self.loading.done() => self.loaded_in_background(done),
                _ = tick.tick() => {
                    self.watch_interfaces(state);
                    readiness.set(self.enforced());
                    self.watch_data();
                    self.rotate_flow_filter();
                    self.fetch_policy();
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
    fn forward_events(&self, ring: &mut EventRing, clients: &EventLines) {
        let clock = WallClock::now();
        ring.drain(|raw| {
            if clients.receiver_count() == 0 {
                return;
            }
            if let Some(event) =
                events::decode(raw, &clock, &self.opts.policy, |slot| self.geoblock.selector_name(slot))
            {
                let _ = clients.send(protocol::line(&Versioned::new(&event)).into());
            }
        });
    }

    /// Attaches again to interfaces that came back under a new ifindex
    /// (deleted and recreated): the kernel released the old link with the
    /// old device. Then checks that the others are still enforced.
    fn watch_interfaces(&mut self, state: &StateDir) {
        let before = self.attached.clone();
        let present = self.reattach(state);
        if self.attached != before {
            if let Err(e) = self.geoblock.set_interfaces(&self.attached) {
                warn!("counting per interface after a change of interfaces: {e}");
            }
        }
        self.verify_enforcement(present, state);
        self.verify_hooks(state);
    }

    /// Follows each interface to its index now; gives those attached where
    /// they are found, for [`Daemon::verify_enforcement`].
    fn reattach(&mut self, state: &StateDir) -> Vec<(String, u32)> {
        let mut present = Vec::new();
        for (iface, attached_at) in &mut self.attached {
            let now = match ifindex(iface) {
                Ok(index) => index,
                Err(Error::UnknownInterface(_)) => 0,
                // Not known this time (out of file descriptors): the next tick asks again.
                Err(_) => continue,
            };
            if now == 0 {
                if *attached_at != 0 {
                    warn!("{iface} is gone; geoblock attaches again when it comes back");
                    *attached_at = 0;
                }
                continue;
            }
            if now != *attached_at {
                match self.geoblock.attach_pinned(iface, self.opts.xdp_mode, state) {
                    Ok(()) => {
                        info!("attached to {iface} again (ifindex {now})");
                        *attached_at = now;
                    }
                    Err(e) => {
                        warn!("{iface} is back but attaching failed (retrying): {e}");
                        continue;
                    }
                }
            }
            present.push((iface.clone(), now));
        }
        present
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

/// The index of `iface`, or [`Error::UnknownInterface`]. Asking takes a
/// socket: when none can be had (out of file descriptors), that is an
/// error of its own, not a missing interface.
fn ifindex(iface: &str) -> Result<u32, Error> {
    let name = std::ffi::CString::new(iface).map_err(|_| Error::UnknownInterface(iface.into()))?;
    // SAFETY: name is NUL-terminated.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => match std::io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::ENODEV) => Err(Error::UnknownInterface(iface.into())),
            e => Err(Error::Io { path: format!("interface {iface}").into(), source: e }),
        },
        index => Ok(index),
    }
}

/// Loads the program with the pinned maps of `state` and fills them with
/// `loaded`'s table and `opts`' policy. Tables and policy go in before any
/// link runs this program, so an adopted interface switches from the old
/// verdicts to the new ones in one step.
fn load_kernel(opts: &RunOptions, loaded: &Loaded, state: &StateDir) -> Result<Geoblock, Error> {
    let started = Instant::now();
    let (mut geoblock, maps) = Geoblock::load_pinned(opts.backend, state, &opts.flows)?;
    match maps {
        PinnedMaps::Created => {}
        PinnedMaps::Reused => info!("adopting the pinned state in {}", state.path().display()),
        PinnedMaps::Replaced { found } => warn!(
            "pinned maps in {} are of ABI version {found}, this geoblock uses {}: replacing them",
            state.path().display(),
            geoblock_common::ABI_VERSION
        ),
    }
    let selectors = selector_table(&[&opts.policy], loaded)?;
    geoblock.load_table_with_selectors(&loaded.table, &selectors, &opts.policy)?;
    geoblock.apply_policy(&opts.policy)?;
    geoblock.set_event_rate(opts.event_rate)?;
    geoblock.set_reject_rate(opts.reject_rate)?;
    let (v4, v6) = (loaded.table.v4.len(), loaded.table.v6.len());
    info!("loaded {v4} IPv4 and {v6} IPv6 prefixes in {} ms", started.elapsed().as_millis());
    log_trie_nodes(&geoblock);
    log_sources(loaded);
    Ok(geoblock)
}

/// The selector table for the selectors `policies` use (the policy in
/// force and the one to come), from `loaded`'s AS data and lists.
fn selector_table(policies: &[&Policy], loaded: &Loaded) -> Result<SelectorTable, SelectorError> {
    reload_selector_table(policies, loaded, loaded)
}

/// [`selector_table`] for a reload, from its new data `loaded`: a list the
/// new data no longer has (the new config dropped or renamed it) is taken
/// from `in_force`, whose policy may still name it until the rules switch.
fn reload_selector_table(
    policies: &[&Policy],
    loaded: &Loaded,
    in_force: &Loaded,
) -> Result<SelectorTable, SelectorError> {
    let dropped = in_force.lists.iter().filter(|old| !loaded.lists.iter().any(|l| l.name == old.name));
    let lists: Vec<_> = loaded.lists.iter().chain(dropped).cloned().collect();
    let selectors = policies.iter().flat_map(|p| p.selectors()).collect();
    SelectorTable::compile(&selectors, &loaded.asn, &lists)
}

/// The trie's size: real data sets take 22k to 28k nodes per family, of
/// the 64,768 a trie can name.
fn log_trie_nodes(geoblock: &Geoblock) {
    let (nodes, memory) = (geoblock.trie_nodes(), geoblock.table_memory());
    if nodes.v4 + nodes.v6 > 0 {
        info!(
            "trie: {} IPv4 and {} IPv6 nodes (of {}), {:.1} MB of kernel memory",
            nodes.v4,
            nodes.v6,
            geoblock_common::TRIE_MAX_NODES,
            (memory.v4 + memory.v6) as f64 / 1e6
        );
    }
}

/// Says, per source, where an MMDB's countries came from and what loading
/// did with codes that are not assigned ones.
fn log_sources(loaded: &Loaded) {
    for source in &loaded.sources {
        if let Some(field) = &source.country_field {
            info!("{}: countries from the field {field}", source.origin);
        }
        if source.codes != CodeCounts::default() {
            info!("{}: {}", source.origin, source.codes);
        }
    }
    for list in &loaded.lists {
        let (entries, info) = (list.info.entries, &list.info);
        info!(
            "list {}: {} IPv4 and {} IPv6 entries ({}) as {} and {} prefixes, from {}",
            list.name,
            entries.v4,
            entries.v6,
            info.format,
            list.v4.len(),
            list.v6.len(),
            info.origin
        );
    }
}

/// Watches `fd` for readability on the event loop.
fn watch_fd<T: std::os::fd::AsRawFd>(fd: T) -> Result<AsyncFd<T>, Error> {
    // SAFETY: the kernel objects behind these fds (a ring buffer, the log
    // ring) own them for as long as they live, and the AsyncFd owns them.
    unsafe { AsyncFd::register(fd) }.map_err(|e| io_error(e.into_parts().1))
}

/// Runs the lock-out guard on `policy` against `loaded`'s table and
/// selectors: the management networks, the SSH session the daemon was
/// started from, the one a control command came from, and the host's
/// resolvers and default gateways stay reachable.
fn guarded(
    management: &[IpNetwork],
    policy: &Policy,
    loaded: &Loaded,
    ssh_client: Option<IpAddr>,
) -> Result<(), Error> {
    let upstreams = read_upstreams();
    let protected = lockout::protected(management, &lockout::ssh_clients(ssh_client).clients, &upstreams);
    let selectors = selector_table(&[policy], loaded)?;
    Ok(lockout::check(policy, &loaded.table, &selectors, &protected)?)
}

/// The host's resolvers and default gateways; a file that cannot be read
/// is warned of, and guards nothing: it refuses no policy.
fn read_upstreams() -> Vec<lockout::Upstream> {
    let read = lockout::upstreams();
    for problem in &read.problems {
        warn!("lock-out guard: {problem}: the resolvers or gateways it names are not protected");
    }
    read.upstreams
}

/// Says at start what the lock-out guard keeps reachable; warns when no
/// way in is among it, so that a guard which cannot see the way in does
/// not pass for one that protects it.
fn report_guard(management: &[IpNetwork]) {
    let ssh = lockout::ssh_clients(None);
    let upstreams = read_upstreams();
    if management.is_empty() && ssh.clients.is_empty() {
        let ports: Vec<String> = ssh.ports.iter().map(u16::to_string).collect();
        warn!(
            "lock-out guard: no way in to protect: no SSH client (SSH_CONNECTION is unset, and no connection to sshd \
             port {} is established in this network namespace) and no management network: a policy change could \
             cut off the way in (give --management, or management = [...] in the config)",
            ports.join(",")
        );
    }
    let protected = lockout::protected(management, &ssh.clients, &upstreams);
    if !protected.is_empty() {
        let protected: Vec<String> = protected.iter().map(ToString::to_string).collect();
        info!("lock-out guard: keeping reachable {}", protected.join(", "));
    }
    for upstream in lockout::on_loopback(&upstreams) {
        info!("lock-out guard: {upstream} is on loopback, which no rule blocks");
    }
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
