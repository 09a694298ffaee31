//! The validated model: typed names, domains, ports and layouts. Everything past this module can
//! trust its input; every check here reports the file, line and column of the offending value.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use toml::Spanned;

use crate::backup::Codec;
use crate::input::layout::{Layout, Layouts};
use crate::input::raw::{RawBackup, RawGateway, RawProfile, RawService};
use crate::input::source::{ConfigError, Source};

/// The image the default gateway runs. Caddy 2.11 answers `caddy reload` inside the container
/// with 403 (caddy#7528), so pi-setup reloads through the admin unix socket instead.
pub const DEFAULT_GATEWAY_IMAGE: &str = "caddy:2.11.7";
/// The gateway's service name: its host name on the network and its volume directory.
pub const GATEWAY: &str = "gateway";
/// Names a service may not take: the gateway's, and the network's.
const RESERVED_NAMES: &[&str] = &[GATEWAY, "intercontainer"];

/// A DNS label usable as container host name and directory name: `[a-z0-9-]{1,63}`, no leading
/// or trailing `-`. It can never hold `/` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

impl Name {
    pub fn parse(s: &str) -> Result<Name, String> {
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        if s.contains('/') || s.contains("..") {
            return Err("must not contain '/' or '..'".into());
        }
        if s.len() > 63 {
            return Err(format!("is {} characters long; at most 63", s.len()));
        }
        if s.chars().any(|c| c.is_ascii_uppercase()) {
            return Err("must be lower case".into());
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(format!(
                "contains {c:?}; use only a-z, 0-9 and '-' (a DNS label)"
            ));
        }
        if s.starts_with('-') || s.ends_with('-') {
            return Err("must not start or end with '-'".into());
        }
        Ok(Name(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An email address strict enough to go into the gateway's config as one bare token:
/// `local@domain`, the local part 1-64 of `A-Z a-z 0-9 . _ % + -` (no leading, trailing or
/// double dot), the domain a host name with at least one dot. Anything else (quotes, braces,
/// backslashes, white space, `<<`) could end the token or the block it is in.
pub fn check_email(v: &str) -> Result<(), String> {
    let Some((local, domain)) = v.split_once('@') else {
        return Err("it has no '@'".into());
    };
    if v.len() > 254 {
        return Err(format!("it is {} characters long; at most 254", v.len()));
    }
    if local.is_empty() || local.len() > 64 {
        return Err("the part before '@' must be 1-64 characters".into());
    }
    if let Some(ch) = local
        .chars()
        .find(|ch| !(ch.is_ascii_alphanumeric() || "._%+-".contains(*ch)))
    {
        return Err(format!(
            "the part before '@' contains {ch:?}; use only A-Z a-z 0-9 . _ % + -"
        ));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err("the part before '@' must not start or end with '.', or hold '..'".into());
    }
    if !domain.contains('.') {
        return Err(format!("the domain {domain:?} has no '.'"));
    }
    Domain::parse(&domain.to_ascii_lowercase())
        .map(|_| ())
        .map_err(|why| format!("the domain {domain:?} {why}"))
}

/// A host name the gateway routes by (`cloud.example.com`, `nas.local`); lower case.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Domain(String);

impl Domain {
    pub fn parse(s: &str) -> Result<Domain, String> {
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        if s.len() > 253 {
            return Err(format!("is {} characters long; at most 253", s.len()));
        }
        if s.chars().any(|c| c.is_ascii_uppercase()) {
            return Err("must be lower case".into());
        }
        if s.contains("://") || s.contains('/') || s.contains(':') {
            return Err("must be a bare host name, without scheme, port or path".into());
        }
        for label in s.split('.') {
            if label.is_empty() {
                return Err("has an empty label (two dots, or a leading/trailing dot)".into());
            }
            if label.len() > 63 {
                return Err(format!("label {label:?} is longer than 63 characters"));
            }
            if let Some(c) = label
                .chars()
                .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
            {
                return Err(format!("contains {c:?}; use only a-z, 0-9, '-' and '.'"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(format!("label {label:?} starts or ends with '-'"));
            }
        }
        Ok(Domain(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Names no public CA will certify: Caddy serves them with its own CA (`tls internal`).
    pub fn is_lan_only(&self) -> bool {
        let d = self.0.as_str();
        !d.contains('.')
            || [
                ".local",
                ".lan",
                ".home.arpa",
                ".internal",
                ".test",
                ".localhost",
            ]
            .iter()
            .any(|s| d.ends_with(s))
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpsMode {
    Auto,
    Internal,
    Off,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    pub image: String,
    /// Host path of a custom maintenance page (read by `config`).
    pub maintenance_page: Option<String>,
    /// Where the profile sets it, for errors found while reading it.
    pub maintenance_page_span: Option<std::ops::Range<usize>>,
    /// Its contents, once read; None means the built-in page.
    pub maintenance_html: Option<String>,
    pub http_port: u16,
    pub https_port: u16,
    pub bind: IpAddr,
    pub https: HttpsMode,
    pub email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    pub dest: String,
    pub schedule: String,
    pub compress: Codec,
    /// Checked against `compress`'s range.
    pub level: u32,
    pub keep_last: u32,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
}

/// A bind mount of `/var/vol/<service>/<sub>` at `target` inside the container.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mount {
    pub sub: String,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    No,
    Always,
    UnlessStopped,
    OnFailure,
}

impl Restart {
    pub fn as_str(self) -> &'static str {
        match self {
            Restart::No => "no",
            Restart::Always => "always",
            Restart::UnlessStopped => "unless-stopped",
            Restart::OnFailure => "on-failure",
        }
    }
}

/// Who may reach a service through the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
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
    pub fn label(&self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::Lan => "lan",
            Access::Auth { .. } => "auth",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Health {
    pub cmd: String,
    pub interval_secs: u64,
}

/// A host port a service publishes itself (explicitly asked for in its definition).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Publish {
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
}

/// How `pi-setup backup` keeps a service's directory consistent while archiving it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupMode {
    /// Stop the container for the time of its own archive, start it right after (also on error).
    Stop,
    /// Archive while it runs.
    Live,
    /// Run these shell commands inside the running container (e.g. a database dump into its
    /// volume), then archive live.
    Exec(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: Name,
    pub image: String,
    pub domains: Vec<Domain>,
    pub port: u16,
    pub env: BTreeMap<String, String>,
    pub mounts: Vec<Mount>,
    pub layout: Layout,
    pub restart: Restart,
    pub command: Option<Vec<String>>,
    pub access: Access,
    pub memory: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub health: Option<Health>,
    pub publish: Vec<Publish>,
    pub backup: BackupMode,
    /// From `/etc/pi-setup/secrets/<name>.env` (filled by `config`); never printed.
    pub secret_env: BTreeMap<String, String>,
    /// Where it was defined, for messages.
    pub origin: String,
}

/// The whole desired appliance.
#[derive(Debug, Clone)]
pub struct Model {
    pub description: Option<String>,
    pub gateway: Gateway,
    pub gateway_layout: Layout,
    pub backup: Backup,
    pub services: Vec<Service>,
}

impl Model {
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name.as_str() == name)
    }
}

/// What validation needs to know about the host, read once by the caller (`config`) so that
/// this module stays free of I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostFacts {
    /// CPUs Docker may hand out: it refuses a `--cpus` above this.
    pub cpus: usize,
}

/// Collects every problem of a document instead of stopping at the first.
struct Checker<'a> {
    src: &'a Source,
    errors: Vec<ConfigError>,
}

impl<'a> Checker<'a> {
    fn at<T>(&mut self, v: &Spanned<T>, msg: String) {
        self.errors.push(self.src.error_at(v.span(), msg));
    }

    /// `at`, without quoting the line: for values that may be secret.
    fn hidden_at<T>(&mut self, v: &Spanned<T>, msg: String) {
        self.errors.push(ConfigError {
            line_text: None,
            ..self.src.error_at(v.span(), msg)
        });
    }

    fn port(&mut self, v: &Spanned<i64>, what: &str) -> u16 {
        match u16::try_from(*v.get_ref()) {
            Ok(p) if p > 0 => p,
            _ => {
                self.at(
                    v,
                    format!("{what} {} is out of range (1-65535)", v.get_ref()),
                );
                1
            }
        }
    }

    fn count(&mut self, v: &Option<Spanned<i64>>, field: &str, default: u32) -> u32 {
        match v {
            None => default,
            Some(s) => match u32::try_from(*s.get_ref()) {
                Ok(n) => n,
                Err(_) => {
                    self.at(s, format!("{field} must be 0 or more, not {}", s.get_ref()));
                    default
                }
            },
        }
    }
}

/// Validates a profile against the known layouts. All errors of the document come back at once.
///
/// Service files come with their `Source` by reference, and the profile's own services share
/// `src`: a clone of a source per service made validation quadratic in memory (4,000 services
/// in a 361 KB profile took 1.4 GB).
pub fn build(
    src: &Source,
    raw: RawProfile,
    extra: Vec<(&Source, RawService)>,
    layouts: &Layouts,
    host: &HostFacts,
) -> Result<Model, Vec<ConfigError>> {
    let mut c = Checker {
        src,
        errors: Vec::new(),
    };
    let gateway = gateway(&mut c, &raw.gateway);
    let backup = backup(&mut c, &raw.backup);
    let mut errors = std::mem::take(&mut c.errors);
    let gateway_layout = match layouts.get(GATEWAY) {
        Some(l) => l.clone(),
        None => {
            errors.push(src.error("vol-layout 'gateway' is missing"));
            Layout::default()
        }
    };

    let mut services = Vec::new();
    let profile_services = raw.services.into_iter().map(|s| (src, s));
    for (s_src, rs) in profile_services.chain(extra) {
        match service(s_src, rs, layouts, host) {
            Ok(s) => services.push((s_src, s)),
            Err(mut e) => errors.append(&mut e),
        }
    }

    // Names and domains must be unique across the profile and the service files: a name is
    // also a network alias, and two containers answering to one alias is the classic bug.
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut domains: BTreeMap<String, String> = BTreeMap::new();
    for (s_src, s) in &services {
        if let Some(first) = names.insert(s.name.to_string(), s_src.origin.clone()) {
            errors.push(s_src.error(format!(
                "duplicate service name '{}' (already defined in {first})",
                s.name
            )));
        }
        for d in &s.domains {
            if let Some(first) = domains.insert(d.to_string(), s.name.to_string()) {
                errors.push(s_src.error(format!(
                    "duplicate domain '{d}' in service '{}' (already used by service '{first}')",
                    s.name
                )));
            }
        }
    }

    // Host ports: the gateway's, and those services publish themselves, must not collide
    // (the later container would fail to start, and keep failing on every apply).
    let mut taken: Vec<(IpAddr, u16, String)> = vec![(
        gateway.bind,
        gateway.http_port,
        "the gateway (http_port)".into(),
    )];
    if gateway.https != HttpsMode::Off {
        taken.push((
            gateway.bind,
            gateway.https_port,
            "the gateway (https_port)".into(),
        ));
    }
    for (s_src, s) in &services {
        for p in &s.publish {
            let ip: IpAddr = p.host_ip.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
            let clash = taken.iter().find(|(tip, port, _)| {
                *port == p.host_port && (*tip == ip || tip.is_unspecified() || ip.is_unspecified())
            });
            if let Some((_, _, owner)) = clash {
                errors.push(s_src.error(format!(
                    "service '{}' publishes host port {}, already used by {owner}",
                    s.name, p.host_port
                )));
            }
            taken.push((ip, p.host_port, format!("service '{}'", s.name)));
        }
    }

    if errors.is_empty() {
        Ok(Model {
            description: raw.description,
            gateway,
            gateway_layout,
            backup,
            services: services.into_iter().map(|(_, s)| s).collect(),
        })
    } else {
        Err(errors)
    }
}

fn gateway(c: &mut Checker, g: &RawGateway) -> Gateway {
    let image = match &g.image {
        None => DEFAULT_GATEWAY_IMAGE.to_string(),
        Some(i) => image_ref(c, i),
    };
    let http_port = g
        .http_port
        .as_ref()
        .map_or(80, |p| c.port(p, "gateway.http_port"));
    let https_port = g
        .https_port
        .as_ref()
        .map_or(443, |p| c.port(p, "gateway.https_port"));
    let https_off = g.https.as_ref().is_some_and(|h| h.get_ref() == "off");
    if http_port == https_port && !https_off {
        let msg = format!("gateway.http_port and gateway.https_port are both {http_port}");
        match g.https_port.as_ref().or(g.http_port.as_ref()) {
            Some(p) => c.at(p, msg),
            None => c.errors.push(c.src.error(msg)),
        }
    }
    let bind = match &g.bind {
        None => IpAddr::from([0, 0, 0, 0]),
        Some(b) => b.get_ref().parse().unwrap_or_else(|_| {
            c.at(
                b,
                format!("gateway.bind {:?} is not an IP address", b.get_ref()),
            );
            IpAddr::from([0, 0, 0, 0])
        }),
    };
    let https = match g.https.as_ref().map(|h| (h, h.get_ref().as_str())) {
        None => HttpsMode::Auto,
        Some((_, "auto")) => HttpsMode::Auto,
        Some((_, "internal")) => HttpsMode::Internal,
        Some((_, "off")) => HttpsMode::Off,
        Some((h, other)) => {
            c.at(
                h,
                format!("gateway.https {other:?} is not one of auto, internal, off"),
            );
            HttpsMode::Auto
        }
    };
    let maintenance_page = g.maintenance_page.as_ref().map(|m| {
        let v = m.get_ref();
        // It is read under --root (by `config`): `..` would step out of it.
        if !v.starts_with('/') || v.split('/').any(|p| p == "..") {
            c.at(
                m,
                format!("gateway.maintenance_page {v:?} must be an absolute path without '..'"),
            );
        } else if v.chars().any(char::is_control) {
            c.at(
                m,
                format!("gateway.maintenance_page {v:?} contains a control character"),
            );
        }
        v.clone()
    });
    let email = g.email.as_ref().map(|e| {
        let v = e.get_ref();
        if let Err(why) = check_email(v) {
            c.at(
                e,
                format!("gateway.email {v:?} is not an email address: {why}"),
            );
        }
        v.clone()
    });
    Gateway {
        image,
        maintenance_page,
        maintenance_page_span: g.maintenance_page.as_ref().map(Spanned::span),
        maintenance_html: None,
        http_port,
        https_port,
        bind,
        https,
        email,
    }
}

fn backup(c: &mut Checker, b: &RawBackup) -> Backup {
    let compress = match &b.compress {
        None => Codec::default(),
        Some(v) => Codec::parse(v.get_ref()).unwrap_or_else(|| {
            c.at(
                v,
                format!("backup.compress {:?} is not one of gzip, zstd", v.get_ref()),
            );
            Codec::default()
        }),
    };
    let level = match &b.level {
        None => compress.default_level(),
        Some(l) => compress.check_level(*l.get_ref()).unwrap_or_else(|e| {
            c.at(l, format!("backup.{e}"));
            compress.default_level()
        }),
    };
    let dest = match &b.dest {
        None => "/var/backups/pi-setup".to_string(),
        Some(d) => {
            let v = d.get_ref();
            let norm = v.trim_end_matches('/');
            if !v.starts_with('/') || v.split('/').any(|p| p == "..") {
                c.at(
                    d,
                    format!("backup.dest {v:?} must be an absolute path without '..'"),
                );
            } else if norm == "/var/vol" || norm.starts_with("/var/vol/") {
                c.at(
                    d,
                    format!(
                        "backup.dest {v:?} must not be inside /var/vol (it is what gets backed up)"
                    ),
                );
            }
            v.clone()
        }
    };
    let schedule = match &b.schedule {
        None => "*-*-* 03:30:00".to_string(),
        Some(s) => {
            let v = s.get_ref();
            if v.trim().is_empty() || v.contains('\n') {
                c.at(
                    s,
                    format!("backup.schedule {v:?} must be a systemd OnCalendar= expression"),
                );
            } else if let Some(why) = crate::host::calendar_error(v) {
                c.at(
                    s,
                    format!("backup.schedule {v:?} is not a systemd OnCalendar= expression: {why}"),
                );
            }
            v.clone()
        }
    };
    Backup {
        dest,
        schedule,
        compress,
        level,
        keep_last: c.count(&b.keep_last, "backup.keep_last", 3),
        keep_daily: c.count(&b.keep_daily, "backup.keep_daily", 7),
        keep_weekly: c.count(&b.keep_weekly, "backup.keep_weekly", 4),
        keep_monthly: c.count(&b.keep_monthly, "backup.keep_monthly", 6),
    }
}

/// Checks an image reference: `[registry[:port]/]repo[:tag][@digest]`, repository lower case.
fn image_ref(c: &mut Checker, i: &Spanned<String>) -> String {
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

fn service(
    src: &Source,
    r: RawService,
    layouts: &Layouts,
    host: &HostFacts,
) -> Result<Service, Vec<ConfigError>> {
    let mut c = Checker {
        src,
        errors: Vec::new(),
    };
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
    let image = match &r.image {
        Some(i) => image_ref(&mut c, i),
        None => {
            c.at(
                &r.name,
                format!(
                    "service '{}' has no image: set image = \"repo:tag\"",
                    r.name.get_ref()
                ),
            );
            String::new()
        }
    };
    let mut domains = Vec::new();
    let mut seen = BTreeSet::new();
    for d in &r.domains {
        match Domain::parse(d.get_ref()) {
            Ok(dom) => {
                if !seen.insert(dom.clone()) {
                    c.at(d, format!("domain '{dom}' is listed twice"));
                }
                domains.push(dom);
            }
            Err(why) => c.at(d, format!("invalid domain {:?}: {why}", d.get_ref())),
        }
    }
    let port = r.port.as_ref().map_or(80, |p| c.port(p, "port"));
    let mut env = BTreeMap::new();
    for (k, v) in &r.env {
        let valid = k
            .chars()
            .next()
            .is_some_and(|ch| ch.is_ascii_alphabetic() || ch == '_')
            && k.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
        if !valid {
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
        match parse_volume(v.get_ref()) {
            Ok(m) => {
                if mounts.iter().any(|o| o.target == m.target) {
                    c.at(v, format!("two volumes are mounted at {}", m.target));
                }
                mounts.push(m);
            }
            Err(why) => c.at(v, format!("invalid volume {:?}: {why}", v.get_ref())),
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
    let access = match r.access.as_ref().map(|a| (a, a.get_ref().as_str())) {
        None | Some((_, "public")) => Access::Public,
        Some((_, "lan")) => Access::Lan,
        Some((a, "auth")) => match (&r.auth_user, &r.auth_hash) {
            (Some(u), Some(h)) => {
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
            }
            _ => {
                c.at(a, "access \"auth\" needs auth_user and auth_hash".into());
                Access::Public
            }
        },
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
    if (access != Access::Public) && domains.is_empty() {
        if let Some(a) = &r.access {
            c.at(
                a,
                "access only applies to services with domains (it is enforced at the gateway)"
                    .into(),
            );
        }
    }
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
    let health = match (&r.health_cmd, &r.health_interval) {
        (None, None) => None,
        (None, Some(i)) => {
            c.at(i, "health_interval needs health_cmd".into());
            None
        }
        (Some(cmd), interval) => {
            if cmd.get_ref().trim().is_empty() {
                c.at(cmd, "health_cmd must not be empty".into());
            }
            if cmd.get_ref().contains('\0') {
                c.at(
                    cmd,
                    "health_cmd contains a NUL byte, which Docker refuses".into(),
                );
            }
            let interval_secs = match interval {
                None => 30,
                Some(i) => check_health_interval(i.get_ref()).unwrap_or_else(|why| {
                    c.at(i, why);
                    30
                }),
            };
            Some(Health {
                cmd: cmd.get_ref().clone(),
                interval_secs,
            })
        }
    };
    let mut publish = Vec::new();
    for p in &r.publish {
        match parse_publish(p.get_ref()) {
            Ok(pb) => publish.push(pb),
            Err(why) => c.at(p, format!("invalid publish {:?}: {why}", p.get_ref())),
        }
    }
    let backup = match r
        .backup
        .as_ref()
        .and_then(|b| b.mode.as_ref().map(|m| (b, m, m.get_ref().as_str())))
    {
        // Default: stop while archiving if there is anything mounted to keep consistent.
        None if mounts.is_empty() => BackupMode::Live,
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
    if c.errors.is_empty() {
        Ok(Service {
            name,
            image,
            domains,
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
            publish,
            backup,
            secret_env: BTreeMap::new(),
            origin: src.origin.clone(),
        })
    } else {
        Err(c.errors)
    }
}

/// Docker's smallest memory limit.
pub const MIN_MEMORY: i64 = 6 * 1024 * 1024;
/// A sane largest one (far beyond any Pi): a typo like `512000g` is caught.
pub const MAX_MEMORY: i64 = 1024 * 1024 * 1024 * 1024;

/// `512m`, `2g`, `1.5g`, `1048576` → bytes (`i64::MAX` for anything larger); None when
/// malformed or zero. Only digits
/// and one `.`: `inf`, `nan` and `1e300` (which `f64` would take) are not sizes.
pub fn parse_bytes(s: &str) -> Option<i64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1u64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let digits = |d: &str| d.chars().all(|c| c.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || (num.contains('.') && frac.is_empty()) {
        return None;
    }
    // Well formed from here on: too large saturates (and is then out of any range) rather
    // than wrapping or being called malformed.
    let whole = int.parse::<u64>().unwrap_or(u64::MAX).saturating_mul(mult);
    // The fraction of a unit, in whole bytes (rounded down); 20 digits are plenty for 2^30.
    let frac = &frac[..frac.len().min(20)];
    let part = if frac.is_empty() {
        0
    } else {
        let f = frac.parse::<u128>().ok()?;
        (f * u128::from(mult) / 10u128.pow(frac.len() as u32)) as u64
    };
    let bytes = i64::try_from(whole.saturating_add(part)).unwrap_or(i64::MAX);
    (bytes > 0).then_some(bytes)
}

/// `30s`, `1m`, `1m30s`, `2h`, or plain seconds → seconds; None when malformed or beyond `u64`.
pub fn parse_duration(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    if let Ok(n) = s.parse::<u64>() {
        return Some(n);
    }
    let mut total = 0u64;
    let mut num = String::new();
    for ch in s.chars() {
        if ch.is_ascii_digit() {
            num.push(ch);
        } else {
            let n: u64 = num.parse().ok()?;
            num.clear();
            let unit = match ch {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                _ => return None,
            };
            total = total.checked_add(n.checked_mul(unit)?)?;
        }
    }
    num.is_empty().then_some(total)
}

/// The longest health check interval: Docker counts in nanoseconds (an `i64`), and beyond a
/// day a check no longer tells whether a service is up.
pub const MAX_HEALTH_INTERVAL_SECS: u64 = 24 * 3600;

/// Whether `s` is shaped like a duration (`45`, or `30s`, `1m30s`, ...), whatever its size.
fn duration_shaped(s: &str) -> bool {
    let mut digits = 0;
    for ch in s.chars() {
        match ch {
            '0'..='9' => digits += 1,
            's' | 'm' | 'h' if digits > 0 => digits = 0,
            _ => return false,
        }
    }
    !s.is_empty() && (digits == 0 || s.chars().all(|c| c.is_ascii_digit()))
}

/// A health check interval: 1s to 24h.
pub fn check_health_interval(s: &str) -> Result<u64, String> {
    match parse_duration(s) {
        Some(secs) if (1..=MAX_HEALTH_INTERVAL_SECS).contains(&secs) => Ok(secs),
        Some(_) => Err(format!("health_interval {s:?} is out of range: 1s to 24h")),
        None if duration_shaped(s) => {
            Err(format!("health_interval {s:?} is out of range: 1s to 24h"))
        }
        None => Err(format!(
            "health_interval {s:?} must be a duration like 30s, 1m or 1m30s"
        )),
    }
}

/// `[IP:]HOST:CONTAINER`
pub fn parse_publish(s: &str) -> Result<Publish, String> {
    let parts: Vec<&str> = s.rsplitn(3, ':').collect();
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{p:?} is not a port (1-65535)"))
    };
    let (ip, host, container) = match parts.as_slice() {
        [c, h] => ("0.0.0.0", *h, *c),
        [c, h, ip] => (*ip, *h, *c),
        _ => return Err("expected [IP:]HOST_PORT:CONTAINER_PORT".into()),
    };
    ip.parse::<IpAddr>()
        .map_err(|_| format!("{ip:?} is not an IP address"))?;
    Ok(Publish {
        host_ip: ip.to_string(),
        host_port: port(host)?,
        container_port: port(container)?,
    })
}

/// `SUBDIR:/container/path[:ro]`; SUBDIR stays inside the service's directory.
pub fn parse_volume(s: &str) -> Result<Mount, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (sub, target, read_only) = match parts.as_slice() {
        [sub, target] => (*sub, *target, false),
        [sub, target, "ro"] => (*sub, *target, true),
        [sub, target, "rw"] => (*sub, *target, false),
        _ => return Err("expected SUBDIR:/container/path or SUBDIR:/container/path:ro".into()),
    };
    if s.chars().any(char::is_control) {
        return Err("contains a control character".into());
    }
    if sub.starts_with('/') {
        return Err(format!(
            "{sub:?} must be relative to the service's directory"
        ));
    }
    let sub = sub.trim_end_matches('/');
    if sub.is_empty() || sub == "." {
        // The whole service directory.
    } else if sub
        .split('/')
        .any(|p| p == ".." || p == "." || p.is_empty())
    {
        return Err(format!(
            "{sub:?} escapes or does not name a sub-directory of the service's directory"
        ));
    }
    if !target.starts_with('/') || target.split('/').any(|p| p == "..") {
        return Err(format!(
            "container path {target:?} must be absolute, without '..'"
        ));
    }
    // One spelling per directory (`/data/`, `/./data` and `/data` are one mount point to
    // Docker, so duplicates are caught), and never the container's root, which Docker refuses.
    let parts: Vec<&str> = target
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.is_empty() {
        return Err(format!(
            "container path {target:?} is the container's root; Docker cannot mount there (use a directory such as /data)"
        ));
    }
    let sub = if sub.is_empty() { "." } else { sub };
    Ok(Mount {
        sub: sub.to_string(),
        target: format!("/{}", parts.join("/")),
        read_only,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Validates a profile on a 4-CPU host; each error as `line:col: message`, without the
    /// quoted line (`hidden` says whether it was left out).
    fn problems(profile: &str) -> Vec<(String, bool)> {
        let src = Source::new("p.toml", profile);
        let raw = crate::input::raw::parse_profile(&src).expect("the test profile parses");
        let layouts = Layouts::shipped().unwrap();
        match build(&src, raw, Vec::new(), &layouts, &HostFacts { cpus: 4 }) {
            Ok(_) => Vec::new(),
            Err(errors) => errors
                .into_iter()
                .map(|e| {
                    let at = format!("{}:{}: {}", e.line.unwrap(), e.col.unwrap(), e.message);
                    (at, e.line_text.is_none())
                })
                .collect(),
        }
    }

    #[test]
    fn service_values_docker_would_refuse_are_refused_with_their_position() {
        let table: &[(&str, &str)] = &[
            ("cpus = 1000", "4:8: cpus 1000 is out of range: 0.01 to 4 (the CPUs this host has)"),
            ("cpus = 0.001", "4:8: cpus 0.001 is out of range: 0.01 to 4 (the CPUs this host has)"),
            ("cpus = nan", "4:8: cpus NaN is out of range: 0.01 to 4 (the CPUs this host has)"),
            ("cpus = inf", "4:8: cpus inf is out of range: 0.01 to 4 (the CPUs this host has)"),
            ("cpus = -1", "4:8: cpus -1 is out of range: 0.01 to 4 (the CPUs this host has)"),
            ("memory = \"5m\"", "4:10: memory \"5m\" is out of range: 6m to 1024g"),
            ("memory = \"2048g\"", "4:10: memory \"2048g\" is out of range: 6m to 1024g"),
            (
                "memory = \"99999999999999999999999g\"",
                "4:10: memory \"99999999999999999999999g\" is out of range: 6m to 1024g",
            ),
            ("memory = \"inf\"", "4:10: memory \"inf\" must be bytes or a size like 512m or 2g"),
            ("memory = \"1e300\"", "4:10: memory \"1e300\" must be bytes or a size like 512m or 2g"),
            ("memory = \"-5m\"", "4:10: memory \"-5m\" must be bytes or a size like 512m or 2g"),
            (
                "health_cmd = \"true\"\nhealth_interval = \"18446744074s\"",
                "5:19: health_interval \"18446744074s\" is out of range: 1s to 24h",
            ),
            (
                "health_cmd = \"true\"\nhealth_interval = \"99999999999999999999999h\"",
                "5:19: health_interval \"99999999999999999999999h\" is out of range: 1s to 24h",
            ),
            (
                "health_cmd = \"true\"\nhealth_interval = \"25h\"",
                "5:19: health_interval \"25h\" is out of range: 1s to 24h",
            ),
            (
                "health_cmd = \"true\"\nhealth_interval = \"0s\"",
                "5:19: health_interval \"0s\" is out of range: 1s to 24h",
            ),
            (
                "health_cmd = \"true\"\nhealth_interval = \"1m3\"",
                "5:19: health_interval \"1m3\" must be a duration like 30s, 1m or 1m30s",
            ),
            (
                "volumes = [\".:/\"]",
                "4:12: invalid volume \".:/\": container path \"/\" is the container's root; Docker cannot mount there (use a directory such as /data)",
            ),
            (
                "volumes = [\"data://.\"]",
                "4:12: invalid volume \"data://.\": container path \"//.\" is the container's root; Docker cannot mount there (use a directory such as /data)",
            ),
            ("volumes = [\"a:/data/\", \"b:/./data\"]", "4:24: two volumes are mounted at /data"),
            (
                "health_cmd = \"true\\u0000\"",
                "4:14: health_cmd contains a NUL byte, which Docker refuses",
            ),
        ];
        for (field, expected) in table {
            let profile = format!("[[service]]\nname = \"web\"\nimage = \"busybox:1\"\n{field}\n");
            let got: Vec<String> = problems(&profile).into_iter().map(|(m, _)| m).collect();
            assert_eq!(got, vec![expected.to_string()], "for {field}");
        }
    }

    #[test]
    fn a_nul_in_an_env_value_names_the_key_and_never_shows_the_value() {
        let got = problems(
            "[[service]]\nname = \"web\"\nimage = \"busybox:1\"\nenv = { TOKEN = \"s3cr3t\\u0000x\" }\n",
        );
        assert_eq!(
            got,
            vec![(
                "4:17: env TOKEN: the value contains a NUL byte, which Docker refuses (the value is not shown)".to_string(),
                true
            )]
        );
    }

    #[test]
    fn gateway_values_are_checked_before_they_reach_its_config() {
        let table: &[(&str, &str)] = &[
            ("email = \"\\\"@x.com\"", "2:9: gateway.email \"\\\"@x.com\" is not an email address: the part before '@' contains '\"'; use only A-Z a-z 0-9 . _ % + -"),
            ("email = 'a@x.com\\'", "2:9: gateway.email \"a@x.com\\\\\" is not an email address: the domain \"x.com\\\\\" contains '\\\\'; use only a-z, 0-9, '-' and '.'"),
            ("email = \"<<EOF@x.com\"", "2:9: gateway.email \"<<EOF@x.com\" is not an email address: the part before '@' contains '<'; use only A-Z a-z 0-9 . _ % + -"),
            ("email = \"me@x.com}\"", "2:9: gateway.email \"me@x.com}\" is not an email address: the domain \"x.com}\" contains '}'; use only a-z, 0-9, '-' and '.'"),
            ("email = \"me @x.com\"", "2:9: gateway.email \"me @x.com\" is not an email address: the part before '@' contains ' '; use only A-Z a-z 0-9 . _ % + -"),
            ("email = \"me@x@y.com\"", "2:9: gateway.email \"me@x@y.com\" is not an email address: the domain \"x@y.com\" contains '@'; use only a-z, 0-9, '-' and '.'"),
            ("email = \"me@localhost\"", "2:9: gateway.email \"me@localhost\" is not an email address: the domain \"localhost\" has no '.'"),
            ("email = \"me.example.com\"", "2:9: gateway.email \"me.example.com\" is not an email address: it has no '@'"),
            ("email = \".me@x.com\"", "2:9: gateway.email \".me@x.com\" is not an email address: the part before '@' must not start or end with '.', or hold '..'"),
            (
                "maintenance_page = \"/../etc/shadow\"",
                "2:20: gateway.maintenance_page \"/../etc/shadow\" must be an absolute path without '..'",
            ),
            (
                "maintenance_page = \"page.html\"",
                "2:20: gateway.maintenance_page \"page.html\" must be an absolute path without '..'",
            ),
        ];
        for (field, expected) in table {
            let got: Vec<String> = problems(&format!("[gateway]\n{field}\n"))
                .into_iter()
                .map(|(m, _)| m)
                .collect();
            assert_eq!(got, vec![expected.to_string()], "for {field}");
        }
        for ok in [
            "me@example.com",
            "First.Last+pi@Mail.Example.ORG",
            "a_b%c-d@x-y.home.arpa",
        ] {
            assert!(check_email(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn names_follow_dns_label_rules() {
        assert!(Name::parse("web-1").is_ok());
        assert_eq!(Name::parse("Web").unwrap_err(), "must be lower case");
        assert!(Name::parse("../x").unwrap_err().contains("'/'"));
        assert!(Name::parse("a..b").unwrap_err().contains("'..'"));
        assert!(Name::parse("-a").is_err());
        assert!(Name::parse("a_b").is_err());
        assert!(Name::parse(&"a".repeat(64)).is_err());
        assert!(Name::parse("").is_err());
    }

    #[test]
    fn domains() {
        assert!(Domain::parse("cloud.example.com").is_ok());
        assert!(Domain::parse("nas").is_ok());
        assert!(Domain::parse("a..b").is_err());
        assert!(Domain::parse("http://x.com").is_err());
        assert!(Domain::parse("x.com:80").is_err());
        assert!(Domain::parse("X.com").is_err());
        assert!(Domain::parse("a_b.com").is_err());
        assert!(Domain::parse("nas.local").unwrap().is_lan_only());
        assert!(!Domain::parse("cloud.example.com").unwrap().is_lan_only());
    }

    #[test]
    fn sizes_durations_and_published_ports() {
        assert_eq!(parse_bytes("512m"), Some(512 * 1024 * 1024));
        assert_eq!(parse_bytes("1.5g"), Some(1610612736));
        assert_eq!(parse_bytes("100"), Some(100));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_bytes("0.5k"), Some(512));
        assert_eq!(parse_bytes("99999999999999999999g"), Some(i64::MAX));
        assert_eq!(parse_bytes("9223372036854775807"), Some(i64::MAX));
        for bad in [
            "nan", "inf", "1e3", "0", ".5g", "5.g", "-1", "", "g", "1.2.3m",
        ] {
            assert_eq!(parse_bytes(bad), None, "{bad:?}");
        }
        assert_eq!(parse_duration("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_duration("18446744073709551615m"), None, "overflows");
        assert_eq!(parse_duration("5124095576030432h"), None, "overflows");
        assert_eq!(parse_duration(""), None);
        assert_eq!(check_health_interval("24h"), Ok(86400));
        assert_eq!(check_health_interval("1s"), Ok(1));
        assert_eq!(parse_duration("30s"), Some(30));
        assert_eq!(parse_duration("1m30s"), Some(90));
        assert_eq!(parse_duration("45"), Some(45));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration("1m3"), None);
        let p = parse_publish("127.0.0.1:5432:5432").unwrap();
        assert_eq!(
            (p.host_ip.as_str(), p.host_port, p.container_port),
            ("127.0.0.1", 5432, 5432)
        );
        assert_eq!(parse_publish("8443:443").unwrap().host_ip, "0.0.0.0");
        assert!(parse_publish("x:443").is_err());
        assert!(parse_publish("443").is_err());
    }

    #[test]
    fn volumes_cannot_escape() {
        assert_eq!(parse_volume("data:/data").unwrap().sub, "data");
        assert!(parse_volume("data:/data:ro").unwrap().read_only);
        assert_eq!(parse_volume(".:/srv").unwrap().sub, ".");
        assert!(parse_volume("../etc:/x").is_err());
        assert!(parse_volume("a/../../x:/x").is_err());
        assert!(parse_volume("/etc:/x").is_err());
        assert!(parse_volume("data:relative").is_err());
        assert!(parse_volume("data").is_err());
    }
}
