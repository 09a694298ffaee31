//! The host side of `install`, before the appliance itself: Docker (installed with
//! `--install-docker` when missing), the preflight checks, the Pi's cmdline (`--fix-cmdline`),
//! the overlays, and a Docker restart when their daemon settings changed (`--restart-docker`).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use crate::cli::InstallArgs;
use crate::commands::Context;
use crate::engine::{Docker, Engine};
use crate::error::BadInput;
use crate::input::Inputs;
use crate::model::Model;
use crate::overlay;
use crate::preflight::{self, Facts, Level};

/// The images a model runs (gateway first; built images are made here, not pulled or saved).
pub(crate) fn image_refs(model: &Model) -> Vec<String> {
    let mut out = vec![model.gateway.image.clone()];
    for s in &model.services {
        if s.build.is_none() && !out.contains(&s.image) {
            out.push(s.image.clone());
        }
    }
    out
}

/// Whether the root holds a Docker daemon binary (under `--root`: the sandbox's, so tests can
/// show the "missing" path).
fn docker_installed(ctx: &Context) -> bool {
    [
        "/usr/bin/dockerd",
        "/usr/sbin/dockerd",
        "/usr/local/bin/dockerd",
    ]
    .iter()
    .any(|p| ctx.paths.host(p).exists())
}

/// Waits up to `patience` for the daemon to answer.
pub(crate) async fn wait_for_docker(patience: Duration) -> Result<Docker> {
    let deadline = Instant::now() + patience;
    loop {
        match crate::engine::connect().await {
            Ok(d) => return Ok(d),
            Err(e) if Instant::now() >= deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Connects to Docker, installing it first when asked and it is missing. The error says what
/// to do.
async fn docker(ctx: &Context, args: &InstallArgs) -> Result<Docker, String> {
    let first = match crate::engine::connect().await {
        Ok(d) => return Ok(d),
        Err(e) => e.to_string(),
    };
    if docker_installed(ctx) {
        return Err(first);
    }
    if !args.install_docker {
        return Err(format!(
            "{first}\n  Docker is not installed on this host: run `sudo apt-get install docker.io`, or install with --install-docker and pi-setup runs it"
        ));
    }
    if !ctx.paths.is_system() {
        return Err(format!(
            "{first}\n  --install-docker installs Debian's docker.io on the real host, so it does not work under --root"
        ));
    }
    if args.dry_run {
        return Err(format!(
            "{first}\n  Docker is not installed; without --dry-run, --install-docker installs it (apt-get install docker.io)"
        ));
    }
    println!("Docker is missing: installing Debian's docker.io (apt-get install docker.io)...");
    let env = [("DEBIAN_FRONTEND", "noninteractive")];
    crate::host::run_program("apt-get", &["update", "-q"], &env)
        .and_then(|()| {
            crate::host::run_program(
                "apt-get",
                &[
                    "install",
                    "-y",
                    "-q",
                    "--no-install-recommends",
                    "docker.io",
                ],
                &env,
            )
        })
        .map_err(|e| format!("{first}\n  installing docker.io failed: {e}"))?;
    if crate::host::systemd_running() {
        let _ = crate::host::run_program("systemctl", &["enable", "--now", "docker"], &[]);
    }
    wait_for_docker(Duration::from_mins(1))
        .await
        .map_err(|e| format!("docker.io was installed, but the daemon does not answer: {e:#}"))
}

/// Runs the preflight checks, printing one line each; any failure stops here with nothing
/// changed. On success, fixes the cmdline when `--fix-cmdline` asked, and returns the daemon.
pub(crate) async fn preflight(
    ctx: &Context,
    args: &InstallArgs,
    model: &Model,
) -> Result<Option<Docker>> {
    let docker = docker(ctx, args).await;
    let refs = image_refs(model);
    let mut images = Vec::new();
    for r in &refs {
        let platform = match &docker {
            Ok(d) => d.image_platform(r).await?,
            Err(_) => None,
        };
        images.push((r.clone(), platform));
    }
    let cmdline_file = preflight::cmdline_file(&ctx.paths);
    let cmdline = match &cmdline_file {
        Some((shown, p)) => Some((
            shown.clone(),
            String::from_utf8_lossy(&crate::host::read(p)?.unwrap_or_default()).into_owned(),
        )),
        None => None,
    };
    let dest = model.backup.dest.clone();
    let facts = Facts {
        root_user: ctx.paths.is_system().then(crate::host::is_root),
        dry_run: args.dry_run,
        docker: docker.as_ref().map(Docker::describe).map_err(Clone::clone),
        host_arch: preflight::host_arch(),
        images,
        vol: ("/var/vol".into(), preflight::space(&ctx.paths.vol_root())),
        backup: (dest.clone(), preflight::space(&ctx.paths.host(&dest))),
        root_fs: preflight::space(&ctx.paths.root),
        cmdline,
        memory_controller: if ctx.paths.is_system() {
            preflight::kernel_memory_controller()
        } else {
            None
        },
        fix_cmdline: args.fix_cmdline,
        year: preflight::current_year(),
        build_year: preflight::BUILD_YEAR,
    };
    let checks = preflight::checks(&facts);
    // On stderr, with the other diagnostics: stdout stays the plan and the summary.
    for c in &checks {
        eprintln!("{c}");
    }
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| c.level == Level::Fail)
        .map(|c| format!("{}: {}", c.what, c.text))
        .collect();
    if !failed.is_empty() {
        return Err(anyhow!(
            "preflight failed ({} check(s)); nothing was changed:\n  {}",
            failed.len(),
            failed.join("\n  ")
        ));
    }
    if let (Some((shown, path)), Some((_, text))) = (&cmdline_file, &facts.cmdline) {
        if args.fix_cmdline {
            if let Some(fixed) = preflight::fix_cmdline(text) {
                if args.dry_run {
                    println!(
                        "would add {} to {shown}",
                        preflight::CGROUP_TOKENS.join(" ")
                    );
                } else {
                    // Written as an overlay file is: the file as it was is kept beside it
                    // (`cmdline.txt.pi-setup-orig`) and recorded, so `uninstall` puts it back.
                    let st = crate::host::stat(path)?;
                    let change = crate::overlay::FileChange {
                        overlay: "--fix-cmdline".to_string(),
                        shown: shown.clone(),
                        path: path.clone(),
                        old: crate::host::read(path)?,
                        new: fixed.into_bytes(),
                        mode: st.as_ref().map_or(0o755, |s| s.mode),
                        uid: st.as_ref().map_or(0, |s| s.uid),
                        gid: st.as_ref().map_or(0, |s| s.gid),
                        keep_original: true,
                        restarts_docker: false,
                        content_changed: true,
                    };
                    crate::overlay::apply(&[change], &ctx.paths)?;
                    println!(
                        "{shown}: added {} (still one line). Reboot for the memory cgroup to take effect.",
                        preflight::CGROUP_TOKENS.join(" ")
                    );
                }
            }
        }
    }
    Ok(docker.ok())
}

/// The directory a profile file is in (user overlays sit beside it); none for shipped ones.
fn profile_dir(inputs: &Inputs) -> Option<&Path> {
    let origin = &inputs.profile.origin;
    if origin.starts_with('<') {
        return None;
    }
    Path::new(origin).parent()
}

/// What the profile's overlays would change on this host; read before anything changes, so
/// a host file that cannot be merged (a broken daemon.json) stops the run with nothing changed.
pub(crate) fn plan_overlays(
    ctx: &Context,
    inputs: &Inputs,
    model: &Model,
) -> Result<Vec<overlay::FileChange>> {
    let loaded = overlay::load(&model.overlays, profile_dir(inputs))?;
    Ok(overlay::plan(&loaded, &ctx.paths)?)
}

/// Lays the planned overlay files onto the host (or, for a dry run, shows the diff of each).
/// Returns whether the Docker daemon's settings changed.
pub(crate) fn lay_overlays(
    ctx: &Context,
    args: &InstallArgs,
    changes: &[overlay::FileChange],
) -> Result<bool> {
    let mut docker_changed = false;
    let mut report = String::new();
    for c in changes {
        let verb = if args.dry_run { "would write" } else { "wrote" };
        let mut how = format!("mode {:04o}, owner {}:{}", c.mode, c.uid, c.gid);
        if c.keep_original {
            let orig = overlay::orig_path(Path::new(&c.shown));
            how.push_str(&format!(
                "; merged into the host's file, its original kept as {}",
                orig.display()
            ));
        } else if !c.content_changed {
            how.push_str("; contents already right");
        }
        report.push_str(&format!(
            "overlay {}: {verb} {} ({how})\n",
            c.overlay, c.shown
        ));
        // A file written for root only may hold a key: its contents never go on the screen.
        // (One written world-readable shows nothing its readers will not see anyway.)
        if c.content_changed && c.mode & 0o004 == 0 {
            report.push_str("  (its contents change; not shown: it is not world-readable)\n");
        } else if c.content_changed {
            report.push_str(&c.diff());
        }
        docker_changed |= c.restarts_docker;
    }
    // Said once it is true: a failed write must not have been announced as written.
    if !args.dry_run {
        overlay::apply(changes, &ctx.paths)?;
    }
    print!("{report}");
    Ok(docker_changed)
}

/// After the daemon's settings changed: restarts Docker with `--restart-docker` (waits for it,
/// then lists every container's state; `reconcile` then starts what should run), else says
/// how. Never silently.
pub(crate) async fn docker_settings_changed(ctx: &Context, args: &InstallArgs) -> Result<bool> {
    if args.dry_run {
        println!("Docker's daemon settings would change: they take effect when Docker restarts (--restart-docker)");
        return Ok(false);
    }
    if !args.restart_docker {
        println!("Docker's daemon settings changed (/etc/docker/daemon.json): they take effect when Docker restarts. Run `sudo pi-setup install --restart-docker` (or `sudo systemctl restart docker`) when a short interruption is fine.");
        return Ok(false);
    }
    if !ctx.paths.is_system() {
        println!("Docker's daemon settings changed under --root {}: not restarting the real Docker daemon for a sandbox", ctx.paths.root.display());
        return Ok(false);
    }
    println!("Restarting Docker for its new settings...");
    crate::host::run_program("systemctl", &["restart", "docker"], &[])?;
    let docker = wait_for_docker(Duration::from_mins(1))
        .await
        .map_err(|e| BadInput(format!("Docker did not come back after its restart: {e:#}")))?;
    let states = docker
        .managed_containers(&ctx.names.instance_label())
        .await?;
    let running = states.iter().filter(|c| c.running()).count();
    println!(
        "Docker is back: {running} of {} pi-setup container(s) running; checking them against the profile",
        states.len()
    );
    Ok(true)
}
