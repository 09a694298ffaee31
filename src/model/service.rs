//! One service: a `[[service]]` table or a service file, checked field by field.

use std::collections::{BTreeMap, BTreeSet};

use toml::Spanned;

use crate::input::layout::{Layout, Layouts};
use crate::input::raw::{RawDependency, RawService, RawVolume, RawVolumeTable, StringOrList};
use crate::input::source::{ConfigError, Source};
use crate::model::names::{Domain, Name};
use crate::model::values::{
    check_health_interval, env_name_ok, parse_bytes, parse_duration, parse_duration_ms,
    parse_publish, parse_volume, MAX_MEMORY, MIN_MEMORY,
};
use crate::model::Checker;
use crate::model::{HostFacts, GATEWAY, RESERVED_NAMES};

/// A bind mount of `/var/vol/<service>/<sub>` at `target` inside the container.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Mount {
    pub(crate) sub: String,
    pub(crate) target: String,
    pub(crate) read_only: bool,
    /// Owner (`uid`, `gid`) and mode the directory is kept at, when the volume says.
    #[serde(skip)]
    pub(crate) owner: Option<(u32, u32)>,
    #[serde(skip)]
    pub(crate) mode: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Restart {
    No,
    Always,
    UnlessStopped,
    OnFailure,
}

/// Where the images pi-setup builds are kept: `pi-setup-build/<service>:<digest of the context>`.
pub(crate) const BUILT_IMAGE_REPO: &str = "pi-setup-build";

/// `build`: a context directory on the host and the Dockerfile in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Build {
    /// Absolute, as in the definition (moved under `--root` where it is read).
    pub(crate) context: String,
    /// Relative to the context.
    pub(crate) dockerfile: String,
}

/// What a service waits for before it is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Condition {
    /// The dependency's container was started (it is started first).
    Started,
    /// Its health check passed.
    Healthy,
    /// It is a job, and it ran to completion (exit code 0).
    Completed,
}

/// One entry of `depends_on`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dependency {
    pub(crate) name: Name,
    pub(crate) condition: Condition,
    /// Where it is written, for the checks that need every service (unknown name, cycle).
    pub(crate) span: std::ops::Range<usize>,
}

/// Requests for `host` whose path is `path` or below it go to this service on `port`; with
/// `strip`, without the prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    pub(crate) host: Domain,
    /// `/` or `/a/b` (no trailing slash).
    pub(crate) path: String,
    pub(crate) port: u16,
    pub(crate) strip: bool,
    pub(crate) span: std::ops::Range<usize>,
}

/// Files the gateway serves itself from `/var/vol/<service>/<dir>`, read-only, for `host`
/// under `path` (the prefix is not part of the file's path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StaticRoute {
    pub(crate) host: Domain,
    pub(crate) path: String,
    pub(crate) dir: String,
    pub(crate) span: std::ops::Range<usize>,
}

/// `/var/vol/<service>/<sub>` of another service, mounted read-only at `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ForeignMount {
    pub(crate) service: Name,
    pub(crate) sub: String,
    pub(crate) target: String,
    pub(crate) span: std::ops::Range<usize>,
}

/// Who may reach a service through the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Access {
    Public,
    /// Only clients from private address ranges.
    Lan,
    /// HTTP basic auth; the hash is bcrypt.
    Auth {
        user: String,
        hash: String,
    },
}

impl Access {
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::Lan => "lan",
            Access::Auth { .. } => "auth",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Health {
    /// Shell form (`CMD-SHELL`); empty when `exec` is set.
    pub(crate) cmd: String,
    /// Exec form (`CMD`), run without a shell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) exec: Option<Vec<String>>,
    /// Milliseconds. Durations go into the spec's hash under their old names, in whole
    /// seconds when they are whole seconds (as they always were before milliseconds were
    /// allowed), so a container made then is not recreated for nothing.
    #[serde(rename = "interval_secs", serialize_with = "secs_or_ms")]
    pub(crate) interval_ms: u64,
    // Left out of the spec's hash when not set, so adding them recreated no container.
    #[serde(
        rename = "timeout_secs",
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_secs_or_ms"
    )]
    pub(crate) timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) retries: Option<u32>,
    #[serde(
        rename = "start_period_secs",
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_secs_or_ms"
    )]
    pub(crate) start_period_ms: Option<u64>,
}

/// Whole seconds as a number; anything finer as a string like `"1500ms"`.
#[allow(clippy::trivially_copy_pass_by_ref)] // serde's serialize_with passes the field by reference
fn secs_or_ms<S: serde::Serializer>(ms: &u64, s: S) -> Result<S::Ok, S::Error> {
    if ms.is_multiple_of(1000) {
        s.serialize_u64(ms / 1000)
    } else {
        s.serialize_str(&format!("{ms}ms"))
    }
}

#[allow(clippy::ref_option)] // serde's serialize_with passes the field by reference
fn opt_secs_or_ms<S: serde::Serializer>(ms: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => secs_or_ms(ms, s),
        None => s.serialize_none(),
    }
}

/// A host port a service publishes itself (explicitly asked for in its definition).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Publish {
    pub(crate) host_ip: String,
    pub(crate) host_port: u16,
    pub(crate) container_port: u16,
}

/// How `pi-setup backup` keeps a service's directory consistent while archiving it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BackupMode {
    /// Stop the container for the time of its own archive, start it right after (also on error).
    Stop,
    /// Archive while it runs.
    Live,
    /// Run these shell commands inside the running container (e.g. a database dump into its
    /// volume), then archive live.
    Exec(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Service {
    pub(crate) name: Name,
    pub(crate) image: String,
    pub(crate) domains: Vec<Domain>,
    /// Where each of `domains` is written, for messages about it.
    pub(crate) domain_spans: Vec<std::ops::Range<usize>>,
    pub(crate) port: u16,
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) mounts: Vec<Mount>,
    pub(crate) layout: Layout,
    pub(crate) restart: Restart,
    pub(crate) command: Option<Vec<String>>,
    pub(crate) access: Access,
    pub(crate) memory: Option<i64>,
    pub(crate) nano_cpus: Option<i64>,
    pub(crate) health: Option<Health>,
    /// `uid[:gid]` or a user name; None: the image's.
    pub(crate) user: Option<String>,
    pub(crate) depends_on: Vec<Dependency>,
    /// Its image is built from this context rather than pulled.
    pub(crate) build: Option<Build>,
    /// Set for a `[[job]]`: how long it may run.
    pub(crate) job: Option<std::time::Duration>,
    /// For a job: the systemd calendar it also runs on.
    pub(crate) schedule: Option<String>,
    /// Explicit routes (the `domains` are routes at `/` on `port` too, see `all_routes`).
    pub(crate) routes: Vec<Route>,
    pub(crate) statics: Vec<StaticRoute>,
    /// Other services' directories mounted read-only here (the services are checked to
    /// exist by `model::build`).
    pub(crate) foreign_mounts: Vec<ForeignMount>,
    /// Shared secrets files, relative to `/etc/pi-setup/secrets/`, with where each is named
    /// (read by `input`, which reports problems there).
    pub(crate) env_files: Vec<(String, std::ops::Range<usize>)>,
    pub(crate) publish: Vec<Publish>,
    pub(crate) backup: BackupMode,
    /// From `/etc/pi-setup/secrets/<name>.env` (filled by `config`); never printed.
    pub(crate) secret_env: BTreeMap<String, String>,
    /// Where it was defined, for messages.
    pub(crate) origin: String,
}

/// Checks an image reference: `[registry[:port]/]repo[:tag][@digest]`, repository lower case.
pub(super) fn image_ref(c: &mut Checker, i: &Spanned<String>) -> String {
    let v = i.get_ref();
    let problem = if v.trim().is_empty() {
        Some("image reference is empty".to_string())
    } else if v.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
        Some(format!("image reference {v:?} contains white space"))
    } else {
        let without_digest = v.split('@').next().unwrap_or("");
        // The tag is what follows the last ':' after the last '/'.
        let last = without_digest.rsplit('/').next().unwrap_or("");
        let repo_len =
            without_digest.len() - last.len() + last.split(':').next().unwrap_or("").len();
        let repo = &without_digest[..repo_len];
        let path = repo.split_once('/').map_or(repo, |(first, rest)| {
            if first.contains('.') || first.contains(':') || first == "localhost" {
                rest
            } else {
                repo
            }
        });
        if path.is_empty() || path.chars().any(|ch| ch.is_ascii_uppercase()) {
            Some(format!(
                "image reference {v:?}: the repository must be lower case and not empty"
            ))
        } else {
            None
        }
    };
    if let Some(p) = problem {
        c.at(i, p);
    }
    v.clone()
}

pub(super) fn service(
    src: &Source,
    r: RawService,
    layouts: &Layouts,
    host: &HostFacts,
    is_job: bool,
) -> Result<Service, Vec<ConfigError>> {
    let mut c = Checker {
        src,
        errors: Vec::new(),
    };
    let job = job_settings(&mut c, &r, is_job);
    let schedule = r.schedule.as_ref().and_then(|s| {
        let v = s.get_ref();
        if !is_job {
            c.at(
                s,
                "schedule is for jobs ([[job]]); the backup's is backup.schedule".into(),
            );
            None
        } else if v.trim().is_empty() || v.chars().any(char::is_control) {
            c.at(
                s,
                format!("schedule {v:?} must be a systemd OnCalendar= expression"),
            );
            None
        } else if let Some(why) = (host.calendar_error)(v) {
            c.at(
                s,
                format!("schedule {v:?} is not a systemd OnCalendar= expression: {why}"),
            );
            None
        } else {
            Some(v.clone())
        }
    });
    let name = match Name::parse(r.name.get_ref()) {
        Ok(n) if RESERVED_NAMES.contains(&n.as_str()) => {
            c.at(
                &r.name,
                format!("service name '{n}' is reserved for pi-setup's own use"),
            );
            n
        }
        Ok(n) => n,
        Err(why) => {
            c.at(
                &r.name,
                format!("invalid service name {:?}: {why}", r.name.get_ref()),
            );
            Name("invalid".into())
        }
    };
    let build = r.build.as_ref().and_then(|b| build_settings(&mut c, b));
    let image = if build.is_some() {
        if let Some(i) = &r.image {
            c.at(i, "give image or build, not both".into());
        }
        // The tag gets the context's digest once it is read (`reconcile`).
        format!("{BUILT_IMAGE_REPO}/{}", r.name.get_ref())
    } else if let Some(i) = &r.image {
        image_ref(&mut c, i)
    } else {
        c.at(
            &r.name,
            format!(
                "service '{}' has no image: set image = \"repo:tag\"",
                r.name.get_ref()
            ),
        );
        String::new()
    };
    let (mut domains, mut domain_spans) = (Vec::new(), Vec::new());
    let mut seen = BTreeSet::new();
    for d in &r.domains {
        match Domain::parse(d.get_ref()) {
            Ok(dom) => {
                if !seen.insert(dom.clone()) {
                    c.at(d, format!("domain '{dom}' is listed twice"));
                }
                domains.push(dom);
                domain_spans.push(d.span());
            }
            Err(why) => c.at(d, format!("invalid domain {:?}: {why}", d.get_ref())),
        }
    }
    let port = r.port.as_ref().map_or(80, |p| c.port(p, "port"));
    let mut env = BTreeMap::new();
    for (k, v) in &r.env {
        if !env_name_ok(k) {
            c.at(v, format!("invalid environment variable name {k:?}"));
        }
        if v.get_ref().contains('\0') {
            // Docker refuses it, and echoes the value in its error: say where, never what
            // (the line itself would show the value too).
            c.hidden_at(
                v,
                format!("env {k}: the value contains a NUL byte, which Docker refuses (the value is not shown)"),
            );
        }
        env.insert(k.clone(), v.get_ref().clone());
    }
    let layout = match &r.layout {
        None => layouts.get("default").cloned().unwrap_or_default(),
        Some(l) => match layouts.get(l.get_ref()) {
            Some(found) if l.get_ref() != GATEWAY => found.clone(),
            _ => {
                c.at(
                    l,
                    format!(
                        "unknown layout {:?}; known: {}",
                        l.get_ref(),
                        layouts.names().join(", ")
                    ),
                );
                Layout::default()
            }
        },
    };
    let mut mounts: Vec<Mount> = layout.mounts();
    for v in &r.volumes {
        let parsed = match v.get_ref() {
            RawVolume::Short(s) => {
                parse_volume(s).map_err(|why| format!("invalid volume {s:?}: {why}"))
            }
            RawVolume::Table(t) => volume_table(t),
        };
        match parsed {
            Ok(m) => {
                if mounts.iter().any(|o| o.target == m.target) {
                    c.at(v, format!("two volumes are mounted at {}", m.target));
                }
                mounts.push(m);
            }
            Err(why) => c.at(v, why),
        }
    }
    let restart = match r.restart.as_ref().map(|v| (v, v.get_ref().as_str())) {
        None | Some((_, "unless-stopped")) => Restart::UnlessStopped,
        Some((_, "always")) => Restart::Always,
        Some((_, "no")) => Restart::No,
        Some((_, "on-failure")) => Restart::OnFailure,
        Some((v, other)) => {
            c.at(
                v,
                format!("restart {other:?} is not one of no, always, unless-stopped, on-failure"),
            );
            Restart::UnlessStopped
        }
    };
    let access = access(
        &mut c,
        &r,
        domains.is_empty() && r.routes.is_empty() && r.statics.is_empty(),
    );
    let (memory, nano_cpus) = limits(&mut c, &r, host);
    let health = health(&mut c, &r);
    let depends_on = dependencies(&mut c, &r, &name);
    let (routes, statics) = routes(&mut c, &r, port, &domains);
    let foreign_mounts = foreign_mounts(&mut c, &r, &name, &mounts);
    let env_files = env_files(&mut c, &r);
    let user = user(&mut c, &r);
    let mut publish = Vec::new();
    for p in &r.publish {
        match parse_publish(p.get_ref()) {
            Ok(pb) => publish.push(pb),
            Err(why) => c.at(p, format!("invalid publish {:?}: {why}", p.get_ref())),
        }
    }
    let backup = backup_mode(&mut c, &r, mounts.is_empty());
    if c.errors.is_empty() {
        Ok(Service {
            name,
            image,
            domains,
            domain_spans,
            port,
            env,
            mounts,
            layout,
            restart,
            command: r.command,
            access,
            memory,
            nano_cpus,
            health,
            user,
            depends_on,
            build,
            job,
            schedule,
            routes,
            statics,
            foreign_mounts,
            env_files,
            publish,
            backup,
            secret_env: BTreeMap::new(),
            origin: src.origin.clone(),
        })
    } else {
        Err(c.errors)
    }
}

/// `access`, and the auth fields that go with it (both rendered into the gateway's config).
fn access(c: &mut Checker, r: &RawService, no_domains: bool) -> Access {
    let access = match r.access.as_ref().map(|a| (a, a.get_ref().as_str())) {
        None | Some((_, "public")) => Access::Public,
        Some((_, "lan")) => Access::Lan,
        Some((a, "auth")) => {
            if let (Some(u), Some(h)) = (&r.auth_user, &r.auth_hash) {
                // Both go into the gateway's config verbatim: nothing that could end a token.
                let user = u.get_ref();
                let user_ok = !user.is_empty()
                    && user.len() <= 64
                    && user
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || "._-@".contains(ch));
                if !user_ok {
                    c.at(
                        u,
                        format!("auth_user {user:?} must be 1-64 of A-Z a-z 0-9 . _ - @"),
                    );
                }
                let hash = h.get_ref();
                let hash_ok = hash.len() == 60
                    && hash.starts_with("$2")
                    && hash
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || "$./".contains(ch));
                if !hash_ok {
                    c.at(h, "auth_hash must be a bcrypt hash ($2b$...); add-service --auth-password-file makes one".into());
                }
                Access::Auth {
                    user: u.get_ref().clone(),
                    hash: h.get_ref().clone(),
                }
            } else {
                c.at(a, "access \"auth\" needs auth_user and auth_hash".into());
                Access::Public
            }
        }
        Some((a, other)) => {
            c.at(
                a,
                format!("access {other:?} is not one of public, lan, auth"),
            );
            Access::Public
        }
    };
    if !matches!(access, Access::Auth { .. }) {
        for f in [&r.auth_user, &r.auth_hash].into_iter().flatten() {
            c.at(
                f,
                "auth_user/auth_hash are only used with access = \"auth\"".into(),
            );
        }
    }
    if (access != Access::Public) && no_domains {
        if let Some(a) = &r.access {
            c.at(
                a,
                "access only applies to services with domains (it is enforced at the gateway)"
                    .into(),
            );
        }
    }
    access
}

/// `memory` and `cpus`, in the units Docker takes (bytes, billionths of a CPU).
fn limits(c: &mut Checker, r: &RawService, host: &HostFacts) -> (Option<i64>, Option<i64>) {
    let memory = r
        .memory
        .as_ref()
        .and_then(|m| match parse_bytes(m.get_ref()) {
            // Docker refuses less than 6 MiB.
            Some(b) if (MIN_MEMORY..=MAX_MEMORY).contains(&b) => Some(b),
            Some(_) => {
                c.at(
                    m,
                    format!("memory {:?} is out of range: 6m to 1024g", m.get_ref()),
                );
                None
            }
            None => {
                c.at(
                    m,
                    format!(
                        "memory {:?} must be bytes or a size like 512m or 2g",
                        m.get_ref()
                    ),
                );
                None
            }
        });
    let nano_cpus = r.cpus.as_ref().and_then(|n| {
        // Docker refuses less than 0.01 CPU and more than the host has, at container start:
        // a definition it would refuse is refused here, where the message can say where.
        let v = n.get_ref().as_f64();
        if (0.01..=host.cpus as f64).contains(&v) {
            Some((v * 1e9).round() as i64)
        } else {
            c.at(
                n,
                format!(
                    "cpus {v} is out of range: 0.01 to {} (the CPUs this host has)",
                    host.cpus
                ),
            );
            None
        }
    });
    (memory, nano_cpus)
}

/// `health_cmd` (shell or exec form), `health_interval`, `health_timeout`, `health_retries`,
/// `health_start_period`.
fn health(c: &mut Checker, r: &RawService) -> Option<Health> {
    let Some(cmd) = &r.health_cmd else {
        for (field, v) in [
            ("health_interval", &r.health_interval),
            ("health_timeout", &r.health_timeout),
            ("health_start_period", &r.health_start_period),
        ] {
            if let Some(v) = v {
                c.at(v, format!("{field} needs health_cmd"));
            }
        }
        if let Some(v) = &r.health_retries {
            c.at(v, "health_retries needs health_cmd".into());
        }
        return None;
    };
    let (shell, exec) = match cmd.get_ref() {
        StringOrList::String(s) => (s.clone(), None),
        StringOrList::List(l) => (String::new(), Some(l.clone())),
    };
    let words: Vec<&String> = exec
        .iter()
        .flatten()
        .chain(std::iter::once(&shell))
        .collect();
    if shell.trim().is_empty()
        && exec
            .as_ref()
            .is_none_or(|e| e.first().is_none_or(|w| w.trim().is_empty()))
    {
        c.at(cmd, "health_cmd must not be empty".into());
    }
    if words.iter().any(|w| w.contains('\0')) {
        c.at(
            cmd,
            "health_cmd contains a NUL byte, which Docker refuses".into(),
        );
    }
    let interval_ms = match &r.health_interval {
        None => 30_000,
        Some(i) => check_health_interval(i.get_ref()).unwrap_or_else(|why| {
            c.at(i, why);
            30_000
        }),
    };
    let timeout_ms = r.health_timeout.as_ref().and_then(|t| {
        check_health_interval(t.get_ref())
            .map_err(|why| c.at(t, why.replace("health_interval", "health_timeout")))
            .ok()
    });
    let start_period_ms = r.health_start_period.as_ref().and_then(|t| {
        match parse_duration_ms(t.get_ref()) {
            Some(ms) if ms <= crate::model::values::MAX_HEALTH_INTERVAL_SECS * 1000 => Some(ms),
            _ => {
                c.at(
                    t,
                    format!(
                        "health_start_period {:?} must be a duration from 0s to 24h, like 60s or 2m",
                        t.get_ref()
                    ),
                );
                None
            }
        }
    });
    let retries = r
        .health_retries
        .as_ref()
        .and_then(|n| match u32::try_from(*n.get_ref()) {
            Ok(v) if (1..=100).contains(&v) => Some(v),
            _ => {
                c.at(
                    n,
                    format!("health_retries {} is out of range: 1 to 100", n.get_ref()),
                );
                None
            }
        });
    Some(Health {
        cmd: shell,
        exec,
        interval_ms,
        timeout_ms,
        retries,
        start_period_ms,
    })
}

/// `backup.mode` and `backup.exec`; the mode defaults to `stop` when anything is mounted.
fn backup_mode(c: &mut Checker, r: &RawService, nothing_mounted: bool) -> BackupMode {
    let backup = match r
        .backup
        .as_ref()
        .and_then(|b| b.mode.as_ref().map(|m| (b, m, m.get_ref().as_str())))
    {
        // Default: stop while archiving if there is anything mounted to keep consistent.
        None if nothing_mounted => BackupMode::Live,
        None | Some((_, _, "stop")) => BackupMode::Stop,
        Some((_, _, "live")) => BackupMode::Live,
        Some((b, m, "exec")) => {
            if b.exec.is_empty() {
                c.at(
                    m,
                    "backup mode \"exec\" needs exec = [\"command\", ...]".into(),
                );
            }
            BackupMode::Exec(b.exec.iter().map(|e| e.get_ref().clone()).collect())
        }
        Some((_, m, other)) => {
            c.at(
                m,
                format!("backup mode {other:?} is not one of stop, live, exec"),
            );
            BackupMode::Stop
        }
    };
    if r.command.iter().flatten().any(|a| a.contains('\0')) {
        c.at(
            &r.name,
            format!(
                "service '{}': command contains a NUL byte, which Docker refuses",
                r.name.get_ref()
            ),
        );
    }
    for e in r.backup.iter().flat_map(|b| &b.exec) {
        if e.get_ref().contains('\0') {
            c.at(
                e,
                "backup exec command contains a NUL byte, which Docker refuses".into(),
            );
        }
    }
    if let Some(b) = &r.backup {
        if !matches!(backup, BackupMode::Exec(_)) {
            if let Some(e) = b.exec.first() {
                c.at(
                    e,
                    "backup exec commands are only run with mode = \"exec\"".into(),
                );
            }
        }
    }
    backup
}

/// `depends_on`: names, or tables with a condition. Whether each name exists, and cycles, are
/// checked once every service is known (`model::build`).
fn dependencies(c: &mut Checker, r: &RawService, me: &Name) -> Vec<Dependency> {
    let mut out: Vec<Dependency> = Vec::new();
    for d in &r.depends_on {
        let (name, condition) = match d.get_ref() {
            RawDependency::Name(n) => (n, None),
            RawDependency::Table(t) => (&t.name, t.condition.as_deref()),
        };
        let condition = match condition {
            None | Some("started") => Condition::Started,
            Some("healthy") => Condition::Healthy,
            Some("completed") => Condition::Completed,
            Some(other) => {
                c.at(
                    d,
                    format!(
                        "depends_on condition {other:?} is not one of started, healthy, completed"
                    ),
                );
                continue;
            }
        };
        let name = match Name::parse(name) {
            Ok(n) => n,
            Err(why) => {
                c.at(d, format!("depends_on {name:?}: {why}"));
                continue;
            }
        };
        if &name == me {
            c.at(d, format!("service '{me}' cannot depend on itself"));
        } else if out.iter().any(|o| o.name == name) {
            c.at(d, format!("depends_on lists '{name}' twice"));
        } else {
            out.push(Dependency {
                name,
                condition,
                span: d.span(),
            });
        }
    }
    out
}

/// A volume written as a table: the short form's checks, plus owner and mode.
fn volume_table(t: &RawVolumeTable) -> Result<Mount, String> {
    let short = format!(
        "{}:{}{}",
        t.path,
        t.target,
        if t.read_only { ":ro" } else { "" }
    );
    let mut m = parse_volume(&short).map_err(|why| format!("invalid volume {short:?}: {why}"))?;
    if let Some(o) = &t.owner {
        let owner = o
            .split_once(':')
            .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)));
        m.owner = Some(owner.ok_or_else(|| {
            format!(
                "volume {:?}: owner {o:?} must be numeric uid:gid, like \"1000:1000\"",
                t.path
            )
        })?);
    }
    if let Some(mode) = &t.mode {
        m.mode = Some(
            u32::from_str_radix(mode, 8)
                .ok()
                .filter(|v| *v <= 0o7777)
                .ok_or_else(|| {
                    format!(
                        "volume {:?}: mode {mode:?} must be octal, like \"0750\"",
                        t.path
                    )
                })?,
        );
    }
    if (m.owner.is_some() || m.mode.is_some()) && m.sub == "." {
        return Err(format!(
            "volume {:?}: owner and mode are for a sub-directory; the service's own directory takes its layout's",
            t.path
        ));
    }
    Ok(m)
}

/// A route's path prefix: `/`, or `/` and segments of letters, digits, `.`, `_`, `~`, `-`
/// (no `..`, no trailing `/`): safe to write into the gateway's config as it is.
fn route_path(p: &str) -> Result<String, String> {
    if p == "/" {
        return Ok("/".into());
    }
    let trimmed = p.strip_suffix('/').unwrap_or(p);
    let ok = trimmed.starts_with('/')
        && trimmed[1..].split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '~' | '-'))
        });
    if ok {
        Ok(trimmed.to_string())
    } else {
        Err(format!(
            "path {p:?} must be / or a prefix like /api or /static/v2 (letters, digits, . _ ~ -)"
        ))
    }
}

impl Service {
    /// Every host the gateway answers for this service: `domains`, then those of routes and
    /// static routes.
    pub(crate) fn hosts(&self) -> Vec<&Domain> {
        let mut out: Vec<&Domain> = Vec::new();
        for h in self
            .domains
            .iter()
            .chain(self.routes.iter().map(|r| &r.host))
            .chain(self.statics.iter().map(|s| &s.host))
        {
            if !out.contains(&h) {
                out.push(h);
            }
        }
        out
    }

    /// Every proxied route: the `domains` at `/` on `port`, then the explicit `routes`.
    pub(crate) fn all_routes(&self) -> Vec<Route> {
        debug_assert_eq!(self.domains.len(), self.domain_spans.len());
        let mut out: Vec<Route> = self
            .domains
            .iter()
            .zip(&self.domain_spans)
            .map(|(d, span)| Route {
                host: d.clone(),
                path: "/".into(),
                port: self.port,
                strip: false,
                span: span.clone(),
            })
            .collect();
        out.extend(self.routes.iter().cloned());
        out
    }
}

/// `routes` and `static`: host paths of this service (`domains` are its routes at `/`).
fn routes(
    c: &mut Checker,
    r: &RawService,
    port: u16,
    domains: &[Domain],
) -> (Vec<Route>, Vec<StaticRoute>) {
    let mut routes: Vec<Route> = Vec::new();
    for rr in &r.routes {
        let v = rr.get_ref();
        let host = match Domain::parse(&v.host) {
            Ok(h) => h,
            Err(why) => {
                c.at(rr, format!("route host {:?}: {why}", v.host));
                continue;
            }
        };
        let path = match route_path(v.path.as_deref().unwrap_or("/")) {
            Ok(p) => p,
            Err(why) => {
                c.at(rr, why);
                continue;
            }
        };
        if v.strip && path == "/" {
            c.at(rr, "strip = true needs a path other than /".into());
        }
        let port = match v.port {
            None => port,
            Some(p) => match u16::try_from(p) {
                Ok(p) if p > 0 => p,
                _ => {
                    c.at(rr, format!("route port {p} is out of range (1-65535)"));
                    continue;
                }
            },
        };
        if routes.iter().any(|o| o.host == host && o.path == path)
            || (path == "/" && domains.contains(&host))
        {
            c.at(
                rr,
                format!(
                    "{host}{} is routed twice",
                    if path == "/" { "" } else { &path }
                ),
            );
        }
        routes.push(Route {
            host,
            path,
            port,
            strip: v.strip,
            span: rr.span(),
        });
    }
    let mut statics: Vec<StaticRoute> = Vec::new();
    for sr in &r.statics {
        let v = sr.get_ref();
        let host = match Domain::parse(&v.host) {
            Ok(h) => h,
            Err(why) => {
                c.at(sr, format!("static host {:?}: {why}", v.host));
                continue;
            }
        };
        let path = match route_path(&v.path) {
            Ok(p) if p != "/" => p,
            Ok(_) => {
                c.at(
                    sr,
                    "a static route needs a path other than / (e.g. \"/static\")".into(),
                );
                continue;
            }
            Err(why) => {
                c.at(sr, why);
                continue;
            }
        };
        let dir = match parse_volume(&format!("{}:/x", v.dir)) {
            Ok(m) if m.sub != "." => m.sub,
            Ok(_) => {
                c.at(
                    sr,
                    "static dir must be a sub-directory of the service's directory".into(),
                );
                continue;
            }
            Err(why) => {
                c.at(sr, format!("static dir {:?}: {why}", v.dir));
                continue;
            }
        };
        if routes.iter().any(|o| o.host == host && o.path == path)
            || statics.iter().any(|o| o.host == host && o.path == path)
        {
            c.at(sr, format!("{host}{path} is routed twice"));
        }
        statics.push(StaticRoute {
            host,
            path,
            dir,
            span: sr.span(),
        });
    }
    (routes, statics)
}

/// `mounts`: other services' directories, read-only.
fn foreign_mounts(
    c: &mut Checker,
    r: &RawService,
    name: &Name,
    mounts: &[Mount],
) -> Vec<ForeignMount> {
    let mut foreign_mounts = Vec::new();
    for f in &r.mounts {
        let v = f.get_ref();
        let parsed = v
            .split_once(':')
            .ok_or_else(|| "expected SERVICE:SUBDIR:/container/path".to_string())
            .and_then(|(svc, rest)| {
                let service = Name::parse(svc).map_err(|why| format!("service {svc:?}: {why}"))?;
                // Always read-only; a trailing :ro is accepted.
                let m = parse_volume(rest)?;
                if &service == name {
                    return Err("a service mounts its own directories with volumes".into());
                }
                Ok(ForeignMount {
                    service,
                    sub: m.sub,
                    target: m.target,
                    span: f.span(),
                })
            });
        match parsed {
            Ok(m) => {
                if mounts.iter().any(|o| o.target == m.target)
                    || foreign_mounts
                        .iter()
                        .any(|o: &ForeignMount| o.target == m.target)
                {
                    c.at(f, format!("two volumes are mounted at {}", m.target));
                }
                foreign_mounts.push(m);
            }
            Err(why) => c.at(f, format!("invalid mount {v:?}: {why}")),
        }
    }
    foreign_mounts
}

/// `env_files`: shared secrets files (read by `input`).
fn env_files(c: &mut Checker, r: &RawService) -> Vec<(String, std::ops::Range<usize>)> {
    let mut env_files = Vec::new();
    for f in &r.env_files {
        let v = f.get_ref();
        let shape_ok = std::path::Path::new(v)
            .extension()
            .is_some_and(|e| e == "env")
            && !v.starts_with('/')
            && v.split('/').all(|p| {
                !p.is_empty()
                    && p != "."
                    && p != ".."
                    && p.chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-'))
            });
        if shape_ok {
            env_files.push((v.clone(), f.span()));
        } else {
            c.at(
                f,
                format!(
                    "env_files {v:?} must be a path under /etc/pi-setup/secrets/ ending in .env, like \"shared/app.env\" (letters, digits, . _ -; no ..)"
                ),
            );
        }
    }
    env_files
}

/// `user`: `uid[:gid]` or a user name.
fn user(c: &mut Checker, r: &RawService) -> Option<String> {
    r.user.as_ref().map(|u| {
        let v = u.get_ref();
        let word = |w: &str| {
            !w.is_empty()
                && w.len() <= 32
                && (w.chars().all(|ch| ch.is_ascii_digit())
                    || (w.starts_with(|ch: char| ch.is_ascii_lowercase() || ch == '_')
                        && w.chars().all(|ch| {
                            ch.is_ascii_lowercase()
                                || ch.is_ascii_digit()
                                || matches!(ch, '_' | '-')
                        })))
        };
        let ok = match v.split_once(':') {
            Some((user, group)) => word(user) && word(group),
            None => word(v),
        };
        if !ok {
            c.at(
                u,
                format!("user {v:?} must be uid[:gid] (like 1000:1000) or a lower-case user name"),
            );
        }
        v.clone()
    })
}

/// A job's own settings, and what a job cannot have (it serves nothing and runs once).
fn job_settings(c: &mut Checker, r: &RawService, is_job: bool) -> Option<std::time::Duration> {
    if !is_job {
        if let Some(t) = &r.timeout {
            c.at(t, "timeout is for jobs ([[job]])".into());
        }
        return None;
    }
    let what = "a job runs to completion and serves nothing";
    if let Some(d) = r.domains.first() {
        c.at(d, format!("{what}: it has no domains"));
    }
    if let Some(x) = r.routes.first() {
        c.at(x, format!("{what}: it has no routes"));
    }
    if let Some(x) = r.statics.first() {
        c.at(x, format!("{what}: it has no static routes"));
    }
    if let Some(x) = r.publish.first() {
        c.at(x, format!("{what}: it publishes no port"));
    }
    if let Some(x) = &r.access {
        c.at(x, format!("{what}: access does not apply"));
    }
    if let Some(x) = &r.health_cmd {
        c.at(x, format!("{what}: it has no health check"));
    }
    if let Some(x) = &r.restart {
        c.at(x, format!("{what}: it is never restarted"));
    }
    let secs = match &r.timeout {
        None => 30 * 60,
        Some(t) => match parse_duration(t.get_ref()) {
            Some(s) if (1..=24 * 3600).contains(&s) => s,
            _ => {
                c.at(
                    t,
                    format!(
                        "timeout {:?} must be a duration from 1s to 24h, like 10m",
                        t.get_ref()
                    ),
                );
                30 * 60
            }
        },
    };
    Some(std::time::Duration::from_secs(secs))
}

/// `build = { context, dockerfile }`: an absolute context, a Dockerfile path inside it.
fn build_settings(c: &mut Checker, b: &Spanned<crate::input::raw::RawBuild>) -> Option<Build> {
    let v = b.get_ref();
    let clean = |p: &str| {
        p.split('/')
            .all(|seg| seg != ".." && !seg.chars().any(char::is_control))
    };
    if !v.context.starts_with('/') || !clean(&v.context) {
        c.at(
            b,
            format!(
                "build context {:?} must be an absolute path without '..'",
                v.context
            ),
        );
        return None;
    }
    let dockerfile = v.dockerfile.clone().unwrap_or_else(|| "Dockerfile".into());
    if dockerfile.starts_with('/') || dockerfile.is_empty() || !clean(&dockerfile) {
        c.at(
            b,
            format!(
                "build dockerfile {dockerfile:?} must be a path inside the context, without '..'"
            ),
        );
        return None;
    }
    Some(Build {
        context: v.context.clone(),
        dockerfile,
    })
}
