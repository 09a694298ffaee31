//! The `[backup]` table: destination, schedule, format and level, retention.

use crate::backup::Codec;
use crate::input::raw::RawBackup;
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
    /// Off-device copies, in the profile's order.
    pub(crate) copies: Vec<CopyTarget>,
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

/// A place archives are copied to once verified: a directory on a mounted disk. Its retention
/// defaults to the local one's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CopyTarget {
    pub(crate) name: Name,
    /// Absolute, as in the profile (moved under `--root` where it is used).
    pub(crate) path: String,
    /// Recipients the copies are encrypted to (none: copied as they are).
    pub(crate) encrypt_to: Vec<Recipient>,
    pub(crate) keep_last: u32,
    pub(crate) keep_daily: u32,
    pub(crate) keep_weekly: u32,
    pub(crate) keep_monthly: u32,
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
        let Some(path) = &raw.path else {
            c.at(
                &raw.name,
                format!("backup.copy \"{name}\" needs path = \"/mnt/...\" (a directory on a mounted disk)"),
            );
            continue;
        };
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
                format!("backup.copy path {v:?} must not be inside /var/vol (it is what gets backed up)"),
            );
        } else if inside(dest.trim_end_matches('/'))
            || dest.trim_end_matches('/').starts_with(&format!("{norm}/"))
        {
            c.at(
                path,
                format!("backup.copy path {v:?} overlaps backup.dest {dest:?}: a copy must be somewhere else"),
            );
        }
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
            path: v.clone(),
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
        copies,
    }
}
