//! `rigger validate`: check config files and show what each Vast.ai runner
//! would rent, before a single GPU is rented.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;

use crate::config::{self, FileKind, ParsedFile, access, yaml};

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Files to check. `*.cirun.global.yml` and `*.access.yml` are read as
    /// the org-level files; anything else as a repository's `.cirun.yml`.
    #[arg(default_value = ".cirun.yml")]
    pub files: Vec<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Treat warnings as errors (exit 1 when there is any).
    #[arg(long)]
    pub strict: bool,
    /// Read every file as this kind instead of guessing from its name.
    #[arg(long, value_enum)]
    pub kind: Option<KindArg>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KindArg {
    /// A repository's `.cirun.yml`.
    Repo,
    /// An org's `.cirun/.cirun.global.yml`.
    Org,
    /// An org's `.cirun/.access.yml`.
    Access,
}

/// Exit codes: 0 no error (warnings allowed), 1 an error, 2 a file unreadable.
pub fn run(args: &ValidateArgs) -> u8 {
    let mut parsed: Vec<ParsedFile> = Vec::new();
    let mut unreadable: Vec<(String, String)> = Vec::new();
    for path in &args.files {
        let kind = kind_of(path, args.kind);
        match read_bounded(path) {
            Ok(Read::Bytes(bytes)) => parsed.push(config::parse_bytes(path, &bytes, kind)),
            Ok(Read::TooLarge(size)) => {
                parsed.push(config::refused(path, kind, yaml::too_large(size)))
            }
            Err(e) => unreadable.push((path.display().to_string(), e.to_string())),
        }
    }
    cross_check(&mut parsed);
    let errors: usize = parsed.iter().map(|p| p.diagnostics.errors()).sum();
    let warnings: usize = parsed.iter().map(|p| p.diagnostics.warnings()).sum();
    if args.json {
        print_json(&parsed, &unreadable, errors, warnings);
    } else {
        print_text(&parsed, &unreadable);
    }
    if !unreadable.is_empty() {
        2
    } else if errors > 0 || (args.strict && warnings > 0) {
        1
    } else {
        0
    }
}

/// A file as read: its bytes, or only its size (if known) when it is over
/// the limit.
enum Read {
    Bytes(Vec<u8>),
    TooLarge(Option<usize>),
}

/// Read at most one byte more than a config file may have, so that a
/// multi-gigabyte file (or an endless one such as `/dev/zero`) is refused
/// without being read into memory.
fn read_bounded(path: &Path) -> std::io::Result<Read> {
    let file = std::fs::File::open(path)?;
    let size = file.metadata().ok().map(|m| m.len());
    let limit = yaml::MAX_FILE_BYTES as u64;
    if let Some(size) = size.filter(|&s| s > limit) {
        return Ok(Read::TooLarge(usize::try_from(size).ok()));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    Ok(match bytes.len() as u64 > limit {
        // The size on disk said less (a pipe, a growing file).
        true => Read::TooLarge(None),
        false => Read::Bytes(bytes),
    })
}

fn kind_of(path: &Path, forced: Option<KindArg>) -> FileKind {
    match forced {
        Some(KindArg::Repo) => FileKind::Repository,
        Some(KindArg::Org) => FileKind::Organization,
        Some(KindArg::Access) => FileKind::Access,
        None => FileKind::from_path(path),
    }
}

/// With one org's `.access.yml` and `.cirun.global.yml` checked together,
/// point out rules that guard runners the org config does not define.
fn cross_check(parsed: &mut [ParsedFile]) {
    let orgs: Vec<&ParsedFile> = parsed
        .iter()
        .filter(|p| p.kind == FileKind::Organization)
        .collect();
    let [org] = orgs.as_slice() else { return };
    let Some(org_config) = &org.config else {
        return;
    };
    let org_runners = org_config.runners.clone();
    for p in parsed.iter_mut().filter(|p| p.kind == FileKind::Access) {
        if let Some(a) = &p.access {
            for d in access::check_resources(a, &org_runners).items() {
                p.diagnostics.push(d.clone());
            }
            p.diagnostics.sort();
        }
    }
}

fn print_text(parsed: &[ParsedFile], unreadable: &[(String, String)]) {
    for (path, err) in unreadable {
        eprintln!("{path}: error: cannot read the file: {err}");
    }
    for p in parsed {
        print!("{}", p.render());
        let (e, w) = (p.diagnostics.errors(), p.diagnostics.warnings());
        let verdict = if e == 0 { "ok" } else { "FAILED" };
        println!(
            "{}: {verdict} ({e} error{}, {w} warning{})",
            p.path,
            plural(e),
            plural(w)
        );
        if let Some(cfg) = &p.config {
            for r in &cfg.runners {
                match (&r.vast, r.cloud.is_provisioned()) {
                    (Some(v), _) => {
                        println!(
                            "  runner `{}` (vast_ai, labels {}), candidates in the order tried:",
                            r.name,
                            r.labels.join(", ")
                        );
                        for (i, c) in v.candidates.iter().enumerate() {
                            println!("    {}. {}", i + 1, c.describe(&v.extra));
                        }
                    }
                    (None, true) => {
                        println!("  runner `{}` (vast_ai): has errors, see above", r.name)
                    }
                    (None, false) => {
                        println!(
                            "  runner `{}` ({}): not provisioned by rigger",
                            r.name, r.cloud
                        )
                    }
                }
            }
        }
        if let Some(a) = &p.access {
            println!(
                "  {} polic{}, {} access rule{}",
                a.policies.len(),
                if a.policies.len() == 1 { "y" } else { "ies" },
                a.access_control.len(),
                plural(a.access_control.len())
            );
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn print_json(
    parsed: &[ParsedFile],
    unreadable: &[(String, String)],
    errors: usize,
    warnings: usize,
) {
    let files: Vec<_> = parsed
        .iter()
        .map(|p| {
            let runners: Vec<_> = p
                .config
                .iter()
                .flat_map(|c| c.runners.iter())
                .map(|r| {
                    let candidates: Vec<_> = r
                        .vast
                        .iter()
                        .flat_map(|v| {
                            v.candidates.iter().map(|c| {
                                let mut j = serde_json::to_value(c).unwrap_or_default();
                                j["description"] = json!(c.describe(&v.extra));
                                j
                            })
                        })
                        .collect();
                    json!({
                        "name": r.name,
                        "cloud": r.cloud,
                        "line": r.location.line,
                        "provisioned": r.vast.is_some(),
                        "labels": r.labels,
                        "candidates": candidates,
                        "extra": r.vast.as_ref().map(|v| &v.extra),
                    })
                })
                .collect();
            json!({
                "path": p.path,
                "kind": p.kind,
                "errors": p.diagnostics.errors(),
                "warnings": p.diagnostics.warnings(),
                "diagnostics": p.diagnostics,
                "runners": runners,
                "access": p.access,
            })
        })
        .collect();
    let unreadable: Vec<_> = unreadable
        .iter()
        .map(|(path, err)| json!({"path": path, "error": err}))
        .collect();
    let out = json!({
        "files": files,
        "unreadable": unreadable,
        "errors": errors,
        "warnings": warnings,
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
}
