//! Real traffic between the two ends of a [`Pair`]: Ethernet frames with
//! spoofed sources written on the sender's veth through an AF_PACKET socket,
//! and UDP sockets on the receiver counting what arrived per source.

use std::{
    collections::BTreeMap,
    io, mem,
    net::{IpAddr, SocketAddr},
    os::fd::{AsRawFd as _, OwnedFd},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use crate::{
    frames::Udp,
    netns::{owned_fd, Link, Pair},
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
            let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_ifindex = ifindex as i32;
            let rc = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    &sll as *const _ as *const libc::sockaddr,
                    mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            assert!(
                rc == 0,
                "binding AF_PACKET to {dev}: {}",
                io::Error::last_os_error()
            );
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

    /// The frame a datagram from `src` to the receiver's UDP port is.
    pub fn frame(&self, src: IpAddr) -> Vec<u8> {
        let dst = match src {
            IpAddr::V4(_) => self.receiver_v4,
            IpAddr::V6(_) => self.receiver_v6,
        };
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
            let n =
                unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
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
            // Large enough for every datagram a test sends before reading.
            set_rcvbuf(s, 8 << 20);
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
            assert!(
                n >= 0 || io::Error::last_os_error().kind() == io::ErrorKind::Interrupted,
                "poll failed"
            );
        }
        counts
    }
}

fn bind_v6_only() -> std::net::UdpSocket {
    // SAFETY: plain syscalls with valid arguments.
    let fd = owned_fd(
        unsafe { libc::socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) },
        "UDP/IPv6 socket",
    );
    let one: libc::c_int = 1;
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            &one as *const _ as *const libc::c_void,
            mem::size_of::<libc::c_int>() as u32,
        )
    };
    assert!(rc == 0, "IPV6_V6ONLY: {}", io::Error::last_os_error());
    let socket = std::net::UdpSocket::from(fd);
    // std has no bind for an existing socket; go through libc.
    let addr = SocketAddr::from(([0u16; 8], PORT));
    let SocketAddr::V6(a) = addr else {
        unreachable!()
    };
    let mut sa: libc::sockaddr_in6 = unsafe { mem::zeroed() };
    sa.sin6_family = libc::AF_INET6 as u16;
    sa.sin6_port = a.port().to_be();
    let rc = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            &sa as *const _ as *const libc::sockaddr,
            mem::size_of::<libc::sockaddr_in6>() as u32,
        )
    };
    assert!(
        rc == 0,
        "binding UDP [::]:{PORT}: {}",
        io::Error::last_os_error()
    );
    socket
}

fn set_rcvbuf(s: &std::net::UdpSocket, bytes: libc::c_int) {
    // SO_RCVBUFFORCE ignores rmem_max (we are root).
    // SAFETY: plain setsockopt with a valid int.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &bytes as *const _ as *const libc::c_void,
            mem::size_of::<libc::c_int>() as u32,
        )
    };
    assert!(rc == 0, "SO_RCVBUFFORCE: {}", io::Error::last_os_error());
}
