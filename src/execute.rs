//! Carries out a plan, in order, through the engine and the host modules. Stops at the first
//! failure and says which step failed and what had been done before it.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::desired::{Desired, ObjectNames};
use crate::drain::Drains;
use crate::engine::{Engine, HealthStatus};
use crate::gateway;
use crate::host;
use crate::host::paths::Paths;
use crate::model::GATEWAY;
use crate::plan::{Action, Plan};
use crate::progress::Progress;

pub(crate) struct Applied {
    pub(crate) done: Vec<String>,
}

/// Carries out `plan`. A running, routed service is drained through the gateway before its
/// container is stopped or removed, and routed to again once its container has started
/// (`crate::drain`); whatever is still drained when the plan ends or fails is routed to again.
pub(crate) async fn apply(
    plan: &Plan,
    desired: &Desired,
    engine: &impl Engine,
    paths: &Paths,
    names: &ObjectNames,
    progress: &Progress,
    drains: &Drains,
) -> Result<Applied> {
    let applied = apply_steps(plan, desired, engine, paths, names, progress, drains).await;
    drains.release_all(engine).await;
    applied
}

async fn apply_steps(
    plan: &Plan,
    desired: &Desired,
    engine: &impl Engine,
    paths: &Paths,
    names: &ObjectNames,
    progress: &Progress,
    drains: &Drains,
) -> Result<Applied> {
    let mut done = Vec::new();
    let total = plan.actions.len();
    for (i, action) in plan.actions.iter().enumerate() {
        match action {
            // The gateway no longer routes to it (an earlier step reloaded it).
            Action::RemoveContainer {
                drain: Some(service),
                ..
            } => drains.wait_for_requests(service).await,
            Action::MoveVolumeData { container, .. }
            | Action::RemoveContainer {
                name: container, ..
            } => drains.before_stop(engine, container).await,
            _ => {}
        }
        let ran = run(action, desired, engine, paths, names, progress).await;
        match action {
            Action::CreateContainer { spec, .. } if ran.is_ok() => {
                drains.release(engine, &spec.name).await;
            }
            Action::StartContainer { name } if ran.is_ok() => {
                drains.release(engine, name).await;
            }
            _ => {}
        }
        ran.with_context(|| {
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
    engine: &impl Engine,
    paths: &Paths,
    names: &ObjectNames,
    progress: &Progress,
) -> Result<()> {
    match action {
        Action::PullImage { image } => {
            let mut bar = progress.pull(image);
            let result = engine.pull(image, &mut |p| bar.update(&p)).await;
            bar.finish(result.is_ok());
            result?;
        }
        Action::BuildImage {
            tag,
            context,
            dockerfile,
        } => {
            let (tar, _) = crate::backup::build_context(context)
                .with_context(|| format!("packing the build context {}", context.display()))?;
            progress.note(&format!("building {tag} from {}", context.display()));
            engine.build(tag, tar, dockerfile).await?;
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
            ..
        } => {
            host::ensure_dir(path, *uid, *gid, *mode)?;
        }
        Action::WriteFile {
            path,
            contents,
            mode,
            ..
        } => host::write_atomic(path, contents, *mode)?,
        Action::SetOwner {
            path,
            uid,
            gid,
            mode,
        } => {
            host::ensure_dir(path, *uid, *gid, *mode)?;
        }
        Action::RemoveFile { path } => {
            host::remove_file(path)?;
        }
        Action::MoveVolumeData {
            container,
            service,
            volume,
            target,
            to,
        } => {
            engine.stop(container, 30).await?;
            let moved =
                move_volume_data(engine, container, volume, target, to, paths, service).await;
            if moved.is_err() {
                // Not removed after all: leave the service running as it was.
                let _ = engine.start(container).await;
            }
            moved?;
        }
        Action::RemoveContainer { name, .. } => {
            engine.remove_container(name).await?;
        }
        Action::CreateContainer { spec, .. } => {
            for (dep, patience) in &spec.wait_for_healthy {
                wait_until_healthy(engine, dep, &spec.name, *patience).await?;
            }
            engine.create_container(spec).await?;
            engine.start(&spec.name).await?;
            if spec.service == GATEWAY {
                wait_for_gateway(&spec.name, paths, engine).await?;
                mark_gateway_loaded(desired)?;
            }
        }
        Action::RunJob { spec, .. } => {
            for (dep, patience) in &spec.wait_for_healthy {
                wait_until_healthy(engine, dep, &spec.name, *patience).await?;
            }
            engine.remove_container(&spec.name).await?;
            engine.create_container(spec).await?;
            engine.start(&spec.name).await?;
            run_to_completion(
                engine,
                &spec.name,
                spec.job_timeout.unwrap_or(Duration::MAX),
            )
            .await?;
        }
        Action::StartContainer { name } => {
            if let Some(spec) = desired.containers.iter().find(|c| &c.name == name) {
                for (dep, patience) in &spec.wait_for_healthy {
                    wait_until_healthy(engine, dep, name, *patience).await?;
                }
            }
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
async fn wait_for_gateway(name: &str, paths: &Paths, engine: &impl Engine) -> Result<()> {
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

/// A job's last lines, or a word that it printed none.
fn last_output(logs: &str) -> &str {
    match logs.trim_end() {
        "" => "(it printed nothing)",
        text => text,
    }
}

/// Waits for a job's container to finish; anything but exit code 0 (or too long) fails the
/// step with the job's last output, so what depends on it is not started.
async fn run_to_completion(engine: &impl Engine, name: &str, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    loop {
        let c = engine
            .container(name)
            .await?
            .with_context(|| format!("job {name} vanished while it ran"))?;
        if !c.running() && c.state != crate::engine::ContainerState::Created {
            if c.exit_code == Some(0) {
                return Ok(());
            }
            let logs = engine.logs_tail(name, 20).await.unwrap_or_default();
            anyhow::bail!(
                "job {name} failed (exit code {}); its last output:\n{}",
                c.exit_code.map_or("unknown".to_string(), |c| c.to_string()),
                last_output(&logs)
            );
        }
        if started.elapsed() >= timeout {
            let _ = engine.stop(name, 10).await;
            let logs = engine.logs_tail(name, 20).await.unwrap_or_default();
            anyhow::bail!(
                "job {name} did not finish within {}s (its timeout); it was stopped; its last output:\n{}",
                timeout.as_secs(),
                last_output(&logs)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until container `dep` reports healthy before `dependent` starts (`depends_on` with
/// `condition = "healthy"`). Fails at once when it is unhealthy, stopped or gone, and after
/// `patience` (from its own health settings) when it never says.
async fn wait_until_healthy(
    engine: &impl Engine,
    dep: &str,
    dependent: &str,
    patience: Duration,
) -> Result<()> {
    let deadline = Instant::now() + patience;
    loop {
        let why = match engine.container(dep).await? {
            None => "it does not exist".to_string(),
            Some(c) if c.health == Some(HealthStatus::Healthy) => return Ok(()),
            Some(c) if c.health == Some(HealthStatus::Unhealthy) => {
                "its health check fails".to_string()
            }
            Some(c) if !c.running() => format!("it is {}", c.state),
            Some(_) if Instant::now() >= deadline => {
                format!("it did not report healthy within {}s", patience.as_secs())
            }
            Some(_) => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        anyhow::bail!(
            "{dependent} waits for {dep} to be healthy, and {why}: {dependent} was not started (see `docker logs {dep}`)"
        );
    }
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

/// Reloads through the admin socket with the desired Caddyfile; a gateway that has just
/// started may not have created the socket yet, so connecting is retried for a few seconds.
async fn reload_gateway(
    desired: &Desired,
    paths: &Paths,
    engine: &impl Engine,
    names: &ObjectNames,
) -> Result<()> {
    let caddyfile = desired
        .gateway_files
        .first()
        .map(|f| String::from_utf8_lossy(&f.contents).into_owned())
        .unwrap_or_default();
    load_into_gateway(&caddyfile, paths, engine, names, Duration::from_secs(15)).await
}

/// Loads `caddyfile` into the running gateway, retrying the connection for `patience`. New
/// connections are first steered to the listeners the new config opens (`crate::reuseport`),
/// so the reload drops none; if the kernel refuses that, the reload goes ahead and says what
/// it could not do.
pub(crate) async fn load_into_gateway(
    caddyfile: &str,
    paths: &Paths,
    engine: &impl Engine,
    names: &ObjectNames,
    patience: Duration,
) -> Result<()> {
    if let Some(pid) = engine.pid(&names.object(GATEWAY)).await? {
        if let Err(e) = crate::reuseport::steer_to_newest(pid) {
            eprintln!(
                "note: could not steer new connections during the gateway reload ({e}); \
                 a request arriving at that instant may be dropped"
            );
        }
    }
    let socket = paths.vol(GATEWAY).join(gateway::ADMIN_SOCKET_ON_HOST);
    let deadline = Instant::now() + patience;
    loop {
        match gateway::reload(&socket, caddyfile) {
            Ok(()) => return Ok(()),
            Err(gateway::ReloadError::Connect { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Copies the tree a (stopped) container has at `target` — in a Docker volume — into `to`,
/// which is missing or empty. Extracted beside `to` first under restore's rules (nothing written
/// outside it or through a symlink), noted in the service's `MOVED_VOLUMES_FILE`, then renamed
/// into place: a run killed at any point either finds `to` empty and moves again, or finds it
/// full and noted, and does not move twice.
async fn move_volume_data(
    engine: &impl Engine,
    container: &str,
    volume: &str,
    target: &str,
    to: &std::path::Path,
    paths: &Paths,
    service: &str,
) -> Result<()> {
    use futures_util::StreamExt;
    let parent = to
        .parent()
        .context("a volume destination always has a parent")?;
    host::ensure_parent(to)?;
    let leaf = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = parent.join(format!(".{leaf}.pi-setup-move"));
    host::remove_tree(&temp)?;
    host::ensure_dir(&temp, 0, 0, 0o700)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    let (origin, into) = (
        std::path::PathBuf::from(format!("{container}:{target}")),
        temp.clone(),
    );
    let extract = tokio::task::spawn_blocking(move || {
        let opts = crate::backup::RestoreOptions {
            preserve_owner: host::is_root(),
        };
        crate::backup::extract_tar(ChannelReader::new(rx), &origin, &into, &opts)
    });
    let mut stream = std::pin::pin!(engine.copy_out(container, target));
    let mut copied = Ok(());
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => {
                if tx.send(c).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                copied = Err(e);
                break;
            }
        }
    }
    drop(tx);
    let extracted = extract.await.context("the extraction task panicked")?;
    let result = (|| -> Result<()> {
        // A stream cut short can still end on an entry boundary: only a complete copy counts.
        copied?;
        for why in extracted?.skipped {
            // Device nodes pi-setup may not make (not root): the move goes on without them.
            eprintln!("note: moving {container}:{target}: not moved: {why}");
        }
        // Docker names the tree after the last component of the path.
        let base = target.rsplit('/').find(|p| !p.is_empty()).unwrap_or("");
        let tree = temp.join(base);
        let moved_file = paths.vol(service).join(crate::desired::MOVED_VOLUMES_FILE);
        let mut noted = host::read(&moved_file)?.unwrap_or_default();
        noted.extend_from_slice(format!("{volume} {target}\n").as_bytes());
        host::write_atomic(&moved_file, &noted, 0o600)?;
        host::replace_empty_dir(&tree, to)?;
        Ok(())
    })();
    host::remove_tree(&temp)?;
    result.with_context(|| format!("moving {container}:{target} into {}", to.display()))
}

/// Reads the chunks a channel delivers as one byte stream (for the blocking tar reader).
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl ChannelReader {
    fn new(rx: tokio::sync::mpsc::Receiver<Vec<u8>>) -> Self {
        ChannelReader {
            rx,
            chunk: Vec::new(),
            at: 0,
        }
    }
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.blocking_recv() {
                Some(c) => {
                    self.chunk = c;
                    self.at = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
