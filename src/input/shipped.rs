//! Data files embedded in the binary: profiles and volume layouts, by name. A test checks that
//! every file in `profiles/` and `vol-layout/` is listed here.

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

pub fn profile(name: &str) -> Option<&'static str> {
    PROFILES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}
