//! `examples/rigger.toml` documents every setting; it must load.

use std::path::Path;

#[test]
fn the_example_settings_load() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/rigger.toml");
    // The secrets' files do not exist here; the environment provides them.
    let env = |k: &str| match k {
        "RIGGER_GITHUB_PRIVATE_KEY" => Some("pem".to_string()),
        "RIGGER_WEBHOOK_SECRET" => Some("w".to_string()),
        "RIGGER_VAST_API_KEY" => Some("v".to_string()),
        _ => None,
    };
    let s = rigger::settings::load(Some(&path), &env).unwrap();
    assert_eq!(s.github.app_id, 123456);
    assert_eq!(s.controller_id, "rigger");
    assert_eq!(s.timeouts.max_lifetime.as_secs(), 6 * 3600);
    assert_eq!(s.runner.version, rigger::settings::RUNNER_VERSION);
}
