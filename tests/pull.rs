//! Pulling images from a real registry: the local one `ci/test-registry` runs on
//! `$PI_SETUP_TEST_REGISTRY` (default 127.0.0.1:5000).

use crate::harness::{
    assert_nothing_changed, docker, inspect, stderr, stdout, tree, Sandbox, BUSYBOX_IMAGE,
};

/// Where `ci/test-registry` serves; asserts that it answers.
fn registry() -> String {
    let addr =
        std::env::var("PI_SETUP_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".to_string());
    let up = std::process::Command::new("curl")
        .args(["-fsS", &format!("http://{addr}/v2/")])
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "no registry on {addr}: run `bash ci/test-registry` (ci/test does)"
    );
    addr
}

/// An image only the registry has: a tag of its own, pushed, then removed locally.
struct RegistryImage(String);

impl RegistryImage {
    fn push(registry: &str, tag: &str) -> RegistryImage {
        let reference = format!("{registry}/pi-setup-test/busybox:{tag}");
        assert!(docker(&["tag", BUSYBOX_IMAGE, &reference]).status.success());
        let push = docker(&["push", "-q", &reference]);
        assert!(push.status.success(), "{}", stderr(&push));
        assert!(docker(&["rmi", &reference]).status.success());
        RegistryImage(reference)
    }
}

impl Drop for RegistryImage {
    fn drop(&mut self) {
        docker(&["rmi", "-f", &self.0]);
    }
}

#[test]
fn a_missing_image_is_pulled_from_a_reachable_registry_with_progress() {
    let registry = registry();
    let sb = Sandbox::new();
    let image = RegistryImage::push(&registry, &sb.instance);
    let profile = sb.profile(&format!(
        "[[service]]\nname = \"pulled\"\nimage = \"{}\"\ncommand = [\"sleep\", \"600\"]\n",
        image.0
    ));
    let out = sb.install(&profile);
    let (out_text, err_text) = (stdout(&out), stderr(&out));
    assert!(
        out_text.contains(&format!("pull image {}", image.0)),
        "{out_text}"
    );
    // Not a terminal: plain lines instead of a bar.
    assert!(
        err_text.contains(&format!("pulling {} ...", image.0)),
        "{err_text}"
    );
    assert!(
        err_text.contains(&format!("pulled {} (", image.0)),
        "{err_text}"
    );
    assert_eq!(
        inspect(&sb.container("pulled"), "{{.Config.Image}}"),
        image.0
    );
    assert_eq!(
        inspect(&sb.container("pulled"), "{{.State.Running}}"),
        "true"
    );
    // Present now: the next run pulls nothing.
    let again = sb.install(&profile);
    assert_nothing_changed(&again);
}

#[test]
fn a_tag_the_registry_does_not_have_is_a_clear_error_that_changes_nothing() {
    let registry = registry();
    let sb = Sandbox::new();
    for (image, says) in [
        (
            format!("{registry}/pi-setup-test/busybox:no-such-tag"),
            "manifest unknown",
        ),
        (
            "127.0.0.1:5999/pi-setup-test/busybox:1".to_string(),
            "connection refused",
        ),
    ] {
        let profile = sb.profile(&format!("[[service]]\nname = \"x\"\nimage = \"{image}\"\n"));
        let out = sb.run(&["install", "--profile", profile.to_str().unwrap()]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!(
                "image {image} is not on this machine and could not be pulled"
            )),
            "{err}"
        );
        assert!(
            err.to_lowercase().contains(says),
            "expected {says:?} in {err}"
        );
        assert_eq!(tree(sb.root()), Vec::<String>::new());
        assert_eq!(sb.docker_objects(), Vec::<String>::new());
    }
}
