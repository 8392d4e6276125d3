//! Errors and warnings about a config file, each at a line and column, with
//! a hint that says what to do.

use std::fmt::Write as _;

use serde::Serialize;

use super::model::Location;
use crate::text::clip;

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

/// Most problems one file reports. Past this, more lines help nobody (the
/// first ones are the ones to fix), while a hostile file could make
/// millions: the rest are counted and summed up in one last line.
pub const MAX_SHOWN: usize = 100;

/// Most characters of a message or hint. A message quotes values from the
/// file; a value can be a whole megabyte long.
pub const MAX_MESSAGE_CHARS: usize = 1000;

/// "Did you mean" look-ups one file may make. Each compares a word with a
/// list; thousands of unknown words against thousands of policy ids would
/// be millions of comparisons, and nobody reads past the first few hints.
pub const MAX_SUGGESTIONS: usize = 20;

/// The problems found in one file, in the order of the file: at most
/// [`MAX_SHOWN`] of them, then one line saying how many more there are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Diagnostics {
    /// The problems shown, then the summary when some were left out.
    shown: Vec<Diagnostic>,
    omitted: Omitted,
    /// "Did you mean" look-ups made so far.
    suggested: usize,
}

/// What was counted but not kept.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Omitted {
    errors: usize,
    warnings: usize,
    /// Where the first problem left out is.
    first_at: Location,
}

impl Omitted {
    fn total(self) -> usize {
        self.errors + self.warnings
    }
}

impl Serialize for Diagnostics {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.shown.serialize(s)
    }
}

impl Diagnostics {
    /// Point every problem into `text`. The YAML parser places what it
    /// finds at the end of the input (an error, an empty key) one line past
    /// the last when the file ends without a line break: such a problem
    /// points at the end of the last line instead, where the caret shows
    /// text the file has.
    pub fn keep_within(&mut self, text: &str) {
        let lines = text.replace("\r\n", "\n");
        let last = lines.split(['\n', '\r']).count();
        let end = Location {
            line: last,
            column: lines
                .rsplit(['\n', '\r'])
                .next()
                .unwrap_or("")
                .chars()
                .count()
                + 1,
        };
        for d in &mut self.shown {
            if d.location.line > last {
                d.location = end;
            }
        }
        if self.omitted.first_at.line > last {
            self.omitted.first_at = end;
        }
    }

    /// Keep `d` if there is room. When the file has used its room, an error
    /// takes the place of the last warning, so that every file with errors
    /// shows at least one.
    pub fn push(&mut self, d: Diagnostic) {
        let d = clipped(d);
        let real = self.real_len();
        if real < MAX_SHOWN {
            self.shown.insert(real, d);
            return;
        }
        let displaced = match d.is_error() {
            true => self.shown[..real].iter().rposition(|w| !w.is_error()),
            false => None,
        };
        if self.omitted.total() == 0 {
            self.omitted.first_at = match displaced {
                Some(i) => self.shown[i].location,
                None => d.location,
            };
        }
        match displaced {
            Some(i) => {
                self.shown.remove(i);
                self.shown.insert(real - 1, d);
                self.omitted.warnings += 1;
            }
            None if d.is_error() => self.omitted.errors += 1,
            None => self.omitted.warnings += 1,
        }
        self.refresh_summary();
    }

    /// Whether this file may make one more "did you mean" look-up (and
    /// count it): false after [`MAX_SUGGESTIONS`], and the hint then says
    /// what is known instead.
    pub fn may_suggest(&mut self) -> bool {
        let ok = self.suggested < MAX_SUGGESTIONS;
        self.suggested += usize::from(ok);
        ok
    }

    /// The problems to show, the summary of those left out last.
    pub fn items(&self) -> &[Diagnostic] {
        &self.shown
    }

    pub fn is_empty(&self) -> bool {
        self.shown.is_empty()
    }

    /// Every error found, shown or not.
    pub fn errors(&self) -> usize {
        self.real().iter().filter(|d| d.is_error()).count() + self.omitted.errors
    }

    /// Every warning found, shown or not.
    pub fn warnings(&self) -> usize {
        self.real().iter().filter(|d| !d.is_error()).count() + self.omitted.warnings
    }

    /// How many problems were counted but not kept.
    pub fn omitted(&self) -> usize {
        self.omitted.total()
    }

    /// Sort by position, keeping the order of problems found at one place
    /// (and the summary last).
    pub fn sort(&mut self) {
        let real = self.real_len();
        self.shown[..real].sort_by_key(|d| (d.location.line, d.location.column));
    }

    fn real_len(&self) -> usize {
        match self.omitted.total() {
            0 => self.shown.len(),
            _ => self.shown.len() - 1,
        }
    }

    fn real(&self) -> &[Diagnostic] {
        &self.shown[..self.real_len()]
    }

    /// Write (or rewrite) the last line that sums up what was left out.
    fn refresh_summary(&mut self) {
        let Omitted {
            errors,
            warnings,
            first_at,
        } = self.omitted;
        let severity = if errors > 0 {
            Severity::Error
        } else {
            Severity::Warning
        };
        let summary = Diagnostic::new(
            severity,
            first_at,
            format!(
                "… and {} more problem{} not shown ({errors} error{}, {warnings} warning{})",
                errors + warnings,
                plural(errors + warnings),
                plural(errors),
                plural(warnings)
            ),
        )
        .with_hint(format!(
            "rigger reports at most {MAX_SHOWN} problems per file; fix these and check again"
        ));
        if self.shown.len() > MAX_SHOWN {
            self.shown.pop();
        }
        self.shown.push(summary);
    }

    /// `path:line:col: error: message`, the source line with a caret under
    /// the column, and the hint — the shape compilers use, so editors and
    /// terminals can jump to it.
    pub fn render(&self, path: &str, source: &str) -> String {
        let lines: Vec<&str> = source.lines().collect();
        let mut out = String::new();
        for d in &self.shown {
            let word = match d.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            let Location { line, column } = d.location;
            let _ = writeln!(out, "{path}:{line}:{column}: {word}: {}", d.message);
            if let Some(text) = line.checked_sub(1).and_then(|i| lines.get(i)) {
                let gutter = line.to_string().len();
                let _ = writeln!(out, "{:gutter$} |", "");
                let (text, column) = excerpt(text, column);
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

/// Characters of a source line shown on each side of the column.
const EXCERPT_CHARS: usize = 60;

/// The part of a source line around `column` (1-based), and the column in
/// it: a file may be one line of a megabyte, and each problem shows its line.
fn excerpt(text: &str, column: usize) -> (String, usize) {
    let skip = column.saturating_sub(1 + EXCERPT_CHARS);
    let mut shown: String = if skip > 0 {
        "…".into()
    } else {
        String::new()
    };
    let mut chars = text.chars().skip(skip);
    shown.extend(chars.by_ref().take(2 * EXCERPT_CHARS));
    if chars.next().is_some() {
        shown.push('…');
    }
    let column = column - skip + usize::from(skip > 0);
    (shown, column)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `d` with its message and hint cut to [`MAX_MESSAGE_CHARS`] characters.
fn clipped(mut d: Diagnostic) -> Diagnostic {
    if d.message.len() > MAX_MESSAGE_CHARS {
        d.message = clip(&d.message, MAX_MESSAGE_CHARS).into_owned();
    }
    if let Some(h) = d.hint.as_mut().filter(|h| h.len() > MAX_MESSAGE_CHARS) {
        *h = clip(h, MAX_MESSAGE_CHARS).into_owned();
    }
    d
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
