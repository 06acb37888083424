//! Answers to control requests, and the views of the daemon's state they
//! and the metrics give.

use std::{
    net::IpAddr,
    time::{Duration, SystemTime},
};

use tracing::{info, warn};

use super::{control::Incoming, guarded, metrics, Daemon, Outcome};
use crate::{
    data::{fetch::redacted, list::AddressList, SourceInfo},
    kernel::state::StateDir,
    policy::{explain, Change},
    protocol::{self, EventStatus, Request, Response},
};

impl Daemon {
    /// Answers `incoming`; a reload, once its data is loaded (see [`super::reload`]).
    pub(super) fn handle(&mut self, incoming: Incoming, state: &StateDir) {
        let Incoming { request, peer, reply } = incoming;
        let response = match request {
            Request::Status => Response { status: Some(self.status(state)), ..Response::ok("") },
            Request::Reload { force } => {
                info!("reload requested by {peer} through the control socket{}", if force { ", forced" } else { "" });
                return self.reload(force, Some(reply));
            }
            Request::Explain { addresses, packet, direction } => {
                let policy = &self.opts.policy;
                let explained = addresses
                    .into_iter()
                    .map(|ip| explain::explain(&self.loaded, policy, ip, direction, packet, Some(self.generation)))
                    .collect();
                Response { explain: Some(explained), ..Response::ok("") }
            }
            Request::Change { change, ssh_client, force } => {
                let outcome = self.change_policy(&change, ssh_client, force);
                match &outcome {
                    Ok(text) => {
                        info!("policy changed by {peer} through the control socket ({}): {text}", change_text(&change))
                    }
                    Err(e) => warn!("policy change {} by {peer} refused: {e}", change_text(&change)),
                }
                outcome.map_or_else(Response::error, Response::ok)
            }
            // The control socket answers it itself, by streaming.
            Request::Events => Response::error("events are streamed by the control socket, not the daemon loop"),
        };
        drop(reply.send(response));
    }

    /// Applies `change` to the policy in force (the tables stay as they are).
    /// `ssh_client` is the address of the SSH session the command came
    /// from: the guard keeps it reachable unless `force`.
    fn change_policy(&mut self, change: &Change, ssh_client: Option<IpAddr>, force: bool) -> Result<String, String> {
        let policy = self.opts.policy.changed(change).map_err(|e| e.to_string())?;
        if !force {
            guarded(&self.opts.management, &policy, &self.loaded, ssh_client).map_err(|e| e.to_string())?;
        }
        if !self.geoblock.selectors_cover(&policy) {
            let selectors =
                super::selector_table(&[&self.opts.policy, &policy], &self.loaded).map_err(|e| e.to_string())?;
            self.geoblock.load_selectors(&selectors, &policy).map_err(|e| e.to_string())?;
        }
        self.geoblock.apply_policy(&policy).map_err(|e| e.to_string())?;
        let text = format!("policy: {policy}");
        self.opts.policy = policy;
        self.policy_fetch.changed_locally = true;
        Ok(text)
    }

    /// The AS data in force, if there are AS sources.
    fn asn_status(&self) -> Option<protocol::AsnStatus> {
        let asn = &self.loaded.asn;
        (!asn.sources.is_empty()).then(|| protocol::AsnStatus {
            sources: asn.sources.iter().map(|s| source_status(&s.origin, s.modified, &s.date)).collect(),
            prefixes_v4: asn.table.v4.len(),
            prefixes_v6: asn.table.v6.len(),
            ases: crate::data::asn::ases(&asn.table).len(),
        })
    }

    fn status(&self, state: &StateDir) -> protocol::Status {
        protocol::Status {
            state_dir: state.path().display().to_string(),
            interfaces: self.interfaces(),
            policy: self.opts.policy.clone(),
            data: protocol::DataStatus {
                sources: data_sources(&self.loaded.sources),
                generation: self.generation,
                prefixes_v4: self.loaded.table.v4.len(),
                prefixes_v6: self.loaded.table.v6.len(),
                table_bytes_v4: self.geoblock.table_memory().v4,
                table_bytes_v6: self.geoblock.table_memory().v6,
                trie_nodes_v4: self.geoblock.trie_nodes().v4,
                trie_nodes_v6: self.geoblock.trie_nodes().v6,
                refresh_seconds: self.opts.refresh.map(|d| d.as_secs()),
                last_download: self.last_download.as_ref().map(outcome_status),
                asn: self.asn_status(),
                lists: self.loaded.lists.iter().map(list_status).collect(),
            },
            last_reload: self.last_reload.as_ref().map(outcome_status),
            reloading: self.loading.status(),
            metrics: self.metrics_url(),
            events: self.geoblock.event_counts().ok().map(|counts| EventStatus { rate: self.opts.event_rate, counts }),
            flows: self.geoblock.flow_table().ok().map(|(bytes, size)| protocol::FlowStatus {
                replies: self.opts.policy.replies,
                size,
                bytes,
                timeouts_seconds: [
                    self.opts.flows.tcp_timeout,
                    self.opts.flows.udp_timeout,
                    self.opts.flows.icmp_timeout,
                ]
                .map(|t| t.as_secs()),
            }),
            selectors: Some(self.geoblock.selector_summary()),
            policy_url: self.policy_fetch.status(&self.opts),
        }
    }

    pub(super) fn metrics_url(&self) -> Option<String> {
        self.metrics_addr.map(|addr| format!("http://{addr}/metrics"))
    }

    /// The `/metrics` text: the counters, read once, and the daemon's state.
    pub(super) fn metrics_text(&self) -> Result<String, String> {
        let stats = self.geoblock.stats().map_err(|e| {
            warn!("metrics: reading the counters: {e}");
            e.to_string()
        })?;
        let state = metrics::DaemonState {
            generation: self.generation,
            prefixes_v4: self.loaded.table.v4.len(),
            prefixes_v6: self.loaded.table.v6.len(),
            table_memory: self.geoblock.table_memory(),
            trie_nodes: self.geoblock.trie_nodes(),
            flow_table: self.geoblock.flow_table().unwrap_or_default(),
            // Labels reach whoever may scrape: no license keys or tokens.
            sources: self
                .loaded
                .sources
                .iter()
                .map(|s| (redacted(&s.origin), age(s).map(|a| a.as_secs_f64())))
                .collect(),
            interfaces: self.interfaces().into_iter().map(|i| (i.name, i.attached)).collect(),
            reloads: &self.reloads,
            policy: self.policy_fetch.counts(&self.opts),
        };
        Ok(metrics::render(&stats, &state))
    }
}

pub(super) fn outcome_status((outcome, at): &Outcome) -> protocol::ReloadStatus {
    protocol::ReloadStatus {
        ok: outcome.is_ok(),
        message: outcome.clone().unwrap_or_else(|e| e),
        seconds_ago: at.elapsed().as_secs(),
    }
}

/// The sources of the table in force, with their age.
fn data_sources(sources: &[SourceInfo]) -> Vec<protocol::SourceStatus> {
    sources.iter().map(|info| source_status(&info.origin, info.modified, &info.date)).collect()
}

fn source_status(origin: &str, modified: Option<SystemTime>, date: &Option<String>) -> protocol::SourceStatus {
    protocol::SourceStatus {
        source: origin.to_string(),
        age_seconds: since(modified).map(|a| a.as_secs()),
        date: date.clone(),
    }
}

/// How long ago a source's file was written (none for the embedded data).
fn age(source: &SourceInfo) -> Option<Duration> {
    since(source.modified)
}

fn since(modified: Option<SystemTime>) -> Option<Duration> {
    modified.and_then(|t| SystemTime::now().duration_since(t).ok())
}

fn list_status(list: &AddressList) -> protocol::ListStatus {
    let info = &list.info;
    protocol::ListStatus {
        name: list.name.clone(),
        origin: info.origin.clone(),
        format: info.format.to_string(),
        entries_v4: info.entries.v4,
        entries_v6: info.entries.v6,
        prefixes_v4: list.v4.len(),
        prefixes_v6: list.v6.len(),
        age_seconds: since(info.modified).map(|a| a.as_secs()),
    }
}

/// A change as the log shows it: its JSON form, short and unambiguous.
fn change_text(change: &Change) -> String {
    serde_json::to_string(change).unwrap_or_default()
}
