//! The checks behind rigger's fuzz targets: one function per untrusted
//! input, each driving the same entry points rigger itself uses on that
//! input and asserting what must hold whatever the input (no panic, no
//! secret in an error, nothing touched that is not rigger's).
//!
//! The fuzz targets (`fuzz_targets/*.rs`) are one line each around these
//! functions, and `tests/fuzz_regressions.rs` in the main package includes
//! this file with `#[path]` to replay every input saved under
//! `fuzz/regressions/` in `cargo test`. So the code here uses only crates
//! rigger depends on itself, and refers to its siblings by `super::`, never
//! `crate::` (the crate root differs between the two).

pub mod callback;
pub mod config;
pub mod github;
pub mod inbox;
pub mod instance_type;
pub mod labels;
pub mod runtime;
pub mod script;
pub mod settings;
pub mod stub;
pub mod vast;
pub mod webhook;

/// What a target does with one input; it panics on a finding.
pub type Check = fn(&[u8]);

/// Every target by name, as `fuzz/regressions/<name>/` and
/// `cargo fuzz run <name>` call it.
pub const TARGETS: &[(&str, Check)] = &[
    ("access_yml", config::access_yml),
    ("callback", callback::check),
    ("cirun_global_yml", config::cirun_global_yml),
    ("cirun_yml", config::cirun_yml),
    ("github_responses", github::check),
    ("instance_type", instance_type::check),
    ("labels", labels::check),
    ("settings", settings::check),
    ("vast_responses", vast::check),
    ("webhook", webhook::check),
    ("webhook_inbox", inbox::check),
];

/// The check of a target, by name.
pub fn target(name: &str) -> Option<Check> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}
