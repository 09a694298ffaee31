//! The manifest written beside each archive, and the file names that tie an archive, its
//! manifest and its listing together.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backup::codec::Codec;
use crate::backup::error::BackupError;
use crate::backup::verify::read_regular;

const MANIFEST_SUFFIX: &str = ".manifest.json";
const LISTING_SUFFIX: &str = ".listing";
const PARTIAL_SUFFIX: &str = ".partial";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Manifest {
    /// Backup (volume) name.
    pub(crate) name: String,
    /// File name of the archive this manifest describes.
    pub(crate) archive: String,
    /// UTC `YYYYMMDDTHHMMSSZ`, as in the file name.
    pub(crate) created: String,
    pub(crate) compression: String,
    pub(crate) level: u32,
    /// Of the archive file as written.
    pub(crate) sha256: String,
    /// Uncompressed tar stream.
    pub(crate) bytes_in: u64,
    /// Archive file size.
    pub(crate) bytes_out: u64,
    pub(crate) files: u64,
    /// Tar entries (directories, files, symlinks, hard links, FIFOs, device nodes); GNU
    /// long-name records excluded.
    pub(crate) entries: u64,
    pub(crate) duration_ms: u64,
    pub(crate) pi_setup_version: String,
    /// Files whose content or metadata changed while they were read (path escaped as in the
    /// listing). Their entries are well-formed but may not be a consistent snapshot.
    pub(crate) changed_files: Vec<String>,
    /// Sockets (GNU tar skips them too: nothing can be restored into one), as `path (kind)`.
    pub(crate) skipped: Vec<String>,
    /// Set when the tree was unchanged and this archive is a hard link to an earlier one.
    pub(crate) reused_from: Option<String>,
    /// Where each gzip member or zstd frame lies, so restore and verify decompress them on
    /// every core. Manifests written before it existed have none: their archives are read in
    /// one sequential stream, as they always were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) blocks: Option<BlockIndex>,
    /// Set on a differential: the full archive (a file name in the same directory) it holds
    /// the changes since, and that archive's sha256. The differential holds every directory
    /// and every other entry that is new or changed since the full; restore extracts the full
    /// without what the differential replaces or `deleted` names, then the differential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) base: Option<Base>,
    /// Of a differential: paths of the full that are gone (escaped as in the listing), each
    /// one listed, also those under a deleted directory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) deleted: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Base {
    pub(crate) archive: String,
    pub(crate) sha256: String,
}

/// The gzip members or zstd frames of an archive, in file order, each as its compressed and
/// uncompressed size: a unit starts where the one before it ends, so the offsets are the
/// running sums and cannot disagree with the sizes. Each unit decompresses on its own (its own
/// CRC or frame checksum) to at most one block.
///
/// In the manifest it is one string, `"C/U C/U ..."`: pretty-printed JSON would give each
/// number a line of its own (a 10 GB archive holds about 10,000 units).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BlockIndex(pub(crate) Vec<Unit>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unit {
    pub(crate) compressed: u32,
    pub(crate) uncompressed: u32,
}

impl BlockIndex {
    /// The uncompressed stream's length.
    pub(crate) fn uncompressed(&self) -> u64 {
        self.0.iter().map(|u| u64::from(u.uncompressed)).sum()
    }
}

impl Serialize for BlockIndex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut text = String::with_capacity(self.0.len() * 16);
        for (i, u) in self.0.iter().enumerate() {
            if i > 0 {
                text.push(' ');
            }
            let _ = write!(text, "{}/{}", u.compressed, u.uncompressed);
        }
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for BlockIndex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.split_ascii_whitespace()
            .map(|pair| {
                let (c, u) = pair.split_once('/')?;
                Some(Unit {
                    compressed: c.parse().ok()?,
                    uncompressed: u.parse().ok()?,
                })
            })
            .collect::<Option<Vec<Unit>>>()
            .map(BlockIndex)
            .ok_or_else(|| {
                serde::de::Error::custom("blocks: expected \"COMPRESSED/UNCOMPRESSED ...\"")
            })
    }
}

pub(crate) fn manifest_path(archive: &Path) -> PathBuf {
    with_suffix(archive, MANIFEST_SUFFIX)
}

pub(crate) fn listing_path(archive: &Path) -> PathBuf {
    with_suffix(archive, LISTING_SUFFIX)
}

pub(crate) fn partial_path(path: &Path) -> PathBuf {
    with_suffix(path, PARTIAL_SUFFIX)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

impl Manifest {
    /// The manifest beside `archive`; only a regular file is read (see
    /// [`crate::backup::verify::open_regular`]).
    pub(crate) fn read_for(archive: &Path) -> Result<Manifest, BackupError> {
        let path = manifest_path(archive);
        let text = read_regular(&path)?;
        serde_json::from_slice(&text).map_err(|source| BackupError::Manifest { path, source })
    }

    /// The archive's format and block index, if it has one this version can use.
    pub(crate) fn block_index(&self) -> Option<(Codec, &BlockIndex)> {
        Some((Codec::parse(&self.compression)?, self.blocks.as_ref()?))
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut text = serde_json::to_vec_pretty(self).expect("manifest serializes");
        text.push(b'\n');
        text
    }
}

/// Writes a manifest or listing: atomically (a temporary file, fsynced, renamed, the
/// directory fsynced), and private to root whatever the umask, like the archive it describes.
pub(crate) fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    Ok(crate::host::write_atomic(path, bytes, 0o600)?)
}
