//! `pi-setup apply`: reconcile after hand-editing `/etc/pi-setup` (profile, services, secrets).

use anyhow::Result;

use crate::cli::ApplyArgs;
use crate::commands::{Context, LOCK_WAIT};
use crate::input::Inputs;
use crate::plan::ConfigChange;
use crate::reconcile::{reconcile, Request};

pub(crate) async fn apply(ctx: &Context, args: &ApplyArgs) -> Result<()> {
    let _lock = ctx.lock("apply", args.dry_run, LOCK_WAIT)?;
    let inputs = Inputs::read(None, &ctx.paths)?;
    let request = Request {
        inputs: &inputs,
        config: ConfigChange::default(),
        dry_run: args.dry_run,
    };
    reconcile(ctx, request).await
}
