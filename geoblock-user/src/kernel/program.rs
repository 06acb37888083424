//! The loaded XDP program and its maps: load, fill, attach, pin.
//!
//! This is the only code that writes kernel state; the daemon drives it.

use std::{
    os::{
        fd::{AsFd as _, AsRawFd, RawFd},
        unix::fs::DirBuilderExt as _,
    },
    path::PathBuf,
};

use aya::{
    maps::{
        lpm_trie::Key, Array, IterableMap as _, LpmTrie, Map, MapData, PerCpuArray, PerCpuValues, ProgramArray, RingBuf,
    },
    programs::{
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
        ProgramError, SchedClassifier, Xdp,
    },
    Ebpf, EbpfLoader,
};
use aya_log::EbpfLogger;
use geoblock_common::{
    country_stats_index, maps, total_index, Backend, Counter, CountryCounters, CountryId, Direction, EventBucket,
    IfaceSlot, Total, TrieNode, ABI_VERSION, COUNTRY_SLOTS, IFACE_SLOTS, IFINDEX_LIMIT, OTHER_IFACE,
};
use ipnetwork::IpNetwork;
use tracing::warn;

use super::{
    counters::{self, CounterMaps, Stats},
    events::{self, EventCounts, EventRing},
    flows::FlowTable,
    link::{self, Tampering},
    rules::Banks,
    selectors::{SelectorTries, Selectors},
    state::{StateDir, ABI_PIN, PROGRAM_PIN},
    trie::Trie,
};
use crate::{
    data::table::{PerFamily, Table},
    error::errno,
    policy::{Policy, SelectorTable},
    Error,
};

/// How the program is attached: the driver's native XDP, or the kernel's
/// generic (skb) path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum XdpMode {
    /// Native if the driver supports it, else generic.
    Auto,
    Native,
    Skb,
}

impl XdpMode {
    pub fn name(self) -> &'static str {
        match self {
            XdpMode::Auto => "auto",
            XdpMode::Native => "native",
            XdpMode::Skb => "skb",
        }
    }

    fn flags(self) -> aya::programs::XdpMode {
        match self {
            XdpMode::Auto => aya::programs::XdpMode::Default,
            XdpMode::Native => aya::programs::XdpMode::Driver,
            XdpMode::Skb => aya::programs::XdpMode::Skb,
        }
    }
}

/// A new attachment, not pinned yet: dropping it detaches.
pub struct NewLink {
    iface: String,
    link: Option<FdLink>,
    /// The egress program's, when it is new too.
    egress: Option<FdLink>,
}

impl NewLink {
    /// Pins the links in `state`, in place of those pinned for its interface.
    pub fn pin(self, state: &StateDir) -> Result<(), Error> {
        if let Some(egress) = self.egress {
            state.replace(&StateDir::egress_link_name(&self.iface), |path| egress.pin(path).map(drop))?;
        }
        match self.link {
            Some(link) => state.replace(&StateDir::link_name(&self.iface), |path| link.pin(path).map(drop)),
            None => Ok(()),
        }
    }

    /// Whether the XDP link is new (not an adopted one).
    pub fn attached(&self) -> bool {
        self.link.is_some()
    }
}

/// The kernel-side log records of the program, for the daemon to forward.
pub struct KernelLog(EbpfLogger<&'static dyn log::Log>);

impl KernelLog {
    /// Hands the records waiting to the `log` logger.
    pub fn flush(&mut self) {
        self.0.flush();
    }
}

/// Readable when records wait: for the daemon's event loop.
impl AsRawFd for KernelLog {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// The maps pinned in the state directory: everything the verdicts and the
/// counters live in, so a new daemon takes over tables, policy and counts.
/// The events ring buffer too: what was sampled while no daemon ran is
/// read by the next one.
/// Each table program shares them with the program the links run; its
/// tables are its own.
pub(super) const PINNED_MAPS: [&str; 28] = [
    maps::TABLES,
    maps::EGRESS_TABLES,
    maps::CONNECT4_TABLES,
    maps::CONNECT6_TABLES,
    maps::SENDMSG4_TABLES,
    maps::SENDMSG6_TABLES,
    // The kernel-side log records of every table program, for one reader.
    "AYA_LOGS",
    maps::EXCEPT_V4,
    maps::EXCEPT_V6,
    maps::POLICY,
    maps::COUNTRY_STATS,
    maps::TOTALS,
    maps::EVENTS,
    maps::EVENT_CONFIG,
    maps::EVENT_BUCKET,
    maps::REJECT_CONFIG,
    maps::REJECT_BUCKET,
    maps::RULE_STATS,
    maps::SELECTOR_STATS,
    maps::SELECTOR_NAMES,
    maps::IFINDEX_SLOTS,
    maps::IFACES,
    maps::PROTO_RULES,
    maps::PORT_RULES,
    maps::RULE_NAMES,
    maps::SETTINGS,
    // The egress program's: shared with it, and kept across restarts.
    maps::FLOWS,
    maps::FLOW_FILTER,
];

/// The program arrays the programs on the links tail-call through.
const PROGRAM_ARRAYS: [&str; 6] = [
    maps::TABLES,
    maps::EGRESS_TABLES,
    maps::CONNECT4_TABLES,
    maps::CONNECT6_TABLES,
    maps::SENDMSG4_TABLES,
    maps::SENDMSG6_TABLES,
];

/// What [`Geoblock::load_pinned`] found in the state directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinnedMaps {
    /// Nothing: the maps were created and pinned.
    Created,
    /// Maps of this ABI: reused, with their tables, policy and counters.
    Reused,
    /// Maps of another ABI version (0: unknown): new ones were pinned in
    /// their place; the old program keeps its old maps until it is replaced.
    Replaced { found: u32 },
}

/// Name of the XDP function in the object.
const PROGRAM: &str = "geoblock";

/// Name of the table program's XDP function, which [`PROGRAM`] tail-calls.
const TABLE_PROGRAM: &str = "geoblock_table";

/// Name of the table program's egress side, which the egress program
/// tail-calls when the policy has outbound rules.
const EGRESS_TABLE_PROGRAM: &str = "geoblock_egress_table";

pub struct Geoblock {
    pub(super) ebpf: Ebpf,
    /// What `ebpf` was loaded from: each table loads its table program from it.
    object: &'static [u8],
    backend: Backend,
    /// The XDP function in the object: [`PROGRAM`], or a benchmark's.
    name: String,
    /// Keeps the log ring buffer open; drained by the daemon.
    logger: Option<KernelLog>,
    /// The loaded program's kernel id: what the links it owns must run.
    id: u32,
    /// The egress program's, once a link runs it (none on kernels without tcx).
    pub(super) egress_id: Option<u32>,
    /// Where the maps the table programs share with this one are pinned
    /// (`None`: not pinned; see [`Geoblock::load_table`]).
    pins: Option<Vec<(&'static str, PathBuf)>>,
    /// The table program in force, with its tables (the last one this process loaded).
    pub(super) table: Option<Ebpf>,
    /// Kernel memory of the tables this process loaded, as the kernel counts it.
    table_memory: PerFamily<u64>,
    /// Trie nodes the table uses per family (0 with the LPM trie).
    trie_nodes: PerFamily<usize>,
    /// What the rule maps hold.
    pub(super) banks: Banks,
    /// A half of the flow filter switched away from and not yet cleared.
    pub(super) uncleared_filter: Option<u8>,
    /// The flow table's settings, and whether replies pass (the policy's).
    flows: FlowTable,
    pub(super) replies: bool,
    /// Whether the policy has outbound rules (the egress program and the
    /// socket hooks judge only then).
    pub(super) outbound: bool,
    /// The selector table in force, its counter slots and verdicts.
    pub(super) selectors: Selectors,
    /// The policy in force, as this process last wrote it.
    pub(super) policy: Option<Policy>,
}

impl Geoblock {
    /// Loads the embedded program into the kernel (not attached anywhere).
    /// Kernel-side log statements above the daemon's log level are disabled
    /// before load, so they cost a branch, not a ring buffer write.
    pub fn load(backend: Backend) -> Result<Self, Error> {
        Self::load_object(crate::kernel::objects::GEOBLOCK, PROGRAM, backend)
    }

    /// Loads `object` and its XDP function `name`, its maps pinned nowhere;
    /// also used for the benchmark's baseline program.
    pub fn load_object(object: &'static [u8], name: &str, backend: Backend) -> Result<Self, Error> {
        Self::load_with(object, name, backend, None, FlowTable::default())
    }

    /// Loads the program with its maps pinned in `state`: maps of this ABI
    /// already pinned there are reused, others are (re)created and pinned.
    pub fn load_pinned(backend: Backend, state: &StateDir, flows: &FlowTable) -> Result<(Self, PinnedMaps), Error> {
        let found = super::state::pinned_abi(state.path());
        let pinned = match found {
            Some(ABI_VERSION) => PinnedMaps::Reused,
            None if state.is_empty() => PinnedMaps::Created,
            other => PinnedMaps::Replaced { found: other.unwrap_or(0) },
        };
        if pinned != PinnedMaps::Reused {
            // The programs on the links tail-call through them until they
            // switch to these: kept until then (see `pin_program`).
            for tables in PROGRAM_ARRAYS {
                state.retire(tables)?;
            }
            // All the others, `ABI` included: a layout's maps may have names
            // this one no longer has (the tables before `TABLES`), which
            // would otherwise keep their memory for as long as the pins.
            for name in state.map_pins()? {
                state.unpin(&state.pin(&name))?;
            }
            // Before the maps: a directory with pins but no ABI pin is not
            // taken for a geoblock state (see StateDir::open), not even
            // after a first start that died half-way.
            pin_abi(state)?;
        }
        resize_flows(state, flows.size)?;
        let pins: Vec<_> = PINNED_MAPS.iter().map(|&name| (name, state.pin(name))).collect();
        let geoblock = Self::load_with(crate::kernel::objects::GEOBLOCK, PROGRAM, backend, Some(pins), *flows)?;
        Ok((geoblock, pinned))
    }

    /// Loads `object`; the maps named in `pins` are opened from (or created
    /// and pinned at) their paths.
    fn load_with(
        object: &'static [u8],
        name: &str,
        backend: Backend,
        pins: Option<Vec<(&'static str, PathBuf)>>,
        flows: FlowTable,
    ) -> Result<Self, Error> {
        let sizes = [(maps::FLOWS, flows.size)];
        let mut ebpf = load_instance(object, backend, pins.as_deref().unwrap_or_default(), &sizes)?;
        let logger = match EbpfLogger::init(&mut ebpf) {
            Ok(logger) => Some(KernelLog(logger)),
            Err(e) => {
                warn!("kernel-side logging unavailable: {e}");
                None
            }
        };
        let mut geoblock = Geoblock {
            ebpf,
            object,
            backend,
            name: name.into(),
            logger,
            id: 0,
            egress_id: None,
            pins,
            table: None,
            table_memory: PerFamily::default(),
            trie_nodes: PerFamily::default(),
            banks: Banks::default(),
            uncleared_filter: None,
            flows,
            replies: true,
            outbound: false,
            selectors: Selectors::default(),
            policy: None,
        };
        let program = geoblock.program()?;
        program.load().map_err(permission_or(Error::Program))?;
        let id = program.info()?.id();
        geoblock.id = id;
        if let Some(egress) = geoblock.egress() {
            egress.load().map_err(permission_or(Error::Program))?;
        }
        geoblock.load_hooks()?;
        Ok(geoblock)
    }

    /// The loaded XDP program (the object's `name` given at load).
    pub fn program(&mut self) -> Result<&mut Xdp, Error> {
        let program = self.ebpf.program_mut(&self.name).ok_or(Error::Program(ProgramError::NotLoaded))?;
        Ok(program.try_into()?)
    }

    /// The reader of kernel-side log records, for the daemon to drain.
    pub fn take_logger(&mut self) -> Option<KernelLog> {
        self.logger.take()
    }

    /// Makes `table` the one the program answers from, without selectors
    /// (all a policy of countries alone needs); see
    /// [`Geoblock::load_table_with_selectors`].
    pub fn load_table(&mut self, table: &Table) -> Result<(), Error> {
        self.load_tables(table, &SelectorTable::default(), None)
    }

    /// Makes `table` the one the program answers from, with the selector
    /// table `selectors` (the selectors `policy`, the policy to come, and
    /// the policy in force use). A table program is loaded with tables of its own, made as
    /// large as they need and filled, then swapped into `TABLES` in one
    /// update: no packet sees half a table, nor a country table of one
    /// generation and a selector table of another. The old table program
    /// and its maps are freed by the kernel once no packet can still be in it.
    pub fn load_table_with_selectors(
        &mut self,
        table: &Table,
        selectors: &SelectorTable,
        policy: &Policy,
    ) -> Result<(), Error> {
        self.load_tables(table, selectors, Some(policy))
    }

    fn load_tables(&mut self, table: &Table, selectors: &SelectorTable, policy: Option<&Policy>) -> Result<(), Error> {
        let tries = SelectorTries::compile(selectors)?;
        let (mut instance, memory, nodes) = match self.backend {
            Backend::Trie => {
                let countries = PerFamily { v4: Trie::v4(table)?, v6: Trie::v6(table)? };
                let nodes = PerFamily { v4: countries.v4.nodes().len(), v6: countries.v6.nodes().len() };
                let mut sizes = vec![(maps::GEO_V4, nodes.v4 as u32), (maps::GEO_V6, nodes.v6 as u32)];
                sizes.extend(tries.sizes());
                let mut instance = self.load_table_maps(&sizes, &[])?;
                let v4 = fill_trie(&mut instance, maps::GEO_V4, &countries.v4)?;
                let v6 = fill_trie(&mut instance, maps::GEO_V6, &countries.v6)?;
                (instance, PerFamily { v4, v6 }, nodes)
            }
            Backend::Lpm => {
                let mut instance = self.load_table_maps(&tries.sizes(), &[])?;
                let v4 = fill_lpm(
                    &mut instance,
                    maps::LPM_V4,
                    table.v4.iter().map(|(n, c)| (n.network().octets(), n.prefix(), c)),
                )?;
                let v6 = fill_lpm(
                    &mut instance,
                    maps::LPM_V6,
                    table.v6.iter().map(|(n, c)| (n.network().octets(), n.prefix(), c)),
                )?;
                (instance, PerFamily { v4, v6 }, PerFamily::default())
            }
        };
        let verdicts = self.fill_selectors(&mut instance, selectors, &tries, policy)?;
        self.install_table(&mut instance)?;
        (self.table, self.table_memory, self.trie_nodes) = (Some(instance), memory, nodes);
        self.selectors_in_force(selectors, verdicts);
        Ok(())
    }

    /// Makes `selectors` the selector table in force, the country table
    /// staying: a table program is loaded that shares the tries of the one
    /// in force and has selector maps of its own, and swapped in as
    /// [`Geoblock::load_table`] does. Changing which selectors the rules
    /// use costs this, not a new country table.
    pub fn load_selectors(&mut self, selectors: &SelectorTable, policy: &Policy) -> Result<(), Error> {
        let tries = SelectorTries::compile(selectors)?;
        let countries = match self.backend {
            Backend::Trie => [maps::GEO_V4, maps::GEO_V6],
            Backend::Lpm => [maps::LPM_V4, maps::LPM_V6],
        };
        let mut instance = self.load_table_maps(&tries.sizes(), &countries)?;
        let verdicts = self.fill_selectors(&mut instance, selectors, &tries, Some(policy))?;
        self.install_table(&mut instance)?;
        self.table = Some(instance);
        self.selectors_in_force(selectors, verdicts);
        Ok(())
    }

    /// Loads a filled table program's programs and swaps each into its
    /// program array. The outbound sides first: the XDP side is what a
    /// new table is first awaited by.
    fn install_table(&mut self, instance: &mut Ebpf) -> Result<(), Error> {
        if let Some(program) = instance.program_mut(EGRESS_TABLE_PROGRAM) {
            let program: &mut SchedClassifier = program.try_into()?;
            program.load().map_err(permission_or(Error::Program))?;
            let mut tables: ProgramArray<&mut MapData> = self.map_mut(maps::EGRESS_TABLES)?;
            tables.set(0, program.fd()?, 0)?;
        }
        self.load_hook_tables(instance)?;
        let program = instance.program_mut(TABLE_PROGRAM).ok_or(Error::Program(ProgramError::NotLoaded))?;
        let program: &mut Xdp = program.try_into()?;
        program.load().map_err(permission_or(Error::Program))?;
        let mut tables: ProgramArray<&mut MapData> = self.map_mut(maps::TABLES)?;
        Ok(tables.set(0, program.fd()?, 0)?)
    }

    /// A table program's maps, sharing this program's from their pins, and
    /// `reused`, the maps of that name of the table program in force. What
    /// is pinned nowhere (the reused maps; all of a program pinned nowhere,
    /// as in tests and the benchmark) is pinned in a directory of its own
    /// for the load alone: nothing it made outlives it.
    fn load_table_maps(&self, sizes: &[(&'static str, u32)], reused: &[&'static str]) -> Result<Ebpf, Error> {
        let in_force = self.table.as_ref();
        let mut unpinned: Vec<(&'static str, &Map)> =
            reused.iter().filter_map(|&name| Some((name, in_force?.map(name)?))).collect();
        if self.pins.is_none() {
            unpinned.extend(PINNED_MAPS.iter().filter_map(|&name| Some((name, self.ebpf.map(name)?))));
        }
        let mut pins = self.pins.clone().unwrap_or_default();
        if unpinned.is_empty() {
            return load_instance(self.object, self.backend, &pins, sizes);
        }
        let dir = private_pin_dir()?;
        let pinned: Result<Vec<_>, Error> = unpinned
            .into_iter()
            .map(|(name, map)| map.pin(dir.join(name)).map(|()| (name, dir.join(name))).map_err(Error::from))
            .collect();
        let loaded = pinned.and_then(|own| {
            pins.extend(own);
            load_instance(self.object, self.backend, &pins, sizes)
        });
        let _ = std::fs::remove_dir_all(&dir);
        loaded
    }

    /// Kernel memory of the table in force (bytes per family; 0 until
    /// this process loaded one).
    pub fn table_memory(&self) -> PerFamily<u64> {
        self.table_memory
    }

    /// Trie nodes the table in force uses per family, of the
    /// [`TRIE_MAX_NODES`](geoblock_common::TRIE_MAX_NODES) a trie can
    /// name (0 with the LPM trie).
    pub fn trie_nodes(&self) -> PerFamily<usize> {
        self.trie_nodes
    }

    /// The table program in force that this process loaded (for the
    /// benchmark, which counts its maps).
    pub fn table_program(&self) -> Option<&Xdp> {
        self.table.as_ref()?.program(TABLE_PROGRAM)?.try_into().ok()
    }

    /// Sets how long flows last (their number is fixed at load).
    pub fn set_flow_timeouts(&mut self, flows: &FlowTable) -> Result<(), Error> {
        self.flows = FlowTable { size: self.flows.size, ..*flows };
        self.write_settings(flows)
    }

    /// Writes the policy: the rules (switched to as a whole, see
    /// [`super::rules`]) and the exception tries made to hold exactly
    /// `policy.exceptions`. The selector table in force must hold every
    /// selector the policy uses ([`Geoblock::selectors_cover`]).
    pub fn apply_policy(&mut self, policy: &Policy) -> Result<(), Error> {
        if !self.selectors_cover(policy) {
            return Err(Error::SelectorsNotLoaded);
        }
        self.write_rules(policy)?;
        self.policy = Some(policy.clone());
        (self.replies, self.outbound) = (policy.replies, policy.has_outbound_rules());
        self.write_settings(&self.flows.clone())?;
        let (mut v4, mut v6) = (vec![], vec![]);
        for net in &policy.exceptions {
            match net {
                IpNetwork::V4(n) => v4.push((u32::from(n.prefix()), n.network().octets())),
                IpNetwork::V6(n) => v6.push((u32::from(n.prefix()), n.network().octets())),
            }
        }
        self.set_exceptions(maps::EXCEPT_V4, &v4)?;
        self.set_exceptions(maps::EXCEPT_V6, &v6)
    }

    /// Makes the exception trie `name` hold exactly `wanted` (prefix length,
    /// address): stale entries go, then missing ones come.
    fn set_exceptions<const N: usize>(&mut self, name: &'static str, wanted: &[(u32, [u8; N])]) -> Result<(), Error> {
        let mut trie: LpmTrie<_, [u8; N], u8> = self.map_mut(name)?;
        let stale: Vec<Key<[u8; N]>> = trie
            .keys()
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|k| !wanted.contains(&(k.prefix_len(), k.data())))
            .collect();
        for key in &stale {
            trie.remove(key)?;
        }
        for &(len, addr) in wanted {
            trie.insert(&Key::new(len, addr), 1, 0)?;
        }
        Ok(())
    }

    /// Moves `iface` to this program and its egress program: live links
    /// pinned for it in `state` are updated in place; what has none gets a
    /// new link, for the caller to pin once every interface succeeded. The
    /// egress program comes first, so that no reply is judged before the
    /// flows it answers can have been recorded.
    pub fn take_over(&mut self, iface: &str, mode: XdpMode, state: &StateDir) -> Result<NewLink, Error> {
        let egress = without_tcx(self.take_over_egress(iface, state))?;
        let adopted = match PinnedLink::from_pin(state.link(iface)) {
            Ok(link) => self.replace(link.into())?,
            Err(_) => None,
        };
        let link = match adopted {
            Some(_) => None,
            None => Some(self.attach(iface, mode)?),
        };
        Ok(NewLink { iface: iface.into(), link, egress })
    }

    /// Attaches to `iface` with a new XDP link and pins it in `state` (an
    /// interface that came back, a link pin removed); its egress link is
    /// taken over if it still lives, attached afresh if not.
    pub fn attach_pinned(&mut self, iface: &str, mode: XdpMode, state: &StateDir) -> Result<(), Error> {
        let egress = without_tcx(self.take_over_egress(iface, state))?;
        let link = Some(self.attach(iface, mode)?);
        NewLink { iface: iface.into(), link, egress }.pin(state)
    }

    /// Attaches to `iface` with a new bpf_link, which the caller owns (and
    /// pins, or drops to detach).
    pub fn attach(&mut self, iface: &str, mode: XdpMode) -> Result<FdLink, Error> {
        let program = self.program()?;
        match program.attach(iface, mode.flags()) {
            Ok(id) => fd_link(program, id),
            Err(ProgramError::UnknownInterface { name }) => Err(Error::UnknownInterface(name)),
            // EBUSY: the interface already has an XDP program (ours or not).
            Err(e) if errno(&e) == Some(libc::EBUSY) => Err(Error::Busy(iface.into())),
            // EOPNOTSUPP from the driver: native mode asked of a driver without it.
            Err(e) if mode != XdpMode::Auto && errno(&e) == Some(libc::EOPNOTSUPP) => {
                Err(Error::ModeUnsupported { iface: iface.into(), mode: mode.name() })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Makes `link` run this program instead of the one it runs, in one
    /// atomic step: no packet goes unfiltered, none is seen twice. `None`
    /// when the link is defunct (its interface went away).
    fn replace(&mut self, link: FdLink) -> Result<Option<FdLink>, Error> {
        let program = self.program()?;
        let link = XdpLink::try_from(link).map_err(|_| Error::NoBpfLink)?;
        match program.attach_to_link(link) {
            Ok(id) => fd_link(program, id).map(Some),
            Err(e) if errno(&e) == Some(libc::ENOLINK) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// What is wrong with the enforcement on `iface`, at `ifindex`: it must
    /// run this program through the link pinned for it in `state`.
    pub fn verify(&self, iface: &str, ifindex: u32, state: &StateDir) -> Option<Tampering> {
        let check = |path: PathBuf, kind: &str, id: u32| {
            link::pinned_link(&path).map_or_else(Some, |found| link::tampering(&found, kind, id, ifindex))
        };
        let xdp = check(state.link(iface), "xdp", self.id);
        let egress = self.egress_id.and_then(|id| check(state.egress_link(iface), "tcx", id));
        xdp.or(egress.map(|t| Tampering::Egress(Box::new(t))))
    }

    /// Undoes `tampering` on `iface`, and says how: a link that runs
    /// another program is switched back to this one in place; otherwise a
    /// new link is attached and pinned over whatever the pin holds.
    pub fn repair(
        &mut self,
        iface: &str,
        mode: XdpMode,
        tampering: &Tampering,
        state: &StateDir,
    ) -> Result<&'static str, Error> {
        if let Tampering::Egress(_) = tampering {
            let link = self.attach_egress(iface)?;
            NewLink { iface: iface.into(), link: None, egress: link }.pin(state)?;
            return Ok("egress re-attached");
        }
        if let (Tampering::ProgramReplaced { .. }, Ok(link)) = (tampering, PinnedLink::from_pin(state.link(iface))) {
            if self.replace(link.into())?.is_some() {
                return Ok("program restored");
            }
        }
        self.attach_pinned(iface, mode, state)?;
        Ok("re-attached")
    }

    /// Pins the program in `state`, in place of the one pinned there, once
    /// the links run it: what a replaced layout's program needed goes.
    pub fn pin_program(&mut self, state: &StateDir) -> Result<(), Error> {
        let program = self.program()?;
        state.replace(PROGRAM_PIN, |path| program.pin(path))?;
        state.remove_retired()
    }

    /// The counters, summed over CPUs.
    pub fn stats(&self) -> Result<Stats, Error> {
        let [countries, totals, rules, ifaces, rule_names, rejects, selectors, selector_names] =
            counters::COUNTER_MAPS.map(|name| self.map(name));
        Stats::read(&CounterMaps {
            countries: countries?,
            totals: totals?,
            rules: rules?,
            ifaces: ifaces?,
            rule_names: rule_names?,
            rejects: rejects?,
            selectors: selectors?,
            selector_names: selector_names?,
        })
    }

    /// Gives each interface of `attached` (name, ifindex; 0 while it is
    /// gone) its counter slot, and tells the program which ifindex counts
    /// where. Returns the slots, `None` where the interface is counted as
    /// other: no slot left, or an ifindex from [`IFINDEX_LIMIT`] up.
    pub fn set_interfaces(&mut self, attached: &[(String, u32)]) -> Result<Vec<Option<u32>>, Error> {
        let held = self.ifaces()?;
        let names: Vec<Option<String>> = held.iter().map(|h| counters::iface_name(&h.name)).collect();
        let wanted: Vec<&str> = attached.iter().map(|(name, _)| name.as_str()).collect();
        let slots = assign_slots(&names, &wanted);
        // Slots of interfaces no longer configured keep their name and counts.
        let mut next: Vec<IfaceSlot> = held.iter().map(|h| IfaceSlot { ifindex: 0, ..*h }).collect();
        for ((name, ifindex), slot) in attached.iter().zip(&slots) {
            let Some(slot) = *slot else { continue };
            if names[slot as usize].as_deref().is_some_and(|held| held != name) {
                // Taken over from an interface no longer configured: its counts go.
                self.clear_counters(slot)?;
            }
            let ifindex = Some(*ifindex).filter(|&i| i < IFINDEX_LIMIT).unwrap_or(0);
            next[slot as usize] = IfaceSlot { name: encode_name(name), ifindex };
        }
        self.write_ifaces(&held, &next)?;
        Ok(slots
            .into_iter()
            .zip(attached)
            .map(|(slot, (_, ifindex))| slot.filter(|_| *ifindex < IFINDEX_LIMIT))
            .collect())
    }

    /// Makes the slots `held` into `next`: the ifindexes that leave go back
    /// to other before any comes in, so none counts in two slots.
    fn write_ifaces(&mut self, held: &[IfaceSlot], next: &[IfaceSlot]) -> Result<(), Error> {
        let mut index: Array<_, u32> = self.map_mut(maps::IFINDEX_SLOTS)?;
        for old in held.iter().filter(|h| h.ifindex != 0 && !next.iter().any(|n| n.ifindex == h.ifindex)) {
            index.set(old.ifindex, OTHER_IFACE, 0)?;
        }
        for (slot, new) in next.iter().enumerate().filter(|(_, n)| n.ifindex != 0) {
            index.set(new.ifindex, slot as u32, 0)?;
        }
        let mut ifaces: Array<_, IfaceSlot> = self.map_mut(maps::IFACES)?;
        for (slot, (old, new)) in held.iter().zip(next).enumerate() {
            if old != new {
                ifaces.set(slot as u32, new, 0)?;
            }
        }
        Ok(())
    }

    /// What each counter slot holds.
    fn ifaces(&self) -> Result<Vec<IfaceSlot>, Error> {
        let ifaces: Array<&MapData, IfaceSlot> = self.map(maps::IFACES)?.try_into()?;
        (0..IFACE_SLOTS).map(|slot| Ok(ifaces.get(&slot, 0)?)).collect()
    }

    /// Zeroes the counters of an interface slot on every CPU.
    fn clear_counters(&mut self, slot: u32) -> Result<(), Error> {
        let mut countries: PerCpuArray<_, CountryCounters> = self.map_mut(maps::COUNTRY_STATS)?;
        for (direction, country) in
            Direction::ALL.into_iter().flat_map(|d| (0..COUNTRY_SLOTS as CountryId).map(move |c| (d, c)))
        {
            countries.set(country_stats_index(direction, slot, country), zeroes()?, 0)?;
        }
        let mut totals: PerCpuArray<_, Counter> = self.map_mut(maps::TOTALS)?;
        for (direction, total) in Direction::ALL.into_iter().flat_map(|d| Total::ALL.map(|t| (d, t))) {
            totals.set(total_index(direction, slot, total), zeroes()?, 0)?;
        }
        Ok(())
    }

    /// Samples at most `rate` drop events per second (0: none).
    pub fn set_event_rate(&mut self, rate: u32) -> Result<(), Error> {
        self.set_bucket(maps::EVENT_CONFIG, rate)
    }

    /// Answers at most `rate` rejected packets per second (0: none, rejecting drops).
    pub fn set_reject_rate(&mut self, rate: u32) -> Result<(), Error> {
        self.set_bucket(maps::REJECT_CONFIG, rate)
    }

    /// Sets the token bucket `name` to `rate` per second over all CPUs.
    fn set_bucket(&mut self, name: &'static str, rate: u32) -> Result<(), Error> {
        let cpus = aya::util::nr_cpus().map_err(|(path, e)| Error::Io { path: path.into(), source: e })?;
        let mut config: Array<_, geoblock_common::EventConfig> = self.map_mut(name)?;
        Ok(config.set(0, events::bucket(rate, cpus as u32), 0)?)
    }

    /// Drop events emitted, suppressed and lost, summed over CPUs.
    pub fn event_counts(&self) -> Result<EventCounts, Error> {
        let buckets: PerCpuArray<&MapData, EventBucket> = self.map(maps::EVENT_BUCKET)?.try_into()?;
        Ok(buckets.get(&0, 0)?.iter().fold(EventCounts::default(), |sum, b| EventCounts {
            emitted: sum.emitted + b.emitted,
            suppressed: sum.suppressed + b.suppressed,
            lost: sum.lost + b.lost,
        }))
    }

    /// The events ring buffer, for the daemon to drain (it is its only reader).
    /// A handle of its own: the map stays among the program's, which the
    /// table programs loaded later share.
    pub fn take_events(&mut self) -> Result<EventRing, Error> {
        let Map::RingBuf(events) = self.map(maps::EVENTS)? else {
            return Err(Error::MissingMap(maps::EVENTS));
        };
        let reader = MapData::from_id(events.info()?.id())?;
        Ok(EventRing(RingBuf::try_from(Map::RingBuf(reader))?))
    }

    pub(super) fn map(&self, name: &'static str) -> Result<&Map, Error> {
        self.ebpf.map(name).ok_or(Error::MissingMap(name))
    }

    pub(super) fn map_mut<'a, M>(&'a mut self, name: &'static str) -> Result<M, Error>
    where
        M: TryFrom<&'a mut Map, Error = aya::maps::MapError>,
    {
        let map = self.ebpf.map_mut(name).ok_or(Error::MissingMap(name))?;
        Ok(M::try_from(map)?)
    }
}

/// A kernel without tcx (before 6.6) cannot run the egress program:
/// enforcement goes on, but replies are judged like any packet.
fn without_tcx(egress: Result<Option<FdLink>, Error>) -> Result<Option<FdLink>, Error> {
    match egress {
        Err(e @ Error::NoTcx(_)) => {
            warn!("{e}: replies to this host's connections are judged like any other packet");
            Ok(None)
        }
        other => other,
    }
}

/// Counter slots for the `wanted` interfaces, given the name each slot
/// holds (`held`, indexed by slot). An interface keeps the slot of its name,
/// so its counts go on across restarts; a new one takes a free slot, else
/// that of an interface no longer wanted. `None`: no slot left.
fn assign_slots(held: &[Option<String>], wanted: &[&str]) -> Vec<Option<u32>> {
    let mut taken = vec![false; held.len()];
    taken[OTHER_IFACE as usize] = true;
    let mut slots: Vec<Option<u32>> = wanted
        .iter()
        .map(|name| {
            let slot = held.iter().position(|h| h.as_deref() == Some(*name)).filter(|&s| !taken[s])?;
            taken[slot] = true;
            Some(slot as u32)
        })
        .collect();
    let free = (0..held.len()).filter(|&s| held[s].is_none());
    let stale = (0..held.len()).filter(|&s| held[s].is_some());
    let mut spare = free.chain(stale).filter(|&s| !taken[s]);
    for slot in slots.iter_mut().filter(|s| s.is_none()) {
        *slot = spare.next().map(|s| s as u32);
    }
    slots
}

/// A zero for every possible CPU.
pub(super) fn zeroes<T: aya::Pod + Default>() -> Result<PerCpuValues<T>, Error> {
    let cpus = aya::util::nr_cpus().map_err(|(path, source)| Error::Io { path: path.into(), source })?;
    PerCpuValues::try_from(vec![T::default(); cpus]).map_err(Error::io("per-CPU values"))
}

/// `name` NUL-padded (interface names are at most 15 bytes).
fn encode_name(name: &str) -> [u8; 16] {
    let mut raw = [0; 16];
    let len = name.len().min(raw.len() - 1);
    raw[..len].copy_from_slice(&name.as_bytes()[..len]);
    raw
}

/// Takes the link `id` out of `program` (which would detach it on drop).
fn fd_link(program: &mut Xdp, id: aya::programs::xdp::XdpLinkId) -> Result<FdLink, Error> {
    // Netlink attachments (kernels before 5.9) cannot be pinned.
    FdLink::try_from(program.take_link(id)?).map_err(|_| Error::NoBpfLink)
}

/// Loads `object`'s maps (the programs are loaded one by one): those named
/// in `pins` opened from (or created and pinned at) their paths, those in
/// `sizes` made that large. Kernel-side log statements above the daemon's
/// log level are disabled, so they cost a branch, not a ring buffer write.
fn load_instance(
    object: &[u8],
    backend: Backend,
    pins: &[(&'static str, PathBuf)],
    sizes: &[(&'static str, u32)],
) -> Result<Ebpf, Error> {
    let (level, backend) = (log::max_level() as u8, backend as u8);
    let mut loader = EbpfLoader::new();
    for (map, path) in pins {
        loader.map_pin_path(map, path.as_path());
    }
    for &(map, size) in sizes {
        loader.map_max_entries(map, size);
    }
    loader
        .override_global(aya_log::LEVEL, &level, false)
        .override_global("BACKEND", &backend, false)
        .load(object)
        .map_err(permission_or(Error::Load))
}

/// A directory of its own on bpffs, for [`Geoblock::load_table_maps`].
fn private_pin_dir() -> Result<PathBuf, Error> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    super::state::ensure_bpffs_mounted()?;
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = PathBuf::from(super::state::BPFFS_ROOT).join(format!("geoblock-private-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new().mode(0o700).create(&dir).map_err(Error::io(&dir))?;
    Ok(dir)
}

/// Fills the trie map `name` of a table program with `trie`'s nodes; its
/// kernel memory.
pub(super) fn fill_trie(instance: &mut Ebpf, name: &'static str, trie: &Trie) -> Result<u64, Error> {
    let map = instance.map_mut(name).ok_or(Error::MissingMap(name))?;
    let mut map: Array<&mut MapData, TrieNode> = map.try_into()?;
    for (index, node) in trie.nodes().iter().enumerate() {
        map.set(index as u32, node, 0)?;
    }
    Ok(memlock(map.map()))
}

/// A map's kernel memory (`memlock` in its fdinfo); 0 if unreadable,
/// which only an exhausted fd table or a kernel without fdinfo would make.
pub(super) fn memlock(map: &MapData) -> u64 {
    let fdinfo = link::fdinfo(map.fd().as_fd()).unwrap_or_default();
    link::fdinfo_field(&fdinfo, "memlock").and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Fills the LPM trie `name` of a table program with `prefixes`; its
/// kernel memory.
fn fill_lpm<'a, const N: usize>(
    instance: &mut Ebpf,
    name: &'static str,
    prefixes: impl Iterator<Item = ([u8; N], u8, &'a CountryId)>,
) -> Result<u64, Error> {
    let map = instance.map_mut(name).ok_or(Error::MissingMap(name))?;
    let mut map: LpmTrie<&mut MapData, [u8; N], CountryId> = map.try_into()?;
    for (addr, len, country) in prefixes {
        map.insert(&Key::new(u32::from(len), addr), country, 0)?;
    }
    Ok(memlock(map.map()))
}

/// Maps EPERM anywhere in an aya error to [`Error::Permission`]. (EACCES is
/// not it: that is how the verifier rejects a program.)
/// Unpins a flow table of another size than `size`: the kernel cannot
/// resize a map, so a new one is made (the flows recorded so far go).
fn resize_flows(state: &StateDir, size: u32) -> Result<(), Error> {
    let path = state.pin(maps::FLOWS);
    let pinned = MapData::from_pin(&path).ok().and_then(|map| map.info().ok()).map(|info| info.max_entries());
    match pinned {
        Some(held) if held != size => {
            warn!("the flow table holds {held} flows, {size} are configured: recording flows afresh");
            state.unpin(&path)
        }
        _ => Ok(()),
    }
}

/// Pins the `ABI` map: the layout of the maps pinned beside it.
fn pin_abi(state: &StateDir) -> Result<(), Error> {
    let mut abi: Array<MapData, u32> = Array::create(1, 0).map_err(permission_or(Error::Map))?;
    abi.set(0, ABI_VERSION, 0)?;
    Ok(abi.pin(state.pin(ABI_PIN))?)
}

pub(super) fn permission_or<E: std::error::Error + 'static>(wrap: fn(E) -> Error) -> impl Fn(E) -> Error {
    move |e| match errno(&e) {
        Some(libc::EPERM) => Error::Permission,
        _ => wrap(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(names: &[Option<&str>]) -> Vec<Option<String>> {
        names.iter().map(|n| n.map(String::from)).collect()
    }

    #[test]
    fn interfaces_keep_their_slots() {
        let held = held(&[None, Some("eth1"), None, Some("eth0")]);
        assert_eq!(assign_slots(&held, &["eth0", "eth1", "eth2"]), [Some(3), Some(1), Some(2)]);
    }

    #[test]
    fn slots_of_unconfigured_interfaces_are_reused_last() {
        let held = held(&[None, Some("old"), None]);
        assert_eq!(assign_slots(&held, &["a", "b", "c"]), [Some(2), Some(1), None]);
        assert_eq!(assign_slots(&held, &["a"]), [Some(2)]);
    }

    #[test]
    fn names_are_padded_and_cut() {
        assert_eq!(&encode_name("eth0")[..5], b"eth0\0");
        assert_eq!(counters::iface_name(&encode_name("a-very-long-interface")).unwrap().len(), 15);
    }
}
