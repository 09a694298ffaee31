//! `pi-setup image`: bakes the appliance into a Raspberry Pi OS image that provisions itself on
//! first boot, and reads back what a baked image holds (`--inspect`). Pure Rust, no root, no
//! loop devices: the partition table is read (`disk`), the FAT boot partition written in place
//! (`fat`), the ext4 root only read (`release`), and the first-boot files rendered by
//! `firstboot`. `--base` is only ever opened for reading; `--out` appears under its final
//! name only when it is complete (written as a hidden `.partial` file beside it, then renamed).

pub(crate) mod disk;
mod fat;
pub(crate) mod firstboot;
mod release;
mod stream;

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::error::BadInput;
use crate::image::disk::Layout;
use crate::image::firstboot::{Release, Settings, DIR};
use crate::image::release::RootFacts;
use crate::progress::Progress;

/// The version marker `pi-setup image` looks for in a binary it cannot run (an aarch64 one on
/// an x86 laptop): the version it reports, and the proof that the file is a pi-setup.
static VERSION_MARKER: &[u8] =
    concat!("PI_SETUP_VERSION=", env!("CARGO_PKG_VERSION"), "\0").as_bytes();
const MARKER_PREFIX: &[u8] = b"PI_SETUP_VERSION=";

/// This binary's version, read from its marker (so the marker is kept in every build).
pub(crate) fn own_version() -> String {
    marker_version(std::hint::black_box(VERSION_MARKER)).unwrap_or_default()
}

fn marker_version(bytes: &[u8]) -> Option<String> {
    let at = bytes
        .windows(MARKER_PREFIX.len())
        .position(|w| w == MARKER_PREFIX)?;
    let rest = &bytes[at + MARKER_PREFIX.len()..];
    let end = rest.iter().take(32).position(|b| *b == 0)?;
    let v = std::str::from_utf8(&rest[..end]).ok()?;
    v.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
        .then(|| v.to_string())
}

/// The pi-setup binary that goes into the image.
#[derive(Debug, Clone)]
pub(crate) struct Binary {
    pub(crate) path: PathBuf,
    pub(crate) version: String,
    pub(crate) sha256: String,
    pub(crate) len: u64,
}

/// Checks that `path` is a static aarch64 Linux pi-setup: ELF64, little endian, machine
/// AArch64, no program interpreter (a dynamically linked one would not start on the Pi).
pub(crate) fn check_binary(path: &Path) -> Result<Binary, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let name = path.display();
    let u16_at = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u64_at = |at: usize| {
        bytes
            .get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    if bytes.get(..4) != Some(b"\x7fELF") || bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        return Err(format!(
            "{name} is not a 64-bit little-endian ELF executable"
        ));
    }
    if u16_at(18) != Some(183) {
        return Err(format!(
            "{name} is not an aarch64 binary (a Raspberry Pi runs aarch64): build one with `bash ci/cross-build`"
        ));
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(32), u16_at(54), u16_at(56)) else {
        return Err(format!("{name}: truncated ELF header"));
    };
    for i in 0..u64::from(phnum) {
        let at = (phoff + i * u64::from(phentsize)) as usize;
        let ty = bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")));
        if ty == Some(3) {
            return Err(format!(
                "{name} is dynamically linked: the Pi needs the static musl build (`bash ci/cross-build`)"
            ));
        }
    }
    let version = marker_version(&bytes).ok_or_else(|| {
        format!("{name} is an aarch64 program but not pi-setup (no version marker)")
    })?;
    Ok(Binary {
        path: path.to_path_buf(),
        version,
        sha256: hex::encode(sha2::Sha256::digest(&bytes)),
        len: bytes.len() as u64,
    })
}

/// An image bundle (`docker save` archive) and the image names in it.
#[derive(Debug, Clone)]
pub(crate) struct Bundle {
    pub(crate) path: PathBuf,
    pub(crate) len: u64,
    pub(crate) images: Vec<String>,
}

pub(crate) fn check_bundle(path: &Path) -> Result<Bundle, String> {
    #[derive(Deserialize)]
    struct Entry {
        #[serde(rename = "RepoTags", default)]
        repo_tags: Option<Vec<String>>,
    }
    let name = path.display();
    let file = File::open(path).map_err(|e| format!("cannot read --images {name}: {e}"))?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut archive = tar::Archive::new(file);
    let entries = archive
        .entries_with_seek()
        .map_err(|e| format!("--images {name}: not a tar archive: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("--images {name}: not a tar archive: {e}"))?;
        let is_manifest = entry.path().is_ok_and(|p| p == Path::new("manifest.json"));
        if is_manifest {
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(|e| format!("--images {name}: reading manifest.json: {e}"))?;
            let list: Vec<Entry> = serde_json::from_str(&text)
                .map_err(|e| format!("--images {name}: manifest.json: {e}"))?;
            let images = list
                .into_iter()
                .flat_map(|e| e.repo_tags.unwrap_or_default())
                .collect();
            return Ok(Bundle {
                path: path.to_path_buf(),
                len,
                images,
            });
        }
    }
    Err(format!(
        "--images {name}: no manifest.json in it; make the bundle with `docker save IMAGE... -o {name}`"
    ))
}

/// What `--inspect` reads back: written to `pi-setup/image.toml` at bake time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    /// The version of the pi-setup binary in the image.
    pub(crate) version: String,
    pub(crate) binary_sha256: String,
    /// Where the profile came from (a shipped name or the file given).
    pub(crate) profile: String,
    pub(crate) services: Vec<String>,
    pub(crate) images: Vec<String>,
    pub(crate) release: Release,
    pub(crate) cloud_init: bool,
    /// First-boot settings in words (never a secret).
    pub(crate) settings: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) restore_from: Option<String>,
    /// The pi-setup that baked it.
    pub(crate) baked_by: String,
}

/// Everything a bake writes, checked before the image is touched.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) base: PathBuf,
    pub(crate) out: PathBuf,
    pub(crate) force: bool,
    pub(crate) binary: Binary,
    /// Where the profile came from, and its text.
    pub(crate) profile: (String, String),
    /// Service file names (`NAME.toml`) and their text.
    pub(crate) services: Vec<(String, String)>,
    /// Service names in the profile and the service files (for the manifest).
    pub(crate) service_names: Vec<String>,
    pub(crate) bundle: Option<Bundle>,
    pub(crate) settings: Settings,
    /// `--restore-from`: the copy target, its timestamp, and the files it needs on the Pi.
    pub(crate) restore: Option<Restore>,
}

#[derive(Debug, Clone)]
pub(crate) struct Restore {
    /// `NAME` or `NAME@TIMESTAMP`, as given.
    pub(crate) from: String,
    /// The shell step for install.sh.
    pub(crate) step: String,
    /// Files to put in `pi-setup/restore/` (credentials, identity): name and bytes.
    pub(crate) files: Vec<(String, Vec<u8>)>,
}

/// What one bake did, for the report.
#[derive(Debug)]
pub(crate) struct Baked {
    pub(crate) facts: RootFacts,
    pub(crate) written: Vec<String>,
    pub(crate) free_after: u64,
    pub(crate) cmdline_changed: bool,
}

/// A file a bake writes on the boot partition.
enum Content {
    Bytes(Vec<u8>),
    File(PathBuf, u64),
}

impl Content {
    fn len(&self) -> u64 {
        match self {
            Content::Bytes(b) => b.len() as u64,
            Content::File(_, n) => *n,
        }
    }
}

/// A path removed on drop unless `keep` was called: no half-written `--out` stays behind.
struct Partial(Option<PathBuf>);

impl Partial {
    fn keep(mut self) -> PathBuf {
        self.0.take().expect("kept once")
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn partial_path(out: &Path, what: &str) -> PathBuf {
    let name = out
        .file_name()
        .map_or_else(|| "image".into(), |n| n.to_string_lossy().into_owned());
    out.with_file_name(format!(".{name}.{what}-{}", std::process::id()))
}

fn is_xz_name(p: &Path) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case("xz"))
}

fn layout_of(file: &File) -> Result<Layout, String> {
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    disk::layout(len, |at, buf| file.read_exact_at(buf, at))
}

fn root_facts(file: &File, layout: &Layout) -> Result<RootFacts, String> {
    let root = layout
        .root
        .ok_or("the image has no Linux root partition: not a Raspberry Pi OS image?")?;
    release::read(file.try_clone().map_err(|e| e.to_string())?, root)
}

/// The files of a bake: `pi-setup/...` and those in the partition's root.
struct Files {
    tree: Vec<(String, Content)>,
    root: Vec<(String, Vec<u8>)>,
}

fn files(spec: &Spec, facts: RootFacts, cmdline: &str) -> Result<Files, BadInput> {
    let s = &spec.settings;
    let cloud_init = facts.release == Release::Trixie && facts.cloud_init;
    let mut tree = vec![
        (
            "pi-setup".to_string(),
            Content::File(spec.binary.path.clone(), spec.binary.len),
        ),
        (
            "bootstrap.sh".to_string(),
            Content::Bytes(firstboot::bootstrap(s, cloud_init).into_bytes()),
        ),
        (
            "install.sh".to_string(),
            Content::Bytes(
                firstboot::install_script(spec.restore.as_ref().map(|r| r.step.as_str()))
                    .into_bytes(),
            ),
        ),
        (
            crate::input::shipped::FIRSTBOOT_UNIT.0.to_string(),
            Content::Bytes(crate::input::shipped::FIRSTBOOT_UNIT.1.as_bytes().to_vec()),
        ),
        (
            "pi-setup.toml".to_string(),
            Content::Bytes(spec.profile.1.clone().into_bytes()),
        ),
    ];
    for (name, text) in &spec.services {
        tree.push((
            format!("services/{name}"),
            Content::Bytes(text.clone().into_bytes()),
        ));
    }
    if let Some(b) = &spec.bundle {
        tree.push(("images.tar".into(), Content::File(b.path.clone(), b.len)));
    }
    if let Some(r) = &spec.restore {
        for (name, bytes) in &r.files {
            tree.push((format!("restore/{name}"), Content::Bytes(bytes.clone())));
        }
    }
    let mut root = vec![(
        "cmdline.txt".to_string(),
        // Raspberry Pi OS boots with the memory cgroup off, and install's preflight refuses a
        // host without it: turned on here, so the first boot already has it (the bootstrap
        // removes only its own tokens).
        firstboot::add_hook(
            &crate::preflight::fix_cmdline(cmdline).unwrap_or_else(|| cmdline.to_string()),
        )
        .map_err(|e| BadInput(format!("{}: {e}", spec.base.display())))?
        .into_bytes(),
    )];
    let mut words = Vec::new();
    if let Some(h) = &s.hostname {
        words.push(format!("host name {h}"));
    }
    if let Some(u) = &s.user {
        let how = match (u.hash != "*", u.keys.len()) {
            (true, 0) => "password".to_string(),
            (true, n) => format!("password, {n} SSH key(s)"),
            (false, n) => format!("{n} SSH key(s), no password"),
        };
        words.push(format!("user {} ({how}), SSH on", u.name));
    }
    if let Some(w) = &s.wifi {
        words.push(format!("Wi-Fi {:?} ({})", w.ssid, w.country));
    }
    if let Some(tz) = &s.timezone {
        words.push(format!("time zone {tz}"));
    }
    if cloud_init {
        if s != &Settings::default() {
            root.push(("user-data".into(), firstboot::user_data(s).into_bytes()));
            let mut h = sha2::Sha256::new();
            h.update(firstboot::user_data(s));
            if let Some(w) = &s.wifi {
                h.update(firstboot::network_config(w));
            }
            let id = format!("pi-setup-{}", &hex::encode(h.finalize())[..16]);
            root.push(("meta-data".into(), firstboot::meta_data(&id).into_bytes()));
        }
        if let Some(w) = &s.wifi {
            root.push((
                "network-config".into(),
                firstboot::network_config(w).into_bytes(),
            ));
        }
    } else if let Some(u) = &s.user {
        root.push(("userconf.txt".into(), firstboot::userconf(u).into_bytes()));
        root.push(("ssh".into(), Vec::new()));
    }
    let manifest = Manifest {
        version: spec.binary.version.clone(),
        binary_sha256: spec.binary.sha256.clone(),
        profile: spec.profile.0.clone(),
        services: spec.service_names.clone(),
        images: spec
            .bundle
            .as_ref()
            .map_or_else(Vec::new, |b| b.images.clone()),
        release: facts.release,
        cloud_init: facts.cloud_init,
        settings: words,
        restore_from: spec.restore.as_ref().map(|r| r.from.clone()),
        baked_by: own_version(),
    };
    let text = toml::to_string(&manifest).expect("the manifest serializes");
    tree.push((
        "image.toml".into(),
        Content::Bytes(
            format!("# Written by `pi-setup image`; `pi-setup image --inspect` reads it.\n{text}")
                .into_bytes(),
        ),
    ));
    Ok(Files { tree, root })
}

fn mib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / 1_048_576.0)
}

/// Reads the image (the base, or the working copy), plans the files and checks they fit:
/// everything that can refuse the bake, before anything is written.
fn survey(spec: &Spec, file: &File) -> anyhow::Result<(Layout, RootFacts, Files)> {
    let bad = |e: String| BadInput(format!("{}: {e}", spec.base.display()));
    let layout = layout_of(file).map_err(bad)?;
    let facts = root_facts(file, &layout).map_err(bad)?;
    let fs = fat::open(file.try_clone()?, layout.boot).map_err(bad)?;
    let cmdline = fat::read(&fs, "cmdline.txt")
        .map_err(bad)?
        .ok_or_else(|| bad("the boot partition has no cmdline.txt".into()))?;
    let cmdline = String::from_utf8(cmdline).map_err(|_| bad("cmdline.txt is not UTF-8".into()))?;
    let files = files(spec, facts, &cmdline)?;
    let (cluster, free) = fat::space(&fs).map_err(bad)?;
    let round = |n: u64| n.div_ceil(cluster) * cluster;
    // The previous bake's pi-setup/ is replaced, so its space counts as free.
    let reclaimed = fat::used_by_tree(&fs, cluster, DIR);
    let dirs = 1
        + u64::from(files.tree.iter().any(|(p, _)| p.starts_with("services/")))
        + u64::from(files.tree.iter().any(|(p, _)| p.starts_with("restore/")));
    // One more cluster: the root directory may grow for the new files' entries.
    let mut need = (dirs + 1) * cluster;
    let mut big = Vec::new();
    for (path, c) in &files.tree {
        need += round(c.len());
        if c.len() > 1 << 20 {
            big.push(format!("{path} {}", mib(c.len())));
        }
    }
    for (name, bytes) in &files.root {
        need += round(bytes.len() as u64).saturating_sub(fat::used_by_file(&fs, cluster, "", name));
    }
    let available = free + reclaimed;
    if need > available {
        return Err(BadInput(format!(
            "{}: the boot partition is too small: the baked files need {need} bytes ({}: {}) but it has {available} bytes free ({}); nothing was written. Use a smaller --images bundle or a base image with a larger boot partition",
            spec.base.display(),
            mib(need),
            big.join(", "),
            mib(available)
        ))
        .into());
    }
    Ok((layout, facts, files))
}

/// Bakes `spec.base` into `spec.out`.
pub(crate) fn bake(spec: &Spec, progress: &Progress) -> anyhow::Result<Baked> {
    use anyhow::Context as _;
    if spec.out.exists() && !spec.force {
        return Err(BadInput(format!(
            "{} exists: give --force to replace it",
            spec.out.display()
        ))
        .into());
    }
    let base_meta = std::fs::metadata(&spec.base)
        .map_err(|e| BadInput(format!("--base {}: {e}", spec.base.display())))?;
    if let Ok(out_meta) = std::fs::metadata(&spec.out) {
        use std::os::unix::fs::MetadataExt;
        if out_meta.dev() == base_meta.dev() && out_meta.ino() == base_meta.ino() {
            return Err(BadInput(
                "--out is --base: the base image is never modified; give another --out".into(),
            )
            .into());
        }
    }
    let base_xz = stream::is_xz(&spec.base).context("reading --base")?;
    if !base_xz {
        // A raw base can be checked where it is, so a bake that cannot fit writes nothing.
        survey(spec, &File::open(&spec.base)?)?;
    }
    let work = Partial(Some(partial_path(&spec.out, "partial")));
    let work_path = work.0.clone().expect("set");
    stream::unpack(&spec.base, &work_path, progress)
        .with_context(|| format!("copying {} to {}", spec.base.display(), work_path.display()))?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&work_path)?;
    let (layout, facts, files) = survey(spec, &file)?;
    let fs = fat::open(file.try_clone()?, layout.boot).map_err(anyhow::Error::msg)?;
    fat::remove_tree(&fs, DIR).map_err(anyhow::Error::msg)?;
    fat::create_dir(&fs, DIR).map_err(anyhow::Error::msg)?;
    let mut made = std::collections::BTreeSet::new();
    let mut written = Vec::new();
    for (path, content) in &files.tree {
        if let Some((sub, _)) = path.rsplit_once('/') {
            if made.insert(sub.to_string()) {
                fat::create_dir(&fs, &format!("{DIR}/{sub}")).map_err(anyhow::Error::msg)?;
            }
        }
        let full = format!("{DIR}/{path}");
        match content {
            Content::Bytes(b) => fat::write(&fs, &full, &mut b.as_slice()),
            Content::File(p, _) => {
                let mut f = File::open(p).with_context(|| format!("reading {}", p.display()))?;
                fat::write(&fs, &full, &mut f)
            }
        }
        .map_err(anyhow::Error::msg)?;
        written.push(full);
    }
    let old_cmdline = fat::read(&fs, "cmdline.txt").map_err(anyhow::Error::msg)?;
    let mut cmdline_changed = false;
    for (name, bytes) in &files.root {
        if name == "cmdline.txt" && old_cmdline.as_deref() == Some(bytes.as_slice()) {
            continue;
        }
        cmdline_changed |= name == "cmdline.txt";
        fat::write(&fs, name, &mut bytes.as_slice()).map_err(anyhow::Error::msg)?;
        written.push(name.clone());
    }
    let (_, free_after) = fat::space(&fs).map_err(anyhow::Error::msg)?;
    fat::close(fs).map_err(anyhow::Error::msg)?;
    file.sync_all()?;
    drop(file);
    if is_xz_name(&spec.out) {
        let packed = Partial(Some(partial_path(&spec.out, "xz-partial")));
        let packed_path = packed.0.clone().expect("set");
        stream::pack_xz(&work_path, &packed_path, progress)
            .with_context(|| format!("compressing into {}", packed_path.display()))?;
        std::fs::rename(packed.keep(), &spec.out)
            .with_context(|| format!("renaming to {}", spec.out.display()))?;
    } else {
        std::fs::rename(work.keep(), &spec.out)
            .with_context(|| format!("renaming to {}", spec.out.display()))?;
    }
    Ok(Baked {
        facts,
        written,
        free_after,
        cmdline_changed,
    })
}

/// First-boot state of a baked image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum State {
    /// Never booted: the hook is still in cmdline.txt.
    Pending,
    /// The bootstrap ran; `pi-setup install` has not finished (yet).
    Installing,
    RanOk,
    Failed,
}

/// What `--inspect` found.
#[derive(Debug)]
pub(crate) struct Inspected {
    pub(crate) manifest: Manifest,
    pub(crate) profile: Option<String>,
    pub(crate) service_files: Vec<(String, String)>,
    pub(crate) state: State,
    pub(crate) log_tail: Vec<String>,
    pub(crate) binary_len: Option<u64>,
}

/// Reads a baked image (raw or xz; xz is decompressed into a temporary file first).
pub(crate) fn inspect(path: &Path, progress: &Progress) -> anyhow::Result<Inspected> {
    let bad = |e: String| BadInput(format!("{}: {e}", path.display()));
    let tmp;
    let file = if stream::is_xz(path).map_err(|e| bad(e.to_string()))? {
        tmp = tempfile_path();
        stream::unpack(path, &tmp.0.clone().expect("set"), progress)?;
        File::open(tmp.0.as_ref().expect("set"))?
    } else {
        File::open(path).map_err(|e| bad(e.to_string()))?
    };
    let layout = layout_of(&file).map_err(bad)?;
    let fs = fat::open(file.try_clone()?, layout.boot).map_err(bad)?;
    let text = |p: &str| -> Result<Option<String>, BadInput> {
        Ok(fat::read(&fs, p)
            .map_err(bad)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    };
    let manifest = text(&format!("{DIR}/image.toml"))?.ok_or_else(|| {
        bad("not baked by pi-setup image (no pi-setup/image.toml on its boot partition)".into())
    })?;
    let manifest: Manifest =
        toml::from_str(&manifest).map_err(|e| bad(format!("pi-setup/image.toml: {e}")))?;
    let profile = text(&format!("{DIR}/pi-setup.toml"))?;
    let mut service_files = Vec::new();
    for (name, is_dir, _) in fat::list(&fs, &format!("{DIR}/services")) {
        if !is_dir {
            if let Some(t) = text(&format!("{DIR}/services/{name}"))? {
                service_files.push((name, t));
            }
        }
    }
    let log = fat::tail(&fs, &format!("{DIR}/install.log"), 64 * 1024)
        .map_err(bad)?
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let cmdline = text("cmdline.txt")?.unwrap_or_default();
    let state = match log.as_deref().and_then(|l| {
        l.lines()
            .rev()
            .find(|l| l.starts_with("pi-setup first boot: "))
    }) {
        Some(l) if l.starts_with("pi-setup first boot: ok") => State::RanOk,
        Some(_) => State::Failed,
        None if firstboot::has_hook(&cmdline) && log.is_none() => State::Pending,
        None => State::Installing,
    };
    let log_tail = log.map_or_else(Vec::new, |l| {
        let lines: Vec<String> = l.lines().map(str::to_string).collect();
        lines[lines.len().saturating_sub(20)..].to_vec()
    });
    let binary_len = fat::list(&fs, DIR)
        .into_iter()
        .find(|(n, d, _)| n == "pi-setup" && !d)
        .map(|(_, _, len)| len);
    Ok(Inspected {
        manifest,
        profile,
        service_files,
        state,
        log_tail,
        binary_len,
    })
}

fn tempfile_path() -> Partial {
    let p = std::env::temp_dir().join(format!("pi-setup-inspect-{}.img", std::process::id()));
    let _ = std::fs::remove_file(&p);
    Partial(Some(p))
}

#[cfg(test)]
mod tests {
    use super::{marker_version, own_version, VERSION_MARKER};

    #[test]
    fn the_version_marker_is_found_in_a_binary() {
        assert_eq!(own_version(), env!("CARGO_PKG_VERSION"));
        let mut blob = b"\x7fELF junk".to_vec();
        blob.extend_from_slice(VERSION_MARKER);
        blob.extend_from_slice(b"more");
        assert_eq!(
            marker_version(&blob).as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(marker_version(b"PI_SETUP_VERSION=1.0 no nul"), None);
        assert_eq!(marker_version(b"PI_SETUP_VERSION=a b\0"), None);
    }
}
