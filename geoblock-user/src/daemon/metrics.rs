//! `/metrics` for Prometheus: a small HTTP server on the daemon's runtime.
//!
//! A scrape asks the daemon's main loop (which owns the maps) for the text,
//! built from one read of the counters into a registry made for that
//! scrape: the packet path keeps nothing but its per-CPU counters, and
//! nothing is kept up to date between scrapes but the reload history.

use std::{net::SocketAddr, time::Duration};

use geoblock_common::Total;
use prometheus_client::{
    encoding::text::encode,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::{Registry, Unit},
};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::{TcpListener, TcpStream},
    sync::{mpsc, oneshot},
};

use crate::{
    kernel::counters::{Stats, Traffic},
    Error,
};

/// A scraper that has not sent its request head by then is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Request heads are a few hundred bytes.
const MAX_HEAD: u64 = 16 * 1024;
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The daemon's state a scrape shows beside the counters.
pub struct DaemonState<'a> {
    pub generation: u64,
    pub prefixes_v4: usize,
    pub prefixes_v6: usize,
    /// Each data source and the age of its file (`None`: embedded data).
    pub sources: Vec<(String, Option<f64>)>,
    /// Each configured interface, and whether it is enforced (see
    /// [`crate::protocol::InterfaceStatus::attached`]).
    pub interfaces: Vec<(String, bool)>,
    pub reloads: &'a Reloads,
}

/// Reload outcomes and durations, kept by the daemon across scrapes.
#[derive(Clone, Debug)]
pub struct Reloads {
    ok: Counter,
    failed: Counter,
    duration: Histogram,
}

impl Default for Reloads {
    fn default() -> Reloads {
        Reloads {
            ok: Counter::default(),
            failed: Counter::default(),
            // 10 ms to about 40 s: an override file to a world MMDB on a slow box.
            duration: Histogram::new(exponential_buckets(0.01, 2.0, 13)),
        }
    }
}

impl Reloads {
    pub fn record(&self, ok: bool, took: Duration) {
        match ok {
            true => self.ok.inc(),
            false => self.failed.inc(),
        };
        self.duration.observe(took.as_secs_f64());
    }
}

type Labels<const N: usize> = [(&'static str, String); N];

/// The metrics text of `stats` and `daemon` (OpenMetrics, which Prometheus reads).
pub fn render(stats: &Stats, daemon: &DaemonState) -> String {
    let mut registry = Registry::with_prefix("geoblock");
    let packets = Family::<Labels<3>, Counter>::default();
    let bytes = Family::<Labels<3>, Counter>::default();
    let bypass_packets = Family::<Labels<2>, Counter>::default();
    let bypass_bytes = Family::<Labels<2>, Counter>::default();
    for (iface, counts) in &stats.interfaces {
        verdicts(iface, counts, &packets, &bytes);
        for (total, c) in [
            (Total::Exception, counts.totals.exception),
            (Total::NonIp, counts.totals.non_ip),
            (Total::Unparsed, counts.totals.unparsed),
        ] {
            let labels = [("reason", total.name().to_string()), ("iface", iface.clone())];
            bypass_packets.get_or_create(&labels).inc_by(c.packets);
            bypass_bytes.get_or_create(&labels).inc_by(c.bytes);
        }
    }
    registry.register(
        "packets",
        "Packets with a country verdict (country \"unknown\": no country), by action: drop, pass, would-drop",
        packets,
    );
    registry.register("bytes", "Bytes of the packets of geoblock_packets_total", bytes);
    registry.register("bypass_packets", "Packets passed without a country verdict: exception (an --except address that would have been dropped), non-ip, unparsed", bypass_packets);
    registry.register("bypass_bytes", "Bytes of the packets of geoblock_bypass_packets_total", bypass_bytes);
    families(&mut registry, stats);
    daemon_state(&mut registry, daemon);
    let mut text = String::new();
    encode(&mut text, &registry).expect("writing to a String cannot fail");
    text
}

/// Packets and bytes by country and action of one interface.
fn verdicts(iface: &str, counts: &Traffic, packets: &Family<Labels<3>, Counter>, bytes: &Family<Labels<3>, Counter>) {
    let rows = counts.countries.iter().map(|(cc, c)| (cc.as_str(), c));
    for (country, c) in rows.chain([("unknown", &counts.unknown)]) {
        for (action, pair) in c.by_action() {
            if pair.packets == 0 {
                continue;
            }
            let labels = [("country", country.to_string()), ("action", action.name().into()), ("iface", iface.into())];
            packets.get_or_create(&labels).inc_by(pair.packets);
            bytes.get_or_create(&labels).inc_by(pair.bytes);
        }
    }
}

/// Verdicts per address family, every interface together.
fn families(registry: &mut Registry, stats: &Stats) {
    let packets = Family::<Labels<2>, Counter>::default();
    let bytes = Family::<Labels<2>, Counter>::default();
    for (family, c) in [("ipv4", stats.families.ipv4), ("ipv6", stats.families.ipv6)] {
        for (action, pair) in c.by_action() {
            let labels = [("family", family.to_string()), ("action", action.name().into())];
            packets.get_or_create(&labels).inc_by(pair.packets);
            bytes.get_or_create(&labels).inc_by(pair.bytes);
        }
    }
    registry.register("family_packets", "Packets with a country verdict per address family, by action", packets);
    registry.register("family_bytes", "Bytes of the packets of geoblock_family_packets_total", bytes);
}

fn daemon_state(registry: &mut Registry, daemon: &DaemonState) {
    let prefixes = Family::<Labels<1>, Gauge>::default();
    prefixes.get_or_create(&[("family", "ipv4".into())]).set(daemon.prefixes_v4 as i64);
    prefixes.get_or_create(&[("family", "ipv6".into())]).set(daemon.prefixes_v6 as i64);
    registry.register("prefixes", "Prefixes in the table in force", prefixes);
    let age = Family::<Labels<1>, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for (source, seconds) in &daemon.sources {
        if let Some(seconds) = seconds {
            age.get_or_create(&[("source", source.clone())]).set(*seconds);
        }
    }
    registry.register_with_unit(
        "data_age",
        "Age of each data source's file (written or downloaded)",
        Unit::Seconds,
        age,
    );
    let attached = Family::<Labels<1>, Gauge>::default();
    for (iface, enforced) in &daemon.interfaces {
        attached.get_or_create(&[("iface", iface.clone())]).set(i64::from(*enforced));
    }
    registry.register(
        "attached",
        "1 while the interface runs geoblock's program through its pinned link (checked every second); \
         0 while it is gone, or tampered with and not repaired",
        attached,
    );
    let generation = Gauge::<i64>::default();
    generation.set(daemon.generation as i64);
    registry.register(
        "table_generation",
        "Tables loaded by this daemon: 1 after start, +1 per successful reload",
        generation,
    );
    let reloads = Family::<Labels<1>, Counter>::default();
    reloads.get_or_create(&[("result", "ok".into())]).inc_by(daemon.reloads.ok.get());
    reloads.get_or_create(&[("result", "failed".into())]).inc_by(daemon.reloads.failed.get());
    registry.register("reloads", "Reloads (SIGHUP, geoblock reload) by result", reloads);
    registry.register_with_unit(
        "reload_duration",
        "How long reloads took",
        Unit::Seconds,
        daemon.reloads.duration.clone(),
    );
}

/// A scrape waiting for its text, or for why there is none.
pub type Scrape = oneshot::Sender<Result<String, String>>;

/// The HTTP end: accepts scrapes and hands them to the daemon.
pub struct MetricsServer {
    pub addr: SocketAddr,
    scrapes: mpsc::Receiver<Scrape>,
}

impl MetricsServer {
    /// Listens on `addr` (on the current tokio runtime).
    pub fn bind(addr: SocketAddr) -> Result<MetricsServer, Error> {
        let io = Error::io(format!("metrics address {addr}"));
        let listener = std::net::TcpListener::bind(addr).map_err(io)?;
        let addr = listener.local_addr().unwrap_or(addr);
        listener.set_nonblocking(true).map_err(Error::io(format!("metrics address {addr}")))?;
        let listener = TcpListener::from_std(listener).map_err(Error::io(format!("metrics address {addr}")))?;
        let (tx, scrapes) = mpsc::channel(16);
        tokio::spawn(accept(listener, tx));
        Ok(MetricsServer { addr, scrapes })
    }

    /// The next scrape; never, when there is no server.
    pub async fn next(server: &mut Option<MetricsServer>) -> Option<Scrape> {
        match server {
            Some(server) => server.scrapes.recv().await,
            None => std::future::pending().await,
        }
    }
}

async fn accept(listener: TcpListener, tx: mpsc::Sender<Scrape>) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(respond(stream, tx.clone()));
    }
}

/// One connection: one request, one response, closed.
async fn respond(stream: TcpStream, tx: mpsc::Sender<Scrape>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_HEAD));
    let Ok(Some(request_line)) = tokio::time::timeout(READ_TIMEOUT, head(&mut reader)).await else {
        return;
    };
    let response = match request_line.split_whitespace().collect::<Vec<_>>()[..] {
        ["GET", "/metrics", _] => match scrape(&tx).await {
            Some(Ok(text)) => http(200, "OK", CONTENT_TYPE, &text),
            Some(Err(e)) => http(500, "Internal Server Error", "text/plain", &format!("{e}\n")),
            None => http(503, "Service Unavailable", "text/plain", "the daemon is stopping\n"),
        },
        ["GET", _, _] => http(404, "Not Found", "text/plain", "geoblock serves /metrics only\n"),
        _ => http(405, "Method Not Allowed", "text/plain", "GET /metrics\n"),
    };
    let _ = write.write_all(response.as_bytes()).await;
    let _ = write.shutdown().await;
}

/// Reads the request head; gives its first line.
async fn head<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> Option<String> {
    let mut first = String::new();
    reader.read_line(&mut first).await.ok()?;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line).await.ok()? {
            0 => return None,
            _ if line.trim().is_empty() => return Some(first),
            _ => continue,
        }
    }
}

async fn scrape(tx: &mpsc::Sender<Scrape>) -> Option<Result<String, String>> {
    let (reply, text) = oneshot::channel();
    tx.send(reply).await.ok()?;
    text.await.ok()
}

fn http(code: u16, reason: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use geoblock_common::CountryCounters;

    use super::*;

    #[test]
    fn text_has_every_metric() {
        let mut counts = Traffic::default();
        let cn = CountryCounters { dropped_packets: 3, dropped_bytes: 180, ..CountryCounters::default() };
        counts.countries.insert("CN".into(), cn);
        counts.totals.non_ip.packets = 2;
        let stats = Stats { interfaces: [("eth0".to_string(), counts)].into(), ..Stats::default() };
        let reloads = Reloads::default();
        reloads.record(true, Duration::from_millis(30));
        let state = DaemonState {
            generation: 2,
            prefixes_v4: 10,
            prefixes_v6: 5,
            sources: vec![("/data/a.csv".into(), Some(60.0)), ("embedded".into(), None)],
            interfaces: vec![("eth0".into(), true), ("eth1".into(), false)],
            reloads: &reloads,
        };
        let text = render(&stats, &state);
        for line in [
            "geoblock_packets_total{country=\"CN\",action=\"drop\",iface=\"eth0\"} 3",
            "geoblock_bytes_total{country=\"CN\",action=\"drop\",iface=\"eth0\"} 180",
            "geoblock_bypass_packets_total{reason=\"non-ip\",iface=\"eth0\"} 2",
            "geoblock_prefixes{family=\"ipv4\"} 10",
            "geoblock_data_age_seconds{source=\"/data/a.csv\"} 60.0",
            "geoblock_table_generation 2",
            "geoblock_attached{iface=\"eth0\"} 1",
            "geoblock_attached{iface=\"eth1\"} 0",
            "geoblock_reloads_total{result=\"ok\"} 1",
            "geoblock_reload_duration_seconds_count 1",
            "geoblock_family_packets_total{family=\"ipv6\",action=\"pass\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?} in:\n{text}");
        }
        assert!(!text.contains("source=\"embedded\""), "the embedded data has no age");
    }
}
