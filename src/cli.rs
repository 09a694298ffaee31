//! Command-line arguments (clap). Parsing only: nothing here touches the host.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "pi-setup",
    version,
    about = "Turn a Raspberry Pi into a self-hosting appliance: Docker services behind one gateway, nightly backups",
    after_help = "Exit codes: 0 success, 1 failure, 2 invalid usage or configuration (nothing changed), 3 updates available (update --check)."
)]
pub(crate) struct Cli {
    /// Put every host path (/etc, /var/vol, /var/backups, systemd units) under DIR.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "DIR",
        env = "PI_SETUP_ROOT",
        default_value = "/"
    )]
    pub(crate) root: PathBuf,

    /// Prefix every Docker object name with NAME-, so several appliances share one daemon.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "NAME",
        env = "PI_SETUP_INSTANCE"
    )]
    pub(crate) instance: Option<String>,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Provision this host: network, volume directories, images, gateway and services.
    Install(InstallArgs),
    /// Add a service: persist its definition, create its volume, start it, route its domains.
    AddService(Box<AddServiceArgs>),
    /// Remove a service's container and route; its data stays unless --purge.
    RemoveService(RemoveServiceArgs),
    /// List services: image, state, health, domains, access, volume size, last backup.
    List(ListArgs),
    /// Check the gateway, the network and the services, and say what is wrong.
    Status(StatusArgs),
    /// Reconcile after hand-editing /etc/pi-setup (same plan/apply as install).
    Apply(ApplyArgs),
    /// Restart services whose health check fails (run every minute by a systemd timer).
    Heal,
    /// Move services to newer images of their tags (or rebuild), rolling back any that fails.
    Update(UpdateArgs),
    /// Run a job ([[job]]) now, to completion, as its schedule's timer does.
    RunJob {
        /// The job's name.
        name: String,
    },
    /// Archive each directory under /var/vol (or the NAMEs given), verified, with retention.
    Backup(BackupArgs),
    /// Bring back one volume directory from an archive (stops and restarts its container).
    Restore(RestoreArgs),
    /// List the archives of every volume (or of NAME).
    Backups(BackupsArgs),
    /// Re-check every archive: checksum, decompression, entry count.
    Verify(BackupsArgs),
    /// Bake the appliance into a Raspberry Pi OS image that provisions itself on first boot
    /// (or, with --inspect, show what a baked image holds).
    Image(Box<ImageArgs>),
    /// Save or load the images the appliance uses, as one archive (offline installs).
    Images(ImagesArgs),
    /// Remove pi-setup's containers, network, units and overlay files (host files restored);
    /// /var/vol and the backups stay unless --purge --yes.
    Uninstall(UninstallArgs),
    /// Print a shell completion script.
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
#[allow(clippy::struct_excessive_bools)] // independent flags, as clap gives them
pub(crate) struct InstallArgs {
    /// A shipped profile name (default, homelab) or a path to a profile file.
    /// Without it: the profile in force (/etc/pi-setup/pi-setup.toml), else `default`.
    #[arg(long, value_name = "NAME|PATH")]
    pub(crate) profile: Option<String>,

    /// Print the ordered plan and change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,

    /// Load the images from this archive (made by `pi-setup images save`) before anything is
    /// pulled: for a Pi without internet, and for the first boot of a built SD card image.
    #[arg(long, value_name = "FILE")]
    pub(crate) images: Option<PathBuf>,

    /// When an overlay changes the Docker daemon's settings, restart Docker (then wait for it
    /// and check every container). Without it, install only says a restart is needed.
    #[arg(long)]
    pub(crate) restart_docker: bool,

    /// When Docker is missing, install Debian's docker.io with apt-get first.
    #[arg(long)]
    pub(crate) install_docker: bool,

    /// Add the memory cgroup tokens to the Pi's cmdline.txt (a reboot is needed after).
    #[arg(long)]
    pub(crate) fix_cmdline: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ImagesArgs {
    #[command(subcommand)]
    pub(crate) command: ImagesCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ImagesCommand {
    /// Write every image the profile, its services and the gateway use into one archive
    /// (mode 0600), for installing without internet.
    Save {
        /// The archive to write.
        file: PathBuf,
        /// A shipped profile name or a profile file (default: as for install).
        #[arg(long, value_name = "NAME|PATH")]
        profile: Option<String>,
        /// The platform the images must be for (default: this host's, linux/<arch>).
        #[arg(long, value_name = "OS/ARCH")]
        platform: Option<String>,
    },
    /// Load an archive made by `images save` into the Docker daemon.
    Load {
        /// The archive to read.
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub(crate) struct UninstallArgs {
    /// Also delete /var/vol, the backups and /etc/pi-setup (needs --yes).
    #[arg(long)]
    pub(crate) purge: bool,

    /// Confirm --purge.
    #[arg(long)]
    pub(crate) yes: bool,
}

#[derive(Debug, Args)]
pub(crate) struct AddServiceArgs {
    /// Service name: its host name on the network and its directory under /var/vol.
    #[arg(required_unless_present = "file")]
    pub(crate) name: Option<String>,

    /// Read the definition from a TOML file (the fields of a [[service]] table) instead of flags.
    #[arg(long, value_name = "FILE", conflicts_with_all = [
        "name", "image", "domains", "port", "env", "env_file", "volumes", "layout", "access",
        "auth_user", "auth_password_file", "memory", "cpus", "health_cmd", "health_interval",
        "restart", "publish", "command", "old_command", "user",
    ])]
    pub(crate) file: Option<PathBuf>,

    /// Image reference, e.g. ghcr.io/example/app:1.2
    #[arg(long, required_unless_present = "file")]
    pub(crate) image: Option<String>,

    /// A host name the gateway routes to this service (repeatable).
    #[arg(long = "domain", value_name = "DOMAIN")]
    pub(crate) domains: Vec<String>,

    /// The port the service listens on inside its container (default 80).
    #[arg(long)]
    pub(crate) port: Option<String>,

    /// An environment variable, KEY=VALUE (repeatable; stored in the service file).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub(crate) env: Vec<String>,

    /// Secret variables (KEY=VALUE lines), stored 0600 under /etc/pi-setup/secrets/, never printed.
    #[arg(long, value_name = "FILE")]
    pub(crate) env_file: Option<PathBuf>,

    /// SUBDIR:/container/path[:ro], SUBDIR inside /var/vol/NAME (repeatable).
    #[arg(long = "volume", value_name = "SUBDIR:/PATH")]
    pub(crate) volumes: Vec<String>,

    /// A volume layout (default, postgres, www).
    #[arg(long)]
    pub(crate) layout: Option<String>,

    /// public, lan (private source addresses only) or auth (HTTP basic auth).
    #[arg(long)]
    pub(crate) access: Option<String>,

    /// User name for --access auth.
    #[arg(long)]
    pub(crate) auth_user: Option<String>,

    /// File holding the password for --access auth; only its bcrypt hash is stored.
    #[arg(long, value_name = "FILE")]
    pub(crate) auth_password_file: Option<PathBuf>,

    /// Memory limit, e.g. 512m.
    #[arg(long)]
    pub(crate) memory: Option<String>,

    /// CPU limit in cores, e.g. 1.5.
    #[arg(long)]
    pub(crate) cpus: Option<String>,

    /// Health check command, run in the container by a shell.
    #[arg(long, value_name = "CMD")]
    pub(crate) health_cmd: Option<String>,

    /// How often the health check runs, e.g. 30s.
    #[arg(long, value_name = "DURATION")]
    pub(crate) health_interval: Option<String>,

    /// Restart policy: no, always, unless-stopped (default), on-failure.
    #[arg(long)]
    pub(crate) restart: Option<String>,

    /// Run as this user: uid[:gid] (e.g. 1000:1000) or a user name the image knows.
    #[arg(long, value_name = "USER")]
    pub(crate) user: Option<String>,

    /// Publish a host port directly, bypassing the gateway: [IP:]HOST:CONTAINER (repeatable).
    #[arg(long, value_name = "[IP:]HOST:CONTAINER")]
    pub(crate) publish: Vec<String>,

    /// The command to run instead of the image's default, after `--` (it takes every
    /// argument after it, so no option can end up inside it): `-- httpd -f -p 8080`.
    #[arg(last = true, value_name = "COMMAND")]
    pub(crate) command: Vec<String>,

    /// The old spelling of the command; refused with a pointer to `--` (it swallowed every
    /// option after it, `--dry-run` included).
    #[arg(long = "command", hide = true, num_args = 0.., allow_hyphen_values = true)]
    pub(crate) old_command: Option<Vec<String>>,

    /// Print the plan and change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RemoveServiceArgs {
    pub(crate) name: String,

    /// Also delete /var/vol/NAME (asks for confirmation on a terminal).
    #[arg(long)]
    pub(crate) purge: bool,

    /// Confirm --purge without asking.
    #[arg(long)]
    pub(crate) yes: bool,

    /// Print the plan and change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Print JSON for scripts.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Only this service (problems of the gateway and network it needs are still reported).
    pub(crate) name: Option<String>,

    /// Print JSON for scripts.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ApplyArgs {
    /// Print the ordered plan and change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    /// Only these services (default: every service).
    pub(crate) services: Vec<String>,

    /// List what would be updated and change nothing; exit code 3 when something would.
    #[arg(long)]
    pub(crate) check: bool,
}

#[derive(Debug, Args)]
pub(crate) struct BackupArgs {
    /// Only these volumes (directory names under /var/vol).
    pub(crate) names: Vec<String>,

    /// Where archives go (default: `backup.dest` of the profile, /var/backups/pi-setup).
    #[arg(long, value_name = "DIR")]
    pub(crate) dest: Option<PathBuf>,

    /// gzip (.tar.gz) or zstd (.tar.zst); default: `backup.compress` of the profile, gzip.
    #[arg(long, value_name = "FORMAT")]
    pub(crate) compress: Option<String>,

    /// Compression level: gzip 1-9 (default 6), zstd 1-19 (default 3).
    #[arg(long)]
    pub(crate) level: Option<u32>,

    /// Write full archives tonight, whatever `backup.full_every_days` says (the nights after
    /// make differentials against them).
    #[arg(long)]
    pub(crate) full: bool,

    /// Print what would be archived, and how, and change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
    /// The volume (directory name under /var/vol).
    #[arg(required_unless_present = "all")]
    pub(crate) name: Option<String>,

    /// Every volume that has archives (the newest good one of each): after a new SD card.
    /// All are extracted and flushed to disk before the first is swapped in.
    #[arg(long, conflicts_with_all = ["name", "archive", "at"])]
    pub(crate) all: bool,

    /// The archive of this UTC timestamp (as in its name, e.g. 20261125T033000Z); default: newest.
    #[arg(long, value_name = "TIMESTAMP", conflicts_with = "archive")]
    pub(crate) at: Option<String>,

    /// Restore from this archive file.
    #[arg(long, value_name = "FILE")]
    pub(crate) archive: Option<PathBuf>,

    /// Where archives are (default: `backup.dest` of the profile).
    #[arg(long, value_name = "DIR", conflicts_with = "from")]
    pub(crate) dest: Option<PathBuf>,

    /// Restore from the archives on this copy target (a `[[backup.copy]]` name): for when the
    /// local ones are gone with the SD card.
    #[arg(long, value_name = "NAME")]
    pub(crate) from: Option<String>,

    /// Your age identity (secret key) file, for copies that are encrypted (`encrypt_to`).
    #[arg(long, value_name = "FILE", requires = "from")]
    pub(crate) identity: Option<PathBuf>,

    /// Print what would happen and change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct BackupsArgs {
    /// Only this volume.
    pub(crate) name: Option<String>,

    /// Where archives are (default: `backup.dest` of the profile).
    #[arg(long, value_name = "DIR", conflicts_with = "copy")]
    pub(crate) dest: Option<PathBuf>,

    /// The archives on this copy target (a `[[backup.copy]]` name) instead of the local ones.
    #[arg(long, value_name = "NAME")]
    pub(crate) copy: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ImageArgs {
    /// Show what a baked image holds and how its first boot went, and change nothing.
    #[arg(long, value_name = "IMG", conflicts_with_all = ["base", "out"])]
    pub(crate) inspect: Option<PathBuf>,

    /// The Raspberry Pi OS image to start from (.img or .img.xz); never modified.
    #[arg(long, value_name = "IMG", required_unless_present = "inspect")]
    pub(crate) base: Option<PathBuf>,

    /// The image to write (.img, or .img.xz to compress it).
    #[arg(long, value_name = "IMG", required_unless_present = "inspect")]
    pub(crate) out: Option<PathBuf>,

    /// Replace --out if it exists.
    #[arg(long)]
    pub(crate) force: bool,

    /// A shipped profile name or a profile file (default: the shipped `default`).
    #[arg(long, value_name = "NAME|PATH")]
    pub(crate) profile: Option<String>,

    /// A service file (the fields of a [[service]] table), installed as with add-service --file
    /// (repeatable).
    #[arg(long = "service-file", value_name = "FILE")]
    pub(crate) service_files: Vec<PathBuf>,

    /// A `docker save` archive of the images, loaded on first boot (no registry needed then).
    #[arg(long, value_name = "TAR")]
    pub(crate) images: Option<PathBuf>,

    /// The Pi's host name.
    #[arg(long, value_name = "NAME")]
    pub(crate) hostname: Option<String>,

    /// The user to create on first boot (needs --password-file or --ssh-key; turns SSH on).
    #[arg(long, value_name = "NAME")]
    pub(crate) user: Option<String>,

    /// File holding the user's password; only its SHA-512 crypt hash goes into the image.
    #[arg(long, value_name = "FILE", requires = "user")]
    pub(crate) password_file: Option<PathBuf>,

    /// A public key file (authorized_keys lines) for --user's SSH logins.
    #[arg(long, value_name = "FILE", requires = "user")]
    pub(crate) ssh_key: Option<PathBuf>,

    /// The Wi-Fi network to join.
    #[arg(long, value_name = "SSID", requires_all = ["wifi_password_file", "wifi_country"])]
    pub(crate) wifi_ssid: Option<String>,

    /// File holding the Wi-Fi passphrase; only the derived WPA key goes into the image.
    #[arg(long, value_name = "FILE", requires = "wifi_ssid")]
    pub(crate) wifi_password_file: Option<PathBuf>,

    /// The Wi-Fi regulatory country (two letters: DE, GB, US...).
    #[arg(long, value_name = "CC", requires = "wifi_ssid")]
    pub(crate) wifi_country: Option<String>,

    /// Time zone (tz database name, e.g. Europe/Berlin).
    #[arg(long, value_name = "TZ")]
    pub(crate) timezone: Option<String>,

    /// Rebuild a lost appliance: the first boot restores every volume from this off-device copy
    /// (a [[backup.copy]] name of the profile), its newest archives or the newest at or before
    /// TIMESTAMP (e.g. 20261125T033000Z), before any service starts.
    #[arg(long, value_name = "COPY[@TIMESTAMP]")]
    pub(crate) restore_from: Option<String>,

    /// The credentials file of that S3 copy target; installed 0600 where the profile names it.
    #[arg(long, value_name = "FILE", requires = "restore_from")]
    pub(crate) restore_credentials: Option<PathBuf>,

    /// Your age identity, for a copy target that encrypts (encrypt_to); deleted from the boot
    /// partition once the restore has used it.
    #[arg(long, value_name = "FILE", requires = "restore_from")]
    pub(crate) restore_identity: Option<PathBuf>,

    /// The aarch64 pi-setup to put in the image (default: this one, if it is aarch64).
    #[arg(long, value_name = "PATH")]
    pub(crate) binary: Option<PathBuf>,
}
