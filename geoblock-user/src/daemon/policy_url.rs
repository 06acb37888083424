//! `policy_url`: one policy for many hosts. Each daemon downloads the
//! published policy document (the config's `[policy]`, `[[rule]]` and
//! `[lists]` tables, and a `serial`) with a conditional GET every
//! `policy_refresh`, checks it as it checks its own config file (the
//! lock-out guard with this host's management networks included), and
//! applies it in one step. Anything wrong with a download (the server's
//! answer, the signature, the document, the guard) keeps the policy in
//! force and the last good document in the cache.
//!
//! With `policy_key`, the document must carry a minisign signature at
//! `URL.minisig` made with that key: whoever controls the web server
//! cannot then change what a fleet blocks. The serial must never go down,
//! so an old signed document cannot be served again to undo a newer one.
//!
//! ```toml
//! serial = 42
//! [policy]
//! block = ["KP", "AS4134", "list:tor"]
//! [[rule]]
//! name = "ssh"
//! ports = [22]
//! allow = ["DE"]
//! [lists]
//! tor = "https://check.torproject.org/torbulkexitlist"
//! ```

use std::{
    cell::RefCell,
    io::Read as _,
    path::{Path, PathBuf},
    time::Duration,
};

use minisign_verify::{PublicKey, Signature};
use serde::Deserialize;

use super::config::{ordered_lists, PolicyConfig, RuleConfig};
use crate::data::fetch::{FetchConfig, FetchError, Remote};

/// How often the policy URL is asked for changes by default.
pub const DEFAULT_POLICY_REFRESH: Duration = Duration::from_secs(300);
/// A policy document is a few kilobytes; a larger body is a wrong URL.
const MAX_DOCUMENT: u64 = 1 << 20;
/// A minisign signature file is four short lines.
const MAX_SIGNATURE: u64 = 4096;
/// The cache directory's subdirectory the document and its signature are kept in.
const CACHE_SUBDIR: &str = "policy";

/// Where the policy comes from, and how it is checked.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyUrl {
    pub url: String,
    /// A minisign public key (the base64 line of `minisign.pub`): the
    /// document must be signed with it.
    pub key: Option<String>,
    pub refresh: Duration,
    /// The daemon's cache directory (downloads are kept in its `policy/`).
    pub cache_dir: PathBuf,
}

/// The published policy: the config file's policy tables, numbered.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// Raised by the publisher with every change; never lower than the
    /// serial of the policy in force.
    pub serial: u64,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub rule: Vec<RuleConfig>,
    #[serde(default, deserialize_with = "ordered_lists")]
    pub lists: Option<Vec<(String, String)>>,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyUrlError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("policy_key: '{0}' is not a minisign public key (the base64 line of minisign.pub: RW...)")]
    Key(String),
    #[error("{url}: not downloaded yet ({path} is missing)")]
    NotDownloaded { url: String, path: PathBuf },
    #[error("{0}")]
    Refused(String),
}

impl PolicyUrl {
    /// Checks the key now, so that a typo in it fails the config, not the first download.
    pub fn new(
        url: String,
        key: Option<String>,
        refresh: Duration,
        cache_dir: PathBuf,
    ) -> Result<PolicyUrl, PolicyUrlError> {
        if let Some(key) = &key {
            PublicKey::from_base64(key.trim()).map_err(|_| PolicyUrlError::Key(key.clone()))?;
        }
        Ok(PolicyUrl { url, key, refresh, cache_dir })
    }

    /// Downloads the document if it changed; it must verify, parse and
    /// then pass `accept` (the config and guard checks) before it replaces
    /// the last good download. `Ok(None)`: unchanged.
    pub fn fetch<T>(&self, accept: impl Fn(Document) -> Result<T, String>) -> Result<Option<T>, PolicyUrlError> {
        let (document, signature) = self.remotes()?;
        let accepted = RefCell::new(None);
        let fetched = document.refresh_with(|temp| {
            if let Some(signature) = &signature {
                signature.refresh().map_err(|e| format!("the signature: {e}"))?;
            }
            let document = self.verified(temp, signature.as_ref().map(Remote::path))?;
            *accepted.borrow_mut() = Some(accept(document)?);
            Ok(())
        })?;
        Ok(fetched.and(accepted.into_inner()))
    }

    /// The last good download, verified again (the key may have changed since).
    pub fn cached(&self) -> Result<Document, PolicyUrlError> {
        let (document, signature) = self.remotes()?;
        let path = document.path();
        if !path.exists() {
            return Err(PolicyUrlError::NotDownloaded { url: self.url.clone(), path: path.into() });
        }
        self.verified(path, signature.as_ref().map(Remote::path)).map_err(PolicyUrlError::Refused)
    }

    /// The document's remote and, with a key, its signature's.
    fn remotes(&self) -> Result<(Remote, Option<Remote>), PolicyUrlError> {
        let dir = self.cache_dir.join(CACHE_SUBDIR);
        let config = |max_size| FetchConfig {
            attempt_timeout: Duration::from_secs(30),
            retries: 2,
            max_size,
            ..FetchConfig::default()
        };
        let document = Remote::new(&self.url, &dir, config(MAX_DOCUMENT))?;
        let signature = match self.key {
            Some(_) => Some(Remote::new(&signature_url(&self.url), &dir, config(MAX_SIGNATURE))?),
            None => None,
        };
        Ok((document, signature))
    }

    /// The document at `path`, its signature at `signature` checked first.
    fn verified(&self, path: &Path, signature: Option<&Path>) -> Result<Document, String> {
        let bytes = read_bounded(path, MAX_DOCUMENT)?;
        if let (Some(key), Some(signature)) = (&self.key, signature) {
            verify(key, &bytes, &read_bounded(signature, MAX_SIGNATURE)?)
                .map_err(|problem| format!("{}: {problem}", signature_url(&self.url)))?;
        }
        let text = std::str::from_utf8(&bytes).map_err(|e| format!("{}: not UTF-8: {e}", self.url))?;
        parse(text).map_err(|e| format!("{}: {e}", self.url))
    }
}

/// Where a document's minisign signature is published: beside it, with
/// `.minisig` appended to its name (before any query).
pub fn signature_url(url: &str) -> String {
    match url.split_once('?') {
        Some((path, query)) => format!("{path}.minisig?{query}"),
        None => format!("{url}.minisig"),
    }
}

/// Checks `signature` (a `.minisig` file) over `document` with `key`.
fn verify(key: &str, document: &[u8], signature: &[u8]) -> Result<(), String> {
    let key = PublicKey::from_base64(key.trim()).map_err(|e| format!("policy_key: {e:?}"))?;
    let text = std::str::from_utf8(signature).map_err(|_| "the signature is not text".to_string())?;
    let signature = Signature::decode(text).map_err(|e| format!("not a minisign signature ({e:?})"))?;
    key.verify(document, &signature, false)
        .map_err(|e| format!("the signature does not verify with policy_key ({e:?}): refused"))
}

/// A policy document: TOML, with a serial.
pub fn parse(text: &str) -> Result<Document, String> {
    let document: Document = toml::from_str(text).map_err(|e| e.to_string())?;
    if document.serial == 0 {
        return Err("serial must be 1 or more".into());
    }
    Ok(document)
}

/// At most `max` bytes of `path`; more is an error, not a truncation.
fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() as u64 > max {
        return Err(format!("{}: larger than {max} bytes", path.display()));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests;
