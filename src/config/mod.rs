//! The repository's `.cirun.yml` (and the org's `.cirun.global.yml` and
//! `.access.yml`): model, parsing with line:column diagnostics, fallback
//! expansion, label matching and the JSON Schema.

pub mod access;
mod check;
mod countries;
pub mod diagnostics;
pub mod fallback;
pub mod keys;
pub mod labels;
pub mod model;
pub mod org;
pub mod parse;
pub mod schema;
pub mod suggest;
mod vast;
pub mod yaml;

use std::path::Path;

pub use access::AccessConfig;
pub use diagnostics::{Diagnostic, Diagnostics, Severity};
pub use model::{CirunConfig, Cloud, Origin, RunnerDef, VastCandidate, VastExtra, VastRunner};

/// Which of the three config files a text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// A repository's `.cirun.yml`.
    Repository,
    /// An org's `.cirun/.cirun.global.yml`.
    Organization,
    /// An org's `.cirun/.access.yml`.
    Access,
}

impl FileKind {
    /// Guess from the file name: `*.access.yml` and `*.cirun.global.yml` are
    /// the org files, anything else a repository's `.cirun.yml`.
    pub fn from_path(path: &Path) -> FileKind {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if name.ends_with(".access.yml") || name.ends_with(".access.yaml") {
            FileKind::Access
        } else if name.ends_with(".cirun.global.yml") || name.ends_with(".cirun.global.yaml") {
            FileKind::Organization
        } else {
            FileKind::Repository
        }
    }
}

/// One file, read and checked.
#[derive(Debug, Clone)]
pub struct ParsedFile {
    pub path: String,
    pub kind: FileKind,
    pub source: String,
    /// For `.cirun.yml` and `.cirun.global.yml`.
    pub config: Option<CirunConfig>,
    /// For `.access.yml`.
    pub access: Option<AccessConfig>,
    pub diagnostics: Diagnostics,
}

impl ParsedFile {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.errors() > 0
    }

    /// The diagnostics as a compiler would print them.
    pub fn render(&self) -> String {
        self.diagnostics.render(&self.path, &self.source)
    }
}

/// Parse a file of the given kind. A text over [`yaml::MAX_FILE_BYTES`] is
/// one error, found before anything is read (and not kept as the source).
pub fn parse_file(path: &Path, text: &str, kind: FileKind) -> ParsedFile {
    if text.len() > yaml::MAX_FILE_BYTES {
        return refused(path, kind, yaml::too_large(Some(text.len())));
    }
    let (config, access, mut diagnostics) = match kind {
        FileKind::Repository | FileKind::Organization => {
            let origin = if kind == FileKind::Repository {
                Origin::Repository
            } else {
                Origin::Organization
            };
            let (c, d) = parse::parse_cirun(text, origin);
            (c, None, d)
        }
        FileKind::Access => {
            let (a, d) = access::parse_access(text);
            (None, a, d)
        }
    };
    diagnostics.keep_within(text);
    ParsedFile {
        path: path.display().to_string(),
        kind,
        source: text.to_string(),
        config,
        access,
        diagnostics,
    }
}

/// Parse a file read as bytes: text that is not UTF-8 is an error at the
/// line and column of the first byte that is not.
pub fn parse_bytes(path: &Path, bytes: &[u8], kind: FileKind) -> ParsedFile {
    if bytes.len() > yaml::MAX_FILE_BYTES {
        return refused(path, kind, yaml::too_large(Some(bytes.len())));
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_file(path, text, kind),
        Err(e) => refused(path, kind, not_utf8(bytes, e.valid_up_to())),
    }
}

/// A file rigger does not read: one error and nothing else.
pub fn refused(path: &Path, kind: FileKind, error: Diagnostic) -> ParsedFile {
    let mut diagnostics = Diagnostics::default();
    diagnostics.push(error);
    ParsedFile {
        path: path.display().to_string(),
        kind,
        source: String::new(),
        config: None,
        access: None,
        diagnostics,
    }
}

/// The error for bytes that are valid UTF-8 up to `valid`.
fn not_utf8(bytes: &[u8], valid: usize) -> Diagnostic {
    let good = String::from_utf8_lossy(&bytes[..valid]);
    let line = good.matches('\n').count() + 1;
    let column = good.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Diagnostic::error(
        model::Location { line, column },
        "the file is not UTF-8 text".to_string(),
    )
    .with_hint("save it as UTF-8 (YAML files are UTF-8); this byte is the first that is not")
}

/// Parse a repository's `.cirun.yml`.
pub fn parse_repo_file(path: &Path, text: &str) -> ParsedFile {
    parse_file(path, text, FileKind::Repository)
}
