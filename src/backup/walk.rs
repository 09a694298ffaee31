//! Walks a volume directory without following symlinks and records what is there: the entries
//! to archive, the listing that tells an unchanged tree from a changed one, and what was skipped.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::backup::error::{io_err, BackupError};

/// The metadata that goes into a tar header and into the listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntryStat {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) nlink: u64,
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) size: u64,
    /// The device a character or block device node stands for.
    pub(crate) rdev: u64,
    pub(crate) mtime: (i64, i64),
    /// ctime catches content rewritten with its mtime put back (rsync -t, `touch -r`).
    pub(crate) ctime: (i64, i64),
}

impl EntryStat {
    pub(crate) fn of(m: &Metadata) -> Self {
        EntryStat {
            dev: m.dev(),
            ino: m.ino(),
            nlink: m.nlink(),
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            size: m.size(),
            rdev: m.rdev(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }

    /// Whether the file's content may differ from when `self` was taken.
    pub(crate) fn content_changed(&self, now: &EntryStat) -> bool {
        self.ino != now.ino
            || self.size != now.size
            || self.mtime != now.mtime
            || self.ctime != now.ctime
    }
}

#[derive(Debug)]
pub(crate) enum NodeKind {
    Dir,
    File,
    Symlink(PathBuf),
    /// Archived as GNU tar does: a header with no data (and the device numbers), so that it
    /// can be made again on extraction.
    Fifo,
    CharDevice,
    BlockDevice,
}

#[derive(Debug)]
pub(crate) struct Node {
    /// Relative to the walked root; the root itself is `.`.
    pub(crate) rel: PathBuf,
    pub(crate) kind: NodeKind,
    pub(crate) stat: EntryStat,
}

/// An entry that cannot be archived: a socket (GNU tar skips them too; whatever listens on
/// one makes it again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SkippedEntry {
    pub(crate) path: PathBuf,
    pub(crate) kind: &'static str,
}

#[derive(Debug)]
pub(crate) struct Tree {
    /// Parents come before their children, siblings in byte order, so the archive is
    /// deterministic and extracts in one pass.
    pub(crate) nodes: Vec<Node>,
    pub(crate) skipped: Vec<SkippedEntry>,
    /// Entries that disappeared between listing their directory and looking at them.
    pub(crate) vanished: Vec<PathBuf>,
}

pub(crate) fn walk(root: &Path) -> Result<Tree, BackupError> {
    let meta = fs::symlink_metadata(root).map_err(io_err("reading", root))?;
    if !meta.is_dir() {
        return Err(BackupError::NotADirectory(root.to_path_buf()));
    }
    let mut tree = Tree {
        nodes: vec![Node {
            rel: PathBuf::from("."),
            kind: NodeKind::Dir,
            stat: EntryStat::of(&meta),
        }],
        skipped: Vec::new(),
        vanished: Vec::new(),
    };
    let mut stack = children(root, Path::new(""))?.unwrap_or_default();
    while let Some(rel) = stack.pop() {
        let abs = root.join(&rel);
        let meta = match fs::symlink_metadata(&abs) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tree.vanished.push(rel);
                continue;
            }
            Err(e) => return Err(io_err("reading", &abs)(e)),
        };
        let file_type = meta.file_type();
        let kind = if file_type.is_dir() {
            if let Some(mut entries) = children(&abs, &rel)? {
                stack.append(&mut entries);
            } else {
                tree.vanished.push(rel);
                continue;
            }
            NodeKind::Dir
        } else if file_type.is_file() {
            NodeKind::File
        } else if file_type.is_symlink() {
            match fs::read_link(&abs) {
                Ok(target) => NodeKind::Symlink(target),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    tree.vanished.push(rel);
                    continue;
                }
                Err(e) => return Err(io_err("reading symlink", &abs)(e)),
            }
        } else if file_type.is_fifo() {
            NodeKind::Fifo
        } else if file_type.is_char_device() {
            NodeKind::CharDevice
        } else if file_type.is_block_device() {
            NodeKind::BlockDevice
        } else {
            let kind = if file_type.is_socket() {
                "socket"
            } else {
                "unknown type"
            };
            tree.skipped.push(SkippedEntry { path: rel, kind });
            continue;
        };
        tree.nodes.push(Node {
            rel,
            kind,
            stat: EntryStat::of(&meta),
        });
    }
    Ok(tree)
}

/// The directory's entries as relative paths, in reverse byte order so popping them off a stack
/// visits them in order; `None` if the directory vanished.
fn children(abs: &Path, rel: &Path) -> Result<Option<Vec<PathBuf>>, BackupError> {
    let reader = match fs::read_dir(abs) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("listing directory", abs)(e)),
    };
    let mut names: Vec<OsString> = Vec::new();
    for entry in reader {
        names.push(entry.map_err(io_err("listing directory", abs))?.file_name());
    }
    names.sort_unstable_by(|a, b| b.cmp(a));
    Ok(Some(names.into_iter().map(|n| rel.join(n)).collect()))
}

impl Tree {
    /// One line per entry with everything whose change must produce a new archive. Comparing
    /// two listings byte for byte is the whole "unchanged" test.
    pub(crate) fn listing(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            out.push_str(&node.listing_line());
            out.push('\n');
        }
        out
    }
}

impl Node {
    /// This entry's line of [`Tree::listing`], without the newline.
    pub(crate) fn listing_line(&self) -> String {
        let s = &self.stat;
        let kind = match self.kind {
            NodeKind::Dir => 'd',
            NodeKind::File => 'f',
            NodeKind::Symlink(_) => 'l',
            NodeKind::Fifo => 'p',
            NodeKind::CharDevice => 'c',
            NodeKind::BlockDevice => 'b',
        };
        let mut out = format!(
            "{kind} {:o} {} {} {} {}.{:09} {}.{:09} {} {}",
            s.mode,
            s.uid,
            s.gid,
            s.size,
            s.mtime.0,
            s.mtime.1,
            s.ctime.0,
            s.ctime.1,
            s.ino,
            escape(&self.rel)
        );
        match &self.kind {
            NodeKind::Symlink(target) => {
                let _ = write!(out, " -> {}", escape(target));
            }
            NodeKind::CharDevice | NodeKind::BlockDevice => {
                let _ = write!(out, " {}", s.rdev);
            }
            _ => {}
        }
        out
    }
}

/// The escaped path of a listing line (its ninth field).
pub(crate) fn listing_path_of(line: &str) -> Option<&str> {
    line.split(' ').nth(8)
}

/// The bytes [`escape`] was given.
pub(crate) fn unescape(escaped: &str) -> Option<PathBuf> {
    let b = escaped.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            let hex = escaped
                .get(i + 2..i + 4)
                .filter(|_| b.get(i + 1) == Some(&b'x'))?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(PathBuf::from(OsString::from_vec(out)))
}

/// A path as printable ASCII without spaces (bytes outside that, and `\`, as `\xHH`), so
/// listings stay one entry per line and non-UTF-8 names survive JSON manifests.
pub(crate) fn escape(path: &Path) -> String {
    let mut out = String::new();
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_graphic() && b != b'\\' {
            out.push(b as char);
        } else {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}
