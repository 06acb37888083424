//! What keeps the daemon's listeners (the control socket, `/metrics`)
//! answering whatever their clients do: a cap on the connections served at
//! once, so that a flood of idle connections cannot take every file
//! descriptor, and accept errors (out of file descriptors, of memory...)
//! logged and survived instead of ending the listener.

use std::{
    future::Future,
    io,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{
    net::{TcpListener, TcpStream, UnixListener, UnixStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};
use tracing::{info, warn};

/// How long a listener waits before accepting again after an error that
/// may last (out of file descriptors: until connections close).
const BACKOFF: Duration = Duration::from_millis(100);
/// A listener in trouble says so at most this often.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// A listening socket of either kind.
pub trait Listener: Send + 'static {
    type Stream: Send + 'static;
    fn accept(&self) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

impl Listener for TcpListener {
    type Stream = TcpStream;
    async fn accept(&self) -> io::Result<TcpStream> {
        TcpListener::accept(self).await.map(|(stream, _)| stream)
    }
}

impl Listener for UnixListener {
    type Stream = UnixStream;
    async fn accept(&self) -> io::Result<UnixStream> {
        UnixListener::accept(self).await.map(|(stream, _)| stream)
    }
}

/// Accepts connections on `listener` for as long as the daemon runs, each
/// served by `serve` on a task of its own while it holds one of `slots`
/// (released when `serve` drops it). A connection beyond them is closed at
/// once: it costs a file descriptor for no longer than that.
pub async fn accept_all<L, F, Fut>(listener: L, name: &'static str, slots: usize, serve: F)
where
    L: Listener,
    F: Fn(L::Stream, OwnedSemaphorePermit) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let free = Arc::new(Semaphore::new(slots));
    let mut failures = Failures::default();
    let mut full = Throttle::default();
    loop {
        match listener.accept().await {
            Ok(stream) => {
                failures.accepted(Instant::now(), |failed| {
                    info!("{name}: accepting connections again, after {failed} failed accepts")
                });
                match free.clone().try_acquire_owned() {
                    Ok(slot) => drop(tokio::spawn(serve(stream, slot))),
                    Err(_) => full.note(Instant::now(), |unlogged| {
                        warn!("{name}: {slots} connections open already, closing new ones{}", since(unlogged))
                    }),
                }
            }
            Err(e) => {
                let pause = backoff(&e);
                failures.failed(Instant::now(), |unlogged| {
                    warn!(
                        "{name}: accepting a connection failed: {e}; retrying in {} ms{}",
                        pause.as_millis(),
                        since(unlogged)
                    )
                });
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// How long to wait before accepting again after `e`. An error of one
/// connection (aborted before it was accepted, refused by a firewall rule)
/// is gone with it, and waiting would only delay the next ones; anything
/// else (out of file descriptors or memory, or an error not known here)
/// may well last, and retrying at once would spin.
fn backoff(e: &io::Error) -> Duration {
    match e.raw_os_error() {
        Some(libc::ECONNABORTED | libc::EPROTO | libc::EPERM) => Duration::ZERO,
        _ => BACKOFF,
    }
}

/// The tail of a log line that stood for others: how many.
fn since(unlogged: u64) -> String {
    match unlogged {
        0 => String::new(),
        n => format!(" ({n} more since the last such line)"),
    }
}

/// Logs at most one line per [`LOG_EVERY`] of something that can happen
/// thousands of times a second, and counts what it did not log.
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
    unlogged: u64,
}

impl Throttle {
    /// Whether a line may be logged at `now`; if so, it counts as logged.
    fn due(&mut self, now: Instant) -> bool {
        if self.last.is_some_and(|last| now.duration_since(last) < LOG_EVERY) {
            return false;
        }
        self.last = Some(now);
        true
    }

    /// One more occurrence at `now`: `log` runs with the number of
    /// occurrences left unlogged since its last run, if it is time.
    fn note(&mut self, now: Instant, log: impl FnOnce(u64)) {
        match self.due(now) {
            true => log(std::mem::take(&mut self.unlogged)),
            false => self.unlogged += 1,
        }
    }
}

/// Failed accepts, and the accepts that work again after them, logged
/// together through one [`Throttle`]: at the limit, every connection
/// closed lets one more in before accepting fails again, and each would
/// otherwise say so.
#[derive(Debug, Default)]
struct Failures {
    throttle: Throttle,
    /// Since the last line saying accepting works again.
    failed: u64,
}

impl Failures {
    fn failed(&mut self, now: Instant, log: impl FnOnce(u64)) {
        self.failed += 1;
        self.throttle.note(now, log);
    }

    /// A connection was accepted at `now`: `log` runs with the number of
    /// accepts that failed before it, if any did and it is time. When it is
    /// not, a later accept says it.
    fn accepted(&mut self, now: Instant, log: impl FnOnce(u64)) {
        if self.failed > 0 && self.throttle.due(now) {
            // This line counts them all: the next failure is news.
            self.throttle.unlogged = 0;
            log(std::mem::take(&mut self.failed));
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::{io::AsyncReadExt as _, sync::mpsc};

    use super::*;

    #[tokio::test]
    async fn connections_beyond_the_slots_are_closed_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Each connection served hands itself and its slot to the test, which holds them.
        let (tx, mut served) = mpsc::unbounded_channel();
        let serve = move |stream, slot| {
            let tx = tx.clone();
            async move { drop(tx.send((stream, slot))) }
        };
        tokio::spawn(accept_all(listener, "test", 2, serve));
        let (mut clients, mut held) = (Vec::new(), Vec::new());
        for _ in 0..2 {
            clients.push(TcpStream::connect(addr).await.unwrap());
            held.push(served.recv().await.unwrap());
        }
        let mut over = TcpStream::connect(addr).await.unwrap();
        let read = tokio::time::timeout(Duration::from_secs(5), over.read(&mut [0; 1])).await;
        assert!(matches!(read, Ok(Ok(0) | Err(_))), "a third connection must be closed: {read:?}");
        held.pop();
        let _next = TcpStream::connect(addr).await.unwrap();
        let freed = tokio::time::timeout(Duration::from_secs(5), served.recv()).await;
        assert!(freed.is_ok(), "a slot given back serves the next connection");
    }

    /// The occurrences `throttle` logs at these offsets (ms), with the
    /// unlogged counts it gives.
    fn logged(throttle: &mut Throttle, start: Instant, offsets: &[u64]) -> Vec<(u64, u64)> {
        let mut lines = Vec::new();
        for &ms in offsets {
            throttle.note(start + Duration::from_millis(ms), |unlogged| lines.push((ms, unlogged)));
        }
        lines
    }

    #[test]
    fn a_storm_is_logged_once_a_second_with_what_was_left_out() {
        let start = Instant::now();
        let storm: Vec<u64> = (0..2500).collect();
        let lines = logged(&mut Throttle::default(), start, &storm);
        assert_eq!(lines, [(0, 0), (1000, 999), (2000, 999)]);
    }

    #[test]
    fn rare_events_are_each_logged() {
        let lines = logged(&mut Throttle::default(), Instant::now(), &[0, 1500, 5000]);
        assert_eq!(lines, [(0, 0), (1500, 0), (5000, 0)]);
    }

    #[test]
    fn recovery_is_said_once_the_failures_stop_with_all_of_them() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut failures = Failures::default();
        let mut lines = Vec::new();
        failures.accepted(at(0), |n| lines.push(("again", n)));
        assert!(lines.is_empty(), "nothing failed");
        // At the limit: each connection closed lets one in, then accepting
        // fails again. That is said once a second, not twice per connection.
        for ms in (100..2500).step_by(100) {
            failures.failed(at(ms), |n| lines.push(("failed", n)));
            failures.accepted(at(ms + 50), |n| lines.push(("again", n)));
        }
        assert_eq!(lines, [("failed", 0), ("failed", 9), ("failed", 9)]);
        failures.accepted(at(5000), |n| lines.push(("again", n)));
        failures.accepted(at(7000), |n| lines.push(("again", n)));
        assert_eq!(lines[3..], [("again", 24)], "said once, with every failed accept");
        failures.failed(at(7100), |n| lines.push(("failed", n)));
        assert_eq!(lines[4..], [("failed", 0)], "new trouble is said at once, on its own");
    }

    #[test]
    fn only_errors_of_one_connection_are_retried_at_once() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM, libc::EINVAL] {
            assert_eq!(backoff(&io::Error::from_raw_os_error(errno)), BACKOFF, "errno {errno}");
        }
        for errno in [libc::ECONNABORTED, libc::EPROTO, libc::EPERM] {
            assert_eq!(backoff(&io::Error::from_raw_os_error(errno)), Duration::ZERO, "errno {errno}");
        }
    }
}
