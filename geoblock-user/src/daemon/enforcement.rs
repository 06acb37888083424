//! Enforcement checked, not assumed: every tick, each attached interface
//! must run this daemon's program through the link pinned for it. Anything
//! else (the pin removed, which detaches; the program replaced; the link
//! detached) is an incident: logged as an error once, repaired where
//! possible (and retried every tick until it is), and shown by `status`
//! and the `geoblock_attached` metric.

use std::{collections::HashMap, time::Instant};

use tracing::{error, info};

use super::Daemon;
use crate::{
    kernel::{link::Tampering, sockets, state::StateDir},
    protocol,
};

/// The last tampering found on each interface, by name.
pub(super) type Incidents = HashMap<String, Incident>;

/// Tampering found on an interface, and what became of it.
pub(super) struct Incident {
    problem: Tampering,
    at: Instant,
    /// How it was repaired, or why it could not be (retried every tick).
    repair: Result<&'static str, String>,
}

impl Incident {
    fn open(&self) -> bool {
        self.repair.is_err()
    }
}

impl Daemon {
    /// Checks the interfaces `present` (name, ifindex: attached there and
    /// found there this tick), and repairs what was tampered with.
    pub(super) fn verify_enforcement(&mut self, present: Vec<(String, u32)>, state: &StateDir) {
        for (iface, ifindex) in present {
            match self.geoblock.verify(&iface, ifindex, state) {
                None => self.verified(&iface),
                Some(problem) => self.tampered(&iface, problem, state),
            }
        }
    }

    /// Checks the socket hooks' links, and repairs what was tampered with
    /// (incidents named after their pins: `cgroup-connect4`...). A cgroup
    /// gone is retried every tick, like an interface.
    pub(super) fn verify_hooks(&mut self, state: &StateDir) {
        let Ok(id) = sockets::cgroup_id(&self.cgroup) else {
            return;
        };
        let found = self.geoblock.verify_hooks(id, state);
        for hook in sockets::HOOKS {
            let name = hook.pin_name();
            match found.iter().find(|(h, _)| h.name == hook.name) {
                None => self.verified(&name),
                Some((_, problem)) => {
                    let repair = self.geoblock.repair_hook(&hook, &self.cgroup, state).map_err(|e| e.to_string());
                    self.incident(&name, problem.clone(), repair);
                }
            }
        }
    }

    /// `iface` is enforced: an open incident is over.
    fn verified(&mut self, iface: &str) {
        if let Some(incident) = self.incidents.get_mut(iface).filter(|i| i.open()) {
            info!("{iface}: enforcement verified again after {}", incident.problem);
            incident.repair = Ok("found restored");
        }
    }

    /// Repairs `problem` on `iface`. A new incident is logged; an open one
    /// is only retried, and logged once repaired.
    fn tampered(&mut self, iface: &str, problem: Tampering, state: &StateDir) {
        let repair = self.geoblock.repair(iface, self.opts.xdp_mode, &problem, state).map_err(|e| e.to_string());
        self.incident(iface, problem, repair);
    }

    /// Logs what became of `problem` on `iface` (an interface, or a hook's
    /// pin): a new incident is logged; an open one only once repaired.
    fn incident(&mut self, iface: &str, problem: Tampering, repair: Result<&'static str, String>) {
        if let Some(incident) = self.incidents.get_mut(iface).filter(|i| i.open()) {
            if let Ok(how) = repair {
                info!("{iface}: enforcement repaired ({how}) after {}", incident.problem);
            }
            incident.repair = repair;
            return;
        }
        let outcome = match &repair {
            Ok(how) => how.to_string(),
            Err(e) => format!("NOT repaired (retrying every second): {e}"),
        };
        error!("{iface}: enforcement tampered with: {problem}; {outcome}");
        self.incidents.insert(iface.into(), Incident { problem, at: Instant::now(), repair });
    }

    /// Whether every configured interface is enforced: what `/ready` says.
    pub(super) fn enforced(&self) -> bool {
        self.attached.iter().all(|(name, index)| self.is_enforced(name, *index))
    }

    /// `name`, attached at `index`, is there and runs this program through
    /// its link (no open incident).
    fn is_enforced(&self, name: &str, index: u32) -> bool {
        index != 0 && !self.incidents.get(name).is_some_and(Incident::open)
    }

    /// Each configured interface: enforced or not, and its last incident.
    pub(super) fn interfaces(&self) -> Vec<protocol::InterfaceStatus> {
        let status = |(name, index): &(String, u32)| {
            let incident = self.incidents.get(name);
            protocol::InterfaceStatus {
                name: name.clone(),
                attached: self.is_enforced(name, *index),
                xdp_mode: self.opts.xdp_mode.name().into(),
                tampered: incident.map(|i| protocol::Tampered {
                    problem: i.problem.to_string(),
                    repaired: !i.open(),
                    repair: i.repair.as_ref().map_or_else(Clone::clone, |how| how.to_string()),
                    seconds_ago: i.at.elapsed().as_secs(),
                }),
            }
        };
        self.attached.iter().map(status).collect()
    }
}
