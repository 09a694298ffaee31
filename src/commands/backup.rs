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
    let copied: Vec<&str> = vols
        .iter()
        .map(|v| v.name.as_str())
        .filter(|n| !failed.iter().any(|f| f == n))
        .collect();
    let copies_failed = copy_off_device(ctx, &model, &job.dest, &copied);
    match (failed.is_empty(), copies_failed.is_empty()) {
        (true, true) => Ok(()),
        (false, _) => Err(anyhow!("backup failed for: {}", failed.join(", "))),
        (true, false) => Err(anyhow!(
            "the archives are good here, but copying them failed for: {} (retried on the next run)",
            copies_failed.join(", ")
        )),
    }
}

/// Copies each volume's new (and any not yet copied) archives to every `[[backup.copy]]`
/// target, printing a line each; returns the targets that failed. A target that is not mounted
/// fails as a whole, before anything is written to it.
fn copy_off_device(
    ctx: &Context,
    model: &crate::model::Model,
    local: &std::path::Path,
    volumes: &[&str],
) -> Vec<String> {
    let mut failed = Vec::new();
    for target in &model.backup.copies {
        let path = ctx.paths.host(&target.path);
        let label = format!("copy {}", target.name);
        let note = ctx.paths.copy_failed(target.name.as_str());
        let mut problems = Vec::new();
        if let Err(e) = backup::check_mounted(&path, &ctx.paths.root) {
            println!("{label:<16} FAILED {e}");
            problems.push(e.to_string());
        }
        let policy = backup::RetentionPolicy {
            keep_last: target.keep_last as usize,
            keep_daily: target.keep_daily as usize,
            keep_weekly: target.keep_weekly as usize,
            keep_monthly: target.keep_monthly as usize,
        };
        let mounted = problems.is_empty();
        for name in volumes.iter().filter(|_| mounted) {
            let keys: Vec<age::x25519::Recipient> =
                target.encrypt_to.iter().map(|r| r.0.clone()).collect();
            match backup::copy_volume(local, &path, name, &policy, &keys) {
                Ok(r) => {
                    let bytes: u64 = r.copied.iter().map(|(_, b)| b).sum();
                    println!(
                        "{label:<16} {name}: {} archive(s) copied ({}), {} linked, {} pruned, to {}",
                        r.copied.len(),
                        human_bytes(bytes),
                        r.linked.len(),
                        r.pruned.len(),
                        path.join(name).display()
                    );
                }
                Err(e) => {
                    let full = if e.is_disk_full() {
                        " (the copy target is full: free space there or keep fewer copies)"
                    } else {
                        ""
                    };
                    println!("{label:<16} {name}: FAILED {e}{full}");
                    problems.push(format!("{name}: {e}{full}"));
                }
            }
        }
        // `status` tells from this note that the last run could not copy.
        let noted = if problems.is_empty() {
            crate::host::remove_file(&note).map(|_| ())
        } else {
            failed.push(target.name.to_string());
            crate::host::write_atomic(&note, problems.join("\n").as_bytes(), 0o600)
        };
        if let Err(e) = noted {
            println!("{label:<16} could not note the outcome for `status`: {e}");
        }
    }
    failed
}

/// Where the archives a command reads are: on the copy target named by `--copy`/`--from`
/// (checked to be mounted), else in `--dest`, else in the profile's `backup.dest`.
fn archives_dir(
    ctx: &Context,
    model: &crate::model::Model,
    dest: Option<&std::path::Path>,
    copy: Option<&str>,
) -> Result<std::path::PathBuf> {
    let Some(name) = copy else {
        return Ok(run::dest(&ctx.paths, model, dest));
    };
    let Some(target) = model.backup.copies.iter().find(|t| t.name.as_str() == name) else {
        let known: Vec<String> = model
            .backup
            .copies
            .iter()
            .map(|t| t.name.to_string())
            .collect();
        return Err(BadInput(format!(
            "there is no [[backup.copy]] named {name:?} in the profile (copies: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ))
        .into());
    };
    let path = ctx.paths.host(&target.path);
    backup::check_mounted(&path, &ctx.paths.root)?;
    Ok(path)
}

pub(crate) async fn restore(ctx: &Context, args: &RestoreArgs) -> Result<()> {
    let model = Inputs::read(None, &ctx.paths)?.model()?;
    backup::check_name(&args.name).map_err(|e| BadInput(e.to_string()))?;
    let dest = archives_dir(ctx, &model, args.dest.as_deref(), args.from.as_deref())?;
    let sealed = args
        .from
        .as_deref()
        .and_then(|n| model.backup.copies.iter().find(|t| t.name.as_str() == n))
        .filter(|t| !t.encrypt_to.is_empty());
    // Decrypted copies wait in a directory of their own beside the local archives, removed
    // when the command ends however it ends.
    let mut fetched = Fetched(None);
    let archive = if let Some(a) = &args.archive {
        a.clone()
    } else if let Some(target) = sealed {
        let identity = args.identity.as_ref().ok_or_else(|| {
            BadInput(format!(
                "the copies on '{}' are encrypted: give your age identity with --identity FILE",
                target.name
            ))
        })?;
        let all = backup::list_encrypted(&dest, &args.name)?;
        let pick = match &args.at {
            Some(ts) => all.iter().rev().find(|a| a.timestamp.to_string() == *ts),
            None => all.last(),
        };
        let Some(copy) = pick else {
            let list: Vec<String> = all.iter().map(|a| a.timestamp.to_string()).collect();
            return Err(BadInput(format!(
                "no encrypted copy of '{}'{} in {} (there are: {})",
                args.name,
                args.at
                    .as_ref()
                    .map(|t| format!(" at {t}"))
                    .unwrap_or_default(),
                dest.display(),
                if list.is_empty() {
                    "none".to_string()
                } else {
                    list.join(", ")
                }
            ))
            .into());
        };
        let local = run::dest(&ctx.paths, &model, None);
        let dir = local.join(format!(".from-{}-{}", target.name, std::process::id()));
        fetched.0 = Some(dir.clone());
        backup::fetch_encrypted(&copy.path, identity, &dir)?
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
    let dest = archives_dir(ctx, &model, args.dest.as_deref(), args.copy.as_deref())?;
    let names = run::archive_names(&ctx.paths, &dest, args.name.as_deref())?;
    println!(
        "{:<16} {:<16}  {:>10}  {:<5} ARCHIVE",
        "NAME", "TIMESTAMP", "SIZE", "STATE"
    );
    let sealed = args
        .copy
        .as_deref()
        .and_then(|n| model.backup.copies.iter().find(|t| t.name.as_str() == n))
        .is_some_and(|t| !t.encrypt_to.is_empty());
    for name in names {
        // Encrypted copies: "sealed" (age; checked when written, opened with your key).
        let listed = if sealed {
            backup::list_encrypted(&dest, &name)?
        } else {
            backup::list_archives(&dest, &name)?
        };
        for a in listed {
            let size = std::fs::metadata(&a.path).map_or(0, |m| m.len());
            let state = match (sealed, a.good) {
                (true, _) => "sealed",
                (false, true) => "ok",
                (false, false) => "BAD",
            };
            println!(
                "{:<16} {}  {:>10}  {:<5} {}",
                name,
                a.timestamp,
                human_bytes(size),
                state,
                a.path.display()
            );
        }
    }
    Ok(())
}

pub(crate) fn verify(ctx: &Context, args: &BackupsArgs) -> Result<()> {
    let model = Inputs::read(None, &ctx.paths)?.model()?;
    let dest = archives_dir(ctx, &model, args.dest.as_deref(), args.copy.as_deref())?;
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

/// A directory removed when dropped.
struct Fetched(Option<std::path::PathBuf>);

impl Drop for Fetched {
    fn drop(&mut self) {
        if let Some(d) = &self.0 {
            let _ = crate::host::remove_tree(d);
        }
    }
}
