//! UTC timestamps as they appear in archive names (`YYYYMMDDTHHMMSSZ`), plus the calendar
//! buckets retention needs (day, ISO week, month); a few lines of civil-date arithmetic
//! (Howard Hinnant's algorithms) instead of a date crate.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Between a differential's timestamp and its full's in its file name.
pub(crate) const DIFF_INFIX: &str = ".diff-";

/// Whole seconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Timestamp(i64);

impl Timestamp {
    pub(crate) fn now() -> Self {
        Self::from(SystemTime::now())
    }

    #[cfg(test)]
    pub(crate) fn from_unix(secs: i64) -> Self {
        Timestamp(secs)
    }

    #[cfg(test)]
    pub(crate) fn unix(self) -> i64 {
        self.0
    }

    /// Parses exactly `YYYYMMDDTHHMMSSZ`.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let part = &s[r];
            part.bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| part.parse().ok())?
        };
        let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
        let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 59 {
            return None;
        }
        let t = Timestamp(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se);
        // Rejects dates like 0231 that the arithmetic would silently roll over.
        (t.to_string() == s).then_some(t)
    }

    /// What is between `<name>-` and the format suffix of an archive's file name: its
    /// timestamp, and for a differential (`<ts>.diff-<full's ts>`) the full's timestamp.
    pub(crate) fn parse_stem(s: &str) -> Option<(Self, Option<Self>)> {
        match s.split_once(DIFF_INFIX) {
            None => Some((Self::parse(s)?, None)),
            Some((at, base)) => {
                let (at, base) = (Self::parse(at)?, Self::parse(base)?);
                (base < at).then_some((at, Some(base)))
            }
        }
    }

    pub(crate) fn day(self) -> i64 {
        self.0.div_euclid(86_400)
    }

    /// ISO 8601 week as `year * 100 + week`: weeks start on Monday and belong to the year
    /// their Thursday falls in.
    pub(crate) fn iso_week(self) -> i64 {
        let day = self.day();
        let weekday = (day + 3).rem_euclid(7); // 1970-01-01 was a Thursday; Monday = 0
        let thursday = day - weekday + 3;
        let (year, _, _) = civil_from_days(thursday);
        let week = (thursday - days_from_civil(year, 1, 1)) / 7 + 1;
        year * 100 + week
    }

    pub(crate) fn month(self) -> i64 {
        let (year, month, _) = civil_from_days(self.day());
        year * 12 + month
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(d.as_secs() as i64),
            Err(e) => Timestamp(-(e.duration().as_secs_f64().ceil() as i64)),
        }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> Self {
        if t.0 >= 0 {
            UNIX_EPOCH + Duration::from_secs(t.0 as u64)
        } else {
            UNIX_EPOCH - Duration::from_secs(t.0.unsigned_abs())
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, mo, d) = civil_from_days(self.day());
        let secs = self.0.rem_euclid(86_400);
        write!(
            f,
            "{y:04}{mo:02}{d:02}T{:02}{:02}{:02}Z",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::Timestamp;

    #[test]
    fn formats_parses_and_buckets() {
        let t = Timestamp::parse("20240229T235959Z").expect("leap day parses");
        assert_eq!(t.unix(), 1_709_251_199);
        assert_eq!(t.to_string(), "20240229T235959Z");
        assert_eq!(Timestamp::parse("20230229T000000Z"), None);
        assert_eq!(Timestamp::parse("20240229T235959"), None);
        assert_eq!(Timestamp::parse("2024022xT235959Z"), None);
        // 2021-01-03 is a Sunday in ISO week 53 of 2020; 2021-01-04 starts week 1.
        let sunday = Timestamp::parse("20210103T120000Z").unwrap();
        let monday = Timestamp::parse("20210104T000000Z").unwrap();
        assert_eq!(sunday.iso_week(), 202053);
        assert_eq!(monday.iso_week(), 202101);
        assert_eq!(monday.month(), 2021 * 12 + 1);
        assert_eq!(Timestamp::from_unix(0).to_string(), "19700101T000000Z");
    }
}
