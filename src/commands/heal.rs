//! `pi-setup heal`: Docker marks a failing container `unhealthy` but never restarts it; this
//! does. Run every minute by `pi-setup-heal.timer` (a timer rather than a resident watcher:
//! nothing stays in the Pi's memory, and a crash of pi-setup cannot stop future runs). It also
//! finishes a restore a crash cut short, starts what a dead backup or restore left stopped,
//! routes to a service again that a dead run had drained (`crate::drain`), and puts back what
//! a killed `update` was rolling back (`crate::update::recover`).

use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::commands::Context;
use crate::engine::{Engine, HealthStatus};

pub(crate) async fn heal(ctx: &Context) -> Result<()> {
    let _lock = ctx.lock("heal", false, Duration::from_secs(30))?;
    // First, and without Docker: a container started over a volume an interrupted restore
    // left missing would get an empty directory from Docker's bind mount.
    crate::backup::run::recover_restores(&ctx.paths)?;
    let engine = crate::engine::connect().await?;
    // A killed `update`: its services back on the images they ran, with their volumes.
    // Not finished (a profile that does not read, Docker refusing a step): the rest of heal
    // goes on, then it fails saying why; the next run tries again.
    let update_recovered = if crate::update::interrupted(&ctx.paths) {
        let recovered = async {
            let model = crate::input::Inputs::read(None, &ctx.paths)?.model()?;
            crate::update::recover(ctx, &model, &engine, &crate::progress::Progress::new()).await
        }
        .await;
        recovered.context("an interrupted update could not be finished yet")
    } else {
        Ok(())
    };
    // A run killed while a service was drained left the gateway showing its maintenance page.
    if let Some(services) = crate::drain::recover(&engine, &ctx.paths, &ctx.names).await? {
        println!("reloading the gateway (a drain of {services} did not finish)");
    }
    let containers = engine
        .managed_containers(&ctx.names.instance_label())
        .await?;
    // A backup that died between stopping a container and starting it again left a note.
    for c in &containers {
        let marker = ctx.paths.stopped_for_backup(&c.name);
        if marker.exists() {
            if !c.running() {
                println!(
                    "starting {} (a backup stopped it and did not finish)",
                    c.name
                );
                engine.start(&c.name).await?;
            }
            crate::host::remove_file(&marker)?;
        }
    }
    let mut restarted = 0;
    for c in containers
        .iter()
        .filter(|c| c.health == Some(HealthStatus::Unhealthy))
    {
        println!("restarting {} (its health check fails)", c.name);
        engine.restart(&c.name, 10).await?;
        restarted += 1;
    }
    if restarted == 0 {
        println!("All services with a health check are healthy.");
    }
    update_recovered
}
