//! The two archive formats: `.tar.gz` (gzip, what every tool reads) and `.tar.zst` (zstd: about
//! as small for about half the CPU, ci/bench-backup). Both are written as independent blocks on
//! every core by [`crate::backup::parallel`]; both decompress with the stock `tar -xzf` /
//! `tar --zstd -xf`.

use std::fmt;
use std::io::{self, BufRead, Read};
use std::ops::RangeInclusive;

use flate2::bufread::MultiGzDecoder;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Codec {
    #[default]
    Gzip,
    Zstd,
}

/// Magic bytes at the start of a file, by format.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

impl Codec {
    pub(crate) const ALL: [Codec; 2] = [Codec::Gzip, Codec::Zstd];

    /// As in `--compress`, the profile's `backup.compress` and the manifest.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd",
        }
    }

    pub(crate) fn parse(name: &str) -> Option<Codec> {
        Codec::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The archive file name's ending.
    pub(crate) fn suffix(self) -> &'static str {
        match self {
            Codec::Gzip => ".tar.gz",
            Codec::Zstd => ".tar.zst",
        }
    }

    /// Accepted `--level` / `backup.level` values. zstd's 20-22 ("ultra") need windows larger
    /// than a Pi should spend on a nightly job, so they are not offered.
    pub(crate) fn levels(self) -> RangeInclusive<u32> {
        match self {
            Codec::Gzip => 1..=9,
            Codec::Zstd => 1..=19,
        }
    }

    /// gzip -6 and zstd -3, the command-line tools' own defaults.
    pub(crate) fn default_level(self) -> u32 {
        match self {
            Codec::Gzip => 6,
            Codec::Zstd => 3,
        }
    }

    /// Checks `level` (as given: a profile's may be negative) for this format; the message
    /// names the value and the range.
    pub(crate) fn check_level(self, level: i64) -> Result<u32, String> {
        let range = self.levels();
        match u32::try_from(level) {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(format!(
                "level {level} is out of range for {self} ({}-{})",
                range.start(),
                range.end()
            )),
        }
    }

    /// Decompresses an archive's tar stream, whichever format it is in: told by its first
    /// bytes, not its name (`restore --archive` takes any file). Every gzip member or zstd frame
    /// is read in sequence, its checksum checked.
    pub(crate) fn decoder<'a, R: BufRead + 'a>(mut input: R) -> io::Result<Box<dyn Read + 'a>> {
        let head = input.fill_buf()?;
        if head.starts_with(&ZSTD_MAGIC) {
            Ok(Box::new(zstd::stream::read::Decoder::with_buffer(input)?))
        } else if head.starts_with(&GZIP_MAGIC) {
            Ok(Box::new(MultiGzDecoder::new(input)))
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a gzip or zstd file (unknown magic bytes)",
            ))
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
