//! Every file in systemd/ passes `systemd-analyze verify` (systemd's own parser; ci/deps
//! installs it), rendered as install renders it. systemd-analyze exits 0 on an invalid value
//! ("ignoring"), so any output at all is a failure. No Docker needed.

use std::path::Path;
use std::process::Command;

use crate::harness::bin;

/// A unit file as a host would hold it: placeholders filled, templates instantiated.
fn rendered_name(file: &str) -> String {
    file.strip_suffix(".in")
        .unwrap_or(file)
        .replace("@.", "@demo.")
}

#[test]
fn every_unit_in_systemd_passes_systemd_analyze_verify() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    let dir = tempfile::tempdir().unwrap();
    let mut names = Vec::new();
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let file = p.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&p)
            .unwrap()
            .replace("@EXEC@", bin())
            .replace("@SCHEDULE@", "*-*-* 03:00:00")
            .replace("@JOB@", "demo");
        let name = rendered_name(&file);
        std::fs::write(dir.path().join(&name), text).unwrap();
        names.push(name);
    }
    names.sort();
    assert!(names.len() >= 6, "{names:?}");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(names.iter().map(|n| dir.path().join(n)))
        .output()
        .expect("systemd-analyze (Debian package systemd; ci/deps installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify {names:?}:\n{stderr}{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn the_units_that_run_docker_commands_are_hardened() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    for unit in [
        "pi-setup-backup.service",
        "pi-setup-heal.service",
        "pi-setup-job@.service",
    ] {
        let text = std::fs::read_to_string(src.join(unit)).unwrap();
        for line in [
            "ProtectSystem=full",
            "PrivateTmp=yes",
            "NoNewPrivileges=yes",
            "ReadWritePaths=-/etc/pi-setup -/var/lib/pi-setup -/var/vol -/run",
        ] {
            assert!(text.lines().any(|l| l == line), "{unit} lacks {line}");
        }
    }
}

/// systemd-analyze really reads the values: an invalid one is caught (the check above is not
/// vacuous).
#[test]
fn systemd_analyze_verify_reports_an_invalid_value() {
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("pi-setup-broken.service");
    std::fs::write(
        &unit,
        "[Service]\nType=oneshot\nExecStart=/bin/true\nProtectSystem=sometimes\n",
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("protect system value"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
