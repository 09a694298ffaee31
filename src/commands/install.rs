//! `pi-setup install`: make the host match the profile (and the service files), idempotently.

use anyhow::Result;

use crate::cli::InstallArgs;
use crate::commands::{Context, LOCK_WAIT};
use crate::desired::FileSpec;
use crate::input::Inputs;
use crate::plan::ConfigChange;
use crate::reconcile::{reconcile, Request};

pub(crate) async fn install(ctx: &Context, args: &InstallArgs) -> Result<()> {
    let _lock = ctx.lock("install", args.dry_run, LOCK_WAIT)?;
    let inputs = Inputs::read(args.profile.as_deref(), &ctx.paths)?;
    let profile_file = FileSpec {
        path: ctx.paths.profile_file(),
        contents: inputs.profile.text.clone().into_bytes(),
        mode: 0o644,
    };
    let request = Request {
        inputs: &inputs,
        config: ConfigChange {
            writes: vec![profile_file],
            removes: Vec::new(),
        },
        dry_run: args.dry_run,
    };
    reconcile(ctx, request).await
}
