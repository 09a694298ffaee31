//! Command handlers, one per sub-command, and what they share.

pub(crate) mod add_service;
pub(crate) mod apply;
pub(crate) mod backup;
pub(crate) mod heal;
pub(crate) mod image;
pub(crate) mod host_setup;
pub(crate) mod images;
pub(crate) mod install;
pub(crate) mod remove_service;
pub(crate) mod run_job;
pub(crate) mod status;
pub(crate) mod uninstall;
pub(crate) mod update;

use std::path::PathBuf;

use std::time::Duration;

use anyhow::Result;
use clap::CommandFactory;

use crate::cli::Cli;
use crate::desired::ObjectNames;
use crate::error::BadInput;
use crate::host::paths::Paths;
use crate::lock;
use crate::model::Name;

/// What every command needs: where host paths are, and how Docker objects are named.
pub(crate) struct Context {
    pub(crate) paths: Paths,
    pub(crate) names: ObjectNames,
    /// How systemd units call this pi-setup: its path plus --root/--instance when given.
    pub(crate) exec: String,
}

impl Context {
    pub(crate) fn new(cli: &Cli) -> Result<Context> {
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
        let paths = Paths::new(root);
        // Docker objects are not under --root: without an instance of its own, a sandbox
        // would plan against (and remove) the real appliance's containers.
        if !paths.is_system() && instance.is_none() {
            return Err(BadInput(format!(
                "--root {} needs --instance NAME too, so its containers and network stay apart from the real appliance's",
                paths.root.display()
            ))
            .into());
        }
        let binary = std::env::current_exe().map_or_else(
            |_| "/usr/local/bin/pi-setup".into(),
            |p| p.display().to_string(),
        );
        // The units must call pi-setup the way it was called.
        let mut args = vec![binary];
        if !paths.is_system() {
            args.extend(["--root".to_string(), paths.root.display().to_string()]);
        }
        if let Some(i) = &instance {
            args.extend(["--instance".to_string(), i.clone()]);
        }
        let exec = args
            .iter()
            .map(|a| systemd_quote(a))
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Context {
            paths,
            names: ObjectNames { instance },
            exec,
        })
    }

    /// Writing to the real system paths needs root; under `--root` it may not.
    pub(crate) fn require_root(&self) -> Result<()> {
        if self.paths.is_system() && !crate::host::is_root() {
            return Err(BadInput(
                "this command changes /etc and /var: run it as root (sudo pi-setup ...), or try it under --root DIR".into(),
            )
            .into());
        }
        Ok(())
    }

    /// For a command that changes state (not a dry run): checks for root and takes the lock.
    /// Taken before the configuration is read, so two commands cannot plan from the same stale
    /// view and undo each other; held until the command returns.
    pub(crate) fn lock(
        &self,
        command: &str,
        dry_run: bool,
        wait: Duration,
    ) -> Result<Option<lock::Lock>> {
        if dry_run {
            return Ok(None);
        }
        self.require_root()?;
        Ok(Some(lock::acquire(&self.paths.lock_file(), command, wait)?))
    }
}

/// One argument of a systemd `ExecStart=` line: as it is when it holds nothing systemd would
/// read specially, else in double quotes with `\\` and `"` escaped; `%` (specifiers) and `$`
/// (variables) are doubled either way. A `--root` with a space or a `%` stays one argument.
pub(crate) fn systemd_quote(arg: &str) -> String {
    let escaped = arg.replace('%', "%%").replace('$', "$$");
    let plain = !escaped.is_empty()
        && escaped
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:,=@%$".contains(c));
    if plain {
        return escaped;
    }
    let mut out = String::from("\"");
    for c in escaped.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// How long a command waits for another one to finish before giving up.
pub(crate) const LOCK_WAIT: Duration = Duration::from_secs(10);

pub(crate) fn completions(shell: clap_complete::Shell) {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "pi-setup", &mut std::io::stdout());
}

#[cfg(test)]
mod tests {
    use super::systemd_quote;

    #[test]
    fn unit_arguments_are_quoted_the_way_systemd_reads_them() {
        assert_eq!(
            systemd_quote("/usr/local/bin/pi-setup"),
            "/usr/local/bin/pi-setup"
        );
        assert_eq!(systemd_quote("/srv/my appliance"), "\"/srv/my appliance\"");
        assert_eq!(systemd_quote("/srv/100%"), "/srv/100%%");
        assert_eq!(systemd_quote("/srv/$HOME"), "/srv/$$HOME");
        assert_eq!(systemd_quote("/a\"b\\c"), "\"/a\\\"b\\\\c\"");
        assert_eq!(
            systemd_quote("/a\nExecStartPre=/bin/evil"),
            "\"/a\\nExecStartPre=/bin/evil\""
        );
    }
}
