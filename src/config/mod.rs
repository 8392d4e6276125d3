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

/// Parse a file of the given kind.
pub fn parse_file(path: &Path, text: &str, kind: FileKind) -> ParsedFile {
    let (config, access, diagnostics) = match kind {
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
    ParsedFile {
        path: path.display().to_string(),
        kind,
        source: text.to_string(),
        config,
        access,
        diagnostics,
    }
}

/// Parse a repository's `.cirun.yml`.
pub fn parse_repo_file(path: &Path, text: &str) -> ParsedFile {
    parse_file(path, text, FileKind::Repository)
}
