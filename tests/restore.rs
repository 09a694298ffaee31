//! Restore through the CLI: symlinks of every kind come back as they were, FIFOs and device
//! nodes are recreated, and a restore cut short at any point (each crash state built by hand,
//! then real SIGKILLs) is finished or undone by the next command, never leaving the volume
//! missing or a temporary tree behind.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{assert_ok, docker, inspect, stderr, stdout, Sandbox, BUSYBOX_IMAGE};

/// A service whose httpd stops at once on SIGTERM, with its data in /var/vol/<name>/data.
fn service(name: &str) -> String {
    format!(
        "[[service]]\nname = \"{name}\"\nimage = \"{BUSYBOX_IMAGE}\"\ndomains = [\"{name}.test\"]\nport = 8080\n\
         command = [\"sh\", \"-c\", \"trap 'exit 0' TERM; httpd -f -p 8080 -h /data & wait\"]\n\
         volumes = [\"data:/data\"]\n"
    )
}

/// Every entry under `root` with what must survive a restore; never opens a FIFO or a device.
/// The root's own mtime is left out (creating a file in it changes it).
fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, String> {
    let mut out = BTreeMap::new();
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
            let t = m.file_type();
            let meta = format!(
                "{:o} {}:{} mtime {}",
                m.mode() & 0o7777,
                m.uid(),
                m.gid(),
                m.mtime()
            );
            let desc = if t.is_symlink() {
                format!(
                    "link -> {} {}:{}",
                    std::fs::read_link(&p).unwrap().display(),
                    m.uid(),
                    m.gid()
                )
            } else if t.is_dir() {
                stack.push(p.clone());
                format!("dir {meta}")
            } else if t.is_fifo() {
                format!("fifo {meta}")
            } else if t.is_char_device() || t.is_block_device() {
                format!("device {:x} {meta}", m.rdev())
            } else {
                let content = std::fs::read(&p).unwrap();
                let sum = content.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                    (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
                });
                format!("file {meta} {} bytes {sum:x}", content.len())
            };
            out.insert(rel, desc);
        }
    }
    out
}

/// Names in /var/vol a restore may leave only while it runs: its extraction directories and
/// its journal (and the journal's own temporary file).
fn restore_leftovers(sb: &Sandbox) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(sb.path("/var/vol"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n.contains(".restore-"))
        .collect();
    v.sort();
    v
}

fn pre_restore_dirs(sb: &Sandbox, name: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(sb.path("/var/vol"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{name}.pre-restore-"))
        })
        .collect();
    v.sort();
    v
}

/// Writes `<dest>/<name>/<name>-20200101T000000Z.tar.gz` and its manifest from a Python
/// `tarfile` script body that adds entries to `t` (a GNU-format `TarFile`), so an archive can
/// hold what pi-setup itself would never write. Returns the archive's path.
fn craft_archive(sb: &Sandbox, name: &str, entries: &str) -> PathBuf {
    let dir = sb.path("/var/backups/pi-setup").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let file = format!("{name}-20200101T000000Z.tar.gz");
    let script = format!(
        r#"
import gzip, hashlib, io, json, sys, tarfile
path, name, file = sys.argv[1], sys.argv[2], sys.argv[3]
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
    def add(path, kind, data=b"", link="", mode=0o644, major=0, minor=0):
        info = tarfile.TarInfo(path)
        info.type, info.size, info.linkname, info.mode = kind, len(data), link, mode
        info.uid, info.gid, info.mtime = 1234, 4321, 1700000000
        info.devmajor, info.devminor = major, minor
        t.addfile(info, io.BytesIO(data) if data else None)
{entries}
    count = len(t.getmembers())
raw = buf.getvalue()
gz = gzip.compress(raw)
open(path, "wb").write(gz)
manifest = {{"name": name, "archive": file, "created": "20200101T000000Z", "compression": "gzip", "level": 6,
            "sha256": hashlib.sha256(gz).hexdigest(), "bytes_in": len(raw), "bytes_out": len(gz), "files": count,
            "entries": count, "duration_ms": 1, "pi_setup_version": "0.1.0", "changed_files": [], "skipped": [],
            "reused_from": None}}
open(path + ".manifest.json", "w").write(json.dumps(manifest))
"#
    );
    let py = Command::new("python3")
        .args(["-c", &script])
        .arg(dir.join(&file))
        .args([name, &file])
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", stderr(&py));
    dir.join(file)
}

#[test]
fn symlinks_of_every_kind_round_trip_as_they_were() {
    let sb = Sandbox::new();
    sb.install(&sb.profile(""));
    let vol = sb.path("/var/vol/links");
    std::fs::create_dir_all(vol.join("releases/5")).unwrap();
    std::fs::write(vol.join("releases/5/app"), "v5\n").unwrap();
    let links = [
        ("current", "/data/releases/5"),
        ("relative", "releases/5/app"),
        ("dangling", "no/such/file"),
        ("escaping", "../../../etc/passwd"),
        ("releases/up", ".."),
        ("releases/etc", "/etc"),
    ];
    for (at, target) in links {
        std::os::unix::fs::symlink(target, vol.join(at)).unwrap();
    }
    let before = snapshot(&vol);
    assert_ok(&sb.run(&["backup", "links"]));
    assert_ok(&sb.run(&["verify", "links"]));

    std::fs::remove_dir_all(&vol).unwrap();
    let out = sb.run(&["restore", "links"]);
    assert_ok(&out);
    for (at, target) in links {
        assert_eq!(
            std::fs::read_link(vol.join(at)).unwrap(),
            Path::new(target),
            "{at}"
        );
    }
    assert_eq!(snapshot(&vol), before);
    assert_eq!(restore_leftovers(&sb), Vec::<String>::new());
}

/// After a new SD card: `restore --all` brings back every volume that has archives, the
/// service's with its container stopped only around its own swap and running again after.
#[test]
fn restore_all_brings_back_every_volume_and_restarts_their_services() {
    let sb = Sandbox::new();
    sb.install(&sb.profile(&service("web")));
    let web = sb.path("/var/vol/web/data");
    std::fs::write(web.join("index.html"), "web as backed up\n").unwrap();
    let notes = sb.path("/var/vol/notes");
    std::fs::create_dir_all(notes.join("2026")).unwrap();
    std::fs::write(notes.join("2026/dec.txt"), "notes as backed up\n").unwrap();
    // Nothing backed up yet: nothing to restore is a usage error, not a silent success.
    let nothing = sb.run(&["restore", "--all"]);
    assert_eq!(nothing.status.code(), Some(2), "{}", stderr(&nothing));
    assert!(
        stderr(&nothing).contains("there are no archives to restore in"),
        "{}",
        stderr(&nothing)
    );
    assert_ok(&sb.run(&["backup"]));
    // (The gateway's volume is restored too; Caddy may write to it any time, so it is not
    // compared.)
    let before = (snapshot(&sb.path("/var/vol/web")), snapshot(&notes));

    // Everything lost or changed since.
    std::fs::write(web.join("index.html"), "changed\n").unwrap();
    std::fs::remove_dir_all(&notes).unwrap();

    // No name and no --all: a usage error.
    let none = sb.run(&["restore"]);
    assert_eq!(none.status.code(), Some(2), "{}", stderr(&none));
    let dry = sb.run(&["restore", "--all", "--dry-run"]);
    assert_ok(&dry);
    for name in ["gateway", "notes", "web"] {
        assert!(
            stdout(&dry).contains(&format!(
                "Would restore {}",
                sb.path(&format!("/var/vol/{name}")).display()
            )),
            "{}",
            stdout(&dry)
        );
    }
    assert!(!notes.exists(), "a dry run changes nothing");

    let out = sb.run(&["restore", "--all"]);
    assert_ok(&out);
    assert_eq!(
        stdout(&out).matches("Restored ").count(),
        3,
        "{}",
        stdout(&out)
    );
    assert_eq!(
        (snapshot(&sb.path("/var/vol/web")), snapshot(&notes)),
        before
    );
    assert_eq!(inspect(&sb.container("web"), "{{.State.Running}}"), "true");
    assert_eq!(sb.get("web.test"), (200, "web as backed up\n".to_string()));
    assert_eq!(restore_leftovers(&sb), Vec::<String>::new());
}

#[test]
fn an_entry_under_a_symlink_is_refused_and_nothing_is_written_outside() {
    let sb = Sandbox::new();
    sb.install(&sb.profile(""));
    let vol = sb.path("/var/vol/app");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::write(vol.join("keep.txt"), "mine\n").unwrap();
    let before = snapshot(&vol);
    // A directory outside the volume, there to be written into if restore followed the link.
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().to_str().unwrap();
    craft_archive(
        &sb,
        "app",
        &format!(
            "    add('ok.txt', tarfile.REGTYPE, b'fine\\n')\n\
             \x20   add('l', tarfile.SYMTYPE, link={target:?})\n\
             \x20   add('l/file', tarfile.REGTYPE, b'pwned\\n')\n"
        ),
    );
    let out = sb.run(&["restore", "app"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("entry \"l/file\" is inside a symlink; nothing was changed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    assert_eq!(snapshot(&vol), before);
    assert_eq!(restore_leftovers(&sb), Vec::<String>::new());
    assert_eq!(pre_restore_dirs(&sb, "app"), Vec::<PathBuf>::new());
}

#[test]
fn fifos_and_device_nodes_are_recreated_with_their_metadata() {
    let sb = Sandbox::new();
    sb.install(&sb.profile(""));
    craft_archive(
        &sb,
        "special",
        "    add('run', tarfile.DIRTYPE, mode=0o755)\n\
         \x20   add('run/queue', tarfile.FIFOTYPE, mode=0o620)\n\
         \x20   add('dev/null', tarfile.CHRTYPE, mode=0o666, major=1, minor=3)\n\
         \x20   add('data.txt', tarfile.REGTYPE, b'x\\n')\n",
    );
    let out = sb.run(&["restore", "special"]);
    assert_ok(&out);
    let vol = sb.path("/var/vol/special");
    let m = std::fs::symlink_metadata(vol.join("run/queue")).unwrap();
    assert!(m.file_type().is_fifo());
    assert_eq!(
        (m.mode() & 0o7777, m.uid(), m.gid(), m.mtime()),
        (0o620, 1234, 4321, 1_700_000_000)
    );
    let null = vol.join("dev/null");
    let root = nix::unistd::geteuid().is_root();
    if root && null.exists() {
        let m = std::fs::symlink_metadata(&null).unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!(
            (m.rdev(), m.mode() & 0o7777, m.uid(), m.mtime()),
            (nix::sys::stat::makedev(1, 3), 0o666, 1234, 1_700_000_000)
        );
        assert!(!stdout(&out).contains("not restored"), "{}", stdout(&out));
    } else {
        // Without the right to make device nodes: reported by name, the rest restored.
        assert!(
            stdout(&out).contains("not restored: dev/null (character device 1:3"),
            "{}",
            stdout(&out)
        );
    }
    assert_eq!(std::fs::read(vol.join("data.txt")).unwrap(), b"x\n");
}

/// The crash states of a restore of `app` from archive state A over volume state B, as each
/// crash point leaves them on disk.
#[derive(Debug, Clone, Copy)]
enum Crash {
    /// Killed while extracting: a partial tree, no journal.
    Extracting,
    /// The journal written, nothing renamed yet.
    Journalled,
    /// The volume moved aside, the tree not yet moved in: /var/vol/app is missing.
    AfterFirstRename,
    /// Both renames done, the journal not yet removed.
    AfterSecondRename,
    /// An earlier pi-setup (no journal) killed between its renames.
    UnjournalledBetweenRenames,
}

const TS: &str = "20250101T000000Z";

/// Builds `crash`'s state by hand; `full` is a complete extraction of the archive.
fn leave_crash_state(sb: &Sandbox, crash: Crash, full: &Path) {
    let vol_root = sb.path("/var/vol");
    let (vol, temp, aside) = (
        vol_root.join("app"),
        vol_root.join(format!(".app.restore-{TS}")),
        vol_root.join(format!("app.pre-restore-{TS}")),
    );
    let journal = || {
        std::fs::write(
            vol_root.join(".app.restore-journal"),
            format!(
                "{{\"volume\": \"app\", \"extracted\": \".app.restore-{TS}\", \"previous\": \"app.pre-restore-{TS}\"}}"
            ),
        )
        .unwrap();
    };
    let cp = |to: &Path| copy_tree(full, to);
    match crash {
        Crash::Extracting => {
            std::fs::create_dir_all(temp.join("data")).unwrap();
            std::fs::write(temp.join("data/half"), "half a file").unwrap();
        }
        Crash::Journalled => {
            cp(&temp);
            journal();
        }
        Crash::AfterFirstRename => {
            cp(&temp);
            journal();
            std::fs::rename(&vol, &aside).unwrap();
        }
        Crash::AfterSecondRename => {
            cp(&temp);
            journal();
            std::fs::rename(&vol, &aside).unwrap();
            std::fs::rename(&temp, &vol).unwrap();
        }
        Crash::UnjournalledBetweenRenames => {
            cp(&temp);
            std::fs::rename(&vol, &aside).unwrap();
        }
    }
}

#[test]
fn every_crash_point_of_a_restore_is_rolled_forward_or_back_by_the_next_command() {
    let sb = Sandbox::new();
    sb.install(&sb.profile(&service("app")));
    let vol = sb.path("/var/vol/app");
    std::fs::write(vol.join("data/index.html"), "archived\n").unwrap();
    assert_ok(&sb.run(&["backup", "app"]));
    let archived = snapshot(&vol);
    // A complete extraction of that archive, as the restore would have made it.
    let full = sb.root().join("full");
    std::fs::create_dir(&full).unwrap();
    let archive = std::fs::read_dir(sb.path("/var/backups/pi-setup/app"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .unwrap();
    let tar = Command::new("tar")
        .arg("-xzpf")
        .arg(&archive)
        .arg("--numeric-owner")
        .arg("-C")
        .arg(&full)
        .output()
        .unwrap();
    assert!(tar.status.success(), "{}", stderr(&tar));
    std::fs::write(vol.join("data/index.html"), "current\n").unwrap();
    let current = snapshot(&vol);
    let current_copy = sb.root().join("current");
    copy_tree(&vol, &current_copy);
    // Kept apart: the backups below may prune it.
    let saved = sb.root().join("saved");
    std::fs::create_dir(&saved).unwrap();
    for suffix in ["", ".manifest.json"] {
        let from = PathBuf::from(format!("{}{suffix}", archive.display()));
        std::fs::copy(&from, saved.join(from.file_name().unwrap())).unwrap();
    }
    let saved_archive = saved.join(archive.file_name().unwrap());
    let stopped_note = sb
        .path("/var/lib/pi-setup/stopped-for-backup")
        .join(sb.container("app"));

    use Crash::{
        AfterFirstRename, AfterSecondRename, Extracting, Journalled, UnjournalledBetweenRenames,
    };
    let cases: [(Crash, &str, bool); 10] = [
        (Extracting, "backup", false),
        (Extracting, "heal", false),
        (Journalled, "restore", true),
        (AfterFirstRename, "backup", true),
        (AfterFirstRename, "heal", true),
        (AfterFirstRename, "install", true),
        (AfterFirstRename, "restore", true),
        (AfterSecondRename, "heal", true),
        (AfterSecondRename, "backup", true),
        (UnjournalledBetweenRenames, "backup", false),
    ];
    for (crash, next, forward) in cases {
        let what = format!("{crash:?}, then {next}");
        // A restore stops the container and notes it for heal.
        std::fs::write(&stopped_note, "").unwrap();
        assert!(docker(&["stop", "-t", "1", &sb.container("app")])
            .status
            .success());
        leave_crash_state(&sb, crash, &full);
        let profile = sb.profile(&service("app"));
        let args: Vec<&str> = match next {
            "install" => vec!["install", "--profile", profile.to_str().unwrap()],
            "restore" => vec![
                "restore",
                "app",
                "--archive",
                saved_archive.to_str().unwrap(),
            ],
            "backup" => vec!["backup"],
            _ => vec![next],
        };
        let out = sb.run(&args);
        assert_ok(&out);
        // A restore run as the next command restores the archive anyway.
        let expected = if forward || next == "restore" {
            &archived
        } else {
            &current
        };
        assert!(vol.is_dir(), "{what}: the volume is missing");
        assert_eq!(&snapshot(&vol), expected, "{what}\n{}", stdout(&out));
        assert_eq!(restore_leftovers(&sb), Vec::<String>::new(), "{what}");
        if next == "backup" {
            assert!(
                stdout(&out).contains("2 of 2 volume(s) backed up"),
                "{what}: {}",
                stdout(&out)
            );
            assert_eq!(
                pre_restore_dirs(&sb, "app"),
                Vec::<PathBuf>::new(),
                "{what}"
            );
        }
        if next == "heal" {
            // heal starts the container the dead restore left stopped, after the recovery.
            assert_eq!(
                inspect(&sb.container("app"), "{{.State.Running}}"),
                "true",
                "{what}"
            );
        }
        // Back to the current state for the next case.
        std::fs::remove_dir_all(&vol).unwrap();
        copy_tree(&current_copy, &vol);
        for p in pre_restore_dirs(&sb, "app") {
            std::fs::remove_dir_all(p).unwrap();
        }
        let _ = std::fs::remove_file(&stopped_note);
        assert_eq!(snapshot(&vol), current, "{what}: resetting the test");
    }

    // Before any of this, a backup over a missing service volume reported success.
    std::fs::rename(&vol, sb.root().join("gone")).unwrap();
    let out = sb.run(&["backup"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains(&format!(
            "{:<16} FAILED service app's volume directory {} is missing",
            "app",
            vol.display()
        )),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("1 of 2 volume(s) backed up"),
        "{}",
        stdout(&out)
    );
}

/// `cp -a`: owners, modes and mtimes (directories' too) kept.
fn copy_tree(from: &Path, to: &Path) {
    let out = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn sigkill_at_random_moments_of_a_restore_never_loses_the_volume() {
    let sb = Sandbox::new();
    sb.install(&sb.profile(""));
    let vol = sb.path("/var/vol/bulk");
    for d in 0..30 {
        let dir = vol.join(format!("d{d:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..50 {
            std::fs::write(
                dir.join(format!("f{f:02}.txt")),
                format!("{d} {f}\n").repeat(40),
            )
            .unwrap();
        }
    }
    let noise: Vec<u8> = (0..(8u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(vol.join("noise.bin"), noise).unwrap();
    assert_ok(&sb.run(&["backup", "bulk"]));
    let archived = snapshot(&vol);
    // Restored by path: the backups below add newer archives (of the current state).
    let saved = sb.root().join("saved");
    std::fs::create_dir(&saved).unwrap();
    for e in std::fs::read_dir(sb.path("/var/backups/pi-setup/bulk")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, saved.join(p.file_name().unwrap())).unwrap();
    }
    let archive = std::fs::read_dir(&saved)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .unwrap();
    let restore = ["restore", "bulk", "--archive", archive.to_str().unwrap()];
    std::fs::write(vol.join("later.txt"), "written after the backup\n").unwrap();
    let current = snapshot(&vol);
    let current_copy = sb.root().join("current");
    copy_tree(&vol, &current_copy);
    let reset = || {
        std::fs::remove_dir_all(&vol).unwrap();
        copy_tree(&current_copy, &vol);
        for p in pre_restore_dirs(&sb, "bulk") {
            std::fs::remove_dir_all(p).unwrap();
        }
    };

    // How long a whole restore takes here, so the kills spread over all of it.
    let t = Instant::now();
    assert_ok(&sb.run(&restore));
    let whole = t.elapsed();
    assert_eq!(snapshot(&vol), archived);
    reset();

    let started = Instant::now();
    let (mut seed, mut killed, mut rolled_forward) = (0x9e37_79b9_u64, 0, 0);
    let span = u64::try_from(whole.as_millis()).unwrap() * 11 / 10 + 1;
    for round in 0..24 {
        let mut child = sb
            .cmd(&restore)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        // Every other round late in the run, where the extraction ends and the swap happens.
        let from = if round % 2 == 0 { 0 } else { span * 6 / 10 };
        std::thread::sleep(Duration::from_millis(from + (seed >> 33) % (span - from)));
        let _ = child.kill(); // SIGKILL
        if !child.wait().unwrap().success() {
            killed += 1;
        }
        // The next command, whichever it is, recovers first.
        let next = if round % 4 == 3 { "backup" } else { "heal" };
        let out = sb.run(&[next]);
        assert_ok(&out);
        assert!(vol.is_dir(), "round {round}: the volume is missing");
        let now = snapshot(&vol);
        assert!(
            now == archived || now == current,
            "round {round}: the volume is neither as before nor as restored\n{}",
            stdout(&out)
        );
        assert_eq!(
            restore_leftovers(&sb),
            Vec::<String>::new(),
            "round {round}"
        );
        if now == archived {
            rolled_forward += 1;
            reset();
        }
        for p in pre_restore_dirs(&sb, "bulk") {
            std::fs::remove_dir_all(p).unwrap();
        }
    }
    assert!(
        killed > 0,
        "every restore finished before its SIGKILL; the test proved nothing"
    );
    eprintln!(
        "{killed} of 24 restores killed, {rolled_forward} ended restored; a whole restore takes {whole:?}, the rounds {:?}",
        started.elapsed()
    );
}
