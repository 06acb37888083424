//! The library's one error type: what went wrong, and where, in words an
//! operator can act on.

use std::{io, path::PathBuf};

use aya::{maps::MapError, pin::PinError, programs::ProgramError, EbpfError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("loading the XDP program: {0}")]
    Load(#[from] EbpfError),
    #[error("XDP program: {0}")]
    Program(#[from] ProgramError),
    #[error("kernel map: {0}")]
    Map(#[from] MapError),
    #[error("pinning: {0}")]
    Pin(#[from] PinError),
    #[error(
        "the {family} table needs {nodes} distinct trie nodes, more than the {} a trie can name (--lookup lpm holds any table)",
        geoblock_common::TRIE_MAX_NODES
    )]
    TableTooLarge { family: &'static str, nodes: usize },
    #[error("the selector table in force lacks a selector of the policy: load one that holds them first")]
    SelectorsNotLoaded,
    #[error(transparent)]
    Selectors(#[from] crate::policy::selectors::SelectorError),
    #[error("the selectors in use are more than the {max} counter slots", max = geoblock_common::MAX_SELECTORS)]
    TooManySelectors,
    #[error("map {0} is missing from the XDP program")]
    MissingMap(&'static str),
    #[error("permission denied: geoblock needs root (or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON)")]
    Permission,
    #[error("unknown interface '{0}'")]
    UnknownInterface(String),
    #[error("interface {0} already has an XDP program attached (another geoblock run?)")]
    Busy(String),
    #[error("interface {iface}: {mode} XDP is not supported by its driver (try --xdp-mode skb)")]
    ModeUnsupported { iface: String, mode: &'static str },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("no geoblock state at {0}: has `geoblock run` run with this --state-dir?")]
    NoState(PathBuf),
    #[error(
        "{dir} holds maps of layout {found}, this geoblock reads layout {}: use the geoblock that runs there, \
         or restart the daemon with this one",
        geoblock_common::ABI_VERSION
    )]
    OtherAbi { dir: PathBuf, found: u32 },
    #[error("{0} is in use by another geoblock run (stop it, or give this one another --state-dir)")]
    StateInUse(PathBuf),
    #[error("refusing {path} as a state directory, and leaving it as it is: {why}")]
    NotOurState { path: PathBuf, why: NotOurs },
    #[error("{0}: another geoblock run is listening there (give this one another --control-socket)")]
    ControlInUse(PathBuf),
    #[error("{path} is {found}, not a socket: geoblock replaces only a socket there (give another --control-socket)")]
    NotASocket { path: PathBuf, found: &'static str },
    #[error("no geoblock daemon answers at {0}: is `geoblock run` active with this --control-socket?")]
    NoDaemon(PathBuf),
    #[error(transparent)]
    LockedOut(#[from] crate::policy::lockout::LockedOut),
    #[error("the kernel cannot pin XDP attachments (bpf_link needs Linux 5.9 or newer)")]
    NoBpfLink,
    #[error("interface {0}: the kernel has no tcx links (Linux 6.6 or newer) for the program that recognises replies")]
    NoTcx(String),
    #[error(
        "no cgroup v2 hierarchy is mounted (none in /proc/self/mountinfo): mount one, or give --cgroup the cgroup \
         whose processes the outbound rules refuse to connect"
    )]
    NoCgroup2,
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error("refusing the data: {0}")]
    Shrink(#[from] crate::data::shrink::ShrinkError),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}

/// The errno of the first `io::Error` in an error's source chain: aya wraps
/// syscall failures a few layers deep.
pub fn errno(err: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut source = Some(err);
    while let Some(e) = source {
        if let Some(code) = e.downcast_ref::<io::Error>().and_then(|io| io.raw_os_error()) {
            return Some(code);
        }
        source = e.source();
    }
    None
}

/// Why an existing directory is not taken as a state directory.
#[derive(Debug, thiserror::Error)]
pub enum NotOurs {
    #[error(transparent)]
    Untrusted(#[from] crate::trust::Untrusted),
    #[error("it is not on a bpf filesystem")]
    NotBpffs,
    #[error("it holds no ABI pin, so it is not a geoblock state directory")]
    NoAbiPin,
}
