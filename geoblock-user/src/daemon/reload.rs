//! Reloads: the config and data read again (SIGHUP, `geoblock reload`), data
//! files that changed on disk, and background downloads of URL sources. An
//! invalid config or data set changes nothing in the kernel.
//!
//! Reading, downloading and checking the data takes seconds for a world
//! table, so it runs on a blocking thread; the main loop, the only writer of
//! kernel state, swaps the result in. Meanwhile it answers control commands,
//! metrics scrapes and signals from the table in force, and a stop does not
//! wait for the load (enforcement is in the pins).
//!
//! One load runs at a time. A reload asked for while one runs is queued and
//! starts once that one is done, so that it reads the config and the files
//! as they are then, not as the running load found them. Requests that come
//! meanwhile join the queued one: however many, they make one more reload,
//! forced if any of them was, whose outcome answers each `geoblock reload`
//! client. Data files are not watched while a load runs; a change is seen at
//! the first tick after it.

use std::{
    collections::BTreeSet,
    sync::Arc,
    time::{Instant, SystemTime},
};

use tokio::{sync::oneshot, task::JoinError};
use tracing::{error, info, warn};

use super::{
    config::{Config, RunOptions},
    guarded,
    policy_url::not_older,
    reload_selector_table, Daemon, Download,
};
use crate::kernel::flows::FlowTable;
use crate::{
    data::{
        fetch::{redacted, FetchError},
        shrink::{check_coverage, check_lists, check_replacement},
        Loaded,
    },
    policy::{Policy, SelectorTable},
    protocol::{self, Response},
};

/// Changes of the data files, seen by their modification times.
#[derive(Default)]
pub(super) struct DataWatch {
    /// A change seen one tick ago: loaded once it holds still for a tick,
    /// so a file being copied in is not read half-written.
    settling: Option<Vec<Option<SystemTime>>>,
    /// Files whose reload was refused: not tried again until they change.
    refused: Option<Vec<Option<SystemTime>>>,
}

/// The reload whose data is being read, and the one asked for meanwhile.
#[derive(Default)]
pub(super) struct Loading {
    running: Option<Running>,
    queued: Option<Asked>,
}

struct Running {
    task: tokio::task::JoinHandle<Result<Option<Checked>, String>>,
    since: Instant,
    cause: Cause,
}

/// Why a reload runs.
enum Cause {
    /// SIGHUP or `geoblock reload`: the config is read again too.
    Asked(Asked),
    /// The data files changed on disk (edited, or downloaded), to these
    /// modification times.
    DataChanged(Vec<Option<SystemTime>>),
    /// The policy URL's timer: a changed document is read with the data.
    Published,
}

/// Reloads of the config and the data asked for, made one.
#[derive(Default)]
struct Asked {
    /// Load data the shrink guard refuses.
    force: bool,
    /// `geoblock reload` clients waiting for the outcome.
    clients: Vec<oneshot::Sender<Response>>,
}

/// The settings and the data a reload read, past the guards, and the
/// selector table of the policy in force and the new one.
type Checked = (RunOptions, Loaded, SelectorTable);

/// What became of a background load: `None` when there was nothing new
/// (the published policy is unchanged).
type Done = Result<Result<Option<Checked>, String>, JoinError>;

/// The policy URL's timer and what its downloads said.
pub(super) struct PolicyFetch {
    next: Instant,
    last: Option<super::Outcome>,
    /// Downloads that failed or were refused, since the start.
    failures: u64,
    /// A control command changed the policy since the published one was
    /// applied: the serial no longer says it all.
    pub(super) changed_locally: bool,
}

impl Default for PolicyFetch {
    /// The first download right after the start, which may have taken the
    /// policy in force without asking.
    fn default() -> PolicyFetch {
        PolicyFetch { next: Instant::now(), last: None, failures: 0, changed_locally: false }
    }
}

impl PolicyFetch {
    /// For `status`.
    pub(super) fn status(&self, opts: &RunOptions) -> Option<protocol::PolicyUrlStatus> {
        let url = opts.policy_url.as_ref()?;
        Some(protocol::PolicyUrlStatus {
            url: url.url.clone(),
            serial: opts.policy_serial().unwrap_or_default(),
            signed: url.key.is_some(),
            refresh_seconds: url.refresh.as_secs(),
            last_fetch: self.last.as_ref().map(super::requests::outcome_status),
            fetch_failures: self.failures,
            changed_locally: self.changed_locally,
        })
    }

    /// For the metrics: the URL, the serial in force and the failed downloads.
    pub(super) fn counts(&self, opts: &RunOptions) -> Option<(String, u64, u64)> {
        let url = opts.policy_url.as_ref()?;
        Some((redacted(&url.url), opts.policy_serial().unwrap_or_default(), self.failures))
    }
}

impl Loading {
    /// The outcome of the running load; never, while none runs.
    pub(super) async fn done(&mut self) -> Done {
        match &mut self.running {
            Some(running) => (&mut running.task).await,
            None => std::future::pending().await,
        }
    }

    /// For `status`: the running reload, if any.
    pub(super) fn status(&self) -> Option<protocol::Reloading> {
        self.running.as_ref().map(|running| protocol::Reloading {
            seconds_running: running.since.elapsed().as_secs(),
            queued: self.queued.is_some(),
        })
    }
}

impl Daemon {
    /// Re-reads the config and the data, swaps the new table in and
    /// applies the new policy, in the background: now, or queued behind
    /// the reload running. `client` is answered with the outcome. `force`
    /// loads data the shrink guard would refuse.
    pub(super) fn reload(&mut self, force: bool, client: Option<oneshot::Sender<Response>>) {
        if self.loading.running.is_none() {
            return self.start_load(Cause::Asked(Asked { force, clients: client.into_iter().collect() }));
        }
        let queued = self.loading.queued.get_or_insert_with(|| {
            info!("a reload is running: this one starts when it is done");
            Asked::default()
        });
        queued.force |= force;
        queued.clients.extend(client);
    }

    /// Reads the config (for a reload asked for) and the data on a
    /// blocking thread, and checks them against the table in force.
    fn start_load(&mut self, cause: Cause) {
        let (in_force, options) = (Arc::clone(&self.loaded), self.opts.clone());
        let policy = self.opts.policy.clone();
        let (reread, force) = match &cause {
            Cause::Asked(asked) => (Some(self.config.clone()), asked.force),
            Cause::DataChanged(_) | Cause::Published => (None, false),
        };
        let task = tokio::task::spawn_blocking(move || {
            let new = match reread {
                Some(config) => config.read().map_err(|e| refused("config", &e))?,
                None => options,
            };
            check(new, &in_force, &policy, force).map(Some)
        });
        self.loading.running = Some(Running { task, since: Instant::now(), cause });
    }

    /// With a policy URL, when its timer is due and no load runs: downloads
    /// the document if it changed and, when it is not the one in force,
    /// checks it in the background as a reload checks the config (the data
    /// read again, the shrink guard, and the lock-out guard, which `--force`
    /// does not turn off for a published policy).
    pub(super) fn fetch_policy(&mut self) {
        let Some(url) = self.opts.policy_url.clone() else {
            return;
        };
        if self.loading.running.is_some() || Instant::now() < self.policy_fetch.next {
            return;
        }
        self.policy_fetch.next = Instant::now() + url.refresh;
        let (in_force, policy, config) = (Arc::clone(&self.loaded), self.opts.policy.clone(), self.config.clone());
        let serial = self.opts.policy_serial();
        let task = tokio::task::spawn_blocking(move || {
            let local = config.local().map_err(|e| refused("config", &e))?;
            if local.policy_url().ok().flatten().as_ref() != Some(&url) {
                return Err("policy URL: policy_url, policy_key or policy_refresh changed in the config: \
                            `geoblock reload` applies them"
                    .into());
            }
            let fetched = url.download().and_then(|()| url.changed()).map_err(|e| format!("policy URL: {e}"))?;
            let Some(published) = fetched else {
                return Ok(None);
            };
            not_older(published.document.serial, serial).map_err(|e| format!("policy URL: {}: {e}", url.url))?;
            let mut new =
                local.with_published(published).and_then(Config::resolve).map_err(|e| refused("config", &e))?;
            new.force = false;
            check(new, &in_force, &policy, false).map(Some)
        });
        self.loading.running = Some(Running { task, since: Instant::now(), cause: Cause::Published });
    }

    /// Swaps in what the background load read, if it passed; records the
    /// outcome, answers the clients that asked, and starts the queued reload.
    pub(super) fn loaded_in_background(&mut self, done: Done) {
        let Some(Running { since, cause, .. }) = self.loading.running.take() else {
            return;
        };
        let checked = done.unwrap_or_else(|e| Err(refused("data", &e)));
        let outcome = checked.and_then(|checked| {
            let Some((new, loaded, selectors)) = checked else {
                return Ok(None);
            };
            let new = match &cause {
                Cause::DataChanged(_) => self.keep_policy(new, &loaded)?,
                Cause::Asked(_) | Cause::Published => new,
            };
            self.swap_in(new, loaded, selectors, since).map(Some)
        });
        match cause {
            Cause::Asked(asked) => {
                let outcome = self.record(outcome.map(Option::unwrap_or_default), since);
                // The policy is the config's (or the published one) again.
                self.policy_fetch.changed_locally &= outcome.is_err();
                // The published policy too is asked for at the next tick.
                self.policy_fetch.next = Instant::now();
                for client in asked.clients {
                    drop(client.send(outcome.clone().map_or_else(Response::error, Response::ok)));
                }
            }
            Cause::DataChanged(modified) => {
                let outcome = self.record(outcome.map(Option::unwrap_or_default), since);
                self.data_watch.refused = outcome.is_err().then_some(modified);
            }
            Cause::Published => self.published(outcome, since),
        }
        if let Some(queued) = self.loading.queued.take() {
            self.start_load(Cause::Asked(queued));
        }
    }

    /// Records what became of a download of the published policy: a new
    /// document in force is a reload too; a failed or refused one counts
    /// as a failure, and the policy in force stays.
    fn published(&mut self, outcome: Result<Option<String>, String>, since: Instant) {
        let serial = self.opts.policy_serial().unwrap_or_default();
        let outcome = match outcome {
            Ok(None) => Ok(format!("unchanged, serial {serial}")),
            Ok(Some(text)) => {
                self.policy_fetch.changed_locally = false;
                self.record(Ok(format!("published policy serial {serial} applied; {text}")), since)
            }
            Err(text) => {
                self.policy_fetch.failures += 1;
                warn!("{text}");
                Err(text)
            }
        };
        self.policy_fetch.last = Some((outcome, Instant::now()));
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

    /// A data reload keeps the policy in force, which a control command may
    /// have changed while the data loaded: then the lock-out guard checked
    /// another policy, and is asked again for this one and the new data.
    fn keep_policy(&self, mut new: RunOptions, loaded: &Loaded) -> Result<RunOptions, String> {
        if new.policy != self.opts.policy {
            if !self.opts.force {
                guarded(&self.opts.management, &self.opts.policy, loaded, None)
                    .map_err(|e| refused("lock-out guard", &e))?;
            }
            new.policy = self.opts.policy.clone();
        }
        Ok(new)
    }

    /// Loads `loaded`'s table and `new`'s policy into the kernel: what was
    /// read and checked in the background since `started`, with the
    /// selector table compiled there (again here if the policy in force
    /// changed meanwhile and uses other selectors).
    fn swap_in(
        &mut self,
        new: RunOptions,
        loaded: Loaded,
        selectors: SelectorTable,
        started: Instant,
    ) -> Result<String, String> {
        self.warn_restart_only(&new);
        let wanted = self.opts.policy.selectors().into_iter().chain(new.policy.selectors());
        let selectors = match wanted.collect::<BTreeSet<_>>().is_subset(&selectors.selectors) {
            true => selectors,
            false => reload_selector_table(&[&self.opts.policy, &new.policy], &loaded, &self.loaded)
                .map_err(|e| refused("selectors", &e))?,
        };
        self.geoblock
            .load_table_with_selectors(&loaded.table, &selectors, &new.policy)
            .map_err(|e| refused("kernel", &e))?;
        self.generation += 1;
        if new.policy != self.opts.policy {
            self.geoblock.apply_policy(&new.policy).map_err(|e| refused("kernel", &e))?;
            info!("policy changed by the reloaded config: {}", new.policy);
        }
        if new.event_rate != self.opts.event_rate {
            self.geoblock.set_event_rate(new.event_rate).map_err(|e| refused("kernel", &e))?;
            info!("drop events: at most {} per second", new.event_rate);
        }
        if new.reject_rate != self.opts.reject_rate {
            self.geoblock.set_reject_rate(new.reject_rate).map_err(|e| refused("kernel", &e))?;
            info!("answers to rejected packets: at most {} per second", new.reject_rate);
            self.opts.reject_rate = new.reject_rate;
        }
        if new.flows != self.opts.flows {
            self.geoblock.set_flow_timeouts(&new.flows).map_err(|e| refused("kernel", &e))?;
            self.opts.flows = FlowTable { size: self.opts.flows.size, ..new.flows };
            // Longer timeouts: the half to switch to must collect that long.
            self.next_filter_rotation = Instant::now() + self.opts.flows.filter_period();
        }
        let text = format!(
            "reloaded: generation {}, {} IPv4 and {} IPv6 prefixes in {} ms",
            self.generation,
            loaded.table.v4.len(),
            loaded.table.v6.len(),
            started.elapsed().as_millis()
        );
        super::log_sources(&loaded);
        super::log_trie_nodes(&self.geoblock);
        self.loaded = Arc::new(loaded);
        (self.opts.data, self.opts.policy, self.opts.detach_on_exit) = (new.data, new.policy, new.detach_on_exit);
        (self.opts.management, self.opts.force, self.opts.event_rate) = (new.management, new.force, new.event_rate);
        if new.refresh != self.opts.refresh {
            self.next_download = new.refresh.map(|every| Instant::now() + every);
        }
        (self.opts.refresh, self.opts.max_shrink) = (new.refresh, new.max_shrink);
        (self.opts.policy_url, self.opts.published) = (new.policy_url, new.published);
        self.keep_published();
        Ok(text)
    }

    /// Reloads the data (config and policy as they are) once a data file
    /// changed and held still for a tick: an edited file, or a finished download.
    pub(super) fn watch_data(&mut self) {
        let data = &self.opts.data;
        let nothing = data.sources.is_empty() && data.asn.is_empty() && data.lists.is_empty();
        if nothing || self.loading.running.is_some() {
            return;
        }
        let now = data.modified();
        let in_force = self.loaded.modified(data);
        let watch = &mut self.data_watch;
        if now == in_force || watch.refused.as_ref() == Some(&now) {
            watch.settling = None;
            return;
        }
        if watch.settling.as_ref() != Some(&now) {
            watch.settling = Some(now);
            return;
        }
        watch.settling = None;
        info!("data changed on disk: reloading it");
        self.start_load(Cause::DataChanged(now));
    }

    /// With `--refresh`, starts downloading the URL sources when it is time.
    pub(super) fn start_download(&mut self) -> Option<Download> {
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
    pub(super) fn downloaded(&mut self, done: Result<Result<usize, FetchError>, tokio::task::JoinError>) {
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
            ("cgroup", old.cgroup != new.cgroup),
            ("control_socket", old.control_socket != new.control_socket),
            ("metrics", old.metrics != new.metrics),
            ("flows.size", old.flows.size != new.flows.size),
        ];
        for (setting, _) in changed.iter().filter(|(_, changed)| *changed) {
            warn!("{setting} changed in the config: it takes effect when the daemon restarts");
        }
    }
}

fn refused(what: &str, e: &dyn std::fmt::Display) -> String {
    format!("reload failed ({what}), the previous table and policy stay in force: {e}")
}

/// Reads `new`'s data and runs the guards on it: the shrink guard against
/// `in_force` (its table, its AS data when there are AS sources, and each
/// list of a name in force) unless `force`, the lock-out guard unless the
/// config's force; compiles the selectors of `policy` (in force) and
/// `new`'s from it. Off the main loop: this takes seconds for a world table.
fn check(new: RunOptions, in_force: &Loaded, policy: &Policy, force: bool) -> Result<Checked, String> {
    let loaded = new.data.load().map_err(|e| refused("data", &e))?;
    if !force {
        check_replacement(&in_force.table, &loaded.table, new.max_shrink, &new.policy.countries())
            .map_err(|e| refused("shrink guard", &e))?;
        if !new.data.asn.is_empty() {
            check_coverage("the new AS table", &in_force.asn.table, &loaded.asn.table, new.max_shrink)
                .map_err(|e| refused("shrink guard, AS data", &e))?;
        }
        check_lists(&in_force.lists, &loaded.lists, new.max_shrink).map_err(|e| refused("shrink guard", &e))?;
    }
    if !new.force {
        guarded(&new.management, &new.policy, &loaded, None).map_err(|e| refused("lock-out guard", &e))?;
    }
    let selectors =
        reload_selector_table(&[policy, &new.policy], &loaded, in_force).map_err(|e| refused("selectors", &e))?;
    Ok((new, loaded, selectors))
}
