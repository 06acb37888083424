//! Directories that what geoblock enforces depends on (the state directory,
//! the download cache) must be changeable by the user geoblock runs as
//! (root) alone: another user who could write one could remove a pin, which
//! detaches the program, or swap a download, which rewrites the table.

use std::{
    fs, io,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

/// Why a directory is not trusted.
#[derive(Debug, thiserror::Error)]
pub enum Untrusted {
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("{path} belongs to uid {owner}: only root (or the user geoblock runs as) may own it")]
    Owner { path: PathBuf, owner: u32 },
    #[error("{path} is writable by other users (mode {mode:04o})")]
    Writable { path: PathBuf, mode: u32 },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Checks that only this process's user can change `dir`: a directory it
/// owns, which nobody else can write, below directories that belong to root
/// or to it and that others cannot write either, unless sticky (as /tmp and
/// /sys/fs/bpf are: there nobody renames what is not theirs). Returns `dir`
/// with symlinks resolved, the path to use from then on: a symlink on the
/// way may sit in a directory others can change.
pub fn private_dir(dir: &Path) -> Result<PathBuf, Untrusted> {
    let real = fs::canonicalize(dir).map_err(io(dir))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    for (depth, path) in real.ancestors().enumerate() {
        let meta = fs::metadata(path).map_err(io(path))?;
        if !meta.is_dir() {
            return Err(Untrusted::NotADirectory(path.into()));
        }
        judge(path, Stat { owner: meta.uid(), mode: meta.mode() }, depth > 0, euid)?;
    }
    Ok(real)
}

fn io(path: &Path) -> impl FnOnce(io::Error) -> Untrusted + '_ {
    move |source| Untrusted::Io { path: path.into(), source }
}

/// What [`judge`] looks at.
#[derive(Clone, Copy)]
struct Stat {
    owner: u32,
    mode: u32,
}

/// Whether `path` (the directory itself, or one `above` it) is safe from
/// every user but `euid` and root.
fn judge(path: &Path, stat: Stat, above: bool, euid: u32) -> Result<(), Untrusted> {
    if stat.owner != euid && !(above && stat.owner == 0) {
        return Err(Untrusted::Owner { path: path.into(), owner: stat.owner });
    }
    let others_write = stat.mode & 0o022 != 0;
    let sticky = stat.mode & libc::S_ISVTX != 0;
    if others_write && !(above && sticky) {
        return Err(Untrusted::Writable { path: path.into(), mode: stat.mode & 0o7777 });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(owner: u32, mode: u32, above: bool) -> Result<(), String> {
        judge(Path::new("/d"), Stat { owner, mode }, above, 0).map_err(|e| e.to_string())
    }

    #[test]
    fn the_directory_is_ours_and_nobody_elses_to_write() {
        assert_eq!(verdict(0, 0o40700, false), Ok(()));
        assert_eq!(verdict(0, 0o40755, false), Ok(()));
        assert_eq!(
            verdict(1000, 0o40700, false),
            Err("/d belongs to uid 1000: only root (or the user geoblock runs as) may own it".into())
        );
        assert_eq!(verdict(0, 0o40775, false), Err("/d is writable by other users (mode 0775)".into()));
        assert_eq!(verdict(0, 0o40757, false), Err("/d is writable by other users (mode 0757)".into()));
        // Sticky or not: others could put files into the directory itself.
        assert_eq!(verdict(0, 0o41777, false), Err("/d is writable by other users (mode 1777)".into()));
    }

    #[test]
    fn directories_above_may_be_roots_and_sticky() {
        assert_eq!(verdict(0, 0o41777, true), Ok(()));
        assert_eq!(verdict(0, 0o40555, true), Ok(()));
        assert!(verdict(0, 0o40777, true).is_err(), "others could rename what is below");
        assert!(verdict(1000, 0o40755, true).is_err(), "its owner could rename what is below");
    }

    #[test]
    fn another_user_geoblock_runs_as_owns_its_own() {
        let stat = Stat { owner: 1000, mode: 0o40700 };
        assert!(judge(Path::new("/d"), stat, false, 1000).is_ok());
        assert!(judge(Path::new("/d"), Stat { owner: 0, ..stat }, true, 1000).is_ok(), "root's, above");
        assert!(judge(Path::new("/d"), Stat { owner: 0, ..stat }, false, 1000).is_err(), "root's, the directory");
    }

    #[test]
    fn a_symlink_is_resolved_and_a_file_refused() {
        let dir = std::env::temp_dir().join(format!("geoblock-trust-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("real")).unwrap();
        fs::set_permissions(dir.join("real"), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(dir.join("real"), dir.join("link")).unwrap();
        fs::write(dir.join("file"), "").unwrap();
        assert_eq!(private_dir(&dir.join("link")).unwrap(), fs::canonicalize(dir.join("real")).unwrap());
        assert!(matches!(private_dir(&dir.join("file")), Err(Untrusted::NotADirectory(_))));
        assert!(matches!(private_dir(&dir.join("none")), Err(Untrusted::Io { .. })));
        fs::remove_dir_all(&dir).unwrap();
    }
}
