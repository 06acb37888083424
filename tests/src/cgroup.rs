//! Cgroups of a test's own, under the cgroup v2 root: the daemon's socket
//! hooks attach only there, never to the machine's root cgroup, and only
//! the processes a test moves in are judged by them.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

/// Where cgroup v2 is mounted: `/sys/fs/cgroup/unified` on hybrid hosts,
/// `/sys/fs/cgroup` elsewhere.
pub fn root() -> PathBuf {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("reading /proc/self/mountinfo");
    let mount = mountinfo.lines().find_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        let fields: Vec<&str> = mount.split(' ').collect();
        (fs.starts_with("cgroup2 ") && fields.get(3) == Some(&"/")).then(|| PathBuf::from(fields[4]))
    });
    mount.expect("the tests need a cgroup v2 hierarchy mounted")
}

/// Prefix of the test cgroups: `geoblock-test-<pid>-<n>`.
const PREFIX: &str = "geoblock-test-";

/// A cgroup of this test's own, removed on drop (its processes moved
/// back to the root first).
pub struct Cgroup {
    pub path: PathBuf,
}

impl Cgroup {
    pub fn new() -> Cgroup {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let root = root();
        // Those of test processes killed before their guards ran.
        for stale in crate::netns::stale_names(&root, PREFIX) {
            let _ = fs::remove_dir(root.join(stale));
        }
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = root.join(format!("{PREFIX}{}-{n}", std::process::id()));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        Cgroup { path }
    }

    pub fn arg(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// Moves the process `pid` in.
    pub fn add(&self, pid: u32) {
        write_pid(&self.path, pid);
    }
}

impl Default for Cgroup {
    fn default() -> Cgroup {
        Cgroup::new()
    }
}

fn write_pid(cgroup: &Path, pid: u32) {
    let procs = cgroup.join("cgroup.procs");
    fs::write(&procs, pid.to_string()).unwrap_or_else(|e| panic!("moving {pid} into {}: {e}", procs.display()));
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let procs = fs::read_to_string(self.path.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
            let _ = fs::write(root().join("cgroup.procs"), pid.to_string());
        }
        if let Err(e) = fs::remove_dir(&self.path) {
            eprintln!("removing the test cgroup {}: {e}", self.path.display());
        }
    }
}

/// What a test socket does to its destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// A TCP `connect()`.
    TcpConnect,
    /// A UDP `sendto()` on an unconnected socket.
    UdpSendTo,
}

impl Cgroup {
    /// Makes `call` to `to` from a child process moved into this cgroup
    /// and into `ns` before it opens its socket; the errno it got (0:
    /// none) and how long it took. `family` is the socket's (an
    /// `AF_INET6` socket reaches an IPv4 address as `::ffff:a.b.c.d`).
    /// A connect gives up after 3 s (SO_SNDTIMEO: EINPROGRESS).
    pub fn call(&self, ns: &crate::netns::Netns, call: Call, family: i32, to: std::net::SocketAddr) -> (i32, Duration) {
        use std::os::fd::AsRawFd as _;
        let procs = fs::OpenOptions::new().write(true).open(self.path.join("cgroup.procs")).expect("cgroup.procs");
        let netns = ns.open();
        let (addr, len) = sockaddr(family, to);
        let kind = match call {
            Call::TcpConnect => libc::SOCK_STREAM,
            Call::UdpSendTo => libc::SOCK_DGRAM,
        };
        let timeout = libc::timeval { tv_sec: 3, tv_usec: 0 };
        let started = std::time::Instant::now();
        // SAFETY: the child makes plain syscalls on memory prepared before
        // the fork, and exits: nothing of the parent's other threads is used.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: as above.
            unsafe {
                let fail = |step: i32| libc::_exit(200 + step);
                if libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                    fail(0);
                }
                if libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    fail(1);
                }
                let fd = libc::socket(family, kind, 0);
                if fd < 0 {
                    fail(2);
                }
                let opt = (&timeout as *const libc::timeval).cast();
                libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDTIMEO, opt, size_of::<libc::timeval>() as u32);
                let sa = (&addr as *const libc::sockaddr_storage).cast();
                let rc = match call {
                    Call::TcpConnect => libc::connect(fd, sa, len),
                    Call::UdpSendTo => libc::sendto(fd, b"x".as_ptr().cast(), 1, 0, sa, len) as i32,
                };
                libc::_exit(if rc < 0 { *libc::__errno_location() } else { 0 });
            }
        }
        assert!(pid > 0, "fork: {}", std::io::Error::last_os_error());
        let mut status = 0;
        // SAFETY: our own child.
        let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(waited, pid, "waitpid: {}", std::io::Error::last_os_error());
        let code = libc::WEXITSTATUS(status);
        assert!(libc::WIFEXITED(status) && code < 200, "the child failed at step {} (status {status})", code - 200);
        (code, started.elapsed())
    }
}

/// `to` as a sockaddr of `family`: an IPv4 address in an `AF_INET6` one is
/// mapped (`::ffff:a.b.c.d`).
fn sockaddr(family: i32, to: std::net::SocketAddr) -> (libc::sockaddr_storage, u32) {
    // SAFETY: plain data; all zeroes is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let ip = to.ip();
    let len = if family == libc::AF_INET {
        let std::net::IpAddr::V4(v4) = ip else { panic!("{ip} on an AF_INET socket") };
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: to.port().to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(v4.octets()) },
            sin_zero: [0; 8],
        };
        // SAFETY: sockaddr_storage holds any sockaddr.
        unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
        size_of::<libc::sockaddr_in>()
    } else {
        let v6 = match ip {
            std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            std::net::IpAddr::V6(v6) => v6,
        };
        // SAFETY: plain data; all zeroes is a valid value.
        let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        sin6.sin6_family = libc::AF_INET6 as u16;
        sin6.sin6_port = to.port().to_be();
        sin6.sin6_addr.s6_addr = v6.octets();
        // SAFETY: as above.
        unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
        size_of::<libc::sockaddr_in6>()
    };
    (storage, len as u32)
}
