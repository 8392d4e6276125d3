//! Errors and warnings about a config file, each at a line and column, with
//! a hint that says what to do.

use std::fmt::Write as _;

use serde::Serialize;

use super::model::Location;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    #[serde(flatten)]
    pub location: Location,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn error(location: Location, message: String) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            location,
            message,
            hint: None,
        }
    }

    pub fn warning(location: Location, message: String) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            location,
            message,
            hint: None,
        }
    }

    pub fn new(severity: Severity, location: Location, message: String) -> Diagnostic {
        Diagnostic {
            severity,
            location,
            message,
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// The problems found in one file, in the order of the file.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Diagnostics(Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    pub fn items(&self) -> &[Diagnostic] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn errors(&self) -> usize {
        self.0.iter().filter(|d| d.is_error()).count()
    }

    pub fn warnings(&self) -> usize {
        self.0.len() - self.errors()
    }

    /// Sort by position, keeping the order of problems found at one place.
    pub fn sort(&mut self) {
        self.0.sort_by_key(|d| (d.location.line, d.location.column));
    }

    /// `path:line:col: error: message`, the source line with a caret under
    /// the column, and the hint — the shape compilers use, so editors and
    /// terminals can jump to it.
    pub fn render(&self, path: &str, source: &str) -> String {
        let lines: Vec<&str> = source.lines().collect();
        let mut out = String::new();
        for d in &self.0 {
            let word = match d.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            let Location { line, column } = d.location;
            let _ = writeln!(out, "{path}:{line}:{column}: {word}: {}", d.message);
            if let Some(text) = line.checked_sub(1).and_then(|i| lines.get(i)) {
                let gutter = line.to_string().len();
                let _ = writeln!(out, "{:gutter$} |", "");
                let _ = writeln!(out, "{line} | {text}");
                let pad: String = text
                    .chars()
                    .take(column.saturating_sub(1))
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                let _ = writeln!(out, "{:gutter$} | {pad}^", "");
            }
            if let Some(hint) = &d.hint {
                let _ = writeln!(out, "  = hint: {hint}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_a_compiler() {
        let mut d = Diagnostics::default();
        d.push(
            Diagnostic::error(Location { line: 2, column: 5 }, "bad".into()).with_hint("fix it"),
        );
        let text = d.render(".cirun.yml", "a:\n  - b\n");
        assert_eq!(
            text,
            ".cirun.yml:2:5: error: bad\n  |\n2 |   - b\n  |     ^\n  = hint: fix it\n"
        );
    }
}
