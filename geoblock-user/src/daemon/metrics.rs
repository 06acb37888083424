//! `/metrics` for Prometheus and `/ready` for probes (a Kubernetes
//! readinessProbe): an HTTP server (hyper) on the daemon's runtime.
//!
//! A scrape asks the daemon's main loop (which owns the maps) for the text,
//! built from one read of the counters into a registry made for that
//! scrape: the packet path keeps nothing but its per-CPU counters, and
//! nothing is kept up to date between scrapes but the reload history.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use geoblock_common::{Direction, Total};
use hyper::{
    body::Incoming,
    header::{self, HeaderValue},
    server::conn::http1,
    service::service_fn,
    Method, Request, Response, StatusCode,
};
use hyper_util::rt::{TokioIo, TokioTimer};
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
    net::{TcpListener, TcpStream},
    sync::{mpsc, oneshot, OwnedSemaphorePermit},
};

use super::listen;
use crate::{
    data::table::PerFamily,
    kernel::counters::{Stats, Traffic},
    policy::UNMATCHED_RULE,
    Error,
};

/// Scrapes served at once. Prometheus scrapes one at a time per server,
/// so this leaves room for several servers and people with curl; a flood
/// of idle connections beyond it is closed at once instead of taking
/// every file descriptor the daemon has (1,024 under systemd).
const MAX_CONNECTIONS: usize = 64;
/// A scraper that has not sent its request head by then is dropped.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The whole exchange, the response to a slow reader included: longer
/// than Prometheus's default scrape timeout (10 s), which gives up first.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Request heads are a few hundred bytes (hyper's smallest buffer is 8 KiB).
const MAX_HEAD: usize = 16 * 1024;
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";
const NOT_READY: &str = "not ready: starting (loading the tables, attaching), or an interface is not enforced \
                         (geoblock status says which)\n";

/// The daemon's state a scrape shows beside the counters.
pub struct DaemonState<'a> {
    pub generation: u64,
    pub prefixes_v4: usize,
    pub prefixes_v6: usize,
    /// Kernel memory of the table in force, bytes per family.
    pub table_memory: PerFamily<u64>,
    /// Trie nodes the table in force uses, per family (0 with the LPM trie).
    pub trie_nodes: PerFamily<usize>,
    /// The flow table's kernel memory (bytes) and the flows it holds at most.
    pub flow_table: (u64, u32),
    /// Each data source and the age of its file (`None`: embedded data).
    pub sources: Vec<(String, Option<f64>)>,
    /// Each configured interface, and whether it is enforced (see
    /// [`crate::protocol::InterfaceStatus::attached`]).
    pub interfaces: Vec<(String, bool)>,
    pub reloads: &'a Reloads,
    /// With a policy URL: the URL, the serial in force, and the downloads
    /// that failed or were refused.
    pub policy: Option<(String, u64, u64)>,
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
    let packets = Family::<Labels<4>, Counter>::default();
    let bytes = Family::<Labels<4>, Counter>::default();
    let bypass_packets = Family::<Labels<3>, Counter>::default();
    let bypass_bytes = Family::<Labels<3>, Counter>::default();
    for direction in Direction::ALL {
        for (iface, counts) in &stats.direction(direction).interfaces {
            verdicts((direction, iface), counts, &packets, &bytes);
            for (total, c) in [
                (Total::Exception, counts.totals.exception),
                (Total::Reply, counts.totals.reply),
                (Total::NonIp, counts.totals.non_ip),
                (Total::Unparsed, counts.totals.unparsed),
            ] {
                let labels =
                    [("reason", total.name().to_string()), ("iface", iface.clone()), direction_label(direction)];
                bypass_packets.get_or_create(&labels).inc_by(c.packets);
                bypass_bytes.get_or_create(&labels).inc_by(c.bytes);
            }
        }
    }
    registry.register(
        "packets",
        "Packets with a country verdict (country \"unknown\": no country), by action: drop, pass, would-drop; \
         direction inbound (by source) or outbound (by destination; a connect or send the socket hooks refused \
         counts as an outbound drop of 0 bytes on iface \"(other)\")",
        packets,
    );
    registry.register("bytes", "Bytes of the packets of geoblock_packets_total", bytes);
    registry.register("bypass_packets", "Packets passed without a country verdict: exception (an --except address that would have been dropped), reply (a reply to a connection this host opened that would have been dropped), non-ip, unparsed", bypass_packets);
    registry.register("bypass_bytes", "Bytes of the packets of geoblock_bypass_packets_total", bypass_bytes);
    families(&mut registry, stats);
    rules(&mut registry, stats);
    selectors(&mut registry, stats);
    rejects(&mut registry, stats);
    daemon_state(&mut registry, daemon);
    let mut text = String::new();
    encode(&mut text, &registry).expect("writing to a String cannot fail");
    text
}

/// The `direction` label.
fn direction_label(direction: Direction) -> (&'static str, String) {
    ("direction", direction.name().into())
}

/// Packets and bytes by country and action of one interface in one direction.
fn verdicts(
    (direction, iface): (Direction, &str),
    counts: &Traffic,
    packets: &Family<Labels<4>, Counter>,
    bytes: &Family<Labels<4>, Counter>,
) {
    let rows = counts.countries.iter().map(|(cc, c)| (cc.as_str(), c));
    for (country, c) in rows.chain([("unknown", &counts.unknown)]) {
        for (action, pair) in c.by_action() {
            if pair.packets == 0 {
                continue;
            }
            let labels = [
                ("country", country.to_string()),
                ("action", action.name().into()),
                ("iface", iface.into()),
                direction_label(direction),
            ];
            packets.get_or_create(&labels).inc_by(pair.packets);
            bytes.get_or_create(&labels).inc_by(pair.bytes);
        }
    }
}

/// Verdicts per address family, every interface together.
fn families(registry: &mut Registry, stats: &Stats) {
    let packets = Family::<Labels<3>, Counter>::default();
    let bytes = Family::<Labels<3>, Counter>::default();
    for direction in Direction::ALL {
        let families = stats.direction(direction).families;
        for (family, c) in [("ipv4", families.ipv4), ("ipv6", families.ipv6)] {
            for (action, pair) in c.by_action() {
                let labels =
                    [("family", family.to_string()), ("action", action.name().into()), direction_label(direction)];
                packets.get_or_create(&labels).inc_by(pair.packets);
                bytes.get_or_create(&labels).inc_by(pair.bytes);
            }
        }
    }
    registry.register("family_packets", "Packets with a country verdict per address family, by action", packets);
    registry.register("family_bytes", "Bytes of the packets of geoblock_family_packets_total", bytes);
}

/// Verdicts per rule and address family, every interface together; the
/// packets no rule matched as rule [`UNMATCHED_RULE`].
fn rules(registry: &mut Registry, stats: &Stats) {
    let packets = Family::<Labels<4>, Counter>::default();
    let bytes = Family::<Labels<4>, Counter>::default();
    for direction in Direction::ALL {
        let counts = stats.direction(direction);
        let rules = counts.rules.iter().map(|r| (r.name.as_str(), &r.families));
        for (rule, families) in rules.chain([(UNMATCHED_RULE, &counts.unmatched)]) {
            for (family, c) in [("ipv4", families.ipv4), ("ipv6", families.ipv6)] {
                for (action, pair) in c.by_action() {
                    let labels = [
                        ("rule", rule.to_string()),
                        ("family", family.into()),
                        ("action", action.name().into()),
                        direction_label(direction),
                    ];
                    packets.get_or_create(&labels).inc_by(pair.packets);
                    bytes.get_or_create(&labels).inc_by(pair.bytes);
                }
            }
        }
    }
    let help = format!("Packets per rule (\"{UNMATCHED_RULE}\": no rule matched) and address family, by action");
    registry.register("rule_packets", help, packets);
    registry.register("rule_bytes", "Bytes of the packets of geoblock_rule_packets_total", bytes);
}

/// Verdicts each selector decided, every interface and family together.
fn selectors(registry: &mut Registry, stats: &Stats) {
    let packets = Family::<Labels<3>, Counter>::default();
    let bytes = Family::<Labels<3>, Counter>::default();
    for direction in Direction::ALL {
        for selector in &stats.direction(direction).selectors {
            for (action, pair) in selector.counters.by_action() {
                let labels =
                    [("selector", selector.name.clone()), ("action", action.name().into()), direction_label(direction)];
                packets.get_or_create(&labels).inc_by(pair.packets);
                bytes.get_or_create(&labels).inc_by(pair.bytes);
            }
        }
    }
    let help =
        "Packets a selector of a rule decided (AS4134, list:tor: the rule's allow or block selectors), by action";
    registry.register("selector_packets", help, packets);
    registry.register("selector_bytes", "Bytes of the packets of geoblock_selector_packets_total", bytes);
}

/// Answers to rejected packets, every interface together.
fn rejects(registry: &mut Registry, stats: &Stats) {
    let answers = Family::<Labels<1>, Counter>::default();
    for (result, n) in [("sent", stats.rejects.sent), ("suppressed", stats.rejects.suppressed)] {
        answers.get_or_create(&[("result", result.into())]).inc_by(n);
    }
    let help = "Answers (TCP resets, ICMP errors) to packets a rule rejects: sent, or suppressed by the rate limit";
    registry.register("rejects", help, answers);
}

fn daemon_state(registry: &mut Registry, daemon: &DaemonState) {
    let prefixes = Family::<Labels<1>, Gauge>::default();
    prefixes.get_or_create(&[("family", "ipv4".into())]).set(daemon.prefixes_v4 as i64);
    prefixes.get_or_create(&[("family", "ipv6".into())]).set(daemon.prefixes_v6 as i64);
    registry.register("prefixes", "Prefixes in the table in force", prefixes);
    let memory = Family::<Labels<1>, Gauge>::default();
    memory.get_or_create(&[("family", "ipv4".into())]).set(daemon.table_memory.v4 as i64);
    memory.get_or_create(&[("family", "ipv6".into())]).set(daemon.table_memory.v6 as i64);
    registry.register_with_unit(
        "table_memory",
        "Kernel memory of the table in force (its maps are as large as the data needs)",
        Unit::Bytes,
        memory,
    );
    let nodes = Family::<Labels<1>, Gauge>::default();
    nodes.get_or_create(&[("family", "ipv4".into())]).set(daemon.trie_nodes.v4 as i64);
    nodes.get_or_create(&[("family", "ipv6".into())]).set(daemon.trie_nodes.v6 as i64);
    let help =
        format!("Trie nodes the table in force uses, of the {} a trie can name", geoblock_common::TRIE_MAX_NODES);
    registry.register("trie_nodes", help, nodes);
    let (bytes, size) = daemon.flow_table;
    let flow_memory = Gauge::<i64>::default();
    flow_memory.set(bytes as i64);
    let help = "Kernel memory of the table of the connections this host opened (their replies pass)";
    registry.register_with_unit("flow_table_memory", help, Unit::Bytes, flow_memory);
    let flow_size = Gauge::<i64>::default();
    flow_size.set(i64::from(size));
    registry.register("flow_table_size", "Flows the flow table holds at most (the least recent make room)", flow_size);
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
    if let Some((url, serial, failures)) = &daemon.policy {
        let generation = Family::<Labels<1>, Gauge>::default();
        generation.get_or_create(&[("url", url.clone())]).set(*serial as i64);
        registry.register(
            "policy_generation",
            "The serial of the published policy document in force (policy_url)",
            generation,
        );
        let failed = Counter::<u64>::default();
        failed.inc_by(*failures);
        registry.register(
            "policy_fetch_failures",
            "Downloads of the published policy that failed or were refused (the policy in force stays)",
            failed,
        );
    }
}

/// A scrape waiting for its text, or for why there is none.
pub type Scrape = oneshot::Sender<Result<String, String>>;

/// What `/ready` answers: ready once the daemon serves with every
/// interface enforced (what READY=1 tells systemd, kept up to date after).
/// Read by the HTTP end without asking the daemon's loop, which does not
/// serve while the tables load: a probe gets its 503 at once, not a
/// timeout.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The HTTP end: accepts scrapes and hands them to the daemon.
pub struct MetricsServer {
    pub addr: SocketAddr,
    scrapes: mpsc::Receiver<Scrape>,
    /// What `/ready` answers, from the start: not ready.
    pub readiness: Readiness,
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
        let readiness = Readiness::default();
        let ready = readiness.clone();
        let serve = move |stream, slot| respond(stream, tx.clone(), ready.clone(), slot);
        tokio::spawn(listen::accept_all(listener, "metrics", MAX_CONNECTIONS, serve));
        Ok(MetricsServer { addr, scrapes, readiness })
    }

    /// The next scrape; never, when there is no server.
    pub async fn next(server: &mut Option<MetricsServer>) -> Option<Scrape> {
        match server {
            Some(server) => server.scrapes.recv().await,
            None => std::future::pending().await,
        }
    }
}

/// One connection: one request, one response, closed. `_slot` is its
/// place under [`MAX_CONNECTIONS`], given back when it ends.
async fn respond(stream: TcpStream, tx: mpsc::Sender<Scrape>, readiness: Readiness, _slot: OwnedSemaphorePermit) {
    let service = service_fn(move |request| answer(request, tx.clone(), readiness.get()));
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    // A timeout, a malformed request or a client that hung up ends this
    // connection and nothing else: there is nothing to report but the close.
    let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
}

async fn answer(
    request: Request<Incoming>,
    tx: mpsc::Sender<Scrape>,
    ready: bool,
) -> Result<Response<String>, Infallible> {
    Ok(match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => match scrape(&tx).await {
            Some(Ok(text)) => reply(StatusCode::OK, CONTENT_TYPE, text),
            Some(Err(e)) => reply(StatusCode::INTERNAL_SERVER_ERROR, TEXT, format!("{e}\n")),
            None => reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, "the daemon is stopping\n".into()),
        },
        (&Method::GET, "/ready") => match ready {
            true => reply(StatusCode::OK, TEXT, "ready\n".into()),
            false => reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, NOT_READY.into()),
        },
        (&Method::GET, _) => reply(StatusCode::NOT_FOUND, TEXT, "geoblock serves /metrics and /ready\n".into()),
        _ => {
            let mut response = reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "GET /metrics or /ready\n".into());
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET"));
            response
        }
    })
}

async fn scrape(tx: &mpsc::Sender<Scrape>) -> Option<Result<String, String>> {
    let (reply, text) = oneshot::channel();
    tx.send(reply).await.ok()?;
    text.await.ok()
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<String> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use geoblock_common::CountryCounters;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;
    use crate::kernel::counters::{Counts, Families, Rejects, RuleCounts, SelectorCounts};

    /// `request` sent to `addr` as it is: the whole response.
    async fn exchange(addr: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response)).await;
        read.expect("answered and closed").unwrap();
        response
    }

    #[tokio::test]
    async fn get_metrics_is_served_and_nothing_else() {
        let mut server = Some(MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap());
        let addr = server.as_ref().unwrap().addr;
        tokio::spawn(async move {
            while let Some(scrape) = MetricsServer::next(&mut server).await {
                drop(scrape.send(Ok("geoblock_table_generation 1\n".into())));
            }
        });
        let ok = exchange(addr, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains(&format!("content-type: {CONTENT_TYPE}\r\n")), "{ok}");
        assert!(ok.contains("connection: close\r\n") && ok.ends_with("\r\n\r\ngeoblock_table_generation 1\n"), "{ok}");
        let elsewhere = exchange(addr, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
        assert!(elsewhere.starts_with("HTTP/1.1 404 Not Found\r\n"), "{elsewhere}");
        let post = exchange(addr, "POST /metrics HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nhi").await;
        assert!(post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n") && post.contains("allow: GET\r\n"), "{post}");
        let garbage = exchange(addr, "\x16\x03\x01 not http\r\n\r\n").await;
        assert!(garbage.starts_with("HTTP/1.1 400 Bad Request\r\n") || garbage.is_empty(), "{garbage}");
    }

    #[tokio::test]
    async fn ready_answers_what_the_daemon_says_without_its_loop() {
        // No loop takes scrapes: a daemon still loading its tables.
        let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let get = "GET /ready HTTP/1.1\r\nHost: localhost\r\n\r\n";
        let starting = exchange(server.addr, get).await;
        assert!(starting.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{starting}");
        assert!(starting.ends_with(&format!("\r\n\r\n{NOT_READY}")), "{starting}");
        server.readiness.set(true);
        let ready = exchange(server.addr, get).await;
        assert!(ready.starts_with("HTTP/1.1 200 OK\r\n") && ready.ends_with("\r\n\r\nready\n"), "{ready}");
        server.readiness.set(false);
        let lost = exchange(server.addr, get).await;
        assert!(lost.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{lost}");
    }

    #[test]
    fn text_has_every_metric() {
        let mut counts = Traffic::default();
        let cn = CountryCounters { dropped_packets: 3, dropped_bytes: 180, ..CountryCounters::default() };
        counts.countries.insert("CN".into(), cn);
        counts.totals.non_ip.packets = 2;
        counts.totals.reply.packets = 4;
        let ssh = RuleCounts { name: "ssh".into(), families: Families { ipv4: cn, ..Families::default() } };
        let selectors = vec![SelectorCounts { name: "AS4134".into(), counters: cn }];
        let inbound = Counts {
            interfaces: [("eth0".to_string(), counts)].into(),
            rules: vec![ssh],
            selectors,
            ..Counts::default()
        };
        let stats = Stats { inbound, rejects: Rejects { sent: 5, suppressed: 1 }, ..Stats::default() };
        let reloads = Reloads::default();
        reloads.record(true, Duration::from_millis(30));
        let state = DaemonState {
            generation: 2,
            prefixes_v4: 10,
            prefixes_v6: 5,
            table_memory: PerFamily { v4: 1_048_576, v6: 2_097_152 },
            trie_nodes: PerFamily { v4: 300, v6: 400 },
            flow_table: (21_000_000, 262_144),
            sources: vec![("/data/a.csv".into(), Some(60.0)), ("embedded".into(), None)],
            interfaces: vec![("eth0".into(), true), ("eth1".into(), false)],
            reloads: &reloads,
            policy: Some(("https://a.example/p.toml".into(), 42, 3)),
        };
        let text = render(&stats, &state);
        for line in [
            "geoblock_packets_total{country=\"CN\",action=\"drop\",iface=\"eth0\",direction=\"inbound\"} 3",
            "geoblock_bytes_total{country=\"CN\",action=\"drop\",iface=\"eth0\",direction=\"inbound\"} 180",
            "geoblock_bypass_packets_total{reason=\"non-ip\",iface=\"eth0\",direction=\"inbound\"} 2",
            "geoblock_bypass_packets_total{reason=\"reply\",iface=\"eth0\",direction=\"inbound\"} 4",
            "geoblock_rule_packets_total{rule=\"ssh\",family=\"ipv4\",action=\"drop\",direction=\"inbound\"} 3",
            "geoblock_rule_bytes_total{rule=\"ssh\",family=\"ipv4\",action=\"drop\",direction=\"inbound\"} 180",
            "geoblock_rule_packets_total{rule=\"ssh\",family=\"ipv6\",action=\"drop\",direction=\"inbound\"} 0",
            "geoblock_rule_packets_total{rule=\"(none)\",family=\"ipv4\",action=\"pass\",direction=\"outbound\"} 0",
            "geoblock_selector_packets_total{selector=\"AS4134\",action=\"drop\",direction=\"inbound\"} 3",
            "geoblock_selector_bytes_total{selector=\"AS4134\",action=\"drop\",direction=\"inbound\"} 180",
            "geoblock_selector_packets_total{selector=\"AS4134\",action=\"pass\",direction=\"inbound\"} 0",
            "# TYPE geoblock_selector_packets counter",
            "geoblock_prefixes{family=\"ipv4\"} 10",
            "geoblock_table_memory_bytes{family=\"ipv6\"} 2097152",
            "geoblock_trie_nodes{family=\"ipv4\"} 300",
            "geoblock_data_age_seconds{source=\"/data/a.csv\"} 60.0",
            "geoblock_table_generation 2",
            "geoblock_attached{iface=\"eth0\"} 1",
            "geoblock_attached{iface=\"eth1\"} 0",
            "geoblock_reloads_total{result=\"ok\"} 1",
            "geoblock_rejects_total{result=\"sent\"} 5",
            "geoblock_rejects_total{result=\"suppressed\"} 1",
            "geoblock_reload_duration_seconds_count 1",
            "geoblock_policy_generation{url=\"https://a.example/p.toml\"} 42",
            "geoblock_policy_fetch_failures_total 3",
            "geoblock_family_packets_total{family=\"ipv6\",action=\"pass\",direction=\"inbound\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?} in:\n{text}");
        }
        assert!(!text.contains("source=\"embedded\""), "the embedded data has no age");
    }
}
