//! Files as an operator has them: plain, `.gz`, `.xz`, a `.zip` (MaxMind's
//! download), or a folder (the unpacked zip). Compression is recognised by
//! its magic bytes, not the name, so a renamed file still reads.

use std::{
    fs::{File, OpenOptions},
    io::{self, Cursor, Read},
    os::unix::fs::OpenOptionsExt as _,
    path::Path,
};

use super::{rows::SourceError, Input};

/// Bytes one source may hold, read and unpacked, over all its files,
/// archive members and compression layers: a hostile or broken source must
/// not exhaust memory. The largest real country files (IP2Location's IPv6
/// CSV, GeoLite2's CSV zip) unpack to well under a tenth of it.
pub const BUDGET: u64 = 512 << 20;

/// What is left of a source's [`BUDGET`].
pub(crate) struct Budget(u64);

impl Default for Budget {
    fn default() -> Self {
        Budget(BUDGET)
    }
}

impl Budget {
    /// Reads `reader` to its end into `out`, charging every byte.
    fn read(&mut self, reader: impl Read, out: &mut Vec<u8>) -> io::Result<()> {
        let before = out.len();
        reader.take(self.0 + 1).read_to_end(out)?;
        self.charge((out.len() - before) as u64)
    }

    fn charge(&mut self, bytes: u64) -> io::Result<()> {
        self.0 = self.0.checked_sub(bytes).ok_or_else(over_budget)?;
        Ok(())
    }
}

fn over_budget() -> io::Error {
    io::Error::other(format!("larger than {} MiB read and unpacked, all its files together", BUDGET >> 20))
}

/// The files of a source, decompressed, within one [`Budget`].
pub(crate) fn open(path: &Path) -> Result<Vec<Input>, SourceError> {
    open_within(path, &mut Budget::default())
}

fn open_within(path: &Path, budget: &mut Budget) -> Result<Vec<Input>, SourceError> {
    let origin = path.display().to_string();
    let read_err = |error| SourceError::Read { origin: origin.clone(), error };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if meta.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .map_err(read_err)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| !is_documentation(&p.to_string_lossy()))
            .collect();
        entries.sort();
        let mut inputs = Vec::new();
        for entry in entries {
            inputs.extend(open_within(&entry, budget)?);
        }
        return Ok(inputs);
    }
    let mut bytes = Vec::new();
    budget.read(open_regular(path, &origin)?, &mut bytes).map_err(read_err)?;
    unpack_within(origin, bytes, budget)
}

/// Opens `path` if it is a regular file. A FIFO would block the reader
/// forever and a device never end: opened without blocking (a FIFO put in
/// place after a check would block the open itself), then checked.
fn open_regular(path: &Path, origin: &str) -> Result<File, SourceError> {
    let read_err = |error| SourceError::Read { origin: origin.to_string(), error };
    let file = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(read_err)?;
    match file.metadata().map_err(read_err)?.is_file() {
        true => Ok(file),
        false => Err(SourceError::invalid(origin, "not a regular file (a FIFO, device or socket is refused)")),
    }
}

/// One file's bytes → the inputs they hold.
#[cfg(test)]
pub(crate) fn unpack(origin: String, bytes: Vec<u8>) -> Result<Vec<Input>, SourceError> {
    unpack_within(origin, bytes, &mut Budget::default())
}

fn unpack_within(origin: String, bytes: Vec<u8>, budget: &mut Budget) -> Result<Vec<Input>, SourceError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| SourceError::invalid(&origin, format!("{what}: {e}"));
    if bytes.starts_with(b"\x1f\x8b") {
        let mut out = Vec::new();
        let reader = flate2::read::MultiGzDecoder::new(&bytes[..]);
        budget.read(reader, &mut out).map_err(|e| bad("gzip data", &e))?;
        let name = strip(&origin, ".gz");
        return Ok(vec![Input { origin, name, bytes: out }]);
    }
    if bytes.starts_with(b"\xfd7zXZ\x00") {
        let mut out = Capped { bytes: Vec::new(), budget };
        lzma_rs::xz_decompress(&mut &bytes[..], &mut out).map_err(|e| bad("xz data", &e))?;
        let name = strip(&origin, ".xz");
        return Ok(vec![Input { origin, name, bytes: out.bytes }]);
    }
    if bytes.starts_with(b"PK\x03\x04") {
        return unzip(&origin, bytes, budget);
    }
    let name = origin.clone();
    Ok(vec![Input { origin, name, bytes }])
}

/// A Vec that grows only within a budget (lzma-rs writes, it is not read from).
struct Capped<'a> {
    bytes: Vec<u8>,
    budget: &'a mut Budget,
}

impl io::Write for Capped<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.budget.charge(buf.len() as u64)?;
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Every data file of a zip, named `archive.zip/member`.
fn unzip(origin: &str, bytes: Vec<u8>, budget: &mut Budget) -> Result<Vec<Input>, SourceError> {
    let bad = |e: &dyn std::fmt::Display| SourceError::invalid(origin, format!("zip: {e}"));
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| bad(&e))?;
    let mut inputs = Vec::new();
    for i in 0..zip.len() {
        let member = zip.by_index(i).map_err(|e| bad(&e))?;
        let name = member.name().map_err(|e| bad(&e))?.to_string();
        if member.is_dir() || is_documentation(&name) {
            continue;
        }
        let mut out = Vec::new();
        budget.read(member, &mut out).map_err(|e| bad(&e))?;
        inputs.extend(unpack_within(format!("{origin}/{name}"), out, budget)?);
    }
    Ok(inputs)
}

fn strip(origin: &str, suffix: &str) -> String {
    origin.strip_suffix(suffix).unwrap_or(origin).to_string()
}

/// Licence and readme files that ship beside the data.
fn is_documentation(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name).to_ascii_uppercase();
    ["LICENSE", "COPYRIGHT", "README", "MD5", "SHA"].iter().any(|p| base.starts_with(p))
        || [".TXT", ".MD", ".PDF", ".HTML"].iter().any(|s| base.ends_with(s))
}
