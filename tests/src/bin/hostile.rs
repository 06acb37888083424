//! The cost of reading hostile data sources: writes each into DIR, runs
//! `geoblock data inspect` on it (and on the largest tables several sources
//! may hold, then one more), and prints peak memory and wall time.
//!
//!     cargo build --release -p geoblock-user
//!     GEOBLOCK_BIN=target/release/geoblock cargo run --release -p geoblock-tests --bin hostile -- DIR

use std::path::{Path, PathBuf};

use geoblock_tests::{
    geoblock,
    hostile::{self, Hostile},
};

type Writer = fn(&Path) -> Hostile;

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).expect("usage: hostile DIR"));
    std::fs::create_dir_all(&dir).expect("creating DIR");
    let binary = geoblock::binary();
    println!("| input | size | peak RSS | wall | geoblock says |\n|---|---|---|---|---|");
    let writers: [Writer; 6] = [
        hostile::gzip_bomb,
        hostile::zip_bomb,
        hostile::ipv6_rows,
        hostile::long_line,
        hostile::complete_mmdb,
        |dir| hostile::distinct_records_mmdb(dir, 32_000),
    ];
    for write in writers {
        let input = write(&dir);
        report(&binary, input.what, &[&input.path]);
        std::fs::remove_file(&input.path).expect("removing an input");
    }
    let tables = ["table-a.csv", "table-b.csv"].map(|name| hostile::largest_table(&dir, name));
    report(&binary, "the largest table a source may give", &[&tables[0]]);
    let last = hostile::ipv6_rows(&dir);
    report(&binary, "two largest tables, then the IPv6 rows", &[&tables[0], &tables[1], &last.path]);
}

fn report(binary: &Path, what: &str, sources: &[&Path]) {
    let size: u64 = sources.iter().map(|p| std::fs::metadata(p).expect("an input").len()).sum();
    let cost = hostile::inspect(binary, sources);
    let said = match cost.code {
        Some(0) => "read".to_string(),
        _ => cost.last_line().to_string(),
    };
    println!(
        "| {what} | {} MiB | {} MiB | {:.1} s | {said} |",
        size >> 20,
        cost.peak_rss >> 20,
        cost.wall.as_secs_f64()
    );
}
