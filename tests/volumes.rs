//! Paths an image declares as volumes (`VOLUME /data`) live under /var/vol/<name>, never in
//! Docker's anonymous volumes: that is what the nightly backup archives, and what survives a
//! recreated container. Containers from before keep their data: it is moved in first.

use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};

use crate::harness::{
    assert_nothing_changed, assert_ok, docker, inspect, stderr, stdout, Sandbox, BUSYBOX_IMAGE,
};

/// A test image declaring `VOLUME /data`, removed when dropped.
struct VolumeImage(String);

impl VolumeImage {
    fn build(sb: &Sandbox) -> VolumeImage {
        let tag = format!("pi-setup-test/with-volume:{}", sb.instance);
        let mut child = Command::new("docker")
            .args(["build", "-q", "-t", &tag, "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        write!(
            child.stdin.take().unwrap(),
            "FROM {BUSYBOX_IMAGE}\nVOLUME /data\n# httpd as PID 1 ignores SIGTERM: spare the test the 30 s stop timeout.\nSTOPSIGNAL SIGKILL\n\
             # An image of this sandbox's own: built from the same lines, two tests running at\n\
             # once would share one image ID, and `ancestor=` would find each other's containers.\n\
             LABEL pi-setup-test.instance={}\n",
            sb.instance
        )
        .unwrap();
        assert!(child.wait().unwrap().success(), "docker build {tag}");
        VolumeImage(tag)
    }
}

impl Drop for VolumeImage {
    /// Dropped before the sandbox: its containers go first, or the image would only lose its
    /// tag and stay behind, dangling, once they are gone.
    fn drop(&mut self) {
        let filter = format!("ancestor={}", self.0);
        for id in crate::harness::lines(&docker(&["ps", "-aq", "--filter", &filter])) {
            docker(&["rm", "-f", "-v", &id]);
        }
        docker(&["rmi", "-f", &self.0]);
    }
}

fn installed() -> Sandbox {
    let sb = Sandbox::new();
    sb.install(&sb.profile(""));
    sb
}

/// The kinds of mount a container has, e.g. "bind bind".
fn mount_types(container: &str) -> String {
    inspect(container, "{{range .Mounts}}{{.Type}} {{end}}")
}

fn exec(container: &str, script: &str) -> String {
    let out = docker(&["exec", container, "sh", "-c", script]);
    assert!(out.status.success(), "exec {script}: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn a_path_the_image_declares_as_a_volume_is_kept_under_var_vol_across_a_recreate() {
    let sb = installed();
    let image = VolumeImage::build(&sb);
    let out = sb.run(&["add-service", "keeper", "--image", &image.0, "--env", "A=1"]);
    assert_ok(&out);
    let host_dir = sb.path("/var/vol/keeper/image-volumes/data");
    assert!(
        stdout(&out).contains(&format!(
            "the image keeps data at /data: mounted from {}",
            host_dir.display()
        )),
        "{}",
        stdout(&out)
    );
    let c = sb.container("keeper");
    assert!(!mount_types(&c).contains("volume"), "{}", mount_types(&c));
    exec(&c, "echo precious > /data/file");
    assert_eq!(
        std::fs::read_to_string(host_dir.join("file")).unwrap(),
        "precious\n"
    );

    // A changed definition recreates the container; the data stays with the service.
    let file = sb.path("/etc/pi-setup/services/keeper.toml");
    let def = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, def.replace("A = \"1\"", "A = \"2\"")).unwrap();
    let before = sb.container_id("keeper");
    assert_ok(&sb.run(&["apply"]));
    assert_ne!(sb.container_id("keeper"), before, "recreated");
    assert_eq!(exec(&c, "cat /data/file; echo $A"), "precious\n2\n");
    let again = sb.run(&["apply"]);
    assert_nothing_changed(&again);
}

#[test]
fn a_container_from_before_has_its_volume_data_moved_under_var_vol_before_it_is_recreated() {
    let sb = installed();
    let image = VolumeImage::build(&sb);
    let c = sb.container("keeper");
    // What earlier versions made: the same labels, and Docker's anonymous volume at /data.
    let network = format!("{}-intercontainer", sb.instance);
    let out = docker(&[
        "run",
        "-d",
        "--name",
        &c,
        "--network",
        &network,
        "--label",
        "pi-setup.managed=true",
        "--label",
        &format!("pi-setup.instance={}", sb.instance),
        "--label",
        "pi-setup.service=keeper",
        "--label",
        "pi-setup.config-hash=from-an-earlier-version",
        &image.0,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    exec(
        &c,
        "mkdir -p /data/sub && echo precious > /data/sub/file && chown 123:45 /data/sub/file",
    );
    let services = sb.path("/etc/pi-setup/services");
    std::fs::create_dir_all(&services).unwrap();
    std::fs::write(
        services.join("keeper.toml"),
        format!("name = \"keeper\"\nimage = \"{}\"\n", image.0),
    )
    .unwrap();
    let dest = sb.path("/var/vol/keeper/image-volumes/data");

    let dry = sb.run(&["apply", "--dry-run"]);
    assert_ok(&dry);
    assert!(
        stdout(&dry).contains(&format!(
            "move the data container {c} keeps at /data (in a Docker volume, outside /var/vol) into {}",
            dest.display()
        )),
        "{}",
        stdout(&dry)
    );

    // Something else already in the destination: refused before anything changes.
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(dest.join("other"), "x").unwrap();
    let old_id = sb.container_id("keeper");
    let refused = sb.run(&["apply"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains(&format!("but {} is not empty", dest.display())),
        "{}",
        stderr(&refused)
    );
    assert_eq!(sb.container_id("keeper"), old_id);
    assert_eq!(inspect(&c, "{{.State.Running}}"), "true");
    std::fs::remove_file(dest.join("other")).unwrap();

    assert_ok(&sb.run(&["apply"]));
    assert_ne!(sb.container_id("keeper"), old_id);
    let moved = dest.join("sub/file");
    assert_eq!(std::fs::read_to_string(&moved).unwrap(), "precious\n");
    assert_eq!(std::fs::metadata(&moved).unwrap().uid(), 123, "owner kept");
    assert_eq!(exec(&c, "cat /data/sub/file"), "precious\n");
    assert!(!mount_types(&c).contains("volume"), "{}", mount_types(&c));
    let again = sb.run(&["apply"]);
    assert_nothing_changed(&again);
}
