//! The FAT boot partition, read and written in place inside the image file through lamfat (no
//! mount, no root). Only files in `/` (cmdline.txt, userconf.txt, ...) and the `pi-setup/` tree
//! are touched; lamfat writes new directories' `.`/`..` entries as `fsck.fat` expects them.

use std::fs::File;
use std::io::{Read, Write};

use crate::image::disk::{Partition, Slice};

pub(crate) type Fs =
    lamfat::FileSystem<lamfat::StdIoWrapper<Slice>, Utc, lamfat::LossyOemCpConverter>;
type Dir<'a> = lamfat::Dir<'a, lamfat::StdIoWrapper<Slice>, Utc, lamfat::LossyOemCpConverter>;

/// File times in UTC (FAT keeps no zone), so a baked file is dated when it was baked, not 1980.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Utc;

impl lamfat::TimeProvider for Utc {
    fn get_current_date(&self) -> lamfat::Date {
        self.get_current_date_time().date
    }

    fn get_current_date_time(&self) -> lamfat::DateTime {
        let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
        // FAT dates run from 1980 to 2107; a clock outside that gets the nearest end.
        let year = (now.year() as u16).clamp(1980, 2107);
        lamfat::DateTime::new(
            lamfat::Date::new(year, now.month() as u16, now.day() as u16),
            lamfat::Time::new(
                now.hour() as u16,
                now.minute() as u16,
                now.second() as u16,
                now.millisecond() as u16,
            ),
        )
    }
}

pub(crate) fn open(file: File, part: Partition) -> Result<Fs, String> {
    lamfat::FileSystem::new(
        Slice::new(file, part),
        lamfat::FsOptions::new().time_provider(Utc),
    )
    .map_err(|e| format!("the boot partition is not a FAT file system lamfat can read: {e}"))
}

/// Cluster size and free bytes.
pub(crate) fn space(fs: &Fs) -> Result<(u64, u64), String> {
    let st = fs
        .stats()
        .map_err(|e| format!("reading the FAT's free space: {e}"))?;
    let cluster = u64::from(st.cluster_size());
    Ok((cluster, u64::from(st.free_clusters()) * cluster))
}

fn dir_at<'a>(fs: &'a Fs, path: &str) -> Option<Dir<'a>> {
    if path.is_empty() {
        Some(fs.root_dir())
    } else {
        fs.root_dir().open_dir(path).ok()
    }
}

/// A file's content; None when it does not exist.
pub(crate) fn read(fs: &Fs, path: &str) -> Result<Option<Vec<u8>>, String> {
    let Ok(mut f) = fs.root_dir().open_file(path) else {
        return Ok(None);
    };
    let mut out = Vec::new();
    f.read_to_end(&mut out)
        .map_err(|e| format!("reading {path} on the boot partition: {e}"))?;
    Ok(Some(out))
}

/// The last `max` bytes of a file (install.log can be long).
pub(crate) fn tail(fs: &Fs, path: &str, max: u64) -> Result<Option<Vec<u8>>, String> {
    use std::io::{Seek, SeekFrom};
    let Ok(mut f) = fs.root_dir().open_file(path) else {
        return Ok(None);
    };
    let len = f
        .seek(SeekFrom::End(0))
        .map_err(|e| format!("reading {path}: {e}"))?;
    f.seek(SeekFrom::Start(len.saturating_sub(max)))
        .map_err(|e| format!("reading {path}: {e}"))?;
    let mut out = Vec::new();
    f.read_to_end(&mut out)
        .map_err(|e| format!("reading {path}: {e}"))?;
    Ok(Some(out))
}

/// Bytes a file takes (whole clusters); 0 when it does not exist.
pub(crate) fn used_by_file(fs: &Fs, cluster: u64, dir: &str, name: &str) -> u64 {
    dir_at(fs, dir)
        .and_then(|d| {
            d.iter()
                .filter_map(Result::ok)
                .find(|e| e.is_file() && e.file_name().eq_ignore_ascii_case(name))
        })
        .map_or(0, |e| e.len().div_ceil(cluster) * cluster)
}

/// Bytes a directory tree takes (its files and sub-directories, a cluster each at least, the
/// directory itself included); 0 when it does not exist.
pub(crate) fn used_by_tree(fs: &Fs, cluster: u64, path: &str) -> u64 {
    let Some(d) = dir_at(fs, path) else { return 0 };
    let mut sum = cluster;
    for e in d.iter().filter_map(Result::ok) {
        let name = e.file_name();
        if name == "." || name == ".." {
            continue;
        }
        sum += if e.is_dir() {
            used_by_tree(fs, cluster, &format!("{path}/{name}"))
        } else {
            e.len().div_ceil(cluster) * cluster
        };
    }
    sum
}

/// Names in a directory (files and sub-directories), without `.` and `..`.
pub(crate) fn list(fs: &Fs, path: &str) -> Vec<(String, bool, u64)> {
    dir_at(fs, path).map_or_else(Vec::new, |d| {
        d.iter()
            .filter_map(Result::ok)
            .map(|e| (e.file_name(), e.is_dir(), e.len()))
            .filter(|(n, _, _)| n != "." && n != "..")
            .collect()
    })
}

/// Removes a directory and everything in it (a no-op when it is not there).
pub(crate) fn remove_tree(fs: &Fs, path: &str) -> Result<(), String> {
    if dir_at(fs, path).is_none() {
        return Ok(());
    }
    for (name, is_dir, _) in list(fs, path) {
        let p = format!("{path}/{name}");
        if is_dir {
            remove_tree(fs, &p)?;
        } else {
            fs.root_dir()
                .remove(&p)
                .map_err(|e| format!("removing {p} from the boot partition: {e}"))?;
        }
    }
    fs.root_dir()
        .remove(path)
        .map_err(|e| format!("removing {path} from the boot partition: {e}"))
}

pub(crate) fn create_dir(fs: &Fs, path: &str) -> Result<(), String> {
    fs.root_dir()
        .create_dir(path)
        .map(|_| ())
        .map_err(|e| format!("creating {path} on the boot partition: {e}"))
}

/// Writes (or replaces) a file from a reader; its directory must exist.
pub(crate) fn write(fs: &Fs, path: &str, from: &mut dyn Read) -> Result<u64, String> {
    let err = |e: &dyn std::fmt::Display| format!("writing {path} on the boot partition: {e}");
    let mut f = fs.root_dir().create_file(path).map_err(|e| err(&e))?;
    f.truncate().map_err(|e| err(&e))?;
    let n = std::io::copy(from, &mut f).map_err(|e| err(&e))?;
    f.flush().map_err(|e| err(&e))?;
    Ok(n)
}

/// Flushes the FS info sector and clears the dirty flag.
pub(crate) fn close(fs: Fs) -> Result<(), String> {
    fs.unmount()
        .map_err(|e| format!("closing the boot partition: {e}"))
}

#[cfg(test)]
mod tests {
    use lamfat::TimeProvider;

    #[test]
    fn files_are_dated_now() {
        let now = super::Utc.get_current_date_time();
        assert!(now.date.year >= 2024, "{now:?}");
        assert!((1..=12).contains(&now.date.month), "{now:?}");
    }
}
