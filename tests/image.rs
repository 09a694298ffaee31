//! `pi-setup image`: bakes small images laid out like Raspberry Pi OS (MBR, FAT32 `bootfs` at
//! 8 MiB, ext4 root) built here with sfdisk, mkfs.vfat and mkfs.ext4 -d, and checks the result
//! with tools we did not write: mtools, fsck.fat, e2fsck, xz. No Docker, no download.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::{assert_ok, bin, stderr, stdout};

const BOOT_AT: u64 = 8 << 20;
/// What `pi-setup image` adds for the memory cgroup (install's preflight needs it).
const CGROUP: &str = "cgroup_enable=memory cgroup_memory=1";
const STOCK_CMDLINE: &str = "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n";
const HOOK: &str = "systemd.run=/boot/firmware/pi-setup/bootstrap.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target";
const PASSWORD: &str = "correct horse battery";
const WIFI_PASSPHRASE: &str = "wifi-passphrase-42";

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn sh(script: &str) -> Output {
    run(Command::new("sh").arg("-ec").arg(script))
}

/// A Pi-shaped disk image: `boot_mib` of FAT32 labelled bootfs at 8 MiB, then a 16 MiB ext4
/// root holding /etc/os-release (and cloud-init, when asked). Disk ID 0x4e639091.
pub(crate) fn pi_image(
    dir: &Path,
    name: &str,
    codename: &str,
    cloud_init: bool,
    boot_mib: u64,
) -> PathBuf {
    pi_image_with(dir, name, codename, cloud_init, boot_mib, false)
}

/// `pi_image`, with a GPT instead of the MBR when `gpt` (EFI System + Linux filesystem).
fn pi_image_with(
    dir: &Path,
    name: &str,
    codename: &str,
    cloud_init: bool,
    boot_mib: u64,
    gpt: bool,
) -> PathBuf {
    let work = dir.join(format!("{name}.parts"));
    let root = work.join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(
        root.join("etc/os-release"),
        format!("PRETTY_NAME=\"Debian GNU/Linux ({codename})\"\nID=debian\nVERSION_CODENAME={codename}\n"),
    )
    .unwrap();
    if cloud_init {
        std::fs::create_dir_all(root.join("etc/cloud")).unwrap();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::write(
            root.join("etc/cloud/cloud.cfg"),
            "datasource_list: [NoCloud]\n",
        )
        .unwrap();
        std::fs::write(root.join("usr/bin/cloud-init"), "#!/bin/sh\n").unwrap();
    }
    std::fs::write(work.join("cmdline.txt"), STOCK_CMDLINE).unwrap();
    std::fs::write(work.join("config.txt"), "arm_64bit=1\n").unwrap();
    std::fs::write(
        work.join("issue.txt"),
        "Raspberry Pi reference 2026-11-01\n",
    )
    .unwrap();
    let img = dir.join(format!("{name}.img"));
    let boot_sectors = boot_mib * 2048;
    let root_start = 16384 + boot_sectors;
    let table = if gpt {
        format!("label: gpt\\nstart=16384, size={boot_sectors}, type=uefi\\nstart={root_start}, size=32768, type=linux\\n")
    } else {
        format!("label: dos\\nlabel-id: 0x4e639091\\nstart=16384, size={boot_sectors}, type=c\\nstart={root_start}, size=32768, type=83\\n")
    };
    sh(&format!(
        "cd '{w}'
         truncate -s {boot_mib}M boot.fat
         mkfs.vfat -F 32 -s 1 -n bootfs boot.fat >/dev/null
         for f in cmdline.txt config.txt issue.txt; do mcopy -i boot.fat $f ::; done
         mkfs.ext4 -q -F -d root root.ext4 16M
         truncate -s $(( (8 + {boot_mib} + 16 + 2) * 1048576 )) '{img}'
         printf '{table}' | sfdisk -q '{img}'
         dd if=boot.fat of='{img}' bs=1M seek=8 conv=notrunc status=none
         dd if=root.ext4 of='{img}' bs=512 seek={root_start} conv=notrunc status=none",
        w = work.display(),
        img = img.display()
    ));
    img
}

/// The smallest file `pi-setup image` takes as an aarch64 pi-setup: an ELF64 header for
/// AArch64 with no program headers, carrying the version marker. Tests that do not run the
/// binary use it; the qemu test uses the real cross build.
pub(crate) fn fake_binary(dir: &Path) -> PathBuf {
    let mut b = vec![0u8; 64];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2;
    b[5] = 1;
    b[6] = 1;
    b[18..20].copy_from_slice(&183u16.to_le_bytes());
    b[54..56].copy_from_slice(&56u16.to_le_bytes());
    b.extend_from_slice(b"PI_SETUP_VERSION=9.9.9\0");
    let p = dir.join("pi-setup-aarch64");
    std::fs::write(&p, b).unwrap();
    p
}

fn mtype(img: &Path, path: &str) -> String {
    let out = run(Command::new("mtype")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(format!("{}@@{BOOT_AT}", img.display()))
        .arg(format!("::{path}")));
    String::from_utf8(out.stdout).unwrap()
}

fn mdir(img: &Path, path: &str) -> String {
    let out = run(Command::new("mdir")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-b")
        .arg("-i")
        .arg(format!("{}@@{BOOT_AT}", img.display()))
        .arg(format!("::{path}")));
    String::from_utf8(out.stdout).unwrap()
}

pub(crate) fn mcopy_out(img: &Path, path: &str, to: &Path) {
    run(Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-s")
        .arg("-n")
        .arg("-i")
        .arg(format!("{}@@{BOOT_AT}", img.display()))
        .arg(format!("::{path}"))
        .arg(to));
}

fn mcopy_in(img: &Path, from: &Path, path: &str) {
    run(Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-o")
        .arg("-i")
        .arg(format!("{}@@{BOOT_AT}", img.display()))
        .arg(from)
        .arg(format!("::{path}")));
}

/// Byte ranges of the partitions, as sfdisk reads them: (start, size) in bytes.
fn partitions(img: &Path) -> Vec<(u64, u64)> {
    let out = run(Command::new("sfdisk").arg("-J").arg(img));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["start"].as_u64().unwrap() * 512,
                p["size"].as_u64().unwrap() * 512,
            )
        })
        .collect()
}

fn bytes(img: &Path, (start, len): (u64, u64)) -> Vec<u8> {
    let all = std::fs::read(img).unwrap();
    all[start as usize..(start + len) as usize].to_vec()
}

/// fsck.fat -n on the boot partition and e2fsck -fn on the root, both read-only.
fn fsck(dir: &Path, img: &Path) {
    let parts = partitions(img);
    let boot = dir.join("check.fat");
    let root = dir.join("check.ext4");
    std::fs::write(&boot, bytes(img, parts[0])).unwrap();
    std::fs::write(&root, bytes(img, parts[1])).unwrap();
    let out = run(Command::new("fsck.fat").arg("-n").arg(&boot));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("Dirty bit"), "{text}");
    run(Command::new("e2fsck").arg("-fn").arg(&root));
}

struct Secrets {
    password: PathBuf,
    wifi: PathBuf,
    key: PathBuf,
}

fn secrets(dir: &Path) -> Secrets {
    let s = Secrets {
        password: dir.join("pw"),
        wifi: dir.join("wifi-pw"),
        key: dir.join("id.pub"),
    };
    std::fs::write(&s.password, format!("{PASSWORD}\n")).unwrap();
    std::fs::write(&s.wifi, format!("{WIFI_PASSPHRASE}\n")).unwrap();
    std::fs::write(
        &s.key,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOpi me@laptop\n",
    )
    .unwrap();
    s
}

fn service_file(dir: &Path) -> PathBuf {
    let p = dir.join("notes.toml");
    std::fs::write(
        &p,
        "name = \"notes\"\nimage = \"busybox:1\"\ndomains = [\"notes.local\"]\nport = 8080\ncommand = [\"httpd\", \"-f\", \"-p\", \"8080\"]\n",
    )
    .unwrap();
    p
}

pub(crate) fn image_cmd(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = Command::new(bin());
    c.arg("image");
    for a in args {
        c.arg(a);
    }
    c.env_remove("PI_SETUP_ROOT")
        .env_remove("PI_SETUP_INSTANCE");
    c.output().unwrap()
}

fn sha256(p: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(p));
    String::from_utf8_lossy(&out.stdout)[..64].to_string()
}

#[test]
fn a_bookworm_image_gets_the_appliance_and_userconf_and_stays_fsck_clean() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = pi_image(d, "bookworm", "bookworm", false, 40);
    let base_sum = sha256(&base);
    let binary = fake_binary(d);
    let s = secrets(d);
    let svc = service_file(d);
    let out = d.join("appliance.img");
    let o = image_cmd(&[
        &"--base",
        &base,
        &"--out",
        &out,
        &"--binary",
        &binary,
        &"--profile",
        &"homelab",
        &"--service-file",
        &svc,
        &"--hostname",
        &"appliance",
        &"--user",
        &"pi",
        &"--password-file",
        &s.password,
        &"--ssh-key",
        &s.key,
        &"--wifi-ssid",
        &"Home net",
        &"--wifi-password-file",
        &s.wifi,
        &"--wifi-country",
        &"de",
        &"--timezone",
        &"Europe/Berlin",
    ]);
    assert_ok(&o);
    assert!(
        stdout(&o).contains("Raspberry Pi OS bookworm"),
        "{}",
        stdout(&o)
    );
    assert_eq!(sha256(&base), base_sum, "--base was modified");

    // What the boot partition holds, as mtools reads it.
    let listing = mdir(&out, "pi-setup");
    for f in [
        "pi-setup",
        "bootstrap.sh",
        "install.sh",
        "pi-setup-firstboot.service",
        "pi-setup.toml",
        "image.toml",
        "services",
    ] {
        assert!(
            listing.contains(&format!("/pi-setup/{f}")),
            "{f} missing:\n{listing}"
        );
    }
    assert!(mdir(&out, "pi-setup/services").contains("/pi-setup/services/notes.toml"));
    let dated = run(Command::new("mdir")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(format!("{}@@{BOOT_AT}", out.display()))
        .arg("::pi-setup"));
    let dated = String::from_utf8_lossy(&dated.stdout);
    assert!(!dated.contains("1980-"), "files dated 1980:\n{dated}");
    assert_eq!(
        mtype(&out, "cmdline.txt"),
        format!("{} {CGROUP} {HOOK}\n", STOCK_CMDLINE.trim_end())
    );
    let userconf = mtype(&out, "userconf.txt");
    assert!(userconf.starts_with("pi:$6$"), "{userconf}");
    let hash = userconf.trim_end().strip_prefix("pi:").unwrap();
    let check = run(Command::new("openssl")
        .args(["passwd", "-6", "-salt"])
        .arg(hash.split('$').nth(2).unwrap())
        .arg(PASSWORD));
    assert_eq!(String::from_utf8_lossy(&check.stdout).trim_end(), hash);
    assert_eq!(mtype(&out, "ssh"), "");
    assert_eq!(mtype(&out, "config.txt"), "arm_64bit=1\n");
    assert_eq!(
        mtype(&out, "pi-setup/pi-setup.toml"),
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/profiles/homelab.toml"
        ))
        .unwrap()
    );
    assert_eq!(
        mtype(&out, "pi-setup/pi-setup-firstboot.service"),
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/systemd/pi-setup-firstboot.service"
        ))
        .unwrap()
    );
    let cmdline = mtype(&out, "cmdline.txt");
    for t in cmdline
        .split_whitespace()
        .filter(|t| !STOCK_CMDLINE.contains(*t))
    {
        for p in ["quiet", "resize", "init=", "splash"] {
            assert!(!t.starts_with(p), "{t}");
        }
        assert!(!t.contains("firstboot"), "{t}");
    }

    // No secret in the clear anywhere in the image.
    for secret in [PASSWORD, WIFI_PASSPHRASE] {
        let found = Command::new("grep")
            .args(["-a", "-q", "-F", secret])
            .arg(&out)
            .status()
            .unwrap();
        assert_eq!(found.code(), Some(1), "{secret:?} is in the image");
    }
    assert!(!stdout(&o).contains(PASSWORD) && !stderr(&o).contains(PASSWORD));

    // Partitions, disk ID and root bytes as they were; both file systems clean.
    assert_eq!(partitions(&out), partitions(&base));
    assert_eq!(
        bytes(&out, (0, 512)),
        bytes(&base, (0, 512)),
        "MBR / disk ID changed"
    );
    let root = partitions(&base)[1];
    assert!(
        bytes(&out, root) == bytes(&base, root),
        "root partition changed"
    );
    fsck(d, &out);

    let i = image_cmd(&[&"--inspect", &out]);
    assert_ok(&i);
    let text = stdout(&i);
    for want in [
        "pi-setup binary: 9.9.9",
        "profile: homelab",
        "): valid",
        "services: ",
        "notes",
        "bundle images: none",
        "host name appliance",
        "user pi (password, 1 SSH key(s)), SSH on",
        "first boot: pending (not booted yet)",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }
}

#[test]
fn baking_a_baked_image_again_appends_the_hook_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = pi_image(d, "base", "bookworm", false, 40);
    let binary = fake_binary(d);
    let once = d.join("once.img");
    let twice = d.join("twice.img");
    assert_ok(&image_cmd(&[
        &"--base",
        &base,
        &"--out",
        &once,
        &"--binary",
        &binary,
    ]));
    let o = image_cmd(&[&"--base", &once, &"--out", &twice, &"--binary", &binary]);
    assert_ok(&o);
    assert!(
        stdout(&o).contains("first-boot hook already there"),
        "{}",
        stdout(&o)
    );
    assert_eq!(
        mtype(&twice, "cmdline.txt"),
        format!("{} {CGROUP} {HOOK}\n", STOCK_CMDLINE.trim_end())
    );
    fsck(d, &twice);

    // An existing --out needs --force.
    let again = image_cmd(&[&"--base", &base, &"--out", &once, &"--binary", &binary]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("give --force"),
        "{}",
        stderr(&again)
    );
    assert_ok(&image_cmd(&[
        &"--base",
        &base,
        &"--out",
        &once,
        &"--binary",
        &binary,
        &"--force",
    ]));
}

#[test]
fn an_image_too_small_for_the_bundle_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = pi_image(d, "small", "bookworm", false, 40);
    let binary = fake_binary(d);
    sh(&format!(
        "cd '{}' && printf '[{{\"Config\":\"c.json\",\"RepoTags\":[\"pi-setup-test/busybox:1\"],\"Layers\":[]}}]' >manifest.json && head -c 50000000 /dev/urandom >layer.bin && tar -cf bundle.tar manifest.json layer.bin",
        d.display()
    ));
    let out = d.join("out").join("appliance.img");
    std::fs::create_dir(d.join("out")).unwrap();
    let o = image_cmd(&[
        &"--base",
        &base,
        &"--out",
        &out,
        &"--binary",
        &binary,
        &"--images",
        &d.join("bundle.tar"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("the boot partition is too small"), "{err}");
    assert!(err.contains("images.tar 47.7 MiB"), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert_eq!(
        std::fs::read_dir(d.join("out")).unwrap().count(),
        0,
        "something was written"
    );

    // A bundle that fits is baked, and --inspect lists its images.
    sh(&format!("cd '{}' && head -c 5000000 /dev/urandom >layer.bin && tar -cf bundle.tar manifest.json layer.bin", d.display()));
    assert_ok(&image_cmd(&[
        &"--base",
        &base,
        &"--out",
        &out,
        &"--binary",
        &binary,
        &"--images",
        &d.join("bundle.tar"),
    ]));
    let i = stdout(&image_cmd(&[&"--inspect", &out]));
    assert!(i.contains("bundle images: pi-setup-test/busybox:1"), "{i}");
    fsck(d, &out);
}

#[test]
fn a_trixie_image_with_cloud_init_gets_user_data_meta_data_and_network_config() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = pi_image(d, "trixie", "trixie", true, 40);
    let binary = fake_binary(d);
    let s = secrets(d);
    let out = d.join("trixie-appliance.img");
    assert_ok(&image_cmd(&[
        &"--base",
        &base,
        &"--out",
        &out,
        &"--binary",
        &binary,
        &"--hostname",
        &"pi5",
        &"--user",
        &"admin",
        &"--password-file",
        &s.password,
        &"--ssh-key",
        &s.key,
        &"--wifi-ssid",
        &"Home \"net\"",
        &"--wifi-password-file",
        &s.wifi,
        &"--wifi-country",
        &"GB",
        &"--timezone",
        &"Europe/London",
    ]));
    let ud = mtype(&out, "user-data");
    assert!(ud.starts_with("#cloud-config\n"), "{ud}");
    for want in [
        "hostname: \"pi5\"",
        "timezone: \"Europe/London\"",
        "  - name: \"admin\"",
        "    passwd: \"$6$",
        "      - \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOpi me@laptop\"",
    ] {
        assert!(ud.contains(want), "{want:?} not in:\n{ud}");
    }
    assert!(mtype(&out, "meta-data").starts_with("instance-id: \"pi-setup-"));
    let net = mtype(&out, "network-config");
    assert!(net.contains("        \"Home \\\"net\\\"\":\n"), "{net}");
    assert!(net.contains("regulatory-domain: \"GB\""), "{net}");
    assert!(
        !mdir(&out, "").contains("userconf"),
        "userconf.txt on a cloud-init image"
    );
    let bootstrap = mtype(&out, "pi-setup/bootstrap.sh");
    assert!(!bootstrap.contains("set_hostname '"), "settings twice");
    fsck(d, &out);
}

#[test]
fn xz_images_in_and_out() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = pi_image(d, "xzbase", "bookworm", false, 40);
    run(Command::new("xz").args(["-k", "-T2", "-3"]).arg(&base));
    let base_xz = d.join("xzbase.img.xz");
    let binary = fake_binary(d);
    let out = d.join("appliance.img.xz");
    assert_ok(&image_cmd(&[
        &"--base",
        &base_xz,
        &"--out",
        &out,
        &"--binary",
        &binary,
    ]));
    run(Command::new("xz").arg("-t").arg(&out));
    let i = stdout(&image_cmd(&[&"--inspect", &out]));
    assert!(i.contains("first boot: pending"), "{i}");
    // Baked again from the .xz output: the hook stays single.
    let again = d.join("again.img");
    assert_ok(&image_cmd(&[
        &"--base",
        &out,
        &"--out",
        &again,
        &"--binary",
        &binary,
    ]));
    assert_eq!(
        mtype(&again, "cmdline.txt"),
        format!("{} {CGROUP} {HOOK}\n", STOCK_CMDLINE.trim_end())
    );
    let root = partitions(&base)[1];
    assert!(
        bytes(&again, root) == bytes(&base, root),
        "root partition changed"
    );
    fsck(d, &again);
    let leftovers: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn wrong_binaries_and_bad_values_are_refused_with_how_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = pi_image(d, "b", "bookworm", false, 40);
    let out = d.join("o.img");
    if std::env::consts::ARCH != "aarch64" {
        let o = image_cmd(&[&"--base", &base, &"--out", &out]);
        assert_eq!(o.status.code(), Some(2));
        assert!(stderr(&o).contains("bash ci/cross-build"), "{}", stderr(&o));
        let o = image_cmd(&[&"--base", &base, &"--out", &out, &"--binary", &bin()]);
        assert_eq!(o.status.code(), Some(2));
        assert!(
            stderr(&o).contains("not an aarch64 binary"),
            "{}",
            stderr(&o)
        );
    }
    let binary = fake_binary(d);
    for (flag, value, says) in [
        ("--hostname", "bad_name", "--hostname \"bad_name\""),
        ("--timezone", "../../etc/shadow", "--timezone"),
    ] {
        let o = image_cmd(&[
            &"--base",
            &base,
            &"--out",
            &out,
            &"--binary",
            &binary,
            &flag,
            &value,
        ]);
        assert_eq!(o.status.code(), Some(2), "{flag}");
        assert!(stderr(&o).contains(says), "{}", stderr(&o));
    }
    let o = image_cmd(&[
        &"--base",
        &base,
        &"--out",
        &out,
        &"--binary",
        &binary,
        &"--user",
        &"pi",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("needs --password-file"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
}

/// Lays a baked image's boot partition out under `sandbox/boot/firmware` and a root under
/// `sandbox/root`, with `systemctl` stubbed on PATH (it logs its arguments).
pub(crate) fn sandbox(d: &Path, img: &Path) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let boot = d.join("sandbox/boot/firmware");
    let root = d.join("sandbox/root");
    let stubs = d.join("sandbox/stubs");
    for p in [
        &boot,
        &stubs,
        &root.join("etc"),
        &root.join("usr/share/zoneinfo/Europe"),
    ] {
        std::fs::create_dir_all(p).unwrap();
    }
    mcopy_out(img, "cmdline.txt", &boot);
    mcopy_out(img, "pi-setup", &boot);
    std::fs::write(root.join("etc/hostname"), "raspberrypi\n").unwrap();
    std::fs::write(
        root.join("etc/hosts"),
        "127.0.0.1\tlocalhost\n127.0.1.1\traspberrypi\n",
    )
    .unwrap();
    std::fs::write(root.join("usr/share/zoneinfo/Europe/Berlin"), "TZif").unwrap();
    // As on the stock image: a time zone is already set, and `--timezone` replaces it.
    std::os::unix::fs::symlink(
        "/usr/share/zoneinfo/Europe/London",
        root.join("etc/localtime"),
    )
    .unwrap();
    let log = d.join("sandbox/systemctl.log");
    let stub = stubs.join("systemctl");
    std::fs::write(
        &stub,
        format!("#!/bin/sh\necho \"$*\" >>'{}'\n", log.display()),
    )
    .unwrap();
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    (boot, root, stubs, log)
}

fn files_under(dir: &Path) -> Vec<String> {
    let out = run(Command::new("find")
        .arg(".")
        .arg("-mindepth")
        .arg("1")
        .arg("-printf")
        .arg("%y %m %p\n")
        .current_dir(dir));
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

#[test]
fn the_bootstrap_in_a_sandbox_installs_exactly_the_expected_files_and_restores_cmdline() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = pi_image(d, "boot", "bookworm", false, 40);
    let binary = fake_binary(d);
    let s = secrets(d);
    let svc = service_file(d);
    let out = d.join("appliance.img");
    assert_ok(&image_cmd(&[
        &"--base",
        &base,
        &"--out",
        &out,
        &"--binary",
        &binary,
        &"--service-file",
        &svc,
        &"--hostname",
        &"appliance",
        &"--user",
        &"pi",
        &"--ssh-key",
        &s.key,
        &"--wifi-ssid",
        &"Home net",
        &"--wifi-password-file",
        &s.wifi,
        &"--wifi-country",
        &"DE",
        &"--timezone",
        &"Europe/Berlin",
    ]));
    let (boot, root, stubs, log) = sandbox(d, &out);
    let path = format!("{}:{}", stubs.display(), std::env::var("PATH").unwrap());
    let o = run(Command::new("sh")
        .arg(boot.join("pi-setup/bootstrap.sh"))
        .env("PATH", &path)
        .env("PI_SETUP_BOOT", &boot)
        .env("PI_SETUP_TARGET", &root));
    assert!(String::from_utf8_lossy(&o.stdout).contains("pi-setup bootstrap: done"));

    assert_eq!(
        std::fs::read_to_string(boot.join("cmdline.txt")).unwrap(),
        format!("{} {CGROUP}\n", STOCK_CMDLINE.trim_end()),
        "the bootstrap removes its own tokens only; the memory cgroup stays on"
    );
    assert!(
        !boot.join("pi-setup/bootstrap.sh").exists(),
        "the bootstrap (it may hold the Wi-Fi key) stays on the card"
    );
    assert_eq!(
        files_under(&root),
        [
            "d 755 ./etc",
            "d 755 ./etc/NetworkManager",
            "d 755 ./etc/NetworkManager/system-connections",
            "d 755 ./etc/pi-setup",
            "d 755 ./etc/pi-setup/services",
            "d 755 ./etc/ssh",
            "d 755 ./etc/ssh/authorized_keys.d",
            "d 755 ./etc/ssh/sshd_config.d",
            "d 755 ./etc/systemd",
            "d 755 ./etc/systemd/system",
            "d 755 ./usr",
            "d 755 ./usr/local",
            "d 755 ./usr/local/bin",
            "d 755 ./usr/share",
            "d 755 ./usr/share/zoneinfo",
            "d 755 ./usr/share/zoneinfo/Europe",
            "f 600 ./etc/NetworkManager/system-connections/pi-setup-wifi.nmconnection",
            "f 644 ./etc/hostname",
            "f 644 ./etc/hosts",
            "f 644 ./etc/pi-setup/services/notes.toml",
            "f 644 ./etc/ssh/authorized_keys.d/pi",
            "f 644 ./etc/ssh/sshd_config.d/pi-setup.conf",
            "f 644 ./etc/systemd/system/pi-setup-firstboot.service",
            "f 644 ./etc/timezone",
            "f 644 ./usr/share/zoneinfo/Europe/Berlin",
            "f 755 ./usr/local/bin/pi-setup",
            "l 777 ./etc/localtime",
        ]
    );
    assert_eq!(
        std::fs::read(root.join("usr/local/bin/pi-setup")).unwrap(),
        std::fs::read(&binary).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "appliance\n"
    );
    assert!(std::fs::read_to_string(root.join("etc/hosts"))
        .unwrap()
        .ends_with("127.0.1.1\tappliance\n"));
    assert_eq!(
        std::fs::read_link(root.join("etc/localtime")).unwrap(),
        Path::new("/usr/share/zoneinfo/Europe/Berlin")
    );
    let nm = std::fs::read_to_string(
        root.join("etc/NetworkManager/system-connections/pi-setup-wifi.nmconnection"),
    )
    .unwrap();
    assert!(
        nm.contains("ssid=72;111;109;101;32;110;101;116;\n")
            && nm.contains("psk=")
            && !nm.contains(WIFI_PASSPHRASE),
        "{nm}"
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!(
            "--root={} enable pi-setup-firstboot.service\n",
            root.display()
        )
    );

    // The install runner: `pi-setup install` with the baked profile; ok → disabled.
    let fake = stubs.join("pi-setup");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho \"fake pi-setup $*\"\nexit ${FAKE_RC:-0}\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let runner = |rc: &str| {
        Command::new("sh")
            .arg(boot.join("pi-setup/install.sh"))
            .env("PATH", &path)
            .env("PI_SETUP_BOOT", &boot)
            .env("PI_SETUP_BIN", &fake)
            .env("PI_SETUP_DOCKER", "sh")
            .env("FAKE_RC", rc)
            .output()
            .unwrap()
    };
    let o = runner("0");
    assert!(o.status.success());
    let install_log = std::fs::read_to_string(boot.join("pi-setup/install.log")).unwrap();
    assert!(
        install_log.contains(&format!(
            "fake pi-setup install --profile {}/pi-setup/pi-setup.toml\n",
            boot.display()
        )),
        "{install_log}"
    );
    assert!(
        install_log.ends_with("pi-setup first boot: ok\n"),
        "{install_log}"
    );
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .ends_with("disable pi-setup-firstboot.service\n"));

    // Put the log and cmdline back into the image: --inspect reports it.
    mcopy_in(
        &out,
        &boot.join("pi-setup/install.log"),
        "pi-setup/install.log",
    );
    mcopy_in(&out, &boot.join("cmdline.txt"), "cmdline.txt");
    let i = stdout(&image_cmd(&[&"--inspect", &out]));
    assert!(i.contains("first boot: ran OK"), "{i}");

    // A failing install: exit code kept, the unit stays enabled, --inspect shows the tail.
    std::fs::write(boot.join("images.tar"), "").unwrap();
    std::fs::rename(boot.join("images.tar"), boot.join("pi-setup/images.tar")).unwrap();
    let o = runner("3");
    assert_eq!(o.status.code(), Some(3));
    let install_log = std::fs::read_to_string(boot.join("pi-setup/install.log")).unwrap();
    assert!(
        install_log.contains(&format!("--images {}/pi-setup/images.tar", boot.display())),
        "{install_log}"
    );
    assert!(
        install_log.ends_with(
            "pi-setup first boot: failed (install exited 3; the next boot tries again)\n"
        ),
        "{install_log}"
    );
    mcopy_in(
        &out,
        &boot.join("pi-setup/install.log"),
        "pi-setup/install.log",
    );
    let i = stdout(&image_cmd(&[&"--inspect", &out]));
    assert!(i.contains("first boot: FAILED"), "{i}");
    assert!(
        i.contains("  pi-setup first boot: failed (install exited 3"),
        "{i}"
    );
    fsck(d, &out);

    // An image without Docker: docker.io is installed first, once apt reaches the network.
    let apt_log = d.join("sandbox/apt.log");
    let apt = stubs.join("apt-get");
    std::fs::write(
        &apt,
        format!(
            "#!/bin/sh\necho \"$*\" >>'{l}'\nif [ \"$1\" = update ] && [ $(grep -c update '{l}') -lt 2 ]; then exit 100; fi\n",
            l = apt_log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&apt, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = Command::new("sh")
        .arg(boot.join("pi-setup/install.sh"))
        .env("PATH", &path)
        .env("PI_SETUP_BOOT", &boot)
        .env("PI_SETUP_BIN", &fake)
        .env("PI_SETUP_DOCKER", "no-such-dockerd")
        .env("PI_SETUP_RETRY_SECS", "0")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(
        std::fs::read_to_string(&apt_log).unwrap(),
        "update\nupdate\ninstall -y docker.io\n"
    );
    let install_log = std::fs::read_to_string(boot.join("pi-setup/install.log")).unwrap();
    assert!(
        install_log.contains("waiting for the network to install docker.io (try 1)"),
        "{install_log}"
    );
    assert!(
        install_log.ends_with("pi-setup first boot: ok\n"),
        "{install_log}"
    );
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("enable --now docker.service\n"));
}

/// The real cross build (`bash ci/cross-build`), next to this test binary's target directory.
fn aarch64_binary() -> PathBuf {
    let host_bin = Path::new(bin());
    let target = host_bin.parent().unwrap().parent().unwrap();
    let p = target.join("aarch64-unknown-linux-musl/release/pi-setup");
    assert!(
        p.is_file(),
        "{} is missing: run `bash ci/cross-build` first (ci/test does)",
        p.display()
    );
    p
}

#[test]
fn the_aarch64_binary_from_the_image_runs_under_qemu_and_validates_the_baked_profile() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = pi_image(d, "real", "bookworm", false, 40);
    let real = aarch64_binary();
    let svc = service_file(d);
    let out = d.join("appliance.img");
    assert_ok(&image_cmd(&[
        &"--base",
        &base,
        &"--out",
        &out,
        &"--binary",
        &real,
        &"--profile",
        &"homelab",
        &"--service-file",
        &svc,
    ]));
    let copied = d.join("pi-setup-from-image");
    mcopy_out(&out, "pi-setup/pi-setup", &copied);
    assert_eq!(
        std::fs::read(&copied).unwrap(),
        std::fs::read(&real).unwrap()
    );
    std::fs::set_permissions(&copied, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = run(Command::new("qemu-aarch64-static")
        .arg(&copied)
        .arg("--version"));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("pi-setup {}\n", env!("CARGO_PKG_VERSION"))
    );
    let o = run(Command::new("qemu-aarch64-static")
        .arg(&copied)
        .arg("image")
        .arg("--inspect")
        .arg(&out));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains(&format!("pi-setup binary: {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains("profile: homelab"), "{text}");
    assert!(text.contains("): valid"), "{text}");
    assert!(text.contains("notes"), "{text}");
}

#[test]
fn restore_from_a_copy_runs_before_install_waits_for_the_network_and_picks_archives_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = pi_image(d, "restore", "bookworm", false, 40);
    let binary = fake_binary(d);
    let profile = d.join("offsite.toml");
    std::fs::write(
        &profile,
        "[gateway]\nimage = \"caddy:2.11.7\"\n\n[backup]\n\n[[backup.copy]]\nname = \"offsite\"\ns3 = { endpoint = \"https://s3.example.com\", bucket = \"pi-backups\", credentials = \"/etc/pi-setup/secrets/offsite.s3\" }\n",
    )
    .unwrap();
    let creds = d.join("offsite.s3");
    std::fs::write(
        &creds,
        "access_key_id = \"AKIDEXAMPLE\"\nsecret_access_key = \"wJalrXUtnFEMI\"\n",
    )
    .unwrap();
    let out = d.join("rebuild.img");

    // What the bake refuses: an unknown copy, a bad timestamp, S3 without its credentials.
    for (from, creds_flag, says) in [
        (
            "nope",
            true,
            "has no [[backup.copy]] of that name (it has: offsite)",
        ),
        ("offsite@yesterday", true, "the timestamp is UTC"),
        ("offsite", false, "give --restore-credentials FILE"),
    ] {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
            &"--base",
            &base,
            &"--out",
            &out,
            &"--binary",
            &binary,
            &"--profile",
            &profile,
            &"--restore-from",
            &from,
        ];
        if creds_flag {
            args.extend([
                &"--restore-credentials" as &dyn AsRef<std::ffi::OsStr>,
                &creds,
            ]);
        }
        let o = image_cmd(&args);
        assert_eq!(o.status.code(), Some(2), "{from}");
        assert!(stderr(&o).contains(says), "{}", stderr(&o));
        assert!(!stderr(&o).contains("wJalrXUtnFEMI"));
    }
    assert!(!out.exists());

    assert_ok(&image_cmd(&[
        &"--base",
        &base,
        &"--out",
        &out,
        &"--binary",
        &binary,
        &"--profile",
        &profile,
        &"--restore-from",
        &"offsite@20261125T033000Z",
        &"--restore-credentials",
        &creds,
    ]));
    let i = stdout(&image_cmd(&[&"--inspect", &out]));
    assert!(i.contains("restore from: offsite@20261125T033000Z"), "{i}");
    assert!(!i.contains("wJalrXUtnFEMI"), "{i}");
    fsck(d, &out);

    // The install runner in a sandbox, with a pi-setup stand-in that logs its calls: the copy
    // is unreachable twice (no network yet), then lists four volumes.
    let (boot, root, stubs, _) = sandbox(d, &out);
    let calls = d.join("calls.log");
    let fake = stubs.join("pi-setup");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh
echo \"$*\" >>'{calls}'
case \"$1\" in
backups)
  n=$(grep -c '^backups' '{calls}')
  if [ \"$n\" -lt 3 ]; then echo 'error: s3.example.com: failed to lookup address' >&2; exit 1; fi
  printf '%s\\n' 'NAME             TIMESTAMP          SIZE       STATE ARCHIVE' \\
    'notes            20261124T033000Z   1.0 KiB  ok    s3://pi/notes/a' \\
    'notes            20261125T033001Z   1.0 KiB  ok    s3://pi/notes/b' \\
    'db               20261125T033000Z   2.0 MiB  ok    s3://pi/db/a' \\
    'db               20261120T033000Z   2.0 MiB  ok    s3://pi/db/b' \\
    'later            20261126T000000Z   1 B      ok    s3://pi/later/a' ;;
esac
",
            calls = calls.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", stubs.display(), std::env::var("PATH").unwrap());
    let runner = || {
        Command::new("sh")
            .arg(boot.join("pi-setup/install.sh"))
            .env("PATH", &path)
            .env("PI_SETUP_BOOT", &boot)
            .env("PI_SETUP_ROOT", &root)
            .env("PI_SETUP_BIN", &fake)
            .env("PI_SETUP_DOCKER", "sh")
            .env("PI_SETUP_RETRY_SECS", "0")
            .output()
            .unwrap()
    };
    let o = runner();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let profile_arg = format!(
        "install --profile {}/pi-setup/pi-setup.toml",
        boot.display()
    );
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap(),
        format!(
            "backups --copy offsite\nbackups --copy offsite\nbackups --copy offsite\n\
             restore db --from offsite --at 20261125T033000Z\n\
             restore notes --from offsite --at 20261124T033000Z\n{profile_arg}\n"
        )
    );
    let log = std::fs::read_to_string(boot.join("pi-setup/install.log")).unwrap();
    assert!(log.contains("waiting for copy target offsite (try 2): error: s3.example.com: failed to lookup address"), "{log}");
    assert!(
        log.contains(
            "restore later: no archive at or before 20261125T033000Z on offsite, left empty"
        ),
        "{log}"
    );
    assert!(log.ends_with("pi-setup first boot: ok\n"), "{log}");
    let installed = root.join("etc/pi-setup/secrets/offsite.s3");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(&creds).unwrap()
    );
    assert!(
        !boot.join("pi-setup/restore/credentials").exists(),
        "credentials left on the boot partition"
    );
    assert_eq!(
        std::fs::metadata(&installed).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/pi-setup/pi-setup.toml")).unwrap(),
        std::fs::read_to_string(&profile).unwrap()
    );

    // A later run (a retry after a failed install) does not restore again.
    std::fs::remove_file(&calls).unwrap();
    assert!(runner().status.success());
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap(),
        format!("{profile_arg}\n")
    );
}

#[test]
fn a_gpt_image_is_baked_too() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = pi_image_with(d, "gpt", "trixie", false, 40, true);
    let binary = fake_binary(d);
    let out = d.join("gpt-appliance.img");
    assert_ok(&image_cmd(&[
        &"--base",
        &base,
        &"--out",
        &out,
        &"--binary",
        &binary,
    ]));
    assert_eq!(
        mtype(&out, "cmdline.txt"),
        format!("{} {CGROUP} {HOOK}\n", STOCK_CMDLINE.trim_end())
    );
    assert_eq!(partitions(&out), partitions(&base));
    assert_eq!(
        bytes(&out, (0, 34 * 512)),
        bytes(&base, (0, 34 * 512)),
        "GPT changed"
    );
    fsck(d, &out);
}
