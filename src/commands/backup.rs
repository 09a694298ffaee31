//! `pi-setup backup`, `restore`, `backups`, `verify`: the volume directories under `/var/vol`
//! archived one by one, each service kept consistent its own way (stop / live / exec), and
//! brought back with its container stopped around the swap.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _, Result};
use futures_util::{stream, StreamExt};

use crate::backup::{self, ArchiveOptions, ArchiveProgress, Codec, RetentionPolicy};
use crate::cli::{BackupArgs, BackupsArgs, RestoreArgs};
use crate::commands::{Context, LOCK_WAIT};
use crate::engine::Engine;
use crate::error::BadInput;
use crate::host;
use crate::input::Inputs;
use crate::model::{BackupMode, Model, GATEWAY};
use crate::progress::Progress;
use crate::report::{human_bytes, human_duration};

/// Why a directory under /var/vol was not archived.
const UNUSABLE: &str = "its name cannot name an archive: rename it with letters, digits, \
                        '-', '_' and '.' only, not starting with '.'";

/// One volume directory and how to keep it consistent while it is archived.
struct Volume {
    name: String,
    mode: BackupMode,
    /// `None` for directories no service claims.
    container: Option<String>,
}

impl Volume {
    fn mode_label(&self) -> String {
        match &self.mode {
            BackupMode::Stop => "stop".into(),
            BackupMode::Live => "live".into(),
            BackupMode::Exec(cmds) => format!("exec ({} command(s))", cmds.len()),
        }
    }
}

/// Every directory under /var/vol: the gateway's (live: certificates), each service's (its
/// mode), and directories no service claims (live). Restore leftovers and hidden directories
/// are not volumes. Second: directories whose names cannot name an archive, as printable
/// paths; they are reported, never silently left out.
fn volumes(ctx: &Context, model: &Model) -> Result<(Vec<Volume>, Vec<String>)> {
    let (names, unusable) = archivable_subdirs(&ctx.paths.vol_root())?;
    let vols = names
        .into_iter()
        .map(|name| {
            let (mode, container) = if name == GATEWAY {
                (BackupMode::Live, Some(ctx.names.object(GATEWAY)))
            } else if let Some(s) = model.service(&name) {
                (s.backup.clone(), Some(ctx.names.object(&name)))
            } else {
                (BackupMode::Live, None)
            };
            Volume {
                name,
                mode,
                container,
            }
        })
        .collect();
    Ok((vols, unusable))
}

/// `--dest` as given, else the profile's `backup.dest` under `--root`.
fn dest(ctx: &Context, model: &Model, arg: &Option<PathBuf>) -> PathBuf {
    arg.clone()
        .unwrap_or_else(|| ctx.paths.host(&model.backup.dest))
}

fn policy(model: &Model) -> RetentionPolicy {
    let b = &model.backup;
    RetentionPolicy {
        keep_last: b.keep_last as usize,
        keep_daily: b.keep_daily as usize,
        keep_weekly: b.keep_weekly as usize,
        keep_monthly: b.keep_monthly as usize,
    }
}

pub async fn backup(ctx: &Context, args: &BackupArgs) -> Result<()> {
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
    let (mut vols, mut unusable) = volumes(ctx, &model)?;
    if !args.names.is_empty() {
        unusable.clear();
        for n in &args.names {
            if !vols.iter().any(|v| &v.name == n) {
                let there: Vec<&str> = vols.iter().map(|v| v.name.as_str()).collect();
                return Err(BadInput(format!(
                    "there is no volume directory {} (volumes: {})",
                    ctx.paths.vol(n).display(),
                    names_there(&there)
                ))
                .into());
            }
        }
        vols.retain(|v| args.names.contains(&v.name));
    }
    let dest = dest(ctx, &model, &args.dest);
    if resolved(&dest).starts_with(resolved(&ctx.paths.vol_root())) {
        return Err(BadInput(format!(
            "the backup destination {} is inside /var/vol, which is what gets backed up",
            dest.display()
        ))
        .into());
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
            println!("  NOT backed up: {u} ({UNUSABLE})");
        }
        println!("Dry run: nothing was changed.");
        return Ok(());
    }
    let _lock = ctx.lock("backup", false, LOCK_WAIT)?;
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
        println!("{u} FAILED {UNUSABLE}");
        failed.push(u.clone());
    }
    let mut total_in = 0u64;
    let mut total_out = 0u64;
    // Two volumes at a time: each compresses on every core, and while one waits (for its
    // container to stop, its exec hooks, a slow disk, its last blocks) the other keeps the cores
    // busy.
    let mut runs = stream::iter(vols.iter())
        .map(|v| {
            let (engine, dest, opts, progress) = (&engine, &dest, &opts, &progress);
            async move { (v, backup_one(ctx, v, engine, dest, opts, progress).await) }
        })
        .buffer_unordered(2);
    while let Some((v, result)) = runs.next().await {
        match result {
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
                match backup::prune(&dest, &v.name, &policy(&model)) {
                    Ok(deleted) => {
                        for d in deleted {
                            println!("{:<16}       pruned {}", "", d.display());
                        }
                    }
                    Err(e) => println!("{:<16}       pruning failed: {e}", ""),
                }
                remove_pre_restore(ctx, &v.name);
            }
            Err(e) => {
                println!("{:<16} FAILED {e:#}", v.name);
                let full = e.chain().any(|c| {
                    c.downcast_ref::<backup::BackupError>()
                        .is_some_and(|b| b.is_disk_full())
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
    }
    drop(runs);
    let all = vols.len() + unusable.len();
    println!(
        "\n{} of {} volume(s) backed up in {} ({} read, {} written) to {}",
        all - failed.len(),
        all,
        human_duration(started.elapsed()),
        human_bytes(total_in),
        human_bytes(total_out),
        dest.display()
    );
    if failed.is_empty() {
        Ok(())
    } else {
        Err(anyhow!("backup failed for: {}", failed.join(", ")))
    }
}

/// Archives one volume, stopping or preparing its container as its mode says. A container
/// stopped here is started again whatever happened to the archive.
async fn backup_one(
    ctx: &Context,
    v: &Volume,
    engine: &Result<crate::engine::Docker, crate::engine::EngineError>,
    dest: &Path,
    opts: &ArchiveOptions,
    progress: &Progress,
) -> Result<backup::ArchiveReport> {
    let src = ctx.paths.vol(&v.name);
    let archive = || async {
        let counter = Arc::new(ArchiveProgress::default());
        let opts = ArchiveOptions {
            progress: Some(counter.clone()),
            ..opts.clone()
        };
        let (src, dest, name) = (src.clone(), dest.to_path_buf(), v.name.clone());
        // The archive engine is blocking and uses its own threads.
        let mut task = tokio::task::spawn_blocking(move || {
            match backup::archive_dir(&src, &dest, &name, &opts) {
                // Archive names have one-second resolution: a second run within the same second
                // waits for the next one rather than failing.
                Err(backup::BackupError::AlreadyExists(_)) => {
                    std::thread::sleep(Duration::from_millis(1000));
                    backup::archive_dir(&src, &dest, &name, &opts)
                }
                other => other,
            }
        });
        let bar = progress.volume(&v.name, &v.mode_label());
        let result = loop {
            tokio::select! {
                r = &mut task => break r,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    bar.update(counter.done.load(Ordering::Relaxed), counter.total.load(Ordering::Relaxed));
                }
            }
        };
        bar.finish();
        result
    };
    let running = match (&v.container, engine) {
        (Some(c), Ok(e)) => e.container(c).await?.is_some_and(|i| i.running),
        // Without Docker there is no telling whether the service is writing: archiving it
        // live could store a torn database, so a volume that needs its container fails.
        (Some(c), Err(err)) if v.mode != BackupMode::Live => {
            return Err(anyhow!(
                "cannot {} container {c} for its {} backup: {err}",
                if v.mode == BackupMode::Stop {
                    "stop"
                } else {
                    "prepare"
                },
                v.mode_label()
            ));
        }
        _ => false,
    };
    match (&v.mode, running) {
        (BackupMode::Stop, true) => {
            let (Some(c), Ok(e)) = (&v.container, engine) else {
                unreachable!("running implies both")
            };
            // Noted before stopping: if this run dies (SIGKILL, power loss) before starting
            // the container again, `heal` (every minute, and after boot) starts it.
            let marker = ctx.paths.stopped_for_backup(c);
            host::write_atomic(&marker, b"", 0o644)?;
            e.stop(c, 30)
                .await
                .with_context(|| format!("stopping {c} for its backup"))?;
            let result = archive().await;
            let restarted = e
                .start(c)
                .await
                .with_context(|| format!("starting {c} again after its backup"));
            if restarted.is_ok() {
                host::remove_file(&marker)?;
            }
            let report = result.context("archive task")??;
            restarted?;
            Ok(report)
        }
        (BackupMode::Exec(cmds), true) => {
            let (Some(c), Ok(e)) = (&v.container, engine) else {
                unreachable!("running implies both")
            };
            for cmd in cmds {
                e.exec_shell(c, cmd).await.context("backup exec hook")?;
            }
            Ok(archive().await.context("archive task")??)
        }
        (BackupMode::Exec(_), false) if v.container.is_some() => Err(anyhow!(
            "its backup mode is exec, but container {} is not running (the hook cannot run)",
            v.container.as_deref().unwrap_or_default()
        )),
        // Live, or a stopped container: the directory is quiet or meant to be read live.
        _ => Ok(archive().await.context("archive task")??),
    }
}

/// A restore keeps the replaced directory as `NAME.pre-restore-<ts>` until the next good backup.
fn remove_pre_restore(ctx: &Context, name: &str) {
    let prefix = format!("{name}.pre-restore-");
    if let Ok(entries) = std::fs::read_dir(ctx.paths.vol_root()) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                if let Err(err) = host::remove_tree(&e.path()) {
                    println!(
                        "{:<16}       could not remove {}: {err}",
                        "",
                        e.path().display()
                    );
                }
            }
        }
    }
}

pub async fn restore(ctx: &Context, args: &RestoreArgs) -> Result<()> {
    let model = Inputs::read(None, &ctx.paths)?.model()?;
    backup::check_name(&args.name).map_err(|e| BadInput(e.to_string()))?;
    let dest = dest(ctx, &model, &args.dest);
    let archive = match &args.archive {
        Some(a) => a.clone(),
        None => {
            let all = backup::list_archives(&dest, &args.name)?;
            let pick = match &args.at {
                Some(ts) => all.iter().rev().find(|a| a.timestamp.to_string() == *ts),
                None => all.iter().rev().find(|a| a.good),
            };
            match pick {
                Some(a) => a.path.clone(),
                None if all.is_empty() => {
                    if !known_names(ctx, &dest)?.contains(&args.name) {
                        return Err(no_such_name(ctx, &dest, &args.name)?);
                    }
                    let with_archives = archivable_subdirs(&dest)?.0;
                    let with_archives: Vec<&str> =
                        with_archives.iter().map(String::as_str).collect();
                    return Err(BadInput(format!(
                        "there is no archive of '{}' in {} yet (archives there: {})",
                        args.name,
                        dest.display(),
                        names_there(&with_archives)
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
    // A bad archive must not cost the service any downtime: read it back while it still runs.
    let a = archive.clone();
    tokio::task::spawn_blocking(move || backup::verify_archive(&a))
        .await
        .context("verify task")??;
    let engine = match &container {
        Some(_) => Some(crate::engine::connect().await?),
        None => None,
    };
    let mut was_running = false;
    if let (Some(c), Some(e)) = (&container, &engine) {
        was_running = e.container(c).await?.is_some_and(|i| i.running);
        if was_running {
            // As for a backup: if this run dies before starting it again, `heal` does.
            host::write_atomic(&ctx.paths.stopped_for_backup(c), b"", 0o644)?;
            e.stop(c, 30)
                .await
                .with_context(|| format!("stopping {c} for the restore"))?;
        }
    }
    let (a, parent, name) = (archive.clone(), ctx.paths.vol_root(), args.name.clone());
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let result = tokio::task::spawn_blocking(move || {
        let opts = backup::RestoreOptions {
            verified: true,
            ..Default::default()
        };
        backup::restore_archive(&a, &parent, &name, &opts)
    })
    .await
    .context("restore task")?;
    let restarted = match (&container, &engine, was_running) {
        (Some(c), Some(e), true) => e
            .start(c)
            .await
            .with_context(|| format!("starting {c} again after the restore"))
            .and_then(|()| {
                host::remove_file(&ctx.paths.stopped_for_backup(c))?;
                Ok(())
            }),
        _ => Ok(()),
    };
    // The restore's own error first: it says what happened to the data.
    let report = result?;
    restarted?;
    println!(
        "Restored {} ({} entries) from {}",
        report.restored.display(),
        report.entries,
        archive.display()
    );
    if let Some(prev) = report.previous {
        println!(
            "The directory it replaced is kept as {} until the next backup.",
            prev.display()
        );
    }
    Ok(())
}

pub fn backups(ctx: &Context, args: &BackupsArgs) -> Result<()> {
    let model = Inputs::read(None, &ctx.paths)?.model()?;
    let dest = dest(ctx, &model, &args.dest);
    let names = archive_names(ctx, &dest, args.name.as_deref())?;
    println!(
        "{:<16} {:<16}  {:>10}  {:<5} ARCHIVE",
        "NAME", "TIMESTAMP", "SIZE", "STATE"
    );
    for name in names {
        for a in backup::list_archives(&dest, &name)? {
            let size = std::fs::metadata(&a.path).map(|m| m.len()).unwrap_or(0);
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

pub fn verify(ctx: &Context, args: &BackupsArgs) -> Result<()> {
    let model = Inputs::read(None, &ctx.paths)?.model()?;
    let dest = dest(ctx, &model, &args.dest);
    let (mut good, mut bad) = (0, 0);
    for name in archive_names(ctx, &dest, args.name.as_deref())? {
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

/// Volume names that have an archive directory under `dest`; with `only`, just that one (none
/// when it is a volume that has no archives yet). A name that is neither is an error: a typo
/// must not look like "no archives".
fn archive_names(ctx: &Context, dest: &Path, only: Option<&str>) -> Result<Vec<String>> {
    let with_archives = archivable_subdirs(dest)?.0;
    let Some(n) = only else {
        return Ok(with_archives);
    };
    if with_archives.iter().any(|a| a == n) {
        Ok(vec![n.to_string()])
    } else if known_names(ctx, dest)?.iter().any(|k| k == n) {
        Ok(Vec::new())
    } else {
        Err(no_such_name(ctx, dest, n)?)
    }
}

/// Every name a volume command can mean, sorted, once each: the volume directories under
/// /var/vol and the archive directories under `dest` (a volume deleted since it was backed up
/// can still be restored).
fn known_names(ctx: &Context, dest: &Path) -> Result<Vec<String>> {
    let mut names = archivable_subdirs(&ctx.paths.vol_root())?.0;
    names.extend(archivable_subdirs(dest)?.0);
    names.sort();
    names.dedup();
    Ok(names)
}

/// The usage error for a name that is neither a volume nor has archives, with the names that
/// exist, so a typo is seen as one.
fn no_such_name(ctx: &Context, dest: &Path, name: &str) -> Result<anyhow::Error> {
    let known = known_names(ctx, dest)?;
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    Ok(BadInput(format!(
        "no archives or volume named '{name}' in {} or {} (names there: {})",
        dest.display(),
        ctx.paths.vol_root().display(),
        names_there(&known)
    ))
    .into())
}

fn names_there(names: &[&str]) -> String {
    if names.is_empty() {
        "none yet".to_string()
    } else {
        names.join(", ")
    }
}

/// Sub-directories, sorted: those whose names can name archives (see [`backup::check_name`]),
/// and the others' paths, escaped for printing. Hidden directories (a restore's temporary
/// directory) and restore leftovers (`NAME.pre-restore-…`) are neither.
fn archivable_subdirs(dir: &Path) -> Result<(Vec<String>, Vec<String>)> {
    let (mut names, mut unusable) = (Vec::new(), Vec::new());
    for raw in host::subdirectories(dir)? {
        let lossy = raw.to_string_lossy();
        if lossy.starts_with('.') || lossy.contains(".pre-restore-") {
            continue;
        }
        match raw.to_str() {
            Some(n) if backup::check_name(n).is_ok() => names.push(n.to_string()),
            _ => unusable.push(format!("{:?}", dir.join(&raw))),
        }
    }
    Ok((names, unusable))
}

/// `path` as the kernel would resolve it: absolute, `..` applied, and symlinks followed as far
/// as the path exists (`/var/vol/../vol/x`, a relative path, or a symlink into /var/vol all
/// come out under /var/vol).
fn resolved(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    // The deepest ancestor that exists, as the kernel resolves it; then the rest, lexically.
    let (mut real, rest) = abs
        .ancestors()
        .find_map(|a| Some((a.canonicalize().ok()?, abs.strip_prefix(a).ok()?)))
        .unwrap_or_else(|| (PathBuf::new(), abs.as_path()));
    for part in rest.components() {
        match part {
            std::path::Component::ParentDir => {
                real.pop();
            }
            std::path::Component::CurDir => {}
            other => real.push(other),
        }
    }
    real
}
