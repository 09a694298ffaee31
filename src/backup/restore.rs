//! `restore_archive`: checks an archive against its manifest, extracts it beside the volume
//! while refusing any entry that could land outside it, then swaps it in for the volume under
//! a journal; `recover_interrupted` finishes or undoes a swap a crash cut short.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, File, FileTimes, OpenOptions, Permissions};
use std::io::{self, BufReader, Read as _};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{fchown, lchown, symlink, DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::sys::stat::{makedev, mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::mkfifo;
use serde::{Deserialize, Serialize};
use tar::EntryType;

use crate::backup::codec::Codec;
use crate::backup::error::{check_name, io_err, BackupError};
use crate::backup::manifest::{manifest_path, Manifest};
use crate::backup::parallel::decompress_parallel;
use crate::backup::timestamp::Timestamp;
use crate::backup::verify::{cores, open_regular, read_back, Expected};
use crate::backup::walk::unescape;

#[derive(Debug, Clone)]
pub(crate) struct RestoreOptions {
    /// Restore uids/gids from the archive (needs root); otherwise files belong to the caller.
    pub(crate) preserve_owner: bool,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            preserve_owner: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RestoreReport {
    /// `<target_parent>/<name>`, now holding the archive's tree.
    pub(crate) restored: PathBuf,
    /// Where the volume that was there before went (`<name>.pre-restore-<ts>`), if there was one.
    pub(crate) previous: Option<PathBuf>,
    pub(crate) entries: u64,
    /// Entries that could not be recreated (device nodes without root), each with why.
    pub(crate) skipped: Vec<String>,
}

/// What an extraction read: every entry counts, also those in `skipped` and `omitted`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Extracted {
    pub(crate) entries: u64,
    /// Entries not recreated (device nodes without the right to make them), each with why.
    pub(crate) skipped: Vec<String>,
    /// Entries left out because a [`Layer`] said so.
    pub(crate) omitted: u64,
    /// The symlinks it made.
    pub(crate) symlinks: HashSet<PathBuf>,
}

/// How one archive of a chain (a full, then its differential) goes into the tree.
#[derive(Debug, Default)]
pub(crate) struct Layer {
    /// Entries not to extract: what the differential replaces, and what it says is deleted.
    pub(crate) omit: HashSet<PathBuf>,
    /// Symlinks the layer before made: nothing is extracted under them either.
    pub(crate) symlinks: HashSet<PathBuf>,
}

/// Restores `archive` as `<target_parent>/<name>`: [`prepare_restores`], then
/// [`Prepared::swap_in`]. The containers using the volume must be stopped by the caller.
#[cfg(test)]
pub(crate) fn restore_archive(
    archive: &Path,
    target_parent: &Path,
    name: &str,
    opts: &RestoreOptions,
) -> Result<RestoreReport, BackupError> {
    let mut prepared = prepare_restores(&[(archive, name)], target_parent, opts)?;
    prepared.remove(0).swap_in()
}

/// A restored tree extracted, checked and on disk beside the volume, waiting to be swapped in.
/// Dropped without [`Prepared::swap_in`], it is deleted and the volume was never touched.
pub(crate) struct Prepared {
    /// `.<name>.restore-<stamp>`, removed by `guard` unless swapped in.
    temp: PathBuf,
    guard: RemoveTree,
    stamp: Timestamp,
    target_parent: PathBuf,
    name: String,
    entries: u64,
    skipped: Vec<String>,
}

/// Extracts each `(archive, name)` (for a differential: its full, then it) into
/// `.<name>.restore-<ts>` beside its volume under `target_parent` (one file system), checking as
/// it goes everything a read-back would (the sha256 of the file, every gzip CRC or zstd frame
/// checksum, the uncompressed size, the entry count), then flushes them all to disk at once, so
/// the disk writes one volume while the next is extracted instead of stopping at each. No
/// volume is touched: their containers may keep running meanwhile, so a corrupt archive costs
/// no downtime. On any error the trees already extracted are removed (dropped).
pub(crate) fn prepare_restores(
    items: &[(&Path, &str)],
    target_parent: &Path,
    opts: &RestoreOptions,
) -> Result<Vec<Prepared>, BackupError> {
    let mut prepared = Vec::with_capacity(items.len());
    for (archive, name) in items {
        prepared.push(prepare_unsynced(archive, target_parent, name, opts)?);
    }
    if let Some(p) = prepared.first() {
        flush(&p.temp)?;
    }
    Ok(prepared)
}

/// `syncfs` of the file system `dir` is on: the tree must be on disk before the journal says it
/// is complete (power loss).
fn flush(dir: &Path) -> Result<(), BackupError> {
    let f = File::open(dir).map_err(io_err("opening", dir))?;
    nix::unistd::syncfs(&f).map_err(|e| io_err("syncing", dir)(e.into()))
}

fn prepare_unsynced(
    archive: &Path,
    target_parent: &Path,
    name: &str,
    opts: &RestoreOptions,
) -> Result<Prepared, BackupError> {
    check_name(name)?;
    no_journal(target_parent, name)?;
    let manifest = Manifest::read_for(archive)?;
    let full = full_of(archive, &manifest)?;
    let stamp = Timestamp::now();
    let temp = target_parent.join(format!(".{name}{TEMP_INFIX}{stamp}"));
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&temp)
        .map_err(io_err("creating", &temp))?;
    let guard = RemoveTree(Some(temp.clone()));
    let extracted = match &full {
        None => extract_checked(archive, &manifest, &temp, opts, &Layer::default())?,
        Some((full_path, full_manifest)) => {
            // The full without what the differential replaces or deleted, then the
            // differential: its directories' metadata is applied last, over the full's files.
            let mut omit = read_stream(archive, &manifest, |src| tar_paths(src, archive))?;
            for d in &manifest.deleted {
                let path = unescape(d)
                    .and_then(|p| contained(p.as_os_str().as_bytes()).ok())
                    .ok_or_else(|| BackupError::Corrupt {
                        path: manifest_path(archive),
                        reason: format!("it lists {d:?} as deleted: not a path in the volume"),
                    })?;
                omit.insert(path);
            }
            let first = extract_checked(
                full_path,
                full_manifest,
                &temp,
                opts,
                &Layer {
                    omit,
                    symlinks: HashSet::new(),
                },
            )?;
            let layer = Layer {
                omit: HashSet::new(),
                symlinks: first.symlinks,
            };
            let second = extract_checked(archive, &manifest, &temp, opts, &layer)?;
            let mut skipped = first.skipped;
            skipped.extend(second.skipped);
            Extracted {
                entries: first.entries - first.omitted + second.entries,
                skipped,
                omitted: 0,
                symlinks: HashSet::new(),
            }
        }
    };
    Ok(Prepared {
        temp,
        guard,
        stamp,
        target_parent: target_parent.to_path_buf(),
        name: name.to_string(),
        entries: extracted.entries,
        skipped: extracted.skipped,
    })
}

fn no_journal(target_parent: &Path, name: &str) -> Result<(), BackupError> {
    let journal_path = journal_path(target_parent, name);
    if journal_path.exists() {
        return Err(BackupError::Io {
            action: "starting a restore over the unfinished one recorded in",
            path: journal_path,
            source: io::Error::other("run any pi-setup command that recovers it first"),
        });
    }
    Ok(())
}

impl Prepared {
    /// Swaps the prepared tree in for the volume (which moves to `<name>.pre-restore-<ts>`).
    /// The containers using the volume must be stopped by the caller.
    ///
    /// Crash safety: the tree is complete and on disk; only now is the journal
    /// `.<name>.restore-journal` written (atomically), naming that tree and where the volume
    /// moves; then the two renames; then the journal goes. A run killed anywhere leaves either
    /// no journal (the volume untouched, at most a temporary tree that [`recover_interrupted`]
    /// deletes) or a journal whose tree is complete, so recovery rolls the swap forward, or
    /// back if the tree is gone.
    pub(crate) fn swap_in(self) -> Result<RestoreReport, BackupError> {
        let Prepared {
            temp,
            guard,
            stamp,
            target_parent,
            name,
            entries,
            skipped,
        } = self;
        no_journal(&target_parent, &name)?;
        let journal_path = journal_path(&target_parent, &name);
        let target = target_parent.join(&name);
        let had_volume = match fs::symlink_metadata(&target) {
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(io_err("reading", &target)(e)),
        };
        let aside = free_name(&target_parent, &format!("{name}{ASIDE_INFIX}{stamp}"));
        let journal = Journal {
            volume: name.clone(),
            extracted: file_name(&temp),
            previous: file_name(&aside),
        };
        write_journal(&journal_path, &journal)?;
        let previous = if had_volume {
            if let Err(e) = fs::rename(&target, &aside) {
                let _ = fs::remove_file(&journal_path);
                return Err(io_err("moving aside", &target)(e));
            }
            Some(aside)
        } else {
            None
        };
        if let Err(e) = fs::rename(&temp, &target) {
            // Back as it was; if even that fails the journal stays, and recovery (temp gone by
            // then, the volume missing) moves the old directory back.
            let back = previous.as_ref().map_or(Ok(()), |a| fs::rename(a, &target));
            if back.is_ok() {
                let _ = fs::remove_file(&journal_path);
            }
            return Err(io_err("moving into place", &target)(e));
        }
        guard.disarm();
        crate::host::sync_dir(&target_parent)?;
        fs::remove_file(&journal_path).map_err(io_err("removing", &journal_path))?;
        crate::host::sync_dir(&target_parent)?;
        Ok(RestoreReport {
            restored: target,
            previous,
            entries,
            skipped,
        })
    }
}

/// `.NAME.restore-<ts>`: a restore's extraction directory.
const TEMP_INFIX: &str = ".restore-";
/// `NAME.pre-restore-<ts>`: the volume a restore replaced.
const ASIDE_INFIX: &str = ".pre-restore-";
/// `.NAME.restore-journal`: a swap in progress.
const JOURNAL_SUFFIX: &str = ".restore-journal";

/// The note a restore writes between a complete extraction and its two renames. Names are
/// file names in the same directory as the volume.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Journal {
    volume: String,
    /// The complete extracted tree, to become the volume.
    extracted: String,
    /// Where the volume that was there moves.
    previous: String,
}

fn journal_path(parent: &Path, name: &str) -> PathBuf {
    parent.join(format!(".{name}{JOURNAL_SUFFIX}"))
}

fn write_journal(path: &Path, journal: &Journal) -> Result<(), BackupError> {
    let text = serde_json::to_vec_pretty(journal).expect("a journal serializes");
    Ok(crate::host::write_atomic(path, &text, 0o600)?)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `base`, or `base.1`, `base.2`, … : the first name not taken in `parent`.
fn free_name(parent: &Path, base: &str) -> PathBuf {
    let mut candidate = parent.join(base);
    let mut n = 0;
    while fs::symlink_metadata(&candidate).is_ok() {
        n += 1;
        candidate = parent.join(format!("{base}.{n}"));
    }
    candidate
}

fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// Finishes or undoes every restore in `parent` that was interrupted (killed, power lost), so
/// no volume stays missing and no temporary tree stays behind; says what it did, one line per
/// volume. Call it with the command lock held, before anything reads or creates a volume.
///
/// - A journal whose extracted tree still exists: the extraction finished, so roll forward
///   (the volume, if it is there, moves aside; the tree moves in).
/// - A journal whose tree is gone: the second rename happened, or a failed one was undone; if
///   the volume is missing, its previous directory moves back.
/// - An extraction directory no journal names: the extraction never finished; deleted. (If the
///   volume is missing beside it and a `NAME.pre-restore-*` exists, a restore of an earlier
///   pi-setup died between its renames: the newest previous directory moves back.)
pub(crate) fn recover_interrupted(parent: &Path) -> Result<Vec<String>, BackupError> {
    let mut done = Vec::new();
    let entries = match fs::read_dir(parent) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(done),
        Err(e) => return Err(io_err("listing", parent)(e)),
    };
    let mut names: Vec<String> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("listing", parent))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    for n in &names {
        if let Some(volume) = n
            .strip_prefix('.')
            .and_then(|v| v.strip_suffix(JOURNAL_SUFFIX))
        {
            done.push(finish_journal(parent, volume)?);
        }
    }
    let mut temps_of: Vec<String> = Vec::new();
    for n in &names {
        let path = parent.join(n);
        if n.starts_with('.') && n.ends_with(&format!("{JOURNAL_SUFFIX}.pi-setup-tmp")) {
            // A journal whose atomic write was cut short: nothing was renamed yet.
            fs::remove_file(&path).map_err(io_err("removing", &path))?;
            continue;
        }
        if n.ends_with(JOURNAL_SUFFIX) || !fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        let Some((volume, _)) = n
            .strip_prefix('.')
            .and_then(|v| v.rsplit_once(TEMP_INFIX))
            .filter(|(v, _)| check_name(v).is_ok())
        else {
            continue;
        };
        crate::host::remove_tree(&path)?;
        done.push(format!(
            "{volume}: removed {n}, left by a restore that did not finish extracting"
        ));
        temps_of.push(volume.to_string());
    }
    temps_of.dedup();
    for volume in temps_of {
        let target = parent.join(&volume);
        if exists(&target) {
            continue;
        }
        let prefix = format!("{volume}{ASIDE_INFIX}");
        let newest = names.iter().rev().find(|n| n.starts_with(&prefix));
        if let Some(aside) = newest {
            fs::rename(parent.join(aside), &target).map_err(io_err("moving back", &target))?;
            done.push(format!(
                "{volume}: was missing after an interrupted restore; moved {aside} back"
            ));
        }
    }
    if !done.is_empty() {
        crate::host::sync_dir(parent)?;
    }
    Ok(done)
}

/// Rolls one journalled swap forward or back, then removes its journal.
fn finish_journal(parent: &Path, volume: &str) -> Result<String, BackupError> {
    let path = journal_path(parent, volume);
    let text = fs::read(&path).map_err(io_err("reading", &path))?;
    let journal: Journal =
        serde_json::from_slice(&text).map_err(|source| BackupError::Manifest {
            path: path.clone(),
            source,
        })?;
    for n in [&journal.volume, &journal.extracted, &journal.previous] {
        if journal.volume != volume || n.is_empty() || n.contains('/') || n.starts_with("..") {
            return Err(BackupError::Io {
                action: "reading",
                path,
                source: io::Error::other(format!("the journal names {n:?}")),
            });
        }
    }
    let target = parent.join(&journal.volume);
    let extracted = parent.join(&journal.extracted);
    let previous = parent.join(&journal.previous);
    let what = if exists(&extracted) {
        let mut kept = String::new();
        if exists(&target) {
            // Normally the volume before the restore; after a reboot possibly an empty
            // directory Docker made for a bind mount. Kept either way.
            let aside = free_name(parent, &journal.previous);
            fs::rename(&target, &aside).map_err(io_err("moving aside", &target))?;
            kept = format!(
                " (the directory it replaced is kept as {})",
                file_name(&aside)
            );
        } else if exists(&previous) {
            kept = format!(
                " (the directory it replaced is kept as {})",
                journal.previous
            );
        }
        fs::rename(&extracted, &target).map_err(io_err("moving into place", &target))?;
        format!("{volume}: finished an interrupted restore: the restored tree is in place{kept}")
    } else if exists(&target) {
        format!("{volume}: an interrupted restore had already swapped the restored tree in")
    } else if exists(&previous) {
        fs::rename(&previous, &target).map_err(io_err("moving back", &target))?;
        format!(
            "{volume}: undid an interrupted restore: moved {} back",
            journal.previous
        )
    } else {
        format!("{volume}: an interrupted restore left neither the volume nor a tree to restore")
    };
    crate::host::sync_dir(parent)?;
    fs::remove_file(&path).map_err(io_err("removing", &path))?;
    Ok(what)
}

struct RemoveTree(Option<PathBuf>);

impl RemoveTree {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveTree {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = fs::remove_dir_all(path);
        }
    }
}

#[derive(Clone, Copy)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
}

/// A differential's full archive (beside it) with its manifest, checked to be the very archive
/// the differential was made against; `None` for a full archive.
pub(crate) fn full_of(
    archive: &Path,
    manifest: &Manifest,
) -> Result<Option<(PathBuf, Manifest)>, BackupError> {
    let Some(base) = &manifest.base else {
        return Ok(None);
    };
    let chain = |reason: String| BackupError::Corrupt {
        path: archive.to_path_buf(),
        reason,
    };
    if base.archive.contains('/') || base.archive.starts_with('.') {
        return Err(chain(format!(
            "its manifest names {:?} as its full archive",
            base.archive
        )));
    }
    let path = archive.with_file_name(&base.archive);
    if !exists(&path) {
        return Err(chain(format!(
            "it is a differential, and its full archive {} is missing",
            path.display()
        )));
    }
    let full = Manifest::read_for(&path)?;
    if full.sha256 != base.sha256 || full.base.is_some() || full.name != manifest.name {
        return Err(chain(format!(
            "it is a differential of {}, but that file is not the full archive it was made \
             against (sha256 {}, expected {})",
            base.archive, full.sha256, base.sha256
        )));
    }
    Ok(Some((path, full)))
}

/// [`extract`], then the entry count against the manifest.
fn extract_checked(
    archive: &Path,
    manifest: &Manifest,
    root: &Path,
    opts: &RestoreOptions,
    layer: &Layer,
) -> Result<Extracted, BackupError> {
    let extracted = read_stream(archive, manifest, |src| {
        extract_layer(src, archive, root, opts, layer)
    })?;
    if extracted.entries != manifest.entries {
        return Err(BackupError::Corrupt {
            path: archive.to_path_buf(),
            reason: format!(
                "extracted {} entries, the manifest says {}",
                extracted.entries, manifest.entries
            ),
        });
    }
    Ok(extracted)
}

/// Every entry's path in a tar stream, checked as extraction would.
fn tar_paths(src: &mut dyn io::Read, archive: &Path) -> Result<HashSet<PathBuf>, BackupError> {
    let corrupt = |e: io::Error| BackupError::Corrupt {
        path: archive.to_path_buf(),
        reason: e.to_string(),
    };
    let mut paths = HashSet::new();
    for entry in tar::Archive::new(src).entries().map_err(corrupt)? {
        let raw = entry.map_err(corrupt)?.path_bytes().into_owned();
        let rel = contained(&raw).map_err(|reason| BackupError::UnsafeEntry {
            archive: archive.to_path_buf(),
            entry: format!("{:?}", String::from_utf8_lossy(&raw)),
            reason: reason.to_string(),
        })?;
        paths.insert(rel);
    }
    Ok(paths)
}

/// Hands the archive's uncompressed tar stream to `consume`, and fails if the archive is not
/// exactly what its manifest says. An archive whose manifest has a block index is hashed and
/// decompressed on every core in one pass, its units handed over in order; it must decompress
/// to exactly the manifest's size, every unit checked (gzip CRC, zstd frame checksum), also
/// past the tar's end, and hash to the manifest's sha256 (what the consumer did is thrown
/// away by the caller otherwise). Older archives are read back in full first, then read as
/// one stream.
fn read_stream<T>(
    archive: &Path,
    manifest: &Manifest,
    consume: impl FnOnce(&mut dyn io::Read) -> Result<T, BackupError>,
) -> Result<T, BackupError> {
    let corrupt = |reason: String| BackupError::Corrupt {
        path: archive.to_path_buf(),
        reason,
    };
    if let Some((codec, index)) = manifest.block_index() {
        // Every unit decompresses to exactly its size in the index, to the last one.
        let size = index.uncompressed();
        if size != manifest.bytes_in {
            return Err(corrupt(format!(
                "its block index adds up to {size} bytes, the manifest says {}",
                manifest.bytes_in
            )));
        }
        let file = open_regular(archive)?;
        let size = file.metadata().map_err(io_err("reading", archive))?.len();
        if size != manifest.bytes_out {
            return Err(corrupt(format!(
                "it is {size} bytes, the manifest says {}",
                manifest.bytes_out
            )));
        }
        // Hashed as it is read: one pass checks and extracts.
        let (consumed, unpacked) =
            decompress_parallel(file, archive, codec, index, true, cores(), |src| {
                let out = consume(&mut *src)?;
                // What follows the tar's end (its end-of-archive blocks) must check too.
                io::copy(src, &mut io::sink()).map_err(|e| corrupt(e.to_string()))?;
                Ok::<_, BackupError>(out)
            });
        // A unit that failed says more than the consumer's view of its bytes.
        unpacked.decoded.map_err(|e| corrupt(e.to_string()))?;
        let sha256 = unpacked
            .sha256
            .unwrap_or_else(|| Err(io::Error::other("the archive was not hashed")))
            .map(hex::encode)
            .map_err(|e| corrupt(e.to_string()))?;
        if sha256 != manifest.sha256 {
            return Err(corrupt(format!(
                "its sha256 is {sha256}, the manifest says {}",
                manifest.sha256
            )));
        }
        return consumed;
    }
    // Written before block indexes: read back in full first, then read again to extract.
    read_back(archive, &Expected::of(manifest))?;
    let file = open_regular(archive)?;
    let mut decoder = Codec::decoder(BufReader::with_capacity(1 << 20, file))
        .map_err(|e| corrupt(e.to_string()))?;
    consume(&mut decoder)
}

/// Extracts an uncompressed tar stream into `root` (a fresh directory) under the same rules
/// as a restore; `origin` names the stream in errors. Used by restore, and to move data out of
/// a container's Docker volume.
///
/// A symlink is data: it is recreated verbatim, whatever it points to (absolute, dangling,
/// `..`), as GNU tar does; container data holds links like `current -> /data/releases/5`.
/// Nothing is ever written *through* one: no symlink exists in the tree until every other
/// entry is in place (they are created last), an entry below a symlink of the archive is
/// refused, files are opened with `O_NOFOLLOW` and `create_new`, and a symlink is never created
/// over something that exists. What is refused is an entry whose own path escapes (absolute,
/// or a `..` component) and a hard link whose target does. Directory metadata is applied last,
/// deepest first, because creating their contents would change their mtimes.
pub(crate) fn extract_tar(
    stream: impl io::Read,
    origin: &Path,
    root: &Path,
    opts: &RestoreOptions,
) -> Result<Extracted, BackupError> {
    extract_layer(stream, origin, root, opts, &Layer::default())
}

/// [`extract_tar`] of one archive of a chain: `root` may hold what the layer before made;
/// nothing that layer omitted, so no path collides.
fn extract_layer(
    stream: impl io::Read,
    origin: &Path,
    root: &Path,
    opts: &RestoreOptions,
    layer: &Layer,
) -> Result<Extracted, BackupError> {
    let archive = origin;
    let corrupt = |e: io::Error| BackupError::Corrupt {
        path: archive.to_path_buf(),
        reason: e.to_string(),
    };
    let mut tar = tar::Archive::new(stream);
    let refuse = |entry: &[u8], reason: &str| BackupError::UnsafeEntry {
        archive: archive.to_path_buf(),
        entry: format!("{:?}", String::from_utf8_lossy(entry)),
        reason: reason.to_string(),
    };
    let mut dirs: Vec<(PathBuf, Meta)> = Vec::new();
    // Earlier entries a hard link may name: files, FIFOs, device nodes.
    let mut linkable: HashSet<PathBuf> = HashSet::new();
    let mut symlinks: Vec<(PathBuf, PathBuf, Meta)> = Vec::new();
    let mut symlink_paths: HashSet<PathBuf> = layer.symlinks.clone();
    // Omitted entries a hard link of this archive may still name: a chain that disagrees.
    let mut omitted: HashSet<PathBuf> = HashSet::new();
    // Hard links to symlinks wait until the symlinks exist.
    let mut late_links: Vec<(PathBuf, PathBuf)> = Vec::new();
    // Device nodes that could not be made: their hard links are skipped with them.
    let mut not_made: HashSet<PathBuf> = HashSet::new();
    let mut out = Extracted::default();
    // Hard links to files: made once every file is written (the pool may still hold theirs).
    let mut file_links: Vec<(PathBuf, PathBuf)> = Vec::new();
    // Small files are written (created, filled, owner/mode/mtime set) by a pool of threads
    // while this one reads on: a volume of many small files restores on every core. Larger
    // ones are written here, straight from the stream.
    let writers = cores().clamp(1, 8);
    let (jobs, queue) = sync_channel::<FileJob>(writers * 2);
    let queue = Mutex::new(queue);
    let failed: Mutex<Option<BackupError>> = Mutex::new(None);
    let note = |e: BackupError| {
        failed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_or_insert(e);
    };
    thread::scope(|s| -> Result<(), BackupError> {
        for _ in 0..writers {
            s.spawn(|| loop {
                let job = queue
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .recv();
                let Ok(job) = job else { break };
                if let Err(e) = write_file(&job.dest, &mut &job.data[..], job.meta, opts, &corrupt)
                {
                    note(e);
                }
            });
        }
        let read = (|| -> Result<(), BackupError> {
            for entry in tar.entries().map_err(corrupt)? {
                if failed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .is_some()
                {
                    break;
                }
                let mut entry = entry.map_err(corrupt)?;
                let raw = entry.path_bytes().into_owned();
                let rel = contained(&raw).map_err(|reason| refuse(&raw, reason))?;
                if rel.ancestors().skip(1).any(|a| symlink_paths.contains(a)) {
                    return Err(refuse(&raw, "is inside a symlink"));
                }
                if layer.omit.contains(&rel) {
                    out.entries += 1;
                    out.omitted += 1;
                    omitted.insert(rel);
                    continue;
                }
                let h = entry.header();
                let meta = Meta {
                    mode: h.mode().map_err(corrupt)?,
                    uid: h.uid().map_err(corrupt)? as u32,
                    gid: h.gid().map_err(corrupt)? as u32,
                    mtime: h.mtime().map_err(corrupt)?,
                };
                let dest = root.join(&rel);
                match h.entry_type() {
                    EntryType::Directory => {
                        if !rel.as_os_str().is_empty() {
                            fs::DirBuilder::new()
                                .recursive(true)
                                .mode(0o700)
                                .create(&dest)
                                .map_err(io_err("creating", &dest))?;
                        }
                        dirs.push((rel, meta));
                    }
                    EntryType::Regular | EntryType::Continuous => {
                        make_parent(&dest)?;
                        let size = entry.size();
                        if size <= POOLED_FILE_MAX {
                            let mut data = Vec::with_capacity(size as usize);
                            entry.read_to_end(&mut data).map_err(corrupt)?;
                            if jobs.send(FileJob { dest, data, meta }).is_err() {
                                break;
                            }
                        } else {
                            // Read a MiB at a time (the tar entry is not buffered): fewer,
                            // larger writes.
                            let mut entry = io::BufReader::with_capacity(1 << 20, &mut entry);
                            write_file(&dest, &mut entry, meta, opts, &corrupt)?;
                        }
                        linkable.insert(rel);
                    }
                    kind @ (EntryType::Fifo | EntryType::Char | EntryType::Block) => {
                        // A FIFO has no device numbers (writers may leave the fields blank).
                        let device = if kind == EntryType::Fifo {
                            (0, 0)
                        } else {
                            (
                                h.device_major().map_err(corrupt)?.unwrap_or(0),
                                h.device_minor().map_err(corrupt)?.unwrap_or(0),
                            )
                        };
                        make_parent(&dest)?;
                        match make_special(&dest, kind, device)? {
                            None => {
                                apply_to_path(&dest, meta, opts)?;
                                linkable.insert(rel);
                            }
                            Some(why) => {
                                out.skipped.push(format!(
                                    "{} ({why})",
                                    String::from_utf8_lossy(rel.as_os_str().as_bytes())
                                ));
                                not_made.insert(rel);
                            }
                        }
                    }
                    EntryType::Symlink => {
                        let target = entry
                            .link_name_bytes()
                            .ok_or_else(|| refuse(&raw, "is a symlink without a target"))?
                            .into_owned();
                        if rel.as_os_str().is_empty() {
                            return Err(refuse(&raw, "makes the volume itself a symlink"));
                        }
                        symlink_paths.insert(rel.clone());
                        symlinks.push((rel, PathBuf::from(OsStr::from_bytes(&target)), meta));
                    }
                    EntryType::Link => {
                        let target = entry
                            .link_name_bytes()
                            .ok_or_else(|| refuse(&raw, "is a hard link without a target"))?
                            .into_owned();
                        let target_rel = contained(&target).map_err(|_| {
                            refuse(&raw, "is a hard link to a path outside the volume")
                        })?;
                        make_parent(&dest)?;
                        if linkable.contains(&target_rel) {
                            file_links.push((rel.clone(), target_rel));
                            linkable.insert(rel);
                        } else if symlink_paths.contains(&target_rel) {
                            late_links.push((rel, target_rel));
                        } else if omitted.contains(&target_rel) {
                            return Err(refuse(
                        &raw,
                        "is a hard link to a file its differential replaced: the full archive \
                         and the differential do not agree",
                    ));
                        } else if not_made.contains(&target_rel) {
                            out.skipped.push(format!(
                                "{} (a hard link to {}, which was not made)",
                                String::from_utf8_lossy(rel.as_os_str().as_bytes()),
                                String::from_utf8_lossy(target_rel.as_os_str().as_bytes())
                            ));
                        } else {
                            return Err(refuse(
                        &raw,
                        "is a hard link to something that is not an earlier file of the archive",
                    ));
                        }
                    }
                    other => {
                        return Err(refuse(&raw, &format!("has unsupported type {other:?}")));
                    }
                }
                out.entries += 1;
            }
            Ok(())
        })();
        // The writers finish what is queued and stop.
        drop(jobs);
        read
    })?;
    if let Some(e) = failed
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        return Err(e);
    }
    for (rel, target_rel) in &file_links {
        let dest = root.join(rel);
        fs::hard_link(root.join(target_rel), &dest).map_err(io_err("linking", &dest))?;
    }
    for (rel, target, meta) in &symlinks {
        out.symlinks.insert(rel.clone());
        let dest = root.join(rel);
        make_parent(&dest)?;
        // symlink(2) never replaces what exists, so it cannot land on a path already used.
        symlink(target, &dest).map_err(io_err("creating symlink", &dest))?;
        if opts.preserve_owner {
            lchown(&dest, Some(meta.uid), Some(meta.gid))
                .map_err(io_err("changing owner of", &dest))?;
        }
        set_mtime_nofollow(&dest, meta.mtime)?;
    }
    // link(2) does not follow a symlink it is given: this links the symlink itself.
    for (rel, target_rel) in &late_links {
        let dest = root.join(rel);
        fs::hard_link(root.join(target_rel), &dest).map_err(io_err("linking", &dest))?;
    }
    dirs.sort_by_key(|(rel, _)| std::cmp::Reverse(rel.components().count()));
    for (rel, meta) in &dirs {
        let dest = root.join(rel);
        // O_NOFOLLOW: a directory of the archive is never a symlink (symlink(2) would have
        // failed on it), and the check costs nothing.
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_DIRECTORY)
            .open(&dest)
            .map_err(io_err("opening", &dest))?;
        apply_to_file(&dir, &dest, *meta, opts)?;
    }
    Ok(out)
}

/// Regular files up to this size go to the writer pool (read into memory first); with two
/// jobs queued per writer, at most a few MiB wait there.
const POOLED_FILE_MAX: u64 = 1 << 20;

struct FileJob {
    dest: PathBuf,
    data: Vec<u8>,
    meta: Meta,
}

/// Creates `dest` (never over anything, never through a symlink), fills it from `data`, then
/// sets its owner, mode and mtime.
fn write_file(
    dest: &Path,
    data: &mut dyn io::Read,
    meta: Meta,
    opts: &RestoreOptions,
    corrupt: &dyn Fn(io::Error) -> BackupError,
) -> Result<(), BackupError> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(dest)
        .map_err(io_err("creating", dest))?;
    let mut out = Streaming {
        file: &file,
        started: 0,
        written: 0,
    };
    io::copy(data, &mut out).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof || e.kind() == io::ErrorKind::InvalidData {
            corrupt(e)
        } else {
            io_err("writing", dest)(e)
        }
    })?;
    start_writeback(&file, out.started, 0);
    apply_to_file(&file, dest, meta, opts)
}

/// How much of a large file is written before its writeback is started: the disk gets work
/// while the rest of the file is still being decompressed, instead of all of it at the end.
const WRITEBACK_CHUNK: u64 = 4 << 20;

/// A file being filled that starts the writeback of each `WRITEBACK_CHUNK` written.
struct Streaming<'a> {
    file: &'a File,
    /// Where the range not yet handed to writeback starts.
    started: u64,
    written: u64,
}

impl io::Write for Streaming<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = (&mut &*self.file).write(buf)?;
        self.written += n as u64;
        if self.written - self.started >= WRITEBACK_CHUNK {
            start_writeback(self.file, self.started, self.written - self.started);
            self.started = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Asks the kernel to start writing the file's pages to disk now, without waiting: the flush
/// before the swap (`syncfs`) then finds most of the tree already written instead of all of
/// it, so writeback overlaps extraction. Only a hint: errors are ignored, and `syncfs` still
/// decides.
/// `len` 0: from `offset` to the end of the file.
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range only reads its integer arguments; the descriptor is open for as
    // long as `file` is borrowed.
    let _ = unsafe {
        nix::libc::sync_file_range(
            file.as_raw_fd(),
            offset as i64,
            len as i64,
            nix::libc::SYNC_FILE_RANGE_WRITE,
        )
    };
}

/// Makes a FIFO or a device node at `dest` (mode 0600 until its metadata is applied). `Some`
/// with the reason when a device node cannot be made here: only root may, and not in every
/// container.
fn make_special(
    dest: &Path,
    kind: EntryType,
    (major, minor): (u32, u32),
) -> Result<Option<String>, BackupError> {
    let mode = Mode::from_bits_truncate(0o600);
    let (flag, label) = match kind {
        EntryType::Fifo => {
            mkfifo(dest, mode).map_err(|e| io_err("creating FIFO", dest)(e.into()))?;
            return Ok(None);
        }
        EntryType::Block => (SFlag::S_IFBLK, "block"),
        _ => (SFlag::S_IFCHR, "character"),
    };
    if !crate::host::is_root() {
        return Ok(Some(format!(
            "{label} device {major}:{minor}: only root can create device nodes"
        )));
    }
    match mknod(dest, flag, mode, makedev(major.into(), minor.into())) {
        Ok(()) => Ok(None),
        Err(Errno::EPERM) => Ok(Some(format!(
            "{label} device {major}:{minor}: not permitted here (no CAP_MKNOD)"
        ))),
        Err(e) => Err(io_err("creating device node", dest)(e.into())),
    }
}

/// The entry's path relative to the volume, or why it would not stay inside it.
fn contained(raw: &[u8]) -> Result<PathBuf, &'static str> {
    if raw.starts_with(b"/") {
        return Err("has an absolute path");
    }
    let mut rel = PathBuf::new();
    for component in Path::new(OsStr::from_bytes(raw)).components() {
        match component {
            Component::Normal(part) => rel.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("has a `..` component"),
            Component::RootDir | Component::Prefix(_) => return Err("has an absolute path"),
        }
    }
    Ok(rel)
}

fn make_parent(dest: &Path) -> Result<(), BackupError> {
    match dest.parent() {
        Some(parent) => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(io_err("creating", parent)),
        None => Ok(()),
    }
}

fn apply_to_file(
    file: &File,
    path: &Path,
    meta: Meta,
    opts: &RestoreOptions,
) -> Result<(), BackupError> {
    // Owner before mode: chown clears set-uid/set-gid bits.
    if opts.preserve_owner {
        fchown(file, Some(meta.uid), Some(meta.gid)).map_err(io_err("changing owner of", path))?;
    }
    file.set_permissions(Permissions::from_mode(meta.mode & 0o7777))
        .map_err(io_err("changing mode of", path))?;
    let mtime = UNIX_EPOCH + Duration::from_secs(meta.mtime);
    file.set_times(
        FileTimes::new()
            .set_modified(mtime)
            .set_accessed(SystemTime::now()),
    )
    .map_err(io_err("setting mtime of", path))
}

/// Owner, mode and mtime by path, for entries that must not be opened (FIFOs, devices). No
/// symlink exists in the tree while entries are extracted, so the path resolves as it reads.
fn apply_to_path(path: &Path, meta: Meta, opts: &RestoreOptions) -> Result<(), BackupError> {
    if opts.preserve_owner {
        lchown(path, Some(meta.uid), Some(meta.gid)).map_err(io_err("changing owner of", path))?;
    }
    fs::set_permissions(path, Permissions::from_mode(meta.mode & 0o7777))
        .map_err(io_err("changing mode of", path))?;
    set_mtime_nofollow(path, meta.mtime)
}

fn set_mtime_nofollow(path: &Path, mtime: u64) -> Result<(), BackupError> {
    let mtime = TimeSpec::new(mtime as i64, 0);
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &TimeSpec::UTIME_NOW,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| io_err("setting mtime of", path)(io::Error::from(e)))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use std::path::Path;

    use tar::{Builder, EntryType, Header};
    use tempfile::TempDir;

    use super::{extract_tar, recover_interrupted, Journal, RestoreOptions};
    use crate::backup::BackupError;

    fn header(kind: EntryType, mode: u32, mtime: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(1234);
        h.set_gid(4321);
        h.set_mtime(mtime);
        h.set_size(0);
        h
    }

    fn extract(tar: Vec<u8>, into: &Path) -> Result<super::Extracted, BackupError> {
        extract_tar(
            tar.as_slice(),
            Path::new("test.tar"),
            into,
            &RestoreOptions::default(),
        )
    }

    #[test]
    fn symlinks_come_back_verbatim_wherever_they_point() {
        let links: [(&str, &str); 6] = [
            ("current", "/data/releases/5"),
            ("rel", "sub/file"),
            ("dangling", "does/not/exist"),
            ("escaping", "../../../etc/passwd"),
            ("sub/up", ".."),
            ("sub/chain", "up/../../x"),
        ];
        let mut b = Builder::new(Vec::new());
        let mut dir = header(EntryType::Directory, 0o755, 1);
        b.append_data(&mut dir, "sub", std::io::empty()).unwrap();
        let mut file = header(EntryType::Regular, 0o644, 2);
        file.set_size(3);
        b.append_data(&mut file, "sub/file", &b"hi\n"[..]).unwrap();
        for (path, target) in links {
            let mut h = header(EntryType::Symlink, 0o777, 3);
            b.append_link(&mut h, path, target).unwrap();
        }
        let tmp = TempDir::new().unwrap();
        let root = tmp.path().join("vol");
        fs::create_dir(&root).unwrap();
        let got = extract(b.into_inner().unwrap(), &root).unwrap();
        assert_eq!(got.entries, 8);
        for (path, target) in links {
            assert_eq!(
                fs::read_link(root.join(path)).unwrap(),
                Path::new(target),
                "{path}"
            );
            let m = fs::symlink_metadata(root.join(path)).unwrap();
            assert_eq!((m.uid(), m.gid(), m.mtime()), (1234, 4321, 3), "{path}");
        }
        assert_eq!(fs::read(root.join("sub/file")).unwrap(), b"hi\n");
        assert_eq!(fs::metadata(root.join("sub")).unwrap().mtime(), 1);
    }

    #[test]
    fn nothing_is_written_below_a_symlink_whatever_it_points_to() {
        let tmp = TempDir::new().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let cases: [(&str, &str, EntryType); 4] = [
            ("l", outside.to_str().unwrap(), EntryType::Regular),
            ("l", outside.to_str().unwrap(), EntryType::Directory),
            ("l", "../outside", EntryType::Fifo),
            ("l", ".", EntryType::Regular),
        ];
        for (i, (link, target, kind)) in cases.into_iter().enumerate() {
            let mut b = Builder::new(Vec::new());
            let mut h = header(EntryType::Symlink, 0o777, 0);
            b.append_link(&mut h, link, target).unwrap();
            let mut under = header(kind, 0o644, 0);
            b.append_data(&mut under, format!("{link}/file"), std::io::empty())
                .unwrap();
            let root = tmp.path().join(format!("vol{i}"));
            fs::create_dir(&root).unwrap();
            let err = extract(b.into_inner().unwrap(), &root).unwrap_err();
            assert!(
                matches!(&err, BackupError::UnsafeEntry { reason, .. } if reason == "is inside a symlink"),
                "{err}"
            );
            assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "case {i}");
        }
    }

    #[test]
    fn fifos_and_device_nodes_are_recreated_with_their_metadata() {
        let mut b = Builder::new(Vec::new());
        let mut fifo = header(EntryType::Fifo, 0o640, 1_700_000_000);
        b.append_data(&mut fifo, "run/queue", std::io::empty())
            .unwrap();
        let mut null = header(EntryType::Char, 0o666, 1_700_000_001);
        null.set_device_major(1).unwrap();
        null.set_device_minor(3).unwrap();
        b.append_data(&mut null, "dev/null", std::io::empty())
            .unwrap();
        let mut loop0 = header(EntryType::Block, 0o660, 1_700_000_002);
        loop0.set_device_major(7).unwrap();
        loop0.set_device_minor(0).unwrap();
        b.append_data(&mut loop0, "dev/loop0", std::io::empty())
            .unwrap();
        // A second name for the FIFO.
        let mut link = header(EntryType::Link, 0o640, 0);
        b.append_link(&mut link, "run/queue2", "run/queue").unwrap();
        let tmp = TempDir::new().unwrap();
        let got = extract(b.into_inner().unwrap(), tmp.path()).unwrap();
        assert_eq!(got.entries, 4);
        let m = fs::symlink_metadata(tmp.path().join("run/queue")).unwrap();
        assert!(m.file_type().is_fifo());
        assert_eq!(
            (m.mode() & 0o7777, m.uid(), m.gid(), m.mtime(), m.nlink()),
            (0o640, 1234, 4321, 1_700_000_000, 2)
        );
        if crate::host::is_root() && got.skipped.is_empty() {
            let m = fs::symlink_metadata(tmp.path().join("dev/null")).unwrap();
            assert!(m.file_type().is_char_device());
            assert_eq!(
                (m.rdev(), m.mode() & 0o7777, m.uid(), m.mtime()),
                (nix::sys::stat::makedev(1, 3), 0o666, 1234, 1_700_000_001)
            );
            let m = fs::symlink_metadata(tmp.path().join("dev/loop0")).unwrap();
            assert!(m.file_type().is_block_device());
            assert_eq!(m.rdev(), nix::sys::stat::makedev(7, 0));
        } else {
            // Not root (or no CAP_MKNOD): reported, not made, not an error.
            assert_eq!(got.skipped.len(), 2, "{:?}", got.skipped);
            assert!(got.skipped[0].starts_with("dev/null (character device 1:3"));
            assert!(!tmp.path().join("dev/null").exists());
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn journal(parent: &Path, volume: &str, extracted: &str, previous: &str) {
        let j = Journal {
            volume: volume.into(),
            extracted: extracted.into(),
            previous: previous.into(),
        };
        super::write_journal(&super::journal_path(parent, volume), &j).unwrap();
    }

    fn mkfile(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    #[test]
    fn recovery_rolls_each_crash_state_forward_or_back() {
        let tmp = TempDir::new().unwrap();
        let p = tmp.path();
        let (t, a) = (
            ".v.restore-20250101T000000Z",
            "v.pre-restore-20250101T000000Z",
        );
        let read = |v: &str| fs::read_to_string(p.join(v).join("f")).unwrap();
        // Journal written, nothing renamed yet: forward.
        mkfile(&p.join("v/f"), "old");
        mkfile(&p.join(t).join("f"), "new");
        journal(p, "v", t, a);
        let done = recover_interrupted(p).unwrap();
        assert_eq!(read("v"), "new", "{done:?}");
        assert_eq!(read(a), "old");
        assert_eq!(names(p), ["v", a]);
        fs::remove_dir_all(p.join(a)).unwrap();
        // After the first rename: forward.
        fs::rename(p.join("v"), p.join(a)).unwrap();
        mkfile(&p.join(t).join("f"), "newer");
        journal(p, "v", t, a);
        recover_interrupted(p).unwrap();
        assert_eq!((read("v").as_str(), read(a).as_str()), ("newer", "new"));
        assert_eq!(names(p), ["v", a]);
        // After the second rename, before the journal went: only the journal goes.
        journal(p, "v", t, a);
        recover_interrupted(p).unwrap();
        assert_eq!((read("v").as_str(), read(a).as_str()), ("newer", "new"));
        assert_eq!(names(p), ["v", a]);
        // The tree gone and the volume missing (a failed second rename not undone): back.
        fs::remove_dir_all(p.join("v")).unwrap();
        journal(p, "v", t, a);
        recover_interrupted(p).unwrap();
        assert_eq!(read("v"), "new");
        assert_eq!(names(p), ["v"]);
        // Killed while extracting (no journal yet): the tree goes, the volume stays.
        mkfile(&p.join(t).join("half"), "x");
        fs::write(p.join("..v.restore-journal.pi-setup-tmp"), "{").unwrap();
        let done = recover_interrupted(p).unwrap();
        assert_eq!(read("v"), "new");
        assert_eq!(names(p), ["v"], "{done:?}");
        // A Docker-made empty directory where the volume was: kept aside, the tree moves in.
        fs::rename(p.join("v"), p.join(a)).unwrap();
        fs::create_dir(p.join("v")).unwrap();
        mkfile(&p.join(t).join("f"), "newest");
        journal(p, "v", t, a);
        recover_interrupted(p).unwrap();
        assert_eq!(read("v"), "newest");
        assert_eq!(names(p), ["v", a, &format!("{a}.1")]);
        // Nothing to do: nothing done.
        assert_eq!(recover_interrupted(p).unwrap(), Vec::<String>::new());
    }
}
