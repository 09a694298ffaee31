//! `pi-setup install`: make the host match the profile (and the service files), idempotently.

use anyhow::Result;

use crate::cli::InstallArgs;
use crate::commands::{host_setup, Context, LOCK_WAIT};
use crate::desired::FileSpec;
use crate::input::Inputs;
use crate::plan::ConfigChange;
use crate::reconcile::{reconcile, Request};

pub(crate) async fn install(ctx: &Context, args: &InstallArgs) -> Result<()> {
    let _lock = ctx.lock("install", args.dry_run, LOCK_WAIT)?;
    let inputs = Inputs::read(args.profile.as_deref(), &ctx.paths)?;
    // Checks before anything changes; offline images before anything is pulled. Overlays go
    // on after the appliance is planned and applied, so a run that cannot pull (or is given a
    // bad profile) still changes nothing; a dry run shows their diff before the plan.
    let model = inputs.model()?;
    let docker = host_setup::preflight(ctx, args, &model).await?;
    let overlays = host_setup::plan_overlays(ctx, &inputs, &model)?;
    if let (Some(file), Some(docker)) = (&args.images, &docker) {
        if args.dry_run {
            println!("would load the images in {}", file.display());
        } else {
            crate::commands::images::load(docker, file).await?;
            let platform = format!("linux/{}", crate::preflight::host_arch());
            crate::commands::images::check_present(
                docker,
                &host_setup::image_refs(&model),
                &platform,
            )
            .await
            .map_err(|e| anyhow::anyhow!("after loading {}: {e}", file.display()))?;
        }
    }
    let request = || Request {
        inputs: &inputs,
        config: ConfigChange {
            writes: vec![FileSpec {
                path: ctx.paths.profile_file(),
                contents: inputs.profile.text.clone().into_bytes(),
                mode: 0o644,
            }],
            removes: Vec::new(),
        },
        dry_run: args.dry_run,
    };
    if args.dry_run {
        if host_setup::lay_overlays(ctx, args, &overlays)? {
            host_setup::docker_settings_changed(ctx, args).await?;
        }
        return reconcile(ctx, request()).await;
    }
    reconcile(ctx, request()).await?;
    if host_setup::lay_overlays(ctx, args, &overlays)?
        && host_setup::docker_settings_changed(ctx, args).await?
    {
        // Docker restarted: every container is checked against the profile again.
        reconcile(ctx, request()).await?;
    }
    Ok(())
}
