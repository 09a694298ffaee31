//! Backups of `/var/vol/<name>` directories: archive, verify, retention, restore.
//!
//! Layout under a destination: `<dest>/<name>/<name>-<YYYYMMDDTHHMMSSZ>.tar.gz` (or `.tar.zst`), beside it
//! `<archive>.manifest.json` (checksum, sizes, counts, changed files) and `<archive>.listing`
//! (the tree's metadata, to recognise an unchanged volume). An archive only ever appears
//! under its final name complete, verified and with its manifest already in place.

mod archive;
mod codec;
mod context;
mod copy;
mod error;
mod manifest;
mod parallel;
mod remote;
mod restore;
mod retention;
pub(crate) mod run;
mod timestamp;
mod verify;
mod walk;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod differential_tests;

pub(crate) use archive::{archive_dir, ArchiveOptions, ArchiveProgress, ArchiveReport};
pub(crate) use codec::Codec;
pub(crate) use context::build_context;
pub(crate) use copy::{check_mounted, copy_volume, fetch_encrypted, list_encrypted};
pub(crate) use error::{check_name, BackupError};
pub(crate) use manifest::Manifest;
pub(crate) use remote::{copy_volume_s3, fetch_s3, list_remote, Remote, RemoteArchive};
#[cfg(test)]
pub(crate) use restore::restore_archive;
pub(crate) use restore::{extract_tar, prepare_restores, RestoreOptions, RestoreReport};
pub(crate) use retention::{holds_only_archives, list_archives, prune, RetentionPolicy};
pub(crate) use verify::{verify_archive, verify_bytes};
