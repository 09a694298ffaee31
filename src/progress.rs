//! Progress output: indicatif bars on a terminal, plain one-line messages otherwise (journald,
//! CI, pipes). The only module that uses indicatif.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::engine::PullProgress;

#[derive(Debug, Clone, Copy)]
pub struct Progress {
    tty: bool,
}

impl Progress {
    pub fn new() -> Self {
        Progress {
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// One plain line on stderr (progress, not results).
    pub fn note(&self, msg: &str) {
        eprintln!("{msg}");
    }

    pub fn pull(&self, image: &str) -> PullBar {
        let bar = if self.tty {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            b.set_message(format!("pulling {image}"));
            b.enable_steady_tick(Duration::from_millis(200));
            Some(b)
        } else {
            eprintln!("pulling {image} ...");
            None
        };
        PullBar {
            bar,
            image: image.to_string(),
            layers: HashMap::new(),
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

/// Sums the per-layer byte counts the daemon reports into one bar.
pub struct PullBar {
    bar: Option<ProgressBar>,
    image: String,
    layers: HashMap<String, (u64, u64)>,
}

impl PullBar {
    pub fn update(&mut self, p: &PullProgress) {
        if let (Some(layer), Some(total)) = (&p.layer, p.total) {
            if p.status.starts_with("Downloading") {
                let cur = p.current.unwrap_or(0).max(0) as u64;
                self.layers
                    .insert(layer.clone(), (cur, total.max(0) as u64));
            }
        }
        if let Some(bar) = &self.bar {
            let (cur, total) = self
                .layers
                .values()
                .fold((0, 0), |(c, t), (lc, lt)| (c + lc, t + lt));
            bar.set_length(total);
            bar.set_position(cur);
        }
    }

    pub fn finish(self, ok: bool) {
        let total: u64 = self.layers.values().map(|(_, t)| t).sum();
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
        if ok {
            eprintln!(
                "pulled {} ({:.1} MiB downloaded)",
                self.image,
                total as f64 / 1048576.0
            );
        }
    }
}
