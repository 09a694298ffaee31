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
//!
//! With recipients (`encrypt_to`), a copy is encrypted with age as it is written
//! (`<archive>.age`, and `<manifest>.age`: file names of a volume are private too); the
//! reference `age` CLI decrypts it with the user's key, which the Pi never holds. What is
//! checked then is that the ciphertext on the target is the one written (hashed while written
//! and read back), and that the plaintext read was the archive its manifest describes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::backup::error::{check_name, io_err, BackupError};
use crate::backup::manifest::{manifest_path, partial_path, write_durably, Manifest};
use crate::backup::retention::{
    list_archives, parse_file_name, prune, select_prune, ArchiveName, RetentionPolicy,
};
pub(super) use crate::backup::verify::open_regular;

/// What one volume's copy did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct CopyReport {
    /// Archives written to the target, with their size.
    pub(crate) copied: Vec<(PathBuf, u64)>,
    /// Archives hard-linked on the target to an earlier copy (the volume was unchanged).
    pub(crate) linked: Vec<PathBuf>,
    /// Copies the target's retention deleted.
    pub(crate) pruned: Vec<PathBuf>,
    /// S3: requests (whole objects or parts) that sent archive bytes.
    pub(crate) parts_sent: usize,
    /// S3: parts an earlier, cut-short upload had already sent, kept as they were.
    pub(crate) parts_kept: usize,
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
    encrypt_to: &[age::x25519::Recipient],
) -> Result<CopyReport, BackupError> {
    check_name(name)?;
    let mut report = CopyReport::default();
    let dir = target.join(name);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(io_err("creating", &dir))?;
    let encrypted = !encrypt_to.is_empty();
    let there: Vec<PathBuf> = if encrypted {
        list_encrypted(target, name)?
            .into_iter()
            .map(|a| a.path)
            .collect()
    } else {
        list_archives(target, name)?
            .into_iter()
            .filter(|a| a.good)
            .map(|a| a.path)
            .collect()
    };
    let on_target = |file: &str| {
        if encrypted {
            dir.join(format!("{file}{AGE_SUFFIX}"))
        } else {
            dir.join(file)
        }
    };
    for archive in list_archives(local, name)?.into_iter().filter(|a| a.good) {
        let file_name = archive
            .path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let to = on_target(&file_name);
        if there.contains(&to) {
            continue;
        }
        let manifest = Manifest::read_for(&archive.path)?;
        let earlier = manifest
            .reused_from
            .as_deref()
            .map(on_target)
            .filter(|p| there.contains(p));
        if let Some(earlier) = earlier {
            link(&earlier, &to)?;
            report.linked.push(to.clone());
        } else if encrypted {
            copy_encrypted(&archive.path, &to, &manifest, encrypt_to)?;
            report.copied.push((to.clone(), manifest.bytes_out));
        } else {
            copy_verified(&archive.path, &to, &manifest)?;
            report.copied.push((to.clone(), manifest.bytes_out));
        }
        if encrypted {
            let sealed = encrypt(&manifest.to_bytes(), encrypt_to)?;
            write_durably(&encrypted_manifest_path(&to), &sealed)?;
        } else {
            write_durably(&manifest_path(&to), &manifest.to_bytes())?;
        }
        crate::host::sync_dir(&dir)?;
    }
    report.pruned = if encrypted {
        prune_encrypted(target, name, policy)?
    } else {
        prune(target, name, policy)?
    };
    Ok(report)
}

/// What an encrypted copy's name ends with.
pub(super) const AGE_SUFFIX: &str = ".age";

/// `<name>-<ts>.tar.gz.age` → `<name>-<ts>.tar.gz.manifest.json.age`.
fn encrypted_manifest_path(copy: &Path) -> PathBuf {
    let plain = copy.with_extension("");
    let mut m = manifest_path(&plain).into_os_string();
    m.push(AGE_SUFFIX);
    PathBuf::from(m)
}

/// Encrypted copies of `name` on a target, oldest first: those whose archive and manifest are
/// both in place (a run killed between the two left an incomplete one, copied again).
pub(crate) fn list_encrypted(target: &Path, name: &str) -> Result<Vec<ArchiveName>, BackupError> {
    check_name(name)?;
    let dir = target.join(name);
    let entries = match fs::read_dir(&dir) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("listing directory", &dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("listing directory", &dir))?;
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some((stamp, base)) = file
            .strip_suffix(AGE_SUFFIX)
            .and_then(|f| parse_file_name(f, name))
        else {
            continue;
        };
        let path = entry.path();
        let complete = entry.file_type().is_ok_and(|t| t.is_file())
            && encrypted_manifest_path(&path).is_file();
        if complete {
            out.push(ArchiveName {
                path,
                timestamp: stamp,
                good: true,
                base,
            });
        }
    }
    out.sort_by_key(|a| a.timestamp);
    Ok(out)
}

/// Retention over encrypted copies: the same rules as for archives.
fn prune_encrypted(
    target: &Path,
    name: &str,
    policy: &RetentionPolicy,
) -> Result<Vec<PathBuf>, BackupError> {
    let copies = list_encrypted(target, name)?;
    let mut deleted = Vec::new();
    for a in select_prune(&copies, SystemTime::now(), policy) {
        crate::host::remove_file(&encrypted_manifest_path(&a.path))?;
        crate::host::remove_file(&a.path)?;
        deleted.push(a.path);
    }
    if !deleted.is_empty() {
        crate::host::sync_dir(&target.join(name))?;
    }
    Ok(deleted)
}

/// age-encrypts `bytes` to the recipients.
pub(super) fn encrypt(bytes: &[u8], to: &[age::x25519::Recipient]) -> Result<Vec<u8>, BackupError> {
    let mut out = Vec::new();
    let mut w = encryptor(to)?
        .wrap_output(&mut out)
        .map_err(|e| encryption_failed(&e.to_string()))?;
    w.write_all(bytes)
        .and_then(|()| w.finish().map(|_| ()))
        .map_err(|e| encryption_failed(&e.to_string()))?;
    Ok(out)
}

fn encryptor(to: &[age::x25519::Recipient]) -> Result<age::Encryptor, BackupError> {
    age::Encryptor::with_recipients(to.iter().map(|r| r as &dyn age::Recipient))
        .map_err(|e| encryption_failed(&e.to_string()))
}

fn encryption_failed(why: &str) -> BackupError {
    BackupError::Corrupt {
        path: PathBuf::from("(age)"),
        reason: format!("encrypting: {why}"),
    }
}

/// A writer that hashes what goes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Encrypts `from` into `to` by way of `to.partial`: the plaintext read must hash to the
/// manifest's sha256, and the ciphertext read back from the target to what was written.
pub(super) fn copy_encrypted(
    from: &Path,
    to: &Path,
    manifest: &Manifest,
    recipients: &[age::x25519::Recipient],
) -> Result<(), BackupError> {
    let partial = partial_path(to);
    let result = (|| {
        let mut src = open_regular(from)?;
        let out = create_private(&partial)?;
        let sealed = Hashing {
            inner: out,
            hash: Sha256::new(),
            bytes: 0,
        };
        let mut w = encryptor(recipients)?
            .wrap_output(sealed)
            .map_err(io_err("writing", &partial))?;
        let (read, total) = copy_hashing(&mut src, &mut w, from, &partial)?;
        let sealed = w.finish().map_err(io_err("writing", &partial))?;
        sealed
            .inner
            .sync_all()
            .map_err(io_err("syncing", &partial))?;
        if read != manifest.sha256 || total != manifest.bytes_out {
            return Err(BackupError::Corrupt {
                path: from.to_path_buf(),
                reason: format!(
                    "{total} bytes with sha256 {read}; its manifest says {} bytes, {}",
                    manifest.bytes_out, manifest.sha256
                ),
            });
        }
        let written = hex::encode(sealed.hash.finalize());
        let (back, size) = hash_file(&partial)?;
        if back != written || size != sealed.bytes {
            return Err(BackupError::Corrupt {
                path: partial.clone(),
                reason: format!(
                    "read back {size} bytes with sha256 {back} from the copy target; wrote {} \
                     bytes, {written}",
                    sealed.bytes
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

/// Decrypts the encrypted copy `copy` (and its manifest) into `into/<name>/` with the
/// identities of an age identity file, checks the archive against its manifest, and returns
/// where the archive now is: ready for `restore_archive`.
pub(crate) fn fetch_encrypted(
    copy: &Path,
    identity_file: &Path,
    into: &Path,
) -> Result<PathBuf, BackupError> {
    let text = fs::read(identity_file).map_err(io_err("reading", identity_file))?;
    let identities = age::IdentityFile::from_buffer(&text[..])
        .map_err(io_err("reading", identity_file))?
        .into_identities()
        .map_err(|e| BackupError::Corrupt {
            path: identity_file.to_path_buf(),
            reason: format!("not an age identity file: {e}"),
        })?;
    let decrypt =
        |from: &Path| -> Result<age::stream::StreamReader<io::BufReader<File>>, BackupError> {
            let f = io::BufReader::new(open_regular(from)?);
            age::Decryptor::new(f)
                .and_then(|d| {
                    d.decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
                })
                .map_err(|e| BackupError::Corrupt {
                    path: from.to_path_buf(),
                    reason: format!("cannot decrypt it with {}: {e}", identity_file.display()),
                })
        };
    let mut manifest_bytes = Vec::new();
    decrypt(&encrypted_manifest_path(copy))?
        .read_to_end(&mut manifest_bytes)
        .map_err(io_err("decrypting", copy))?;
    let manifest: Manifest =
        serde_json::from_slice(&manifest_bytes).map_err(|source| BackupError::Manifest {
            path: encrypted_manifest_path(copy),
            source,
        })?;
    check_name(&manifest.name)?;
    let dir = into.join(&manifest.name);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(io_err("creating", &dir))?;
    // The archive's own name, from its manifest, never a path.
    let archive = dir.join(Path::new(&manifest.archive).file_name().unwrap_or_default());
    let mut plain = decrypt(copy)?;
    let mut out = create_private(&archive)?;
    io::copy(&mut plain, &mut out).map_err(io_err("decrypting", copy))?;
    out.sync_all().map_err(io_err("syncing", &archive))?;
    let (sha, size) = hash_file(&archive)?;
    if sha != manifest.sha256 || size != manifest.bytes_out {
        return Err(BackupError::Corrupt {
            path: copy.to_path_buf(),
            reason: format!(
                "decrypted to {size} bytes with sha256 {sha}; its manifest says {} bytes, {}",
                manifest.bytes_out, manifest.sha256
            ),
        });
    }
    write_durably(&manifest_path(&archive), &manifest_bytes)?;
    Ok(archive)
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
        let mut out = create_private(&partial)?;
        let (read, total) = copy_hashing(&mut src, &mut out, from, &partial)?;
        out.sync_all().map_err(io_err("syncing", &partial))?;
        drop(out);
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

/// Creates (or truncates) a file only root may read, never through a symlink.
pub(super) fn create_private(path: &Path) -> Result<File, BackupError> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_err("creating", path))
}

/// Copies `src` into `dst`, returning the sha256 (hex) and length of what went through.
fn copy_hashing(
    src: &mut impl Read,
    dst: &mut impl Write,
    from: &Path,
    to: &Path,
) -> Result<(String, u64), BackupError> {
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = src.read(&mut buf).map_err(io_err("reading", from))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        dst.write_all(&buf[..n]).map_err(io_err("writing", to))?;
        total += n as u64;
    }
    Ok((hex::encode(hash.finalize()), total))
}

pub(super) fn hash_file(path: &Path) -> Result<(String, u64), BackupError> {
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
        let first = copy_volume(&local, &target, "app", &keep_all(), &[]).unwrap();
        assert_eq!(first.copied.len(), 1);
        let again = copy_volume(&local, &target, "app", &keep_all(), &[]).unwrap();
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
        let resumed = copy_volume(&local, &target, "app", &keep_all(), &[]).unwrap();
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
        let e = copy_volume(&local, &target, "app", &keep_all(), &[]).unwrap_err();
        assert!(matches!(e, BackupError::Corrupt { .. }), "{e}");
        assert_eq!(fs::read_dir(target.join("app")).unwrap().count(), 0);
    }
}
