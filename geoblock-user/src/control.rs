//! The control socket: how `geoblock status`, `block`, `reload`... reach the
//! running daemon. A Unix socket only root can open (mode 0600); one JSON
//! request line per connection, answered by one JSON response line.
//!
//! Connections are read on their own tasks; the requests are executed one
//! at a time by the daemon's main loop, which owns the kernel state. An
//! `events` request is the exception: its answer is followed by the drop
//! events (see [`crate::events`]), one JSON line each, until the client
//! hangs up.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::{fs::PermissionsExt as _, net::UnixStream as StdUnixStream},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _},
    net::{UnixListener, UnixStream},
    sync::{broadcast, mpsc, oneshot},
};

use crate::{
    events::EventStatus,
    policy::{Change, Mode},
    Error,
};

/// Where the daemon listens unless `--control-socket` says otherwise.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/geoblock/control.sock";
/// A client that has not sent its request by then is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests are a few words; anything longer is not one.
const MAX_REQUEST: u64 = 64 * 1024;
/// Events kept for a slow `geoblock events` client before it misses some:
/// a few seconds at the default rate.
const EVENT_BACKLOG: usize = 1024;

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
    /// Prefix, country, source and verdict of each address (`geoblock explain`).
    Explain { addresses: Vec<std::net::IpAddr> },
}

/// The answer to a request: `ok` and a line for the operator, plus the
/// status for `status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// The answer to `explain`, one per address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explain: Option<Vec<crate::explain::Explanation>>,
}

impl Response {
    pub fn ok(message: impl Into<String>) -> Response {
        Response { ok: true, message: message.into(), status: None, explain: None }
    }

    pub fn error(message: impl Into<String>) -> Response {
        Response { ok: false, message: message.into(), status: None, explain: None }
    }
}

/// What `geoblock status` shows. A stable schema: fields are added, never
/// renamed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    pub state_dir: String,
    pub interfaces: Vec<InterfaceStatus>,
    pub policy: PolicyStatus,
    pub data: DataStatus,
    pub last_reload: Option<ReloadStatus>,
    /// Where the Prometheus metrics are served (`--metrics`), if anywhere.
    #[serde(default)]
    pub metrics: Option<String>,
    /// Sampled drop events: the rate limit and what became of the samples.
    #[serde(default)]
    pub events: Option<EventStatus>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InterfaceStatus {
    pub name: String,
    /// False while the interface is gone (the daemon attaches again when it returns).
    pub attached: bool,
    pub xdp_mode: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PolicyStatus {
    pub mode: Mode,
    pub countries: Vec<String>,
    pub monitor: bool,
    pub block_unknown: bool,
    pub exceptions: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DataStatus {
    /// `--data` files and URLs, or the embedded data set's name.
    pub sources: Vec<SourceStatus>,
    /// Tables loaded by this daemon: 1 after start, +1 per successful reload.
    pub generation: u64,
    pub prefixes_v4: usize,
    pub prefixes_v6: usize,
    /// How often URL sources are downloaded again (none: only on reload).
    #[serde(default)]
    pub refresh_seconds: Option<u64>,
    /// The last timed download of the URL sources.
    #[serde(default)]
    pub last_download: Option<ReloadStatus>,
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

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReloadStatus {
    pub ok: bool,
    pub message: String,
    pub seconds_ago: u64,
}

impl Status {
    /// The human-readable form.
    pub fn render(&self) -> String {
        let mut out = format!("state dir   {}\n", self.state_dir);
        for i in &self.interfaces {
            let state = if i.attached { "attached" } else { "GONE (re-attached when it returns)" };
            out += &format!("interface   {} ({state}, xdp mode {})\n", i.name, i.xdp_mode);
        }
        let p = &self.policy;
        let list = match p.mode {
            Mode::Deny => "deny-list, blocking",
            Mode::Allow => "allow-list, allowing only",
        };
        out += &format!("policy      {list} {}\n", p.countries.join(","));
        out += &format!("mode        {}\n", if p.monitor { "monitor (nothing dropped)" } else { "enforcing" });
        out += &format!("unknown     {}\n", if p.block_unknown { "dropped" } else { "passed" });
        out += &format!("exceptions  {}\n", if p.exceptions.is_empty() { "none".into() } else { p.exceptions.join(",") });
        let d = &self.data;
        for s in &d.sources {
            let age = s.age_seconds.map(|a| format!("modified {a} s ago"));
            let notes: Vec<String> = age.into_iter().chain(s.date.as_ref().map(|d| format!("data of {d}"))).collect();
            let notes = if notes.is_empty() { String::new() } else { format!(" ({})", notes.join(", ")) };
            out += &format!("data        {}{notes}\n", s.source);
        }
        if let Some(every) = d.refresh_seconds {
            out += &format!("refresh     every {every} s\n");
        }
        if let Some(r) = &d.last_download {
            out += &format!("download    {}, {} s ago: {}\n", if r.ok { "ok" } else { "FAILED" }, r.seconds_ago, r.message);
        }
        out += &format!(
            "table       generation {}: {} IPv4 and {} IPv6 prefixes\n",
            d.generation, d.prefixes_v4, d.prefixes_v6
        );
        if let Some(r) = &self.last_reload {
            let result = if r.ok { "ok" } else { "FAILED" };
            out += &format!("last reload {result}, {} s ago: {}\n", r.seconds_ago, r.message);
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

/// The daemon's end: accepts connections and hands their requests over.
pub struct ControlSocket {
    path: PathBuf,
    requests: mpsc::Receiver<Incoming>,
    /// Drop events as JSON lines, to every `events` client.
    events: broadcast::Sender<std::sync::Arc<str>>,
}

/// A request, who sent it, and where its response goes.
pub struct Incoming {
    pub request: Request,
    pub peer: Peer,
    pub reply: oneshot::Sender<Response>,
}

/// The process at the other end (SO_PEERCRED): who changed the policy, for the log.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    pub pid: Option<i32>,
    pub uid: Option<u32>,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let known = |v: Option<String>| v.unwrap_or_else(|| "?".into());
        write!(f, "pid {} (uid {})", known(self.pid.map(|p| p.to_string())), known(self.uid.map(|u| u.to_string())))
    }
}

impl ControlSocket {
    /// Listens at `path` (creating its directory, mode 0700, if missing). A
    /// socket left by a dead daemon is replaced; a live one is an error.
    pub fn bind(path: &Path) -> Result<ControlSocket, Error> {
        if let Some(dir) = path.parent().filter(|d| !d.exists()) {
            std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(Error::io(dir))?;
        }
        if StdUnixStream::connect(path).is_ok() {
            return Err(Error::ControlInUse(path.into()));
        }
        let _ = std::fs::remove_file(path);
        // Created 0600 from the start: no window in which others could connect.
        // SAFETY: umask only swaps the process's file creation mask.
        let old = unsafe { libc::umask(0o177) };
        let listener = UnixListener::bind(path);
        unsafe { libc::umask(old) };
        let listener = listener.map_err(Error::io(path))?;
        let (tx, requests) = mpsc::channel(16);
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        tokio::spawn(accept(listener, tx, events.clone()));
        Ok(ControlSocket { path: path.into(), requests, events })
    }

    /// Where the daemon sends drop events (JSON lines) for `events` clients.
    pub fn events(&self) -> &broadcast::Sender<std::sync::Arc<str>> {
        &self.events
    }

    /// The next request.
    pub async fn next(&mut self) -> Option<Incoming> {
        self.requests.recv().await
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn accept(listener: UnixListener, tx: mpsc::Sender<Incoming>, events: broadcast::Sender<std::sync::Arc<str>>) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(converse(stream, tx.clone(), events.clone()));
    }
}

/// One connection: read a request, wait for the daemon's answer, write it.
async fn converse(stream: UnixStream, tx: mpsc::Sender<Incoming>, events: broadcast::Sender<std::sync::Arc<str>>) {
    let cred = stream.peer_cred().ok();
    let peer = Peer { pid: cred.and_then(|c| c.pid()), uid: cred.map(|c| c.uid()) };
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_REQUEST));
    let response = match tokio::time::timeout(READ_TIMEOUT, reader.read_line(&mut line)).await {
        Ok(Ok(_)) => match serde_json::from_str::<Request>(&line) {
            Ok(Request::Events) => return stream_events(write, events.subscribe()).await,
            Ok(request) => {
                let (reply, answer) = oneshot::channel();
                match tx.send(Incoming { request, peer, reply }).await {
                    Ok(()) => answer.await.unwrap_or_else(|_| Response::error("the daemon is stopping")),
                    Err(_) => Response::error("the daemon is stopping"),
                }
            }
            Err(e) => Response::error(format!("not a geoblock request: {e}")),
        },
        Ok(Err(e)) => Response::error(format!("reading the request: {e}")),
        Err(_) => return,
    };
    let mut text = serde_json::to_string(&response).unwrap_or_default();
    text.push('\n');
    let _ = write.write_all(text.as_bytes()).await;
}

/// Answers an `events` request, then writes every event until the client
/// hangs up. A client too slow to keep up misses events, never the daemon.
async fn stream_events(mut write: tokio::net::unix::OwnedWriteHalf, mut events: broadcast::Receiver<std::sync::Arc<str>>) {
    let mut text = serde_json::to_string(&Response::ok("streaming drop events")).unwrap_or_default();
    text.push('\n');
    if write.write_all(text.as_bytes()).await.is_err() {
        return;
    }
    loop {
        let line = match events.recv().await {
            Ok(line) => line,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if write.write_all(line.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The client's end: sends `request` to the daemon at `path`, returns its
/// answer.
pub fn request(path: &Path, request: &Request) -> Result<Response, Error> {
    let io = Error::io(path);
    let mut stream = StdUnixStream::connect(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => Error::Permission,
        _ => Error::NoDaemon(path.into()),
    })?;
    let mut text = serde_json::to_string(request).expect("requests serialize");
    text.push('\n');
    stream.write_all(text.as_bytes()).map_err(Error::io(path))?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).map_err(io)?;
    serde_json::from_str(&answer).map_err(|e| Error::Io { path: path.into(), source: std::io::Error::other(e) })
}
