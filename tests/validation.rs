//! Input a hostile or careless user gives: values the gateway or Docker would choke on, host
//! files the maintenance page must not publish, secrets that must never be echoed. Each is
//! refused with exit code 2, names where it is, and changes nothing; or, where only the
//! gateway itself can tell, fails the run instead of reporting success.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{
    assert_ok, inspect, stderr, stdout, tree, try_get, wait_until, Sandbox, BUSYBOX_IMAGE,
    CADDY_IMAGE,
};

/// The sandbox's test gateway with one more `[gateway]` line (line 6 of the profile).
fn profile_with_gateway_line(sb: &Sandbox, line: &str, services: &str) -> String {
    format!(
        "[gateway]\nimage = \"{CADDY_IMAGE}\"\nhttp_port = {}\nbind = \"127.0.0.1\"\nhttps = \"off\"\n{line}\n\n{services}",
        sb.http_port
    )
}

/// Runs pi-setup, killing it if it has not finished within 60 s (a read that blocks on a
/// FIFO must fail the test, not hang it).
fn run_bounded(sb: &Sandbox, args: &[&str]) -> Output {
    let mut child = sb
        .cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_mins(1);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            child.kill().unwrap();
            panic!("pi-setup {args:?} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Exit code 2, each of `expected` in stderr, the root's files as they were and no Docker
/// object. Returns stderr.
#[track_caller]
fn refused(sb: &Sandbox, out: &Output, files_before: &[String], expected: &[&str]) -> String {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "stdout:\n{}\nstderr:\n{err}",
        stdout(out)
    );
    for e in expected {
        assert!(err.contains(e), "expected {e:?} in:\n{err}");
    }
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(tree(sb.root()), files_before, "{err}");
    assert_eq!(sb.docker_objects(), Vec::<String>::new());
    err
}

fn write_mode(path: &Path, contents: &[u8], mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn maintenance_pages_that_are_not_public_files_under_the_root_are_refused() {
    let sb = Sandbox::new();
    // A file outside the root, world-readable: a profile naming its path reads the root's.
    let outside = tempfile::tempdir().unwrap();
    write_mode(&outside.path().join("page.html"), b"OUTSIDE", 0o644);
    write_mode(&sb.path("/etc/shadow"), b"root:$6$hash:1::::::\n", 0o600);
    write_mode(&sb.path("/etc/gshadow"), b"root:*::\n", 0o640);
    write_mode(&sb.path("/srv/big.html"), &vec![b'x'; 2 << 20], 0o644);
    std::os::unix::fs::symlink(outside.path().join("page.html"), sb.path("/srv/link.html"))
        .unwrap();
    std::os::unix::fs::symlink(outside.path(), sb.path("/srv/outside")).unwrap();
    nix::unistd::mkfifo(
        &sb.path("/srv/fifo.html"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    write_mode(&sb.path("/srv/latin1.html"), b"caf\xe9", 0o644);
    let files_before = tree(sb.root());

    let outside_page = outside.path().join("page.html");
    let outside_page = outside_page.to_str().unwrap();
    let under_root = |p: &str| sb.path(p).display().to_string();
    let cases: Vec<(String, Vec<String>)> = vec![
        (
            "/etc/shadow".into(),
            vec![format!(
                "{} is not readable by everyone (mode 0600)",
                under_root("/etc/shadow")
            )],
        ),
        (
            "/etc/gshadow".into(),
            vec![format!(
                "{} is not readable by everyone (mode 0640)",
                under_root("/etc/gshadow")
            )],
        ),
        (
            outside_page.into(),
            vec![format!(
                "{}: No such file or directory",
                under_root(outside_page)
            )],
        ),
        (
            "/srv/link.html".into(),
            vec![format!(
                "{} is a symbolic link; name the file itself",
                under_root("/srv/link.html")
            )],
        ),
        (
            "/srv/outside/page.html".into(),
            vec!["its directory leads out of".into()],
        ),
        (
            "/srv/fifo.html".into(),
            vec![format!(
                "{} is not a regular file",
                under_root("/srv/fifo.html")
            )],
        ),
        (
            "/srv/big.html".into(),
            vec!["is 2097152 bytes; a maintenance page may be at most 1 MiB".into()],
        ),
        ("/srv/latin1.html".into(), vec!["is not UTF-8 text".into()]),
    ];
    for (page, expected) in cases {
        let text = profile_with_gateway_line(&sb, &format!("maintenance_page = {page:?}"), "");
        let profile = sb.write_profile(&text);
        let out = run_bounded(&sb, &["install", "--profile", profile.to_str().unwrap()]);
        let at = format!(
            "{}:6:20: gateway.maintenance_page {page:?}: ",
            profile.display()
        );
        let mut expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        expected.push(&at);
        let err = refused(&sb, &out, &files_before, &expected);
        for secret in ["OUTSIDE", "$6$hash", "root:*"] {
            assert!(!err.contains(secret), "{err}");
        }
    }
}

#[test]
fn a_public_page_under_the_root_is_served_while_a_service_is_down() {
    let sb = Sandbox::new();
    write_mode(
        &sb.path("/srv/down.html"),
        b"<h1>Our own page</h1>\n",
        0o644,
    );
    // A service that listens on nothing: the gateway cannot reach it.
    let service = format!(
        "[[service]]\nname = \"idle\"\nimage = \"{BUSYBOX_IMAGE}\"\ndomains = [\"idle.test\"]\n\
         port = 8080\ncommand = [\"sleep\", \"3600\"]\n"
    );
    let text = profile_with_gateway_line(&sb, "maintenance_page = \"/srv/down.html\"", &service);
    sb.install(&sb.write_profile(&text));
    let mut last = None;
    assert!(
        wait_until(Duration::from_secs(15), || {
            last = try_get(sb.http_port, "idle.test").ok();
            last == Some((503, "<h1>Our own page</h1>\n".to_string()))
        }),
        "{last:?}"
    );
}

#[test]
fn secrets_with_a_nul_byte_are_refused_without_ever_showing_them() {
    let sb = Sandbox::new();
    let files_before = tree(sb.root());
    let env_file = std::env::temp_dir().join(format!("{}-secrets.env", sb.instance));
    std::fs::write(&env_file, "A=1\nTOKEN=s3cr3t-\0-value\n").unwrap();
    let out = sb.run(&[
        "add-service",
        "app",
        "--image",
        BUSYBOX_IMAGE,
        "--env-file",
        env_file.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_file(&env_file);
    let err = refused(
        &sb,
        &out,
        &files_before,
        &[&format!(
            "{}:2:1: TOKEN: the value contains a NUL byte, which Docker refuses (the value is not shown)",
            env_file.display()
        )],
    );
    assert!(!err.contains("s3cr3t"), "{err}");
    assert!(!sb.path("/etc/pi-setup/services/app.toml").exists());

    // Written by hand beside a service of the profile: refused on every run, never shown.
    let secrets = sb.path("/etc/pi-setup/secrets/app.env");
    write_mode(&secrets, b"TOKEN=s3cr3t-\0-value\n", 0o600);
    let files_before = tree(sb.root());
    let service = format!("[[service]]\nname = \"app\"\nimage = \"{BUSYBOX_IMAGE}\"\n");
    let profile = sb.profile(&service);
    for _ in 0..2 {
        let out = sb.run(&["install", "--profile", profile.to_str().unwrap()]);
        let err = refused(
            &sb,
            &out,
            &files_before,
            &[&format!(
                "{}:1:1: TOKEN: the value contains a NUL byte",
                secrets.display()
            )],
        );
        assert!(!err.contains("s3cr3t"), "{err}");
    }

    // In a service's env (not secret, but it may be): the key and position, not the line.
    let profile = sb.profile(&format!(
        "{service}env = {{ TOKEN = \"s3cr3t-\\u0000-value\" }}\n"
    ));
    std::fs::remove_file(&secrets).unwrap();
    let files_before = tree(sb.root());
    let out = sb.run(&["install", "--profile", profile.to_str().unwrap()]);
    let err = refused(
        &sb,
        &out,
        &files_before,
        &[&format!(
            "{}:10:17: env TOKEN: the value contains a NUL byte",
            profile.display()
        )],
    );
    assert!(!err.contains("s3cr3t"), "{err}");
}

#[test]
fn add_service_refuses_what_docker_would_refuse() {
    let sb = Sandbox::new();
    let files_before = tree(sb.root());
    let cpus = std::thread::available_parallelism().unwrap().get();
    let too_many = (cpus + 1).to_string();
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["--volume", ".:/"],
            "invalid volume \".:/\": container path \"/\" is the container's root".into(),
        ),
        (
            vec!["--cpus", "1000"],
            format!("cpus 1000 is out of range: 0.01 to {cpus} (the CPUs this host has)"),
        ),
        (
            vec!["--cpus", &too_many],
            format!("cpus {too_many} is out of range: 0.01 to {cpus}"),
        ),
        (
            vec!["--memory", "5m"],
            "memory \"5m\" is out of range: 6m to 1024g".into(),
        ),
        (
            vec!["--health-cmd", "true", "--health-interval", "18446744074s"],
            "health_interval \"18446744074s\" is out of range: 1ms to 24h".into(),
        ),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["add-service", "app", "--image", BUSYBOX_IMAGE];
        args.extend(flags);
        let out = sb.run(&args);
        let service_file = sb.path("/etc/pi-setup/services/app.toml");
        // Values given as flags are named by their flag, not by a file that does not exist.
        let flag = format!("{} {:?}: ", args[args.len() - 2], args[args.len() - 1]);
        refused(&sb, &out, &files_before, &[&flag, &expected]);
        assert!(!service_file.exists());
    }
}

#[test]
fn a_gateway_email_that_would_break_its_config_is_refused() {
    let sb = Sandbox::new();
    let files_before = tree(sb.root());
    for email in ["\\\"@x.com", "a@x.com\\\\", "<<EOF@x.com", "me@x.com }"] {
        let text = profile_with_gateway_line(&sb, &format!("email = \"{email}\""), "");
        let profile = sb.write_profile(&text);
        let out = sb.run(&["install", "--profile", profile.to_str().unwrap()]);
        refused(
            &sb,
            &out,
            &files_before,
            &[
                &format!("{}:6:9: gateway.email", profile.display()),
                "is not an email address",
            ],
        );
    }
}

/// Every value pi-setup renders into the Caddyfile is validated, so no profile makes the
/// gateway refuse its config. What remains is a gateway that cannot start for a reason only
/// it sees: here its admin socket's path is taken by a directory, so Caddy exits on start and
/// Docker restarts it over and over. `install` used to report it running and exit 0.
#[test]
fn install_fails_when_the_gateway_does_not_come_up_with_its_config() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.path("/var/vol/gateway/admin/admin.sock/taken")).unwrap();
    let profile = sb.profile("");
    let started = Instant::now();
    let out = sb.run(&["install", "--profile", profile.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{}\nstderr:\n{err}",
        stdout(&out)
    );
    assert!(
        err.contains("the gateway did not load its configuration: it exited"),
        "{err}"
    );
    assert!(err.contains("its last log lines:"), "{err}");
    assert!(
        err.contains("administration endpoint"),
        "Caddy's own words: {err}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        !sb.path("/var/vol/gateway/admin/loaded").exists(),
        "no 'loaded' marker"
    );

    // Once the path is free, the next run brings it up.
    std::fs::remove_dir_all(sb.path("/var/vol/gateway/admin/admin.sock")).unwrap();
    assert_ok(&sb.run(&["install", "--profile", profile.to_str().unwrap()]));
    assert_eq!(
        inspect(&sb.container("gateway"), "{{.State.Running}}"),
        "true"
    );
    assert!(sb.path("/var/vol/gateway/admin/loaded").exists());
}
