//! The kernel objects one daemon keeps alive, found from that daemon and
//! its state directory alone: never by a scan of the host, where other
//! geoblocks (other tests, other developers) may load tables of their own.

use std::{
    collections::BTreeMap,
    os::fd::{AsFd, AsRawFd as _, OwnedFd},
    path::{Path, PathBuf},
};

use aya::maps::MapInfo;
use geoblock::kernel::link;
use geoblock_common::maps;

use crate::geoblock::Daemon;

/// Maps and programs by id (`map 12`, `prog 7`), with their kernel memory
/// (`memlock`, bytes): those the daemon holds open, those pinned in its
/// state directory, and the tables in force.
pub fn kernel_objects(daemon: &Daemon) -> BTreeMap<String, u64> {
    let mut objects = BTreeMap::new();
    let mut add = |fdinfo: &Path| {
        // An fd the daemon closes meanwhile is gone: nothing to count.
        let Some((id, memlock)) = std::fs::read_to_string(fdinfo).ok().as_deref().and_then(object) else {
            return;
        };
        // A link names its program (without memlock); the program's own fd says it.
        let bytes = objects.entry(id).or_insert(0);
        *bytes = memlock.max(*bytes);
    };
    let fds = std::fs::read_dir(format!("/proc/{}/fdinfo", daemon.pid())).expect("the daemon's fdinfo");
    fds.flatten().for_each(|fd| add(&fd.path()));
    let entries = std::fs::read_dir(&daemon.state_dir).expect("the state directory");
    // Every entry but the `lock` directory is a pin.
    let pins = entries.flatten().filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()));
    pins.for_each(|pin| add(&own_fdinfo(pinned(&pin.path()))));
    for table in tables(&daemon.state_dir) {
        add(&own_fdinfo(table.fd().expect("table fd")));
    }
    objects
}

/// The ids of the tables in force: the maps of the table program in the
/// `TABLES` pinned in `state_dir`, `GEO_V4` and `GEO_V6` and `LPM_V4` and
/// `LPM_V6` (the lookup backend not in use has them too, nearly empty).
pub fn table_ids(state_dir: &Path) -> Vec<u32> {
    tables(state_dir).iter().map(MapInfo::id).collect()
}

fn tables(state_dir: &Path) -> Vec<MapInfo> {
    let slot = pinned(&state_dir.join(maps::TABLES));
    let id = crate::bench::kernel::slot_zero(slot.as_raw_fd())
        .unwrap_or_else(|| panic!("no table program in {}", state_dir.display()));
    let program = aya::programs::loaded_programs()
        .flatten()
        .find(|p| p.id() == id)
        .unwrap_or_else(|| panic!("table program {id} of {}", state_dir.display()));
    let names = [maps::GEO_V4, maps::GEO_V6, maps::LPM_V4, maps::LPM_V6];
    let tables: Vec<MapInfo> = (program.map_ids().expect("map ids").unwrap_or_default().into_iter())
        .map(|id| MapInfo::from_id(id).expect("map info"))
        .filter(|info| info.name_as_str().is_some_and(|n| names.contains(&n)))
        .collect();
    assert_eq!(tables.len(), 4, "tables of the table program in {}", state_dir.display());
    tables
}

/// The object an fdinfo describes, as (`map 12`, memlock); `None` for a
/// file descriptor of something else.
fn object(fdinfo: &str) -> Option<(String, u64)> {
    let field = |key: &str| link::fdinfo_field(fdinfo, key);
    let id = match (field("map_id"), field("prog_id")) {
        (Some(map), _) => format!("map {map}"),
        (None, Some(prog)) => format!("prog {prog}"),
        (None, None) => return None,
    };
    Some((id, field("memlock").and_then(|m| m.parse().ok()).unwrap_or(0)))
}

fn own_fdinfo(fd: impl AsFd) -> PathBuf {
    format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd()).into()
}

/// An fd of the object pinned at `path`, whatever its kind.
fn pinned(path: &Path) -> OwnedFd {
    link::open_pin(path).unwrap_or_else(|e| panic!("BPF_OBJ_GET {}: {e}", path.display()))
}
