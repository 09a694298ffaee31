//! The single-instance lock: every command that changes state holds an exclusive flock on
//! `/run/pi-setup.lock` (under `--root`). A second run waits briefly, then names the holder.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};

pub(crate) struct Lock {
    _flock: Flock<File>,
}

pub(crate) fn acquire(path: &Path, command: &str, wait: Duration) -> Result<Lock> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let deadline = Instant::now() + wait;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("opening lock file {}", path.display()))?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut flock) => {
                flock.set_len(0)?;
                flock.rewind()?;
                writeln!(flock, "{} {}", std::process::id(), command)?;
                return Ok(Lock { _flock: flock });
            }
            Err((f, _)) if Instant::now() < deadline => {
                file = f;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err((mut f, _)) => {
                let mut holder = String::new();
                let _ = f.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = match holder.split_once(' ') {
                    Some((pid, cmd)) => format!("pid {pid}, `pi-setup {cmd}`"),
                    None => "another process".to_string(),
                };
                bail!(
                    "another pi-setup is running ({who}) and holds {}; try again when it has finished",
                    path.display()
                );
            }
        }
    }
}
