//! An in-memory engine for the fast tests: it keeps networks, images and containers the way
//! the daemon would, records every call that changes something, and can be told to fail one
//! (what a real daemon cannot be made to do on cue: fail mid-apply).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use bollard::errors::Error as BollardError;
use futures_util::stream::{self, BoxStream, StreamExt};

use crate::desired::{ContainerSpec, LABEL_INSTANCE, LABEL_MANAGED};
use crate::engine::{
    ContainerInfo, ContainerState, Engine, EngineError, HealthStatus, ImageInfo, NetworkInfo,
    PullProgress,
};

#[derive(Default)]
pub(crate) struct Fake {
    pub(crate) networks: RefCell<BTreeMap<String, NetworkInfo>>,
    /// Images on the "machine".
    pub(crate) images: RefCell<BTreeMap<String, ImageInfo>>,
    /// Images a pull can fetch.
    pub(crate) registry: RefCell<BTreeMap<String, ImageInfo>>,
    pub(crate) containers: RefCell<Vec<ContainerInfo>>,
    /// Calls that change something, in order: `create_container t-web`, ...
    pub(crate) calls: RefCell<Vec<String>>,
    /// The same calls, and whatever else a test notes in between (the fake gateway's admin
    /// API notes each reload: `reconcile::tests::fake_gateway_admin_noting`), in order.
    pub(crate) journal: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// A call (as recorded) that fails instead of happening.
    pub(crate) fail: RefCell<Option<String>>,
    /// Containers created with a health check.
    health_checked: RefCell<Vec<String>>,
    /// The exit code jobs end with.
    pub(crate) job_exit: RefCell<i64>,
    /// Image IDs whose containers fail their health check (or, without one, exit) once started.
    pub(crate) broken_images: RefCell<Vec<String>>,
    /// A call (as recorded) at which the fake panics, as a kill would stop a run there.
    pub(crate) panic_at: RefCell<Option<String>>,
    /// The same for one container only: (its name, the image ID it fails with).
    pub(crate) broken_in: RefCell<Vec<(String, String)>>,
}

impl Fake {
    /// A daemon that has these images locally.
    pub(crate) fn with_images(images: &[&str]) -> Fake {
        let fake = Fake::default();
        for i in images {
            fake.images.borrow_mut().insert(
                (*i).to_string(),
                ImageInfo {
                    id: format!("sha256:{i}"),
                    volumes: Vec::new(),
                },
            );
        }
        fake
    }

    fn record(&self, call: String) -> Result<(), EngineError> {
        assert!(
            self.panic_at.borrow().as_deref() != Some(call.as_str()),
            "killed at {call}"
        );
        if self.fail.borrow().as_deref() == Some(call.as_str()) {
            return Err(EngineError::Api {
                what: call,
                error: BollardError::DockerResponseServerError {
                    status_code: 500,
                    message: "injected failure".into(),
                },
            });
        }
        self.journal.lock().unwrap().push(call.clone());
        self.calls.borrow_mut().push(call);
        Ok(())
    }

    fn set_running(&self, name: &str, running: bool) {
        let checked = self.health_checked.borrow().contains(&name.to_string());
        let job_exit = *self.job_exit.borrow();
        for c in self.containers.borrow_mut().iter_mut() {
            let broken = self.broken_images.borrow().contains(&c.image_id)
                || self
                    .broken_in
                    .borrow()
                    .contains(&(c.name.clone(), c.image_id.clone()));
            // A job runs to completion at once, with the exit code the test chose (1 from a
            // broken image).
            if c.name == name && running && c.labels.contains_key(crate::desired::LABEL_JOB) {
                c.state = ContainerState::Exited;
                c.exit_code = Some(if broken { 1 } else { job_exit });
                continue;
            }
            if c.name == name {
                // A container with a health check passes it as soon as it runs, unless its
                // image is one the test broke: then it fails it, or exits without one.
                c.health = (running && checked).then_some(if broken {
                    HealthStatus::Unhealthy
                } else {
                    HealthStatus::Healthy
                });
                c.state = if running && (checked || !broken) {
                    ContainerState::Running
                } else {
                    ContainerState::Exited
                };
            }
        }
    }
}

#[allow(clippy::unused_async)] // the trait's methods are async; the fake answers at once
impl Engine for Fake {
    async fn network(&self, name: &str) -> Result<Option<NetworkInfo>, EngineError> {
        Ok(self.networks.borrow().get(name).cloned())
    }

    async fn create_network(
        &self,
        name: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), EngineError> {
        self.record(format!("create_network {name}"))?;
        self.networks.borrow_mut().insert(
            name.to_string(),
            NetworkInfo {
                managed: labels.get(LABEL_MANAGED).map(String::as_str) == Some("true"),
                instance: labels.get(LABEL_INSTANCE).cloned(),
            },
        );
        Ok(())
    }

    async fn image(&self, reference: &str) -> Result<Option<ImageInfo>, EngineError> {
        Ok(self.images.borrow().get(reference).cloned())
    }

    async fn pull(
        &self,
        reference: &str,
        on_progress: &mut dyn FnMut(PullProgress),
    ) -> Result<(), EngineError> {
        self.record(format!("pull {reference}"))?;
        let found = self.registry.borrow().get(reference).cloned();
        match found {
            Some(image) => {
                on_progress(PullProgress {
                    layer: None,
                    status: "Downloaded newer image".into(),
                    current: None,
                    total: None,
                });
                self.images
                    .borrow_mut()
                    .insert(reference.to_string(), image);
                Ok(())
            }
            None => Err(EngineError::Pull {
                image: reference.to_string(),
                reason: format!("manifest for {reference} not found"),
            }),
        }
    }

    async fn build(
        &self,
        tag: &str,
        _context: Vec<u8>,
        _dockerfile: &str,
    ) -> Result<(), EngineError> {
        self.record(format!("build {tag}"))?;
        self.images.borrow_mut().insert(
            tag.to_string(),
            ImageInfo {
                id: format!("sha256:{tag}"),
                volumes: Vec::new(),
            },
        );
        Ok(())
    }

    async fn tag(&self, source: &str, target: &str) -> Result<(), EngineError> {
        self.record(format!("tag {source} {target}"))?;
        let found = {
            let images = self.images.borrow();
            images
                .get(source)
                .or_else(|| images.values().find(|i| i.id == source))
                .cloned()
        };
        let image = found.ok_or_else(|| EngineError::Api {
            what: format!("tagging image {source} as {target}"),
            error: BollardError::DockerResponseServerError {
                status_code: 404,
                message: format!("No such image: {source}"),
            },
        })?;
        self.images.borrow_mut().insert(target.to_string(), image);
        Ok(())
    }

    async fn remove_image(&self, reference: &str) -> Result<Option<()>, EngineError> {
        self.record(format!("remove_image {reference}"))?;
        let mut images = self.images.borrow_mut();
        let before = images.len();
        images.retain(|r, i| r != reference && i.id != reference);
        Ok((images.len() < before).then_some(()))
    }

    async fn tags_in(&self, repo: &str) -> Result<Vec<String>, EngineError> {
        let prefix = format!("{repo}:");
        Ok(self
            .images
            .borrow()
            .keys()
            .filter(|r| r.starts_with(&prefix))
            .cloned()
            .collect())
    }

    async fn registry_digest(&self, reference: &str) -> Result<String, EngineError> {
        self.registry
            .borrow()
            .get(reference)
            .map(|i| format!("digest-{}", i.id))
            .ok_or_else(|| EngineError::Api {
                what: format!("asking the registry for {reference}"),
                error: BollardError::DockerResponseServerError {
                    status_code: 404,
                    message: "manifest unknown".into(),
                },
            })
    }

    async fn local_digests(&self, reference: &str) -> Result<Vec<String>, EngineError> {
        Ok(self
            .images
            .borrow()
            .get(reference)
            .map(|i| vec![format!("{reference}@digest-{}", i.id)])
            .unwrap_or_default())
    }

    async fn managed_containers(&self, instance: &str) -> Result<Vec<ContainerInfo>, EngineError> {
        Ok(self
            .containers
            .borrow()
            .iter()
            .filter(|c| c.managed() && c.instance() == instance)
            .cloned()
            .collect())
    }

    async fn all_containers(&self) -> Result<Vec<ContainerInfo>, EngineError> {
        Ok(self.containers.borrow().clone())
    }

    async fn container(&self, name: &str) -> Result<Option<ContainerInfo>, EngineError> {
        Ok(self
            .containers
            .borrow()
            .iter()
            .find(|c| c.name == name)
            .cloned())
    }

    async fn pid(&self, _name: &str) -> Result<Option<u32>, EngineError> {
        Ok(None)
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        self.record(format!("create_container {}", spec.name))?;
        if spec.health.is_some() {
            self.health_checked.borrow_mut().push(spec.name.clone());
        }
        let image_id = self
            .images
            .borrow()
            .get(&spec.image)
            .map(|i| i.id.clone())
            .ok_or_else(|| EngineError::Api {
                what: format!("creating container {}", spec.name),
                error: BollardError::DockerResponseServerError {
                    status_code: 404,
                    message: format!("No such image: {}", spec.image),
                },
            })?;
        self.containers.borrow_mut().push(ContainerInfo {
            id: format!("id-{}", spec.name),
            name: spec.name.clone(),
            image_id,
            state: ContainerState::Created,
            exit_code: None,
            health: None,
            labels: spec.all_labels().into_iter().collect(),
            volumes: Vec::new(),
        });
        Ok(format!("id-{}", spec.name))
    }

    async fn start(&self, name: &str) -> Result<(), EngineError> {
        self.record(format!("start {name}"))?;
        self.set_running(name, true);
        Ok(())
    }

    async fn restart(&self, name: &str, _timeout_secs: i32) -> Result<(), EngineError> {
        self.record(format!("restart {name}"))?;
        self.set_running(name, true);
        Ok(())
    }

    async fn exec_shell(&self, name: &str, command: &str) -> Result<(), EngineError> {
        self.record(format!("exec {name} {command}"))
    }

    async fn stop(&self, name: &str, _timeout_secs: i32) -> Result<(), EngineError> {
        self.record(format!("stop {name}"))?;
        self.set_running(name, false);
        Ok(())
    }

    async fn remove_container(&self, name: &str) -> Result<Option<()>, EngineError> {
        self.record(format!("remove_container {name}"))?;
        let mut containers = self.containers.borrow_mut();
        let before = containers.len();
        containers.retain(|c| c.name != name);
        Ok((containers.len() < before).then_some(()))
    }

    async fn run_state(&self, name: &str) -> Result<Option<(bool, i64)>, EngineError> {
        Ok(self
            .containers
            .borrow()
            .iter()
            .find(|c| c.name == name)
            .map(|c| (c.running(), 0)))
    }

    async fn logs_tail(&self, _name: &str, _lines: usize) -> Result<String, EngineError> {
        Ok(String::new())
    }

    fn copy_out<'a>(
        &'a self,
        name: &'a str,
        path: &'a str,
    ) -> BoxStream<'a, Result<Vec<u8>, EngineError>> {
        let recorded = self.record(format!("copy_out {name}:{path}"));
        stream::iter(recorded.err().map(Err)).boxed()
    }
}
