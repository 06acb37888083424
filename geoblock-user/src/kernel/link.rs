//! The links pinned for an interface, as the kernel describes them: whether
//! each is still the kind of link it was (XDP, tcx), which program it runs,
//! and on which interface.
//! The daemon checks this every second, so that enforcement is verified
//! rather than assumed (a removed pin detaches: the daemon keeps no fd).
//!
//! aya 0.14 tells a link's program but not its interface, so the link's
//! fdinfo is read instead: it names both.

use std::{
    ffi::CString,
    fmt, fs, io,
    os::{
        fd::{AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
};

/// What a pinned link's fdinfo says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    /// `xdp`; another kind of link, or none for an object that is no link.
    pub kind: Option<String>,
    /// The id of the program it runs (0: none).
    pub program: u32,
    /// The interface it attaches to (0: detached).
    pub ifindex: u32,
    /// The cgroup a cgroup link attaches to (0: detached).
    pub cgroup: u64,
}

/// How an interface's enforcement was found tampered with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tampering {
    /// The link pin is gone, and with it the attachment.
    PinRemoved,
    /// The pin holds another kind of link (or no link).
    WrongKind,
    /// The link runs another program than geoblock's.
    ProgramReplaced { program: u32 },
    /// The link attaches to no interface (0), or to another one.
    Detached { ifindex: u32 },
    /// The cgroup link attaches to no cgroup (0), or to another one.
    CgroupMoved { cgroup: u64 },
    /// The pin could not be read.
    Unreadable(String),
    /// The egress program's link (which records the host's own
    /// connections, whose replies pass) is tampered with.
    Egress(Box<Tampering>),
}

impl fmt::Display for Tampering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tampering::PinRemoved => f.write_str("link pin removed"),
            Tampering::WrongKind => f.write_str("link pin replaced by another kind of link, or something else"),
            Tampering::ProgramReplaced { program } => {
                write!(f, "program replaced (the link runs program id {program})")
            }
            Tampering::Detached { ifindex: 0 } => f.write_str("link detached"),
            Tampering::Detached { ifindex } => write!(f, "link moved to interface index {ifindex}"),
            Tampering::CgroupMoved { cgroup: 0 } => f.write_str("link detached from its cgroup"),
            Tampering::CgroupMoved { cgroup } => write!(f, "link moved to cgroup id {cgroup}"),
            Tampering::Unreadable(e) => write!(f, "link pin unreadable: {e}"),
            Tampering::Egress(inner) => write!(f, "egress {inner}"),
        }
    }
}

/// The link pinned at `path`.
pub fn pinned_link(path: &Path) -> Result<LinkInfo, Tampering> {
    let fd = open_pin(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Tampering::PinRemoved,
        _ => Tampering::Unreadable(e.to_string()),
    })?;
    let fdinfo = fdinfo(fd.as_fd()).map_err(|e| Tampering::Unreadable(format!("its fdinfo: {e}")))?;
    Ok(parse_fdinfo(&fdinfo))
}

/// What the kernel says of a BPF object's fd (its kind, ids, `memlock`...).
pub fn fdinfo(fd: BorrowedFd<'_>) -> io::Result<String> {
    fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
}

/// The value of `key` in an fdinfo text.
pub fn fdinfo_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')).map(str::trim)
}

/// What is wrong with `link`, pinned for an interface at `ifindex` that
/// must run `program` through a link of `kind` (`xdp`, `tcx`); `None`: nothing.
pub fn tampering(link: &LinkInfo, kind: &str, program: u32, ifindex: u32) -> Option<Tampering> {
    if link.kind.as_deref() != Some(kind) {
        Some(Tampering::WrongKind)
    } else if link.ifindex != ifindex {
        Some(Tampering::Detached { ifindex: link.ifindex })
    } else if link.program != program {
        Some(Tampering::ProgramReplaced { program: link.program })
    } else {
        None
    }
}

/// What is wrong with the cgroup `link`, which must run `program` and
/// attach to the cgroup `cgroup`; `None`: nothing.
pub fn cgroup_tampering(link: &LinkInfo, program: u32, cgroup: u64) -> Option<Tampering> {
    if link.kind.as_deref() != Some("cgroup") {
        Some(Tampering::WrongKind)
    } else if link.cgroup != cgroup {
        Some(Tampering::CgroupMoved { cgroup: link.cgroup })
    } else if link.program != program {
        Some(Tampering::ProgramReplaced { program: link.program })
    } else {
        None
    }
}

/// `link_type:`, `prog_id:`, `ifindex:` (XDP and tcx links) and
/// `cgroup_id:` (cgroup links) of an fdinfo text.
fn parse_fdinfo(text: &str) -> LinkInfo {
    let kind = fdinfo_field(text, "link_type").map(String::from);
    let program = fdinfo_field(text, "prog_id").and_then(|v| v.parse().ok()).unwrap_or(0);
    let ifindex = fdinfo_field(text, "ifindex").and_then(|v| v.parse().ok()).unwrap_or(0);
    let cgroup = fdinfo_field(text, "cgroup_id").and_then(|v| v.parse().ok()).unwrap_or(0);
    LinkInfo { kind, program, ifindex, cgroup }
}

/// BPF_LINK_UPDATE: makes `link` run the program `program` (an fd) in
/// place of the one it runs, in one step. For links aya 0.14 cannot
/// update (cgroup links).
pub fn update(link: BorrowedFd<'_>, program: i32) -> io::Result<()> {
    #[repr(C)]
    struct LinkUpdateAttr {
        link_fd: u32,
        new_prog_fd: u32,
        flags: u32,
        old_prog_fd: u32,
    }
    const BPF_LINK_UPDATE: libc::c_long = 29;
    let attr =
        LinkUpdateAttr { link_fd: link.as_raw_fd() as u32, new_prog_fd: program as u32, flags: 0, old_prog_fd: 0 };
    // SAFETY: the attr lives for the call; the kernel reads no more than the size given.
    let rc = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_LINK_UPDATE, &attr as *const LinkUpdateAttr, size_of::<LinkUpdateAttr>())
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// BPF_OBJ_GET: an fd of the object pinned at `path`, whatever its kind
/// (map, program or link), where aya opens each kind its own way and
/// keeps the fd to itself.
pub fn open_pin(path: &Path) -> io::Result<OwnedFd> {
    #[repr(C)]
    struct ObjAttr {
        pathname: u64,
        bpf_fd: u32,
        /// 0: read-write, the only mode a link opens in.
        file_flags: u32,
    }
    const BPF_OBJ_GET: libc::c_long = 7;
    let name = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let attr = ObjAttr { pathname: name.as_ptr() as u64, bpf_fd: 0, file_flags: 0 };
    // SAFETY: the attr points at `name`, alive for the call; the kernel
    // reads no more than the size given.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_GET, &attr as *const ObjAttr, size_of::<ObjAttr>()) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    const XDP_LINK: &str = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t2061\nlink_type:\txdp\nlink_id:\t4\n\
                            prog_tag:\t3b185187f1855c4c\nprog_id:\t27\nifindex:\t5\n";

    fn xdp(program: u32, ifindex: u32) -> LinkInfo {
        LinkInfo { kind: Some("xdp".into()), program, ifindex, cgroup: 0 }
    }

    #[test]
    fn fdinfo_names_the_program_and_the_interface() {
        assert_eq!(parse_fdinfo(XDP_LINK), xdp(27, 5));
        let map = "pos:\t0\nflags:\t02000002\nmap_type:\t2\nkey_size:\t4\n";
        assert_eq!(parse_fdinfo(map), LinkInfo { kind: None, program: 0, ifindex: 0, cgroup: 0 });
        let cgroup = "link_type:\tcgroup\nlink_id:\t9\nprog_id:\t31\ncgroup_id:\t4242\nattach_type:\t10\n";
        let found = parse_fdinfo(cgroup);
        assert_eq!(found, LinkInfo { kind: Some("cgroup".into()), program: 31, ifindex: 0, cgroup: 4242 });
        assert_eq!(cgroup_tampering(&found, 31, 4242), None);
        assert_eq!(cgroup_tampering(&found, 32, 4242), Some(Tampering::ProgramReplaced { program: 31 }));
        assert_eq!(cgroup_tampering(&found, 31, 1), Some(Tampering::CgroupMoved { cgroup: 4242 }));
        assert_eq!(cgroup_tampering(&xdp(31, 5), 31, 4242), Some(Tampering::WrongKind));
    }

    #[test]
    fn every_kind_of_tampering_is_told_apart() {
        assert_eq!(tampering(&xdp(27, 5), "xdp", 27, 5), None);
        assert_eq!(tampering(&xdp(99, 5), "xdp", 27, 5), Some(Tampering::ProgramReplaced { program: 99 }));
        assert_eq!(tampering(&xdp(27, 0), "xdp", 27, 5), Some(Tampering::Detached { ifindex: 0 }));
        assert_eq!(tampering(&xdp(27, 7), "xdp", 27, 5), Some(Tampering::Detached { ifindex: 7 }));
        let tcx = LinkInfo { kind: Some("tcx".into()), ..xdp(27, 5) };
        assert_eq!(tampering(&tcx, "xdp", 27, 5), Some(Tampering::WrongKind));
        assert_eq!(tampering(&tcx, "tcx", 27, 5), None);
        assert_eq!(Tampering::Detached { ifindex: 0 }.to_string(), "link detached");
        assert_eq!(Tampering::Egress(Box::new(Tampering::PinRemoved)).to_string(), "egress link pin removed");
    }

    #[test]
    fn a_missing_pin_is_a_removed_one() {
        assert_eq!(pinned_link(Path::new("/nonexistent/link-eth0")), Err(Tampering::PinRemoved));
    }
}
