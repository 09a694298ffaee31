//! Which archives to keep (last N, newest per day / ISO week / month, as restic and borg do)
//! and deleting the rest with their manifests and listings.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::backup::codec::Codec;
use crate::backup::error::{check_name, io_err, BackupError};
use crate::backup::manifest::{listing_path, manifest_path, Manifest};
use crate::backup::timestamp::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArchiveName {
    pub(crate) path: PathBuf,
    pub(crate) timestamp: Timestamp,
    /// Has a readable manifest whose size matches the file (and, for a differential, its full
    /// is good too). Only good archives can protect the "newest good archive" slot.
    pub(crate) good: bool,
    /// A differential's full, from its file name.
    pub(crate) base: Option<Timestamp>,
}

/// The timestamp (and a differential's full's) of an archive file of `name`
/// (`<name>-<ts>[.diff-<ts>]<format suffix>`); `None` for any other file.
pub(crate) fn parse_file_name(file: &str, name: &str) -> Option<(Timestamp, Option<Timestamp>)> {
    file.strip_prefix(name)
        .and_then(|n| n.strip_prefix('-'))
        .and_then(|n| Codec::ALL.iter().find_map(|c| n.strip_suffix(c.suffix())))
        .and_then(Timestamp::parse_stem)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RetentionPolicy {
    pub(crate) keep_last: usize,
    pub(crate) keep_daily: usize,
    pub(crate) keep_weekly: usize,
    pub(crate) keep_monthly: usize,
}

/// Archives of `name` under `<dest_dir>/<name>/`, oldest first. In-progress `.partial` files and
/// names that do not parse are ignored.
pub(crate) fn list_archives(dest_dir: &Path, name: &str) -> Result<Vec<ArchiveName>, BackupError> {
    check_name(name)?;
    let dir = dest_dir.join(name);
    let reader = match fs::read_dir(&dir) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("listing directory", &dir)(e)),
    };
    let mut archives = Vec::new();
    for entry in reader {
        let entry = entry.map_err(io_err("listing directory", &dir))?;
        let file_name = entry.file_name();
        let Some((stamp, base)) = file_name.to_str().and_then(|n| parse_file_name(n, name)) else {
            continue;
        };
        let path = entry.path();
        // Whatever is not a regular file (a FIFO, a symlink, a device) is listed but never
        // good; `verify` says why, and nothing opens it as an archive.
        let good = fs::symlink_metadata(&path).is_ok_and(|meta| {
            meta.is_file() && Manifest::read_for(&path).is_ok_and(|m| meta.len() == m.bytes_out)
        });
        archives.push(ArchiveName {
            path,
            timestamp: stamp,
            good,
            base,
        });
    }
    archives.sort_by_key(|a| a.timestamp);
    // A differential restores only with its full.
    let good_fulls: HashSet<Timestamp> = archives
        .iter()
        .filter(|a| a.good && a.base.is_none())
        .map(|a| a.timestamp)
        .collect();
    for a in &mut archives {
        if let Some(base) = a.base {
            a.good &= good_fulls.contains(&base);
        }
    }
    Ok(archives)
}

/// Whether `<dest_dir>/<name>/` holds only what backups of `name` write (archives, encrypted
/// copies, their manifests, listings and partial files): what `uninstall --purge` may delete,
/// when the destination is a disk that holds other things too.
pub(crate) fn holds_only_archives(dest_dir: &Path, name: &str) -> bool {
    let Ok(entries) = fs::read_dir(dest_dir.join(name)) else {
        return false;
    };
    entries.into_iter().all(|e| {
        e.ok().is_some_and(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            let mut base = file.as_str();
            for suffix in [".partial", ".age", ".manifest.json", ".listing", ".age"] {
                base = base.strip_suffix(suffix).unwrap_or(base);
            }
            e.file_type().is_ok_and(|t| t.is_file()) && parse_file_name(base, name).is_some()
        })
    })
}

/// Maps a timestamp to its day, ISO week or month.
type Period = fn(Timestamp) -> i64;

/// The archives to delete, oldest first. Never selects the newest good archive, nor archives
/// dated after `now` (a clock that went backwards must not eat recent backups); those also
/// take no slots. Each keep-rule counts only periods that have archives, newest first. A full
/// archive that a kept differential was made against is kept with it.
pub(crate) fn select_prune(
    archives: &[ArchiveName],
    now: SystemTime,
    policy: &RetentionPolicy,
) -> Vec<ArchiveName> {
    let now = Timestamp::from(now);
    let mut newest_first: Vec<&ArchiveName> = archives.iter().collect();
    newest_first.sort_by_key(|a| std::cmp::Reverse(a.timestamp));
    let mut keep: HashSet<&Path> = HashSet::new();
    let (future, past): (Vec<&ArchiveName>, Vec<&ArchiveName>) =
        newest_first.into_iter().partition(|a| a.timestamp > now);
    keep.extend(future.iter().map(|a| a.path.as_path()));
    if let Some(newest_good) = past.iter().find(|a| a.good) {
        keep.insert(&newest_good.path);
    }
    keep.extend(past.iter().take(policy.keep_last).map(|a| a.path.as_path()));
    let rules: [(Period, usize); 3] = [
        (Timestamp::day, policy.keep_daily),
        (Timestamp::iso_week, policy.keep_weekly),
        (Timestamp::month, policy.keep_monthly),
    ];
    for (period, count) in rules {
        let mut seen = HashSet::new();
        for archive in &past {
            if seen.len() == count {
                break;
            }
            if seen.insert(period(archive.timestamp)) {
                keep.insert(&archive.path);
            }
        }
    }
    let needed: HashSet<Timestamp> = archives
        .iter()
        .filter(|a| keep.contains(a.path.as_path()))
        .filter_map(|a| a.base)
        .collect();
    keep.extend(
        archives
            .iter()
            .filter(|a| a.base.is_none() && needed.contains(&a.timestamp))
            .map(|a| a.path.as_path()),
    );
    let mut prune: Vec<ArchiveName> = past
        .into_iter()
        .filter(|a| !keep.contains(a.path.as_path()))
        .cloned()
        .collect();
    prune.reverse();
    prune
}

/// Deletes what [`select_prune`] selects; returns the deleted archive paths. The archive goes
/// first so an interruption leaves at worst a stray manifest, never an archive without one.
pub(crate) fn prune(
    dest_dir: &Path,
    name: &str,
    policy: &RetentionPolicy,
) -> Result<Vec<PathBuf>, BackupError> {
    let archives = list_archives(dest_dir, name)?;
    let mut deleted = Vec::new();
    for archive in select_prune(&archives, SystemTime::now(), policy) {
        for path in [
            archive.path.clone(),
            manifest_path(&archive.path),
            listing_path(&archive.path),
        ] {
            crate::host::remove_file(&path)?;
        }
        deleted.push(archive.path);
    }
    if !deleted.is_empty() {
        crate::host::sync_dir(&dest_dir.join(name))?;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::SystemTime;

    use super::{select_prune, ArchiveName, RetentionPolicy};
    use crate::backup::timestamp::Timestamp;

    fn archive(stamp: &str, good: bool) -> ArchiveName {
        ArchiveName {
            path: PathBuf::from(format!("app-{stamp}.tar.gz")),
            timestamp: Timestamp::parse(stamp).expect(stamp),
            good,
            base: None,
        }
    }

    fn differential(stamp: &str, full: &str) -> ArchiveName {
        ArchiveName {
            path: PathBuf::from(format!("app-{stamp}.diff-{full}.tar.gz")),
            timestamp: Timestamp::parse(stamp).expect(stamp),
            good: true,
            base: Timestamp::parse(full),
        }
    }

    fn stamps(archives: &[ArchiveName]) -> Vec<String> {
        archives.iter().map(|a| a.timestamp.to_string()).collect()
    }

    fn at(stamp: &str) -> SystemTime {
        Timestamp::parse(stamp).unwrap().into()
    }

    #[test]
    fn keep_last_and_daily_keep_the_newest_of_each_day() {
        let archives = [
            archive("20240101T010000Z", true),
            archive("20240101T230000Z", true),
            archive("20240102T010000Z", true),
            archive("20240102T120000Z", true),
            archive("20240103T010000Z", true),
        ];
        let policy = RetentionPolicy {
            keep_daily: 2,
            ..RetentionPolicy::default()
        };
        let pruned = select_prune(&archives, at("20240110T000000Z"), &policy);
        // Days with archives, newest first: Jan 3 (01:00), Jan 2 (12:00).
        assert_eq!(
            stamps(&pruned),
            ["20240101T010000Z", "20240101T230000Z", "20240102T010000Z"]
        );
        let policy = RetentionPolicy {
            keep_last: 2,
            keep_daily: 3,
            ..RetentionPolicy::default()
        };
        let pruned = select_prune(&archives, at("20240110T000000Z"), &policy);
        assert_eq!(stamps(&pruned), ["20240101T010000Z", "20240102T010000Z"]);
    }

    #[test]
    fn weekly_uses_iso_weeks_and_monthly_calendar_months() {
        let archives = [
            archive("20201231T000000Z", true), // ISO week 2020-53, December
            archive("20210103T000000Z", true), // ISO week 2020-53, January
            archive("20210104T000000Z", true), // ISO week 2021-01, January
            archive("20210201T000000Z", true), // ISO week 2021-05, February
        ];
        let weekly = RetentionPolicy {
            keep_weekly: 3,
            ..RetentionPolicy::default()
        };
        let pruned = select_prune(&archives, at("20210301T000000Z"), &weekly);
        assert_eq!(stamps(&pruned), ["20201231T000000Z"]);
        let monthly = RetentionPolicy {
            keep_monthly: 2,
            ..RetentionPolicy::default()
        };
        let pruned = select_prune(&archives, at("20210301T000000Z"), &monthly);
        assert_eq!(stamps(&pruned), ["20201231T000000Z", "20210103T000000Z"]);
    }

    #[test]
    fn never_prunes_the_newest_good_archive_or_future_ones() {
        let archives = [
            archive("20240101T000000Z", true),
            archive("20240102T000000Z", false),
            archive("20240103T000000Z", false),
            archive("20240301T000000Z", true), // after `now`: clock went backwards
        ];
        let pruned = select_prune(
            &archives,
            at("20240105T000000Z"),
            &RetentionPolicy::default(),
        );
        assert_eq!(
            stamps(&pruned),
            ["20240102T000000Z", "20240103T000000Z"],
            "an all-zero policy still keeps the newest good archive"
        );
        let keep_one = RetentionPolicy {
            keep_last: 1,
            ..RetentionPolicy::default()
        };
        let pruned = select_prune(&archives, at("20240105T000000Z"), &keep_one);
        assert_eq!(stamps(&pruned), ["20240102T000000Z"]);
    }

    #[test]
    fn a_kept_differential_keeps_its_full() {
        let archives = [
            archive("20240101T030000Z", true),
            differential("20240102T030000Z", "20240101T030000Z"),
            differential("20240103T030000Z", "20240101T030000Z"),
            archive("20240104T030000Z", true),
            differential("20240105T030000Z", "20240104T030000Z"),
        ];
        let keep_two = RetentionPolicy {
            keep_last: 2,
            ..RetentionPolicy::default()
        };
        let pruned = select_prune(&archives, at("20240106T000000Z"), &keep_two);
        assert_eq!(
            stamps(&pruned),
            ["20240101T030000Z", "20240102T030000Z", "20240103T030000Z"]
        );
        let keep_one = RetentionPolicy {
            keep_last: 1,
            ..RetentionPolicy::default()
        };
        // The newest is a differential: its full stays, though no rule would keep it.
        let pruned = select_prune(&archives, at("20240106T000000Z"), &keep_one);
        assert_eq!(
            stamps(&pruned),
            ["20240101T030000Z", "20240102T030000Z", "20240103T030000Z"]
        );
        let daily = RetentionPolicy {
            keep_daily: 3,
            ..RetentionPolicy::default()
        };
        // Jan 3's differential is kept: so is Jan 1's full, and only Jan 2 goes.
        let pruned = select_prune(&archives, at("20240106T000000Z"), &daily);
        assert_eq!(stamps(&pruned), ["20240102T030000Z"]);
    }

    #[test]
    fn archive_file_names_parse_with_and_without_a_full() {
        use super::parse_file_name;
        let t = |s| Timestamp::parse(s).unwrap();
        assert_eq!(
            parse_file_name("my-app-20240102T030000Z.tar.gz", "my-app"),
            Some((t("20240102T030000Z"), None))
        );
        assert_eq!(
            parse_file_name("app-20240102T030000Z.diff-20240101T030000Z.tar.zst", "app"),
            Some((t("20240102T030000Z"), Some(t("20240101T030000Z"))))
        );
        // A full must be older than its differential; other names are not archives.
        for bad in [
            "app-20240102T030000Z.diff-20240103T030000Z.tar.gz",
            "app-20240102T030000Z.diff-.tar.gz",
            "app-20240102T030000Z.tar.gz.manifest.json",
            "apps-20240102T030000Z.tar.gz",
        ] {
            assert_eq!(parse_file_name(bad, "app"), None, "{bad}");
        }
    }
}
