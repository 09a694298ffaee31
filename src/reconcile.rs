//! The one path every state-changing command takes: model → desired (from the model and the
//! images) → observed → plan → printed (dry run) or executed → report.

use anyhow::{Context as _, Result};

use crate::commands::Context;
use crate::desired;
use crate::drain::Drains;
use crate::engine::Engine;
use crate::error::BadInput;
use crate::execute;
use crate::input::Inputs;
use crate::model::Model;
use crate::observe;
use crate::plan::{self, ConfigChange};
use crate::progress::Progress;
use crate::report;

/// What a state-changing command asks of `reconcile`. The caller holds the lock (`Context::lock`).
pub(crate) struct Request<'a> {
    pub(crate) inputs: &'a Inputs,
    /// Definitions to persist (profile, service files, secrets) or remove.
    pub(crate) config: ConfigChange,
    pub(crate) dry_run: bool,
}

/// The one path every state-changing command takes: validate → desired → observe → plan →
/// print (dry run) or apply → report. Bad input is rejected before anything is touched.
///
/// Images come first: the paths an image declares as volumes shape its container (see
/// `desired::image_volume_mounts`), so missing images are pulled, and only then is the rest
/// planned. A run that cannot pull still changes nothing.
pub(crate) async fn reconcile(ctx: &Context, req: Request<'_>) -> Result<()> {
    let model = req.inputs.model()?;
    let engine = crate::engine::connect().await?;
    reconcile_with(ctx, &req, &model, &engine).await
}

/// `reconcile` on a given engine (the fast tests give it a fake).
pub(crate) async fn reconcile_with(
    ctx: &Context,
    req: &Request<'_>,
    model: &Model,
    engine: &impl Engine,
) -> Result<()> {
    // Before observing: a volume an interrupted restore left missing would be planned as a
    // new, empty directory.
    if !req.dry_run {
        crate::backup::run::recover_restores(&ctx.paths)?;
        // A killed `update`: its services back on the images they ran, with their volumes.
        crate::update::recover(ctx, model, engine, &Progress::new()).await?;
    }
    let mut plan = plan_once(ctx, req, model, engine).await?;
    if req.dry_run {
        print!(
            "{}",
            report::plan_text(&plan.1, &req.inputs.profile.origin, &plan.0.unknown_images)
        );
        return Ok(());
    }
    let progress = Progress::new();
    let drains = Drains::new(model, &ctx.paths, &ctx.names, &progress);
    let mut done = Vec::new();
    let (pulls, _): (Vec<_>, Vec<_>) = plan.1.actions.iter().cloned().partition(|a| {
        matches!(
            a,
            plan::Action::PullImage { .. } | plan::Action::BuildImage { .. }
        )
    });
    if !pulls.is_empty() {
        let pulls = plan::Plan { actions: pulls };
        let applied = execute::apply(
            &pulls, &plan.0, engine, &ctx.paths, &ctx.names, &progress, &drains,
        )
        .await?;
        done.extend(applied.done);
        plan = plan_once(ctx, req, model, engine).await?;
    }
    let (desired, plan) = plan;
    let applied = execute::apply(
        &plan, &desired, engine, &ctx.paths, &ctx.names, &progress, &drains,
    )
    .await?;
    done.extend(applied.done);
    let states = engine
        .managed_containers(&ctx.names.instance_label())
        .await?;
    print!("{}", report::summary(&done, model, &ctx.names, &states));
    Ok(())
}

/// The images as the daemon has them, and the desired state derived from them and the model.
pub(crate) async fn desired_state(
    ctx: &Context,
    model: &Model,
    engine: &impl Engine,
) -> Result<(
    desired::Desired,
    std::collections::BTreeMap<String, Option<crate::engine::ImageInfo>>,
)> {
    let built = with_build_tags(ctx, model)?;
    let model = &built;
    let refs: Vec<String> = std::iter::once(model.gateway.image.clone())
        .chain(model.services.iter().map(|s| s.image.clone()))
        .collect();
    let images = observe::images(engine, &refs)
        .await
        .context("reading the current state")?;
    let desired = desired::desired(
        model,
        &ctx.paths,
        &ctx.names,
        &ctx.exec,
        crate::reuseport::kernel_can_migrate_requests(),
        &images,
    );
    Ok((desired, images))
}

/// The model with each built image tagged by its context's digest
/// (`pi-setup-build/<service>:<12 hex>`): a changed context is a new image, and so a new
/// container; an unchanged one is neither rebuilt nor recreated.
fn with_build_tags(ctx: &Context, model: &Model) -> Result<Model> {
    let mut m = model.clone();
    for s in &mut m.services {
        if let Some(b) = &s.build {
            let dir = ctx.paths.host(&b.context);
            let (_, digest) = crate::backup::build_context(&dir)
                .map_err(|e| BadInput(format!("build context of service '{}': {e}", s.name)))?;
            s.image = format!("{}:{}", s.image, &digest[..12]);
        }
    }
    Ok(m)
}

/// Observes the images, derives the desired state from them, observes the rest, and plans.
async fn plan_once(
    ctx: &Context,
    req: &Request<'_>,
    model: &Model,
    engine: &impl Engine,
) -> Result<(desired::Desired, plan::Plan)> {
    let (desired, images) = desired_state(ctx, model, engine).await?;
    let systemd = ctx.paths.is_system() && crate::host::systemd_running();
    let actual = observe::observe(
        engine,
        &desired,
        images,
        &req.config.paths(),
        &ctx.names.instance_label(),
        systemd,
    )
    .await
    .context("reading the current state")?;
    let plan = plan::plan(&desired, &actual, &ctx.names, &req.config)
        .map_err(|c| BadInput(c.to_string()))?;
    Ok((desired, plan))
}

#[cfg(test)]
pub(crate) mod tests {
    //! The whole reconcile path — model, desired, observe, plan, apply — on a fake engine and a
    //! temporary root: no Docker needed.

    use std::collections::BTreeMap;
    use std::path::Path;

    use super::{reconcile_with, Request};
    use crate::commands::Context;
    use crate::desired::ObjectNames;
    use crate::engine::fake::Fake;
    use crate::engine::ImageInfo;
    use crate::host::paths::Paths;
    use crate::input::source::Source;
    use crate::input::Inputs;
    use crate::plan::ConfigChange;

    const PROFILE: &str = "[gateway]\nimage = \"caddy:2\"\nhttps = \"off\"\n\n[[service]]\nname = \"web\"\nimage = \"busybox:1\"\ndomains = [\"web.test\"]\n";

    pub(crate) fn ctx(root: &Path) -> Context {
        Context {
            paths: Paths::new(root),
            names: ObjectNames {
                instance: Some("t".into()),
            },
            exec: "/usr/local/bin/pi-setup".into(),
        }
    }

    async fn run(root: &Path, engine: &Fake) -> anyhow::Result<()> {
        run_profile(root, engine, PROFILE).await
    }

    pub(crate) async fn run_profile(
        root: &Path,
        engine: &Fake,
        profile: &str,
    ) -> anyhow::Result<()> {
        let inputs = Inputs {
            profile: Source::new("p.toml", profile),
            services: Vec::new(),
            secrets: BTreeMap::new(),
            paths: Paths::new(root),
        };
        let model = inputs.model()?;
        let req = Request {
            inputs: &inputs,
            config: ConfigChange::default(),
            dry_run: false,
        };
        reconcile_with(&ctx(root), &req, &model, engine).await
    }

    /// Caddy's admin API as the gateway container would serve it on its unix socket under
    /// the root: 200 to every request (the real one is exercised by the Docker tests).
    pub(crate) fn fake_gateway_admin(root: &Path) {
        fake_gateway_admin_noting(root, std::sync::Arc::default());
    }

    /// `fake_gateway_admin`, noting each configuration loaded into `journal` (the fake
    /// engine's, so reloads and container calls are in one order): `gateway load` for the
    /// gateway's own Caddyfile, `gateway load draining web` for one that drains `web`. No
    /// request is ever in flight.
    pub(crate) fn fake_gateway_admin_noting(
        root: &Path,
        journal: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    ) {
        use std::io::{BufRead, BufReader, Read, Write};
        let dir = root.join("var/vol/gateway/admin");
        std::fs::create_dir_all(&dir).unwrap();
        let listener = std::os::unix::net::UnixListener::bind(dir.join("admin.sock")).unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut length = 0;
                let mut request_line = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if request_line.is_empty() {
                        request_line = line.trim().to_string();
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                if request_line.starts_with("POST /load ") {
                    let body = String::from_utf8_lossy(&body);
                    let draining = body
                        .lines()
                        .find_map(|l| l.strip_prefix("# Draining "))
                        .and_then(|l| l.split(':').next())
                        .map(|s| format!(" draining {s}"))
                        .unwrap_or_default();
                    journal
                        .lock()
                        .unwrap()
                        .push(format!("gateway load{draining}"));
                }
                let answer: &[u8] = if request_line.starts_with("GET /reverse_proxy/upstreams ") {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]"
                } else {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
                };
                let _ = conn.write_all(answer);
            }
        });
    }

    fn calls(engine: &Fake) -> Vec<String> {
        engine.calls.borrow().clone()
    }

    #[tokio::test]
    async fn a_fresh_host_is_provisioned_and_a_second_run_calls_nothing() {
        let root = tempfile::tempdir().unwrap();
        fake_gateway_admin(root.path());
        let engine = Fake::with_images(&["caddy:2", "busybox:1"]);
        run(root.path(), &engine).await.unwrap();
        assert_eq!(
            calls(&engine),
            [
                "create_network t-intercontainer",
                "create_container t-gateway",
                "start t-gateway",
                "create_container t-web",
                "start t-web",
            ]
        );
        let site = root.path().join("var/vol/gateway/etc/sites/web.caddy");
        assert!(std::fs::read_to_string(site)
            .unwrap()
            .contains("reverse_proxy web:80"));
        run(root.path(), &engine).await.unwrap();
        assert_eq!(calls(&engine).len(), 5, "{:?}", calls(&engine));
    }

    #[tokio::test]
    async fn a_failure_mid_apply_names_the_step_and_the_next_run_finishes_the_rest() {
        let root = tempfile::tempdir().unwrap();
        fake_gateway_admin(root.path());
        let engine = Fake::with_images(&["caddy:2", "busybox:1"]);
        *engine.fail.borrow_mut() = Some("create_container t-web".into());
        let e = format!("{:#}", run(root.path(), &engine).await.unwrap_err());
        // The last step failed, and the message counts the ones done before it.
        let n: usize = e
            .strip_prefix("step ")
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{e}"));
        assert!(
            e.starts_with(&format!(
                "step {n} of {n} failed: create and start container t-web from busybox:1 (new) ({} earlier step(s) were done; run the command again to finish)",
                n - 1
            )),
            "{e}"
        );
        *engine.fail.borrow_mut() = None;
        engine.calls.borrow_mut().clear();
        run(root.path(), &engine).await.unwrap();
        assert_eq!(calls(&engine), ["create_container t-web", "start t-web"]);
    }

    #[tokio::test]
    async fn a_missing_image_is_pulled_before_planning_so_its_volumes_are_mapped() {
        let root = tempfile::tempdir().unwrap();
        fake_gateway_admin(root.path());
        let engine = Fake::with_images(&["caddy:2"]);
        engine.registry.borrow_mut().insert(
            "busybox:1".into(),
            ImageInfo {
                id: "sha256:b".into(),
                volumes: vec!["/data".into()],
            },
        );
        run(root.path(), &engine).await.unwrap();
        assert_eq!(calls(&engine)[0], "pull busybox:1");
        assert!(root.path().join("var/vol/web/image-volumes/data").is_dir());
    }

    #[tokio::test]
    async fn a_failed_pull_changes_nothing_and_says_why_once_then_what_to_do() {
        let root = tempfile::tempdir().unwrap();
        let engine = Fake::with_images(&["caddy:2"]);
        let e = run(root.path(), &engine).await.unwrap_err();
        let chain: Vec<String> = e.chain().map(ToString::to_string).collect();
        assert_eq!(
            chain[0],
            "step 1 of 1 failed: pull image busybox:1 (nothing had been changed before it)"
        );
        assert!(
            chain[1].starts_with("pulling image busybox:1: manifest for busybox:1 not found\n  image busybox:1 is not on this machine"),
            "{chain:?}"
        );
        assert_eq!(chain.len(), 2, "the daemon's reason once: {chain:?}");
        assert_eq!(calls(&engine), ["pull busybox:1"]);
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn services_start_after_what_they_depend_on_and_healthy_ones_are_waited_for() {
        let root = tempfile::tempdir().unwrap();
        fake_gateway_admin(root.path());
        let engine = Fake::with_images(&["caddy:2", "busybox:1"]);
        // Defined api first; it needs db healthy, and db needs cache started.
        let profile = "[gateway]\nimage = \"caddy:2\"\nhttps = \"off\"\n\n\
            [[service]]\nname = \"api\"\nimage = \"busybox:1\"\n\
            depends_on = [{ name = \"db\", condition = \"healthy\" }]\n\n\
            [[service]]\nname = \"db\"\nimage = \"busybox:1\"\nhealth_cmd = \"true\"\ndepends_on = [\"cache\"]\n\n\
            [[service]]\nname = \"cache\"\nimage = \"busybox:1\"\n";
        run_profile(root.path(), &engine, profile).await.unwrap();
        let created: Vec<String> = calls(&engine)
            .into_iter()
            .filter(|c| c.starts_with("create_container"))
            .collect();
        assert_eq!(
            created,
            [
                "create_container t-gateway",
                "create_container t-cache",
                "create_container t-db",
                "create_container t-api",
            ]
        );
    }

    #[tokio::test]
    async fn a_dependency_that_fails_its_health_check_stops_the_run_before_its_dependent_starts() {
        let root = tempfile::tempdir().unwrap();
        fake_gateway_admin(root.path());
        let engine = Fake::with_images(&["caddy:2", "busybox:1"]);
        engine
            .broken_in
            .borrow_mut()
            .push(("t-db".into(), "sha256:busybox:1".into()));
        let profile = "[gateway]\nimage = \"caddy:2\"\nhttps = \"off\"\n\n\
            [[service]]\nname = \"api\"\nimage = \"busybox:1\"\n\
            depends_on = [{ name = \"db\", condition = \"healthy\" }]\n\n\
            [[service]]\nname = \"db\"\nimage = \"busybox:1\"\nhealth_cmd = \"true\"\n";
        let e = run_profile(root.path(), &engine, profile)
            .await
            .unwrap_err();
        assert!(
            format!("{e:#}").contains(
                "t-api waits for t-db to be healthy, and its health check fails: t-api was not started (see `docker logs t-db`)"
            ),
            "{e:#}"
        );
        assert!(!calls(&engine).contains(&"start t-api".to_string()));
    }

    #[tokio::test]
    async fn a_job_runs_once_before_what_needs_it_and_again_only_when_it_changes_or_failed() {
        let root = tempfile::tempdir().unwrap();
        fake_gateway_admin(root.path());
        let engine = Fake::with_images(&["caddy:2", "busybox:1"]);
        let profile = |env: &str| {
            format!(
                "[gateway]\nimage = \"caddy:2\"\nhttps = \"off\"\n\n\
                 [[service]]\nname = \"web\"\nimage = \"busybox:1\"\n\
                 depends_on = [{{ name = \"migrate\", condition = \"completed\" }}]\n\n\
                 [[job]]\nname = \"migrate\"\nimage = \"busybox:1\"\nenv = {{ V = \"{env}\" }}\n"
            )
        };
        // It fails: what depends on it is not created, and the output is shown.
        *engine.job_exit.borrow_mut() = 3;
        let e = format!(
            "{:#}",
            run_profile(root.path(), &engine, &profile("1"))
                .await
                .unwrap_err()
        );
        assert!(e.contains("job t-migrate failed (exit code 3)"), "{e}");
        assert!(!calls(&engine).contains(&"create_container t-web".to_string()));

        *engine.job_exit.borrow_mut() = 0;
        engine.calls.borrow_mut().clear();
        run_profile(root.path(), &engine, &profile("1"))
            .await
            .unwrap();
        let order: Vec<String> = calls(&engine)
            .into_iter()
            .filter(|c| c.contains("migrate") || c.contains("t-web"))
            .collect();
        assert_eq!(
            order,
            [
                "remove_container t-migrate",
                "create_container t-migrate",
                "start t-migrate",
                "create_container t-web",
                "start t-web",
            ]
        );
        // Done: nothing to do until its definition changes.
        engine.calls.borrow_mut().clear();
        run_profile(root.path(), &engine, &profile("1"))
            .await
            .unwrap();
        assert_eq!(calls(&engine), Vec::<String>::new());
        run_profile(root.path(), &engine, &profile("2"))
            .await
            .unwrap();
        assert!(calls(&engine).contains(&"start t-migrate".to_string()));
    }

    #[tokio::test]
    async fn a_built_image_is_built_once_and_again_only_when_its_context_changes() {
        let root = tempfile::tempdir().unwrap();
        fake_gateway_admin(root.path());
        let context = root.path().join("srv/app");
        std::fs::create_dir_all(&context).unwrap();
        std::fs::write(context.join("Dockerfile"), "FROM busybox:1\nCOPY . /app\n").unwrap();
        std::fs::write(context.join("app.sh"), "echo one\n").unwrap();
        let engine = Fake::with_images(&["caddy:2"]);
        let profile = "[gateway]\nimage = \"caddy:2\"\nhttps = \"off\"\n\n\
            [[service]]\nname = \"app\"\nbuild = { context = \"/srv/app\" }\n";
        run_profile(root.path(), &engine, profile).await.unwrap();
        let built: Vec<String> = calls(&engine)
            .into_iter()
            .filter(|c| c.starts_with("build "))
            .collect();
        assert_eq!(built.len(), 1, "{built:?}");
        assert!(
            built[0].starts_with("build pi-setup-build/app:"),
            "{built:?}"
        );
        engine.calls.borrow_mut().clear();
        run_profile(root.path(), &engine, profile).await.unwrap();
        assert_eq!(
            calls(&engine),
            Vec::<String>::new(),
            "unchanged: nothing built or recreated"
        );
        std::fs::write(context.join("app.sh"), "echo two\n").unwrap();
        run_profile(root.path(), &engine, profile).await.unwrap();
        let after = calls(&engine);
        assert!(
            after
                .iter()
                .any(|c| c.starts_with("build pi-setup-build/app:") && *c != built[0]),
            "{after:?}"
        );
        assert!(
            after.contains(&"create_container t-app".to_string()),
            "{after:?}"
        );
    }

    /// The fake engine's journal since the last look, emptied.
    fn journal(engine: &Fake) -> Vec<String> {
        std::mem::take(&mut *engine.journal.lock().unwrap())
    }

    /// web has a domain; worker has none; migrate is a job. `env` goes into all three.
    fn drain_profile(env: &str) -> String {
        format!(
            "[gateway]\nimage = \"caddy:2\"\nhttps = \"off\"\n\n\
             [[service]]\nname = \"web\"\nimage = \"busybox:1\"\ndomains = [\"web.test\"]\n\
             env = {{ V = \"{env}\" }}\n\n\
             [[service]]\nname = \"worker\"\nimage = \"busybox:1\"\nenv = {{ V = \"{env}\" }}\n\n\
             [[job]]\nname = \"migrate\"\nimage = \"busybox:1\"\nenv = {{ V = \"{env}\" }}\n"
        )
    }

    #[tokio::test]
    async fn a_routed_service_that_apply_recreates_is_drained_first_and_routed_to_once_started() {
        let root = tempfile::tempdir().unwrap();
        let engine = Fake::with_images(&["caddy:2", "busybox:1"]);
        fake_gateway_admin_noting(root.path(), engine.journal.clone());
        run_profile(root.path(), &engine, &drain_profile("1"))
            .await
            .unwrap();
        let first = journal(&engine);
        assert!(
            !first.iter().any(|c| c.starts_with("gateway load")),
            "a fresh install stops nothing: {first:?}"
        );
        run_profile(root.path(), &engine, &drain_profile("2"))
            .await
            .unwrap();
        // The job and the unrouted worker are replaced as before; web only once the gateway
        // shows its maintenance page, and the gateway routes to it again once it has started.
        assert_eq!(
            journal(&engine),
            [
                "gateway load draining web",
                "remove_container t-web",
                "create_container t-web",
                "start t-web",
                "gateway load",
                "remove_container t-worker",
                "create_container t-worker",
                "start t-worker",
                "remove_container t-migrate",
                "create_container t-migrate",
                "start t-migrate",
            ]
        );
        // The gateway runs its own files again, as noted: nothing left to do, no reload.
        run_profile(root.path(), &engine, &drain_profile("2"))
            .await
            .unwrap();
        assert_eq!(journal(&engine), Vec::<String>::new());
    }

    #[tokio::test]
    async fn a_stopped_container_or_a_stopped_gateway_means_no_drain() {
        let root = tempfile::tempdir().unwrap();
        let engine = Fake::with_images(&["caddy:2", "busybox:1"]);
        fake_gateway_admin_noting(root.path(), engine.journal.clone());
        run_profile(root.path(), &engine, &drain_profile("1"))
            .await
            .unwrap();
        let stop = |name: &str| {
            for c in engine.containers.borrow_mut().iter_mut() {
                if c.name == name {
                    c.state = crate::engine::ContainerState::Exited;
                }
            }
        };
        stop("t-web");
        journal(&engine);
        run_profile(root.path(), &engine, &drain_profile("2"))
            .await
            .unwrap();
        let calls = journal(&engine);
        assert!(calls.contains(&"create_container t-web".to_string()));
        assert!(
            !calls.iter().any(|c| c.starts_with("gateway load")),
            "{calls:?}"
        );
        // The gateway down: web is replaced all the same (the plan starts the gateway first,
        // so stop it behind the plan's back, between planning and the step).
        stop("t-gateway");
        let drains = crate::drain::Drains::new(
            &drain_model(root.path(), "2"),
            &ctx(root.path()).paths,
            &ctx(root.path()).names,
            &crate::progress::Progress::new(),
        );
        drains.before_stop(&engine, "t-web").await;
        assert_eq!(journal(&engine), Vec::<String>::new());
    }

    fn drain_model(root: &Path, env: &str) -> crate::model::Model {
        Inputs {
            profile: Source::new("p.toml", drain_profile(env)),
            services: Vec::new(),
            secrets: BTreeMap::new(),
            paths: Paths::new(root),
        }
        .model()
        .unwrap()
    }

    #[tokio::test]
    async fn a_run_killed_while_a_service_is_drained_leaves_it_to_the_next_apply_or_heal() {
        let root = tempfile::tempdir().unwrap();
        let engine = Fake::with_images(&["caddy:2", "busybox:1"]);
        fake_gateway_admin_noting(root.path(), engine.journal.clone());
        run_profile(root.path(), &engine, &drain_profile("1"))
            .await
            .unwrap();
        journal(&engine);
        let c = ctx(root.path());
        let kill_after_drain = || async {
            let drains = crate::drain::Drains::new(
                &drain_model(root.path(), "1"),
                &c.paths,
                &c.names,
                &crate::progress::Progress::new(),
            );
            drains.before_stop(&engine, "t-web").await;
            // Dropped without `release`: what a SIGKILL leaves.
        };
        kill_after_drain().await;
        assert_eq!(journal(&engine), ["gateway load draining web"]);
        let marker = root.path().join("var/vol/gateway/admin/loaded");
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "draining web\n");

        // The next apply, with nothing else to do, loads the gateway's own files again.
        run_profile(root.path(), &engine, &drain_profile("1"))
            .await
            .unwrap();
        assert_eq!(journal(&engine), ["gateway load"]);
        run_profile(root.path(), &engine, &drain_profile("1"))
            .await
            .unwrap();
        assert_eq!(journal(&engine), Vec::<String>::new());

        // Or `heal` (every minute) does.
        kill_after_drain().await;
        journal(&engine);
        let healed = crate::drain::recover(&engine, &c.paths, &c.names)
            .await
            .unwrap();
        assert_eq!(healed.as_deref(), Some("web"));
        assert_eq!(journal(&engine), ["gateway load"]);
        assert!(!marker.exists());
        assert_eq!(
            crate::drain::recover(&engine, &c.paths, &c.names)
                .await
                .unwrap(),
            None,
            "once is enough"
        );
        assert_eq!(journal(&engine), Vec::<String>::new());
    }
}
