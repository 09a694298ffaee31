//! `pi-setup list` and `pi-setup status`: what runs, how it is, and what is wrong, in words.
//! Both read only; `--json` gives the same facts to scripts.

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::cli::{ListArgs, StatusArgs};
use crate::commands::Context;
use crate::config::{BadInput, Inputs};
use crate::engine::{ContainerInfo, Engine};
use crate::gateway;
use crate::host;
use crate::model::{Model, GATEWAY};
use crate::report::human_bytes;

#[derive(Debug, Serialize)]
pub struct ServiceRow {
    pub name: String,
    pub image: String,
    pub state: String,
    pub health: Option<String>,
    pub domains: Vec<String>,
    pub access: String,
    pub volume_bytes: u64,
    pub last_backup: Option<String>,
}

#[derive(Debug, Serialize)]
struct StatusReport {
    services: Vec<ServiceRow>,
    problems: Vec<String>,
}

pub async fn list(ctx: &Context, args: &ListArgs) -> Result<()> {
    let model = Inputs::read(None, &ctx.paths)?.model()?;
    let engine = Engine::connect().await?;
    let containers = engine
        .managed_containers(&ctx.names.instance_label())
        .await?;
    let rows = rows(ctx, &model, &containers, None);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", table(&rows));
    }
    Ok(())
}

pub async fn status(ctx: &Context, args: &StatusArgs) -> Result<()> {
    let model = Inputs::read(None, &ctx.paths)?.model()?;
    if let Some(n) = &args.name {
        if n != GATEWAY && model.service(n).is_none() {
            return Err(BadInput(format!(
                "there is no service named '{n}' (see `pi-setup list`)"
            ))
            .into());
        }
    }
    let mut problems = Vec::new();
    let (containers, network_ok) = match Engine::connect().await {
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
    let rows = rows(ctx, &model, &containers, args.name.as_deref());
    if network_ok || !containers.is_empty() {
        for r in &rows {
            match (r.state.as_str(), r.health.as_deref()) {
                ("missing", _) => problems.push(format!("{}: no container; run `pi-setup apply`", r.name)),
                ("running", Some("unhealthy")) => problems.push(format!(
                    "{}: running but its health check fails; `pi-setup heal` restarts it",
                    r.name
                )),
                ("running", _) => {}
                ("restarting", _) => problems.push(format!("{}: keeps restarting; see `docker logs {}`", r.name, ctx.names.object(&r.name))),
                (other, _) => problems.push(format!(
                    "{}: {other}, not running; its domains show the maintenance page. Start it with `pi-setup apply`",
                    r.name
                )),
            }
        }
        let gateway_running = rows
            .iter()
            .any(|r| r.name == GATEWAY && r.state == "running");
        if gateway_running {
            let socket = ctx.paths.vol(GATEWAY).join(gateway::ADMIN_SOCKET_ON_HOST);
            if let Err(e) = gateway::ping(&socket) {
                problems.push(format!(
                    "gateway: running, but its admin API does not answer ({e}); reloads will fail"
                ));
            }
        }
    }
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
            println!("\nAll good: the network, the gateway and every service are up.");
        } else {
            println!("\nProblems:");
            for p in &problems {
                println!("  - {p}");
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(anyhow::anyhow!("{} problem(s) found", problems.len()))
    }
}

fn rows(
    ctx: &Context,
    model: &Model,
    containers: &[ContainerInfo],
    only: Option<&str>,
) -> Vec<ServiceRow> {
    let backups = ctx.paths.host(&model.backup.dest);
    let row = |name: &str, image: &str, domains: Vec<String>, access: &str| {
        let c = containers.iter().find(|c| c.name == ctx.names.object(name));
        ServiceRow {
            name: name.to_string(),
            image: image.to_string(),
            state: c.map_or("missing".to_string(), |c| c.state.clone()),
            health: c.and_then(|c| c.health.clone()),
            domains,
            access: access.to_string(),
            volume_bytes: host::tree_size(&ctx.paths.vol(name)),
            last_backup: last_backup(&backups, name),
        }
    };
    let mut out = vec![row(GATEWAY, &model.gateway.image, Vec::new(), "-")];
    for s in &model.services {
        let domains = s.domains.iter().map(ToString::to_string).collect();
        out.push(row(s.name.as_str(), &s.image, domains, s.access.label()));
    }
    if let Some(n) = only {
        out.retain(|r| r.name == n || r.name == GATEWAY);
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
            r.state,
            r.health.as_deref().unwrap_or("-"),
            r.access,
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
