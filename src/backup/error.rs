//! The backup module's error type: every variant names the path involved and what was being done.

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub(crate) enum BackupError {
    #[error("{action} {path}: {source}", path = path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// In place of an archive, manifest or listing: a FIFO would block the read forever, a
    /// symlink to `/dev/zero` would never end.
    #[error(
        "{} is not a regular file (a symlink, FIFO, socket or device is never read as an archive \
         or manifest)",
        .0.display()
    )]
    NotRegularFile(PathBuf),
    #[error(
        "invalid backup name {0:?}: use letters, digits, '-', '_' and '.', not starting with '.'"
    )]
    InvalidName(String),
    #[error("{} already exists (archives are named by the second they start)", .0.display())]
    AlreadyExists(PathBuf),
    #[error("reading manifest {path}: {source}", path = path.display())]
    Manifest {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("archive {path} failed verification: {reason}", path = path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("refusing to restore {archive}: entry {entry} {reason}; nothing was changed", archive = archive.display())]
    UnsafeEntry {
        archive: PathBuf,
        entry: String,
        reason: String,
    },
    #[error("{target} is not on a mounted disk ({on} is on the same filesystem as the system): is the disk plugged in and mounted? Nothing was copied there", target = target.display(), on = on.display())]
    NotMounted { target: PathBuf, on: PathBuf },
    #[error(transparent)]
    S3(#[from] crate::s3::S3Error),
}

/// The host module's errors carry the same three facts.
impl From<crate::host::HostError> for BackupError {
    fn from(e: crate::host::HostError) -> Self {
        BackupError::Io {
            action: e.action,
            path: e.path,
            source: e.source,
        }
    }
}

impl BackupError {
    /// True when the destination ran out of space, which callers report differently (prune or
    /// grow the disk) from a broken archive.
    pub(crate) fn is_disk_full(&self) -> bool {
        matches!(self, BackupError::Io { source, .. } if source.raw_os_error() == Some(nix::libc::ENOSPC))
    }
}

pub(crate) fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BackupError {
    let path = path.to_path_buf();
    move |source| BackupError::Io {
        action,
        path,
        source,
    }
}

/// Archive names become file names, so they must not be able to climb out of the destination.
pub(crate) fn check_name(name: &str) -> Result<(), BackupError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(BackupError::InvalidName(name.to_string()))
    }
}
