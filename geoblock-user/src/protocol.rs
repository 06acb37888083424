//! The control socket's wire protocol, in one place: how `geoblock status`,
//! `block`, `reload`, `explain`, `events`... reach the running daemon, and
//! the JSON every command prints.
//!
//! The socket is a Unix socket only root can open (mode 0600): one JSON
//! request line per connection, answered by one JSON response line. An
//! `events` request is the exception: its answer is followed by the drop
//! events, one JSON line each, until the client hangs up.
//!
//! Every JSON document carries `schema`: [`SCHEMA`], raised whenever a
//! field or value is renamed or removed; fields are added within a schema.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::{IpAddr, SocketAddr},
    os::unix::net::UnixStream as StdUnixStream,
    path::{Path, PathBuf},
};

use geoblock_common::Action;
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader as AsyncBufReader, Lines},
    net::UnixStream,
};

use crate::{
    kernel::{events::EventCounts, selectors::SelectorSummary},
    policy::{
        explain::{Explanation, Packet},
        rules::protocol_name,
        Change, Direction, Policy, Reason,
    },
    Error,
};

/// The version of every JSON schema geoblock writes (see README, "JSON").
/// 2: one vocabulary of actions (`drop`, `pass`, `would-drop`) and reasons
/// in events, explain and metrics.
pub const SCHEMA: u32 = 2;

/// A JSON document as a command prints it: `schema` first, then `T`'s fields.
#[derive(Serialize)]
pub struct Versioned<'a, T> {
    pub schema: u32,
    #[serde(flatten)]
    pub body: &'a T,
}

impl<'a, T: Serialize> Versioned<'a, T> {
    pub fn new(body: &'a T) -> Self {
        Versioned { schema: SCHEMA, body }
    }

    /// Indented JSON, for people and `jq` alike.
    pub fn pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("geoblock's JSON types serialize")
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "command")]
pub enum Request {
    Status,
    /// `force`: load data the shrink guard would refuse.
    Reload {
        #[serde(default)]
        force: bool,
    },
    /// `ssh_client`: the address of the SSH session the command runs in,
    /// which the lock-out guard keeps reachable unless `force`.
    Change {
        change: Change,
        #[serde(default)]
        ssh_client: Option<std::net::IpAddr>,
        #[serde(default)]
        force: bool,
    },
    /// Stream drop events (JSON lines) after the answer.
    Events,
    /// Prefix, country, source and verdict of each address (`geoblock
    /// explain`), for `packet` (none: what each rule does), as a source
    /// (`inbound`) or a destination (`outbound`).
    Explain {
        addresses: Vec<std::net::IpAddr>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        packet: Option<Packet>,
        #[serde(default)]
        direction: Direction,
    },
}

/// The answer to a request: `ok` and a line for the operator, plus the
/// status for `status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Response {
    /// The [`SCHEMA`] of this answer and of everything in it.
    #[serde(default)]
    pub schema: u32,
    pub ok: bool,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// The answer to `explain`, one per address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explain: Option<Vec<Explanation>>,
}

impl Response {
    pub fn ok(message: impl Into<String>) -> Response {
        Response { schema: SCHEMA, ok: true, message: message.into(), status: None, explain: None }
    }

    pub fn error(message: impl Into<String>) -> Response {
        Response { schema: SCHEMA, ok: false, message: message.into(), status: None, explain: None }
    }
}

/// What `geoblock status` shows. A stable schema: fields are added, never
/// renamed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    pub state_dir: String,
    pub interfaces: Vec<InterfaceStatus>,
    pub policy: Policy,
    pub data: DataStatus,
    pub last_reload: Option<ReloadStatus>,
    /// The reload reading its data in the background, if one is.
    #[serde(default)]
    pub reloading: Option<Reloading>,
    /// Where the Prometheus metrics are served (`--metrics`), if anywhere.
    #[serde(default)]
    pub metrics: Option<String>,
    /// Sampled drop events: the rate limit and what became of the samples.
    #[serde(default)]
    pub events: Option<EventStatus>,
    /// Replies to this host's own connections, and the flow table that
    /// recognises them.
    #[serde(default)]
    pub flows: Option<FlowStatus>,
    /// The selector table in force: what the rules' selectors compiled to.
    #[serde(default)]
    pub selectors: Option<SelectorSummary>,
    /// Where the policy is published (`policy_url`), if it is.
    #[serde(default)]
    pub policy_url: Option<PolicyUrlStatus>,
}

/// The published policy: where, which serial is in force, and what the
/// downloads said.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PolicyUrlStatus {
    pub url: String,
    /// The serial of the document the policy in force is from.
    pub serial: u64,
    /// Documents must carry a signature made with `policy_key`.
    pub signed: bool,
    pub refresh_seconds: u64,
    /// The last download by the timer (none yet: the start's was the last).
    pub last_fetch: Option<ReloadStatus>,
    /// Downloads that failed or were refused since the daemon started.
    pub fetch_failures: u64,
    /// A control command changed the policy since the published one was
    /// applied (until the next published change or reload).
    #[serde(default)]
    pub changed_locally: bool,
}

impl PolicyUrlStatus {
    fn render(&self) -> String {
        let signed = if self.signed { "signed" } else { "unsigned" };
        let local = if self.changed_locally { " (changed here since by control commands)" } else { "" };
        let mut out = format!(
            "policy url  {}: serial {}{local}, {signed}, asked every {} s, {} failed downloads\n",
            self.url, self.serial, self.refresh_seconds, self.fetch_failures
        );
        if let Some(r) = &self.last_fetch {
            out += &r.render("policy get ");
        }
        out
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FlowStatus {
    /// Replies pass whatever their source (off: judged like any packet).
    pub replies: bool,
    /// Flows the table holds at most, and its kernel memory.
    pub size: u32,
    pub bytes: u64,
    /// TCP, UDP and ICMP: how long after the host's last packet of a flow
    /// its replies pass.
    pub timeouts_seconds: [u64; 3],
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InterfaceStatus {
    pub name: String,
    /// Whether it runs geoblock's program through geoblock's pinned link,
    /// as checked every second. False while the interface is gone (the
    /// daemon attaches again when it returns), or tampered with and not
    /// repaired.
    pub attached: bool,
    pub xdp_mode: String,
    /// The last time its enforcement was found tampered with, and what became of it.
    #[serde(default)]
    pub tampered: Option<Tampered>,
}

/// Enforcement found tampered with (a link pin removed, the program
/// replaced, the link detached).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Tampered {
    /// What was found: `link pin removed`, `link detached`...
    pub problem: String,
    pub repaired: bool,
    /// How it was repaired (`re-attached`, `program restored`), or why it
    /// could not be (the daemon retries every second).
    pub repair: String,
    pub seconds_ago: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DataStatus {
    /// `--data` files and URLs, or the embedded data set's name.
    pub sources: Vec<SourceStatus>,
    /// Tables loaded by this daemon: 1 after start, +1 per successful reload.
    pub generation: u64,
    pub prefixes_v4: usize,
    pub prefixes_v6: usize,
    /// Kernel memory of the table in force, per family (bytes, as the
    /// kernel counts it): the maps are made as large as the data needs.
    #[serde(default)]
    pub table_bytes_v4: u64,
    #[serde(default)]
    pub table_bytes_v6: u64,
    /// Trie nodes the table uses per family, of the trie's
    /// [`TRIE_MAX_NODES`](geoblock_common::TRIE_MAX_NODES) it can name (0 with `--lookup lpm`).
    #[serde(default)]
    pub trie_nodes_v4: usize,
    #[serde(default)]
    pub trie_nodes_v6: usize,
    /// How often URL sources are downloaded again (none: only on reload).
    #[serde(default)]
    pub refresh_seconds: Option<u64>,
    /// The last timed download of the URL sources.
    #[serde(default)]
    pub last_download: Option<ReloadStatus>,
    /// The AS data in force (`--asn-data`), if any.
    #[serde(default)]
    pub asn: Option<AsnStatus>,
    /// The named address lists in force, in the operator's order.
    #[serde(default)]
    pub lists: Vec<ListStatus>,
}

/// The AS data of the same generation as the country table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AsnStatus {
    pub sources: Vec<SourceStatus>,
    pub prefixes_v4: usize,
    pub prefixes_v6: usize,
    /// Distinct autonomous systems.
    pub ases: usize,
}

/// A named address list in force.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ListStatus {
    pub name: String,
    /// The path or URL as given.
    pub origin: String,
    /// `text`, `aws-json` or `gcp-json`.
    pub format: String,
    /// Entries read, per family (before merging).
    pub entries_v4: usize,
    pub entries_v6: usize,
    /// The fewest prefixes for the list's addresses.
    pub prefixes_v4: usize,
    pub prefixes_v6: usize,
    /// Seconds since the file was written or downloaded.
    pub age_seconds: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SourceStatus {
    pub source: String,
    /// Seconds since the file was written or downloaded (none for the embedded data).
    pub age_seconds: Option<u64>,
    /// The data's release date, when the source tells it.
    #[serde(default)]
    pub date: Option<String>,
}

impl SourceStatus {
    /// `origin (modified N s ago, data of DATE)`.
    fn render(&self) -> String {
        let age = self.age_seconds.map(|a| format!("modified {a} s ago"));
        let notes: Vec<String> = age.into_iter().chain(self.date.as_ref().map(|d| format!("data of {d}"))).collect();
        let notes = if notes.is_empty() { String::new() } else { format!(" ({})", notes.join(", ")) };
        format!("{}{notes}", self.source)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReloadStatus {
    pub ok: bool,
    pub message: String,
    pub seconds_ago: u64,
}

impl ReloadStatus {
    /// `LABEL ok|FAILED, N s ago: MESSAGE`, a line of `status`.
    fn render(&self, label: &str) -> String {
        let result = if self.ok { "ok" } else { "FAILED" };
        format!("{label} {result}, {} s ago: {}\n", self.seconds_ago, self.message)
    }
}

/// A reload in progress: the table in force stays until its data is read
/// and checked.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reloading {
    pub seconds_running: u64,
    /// Another reload was asked for meanwhile: it runs once this one is done.
    pub queued: bool,
}

impl Status {
    /// The human-readable form.
    pub fn render(&self) -> String {
        let mut out = format!("state dir   {}\n", self.state_dir);
        for i in &self.interfaces {
            out += &i.render();
        }
        out += &self.policy.render();
        let d = &self.data;
        for s in &d.sources {
            out += &format!("data        {}\n", s.render());
        }
        for s in d.asn.iter().flat_map(|a| &a.sources) {
            out += &format!("asn data    {}\n", s.render());
        }
        for l in &d.lists {
            let age = l.age_seconds.map(|a| format!(", modified {a} s ago")).unwrap_or_default();
            out += &format!(
                "list        {}: {} ({}: {} IPv4 and {} IPv6 entries, {} and {} prefixes{age})\n",
                l.name, l.origin, l.format, l.entries_v4, l.entries_v6, l.prefixes_v4, l.prefixes_v6
            );
        }
        if let Some(every) = d.refresh_seconds {
            out += &format!("refresh     every {every} s\n");
        }
        if let Some(r) = &d.last_download {
            out += &r.render("download   ");
        }
        out += &format!(
            "table       generation {}: {} IPv4 and {} IPv6 prefixes, {:.1} MB of kernel memory\n",
            d.generation,
            d.prefixes_v4,
            d.prefixes_v6,
            (d.table_bytes_v4 + d.table_bytes_v6) as f64 / 1e6
        );
        if let Some(a) = &d.asn {
            out += &format!(
                "asn table   {} IPv4 and {} IPv6 prefixes of {} autonomous systems\n",
                a.prefixes_v4, a.prefixes_v6, a.ases
            );
        }
        if d.trie_nodes_v4 + d.trie_nodes_v6 > 0 {
            out += &format!(
                "trie        {} IPv4 and {} IPv6 nodes, of the {} a trie can name\n",
                d.trie_nodes_v4,
                d.trie_nodes_v6,
                geoblock_common::TRIE_MAX_NODES
            );
        }
        if let Some(s) = self.selectors.as_ref().filter(|s| s.selectors > 0) {
            out += &s.render();
        }
        if let Some(p) = &self.policy_url {
            out += &p.render();
        }
        if let Some(r) = &self.last_reload {
            out += &r.render("last reload");
        }
        if let Some(r) = &self.reloading {
            let queued = if r.queued { "; another one queued" } else { "" };
            out += &format!("reloading   for {} s, reading the data{queued}\n", r.seconds_running);
        }
        // Whether replies pass is the policy's line; this is the table behind it.
        if let Some(f) = &self.flows {
            let [tcp, udp, icmp] = f.timeouts_seconds;
            out += &format!(
                "flows       table of {} flows, {:.1} MB; timeouts tcp {tcp} s, udp {udp} s, icmp {icmp} s\n",
                f.size,
                f.bytes as f64 / 1e6
            );
        }
        out += &format!("metrics     {}\n", self.metrics.as_deref().unwrap_or("off"));
        if let Some(e) = &self.events {
            let c = &e.counts;
            out += &format!(
                "events      at most {}/s: {} emitted, {} suppressed by the rate limit, {} lost\n",
                e.rate, c.emitted, c.suppressed, c.lost
            );
        }
        out
    }
}

impl SelectorSummary {
    /// Its `status` line.
    fn render(&self) -> String {
        format!(
            "selectors   {} in use: {} classes, {} IPv4 and {} IPv6 prefixes, {:.1} MB of kernel memory\n",
            self.selectors,
            self.classes,
            self.prefixes_v4,
            self.prefixes_v6,
            self.bytes as f64 / 1e6
        )
    }
}

impl InterfaceStatus {
    /// Its `status` line: "interface   eth0 (attached, xdp mode auto)",
    /// and what was last found tampered with.
    fn render(&self) -> String {
        let unrepaired = self.tampered.as_ref().is_some_and(|t| !t.repaired);
        let state = match (self.attached, unrepaired) {
            (true, _) => "attached",
            (false, true) => "NOT ENFORCING",
            (false, false) => "GONE (re-attached when it returns)",
        };
        let mut line = format!("interface   {} ({state}, xdp mode {})", self.name, self.xdp_mode);
        if let Some(t) = &self.tampered {
            let outcome = if t.repaired { t.repair.clone() } else { format!("NOT repaired: {}", t.repair) };
            line += &format!("; TAMPERED {} s ago: {}, {outcome}", t.seconds_ago, t.problem);
        }
        line + "\n"
    }
}

/// One sampled packet (`geoblock events --json`: one object per line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When the XDP program saw it, RFC 3339 UTC with nanoseconds.
    pub time: String,
    /// The same instant, in nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    pub iface: String,
    pub ifindex: u32,
    /// `inbound`: the host received it, and its source was judged;
    /// `outbound`: the host sent (or forwarded) it, and its destination was.
    #[serde(default)]
    pub direction: Direction,
    /// `drop`, `reject`, or `would-drop` (monitor mode: delivered).
    pub action: Action,
    /// Why the policy blocks the address it judged: `src` inbound, `dst`
    /// outbound.
    pub reason: Reason,
    /// The rule that decided (none: the policy changed since and has no
    /// rule at its position).
    #[serde(default)]
    pub rule: Option<String>,
    /// ISO code of the judged address's country (`src` inbound, `dst`
    /// outbound); none for an address no country claims.
    pub country: Option<String>,
    /// The selector of the rule that blocked it (`AS4134`, `list:tor`),
    /// whatever its country; none when its country decided.
    #[serde(default)]
    pub selector: Option<String>,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number (IPv6: the one after the extension headers).
    pub protocol: u8,
    /// TCP, UDP and SCTP ports; none for other protocols and fragments after the first.
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    /// The frame's length on the wire.
    pub frame_len: u32,
    /// Its first bytes (up to 128), from the Ethernet header on, in hex.
    pub frame: String,
}

impl Event {
    /// One line: time, interface, direction, rule, reason (and the
    /// selector that decided, if one did), the judged address's country,
    /// source → destination, protocol.
    pub fn render(&self) -> String {
        let endpoint = |ip: IpAddr, port: Option<u16>| match port {
            Some(port) => SocketAddr::new(ip, port).to_string(),
            None => ip.to_string(),
        };
        let selector = self.selector.as_deref().map(|s| format!(" {s}")).unwrap_or_default();
        format!(
            "{} {} {} {} {}{selector} {} {} -> {} {} {} bytes",
            self.time,
            self.iface,
            self.direction.name(),
            self.rule.as_deref().unwrap_or("-"),
            self.reason.name(),
            self.country.as_deref().unwrap_or("--"),
            endpoint(self.src, self.src_port),
            endpoint(self.dst, self.dst_port),
            protocol_name(self.protocol),
            self.frame_len
        )
    }

    /// The captured bytes, from [`Event::frame`].
    pub fn frame_bytes(&self) -> Vec<u8> {
        let hex = self.frame.as_bytes();
        hex.chunks(2).filter_map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()).collect()
    }
}

/// The event settings and counters in `geoblock status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventStatus {
    /// Events per second at most, over all CPUs (0: off).
    pub rate: u32,
    #[serde(flatten)]
    pub counts: EventCounts,
}

/// The client's end: sends `request` to the daemon at `path`, returns its
/// answer. It waits as long as the daemon takes, without a timeout: a
/// `reload` is answered once its data is loaded, which for a world table
/// takes seconds (minutes, when URL sources are downloaded first); other
/// requests are answered at once, during a reload too.
pub fn request(path: &Path, request: &Request) -> Result<Response, Error> {
    let io = Error::io(path);
    let mut stream = StdUnixStream::connect(path).map_err(|e| unreachable(path, e))?;
    stream.write_all(line(request).as_bytes()).map_err(Error::io(path))?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).map_err(io)?;
    parse_line(path, &answer)
}

/// The daemon's event stream, subscribed to.
pub struct Subscription {
    socket: PathBuf,
    lines: Lines<AsyncBufReader<UnixStream>>,
}

/// Asks the daemon at `socket` for its events; the lines that follow its
/// answer are events.
pub async fn subscribe(socket: &Path) -> Result<Subscription, Error> {
    let io = Error::io(socket);
    let mut stream = UnixStream::connect(socket).await.map_err(|e| unreachable(socket, e))?;
    stream.write_all(line(&Request::Events).as_bytes()).await.map_err(Error::io(socket))?;
    let mut lines = AsyncBufReader::new(stream).lines();
    let answer = lines.next_line().await.map_err(io)?.unwrap_or_default();
    let response: Response = parse_line(socket, &answer)?;
    if !response.ok {
        return Err(Error::Io { path: socket.into(), source: std::io::Error::other(response.message) });
    }
    Ok(Subscription { socket: socket.into(), lines })
}

impl Subscription {
    /// The next event and its JSON line; `None` once the daemon hangs up.
    pub async fn next(&mut self) -> Result<Option<(Event, String)>, Error> {
        let Some(line) = self.lines.next_line().await.map_err(Error::io(&self.socket))? else {
            return Ok(None);
        };
        Ok(Some((parse_line(&self.socket, &line)?, line)))
    }
}

/// `message` as the socket carries it: one line of JSON, newline included.
pub fn line(message: &impl Serialize) -> String {
    let mut text = serde_json::to_string(message).expect("geoblock's JSON types serialize");
    text.push('\n');
    text
}

fn parse_line<T: serde::de::DeserializeOwned>(socket: &Path, line: &str) -> Result<T, Error> {
    serde_json::from_str(line).map_err(|e| Error::Io { path: socket.into(), source: std::io::Error::other(e) })
}

/// Why a client could not connect: not root, or no daemon there.
fn unreachable(socket: &Path, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => Error::Permission,
        _ => Error::NoDaemon(socket.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selector_table_has_a_status_line() {
        let summary =
            SelectorSummary { selectors: 3, classes: 4, prefixes_v4: 1200, prefixes_v6: 300, bytes: 2_500_000 };
        assert_eq!(
            summary.render(),
            "selectors   3 in use: 4 classes, 1200 IPv4 and 300 IPv6 prefixes, 2.5 MB of kernel memory\n"
        );
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["prefixes_v4"], 1200);
        assert_eq!(json["bytes"], 2_500_000);
    }
}
