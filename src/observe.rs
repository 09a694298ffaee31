//! Reads the actual state: Docker objects labelled by pi-setup, and the files under the root.
//! Reads only; the plan is computed from what this returns.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;

use crate::desired::{self, Desired, MOVED_VOLUMES_FILE};
use crate::engine::{ContainerInfo, Engine, ImageInfo, NetworkInfo};
use crate::host::{self, Stat};

#[derive(Debug, Default)]
pub(crate) struct Actual {
    pub(crate) network: Option<NetworkInfo>,
    /// Image reference → the local image (None: not on this machine).
    pub(crate) images: BTreeMap<String, Option<ImageInfo>>,
    pub(crate) dirs: BTreeMap<PathBuf, Option<Stat>>,
    pub(crate) files: BTreeMap<PathBuf, Option<Vec<u8>>>,
    /// `*.caddy` files present in the gateway's sites directory.
    pub(crate) site_files: Vec<PathBuf>,
    /// What the gateway last loaded (see `Desired::gateway_files_hash`).
    pub(crate) gateway_loaded: Option<String>,
    /// Desired container name → what has that name now.
    pub(crate) containers: BTreeMap<String, Option<ContainerInfo>>,
    /// Every container labelled as this instance's.
    pub(crate) managed: Vec<ContainerInfo>,
    /// None: no systemd manages this root (a sandbox, a container); else which timers are
    /// enabled.
    pub(crate) systemd: Option<Vec<String>>,
    /// Current contents of the configuration files the command may change.
    pub(crate) config_files: BTreeMap<PathBuf, Option<Vec<u8>>>,
    /// Job timer files in the systemd directory (`pi-setup-job-*.timer`).
    pub(crate) job_timers: Vec<PathBuf>,
    /// (Docker volume, host directory it is to be moved into) → what is in that directory.
    pub(crate) volume_dests: BTreeMap<(String, PathBuf), DestState>,
}

/// A host directory that a container's Docker volume is to be moved into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DestState {
    /// Missing or empty: the move can go ahead.
    Empty,
    /// Holds data that a run of pi-setup moved in from this volume (`MOVED_VOLUMES_FILE`).
    Moved,
    /// Holds something else: moving would mix two trees.
    Occupied,
}

/// What the daemon knows of each image; observed before the desired state, which depends on the
/// volumes images declare.
pub(crate) async fn images(
    engine: &impl Engine,
    refs: &[String],
) -> Result<BTreeMap<String, Option<ImageInfo>>> {
    let mut out = BTreeMap::new();
    for r in refs {
        if !out.contains_key(r) {
            out.insert(r.clone(), engine.image(r).await?);
        }
    }
    Ok(out)
}

pub(crate) async fn observe(
    engine: &impl Engine,
    desired: &Desired,
    images: BTreeMap<String, Option<ImageInfo>>,
    config_paths: &[PathBuf],
    instance: &str,
    systemd_root: bool,
) -> Result<Actual> {
    let mut a = Actual {
        network: engine.network(&desired.network).await?,
        images,
        ..Default::default()
    };
    for d in &desired.dirs {
        a.dirs.insert(d.path.clone(), host::stat(&d.path)?);
    }
    for f in &desired.gateway_files {
        a.files.insert(f.path.clone(), host::read(&f.path)?);
    }
    a.site_files = host::files_with_suffix(&desired.sites_dir, ".caddy")?;
    a.gateway_loaded = host::read(&desired.gateway_loaded_marker)?
        .map(|b| String::from_utf8_lossy(&b).trim().to_string());
    // One listing answers both questions: what has each desired name, and what is ours.
    let all = engine.all_containers().await?;
    for c in &desired.containers {
        let found = all.iter().find(|x| x.name == c.name).cloned();
        a.containers.insert(c.name.clone(), found);
    }
    a.managed = all
        .into_iter()
        .filter(|c| c.managed() && c.instance() == instance)
        .collect();
    for c in &a.managed {
        let moved = host::read(
            &desired
                .vol_root
                .join(c.service().unwrap_or(""))
                .join(MOVED_VOLUMES_FILE),
        )
        .ok()
        .flatten()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
        for (v, to) in desired::volume_destinations(desired, c) {
            let state = match host::is_empty_dir(&to)? {
                true => DestState::Empty,
                false
                    if moved
                        .lines()
                        .any(|l| l.split(' ').next() == Some(v.volume.as_str())) =>
                {
                    DestState::Moved
                }
                false => DestState::Occupied,
            };
            a.volume_dests.insert((v.volume, to), state);
        }
    }
    for u in &desired.units {
        a.files.insert(u.path.clone(), host::read(&u.path)?);
    }
    if let Some(dir) = desired.units.first().and_then(|u| u.path.parent()) {
        a.job_timers = host::files_with_suffix(dir, ".timer")?
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(desired::JOB_TIMER_PREFIX))
            })
            .collect();
    }
    if systemd_root {
        let wants = |t: &String| {
            desired
                .units
                .first()
                .and_then(|u| u.path.parent())
                .is_some_and(|dir| dir.join("timers.target.wants").join(t).exists())
        };
        a.systemd = Some(
            desired
                .timers
                .iter()
                .filter(|t| wants(t))
                .cloned()
                .collect(),
        );
    }
    for p in config_paths {
        a.config_files.insert(p.clone(), host::read(p)?);
    }
    Ok(a)
}
