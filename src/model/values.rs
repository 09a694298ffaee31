//! Parsers for the small value languages of a service definition: sizes, durations, published
//! ports, volumes. Pure functions from text to a value or the reason it is not one.

use std::net::IpAddr;

use crate::model::service::{Mount, Publish};

/// An environment variable name Docker and the programs in containers take: a letter or `_`,
/// then letters, digits, `_`, `.` or `-` (Elasticsearch reads `discovery.type`, Spring
/// `server.port`). No `=`, space or control character can get in.
pub(crate) fn env_name_ok(k: &str) -> bool {
    k.chars()
        .next()
        .is_some_and(|ch| ch.is_ascii_alphabetic() || ch == '_')
        && k.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-'))
}

/// Docker's smallest memory limit.
pub(crate) const MIN_MEMORY: i64 = 6 * 1024 * 1024;
/// A sane largest one (far beyond any Pi): a typo like `512000g` is caught.
pub(crate) const MAX_MEMORY: i64 = 1024 * 1024 * 1024 * 1024;

/// `512m`, `2g`, `1.5g`, `1048576` → bytes (`i64::MAX` for anything larger); None when
/// malformed or zero. Only digits
/// and one `.`: `inf`, `nan` and `1e300` (which `f64` would take) are not sizes.
pub(crate) fn parse_bytes(s: &str) -> Option<i64> {
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
pub(crate) fn parse_duration(s: &str) -> Option<u64> {
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
pub(crate) const MAX_HEALTH_INTERVAL_SECS: u64 = 24 * 3600;

/// Whether `s` is shaped like a duration (`45`, `30s`, `1m30s`, `1.5s`, `500ms`, ...),
/// whatever its size: digits (with at most one `.`) each followed by a unit, or digits alone.
fn duration_shaped(s: &str) -> bool {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) {
        return true;
    }
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..n];
        if !num.contains(|c: char| c.is_ascii_digit()) || num.matches('.').count() > 1 {
            return false;
        }
        // `ms` before `m`: "5ms" is one token.
        let Some(after) = ["ms", "s", "m", "h"]
            .iter()
            .find_map(|u| rest[n..].strip_prefix(u))
        else {
            return false;
        };
        rest = after;
    }
    !s.is_empty()
}

/// A health check duration in milliseconds: `500ms`, `1.5s`, `30s`, `1m30s`, `2h`, or plain
/// seconds (`45`). None when malformed or beyond a `u64` of milliseconds.
pub(crate) fn parse_duration_ms(s: &str) -> Option<u64> {
    if let Ok(n) = s.parse::<u64>() {
        return n.checked_mul(1000);
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let per_unit: u64 = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return None,
        };
        let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
        if whole.is_empty() && frac.is_empty() || frac.len() > 3 || frac.contains('.') {
            return None;
        }
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        let frac_ms: u64 = if frac.is_empty() {
            0
        } else {
            // Thousandths of a unit, then in milliseconds; a fraction of a millisecond is
            // refused rather than rounded.
            let thousandths = frac.parse::<u64>().ok()? * 10u64.pow(3 - frac.len() as u32);
            let ms = thousandths * per_unit;
            if !ms.is_multiple_of(1000) {
                return None;
            }
            ms / 1000
        };
        total = total.checked_add(whole.checked_mul(per_unit)?.checked_add(frac_ms)?)?;
        rest = tail;
    }
    (!s.is_empty()).then_some(total)
}

/// A health check interval or timeout in milliseconds: 1ms (Docker's least) to 24h.
pub(crate) fn check_health_interval(s: &str) -> Result<u64, String> {
    match parse_duration_ms(s) {
        Some(ms) if (1..=MAX_HEALTH_INTERVAL_SECS * 1000).contains(&ms) => Ok(ms),
        Some(_) => Err(format!("health_interval {s:?} is out of range: 1ms to 24h")),
        None if duration_shaped(s) => {
            Err(format!("health_interval {s:?} is out of range: 1ms to 24h"))
        }
        None => Err(format!(
            "health_interval {s:?} must be a duration like 500ms, 1.5s, 30s, 1m or 1m30s"
        )),
    }
}

/// `[IP:]HOST:CONTAINER`
pub(crate) fn parse_publish(s: &str) -> Result<Publish, String> {
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
pub(crate) fn parse_volume(s: &str) -> Result<Mount, String> {
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
        owner: None,
        mode: None,
    })
}
