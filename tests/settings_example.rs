//! `examples/rigger.toml` documents every setting; it must load, and every
//! key in it (commented-out ones included) must be reachable from the
//! environment by the documented rule: `RIGGER_<KEY>` at the top level,
//! `RIGGER_<SECTION>_<KEY>` in a section.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/rigger.toml")
}

#[test]
fn the_example_settings_load() {
    // The secrets' files do not exist here; the environment provides them.
    let env = |k: &str| match k {
        "RIGGER_GITHUB_PRIVATE_KEY" => Some("pem".to_string()),
        "RIGGER_WEBHOOK_SECRET" => Some("w".to_string()),
        "RIGGER_VAST_API_KEY" => Some("v".to_string()),
        _ => None,
    };
    let s = rigger::settings::load(Some(&example()), &env).unwrap();
    assert_eq!(s.github.app_id, 123456);
    assert_eq!(s.controller_id, "rigger");
    assert_eq!(s.timeouts.max_lifetime.as_secs(), 6 * 3600);
    assert_eq!(s.runner.version, rigger::settings::RunnerVersion::Current);
}

/// `(section, key, TOML as written, the value as a variable holds it)` for
/// every `key = value` line of the example, and every commented-out
/// `# key = value` one.
fn example_keys() -> Vec<(String, String, String, String)> {
    let text = std::fs::read_to_string(example()).unwrap();
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[') {
            section = name[..name.find(']').unwrap()].to_string();
            continue;
        }
        let line = line.strip_prefix('#').unwrap_or(line).trim();
        let Some((key, rest)) = line.split_once(" = ") else {
            continue;
        };
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            continue;
        }
        // The value as TOML, without the comment after it.
        // The whole rest parses (a trailing comment is TOML too); the value
        // as written is the shortest start of it that parses the same.
        let parse = |text: &str| {
            format!("v = {text}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
        };
        let value = parse(rest).unwrap_or_else(|| panic!("{section}.{key}: {rest:?}"));
        let raw = (1..=rest.len())
            .filter(|&n| rest.is_char_boundary(n))
            .map(|n| &rest[..n])
            .find(|r| parse(r).as_ref() == Some(&value))
            .unwrap();
        let as_variable = match &value {
            toml::Value::String(s) => s.clone(),
            _ => raw.trim().to_string(),
        };
        out.push((
            section.clone(),
            key.to_string(),
            raw.trim().to_string(),
            as_variable,
        ));
    }
    out
}

/// The documented rule, spelled out again here rather than borrowed from
/// the library, so that the library is held to it.
fn variable(section: &str, key: &str) -> String {
    let path = if section.is_empty() {
        key.to_string()
    } else {
        format!("{section}_{key}")
    };
    format!("RIGGER_{}", path.to_ascii_uppercase())
}

const SECRETS: &[(&str, &str)] = &[
    ("RIGGER_GITHUB_APP_ID", "1"),
    ("RIGGER_GITHUB_PRIVATE_KEY", "pem"),
    ("RIGGER_GITHUB_WEBHOOK_SECRET", "w"),
    ("RIGGER_VAST_API_KEY", "v"),
];

#[test]
fn every_key_of_the_example_is_read_from_its_variable() {
    let keys = example_keys();
    assert!(keys.len() >= 25, "the walk found too few keys: {keys:?}");
    assert!(
        keys.iter()
            .any(|(s, k, _, _)| s == "runner" && k == "sha256")
    );
    let dir = std::env::temp_dir().join(format!("rigger-settings-walk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (section, key, raw, value) in &keys {
        let name = variable(section, key);
        // The secret a `*_file` key names would win over the file: leave it out.
        let base: HashMap<String, String> = SECRETS
            .iter()
            .filter(|(k, _)| *k != name && Some(*k) != name.strip_suffix("_FILE"))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();

        // Read at all: the variable is looked up.
        let asked = RefCell::new(Vec::new());
        let _ = rigger::settings::load(None, &|k: &str| {
            asked.borrow_mut().push(k.to_string());
            base.get(k).cloned()
        });
        assert!(
            asked.borrow().contains(&name),
            "{section}.{key}: {name} is never read"
        );

        // Read as that key: the variable set to the example's value gives
        // what the key set to it in a file gives (errors included: the
        // secrets' files do not exist here).
        let file = dir.join("one-key.toml");
        let line = format!("{key} = {raw}");
        let text = if section.is_empty() {
            line
        } else {
            format!("[{section}]\n{line}\n")
        };
        std::fs::write(&file, &text).unwrap();
        let from_file = rigger::settings::load(Some(&file), &|k: &str| base.get(k).cloned());
        let mut with_var = base.clone();
        with_var.insert(name.clone(), value.clone());
        let from_env = rigger::settings::load(None, &|k: &str| with_var.get(k).cloned());
        // A message names where its value came from: the variable, or the file.
        let from_file = format!("{from_file:?}").replace(&format!("({})", file.display()), "(…)");
        let from_env = format!("{from_env:?}").replace(&format!("({name})"), "(…)");
        assert_eq!(
            from_env, from_file,
            "{name}={value:?} is not read as {section}.{key} ({text:?})"
        );

        // Checked as the file is: a value of the wrong kind is refused
        // from the variable exactly when it is refused from the file, and
        // the error names the variable or the key.
        let bad_text = "{ not = 'this' }";
        let bad_file = if section.is_empty() {
            format!("{key} = \"{bad_text}\"\n")
        } else {
            format!("[{section}]\n{key} = \"{bad_text}\"\n")
        };
        std::fs::write(&file, bad_file).unwrap();
        let from_file = rigger::settings::load(Some(&file), &|k: &str| base.get(k).cloned());
        let mut bad = base.clone();
        bad.insert(name.clone(), bad_text.into());
        let from_env = rigger::settings::load(None, &|k: &str| bad.get(k).cloned());
        assert_eq!(
            from_env.is_ok(),
            from_file.is_ok(),
            "{name}={bad_text:?}: {from_env:?}, but in the file: {from_file:?}"
        );
        if let Err(e) = from_env {
            assert!(
                e.to_string().contains(&name) || e.to_string().contains(key.as_str()),
                "{name}: {e}"
            );
        }
    }
}
