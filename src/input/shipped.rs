//! Data files embedded in the binary: profiles, volume layouts and systemd units, by name. A
//! test checks that every file in `profiles/`, `vol-layout/` and `systemd/` is listed here.

pub(crate) const PROFILES: &[(&str, &str)] = &[
    (
        "api-graphql",
        include_str!("../../profiles/api-graphql.toml"),
    ),
    ("default", include_str!("../../profiles/default.toml")),
    ("homelab", include_str!("../../profiles/homelab.toml")),
    (
        "search-stack",
        include_str!("../../profiles/search-stack.toml"),
    ),
    (
        "web-finance",
        include_str!("../../profiles/web-finance.toml"),
    ),
    ("web-worker", include_str!("../../profiles/web-worker.toml")),
];

pub(crate) const LAYOUTS: &[(&str, &str)] = &[
    ("default", include_str!("../../vol-layout/default.toml")),
    ("gateway", include_str!("../../vol-layout/gateway.toml")),
    ("postgres", include_str!("../../vol-layout/postgres.toml")),
    ("www", include_str!("../../vol-layout/www.toml")),
];

/// Unit templates shipped in the binary; `@EXEC@` becomes the pi-setup command line and
/// `@SCHEDULE@` the profile's `backup.schedule`.
pub(crate) const UNITS: &[(&str, &str)] = &[
    (
        "pi-setup-backup.service",
        include_str!("../../systemd/pi-setup-backup.service"),
    ),
    (
        "pi-setup-backup.timer",
        include_str!("../../systemd/pi-setup-backup.timer"),
    ),
    (
        "pi-setup-heal.service",
        include_str!("../../systemd/pi-setup-heal.service"),
    ),
    (
        "pi-setup-heal.timer",
        include_str!("../../systemd/pi-setup-heal.timer"),
    ),
    (
        "pi-setup-job@.service",
        include_str!("../../systemd/pi-setup-job@.service"),
    ),
];

/// The timer of a job with a `schedule`, written once per such job as
/// `pi-setup-job-<name>.timer` (`@JOB@` the job's name, `@SCHEDULE@` its calendar).
pub(crate) const JOB_TIMER: (&str, &str) = (
    "pi-setup-job.timer.in",
    include_str!("../../systemd/pi-setup-job.timer.in"),
);

/// The unit a baked image's bootstrap installs (`pi-setup image`): not written by `install`.
pub(crate) const FIRSTBOOT_UNIT: (&str, &str) = (
    "pi-setup-firstboot.service",
    include_str!("../../systemd/pi-setup-firstboot.service"),
);
/// Overlays (`overlays/<name>/`): each file by its path inside the overlay, the manifest
/// (`manifest.toml`, modes and owners) among them.
pub(crate) const OVERLAYS: &[(&str, &[(&str, &str)])] = &[(
    "base",
    &[
        (
            "manifest.toml",
            include_str!("../../overlays/base/manifest.toml"),
        ),
        (
            "etc/NetworkManager/conf.d/pi-setup-veth.conf",
            include_str!("../../overlays/base/etc/NetworkManager/conf.d/pi-setup-veth.conf"),
        ),
        (
            "etc/dhcpcd.conf",
            include_str!("../../overlays/base/etc/dhcpcd.conf"),
        ),
        (
            "etc/docker/daemon.json",
            include_str!("../../overlays/base/etc/docker/daemon.json"),
        ),
        (
            "etc/sysctl.d/60-pi-setup.conf",
            include_str!("../../overlays/base/etc/sysctl.d/60-pi-setup.conf"),
        ),
        (
            "etc/systemd/journald.conf.d/pi-setup.conf",
            include_str!("../../overlays/base/etc/systemd/journald.conf.d/pi-setup.conf"),
        ),
    ],
)];

pub(crate) fn profile(name: &str) -> Option<&'static str> {
    PROFILES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

#[cfg(test)]
mod tests {
    //! The data we ship: every file in profiles/, vol-layout/ and systemd/ is embedded and
    //! valid.

    use std::path::Path;

    use super::{profile, FIRSTBOOT_UNIT, JOB_TIMER, LAYOUTS, PROFILES, UNITS};
    use crate::input::source::Source;

    fn files(dir: &str) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> =
            std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
                .unwrap()
                .map(|e| {
                    let p = e.unwrap().path();
                    let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
                    assert_eq!(
                        p.extension().and_then(|x| x.to_str()),
                        Some("toml"),
                        "{}: only .toml files belong here",
                        p.display()
                    );
                    (stem, std::fs::read_to_string(&p).unwrap())
                })
                .collect();
        out.sort();
        out
    }

    #[test]
    fn every_profile_is_embedded_and_valid() {
        let on_disk = files("profiles");
        let embedded: Vec<(String, String)> = PROFILES
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        assert_eq!(on_disk, embedded, "profiles/ and PROFILES differ");
        for (name, text) in on_disk {
            let model =
                crate::input::load(&Source::new(format!("profiles/{name}.toml"), text), &[])
                    .unwrap_or_else(|e| panic!("profiles/{name}.toml: {e}"));
            assert!(
                model.description.is_some(),
                "profiles/{name}.toml needs a description"
            );
        }
        let default =
            crate::input::load(&Source::new("default", profile("default").unwrap()), &[]).unwrap();
        assert!(
            default.services.is_empty(),
            "the default profile is the gateway only"
        );
    }

    #[test]
    fn every_layout_is_embedded_and_valid() {
        let on_disk = files("vol-layout");
        let embedded: Vec<(String, String)> = LAYOUTS
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        assert_eq!(on_disk, embedded, "vol-layout/ and LAYOUTS differ");
        for (name, text) in on_disk {
            let l = crate::input::layout::parse(
                &name,
                &Source::new(format!("vol-layout/{name}.toml"), text),
            )
            .unwrap();
            assert_eq!(l.dirs[0].path, ".");
            assert!(
                l.description.is_some(),
                "vol-layout/{name}.toml needs a description"
            );
        }
    }

    #[test]
    fn every_overlay_file_is_embedded_and_its_manifest_valid() {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("overlays");
        let mut names: Vec<String> = std::fs::read_dir(&base)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let shipped: Vec<String> = super::OVERLAYS
            .iter()
            .map(|(n, _)| (*n).to_string())
            .collect();
        assert_eq!(names, shipped, "overlays/ and shipped::OVERLAYS differ");
        for (name, entries) in super::OVERLAYS {
            let dir = base.join(name);
            let mut on_disk = Vec::new();
            let mut stack = vec![dir.clone()];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).unwrap() {
                    let p = e.unwrap().path();
                    if p.is_dir() {
                        stack.push(p);
                    } else {
                        let rel = p.strip_prefix(&dir).unwrap().to_string_lossy().into_owned();
                        on_disk.push((rel, std::fs::read_to_string(&p).unwrap()));
                    }
                }
            }
            on_disk.sort();
            let mut embedded: Vec<(String, String)> = entries
                .iter()
                .map(|(p, t)| ((*p).to_string(), (*t).to_string()))
                .collect();
            embedded.sort();
            assert_eq!(
                on_disk, embedded,
                "overlays/{name} and shipped::OVERLAYS differ"
            );
            let (manifest, files) = crate::overlay::shipped_overlay(entries);
            let o = crate::overlay::parse(name, &manifest, &files)
                .unwrap_or_else(|e| panic!("overlays/{name}: {e}"));
            assert!(
                o.description.is_some(),
                "overlays/{name} needs a description"
            );
        }
    }

    #[test]
    fn every_systemd_unit_is_embedded() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
        let mut on_disk: Vec<(String, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read_to_string(&p).unwrap(),
                )
            })
            .collect();
        on_disk.sort();
        let mut embedded: Vec<(String, String)> = UNITS
            .iter()
            .chain([&JOB_TIMER, &FIRSTBOOT_UNIT])
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        embedded.sort();
        assert_eq!(
            on_disk, embedded,
            "systemd/ and shipped::UNITS + JOB_TIMER + FIRSTBOOT_UNIT differ"
        );
    }
}
