//! Desired + actual → an ordered list of actions. Pure: printing a plan (`--dry-run`) and
//! computing it change nothing. An empty plan means the host is already as desired.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::desired::{self, ContainerSpec, Desired, FileSpec, ObjectNames};
use crate::engine::{ContainerInfo, ContainerState};
use crate::model::GATEWAY;
use crate::observe::{Actual, DestState};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    PullImage {
        image: String,
    },
    /// Builds an image from a context on the host (`build`), tagged with the context's digest.
    BuildImage {
        tag: String,
        context: PathBuf,
        dockerfile: String,
    },
    CreateNetwork {
        name: String,
    },
    CreateDir {
        path: PathBuf,
        uid: u32,
        gid: u32,
        mode: u32,
        /// A volume's own directory whose name looks like a file's (`servers.json`).
        file_like: bool,
    },
    WriteFile {
        path: PathBuf,
        contents: Vec<u8>,
        mode: u32,
        exists: bool,
    },
    RemoveFile {
        path: PathBuf,
    },
    /// A volume's directory whose owner or mode the definition sets, and differs.
    SetOwner {
        path: PathBuf,
        uid: u32,
        gid: u32,
        mode: u32,
    },
    /// Moves what a container keeps in a Docker volume into its directory under /var/vol
    /// (stopping it for the copy), before the container is removed.
    MoveVolumeData {
        container: String,
        service: String,
        volume: String,
        /// The path inside the container.
        target: String,
        to: PathBuf,
    },
    RemoveContainer {
        name: String,
        why: String,
        /// The container of a service no longer defined, removed after the gateway stopped
        /// routing to it: the requests it is answering finish first (`crate::drain`).
        drain: Option<String>,
    },
    CreateContainer {
        spec: Box<ContainerSpec>,
        why: String,
    },
    StartContainer {
        name: String,
    },
    /// Removes the job's earlier container if any, runs it to completion and checks it ended
    /// well; what depends on it comes after.
    RunJob {
        spec: Box<ContainerSpec>,
        why: String,
    },
    ReloadGateway,
    EnableTimers {
        timers: Vec<String>,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::PullImage { image } => write!(f, "pull image {image}"),
            Action::BuildImage { tag, context, .. } => {
                write!(f, "build image {tag} from {}", context.display())
            }
            Action::CreateNetwork { name } => write!(f, "create network {name}"),
            Action::CreateDir {
                path,
                uid,
                gid,
                mode,
                file_like,
            } => {
                write!(
                    f,
                    "create directory {} (owner {uid}:{gid}, mode {mode:04o})",
                    path.display()
                )?;
                if *file_like {
                    write!(
                        f,
                        "; to mount a single file there, put the file in place first"
                    )?;
                }
                Ok(())
            }
            Action::WriteFile { path, exists, .. } => {
                write!(
                    f,
                    "{} {}",
                    if *exists { "update" } else { "write" },
                    path.display()
                )
            }
            Action::RemoveFile { path } => write!(f, "remove {}", path.display()),
            Action::SetOwner {
                path,
                uid,
                gid,
                mode,
            } => write!(
                f,
                "set owner {uid}:{gid} and mode {mode:04o} on {}",
                path.display()
            ),
            Action::MoveVolumeData {
                container,
                target,
                to,
                ..
            } => write!(
                f,
                "move the data container {container} keeps at {target} (in a Docker volume, \
                 outside /var/vol) into {}",
                to.display()
            ),
            Action::RemoveContainer { name, why, .. } => {
                write!(f, "remove container {name} ({why})")
            }
            Action::CreateContainer { spec, why } => {
                write!(
                    f,
                    "create and start container {} from {} ({why})",
                    spec.name, spec.image
                )?;
                for (target, host) in &spec.image_volumes {
                    write!(
                        f,
                        "; the image keeps data at {target}: mounted from {}",
                        host.display()
                    )?;
                }
                Ok(())
            }
            Action::StartContainer { name } => write!(f, "start container {name}"),
            Action::RunJob { spec, why } => {
                write!(f, "run job {} from {} ({why})", spec.name, spec.image)
            }
            Action::ReloadGateway => write!(f, "reload the gateway configuration"),
            Action::EnableTimers { timers } => write!(f, "enable and start {}", timers.join(", ")),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) actions: Vec<Action>,
}

impl Plan {
    pub(crate) fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}

/// Configuration files a command changes along with the host: written or removed right after
/// the image pulls.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConfigChange {
    pub(crate) writes: Vec<FileSpec>,
    pub(crate) removes: Vec<PathBuf>,
}

impl ConfigChange {
    pub(crate) fn paths(&self) -> Vec<PathBuf> {
        self.writes
            .iter()
            .map(|f| f.path.clone())
            .chain(self.removes.iter().cloned())
            .collect()
    }
}

/// What makes a plan impossible: objects of that name that are not pi-setup's.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum Conflict {
    #[error("a Docker network named '{0}' already exists and was not created by pi-setup; remove or rename it (`docker network rm {0}`), or use --instance")]
    ForeignNetwork(String),
    #[error("network '{0}' belongs to pi-setup instance '{1}', not this one")]
    OtherInstanceNetwork(String, String),
    #[error("a container named '{0}' already exists and was not created by pi-setup; remove or rename it, or use --instance")]
    ForeignContainer(String),
    #[error("{0} exists and is not a directory")]
    NotADirectory(PathBuf),
    #[error("{0} does not exist, and a volume mounts it by a file's name: put the file there first, then run the command again (a single-file mount; otherwise a directory would be made in its place); if it is meant to be a directory, create it (mkdir -p {0})")]
    FileMountMissing(PathBuf),
    #[error("container {container} keeps data at {target} in Docker volume {volume}, to be moved into {to}, but {to} is not empty; move its contents aside (or mount another directory at {target}), then run the command again")]
    VolumeDataInTheWay {
        container: String,
        target: String,
        volume: String,
        to: PathBuf,
    },
}

/// Whether a path's name is a configuration file's (`servers.json`, `nginx.conf`, `.env`): a
/// volume that mounts it means a single file, which must be in place before the container is
/// created (Docker, like a directory made for it, would turn it into a directory).
fn names_a_file(path: &std::path::Path) -> bool {
    const FILE_EXTENSIONS: &[&str] = &[
        "json",
        "yml",
        "yaml",
        "toml",
        "ini",
        "conf",
        "cfg",
        "cnf",
        "env",
        "txt",
        "xml",
        "js",
        "php",
        "py",
        "sh",
        "pem",
        "crt",
        "key",
        "properties",
        "lua",
        "html",
        "sqlite",
    ];
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase());
    name.is_some_and(|n| {
        n == ".env"
            || n.rsplit_once('.')
                .is_some_and(|(stem, ext)| !stem.is_empty() && FILE_EXTENSIONS.contains(&ext))
    })
}

/// Why the container `spec` describes must be made anew (`current` is what runs under its
/// name), or `None` when it stays.
fn why_recreate(
    spec: &ContainerSpec,
    current: Option<&ContainerInfo>,
    a: &Actual,
    names: &ObjectNames,
) -> Result<Option<String>, Conflict> {
    let image_id = a
        .images
        .get(&spec.image)
        .and_then(Option::as_ref)
        .map(|i| i.id.clone());
    Ok(match current {
        None => Some("new".to_string()),
        Some(c) if !c.managed() || c.instance() != names.instance_label() => {
            return Err(Conflict::ForeignContainer(spec.name.clone()))
        }
        // A run killed while Docker removed it: finish the removal, then create it anew.
        Some(c) if c.state == ContainerState::Removing => {
            Some("its removal was interrupted".to_string())
        }
        Some(c) if c.hash() != Some(spec.hash().as_str()) => {
            Some("configuration changed".to_string())
        }
        Some(c) if image_id.as_ref().is_some_and(|id| *id != c.image_id) => {
            Some("image updated".to_string())
        }
        // A job whose run with this definition failed, or never finished: again.
        Some(c) if spec.job_timeout.is_some() && c.exit_code != Some(0) => {
            Some("its last run did not complete".to_string())
        }
        Some(_) => None,
    })
}

/// Whether the gateway runs now and this plan neither recreates nor starts it: then a reload
/// is what brings its new configuration.
fn gateway_stays_up(d: &Desired, a: &Actual, names: &ObjectNames) -> Result<bool, Conflict> {
    let Some(spec) = d.containers.iter().find(|s| s.service == GATEWAY) else {
        return Ok(false);
    };
    let current = a.containers.get(&spec.name).and_then(Option::as_ref);
    Ok(current.is_some_and(ContainerInfo::running)
        && why_recreate(spec, current, a, names)?.is_none())
}

/// The ordered plan: images first (so a missing image stops the run before anything changes),
/// then the definitions, network, directories, gateway files, containers, gateway reload, and
/// clean-up.
pub(crate) fn plan(
    d: &Desired,
    a: &Actual,
    names: &ObjectNames,
    config: &ConfigChange,
) -> Result<Plan, Conflict> {
    let mut actions = Vec::new();

    for image in &d.images {
        if a.images.get(image).is_none_or(Option::is_none) {
            actions.push(match d.builds.get(image) {
                Some((context, dockerfile)) => Action::BuildImage {
                    tag: image.clone(),
                    context: context.clone(),
                    dockerfile: dockerfile.clone(),
                },
                None => Action::PullImage {
                    image: image.clone(),
                },
            });
        }
    }

    // The definitions themselves (profile, service files, secrets) are persisted once the
    // images are known to be there: a run that cannot pull changes nothing, and a run that
    // fails later leaves the definition in place for the next `apply` to finish.
    for f in &config.writes {
        write_if_changed(f, &a.config_files, &mut actions);
    }
    for path in &config.removes {
        if a.config_files.get(path).is_some_and(Option::is_some) {
            actions.push(Action::RemoveFile { path: path.clone() });
        }
    }

    match &a.network {
        None => actions.push(Action::CreateNetwork {
            name: d.network.clone(),
        }),
        Some(n) if !n.managed => return Err(Conflict::ForeignNetwork(d.network.clone())),
        Some(n) if n.instance.clone().unwrap_or_default() != names.instance_label() => {
            return Err(Conflict::OtherInstanceNetwork(
                d.network.clone(),
                n.instance.clone().unwrap_or_default(),
            ))
        }
        Some(_) => {}
    }

    for dir in &d.dirs {
        match a.dirs.get(&dir.path).copied().flatten() {
            None if dir.mount_leaf && names_a_file(&dir.path) => {
                return Err(Conflict::FileMountMissing(dir.path.clone()))
            }
            None => actions.push(Action::CreateDir {
                path: dir.path.clone(),
                uid: dir.uid,
                gid: dir.gid,
                mode: dir.mode,
                file_like: dir.mount_leaf
                    && dir
                        .path
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().contains('.')),
            }),
            // A single-file mount: the file is mounted as it is.
            Some(s) if s.is_file && dir.mount_leaf => {}
            Some(s) if !s.is_dir || s.is_symlink => {
                return Err(Conflict::NotADirectory(dir.path.clone()))
            }
            // Set by the volume's definition: kept so.
            Some(s) if dir.enforce && (s.uid, s.gid, s.mode) != (dir.uid, dir.gid, dir.mode) => {
                actions.push(Action::SetOwner {
                    path: dir.path.clone(),
                    uid: dir.uid,
                    gid: dir.gid,
                    mode: dir.mode,
                });
            }
            // Otherwise owner and mode are the layout's when pi-setup creates a directory;
            // afterwards they belong to the container (images chown their data on first start).
            Some(_) => {}
        }
    }

    let mut gateway_config_changed = false;
    for f in &d.gateway_files {
        gateway_config_changed |= write_if_changed(f, &a.files, &mut actions);
    }
    for stale in a
        .site_files
        .iter()
        .filter(|p| !d.gateway_files.iter().any(|f| &f.path == *p))
    {
        gateway_config_changed = true;
        actions.push(Action::RemoveFile {
            path: stale.clone(),
        });
    }

    let mut units_changed = false;
    for u in &d.units {
        units_changed |= write_if_changed(u, &a.files, &mut actions);
    }
    // The timer of a job that is gone, or no longer scheduled: it and its enablement go.
    for stale in a
        .job_timers
        .iter()
        .filter(|p| !d.units.iter().any(|u| &u.path == *p))
    {
        units_changed = true;
        if let (Some(dir), Some(name)) = (stale.parent(), stale.file_name()) {
            actions.push(Action::RemoveFile {
                path: dir.join("timers.target.wants").join(name),
            });
        }
        actions.push(Action::RemoveFile {
            path: stale.clone(),
        });
    }

    let loaded = a.gateway_loaded.as_deref() == Some(d.gateway_files_hash().as_str());
    let gateway_reload_due = gateway_config_changed || !loaded;
    // Containers of services no longer defined go first: they may hold a host port or a
    // name a new container needs. With a running gateway that stays, it stops routing to them
    // first, and each is removed once the requests it is answering are done (a removed service
    // would otherwise cut them, then answer 502 until the reload).
    let removed: Vec<&ContainerInfo> = a
        .managed
        .iter()
        .filter(|c| !d.containers.iter().any(|s| s.name == c.name))
        .collect();
    let reload_first = gateway_reload_due && !removed.is_empty() && gateway_stays_up(d, a, names)?;
    if reload_first {
        actions.push(Action::ReloadGateway);
    }
    for c in removed {
        volume_moves(d, a, c, &mut actions)?;
        actions.push(Action::RemoveContainer {
            name: c.name.clone(),
            why: format!(
                "service '{}' is no longer defined",
                c.service().unwrap_or("?")
            ),
            drain: c
                .service()
                .filter(|s| reload_first && *s != GATEWAY)
                .map(str::to_string),
        });
    }

    let mut gateway_restarted = false;
    for spec in &d.containers {
        let current = a.containers.get(&spec.name).cloned().flatten();
        let why_recreate = why_recreate(spec, current.as_ref(), a, names)?;
        if spec.job_timeout.is_some() {
            // A job that completed with this definition stays done; otherwise it runs (again).
            if let Some(why) = why_recreate {
                if let Some(c) = &current {
                    volume_moves(d, a, c, &mut actions)?;
                }
                actions.push(Action::RunJob {
                    spec: Box::new(spec.clone()),
                    why,
                });
            }
            continue;
        }
        if let Some(why) = why_recreate {
            if let Some(c) = &current {
                volume_moves(d, a, c, &mut actions)?;
                actions.push(Action::RemoveContainer {
                    name: spec.name.clone(),
                    why: why.clone(),
                    drain: None,
                });
            }
            actions.push(Action::CreateContainer {
                spec: Box::new(spec.clone()),
                why,
            });
            gateway_restarted |= spec.service == GATEWAY;
        } else if current.is_some_and(|c| !c.running()) {
            actions.push(Action::StartContainer {
                name: spec.name.clone(),
            });
            gateway_restarted |= spec.service == GATEWAY;
        }
    }
    if gateway_reload_due && !gateway_restarted && !reload_first {
        actions.push(Action::ReloadGateway);
    }

    if let Some(enabled) = &a.systemd {
        if units_changed || d.timers.iter().any(|t| !enabled.contains(t)) {
            actions.push(Action::EnableTimers {
                timers: d.timers.clone(),
            });
        }
    }

    Ok(Plan { actions })
}

/// Before a container is removed: moves for the data it keeps in Docker volumes (see
/// `desired::image_volume_mounts`), unless a run killed after the move already made it.
fn volume_moves(
    d: &Desired,
    a: &Actual,
    c: &ContainerInfo,
    actions: &mut Vec<Action>,
) -> Result<(), Conflict> {
    for (v, to) in desired::volume_destinations(d, c) {
        match a.volume_dests.get(&(v.volume.clone(), to.clone())) {
            Some(DestState::Moved) => {}
            Some(DestState::Occupied) => {
                return Err(Conflict::VolumeDataInTheWay {
                    container: c.name.clone(),
                    target: v.target,
                    volume: v.volume,
                    to,
                })
            }
            Some(DestState::Empty) | None => actions.push(Action::MoveVolumeData {
                container: c.name.clone(),
                service: c.service().unwrap_or_default().to_string(),
                volume: v.volume,
                target: v.target,
                to,
            }),
        }
    }
    Ok(())
}

/// Plans writing `f` unless its current contents are already the same; says whether it did.
fn write_if_changed(
    f: &FileSpec,
    current: &BTreeMap<PathBuf, Option<Vec<u8>>>,
    actions: &mut Vec<Action>,
) -> bool {
    let now = current.get(&f.path).and_then(Option::as_ref);
    if now.map(Vec::as_slice) == Some(f.contents.as_slice()) {
        return false;
    }
    actions.push(Action::WriteFile {
        path: f.path.clone(),
        contents: f.contents.clone(),
        mode: f.mode,
        exists: now.is_some(),
    });
    true
}

#[cfg(test)]
mod tests {
    //! The plan against a fake world: `Actual` built by hand, and `apply_to` carrying a plan
    //! out on it the way the engine and host modules do on the real ones.

    use std::collections::{BTreeMap, HashMap};
    use std::path::{Path, PathBuf};

    use super::{plan, Action, ConfigChange, Conflict, Plan};
    use crate::desired::{self, Desired, ObjectNames};
    use crate::engine::{ContainerInfo, ContainerState, ImageInfo, NetworkInfo, VolumeMount};
    use crate::host::paths::Paths;
    use crate::host::Stat;
    use crate::input::source::Source;
    use crate::observe::{Actual, DestState};

    const WEB: &str = "[[service]]\nname = \"web\"\nimage = \"busybox:1\"\ndomains = [\"web.test\"]\nvolumes = [\"www:/www\"]\n\n[[service]]\nname = \"db\"\nimage = \"postgres:16\"\nlayout = \"postgres\"\n";

    fn names() -> ObjectNames {
        ObjectNames {
            instance: Some("t".into()),
        }
    }

    fn images(volumes: &[(&str, &[&str])]) -> BTreeMap<String, Option<ImageInfo>> {
        ["caddy:2.11.7", "busybox:1", "postgres:16"]
            .iter()
            .map(|i| {
                let v = volumes
                    .iter()
                    .find(|(name, _)| name == i)
                    .map(|(_, v)| v.iter().map(ToString::to_string).collect())
                    .unwrap_or_default();
                (
                    i.to_string(),
                    Some(ImageInfo {
                        id: format!("sha256:{i}"),
                        volumes: v,
                    }),
                )
            })
            .collect()
    }

    fn desired_from(profile: &str, facts: &BTreeMap<String, Option<ImageInfo>>) -> Desired {
        let model = crate::input::load(&Source::new("p.toml", profile), &[]).unwrap();
        desired::desired(
            &model,
            &Paths::new("/r"),
            &names(),
            "/usr/local/bin/pi-setup",
            false,
            facts,
        )
    }

    /// A host with Docker and nothing of pi-setup's on it.
    fn empty_world(facts: BTreeMap<String, Option<ImageInfo>>) -> Actual {
        Actual {
            images: facts,
            systemd: Some(Vec::new()),
            ..Actual::default()
        }
    }

    fn container(spec: &desired::ContainerSpec, image_id: &str) -> ContainerInfo {
        ContainerInfo {
            id: format!("id-{}", spec.name),
            name: spec.name.clone(),
            image_id: image_id.to_string(),
            state: ContainerState::Running,
            health: None,
            exit_code: None,
            labels: spec.all_labels().into_iter().collect::<HashMap<_, _>>(),
            volumes: Vec::new(),
        }
    }

    /// Carries a plan out on the fake world.
    fn apply_to(a: &mut Actual, d: &Desired, p: &Plan) {
        for action in &p.actions {
            match action {
                Action::PullImage { image } | Action::BuildImage { tag: image, .. } => {
                    a.images.insert(
                        image.clone(),
                        Some(ImageInfo {
                            id: format!("sha256:{image}"),
                            volumes: Vec::new(),
                        }),
                    );
                }
                Action::CreateNetwork { .. } => {
                    a.network = Some(NetworkInfo {
                        managed: true,
                        instance: Some("t".into()),
                    });
                }
                Action::CreateDir {
                    path,
                    uid,
                    gid,
                    mode,
                    ..
                }
                | Action::SetOwner {
                    path,
                    uid,
                    gid,
                    mode,
                } => {
                    a.dirs.insert(
                        path.clone(),
                        Some(Stat {
                            uid: *uid,
                            gid: *gid,
                            mode: *mode,
                            is_dir: true,
                            is_symlink: false,
                            is_file: false,
                        }),
                    );
                }
                Action::WriteFile { path, contents, .. } => {
                    a.files.insert(path.clone(), Some(contents.clone()));
                    if path.extension().is_some_and(|e| e == "caddy")
                        && !a.site_files.contains(path)
                    {
                        a.site_files.push(path.clone());
                    }
                }
                Action::RemoveFile { path } => {
                    a.files.insert(path.clone(), None);
                    a.site_files.retain(|p| p != path);
                }
                Action::MoveVolumeData { volume, to, .. } => {
                    a.volume_dests
                        .insert((volume.clone(), to.clone()), DestState::Moved);
                }
                Action::RemoveContainer { name, .. } => {
                    a.containers.insert(name.clone(), None);
                    a.managed.retain(|c| &c.name != name);
                }
                Action::CreateContainer { spec, .. } => {
                    let id = a.images[&spec.image].as_ref().unwrap().id.clone();
                    let c = container(spec, &id);
                    a.containers.insert(spec.name.clone(), Some(c.clone()));
                    a.managed.push(c);
                    a.gateway_loaded = Some(d.gateway_files_hash());
                }
                Action::StartContainer { name } => {
                    if let Some(Some(c)) = a.containers.get_mut(name) {
                        c.state = ContainerState::Running;
                    }
                }
                Action::RunJob { spec, .. } => {
                    let id = a.images[&spec.image].as_ref().unwrap().id.clone();
                    let mut c = container(spec, &id);
                    c.state = ContainerState::Exited;
                    c.exit_code = Some(0);
                    a.managed.retain(|m| m.name != spec.name);
                    a.containers.insert(spec.name.clone(), Some(c.clone()));
                    a.managed.push(c);
                }
                Action::ReloadGateway => a.gateway_loaded = Some(d.gateway_files_hash()),
                Action::EnableTimers { timers } => a.systemd = Some(timers.clone()),
            }
        }
    }

    fn steps(p: &Plan) -> Vec<String> {
        p.actions.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_fresh_host_gets_everything_and_a_second_plan_is_empty() {
        let facts = images(&[]);
        let d = desired_from(WEB, &facts);
        let mut a = empty_world(facts);
        let first = plan(&d, &a, &names(), &ConfigChange::default()).unwrap();
        let text = steps(&first);
        assert_eq!(text[0], "create network t-intercontainer");
        assert!(text
            .contains(&"create directory /r/var/vol/web/www (owner 0:0, mode 0755)".to_string()));
        assert!(text.contains(&"create and start container t-web from busybox:1 (new)".to_string()));
        assert!(text
            .contains(&"enable and start pi-setup-backup.timer, pi-setup-heal.timer".to_string()));
        assert!(
            !text.iter().any(|s| s.contains("reload")),
            "a gateway that starts reads its files: no reload"
        );
        apply_to(&mut a, &d, &first);
        assert_eq!(
            plan(&d, &a, &names(), &ConfigChange::default()).unwrap(),
            Plan::default()
        );
    }

    fn converged(profile: &str, facts: BTreeMap<String, Option<ImageInfo>>) -> (Desired, Actual) {
        let d = desired_from(profile, &facts);
        let mut a = empty_world(facts);
        let p = plan(&d, &a, &names(), &ConfigChange::default()).unwrap();
        apply_to(&mut a, &d, &p);
        (d, a)
    }

    #[test]
    fn a_changed_service_recreates_only_its_container() {
        let (_, a) = converged(WEB, images(&[]));
        let changed = WEB.replace(
            "volumes = [\"www:/www\"]",
            "volumes = [\"www:/www\"]\nenv = { A = \"1\" }",
        );
        let d = desired_from(&changed, &images(&[]));
        let p = plan(&d, &a, &names(), &ConfigChange::default()).unwrap();
        assert_eq!(
            steps(&p),
            [
                "remove container t-web (configuration changed)",
                "create and start container t-web from busybox:1 (configuration changed)",
            ]
        );
    }

    #[test]
    fn a_new_domain_rewrites_the_site_and_reloads_the_gateway_without_restarting_anything() {
        let (_, a) = converged(WEB, images(&[]));
        let changed = WEB.replace("[\"web.test\"]", "[\"web.test\", \"www.test\"]");
        let d = desired_from(&changed, &images(&[]));
        let p = plan(&d, &a, &names(), &ConfigChange::default()).unwrap();
        assert_eq!(
            steps(&p),
            [
                "update /r/var/vol/gateway/etc/sites/web.caddy",
                "reload the gateway configuration",
            ]
        );
    }

    #[test]
    fn a_reload_that_never_happened_is_planned_again() {
        let (d, mut a) = converged(WEB, images(&[]));
        a.gateway_loaded = Some("something older".into());
        let p = plan(&d, &a, &names(), &ConfigChange::default()).unwrap();
        assert_eq!(steps(&p), ["reload the gateway configuration"]);
    }

    #[test]
    fn objects_that_are_not_ours_are_conflicts_not_changes() {
        let (d, a) = converged(WEB, images(&[]));
        let mut foreign_net = empty_world(images(&[]));
        foreign_net.network = Some(NetworkInfo {
            managed: false,
            instance: None,
        });
        assert_eq!(
            plan(&d, &foreign_net, &names(), &ConfigChange::default()),
            Err(Conflict::ForeignNetwork("t-intercontainer".into()))
        );
        let mut foreign = a;
        let web = foreign
            .containers
            .get_mut("t-web")
            .unwrap()
            .as_mut()
            .unwrap();
        web.labels = HashMap::from([("maintainer".to_string(), "someone".to_string())]);
        assert_eq!(
            plan(&d, &foreign, &names(), &ConfigChange::default()),
            Err(Conflict::ForeignContainer("t-web".into()))
        );
        let mut other_instance = empty_world(images(&[]));
        other_instance.network = Some(NetworkInfo {
            managed: true,
            instance: Some("u".into()),
        });
        assert_eq!(
            plan(&d, &other_instance, &names(), &ConfigChange::default()),
            Err(Conflict::OtherInstanceNetwork(
                "t-intercontainer".into(),
                "u".into()
            ))
        );
    }

    #[test]
    fn a_removed_service_loses_its_container_and_site_but_not_its_directory() {
        let (_, a) = converged(WEB, images(&[]));
        let only_db = &WEB[WEB.find("[[service]]\nname = \"db\"").unwrap()..];
        let d = desired_from(only_db, &images(&[]));
        let p = plan(&d, &a, &names(), &ConfigChange::default()).unwrap();
        // The gateway stops routing to it first; its container goes once its requests are
        // done.
        assert_eq!(
            steps(&p),
            [
                "remove /r/var/vol/gateway/etc/sites/web.caddy",
                "reload the gateway configuration",
                "remove container t-web (service 'web' is no longer defined)",
            ]
        );
        assert!(
            matches!(&p.actions[2], Action::RemoveContainer { drain: Some(s), .. } if s == "web"),
            "{:?}",
            p.actions[2]
        );

        // A gateway that is not running has nothing to drain through: the container goes, then
        // the gateway is started (with the new configuration).
        let mut stopped = a;
        if let Some(Some(g)) = stopped.containers.get_mut("t-gateway") {
            g.state = ContainerState::Exited;
        }
        let p = plan(&d, &stopped, &names(), &ConfigChange::default()).unwrap();
        assert_eq!(
            steps(&p),
            [
                "remove /r/var/vol/gateway/etc/sites/web.caddy",
                "remove container t-web (service 'web' is no longer defined)",
                "start container t-gateway",
            ]
        );
        assert!(matches!(
            &p.actions[1],
            Action::RemoveContainer { drain: None, .. }
        ));
    }

    #[test]
    fn image_volumes_are_mounted_from_the_service_directory() {
        let facts = images(&[
            ("busybox:1", &["/data", "/www/cache", "/"]),
            ("postgres:16", &["/var/lib/postgresql/data"]),
        ]);
        let d = desired_from(WEB, &facts);
        let web = d.containers.iter().find(|c| c.service == "web").unwrap();
        let binds: Vec<String> = web.binds.iter().map(ToString::to_string).collect();
        assert_eq!(
            binds,
            [
                "/r/var/vol/web/www:/www",
                "/r/var/vol/web/image-volumes/data:/data",
                // Inside a mounted parent: where the data is expected.
                "/r/var/vol/web/www/cache:/www/cache",
            ]
        );
        // The postgres layout already mounts exactly that path: nothing added.
        let db = d.containers.iter().find(|c| c.service == "db").unwrap();
        assert!(db.image_volumes.is_empty(), "{:?}", db.image_volumes);
        assert!(d
            .dirs
            .iter()
            .any(|dir| dir.path == Path::new("/r/var/vol/web/image-volumes/data")));
    }

    #[test]
    fn volume_data_of_an_old_container_is_moved_once_and_never_over_other_data() {
        let (_, mut a) = converged(WEB, images(&[]));
        // The container from before kept /data in an anonymous volume.
        let old = a.containers.get_mut("t-web").unwrap().as_mut().unwrap();
        old.volumes = vec![VolumeMount {
            volume: "abc123".into(),
            target: "/data".into(),
        }];
        let old = old.clone();
        a.managed = a
            .managed
            .iter()
            .map(|c| {
                if c.name == old.name {
                    old.clone()
                } else {
                    c.clone()
                }
            })
            .collect();
        let facts = images(&[("busybox:1", &["/data"])]);
        let d = desired_from(WEB, &facts);
        let to = PathBuf::from("/r/var/vol/web/image-volumes/data");
        let p = plan(&d, &a, &names(), &ConfigChange::default()).unwrap();
        let text = steps(&p);
        let moved = text
            .iter()
            .position(|s| s.starts_with("move the data container t-web keeps at /data"))
            .unwrap();
        let removed = text
            .iter()
            .position(|s| s.starts_with("remove container t-web"))
            .unwrap();
        assert!(moved < removed, "{text:?}");

        // Killed after the move, before the container went: the next run does not move again.
        a.volume_dests
            .insert(("abc123".into(), to.clone()), DestState::Moved);
        let p = plan(&d, &a, &names(), &ConfigChange::default()).unwrap();
        assert!(
            !steps(&p).iter().any(|s| s.starts_with("move")),
            "{:?}",
            steps(&p)
        );

        a.volume_dests
            .insert(("abc123".into(), to.clone()), DestState::Occupied);
        assert_eq!(
            plan(&d, &a, &names(), &ConfigChange::default()),
            Err(Conflict::VolumeDataInTheWay {
                container: "t-web".into(),
                target: "/data".into(),
                volume: "abc123".into(),
                to,
            })
        );
    }

    #[test]
    fn a_container_whose_removal_was_interrupted_is_removed_and_created_again() {
        let (d, mut a) = converged(WEB, images(&[]));
        let web = a.containers.get_mut("t-web").unwrap().as_mut().unwrap();
        web.state = ContainerState::Removing;
        let p = plan(&d, &a, &names(), &ConfigChange::default()).unwrap();
        assert_eq!(
            steps(&p),
            [
                "remove container t-web (its removal was interrupted)",
                "create and start container t-web from busybox:1 (its removal was interrupted)",
            ]
        );
    }

    #[test]
    fn the_dry_run_text_of_a_fresh_host() {
        let facts = images(&[("busybox:1", &["/data"])]);
        let d = desired_from(WEB, &facts);
        let mut a = empty_world(facts);
        a.images.remove("postgres:16");
        let p = plan(&d, &a, &names(), &ConfigChange::default()).unwrap();
        insta::assert_snapshot!(crate::report::plan_text(
            &p,
            "p.toml",
            &["postgres:16".to_string()]
        ));
    }

    #[test]
    fn a_file_where_a_volume_mounts_is_a_single_file_mount_and_elsewhere_a_conflict() {
        let profile = "[[service]]\nname = \"admin\"\nimage = \"busybox:1\"\nvolumes = [\"conf/servers.json:/pgadmin4/servers.json\"]\n";
        let facts = images(&[]);
        let d = desired_from(profile, &facts);
        // Not there: refused, nothing made (a directory in its place would be the silent
        // failure); a name that only might be a file's is made as a directory, with a note.
        let missing = plan(
            &d,
            &empty_world(facts.clone()),
            &names(),
            &ConfigChange::default(),
        )
        .unwrap_err();
        assert_eq!(
            missing.to_string(),
            "/r/var/vol/admin/conf/servers.json does not exist, and a volume mounts it by a file's name: put the file there first, then run the command again (a single-file mount; otherwise a directory would be made in its place); if it is meant to be a directory, create it (mkdir -p /r/var/vol/admin/conf/servers.json)"
        );
        let maybe = desired_from(&profile.replace("conf/servers.json", "conf/site.d"), &facts);
        let fresh = plan(
            &maybe,
            &empty_world(facts.clone()),
            &names(),
            &ConfigChange::default(),
        )
        .unwrap();
        assert!(steps(&fresh).contains(
            &"create directory /r/var/vol/admin/conf/site.d (owner 0:0, mode 0755); to mount a single file there, put the file in place first".to_string()
        ), "{:?}", steps(&fresh));
        for (name, file) in [
            ("nginx.conf", true),
            (".env", true),
            ("config.YAML", true),
            ("conf.d", false),
            ("data", false),
            (".json", false),
        ] {
            assert_eq!(
                super::names_a_file(std::path::Path::new(name)),
                file,
                "{name}"
            );
        }

        let file = Stat {
            uid: 0,
            gid: 0,
            mode: 0o644,
            is_dir: false,
            is_symlink: false,
            is_file: true,
        };
        // In place: mounted as it is.
        let mut a = empty_world(facts);
        a.dirs.insert(
            PathBuf::from("/r/var/vol/admin/conf/servers.json"),
            Some(file),
        );
        let p = plan(&d, &a, &names(), &ConfigChange::default()).unwrap();
        assert!(
            !steps(&p).iter().any(|s| s.contains("servers.json")),
            "{:?}",
            steps(&p)
        );
        apply_to(&mut a, &d, &p);
        assert_eq!(
            plan(&d, &a, &names(), &ConfigChange::default()).unwrap(),
            Plan::default()
        );
        a.dirs
            .insert(PathBuf::from("/r/var/vol/admin/conf"), Some(file));
        assert_eq!(
            plan(&d, &a, &names(), &ConfigChange::default()),
            Err(Conflict::NotADirectory(PathBuf::from(
                "/r/var/vol/admin/conf"
            )))
        );
    }

    #[test]
    fn an_owner_a_volume_sets_is_given_at_creation_and_kept() {
        let profile = "[[service]]\nname = \"es\"\nimage = \"busybox:1\"\nvolumes = [{ path = \"data\", target = \"/usr/share/elasticsearch/data\", owner = \"1000:1000\", mode = \"0750\" }, \"logs:/logs\"]\n";
        let facts = images(&[]);
        let d = desired_from(profile, &facts);
        let fresh = plan(
            &d,
            &empty_world(facts.clone()),
            &names(),
            &ConfigChange::default(),
        )
        .unwrap();
        assert!(steps(&fresh).contains(
            &"create directory /r/var/vol/es/data (owner 1000:1000, mode 0750)".to_string()
        ));
        let (_, mut a) = converged(profile, facts);
        let changed = |uid| Stat {
            uid,
            gid: 1000,
            mode: 0o750,
            is_dir: true,
            is_symlink: false,
            is_file: false,
        };
        a.dirs
            .insert(PathBuf::from("/r/var/vol/es/data"), Some(changed(0)));
        a.dirs
            .insert(PathBuf::from("/r/var/vol/es/logs"), Some(changed(999)));
        assert_eq!(
            steps(&plan(&d, &a, &names(), &ConfigChange::default()).unwrap()),
            ["set owner 1000:1000 and mode 0750 on /r/var/vol/es/data"],
            "logs sets no owner: what the container made of it stays"
        );
    }

    #[test]
    fn a_scheduled_job_gets_a_timer_and_loses_it_when_it_is_no_longer_scheduled() {
        let scheduled =
            "[[job]]\nname = \"report\"\nimage = \"busybox:1\"\nschedule = \"*-*-* 04:00:00\"\n";
        let facts = images(&[]);
        let d = desired_from(scheduled, &facts);
        let timer = d
            .units
            .iter()
            .find(|u| u.path.ends_with("pi-setup-job-report.timer"))
            .expect("a timer for the job");
        let text = String::from_utf8_lossy(&timer.contents);
        assert!(
            text.contains("OnCalendar=*-*-* 04:00:00\n")
                && text.contains("Unit=pi-setup-job@report.service\n"),
            "{text}"
        );
        assert!(d.timers.contains(&"pi-setup-job-report.timer".to_string()));

        let (_, mut a) = converged(scheduled, facts.clone());
        a.job_timers = vec![PathBuf::from(
            "/r/etc/systemd/system/pi-setup-job-report.timer",
        )];
        let unscheduled = desired_from(
            "[[job]]\nname = \"report\"\nimage = \"busybox:1\"\n",
            &facts,
        );
        let p = plan(&unscheduled, &a, &names(), &ConfigChange::default()).unwrap();
        let text = steps(&p);
        assert!(
            text.contains(
                &"remove /r/etc/systemd/system/timers.target.wants/pi-setup-job-report.timer"
                    .to_string()
            ),
            "{text:?}"
        );
        assert!(
            text.contains(&"remove /r/etc/systemd/system/pi-setup-job-report.timer".to_string()),
            "{text:?}"
        );
    }

    #[test]
    fn every_shipped_profile_plans_on_a_fresh_host() {
        for (name, text) in crate::input::shipped::PROFILES {
            let model = crate::input::load(&Source::new("shipped.toml", *text), &[]).unwrap();
            let d = desired::desired(
                &model,
                &Paths::new("/r"),
                &names(),
                "/usr/local/bin/pi-setup",
                false,
                &BTreeMap::new(),
            );
            let p = plan(
                &d,
                &empty_world(BTreeMap::new()),
                &names(),
                &ConfigChange::default(),
            )
            .unwrap_or_else(|c| panic!("{name}: {c}"));
            assert!(
                steps(&p)
                    .iter()
                    .any(|s| s.starts_with("create and start container t-gateway")),
                "{name}"
            );
        }
    }
}
