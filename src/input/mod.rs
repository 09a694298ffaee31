//! The first stage: finds and reads the configuration — the profile (a shipped name, a path,
//! or the one in force on the host), the service files, the secrets, the maintenance page —
//! and hands it to `model` for validation. Nothing here changes the host.

pub(crate) mod layout;
pub(crate) mod raw;
pub(crate) mod shipped;
pub(crate) mod source;

use std::collections::BTreeMap;

use std::path::Path;

use crate::error::BadInput;
use crate::host::paths::Paths;
use crate::input::layout::Layouts;
use crate::input::source::{ConfigError, Source};
use crate::model::{self, HostFacts, Model};

/// `--profile` given: a path if it names an existing file or looks like one, else a shipped
/// name. Not given: the profile in force on the host, else the shipped default.
pub(crate) fn profile_source(arg: Option<&str>, paths: &Paths) -> Result<Source, BadInput> {
    let read = |p: &Path| {
        std::fs::read_to_string(p)
            .map(|t| Source::new(p.display().to_string(), t))
            .map_err(|e| BadInput(format!("cannot read profile {}: {e}", p.display())))
    };
    match arg {
        Some(a)
            if a.contains('/')
                || Path::new(a)
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("toml"))
                || Path::new(a).is_file() =>
        {
            read(Path::new(a))
        }
        Some(name) => shipped::profile(name)
            .map(|t| Source::new(format!("<shipped>/profiles/{name}.toml"), t))
            .ok_or_else(|| {
                let known: Vec<&str> = shipped::PROFILES.iter().map(|(n, _)| *n).collect();
                BadInput(format!(
                    "no shipped profile named {name:?} (shipped: {}); to use a file, give its path",
                    known.join(", ")
                ))
            }),
        None if paths.profile_file().is_file() => read(&paths.profile_file()),
        None => Ok(Source::new(
            "<shipped>/profiles/default.toml",
            shipped::profile("default").expect("the default profile is shipped"),
        )),
    }
}

/// Reads `/etc/pi-setup/services/*.toml` (sorted by name).
pub(crate) fn service_sources(paths: &Paths) -> Result<Vec<Source>, BadInput> {
    let files = crate::host::files_with_suffix(&paths.services_dir(), ".toml")
        .map_err(|e| BadInput(e.to_string()))?;
    files
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .map(|t| Source::new(p.display().to_string(), t))
                .map_err(|e| BadInput(format!("cannot read {}: {e}", p.display())))
        })
        .collect()
}

/// Everything a model is built from, as read from disk (or given on the command line).
#[derive(Debug, Clone)]
pub(crate) struct Inputs {
    pub(crate) profile: Source,
    pub(crate) services: Vec<Source>,
    /// Service name → its secrets file (`KEY=value` lines).
    pub(crate) secrets: BTreeMap<String, Source>,
    /// Where host paths named in the profile (the maintenance page) are read.
    pub(crate) paths: Paths,
}

impl Inputs {
    /// The profile (see `profile_source`), the service files and the secrets on this host.
    pub(crate) fn read(profile_arg: Option<&str>, paths: &Paths) -> Result<Inputs, BadInput> {
        Ok(Inputs {
            profile: profile_source(profile_arg, paths)?,
            services: service_sources(paths)?,
            secrets: secret_sources(paths)?,
            paths: paths.clone(),
        })
    }

    /// Validates the inputs into a model (secrets and the maintenance page included).
    pub(crate) fn model(&self) -> Result<Model, BadInput> {
        let mut model = load_on(&self.profile, &self.services, &this_host())?;
        let mut errors = Vec::new();
        for svc in &mut model.services {
            let mut env = BTreeMap::new();
            // Shared files first: the service's own secrets file has the last word.
            for (rel, span) in &svc.env_files {
                match read_shared_env(&self.paths, rel) {
                    Ok(src) => match parse_env_file(&src) {
                        Ok(vars) => env.extend(vars),
                        Err(e) => errors.push(e),
                    },
                    Err(why) => {
                        let msg = format!("env_files {rel:?}: {why}");
                        let named_in = std::iter::once(&self.profile)
                            .chain(&self.services)
                            .find(|s| s.origin == svc.origin);
                        errors.push(match named_in {
                            Some(src) => src.error_at(span.clone(), msg),
                            None => self.profile.error(msg),
                        });
                    }
                }
            }
            if let Some(src) = self.secrets.get(svc.name.as_str()) {
                match parse_env_file(src) {
                    Ok(own) => env.extend(own),
                    Err(e) => errors.push(e),
                }
            }
            svc.secret_env = env;
        }
        if let Some(page) = &model.gateway.maintenance_page {
            match read_maintenance_page(&self.paths, page) {
                Ok(html) => model.gateway.maintenance_html = Some(html),
                Err(why) => {
                    let msg = format!("gateway.maintenance_page {page:?}: {why}");
                    errors.push(match &model.gateway.maintenance_page_span {
                        Some(span) => self.profile.error_at(span.clone(), msg),
                        None => self.profile.error(msg),
                    });
                }
            }
        }
        if errors.is_empty() {
            Ok(model)
        } else {
            Err(errors.into())
        }
    }
}

/// Reads a shared secrets file, `/etc/pi-setup/secrets/<rel>` under the root: a regular file
/// (not a symlink: it could lead anywhere), private to its owner (no group or other bits:
/// it holds secrets), at most 1 MiB. The error says why, never what the file holds.
pub(crate) fn read_shared_env(paths: &Paths, rel: &str) -> Result<Source, String> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let path = paths.secrets_dir().join(rel);
    let shown = path.display();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK).bits())
        .open(&path)
        .map_err(|e| format!("{shown}: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("{shown}: {e}"))?;
    if !meta.file_type().is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{shown} is readable by others (mode {:04o}); it holds secrets: chmod 600 it",
            meta.mode() & 0o7777
        ));
    }
    if meta.len() > 1 << 20 {
        return Err(format!("{shown} is larger than 1 MiB"));
    }
    let mut text = String::new();
    file.take(1 << 20)
        .read_to_string(&mut text)
        .map_err(|e| format!("{shown}: {e}"))?;
    Ok(Source::new(shown.to_string(), text))
}

/// The largest maintenance page published: a page, not a file store.
pub(crate) const MAX_MAINTENANCE_PAGE: u64 = 1 << 20;

/// Reads the custom maintenance page under `--root`, as every host path is. It is published to
/// anyone who asks for a service that is down, so only a file that is already public on this
/// host goes out: a regular file (not a symlink, whose target could be anything, nor a FIFO
/// or device, which could block or have side effects on open), readable by everyone
/// (`o+r`: pi-setup runs as root and could read a 0600 file such as /etc/shadow, so "could
/// the caller read it" would say yes to everything), at most 1 MiB, UTF-8. Every directory on
/// the way must stay under the root, so a symlinked directory cannot lead out of it either.
/// The error says why, never what the file holds.
pub(crate) fn read_maintenance_page(paths: &Paths, page: &str) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

    let path = paths.host(page);
    let shown = path.display();
    let root = std::fs::canonicalize(&paths.root)
        .map_err(|e| format!("cannot resolve --root {}: {e}", paths.root.display()))?;
    let parent = path.parent().unwrap_or(&paths.root);
    let real_parent = std::fs::canonicalize(parent).map_err(|e| format!("{shown}: {e}"))?;
    if !real_parent.starts_with(&root) {
        return Err(format!(
            "{shown}: its directory leads out of {} through a symbolic link",
            root.display()
        ));
    }
    let path = real_parent.join(path.file_name().unwrap_or_default());
    let before = std::fs::symlink_metadata(&path).map_err(|e| format!("{shown}: {e}"))?;
    let kind = before.file_type();
    if kind.is_symlink() {
        return Err(format!("{shown} is a symbolic link; name the file itself"));
    }
    if !kind.is_file() {
        return Err(format!(
            "{shown} is not a regular file (a directory, FIFO, socket or device)"
        ));
    }
    // O_NOFOLLOW and O_NONBLOCK: if it was swapped for a symlink or a FIFO since, the open
    // fails or returns at once instead of following it or hanging.
    let flags = nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits())
        .open(&path)
        .map_err(|e| format!("{shown}: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("{shown}: {e}"))?;
    if (meta.dev(), meta.ino()) != (before.dev(), before.ino()) || !meta.file_type().is_file() {
        return Err(format!("{shown} changed while it was read; try again"));
    }
    if meta.mode() & 0o004 == 0 {
        return Err(format!(
            "{shown} is not readable by everyone (mode {:04o}); the page is shown to anyone, so \
             only a file that is already world-readable is published (chmod o+r it if it is meant \
             to be public)",
            meta.mode() & 0o7777
        ));
    }
    if meta.len() > MAX_MAINTENANCE_PAGE {
        return Err(format!(
            "{shown} is {} bytes; a maintenance page may be at most 1 MiB",
            meta.len()
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_MAINTENANCE_PAGE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{shown}: {e}"))?;
    if bytes.len() as u64 > MAX_MAINTENANCE_PAGE {
        return Err(format!("{shown} grew beyond 1 MiB while it was read"));
    }
    String::from_utf8(bytes).map_err(|_| format!("{shown} is not UTF-8 text"))
}

/// Reads `/etc/pi-setup/secrets/<name>.env`.
pub(crate) fn secret_sources(paths: &Paths) -> Result<BTreeMap<String, Source>, BadInput> {
    let files = crate::host::files_with_suffix(&paths.secrets_dir(), ".env")
        .map_err(|e| BadInput(e.to_string()))?;
    let mut out = BTreeMap::new();
    for p in files {
        let text = std::fs::read_to_string(&p)
            .map_err(|e| BadInput(format!("cannot read {}: {e}", p.display())))?;
        let name = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.insert(name, Source::new(p.display().to_string(), text));
    }
    Ok(out)
}

/// `KEY=value` lines; blank lines and `#` comments are skipped. Errors name the line but never
/// show a value.
pub(crate) fn parse_env_file(src: &Source) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut env = BTreeMap::new();
    let mut offset = 0;
    for line in src.text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let l = line.trim_end_matches(['\n', '\r']);
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let t = t.strip_prefix("export ").unwrap_or(t);
        let Some((k, v)) = t.split_once('=') else {
            return Err(ConfigError {
                line_text: None,
                ..src.error_at(start..start, "expected KEY=value")
            });
        };
        let k = k.trim();
        if !crate::model::env_name_ok(k) {
            return Err(ConfigError {
                line_text: None,
                // The text before `=` may be a pasted secret: say where, not what.
                ..src.error_at(
                    start..start,
                    "invalid variable name (a letter or _, then letters, digits, _ . -)",
                )
            });
        }
        if v.contains('\0') {
            // Docker refuses it and quotes the value back in its error, on every apply.
            return Err(ConfigError {
                line_text: None,
                ..src.error_at(
                    start..start,
                    format!("{k}: the value contains a NUL byte, which Docker refuses (the value is not shown)"),
                )
            });
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|x| x.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
            .unwrap_or(v);
        env.insert(k.to_string(), v.to_string());
    }
    Ok(env)
}

/// Parses and validates everything against this machine (see `this_host`); all problems are
/// reported together.
#[cfg(test)]
pub(crate) fn load(profile_src: &Source, service_srcs: &[Source]) -> Result<Model, BadInput> {
    load_on(profile_src, service_srcs, &this_host())
}

/// What validation needs to know about the machine pi-setup runs on (Docker's host).
pub(crate) fn this_host() -> HostFacts {
    HostFacts {
        cpus: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        calendar_error: crate::host::calendar_error,
    }
}

/// `load`, against the given host facts.
pub(crate) fn load_on(
    profile_src: &Source,
    service_srcs: &[Source],
    host: &HostFacts,
) -> Result<Model, BadInput> {
    let layouts = Layouts::shipped()?;
    let mut errors = Vec::new();
    let raw = raw::parse_profile(profile_src).map_err(|e| vec![e]);
    let mut extra = Vec::new();
    for s in service_srcs {
        match raw::parse_service(s) {
            Ok(r) => {
                let file_stem = Path::new(&s.origin)
                    .file_stem()
                    .map(|x| x.to_string_lossy().into_owned());
                if file_stem.as_deref() != Some(r.name.get_ref().as_str()) {
                    errors.push(s.error_at(
                        r.name.span(),
                        format!("the service in this file is named {:?}; the file must be named {:?}.toml", r.name.get_ref(), r.name.get_ref()),
                    ));
                }
                extra.push((s, r));
            }
            Err(e) => errors.push(e),
        }
    }
    let raw = match raw {
        Ok(r) => r,
        Err(mut e) => {
            e.append(&mut errors);
            return Err(e.into());
        }
    };
    match model::build(profile_src, raw, extra, &layouts, host) {
        Ok(m) if errors.is_empty() => Ok(m),
        Ok(_) => Err(errors.into()),
        Err(mut e) => {
            errors.append(&mut e);
            Err(errors.into())
        }
    }
}

/// Counts the bytes the current thread allocates, for tests that check how memory grows
/// without timing anything. Thread-local, so tests running in parallel do not disturb it.
#[cfg(test)]
mod alloc_count {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static BYTES: Cell<u64> = const { Cell::new(0) };
    }

    fn add(n: usize) {
        // `try_with`: no counting while the thread's locals are torn down.
        let _ = BYTES.try_with(|b| b.set(b.get() + n as u64));
    }

    struct Counting;

    // SAFETY: every call is passed straight to the system allocator; counting only touches a
    // const-initialised thread-local `Cell`, which never allocates.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            add(layout.size());
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            add(layout.size());
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            add(new_size.saturating_sub(layout.size()));
            unsafe { System.realloc(ptr, layout, new_size) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;

    /// Runs `f` and returns what it returned and the bytes this thread allocated meanwhile.
    pub(crate) fn allocated_by<T>(f: impl FnOnce() -> T) -> (T, u64) {
        let before = BYTES.with(Cell::get);
        let out = f();
        (out, BYTES.with(Cell::get) - before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Validates a profile (a host with 4 CPUs whose systemd knows no "every night") and
    /// expects every fragment in the one message that lists all its problems.
    #[track_caller]
    fn rejected(profile: &str, expected: &[&str]) {
        let host = HostFacts {
            cpus: 4,
            calendar_error: |v| (v == "every night").then(|| "Failed to parse".to_string()),
        };
        let err = load_on(&Source::new("p.toml", profile), &[], &host)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        for e in expected {
            assert!(err.contains(e), "expected {e:?} in:\n{err}");
        }
    }

    #[test]
    fn volume_owners_and_modes_and_build_settings_are_checked_where_they_are_written() {
        let gw = "[gateway]\nimage = \"caddy:2\"\nhttp_port = 18080\nhttps = \"off\"\n";
        let svc = |body: &str| format!("{gw}\n[[service]]\n{body}\n");
        let at = |line: usize, col: usize| format!("p.toml:{line}:{col}: ");
        let volume = |fields: &str| {
            svc(&format!(
                "name = \"admin\"\nimage = \"x:1\"\nvolumes = [{{ {fields} }}]"
            ))
        };
        rejected(
            &volume("path = \"data\", target = \"/var/lib/pgadmin\", owner = \"pgadmin\""),
            &[
                &at(9, 12),
                "volume \"data\": owner \"pgadmin\" must be numeric uid:gid, like \"1000:1000\"",
            ],
        );
        rejected(
            &volume("path = \"data\", target = \"/d\", mode = \"0999\""),
            &[&at(9, 12), "mode \"0999\" must be octal, like \"0750\""],
        );
        rejected(
            &volume("path = \".\", target = \"/d\", owner = \"5050:5050\""),
            &["owner and mode are for a sub-directory"],
        );
        rejected(
            &svc("name = \"app\"\nimage = \"x:1\"\nbuild = { context = \"/srv/app\" }"),
            &[&at(8, 9), "give image or build, not both"],
        );
        rejected(
            &svc("name = \"app\"\nbuild = { context = \"srv/app\" }"),
            &[
                &at(8, 9),
                "build context \"srv/app\" must be an absolute path without '..'",
            ],
        );
        rejected(
            &svc("name = \"app\"\nbuild = { context = \"/srv/app\", dockerfile = \"../Dockerfile\" }"),
            &["build dockerfile \"../Dockerfile\" must be a path inside the context"],
        );
    }

    #[test]
    fn bad_profiles_are_rejected_with_file_line_and_column() {
        let http_port = 18080;
        let gw =
            format!("[gateway]\nimage = \"caddy:2\"\nhttp_port = {http_port}\nhttps = \"off\"\n");
        let svc = |body: &str| format!("{gw}\n[[service]]\n{body}\n");
        let at = |line: usize, col: usize| format!("p.toml:{line}:{col}: ");

        rejected(
            &svc("name = \"web\"\nimage = \"x:1\"\ncolour = \"red\""),
            &[&at(9, 1), "unknown field `colour`"],
        );
        rejected(
            &svc("name = \"Web\"\nimage = \"x:1\""),
            &[
                &at(7, 8),
                "invalid service name \"Web\": must be lower case",
            ],
        );
        rejected(
            &svc("name = \"a/b\"\nimage = \"x:1\""),
            &["invalid service name \"a/b\": must not contain '/' or '..'"],
        );
        rejected(
            &svc("name = \"..\"\nimage = \"x:1\""),
            &["must not contain '/' or '..'"],
        );
        rejected(
            &svc("name = \"gateway\"\nimage = \"x:1\""),
            &["service name 'gateway' is reserved"],
        );
        rejected(
            &format!(
                "{}\n[[service]]\nname = \"web\"\nimage = \"y:1\"\n",
                svc("name = \"web\"\nimage = \"x:1\"")
            ),
            &["duplicate service name 'web'"],
        );
        rejected(
            &format!(
                "{}\n[[service]]\nname = \"two\"\nimage = \"y:1\"\ndomains = [\"a.test\"]\n",
                svc("name = \"one\"\nimage = \"x:1\"\ndomains = [\"a.test\"]")
            ),
            &[
                &at(14, 12),
                "duplicate domain 'a.test' in service 'two' (already used by service 'one')",
            ],
        );
        rejected(
            &svc("name = \"web\"\nimage = \"x:1\"\ndomains = [\"bad..test\"]"),
            &[&at(9, 12), "invalid domain \"bad..test\""],
        );
        rejected(
            &svc("name = \"web\"\nimage = \"x:1\"\ndomains = [\"https://a.test\"]"),
            &["must be a bare host name"],
        );
        rejected(
            &svc("name = \"web\"\nimage = \"x:1\"\nport = 70000"),
            &[&at(9, 8), "port 70000 is out of range (1-65535)"],
        );
        rejected(
            &svc("name = \"web\"\nimage = \"x:1\"\nport = \"80\""),
            &[&at(9, 8), "invalid type"],
        );
        rejected(&svc("name = \"web\""), &["service 'web' has no image"]);
        rejected(
            &svc("name = \"web\"\nimage = \"\""),
            &["image reference is empty"],
        );
        rejected(
            &svc("name = \"web\"\nimage = \"x:1\"\nvolumes = [\"../etc:/etc\"]"),
            &["invalid volume \"../etc:/etc\""],
        );
        rejected(
            &svc("name = \"web\"\nimage = \"x:1\"\nlayout = \"nope\""),
            &["unknown layout \"nope\""],
        );
        rejected(
            &format!("{gw}http_port = 0\n").replace(&format!("http_port = {http_port}\n"), ""),
            &["gateway.http_port 0 is out of range"],
        );
        rejected("[gateway\nimage = 1\n", &[&at(1, 9), "unclosed table"]);
        rejected(
            &svc(&format!(
                "name = \"db\"\nimage = \"x:1\"\npublish = [\"{http_port}:5432\"]"
            )),
            &[&format!(
                "service 'db' publishes host port {http_port}, already used by the gateway (http_port)"
            )],
        );
        rejected(
            "[gateway]\nhttp_port = 443\n",
            &["gateway.http_port and gateway.https_port are both 443"],
        );
        rejected(
            &format!("{gw}\n[backup]\nschedule = \"every night\"\n"),
            &["backup.schedule \"every night\" is not a systemd OnCalendar= expression"],
        );
        rejected(
            &format!("{gw}\n[backup]\ncompress = \"lz4\"\n"),
            &["backup.compress \"lz4\" is not one of gzip, zstd"],
        );
        rejected(
            &format!("{gw}\n[backup]\ncompress = \"gzip\"\nlevel = 12\n"),
            &["backup.level 12 is out of range for gzip (1-9)"],
        );
        rejected(
            &format!("{gw}\n[backup]\ncompress = \"zstd\"\nlevel = 20\n"),
            &["backup.level 20 is out of range for zstd (1-19)"],
        );
        rejected(
            &format!("{gw}\n[backup]\ndest = \"/var/vol/backups\"\n"),
            &["must not be inside /var/vol"],
        );
        rejected(
            &format!("{gw}\n[backup]\nkeep_daily = -1\n"),
            &["backup.keep_daily must be 0 or more"],
        );
        for days in ["0", "366", "-7"] {
            rejected(
                &format!("{gw}\n[backup]\nfull_every_days = {days}\n"),
                &[&format!(
                    "backup.full_every_days {days} must be a number of days from 1 (every \
                     archive full) to 365"
                )],
            );
        }
        rejected(
            &format!("{gw}\n[[service]]\nname = \"web\"\nimage = \"x:1\"\nbackup = {{ mode = \"sometimes\" }}\n"),
            &["backup mode \"sometimes\" is not one of stop, live, exec"],
        );
        rejected(
            &format!("{gw}bind = \"localhost\"\n"),
            &["gateway.bind \"localhost\" is not an IP address"],
        );
        // Over IPv6 Docker's proxy hides the client: `lan` could not be enforced.
        let lan = "\n[[service]]\nname = \"nas\"\nimage = \"x:1\"\ndomains = [\"nas.lan\"]\naccess = \"lan\"\n";
        rejected(
            &format!("{gw}bind = \"::\"\n{lan}"),
            &[
                &at(5, 8),
                "gateway.bind \"::\" publishes on IPv6, where Docker's proxy hides each client's address: service 'nas' has access = \"lan\"",
            ],
        );
        for ok in ["::1", "192.168.1.20"] {
            let host = HostFacts {
                cpus: 4,
                calendar_error: |_| None,
            };
            let text = format!("{gw}bind = \"{ok}\"\n{lan}");
            assert!(
                load_on(&Source::new("p.toml", &text), &[], &host).is_ok(),
                "{ok}"
            );
        }
        rejected(
            &format!("{gw}\n[[backup.copy]]\nname = \"usb\"\npath = \"/mnt/usb\"\nencrypt_to = [\"age1nope\"]\n"),
            &[&at(9, 15), "backup.copy encrypt_to \"age1nope\" is not an age recipient"],
        );
        rejected(
            &format!("{gw}\n[[backup.copy]]\nname = \"usb\"\n"),
            &["backup.copy \"usb\" needs path"],
        );
        rejected(
            &format!("{gw}trusted_proxies = [\"10.0.0.0/33\", \"cloudflare\"]\n"),
            &[
                "gateway.trusted_proxies \"10.0.0.0/33\": the prefix length must be 0-32",
                "gateway.trusted_proxies \"cloudflare\": is not an IP address or CIDR range",
            ],
        );
        rejected(
            &format!("{gw}compress = \"yes\"\n"),
            &["invalid type: string \"yes\", expected a boolean"],
        );
        rejected(
            &svc("name = \"web\"\nimage = \"x:1\"\nuser = \"root; rm -rf /\""),
            &["user \"root; rm -rf /\" must be uid[:gid]"],
        );
        rejected(
            &svc("name = \"web\"\nimage = \"x:1\"\nhealth_cmd = [\"true\"]\nhealth_retries = 0\nhealth_timeout = \"0s\"\nhealth_start_period = \"2d\""),
            &[
                "health_retries 0 is out of range: 1 to 100",
                "health_timeout \"0s\" is out of range: 1ms to 24h",
                "health_start_period \"2d\" must be a duration from 0s to 24h",
            ],
        );
        rejected(
            &svc("name = \"web\"\nimage = \"x:1\"\nhealth_timeout = \"5s\""),
            &["health_timeout needs health_cmd"],
        );
        rejected(
            &svc("name = \"web\"\nimage = \"x:1\"\nenv = { \"a=b\" = \"1\", \"2x\" = \"1\" }"),
            &[
                "invalid environment variable name \"a=b\"",
                "invalid environment variable name \"2x\"",
            ],
        );
        rejected(
            &format!("{gw}\n[[service]]\nname = \"a\"\nimage = \"x:1\"\ndepends_on = [\"b\"]\n\n[[service]]\nname = \"b\"\nimage = \"x:1\"\ndepends_on = [\"c\"]\n\n[[service]]\nname = \"c\"\nimage = \"x:1\"\ndepends_on = [\"a\"]\n"),
            &[&at(9, 15), "depends_on goes round in a circle: a -> b -> c -> a"],
        );
        rejected(
            &svc("name = \"api\"\nimage = \"x:1\"\ndepends_on = [{ name = \"api\" }, { name = \"q\", condition = \"completed\" }, { name = \"r\", condition = \"soon\" }]"),
            &[
                "service 'api' cannot depend on itself",
                "depends_on condition \"soon\" is not one of started, healthy, completed",
            ],
        );
        rejected(
            &svc("name = \"api\"\nimage = \"x:1\"\ndepends_on = [\"db\"]"),
            &[
                &at(9, 15),
                "service 'api' depends on 'db', which is not defined",
            ],
        );
        rejected(
            &format!("{gw}\n[[service]]\nname = \"db\"\nimage = \"x:1\"\n\n[[service]]\nname = \"api\"\nimage = \"x:1\"\ndepends_on = [{{ name = \"db\", condition = \"healthy\" }}]\n"),
            &["service 'api' waits for 'db' to be healthy, but 'db' has no health_cmd"],
        );
        rejected(
            &svc("name = \"files\"\nimage = \"x:1\"\nmounts = [\"web:static:/srv/static\"]"),
            &[
                &at(9, 11),
                "service 'files' mounts a directory of 'web', which is not defined",
            ],
        );
        rejected(
            &svc("name = \"web\"\nimage = \"x:1\"\nmounts = [\"web:static:/srv\", \"db:../x:/x\", \"nocolon\"]"),
            &[
                "invalid mount \"web:static:/srv\": a service mounts its own directories with volumes",
                "invalid mount \"db:../x:/x\"",
                "invalid mount \"nocolon\": expected SERVICE:SUBDIR:/container/path",
            ],
        );
        rejected(
            &svc("name = \"api\"\nimage = \"x:1\"\nroutes = [{ host = \"a.test\", path = \"/../etc\" }, { host = \"a.test\", path = \"/x y\" }, { host = \"a.test\", strip = true }, { host = \"a.test\", path = \"/v1\", port = 0 }]\nstatic = [{ host = \"a.test\", path = \"/\", dir = \"s\" }, { host = \"a.test\", path = \"/s\", dir = \"../etc\" }]"),
            &[
                "path \"/../etc\" must be / or a prefix like /api",
                "path \"/x y\" must be / or a prefix like /api",
                "strip = true needs a path other than /",
                "route port 0 is out of range (1-65535)",
                "a static route needs a path other than /",
                "static dir \"../etc\"",
            ],
        );
        rejected(
            &format!("{gw}\n[[service]]\nname = \"one\"\nimage = \"x:1\"\nroutes = [{{ host = \"a.test\", path = \"/api\" }}]\n\n[[service]]\nname = \"two\"\nimage = \"x:1\"\nroutes = [{{ host = \"a.test\", path = \"/api/\" }}]\n"),
            &[&at(14, 11), "a.test/api is routed to service 'two' and to service 'one'"],
        );
        let s3 =
            |fields: &str| format!("{gw}\n[[backup.copy]]\nname = \"b2\"\ns3 = {{ {fields} }}\n");
        let ok = "endpoint = \"https://s3.example.com\", bucket = \"pi-backups\", credentials = \"/etc/pi-setup/secrets/b2.s3\"";
        rejected(
            &format!(
                "{gw}\n[[backup.copy]]\nname = \"b2\"\npath = \"/mnt/usb\"\ns3 = {{ {ok} }}\n"
            ),
            &[&at(9, 6), "backup.copy \"b2\" has both path and s3"],
        );
        for (fields, says) in [
            ("endpoint = \"ftp://x\", bucket = \"pi-backups\", credentials = \"/c\"", "s3.endpoint \"ftp://x\" must start with https://"),
            ("endpoint = \"https://k:s@x\", bucket = \"pi-backups\", credentials = \"/c\"", "must not hold credentials"),
            ("endpoint = \"https://x/pi\", bucket = \"pi-backups\", credentials = \"/c\"", "must be only scheme, host and port"),
            ("endpoint = \"x:9000\", bucket = \"pi-backups\", credentials = \"/c\"", "s3.endpoint \"x:9000\""),
            ("endpoint = \"https://x\", bucket = \"pi\", credentials = \"/c\"", "s3.bucket \"pi\" must be 3 to 63"),
            ("endpoint = \"https://x\", bucket = \"Pi_Backups\", credentials = \"/c\"", "may only hold lowercase letters"),
            ("endpoint = \"https://x\", bucket = \"192.168.1.2\", credentials = \"/c\"", "must not look like an IP address"),
            ("endpoint = \"https://x\", bucket = \"pi..b\", credentials = \"/c\"", "must not have '..'"),
            ("endpoint = \"https://x\", bucket = \"pi-backups\", prefix = \"/home\", credentials = \"/c\"", "s3.prefix \"/home\" must not start with '/'"),
            ("endpoint = \"https://x\", bucket = \"pi-backups\", prefix = \"a/../b\", credentials = \"/c\"", "'..'"),
            ("endpoint = \"https://x\", bucket = \"pi-backups\", region = \"US East\", credentials = \"/c\"", "s3.region \"US East\""),
            ("endpoint = \"https://x\", bucket = \"pi-backups\", credentials = \"secrets/b2\"", "s3.credentials \"secrets/b2\" must be the absolute path"),
            ("endpoint = \"https://x\", bucket = \"pi-backups\", credentials = \"/c\", style = \"dns\"", "s3.style \"dns\""),
            ("endpoint = \"https://x\", credentials = \"/c\"", "missing field `bucket`"),
        ] {
            rejected(&s3(fields), &[says]);
        }
        rejected(
            &format!("{gw}\n[[service]]\nname = \"db\"\nimage = \"x:1\"\n\n[[service]]\nname = \"web\"\nimage = \"x:1\"\ndepends_on = [{{ name = \"db\", condition = \"completed\" }}, \"setup\"]\n\n[[job]]\nname = \"setup\"\nimage = \"x:1\"\n"),
            &[
                "service 'web' waits for 'db' to complete, but 'db' is not a job ([[job]])",
                "'setup' is a job: wait for it with condition = \"completed\"",
            ],
        );
        rejected(
            &format!("{gw}\n[[job]]\nname = \"setup\"\nimage = \"x:1\"\ndomains = [\"a.test\"]\nrestart = \"always\"\ntimeout = \"2d\"\n\n[[service]]\nname = \"web\"\nimage = \"x:1\"\ntimeout = \"1m\"\n"),
            &[
                "a job runs to completion and serves nothing: it has no domains",
                "a job runs to completion and serves nothing: it is never restarted",
                "timeout \"2d\" must be a duration from 1s to 24h",
                "timeout is for jobs ([[job]])",
            ],
        );
        rejected(
            &format!("{gw}\n[[service]]\nname = \"web\"\nimage = \"x:1\"\nschedule = \"daily\"\n\n[[job]]\nname = \"report\"\nimage = \"x:1\"\nschedule = \"every night\"\n"),
            &[
                "schedule is for jobs ([[job]]); the backup's is backup.schedule",
                "schedule \"every night\" is not a systemd OnCalendar= expression",
            ],
        );
        // Several problems are reported together.
        rejected(
            &svc("name = \"Web\"\nimage = \"x:1\"\nport = 0"),
            &[
                "must be lower case",
                "port 0 is out of range",
                "2 problems found",
            ],
        );
    }

    #[test]
    fn an_s3_copy_target_is_checked_and_its_prefix_is_a_folder() {
        let host = HostFacts {
            cpus: 4,
            calendar_error: |_| None,
        };
        let text = "[[backup.copy]]\nname = \"b2\"\ns3 = { endpoint = \"https://s3.eu-central-003.backblazeb2.com/\", region = \"eu-central-003\", bucket = \"pi-backups.home\", prefix = \"pis/kitchen\", credentials = \"/etc/pi-setup/secrets/b2.s3\" }\nkeep_daily = 30\n";
        let model = load_on(&Source::new("p.toml", text), &[], &host).unwrap();
        let target = &model.backup.copies[0];
        assert_eq!(
            target.place,
            crate::model::CopyPlace::S3(crate::model::S3Place {
                endpoint: "https://s3.eu-central-003.backblazeb2.com".into(),
                region: "eu-central-003".into(),
                bucket: "pi-backups.home".into(),
                prefix: "pis/kitchen/".into(),
                credentials: "/etc/pi-setup/secrets/b2.s3".into(),
                virtual_host: false,
            })
        );
        assert_eq!(target.keep_daily, 30);
    }

    /// A profile of `n` services, each with a domain, a volume and an env var.
    fn profile_of(n: usize) -> Source {
        let mut text = String::from("[gateway]\nhttps = \"off\"\n");
        for i in 0..n {
            text.push_str(&format!(
                "\n[[service]]\nname = \"svc{i}\"\nimage = \"busybox:1\"\n\
                 domains = [\"svc{i}.local\"]\nvolumes = [\"data:/data\"]\nenv = {{ A = \"{i}\" }}\n"
            ));
        }
        Source::new("p.toml", text)
    }

    #[test]
    fn validation_memory_grows_linearly_with_the_number_of_services() {
        let host = HostFacts {
            cpus: 4,
            calendar_error: |_| None,
        };
        let bytes = |n| {
            let src = profile_of(n);
            let (model, bytes) = alloc_count::allocated_by(|| load_on(&src, &[], &host));
            assert_eq!(model.unwrap().services.len(), n);
            bytes
        };
        // Every byte allocated counts, freed or not: a copy of the profile per service (what
        // made 4,000 services take 1.4 GB) doubles this ratio to about 4.
        let (small, large) = (bytes(400), bytes(800));
        let ratio = large as f64 / small as f64;
        assert!(
            ratio < 2.6,
            "400 services allocated {small} bytes, 800 allocated {large} (x{ratio:.2}): not linear"
        );
    }

    #[test]
    fn env_files_never_echo_values() {
        let src = Source::new("s.env", "# c\nA=1\nexport B=\"two words\"\n\nC='x=y'\n");
        let env = parse_env_file(&src).unwrap();
        assert_eq!(env["A"], "1");
        assert_eq!(env["B"], "two words");
        assert_eq!(env["C"], "x=y");
        let bad = Source::new("s.env", "A=1\nsupersecret\n");
        let e = parse_env_file(&bad).unwrap_err().to_string();
        assert_eq!(e, "s.env:2:1: expected KEY=value");
        assert!(!e.contains("supersecret"));
        let pasted = Source::new("s.env", "A=1\ns3cr/t=x\n");
        let e = parse_env_file(&pasted).unwrap_err().to_string();
        assert_eq!(
            e,
            "s.env:2:1: invalid variable name (a letter or _, then letters, digits, _ . -)"
        );
        let pasted = Source::new("s.env", "A=1\ns3cr/t=x\n");
        let e = parse_env_file(&pasted).unwrap_err().to_string();
        assert_eq!(
            e,
            "s.env:2:1: invalid variable name (a letter or _, then letters, digits, _ . -)"
        );
        let nul = Source::new("s.env", "A=1\nTOKEN=\"s3cr3t\0x\"\n");
        let e = parse_env_file(&nul).unwrap_err().to_string();
        assert_eq!(
            e,
            "s.env:2:1: TOKEN: the value contains a NUL byte, which Docker refuses (the value is not shown)"
        );
    }

    #[test]
    fn a_service_s_own_secrets_override_the_shared_file_it_names() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let paths = Paths::new(root.path());
        let shared = paths.secrets_dir().join("shared");
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::write(shared.join("app.env"), "A=shared\nB=shared\n").unwrap();
        std::fs::set_permissions(
            shared.join("app.env"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let inputs = Inputs {
            profile: Source::new(
                "p.toml",
                "[[service]]\nname = \"web\"\nimage = \"x:1\"\nenv_files = [\"shared/app.env\"]\n",
            ),
            services: Vec::new(),
            secrets: BTreeMap::from([("web".to_string(), Source::new("web.env", "B=own\n"))]),
            paths,
        };
        let model = inputs.model().unwrap();
        let env = &model.service("web").unwrap().secret_env;
        assert_eq!(
            env,
            &BTreeMap::from([
                ("A".to_string(), "shared".to_string()),
                ("B".to_string(), "own".to_string())
            ])
        );
    }
}
