//! Test harness: a sandbox per test (temp `--root`, unique `--instance`, a free loopback port)
//! that runs the real binary and removes its Docker objects on drop, also when the test fails.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const CADDY_IMAGE: &str = "pi-setup-test/caddy:2.11.7";
pub const BUSYBOX_IMAGE: &str = "pi-setup-test/busybox:1";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_pi-setup")
}

pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub instance: String,
    pub http_port: u16,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Sandbox {
    pub fn new() -> Sandbox {
        for image in [CADDY_IMAGE, BUSYBOX_IMAGE] {
            assert!(
                docker(&["image", "inspect", image]).status.success(),
                "test image {image} is missing: run `bash ci/test-images` (or `bash ci/test`)"
            );
        }
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let instance = format!("pst{}x{n}", std::process::id());
        Sandbox {
            dir: tempfile::Builder::new()
                .prefix("pi-setup-test")
                .tempdir()
                .unwrap(),
            instance,
            http_port: free_port(),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A host path under the sandbox root.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.root().join(abs.trim_start_matches('/'))
    }

    /// Writes a profile with the test gateway on this sandbox's loopback port, plus `services`
    /// (TOML `[[service]]` tables), outside the root so it does not count as a change there.
    pub fn profile(&self, services: &str) -> PathBuf {
        let text = format!(
            "[gateway]\nimage = \"{CADDY_IMAGE}\"\nhttp_port = {}\nbind = \"127.0.0.1\"\nhttps = \"off\"\n\n{services}",
            self.http_port
        );
        self.write_profile(&text)
    }

    pub fn write_profile(&self, text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("{}-profile.toml", self.instance));
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("--root")
            .arg(self.root())
            .arg("--instance")
            .arg(&self.instance)
            .args(args);
        c.env_remove("PI_SETUP_ROOT")
            .env_remove("PI_SETUP_INSTANCE");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    pub fn install(&self, profile: &Path) -> Output {
        let out = self.run(&["install", "--profile", profile.to_str().unwrap()]);
        assert_ok(&out);
        out
    }

    pub fn container(&self, service: &str) -> String {
        format!("{}-{service}", self.instance)
    }

    pub fn container_id(&self, service: &str) -> String {
        inspect(&self.container(service), "{{.Id}}")
    }

    /// Every container and network of this instance, as `docker ps`/`network ls` list them.
    pub fn docker_objects(&self) -> Vec<String> {
        let filter = format!("label=pi-setup.instance={}", self.instance);
        let mut out = lines(&docker(&[
            "ps",
            "-a",
            "--filter",
            &filter,
            "--format",
            "{{.Names}}",
        ]));
        out.extend(lines(&docker(&[
            "network",
            "ls",
            "--filter",
            &filter,
            "--format",
            "{{.Name}}",
        ])));
        out.extend(lines(&docker(&[
            "network",
            "ls",
            "--filter",
            &format!("name={}", self.instance),
            "--format",
            "{{.Name}}",
        ])));
        out
    }

    /// GET through the gateway on 127.0.0.1 with a Host header; retries connection failures,
    /// 502s and maintenance-page 503s until the deadline (a fresh container needs a moment to
    /// listen, and until it does the gateway serves the maintenance page). Tests that expect
    /// the maintenance page use `try_get`.
    pub fn get(&self, host: &str) -> (u16, String) {
        http_get(self.http_port, host, Duration::from_secs(15))
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let filter = format!("label=pi-setup.instance={}", self.instance);
        let ids = lines(&docker(&["ps", "-aq", "--filter", &filter]));
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids.iter().map(String::as_str));
            docker(&args);
        }
        for net in lines(&docker(&[
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("name={}-", self.instance),
        ])) {
            docker(&["network", "rm", &net]);
        }
        let _ = std::fs::remove_file(
            std::env::temp_dir().join(format!("{}-profile.toml", self.instance)),
        );
    }
}

pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI")
}

/// The TCP counters of a container's network namespace that only move when a connection is
/// refused, reset or dropped (`/proc/PID/net/snmp` and `netstat`), those above zero, as
/// `name=value` words: what a failed traffic assertion prints, to say where a connection went.
pub fn tcp_trouble(container: &str) -> String {
    const WATCHED: [&str; 12] = [
        "AttemptFails",
        "EstabResets",
        "OutRsts",
        "EmbryonicRsts",
        "ListenOverflows",
        "ListenDrops",
        "TCPAbortOnData",
        "TCPAbortOnClose",
        "TCPReqQFullDoCookies",
        "SyncookiesSent",
        "TCPMigrateReqSuccess",
        "TCPMigrateReqFailure",
    ];
    let pid = inspect(container, "{{.State.Pid}}");
    let mut found = Vec::new();
    for file in ["snmp", "netstat"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{file}")).unwrap_or_default();
        let rows: Vec<&str> = text.lines().collect();
        for pair in rows.chunks(2) {
            let [names, values] = pair else { continue };
            for (name, value) in names
                .split_whitespace()
                .zip(values.split_whitespace())
                .skip(1)
            {
                if WATCHED.contains(&name) && value != "0" {
                    found.push(format!("{name}={value}"));
                }
            }
        }
    }
    if found.is_empty() {
        format!("{container}: no TCP refusals, resets or drops counted")
    } else {
        format!("{container}: {}", found.join(" "))
    }
}

pub fn inspect(object: &str, format: &str) -> String {
    let out = docker(&["inspect", "-f", format, object]);
    assert!(
        out.status.success(),
        "docker inspect {object}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
pub fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "pi-setup failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
}

/// A run that ended with exit code `code`; its standard output.
#[track_caller]
pub fn exits(out: &Output, code: i32) -> String {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

/// A run that succeeded and found nothing to do.
#[track_caller]
pub fn assert_nothing_changed(out: &Output) {
    assert_ok(out);
    assert!(
        stdout(out).starts_with("Nothing changed"),
        "{}",
        stdout(out)
    );
}

/// A minimal HTTP/1.0 GET to 127.0.0.1:port; returns (status, body).
pub fn http_get(port: u16, host: &str, patience: Duration) -> (u16, String) {
    http_get_path(port, host, "/", "", patience)
}

/// GET `path` with a Host header and extra header lines; retries connection failures, 502s
/// and 503s (the maintenance page) until the deadline, then returns the last answer.
pub fn http_get_path(
    port: u16,
    host: &str,
    path: &str,
    headers: &str,
    patience: Duration,
) -> (u16, String) {
    let deadline = Instant::now() + patience;
    loop {
        match try_get_path(port, host, path, headers) {
            Ok((status, body)) if !matches!(status, 502 | 503) || Instant::now() >= deadline => {
                return (status, body)
            }
            Err(e) if Instant::now() >= deadline => {
                panic!("GET http://{host}{path} via 127.0.0.1:{port}: {e}")
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

pub fn try_get(port: u16, host: &str) -> std::io::Result<(u16, String)> {
    try_get_with(port, host, "")
}

/// GET with extra header lines (each ending in \r\n).
pub fn try_get_with(port: u16, host: &str, headers: &str) -> std::io::Result<(u16, String)> {
    try_get_path(port, host, "/", headers)
}

/// One GET of `path` on 127.0.0.1:port with a Host header and extra header lines.
pub fn try_get_path(
    port: u16,
    host: &str,
    path: &str,
    headers: &str,
) -> std::io::Result<(u16, String)> {
    try_get_late(port, host, path, headers, Duration::ZERO)
}

/// `try_get_path` from a client on a slow link: the request comes `late` after the
/// connection is made (a TLS handshake over a long round trip looks like this to the server).
pub fn try_get_late(
    port: u16,
    host: &str,
    path: &str,
    headers: &str,
    late: Duration,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    std::thread::sleep(late);
    // One write, as a browser sends it: `write!` would send each formatted piece on its own,
    // and a request split over several segments reaches the gateway later than it would.
    let request =
        format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n");
    s.write_all(request.as_bytes())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// A container timestamp (`.State.StartedAt`, `.State.FinishedAt`: RFC 3339 with nanoseconds,
/// UTC) as nanoseconds since the epoch.
pub fn nanos(container: &str, field: &str) -> i128 {
    let text = inspect(container, &format!("{{{{.State.{field}}}}}"));
    let out = Command::new("date")
        .args(["-u", "-d", &text, "+%s%N"])
        .output()
        .unwrap();
    stdout(&out).trim().parse().unwrap_or_else(|e| {
        panic!("{container} {field} = {text:?}: {e}");
    })
}

/// Polls a condition until it holds or the deadline passes; returns whether it held.
pub fn wait_until(patience: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + patience;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Lists everything under a directory (relative paths), for "nothing changed" checks. The
/// lock file in /run is runtime state (tmpfs on a real host), not a change, so it is left out.
pub fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        if let Ok(entries) = std::fs::read_dir(d) {
            for e in entries.flatten() {
                out.push(e.path().strip_prefix(base).unwrap().display().to_string());
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(base, &e.path(), out);
                }
            }
        }
    }
    walk(dir, dir, &mut out);
    out.retain(|p| p != "run" && p != "run/pi-setup.lock");
    out.sort();
    out
}
