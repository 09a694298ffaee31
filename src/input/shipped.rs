//! Data files embedded in the binary: profiles, volume layouts and systemd units, by name. A
//! test checks that every file in `profiles/`, `vol-layout/` and `systemd/` is listed here.

pub const PROFILES: &[(&str, &str)] = &[
    ("default", include_str!("../../profiles/default.toml")),
    ("homelab", include_str!("../../profiles/homelab.toml")),
];

pub const LAYOUTS: &[(&str, &str)] = &[
    ("default", include_str!("../../vol-layout/default.toml")),
    ("gateway", include_str!("../../vol-layout/gateway.toml")),
    ("postgres", include_str!("../../vol-layout/postgres.toml")),
    ("www", include_str!("../../vol-layout/www.toml")),
];

/// Unit templates shipped in the binary; `@EXEC@` becomes the pi-setup command line and
/// `@SCHEDULE@` the profile's `backup.schedule`.
pub const UNITS: &[(&str, &str)] = &[
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
];

pub fn profile(name: &str) -> Option<&'static str> {
    PROFILES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}
