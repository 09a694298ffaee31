//! Reads the actual state: Docker objects labelled by pi-setup, and the files under the root.
//! Reads only; the plan is computed from what this returns.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;

use crate::desired::Desired;
use crate::engine::{ContainerInfo, Engine, NetworkInfo};
use crate::host::{self, Stat};
use crate::paths::Paths;

#[derive(Debug, Default)]
pub struct Actual {
    pub network: Option<NetworkInfo>,
    /// Image reference → local image ID (None: not on this machine).
    pub images: BTreeMap<String, Option<String>>,
    pub dirs: BTreeMap<PathBuf, Option<Stat>>,
    pub files: BTreeMap<PathBuf, Option<Vec<u8>>>,
    /// `*.caddy` files present in the gateway's sites directory.
    pub site_files: Vec<PathBuf>,
    /// Desired container name → what has that name now.
    pub containers: BTreeMap<String, Option<ContainerInfo>>,
    /// Every container labelled as this instance's.
    pub managed: Vec<ContainerInfo>,
    /// The profile file in force, if any.
    pub profile: Option<Vec<u8>>,
}

pub async fn observe(
    engine: &Engine,
    desired: &Desired,
    paths: &Paths,
    instance: &str,
) -> Result<Actual> {
    let mut a = Actual {
        network: engine.network(&desired.network).await?,
        ..Default::default()
    };
    for image in &desired.images {
        a.images
            .insert(image.clone(), engine.image_id(image).await?);
    }
    for d in &desired.dirs {
        a.dirs.insert(d.path.clone(), host::stat(&d.path)?);
    }
    for f in &desired.gateway_files {
        a.files.insert(f.path.clone(), host::read(&f.path)?);
    }
    a.site_files = host::files_with_suffix(&desired.sites_dir, ".caddy")?;
    for c in &desired.containers {
        a.containers
            .insert(c.name.clone(), engine.container(&c.name).await?);
    }
    a.managed = engine.managed_containers(instance).await?;
    a.profile = host::read(&paths.profile_file())?;
    Ok(a)
}
