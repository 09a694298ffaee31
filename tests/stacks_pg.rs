//! A real database stack: PostgreSQL (the offline image `ci/test-images` debootstraps) behind a
//! migration job and an app that wait for it; the nightly `exec` dump restores into a fresh
//! cluster.

use std::process::Command;
use std::time::Duration;

use crate::harness::{
    assert_nothing_changed, assert_ok, docker, inspect, lines, nanos, stderr, stdout, wait_until,
    Sandbox, BUSYBOX_IMAGE,
};

/// The PostgreSQL test image: `pi-setup-test/postgres:<major of the host's Debian>`.
fn postgres_image() -> String {
    let out = docker(&[
        "images",
        "pi-setup-test/postgres",
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ]);
    let image = lines(&out).into_iter().next();
    image.expect(
        "test image pi-setup-test/postgres is missing: run `bash ci/test-images` (or `bash ci/test`)",
    )
}

/// `psql` in container `container` as postgres, one value per row.
fn psql(container: &str, db: &str, sql: &str) -> String {
    let out = docker(&[
        "exec",
        container,
        "psql",
        "-U",
        "postgres",
        "-d",
        db,
        "-v",
        "ON_ERROR_STOP=1",
        "-tAc",
        sql,
    ]);
    assert!(
        out.status.success(),
        "psql {sql:?} in {container}: {}",
        stderr(&out)
    );
    stdout(&out).trim().to_string()
}

#[test]
fn a_migration_job_waits_for_a_healthy_database_and_its_exec_dump_restores_into_a_fresh_one() {
    let pg = postgres_image();
    let sb = Sandbox::new();
    // The job does not retry: `pg_isready -t 0` fails it at once unless the database already
    // accepts connections when it starts, which (initdb takes seconds) only the wait for a
    // healthy db makes sure of.
    let migrate = "pg_isready -h db -t 0 || exit 9; \
                   psql -h db -U postgres -v ON_ERROR_STOP=1 -c 'CREATE DATABASE app' && \
                   psql -h db -U postgres -d app -v ON_ERROR_STOP=1 \
                   -c 'CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)'";
    let profile = sb.profile(&format!(
        "[[service]]\nname = \"db\"\nimage = \"{pg}\"\nlayout = \"postgres\"\n\
         health_cmd = [\"pg_isready\", \"-h\", \"127.0.0.1\", \"-U\", \"postgres\"]\n\
         health_interval = \"1s\"\nhealth_start_period = \"60s\"\n\
         backup = {{ mode = \"exec\", exec = [\"pg_dump -U postgres --create -f /backup/app.sql app\"] }}\n\n\
         [[job]]\nname = \"migrate\"\nimage = \"{pg}\"\n\
         command = [\"sh\", \"-c\", \"{migrate}\"]\n\
         depends_on = [{{ name = \"db\", condition = \"healthy\" }}]\ntimeout = \"2m\"\n\n\
         [[service]]\nname = \"app\"\nimage = \"{BUSYBOX_IMAGE}\"\ndomains = [\"app.test\"]\n\
         depends_on = [{{ name = \"migrate\", condition = \"completed\" }}, {{ name = \"db\", condition = \"healthy\" }}]\n"
    ));
    let out = sb.install(&profile);
    assert!(
        stdout(&out).contains(
            "\n  migrate          completed  a job (runs to completion; `pi-setup run-job migrate` runs it again)\n"
        ),
        "{}",
        stdout(&out)
    );
    let (db, job, app) = (
        sb.container("db"),
        sb.container("migrate"),
        sb.container("app"),
    );

    // Start order: db, then the job (once db was healthy: it passed `pg_isready -t 0`), then
    // the app, after the job had finished.
    assert_eq!(inspect(&job, "{{.State.ExitCode}}"), "0");
    assert!(nanos(&db, "StartedAt") < nanos(&job, "StartedAt"));
    assert!(nanos(&job, "FinishedAt") <= nanos(&app, "StartedAt"));
    assert_eq!(inspect(&db, "{{.State.Health.Status}}"), "healthy");
    assert_eq!(
        sb.get("app.test"),
        (200, "hello from busybox\n".to_string())
    );

    // The migration made the table; the cluster lives in the volume, owned by postgres (999).
    assert_eq!(
        psql(&db, "app", "SELECT to_regclass('public.notes') IS NOT NULL"),
        "t"
    );
    assert!(sb.path("/var/vol/db/data/PG_VERSION").is_file());
    psql(
        &db,
        "app",
        "INSERT INTO notes (body) VALUES ('first'), ('second'), ('third')",
    );

    // Nothing changed: the job is not run again (it would fail: the database exists).
    let job_started = inspect(&job, "{{.State.StartedAt}}");
    let again = sb.run(&["apply"]);
    assert_nothing_changed(&again);
    assert_eq!(inspect(&job, "{{.State.StartedAt}}"), job_started);

    // The nightly backup runs the dump inside the running db, then archives the volume.
    let out = sb.run(&["backup", "db"]);
    assert_ok(&out);
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.starts_with("db ") && l.contains(" ok ")),
        "{}",
        stdout(&out)
    );
    assert_eq!(inspect(&db, "{{.State.Running}}"), "true");
    let dir = sb.path("/var/backups/pi-setup/db");
    let mut archives: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .collect();
    assert_eq!(archives.len(), 1, "{archives:?}");
    let archive = archives.pop().unwrap();
    let restored = sb.path("/srv/restored");
    std::fs::create_dir_all(&restored).unwrap();
    let untar = Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(&restored)
        .arg("backup/app.sql")
        .output()
        .unwrap();
    assert!(untar.status.success(), "{}", stderr(&untar));

    // A fresh cluster (a container of this instance, so the sandbox removes it) gets the dump.
    let fresh = sb.container("fresh");
    let label = format!("pi-setup.instance={}", sb.instance);
    let mount = format!("{}:/dump:ro", restored.join("backup").display());
    let run = docker(&[
        "run", "-d", "--name", &fresh, "--label", &label, "-v", &mount, &pg,
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        wait_until(Duration::from_mins(1), || docker(&[
            "exec",
            &fresh,
            "pg_isready",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres"
        ])
        .status
        .success()),
        "the fresh cluster did not come up: {}",
        stderr(&docker(&["logs", &fresh]))
    );
    let load = docker(&[
        "exec",
        &fresh,
        "psql",
        "-U",
        "postgres",
        "-v",
        "ON_ERROR_STOP=1",
        "-q",
        "-f",
        "/dump/app.sql",
    ]);
    assert!(load.status.success(), "{}", stderr(&load));
    assert_eq!(
        psql(
            &fresh,
            "app",
            "SELECT string_agg(body, ',' ORDER BY id) FROM notes"
        ),
        "first,second,third"
    );
}
