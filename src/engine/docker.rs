//! The Docker Engine API through bollard: the only code that talks to Docker.

use std::collections::HashMap;

use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HealthConfig, HostConfig, NetworkCreateRequest,
    NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, RestartContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;

use crate::desired::{ContainerSpec, LABEL_INSTANCE, LABEL_MANAGED};
use crate::engine::{
    ContainerInfo, ContainerState, Engine, EngineError, HealthStatus, ImageInfo, NetworkInfo,
    PullProgress, VolumeMount, MIN_API,
};
use crate::model::Restart;

fn api(what: impl Into<String>) -> impl FnOnce(BollardError) -> EngineError {
    let what = what.into();
    move |error| EngineError::Api { what, error }
}

fn is_not_found(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// 409 "removal of container … is already in progress".
fn is_removal_in_progress(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::DockerResponseServerError {
            status_code: 409,
            message,
        } if message.contains("already in progress")
    )
}

fn is_not_modified(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::DockerResponseServerError {
            status_code: 304,
            ..
        }
    )
}

fn volume_mounts(mounts: Option<Vec<bollard::models::MountPoint>>) -> Vec<VolumeMount> {
    mounts
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.typ.as_deref() == Some("volume"))
        .filter_map(|m| {
            Some(VolumeMount {
                volume: m.name?,
                target: m.destination?,
            })
        })
        .collect()
}

/// The Docker Engine API, through bollard.
pub(crate) struct Docker {
    docker: bollard::Docker,
}

impl Docker {
    /// Connects as the docker CLI would (`DOCKER_HOST`, else the local socket) and settles on
    /// the daemon's API version: bollard asks for its newest by default, which Docker 20.10
    /// refuses (see bollard#736).
    pub(crate) async fn connect() -> Result<Docker, EngineError> {
        let host =
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        let unreachable = |error| EngineError::Unreachable {
            host: host.clone(),
            error,
        };
        let docker = bollard::Docker::connect_with_defaults().map_err(unreachable)?;
        let docker = docker.negotiate_version().await.map_err(unreachable)?;
        let v = docker.client_version();
        if (v.major_version, v.minor_version) < MIN_API {
            return Err(EngineError::TooOld {
                host,
                version: v.to_string(),
            });
        }
        Ok(Docker { docker })
    }

    /// Where the daemon is (`DOCKER_HOST` or the local socket) and the API version agreed on.
    pub(crate) fn describe(&self) -> (String, String) {
        let host =
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        (host, self.docker.client_version().to_string())
    }

    /// Removes a network; `Ok(None)` when it was already gone.
    pub(crate) async fn remove_network(&self, name: &str) -> Result<Option<()>, EngineError> {
        match self.docker.remove_network(name).await {
            Ok(()) => Ok(Some(())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(api(format!("removing network {name}"))(e)),
        }
    }

    /// `docker save` through the API: a tar stream of the images (`/images/get`).
    pub(crate) fn export_images<'a>(
        &'a self,
        references: &'a [&'a str],
    ) -> BoxStream<'a, Result<bytes::Bytes, EngineError>> {
        self.docker
            .export_images(references)
            .map(|r| r.map_err(api("exporting images")))
            .boxed()
    }

    /// `docker load` through the API (`/images/load`) from a stream of the archive's bytes;
    /// each line the daemon answers (`Loaded image: ...`) goes to `on_line`.
    pub(crate) async fn import_images<S>(
        &self,
        archive: S,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<(), EngineError>
    where
        S: futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static,
    {
        let opts = bollard::query_parameters::ImportImageOptionsBuilder::new()
            .quiet(true)
            .build();
        let mut stream = self.docker.import_image_stream(opts, archive, None);
        while let Some(item) = stream.next().await {
            let info = item.map_err(api("loading images"))?;
            if let Some(e) = info.error_detail.and_then(|d| d.message) {
                return Err(EngineError::Api {
                    what: "loading images".into(),
                    error: BollardError::DockerStreamError { error: e },
                });
            }
            for text in [info.stream, info.status].into_iter().flatten() {
                let t = text.trim();
                if !t.is_empty() {
                    on_line(t);
                }
            }
        }
        Ok(())
    }

    async fn list(
        &self,
        filters: Option<HashMap<String, Vec<String>>>,
    ) -> Result<Vec<ContainerInfo>, EngineError> {
        let mut opts = ListContainersOptionsBuilder::default().all(true);
        if let Some(f) = &filters {
            opts = opts.filters(f);
        }
        let list = self
            .docker
            .list_containers(Some(opts.build()))
            .await
            .map_err(api("listing containers"))?;
        Ok(list
            .into_iter()
            .map(|c| ContainerInfo {
                id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string(),
                image_id: c.image_id.unwrap_or_default(),
                state: ContainerState::parse(&c.state.map(|s| s.to_string()).unwrap_or_default()),
                health: c.status.as_deref().and_then(health_from_status),
                exit_code: c.status.as_deref().and_then(exit_code_from_status),
                labels: c.labels.unwrap_or_default(),
                volumes: volume_mounts(c.mounts),
            })
            .collect())
    }
}

impl Engine for Docker {
    async fn network(&self, name: &str) -> Result<Option<NetworkInfo>, EngineError> {
        match self.docker.inspect_network(name, None).await {
            Ok(n) => {
                let labels = n.labels.unwrap_or_default();
                // Inspect matches by ID prefix too; only an exact name is ours.
                if n.name.as_deref() != Some(name) {
                    return Ok(None);
                }
                Ok(Some(NetworkInfo {
                    managed: labels.get(LABEL_MANAGED).map(String::as_str) == Some("true"),
                    instance: labels.get(LABEL_INSTANCE).cloned(),
                }))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(api(format!("inspecting network {name}"))(e)),
        }
    }

    async fn create_network(
        &self,
        name: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), EngineError> {
        let req = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            labels: Some(labels),
            ..Default::default()
        };
        self.docker
            .create_network(req)
            .await
            .map(|_| ())
            .map_err(api(format!("creating network {name}")))
    }

    /// The local image for a reference, or None when the image is not on this machine.
    async fn image(&self, reference: &str) -> Result<Option<ImageInfo>, EngineError> {
        match self.docker.inspect_image(reference).await {
            Ok(i) => Ok(Some(ImageInfo {
                id: i.id.unwrap_or_default(),
                volumes: i.config.and_then(|c| c.volumes).unwrap_or_default(),
            })),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(api(format!("inspecting image {reference}"))(e)),
        }
    }

    async fn image_platform(&self, reference: &str) -> Result<Option<String>, EngineError> {
        match self.docker.inspect_image(reference).await {
            Ok(i) => {
                let mut p = format!(
                    "{}/{}",
                    i.os.unwrap_or_else(|| "linux".into()),
                    i.architecture.unwrap_or_default()
                );
                if let Some(v) = i.variant.filter(|v| !v.is_empty()) {
                    p.push('/');
                    p.push_str(&v);
                }
                Ok(Some(p))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(api(format!("inspecting image {reference}"))(e)),
        }
    }

    /// Pulls an image, reporting progress; the daemon's own error text is kept.
    async fn pull(
        &self,
        reference: &str,
        on_progress: &mut dyn FnMut(PullProgress),
    ) -> Result<(), EngineError> {
        let (repo, tag) = split_reference(reference);
        let mut opts = CreateImageOptionsBuilder::default().from_image(&repo);
        if let Some(t) = &tag {
            opts = opts.tag(t);
        }
        let mut stream = self.docker.create_image(Some(opts.build()), None, None);
        let failed = |reason| EngineError::Pull {
            image: reference.to_string(),
            reason,
        };
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| match e {
                BollardError::DockerStreamError { error } => failed(error),
                other => failed(other.to_string()),
            })?;
            if let Some(detail) = info.error_detail {
                return Err(failed(detail.message.unwrap_or_default()));
            }
            let (current, total) = info
                .progress_detail
                .map_or((None, None), |d| (d.current, d.total));
            on_progress(PullProgress {
                layer: info.id,
                status: info.status.unwrap_or_default(),
                current,
                total,
            });
        }
        Ok(())
    }

    async fn tag(&self, source: &str, target: &str) -> Result<(), EngineError> {
        let (repo, tag) = split_reference(target);
        let opts = bollard::query_parameters::TagImageOptions {
            repo: Some(repo),
            tag,
        };
        self.docker
            .tag_image(source, Some(opts))
            .await
            .map_err(api(format!("tagging image {source} as {target}")))
    }

    async fn remove_image(&self, reference: &str) -> Result<Option<()>, EngineError> {
        match self
            .docker
            .remove_image(
                reference,
                None::<bollard::query_parameters::RemoveImageOptions>,
                None,
            )
            .await
        {
            Ok(_) => Ok(Some(())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(api(format!("removing image {reference}"))(e)),
        }
    }

    async fn tags_in(&self, repo: &str) -> Result<Vec<String>, EngineError> {
        let filters = HashMap::from([("reference", vec![repo])]);
        let opts = bollard::query_parameters::ListImagesOptionsBuilder::default()
            .filters(&filters)
            .build();
        let images = self
            .docker
            .list_images(Some(opts))
            .await
            .map_err(api(format!("listing the images of {repo}")))?;
        let prefix = format!("{repo}:");
        Ok(images
            .into_iter()
            .flat_map(|i| i.repo_tags)
            .filter(|t| t.starts_with(&prefix))
            .collect())
    }

    async fn registry_digest(&self, reference: &str) -> Result<String, EngineError> {
        let what = || format!("asking the registry for {reference}");
        let inspect = self
            .docker
            .inspect_registry_image(reference, None)
            .await
            .map_err(api(what()))?;
        inspect.descriptor.digest.ok_or_else(|| EngineError::Api {
            what: what(),
            error: BollardError::DockerResponseServerError {
                status_code: 500,
                message: "the registry named no digest".into(),
            },
        })
    }

    async fn local_digests(&self, reference: &str) -> Result<Vec<String>, EngineError> {
        match self.docker.inspect_image(reference).await {
            Ok(i) => Ok(i.repo_digests.unwrap_or_default()),
            Err(e) if is_not_found(&e) => Ok(Vec::new()),
            Err(e) => Err(api(format!("inspecting image {reference}"))(e)),
        }
    }

    /// Containers labelled as this instance's (running or not).
    async fn build(
        &self,
        tag: &str,
        context: Vec<u8>,
        dockerfile: &str,
    ) -> Result<(), EngineError> {
        let opts = bollard::query_parameters::BuildImageOptionsBuilder::default()
            .t(tag)
            .dockerfile(dockerfile)
            .rm(true)
            .forcerm(true)
            .build();
        let mut stream = self.docker.build_image(
            opts,
            None,
            Some(bollard::body_full(bytes::Bytes::from(context))),
        );
        let mut last = Vec::new();
        let failed = |why: String| EngineError::Api {
            what: format!("building image {tag}"),
            error: BollardError::DockerStreamError { error: why },
        };
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| failed(e.to_string()))?;
            if let Some(detail) = info.error_detail {
                let mut why = detail.message.unwrap_or_default();
                if !last.is_empty() {
                    why = format!("{why}\n{}", last.join(""));
                }
                return Err(failed(why));
            }
            if let Some(line) = info.stream {
                last.push(line);
                if last.len() > 20 {
                    last.remove(0);
                }
            }
        }
        Ok(())
    }

    async fn managed_containers(&self, instance: &str) -> Result<Vec<ContainerInfo>, EngineError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![
                format!("{LABEL_MANAGED}=true"),
                format!("{LABEL_INSTANCE}={instance}"),
            ],
        )]);
        self.list(Some(filters)).await
    }

    /// Every container on the daemon (running or not), pi-setup's or not.
    async fn all_containers(&self) -> Result<Vec<ContainerInfo>, EngineError> {
        self.list(None).await
    }

    /// Any container of this exact name, managed or not.
    async fn container(&self, name: &str) -> Result<Option<ContainerInfo>, EngineError> {
        match self.docker.inspect_container(name, None).await {
            // Inspect falls back to matching an ID prefix (`db` finds a container whose ID
            // starts with db…); only the exact name is the container asked for.
            Ok(c) if c.name.as_deref().map(|n| n.trim_start_matches('/')) != Some(name) => Ok(None),
            Ok(c) => {
                let state = c.state.as_ref();
                Ok(Some(ContainerInfo {
                    id: c.id.clone().unwrap_or_default(),
                    name: c
                        .name
                        .clone()
                        .unwrap_or_default()
                        .trim_start_matches('/')
                        .to_string(),
                    image_id: c.image.clone().unwrap_or_default(),
                    state: ContainerState::parse(
                        &state
                            .and_then(|s| s.status.as_ref())
                            .map(std::string::ToString::to_string)
                            .unwrap_or_default(),
                    ),
                    health: state
                        .and_then(|s| s.health.as_ref())
                        .and_then(|h| h.status.as_ref())
                        .and_then(|h| HealthStatus::parse(h.as_ref())),
                    exit_code: state
                        .filter(|s| s.running != Some(true))
                        .and_then(|s| s.exit_code),
                    labels: c.config.and_then(|c| c.labels).unwrap_or_default(),
                    volumes: volume_mounts(c.mounts),
                }))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(api(format!("inspecting container {name}"))(e)),
        }
    }

    /// The host PID of a running container's main process.
    async fn pid(&self, name: &str) -> Result<Option<u32>, EngineError> {
        match self.docker.inspect_container(name, None).await {
            Ok(c) => Ok(c
                .state
                .and_then(|s| s.pid)
                .filter(|p| *p > 0)
                .map(|p| p as u32)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(api(format!("inspecting container {name}"))(e)),
        }
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        let port_bindings: HashMap<String, Option<Vec<PortBinding>>> = spec
            .ports
            .iter()
            .map(|(cport, ip, hport)| {
                (
                    format!("{cport}/tcp"),
                    Some(vec![PortBinding {
                        host_ip: Some(ip.clone()),
                        host_port: Some(hport.to_string()),
                    }]),
                )
            })
            .collect();
        let exposed: Vec<String> = spec
            .ports
            .iter()
            .map(|(p, _, _)| format!("{p}/tcp"))
            .collect();
        let restart = match spec.restart {
            Restart::No => RestartPolicyNameEnum::NO,
            Restart::Always => RestartPolicyNameEnum::ALWAYS,
            Restart::OnFailure => RestartPolicyNameEnum::ON_FAILURE,
            Restart::UnlessStopped => RestartPolicyNameEnum::UNLESS_STOPPED,
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: spec.cmd.clone(),
            env: Some(spec.env.clone()),
            labels: Some(spec.all_labels().into_iter().collect()),
            exposed_ports: if exposed.is_empty() {
                None
            } else {
                Some(exposed)
            },
            host_config: Some(HostConfig {
                binds: Some(spec.binds.iter().map(ToString::to_string).collect()),
                port_bindings: if port_bindings.is_empty() {
                    None
                } else {
                    Some(port_bindings)
                },
                restart_policy: Some(RestartPolicy {
                    name: Some(restart),
                    maximum_retry_count: None,
                }),
                network_mode: Some(spec.network.clone()),
                security_opt: Some(spec.security_opt.clone()),
                memory: spec.memory,
                nano_cpus: spec.nano_cpus,
                sysctls: if spec.sysctls.is_empty() {
                    None
                } else {
                    Some(spec.sysctls.clone().into_iter().collect())
                },
                ..Default::default()
            }),
            user: spec.user.clone(),
            healthcheck: spec.health.as_ref().map(|h| {
                const NS_PER_MS: i64 = 1_000_000;
                let interval = h.interval_ms as i64 * NS_PER_MS;
                let test = match &h.exec {
                    Some(words) => std::iter::once("CMD".to_string())
                        .chain(words.iter().cloned())
                        .collect(),
                    None => vec!["CMD-SHELL".into(), h.cmd.clone()],
                };
                HealthConfig {
                    test: Some(test),
                    interval: Some(interval),
                    timeout: Some(
                        h.timeout_ms
                            .map_or(interval.min(30_000 * NS_PER_MS), |t| t as i64 * NS_PER_MS),
                    ),
                    retries: Some(h.retries.map_or(3, i64::from)),
                    start_period: Some(
                        h.start_period_ms.map_or(interval, |s| s as i64 * NS_PER_MS),
                    ),
                    ..Default::default()
                }
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    spec.network.clone(),
                    EndpointSettings {
                        aliases: Some(spec.aliases.clone()),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        let created = self
            .docker
            .create_container(Some(opts), body)
            .await
            .map_err(api(format!("creating container {}", spec.name)))?;
        Ok(created.id)
    }

    /// Starts a container; one already running is fine.
    async fn start(&self, name: &str) -> Result<(), EngineError> {
        match self.docker.start_container(name, None).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_modified(&e) => Ok(()),
            Err(e) => Err(api(format!("starting container {name}"))(e)),
        }
    }

    async fn restart(&self, name: &str, timeout_secs: i32) -> Result<(), EngineError> {
        let opts = RestartContainerOptionsBuilder::default()
            .t(timeout_secs)
            .build();
        self.docker
            .restart_container(name, Some(opts))
            .await
            .map_err(api(format!("restarting container {name}")))
    }

    /// Runs a shell command inside a running container and waits for it; a non-zero exit is an
    /// error that keeps the command's output (the last 2 KiB).
    async fn exec_shell(&self, name: &str, command: &str) -> Result<(), EngineError> {
        use bollard::exec::StartExecResults;
        use bollard::models::ExecConfig;
        let what = format!("running `{command}` in container {name}");
        let exec = self
            .docker
            .create_exec(
                name,
                ExecConfig {
                    cmd: Some(vec!["sh".into(), "-c".into(), command.into()]),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(api(what.clone()))?;
        let mut output = String::new();
        if let StartExecResults::Attached {
            output: mut stream, ..
        } = self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(api(what.clone()))?
        {
            while let Some(chunk) = stream.next().await {
                output.push_str(&chunk.map_err(api(what.clone()))?.to_string());
            }
        }
        let code = self
            .docker
            .inspect_exec(&exec.id)
            .await
            .map_err(api(what.clone()))?
            .exit_code
            .unwrap_or(-1);
        if code == 0 {
            return Ok(());
        }
        let tail: String = output
            .chars()
            .rev()
            .take(2048)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        Err(EngineError::Api {
            what,
            error: BollardError::DockerStreamError {
                error: format!("exit code {code}: {}", tail.trim()),
            },
        })
    }

    /// Stops a container; one already stopped, or gone, is fine.
    async fn stop(&self, name: &str, timeout_secs: i32) -> Result<(), EngineError> {
        let opts = StopContainerOptionsBuilder::default()
            .t(timeout_secs)
            .build();
        match self.docker.stop_container(name, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_modified(&e) || is_not_found(&e) => Ok(()),
            Err(e) => Err(api(format!("stopping container {name}"))(e)),
        }
    }

    /// A tar stream of `path` inside a container, running or not (what `docker cp` reads); its
    /// Docker volumes included.
    fn copy_out<'a>(
        &'a self,
        name: &'a str,
        path: &'a str,
    ) -> BoxStream<'a, Result<Vec<u8>, EngineError>> {
        let opts = bollard::query_parameters::DownloadFromContainerOptionsBuilder::default()
            .path(path)
            .build();
        self.docker
            .download_from_container(name, Some(opts))
            .map(move |chunk| {
                chunk
                    .map(|b| b.to_vec())
                    .map_err(api(format!("copying {path} out of container {name}")))
            })
            .boxed()
    }

    /// Removes a container (stopping it first); `Ok(None)` when it was already gone.
    async fn remove_container(&self, name: &str) -> Result<Option<()>, EngineError> {
        let opts = RemoveContainerOptionsBuilder::default().force(true).build();
        match self.docker.remove_container(name, Some(opts)).await {
            Ok(()) => Ok(Some(())),
            Err(e) if is_not_found(&e) => Ok(None),
            // A run killed mid-removal leaves the daemon removing it: wait for that instead.
            Err(e) if is_removal_in_progress(&e) => {
                let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
                while self.container(name).await?.is_some() {
                    if std::time::Instant::now() >= deadline {
                        return Err(api(format!("removing container {name}"))(e));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Ok(Some(()))
            }
            Err(e) => Err(api(format!("removing container {name}"))(e)),
        }
    }

    /// Whether a container is running, and how often Docker has restarted it: a container
    /// that exits and is restarted between two looks still shows in the count. `None` when
    /// it is gone.
    async fn run_state(&self, name: &str) -> Result<Option<(bool, i64)>, EngineError> {
        match self.docker.inspect_container(name, None).await {
            Ok(c) => Ok(Some((
                c.state.and_then(|s| s.running).unwrap_or(false),
                c.restart_count.unwrap_or(0),
            ))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(api(format!("inspecting container {name}"))(e)),
        }
    }

    /// The last `lines` lines a container wrote (stdout and stderr, interleaved as Docker
    /// kept them), for errors that say why it stopped.
    async fn logs_tail(&self, name: &str, lines: usize) -> Result<String, EngineError> {
        let opts = bollard::query_parameters::LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&lines.to_string())
            .build();
        let mut stream = self.docker.logs(name, Some(opts));
        let mut out = String::new();
        while let Some(chunk) = stream.next().await {
            out.push_str(
                &chunk
                    .map_err(api(format!("reading the logs of container {name}")))?
                    .to_string(),
            );
        }
        Ok(out)
    }
}

/// The list endpoint only gives health inside the status text: `Up 3 minutes (unhealthy)`.
/// The list endpoint gives the exit code inside the status text: `Exited (0) 3 seconds ago`.
fn exit_code_from_status(status: &str) -> Option<i64> {
    status
        .strip_prefix("Exited (")?
        .split_once(')')?
        .0
        .parse()
        .ok()
}

fn health_from_status(status: &str) -> Option<HealthStatus> {
    [
        ("(unhealthy)", HealthStatus::Unhealthy),
        ("(healthy)", HealthStatus::Healthy),
        ("(health: starting)", HealthStatus::Starting),
    ]
    .into_iter()
    .find(|(text, _)| status.contains(text))
    .map(|(_, h)| h)
}

/// `registry:5000/a/b:tag` → (`registry:5000/a/b`, Some(`tag`)); digests stay in the repo part.
pub(crate) fn split_reference(reference: &str) -> (String, Option<String>) {
    if reference.contains('@') {
        return (reference.to_string(), None);
    }
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(i) => (
            reference[..last_slash + i].to_string(),
            Some(reference[last_slash + i + 1..].to_string()),
        ),
        None => (reference.to_string(), Some("latest".to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::split_reference;

    /// Against the real daemon, so not in the fast tier: `ci/test` runs it (`--run-ignored`).
    #[tokio::test]
    #[ignore = "needs the Docker daemon and the test images (ci/test runs it)"]
    async fn a_container_is_looked_up_by_its_exact_name_never_by_an_id_prefix() {
        use crate::desired::{Bind, ContainerSpec};
        use crate::engine::Engine;
        let engine = super::Docker::connect().await.unwrap();
        let name = format!("pi-setup-lookup-{}", std::process::id());
        let spec = ContainerSpec {
            service: "lookup".into(),
            name: name.clone(),
            image: "pi-setup-test/busybox:1".into(),
            cmd: Some(vec!["true".into()]),
            env: Vec::new(),
            binds: Vec::<Bind>::new(),
            ports: Vec::new(),
            restart: crate::model::Restart::No,
            network: "bridge".into(),
            aliases: Vec::new(),
            labels: std::collections::BTreeMap::new(),
            security_opt: Vec::new(),
            memory: None,
            nano_cpus: None,
            health: None,
            user: None,
            wait_for_healthy: Vec::new(),
            job_timeout: None,
            sysctls: std::collections::BTreeMap::new(),
            image_volumes: Vec::new(),
        };
        let id = engine.create_container(&spec).await.unwrap();
        // A service called e.g. `db` on a host without --instance is a container named `db`;
        // Docker's inspect would also match a container whose ID starts with db….
        let by_prefix = engine.container(&id[..6]).await;
        let by_name = engine.container(&name).await;
        engine.remove_container(&name).await.unwrap();
        assert_eq!(by_prefix.unwrap(), None);
        assert_eq!(by_name.unwrap().unwrap().id, id);
    }

    #[test]
    fn references_split_at_the_tag_colon_only() {
        assert_eq!(
            split_reference("caddy:2.11.7"),
            ("caddy".into(), Some("2.11.7".into()))
        );
        assert_eq!(
            split_reference("busybox"),
            ("busybox".into(), Some("latest".into()))
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/x/y:1"),
            ("127.0.0.1:5000/x/y".into(), Some("1".into()))
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/x/y"),
            ("127.0.0.1:5000/x/y".into(), Some("latest".into()))
        );
        assert_eq!(split_reference("a@sha256:00"), ("a@sha256:00".into(), None));
    }
}
