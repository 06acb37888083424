//! `geoblock events`: a live tail of the daemon's sampled drop events, as
//! text, JSON lines, and a pcap file.

use std::{io::Write, path::PathBuf};

use anyhow::{Context as _, Result};
use clap::Args;
use geoblock::{country, daemon::config::DEFAULT_CONTROL_SOCKET, protocol};
use geoblock_common::{CountryId, EVENT_SNAPLEN};
use tokio::signal::unix::{signal, SignalKind};

use crate::{args::parse_country, pcap::PcapWriter};

#[derive(Args)]
pub struct EventsArgs {
    /// One JSON object per line (schema in README) instead of text.
    #[arg(long)]
    json: bool,
    /// Only events whose judged address is in this country: the source's, or the destination's
    /// for an outbound packet.
    #[arg(long, value_parser = parse_country)]
    country: Option<CountryId>,
    /// Also write the events' frames (their first 128 bytes) to this pcap file.
    #[arg(long)]
    pcap: Option<PathBuf>,
    /// The running daemon's control socket.
    #[arg(long, default_value = DEFAULT_CONTROL_SOCKET)]
    control_socket: PathBuf,
}

pub fn events(args: EventsArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let shown = runtime.block_on(tail(&args, &mut std::io::stdout().lock()))?;
    let written = args.pcap.map_or(String::new(), |p| format!(", written to {}", p.display()));
    eprintln!("geoblock: {shown} events{written}");
    Ok(())
}

/// Shows the daemon's events on `out` until SIGINT, SIGTERM or the daemon's
/// exit; a pcap file is complete then. Returns how many were shown.
async fn tail(args: &EventsArgs, out: &mut impl Write) -> Result<u64> {
    let mut subscription = protocol::subscribe(&args.control_socket).await?;
    eprintln!("geoblock: streaming drop events (Ctrl-C stops)");
    let (mut int, mut term) = (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?);
    let mut pcap = match &args.pcap {
        Some(path) => {
            let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
            Some(PcapWriter::new(file, EVENT_SNAPLEN as u32)?)
        }
        None => None,
    };
    let mut shown = 0;
    loop {
        let next = tokio::select! {
            _ = int.recv() => break,
            _ = term.recv() => break,
            next = subscription.next() => next?,
        };
        let Some((event, line)) = next else { break };
        if args.country.is_some_and(|c| event.country.as_deref() != Some(country::code(c))) {
            continue;
        }
        writeln!(out, "{}", if args.json { line } else { event.render() })?;
        out.flush()?;
        if let Some(pcap) = &mut pcap {
            pcap.write(event.timestamp_ns, &event.frame_bytes(), event.frame_len)?;
        }
        shown += 1;
    }
    Ok(shown)
}
