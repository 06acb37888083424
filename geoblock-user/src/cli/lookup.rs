//! `geoblock lookup`: the country and prefix of addresses, from the data
//! `run` would load.

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
    let table = data.read.sources(data.data.clone()).load()?.table;
    let answer = |text: &str| -> Result<()> {
        let ip: IpAddr = text.trim().parse().with_context(|| format!("'{text}' is not an IP address"))?;
        match table.lookup(ip) {
            Some((net, c)) => println!("{ip} {} {net}", country::code(c)),
            None => println!("{ip} - -"),
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
