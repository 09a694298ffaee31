//! Backups of `/var/vol/<name>` directories: archive, verify, retention, restore.
//!
//! Layout under a destination: `<dest>/<name>/<name>-<YYYYMMDDTHHMMSSZ>.tar.gz` (or `.tar.zst`), beside it
//! `<archive>.manifest.json` (checksum, sizes, counts, changed files) and `<archive>.listing`
//! (the tree's metadata, to recognise an unchanged volume). An archive only ever appears
//! under its final name complete, verified and with its manifest already in place.

mod archive;
mod codec;
mod error;
mod manifest;
mod parallel;
mod restore;
mod retention;
pub mod run;
mod timestamp;
mod verify;
mod walk;

#[cfg(test)]
mod tests;

pub use archive::{archive_dir, ArchiveOptions, ArchiveProgress, ArchiveReport};
pub use codec::Codec;
pub use error::{check_name, BackupError};
pub use manifest::Manifest;
pub use restore::{extract_tar, restore_archive, RestoreOptions, RestoreReport};
pub use retention::{list_archives, prune, select_prune, ArchiveName, RetentionPolicy};
pub use timestamp::Timestamp;
pub use verify::{verify_archive, VerifyReport};
pub use walk::SkippedEntry;
