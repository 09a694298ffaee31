//! Rough edges a new user hit: the next step a message advertises works, messages say what
//! will happen (or did) to the data, flag errors name the flag, one broken service file does
//! not hide everything else, the command goes after `--`, and a definition Docker refuses is
//! not kept.

use std::net::TcpListener;
use std::process::Command;

use crate::harness::{
    assert_nothing_changed, assert_ok, bin, docker, inspect, stderr, stdout, Sandbox, BUSYBOX_IMAGE,
};

/// A sandbox with the gateway installed and nothing else.
fn installed() -> Sandbox {
    let sb = Sandbox::new();
    sb.install(&sb.profile(""));
    sb
}

/// `add-service NAME` for a busybox httpd on port 8080 serving /var/vol/NAME/www, with `extra`
/// options before the command.
fn add_web(sb: &Sandbox, name: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "add-service",
        name,
        "--image",
        BUSYBOX_IMAGE,
        "--port",
        "8080",
        "--volume",
        "www:/www",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "httpd", "-f", "-p", "8080", "-h", "/www"]);
    sb.run(&args)
}

#[test]
fn remove_service_says_what_happens_to_the_data_and_purge_works_after_a_plain_remove() {
    let sb = installed();
    assert_ok(&add_web(&sb, "blog", &["--domain", "blog.test"]));
    let volume = sb.path("/var/vol/blog");
    std::fs::write(volume.join("www/index.html"), "my blog\n").unwrap();

    let dry = sb.run(&["remove-service", "blog", "--dry-run"]);
    assert_ok(&dry);
    assert!(
        stdout(&dry).ends_with(&format!(
            "Dry run: nothing was changed.\nWould keep its data in {} (`pi-setup remove-service blog --purge` deletes it).\n",
            volume.display()
        )),
        "{}",
        stdout(&dry)
    );
    let dry = sb.run(&["remove-service", "blog", "--purge", "--dry-run"]);
    assert_ok(&dry);
    assert!(
        stdout(&dry).ends_with(&format!(
            "Dry run: nothing was changed.\nWould delete {} and everything in it (--purge).\n",
            volume.display()
        )),
        "{}",
        stdout(&dry)
    );
    assert!(!stdout(&dry).contains("kept"), "{}", stdout(&dry));

    let out = sb.run(&["remove-service", "blog"]);
    assert_ok(&out);
    assert!(
        stdout(&out).ends_with(&format!(
            "Kept its data in {} (delete it with `pi-setup remove-service blog --purge`).\n",
            volume.display()
        )),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains(&format!(
            "remove container {} (service 'blog' is no longer defined)\n",
            sb.container("blog")
        )),
        "{}",
        stderr(&out)
    );

    // The advertised next step works on the removed service: dry run, confirmation, purge.
    let out = sb.run(&["remove-service", "blog"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "error: there is no service named 'blog'; its data is still in {} (`pi-setup remove-service blog --purge` deletes it)\nnothing was changed\n",
            volume.display()
        )
    );
    let out = sb.run(&["remove-service", "blog", "--purge", "--dry-run"]);
    assert_ok(&out);
    assert_eq!(
        stdout(&out),
        format!(
            "Service 'blog' is already removed; would delete its data, {}, and everything in it (--purge).\nDry run: nothing was changed.\n",
            volume.display()
        )
    );
    let out = sb.run(&["remove-service", "blog", "--purge"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("add --yes to confirm"),
        "{}",
        stderr(&out)
    );
    assert!(volume.join("www/index.html").exists());
    let out = sb.run(&["remove-service", "blog", "--purge", "--yes"]);
    assert_ok(&out);
    assert_eq!(
        stdout(&out),
        format!(
            "Service 'blog' was already removed; deleted its data, {} (--purge).\n",
            volume.display()
        )
    );
    assert!(!volume.exists());
    let out = sb.run(&["remove-service", "blog", "--purge", "--yes"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: there is no service named 'blog' (see `pi-setup list`)\nnothing was changed\n"
    );
    // The gateway's data is never a leftover to purge.
    let out = sb.run(&["remove-service", "gateway", "--purge", "--yes"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(sb.path("/var/vol/gateway").exists());

    // Removing a defined service with --purge: the step line does not claim the data is kept.
    assert_ok(&add_web(&sb, "blog", &[]));
    let out = sb.run(&["remove-service", "blog", "--purge", "--yes"]);
    assert_ok(&out);
    assert!(
        stdout(&out).ends_with(&format!("Deleted {} (--purge).\n", volume.display())),
        "{}",
        stdout(&out)
    );
    assert!(
        !stdout(&out).contains("kept") && !stderr(&out).contains("kept"),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(!volume.exists());
}

#[test]
fn errors_in_flag_values_name_the_flag_and_in_a_file_its_position() {
    // Validation happens before Docker is asked anything: no install needed.
    let sb = Sandbox::new();
    let services = sb.path("/etc/pi-setup/services");
    std::fs::create_dir_all(&services).unwrap();
    std::fs::write(
        services.join("web.toml"),
        format!("name = \"web\"\nimage = \"{BUSYBOX_IMAGE}\"\ndomains = [\"taken.local\"]\n"),
    )
    .unwrap();
    let base = ["add-service", "x", "--image", BUSYBOX_IMAGE];
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["--volume", "data:/data", "--volume", "../etc:/x"],
            "error: --volume \"../etc:/x\": invalid volume \"../etc:/x\": \"../etc\" escapes or does not name a sub-directory of the service's directory\n".into(),
        ),
        (
            vec!["--domain", "ok.local", "--domain", "taken.local"],
            "error: --domain \"taken.local\": duplicate domain 'taken.local' in service 'x' (already used by service 'web')\n".into(),
        ),
        (
            vec!["--memory", "1k", "--env", "1X=y"],
            "error: --env \"1X=y\": invalid environment variable name \"1X\"\n\
             --memory \"1k\": memory \"1k\" is out of range: 6m to 1024g\n\
             2 problems found\n"
                .into(),
        ),
        (
            vec!["--restart", "sometimes"],
            "error: --restart \"sometimes\": restart \"sometimes\" is not one of no, always, unless-stopped, on-failure\n".into(),
        ),
    ];
    for (extra, expected) in cases {
        let mut args = base.to_vec();
        args.extend_from_slice(&extra);
        let out = sb.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}\n{}", stderr(&out));
        assert_eq!(
            stderr(&out),
            format!("{expected}nothing was changed\n"),
            "{args:?}"
        );
    }

    // A definition from --file keeps pointing into that file.
    let def = sb.root().join("../x-def.toml");
    std::fs::write(
        &def,
        format!("name = \"x\"\nimage = \"{BUSYBOX_IMAGE}\"\nvolumes = [\"../etc:/x\"]\n"),
    )
    .unwrap();
    let out = sb.run(&["add-service", "--file", def.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "error: {}:3:12: invalid volume \"../etc:/x\": \"../etc\" escapes or does not name a sub-directory of the service's directory\n     3 | volumes = [\"../etc:/x\"]\nnothing was changed\n",
            def.display()
        )
    );
    std::fs::remove_file(&def).unwrap();

    // The old `--command` spelling swallowed every option after it; it is refused now.
    let out = sb.run(&[
        "add-service",
        "x",
        "--image",
        BUSYBOX_IMAGE,
        "--command",
        "sh",
        "-c",
        "true",
        "--dry-run",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("error: --command is gone: give the command last, after `--`"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_dir(&services).unwrap().count(),
        1,
        "nothing was added"
    );
}

#[test]
fn the_command_goes_after_double_dash_and_options_before_it_count() {
    let sb = installed();
    let args = [
        "add-service",
        "echo",
        "--image",
        BUSYBOX_IMAGE,
        "--dry-run",
        "--",
        "sh",
        "-c",
        "echo hi; exec sleep 600",
    ];
    let out = sb.run(&args);
    assert_ok(&out);
    assert!(stdout(&out).ends_with("Dry run: nothing was changed.\n"));
    assert!(!sb.path("/etc/pi-setup/services/echo.toml").exists());
    assert!(!docker(&["inspect", &sb.container("echo")]).status.success());

    let real: Vec<&str> = args.iter().copied().filter(|a| *a != "--dry-run").collect();
    assert_ok(&sb.run(&real));
    assert_eq!(
        inspect(&sb.container("echo"), "{{json .Config.Cmd}}"),
        "[\"sh\",\"-c\",\"echo hi; exec sleep 600\"]"
    );
    let def = std::fs::read_to_string(sb.path("/etc/pi-setup/services/echo.toml")).unwrap();
    assert!(
        def.contains("command = [\"sh\", \"-c\", \"echo hi; exec sleep 600\"]\n"),
        "{def}"
    );
}

#[test]
fn list_and_status_show_everything_else_when_one_service_file_is_broken() {
    let sb = installed();
    assert_ok(&add_web(&sb, "web", &["--domain", "web.test"]));
    let bad = sb.path("/etc/pi-setup/services/bad.toml");
    std::fs::write(&bad, "name = \"bad\"\nimage = \"x:1\"\nport = \"http\"\n").unwrap();
    let problem = format!(
        "{}:3:8: invalid type: string \"http\", expected i64",
        bad.display()
    );

    let out = sb.run(&["list"]);
    assert_ok(&out);
    let text = stdout(&out);
    let names: Vec<&str> = text
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(names, ["gateway", "web"], "{text}");
    assert!(
        stderr(&out).starts_with(&format!("warning: left out of the list: {problem}")),
        "{}",
        stderr(&out)
    );

    let out = sb.run(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with("web ") && l.contains("running")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "Problems:\n  - {problem}\n         3 | port = \"http\"\n"
        )),
        "{text}"
    );

    // `status NAME` lists NAME only; the broken file of another service is not its problem.
    let out = sb.run(&["status", "web"]);
    assert_ok(&out);
    let text = stdout(&out);
    let rows: Vec<&str> = text.lines().skip(1).take_while(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), 1, "{text}");
    assert!(rows[0].starts_with("web "), "{text}");
    assert!(
        text.ends_with("\nAll good: web, the network and the gateway are up.\n"),
        "{text}"
    );
    let out = sb.run(&["status", "bad", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["services"], serde_json::json!([]), "{json}");
    assert!(
        json["problems"][0].as_str().unwrap().starts_with(&problem),
        "{json}"
    );

    // The gateway is the way in, not behind it: no access of its own (null in JSON).
    let json: serde_json::Value =
        serde_json::from_slice(&sb.run(&["list", "--json"]).stdout).unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{json}");
    assert_eq!(rows[0]["name"], "gateway");
    assert!(rows[0]["access"].is_null(), "{json}");
    assert_eq!(rows[1]["access"], "public");
}

#[test]
fn a_new_service_docker_refuses_is_not_kept() {
    let sb = installed();
    // Another process holds the host port: the definition validates, Docker cannot start it.
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let publish = format!("127.0.0.1:{port}:8080");
    let out = add_web(&sb, "direct", &["--publish", &publish]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let file = sb.path("/etc/pi-setup/services/direct.toml");
    assert!(
        stderr(&out).contains(&format!(
            "\nerror: adding service 'direct' failed, so the definition was not kept (removed {}); what was half-created is removed again\n",
            file.display()
        )),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("address already in use"),
        "{}",
        stderr(&out)
    );
    assert!(!file.exists());
    assert!(!docker(&["inspect", &sb.container("direct")])
        .status
        .success());
    assert!(!sb.path("/var/vol/direct").exists());

    // Later commands are not stuck on it.
    let out = sb.run(&["apply"]);
    assert_nothing_changed(&out);
    drop(holder);
    assert_ok(&add_web(&sb, "direct", &["--publish", &publish]));
    assert_eq!(
        inspect(&sb.container("direct"), "{{.State.Running}}"),
        "true"
    );
}

#[test]
fn global_options_have_their_own_heading_in_help() {
    for command in [
        &["add-service", "--help"][..],
        &["status", "--help"],
        &["--help"],
    ] {
        let out = Command::new(bin()).args(command).output().unwrap();
        assert!(out.status.success());
        let help = stdout(&out);
        let (own, global) = help
            .split_once("\nGlobal options:\n")
            .unwrap_or_else(|| panic!("{command:?}: no Global options heading:\n{help}"));
        assert!(
            global.contains("--root <DIR>") && global.contains("--instance <NAME>"),
            "{command:?}:\n{help}"
        );
        assert!(
            !own.contains("--root") && !own.contains("--instance"),
            "{command:?}:\n{help}"
        );
    }
}
