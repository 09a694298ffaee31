//! `archive_dir`: one verified `.tar.gz` or `.tar.zst` per volume directory, written as
//! `.partial` and renamed into place only once it reads back correctly; an unchanged tree
//! becomes a hard link to the previous archive instead of being compressed again.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use tar::{EntryType, Header};

use crate::backup::codec::Codec;
use crate::backup::error::{check_name, io_err, BackupError};
use crate::backup::manifest::{
    listing_path, manifest_path, partial_path, write_durably, Base, Manifest,
};
use crate::backup::parallel::{compress_parallel, BlockSink, CopyError};
use crate::backup::retention::{list_archives, parse_file_name};
use crate::backup::timestamp::{Timestamp, DIFF_INFIX};
use crate::backup::verify::{check, read_regular, scan, Expected, Tail};
use crate::backup::walk::{escape, listing_path_of, walk, EntryStat, Node, NodeKind, Tree};

#[derive(Debug, Clone)]
pub(crate) struct ArchiveOptions {
    pub(crate) codec: Codec,
    /// In [`Codec::levels`].
    pub(crate) level: u32,
    /// Compression threads; 0 means one per CPU.
    pub(crate) threads: usize,
    /// ObjectNames the archive; `None` means now. Tests and replays set it.
    pub(crate) timestamp: Option<SystemTime>,
    /// Where the bytes read so far are counted, for a progress bar.
    pub(crate) progress: Option<Arc<ArchiveProgress>>,
    /// Write a differential against the newest full archive while that full is younger than
    /// this (less an hour, so a nightly run a few seconds early still counts a week as a week);
    /// `None`: every archive is a full one.
    pub(crate) full_every: Option<Duration>,
}

/// Read by the caller while an archive is written: file bytes in the tree, and read so far.
#[derive(Debug, Default)]
pub(crate) struct ArchiveProgress {
    pub(crate) total: AtomicU64,
    pub(crate) done: AtomicU64,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        ArchiveOptions {
            codec: Codec::Gzip,
            level: Codec::Gzip.default_level(),
            threads: 0,
            timestamp: None,
            progress: None,
            full_every: None,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ArchiveReport {
    pub(crate) archive: PathBuf,
    pub(crate) manifest: Manifest,
}

pub(crate) fn archive_dir(
    src_dir: &Path,
    dest_dir: &Path,
    name: &str,
    opts: &ArchiveOptions,
) -> Result<ArchiveReport, BackupError> {
    let started = Instant::now();
    check_name(name)?;
    let created = Timestamp::from(opts.timestamp.unwrap_or_else(SystemTime::now));
    let dir = dest_dir.join(name);
    make_private(dest_dir, &dir)?;
    // One archive per timestamp, whatever its format or kind: `restore --at` and retention go
    // by it.
    if let Some(taken) = archive_at(&dir, name, created)? {
        return Err(BackupError::AlreadyExists(taken));
    }
    remove_stale(&dir)?;
    let tree = walk(src_dir)?;
    let listing = tree.listing();
    let kind = choose(&dir, name, opts, created, &tree, &listing)?;
    let (base, base_at) = match &kind {
        Kind::Reuse { old, base_at, .. } => (old.base.clone(), *base_at),
        Kind::Full => (None, None),
        Kind::Differential(diff) => (Some(diff.base.clone()), Some(diff.base_at)),
    };
    let diff_infix = base_at.map_or_else(String::new, |at| format!("{DIFF_INFIX}{at}"));
    let archive = dir.join(format!(
        "{name}-{created}{diff_infix}{}",
        opts.codec.suffix()
    ));
    let include = |node: &Node| match &kind {
        Kind::Differential(d) => d.include.contains(&node.rel),
        _ => true,
    };
    if let Some(p) = &opts.progress {
        let total = tree
            .nodes
            .iter()
            .filter(|n| matches!(n.kind, NodeKind::File) && include(n))
            .map(|n| n.stat.size)
            .sum();
        p.total.store(total, Ordering::Relaxed);
    }
    let mut manifest = Manifest {
        name: name.to_string(),
        archive: file_name(&archive),
        created: created.to_string(),
        compression: opts.codec.name().to_string(),
        level: opts.level,
        sha256: String::new(),
        bytes_in: 0,
        bytes_out: 0,
        files: 0,
        entries: 0,
        duration_ms: 0,
        pi_setup_version: env!("CARGO_PKG_VERSION").to_string(),
        changed_files: Vec::new(),
        skipped: tree
            .skipped
            .iter()
            .map(|s| format!("{} ({})", escape(&s.path), s.kind))
            .collect(),
        reused_from: None,
        blocks: None,
        base,
        deleted: match &kind {
            Kind::Reuse { old, .. } => old.deleted.clone(),
            Kind::Full => Vec::new(),
            Kind::Differential(d) => d.deleted.clone(),
        },
    };
    let mut cleanup = Cleanup(vec![
        listing_path(&archive),
        manifest_path(&archive),
        partial_path(&archive),
        archive.clone(),
    ]);
    let mut changed = tree.vanished.clone();
    if let Kind::Reuse { previous, old, .. } = kind {
        // A hard link shares the verified bytes. It is made under the partial name and
        // renamed like a new archive, after the manifest: a final name never lacks one.
        let partial = partial_path(&archive);
        fs::hard_link(&previous, &partial).map_err(io_err("linking", &partial))?;
        manifest.sha256 = old.sha256;
        // The bytes are the old archive's, written at its level.
        manifest.level = old.level;
        manifest.bytes_in = old.bytes_in;
        manifest.bytes_out = old.bytes_out;
        manifest.files = old.files;
        manifest.entries = old.entries;
        manifest.reused_from = Some(old.archive);
        manifest.blocks = old.blocks;
    } else {
        let partial = partial_path(&archive);
        let out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .map_err(io_err("creating", &partial))?;
        // The umask may have taken bits from 0600 too; set exactly that.
        out.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io_err("changing mode of", &partial))?;
        // The read-back opens the file on its own and follows the writer, so it runs on
        // whatever the compressors leave idle instead of after them.
        let reread = File::open(&partial).map_err(io_err("opening", &partial))?;
        let threads = match opts.threads {
            0 => thread::available_parallelism().map_or(1, std::num::NonZero::get),
            n => n,
        };
        let (written_tx, written_rx) = channel();
        let (compressed, scanned) = thread::scope(|s| {
            let verifier = s.spawn(|| scan(Tail::new(reread, written_rx)));
            let compressed = compress_parallel(
                out,
                &partial,
                opts.codec,
                opts.level,
                threads,
                written_tx,
                |sink| {
                    let mut counted = Counted {
                        inner: sink,
                        progress: opts.progress.as_deref(),
                    };
                    let nodes = tree.nodes.iter().filter(|n| include(n));
                    write_tar(src_dir, nodes, &mut counted, &partial)
                },
            );
            let scanned = verifier
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            (compressed, scanned)
        });
        let (stats, compressed) = compressed?;
        let sha256 = hex::encode(compressed.sha256);
        // The writer has fsynced the file: what was read back is what it wrote to disk.
        let written = Expected {
            sha256: &sha256,
            entries: stats.entries,
            bytes_in: compressed.bytes_in,
            blocks: None,
        };
        check(&partial, scanned, &written)?;
        changed.extend(stats.changed);
        manifest.sha256 = sha256;
        manifest.bytes_in = compressed.bytes_in;
        manifest.bytes_out = compressed.bytes_out;
        manifest.files = stats.files;
        manifest.entries = stats.entries;
        manifest.blocks = Some(compressed.index);
    }
    manifest.changed_files = changed.iter().map(|p| escape(p)).collect();
    manifest.duration_ms = started.elapsed().as_millis() as u64;
    write_durably(&listing_path(&archive), listing.as_bytes())?;
    write_durably(&manifest_path(&archive), &manifest.to_bytes())?;
    let partial = partial_path(&archive);
    fs::rename(&partial, &archive).map_err(io_err("renaming", &partial))?;
    crate::host::sync_dir(&dir)?;
    cleanup.0.clear();
    Ok(ArchiveReport { archive, manifest })
}

/// Archives hold every secret of their volume (the gateway's CA private key among them), so
/// they are root's alone whatever the umask: the volume's archive directory is 0700 and every
/// file in it 0600, and so is the destination when this run creates it (one that exists, a
/// mount point maybe, keeps its mode). What an earlier version left readable, a reused archive
/// (hard-linked below) included, is fixed here before anything is written or linked.
fn make_private(dest_dir: &Path, dir: &Path) -> Result<(), BackupError> {
    let private_dir = |path: &Path| -> Result<bool, BackupError> {
        match fs::DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_err("creating", path)(e)),
        }
    };
    let set_mode = |path: &Path, mode: u32| {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(io_err("changing mode of", path))
    };
    if !dest_dir.exists() {
        if let Some(parent) = dest_dir.parent() {
            fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
        }
        if private_dir(dest_dir)? {
            set_mode(dest_dir, 0o700)?;
        }
    }
    private_dir(dir)?;
    let meta = fs::metadata(dir).map_err(io_err("reading", dir))?;
    if meta.mode() & 0o7777 != 0o700 {
        set_mode(dir, 0o700)?;
    }
    let entries = fs::read_dir(dir).map_err(io_err("listing directory", dir))?;
    for entry in entries {
        let entry = entry.map_err(io_err("listing directory", dir))?;
        let path = entry.path();
        // Only regular files: a symlink's mode means nothing, and chmod would follow it.
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("reading", &path)(e)),
        };
        if meta.is_file() && meta.mode() & 0o7777 != 0o600 {
            set_mode(&path, 0o600)?;
        }
    }
    Ok(())
}

/// What a killed run (SIGKILL, power loss) left in a volume's archive directory: `.partial`
/// files, and manifests or listings whose archive was never renamed into place. Callers hold
/// the backup lock, so no other run is writing here.
fn remove_stale(dir: &Path) -> Result<(), BackupError> {
    let entries = fs::read_dir(dir).map_err(io_err("listing directory", dir))?;
    for entry in entries {
        let entry = entry.map_err(io_err("listing directory", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let orphan_of = name
            .strip_suffix(".manifest.json")
            .or_else(|| name.strip_suffix(".listing"))
            .filter(|archive| !dir.join(archive).exists());
        if name.ends_with(".partial") || orphan_of.is_some() {
            let path = entry.path();
            crate::host::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Removes what a failed run left behind, so only complete archives ever carry final names.
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = crate::host::remove_file(path);
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// What this run writes.
enum Kind {
    /// The tree is as the newest good archive recorded it: a hard link to it (and its manifest),
    /// a differential of the same full if it is one (the full's timestamp from its file name).
    Reuse {
        previous: PathBuf,
        old: Box<Manifest>,
        base_at: Option<Timestamp>,
    },
    Full,
    Differential(Differential),
}

struct Differential {
    base: Base,
    base_at: Timestamp,
    /// Every directory, and every other entry that is new or changed since the full (a whole
    /// hard-link group when one of its names is).
    include: HashSet<PathBuf>,
    /// Paths of the full that are gone, escaped.
    deleted: Vec<String>,
}

/// A differential costs more than it saves when it would hold more than this share of the
/// tree's file bytes: a full is written instead (and the nights after start from it).
const DIFFERENTIAL_MAX_SHARE: f64 = 0.5;

/// Reuse when nothing changed; else a differential when `full_every` allows one and the newest
/// good full in this format is young enough and worth it; else a full.
fn choose(
    dir: &Path,
    name: &str,
    opts: &ArchiveOptions,
    created: Timestamp,
    tree: &Tree,
    listing: &str,
) -> Result<Kind, BackupError> {
    let archives = list_archives(dir.parent().unwrap_or(dir), name)?;
    // The full a differential would be made against: the newest good one, if it is recent.
    let full = opts.full_every.and_then(|every| {
        let newest = archives.iter().rev().find(|a| a.good && a.base.is_none())?;
        let age = SystemTime::from(created)
            .duration_since(SystemTime::from(newest.timestamp))
            .ok()?;
        (age + Duration::from_hours(1) < every).then_some(newest)
    });
    let readable = |path: &Path| -> Option<Manifest> {
        let m = Manifest::read_for(path).ok()?;
        (m.compression == opts.codec.name()).then_some(m)
    };
    if let Some(newest) = archives.iter().rev().find(|a| a.good) {
        // A differential is reused only while its full still may be.
        let allowed = newest.base.is_none() || newest.base == full.map(|f| f.timestamp);
        if let Some(old) = readable(&newest.path).filter(|m| allowed && m.changed_files.is_empty())
        {
            if read_regular(&listing_path(&newest.path)).is_ok_and(|l| l == listing.as_bytes()) {
                return Ok(Kind::Reuse {
                    previous: newest.path.clone(),
                    old: Box::new(old),
                    base_at: newest.base,
                });
            }
        }
    }
    let Some(full) = full else {
        return Ok(Kind::Full);
    };
    let Some(manifest) = readable(&full.path) else {
        return Ok(Kind::Full);
    };
    let Ok(old_listing) = read_regular(&listing_path(&full.path)) else {
        return Ok(Kind::Full);
    };
    let old_listing = String::from_utf8_lossy(&old_listing);
    let old: HashMap<&str, &str> = old_listing
        .lines()
        .filter_map(|line| Some((listing_path_of(line)?, line)))
        .collect();
    // Files the full may hold half-written are always written again.
    let unsure: HashSet<&str> = manifest.changed_files.iter().map(String::as_str).collect();
    let mut include: HashSet<PathBuf> = HashSet::new();
    let mut groups: HashSet<(u64, u64)> = HashSet::new();
    // Paths still there as the same kind of entry. One that changed kind (a directory that
    // became a file) counts as deleted too, so extracting the full, deleting what `deleted`
    // lists, then extracting the differential with GNU tar gives the tree as well.
    let mut present: HashSet<&str> = HashSet::with_capacity(tree.nodes.len());
    let (mut all_bytes, mut new_bytes) = (0u64, 0u64);
    // The listing has one line per node, in the same order: each line is compared as it is.
    for (node, line) in tree.nodes.iter().zip(listing.lines()) {
        let path = listing_path_of(line).unwrap_or_default();
        let is_file = matches!(node.kind, NodeKind::File);
        if is_file {
            all_bytes += node.stat.size;
        }
        let before = old.get(path).copied();
        let changed = before != Some(line) || unsure.contains(path);
        // The first character of a listing line is the entry's kind.
        if before.is_some_and(|b| b.as_bytes()[0] != line.as_bytes()[0]) {
            include.insert(node.rel.clone());
        } else {
            present.insert(path);
        }
        if matches!(node.kind, NodeKind::Dir) || changed {
            if is_file {
                new_bytes += node.stat.size;
                if node.stat.nlink > 1 {
                    groups.insert((node.stat.dev, node.stat.ino));
                }
            }
            include.insert(node.rel.clone());
        }
    }
    for node in &tree.nodes {
        if matches!(node.kind, NodeKind::File)
            && node.stat.nlink > 1
            && groups.contains(&(node.stat.dev, node.stat.ino))
            && include.insert(node.rel.clone())
        {
            new_bytes += node.stat.size;
        }
    }
    if new_bytes as f64 > all_bytes as f64 * DIFFERENTIAL_MAX_SHARE {
        return Ok(Kind::Full);
    }
    let deleted = old_listing
        .lines()
        .filter_map(listing_path_of)
        .filter(|p| !present.contains(p))
        .map(str::to_string)
        .collect();
    Ok(Kind::Differential(Differential {
        base_at: full.timestamp,
        base: Base {
            archive: manifest.archive,
            sha256: manifest.sha256,
        },
        include,
        deleted,
    }))
}

/// The archive (full or differential, any format) of `name` with this timestamp, if any.
fn archive_at(dir: &Path, name: &str, at: Timestamp) -> Result<Option<PathBuf>, BackupError> {
    let entries = fs::read_dir(dir).map_err(io_err("listing directory", dir))?;
    for entry in entries {
        let entry = entry.map_err(io_err("listing directory", dir))?;
        let file = entry.file_name();
        if file
            .to_str()
            .and_then(|f| parse_file_name(f, name))
            .is_some_and(|(t, _)| t == at)
        {
            return Ok(Some(entry.path()));
        }
    }
    Ok(None)
}

struct TarStats {
    files: u64,
    entries: u64,
    changed: Vec<PathBuf>,
}

/// Passes the tar stream on; file data copied through it is counted for the progress bar,
/// whose total is the files' sizes (headers and padding are not counted).
struct Counted<'a, W> {
    inner: W,
    progress: Option<&'a ArchiveProgress>,
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

type Sink<'a, 'b> = Counted<'a, &'b mut BlockSink>;

impl Sink<'_, '_> {
    /// File data goes straight into the compressor's blocks, past `write`: counted here.
    fn copy_exact(&mut self, src: &mut impl io::Read, size: u64) -> Result<u64, CopyError> {
        let copied = self.inner.copy_exact(src, size)?;
        if let Some(p) = self.progress {
            p.done.fetch_add(size, Ordering::Relaxed);
        }
        Ok(copied)
    }
}

fn write_tar<'n>(
    root: &Path,
    nodes: impl Iterator<Item = &'n Node>,
    sink: &mut Sink,
    partial: &Path,
) -> Result<TarStats, BackupError> {
    let sink_err = io_err("writing", partial);
    let mut stats = TarStats {
        files: 0,
        entries: 0,
        changed: Vec::new(),
    };
    // First archived path of each multiply-linked inode; later names become hard-link entries.
    let mut first_names: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut builder = tar::Builder::new(sink);
    for node in nodes {
        match &node.kind {
            NodeKind::Dir => {
                let mut h = header(EntryType::Directory, &node.stat, 0);
                builder
                    .append_data(&mut h, &node.rel, io::empty())
                    .map_err(io_err("writing", partial))?;
            }
            NodeKind::Symlink(target) => {
                let mut h = header(EntryType::Symlink, &node.stat, 0);
                builder
                    .append_link(&mut h, &node.rel, target)
                    .map_err(io_err("writing", partial))?;
            }
            NodeKind::Fifo | NodeKind::CharDevice | NodeKind::BlockDevice => {
                let (kind, device) = match node.kind {
                    NodeKind::Fifo => (EntryType::Fifo, None),
                    NodeKind::CharDevice => (EntryType::Char, Some(node.stat.rdev)),
                    _ => (EntryType::Block, Some(node.stat.rdev)),
                };
                let mut h = header(kind, &node.stat, 0);
                if let Some(rdev) = device {
                    h.set_device_major(nix::sys::stat::major(rdev) as u32)
                        .and_then(|()| h.set_device_minor(nix::sys::stat::minor(rdev) as u32))
                        .map_err(io_err("writing", partial))?;
                }
                builder
                    .append_data(&mut h, &node.rel, io::empty())
                    .map_err(io_err("writing", partial))?;
            }
            NodeKind::File => {
                if !append_file(
                    root,
                    node,
                    &mut builder,
                    &mut first_names,
                    &mut stats,
                    partial,
                )? {
                    continue;
                }
                stats.files += 1;
            }
        }
        stats.entries += 1;
    }
    builder.into_inner().map_err(sink_err)?;
    Ok(stats)
}

#[cfg(test)]
type Hook = Box<dyn FnMut(&Path)>;

#[cfg(test)]
thread_local! {
    /// Runs after a file's header is fixed and before its data is read: tests grow or shrink
    /// the file here to reproduce a file changing under the archiver deterministically.
    pub(crate) static AFTER_OPEN: std::cell::RefCell<Option<Hook>> = std::cell::RefCell::new(None);
}

/// Appends one regular file (or a hard link to an earlier one). Returns false if the file was
/// gone or no longer a regular file, which is recorded as a change rather than failing the run.
fn append_file(
    root: &Path,
    node: &Node,
    builder: &mut tar::Builder<&mut Sink>,
    first_names: &mut HashMap<(u64, u64), PathBuf>,
    stats: &mut TarStats,
    partial: &Path,
) -> Result<bool, BackupError> {
    let abs = root.join(&node.rel);
    // O_NOFOLLOW: the entry may have been replaced by a symlink since the walk.
    // O_NONBLOCK: ... or by a FIFO, which would otherwise block the open forever.
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(&abs);
    let mut file = match opened {
        Ok(f) => f,
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                || e.raw_os_error() == Some(nix::libc::ELOOP) =>
        {
            stats.changed.push(node.rel.clone());
            return Ok(false);
        }
        Err(e) => return Err(io_err("opening", &abs)(e)),
    };
    let meta = file.metadata().map_err(io_err("reading", &abs))?;
    if !meta.is_file() {
        stats.changed.push(node.rel.clone());
        return Ok(false);
    }
    let before = EntryStat::of(&meta);
    let mut changed = node.stat.content_changed(&before);
    if before.nlink > 1 {
        if let Some(first) = first_names.get(&(before.dev, before.ino)) {
            let mut h = header(EntryType::Link, &before, 0);
            builder
                .append_link(&mut h, &node.rel, first)
                .map_err(io_err("writing", partial))?;
            if changed {
                stats.changed.push(node.rel.clone());
            }
            return Ok(true);
        }
    }
    #[cfg(test)]
    AFTER_OPEN.with(|hook| {
        if let Some(hook) = hook.borrow_mut().as_mut() {
            hook(&abs);
        }
    });
    let mut h = header(EntryType::Regular, &before, before.size);
    // An empty reader makes the tar crate write only the header (plus any GNU long-name
    // record); the data is copied below, capped at the header's size (tar-rs #352, #282).
    builder
        .append_data(&mut h, &node.rel, io::empty())
        .map_err(io_err("writing", partial))?;
    let sink = builder.get_mut();
    let read = sink
        .copy_exact(&mut file, before.size)
        .map_err(|e| match e {
            CopyError::Source(e) => io_err("reading", &abs)(e),
            CopyError::Sink(e) => io_err("writing", partial)(e),
        })?;
    let padding = (512 - before.size % 512) % 512;
    sink.write_all(&[0; 512][..padding as usize])
        .map_err(io_err("writing", partial))?;
    let after = EntryStat::of(&file.metadata().map_err(io_err("reading", &abs))?);
    changed |= read != before.size || before.content_changed(&after);
    if changed {
        stats.changed.push(node.rel.clone());
    }
    if before.nlink > 1 {
        first_names.insert((before.dev, before.ino), node.rel.clone());
    }
    Ok(true)
}

fn header(kind: EntryType, stat: &EntryStat, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(stat.mode & 0o7777);
    h.set_uid(u64::from(stat.uid));
    h.set_gid(u64::from(stat.gid));
    h.set_mtime(stat.mtime.0.max(0) as u64);
    h
}
