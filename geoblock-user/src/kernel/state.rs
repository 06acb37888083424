//! The state directory on bpffs: the pins that keep enforcement alive when
//! no daemon is running, and that the next daemon adopts.
//!
//! Layout of the directory (default `/sys/fs/bpf/geoblock`):
//!
//! | pin | what |
//! | --- | --- |
//! | `ABI` | one-element array map: the [`ABI_VERSION`](geoblock_common::ABI_VERSION) of the maps here |
//! | `program` | the XDP program the links run |
//! | `link-IFACE` | the bpf_link attaching the program to IFACE (a `.` in IFACE written `:`); the attachment lasts as long as this pin |
//! | `GEO_V4` ... `TOTALS` | the program's maps, by name: tables, policy, exceptions, counters |

use std::{
    ffi::CString,
    fs::{self, File},
    io,
    mem::MaybeUninit,
    os::{fd::AsRawFd as _, unix::ffi::OsStrExt as _},
    path::{Path, PathBuf},
};

use aya::maps::{Array, Map, MapData};

use crate::Error;

/// Where bpffs is mounted; [`ensure_bpffs_mounted`] mounts it there.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
pub const ABI_PIN: &str = "ABI";
pub const PROGRAM_PIN: &str = "program";
const LINK_PREFIX: &str = "link-";
/// A pin being replaced (see [`StateDir::replace`]); bpffs forbids dots.
const STAGED_PREFIX: &str = "staged-";

/// The state directory, held under an exclusive `flock` while this lives,
/// so that two daemons (or a daemon and `geoblock detach`) never work on
/// the same pins. The kernel drops the lock however the holder exits.
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
        fs::create_dir_all(path).map_err(|e| match e.kind() {
            io::ErrorKind::PermissionDenied => Error::Permission,
            _ => Error::Io { path: path.into(), source: e },
        })?;
        Self::lock(path)
    }

    /// Opens an existing state directory (for `geoblock detach`).
    pub fn open_existing(path: &Path) -> Result<StateDir, Error> {
        if !path.is_dir() {
            return Err(Error::NoState(path.into()));
        }
        Self::lock(path)
    }

    fn lock(path: &Path) -> Result<StateDir, Error> {
        let lock = File::open(path).map_err(Error::io(path))?;
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = io::Error::last_os_error();
            return Err(match err.raw_os_error() {
                Some(libc::EWOULDBLOCK) => Error::StateInUse(path.into()),
                _ => Error::Io { path: path.into(), source: err },
            });
        }
        Ok(StateDir { path: path.into(), _lock: lock })
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

    /// Whether nothing is pinned here (a first start).
    pub fn is_empty(&self) -> bool {
        fs::read_dir(&self.path).map_or(true, |mut entries| entries.next().is_none())
    }

    /// Interfaces with a pinned link, sorted.
    pub fn linked_interfaces(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.path)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| Some(e.file_name().to_str()?.strip_prefix(LINK_PREFIX)?.replace(':', ".")))
            .collect();
        names.sort();
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

    /// Removes every pin and the directory: unpinning a link detaches the
    /// program from its interface (nobody else holds the link), and the
    /// kernel frees the program and maps once nothing refers to them.
    pub fn remove_all(self) -> Result<(), Error> {
        for entry in fs::read_dir(&self.path).map_err(Error::io(&self.path))?.flatten() {
            self.unpin(&entry.path())?;
        }
        fs::remove_dir(&self.path).map_err(Error::io(&self.path))
    }
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
    // SAFETY: all pointers are valid NUL-terminated strings; data is null.
    let rc = unsafe { libc::mount(c"bpf".as_ptr(), target.as_ptr(), c"bpf".as_ptr(), 0, std::ptr::null()) };
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
