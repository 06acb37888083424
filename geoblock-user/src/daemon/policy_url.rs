//! `policy_url`: one policy for many hosts. Each daemon downloads the
//! published policy document (the config's `[policy]`, `[[rule]]` and
//! `[lists]` tables, and a `serial`) with a conditional GET every
//! `policy_refresh`, checks it as it checks its own config file (the
//! lock-out guard with this host's management networks included), and
//! applies it in one step.
//!
//! Two copies are kept in the cache directory's `policy/`: `downloaded/`,
//! what the server served last (checked or not), and `in-force/`, the
//! document this host applied last, written only once it is in force. A
//! start and a reload take the one in force, so a refused or unreachable
//! document never costs a host its policy; the timer checks a download
//! whenever it differs from the one in force, and so refuses (and counts)
//! a bad document at every refresh until it is fixed.
//!
//! With `policy_key`, the document must carry a minisign signature at
//! `URL.minisig` made with that key: whoever controls the web server
//! cannot then change what a fleet blocks. The serial never goes down, so
//! an old signed document cannot be served again to undo a newer one.
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
    io::{Read as _, Write as _},
    path::{Path, PathBuf},
    time::Duration,
};

use minisign_verify::{PublicKey, Signature};
use serde::Deserialize;

use super::config::{ordered_lists, PolicyConfig, RuleConfig};
use crate::data::fetch::{self, FetchConfig, FetchError, Remote};

/// How often the policy URL is asked for changes by default.
pub const DEFAULT_POLICY_REFRESH: Duration = Duration::from_secs(300);
/// A policy document is a few kilobytes; a larger body is a wrong URL.
const MAX_DOCUMENT: u64 = 1 << 20;
/// A minisign signature file is four short lines.
const MAX_SIGNATURE: u64 = 4096;
/// Under the cache directory: what the server served last, and what is in force.
const DOWNLOADED: &str = "policy/downloaded";
const IN_FORCE: &str = "policy/in-force";
/// The document's name in `in-force/`.
const IN_FORCE_NAME: &str = "policy.toml";

/// Where the policy comes from, and how it is checked.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyUrl {
    pub url: String,
    /// A minisign public key (the base64 line of `minisign.pub`): the
    /// document must be signed with it.
    pub key: Option<String>,
    pub refresh: Duration,
    /// The daemon's cache directory (the documents are kept in its `policy/`).
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

/// A document as it was served, and what it says.
#[derive(Clone, Debug)]
pub struct Published {
    pub document: Document,
    bytes: Vec<u8>,
    signature: Option<Vec<u8>>,
}

/// Which document a config takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Take {
    /// A start or a reload: the one in force on this host; else (the first
    /// start, or a new `policy_key`) one downloaded now.
    InForce,
    /// What the server serves now (`geoblock config check`).
    Latest,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyUrlError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("policy_key: '{0}' is not a minisign public key (the base64 line of minisign.pub: RW...)")]
    Key(String),
    #[error("{path}: {error}")]
    File { path: PathBuf, error: std::io::Error },
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

    /// The document `take` names, verified and parsed; a download's serial
    /// may not be lower than the one in force.
    pub fn take(&self, take: Take) -> Result<Published, PolicyUrlError> {
        if take == Take::InForce {
            match self.kept() {
                Ok(Some(published)) => return Ok(published),
                Ok(None) => {}
                Err(e) => tracing::warn!("the policy in force: {e}; downloading it"),
            }
        }
        let (document, signature) = self.remotes()?;
        match self.download() {
            Err(e) if document.path().exists() => tracing::warn!("{e}; taking the last download"),
            downloaded => downloaded?,
        }
        let bytes = read_bounded(document.path(), MAX_DOCUMENT)?;
        let published = self.verified(bytes, signature.as_ref().map(Remote::path))?;
        not_older(published.document.serial, self.kept_serial()).map_err(PolicyUrlError::Refused)?;
        Ok(published)
    }

    /// Downloads the document, then its signature, if they changed
    /// (conditional GETs): what the server serves now, not yet checked. A
    /// publisher puts the signature up first.
    pub fn download(&self) -> Result<(), PolicyUrlError> {
        let (document, signature) = self.remotes()?;
        document.refresh()?;
        if let Some(signature) = signature {
            signature.refresh()?;
        }
        Ok(())
    }

    /// The last download, verified and parsed, if it is not the document in
    /// force (`None`: the same bytes).
    pub fn changed(&self) -> Result<Option<Published>, PolicyUrlError> {
        let (document, signature) = self.remotes()?;
        let (bytes, in_force) = (read_bounded(document.path(), MAX_DOCUMENT)?, self.in_force_path());
        if in_force.exists() && bytes == read_bounded(&in_force, MAX_DOCUMENT)? {
            return Ok(None);
        }
        self.verified(bytes, signature.as_ref().map(Remote::path)).map(Some)
    }

    /// Keeps `published` as the document in force on this host: what the
    /// next start and reload take. Nothing is written if it is already.
    pub fn keep(&self, published: &Published) -> Result<(), PolicyUrlError> {
        let path = self.in_force_path();
        if read_bounded(&path, MAX_DOCUMENT).is_ok_and(|kept| kept == published.bytes) {
            return Ok(());
        }
        fetch::private_cache(&self.cache_dir.join(IN_FORCE))?;
        // The signature first: a document beside another's signature fails
        // to verify, and the next start downloads instead.
        let signature = signature_path(&path);
        match &published.signature {
            Some(bytes) => replace(&signature, bytes)?,
            None => drop(std::fs::remove_file(&signature)),
        }
        replace(&path, &published.bytes)
    }

    /// The document in force, verified with the key as configured now;
    /// `None` before the first.
    fn kept(&self) -> Result<Option<Published>, PolicyUrlError> {
        let path = self.in_force_path();
        if !path.exists() {
            return Ok(None);
        }
        self.verified(read_bounded(&path, MAX_DOCUMENT)?, Some(&signature_path(&path))).map(Some)
    }

    /// The serial in force, read without checking the signature (it was
    /// checked when it went into force, in a directory only root can change).
    fn kept_serial(&self) -> Option<u64> {
        let bytes = read_bounded(&self.in_force_path(), MAX_DOCUMENT).ok()?;
        parse(std::str::from_utf8(&bytes).ok()?).ok().map(|published| published.document.serial)
    }

    fn in_force_path(&self) -> PathBuf {
        self.cache_dir.join(IN_FORCE).join(IN_FORCE_NAME)
    }

    /// The download of the document and, with a key, of its signature.
    fn remotes(&self) -> Result<(Remote, Option<Remote>), PolicyUrlError> {
        let dir = self.cache_dir.join(DOWNLOADED);
        // One short attempt: the timer asks again soon, and a start falls
        // back to the policy in force.
        let config = |max_size| FetchConfig {
            connect_timeout: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(20),
            retries: 0,
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

    /// The document `bytes`, its signature at `signature` checked first
    /// when there is a key.
    fn verified(&self, bytes: Vec<u8>, signature: Option<&Path>) -> Result<Published, PolicyUrlError> {
        let refused = |problem: String| PolicyUrlError::Refused(format!("{}: {problem}", self.url));
        let signature = match (&self.key, signature) {
            (Some(key), Some(signature)) => {
                let signed = read_bounded(signature, MAX_SIGNATURE)?;
                verify(key, &bytes, &signed)
                    .map_err(|problem| PolicyUrlError::Refused(format!("{}: {problem}", signature_url(&self.url))))?;
                Some(signed)
            }
            _ => None,
        };
        let text = std::str::from_utf8(&bytes).map_err(|e| refused(format!("not UTF-8: {e}")))?;
        let document = parse(text).map_err(refused)?.document;
        Ok(Published { document, bytes, signature })
    }
}

/// A published document's serial may not be lower than the one in force
/// (`kept`): a signed old policy served again must not undo a newer one.
pub fn not_older(serial: u64, kept: Option<u64>) -> Result<(), String> {
    match kept {
        Some(kept) if serial < kept => {
            Err(format!("serial {serial} is older than the policy in force (serial {kept}): refused"))
        }
        _ => Ok(()),
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

fn signature_path(document: &Path) -> PathBuf {
    let mut name = document.file_name().unwrap_or_default().to_os_string();
    name.push(".minisig");
    document.with_file_name(name)
}

/// Checks `signature` (a `.minisig` file) over `document` with `key`.
fn verify(key: &str, document: &[u8], signature: &[u8]) -> Result<(), String> {
    let key = PublicKey::from_base64(key.trim()).map_err(|e| format!("policy_key: {e:?}"))?;
    let text = std::str::from_utf8(signature).map_err(|_| "the signature is not text".to_string())?;
    let signature = Signature::decode(text).map_err(|e| format!("not a minisign signature ({e:?})"))?;
    key.verify(document, &signature, false)
        .map_err(|e| format!("the signature does not verify with policy_key ({e:?}): refused"))
}

/// A policy document: TOML, with a serial; unsigned as far as this knows.
pub fn parse(text: &str) -> Result<Published, String> {
    let document: Document = toml::from_str(text).map_err(|e| e.to_string())?;
    if document.serial == 0 {
        return Err("serial must be 1 or more".into());
    }
    Ok(Published { document, bytes: text.as_bytes().to_vec(), signature: None })
}

/// At most `max` bytes of `path`; more is an error, not a truncation.
fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, PolicyUrlError> {
    let file_error = |error| PolicyUrlError::File { path: path.into(), error };
    let file = std::fs::File::open(path).map_err(file_error)?;
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes).map_err(file_error)?;
    if bytes.len() as u64 > max {
        return Err(PolicyUrlError::Refused(format!("{}: larger than {max} bytes", path.display())));
    }
    Ok(bytes)
}

/// Writes `bytes` to `path` whole or not at all: a new file beside it,
/// synced, renamed over it.
fn replace(path: &Path, bytes: &[u8]) -> Result<(), PolicyUrlError> {
    let file_error = |error| PolicyUrlError::File { path: path.into(), error };
    let mut temp = path.as_os_str().to_os_string();
    temp.push(".new");
    let mut file = fetch::create_new(Path::new(&temp)).map_err(file_error)?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(file_error)?;
    std::fs::rename(&temp, path).map_err(file_error)
}

#[cfg(test)]
mod tests;
