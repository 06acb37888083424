//! A small HTTP server inside a test namespace: what `geoblock run
//! --data http://...` downloads from. It serves one file under any name,
//! or files by name; it answers conditional GETs (ETag) as real servers
//! do, and can be told to fail. And the client that scrapes
//! the daemon's `/metrics`.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::Duration,
};

use crate::netns::Netns;

/// What the server answers.
#[derive(Clone)]
enum Reply {
    File(String),
    Status(u16),
}

struct Shared {
    /// The answer to any name not in `named`.
    reply: Mutex<Reply>,
    named: Mutex<BTreeMap<String, Reply>>,
    requests: AtomicUsize,
    stop: AtomicBool,
}

pub struct FileServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl FileServer {
    /// Serves `body` on 127.0.0.1 of `ns`.
    pub fn start(ns: &Netns, body: &str) -> FileServer {
        let listener = ns.run(|| TcpListener::bind("127.0.0.1:0")).expect("bind in the test namespace");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            reply: Mutex::new(Reply::File(body.into())),
            named: Mutex::new(BTreeMap::new()),
            requests: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let serving = shared.clone();
        let thread = std::thread::spawn(move || serve(listener, &serving));
        FileServer { addr, shared, thread: Some(thread) }
    }

    /// The URL of `name` (any name: the server has one file).
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.addr)
    }

    pub fn serve(&self, body: &str) {
        *self.shared.reply.lock().unwrap() = Reply::File(body.into());
    }

    /// Answers every request with `status` and no body from now on.
    pub fn fail(&self, status: u16) {
        *self.shared.reply.lock().unwrap() = Reply::Status(status);
    }

    /// Serves `body` as `name` (the last part of its URL's path).
    pub fn serve_named(&self, name: &str, body: &str) {
        self.shared.named.lock().unwrap().insert(name.into(), Reply::File(body.into()));
    }

    /// Answers requests for `name` with `status` and no body from now on.
    pub fn fail_named(&self, name: &str, status: u16) {
        self.shared.named.lock().unwrap().insert(name.into(), Reply::Status(status));
    }

    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::Relaxed)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(listener: TcpListener, shared: &Shared) {
    while !shared.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                shared.requests.fetch_add(1, Ordering::Relaxed);
                // A client that hangs up early is its own problem.
                let _ = answer(stream, shared);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn answer(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut if_none_match = None;
    let mut reader = BufReader::new(&stream);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // `GET /dir/name?query HTTP/1.1`: the name.
    let path = request.split_whitespace().nth(1).unwrap_or_default();
    let name = path.split('?').next().unwrap_or_default().rsplit('/').next().unwrap_or_default();
    let named = shared.named.lock().unwrap().get(name).cloned();
    let reply = named.unwrap_or_else(|| shared.reply.lock().unwrap().clone());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("if-none-match") {
                if_none_match = Some(value.trim().to_string());
            }
        }
    }
    let head = |status: &str, extra: &str, length: usize| {
        format!("HTTP/1.1 {status}\r\n{extra}Content-Length: {length}\r\nConnection: close\r\n\r\n")
    };
    let mut out = &stream;
    match &reply {
        Reply::Status(code) => out.write_all(head(&format!("{code} Failing"), "", 0).as_bytes()),
        Reply::File(body) => {
            let etag = format!("\"{:x}-{}\"", fnv(body.as_bytes()), body.len());
            if if_none_match.as_deref() == Some(etag.as_str()) {
                return out.write_all(head("304 Not Modified", &format!("ETag: {etag}\r\n"), 0).as_bytes());
            }
            out.write_all(head("200 OK", &format!("ETag: {etag}\r\n"), body.len()).as_bytes())?;
            out.write_all(body.as_bytes())
        }
    }
}

/// FNV-1a: enough to tell two versions of a test file apart.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// `GET path` on 127.0.0.1:`port` of `ns` (the daemon's `/metrics`): the
/// status code and body.
pub fn get(ns: &Netns, port: u16, path: &str) -> (u16, String) {
    try_get(ns, port, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// [`get`], or why there is no answer.
pub fn try_get(ns: &Netns, port: u16, path: &str) -> Result<(u16, String), String> {
    let mut stream = ns.run(|| TcpStream::connect(("127.0.0.1", port))).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut text = String::new();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .and_then(|()| stream.read_to_string(&mut text))
        .map_err(|e| e.to_string())?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("not an HTTP response: {text:?}"))?;
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or("no status code")?;
    Ok((code, body.to_string()))
}
