//! `pi-setup backup`, `restore`, `backups`, `verify`: arguments → options → `backup::run` →
//! what is printed. How volumes are found, kept consistent and restored is in `backup::run`.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use crate::backup::{self, run, ArchiveOptions, Codec};
use crate::cli::{BackupArgs, BackupsArgs, RestoreArgs};
use crate::commands::{Context, LOCK_WAIT};
use crate::error::BadInput;
use crate::input::Inputs;
use crate::model::GATEWAY;
use crate::progress::Progress;
use crate::report::{human_bytes, human_duration};

pub(crate) async fn backup(ctx: &Context, args: &BackupArgs) -> Result<()> {
    let model = Inputs::read(None, &ctx.paths)?.model()?;
    let codec = match args.compress.as_deref() {
        None => model.backup.compress,
        Some(name) => Codec::parse(name)
            .ok_or_else(|| BadInput(format!("--compress {name:?} is not one of gzip, zstd")))?,
    };
    // The profile's level is for the profile's format: another format on the command line
    // starts from its own default.
    let level = match args.level {
        Some(level) => codec
            .check_level(level.into())
            .map_err(|e| BadInput(format!("--{e}")))?,
        None if codec == model.backup.compress => model.backup.level,
        None => codec.default_level(),
    };
    let dest = run::dest(&ctx.paths, &model, args.dest.as_deref());
    if run::resolved(&dest).starts_with(run::resolved(&ctx.paths.vol_root())) {
        return Err(BadInput(format!(
            "the backup destination {} is inside /var/vol, which is what gets backed up",
            dest.display()
        ))
        .into());
    }
    // Before the volumes are listed: a restore a crash interrupted may have left one missing.
    let _lock = if args.dry_run {
        None
    } else {
        let lock = ctx.lock("backup", false, LOCK_WAIT)?;
        run::recover_restores(&ctx.paths)?;
        Some(lock)
    };
    let (mut vols, mut unusable) = run::volumes(&ctx.paths, &ctx.names, &model)?;
    let mut missing = run::missing_volumes(&ctx.paths, &model);
    if !args.names.is_empty() {
        unusable.clear();
        for n in &args.names {
            if !vols.iter().any(|v| &v.name == n) && !missing.iter().any(|(m, _)| m == n) {
                let there: Vec<&str> = vols.iter().map(|v| v.name.as_str()).collect();
                return Err(BadInput(format!(
                    "there is no volume directory {} (volumes: {})",
                    ctx.paths.vol(n).display(),
                    run::names_there(&there)
                ))
                .into());
            }
        }
        vols.retain(|v| args.names.contains(&v.name));
        missing.retain(|(m, _)| args.names.contains(m));
    }
    if args.dry_run {
        println!(
            "Would back up {} volume(s) to {} as {codec} level {level} ({}):",
            vols.len(),
            dest.display(),
            codec.suffix()
        );
        for v in &vols {
            println!(
                "  {:<16} {:<22} {}",
                v.name,
                v.mode_label(),
                ctx.paths.vol(&v.name).display()
            );
        }
        for u in &unusable {
            println!("  NOT backed up: {u} ({})", run::UNUSABLE);
        }
        for (_, why) in &missing {
            println!("  NOT backed up: {why}");
        }
        println!("Dry run: nothing was changed.");
        return Ok(());
    }
    let engine = crate::engine::connect().await;
    let opts = ArchiveOptions {
        codec,
        level,
        ..Default::default()
    };
    let progress = Progress::new();
    let started = Instant::now();
    let mut failed = Vec::new();
    for u in &unusable {
        println!("{u} FAILED {}", run::UNUSABLE);
        failed.push(u.clone());
    }
    for (name, why) in &missing {
        println!("{name:<16} FAILED {why}");
        failed.push(name.clone());
    }
    let mut total_in = 0u64;
    let mut total_out = 0u64;
    let job = run::Job {
        dest,
        opts,
        policy: run::policy(&model),
    };
    run::back_up_all(&ctx.paths, &engine, &vols, &job, &progress, |o| {
        let v = o.volume;
        match o.archived {
            Ok(report) => {
                let m = &report.manifest;
                total_in += m.bytes_in;
                total_out += m.bytes_out;
                let how = if m.reused_from.is_some() {
                    " (unchanged: linked to the previous archive)"
                } else {
                    ""
                };
                println!(
                    "{:<16} ok    {:>10} -> {:>10} in {:>7}  {}{how}",
                    v.name,
                    human_bytes(m.bytes_in),
                    human_bytes(m.bytes_out),
                    human_duration(Duration::from_millis(m.duration_ms)),
                    report.archive.display()
                );
                for c in &m.changed_files {
                    println!("{:<16}       changed while being read: {c}", "");
                }
                for s in &m.skipped {
                    println!("{:<16}       skipped: {s}", "");
                }
                match o.pruned {
                    Ok(deleted) => {
                        for d in deleted {
                            println!("{:<16}       pruned {}", "", d.display());
                        }
                    }
                    Err(e) => println!("{:<16}       pruning failed: {e}", ""),
                }
            }
            Err(e) => {
                println!("{:<16} FAILED {e:#}", v.name);
                let full = e.chain().any(|c| {
                    c.downcast_ref::<backup::BackupError>()
                        .is_some_and(backup::BackupError::is_disk_full)
                });
                if full {
                    println!(
                        "{:<16}        the destination is full: free space there, keep fewer \
                             archives (backup.keep_*), or set backup.dest to a bigger disk",
                        ""
                    );
                }
                failed.push(v.name.clone());
            }
        }
    })
    .await;
    let all = vols.len() + unusable.len() + missing.len();
    println!(
        "\n{} of {} volume(s) backed up in {} ({} read, {} written) to {}",
        all - failed.len(),
        all,
        human_duration(started.elapsed()),
        human_bytes(total_in),
        human_bytes(total_out),
        job.dest.display()
    );
    if failed.is_empty() {
        Ok(())
    } else {
        Err(anyhow!("backup failed for: {}", failed.join(", ")))
    }
}

pub(crate) async fn restore(ctx: &Context, args: &RestoreArgs) -> Result<()> {
    let model = Inputs::read(None, &ctx.paths)?.model()?;
    backup::check_name(&args.name).map_err(|e| BadInput(e.to_string()))?;
    let dest = run::dest(&ctx.paths, &model, args.dest.as_deref());
    let archive = if let Some(a) = &args.archive {
        a.clone()
    } else {
        let all = backup::list_archives(&dest, &args.name)?;
        let pick = match &args.at {
            Some(ts) => all.iter().rev().find(|a| a.timestamp.to_string() == *ts),
            None => all.iter().rev().find(|a| a.good),
        };
        match pick {
            Some(a) => a.path.clone(),
            None if all.is_empty() => {
                if !run::known_names(&ctx.paths, &dest)?.contains(&args.name) {
                    return Err(run::no_such_name(&ctx.paths, &dest, &args.name)?);
                }
                let with_archives = run::archivable_subdirs(&dest)?.0;
                let with_archives: Vec<&str> = with_archives.iter().map(String::as_str).collect();
                return Err(BadInput(format!(
                    "there is no archive of '{}' in {} yet (archives there: {})",
                    args.name,
                    dest.display(),
                    run::names_there(&with_archives)
                ))
                .into());
            }
            None => {
                let list: Vec<String> = all.iter().map(|a| a.timestamp.to_string()).collect();
                return Err(BadInput(format!(
                    "no good archive of '{}'{} in {} (there are: {})",
                    args.name,
                    args.at
                        .as_ref()
                        .map(|t| format!(" at {t}"))
                        .unwrap_or_default(),
                    dest.display(),
                    list.join(", ")
                ))
                .into());
            }
        }
    };
    // `--archive` can name any file: it must be an archive of this volume.
    let manifest = backup::Manifest::read_for(&archive)?;
    if manifest.name != args.name {
        return Err(BadInput(format!(
            "{} is an archive of '{}', not of '{}'",
            archive.display(),
            manifest.name,
            args.name
        ))
        .into());
    }
    let container = (args.name == GATEWAY || model.service(&args.name).is_some())
        .then(|| ctx.names.object(&args.name));
    if args.dry_run {
        println!(
            "Would restore {} from {}",
            ctx.paths.vol(&args.name).display(),
            archive.display()
        );
        if let Some(c) = &container {
            println!("  stopping container {c} first and starting it again after");
        }
        println!(
            "  keeping the current directory as {}.pre-restore-<timestamp> until the next backup",
            args.name
        );
        println!("Dry run: nothing was changed.");
        return Ok(());
    }
    let _lock = ctx.lock("restore", false, LOCK_WAIT)?;
    run::recover_restores(&ctx.paths)?;
    let engine = match &container {
        Some(_) => Some(crate::engine::connect().await?),
        None => None,
    };
    let report = run::restore_volume(
        &ctx.paths,
        engine.as_ref(),
        container.as_deref(),
        &archive,
        &args.name,
    )
    .await?;
    println!(
        "Restored {} ({} entries) from {}",
        report.restored.display(),
        report.entries,
        archive.display()
    );
    for s in &report.skipped {
        println!("  not restored: {s}");
    }
    if let Some(prev) = report.previous {
        println!(
            "The directory it replaced is kept as {} until the next backup.",
            prev.display()
        );
    }
    Ok(())
}

pub(crate) fn backups(ctx: &Context, args: &BackupsArgs) -> Result<()> {
    let model = Inputs::read(None, &ctx.paths)?.model()?;
    let dest = run::dest(&ctx.paths, &model, args.dest.as_deref());
    let names = run::archive_names(&ctx.paths, &dest, args.name.as_deref())?;
    println!(
        "{:<16} {:<16}  {:>10}  {:<5} ARCHIVE",
        "NAME", "TIMESTAMP", "SIZE", "STATE"
    );
    for name in names {
        for a in backup::list_archives(&dest, &name)? {
            let size = std::fs::metadata(&a.path).map_or(0, |m| m.len());
            println!(
                "{:<16} {}  {:>10}  {:<5} {}",
                name,
                a.timestamp,
                human_bytes(size),
                if a.good { "ok" } else { "BAD" },
                a.path.display()
            );
        }
    }
    Ok(())
}

pub(crate) fn verify(ctx: &Context, args: &BackupsArgs) -> Result<()> {
    let model = Inputs::read(None, &ctx.paths)?.model()?;
    let dest = run::dest(&ctx.paths, &model, args.dest.as_deref());
    let (mut good, mut bad) = (0, 0);
    for name in run::archive_names(&ctx.paths, &dest, args.name.as_deref())? {
        for a in backup::list_archives(&dest, &name)? {
            match backup::verify_archive(&a.path) {
                Ok(r) => {
                    good += 1;
                    println!("ok    {} ({} entries)", a.path.display(), r.entries);
                }
                Err(e) => {
                    bad += 1;
                    println!("BAD   {}: {e}", a.path.display());
                }
            }
        }
    }
    println!("{good} archive(s) verified, {bad} bad");
    if bad == 0 {
        Ok(())
    } else {
        Err(anyhow!("{bad} archive(s) failed verification"))
    }
}
