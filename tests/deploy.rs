//! deploy/: no Docker engine or cluster runs here, so check what can be
//! checked: every file parses, the App manifest asks for every permission
//! rigger uses, every RIGGER_* variable is one rigger reads, and the systemd
//! unit passes `systemd-analyze verify` where systemd is installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(deploy().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn yaml_documents(name: &str) -> Vec<serde_yaml::Value> {
    serde_yaml::Deserializer::from_str(&read(name))
        .map(|d| serde_yaml::Value::deserialize(d).unwrap_or_else(|e| panic!("{name}: {e}")))
        .collect()
}

/// Every `RIGGER_…` name in a text.
fn rigger_vars(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("RIGGER_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        out.push(name);
        rest = &rest[i + 7..];
    }
    out
}

#[test]
fn the_app_manifest_asks_for_every_permission_rigger_uses() {
    let m: serde_json::Value = serde_json::from_str(&read("app-manifest.json")).unwrap();
    let perms = &m["default_permissions"];
    // Actions: read jobs; Administration: repository JIT runners; Self-hosted
    // runners: organization JIT runners; Checks: diagnoses and cost summaries;
    // Contents: .cirun.yml; Metadata: implicit; Members: .access.yml teams.
    for (name, level) in [
        ("actions", "read"),
        ("administration", "write"),
        ("organization_self_hosted_runners", "write"),
        ("checks", "write"),
        ("contents", "read"),
        ("metadata", "read"),
        ("members", "read"),
    ] {
        assert_eq!(perms[name], level, "{name}");
    }
    let events: Vec<&str> = m["default_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(events.contains(&"workflow_job"));
    assert!(
        m["hook_attributes"]["url"]
            .as_str()
            .unwrap()
            .ends_with("/webhook")
    );
}

#[test]
fn compose_runs_rigger_with_postgres() {
    let docs = yaml_documents("compose.yml");
    let services = &docs[0]["services"];
    assert!(services["postgres"].is_mapping());
    let env = &services["rigger"]["environment"];
    assert!(
        env["RIGGER_DATABASE_URL"]
            .as_str()
            .unwrap()
            .starts_with("postgres://")
    );
}

#[test]
fn kubernetes_runs_two_replicas_on_postgres() {
    let docs = yaml_documents("kubernetes/rigger.yaml");
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("a Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert!(kinds.contains(&"Service"));
    for d in yaml_documents("kubernetes/postgres.yaml") {
        assert!(d["kind"].is_string());
    }
}

#[test]
fn every_rigger_variable_in_deploy_is_one_rigger_reads() {
    for name in [
        "compose.yml",
        "kubernetes/rigger.yaml",
        "Dockerfile",
        "rigger.service",
    ] {
        for var in rigger_vars(&read(name)) {
            assert!(
                rigger::settings::env_vars().contains(&var),
                "{name} sets {var}, which rigger does not read"
            );
        }
    }
}

#[test]
fn the_dockerfile_builds_a_small_image_running_as_non_root() {
    let d = read("Dockerfile");
    assert_eq!(
        d.matches("\nFROM ").count() + usize::from(d.starts_with("FROM ")),
        2
    );
    assert!(d.contains("FROM debian:bookworm-slim"));
    assert!(d.contains("\nUSER rigger"));
}

#[test]
fn the_systemd_unit_verifies() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipping: systemd-analyze is not installed");
        return;
    }
    // Point ExecStart at the binary this build made, so verify can check it.
    let unit =
        read("rigger.service").replace("/usr/local/bin/rigger", env!("CARGO_BIN_EXE_rigger"));
    let dir = std::env::temp_dir().join(format!("rigger-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rigger.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    // It may warn about the system it runs on; nothing about our unit.
    let about_unit: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("rigger.service"))
        .collect();
    assert!(about_unit.is_empty(), "{text}");
}

/// The paths the Dockerfile's build stage copies in (`COPY SRC… DEST`, not
/// `--from`), as written.
fn build_stage_copies(dockerfile: &str) -> Vec<String> {
    let mut stage = 0;
    let mut copies = Vec::new();
    for line in dockerfile.lines().map(str::trim) {
        if line.starts_with("FROM ") {
            stage += 1;
        }
        let Some(args) = line.strip_prefix("COPY ") else {
            continue;
        };
        if stage != 1 || args.starts_with("--from") {
            continue;
        }
        let words: Vec<&str> = args.split_whitespace().collect();
        copies.extend(
            words[..words.len().saturating_sub(1)]
                .iter()
                .map(|w| w.trim_end_matches('/').to_string()),
        );
    }
    copies
}

/// Every file the manifest points at (lib, bins, benches, tests, examples
/// with their default paths) and every file outside `src/` that the sources
/// pull in with `include_str!`/`include_bytes!`: what `cargo build` in the
/// image needs.
fn files_the_build_needs() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest: toml::Table = std::fs::read_to_string(root.join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let mut needed = vec!["Cargo.toml".to_string(), "Cargo.lock".to_string()];
    if let Some(lib) = manifest.get("lib") {
        needed.push(lib["path"].as_str().unwrap_or("src/lib.rs").to_string());
    }
    for (kind, dir) in [
        ("bin", "src/bin"),
        ("bench", "benches"),
        ("test", "tests"),
        ("example", "examples"),
    ] {
        for target in manifest
            .get(kind)
            .and_then(|t| t.as_array())
            .into_iter()
            .flatten()
        {
            let path = match target.get("path").and_then(|p| p.as_str()) {
                Some(p) => p.to_string(),
                None => format!("{dir}/{}.rs", target["name"].as_str().unwrap()),
            };
            needed.push(path);
        }
    }
    let mut stack = vec![root.join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for macro_name in ["include_str!(\"", "include_bytes!(\""] {
                for (i, _) in text.match_indices(macro_name) {
                    let rest = &text[i + macro_name.len()..];
                    let included = &rest[..rest.find('"').unwrap()];
                    let full = path.parent().unwrap().join(included);
                    let relative = std::path::absolute(&full)
                        .unwrap()
                        .components()
                        .fold(PathBuf::new(), |mut p, c| {
                            match c {
                                std::path::Component::ParentDir => {
                                    p.pop();
                                }
                                other => p.push(other),
                            }
                            p
                        })
                        .strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    needed.push(relative);
                }
            }
        }
    }
    needed.sort();
    needed.dedup();
    needed
}

#[test]
fn the_dockerfile_copies_everything_cargo_needs_to_build() {
    let copied = build_stage_copies(&read("Dockerfile"));
    let needed = files_the_build_needs();
    assert!(
        needed.iter().any(|n| n.starts_with("benches/")),
        "the manifest declares benches: {needed:?}"
    );
    for path in &needed {
        assert!(
            copied
                .iter()
                .any(|c| path == c || path.starts_with(&format!("{c}/"))),
            "the Dockerfile's build stage does not copy {path}, which the build needs (it copies {copied:?})"
        );
    }
}
