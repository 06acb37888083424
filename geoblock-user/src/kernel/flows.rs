//! The flows of the connections this host opens, whose replies pass: the
//! egress program that records them (see the `flows` module of the eBPF
//! program), attached with tcx on the same interfaces as the XDP program
//! through a bpf_link pinned beside the XDP link, and adopted and replaced
//! in place by the next daemon like it; and the flow table's settings.

use std::time::Duration;

use aya::{
    maps::{Array, HashMap, MapData},
    programs::{
        links::{FdLink, PinnedLink},
        tc::{SchedClassifierLink, TcAttachOptions},
        LinkOrder, ProgramError, SchedClassifier, TcAttachType,
    },
};
use geoblock_common::{
    flow_filter_index, maps, FlowKey, RuleSlots, Settings, DEFAULT_FLOWS, FLOW_FILTER_SLOTS, FLOW_TIMEOUT_ICMP_NS,
    FLOW_TIMEOUT_TCP_NS, FLOW_TIMEOUT_UDP_NS,
};

use super::{
    program::{memlock, Geoblock},
    state::StateDir,
};
use crate::{error::errno, Error};

/// The flow table: its size and how long flows last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowTable {
    /// Flows the table holds; the least recently used makes room.
    pub size: u32,
    /// How long after the host's last packet of a flow its replies pass.
    pub tcp_timeout: Duration,
    pub udp_timeout: Duration,
    pub icmp_timeout: Duration,
}

impl FlowTable {
    /// How often the daemon rotates the flow filter: the longest timeout,
    /// and a minute for the coarse clock and the daemon's tick.
    pub fn filter_period(&self) -> Duration {
        self.tcp_timeout.max(self.udp_timeout).max(self.icmp_timeout) + Duration::from_secs(60)
    }
}

impl Default for FlowTable {
    fn default() -> FlowTable {
        FlowTable {
            size: DEFAULT_FLOWS,
            tcp_timeout: Duration::from_nanos(FLOW_TIMEOUT_TCP_NS),
            udp_timeout: Duration::from_nanos(FLOW_TIMEOUT_UDP_NS),
            icmp_timeout: Duration::from_nanos(FLOW_TIMEOUT_ICMP_NS),
        }
    }
}

/// Name of the egress program in the object.
pub const EGRESS_PROGRAM: &str = "geoblock_egress";

impl Geoblock {
    /// Whether replies pass, and for how long after the host's last
    /// packet; whether there are outbound rules (see [`Geoblock::apply_policy`]).
    pub(super) fn write_settings(&mut self, flows: &FlowTable) -> Result<(), Error> {
        let (replies, outbound) = (self.replies, self.outbound);
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let mut map: Array<&mut MapData, Settings> = self.map_mut(maps::SETTINGS)?;
        let settings = Settings {
            replies: u8::from(replies),
            // The half in force stays: see `rotate_flow_filter`.
            filter: map.get(&0, 0)?.filter,
            ephemeral_low: ephemeral_low(),
            outbound: u8::from(outbound),
            tcp_timeout_ns: nanos(flows.tcp_timeout),
            udp_timeout_ns: nanos(flows.udp_timeout),
            icmp_timeout_ns: nanos(flows.icmp_timeout),
            ..Settings::default()
        };
        Ok(map.set(0, settings, 0)?)
    }

    /// Switches the XDP program to the other half of the flow filter, then
    /// clears the half it left, which from then on collects the flags of
    /// the flows the host sends on. Sound when the half switched to has
    /// collected for at least the longest flow timeout: every live flow
    /// has set its flag there since (the daemon rotates no more often).
    /// A clear that failed is retried alone: switching again would go back
    /// to the half that was being cleared.
    pub fn rotate_flow_filter(&mut self) -> Result<(), Error> {
        let left = match self.uncleared_filter {
            Some(half) => half,
            None => {
                let mut map: Array<&mut MapData, Settings> = self.map_mut(maps::SETTINGS)?;
                let settings = map.get(&0, 0)?;
                let left = settings.filter & 1;
                map.set(0, Settings { filter: left ^ 1, ..settings }, 0)?;
                left
            }
        };
        self.uncleared_filter = Some(left);
        let mut filter: Array<&mut MapData, RuleSlots> = self.map_mut(maps::FLOW_FILTER)?;
        let first = u32::from(left) * FLOW_FILTER_SLOTS / 2;
        for slot in first..first + FLOW_FILTER_SLOTS / 2 {
            filter.set(slot, [0; 8], 0)?;
        }
        self.uncleared_filter = None;
        Ok(())
    }

    /// The flow table's kernel memory and how many flows it holds at most.
    pub fn flow_table(&self) -> Result<(u64, u32), Error> {
        let aya::maps::Map::LruHashMap(map) = self.map(maps::FLOWS)? else {
            return Err(Error::MissingMap(maps::FLOWS));
        };
        Ok((memlock(map), map.info()?.max_entries()))
    }

    /// Records `flow`, the host's last packet on it at `seen`
    /// (CLOCK_MONOTONIC_COARSE, ns), as the egress program does: in the
    /// flow table, and its remote address's flag in both halves of the
    /// flow filter (for tests and tools).
    pub fn record_flow(&mut self, flow: &FlowKey, seen: u64) -> Result<(), Error> {
        let mut flows: HashMap<&mut MapData, FlowKey, u64> = self.map_mut(maps::FLOWS)?;
        flows.insert(flow, seen, 0)?;
        let mut filter: Array<&mut MapData, RuleSlots> = self.map_mut(maps::FLOW_FILTER)?;
        for half in 0..2 {
            let (slot, byte) = flow_filter_index(&flow.remote, half);
            let mut flags = filter.get(&slot, 0)?;
            flags[byte] = 1;
            filter.set(slot, flags, 0)?;
        }
        Ok(())
    }

    /// The loaded egress program (`None` in objects without one: the
    /// benchmark's baseline).
    pub fn egress(&mut self) -> Option<&mut SchedClassifier> {
        self.ebpf.program_mut(EGRESS_PROGRAM)?.try_into().ok()
    }

    /// Moves `iface`'s egress link to this program in place (`None`), or
    /// attaches a new one for the caller to pin.
    pub(super) fn take_over_egress(&mut self, iface: &str, state: &StateDir) -> Result<Option<FdLink>, Error> {
        let Ok(pinned) = PinnedLink::from_pin(state.egress_link(iface)) else {
            return self.attach_egress(iface);
        };
        let Some(program) = self.egress() else {
            return Ok(None);
        };
        let link = SchedClassifierLink::try_from(FdLink::from(pinned)).map_err(|_| Error::NoBpfLink)?;
        match program.attach_to_link(link) {
            // The pin holds the link; its fd here may close.
            Ok(id) => {
                self.egress_id = Some(take(program, id)?.1);
                Ok(None)
            }
            Err(e) if errno(&e) == Some(libc::ENOLINK) => self.attach_egress(iface),
            Err(e) => Err(e.into()),
        }
    }

    /// Attaches the egress program to `iface` with a new tcx link, which
    /// the caller owns (and pins, or drops to detach).
    pub fn attach_egress(&mut self, iface: &str) -> Result<Option<FdLink>, Error> {
        let Some(program) = self.egress() else {
            return Ok(None);
        };
        let order = TcAttachOptions::TcxOrder(LinkOrder::default());
        match program.attach_with_options(iface, TcAttachType::Egress, order) {
            Ok(id) => {
                let (link, running) = take(program, id)?;
                self.egress_id = Some(running);
                Ok(Some(link))
            }
            Err(ProgramError::UnknownInterface { name }) => Err(Error::UnknownInterface(name)),
            Err(e) if matches!(errno(&e), Some(libc::EINVAL | libc::EOPNOTSUPP)) => Err(Error::NoTcx(iface.into())),
            Err(e) => Err(e.into()),
        }
    }
}

/// The lowest port the kernel gives sockets that bind none, in this
/// network namespace (where the daemon attaches); Linux's default if the
/// setting cannot be read.
fn ephemeral_low() -> u16 {
    const DEFAULT: u16 = 32768;
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    range.split_whitespace().next().and_then(|low| low.parse().ok()).unwrap_or(DEFAULT)
}

/// Takes the link `id` out of `program` (which would detach it on drop),
/// with the id of the program it runs: what `verify` checks links against.
fn take(program: &mut SchedClassifier, id: aya::programs::tc::SchedClassifierLinkId) -> Result<(FdLink, u32), Error> {
    let link = FdLink::try_from(program.take_link(id)?).map_err(|_| Error::NoBpfLink)?;
    Ok((link, program.info()?.id()))
}
