//! Real exchanges that the receiver's own processes open: echo servers on a
//! host of the sender's namespace (see [`Pair::host_on_sender`]), and the
//! receiver's clients of them (TCP, UDP, ICMP echo through ping sockets),
//! each with a bound on how long it waits for its reply.

use std::{
    io::{self, Read as _, Write as _},
    mem,
    net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::{AsRawFd as _, OwnedFd},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use crate::netns::{owned_fd, Netns, Pair};

/// How long a client waits for a reply before calling it lost.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(3);

/// A TCP and a UDP echo server on `addr` in the sender's namespace; stopped
/// on drop.
pub struct EchoServers {
    pub tcp: SocketAddr,
    pub udp: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl EchoServers {
    /// Starts them on ephemeral ports of `addr`, an address of the sender's
    /// namespace (see [`Pair::host_on_sender`]).
    pub fn start(pair: &Pair, addr: IpAddr) -> EchoServers {
        let (tcp, udp) = pair.sender.run(move || {
            let tcp = TcpListener::bind((addr, 0)).unwrap_or_else(|e| panic!("TCP echo server on {addr}: {e}"));
            let udp = UdpSocket::bind((addr, 0)).unwrap_or_else(|e| panic!("UDP echo server on {addr}: {e}"));
            (tcp, udp)
        });
        let (tcp_addr, udp_addr) = (tcp.local_addr().unwrap(), udp.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        tcp.set_nonblocking(true).unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let threads = vec![
            std::thread::spawn({
                let stop = stop.clone();
                move || serve_tcp(tcp, &stop)
            }),
            std::thread::spawn({
                let stop = stop.clone();
                move || serve_udp(udp, &stop)
            }),
        ];
        EchoServers { tcp: tcp_addr, udp: udp_addr, stop, threads }
    }
}

impl Drop for EchoServers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn serve_tcp(listener: TcpListener, stop: &Arc<AtomicBool>) {
    let mut connections = vec![];
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let stop = stop.clone();
                connections.push(std::thread::spawn(move || echo_stream(stream, &stop)));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("TCP echo server: {e}"),
        }
    }
    connections.into_iter().for_each(|c| drop(c.join()));
}

/// Echoes until the client closes (then closes too) or the servers stop.
fn echo_stream(mut stream: TcpStream, stop: &AtomicBool) {
    stream.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => stream.write_all(&buf[..n]).expect("TCP echo server: writing"),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => continue,
            Err(_) => return,
        }
    }
}

fn serve_udp(socket: UdpSocket, stop: &AtomicBool) {
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => drop(socket.send_to(&buf[..n], from)),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => continue,
            Err(e) => panic!("UDP echo server: {e}"),
        }
    }
}

/// A TCP connection the receiver opened.
pub struct TcpClient {
    pub stream: TcpStream,
}

impl TcpClient {
    /// Connects from `ns` to `server`; panics if the handshake does not
    /// complete within [`REPLY_TIMEOUT`].
    pub fn connect(ns: &Netns, server: SocketAddr) -> TcpClient {
        let stream = ns
            .run(|| TcpStream::connect_timeout(&server, REPLY_TIMEOUT))
            .unwrap_or_else(|e| panic!("connecting from {} to {server}: {e} (was the SYN-ACK dropped?)", ns.name()));
        stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
        TcpClient { stream }
    }

    pub fn local(&self) -> SocketAddr {
        self.stream.local_addr().unwrap()
    }

    /// Sends `message` and reads its echo; panics if it does not come back.
    pub fn exchange(&mut self, message: &[u8]) {
        let peer = self.stream.peer_addr().unwrap();
        self.stream.write_all(message).unwrap_or_else(|e| panic!("sending to {peer}: {e}"));
        let mut echo = vec![0; message.len()];
        self.stream
            .read_exact(&mut echo)
            .unwrap_or_else(|e| panic!("no echo from {peer} within {REPLY_TIMEOUT:?}: {e} (was the reply dropped?)"));
        assert_eq!(echo, message, "the echo from {peer}");
    }

    /// Closes the connection in order: our FIN, then the server's, whose
    /// arrival (EOF) is waited for.
    pub fn close(mut self) {
        let peer = self.stream.peer_addr().unwrap();
        self.stream.shutdown(Shutdown::Write).unwrap();
        let mut rest = vec![];
        self.stream
            .read_to_end(&mut rest)
            .unwrap_or_else(|e| panic!("no FIN from {peer} within {REPLY_TIMEOUT:?}: {e} (was it dropped?)"));
    }
}

/// A UDP socket of the receiver's, connected to `server`.
pub struct UdpClient {
    pub socket: UdpSocket,
}

impl UdpClient {
    pub fn connect(ns: &Netns, server: SocketAddr) -> UdpClient {
        let local: SocketAddr = match server {
            SocketAddr::V4(_) => "0.0.0.0:0".parse().unwrap(),
            SocketAddr::V6(_) => "[::]:0".parse().unwrap(),
        };
        let socket = ns.run(|| UdpSocket::bind(local)).expect("binding a UDP client socket");
        socket.connect(server).unwrap();
        socket.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
        UdpClient { socket }
    }

    pub fn local(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// Sends `message` and waits for its echo; panics if it does not come.
    pub fn exchange(&self, message: &[u8]) {
        let peer = self.socket.peer_addr().unwrap();
        self.socket.send(message).unwrap_or_else(|e| panic!("sending to {peer}: {e}"));
        let echo = self.receive().unwrap_or_else(|| {
            panic!(
                "no echo of a {}-byte datagram from {peer} within {REPLY_TIMEOUT:?} (was it dropped?)",
                message.len()
            )
        });
        assert!(echo == message, "the echo from {peer} differs from the {}-byte datagram sent", message.len());
    }

    /// The next datagram, if one comes within [`REPLY_TIMEOUT`].
    pub fn receive(&self) -> Option<Vec<u8>> {
        receive_within(&self.socket, REPLY_TIMEOUT)
    }
}

/// The next datagram on `socket`, if one comes within `timeout`.
pub fn receive_within(socket: &UdpSocket, timeout: Duration) -> Option<Vec<u8>> {
    socket.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 2048];
    match socket.recv(&mut buf) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => None,
        Err(e) => panic!("receiving on {:?}: {e}", socket.local_addr()),
    }
}

/// An ICMP (IPv4) or ICMPv6 ping socket of the receiver's, connected to
/// `dst`: the kernel sets the echo identifier (the socket's) and checksum,
/// and hands the socket the echo replies with its identifier.
pub struct Pinger {
    fd: OwnedFd,
    dst: IpAddr,
}

impl Pinger {
    /// Ping sockets need the caller's group in `net.ipv4.ping_group_range`
    /// (IPv4 and IPv6): this opens it to root's group in `ns`.
    pub fn new(ns: &Netns, dst: IpAddr) -> Pinger {
        ns.sysctl("net.ipv4.ping_group_range", "0 0");
        let fd = ns.run(move || {
            let (family, protocol) = match dst {
                IpAddr::V4(_) => (libc::AF_INET, libc::IPPROTO_ICMP),
                IpAddr::V6(_) => (libc::AF_INET6, libc::IPPROTO_ICMPV6),
            };
            // SAFETY: plain syscall.
            owned_fd(unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, protocol) }, "ping socket")
        });
        let (addr, len) = sockaddr(SocketAddr::new(dst, 0));
        // SAFETY: `addr` holds a whole sockaddr of `len` bytes.
        let rc = unsafe { libc::connect(fd.as_raw_fd(), (&addr as *const libc::sockaddr_storage).cast(), len) };
        assert!(rc == 0, "connecting a ping socket to {dst}: {}", io::Error::last_os_error());
        let timeout = libc::timeval { tv_sec: REPLY_TIMEOUT.as_secs() as libc::time_t, tv_usec: 0 };
        let (ptr, len) = ((&timeout as *const libc::timeval).cast(), mem::size_of::<libc::timeval>() as u32);
        // SAFETY: `ptr` is the timeval the option takes, alive for the call.
        let rc = unsafe { libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO, ptr, len) };
        assert!(rc == 0, "SO_RCVTIMEO: {}", io::Error::last_os_error());
        Pinger { fd, dst }
    }

    /// The echo identifier the kernel gives this socket's requests.
    pub fn id(&self) -> u16 {
        // SAFETY: sockaddr_storage is plain data; all zeroes is valid.
        let mut addr: libc::sockaddr_storage = unsafe { mem::zeroed() };
        let mut len = mem::size_of::<libc::sockaddr_storage>() as u32;
        // SAFETY: `addr` has room for `len` bytes.
        let rc = unsafe {
            libc::getsockname(self.fd.as_raw_fd(), (&mut addr as *mut libc::sockaddr_storage).cast(), &mut len)
        };
        assert!(rc == 0, "getsockname of a ping socket: {}", io::Error::last_os_error());
        // The port of sockaddr_in and sockaddr_in6 sits at the same place.
        // SAFETY: the kernel wrote a sockaddr_in or sockaddr_in6.
        u16::from_be(unsafe { (*(&addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>()).sin_port })
    }

    /// Sends echo request `seq` and waits for its reply; panics if none.
    pub fn ping(&self, seq: u16) {
        self.send(seq);
        let reply = self.receive();
        assert!(reply == Some(seq), "no echo reply {seq} from {} within {REPLY_TIMEOUT:?} (got {reply:?})", self.dst);
    }

    /// Sends echo request `seq` (type, code, checksum and identifier are the kernel's).
    pub fn send(&self, seq: u16) {
        let kind = match self.dst {
            IpAddr::V4(_) => geoblock_common::packet::ICMP_ECHO,
            IpAddr::V6(_) => geoblock_common::packet::ICMPV6_ECHO_REQUEST,
        };
        let [s0, s1] = seq.to_be_bytes();
        let request = [kind, 0, 0, 0, 0, 0, s0, s1, b'g', b'b'];
        // SAFETY: `request` is a valid buffer of its length.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), request.as_ptr().cast(), request.len(), 0) };
        assert!(n == request.len() as isize, "sending an echo request to {}: {}", self.dst, io::Error::last_os_error());
    }

    /// The sequence number of the next echo reply, if one comes within
    /// [`REPLY_TIMEOUT`].
    pub fn receive(&self) -> Option<u16> {
        let mut buf = [0u8; 512];
        // SAFETY: `buf` is a valid buffer of its length.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let err = io::Error::last_os_error();
            assert!(matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut), "ping socket: {err}");
            return None;
        }
        assert!(n >= 8, "a {n}-byte ICMP message on a ping socket");
        Some(u16::from_be_bytes([buf[6], buf[7]]))
    }
}

/// `addr` as a sockaddr_in or sockaddr_in6 in a sockaddr_storage, and its length.
fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, u32) {
    // SAFETY: sockaddr_storage is plain data; all zeroes is valid.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large enough and aligned for any sockaddr.
            let sin = unsafe { &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as u16;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above.
            let sin6 = unsafe { &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as u16;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as u32)
}
