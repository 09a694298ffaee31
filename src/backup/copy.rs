//! Off-device copies: each verified archive and its manifest, copied to a directory on a mounted
//! disk (a USB disk, a NAS share) and laid out like the local destination
//! (`<target>/<name>/<name>-<ts>.tar.gz`), so that listing, verifying, retention and restore
//! work on a copy exactly as on the original — the path back when the SD card dies.
//!
//! A copy is written as `.partial`, hashed while it is written, fsynced, read back from the
//! target and hashed again, and only then renamed into place; its manifest goes in after it,
//! so an archive without one (a run killed in between) is not "good" and is copied again. An
//! archive that is a hard link to an earlier one (an unchanged volume) is linked on the target
//! too. Nothing here writes to the local destination.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::backup::error::{check_name, io_err, BackupError};
use crate::backup::manifest::{manifest_path, partial_path, write_durably, Manifest};
use crate::backup::retention::{list_archives, prune, RetentionPolicy};

/// What one volume's copy did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct CopyReport {
    /// Archives written to the target, with their size.
    pub(crate) copied: Vec<(PathBuf, u64)>,
    /// Archives hard-linked on the target to an earlier copy (the volume was unchanged).
    pub(crate) linked: Vec<PathBuf>,
    /// Copies the target's retention deleted.
    pub(crate) pruned: Vec<PathBuf>,
}

/// Refuses a target that is not on a mounted disk: the nearest existing directory on the way
/// to `target` must be on another filesystem than `root`. A disk that is not plugged in
/// leaves an empty mount point on the SD card, and copies written there would fill it.
pub(crate) fn check_mounted(target: &Path, root: &Path) -> Result<(), BackupError> {
    let root_dev = fs::metadata(root).map_err(io_err("reading", root))?.dev();
    let existing = target
        .ancestors()
        .find(|a| a.exists())
        .unwrap_or(Path::new("/"));
    let dev = fs::metadata(existing)
        .map_err(io_err("reading", existing))?
        .dev();
    if dev == root_dev {
        return Err(BackupError::NotMounted {
            target: target.to_path_buf(),
            on: existing.to_path_buf(),
        });
    }
    Ok(())
}

/// Copies every good archive of `name` under `local` that `target` does not hold yet (oldest
/// first), then applies `policy` to the copies. A failure leaves the local archives as they
/// were and what was already copied in place; the next run carries on.
pub(crate) fn copy_volume(
    local: &Path,
    target: &Path,
    name: &str,
    policy: &RetentionPolicy,
) -> Result<CopyReport, BackupError> {
    check_name(name)?;
    let mut report = CopyReport::default();
    let dir = target.join(name);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(io_err("creating", &dir))?;
    let there: Vec<PathBuf> = list_archives(target, name)?
        .into_iter()
        .filter(|a| a.good)
        .map(|a| a.path)
        .collect();
    for archive in list_archives(local, name)?.into_iter().filter(|a| a.good) {
        let file_name = archive.path.file_name().unwrap_or_default();
        let to = dir.join(file_name);
        if there.contains(&to) {
            continue;
        }
        let manifest = Manifest::read_for(&archive.path)?;
        let earlier = manifest
            .reused_from
            .as_deref()
            .map(|f| dir.join(f))
            .filter(|p| there.contains(p));
        if let Some(earlier) = earlier {
            link(&earlier, &to)?;
            report.linked.push(to.clone());
        } else {
            copy_verified(&archive.path, &to, &manifest)?;
            report.copied.push((to.clone(), manifest.bytes_out));
        }
        write_durably(&manifest_path(&to), &manifest.to_bytes())?;
        crate::host::sync_dir(&dir)?;
    }
    report.pruned = prune(target, name, policy)?;
    Ok(report)
}

/// Hard-links `to` to `earlier` through a temporary name, so `to` appears complete or not at
/// all.
fn link(earlier: &Path, to: &Path) -> Result<(), BackupError> {
    let partial = partial_path(to);
    let _ = fs::remove_file(&partial);
    fs::hard_link(earlier, &partial).map_err(io_err("linking", &partial))?;
    fs::rename(&partial, to).map_err(io_err("renaming", &partial))
}

/// Copies `from` to `to` by way of `to.partial`: the bytes read must hash to the manifest's
/// sha256, and so must the file read back from the target after fsync.
fn copy_verified(from: &Path, to: &Path, manifest: &Manifest) -> Result<(), BackupError> {
    let partial = partial_path(to);
    let result = (|| {
        let mut src = open_regular(from)?;
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&partial)
            .map_err(io_err("creating", &partial))?;
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = src.read(&mut buf).map_err(io_err("reading", from))?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(io_err("writing", &partial))?;
            total += n as u64;
        }
        out.sync_all().map_err(io_err("syncing", &partial))?;
        drop(out);
        let read = hex::encode(hash.finalize());
        if read != manifest.sha256 || total != manifest.bytes_out {
            return Err(BackupError::Corrupt {
                path: from.to_path_buf(),
                reason: format!(
                    "{total} bytes with sha256 {read}; its manifest says {} bytes, {}",
                    manifest.bytes_out, manifest.sha256
                ),
            });
        }
        let (written, size) = hash_file(&partial)?;
        if written != manifest.sha256 || size != manifest.bytes_out {
            return Err(BackupError::Corrupt {
                path: partial.clone(),
                reason: format!(
                    "read back {size} bytes with sha256 {written} from the copy target; expected \
                     {} bytes, {}",
                    manifest.bytes_out, manifest.sha256
                ),
            });
        }
        fs::rename(&partial, to).map_err(io_err("renaming", &partial))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&partial);
    }
    result
}

/// Opens a file to read only if it is a regular file (not a symlink, FIFO or device, which
/// could hang the read or lead elsewhere).
fn open_regular(path: &Path) -> Result<File, BackupError> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(io_err("opening", path))?;
    let meta = f.metadata().map_err(io_err("reading", path))?;
    if !meta.is_file() {
        return Err(io_err("opening", path)(io::Error::other(
            "not a regular file",
        )));
    }
    Ok(f)
}

fn hash_file(path: &Path) -> Result<(String, u64), BackupError> {
    let mut f = open_regular(path)?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io_err("reading", path))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex::encode(hash.finalize()), total))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use super::copy_volume;
    use crate::backup::{archive_dir, list_archives, ArchiveOptions, BackupError, RetentionPolicy};

    fn keep_all() -> RetentionPolicy {
        RetentionPolicy {
            keep_last: 100,
            ..RetentionPolicy::default()
        }
    }

    fn backed_up(tmp: &Path) -> std::path::PathBuf {
        let src = tmp.join("vol/app");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("a.txt"), "hello\n").unwrap();
        let local = tmp.join("local");
        archive_dir(&src, &local, "app", &ArchiveOptions::default()).unwrap();
        local
    }

    #[test]
    fn a_copy_is_made_once_and_a_killed_one_is_finished_by_the_next_run() {
        let tmp = tempfile::tempdir().unwrap();
        let local = backed_up(tmp.path());
        let target = tmp.path().join("usb");
        let first = copy_volume(&local, &target, "app", &keep_all()).unwrap();
        assert_eq!(first.copied.len(), 1);
        let again = copy_volume(&local, &target, "app", &keep_all()).unwrap();
        assert!(
            again.copied.is_empty() && again.linked.is_empty(),
            "{again:?}"
        );

        // What a SIGKILL mid-copy leaves: a partial file, and an archive without its manifest.
        let copy = &list_archives(&target, "app").unwrap()[0].path;
        let manifest = copy.with_file_name(format!(
            "{}.manifest.json",
            copy.file_name().unwrap().to_string_lossy()
        ));
        fs::remove_file(&manifest).unwrap();
        fs::write(copy, b"cut sho").unwrap();
        let partial = copy.with_file_name(format!(
            "{}.partial",
            copy.file_name().unwrap().to_string_lossy()
        ));
        fs::write(&partial, b"junk").unwrap();
        let resumed = copy_volume(&local, &target, "app", &keep_all()).unwrap();
        assert_eq!(resumed.copied.len(), 1);
        assert!(!partial.exists());
        assert!(list_archives(&target, "app").unwrap()[0].good);
        crate::backup::verify_archive(copy).unwrap();
    }

    #[test]
    fn a_local_archive_that_does_not_match_its_manifest_is_not_copied() {
        let tmp = tempfile::tempdir().unwrap();
        let local = backed_up(tmp.path());
        let archive = &list_archives(&local, "app").unwrap()[0].path;
        let mut bytes = fs::read(archive).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(archive, bytes).unwrap();
        let target = tmp.path().join("usb");
        let e = copy_volume(&local, &target, "app", &keep_all()).unwrap_err();
        assert!(matches!(e, BackupError::Corrupt { .. }), "{e}");
        assert_eq!(fs::read_dir(target.join("app")).unwrap().count(), 0);
    }
}
