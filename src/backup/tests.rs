//! End-to-end tests of the backup module against real files, GNU tar, bsdtar and a tmpfs.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{lchown, symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use flate2::write::GzEncoder;
use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use crate::backup::archive::AFTER_OPEN;
use crate::backup::{
    archive_dir, list_archives, prepare_restores, prune, restore_archive, verify_archive,
    ArchiveOptions, BackupError, Codec, Manifest, RestoreOptions, RetentionPolicy,
};

const NON_UTF8: &[u8] = b"caf\xe9-\xff.txt";

pub(super) fn opts_at(secs: u64) -> ArchiveOptions {
    ArchiveOptions {
        timestamp: Some(UNIX_EPOCH + Duration::from_secs(secs)),
        ..ArchiveOptions::default()
    }
}

pub(super) fn write(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

#[allow(clippy::format_collect)] // test data, built once
fn log_lines(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| {
            format!(
                "2024-05-01T12:{:02}:{:02}Z level=info req={i} path=/api/v1/items/{}\n",
                i / 60 % 60,
                i % 60,
                i * 7 % 1000
            )
        })
        .collect::<String>()
        .into_bytes()
}

/// A volume with every kind of entry the archiver must carry: owners, odd modes, an empty
/// directory, symlinks (one dangling, one with a long target), hard links, paths over 100 and
/// 255 bytes, a non-UTF-8 name, a read-only directory with contents, and a socket (skipped).
/// FIFOs and device nodes have their own test: restoring them is not this test's subject.
pub(super) fn fixture(root: &Path) {
    fs::create_dir_all(root).unwrap();
    write(&root.join("data/app.log"), &log_lines(2000));
    write(&root.join("data/config.toml"), b"key = 'value'\n");
    write(&root.join("data/empty-file"), b"");
    fs::create_dir_all(root.join("empty")).unwrap();
    symlink("data/config.toml", root.join("link")).unwrap();
    symlink("nowhere/missing", root.join("dangling")).unwrap();
    let long_target = format!("data/{}", "t".repeat(120));
    symlink(&long_target, root.join("long-target")).unwrap();
    write(&root.join("data/a"), b"shared inode\n");
    fs::hard_link(root.join("data/a"), root.join("data/b")).unwrap();
    fs::create_dir_all(root.join("other")).unwrap();
    fs::hard_link(root.join("data/a"), root.join("other/c")).unwrap();
    let deep: PathBuf = (0..5).map(|i| format!("{i}{}", "d".repeat(59))).collect();
    write(&root.join(&deep).join("deep-file.txt"), b"deep\n");
    assert!(deep.join("deep-file.txt").as_os_str().len() > 255);
    write(&root.join(OsStr::from_bytes(NON_UTF8)), b"latin-1 name\n");
    write(&root.join("ro/inside"), b"in a read-only dir\n");
    write(&root.join("suid"), b"#!/bin/sh\n");
    // The socket file stays when the listener is dropped.
    std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();

    let set_mode = |rel: &str, mode: u32| {
        fs::set_permissions(root.join(rel), fs::Permissions::from_mode(mode)).unwrap();
    };
    lchown(root.join("data/config.toml"), Some(1234), Some(5678)).unwrap();
    lchown(root.join("link"), Some(4321), Some(8765)).unwrap();
    lchown(root.join("empty"), Some(999), Some(999)).unwrap();
    lchown(root.join("suid"), Some(1000), Some(1000)).unwrap();
    set_mode("data/config.toml", 0o640);
    set_mode("empty", 0o750);
    set_mode("suid", 0o4755);
    set_mode(".", 0o711);
    // Times last, deepest first, since creating entries changes their directory's mtime.
    let mut all = Vec::new();
    collect(root, Path::new(""), &mut all);
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, rel) in all.iter().enumerate() {
        let t = TimeSpec::new(1_600_000_000 + i as i64 * 3600, 0);
        utimensat(
            nix::fcntl::AT_FDCWD,
            &root.join(rel),
            &t,
            &t,
            UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    }
    set_mode("ro", 0o555);
}

pub(super) fn collect(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    out.push(rel.to_path_buf());
    let abs = root.join(rel);
    if fs::symlink_metadata(&abs).unwrap().is_dir() {
        for entry in fs::read_dir(&abs).unwrap() {
            collect(root, &rel.join(entry.unwrap().file_name()), out);
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(super) struct Snap {
    kind: char,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    content: Vec<u8>,
}

/// Everything a restore must reproduce, plus which paths share an inode. Anything but
/// directories, files and symlinks (the fixture's socket, which the archiver skips) is left out.
pub(super) fn snapshot(root: &Path) -> (BTreeMap<PathBuf, Snap>, BTreeSet<Vec<PathBuf>>) {
    let mut paths = Vec::new();
    collect(root, Path::new(""), &mut paths);
    let mut snaps = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<PathBuf>> = BTreeMap::new();
    for rel in paths {
        let abs = root.join(&rel);
        let m = fs::symlink_metadata(&abs).unwrap();
        let (kind, content) = if m.is_dir() {
            ('d', Vec::new())
        } else if m.is_symlink() {
            (
                'l',
                fs::read_link(&abs).unwrap().as_os_str().as_bytes().to_vec(),
            )
        } else if m.is_file() {
            if m.nlink() > 1 {
                inodes.entry(m.ino()).or_default().push(rel.clone());
            }
            ('f', fs::read(&abs).unwrap())
        } else {
            continue;
        };
        let mode = if kind == 'l' { 0 } else { m.mode() & 0o7777 };
        snaps.insert(
            rel,
            Snap {
                kind,
                mode,
                uid: m.uid(),
                gid: m.gid(),
                mtime: m.mtime(),
                content,
            },
        );
    }
    let groups = inodes
        .into_values()
        .map(|mut g| {
            g.sort();
            g
        })
        .collect();
    (snaps, groups)
}

/// `root_mtime: false` for bsdtar, which never sets the mtime of the directory it extracts
/// into (not even from GNU tar's own archives).
pub(super) fn assert_same_tree(expected: &Path, actual: &Path, root_mtime: bool) {
    let (want, want_links) = snapshot(expected);
    let (mut got, got_links) = snapshot(actual);
    if !root_mtime {
        got.get_mut(Path::new("")).unwrap().mtime = want[Path::new("")].mtime;
    }
    for (path, snap) in &want {
        assert_eq!(got.get(path), Some(snap), "{} differs", path.display());
    }
    assert_eq!(want.len(), got.len(), "entry sets differ");
    assert_eq!(want_links, got_links, "hard-link groups differ");
    assert_eq!(want_links.len(), 1);
}

#[test]
fn round_trip_restores_an_identical_tree_and_swaps_it_in() {
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("vol/app");
    fixture(&src);
    let dest = tmp.path().join("backups");
    let report = archive_dir(&src, &dest, "app", &opts_at(1_700_000_000)).unwrap();
    assert_eq!(report.archive, dest.join("app/app-20231114T221320Z.tar.gz"));
    assert_eq!(report.manifest.skipped, ["sock (socket)"]);
    assert!(report.manifest.changed_files.is_empty());
    assert_eq!(report.manifest.pi_setup_version, env!("CARGO_PKG_VERSION"));
    let on_disk = Manifest::read_for(&report.archive).unwrap();
    assert_eq!(on_disk, report.manifest);
    let bytes = fs::read(&report.archive).unwrap();
    assert_eq!(hex::encode(Sha256::digest(&bytes)), on_disk.sha256);
    assert_eq!(bytes.len() as u64, on_disk.bytes_out);
    let verified = verify_archive(&report.archive).unwrap();
    assert_eq!(verified.entries, on_disk.entries);

    // Restore over an existing volume: the old one is moved aside, not deleted.
    let parent = tmp.path().join("restore");
    write(&parent.join("app/old-marker"), b"old");
    let restored =
        restore_archive(&report.archive, &parent, "app", &RestoreOptions::default()).unwrap();
    assert_eq!(restored.restored, parent.join("app"));
    let aside = restored.previous.expect("previous volume moved aside");
    assert!(aside
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("app.pre-restore-"));
    assert_eq!(fs::read(aside.join("old-marker")).unwrap(), b"old");
    assert_same_tree(&src, &parent.join("app"), true);
    let leftovers: Vec<_> = fs::read_dir(&parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".restore-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

pub(super) fn zstd_at(secs: u64) -> ArchiveOptions {
    ArchiveOptions {
        codec: Codec::Zstd,
        level: 3,
        ..opts_at(secs)
    }
}

#[test]
fn gnu_tar_and_bsdtar_list_and_extract_the_same_tree() {
    for codec in Codec::ALL {
        tools_read_the_archive(codec);
    }
}

fn tools_read_the_archive(codec: Codec) {
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("app");
    fixture(&src);
    let opts = ArchiveOptions {
        codec,
        level: codec.default_level(),
        ..opts_at(1_700_000_000)
    };
    let report = archive_dir(&src, &tmp.path().join("b"), "app", &opts).unwrap();
    assert!(report
        .archive
        .to_str()
        .unwrap()
        .ends_with(&format!("app-20231114T221320Z{}", codec.suffix())));
    assert_eq!(report.manifest.compression, codec.name());
    // The stock tools' own switches for the format: no auto-detection.
    let flag = match codec {
        Codec::Gzip => "--gzip",
        Codec::Zstd => "--zstd",
    };
    let mut ran = 0;
    for tool in ["tar", "bsdtar"] {
        let list = Command::new(tool)
            .arg(flag)
            .arg("-tf")
            .arg(&report.archive)
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e} (bash ci/deps installs it)"));
        ran += 1;
        assert!(
            list.status.success(),
            "{tool} -t: {}",
            String::from_utf8_lossy(&list.stderr)
        );
        assert!(
            list.stdout.windows(13).any(|w| w == b"deep-file.txt"),
            "{tool} lists the long path"
        );
        assert_eq!(
            list.stdout
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .count() as u64,
            report.manifest.entries
        );
        let out = tmp.path().join(format!("x-{tool}"));
        fs::create_dir(&out).unwrap();
        let extract = Command::new(tool)
            .arg(flag)
            .arg("-xpf")
            .arg(&report.archive)
            .arg("-C")
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            extract.status.success(),
            "{tool} -x: {}",
            String::from_utf8_lossy(&extract.stderr)
        );
        assert_same_tree(&src, &out, tool == "tar");
    }
    assert_eq!(ran, 2, "install GNU tar and bsdtar: bash ci/deps");
}

#[test]
fn files_changing_while_read_are_capped_padded_and_reported() {
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("app");
    let original = log_lines(3000);
    write(&src.join("grows.log"), &original);
    write(&src.join("shrinks.log"), &original);
    write(&src.join("steady.txt"), b"steady\n");
    AFTER_OPEN.with(|hook| {
        *hook.borrow_mut() = Some(Box::new(|path: &Path| {
            let mut f = OpenOptions::new().append(true).open(path).unwrap();
            match path.file_name().unwrap().to_str().unwrap() {
                "grows.log" => f.write_all(&vec![b'+'; 70_000]).unwrap(),
                "shrinks.log" => f.set_len(1000).unwrap(),
                _ => {}
            }
        }));
    });
    let result = archive_dir(&src, &tmp.path().join("b"), "app", &opts_at(1_700_000_000));
    AFTER_OPEN.with(|hook| hook.borrow_mut().take());
    let report = result.unwrap();
    assert_eq!(report.manifest.changed_files, ["grows.log", "shrinks.log"]);
    verify_archive(&report.archive).unwrap();

    let parent = tmp.path().join("r");
    fs::create_dir(&parent).unwrap();
    restore_archive(&report.archive, &parent, "app", &RestoreOptions::default()).unwrap();
    assert_eq!(
        fs::read(parent.join("app/grows.log")).unwrap(),
        original,
        "capped at the header size"
    );
    let shrunk = fs::read(parent.join("app/shrinks.log")).unwrap();
    assert_eq!(shrunk.len(), original.len(), "padded to the header size");
    assert_eq!(&shrunk[..1000], &original[..1000]);
    assert!(shrunk[1000..].iter().all(|&b| b == 0));
    if let Ok(out) = Command::new("tar")
        .arg("-tzf")
        .arg(&report.archive)
        .output()
    {
        assert!(
            out.status.success(),
            "GNU tar reads it: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A run that saw changes is never the base for "unchanged".
    let again = archive_dir(&src, &tmp.path().join("b"), "app", &opts_at(1_700_000_100)).unwrap();
    assert_eq!(again.manifest.reused_from, None);
}

/// Path, type and link target, written verbatim.
type RawEntry<'a> = (&'a [u8], tar::EntryType, &'a [u8]);

/// A gzip tar with raw headers, so names the tar crate would refuse can be written.
fn crafted_archive(dir: &Path, entries: &[RawEntry]) -> PathBuf {
    let mut raw = Vec::new();
    for (name, kind, link) in entries {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        let data: &[u8] = if *kind == tar::EntryType::Regular {
            b"payload\n"
        } else {
            b""
        };
        h.set_size(data.len() as u64);
        h.set_cksum();
        raw.extend_from_slice(h.as_bytes());
        raw.extend_from_slice(data);
        raw.resize(raw.len().div_ceil(512) * 512, 0);
    }
    raw.resize(raw.len() + 1024, 0);
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).unwrap();
    let bytes = gz.finish().unwrap();
    let path = dir.join("app-20240101T000000Z.tar.gz");
    fs::write(&path, &bytes).unwrap();
    let manifest = Manifest {
        name: "app".into(),
        archive: "app-20240101T000000Z.tar.gz".into(),
        created: "20240101T000000Z".into(),
        compression: "gzip".into(),
        level: 6,
        sha256: hex::encode(Sha256::digest(&bytes)),
        bytes_in: raw.len() as u64,
        bytes_out: bytes.len() as u64,
        files: 1,
        entries: entries.len() as u64,
        duration_ms: 0,
        pi_setup_version: "test".into(),
        changed_files: Vec::new(),
        skipped: Vec::new(),
        reused_from: None,
        blocks: None,
        base: None,
        deleted: Vec::new(),
    };
    fs::write(
        dir.join("app-20240101T000000Z.tar.gz.manifest.json"),
        manifest.to_bytes(),
    )
    .unwrap();
    path
}

#[test]
fn restore_refuses_entries_that_escape_and_changes_nothing() {
    use tar::EntryType::{Directory, Link, Regular, Symlink};
    // Symlinks themselves are data, restored whatever they point to (see
    // `restore::tests`); what is refused is writing below one.
    let cases: [(&str, Vec<RawEntry>); 7] = [
        (
            "dot-dot path",
            vec![(b"ok.txt", Regular, b""), (b"../x", Regular, b"")],
        ),
        (
            "nested dot-dot",
            vec![(b"ok.txt", Regular, b""), (b"a/../../x", Regular, b"")],
        ),
        (
            "absolute path",
            vec![(b"ok.txt", Regular, b""), (b"/abs", Regular, b"")],
        ),
        (
            "escaping hard link",
            vec![(b"ok.txt", Regular, b""), (b"hl", Link, b"../outside")],
        ),
        (
            "write through symlink",
            vec![(b"c", Symlink, b"."), (b"c/c/x", Regular, b"")],
        ),
        (
            "write through an absolute symlink",
            vec![
                (b"l", Symlink, b"/tmp/pi-setup-restore-escape"),
                (b"l/file", Regular, b""),
            ],
        ),
        (
            "directory through an escaping symlink",
            vec![
                (b"d/", Directory, b""),
                (b"d/up", Symlink, b"../.."),
                (b"d/up/x/", Directory, b""),
            ],
        ),
    ];
    for (what, entries) in cases {
        let tmp = TempDir::new().unwrap();
        let archive = crafted_archive(tmp.path(), &entries);
        let parent = tmp.path().join("vols");
        write(&parent.join("app/marker"), b"untouched");
        // The volume itself, and what sits beside it. (Not the parent's own mtime: the refused
        // extraction's temporary directory came and went there.)
        let names = |dir: &Path| -> BTreeSet<_> {
            fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect()
        };
        let before = (snapshot(&parent.join("app")), names(&parent));
        let err =
            restore_archive(&archive, &parent, "app", &RestoreOptions::default()).expect_err(what);
        assert!(
            matches!(err, BackupError::UnsafeEntry { .. }),
            "{what}: {err}"
        );
        let after = (snapshot(&parent.join("app")), names(&parent));
        assert_eq!(after, before, "{what}: the target changed");
        assert!(!tmp.path().join("x").exists() && !tmp.path().join("outside").exists());
        assert!(!Path::new("/tmp/pi-setup-restore-escape").exists());
    }
}

/// Unmounts even when the test fails, so a failed run leaves no mount behind.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_destination_leaves_no_partial_and_earlier_archives_intact() {
    let tmp = TempDir::new().unwrap();
    let dest = tmp.path().join("dest");
    fs::create_dir(&dest).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&dest)
        .status();
    if !mounted.is_ok_and(|s| s.success()) {
        eprintln!("cannot mount a tmpfs (not root?); skipping");
        return;
    }
    let _unmount = Tmpfs(dest.clone());
    let src = tmp.path().join("app");
    write(&src.join("small.txt"), &log_lines(100));
    let first = archive_dir(&src, &dest, "app", &opts_at(1_700_000_000)).unwrap();
    let mut noise = vec![0; 3 << 20];
    File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut noise)
        .unwrap();
    write(&src.join("big.bin"), &noise);
    let err = archive_dir(&src, &dest, "app", &opts_at(1_700_000_100)).expect_err("disk is full");
    assert!(err.is_disk_full(), "{err}");
    let mut left: Vec<String> = fs::read_dir(dest.join("app"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "app-20231114T221320Z.tar.gz",
            "app-20231114T221320Z.tar.gz.listing",
            "app-20231114T221320Z.tar.gz.manifest.json",
        ]
    );
    verify_archive(&first.archive).unwrap();
}

/// What `list_archives` finds of volume "app" under `dest`, oldest first.
fn archive_paths(dest: &Path) -> Vec<PathBuf> {
    list_archives(dest, "app")
        .unwrap()
        .into_iter()
        .map(|a| a.path)
        .collect()
}

#[test]
fn an_unchanged_tree_is_linked_not_recompressed() {
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("app");
    fixture(&src);
    let dest = tmp.path().join("b");
    let first = archive_dir(&src, &dest, "app", &opts_at(1_700_000_000)).unwrap();
    let second = archive_dir(&src, &dest, "app", &opts_at(1_700_086_400)).unwrap();
    assert_eq!(
        second.manifest.reused_from.as_deref(),
        Some("app-20231114T221320Z.tar.gz")
    );
    let ino = |p: &Path| fs::metadata(p).unwrap().ino();
    assert_eq!(ino(&first.archive), ino(&second.archive));
    assert_eq!(second.manifest.sha256, first.manifest.sha256);
    verify_archive(&second.archive).unwrap();

    // Same size and mtime but rewritten content still counts as a change (ctime).
    let config = src.join("data/config.toml");
    let mtime = fs::metadata(&config).unwrap().modified().unwrap();
    fs::write(&config, b"key = 'other'\n").unwrap();
    File::options()
        .write(true)
        .open(&config)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let third = archive_dir(&src, &dest, "app", &opts_at(1_700_172_800)).unwrap();
    assert_eq!(third.manifest.reused_from, None);
    assert_ne!(ino(&third.archive), ino(&second.archive));

    // Listing skips in-progress files; pruning removes archive, manifest and listing.
    fs::write(
        dest.join("app/app-20231120T000000Z.tar.gz.partial"),
        b"half",
    )
    .unwrap();
    let listed = archive_paths(&dest);
    assert_eq!(
        listed,
        [
            first.archive.clone(),
            second.archive.clone(),
            third.archive.clone()
        ]
    );
    let keep_one = RetentionPolicy {
        keep_last: 1,
        ..RetentionPolicy::default()
    };
    let deleted = prune(&dest, "app", &keep_one).unwrap();
    assert_eq!(deleted, [first.archive.clone(), second.archive.clone()]);
    for gone in [&first.archive, &second.archive] {
        assert!(!gone.exists());
        assert!(!crate::backup::manifest::manifest_path(gone).exists());
        assert!(!crate::backup::manifest::listing_path(gone).exists());
    }
    verify_archive(&third.archive).unwrap();

    // Another format is a new archive, not a link to one in the old format; the next run in
    // that format links to it. Listing and pruning see both formats.
    let fourth = archive_dir(&src, &dest, "app", &zstd_at(1_700_259_200)).unwrap();
    assert_eq!(fourth.manifest.reused_from, None);
    assert_eq!(fourth.manifest.compression, "zstd");
    assert!(fourth.archive.to_str().unwrap().ends_with(".tar.zst"));
    let fifth = archive_dir(&src, &dest, "app", &zstd_at(1_700_345_600)).unwrap();
    assert_eq!(
        fifth.manifest.reused_from.as_deref(),
        Some("app-20231117T221320Z.tar.zst")
    );
    assert_eq!(ino(&fourth.archive), ino(&fifth.archive));
    let listed = archive_paths(&dest);
    assert_eq!(
        listed,
        [
            third.archive.clone(),
            fourth.archive.clone(),
            fifth.archive.clone()
        ]
    );
    let deleted = prune(&dest, "app", &keep_one).unwrap();
    assert_eq!(deleted, [third.archive, fourth.archive]);
    verify_archive(&fifth.archive).unwrap();
}

#[test]
fn verification_catches_a_flipped_byte() {
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("app");
    write(&src.join("a.log"), &log_lines(5000));
    let report = archive_dir(&src, &tmp.path().join("b"), "app", &opts_at(1_700_000_000)).unwrap();
    let mut bytes = fs::read(&report.archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    fs::write(&report.archive, &bytes).unwrap();
    let err = verify_archive(&report.archive).expect_err("corruption is caught");
    assert!(matches!(err, BackupError::Corrupt { .. }), "{err}");
    let parent = tmp.path().join("r");
    fs::create_dir(&parent).unwrap();
    restore_archive(&report.archive, &parent, "app", &RestoreOptions::default())
        .expect_err("restore refuses a corrupt archive");
    assert!(fs::read_dir(&parent).unwrap().next().is_none());
}

#[test]
fn multi_block_streams_round_trip_through_gzip() {
    // Several 1 MiB blocks with a mix of compressible and random data: members of deflated and
    // of stored data, each with its own CRC; `gzip -t` checks the file on its own.
    multi_block_round_trip(opts_at(1_700_000_000), "gzip");
}

#[test]
fn multi_block_streams_round_trip_through_zstd() {
    // Several frames, each with its own checksum; `zstd -t` checks them on its own.
    multi_block_round_trip(zstd_at(1_700_000_000), "zstd");
}

fn multi_block_round_trip(opts: ArchiveOptions, tester: &str) {
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("app");
    write(&src.join("text.log"), &log_lines(60_000));
    let mut noise = vec![0; 2_500_000];
    File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut noise)
        .unwrap();
    write(&src.join("noise.bin"), &noise);
    let report = archive_dir(&src, &tmp.path().join("b"), "app", &opts).unwrap();
    assert!(report.manifest.bytes_in > 4 << 20);
    assert!(
        report.manifest.bytes_out < report.manifest.bytes_in * 3 / 4,
        "text compresses: {:?}",
        report.manifest
    );
    verify_archive(&report.archive).unwrap();
    let out = Command::new(tester)
        .arg("-t")
        .arg(&report.archive)
        .output()
        .unwrap_or_else(|e| panic!("{tester}: {e} (bash ci/deps installs it)"));
    assert!(
        out.status.success(),
        "{tester} -t: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // GNU tar and bsdtar read every member or frame, not just the first.
    for tool in ["tar", "bsdtar"] {
        let out = Command::new(tool)
            .arg(format!("--{tester}"))
            .arg("-tvf")
            .arg(&report.archive)
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e} (bash ci/deps installs it)"));
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            listing.contains("noise.bin") && listing.contains("text.log"),
            "{tool}: {listing}"
        );
    }
    let parent = tmp.path().join("r");
    fs::create_dir(&parent).unwrap();
    restore_archive(&report.archive, &parent, "app", &RestoreOptions::default()).unwrap();
    assert_eq!(fs::read(parent.join("app/noise.bin")).unwrap(), noise);
    assert_eq!(
        fs::read(parent.join("app/text.log")).unwrap(),
        log_lines(60_000)
    );
}

#[test]
fn a_new_archive_whose_file_differs_from_what_was_written_is_never_renamed_into_place() {
    for opts in [opts_at(1_700_000_000), zstd_at(1_700_000_000)] {
        let tmp = TempDir::new().unwrap();
        let src = tmp.path().join("app");
        write(&src.join("text.log"), &log_lines(20_000));
        let dest = tmp.path().join("b");
        *crate::backup::parallel::GARBLE_WRITES_UNDER.lock().unwrap() = Some(dest.clone());
        let err = archive_dir(&src, &dest, "app", &opts).expect_err("the read-back sees it");
        *crate::backup::parallel::GARBLE_WRITES_UNDER.lock().unwrap() = None;
        match &err {
            BackupError::Corrupt { reason, .. } => {
                assert!(reason.contains("sha256"), "{}: {reason}", opts.codec);
            }
            other => panic!("{}: {other}", opts.codec),
        }
        let left: Vec<_> = fs::read_dir(dest.join("app"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{}: {left:?}", opts.codec);
    }
}

#[test]
fn verify_checks_the_uncompressed_size_against_the_manifest() {
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("app");
    write(&src.join("a.log"), &log_lines(5000));
    let report = archive_dir(&src, &tmp.path().join("b"), "app", &zstd_at(1_700_000_000)).unwrap();
    let path = crate::backup::manifest::manifest_path(&report.archive);
    let mut manifest = report.manifest.clone();
    manifest.bytes_in += 512;
    fs::write(&path, manifest.to_bytes()).unwrap();
    let err = verify_archive(&report.archive).expect_err("the size differs");
    assert!(
        err.to_string().contains(&format!(
            "decompresses to {} bytes, the manifest says {}",
            report.manifest.bytes_in, manifest.bytes_in
        )),
        "{err}"
    );
}

#[test]
fn a_writer_that_fails_at_once_stops_the_pipeline_whatever_the_thread_count() {
    // With one worker, a gzip writer failing on its header (a full disk) used to leave the
    // producer waiting on a job queue nobody read any more.
    for (codec, threads) in [(Codec::Gzip, 1), (Codec::Gzip, 2), (Codec::Zstd, 1)] {
        for len in [(2 << 20) + 1, (5 << 20) / 2 + 1, 10 << 20] {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let full = File::options().write(true).open("/dev/full").unwrap();
                let (written, _seen) = std::sync::mpsc::channel();
                let result = crate::backup::parallel::compress_parallel(
                    full,
                    Path::new("/dev/full"),
                    codec,
                    codec.default_level(),
                    threads,
                    written,
                    |sink| {
                        let data = vec![b'x'; len];
                        sink.write_all(&data)
                            .map_err(crate::backup::error::io_err("writing", Path::new("x")))
                    },
                );
                let _ = tx.send(result.map(drop).map_err(|e| e.to_string()));
            });
            let result = rx
                .recv_timeout(Duration::from_mins(1))
                .unwrap_or_else(|_| panic!("{codec}, {threads} thread(s), {len} bytes: hangs"));
            let err = result.expect_err("/dev/full is full");
            assert!(
                err.contains("/dev/full") && err.contains("No space left"),
                "{codec}, {threads} thread(s), {len} bytes: {err}"
            );
        }
    }
}

#[test]
fn files_that_vanish_or_turn_into_symlinks_after_the_walk_are_reported_not_followed() {
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("app");
    write(&src.join("a-first.txt"), b"first\n");
    write(&src.join("b-vanishes.txt"), b"soon gone\n");
    write(&src.join("c-becomes-link.txt"), b"soon a link\n");
    write(&src.join("d-last.txt"), b"last\n");
    let secret = tmp.path().join("secret");
    fs::write(&secret, b"outside the volume\n").unwrap();
    // Opening the first file (after the walk listed all four) removes the second and replaces
    // the third with a symlink out of the volume.
    let (b, c, target) = (
        src.join("b-vanishes.txt"),
        src.join("c-becomes-link.txt"),
        secret.clone(),
    );
    AFTER_OPEN.with(|hook| {
        *hook.borrow_mut() = Some(Box::new(move |path: &Path| {
            if path.ends_with("a-first.txt") {
                fs::remove_file(&b).unwrap();
                fs::remove_file(&c).unwrap();
                symlink(&target, &c).unwrap();
            }
        }));
    });
    let result = archive_dir(&src, &tmp.path().join("b"), "app", &opts_at(1_700_000_000));
    AFTER_OPEN.with(|hook| hook.borrow_mut().take());
    let report = result.unwrap();
    let mut changed = report.manifest.changed_files.clone();
    changed.sort();
    assert_eq!(changed, ["b-vanishes.txt", "c-becomes-link.txt"]);
    verify_archive(&report.archive).unwrap();
    let parent = tmp.path().join("r");
    fs::create_dir(&parent).unwrap();
    restore_archive(&report.archive, &parent, "app", &RestoreOptions::default()).unwrap();
    let mut names: Vec<_> = fs::read_dir(parent.join("app"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a-first.txt", "d-last.txt"]);
    assert_eq!(fs::read(parent.join("app/d-last.txt")).unwrap(), b"last\n");
}

#[test]
fn progress_counts_file_bytes_up_to_exactly_the_total() {
    // Many small files: tar headers and padding outweigh the data, and must not be counted.
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("app");
    for i in 0..300 {
        write(
            &src.join(format!("d{}/f{i}.txt", i % 7)),
            &vec![b'x'; i * 3],
        );
    }
    let progress = std::sync::Arc::new(crate::backup::ArchiveProgress::default());
    let opts = ArchiveOptions {
        progress: Some(progress.clone()),
        ..opts_at(1_700_000_000)
    };
    archive_dir(&src, &tmp.path().join("b"), "app", &opts).unwrap();
    let total = progress.total.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(total, (0..300).map(|i| i * 3).sum::<u64>());
    assert_eq!(
        progress.done.load(std::sync::atomic::Ordering::Relaxed),
        total
    );
}

#[test]
fn a_reused_archive_keeps_the_level_it_was_written_at() {
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("app");
    write(&src.join("a.log"), &log_lines(100));
    let dest = tmp.path().join("b");
    archive_dir(&src, &dest, "app", &opts_at(1_700_000_000)).unwrap();
    let again = archive_dir(
        &src,
        &dest,
        "app",
        &ArchiveOptions {
            level: 9,
            ..opts_at(1_700_086_400)
        },
    )
    .unwrap();
    assert!(again.manifest.reused_from.is_some());
    assert_eq!(again.manifest.level, 6);
}

#[test]
fn fifos_and_device_nodes_are_archived_as_gnu_tar_archives_them() {
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    use std::os::unix::fs::FileTypeExt;
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("app");
    write(&src.join("data/file"), b"x");
    nix::unistd::mkfifo(&src.join("data/pipe"), Mode::from_bits_truncate(0o640)).unwrap();
    let root = nix::unistd::geteuid().is_root();
    if root {
        let mode = Mode::from_bits_truncate(0o666);
        mknod(&src.join("null"), SFlag::S_IFCHR, mode, makedev(1, 3)).unwrap();
        mknod(&src.join("loop"), SFlag::S_IFBLK, mode, makedev(7, 200)).unwrap();
        for node in ["null", "loop"] {
            fs::set_permissions(src.join(node), fs::Permissions::from_mode(0o666)).unwrap();
        }
    } else {
        eprintln!("not root: device nodes not tested");
    }
    // GNU tar skips sockets too ("socket ignored"): nothing can be restored into one.
    let _socket = std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap();
    let dest = tmp.path().join("b");
    let report = archive_dir(&src, &dest, "app", &opts_at(1_700_000_000)).unwrap();
    assert_eq!(report.manifest.skipped, ["sock (socket)"]);
    assert_eq!(report.manifest.entries, if root { 6 } else { 4 });
    verify_archive(&report.archive).unwrap();

    let list = Command::new("tar")
        .args(["--numeric-owner", "-tvzf"])
        .arg(&report.archive)
        .output()
        .unwrap();
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let list = String::from_utf8(list.stdout).unwrap();
    let line = |name: &str| {
        list.lines()
            .find(|l| l.ends_with(&format!(" {name}")))
            .unwrap_or_else(|| panic!("{name} in:\n{list}"))
            .to_string()
    };
    assert!(line("data/pipe").starts_with("prw-r----- 0/0 "), "{list}");
    if root {
        assert!(line("null").starts_with("crw-rw-rw- 0/0 "), "{list}");
        assert!(line("null").contains(" 1,3 "), "{list}");
        assert!(line("loop").starts_with("brw-rw-rw- 0/0 "), "{list}");
        assert!(line("loop").contains(" 7,200 "), "{list}");
    }
    let out = tmp.path().join("x");
    fs::create_dir(&out).unwrap();
    let extract = Command::new("tar")
        .args(["-xpzf"])
        .arg(&report.archive)
        .arg("-C")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        extract.status.success(),
        "{}",
        String::from_utf8_lossy(&extract.stderr)
    );
    let pipe = fs::symlink_metadata(out.join("data/pipe")).unwrap();
    assert!(pipe.file_type().is_fifo());
    assert_eq!(pipe.mode() & 0o7777, 0o640);
    if root {
        let null = fs::symlink_metadata(out.join("null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), makedev(1, 3));
        let block = fs::symlink_metadata(out.join("loop")).unwrap();
        assert!(block.file_type().is_block_device());
        assert_eq!(block.rdev(), makedev(7, 200));
    }

    // They are part of what "unchanged" compares.
    let again = archive_dir(&src, &dest, "app", &opts_at(1_700_000_100)).unwrap();
    assert!(again.manifest.reused_from.is_some());
    nix::unistd::mkfifo(&src.join("data/pipe2"), Mode::from_bits_truncate(0o600)).unwrap();
    let changed = archive_dir(&src, &dest, "app", &opts_at(1_700_000_200)).unwrap();
    assert_eq!(changed.manifest.reused_from, None);
}

#[test]
fn only_a_regular_file_is_read_as_an_archive_or_a_manifest() {
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("app");
    write(&src.join("f"), b"x");
    let dest = tmp.path().join("b");
    let fifo = archive_dir(&src, &dest, "app", &opts_at(1_700_000_000))
        .unwrap()
        .archive;
    write(&src.join("f"), b"y");
    let zero = archive_dir(&src, &dest, "app", &opts_at(1_700_000_100))
        .unwrap()
        .archive;
    fs::remove_file(&fifo).unwrap();
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    fs::remove_file(&zero).unwrap();
    symlink("/dev/zero", &zero).unwrap();
    // A hang must fail the test, not block the suite: each read runs on a thread with a deadline.
    let within = |f: Box<dyn FnOnce() -> String + Send>| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(f()));
        rx.recv_timeout(Duration::from_secs(10))
            .expect("still reading after 10 s")
    };
    for bad in [fifo.clone(), zero.clone()] {
        let shown = bad.display().to_string();
        let err = within(Box::new(move || {
            verify_archive(&bad).unwrap_err().to_string()
        }));
        assert!(
            err.starts_with(&format!("{shown} is not a regular file")),
            "{err}"
        );
    }
    let manifest = crate::backup::manifest::manifest_path(&fifo);
    fs::remove_file(&manifest).unwrap();
    nix::unistd::mkfifo(&manifest, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let d = dest.clone();
    let listed = within(Box::new(move || {
        format!("{:?}", list_archives(&d, "app").unwrap())
    }));
    assert_eq!(listed.matches("good: false").count(), 2, "{listed}");
    let m = manifest.clone();
    let err = within(Box::new(move || {
        Manifest::read_for(&fifo).unwrap_err().to_string()
    }));
    assert!(
        err.starts_with(&format!("{} is not a regular file", m.display())),
        "{err}"
    );
}

/// The fixture plus enough text and random data for several blocks, stored and deflated.
fn multi_block_fixture(root: &Path) {
    fixture(root);
    write(&root.join("big/text.log"), &log_lines(60_000));
    let mut noise = vec![0; 2_500_000];
    File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut noise)
        .unwrap();
    write(&root.join("big/noise.bin"), &noise);
}

/// How many times `archive` went through the parallel decompressor, and its most jobs.
fn parallel_reads(archive: &Path) -> (usize, u64) {
    let log = crate::backup::parallel::DECODED_IN_PARALLEL.lock().unwrap();
    let runs: Vec<u64> = log
        .iter()
        .filter(|(p, _)| p == archive)
        .map(|(_, jobs)| *jobs)
        .collect();
    (runs.len(), runs.into_iter().max().unwrap_or(0))
}

#[test]
fn indexed_archives_verify_and_restore_on_every_core_to_the_identical_tree() {
    for opts in [opts_at(1_700_000_000), zstd_at(1_700_000_000)] {
        let tmp = TempDir::new().unwrap();
        let src = tmp.path().join("vol/app");
        multi_block_fixture(&src);
        let report = archive_dir(&src, &tmp.path().join("b"), "app", &opts).unwrap();
        let m = &report.manifest;
        let index = m.blocks.as_ref().expect("a new archive has a block index");
        assert!(index.0.len() > 4, "{index:?}");
        assert_eq!(index.uncompressed(), m.bytes_in);
        let compressed: u64 = index.0.iter().map(|u| u64::from(u.compressed)).sum();
        assert_eq!(compressed, m.bytes_out);
        assert_eq!(Manifest::read_for(&report.archive).unwrap(), *m);

        verify_archive(&report.archive).unwrap();
        assert_eq!(
            parallel_reads(&report.archive).0,
            1,
            "verify read it in parallel"
        );
        let parent = tmp.path().join("restore");
        write(&parent.join("app/old-marker"), b"old");
        restore_archive(&report.archive, &parent, "app", &RestoreOptions::default()).unwrap();
        // One pass through the blocks checks and extracts.
        let (runs, jobs) = parallel_reads(&report.archive);
        assert_eq!(runs, 2, "{}", opts.codec);
        assert!(jobs > 4, "{jobs} jobs");
        assert_same_tree(&src, &parent.join("app"), true);
    }
}

/// Rewrites the manifest beside `archive` as JSON, through `edit`.
fn edit_manifest(
    archive: &Path,
    edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) {
    let path = PathBuf::from(format!("{}.manifest.json", archive.display()));
    let mut json: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    edit(json.as_object_mut().unwrap());
    fs::write(&path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
}

#[test]
fn an_archive_whose_manifest_has_no_block_index_still_verifies_and_restores() {
    // As written before the index existed: the same archive format, no "blocks" field.
    for opts in [opts_at(1_700_000_000), zstd_at(1_700_000_000)] {
        let tmp = TempDir::new().unwrap();
        let src = tmp.path().join("vol/app");
        multi_block_fixture(&src);
        let report = archive_dir(&src, &tmp.path().join("b"), "app", &opts).unwrap();
        edit_manifest(&report.archive, |m| {
            assert!(m.remove("blocks").is_some());
        });
        assert_eq!(Manifest::read_for(&report.archive).unwrap().blocks, None);
        verify_archive(&report.archive).unwrap();
        let parent = tmp.path().join("restore");
        fs::create_dir(&parent).unwrap();
        restore_archive(&report.archive, &parent, "app", &RestoreOptions::default()).unwrap();
        assert_same_tree(&src, &parent.join("app"), true);
        assert_eq!(parallel_reads(&report.archive).0, 0, "read as one stream");
    }
}

#[test]
fn a_flipped_byte_in_one_block_fails_the_parallel_restore_and_changes_nothing() {
    for opts in [opts_at(1_700_000_000), zstd_at(1_700_000_000)] {
        let tmp = TempDir::new().unwrap();
        let src = tmp.path().join("vol/app");
        multi_block_fixture(&src);
        let report = archive_dir(&src, &tmp.path().join("b"), "app", &opts).unwrap();
        let units = &report.manifest.blocks.as_ref().unwrap().0;
        // A byte in the middle of a unit in the middle of the archive.
        let k = units.len() / 2;
        let start: u64 = units[..k].iter().map(|u| u64::from(u.compressed)).sum();
        let end = start + u64::from(units[k].compressed);
        let mut bytes = fs::read(&report.archive).unwrap();
        bytes[(start + (end - start) / 2) as usize] ^= 0x10;
        fs::write(&report.archive, &bytes).unwrap();

        let err = verify_archive(&report.archive).unwrap_err().to_string();
        assert!(err.contains("sha256 is"), "{err}");
        let parent = tmp.path().join("restore");
        write(&parent.join("app/old-marker"), b"old");
        // The parent's own mtime changes (the extraction directory came and went); nothing in
        // it does.
        let listing = |p: &Path| {
            let mut names: Vec<_> = fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            names
        };
        let before = (listing(&parent), snapshot(&parent.join("app")));
        // Restore checks as it extracts, in one pass: the unit's own checksum stops it.
        let err = restore_archive(&report.archive, &parent, "app", &RestoreOptions::default())
            .unwrap_err();
        let unit = match opts.codec {
            Codec::Gzip => "gzip member",
            Codec::Zstd => "zstd frame",
        };
        let msg = err.to_string();
        assert!(matches!(err, BackupError::Corrupt { .. }), "{msg}");
        assert!(
            msg.contains(&format!("the {unit} at bytes {start}-{end}")),
            "{msg}"
        );
        assert!(parallel_reads(&report.archive).0 >= 1);
        assert_eq!(
            (listing(&parent), snapshot(&parent.join("app"))),
            before,
            "nothing changed"
        );
    }
}

#[test]
fn a_block_index_that_does_not_match_the_archive_is_refused() {
    // Two gzip members merged into one unit: the sizes still add up, but libdeflate reads one
    // member only. Proves the index, not a stream, drives the parallel read.
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("vol/app");
    multi_block_fixture(&src);
    let report = archive_dir(&src, &tmp.path().join("b"), "app", &opts_at(1_700_000_000)).unwrap();
    let mut units = report.manifest.blocks.clone().unwrap().0;
    let second = units.remove(1);
    units[0].compressed += second.compressed;
    units[0].uncompressed += second.uncompressed;
    let text: Vec<String> = units
        .iter()
        .map(|u| format!("{}/{}", u.compressed, u.uncompressed))
        .collect();
    edit_manifest(&report.archive, |m| {
        m.insert("blocks".into(), text.join(" ").into());
    });
    let err = verify_archive(&report.archive).unwrap_err().to_string();
    assert!(err.contains("the gzip member at bytes 0-"), "{err}");
    let parent = tmp.path().join("restore");
    fs::create_dir(&parent).unwrap();
    let err =
        restore_archive(&report.archive, &parent, "app", &RestoreOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains("the gzip member at bytes 0-"),
        "{err}"
    );
    assert_eq!(fs::read_dir(&parent).unwrap().count(), 0);
    // A manifest whose index is not "C/U ..." is a manifest error, not a crash.
    edit_manifest(&report.archive, |m| {
        m.insert("blocks".into(), "12/x".into());
    });
    assert!(matches!(
        Manifest::read_for(&report.archive),
        Err(BackupError::Manifest { .. })
    ));
}

/// `restore --all`: every archive extracted and checked before anything is swapped in; one bad
/// archive among them leaves every volume as it was and no extraction tree behind.
#[test]
fn several_volumes_are_prepared_together_and_a_bad_one_changes_none() {
    let tmp = TempDir::new().unwrap();
    let dest = tmp.path().join("b");
    let mut archives = Vec::new();
    for (i, name) in ["app", "db", "web"].into_iter().enumerate() {
        let src = tmp.path().join("vol").join(name);
        write(&src.join("data/file"), name.as_bytes());
        archives.push(
            archive_dir(&src, &dest, name, &opts_at(1_700_000_000 + i as u64))
                .unwrap()
                .archive,
        );
    }
    let parent = tmp.path().join("restore");
    write(&parent.join("app/old"), b"old app");
    write(&parent.join("db/old"), b"old db");
    let names = |p: &Path| {
        let mut v: Vec<String> = fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let before = names(&parent);

    // The last archive is corrupt: nothing is swapped in, and the trees of the two good ones
    // are gone again.
    let mut bytes = fs::read(&archives[2]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    let good_web = fs::read(&archives[2]).unwrap();
    fs::write(&archives[2], &bytes).unwrap();
    let items: Vec<(&Path, &str)> = archives
        .iter()
        .zip(["app", "db", "web"])
        .map(|(a, n)| (a.as_path(), n))
        .collect();
    let err = prepare_restores(&items, &parent, &RestoreOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, BackupError::Corrupt { .. }), "{err}");
    assert_eq!(names(&parent), before);
    assert_eq!(fs::read(parent.join("app/old")).unwrap(), b"old app");

    // All good: each swapped in, the old ones kept aside, no tree left over.
    fs::write(&archives[2], &good_web).unwrap();
    let prepared = prepare_restores(&items, &parent, &RestoreOptions::default()).unwrap();
    let waiting = names(&parent);
    assert_eq!(
        waiting.iter().filter(|n| n.contains(".restore-")).count(),
        3,
        "{waiting:?}"
    );
    assert_eq!(
        fs::read(parent.join("db/old")).unwrap(),
        b"old db",
        "not swapped in yet"
    );
    for p in prepared {
        p.swap_in().unwrap();
    }
    for name in ["app", "db", "web"] {
        assert_eq!(
            fs::read(parent.join(name).join("data/file")).unwrap(),
            name.as_bytes()
        );
    }
    let after = names(&parent);
    assert!(after.iter().all(|n| !n.contains(".restore-")), "{after:?}");
    assert_eq!(
        after.iter().filter(|n| n.contains(".pre-restore-")).count(),
        2,
        "{after:?}"
    );
}
