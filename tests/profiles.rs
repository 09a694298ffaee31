//! The shipped stack profiles (`profiles/*.toml`) brought up for real. No registry is reachable
//! here, so one offline stand-in image is tagged under each image name a profile uses
//! (`postgres:16.4-bookworm`, `redis:7.4.1-alpine`, ...) and its build contexts build `FROM` it.
//! The stand-in serves its service's name over HTTP on every port the profiles use, and answers
//! the commands the profiles run (`pg_isready`, `redis-cli ping`, `curl`, `pg_dumpall -f`,
//! `python manage.py ...`, `gunicorn`) well enough for health checks, jobs and dumps to
//! succeed. The profile is installed as shipped, except for the gateway (the sandbox's, on a
//! loopback port, plain HTTP), an env `STANDIN` naming each service, and `STANDIN_KEEP` (the
//! kept path prefixes the stand-in answers under). Then, per profile: network and names, no
//! published port but the gateway's, start order, jobs run once, path routes, static files
//! from the gateway, shared env files, data directory owners, the maintenance page, backup
//! modes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use crate::harness::{
    assert_nothing_changed, assert_ok, docker, http_get_path, inspect, lines, nanos, stderr,
    stdout, try_get_path, Sandbox, BUSYBOX_IMAGE, CADDY_IMAGE,
};

/// Answers by the name it is called under; with no known name it serves (the image's command).
const STANDIN_SCRIPT: &str = r#"#!/bin/sh
# The shipped profiles' images, as tests/profiles.rs needs them.
case "${0##*/}" in
pg_isready|createdb|psql) exit 0 ;;
redis-cli) echo PONG; exit 0 ;;
curl)
  for a; do case "$a" in -*) ;; *) url=$a ;; esac; done
  exec wget -q -O- "$url" ;;
pg_dumpall)
  while [ $# -gt 1 ]; do
    if [ "$1" = -f ]; then echo "-- dump of $STANDIN" > "$2"; exit; fi
    shift
  done
  echo "-- dump of $STANDIN"; exit ;;
python)
  case " $* " in *" run_worker "*) exec sleep 2147483647 ;; esac
  echo "$STANDIN ran: python $*"; exit 0 ;;
esac
rm -rf /tmp/www && mkdir -p /tmp/www/_cluster
echo "$STANDIN" > /tmp/www/index.html
echo ok > /tmp/www/healthz
echo ok > /tmp/www/health
echo '{"status":"green"}' > /tmp/www/_cluster/health
for p in $STANDIN_KEEP; do
  case "$p" in */*) mkdir -p "/tmp/www/${p%/*}" ;; esac
  ln -s /tmp/www "/tmp/www/$p"
done
for port in 80 3000 5432 6432 8000 8080 9200; do httpd -p "$port" -h /tmp/www; done
exec sleep 2147483647
"#;

const STUBS: &[&str] = &[
    "pg_isready",
    "createdb",
    "psql",
    "redis-cli",
    "curl",
    "pg_dumpall",
    "python",
    "gunicorn",
];

/// The stand-in image and its tags under the profiles' image names, shared by the tests of this
/// module, which nextest runs as separate processes at once. Each test holds a shared lock on
/// `USE_LOCK` while it uses the tags; whichever finishes last (it gets that lock exclusively)
/// removes them, so the next run and other tests start clean. Building and tagging happen under
/// `SETUP_LOCK`, one test at a time. The image's tag is a digest of what it is built from, and
/// it is labelled, so a leftover of a killed run is recognised and a real image of the same
/// name is never replaced.
struct StandIns {
    lock: File,
    image: String,
}

const USE_LOCK: &str = "/tmp/pi-setup-test-standin.lock";
const SETUP_LOCK: &str = "/tmp/pi-setup-test-standin-setup.lock";
const STANDIN_LABEL: &str = "pi-setup-test.standin";

fn lock_file(path: &str) -> File {
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap()
}

impl StandIns {
    fn tag(images: &BTreeSet<String>) -> StandIns {
        let lock = lock_file(USE_LOCK);
        lock.lock_shared().unwrap();
        let setup = lock_file(SETUP_LOCK);
        setup.lock().unwrap();
        let dockerfile = format!(
            "FROM {BUSYBOX_IMAGE}\nCOPY bin/ /usr/local/bin/\nENV PATH=/usr/local/bin:/bin\n\
             LABEL {STANDIN_LABEL}=1\n\
             # sleep as PID 1 ignores SIGTERM: spare the tests the stop timeout.\n\
             STOPSIGNAL SIGKILL\nCMD [\"/usr/local/bin/standin\"]\n"
        );
        use sha2::Digest;
        let digest = hex::encode(sha2::Sha256::digest(format!(
            "{STANDIN_SCRIPT}{dockerfile}"
        )));
        let image = format!("pi-setup-test/standin:{}", &digest[..12]);
        if !docker(&["image", "inspect", &image]).status.success() {
            let dir = tempfile::tempdir().unwrap();
            let bin = dir.path().join("bin");
            std::fs::create_dir(&bin).unwrap();
            std::fs::write(bin.join("standin"), STANDIN_SCRIPT).unwrap();
            std::fs::set_permissions(bin.join("standin"), std::fs::Permissions::from_mode(0o755))
                .unwrap();
            for stub in STUBS {
                std::os::unix::fs::symlink("standin", bin.join(stub)).unwrap();
            }
            std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
            let built = docker(&["build", "-q", "-t", &image, dir.path().to_str().unwrap()]);
            assert!(built.status.success(), "{}", stderr(&built));
        }
        for name in images {
            let existing = docker(&[
                "image",
                "inspect",
                "--format",
                &format!("{{{{index .Config.Labels \"{STANDIN_LABEL}\"}}}}"),
                name,
            ]);
            // Never replace a real image a developer pulled under the same name.
            assert!(
                !existing.status.success() || stdout(&existing).trim() == "1",
                "{name} exists here and is not the test stand-in: remove it or run these tests elsewhere"
            );
            let tagged = docker(&["tag", &image, name]);
            assert!(tagged.status.success(), "{}", stderr(&tagged));
        }
        StandIns { lock, image }
    }

    /// A build context's Dockerfile: the stand-in, labelled with the profile so each profile's
    /// built images are its own.
    fn dockerfile(&self, profile: &str) -> String {
        format!("FROM {}\nLABEL profile={profile}\n", self.image)
    }
}

impl Drop for StandIns {
    fn drop(&mut self) {
        let _ = self.lock.unlock();
        if self.lock.try_lock().is_ok() {
            let tags = docker(&[
                "image",
                "inspect",
                "--format",
                "{{join .RepoTags \"\\n\"}}",
                &self.image,
            ]);
            for tag in lines(&tags) {
                docker(&["rmi", &tag]);
            }
            let _ = self.lock.unlock();
        }
    }
}

/// The images `pi-setup` built for a sandbox (`pi-setup-build/<service>:<digest>`), removed
/// after its containers are gone (declared before the sandbox, so dropped after it).
#[derive(Default)]
struct Built(Vec<String>);

impl Drop for Built {
    fn drop(&mut self) {
        for image in &self.0 {
            docker(&["rmi", image]);
        }
    }
}

/// One service or job of a shipped profile, as the checks need it.
struct Unit {
    name: String,
    job: bool,
    table: toml::Table,
}

impl Unit {
    fn str_list(&self, key: &str) -> Vec<String> {
        self.table
            .get(key)
            .and_then(toml::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `depends_on` as (name, condition).
    fn depends_on(&self) -> Vec<(String, String)> {
        let Some(list) = self.table.get("depends_on").and_then(toml::Value::as_array) else {
            return Vec::new();
        };
        list.iter()
            .map(|d| match d {
                toml::Value::String(n) => (n.clone(), "started".to_string()),
                toml::Value::Table(t) => (
                    t["name"].as_str().unwrap().to_string(),
                    t.get("condition")
                        .and_then(toml::Value::as_str)
                        .unwrap_or("started")
                        .to_string(),
                ),
                other => panic!("depends_on entry {other:?}"),
            })
            .collect()
    }

    /// `routes` or `static` entries as tables.
    fn tables(&self, key: &str) -> Vec<toml::Table> {
        self.table
            .get(key)
            .and_then(toml::Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_table().cloned()).collect())
            .unwrap_or_default()
    }
}

/// A shipped profile installed in a sandbox with the stand-ins.
/// Fields drop in order: the sandbox's containers first, then the images built, then the tags.
struct Stack {
    sb: Sandbox,
    _built: Built,
    _standins: StandIns,
    units: Vec<Unit>,
}

impl Stack {
    fn up(file: &str) -> Stack {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("profiles")
            .join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut profile: toml::Table = toml::from_str(&text).unwrap();
        let mut units = Vec::new();
        for (key, job) in [("service", false), ("job", true)] {
            for t in profile
                .get(key)
                .and_then(toml::Value::as_array)
                .into_iter()
                .flatten()
            {
                let table = t.as_table().unwrap().clone();
                let name = table["name"].as_str().unwrap().to_string();
                units.push(Unit { name, job, table });
            }
        }
        let images: BTreeSet<String> = units
            .iter()
            .filter_map(|u| u.table.get("image").and_then(toml::Value::as_str))
            .map(str::to_string)
            .collect();
        let standins = StandIns::tag(&images);
        let mut built = Built::default();
        let sb = Sandbox::new();

        // The sandbox's gateway; every unit told its name and the prefixes it keeps.
        let mut gateway = toml::Table::new();
        gateway.insert("image".into(), CADDY_IMAGE.into());
        gateway.insert("http_port".into(), i64::from(sb.http_port).into());
        gateway.insert("bind".into(), "127.0.0.1".into());
        gateway.insert("https".into(), "off".into());
        profile.insert("gateway".into(), gateway.into());
        for key in ["service", "job"] {
            let Some(list) = profile.get_mut(key).and_then(toml::Value::as_array_mut) else {
                continue;
            };
            for t in list {
                let t = t.as_table_mut().unwrap();
                let name = t["name"].as_str().unwrap().to_string();
                let keep: Vec<String> = t
                    .get("routes")
                    .and_then(toml::Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(toml::Value::as_table)
                    .filter(|r| {
                        !r.get("strip")
                            .and_then(toml::Value::as_bool)
                            .unwrap_or(false)
                    })
                    .filter_map(|r| r.get("path").and_then(toml::Value::as_str))
                    .map(|p| p.trim_matches('/').to_string())
                    .filter(|p| !p.is_empty())
                    .collect();
                let env = t
                    .entry("env")
                    .or_insert_with(|| toml::Table::new().into())
                    .as_table_mut()
                    .unwrap();
                env.insert("STANDIN".into(), name.into());
                env.insert("STANDIN_KEEP".into(), keep.join(" ").into());
            }
        }

        // Build contexts (a Dockerfile per profile, so each test builds and removes its own
        // images) and the shared env files, where the profile's comments say to put them.
        let contexts: BTreeSet<String> = units
            .iter()
            .filter_map(|u| u.table.get("build")?.get("context")?.as_str())
            .map(str::to_string)
            .collect();
        for context in &contexts {
            let dir = sb.path(context);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("Dockerfile"), standins.dockerfile(file)).unwrap();
        }
        let env_files: BTreeSet<String> =
            units.iter().flat_map(|u| u.str_list("env_files")).collect();
        for f in &env_files {
            let p = sb.path(&format!("/etc/pi-setup/secrets/{f}"));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            let mut out = File::options()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o600)
                .open(&p)
                .unwrap();
            use std::io::Write;
            writeln!(
                out,
                "SHARED_FROM={f}\nPOSTGRES_PASSWORD=pw-{file}\nSECRET_KEY=sk-{file}"
            )
            .unwrap();
        }

        let profile_file = sb.write_profile(&toml::to_string(&profile).unwrap());
        let out = sb.run(&["install", "--profile", profile_file.to_str().unwrap()]);
        assert_ok(&out);
        for u in &units {
            if u.table.contains_key("build") {
                let image = inspect(&sb.container(&u.name), "{{.Config.Image}}");
                assert!(
                    image.starts_with(&format!("pi-setup-build/{}:", u.name)),
                    "{image}"
                );
                if !built.0.contains(&image) {
                    built.0.push(image);
                }
            }
        }
        Stack {
            sb,
            _built: built,
            _standins: standins,
            units,
        }
    }

    fn get(&self, host: &str, path: &str, headers: &str) -> (u16, String) {
        http_get_path(
            self.sb.http_port,
            host,
            path,
            headers,
            Duration::from_secs(20),
        )
    }

    /// What every profile promises: one network, the names, nothing published but the
    /// gateway, services running and jobs done, start order, domains and path routes answered
    /// by the right service, static files from the gateway, env files shared, data owners,
    /// and a second apply that changes nothing and runs no job again.
    fn check_common(&self) {
        let sb = &self.sb;
        let network = format!("{}-intercontainer", sb.instance);
        for u in &self.units {
            let c = sb.container(&u.name);
            assert_eq!(
                inspect(
                    &c,
                    "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}"
                )
                .trim(),
                network,
                "{c}"
            );
            let aliases = inspect(
                &c,
                "{{range $k, $v := .NetworkSettings.Networks}}{{json $v.Aliases}}{{end}}",
            );
            assert!(
                aliases.contains(&format!("\"{}\"", u.name)),
                "{c}: not reachable by its name: {aliases}"
            );
            let ports = inspect(&c, "{{json .HostConfig.PortBindings}}");
            assert!(
                matches!(ports.as_str(), "null" | "{}"),
                "{c} publishes a port: {ports}"
            );
            if u.job {
                assert_eq!(
                    inspect(&c, "{{.State.Status}} {{.State.ExitCode}}"),
                    "exited 0",
                    "{c}"
                );
            } else {
                assert_eq!(inspect(&c, "{{.State.Status}}"), "running", "{c}");
            }
            for (dep, condition) in u.depends_on() {
                let d = sb.container(&dep);
                assert!(
                    nanos(&d, "StartedAt") < nanos(&c, "StartedAt"),
                    "{} started before {dep}, which it depends on",
                    u.name
                );
                match condition.as_str() {
                    "completed" => assert!(
                        nanos(&d, "FinishedAt") <= nanos(&c, "StartedAt"),
                        "{} started before {dep} completed",
                        u.name
                    ),
                    "healthy" => assert_eq!(inspect(&d, "{{.State.Health.Status}}"), "healthy"),
                    _ => {}
                }
            }
            // Data directories with an owner and a mode have them.
            if let Some(volumes) = u.table.get("volumes").and_then(toml::Value::as_array) {
                for v in volumes.iter().filter_map(toml::Value::as_table) {
                    let Some(owner) = v.get("owner").and_then(toml::Value::as_str) else {
                        continue;
                    };
                    let dir = sb.path(&format!(
                        "/var/vol/{}/{}",
                        u.name,
                        v["path"].as_str().unwrap()
                    ));
                    let meta = std::fs::metadata(&dir).unwrap();
                    assert_eq!(
                        format!("{}:{}", meta.uid(), meta.gid()),
                        owner,
                        "{}",
                        dir.display()
                    );
                    let mode = v["mode"].as_str().unwrap();
                    assert_eq!(
                        format!("0{:o}", meta.mode() & 0o7777),
                        mode,
                        "{}",
                        dir.display()
                    );
                }
            }
        }

        // Who answers what, through the gateway by Host (and path).
        let mut expected: BTreeMap<(String, String), String> = BTreeMap::new();
        for u in &self.units {
            if u.table.contains_key("access") {
                continue; // checked with its credentials
            }
            for d in u.str_list("domains") {
                expected.insert((d, "/".into()), u.name.clone());
            }
            for r in u.tables("routes") {
                let path = r.get("path").and_then(toml::Value::as_str).unwrap_or("/");
                let path = format!("{}/", path.trim_end_matches('/'));
                expected.insert((r["host"].as_str().unwrap().into(), path), u.name.clone());
            }
        }
        assert!(!expected.is_empty());
        for ((host, path), name) in &expected {
            assert_eq!(
                self.get(host, path, ""),
                (200, format!("{name}\n")),
                "GET {host}{path}"
            );
        }

        // Static routes: the gateway serves the service's volume directory itself.
        for u in &self.units {
            for s in u.tables("static") {
                let dir = s["dir"].as_str().unwrap();
                let file = sb.path(&format!("/var/vol/{}/{dir}/probe.txt", u.name));
                std::fs::write(&file, format!("{} {dir}\n", u.name)).unwrap();
                let path = format!(
                    "{}/probe.txt",
                    s["path"].as_str().unwrap().trim_end_matches('/')
                );
                assert_eq!(
                    self.get(s["host"].as_str().unwrap(), &path, ""),
                    (200, format!("{} {dir}\n", u.name)),
                    "static {path}"
                );
            }
        }

        // Env files: every unit that names one sees its values, never copied into the profile.
        for u in &self.units {
            for f in u.str_list("env_files") {
                let env = inspect(&sb.container(&u.name), "{{json .Config.Env}}");
                assert!(
                    env.contains(&format!("\"SHARED_FROM={f}\"")),
                    "{}: {env}",
                    u.name
                );
            }
        }

        // Nothing to do a second time: no job runs again.
        let jobs: Vec<(String, String)> = self
            .units
            .iter()
            .filter(|u| u.job)
            .map(|u| {
                let c = sb.container(&u.name);
                let started = inspect(&c, "{{.State.StartedAt}}");
                (c, started)
            })
            .collect();
        let again = sb.run(&["apply"]);
        assert_nothing_changed(&again);
        for (c, started) in jobs {
            assert_eq!(
                inspect(&c, "{{.State.StartedAt}}"),
                started,
                "{c} ran again"
            );
        }
    }

    /// `pi-setup backup`: every volume archived; `exec` and `live` services never stopped, a
    /// database's dump in its archive.
    fn check_backup(&self) {
        let sb = &self.sb;
        let running: Vec<(String, String)> = self
            .units
            .iter()
            .filter(|u| {
                u.table
                    .get("backup")
                    .and_then(|b| b.get("mode"))
                    .and_then(toml::Value::as_str)
                    .is_some_and(|m| m == "exec" || m == "live")
            })
            .map(|u| {
                let c = sb.container(&u.name);
                let started = inspect(&c, "{{.State.StartedAt}}");
                (c, started)
            })
            .collect();
        assert!(!running.is_empty());
        let out = sb.run(&["backup"]);
        assert_ok(&out);
        for (c, started) in running {
            assert_eq!(inspect(&c, "{{.State.Running}}"), "true", "{c}");
            assert_eq!(
                inspect(&c, "{{.State.StartedAt}}"),
                started,
                "{c} was stopped for its backup"
            );
        }
        // The database's dump was made inside it and archived with its volume.
        let dump = sb.path("/var/vol/db/backup/all.sql");
        assert_eq!(std::fs::read_to_string(&dump).unwrap(), "-- dump of db\n");
        let dir = sb.path("/var/backups/pi-setup/db");
        let archive = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.to_string_lossy().ends_with(".tar.zst")
                    || p.to_string_lossy().ends_with(".tar.gz")
            })
            .unwrap_or_else(|| panic!("no archive in {}", dir.display()));
        let listing = std::process::Command::new("tar")
            .arg("-tf")
            .arg(&archive)
            .arg(if archive.to_string_lossy().ends_with(".zst") {
                "--zstd"
            } else {
                "-z"
            })
            .output()
            .unwrap();
        assert!(
            stdout(&listing)
                .lines()
                .any(|l| l.trim_start_matches("./") == "backup/all.sql"),
            "{}\n{}",
            stdout(&listing),
            stderr(&listing)
        );
    }
}

#[test]
fn api_graphql_comes_up_with_its_path_routes_auth_and_maintenance_page() {
    let stack = Stack::up("api-graphql.toml");
    stack.check_common();
    let sb = &stack.sb;
    // pgAdmin behind auth, its data directory its own (uid 5050, checked above).
    assert_eq!(stack.get("pgadmin.example.com", "/", "").0, 401);
    let admin = "Authorization: Basic YWRtaW46Y2hhbmdlLW1l\r\n"; // admin:change-me
    assert_eq!(
        stack.get("pgadmin.example.com", "/", admin),
        (200, "pgadmin\n".into())
    );

    stack.check_backup();

    // The API down: its domain shows the maintenance page; the console route still answers.
    assert!(docker(&["stop", "-t", "1", &sb.container("api")])
        .status
        .success());
    let (status, body) = try_get_path(sb.http_port, "example.com", "/", "").unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("<title>Back soon</title>"), "{body}");
    assert_eq!(
        stack.get("example.com", "/console/", ""),
        (200, "graphql\n".into())
    );
}

#[test]
fn search_stack_comes_up_with_static_files_from_the_gateway_and_elasticsearch_settings() {
    let stack = Stack::up("search-stack.toml");
    stack.check_common();
    let search = stack.sb.container("search");
    // Env names with dots reach the container as written; the memory limit fits a small Pi.
    let env = inspect(&search, "{{json .Config.Env}}");
    assert!(env.contains("\"discovery.type=single-node\""), "{env}");
    assert_eq!(
        inspect(&search, "{{.HostConfig.Memory}}"),
        (1u64 << 30).to_string()
    );
    stack.check_backup();
}

#[test]
fn web_worker_comes_up_with_one_env_file_for_two_services_and_a_nightly_job() {
    let stack = Stack::up("web-worker.toml");
    stack.check_common();
    let sb = &stack.sb;
    // Web and worker run the same built image with the same secrets.
    let secret = |c: &str| {
        let env = inspect(&sb.container(c), "{{json .Config.Env}}");
        assert!(
            env.contains("\"SECRET_KEY=sk-web-worker.toml\""),
            "{c}: {env}"
        );
        inspect(&sb.container(c), "{{.Image}}")
    };
    assert_eq!(secret("web"), secret("worker"));
    // The nightly job: a systemd timer on its calendar, and it runs on demand.
    let timer = sb.path("/etc/systemd/system/pi-setup-job-nightly.timer");
    let timer =
        std::fs::read_to_string(&timer).unwrap_or_else(|e| panic!("{}: {e}", timer.display()));
    assert!(timer.contains("OnCalendar=*-*-* 04:15:00"), "{timer}");
    let out = sb.run(&["run-job", "nightly"]);
    assert_ok(&out);
    assert_eq!(
        inspect(
            &sb.container("nightly"),
            "{{.State.Status}} {{.State.ExitCode}}"
        ),
        "exited 0"
    );
    // Access is about the gateway: "-" (null) for the worker and the jobs, which have no host.
    let list: serde_json::Value =
        serde_json::from_slice(&sb.run(&["list", "--json"]).stdout).unwrap();
    let access = |name: &str| {
        let rows = list.as_array().unwrap();
        let row = rows.iter().find(|r| r["name"] == name).unwrap();
        row["access"].clone()
    };
    assert_eq!(access("web"), "public", "{list}");
    for name in ["worker", "migrate", "nightly", "db"] {
        assert!(access(name).is_null(), "{name}: {list}");
    }
    let logs = docker(&["logs", &sb.container("nightly")]);
    assert!(
        stdout(&logs).contains("nightly ran: python manage.py clearsessions"),
        "{}",
        stdout(&logs)
    );
    stack.check_backup();
}

#[test]
fn web_finance_comes_up_with_two_apps_on_one_domain_by_path() {
    let stack = Stack::up("web-finance.toml");
    stack.check_common();
    // Firefly III under /firefly sees its paths without the prefix: it has no /firefly of its
    // own (STANDIN_KEEP is empty for it), so only a stripped request finds its page.
    assert_eq!(
        stack.get("example.com", "/firefly/", ""),
        (200, "firefly\n".into())
    );
    assert_eq!(stack.get("example.com", "/", ""), (200, "django\n".into()));
    stack.check_backup();
}
