//! Command handlers, one per sub-command, and what they share.

pub mod add_service;
pub mod apply;
pub mod backup;
pub mod heal;
pub mod install;
pub mod remove_service;
pub mod status;

use std::path::PathBuf;

use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::CommandFactory;

use crate::apply as applying;
use crate::cli::Cli;
use crate::config::{BadInput, Inputs};
use crate::desired::{self, Names};
use crate::engine::Engine;
use crate::lock;
use crate::model::Name;
use crate::observe;
use crate::paths::Paths;
use crate::plan::{self, ConfigChange};
use crate::progress::Progress;
use crate::report;

/// What every command needs: where host paths are, and how Docker objects are named.
pub struct Context {
    pub paths: Paths,
    pub names: Names,
    /// How systemd units call this pi-setup: its path plus --root/--instance when given.
    pub exec: String,
}

impl Context {
    pub fn new(cli: &Cli) -> Result<Context> {
        let root: PathBuf = if cli.root.is_absolute() {
            cli.root.clone()
        } else {
            std::env::current_dir()?.join(&cli.root)
        };
        let instance = match &cli.instance {
            None => None,
            Some(i) => Some(
                Name::parse(i)
                    .map_err(|why| BadInput(format!("invalid --instance {i:?}: {why}")))?
                    .to_string(),
            ),
        };
        let paths = Paths::new(root);
        // Docker objects are not under --root: without an instance of its own, a sandbox
        // would plan against (and remove) the real appliance's containers.
        if !paths.is_system() && instance.is_none() {
            return Err(BadInput(format!(
                "--root {} needs --instance NAME too, so its containers and network stay apart from the real appliance's",
                paths.root.display()
            ))
            .into());
        }
        let mut exec = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "/usr/local/bin/pi-setup".into());
        // The units must call pi-setup the way it was called.
        if !paths.is_system() {
            exec.push_str(&format!(" --root {}", paths.root.display()));
        }
        if let Some(i) = &instance {
            exec.push_str(&format!(" --instance {i}"));
        }
        Ok(Context {
            paths,
            names: Names { instance },
            exec,
        })
    }

    /// Writing to the real system paths needs root; under `--root` it may not.
    pub fn require_root(&self) -> Result<()> {
        if self.paths.is_system() && !crate::host::is_root() {
            return Err(BadInput(
                "this command changes /etc and /var: run it as root (sudo pi-setup ...), or try it under --root DIR".into(),
            )
            .into());
        }
        Ok(())
    }

    /// For a command that changes state (not a dry run): checks for root and takes the lock.
    /// Taken before the configuration is read, so two commands cannot plan from the same stale
    /// view and undo each other; held until the command returns.
    pub fn lock(&self, command: &str, dry_run: bool, wait: Duration) -> Result<Option<lock::Lock>> {
        if dry_run {
            return Ok(None);
        }
        self.require_root()?;
        Ok(Some(lock::acquire(&self.paths.lock_file(), command, wait)?))
    }
}

/// How long a command waits for another one to finish before giving up.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// What a state-changing command asks of `reconcile`. The caller holds the lock (`Context::lock`).
pub struct Request<'a> {
    pub inputs: &'a Inputs,
    /// Definitions to persist (profile, service files, secrets) or remove.
    pub config: ConfigChange,
    pub dry_run: bool,
}

/// The one path every state-changing command takes: validate → desired → observe → plan →
/// print (dry run) or apply → report. Bad input is rejected before anything is touched.
///
/// Images come first: the paths an image declares as volumes shape its container (see
/// `desired::image_volume_mounts`), so missing images are pulled, and only then is the rest
/// planned. A run that cannot pull still changes nothing.
pub async fn reconcile(ctx: &Context, req: Request<'_>) -> Result<()> {
    let model = req.inputs.model()?;
    let engine = Engine::connect().await?;
    let mut plan = plan_once(ctx, &req, &model, &engine).await?;
    if req.dry_run {
        print!(
            "{}",
            report::plan_text(&plan.1, &req.inputs.profile.origin, &plan.0.unknown_images)
        );
        return Ok(());
    }
    let progress = Progress::new();
    let mut done = Vec::new();
    let (pulls, _): (Vec<_>, Vec<_>) = plan
        .1
        .actions
        .iter()
        .cloned()
        .partition(|a| matches!(a, plan::Action::PullImage { .. }));
    if !pulls.is_empty() {
        let pulls = plan::Plan { actions: pulls };
        let applied =
            applying::apply(&pulls, &plan.0, &engine, &ctx.paths, &ctx.names, &progress).await?;
        done.extend(applied.done);
        plan = plan_once(ctx, &req, &model, &engine).await?;
    }
    let (desired, plan) = plan;
    let applied =
        applying::apply(&plan, &desired, &engine, &ctx.paths, &ctx.names, &progress).await?;
    done.extend(applied.done);
    let states = engine
        .managed_containers(&ctx.names.instance_label())
        .await?;
    print!("{}", report::summary(&done, &model, &ctx.names, &states));
    Ok(())
}

/// Observes the images, derives the desired state from them, observes the rest, and plans.
async fn plan_once(
    ctx: &Context,
    req: &Request<'_>,
    model: &crate::model::Model,
    engine: &Engine,
) -> Result<(desired::Desired, plan::Plan)> {
    let refs: Vec<String> = std::iter::once(model.gateway.image.clone())
        .chain(model.services.iter().map(|s| s.image.clone()))
        .collect();
    let images = observe::images(engine, &refs)
        .await
        .context("reading the current state")?;
    let desired = desired::desired(
        model,
        &ctx.paths,
        &ctx.names,
        &ctx.exec,
        crate::reuseport::kernel_can_migrate_requests(),
        &images,
    );
    let systemd = ctx.paths.is_system() && crate::host::systemd_running();
    let actual = observe::observe(
        engine,
        &desired,
        images,
        &req.config.paths(),
        &ctx.names.instance_label(),
        systemd,
    )
    .await
    .context("reading the current state")?;
    let plan = plan::plan(&desired, &actual, &ctx.names, &req.config)
        .map_err(|c| BadInput(c.to_string()))?;
    Ok((desired, plan))
}

pub fn completions(shell: clap_complete::Shell) {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "pi-setup", &mut std::io::stdout());
}
