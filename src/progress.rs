//! Progress output: indicatif bars on a terminal, plain one-line messages otherwise (journald,
//! CI, pipes). The only module that uses indicatif.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::engine::PullProgress;

#[derive(Clone)]
pub(crate) struct Progress {
    /// Present on a terminal: bars live here, and notes are printed above them.
    multi: Option<MultiProgress>,
}

impl Progress {
    pub(crate) fn new() -> Self {
        Progress {
            multi: std::io::stderr().is_terminal().then(MultiProgress::new),
        }
    }

    /// One line on stderr (progress, not results), above any bars.
    pub(crate) fn note(&self, msg: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(msg);
            }
            None => eprintln!("{msg}"),
        }
    }

    fn bar(&self, template: &str, message: String) -> Option<ProgressBar> {
        let multi = self.multi.as_ref()?;
        let b = multi.add(ProgressBar::new(0));
        b.set_style(
            ProgressStyle::with_template(template)
                .expect("valid template")
                .progress_chars("=> "),
        );
        b.set_message(message);
        b.enable_steady_tick(Duration::from_millis(200));
        Some(b)
    }

    pub(crate) fn pull(&self, image: &str) -> PullBar {
        let bar = self.bar(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            format!("pulling {image}"),
        );
        if bar.is_none() {
            eprintln!("pulling {image} ...");
        }
        PullBar {
            bar,
            image: image.to_string(),
            layers: HashMap::new(),
        }
    }

    /// A bar for one volume's archive (bytes read, rate, ETA); a plain line when not a terminal.
    pub(crate) fn volume(&self, name: &str, how: &str) -> VolumeBar {
        let bar = self.bar(
            "{msg:<24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            format!("{name} ({how})"),
        );
        if bar.is_none() {
            eprintln!("backing up {name} ({how}) ...");
        }
        VolumeBar { bar }
    }
}

impl Progress {
    /// A bar for one long byte stream (a disk image copied, decompressed or compressed); a
    /// plain line when not a terminal.
    pub(crate) fn bytes(&self, what: &str) -> VolumeBar {
        let bar = self.bar(
            "{msg:<24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            what.to_string(),
        );
        if bar.is_none() {
            eprintln!("{what} ...");
        }
        VolumeBar { bar }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

/// Sums the per-layer byte counts the daemon reports into one bar.
pub(crate) struct PullBar {
    bar: Option<ProgressBar>,
    image: String,
    layers: HashMap<String, (u64, u64)>,
}

impl PullBar {
    pub(crate) fn update(&mut self, p: &PullProgress) {
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

    pub(crate) fn finish(self, ok: bool) {
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

pub(crate) struct VolumeBar {
    bar: Option<ProgressBar>,
}

impl VolumeBar {
    pub(crate) fn update(&self, done: u64, total: u64) {
        if let Some(b) = &self.bar {
            b.set_length(total.max(done));
            b.set_position(done);
        }
    }

    pub(crate) fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}
