//! `rigger.toml` with the environment over it, through `settings::load`
//! and `load_database_url` as `rigger serve` and the read-only commands
//! call them: whatever the text and the variables, the answer is settings
//! the engine can compute with or a message saying what to fix, and no
//! secret given in the environment is in either.
//!
//! Input: the file's text; then, after a line `=== env`, one `NAME=value`
//! a line. No text before `=== env` means no file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rigger::settings::{self, Settings};

use super::runtime::NOW_MS;
use super::script::split_marked;

/// Put before every secret's value, so a leak is found whatever the value.
const CANARY: &str = "sEcReT-";

/// The variables that hold a secret itself (not a file's path).
const SECRET_VARS: &[&str] = &[
    "RIGGER_GITHUB_PRIVATE_KEY",
    "RIGGER_GITHUB_WEBHOOK_SECRET",
    "RIGGER_WEBHOOK_SECRET",
    "RIGGER_VAST_API_KEY",
];

pub fn check(data: &[u8]) {
    let parts = split_marked(data);
    let text = parts.first().copied().unwrap_or_default();
    let env = environment(parts.get(1).copied().unwrap_or_default());
    let lookup = |name: &str| env.get(name).cloned();
    let file = (!text.is_empty()).then(|| write_file(text));
    let path = file.as_deref();
    // The canary counts as leaked only where the input did not put it itself.
    let planted = String::from_utf8_lossy(text).contains(CANARY)
        || env
            .iter()
            .any(|(k, v)| !SECRET_VARS.contains(&k.as_str()) && v.contains(CANARY));
    match settings::load(path, &lookup) {
        Ok(s) => accepted(&s, planted),
        Err(e) => hidden(&e.to_string(), planted, "an error"),
    }
    if let Err(e) = settings::load_database_url(path, &lookup) {
        hidden(&e.to_string(), planted, "an error");
    }
    if let Some(p) = &file {
        let _ = std::fs::remove_file(p);
    }
}

/// What `rigger serve` cannot start without, so that most inputs get past
/// it to the settings they are about; `NAME=` in the input unsets one.
const REQUIRED: &[(&str, &str)] = &[
    ("RIGGER_GITHUB_APP_ID", "1"),
    ("RIGGER_GITHUB_PRIVATE_KEY", "key"),
    ("RIGGER_WEBHOOK_SECRET", "webhook"),
    ("RIGGER_VAST_API_KEY", "vast"),
];

/// `NAME=value` lines over [`REQUIRED`]; a secret's value gets the canary
/// in front.
fn environment(text: &[u8]) -> BTreeMap<String, String> {
    let text = String::from_utf8_lossy(text);
    let mut lines = text.split('\n');
    lines.next(); // the rest of the `=== env` line
    let given = lines.filter_map(|l| l.split_once('='));
    REQUIRED
        .iter()
        .copied()
        .chain(given)
        .map(|(k, v)| {
            let value = if SECRET_VARS.contains(&k) && !v.is_empty() {
                format!("{CANARY}{v}")
            } else {
                v.to_string()
            };
            (k.to_string(), value)
        })
        .collect()
}

/// The file `load` reads: one per process, rewritten for each input.
fn write_file(text: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("rigger-fuzz-{}.toml", std::process::id()));
    std::fs::write(&path, text).expect("the temporary directory is writable");
    path
}

fn hidden(text: &str, planted: bool, shown: &str) {
    if !planted {
        assert!(!text.contains(CANARY), "a secret reached {shown}: {text}");
    }
}

/// Settings rigger starts with: secrets hidden from `Debug`, and every
/// timeout one the engine can add to its clock (milliseconds in an i64).
fn accepted(s: &Settings, planted: bool) {
    hidden(&format!("{s:?}"), planted, "Debug of the settings");
    let t = &s.timeouts;
    for (name, d) in [
        ("reconcile_interval", t.reconcile_interval),
        ("create", t.create),
        ("bootstrap", t.bootstrap),
        ("idle", t.idle),
        ("job_quiet", t.job_quiet),
        ("unreachable", t.unreachable),
        ("max_lifetime", t.max_lifetime),
        ("queue", t.queue),
    ] {
        let fits = i64::try_from(d.as_millis())
            .ok()
            .and_then(|ms| ms.checked_add(NOW_MS))
            .is_some();
        assert!(
            fits,
            "timeouts.{name} = {d:?} was accepted but overflows the engine's clock"
        );
    }
}
