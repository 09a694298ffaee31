//! Compression on every core: the tar stream is cut into blocks that worker threads compress
//! independently, and a writer thread puts them out in order, hashing exactly the bytes it
//! writes.
//!
//! gzip, in the style of `bgzip` and `pigz --independent`: each block becomes one or more
//! complete gzip members (libdeflate), each with its own CRC; a gzip file may hold any number of
//! members, which gzip, GNU tar, bsdtar and every other multi-member reader decompress in
//! sequence. Runs of a block whose bytes look uniformly random (media, already-compressed files)
//! are stored instead of deflated: deflate cannot shrink them and spends most of its time
//! failing to.
//!
//! zstd, in the style of `pzstd`: each block becomes one complete frame with its own checksum;
//! a zstd file may hold any number of frames, which every decoder reads in sequence.

use crate::backup::verify::read_full;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::mem;
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread;

use libdeflater::{CompressionLvl, Compressor};
use sha2::{Digest, Sha256};
use zstd::zstd_safe::CParameter;

use crate::backup::codec::Codec;
use crate::backup::error::{io_err, BackupError};
use crate::backup::manifest::{BlockIndex, Unit};

/// Uncompressed bytes per block. Blocks share no window, in either format. For zstd, 2 MiB
/// blocks were measured no smaller than 1 MiB ones on ci/bench-backup's data, and slower and
/// bigger in memory; gzip's 32 KiB window loses next to nothing at a block's start.
const BLOCK: usize = 1 << 20;

pub(crate) struct Compressed {
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) sha256: [u8; 32],
    /// Every gzip member or zstd frame written, in order.
    pub(crate) index: BlockIndex,
}

struct Job {
    seq: u64,
    block: Vec<u8>,
    len: usize,
    last: bool,
}

struct Done {
    seq: u64,
    block: Vec<u8>,
    compressed: io::Result<(Vec<u8>, Vec<Unit>)>,
    last: bool,
}

/// The producer's end of the pipeline: tar data goes in, full blocks go to the workers.
pub(crate) struct BlockSink {
    current: Vec<u8>,
    filled: usize,
    seq: u64,
    bytes: u64,
    jobs: SyncSender<Job>,
    /// Blocks come back from the writer once written; waiting for one bounds memory.
    free: Receiver<Vec<u8>>,
}

/// Why copying a file's data into the archive stopped: the caller names the source file for
/// the first and the archive for the second.
pub(crate) enum CopyError {
    Source(io::Error),
    Sink(io::Error),
}

fn stopped() -> io::Error {
    io::Error::other("the compression pipeline stopped")
}

impl BlockSink {
    fn make_room(&mut self) -> io::Result<()> {
        if self.filled == self.current.len() {
            self.dispatch(false)?;
        }
        Ok(())
    }

    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        let next = if last {
            Vec::new()
        } else {
            self.free.recv().map_err(|_| stopped())?
        };
        let block = mem::replace(&mut self.current, next);
        let len = mem::replace(&mut self.filled, 0);
        let job = Job {
            seq: self.seq,
            block,
            len,
            last,
        };
        self.seq += 1;
        self.jobs.send(job).map_err(|_| stopped())
    }

    /// Copies exactly `size` bytes from `src`, padding with zeros if it ends early, so the
    /// entry always matches its header however the file changes meanwhile. Returns how many
    /// bytes really came from `src`.
    pub(crate) fn copy_exact(&mut self, src: &mut impl Read, size: u64) -> Result<u64, CopyError> {
        let mut remaining = size;
        let mut from_src = 0;
        let mut at_eof = false;
        while remaining > 0 {
            self.make_room().map_err(CopyError::Sink)?;
            let room = (self.current.len() - self.filled).min(remaining as usize);
            let dst = &mut self.current[self.filled..self.filled + room];
            let n = if at_eof {
                dst.fill(0);
                room
            } else {
                match src.read(dst) {
                    Ok(0) => {
                        at_eof = true;
                        continue;
                    }
                    Ok(n) => {
                        from_src += n as u64;
                        n
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(CopyError::Source(e)),
                }
            };
            self.filled += n;
            self.bytes += n as u64;
            remaining -= n as u64;
        }
        Ok(from_src)
    }

    fn finish(mut self) -> io::Result<u64> {
        self.dispatch(true)?;
        Ok(self.bytes)
    }
}

impl Write for BlockSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.make_room()?;
        let n = buf.len().min(self.current.len() - self.filled);
        self.current[self.filled..self.filled + n].copy_from_slice(&buf[..n]);
        self.filled += n;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs `produce` against a [`BlockSink`] while `threads` workers compress and a writer thread
/// writes `out` (then fsyncs it), telling `written` how many bytes are in the file after each
/// write. The writer's error wins over the producer's: when the disk fills up the producer only
/// sees the pipeline stop.
pub(crate) fn compress_parallel<R>(
    out: File,
    out_path: &Path,
    codec: Codec,
    level: u32,
    threads: usize,
    written: Sender<u64>,
    produce: impl FnOnce(&mut BlockSink) -> Result<R, BackupError>,
) -> Result<(R, Compressed), BackupError> {
    let threads = threads.max(1);
    let (job_tx, job_rx) = sync_channel::<Job>(threads);
    // Owned by the workers alone: once the last one has stopped, sending a job fails instead of
    // waiting for a queue nobody reads (with one worker and a writer that failed on its first
    // bytes, the producer would otherwise block forever).
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (done_tx, done_rx) = channel::<Done>();
    let (free_tx, free_rx) = channel::<Vec<u8>>();
    let (spare_tx, spare_rx) = channel::<Vec<u8>>();
    let spare_rx = Mutex::new(spare_rx);
    // Besides the one being filled: one per worker and one being written. Memory is bounded by
    // blocks, not by the data: a few MiB per core, however large the volume.
    for _ in 0..=threads {
        let _ = free_tx.send(vec![0; BLOCK]);
    }
    thread::scope(|s| {
        for _ in 0..threads {
            let done_tx = done_tx.clone();
            let (job_rx, spare_rx) = (job_rx.clone(), &spare_rx);
            s.spawn(move || compress_jobs(codec, level, &job_rx, spare_rx, done_tx));
        }
        drop((done_tx, job_rx));
        let writer =
            s.spawn(move || write_in_order(out, out_path, done_rx, free_tx, spare_tx, written));
        let mut sink = BlockSink {
            current: vec![0; BLOCK],
            filled: 0,
            seq: 0,
            bytes: 0,
            jobs: job_tx,
            free: free_rx,
        };
        let produced = produce(&mut sink).and_then(|r| {
            let bytes_in = sink.finish().map_err(io_err("writing", out_path))?;
            Ok((r, bytes_in))
        });
        let written = writer.join().unwrap_or_else(|p| panic::resume_unwind(p));
        match (produced, written) {
            (_, Err(e)) | (Err(e), Ok(_)) => Err(e),
            (Ok((r, bytes_in)), Ok(Some((bytes_out, sha256, index)))) => Ok((
                r,
                Compressed {
                    bytes_in,
                    bytes_out,
                    sha256,
                    index,
                },
            )),
            (Ok(_), Ok(None)) => Err(io_err("writing", out_path)(stopped())),
        }
    })
}

/// A worker's compressors, made once and used for every block.
enum BlockCompressor {
    Gzip {
        deflate: Compressor,
        /// libdeflate's level 0: stored blocks, at the speed of a copy.
        store: Compressor,
    },
    Zstd(zstd::bulk::Compressor<'static>),
}

impl BlockCompressor {
    fn new(codec: Codec, level: u32) -> io::Result<BlockCompressor> {
        let gzip_level = |l: u32| {
            CompressionLvl::new(l as i32)
                .map_err(|_| io::Error::other(format!("gzip level {l} is out of range")))
        };
        Ok(match codec {
            Codec::Gzip => BlockCompressor::Gzip {
                deflate: Compressor::new(gzip_level(level)?),
                store: Compressor::new(gzip_level(0)?),
            },
            Codec::Zstd => {
                let mut z = zstd::bulk::Compressor::new(level as i32)?;
                // Every frame carries its own checksum, which decoders check.
                z.set_parameter(CParameter::ChecksumFlag(true))?;
                BlockCompressor::Zstd(z)
            }
        })
    }

    /// Writes `input`'s compressed form into `out` (empty): complete gzip members or a zstd
    /// frame, each listed in `units`.
    fn compress(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        units: &mut Vec<Unit>,
    ) -> io::Result<()> {
        let unit = |compressed: usize, uncompressed: usize| Unit {
            compressed: compressed as u32,
            uncompressed: uncompressed as u32,
        };
        match self {
            BlockCompressor::Gzip { deflate, store } => {
                for (run, incompressible) in runs(input) {
                    let c = if incompressible {
                        &mut *store
                    } else {
                        &mut *deflate
                    };
                    let at = out.len();
                    out.resize(at + c.gzip_compress_bound(run.len()), 0);
                    let uncompressed = run.len();
                    let n = c
                        .gzip_compress(&input[run], &mut out[at..])
                        .map_err(|e| io::Error::other(format!("gzip: {e:?}")))?;
                    out.truncate(at + n);
                    units.push(unit(n, uncompressed));
                }
                Ok(())
            }
            BlockCompressor::Zstd(z) => {
                out.reserve(zstd::zstd_safe::compress_bound(input.len()));
                let n = z.compress_to_buffer(input, out)?;
                units.push(unit(n, input.len()));
                Ok(())
            }
        }
    }
}

fn compress_jobs(
    codec: Codec,
    level: u32,
    jobs: &Mutex<Receiver<Job>>,
    spare: &Mutex<Receiver<Vec<u8>>>,
    done: Sender<Done>,
) {
    let mut compressor = BlockCompressor::new(codec, level);
    loop {
        let Ok(job) = jobs.lock().expect("job queue lock").recv() else {
            return;
        };
        let mut out = spare
            .lock()
            .expect("buffer pool lock")
            .try_recv()
            .unwrap_or_default();
        out.clear();
        let mut units = Vec::new();
        let input = &job.block[..job.len];
        // A panic becomes this block's error, which the writer reports; left to unwind, it
        // would leave the writer waiting for this block forever (in builds that unwind).
        let compressed = match &mut compressor {
            Ok(compressor) => panic::catch_unwind(AssertUnwindSafe(|| {
                compressor.compress(input, &mut out, &mut units)
            }))
            .unwrap_or_else(|_| Err(io::Error::other("the compressor panicked"))),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        };
        let failed = compressed.is_err();
        let result = Done {
            seq: job.seq,
            block: job.block,
            compressed: compressed.map(|()| (out, units)),
            last: job.last,
        };
        if done.send(result).is_err() || failed {
            return;
        }
    }
}

/// Blocks are judged in segments of this size, so a block that straddles a text file and a
/// photo stores only the photo's part.
const SEGMENT: usize = 64 * 1024;

/// `input` as runs of whole segments that all look incompressible, or all do not. An empty
/// input is one empty run (an empty stream still needs one member).
fn runs(input: &[u8]) -> Vec<(Range<usize>, bool)> {
    let segment_end = |start: usize| (start + SEGMENT).min(input.len());
    let mut runs: Vec<(Range<usize>, bool)> = Vec::new();
    let mut start = 0;
    while start < input.len() {
        let end = segment_end(start);
        let incompressible = looks_incompressible(&input[start..end]);
        match runs.last_mut() {
            Some((run, kind)) if *kind == incompressible => run.end = end,
            _ => runs.push((start..end, incompressible)),
        }
        start = end;
    }
    if runs.is_empty() {
        runs.push((0..0, false));
    }
    runs
}

/// Order-0 entropy above this (bits per byte) means Huffman coding could save under 0.6% and
/// matches are as unlikely as in random data.
const STORE_ABOVE_BITS: f64 = 7.95;

fn looks_incompressible(data: &[u8]) -> bool {
    if data.len() < SEGMENT / 2 {
        return false;
    }
    // Four tables, so consecutive bytes do not wait on each other's increments (measured ~3%
    // of a backup's CPU with one table).
    let mut tables = [[0u32; 256]; 4];
    let mut quads = data.chunks_exact(4);
    for q in &mut quads {
        for (table, &b) in tables.iter_mut().zip(q) {
            table[usize::from(b)] += 1;
        }
    }
    for &b in quads.remainder() {
        tables[0][usize::from(b)] += 1;
    }
    let counts: Vec<u32> = (0..256)
        .map(|i| tables.iter().map(|t| t[i]).sum())
        .collect();
    let n = data.len() as f64;
    let bits: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum();
    bits > STORE_ABOVE_BITS
}

/// Writes blocks in sequence order; returns `None` if the producer gave up before the last one.
fn write_in_order(
    out: File,
    path: &Path,
    done: Receiver<Done>,
    free: Sender<Vec<u8>>,
    spare: Sender<Vec<u8>>,
    written: Sender<u64>,
) -> Result<Option<(u64, [u8; 32], BlockIndex)>, BackupError> {
    let failed = io_err("writing", path);
    let mut out = HashedFile {
        file: out,
        sha: Sha256::new(),
        bytes: 0,
        written,
        #[cfg(test)]
        garble: GARBLE_WRITES_UNDER
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|dir| path.starts_with(dir)),
    };
    let mut pending = BTreeMap::new();
    let mut next = 0;
    let mut index = Vec::new();
    for block in done {
        pending.insert(block.seq, block);
        while let Some(block) = pending.remove(&next) {
            next += 1;
            let (compressed, units) = block.compressed.map_err(io_err("compressing for", path))?;
            if let Err(e) = out.write_all(&compressed) {
                return Err(failed(e));
            }
            index.extend(units);
            let _ = free.send(block.block);
            let _ = spare.send(compressed);
            if block.last {
                if let Err(e) = out.file.sync_all() {
                    return Err(failed(e));
                }
                return Ok(Some((
                    out.bytes,
                    out.sha.finalize().into(),
                    BlockIndex(index),
                )));
            }
        }
    }
    Ok(None)
}

struct HashedFile {
    file: File,
    sha: Sha256,
    bytes: u64,
    written: Sender<u64>,
    #[cfg(test)]
    garble: bool,
}

/// Tests set a directory here: archives written under it get one byte flipped on its way to
/// the file (after hashing), as a bad disk or a bug between hashing and writing would.
#[cfg(test)]
pub(crate) static GARBLE_WRITES_UNDER: Mutex<Option<std::path::PathBuf>> = Mutex::new(None);

impl HashedFile {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        #[cfg(test)]
        if self.garble && bytes.len() > 100 {
            self.garble = false;
            let mut bad = bytes.to_vec();
            bad[bytes.len() / 2] ^= 0x01;
            self.file.write_all(&bad)?;
            self.sha.update(bytes);
            self.bytes += bytes.len() as u64;
            let _ = self.written.send(self.bytes);
            return Ok(());
        }
        self.file.write_all(bytes)?;
        self.sha.update(bytes);
        self.bytes += bytes.len() as u64;
        // Nobody may be reading along (the reader stopped early): that is not a write error.
        let _ = self.written.send(self.bytes);
        Ok(())
    }
}

// Decompression: the same units back on every core, handed out in order.

/// A unit's compressed size above this is not one this program writes (a stored block is its
/// size plus a few headers); refusing it bounds what a damaged index can make us allocate.
const MAX_UNIT: usize = 2 * BLOCK;

/// What reading an archive through [`decompress_parallel`] found, besides what its consumer did.
pub(crate) struct Unpacked {
    /// The sha256 of the whole file, when asked for; an error if it could not be read to its end.
    pub(crate) sha256: Option<io::Result<[u8; 32]>>,
    /// The first unit that did not decompress or check, or the file not matching the index.
    pub(crate) decoded: io::Result<()>,
}

/// One job's memory, reused: compressed bytes in, at most one block out. There are only
/// `threads + 2` of them, which bounds memory whatever the archive's size.
struct Slot {
    input: Vec<u8>,
    output: Vec<u8>,
    out_len: usize,
}

struct Unpack {
    seq: u64,
    /// Of the first unit in the archive file, for messages.
    offset: u64,
    units: Vec<Unit>,
    slot: Slot,
    last: bool,
}

struct Unpacked1 {
    seq: u64,
    slot: Slot,
    result: io::Result<()>,
    last: bool,
}

#[cfg(test)]
/// Every archive read through [`decompress_parallel`], with its number of jobs: tests check
/// that a restore or verify took the parallel path (paths are unique per test).
pub(crate) static DECODED_IN_PARALLEL: Mutex<Vec<(std::path::PathBuf, u64)>> =
    Mutex::new(Vec::new());

/// Reads `file` as the units `index` lists, decompresses them on `threads` workers, and runs
/// `consume` on the uncompressed stream, handed out in order. One thread reads (and, with
/// `hash`, hashes the whole file: everything is read even after `consume` stopped). At most
/// `threads + 2` jobs (about a block each) are in flight.
///
/// A unit that fails to decompress or check reaches `consume` as an `InvalidData` read error
/// at its place in the stream, and is reported in [`Unpacked::decoded`], which the caller
/// should prefer to `consume`'s own view of it.
pub(crate) fn decompress_parallel<R>(
    file: File,
    path: &Path,
    codec: Codec,
    index: &BlockIndex,
    hash: bool,
    threads: usize,
    consume: impl FnOnce(&mut BlockSource) -> R,
) -> (R, Unpacked) {
    let threads = threads.max(1);
    let (slot_tx, slot_rx) = channel::<Slot>();
    for _ in 0..threads + 2 {
        let _ = slot_tx.send(Slot {
            input: Vec::new(),
            output: vec![0; BLOCK],
            out_len: 0,
        });
    }
    let (job_tx, job_rx) = sync_channel::<Unpack>(threads);
    // Owned by the workers alone, so the reader's send fails once they have all stopped.
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (done_tx, done_rx) = channel::<Unpacked1>();
    thread::scope(|s| {
        for _ in 0..threads {
            let (job_rx, done_tx) = (job_rx.clone(), done_tx.clone());
            s.spawn(move || unpack_jobs(codec, &job_rx, &done_tx));
        }
        drop((job_rx, done_tx));
        let reader = s.spawn(move || read_units(file, &index.0, hash, &slot_rx, &job_tx));
        let mut source = BlockSource {
            done: done_rx,
            pending: BTreeMap::new(),
            next: 0,
            current: None,
            pos: 0,
            free: slot_tx,
            finished: false,
            failed: None,
        };
        let consumed = consume(&mut source);
        let seen = source.failed.take();
        let jobs = source.next;
        // Stops the pipeline if `consume` left early: the reader then only hashes.
        drop(source);
        let (sha256, read) = reader.join().unwrap_or_else(|p| panic::resume_unwind(p));
        #[cfg(test)]
        DECODED_IN_PARALLEL
            .lock()
            .unwrap()
            .push((path.to_path_buf(), jobs));
        let _ = (path, jobs);
        // The first failure in stream order: a unit the consumer met before the reader's.
        let decoded = match seen {
            Some(e) => Err(e),
            None => read,
        };
        (consumed, Unpacked { sha256, decoded })
    })
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// The reader: groups units into jobs of at most a block, reads each job's bytes into a free
/// slot and sends it to the workers; hashes every byte of the file when asked to.
fn read_units(
    mut file: File,
    index: &[Unit],
    hash: bool,
    slots: &Receiver<Slot>,
    jobs: &SyncSender<Unpack>,
) -> (Option<io::Result<[u8; 32]>>, io::Result<()>) {
    let mut sha = hash.then(Sha256::new);
    let mut scratch = Vec::new();
    let mut alive = true;
    let mut decoded = Ok(());
    let (mut seq, mut offset, mut rest) = (0u64, 0u64, index);
    loop {
        let (mut n, mut compressed, mut uncompressed) = (0, 0, 0);
        while let Some(unit) = rest.get(n) {
            let (c, u) = (unit.compressed as usize, unit.uncompressed as usize);
            if c == 0 || c > MAX_UNIT || u > BLOCK {
                decoded = Err(invalid(format!(
                    "the manifest's block index lists a unit of {c} bytes for {u} at byte {}, \
                     which pi-setup never writes",
                    offset + compressed as u64
                )));
                break;
            }
            if n > 0 && (compressed + c > MAX_UNIT || uncompressed + u > BLOCK) {
                break;
            }
            (n, compressed, uncompressed) = (n + 1, compressed + c, uncompressed + u);
        }
        if decoded.is_err() {
            break;
        }
        let units = &rest[..n];
        rest = &rest[n..];
        let last = rest.is_empty();
        let mut slot = if alive { slots.recv().ok() } else { None };
        alive = slot.is_some();
        if !alive && sha.is_none() {
            // Nobody reads the data and nobody wants the hash.
            return (None, Ok(()));
        }
        let buf = slot.as_mut().map_or(&mut scratch, |s| &mut s.input);
        buf.resize(compressed, 0);
        let got = match read_full(&mut file, buf) {
            Ok(got) => got,
            Err(e) => return (sha.map(|_| Err(copy_err(&e))), Err(e)),
        };
        if let Some(sha) = &mut sha {
            sha.update(&buf[..got]);
        }
        if got < compressed {
            decoded = Err(invalid(format!(
                "the file ends at byte {}, inside the block the index places at bytes {offset}-{}",
                offset + got as u64,
                offset + compressed as u64
            )));
            // The whole file is hashed: it ended.
            return (sha.map(|s| Ok(s.finalize().into())), decoded);
        }
        if let Some(slot) = slot {
            let job = Unpack {
                seq,
                offset,
                units: units.to_vec(),
                slot,
                last,
            };
            alive = jobs.send(job).is_ok();
        }
        seq += 1;
        offset += compressed as u64;
        if last {
            break;
        }
    }
    // The rest of the file: hashed, and nothing may follow the last unit.
    let mut extra = 0u64;
    let mut chunk = vec![0; 256 << 10];
    if sha.is_some() || decoded.is_ok() {
        loop {
            let n = match read_full(&mut file, &mut chunk) {
                Ok(n) => n,
                Err(e) => return (sha.map(|_| Err(copy_err(&e))), Err(e)),
            };
            if let Some(sha) = &mut sha {
                sha.update(&chunk[..n]);
            }
            extra += n as u64;
            if n < chunk.len() || sha.is_none() {
                break;
            }
        }
    }
    if extra > 0 && decoded.is_ok() {
        decoded = Err(invalid(format!(
            "the file goes on past byte {offset}, where the last block of its index ends"
        )));
    }
    (sha.map(|s| Ok(s.finalize().into())), decoded)
}

fn copy_err(e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), e.to_string())
}

/// A worker's decompressor, made once and used for every unit.
enum BlockDecoder {
    Gzip(libdeflater::Decompressor),
    Zstd(zstd::bulk::Decompressor<'static>),
}

impl BlockDecoder {
    fn new(codec: Codec) -> io::Result<BlockDecoder> {
        Ok(match codec {
            Codec::Gzip => BlockDecoder::Gzip(libdeflater::Decompressor::new()),
            Codec::Zstd => BlockDecoder::Zstd(zstd::bulk::Decompressor::new()?),
        })
    }

    fn unit_name(&self) -> &'static str {
        match self {
            BlockDecoder::Gzip(_) => "gzip member",
            BlockDecoder::Zstd(_) => "zstd frame",
        }
    }

    /// Decompresses one unit, which must fill `out` exactly and end exactly where `input` does;
    /// otherwise says what is wrong with it.
    fn decode(&mut self, input: &[u8], out: &mut [u8]) -> Result<(), String> {
        let n = match self {
            BlockDecoder::Gzip(d) => {
                // libdeflate checks the member's CRC-32 and size (its last 8 bytes).
                let n = d.gzip_decompress(input, out).map_err(|e| match e {
                    libdeflater::DecompressionError::BadData => {
                        "is damaged (bad data or CRC mismatch)".to_string()
                    }
                    libdeflater::DecompressionError::InsufficientSpace => {
                        format!("decompresses to more than the {} bytes", out.len())
                    }
                })?;
                // ... but ignores what follows the member: the unit must end with that
                // trailer, or it is not one member.
                let mut trailer = [0; 8];
                trailer[..4].copy_from_slice(&libdeflater::crc32(&out[..n]).to_le_bytes());
                trailer[4..].copy_from_slice(&(n as u32).to_le_bytes());
                if !input.ends_with(&trailer) {
                    return Err("does not end where the index says".to_string());
                }
                n
            }
            BlockDecoder::Zstd(d) => {
                // Frame header descriptor, bit 2: the frame carries a checksum, which libzstd
                // then checks. pi-setup writes every frame with one.
                if !input.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
                    || input.get(4).is_none_or(|d| d & 0x04 == 0)
                {
                    return Err("is not a zstd frame with a checksum".to_string());
                }
                d.decompress_to_buffer(input, out)
                    .map_err(|e| format!("is damaged ({e})"))?
            }
        };
        if n == out.len() {
            Ok(())
        } else {
            Err(format!(
                "decompresses to {n} bytes, the index says {}",
                out.len()
            ))
        }
    }
}

fn unpack_jobs(codec: Codec, jobs: &Mutex<Receiver<Unpack>>, done: &Sender<Unpacked1>) {
    let mut decoder = BlockDecoder::new(codec);
    loop {
        let Ok(job) = jobs.lock().expect("job queue lock").recv() else {
            return;
        };
        let Unpack {
            seq,
            offset,
            units,
            mut slot,
            last,
        } = job;
        let result = match &mut decoder {
            Ok(decoder) => panic::catch_unwind(AssertUnwindSafe(|| {
                decode_job(decoder, offset, &units, &mut slot)
            }))
            .unwrap_or_else(|_| Err(io::Error::other("the decompressor panicked"))),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        };
        let sent = done.send(Unpacked1 {
            seq,
            slot,
            result,
            last,
        });
        if sent.is_err() {
            return;
        }
    }
}

fn decode_job(
    decoder: &mut BlockDecoder,
    mut offset: u64,
    units: &[Unit],
    slot: &mut Slot,
) -> io::Result<()> {
    let (mut at_in, mut at_out) = (0, 0);
    for unit in units {
        let (c, u) = (unit.compressed as usize, unit.uncompressed as usize);
        let input = &slot.input[at_in..at_in + c];
        let out = &mut slot.output[at_out..at_out + u];
        decoder.decode(input, out).map_err(|why| {
            invalid(format!(
                "the {} at bytes {offset}-{} {why}",
                decoder.unit_name(),
                offset + c as u64
            ))
        })?;
        at_in += c;
        at_out += u;
        offset += c as u64;
    }
    slot.out_len = at_out;
    Ok(())
}

/// The uncompressed stream of [`decompress_parallel`], in order: what its consumer reads.
pub(crate) struct BlockSource {
    done: Receiver<Unpacked1>,
    pending: BTreeMap<u64, Unpacked1>,
    next: u64,
    current: Option<Slot>,
    pos: usize,
    /// Slots go back to the reader once read.
    free: Sender<Slot>,
    finished: bool,
    failed: Option<io::Error>,
}

impl Read for BlockSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(e) = &self.failed {
                return Err(copy_err(e));
            }
            if let Some(slot) = &self.current {
                if self.pos < slot.out_len {
                    let n = buf.len().min(slot.out_len - self.pos);
                    buf[..n].copy_from_slice(&slot.output[self.pos..self.pos + n]);
                    self.pos += n;
                    return Ok(n);
                }
            }
            if let Some(slot) = self.current.take() {
                let _ = self.free.send(slot);
            }
            if self.finished {
                return Ok(0);
            }
            let next = loop {
                if let Some(job) = self.pending.remove(&self.next) {
                    break job;
                }
                match self.done.recv() {
                    Ok(job) => {
                        self.pending.insert(job.seq, job);
                    }
                    // The reader stopped (it says why to the caller): not a clean end.
                    Err(_) => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the archive's blocks stopped before the last one",
                        ))
                    }
                }
            };
            self.next += 1;
            if let Err(e) = next.result {
                let _ = self.free.send(next.slot);
                self.failed = Some(e);
                continue;
            }
            self.finished = next.last;
            self.current = Some(next.slot);
            self.pos = 0;
        }
    }
}
