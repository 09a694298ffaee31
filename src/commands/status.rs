//! `pi-setup list` and `pi-setup status`: what runs, how it is, and what is wrong, in words.
//! Both read only; `--json` gives the same facts to scripts.

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::cli::{ListArgs, StatusArgs};
use crate::commands::Context;
use crate::engine::{ContainerInfo, ContainerState, Engine, HealthStatus};
use crate::error::BadInput;
use crate::gateway;
use crate::host;
use crate::input::Inputs;
use crate::model::{Model, GATEWAY};
use crate::report::human_bytes;

#[derive(Debug, Serialize)]
pub(crate) struct ServiceRow {
    pub(crate) name: String,
    pub(crate) image: String,
    /// None: no container ("missing" in JSON).
    #[serde(serialize_with = "state_or_missing")]
    pub(crate) state: Option<ContainerState>,
    pub(crate) health: Option<HealthStatus>,
    pub(crate) domains: Vec<String>,
    /// `public`, `lan` or `auth`; none for the gateway (it is the way in, not behind it).
    pub(crate) access: Option<String>,
    pub(crate) volume_bytes: u64,
    pub(crate) last_backup: Option<String>,
    /// A job whose last run completed (exit code 0): stopped on purpose.
    pub(crate) job_done: bool,
}

#[allow(clippy::ref_option, clippy::trivially_copy_pass_by_ref)] // serde's `serialize_with` signature
fn state_or_missing<S: serde::Serializer>(
    state: &Option<ContainerState>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(state.map_or("missing", ContainerState::as_str))
}

#[derive(Debug, Serialize)]
struct StatusReport {
    services: Vec<ServiceRow>,
    problems: Vec<String>,
}

pub(crate) async fn list(ctx: &Context, args: &ListArgs) -> Result<()> {
    let (model, broken) = readable_model(ctx)?;
    // The list is a report, not a check: broken files are named on stderr and the exit code
    // stays 0, so scripts reading the rows keep working. `status` is the check.
    for b in &broken {
        eprintln!("warning: left out of the list: {}", b.error);
    }
    let engine = crate::engine::connect().await?;
    let containers = engine
        .managed_containers(&ctx.names.instance_label())
        .await?;
    let rows = rows(ctx, &model, &containers);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", table(&rows));
    }
    Ok(())
}

pub(crate) async fn status(ctx: &Context, args: &StatusArgs) -> Result<()> {
    let (model, broken) = readable_model(ctx)?;
    let only = args.name.as_deref();
    if let Some(n) = only {
        let is_broken = broken.iter().any(|b| b.service == n);
        if n != GATEWAY && model.service(n).is_none() && !is_broken {
            return Err(BadInput(format!(
                "there is no service named '{n}' (see `pi-setup list`)"
            ))
            .into());
        }
    }
    let mut problems: Vec<String> = broken
        .iter()
        .filter(|b| only.is_none_or(|n| n == b.service))
        .map(|b| b.error.clone())
        .collect();
    let (containers, network_ok) = match crate::engine::connect().await {
        Ok(engine) => {
            let network = engine.network(&ctx.names.network()).await?;
            match &network {
                None => problems.push(format!(
                    "the network {} does not exist: run `pi-setup apply`",
                    ctx.names.network()
                )),
                Some(n) if !n.managed => problems.push(format!(
                    "the network {} was not created by pi-setup",
                    ctx.names.network()
                )),
                Some(_) => {}
            }
            (
                engine
                    .managed_containers(&ctx.names.instance_label())
                    .await?,
                network.is_some(),
            )
        }
        Err(e) => {
            problems.push(e.to_string());
            (Vec::new(), false)
        }
    };
    let mut rows = rows(ctx, &model, &containers);
    // `status NAME` checks NAME and what it needs (the gateway, the network), and lists NAME.
    rows.retain(|r| only.is_none_or(|n| n == r.name || r.name == GATEWAY));
    if network_ok || !containers.is_empty() {
        // A job that ran to completion is stopped on purpose.
        for r in rows.iter().filter(|r| !r.job_done) {
            match (r.state, r.health) {
                (None, _) => problems.push(format!("{}: no container; run `pi-setup apply`", r.name)),
                (Some(ContainerState::Running), Some(HealthStatus::Unhealthy)) => problems.push(format!(
                    "{}: running but its health check fails; `pi-setup heal` restarts it",
                    r.name
                )),
                (Some(ContainerState::Running), _) => {}
                (Some(ContainerState::Restarting), _) => problems.push(format!("{}: keeps restarting; see `docker logs {}`", r.name, ctx.names.object(&r.name))),
                (Some(other), _) => problems.push(format!(
                    "{}: {other}, not running; its domains show the maintenance page. Start it with `pi-setup apply`",
                    r.name
                )),
            }
        }
        let gateway_running = rows
            .iter()
            .any(|r| r.name == GATEWAY && r.state == Some(ContainerState::Running));
        if gateway_running {
            let socket = ctx.paths.vol(GATEWAY).join(gateway::ADMIN_SOCKET_ON_HOST);
            if let Err(e) = gateway::ping(&socket) {
                problems.push(format!(
                    "gateway: running, but its admin API does not answer ({e}); reloads will fail"
                ));
            }
        }
    }
    if only.is_none() {
        for t in &model.backup.copies {
            if let Ok(Some(why)) = host::read(&ctx.paths.copy_failed(t.name.as_str())) {
                problems.push(format!(
                    "backup copy '{}': the last backup could not copy there ({}); it is retried on the next run",
                    t.name,
                    String::from_utf8_lossy(&why).lines().next().unwrap_or("").trim()
                ));
            }
        }
    }
    rows.retain(|r| only.is_none_or(|n| n == r.name));
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&StatusReport {
                services: rows,
                problems: problems.clone()
            })?
        );
    } else {
        print!("{}", table(&rows));
        if problems.is_empty() {
            match only {
                None => println!("\nAll good: the network, the gateway and every service are up."),
                Some(n) => println!("\nAll good: {n}, the network and the gateway are up."),
            }
        } else {
            println!("\nProblems:");
            for p in &problems {
                // A config error spans lines (the offending line is quoted): keep them indented.
                println!("  - {}", p.replace('\n', "\n    "));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(anyhow::anyhow!("{} problem(s) found", problems.len()))
    }
}

/// A service file that does not validate, left out so the rest can still be shown.
struct Broken {
    /// The service its file is named after.
    service: String,
    /// The validation error (file:line:col and the line).
    error: String,
}

/// The model of everything that validates. Read-only commands must still show the state of
/// everything else when one service file is broken (a hand edit gone wrong): service files are
/// added one by one and each that fails (on its own, or with those before it: a duplicate
/// domain) is left out and reported. A broken profile still fails: nothing can be shown then.
fn readable_model(ctx: &Context) -> Result<(Model, Vec<Broken>)> {
    let inputs = Inputs::read(None, &ctx.paths)?;
    let all_errors = match inputs.model() {
        Ok(model) => return Ok((model, Vec::new())),
        Err(e) => e,
    };
    let mut kept = Inputs {
        services: Vec::new(),
        ..inputs.clone()
    };
    let Ok(mut model) = kept.model() else {
        return Err(all_errors.into());
    };
    let mut broken = Vec::new();
    for src in &inputs.services {
        kept.services.push(src.clone());
        match kept.model() {
            Ok(m) => model = m,
            Err(e) => {
                kept.services.pop();
                broken.push(Broken {
                    service: Path::new(&src.origin)
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    error: e.to_string(),
                });
            }
        }
    }
    if broken.is_empty() {
        // Nothing to blame on one file (the secrets of a service, say): report as it is.
        return Err(all_errors.into());
    }
    Ok((model, broken))
}

fn rows(ctx: &Context, model: &Model, containers: &[ContainerInfo]) -> Vec<ServiceRow> {
    let backups = ctx.paths.host(&model.backup.dest);
    let row = |name: &str, image: &str, domains: Vec<String>, access: Option<&str>| {
        let c = containers.iter().find(|c| c.name == ctx.names.object(name));
        ServiceRow {
            name: name.to_string(),
            image: image.to_string(),
            state: c.map(|c| c.state),
            health: c.and_then(|c| c.health),
            domains,
            access: access.map(str::to_string),
            volume_bytes: host::tree_size(&ctx.paths.vol(name)),
            last_backup: last_backup(&backups, name),
            job_done: model.service(name).is_some_and(|s| s.job.is_some())
                && c.is_some_and(|c| !c.running() && c.exit_code == Some(0)),
        }
    };
    let mut out = vec![row(GATEWAY, &model.gateway.image, Vec::new(), None)];
    for s in &model.services {
        let domains: Vec<String> = s.hosts().iter().map(ToString::to_string).collect();
        // Access is about requests through the gateway: a job or a service with no host has
        // none to speak of ("-"), not "public".
        let access = (!domains.is_empty()).then(|| s.access.label());
        out.push(row(s.name.as_str(), &s.image, domains, access));
    }
    out
}

/// The UTC timestamp of the newest good archive of `name`, if any.
fn last_backup(dest: &Path, name: &str) -> Option<String> {
    let archives = crate::backup::list_archives(dest, name).ok()?;
    archives
        .iter()
        .rev()
        .find(|a| a.good)
        .map(|a| a.timestamp.to_string())
}

fn table(rows: &[ServiceRow]) -> String {
    let mut s = format!(
        "{:<16} {:<10} {:<10} {:<7} {:>9}  {:<16} {:<30} {}\n",
        "NAME", "STATE", "HEALTH", "ACCESS", "VOLUME", "LAST BACKUP", "IMAGE", "DOMAINS"
    );
    for r in rows {
        s.push_str(&format!(
            "{:<16} {:<10} {:<10} {:<7} {:>9}  {:<16} {:<30} {}\n",
            r.name,
            r.state.map_or("missing", ContainerState::as_str),
            r.health.map_or("-", HealthStatus::as_str),
            r.access.as_deref().unwrap_or("-"),
            human_bytes(r.volume_bytes),
            r.last_backup.as_deref().unwrap_or("never"),
            r.image,
            if r.domains.is_empty() {
                "-".to_string()
            } else {
                r.domains.join(" ")
            }
        ));
    }
    s
}
