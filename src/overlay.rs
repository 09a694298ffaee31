//! Overlays: named file trees (`overlays/<name>/etc/...`, embedded in the binary, or a user's
//! own beside the profile) that `install` lays onto the host root, each with a manifest that
//! declares modes and owners (git keeps neither) and how a file the host already has is merged.
//!
//! Pure, apart from reading the host files it merges into: what to write comes out as a list of
//! `FileChange`s (with a unified diff for `--dry-run` and for the merge `install` shows), and
//! `host::overlay` writes them. A host file that already holds other content is kept once as
//! `<file>.pi-setup-orig`, so `uninstall` can put it back byte for byte.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::BadInput;
use crate::host::paths::Paths;

/// How an overlay file meets a file the host already has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Merge {
    /// JSON objects merged key by key, recursively: the host's other keys stay, ours win.
    Json,
    /// `key=value` lines per `[section]` set; every other line stays as it was.
    Ini,
    /// Each of our lines appended when the file lacks it.
    Lines,
    /// The file is ours.
    Replace,
}

#[derive(Debug, Clone)]
pub(crate) struct OverlayFile {
    /// Absolute host path (`/etc/docker/daemon.json`).
    pub(crate) path: String,
    pub(crate) contents: Vec<u8>,
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) merge: Merge,
    /// Only on hosts that have this path.
    pub(crate) when_exists: Option<String>,
    /// The Docker daemon reads it only when it starts.
    pub(crate) restarts_docker: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Overlay {
    pub(crate) name: String,
    /// What it is for (the shipped ones must say; a test checks).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) description: Option<String>,
    pub(crate) files: Vec<OverlayFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    description: Option<String>,
    #[serde(default, rename = "file")]
    files: Vec<RawFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    path: String,
    mode: String,
    owner: Option<String>,
    merge: Option<String>,
    when_exists: Option<String>,
    restart: Option<String>,
}

/// The manifest's name inside an overlay directory (not laid onto the host).
pub(crate) const MANIFEST: &str = "manifest.toml";

/// Builds an overlay from its manifest and its files (relative paths → contents). Every file
/// must be in the manifest and every manifest entry must have its file.
pub(crate) fn parse(
    name: &str,
    manifest: &str,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<Overlay, String> {
    let raw: RawManifest = toml::from_str(manifest).map_err(|e| format!("{MANIFEST}: {e}"))?;
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for f in &raw.files {
        let rel = f.path.trim_start_matches('/');
        let bad_path = rel.is_empty()
            || Path::new(rel)
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)));
        if bad_path {
            problems.push(format!("{:?}: not a path inside the host root", f.path));
            continue;
        }
        let Some(contents) = files.get(rel) else {
            problems.push(format!("{rel}: in {MANIFEST} but not in the overlay"));
            continue;
        };
        let mode = match u32::from_str_radix(f.mode.trim_start_matches("0o"), 8) {
            Ok(m) if m <= 0o7777 => m,
            _ => {
                problems.push(format!(
                    "{rel}: mode {:?} is not octal like \"0644\"",
                    f.mode
                ));
                continue;
            }
        };
        let owner = f.owner.as_deref().unwrap_or("0:0");
        let Some((uid, gid)) = owner
            .split_once(':')
            .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)))
        else {
            problems.push(format!("{rel}: owner {owner:?} is not numeric uid:gid"));
            continue;
        };
        let merge = match f.merge.as_deref().unwrap_or("replace") {
            "json" => Merge::Json,
            "ini" => Merge::Ini,
            "lines" => Merge::Lines,
            "replace" => Merge::Replace,
            other => {
                problems.push(format!(
                    "{rel}: merge {other:?} is not one of json, ini, lines, replace"
                ));
                continue;
            }
        };
        let restarts_docker = match f.restart.as_deref() {
            None => false,
            Some("docker") => true,
            Some(other) => {
                problems.push(format!(
                    "{rel}: restart {other:?}: only \"docker\" is known"
                ));
                continue;
            }
        };
        if merge == Merge::Json {
            if let Err(e) = serde_json::from_slice::<serde_json::Value>(contents) {
                problems.push(format!("{rel}: not valid JSON: {e}"));
                continue;
            }
        }
        out.push(OverlayFile {
            path: format!("/{rel}"),
            contents: contents.clone(),
            mode,
            uid,
            gid,
            merge,
            when_exists: f.when_exists.clone(),
            restarts_docker,
        });
    }
    for rel in files.keys() {
        if !raw
            .files
            .iter()
            .any(|f| f.path.trim_start_matches('/') == rel)
        {
            problems.push(format!("{rel}: in the overlay but not in {MANIFEST}"));
        }
    }
    if problems.is_empty() {
        Ok(Overlay {
            name: name.to_string(),
            description: raw.description,
            files: out,
        })
    } else {
        Err(problems.join("; "))
    }
}

/// The overlays a profile names, in order: a directory `overlays/<name>/` beside the profile
/// file first (a user's own), else the one shipped in the binary.
pub(crate) fn load(names: &[String], profile_dir: Option<&Path>) -> Result<Vec<Overlay>, BadInput> {
    let mut out = Vec::new();
    for name in names {
        let bad = |why: String| BadInput(format!("overlay {name:?}: {why}"));
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(bad("not an overlay name".into()));
        }
        let user = profile_dir.map(|d| d.join("overlays").join(name));
        let overlay = match user {
            Some(dir) if dir.is_dir() => {
                let (manifest, files) = read_dir_overlay(&dir).map_err(bad)?;
                parse(name, &manifest, &files)
                    .map_err(|e| bad(format!("{}: {e}", dir.display())))?
            }
            _ => {
                let Some((_, entries)) = crate::input::shipped::OVERLAYS
                    .iter()
                    .find(|(n, _)| n == name)
                else {
                    let known: Vec<&str> = crate::input::shipped::OVERLAYS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect();
                    return Err(bad(format!(
                        "not shipped (shipped: {}) and no directory overlays/{name}/ beside the profile",
                        known.join(", ")
                    )));
                };
                let (manifest, files) = shipped_overlay(entries);
                parse(name, &manifest, &files).map_err(bad)?
            }
        };
        out.push(overlay);
    }
    Ok(out)
}

pub(crate) fn shipped_overlay(entries: &[(&str, &str)]) -> (String, BTreeMap<String, Vec<u8>>) {
    let mut manifest = String::new();
    let mut files = BTreeMap::new();
    for (rel, text) in entries {
        if *rel == MANIFEST {
            manifest = (*text).to_string();
        } else {
            files.insert((*rel).to_string(), text.as_bytes().to_vec());
        }
    }
    (manifest, files)
}

fn read_dir_overlay(dir: &Path) -> Result<(String, BTreeMap<String, Vec<u8>>), String> {
    let manifest = std::fs::read_to_string(dir.join(MANIFEST))
        .map_err(|e| format!("{}: {e}", dir.join(MANIFEST).display()))?;
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        for e in entries {
            let e = e.map_err(|e| format!("{}: {e}", d.display()))?;
            let p = e.path();
            let t = e.file_type().map_err(|e| format!("{}: {e}", p.display()))?;
            let rel = p
                .strip_prefix(dir)
                .unwrap_or(&p)
                .to_string_lossy()
                .into_owned();
            if t.is_dir() {
                stack.push(p);
            } else if t.is_file() && rel != MANIFEST {
                let bytes = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                files.insert(rel, bytes);
            } else if !t.is_file() {
                return Err(format!(
                    "{}: only regular files belong in an overlay",
                    p.display()
                ));
            }
        }
    }
    Ok((manifest, files))
}

/// One host file an overlay changes.
#[derive(Debug, Clone)]
pub(crate) struct FileChange {
    pub(crate) overlay: String,
    /// The host path as the user knows it (`/etc/docker/daemon.json`).
    pub(crate) shown: String,
    /// Where it is under `--root`.
    pub(crate) path: PathBuf,
    pub(crate) old: Option<Vec<u8>>,
    pub(crate) new: Vec<u8>,
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// The host's own file, with other content: kept as `<file>.pi-setup-orig` before the
    /// first write.
    pub(crate) keep_original: bool,
    pub(crate) restarts_docker: bool,
    /// The contents change (not only the mode or owner).
    pub(crate) content_changed: bool,
}

impl FileChange {
    /// `--- /etc/x (now)` / `+++ /etc/x (pi-setup)` unified diff of the contents.
    pub(crate) fn diff(&self) -> String {
        let old = String::from_utf8_lossy(self.old.as_deref().unwrap_or_default()).into_owned();
        let new = String::from_utf8_lossy(&self.new).into_owned();
        let before = if self.old.is_some() {
            format!("{} (now)", self.shown)
        } else {
            "/dev/null".to_string()
        };
        similar::TextDiff::from_lines(&old, &new)
            .unified_diff()
            .context_radius(3)
            .header(&before, &format!("{} (pi-setup)", self.shown))
            .to_string()
    }
}

/// The suffix of a host file kept before pi-setup first changed it.
pub(crate) const ORIG_SUFFIX: &str = ".pi-setup-orig";

pub(crate) fn orig_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(ORIG_SUFFIX);
    PathBuf::from(s)
}

/// What the overlays change on this host: reads each target file (and applies the overlays in
/// order when two name the same file) and returns only the files that differ.
pub(crate) fn plan(overlays: &[Overlay], paths: &Paths) -> Result<Vec<FileChange>, BadInput> {
    // Several overlays may touch one file: each merges into what the one before produced.
    let mut by_path: BTreeMap<String, FileChange> = BTreeMap::new();
    let mut order = Vec::new();
    for o in overlays {
        for f in &o.files {
            if let Some(cond) = &f.when_exists {
                if !paths.host(cond).exists() {
                    continue;
                }
            }
            let entry = if let Some(c) = by_path.remove(&f.path) {
                c
            } else {
                let path = paths.host(&f.path);
                // A symlink would be replaced by a file (or, unchanged, have its target's mode
                // and owner changed, wherever it points): refused, as for volume directories.
                if crate::host::stat(&path)
                    .map_err(|e| BadInput(e.to_string()))?
                    .is_some_and(|st| st.is_symlink)
                {
                    return Err(BadInput(format!(
                        "overlay {}: {} is a symlink; pi-setup writes only regular files there \
                         (replace the link with the file it points to)",
                        o.name,
                        path.display()
                    )));
                }
                let old = crate::host::read(&path).map_err(|e| BadInput(e.to_string()))?;
                order.push(f.path.clone());
                FileChange {
                    overlay: o.name.clone(),
                    shown: f.path.clone(),
                    path,
                    new: Vec::new(),
                    old,
                    mode: f.mode,
                    uid: f.uid,
                    gid: f.gid,
                    keep_original: false,
                    restarts_docker: false,
                    content_changed: false,
                }
            };
            let first = entry.new.is_empty() && !entry.content_changed;
            let current = if first {
                entry.old.as_deref()
            } else {
                Some(entry.new.as_slice())
            };
            let new = merge(f.merge, current, &f.contents).map_err(|why| {
                BadInput(format!(
                    "overlay {}: cannot merge into {}: {why}; fix it or move it aside",
                    o.name, f.path
                ))
            })?;
            by_path.insert(
                f.path.clone(),
                FileChange {
                    overlay: o.name.clone(),
                    new,
                    mode: f.mode,
                    uid: f.uid,
                    gid: f.gid,
                    restarts_docker: entry.restarts_docker || f.restarts_docker,
                    // Marks "merged at least once" for the next overlay on this path.
                    content_changed: true,
                    ..entry
                },
            );
        }
    }
    let mut out = Vec::new();
    for p in order {
        let mut c = by_path.remove(&p).expect("planned above");
        c.content_changed = c.old.as_deref() != Some(c.new.as_slice());
        let stat = crate::host::stat(&c.path).map_err(|e| BadInput(e.to_string()))?;
        let attrs_differ =
            stat.is_none_or(|s| s.mode != c.mode || s.uid != c.uid || s.gid != c.gid);
        if !c.content_changed && !attrs_differ {
            continue;
        }
        c.keep_original = c.content_changed && c.old.is_some();
        if !c.content_changed {
            c.restarts_docker = false;
        }
        out.push(c);
    }
    Ok(out)
}

/// Our file merged into the host's (`None`: the host has none).
pub(crate) fn merge(how: Merge, current: Option<&[u8]>, ours: &[u8]) -> Result<Vec<u8>, String> {
    let Some(current) = current else {
        return Ok(ours.to_vec());
    };
    match how {
        Merge::Replace => Ok(ours.to_vec()),
        Merge::Json => merge_json(current, ours),
        Merge::Ini => Ok(merge_ini(
            &String::from_utf8_lossy(current),
            &String::from_utf8_lossy(ours),
        )
        .into_bytes()),
        Merge::Lines => Ok(merge_lines(
            &String::from_utf8_lossy(current),
            &String::from_utf8_lossy(ours),
        )
        .into_bytes()),
    }
}

/// Sets `from`'s keys in `into`, recursing into objects both have.
fn deep_merge(into: &mut serde_json::Value, from: &serde_json::Value) {
    match (into, from) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => deep_merge(slot, v),
                    _ => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

fn merge_json(current: &[u8], ours: &[u8]) -> Result<Vec<u8>, String> {
    use serde_json::Value;
    let text = String::from_utf8_lossy(current);
    let mut have: Value = if text.trim().is_empty() {
        Value::Object(serde_json::Map::new())
    } else {
        serde_json::from_str(&text).map_err(|e| format!("not valid JSON ({e})"))?
    };
    let want: Value = serde_json::from_slice(ours).map_err(|e| e.to_string())?;
    if !have.is_object() {
        return Err("not a JSON object".into());
    }
    let before = have.clone();
    drop_other_drivers_log_opts(&mut have, &want);
    deep_merge(&mut have, &want);
    if have == before {
        // Same settings: the host's bytes (its formatting) stay.
        return Ok(current.to_vec());
    }
    let mut out = serde_json::to_vec_pretty(&have).map_err(|e| e.to_string())?;
    out.push(b'\n');
    Ok(out)
}

/// Docker's `daemon.json`: `log-opts` belong to `log-driver`, and dockerd refuses to start
/// with an option its driver does not know (`unknown log opt 'labels' for log driver local`).
/// When ours sets another driver than the host's (`json-file` when it names none), the host's
/// options the new driver does not take are dropped before the merge; `max-size` and the like
/// stay. Other JSON files have no `log-driver` in ours and are left alone.
fn drop_other_drivers_log_opts(have: &mut serde_json::Value, want: &serde_json::Value) {
    let Some(driver) = want.get("log-driver").and_then(|d| d.as_str()) else {
        return;
    };
    let theirs = have
        .get("log-driver")
        .and_then(|d| d.as_str())
        .unwrap_or("json-file");
    if theirs == driver {
        return;
    }
    // Options every driver takes (the daemon handles them), then the driver's own.
    let mut known = vec!["mode", "max-buffer-size"];
    known.extend_from_slice(match driver {
        "local" => &["max-size", "max-file", "compress"][..],
        "json-file" => &[
            "max-size",
            "max-file",
            "compress",
            "labels",
            "labels-regex",
            "env",
            "env-regex",
            "tag",
        ][..],
        _ => &[][..],
    });
    if let Some(opts) = have.get_mut("log-opts").and_then(|o| o.as_object_mut()) {
        opts.retain(|k, _| known.contains(&k.as_str()));
    }
}

/// `key=value` (or `key = value`) of a line that is neither blank, a comment nor a section.
fn ini_key(line: &str) -> Option<(&str, &str)> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') || t.starts_with(';') || t.starts_with('[') {
        return None;
    }
    t.split_once('=').map(|(k, v)| (k.trim(), v.trim()))
}

fn ini_section(line: &str) -> Option<&str> {
    let t = line.trim();
    t.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .map(str::trim)
}

fn merge_ini(current: &str, ours: &str) -> String {
    let mut lines: Vec<String> = current.lines().map(String::from).collect();
    let mut section = String::new();
    for line in ours.lines() {
        if let Some(s) = ini_section(line) {
            section = s.to_string();
            continue;
        }
        let Some((key, value)) = ini_key(line) else {
            continue;
        };
        let wanted = format!("{key}={value}");
        // Where this section starts and ends in the host's file, and the key if it is there.
        let mut cur = String::new();
        let mut found = None;
        let mut start = if section.is_empty() { Some(0) } else { None };
        let mut end = None;
        for (i, l) in lines.iter().enumerate() {
            if let Some(s) = ini_section(l) {
                if cur == section && start.is_some() && end.is_none() {
                    end = Some(i);
                }
                cur = s.to_string();
                if cur == section && start.is_none() {
                    start = Some(i + 1);
                }
                continue;
            }
            if cur == section {
                if let Some((k, _)) = ini_key(l) {
                    if k == key {
                        found = Some(i);
                    }
                }
            }
        }
        match (found, start) {
            (Some(i), _) => {
                if ini_key(&lines[i]).map(|(_, v)| v) != Some(value) {
                    lines[i] = wanted;
                }
            }
            (None, Some(s)) => {
                let mut at = end.unwrap_or(lines.len());
                while at > s && lines[at - 1].trim().is_empty() {
                    at -= 1;
                }
                lines.insert(at, wanted);
            }
            (None, None) => {
                if lines.last().is_some_and(|l| !l.trim().is_empty()) {
                    lines.push(String::new());
                }
                lines.push(format!("[{section}]"));
                lines.push(wanted);
            }
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

fn merge_lines(current: &str, ours: &str) -> String {
    let have: Vec<&str> = current.lines().map(str::trim).collect();
    let missing: Vec<&str> = ours
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !have.contains(l))
        .collect();
    if missing.is_empty() {
        return current.to_string();
    }
    let mut out = current.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("# added by pi-setup\n");
    for l in missing {
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// The record of what overlays wrote (`/var/lib/pi-setup/overlay-files.json`), so `uninstall`
/// knows which files to remove (pi-setup created them) or restore (from `.pi-setup-orig`).
#[derive(Debug, Default, serde::Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Written {
    /// Host path (`/etc/docker/daemon.json`) → whether pi-setup created the file.
    pub(crate) files: BTreeMap<String, bool>,
    /// Host files whose contents pi-setup left as they were but whose mode or owner it
    /// changed: their mode, uid and gid before the first change (no `.pi-setup-orig` holds
    /// them). Absent in records written before there was this field.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) attrs: BTreeMap<String, (u32, u32, u32)>,
}

impl Written {
    pub(crate) fn read(paths: &Paths) -> Result<Written, anyhow::Error> {
        let file = paths.overlay_record();
        match crate::host::read(&file)? {
            None => Ok(Written::default()),
            Some(b) => serde_json::from_slice(&b)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display())),
        }
    }

    fn write(&self, paths: &Paths) -> Result<(), anyhow::Error> {
        let mut text = serde_json::to_vec_pretty(self)?;
        text.push(b'\n');
        crate::host::write_atomic(&paths.overlay_record(), &text, 0o644)?;
        Ok(())
    }
}

/// Writes the planned files and records them (before writing, so a run cut short still leaves
/// `uninstall` knowing about every file it may have touched).
pub(crate) fn apply(changes: &[FileChange], paths: &Paths) -> Result<(), anyhow::Error> {
    if changes.is_empty() {
        return Ok(());
    }
    let mut record = Written::read(paths)?;
    for c in changes {
        let created = *record
            .files
            .entry(c.shown.clone())
            .or_insert(c.old.is_none());
        // Only the mode or owner changes, and nothing else keeps them: noted, once.
        if !created && !c.keep_original && !orig_path(&c.path).exists() {
            if let Some(st) = crate::host::stat(&c.path)? {
                record
                    .attrs
                    .entry(c.shown.clone())
                    .or_insert((st.mode, st.uid, st.gid));
            }
        }
    }
    record.write(paths)?;
    for c in changes {
        crate::host::write_overlay_file(c)?;
    }
    Ok(())
}

/// What `uninstall` did to one overlay file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Undone {
    /// The host's own file is back from `.pi-setup-orig`.
    Restored(String),
    /// pi-setup had created it: removed.
    Removed(String),
    /// The host's own file, whose contents pi-setup had left alone: its mode and owner are
    /// back as they were.
    ModeRestored(String),
    /// Left as it is (the host had it with the same contents, and no record of its mode before).
    Kept(String),
}

/// Undoes every overlay file in the record, then removes the record.
pub(crate) fn undo(paths: &Paths) -> Result<Vec<Undone>, anyhow::Error> {
    let record = Written::read(paths)?;
    let mut out = Vec::new();
    for (shown, created) in &record.files {
        let path = paths.host(shown);
        if crate::host::restore_original(&path)? {
            // Kept when pi-setup first changed only its mode, and the contents later: the copy
            // has the contents from before, the record the mode and owner from before.
            if let Some(&(mode, uid, gid)) = record.attrs.get(shown) {
                crate::host::set_mode_and_owner(&path, mode, uid, gid)?;
            }
            out.push(Undone::Restored(shown.clone()));
        } else if *created {
            crate::host::remove_file(&path)?;
            out.push(Undone::Removed(shown.clone()));
        } else if let Some(&(mode, uid, gid)) = record.attrs.get(shown) {
            if crate::host::stat(&path)?.is_some() {
                crate::host::set_mode_and_owner(&path, mode, uid, gid)?;
            }
            out.push(Undone::ModeRestored(shown.clone()));
        } else {
            out.push(Undone::Kept(shown.clone()));
        }
    }
    crate::host::remove_file(&paths.overlay_record())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;

    use super::{merge, merge_ini, merge_json, merge_lines, parse, plan, Merge};
    use crate::host::paths::Paths;

    #[test]
    fn json_keeps_the_hosts_keys_and_sets_ours() {
        let host =
            br#"{"data-root": "/mnt/docker", "log-opts": {"max-size": "1m", "labels": "x"}}"#;
        let ours =
            br#"{"log-driver": "local", "log-opts": {"max-size": "10m"}, "live-restore": true}"#;
        let out: serde_json::Value =
            serde_json::from_slice(&merge_json(host, ours).unwrap()).unwrap();
        assert_eq!(
            out,
            serde_json::json!({
                "data-root": "/mnt/docker",
                "log-driver": "local",
                // `labels` was json-file's (the host named no driver): `local` refuses it.
                "log-opts": {"max-size": "10m"},
                "live-restore": true
            })
        );
        // The host already on our driver: its options stay, also those we do not set.
        let same = br#"{"log-driver": "local", "log-opts": {"compress": "false"}}"#;
        let out: serde_json::Value =
            serde_json::from_slice(&merge_json(same, ours).unwrap()).unwrap();
        assert_eq!(
            out["log-opts"],
            serde_json::json!({"compress": "false", "max-size": "10m"})
        );
        // Another driver with its own options (journald's `tag`): dropped, `mode` kept.
        let journald = br#"{"log-driver": "journald", "log-opts": {"tag": "{{.Name}}", "mode": "non-blocking"}}"#;
        let out: serde_json::Value =
            serde_json::from_slice(&merge_json(journald, ours).unwrap()).unwrap();
        assert_eq!(
            out["log-opts"],
            serde_json::json!({"mode": "non-blocking", "max-size": "10m"})
        );
        // Already merged: the host's bytes stay as they are.
        let merged = merge_json(host, ours).unwrap();
        assert_eq!(merge_json(&merged, ours).unwrap(), merged);
        let formatted = b"{ \"live-restore\" : true }";
        assert_eq!(
            merge_json(formatted, br#"{"live-restore": true}"#).unwrap(),
            formatted
        );
        assert!(merge_json(b"{ nope", ours)
            .unwrap_err()
            .starts_with("not valid JSON"));
    }

    #[test]
    fn ini_sets_keys_in_their_section_and_keeps_every_other_line() {
        let host =
            "# mine\n[Journal]\n#SystemMaxUse=\nStorage=volatile\nCompress=yes\n\n[Other]\na=1\n";
        let ours = "# ours\n[Journal]\nStorage=persistent\nSystemMaxUse=64M\n[New]\nb = 2\n";
        let out = merge_ini(host, ours);
        assert_eq!(
            out,
            "# mine\n[Journal]\n#SystemMaxUse=\nStorage=persistent\nCompress=yes\nSystemMaxUse=64M\n\n[Other]\na=1\n\n[New]\nb=2\n"
        );
        assert_eq!(merge_ini(&out, ours), out, "a second merge changes nothing");
        // Keys outside any section (sysctl.d) go before the first section.
        assert_eq!(
            merge_ini(
                "net.core.somaxconn = 128\nvm.x=1\n",
                "net.core.somaxconn=4096\nnet.ipv4.ip_forward=1\n"
            ),
            "net.core.somaxconn=4096\nvm.x=1\nnet.ipv4.ip_forward=1\n"
        );
        assert_eq!(
            merge_ini("a = 1\n", "a=1\n"),
            "a = 1\n",
            "same value, other spacing"
        );
    }

    #[test]
    fn lines_are_appended_once() {
        let host = "hostname\nclientid\n";
        let out = merge_lines(host, "# why\ndenyinterfaces veth*\n");
        assert_eq!(
            out,
            "hostname\nclientid\n# added by pi-setup\ndenyinterfaces veth*\n"
        );
        assert_eq!(merge_lines(&out, "denyinterfaces veth*\n"), out);
        assert_eq!(
            merge_lines("a", "b\n"),
            "a\n# added by pi-setup\nb\n",
            "a last line without newline"
        );
    }

    #[test]
    fn a_file_the_host_lacks_is_ours_verbatim() {
        assert_eq!(
            merge(Merge::Ini, None, b"# c\n[a]\nb=1\n").unwrap(),
            b"# c\n[a]\nb=1\n"
        );
    }

    fn files(list: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        list.iter()
            .map(|(p, t)| ((*p).to_string(), t.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn apply_keeps_the_hosts_file_once_and_undo_puts_it_back_byte_for_byte() {
        let root = tempfile::tempdir().unwrap();
        let paths = Paths::new(root.path());
        let etc = root.path().join("etc/docker");
        std::fs::create_dir_all(&etc).unwrap();
        let theirs = b"{ \"data-root\": \"/mnt/x\" }";
        std::fs::write(etc.join("daemon.json"), theirs).unwrap();
        std::fs::set_permissions(
            etc.join("daemon.json"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let o = parse(
            "x",
            "[[file]]\npath = \"etc/docker/daemon.json\"\nmode = \"0644\"\nmerge = \"json\"\nrestart = \"docker\"\n\
             [[file]]\npath = \"etc/new.conf\"\nmode = \"0640\"\n",
            &files(&[("etc/docker/daemon.json", "{\"live-restore\": true}"), ("etc/new.conf", "n\n")]),
        )
        .unwrap();
        let changes = plan(std::slice::from_ref(&o), &paths).unwrap();
        assert!(changes[0].restarts_docker && changes[0].keep_original);
        super::apply(&changes, &paths).unwrap();
        let mode =
            |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(
            std::fs::read(etc.join("daemon.json.pi-setup-orig")).unwrap(),
            theirs
        );
        assert_eq!(mode(&etc.join("daemon.json.pi-setup-orig")), 0o600);
        assert_eq!(mode(&etc.join("daemon.json")), 0o644);
        assert_eq!(mode(&root.path().join("etc/new.conf")), 0o640);
        // The host's file edited again by hand: merged again, the first original still kept.
        std::fs::write(etc.join("daemon.json"), b"{\"debug\": true}").unwrap();
        super::apply(&plan(std::slice::from_ref(&o), &paths).unwrap(), &paths).unwrap();
        assert_eq!(
            std::fs::read(etc.join("daemon.json.pi-setup-orig")).unwrap(),
            theirs
        );
        let undone = super::undo(&paths).unwrap();
        assert_eq!(
            undone,
            [
                super::Undone::Restored("/etc/docker/daemon.json".into()),
                super::Undone::Removed("/etc/new.conf".into()),
            ]
        );
        assert_eq!(std::fs::read(etc.join("daemon.json")).unwrap(), theirs);
        assert_eq!(mode(&etc.join("daemon.json")), 0o600);
        assert!(!root.path().join("etc/new.conf").exists());
        assert!(!paths.overlay_record().exists());
    }

    #[test]
    fn a_host_file_whose_contents_already_match_gets_its_own_mode_back_on_undo() {
        let root = tempfile::tempdir().unwrap();
        let paths = Paths::new(root.path());
        let conf = root.path().join("etc/same.conf");
        std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
        std::fs::write(&conf, "same\n").unwrap();
        std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o600)).unwrap();
        let o = parse(
            "x",
            "[[file]]\npath = \"etc/same.conf\"\nmode = \"0644\"\n",
            &files(&[("etc/same.conf", "same\n")]),
        )
        .unwrap();
        let changes = plan(std::slice::from_ref(&o), &paths).unwrap();
        assert!(!changes[0].content_changed && !changes[0].keep_original);
        super::apply(&changes, &paths).unwrap();
        let mode =
            |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&conf), 0o644);
        // Applied again (mode changed by hand in between): the first mode is the one kept.
        std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o640)).unwrap();
        super::apply(&plan(std::slice::from_ref(&o), &paths).unwrap(), &paths).unwrap();
        assert_eq!(
            super::undo(&paths).unwrap(),
            [super::Undone::ModeRestored("/etc/same.conf".into())]
        );
        assert_eq!(mode(&conf), 0o600);
        assert_eq!(std::fs::read(&conf).unwrap(), b"same\n");
        assert!(!paths.overlay_record().exists());

        // Its mode first, then (a newer overlay) its contents: both come back.
        super::apply(&plan(std::slice::from_ref(&o), &paths).unwrap(), &paths).unwrap();
        let newer = parse(
            "x",
            "[[file]]\npath = \"etc/same.conf\"\nmode = \"0644\"\n",
            &files(&[("etc/same.conf", "other\n")]),
        )
        .unwrap();
        let changes = plan(std::slice::from_ref(&newer), &paths).unwrap();
        assert!(changes[0].keep_original);
        super::apply(&changes, &paths).unwrap();
        assert_eq!(
            super::undo(&paths).unwrap(),
            [super::Undone::Restored("/etc/same.conf".into())]
        );
        assert_eq!(std::fs::read(&conf).unwrap(), b"same\n");
        assert_eq!(mode(&conf), 0o600);
    }

    #[test]
    fn a_users_overlay_beside_the_profile_wins_over_a_shipped_one_and_unknown_names_fail() {
        let dir = tempfile::tempdir().unwrap();
        let mine = dir.path().join("overlays/base/etc");
        std::fs::create_dir_all(&mine).unwrap();
        std::fs::write(mine.join("motd"), "my Pi\n").unwrap();
        std::fs::write(
            dir.path().join("overlays/base/manifest.toml"),
            "[[file]]\npath = \"etc/motd\"\nmode = \"0640\"\nowner = \"0:4\"\n",
        )
        .unwrap();
        let names = vec!["base".to_string()];
        let o = super::load(&names, Some(dir.path())).unwrap();
        assert_eq!(o[0].files.len(), 1);
        assert_eq!(
            (
                o[0].files[0].path.as_str(),
                o[0].files[0].mode,
                o[0].files[0].gid
            ),
            ("/etc/motd", 0o640, 4)
        );
        let shipped = super::load(&names, None).unwrap();
        assert!(shipped[0]
            .files
            .iter()
            .any(|f| f.path == "/etc/docker/daemon.json"));
        let e = super::load(&["nope".to_string()], Some(dir.path())).unwrap_err();
        assert_eq!(
            e.to_string(),
            "overlay \"nope\": not shipped (shipped: base) and no directory overlays/nope/ beside the profile"
        );
        assert!(super::load(&["../x".to_string()], None).is_err());
    }

    #[test]
    fn a_manifest_must_list_every_file_with_a_mode_and_a_known_merge() {
        let e = parse(
            "x",
            "[[file]]\npath = \"etc/a\"\nmode = \"0644\"\n[[file]]\npath = \"etc/b\"\nmode = \"9\"\n[[file]]\npath = \"../c\"\nmode = \"0644\"\n[[file]]\npath = \"etc/d\"\nmode = \"0644\"\nmerge = \"yaml\"\n",
            &files(&[("etc/b", ""), ("etc/d", ""), ("etc/e", "")]),
        )
        .unwrap_err();
        assert_eq!(
            e,
            "etc/a: in manifest.toml but not in the overlay; etc/b: mode \"9\" is not octal like \"0644\"; \"../c\": not a path inside the host root; etc/d: merge \"yaml\" is not one of json, ini, lines, replace; etc/e: in the overlay but not in manifest.toml"
        );
        let o = parse(
            "x",
            "[[file]]\npath = \"/etc/a\"\nmode = \"0600\"\nowner = \"1:2\"\nrestart = \"docker\"\n",
            &files(&[("etc/a", "x")]),
        )
        .unwrap();
        assert_eq!(
            (
                o.files[0].path.as_str(),
                o.files[0].mode,
                o.files[0].uid,
                o.files[0].gid,
                o.files[0].restarts_docker
            ),
            ("/etc/a", 0o600, 1, 2, true)
        );
    }

    #[test]
    fn a_target_that_is_a_symlink_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let paths = Paths::new(root.path());
        let o = parse(
            "x",
            "[[file]]\npath = \"etc/a.conf\"\nmode = \"0644\"\nmerge = \"ini\"\n",
            &files(&[("etc/a.conf", "k=v\n")]),
        )
        .unwrap();
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        let outside = root.path().join("outside.conf");
        std::fs::write(&outside, "k=old\n").unwrap();
        std::os::unix::fs::symlink(&outside, root.path().join("etc/a.conf")).unwrap();
        let err = plan(std::slice::from_ref(&o), &paths)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is a symlink"), "{err}");
        assert_eq!(std::fs::read(&outside).unwrap(), b"k=old\n");
    }

    #[test]
    fn the_plan_skips_files_whose_condition_fails_and_files_already_right() {
        let root = tempfile::tempdir().unwrap();
        let paths = Paths::new(root.path());
        let o = parse(
            "x",
            "[[file]]\npath = \"etc/a.conf\"\nmode = \"0644\"\nmerge = \"ini\"\n\
             [[file]]\npath = \"etc/dhcpcd.conf\"\nmode = \"0644\"\nmerge = \"lines\"\nwhen_exists = \"/etc/dhcpcd.conf\"\n",
            &files(&[("etc/a.conf", "k=v\n"), ("etc/dhcpcd.conf", "denyinterfaces veth*\n")]),
        )
        .unwrap();
        let changes = plan(std::slice::from_ref(&o), &paths).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].shown, "/etc/a.conf");
        assert!(!changes[0].keep_original, "pi-setup creates it");
        assert_eq!(
            changes[0].diff(),
            "--- /dev/null\n+++ /etc/a.conf (pi-setup)\n@@ -0,0 +1 @@\n+k=v\n"
        );
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        std::fs::write(root.path().join("etc/dhcpcd.conf"), "hostname\n").unwrap();
        let changes = plan(std::slice::from_ref(&o), &paths).unwrap();
        let d = changes
            .iter()
            .find(|c| c.shown == "/etc/dhcpcd.conf")
            .unwrap();
        assert!(d.keep_original && d.content_changed);
        assert_eq!(
            d.diff(),
            "--- /etc/dhcpcd.conf (now)\n+++ /etc/dhcpcd.conf (pi-setup)\n@@ -1 +1,3 @@\n hostname\n+# added by pi-setup\n+denyinterfaces veth*\n"
        );
        // Written as planned (mode and owner too): nothing left to do.
        for c in &changes {
            std::fs::write(&c.path, &c.new).unwrap();
            std::fs::set_permissions(&c.path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let (uid, gid) = (
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            );
            if (uid, gid) != (0, 0) {
                return; // cannot chown to root here; the rest needs root
            }
        }
        assert!(plan(&[o], &paths).unwrap().is_empty());
    }
}
