//! `pi-setup image`: reads and checks everything the user gave (files, names, secrets — the
//! secrets only ever as hashes), then hands a complete `image::Spec` to the image module; and
//! `--inspect`, which prints what a baked image holds.

use std::path::Path;

use anyhow::Result;

use crate::cli::ImageArgs;
use crate::commands::Context;
use crate::error::BadInput;
use crate::image::firstboot::{self, Settings, User};
use crate::image::{self, Spec, State};
use crate::input::source::Source;
use crate::model::{CopyPlace, HostFacts, Model};
use crate::progress::Progress;

/// A Raspberry Pi 4/5 (and Zero 2 W) has 4 cores: profiles are validated against the Pi, not
/// against the laptop baking the image.
fn pi_host() -> HostFacts {
    HostFacts {
        cpus: 4,
        calendar_error: crate::host::calendar_error,
    }
}

fn read_text(flag: &str, p: &Path) -> Result<String, BadInput> {
    std::fs::read_to_string(p).map_err(|e| BadInput(format!("{flag} {}: {e}", p.display())))
}

/// A secret file: read, never shown; the error names the file and the reason only.
fn read_secret(flag: &str, p: &Path) -> Result<String, BadInput> {
    read_text(flag, p)
}

fn binary(args: &ImageArgs) -> Result<image::Binary, BadInput> {
    let path = match &args.binary {
        Some(p) => p.clone(),
        None if std::env::consts::ARCH == "aarch64" => std::env::current_exe()
            .map_err(|e| BadInput(format!("cannot find this pi-setup's own file: {e}; give --binary PATH")))?,
        None => {
            return Err(BadInput(format!(
                "the image needs an aarch64 pi-setup and this one is {}: build it with `bash ci/cross-build` (it writes target/aarch64-unknown-linux-musl/release/pi-setup) and give it with --binary PATH",
                std::env::consts::ARCH
            )))
        }
    };
    image::check_binary(&path).map_err(|e| BadInput(format!("--binary: {e}")))
}

fn settings(args: &ImageArgs) -> Result<Settings, BadInput> {
    let mut s = Settings {
        hostname: args
            .hostname
            .as_deref()
            .map(firstboot::check_hostname)
            .transpose()
            .map_err(BadInput)?,
        timezone: args
            .timezone
            .as_deref()
            .map(firstboot::check_timezone)
            .transpose()
            .map_err(BadInput)?,
        ..Settings::default()
    };
    if let Some(name) = &args.user {
        let name = firstboot::check_user(name).map_err(BadInput)?;
        if args.password_file.is_none() && args.ssh_key.is_none() {
            return Err(BadInput(format!(
                "--user {name} needs --password-file FILE or --ssh-key FILE (or both) to log in with"
            )));
        }
        let hash = match &args.password_file {
            Some(p) => {
                let pw = firstboot::password_from_file(&read_secret("--password-file", p)?)
                    .map_err(|e| BadInput(format!("--password-file {}: {e}", p.display())))?;
                firstboot::hash_password(&pw).map_err(BadInput)?
            }
            None => "*".to_string(),
        };
        let keys = match &args.ssh_key {
            Some(p) => firstboot::ssh_keys(&read_text("--ssh-key", p)?).map_err(BadInput)?,
            None => Vec::new(),
        };
        s.user = Some(User { name, hash, keys });
    }
    if let (Some(ssid), Some(pw_file), Some(cc)) = (
        &args.wifi_ssid,
        &args.wifi_password_file,
        &args.wifi_country,
    ) {
        let pw = read_secret("--wifi-password-file", pw_file)?;
        let pw = pw.strip_suffix('\n').unwrap_or(&pw);
        let pw = pw.strip_suffix('\r').unwrap_or(pw);
        s.wifi = Some(firstboot::wifi(ssid, pw, cc).map_err(BadInput)?);
    }
    Ok(s)
}

/// The profile and service files, validated together as `install` will on the Pi.
#[allow(clippy::type_complexity)]
fn profile_and_services(
    ctx: &Context,
    args: &ImageArgs,
) -> Result<((String, String), Vec<(String, String)>, Model), BadInput> {
    let arg = args.profile.as_deref().unwrap_or("default");
    let profile = crate::input::profile_source(Some(arg), &ctx.paths)?;
    let mut sources = Vec::new();
    let mut files = Vec::new();
    for p in &args.service_files {
        let text = read_text("--service-file", p)?;
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| {
                Path::new(n).extension().is_some_and(|e| e == "toml")
                    && n.len() <= 64
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            })
            .ok_or_else(|| {
                BadInput(format!(
                    "--service-file {}: name it NAME.toml (a-z, 0-9, ., _, -)",
                    p.display()
                ))
            })?;
        if files.iter().any(|(n, _): &(String, String)| n == &name) {
            return Err(BadInput(format!(
                "--service-file {}: two service files named {name}",
                p.display()
            )));
        }
        sources.push(Source::new(p.display().to_string(), text.clone()));
        files.push((name, text));
    }
    let model = crate::input::load_on(&profile, &sources, &pi_host())?;
    Ok(((arg.to_string(), profile.text), files, model))
}

/// `--restore-from COPY[@TIMESTAMP]`: the copy target must be in the profile, with what it
/// needs on the Pi (the S3 credentials, the age identity of an encrypting target).
fn restore(args: &ImageArgs, model: &Model) -> Result<Option<image::Restore>, BadInput> {
    let Some(from) = &args.restore_from else {
        return Ok(None);
    };
    let (name, at) = from.split_once('@').unwrap_or((from, ""));
    let ts_ok = at.len() == 16
        && at.bytes().enumerate().all(|(i, b)| match i {
            8 => b == b'T',
            15 => b == b'Z',
            _ => b.is_ascii_digit(),
        });
    if !at.is_empty() && !ts_ok {
        return Err(BadInput(format!(
            "--restore-from {from:?}: the timestamp is UTC as in archive names, e.g. {name}@20261125T033000Z"
        )));
    }
    let target = model
        .backup
        .copies
        .iter()
        .find(|t| t.name.as_str() == name)
        .ok_or_else(|| {
            let known: Vec<&str> = model.backup.copies.iter().map(|t| t.name.as_str()).collect();
            BadInput(format!(
                "--restore-from {name:?}: the profile has no [[backup.copy]] of that name (it has: {})",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ))
        })?;
    let mut files = Vec::new();
    let creds_path = match (&target.place, &args.restore_credentials) {
        (CopyPlace::S3(place), Some(f)) => {
            let text = read_secret("--restore-credentials", f)?;
            files.push(("credentials".to_string(), text.into_bytes()));
            place.credentials.clone()
        }
        (CopyPlace::S3(place), None) => {
            return Err(BadInput(format!(
                "--restore-from {name}: an S3 copy target needs its credentials: give --restore-credentials FILE (installed as {})",
                place.credentials
            )))
        }
        (CopyPlace::Dir(_), Some(_)) => {
            return Err(BadInput(format!(
                "--restore-credentials: copy target {name} is a directory on a disk, it takes no credentials"
            )))
        }
        (CopyPlace::Dir(_), None) => String::new(),
    };
    let encrypted = !target.encrypt_to.is_empty();
    match (&args.restore_identity, encrypted) {
        (Some(f), true) => {
            let text = read_secret("--restore-identity", f)?;
            if !text.lines().any(|l| l.trim_start().starts_with("AGE-SECRET-KEY-")) {
                return Err(BadInput(format!(
                    "--restore-identity {}: not an age identity file (no AGE-SECRET-KEY-... line)",
                    f.display()
                )));
            }
            files.push(("identity".to_string(), text.into_bytes()));
        }
        (None, true) => {
            return Err(BadInput(format!(
                "--restore-from {name}: its copies are encrypted: give your age identity with --restore-identity FILE"
            )))
        }
        (Some(_), false) => {
            return Err(BadInput(format!(
                "--restore-identity: copy target {name} does not encrypt (no encrypt_to)"
            )))
        }
        (None, false) => {}
    }
    let step = format!(
        "restore_from {} {} {} {}",
        firstboot::sh_quote(name),
        firstboot::sh_quote(at),
        firstboot::sh_quote(&creds_path),
        firstboot::sh_quote(if encrypted { "yes" } else { "" })
    );
    Ok(Some(image::Restore {
        from: from.clone(),
        step,
        files,
    }))
}

pub(crate) fn image(ctx: &Context, args: &ImageArgs) -> Result<()> {
    let progress = Progress::new();
    if let Some(img) = &args.inspect {
        return inspect(img, &progress);
    }
    let (Some(base), Some(out)) = (&args.base, &args.out) else {
        return Err(BadInput("give --base IMG and --out IMG (or --inspect IMG)".into()).into());
    };
    let (profile, services, model) = profile_and_services(ctx, args)?;
    let service_names = model.services.iter().map(|s| s.name.to_string()).collect();
    let restore = restore(args, &model)?;
    let bundle = args
        .images
        .as_deref()
        .map(image::check_bundle)
        .transpose()
        .map_err(BadInput)?;
    let spec = Spec {
        base: base.clone(),
        out: out.clone(),
        force: args.force,
        binary: binary(args)?,
        profile,
        services,
        service_names,
        bundle,
        settings: settings(args)?,
        restore,
    };
    let baked = image::bake(&spec, &progress)?;
    report(&spec, &baked, out);
    Ok(())
}

fn report(spec: &Spec, baked: &image::Baked, out: &Path) {
    let f = &baked.facts;
    println!(
        "Baked {} from {} (Raspberry Pi OS {}{})",
        out.display(),
        spec.base.display(),
        f.release,
        if f.cloud_init { ", cloud-init" } else { "" }
    );
    println!(
        "  pi-setup {} ({:.1} MiB), profile {}, {} service(s){}",
        spec.binary.version,
        spec.binary.len as f64 / 1_048_576.0,
        spec.profile.0,
        spec.service_names.len(),
        spec.bundle.as_ref().map_or_else(String::new, |b| format!(
            ", {} image(s) bundled",
            b.images.len()
        ))
    );
    let native: Vec<&str> = baked
        .written
        .iter()
        .map(String::as_str)
        .filter(|w| !w.starts_with("pi-setup/") && *w != "cmdline.txt")
        .collect();
    if !native.is_empty() {
        println!("  first-boot files: {}", native.join(", "));
    }
    println!(
        "  cmdline.txt: {}",
        if baked.cmdline_changed {
            "first-boot hook added"
        } else {
            "first-boot hook already there"
        }
    );
    println!(
        "  boot partition: {:.1} MiB free after",
        baked.free_after as f64 / 1_048_576.0
    );
    println!(
        "Flash it (Raspberry Pi Imager \"Use custom\", balenaEtcher or dd); the Pi provisions itself on first boot and logs to pi-setup/install.log on the boot partition."
    );
}

fn inspect(img: &Path, progress: &Progress) -> Result<()> {
    let i = image::inspect(img, progress)?;
    let m = &i.manifest;
    println!(
        "{}: baked by pi-setup {} for Raspberry Pi OS {}{}",
        img.display(),
        m.baked_by,
        m.release,
        if m.cloud_init { " (cloud-init)" } else { "" }
    );
    println!(
        "pi-setup binary: {}{} (sha256 {})",
        m.version,
        i.binary_len.map_or_else(
            || " — missing!".to_string(),
            |n| format!(", {:.1} MiB", n as f64 / 1_048_576.0)
        ),
        &m.binary_sha256[..m.binary_sha256.len().min(16)]
    );
    match &i.profile {
        None => println!("profile: missing!"),
        Some(text) => {
            let origin = format!("{}:pi-setup/pi-setup.toml", img.display());
            let services: Vec<Source> = i
                .service_files
                .iter()
                .map(|(n, t)| {
                    Source::new(
                        format!("{}:pi-setup/services/{n}", img.display()),
                        t.clone(),
                    )
                })
                .collect();
            match crate::input::load_on(&Source::new(origin, text.clone()), &services, &pi_host()) {
                Ok(model) => println!(
                    "profile: {} ({}; gateway {}): valid",
                    m.profile,
                    model.description.as_deref().unwrap_or("no description"),
                    model.gateway.image
                ),
                Err(e) => println!("profile: {} is NOT valid:\n{e}", m.profile),
            }
        }
    }
    println!(
        "services: {}",
        if m.services.is_empty() {
            "none".to_string()
        } else {
            m.services.join(", ")
        }
    );
    println!(
        "bundle images: {}",
        if m.images.is_empty() {
            "none".to_string()
        } else {
            m.images.join(", ")
        }
    );
    if !m.settings.is_empty() {
        println!("first-boot settings: {}", m.settings.join("; "));
    }
    if let Some(r) = &m.restore_from {
        println!("restore from: {r}");
    }
    let state = match i.state {
        State::Pending => "pending (not booted yet)",
        State::Installing => "bootstrap ran; pi-setup install has not finished",
        State::RanOk => "ran OK",
        State::Failed => "FAILED",
    };
    println!("first boot: {state}");
    if !i.log_tail.is_empty() {
        println!("install.log (last lines):");
        for l in &i.log_tail {
            println!("  {l}");
        }
    }
    Ok(())
}
