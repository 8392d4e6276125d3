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
                rigger::settings::ENV_VARS.contains(&var.as_str()),
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
