//! Backups of `/var/vol/<name>` directories: archive, verify, retention, restore.
