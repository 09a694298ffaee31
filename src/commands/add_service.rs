//! `pi-setup add-service`: turns flags (or a TOML file) into a service definition, checks it
//! against everything already defined, persists it to `/etc/pi-setup/services/NAME.toml`, and
//! reconciles: volume, container, route, graceful gateway reload.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::cli::AddServiceArgs;
use crate::commands::{Context, LOCK_WAIT};
use crate::desired::FileSpec;
use crate::error::BadInput;
use crate::host;
use crate::input::layout::Layouts;
use crate::input::raw::{self, RawService};
use crate::input::source::{ConfigError, Source};
use crate::input::{parse_env_file, Inputs};
use crate::model::{self, Name, GATEWAY};
use crate::plan::ConfigChange;
use crate::reconcile::{reconcile, Request};

/// bcrypt cost: Caddy checks the hash on every request, and a Pi 4 takes ~60 ms at 10.
const BCRYPT_COST: u32 = 10;

pub(crate) async fn add_service(ctx: &Context, args: &AddServiceArgs) -> Result<()> {
    if args.old_command.is_some() {
        return Err(BadInput(
            "--command is gone: give the command last, after `--`, so no option can end up inside it \
             (pi-setup add-service NAME --image IMAGE [options] -- COMMAND ARG...)"
                .into(),
        )
        .into());
    }
    let _lock = ctx.lock("add-service", args.dry_run, LOCK_WAIT)?;
    let mut inputs = Inputs::read(None, &ctx.paths)?;
    let def = match &args.file {
        Some(f) => from_file(f)?,
        None => from_flags(args)?,
    };
    let name = def.name.clone();
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
    check(&inputs, &def)?;

    let before = inputs.clone();
    let service_file = ctx.paths.service_file(&name);
    inputs.services.push(Source::new(
        service_file.display().to_string(),
        def.source.text.clone(),
    ));
    let mut writes = vec![FileSpec {
        path: service_file,
        // It may hold an auth_hash: readable by root only, like the secrets.
        contents: def.source.text.into_bytes(),
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
    let written: Vec<PathBuf> = writes.iter().map(|w| w.path.clone()).collect();
    let request = Request {
        inputs: &inputs,
        config: ConfigChange {
            writes,
            removes: Vec::new(),
        },
        dry_run: args.dry_run,
    };
    // Made by this run (none of it is data yet) unless it was there before.
    let volume = ctx.paths.vol(&name);
    let new_volume = (!volume.exists()).then_some(volume);
    match reconcile(ctx, request).await {
        Err(failure) if !args.dry_run => {
            let made = Made {
                files: written,
                volume: new_volume,
            };
            Err(forget(ctx, &before, &name, made, failure).await)
        }
        result => result,
    }
}

/// What a run of add-service may have left on the host.
struct Made {
    /// The definition files it wrote (if it got that far).
    files: Vec<PathBuf>,
    /// `/var/vol/NAME`, when it did not exist before the run.
    volume: Option<PathBuf>,
}

/// A new service whose first apply failed (Docker refused its container, say) is not kept:
/// left in place, its definition would make every later `add-service` and `apply` fail the
/// same way. Removes the files this run wrote, then reconciles without them (best effort), so
/// whatever was half-created goes too.
async fn forget(
    ctx: &Context,
    before: &Inputs,
    name: &str,
    made: Made,
    failure: anyhow::Error,
) -> anyhow::Error {
    let mut removed = Vec::new();
    for path in &made.files {
        match host::remove_file(path) {
            Ok(true) => removed.push(path.display().to_string()),
            Ok(false) => {}
            Err(e) => {
                let path = path.display();
                return failure.context(format!(
                    "adding service '{name}' failed, and its definition could not be removed \
                     ({e}): delete {path} by hand, then run `pi-setup apply`"
                ));
            }
        }
    }
    // Nothing persisted: the run stopped before the definition was written (a pull failed,
    // say), so there is nothing to undo.
    if removed.is_empty() {
        return failure;
    }
    let undo = Request {
        inputs: before,
        config: ConfigChange::default(),
        dry_run: false,
    };
    let kept = format!(
        "adding service '{name}' failed, so the definition was not kept (removed {})",
        removed.join(", ")
    );
    if let Err(e) = reconcile(ctx, undo).await {
        return failure.context(format!(
            "{kept}; removing what was half-created failed too ({e:#}): run `pi-setup apply`"
        ));
    }
    // The volume directory this run created goes too, unless the container got as far as
    // writing something into it.
    if let Some(v) = made.volume.filter(|v| host::tree_size(v) == 0) {
        let _ = host::remove_tree(&v);
    }
    failure.context(format!("{kept}; what was half-created is removed again"))
}

/// Validates the new definition together with everything already defined, so that its problems
/// point at what was given: the flag, or the line of `--file`. Problems elsewhere (a broken
/// service file) are left to `reconcile`, which reports them as for any command.
fn check(inputs: &Inputs, def: &Definition) -> Result<(), BadInput> {
    let raw = raw::parse_service(&def.source).map_err(|e| BadInput(def.explain(&e)))?;
    let (Ok(raw_profile), Ok(layouts)) = (raw::parse_profile(&inputs.profile), Layouts::shipped())
    else {
        return Ok(());
    };
    let mut all: Vec<(&Source, RawService)> = inputs
        .services
        .iter()
        .filter_map(|s| raw::parse_service(s).ok().map(|r| (s, r)))
        .collect();
    all.push((&def.source, raw));
    let host = crate::input::this_host();
    let Err(errors) = model::build(&inputs.profile, raw_profile, all, &layouts, &host) else {
        return Ok(());
    };
    let mine: Vec<String> = errors
        .iter()
        .filter(|e| e.origin == def.source.origin)
        .map(|e| def.explain(e))
        .collect();
    match mine.len() {
        0 => Ok(()),
        1 => Err(BadInput(mine.concat())),
        n => Err(BadInput(format!("{}\n{n} problems found", mine.join("\n")))),
    }
}

/// Where a service of this name is already defined, if anywhere.
fn defined_in(inputs: &Inputs, name: &str) -> Option<String> {
    let in_profile = raw::parse_profile(&inputs.profile)
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

/// A new service definition: the text to store, with an origin for messages.
struct Definition {
    name: String,
    /// Its origin is the `--file` path, or `FLAGS` for one written from flags.
    source: Source,
    /// For a definition written from flags: where in `source` each flag's value went.
    flags: Vec<FlagValue>,
}

/// The origin of a definition written from flags (there is no file yet to point to).
const FLAGS: &str = "the command line";

/// One value given on the command line, and the (line, column) range it occupies in the
/// generated text, as `ConfigError` counts them.
struct FlagValue {
    flag: &'static str,
    value: String,
    start: (usize, usize),
    end: (usize, usize),
}

impl Definition {
    /// A problem in terms of what the user gave: `--volume "../x:/y": invalid volume ...` for a
    /// flag, `FILE:line:col: ...` for `--file`.
    fn explain(&self, e: &ConfigError) -> String {
        if self.source.origin != FLAGS {
            return e.to_string();
        }
        let Some(pos) = e.line.zip(e.col) else {
            return e.message.clone();
        };
        let given = self
            .flags
            .iter()
            .find(|f| f.start <= pos && pos < f.end)
            .or_else(|| self.flags.iter().find(|f| f.start.0 == pos.0));
        match given {
            Some(f) => format!("{} {:?}: {}", f.flag, f.value, e.message),
            None => e.message.clone(),
        }
    }
}

fn from_file(path: &Path) -> Result<Definition, BadInput> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BadInput(format!("cannot read --file {}: {e}", path.display())))?;
    let source = Source::new(path.display().to_string(), text);
    let raw = raw::parse_service(&source)?;
    Ok(Definition {
        name: raw.name.get_ref().clone(),
        source,
        flags: Vec::new(),
    })
}

/// Service-file text being written from flags, remembering which flag each value came from.
struct FlagText {
    text: String,
    flags: Vec<FlagValue>,
}

impl FlagText {
    fn pos(&self) -> (usize, usize) {
        let line = self.text.matches('\n').count() + 1;
        let col = self
            .text
            .rsplit('\n')
            .next()
            .map_or(0, |l| l.chars().count())
            + 1;
        (line, col)
    }

    /// `key = value`; the whole line belongs to the flag.
    fn scalar(&mut self, key: &str, flag: &'static str, given: &str, value: toml::Value) {
        let start = (self.pos().0, 1);
        self.text.push_str(&format!("{key} = {value}"));
        let end = self.pos();
        self.text.push('\n');
        self.flags.push(FlagValue {
            flag,
            value: given.to_string(),
            start,
            end,
        });
    }

    /// `key = ["a", "b"]`; each element belongs to one use of a repeatable flag.
    fn array(&mut self, key: &str, flag: &'static str, values: &[String]) {
        self.text.push_str(&format!("{key} = ["));
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            let start = self.pos();
            self.text
                .push_str(&toml::Value::from(v.clone()).to_string());
            let end = self.pos();
            self.flags.push(FlagValue {
                flag,
                value: v.clone(),
                start,
                end,
            });
        }
        self.text.push_str("]\n");
    }
}

/// Writes the flags as a service file, in the same form a person would write by hand.
fn from_flags(a: &AddServiceArgs) -> Result<Definition, BadInput> {
    use toml::Value;
    let name = a.name.clone().unwrap_or_default();
    let mut t = FlagText {
        text: String::from(
            "# Added by `pi-setup add-service`. Edit it, then run `pi-setup apply`.\n",
        ),
        flags: Vec::new(),
    };
    t.scalar("name", "NAME", &name, Value::from(name.clone()));
    if let Some(i) = &a.image {
        t.scalar("image", "--image", i, Value::from(i.clone()));
    }
    if !a.domains.is_empty() {
        t.array("domains", "--domain", &a.domains);
    }
    if let Some(p) = &a.port {
        let n: i64 = p.parse().map_err(|_| {
            BadInput(format!(
                "--port {p:?} is not a number (the port the service listens on, 1-65535)"
            ))
        })?;
        t.scalar("port", "--port", p, Value::from(n));
    }
    if !a.volumes.is_empty() {
        t.array("volumes", "--volume", &a.volumes);
    }
    for (key, flag, v) in [
        ("layout", "--layout", &a.layout),
        ("access", "--access", &a.access),
        ("auth_user", "--auth-user", &a.auth_user),
        ("memory", "--memory", &a.memory),
        ("health_cmd", "--health-cmd", &a.health_cmd),
        ("health_interval", "--health-interval", &a.health_interval),
        ("restart", "--restart", &a.restart),
        ("user", "--user", &a.user),
    ] {
        if let Some(v) = v {
            t.scalar(key, flag, v, Value::from(v.clone()));
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
        let shown = pw_file.display().to_string();
        t.scalar(
            "auth_hash",
            "--auth-password-file",
            &shown,
            Value::from(hash),
        );
    }
    if let Some(c) = &a.cpus {
        let n: f64 = c
            .parse()
            .map_err(|_| BadInput(format!("--cpus {c:?} is not a number (cores, e.g. 1.5)")))?;
        t.scalar("cpus", "--cpus", c, Value::from(n));
    }
    if !a.publish.is_empty() {
        t.array("publish", "--publish", &a.publish);
    }
    if !a.command.is_empty() {
        t.array("command", "--", &a.command);
    }
    if !a.env.is_empty() {
        t.text.push_str("\n[env]\n");
        for kv in &a.env {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| BadInput(format!("--env {kv:?} must be KEY=VALUE")))?;
            let mut entry = toml::Table::new();
            entry.insert(k.to_string(), Value::from(v.to_string()));
            let line = toml::to_string(&entry).map_err(|e| BadInput(e.to_string()))?;
            let start = (t.pos().0, 1);
            t.text.push_str(line.trim_end_matches('\n'));
            let end = t.pos();
            t.text.push('\n');
            t.flags.push(FlagValue {
                flag: "--env",
                value: kv.clone(),
                start,
                end,
            });
        }
    }
    Ok(Definition {
        name,
        source: Source::new(FLAGS, t.text),
        flags: t.flags,
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn from_args(args: &[&str]) -> Definition {
        let argv = ["pi-setup", "add-service"].iter().chain(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::AddService(a) => from_flags(&a).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_in_the_text_written_from_flags_name_the_flag() {
        let d = from_args(&[
            "x",
            "--image",
            "i:1",
            "--volume",
            "a:/a",
            "--volume",
            "../b:/b",
            "--env",
            "A=1",
            "--",
            "sh",
            "-c",
            "--dry-run",
        ]);
        assert_eq!(
            d.source.text,
            "# Added by `pi-setup add-service`. Edit it, then run `pi-setup apply`.\n\
             name = \"x\"\nimage = \"i:1\"\nvolumes = [\"a:/a\", \"../b:/b\"]\n\
             command = [\"sh\", \"-c\", \"--dry-run\"]\n\n[env]\nA = \"1\"\n"
        );
        let raw = raw::parse_service(&d.source).unwrap();
        let at = |span: std::ops::Range<usize>| d.explain(&d.source.error_at(span, "bad"));
        assert_eq!(at(raw.name.span()), "NAME \"x\": bad");
        assert_eq!(
            at(raw.image.as_ref().unwrap().span()),
            "--image \"i:1\": bad"
        );
        assert_eq!(at(raw.volumes[0].span()), "--volume \"a:/a\": bad");
        assert_eq!(at(raw.volumes[1].span()), "--volume \"../b:/b\": bad");
        assert_eq!(at(raw.env["A"].span()), "--env \"A=1\": bad");
        // Without a position (a duplicate across services), the message stands alone.
        assert_eq!(d.explain(&d.source.error("dup")), "dup");
    }

    #[test]
    fn errors_in_a_file_keep_its_position() {
        let d = Definition {
            name: "x".into(),
            source: Source::new("/tmp/x.toml", "name = \"x\"\nport = 0\n"),
            flags: Vec::new(),
        };
        let e = d.source.error_at(18..19, "bad");
        assert_eq!(d.explain(&e), "/tmp/x.toml:2:8: bad\n     2 | port = 0");
    }
}
