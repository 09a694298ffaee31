//! The host side of install: overlays on a root laid out like Raspberry Pi OS (Bookworm,
//! Trixie), preflight failures, offline image bundles, uninstall.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::harness::{
    assert_ok, docker, stderr, stdout, tree, Sandbox, BUSYBOX_IMAGE, CADDY_IMAGE,
};

const USER_DAEMON_JSON: &str =
    "{\n    \"data-root\": \"/mnt/ssd/docker\",\n    \"log-driver\": \"json-file\"\n}\n";
const CMDLINE: &str = "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait";

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn write(sb: &Sandbox, abs: &str, text: &str, mode: u32) {
    let p = sb.path(abs);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A root as a fresh Raspberry Pi OS Lite leaves it, with a user's own daemon.json.
fn pi_os(sb: &Sandbox, codename: &str, version: &str, dhcpcd: bool) {
    write(
        sb,
        "/etc/os-release",
        &format!("PRETTY_NAME=\"Debian GNU/Linux {version} ({codename})\"\nVERSION_ID=\"{version}\"\nVERSION_CODENAME={codename}\nID=debian\n"),
        0o644,
    );
    write(
        sb,
        "/boot/firmware/cmdline.txt",
        &format!("{CMDLINE} cgroup_enable=memory cgroup_memory=1\n"),
        0o755,
    );
    std::fs::create_dir_all(sb.path("/etc/NetworkManager/conf.d")).unwrap();
    if dhcpcd {
        write(
            sb,
            "/etc/dhcpcd.conf",
            "hostname\nclientid\npersistent\n",
            0o644,
        );
    }
    write(sb, "/etc/docker/daemon.json", USER_DAEMON_JSON, 0o600);
}

fn overlays_land_merge_stay_and_are_undone(codename: &str, version: &str, dhcpcd: bool) {
    let sb = Sandbox::new();
    pi_os(&sb, codename, version, dhcpcd);
    let profile = sb.profile("");
    let before = tree(sb.root());

    // --dry-run: the diff of each file, nothing changed.
    let dry = sb.run(&[
        "install",
        "--profile",
        profile.to_str().unwrap(),
        "--dry-run",
    ]);
    assert_ok(&dry);
    let text = stdout(&dry);
    assert!(stderr(&dry).contains("preflight ok   memory cgroup: /boot/firmware/cmdline.txt has cgroup_enable=memory cgroup_memory=1"), "{}", stderr(&dry));
    assert!(text.contains("overlay base: would write /etc/docker/daemon.json (mode 0644, owner 0:0; merged into the host's file, its original kept as /etc/docker/daemon.json.pi-setup-orig)"), "{text}");
    assert!(
        text.contains(
            "--- /etc/docker/daemon.json (now)\n+++ /etc/docker/daemon.json (pi-setup)\n"
        ),
        "{text}"
    );
    assert!(text.contains("+  \"live-restore\": true,"), "{text}");
    assert!(
        text.contains(
            "--- /dev/null\n+++ /etc/NetworkManager/conf.d/pi-setup-veth.conf (pi-setup)\n"
        ),
        "{text}"
    );
    assert_eq!(text.contains("+denyinterfaces veth*"), dhcpcd, "{text}");
    assert!(
        text.contains("Docker's daemon settings would change"),
        "{text}"
    );
    assert_eq!(tree(sb.root()), before);
    assert_eq!(
        std::fs::read_to_string(sb.path("/etc/docker/daemon.json")).unwrap(),
        USER_DAEMON_JSON
    );

    // install: the files land with their modes; the user's key survives; Docker is not
    // restarted, and install says so.
    let out = sb.install(&profile);
    let text = stdout(&out);
    assert!(
        text.contains("overlay base: wrote /etc/docker/daemon.json"),
        "{text}"
    );
    assert!(text.contains("Docker's daemon settings changed (/etc/docker/daemon.json): they take effect when Docker restarts. Run `sudo pi-setup install --restart-docker`"), "{text}");
    let daemon: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sb.path("/etc/docker/daemon.json")).unwrap())
            .unwrap();
    assert_eq!(
        daemon,
        serde_json::json!({
            "data-root": "/mnt/ssd/docker",
            "log-driver": "local",
            "log-opts": {"max-size": "10m", "max-file": "3"},
            "live-restore": true
        })
    );
    assert_eq!(mode(&sb.path("/etc/docker/daemon.json")), 0o644);
    assert_eq!(
        std::fs::read_to_string(sb.path("/etc/docker/daemon.json.pi-setup-orig")).unwrap(),
        USER_DAEMON_JSON
    );
    assert_eq!(
        mode(&sb.path("/etc/docker/daemon.json.pi-setup-orig")),
        0o600
    );
    for (file, line) in [
        (
            "/etc/systemd/journald.conf.d/pi-setup.conf",
            "SystemMaxUse=64M",
        ),
        (
            "/etc/NetworkManager/conf.d/pi-setup-veth.conf",
            "unmanaged-devices=interface-name:veth*",
        ),
        ("/etc/sysctl.d/60-pi-setup.conf", "net.ipv4.ip_forward=1"),
    ] {
        let text = std::fs::read_to_string(sb.path(file)).unwrap();
        assert!(text.lines().any(|l| l == line), "{file}:\n{text}");
        assert_eq!(mode(&sb.path(file)), 0o644, "{file}");
    }
    let dhcpcd_text = std::fs::read_to_string(sb.path("/etc/dhcpcd.conf")).ok();
    if dhcpcd {
        assert_eq!(
            dhcpcd_text.as_deref(),
            Some("hostname\nclientid\npersistent\n# added by pi-setup\ndenyinterfaces veth*\n")
        );
    } else {
        assert_eq!(dhcpcd_text, None, "no dhcpcd on {codename}: none written");
    }

    // Again: nothing to do, nothing touched.
    let after_first = tree(sb.root());
    let daemon_bytes = std::fs::read(sb.path("/etc/docker/daemon.json")).unwrap();
    let again = sb.install(&profile);
    let text = stdout(&again);
    assert!(!text.contains("overlay base:"), "{text}");
    assert!(!text.contains("Docker's daemon settings"), "{text}");
    assert!(
        text.contains("Nothing changed: everything already matches the profile."),
        "{text}"
    );
    assert_eq!(tree(sb.root()), after_first);
    assert_eq!(
        std::fs::read(sb.path("/etc/docker/daemon.json")).unwrap(),
        daemon_bytes
    );

    // uninstall: the host's files back byte for byte (and mode), ours gone, data kept.
    let out = sb.run(&["uninstall"]);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(
        text.contains(&format!("removed container {}", sb.container("gateway"))),
        "{text}"
    );
    assert!(text.contains("restored /etc/docker/daemon.json"), "{text}");
    assert!(
        text.contains(&format!(
            "kept {} (every service's data)",
            sb.path("/var/vol").display()
        )),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(sb.path("/etc/docker/daemon.json")).unwrap(),
        USER_DAEMON_JSON
    );
    assert_eq!(mode(&sb.path("/etc/docker/daemon.json")), 0o600);
    assert!(!sb.path("/etc/docker/daemon.json.pi-setup-orig").exists());
    assert!(!sb
        .path("/etc/NetworkManager/conf.d/pi-setup-veth.conf")
        .exists());
    assert!(!sb
        .path("/etc/systemd/journald.conf.d/pi-setup.conf")
        .exists());
    if dhcpcd {
        assert_eq!(
            std::fs::read_to_string(sb.path("/etc/dhcpcd.conf")).unwrap(),
            "hostname\nclientid\npersistent\n"
        );
    }
    assert!(sb.path("/var/vol/gateway").is_dir());
    assert!(!sb.path("/etc/systemd/system/pi-setup-heal.timer").exists());
    assert_eq!(sb.docker_objects(), Vec::<String>::new());
}

#[test]
fn overlays_on_a_bookworm_root_merge_and_uninstall_restores_the_originals() {
    overlays_land_merge_stay_and_are_undone("bookworm", "12", true);
}

#[test]
fn overlays_on_a_trixie_root_merge_and_uninstall_restores_the_originals() {
    overlays_land_merge_stay_and_are_undone("trixie", "13", false);
}

#[test]
fn restart_docker_never_restarts_the_real_daemon_for_a_sandbox() {
    let sb = Sandbox::new();
    let profile = sb.profile("");
    let out = sb.run(&[
        "install",
        "--profile",
        profile.to_str().unwrap(),
        "--restart-docker",
    ]);
    assert_ok(&out);
    assert!(
        stdout(&out).contains("Docker's daemon settings changed under --root"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("not restarting the real Docker daemon for a sandbox"));
}

#[test]
fn uninstall_purge_needs_yes_and_then_deletes_the_data() {
    let sb = Sandbox::new();
    sb.install(&sb.profile(""));
    let out = sb.run(&["uninstall", "--purge"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("add --yes to confirm"),
        "{}",
        stderr(&out)
    );
    assert!(sb.path("/var/vol/gateway").is_dir());
    let out = sb.run(&["uninstall", "--purge", "--yes"]);
    assert_ok(&out);
    assert!(!sb.path("/var/vol").exists());
    assert!(!sb.path("/etc/pi-setup").exists());
    assert!(
        !sb.path("/etc/docker/daemon.json").exists(),
        "pi-setup had created it"
    );
    assert_eq!(sb.docker_objects(), Vec::<String>::new());
}

/// Runs install, expects a preflight failure naming `expected`, and no change at all.
#[track_caller]
fn preflight_fails(sb: &Sandbox, extra: &[&str], env: &[(&str, &str)], expected: &str) {
    let profile = sb.profile("");
    let before = tree(sb.root());
    let mut args = vec!["install", "--profile", profile.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = sb.cmd(&args).envs(env.iter().copied()).output().unwrap();
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{}\nstderr:\n{err}",
        stdout(&out)
    );
    assert!(err.contains("preflight failed"), "{err}");
    assert!(err.contains(expected), "expected {expected:?} in:\n{err}");
    assert!(err.contains(&format!("preflight FAIL {expected}")), "{err}");
    assert_eq!(tree(sb.root()), before, "{err}");
    assert_eq!(sb.docker_objects(), Vec::<String>::new());
}

#[test]
fn a_cmdline_without_the_memory_cgroup_fails_and_fix_cmdline_fixes_it_once() {
    let sb = Sandbox::new();
    write(
        &sb,
        "/boot/firmware/cmdline.txt",
        &format!("{CMDLINE}\n"),
        0o755,
    );
    preflight_fails(
        &sb,
        &[],
        &[],
        "memory cgroup: /boot/firmware/cmdline.txt lacks cgroup_enable=memory cgroup_memory=1",
    );
    let profile = sb.profile("");
    let out = sb.run(&[
        "install",
        "--profile",
        profile.to_str().unwrap(),
        "--fix-cmdline",
    ]);
    assert_ok(&out);
    assert!(
        stdout(&out).contains("/boot/firmware/cmdline.txt: added cgroup_enable=memory cgroup_memory=1 (still one line). Reboot"),
        "{}",
        stdout(&out)
    );
    let fixed = format!("{CMDLINE} cgroup_enable=memory cgroup_memory=1\n");
    assert_eq!(
        std::fs::read_to_string(sb.path("/boot/firmware/cmdline.txt")).unwrap(),
        fixed
    );
    assert_eq!(mode(&sb.path("/boot/firmware/cmdline.txt")), 0o755);
    let again = sb.run(&[
        "install",
        "--profile",
        profile.to_str().unwrap(),
        "--fix-cmdline",
    ]);
    assert_ok(&again);
    assert!(
        !stdout(&again).contains("added cgroup_enable"),
        "{}",
        stdout(&again)
    );
    assert_eq!(
        std::fs::read_to_string(sb.path("/boot/firmware/cmdline.txt")).unwrap(),
        fixed
    );
    // The line as it was is kept, once, and uninstall puts it back.
    let orig = sb.path("/boot/firmware/cmdline.txt.pi-setup-orig");
    assert_eq!(
        std::fs::read_to_string(&orig).unwrap(),
        format!("{CMDLINE}\n")
    );
    let out = sb.run(&["uninstall"]);
    assert_ok(&out);
    assert_eq!(
        std::fs::read_to_string(sb.path("/boot/firmware/cmdline.txt")).unwrap(),
        format!("{CMDLINE}\n"),
        "{}",
        stdout(&out)
    );
    assert_eq!(mode(&sb.path("/boot/firmware/cmdline.txt")), 0o755);
    assert!(!orig.exists());
}

#[test]
fn an_image_without_the_hosts_platform_fails_preflight_naming_it() {
    let sb = Sandbox::new();
    let host = String::from_utf8_lossy(
        &docker(&[
            "image",
            "inspect",
            "-f",
            "{{.Os}}/{{.Architecture}}",
            CADDY_IMAGE,
        ])
        .stdout,
    )
    .trim()
    .to_string();
    let other = if host.ends_with("arm64") {
        "amd64"
    } else {
        "arm64"
    };
    preflight_fails(
        &sb,
        &[],
        &[("PI_SETUP_TEST_HOST_ARCH", other)],
        &format!("architecture: this host is linux/{other}, but image {CADDY_IMAGE} is {host} without linux/{other}"),
    );
}

/// A tmpfs of 1 MiB mounted on the sandbox's /var/vol, unmounted on drop.
struct TinyMount(std::path::PathBuf);

impl Drop for TinyMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_nearly_full_var_vol_fails_preflight() {
    let sb = Sandbox::new();
    let vol = sb.path("/var/vol");
    std::fs::create_dir_all(&vol).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&vol)
        .status()
        .unwrap();
    assert!(
        mounted.success(),
        "mounting a tmpfs needs root (CI runs as root)"
    );
    let _mount = TinyMount(vol);
    preflight_fails(
        &sb,
        &[],
        &[],
        "space: /var/vol has 1.0 MiB free; pi-setup needs at least 1.0 GiB there",
    );
}

#[test]
fn an_unreachable_daemon_fails_preflight_and_says_how_to_install_docker() {
    let sb = Sandbox::new();
    let env = [("DOCKER_HOST", "unix:///nonexistent/docker.sock")];
    preflight_fails(
        &sb,
        &[],
        &env,
        "docker: cannot reach the Docker daemon at unix:///nonexistent/docker.sock",
    );
    let profile = sb.profile("");
    let out = sb
        .cmd(&["install", "--profile", profile.to_str().unwrap()])
        .envs(env)
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("Docker is not installed on this host: run `sudo apt-get install docker.io`, or install with --install-docker"),
        "{}",
        stderr(&out)
    );
    let out = sb
        .cmd(&[
            "install",
            "--profile",
            profile.to_str().unwrap(),
            "--install-docker",
        ])
        .envs(env)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--install-docker installs Debian's docker.io on the real host, so it does not work under --root"),
        "{}",
        stderr(&out)
    );
    assert_eq!(tree(sb.root()), Vec::<String>::new());
}

/// Tags of the test images only this test uses (so removing them leaves the shared ones),
/// removed on drop.
struct Tags(Vec<String>);

impl Drop for Tags {
    fn drop(&mut self) {
        for t in &self.0 {
            docker(&["rmi", t]);
        }
    }
}

#[test]
fn images_saved_removed_and_loaded_by_install_bring_the_appliance_up_offline() {
    let sb = Sandbox::new();
    let caddy = format!("{}/caddy:offline", sb.instance);
    let busybox = format!("{}/busybox:offline", sb.instance);
    let tags = Tags(vec![caddy.clone(), busybox.clone()]);
    for (from, to) in [(CADDY_IMAGE, &caddy), (BUSYBOX_IMAGE, &busybox)] {
        assert!(docker(&["tag", from, to]).status.success());
    }
    let profile = sb.write_profile(&format!(
        "[gateway]\nimage = \"{caddy}\"\nhttp_port = {}\nbind = \"127.0.0.1\"\nhttps = \"off\"\n\n\
         [[service]]\nname = \"web\"\nimage = \"{busybox}\"\ndomains = [\"web.test\"]\nport = 8080\n\
         command = [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\nvolumes = [\"www:/www\"]\n",
        sb.http_port
    ));
    let bundle = sb.dir.path().with_extension("images.tar");
    let _cleanup = scopeguard(&bundle);
    let out = sb.run(&[
        "images",
        "save",
        bundle.to_str().unwrap(),
        "--profile",
        profile.to_str().unwrap(),
    ]);
    assert_ok(&out);
    assert!(
        stdout(&out).contains("saved 2 image(s) for linux/"),
        "{}",
        stdout(&out)
    );
    assert_eq!(mode(&bundle), 0o600);
    for t in &tags.0 {
        assert!(docker(&["rmi", t]).status.success());
    }

    // Without the bundle: the images cannot be pulled (no registry), nothing is changed.
    let out = sb.run(&["install", "--profile", profile.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));

    let out = sb.run(&[
        "install",
        "--profile",
        profile.to_str().unwrap(),
        "--images",
        bundle.to_str().unwrap(),
    ]);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(text.contains(&format!("Loaded image: {caddy}")), "{text}");
    assert!(text.contains(&format!("Loaded image: {busybox}")), "{text}");
    assert!(!text.contains("pull"), "nothing pulled:\n{text}");
    write(&sb, "/var/vol/web/www/index.html", "offline hello\n", 0o644);
    assert_eq!(sb.get("web.test"), (200, "offline hello\n".to_string()));
}

/// Removes a file on drop.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn scopeguard(p: &Path) -> RemoveOnDrop {
    RemoveOnDrop(p.to_path_buf())
}

#[test]
fn images_save_names_an_image_that_is_not_here() {
    let sb = Sandbox::new();
    let missing = format!("{}/absent:1", sb.instance);
    let profile = sb.write_profile(&format!(
        "[gateway]\nimage = \"{CADDY_IMAGE}\"\nhttps = \"off\"\n\n[[service]]\nname = \"web\"\nimage = \"{missing}\"\n"
    ));
    let bundle = sb.dir.path().with_extension("absent.tar");
    let out = sb.run(&[
        "images",
        "save",
        bundle.to_str().unwrap(),
        "--profile",
        profile.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("image {missing} is not on this machine")),
        "{}",
        stderr(&out)
    );
    assert!(!bundle.exists());
}

#[test]
fn images_save_for_another_platform_names_the_image_that_lacks_it() {
    let sb = Sandbox::new();
    let profile = sb.profile("");
    let host = String::from_utf8_lossy(
        &docker(&[
            "image",
            "inspect",
            "-f",
            "{{.Os}}/{{.Architecture}}",
            CADDY_IMAGE,
        ])
        .stdout,
    )
    .trim()
    .to_string();
    let other = if host.ends_with("arm64") {
        "linux/amd64"
    } else {
        "linux/arm64"
    };
    let bundle = sb.dir.path().with_extension("other.tar");
    let out = sb.run(&[
        "images",
        "save",
        bundle.to_str().unwrap(),
        "--profile",
        profile.to_str().unwrap(),
        "--platform",
        other,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("image {CADDY_IMAGE} is {host}, not {other}")),
        "{}",
        stderr(&out)
    );
    assert!(!bundle.exists());
}

#[test]
fn install_images_checks_the_bundle_holds_every_image_the_plan_needs() {
    let sb = Sandbox::new();
    let absent = format!("{}/absent:1", sb.instance);
    let bundle = sb.dir.path().with_extension("gw.tar");
    let _cleanup = scopeguard(&bundle);
    let gateway_only = sb.profile("");
    assert_ok(&sb.run(&[
        "images",
        "save",
        bundle.to_str().unwrap(),
        "--profile",
        gateway_only.to_str().unwrap(),
    ]));
    let profile = sb.profile(&format!(
        "[[service]]\nname = \"web\"\nimage = \"{absent}\"\n"
    ));
    let out = sb.run(&[
        "install",
        "--profile",
        profile.to_str().unwrap(),
        "--images",
        bundle.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains(&format!("image {absent} is not on this machine")),
        "{}",
        stderr(&out)
    );
    assert_eq!(tree(sb.root()), Vec::<String>::new());
    assert_eq!(sb.docker_objects(), Vec::<String>::new());
}

#[test]
fn a_daemon_json_that_cannot_be_merged_stops_install_before_anything_changes() {
    let sb = Sandbox::new();
    write(&sb, "/etc/docker/daemon.json", "{ \"data-root\": \n", 0o644);
    let before = tree(sb.root());
    let profile = sb.profile("");
    let out = sb.run(&["install", "--profile", profile.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("overlay base: cannot merge into /etc/docker/daemon.json: not valid JSON"),
        "{err}"
    );
    assert!(err.contains("fix it or move it aside"), "{err}");
    assert_eq!(tree(sb.root()), before);
    assert_eq!(sb.docker_objects(), Vec::<String>::new());
}

/// A backup destination that is a disk holding other things (`dest = "/mnt/usb"`): purge
/// deletes the archives pi-setup wrote there, never the rest of the disk.
#[test]
fn uninstall_purge_deletes_only_the_archives_on_a_shared_backup_disk() {
    let sb = Sandbox::new();
    sb.install(&sb.profile("[backup]\ndest = \"/mnt/usb\"\n"));
    std::fs::create_dir_all(sb.path("/var/vol/notes")).unwrap();
    std::fs::write(sb.path("/var/vol/notes/a.txt"), "a").unwrap();
    assert_ok(&sb.run(&["backup"]));
    let usb = sb.path("/mnt/usb");
    std::fs::create_dir_all(usb.join("photos")).unwrap();
    std::fs::write(usb.join("photos/holiday.jpg"), "not pi-setup's").unwrap();
    std::fs::write(usb.join("notes/mine.txt"), "also not pi-setup's").unwrap();
    let out = sb.run(&["uninstall", "--purge", "--yes"]);
    assert_ok(&out);
    assert_eq!(
        std::fs::read(usb.join("photos/holiday.jpg")).unwrap(),
        b"not pi-setup's"
    );
    assert_eq!(
        std::fs::read(usb.join("notes/mine.txt")).unwrap(),
        b"also not pi-setup's"
    );
    assert!(!usb.join("gateway").exists(), "{}", stdout(&out));
    assert!(stdout(&out).contains("it holds files backups did not write"));
}

/// A user's overlay with a file only root may read (a Wi-Fi key): install writes it but never
/// prints its contents in the diff it shows.
#[test]
fn the_diff_of_a_file_only_root_may_read_is_not_shown() {
    let sb = Sandbox::new();
    let profile = sb.profile("");
    let text = std::fs::read_to_string(&profile).unwrap();
    std::fs::write(&profile, format!("overlays = [\"base\", \"wifi\"]\n{text}")).unwrap();
    let overlay = profile.parent().unwrap().join("overlays/wifi");
    std::fs::create_dir_all(overlay.join("etc/wpa")).unwrap();
    std::fs::write(
        overlay.join("manifest.toml"),
        "[[file]]\npath = \"etc/wpa/home.conf\"\nmode = \"0600\"\nowner = \"0:0\"\nmerge = \"replace\"\n",
    )
    .unwrap();
    std::fs::write(overlay.join("etc/wpa/home.conf"), "psk=hunter2-secret\n").unwrap();
    let out = sb.install(&profile);
    assert_ok(&out);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!said.contains("hunter2-secret"), "{said}");
    assert!(
        said.contains("not shown: it is not world-readable"),
        "{said}"
    );
    assert_eq!(
        std::fs::read(sb.path("/etc/wpa/home.conf")).unwrap(),
        b"psk=hunter2-secret\n"
    );
}
