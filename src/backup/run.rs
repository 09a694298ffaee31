//! Backup and restore as commands run them: which directories under /var/vol are volumes, each
//! kept consistent its own way while it is archived (its container stopped, or its exec hooks
//! run first, or read live), two at a time, pruned after; and a restore with its container
//! stopped around the swap. The library (archive, verify, restore, retention) is beside it.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use futures_util::{stream, StreamExt};

use crate::backup::timestamp::Timestamp;
use crate::backup::{
    archive_dir, check_name, prepare_restores, prune, ArchiveOptions, ArchiveProgress,
    ArchiveReport, BackupError, RestoreOptions, RestoreReport, RetentionPolicy,
};
use crate::desired::ObjectNames;
use crate::drain::Drains;
use crate::engine::{Engine, EngineError};
use crate::error::BadInput;
use crate::host;
use crate::host::paths::Paths;
use crate::model::{BackupMode, Model, GATEWAY};
use crate::progress::Progress;

/// Why a directory under /var/vol was not archived.
pub(crate) const UNUSABLE: &str =
    "its name cannot name an archive: rename it with letters, digits, \
                        '-', '_' and '.' only, not starting with '.'";

/// One volume directory and how to keep it consistent while it is archived.
pub(crate) struct Volume {
    pub(crate) name: String,
    pub(crate) mode: BackupMode,
    /// `None` for directories no service claims.
    pub(crate) container: Option<String>,
}

impl Volume {
    pub(crate) fn mode_label(&self) -> String {
        match &self.mode {
            BackupMode::Stop => "stop".into(),
            BackupMode::Live => "live".into(),
            BackupMode::Exec(cmds) => format!("exec ({} command(s))", cmds.len()),
        }
    }
}

/// Every directory under /var/vol: the gateway's (live: certificates), each service's (its
/// mode), and directories no service claims (live). Restore leftovers are not volumes.
/// Second: directories whose names cannot name an archive (hidden ones too), as printable
/// paths; they are reported, never silently left out.
pub(crate) fn volumes(
    paths: &Paths,
    objects: &ObjectNames,
    model: &Model,
) -> Result<(Vec<Volume>, Vec<String>)> {
    let (names, unusable) = archivable_subdirs(&paths.vol_root())?;
    let vols = names
        .into_iter()
        .map(|name| {
            let (mode, container) = if name == GATEWAY {
                (BackupMode::Live, Some(objects.object(GATEWAY)))
            } else if let Some(s) = model.service(&name) {
                (s.backup.clone(), Some(objects.object(&name)))
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
pub(crate) fn dest(paths: &Paths, model: &Model, arg: Option<&Path>) -> PathBuf {
    arg.map_or_else(|| paths.host(&model.backup.dest), Path::to_path_buf)
}

pub(crate) fn policy(model: &Model) -> RetentionPolicy {
    let b = &model.backup;
    RetentionPolicy {
        keep_last: b.keep_last as usize,
        keep_daily: b.keep_daily as usize,
        keep_weekly: b.keep_weekly as usize,
        keep_monthly: b.keep_monthly as usize,
    }
}

/// Runs `work` with `container` stopped, and starts it again whatever `work` returned. Noted for
/// `heal` before stopping: if this run dies (SIGKILL, power loss) before starting the container
/// again, `heal` (every minute, and after boot) starts it. Fails before `work` if the container
/// cannot be stopped; otherwise gives `work`'s output and whether the start went well.
///
/// A routed service is drained through the gateway first, and routed to again once it has
/// started (`crate::drain`), so no request it was answering is cut.
pub(crate) async fn while_stopped<T>(
    engine: &impl Engine,
    paths: &Paths,
    drains: &Drains,
    container: &str,
    why: &str,
    work: impl Future<Output = T>,
) -> Result<(T, Result<()>)> {
    let marker = paths.stopped_for_backup(container);
    host::write_atomic(&marker, b"", 0o644)?;
    drains.before_stop(engine, container).await;
    let stopped = engine
        .stop(container, 30)
        .await
        .with_context(|| format!("stopping {container} for {why}"));
    if let Err(e) = stopped {
        drains.release(engine, container).await;
        return Err(e);
    }
    let out = work.await;
    let restarted = engine
        .start(container)
        .await
        .with_context(|| format!("starting {container} again after {why}"))
        .and_then(|()| Ok(host::remove_file(&marker).map(|_| ())?));
    drains.release(engine, container).await;
    Ok((out, restarted))
}

/// Where archives go, how they are written, and which are kept.
pub(crate) struct Job {
    pub(crate) dest: PathBuf,
    pub(crate) opts: ArchiveOptions,
    pub(crate) policy: RetentionPolicy,
}

/// What became of one volume.
pub(crate) struct Outcome<'a> {
    pub(crate) volume: &'a Volume,
    pub(crate) archived: Result<ArchiveReport>,
    /// Archives retention deleted after this one was written (or why it could not).
    pub(crate) pruned: Result<Vec<PathBuf>>,
}

/// Archives each volume into `dest` (two at a time: each compresses on every core, and while one
/// waits — for its container to stop, its exec hooks, a slow disk, its last blocks — the other
/// keeps the cores busy), prunes after each good archive, and hands each outcome to `report`
/// as it comes. `engine` is an error when Docker cannot be reached: volumes that need their
/// container then fail, the others are archived.
pub(crate) async fn back_up_all(
    paths: &Paths,
    engine: &Result<impl Engine, EngineError>,
    vols: &[Volume],
    job: &Job,
    progress: &Progress,
    drains: &Drains,
    mut report: impl FnMut(Outcome),
) {
    let Job { dest, opts, policy } = job;
    let mut runs = stream::iter(vols.iter())
        .map(|v| async move {
            let archived = back_up_one(paths, v, engine, drains, dest, opts, progress).await;
            (v, archived)
        })
        .buffer_unordered(2);
    while let Some((volume, archived)) = runs.next().await {
        let pruned = match &archived {
            Ok(_) => {
                remove_pre_restore(paths, &volume.name);
                prune(dest, &volume.name, policy).map_err(Into::into)
            }
            Err(_) => Ok(Vec::new()),
        };
        report(Outcome {
            volume,
            archived,
            pruned,
        });
    }
}

/// Archives one volume, stopping or preparing its container as its mode says. A container
/// stopped here is started again whatever happened to the archive.
async fn back_up_one(
    paths: &Paths,
    v: &Volume,
    engine: &Result<impl Engine, EngineError>,
    drains: &Drains,
    dest: &Path,
    opts: &ArchiveOptions,
    progress: &Progress,
) -> Result<ArchiveReport> {
    let src = paths.vol(&v.name);
    let archive = || async {
        let counter = Arc::new(ArchiveProgress::default());
        let opts = ArchiveOptions {
            progress: Some(counter.clone()),
            ..opts.clone()
        };
        let (src, dest, name) = (src.clone(), dest.to_path_buf(), v.name.clone());
        // The archive engine is blocking and uses its own threads.
        let mut task =
            tokio::task::spawn_blocking(move || archive_with_retry(&src, &dest, &name, &opts));
        let bar = progress.volume(&v.name, &v.mode_label());
        let result = loop {
            tokio::select! {
                r = &mut task => break r,
                () = tokio::time::sleep(Duration::from_millis(200)) => {
                    bar.update(counter.done.load(Ordering::Relaxed), counter.total.load(Ordering::Relaxed));
                }
            }
        };
        bar.finish();
        result
    };
    let running = match (&v.container, engine) {
        (Some(c), Ok(e)) => e.container(c).await?.is_some_and(|i| i.running()),
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
            let (report, restarted) =
                while_stopped(e, paths, drains, c, "its backup", archive()).await?;
            let report = report.context("archive task")??;
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

/// [`archive_dir`], blocking. Archive names have one-second resolution: a second run within the
/// same second waits for the next one rather than failing.
pub(crate) fn archive_with_retry(
    src: &Path,
    dest: &Path,
    name: &str,
    opts: &ArchiveOptions,
) -> Result<ArchiveReport, BackupError> {
    match archive_dir(src, dest, name, opts) {
        Err(BackupError::AlreadyExists(_)) => {
            std::thread::sleep(Duration::from_secs(1));
            archive_dir(src, dest, name, opts)
        }
        other => other,
    }
}

/// Finishes or undoes any restore a crash interrupted (see
/// [`crate::backup::restore::recover_interrupted`]), printing what it did. Every command that
/// reads or changes volumes calls it first, with the lock held: a volume must never stay
/// missing, nor a half-extracted tree stay behind.
pub(crate) fn recover_restores(paths: &Paths) -> Result<()> {
    let vol_root = paths.vol_root();
    let done = super::restore::recover_interrupted(&vol_root).with_context(|| {
        format!(
            "recovering an interrupted restore in {}",
            vol_root.display()
        )
    })?;
    for line in done {
        println!("{line}");
    }
    Ok(())
}

/// Volumes the model says are there and are not, each with a message: the gateway's, and each
/// service's that has something mounted or a layout. A backup that quietly left them out would
/// report success over lost data. (A directory no service claims is the user's to delete.)
pub(crate) fn missing_volumes(paths: &Paths, model: &Model) -> Vec<(String, String)> {
    let mut expected: Vec<(String, String)> = vec![(GATEWAY.to_string(), "the gateway's".into())];
    for s in &model.services {
        if !s.mounts.is_empty() || !s.layout.dirs.is_empty() {
            expected.push((s.name.to_string(), format!("service {}'s", s.name)));
        }
    }
    expected
        .into_iter()
        .filter(|(name, _)| !paths.vol(name).is_dir())
        .map(|(name, whose)| {
            let why = format!(
                "{whose} volume directory {} is missing: nothing to back up. Restore it \
                 (pi-setup restore {name}), or run pi-setup apply to recreate it empty",
                paths.vol(&name).display()
            );
            (name, why)
        })
        .collect()
}

/// A restore keeps the replaced directory as `NAME.pre-restore-<ts>` until the next good backup.
pub(crate) fn remove_pre_restore(paths: &Paths, name: &str) {
    let prefix = format!("{name}.pre-restore-");
    if let Ok(entries) = std::fs::read_dir(paths.vol_root()) {
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

/// Restores volume `name` from `archive`: extracted and checked beside the volume while the
/// service still runs (a bad archive costs it no downtime, and a good one only the swap), then
/// its container (if any) stopped around the swap.
pub(crate) async fn restore_volume(
    paths: &Paths,
    engine: Option<&impl Engine>,
    drains: &Drains,
    container: Option<&str>,
    archive: &Path,
    name: &str,
) -> Result<RestoreReport> {
    let item = (
        name.to_string(),
        archive.to_path_buf(),
        container.map(str::to_string),
    );
    let mut reports = restore_volumes(paths, engine, drains, &[item]).await?;
    Ok(reports.remove(0))
}

/// Swaps a prepared tree in for its volume, with `container` (if it runs) stopped around the
/// swap and started again after.
async fn swap_in(
    paths: &Paths,
    engine: Option<&impl Engine>,
    drains: &Drains,
    container: Option<&str>,
    prepared: super::restore::Prepared,
) -> Result<RestoreReport> {
    let swap = async move {
        tokio::task::spawn_blocking(move || prepared.swap_in())
            .await
            .context("restore task")
    };
    let running = match (container, engine) {
        (Some(c), Some(e)) => e.container(c).await?.is_some_and(|i| i.running()),
        _ => false,
    };
    match (container, engine) {
        (Some(c), Some(e)) if running => {
            let (restored, restarted) =
                while_stopped(e, paths, drains, c, "the restore", swap).await?;
            // The restore's own error first: it says what happened to the data.
            let report = restored??;
            restarted?;
            Ok(report)
        }
        _ => Ok(swap.await??),
    }
}

/// Restores each `(name, archive, container)` (one for `restore NAME`, every volume for
/// `restore --all`). Every archive is extracted and
/// checked beside its volume while the services still run, then all are flushed to disk at
/// once; only then is each swapped in, its container (if running) stopped around its own swap.
/// A bad archive changes nothing at all; a swap that fails stops there, with the volumes before
/// it restored (the error says which) and the rest untouched.
pub(crate) async fn restore_volumes(
    paths: &Paths,
    engine: Option<&impl Engine>,
    drains: &Drains,
    items: &[(String, PathBuf, Option<String>)],
) -> Result<Vec<RestoreReport>> {
    let parent = paths.vol_root();
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let list: Vec<(PathBuf, String)> = items
        .iter()
        .map(|(name, archive, _)| (archive.clone(), name.clone()))
        .collect();
    let prepared = tokio::task::spawn_blocking(move || {
        let refs: Vec<(&Path, &str)> = list
            .iter()
            .map(|(a, n)| (a.as_path(), n.as_str()))
            .collect();
        prepare_restores(&refs, &parent, &RestoreOptions::default())
    })
    .await
    .context("restore task")??;
    let mut reports = Vec::new();
    for (prepared, (name, _, container)) in prepared.into_iter().zip(items) {
        let done = swap_in(paths, engine, drains, container.as_deref(), prepared).await;
        match done {
            Ok(r) => reports.push(r),
            Err(e) if items.len() == 1 => return Err(e),
            Err(e) => {
                let restored: Vec<String> = reports
                    .iter()
                    .map(|r| r.restored.display().to_string())
                    .collect();
                return Err(e.context(format!(
                    "restoring '{name}' (restored before it: {}; not restored: '{name}' and the volumes after it)",
                    if restored.is_empty() { "none".to_string() } else { restored.join(", ") }
                )));
            }
        }
    }
    Ok(reports)
}

/// Volume names that have an archive directory under `dest`; with `only`, just that one (none
/// when it is a volume that has no archives yet). A name that is neither is an error: a typo
/// must not look like "no archives".
pub(crate) fn archive_names(paths: &Paths, dest: &Path, only: Option<&str>) -> Result<Vec<String>> {
    let with_archives = archivable_subdirs(dest)?.0;
    let Some(n) = only else {
        return Ok(with_archives);
    };
    if with_archives.iter().any(|a| a == n) {
        Ok(vec![n.to_string()])
    } else if known_names(paths, dest)?.iter().any(|k| k == n) {
        Ok(Vec::new())
    } else {
        Err(no_such_name(paths, dest, n)?)
    }
}

/// Every name a volume command can mean, sorted, once each: the volume directories under
/// /var/vol and the archive directories under `dest` (a volume deleted since it was backed up
/// can still be restored).
pub(crate) fn known_names(paths: &Paths, dest: &Path) -> Result<Vec<String>> {
    let mut names = archivable_subdirs(&paths.vol_root())?.0;
    names.extend(archivable_subdirs(dest)?.0);
    names.sort();
    names.dedup();
    Ok(names)
}

/// The usage error for a name that is neither a volume nor has archives, with the names that
/// exist, so a typo is seen as one.
pub(crate) fn no_such_name(paths: &Paths, dest: &Path, name: &str) -> Result<anyhow::Error> {
    let known = known_names(paths, dest)?;
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    Ok(BadInput(format!(
        "no archives or volume named '{name}' in {} or {} (names there: {})",
        dest.display(),
        paths.vol_root().display(),
        names_there(&known)
    ))
    .into())
}

pub(crate) fn names_there(names: &[&str]) -> String {
    if names.is_empty() {
        "none yet".to_string()
    } else {
        names.join(", ")
    }
}

/// Sub-directories, sorted: those whose names can name archives (see [`check_name`]),
/// and the others' paths (hidden ones among them), escaped for printing. Only what restores
/// leave is neither (see [`is_restore_leftover`]).
pub(crate) fn archivable_subdirs(dir: &Path) -> Result<(Vec<String>, Vec<String>)> {
    let (mut names, mut unusable) = (Vec::new(), Vec::new());
    for raw in host::subdirectories(dir)? {
        let lossy = raw.to_string_lossy();
        if is_restore_leftover(&lossy) || lossy == STAGING {
            continue;
        }
        match raw.to_str() {
            Some(n) if check_name(n).is_ok() => names.push(n.to_string()),
            // Debug on purpose: it escapes what cannot be printed as it is.
            #[allow(clippy::unnecessary_debug_formatting)]
            _ => unusable.push(format!("{:?}", dir.join(&raw))),
        }
    }
    Ok((names, unusable))
}

/// Beside the local archives: encrypted copies waiting for their upload to an S3 target
/// (`.copy-staging/<target>/<name>/`), kept until it completes so a cut upload can resume.
pub(crate) const STAGING: &str = ".copy-staging";

/// The directory a restore replaced (`NAME.pre-restore-<ts>`, removed by the next good backup)
/// or a restore's temporary one (`.NAME.restore-<ts>`, left only by a killed restore).
fn is_restore_leftover(dir_name: &str) -> bool {
    let stamped = |marker: &str| {
        dir_name
            .rsplit_once(marker)
            .is_some_and(|(_, ts)| Timestamp::parse(ts).is_some())
    };
    stamped(".pre-restore-") || (dir_name.starts_with('.') && stamped(".restore-"))
}

/// `path` as the kernel would resolve it: absolute, `..` applied, and symlinks followed as far
/// as the path exists (`/var/vol/../vol/x`, a relative path, or a symlink into /var/vol all
/// come out under /var/vol).
pub(crate) fn resolved(path: &Path) -> PathBuf {
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
