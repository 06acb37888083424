//! Real traffic between the two ends of a [`Pair`]: Ethernet frames with
//! spoofed sources written on the sender's veth through an AF_PACKET socket,
//! UDP sockets on the receiver counting what arrived per source, and a tap
//! on the receiver's veth listing every frame the XDP program let through.

use std::{
    collections::BTreeMap,
    io, mem,
    net::IpAddr,
    os::fd::{AsRawFd, OwnedFd},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use crate::{
    frames::{self, Udp},
    netns::{owned_fd, Link, Netns, Pair},
};

/// The UDP port the receiver listens on.
pub const PORT: u16 = 5555;

/// An AF_PACKET socket bound to the sender's veth end.
pub struct Sender {
    fd: OwnedFd,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    receiver_v4: IpAddr,
    receiver_v6: IpAddr,
}

impl Sender {
    pub fn new(pair: &Pair) -> Sender {
        Sender::on_link(pair, &pair.link)
    }

    /// A sender on another link of the pair (see [`Pair::add_link`]).
    pub fn on_link(pair: &Pair, link: &Link) -> Sender {
        let dev = link.sender_if.clone();
        let ifindex = pair.sender.ifindex(&dev);
        let fd = pair.sender.run(move || {
            // Protocol 0: send only, receive nothing.
            // SAFETY: plain syscalls with valid arguments.
            let fd = owned_fd(
                unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) },
                "AF_PACKET socket",
            );
            // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
            let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_ifindex = ifindex as i32;
            bind(&fd, &sll, &format!("AF_PACKET to {dev}"));
            fd
        });
        Sender {
            fd,
            src_mac: link.sender_mac,
            dst_mac: link.receiver_mac,
            receiver_v4: link.receiver_v4.into(),
            receiver_v6: link.receiver_v6.into(),
        }
    }

    /// The receiver's address in the family of `src`.
    fn receiver(&self, src: IpAddr) -> IpAddr {
        match src {
            IpAddr::V4(_) => self.receiver_v4,
            IpAddr::V6(_) => self.receiver_v6,
        }
    }

    /// The frame a datagram from `src` to the receiver's UDP port is.
    pub fn frame(&self, src: IpAddr) -> Vec<u8> {
        let dst = self.receiver(src);
        Udp {
            src_mac: self.src_mac,
            dst_mac: self.dst_mac,
            src,
            dst,
            dst_port: PORT,
            payload: b"geoblock end-to-end",
            ..Udp::default()
        }
        .build()
    }

    /// The frame of an IP packet of `protocol` from `src` to the receiver
    /// (its address in `src`'s family), carrying what `l4` makes for that
    /// destination (see [`frames::tcp_segment`] and the like).
    pub fn ip_frame(&self, src: IpAddr, protocol: u8, l4: impl FnOnce(IpAddr) -> Vec<u8>) -> Vec<u8> {
        let dst = self.receiver(src);
        frames::ip_frame(self.src_mac, self.dst_mac, src, dst, protocol, &l4(dst))
    }

    /// Sends `count` datagrams from `src`; returns the frame length, which
    /// is what the XDP program counts in bytes.
    pub fn send(&self, src: IpAddr, count: usize) -> usize {
        let frame = self.frame(src);
        for _ in 0..count {
            self.send_frame(&frame);
        }
        frame.len()
    }

    /// Continuous traffic: one datagram from each of `sources` in turn,
    /// a round every `gap`, until `stop` is set (bounded by `max`). Returns
    /// how many datagrams each source sent.
    pub fn stream(&self, sources: &[IpAddr], gap: Duration, stop: &AtomicBool, max: Duration) -> Vec<usize> {
        let frames: Vec<Vec<u8>> = sources.iter().map(|&src| self.frame(src)).collect();
        let mut sent = vec![0; sources.len()];
        let deadline = Instant::now() + max;
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            for (frame, n) in frames.iter().zip(&mut sent) {
                self.send_frame(frame);
                *n += 1;
            }
            std::thread::sleep(gap);
        }
        sent
    }

    pub fn send_frame(&self, frame: &[u8]) {
        loop {
            // SAFETY: frame is a valid buffer of frame.len() bytes.
            let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
            if n == frame.len() as isize {
                return;
            }
            let err = io::Error::last_os_error();
            // A full socket buffer: the veth queue drains in microseconds.
            if n < 0 && matches!(err.raw_os_error(), Some(libc::ENOBUFS | libc::EAGAIN)) {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            panic!("sending a {}-byte frame: {err} (sent {n})", frame.len());
        }
    }
}

/// UDP sockets (IPv4 and IPv6) on the receiver, bound to [`PORT`].
pub struct Receiver {
    v4: std::net::UdpSocket,
    v6: std::net::UdpSocket,
}

impl Receiver {
    pub fn new(pair: &Pair) -> Receiver {
        let (v4, v6) = pair.receiver.run(|| {
            let v4 = std::net::UdpSocket::bind(("0.0.0.0", PORT)).expect("binding UDP 0.0.0.0");
            let v6 = bind_v6_only();
            (v4, v6)
        });
        for s in [&v4, &v6] {
            // Large enough for every datagram a test sends before reading;
            // SO_RCVBUFFORCE ignores rmem_max (we are root).
            let (level, name) = (libc::SOL_SOCKET, libc::SO_RCVBUFFORCE);
            set_int_option(s, level, name, 8 << 20, "SO_RCVBUFFORCE");
            s.set_nonblocking(true).unwrap();
        }
        Receiver { v4, v6 }
    }

    /// Reads until both sockets stayed quiet for `quiet` (bounded by 10 s
    /// overall), and counts the datagrams per source address.
    pub fn collect(&self, quiet: Duration) -> BTreeMap<IpAddr, usize> {
        self.collect_until(&AtomicBool::new(true), quiet)
    }

    /// Like [`Receiver::collect`], but keeps reading (and so keeps the
    /// socket buffers from overflowing) while `stop` is unset: for
    /// [`Sender::stream`] on another thread.
    pub fn collect_until(&self, stop: &AtomicBool, quiet: Duration) -> BTreeMap<IpAddr, usize> {
        let mut counts = BTreeMap::new();
        let mut buf = [0u8; 2048];
        // When `stop` was first seen set: from then on, at most 10 s more.
        let mut stopped: Option<Instant> = None;
        loop {
            for s in [&self.v4, &self.v6] {
                loop {
                    match s.recv_from(&mut buf) {
                        Ok((_, from)) => *counts.entry(from.ip()).or_insert(0) += 1,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => panic!("receiving: {e}"),
                    }
                }
            }
            if stopped.is_none() && stop.load(Ordering::Relaxed) {
                stopped = Some(Instant::now());
            }
            if stopped.is_some_and(|t| t.elapsed() >= Duration::from_secs(10)) {
                break;
            }
            let wait = match stopped {
                Some(_) => quiet,
                None => Duration::from_millis(20),
            };
            let mut fds = [self.v4.as_raw_fd(), self.v6.as_raw_fd()].map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
            // SAFETY: fds is a valid array of two pollfds.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, wait.as_millis() as libc::c_int) };
            if n == 0 && stopped.is_some() {
                break; // stopped, and quiet
            }
            assert!(n >= 0 || io::Error::last_os_error().kind() == io::ErrorKind::Interrupted, "poll failed");
        }
        counts
    }
}

fn bind_v6_only() -> std::net::UdpSocket {
    // SAFETY: plain syscalls with valid arguments.
    let fd =
        owned_fd(unsafe { libc::socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) }, "UDP/IPv6 socket");
    set_int_option(&fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1, "IPV6_V6ONLY");
    // std has no bind for an existing socket; go through libc.
    // SAFETY: sockaddr_in6 is plain data; all zeroes is a valid value.
    let mut sa: libc::sockaddr_in6 = unsafe { mem::zeroed() };
    sa.sin6_family = libc::AF_INET6 as u16;
    sa.sin6_port = PORT.to_be();
    bind(&fd, &sa, &format!("UDP [::]:{PORT}"));
    std::net::UdpSocket::from(fd)
}

/// bind(2) of the socket `fd` to `addr`, a `sockaddr_*` of its family.
fn bind<A>(fd: &impl AsRawFd, addr: &A, what: &str) {
    let (addr, len) = ((addr as *const A).cast(), mem::size_of::<A>() as u32);
    // SAFETY: `addr` points at a whole sockaddr of its family, `len` bytes.
    let rc = unsafe { libc::bind(fd.as_raw_fd(), addr, len) };
    assert!(rc == 0, "binding {what}: {}", io::Error::last_os_error());
}

/// setsockopt(2) of an int option.
fn set_int_option(fd: &impl AsRawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int, what: &str) {
    let (ptr, len) = ((&value as *const libc::c_int).cast(), mem::size_of::<libc::c_int>() as u32);
    // SAFETY: `ptr` is the int the option takes, alive for the call.
    let rc = unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, ptr, len) };
    assert!(rc == 0, "{what}: {}", io::Error::last_os_error());
}

/// What reached the receiver's network stack on its veth end: an AF_PACKET
/// socket there sees a frame only after the XDP program passed it, so what
/// it lists is exactly what geoblock let through (and counted), frame by
/// frame: GRO, which would merge frames the program saw one by one, is
/// turned off on the veth end.
pub struct Tap {
    fd: OwnedFd,
}

impl Tap {
    pub fn new(pair: &Pair) -> Tap {
        Tap::on(&pair.receiver, &pair.receiver_if)
    }

    /// A tap on `dev` in `ns`: what reaches its network stack there.
    pub fn on(ns: &Netns, dev: &str) -> Tap {
        let dev = dev.to_string();
        ns.exec("ethtool", &["-K", &dev, "gro", "off"], None);
        let ifindex = ns.ifindex(&dev);
        let fd = ns.run(move || {
            let all = (libc::ETH_P_ALL as u16).to_be();
            // SAFETY: plain syscalls with valid arguments.
            let fd = owned_fd(
                unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, all.into()) },
                "AF_PACKET socket",
            );
            // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
            let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = all;
            sll.sll_ifindex = ifindex as i32;
            bind(&fd, &sll, &format!("AF_PACKET tap on {dev}"));
            fd
        });
        set_int_option(&fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1, "PACKET_IGNORE_OUTGOING");
        set_int_option(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 8 << 20, "SO_RCVBUFFORCE");
        Tap { fd }
    }

    /// The frames received since the last call (or since the tap was made),
    /// in order, waiting until none came for `quiet`.
    pub fn frames(&self, quiet: Duration) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, quiet.as_millis() as libc::c_int) };
            if n == 0 {
                return frames;
            }
            // SAFETY: buf is a valid buffer of buf.len() bytes.
            let len = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                )
            };
            match len {
                0.. => {
                    assert!((len as usize) <= buf.len(), "a {len}-byte frame on the tap: is GRO still on?");
                    frames.push(buf[..len as usize].to_vec());
                }
                _ => {
                    let err = io::Error::last_os_error();
                    assert!(matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted), "tap: {err}");
                }
            }
        }
    }
}

/// Sends `copies` datagrams from each of `srcs` across `pair` and counts
/// how many of each reached the receiver's socket.
pub fn deliveries(pair: &Pair, srcs: &[IpAddr], copies: usize) -> BTreeMap<IpAddr, usize> {
    let (sender, receiver) = (Sender::new(pair), Receiver::new(pair));
    for &src in srcs {
        sender.send(src, copies);
    }
    let got = receiver.collect(Duration::from_millis(300));
    srcs.iter().map(|src| (*src, got.get(src).copied().unwrap_or(0))).collect()
}

/// What flowed while `during` ran: datagrams sent per source (in the order
/// of `sources`) and delivered per source.
pub struct Flowed {
    sources: Vec<IpAddr>,
    sent: Vec<usize>,
    got: BTreeMap<IpAddr, usize>,
}

impl Flowed {
    pub fn sent(&self, src: IpAddr) -> usize {
        self.sent[self.sources.iter().position(|&s| s == src).unwrap()]
    }

    pub fn delivered(&self, src: IpAddr) -> usize {
        self.got.get(&src).copied().unwrap_or(0)
    }

    /// Blocked sources: nothing delivered. Allowed ones: everything.
    pub fn assert_enforced(&self, blocked: &[IpAddr], allowed: &[IpAddr], pair: &Pair, log: &str) {
        let mut failures = Vec::new();
        for &src in blocked {
            if self.delivered(src) != 0 {
                failures.push(format!(
                    "{src} (blocked throughout): {} of {} delivered",
                    self.delivered(src),
                    self.sent(src)
                ));
            }
        }
        for &src in allowed {
            if self.delivered(src) != self.sent(src) {
                failures.push(format!(
                    "{src} (allowed throughout): {} of {} delivered",
                    self.delivered(src),
                    self.sent(src)
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{}\nveth drops (tx, rx) sender {:?}, receiver {:?} (other than XDP's: harness losses)\ndaemon log:\n{log}",
            failures.join("\n"),
            crate::netns::link_drops(&pair.sender, &pair.sender_if),
            crate::netns::link_drops(&pair.receiver, &pair.receiver_if),
        );
    }
}

/// Sets the flag when dropped, so the traffic threads end even when the
/// test body panics.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs `during` under continuous traffic (a datagram from each source
/// every millisecond) from the pair's sender to its receiver.
pub fn under_traffic(pair: &Pair, sources: &[IpAddr], during: impl FnOnce()) -> Flowed {
    let receiver = Receiver::new(pair);
    let sender = Sender::new(pair);
    let (stop, done) = (AtomicBool::new(false), AtomicBool::new(false));
    let (sent, got) = std::thread::scope(|s| {
        let rx = s.spawn(|| receiver.collect_until(&done, Duration::from_millis(300)));
        let sent = {
            let _done = SetOnDrop(&done);
            let _stop = SetOnDrop(&stop);
            let tx = s.spawn(|| sender.stream(sources, Duration::from_millis(1), &stop, Duration::from_secs(300)));
            // Traffic flows before, during and after.
            std::thread::sleep(Duration::from_millis(200));
            during();
            std::thread::sleep(Duration::from_millis(200));
            stop.store(true, Ordering::Relaxed);
            tx.join().unwrap()
        };
        (sent, rx.join().unwrap())
    });
    Flowed { sources: sources.to_vec(), sent, got }
}
