//! Finds and reads the configuration: the profile (a shipped name, a path, or the one in force
//! on the host) and the service files, then hands them to `model` for validation.

use std::fmt;
use std::path::Path;

use crate::layout::Layouts;
use crate::model::{self, Model};
use crate::paths::Paths;
use crate::profile;
use crate::shipped;
use crate::source::{ConfigError, Source};

/// Invalid input: exits with code 2 and changes nothing.
#[derive(Debug)]
pub struct BadInput(pub String);

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

/// `--profile` given: a path if it names an existing file or looks like one, else a shipped
/// name. Not given: the profile in force on the host, else the shipped default.
pub fn profile_source(arg: Option<&str>, paths: &Paths) -> Result<Source, BadInput> {
    let read = |p: &Path| {
        std::fs::read_to_string(p)
            .map(|t| Source::new(p.display().to_string(), t))
            .map_err(|e| BadInput(format!("cannot read profile {}: {e}", p.display())))
    };
    match arg {
        Some(a) if a.contains('/') || a.ends_with(".toml") || Path::new(a).is_file() => {
            read(Path::new(a))
        }
        Some(name) => shipped::profile(name)
            .map(|t| Source::new(format!("<shipped>/profiles/{name}.toml"), t))
            .ok_or_else(|| {
                let known: Vec<&str> = shipped::PROFILES.iter().map(|(n, _)| *n).collect();
                BadInput(format!(
                    "no shipped profile named {name:?} (shipped: {}); to use a file, give its path",
                    known.join(", ")
                ))
            }),
        None if paths.profile_file().is_file() => read(&paths.profile_file()),
        None => Ok(Source::new(
            "<shipped>/profiles/default.toml",
            shipped::profile("default").expect("the default profile is shipped"),
        )),
    }
}

/// Reads `/etc/pi-setup/services/*.toml` (sorted by name).
pub fn service_sources(paths: &Paths) -> Result<Vec<Source>, BadInput> {
    let files = crate::host::files_with_suffix(&paths.services_dir(), ".toml")
        .map_err(|e| BadInput(e.to_string()))?;
    files
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .map(|t| Source::new(p.display().to_string(), t))
                .map_err(|e| BadInput(format!("cannot read {}: {e}", p.display())))
        })
        .collect()
}

/// Parses and validates everything; all problems are reported together.
pub fn load(profile_src: &Source, service_srcs: &[Source]) -> Result<Model, BadInput> {
    let layouts = Layouts::shipped()?;
    let mut errors = Vec::new();
    let raw = profile::parse_profile(profile_src).map_err(|e| vec![e]);
    let mut extra = Vec::new();
    for s in service_srcs {
        match profile::parse_service(s) {
            Ok(r) => {
                let file_stem = Path::new(&s.origin)
                    .file_stem()
                    .map(|x| x.to_string_lossy().into_owned());
                if file_stem.as_deref() != Some(r.name.get_ref().as_str()) {
                    errors.push(s.error_at(
                        r.name.span(),
                        format!("the service in this file is named {:?}; the file must be named {:?}.toml", r.name.get_ref(), r.name.get_ref()),
                    ));
                }
                extra.push((s.clone(), r));
            }
            Err(e) => errors.push(e),
        }
    }
    let raw = match raw {
        Ok(r) => r,
        Err(mut e) => {
            e.append(&mut errors);
            return Err(e.into());
        }
    };
    match model::build(profile_src, raw, extra, &layouts) {
        Ok(m) if errors.is_empty() => Ok(m),
        Ok(_) => Err(errors.into()),
        Err(mut e) => {
            errors.append(&mut e);
            Err(errors.into())
        }
    }
}
