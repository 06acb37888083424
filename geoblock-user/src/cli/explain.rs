//! `geoblock explain`: why addresses get their verdict.

use std::{net::IpAddr, path::PathBuf};

use anyhow::{ensure, Result};
use clap::Args;
use geoblock::{
    daemon::config::DEFAULT_CONTROL_SOCKET,
    policy::{
        explain::{self, Explanation, Packet},
        rules::parse_protocol_number,
        Direction,
    },
    protocol::{self, Request, Versioned},
};
use geoblock_common::packet::{IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP};

use crate::args::{DataArgs, ListArgs, PolicyArgs};

#[derive(Args)]
pub struct ExplainArgs {
    #[arg(required = true)]
    addresses: Vec<IpAddr>,
    /// Explain a packet of this IP protocol (tcp, udp, sctp, icmp, icmpv6 or a number): which rule
    /// takes it [default: what every rule does].
    #[arg(long, value_parser = parse_protocol_number)]
    protocol: Option<u8>,
    /// The packet's destination port (with --protocol tcp, udp or sctp): with --outbound, the
    /// port of the address explained.
    #[arg(long, requires = "protocol")]
    port: Option<u16>,
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    lists: ListArgs,
    /// The running daemon's control socket (when neither --data nor a policy is given).
    #[arg(long, default_value = DEFAULT_CONTROL_SOCKET)]
    control_socket: PathBuf,
    #[arg(long)]
    json: bool,
}

/// Offline when given data or a policy, else by the running daemon. With
/// `--outbound` the addresses are destinations, and the outbound rules
/// decide (offline, `--outbound` also makes the rule of the flags one).
pub fn explain(args: ExplainArgs) -> Result<()> {
    let packet = args.protocol.map(|protocol| Packet { protocol, port: args.port });
    let direction = if args.policy.outbound { Direction::Outbound } else { Direction::Inbound };
    if let Some(p) = packet {
        let ported = [IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP].contains(&p.protocol);
        ensure!(ported == p.port.is_some(), "--port needs --protocol tcp, udp or sctp, and those need --port");
    }
    let explained: Vec<Explanation> = if args.policy.given() || !args.data.data.is_empty() {
        ensure!(args.policy.given(), "explaining offline needs the policy: --block or --allow");
        let policy = args.policy.overrides().resolve(vec![])?;
        let loaded = args.lists.added_to(args.data.sources()).load()?;
        args.addresses.iter().map(|&ip| explain::explain(&loaded, &policy, ip, direction, packet, None)).collect()
    } else {
        let request = Request::Explain { addresses: args.addresses, packet, direction };
        let response = protocol::request(&args.control_socket, &request)?;
        ensure!(response.ok, "{}", response.message);
        let explained = response.explain.unwrap_or_default();
        // A daemon older than directions explains every address as a source.
        ensure!(
            explained.iter().all(|e| e.direction == direction),
            "the running daemon explains addresses only as sources: restart it with this geoblock for --outbound"
        );
        explained
    };
    match args.json {
        true => {
            let versioned: Vec<_> = explained.iter().map(Versioned::new).collect();
            println!("{}", serde_json::to_string_pretty(&versioned)?);
        }
        false => explained.iter().for_each(|e| print!("{}", e.render())),
    }
    Ok(())
}
