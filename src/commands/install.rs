//! `pi-setup install`: make the host match the profile (and the service files), idempotently.

use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::apply;
use crate::cli::InstallArgs;
use crate::commands::Context;
use crate::config::{self, BadInput};
use crate::desired::{self, FileSpec};
use crate::engine::Engine;
use crate::lock;
use crate::observe;
use crate::plan;
use crate::progress::Progress;
use crate::report;

pub async fn install(ctx: &Context, args: &InstallArgs) -> Result<()> {
    let profile_src = config::profile_source(args.profile.as_deref(), &ctx.paths)?;
    let services = config::service_sources(&ctx.paths)?;
    let model = config::load(&profile_src, &services)?;
    if !args.dry_run {
        ctx.require_root()?;
    }
    let _lock = if args.dry_run {
        None
    } else {
        Some(lock::acquire(
            &ctx.paths.lock_file(),
            "install",
            Duration::from_secs(10),
        )?)
    };

    let engine = Engine::connect().await?;
    let desired = desired::desired(&model, &ctx.paths, &ctx.names);
    let actual = observe::observe(&engine, &desired, &ctx.paths, &ctx.names.instance_label())
        .await
        .context("reading the current state")?;
    let profile_file = FileSpec {
        path: ctx.paths.profile_file(),
        contents: profile_src.text.clone().into_bytes(),
        mode: 0o644,
    };
    let plan = plan::plan(&desired, &actual, &ctx.names, Some(&profile_file))
        .map_err(|c| BadInput(c.to_string()))?;

    if args.dry_run {
        print!("{}", report::plan_text(&plan, &profile_src.origin));
        return Ok(());
    }
    let progress = Progress::new();
    let applied = apply::apply(&plan, &desired, &engine, &ctx.paths, &ctx.names, &progress).await?;
    let states = engine
        .managed_containers(&ctx.names.instance_label())
        .await?;
    print!(
        "{}",
        report::summary(&applied.done, &model, &ctx.names, &states)
    );
    Ok(())
}
