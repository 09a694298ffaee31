//! Volume layouts (`vol-layout/*.toml`): the sub-directories of `/var/vol/<container>`, their
//! owner and mode, and where the container mounts them.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::input::shipped;
use crate::input::source::{ConfigError, Source};
use crate::model::Mount;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLayout {
    #[serde(default)]
    description: Option<String>,
    #[serde(rename = "dir")]
    dirs: Vec<RawDir>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDir {
    path: Spanned<String>,
    /// `uid:gid`, numeric (the container's users do not exist on the host).
    #[serde(default)]
    owner: Option<Spanned<String>>,
    /// Octal, e.g. `"0750"`.
    #[serde(default)]
    mode: Option<Spanned<String>>,
    /// Mount this directory at this path in the container.
    #[serde(default)]
    mount: Option<Spanned<String>>,
    #[serde(default)]
    read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Layout {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    /// The first entry is always the volume root `.`.
    pub(crate) dirs: Vec<LayoutDir>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LayoutDir {
    /// Relative to `/var/vol/<container>`; `.` is the directory itself.
    pub(crate) path: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) mode: u32,
    pub(crate) mount: Option<String>,
    pub(crate) read_only: bool,
}

impl Layout {
    pub(crate) fn mounts(&self) -> Vec<Mount> {
        self.dirs
            .iter()
            .filter_map(|d| {
                d.mount.as_ref().map(|t| Mount {
                    sub: d.path.clone(),
                    target: t.clone(),
                    read_only: d.read_only,
                    // The layout's directories get theirs from the layout itself.
                    owner: None,
                    mode: None,
                })
            })
            .collect()
    }

    /// The root entry (owner/mode of `/var/vol/<container>` itself).
    pub(crate) fn root(&self) -> LayoutDir {
        self.dirs.first().cloned().unwrap_or(LayoutDir {
            path: ".".into(),
            uid: 0,
            gid: 0,
            mode: 0o755,
            mount: None,
            read_only: false,
        })
    }
}

/// All known layouts by name.
#[derive(Debug, Clone, Default)]
pub(crate) struct Layouts(BTreeMap<String, Layout>);

impl Layouts {
    /// The layouts shipped in the binary.
    pub(crate) fn shipped() -> Result<Layouts, ConfigError> {
        let mut map = BTreeMap::new();
        for (name, text) in shipped::LAYOUTS {
            let src = Source::new(format!("vol-layout/{name}.toml"), *text);
            map.insert(name.to_string(), parse(name, &src)?);
        }
        Ok(Layouts(map))
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Layout> {
        self.0.get(name)
    }

    pub(crate) fn names(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

pub(crate) fn parse(name: &str, src: &Source) -> Result<Layout, ConfigError> {
    let raw: RawLayout = toml::from_str(&src.text).map_err(|e| src.toml_error(&e))?;
    let mut dirs: Vec<LayoutDir> = Vec::new();
    for d in raw.dirs {
        let path = d.path.get_ref().trim_end_matches('/').to_string();
        let bad_path = path.starts_with('/')
            || path.is_empty()
            || path.split('/').any(|p| p == ".." || p.is_empty())
            || (path != "." && path.split('/').any(|p| p == "."));
        if bad_path {
            return Err(src.error_at(
                d.path.span(),
                format!("dir path {path:?} must be '.' or a relative path inside the volume"),
            ));
        }
        if dirs.iter().any(|o| o.path == path) {
            return Err(src.error_at(d.path.span(), format!("dir {path:?} is listed twice")));
        }
        if dirs.is_empty() && path != "." {
            return Err(src.error_at(
                d.path.span(),
                "the first dir must be \".\", the volume directory itself",
            ));
        }
        let (uid, gid) = match &d.owner {
            None => (0, 0),
            Some(o) => parse_owner(o.get_ref()).ok_or_else(|| {
                src.error_at(
                    o.span(),
                    format!("owner {:?} must be numeric uid:gid", o.get_ref()),
                )
            })?,
        };
        let mode = match &d.mode {
            None => 0o755,
            Some(m) => u32::from_str_radix(m.get_ref(), 8)
                .ok()
                .filter(|v| *v <= 0o7777)
                .ok_or_else(|| {
                    src.error_at(
                        m.span(),
                        format!("mode {:?} must be octal, e.g. \"0750\"", m.get_ref()),
                    )
                })?,
        };
        let mount = match &d.mount {
            None => None,
            Some(m)
                if m.get_ref().starts_with('/') && !m.get_ref().split('/').any(|p| p == "..") =>
            {
                Some(m.get_ref().clone())
            }
            Some(m) => {
                return Err(src.error_at(
                    m.span(),
                    format!("mount {:?} must be an absolute container path", m.get_ref()),
                ))
            }
        };
        dirs.push(LayoutDir {
            path,
            uid,
            gid,
            mode,
            mount,
            read_only: d.read_only,
        });
    }
    if dirs.is_empty() {
        return Err(src.error("a layout needs at least the dir \".\""));
    }
    Ok(Layout {
        name: name.to_string(),
        description: raw.description,
        dirs,
    })
}

fn parse_owner(s: &str) -> Option<(u32, u32)> {
    let (u, g) = s.split_once(':')?;
    Some((u.parse().ok()?, g.parse().ok()?))
}
