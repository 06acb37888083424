//! systemd's readiness protocol: one datagram to `$NOTIFY_SOCKET` (what
//! `sd_notify(3)` does), so a `Type=notify` unit is "started" only once the
//! tables are loaded and every interface is attached. Without the variable
//! (not under systemd) nothing is sent.

use std::os::unix::{ffi::OsStrExt as _, net::UnixDatagram};

use tracing::warn;

/// Everything is loaded and attached.
pub fn ready() {
    send("READY=1");
}

/// The daemon is exiting (enforcement stays, see the daemon).
pub fn stopping() {
    send("STOPPING=1");
}

fn send(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|socket| match path.as_bytes().strip_prefix(b"@") {
        // A leading @ names a socket in the abstract namespace.
        Some(name) => {
            use std::os::linux::net::SocketAddrExt as _;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &addr)
        }
        None => socket.send_to(state.as_bytes(), &path),
    });
    if let Err(e) = sent {
        warn!("telling systemd {state} through {}: {e}", path.to_string_lossy());
    }
}
