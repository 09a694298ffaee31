//! Errors where they meet the exit code: `BadInput` (exit 2, nothing changed) for anything the
//! user gave that cannot be used; everything else is a failure (exit 1).

use std::fmt;

use crate::input::source::ConfigError;

/// Invalid input: exits with code 2 and changes nothing.
#[derive(Debug)]
pub(crate) struct BadInput(pub(crate) String);

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

impl From<Vec<ConfigError>> for BadInput {
    fn from(errors: Vec<ConfigError>) -> Self {
        let n = errors.len();
        let mut s = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        if n > 1 {
            s.push_str(&format!("\n{n} problems found; nothing was changed"));
        }
        BadInput(s)
    }
}

impl From<ConfigError> for BadInput {
    fn from(e: ConfigError) -> Self {
        BadInput(e.to_string())
    }
}

/// The exit codes: a contract, documented in the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    Ok = 0,
    /// Something failed while working.
    Failed = 1,
    /// Invalid usage or configuration; nothing was changed.
    BadInput = 2,
    /// Not a failure: `update --check` found updates to make.
    Pending = 3,
}

/// `update --check` found updates (exit 3): not an error, and printed by the command itself.
#[derive(Debug)]
pub(crate) struct Pending;

impl fmt::Display for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("updates are available")
    }
}

impl std::error::Error for Pending {}

impl Exit {
    /// What an error means for the exit code. Handlers add context as an error travels up
    /// ("step 3 of 9 failed: …"), so a `BadInput` may sit anywhere in the chain: it still
    /// means nothing was changed.
    pub(crate) fn of(e: &anyhow::Error) -> Exit {
        if e.chain()
            .any(<dyn std::error::Error + 'static>::is::<BadInput>)
        {
            Exit::BadInput
        } else {
            Exit::Failed
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}

/// Prints a command's error with every cause, once each, and says what it means.
pub(crate) fn report(e: &anyhow::Error) -> Exit {
    if e.is::<Pending>() {
        return Exit::Pending;
    }
    eprintln!("error: {e}");
    for cause in e.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    let exit = Exit::of(e);
    if exit == Exit::BadInput {
        eprintln!("nothing was changed");
    }
    exit
}
