//! Remote sources: `https://` and `http://` data kept fresh on disk.
//!
//! [`Remote::refresh`] is what a `--refresh DURATION` timer calls: one
//! conditional GET (ETag / Last-Modified from the previous download), with
//! timeouts and retries (exponential backoff with jitter, for network
//! errors, timeouts, 408, 429 and 5xx). The body goes to a temporary file
//! beside the destination, is checked (complete, optionally parsed by the
//! caller's check), and only then renamed over the last good file, so a
//! failed, refused or partial download changes nothing.
//!
//! For the daemon: it is blocking (ureq); from tokio call it in
//! `spawn_blocking`. `Ok(Some(path))` means new data at `path`: load it,
//! run [`super::shrink::check_replacement`], swap. `Ok(None)`: unchanged.
//! `Err`: log it and keep the current table; the file on disk is untouched.
//!
//! HTTPS is rustls, verified against the system's roots
//! (rustls-platform-verifier reads the OS trust store).

use std::{
    fs::{DirBuilder, File, OpenOptions},
    io::{self, Read, Write},
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    time::Duration,
};

use rand::Rng as _;
use ureq::{
    tls::{RootCerts, TlsConfig},
    Agent,
};

use crate::trust::Untrusted;

/// Timeouts, retries and limits of a download.
#[derive(Clone, Debug)]
pub struct FetchConfig {
    /// Connecting (DNS, TCP, TLS).
    pub connect_timeout: Duration,
    /// The whole of one attempt, body included (the world's data is ~100 MB).
    pub attempt_timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
    /// First backoff; doubled each retry, capped at `max_backoff`, plus up to 50 % jitter.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// A larger body is refused (a wrong URL serving something huge).
    pub max_size: u64,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            connect_timeout: Duration::from_secs(15),
            attempt_timeout: Duration::from_secs(300),
            retries: 4,
            backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(120),
            max_size: 1 << 30,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: {error}")]
    Transfer { url: String, error: String },
    #[error("{url}: the body ended after {got} of {want} bytes")]
    Truncated { url: String, got: u64, want: u64 },
    #[error("{url}: the body is larger than {max} bytes")]
    TooLarge { url: String, max: u64 },
    #[error("{url}: the download was refused: {problem}")]
    Refused { url: String, problem: String },
    #[error("{path}: {error}")]
    File { path: PathBuf, error: io::Error },
    #[error("refusing the cache directory {dir}: {problem}; downloads there decide what is blocked, so no other user may change it")]
    CacheDir { dir: PathBuf, problem: Untrusted },
    #[error("'{0}' is not an http:// or https:// URL with a file name")]
    Url(String),
}

impl FetchError {
    /// Worth another attempt: the server or the network may recover.
    fn transient(&self) -> bool {
        match self {
            FetchError::Status { status, .. } => matches!(status, 408 | 429 | 500..=599),
            FetchError::Transfer { .. } | FetchError::Truncated { .. } => true,
            _ => false,
        }
    }
}

/// A URL and the file it is kept in.
pub struct Remote {
    url: String,
    path: PathBuf,
    config: FetchConfig,
    agent: Agent,
}

/// Whether `text` names a remote source.
pub fn is_url(text: &str) -> bool {
    text.starts_with("https://") || text.starts_with("http://")
}

/// `source` as it may be shown beyond root (metrics labels): a URL's
/// password and the values of query parameters that look like secrets
/// (`license_key=`, `token=`...) replaced by `REDACTED`.
pub fn redacted(source: &str) -> String {
    if !is_url(source) {
        return source.to_string();
    }
    let (scheme, rest) = source.split_once("://").unwrap_or(("", source));
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = match authority.rsplit_once('@') {
        Some((_, host)) => format!("REDACTED@{host}"),
        None => authority.to_string(),
    };
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let secret = |name: &str| {
        let name = name.to_ascii_lowercase();
        ["key", "token", "secret", "pass", "auth", "sig", "credential"].iter().any(|s| name.contains(s))
    };
    let params: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|param| match param.split_once('=') {
            Some((name, _)) if secret(name) => format!("{name}=REDACTED"),
            _ => param.to_string(),
        })
        .collect();
    let query = if params.is_empty() { String::new() } else { format!("?{}", params.join("&")) };
    format!("{scheme}://{host}{path}{query}")
}

/// Creates `dir` if missing and checks that only this user can change it;
/// returns it with symlinks resolved.
pub(crate) fn private_cache(dir: &Path) -> Result<PathBuf, FetchError> {
    // At most 0755 whatever the umask: a group-writable one would be refused.
    let created = DirBuilder::new().recursive(true).mode(0o755).create(dir);
    created.map_err(|error| FetchError::File { path: dir.to_path_buf(), error })?;
    crate::trust::private_dir(dir).map_err(|problem| FetchError::CacheDir { dir: dir.into(), problem })
}

/// Where `url` is kept in `dir`: under the URL's file name (which tells its format).
pub fn cache_path(url: &str, dir: &Path) -> Result<PathBuf, FetchError> {
    let name = url.split(['?', '#']).next().and_then(|u| u.rsplit('/').next()).filter(|n| !n.is_empty());
    let name = name.filter(|_| is_url(url)).ok_or_else(|| FetchError::Url(url.to_string()))?;
    Ok(dir.join(name))
}

/// The local file of a source given as a path or a URL. A URL is refreshed
/// into `cache_dir`; if that fails but an earlier download is there, the
/// earlier one is used (with a warning), so a flaky server cannot stop a
/// restart. Without an earlier download the failure is the error.
pub fn local_path(source: &str, cache_dir: &Path, config: FetchConfig) -> Result<PathBuf, FetchError> {
    if !is_url(source) {
        return Ok(PathBuf::from(source));
    }
    let remote = Remote::new(source, cache_dir, config)?;
    match remote.refresh() {
        Ok(_) => Ok(remote.path().to_path_buf()),
        Err(e) if remote.path().exists() => {
            tracing::warn!("{e}; using the earlier download {}", remote.path().display());
            Ok(remote.path().to_path_buf())
        }
        Err(e) => Err(e),
    }
}

impl Remote {
    /// Keeps `url` in `dir` (created if missing), under the URL's file name
    /// (which tells its format). `dir` must be one no other user can change
    /// (see [`crate::trust`]).
    pub fn new(url: &str, dir: &Path, config: FetchConfig) -> Result<Remote, FetchError> {
        let path = cache_path(url, &private_cache(dir)?)?;
        let tls = TlsConfig::builder().root_certs(RootCerts::PlatformVerifier).build();
        let agent = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(config.connect_timeout))
            .timeout_global(Some(config.attempt_timeout))
            .tls_config(tls)
            .build()
            .into();
        Ok(Remote { url: url.to_string(), path, config, agent })
    }

    /// The last good download (it may not exist yet).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Downloads if changed: `Some(path)` when new data is at [`Remote::path`].
    pub fn refresh(&self) -> Result<Option<PathBuf>, FetchError> {
        self.refresh_with(|_| Ok(()))
    }

    /// As [`Remote::refresh`], and `check` must accept the downloaded file
    /// (e.g. parse it) before it replaces the last good one.
    pub fn refresh_with(&self, check: impl Fn(&Path) -> Result<(), String>) -> Result<Option<PathBuf>, FetchError> {
        let mut attempt = 0;
        loop {
            match self.attempt(&check) {
                Err(e) if e.transient() && attempt < self.config.retries => {
                    tracing::warn!("{e}; retrying");
                    std::thread::sleep(self.backoff(attempt));
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.config.backoff.saturating_mul(1 << attempt.min(16)).min(self.config.max_backoff);
        base + base.mul_f64(rand::rng().random_range(0.0..0.5))
    }

    fn attempt(&self, check: &impl Fn(&Path) -> Result<(), String>) -> Result<Option<PathBuf>, FetchError> {
        let transfer = |error: ureq::Error| FetchError::Transfer { url: self.url.clone(), error: error.to_string() };
        let validators = self.path.exists().then(|| Validators::read(&self.validators_path())).flatten();
        let mut request = self.agent.get(&self.url);
        if let Some(v) = &validators {
            if let Some(etag) = &v.etag {
                request = request.header("If-None-Match", etag);
            }
            if let Some(modified) = &v.last_modified {
                request = request.header("If-Modified-Since", modified);
            }
        }
        let mut response = request.call().map_err(transfer)?;
        match response.status().as_u16() {
            304 => return Ok(None),
            200 => {}
            status => return Err(FetchError::Status { url: self.url.clone(), status }),
        }
        let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let fresh = Validators { etag: header("etag"), last_modified: header("last-modified") };
        let length: Option<u64> = header("content-length").and_then(|l| l.parse().ok());
        // ureq's own limit (10 MB by default) would fail as a transfer error and be
        // retried; reading one byte past the maximum says "too large" instead.
        let reader = response.body_mut().with_config().limit(u64::MAX).reader().take(self.config.max_size + 1);
        let temp = self.temp_path();
        let result = self
            .save(reader, &temp, length)
            .and_then(|()| check(&temp).map_err(|problem| FetchError::Refused { url: self.url.clone(), problem }));
        if let Err(e) = result.and_then(|()| self.install(&temp, &fresh)) {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
        Ok(Some(self.path.clone()))
    }

    /// The body into `temp`, complete and synced.
    fn save(&self, mut body: impl Read, temp: &Path, length: Option<u64>) -> Result<(), FetchError> {
        let file_err = |error| FetchError::File { path: temp.to_path_buf(), error };
        let mut file = create_new(temp).map_err(file_err)?;
        let got = io::copy(&mut body, &mut file)
            .map_err(|e| FetchError::Transfer { url: self.url.clone(), error: e.to_string() })?;
        if got > self.config.max_size {
            return Err(FetchError::TooLarge { url: self.url.clone(), max: self.config.max_size });
        }
        if let Some(want) = length.filter(|&want| want != got) {
            return Err(FetchError::Truncated { url: self.url.clone(), got, want });
        }
        file.sync_all().map_err(file_err)
    }

    /// Renames the checked download over the last good file (atomic on one filesystem).
    fn install(&self, temp: &Path, validators: &Validators) -> Result<(), FetchError> {
        std::fs::rename(temp, &self.path).map_err(|error| FetchError::File { path: self.path.clone(), error })?;
        // Validators are only a hint: without them the next refresh just downloads again.
        let _ = validators.write(&self.validators_path());
        Ok(())
    }

    fn temp_path(&self) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".part-{}", std::process::id()));
        self.path.with_file_name(name)
    }

    fn validators_path(&self) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".http");
        self.path.with_file_name(name)
    }
}

/// What the server said identifies this version of the file.
#[derive(Debug, Default, PartialEq, Eq)]
struct Validators {
    etag: Option<String>,
    last_modified: Option<String>,
}

impl Validators {
    fn read(path: &Path) -> Option<Validators> {
        let mut text = String::new();
        OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path).ok()?.read_to_string(&mut text).ok()?;
        let value = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)).map(str::to_string);
        Some(Validators { etag: value("etag: "), last_modified: value("last-modified: ") })
    }

    fn write(&self, path: &Path) -> io::Result<()> {
        let mut text = String::new();
        if let Some(etag) = &self.etag {
            text += &format!("etag: {etag}\n");
        }
        if let Some(modified) = &self.last_modified {
            text += &format!("last-modified: {modified}\n");
        }
        create_new(path)?.write_all(text.as_bytes())
    }
}

/// Creates `path` afresh: whatever is there, a symlink included, is
/// removed (unlinking never follows a symlink) and the new file is created
/// with O_EXCL and O_NOFOLLOW, so nothing planted there is ever written
/// through. In a directory only this user can change (see [`Remote::new`])
/// nothing comes between the two.
pub(crate) fn create_new(path: &Path) -> io::Result<File> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    OpenOptions::new().write(true).create_new(true).custom_flags(libc::O_NOFOLLOW).open(path)
}

#[cfg(test)]
mod tests;
