//! The desired state derived from the model: which network, directories, files and containers
//! should exist. Pure: computing it touches nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::engine::{ContainerInfo, ImageInfo, VolumeMount};
use crate::gateway;
use crate::host::paths::Paths;
use crate::input::layout::Layout;
use crate::input::shipped;
use crate::model::{Health, Model, Mount, Restart, Service, GATEWAY};

pub(crate) const LABEL_MANAGED: &str = "pi-setup.managed";
pub(crate) const LABEL_INSTANCE: &str = "pi-setup.instance";
pub(crate) const LABEL_SERVICE: &str = "pi-setup.service";
/// On the containers of jobs (`[[job]]`): they run to completion and stay, stopped, as the
/// record that this definition ran.
pub(crate) const LABEL_JOB: &str = "pi-setup.job";
pub(crate) const LABEL_HASH: &str = "pi-setup.config-hash";
pub(crate) const NETWORK: &str = "intercontainer";

/// Docker object names for one appliance: `--instance NAME` prefixes all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ObjectNames {
    pub(crate) instance: Option<String>,
}

impl ObjectNames {
    pub(crate) fn object(&self, base: &str) -> String {
        match &self.instance {
            Some(i) => format!("{i}-{base}"),
            None => base.to_string(),
        }
    }

    pub(crate) fn network(&self) -> String {
        self.object(NETWORK)
    }

    pub(crate) fn instance_label(&self) -> String {
        self.instance.clone().unwrap_or_default()
    }

    /// A container's labels: managed, which instance, which service.
    pub(crate) fn labels(&self, service: &str) -> BTreeMap<String, String> {
        let mut l = self.network_labels();
        l.insert(LABEL_SERVICE.to_string(), service.to_string());
        l
    }

    /// The network's labels: managed, which instance.
    pub(crate) fn network_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_MANAGED.to_string(), "true".to_string()),
            (LABEL_INSTANCE.to_string(), self.instance_label()),
        ])
    }
}

/// Everything Docker needs to create one container. Its hash (over all fields) is stored as a
/// label, so a changed definition, and only a changed one, recreates the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ContainerSpec {
    pub(crate) service: String,
    pub(crate) name: String,
    pub(crate) image: String,
    pub(crate) cmd: Option<Vec<String>>,
    pub(crate) env: Vec<String>,
    pub(crate) binds: Vec<Bind>,
    /// (container port, host address, host port)
    pub(crate) ports: Vec<(u16, String, u16)>,
    pub(crate) restart: Restart,
    pub(crate) network: String,
    pub(crate) aliases: Vec<String>,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) security_opt: Vec<String>,
    pub(crate) memory: Option<i64>,
    pub(crate) nano_cpus: Option<i64>,
    pub(crate) health: Option<Health>,
    /// Namespaced kernel settings (`--sysctl`); left out of the hash when empty, so adding
    /// the field did not recreate every container.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) sysctls: BTreeMap<String, String>,
    /// Containers that must be healthy before this one starts, and how long to wait for each
    /// (from their health settings). Not a property of the container: not in the hash.
    #[serde(skip)]
    pub(crate) wait_for_healthy: Vec<(String, std::time::Duration)>,
    /// Set for a job: it runs to completion, within this long.
    #[serde(skip)]
    pub(crate) job_timeout: Option<std::time::Duration>,
    /// `uid[:gid]` or a user name; left out of the hash when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) user: Option<String>,
    /// The paths its image declares as volumes, and the host directory each is kept in (also
    /// in `binds`); for messages only.
    #[serde(skip)]
    pub(crate) image_volumes: Vec<(String, PathBuf)>,
}

impl Desired {
    /// Identifies the gateway files as a whole: stored in the marker once the gateway has
    /// loaded them, so a reload that never happened (a run that stopped in between, a refused
    /// config) is retried by the next run instead of being forgotten.
    pub(crate) fn gateway_files_hash(&self) -> String {
        let mut h = Sha256::new();
        for f in &self.gateway_files {
            h.update(f.path.as_os_str().as_encoded_bytes());
            h.update([0]);
            h.update(&f.contents);
            h.update([0]);
        }
        hex::encode(h.finalize())
    }
}

impl ContainerSpec {
    pub(crate) fn hash(&self) -> String {
        let json = serde_json::to_vec(self).expect("a spec always serialises");
        hex::encode(Sha256::digest(json))
    }

    /// Labels as set on the container: the spec's own plus its hash.
    pub(crate) fn all_labels(&self) -> BTreeMap<String, String> {
        let mut l = self.labels.clone();
        l.insert(LABEL_HASH.to_string(), self.hash());
        l
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DirSpec {
    pub(crate) path: PathBuf,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) mode: u32,
    /// What a volume mounts: a regular file already there is mounted as that file (a
    /// single-file mount) instead of being a conflict; missing, it becomes a directory.
    pub(crate) mount_leaf: bool,
    /// The volume set this owner and mode: kept so, not only when the directory is made.
    pub(crate) enforce: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileSpec {
    pub(crate) path: PathBuf,
    pub(crate) contents: Vec<u8>,
    pub(crate) mode: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct Desired {
    pub(crate) network: String,
    pub(crate) images: Vec<String>,
    pub(crate) dirs: Vec<DirSpec>,
    /// Gateway configuration files (Caddyfile, one site per routed service).
    pub(crate) gateway_files: Vec<FileSpec>,
    /// Where pi-setup notes which gateway files the running gateway has loaded.
    pub(crate) gateway_loaded_marker: PathBuf,
    /// The directory whose `*.caddy` files not in `gateway_files` are stale.
    pub(crate) sites_dir: PathBuf,
    /// Gateway first, then services in definition order.
    pub(crate) containers: Vec<ContainerSpec>,
    /// systemd units from `systemd/`, and the timers among them to enable.
    pub(crate) units: Vec<FileSpec>,
    pub(crate) timers: Vec<String>,
    /// `/var/vol` under the root.
    pub(crate) vol_root: PathBuf,
    /// Images pi-setup builds rather than pulls: tag → (context directory, Dockerfile in it).
    pub(crate) builds: BTreeMap<String, (PathBuf, String)>,
    /// Images not on this machine yet: the volumes they declare are mapped once they are
    /// pulled (see `image_volume_mounts`).
    pub(crate) unknown_images: Vec<String>,
}

/// The file under `/var/vol/<service>` that lists the Docker volumes whose data pi-setup has
/// moved in (`<volume> <path in the container>` lines): a directory that is not empty is the
/// moved data only if its volume is listed, so a run killed after the move does not move again.
pub(crate) const MOVED_VOLUMES_FILE: &str = ".pi-setup-moved-volumes";

/// `exec` is how the units call pi-setup: the binary's path plus `--root`/`--instance` if given.
/// `migrate_requests`: the kernel has `net.ipv4.tcp_migrate_req` (see `crate::reuseport`).
/// `image_facts`: what the daemon knows of each image (None: not on this machine yet).
pub(crate) fn desired(
    model: &Model,
    paths: &Paths,
    names: &ObjectNames,
    exec: &str,
    migrate_requests: bool,
    image_facts: &BTreeMap<String, Option<ImageInfo>>,
) -> Desired {
    let mut images: Vec<String> = Vec::new();
    let mut dirs = Vec::new();
    let mut containers = Vec::new();

    let gw = &model.gateway;
    // No address: Docker publishes on every IPv4 and IPv6 address; IPv4 only when a service
    // has `lan` access, which goes by the client's address: over IPv6, Docker's proxy hides it
    // (every client comes from the network's gateway, a private address).
    let lan = model
        .services
        .iter()
        .any(|s| s.access == crate::model::Access::Lan);
    let host_ip = match gw.bind {
        Some(ip) => ip.to_string(),
        None if lan => "0.0.0.0".to_string(),
        None => String::new(),
    };
    let mut ports = vec![(80, host_ip.clone(), gw.http_port)];
    if gw.https != crate::model::HttpsMode::Off {
        ports.push((443, host_ip, gw.https_port));
    }
    dirs.extend(layout_dirs(&model.gateway_layout, paths, GATEWAY, &[]));
    containers.push(ContainerSpec {
        service: GATEWAY.to_string(),
        name: names.object(GATEWAY),
        image: gw.image.clone(),
        cmd: Some(
            [
                "caddy",
                "run",
                "--config",
                "/etc/caddy/Caddyfile",
                "--adapter",
                "caddyfile",
            ]
            .map(String::from)
            .to_vec(),
        ),
        env: Vec::new(),
        binds: binds(paths, GATEWAY, &model.gateway_layout.mounts()),
        ports,
        restart: Restart::UnlessStopped,
        network: names.network(),
        aliases: vec![GATEWAY.to_string()],
        labels: names.labels(GATEWAY),
        security_opt: vec!["no-new-privileges:true".into()],
        memory: None,
        nano_cpus: None,
        health: None,
        wait_for_healthy: Vec::new(),
        job_timeout: None,
        user: None,
        // A reload hands what is queued on the old listener to the new one (crate::reuseport).
        sysctls: if migrate_requests {
            BTreeMap::from([(
                crate::reuseport::MIGRATE_SYSCTL.to_string(),
                "1".to_string(),
            )])
        } else {
            BTreeMap::new()
        },
        image_volumes: Vec::new(),
    });
    images.push(gw.image.clone());
    // Static routes: the gateway serves those directories itself, read-only.
    if let Some(gw_spec) = containers.last_mut() {
        for s in &model.services {
            for st in &s.statics {
                let bind = Bind {
                    host: paths.vol(s.name.as_str()).join(&st.dir),
                    target: format!("{}/{}/{}", gateway::STATIC_ROOT, s.name, st.dir),
                    read_only: true,
                };
                if !gw_spec.binds.contains(&bind) {
                    gw_spec.binds.push(bind);
                }
            }
        }
    }
    let gateway_mounts = model.gateway_layout.mounts();
    let gateway_auto = image_volume_mounts(&gateway_mounts, declared(image_facts, &gw.image));
    if let Some(spec) = containers.last_mut() {
        add_image_volumes(spec, paths, GATEWAY, &gateway_auto);
        let extra: Vec<&Mount> = gateway_auto.iter().collect();
        dirs.extend(layout_dirs(&Layout::default(), paths, GATEWAY, &extra));
    }

    // In start order: each container after those it depends on.
    for s in model.start_order() {
        let auto = image_volume_mounts(&s.mounts, declared(image_facts, &s.image));
        let extra: Vec<&Mount> = s.mounts.iter().chain(&auto).collect();
        dirs.extend(layout_dirs(&s.layout, paths, s.name.as_str(), &extra));
        for st in &s.statics {
            let m = Mount {
                sub: st.dir.clone(),
                target: String::new(),
                read_only: true,
                owner: None,
                mode: None,
            };
            dirs.extend(layout_dirs(
                &Layout::default(),
                paths,
                s.name.as_str(),
                &[&m],
            ));
        }
        for f in &s.foreign_mounts {
            let m = Mount {
                sub: f.sub.clone(),
                target: f.target.clone(),
                read_only: true,
                owner: None,
                mode: None,
            };
            dirs.extend(layout_dirs(
                &Layout::default(),
                paths,
                f.service.as_str(),
                &[&m],
            ));
        }
        let mut spec = service_container(s, paths, names);
        spec.wait_for_healthy = s
            .depends_on
            .iter()
            .filter(|d| d.condition == crate::model::Condition::Healthy)
            .filter_map(|d| {
                let h = model.service(d.name.as_str())?.health.as_ref()?;
                Some((names.object(d.name.as_str()), health_patience(h)))
            })
            .collect();
        add_image_volumes(&mut spec, paths, s.name.as_str(), &auto);
        containers.push(spec);
        if !images.contains(&s.image) {
            images.push(s.image.clone());
        }
    }
    // One entry per directory: a volume that sets an owner wins over a plain mention.
    let mut unique: Vec<DirSpec> = Vec::with_capacity(dirs.len());
    let mut index: BTreeMap<PathBuf, usize> = BTreeMap::new();
    for d in dirs {
        match index.get(&d.path) {
            Some(&i) if d.enforce && !unique[i].enforce => unique[i] = d,
            Some(&i) => unique[i].mount_leaf |= d.mount_leaf,
            None => {
                index.insert(d.path.clone(), unique.len());
                unique.push(d);
            }
        }
    }
    let dirs = unique;
    let unknown_images = images
        .iter()
        .filter(|i| image_facts.get(*i).is_none_or(Option::is_none))
        .cloned()
        .collect();

    let sites_dir = paths.vol(GATEWAY).join("etc/sites");
    let mut gateway_files = vec![FileSpec {
        path: paths.vol(GATEWAY).join(gateway::CADDYFILE_ON_HOST),
        contents: gateway::caddyfile(gw).into_bytes(),
        mode: 0o644,
    }];
    gateway_files.push(FileSpec {
        path: paths.vol(GATEWAY).join("etc/maintenance.html"),
        contents: gw
            .maintenance_html
            .clone()
            .unwrap_or_else(|| gateway::MAINTENANCE_HTML.to_string())
            .into_bytes(),
        mode: 0o644,
    });
    for site in gateway::site_files(gw, &model.services) {
        gateway_files.push(FileSpec {
            path: sites_dir.join(&site.name),
            contents: site.text.into_bytes(),
            // A password hash is not for every local user to brute-force.
            mode: if site.private { 0o600 } else { 0o644 },
        });
    }

    let mut units: Vec<FileSpec> = shipped::UNITS
        .iter()
        .map(|(name, template)| FileSpec {
            path: paths.systemd_dir().join(name),
            contents: template
                .replace("@EXEC@", exec)
                .replace("@SCHEDULE@", &model.backup.schedule)
                .into_bytes(),
            mode: 0o644,
        })
        .collect();
    let mut timers: Vec<String> = shipped::UNITS
        .iter()
        .filter(|(n, _)| {
            std::path::Path::new(n)
                .extension()
                .is_some_and(|e| e == "timer")
        })
        .map(|(n, _)| n.to_string())
        .collect();
    // A timer per scheduled job (its name is a DNS label: safe in a unit name).
    for s in model.services.iter().filter(|s| s.job.is_some()) {
        if let Some(schedule) = &s.schedule {
            let name = job_timer_name(s.name.as_str());
            units.push(FileSpec {
                path: paths.systemd_dir().join(&name),
                contents: shipped::JOB_TIMER
                    .1
                    .replace("@JOB@", s.name.as_str())
                    .replace("@SCHEDULE@", schedule)
                    .into_bytes(),
                mode: 0o644,
            });
            timers.push(name);
        }
    }

    let builds = model
        .services
        .iter()
        .filter_map(|s| {
            let b = s.build.as_ref()?;
            Some((
                s.image.clone(),
                (paths.host(&b.context), b.dockerfile.clone()),
            ))
        })
        .collect();
    Desired {
        network: names.network(),
        vol_root: paths.vol_root(),
        builds,
        unknown_images,
        units,
        timers,
        images,
        dirs,
        gateway_loaded_marker: paths.vol(GATEWAY).join(gateway::LOADED_MARKER_ON_HOST),
        gateway_files,
        sites_dir,
        containers,
    }
}

fn service_container(s: &Service, paths: &Paths, names: &ObjectNames) -> ContainerSpec {
    ContainerSpec {
        service: s.name.to_string(),
        name: names.object(s.name.as_str()),
        image: s.image.clone(),
        cmd: s.command.clone(),
        // Secrets go in like any variable: the hash covers them, so a changed secret
        // recreates the container; nothing prints a spec's environment.
        env: s
            .env
            .iter()
            .chain(s.secret_env.iter())
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
        binds: binds(paths, s.name.as_str(), &s.mounts)
            .into_iter()
            .chain(s.foreign_mounts.iter().map(|f| Bind {
                host: if f.sub == "." {
                    paths.vol(f.service.as_str())
                } else {
                    paths.vol(f.service.as_str()).join(&f.sub)
                },
                target: f.target.clone(),
                read_only: true,
            }))
            .collect(),
        ports: s
            .publish
            .iter()
            .map(|p| (p.container_port, p.host_ip.clone(), p.host_port))
            .collect(),
        // A job runs once; its stopped container is the record that it did.
        restart: if s.job.is_some() {
            Restart::No
        } else {
            s.restart
        },
        network: names.network(),
        aliases: vec![s.name.to_string()],
        labels: {
            let mut l = names.labels(s.name.as_str());
            if s.job.is_some() {
                l.insert(LABEL_JOB.to_string(), "true".to_string());
            }
            l
        },
        security_opt: vec!["no-new-privileges:true".into()],
        memory: s.memory,
        nano_cpus: s.nano_cpus,
        health: s.health.clone(),
        wait_for_healthy: Vec::new(),
        job_timeout: s.job,
        user: s.user.clone(),
        sysctls: BTreeMap::new(),
        image_volumes: Vec::new(),
    }
}

/// The timer file of a scheduled job.
pub(crate) fn job_timer_name(job: &str) -> String {
    format!("{JOB_TIMER_PREFIX}{job}.timer")
}

/// What every job timer's file name starts with (a stale one is removed by `plan`).
pub(crate) const JOB_TIMER_PREFIX: &str = "pi-setup-job-";

/// How long a healthy container takes at worst to say so: its start period, then as many
/// checks as it may fail, each an interval plus its timeout; and a minute to spare.
pub(crate) fn health_patience(h: &Health) -> std::time::Duration {
    let interval = h.interval_ms;
    let timeout = h.timeout_ms.unwrap_or(interval.min(30_000));
    let retries = u64::from(h.retries.unwrap_or(3));
    let start = h.start_period_ms.unwrap_or(interval);
    std::time::Duration::from_millis(start + (interval + timeout) * (retries + 1) + 60_000)
}

fn declared<'a>(facts: &'a BTreeMap<String, Option<ImageInfo>>, image: &str) -> &'a [String] {
    facts
        .get(image)
        .and_then(Option::as_ref)
        .map_or(&[], |i| i.volumes.as_slice())
}

fn add_image_volumes(spec: &mut ContainerSpec, paths: &Paths, name: &str, auto: &[Mount]) {
    for b in binds(paths, name, auto) {
        spec.image_volumes.push((b.target.clone(), b.host.clone()));
        spec.binds.push(b);
    }
}

/// Where the sub-directories for volumes an image declares go, when no mount of the service
/// contains them.
pub(crate) const IMAGE_VOLUMES_DIR: &str = "image-volumes";

/// Bind mounts for the paths an image declares as volumes (`VOLUME /data`) that the service
/// does not mount itself. Without one, Docker keeps such a path in an anonymous volume:
/// outside /var/vol, so never backed up, and replaced by an empty one whenever the container
/// is recreated. Docker makes that volume unless a mount has exactly the declared path, so a
/// mount of a parent directory does not cover it: the declared path then goes in the same
/// place inside the parent's directory (where the data is expected), else under
/// `image-volumes/<path>`. Paths that are not clean absolute paths are ignored (Docker refuses
/// to create such containers anyway).
pub(crate) fn image_volume_mounts(mounts: &[Mount], declared: &[String]) -> Vec<Mount> {
    let mut out: Vec<Mount> = Vec::new();
    for path in declared {
        let Some(parts) = clean_parts(path) else {
            continue;
        };
        let target = format!("/{}", parts.join("/"));
        let covered = mounts
            .iter()
            .chain(&out)
            .any(|m| clean_parts(&m.target).as_deref() == Some(parts.as_slice()));
        if covered || parts.is_empty() {
            continue;
        }
        // The nearest writable mount above it.
        let parent = mounts
            .iter()
            .filter(|m| !m.read_only)
            .filter_map(|m| Some((clean_parts(&m.target)?, m)))
            .filter(|(t, _)| t.len() < parts.len() && parts.starts_with(t))
            .max_by_key(|(t, _)| t.len());
        let sub = match parent {
            Some((t, m)) => {
                let rest = parts[t.len()..].join("/");
                if m.sub == "." {
                    rest
                } else {
                    format!("{}/{rest}", m.sub)
                }
            }
            None => format!("{IMAGE_VOLUMES_DIR}/{}", parts.join("/")),
        };
        out.push(Mount {
            sub,
            target,
            read_only: false,
            owner: None,
            mode: None,
        });
    }
    out
}

/// The normal components of an absolute path (`/a//b/./c/` → a, b, c); None for a relative
/// path or one with `..`.
fn clean_parts(path: &str) -> Option<Vec<&str>> {
    if !path.starts_with('/') {
        return None;
    }
    let mut parts = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => return None,
            p => parts.push(p),
        }
    }
    Some(parts)
}

/// The host directory each Docker volume of an existing container should be moved into: where
/// the container's new definition binds that path, else where `image_volume_mounts` would put
/// it in the service's directory.
pub(crate) fn volume_destinations(d: &Desired, c: &ContainerInfo) -> Vec<(VolumeMount, PathBuf)> {
    let Some(service) = c.service() else {
        return Vec::new();
    };
    // A name from a label: used as a directory only if it is one pi-setup could have made.
    if crate::model::Name::parse(service).is_err() {
        return Vec::new();
    }
    let spec = d.containers.iter().find(|s| s.name == c.name);
    let service_dir = d.vol_root.join(service);
    c.volumes
        .iter()
        .filter_map(|v| {
            let bound = spec.and_then(|s| {
                s.binds
                    .iter()
                    .find(|b| clean_parts(&b.target) == clean_parts(&v.target))
                    .map(|b| b.host.clone())
            });
            let to = if let Some(h) = bound {
                h
            } else {
                let auto = image_volume_mounts(&[], std::slice::from_ref(&v.target));
                service_dir.join(&auto.first()?.sub)
            };
            Some((v.clone(), to))
        })
        .collect()
}

fn binds(paths: &Paths, name: &str, mounts: &[Mount]) -> Vec<Bind> {
    mounts
        .iter()
        .map(|m| Bind {
            host: if m.sub == "." {
                paths.vol(name)
            } else {
                paths.vol(name).join(&m.sub)
            },
            target: m.target.clone(),
            read_only: m.read_only,
        })
        .collect()
}

/// A host directory mounted into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bind {
    pub(crate) host: PathBuf,
    pub(crate) target: String,
    pub(crate) read_only: bool,
}

/// Docker's `host:container[:ro]` form, which is also how a bind enters the spec's hash.
impl fmt::Display for Bind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ro = if self.read_only { ":ro" } else { "" };
        write!(f, "{}:{}{ro}", self.host.display(), self.target)
    }
}

impl Serialize for Bind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The layout's directories, plus any extra sub-directory a volume names (created with the
/// root's owner and mode, and its parents too).
fn layout_dirs(layout: &Layout, paths: &Paths, name: &str, extra: &[&Mount]) -> Vec<DirSpec> {
    let base = paths.vol(name);
    let root = layout.root();
    let mut out: Vec<DirSpec> = layout
        .dirs
        .iter()
        .map(|d| DirSpec {
            path: if d.path == "." {
                base.clone()
            } else {
                base.join(&d.path)
            },
            uid: d.uid,
            gid: d.gid,
            mode: d.mode,
            // A layout's own directories stay directories; a volume naming one may be a file.
            mount_leaf: false,
            enforce: false,
        })
        .collect();
    for m in extra.iter().filter(|m| m.sub != ".") {
        let mut acc = base.clone();
        let parts: Vec<&str> = m.sub.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            acc.push(part);
            let leaf = i + 1 == parts.len();
            let (uid, gid) = match m.owner {
                Some(o) if leaf => o,
                _ => (root.uid, root.gid),
            };
            let mode = match m.mode {
                Some(md) if leaf => md,
                _ => root.mode,
            };
            let enforce = leaf && (m.owner.is_some() || m.mode.is_some());
            match out.iter_mut().find(|d| d.path == acc) {
                Some(d) => {
                    d.mount_leaf |= leaf;
                    if enforce {
                        (d.uid, d.gid, d.mode, d.enforce) = (uid, gid, mode, true);
                    }
                }
                None => out.push(DirSpec {
                    path: acc.clone(),
                    uid,
                    gid,
                    mode,
                    mount_leaf: leaf,
                    enforce,
                }),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{desired, Desired, ObjectNames};
    use crate::engine::ImageInfo;
    use crate::host::paths::Paths;
    use crate::input::source::Source;

    fn desired_of(profile: &str) -> Desired {
        let model = crate::input::load(&Source::new("p.toml", profile), &[]).unwrap();
        let images: BTreeMap<String, Option<ImageInfo>> = BTreeMap::new();
        desired(
            &model,
            &Paths::new("/r"),
            &ObjectNames {
                instance: Some("t".into()),
            },
            "x",
            false,
            &images,
        )
    }

    /// Left out, `bind` publishes on every address, IPv4 and IPv6 — IPv4 only when a service
    /// has `lan` access (over IPv6, Docker's proxy hides the client's address).
    #[test]
    fn the_gateway_publishes_on_ipv4_only_when_a_service_has_lan_access() {
        let gw = |d: &Desired| {
            d.containers
                .iter()
                .find(|c| c.service == crate::model::GATEWAY)
                .unwrap()
                .ports
                .clone()
        };
        let open = "[gateway]\nimage = \"caddy:2\"\nhttps = \"off\"\n\n[[service]]\nname = \"web\"\nimage = \"a:1\"\ndomains = [\"web.test\"]\n";
        assert_eq!(gw(&desired_of(open)), [(80, String::new(), 80)]);
        let lan = format!("{open}\n[[service]]\nname = \"nas\"\nimage = \"a:1\"\ndomains = [\"nas.lan\"]\naccess = \"lan\"\n");
        assert_eq!(gw(&desired_of(&lan)), [(80, "0.0.0.0".to_string(), 80)]);
    }

    /// The hash is a label on every running container: if it changed between versions, an
    /// upgrade would recreate every container of every appliance. The service's is the value
    /// the versions before computed for the same profile. The gateway's changed once, on
    /// purpose: it is now published on IPv6 too (no host address instead of 0.0.0.0), so an
    /// upgrade recreates the gateway alone, once.
    #[test]
    fn the_spec_hash_is_the_one_earlier_versions_computed() {
        let d = desired_of("[gateway]\nimage = \"caddy:2\"\n\n[[service]]\nname = \"web\"\nimage = \"busybox:1\"\ndomains = [\"web.test\"]\nvolumes = [\"www:/www\", \"conf:/etc/x:ro\"]\nrestart = \"always\"\nenv = { A = \"1\" }\nmemory = \"64m\"\n");
        let hashes: Vec<(String, String)> = d
            .containers
            .iter()
            .map(|c| (c.name.clone(), c.hash()))
            .collect();
        assert_eq!(
            hashes,
            [
                (
                    "t-gateway".to_string(),
                    "a1b06d730af566b7b8ee370a5763818ff65026266c39910e217fc96340b641f3".to_string()
                ),
                (
                    "t-web".to_string(),
                    "faeb38e02ec5e684a29da1d52734bddb43fa370a79acee104c0b689903c431d4".to_string()
                ),
            ]
        );
    }

    #[test]
    fn a_site_with_a_password_hash_is_private_and_the_others_are_public() {
        let hash = "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy";
        let d = desired_of(&format!("[[service]]\nname = \"open\"\nimage = \"a:1\"\ndomains = [\"open.test\"]\n\n[[service]]\nname = \"closed\"\nimage = \"a:1\"\ndomains = [\"closed.test\"]\naccess = \"auth\"\nauth_user = \"me\"\nauth_hash = \"{hash}\"\n"));
        let mode = |name: &str| {
            d.gateway_files
                .iter()
                .find(|f| f.path.ends_with(name))
                .map(|f| f.mode)
        };
        assert_eq!(mode("sites/closed.caddy"), Some(0o600));
        assert_eq!(mode("sites/open.caddy"), Some(0o644));
        assert_eq!(mode("etc/Caddyfile"), Some(0o644));
        assert!(d.units.iter().all(|u| u.mode == 0o644));
    }

    #[test]
    fn units_carry_the_command_line_and_the_schedule() {
        let model = crate::input::load(
            &Source::new("p.toml", "[backup]\nschedule = \"Sun *-*-* 02:00:00\"\n"),
            &[],
        )
        .unwrap();
        let d = desired(
            &model,
            &Paths::new("/srv/appliance"),
            &ObjectNames {
                instance: Some("lab".into()),
            },
            "/usr/local/bin/pi-setup --root /srv/appliance --instance lab",
            false,
            &BTreeMap::new(),
        );
        let units: Vec<String> = d
            .units
            .iter()
            .map(|u| {
                format!(
                    "# {}\n{}",
                    u.path.display(),
                    String::from_utf8_lossy(&u.contents)
                )
            })
            .collect();
        insta::assert_snapshot!(units.join("\n"));
    }

    #[test]
    fn exec_health_checks_users_and_dotted_env_names_reach_the_spec() {
        let d = desired_of("[[service]]\nname = \"search\"\nimage = \"es:8\"\nuser = \"1000:1000\"\nenv = { \"discovery.type\" = \"single-node\" }\nhealth_cmd = [\"curl\", \"-f\", \"http://localhost:9200\"]\nhealth_interval = \"10s\"\nhealth_timeout = \"5s\"\nhealth_retries = 5\nhealth_start_period = \"2m\"\n");
        let c = d.containers.iter().find(|c| c.service == "search").unwrap();
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
        assert_eq!(c.env, ["discovery.type=single-node"]);
        let h = c.health.as_ref().unwrap();
        assert_eq!(
            (
                h.exec.as_deref(),
                h.interval_ms,
                h.timeout_ms,
                h.retries,
                h.start_period_ms
            ),
            (
                Some(
                    &[
                        "curl".to_string(),
                        "-f".into(),
                        "http://localhost:9200".into()
                    ][..]
                ),
                10_000,
                Some(5000),
                Some(5),
                Some(120_000)
            )
        );
        // Whole seconds hash as they did when durations were whole seconds (no container
        // made then is recreated); finer ones as milliseconds.
        let json = serde_json::to_string(h).unwrap();
        assert!(
            json.contains(
                "\"interval_secs\":10,\"timeout_secs\":5,\"retries\":5,\"start_period_secs\":120"
            ),
            "{json}"
        );
        let d = desired_of("[[service]]\nname = \"s\"\nimage = \"x:1\"\nhealth_cmd = \"true\"\nhealth_interval = \"1.5s\"\nhealth_timeout = \"500ms\"\n");
        let c = d.containers.iter().find(|c| c.service == "s").unwrap();
        let h = c.health.as_ref().unwrap();
        assert_eq!((h.interval_ms, h.timeout_ms), (1500, Some(500)));
        let json = serde_json::to_string(h).unwrap();
        assert!(
            json.contains("\"interval_secs\":\"1500ms\",\"timeout_secs\":\"500ms\""),
            "{json}"
        );
    }
}
