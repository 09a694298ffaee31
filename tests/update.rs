//! `pi-setup update` against a real registry (`ci/test-registry`, on `$PI_SETUP_TEST_REGISTRY`):
//! a tag pushed again moves the service; a new image that breaks its volume and fails its
//! health check is rolled back, image and volume; another service answers throughout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::{
    assert_nothing_changed, docker, exits, inspect, lines, nanos, stderr, stdout, tcp_trouble,
    try_get, Sandbox, BUSYBOX_IMAGE,
};

fn registry() -> String {
    let addr =
        std::env::var("PI_SETUP_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".to_string());
    let up = std::process::Command::new("curl")
        .args(["-fsS", &format!("http://{addr}/v2/")])
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "no registry on {addr}: run `bash ci/test-registry start` (ci/test does)"
    );
    addr
}

/// The versions of one test's app, built locally from the offline busybox image, and the
/// registry tag they are pushed under in turn. Every image and tag goes on drop, also when the
/// test fails.
struct Versions {
    /// The IDs of the images built (a pulled image keeps a digest reference after its tags go).
    built: Vec<String>,
    local: String,
    tag: String,
    rollback_repo: String,
    instance: String,
}

impl Versions {
    fn new(registry: &str, instance: &str) -> Versions {
        Versions {
            built: Vec::new(),
            local: format!("pi-setup-test/update-{instance}"),
            tag: format!("{registry}/pi-setup-test/update-{instance}:prod"),
            rollback_repo: format!("pi-setup-rollback/{instance}-*"),
            instance: instance.to_string(),
        }
    }

    /// Builds version `v`: `/version` and the page it serves say `v`; `broken` adds the file
    /// its health check refuses.
    fn build(&mut self, v: &str, broken: bool) -> String {
        self.build_with(v, if broken { "/broken" } else { "" })
    }

    /// Builds version `v` with the file `touch` in it (none if empty).
    fn build_with(&mut self, v: &str, touch: &str) -> String {
        // One step: no intermediate image to leave behind.
        let dockerfile = format!(
            "FROM {BUSYBOX_IMAGE}\nRUN echo {v} > /version && echo {v} > /www/index.html{}\n",
            if touch.is_empty() {
                String::new()
            } else {
                format!(" && touch {touch}")
            }
        );
        let reference = format!("{}:{v}", self.local);
        let mut child = std::process::Command::new("docker")
            // The label makes the image this test's own: two tests building the same text
            // would share one image ID, and one's clean-up (`rmi -f` by ID) would take the
            // other's image away mid-test.
            .args([
                "build",
                "-q",
                "--label",
                &format!("pi-setup-test.instance={}", self.instance),
                "-t",
                &reference,
                "-",
            ])
            .env("DOCKER_BUILDKIT", "0")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(dockerfile.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let id = inspect(&reference, "{{.Id}}");
        self.built.push(id.clone());
        id
    }

    /// Pushes version `v` under the tag, then points the local tag back at `running`: the
    /// registry has moved on, this machine has not (yet).
    fn push(&self, v: &str, running: &str) {
        let reference = format!("{}:{v}", self.local);
        assert!(docker(&["tag", &reference, &self.tag]).status.success());
        let push = docker(&["push", "-q", &self.tag]);
        assert!(push.status.success(), "{}", stderr(&push));
        assert!(docker(&["tag", running, &self.tag]).status.success());
    }

    /// The rollback tags of the test's containers.
    fn rollback_tags(&self) -> Vec<String> {
        let filter = format!("reference={}", self.rollback_repo);
        lines(&docker(&[
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            "--filter",
            &filter,
        ]))
    }
}

impl Drop for Versions {
    fn drop(&mut self) {
        // Dropped before the sandbox: its containers would keep the images in use.
        let filter = format!("label=pi-setup.instance={}", self.instance);
        for id in lines(&docker(&["ps", "-aq", "--filter", &filter])) {
            docker(&["rm", "-f", "-v", &id]);
        }
        let mut refs = vec![self.tag.clone()];
        refs.extend(lines(&docker(&[
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            &self.local,
        ])));
        refs.extend(self.rollback_tags());
        refs.extend(self.built.iter().cloned());
        let mut args = vec!["rmi", "-f"];
        args.extend(refs.iter().map(String::as_str));
        docker(&args);
    }
}

/// Requests to `host` through the gateway, over and over until finished; each answer noted as
/// `ok` (a 200 whose body holds `expect`), `maintenance` (the maintenance page), `reset` (the
/// connection reset before any answer), or as it was; every answer but the first two also with
/// when it came (ms after the start), to set beside the steps the test prints.
struct Traffic {
    stop: Arc<AtomicBool>,
    started: Instant,
    seen: Arc<std::sync::Mutex<Vec<(u128, String)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(port: u16, host: &'static str, expect: &'static str) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, n) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let what = match try_get(port, host) {
                    Ok((200, body)) if body.contains(expect) => "ok".to_string(),
                    Ok((503, body)) if body.contains("Back soon") => "maintenance".to_string(),
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                        "reset".to_string()
                    }
                    other => format!("{other:?}"),
                };
                n.lock()
                    .unwrap()
                    .push((started.elapsed().as_millis(), what));
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Traffic {
            stop,
            started,
            seen,
            thread: Some(thread),
        }
    }

    /// Milliseconds since the traffic started.
    fn now(&self) -> u128 {
        self.started.elapsed().as_millis()
    }

    /// Stops it; how many answers of each kind, and when each answer that was neither `ok` nor
    /// `maintenance` came.
    fn finish(
        mut self,
    ) -> (
        std::collections::BTreeMap<String, usize>,
        Vec<(u128, String)>,
    ) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let mut counts = std::collections::BTreeMap::new();
        let mut odd = Vec::new();
        for (at, w) in self.seen.lock().unwrap().iter() {
            *counts.entry(w.clone()).or_insert(0) += 1;
            if w != "ok" && w != "maintenance" {
                odd.push((*at, w.clone()));
            }
        }
        (counts, odd)
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[test]
fn a_moved_tag_is_updated_and_a_new_image_that_fails_its_health_check_is_rolled_back() {
    let registry = registry();
    let sb = Sandbox::new();
    let mut versions = Versions::new(&registry, &sb.instance);
    let v1 = versions.build("v1", false);
    let v2 = versions.build("v2", false);
    versions.build("v3", true);
    versions.push("v1", &v1);

    // Each start writes its version into the volume; a health check the broken one fails.
    let profile = sb.profile(&format!(
        "[[service]]\nname = \"app\"\nimage = \"{}\"\ndomains = [\"app.test\"]\n\
         volumes = [\"data:/data\"]\n\
         health_cmd = \"test ! -e /broken\"\nhealth_interval = \"1s\"\nhealth_retries = 2\n\
         command = [\"sh\", \"-c\", \"cat /version > /data/state; cat /version >> /data/history; trap 'kill $!; exit 0' TERM; httpd -f -p 80 -h /www & wait\"]\n\n\
         [[service]]\nname = \"other\"\nimage = \"{BUSYBOX_IMAGE}\"\ndomains = [\"other.test\"]\n",
        versions.tag
    ));
    sb.install(&profile);
    assert_eq!(sb.get("app.test"), (200, "v1\n".to_string()));
    let state = sb.path("/var/vol/app/data/state");
    let history = sb.path("/var/vol/app/data/history");
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "v1\n");

    let check = sb.run(&["update", "app", "--check"]);
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    assert_eq!(
        stdout(&check),
        "app              up to date\nEverything is up to date.\n"
    );

    // A new image under the same tag: --check sees it and changes nothing.
    versions.push("v2", &v1);
    let id_before = sb.container_id("app");
    let check = sb.run(&["update", "app", "--check"]);
    assert_eq!(check.status.code(), Some(3), "{}", stderr(&check));
    assert!(
        stdout(&check).starts_with(&format!(
            "app              would update: the registry has a newer {} (",
            versions.tag
        )),
        "{}",
        stdout(&check)
    );
    assert_eq!(sb.container_id("app"), id_before);
    assert_eq!(inspect(&versions.tag, "{{.Id}}"), v1);

    // What a killed update would have left: taken away by the next one.
    let stale = format!("pi-setup-rollback/{}-app:stale", sb.instance);
    assert!(docker(&["tag", BUSYBOX_IMAGE, &stale]).status.success());
    assert_eq!(versions.rollback_tags(), [stale]);

    let other = Traffic::start(sb.http_port, "other.test", "hello from busybox");
    let app = Traffic::start(sb.http_port, "app.test", "v");
    let mut steps = vec![format!("update to v2 from {} ms", app.now())];
    let out = sb.run(&["update", "app"]);
    steps.push(format!("to {} ms", app.now()));
    exits(&out, 0);
    assert!(
        stdout(&out).starts_with(&format!(
            "app              updated: image {} -> {}; its volume was archived to {}",
            &v1[7..19],
            &v2[7..19],
            sb.path("/var/backups/pi-setup/app/app-").display()
        )),
        "{}",
        stdout(&out)
    );
    assert_eq!(inspect(&sb.container("app"), "{{.Image}}"), v2);
    assert_eq!(sb.get("app.test"), (200, "v2\n".to_string()));
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "v2\n");
    assert_eq!(std::fs::read_to_string(&history).unwrap(), "v1\nv2\n");
    assert_eq!(versions.rollback_tags(), Vec::<String>::new());

    // A broken version: it writes to the volume, then fails its health check.
    versions.push("v3", &v2);
    steps.push(format!("update to v3 (rolled back) from {} ms", app.now()));
    let out = sb.run(&["update", "app"]);
    steps.push(format!("to {} ms", app.now()));
    exits(&out, 1);
    assert!(
        stdout(&out).starts_with(&format!(
            "app              ROLLED BACK: the new image did not come up (its health check failed); back on image {}, its volume restored from {}",
            &v2[7..19],
            sb.path("/var/backups/pi-setup/app/app-").display()
        )),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("1 service(s) not updated: app"),
        "{}",
        stderr(&out)
    );
    assert_eq!(inspect(&sb.container("app"), "{{.Image}}"), v2);
    assert_eq!(inspect(&versions.tag, "{{.Id}}"), v2);
    assert_eq!(inspect(&sb.container("app"), "{{.State.Running}}"), "true");
    assert_eq!(sb.get("app.test"), (200, "v2\n".to_string()));
    // The volume as it was before the update (v3 had written to it), then v2 started on it.
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "v2\n");
    assert_eq!(std::fs::read_to_string(&history).unwrap(), "v1\nv2\nv2\n");
    assert_eq!(versions.rollback_tags(), Vec::<String>::new());
    // The other service answered every request; the updated one answered or showed the
    // maintenance page while it was down, never an error. One exception, for the updated one
    // only: a single connection reset before any answer (1 of 794 requests, in one CI run of
    // many; not seen again in 22 runs of this test beside others, nor in 87,000 requests over
    // 17 stop-and-start cycles of a service with its traffic). Its cause is not known, so when
    // it happens the test says when, beside the update's steps, and what the gateway's kernel
    // counted; a broken drain or reload fails here by the dozen.
    let (other, other_odd) = other.finish();
    let (app, app_odd) = app.finish();
    let trouble = format!(
        "{}; {}",
        steps.join(", "),
        tcp_trouble(&sb.container("gateway"))
    );
    assert_eq!(
        other.keys().collect::<Vec<_>>(),
        ["ok"],
        "{other:?} at {other_odd:?}: {trouble}"
    );
    assert!(other["ok"] > 10, "{other:?}");
    let resets = app.get("reset").copied().unwrap_or(0);
    assert!(
        app.keys()
            .all(|k| ["maintenance", "ok", "reset"].contains(&k.as_str()))
            && app.contains_key("maintenance")
            && app.contains_key("ok")
            && resets <= 1,
        "{app:?} at {app_odd:?}: {trouble}"
    );
    if resets > 0 {
        eprintln!("app.test: a connection reset at {app_odd:?}: {trouble}");
    }

    // The next apply sees nothing to do: the tag points at what runs.
    let again = sb.install(&profile);
    assert_nothing_changed(&again);
}

#[test]
fn a_migration_job_runs_with_the_new_image_first_and_services_on_one_tag_go_back_together() {
    let registry = registry();
    let sb = Sandbox::new();
    let mut versions = Versions::new(&registry, &sb.instance);
    let v1 = versions.build("v1", false);
    let v2 = versions.build("v2", false);
    // v3 is fine for the job and web, but the worker's health check refuses it.
    versions.build_with("v3", "/broken-worker");
    versions.push("v1", &v1);
    let profile = sb.profile(&format!(
        "[[job]]\nname = \"migrate\"\nimage = \"{tag}\"\nvolumes = [\"data:/data\"]\n\
         command = [\"sh\", \"-c\", \"cat /version >> /data/history\"]\n\n\
         [[service]]\nname = \"app\"\nimage = \"{tag}\"\ndomains = [\"app.test\"]\n\
         volumes = [\"data:/data\"]\n\
         depends_on = [{{ name = \"migrate\", condition = \"completed\" }}]\n\
         command = [\"sh\", \"-c\", \"cat /version >> /data/history; trap 'kill $!; exit 0' TERM; httpd -f -p 80 -h /www & wait\"]\n\n\
         [[service]]\nname = \"worker\"\nimage = \"{tag}\"\n\
         depends_on = [{{ name = \"migrate\", condition = \"completed\" }}]\n\
         health_cmd = \"test ! -e /broken-worker\"\nhealth_interval = \"1s\"\nhealth_retries = 2\n\
         command = [\"sh\", \"-c\", \"trap 'exit 0' TERM; while :; do sleep 1; done\"]\n",
        tag = versions.tag
    ));
    sb.install(&profile);
    let jobs = sb.path("/var/vol/migrate/data/history");
    let app = sb.path("/var/vol/app/data/history");
    assert_eq!(std::fs::read_to_string(&jobs).unwrap(), "v1\n");

    // v2: the migration runs with it before web and worker move to it.
    versions.push("v2", &v1);
    let said = exits(&sb.run(&["update"]), 0);
    let (old, new) = (&v1[7..19], &v2[7..19]);
    assert!(
        said.starts_with(&format!(
            "migrate          ran again to completion with its new image: {old} -> {new}\n\
             app              updated: image {old} -> {new}; its volume was archived to "
        )) && said.contains(&format!(
            "\nworker           updated: image {old} -> {new}\n"
        )),
        "{said}"
    );
    assert_eq!(std::fs::read_to_string(&jobs).unwrap(), "v1\nv2\n");
    assert_eq!(std::fs::read_to_string(&app).unwrap(), "v1\nv2\n");
    let (ran, started) = (
        nanos(&sb.container("migrate"), "FinishedAt"),
        nanos(&sb.container("app"), "StartedAt"),
    );
    assert!(
        ran < started,
        "the job finished at {ran}, app started at {started}"
    );
    assert_eq!(sb.get("app.test"), (200, "v2\n".to_string()));

    // v3: the worker does not come up with it, and takes app back with it (the job ran).
    versions.push("v3", &v2);
    let said = exits(&sb.run(&["update"]), 1);
    assert!(
        said.contains(&format!(
            "\napp              ROLLED BACK: worker runs the same image {} and did not come up with it; back on image {}, its volume restored from ",
            versions.tag,
            &v2[7..19]
        )),
        "{said}"
    );
    // Its health check failed, or (on a busy machine) had not passed in time.
    let worker = said
        .lines()
        .find(|l| l.starts_with("worker "))
        .unwrap_or_default();
    assert!(
        worker.starts_with("worker           ROLLED BACK: the new image did not come up (")
            && worker.contains(&format!("); back on image {}", &v2[7..19])),
        "{said}"
    );
    for c in ["app", "worker"] {
        assert_eq!(inspect(&sb.container(c), "{{.Image}}"), v2, "{c}: {said}");
        assert_eq!(
            inspect(&sb.container(c), "{{.State.Running}}"),
            "true",
            "{c}: {said}"
        );
    }
    assert_eq!(inspect(&versions.tag, "{{.Id}}"), v2, "{said}");
    assert_eq!(std::fs::read_to_string(&jobs).unwrap(), "v1\nv2\nv3\n");
    // app's volume as it was before v3 wrote to it, then v2 started on it again.
    assert_eq!(std::fs::read_to_string(&app).unwrap(), "v1\nv2\nv2\n");
    assert_eq!(sb.get("app.test"), (200, "v2\n".to_string()));
    assert_eq!(versions.rollback_tags(), Vec::<String>::new());

    // A kill in the middle of a rollback (to v1, say): the tag already back on v1, app and
    // worker still on v2, app's volume written since. `heal` (every minute) finishes it from
    // the update's journal: both on v1, app's volume from its archive.
    let archive = said
        .split("its volume restored from ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .trim_end_matches(';')
        .to_string();
    assert!(docker(&["tag", &v1, &versions.tag]).status.success());
    let mut moving = Vec::new();
    for c in ["app", "worker"] {
        let kept = format!("pi-setup-rollback/{}-{c}:killed", sb.instance);
        assert!(docker(&["tag", &v1, &kept]).status.success());
        moving.push(format!(
            "{{\"service\":\"{c}\",\"container\":\"{}\",\"image\":\"{}\",\"kept\":\"{kept}\",\"built\":false,\"archive\":{}}}",
            sb.container(c),
            versions.tag,
            if c == "app" { format!("\"{archive}\"") } else { "null".into() }
        ));
    }
    std::fs::write(&app, "written by v2 after the archive\n").unwrap();
    let journal = sb.path("/var/lib/pi-setup/update-journal.json");
    std::fs::write(&journal, format!("{{\"moving\":[{}]}}", moving.join(","))).unwrap();
    let out = sb.run(&["heal"]);
    exits(&out, 0);
    assert!(
        stdout(&out)
            .contains("app: an update was interrupted; putting it back on its image from before")
            && stdout(&out).contains("worker: an update was interrupted"),
        "{}",
        stdout(&out)
    );
    for c in ["app", "worker"] {
        assert_eq!(inspect(&sb.container(c), "{{.Image}}"), v1, "{c}");
        assert_eq!(
            inspect(&sb.container(c), "{{.State.Running}}"),
            "true",
            "{c}"
        );
    }
    assert_eq!(std::fs::read_to_string(&app).unwrap(), "v1\nv2\nv1\n");
    assert!(!journal.exists());
    assert_eq!(versions.rollback_tags(), Vec::<String>::new());
    assert_eq!(sb.get("app.test"), (200, "v1\n".to_string()));
}
