//! Command handlers, one per sub-command, and what they share.

pub mod install;

use std::path::PathBuf;

use anyhow::Result;
use clap::CommandFactory;

use crate::cli::Cli;
use crate::config::BadInput;
use crate::desired::Names;
use crate::model::Name;
use crate::paths::Paths;

/// What every command needs: where host paths are, and how Docker objects are named.
pub struct Context {
    pub paths: Paths,
    pub names: Names,
}

impl Context {
    pub fn new(cli: &Cli) -> Result<Context> {
        let root: PathBuf = if cli.root.is_absolute() {
            cli.root.clone()
        } else {
            std::env::current_dir()?.join(&cli.root)
        };
        let instance = match &cli.instance {
            None => None,
            Some(i) => Some(
                Name::parse(i)
                    .map_err(|why| BadInput(format!("invalid --instance {i:?}: {why}")))?
                    .to_string(),
            ),
        };
        Ok(Context {
            paths: Paths::new(root),
            names: Names { instance },
        })
    }

    /// Writing to the real system paths needs root; under `--root` it may not.
    pub fn require_root(&self) -> Result<()> {
        if self.paths.is_system() && !crate::host::is_root() {
            return Err(BadInput(
                "this command changes /etc and /var: run it as root (sudo pi-setup ...), or try it under --root DIR".into(),
            )
            .into());
        }
        Ok(())
    }
}

pub fn completions(shell: clap_complete::Shell) {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "pi-setup", &mut std::io::stdout());
}
