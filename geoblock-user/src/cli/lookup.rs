//! `geoblock lookup`: the country and prefix of addresses, from the data
//! `run` would load; with `--asn-data`, their AS and its organisation too:
//! `8.8.8.8 US 8.8.8.0/24 AS15169 Google LLC` (`-` where there is none; the
//! first three columns are the same with or without AS data).

use std::{
    io::{self, BufRead as _},
    net::IpAddr,
};

use anyhow::{Context as _, Result};
use geoblock::country;

use crate::args::DataArgs;

#[derive(clap::Args)]
pub struct LookupArgs {
    #[arg(required = true)]
    addresses: Vec<String>,
    #[command(flatten)]
    data: DataArgs,
}

pub fn lookup(args: &LookupArgs) -> Result<()> {
    let (addresses, data) = (&args.addresses, &args.data);
    let loaded = data.sources().load()?;
    let with_asn = !data.asn_data.is_empty();
    let answer = |text: &str| -> Result<()> {
        let ip: IpAddr = text.trim().parse().with_context(|| format!("'{text}' is not an IP address"))?;
        let country = match loaded.table.lookup(ip) {
            Some((net, c)) => format!("{ip} {} {net}", country::code(c)),
            None => format!("{ip} - -"),
        };
        match loaded.asn.lookup(ip) {
            Some((_, asn, org)) => println!("{country} AS{asn} {}", org.unwrap_or("-")),
            None if with_asn => println!("{country} - -"),
            None => println!("{country}"),
        }
        Ok(())
    };
    for text in addresses {
        if text == "-" {
            for line in io::stdin().lock().lines() {
                let line = line?;
                if !line.trim().is_empty() {
                    answer(&line)?;
                }
            }
        } else {
            answer(text)?;
        }
    }
    Ok(())
}
