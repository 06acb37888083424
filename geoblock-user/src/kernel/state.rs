//! The state directory on bpffs: the pins that keep enforcement alive when
//! no daemon is running, and that the next daemon adopts.
//!
//! Layout of the directory (default `/sys/fs/bpf/geoblock`):
//!
//! | pin | what |
//! | --- | --- |
//! | `ABI` | one-element array map: the [`ABI_VERSION`](geoblock_common::ABI_VERSION) of the maps here |
//! | `program` | the XDP program the links run, which tail-calls the table program in `TABLES` |
//! | `link-IFACE` | the bpf_link attaching the program to IFACE (a `.` in IFACE written `:`); the attachment lasts as long as this pin |
//! | `egress-IFACE` | the tcx link attaching the egress program (which records the host's own connections and enforces outbound rules) to IFACE |
//! | `cgroup-HOOK` | the links attaching the socket hooks (`connect4`, `connect6`, `sendmsg4`, `sendmsg6`: they refuse local sends the outbound rules block) to the configured cgroup |
//! | `TABLES` ... `FLOWS` | the maps shared by the programs, by name: the table program in force (which holds the tables), rules, policy, exceptions, counters, flows, kernel log records |
//! | `lock` | an empty directory, held under `flock` by the daemon or `geoblock detach` |
//!
//! The directory is root's and mode 0700: nobody else can remove a pin.

use std::{
    ffi::CString,
    fs::{self, DirBuilder, File, Permissions},
    io,
    mem::MaybeUninit,
    os::{
        fd::AsRawFd as _,
        unix::{
            ffi::OsStrExt as _,
            fs::{DirBuilderExt as _, PermissionsExt as _},
        },
    },
    path::{Path, PathBuf},
};

use aya::maps::{Array, Map, MapData};

use crate::{error::NotOurs, Error};

/// Where bpffs is mounted; [`ensure_bpffs_mounted`] mounts it there.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
pub const ABI_PIN: &str = "ABI";
pub const PROGRAM_PIN: &str = "program";
const LINK_PREFIX: &str = "link-";
const EGRESS_PREFIX: &str = "egress-";
/// A pin being replaced (see [`StateDir::replace`]); bpffs forbids dots.
const STAGED_PREFIX: &str = "staged-";
/// A map of a replaced layout that the program on the links still needs
/// (see [`StateDir::retire`]).
const RETIRED_PREFIX: &str = "retired-";
/// The empty directory the holder of the state directory locks (see [`StateDir::lock`]).
const LOCK_DIR: &str = "lock";

/// The state directory, held under an exclusive `flock` while this lives,
/// so that two daemons (or a daemon and `geoblock detach`) never work on
/// the same pins. The kernel drops the lock however the holder exits.
///
/// Only a directory root alone can change is taken (see [`crate::trust`]):
/// whoever can write it can remove a link pin, and so detach the program.
pub struct StateDir {
    path: PathBuf,
    _lock: File,
}

impl StateDir {
    /// Opens `path`, creating it (and mounting bpffs at /sys/fs/bpf first
    /// if that is where it goes and nothing is mounted there). Pins already
    /// there are kept: they are what the caller adopts.
    pub fn open(path: &Path) -> Result<StateDir, Error> {
        if path.starts_with(BPFFS_ROOT) {
            ensure_bpffs_mounted()?;
        }
        let parent = path.parent().unwrap_or(Path::new("/"));
        if !is_bpffs(parent) {
            return Err(Error::Io {
                path: parent.into(),
                source: io::Error::other("not on a bpf filesystem (mount -t bpf bpf DIR)"),
            });
        }
        // 0700 from the start: no moment in which others could look in.
        DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(|e| match e.kind() {
            io::ErrorKind::PermissionDenied => Error::Permission,
            _ => Error::Io { path: path.into(), source: e },
        })?;
        Self::take(path, true)
    }

    /// Opens an existing state directory (for `geoblock detach`).
    pub fn open_existing(path: &Path) -> Result<StateDir, Error> {
        match fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NoState(path.into())),
            Err(e) => Err(Error::Io { path: path.into(), source: e }),
            Ok(_) => Self::take(path, false),
        }
    }

    /// Takes `path` as the state directory if it is one: only root can
    /// change it, it is on bpffs, and it holds an `ABI` pin (or nothing, if
    /// `may_be_empty`). Refused, it is left exactly as it was.
    fn take(path: &Path, may_be_empty: bool) -> Result<StateDir, Error> {
        let names = pin_names(path)?;
        let refuse = |why: NotOurs| Error::NotOurState { path: path.into(), why };
        let real = crate::trust::private_dir(path).map_err(|e| refuse(e.into()))?;
        if !is_bpffs(&real) {
            return Err(refuse(NotOurs::NotBpffs));
        }
        let geoblocks = names.iter().any(|name| name == ABI_PIN) || (may_be_empty && names.is_empty());
        if !geoblocks {
            return Err(refuse(NotOurs::NoAbiPin));
        }
        // An earlier geoblock left it 0755: nobody else need look in either.
        fs::set_permissions(&real, Permissions::from_mode(0o700)).map_err(Error::io(&real))?;
        let lock = Self::lock(&real)?;
        Ok(StateDir { path: real, _lock: lock })
    }

    /// Locks the directory [`LOCK_DIR`] inside the state directory. Not the
    /// state directory itself: any process that can open a directory can
    /// flock it, and another user may hold one open from when an earlier
    /// geoblock left it readable. Nobody but root ever reached `lock`.
    fn lock(dir: &Path) -> Result<File, Error> {
        let path = dir.join(LOCK_DIR);
        match DirBuilder::new().mode(0o700).create(&path) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(Error::Io { path, source: e }),
            _ => {}
        }
        let lock = File::open(&path).map_err(Error::io(&path))?;
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = io::Error::last_os_error();
            return Err(match err.raw_os_error() {
                Some(libc::EWOULDBLOCK) => Error::StateInUse(dir.into()),
                _ => Error::Io { path, source: err },
            });
        }
        Ok(lock)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of the pin `name`.
    pub fn pin(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The name of the link pin of `iface`. bpffs reserves names with dots,
    /// which VLAN interfaces have (eth0.100), and interface names cannot
    /// hold a colon.
    pub fn link_name(iface: &str) -> String {
        format!("{LINK_PREFIX}{}", iface.replace('.', ":"))
    }

    pub fn link(&self, iface: &str) -> PathBuf {
        self.pin(&Self::link_name(iface))
    }

    /// The name of the egress program's link pin of `iface` (escaped as
    /// [`StateDir::link_name`]).
    pub fn egress_link_name(iface: &str) -> String {
        format!("{EGRESS_PREFIX}{}", iface.replace('.', ":"))
    }

    pub fn egress_link(&self, iface: &str) -> PathBuf {
        self.pin(&Self::egress_link_name(iface))
    }

    /// Removes both link pins of `iface`, which detaches it.
    pub fn unlink(&self, iface: &str) -> Result<(), Error> {
        self.unpin(&self.link(iface))?;
        self.unpin(&self.egress_link(iface))
    }

    /// Whether nothing is pinned here (a first start).
    pub fn is_empty(&self) -> bool {
        pin_names(&self.path).map_or(true, |names| names.is_empty())
    }

    /// Interfaces with a pinned link (XDP or egress), sorted.
    pub fn linked_interfaces(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.path)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name();
                let name = name.to_str()?;
                let iface = name.strip_prefix(LINK_PREFIX).or_else(|| name.strip_prefix(EGRESS_PREFIX))?;
                Some(iface.replace(':', "."))
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Pins through `pin` under a temporary name, then renames it over
    /// `name`: whoever opens `name` sees the old object or the new one.
    pub fn replace<E>(&self, name: &str, pin: impl FnOnce(&Path) -> Result<(), E>) -> Result<(), Error>
    where
        Error: From<E>,
    {
        let (staged, path) = (self.pin(&format!("{STAGED_PREFIX}{name}")), self.pin(name));
        self.unpin(&staged)?;
        pin(&staged)?;
        fs::rename(&staged, &path).map_err(Error::io(&path))
    }

    /// Removes one pin; a missing one is fine.
    pub fn unpin(&self, path: &Path) -> Result<(), Error> {
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::Io { path: path.into(), source: e }),
            _ => Ok(()),
        }
    }

    /// The pins of maps: every pin but the program's, the links' and the
    /// retired ones, of whatever layout (older ones had other maps).
    pub fn map_pins(&self) -> Result<Vec<String>, Error> {
        let maps = pin_names(&self.path)?.into_iter();
        let kept = |name: &String| {
            [LINK_PREFIX, EGRESS_PREFIX, super::sockets::CGROUP_PREFIX, RETIRED_PREFIX]
                .iter()
                .any(|p| name.starts_with(p))
        };
        Ok(maps.filter(|name| name != PROGRAM_PIN && !kept(name)).collect())
    }

    /// Keeps the map pinned as `name` under another name until
    /// [`StateDir::remove_retired`]: the kernel empties a program array
    /// nobody holds or pins, and the program still on the links would then
    /// pass every packet. A missing pin is fine.
    pub fn retire(&self, name: &str) -> Result<(), Error> {
        let (path, retired) = (self.pin(name), self.pin(&format!("{RETIRED_PREFIX}{name}")));
        match fs::rename(&path, &retired) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::Io { path, source: e }),
            _ => Ok(()),
        }
    }

    /// Removes the retired pins, once the links run the program of this layout.
    pub fn remove_retired(&self) -> Result<(), Error> {
        for name in pin_names(&self.path)?.iter().filter(|name| name.starts_with(RETIRED_PREFIX)) {
            self.unpin(&self.pin(name))?;
        }
        Ok(())
    }

    /// Removes every pin and the directory: unpinning a link detaches the
    /// program from its interface (nobody else holds the link), and the
    /// kernel frees the program and maps once nothing refers to them.
    pub fn remove_all(self) -> Result<(), Error> {
        for name in pin_names(&self.path)? {
            self.unpin(&self.pin(&name))?;
        }
        let lock = self.pin(LOCK_DIR);
        fs::remove_dir(&lock).map_err(Error::io(&lock))?;
        fs::remove_dir(&self.path).map_err(Error::io(&self.path))
    }
}

/// What is pinned in `dir`: every name but [`LOCK_DIR`].
fn pin_names(dir: &Path) -> Result<Vec<String>, Error> {
    let entries = fs::read_dir(dir).map_err(|e| match e.kind() {
        io::ErrorKind::PermissionDenied => Error::Permission,
        _ => Error::Io { path: dir.into(), source: e },
    })?;
    let names = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned());
    Ok(names.filter(|name| name != LOCK_DIR).collect())
}

/// Mounts bpffs at [`BPFFS_ROOT`] unless it is there already.
pub fn ensure_bpffs_mounted() -> Result<(), Error> {
    if is_bpffs(Path::new(BPFFS_ROOT)) {
        Ok(())
    } else {
        mount_bpffs(Path::new(BPFFS_ROOT))
    }
}

fn is_bpffs(path: &Path) -> bool {
    has_fs_magic(path, BPF_FS_MAGIC)
}

/// Whether the file system at `path` is of type `magic` (statfs's `f_type`).
pub fn has_fs_magic(path: &Path, magic: i64) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let mut buf = MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: c_path is NUL-terminated; buf is written by statfs on success.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), buf.as_mut_ptr()) };
    // SAFETY: statfs succeeded, so it filled buf.
    rc == 0 && unsafe { buf.assume_init() }.f_type == magic
}

fn mount_bpffs(at: &Path) -> Result<(), Error> {
    let target = CString::new(at.as_os_str().as_bytes()).expect("path without NUL");
    // The kernel's default mode is 1777, in which any user could create the
    // state directory before the daemon does. The mode is mount data rather
    // than a chmod after mounting, so there is no moment in which it is 1777.
    let data = c"mode=0700";
    // SAFETY: all pointers are valid NUL-terminated strings.
    let rc = unsafe { libc::mount(c"bpf".as_ptr(), target.as_ptr(), c"bpf".as_ptr(), 0, data.as_ptr().cast()) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return Err(match err.raw_os_error() {
            Some(libc::EPERM) => Error::Permission,
            _ => Error::Io { path: at.into(), source: err },
        });
    }
    Ok(())
}

/// The ABI version recorded in the state directory `dir`, if any.
pub fn pinned_abi(dir: &std::path::Path) -> Option<u32> {
    let data = MapData::from_pin(dir.join(ABI_PIN)).ok()?;
    let abi: Array<MapData, u32> = Map::Array(data).try_into().ok()?;
    abi.get(&0, 0).ok()
}
