//! Reading an archive back: its sha256 against the manifest, and a full decompress and tar
//! parse with the manifest's entry count. A new archive is read back while it is being
//! written ([`Tail`]), so verifying it costs idle cores rather than time at the end.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread;

use sha2::{Digest, Sha256};

use crate::backup::codec::Codec;
use crate::backup::error::{io_err, BackupError};
use crate::backup::manifest::{BlockIndex, Manifest};
use crate::backup::parallel::decompress_parallel;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VerifyReport {
    pub(crate) archive: PathBuf,
    pub(crate) sha256: String,
    pub(crate) entries: u64,
    /// Uncompressed tar stream size.
    pub(crate) bytes_in: u64,
}

/// Reads an archive back against its manifest; of a differential, also checks that its full
/// archive is beside it and is the one it was made against (the full is verified on its own).
pub(crate) fn verify_archive(path: &Path) -> Result<VerifyReport, BackupError> {
    let manifest = Manifest::read_for(path)?;
    crate::backup::restore::full_of(path, &manifest)?;
    read_back_against(path, manifest)
}

/// Reads an archive back against its manifest, and nothing else (a fetched differential's full
/// is checked where it is stored).
pub(crate) fn verify_bytes(path: &Path) -> Result<VerifyReport, BackupError> {
    read_back_against(path, Manifest::read_for(path)?)
}

fn read_back_against(path: &Path, manifest: Manifest) -> Result<VerifyReport, BackupError> {
    let back = read_back(path, &Expected::of(&manifest))?;
    Ok(VerifyReport {
        archive: path.to_path_buf(),
        sha256: manifest.sha256,
        entries: back.entries,
        bytes_in: back.bytes_in,
    })
}

pub(crate) struct ReadBack {
    pub(crate) entries: u64,
    pub(crate) bytes_in: u64,
}

const CHUNK: usize = 256 << 10;

/// What an archive must read back as: its manifest's figures, or for a new archive what was
/// written.
pub(crate) struct Expected<'a> {
    pub(crate) sha256: &'a str,
    pub(crate) entries: u64,
    /// The uncompressed tar stream's length: a stream cut after its last entry at a block (and
    /// so zstd frame) boundary still parses, with the entry count right, but comes up short.
    pub(crate) bytes_in: u64,
    /// Where its units are, to read it back on every core; without, in one stream.
    pub(crate) blocks: Option<(Codec, &'a BlockIndex)>,
}

impl Expected<'_> {
    pub(crate) fn of(manifest: &Manifest) -> Expected<'_> {
        Expected {
            sha256: &manifest.sha256,
            entries: manifest.entries,
            bytes_in: manifest.bytes_in,
            blocks: manifest.block_index(),
        }
    }
}

/// Reads a finished archive back and checks it against `expected`.
pub(crate) fn read_back(path: &Path, expected: &Expected) -> Result<ReadBack, BackupError> {
    let file = open_regular(path)?;
    let scanned = match expected.blocks {
        Some((codec, index)) => scan_blocks(file, path, codec, index),
        None => scan(file),
    };
    check(path, scanned, expected)
}

/// [`scan`] for an archive with a block index: its units decompressed on every core.
fn scan_blocks(file: File, path: &Path, codec: Codec, index: &BlockIndex) -> Scan {
    let (parsed, unpacked) = decompress_parallel(file, path, codec, index, true, cores(), |src| {
        parse_tar(src)
    });
    Scan {
        sha256: unpacked
            .sha256
            .unwrap_or_else(|| Err(io::Error::other("the archive was not hashed")))
            .map(hex::encode),
        // A unit that failed says more than the tar parser's view of its bytes.
        parsed: unpacked.decoded.and(parsed),
    }
}

/// Threads to decompress on: one per core.
pub(crate) fn cores() -> usize {
    thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// Opens an archive, manifest or listing for reading, if it is a regular file. Whatever else
/// sits under such a name is refused before a byte is read: a FIFO would block the open or
/// the read forever (with the lock held), a symlink to `/dev/zero` would feed the decompressor
/// without end. `O_NOFOLLOW` makes opening a symlink fail, `O_NONBLOCK` makes opening a FIFO
/// return at once (it changes nothing for a regular file); `fstat` then judges the file that
/// was opened, not the name.
pub(crate) fn open_regular(path: &Path) -> Result<File, BackupError> {
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path);
    let file = match opened {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(BackupError::NotRegularFile(path.to_path_buf()))
        }
        Err(e) => return Err(io_err("opening", path)(e)),
    };
    let meta = file.metadata().map_err(io_err("reading", path))?;
    if !meta.is_file() {
        return Err(BackupError::NotRegularFile(path.to_path_buf()));
    }
    Ok(file)
}

/// The whole of a regular file (see [`open_regular`]).
pub(crate) fn read_regular(path: &Path) -> Result<Vec<u8>, BackupError> {
    let mut bytes = Vec::new();
    open_regular(path)?
        .read_to_end(&mut bytes)
        .map_err(io_err("reading", path))?;
    Ok(bytes)
}

/// What reading an archive found: the sha256 of its bytes, and its parsed tar stream.
pub(crate) struct Scan {
    sha256: io::Result<String>,
    parsed: io::Result<ReadBack>,
}

/// Hashes `src` on one thread while decompressing and parsing it on this one, so a read-back
/// costs about the time of the slower of the two rather than their sum.
pub(crate) fn scan(mut src: impl Read + Send) -> Scan {
    let (tx, rx) = sync_channel::<Vec<u8>>(2);
    let (parsed, sha256) = thread::scope(|s| {
        let hasher = s.spawn(move || -> io::Result<String> {
            let mut sha = Sha256::new();
            loop {
                let mut chunk = vec![0; CHUNK];
                let n = read_full(&mut src, &mut chunk)?;
                chunk.truncate(n);
                sha.update(&chunk);
                // The parser may stop early (e.g. on corrupt data); keep hashing regardless.
                let _ = tx.send(chunk);
                if n < CHUNK {
                    return Ok(hex::encode(sha.finalize()));
                }
            }
        });
        let parsed = parse(ChunkReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
        });
        (
            parsed,
            hasher
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p)),
        )
    });
    Scan { sha256, parsed }
}

/// Compares a [`Scan`] of the archive at `path` with the figures it must have.
pub(crate) fn check(path: &Path, scan: Scan, expected: &Expected) -> Result<ReadBack, BackupError> {
    let Expected {
        sha256,
        entries,
        bytes_in,
        blocks: _,
    } = *expected;
    let corrupt = |reason: String| BackupError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let actual = scan.sha256.map_err(io_err("reading", path))?;
    if actual != sha256 {
        return Err(corrupt(format!(
            "sha256 is {actual}, the manifest says {sha256}"
        )));
    }
    let back = scan.parsed.map_err(|e| corrupt(e.to_string()))?;
    if back.entries != entries {
        return Err(corrupt(format!(
            "{} entries, the manifest says {entries}",
            back.entries
        )));
    }
    if back.bytes_in != bytes_in {
        return Err(corrupt(format!(
            "decompresses to {} bytes, the manifest says {bytes_in}",
            back.bytes_in
        )));
    }
    Ok(back)
}

fn parse(input: ChunkReader) -> io::Result<ReadBack> {
    parse_tar(Codec::decoder(BufReader::with_capacity(CHUNK, input))?)
}

/// Walks an uncompressed tar stream to its end: entries, and bytes.
fn parse_tar(stream: impl Read) -> io::Result<ReadBack> {
    let mut archive = tar::Archive::new(CountingReader {
        inner: stream,
        count: 0,
    });
    let mut entries = 0;
    for entry in archive.entries()? {
        let mut entry = entry?;
        // Reading the data checks that the stream really holds the size each header claims.
        io::copy(&mut entry, &mut io::sink())?;
        entries += 1;
    }
    // The rest (tar's end-of-archive blocks) must still decompress and match the checksum.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink())?;
    Ok(ReadBack {
        entries,
        bytes_in: rest.count,
    })
}

/// Fills `buf` unless the stream ends first; returns how much was read.
pub(super) fn read_full(file: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads a file as it is being written: the writer announces how many bytes it has written so
/// far, and end of file is where it stopped (its sender dropped).
pub(crate) struct Tail {
    file: File,
    written: Receiver<u64>,
    available: u64,
    pos: u64,
}

impl Tail {
    pub(crate) fn new(file: File, written: Receiver<u64>) -> Tail {
        Tail {
            file,
            written,
            available: 0,
            pos: 0,
        }
    }
}

impl Read for Tail {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // The newest announcement without waiting; wait only once everything announced is read.
        while let Ok(n) = self.written.try_recv() {
            self.available = n;
        }
        while self.pos == self.available {
            match self.written.recv() {
                Ok(n) => self.available = n,
                Err(_) => return Ok(0),
            }
        }
        let want = buf.len().min((self.available - self.pos) as usize);
        let n = self.file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the file ends at byte {} though {} were written",
                    self.pos, self.available
                ),
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

struct ChunkReader {
    rx: Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}
