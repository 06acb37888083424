//! The embedded default data set (DB-IP Lite country, CC BY 4.0) and its
//! packed format.
//!
//! A table is stored as its maximal same-country ranges ([`Table::ranges`]),
//! which rebuild exactly the same prefixes. Layout, all integers LEB128:
//!
//! ```text
//! "GEOBLOCK" format(u8=1) attribution name version   (strings: length, UTF-8)
//! zlib( v4 block, v6 block )
//! block = count, count × gap, count × (size - 1), count × country slot
//! ```
//!
//! `gap` is the distance from the end of the previous range (+1) to the
//! start, so sorted, disjoint ranges are all that can be written. The columns
//! are kept apart because each is repetitive on its own (gaps are mostly 0,
//! sizes powers of two, countries few), which is what deflate exploits.

use std::{
    fmt,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, Ipv6Addr},
};

use flate2::{read::ZlibDecoder, write::ZlibEncoder, Compression};
use geoblock_common::{country_code, CountryId};

use crate::data::table::{Range, Ranges, Table, TableError};

/// The packed DB-IP Lite data compiled into the binary.
pub static EMBEDDED: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/data/dbip-country.bin"));

const MAGIC: &[u8] = b"GEOBLOCK";
const FORMAT: u8 = 1;

/// Where a data set comes from, for `--version` and the attribution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    /// The credit the licence asks for, e.g. "IP Geolocation by DB-IP".
    pub attribution: String,
    /// The source package, e.g. "dbip-country".
    pub name: String,
    /// The data's release, e.g. "2026-06".
    pub version: String,
}

impl fmt::Display for Meta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} {})", self.attribution, self.name, self.version)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("not a geoblock data file")]
    Magic,
    #[error("data file format {0} is not supported (this geoblock reads format {FORMAT})")]
    Format(u8),
    #[error("corrupt data file: {0}")]
    Corrupt(&'static str),
    #[error("corrupt data file: {0}")]
    Inflate(#[from] std::io::Error),
    #[error("corrupt data file: {0}")]
    Table(#[from] TableError),
}

/// The embedded table.
pub fn embedded() -> Result<Table, EmbeddedError> {
    unpack(EMBEDDED)
}

/// The embedded data's origin, without decoding the table.
pub fn embedded_meta() -> Result<Meta, EmbeddedError> {
    Ok(read_header(EMBEDDED)?.0)
}

/// Packs a table; [`unpack`] gives back the same table.
pub fn pack(meta: &Meta, table: &Table) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.push(FORMAT);
    for text in [&meta.attribution, &meta.name, &meta.version] {
        put(&mut out, text.len() as u128);
        out.extend_from_slice(text.as_bytes());
    }
    let ranges = table.ranges();
    let mut body = Vec::new();
    put_block(&mut body, &ranges.v4, |a| u32::from(a).into());
    put_block(&mut body, &ranges.v6, u128::from);
    let mut z = ZlibEncoder::new(out, Compression::best());
    z.write_all(&body).and_then(|()| z.finish()).expect("writing to a Vec cannot fail")
}

/// The table of a packed data set.
pub fn unpack(bytes: &[u8]) -> Result<Table, EmbeddedError> {
    let (_, body) = read_header(bytes)?;
    let mut raw = Vec::new();
    ZlibDecoder::new(body).read_to_end(&mut raw)?;
    let mut cursor = Cursor(&raw);
    let v4 = cursor.block(u32::MAX.into(), |n| Ipv4Addr::from(n as u32))?;
    let v6 = cursor.block(u128::MAX, Ipv6Addr::from)?;
    if !cursor.0.is_empty() {
        return Err(EmbeddedError::Corrupt("trailing bytes"));
    }
    Ok(Table::from_ranges(Ranges { v4, v6 })?)
}

/// The metadata and the compressed rest.
fn read_header(bytes: &[u8]) -> Result<(Meta, &[u8]), EmbeddedError> {
    let rest = bytes.strip_prefix(MAGIC).ok_or(EmbeddedError::Magic)?;
    let (&format, rest) = rest.split_first().ok_or(EmbeddedError::Magic)?;
    if format != FORMAT {
        return Err(EmbeddedError::Format(format));
    }
    let mut cursor = Cursor(rest);
    let meta = Meta { attribution: cursor.text()?, name: cursor.text()?, version: cursor.text()? };
    Ok((meta, cursor.0))
}

/// Sorted disjoint ranges, column by column.
fn put_block<A: Copy>(out: &mut Vec<u8>, ranges: &[Range<A>], int: impl Fn(A) -> u128) {
    put(out, ranges.len() as u128);
    let mut next = 0u128;
    for r in ranges {
        put(out, int(r.start) - next);
        next = int(r.end).wrapping_add(1);
    }
    for r in ranges {
        put(out, int(r.end) - int(r.start));
    }
    for r in ranges {
        put(out, r.country.into());
    }
}

/// LEB128: 7 bits a byte, low first, high bit = more follows.
fn put(out: &mut Vec<u8>, mut n: u128) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn int(&mut self) -> Result<u128, EmbeddedError> {
        let mut n = 0u128;
        for shift in (0..128).step_by(7) {
            let (&b, rest) = self.0.split_first().ok_or(EmbeddedError::Corrupt("truncated"))?;
            self.0 = rest;
            let bits = u128::from(b & 0x7f);
            if (bits << shift) >> shift != bits {
                break;
            }
            n |= bits << shift;
            if b < 0x80 {
                return Ok(n);
            }
        }
        Err(EmbeddedError::Corrupt("integer too large"))
    }

    fn text(&mut self) -> Result<String, EmbeddedError> {
        let len = usize::try_from(self.int()?).map_err(|_| EmbeddedError::Corrupt("truncated"))?;
        if len > self.0.len() {
            return Err(EmbeddedError::Corrupt("truncated"));
        }
        let (text, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8(text.to_vec()).map_err(|_| EmbeddedError::Corrupt("text is not UTF-8"))
    }

    fn column(&mut self, n: usize) -> Result<Vec<u128>, EmbeddedError> {
        (0..n).map(|_| self.int()).collect()
    }

    /// A block of sorted, disjoint ranges within `0..=max`.
    fn block<A>(&mut self, max: u128, addr: impl Fn(u128) -> A) -> Result<Vec<Range<A>>, EmbeddedError> {
        let n = usize::try_from(self.int()?)
            .ok()
            .filter(|&n| n <= self.0.len() / 3) // three bytes a range at least: bounds the allocations
            .ok_or(EmbeddedError::Corrupt("range count too large"))?;
        let (gaps, sizes, countries) = (self.column(n)?, self.column(n)?, self.column(n)?);
        let beyond = EmbeddedError::Corrupt("range beyond the address space");
        let mut next = Some(0u128);
        let mut ranges = Vec::with_capacity(n);
        for ((gap, size), country) in gaps.into_iter().zip(sizes).zip(countries) {
            let start = next.and_then(|at| at.checked_add(gap)).filter(|&s| s <= max);
            let end = start.and_then(|s| s.checked_add(size)).filter(|&e| e <= max);
            let (Some(start), Some(end)) = (start, end) else { return Err(beyond) };
            next = end.checked_add(1);
            let country = CountryId::try_from(country).ok().filter(|&c| country_code(c).is_some());
            let country = country.ok_or(EmbeddedError::Corrupt("unknown country"))?;
            ranges.push(Range { start: addr(start), end: addr(end), country });
        }
        Ok(ranges)
    }
}

#[cfg(test)]
mod tests;
