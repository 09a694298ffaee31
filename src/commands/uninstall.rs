//! `pi-setup uninstall [--purge --yes]`: takes away what pi-setup put on the host — its
//! containers, network, systemd units and overlay files (the host's own files restored from
//! `.pi-setup-orig`, byte for byte) — and keeps the data (/var/vol, backups, /etc/pi-setup)
//! unless `--purge --yes`.

use anyhow::Result;

use crate::cli::UninstallArgs;
use crate::commands::{Context, LOCK_WAIT};
use crate::engine::Engine;
use crate::error::BadInput;
use crate::overlay::{self, Undone};

pub(crate) async fn uninstall(ctx: &Context, args: &UninstallArgs) -> Result<()> {
    if args.purge && !args.yes {
        return Err(BadInput(
            "--purge deletes /var/vol (every service's data), the backups and /etc/pi-setup: add --yes to confirm".into(),
        )
        .into());
    }
    let _lock = ctx.lock("uninstall", false, LOCK_WAIT)?;
    // Where backups are: the profile in force says; the default if it is gone or broken.
    let dest = crate::input::Inputs::read(None, &ctx.paths)
        .ok()
        .and_then(|i| i.model().ok())
        .map_or_else(|| "/var/backups/pi-setup".to_string(), |m| m.backup.dest);

    let docker = crate::engine::connect().await?;
    for c in docker
        .managed_containers(&ctx.names.instance_label())
        .await?
    {
        if docker.remove_container(&c.name).await?.is_some() {
            println!("removed container {}", c.name);
        }
    }
    let network = ctx.names.network();
    if let Some(n) = docker.network(&network).await? {
        if n.managed {
            docker.remove_network(&network).await?;
            println!("removed network {network}");
        }
    }

    let units = crate::host::files_with_suffix(&ctx.paths.systemd_dir(), "")?
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("pi-setup-"))
        })
        .collect::<Vec<_>>();
    if !units.is_empty() && ctx.paths.is_system() && crate::host::systemd_running() {
        let timers: Vec<String> = units
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .filter(|n| {
                std::path::Path::new(n)
                    .extension()
                    .is_some_and(|e| e == "timer")
            })
            .collect();
        let mut args = vec!["disable", "--now"];
        args.extend(timers.iter().map(String::as_str));
        if timers.is_empty() {
            args.clear();
        }
        if !args.is_empty() {
            crate::host::run_program("systemctl", &args, &[])?;
        }
    }
    for u in &units {
        crate::host::remove_file(u)?;
        println!("removed unit {}", u.display());
    }
    if !units.is_empty() && ctx.paths.is_system() && crate::host::systemd_running() {
        crate::host::run_program("systemctl", &["daemon-reload"], &[])?;
    }

    for u in overlay::undo(&ctx.paths)? {
        match u {
            Undone::Restored(p) => println!(
                "restored {p} (the host's own file, from {p}{})",
                overlay::ORIG_SUFFIX
            ),
            Undone::Removed(p) => println!("removed {p}"),
            Undone::ModeRestored(p) => {
                println!("restored the mode and owner of {p} (the host's file; pi-setup changed only those)");
            }
            Undone::Kept(p) => {
                println!("kept {p} (the host's file; pi-setup changed only its mode)");
            }
        }
    }

    let data = [
        ("/var/vol", "every service's data"),
        (dest.as_str(), "the backups"),
        ("/etc/pi-setup", "the profile, service files and secrets"),
        ("/var/lib/pi-setup", "pi-setup's state"),
    ];
    for (abs, what) in data {
        let path = ctx.paths.host(abs);
        if !path.exists() {
            continue;
        }
        if args.purge && abs == dest.as_str() {
            purge_backups(&path)?;
        } else if args.purge {
            crate::host::remove_tree(&path)?;
            println!("deleted {} ({what})", path.display());
        } else {
            println!("kept {} ({what})", path.display());
        }
    }
    if !args.purge {
        println!("uninstall --purge --yes deletes what was kept");
    }
    Ok(())
}

/// The backup destination may be a disk or a directory that holds other things too
/// (`/mnt/usb`, `/var`): only what backups wrote goes — each volume's archive directory that
/// holds nothing else, and the copy staging — then the destination itself if that left it empty.
fn purge_backups(dest: &std::path::Path) -> Result<()> {
    let (names, _) = crate::backup::run::archivable_subdirs(dest)?;
    for name in names {
        let dir = dest.join(&name);
        if crate::backup::holds_only_archives(dest, &name) {
            crate::host::remove_tree(&dir)?;
            println!("deleted {} (the backups of {name})", dir.display());
        } else {
            println!(
                "kept {} (it holds files backups did not write)",
                dir.display()
            );
        }
    }
    let staging = dest.join(crate::backup::run::STAGING);
    if staging.is_dir() {
        crate::host::remove_tree(&staging)?;
    }
    match std::fs::remove_dir(dest) {
        Ok(()) => println!("deleted {} (the backups)", dest.display()),
        Err(_) => println!("kept {} (it holds more than backups)", dest.display()),
    }
    Ok(())
}
