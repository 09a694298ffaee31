//! Which Raspberry Pi OS release an image holds, read from its ext4 root partition with
//! ext4-view (read only: the root partition's bytes never change), and whether it carries
//! cloud-init: that decides which native first-boot files the boot partition gets.

use std::fs::File;

use crate::image::disk::{Partition, Slice};
use crate::image::firstboot::Release;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RootFacts {
    pub(crate) release: Release,
    pub(crate) cloud_init: bool,
}

/// `VERSION_CODENAME` from an os-release file.
pub(crate) fn codename(os_release: &str) -> Option<&str> {
    os_release.lines().find_map(|l| {
        l.strip_prefix("VERSION_CODENAME=")
            .map(|v| v.trim().trim_matches('"').trim_matches('\''))
    })
}

pub(crate) fn read(file: File, root: Partition) -> Result<RootFacts, String> {
    let fs = ext4_view::Ext4::load(Box::new(Slice::new(file, root))).map_err(|e| {
        format!("the root partition is not an ext4 file system ext4-view can read: {e}")
    })?;
    let text = ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|p| fs.read_to_string(*p).ok())
        .ok_or("the root partition has no /etc/os-release: not a Raspberry Pi OS image?")?;
    let release = match codename(&text) {
        Some("bookworm") => Release::Bookworm,
        Some("trixie") => Release::Trixie,
        Some(other) => {
            return Err(format!(
                "the image is Debian {other}; pi-setup image knows Raspberry Pi OS bookworm and trixie (boot partition at /boot/firmware)"
            ))
        }
        None => return Err("/etc/os-release has no VERSION_CODENAME".into()),
    };
    let cloud_init = ["/usr/bin/cloud-init", "/etc/cloud/cloud.cfg"]
        .iter()
        .any(|p| fs.exists(*p).unwrap_or(false));
    Ok(RootFacts {
        release,
        cloud_init,
    })
}

#[cfg(test)]
mod tests {
    use super::codename;

    #[test]
    fn the_codename_comes_from_os_release() {
        let bookworm = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n";
        assert_eq!(codename(bookworm), Some("bookworm"));
        assert_eq!(codename("VERSION_CODENAME=\"trixie\"\n"), Some("trixie"));
        assert_eq!(codename("ID=debian\n"), None);
    }
}
