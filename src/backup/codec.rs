//! The two archive formats: `.tar.gz` (gzip, what every tool reads) and `.tar.zst` (zstd: about
//! as small for about half the CPU, ci/bench-backup). Both are written as independent blocks on every core by
//! [`crate::backup::parallel`]; both decompress with the stock `tar -xzf` / `tar --zstd -xf`.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::ops::RangeInclusive;
use std::path::Path;

use flate2::bufread::MultiGzDecoder;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Codec {
    #[default]
    Gzip,
    Zstd,
}

/// Magic bytes at the start of a file, by format.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

impl Codec {
    pub const ALL: [Codec; 2] = [Codec::Gzip, Codec::Zstd];

    /// As in `--compress`, the profile's `backup.compress` and the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd",
        }
    }

    pub fn parse(name: &str) -> Option<Codec> {
        Codec::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The archive file name's ending.
    pub fn suffix(self) -> &'static str {
        match self {
            Codec::Gzip => ".tar.gz",
            Codec::Zstd => ".tar.zst",
        }
    }

    /// Accepted `--level` / `backup.level` values. zstd's 20-22 ("ultra") need windows larger
    /// than a Pi should spend on a nightly job, so they are not offered.
    pub fn levels(self) -> RangeInclusive<u32> {
        match self {
            Codec::Gzip => 1..=9,
            Codec::Zstd => 1..=19,
        }
    }

    /// gzip -6 and zstd -3, the command-line tools' own defaults.
    pub fn default_level(self) -> u32 {
        match self {
            Codec::Gzip => 6,
            Codec::Zstd => 3,
        }
    }

    /// Checks `level` for this format; the message names the value and the range.
    pub fn check_level(self, level: u32) -> Result<u32, String> {
        let range = self.levels();
        if range.contains(&level) {
            Ok(level)
        } else {
            Err(format!(
                "level {level} is out of range for {self} ({}-{})",
                range.start(),
                range.end()
            ))
        }
    }

    /// The format of an archive file, from its first bytes (not its name: `restore --archive`
    /// takes any file).
    pub fn sniff(path: &Path) -> io::Result<Codec> {
        let mut head = [0; 4];
        let mut file = File::open(path)?;
        let mut n = 0;
        while n < head.len() {
            match file.read(&mut head[n..])? {
                0 => break,
                k => n += k,
            }
        }
        if head[..n].starts_with(&ZSTD_MAGIC) {
            Ok(Codec::Zstd)
        } else if head[..n].starts_with(&GZIP_MAGIC) {
            Ok(Codec::Gzip)
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a gzip or zstd file (unknown magic bytes)",
            ))
        }
    }

    /// Decompresses every member (gzip) or frame (zstd) of `input` in sequence, checking each
    /// one's checksum.
    pub fn decoder<'a, R: BufRead + 'a>(self, input: R) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Codec::Gzip => Box::new(MultiGzDecoder::new(input)),
            Codec::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
        })
    }

    /// Opens an archive file for reading its tar stream, whichever format it is in.
    pub fn open(path: &Path, buffer: usize) -> io::Result<Box<dyn Read>> {
        let codec = Codec::sniff(path)?;
        codec.decoder(BufReader::with_capacity(buffer, File::open(path)?))
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
