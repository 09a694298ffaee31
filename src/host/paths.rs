//! Where things live on the host. `--root DIR` moves every host path under DIR.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub root: PathBuf,
}

impl Paths {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Paths { root: root.into() }
    }

    /// True when host paths are the real ones (no `--root`).
    pub fn is_system(&self) -> bool {
        self.root == Path::new("/")
    }

    /// An absolute host path, moved under the root.
    pub fn host(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    pub fn etc(&self) -> PathBuf {
        self.host("/etc/pi-setup")
    }

    pub fn profile_file(&self) -> PathBuf {
        self.etc().join("pi-setup.toml")
    }

    pub fn services_dir(&self) -> PathBuf {
        self.etc().join("services")
    }

    pub fn secrets_dir(&self) -> PathBuf {
        self.etc().join("secrets")
    }

    pub fn service_file(&self, name: &str) -> PathBuf {
        self.services_dir().join(format!("{name}.toml"))
    }

    pub fn secrets_file(&self, name: &str) -> PathBuf {
        self.secrets_dir().join(format!("{name}.env"))
    }

    pub fn vol_root(&self) -> PathBuf {
        self.host("/var/vol")
    }

    pub fn vol(&self, name: &str) -> PathBuf {
        self.vol_root().join(name)
    }

    pub fn systemd_dir(&self) -> PathBuf {
        self.host("/etc/systemd/system")
    }

    /// A file per container that a backup stopped and has not started again yet.
    pub fn stopped_for_backup(&self, container: &str) -> PathBuf {
        self.host("/var/lib/pi-setup/stopped-for-backup")
            .join(container)
    }

    /// Held by every command that changes state.
    pub fn lock_file(&self) -> PathBuf {
        self.host("/run/pi-setup.lock")
    }
}
