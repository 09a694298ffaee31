//! Files and directories on the host: the module that writes them (atomically, fsynced) and
//! sets owners and modes (nix). Everything else reads through it or asks it to write, with
//! these deliberate exceptions, each kept where the reason is:
//! - `lock.rs` holds the command lock open for the life of a command;
//! - `reuseport.rs` changes socket options inside the gateway's network namespace;
//! - `backup/` writes archives through its own pipeline (`.partial`, fsync, read-back, rename)
//!   and restores with `O_NOFOLLOW` writes into a fresh directory, where each entry's owner,
//!   mode and time come from the archive; its manifests and listings go through here;
//! - `input/` reads the maintenance page with `O_NOFOLLOW | O_NONBLOCK` (it only reads).

pub(crate) mod paths;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::{chown, Gid, Uid};

#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub(crate) struct HostError {
    pub(crate) action: &'static str,
    pub(crate) path: PathBuf,
    pub(crate) source: io::Error,
}

fn err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> HostError {
    let path = path.to_path_buf();
    move |source| HostError {
        action,
        path,
        source,
    }
}

/// Owner and permission bits of a path as it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) mode: u32,
    pub(crate) is_dir: bool,
    pub(crate) is_symlink: bool,
    pub(crate) is_file: bool,
}

pub(crate) fn stat(path: &Path) -> Result<Option<Stat>, HostError> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(Stat {
            uid: m.uid(),
            gid: m.gid(),
            mode: m.mode() & 0o7777,
            is_dir: m.is_dir(),
            is_symlink: m.file_type().is_symlink(),
            is_file: m.file_type().is_file(),
        })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err("reading", path)(e)),
    }
}

pub(crate) fn read(path: &Path) -> Result<Option<Vec<u8>>, HostError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err("reading", path)(e)),
    }
}

/// Creates a directory (and missing parents with mode 0755) and sets its owner and mode.
pub(crate) fn ensure_dir(path: &Path, uid: u32, gid: u32, mode: u32) -> Result<(), HostError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(err("refusing to use", path)(io::Error::other(
                "it is a symbolic link; a volume directory must be a real directory",
            )))
        }
        Ok(m) if !m.is_dir() => {
            return Err(err("refusing to use", path)(io::Error::other(
                "it exists and is not a directory",
            )))
        }
        Ok(_) => {}
        Err(_) => {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(err("creating", parent))?;
            }
            match fs::create_dir(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(err("creating", path)(e)),
            }
        }
    }
    chown(path, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
        .map_err(|e| err("changing owner of", path)(io::Error::from(e)))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(err("changing mode of", path))?;
    Ok(())
}

/// Sets a file's mode, and its owner when running as root (chown needs it); a symlink is not
/// followed (callers refuse links before they write).
pub(crate) fn set_mode_and_owner(
    path: &Path,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<(), HostError> {
    if stat(path)?.is_some_and(|s| s.is_symlink) {
        return Err(err("changing mode of", path)(io::Error::other(
            "it is a symlink now",
        )));
    }
    if is_root() {
        chown(path, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
            .map_err(|e| err("changing owner of", path)(io::Error::from(e)))?;
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(err("changing mode of", path))?;
    Ok(())
}

/// Writes a file so that readers see the old or the new contents, never a mix: a temporary
/// file beside it, fsynced, renamed over it, and the directory fsynced.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), HostError> {
    let dir = parent_dir(path);
    fs::create_dir_all(dir).map_err(err("creating", dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.pi-setup-tmp"));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(err("writing", &tmp))?;
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(err("changing mode of", &tmp))?;
        f.write_all(contents).map_err(err("writing", &tmp))?;
        f.sync_all().map_err(err("syncing", &tmp))?;
        fs::rename(&tmp, path).map_err(err("replacing", path))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), HostError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err("syncing", dir))
}

/// Removes a file; `Ok(false)` when it was already gone.
pub(crate) fn remove_file(path: &Path) -> Result<bool, HostError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(err("removing", path)(e)),
    }
}

/// Files in a directory whose names end with `suffix` (none when the directory is missing).
pub(crate) fn files_with_suffix(dir: &Path, suffix: &str) -> Result<Vec<PathBuf>, HostError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(err("listing", dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(err("listing", dir))?;
        if entry.file_name().to_string_lossy().ends_with(suffix) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Creates the missing parents of `path` (mode 0755).
pub(crate) fn ensure_parent(path: &Path) -> Result<(), HostError> {
    match path.parent() {
        Some(parent) => fs::create_dir_all(parent).map_err(err("creating", parent)),
        None => Ok(()),
    }
}

/// Renames directory `from` to `to`, where `to` is missing or an empty directory (removed
/// first); the parent is fsynced.
pub(crate) fn replace_empty_dir(from: &Path, to: &Path) -> Result<(), HostError> {
    match fs::remove_dir(to) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err("removing the empty directory", to)(e)),
    }
    fs::rename(from, to).map_err(err("moving into place", to))?;
    sync_dir(to.parent().unwrap_or(Path::new("/")))
}

/// True when `path` is missing or an empty directory (a symlink or a file is not empty).
pub(crate) fn is_empty_dir(path: &Path) -> Result<bool, HostError> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(err("reading", path)(e)),
        Ok(m) if !m.is_dir() => Ok(false),
        Ok(_) => Ok(fs::read_dir(path)
            .map_err(err("listing", path))?
            .next()
            .is_none()),
    }
}

/// ObjectNames of the sub-directories of `dir` (UTF-8 or not), sorted; none when it is missing.
pub(crate) fn subdirectories(dir: &Path) -> Result<Vec<std::ffi::OsString>, HostError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(err("listing", dir)(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(err("listing", dir))?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            names.push(entry.file_name());
        }
    }
    names.sort();
    Ok(names)
}

/// Deletes a directory tree (symlinks inside are removed, never followed); `Ok(false)` when it
/// was already gone.
pub(crate) fn remove_tree(path: &Path) -> Result<bool, HostError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(err("deleting", path)(e)),
    }
}

/// Total size in bytes of the regular files under a directory (links not followed).
pub(crate) fn tree_size(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map_or(0, |m| m.len()),
                _ => {}
            }
        }
    }
    total
}

/// True when systemd manages the real root (not under --root, not in a container without it).
pub(crate) fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// `systemctl daemon-reload` then `enable --now` for each timer; systemctl's stderr is kept.
pub(crate) fn enable_timers(timers: &[String]) -> Result<(), HostError> {
    let run = |args: &[&str]| -> Result<(), HostError> {
        let out = std::process::Command::new("systemctl")
            .args(args)
            .output()
            .map_err(err(
                "running systemctl for",
                Path::new("/etc/systemd/system"),
            ))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(err(
                "running systemctl for",
                Path::new("/etc/systemd/system"),
            )(io::Error::other(format!(
                "systemctl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))))
        }
    };
    run(&["daemon-reload"])?;
    let mut args = vec!["enable", "--now"];
    args.extend(timers.iter().map(String::as_str));
    run(&args)
}

pub(crate) fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Why systemd would refuse `expr` as an `OnCalendar=` value, asking `systemd-analyze calendar`
/// (systemd's own parser); `None` if it accepts it or the tool is not installed (a host without
/// systemd never runs the timer).
pub(crate) fn calendar_error(expr: &str) -> Option<String> {
    let out = std::process::Command::new("systemd-analyze")
        .arg("calendar")
        .arg(expr)
        .output()
        .ok()?;
    if out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let why = text.lines().next().unwrap_or("rejected").trim();
    Some(why.to_string())
}

/// Writes one overlay file: the host's own version is kept first, once, as
/// `<file>.pi-setup-orig` (same bytes, mode and owner, so `uninstall` puts it back exactly);
/// then the new contents atomically with the declared mode, and the declared owner when
/// running as root (under `--root` as another user the owner stays the caller's).
pub(crate) fn write_overlay_file(c: &crate::overlay::FileChange) -> Result<(), HostError> {
    if c.keep_original {
        let orig = crate::overlay::orig_path(&c.path);
        if stat(&orig)?.is_none() {
            if let (Some(old), Some(s)) = (&c.old, stat(&c.path)?) {
                write_atomic(&orig, old, s.mode)?;
                set_mode_and_owner(&orig, s.mode, s.uid, s.gid)?;
            }
        }
    }
    if c.content_changed || stat(&c.path)?.is_none() {
        write_atomic(&c.path, &c.new, c.mode)?;
    }
    set_mode_and_owner(&c.path, c.mode, c.uid, c.gid)
}

/// Puts `<file>.pi-setup-orig` back as `file` (a rename: bytes, mode and owner as they were);
/// `Ok(false)` when there is no such copy.
pub(crate) fn restore_original(path: &Path) -> Result<bool, HostError> {
    let orig = crate::overlay::orig_path(path);
    if stat(&orig)?.is_none() {
        return Ok(false);
    }
    fs::rename(&orig, path).map_err(err("restoring", path))?;
    sync_dir(path.parent().unwrap_or(Path::new("/")))?;
    Ok(true)
}

/// A file written in pieces that appears under its name only when complete: written as
/// `<name>.partial` with its mode from the start, fsynced, renamed, the directory fsynced.
pub(crate) struct AtomicFile {
    file: File,
    partial: PathBuf,
    path: PathBuf,
}

impl AtomicFile {
    pub(crate) fn create(path: &Path, mode: u32) -> Result<AtomicFile, HostError> {
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        ensure_parent(path)?;
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&partial)
            .map_err(err("writing", &partial))?;
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(err("changing mode of", &partial))?;
        Ok(AtomicFile {
            file,
            partial,
            path: path.to_path_buf(),
        })
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<(), HostError> {
        self.file
            .write_all(bytes)
            .map_err(err("writing", &self.partial))
    }

    pub(crate) fn commit(self) -> Result<(), HostError> {
        self.file
            .sync_all()
            .map_err(err("syncing", &self.partial))?;
        fs::rename(&self.partial, &self.path).map_err(err("renaming", &self.path))?;
        sync_dir(parent_dir(&self.path))
    }

    /// Gives up: the partial file is removed.
    pub(crate) fn abandon(self) {
        let _ = fs::remove_file(&self.partial);
    }
}

/// Runs a program of the host (apt-get, systemctl) and keeps its stderr in the error.
pub(crate) fn run_program(
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<(), HostError> {
    let shown = format!("{program} {}", args.join(" "));
    let out = std::process::Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .map_err(err("running", Path::new(&shown)))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(err("running", Path::new(&shown))(io::Error::other(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        )))
    }
}

/// The directory a file is in: `.` for a bare file name (whose `parent()` is the empty path,
/// which cannot be opened to fsync).
fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn a_bare_file_name_is_synced_in_the_current_directory() {
        // `images save out.tar`: the rename worked, the directory fsync must too.
        assert_eq!(super::parent_dir(Path::new("out.tar")), Path::new("."));
        assert_eq!(super::parent_dir(Path::new("a/out.tar")), Path::new("a"));
        assert_eq!(super::parent_dir(Path::new("/out.tar")), Path::new("/"));
    }
}
