//! Config text with its origin, and errors that point into it (file:line:column plus the line).

use std::fmt;
use std::ops::Range;

/// A config document and where it came from (a path, or `<embedded>/NAME` for shipped files).
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub(crate) origin: String,
    pub(crate) text: String,
}

impl Source {
    pub(crate) fn new(origin: impl Into<String>, text: impl Into<String>) -> Self {
        Source {
            origin: origin.into(),
            text: text.into(),
        }
    }

    /// An error located at a byte span of this document.
    pub(crate) fn error_at(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        let (line, col) = line_col(&self.text, span.start);
        let line_text = self.text.lines().nth(line - 1).unwrap_or("").to_string();
        ConfigError {
            origin: self.origin.clone(),
            line: Some(line),
            col: Some(col),
            line_text: Some(line_text),
            message: message.into(),
        }
    }

    /// An error about the document as a whole (no position).
    pub(crate) fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            origin: self.origin.clone(),
            line: None,
            col: None,
            line_text: None,
            message: message.into(),
        }
    }

    pub(crate) fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let message = e.message().trim().to_string();
        match e.span() {
            Some(span) => self.error_at(span, message),
            None => self.error(message),
        }
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// A problem in a config document; `Display` gives `file:line:col: message` and the line itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigError {
    pub(crate) origin: String,
    pub(crate) line: Option<usize>,
    pub(crate) col: Option<usize>,
    pub(crate) line_text: Option<String>,
    pub(crate) message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.col) {
            (Some(l), Some(c)) => write!(f, "{}:{}:{}: {}", self.origin, l, c, self.message)?,
            _ => write!(f, "{}: {}", self.origin, self.message)?,
        }
        if let (Some(l), Some(text)) = (self.line, &self.line_text) {
            write!(f, "\n  {l:>4} | {text}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let s = Source::new("p.toml", "a = 1\nbb = 2\n");
        let e = s.error_at(9..10, "bad");
        assert_eq!((e.line, e.col), (Some(2), Some(4)));
        assert_eq!(e.to_string(), "p.toml:2:4: bad\n     2 | bb = 2");
    }
}
