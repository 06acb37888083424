//! What sampled drop events cost: the same dropped frame, hot, through
//! BPF_PROG_TEST_RUN with events off and on at the default rate. Under a
//! flood nearly every packet finds the token bucket empty, so this measures
//! the bucket check the drop path pays, plus the few events written.

use std::net::IpAddr;

use geoblock::{daemon::config::DEFAULT_EVENT_RATE, data::table::Table, kernel::Geoblock};
use geoblock_common::Backend;
use serde::Serialize;

use super::{engines, kernel, report::median, workload::Scope, Settings};

#[derive(Clone, Debug, Serialize)]
pub struct EventsCost {
    /// Events per second when on.
    pub rate: u32,
    /// ns per dropped packet, one value per round.
    pub off_ns: Vec<f64>,
    pub on_ns: Vec<f64>,
}

/// Geoblock (trie, world table, deny-list) dropping one frame over and over.
pub fn measure(world: &Table, settings: Settings) -> EventsCost {
    let blocked = Scope::World.blocked();
    let mut gb = Geoblock::load(Backend::Trie).expect("loading geoblock");
    gb.load_table(world).expect("loading the world table");
    gb.apply_policy(&engines::deny(&blocked)).expect("policy");
    let mut ring = gb.take_events().expect("the events ring buffer");
    let (net, _) = world.v4.iter().find(|(_, c)| blocked.contains(c)).expect("a blocked prefix");
    let frame = super::frame(IpAddr::V4(net.network()));
    let mut cost = EventsCost { rate: DEFAULT_EVENT_RATE, off_ns: vec![], on_ns: vec![] };
    for _ in 0..settings.rounds {
        for (rate, out) in [(0, &mut cost.off_ns), (DEFAULT_EVENT_RATE, &mut cost.on_ns)] {
            gb.set_event_rate(rate).expect("event rate");
            out.push(kernel::hot_ns(gb.program().unwrap(), &frame, settings.hot_repeat));
            // As the daemon does: a full ring would turn samples into losses.
            ring.drain(|_| {});
        }
    }
    cost
}

impl EventsCost {
    pub fn print(&self) {
        let (off, on) = (median(self.off_ns.clone()), median(self.on_ns.clone()));
        println!("\n== Sampled drop events under a flood: ns per dropped packet, median over rounds ==");
        println!("events off {off:.1}, on ({}/s) {on:.1}: ratio {:.2}", self.rate, on / off);
    }
}
