//! The repository's `.cirun.yml` (and the org's `.cirun.global.yml` and
//! `.access.yml`): model, parsing with line:column diagnostics, fallback
//! expansion, label matching and the JSON Schema.

pub mod model;
pub mod suggest;
