//! `geoblock lookup`: the country and prefix of addresses, from the data
//! `run` would load, and the `--list`s each is in (`list:tor`), after them.

use std::{
    io::{self, BufRead as _},
    net::IpAddr,
};

use anyhow::{Context as _, Result};
use geoblock::{country, data::DataSources};

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
    let sources = DataSources { lists: args.lists.lists.clone(), ..data.read.sources(data.data.clone()) };
    let loaded = sources.load()?;
    let answer = |text: &str| -> Result<()> {
        let ip: IpAddr = text.trim().parse().with_context(|| format!("'{text}' is not an IP address"))?;
        let lists: String =
            loaded.lists.iter().filter(|l| l.contains(ip)).map(|l| format!(" list:{}", l.name)).collect();
        match loaded.table.lookup(ip) {
            Some((net, c)) => println!("{ip} {} {net}{lists}", country::code(c)),
            None => println!("{ip} - -{lists}"),
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
