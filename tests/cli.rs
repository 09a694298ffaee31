//! The command line itself: version, help on every command, completions, usage errors.

use std::process::Command;

use crate::harness::{bin, stderr, stdout};

fn run(args: &[&str]) -> std::process::Output {
    Command::new(bin()).args(args).output().unwrap()
}

#[test]
fn version_and_help() {
    let out = run(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out),
        format!("pi-setup {}\n", env!("CARGO_PKG_VERSION"))
    );
    let commands = [
        "install",
        "add-service",
        "remove-service",
        "list",
        "status",
        "apply",
        "heal",
        "backup",
        "restore",
        "backups",
        "verify",
        "completions",
    ];
    let top = stdout(&run(&["--help"]));
    for c in commands {
        assert!(top.contains(&format!("  {c} ")), "--help lists {c}:\n{top}");
        let out = run(&[c, "--help"]);
        assert!(out.status.success(), "{c} --help");
        assert!(
            stdout(&out).contains(&format!("Usage: pi-setup {c}")),
            "{c}: {}",
            stdout(&out)
        );
    }
    assert!(stdout(&run(&["--help"])).contains("Exit codes: 0 success, 1 failure, 2 invalid usage"));
    assert!(stdout(&run(&["install", "--help"])).contains("--dry-run"));
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        assert!(stdout(&out).contains("install"), "{shell}");
    }
    let out = run(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn usage_errors_exit_2() {
    let out = run(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unrecognized subcommand 'frobnicate'"));
}
