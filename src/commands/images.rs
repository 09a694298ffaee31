//! `pi-setup images save FILE` / `images load FILE`, and the load `install --images FILE` does:
//! every image the appliance runs in one archive (the Engine API's `docker save`/`load`), for
//! Pis without internet and for the SD card image builder.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use futures_util::StreamExt;

use crate::cli::{ImagesArgs, ImagesCommand};
use crate::commands::host_setup::image_refs;
use crate::commands::{Context, LOCK_WAIT};
use crate::engine::{Docker, Engine};
use crate::error::BadInput;
use crate::input::Inputs;
use crate::report::human_bytes;

pub(crate) async fn images(ctx: &Context, args: &ImagesArgs) -> Result<()> {
    match &args.command {
        ImagesCommand::Save {
            file,
            profile,
            platform,
        } => {
            let model = Inputs::read(profile.as_deref(), &ctx.paths)?.model()?;
            let platform = platform
                .clone()
                .unwrap_or_else(|| format!("linux/{}", crate::preflight::host_arch()));
            let docker = crate::engine::connect().await?;
            save(&docker, &image_refs(&model), &platform, file).await
        }
        ImagesCommand::Load { file } => {
            let _lock = ctx.lock("images load", false, LOCK_WAIT)?;
            let docker = crate::engine::connect().await?;
            load(&docker, file).await
        }
    }
}

/// Checks every image is here and for `platform`; the error names each one that is not.
pub(crate) async fn check_present(docker: &Docker, refs: &[String], platform: &str) -> Result<()> {
    let mut problems = Vec::new();
    for r in refs {
        match docker.image_platform(r).await? {
            None => problems.push(format!("image {r} is not on this machine")),
            Some(p) if p == platform || p.starts_with(&format!("{platform}/")) => {}
            Some(p) => problems.push(format!("image {r} is {p}, not {platform}")),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(BadInput(problems.join("\n")).into())
    }
}

async fn save(docker: &Docker, refs: &[String], platform: &str, file: &Path) -> Result<()> {
    check_present(docker, refs, platform).await.map_err(|e| {
        BadInput(format!(
            "{e}\npull (or build) each one for {platform} first; nothing was written"
        ))
    })?;
    let names: Vec<&str> = refs.iter().map(String::as_str).collect();
    // It may hold images with secrets baked in: only root reads it.
    let mut out = crate::host::AtomicFile::create(file, 0o600)?;
    let mut stream = docker.export_images(&names);
    let mut written = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                out.abandon();
                return Err(e.into());
            }
        };
        written += chunk.len() as u64;
        if let Err(e) = out.write(&chunk) {
            out.abandon();
            return Err(e.into());
        }
    }
    out.commit()?;
    println!(
        "saved {} image(s) for {platform} to {} ({}): {}",
        refs.len(),
        file.display(),
        human_bytes(written),
        refs.join(", ")
    );
    Ok(())
}

/// Loads an archive through the Engine API, with a progress line per tenth read.
pub(crate) async fn load(docker: &Docker, file: &Path) -> Result<()> {
    let f = std::fs::File::open(file)
        .map_err(|e| BadInput(format!("cannot read image archive {}: {e}", file.display())))?;
    let total = f.metadata().map_or(0, |m| m.len());
    let shown = file.display().to_string();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&sent);
    let label = shown.clone();
    let stream = futures_util::stream::unfold((f, 0u64), move |(mut f, mut tenth)| {
        let counter = Arc::clone(&counter);
        let label = label.clone();
        async move {
            let mut buf = vec![0u8; 1 << 20];
            match f.read(&mut buf) {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    let done = counter.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
                    let now = (done * 10).checked_div(total).unwrap_or(10);
                    if now > tenth {
                        tenth = now;
                        eprintln!(
                            "loading {label}: {} of {}",
                            human_bytes(done),
                            human_bytes(total)
                        );
                    }
                    Some((Ok(bytes::Bytes::from(buf)), (f, tenth)))
                }
                Err(e) => Some((Err(e), (f, tenth))),
            }
        }
    });
    println!("loading images from {shown} ({})", human_bytes(total));
    docker
        .import_images(stream, &mut |line| println!("  {line}"))
        .await
        .with_context(|| format!("loading images from {shown}"))?;
    Ok(())
}
