//! Draining a routed service before its running container is stopped or removed on purpose
//! (`apply` recreating it, `update`, `backup` and `restore` in `stop` mode), so the requests the
//! gateway is proxying to it at that moment finish instead of being cut (a truncated 200, or a
//! 502).
//!
//! How: the gateway is reloaded with that service's proxied routes answered by the maintenance
//! page (`gateway::caddyfile_draining`; its `static` routes are served from disk and keep
//! working). A reload is graceful: the replaced configuration finishes the requests it has
//! (Caddy's `grace_period` is eternal by default, and pi-setup leaves it so: a bounded one would
//! cut long downloads from every service at every reload), while new ones get the new
//! configuration. Caddy's `/load` returns without waiting for them, so pi-setup then asks the
//! admin API how many requests are still in flight to the service (`gateway::in_flight`) and
//! stops the container once there are none, or after `PATIENCE`. Once the service is started
//! again, the gateway is reloaded with its normal routes.
//!
//! A service that is removed (`remove-service`, or gone from the profile at `apply`) is simpler:
//! the plan reloads the gateway without it first, then removes its container once the requests
//! it is answering are done (`Action::RemoveContainer { drain }`, the same wait).
//!
//! Cheap where there is nothing to drain: services without proxied routes, jobs, the gateway
//! itself and containers that are not running are stopped as before, with no reload. A gateway
//! that is not running, or refuses the reload, does not hold anything up either: the service
//! is stopped as before (its routes then show the maintenance page once it is down) and the
//! progress output says so.
//!
//! A run killed between the drain and the reload back must not leave the service in
//! maintenance for good: while a drain is on, the gateway's "loaded" marker says `draining ...`
//! instead of the hash of the files on disk, so the next `apply` (any reconcile) sees the
//! running configuration is not the one on disk and reloads it, and `heal` (every minute)
//! reloads the gateway's own Caddyfile (`recover`).

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::desired::ObjectNames;
use crate::engine::Engine;
use crate::execute::load_into_gateway;
use crate::gateway;
use crate::host;
use crate::host::paths::Paths;
use crate::model::{Model, Service, GATEWAY};
use crate::progress::Progress;

/// How long requests in flight to a drained service may take to finish before it is stopped
/// anyway. Page loads and API calls take well under a second; a long download is cut after
/// this, as it would be without the drain.
pub(crate) const PATIENCE: Duration = Duration::from_secs(5);

/// How often the requests in flight are counted while waiting.
const POLL: Duration = Duration::from_millis(50);

/// What the loaded marker starts with while a drain is on.
const MARKER_PREFIX: &str = "draining";

/// The drains of one command: what it needs to render the gateway's configuration, and which
/// services are drained now. One per command, shared by everything in it that stops
/// containers, so a service drained by one step (`update` stopping it for its archive) is
/// brought back by the next (its new container started).
pub(crate) struct Drains {
    gateway: crate::model::Gateway,
    services: Vec<Service>,
    paths: Paths,
    names: ObjectNames,
    progress: Progress,
    state: RefCell<State>,
}

#[derive(Default)]
struct State {
    /// The services whose routes show the maintenance page now.
    held: BTreeSet<String>,
    /// The loaded marker as it was before the first of them: put back once none is held.
    marker_before: Saved,
}

/// What the loaded marker held before a drain.
#[derive(Default)]
enum Saved {
    /// No drain is on.
    #[default]
    Nothing,
    /// There was no marker.
    Missing,
    Contents(Vec<u8>),
}

impl Drains {
    pub(crate) fn new(
        model: &Model,
        paths: &Paths,
        names: &ObjectNames,
        progress: &Progress,
    ) -> Self {
        Drains {
            gateway: model.gateway.clone(),
            services: model.services.clone(),
            paths: paths.clone(),
            names: names.clone(),
            progress: progress.clone(),
            state: RefCell::default(),
        }
    }

    /// The service whose container this is, if draining it means anything: a service (not a
    /// job, not the gateway) with proxied routes.
    fn routed_service(&self, container: &str) -> Option<&str> {
        self.services
            .iter()
            .find(|s| self.names.object(s.name.as_str()) == container)
            .filter(|s| s.job.is_none() && !s.all_routes().is_empty())
            .map(|s| s.name.as_str())
    }

    fn marker(&self) -> PathBuf {
        self.paths.vol(GATEWAY).join(gateway::LOADED_MARKER_ON_HOST)
    }

    /// Call before `container` is stopped or removed on purpose: if it is a running, routed
    /// service, the gateway shows the maintenance page for its routes from now on, and this
    /// returns once the requests it was proxying to it have finished (at most `PATIENCE`).
    /// Never fails: without a drain the container is stopped as it was before drains existed.
    pub(crate) async fn before_stop(&self, engine: &impl Engine, container: &str) {
        let Some(service) = self.routed_service(container) else {
            return;
        };
        if self.state.borrow().held.contains(service) {
            return;
        }
        if !engine
            .container(container)
            .await
            .is_ok_and(|c| c.is_some_and(|c| c.running()))
        {
            return;
        }
        let gateway = self.names.object(GATEWAY);
        if !engine
            .container(&gateway)
            .await
            .is_ok_and(|c| c.is_some_and(|c| c.running()))
        {
            self.progress.note(&format!(
                "note: the gateway is not running: {service} is stopped without draining it first"
            ));
            return;
        }
        let held = {
            let mut st = self.state.borrow_mut();
            if st.held.is_empty() {
                st.marker_before = match host::read(&self.marker()).ok().flatten() {
                    Some(b) => Saved::Contents(b),
                    None => Saved::Missing,
                };
            }
            st.held.insert(service.to_string());
            st.held.clone()
        };
        // Noted before the reload: a run killed right after it leaves the note behind.
        let noted = self.note_draining(&held);
        let loaded = match noted {
            Ok(()) => self.load(engine, &held).await,
            Err(e) => Err(e),
        };
        if let Err(e) = loaded {
            self.progress.note(&format!(
                "note: could not drain {service} through the gateway ({e:#}); it is stopped without draining it first"
            ));
            // A refused configuration is rolled back by Caddy: the gateway runs what it ran.
            self.forget(service);
            return;
        }
        self.wait_for_requests(service).await;
    }

    /// Call once `container` runs again (started, or created anew and started), or when it is
    /// not stopped after all: if it was drained, the gateway routes to it again. A reload that
    /// fails is noted; the marker then still says `draining`, so the next `apply` or `heal`
    /// reloads the gateway.
    pub(crate) async fn release(&self, engine: &impl Engine, container: &str) {
        let Some(service) = self.routed_service(container) else {
            return;
        };
        let held = {
            let mut st = self.state.borrow_mut();
            if !st.held.remove(service) {
                return;
            }
            st.held.clone()
        };
        self.restore(engine, &held, service).await;
    }

    /// Brings back every service still drained (a step failed between its stop and its start:
    /// once it is down, its normal routes show the maintenance page anyway).
    pub(crate) async fn release_all(&self, engine: &impl Engine) {
        let released: Vec<String> = {
            let mut st = self.state.borrow_mut();
            std::mem::take(&mut st.held).into_iter().collect()
        };
        if !released.is_empty() {
            self.restore(engine, &BTreeSet::new(), &released.join(", "))
                .await;
        }
    }

    /// Reloads the gateway with `held` drained (its own Caddyfile when none is), after
    /// `service` was taken off the list.
    async fn restore(&self, engine: &impl Engine, held: &BTreeSet<String>, service: &str) {
        let loaded = if held.is_empty() {
            self.load(engine, held).await
        } else {
            match self.note_draining(held) {
                Ok(()) => self.load(engine, held).await,
                Err(e) => Err(e),
            }
        };
        match loaded {
            Ok(()) if held.is_empty() => self.forget(service),
            Ok(()) => {}
            Err(e) => self.progress.note(&format!(
                "note: could not reload the gateway after {service} started again ({e:#}); \
                 it may still show the maintenance page for it: `pi-setup apply` (or the next \
                 `pi-setup heal`) reloads it"
            )),
        }
    }

    /// Takes `service` off the list; with none left, the loaded marker says again what it said
    /// before the first drain.
    fn forget(&self, service: &str) {
        let mut st = self.state.borrow_mut();
        st.held.remove(service);
        if !st.held.is_empty() {
            return;
        }
        let marker = self.marker();
        let put_back = match std::mem::take(&mut st.marker_before) {
            Saved::Nothing => return,
            Saved::Contents(b) => host::write_atomic(&marker, &b, 0o600),
            Saved::Missing => host::remove_file(&marker).map(|_| ()),
        };
        if let Err(e) = put_back {
            self.progress
                .note(&format!("note: could not write {}: {e}", marker.display()));
        }
    }

    fn note_draining(&self, held: &BTreeSet<String>) -> anyhow::Result<()> {
        let names: Vec<&str> = held.iter().map(String::as_str).collect();
        host::write_atomic(
            &self.marker(),
            format!("{MARKER_PREFIX} {}\n", names.join(" ")).as_bytes(),
            0o600,
        )?;
        Ok(())
    }

    /// Loads the configuration with `held` drained, or the gateway's own Caddyfile (which
    /// imports the site files on disk) when none is.
    async fn load(&self, engine: &impl Engine, held: &BTreeSet<String>) -> anyhow::Result<()> {
        let caddyfile = if held.is_empty() {
            own_caddyfile(&self.paths)?
        } else {
            let draining: BTreeSet<&str> = held.iter().map(String::as_str).collect();
            gateway::caddyfile_draining(&self.gateway, &self.services, &draining)
        };
        load_into_gateway(&caddyfile, &self.paths, engine, &self.names, Duration::ZERO).await
    }

    /// Waits until the gateway proxies no request to `service` (twice in a row, a moment
    /// apart: a request the replaced configuration had read but not yet passed on is counted
    /// by then), or `PATIENCE` is over. Also for a service that is being removed, once the
    /// gateway was reloaded without it.
    pub(crate) async fn wait_for_requests(&self, service: &str) {
        let socket = self.paths.vol(GATEWAY).join(gateway::ADMIN_SOCKET_ON_HOST);
        let deadline = Instant::now() + PATIENCE;
        let mut idle_once = false;
        loop {
            match gateway::in_flight(&socket, service) {
                Ok(0) if idle_once => return,
                Ok(0) => idle_once = true,
                Ok(n) if Instant::now() >= deadline => {
                    self.progress.note(&format!(
                        "note: {n} request(s) to {service} still running after {} s: stopping it anyway",
                        PATIENCE.as_secs()
                    ));
                    return;
                }
                Ok(_) => idle_once = false,
                Err(e) => {
                    self.progress.note(&format!(
                        "note: could not count the requests in flight to {service} ({e}); stopping it now"
                    ));
                    return;
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The gateway's own Caddyfile, as on disk.
fn own_caddyfile(paths: &Paths) -> anyhow::Result<String> {
    let path = paths.vol(GATEWAY).join(gateway::CADDYFILE_ON_HOST);
    let bytes =
        host::read(&path)?.ok_or_else(|| anyhow::anyhow!("{} is missing", path.display()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// For `heal`: a drain that a killed run never ended is ended here, by reloading the gateway
/// with its own Caddyfile; the marker goes (the next `apply` then reloads it once more and
/// notes what it loaded). Nothing to do, or a gateway that is not running: nothing done.
pub(crate) async fn recover(
    engine: &impl Engine,
    paths: &Paths,
    names: &ObjectNames,
) -> anyhow::Result<Option<String>> {
    let marker = paths.vol(GATEWAY).join(gateway::LOADED_MARKER_ON_HOST);
    let Some(text) = host::read(&marker)? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&text).into_owned();
    let Some(services) = text.strip_prefix(MARKER_PREFIX) else {
        return Ok(None);
    };
    if !engine
        .container(&names.object(GATEWAY))
        .await?
        .is_some_and(|c| c.running())
    {
        return Ok(None);
    }
    let caddyfile = own_caddyfile(paths)?;
    load_into_gateway(&caddyfile, paths, engine, names, Duration::ZERO).await?;
    host::remove_file(&marker)?;
    Ok(Some(services.trim().to_string()))
}
