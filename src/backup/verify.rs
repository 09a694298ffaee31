//! Reading an archive back: its sha256 against the manifest, and a full decompress and tar
//! parse with the manifest's entry count.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread;

use sha2::{Digest, Sha256};

use crate::backup::codec::Codec;
use crate::backup::error::{io_err, BackupError};
use crate::backup::manifest::Manifest;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub archive: PathBuf,
    pub sha256: String,
    pub entries: u64,
    /// Uncompressed tar stream size.
    pub bytes_in: u64,
}

pub fn verify_archive(path: &Path) -> Result<VerifyReport, BackupError> {
    let manifest = Manifest::read_for(path)?;
    let back = read_back(path, &manifest.sha256, manifest.entries)?;
    Ok(VerifyReport {
        archive: path.to_path_buf(),
        sha256: manifest.sha256,
        entries: back.entries,
        bytes_in: back.bytes_in,
    })
}

pub(crate) struct ReadBack {
    pub entries: u64,
    pub bytes_in: u64,
}

const CHUNK: usize = 1 << 20;

/// Hashes the file on one thread while decompressing and parsing it on this one, so a read-back
/// costs about the time of the slower of the two rather than their sum.
pub(crate) fn read_back(path: &Path, sha256: &str, entries: u64) -> Result<ReadBack, BackupError> {
    let corrupt = |reason: String| BackupError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let codec = Codec::sniff(path).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidData => corrupt(e.to_string()),
        _ => io_err("opening", path)(e),
    })?;
    let mut file = File::open(path).map_err(io_err("opening", path))?;
    let (tx, rx) = sync_channel::<Vec<u8>>(4);
    let (parsed, hashed) = thread::scope(|s| {
        let hasher = s.spawn(move || -> io::Result<String> {
            let mut sha = Sha256::new();
            loop {
                let mut chunk = vec![0; CHUNK];
                let n = read_full(&mut file, &mut chunk)?;
                chunk.truncate(n);
                sha.update(&chunk);
                // The parser may stop early (e.g. on corrupt data); keep hashing regardless.
                let _ = tx.send(chunk);
                if n < CHUNK {
                    return Ok(hex::encode(sha.finalize()));
                }
            }
        });
        let parsed = parse(
            codec,
            ChunkReader {
                rx,
                chunk: Vec::new(),
                pos: 0,
            },
        );
        (
            parsed,
            hasher
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p)),
        )
    });
    let actual = hashed.map_err(io_err("reading", path))?;
    if actual != sha256 {
        return Err(corrupt(format!(
            "sha256 is {actual}, the manifest says {sha256}"
        )));
    }
    let back = parsed.map_err(|e| corrupt(e.to_string()))?;
    if back.entries != entries {
        return Err(corrupt(format!(
            "{} entries, the manifest says {entries}",
            back.entries
        )));
    }
    Ok(back)
}

fn parse(codec: Codec, input: ChunkReader) -> io::Result<ReadBack> {
    let mut archive = tar::Archive::new(CountingReader {
        inner: codec.decoder(BufReader::with_capacity(CHUNK, input))?,
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

fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
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
