//! Preflight: what `install` checks about the host before it changes anything, one line per
//! check. The checks are pure (`checks` over `Facts`, gathered by `gather`), so the fast tests
//! feed them any host; a failure stops the install with nothing changed.
//!
//! Thresholds: `/var/vol` and the backup destination need 1 GiB free (a warning below 4 GiB:
//! images' data and one night's archives); the root filesystem must be writable with 256 MiB
//! free (a warning below 5%: journald, apt and Docker's own state live there).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::host::paths::Paths;

pub(crate) const GIB: u64 = 1 << 30;
/// Below this free space under `/var/vol` or the backup destination, install refuses.
pub(crate) const MIN_DATA_FREE: u64 = GIB;
/// Below this, a warning.
pub(crate) const LOW_DATA_FREE: u64 = 4 * GIB;
/// Below this free space on the root filesystem, install refuses.
pub(crate) const MIN_ROOT_FREE: u64 = 256 << 20;

/// The build's year (see build.rs): a clock before it cannot be right.
pub(crate) const BUILD_YEAR: i32 = match i32::from_str_radix(env!("PI_SETUP_BUILD_YEAR"), 10) {
    Ok(y) => y,
    Err(_) => 2026,
};

/// The kernel command-line tokens that turn on the memory cgroup on a Raspberry Pi (its kernel
/// ships with it off): without them Docker cannot limit a container's memory.
pub(crate) const CGROUP_TOKENS: [&str; 2] = ["cgroup_enable=memory", "cgroup_memory=1"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Space {
    pub(crate) free: u64,
    pub(crate) total: u64,
    pub(crate) read_only: bool,
}

/// What the checks look at, gathered once.
#[derive(Debug, Clone)]
pub(crate) struct Facts {
    /// `None` under `--root` (a sandbox needs no root); else whether we are root.
    pub(crate) root_user: Option<bool>,
    pub(crate) dry_run: bool,
    /// The daemon's address and API version, or why it cannot be reached.
    pub(crate) docker: Result<(String, String), String>,
    /// This host's architecture as Docker names it (`arm64`, `amd64`).
    pub(crate) host_arch: String,
    /// Each image the plan uses, with its platform when it is already on this machine.
    pub(crate) images: Vec<(String, Option<String>)>,
    /// (shown path, space) of `/var/vol`, the backup destination and the root filesystem.
    pub(crate) vol: (String, Option<Space>),
    pub(crate) backup: (String, Option<Space>),
    pub(crate) root_fs: Option<Space>,
    /// `cmdline.txt` of a Pi's boot partition: (shown path, its text).
    pub(crate) cmdline: Option<(String, String)>,
    /// Whether the running kernel has the memory cgroup controller (`None` under `--root`,
    /// where the kernel is not the sandbox's).
    pub(crate) memory_controller: Option<bool>,
    pub(crate) fix_cmdline: bool,
    pub(crate) year: i32,
    pub(crate) build_year: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Check {
    pub(crate) level: Level,
    pub(crate) what: &'static str,
    pub(crate) text: String,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        write!(f, "preflight {tag} {}: {}", self.what, self.text)
    }
}

fn check(level: Level, what: &'static str, text: impl Into<String>) -> Check {
    Check {
        level,
        what,
        text: text.into(),
    }
}

pub(crate) fn human(bytes: u64) -> String {
    crate::report::human_bytes(bytes)
}

fn space_check(what: &'static str, shown: &str, space: Option<Space>) -> Check {
    match space {
        None => check(
            Level::Warn,
            what,
            format!("{shown}: cannot tell the free space"),
        ),
        Some(s) if s.read_only => check(
            Level::Fail,
            what,
            format!("{shown} is on a read-only filesystem"),
        ),
        Some(s) if s.free < MIN_DATA_FREE => check(
            Level::Fail,
            what,
            format!(
                "{shown} has {} free; pi-setup needs at least {} there",
                human(s.free),
                human(MIN_DATA_FREE)
            ),
        ),
        Some(s) if s.free < LOW_DATA_FREE => check(
            Level::Warn,
            what,
            format!(
                "{shown} has {} free (below {}: little room for data and archives)",
                human(s.free),
                human(LOW_DATA_FREE)
            ),
        ),
        Some(s) => check(
            Level::Ok,
            what,
            format!("{shown} has {} free", human(s.free)),
        ),
    }
}

/// The cmdline with the memory cgroup turned on: `cgroup_disable=memory` dropped, the missing
/// tokens appended, still one line. `None` when it already is.
pub(crate) fn fix_cmdline(text: &str) -> Option<String> {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let mut tokens: Vec<&str> = line
        .split_whitespace()
        .filter(|t| *t != "cgroup_disable=memory")
        .collect();
    let before = tokens.len();
    let had_disable = before != line.split_whitespace().count();
    for t in CGROUP_TOKENS {
        if !tokens.contains(&t) {
            tokens.push(t);
        }
    }
    if tokens.len() == before
        && !had_disable
        && text.lines().filter(|l| !l.trim().is_empty()).count() <= 1
    {
        return None;
    }
    Some(format!("{}\n", tokens.join(" ")))
}

/// One line per check, in the order they are printed.
pub(crate) fn checks(f: &Facts) -> Vec<Check> {
    let mut out = Vec::new();
    out.push(match f.root_user {
        None => check(Level::Ok, "root", "under --root: a sandbox, no root needed"),
        Some(true) => check(Level::Ok, "root", "running as root"),
        Some(false) if f.dry_run => check(
            Level::Warn,
            "root",
            "not root: fine for --dry-run; the real run needs sudo",
        ),
        Some(false) => check(
            Level::Fail,
            "root",
            "this command changes /etc and /var: run it as root (sudo pi-setup ...), or try it under --root DIR",
        ),
    });
    out.push(match &f.docker {
        Ok((host, api)) => check(
            Level::Ok,
            "docker",
            format!("reachable at {host}, API {api}"),
        ),
        Err(why) => check(Level::Fail, "docker", why.clone()),
    });
    let want = format!("linux/{}", f.host_arch);
    let mut wrong = Vec::new();
    let mut present = 0;
    for (image, platform) in &f.images {
        if let Some(p) = platform {
            present += 1;
            if !platform_matches(p, &want) {
                wrong.push(format!("{image} is {p}"));
            }
        }
    }
    out.push(if wrong.is_empty() {
        check(
            Level::Ok,
            "architecture",
            format!(
                "this host is {want}; {present} of {} image(s) here, all {want} (the rest are pulled or loaded for it)",
                f.images.len()
            ),
        )
    } else {
        check(
            Level::Fail,
            "architecture",
            format!(
                "this host is {want}, but image {} without {want}: pull or load one built for {want}",
                wrong.join(", image ")
            ),
        )
    });
    out.push(space_check("space", &f.vol.0, f.vol.1));
    out.push(space_check("backup space", &f.backup.0, f.backup.1));
    out.push(match f.root_fs {
        None => check(Level::Warn, "root filesystem", "cannot tell its state"),
        Some(s) if s.read_only => check(
            Level::Fail,
            "root filesystem",
            "/ is read-only (an overlay-root Pi, or a failing SD card): make it writable first",
        ),
        Some(s) if s.free < MIN_ROOT_FREE => check(
            Level::Fail,
            "root filesystem",
            format!(
                "/ has {} free; pi-setup needs at least {}",
                human(s.free),
                human(MIN_ROOT_FREE)
            ),
        ),
        Some(s) if s.total > 0 && s.free * 20 < s.total => check(
            Level::Warn,
            "root filesystem",
            format!(
                "/ is nearly full: {} free of {}",
                human(s.free),
                human(s.total)
            ),
        ),
        Some(s) => check(
            Level::Ok,
            "root filesystem",
            format!("/ has {} free", human(s.free)),
        ),
    });
    out.push(match (&f.cmdline, f.memory_controller) {
        // The kernel has it now, whatever cmdline.txt says.
        (_, Some(true)) => check(
            Level::Ok,
            "memory cgroup",
            "the running kernel has the memory controller",
        ),
        (None, Some(false)) => check(
            Level::Warn,
            "memory cgroup",
            "the running kernel has no memory controller: memory limits will not apply",
        ),
        (None, None) => check(
            Level::Ok,
            "memory cgroup",
            "no Raspberry Pi cmdline.txt: nothing to check",
        ),
        (Some((shown, text)), _) => match fix_cmdline(text) {
            None => check(
                Level::Ok,
                "memory cgroup",
                format!("{shown} has {}", CGROUP_TOKENS.join(" ")),
            ),
            Some(_) if f.fix_cmdline => check(
                Level::Warn,
                "memory cgroup",
                format!(
                    "{shown} lacks {}: --fix-cmdline adds them; reboot afterwards for them to take effect",
                    CGROUP_TOKENS.join(" ")
                ),
            ),
            Some(_) => check(
                Level::Fail,
                "memory cgroup",
                format!(
                    "{shown} lacks {} (the Pi's kernel starts with the memory cgroup off, so Docker cannot limit memory): run install with --fix-cmdline, then reboot",
                    CGROUP_TOKENS.join(" ")
                ),
            ),
        },
    });
    out.push(if f.year < f.build_year {
        check(
            Level::Warn,
            "clock",
            format!(
                "the clock says {}, before this build ({}): certificates will not validate until it is set (is NTP reachable? `timedatectl`)",
                f.year, f.build_year
            ),
        )
    } else {
        check(Level::Ok, "clock", format!("year {}", f.year))
    });
    out
}

/// `linux/arm64` matches `linux/arm64/v8`.
fn platform_matches(have: &str, want: &str) -> bool {
    have == want || have.starts_with(&format!("{want}/"))
}

/// Docker's name for this machine's architecture. `PI_SETUP_TEST_HOST_ARCH` stands in for it
/// in tests (an arm64 host on an amd64 CI machine); it is not for users.
pub(crate) fn host_arch() -> String {
    if let Ok(a) = std::env::var("PI_SETUP_TEST_HOST_ARCH") {
        if !a.is_empty() {
            return a;
        }
    }
    match std::env::consts::ARCH {
        "x86_64" => "amd64".into(),
        "aarch64" => "arm64".into(),
        "arm" => "arm".into(),
        "x86" => "386".into(),
        other => other.into(),
    }
}

/// The free space of the filesystem `path` is (or would be) on: its nearest existing ancestor.
pub(crate) fn space(path: &Path) -> Option<Space> {
    let mut p: PathBuf = path.to_path_buf();
    while !p.exists() {
        p = p.parent()?.to_path_buf();
    }
    let s = nix::sys::statvfs::statvfs(&p).ok()?;
    let frag = s.fragment_size() as u64;
    Some(Space {
        free: s.blocks_available() as u64 * frag,
        total: s.blocks() as u64 * frag,
        read_only: s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
    })
}

/// A Pi's kernel command line: `/boot/firmware/cmdline.txt` (Bookworm and newer), else
/// `/boot/cmdline.txt` (older releases), under the root.
pub(crate) fn cmdline_file(paths: &Paths) -> Option<(String, PathBuf)> {
    ["/boot/firmware/cmdline.txt", "/boot/cmdline.txt"]
        .into_iter()
        .map(|p| (p.to_string(), paths.host(p)))
        .find(|(_, p)| p.is_file())
}

/// Whether the running kernel offers the memory cgroup controller (cgroup v2, else v1).
pub(crate) fn kernel_memory_controller() -> Option<bool> {
    if let Ok(text) = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers") {
        return Some(text.split_whitespace().any(|c| c == "memory"));
    }
    let cgroups = std::fs::read_to_string("/proc/cgroups").ok()?;
    Some(cgroups.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.first() == Some(&"memory") && f.get(3) == Some(&"1")
    }))
}

pub(crate) fn current_year() -> i32 {
    i32::from(
        jiff::Timestamp::now()
            .to_zoned(jiff::tz::TimeZone::UTC)
            .year(),
    )
}

#[cfg(test)]
mod tests {
    use super::{checks, fix_cmdline, Check, Facts, Level, Space, GIB};

    fn good() -> Facts {
        let roomy = Some(Space {
            free: 20 * GIB,
            total: 30 * GIB,
            read_only: false,
        });
        Facts {
            root_user: Some(true),
            dry_run: false,
            docker: Ok(("unix:///var/run/docker.sock".into(), "1.41".into())),
            host_arch: "arm64".into(),
            images: vec![
                ("caddy:2.11.7".into(), Some("linux/arm64/v8".into())),
                ("busybox:1".into(), None),
            ],
            vol: ("/var/vol".into(), roomy),
            backup: ("/var/backups/pi-setup".into(), roomy),
            root_fs: roomy,
            cmdline: Some((
                "/boot/firmware/cmdline.txt".into(),
                "console=tty1 root=PARTUUID=1 rootwait cgroup_enable=memory cgroup_memory=1\n"
                    .into(),
            )),
            memory_controller: None,
            fix_cmdline: false,
            year: 2026,
            build_year: 2026,
        }
    }

    fn failures(f: &Facts) -> Vec<Check> {
        checks(f)
            .into_iter()
            .filter(|c| c.level != Level::Ok)
            .collect()
    }

    #[test]
    fn a_ready_host_passes_every_check_one_line_each() {
        let lines: Vec<String> = checks(&good()).iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "preflight ok   root: running as root",
                "preflight ok   docker: reachable at unix:///var/run/docker.sock, API 1.41",
                "preflight ok   architecture: this host is linux/arm64; 1 of 2 image(s) here, all linux/arm64 (the rest are pulled or loaded for it)",
                "preflight ok   space: /var/vol has 20.0 GiB free",
                "preflight ok   backup space: /var/backups/pi-setup has 20.0 GiB free",
                "preflight ok   root filesystem: / has 20.0 GiB free",
                "preflight ok   memory cgroup: /boot/firmware/cmdline.txt has cgroup_enable=memory cgroup_memory=1",
                "preflight ok   clock: year 2026",
            ]
        );
    }

    #[test]
    fn each_problem_is_its_own_failure_or_warning() {
        let mut f = good();
        f.root_user = Some(false);
        f.docker = Err("cannot reach the Docker daemon at unix:///x".into());
        f.images[1].1 = Some("linux/amd64".into());
        f.vol.1 = Some(Space {
            free: 1 << 20,
            total: 1 << 20,
            read_only: false,
        });
        f.backup.1 = Some(Space {
            free: 2 * GIB,
            total: 100 * GIB,
            read_only: false,
        });
        f.root_fs = Some(Space {
            free: GIB,
            total: 64 * GIB,
            read_only: false,
        });
        f.cmdline.as_mut().unwrap().1 = "console=tty1 rootwait\n".into();
        f.year = 1970;
        let got: Vec<(Level, &str)> = failures(&f).iter().map(|c| (c.level, c.what)).collect();
        assert_eq!(
            got,
            [
                (Level::Fail, "root"),
                (Level::Fail, "docker"),
                (Level::Fail, "architecture"),
                (Level::Fail, "space"),
                (Level::Warn, "backup space"),
                (Level::Warn, "root filesystem"),
                (Level::Fail, "memory cgroup"),
                (Level::Warn, "clock"),
            ]
        );
        let text: Vec<String> = failures(&f).iter().map(ToString::to_string).collect();
        assert_eq!(text[2], "preflight FAIL architecture: this host is linux/arm64, but image busybox:1 is linux/amd64 without linux/arm64: pull or load one built for linux/arm64");
        assert_eq!(text[3], "preflight FAIL space: /var/vol has 1.0 MiB free; pi-setup needs at least 1.0 GiB there");
        assert!(
            text[6].ends_with("run install with --fix-cmdline, then reboot"),
            "{}",
            text[6]
        );
        assert!(
            text[7].contains("the clock says 1970, before this build (2026)"),
            "{}",
            text[7]
        );
        // With --fix-cmdline the missing tokens are a warning (fixed after the checks pass).
        f.fix_cmdline = true;
        assert_eq!(failures(&f)[6].level, Level::Warn);
        // A dry run by a normal user is only warned.
        f.dry_run = true;
        assert_eq!(failures(&f)[0].level, Level::Warn);
        let ro = Some(Space {
            free: 10 * GIB,
            total: 10 * GIB,
            read_only: true,
        });
        let mut g = good();
        g.root_fs = ro;
        assert_eq!(
            failures(&g)[0].to_string(),
            "preflight FAIL root filesystem: / is read-only (an overlay-root Pi, or a failing SD card): make it writable first"
        );
    }

    #[test]
    fn on_the_real_host_the_running_kernel_decides_the_memory_cgroup() {
        let mut f = good();
        f.cmdline.as_mut().unwrap().1 = "console=tty1 rootwait\n".into();
        f.memory_controller = Some(true);
        assert_eq!(failures(&f), Vec::<Check>::new());
        f.cmdline = None;
        f.memory_controller = Some(false);
        assert_eq!(
            failures(&f)[0].to_string(),
            "preflight warn memory cgroup: the running kernel has no memory controller: memory limits will not apply"
        );
    }

    #[test]
    fn the_cmdline_fix_keeps_one_line_and_is_idempotent() {
        let fixed = fix_cmdline("console=serial0,115200 console=tty1 root=PARTUUID=abc-02 rootfstype=ext4 fsck.repair=yes rootwait\n").unwrap();
        assert_eq!(
            fixed,
            "console=serial0,115200 console=tty1 root=PARTUUID=abc-02 rootfstype=ext4 fsck.repair=yes rootwait cgroup_enable=memory cgroup_memory=1\n"
        );
        assert_eq!(fix_cmdline(&fixed), None);
        assert_eq!(
            fix_cmdline("a cgroup_disable=memory cgroup_memory=1 b").unwrap(),
            "a cgroup_memory=1 b cgroup_enable=memory\n"
        );
        assert_eq!(
            fix_cmdline("a cgroup_enable=memory cgroup_memory=1"),
            None,
            "no newline is fine"
        );
        // Only the first line counts for the firmware; a stray second line is folded away.
        assert_eq!(
            fix_cmdline("a cgroup_enable=memory cgroup_memory=1\nb\n").unwrap(),
            "a cgroup_enable=memory cgroup_memory=1\n"
        );
    }
}
