//! The `[backup]` table: destination, schedule, format and level, retention.

use crate::backup::Codec;
use crate::input::raw::{RawBackup, RawS3};
use crate::model::names::Name;
use crate::model::Checker;
use crate::model::HostFacts;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Backup {
    pub(crate) dest: String,
    pub(crate) schedule: String,
    pub(crate) compress: Codec,
    /// Checked against `compress`'s range.
    pub(crate) level: u32,
    pub(crate) keep_last: u32,
    pub(crate) keep_daily: u32,
    pub(crate) keep_weekly: u32,
    pub(crate) keep_monthly: u32,
    /// Days between full archives (1..=365); the nights between write differentials.
    pub(crate) full_every_days: u32,
    /// Off-device copies, in the profile's order.
    pub(crate) copies: Vec<CopyTarget>,
}

impl Backup {
    /// How long a full archive serves as the base of the nights' differentials; `None` when
    /// every archive is a full one (`full_every_days = 1`: runs hours apart must not make
    /// differentials either).
    pub(crate) fn full_every(&self) -> Option<std::time::Duration> {
        (self.full_every_days > 1)
            .then(|| std::time::Duration::from_secs(u64::from(self.full_every_days) * 86_400))
    }
}

/// An age X25519 recipient (a public key), checked.
#[derive(Debug, Clone)]
pub(crate) struct Recipient(pub(crate) age::x25519::Recipient);

impl PartialEq for Recipient {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

impl Eq for Recipient {}

/// A place archives are copied to once verified: a directory on a mounted disk, or a bucket of
/// an S3-compatible object store. Its retention defaults to the local one's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CopyTarget {
    pub(crate) name: Name,
    pub(crate) place: CopyPlace,
    /// Recipients the copies are encrypted to (none: copied as they are).
    pub(crate) encrypt_to: Vec<Recipient>,
    pub(crate) keep_last: u32,
    pub(crate) keep_daily: u32,
    pub(crate) keep_weekly: u32,
    pub(crate) keep_monthly: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CopyPlace {
    /// Absolute, as in the profile (moved under `--root` where it is used).
    Dir(String),
    S3(S3Place),
}

/// A bucket (and a key prefix in it) on an S3-compatible server, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct S3Place {
    /// `http(s)://host[:port]`, without a path.
    pub(crate) endpoint: String,
    pub(crate) region: String,
    pub(crate) bucket: String,
    /// Empty, or ends with '/'.
    pub(crate) prefix: String,
    /// Absolute path of the credentials file (read under `--root` when used).
    pub(crate) credentials: String,
    /// `bucket.host/key` instead of `host/bucket/key`.
    pub(crate) virtual_host: bool,
}

pub(super) fn backup(c: &mut Checker, b: &RawBackup, host: &HostFacts) -> Backup {
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
            } else if let Some(why) = (host.calendar_error)(v) {
                c.at(
                    s,
                    format!("backup.schedule {v:?} is not a systemd OnCalendar= expression: {why}"),
                );
            }
            v.clone()
        }
    };
    let keep_last = c.count(b.keep_last.as_ref(), "backup.keep_last", 3);
    let keep_daily = c.count(b.keep_daily.as_ref(), "backup.keep_daily", 7);
    let keep_weekly = c.count(b.keep_weekly.as_ref(), "backup.keep_weekly", 4);
    let keep_monthly = c.count(b.keep_monthly.as_ref(), "backup.keep_monthly", 6);
    let full_every_days = match &b.full_every_days {
        None => 7,
        Some(v) => {
            if let Ok(n @ 1..=365) = u32::try_from(*v.get_ref()) {
                n
            } else {
                c.at(
                    v,
                    format!(
                        "backup.full_every_days {} must be a number of days from 1 (every \
                         archive full) to 365",
                        v.get_ref()
                    ),
                );
                7
            }
        }
    };
    let mut copies: Vec<CopyTarget> = Vec::new();
    for raw in &b.copy {
        let name = match Name::parse(raw.name.get_ref()) {
            Ok(n) => {
                if copies.iter().any(|t| t.name == n) {
                    c.at(&raw.name, format!("backup.copy name \"{n}\" is used twice"));
                }
                n
            }
            Err(why) => {
                c.at(
                    &raw.name,
                    format!("backup.copy name {:?}: {why}", raw.name.get_ref()),
                );
                continue;
            }
        };
        let place = match (&raw.path, &raw.s3) {
            (Some(_), Some(s3)) => {
                c.at(
                    s3,
                    format!("backup.copy \"{name}\" has both path and s3: a copy target is one or the other"),
                );
                continue;
            }
            (None, None) => {
                c.at(
                    &raw.name,
                    format!("backup.copy \"{name}\" needs path = \"/mnt/...\" (a directory on a mounted disk) or s3 = {{ endpoint = ..., bucket = ..., credentials = ... }}"),
                );
                continue;
            }
            (None, Some(s3)) => CopyPlace::S3(s3_place(c, s3.get_ref())),
            (Some(path), None) => CopyPlace::Dir(copy_path(c, path, &dest)),
        };
        let mut encrypt_to = Vec::new();
        for r in &raw.encrypt_to {
            match r.get_ref().parse::<age::x25519::Recipient>() {
                Ok(key) => encrypt_to.push(Recipient(key)),
                Err(why) => c.at(
                    r,
                    format!(
                        "backup.copy encrypt_to {:?} is not an age recipient (age1…, as age-keygen prints it): {why}",
                        r.get_ref()
                    ),
                ),
            }
        }
        copies.push(CopyTarget {
            name,
            place,
            encrypt_to,
            keep_last: c.count(raw.keep_last.as_ref(), "backup.copy keep_last", keep_last),
            keep_daily: c.count(
                raw.keep_daily.as_ref(),
                "backup.copy keep_daily",
                keep_daily,
            ),
            keep_weekly: c.count(
                raw.keep_weekly.as_ref(),
                "backup.copy keep_weekly",
                keep_weekly,
            ),
            keep_monthly: c.count(
                raw.keep_monthly.as_ref(),
                "backup.copy keep_monthly",
                keep_monthly,
            ),
        });
    }
    Backup {
        dest,
        schedule,
        compress,
        level,
        keep_last,
        keep_daily,
        keep_weekly,
        keep_monthly,
        full_every_days,
        copies,
    }
}

/// A `path = ...` copy target: absolute, outside /var/vol and the local destination.
fn copy_path(c: &mut Checker, path: &toml::Spanned<String>, dest: &str) -> String {
    let v = path.get_ref();
    let norm = v.trim_end_matches('/');
    let inside = |dir: &str| norm == dir || norm.starts_with(&format!("{dir}/"));
    if !v.starts_with('/') || v.split('/').any(|p| p == ".." || p == ".") || norm.is_empty() {
        c.at(
            path,
            format!("backup.copy path {v:?} must be an absolute path without '.' or '..'"),
        );
    } else if v.chars().any(char::is_control) {
        c.at(
            path,
            format!("backup.copy path {v:?} contains a control character"),
        );
    } else if inside("/var/vol") {
        c.at(
            path,
            format!(
                "backup.copy path {v:?} must not be inside /var/vol (it is what gets backed up)"
            ),
        );
    } else if inside(dest.trim_end_matches('/'))
        || dest.trim_end_matches('/').starts_with(&format!("{norm}/"))
    {
        c.at(
            path,
            format!("backup.copy path {v:?} overlaps backup.dest {dest:?}: a copy must be somewhere else"),
        );
    }
    v.clone()
}

/// An `s3 = { ... }` copy target, every field checked (all errors collected).
fn s3_place(c: &mut Checker, raw: &RawS3) -> S3Place {
    let endpoint = raw.endpoint.get_ref();
    if let Err(why) = check_endpoint(endpoint) {
        c.at(
            &raw.endpoint,
            format!("backup.copy s3.endpoint {endpoint:?} {why}"),
        );
    }
    let region = raw
        .region
        .as_ref()
        .map_or("us-east-1", |r| r.get_ref().as_str());
    if let Some(r) = &raw.region {
        let ok = !region.is_empty()
            && region.len() <= 64
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            c.at(
                r,
                format!("backup.copy s3.region {region:?} must be a region name like us-east-1 (lowercase letters, digits, '-')"),
            );
        }
    }
    let bucket = raw.bucket.get_ref();
    if let Err(why) = check_bucket(bucket) {
        c.at(
            &raw.bucket,
            format!("backup.copy s3.bucket {bucket:?} {why}"),
        );
    }
    let mut prefix = raw
        .prefix
        .as_ref()
        .map(|p| p.get_ref().clone())
        .unwrap_or_default();
    if let Some(p) = &raw.prefix {
        if prefix.starts_with('/')
            || prefix.split('/').any(|s| s == ".." || s == ".")
            || prefix.contains("//")
        {
            c.at(
                p,
                format!("backup.copy s3.prefix {prefix:?} must not start with '/' nor have '.', '..' or empty parts"),
            );
        } else if prefix.chars().any(char::is_control) || prefix.len() > 512 {
            c.at(
                p,
                format!("backup.copy s3.prefix {prefix:?} must be at most 512 bytes without control characters"),
            );
        }
    }
    // `home` and `home/` both mean the folder `home/`.
    if !prefix.is_empty() && !prefix.ends_with('/') {
        prefix.push('/');
    }
    let credentials = raw.credentials.get_ref();
    if !credentials.starts_with('/')
        || credentials.split('/').any(|p| p == ".." || p == ".")
        || credentials.ends_with('/')
        || credentials.chars().any(char::is_control)
    {
        c.at(
            &raw.credentials,
            format!("backup.copy s3.credentials {credentials:?} must be the absolute path of a file (e.g. /etc/pi-setup/secrets/NAME.s3)"),
        );
    }
    let virtual_host = match &raw.style {
        None => false,
        Some(s) => match s.get_ref().as_str() {
            "path" => false,
            "virtual" => true,
            other => {
                c.at(
                    s,
                    format!("backup.copy s3.style {other:?} is not one of path, virtual"),
                );
                false
            }
        },
    };
    S3Place {
        endpoint: endpoint.trim_end_matches('/').to_string(),
        region: region.to_string(),
        bucket: bucket.clone(),
        prefix,
        credentials: credentials.clone(),
        virtual_host,
    }
}

/// `http(s)://host[:port]`: nothing else (no user, path, query) has a meaning there.
fn check_endpoint(v: &str) -> Result<(), &'static str> {
    let url = url::Url::parse(v).map_err(|_| "is not a URL (http://host:port or https://host)")?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must start with https:// (or http:// on a trusted network)");
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not hold credentials (they go in the credentials file)");
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err("must be only scheme, host and port (the bucket and prefix are set apart)");
    }
    Ok(())
}

/// S3's bucket naming rules (the general-purpose ones, which every compatible server accepts).
fn check_bucket(b: &str) -> Result<(), &'static str> {
    let bytes = b.as_bytes();
    let edge_ok = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !(3..=63).contains(&b.len()) {
        return Err("must be 3 to 63 characters long");
    }
    if !bytes.iter().all(|&c| edge_ok(c) || c == b'.' || c == b'-') {
        return Err("may only hold lowercase letters, digits, '.' and '-'");
    }
    if !edge_ok(bytes[0]) || !edge_ok(bytes[b.len() - 1]) {
        return Err("must start and end with a lowercase letter or a digit");
    }
    if b.contains("..") || b.contains(".-") || b.contains("-.") {
        return Err("must not have '..', '.-' or '-.'");
    }
    if b.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err("must not look like an IP address");
    }
    if b.starts_with("xn--") || b.starts_with("sthree-") || b.ends_with("-s3alias") {
        return Err("must not start with xn-- or sthree-, nor end with -s3alias");
    }
    Ok(())
}
