//! The SSH clients the lock-out guard keeps reachable: the one named by
//! `SSH_CONNECTION`, and the peers of the machine's own established
//! connections to sshd, read from `/proc/net/tcp` and `/proc/net/tcp6`.
//! The environment alone is not enough: systemd starts the daemon without
//! it, and sudo strips it from a control command.
//!
//! Only reading the files happens here; what they say is parsed by pure
//! functions.

use std::{
    collections::HashSet,
    fmt, fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
};

/// Where sshd listens unless a process named sshd is seen listening elsewhere.
pub const DEFAULT_SSH_PORT: u16 = 22;
/// The socket tables of the reader's network namespace: the daemon's, which
/// is the one its interfaces are in.
const SOCKET_TABLES: [&str; 2] = ["/proc/net/tcp", "/proc/net/tcp6"];
/// `st` of a TCP socket in those tables.
const ESTABLISHED: u8 = 0x01;
const LISTEN: u8 = 0x0A;

/// An SSH client, and how the guard knows of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshClient {
    pub addr: IpAddr,
    pub found: Found,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// `SSH_CONNECTION` of the daemon, or of the shell a control command ran in.
    Environment,
    /// An established TCP connection to this sshd port.
    Connection { port: u16 },
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::Environment => f.write_str("SSH_CONNECTION"),
            Found::Connection { port } => write!(f, "connected to port {port}"),
        }
    }
}

/// The client of the SSH session this process runs in, from
/// `SSH_CONNECTION` ("client port server port").
pub fn ssh_client() -> Option<IpAddr> {
    parse_ssh_connection(&std::env::var("SSH_CONNECTION").ok()?)
}

/// The client address of an `SSH_CONNECTION` value, without the zone a
/// link-local IPv6 client has (`fe80::1%eth0`), which `IpAddr` cannot hold.
pub fn parse_ssh_connection(value: &str) -> Option<IpAddr> {
    let client = value.split_whitespace().next()?;
    client.split('%').next()?.parse().ok()
}

/// The peers of the established connections to sshd in this network
/// namespace, and the sshd ports looked at. A table that cannot be read
/// (no IPv6) counts as empty.
pub fn connected_clients() -> (Vec<SshClient>, Vec<u16>) {
    let sockets: Vec<Socket> =
        SOCKET_TABLES.iter().filter_map(|table| read_table(table).ok()).flat_map(|t| parse_sockets(&t)).collect();
    let ports = match listening_ports(&sockets, &sshd_socket_inodes()) {
        ports if ports.is_empty() => vec![DEFAULT_SSH_PORT],
        ports => ports,
    };
    (peers(&sockets, &ports), ports)
}

/// A socket table, in as few reads as it takes: each read of
/// `/proc/net/tcp` walks the kernel's whole connection hash (milliseconds
/// on a large host), and `read_to_string` starts with a 32-byte read.
fn read_table(path: &str) -> std::io::Result<String> {
    let mut text = String::with_capacity(1 << 16);
    std::io::Read::read_to_string(&mut fs::File::open(path)?, &mut text)?;
    Ok(text)
}

/// A TCP socket of `/proc/net/tcp{,6}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Socket {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: u8,
    pub inode: u64,
}

/// The sockets of a `/proc/net/tcp` or `/proc/net/tcp6` text; the header
/// and lines that do not parse are skipped.
pub fn parse_sockets(text: &str) -> Vec<Socket> {
    text.lines().skip(1).filter_map(parse_socket).collect()
}

/// `sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...`
fn parse_socket(line: &str) -> Option<Socket> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    Some(Socket {
        local: endpoint(fields.get(1)?)?,
        remote: endpoint(fields.get(2)?)?,
        state: u8::from_str_radix(fields.get(3)?, 16).ok()?,
        inode: fields.get(9)?.parse().ok()?,
    })
}

/// `ADDR:PORT` in hex. The kernel prints an address as 32-bit words in the
/// machine's byte order, the port as a number.
fn endpoint(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok().map(u32::to_ne_bytes);
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut octets = [0u8; 16];
            for (i, chunk) in octets.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The ports of the listening sockets among `inodes`, sorted.
pub fn listening_ports(sockets: &[Socket], inodes: &HashSet<u64>) -> Vec<u16> {
    let mut ports: Vec<u16> =
        sockets.iter().filter(|s| s.state == LISTEN && inodes.contains(&s.inode)).map(|s| s.local.port()).collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The remote ends of the established connections to one of `ports`. An
/// IPv4 client of a dual-stack sshd shows as `::ffff:a.b.c.d`: it is taken
/// as the IPv4 address the XDP program sees.
pub fn peers(sockets: &[Socket], ports: &[u16]) -> Vec<SshClient> {
    sockets
        .iter()
        .filter(|s| s.state == ESTABLISHED && ports.contains(&s.local.port()))
        .map(|s| SshClient { addr: s.remote.ip().to_canonical(), found: Found::Connection { port: s.local.port() } })
        .collect()
}

/// The inodes of the sockets processes named sshd hold. Under the systemd
/// unit geoblock lacks the capability to look into sshd's descriptors, and
/// gets none: then port 22 is taken.
fn sshd_socket_inodes() -> HashSet<u64> {
    let is_sshd = |dir: &Path| fs::read_to_string(dir.join("comm")).is_ok_and(|comm| comm.trim_end() == "sshd");
    let processes = fs::read_dir("/proc").into_iter().flatten().flatten().map(|e| e.path());
    processes
        .filter(|dir| is_sshd(dir))
        .flat_map(|dir| fs::read_dir(dir.join("fd")).into_iter().flatten().flatten())
        .filter_map(|fd| socket_inode(&fs::read_link(fd.path()).ok()?))
        .collect()
}

/// The inode of a descriptor's link text `socket:[12345]`.
fn socket_inode(link: &Path) -> Option<u64> {
    link.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines as a little-endian machine prints them.
    const TCP: &str = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 18431 1 0000000000000000 100 0 0 10 0
   1: 0201A8C0:0016 0501A8C0:D2A4 01 00000000:00000000 02:0009E2A6 00000000     0        0 24011 2 0000000000000000 20 4 29 10 -1
   2: 0201A8C0:1F90 0701A8C0:C001 01 00000000:00000000 00:00000000 00000000  1000        0 24100 1 0000000000000000 20 4 29 10 -1
   3: 0100007F:0016 0100007F:A000 01 00000000:00000000 00:00000000 00000000     0        0 24200 1 0000000000000000 20 4 29 10 -1
   4: 0201A8C0:0016 0601A8C0:D2A5 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
";
    const TCP6: &str = "\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:08AE 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 30001 1 0000000000000000 100 0 0 10 0
   1: B80D0120000000000000000002000000:08AE B80D0120000000000000000001000000:E001 01 00000000:00000000 02:000AF0B2 00000000     0        0 30002 2 0000000000000000 20 4 30 10 -1
   2: 0000000000000000FFFF00000201A8C0:08AE 0000000000000000FFFF00000901A8C0:E002 01 00000000:00000000 02:000AF0B2 00000000     0        0 30003 2 0000000000000000 20 4 30 10 -1
   3: 000080FE000000000000000001000000:0016 000080FE000000000000000002000000:E003 01 00000000:00000000 00:00000000 00000000     0        0 30004 2 0000000000000000 20 4 30 10 -1
";

    fn addrs(clients: &[SshClient]) -> Vec<String> {
        clients.iter().map(|c| format!("{} ({})", c.addr, c.found)).collect()
    }

    #[test]
    fn ipv4_sockets_are_parsed() {
        let sockets = parse_sockets(TCP);
        assert_eq!(sockets.len(), 5);
        assert_eq!(sockets[0].local, "0.0.0.0:22".parse().unwrap());
        assert_eq!((sockets[0].state, sockets[0].inode), (LISTEN, 18431));
        assert_eq!(sockets[1].local, "192.168.1.2:22".parse().unwrap());
        assert_eq!(sockets[1].remote, "192.168.1.5:53924".parse().unwrap());
        assert_eq!(sockets[1].state, ESTABLISHED);
    }

    #[test]
    fn established_connections_to_the_ssh_port_are_its_clients() {
        // Not the connection to port 8080, not TIME_WAIT (06).
        let clients = ["192.168.1.5 (connected to port 22)", "127.0.0.1 (connected to port 22)"];
        assert_eq!(addrs(&peers(&parse_sockets(TCP), &[22])), clients);
        assert!(peers(&parse_sockets(TCP), &[2222]).is_empty());
    }

    #[test]
    fn ipv6_sockets_give_v6_and_v4_mapped_clients() {
        let sockets = parse_sockets(TCP6);
        assert_eq!(sockets[1].local, "[2001:db8::2]:2222".parse().unwrap());
        assert_eq!(
            addrs(&peers(&sockets, &[2222])),
            ["2001:db8::1 (connected to port 2222)", "192.168.1.9 (connected to port 2222)"]
        );
        // Link-local clients have no zone in the table: the address is enough.
        assert_eq!(addrs(&peers(&sockets, &[22])), ["fe80::2 (connected to port 22)"]);
    }

    #[test]
    fn sshd_ports_are_those_its_listening_sockets_have() {
        let sockets: Vec<Socket> = [TCP, TCP6].iter().flat_map(|t| parse_sockets(t)).collect();
        assert_eq!(listening_ports(&sockets, &HashSet::from([30001, 30002])), [2222], "only listening sockets");
        assert_eq!(listening_ports(&sockets, &HashSet::from([18431, 30001])), [22, 2222]);
        assert!(listening_ports(&sockets, &HashSet::new()).is_empty());
        assert_eq!(socket_inode(Path::new("socket:[18431]")), Some(18431));
        assert_eq!(socket_inode(Path::new("/dev/null")), None);
    }

    #[test]
    fn garbage_lines_are_skipped() {
        let text =
            "header\n 0: nonsense\n 1: 0201A8C0:0016 0501A8C0 01\n 2: 0201A8C0:0016 0501A8C0:D2A4 01 x x x 0 0 77\n";
        assert_eq!(parse_sockets(text).len(), 1);
    }

    #[test]
    fn ssh_connection_clients_lose_their_zone() {
        assert_eq!(parse_ssh_connection("fe80::1%eth0 51234 fe80::2%eth0 22"), "fe80::1".parse().ok());
        assert_eq!(parse_ssh_connection("203.0.113.7 51234 192.0.2.1 22"), "203.0.113.7".parse().ok());
        assert_eq!(parse_ssh_connection("garbage"), None);
        assert_eq!(parse_ssh_connection(""), None);
    }
}
