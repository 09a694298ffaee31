//! pi-setup: provisions a host as a self-hosting appliance. Data flows one way:
//! profile (raw TOML) → model (validated) → desired + observed → plan → apply → report.

// Input → model → desired + observed → plan → execute → report, in that order.
mod cli;
mod error;
mod input;
mod model;
mod desired;
mod gateway;
mod observe;
mod plan;
mod overlay;
mod preflight;
mod reconcile;
mod update;
mod execute;
mod drain;
mod report;
mod progress;

// The outside systems, each behind one module.
mod engine;
mod host;
mod lock;
mod reuseport;

// Backups: the library, and the commands that run it.
mod backup;
mod s3;

// Baking the appliance into a Raspberry Pi OS image.
mod image;

// One handler per sub-command.
mod commands;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::error::Exit;

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return Exit::Failed.into();
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => Exit::Ok.into(),
        Err(e) => error::report(&e).into(),
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let ctx = commands::Context::new(&cli)?;
    match cli.command {
        Command::Install(args) => commands::install::install(&ctx, &args).await,
        Command::AddService(args) => commands::add_service::add_service(&ctx, &args).await,
        Command::RemoveService(args) => commands::remove_service::remove_service(&ctx, &args).await,
        Command::List(args) => commands::status::list(&ctx, &args).await,
        Command::Status(args) => commands::status::status(&ctx, &args).await,
        Command::Apply(args) => commands::apply::apply(&ctx, &args).await,
        Command::Heal => commands::heal::heal(&ctx).await,
        Command::Update(args) => commands::update::update(&ctx, &args).await,
        Command::RunJob { name } => commands::run_job::run_job(&ctx, &name).await,
        Command::Backup(args) => commands::backup::backup(&ctx, &args).await,
        Command::Restore(args) => commands::backup::restore(&ctx, &args).await,
        Command::Backups(args) => commands::backup::backups(&ctx, &args),
        Command::Verify(args) => commands::backup::verify(&ctx, &args),
        Command::Image(args) => commands::image::image(&ctx, &args),
        Command::Images(args) => commands::images::images(&ctx, &args).await,
        Command::Uninstall(args) => commands::uninstall::uninstall(&ctx, &args).await,
        Command::Completions { shell } => {
            commands::completions(shell);
            Ok(())
        }
    }
}
