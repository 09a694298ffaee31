//! The data we ship: every file in profiles/ and vol-layout/ is embedded and valid.

use std::path::Path;

use pi_setup::input;
use pi_setup::input::layout;
use pi_setup::input::shipped;
use pi_setup::input::source::Source;

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
    let embedded: Vec<(String, String)> = shipped::PROFILES
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    assert_eq!(on_disk, embedded, "profiles/ and shipped::PROFILES differ");
    for (name, text) in on_disk {
        let model = input::load(&Source::new(format!("profiles/{name}.toml"), text), &[])
            .unwrap_or_else(|e| panic!("profiles/{name}.toml: {e}"));
        assert!(
            model.description.is_some(),
            "profiles/{name}.toml needs a description"
        );
    }
    let default = input::load(
        &Source::new("default", shipped::profile("default").unwrap()),
        &[],
    )
    .unwrap();
    assert!(
        default.services.is_empty(),
        "the default profile is the gateway only"
    );
}

#[test]
fn every_layout_is_embedded_and_valid() {
    let on_disk = files("vol-layout");
    let embedded: Vec<(String, String)> = shipped::LAYOUTS
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    assert_eq!(on_disk, embedded, "vol-layout/ and shipped::LAYOUTS differ");
    for (name, text) in on_disk {
        let l =
            layout::parse(&name, &Source::new(format!("vol-layout/{name}.toml"), text)).unwrap();
        assert_eq!(l.dirs[0].path, ".");
        assert!(
            l.description.is_some(),
            "vol-layout/{name}.toml needs a description"
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
    let embedded: Vec<(String, String)> = pi_setup::input::shipped::UNITS
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    assert_eq!(on_disk, embedded, "systemd/ and shipped::UNITS differ");
}
