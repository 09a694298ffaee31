//! Moving whole disk images: `.img` or `.img.xz` in (xz found by its magic bytes, decompressed
//! as a stream in pure Rust by lzma-rust2), a raw working copy out (sparse: runs of zero
//! blocks are skipped, not written — most of a fresh Raspberry Pi OS image is zeros), and
//! `.img.xz` compressed on all cores when `--out` asks for it.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::rc::Rc;

use crate::progress::Progress;

const XZ_MAGIC: [u8; 6] = [0xFD, b'7', b'z', b'X', b'Z', 0x00];
const BLOCK: usize = 1 << 20;

/// Whether a file starts like an xz stream.
pub(crate) fn is_xz(path: &Path) -> io::Result<bool> {
    let mut head = [0u8; 6];
    let mut f = File::open(path)?;
    let n = f.read(&mut head)?;
    Ok(n == 6 && head == XZ_MAGIC)
}

/// Counts what passes through (the compressed bytes, under the xz reader), for the bar.
struct Counting<R> {
    inner: R,
    seen: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen.set(self.seen.get() + n as u64);
        Ok(n)
    }
}

/// Copies `base` (raw or xz) into a new raw file at `to`, zero blocks left as holes. The bar
/// counts bytes of `base` read. Returns the image's size.
pub(crate) fn unpack(base: &Path, to: &Path, progress: &Progress) -> io::Result<u64> {
    let file = File::open(base)?;
    let total = file.metadata()?.len();
    let xz = is_xz(base)?;
    let seen = Rc::new(Cell::new(0));
    let counted = Counting {
        inner: BufReader::with_capacity(BLOCK, file),
        seen: Rc::clone(&seen),
    };
    let mut reader: Box<dyn Read> = if xz {
        Box::new(lzma_rust2::XzReader::new(counted, true))
    } else {
        Box::new(counted)
    };
    let bar = progress.bytes(if xz { "decompressing" } else { "copying" });
    let mut out = create_private(to)?;
    let len = sparse_copy(&mut reader, &mut out, &mut || bar.update(seen.get(), total))?;
    out.sync_all()?;
    bar.finish();
    Ok(len)
}

/// Reads everything, writes non-zero blocks and seeks over zero ones, then sets the length.
fn sparse_copy(r: &mut dyn Read, out: &mut File, report: &mut dyn FnMut()) -> io::Result<u64> {
    let mut buf = vec![0u8; BLOCK];
    let mut pos = 0u64;
    loop {
        let mut filled = 0;
        while filled < BLOCK {
            match r.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            break;
        }
        let block = &buf[..filled];
        if block.iter().all(|b| *b == 0) {
            out.seek(SeekFrom::Current(filled as i64))?;
        } else {
            out.write_all(block)?;
        }
        pos += filled as u64;
        report();
    }
    out.set_len(pos)?;
    Ok(pos)
}

/// Compresses the raw image `from` into a new `.xz` file `to` (xz preset 6, 64 MiB blocks so
/// every core has work and `xz -T` decompresses it in parallel too).
pub(crate) fn pack_xz(from: &Path, to: &Path, progress: &Progress) -> io::Result<()> {
    let src = File::open(from)?;
    let total = src.metadata()?.len();
    let out = io::BufWriter::with_capacity(BLOCK, create_private(to)?);
    let mut opts = lzma_rust2::XzOptions::with_preset(6);
    opts.set_block_size(std::num::NonZeroU64::new(64 << 20));
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get) as u32;
    let mut w = lzma_rust2::XzWriterMt::new(out, opts, workers)?;
    let bar = progress.bytes("compressing");
    let mut r = BufReader::with_capacity(BLOCK, src);
    let mut buf = vec![0u8; BLOCK];
    let mut done = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        w.write_all(&buf[..n])?;
        done += n as u64;
        bar.update(done, total);
    }
    let out = w.finish()?;
    let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    bar.finish();
    Ok(())
}

/// A new output file readable by its owner only, whatever the umask: a baked image holds the
/// password hash, the Wi-Fi key and copy credentials.
fn create_private(to: &Path) -> io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}
