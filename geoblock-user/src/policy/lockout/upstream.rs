//! What the host's own traffic goes to, which an outbound rule must not cut
//! off: its DNS resolvers (`nameserver` lines of `/etc/resolv.conf`, and the
//! upstream servers of systemd-resolved behind its loopback stub) and its
//! default gateways (`/proc/net/route`, `/proc/net/ipv6_route`: the routes
//! of the reader's network namespace, the daemon's, which is the one its
//! interfaces are in).
//!
//! Only reading the files happens here, in bounded reads of regular files;
//! what they say is parsed by pure functions that skip what they cannot
//! read. Nothing here fails the caller: a file that cannot be read is a
//! problem to report, not a refusal.

use std::{
    fmt,
    fs::File,
    io::{self, Read as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::unix::fs::OpenOptionsExt as _,
};

/// Where the resolver reads its servers, and where systemd-resolved lists
/// the servers its loopback stub (127.0.0.53) forwards to.
pub const RESOLVER_FILES: [&str; 2] = ["/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"];
const ROUTES_V4: &str = "/proc/net/route";
const ROUTES_V6: &str = "/proc/net/ipv6_route";
/// The most read of any file: a resolv.conf is a few lines, and the kernel
/// lists default routes first in `/proc/net/route`, early in
/// `/proc/net/ipv6_route` (the main table's root). A router's full table
/// is hundreds of megabytes, which the guard does not walk.
const MAX_READ: u64 = 4 << 20;
/// `rt_flags` of a route: usable, and through a gateway.
const RTF_UP: u32 = 0x0001;
const RTF_GATEWAY: u32 = 0x0002;

/// A destination the host needs, and how the guard knows of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upstream {
    /// A `nameserver` of this file.
    Resolver { addr: IpAddr, file: &'static str },
    /// The next hop of a default route through this interface.
    Gateway { addr: IpAddr, iface: String },
}

impl Upstream {
    pub fn addr(&self) -> IpAddr {
        match self {
            Upstream::Resolver { addr, .. } | Upstream::Gateway { addr, .. } => *addr,
        }
    }

    /// "the DNS resolver", "the default gateway".
    pub fn what(&self) -> &'static str {
        match self {
            Upstream::Resolver { .. } => "the DNS resolver",
            Upstream::Gateway { .. } => "the default gateway",
        }
    }

    /// How it was found: "/etc/resolv.conf", "default route via eth0".
    pub fn found(&self) -> String {
        match self {
            Upstream::Resolver { file, .. } => file.to_string(),
            Upstream::Gateway { iface, .. } => format!("default route via {iface}"),
        }
    }
}

/// "the DNS resolver 192.0.2.53 (/etc/resolv.conf)"
impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ({})", self.what(), self.addr(), self.found())
    }
}

/// What was read: the upstreams, each once, and the files that could not
/// be read (in full), in words for a warning.
#[derive(Debug, Default)]
pub struct Upstreams {
    pub upstreams: Vec<Upstream>,
    pub problems: Vec<String>,
}

/// The host's resolvers and default gateways. A missing systemd-resolved
/// file is no problem: most hosts have none.
pub fn upstreams() -> Upstreams {
    let mut found = Upstreams::default();
    for file in RESOLVER_FILES {
        match read_bounded(file) {
            Ok(text) => found.add(parse_resolv_conf(&text).into_iter().map(|addr| Upstream::Resolver { addr, file })),
            Err(e) if e.kind() == io::ErrorKind::NotFound && file != RESOLVER_FILES[0] => {}
            Err(e) => found.problems.push(format!("{file}: {e}")),
        }
    }
    found.read_routes(ROUTES_V4, parse_routes_v4);
    found.read_routes(ROUTES_V6, parse_routes_v6);
    found
}

impl Upstreams {
    /// The default gateways of a route table, as `parse` reads them. Without
    /// IPv6 in this kernel there is no `ipv6_route`, and no IPv6 gateway.
    fn read_routes(&mut self, file: &str, parse: fn(&str) -> Vec<Upstream>) {
        match read_bounded(file) {
            Ok(text) => self.add(parse(&text).into_iter()),
            Err(e) if e.kind() == io::ErrorKind::NotFound && file == ROUTES_V6 => {}
            Err(e) => self.problems.push(format!("{file}: {e}")),
        }
    }

    fn add(&mut self, upstreams: impl Iterator<Item = Upstream>) {
        for upstream in upstreams {
            if !self.upstreams.iter().any(|u| u.addr() == upstream.addr()) {
                self.upstreams.push(upstream);
            }
        }
    }
}

/// The first [`MAX_READ`] bytes of a regular file. Opened without blocking,
/// so that a FIFO in its place cannot hang the daemon, and refused unless
/// regular; bytes that are not UTF-8 are replaced, not fatal.
fn read_bounded(path: &str) -> io::Result<String> {
    let file = File::options().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::with_capacity(1 << 16);
    file.take(MAX_READ).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The `nameserver` addresses of a resolv.conf, in order. As the resolver
/// reads it: `#` and `;` start comments, and a line that does not parse is
/// skipped; an IPv6 address may carry a `%scope` (a link-local server's
/// interface), which an `IpAddr` cannot hold and the guard does not need.
pub fn parse_resolv_conf(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split(['#', ';']).next()?.split_whitespace();
            if words.next()? != "nameserver" {
                return None;
            }
            words.next()?.split('%').next()?.parse().ok()
        })
        .collect()
}

/// The gateways of the default routes in a `/proc/net/route` text, with
/// their interfaces: `Iface Destination Gateway Flags RefCnt Use Metric
/// Mask ...`, addresses as 32-bit hex words in the machine's byte order.
pub fn parse_routes_v4(text: &str) -> Vec<Upstream> {
    let word = |field: &str| u32::from_str_radix(field, 16).ok();
    let route = |line: &str| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (destination, gateway, flags, mask) =
            (word(fields.get(1)?)?, word(fields.get(2)?)?, word(fields.get(3)?)?, word(fields.get(7)?)?);
        let default = destination == 0 && mask == 0 && gateway != 0;
        let via = Ipv4Addr::from(gateway.to_ne_bytes());
        (default && up_via_gateway(flags)).then(|| Upstream::Gateway { addr: via.into(), iface: fields[0].into() })
    };
    text.lines().skip(1).filter_map(route).collect()
}

/// The gateways of the default routes in a `/proc/net/ipv6_route` text:
/// `dest dest_len src src_len next_hop metric refcnt use flags iface`,
/// addresses as 32 hex digits in network order, lengths and flags in hex.
pub fn parse_routes_v6(text: &str) -> Vec<Upstream> {
    let route = |line: &str| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (destination, length) = (v6(fields.first()?)?, u8::from_str_radix(fields.get(1)?, 16).ok()?);
        let (next_hop, flags) = (v6(fields.get(4)?)?, u32::from_str_radix(fields.get(8)?, 16).ok()?);
        let iface = fields.get(9)?;
        let default = destination.is_unspecified() && length == 0 && !next_hop.is_unspecified();
        (default && up_via_gateway(flags))
            .then(|| Upstream::Gateway { addr: next_hop.into(), iface: iface.to_string() })
    };
    text.lines().filter_map(route).collect()
}

fn up_via_gateway(flags: u32) -> bool {
    flags & (RTF_UP | RTF_GATEWAY) == RTF_UP | RTF_GATEWAY
}

/// 32 hex digits: an IPv6 address, first byte first.
fn v6(hex: &str) -> Option<Ipv6Addr> {
    if hex.len() != 32 || !hex.is_ascii() {
        return None;
    }
    let mut octets = [0u8; 16];
    for (i, octet) in octets.iter_mut().enumerate() {
        *octet = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(Ipv6Addr::from(octets))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As systemd-resolved writes its stub file, with a hand-edited tail.
    const RESOLV_CONF: &str = "\
# This is /run/systemd/resolve/stub-resolv.conf managed by man:systemd-resolved(8).
# Do not edit.
nameserver 127.0.0.53
options edns0 trust-ad
search example.internal
nameserver 2001:4860:4860::8888 # Google
  nameserver\t9.9.9.9
;nameserver 1.1.1.1
nameserver fe80::1%eth0
nameserver not-an-address
nameserver
nameservers 8.8.4.4
";

    #[test]
    fn resolvers_are_the_nameserver_lines() {
        let addrs: Vec<String> = parse_resolv_conf(RESOLV_CONF).iter().map(IpAddr::to_string).collect();
        assert_eq!(addrs, ["127.0.0.53", "2001:4860:4860::8888", "9.9.9.9", "fe80::1"]);
        assert!(parse_resolv_conf("").is_empty());
        assert!(parse_resolv_conf("\u{fffd}\0nameserver\u{fffd}").is_empty());
    }

    /// A little-endian host's table: a default route (metric 100), a
    /// second one through another interface, a link route, a host route
    /// through a gateway, and a default route that is down.
    const ROUTE: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
wg0\t00000000\t0101000A\t0003\t0\t0\t200\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0
eth0\t0800000A\t010200C0\t0007\t0\t0\t0\tFFFFFFFF\t0\t0\t0
eth1\t00000000\t0101A8C0\t0002\t0\t0\t300\t00000000\t0\t0\t0
garbage line
";

    #[test]
    fn ipv4_default_gateways_are_read_from_the_route_table() {
        let routes: Vec<String> = parse_routes_v4(ROUTE).iter().map(Upstream::to_string).collect();
        assert_eq!(
            routes,
            [
                "the default gateway 192.0.2.1 (default route via eth0)",
                "the default gateway 10.0.1.1 (default route via wg0)"
            ]
        );
        assert!(parse_routes_v4(ROUTE.lines().next().unwrap()).is_empty(), "the header alone");
    }

    /// As the kernel prints it: a link route, a default route through
    /// fd00::1, a link-local gateway's on eth1, the local table's routes,
    /// and the unreachable default route of the loopback.
    const IPV6_ROUTE: &str = "\
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000003 00000000 00000003     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000003 00000000 00450003     eth1
00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
00000000000000000000000000000000 00 short 00 fd00
";

    #[test]
    fn ipv6_default_gateways_are_read_from_the_route_table() {
        let routes: Vec<String> =
            parse_routes_v6(IPV6_ROUTE).iter().map(|u| format!("{} {}", u.addr(), u.found())).collect();
        assert_eq!(routes, ["fd00::1 default route via eth0", "fe80::1 default route via eth1"]);
        assert_eq!(v6("zz000000000000000000000000000000"), None);
        assert_eq!(v6("é0000000000000000000000000000000"), None, "not ASCII: no panic on a char boundary");
    }

    #[test]
    fn upstreams_name_what_they_are_and_where_they_were_found() {
        let resolver = Upstream::Resolver { addr: "192.0.2.53".parse().unwrap(), file: RESOLVER_FILES[0] };
        assert_eq!(resolver.to_string(), "the DNS resolver 192.0.2.53 (/etc/resolv.conf)");
        let gateway = Upstream::Gateway { addr: "192.0.2.1".parse().unwrap(), iface: "eth0".into() };
        assert_eq!(gateway.to_string(), "the default gateway 192.0.2.1 (default route via eth0)");
        let mut found = Upstreams::default();
        found
            .add([resolver.clone(), Upstream::Resolver { addr: resolver.addr(), file: RESOLVER_FILES[1] }].into_iter());
        assert_eq!(found.upstreams, [resolver], "each address once");
    }

    #[test]
    fn special_files_are_not_read() {
        let fifo = std::env::temp_dir().join(format!("geoblock-upstream-fifo-{}", std::process::id()));
        let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid path.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        let read = read_bounded(fifo.to_str().unwrap());
        std::fs::remove_file(&fifo).unwrap();
        assert_eq!(read.unwrap_err().to_string(), "not a regular file", "a FIFO neither blocks nor is read");
        assert_eq!(read_bounded("/nonexistent/resolv.conf").unwrap_err().kind(), io::ErrorKind::NotFound);
    }
}
