//! Differentials over several nights: each night's tree comes back exactly, from pi-setup's own
//! restore and from GNU tar; chains are verified; retention keeps the fulls they need.

use std::fs;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use super::tests::{assert_same_tree, fixture, opts_at, write, zstd_at};
use crate::backup::{
    archive_dir, list_archives, prune, restore_archive, verify_archive, ArchiveOptions,
    ArchiveReport, BackupError, Manifest, RestoreOptions, RetentionPolicy,
};

const DAY: u64 = 86_400;
const NIGHT0: u64 = 1_700_000_000;

fn weekly(opts: ArchiveOptions) -> ArchiveOptions {
    ArchiveOptions {
        full_every: Some(Duration::from_secs(7 * DAY)),
        ..opts
    }
}

fn night(n: u64) -> ArchiveOptions {
    weekly(opts_at(NIGHT0 + n * DAY))
}

/// Restores `archive` into a fresh parent and compares the tree with `src`, and the same
/// archives extracted by GNU tar (the full, the deletions removed by hand, the differential
/// over it) with `src` too.
fn restores_exactly(tmp: &Path, report: &ArchiveReport, src: &Path, label: &str) {
    let parent = tmp.join(format!("restore-{label}"));
    fs::create_dir_all(&parent).unwrap();
    let restored =
        restore_archive(&report.archive, &parent, "app", &RestoreOptions::default()).unwrap();
    assert_same_tree(src, &restored.restored, true);
    assert_specials_same(src, &restored.restored);

    let by_tar = tmp.join(format!("tar-{label}"));
    fs::create_dir_all(&by_tar).unwrap();
    // Over the full, an entry whose kind changed replaces what is there.
    let tar = |archive: &Path, over: bool| {
        let out = Command::new("tar")
            .arg("--numeric-owner")
            .args(over.then_some("--overwrite"))
            .arg("-xpf")
            .arg(archive)
            .arg("-C")
            .arg(&by_tar)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let m = &report.manifest;
    if let Some(base) = &m.base {
        tar(&report.archive.with_file_name(&base.archive), false);
        for d in &m.deleted {
            let p = by_tar.join(crate::backup::walk::unescape(d).unwrap());
            if fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
                fs::remove_dir_all(&p).unwrap();
            } else if fs::symlink_metadata(&p).is_ok() {
                fs::remove_file(&p).unwrap();
            }
        }
    }
    tar(&report.archive, m.base.is_some());
    assert_same_tree(src, &by_tar, true);
}

/// FIFOs and device nodes, which the shared snapshot leaves out.
fn assert_specials_same(expected: &Path, actual: &Path) {
    let mut all = Vec::new();
    super::tests::collect(expected, Path::new(""), &mut all);
    for rel in all {
        let want = fs::symlink_metadata(expected.join(&rel)).unwrap();
        let ft = want.file_type();
        if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
            let got = fs::symlink_metadata(actual.join(&rel))
                .unwrap_or_else(|e| panic!("{} missing: {e}", rel.display()));
            assert_eq!(got.mode(), want.mode(), "{}", rel.display());
            assert_eq!(got.rdev(), want.rdev(), "{}", rel.display());
        }
    }
}

/// Replaces the manifest beside `archive`: tests that tamper with one.
fn put_manifest(archive: &Path, m: &Manifest) {
    crate::backup::manifest::write_durably(
        &crate::backup::manifest::manifest_path(archive),
        &m.to_bytes(),
    )
    .unwrap();
}

fn set_mtime(path: &Path, secs: i64) {
    let t = nix::sys::time::TimeSpec::new(secs, 0);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

/// Directory mtimes move with every change inside them; the archive carries them, so the
/// comparison is exact. A big file that never changes keeps each night's differential small.
fn big_unchanging_file(src: &Path) {
    let bytes: Vec<u8> = (0..2_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    write(&src.join("media/big.bin"), &bytes);
}

#[test]
fn nightly_differentials_restore_each_night_exactly_with_deletions_and_renames() {
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("vol/app");
    fixture(&src);
    big_unchanging_file(&src);
    let dest = tmp.path().join("backups");

    let full = archive_dir(&src, &dest, "app", &night(0)).unwrap();
    assert_eq!(full.manifest.base, None, "the first archive is a full one");
    restores_exactly(tmp.path(), &full, &src, "0");

    // Night 1: a changed file, a new one in a new directory, a deleted file, a renamed
    // symlink, a mode change, a new FIFO.
    write(&src.join("data/config.toml"), b"key = 'night 1'\n");
    write(&src.join("new/dir/file"), b"new on night 1\n");
    fs::remove_file(src.join("data/empty-file")).unwrap();
    fs::rename(src.join("dangling"), src.join("dangling-renamed")).unwrap();
    fs::set_permissions(src.join("suid"), fs::Permissions::from_mode(0o755)).unwrap();
    nix::unistd::mkfifo(
        &src.join("new/pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o620),
    )
    .unwrap();
    // Symlinks that point anywhere (absolute, out of the volume) and a sparse file.
    symlink("/data/releases/5", src.join("new/current")).unwrap();
    symlink("../../../etc/passwd", src.join("new/up")).unwrap();
    let sparse = fs::File::create(src.join("new/sparse.img")).unwrap();
    sparse.set_len(256 << 10).unwrap();
    std::os::unix::fs::FileExt::write_at(&sparse, b"in the middle", 100_000).unwrap();
    drop(sparse);
    let d1 = archive_dir(&src, &dest, "app", &night(1)).unwrap();
    let m = &d1.manifest;
    assert_eq!(
        m.base.as_ref().map(|b| b.archive.as_str()),
        Some("app-20231114T221320Z.tar.gz")
    );
    assert_eq!(m.base.as_ref().unwrap().sha256, full.manifest.sha256);
    assert!(d1
        .archive
        .ends_with("app/app-20231115T221320Z.diff-20231114T221320Z.tar.gz"));
    assert_eq!(m.deleted, ["dangling", "data/empty-file"]);
    assert!(
        !m.deleted.iter().any(|d| d == "suid"),
        "a mode change is a change, not a deletion"
    );
    assert!(
        m.bytes_in * 4 < full.manifest.bytes_in,
        "a differential of a few small files (and a 256 KiB sparse one): {} of {} bytes",
        m.bytes_in,
        full.manifest.bytes_in
    );
    verify_archive(&d1.archive).unwrap();
    restores_exactly(tmp.path(), &d1, &src, "1");

    // Night 2, against the same full: a directory with a hard link in it deleted, a
    // directory replaced by a file and a file by a directory, a hard-linked file rewritten,
    // night 1's new file deleted again, and a file moved into another directory.
    fs::remove_dir_all(src.join("other")).unwrap();
    fs::remove_dir(src.join("empty")).unwrap();
    write(&src.join("empty"), b"was a directory\n");
    fs::remove_file(src.join("data/config.toml")).unwrap();
    write(&src.join("data/config.toml/inside"), b"was a file\n");
    write(&src.join("data/a"), b"shared inode, rewritten\n");
    fs::remove_file(src.join("new/dir/file")).unwrap();
    fs::rename(src.join("ro/inside"), src.join("new/moved")).ok();
    if nix::unistd::geteuid().is_root() {
        use nix::sys::stat::{makedev, mknod, Mode, SFlag};
        mknod(
            &src.join("new/null"),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o640),
            makedev(1, 3),
        )
        .unwrap();
    }
    set_mtime(&src.join("new"), 1_600_000_000);
    let d2 = archive_dir(&src, &dest, "app", &night(2)).unwrap();
    assert_eq!(
        d2.manifest.base, d1.manifest.base,
        "differentials are against the full"
    );
    assert!(
        d2.manifest.deleted.contains(&"other/c".to_string()),
        "{:?}",
        d2.manifest.deleted
    );
    // Deletions are against the full: a file made and deleted since is simply absent.
    assert!(!d2.manifest.deleted.iter().any(|d| d.starts_with("new")));
    verify_archive(&d2.archive).unwrap();
    restores_exactly(tmp.path(), &d2, &src, "2");

    // Night 3: nothing changed: a link to night 2's differential, still a differential.
    let d3 = archive_dir(&src, &dest, "app", &night(3)).unwrap();
    assert!(d3.manifest.reused_from.is_some());
    assert_eq!(d3.manifest.base, d2.manifest.base);
    assert_eq!(d3.manifest.deleted, d2.manifest.deleted);
    assert!(d3
        .archive
        .to_str()
        .unwrap()
        .contains(".diff-20231114T221320Z"));
    restores_exactly(tmp.path(), &d3, &src, "3");

    // `--at` an earlier night still gives that night's tree: night 1 from its own chain.
    let earlier = tmp.path().join("restore-1-again");
    fs::create_dir_all(&earlier).unwrap();
    let r = restore_archive(&d1.archive, &earlier, "app", &RestoreOptions::default()).unwrap();
    assert_same_tree(&tmp.path().join("restore-1/app"), &r.restored, true);

    // A week after the full, the next archive is a full one again, and the one after is a
    // differential of that.
    write(&src.join("data/app.log"), b"rotated\n");
    let f7 = archive_dir(&src, &dest, "app", &night(7)).unwrap();
    assert_eq!(f7.manifest.base, None);
    write(&src.join("new/moved"), b"night 8\n");
    let d8 = archive_dir(&src, &dest, "app", &night(8)).unwrap();
    assert_eq!(
        d8.manifest.base.as_ref().map(|b| b.archive.as_str()),
        f7.archive.file_name().and_then(|n| n.to_str())
    );
    restores_exactly(tmp.path(), &d8, &src, "8");
}

#[test]
fn zstd_differentials_restore_too() {
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("app");
    fixture(&src);
    big_unchanging_file(&src);
    let dest = tmp.path().join("b");
    archive_dir(&src, &dest, "app", &weekly(zstd_at(NIGHT0))).unwrap();
    write(&src.join("data/config.toml"), b"zstd night\n");
    fs::remove_file(src.join("link")).unwrap();
    let d = archive_dir(&src, &dest, "app", &weekly(zstd_at(NIGHT0 + DAY))).unwrap();
    assert!(d.manifest.base.is_some());
    assert!(d.archive.to_str().unwrap().ends_with(".tar.zst"));
    let parent = tmp.path().join("r");
    fs::create_dir_all(&parent).unwrap();
    let r = restore_archive(&d.archive, &parent, "app", &RestoreOptions::default()).unwrap();
    assert_same_tree(&src, &r.restored, true);
}

#[test]
fn when_most_of_the_tree_changed_or_no_schedule_is_set_the_archive_is_full() {
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("app");
    write(&src.join("a"), &[1; 10_000]);
    write(&src.join("b"), &[2; 100]);
    let dest = tmp.path().join("b");
    archive_dir(&src, &dest, "app", &night(0)).unwrap();
    write(&src.join("a"), &[3; 10_000]);
    let most = archive_dir(&src, &dest, "app", &night(1)).unwrap();
    assert_eq!(
        most.manifest.base, None,
        "a differential would be most of a full"
    );
    write(&src.join("b"), &[4; 100]);
    let small = archive_dir(&src, &dest, "app", &night(2)).unwrap();
    assert!(small.manifest.base.is_some());
    // `backup --full`, or `full_every_days = 1`: a full whatever changed.
    write(&src.join("b"), &[5; 100]);
    let forced = archive_dir(&src, &dest, "app", &opts_at(NIGHT0 + 3 * DAY)).unwrap();
    assert_eq!(forced.manifest.base, None);
    // A differential is never made against a full in another format.
    write(&src.join("b"), &[6; 100]);
    let other = archive_dir(&src, &dest, "app", &weekly(zstd_at(NIGHT0 + 4 * DAY))).unwrap();
    assert_eq!(other.manifest.base, None);
}

fn names(dest: &Path) -> Vec<String> {
    list_archives(dest, "app")
        .unwrap()
        .iter()
        .map(|a| a.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_differential_without_its_full_is_not_good_and_restores_nothing() {
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("app");
    write(&src.join("big"), &vec![7; 100_000]);
    write(&src.join("small"), b"1");
    let dest = tmp.path().join("b");
    let full = archive_dir(&src, &dest, "app", &night(0)).unwrap();
    write(&src.join("small"), b"2");
    let d = archive_dir(&src, &dest, "app", &night(1)).unwrap();
    assert!(d.manifest.base.is_some());
    verify_archive(&d.archive).unwrap();
    verify_archive(&full.archive).unwrap();

    // The full replaced by another file under its name: the chain is broken.
    let saved = tmp.path().join("saved-full");
    fs::copy(&full.archive, &saved).unwrap();
    let mut other = Manifest::read_for(&full.archive).unwrap();
    other.sha256 = "0".repeat(64);
    put_manifest(&full.archive, &other);
    let err = verify_archive(&d.archive).unwrap_err().to_string();
    assert!(
        err.contains("not the full archive it was made against"),
        "{err}"
    );

    // The full gone: the differential is listed but not good, and restore refuses it.
    fs::remove_file(&full.archive).unwrap();
    let listed = list_archives(&dest, "app").unwrap();
    assert_eq!(listed.len(), 1);
    assert!(!listed[0].good);
    let err = verify_archive(&d.archive).unwrap_err();
    assert!(matches!(err, BackupError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("its full archive"), "{err}");
    let parent = tmp.path().join("r");
    write(&parent.join("app/keep"), b"current");
    let err = restore_archive(&d.archive, &parent, "app", &RestoreOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("is missing"), "{err}");
    assert_eq!(fs::read(parent.join("app/keep")).unwrap(), b"current");
    assert_eq!(
        fs::read_dir(&parent).unwrap().count(),
        1,
        "nothing left beside the volume"
    );
}

#[test]
fn retention_keeps_the_full_a_kept_differential_needs_and_prunes_it_after() {
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("app");
    write(&src.join("big"), &vec![7; 100_000]);
    let dest = tmp.path().join("b");
    for n in 0..3 {
        write(&src.join("small"), n.to_string().as_bytes());
        archive_dir(&src, &dest, "app", &night(n)).unwrap();
    }
    let keep_one = RetentionPolicy {
        keep_last: 1,
        ..RetentionPolicy::default()
    };
    let pruned = prune(&dest, "app", &keep_one).unwrap();
    let pruned: Vec<PathBuf> = pruned
        .iter()
        .map(|p| PathBuf::from(p.file_name().unwrap()))
        .collect();
    assert_eq!(
        pruned,
        [PathBuf::from(
            "app-20231115T221320Z.diff-20231114T221320Z.tar.gz"
        )]
    );
    assert_eq!(
        names(&dest),
        [
            "app-20231114T221320Z.tar.gz",
            "app-20231116T221320Z.diff-20231114T221320Z.tar.gz"
        ]
    );
    // Once a new full is the newest archive, the old chain goes.
    write(&src.join("big"), &vec![8; 100_000]);
    archive_dir(&src, &dest, "app", &night(3)).unwrap();
    prune(&dest, "app", &keep_one).unwrap();
    assert_eq!(names(&dest), ["app-20231117T221320Z.tar.gz"]);
}

#[test]
fn a_differential_whose_deletions_escape_the_volume_is_refused() {
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("app");
    write(&src.join("big"), &vec![7; 100_000]);
    let dest = tmp.path().join("b");
    archive_dir(&src, &dest, "app", &night(0)).unwrap();
    write(&src.join("small"), b"x");
    let d = archive_dir(&src, &dest, "app", &night(1)).unwrap();
    let mut m = d.manifest.clone();
    m.deleted = vec!["../../etc/passwd".into()];
    put_manifest(&d.archive, &m);
    let parent = tmp.path().join("r");
    fs::create_dir_all(&parent).unwrap();
    let err = restore_archive(&d.archive, &parent, "app", &RestoreOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a path in the volume"), "{err}");
    assert_eq!(fs::read_dir(&parent).unwrap().count(), 0);
}

#[test]
fn symlinks_of_the_full_are_never_written_through_by_the_differential() {
    // A crafted differential with an entry under a path that is a symlink in the full.
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("app");
    write(&src.join("big"), &vec![7; 100_000]);
    let outside = tmp.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    symlink(&outside, src.join("escape")).unwrap();
    let dest = tmp.path().join("b");
    archive_dir(&src, &dest, "app", &night(0)).unwrap();
    write(&src.join("small"), b"x");
    let d = archive_dir(&src, &dest, "app", &night(1)).unwrap();
    // Rewrite the differential's tar with an extra entry `escape/pwned`.
    let raw = {
        let mut out = Vec::new();
        let mut dec = flate2::read::MultiGzDecoder::new(fs::File::open(&d.archive).unwrap());
        std::io::Read::read_to_end(&mut dec, &mut out).unwrap();
        out
    };
    let mut builder = tar::Builder::new(Vec::new());
    let mut ar = tar::Archive::new(&raw[..]);
    let mut entries = 0;
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let mut h = e.header().clone();
        let path = e.path().unwrap().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        builder.append_data(&mut h, path, &data[..]).unwrap();
        entries += 1;
    }
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    builder
        .append_data(&mut h, "escape/pwned", &b"owned"[..])
        .unwrap();
    let tar_bytes = builder.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &tar_bytes).unwrap();
    let gz = gz.finish().unwrap();
    fs::write(&d.archive, &gz).unwrap();
    let mut m = d.manifest.clone();
    m.sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&gz));
    m.bytes_out = gz.len() as u64;
    m.bytes_in = tar_bytes.len() as u64;
    m.entries = entries + 1;
    m.blocks = None;
    put_manifest(&d.archive, &m);
    let parent = tmp.path().join("r");
    fs::create_dir_all(&parent).unwrap();
    let err = restore_archive(&d.archive, &parent, "app", &RestoreOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("inside a symlink"), "{err}");
    assert!(!outside.join("pwned").exists());
    assert_eq!(fs::read_dir(&parent).unwrap().count(), 0);
}

#[test]
fn restore_checks_the_sha256_in_the_same_pass_as_it_extracts() {
    // Every unit decompresses and the tar parses, but the file is not the one the manifest
    // describes: refused, the temporary tree removed, the volume untouched.
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("app");
    write(&src.join("f"), b"content");
    let report = archive_dir(&src, &tmp.path().join("b"), "app", &night(0)).unwrap();
    let mut m = report.manifest.clone();
    m.sha256 = "ab".repeat(32);
    put_manifest(&report.archive, &m);
    let parent = tmp.path().join("r");
    write(&parent.join("app/keep"), b"current");
    let err = restore_archive(&report.archive, &parent, "app", &RestoreOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("its sha256 is"), "{err}");
    assert_eq!(fs::read(parent.join("app/keep")).unwrap(), b"current");
    assert_eq!(fs::read_dir(&parent).unwrap().count(), 1);
}
