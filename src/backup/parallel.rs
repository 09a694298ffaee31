//! Compression on every core: the tar stream is cut into blocks that worker threads compress
//! independently, and a writer thread puts them out in order, hashing exactly the bytes it
//! writes.
//!
//! gzip, in the style of pigz: each block is deflated primed with the previous block's last
//! 32 KiB as its dictionary (so the ratio stays that of one stream), and the writer stitches
//! them into a single gzip member. Blocks whose bytes look uniformly random (media,
//! already-compressed files) are stored instead of deflated: deflate cannot shrink them and
//! spends most of its time failing to.
//!
//! zstd, in the style of `pzstd`: each block becomes one complete frame with its own checksum;
//! a zstd file may hold any number of frames, which every decoder reads in sequence.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::mem;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread;

use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use sha2::{Digest, Sha256};
use zstd::zstd_safe::CParameter;

use crate::backup::codec::Codec;
use crate::backup::error::{io_err, BackupError};

/// Uncompressed bytes per block. For zstd, whose frames share no window, 2 MiB blocks were
/// measured no smaller than 1 MiB ones on ci/bench-backup's data, and slower and bigger in
/// memory.
const BLOCK: usize = 1 << 20;
/// Deflate's window: a block can refer back this far into the previous one.
const WINDOW: usize = 32 * 1024;
/// Magic, deflate, no flags, no mtime (the manifest has it), no extra flags, OS = Unix.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];

pub(crate) struct Compressed {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub sha256: [u8; 32],
}

struct Job {
    seq: u64,
    block: Vec<u8>,
    len: usize,
    dict: Vec<u8>,
    last: bool,
}

struct Done {
    seq: u64,
    block: Vec<u8>,
    deflated: io::Result<Vec<u8>>,
    crc: Crc,
    last: bool,
}

/// The producer's end of the pipeline: tar data goes in, full blocks go to the workers.
pub(crate) struct BlockSink {
    current: Vec<u8>,
    filled: usize,
    seq: u64,
    dict: Vec<u8>,
    /// Only gzip blocks need the previous block's tail.
    keep_dict: bool,
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
        let tail = if self.keep_dict {
            block[len.saturating_sub(WINDOW)..len].to_vec()
        } else {
            Vec::new()
        };
        let dict = mem::replace(&mut self.dict, tail);
        let job = Job {
            seq: self.seq,
            block,
            len,
            dict,
            last,
        };
        self.seq += 1;
        self.jobs.send(job).map_err(|_| stopped())
    }

    /// Copies exactly `size` bytes from `src`, padding with zeros if it ends early, so the
    /// entry always matches its header however the file changes meanwhile. Returns how many
    /// bytes really came from `src`.
    pub fn copy_exact(&mut self, src: &mut impl Read, size: u64) -> Result<u64, CopyError> {
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
/// write. The writer's error wins over the producer's: when the disk
/// fills up the producer only sees the pipeline stop.
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
    for _ in 0..threads + 1 {
        let _ = free_tx.send(vec![0; BLOCK]);
    }
    thread::scope(|s| {
        for _ in 0..threads {
            let done_tx = done_tx.clone();
            let (job_rx, spare_rx) = (job_rx.clone(), &spare_rx);
            s.spawn(move || compress_jobs(codec, level, &job_rx, spare_rx, done_tx));
        }
        drop((done_tx, job_rx));
        let writer = s.spawn(move || {
            write_in_order(codec, out, out_path, done_rx, free_tx, spare_tx, written)
        });
        let mut sink = BlockSink {
            current: vec![0; BLOCK],
            filled: 0,
            seq: 0,
            dict: Vec::new(),
            keep_dict: codec == Codec::Gzip,
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
            (Ok((r, bytes_in)), Ok(Some((bytes_out, sha256)))) => Ok((
                r,
                Compressed {
                    bytes_in,
                    bytes_out,
                    sha256,
                },
            )),
            (Ok(_), Ok(None)) => Err(io_err("writing", out_path)(stopped())),
        }
    })
}

/// A worker's compressor, made once and reset for every block.
enum Engine {
    /// Raw deflate: the writer supplies the gzip header and trailer for the whole stream.
    Deflate(Compress),
    Zstd(zstd::bulk::Compressor<'static>),
}

impl Engine {
    fn new(codec: Codec, level: u32) -> io::Result<Engine> {
        Ok(match codec {
            Codec::Gzip => Engine::Deflate(Compress::new(Compression::new(level.min(9)), false)),
            Codec::Zstd => {
                let mut z = zstd::bulk::Compressor::new(level as i32)?;
                // Every frame carries its own checksum, which decoders check.
                z.set_parameter(CParameter::ChecksumFlag(true))?;
                Engine::Zstd(z)
            }
        })
    }

    fn compress(&mut self, job: &Job, out: &mut Vec<u8>) -> io::Result<()> {
        let input = &job.block[..job.len];
        match self {
            Engine::Deflate(deflate) => compress_block(deflate, input, &job.dict, job.last, out),
            Engine::Zstd(z) => {
                out.clear();
                out.reserve(zstd::zstd_safe::compress_bound(input.len()));
                z.compress_to_buffer(input, out).map(drop)
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
    let mut engine = Engine::new(codec, level);
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
        // A panic becomes this block's error, which the writer reports; left to unwind, it
        // would leave the writer waiting for this block forever (in builds that unwind).
        let compressed = match &mut engine {
            Ok(engine) => panic::catch_unwind(AssertUnwindSafe(|| engine.compress(&job, &mut out)))
                .unwrap_or_else(|_| Err(io::Error::other("the compressor panicked"))),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        };
        let failed = compressed.is_err();
        let deflated = compressed.map(|()| out);
        let mut crc = Crc::new();
        if codec == Codec::Gzip {
            crc.update(&job.block[..job.len]);
        }
        let result = Done {
            seq: job.seq,
            block: job.block,
            deflated,
            crc,
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

/// Compresses one block as runs of segments, each run deflated or stored as a whole. `dict` is
/// the stream's last 32 KiB before this block.
fn compress_block(
    deflate: &mut Compress,
    input: &[u8],
    dict: &[u8],
    last: bool,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    if input.is_empty() {
        return deflate_block(deflate, input, dict, last, out);
    }
    let segment_end = |start: usize| (start + SEGMENT).min(input.len());
    let mut start = 0;
    while start < input.len() {
        let store = looks_incompressible(&input[start..segment_end(start)]);
        let mut end = segment_end(start);
        while end < input.len() && looks_incompressible(&input[end..segment_end(end)]) == store {
            end = segment_end(end);
        }
        let run_last = last && end == input.len();
        if store {
            store_block(&input[start..end], run_last, out);
        } else if start >= WINDOW {
            deflate_block(
                deflate,
                &input[start..end],
                &input[start - WINDOW..start],
                run_last,
                out,
            )?;
        } else {
            let mut window = dict[dict.len().saturating_sub(WINDOW - start)..].to_vec();
            window.extend_from_slice(&input[..start]);
            deflate_block(deflate, &input[start..end], &window, run_last, out)?;
        }
        start = end;
    }
    Ok(())
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

/// Deflate "stored" blocks. Every block before this one ended byte-aligned (sync flush), which
/// is where a stored block's header byte must start, and stored blocks end byte-aligned too.
fn store_block(input: &[u8], last: bool, out: &mut Vec<u8>) {
    out.reserve(input.len() + input.len() / 65_535 * 5 + 5);
    let mut chunks = input.chunks(65_535).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[u8::from(last), 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        out.push(u8::from(last && chunks.peek().is_none()));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
}

/// Deflates `input` primed with `dict`. A sync flush ends every run but the stream's last on a
/// byte boundary, so runs and blocks concatenate.
fn deflate_block(
    deflate: &mut Compress,
    input: &[u8],
    dict: &[u8],
    last: bool,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    deflate.reset();
    if !dict.is_empty() {
        deflate.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    out.reserve(input.len() + input.len() / 64 + 1024);
    let start = deflate.total_in();
    loop {
        let consumed = (deflate.total_in() - start) as usize;
        let status = deflate
            .compress_vec(&input[consumed..], out, flush)
            .map_err(io::Error::other)?;
        let consumed = (deflate.total_in() - start) as usize;
        let complete = match status {
            Status::StreamEnd => true,
            Status::Ok | Status::BufError => {
                !last && consumed == input.len() && out.len() < out.capacity()
            }
        };
        if complete {
            return Ok(());
        }
        if out.len() == out.capacity() {
            out.reserve(64 * 1024);
        }
    }
}

/// Writes blocks in sequence order; returns `None` if the producer gave up before the last one.
fn write_in_order(
    codec: Codec,
    out: File,
    path: &Path,
    done: Receiver<Done>,
    free: Sender<Vec<u8>>,
    spare: Sender<Vec<u8>>,
    written: Sender<u64>,
) -> Result<Option<(u64, [u8; 32])>, BackupError> {
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
    let mut crc = Crc::new();
    let mut pending = BTreeMap::new();
    let mut next = 0;
    let gzip = codec == Codec::Gzip;
    if gzip {
        if let Err(e) = out.write_all(&GZIP_HEADER) {
            return Err(failed(e));
        }
    }
    for block in done {
        pending.insert(block.seq, block);
        while let Some(block) = pending.remove(&next) {
            next += 1;
            let deflated = block.deflated.map_err(io_err("compressing for", path))?;
            if let Err(e) = out.write_all(&deflated) {
                return Err(failed(e));
            }
            crc.combine(&block.crc);
            let _ = free.send(block.block);
            let _ = spare.send(deflated);
            if block.last {
                let mut trailer = Vec::new();
                if gzip {
                    trailer.extend_from_slice(&crc.sum().to_le_bytes());
                    trailer.extend_from_slice(&crc.amount().to_le_bytes());
                }
                if let Err(e) = out.write_all(&trailer).and_then(|()| out.file.sync_all()) {
                    return Err(failed(e));
                }
                return Ok(Some((out.bytes, out.sha.finalize().into())));
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
