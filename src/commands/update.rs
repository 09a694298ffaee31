//! `pi-setup update [SERVICE...] [--check]`: arguments → `crate::update` → one line per
//! service saying what was updated, what was rolled back and why. Exit code 1 when a service
//! was rolled back or could not be updated; with `--check`, 3 when updates are available.

use anyhow::Result;

use crate::cli::UpdateArgs;
use crate::commands::{Context, LOCK_WAIT};
use crate::error::Pending;
use crate::input::Inputs;
use crate::progress::Progress;
use crate::update::{self, Finding, Outcome};

pub(crate) async fn update(ctx: &Context, args: &UpdateArgs) -> Result<()> {
    let _lock = ctx.lock("update", args.check, LOCK_WAIT)?;
    let model = Inputs::read(None, &ctx.paths)?.model()?;
    let engine = crate::engine::connect().await?;
    if args.check {
        let found = update::check(ctx, &model, &args.services, &engine).await?;
        return print_check(&found);
    }
    let progress = Progress::new();
    let done = update::update(
        ctx,
        &model,
        &args.services,
        &engine,
        &progress,
        update::SETTLE,
    )
    .await?;
    print_outcomes(&done)
}

fn print_check(found: &[(String, Finding)]) -> Result<()> {
    let (mut newer, mut unknown) = (0, 0);
    for (service, f) in found {
        let line = match f {
            Finding::UpToDate => "up to date".to_string(),
            Finding::Newer(why) => {
                newer += 1;
                format!("would update: {why}")
            }
            Finding::NotCreated => "not created yet (`pi-setup apply` creates it)".to_string(),
            Finding::Unknown(why) => {
                unknown += 1;
                format!("cannot tell: {why}")
            }
        };
        println!("{service:<16} {line}");
    }
    if unknown > 0 {
        anyhow::bail!("{unknown} service(s) could not be checked; nothing was changed");
    }
    if newer > 0 {
        println!("{newer} service(s) would be updated (`pi-setup update`); nothing was changed.");
        return Err(Pending.into());
    }
    println!("Everything is up to date.");
    Ok(())
}

fn print_outcomes(done: &[(String, Outcome)]) -> Result<()> {
    let mut not_updated = Vec::new();
    let (mut updated, mut ran) = (0, 0);
    for (service, o) in done {
        let archived = |a: &Option<std::path::PathBuf>| {
            a.as_ref()
                .map(|p| format!("; its volume was archived to {}", p.display()))
                .unwrap_or_default()
        };
        let line = match o {
            Outcome::UpToDate => "up to date".to_string(),
            Outcome::NotCreated => "not created yet (`pi-setup apply` creates it)".to_string(),
            Outcome::Updated { from, to, archive } => {
                updated += 1;
                format!("updated: image {from} -> {to}{}", archived(archive))
            }
            Outcome::Ran { from, to } => {
                ran += 1;
                format!("ran again to completion with its new image: {from} -> {to}")
            }
            Outcome::RolledBack {
                to,
                why,
                archive,
                still_down,
                with,
            } => {
                not_updated.push(service.clone());
                let volume = archive
                    .as_ref()
                    .map(|p| format!(", its volume restored from {}", p.display()))
                    .unwrap_or_default();
                let mut line = match with {
                    None => format!(
                        "ROLLED BACK: the new image did not come up ({why}); back on image {to}{volume}"
                    ),
                    Some(_) => format!("ROLLED BACK: {why}; back on image {to}{volume}"),
                };
                if let Some(down) = still_down {
                    line.push_str(&format!("; and the old one is not up either: {down}"));
                }
                line
            }
            Outcome::Failed(why) => {
                not_updated.push(service.clone());
                format!("FAILED: {why}")
            }
        };
        println!("{service:<16} {line}");
    }
    if !not_updated.is_empty() {
        anyhow::bail!(
            "{} service(s) not updated: {} (see above; `docker logs` tells why a new version did not come up)",
            not_updated.len(),
            not_updated.join(", ")
        );
    }
    match (updated, ran) {
        (0, 0) => println!("Nothing to update."),
        (u, 0) => println!("{u} service(s) updated."),
        (u, r) => println!("{u} service(s) updated, {r} job(s) ran again."),
    }
    Ok(())
}
