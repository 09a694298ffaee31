//! `pi-setup backup`, `restore`, `backups`, `verify`: arguments → options → `backup::run` →
//! what is printed. How volumes are found, kept consistent and restored is in `backup::run`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use crate::backup::{self, run, ArchiveOptions, Codec};
use crate::cli::{BackupArgs, BackupsArgs, RestoreArgs};
use crate::commands::{Context, LOCK_WAIT};
use crate::drain::Drains;
use crate::error::BadInput;
use crate::input::Inputs;
use crate::model::{CopyPlace, CopyTarget, S3Place, GATEWAY};
use crate::progress::Progress;
use crate::report::{human_bytes, human_duration};
use crate::s3::S3Error;

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
        for t in &model.backup.copies {
            let place = match &t.place {
                crate::model::CopyPlace::Dir(p) => ctx.paths.host(p).display().to_string(),
                crate::model::CopyPlace::S3(s) => {
                    format!("{}/{}/{}", s.endpoint, s.bucket, s.prefix)
                }
            };
            let sealed = if t.encrypt_to.is_empty() {
                ""
            } else {
                ", encrypted with age"
            };
            println!("  then copied to '{}': {place}{sealed}", t.name);
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
        full_every: model.backup.full_every().filter(|_| !args.full),
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
    let drains = Drains::new(&model, &ctx.paths, &ctx.names, &progress);
    run::back_up_all(&ctx.paths, &engine, &vols, &job, &progress, &drains, |o| {
        let v = o.volume;
        match o.archived {
            Ok(report) => {
                let m = &report.manifest;
                total_in += m.bytes_in;
                total_out += m.bytes_out;
                let how = match (&m.reused_from, &m.base) {
                    (Some(_), _) => " (unchanged: linked to the previous archive)".to_string(),
                    (None, Some(full)) => format!(
                        " (differential: {} file(s) changed, {} path(s) deleted since {})",
                        m.files,
                        m.deleted.len(),
                        full.archive
                    ),
                    (None, None) => String::new(),
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
        let label = format!("copy {}", target.name);
        let note = ctx.paths.copy_failed(target.name.as_str());
        let policy = backup::RetentionPolicy {
            keep_last: target.keep_last as usize,
            keep_daily: target.keep_daily as usize,
            keep_weekly: target.keep_weekly as usize,
            keep_monthly: target.keep_monthly as usize,
        };
        let keys: Vec<age::x25519::Recipient> =
            target.encrypt_to.iter().map(|r| r.0.clone()).collect();
        let problems = match &target.place {
            CopyPlace::Dir(dir) => copy_to_dir(ctx, &label, dir, local, volumes, &policy, &keys),
            CopyPlace::S3(place) => {
                let staging = local.join(run::STAGING).join(target.name.as_str());
                copy_to_s3(ctx, &label, place, local, volumes, &policy, &keys, &staging)
            }
        };
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

/// One `path = ...` target: every volume's archives; returns what went wrong.
fn copy_to_dir(
    ctx: &Context,
    label: &str,
    dir: &str,
    local: &Path,
    volumes: &[&str],
    policy: &backup::RetentionPolicy,
    keys: &[age::x25519::Recipient],
) -> Vec<String> {
    let path = ctx.paths.host(dir);
    if let Err(e) = backup::check_mounted(&path, &ctx.paths.root) {
        println!("{label:<16} FAILED {e}");
        return vec![e.to_string()];
    }
    let mut problems = Vec::new();
    for name in volumes {
        match backup::copy_volume(local, &path, name, policy, keys) {
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
    problems
}

/// One `s3 = { ... }` target: the bucket is checked first (credentials, existence), then
/// every volume's archives go up; returns what went wrong.
#[allow(clippy::too_many_arguments)]
fn copy_to_s3(
    ctx: &Context,
    label: &str,
    place: &S3Place,
    local: &Path,
    volumes: &[&str],
    policy: &backup::RetentionPolicy,
    keys: &[age::x25519::Recipient],
    staging: &Path,
) -> Vec<String> {
    let client = match s3_client(ctx, place).and_then(|c| {
        c.check_bucket()
            .map_err(|e| anyhow!("{e}{}", s3_hint(&e, ctx, place)))?;
        Ok(c)
    }) {
        Ok(c) => c,
        Err(e) => {
            println!("{label:<16} FAILED {e:#}");
            return vec![format!("{e:#}")];
        }
    };
    let remote = backup::Remote {
        client: &client,
        prefix: &place.prefix,
    };
    let mut problems = Vec::new();
    for name in volumes {
        let mut on_upload = |key: &str, parts: usize| {
            println!("{label:<16} {name}: uploading {key} in {parts} parts");
        };
        match backup::copy_volume_s3(local, &remote, name, policy, keys, staging, &mut on_upload) {
            Ok(r) => {
                let bytes: u64 = r.copied.iter().map(|(_, b)| b).sum();
                let resumed = if r.parts_kept > 0 {
                    format!(
                        " (resumed: {} part(s) were already there, {} sent)",
                        r.parts_kept, r.parts_sent
                    )
                } else {
                    String::new()
                };
                println!(
                    "{label:<16} {name}: {} archive(s) copied ({}), {} linked, {} pruned, to {}{resumed}",
                    r.copied.len(),
                    human_bytes(bytes),
                    r.linked.len(),
                    r.pruned.len(),
                    remote.url(name)
                );
            }
            Err(e) => {
                let hint = match &e {
                    backup::BackupError::S3(s) => s3_hint(s, ctx, place),
                    _ => String::new(),
                };
                println!("{label:<16} {name}: FAILED {e}{hint}");
                problems.push(format!("{name}: {e}{hint}"));
            }
        }
    }
    problems
}

/// What to do about an S3 error the user can fix.
fn s3_hint(e: &S3Error, ctx: &Context, place: &S3Place) -> String {
    if e.is_no_bucket() {
        format!(
            " (there is no bucket {:?} at {}: create it; pi-setup never creates one)",
            place.bucket, place.endpoint
        )
    } else if e.is_denied() {
        format!(
            " (the server refused the access key in {}: check it and its secret, and that they \
             may read and write the bucket)",
            ctx.paths.host(&place.credentials).display()
        )
    } else {
        String::new()
    }
}

/// A client for an S3 target, with the credentials read now (under `--root`).
fn s3_client(ctx: &Context, place: &S3Place) -> Result<crate::s3::Client> {
    let creds = crate::s3::Credentials::read(&ctx.paths.host(&place.credentials))?;
    Ok(crate::s3::Client::new(
        &place.endpoint,
        place.virtual_host,
        &place.bucket,
        &place.region,
        creds,
    )?)
}

/// The `[[backup.copy]]` named `name`, or a usage error listing those there are.
fn copy_target<'m>(model: &'m crate::model::Model, name: &str) -> Result<&'m CopyTarget> {
    if let Some(t) = model.backup.copies.iter().find(|t| t.name.as_str() == name) {
        return Ok(t);
    }
    let known: Vec<String> = model
        .backup
        .copies
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    Err(BadInput(format!(
        "there is no [[backup.copy]] named {name:?} in the profile (copies: {})",
        if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        }
    ))
    .into())
}

/// The volume names with copies in an S3 target (or just `only`).
fn s3_names(remote: &backup::Remote<'_>, only: Option<&str>) -> Result<Vec<String>> {
    if let Some(n) = only {
        backup::check_name(n).map_err(|e| BadInput(e.to_string()))?;
        return Ok(vec![n.to_string()]);
    }
    let mut names: Vec<String> = remote
        .client
        .list(remote.prefix)?
        .into_iter()
        .filter_map(|o| {
            let rest = o.key.strip_prefix(remote.prefix)?;
            let (name, _) = rest.split_once('/')?;
            backup::check_name(name).ok().map(|()| name.to_string())
        })
        .collect();
    names.dedup();
    Ok(names)
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
    let target = copy_target(model, name)?;
    let CopyPlace::Dir(dir) = &target.place else {
        return Err(anyhow!(
            "copy target '{name}' is an S3 bucket, not a directory"
        ));
    };
    let path = ctx.paths.host(dir);
    backup::check_mounted(&path, &ctx.paths.root)?;
    Ok(path)
}

pub(crate) async fn restore(ctx: &Context, args: &RestoreArgs) -> Result<()> {
    let model = Inputs::read(None, &ctx.paths)?.model()?;
    if let Some(name) = &args.name {
        backup::check_name(name).map_err(|e| BadInput(e.to_string()))?;
    }
    let s3 = match args.from.as_deref() {
        Some(n) => {
            let target = copy_target(&model, n)?;
            match &target.place {
                // One client for the command: every volume of `--all` is listed and fetched
                // through it.
                CopyPlace::S3(place) => Some((target, place, s3_client(ctx, place)?)),
                CopyPlace::Dir(_) => None,
            }
        }
        None => None,
    };
    let dest = if s3.is_some() {
        run::dest(&ctx.paths, &model, None)
    } else {
        archives_dir(ctx, &model, args.dest.as_deref(), args.from.as_deref())?
    };
    let sealed = args
        .from
        .as_deref()
        .and_then(|n| model.backup.copies.iter().find(|t| t.name.as_str() == n))
        .filter(|t| !t.encrypt_to.is_empty());
    let from = Origin {
        s3: s3.as_ref().map(|(t, p, c)| (*t, *p, c)),
        dest: &dest,
        sealed,
    };
    // `--all`: every volume the archives (or the copy) hold.
    let names = if let Some(n) = &args.name {
        vec![n.clone()]
    } else {
        let (names, place) = match from.s3 {
            Some((_, place, client)) => {
                let remote = backup::Remote {
                    client,
                    prefix: &place.prefix,
                };
                let names = s3_names(&remote, None).map_err(|e| match e.downcast::<S3Error>() {
                    Ok(s3e) => anyhow!("{s3e}{}", s3_hint(&s3e, ctx, place)),
                    Err(e) => e,
                })?;
                (names, format!("s3://{}/{}", client.bucket(), place.prefix))
            }
            // Directories there that hold no archive (yet) are not volumes to restore.
            None => (
                run::archive_names(&ctx.paths, &dest, None)?
                    .into_iter()
                    .filter(|n| match from.sealed {
                        Some(_) => backup::list_encrypted(&dest, n).is_ok_and(|a| !a.is_empty()),
                        None => backup::list_archives(&dest, n).is_ok_and(|a| !a.is_empty()),
                    })
                    .collect(),
                dest.display().to_string(),
            ),
        };
        if names.is_empty() {
            return Err(BadInput(format!("there are no archives to restore in {place}")).into());
        }
        names
    };
    // Decrypted copies wait in a directory of their own beside the local archives, removed
    // when the command ends however it ends.
    let mut fetched = Fetched(None);
    let mut picked: Vec<(String, std::path::PathBuf, Option<String>)> = Vec::new();
    for name in &names {
        let archive = pick_archive(ctx, &model, args, &from, name, &mut fetched)?;
        // `--archive` can name any file: it must be an archive of this volume.
        let manifest = backup::Manifest::read_for(&archive)?;
        if manifest.name != *name {
            return Err(BadInput(format!(
                "{} is an archive of '{}', not of '{name}'",
                archive.display(),
                manifest.name,
            ))
            .into());
        }
        let container =
            (name == GATEWAY || model.service(name).is_some()).then(|| ctx.names.object(name));
        picked.push((name.clone(), archive, container));
    }
    if args.dry_run {
        for (name, archive, container) in &picked {
            println!(
                "Would restore {} from {}",
                ctx.paths.vol(name).display(),
                archive.display()
            );
            if let Some(c) = container {
                println!("  stopping container {c} first and starting it again after");
            }
            println!(
                "  keeping the current directory as {name}.pre-restore-<timestamp> until the next backup"
            );
        }
        println!("Dry run: nothing was changed.");
        return Ok(());
    }
    let _lock = ctx.lock("restore", false, LOCK_WAIT)?;
    run::recover_restores(&ctx.paths)?;
    let engine = if picked.iter().any(|(_, _, c)| c.is_some()) {
        Some(crate::engine::connect().await?)
    } else {
        None
    };
    let drains = Drains::new(&model, &ctx.paths, &ctx.names, &Progress::new());
    let reports = run::restore_volumes(&ctx.paths, engine.as_ref(), &drains, &picked).await?;
    for ((_, archive, _), report) in picked.iter().zip(&reports) {
        println!(
            "Restored {} ({} entries) from {}",
            report.restored.display(),
            report.entries,
            archive.display()
        );
        for s in &report.skipped {
            println!("  not restored: {s}");
        }
        if let Some(prev) = &report.previous {
            println!(
                "The directory it replaced is kept as {} until the next backup.",
                prev.display()
            );
        }
    }
    Ok(())
}

/// Where `restore` takes archives from: an S3 copy target, or a directory (the local archives,
/// `--dest`, or a directory copy target, `sealed` when its copies are encrypted).
struct Origin<'a> {
    s3: Option<(&'a CopyTarget, &'a S3Place, &'a crate::s3::Client)>,
    dest: &'a Path,
    sealed: Option<&'a CopyTarget>,
}

/// The archive to restore volume `name` from (`--archive`, `--at`, else the newest good one),
/// fetched or decrypted into `fetched` first when it comes from a copy.
fn pick_archive(
    ctx: &Context,
    model: &crate::model::Model,
    args: &RestoreArgs,
    from: &Origin<'_>,
    name: &str,
    fetched: &mut Fetched,
) -> Result<std::path::PathBuf> {
    let (s3, dest, sealed) = (from.s3, from.dest, from.sealed);
    let archive = if let Some(a) = &args.archive {
        a.clone()
    } else if let Some((target, place, client)) = s3 {
        let encrypted = !target.encrypt_to.is_empty();
        let identity = match (&args.identity, encrypted) {
            (None, true) => {
                return Err(BadInput(format!(
                    "the copies on '{}' are encrypted: give your age identity with --identity FILE",
                    target.name
                ))
                .into())
            }
            (identity, _) => identity.as_deref().filter(|_| encrypted),
        };
        let remote = backup::Remote {
            client,
            prefix: &place.prefix,
        };
        let all: Vec<backup::RemoteArchive> = backup::list_remote(&remote, name, encrypted)
            .map_err(|e| match &e {
                backup::BackupError::S3(s3e) => anyhow!("{e}{}", s3_hint(s3e, ctx, place)),
                _ => e.into(),
            })?
            .into_iter()
            .filter(|a| a.complete)
            .collect();
        let copy = pick_copy(
            &all,
            args.at.as_deref(),
            |a| a.timestamp.to_string(),
            &format!("copy of '{name}'"),
            &remote.url(name),
        )?;
        let dir = dest.join(format!(".from-{}-{}", target.name, std::process::id()));
        fetched.0 = Some(dir.clone());
        println!("Downloading {}{}", remote.url(name), copy.file);
        let fetched = backup::fetch_s3(&remote, name, copy, identity, &dir)?;
        // A differential restores with its full: fetched beside it.
        if let Some(base) = backup::Manifest::read_for(&fetched)?.base {
            let wanted = |a: &&backup::RemoteArchive| {
                a.file.strip_suffix(".age").unwrap_or(&a.file) == base.archive
            };
            let full = all.iter().find(wanted).ok_or_else(|| {
                anyhow!(
                    "{} is a differential, and its full archive {} is not on '{}'",
                    copy.file,
                    base.archive,
                    target.name
                )
            })?;
            println!(
                "Downloading {}{} (its full archive)",
                remote.url(name),
                full.file
            );
            backup::fetch_s3(&remote, name, full, identity, &dir)?;
        }
        fetched
    } else if let Some(target) = sealed {
        let identity = args.identity.as_ref().ok_or_else(|| {
            BadInput(format!(
                "the copies on '{}' are encrypted: give your age identity with --identity FILE",
                target.name
            ))
        })?;
        let all = backup::list_encrypted(dest, name)?;
        let copy = pick_copy(
            &all,
            args.at.as_deref(),
            |a| a.timestamp.to_string(),
            &format!("encrypted copy of '{name}'"),
            &dest.display().to_string(),
        )?;
        let local = run::dest(&ctx.paths, model, None);
        let dir = local.join(format!(".from-{}-{}", target.name, std::process::id()));
        fetched.0 = Some(dir.clone());
        let archive = backup::fetch_encrypted(&copy.path, identity, &dir)?;
        if let Some(base) = backup::Manifest::read_for(&archive)?.base {
            let full = all
                .iter()
                .find(|a| a.path.file_name() == Some(format!("{}.age", base.archive).as_ref()))
                .ok_or_else(|| {
                    anyhow!(
                        "{} is a differential, and its full archive {} is not on '{}'",
                        copy.path.display(),
                        base.archive,
                        target.name
                    )
                })?;
            backup::fetch_encrypted(&full.path, identity, &dir)?;
        }
        archive
    } else {
        let all = backup::list_archives(dest, name)?;
        let pick = match &args.at {
            Some(ts) => all.iter().rev().find(|a| a.timestamp.to_string() == *ts),
            None => all.iter().rev().find(|a| a.good),
        };
        match pick {
            Some(a) => a.path.clone(),
            None if all.is_empty() => {
                if !run::known_names(&ctx.paths, dest)?
                    .iter()
                    .any(|n| n == name)
                {
                    return Err(run::no_such_name(&ctx.paths, dest, name)?);
                }
                let with_archives = run::archivable_subdirs(dest)?.0;
                let with_archives: Vec<&str> = with_archives.iter().map(String::as_str).collect();
                return Err(BadInput(format!(
                    "there is no archive of '{}' in {} yet (archives there: {})",
                    name,
                    dest.display(),
                    run::names_there(&with_archives)
                ))
                .into());
            }
            None => {
                let list: Vec<String> = all.iter().map(|a| a.timestamp.to_string()).collect();
                return Err(BadInput(format!(
                    "no good archive of '{}'{} in {} (there are: {})",
                    name,
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
    Ok(archive)
}

pub(crate) fn backups(ctx: &Context, args: &BackupsArgs) -> Result<()> {
    let model = Inputs::read(None, &ctx.paths)?.model()?;
    if let Some(n) = args.copy.as_deref() {
        let target = copy_target(&model, n)?;
        if let CopyPlace::S3(place) = &target.place {
            return s3_backups(ctx, target, place, args.name.as_deref());
        }
    }
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

/// `backups --copy NAME` for an S3 target: what the bucket holds.
fn s3_backups(
    ctx: &Context,
    target: &CopyTarget,
    place: &S3Place,
    only: Option<&str>,
) -> Result<()> {
    let client = s3_client(ctx, place)?;
    let remote = backup::Remote {
        client: &client,
        prefix: &place.prefix,
    };
    let with_hint = |e: backup::BackupError| match &e {
        backup::BackupError::S3(s3e) => anyhow!("{e}{}", s3_hint(s3e, ctx, place)),
        _ => e.into(),
    };
    let encrypted = !target.encrypt_to.is_empty();
    let names = s3_names(&remote, only).map_err(|e| match e.downcast::<S3Error>() {
        Ok(s3e) => anyhow!("{s3e}{}", s3_hint(&s3e, ctx, place)),
        Err(e) => e,
    })?;
    println!(
        "{:<16} {:<16}  {:>10}  {:<5} ARCHIVE",
        "NAME", "TIMESTAMP", "SIZE", "STATE"
    );
    for name in names {
        for a in backup::list_remote(&remote, &name, encrypted).map_err(with_hint)? {
            // As on a disk: an archive without its manifest is not a complete copy.
            let state = match (encrypted, a.complete) {
                (true, true) => "sealed",
                (false, true) => "ok",
                (_, false) => "BAD",
            };
            println!(
                "{:<16} {}  {:>10}  {:<5} s3://{}/{}",
                name,
                a.timestamp,
                human_bytes(a.size),
                state,
                client.bucket(),
                a.key
            );
        }
    }
    Ok(())
}

/// `verify --copy NAME` for an S3 target: each copy downloaded beside the local archives,
/// checked against its manifest and verified as an archive, then removed.
fn s3_verify(
    ctx: &Context,
    model: &crate::model::Model,
    target: &CopyTarget,
    place: &S3Place,
    only: Option<&str>,
) -> Result<()> {
    if !target.encrypt_to.is_empty() {
        return Err(BadInput(format!(
            "the copies on '{}' are encrypted and the Pi holds no key to open them: \
             `restore --from {} --identity FILE` checks one as it restores it",
            target.name, target.name
        ))
        .into());
    }
    let client = s3_client(ctx, place)?;
    let remote = backup::Remote {
        client: &client,
        prefix: &place.prefix,
    };
    let local = run::dest(&ctx.paths, model, None);
    let (mut good, mut bad) = (0, 0);
    for name in s3_names(&remote, only)? {
        let all = backup::list_remote(&remote, &name, false)?;
        for a in &all {
            let dir = local.join(format!(".from-{}-{}", target.name, std::process::id()));
            let _fetched = Fetched(Some(dir.clone()));
            let full_there = |base| {
                all.iter()
                    .any(|f| f.complete && f.base.is_none() && f.timestamp == base)
            };
            let checked = match (a.complete, a.base) {
                (false, _) => Err(anyhow!("its manifest is missing (an upload cut short?)")),
                (true, Some(base)) if !full_there(base) => Err(anyhow!(
                    "it is a differential, and its full archive (of {base}) is not in the bucket"
                )),
                (true, _) => backup::fetch_s3(&remote, &name, a, None, &dir)
                    .and_then(|p| backup::verify_bytes(&p))
                    .map_err(anyhow::Error::from),
            };
            match checked {
                Ok(r) => {
                    good += 1;
                    println!(
                        "ok    s3://{}/{} ({} entries)",
                        client.bucket(),
                        a.key,
                        r.entries
                    );
                }
                Err(e) => {
                    bad += 1;
                    println!("BAD   s3://{}/{}: {e:#}", client.bucket(), a.key);
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

pub(crate) fn verify(ctx: &Context, args: &BackupsArgs) -> Result<()> {
    let model = Inputs::read(None, &ctx.paths)?.model()?;
    if let Some(n) = args.copy.as_deref() {
        let target = copy_target(&model, n)?;
        if let CopyPlace::S3(place) = &target.place {
            return s3_verify(ctx, &model, target, place, args.name.as_deref());
        }
    }
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

/// The copy `--at` names (by its timestamp), else the newest; a usage error listing what is
/// there when there is none.
fn pick_copy<'a, T>(
    all: &'a [T],
    at: Option<&str>,
    stamp: impl Fn(&T) -> String,
    what: &str,
    place: &str,
) -> Result<&'a T> {
    let pick = match at {
        Some(ts) => all.iter().rev().find(|a| stamp(a) == ts),
        None => all.last(),
    };
    pick.ok_or_else(|| {
        let list: Vec<String> = all.iter().map(&stamp).collect();
        BadInput(format!(
            "no {what}{} in {place} (there are: {})",
            at.map(|t| format!(" at {t}")).unwrap_or_default(),
            if list.is_empty() {
                "none".to_string()
            } else {
                list.join(", ")
            }
        ))
        .into()
    })
}
