//! Backup and restore through the CLI against the real daemon: round trips, stop mode with the
//! maintenance page, full disks, SIGKILL, crafted archives, exec hooks, retention, the lock.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::harness::{assert_ok, inspect, stderr, stdout, try_get, Sandbox, BUSYBOX_IMAGE};

/// A service whose httpd stops at once on SIGTERM (busybox as PID 1 would ignore it).
fn service(name: &str, extra: &str) -> String {
    format!(
        "[[service]]\nname = \"{name}\"\nimage = \"{BUSYBOX_IMAGE}\"\ndomains = [\"{name}.test\"]\nport = 8080\n\
         command = [\"sh\", \"-c\", \"trap 'exit 0' TERM; httpd -f -p 8080 -h /data & wait\"]\n\
         volumes = [\"data:/data\"]\n{extra}\n"
    )
}

fn archives(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| r.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.to_string_lossy().ends_with(".tar.gz"));
    v.sort();
    v
}

fn partials(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().path())
                .filter(|p| p.to_string_lossy().ends_with(".partial"))
                .collect()
        })
        .unwrap_or_default()
}

/// Everything that must survive a round trip, per relative path; hard links as inode groups.
fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<Vec<u8>>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let desc = if m.file_type().is_symlink() {
                format!(
                    "link -> {} {}:{}",
                    std::fs::read_link(&p).unwrap().display(),
                    m.uid(),
                    m.gid()
                )
            } else if m.is_dir() {
                stack.push(p.clone());
                format!(
                    "dir {:o} {}:{} mtime {}",
                    m.mode() & 0o7777,
                    m.uid(),
                    m.gid(),
                    m.mtime()
                )
            } else {
                if m.nlink() > 1 {
                    inodes.entry(m.ino()).or_default().push(rel.clone());
                }
                let content = std::fs::read(&p).unwrap();
                format!(
                    "file {:o} {}:{} mtime {} {} bytes {:x}",
                    m.mode() & 0o7777,
                    m.uid(),
                    m.gid(),
                    m.mtime(),
                    content.len(),
                    fnv(&content)
                )
            };
            out.insert(rel, desc);
        }
    }
    for mut group in inodes.into_values() {
        group.sort();
        let names: Vec<String> = group
            .iter()
            .map(|g| String::from_utf8_lossy(g).into_owned())
            .collect();
        for g in &group {
            out.get_mut(g)
                .unwrap()
                .push_str(&format!(" linked with {names:?}"));
        }
    }
    out
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

fn set_mtime(p: &Path, secs: u64) {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    std::fs::File::open(p).unwrap().set_modified(t).unwrap();
}

/// Fills a tree with every kind of entry a volume may hold.
fn rich_tree(d: &Path) {
    std::fs::create_dir_all(d.join("empty")).unwrap();
    std::fs::write(d.join("index.html"), "hello\n").unwrap();
    std::fs::write(d.join("config.ini"), "secret=1\n").unwrap();
    std::fs::set_permissions(d.join("config.ini"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(d.join("config.ini"), Some(1000), Some(1001)).unwrap();
    std::fs::write(d.join("tool"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(d.join("tool"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::hard_link(d.join("index.html"), d.join("index-copy.html")).unwrap();
    std::os::unix::fs::symlink("index.html", d.join("home.html")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", d.join("dangling")).unwrap();
    let long = d.join("a-directory-with-a-long-name/another-directory-with-a-long-name/and-a-third-one-to-pass-a-hundred-bytes");
    std::fs::create_dir_all(&long).unwrap();
    std::fs::write(
        long.join("deep-file-with-a-long-name-as-well.txt"),
        "deep\n",
    )
    .unwrap();
    std::fs::write(
        d.join(OsStr::from_bytes(b"caf\xe9-latin1.txt")),
        "latin-1 name\n",
    )
    .unwrap();
    std::fs::create_dir(d.join("private")).unwrap();
    std::fs::write(d.join("private/key"), "k").unwrap();
    std::fs::set_permissions(d.join("private"), std::fs::Permissions::from_mode(0o700)).unwrap();
    for f in ["index.html", "config.ini", "tool", "private/key"] {
        set_mtime(&d.join(f), 1_600_000_000);
    }
    set_mtime(&d.join("empty"), 1_500_000_000);
}

#[test]
fn backup_then_restore_brings_back_an_identical_tree_that_gnu_tar_also_reads() {
    let sb = Sandbox::new();
    sb.install(&sb.profile(&service("app", "")));
    let vol = sb.path("/var/vol/app");
    rich_tree(&vol.join("data"));
    let before = snapshot(&vol);

    let out = sb.run(&["backup", "app"]);
    assert_ok(&out);
    assert!(
        stdout(&out).contains("1 of 1 volume(s) backed up"),
        "{}",
        stdout(&out)
    );
    let archive = archives(&sb.path("/var/backups/pi-setup/app"))
        .pop()
        .expect("an archive");
    let list: serde_json::Value =
        serde_json::from_slice(&sb.run(&["list", "--json"]).stdout).unwrap();
    let app = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "app")
        .unwrap()
        .clone();
    let name = archive.file_name().unwrap().to_string_lossy().into_owned();
    let stamp = name.trim_start_matches("app-").trim_end_matches(".tar.gz");
    assert_eq!(app["last_backup"], stamp, "list shows the last backup");
    assert!(archive
        .with_file_name(format!(
            "{}.manifest.json",
            archive.file_name().unwrap().to_string_lossy()
        ))
        .exists());

    // GNU tar reads the same tree (owners, modes, links, long and non-UTF-8 names).
    let gnu = sb.root().join("gnu-extract");
    std::fs::create_dir(&gnu).unwrap();
    let tar = Command::new("tar")
        .arg("-xzpf")
        .arg(&archive)
        .arg("--numeric-owner")
        .arg("-C")
        .arg(&gnu)
        .output()
        .unwrap();
    assert!(tar.status.success(), "{}", stderr(&tar));
    let mut gnu_tree = snapshot(&gnu);
    let mut expected = before.clone();
    // The extraction directory's own mtime is tar's business, not the archive's.
    for t in [&mut gnu_tree, &mut expected] {
        t.retain(|k, _| !k.is_empty());
    }
    assert_eq!(gnu_tree, expected);
    std::fs::remove_dir_all(&gnu).unwrap();

    // Wreck the volume, then restore: identical again, the container running, the old kept.
    std::fs::remove_dir_all(vol.join("data/private")).unwrap();
    std::fs::write(vol.join("data/index.html"), "defaced\n").unwrap();
    let out = sb.run(&["restore", "app"]);
    assert_ok(&out);
    assert!(stdout(&out).contains("is kept as"), "{}", stdout(&out));
    assert_eq!(snapshot(&vol), before);
    assert_eq!(inspect(&sb.container("app"), "{{.State.Running}}"), "true");
    assert_eq!(sb.get("app.test"), (200, "hello\n".to_string()));
    // The note that lets `heal` restart a service a dead restore left stopped is gone again.
    let notes = sb.path("/var/lib/pi-setup/stopped-for-backup");
    assert_eq!(std::fs::read_dir(&notes).unwrap().count(), 0);
    let kept: Vec<String> = std::fs::read_dir(sb.path("/var/vol"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("app.pre-restore-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    // The next good backup removes it.
    assert_ok(&sb.run(&["backup", "app"]));
    assert!(!sb.path(&format!("/var/vol/{}", kept[0])).exists());

    let verify = sb.run(&["verify"]);
    assert_ok(&verify);
    assert!(
        stdout(&verify).ends_with("2 archive(s) verified, 0 bad\n"),
        "{}",
        stdout(&verify)
    );
}

#[test]
fn stop_mode_serves_the_maintenance_page_during_the_archive_and_restarts_the_service() {
    let sb = Sandbox::new();
    sb.install(&sb.profile(&service("big", "")));
    let data = sb.path("/var/vol/big/data");
    std::fs::write(data.join("index.html"), "big\n").unwrap();
    // Enough data that the archive takes a noticeable moment.
    let mut blob = vec![0u8; 160 << 20];
    let mut x = 0x9e3779b97f4a7c15u64;
    for chunk in blob.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(data.join("blob.bin"), &blob).unwrap();
    drop(blob);
    assert_eq!(sb.get("big.test").0, 200);
    let id = sb.container_id("big");

    let stop = Arc::new(AtomicBool::new(false));
    let port = sb.http_port;
    let watcher = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut maintenance = 0;
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) && n < 5000 {
                n += 1;
                if let Ok((503, body)) = try_get(port, "big.test") {
                    maintenance += u32::from(body.contains("Back soon"));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            maintenance
        })
    };
    let out = sb.run(&["backup", "big"]);
    stop.store(true, Ordering::SeqCst);
    assert_ok(&out);
    let maintenance = watcher.join().unwrap();
    assert!(
        maintenance > 0,
        "no maintenance page seen during the backup:\n{}",
        stdout(&out)
    );
    assert_eq!(inspect(&sb.container("big"), "{{.State.Running}}"), "true");
    assert_eq!(
        sb.container_id("big"),
        id,
        "stopped and started, not recreated"
    );
    assert_eq!(sb.get("big.test"), (200, "big\n".to_string()));

    // A restore keeps the service stopped just as long, and meanwhile leaves the note by which
    // `heal` would start it again if the restore died.
    let note = sb
        .path("/var/lib/pi-setup/stopped-for-backup")
        .join(sb.container("big"));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, note) = (stop.clone(), note.clone());
        std::thread::spawn(move || {
            let mut seen = false;
            while !stop.load(Ordering::SeqCst) && !seen {
                seen = note.exists();
                std::thread::sleep(Duration::from_millis(5));
            }
            seen
        })
    };
    let out = sb.run(&["restore", "big"]);
    stop.store(true, Ordering::SeqCst);
    assert_ok(&out);
    assert!(
        watcher.join().unwrap(),
        "no note while the restore had big stopped"
    );
    assert!(!note.exists(), "the note outlived the restore");
    assert_eq!(sb.get("big.test"), (200, "big\n".to_string()));
}

/// A small tmpfs, unmounted when dropped (also when the test fails).
struct TinyDisk(PathBuf);

impl TinyDisk {
    fn new(at: PathBuf, size: &str) -> TinyDisk {
        std::fs::create_dir_all(&at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount: {}", stderr(&out));
        TinyDisk(at)
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

#[test]
fn a_full_destination_fails_cleanly_keeps_earlier_archives_and_restarts_the_service() {
    let sb = Sandbox::new();
    sb.install(&sb.profile(&service("app", "")));
    let dest = TinyDisk::new(sb.root().join("usb"), "2m");
    let dest_arg = dest.0.to_str().unwrap().to_string();
    std::fs::write(sb.path("/var/vol/app/data/index.html"), "app\n").unwrap();
    assert_ok(&sb.run(&["backup", "app", "--dest", &dest_arg]));
    let first = archives(&dest.0.join("app"));
    assert_eq!(first.len(), 1);

    // Incompressible data larger than the disk.
    let noise: Vec<u8> = (0..(6u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(sb.path("/var/vol/app/data/noise.bin"), noise).unwrap();
    std::fs::create_dir_all(sb.path("/var/vol/notes")).unwrap();
    std::fs::write(sb.path("/var/vol/notes/todo.txt"), "buy milk\n").unwrap();
    let out = sb.run(&["backup", "--dest", &dest_arg]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.lines().any(|l| l.starts_with("app")
            && l.contains("FAILED")
            && l.contains("No space left on device")),
        "{text}"
    );
    assert!(
        text.contains("the destination is full: free space there"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("notes") && l.contains(" ok ")),
        "the other volumes still get backed up:\n{text}"
    );
    assert!(
        stderr(&out).contains("backup failed for: app"),
        "{}",
        stderr(&out)
    );
    assert_eq!(inspect(&sb.container("app"), "{{.State.Running}}"), "true");
    assert_eq!(partials(&dest.0.join("app")), Vec::<PathBuf>::new());
    assert_eq!(archives(&dest.0.join("app")), first);
    let verify = sb.run(&["verify", "--dest", &dest_arg]);
    assert_ok(&verify);
}

#[test]
fn sigkill_at_random_points_never_leaves_a_bad_archive_under_a_final_name() {
    let sb = Sandbox::new();
    sb.install(&sb.profile(""));
    let vol = sb.path("/var/vol/bulk");
    std::fs::create_dir_all(&vol).unwrap();
    let mut text = String::new();
    for i in 0..400_000u64 {
        text.push_str(&format!("{i} the quick brown fox {}\n", i * 7919 % 10007));
    }
    std::fs::write(vol.join("log.txt"), &text).unwrap();
    let noise: Vec<u8> = (0..(12u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    std::fs::write(vol.join("noise.bin"), noise).unwrap();
    let dest = sb.root().join("dest");
    let dest_arg = dest.to_str().unwrap().to_string();

    let mut seed = 12345u64;
    for round in 0..12 {
        // A change each round, so no run can reuse the previous archive.
        std::fs::write(vol.join("round.txt"), format!("{round}\n")).unwrap();
        let mut child = sb
            .cmd(&["backup", "bulk", "--dest", &dest_arg])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(20 + (seed >> 33) % 700));
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();
        // Whatever carries a final name verifies.
        let verify = sb.run(&["verify", "--dest", &dest_arg]);
        assert_ok(&verify);
    }
    let survived = archives(&dest.join("bulk")).len();
    assert!(
        survived < 12,
        "every run finished before its SIGKILL; the test proved nothing"
    );
    let out = sb.run(&["backup", "bulk", "--dest", &dest_arg]);
    assert_ok(&out);
    assert_eq!(
        partials(&dest.join("bulk")),
        Vec::<PathBuf>::new(),
        "leftovers of killed runs are cleaned up"
    );
    let verify = sb.run(&["verify", "--dest", &dest_arg]);
    assert_ok(&verify);
    assert!(stdout(&verify).contains(", 0 bad"), "{}", stdout(&verify));
}

#[test]
fn restore_refuses_an_archive_whose_entries_escape_and_changes_nothing() {
    let sb = Sandbox::new();
    sb.install(&sb.profile(&service("app", "")));
    std::fs::write(sb.path("/var/vol/app/data/index.html"), "app\n").unwrap();
    let before = snapshot(&sb.path("/var/vol/app"));
    let dir = sb.path("/var/backups/pi-setup/app");
    std::fs::create_dir_all(&dir).unwrap();
    let name = "app-20200101T000000Z.tar.gz";
    // A well-formed archive (with a manifest that matches it) whose entries point outside.
    let script = r#"
import hashlib, io, json, sys, tarfile
path, name = sys.argv[1], sys.argv[2]
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
    for entry in ["../escaped.txt", "/tmp/absolute.txt"]:
        data = b"pwned\n"
        info = tarfile.TarInfo(entry)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
raw = buf.getvalue()
import gzip
gz = gzip.compress(raw)
open(path, "wb").write(gz)
manifest = {"name": "app", "archive": name, "created": "20200101T000000Z", "compression": "gzip", "level": 6,
            "sha256": hashlib.sha256(gz).hexdigest(), "bytes_in": len(raw), "bytes_out": len(gz), "files": 2,
            "entries": 2, "duration_ms": 1, "pi_setup_version": "0.1.0", "changed_files": [], "skipped": [],
            "reused_from": None}
open(path + ".manifest.json", "w").write(json.dumps(manifest))
"#;
    let py = Command::new("python3")
        .args(["-c", script])
        .arg(dir.join(name))
        .arg(name)
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", stderr(&py));

    // An archive of another volume is refused by name.
    let other = sb.run(&[
        "restore",
        "gateway",
        "--archive",
        dir.join(name).to_str().unwrap(),
    ]);
    assert_eq!(other.status.code(), Some(2), "{}", stderr(&other));
    assert!(
        stderr(&other).contains("is an archive of 'app', not of 'gateway'"),
        "{}",
        stderr(&other)
    );

    let out = sb.run(&["restore", "app"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("../escaped.txt"), "{}", stderr(&out));
    assert_eq!(snapshot(&sb.path("/var/vol/app")), before);
    assert!(!sb.path("/var/vol/escaped.txt").exists() && !Path::new("/tmp/absolute.txt").exists());
    let leftovers: Vec<String> = std::fs::read_dir(sb.path("/var/vol"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("restore"))
        .collect();
    assert_eq!(leftovers, Vec::<String>::new());
    assert_eq!(inspect(&sb.container("app"), "{{.State.Running}}"), "true");
}

#[test]
fn exec_mode_runs_its_hooks_in_the_container_first() {
    let sb = Sandbox::new();
    let hooks = "backup = { mode = \"exec\", exec = [\"echo dumped > /data/dump.sql\"] }";
    let failing = "backup = { mode = \"exec\", exec = [\"echo no database >&2; exit 3\"] }";
    sb.install(&sb.profile(&format!(
        "{}{}",
        service("db", hooks),
        service("bad", failing)
    )));
    let out = sb.run(&["backup"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with("db ") && l.contains(" ok ")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("bad")
            && l.contains("FAILED")
            && l.contains("exit code 3: no database")),
        "{text}"
    );
    let archive = archives(&sb.path("/var/backups/pi-setup/db"))
        .pop()
        .unwrap();
    let dump = Command::new("tar")
        .arg("-xzOf")
        .arg(&archive)
        .arg("data/dump.sql")
        .output()
        .unwrap();
    assert_eq!(stdout(&dump), "dumped\n", "{}", stderr(&dump));
    assert_eq!(inspect(&sb.container("db"), "{{.State.Running}}"), "true");
}

#[test]
fn retention_keeps_what_the_profile_says_and_never_the_partial_ones() {
    let sb = Sandbox::new();
    sb.install(
        &sb.profile("[backup]\nkeep_last = 2\nkeep_daily = 0\nkeep_weekly = 0\nkeep_monthly = 0\n"),
    );
    let vol = sb.path("/var/vol/notes");
    std::fs::create_dir_all(&vol).unwrap();
    let mut pruned = 0;
    for i in 0..4 {
        std::fs::write(vol.join("n.txt"), format!("version {i}\n")).unwrap();
        let out = sb.run(&["backup", "notes"]);
        assert_ok(&out);
        pruned += stdout(&out).matches("pruned").count();
    }
    let kept = archives(&sb.path("/var/backups/pi-setup/notes"));
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert_eq!(pruned, 2);
    let listed = sb.run(&["backups", "notes"]);
    // A header, then one line per archive.
    assert_eq!(stdout(&listed).lines().count(), 3, "{}", stdout(&listed));
    // The newest is the last version.
    let newest = kept.last().unwrap();
    let content = Command::new("tar")
        .arg("-xzOf")
        .arg(newest)
        .arg("n.txt")
        .output()
        .unwrap();
    assert_eq!(stdout(&content), "version 3\n");
}

#[test]
fn a_second_run_waits_for_the_lock_then_names_its_holder() {
    let sb = Sandbox::new();
    sb.install(&sb.profile(""));
    let lock = sb.path("/run/pi-setup.lock");
    std::fs::write(&lock, "4242 backup\n").unwrap();
    // --no-fork: flock execs sleep itself, so killing it releases the lock and leaves nothing.
    let mut holder = Command::new("flock")
        .args(["--no-fork", "-x"])
        .arg(&lock)
        .args(["sleep", "60"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let out = sb.run(&["backup"]);
    let waited = started.elapsed();
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("another pi-setup is running (pid 4242, `pi-setup backup`)"),
        "{}",
        stderr(&out)
    );
    assert!(
        waited >= Duration::from_secs(9),
        "it waits briefly first: {waited:?}"
    );
}

#[test]
fn without_docker_a_stop_mode_volume_fails_instead_of_being_archived_live() {
    let sb = Sandbox::new();
    sb.install(&sb.profile(&service("db", "")));
    std::fs::create_dir_all(sb.path("/var/vol/notes")).unwrap();
    let out = sb
        .cmd(&["backup"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.lines().any(|l| l.starts_with("db")
            && l.contains("FAILED")
            && l.contains("cannot stop container")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("notes") && l.contains(" ok ")),
        "{text}"
    );
    assert_eq!(
        archives(&sb.path("/var/backups/pi-setup/db")),
        Vec::<PathBuf>::new()
    );
}

#[test]
fn heal_starts_a_service_a_dead_backup_left_stopped() {
    let sb = Sandbox::new();
    sb.install(&sb.profile(&service("app", "")));
    // A finished backup leaves no note behind.
    assert_ok(&sb.run(&["backup", "app"]));
    let notes = sb.path("/var/lib/pi-setup/stopped-for-backup");
    assert_eq!(std::fs::read_dir(&notes).unwrap().count(), 0);
    // What a backup killed between stop and start leaves: the note, and a stopped container.
    std::fs::write(notes.join(sb.container("app")), "").unwrap();
    assert!(
        crate::harness::docker(&["stop", "-t", "1", &sb.container("app")])
            .status
            .success()
    );
    let out = sb.run(&["heal"]);
    assert_ok(&out);
    assert!(
        stdout(&out).contains(&format!(
            "starting {} (a backup stopped it and did not finish)",
            sb.container("app")
        )),
        "{}",
        stdout(&out)
    );
    assert_eq!(inspect(&sb.container("app"), "{{.State.Running}}"), "true");
    assert_eq!(std::fs::read_dir(&notes).unwrap().count(), 0);
}

#[test]
fn zstd_from_the_profile_or_the_command_line_round_trips_and_bad_levels_change_nothing() {
    let sb = Sandbox::new();
    sb.install(&sb.profile("[backup]\ncompress = \"zstd\"\n"));
    let vol = sb.path("/var/vol/notes");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::write(vol.join("n.txt"), "zstd version\n").unwrap();
    let dir = sb.path("/var/backups/pi-setup/notes");

    for (args, message) in [
        (
            &["backup", "--compress", "lz4"][..],
            "--compress \"lz4\" is not one of gzip, zstd",
        ),
        // The profile says zstd: its range applies.
        (
            &["backup", "--level", "20"][..],
            "--level 20 is out of range for zstd (1-19)",
        ),
        (
            &["backup", "--compress", "gzip", "--level", "10"][..],
            "--level 10 is out of range for gzip (1-9)",
        ),
    ] {
        let out = sb.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
        assert!(!dir.exists(), "{args:?} wrote {}", dir.display());
    }

    // A destination that only looks like it is outside /var/vol.
    let sneaky = format!("{}/../vol/notes-backups", sb.path("/var/vol").display());
    let link = sb.root().join("to-vol");
    std::os::unix::fs::symlink(sb.path("/var/vol"), &link).unwrap();
    let via_link = format!("{}/backups", link.display());
    for d in [&sneaky, &via_link] {
        let out = sb.run(&["backup", "--dest", d]);
        assert_eq!(out.status.code(), Some(2), "{d}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("is inside /var/vol"),
            "{d}: {}",
            stderr(&out)
        );
    }
    assert!(!sb.path("/var/vol/notes-backups").exists());
    assert!(!sb.path("/var/vol/backups").exists());

    // The profile's format and its default level.
    assert_ok(&sb.run(&["backup", "notes"]));
    let zst = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".tar.zst"))
        .expect("a .tar.zst archive");
    let manifest = |archive: &Path| -> serde_json::Value {
        let m = format!("{}.manifest.json", archive.display());
        serde_json::from_slice(&std::fs::read(m).unwrap()).unwrap()
    };
    assert_eq!(manifest(&zst)["compression"], "zstd");
    assert_eq!(manifest(&zst)["level"], 3);
    let content = Command::new("tar")
        .arg("--zstd")
        .arg("-xOf")
        .arg(&zst)
        .arg("n.txt")
        .output()
        .unwrap();
    assert!(content.status.success(), "{}", stderr(&content));
    assert_eq!(stdout(&content), "zstd version\n");

    // gzip from the command line starts from gzip's default level, not the profile's 3.
    std::fs::write(vol.join("n.txt"), "gzip version\n").unwrap();
    assert_ok(&sb.run(&["backup", "notes", "--compress", "gzip"]));
    let gz = archives(&dir).pop().expect("a .tar.gz archive");
    assert_eq!(manifest(&gz)["compression"], "gzip");
    assert_eq!(manifest(&gz)["level"], 6);

    let listed = sb.run(&["backups", "notes"]);
    // A header, then one line per archive.
    assert_eq!(stdout(&listed).lines().count(), 3, "{}", stdout(&listed));
    let verify = sb.run(&["verify"]);
    assert_ok(&verify);
    assert!(
        stdout(&verify).ends_with("2 archive(s) verified, 0 bad\n"),
        "{}",
        stdout(&verify)
    );

    // Restore the zstd one by its timestamp.
    let name = zst.file_name().unwrap().to_string_lossy().into_owned();
    let stamp = name
        .trim_start_matches("notes-")
        .trim_end_matches(".tar.zst");
    assert_ok(&sb.run(&["restore", "notes", "--at", stamp]));
    assert_eq!(
        std::fs::read_to_string(vol.join("n.txt")).unwrap(),
        "zstd version\n"
    );
}

#[test]
fn dry_run_names_each_volume_its_mode_and_the_format_and_changes_nothing() {
    let sb = Sandbox::new();
    sb.install(&sb.profile(&service("app", "")));
    std::fs::create_dir_all(sb.path("/var/vol/notes")).unwrap();
    let started = inspect(&sb.container("app"), "{{.State.StartedAt}}");
    let out = sb.run(&["backup", "--dry-run", "--compress", "zstd", "--level", "7"]);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(
        text.contains("Would back up 3 volume(s) to ")
            && text.contains("as zstd level 7 (.tar.zst):"),
        "{text}"
    );
    for (name, mode) in [("app", "stop"), ("gateway", "live"), ("notes", "live")] {
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().take(2).eq([name, mode])),
            "{name} {mode} in:\n{text}"
        );
    }
    assert!(text.contains("Dry run: nothing was changed."), "{text}");
    assert!(!sb.path("/var/backups/pi-setup").exists());
    // The stop-mode service was not stopped.
    assert_eq!(inspect(&sb.container("app"), "{{.State.Running}}"), "true");
    assert_eq!(
        inspect(&sb.container("app"), "{{.State.StartedAt}}"),
        started
    );
}

#[test]
fn restore_dry_run_names_the_archive_and_the_container_and_changes_nothing() {
    let sb = Sandbox::new();
    sb.install(&sb.profile(&service("app", "")));
    let vol = sb.path("/var/vol/app");
    std::fs::write(vol.join("data/index.html"), "hello\n").unwrap();
    assert_ok(&sb.run(&["backup", "app"]));
    let archive = archives(&sb.path("/var/backups/pi-setup/app"))
        .pop()
        .unwrap();
    std::fs::write(vol.join("data/index.html"), "changed\n").unwrap();
    let started = inspect(&sb.container("app"), "{{.State.StartedAt}}");

    let out = sb.run(&["restore", "app", "--dry-run"]);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(
        text.contains(&format!("from {}", archive.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!("stopping container {}", sb.container("app"))),
        "{text}"
    );
    assert!(text.contains("Dry run: nothing was changed."), "{text}");
    assert_eq!(
        std::fs::read_to_string(vol.join("data/index.html")).unwrap(),
        "changed\n"
    );
    assert_eq!(
        inspect(&sb.container("app"), "{{.State.StartedAt}}"),
        started
    );
    let aside = std::fs::read_dir(sb.path("/var/vol"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().contains("restore")
        })
        .count();
    assert_eq!(aside, 0);

    // A timestamp with no archive is bad input that lists the ones there are.
    let out = sb.run(&["restore", "app", "--at", "20000101T000000Z"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no good archive of 'app' at 20000101T000000Z"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn every_directory_is_backed_up_or_reported_and_restore_checks_before_stopping() {
    let sb = Sandbox::new();
    sb.install(&sb.profile(&service("app", "")));
    for d in ["Photos", "old_db", "data.bak", "bad name"] {
        std::fs::create_dir_all(sb.path(&format!("/var/vol/{d}"))).unwrap();
        std::fs::write(sb.path(&format!("/var/vol/{d}/f.txt")), d).unwrap();
    }
    let dry = sb.run(&["backup", "--dry-run"]);
    assert_ok(&dry);
    assert!(
        stdout(&dry).contains("NOT backed up: \"") && stdout(&dry).contains("bad name"),
        "{}",
        stdout(&dry)
    );

    let out = sb.run(&["backup"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("5 of 6 volume(s) backed up"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("bad name") && l.contains("FAILED its name cannot name an archive")),
        "{text}"
    );
    for d in ["Photos", "old_db", "data.bak", "app", "gateway"] {
        let dir = sb.path(&format!("/var/backups/pi-setup/{d}"));
        assert_eq!(archives(&dir).len(), 1, "{d}: {text}");
    }
    // Not a terminal: one plain line per volume on stderr, for the journal.
    assert!(
        stderr(&out).contains("backing up Photos (live) ..."),
        "{}",
        stderr(&out)
    );
    let listed = sb.run(&["backups", "Photos"]);
    assert_eq!(stdout(&listed).lines().count(), 2, "{}", stdout(&listed));

    // A corrupt archive: restore refuses it without stopping the service.
    let archive = archives(&sb.path("/var/backups/pi-setup/app"))
        .pop()
        .unwrap();
    let mut bytes = std::fs::read(&archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&archive, bytes).unwrap();
    let started = inspect(&sb.container("app"), "{{.State.StartedAt}}");
    let out = sb.run(&["restore", "app"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    // Checked as it is extracted beside the volume: the flipped byte's gzip member fails.
    assert!(
        stderr(&out).contains("failed verification: the gzip member at bytes"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        inspect(&sb.container("app"), "{{.State.StartedAt}}"),
        started
    );
    assert_eq!(inspect(&sb.container("app"), "{{.State.Running}}"), "true");

    // A restore by a name that is not a DNS label works like any other.
    std::fs::write(sb.path("/var/vol/Photos/f.txt"), "changed").unwrap();
    assert_ok(&sb.run(&["restore", "Photos"]));
    assert_eq!(
        std::fs::read_to_string(sb.path("/var/vol/Photos/f.txt")).unwrap(),
        "Photos"
    );
}

#[test]
fn the_nightly_timer_takes_its_schedule_from_the_profile() {
    let sb = Sandbox::new();
    sb.install(&sb.profile("[backup]\nschedule = \"Sun *-*-* 04:10:00\"\n"));
    let timer =
        std::fs::read_to_string(sb.path("/etc/systemd/system/pi-setup-backup.timer")).unwrap();
    for line in [
        "OnCalendar=Sun *-*-* 04:10:00\n",
        "Persistent=true\n",
        "RandomizedDelaySec=15min\n",
    ] {
        assert!(timer.contains(line), "{line:?} in:\n{timer}");
    }
}

#[test]
fn a_mistyped_name_is_a_usage_error_that_lists_the_names_there() {
    let sb = Sandbox::new();
    for d in ["app", "notes"] {
        std::fs::create_dir_all(sb.path(&format!("/var/vol/{d}"))).unwrap();
        std::fs::write(sb.path(&format!("/var/vol/{d}/f.txt")), d).unwrap();
    }
    assert_ok(&sb.run(&["backup", "app"]));
    let dest = sb.path("/var/backups/pi-setup");
    let vol = sb.path("/var/vol");
    for args in [
        &["backups", "NOSUCH"][..],
        &["verify", "NOSUCH"],
        &["restore", "NOSUCH"],
        &["restore", "NOSUCH", "--dry-run"],
    ] {
        let out = sb.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), "", "{args:?}");
        assert_eq!(
            stderr(&out),
            format!(
                "error: no archives or volume named 'NOSUCH' in {} or {} (names there: app, notes)\n\
                 nothing was changed\n",
                dest.display(),
                vol.display()
            ),
            "{args:?}"
        );
    }
    let out = sb.run(&["backup", "NOSUCH"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("there is no volume directory")
            && stderr(&out).contains("(volumes: app, notes)"),
        "{}",
        stderr(&out)
    );

    // A volume without archives yet is no typo: an empty list, and restore says what there is.
    let listed = sb.run(&["backups", "notes"]);
    assert_ok(&listed);
    assert_eq!(
        stdout(&listed),
        "NAME             TIMESTAMP               SIZE  STATE ARCHIVE\n"
    );
    let out = sb.run(&["restore", "notes"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "there is no archive of 'notes' in {} yet (archives there: app)",
            dest.display()
        )),
        "{}",
        stderr(&out)
    );

    // Every listing starts with the column names.
    let listed = stdout(&sb.run(&["backups"]));
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "TIMESTAMP", "SIZE", "STATE", "ARCHIVE"]
    );
    assert!(lines[1].starts_with("app "), "{listed}");
    assert!(lines[1].contains(" B  ok "), "{listed}");
}

#[test]
fn the_summary_shows_small_volumes_and_short_runs_in_readable_units() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.path("/var/vol/tiny")).unwrap();
    std::fs::write(sb.path("/var/vol/tiny/f.txt"), "a few bytes").unwrap();
    let out = sb.run(&["backup", "tiny"]);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(
        !text.contains("0.0 MiB") && !text.contains("0.0s"),
        "{text}"
    );
    // The tar stream of one small file is a few KiB; gzip makes it a few hundred bytes; it all
    // takes milliseconds.
    let line = text.lines().next().unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[..2], ["tiny", "ok"], "{line}");
    assert_eq!(words[3], "KiB", "{line}");
    assert_eq!((words[4], words[7], words[9]), ("->", "in", "ms"), "{line}");
    assert!(words[6] == "B" || words[6] == "KiB", "{line}");
    let summary = text.lines().last().unwrap();
    assert!(
        summary.starts_with("1 of 1 volume(s) backed up in ") && summary.contains(" ms ("),
        "{summary}"
    );
    assert!(summary.contains(" KiB read, "), "{summary}");
}

/// Runs pi-setup under `sh -c 'umask UMASK; exec pi-setup ...'`: the mask an interactive
/// `sudo pi-setup backup` (or a unit without `UMask=`) gives it.
fn run_with_umask(sb: &Sandbox, umask: &str, args: &[&str]) -> std::process::Output {
    let direct = sb.cmd(args);
    Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask}; exec \"$0\" \"$@\""))
        .arg(direct.get_program())
        .args(direct.get_args())
        .env_remove("PI_SETUP_ROOT")
        .env_remove("PI_SETUP_INSTANCE")
        .output()
        .unwrap()
}

/// Mode bits of everything under `dir` (and of `dir` itself, as "."), by name.
fn modes(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let m = std::fs::symlink_metadata(dir).unwrap();
    out.insert(".".to_string(), format!("{:o}", m.mode() & 0o7777));
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        out.insert(
            e.file_name().to_string_lossy().into_owned(),
            format!("{:o}", m.mode() & 0o7777),
        );
    }
    out
}

#[test]
fn archives_and_their_directories_are_private_to_root_whatever_the_umask() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.path("/var/vol/gateway/pki")).unwrap();
    std::fs::write(sb.path("/var/vol/gateway/pki/root.key"), "PRIVATE KEY").unwrap();
    let out = run_with_umask(&sb, "022", &["backup", "gateway"]);
    assert_ok(&out);
    let dest = sb.path("/var/backups/pi-setup");
    let dir = dest.join("gateway");
    let private = |what: &str| {
        let all = modes(&dir);
        assert_eq!(all.len(), 1 + 3 * archives(&dir).len(), "{what}: {all:?}");
        for (name, mode) in &all {
            let want = if name == "." { "700" } else { "600" };
            assert_eq!(mode, want, "{what}: {name} in {all:?}");
        }
    };
    private("a first run with umask 022");
    let m = std::fs::metadata(&dest).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o700, "the destination it created");

    // What an earlier version left world-readable is fixed by the next run, a reused
    // (hard-linked) archive included.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    assert_ok(&run_with_umask(&sb, "022", &["backup", "gateway"]));
    assert_eq!(archives(&dir).len(), 2);
    private("an unchanged volume, linked to the earlier archive");

    std::fs::write(sb.path("/var/vol/gateway/pki/root.key"), "NEW KEY").unwrap();
    assert_ok(&run_with_umask(&sb, "000", &["backup", "gateway"]));
    assert_eq!(archives(&dir).len(), 3);
    private("a changed volume, umask 000");
}

/// Runs pi-setup and kills it after `patience`: a command that hangs fails the test instead
/// of blocking the suite.
fn run_within(sb: &Sandbox, args: &[&str], patience: Duration) -> std::process::Output {
    use std::process::Stdio;
    let child = sb
        .cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output().unwrap()));
    if let Ok(out) = rx.recv_timeout(patience) {
        return out;
    }
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let out = rx.recv().unwrap();
    panic!(
        "pi-setup {args:?} still ran after {patience:?} and was killed; stdout:\n{}",
        stdout(&out)
    );
}

#[test]
fn verify_and_restore_refuse_a_fifo_or_a_symlink_to_dev_zero_in_place_of_an_archive() {
    let sb = Sandbox::new();
    let file = sb.path("/var/vol/notes/f.txt");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    for text in ["one", "two", "three"] {
        std::fs::write(&file, text).unwrap();
        assert_ok(&sb.run(&["backup", "notes"]));
    }
    let dir = sb.path("/var/backups/pi-setup/notes");
    let all = archives(&dir);
    let [fifo, zero, good] = &all[..] else {
        panic!("{all:?}")
    };
    std::fs::remove_file(fifo).unwrap();
    nix::unistd::mkfifo(fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    std::fs::remove_file(zero).unwrap();
    std::os::unix::fs::symlink("/dev/zero", zero).unwrap();
    let patience = Duration::from_secs(20);

    let out = run_within(&sb, &["verify", "notes"], patience);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    for bad in [fifo, zero] {
        let line = format!(
            "BAD   {}: {} is not a regular file",
            bad.display(),
            bad.display()
        );
        assert!(text.contains(&line), "{line:?} in:\n{text}");
    }
    assert!(
        text.contains(&format!("ok    {}", good.display())),
        "{text}"
    );
    assert!(text.ends_with("1 archive(s) verified, 2 bad\n"), "{text}");

    let listed = stdout(&run_within(&sb, &["backups", "notes"], patience));
    for bad in [fifo, zero] {
        assert!(
            listed
                .lines()
                .any(|l| l.contains(" BAD ") && l.ends_with(&*bad.to_string_lossy())),
            "{}: {listed}",
            bad.display()
        );
    }

    let stamp = |p: &PathBuf| {
        let n = p.file_name().unwrap().to_string_lossy().into_owned();
        n.trim_start_matches("notes-")
            .trim_end_matches(".tar.gz")
            .to_string()
    };
    for bad in [fifo, zero] {
        let out = run_within(&sb, &["restore", "notes", "--at", &stamp(bad)], patience);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("is not a regular file"),
            "{}",
            stderr(&out)
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "three");
    }

    // A FIFO in place of a manifest: listing, verifying and backing up read every manifest.
    let manifest = PathBuf::from(format!("{}.manifest.json", fifo.display()));
    std::fs::remove_file(&manifest).unwrap();
    nix::unistd::mkfifo(&manifest, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    assert_ok(&run_within(&sb, &["backups", "notes"], patience));
    let out = run_within(&sb, &["verify", "notes"], patience);
    assert!(
        stdout(&out).contains(&format!("{} is not a regular file", manifest.display())),
        "{}",
        stdout(&out)
    );
    std::fs::write(&file, "four").unwrap();
    assert_ok(&run_within(&sb, &["backup", "notes"], patience));
}

#[test]
fn a_hidden_directory_under_var_vol_is_reported_and_only_restore_leftovers_are_left_out() {
    let sb = Sandbox::new();
    for d in ["gateway", "notes", ".hidden"] {
        std::fs::create_dir_all(sb.path(&format!("/var/vol/{d}"))).unwrap();
        std::fs::write(sb.path(&format!("/var/vol/{d}/f.txt")), d).unwrap();
    }
    // What restores leave: the directory a restore replaced, and a killed one's temporary one.
    let leftovers = [
        "notes.pre-restore-20260101T000000Z",
        ".notes.restore-20260101T000000Z",
    ];
    for d in leftovers {
        std::fs::create_dir_all(sb.path(&format!("/var/vol/{d}"))).unwrap();
    }
    let dry = sb.run(&["backup", "--dry-run"]);
    assert_ok(&dry);
    let text = stdout(&dry);
    assert!(
        text.lines()
            .any(|l| l.contains("NOT backed up: ") && l.contains("/var/vol/.hidden\"")),
        "{text}"
    );
    assert!(!text.contains("restore-2026"), "{text}");

    let out = sb.run(&["backup"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("2 of 3 volume(s) backed up"), "{text}");
    assert!(
        text.lines().any(|l| l.contains("/var/vol/.hidden\"")
            && l.contains("FAILED its name cannot name an archive")
            && l.contains("not starting with '.'")),
        "{text}"
    );
    // A killed restore's unfinished temporary directory is cleaned up first (no journal: the
    // volume stays as it was); the directory a restore replaced goes with the next good backup.
    assert!(
        text.contains("removed .notes.restore-20260101T000000Z, left by a restore that did not finish extracting"),
        "{text}"
    );
    assert!(!text.contains("pre-restore-2026"), "{text}");
    assert_eq!(archives(&sb.path("/var/backups/pi-setup/notes")).len(), 1);
    assert!(!sb.path("/var/vol/.notes.restore-20260101T000000Z").exists());
    assert!(!sb
        .path("/var/vol/notes.pre-restore-20260101T000000Z")
        .exists());
}
