//! The daemon's end of the control socket ([`crate::protocol`]).
//!
//! Connections are read on their own tasks; the requests are executed one
//! at a time by the daemon's main loop, which owns the kernel state. A
//! `reload` is answered once its data, read in the background, is swapped
//! in or refused; the other requests are answered meanwhile. An `events`
//! client gets the answer, then the drop events until it hangs up.
//! Connections are capped and timed out ([`listen`]), so that no client
//! can keep the socket from answering the next one.

use std::{
    os::unix::{
        fs::{FileTypeExt as _, PermissionsExt as _},
        net::UnixStream as StdUnixStream,
    },
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWriteExt as _},
    net::{unix::OwnedWriteHalf, UnixListener, UnixStream},
    sync::{broadcast, mpsc, oneshot, OwnedSemaphorePermit, Semaphore},
    time::timeout,
};

use super::listen;
use crate::{
    protocol::{self, Request, Response},
    Error,
};

/// Connections served at once. Only root can connect, and a command is
/// answered in milliseconds (a reload when its data is loaded); the cap keeps a runaway script from taking
/// every file descriptor the daemon has (1,024 under systemd).
const MAX_CONNECTIONS: usize = 32;
/// `geoblock events` clients at once. They stay for as long as they like,
/// so they have places of their own, apart from the commands'.
const MAX_EVENT_CLIENTS: usize = 8;
/// A client that has not sent its request by then is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A client that has not taken its answer by then is dropped. Answers are
/// a few KiB, less than a socket buffer: only a large `explain` to a
/// client that does not read waits at all.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests are a few words; anything longer is not one.
const MAX_REQUEST: u64 = 64 * 1024;
/// Events kept for a slow `geoblock events` client before it misses some:
/// a few seconds at the default rate.
const EVENT_BACKLOG: usize = 1024;

/// Drop events as JSON lines, to every `events` client.
pub type EventLines = broadcast::Sender<Arc<str>>;

/// The daemon's end: accepts connections and hands their requests over.
pub struct ControlSocket {
    path: PathBuf,
    requests: mpsc::Receiver<Incoming>,
    /// Drop events as JSON lines, to every `events` client.
    events: EventLines,
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
        remove_dead_socket(path)?;
        // Created 0600 from the start: no window in which others could connect.
        // SAFETY: umask only swaps the process's file creation mask.
        let old = unsafe { libc::umask(0o177) };
        let listener = UnixListener::bind(path);
        // SAFETY: as above, putting the old mask back.
        unsafe { libc::umask(old) };
        let listener = listener.map_err(Error::io(path))?;
        let (tx, requests) = mpsc::channel(16);
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        let route =
            Route { requests: tx, events: events.clone(), watchers: Arc::new(Semaphore::new(MAX_EVENT_CLIENTS)) };
        let serve = move |stream, slot| converse(stream, route.clone(), slot);
        tokio::spawn(listen::accept_all(listener, "control socket", MAX_CONNECTIONS, serve));
        Ok(ControlSocket { path: path.into(), requests, events })
    }

    /// Where the daemon sends drop events (JSON lines) for `events` clients.
    pub fn events(&self) -> &EventLines {
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

/// Removes what a dead daemon left at `path`: a socket nobody listens on.
/// Anything else there is left alone and refused: a `--control-socket`
/// naming a file by mistake must not delete it.
fn remove_dead_socket(path: &Path) -> Result<(), Error> {
    let file_type = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta.file_type(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::Io { path: path.into(), source: e }),
    };
    let found = match file_type {
        t if t.is_socket() => None,
        t if t.is_file() => Some("a regular file"),
        t if t.is_dir() => Some("a directory"),
        t if t.is_symlink() => Some("a symbolic link"),
        _ => Some("a device or a pipe"),
    };
    if let Some(found) = found {
        return Err(Error::NotASocket { path: path.into(), found });
    }
    if StdUnixStream::connect(path).is_ok() {
        return Err(Error::ControlInUse(path.into()));
    }
    std::fs::remove_file(path).map_err(Error::io(path))
}

/// Where a connection's request goes, shared by every connection.
#[derive(Clone)]
struct Route {
    /// The daemon's main loop, which executes requests.
    requests: mpsc::Sender<Incoming>,
    events: EventLines,
    /// Places left for `events` clients.
    watchers: Arc<Semaphore>,
}

impl Route {
    /// `request`, executed by the daemon: its answer.
    async fn ask(&self, request: Request, peer: Peer) -> Response {
        let (reply, answer) = oneshot::channel();
        match self.requests.send(Incoming { request, peer, reply }).await {
            Ok(()) => answer.await.unwrap_or_else(|_| Response::error("the daemon is stopping")),
            Err(_) => Response::error("the daemon is stopping"),
        }
    }
}

/// One connection: read a request, wait for the daemon's answer, write it.
/// `slot` is its place under [`MAX_CONNECTIONS`], given back when it ends
/// (an `events` client trades it for one of its own). The daemon's time is
/// not limited: a reload of large data takes what it takes, and cutting the
/// client off would not stop it, only hide how it ended.
async fn converse(stream: UnixStream, route: Route, slot: OwnedSemaphorePermit) {
    let cred = stream.peer_cred().ok();
    let peer = Peer { pid: cred.and_then(|c| c.pid()), uid: cred.map(|c| c.uid()) };
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(read.take(MAX_REQUEST));
    let response = match timeout(READ_TIMEOUT, reader.read_line(&mut line)).await {
        Ok(Ok(_)) => match serde_json::from_str::<Request>(&line) {
            Ok(Request::Events) => match route.watchers.clone().try_acquire_owned() {
                Ok(watcher) => {
                    drop(slot);
                    return stream_events(reader, write, route.events.subscribe(), watcher).await;
                }
                Err(_) => {
                    Response::error(format!("{MAX_EVENT_CLIENTS} `geoblock events` clients are connected already"))
                }
            },
            Ok(request) => route.ask(request, peer).await,
            Err(e) => Response::error(format!("not a geoblock request: {e}")),
        },
        Ok(Err(e)) => Response::error(format!("reading the request: {e}")),
        Err(_) => return,
    };
    let _ = timeout(WRITE_TIMEOUT, write.write_all(protocol::line(&response).as_bytes())).await;
}

/// Answers an `events` request, then writes every event until the client
/// hangs up. A client too slow to keep up misses events, never the daemon.
/// Clients send nothing after their request, so the end of `from` is the
/// hang-up, noticed even while no events come: `_watcher`, its place, is
/// given back then.
async fn stream_events(
    mut from: impl AsyncRead + Unpin,
    mut write: OwnedWriteHalf,
    mut events: broadcast::Receiver<Arc<str>>,
    _watcher: OwnedSemaphorePermit,
) {
    if write.write_all(protocol::line(&Response::ok("streaming drop events")).as_bytes()).await.is_err() {
        return;
    }
    let mut ignored = [0; 64];
    loop {
        let line = tokio::select! {
            event = events.recv() => match event {
                Ok(line) => line,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            read = from.read(&mut ignored) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            },
        };
        if write.write_all(line.as_bytes()).await.is_err() {
            return;
        }
    }
}
