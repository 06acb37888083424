//! Data sources built to cost `geoblock data inspect` the most within what
//! geoblock reads of one source (its byte budget, [`BUDGET`]), and the cost
//! of reading them: peak memory and time of the real binary. The privileged
//! tests run them under the bounds geoblock promises (hardening.rs);
//! `cargo run --release -p geoblock-tests --bin hostile -- DIR` measures
//! them for BENCHMARKS.md.

use std::{
    fs,
    io::{self, Read as _, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use geoblock::data::{mmdb, table::MAX_PREFIXES, BUDGET, MAX_ROWS};
use geoblock_common::country_id;

/// What geoblock promises of any source: `data inspect` stays within this
/// much memory...
pub const MEMORY: u64 = 1 << 30;
/// ...and time.
pub const TIME: Duration = Duration::from_secs(60);

/// The error of a source with more records than geoblock reads.
pub const TOO_MANY_ROWS: &str = "records in one source";

/// A hostile source: its file, what it is, and what refusing it says.
pub struct Hostile {
    pub path: PathBuf,
    pub what: &'static str,
    pub refusal: &'static str,
}

/// Gzip members of 16 MiB of `0,0,CN` rows (7 bytes each, 76M rows within
/// the budget), repeated until the file and what it unpacks to fill the
/// budget: the most rows and the most bytes a compressed file gets read.
pub fn gzip_bomb(dir: &Path) -> Hostile {
    let (member, unpacked) = tiny_rows_gzip();
    let copies = BUDGET as usize / (member.len() + unpacked);
    let path = dir.join("bomb.csv.gz");
    fs::write(&path, member.repeat(copies)).expect("writing the gzip bomb");
    Hostile { path, what: "gzip bomb: 7-byte rows, unpacked to the budget", refusal: TOO_MANY_ROWS }
}

/// The same gzip members stored in a zip, one member each: every layer
/// counts against the budget (the zip, each member, what it unpacks to).
pub fn zip_bomb(dir: &Path) -> Hostile {
    let (member, unpacked) = tiny_rows_gzip();
    let copies = BUDGET as usize / (2 * member.len() + unpacked + 128);
    let path = dir.join("bomb.zip");
    let mut zip = zip::ZipWriter::new(io::BufWriter::new(fs::File::create(&path).expect("creating the zip bomb")));
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..copies {
        zip.start_file(format!("part{i}.csv.gz"), stored).expect("a zip member");
        zip.write_all(&member).expect("writing a zip member");
    }
    zip.finish().expect("finishing the zip bomb").flush().expect("writing the zip bomb");
    Hostile { path, what: "zip bomb: gzip members in a zip, unpacked to the budget", refusal: TOO_MANY_ROWS }
}

/// One gzip member of 16 MiB of `0,0,CN` rows, and that size.
fn tiny_rows_gzip() -> (Vec<u8>, usize) {
    let rows = b"0,0,CN\n".repeat((16 << 20) / 7);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&rows).expect("compressing");
    (gz.finish().expect("compressing"), rows.len())
}

/// IPv6 rows, each `X::1` to `X:ffff:…:fffe` (190 prefixes) and of the
/// other country than the row before, one more than geoblock reads, then a
/// comment up to the budget: the most memory rows take while the whole file
/// is held (44 bytes per IPv6 row kept).
pub fn ipv6_rows(dir: &Path) -> Hostile {
    let path = dir.join("rows-ipv6.csv");
    let mut out = io::BufWriter::new(fs::File::create(&path).expect("creating the IPv6 rows"));
    let mut written = 0;
    for i in 0..=MAX_ROWS {
        let (a, b, cc) = (i >> 16, i & 0xffff, ["CN", "DE"][i % 2]);
        let row = format!("{a:x}:{b:x}::1,{a:x}:{b:x}:ffff:ffff:ffff:ffff:ffff:fffe,{cc}\n");
        out.write_all(row.as_bytes()).expect("writing the IPv6 rows");
        written += row.len();
    }
    pad(&mut out, BUDGET as usize - written).expect("writing the IPv6 rows");
    Hostile { path, what: "IPv6 rows of 190 prefixes each, padded to the budget", refusal: TOO_MANY_ROWS }
}

/// `#` and spaces up to `bytes` (a comment line, which no parser keeps).
fn pad(out: &mut impl io::Write, bytes: usize) -> io::Result<()> {
    out.write_all(b"#")?;
    let block = [b' '; 1 << 16];
    let mut left = bytes.saturating_sub(1);
    while left > 0 {
        let n = left.min(block.len());
        out.write_all(&block[..n])?;
        left -= n;
    }
    out.flush()
}

/// One line of commas as large as the budget: no newline, and more fields
/// than any format has.
pub fn long_line(dir: &Path) -> Hostile {
    let path = dir.join("line.csv");
    let mut out = io::BufWriter::new(fs::File::create(&path).expect("creating the long line"));
    let block = [b','; 1 << 16];
    for _ in 0..BUDGET as usize / block.len() {
        out.write_all(&block).expect("writing the long line");
    }
    out.flush().expect("writing the long line");
    Hostile { path, what: "one line of commas, no newline, the size of the budget", refusal: "cannot tell the format" }
}

/// An MMDB as large as the budget, one complete tree of 32-bit records
/// whose 67M leaves take turns between two countries: the most networks a
/// database of that size describes, none reached twice.
pub fn complete_mmdb(dir: &Path) -> Hostile {
    let nodes = u32::try_from((BUDGET - 4096) / 8).expect("nodes fit 32 bits");
    let countries = [*b"CN", *b"DE"].map(|cc| country_id(cc).expect("a country"));
    let path = dir.join("complete.mmdb");
    let file = fs::File::create(&path).expect("creating the MMDB");
    mmdb::write_complete(file, nodes, &["country", "iso_code"], &countries).expect("writing the MMDB");
    Hostile { path, what: "MMDB of the budget's size, a complete tree", refusal: TOO_MANY_ROWS }
}

/// An MMDB of 4M networks, each with a record of its own leading to one
/// shared map of `keys` keys and no country: the most time a byte of a
/// source can cost, with `keys` near 32,768 (the reader visits at most
/// 65,536 values, keys and values, per record).
pub fn distinct_records_mmdb(dir: &Path, keys: u16) -> Hostile {
    let path = dir.join("distinct.mmdb");
    let file = fs::File::create(&path).expect("creating the MMDB");
    mmdb::write_distinct(file, MAX_ROWS as u32, keys).expect("writing the MMDB");
    Hostile { path, what: "MMDB of 4M distinct records, each leading to one large map", refusal: "distinct records" }
}

/// A range CSV whose table is as large as a table may be: [`MAX_PREFIXES`]
/// single addresses of each family, of alternating countries
/// ([`MAX_ROWS`] rows in all). Read, not refused.
pub fn largest_table(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let mut out = io::BufWriter::new(fs::File::create(&path).expect("creating the largest table"));
    for i in 0..MAX_PREFIXES {
        let cc = ["CN", "DE"][i % 2];
        // IPv4 as integers, IPv6 as integers past 32 bits.
        writeln!(out, "{i},{i},{cc}\n{v6},{v6},{cc}", v6 = (1u64 << 32) + i as u64).expect("writing the table");
    }
    out.flush().expect("writing the largest table");
    path
}

/// What one `geoblock data inspect` cost. Its peak memory is the kernel's
/// count, which starts from this process's own peak (the child is spawned
/// from it): so every input here is written as it is made, never held.
pub struct Cost {
    /// Exit code (`None`: killed, at [`TIME`] or by a signal).
    pub code: Option<i32>,
    pub stderr: String,
    /// Peak resident memory (the kernel's `ru_maxrss`).
    pub peak_rss: u64,
    pub wall: Duration,
}

impl Cost {
    /// The last line geoblock wrote to stderr: its error.
    pub fn last_line(&self) -> &str {
        self.stderr.trim_end().lines().last().unwrap_or_default()
    }
}

/// Runs `geoblock data inspect SOURCES`, killed at [`TIME`].
pub fn inspect(geoblock: &Path, sources: &[&Path]) -> Cost {
    let started = Instant::now();
    #[expect(clippy::zombie_processes, reason = "reaped below by wait4, which also gives its peak memory")]
    let mut child = Command::new(geoblock)
        .args(["data", "inspect", "--top", "0"])
        .args(sources)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", geoblock.display()));
    let pid = child.id() as libc::pid_t;
    let (status, usage) = loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is valid; wait4 only writes it and status.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: pid is our own child, not yet reaped; both pointers are valid.
        match unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) } {
            0 if started.elapsed() > TIME => {
                let _ = child.kill();
            }
            0 => std::thread::sleep(Duration::from_millis(20)),
            reaped if reaped == pid => break (status, usage),
            _ => panic!("waiting for geoblock: {}", io::Error::last_os_error()),
        }
    };
    let mut stderr = String::new();
    child.stderr.take().expect("stderr piped").read_to_string(&mut stderr).expect("reading geoblock's stderr");
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    Cost { code, stderr, peak_rss: usage.ru_maxrss as u64 * 1024, wall: started.elapsed() }
}
