//! Desired + actual → an ordered list of actions. Pure: printing a plan (`--dry-run`) and
//! computing it change nothing. An empty plan means the host is already as desired.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::desired::{ContainerSpec, Desired, FileSpec, Names};
use crate::model::GATEWAY;
use crate::observe::Actual;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    PullImage {
        image: String,
    },
    CreateNetwork {
        name: String,
    },
    CreateDir {
        path: PathBuf,
        uid: u32,
        gid: u32,
        mode: u32,
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
    RemoveContainer {
        name: String,
        why: String,
    },
    CreateContainer {
        spec: Box<ContainerSpec>,
        why: String,
    },
    StartContainer {
        name: String,
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
            Action::CreateNetwork { name } => write!(f, "create network {name}"),
            Action::CreateDir {
                path,
                uid,
                gid,
                mode,
            } => {
                write!(
                    f,
                    "create directory {} (owner {uid}:{gid}, mode {mode:04o})",
                    path.display()
                )
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
            Action::RemoveContainer { name, why } => write!(f, "remove container {name} ({why})"),
            Action::CreateContainer { spec, why } => {
                write!(
                    f,
                    "create and start container {} from {} ({why})",
                    spec.name, spec.image
                )
            }
            Action::StartContainer { name } => write!(f, "start container {name}"),
            Action::ReloadGateway => write!(f, "reload the gateway configuration"),
            Action::EnableTimers { timers } => write!(f, "enable and start {}", timers.join(", ")),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}

/// Configuration files a command changes along with the host: written or removed right after
/// the image pulls.
#[derive(Debug, Clone, Default)]
pub struct ConfigChange {
    pub writes: Vec<FileSpec>,
    pub removes: Vec<PathBuf>,
}

impl ConfigChange {
    pub fn paths(&self) -> Vec<PathBuf> {
        self.writes
            .iter()
            .map(|f| f.path.clone())
            .chain(self.removes.iter().cloned())
            .collect()
    }
}

/// What makes a plan impossible: objects of that name that are not pi-setup's.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Conflict {
    #[error("a Docker network named '{0}' already exists and was not created by pi-setup; remove or rename it (`docker network rm {0}`), or use --instance")]
    ForeignNetwork(String),
    #[error("network '{0}' belongs to pi-setup instance '{1}', not this one")]
    OtherInstanceNetwork(String, String),
    #[error("a container named '{0}' already exists and was not created by pi-setup; remove or rename it, or use --instance")]
    ForeignContainer(String),
    #[error("{0} exists and is not a directory")]
    NotADirectory(PathBuf),
}

/// The ordered plan: images first (so a missing image stops the run before anything changes),
/// then the definitions, network, directories, gateway files, containers, gateway reload, and
/// clean-up.
pub fn plan(
    d: &Desired,
    a: &Actual,
    names: &Names,
    config: &ConfigChange,
) -> Result<Plan, Conflict> {
    let mut actions = Vec::new();

    for image in &d.images {
        if a.images.get(image).is_none_or(|id| id.is_none()) {
            actions.push(Action::PullImage {
                image: image.clone(),
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
            None => actions.push(Action::CreateDir {
                path: dir.path.clone(),
                uid: dir.uid,
                gid: dir.gid,
                mode: dir.mode,
            }),
            Some(s) if !s.is_dir || s.is_symlink => {
                return Err(Conflict::NotADirectory(dir.path.clone()))
            }
            // Owner and mode are the layout's when pi-setup creates a directory; afterwards they
            // belong to the container (images chown their data on first start).
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

    // Containers of services no longer defined go first: they may hold a host port or a
    // name a new container needs.
    for c in &a.managed {
        let wanted = d.containers.iter().any(|s| s.name == c.name);
        if !wanted {
            actions.push(Action::RemoveContainer {
                name: c.name.clone(),
                why: format!(
                    "service '{}' is no longer defined",
                    c.service().unwrap_or("?")
                ),
            });
        }
    }

    let mut gateway_restarted = false;
    for spec in &d.containers {
        let current = a.containers.get(&spec.name).cloned().flatten();
        let image_id = a.images.get(&spec.image).cloned().flatten();
        let why_recreate = match &current {
            None => Some("new".to_string()),
            Some(c) if !c.managed() || c.instance() != names.instance_label() => {
                return Err(Conflict::ForeignContainer(spec.name.clone()))
            }
            Some(c) if c.hash() != Some(spec.hash().as_str()) => {
                Some("configuration changed".to_string())
            }
            Some(c) if image_id.as_ref().is_some_and(|id| *id != c.image_id) => {
                Some("image updated".to_string())
            }
            Some(_) => None,
        };
        if let Some(why) = why_recreate {
            if current.is_some() {
                actions.push(Action::RemoveContainer {
                    name: spec.name.clone(),
                    why: why.clone(),
                });
            }
            actions.push(Action::CreateContainer {
                spec: Box::new(spec.clone()),
                why,
            });
            gateway_restarted |= spec.service == GATEWAY;
        } else if current.is_some_and(|c| !c.running) {
            actions.push(Action::StartContainer {
                name: spec.name.clone(),
            });
            gateway_restarted |= spec.service == GATEWAY;
        }
    }
    let loaded = a.gateway_loaded.as_deref() == Some(d.gateway_files_hash().as_str());
    if (gateway_config_changed || !loaded) && !gateway_restarted {
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
