//! Named address lists: sets of addresses a rule blocks or allows as
//! `list:NAME`, beside countries. Operators name them (`--list tor=URL`,
//! config `[lists]`); each is read into the fewest prefixes for its
//! addresses, per family.
//!
//! | format | files |
//! | --- | --- |
//! | text | one address or CIDR a line, `#` and `;` comments (whole-line or trailing), blank lines, CRLF: Tor's bulk exit list, FireHOL `.netset`/`.ipset`, Spamhaus DROP, X4B, an operator's own file |
//! | [`json`] | AWS `ip-ranges.json`, Google Cloud `cloud.json`: every prefix |
//!
//! Either may be `.gz` or `.xz`, and is told by its content (`{` opens
//! JSON). A bare address is a /32 or /128; host bits set in a CIDR are
//! refused, as in the country data. Entries may overlap or repeat: a list is
//! a set. A list that names no address is refused as broken data, and the
//! same byte budget ([`super::BUDGET`]) and record cap ([`super::MAX_ROWS`])
//! hold as for a country source.

mod json;

use std::{net::IpAddr, path::Path, time::SystemTime};

use geoblock_common::CountryId;
use ipnetwork::{Ipv4Network, Ipv6Network};

use super::{
    archive,
    rows::{network, show, Loc, Rows, SourceError},
    table::{PerFamily, Table},
};

/// How a rule names a list: `list:tor`.
pub const SELECTOR_PREFIX: &str = "list:";

/// Bytes a list name may have: `list:` and the name fit a counter's name
/// in the kernel (with its NUL).
pub const MAX_NAME: usize = geoblock_common::SELECTOR_NAME_LEN - 1 - SELECTOR_PREFIX.len();

/// The one label every address of a list carries while the table machinery
/// merges its entries: a list is a set, so overlapping entries agree.
const MEMBER: CountryId = 1;

/// A named set of addresses, as the fewest prefixes per family.
#[derive(Clone, Debug, PartialEq)]
pub struct AddressList {
    /// The operator's: 1 to [`MAX_NAME`] bytes of `a-z`, `0-9`, `_`, `-`.
    pub name: String,
    /// Sorted, disjoint, merged: the fewest prefixes for the same addresses.
    pub v4: Vec<Ipv4Network>,
    pub v6: Vec<Ipv6Network>,
    pub info: ListInfo,
}

/// Where a list came from and what it held.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ListInfo {
    /// The path or URL as the operator gave it.
    pub origin: String,
    pub format: ListFormat,
    /// Entries read (addresses, CIDRs, JSON prefixes), per family, before merging.
    pub entries: PerFamily<usize>,
    /// When the file was written (downloaded, for a URL).
    pub modified: Option<SystemTime>,
}

/// How a list is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ListFormat {
    /// One address or CIDR a line.
    #[default]
    Text,
    /// AWS `ip-ranges.json`.
    AwsJson,
    /// Google Cloud `cloud.json` (or `goog.json`).
    GcpJson,
}

impl std::fmt::Display for ListFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ListFormat::Text => "text",
            ListFormat::AwsJson => "aws-json",
            ListFormat::GcpJson => "gcp-json",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("list name '{name}': {problem}")]
    Name { name: String, problem: String },
    #[error("--list '{0}': not NAME=PATH or NAME=URL")]
    Spec(String),
    #[error("list {name}: {error}")]
    Source { name: String, error: SourceError },
}

impl AddressList {
    /// Whether `ip` is in the list.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => holds(&self.v4, |n| (n.network(), n.broadcast()), a),
            IpAddr::V6(a) => holds(&self.v6, |n| (n.network(), n.broadcast()), a),
        }
    }

    /// The addresses the list covers, per family (f64: a v6 list may cover 2^128).
    pub fn addresses(&self) -> PerFamily<f64> {
        let size = |bits: u8, prefix: u8| 2f64.powi(i32::from(bits - prefix));
        PerFamily {
            v4: self.v4.iter().map(|n| size(32, n.prefix())).sum(),
            v6: self.v6.iter().map(|n| size(128, n.prefix())).sum(),
        }
    }
}

/// Whether sorted disjoint `nets` hold `ip`: the last starting at or before it.
fn holds<N: Copy, A: Ord + Copy>(nets: &[N], span: impl Fn(N) -> (A, A), ip: A) -> bool {
    let after = nets.partition_point(|&n| span(n).0 <= ip);
    after > 0 && span(nets[after - 1]).1 >= ip
}

/// `name` if it may name a list.
pub fn check_name(name: &str) -> Result<&str, ListError> {
    let bad = |problem: &str| Err(ListError::Name { name: show(name.as_bytes()), problem: problem.to_string() });
    if name.is_empty() || name.len() > MAX_NAME {
        return bad(&format!("a list name has 1 to {MAX_NAME} characters"));
    }
    match name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-') {
        true => Ok(name),
        false => bad("a list name has only a-z, 0-9, _ and -"),
    }
}

/// `--list NAME=PATH` or `NAME=URL`: the name (checked) and the source.
pub fn parse_spec(spec: &str) -> Result<(String, String), ListError> {
    match spec.split_once('=') {
        Some((name, source)) if !source.is_empty() => Ok((check_name(name)?.to_string(), source.to_string())),
        _ => Err(ListError::Spec(spec.to_string())),
    }
}

/// Reads the list `name` from `path` (a local file; a URL's download),
/// naming it `origin` as the operator gave it.
pub fn load(name: &str, path: &Path, origin: &str) -> Result<AddressList, ListError> {
    let named = |error| ListError::Source { name: name.to_string(), error };
    check_name(name)?;
    // Before reading: a write during the read shows as a later change.
    let modified = super::modified(path);
    let inputs = archive::open(path).map_err(named)?;
    let mut rows = Rows::default();
    let mut format = None;
    for input in inputs {
        // Named as the operator gave it (a URL, not its download).
        let index = rows.origin(&input.origin.replacen(&path.display().to_string(), origin, 1));
        let body = input.bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&input.bytes);
        let found = match body.trim_ascii_start().starts_with(b"{") {
            true => json::parse_into(&mut rows, body, index),
            false => parse_text(&mut rows, &input.bytes, index).map(|()| ListFormat::Text),
        };
        format = format.or(Some(found.map_err(named)?));
    }
    let (v4, v6) = rows.counts();
    if v4 + v6 == 0 {
        return Err(named(SourceError::invalid(origin, "names no address (a list that names nothing is broken)")));
    }
    let Table { v4: nets4, v6: nets6 } = rows.into_table().map_err(named)?;
    Ok(AddressList {
        name: name.to_string(),
        v4: nets4.into_iter().map(|(n, _)| n).collect(),
        v6: nets6.into_iter().map(|(n, _)| n).collect(),
        info: ListInfo {
            origin: origin.to_string(),
            format: format.unwrap_or(ListFormat::Text),
            entries: PerFamily { v4, v6 },
            modified,
        },
    })
}

/// One address or CIDR a line; `#` and `;` start a comment anywhere
/// (Spamhaus DROP: `1.10.16.0/20 ; SBL256894`).
fn parse_text(rows: &mut Rows, bytes: &[u8], origin: usize) -> Result<(), SourceError> {
    rows.each_line(bytes, origin, |rows, line, text| {
        let entry = text.split(|&b| b == b'#' || b == b';').next().unwrap_or_default();
        let mut fields = entry.split(u8::is_ascii_whitespace).filter(|f| !f.is_empty());
        let Some(address) = fields.next() else {
            return Ok(());
        };
        if let Some(extra) = fields.next() {
            let problem = format!("followed by '{}' (a line is one address or CIDR, then a comment)", show(extra));
            return Err(("address", problem));
        }
        let net = network(address).map_err(|p| ("address", p))?;
        rows.push_net(Loc::new(origin, line), net, MEMBER);
        Ok(())
    })
}

#[cfg(test)]
mod tests;
