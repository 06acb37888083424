//! `geoblock run`: load, fill, attach, pin the counters, then stay in the
//! foreground until SIGINT/SIGTERM, and leave nothing behind.

use std::{path::PathBuf, time::Instant};

use aya::programs::XdpMode;
use geoblock_common::Backend;
use log::info;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, SignalKind},
};

use crate::{
    bpffs::StateDir,
    country,
    policy::{Mode, Policy},
    prefix::Table,
    program::{mode_name, Geoblock},
    Error,
};

pub struct RunOptions {
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpMode,
    pub policy: Policy,
    pub state_dir: PathBuf,
    pub backend: Backend,
}

/// Runs until SIGINT or SIGTERM. Everything is validated and attached
/// before this returns `Ok` for the first time; any error detaches what
/// was attached (the links close with the program).
pub async fn run(opts: RunOptions, table: &Table) -> Result<(), Error> {
    for iface in &opts.interfaces {
        check_interface(iface)?;
    }
    let started = Instant::now();
    let mut geoblock = Geoblock::load(opts.backend)?;
    geoblock.load_table(table)?;
    geoblock.apply_policy(&opts.policy)?;
    let loaded = started.elapsed();
    let state = StateDir::create(&opts.state_dir)?;
    geoblock.pin_counters(state.path())?;
    for iface in &opts.interfaces {
        geoblock.attach(iface, opts.xdp_mode)?;
    }
    info!(
        "loaded {} IPv4 and {} IPv6 prefixes in {} ms",
        table.v4.len(),
        table.v6.len(),
        loaded.as_millis()
    );
    info!("policy: {}", describe(&opts.policy));
    info!(
        "attached to {} (xdp mode {}); counters pinned in {}",
        opts.interfaces.join(", "),
        mode_name(opts.xdp_mode),
        state.path().display()
    );
    wait_for_signal(&mut geoblock).await?;
    drop(geoblock);
    info!("detached from {}", opts.interfaces.join(", "));
    Ok(())
}

fn check_interface(iface: &str) -> Result<(), Error> {
    let name = std::ffi::CString::new(iface).map_err(|_| Error::UnknownInterface(iface.into()))?;
    // SAFETY: name is NUL-terminated.
    if unsafe { libc::if_nametoindex(name.as_ptr()) } == 0 {
        return Err(Error::UnknownInterface(iface.into()));
    }
    Ok(())
}

/// Waits for SIGINT/SIGTERM, forwarding kernel-side log records meanwhile.
async fn wait_for_signal(geoblock: &mut Geoblock) -> Result<(), Error> {
    let io = |e| Error::Io { path: "signal handler".into(), source: e };
    let mut int = signal(SignalKind::interrupt()).map_err(io)?;
    let mut term = signal(SignalKind::terminate()).map_err(io)?;
    let Some(logger) = geoblock.take_logger() else {
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
        return Ok(());
    };
    // SAFETY: the logger owns its ring buffer's fd for as long as it lives,
    // and the AsyncFd owns the logger.
    let mut logs = unsafe { AsyncFd::register(logger) }.map_err(|e| io(e.into_parts().1))?;
    loop {
        tokio::select! {
            _ = int.recv() => return Ok(()),
            _ = term.recv() => return Ok(()),
            ready = logs.readable_mut() => {
                let mut ready = ready.map_err(io)?;
                ready.get_inner_mut().flush();
                ready.clear_ready();
            }
        }
    }
}

fn describe(policy: &Policy) -> String {
    let codes: Vec<&str> = policy.countries.iter().map(|&c| country::code(c)).collect();
    let mut text = match policy.mode {
        Mode::Deny => format!("deny-list, blocking {}", codes.join(",")),
        Mode::Allow => format!("allow-list, allowing only {}", codes.join(",")),
    };
    if policy.block_unknown {
        text += "; addresses without a country are dropped";
    }
    if !policy.exceptions.is_empty() {
        let nets: Vec<String> = policy.exceptions.iter().map(|n| n.to_string()).collect();
        text += &format!("; exceptions {}", nets.join(","));
    }
    if policy.monitor {
        text += "; MONITOR mode: nothing is dropped, would-drops are counted";
    }
    text
}
