//! `pi-setup remove-service`: removes the definition, container and route; keeps the data
//! unless `--purge` (confirmed on a terminal, or with `--yes`).

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::Result;

use crate::cli::RemoveServiceArgs;
use crate::commands::{reconcile, Context, Request, LOCK_WAIT};
use crate::config::{BadInput, Inputs};
use crate::host;
use crate::model::Name;
use crate::plan::ConfigChange;
use crate::profile;

pub async fn remove_service(ctx: &Context, args: &RemoveServiceArgs) -> Result<()> {
    let _lock = ctx.lock("remove-service", args.dry_run, LOCK_WAIT)?;
    let name = &args.name;
    // A valid name cannot hold `/` or `..`: --purge deletes /var/vol/NAME and nothing else.
    Name::parse(name).map_err(|why| BadInput(format!("invalid service name {name:?}: {why}")))?;
    let mut inputs = Inputs::read(None, &ctx.paths)?;
    let in_profile = profile::parse_profile(&inputs.profile)
        .map(|p| p.services.iter().any(|s| s.name.get_ref() == name))
        .unwrap_or(false);
    if in_profile {
        return Err(BadInput(format!(
            "service '{name}' is defined in the profile {}; remove its [[service]] table there and run `pi-setup apply`",
            inputs.profile.origin
        ))
        .into());
    }
    let before = inputs.services.len();
    inputs.services.retain(|s| {
        Path::new(&s.origin)
            .file_stem()
            .is_none_or(|f| f != name.as_str())
    });
    if inputs.services.len() == before {
        return Err(BadInput(format!(
            "there is no service named '{name}' (see `pi-setup list`)"
        ))
        .into());
    }
    inputs.secrets.remove(name);
    let volume = ctx.paths.vol(name);
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
    if args.purge {
        if args.dry_run {
            println!(
                "With --purge: would delete {} and everything in it.",
                volume.display()
            );
        } else if host::remove_tree(&volume)? {
            println!("Deleted {} (--purge).", volume.display());
        }
    } else if volume.exists() {
        println!(
            "Kept its data in {} (delete it with --purge).",
            volume.display()
        );
    }
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
