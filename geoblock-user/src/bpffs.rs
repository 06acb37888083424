//! The bpf filesystem where the daemon pins what other processes read.

use std::{
    ffi::CString,
    fs::{self, File},
    io,
    mem::MaybeUninit,
    os::{fd::AsRawFd as _, unix::ffi::OsStrExt as _},
    path::{Path, PathBuf},
};

use crate::Error;

/// Where pins go unless `--state-dir` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/sys/fs/bpf/geoblock";
const BPFFS_ROOT: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// A directory of pins on a bpffs, emptied and removed on drop so that a
/// stopped daemon leaves nothing behind. Held under an exclusive `flock`
/// while it lives, so a second daemon cannot wipe a running one's pins.
pub struct StateDir {
    path: PathBuf,
    _lock: File,
}

impl StateDir {
    /// Creates `path` (mounting bpffs at /sys/fs/bpf first if that is where
    /// it goes and nothing is mounted there), replacing what a crashed
    /// daemon may have left, but refusing one a live daemon holds.
    pub fn create(path: &Path) -> Result<StateDir, Error> {
        if path.starts_with(BPFFS_ROOT) && !is_bpffs(Path::new(BPFFS_ROOT)) {
            mount_bpffs(Path::new(BPFFS_ROOT))?;
        }
        let parent = path.parent().unwrap_or(Path::new("/"));
        if !is_bpffs(parent) {
            return Err(Error::Io {
                path: parent.into(),
                source: io::Error::other("not on a bpf filesystem (mount -t bpf bpf DIR)"),
            });
        }
        fs::create_dir_all(path).map_err(Error::io(path))?;
        let lock = File::open(path).map_err(Error::io(path))?;
        // SAFETY: flock on an fd we own. The kernel drops the lock when the
        // holder exits, however it exits: a crashed daemon's lock is gone.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = io::Error::last_os_error();
            return Err(match err.raw_os_error() {
                Some(libc::EWOULDBLOCK) => Error::StateInUse(path.into()),
                _ => Error::Io { path: path.into(), source: err },
            });
        }
        let dir = StateDir { path: path.into(), _lock: lock };
        dir.clear_pins();
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn clear_pins(&self) {
        if let Ok(entries) = fs::read_dir(&self.path) {
            for entry in entries.flatten() {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        self.clear_pins();
        let _ = fs::remove_dir(&self.path);
    }
}

fn is_bpffs(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let mut buf = MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: c_path is NUL-terminated; buf is written by statfs on success.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), buf.as_mut_ptr()) };
    rc == 0 && unsafe { buf.assume_init() }.f_type as i64 == BPF_FS_MAGIC
}

fn mount_bpffs(at: &Path) -> Result<(), Error> {
    let target = CString::new(at.as_os_str().as_bytes()).expect("path without NUL");
    // SAFETY: all pointers are valid NUL-terminated strings; data is null.
    let rc = unsafe {
        libc::mount(c"bpf".as_ptr(), target.as_ptr(), c"bpf".as_ptr(), 0, std::ptr::null())
    };
    if rc != 0 {
        return Err(Error::Io { path: at.into(), source: io::Error::last_os_error() });
    }
    Ok(())
}
