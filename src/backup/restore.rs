//! `restore_archive`: checks an archive against its manifest, extracts it beside the volume
//! while refusing any entry that could land outside it, then swaps it in for the volume.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, File, FileTimes, OpenOptions, Permissions};
use std::io::{self, BufReader};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{fchown, lchown, symlink, DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use tar::EntryType;

use crate::backup::codec::Codec;
use crate::backup::error::{check_name, io_err, BackupError};
use crate::backup::manifest::Manifest;
use crate::backup::timestamp::Timestamp;
use crate::backup::verify::{read_back, Expected};

#[derive(Debug, Clone)]
pub(crate) struct RestoreOptions {
    /// Restore uids/gids from the archive (needs root); otherwise files belong to the caller.
    pub(crate) preserve_owner: bool,
    /// The caller has just read the archive back with [`crate::backup::verify_archive`] (before
    /// stopping its container): skip the second read-back. Extraction still checks every gzip
    /// CRC or zstd frame checksum, and the entry count.
    pub(crate) verified: bool,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            preserve_owner: true,
            verified: false,
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
}

/// Restores `archive` as `<target_parent>/<name>`. The containers using the volume must be
/// stopped by the caller. On any error the volume is untouched and the temporary extraction
/// directory is removed.
pub(crate) fn restore_archive(
    archive: &Path,
    target_parent: &Path,
    name: &str,
    opts: &RestoreOptions,
) -> Result<RestoreReport, BackupError> {
    check_name(name)?;
    let manifest = Manifest::read_for(archive)?;
    // The full read-back (checksum, decompression, entry count, size) before anything is
    // written.
    if !opts.verified {
        read_back(archive, &Expected::of(&manifest))?;
    }
    let stamp = Timestamp::now();
    let temp = target_parent.join(format!(".{name}.restore-{stamp}"));
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&temp)
        .map_err(io_err("creating", &temp))?;
    let guard = RemoveTree(Some(temp.clone()));
    let entries = extract(archive, &temp, opts)?;
    if entries != manifest.entries {
        return Err(BackupError::Corrupt {
            path: archive.to_path_buf(),
            reason: format!(
                "extracted {entries} entries, the manifest says {}",
                manifest.entries
            ),
        });
    }
    let target = target_parent.join(name);
    let previous = match fs::symlink_metadata(&target) {
        Ok(_) => {
            let aside = target_parent.join(format!("{name}.pre-restore-{stamp}"));
            fs::rename(&target, &aside).map_err(io_err("moving aside", &target))?;
            Some(aside)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err("reading", &target)(e)),
    };
    if let Err(e) = fs::rename(&temp, &target) {
        if let Some(aside) = &previous {
            let _ = fs::rename(aside, &target);
        }
        return Err(io_err("moving into place", &target)(e));
    }
    guard.disarm();
    crate::host::sync_dir(target_parent)?;
    Ok(RestoreReport {
        restored: target,
        previous,
        entries,
    })
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

/// Extracts into `root` (a fresh directory). Symlinks are created only after every other entry,
/// so no entry can be written through one; directory metadata is applied last, deepest first,
/// because creating their contents would change their mtimes.
fn extract(archive: &Path, root: &Path, opts: &RestoreOptions) -> Result<u64, BackupError> {
    let file = File::open(archive).map_err(io_err("opening", archive))?;
    let decoder = Codec::decoder(BufReader::with_capacity(1 << 20, file)).map_err(|e| {
        BackupError::Corrupt {
            path: archive.to_path_buf(),
            reason: e.to_string(),
        }
    })?;
    extract_tar(decoder, archive, root, opts)
}

/// Extracts an uncompressed tar stream into `root` (a fresh directory) under the same rules
/// as a restore: nothing lands outside `root` or is written through a symlink. `origin` names
/// the stream in errors. Used by restore, and to move data out of a container's Docker volume.
pub(crate) fn extract_tar(
    stream: impl io::Read,
    origin: &Path,
    root: &Path,
    opts: &RestoreOptions,
) -> Result<u64, BackupError> {
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
    let mut files: HashSet<PathBuf> = HashSet::new();
    let mut symlinks: Vec<(PathBuf, PathBuf, Meta)> = Vec::new();
    let mut symlink_paths: HashSet<PathBuf> = HashSet::new();
    let mut entries = 0;
    for entry in tar.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let raw = entry.path_bytes().into_owned();
        let rel = contained(&raw).map_err(|reason| refuse(&raw, reason))?;
        if rel.ancestors().skip(1).any(|a| symlink_paths.contains(a)) {
            return Err(refuse(&raw, "is inside a symlink"));
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
                if rel.as_os_str().is_empty() {
                    dirs.push((rel, meta));
                } else {
                    fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(&dest)
                        .map_err(io_err("creating", &dest))?;
                    dirs.push((rel, meta));
                }
            }
            EntryType::Regular | EntryType::Continuous => {
                make_parent(&dest)?;
                let mut out = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .open(&dest)
                    .map_err(io_err("creating", &dest))?;
                io::copy(&mut entry, &mut out).map_err(|e| {
                    if e.kind() == io::ErrorKind::UnexpectedEof
                        || e.kind() == io::ErrorKind::InvalidData
                    {
                        corrupt(e)
                    } else {
                        io_err("writing", &dest)(e)
                    }
                })?;
                apply_to_file(&out, &dest, meta, opts)?;
                files.insert(rel);
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refuse(&raw, "is a symlink without a target"))?
                    .into_owned();
                if !symlink_stays_inside(&rel, &target) {
                    return Err(refuse(&raw, "is a symlink pointing outside the volume"));
                }
                symlink_paths.insert(rel.clone());
                symlinks.push((rel, PathBuf::from(OsStr::from_bytes(&target)), meta));
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refuse(&raw, "is a hard link without a target"))?
                    .into_owned();
                let target_rel = contained(&target)
                    .map_err(|_| refuse(&raw, "is a hard link to a path outside the volume"))?;
                if !files.contains(&target_rel) {
                    return Err(refuse(
                        &raw,
                        "is a hard link to something that is not an earlier regular file",
                    ));
                }
                make_parent(&dest)?;
                fs::hard_link(root.join(&target_rel), &dest).map_err(io_err("linking", &dest))?;
            }
            other => {
                return Err(refuse(&raw, &format!("has unsupported type {other:?}")));
            }
        }
        entries += 1;
    }
    // Each target was checked on its own; a chain (`x/l -> ..`, then `m -> x/l/..`) could still
    // climb out through another link, so no target may pass *through* a symlink of the archive.
    for (rel, target, _) in &symlinks {
        if passes_through_symlink(rel, target, &symlink_paths) {
            return Err(refuse(
                rel.as_os_str().as_bytes(),
                "is a symlink whose target passes through another symlink",
            ));
        }
    }
    for (rel, target, meta) in &symlinks {
        let dest = root.join(rel);
        make_parent(&dest)?;
        symlink(target, &dest).map_err(io_err("creating symlink", &dest))?;
        if opts.preserve_owner {
            lchown(&dest, Some(meta.uid), Some(meta.gid))
                .map_err(io_err("changing owner of", &dest))?;
        }
        set_mtime_nofollow(&dest, meta.mtime)?;
    }
    dirs.sort_by_key(|(rel, _)| std::cmp::Reverse(rel.components().count()));
    for (rel, meta) in &dirs {
        let dest = root.join(rel);
        let dir = File::open(&dest).map_err(io_err("opening", &dest))?;
        apply_to_file(&dir, &dest, *meta, opts)?;
    }
    Ok(entries)
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

/// Resolves `target` lexically from the symlink's directory; parents cannot be symlinks
/// themselves (see `extract`), so lexical resolution is the real one.
fn symlink_stays_inside(link: &Path, target: &[u8]) -> bool {
    if target.starts_with(b"/") {
        return false;
    }
    let mut depth = link.components().count() as i64 - 1;
    for component in Path::new(OsStr::from_bytes(target)).components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// Walks `target` lexically from the link's directory and says whether any component before
/// the last is itself a symlink of the archive.
fn passes_through_symlink(link: &Path, target: &Path, symlinks: &HashSet<PathBuf>) -> bool {
    let mut at: Vec<&OsStr> = link
        .parent()
        .map(|p| p.iter().collect())
        .unwrap_or_default();
    let parts: Vec<Component> = target.components().collect();
    for (i, component) in parts.iter().enumerate() {
        match component {
            Component::Normal(name) => at.push(name),
            Component::ParentDir => {
                at.pop();
            }
            _ => {}
        }
        let last = i + 1 == parts.len();
        if !last && symlinks.contains(&at.iter().collect::<PathBuf>()) {
            return true;
        }
    }
    false
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
