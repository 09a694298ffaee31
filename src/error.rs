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
