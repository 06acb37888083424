//! Reloads: the config and data read again (SIGHUP, `geoblock reload`), data
//! files that changed on disk, and background downloads of URL sources. An
//! invalid config or data set changes nothing in the kernel.

use std::time::{Instant, SystemTime};

use tracing::{error, info, warn};

use super::{config::RunOptions, guarded, Daemon, Download};
use crate::data::{fetch::FetchError, shrink::check_replacement};

/// Changes of the data files, seen by their modification times.
#[derive(Default)]
pub(super) struct DataWatch {
    /// A change seen one tick ago: loaded once it holds still for a tick,
    /// so a file being copied in is not read half-written.
    settling: Option<Vec<Option<SystemTime>>>,
    /// Files whose reload was refused: not tried again until they change.
    refused: Option<Vec<Option<SystemTime>>>,
}

impl Daemon {
    /// Re-reads the config and the data, swaps the new table in and
    /// applies the new policy. An invalid config or data set changes
    /// nothing in the kernel: what is in force stays in force. `force`
    /// loads data the shrink guard would refuse.
    pub(super) fn reload(&mut self, force: bool) -> Result<String, String> {
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
        let loaded = new.data.load().map_err(|e| refused("data", &e))?;
        if !force {
            check_replacement(&self.loaded.table, &loaded.table, new.max_shrink, &new.policy.countries)
                .map_err(|e| refused("shrink guard", &e))?;
        }
        if !new.force {
            guarded(&new.management, &new.policy, &loaded.table, None).map_err(|e| refused("lock-out guard", &e))?;
        }
        self.warn_restart_only(&new);
        self.geoblock.load_table(&loaded.table).map_err(|e| refused("kernel", &e))?;
        self.generation += 1;
        if new.policy != self.opts.policy {
            self.geoblock.apply_policy(&new.policy).map_err(|e| refused("kernel", &e))?;
            info!("policy changed by the reloaded config: {}", new.policy);
        }
        if new.event_rate != self.opts.event_rate {
            self.geoblock.set_event_rate(new.event_rate).map_err(|e| refused("kernel", &e))?;
            info!("drop events: at most {} per second", new.event_rate);
        }
        let text = format!(
            "reloaded: generation {}, {} IPv4 and {} IPv6 prefixes in {} ms",
            self.generation,
            loaded.table.v4.len(),
            loaded.table.v6.len(),
            started.elapsed().as_millis()
        );
        super::log_sources(&loaded);
        self.loaded = loaded;
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
    pub(super) fn watch_data(&mut self) {
        if self.opts.data.sources.is_empty() {
            return;
        }
        let now = self.opts.data.modified();
        let in_force: Vec<_> = self.loaded.sources.iter().map(|s| s.modified).collect();
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
        let started = Instant::now();
        let outcome = self.swap_in(self.opts.clone(), false);
        self.data_watch.refused = outcome.is_err().then_some(now);
        drop(self.record(outcome, started));
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
            ("control_socket", old.control_socket != new.control_socket),
            ("metrics", old.metrics != new.metrics),
        ];
        for (setting, _) in changed.iter().filter(|(_, changed)| *changed) {
            warn!("{setting} changed in the config: it takes effect when the daemon restarts");
        }
    }
}

fn refused(what: &str, e: &dyn std::fmt::Display) -> String {
    format!("reload failed ({what}), the previous table and policy stay in force: {e}")
}
