//! Off-device copies (`[[backup.copy]]`): archives copied to a mounted disk once verified,
//! listed, verified and restored from there when the local ones are gone. The "disk" is a
//! tmpfs the test mounts (and unmounts, also when it fails).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{assert_ok, stdout, Sandbox, BUSYBOX_IMAGE};

/// A tmpfs mounted for one test.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount: {out:?}");
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn profile(sb: &Sandbox, copy: &str) -> PathBuf {
    sb.profile(&format!(
        "[[service]]\nname = \"app\"\nimage = \"{BUSYBOX_IMAGE}\"\nvolumes = [\"data:/data\"]\nbackup = {{ mode = \"live\" }}\ncommand = [\"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do sleep 1; done\"]\n\n[[backup.copy]]\nname = \"usb\"\npath = \"/mnt/usb/pi\"\n{copy}"
    ))
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn copies_go_to_a_mounted_disk_only_and_come_back_when_the_local_archives_are_gone() {
    let sb = Sandbox::new();
    sb.install(&profile(&sb, ""));
    let data = sb.path("/var/vol/app/data");
    std::fs::write(data.join("notes.txt"), "first\n").unwrap();
    let usb = sb.path("/mnt/usb");
    std::fs::create_dir_all(&usb).unwrap();

    let dry = sb.run(&["backup", "--dry-run"]);
    assert_ok(&dry);
    assert!(
        stdout(&dry).contains(&format!(
            "  then copied to 'usb': {}",
            usb.join("pi").display()
        )),
        "{}",
        stdout(&dry)
    );

    // No disk mounted: the archive is made and kept here, nothing is written to the SD card's
    // empty mount point, and the run says so and fails.
    let out = sb.run(&["backup", "app"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains(&format!(
            "copy usb         FAILED {} is not on a mounted disk",
            usb.join("pi").display()
        )),
        "{}",
        stdout(&out)
    );
    assert_eq!(files_under(&usb), Vec::<String>::new());
    let status = sb.run(&["status"]);
    assert!(
        stdout(&status).contains("backup copy 'usb': the last backup could not copy there"),
        "{}",
        stdout(&status)
    );
    let local = sb.path("/var/backups/pi-setup/app");
    assert_eq!(
        files_under(&local)
            .iter()
            .filter(|f| f.ends_with(".tar.gz"))
            .count(),
        1
    );

    // Mounted: the next run copies what was missed and the new archive.
    let _disk = Tmpfs::mount(&usb, "64m");
    std::fs::write(data.join("notes.txt"), "second\n").unwrap();
    let out = sb.run(&["backup", "app"]);
    assert_ok(&out);
    assert!(
        stdout(&out).contains("copy usb         app: 2 archive(s) copied"),
        "{}",
        stdout(&out)
    );
    assert!(
        !stdout(&sb.run(&["status"])).contains("backup copy 'usb'"),
        "a good copy clears the note"
    );
    let copies = usb.join("pi/app");
    let copied = files_under(&copies);
    assert_eq!(
        copied.len(),
        4,
        "two archives and their manifests: {copied:?}"
    );
    for f in &copied {
        let mode = std::fs::metadata(copies.join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    assert_eq!(
        std::fs::metadata(&copies).unwrap().permissions().mode() & 0o777,
        0o700
    );

    // Unchanged: linked on the target as it is here, not copied again.
    let out = sb.run(&["backup", "app"]);
    assert_ok(&out);
    assert!(
        stdout(&out).contains("copy usb         app: 0 archive(s) copied (0 B), 1 linked"),
        "{}",
        stdout(&out)
    );

    let listed = sb.run(&["backups", "app", "--copy", "usb"]);
    assert_ok(&listed);
    assert_eq!(
        stdout(&listed)
            .lines()
            .filter(|l| l.contains(" ok "))
            .count(),
        3,
        "{}",
        stdout(&listed)
    );
    let verified = sb.run(&["verify", "--copy", "usb"]);
    assert_ok(&verified);
    assert!(
        stdout(&verified).contains("3 archive(s) verified, 0 bad"),
        "{}",
        stdout(&verified)
    );

    // The SD card died: no local archives, and the data is wrong. The copy brings it back.
    std::fs::remove_dir_all(&local).unwrap();
    std::fs::write(data.join("notes.txt"), "lost\n").unwrap();
    // Every volume on the copy, as after a new SD card.
    let out = sb.run(&["restore", "--all", "--from", "usb"]);
    assert_ok(&out);
    assert!(stdout(&out).contains("Restored "), "{}", stdout(&out));
    assert_eq!(
        std::fs::read_to_string(data.join("notes.txt")).unwrap(),
        "second\n"
    );

    let bad = sb.run(&["restore", "app", "--from", "nas"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .contains("there is no [[backup.copy]] named \"nas\" in the profile (copies: usb)"),
        "{bad:?}"
    );
}

#[test]
fn a_full_copy_target_is_a_clear_error_and_leaves_no_partial_copy() {
    let sb = Sandbox::new();
    sb.install(&profile(&sb, ""));
    let data = sb.path("/var/vol/app/data");
    // Random bytes do not compress: the archive is bigger than the disk.
    let mut noise = vec![0u8; 2 << 20];
    let mut f = std::fs::File::open("/dev/urandom").unwrap();
    std::io::Read::read_exact(&mut f, &mut noise).unwrap();
    std::fs::write(data.join("noise.bin"), &noise).unwrap();
    let usb = sb.path("/mnt/usb");
    let _disk = Tmpfs::mount(&usb, "512k");
    let out = sb.run(&["backup", "app"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("(the copy target is full: free space there or keep fewer copies)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(files_under(&usb.join("pi/app")), Vec::<String>::new());
    // The local archive is untouched and good.
    assert_ok(&sb.run(&["verify", "app"]));
}

#[test]
fn copy_targets_that_overlap_the_backups_or_the_volumes_are_refused() {
    let sb = Sandbox::new();
    for (path, says) in [
        ("/var/vol/usb", "must not be inside /var/vol"),
        ("/var/backups/pi-setup/usb", "overlaps backup.dest"),
        ("relative", "must be an absolute path"),
    ] {
        let p = sb.profile(&format!(
            "[[backup.copy]]\nname = \"usb\"\npath = \"{path}\"\n"
        ));
        let out = sb.run(&["install", "--profile", p.to_str().unwrap(), "--dry-run"]);
        assert_eq!(out.status.code(), Some(2), "{path}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A fresh age key pair from the reference `age-keygen`: (identity file, recipient).
fn age_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "age-keygen: {out:?}");
    let text = std::fs::read_to_string(&key).unwrap();
    let recipient = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_string();
    (key, recipient)
}

#[test]
fn encrypted_copies_open_with_the_age_cli_and_restore_with_the_key_only() {
    let sb = Sandbox::new();
    let keys = sb.root().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (key, recipient) = age_key(&keys, "mine.txt");
    let (other_key, _) = age_key(&keys, "other.txt");
    sb.install(&profile(&sb, &format!("encrypt_to = [\"{recipient}\"]\n")));
    let data = sb.path("/var/vol/app/data");
    std::fs::write(data.join("secret.txt"), "the family photos\n").unwrap();
    let usb = sb.path("/mnt/usb");
    let _disk = Tmpfs::mount(&usb, "64m");
    let out = sb.run(&["backup", "app"]);
    assert_ok(&out);

    let copies = usb.join("pi/app");
    let files = files_under(&copies);
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(
        files
            .iter()
            .all(|f| Path::new(f).extension().is_some_and(|e| e == "age")),
        "{files:?}"
    );
    let sealed = copies.join(files.iter().find(|f| f.ends_with(".tar.gz.age")).unwrap());
    let raw = std::fs::read(&sealed).unwrap();
    assert!(!String::from_utf8_lossy(&raw).contains("family photos"));
    let local = sb.path("/var/backups/pi-setup/app");
    let original = local.join(sealed.file_stem().unwrap());

    // The reference CLI opens it with the key alone.
    let opened = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&key)
        .arg(&sealed)
        .output()
        .unwrap();
    assert!(opened.status.success(), "{opened:?}");
    assert_eq!(opened.stdout, std::fs::read(&original).unwrap());

    let listed = sb.run(&["backups", "app", "--copy", "usb"]);
    assert!(stdout(&listed).contains(" sealed "), "{}", stdout(&listed));

    std::fs::remove_dir_all(&local).unwrap();
    std::fs::write(data.join("secret.txt"), "lost\n").unwrap();
    let no_key = sb.run(&["restore", "app", "--from", "usb"]);
    assert_eq!(no_key.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_key.stderr)
        .contains("give your age identity with --identity FILE"));
    let wrong = sb.run(&[
        "restore",
        "app",
        "--from",
        "usb",
        "--identity",
        other_key.to_str().unwrap(),
    ]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("cannot decrypt it with"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(data.join("secret.txt")).unwrap(),
        "lost\n"
    );
    let out = sb.run(&[
        "restore",
        "--all",
        "--from",
        "usb",
        "--identity",
        key.to_str().unwrap(),
    ]);
    assert_ok(&out);
    assert_eq!(
        std::fs::read_to_string(data.join("secret.txt")).unwrap(),
        "the family photos\n"
    );
    // Nothing decrypted is left behind.
    assert!(files_under(&sb.path("/var/backups/pi-setup"))
        .iter()
        .all(|f| !f.starts_with(".from-")));
}

/// Differentials through the command line: the second night writes one, `backups` and `verify`
/// show the chain, `restore` composes it, `backup --full` and `full_every_days = 1` write
/// fulls, and an encrypted copy of a differential restores with its full.
#[test]
fn nightly_differentials_restore_locally_and_from_an_encrypted_copy() {
    let sb = Sandbox::new();
    let keys = sb.root().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (key, recipient) = age_key(&keys, "mine.txt");
    sb.install(&profile(&sb, &format!("encrypt_to = [\"{recipient}\"]\n")));
    let data = sb.path("/var/vol/app/data");
    let big: Vec<u8> = (0..2_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(data.join("big.bin"), &big).unwrap();
    std::fs::write(data.join("notes.txt"), "night 1\n").unwrap();
    std::fs::write(data.join("old.txt"), "to be deleted\n").unwrap();
    let usb = sb.path("/mnt/usb");
    let _disk = Tmpfs::mount(&usb, "64m");
    assert_ok(&sb.run(&["backup", "app"]));

    std::fs::write(data.join("notes.txt"), "night 2\n").unwrap();
    std::fs::remove_file(data.join("old.txt")).unwrap();
    let night2 = crate::harness::tree(&sb.path("/var/vol/app"));
    let out = sb.run(&["backup", "app"]);
    assert_ok(&out);
    assert!(
        stdout(&out).contains("(differential: 1 file(s) changed, 1 path(s) deleted since app-"),
        "{}",
        stdout(&out)
    );
    let local = sb.path("/var/backups/pi-setup/app");
    let diff = files_under(&local)
        .into_iter()
        .find(|f| f.contains(".diff-") && f.ends_with(".tar.gz"))
        .expect("a differential");
    assert!(std::fs::metadata(local.join(&diff)).unwrap().len() < 50_000);
    let listed = sb.run(&["backups", "app"]);
    assert!(stdout(&listed).contains(&diff), "{}", stdout(&listed));
    let verified = sb.run(&["verify", "app"]);
    assert_ok(&verified);

    // Restore composes the full and the differential.
    std::fs::write(data.join("notes.txt"), "broken\n").unwrap();
    std::fs::write(data.join("old.txt"), "back again\n").unwrap();
    assert_ok(&sb.run(&["restore", "app"]));
    assert_eq!(crate::harness::tree(&sb.path("/var/vol/app")), night2);
    assert_eq!(std::fs::read(data.join("notes.txt")).unwrap(), b"night 2\n");
    assert_eq!(std::fs::read(data.join("big.bin")).unwrap(), big);

    // `--full` writes a full whatever the schedule.
    std::fs::write(data.join("notes.txt"), "night 3\n").unwrap();
    let out = sb.run(&["backup", "app", "--full"]);
    assert_ok(&out);
    assert!(!stdout(&out).contains("differential"), "{}", stdout(&out));

    // The SD card died: the encrypted differential comes back with its encrypted full.
    std::fs::write(data.join("notes.txt"), "night 4\n").unwrap();
    assert!(stdout(&sb.run(&["backup", "app"])).contains("differential"));
    let night4 = crate::harness::tree(&sb.path("/var/vol/app"));
    std::fs::remove_dir_all(&local).unwrap();
    std::fs::remove_dir_all(sb.path("/var/vol/app")).unwrap();
    let out = sb.run(&[
        "restore",
        "--all",
        "--from",
        "usb",
        "--identity",
        key.to_str().unwrap(),
    ]);
    assert_ok(&out);
    assert_eq!(crate::harness::tree(&sb.path("/var/vol/app")), night4);
    assert_eq!(std::fs::read(data.join("notes.txt")).unwrap(), b"night 4\n");
    assert_eq!(std::fs::read(data.join("big.bin")).unwrap(), big);

    // full_every_days = 1: every archive is a full one.
    sb.install(&sb.profile(&format!(
        "[[service]]\nname = \"app\"\nimage = \"{BUSYBOX_IMAGE}\"\nvolumes = [\"data:/data\"]\nbackup = {{ mode = \"live\" }}\ncommand = [\"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do sleep 1; done\"]\n\n[backup]\nfull_every_days = 1\n"
    )));
    assert_ok(&sb.run(&["backup", "app"]));
    std::fs::write(data.join("notes.txt"), "night 5\n").unwrap();
    let out = sb.run(&["backup", "app"]);
    assert_ok(&out);
    assert!(!stdout(&out).contains("differential"), "{}", stdout(&out));
}
