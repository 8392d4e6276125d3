//! `rigger validate` and `rigger schema` as a user runs them: the real binary,
//! its exit status and output.

#[path = "config_hostile/inputs.rs"]
mod inputs;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

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

/// How long `rigger validate` may take on one hostile file, start-up of a
/// debug build on a loaded machine included; each takes well under a second.
const HOSTILE_WALL: Duration = Duration::from_secs(5);

/// Run `validate` on `path` and check that it answered as a checker must:
/// exit 0 or 1, never a panic (101) or a signal, with a verdict on stdout.
fn validate_answers(path: &Path) -> Output {
    let started = Instant::now();
    let out = rigger(&["validate", s(path)]);
    let took = started.elapsed();
    let text = stdout(&out);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}: {:?}\n{}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took < HOSTILE_WALL, "{}: {took:?}", path.display());
    assert!(
        text.contains(&format!("{}: ok", path.display()))
            || text.contains(&format!("{}: FAILED", path.display())),
        "{text}"
    );
    assert!(
        text.len() < 1024 * 1024,
        "{}: {} bytes of output",
        path.display(),
        text.len()
    );
    out
}

#[test]
fn every_hostile_file_exits_0_or_1_quickly() {
    for h in inputs::all() {
        let path = temp_file(h.file, &h.text);
        validate_answers(&path);
    }
    let path = temp_file(
        "shared1800.cirun.yml",
        &inputs::runners_sharing_a_label(1800),
    );
    let text = stdout(&validate_answers(&path));
    assert!(
        text.contains("and 1796 more share label `cirun-x`"),
        "{text}"
    );
}

#[test]
fn a_huge_or_endless_file_is_refused_without_being_read() {
    // Sparse: 3 GB on paper, nothing on disk.
    let path = temp_file("huge.cirun.yml", "");
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(3_000_000_000)
        .unwrap();
    let text = stdout(&validate_answers(&path));
    assert!(
        text.contains("error: the file is 3000000000 bytes; rigger reads config files of at most 1048576 bytes"),
        "{text}"
    );
    std::fs::remove_file(&path).unwrap();
    // A file whose size says nothing: read no further than the limit.
    let endless = Path::new("/dev/zero");
    if endless.exists() {
        let out = rigger(&["validate", "--kind", "repo", "/dev/zero"]);
        assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
        assert!(
            stdout(&out).contains("the file is over 1048576 bytes"),
            "{}",
            stdout(&out)
        );
    }
}

#[test]
fn a_file_that_is_not_utf8_is_an_error_at_its_byte() {
    let path = temp_file("latin1.cirun.yml", "");
    std::fs::write(&path, b"runners:\n  - name: caf\xe9\n").unwrap();
    let out = validate_answers(&path);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "{}:2:14: error: the file is not UTF-8 text",
            path.display()
        )),
        "{text}"
    );
}

#[test]
fn env_vars_beyond_vast_ais_limits_are_errors_at_their_line() {
    let long = "v".repeat(250);
    let many: String = (0..200)
        .map(|i| format!("        V{i:03}: {}\n", "w".repeat(200)))
        .collect();
    let path = temp_file(
        "env.cirun.yml",
        &format!(
            "runners:\n  - name: gpu\n    cloud: vast_ai\n    instance_type: 1xRTX_4090\n    labels: [cirun-gpu]\n    extra_config:\n      env_vars:\n        OK: short\n        LONG_ONE: {long}\n  - name: many\n    cloud: vast_ai\n    instance_type: 1xRTX_4090\n    labels: [cirun-many]\n    extra_config:\n      env_vars:\n{many}"
        ),
    );
    let out = rigger(&["validate", s(&path)]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "{}:9:19: error: `LONG_ONE` is 259 characters as `LONG_ONE=…`; Vast.ai takes at most 256 for one variable",
            path.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("{}:16:9: error: `env_vars` take ", path.display())),
        "{text}"
    );
    assert!(!text.contains(&long), "values are not repeated: {text}");
    assert!(text.contains("(2 errors, 0 warnings)"), "{text}");
}

#[test]
fn a_disk_below_vast_ais_minimum_is_an_error() {
    let path = temp_file(
        "disk.cirun.yml",
        "runners:\n  - name: gpu\n    cloud: vast_ai\n    instance_type: 1xRTX_4090\n    labels: [cirun-gpu]\n    extra_config:\n      disk_space: 5\n",
    );
    let out = rigger(&["validate", s(&path)]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "{}:7:19: error: `disk_space` is 5 GB; Vast.ai rents no less than 8 GB",
            path.display()
        )),
        "{text}"
    );
    let ok = temp_file(
        "disk8.cirun.yml",
        "runners:\n  - name: gpu\n    cloud: vast_ai\n    instance_type: 1xRTX_4090\n    labels: [cirun-gpu]\n    extra_config:\n      disk_space: 8\n",
    );
    assert_eq!(rigger(&["validate", s(&ok)]).status.code(), Some(0));
}
