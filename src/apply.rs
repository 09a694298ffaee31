//! Carries out a plan, in order, through the engine and the host modules. Stops at the first
//! failure and says which step failed and what had been done before it.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::desired::{Desired, Names};
use crate::engine::Engine;
use crate::gateway;
use crate::host;
use crate::model::GATEWAY;
use crate::paths::Paths;
use crate::plan::{Action, Plan};
use crate::progress::Progress;

pub struct Applied {
    pub done: Vec<String>,
}

pub async fn apply(
    plan: &Plan,
    desired: &Desired,
    engine: &Engine,
    paths: &Paths,
    names: &Names,
    progress: &Progress,
) -> Result<Applied> {
    let mut done = Vec::new();
    let total = plan.actions.len();
    for (i, action) in plan.actions.iter().enumerate() {
        run(action, desired, engine, paths, names, progress)
            .await
            .with_context(|| {
                let before = if done.is_empty() {
                    "nothing had been changed before it".to_string()
                } else {
                    format!(
                        "{} earlier step(s) were done; run the command again to finish",
                        done.len()
                    )
                };
                format!("step {} of {total} failed: {action} ({before})", i + 1)
            })?;
        progress.note(&format!("  [{}/{total}] {action}", i + 1));
        done.push(action.to_string());
    }
    Ok(Applied { done })
}

async fn run(
    action: &Action,
    desired: &Desired,
    engine: &Engine,
    paths: &Paths,
    names: &Names,
    progress: &Progress,
) -> Result<()> {
    match action {
        Action::PullImage { image } => {
            let mut bar = progress.pull(image);
            let result = engine.pull(image, |p| bar.update(&p)).await;
            bar.finish(result.is_ok());
            result.with_context(|| offline_hint(image))?;
        }
        Action::CreateNetwork { name } => {
            engine
                .create_network(name, names.network_labels().into_iter().collect())
                .await?;
        }
        Action::CreateDir {
            path,
            uid,
            gid,
            mode,
        } => {
            host::ensure_dir(path, *uid, *gid, *mode)?;
        }
        Action::WriteFile {
            path,
            contents,
            mode,
            ..
        } => host::write_atomic(path, contents, *mode)?,
        Action::RemoveFile { path } => {
            host::remove_file(path)?;
        }
        Action::RemoveContainer { name, .. } => {
            engine.remove_container(name).await?;
        }
        Action::CreateContainer { spec, .. } => {
            engine.create_container(spec).await?;
            engine.start(&spec.name).await?;
            if spec.service == GATEWAY {
                wait_for_gateway(&spec.name, paths, engine).await?;
                mark_gateway_loaded(desired)?;
            }
        }
        Action::StartContainer { name } => {
            engine.start(name).await?;
            if *name == names.object(GATEWAY) {
                wait_for_gateway(name, paths, engine).await?;
                mark_gateway_loaded(desired)?;
            }
        }
        Action::ReloadGateway => {
            reload_gateway(desired, paths, engine, names).await?;
            mark_gateway_loaded(desired)?;
        }
        Action::EnableTimers { timers } => host::enable_timers(timers)?,
    }
    Ok(())
}

/// Waits until a gateway that was just (re)started has loaded its config (its admin socket
/// answers). One that cannot load it exits, and Docker restarts it over and over: that fails
/// the step, with the gateway's last log lines, instead of reporting it running.
async fn wait_for_gateway(name: &str, paths: &Paths, engine: &Engine) -> Result<()> {
    let socket = paths.vol(GATEWAY).join(gateway::ADMIN_SOCKET_ON_HOST);
    let restarts = engine.run_state(name).await?.map_or(0, |(_, n)| n);
    let socket = &socket;
    let waited = gateway::wait_until_loaded(gateway::STARTUP_PATIENCE, move || async move {
        if gateway::ping(socket).is_ok() {
            return gateway::Startup::Loaded;
        }
        match engine.run_state(name).await {
            Ok(Some((true, n))) if n == restarts => gateway::Startup::Starting,
            Ok(Some((true, _))) => gateway::Startup::Failed("it exited and was restarted".into()),
            Ok(Some((false, _))) => gateway::Startup::Failed("it exited".into()),
            Ok(None) => gateway::Startup::Failed("its container is gone".into()),
            Err(e) => gateway::Startup::Failed(e.to_string()),
        }
    })
    .await;
    if let Err(why) = waited {
        let logs = match engine.logs_tail(name, 20).await {
            Ok(l) if !l.trim().is_empty() => format!("its last log lines:\n{}", l.trim_end()),
            Ok(_) => "it logged nothing".to_string(),
            Err(e) => format!("its logs could not be read: {e}"),
        };
        anyhow::bail!("the gateway did not load its configuration: {why}; {logs}");
    }
    Ok(())
}

/// A gateway that (re)starts reads the files it is given; one that reloads has loaded them.
fn mark_gateway_loaded(desired: &Desired) -> Result<()> {
    host::write_atomic(
        &desired.gateway_loaded_marker,
        desired.gateway_files_hash().as_bytes(),
        0o600,
    )?;
    Ok(())
}

/// Reloads through the admin socket; a gateway that has just started may not have created it
/// yet, so connecting is retried for a few seconds. New connections are first steered to
/// the listeners the new config opens (`crate::reuseport`), so the reload drops none; if the
/// kernel refuses that, the reload goes ahead and says what it could not do.
async fn reload_gateway(
    desired: &Desired,
    paths: &Paths,
    engine: &Engine,
    names: &Names,
) -> Result<()> {
    if let Some(pid) = engine.pid(&names.object(GATEWAY)).await? {
        if let Err(e) = crate::reuseport::steer_to_newest(pid) {
            eprintln!(
                "note: could not steer new connections during the gateway reload ({e}); \
                 a request arriving at that instant may be dropped"
            );
        }
    }
    let caddyfile = desired
        .gateway_files
        .first()
        .map(|f| String::from_utf8_lossy(&f.contents).into_owned())
        .unwrap_or_default();
    let socket = paths.vol(GATEWAY).join(gateway::ADMIN_SOCKET_ON_HOST);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match gateway::reload(&socket, &caddyfile) {
            Ok(()) => return Ok(()),
            Err(gateway::ReloadError::Connect { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn offline_hint(image: &str) -> String {
    format!(
        "image {image} is not on this machine and could not be pulled (is a registry reachable?)\n  \
         to install it offline: on a machine with access run `docker pull {image} && docker save {image} -o image.tar`,\n  \
         copy image.tar here, run `docker load -i image.tar`, then run this command again"
    )
}
