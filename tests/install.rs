//! `pi-setup install` against the real daemon: routing by Host, volumes, idempotence,
//! dry runs, recreation of only what changed, and every kind of bad input.

use std::process::Command;

use crate::harness::{
    assert_nothing_changed, assert_ok, docker, inspect, stderr, stdout, tree, Sandbox,
    BUSYBOX_IMAGE,
};

fn web_service(name: &str, domain: &str, extra: &str) -> String {
    format!(
        "[[service]]\nname = \"{name}\"\nimage = \"{BUSYBOX_IMAGE}\"\ndomains = [\"{domain}\"]\nport = 8080\n\
         command = [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\nvolumes = [\"www:/www\"]\n{extra}\n"
    )
}

#[test]
fn install_routes_by_host_through_the_gateway_only() {
    let sb = Sandbox::new();
    let profile = sb.profile(&web_service("web", "web.test", ""));
    let out = sb.install(&profile);
    let text = stdout(&out);
    assert!(
        text.contains(&format!("create network {}-intercontainer", sb.instance)),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "web              running    http://web.test:{}/",
            sb.http_port
        )),
        "{text}"
    );

    // A file written on the host under /var/vol/web is what the service serves.
    std::fs::write(
        sb.path("/var/vol/web/www/index.html"),
        "hello from the volume\n",
    )
    .unwrap();
    assert_eq!(
        sb.get("web.test"),
        (200, "hello from the volume\n".to_string())
    );

    // An unknown host gets the gateway's 404, not the service.
    let (status, body) = sb.get("other.test");
    assert_eq!(status, 404);
    assert!(!body.contains("hello from the volume"));

    // Only the gateway publishes ports, on the configured loopback address and port.
    let web_ports = inspect(&sb.container("web"), "{{json .HostConfig.PortBindings}}");
    assert!(
        web_ports == "null" || web_ports == "{}",
        "web publishes {web_ports}"
    );
    let gw_ports = inspect(
        &sb.container("gateway"),
        "{{json .HostConfig.PortBindings}}",
    );
    assert_eq!(
        gw_ports,
        format!(
            "{{\"80/tcp\":[{{\"HostIp\":\"127.0.0.1\",\"HostPort\":\"{}\"}}]}}",
            sb.http_port
        )
    );

    // Labels, restart policy, network alias, security option.
    let c = sb.container("gateway");
    assert_eq!(
        inspect(&c, "{{.HostConfig.RestartPolicy.Name}}"),
        "unless-stopped"
    );
    assert_eq!(
        inspect(&c, "{{index .Config.Labels \"pi-setup.managed\"}}"),
        "true"
    );
    assert_eq!(
        inspect(
            &c,
            "{{len (index .Config.Labels \"pi-setup.config-hash\")}}"
        ),
        "64"
    );
    assert_eq!(
        inspect(&c, "{{json .HostConfig.SecurityOpt}}"),
        "[\"no-new-privileges:true\"]"
    );
    let net = format!("{}-intercontainer", sb.instance);
    let aliases = inspect(
        &sb.container("web"),
        &format!("{{{{json (index .NetworkSettings.Networks \"{net}\").Aliases}}}}"),
    );
    assert!(aliases.contains("\"web\""), "{aliases}");
    assert_eq!(
        inspect(&net, "{{index .Labels \"pi-setup.managed\"}}"),
        "true"
    );

    // Host state: volume dirs with the layout's modes, the profile in force.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| std::fs::metadata(sb.path(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("/var/vol/gateway/data"), 0o700);
    assert_eq!(mode("/var/vol/web"), 0o755);
    assert_eq!(
        std::fs::read_to_string(sb.path("/etc/pi-setup/pi-setup.toml")).unwrap(),
        std::fs::read_to_string(&profile).unwrap()
    );
}

#[test]
fn a_second_install_changes_nothing() {
    let sb = Sandbox::new();
    let profile = sb.profile(&web_service("web", "web.test", ""));
    sb.install(&profile);
    let ids = (sb.container_id("gateway"), sb.container_id("web"));
    // Images chown their own data on first start; that is theirs to keep.
    std::os::unix::fs::chown(sb.path("/var/vol/web/www"), Some(70), Some(70)).unwrap();
    let files_before = tree(sb.root());

    let out = sb.install(&profile);
    assert!(
        stdout(&out).starts_with("Nothing changed: everything already matches the profile.\n"),
        "{}",
        stdout(&out)
    );
    assert_eq!((sb.container_id("gateway"), sb.container_id("web")), ids);
    assert_eq!(tree(sb.root()), files_before);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(sb.path("/var/vol/web/www"))
            .unwrap()
            .uid(),
        70
    );

    // Without --profile, install uses the profile in force and still changes nothing.
    let out = sb.run(&["install"]);
    assert_nothing_changed(&out);
    let dry = sb.run(&["install", "--dry-run"]);
    assert!(
        stdout(&dry).starts_with("Nothing to change"),
        "{}",
        stdout(&dry)
    );
}

#[test]
fn changing_one_service_recreates_only_that_container() {
    let sb = Sandbox::new();
    let services = format!(
        "{}{}",
        web_service("web", "web.test", ""),
        web_service("api", "api.test", "")
    );
    let profile = sb.profile(&services);
    sb.install(&profile);
    std::fs::write(sb.path("/var/vol/api/www/index.html"), "api\n").unwrap();
    assert_eq!(sb.get("api.test").0, 200);
    let before = (
        sb.container_id("gateway"),
        sb.container_id("web"),
        sb.container_id("api"),
    );

    let changed = format!(
        "{}{}",
        web_service("web", "web.test", ""),
        web_service("api", "api.test", "env = { MODE = \"fast\" }")
    );
    let out = sb.install(&sb.profile(&changed));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "remove container {}-api (configuration changed)",
            sb.instance
        )),
        "{text}"
    );
    assert_eq!(sb.container_id("gateway"), before.0);
    assert_eq!(sb.container_id("web"), before.1);
    assert_ne!(sb.container_id("api"), before.2);
    assert!(inspect(&sb.container("api"), "{{json .Config.Env}}").contains("MODE=fast"));
    assert_eq!(sb.get("api.test"), (200, "api\n".to_string()));
}

#[test]
fn a_new_domain_reloads_the_gateway_without_recreating_it() {
    let sb = Sandbox::new();
    sb.install(&sb.profile(&web_service("web", "web.test", "")));
    std::fs::write(sb.path("/var/vol/web/www/index.html"), "web\n").unwrap();
    assert_eq!(sb.get("web.test").0, 200);
    let gateway = sb.container_id("gateway");

    let out = sb.install(&sb.profile(&web_service("web", "renamed.test", "")));
    assert!(
        stdout(&out).contains("reload the gateway configuration"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        sb.container_id("gateway"),
        gateway,
        "the gateway is reloaded, not recreated"
    );
    assert_eq!(sb.get("renamed.test"), (200, "web\n".to_string()));
    assert_eq!(sb.get("web.test").0, 404);

    // A run that wrote the site files but stopped before the reload (killed, or Caddy refused
    // the config) leaves the marker of what the gateway loaded behind: the next run reloads.
    std::fs::write(
        sb.path("/var/vol/gateway/admin/loaded"),
        "an earlier configuration",
    )
    .unwrap();
    let out = sb.run(&["install"]);
    assert_ok(&out);
    assert!(
        stdout(&out).contains("reload the gateway configuration"),
        "{}",
        stdout(&out)
    );
    let again = sb.run(&["install"]);
    assert_nothing_changed(&again);
}

#[test]
fn removing_a_service_from_the_profile_removes_its_container_and_route_but_keeps_data() {
    let sb = Sandbox::new();
    sb.install(&sb.profile(&format!(
        "{}{}",
        web_service("web", "web.test", ""),
        web_service("old", "old.test", "")
    )));
    std::fs::write(sb.path("/var/vol/old/www/index.html"), "old\n").unwrap();
    assert_eq!(sb.get("old.test").0, 200);

    sb.install(&sb.profile(&web_service("web", "web.test", "")));
    assert!(!docker(&["inspect", &sb.container("old")]).status.success());
    assert_eq!(sb.get("old.test").0, 404);
    assert!(!sb.path("/var/vol/gateway/etc/sites/old.caddy").exists());
    assert_eq!(
        std::fs::read_to_string(sb.path("/var/vol/old/www/index.html")).unwrap(),
        "old\n"
    );
}

#[test]
fn a_stopped_container_is_started_again() {
    let sb = Sandbox::new();
    let profile = sb.profile(&web_service("web", "web.test", ""));
    sb.install(&profile);
    let id = sb.container_id("web");
    assert!(docker(&["stop", "-t", "1", &sb.container("web")])
        .status
        .success());
    let out = sb.install(&profile);
    assert!(
        stdout(&out).contains(&format!("start container {}-web", sb.instance)),
        "{}",
        stdout(&out)
    );
    assert_eq!(sb.container_id("web"), id);
    assert_eq!(inspect(&sb.container("web"), "{{.State.Running}}"), "true");
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let sb = Sandbox::new();
    let profile = sb.profile(&web_service("web", "web.test", ""));
    let out = sb.run(&[
        "install",
        "--dry-run",
        "--profile",
        profile.to_str().unwrap(),
    ]);
    assert_ok(&out);
    let text = stdout(&out);
    let steps: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.trim_start()
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        })
        .collect();
    assert!(
        steps[0].ends_with(&format!(
            "1. write {}",
            sb.path("/etc/pi-setup/pi-setup.toml").display()
        )) && steps[1].ends_with(&format!("2. create network {}-intercontainer", sb.instance)),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "create and start container {}-web from {BUSYBOX_IMAGE} (new)",
            sb.instance
        )),
        "{text}"
    );
    assert!(text.ends_with("Dry run: nothing was changed.\n"), "{text}");
    assert_eq!(tree(sb.root()), Vec::<String>::new());
    assert_eq!(sb.docker_objects(), Vec::<String>::new());
}

/// Runs install with a profile and expects exit 2, a message, and no change at all.
#[track_caller]
fn rejected(sb: &Sandbox, profile_text: &str, expected: &[&str]) {
    let p = sb.write_profile(profile_text);
    let out = sb.run(&["install", "--profile", p.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "stdout:\n{}\nstderr:\n{err}",
        stdout(&out)
    );
    for e in expected {
        assert!(err.contains(e), "expected {e:?} in:\n{err}");
    }
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(tree(sb.root()), Vec::<String>::new(), "{err}");
    assert_eq!(sb.docker_objects(), Vec::<String>::new());
}

#[test]
fn bad_profiles_are_rejected_with_file_line_and_column() {
    // The full table is in the fast tier (input::tests); these go through the binary: exit 2,
    // every problem at once with its position, nothing changed on the host or the daemon, and
    // the schedule checked by this host's systemd.
    let sb = Sandbox::new();
    let gw = format!(
        "[gateway]\nimage = \"{}\"\nhttp_port = {}\nhttps = \"off\"\n",
        crate::harness::CADDY_IMAGE,
        sb.http_port
    );
    let svc = |body: &str| format!("{gw}\n[[service]]\n{body}\n");
    let p = std::env::temp_dir().join(format!("{}-profile.toml", sb.instance));
    let at = |line: usize, col: usize| format!("{}:{line}:{col}: ", p.display());
    rejected(
        &sb,
        &svc("name = \"web\"\nimage = \"x:1\"\ncolour = \"red\""),
        &[&at(9, 1), "unknown field `colour`"],
    );
    rejected(
        &sb,
        &svc("name = \"Web\"\nimage = \"x:1\"\nport = 0"),
        &[
            &at(7, 8),
            "must be lower case",
            "port 0 is out of range",
            "2 problems found",
        ],
    );
    // What only the whole profile can tell: a cycle, a host and path taken twice, a mount of
    // a service that is not there.
    rejected(
        &sb,
        &svc("name = \"a\"\nimage = \"x:1\"\ndepends_on = [\"b\"]\n\n\
              [[service]]\nname = \"b\"\nimage = \"x:1\"\ndepends_on = [\"a\"]"),
        &[&at(9, 15), "depends_on goes round in a circle: a -> b -> a"],
    );
    rejected(
        &sb,
        &svc("name = \"one\"\nimage = \"x:1\"\nroutes = [{ host = \"a.test\", path = \"/api\" }]\n\n\
              [[service]]\nname = \"two\"\nimage = \"x:1\"\nroutes = [{ host = \"a.test\", path = \"/api\" }]"),
        &[
            &at(14, 11),
            "a.test/api is routed to service 'two' and to service 'one'",
        ],
    );
    rejected(
        &sb,
        &svc("name = \"files\"\nimage = \"x:1\"\nmounts = [\"web:static:/srv/static\"]"),
        &[
            &at(9, 11),
            "service 'files' mounts a directory of 'web', which is not defined",
        ],
    );
    rejected(
        &sb,
        &format!("{gw}\n[backup]\nschedule = \"every night\"\n"),
        &["backup.schedule \"every night\" is not a systemd OnCalendar= expression"],
    );
}

#[test]
fn unknown_shipped_profile_and_unreadable_file_are_rejected() {
    let sb = Sandbox::new();
    let out = sb.run(&["install", "--profile", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no shipped profile named \"nope\" (shipped: api-graphql, default, homelab, search-stack, web-finance, web-worker)"),
        "{}",
        stderr(&out)
    );
    let out = sb.run(&["install", "--profile", "/nonexistent/p.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot read profile /nonexistent/p.toml"),
        "{}",
        stderr(&out)
    );
    assert_eq!(tree(sb.root()), Vec::<String>::new());
}

#[test]
fn bad_instance_name_is_rejected() {
    let sb = Sandbox::new();
    let out = Command::new(crate::harness::bin())
        .args([
            "--root",
            sb.root().to_str().unwrap(),
            "--instance",
            "Bad_Name",
            "install",
            "--dry-run",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid --instance \"Bad_Name\": must be lower case"),
        "{}",
        stderr(&out)
    );
    // A sandbox root without an instance would share Docker objects with the real appliance.
    let out = Command::new(crate::harness::bin())
        .args(["--root", sb.root().to_str().unwrap(), "install"])
        .env_remove("PI_SETUP_INSTANCE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("needs --instance NAME too"),
        "{}",
        stderr(&out)
    );
    assert_eq!(tree(sb.root()), Vec::<String>::new());
}

#[test]
fn an_image_that_cannot_be_pulled_stops_the_run_before_any_change() {
    let sb = Sandbox::new();
    let missing = "pi-setup-test/does-not-exist:1";
    let profile = sb.profile(&format!(
        "[[service]]\nname = \"web\"\nimage = \"{missing}\"\n"
    ));
    let out = sb.run(&["install", "--profile", profile.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "failed: pull image {missing} (nothing had been changed before it)"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "image {missing} is not on this machine and could not be pulled"
        )),
        "{err}"
    );
    assert!(err.contains("docker load -i image.tar"), "{err}");
    assert_eq!(tree(sb.root()), Vec::<String>::new());
    assert_eq!(sb.docker_objects(), Vec::<String>::new());
}

#[test]
fn an_unreachable_docker_daemon_is_a_clear_error() {
    let sb = Sandbox::new();
    let profile = sb.profile("");
    let out = sb
        .cmd(&["install", "--profile", profile.to_str().unwrap()])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot reach the Docker daemon at unix:///nonexistent/docker.sock"),
        "{err}"
    );
    assert!(err.contains("is Docker installed and running?"), "{err}");
    // The lock file is the only thing written (so two runs cannot interleave).
    assert_eq!(tree(sb.root()), Vec::<String>::new());
}

#[test]
fn a_foreign_network_of_the_same_name_is_not_reused() {
    let sb = Sandbox::new();
    let net = format!("{}-intercontainer", sb.instance);
    assert!(docker(&["network", "create", &net]).status.success());
    let profile = sb.profile("");
    let out = sb.run(&["install", "--profile", profile.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "a Docker network named '{net}' already exists and was not created by pi-setup"
        )),
        "{err}"
    );
    assert_eq!(tree(sb.root()), Vec::<String>::new());
    assert_eq!(sb.docker_objects(), vec![net.clone()]);
}

#[test]
fn writing_outside_a_sandbox_root_needs_root() {
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            crate::harness::bin(),
            "install",
        ])
        .env_remove("PI_SETUP_ROOT")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("run it as root (sudo pi-setup ...), or try it under --root DIR"),
        "{err}"
    );
}
