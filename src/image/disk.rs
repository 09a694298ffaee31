//! The disk image's partition table (MBR, or GPT behind a protective MBR), read only: which
//! byte ranges hold the FAT boot partition and the ext4 root. Nothing here ever writes the
//! table or the disk ID — a baked image keeps the partitions it came with, byte for byte.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

const SECTOR: u64 = 512;

/// A partition as a byte range of the image file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Partition {
    pub(crate) start: u64,
    pub(crate) len: u64,
}

/// The two partitions a Raspberry Pi OS image has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) boot: Partition,
    pub(crate) root: Option<Partition>,
    /// The MBR disk ID (what `PARTUUID=xxxxxxxx-02` in cmdline.txt names); GPT images: 0.
    pub(crate) disk_id: u32,
}

/// MBR partition types of a FAT file system.
const FAT_TYPES: [u8; 6] = [0x01, 0x04, 0x06, 0x0b, 0x0c, 0x0e];
/// GPT type GUIDs as stored on disk (mixed-endian): EFI System and Microsoft basic data.
const GPT_FAT_TYPES: [[u8; 16]; 2] = [
    guid_bytes(
        0xC12A_7328,
        0xF81F,
        0x11D2,
        [0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B],
    ),
    guid_bytes(
        0xEBD0_A0A2,
        0xB9E5,
        0x4433,
        [0x87, 0xC0, 0x68, 0xB6, 0xB7, 0x26, 0x99, 0xC7],
    ),
];
/// GPT "Linux filesystem data".
const GPT_LINUX: [u8; 16] = guid_bytes(
    0x0FC6_3DAF,
    0x8483,
    0x4772,
    [0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4],
);

const fn guid_bytes(a: u32, b: u16, c: u16, d: [u8; 8]) -> [u8; 16] {
    let a = a.to_le_bytes();
    let b = b.to_le_bytes();
    let c = c.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6],
        d[7],
    ]
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32_at(b, at)) | (u64::from(u32_at(b, at + 4)) << 32)
}

/// Reads the layout. `read_at(offset, buf)` fills `buf` from the image; `image_len` bounds
/// every partition (a table pointing past the end is an error, not a short read later).
pub(crate) fn layout(
    image_len: u64,
    mut read_at: impl FnMut(u64, &mut [u8]) -> io::Result<()>,
) -> Result<Layout, String> {
    let mut mbr = [0u8; 512];
    read_at(0, &mut mbr).map_err(|e| format!("cannot read the partition table: {e}"))?;
    if mbr[510] != 0x55 || mbr[511] != 0xAA {
        return Err(
            "no partition table (the first sector has no MBR signature): is this a disk image?"
                .into(),
        );
    }
    let entries: Vec<(u8, u64, u64)> = (0..4)
        .map(|i| {
            let e = &mbr[446 + i * 16..446 + (i + 1) * 16];
            (e[4], u64::from(u32_at(e, 8)), u64::from(u32_at(e, 12)))
        })
        .filter(|(ty, _, sectors)| *ty != 0 && *sectors != 0)
        .collect();
    let part = |first: u64, sectors: u64| -> Result<Partition, String> {
        let p = Partition {
            start: first * SECTOR,
            len: sectors * SECTOR,
        };
        if p.start == 0 || p.start + p.len > image_len {
            return Err(format!(
                "the partition table names bytes {}..{} but the image has {image_len} bytes: truncated image?",
                p.start,
                p.start + p.len
            ));
        }
        Ok(p)
    };
    if entries.iter().any(|(ty, _, _)| *ty == 0xEE) {
        return gpt(image_len, &mut read_at, &part);
    }
    let boot = entries
        .iter()
        .find(|(ty, _, _)| FAT_TYPES.contains(ty))
        .ok_or("the image has no FAT partition (MBR types 0x0b/0x0c/0x0e...): not a Raspberry Pi OS image?")?;
    let root = entries.iter().find(|(ty, _, _)| *ty == 0x83);
    Ok(Layout {
        boot: part(boot.1, boot.2)?,
        root: root.map(|r| part(r.1, r.2)).transpose()?,
        disk_id: u32_at(&mbr, 440),
    })
}

fn gpt(
    image_len: u64,
    read_at: &mut impl FnMut(u64, &mut [u8]) -> io::Result<()>,
    part: &dyn Fn(u64, u64) -> Result<Partition, String>,
) -> Result<Layout, String> {
    let mut hdr = [0u8; 92];
    read_at(SECTOR, &mut hdr).map_err(|e| format!("cannot read the GPT header: {e}"))?;
    if &hdr[0..8] != b"EFI PART" {
        return Err("protective MBR without a GPT header".into());
    }
    let table = u64_at(&hdr, 72) * SECTOR;
    let count = u64::from(u32_at(&hdr, 80)).min(256);
    let size = u64::from(u32_at(&hdr, 84));
    if !(128..=4096).contains(&size) || table + count * size > image_len {
        return Err("the GPT header is damaged (entry table out of range)".into());
    }
    let mut buf = vec![0u8; (count * size) as usize];
    read_at(table, &mut buf).map_err(|e| format!("cannot read the GPT entries: {e}"))?;
    let mut boot = None;
    let mut root = None;
    for e in buf.chunks(size as usize) {
        let ty: [u8; 16] = e[0..16].try_into().expect("16 bytes");
        let (first, last) = (u64_at(e, 32), u64_at(e, 40));
        if ty == [0; 16] || last < first {
            continue;
        }
        if boot.is_none() && GPT_FAT_TYPES.contains(&ty) {
            boot = Some(part(first, last - first + 1)?);
        } else if root.is_none() && ty == GPT_LINUX {
            root = Some(part(first, last - first + 1)?);
        }
    }
    Ok(Layout {
        boot: boot.ok_or("the GPT has no EFI System or basic data (FAT) partition")?,
        root,
        disk_id: 0,
    })
}

/// One partition of an image file as a file of its own (what lamfat and ext4-view read):
/// positions are relative to the partition, and nothing outside it can be read or written.
pub(crate) struct Slice {
    file: File,
    part: Partition,
    pos: u64,
}

impl Slice {
    pub(crate) fn new(file: File, part: Partition) -> Slice {
        Slice { file, part, pos: 0 }
    }

    fn room(&self, want: usize) -> usize {
        want.min(self.part.len.saturating_sub(self.pos) as usize)
    }
}

impl Read for Slice {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.room(buf.len());
        if n == 0 {
            return Ok(0);
        }
        self.file
            .seek(SeekFrom::Start(self.part.start + self.pos))?;
        let got = self.file.read(&mut buf[..n])?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl Write for Slice {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.room(buf.len());
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write past the end of the partition",
            ));
        }
        self.file
            .seek(SeekFrom::Start(self.part.start + self.pos))?;
        let put = self.file.write(&buf[..n])?;
        self.pos += put as u64;
        Ok(put)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Seek for Slice {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.part.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match new {
            Some(n) if n <= self.part.len => {
                self.pos = n;
                Ok(n)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek outside the partition",
            )),
        }
    }
}

impl ext4_view::Ext4Read for Slice {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        self.seek(SeekFrom::Start(start_byte))?;
        self.read_exact(dst)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{guid_bytes, layout, Partition, GPT_FAT_TYPES, GPT_LINUX};

    /// An MBR like Raspberry Pi OS's: FAT32 (LBA) at 8 MiB, Linux after it, disk ID set.
    fn pi_mbr() -> Vec<u8> {
        let mut d = vec![0u8; 512];
        d[440..444].copy_from_slice(&0x1234_abcd_u32.to_le_bytes());
        let mut entry = |i: usize, ty: u8, first: u32, sectors: u32| {
            let e = &mut d[446 + i * 16..446 + (i + 1) * 16];
            e[4] = ty;
            e[8..12].copy_from_slice(&first.to_le_bytes());
            e[12..16].copy_from_slice(&sectors.to_le_bytes());
        };
        entry(0, 0x0c, 16384, 65536);
        entry(1, 0x83, 81920, 40960);
        d[510] = 0x55;
        d[511] = 0xaa;
        d
    }

    fn reader(d: &[u8]) -> impl FnMut(u64, &mut [u8]) -> std::io::Result<()> + '_ {
        |at, buf| {
            let at = at as usize;
            buf.copy_from_slice(&d[at..at + buf.len()]);
            Ok(())
        }
    }

    #[test]
    fn an_mbr_gives_the_fat_and_linux_partitions_and_the_disk_id() {
        let d = pi_mbr();
        let l = layout(200 << 20, reader(&d)).unwrap();
        assert_eq!(
            l.boot,
            Partition {
                start: 8 << 20,
                len: 32 << 20
            }
        );
        assert_eq!(
            l.root,
            Some(Partition {
                start: 40 << 20,
                len: 20 << 20
            })
        );
        assert_eq!(l.disk_id, 0x1234_abcd);
    }

    #[test]
    fn a_table_pointing_past_the_end_or_no_signature_is_refused() {
        let d = pi_mbr();
        let e = layout(50 << 20, reader(&d)).unwrap_err();
        assert!(e.contains("truncated image?"), "{e}");
        let mut d = pi_mbr();
        d[511] = 0;
        assert!(layout(200 << 20, reader(&d))
            .unwrap_err()
            .contains("no MBR signature"));
        let mut d = pi_mbr();
        d[446 + 4] = 0x83;
        assert!(layout(200 << 20, reader(&d))
            .unwrap_err()
            .contains("no FAT partition"));
    }

    #[test]
    fn a_gpt_image_gives_its_efi_and_linux_partitions() {
        let mut d = vec![0u8; 34 * 512];
        d[446 + 4] = 0xee;
        d[446 + 8] = 1;
        d[446 + 12..446 + 16].copy_from_slice(&u32::MAX.to_le_bytes());
        d[510] = 0x55;
        d[511] = 0xaa;
        d[512..520].copy_from_slice(b"EFI PART");
        d[512 + 72..512 + 80].copy_from_slice(&2u64.to_le_bytes());
        d[512 + 80..512 + 84].copy_from_slice(&128u32.to_le_bytes());
        d[512 + 84..512 + 88].copy_from_slice(&128u32.to_le_bytes());
        let mut entry = |i: usize, ty: [u8; 16], first: u64, last: u64| {
            let e = &mut d[1024 + i * 128..1024 + (i + 1) * 128];
            e[0..16].copy_from_slice(&ty);
            e[32..40].copy_from_slice(&first.to_le_bytes());
            e[40..48].copy_from_slice(&last.to_le_bytes());
        };
        entry(0, GPT_LINUX, 4096, 8191);
        entry(1, GPT_FAT_TYPES[0], 2048, 4095);
        let l = layout(8 << 20, reader(&d)).unwrap();
        assert_eq!(
            l.boot,
            Partition {
                start: 1 << 20,
                len: 1 << 20
            }
        );
        assert_eq!(l.root.unwrap().start, 2 << 20);
        // The mixed-endian GUID layout, checked against the bytes `sgdisk` writes for EF00.
        assert_eq!(
            guid_bytes(
                0xC12A_7328,
                0xF81F,
                0x11D2,
                [0xBA, 0x4B, 0, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B]
            )[..4],
            [0x28, 0x73, 0x2a, 0xc1]
        );
    }
}
