//! `geoblock lookup`: the country and prefix of addresses, from the data
//! `run` would load, then with `--asn-data` the AS (`AS15169`, `-` for
//! none), then the `--list`s each is in (`list:tor`), then the AS's
//! organisation in parentheses: `8.8.8.8 US 8.8.0.0/17 AS15169 (Google LLC)`.
//! The first three columns are the same whatever else is given.

use std::{
    io::{self, BufRead as _},
    net::IpAddr,
};

use anyhow::{Context as _, Result};
use geoblock::country;

use crate::args::{DataArgs, ListArgs};

#[derive(clap::Args)]
pub struct LookupArgs {
    #[arg(required = true)]
    addresses: Vec<String>,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    lists: ListArgs,
}

pub fn lookup(args: &LookupArgs) -> Result<()> {
    let (addresses, data) = (&args.addresses, &args.data);
    let loaded = args.lists.added_to(data.sources()).load()?;
    let with_asn = !data.asn_data.is_empty();
    let answer = |text: &str| -> Result<()> {
        let ip: IpAddr = text.trim().parse().with_context(|| format!("'{text}' is not an IP address"))?;
        let country = match loaded.table.lookup(ip) {
            Some((net, c)) => format!("{ip} {} {net}", country::code(c)),
            None => format!("{ip} - -"),
        };
        let (asn, org) = match loaded.asn.lookup(ip) {
            Some((_, asn, org)) => (format!(" AS{asn}"), org.map(|o| format!(" ({o})")).unwrap_or_default()),
            None if with_asn => (" -".to_string(), String::new()),
            None => (String::new(), String::new()),
        };
        let lists: String =
            loaded.lists.iter().filter(|l| l.contains(ip)).map(|l| format!(" list:{}", l.name)).collect();
        println!("{country}{asn}{lists}{org}");
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
