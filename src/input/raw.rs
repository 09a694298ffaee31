//! Raw input: the profile TOML and service files as serde structs. No I/O, no validation beyond
//! what serde does (unknown fields are rejected); `model` turns these into checked types.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::input::source::{ConfigError, Source};

/// A whole profile: `profiles/*.toml`, or `/etc/pi-setup/pi-setup.toml` on a host.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProfile {
    #[serde(default)]
    pub(crate) description: Option<String>,
    #[serde(default)]
    pub(crate) gateway: RawGateway,
    #[serde(default)]
    pub(crate) backup: RawBackup,
    #[serde(default, rename = "service")]
    pub(crate) services: Vec<RawService>,
    /// `[[job]]`: a container that runs to completion (a migration, a setup step) before
    /// what depends on it, again only when its definition changes. The fields of a service.
    #[serde(default, rename = "job")]
    pub(crate) jobs: Vec<RawService>,
    /// File trees `install` lays onto the host root (`overlays/<name>/`), in order; default
    /// `["base"]`, `[]` for none.
    pub(crate) overlays: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGateway {
    pub(crate) image: Option<Spanned<String>>,
    pub(crate) http_port: Option<Spanned<i64>>,
    pub(crate) https_port: Option<Spanned<i64>>,
    /// Host address the ports are published on (every IPv4 and IPv6 address by default).
    pub(crate) bind: Option<Spanned<String>>,
    /// Proxies in front of the gateway (Cloudflare, a router) whose `X-Forwarded-For` the
    /// gateway believes: CIDR ranges or addresses.
    #[serde(default)]
    pub(crate) trusted_proxies: Vec<Spanned<String>>,
    /// Compress responses (zstd, gzip) for clients that accept it; on by default.
    pub(crate) compress: Option<Spanned<bool>>,
    /// `auto` (public certificates; `tls internal` for LAN names), `internal`, or `off`.
    pub(crate) https: Option<Spanned<String>>,
    /// Email given to the ACME CA for automatic certificates.
    pub(crate) email: Option<Spanned<String>>,
    /// Host path of an HTML file shown (status 503) while a service is down.
    pub(crate) maintenance_page: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBackup {
    pub(crate) dest: Option<Spanned<String>>,
    /// systemd `OnCalendar=` expression.
    pub(crate) schedule: Option<Spanned<String>>,
    pub(crate) compress: Option<Spanned<String>>,
    pub(crate) level: Option<Spanned<i64>>,
    pub(crate) keep_last: Option<Spanned<i64>>,
    pub(crate) keep_daily: Option<Spanned<i64>>,
    pub(crate) keep_weekly: Option<Spanned<i64>>,
    pub(crate) keep_monthly: Option<Spanned<i64>>,
    /// Days between full archives; the nights between write differentials. 1: always full.
    pub(crate) full_every_days: Option<Spanned<i64>>,
    /// Off-device copies of each new archive (`[[backup.copy]]`).
    #[serde(default)]
    pub(crate) copy: Vec<RawCopy>,
}

/// `[[backup.copy]]`: where archives are copied once verified, and which copies are kept there.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCopy {
    /// How commands name it (`backups --copy NAME`, `restore --from NAME`).
    pub(crate) name: Spanned<String>,
    /// A directory on a mounted disk (USB, NAS share).
    pub(crate) path: Option<Spanned<String>>,
    /// Or a bucket of an S3-compatible object store.
    pub(crate) s3: Option<Spanned<RawS3>>,
    /// age recipients (`age1…`): copies are encrypted to them; the Pi holds no key that
    /// decrypts them.
    #[serde(default)]
    pub(crate) encrypt_to: Vec<Spanned<String>>,
    pub(crate) keep_last: Option<Spanned<i64>>,
    pub(crate) keep_daily: Option<Spanned<i64>>,
    pub(crate) keep_weekly: Option<Spanned<i64>>,
    pub(crate) keep_monthly: Option<Spanned<i64>>,
}

/// `s3 = { endpoint, region, bucket, prefix, credentials }` of a `[[backup.copy]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawS3 {
    /// `https://s3.eu-central-003.backblazeb2.com`, `http://nas.local:9000`.
    pub(crate) endpoint: Spanned<String>,
    pub(crate) region: Option<Spanned<String>>,
    pub(crate) bucket: Spanned<String>,
    /// Prepended to every object key (`home/`).
    pub(crate) prefix: Option<Spanned<String>>,
    /// Absolute path of the file holding the access key id and secret (mode 0600).
    pub(crate) credentials: Spanned<String>,
    /// `path` (`endpoint/bucket/key`, default: what every S3-compatible server answers) or
    /// `virtual` (`bucket.endpoint/key`).
    pub(crate) style: Option<Spanned<String>>,
}

/// One service: a `[[service]]` table of a profile, or a file under `/etc/pi-setup/services/`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    pub(crate) name: Spanned<String>,
    pub(crate) image: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) domains: Vec<Spanned<String>>,
    /// The port the service listens on inside its container (what the gateway proxies to).
    pub(crate) port: Option<Spanned<i64>>,
    #[serde(default)]
    pub(crate) env: BTreeMap<String, Spanned<String>>,
    /// `SUBDIR:/container/path[:ro]`, SUBDIR relative to `/var/vol/<name>`.
    #[serde(default)]
    pub(crate) volumes: Vec<Spanned<RawVolume>>,
    pub(crate) layout: Option<Spanned<String>>,
    pub(crate) restart: Option<Spanned<String>>,
    pub(crate) command: Option<Vec<String>>,
    /// `public` (default), `lan` (private source addresses only) or `auth` (HTTP basic auth).
    pub(crate) access: Option<Spanned<String>>,
    pub(crate) auth_user: Option<Spanned<String>>,
    /// bcrypt hash of the password (never the password itself).
    pub(crate) auth_hash: Option<Spanned<String>>,
    /// Memory limit: bytes, or with a suffix k/m/g (`512m`).
    pub(crate) memory: Option<Spanned<String>>,
    /// CPU limit in cores (`1.5`).
    pub(crate) cpus: Option<Spanned<Number>>,
    /// Run inside the container; non-zero exit means unhealthy. A string runs in a shell
    /// (`CMD-SHELL`); a list runs as it is (`CMD`, for images without a shell).
    pub(crate) health_cmd: Option<Spanned<StringOrList>>,
    /// How long one check may take (default: the interval, at most 30s).
    pub(crate) health_timeout: Option<Spanned<String>>,
    /// Failures in a row before unhealthy (default 3).
    pub(crate) health_retries: Option<Spanned<i64>>,
    /// Grace time after start when failures do not count (default: the interval).
    pub(crate) health_start_period: Option<Spanned<String>>,
    /// The user the container runs as: `uid[:gid]` or a name the image knows.
    pub(crate) user: Option<Spanned<String>>,
    /// `30s`, `1m`, `2m30s`.
    pub(crate) health_interval: Option<Spanned<String>>,
    /// Host ports this service publishes itself, bypassing the gateway: `[IP:]HOST:CONTAINER`.
    /// Empty by default; only for what cannot go through HTTP routing.
    #[serde(default)]
    pub(crate) publish: Vec<Spanned<String>>,
    /// How the nightly backup keeps this service's directory consistent.
    pub(crate) backup: Option<RawServiceBackup>,
    /// Routes by host and path prefix: `{ host = "example.com", path = "/graphiql", port = 8080,
    /// strip = true }` (path default "/", port default `port`, strip default false).
    #[serde(default)]
    pub(crate) routes: Vec<Spanned<RawRoute>>,
    /// Files the gateway serves itself from a directory of this service's volume, read-only:
    /// `{ host = "example.com", path = "/static", dir = "static" }`.
    #[serde(default, rename = "static")]
    pub(crate) statics: Vec<Spanned<RawStatic>>,
    /// Another service's sub-directory, mounted read-only: `SERVICE:SUBDIR:/container/path`
    /// (a web app's static files for a second server, say).
    #[serde(default)]
    pub(crate) mounts: Vec<Spanned<String>>,
    /// Secrets shared with other services: files under `/etc/pi-setup/secrets/`
    /// (`shared/app.env`), 0600, `KEY=value` lines; this service's own secrets file wins.
    #[serde(default)]
    pub(crate) env_files: Vec<Spanned<String>>,
    /// Build the image here instead of pulling one: `{ context = "/srv/app", dockerfile =
    /// "Dockerfile" }`; rebuilt when anything in the context changes.
    pub(crate) build: Option<Spanned<RawBuild>>,
    /// For a job: how long it may run (default 30m).
    pub(crate) timeout: Option<Spanned<String>>,
    /// For a job: also run it on this systemd calendar (`OnCalendar=`), through a timer.
    pub(crate) schedule: Option<Spanned<String>>,
    /// Services started before this one: names, or `{ name = "db", condition = "healthy" }`.
    #[serde(default)]
    pub(crate) depends_on: Vec<Spanned<RawDependency>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub(crate) host: String,
    pub(crate) path: Option<String>,
    pub(crate) port: Option<i64>,
    #[serde(default)]
    pub(crate) strip: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStatic {
    pub(crate) host: String,
    pub(crate) path: String,
    /// A sub-directory of the service's own directory.
    pub(crate) dir: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBuild {
    /// The build context: an absolute host path (under `--root`).
    pub(crate) context: String,
    /// Relative to the context (default `Dockerfile`).
    pub(crate) dockerfile: Option<String>,
}

/// One entry of `depends_on`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawDependency {
    Name(String),
    Table(RawDependencyTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDependencyTable {
    pub(crate) name: String,
    /// `started` (default) or `healthy`.
    pub(crate) condition: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServiceBackup {
    /// `stop` (default when the service has a volume), `live`, or `exec`.
    pub(crate) mode: Option<Spanned<String>>,
    /// For `exec`: shell commands run inside the running container first, in order.
    #[serde(default)]
    pub(crate) exec: Vec<Spanned<String>>,
}

/// A volume: `SUBDIR:/container/path[:ro]`, or a table that can also set the directory's
/// owner and mode (for images that run as another user).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawVolume {
    Short(String),
    Table(RawVolumeTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVolumeTable {
    /// SUBDIR of /var/vol/<name>.
    pub(crate) path: String,
    /// Where it is mounted in the container.
    pub(crate) target: String,
    #[serde(default)]
    pub(crate) read_only: bool,
    /// Numeric `uid:gid` the directory belongs to (kept so: set again if it changes).
    pub(crate) owner: Option<String>,
    /// Octal, e.g. `"0750"`.
    pub(crate) mode: Option<String>,
}

/// A string or a list of strings (a command in shell or exec form).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub(crate) enum StringOrList {
    String(String),
    List(Vec<String>),
}

/// A TOML integer or float.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq)]
#[serde(untagged)]
pub(crate) enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    pub(crate) fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }
}

/// Parses a profile, turning TOML and shape errors into errors that name file, line and column.
pub(crate) fn parse_profile(src: &Source) -> Result<RawProfile, ConfigError> {
    toml::from_str(&src.text).map_err(|e| src.toml_error(&e))
}

/// Parses one service file (the same fields as a `[[service]]` table).
pub(crate) fn parse_service(src: &Source) -> Result<RawService, ConfigError> {
    toml::from_str(&src.text).map_err(|e| src.toml_error(&e))
}
