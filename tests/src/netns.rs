//! Throwaway network namespaces joined by a veth pair: a sender end and a
//! receiver end, where the real `geoblock run` attaches. Everything created
//! here is removed when the [`Pair`] is dropped, also on panic.
//!
//! Nothing here touches the root namespace's interfaces: the veth ends are
//! created directly inside the new namespaces.

use std::{
    fs::File,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicUsize, Ordering},
};

/// Prefix of every namespace this crate creates: `gb-<pid>-<n>-<side>`.
pub const NETNS_PREFIX: &str = "gb-";

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A unique tag for this process: `<pid>-<n>`. Used in namespace names and
/// state directories, so tests and a demo can run side by side.
pub fn unique_tag() -> String {
    format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A named network namespace (`/run/netns/NAME`), deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace with its loopback up.
    pub fn create(name: &str) -> Netns {
        assert_root();
        run_ip(&["netns", "add", name]);
        let ns = Netns { name: name.into() };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// An fd of the namespace, for `setns`.
    pub fn open(&self) -> OwnedFd {
        let file = File::open(self.path()).unwrap_or_else(|e| panic!("opening {}: {e}", self.path().display()));
        file.into()
    }

    /// `ip -n NAME ARGS`, panicking with its stderr on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run_ip(&all)
    }

    /// Sets a sysctl inside the namespace (`net.ipv4.conf.all.rp_filter`...).
    pub fn sysctl(&self, key: &str, value: &str) {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.run(|| std::fs::write(&path, value))
            .unwrap_or_else(|e| panic!("sysctl {key}={value} in {}: {e}", self.name));
    }

    /// Runs `program ARGS` in this namespace (sharing our mount namespace),
    /// with `stdin` fed to it; panics with its stderr on failure.
    pub fn exec(&self, program: &str, args: &[&str], stdin: Option<&[u8]>) -> String {
        use std::{io::Write as _, process::Stdio};
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        self.command(&mut cmd);
        let what = format!("`{program} {}` in {}", args.join(" "), self.name);
        let mut child =
            cmd.spawn().unwrap_or_else(|e| panic!("running {what}: {e} (is it installed? `cargo xtask setup`)"));
        let mut pipe = child.stdin.take().expect("stdin is piped");
        let feed = stdin.map(|input| pipe.write_all(input));
        drop(pipe);
        let out = child.wait_with_output().unwrap_or_else(|e| panic!("waiting for {what}: {e}"));
        assert!(
            out.status.success() && !matches!(feed, Some(Err(_))),
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes `value` to `/sys/class/net/DEV/ATTR` of this namespace's `dev`
    /// (through `ip netns exec`, which mounts the namespace's own sysfs).
    pub fn set_device_attr(&self, dev: &str, attr: &str, value: &str) {
        let path = format!("/sys/class/net/{dev}/{attr}");
        run_ip(&["netns", "exec", &self.name, "sh", "-c", &format!("echo {value} > {path}")]);
    }

    /// The index of `dev` in this namespace.
    pub fn ifindex(&self, dev: &str) -> u32 {
        let name = std::ffi::CString::new(dev).expect("device name");
        // SAFETY: a valid C string.
        let index = self.run(|| unsafe { libc::if_nametoindex(name.as_ptr()) });
        assert!(index != 0, "no {dev} in {}", self.name);
        index
    }

    /// Runs `f` on a thread that entered this namespace: sockets it creates
    /// belong to the namespace (and keep working from any thread after).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let fd = self.open();
        std::thread::scope(|s| {
            s.spawn(move || {
                enter(fd.as_raw_fd()).unwrap_or_else(|e| panic!("setns into {}: {e}", self.name));
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// [`Netns::run`] as the user `uid`:`gid`, without supplementary groups
    /// (and, root's uid gone, without capabilities): sockets `f` opens are
    /// that user's, with only what that user may do.
    pub fn run_as<T: Send>(&self, uid: u32, gid: u32, f: impl FnOnce() -> T + Send) -> T {
        self.run(move || {
            become_user(uid, gid).unwrap_or_else(|e| panic!("becoming uid {uid}: {e}"));
            f()
        })
    }

    /// Makes `cmd` run in this network namespace, and only that: unlike
    /// `ip netns exec`, the mount namespace (and so /sys/fs/bpf) is shared.
    pub fn command(&self, cmd: &mut Command) {
        use std::os::unix::process::CommandExt as _;
        let fd = self.open();
        let raw = fd.as_raw_fd();
        // SAFETY: between fork and exec only async-signal-safe calls (setns);
        // `fd` is kept alive by the closure, which the Command owns.
        unsafe {
            cmd.pre_exec(move || {
                let _keep = &fd;
                enter(raw)
            });
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace destroys the veth end in it (and its peer).
        let out = Command::new("ip").args(["netns", "delete", &self.name]).output();
        if !matches!(&out, Ok(o) if o.status.success()) {
            eprintln!("warning: could not delete netns {}: {out:?}", self.name);
        }
    }
}

fn enter(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain syscall on a valid fd.
    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the calling thread, and only it, the user `uid`:`gid`. The raw
/// syscalls change this thread's credentials; libc's wrappers would change
/// those of the whole test process.
fn become_user(uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: plain syscalls on this thread's own credentials.
    let failed = unsafe {
        libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) != 0
            || libc::syscall(libc::SYS_setresgid, gid, gid, gid) != 0
            || libc::syscall(libc::SYS_setresuid, uid, uid, uid) != 0
    };
    match failed {
        true => Err(io::Error::last_os_error()),
        false => Ok(()),
    }
}

/// Two namespaces joined by a veth pair, addressed in IPv4 and IPv6.
/// Fields drop in order: nothing needs the namespaces after the pair.
pub struct Pair {
    pub tag: String,
    pub sender: Netns,
    pub receiver: Netns,
    /// The first veth pair; its fields read as the pair's own
    /// (`pair.receiver_if`), see the `Deref` below.
    pub link: Link,
}

/// Most tests use one link: they name its ends and addresses as the pair's.
impl std::ops::Deref for Pair {
    type Target = Link;

    fn deref(&self) -> &Link {
        &self.link
    }
}

impl Pair {
    /// Creates `gb-<pid>-<n>-s` and `gb-<pid>-<n>-r` joined by veth
    /// `gbs`/`gbr`, with rp_filter off on the receiver (spoofed sources have
    /// no route back) and IPv6 without DAD, autoconf or router solicitations.
    pub fn create() -> Pair {
        Pair::create_named("gbs", "gbr")
    }

    /// Like [`Pair::create`], with the veth ends named `sender_if` and
    /// `receiver_if` (e.g. unique names, so that per-device kernel threads
    /// like `napi/<dev>-<id>` are told apart from other runs').
    pub fn create_named(sender_if: &str, receiver_if: &str) -> Pair {
        sweep_stale();
        let tag = unique_tag();
        let sender = Netns::create(&format!("{NETNS_PREFIX}{tag}-s"));
        let receiver = Netns::create(&format!("{NETNS_PREFIX}{tag}-r"));
        for ns in [&sender, &receiver] {
            for key in ["all", "default"] {
                ns.sysctl(&format!("net.ipv6.conf.{key}.accept_ra"), "0");
                ns.sysctl(&format!("net.ipv6.conf.{key}.autoconf"), "0");
                ns.sysctl(&format!("net.ipv6.conf.{key}.router_solicitations"), "0");
                ns.sysctl(&format!("net.ipv4.conf.{key}.rp_filter"), "0");
            }
        }
        // Unique /24 and /64 per pair only for readability of captures; the
        // namespaces are isolated anyway.
        let n = (NEXT.fetch_add(1, Ordering::Relaxed) % 250) as u8;
        let (names, v4, v6) = ((sender_if, receiver_if), [10, 251, n], [0xfd00, 0x6762, n.into()]);
        let link = Link::create(&sender, &receiver, names, v4, v6);
        Pair { tag, sender, receiver, link }
    }

    /// Another veth pair between the same namespaces (`gbs<n>`/`gbr<n>`,
    /// 10.252.<n>.0/24, fd00:6763:<n>::/64), for multi-interface runs.
    pub fn add_link(&self, n: u8) -> Link {
        let (sender_if, receiver_if) = (format!("gbs{n}"), format!("gbr{n}"));
        let names = (sender_if.as_str(), receiver_if.as_str());
        let (v4, v6) = ([10, 252, n], [0xfd00, 0x6763, n.into()]);
        Link::create(&self.sender, &self.receiver, names, v4, v6)
    }

    /// Deletes the first veth pair and creates it again with the same names
    /// and addresses (new MACs, new ifindexes): an interface that went away
    /// and came back.
    pub fn recreate_link(&mut self) {
        self.sender.ip(&["link", "del", &self.link.sender_if]);
        self.link.connect(&self.sender, &self.receiver);
    }

    /// The receiver's address in the family of `src`.
    pub fn receiver_ip(&self, src: IpAddr) -> IpAddr {
        match src {
            IpAddr::V4(_) => self.receiver_v4.into(),
            IpAddr::V6(_) => self.receiver_v6.into(),
        }
    }

    /// Whether an XDP program is attached to the receiver's veth end.
    pub fn receiver_has_xdp(&self) -> bool {
        has_xdp(&self.receiver, &self.receiver_if)
    }

    /// Routes `remote` (a host address) from the receiver through the
    /// sender's end of the first link, as through a router: the receiver
    /// resolves only the sender's own (countryless) address on the link.
    /// The sender, which does not forward, drops what it gets for `remote`.
    pub fn route_through_sender(&self, remote: IpAddr) {
        let (gateway, host): (IpAddr, _) = match remote {
            IpAddr::V4(_) => (self.sender_v4.into(), format!("{remote}/32")),
            IpAddr::V6(_) => (self.sender_v6.into(), format!("{remote}/128")),
        };
        self.receiver.ip(&["route", "add", &host, "via", &gateway.to_string(), "dev", &self.receiver_if]);
    }

    /// Makes `remote` an address of the sender's namespace, on its loopback,
    /// routed to as by [`Pair::route_through_sender`]: a host beyond a
    /// router, whose sockets the sender's namespace holds. (On the veth end
    /// it would also source the sender's neighbour solicitations.)
    pub fn host_on_sender(&self, remote: IpAddr) {
        match remote {
            IpAddr::V4(_) => self.sender.ip(&["addr", "add", &format!("{remote}/32"), "dev", "lo"]),
            IpAddr::V6(_) => self.sender.ip(&["addr", "add", &format!("{remote}/128"), "dev", "lo", "nodad"]),
        };
        self.route_through_sender(remote);
    }

    /// The programs tcx runs on the receiver's veth end at egress, in
    /// order: (id, name).
    pub fn receiver_tcx_egress(&self) -> Vec<(u32, String)> {
        use aya::programs::{tc::TcAttachType, SchedClassifier};
        let dev = self.receiver_if.clone();
        let (_, programs) = self
            .receiver
            .run(move || SchedClassifier::query_tcx(&dev, TcAttachType::Egress))
            .unwrap_or_else(|e| panic!("querying tcx egress programs of {}: {e}", self.receiver_if));
        programs.iter().map(|p| (p.id(), p.name_as_str().unwrap_or("?").to_string())).collect()
    }
}

/// One veth pair between the namespaces of a [`Pair`].
#[derive(Clone, Debug)]
pub struct Link {
    /// The veth end in the sender's / receiver's namespace (names are per namespace).
    pub sender_if: String,
    pub receiver_if: String,
    pub sender_mac: [u8; 6],
    pub receiver_mac: [u8; 6],
    pub sender_v4: Ipv4Addr,
    pub receiver_v4: Ipv4Addr,
    pub sender_v6: Ipv6Addr,
    pub receiver_v6: Ipv6Addr,
}

impl Link {
    /// Creates the veth pair `names` (sender end, receiver end) between the
    /// namespaces, the sender `.1` and the receiver `.2` of the /24 `v4`,
    /// `::1` and `::2` of the /64 `v6`.
    fn create(sender: &Netns, receiver: &Netns, names: (&str, &str), v4: [u8; 3], v6: [u16; 3]) -> Link {
        let v4 = |host| Ipv4Addr::new(v4[0], v4[1], v4[2], host);
        let v6 = |host| Ipv6Addr::new(v6[0], v6[1], v6[2], 0, 0, 0, 0, host);
        let mut link = Link {
            sender_if: names.0.into(),
            receiver_if: names.1.into(),
            sender_mac: [0; 6],
            receiver_mac: [0; 6],
            sender_v4: v4(1),
            receiver_v4: v4(2),
            sender_v6: v6(1),
            receiver_v6: v6(2),
        };
        link.connect(sender, receiver);
        link
    }

    /// Creates the veth pair inside the sender's namespace with its peer in
    /// the receiver's (the root namespace never sees either end), addresses
    /// both ends, brings them up, and takes their MACs.
    fn connect(&mut self, sender: &Netns, receiver: &Netns) {
        let (sender_if, receiver_if) = (self.sender_if.as_str(), self.receiver_if.as_str());
        sender.ip(&["link", "add", sender_if, "type", "veth", "peer", "name", receiver_if, "netns", receiver.name()]);
        let ends = [
            (sender, &self.sender_if, self.sender_v4, self.sender_v6),
            (receiver, &self.receiver_if, self.receiver_v4, self.receiver_v6),
        ];
        for (ns, dev, v4, v6) in ends {
            ns.sysctl(&format!("net.ipv4.conf.{dev}.rp_filter"), "0");
            ns.sysctl(&format!("net.ipv6.conf.{dev}.accept_ra"), "0");
            ns.sysctl(&format!("net.ipv6.conf.{dev}.autoconf"), "0");
            ns.sysctl(&format!("net.ipv6.conf.{dev}.router_solicitations"), "0");
            ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", dev]);
            ns.ip(&["addr", "add", &format!("{v6}/64"), "dev", dev, "nodad"]);
            ns.ip(&["link", "set", dev, "up"]);
        }
        self.sender_mac = mac(sender, &self.sender_if);
        self.receiver_mac = mac(receiver, &self.receiver_if);
    }
}

/// `(tx_dropped, rx_dropped)` of `dev` in `ns`: losses on the link itself,
/// which a test must tell apart from what geoblock dropped.
pub fn link_drops(ns: &Netns, dev: &str) -> (u64, u64) {
    let out = ns.ip(&["-j", "-s", "link", "show", "dev", dev]);
    let json: serde_json::Value = serde_json::from_str(&out).expect("ip -j output");
    let stats = &json[0]["stats64"];
    let get = |dir: &str| stats[dir]["dropped"].as_u64().unwrap_or(0);
    (get("tx"), get("rx"))
}

/// Whether `ip link show` reports an XDP program on `dev` in `ns`.
pub fn has_xdp(ns: &Netns, dev: &str) -> bool {
    let out = ns.ip(&["link", "show", "dev", dev]);
    out.split_whitespace().any(|w| w.starts_with("xdp"))
}

fn mac(ns: &Netns, dev: &str) -> [u8; 6] {
    // Not /sys/class/net: sysfs shows the namespace that mounted it.
    let out = ns.ip(&["link", "show", "dev", dev]);
    let text = out
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC for {dev} in {}: {out}", ns.name()));
    let bytes: Vec<u8> = text.split(':').map(|b| u8::from_str_radix(b, 16).expect("MAC byte")).collect();
    bytes.try_into().expect("6-byte MAC")
}

/// Removes namespaces left by a process of ours that was killed before its
/// guards could run (`gb-<pid>-...` with that pid gone).
pub fn sweep_stale() {
    for name in stale_names(Path::new("/run/netns"), NETNS_PREFIX) {
        let _ = Command::new("ip").args(["netns", "delete", &name]).output();
    }
}

/// The names in `dir` tagged `<prefix><pid>-...` (see [`unique_tag`]) whose
/// process is gone: left by a test process killed before its guards ran.
pub fn stale_names(dir: &Path, prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let names = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned());
    names.filter(|name| is_stale(name, prefix)).collect()
}

/// Whether `name` is `<prefix><pid>-...` (see [`unique_tag`]) of a process
/// that is gone.
pub fn is_stale(name: &str, prefix: &str) -> bool {
    let pid = name.strip_prefix(prefix).and_then(|rest| rest.split('-').next());
    pid.and_then(|p| p.parse::<u32>().ok()).is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
}

/// Panics unless we are root: privileged tests fail loudly, never skip.
pub fn assert_root() {
    // SAFETY: trivial syscall.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "these tests create network namespaces and attach XDP programs: run them as root \
         (e.g. sudo -E cargo xtask test); euid is {euid}"
    );
}

fn run_ip(args: &[&str]) -> String {
    let out: Output = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running `ip {}`: {e} (is iproute2 installed?)", args.join(" ")));
    assert!(out.status.success(), "`ip {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An fd from a raw syscall result.
pub(crate) fn owned_fd(fd: RawFd, what: &str) -> OwnedFd {
    assert!(fd >= 0, "{what}: {}", io::Error::last_os_error());
    // SAFETY: a fresh fd nobody else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}
