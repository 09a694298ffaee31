//! Where things live on the host. `--root DIR` moves every host path under DIR.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Paths {
    pub(crate) root: PathBuf,
}

impl Paths {
    pub(crate) fn new(root: impl Into<PathBuf>) -> Self {
        Paths { root: root.into() }
    }

    /// True when host paths are the real ones (no `--root`).
    pub(crate) fn is_system(&self) -> bool {
        self.root == Path::new("/")
    }

    /// An absolute host path, moved under the root.
    pub(crate) fn host(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    pub(crate) fn etc(&self) -> PathBuf {
        self.host("/etc/pi-setup")
    }

    pub(crate) fn profile_file(&self) -> PathBuf {
        self.etc().join("pi-setup.toml")
    }

    pub(crate) fn services_dir(&self) -> PathBuf {
        self.etc().join("services")
    }

    pub(crate) fn secrets_dir(&self) -> PathBuf {
        self.etc().join("secrets")
    }

    pub(crate) fn service_file(&self, name: &str) -> PathBuf {
        self.services_dir().join(format!("{name}.toml"))
    }

    pub(crate) fn secrets_file(&self, name: &str) -> PathBuf {
        self.secrets_dir().join(format!("{name}.env"))
    }

    pub(crate) fn vol_root(&self) -> PathBuf {
        self.host("/var/vol")
    }

    pub(crate) fn vol(&self, name: &str) -> PathBuf {
        self.vol_root().join(name)
    }

    pub(crate) fn systemd_dir(&self) -> PathBuf {
        self.host("/etc/systemd/system")
    }

    /// A file per container that a backup stopped and has not started again yet.
    pub(crate) fn stopped_for_backup(&self, container: &str) -> PathBuf {
        self.host("/var/lib/pi-setup/stopped-for-backup")
            .join(container)
    }

    /// What an `update` in progress has moved, for the recovery of a killed one
    /// (`crate::update::Moving`).
    pub(crate) fn update_journal(&self) -> PathBuf {
        self.host("/var/lib/pi-setup/update-journal.json")
    }

    /// Why the last backup could not copy to this `[[backup.copy]]` target (gone once it could).
    pub(crate) fn copy_failed(&self, target: &str) -> PathBuf {
        self.host("/var/lib/pi-setup/copy-failed").join(target)
    }

    /// Held by every command that changes state.
    pub(crate) fn lock_file(&self) -> PathBuf {
        self.host("/run/pi-setup.lock")
    }

    /// Which files overlays wrote, and whether pi-setup created them (for `uninstall`).
    pub(crate) fn overlay_record(&self) -> PathBuf {
        self.host("/var/lib/pi-setup/overlay-files.json")
    }
}
