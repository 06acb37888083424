//! `geoblock detach`: remove what `geoblock run` left in place.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use geoblock::daemon::{self, config::DEFAULT_STATE_DIR};

#[derive(Args)]
pub struct DetachArgs {
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
}

pub fn detach(args: &DetachArgs) -> Result<()> {
    let interfaces = daemon::detach(&args.state_dir)?;
    let released = match interfaces.is_empty() {
        true => "no interface".into(),
        false => interfaces.join(", "),
    };
    println!("detached from {released}; removed {}", args.state_dir.display());
    Ok(())
}
