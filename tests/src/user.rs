//! A real unprivileged user, for tests of what another user on the machine
//! can do: created with `useradd`, removed on drop (also on panic).

use std::{
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
};

use crate::netns::{assert_root, is_stale, unique_tag};

/// Prefix of the users this crate creates: `geoblock-test-<pid>-<n>`.
const USER_PREFIX: &str = "geoblock-test-";

pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl User {
    /// A new system user without a home directory or a login shell.
    pub fn create() -> User {
        assert_root();
        sweep_stale();
        let name = format!("{USER_PREFIX}{}", unique_tag());
        run_root("useradd", &["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", &name]);
        // The guard first: removed even if what follows panics.
        let mut user = User { name, uid: 0, gid: 0 };
        let id = |flag| run_root("id", &[flag, &user.name]).trim().parse().expect("id prints a number");
        let (uid, gid) = (id("-u"), id("-g"));
        (user.uid, user.gid) = (uid, gid);
        assert_ne!(user.uid, 0, "{} must not be root", user.name);
        user
    }

    /// `program ARGS` as this user (no supplementary groups), set up to run.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        // std drops the supplementary groups when root sets a uid.
        cmd.args(args).uid(self.uid).gid(self.gid).stdin(Stdio::null());
        cmd
    }

    /// `program ARGS` as this user, to its end.
    pub fn run(&self, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
        let program = program.as_ref().to_owned();
        self.command(&program, args).output().unwrap_or_else(|e| panic!("running {program:?} as the test user: {e}"))
    }

    /// Holds an exclusive `flock` on `path` as this user (`flock(1)`) until
    /// the returned guard is dropped; panics if the lock cannot be taken.
    pub fn hold_lock(&self, path: &Path) -> HeldLock {
        let mut cmd =
            self.command("flock", &["--nonblock", path.to_str().unwrap(), "sh", "-c", "echo locked; exec sleep 600"]);
        // Its own process group, so that the guard ends flock and its sleep (which holds the lock) together.
        cmd.process_group(0).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("starting flock(1)");
        let mut line = String::new();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let _ = std::io::BufRead::read_line(&mut stdout, &mut line);
        let held = HeldLock(child);
        assert_eq!(line.trim(), "locked", "the test user could not flock {}", path.display());
        held
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).output();
    }
}

/// A `flock(1)` holding a lock; killed with its process group on drop.
pub struct HeldLock(Child);

impl Drop for HeldLock {
    fn drop(&mut self) {
        // SAFETY: kill on the process group of our own child (not yet reaped).
        unsafe { libc::kill(-(self.0.id() as libc::pid_t), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// Removes users left by a test process killed before its guards ran.
fn sweep_stale() {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let names: Vec<&str> = passwd.lines().filter_map(|l| l.split(':').next()).collect();
    for name in names.into_iter().filter(|name| is_stale(name, USER_PREFIX)) {
        let _ = Command::new("userdel").arg(name).output();
    }
}

fn run_root(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(out.status.success(), "{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A bpffs of the test's own, mounted as the kernel mounts one (mode
/// 1777: anyone may create in it) in a directory anyone may traverse:
/// what a machine whose bpffs systemd mounted looks like to other users,
/// whoever mounted /sys/fs/bpf here. Unmounted, with all it holds, on drop.
pub struct OpenBpffs(pub PathBuf);

impl OpenBpffs {
    pub fn mount() -> OpenBpffs {
        let dir = std::env::temp_dir().join(format!("geoblock-bpffs-{}", unique_tag()));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let target = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
        // SAFETY: NUL-terminated strings; no mount data: the kernel's default mode.
        let rc = unsafe { libc::mount(c"bpf".as_ptr(), target.as_ptr(), c"bpf".as_ptr(), 0, std::ptr::null()) };
        assert_eq!(rc, 0, "mounting a bpffs at {}: {}", dir.display(), std::io::Error::last_os_error());
        OpenBpffs(dir)
    }

    /// A path in it (not created).
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for OpenBpffs {
    fn drop(&mut self) {
        let target = std::ffi::CString::new(self.0.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path; a lazy unmount, as a daemon may still hold it.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        let _ = std::fs::remove_dir(&self.0);
    }
}
