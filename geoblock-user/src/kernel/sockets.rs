//! The socket hooks: cgroup `connect4`, `connect6`, `sendmsg4` and
//! `sendmsg6` programs that refuse a local socket's connect or send to a
//! destination the outbound rules block (EPERM), so that local senders
//! fail at once instead of retransmitting into the egress program's
//! silent drop (see the eBPF `outbound` module).
//!
//! Each hook is an entry program attached to a cgroup (and so to every
//! process below it) through a bpf_link pinned in the state directory as
//! `cgroup-HOOK`, and a table program loaded with each table into a
//! program array of its own: the kernel refuses tail calls between
//! programs of different attach types. A restarted daemon adopts the
//! links (switching them to its programs in place), and checks them every
//! second like the interface links.

use std::{
    fs::File,
    os::{
        fd::{AsFd as _, AsRawFd as _},
        unix::fs::MetadataExt as _,
    },
    path::{Path, PathBuf},
};

use aya::{
    maps::{MapData, ProgramArray},
    programs::{links::FdLink, CgroupAttachMode, CgroupSockAddr},
    Ebpf,
};

use super::{
    link::{self, Tampering},
    program::{permission_or, Geoblock},
    state::StateDir,
};
use crate::Error;

/// A socket hook: its name (the attach type), its entry and table
/// programs, and its program array.
#[derive(Clone, Copy, Debug)]
pub struct Hook {
    pub name: &'static str,
    entry: &'static str,
    table: &'static str,
    tables: &'static str,
}

pub const HOOKS: [Hook; 4] = [
    Hook {
        name: "connect4",
        entry: "geoblock_connect4",
        table: "geoblock_connect4_table",
        tables: geoblock_common::maps::CONNECT4_TABLES,
    },
    Hook {
        name: "connect6",
        entry: "geoblock_connect6",
        table: "geoblock_connect6_table",
        tables: geoblock_common::maps::CONNECT6_TABLES,
    },
    Hook {
        name: "sendmsg4",
        entry: "geoblock_sendmsg4",
        table: "geoblock_sendmsg4_table",
        tables: geoblock_common::maps::SENDMSG4_TABLES,
    },
    Hook {
        name: "sendmsg6",
        entry: "geoblock_sendmsg6",
        table: "geoblock_sendmsg6_table",
        tables: geoblock_common::maps::SENDMSG6_TABLES,
    },
];

/// Prefix of the hooks' link pins in the state directory.
pub const CGROUP_PREFIX: &str = "cgroup-";

impl Hook {
    /// The name of its link pin in the state directory.
    pub fn pin_name(&self) -> String {
        format!("{CGROUP_PREFIX}{}", self.name)
    }
}

/// The root of the cgroup v2 hierarchy, where `/proc/self/mountinfo` says
/// it is mounted: `/sys/fs/cgroup` on most hosts, `/sys/fs/cgroup/unified`
/// on hybrid ones.
pub fn cgroup_root() -> Result<PathBuf, Error> {
    let path = Path::new("/proc/self/mountinfo");
    let mountinfo = std::fs::read_to_string(path).map_err(Error::io(path))?;
    cgroup2_mount(&mountinfo).ok_or(Error::NoCgroup2)
}

/// The mount point of the first cgroup2 mount of its hierarchy's root.
fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
        let (mount, fs) = line.split_once(" - ")?;
        let fields: Vec<&str> = mount.split(' ').collect();
        let mountpoint = fields.get(4)?;
        (fs.split(' ').next() == Some("cgroup2") && fields.get(3) == Some(&"/"))
            .then(|| PathBuf::from(mountpoint.replace("\\040", " ")))
    })
}

/// The kernel's id of the cgroup at `path` (on cgroup v2: its
/// directory's inode number).
pub fn cgroup_id(path: &Path) -> Result<u64, Error> {
    Ok(std::fs::metadata(path).map_err(Error::io(path))?.ino())
}

impl Geoblock {
    /// The loaded entry program of `hook` (`None` in objects without one).
    fn hook_entry(&mut self, hook: &Hook) -> Option<&mut CgroupSockAddr> {
        self.ebpf.program_mut(hook.entry)?.try_into().ok()
    }

    /// Loads the hooks' entry programs (at load, beside the XDP program).
    pub(super) fn load_hooks(&mut self) -> Result<(), Error> {
        for hook in &HOOKS {
            if let Some(program) = self.hook_entry(hook) {
                program.load().map_err(permission_or(Error::Program))?;
            }
        }
        Ok(())
    }

    /// Loads `instance`'s table programs of the hooks (the instance of a
    /// table, whose tries they share) and makes them the ones in force.
    pub(super) fn load_hook_tables(&mut self, instance: &mut Ebpf) -> Result<(), Error> {
        for hook in &HOOKS {
            let Some(program) = instance.program_mut(hook.table) else {
                continue;
            };
            let program: &mut CgroupSockAddr = program.try_into()?;
            program.load().map_err(permission_or(Error::Program))?;
            let mut tables: ProgramArray<&mut MapData> = self.map_mut(hook.tables)?;
            tables.set(0, program.fd()?, 0)?;
        }
        Ok(())
    }

    /// Attaches every hook to `cgroup`: a live link pinned for it there is
    /// switched to this daemon's program in place; otherwise a new link is
    /// attached and pinned over whatever the pin holds.
    pub fn attach_hooks(&mut self, cgroup: &Path, state: &StateDir) -> Result<(), Error> {
        let id = cgroup_id(cgroup)?;
        for hook in &HOOKS {
            if self.adopt_hook(hook, id, state)? {
                continue;
            }
            self.attach_hook(hook, cgroup, state)?;
        }
        Ok(())
    }

    /// Switches the link pinned for `hook` to this program, if it is a
    /// live link to the cgroup `id`; whether it was.
    fn adopt_hook(&mut self, hook: &Hook, id: u64, state: &StateDir) -> Result<bool, Error> {
        let path = state.pin(&hook.pin_name());
        let Ok(found) = link::pinned_link(&path) else {
            return Ok(false);
        };
        if found.kind.as_deref() != Some("cgroup") || found.cgroup != id {
            return Ok(false);
        }
        let Some(program) = self.hook_entry(hook) else {
            return Ok(true);
        };
        let fd = link::open_pin(&path).map_err(Error::io(&path))?;
        let program = program.fd()?.as_fd().as_raw_fd();
        match link::update(fd.as_fd(), program) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOLINK) => Ok(false),
            Err(e) => Err(Error::Io { path, source: e }),
        }
    }

    /// Attaches `hook` to `cgroup` with a new link, pinned in `state`.
    /// A bpf_link always runs beside the cgroup's other programs (each
    /// may refuse a call); the kernel takes no attach flags with it, so
    /// the mode given is the one without flags.
    fn attach_hook(&mut self, hook: &Hook, cgroup: &Path, state: &StateDir) -> Result<(), Error> {
        let Some(program) = self.hook_entry(hook) else {
            return Ok(());
        };
        let dir = File::open(cgroup).map_err(Error::io(cgroup))?;
        let id = program.attach(&dir, CgroupAttachMode::Single)?;
        let link = FdLink::try_from(program.take_link(id)?).map_err(|_| Error::NoBpfLink)?;
        state.replace(&hook.pin_name(), |path| link.pin(path).map(drop))
    }

    /// What is wrong with the hooks' links: each must run this program's
    /// entry program and attach to the cgroup `id`.
    pub fn verify_hooks(&mut self, id: u64, state: &StateDir) -> Vec<(Hook, Tampering)> {
        let mut found = Vec::new();
        for hook in HOOKS {
            let Some(program) = self.hook_entry(&hook).and_then(|p| p.info().ok()).map(|info| info.id()) else {
                continue;
            };
            let problem = match link::pinned_link(&state.pin(&hook.pin_name())) {
                Err(problem) => Some(problem),
                Ok(link) => link::cgroup_tampering(&link, program, id),
            };
            if let Some(problem) = problem {
                found.push((hook, problem));
            }
        }
        found
    }

    /// Undoes tampering with `hook`'s link: a new link to `cgroup`, pinned
    /// over whatever the pin holds.
    pub fn repair_hook(&mut self, hook: &Hook, cgroup: &Path, state: &StateDir) -> Result<&'static str, Error> {
        if self.adopt_hook(hook, cgroup_id(cgroup)?, state)? {
            return Ok("program restored");
        }
        self.attach_hook(hook, cgroup, state)?;
        Ok("re-attached")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cgroup2_root_is_found_wherever_it_is_mounted() {
        let hybrid = "25 1 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
                      26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n\
                      27 25 0:24 / /sys/fs/cgroup/systemd rw shared:10 - cgroup cgroup rw,name=systemd\n";
        assert_eq!(cgroup2_mount(hybrid), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        let unified = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev shared:4 - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount(unified), Some(PathBuf::from("/sys/fs/cgroup")));
        // A container's view of a sub-cgroup is not the hierarchy's root.
        let nested = "40 30 0:26 /system.slice /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount(nested), None);
        assert_eq!(cgroup2_mount("25 1 0:22 / /sys/fs/cgroup ro - tmpfs tmpfs ro\n"), None);
    }

    #[test]
    fn hooks_pin_under_their_attach_type() {
        let names: Vec<String> = HOOKS.iter().map(Hook::pin_name).collect();
        assert_eq!(names, ["cgroup-connect4", "cgroup-connect6", "cgroup-sendmsg4", "cgroup-sendmsg6"]);
    }
}
