//! A real unprivileged user, for tests of what another user on the machine
//! can do: created with `useradd`, removed on drop (also on panic).

use std::process::Command;

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
}

impl Drop for User {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).output();
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
