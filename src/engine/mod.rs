//! The Docker Engine, behind a narrow seam: the `Engine` trait is everything pi-setup asks of
//! Docker; `Docker` (bollard) is the real one, `fake::Fake` an in-memory one that records calls
//! for the fast tests. "Already there" and "already gone" come back as results, not errors.

mod docker;
#[cfg(test)]
pub(crate) mod fake;

use std::collections::HashMap;

use bollard::errors::Error as BollardError;
use futures_util::stream::BoxStream;

pub(crate) use docker::Docker;

use crate::desired::{ContainerSpec, LABEL_HASH, LABEL_INSTANCE, LABEL_MANAGED, LABEL_SERVICE};

/// Docker 20.10 (Raspberry Pi OS's docker.io) speaks API 1.41; nothing older is supported.
pub(crate) const MIN_API: (usize, usize) = (1, 41);

/// Connects to the daemon as the docker CLI would (`DOCKER_HOST`, else the local socket).
pub(crate) async fn connect() -> Result<Docker, EngineError> {
    Docker::connect().await
}

/// What pi-setup asks of a container engine.
#[allow(async_fn_in_trait)] // used through generics on one runtime; no Send bound needed
pub(crate) trait Engine {
    async fn network(&self, name: &str) -> Result<Option<NetworkInfo>, EngineError>;
    async fn create_network(
        &self,
        name: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), EngineError>;
    /// The local image for a reference, or None when it is not on this machine.
    async fn image(&self, reference: &str) -> Result<Option<ImageInfo>, EngineError>;
    /// The platform (`linux/arm64`, `linux/arm/v7`) of a local image; `None` when it is not
    /// on this machine (or the engine cannot say: the fake).
    async fn image_platform(&self, _reference: &str) -> Result<Option<String>, EngineError> {
        Ok(None)
    }
    /// Pulls an image, reporting progress; the daemon's own error text is kept.
    async fn pull(
        &self,
        reference: &str,
        on_progress: &mut dyn FnMut(PullProgress),
    ) -> Result<(), EngineError>;
    /// Gives the image `source` (a reference or an image ID) the reference `target` too; a
    /// `target` that named another image moves, as with `docker tag`.
    async fn tag(&self, source: &str, target: &str) -> Result<(), EngineError>;
    /// Removes a reference, and the image with it when nothing else refers to it; `Ok(None)`
    /// when it was already gone. An image a container uses is an error, never forced.
    async fn remove_image(&self, reference: &str) -> Result<Option<()>, EngineError>;
    /// The tags of local images in repository `repo` (`repo:tag` each).
    async fn tags_in(&self, repo: &str) -> Result<Vec<String>, EngineError>;
    /// The digest the registry now has for a reference, asked without pulling.
    async fn registry_digest(&self, reference: &str) -> Result<String, EngineError>;
    /// The digests (`repo@sha256:...`) the local image of a reference was pulled by; empty
    /// for an image that is missing or was never pulled (built or loaded here).
    async fn local_digests(&self, reference: &str) -> Result<Vec<String>, EngineError>;
    /// Builds `tag` from a build context (a tar stream) with the Dockerfile at `dockerfile`
    /// in it; the build's own error text is kept.
    async fn build(&self, tag: &str, context: Vec<u8>, dockerfile: &str)
        -> Result<(), EngineError>;
    /// Containers labelled as this instance's (running or not).
    async fn managed_containers(&self, instance: &str) -> Result<Vec<ContainerInfo>, EngineError>;
    /// Every container on the daemon (running or not), pi-setup's or not.
    async fn all_containers(&self) -> Result<Vec<ContainerInfo>, EngineError>;
    /// Any container of this exact name, managed or not.
    async fn container(&self, name: &str) -> Result<Option<ContainerInfo>, EngineError>;
    /// The host PID of a running container's main process.
    async fn pid(&self, name: &str) -> Result<Option<u32>, EngineError>;
    async fn create_container(&self, spec: &ContainerSpec) -> Result<String, EngineError>;
    /// Starts a container; one already running is fine.
    async fn start(&self, name: &str) -> Result<(), EngineError>;
    async fn restart(&self, name: &str, timeout_secs: i32) -> Result<(), EngineError>;
    /// Runs a shell command inside a running container and waits for it; a non-zero exit is
    /// an error that keeps the command's output.
    async fn exec_shell(&self, name: &str, command: &str) -> Result<(), EngineError>;
    /// Stops a container; one already stopped, or gone, is fine.
    async fn stop(&self, name: &str, timeout_secs: i32) -> Result<(), EngineError>;
    /// Removes a container (stopping it first); `Ok(None)` when it was already gone.
    async fn remove_container(&self, name: &str) -> Result<Option<()>, EngineError>;
    /// Whether a container is running, and how often Docker has restarted it; `None` when it
    /// is gone.
    async fn run_state(&self, name: &str) -> Result<Option<(bool, i64)>, EngineError>;
    /// The last `lines` lines a container wrote (stdout and stderr).
    async fn logs_tail(&self, name: &str, lines: usize) -> Result<String, EngineError>;
    /// A tar stream of `path` inside a container, running or not (what `docker cp` reads),
    /// its Docker volumes included.
    fn copy_out<'a>(
        &'a self,
        name: &'a str,
        path: &'a str,
    ) -> BoxStream<'a, Result<Vec<u8>, EngineError>>;
}

/// The daemon's error is part of each message, and not also a `source`: printing the chain
/// would say it twice.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EngineError {
    #[error("cannot reach the Docker daemon at {host}: {error}\n  is Docker installed and running? (`systemctl status docker`; DOCKER_HOST selects another daemon)")]
    Unreachable { host: String, error: BollardError },
    #[error("the Docker daemon at {host} speaks API {version}; pi-setup needs {}.{} or newer (Docker 20.10+)", MIN_API.0, MIN_API.1)]
    TooOld { host: String, version: String },
    #[error("{what}: {error}")]
    Api { what: String, error: BollardError },
    /// A pull that failed, with what to do about it after the daemon's reason.
    #[error("pulling image {image}: {reason}\n{}", offline_hint(image))]
    Pull { image: String, reason: String },
}

fn offline_hint(image: &str) -> String {
    format!(
        "  image {image} is not on this machine and could not be pulled (is a registry reachable?)\n  \
         to install it offline: on a machine with access run `docker pull {image} && docker save {image} -o image.tar`,\n  \
         copy image.tar here, run `docker load -i image.tar`, then run this command again"
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NetworkInfo {
    pub(crate) managed: bool,
    pub(crate) instance: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContainerInfo {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) image_id: String,
    pub(crate) state: ContainerState,
    /// For containers with a health check.
    pub(crate) health: Option<HealthStatus>,
    /// How its main process ended, once it has (exited or dead).
    pub(crate) exit_code: Option<i64>,
    pub(crate) labels: HashMap<String, String>,
    /// Docker volumes (not bind mounts) mounted in it: where its data lives outside /var/vol.
    pub(crate) volumes: Vec<VolumeMount>,
}

/// A Docker volume mounted in a container: for pi-setup's containers, always an anonymous
/// volume Docker made for a path the image declares (`VOLUME`), from before pi-setup mapped
/// those paths under /var/vol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VolumeMount {
    pub(crate) volume: String,
    /// The path inside the container.
    pub(crate) target: String,
}

/// What pi-setup needs of a local image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageInfo {
    pub(crate) id: String,
    /// The paths it declares as volumes (`VOLUME` in its Dockerfile).
    pub(crate) volumes: Vec<String>,
}

/// A container's state, as Docker names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ContainerState {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl ContainerState {
    /// Docker's word for it; a word it may add later counts as `Dead` (not running, and not
    /// coming back by itself).
    pub(crate) fn parse(s: &str) -> ContainerState {
        match s {
            "created" => ContainerState::Created,
            "running" => ContainerState::Running,
            "paused" => ContainerState::Paused,
            "restarting" => ContainerState::Restarting,
            "removing" => ContainerState::Removing,
            "exited" => ContainerState::Exited,
            _ => ContainerState::Dead,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Paused => "paused",
            ContainerState::Restarting => "restarting",
            ContainerState::Removing => "removing",
            ContainerState::Exited => "exited",
            ContainerState::Dead => "dead",
        }
    }
}

impl std::fmt::Display for ContainerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a container's health check last said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum HealthStatus {
    Starting,
    Healthy,
    Unhealthy,
}

impl HealthStatus {
    /// Docker's word (`none` and the empty string mean no health check).
    pub(crate) fn parse(s: &str) -> Option<HealthStatus> {
        match s {
            "starting" => Some(HealthStatus::Starting),
            "healthy" => Some(HealthStatus::Healthy),
            "unhealthy" => Some(HealthStatus::Unhealthy),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

impl ContainerInfo {
    pub(crate) fn running(&self) -> bool {
        self.state == ContainerState::Running
    }
    pub(crate) fn managed(&self) -> bool {
        self.labels.get(LABEL_MANAGED).map(String::as_str) == Some("true")
    }
    pub(crate) fn hash(&self) -> Option<&str> {
        self.labels.get(LABEL_HASH).map(String::as_str)
    }
    pub(crate) fn service(&self) -> Option<&str> {
        self.labels.get(LABEL_SERVICE).map(String::as_str)
    }
    /// The `--instance` it belongs to (empty for none).
    pub(crate) fn instance(&self) -> &str {
        self.labels.get(LABEL_INSTANCE).map_or("", String::as_str)
    }
}

/// Progress of an image pull, as the daemon reports it.
#[derive(Debug, Clone)]
pub(crate) struct PullProgress {
    pub(crate) layer: Option<String>,
    pub(crate) status: String,
    pub(crate) current: Option<i64>,
    pub(crate) total: Option<i64>,
}
