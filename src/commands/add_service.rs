//! `pi-setup add-service`: turns flags (or a TOML file) into a service definition, checks it
//! against everything already defined, persists it to `/etc/pi-setup/services/NAME.toml`, and
//! reconciles: volume, container, route, graceful gateway reload.

use std::path::Path;

use anyhow::Result;

use crate::cli::AddServiceArgs;
use crate::commands::{reconcile, Context, Request, LOCK_WAIT};
use crate::config::{parse_env_file, BadInput, Inputs};
use crate::desired::FileSpec;
use crate::model::{Name, GATEWAY};
use crate::plan::ConfigChange;
use crate::profile;
use crate::source::Source;

/// bcrypt cost: Caddy checks the hash on every request, and a Pi 4 takes ~60 ms at 10.
const BCRYPT_COST: u32 = 10;

pub async fn add_service(ctx: &Context, args: &AddServiceArgs) -> Result<()> {
    let _lock = ctx.lock("add-service", args.dry_run, LOCK_WAIT)?;
    let mut inputs = Inputs::read(None, &ctx.paths)?;
    let (name, text) = match &args.file {
        Some(f) => from_file(f)?,
        None => from_flags(args)?,
    };
    if let Err(why) = Name::parse(&name) {
        return Err(BadInput(format!("invalid service name {name:?}: {why}")).into());
    }
    if name == GATEWAY {
        return Err(BadInput(format!(
            "the name '{GATEWAY}' is taken by the gateway itself; choose another"
        ))
        .into());
    }
    if let Some(taken_in) = defined_in(&inputs, &name) {
        return Err(BadInput(format!(
            "service name '{name}' is already taken (defined in {taken_in}); remove that service first or choose another name"
        ))
        .into());
    }

    let service_file = ctx.paths.service_file(&name);
    inputs.services.push(Source::new(
        service_file.display().to_string(),
        text.clone(),
    ));
    let mut writes = vec![FileSpec {
        path: service_file,
        // It may hold an auth_hash: readable by root only, like the secrets.
        contents: text.into_bytes(),
        mode: 0o600,
    }];
    if let Some(env_file) = &args.env_file {
        let secret_text = std::fs::read_to_string(env_file).map_err(|e| {
            BadInput(format!(
                "cannot read --env-file {}: {e}",
                env_file.display()
            ))
        })?;
        let src = Source::new(env_file.display().to_string(), secret_text.clone());
        // A bad file is bad input (exit code 2), like every other problem with the definition.
        parse_env_file(&src).map_err(BadInput::from)?;
        let secrets_file = ctx.paths.secrets_file(&name);
        inputs.secrets.insert(
            name.clone(),
            Source::new(secrets_file.display().to_string(), secret_text.clone()),
        );
        writes.push(FileSpec {
            path: secrets_file,
            contents: secret_text.into_bytes(),
            mode: 0o600,
        });
    }
    let request = Request {
        inputs: &inputs,
        config: ConfigChange {
            writes,
            removes: Vec::new(),
        },
        dry_run: args.dry_run,
    };
    reconcile(ctx, request).await
}

/// Where a service of this name is already defined, if anywhere.
fn defined_in(inputs: &Inputs, name: &str) -> Option<String> {
    let in_profile = profile::parse_profile(&inputs.profile)
        .ok()
        .filter(|p| p.services.iter().any(|s| s.name.get_ref() == name))
        .map(|_| inputs.profile.origin.clone());
    in_profile.or_else(|| {
        inputs
            .services
            .iter()
            .find(|s| Path::new(&s.origin).file_stem().is_some_and(|f| f == name))
            .map(|s| s.origin.clone())
    })
}

fn from_file(path: &Path) -> Result<(String, String), BadInput> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BadInput(format!("cannot read --file {}: {e}", path.display())))?;
    let raw = profile::parse_service(&Source::new(path.display().to_string(), text.clone()))?;
    Ok((raw.name.get_ref().clone(), text))
}

/// Writes the flags as a service file, in the same form a person would write by hand.
fn from_flags(a: &AddServiceArgs) -> Result<(String, String), BadInput> {
    use toml::Value;
    let name = a.name.clone().unwrap_or_default();
    let mut lines: Vec<(&str, Value)> = vec![("name", Value::from(name.clone()))];
    if let Some(i) = &a.image {
        lines.push(("image", Value::from(i.clone())));
    }
    if !a.domains.is_empty() {
        lines.push(("domains", Value::from(a.domains.clone())));
    }
    if let Some(p) = &a.port {
        let n: i64 = p.parse().map_err(|_| {
            BadInput(format!(
                "--port {p:?} is not a number (the port the service listens on, 1-65535)"
            ))
        })?;
        lines.push(("port", Value::from(n)));
    }
    if !a.volumes.is_empty() {
        lines.push(("volumes", Value::from(a.volumes.clone())));
    }
    for (key, v) in [
        ("layout", &a.layout),
        ("access", &a.access),
        ("auth_user", &a.auth_user),
        ("memory", &a.memory),
        ("health_cmd", &a.health_cmd),
        ("health_interval", &a.health_interval),
        ("restart", &a.restart),
    ] {
        if let Some(v) = v {
            lines.push((key, Value::from(v.clone())));
        }
    }
    if let Some(pw_file) = &a.auth_password_file {
        let pw = std::fs::read_to_string(pw_file).map_err(|e| {
            BadInput(format!(
                "cannot read --auth-password-file {}: {e}",
                pw_file.display()
            ))
        })?;
        let pw = pw.trim_end_matches(['\n', '\r']);
        if pw.is_empty() {
            return Err(BadInput(format!(
                "--auth-password-file {} is empty",
                pw_file.display()
            )));
        }
        let hash = bcrypt::hash_with_result(pw, BCRYPT_COST)
            .map_err(|e| BadInput(format!("hashing the password: {e}")))?
            .format_for_version(bcrypt::Version::TwoA);
        lines.push(("auth_hash", Value::from(hash)));
    }
    if let Some(c) = &a.cpus {
        let n: f64 = c
            .parse()
            .map_err(|_| BadInput(format!("--cpus {c:?} is not a number (cores, e.g. 1.5)")))?;
        lines.push(("cpus", Value::from(n)));
    }
    if !a.publish.is_empty() {
        lines.push(("publish", Value::from(a.publish.clone())));
    }
    if !a.command.is_empty() {
        lines.push(("command", Value::from(a.command.clone())));
    }
    let mut text =
        String::from("# Added by `pi-setup add-service`. Edit it, then run `pi-setup apply`.\n");
    for (k, v) in lines {
        text.push_str(&format!("{k} = {v}\n"));
    }
    if !a.env.is_empty() {
        let mut env = toml::Table::new();
        for kv in &a.env {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| BadInput(format!("--env {kv:?} must be KEY=VALUE")))?;
            env.insert(k.to_string(), Value::from(v.to_string()));
        }
        let mut t = toml::Table::new();
        t.insert("env".into(), Value::Table(env));
        text.push('\n');
        text.push_str(&toml::to_string(&t).map_err(|e| BadInput(e.to_string()))?);
    }
    Ok((name, text))
}
