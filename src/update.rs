//! `pi-setup update`: moves services to newer images of the tags they use — pulled again (a
//! moved tag: same name, new image ID), or rebuilt when their build context changed — one
//! service at a time, in start order. Each changed service's volume is archived first (the
//! backup format, kept consistent as its `backup` mode says), its container recreated, and
//! watched until healthy; one that is not is put back: the image it ran (kept under a rollback
//! tag, so no registry is needed) and its volume as the archive has it (a migration the new
//! version ran is undone too). `check` says what would change and touches nothing.
//!
//! Why the old image gets a tag of its own before the pull: the pull moves the service's tag
//! to the new image, and the old one would be a dangling image only the old container holds;
//! once that container is removed, `docker image prune` could take it, and the rollback with it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use crate::backup::{run, ArchiveOptions};
use crate::commands::Context;
use crate::desired::{self, ContainerSpec, Desired};
use crate::drain::Drains;
use crate::engine::{ContainerInfo, Engine, HealthStatus};
use crate::error::BadInput;
use crate::execute;
use crate::host;
use crate::model::{BackupMode, Health, Model, Service, GATEWAY};
use crate::observe;
use crate::plan::{self, Action, ConfigChange, Plan};
use crate::progress::Progress;
use crate::reconcile::desired_state;

/// The repository the image a service ran before its update is tagged into until the update
/// is over: `pi-setup-rollback/<container>:<first 12 hex of its ID>`.
pub(crate) const ROLLBACK_REPO: &str = "pi-setup-rollback";

/// How a rollback that could not put a service back begins its `still_down`.
const ROLLBACK_FAILED: &str = "the rollback failed";

/// How long a service without a health check must keep running after its update to count as
/// up (with one, its health check decides).
pub(crate) const SETTLE: Duration = Duration::from_secs(5);

/// What `check` found for one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Finding {
    UpToDate,
    /// An update would move it; why.
    Newer(String),
    /// No container yet: `apply` creates it.
    NotCreated,
    /// The registry could not be asked; its answer.
    Unknown(String),
}

/// What `update` did with one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    UpToDate,
    NotCreated,
    Updated {
        from: String,
        to: String,
        archive: Option<PathBuf>,
    },
    /// A job ran to completion with its new image.
    Ran {
        from: String,
        to: String,
    },
    /// The new image did not come up; the old one runs again, on the volume as it was.
    RolledBack {
        to: String,
        why: String,
        archive: Option<PathBuf>,
        /// The old version did not come up either.
        still_down: Option<String>,
        /// Taken back with this service or job, which runs the same image (or build) and
        /// failed with it; `why` says so.
        with: Option<String>,
    },
    /// Not updated (its image could not be fetched, or its volume archived first): it runs
    /// as before.
    Failed(String),
}

/// The services and jobs `update` looks at, in start order: every one, or the ones named
/// with what must move with them — the others on the same image (one version of an app: a
/// web front and its worker) and the jobs they wait for (a migration), and theirs. Not the
/// gateway: its image is pinned in the profile.
fn chosen<'m>(model: &'m Model, only: &[String]) -> Result<Vec<&'m str>> {
    let all = model.start_order();
    for name in only {
        if !all.iter().any(|s| s.name.as_str() == name.as_str()) {
            let what = if name == GATEWAY {
                "the gateway is not updated by `update`: its image is pinned in the profile; change it there and run `pi-setup apply`".to_string()
            } else {
                let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
                format!(
                    "there is no service named '{name}' (services: {})",
                    run::names_there(&names)
                )
            };
            return Err(BadInput(what).into());
        }
    }
    if only.is_empty() {
        return Ok(all.iter().map(|s| s.name.as_str()).collect());
    }
    let same_image = |a: &Service, b: &Service| match (&a.build, &b.build) {
        (Some(x), Some(y)) => x == y,
        (None, None) => a.image == b.image,
        _ => false,
    };
    let mut picked: Vec<&str> = only.iter().map(String::as_str).collect();
    loop {
        let more: Vec<&str> = all
            .iter()
            .filter(|s| !picked.contains(&s.name.as_str()))
            .filter(|s| {
                all.iter()
                    .filter(|p| picked.contains(&p.name.as_str()))
                    .any(|p| {
                        same_image(p, s)
                            || s.job.is_some() && p.depends_on.iter().any(|d| d.name == s.name)
                    })
            })
            .map(|s| s.name.as_str())
            .collect();
        if more.is_empty() {
            break;
        }
        picked.extend(more);
    }
    Ok(all
        .iter()
        .map(|s| s.name.as_str())
        .filter(|n| picked.contains(n))
        .collect())
}

/// The specs of the chosen services, in start order.
fn specs<'d>(desired: &'d Desired, chosen: &[&str]) -> Vec<&'d ContainerSpec> {
    desired
        .containers
        .iter()
        .filter(|c| chosen.contains(&c.service.as_str()))
        .collect()
}

/// What an update would change, asking the registry for each tag's digest without pulling;
/// changes nothing, here or on the daemon.
pub(crate) async fn check(
    ctx: &Context,
    model: &Model,
    only: &[String],
    engine: &impl Engine,
) -> Result<Vec<(String, Finding)>> {
    let chosen = chosen(model, only)?;
    let (desired, images) = desired_state(ctx, model, engine).await?;
    let mut out = Vec::new();
    for spec in specs(&desired, &chosen) {
        let Some(c) = engine.container(&spec.name).await? else {
            out.push((spec.service.clone(), Finding::NotCreated));
            continue;
        };
        let local = images.get(&spec.image).and_then(Option::as_ref);
        let finding = if spec.job_timeout.is_some() && c.exit_code != Some(0) {
            Finding::Newer("its last run did not complete: it runs again".into())
        } else if desired.builds.contains_key(&spec.image) {
            match local {
                Some(i) if i.id == c.image_id => Finding::UpToDate,
                _ => Finding::Newer("its build context changed: rebuilt".into()),
            }
        } else if local.is_some_and(|i| i.id != c.image_id) {
            Finding::Newer(format!(
                "{} on this machine is newer than the image it runs",
                spec.image
            ))
        } else {
            match engine.registry_digest(&spec.image).await {
                Ok(digest) => {
                    let have = engine.local_digests(&spec.image).await?;
                    if have.iter().any(|d| d.rsplit('@').next() == Some(&digest)) {
                        Finding::UpToDate
                    } else {
                        Finding::Newer(format!(
                            "the registry has a newer {} ({})",
                            spec.image,
                            short(&digest)
                        ))
                    }
                }
                Err(e) => Finding::Unknown(e.to_string()),
            }
        };
        out.push((spec.service.clone(), finding));
    }
    Ok(out)
}

/// Updates the chosen services (see the module doc). The caller holds the lock. An image that
/// cannot be pulled or built leaves the services that use it as they are; each service's
/// result is its own, and the others go on.
pub(crate) async fn update(
    ctx: &Context,
    model: &Model,
    only: &[String],
    engine: &impl Engine,
    progress: &Progress,
    settle: Duration,
) -> Result<Vec<(String, Outcome)>> {
    let chosen = chosen(model, only)?;
    run::recover_restores(&ctx.paths)?;
    recover(ctx, model, engine, progress).await?;
    let drains = Drains::new(model, &ctx.paths, &ctx.names, progress);
    let (before, _) = desired_state(ctx, model, engine).await?;
    let mut out = Vec::new();
    // Each chosen service that runs: its container now, and the tag its image is kept under.
    let mut current: Vec<(String, ContainerInfo, String)> = Vec::new();
    for spec in specs(&before, &chosen) {
        match engine.container(&spec.name).await? {
            Some(c) if c.managed() => {
                let kept = rollback_tag(&spec.name, &c.image_id);
                current.push((spec.service.clone(), c, kept));
            }
            _ => out.push((spec.service.clone(), Outcome::NotCreated)),
        }
    }
    for (_, c, kept) in &current {
        // A finished update removes its rollback tag: one still there is from a run that was
        // killed, and would keep an image nobody needs on the SD card for good.
        let repo = kept.rsplit_once(':').map_or(kept.as_str(), |(r, _)| r);
        for stale in engine.tags_in(repo).await? {
            if stale != *kept {
                let _ = engine.remove_image(&stale).await;
            }
        }
        let kept_now = engine.tag(&c.image_id, kept).await;
        // A job is never rolled back (the image of a failed run may be gone; it runs again).
        if c.labels.contains_key(desired::LABEL_JOB) {
            continue;
        }
        kept_now.context("keeping the running image for a rollback")?;
    }
    // A service whose image cannot be fetched stays as it is; the others go on.
    for (image, e) in fetch(ctx, &before, &current, engine, progress, &drains).await? {
        let why = format!("its image {image} could not be fetched, so it was not updated: {e:#}");
        for spec in specs(&before, &chosen)
            .into_iter()
            .filter(|s| s.image == image)
        {
            if let Some(i) = current.iter().position(|(s, _, _)| *s == spec.service) {
                let (service, _, kept) = current.remove(i);
                let _ = engine.remove_image(&kept).await;
                out.push((service, Outcome::Failed(why.clone())));
            }
        }
    }

    // The images are in: plan against them (a new image may declare new volumes).
    let (desired, images, full) = match plan_with_new_images(ctx, model, engine).await {
        Ok(p) => p,
        Err(e) => {
            for (_, _, kept) in &current {
                let _ = engine.remove_image(kept).await;
            }
            return Err(e.context("no container was changed"));
        }
    };

    // What an image or build context stands for here: one version of an app, which every
    // service and job on it runs. One of them that fails with the new version takes back the
    // ones already moved to it, and the later ones are not moved (a web front and its worker
    // never run two versions, nor does the next `apply` move one of them on its own).
    let source = |spec: &ContainerSpec| match desired.builds.get(&spec.image) {
        Some((context, dockerfile)) => format!(
            "the same build context {} ({dockerfile})",
            context.display()
        ),
        None => format!("the same image {}", spec.image),
    };
    // Each source given up on, and why.
    let mut given_up: Vec<(String, String)> = Vec::new();
    // What moved in this run, to take back with its source: (source, service or job, its
    // archive, its new image).
    let mut moved: Vec<(String, String, Option<PathBuf>, String)> = Vec::new();
    for spec in specs(&desired, &chosen) {
        let Some((_, old, kept)) = current.iter().find(|(s, _, _)| *s == spec.service) else {
            continue;
        };
        let one = One {
            ctx,
            model,
            engine,
            progress,
            spec,
            old,
            kept,
            built: desired.builds.contains_key(&spec.image),
            drains: &drains,
        };
        let job = spec.job_timeout.is_some();
        let new_id = images
            .get(&spec.image)
            .and_then(Option::as_ref)
            .map(|i| i.id.clone())
            .unwrap_or_default();
        // A job is done only once it completed with this image (a kill or failure: again).
        if new_id == old.image_id && (!job || old.exit_code == Some(0)) {
            one.leave().await;
            out.push((spec.service.clone(), Outcome::UpToDate));
            continue;
        }
        if let Some((_, why)) = given_up.iter().find(|(s, _)| *s == source(spec)) {
            one.leave().await;
            out.push((
                spec.service.clone(),
                Outcome::Failed(format!("not updated: {why}")),
            ));
            continue;
        }
        // A job it waits for that did not complete with its image in this run (failed, could
        // not be fetched, never created, or held back): it does not move either.
        let held_by = model.service(&spec.service).and_then(|s| {
            s.depends_on.iter().find(|d| {
                out.iter().any(|(n, o)| {
                    *n == d.name.as_str()
                        && model.service(n).is_some_and(|j| j.job.is_some())
                        && !matches!(o, Outcome::Ran { .. } | Outcome::UpToDate)
                })
            })
        });
        let outcome = if let Some(dep) = held_by {
            one.hold_back(
                &new_id,
                format!(
                    "not updated: job {}, which it waits for, did not complete with its new image",
                    dep.name
                ),
            )
            .await
        } else if job {
            // Given up, the tag goes back to what the services on it run (the job's own last
            // image may be from a failed run).
            let back_to = current
                .iter()
                .filter(|(s, c, _)| {
                    !c.labels.contains_key(desired::LABEL_JOB)
                        && desired
                            .containers
                            .iter()
                            .any(|d| d.service == *s && source(d) == source(spec))
                })
                .map(|(_, _, k)| k.as_str())
                .next()
                .unwrap_or(kept);
            one.run_job(steps_for(&full, ctx, spec), &desired, &new_id, back_to)
                .await
        } else {
            one.update(steps_for(&full, ctx, spec), &desired, &new_id, settle)
                .await
        };
        match &outcome {
            Outcome::Updated { archive, .. } => moved.push((
                source(spec),
                spec.service.clone(),
                archive.clone(),
                new_id.clone(),
            )),
            Outcome::Ran { .. } => {
                moved.push((source(spec), spec.service.clone(), None, new_id.clone()));
            }
            other => {
                let what = match other {
                    _ if job => format!("job {} failed with {}", spec.service, source(spec)),
                    Outcome::RolledBack { .. } => format!(
                        "{} runs {} and did not come up with it",
                        spec.service,
                        source(spec)
                    ),
                    _ => format!(
                        "{} runs {} and could not be moved to it",
                        spec.service,
                        source(spec)
                    ),
                };
                let culprit = spec.service.clone();
                let (back, rest): (Vec<_>, Vec<_>) =
                    moved.drain(..).partition(|(s, ..)| *s == source(spec));
                moved = rest;
                // Taken back, latest first.
                for (_, other, archive, id) in back.into_iter().rev() {
                    let Some(spec) = desired.containers.iter().find(|c| c.service == other) else {
                        continue;
                    };
                    let Some((_, old, kept)) = current.iter().find(|(s, _, _)| *s == other) else {
                        continue;
                    };
                    let one = One {
                        spec,
                        old,
                        kept,
                        ..one
                    };
                    let back = if spec.job_timeout.is_some() {
                        // What it did cannot be taken back; its rollback tag goes.
                        one.leave().await;
                        Outcome::Failed(format!(
                            "it ran with the new image, but {what}: what it changed is not undone, \
                             and the next `pi-setup apply` runs it again with the old image"
                        ))
                    } else {
                        one.roll_back(what.clone(), archive, &id, settle, Some(culprit.clone()))
                            .await
                    };
                    if let Some(o) = out.iter_mut().find(|(s, _)| *s == other) {
                        o.1 = back;
                    }
                }
                given_up.push((source(spec), what));
            }
        }
        out.push((spec.service.clone(), outcome));
    }
    // The rollback tags of what moved for good (one taken back lost its own).
    for (service, o) in &out {
        if matches!(o, Outcome::Updated { .. } | Outcome::Ran { .. }) {
            if let Some((_, _, kept)) = current.iter().find(|(s, _, _)| s == service) {
                let _ = engine.remove_image(kept).await;
            }
        }
    }
    // Every outcome is final: nothing is left for a recovery but a rollback that failed
    // part-way (its container may be gone, its volume not restored): `recover` tries again.
    let stuck: Vec<String> = out
        .iter()
        .filter(|(_, o)| {
            matches!(o, Outcome::RolledBack { still_down: Some(s), .. } if s.starts_with(ROLLBACK_FAILED))
        })
        .filter_map(|(service, _)| current.iter().find(|(s, _, _)| s == service))
        .map(|(_, c, _)| c.name.clone())
        .collect();
    journal_keep(&ctx.paths, &stuck)?;
    out.sort_by_key(|(s, _)| chosen.iter().position(|c| c == s));
    Ok(out)
}

/// The desired state with the images as they are now, and the plan to get there (of which
/// `update` takes only the steps of the services it updates).
async fn plan_with_new_images(
    ctx: &Context,
    model: &Model,
    engine: &impl Engine,
) -> Result<(
    Desired,
    std::collections::BTreeMap<String, Option<crate::engine::ImageInfo>>,
    Plan,
)> {
    let (desired, images) = desired_state(ctx, model, engine).await?;
    let actual = observe::observe(
        engine,
        &desired,
        images.clone(),
        &[],
        &ctx.names.instance_label(),
        false,
    )
    .await
    .context("reading the current state")?;
    let full = plan::plan(&desired, &actual, &ctx.names, &ConfigChange::default())
        .map_err(|c| BadInput(c.to_string()))?;
    Ok((desired, images, full))
}

/// Pulls the tags the running services use, and builds the images whose context changed;
/// gives the images that could not be fetched, each with why.
async fn fetch(
    ctx: &Context,
    desired: &Desired,
    current: &[(String, ContainerInfo, String)],
    engine: &impl Engine,
    progress: &Progress,
    drains: &Drains,
) -> Result<Vec<(String, anyhow::Error)>> {
    let mut actions: Vec<Action> = Vec::new();
    for spec in &desired.containers {
        if !current.iter().any(|(s, _, _)| *s == spec.service) {
            continue;
        }
        let action = match desired.builds.get(&spec.image) {
            // An unchanged context has its image already.
            Some(_) if engine.image(&spec.image).await?.is_some() => continue,
            Some((context, dockerfile)) => Action::BuildImage {
                tag: spec.image.clone(),
                context: context.clone(),
                dockerfile: dockerfile.clone(),
            },
            None => Action::PullImage {
                image: spec.image.clone(),
            },
        };
        if !actions.contains(&action) {
            actions.push(action);
        }
    }
    let mut failed = Vec::new();
    for action in actions {
        let image = match &action {
            Action::BuildImage { tag, .. } => tag.clone(),
            Action::PullImage { image } => image.clone(),
            _ => unreachable!("only pulls and builds"),
        };
        let plan = Plan {
            actions: vec![action],
        };
        if let Err(e) = execute::apply(
            &plan, desired, engine, &ctx.paths, &ctx.names, progress, drains,
        )
        .await
        {
            failed.push((image, e));
        }
    }
    Ok(failed)
}

/// The steps of the full plan that replace this service's container: the directories under
/// its volume, a move of data it kept in a Docker volume, its removal and creation.
fn steps_for(full: &Plan, ctx: &Context, spec: &ContainerSpec) -> Vec<Action> {
    let vol = ctx.paths.vol(&spec.service);
    full.actions
        .iter()
        .filter(|a| match a {
            Action::CreateDir { path, .. } | Action::SetOwner { path, .. } => {
                path.starts_with(&vol)
            }
            Action::MoveVolumeData { container, .. } => *container == spec.name,
            Action::RemoveContainer { name, .. } | Action::StartContainer { name } => {
                *name == spec.name
            }
            Action::CreateContainer { spec: s, .. } | Action::RunJob { spec: s, .. } => {
                s.name == spec.name
            }
            _ => false,
        })
        .cloned()
        .collect()
}

/// One service's update.
struct One<'a, E> {
    ctx: &'a Context,
    model: &'a Model,
    engine: &'a E,
    progress: &'a Progress,
    spec: &'a ContainerSpec,
    old: &'a ContainerInfo,
    /// The rollback tag of the image it ran.
    kept: &'a str,
    /// A `build` service: its image name changes with its context (no tag moved).
    built: bool,
    /// Its routes show the maintenance page from just before it stops until its new (or
    /// rolled back) container has started.
    drains: &'a Drains,
}

impl<E: Engine> One<'_, E> {
    async fn update(
        &self,
        mut steps: Vec<Action>,
        desired: &Desired,
        new_id: &str,
        settle: Duration,
    ) -> Outcome {
        let (name, service) = (&self.spec.name, &self.spec.service);
        let archive = match self.archive().await {
            Ok(a) => a,
            Err(e) => {
                // Left as it was: the tag goes back to the image it runs, so the next `apply`
                // does not move it to an image nobody watched come up.
                self.abandon(new_id).await;
                return Outcome::Failed(format!(
                    "its volume could not be archived first, so it was not updated: {e:#}"
                ));
            }
        };
        // The recreation is the update's own step, whatever the plan called it.
        if !steps
            .iter()
            .any(|a| matches!(a, Action::CreateContainer { .. }))
        {
            steps.push(Action::RemoveContainer {
                name: name.clone(),
                why: "image updated".into(),
                drain: None,
            });
            steps.push(Action::CreateContainer {
                spec: Box::new(self.spec.clone()),
                why: "image updated".into(),
            });
        }
        // From here a kill leaves it to `recover` (heal, the next update or apply): on its
        // old image again, with this archive, unless it runs what its tag says.
        if let Err(e) = journal_add(&self.ctx.paths, self.moving(archive.clone())) {
            self.abandon(new_id).await;
            return Outcome::Failed(format!(
                "its update could not be noted for a recovery, so it was not updated: {e:#}"
            ));
        }
        self.progress.note(&format!(
            "updating {service} to {} ({})",
            self.spec.image,
            short(new_id)
        ));
        let up = match self.apply(steps, desired).await {
            Ok(()) => wait_until_up(self.engine, name, self.spec.health.as_ref(), settle).await,
            Err(e) => Err(format!("{e:#}")),
        };
        match up {
            Ok(()) => {
                // Its rollback tag stays until the update is over: a later service on the
                // same image that does not come up takes this one back too.
                journal_confirm(&self.ctx.paths, name);
                self.done_stopping();
                Outcome::Updated {
                    from: short(&self.old.image_id),
                    to: short(new_id),
                    archive,
                }
            }
            Err(why) => self.roll_back(why, archive, new_id, settle, None).await,
        }
    }

    /// What a recovery needs to put it back.
    fn moving(&self, archive: Option<PathBuf>) -> Moving {
        Moving {
            service: self.spec.service.clone(),
            container: self.spec.name.clone(),
            image: self.spec.image.clone(),
            kept: self.kept.to_string(),
            built: self.built,
            archive,
            confirmed: false,
        }
    }

    /// Not updated after all, once its archive was taken: running again if the archive
    /// stopped it, routed to again, and its tag back on the image it runs.
    async fn abandon(&self, new_id: &str) {
        let marker = self.ctx.paths.stopped_for_backup(&self.spec.name);
        if marker.exists() && self.engine.start(&self.spec.name).await.is_ok() {
            let _ = host::remove_file(&marker);
        }
        self.drains.release(self.engine, &self.spec.name).await;
        self.tag_back(self.kept, Some(new_id)).await;
    }

    /// Not moved: its tag back on `to` (a built image has no tag to move), the new image
    /// removed if nothing holds it, and its rollback tag gone.
    async fn tag_back(&self, to: &str, new_id: Option<&str>) {
        if !self.built {
            let _ = self.engine.tag(to, &self.spec.image).await;
            if let Some(id) = new_id {
                let _ = self.engine.remove_image(id).await;
            }
        }
        self.leave().await;
    }

    /// Runs steps of the plan for this service.
    async fn apply(&self, steps: Vec<Action>, desired: &Desired) -> Result<()> {
        execute::apply(
            &Plan { actions: steps },
            desired,
            self.engine,
            &self.ctx.paths,
            &self.ctx.names,
            self.progress,
            self.drains,
        )
        .await
        .map(|_| ())
    }

    /// Not moved: the tag kept for its rollback goes.
    async fn leave(&self) {
        let _ = self.engine.remove_image(self.kept).await;
    }

    /// Not moved although its image is new: the tag goes back to the image it runs, so the
    /// next `apply` does not move it unwatched either.
    async fn hold_back(&self, new_id: &str, why: String) -> Outcome {
        self.tag_back(self.kept, Some(new_id)).await;
        Outcome::Failed(why)
    }

    /// A job whose image moved runs again with it, to completion, before what waits for it
    /// (a migration before the new web app). One that fails leaves the tag on the image it
    /// ran before (the image the services on it run: `back_to`), and its last output in the
    /// result; what waits for it is not updated.
    async fn run_job(
        &self,
        mut steps: Vec<Action>,
        desired: &Desired,
        new_id: &str,
        back_to: &str,
    ) -> Outcome {
        if !steps.iter().any(|a| matches!(a, Action::RunJob { .. })) {
            steps.push(Action::RunJob {
                spec: Box::new(self.spec.clone()),
                why: "image updated".into(),
            });
        }
        self.progress.note(&format!(
            "running job {} with {} ({})",
            self.spec.service,
            self.spec.image,
            short(new_id)
        ));
        match self.apply(steps, desired).await {
            Ok(()) => Outcome::Ran {
                from: short(&self.old.image_id),
                to: short(new_id),
            },
            Err(e) => {
                // Its failed container holds the new image: not removed.
                self.tag_back(back_to, None).await;
                Outcome::Failed(format!(
                    "it failed with its new image {}: {e:#}",
                    short(new_id)
                ))
            }
        }
    }

    /// Archives the service's volume (if it has one) as its backup mode says, into the backup
    /// destination like any archive (retention counts it). In `stop` mode the container stays
    /// stopped for the update: what it would write in between would be lost by a rollback.
    async fn archive(&self) -> Result<Option<PathBuf>> {
        let service = &self.spec.service;
        let src = self.ctx.paths.vol(service);
        // What it keeps: anything it mounts from its own directory (a directory that is only
        // there, or read by others, is not its state).
        if !src.is_dir() || !self.spec.binds.iter().any(|b| b.host.starts_with(&src)) {
            return Ok(None);
        }
        let mode = self
            .model
            .service(service)
            .map_or(BackupMode::Live, |s| s.backup.clone());
        let name = &self.spec.name;
        self.progress
            .note(&format!("archiving {} before the update", src.display()));
        let running = self.old.running();
        match &mode {
            BackupMode::Stop if running => {
                let marker = self.ctx.paths.stopped_for_backup(name);
                host::write_atomic(&marker, b"", 0o644)?;
                // Its routes come back once a container of it has started again (its new
                // one, or this one when the update cannot go on).
                self.drains.before_stop(self.engine, name).await;
                let stopped = self
                    .engine
                    .stop(name, 30)
                    .await
                    .with_context(|| format!("stopping {name} to archive its volume"));
                let archived = match stopped {
                    Ok(()) => self.archive_now(&src).await,
                    Err(e) => Err(e),
                };
                // Started again only when the update cannot go on; the note for `heal` stays
                // unless that start worked.
                if archived.is_err() {
                    if self.engine.start(name).await.is_ok() {
                        let _ = host::remove_file(&marker);
                    }
                    self.drains.release(self.engine, name).await;
                }
                archived.map(Some)
            }
            BackupMode::Exec(cmds) if running => {
                for cmd in cmds {
                    self.engine
                        .exec_shell(name, cmd)
                        .await
                        .context("backup exec hook")?;
                }
                self.archive_now(&src).await.map(Some)
            }
            BackupMode::Exec(_) => anyhow::bail!(
                "its backup mode is exec, but container {name} is not running (the hook cannot run)"
            ),
            _ => self.archive_now(&src).await.map(Some),
        }
    }

    async fn archive_now(&self, src: &Path) -> Result<PathBuf> {
        let dest = run::dest(&self.ctx.paths, self.model, None);
        let opts = ArchiveOptions {
            codec: self.model.backup.compress,
            level: self.model.backup.level,
            ..Default::default()
        };
        let (src, name) = (src.to_path_buf(), self.spec.service.clone());
        let report =
            tokio::task::spawn_blocking(move || run::archive_with_retry(&src, &dest, &name, &opts))
                .await
                .context("archive task")??;
        Ok(report.archive)
    }

    /// The new image did not come up: its container goes, the volume comes back from the
    /// archive, the old image gets its tag back, and the service is created from it again.
    async fn roll_back(
        &self,
        why: String,
        archive: Option<PathBuf>,
        new_id: &str,
        settle: Duration,
        with: Option<String>,
    ) -> Outcome {
        let (name, service) = (&self.spec.name, &self.spec.service);
        self.progress
            .note(&format!("rolling back {service}: {why}"));
        let back = put_back(
            self.ctx,
            self.model,
            self.engine,
            self.progress,
            self.drains,
            &self.moving(archive.clone()),
        )
        .await;
        // A rollback that failed before its container started: routed to again all the same.
        self.drains.release_all(self.engine).await;
        self.done_stopping();
        let still_down = match back {
            Ok(spec) => wait_until_up(self.engine, name, spec.health.as_ref(), settle)
                .await
                .err(),
            Err(e) => Some(format!("{ROLLBACK_FAILED}: {e:#}")),
        };
        if still_down.is_none() {
            // Nothing needs the new image now (best effort: another service may use it), nor
            // the rollback tag (the old image has its own name again).
            if !self.built {
                let _ = self.engine.remove_image(new_id).await;
                let _ = self.engine.remove_image(self.kept).await;
            }
        }
        Outcome::RolledBack {
            to: short(&self.old.image_id),
            why,
            archive,
            still_down,
            with,
        }
    }

    /// The container is no longer stopped for its archive: `heal` need not start it.
    fn done_stopping(&self) {
        let _ = host::remove_file(&self.ctx.paths.stopped_for_backup(&self.spec.name));
    }
}

/// A service an update is moving to a new image: what puts it back on the old one. Noted in
/// the journal (`Paths::update_journal`) before its container is recreated, and the journal is
/// cleared once the update's outcomes are final, so a kill anywhere in between — in the
/// update, or in the rollback of it or of another service on its image — is finished by
/// `recover`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Moving {
    pub(crate) service: String,
    pub(crate) container: String,
    /// Its tag (or, built, the name of its new image).
    pub(crate) image: String,
    /// The rollback tag of the image it ran before.
    pub(crate) kept: String,
    pub(crate) built: bool,
    /// Its volume as it was before (none: it mounts nothing of its own).
    pub(crate) archive: Option<PathBuf>,
    /// Seen up on the new image (until then, a kill puts it and its image's others back).
    #[serde(default)]
    pub(crate) confirmed: bool,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Journal {
    moving: Vec<Moving>,
}

/// Whether an update was killed before its outcomes were final.
pub(crate) fn interrupted(paths: &host::paths::Paths) -> bool {
    paths.update_journal().exists()
}

fn journal_read(paths: &host::paths::Paths) -> Result<Journal> {
    let path = paths.update_journal();
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "reading {} (the notes of an interrupted update): if it is damaged, see what \
                 runs with `pi-setup status`, restore a volume by hand if needed, and delete it",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Journal::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes the journal (0600: it names archives), or removes it when it notes nothing.
fn journal_write(paths: &host::paths::Paths, j: &Journal) -> Result<()> {
    if j.moving.is_empty() {
        return journal_clear(paths);
    }
    host::write_atomic(
        &paths.update_journal(),
        &serde_json::to_vec_pretty(j)?,
        0o600,
    )?;
    Ok(())
}

fn journal_add(paths: &host::paths::Paths, m: Moving) -> Result<()> {
    let mut j = journal_read(paths)?;
    j.moving.retain(|x| x.container != m.container);
    j.moving.push(m);
    journal_write(paths, &j)
}

/// Notes that a service came up on its new image (best effort: unnoted, a kill before the
/// update ends puts it back, which is the safe side).
fn journal_confirm(paths: &host::paths::Paths, container: &str) {
    if let Ok(mut j) = journal_read(paths) {
        for m in j.moving.iter_mut().filter(|m| m.container == container) {
            m.confirmed = true;
        }
        let _ = journal_write(paths, &j);
    }
}

/// Keeps only these containers' notes (their rollback failed: `recover` tries again).
fn journal_keep(paths: &host::paths::Paths, containers: &[String]) -> Result<()> {
    let mut j = journal_read(paths)?;
    j.moving.retain(|m| containers.contains(&m.container));
    journal_write(paths, &j)
}

fn journal_clear(paths: &host::paths::Paths) -> Result<()> {
    host::remove_file(&paths.update_journal())?;
    Ok(())
}

/// Puts a service back on the image it ran before its update: the tag first (killed anywhere
/// after this, `recover` or the next `apply` recreates it from the old image, never from the
/// one that did not come up), then its container goes, its volume comes back from the archive,
/// and it is created from the old image again. Its spec, as desired now.
async fn put_back(
    ctx: &Context,
    model: &Model,
    engine: &impl Engine,
    progress: &Progress,
    drains: &Drains,
    m: &Moving,
) -> Result<ContainerSpec> {
    if !m.built {
        engine.tag(&m.kept, &m.image).await?;
    }
    drains.before_stop(engine, &m.container).await;
    engine.remove_container(&m.container).await?;
    if let Some(a) = &m.archive {
        run::restore_volume(&ctx.paths, Some(engine), drains, None, a, &m.service)
            .await
            .with_context(|| format!("restoring {} from {}", m.service, a.display()))?;
    }
    // Derived again: the old image's volumes, and the spec it had.
    let (desired, _) = desired_state(ctx, model, engine).await?;
    let mut spec = desired
        .containers
        .iter()
        .find(|c| c.name == m.container)
        .cloned()
        .context("the service is still defined")?;
    if m.built {
        spec.image.clone_from(&m.kept);
    }
    let plan = Plan {
        actions: vec![Action::CreateContainer {
            spec: Box::new(spec.clone()),
            why: "rolled back".into(),
        }],
    };
    execute::apply(
        &plan, &desired, engine, &ctx.paths, &ctx.names, progress, drains,
    )
    .await?;
    Ok(spec)
}

/// Finishes what a killed `update` left (see [`Moving`]): a service not seen up on its new
/// image, or whose container is gone, or runs another image than its tag now says (a rollback
/// had begun), is put back on the image it ran before, with its volume from the archive taken
/// before, and so are the others noted on its image (their tag goes back too); when every one
/// was seen up and runs its tag's image, they stay. Called with the lock held by `update`, `apply` and
/// `heal` (every minute). Says what it did.
pub(crate) async fn recover(
    ctx: &Context,
    model: &Model,
    engine: &impl Engine,
    progress: &Progress,
) -> Result<()> {
    let journal = journal_read(&ctx.paths)?;
    if journal.moving.is_empty() {
        return Ok(());
    }
    let drains = Drains::new(model, &ctx.paths, &ctx.names, progress);
    // Where each stands: its old image's ID (None: gone, nothing to go back to), whether it
    // runs it, and whether it must go back (not seen up on its new image, its container gone,
    // or on another image than its tag now says: a rollback had begun).
    let mut found = Vec::new();
    for m in &journal.moving {
        // Only what this instance's update writes: a service of the profile, its own
        // container, and a rollback tag of it (a note edited by hand must not remove or
        // retag anything else).
        let container = ctx.names.object(&m.service);
        let ours = model.service(&m.service).is_some()
            && m.container == container
            && m.kept.starts_with(&format!("{ROLLBACK_REPO}/{container}:"));
        if !ours {
            println!(
                "{:?}: a note of an interrupted update names container {:?} and image {:?}, which are not this service's; left as they are",
                m.service, m.container, m.kept
            );
            continue;
        }
        let Some(kept) = engine.image(&m.kept).await? else {
            println!(
                "{}: an interrupted update left no image to go back to ({} is gone); left as it is",
                m.service, m.kept
            );
            continue;
        };
        let current = engine.container(&m.container).await?;
        let tagged = if m.built {
            None
        } else {
            engine.image(&m.image).await?.map(|i| i.id)
        };
        let on_old = current.as_ref().is_some_and(|c| c.image_id == kept.id);
        let must = !m.confirmed
            || !on_old
                && current
                    .as_ref()
                    .is_none_or(|c| !m.built && tagged.as_deref() != Some(c.image_id.as_str()));
        found.push((m, kept.id, on_old, must));
    }
    // One that goes back takes back the others on its image (one version of an app).
    let going_back: Vec<&str> = found
        .iter()
        .filter(|f| f.3)
        .map(|f| f.0.image.as_str())
        .collect();
    for (m, kept_id, on_old, _) in &found {
        if !going_back.contains(&m.image.as_str()) {
            continue;
        }
        if *on_old {
            // Still on it (killed before its container went): only the tag goes back.
            if !m.built {
                engine.tag(&m.kept, &m.image).await?;
            }
            continue;
        }
        println!(
            "{}: an update was interrupted; putting it back on its image from before ({})",
            m.service,
            short(kept_id)
        );
        put_back(ctx, model, engine, progress, &drains, m)
            .await
            .with_context(|| format!("finishing the rollback of {}", m.service))?;
        drains.release_all(engine).await;
        let _ = host::remove_file(&ctx.paths.stopped_for_backup(&m.container));
    }
    // The tags kept for a rollback are done with, the jobs' too (a built one put back is the
    // image it runs again).
    for s in &model.services {
        let container = ctx.names.object(s.name.as_str());
        for tag in engine
            .tags_in(&format!("{ROLLBACK_REPO}/{container}"))
            .await?
        {
            let runs = found.iter().any(|(m, ..)| m.built && m.kept == tag);
            if !runs {
                let _ = engine.remove_image(&tag).await;
            }
        }
    }
    journal_clear(&ctx.paths)
}

/// Waits until a container that was just started is up: healthy, for one with a health check
/// (within the patience its settings give), or still running after `settle` without a restart.
/// Fails at once when it turns unhealthy, exits or restarts.
async fn wait_until_up(
    engine: &impl Engine,
    name: &str,
    health: Option<&Health>,
    settle: Duration,
) -> Result<(), String> {
    let restarts = engine
        .run_state(name)
        .await
        .map_err(|e| e.to_string())?
        .map_or(0, |(_, n)| n);
    let patience = health.map_or(settle, desired::health_patience);
    let deadline = Instant::now() + patience;
    loop {
        let c = engine
            .container(name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("its container is gone")?;
        if c.health == Some(HealthStatus::Unhealthy) {
            return Err("its health check failed".into());
        }
        if !c.running() {
            return Err(match c.exit_code {
                Some(code) => format!("it exited with code {code}"),
                None => format!("its container is {}", c.state),
            });
        }
        if let Ok(Some((_, n))) = engine.run_state(name).await {
            if n != restarts {
                return Err("it exited and was restarted".into());
            }
        }
        if health.is_some() && c.health == Some(HealthStatus::Healthy) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return if health.is_some() {
                Err(format!(
                    "it did not report healthy within {}s",
                    patience.as_secs()
                ))
            } else {
                Ok(())
            };
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn rollback_tag(container: &str, image_id: &str) -> String {
    format!("{ROLLBACK_REPO}/{container}:{}", short(image_id))
}

/// The first 12 hex digits of an image ID or digest, as `docker images` shows them.
pub(crate) fn short(id: &str) -> String {
    let hex = id.rsplit(':').next().unwrap_or(id);
    hex.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    //! `update` and `check` on the fake engine and a temporary root: which services move,
    //! in which order, and what a rollback puts back.

    use std::collections::BTreeMap;
    use std::path::Path;
    use std::time::Duration;

    use super::{check, update, Finding, Outcome};
    use crate::engine::fake::Fake;
    use crate::engine::ImageInfo;
    use crate::error::{BadInput, Exit};
    use crate::host::paths::Paths;
    use crate::input::source::Source;
    use crate::input::Inputs;
    use crate::model::Model;
    use crate::progress::Progress;
    use crate::reconcile::tests::{
        ctx, fake_gateway_admin, fake_gateway_admin_noting, run_profile,
    };

    /// db (health-checked, with a volume) first because api waits for it; web on another
    /// image; api without a health check.
    const PROFILE: &str = "[gateway]\nimage = \"caddy:2\"\nhttps = \"off\"\n\n\
        [[service]]\nname = \"api\"\nimage = \"app:prod\"\ndomains = [\"api.test\"]\n\
        depends_on = [{ name = \"db\", condition = \"healthy\" }]\n\n\
        [[service]]\nname = \"web\"\nimage = \"web:1\"\ndomains = [\"web.test\"]\n\n\
        [[service]]\nname = \"db\"\nimage = \"db:16\"\nhealth_cmd = \"true\"\n\
        volumes = [\"data:/data\"]\n";

    fn model(root: &Path) -> Model {
        model_of(root, PROFILE)
    }

    fn model_of(root: &Path, profile: &str) -> Model {
        Inputs {
            profile: Source::new("p.toml", profile),
            services: Vec::new(),
            secrets: BTreeMap::new(),
            paths: Paths::new(root),
        }
        .model()
        .unwrap()
    }

    fn image(id: &str) -> ImageInfo {
        ImageInfo {
            id: id.into(),
            volumes: Vec::new(),
        }
    }

    /// An installed appliance whose registry has the same images it runs.
    async fn installed(root: &Path) -> Fake {
        installed_with(root, PROFILE, "db").await
    }

    /// `profile` installed from images the registry has too, with "one" in the `state` file
    /// of `service`'s data volume; no call or reload noted yet.
    async fn installed_with(root: &Path, profile: &str, service: &str) -> Fake {
        let engine = Fake::default();
        fake_gateway_admin_noting(root, engine.journal.clone());
        for (r, id) in [
            ("caddy:2", "sha256:caddy"),
            ("app:prod", "sha256:app1"),
            ("web:1", "sha256:web1"),
            ("db:16", "sha256:db1"),
        ] {
            engine.images.borrow_mut().insert(r.into(), image(id));
            engine.registry.borrow_mut().insert(r.into(), image(id));
        }
        run_profile(root, &engine, profile).await.unwrap();
        std::fs::write(root.join(format!("var/vol/{service}/data/state")), "one").unwrap();
        engine.calls.borrow_mut().clear();
        engine.journal.lock().unwrap().clear();
        engine
    }

    /// The journal without the image calls: containers and gateway reloads, in order.
    fn containers_and_reloads(engine: &Fake) -> Vec<String> {
        engine
            .journal
            .lock()
            .unwrap()
            .iter()
            .filter(|c| !c.starts_with("tag") && !c.starts_with("pull"))
            .filter(|c| !c.starts_with("remove_image"))
            .cloned()
            .collect()
    }

    fn image_of(engine: &Fake, container: &str) -> String {
        engine
            .containers
            .borrow()
            .iter()
            .find(|c| c.name == container)
            .map(|c| c.image_id.clone())
            .unwrap()
    }

    fn rollback_tags(engine: &Fake) -> Vec<String> {
        engine
            .images
            .borrow()
            .keys()
            .filter(|r| r.starts_with(super::ROLLBACK_REPO))
            .cloned()
            .collect()
    }

    async fn run_update(root: &Path, engine: &Fake, only: &[&str]) -> Vec<(String, Outcome)> {
        update_model(root, engine, &model(root), only).await
    }

    /// `update` of `only` (all with none) in `model`, without waiting for health to settle.
    async fn update_model(
        root: &Path,
        engine: &Fake,
        model: &Model,
        only: &[&str],
    ) -> Vec<(String, Outcome)> {
        let only: Vec<String> = only.iter().map(ToString::to_string).collect();
        update(
            &ctx(root),
            model,
            &only,
            engine,
            &Progress::new(),
            Duration::ZERO,
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn only_services_whose_tag_moved_are_recreated_in_start_order_volume_archived_first() {
        let root = tempfile::tempdir().unwrap();
        let engine = installed(root.path()).await;
        engine
            .registry
            .borrow_mut()
            .insert("app:prod".into(), image("sha256:app2"));
        engine
            .registry
            .borrow_mut()
            .insert("db:16".into(), image("sha256:db2"));
        let done = run_update(root.path(), &engine, &[]).await;
        let kinds: Vec<(&str, &str)> = done
            .iter()
            .map(|(s, o)| {
                let k = match o {
                    Outcome::Updated { .. } => "updated",
                    Outcome::UpToDate => "up to date",
                    _ => "other",
                };
                (s.as_str(), k)
            })
            .collect();
        assert_eq!(
            kinds,
            [("web", "up to date"), ("db", "updated"), ("api", "updated")]
        );
        let containers: Vec<String> = engine
            .calls
            .borrow()
            .iter()
            .filter(|c| !c.starts_with("tag") && !c.starts_with("pull"))
            .filter(|c| !c.starts_with("remove_image"))
            .cloned()
            .collect();
        // db: stopped for its archive (backup mode stop), then replaced; then api (no volume).
        assert_eq!(
            containers,
            [
                "stop t-db",
                "remove_container t-db",
                "create_container t-db",
                "start t-db",
                "remove_container t-api",
                "create_container t-api",
                "start t-api",
            ]
        );
        // api has a domain: the gateway shows its maintenance page before its container goes,
        // and routes to it again once the new one has started. db has no route: no reload.
        assert_eq!(
            containers_and_reloads(&engine),
            [
                "stop t-db",
                "remove_container t-db",
                "create_container t-db",
                "start t-db",
                "gateway load draining api",
                "remove_container t-api",
                "create_container t-api",
                "start t-api",
                "gateway load",
            ]
        );
        assert_eq!(image_of(&engine, "t-db"), "sha256:db2");
        assert_eq!(image_of(&engine, "t-api"), "sha256:app2");
        assert_eq!(image_of(&engine, "t-web"), "sha256:web1");
        let Outcome::Updated { archive, .. } = &done[1].1 else {
            panic!("{done:?}")
        };
        let archive = archive.as_ref().expect("db has a volume");
        assert!(archive.starts_with(root.path().join("var/backups/pi-setup/db")));
        assert!(archive.is_file());
        assert_eq!(rollback_tags(&engine), Vec::<String>::new());
        // Done: a second run changes nothing, and takes away what a killed run left.
        engine
            .images
            .borrow_mut()
            .insert("pi-setup-rollback/t-web:old".into(), image("sha256:web0"));
        engine.calls.borrow_mut().clear();
        let again = run_update(root.path(), &engine, &[]).await;
        assert!(
            again.iter().all(|(_, o)| *o == Outcome::UpToDate),
            "{again:?}"
        );
        assert_eq!(rollback_tags(&engine), Vec::<String>::new());
        assert!(
            engine.calls.borrow().iter().all(|c| c.starts_with("tag")
                || c.starts_with("pull")
                || c.starts_with("remove_image")),
            "{:?}",
            engine.calls.borrow()
        );
    }

    #[tokio::test]
    async fn a_routed_service_stopped_for_its_archive_is_drained_first_and_routed_to_once_its_new_container_runs(
    ) {
        let root = tempfile::tempdir().unwrap();
        let engine = Fake::default();
        fake_gateway_admin_noting(root.path(), engine.journal.clone());
        for (r, id) in [("caddy:2", "sha256:caddy"), ("web:1", "sha256:web1")] {
            engine.images.borrow_mut().insert(r.into(), image(id));
            engine.registry.borrow_mut().insert(r.into(), image(id));
        }
        // A volume, so backup mode stop: stopped for its archive, then replaced.
        let profile = "[gateway]\nimage = \"caddy:2\"\nhttps = \"off\"\n\n\
            [[service]]\nname = \"web\"\nimage = \"web:1\"\ndomains = [\"web.test\"]\n\
            volumes = [\"data:/data\"]\n";
        run_profile(root.path(), &engine, profile).await.unwrap();
        engine.journal.lock().unwrap().clear();
        engine
            .registry
            .borrow_mut()
            .insert("web:1".into(), image("sha256:web2"));
        let model = model_of(root.path(), profile);
        let done = update_model(root.path(), &engine, &model, &[]).await;
        assert!(matches!(done[0].1, Outcome::Updated { .. }), "{done:?}");
        assert_eq!(
            containers_and_reloads(&engine),
            [
                "gateway load draining web",
                "stop t-web",
                "remove_container t-web",
                "create_container t-web",
                "start t-web",
                "gateway load",
            ]
        );
        // The gateway runs its own files again, as noted: the next apply has nothing to do.
        engine.journal.lock().unwrap().clear();
        run_profile(root.path(), &engine, profile).await.unwrap();
        assert_eq!(*engine.journal.lock().unwrap(), Vec::<String>::new());
    }

    #[tokio::test]
    async fn a_new_image_that_fails_its_health_check_is_rolled_back_with_its_volume() {
        let root = tempfile::tempdir().unwrap();
        let engine = installed(root.path()).await;
        engine
            .registry
            .borrow_mut()
            .insert("db:16".into(), image("sha256:db2"));
        engine.broken_images.borrow_mut().push("sha256:db2".into());
        let done = run_update(root.path(), &engine, &["db"]).await;
        assert_eq!(done.len(), 1);
        let Outcome::RolledBack {
            why,
            archive,
            still_down,
            to,
            with: None,
        } = &done[0].1
        else {
            panic!("{done:?}")
        };
        assert_eq!(why, "its health check failed");
        assert_eq!(*still_down, None);
        assert_eq!(to, "db1");
        assert!(archive.as_ref().is_some_and(|a| a.is_file()));
        // The old image runs again, under its own tag; the broken one and the rollback tag
        // are gone.
        assert_eq!(image_of(&engine, "t-db"), "sha256:db1");
        assert_eq!(engine.images.borrow()["db:16"].id, "sha256:db1");
        assert!(!engine
            .images
            .borrow()
            .values()
            .any(|i| i.id == "sha256:db2"));
        assert_eq!(rollback_tags(&engine), Vec::<String>::new());
        // The volume came back from the archive (the replaced tree is kept beside it).
        let vol = root.path().join("var/vol");
        assert_eq!(
            std::fs::read_to_string(vol.join("db/data/state")).unwrap(),
            "one"
        );
        assert!(std::fs::read_dir(&vol).unwrap().flatten().any(|e| e
            .file_name()
            .to_string_lossy()
            .starts_with("db.pre-restore-")));
        let calls = engine.calls.borrow().clone();
        let at = |c: &str| {
            calls
                .iter()
                .position(|x| x == c)
                .unwrap_or_else(|| panic!("{c} in {calls:?}"))
        };
        assert!(at("start t-db") < at("tag pi-setup-rollback/t-db:db1 db:16"));
        // The tag goes back before the failed container goes (a kill in between leaves the old
        // image for the next apply).
        let last = |c: &str| calls.iter().rposition(|x| x == c).unwrap();
        assert!(
            at("tag pi-setup-rollback/t-db:db1 db:16") < last("remove_container t-db"),
            "{calls:?}"
        );
        // Nothing else was touched.
        assert!(!calls
            .iter()
            .any(|c| c.contains("t-api") || c.contains("t-web")));
        // The next apply sees nothing to do: the tag points at what runs.
        engine.calls.borrow_mut().clear();
        run_profile(root.path(), &engine, PROFILE).await.unwrap();
        assert_eq!(engine.calls.borrow().clone(), Vec::<String>::new());
    }

    #[tokio::test]
    async fn a_service_without_a_health_check_that_exits_is_rolled_back() {
        let root = tempfile::tempdir().unwrap();
        let engine = installed(root.path()).await;
        engine
            .registry
            .borrow_mut()
            .insert("app:prod".into(), image("sha256:app2"));
        engine.broken_images.borrow_mut().push("sha256:app2".into());
        let done = run_update(root.path(), &engine, &["api"]).await;
        assert!(
            matches!(&done[0].1, Outcome::RolledBack { why, archive: None, .. } if why == "its container is exited"),
            "{done:?}"
        );
        assert_eq!(image_of(&engine, "t-api"), "sha256:app1");
        assert!(engine
            .containers
            .borrow()
            .iter()
            .any(|c| c.name == "t-api" && c.running()));
    }

    #[tokio::test]
    async fn check_lists_what_would_change_and_changes_nothing() {
        let root = tempfile::tempdir().unwrap();
        let engine = installed(root.path()).await;
        engine
            .registry
            .borrow_mut()
            .insert("web:1".into(), image("sha256:web2"));
        engine.registry.borrow_mut().remove("db:16");
        let images_before = engine.images.borrow().clone();
        let containers_before = engine.containers.borrow().clone();
        let found = check(&ctx(root.path()), &model(root.path()), &[], &engine)
            .await
            .unwrap();
        assert_eq!(found[1].0, "db");
        assert!(matches!(&found[1].1, Finding::Unknown(e) if e.contains("manifest unknown")));
        assert_eq!(found[2], ("api".to_string(), Finding::UpToDate));
        assert_eq!(
            found[0],
            (
                "web".to_string(),
                Finding::Newer("the registry has a newer web:1 (web2)".into())
            )
        );
        assert_eq!(engine.calls.borrow().clone(), Vec::<String>::new());
        assert_eq!(*engine.images.borrow(), images_before);
        assert_eq!(*engine.containers.borrow(), containers_before);
    }

    #[tokio::test]
    async fn an_image_that_cannot_be_pulled_leaves_its_service_as_it_was_and_the_rest_go_on() {
        let root = tempfile::tempdir().unwrap();
        let engine = installed(root.path()).await;
        engine.registry.borrow_mut().remove("web:1");
        engine
            .registry
            .borrow_mut()
            .insert("app:prod".into(), image("sha256:app2"));
        let done = run_update(root.path(), &engine, &[]).await;
        assert!(
            matches!(&done[0], (s, Outcome::Failed(why)) if s == "web" && why.starts_with("its image web:1 could not be fetched, so it was not updated: step 1 of 1 failed: pull image web:1")),
            "{done:?}"
        );
        assert_eq!(done[1], ("db".to_string(), Outcome::UpToDate));
        assert!(matches!(&done[2], (s, Outcome::Updated { .. }) if s == "api"));
        assert!(
            !engine.calls.borrow().iter().any(|c| c.ends_with(" t-web")),
            "{:?}",
            engine.calls.borrow()
        );
        assert_eq!(image_of(&engine, "t-web"), "sha256:web1");
        assert_eq!(rollback_tags(&engine), Vec::<String>::new());
    }

    #[tokio::test]
    async fn a_changed_build_context_is_rebuilt_after_the_exec_hooks_and_rolled_back_to_the_last_build(
    ) {
        let root = tempfile::tempdir().unwrap();
        fake_gateway_admin(root.path());
        let context = root.path().join("srv/app");
        std::fs::create_dir_all(&context).unwrap();
        std::fs::write(context.join("Dockerfile"), "FROM busybox:1\n").unwrap();
        std::fs::write(context.join("app.sh"), "echo one\n").unwrap();
        let profile = "[gateway]\nimage = \"caddy:2\"\nhttps = \"off\"\n\n\
            [[service]]\nname = \"app\"\nbuild = { context = \"/srv/app\" }\n\
            health_cmd = \"true\"\nvolumes = [\"data:/data\"]\n\
            backup = { mode = \"exec\", exec = [\"dump\"] }\n";
        let model = model_of(root.path(), profile);
        let engine = Fake::with_images(&["caddy:2"]);
        run_profile(root.path(), &engine, profile).await.unwrap();
        let tag = |text: &str| {
            std::fs::write(context.join("app.sh"), text).unwrap();
            let (_, digest) = crate::backup::build_context(&context).unwrap();
            format!("pi-setup-build/app:{}", &digest[..12])
        };
        let update_now = || async {
            engine.calls.borrow_mut().clear();
            update_model(root.path(), &engine, &model, &[]).await
        };
        let check_now = || async {
            check(&ctx(root.path()), &model, &[], &engine)
                .await
                .unwrap()
        };
        assert_eq!(check_now().await[0].1, Finding::UpToDate);

        let two = tag("echo two\n");
        assert_eq!(
            check_now().await[0].1,
            Finding::Newer("its build context changed: rebuilt".into())
        );
        let done = update_now().await;
        assert!(matches!(done[0].1, Outcome::Updated { .. }), "{done:?}");
        let calls: Vec<String> = engine
            .calls
            .borrow()
            .iter()
            .filter(|c| !c.starts_with("tag") && !c.starts_with("remove_image"))
            .cloned()
            .collect();
        assert_eq!(
            calls,
            [
                format!("build {two}"),
                "exec t-app dump".to_string(),
                "remove_container t-app".to_string(),
                "create_container t-app".to_string(),
                "start t-app".to_string(),
            ]
        );
        assert_eq!(image_of(&engine, "t-app"), format!("sha256:{two}"));

        // A build that does not come up: back to the last good one.
        let three = tag("echo three\n");
        engine
            .broken_images
            .borrow_mut()
            .push(format!("sha256:{three}"));
        let done = update_now().await;
        assert!(
            matches!(&done[0].1, Outcome::RolledBack { why, still_down: None, .. } if why == "its health check failed"),
            "{done:?}"
        );
        assert_eq!(image_of(&engine, "t-app"), format!("sha256:{two}"));
        assert!(engine
            .containers
            .borrow()
            .iter()
            .any(|c| c.name == "t-app" && c.running()));
    }

    #[tokio::test]
    async fn a_volume_that_cannot_be_archived_leaves_its_service_running_on_its_old_image() {
        let root = tempfile::tempdir().unwrap();
        let engine = installed(root.path()).await;
        // The backup destination is a file: no archive can be written there.
        std::fs::create_dir_all(root.path().join("var/backups")).unwrap();
        std::fs::write(root.path().join("var/backups/pi-setup"), "").unwrap();
        engine
            .registry
            .borrow_mut()
            .insert("db:16".into(), image("sha256:db2"));
        let done = run_update(root.path(), &engine, &["db"]).await;
        assert!(
            matches!(&done[0].1, Outcome::Failed(why) if why.starts_with("its volume could not be archived first, so it was not updated: ")),
            "{done:?}"
        );
        let containers: Vec<String> = engine
            .calls
            .borrow()
            .iter()
            .filter(|c| c.ends_with(" t-db"))
            .cloned()
            .collect();
        assert_eq!(containers, ["stop t-db", "start t-db"]);
        assert_eq!(image_of(&engine, "t-db"), "sha256:db1");
        // The tag is back on what runs, so the next apply does not move it either.
        assert_eq!(engine.images.borrow()["db:16"].id, "sha256:db1");
        assert!(!engine
            .images
            .borrow()
            .values()
            .any(|i| i.id == "sha256:db2"));
        assert_eq!(rollback_tags(&engine), Vec::<String>::new());
        assert!(!root
            .path()
            .join("var/lib/pi-setup/stopped-for-backup/t-db")
            .exists());
    }

    /// A web front and its worker on one tag, a migration job both wait for, and a nightly
    /// job on the same tag.
    const APP_PROFILE: &str = "[gateway]\nimage = \"caddy:2\"\nhttps = \"off\"\n\n\
        [[service]]\nname = \"db\"\nimage = \"db:16\"\nhealth_cmd = \"true\"\n\n\
        [[job]]\nname = \"migrate\"\nimage = \"app:prod\"\n\
        depends_on = [{ name = \"db\", condition = \"healthy\" }]\n\n\
        [[job]]\nname = \"nightly\"\nimage = \"app:prod\"\nschedule = \"*-*-* 04:00:00\"\n\
        depends_on = [{ name = \"migrate\", condition = \"completed\" }]\n\n\
        [[service]]\nname = \"web\"\nimage = \"app:prod\"\ndomains = [\"web.test\"]\n\
        volumes = [\"data:/data\"]\nbackup = { mode = \"live\" }\n\
        depends_on = [{ name = \"migrate\", condition = \"completed\" }]\n\n\
        [[service]]\nname = \"worker\"\nimage = \"app:prod\"\n\
        depends_on = [{ name = \"migrate\", condition = \"completed\" }]\n\n\
        [[service]]\nname = \"other\"\nimage = \"web:1\"\ndomains = [\"other.test\"]\n";

    /// `APP_PROFILE` installed, with `app:prod` pushed again as app2 in the registry.
    async fn app_installed(root: &Path) -> (Fake, Model) {
        let engine = installed_with(root, APP_PROFILE, "web").await;
        engine
            .registry
            .borrow_mut()
            .insert("app:prod".into(), image("sha256:app2"));
        (engine, model_of(root, APP_PROFILE))
    }

    fn kinds(done: &[(String, Outcome)]) -> Vec<(String, String)> {
        done.iter()
            .map(|(s, o)| {
                let k = match o {
                    Outcome::Updated { .. } => "updated".to_string(),
                    Outcome::Ran { .. } => "ran".to_string(),
                    Outcome::UpToDate => "up to date".to_string(),
                    Outcome::RolledBack { with, .. } => format!("rolled back with {with:?}"),
                    Outcome::Failed(why) => format!("failed: {why}"),
                    Outcome::NotCreated => "not created".to_string(),
                };
                (s.clone(), k)
            })
            .collect()
    }

    fn position(calls: &[String], call: &str) -> usize {
        calls
            .iter()
            .position(|c| c == call)
            .unwrap_or_else(|| panic!("{call} in {calls:?}"))
    }

    #[tokio::test]
    async fn a_migration_job_on_the_moved_tag_runs_again_before_what_waits_for_it_and_a_named_service_brings_its_image_and_jobs_along(
    ) {
        let root = tempfile::tempdir().unwrap();
        let (engine, model) = app_installed(root.path()).await;
        let done = update_model(root.path(), &engine, &model, &[]).await;
        assert_eq!(
            kinds(&done),
            [
                ("db".into(), "up to date".into()),
                ("other".into(), "up to date".into()),
                ("migrate".into(), "ran".into()),
                ("nightly".into(), "ran".into()),
                ("web".into(), "updated".into()),
                ("worker".into(), "updated".into()),
            ]
        );
        let calls = engine.calls.borrow().clone();
        assert!(
            position(&calls, "start t-migrate") < position(&calls, "remove_container t-web"),
            "{calls:?}"
        );
        for c in ["t-migrate", "t-nightly", "t-web", "t-worker"] {
            assert_eq!(image_of(&engine, c), "sha256:app2");
        }
        assert_eq!(rollback_tags(&engine), Vec::<String>::new());

        // The next apply has nothing to do: every container runs what its tag says.
        engine.calls.borrow_mut().clear();
        run_profile(root.path(), &engine, APP_PROFILE)
            .await
            .unwrap();
        assert_eq!(engine.calls.borrow().clone(), Vec::<String>::new());

        // Named alone, web brings along what runs its image and the job it waits for, but
        // not db or other.
        let root = tempfile::tempdir().unwrap();
        let (engine, model) = app_installed(root.path()).await;
        let done = update_model(root.path(), &engine, &model, &["web"]).await;
        assert_eq!(
            kinds(&done),
            [
                ("migrate".into(), "ran".into()),
                ("nightly".into(), "ran".into()),
                ("web".into(), "updated".into()),
                ("worker".into(), "updated".into()),
            ]
        );
    }

    #[tokio::test]
    async fn a_job_whose_last_run_did_not_complete_runs_again_before_its_dependents_move() {
        let root = tempfile::tempdir().unwrap();
        let (engine, model) = app_installed(root.path()).await;
        // A run that failed on the new image: its container is there, not completed.
        engine
            .broken_in
            .borrow_mut()
            .push(("t-migrate".into(), "sha256:app2".into()));
        update_model(root.path(), &engine, &model, &[]).await;
        let found = check(&ctx(root.path()), &model, &["migrate".into()], &engine)
            .await
            .unwrap();
        assert_eq!(
            found[0].1,
            Finding::Newer("its last run did not complete: it runs again".into())
        );
        // Fixed, and the tag moved again by the next update: the job is not taken as done
        // by its image alone; it runs before web and worker move.
        engine.broken_in.borrow_mut().clear();
        let done = update_model(root.path(), &engine, &model, &[]).await;
        let kinds = kinds(&done);
        assert_eq!(kinds[2], ("migrate".into(), "ran".into()), "{kinds:?}");
        assert_eq!(kinds[4], ("web".into(), "updated".into()), "{kinds:?}");
    }

    #[tokio::test]
    async fn a_job_that_fails_with_the_new_image_keeps_what_waits_for_it_and_what_shares_its_tag_on_the_old_one(
    ) {
        let root = tempfile::tempdir().unwrap();
        let (engine, model) = app_installed(root.path()).await;
        engine
            .broken_in
            .borrow_mut()
            .push(("t-migrate".into(), "sha256:app2".into()));
        let done = update_model(root.path(), &engine, &model, &[]).await;
        let kinds = kinds(&done);
        assert_eq!(kinds[1].1, "up to date");
        assert!(
            kinds[2]
                .1
                .starts_with("failed: it failed with its new image app2: ")
                && kinds[2].1.contains("job t-migrate failed (exit code 1)"),
            "{kinds:?}"
        );
        for k in &kinds[3..6] {
            assert_eq!(
                k.1, "failed: not updated: job migrate failed with the same image app:prod",
                "{kinds:?}"
            );
        }
        let calls = engine.calls.borrow().clone();
        assert!(
            !calls.iter().any(|c| c.ends_with(" t-web")
                || c.ends_with(" t-worker")
                || c.ends_with(" t-nightly")),
            "{calls:?}"
        );
        // The tag is back on the image web and worker run: the next apply leaves them be.
        assert_eq!(engine.images.borrow()["app:prod"].id, "sha256:app1");
        assert_eq!(rollback_tags(&engine), Vec::<String>::new());
        engine.calls.borrow_mut().clear();
        run_profile(root.path(), &engine, APP_PROFILE)
            .await
            .unwrap();
        let calls = engine.calls.borrow().clone();
        assert!(calls.iter().all(|c| c.ends_with(" t-migrate")), "{calls:?}");
    }

    #[tokio::test]
    async fn a_service_that_does_not_come_up_takes_back_the_ones_on_its_tag_already_moved() {
        let root = tempfile::tempdir().unwrap();
        let (engine, model) = app_installed(root.path()).await;
        engine
            .broken_in
            .borrow_mut()
            .push(("t-worker".into(), "sha256:app2".into()));
        let done = update_model(root.path(), &engine, &model, &[]).await;
        assert_eq!(
            kinds(&done),
            [
                ("db".into(), "up to date".into()),
                ("other".into(), "up to date".into()),
                ("migrate".into(), "failed: it ran with the new image, but worker runs the same image app:prod and did not come up with it: what it changed is not undone, and the next `pi-setup apply` runs it again with the old image".into()),
                ("nightly".into(), "failed: it ran with the new image, but worker runs the same image app:prod and did not come up with it: what it changed is not undone, and the next `pi-setup apply` runs it again with the old image".into()),
                ("web".into(), "rolled back with Some(\"worker\")".into()),
                ("worker".into(), "rolled back with None".into()),
            ]
        );
        let Outcome::RolledBack { why, archive, .. } = &done[4].1 else {
            unreachable!()
        };
        assert_eq!(
            why,
            "worker runs the same image app:prod and did not come up with it"
        );
        assert!(archive.as_ref().is_some_and(|a| a.is_file()));
        // Both run the old image again, web on its volume as it was; the tag is back.
        assert_eq!(image_of(&engine, "t-web"), "sha256:app1");
        assert_eq!(image_of(&engine, "t-worker"), "sha256:app1");
        assert_eq!(engine.images.borrow()["app:prod"].id, "sha256:app1");
        assert_eq!(
            std::fs::read_to_string(root.path().join("var/vol/web/data/state")).unwrap(),
            "one"
        );
        assert_eq!(rollback_tags(&engine), Vec::<String>::new());
        for c in ["t-web", "t-worker", "t-other"] {
            assert!(engine
                .containers
                .borrow()
                .iter()
                .any(|x| x.name == c && x.running()));
        }
        // The worker went back first, then web (latest first).
        let calls = engine.calls.borrow().clone();
        let last = |c: &str| calls.iter().rposition(|x| x == c).unwrap();
        assert!(last("start t-worker") < last("start t-web"), "{calls:?}");
    }

    /// The journal's note of `service` of `APP_PROFILE` moving from app1 to `app:prod`.
    fn note_app(
        paths: &Paths,
        service: &str,
        archive: Option<std::path::PathBuf>,
        confirmed: bool,
    ) {
        super::journal_add(
            paths,
            super::Moving {
                service: service.into(),
                container: format!("t-{service}"),
                image: "app:prod".into(),
                kept: format!("pi-setup-rollback/t-{service}:app1"),
                built: false,
                archive,
                confirmed,
            },
        )
        .unwrap();
    }

    #[tokio::test]
    async fn an_update_killed_in_its_rollback_is_finished_by_the_next_apply() {
        let root = tempfile::tempdir().unwrap();
        let (engine, model) = app_installed(root.path()).await;
        let done = update_model(root.path(), &engine, &model, &[]).await;
        let Some((_, Outcome::Updated { archive, .. })) = done.iter().find(|(s, _)| s == "web")
        else {
            panic!("{done:?}")
        };
        let archive = archive.clone().unwrap();
        assert!(!super::interrupted(&ctx(root.path()).paths));
        // The state a kill leaves once worker's rollback has given the tag back: web still
        // on the new image over what it wrote, both noted, the old image kept.
        let state = root.path().join("var/vol/web/data/state");
        std::fs::write(&state, "written by app2").unwrap();
        for (r, id) in [
            ("app:prod", "sha256:app1"),
            ("pi-setup-rollback/t-web:app1", "sha256:app1"),
            ("pi-setup-rollback/t-worker:app1", "sha256:app1"),
        ] {
            engine.images.borrow_mut().insert(r.into(), image(id));
        }
        let paths = ctx(root.path()).paths;
        for (service, archive) in [("web", Some(archive)), ("worker", None)] {
            note_app(&paths, service, archive, service == "web");
        }
        engine.calls.borrow_mut().clear();
        run_profile(root.path(), &engine, APP_PROFILE)
            .await
            .unwrap();
        for c in ["t-web", "t-worker"] {
            assert_eq!(image_of(&engine, c), "sha256:app1", "{c}");
        }
        assert_eq!(std::fs::read_to_string(&state).unwrap(), "one");
        assert!(!super::interrupted(&paths));
        // Only web and worker were touched; the jobs that ran with app2 run again with app1
        // (as the README says).
        let calls = engine.calls.borrow().clone();
        assert!(
            calls.iter().all(|c| c.starts_with("tag")
                || c.starts_with("remove_image")
                || c.ends_with(" t-web")
                || c.ends_with(" t-worker")
                || c.ends_with(" t-migrate")
                || c.ends_with(" t-nightly")
                || c.ends_with(" t-gateway")),
            "{calls:?}"
        );
        engine.calls.borrow_mut().clear();
        run_profile(root.path(), &engine, APP_PROFILE)
            .await
            .unwrap();
        assert_eq!(engine.calls.borrow().clone(), Vec::<String>::new());
    }

    #[tokio::test]
    async fn an_update_killed_midway_goes_back_as_one_version_or_stays_if_all_run_their_tag() {
        let root = tempfile::tempdir().unwrap();
        let (engine, model) = app_installed(root.path()).await;
        update_model(root.path(), &engine, &model, &[]).await;
        // Killed once web ran app2 (its tag's image), and worker's container was removed
        // and not created yet: worker goes back to app1…
        for c in ["t-web", "t-worker"] {
            engine
                .images
                .borrow_mut()
                .insert(format!("pi-setup-rollback/{c}:app1"), image("sha256:app1"));
        }
        engine
            .containers
            .borrow_mut()
            .retain(|c| c.name != "t-worker");
        let paths = ctx(root.path()).paths;
        for service in ["web", "worker"] {
            note_app(&paths, service, None, service == "web");
        }
        engine.calls.borrow_mut().clear();
        super::recover(&ctx(root.path()), &model, &engine, &Progress::new())
            .await
            .unwrap();
        // …and web, on the same image, goes back with it: one version, under its tag.
        assert_eq!(image_of(&engine, "t-worker"), "sha256:app1");
        assert_eq!(image_of(&engine, "t-web"), "sha256:app1");
        assert_eq!(engine.images.borrow()["app:prod"].id, "sha256:app1");
        assert!(!super::interrupted(&paths));

        // Killed with every one on its tag's image: nothing to do.
        let root = tempfile::tempdir().unwrap();
        let (engine, model) = app_installed(root.path()).await;
        update_model(root.path(), &engine, &model, &[]).await;
        engine
            .images
            .borrow_mut()
            .insert("pi-setup-rollback/t-web:app1".into(), image("sha256:app1"));
        let paths = ctx(root.path()).paths;
        note_app(&paths, "web", None, true);
        engine.calls.borrow_mut().clear();
        super::recover(&ctx(root.path()), &model, &engine, &Progress::new())
            .await
            .unwrap();
        assert_eq!(image_of(&engine, "t-web"), "sha256:app2");
        // Only the tag kept for a rollback goes.
        assert_eq!(
            engine.calls.borrow().clone(),
            ["remove_image pi-setup-rollback/t-web:app1"]
        );
        assert!(!super::interrupted(&paths));
    }

    /// `update` killed (the fake panics) at `call`: the state it leaves, journal included.
    async fn killed_at(root: &Path, engine: &Fake, model: &Model, call: &str) {
        use futures_util::FutureExt as _;
        *engine.panic_at.borrow_mut() = Some(call.to_string());
        let run = std::panic::AssertUnwindSafe(update_model(root, engine, model, &[]))
            .catch_unwind()
            .await;
        assert!(run.is_err(), "not killed at {call}");
        *engine.panic_at.borrow_mut() = None;
        assert!(super::interrupted(&ctx(root).paths));
    }

    #[tokio::test]
    async fn an_update_killed_at_each_step_is_put_back_by_the_next_run() {
        // Killed as worker's new container starts: web (seen up on app2) and worker go back
        // to app1, web's volume from its archive; the tag with them.
        let root = tempfile::tempdir().unwrap();
        let (engine, model) = app_installed(root.path()).await;
        killed_at(root.path(), &engine, &model, "start t-worker").await;
        assert_eq!(image_of(&engine, "t-web"), "sha256:app2");
        std::fs::write(root.path().join("var/vol/web/data/state"), "by app2").unwrap();
        run_profile(root.path(), &engine, APP_PROFILE)
            .await
            .unwrap();
        for c in ["t-web", "t-worker"] {
            assert_eq!(image_of(&engine, c), "sha256:app1", "{c}");
        }
        assert_eq!(engine.images.borrow()["app:prod"].id, "sha256:app1");
        assert_eq!(
            std::fs::read_to_string(root.path().join("var/vol/web/data/state")).unwrap(),
            "one"
        );
        assert!(!super::interrupted(&ctx(root.path()).paths));
        assert_eq!(rollback_tags(&engine), Vec::<String>::new());

        // Killed before web's old container went: it runs app1 still; the tag goes back to
        // it, so the next apply does not move it unwatched.
        let root = tempfile::tempdir().unwrap();
        let (engine, model) = app_installed(root.path()).await;
        killed_at(root.path(), &engine, &model, "remove_container t-web").await;
        assert_eq!(engine.images.borrow()["app:prod"].id, "sha256:app2");
        engine.calls.borrow_mut().clear();
        super::recover(&ctx(root.path()), &model, &engine, &Progress::new())
            .await
            .unwrap();
        assert_eq!(engine.images.borrow()["app:prod"].id, "sha256:app1");
        assert_eq!(image_of(&engine, "t-web"), "sha256:app1");
        assert!(
            !engine.calls.borrow().iter().any(|c| c.ends_with(" t-web")),
            "{:?}",
            engine.calls.borrow()
        );
        assert!(!super::interrupted(&ctx(root.path()).paths));

        // Killed after every one came up, before the journal went: nothing to put back.
        let root = tempfile::tempdir().unwrap();
        let (engine, model) = app_installed(root.path()).await;
        killed_at(
            root.path(),
            &engine,
            &model,
            "remove_image pi-setup-rollback/t-migrate:app1",
        )
        .await;
        engine.calls.borrow_mut().clear();
        super::recover(&ctx(root.path()), &model, &engine, &Progress::new())
            .await
            .unwrap();
        for c in ["t-web", "t-worker"] {
            assert_eq!(image_of(&engine, c), "sha256:app2", "{c}");
        }
        assert!(engine
            .calls
            .borrow()
            .iter()
            .all(|c| c.starts_with("remove_image pi-setup-rollback/")));
    }

    #[tokio::test]
    async fn a_rollback_that_fails_part_way_is_tried_again_by_the_next_run() {
        let root = tempfile::tempdir().unwrap();
        let (engine, model) = app_installed(root.path()).await;
        // Docker refuses worker's container, new and old alike.
        *engine.fail.borrow_mut() = Some("create_container t-worker".into());
        let done = update_model(root.path(), &engine, &model, &[]).await;
        assert!(
            matches!(&done.iter().find(|(s, _)| s == "worker").unwrap().1,
                Outcome::RolledBack { still_down: Some(s), .. } if s.starts_with("the rollback failed: ")),
            "{done:?}"
        );
        assert!(!engine
            .containers
            .borrow()
            .iter()
            .any(|c| c.name == "t-worker"));
        // Its note stays; once Docker takes it, the next run puts it back on app1.
        assert!(super::interrupted(&ctx(root.path()).paths));
        *engine.fail.borrow_mut() = None;
        run_profile(root.path(), &engine, APP_PROFILE)
            .await
            .unwrap();
        assert_eq!(image_of(&engine, "t-worker"), "sha256:app1");
        assert!(!super::interrupted(&ctx(root.path()).paths));
    }

    #[tokio::test]
    async fn a_journal_note_that_names_another_container_is_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let (engine, model) = app_installed(root.path()).await;
        let paths = ctx(root.path()).paths;
        engine
            .images
            .borrow_mut()
            .insert("pi-setup-rollback/t-db:db0".into(), image("sha256:db0"));
        // Edited by hand: web's note pointing at db's container, and one of no service.
        for (service, container) in [("web", "t-db"), ("gone", "t-gone")] {
            super::journal_add(
                &paths,
                super::Moving {
                    service: service.into(),
                    container: container.into(),
                    image: "db:16".into(),
                    kept: format!("pi-setup-rollback/{container}:db0"),
                    built: false,
                    archive: None,
                    confirmed: false,
                },
            )
            .unwrap();
        }
        engine.calls.borrow_mut().clear();
        super::recover(&ctx(root.path()), &model, &engine, &Progress::new())
            .await
            .unwrap();
        assert_eq!(image_of(&engine, "t-db"), "sha256:db1");
        assert_eq!(engine.images.borrow()["db:16"].id, "sha256:db1");
        assert!(
            !engine
                .calls
                .borrow()
                .iter()
                .any(|c| c.contains("t-db") && !c.starts_with("remove_image pi-setup-rollback/")),
            "{:?}",
            engine.calls.borrow()
        );
        assert!(!super::interrupted(&paths));
    }

    #[tokio::test]
    async fn a_name_that_is_not_a_service_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let engine = installed(root.path()).await;
        for (name, says) in [
            (
                "nope",
                "there is no service named 'nope' (services: web, db, api)",
            ),
            ("gateway", "the gateway is not updated by `update`"),
        ] {
            let e = check(
                &ctx(root.path()),
                &model(root.path()),
                &[name.into()],
                &engine,
            )
            .await
            .unwrap_err();
            assert!(e.to_string().starts_with(says), "{e}");
            assert!(e.is::<BadInput>());
            assert_eq!(Exit::of(&e), Exit::BadInput);
        }
    }
}
