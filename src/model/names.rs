//! ObjectNames that end up in host paths, container names and the gateway's config: a service name
//! (a DNS label), a domain, an email address. Each type can only hold a checked value.

use std::fmt;

/// A DNS label usable as container host name and directory name: `[a-z0-9-]{1,63}`, no leading
/// or trailing `-`. It can never hold `/` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Name(pub(super) String);

impl Name {
    pub(crate) fn parse(s: &str) -> Result<Name, String> {
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        if s.contains('/') || s.contains("..") {
            return Err("must not contain '/' or '..'".into());
        }
        if s.len() > 63 {
            return Err(format!("is {} characters long; at most 63", s.len()));
        }
        if s.chars().any(|c| c.is_ascii_uppercase()) {
            return Err("must be lower case".into());
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(format!(
                "contains {c:?}; use only a-z, 0-9 and '-' (a DNS label)"
            ));
        }
        if s.starts_with('-') || s.ends_with('-') {
            return Err("must not start or end with '-'".into());
        }
        Ok(Name(s.to_string()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An email address strict enough to go into the gateway's config as one bare token:
/// `local@domain`, the local part 1-64 of `A-Z a-z 0-9 . _ % + -` (no leading, trailing or
/// double dot), the domain a host name with at least one dot. Anything else (quotes, braces,
/// backslashes, white space, `<<`) could end the token or the block it is in.
pub(crate) fn check_email(v: &str) -> Result<(), String> {
    let Some((local, domain)) = v.split_once('@') else {
        return Err("it has no '@'".into());
    };
    if v.len() > 254 {
        return Err(format!("it is {} characters long; at most 254", v.len()));
    }
    if local.is_empty() || local.len() > 64 {
        return Err("the part before '@' must be 1-64 characters".into());
    }
    if let Some(ch) = local
        .chars()
        .find(|ch| !(ch.is_ascii_alphanumeric() || "._%+-".contains(*ch)))
    {
        return Err(format!(
            "the part before '@' contains {ch:?}; use only A-Z a-z 0-9 . _ % + -"
        ));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err("the part before '@' must not start or end with '.', or hold '..'".into());
    }
    if !domain.contains('.') {
        return Err(format!("the domain {domain:?} has no '.'"));
    }
    Domain::parse(&domain.to_ascii_lowercase())
        .map(|_| ())
        .map_err(|why| format!("the domain {domain:?} {why}"))
}

/// A host name the gateway routes by (`cloud.example.com`, `nas.local`); lower case.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Domain(String);

impl Domain {
    pub(crate) fn parse(s: &str) -> Result<Domain, String> {
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        if s.len() > 253 {
            return Err(format!("is {} characters long; at most 253", s.len()));
        }
        if s.chars().any(|c| c.is_ascii_uppercase()) {
            return Err("must be lower case".into());
        }
        if s.contains("://") || s.contains('/') || s.contains(':') {
            return Err("must be a bare host name, without scheme, port or path".into());
        }
        for label in s.split('.') {
            if label.is_empty() {
                return Err("has an empty label (two dots, or a leading/trailing dot)".into());
            }
            if label.len() > 63 {
                return Err(format!("label {label:?} is longer than 63 characters"));
            }
            if let Some(c) = label
                .chars()
                .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
            {
                return Err(format!("contains {c:?}; use only a-z, 0-9, '-' and '.'"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(format!("label {label:?} starts or ends with '-'"));
            }
        }
        Ok(Domain(s.to_string()))
    }

    /// ObjectNames no public CA will certify: Caddy serves them with its own CA (`tls internal`).
    pub(crate) fn is_lan_only(&self) -> bool {
        let d = self.0.as_str();
        !d.contains('.')
            || [
                ".local",
                ".lan",
                ".home.arpa",
                ".internal",
                ".test",
                ".localhost",
            ]
            .iter()
            .any(|s| d.ends_with(s))
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
