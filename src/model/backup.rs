//! The `[backup]` table: destination, schedule, format and level, retention.

use crate::backup::Codec;
use crate::input::raw::RawBackup;
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
    Backup {
        dest,
        schedule,
        compress,
        level,
        keep_last: c.count(b.keep_last.as_ref(), "backup.keep_last", 3),
        keep_daily: c.count(b.keep_daily.as_ref(), "backup.keep_daily", 7),
        keep_weekly: c.count(b.keep_weekly.as_ref(), "backup.keep_weekly", 4),
        keep_monthly: c.count(b.keep_monthly.as_ref(), "backup.keep_monthly", 6),
    }
}
