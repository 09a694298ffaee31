//! `pi-setup remove-service`: removes the definition, container and route; keeps the data
//! unless `--purge` (confirmed on a terminal, or with `--yes`).

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::Result;

use crate::cli::RemoveServiceArgs;
use crate::commands::{Context, LOCK_WAIT};
use crate::engine::Engine;
use crate::error::BadInput;
use crate::host;
use crate::input::raw;
use crate::input::Inputs;
use crate::model::{Name, GATEWAY};
use crate::plan::ConfigChange;
use crate::reconcile::{reconcile, Request};

pub(crate) async fn remove_service(ctx: &Context, args: &RemoveServiceArgs) -> Result<()> {
    let _lock = ctx.lock("remove-service", args.dry_run, LOCK_WAIT)?;
    let name = &args.name;
    // A valid name cannot hold `/` or `..`: --purge deletes /var/vol/NAME and nothing else.
    Name::parse(name).map_err(|why| BadInput(format!("invalid service name {name:?}: {why}")))?;
    if name == GATEWAY {
        return Err(BadInput(format!(
            "'{GATEWAY}' is the gateway, not a service; it cannot be removed"
        ))
        .into());
    }
    let mut inputs = Inputs::read(None, &ctx.paths)?;
    let in_profile = raw::parse_profile(&inputs.profile)
        .is_ok_and(|p| p.services.iter().any(|s| s.name.get_ref() == name));
    if in_profile {
        return Err(BadInput(format!(
            "service '{name}' is defined in the profile {}; remove its [[service]] table there and run `pi-setup apply`",
            inputs.profile.origin
        ))
        .into());
    }
    let volume = ctx.paths.vol(name);
    let before = inputs.services.len();
    inputs.services.retain(|s| {
        Path::new(&s.origin)
            .file_stem()
            .is_none_or(|f| f != name.as_str())
    });
    if inputs.services.len() == before {
        return purge_leftover(ctx, args, &volume).await;
    }
    inputs.secrets.remove(name);
    if args.purge && !args.dry_run && !args.yes && !confirm_purge(name, &volume)? {
        return Err(BadInput("not confirmed".into()).into());
    }

    let request = Request {
        inputs: &inputs,
        config: ConfigChange {
            writes: Vec::new(),
            removes: vec![ctx.paths.service_file(name), ctx.paths.secrets_file(name)],
        },
        dry_run: args.dry_run,
    };
    reconcile(ctx, request).await?;
    let shown = volume.display();
    match (args.purge, args.dry_run) {
        (true, true) => println!("Would delete {shown} and everything in it (--purge)."),
        (true, false) => {
            if host::remove_tree(&volume)? {
                println!("Deleted {shown} (--purge).");
            }
        }
        (false, true) if volume.exists() => println!(
            "Would keep its data in {shown} (`pi-setup remove-service {name} --purge` deletes it)."
        ),
        (false, false) if volume.exists() => println!(
            "Kept its data in {shown} (delete it with `pi-setup remove-service {name} --purge`)."
        ),
        (false, _) => {}
    }
    Ok(())
}

/// `remove-service NAME --purge` after `remove-service NAME`: the definition is gone and only
/// the data is left, so the next step the first run advertised deletes just that.
async fn purge_leftover(ctx: &Context, args: &RemoveServiceArgs, volume: &Path) -> Result<()> {
    let name = &args.name;
    let shown = volume.display();
    if !volume.exists() {
        return Err(BadInput(format!(
            "there is no service named '{name}' (see `pi-setup list`)"
        ))
        .into());
    }
    if !args.purge {
        return Err(BadInput(format!(
            "there is no service named '{name}'; its data is still in {shown} (`pi-setup remove-service {name} --purge` deletes it)"
        ))
        .into());
    }
    // The data of a running container is not deleted from under it. One is left only when an
    // earlier removal failed half-way; `apply` finishes that.
    let engine = crate::engine::connect().await?;
    let container = ctx.names.object(name);
    let containers = engine
        .managed_containers(&ctx.names.instance_label())
        .await?;
    if containers.iter().any(|c| c.name == container) {
        return Err(BadInput(format!(
            "service '{name}' is no longer defined, but its container {container} still exists: run `pi-setup apply` to remove it, then purge"
        ))
        .into());
    }
    if args.dry_run {
        println!("Service '{name}' is already removed; would delete its data, {shown}, and everything in it (--purge).");
        println!("Dry run: nothing was changed.");
        return Ok(());
    }
    if !args.yes && !confirm_purge(name, volume)? {
        return Err(BadInput("not confirmed".into()).into());
    }
    host::remove_tree(volume)?;
    println!("Service '{name}' was already removed; deleted its data, {shown} (--purge).");
    Ok(())
}

/// On a terminal: ask to type the name. Elsewhere: refuse (scripts must say --yes).
fn confirm_purge(name: &str, volume: &Path) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(BadInput(format!(
            "--purge deletes {} for good; add --yes to confirm when not on a terminal",
            volume.display()
        ))
        .into());
    }
    eprint!(
        "This deletes {} and all its data for good. Type the service name to confirm: ",
        volume.display()
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == name)
}
