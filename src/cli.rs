//! Command-line arguments (clap). Parsing only: nothing here touches the host.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "pi-setup",
    version,
    about = "Turn a Raspberry Pi into a self-hosting appliance: Docker services behind one gateway, nightly backups",
    after_help = "Exit codes: 0 success, 1 failure, 2 invalid usage or configuration (nothing changed)."
)]
pub struct Cli {
    /// Put every host path (/etc, /var/vol, /var/backups, systemd units) under DIR.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "PI_SETUP_ROOT",
        default_value = "/"
    )]
    pub root: PathBuf,

    /// Prefix every Docker object name with NAME-, so several appliances share one daemon.
    #[arg(long, global = true, value_name = "NAME", env = "PI_SETUP_INSTANCE")]
    pub instance: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Provision this host: network, volume directories, images, gateway and services.
    Install(InstallArgs),
    /// Print a shell completion script.
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// A shipped profile name (default, homelab) or a path to a profile file.
    /// Without it: the profile in force (/etc/pi-setup/pi-setup.toml), else `default`.
    #[arg(long, value_name = "NAME|PATH")]
    pub profile: Option<String>,

    /// Print the ordered plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}
