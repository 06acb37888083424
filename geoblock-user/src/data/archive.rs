//! Files as an operator has them: plain, `.gz`, `.xz`, a `.zip` (MaxMind's
//! download), or a folder (the unpacked zip). Compression is recognised by
//! its magic bytes, not the name, so a renamed file still reads.

use std::{
    io::{Cursor, Read},
    path::Path,
};

use super::{rows::SourceError, Input};

/// Decompressed files larger than this are refused: a corrupt or hostile
/// archive must not exhaust memory (the world's data is ~100 MB as text).
const MAX_SIZE: u64 = 2 << 30;

/// The files of a source, decompressed.
pub(crate) fn open(path: &Path) -> Result<Vec<Input>, SourceError> {
    let origin = path.display().to_string();
    let read_err = |error| SourceError::Read { origin: origin.clone(), error };
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .map_err(read_err)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file() && !is_documentation(&p.to_string_lossy()))
            .collect();
        entries.sort();
        let mut inputs = Vec::new();
        for entry in entries {
            inputs.extend(open(&entry)?);
        }
        return Ok(inputs);
    }
    let bytes = std::fs::read(path).map_err(read_err)?;
    unpack(origin, bytes)
}

/// One file's bytes → the inputs they hold.
pub(crate) fn unpack(origin: String, bytes: Vec<u8>) -> Result<Vec<Input>, SourceError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| SourceError::invalid(&origin, format!("{what}: {e}"));
    if bytes.starts_with(b"\x1f\x8b") {
        let mut out = Vec::new();
        let reader = flate2::read::MultiGzDecoder::new(&bytes[..]);
        limited(reader, &mut out).map_err(|e| bad("corrupt gzip data", &e))?;
        let name = strip(&origin, ".gz");
        return Ok(vec![Input { origin, name, bytes: out }]);
    }
    if bytes.starts_with(b"\xfd7zXZ\x00") {
        let mut out = Capped(Vec::new());
        lzma_rs::xz_decompress(&mut &bytes[..], &mut out).map_err(|e| bad("corrupt xz data", &e))?;
        let out = out.0;
        let name = strip(&origin, ".xz");
        return Ok(vec![Input { origin, name, bytes: out }]);
    }
    if bytes.starts_with(b"PK\x03\x04") {
        return unzip(&origin, bytes);
    }
    let name = origin.clone();
    Ok(vec![Input { origin, name, bytes }])
}

fn limited(reader: impl Read, out: &mut Vec<u8>) -> std::io::Result<()> {
    reader.take(MAX_SIZE + 1).read_to_end(out)?;
    match out.len() as u64 > MAX_SIZE {
        true => Err(std::io::Error::other("larger than 2 GiB unpacked")),
        false => Ok(()),
    }
}

/// A Vec that refuses to grow past [`MAX_SIZE`] (lzma-rs writes, it is not read from).
struct Capped(Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if (self.0.len() + buf.len()) as u64 > MAX_SIZE {
            return Err(std::io::Error::other("larger than 2 GiB unpacked"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every data file of a zip, named `archive.zip/member`.
fn unzip(origin: &str, bytes: Vec<u8>) -> Result<Vec<Input>, SourceError> {
    let bad = |e: &dyn std::fmt::Display| SourceError::invalid(origin, format!("corrupt zip: {e}"));
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| bad(&e))?;
    let mut inputs = Vec::new();
    for i in 0..zip.len() {
        let member = zip.by_index(i).map_err(|e| bad(&e))?;
        let name = member.name().map_err(|e| bad(&e))?.to_string();
        if member.is_dir() || is_documentation(&name) {
            continue;
        }
        let mut out = Vec::new();
        limited(member, &mut out).map_err(|e| bad(&e))?;
        inputs.extend(unpack(format!("{origin}/{name}"), out)?);
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
