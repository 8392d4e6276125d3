//! `rigger validate` and `rigger schema` as a user runs them: the real binary,
//! its exit status and output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn rigger(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rigger"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run rigger")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rigger-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn the_example_validates_and_shows_candidates() {
    let out = rigger(&["validate", "examples/.cirun.yml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("examples/.cirun.yml: ok (0 errors, 0 warnings)"));
    assert!(text.contains(
        "1× RTX 4090, container nvidia/cuda:12.0.0-base-ubuntu22.04, region US, disk ≥ 30 GB, RAM ≥ 8 GB"
    ));
}

#[test]
fn an_error_exits_1_and_points_at_the_line() {
    let path = temp_file(
        "broken.cirun.yml",
        "runners:\n  - name: gpu\n    cloud: vast_ai\n    instance_type: 1xRTX_4091\n    labels: [cirun-gpu]\n",
    );
    let out = rigger(&["validate", s(&path)]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "{}:4:20: error: unknown GPU model `RTX_4091` in `1xRTX_4091`",
            path.display()
        )),
        "{text}"
    );
    assert!(text.contains("= hint: did you mean RTX_4090"), "{text}");
}

#[test]
fn warnings_alone_exit_0_unless_strict() {
    let path = temp_file(
        "warn.cirun.yml",
        "runners:\n  - name: a\n    cloud: aws\n    labels: [cirun-a]\n",
    );
    assert_eq!(rigger(&["validate", s(&path)]).status.code(), Some(0));
    assert_eq!(
        rigger(&["validate", "--strict", s(&path)]).status.code(),
        Some(1)
    );
}

#[test]
fn an_unreadable_file_exits_2() {
    let out = rigger(&["validate", "examples/.cirun.yml", "/nonexistent/.cirun.yml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/.cirun.yml: error: cannot read the file"));
}

#[test]
fn json_output_is_one_object() {
    let out = rigger(&["validate", "--json", "examples/.cirun.yml"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["errors"], 0);
    let runners = &v["files"][0]["runners"];
    assert_eq!(runners[0]["name"], "gpu-container");
    assert_eq!(runners[0]["candidates"][0]["gpu_count"], 1);
    assert_eq!(runners[0]["candidates"][0]["gpu"]["models"][0], "RTX 4090");
    assert_eq!(runners[0]["extra"]["disk_space_gb"], 30.0);
    assert!(
        runners[0]["candidates"][0]["description"]
            .as_str()
            .unwrap()
            .starts_with("1× RTX 4090")
    );
}

#[test]
fn json_diagnostics_carry_line_column_and_hint() {
    let path = temp_file(
        "typo.cirun.yml",
        "runners:\n  - name: gpu\n    cloud: vast_ai\n    instance_type: 1xRTX_4090\n    lables: [cirun-gpu]\n",
    );
    let out = rigger(&["validate", "--json", s(&path)]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = &v["files"][0]["diagnostics"];
    let typo = d
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["message"].as_str().unwrap().contains("lables"))
        .unwrap();
    assert_eq!(typo["severity"], "error");
    assert_eq!(typo["line"], 5);
    assert_eq!(typo["column"], 5);
    assert_eq!(typo["hint"], "did you mean `labels`?");
}

#[test]
fn org_and_access_files_are_told_apart_by_name() {
    let org = temp_file(
        ".cirun.global.yml",
        "runners:\n  - name: shared-gpu\n    cloud: vast_ai\n    instance_type: 1xRTX_4090\n    labels: [cirun-shared]\n",
    );
    let access = org.with_file_name(".access.yml");
    std::fs::write(
        &access,
        "version: 1\npolicies:\n  - id: p\n    teams: [ml]\naccess_control:\n  - resource: shared-gpu\n    policies: [p]\n  - resource: shared-cpu\n    policies: [p]\n",
    )
    .unwrap();
    let out = rigger(&["validate", s(&org), s(&access)]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("1 policy, 2 access rules"), "{text}");
    assert!(
        text.contains("no runner named `shared-cpu` in .cirun.global.yml"),
        "{text}"
    );
}

#[test]
fn schema_is_json_schema() {
    let out = rigger(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["$schema"], "http://json-schema.org/draft-07/schema#");
    assert!(v["properties"]["runners"]["items"]["properties"]["instance_type"].is_object());
    let out = rigger(&["schema", "--file", "access"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["properties"]["access_control"].is_object());
}

#[test]
fn help_explains_the_commands() {
    let text = stdout(&rigger(&["validate", "--help"]));
    assert!(text.contains("Exit status"));
    assert!(text.contains("--json"));
}

#[test]
fn without_a_file_it_checks_the_cirun_yml_in_the_current_directory() {
    let dir = std::env::temp_dir().join(format!("rigger-cwd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_rigger"))
            .arg("validate")
            .current_dir(&dir)
            .output()
            .unwrap()
    };
    let _ = std::fs::remove_file(dir.join(".cirun.yml"));
    let out = run();
    assert_eq!(out.status.code(), Some(2), "no file to read");
    assert!(String::from_utf8_lossy(&out.stderr).contains(".cirun.yml"));

    std::fs::write(
        dir.join(".cirun.yml"),
        "runners:\n  - name: g\n    cloud: vast_ai\n    instance_type: 1xRTX_3090\n    labels: [cirun-g]\n",
    )
    .unwrap();
    let out = run();
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains(".cirun.yml: ok"), "{text}");
    assert!(text.contains("1× RTX 3090"), "{text}");

    std::fs::write(
        dir.join(".cirun.yml"),
        "runners:\n  - name: g\n    cloud: vast_ai\n    instance_type: 1xRTX_3090\n    labels: [cirun-g]\n    gpu: nvidia-tesla-t4\n",
    )
    .unwrap();
    let out = run();
    assert_eq!(out.status.code(), Some(0), "a warning is not an error");
    let text = stdout(&out);
    assert!(
        text.contains(".cirun.yml:6:10: warning: `gpu` is not used on vast_ai"),
        "{text}"
    );
    assert!(
        text.contains("hint: remove it, and write the GPU as `instance_type: 1xRTX_4090`"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
