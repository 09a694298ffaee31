//! Off-device copies in a bucket of an S3-compatible object store, laid out like a directory
//! target: `<prefix><name>/<name>-<ts>.tar.gz` and its `.manifest.json` (with `.age` after
//! both when encrypted), so listing, retention and restore work as they do on a disk.
//!
//! Each archive the bucket lacks is uploaded after its local verification: in one request up
//! to the part size, else as a multipart upload (8 MiB parts). An upload cut short (network,
//! power, a killed run) stays on the server as an unfinished multipart upload; the next run
//! finds it (ListMultipartUploads), keeps every part whose ETag is the MD5 of the bytes it
//! should hold (ListParts), sends the rest and completes it. The bytes read are hashed on the
//! way: they must match the manifest's sha256 before the upload is completed. The object is
//! then checked (HEAD: its size, and the sha256 stored with it as `x-amz-meta-sha256`, or its
//! ETag where the server did not keep that), and only then does the manifest go up: its
//! presence means "complete", as on a disk. An archive that is a hard link to an earlier one
//! (an unchanged volume) is copied on the server, not uploaded again.
//!
//! Encrypted copies are randomised by age, so a cut upload can only resume from the same
//! ciphertext: it is written first (verified as for a disk target) to a staging file in
//! `<local dest>/.copy-staging/<target>/<name>/`, kept until its upload is complete.
//!
//! Nothing here writes to the local archives; a failure leaves them as they are.

use crate::backup::verify::read_full;
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::backup::copy::{
    copy_encrypted, create_private, encrypt, fetch_encrypted, hash_file, open_regular,
};
use crate::backup::copy::{CopyReport, AGE_SUFFIX};
use crate::backup::error::{check_name, io_err, BackupError};
use crate::backup::manifest::{manifest_path, write_durably, Manifest};
use crate::backup::retention::{
    list_archives, parse_file_name, select_prune, ArchiveName, RetentionPolicy,
};
use crate::backup::timestamp::Timestamp;
use crate::s3::Client;

const MANIFEST_SUFFIX: &str = ".manifest.json";

/// Part size of multipart uploads: big enough for few requests, small enough to hold in memory
/// on a Pi and to lose little when a connection drops. S3 refuses parts under 5 MiB (but the
/// last). `PI_SETUP_S3_PART_SIZE` (bytes, hidden) lets tests use the smallest.
fn part_size() -> usize {
    std::env::var("PI_SETUP_S3_PART_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8 << 20)
        .max(5 << 20)
}

/// A pause after each part sent: `PI_SETUP_S3_PART_PAUSE_MS` (hidden), so a test can cut an
/// upload in the middle by killing the server.
fn pause_after_part() {
    if let Some(ms) = std::env::var("PI_SETUP_S3_PART_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// A bucket and the key prefix copies go under (empty, or ending with '/').
pub(crate) struct Remote<'a> {
    pub(crate) client: &'a Client,
    pub(crate) prefix: &'a str,
}

impl Remote<'_> {
    fn dir(&self, name: &str) -> String {
        format!("{}{name}/", self.prefix)
    }

    fn key(&self, name: &str, file: &str) -> String {
        format!("{}{name}/{file}", self.prefix)
    }

    /// `s3://bucket/prefix/name/`, for messages.
    pub(crate) fn url(&self, name: &str) -> String {
        format!("s3://{}/{}", self.client.bucket(), self.dir(name))
    }
}

/// A copy in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteArchive {
    /// The archive's file name (with `.age` when encrypted).
    pub(crate) file: String,
    pub(crate) key: String,
    pub(crate) timestamp: Timestamp,
    /// A differential's full.
    pub(crate) base: Option<Timestamp>,
    pub(crate) size: u64,
    /// Its manifest is there too.
    pub(crate) complete: bool,
}

/// The copies of `name` in the bucket, oldest first: encrypted ones (`.age`) or plain ones.
pub(crate) fn list_remote(
    remote: &Remote<'_>,
    name: &str,
    encrypted: bool,
) -> Result<Vec<RemoteArchive>, BackupError> {
    check_name(name)?;
    let dir = remote.dir(name);
    let objects: BTreeMap<String, u64> = remote
        .client
        .list(&dir)?
        .into_iter()
        .filter_map(|o| Some((o.key.strip_prefix(&dir)?.to_string(), o.size)))
        .collect();
    let mut out = Vec::new();
    for (file, &size) in &objects {
        let plain = if encrypted {
            file.strip_suffix(AGE_SUFFIX)
        } else {
            Some(file.as_str())
        };
        let Some((timestamp, base)) = plain.and_then(|f| parse_file_name(f, name)) else {
            continue;
        };
        out.push(RemoteArchive {
            file: file.clone(),
            key: remote.key(name, file),
            timestamp,
            base,
            size,
            complete: objects.contains_key(&manifest_file(file, encrypted)),
        });
    }
    out.sort_by_key(|a| a.timestamp);
    Ok(out)
}

/// `x.tar.gz` → `x.tar.gz.manifest.json`; `x.tar.gz.age` → `x.tar.gz.manifest.json.age`.
fn manifest_file(archive_file: &str, encrypted: bool) -> String {
    match archive_file.strip_suffix(AGE_SUFFIX).filter(|_| encrypted) {
        Some(plain) => format!("{plain}{MANIFEST_SUFFIX}{AGE_SUFFIX}"),
        None => format!("{archive_file}{MANIFEST_SUFFIX}"),
    }
}

/// Copies every good archive of `name` under `local` that the bucket lacks (oldest first),
/// then applies `policy` to the copies there. `staging` is where encrypted copies wait for
/// their upload; `on_upload(key, parts)` is told before each multipart upload starts.
pub(crate) fn copy_volume_s3(
    local: &Path,
    remote: &Remote<'_>,
    name: &str,
    policy: &RetentionPolicy,
    encrypt_to: &[age::x25519::Recipient],
    staging: &Path,
    on_upload: &mut dyn FnMut(&str, usize),
) -> Result<CopyReport, BackupError> {
    check_name(name)?;
    let encrypted = !encrypt_to.is_empty();
    let mut report = CopyReport::default();
    let mut there: Vec<String> = list_remote(remote, name, encrypted)?
        .into_iter()
        .filter(|a| a.complete)
        .map(|a| a.file)
        .collect();
    let remote_file = |file: &str| {
        if encrypted {
            format!("{file}{AGE_SUFFIX}")
        } else {
            file.to_string()
        }
    };
    for archive in list_archives(local, name)?.into_iter().filter(|a| a.good) {
        let local_file = archive
            .path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let file = remote_file(&local_file);
        if there.contains(&file) {
            continue;
        }
        let key = remote.key(name, &file);
        let manifest = Manifest::read_for(&archive.path)?;
        let earlier = manifest
            .reused_from
            .as_deref()
            .map(remote_file)
            .filter(|f| there.contains(f));
        if let Some(earlier) = earlier {
            let from = remote.key(name, &earlier);
            let want = remote
                .client
                .head(&from)?
                .ok_or_else(|| corrupt(&from, "vanished while it was being copied".into()))?;
            remote.client.copy(&from, &key)?;
            check_object(remote.client, &key, want.size, want.sha256.as_deref(), None)?;
            report.linked.push(PathBuf::from(&key));
        } else if encrypted {
            let staged = staging.join(name).join(&file);
            if !staged.is_file() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(staging.join(name))
                    .map_err(io_err("creating", &staging.join(name)))?;
                copy_encrypted(&archive.path, &staged, &manifest, encrypt_to)?;
            }
            let (sha, size) = hash_file(&staged)?;
            upload(
                remote.client,
                &staged,
                &key,
                &sha,
                size,
                &mut report,
                on_upload,
            )?;
            crate::host::remove_file(&staged)?;
            report.copied.push((PathBuf::from(&key), size));
        } else {
            upload(
                remote.client,
                &archive.path,
                &key,
                &manifest.sha256,
                manifest.bytes_out,
                &mut report,
                on_upload,
            )?;
            report
                .copied
                .push((PathBuf::from(&key), manifest.bytes_out));
        }
        // Last: its presence says the archive before it is complete.
        let bytes = if encrypted {
            encrypt(&manifest.to_bytes(), encrypt_to)?
        } else {
            manifest.to_bytes()
        };
        let manifest_key = remote.key(name, &manifest_file(&file, encrypted));
        let sha = hex::encode(Sha256::digest(&bytes));
        remote.client.put(&manifest_key, &bytes, &sha)?;
        check_object(
            remote.client,
            &manifest_key,
            bytes.len() as u64,
            Some(&sha),
            Some(&hex::encode(md5_of(&bytes))),
        )?;
        // A later archive linked to this one is copied on the server.
        there.push(file);
    }
    report.pruned = prune_remote(remote, name, encrypted, policy)?;
    Ok(report)
}

/// Retention over the copies in the bucket: the same rules as for archives. Only complete
/// copies count; the archive goes before its manifest, as on a disk.
fn prune_remote(
    remote: &Remote<'_>,
    name: &str,
    encrypted: bool,
    policy: &RetentionPolicy,
) -> Result<Vec<PathBuf>, BackupError> {
    let copies: Vec<ArchiveName> = list_remote(remote, name, encrypted)?
        .into_iter()
        .filter(|a| a.complete)
        .map(|a| ArchiveName {
            path: PathBuf::from(a.key),
            timestamp: a.timestamp,
            good: true,
            base: a.base,
        })
        .collect();
    let mut deleted = Vec::new();
    for a in select_prune(&copies, SystemTime::now(), policy) {
        let key = a.path.to_string_lossy().into_owned();
        let file = key.rsplit('/').next().unwrap_or_default().to_string();
        remote.client.delete(&key)?;
        remote
            .client
            .delete(&remote.key(name, &manifest_file(&file, encrypted)))?;
        deleted.push(a.path);
    }
    Ok(deleted)
}

/// md-5 speaks digest 0.11, sha2 0.10: their `Digest` traits differ.
fn md5_of(bytes: &[u8]) -> Vec<u8> {
    <md5::Md5 as md5::Digest>::digest(bytes).to_vec()
}

fn corrupt(key: &str, reason: String) -> BackupError {
    BackupError::Corrupt {
        path: PathBuf::from(key),
        reason,
    }
}

/// Uploads the file `from` as `key`, resuming an unfinished multipart upload of it, and checks
/// the result. `sha256` and `size` are what the file must hash to.
fn upload(
    client: &Client,
    from: &Path,
    key: &str,
    sha256: &str,
    size: u64,
    report: &mut CopyReport,
    on_upload: &mut dyn FnMut(&str, usize),
) -> Result<(), BackupError> {
    let part = part_size();
    let mut src = open_regular(from)?;
    if size <= part as u64 {
        let mut bytes = Vec::with_capacity(size as usize);
        src.read_to_end(&mut bytes)
            .map_err(io_err("reading", from))?;
        check_read(from, &bytes, sha256, size)?;
        client.put(key, &bytes, sha256)?;
        let md5 = hex::encode(md5_of(&bytes));
        report.parts_sent += 1;
        return check_object(client, key, size, Some(sha256), Some(&md5));
    }
    let parts = size.div_ceil(part as u64) as usize;
    if parts > 10_000 {
        return Err(corrupt(
            key,
            format!("{size} bytes would need {parts} parts of {part} bytes; S3 allows 10000"),
        ));
    }
    on_upload(key, parts);
    // The newest unfinished upload of this key carries on; older ones are dropped.
    let mut uploads = client.uploads(key)?;
    let upload = match uploads.pop() {
        Some(id) => id,
        None => client.start_upload(key, sha256)?,
    };
    for stale in uploads {
        client.abort(key, &stale)?;
    }
    let held: BTreeMap<u16, crate::s3::Part> = client
        .parts(key, &upload)?
        .into_iter()
        .map(|p| (p.number, p))
        .collect();
    let mut hash = Sha256::new();
    let mut md5s = Vec::new();
    let mut etags = Vec::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; part];
    for number in 1..=parts as u16 {
        let n = read_full(&mut src, &mut buf).map_err(io_err("reading", from))?;
        let bytes = &buf[..n];
        hash.update(bytes);
        total += n as u64;
        let md5 = md5_of(bytes);
        let md5_hex = hex::encode(&md5);
        md5s.extend_from_slice(&md5);
        let kept = held
            .get(&number)
            .is_some_and(|p| p.etag == md5_hex && p.size == n as u64);
        if kept {
            report.parts_kept += 1;
        } else {
            let etag = client.upload_part(key, &upload, number, bytes)?;
            if etag != md5_hex {
                return Err(corrupt(
                    key,
                    format!("the server holds part {number} with ETag {etag}, not the MD5 of what was sent ({md5_hex})"),
                ));
            }
            report.parts_sent += 1;
            pause_after_part();
        }
        etags.push(md5_hex);
    }
    let read = hex::encode(hash.finalize());
    if read != sha256 || total != size {
        // Not completed: the object never appears with the wrong bytes.
        let _ = client.abort(key, &upload);
        return Err(BackupError::Corrupt {
            path: from.to_path_buf(),
            reason: format!("{total} bytes with sha256 {read}; expected {size} bytes, {sha256}"),
        });
    }
    client.complete(key, &upload, &etags)?;
    let etag = format!("{}-{parts}", hex::encode(md5_of(&md5s)));
    check_object(client, key, size, Some(sha256), Some(&etag))
}

fn check_read(from: &Path, bytes: &[u8], sha256: &str, size: u64) -> Result<(), BackupError> {
    let read = hex::encode(Sha256::digest(bytes));
    if read != sha256 || bytes.len() as u64 != size {
        return Err(BackupError::Corrupt {
            path: from.to_path_buf(),
            reason: format!(
                "{} bytes with sha256 {read}; expected {size} bytes, {sha256}",
                bytes.len()
            ),
        });
    }
    Ok(())
}

/// The object must be there with `size` bytes, and with the sha256 it was stored with, or
/// (a server that keeps no metadata) the ETag computed for what was sent.
fn check_object(
    client: &Client,
    key: &str,
    size: u64,
    sha256: Option<&str>,
    etag: Option<&str>,
) -> Result<(), BackupError> {
    let Some(head) = client.head(key)? else {
        return Err(corrupt(key, "is not in the bucket after its upload".into()));
    };
    if head.size != size {
        return Err(corrupt(
            key,
            format!("the bucket holds {} bytes; {size} were sent", head.size),
        ));
    }
    let sha_ok = match (sha256, &head.sha256) {
        (Some(want), Some(got)) => {
            if want != got {
                return Err(corrupt(
                    key,
                    format!("the bucket holds it with sha256 {got}; expected {want}"),
                ));
            }
            true
        }
        _ => false,
    };
    let etag_ok = etag.is_some_and(|e| e == head.etag);
    if sha_ok || etag_ok || (sha256.is_none() && etag.is_none()) {
        Ok(())
    } else {
        Err(corrupt(
            key,
            format!(
                "cannot be checked: the bucket kept no sha256 and its ETag {} is not {}",
                head.etag,
                etag.unwrap_or("known")
            ),
        ))
    }
}

/// Downloads a copy and its manifest into `into/<name>/`, checks the archive against its
/// manifest (decrypting both first with `identity` when encrypted), and returns where the
/// archive now is: ready for `restore_archive` or `verify_archive`.
pub(crate) fn fetch_s3(
    remote: &Remote<'_>,
    name: &str,
    copy: &RemoteArchive,
    identity: Option<&Path>,
    into: &Path,
) -> Result<PathBuf, BackupError> {
    check_name(name)?;
    let dir = into.join(name);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(io_err("creating", &dir))?;
    let encrypted = identity.is_some();
    let download = |file: &str| -> Result<PathBuf, BackupError> {
        // `file` is a name the listing matched exactly (`<name>-<timestamp>.<suffix>`): no '/'.
        let to = dir.join(file);
        let mut f = create_private(&to)?;
        remote.client.get(&remote.key(name, file), &mut f)?;
        f.sync_all().map_err(io_err("syncing", &to))?;
        Ok(to)
    };
    let archive = download(&copy.file)?;
    download(&manifest_file(&copy.file, encrypted))?;
    if let Some(identity) = identity {
        return fetch_encrypted(&archive, identity, into);
    }
    let manifest = Manifest::read_for(&archive)?;
    let (sha, size) = hash_file(&archive)?;
    if sha != manifest.sha256 || size != manifest.bytes_out {
        return Err(BackupError::Corrupt {
            path: PathBuf::from(&copy.key),
            reason: format!(
                "downloaded {size} bytes with sha256 {sha}; its manifest says {} bytes, {}",
                manifest.bytes_out, manifest.sha256
            ),
        });
    }
    if manifest.name != name || manifest.archive != copy.file {
        return Err(BackupError::Corrupt {
            path: PathBuf::from(&copy.key),
            reason: format!(
                "its manifest describes {} of '{}'",
                manifest.archive, manifest.name
            ),
        });
    }
    // Rewritten so the manifest beside it is exactly the one checked.
    write_durably(&manifest_path(&archive), &manifest.to_bytes())?;
    Ok(archive)
}
