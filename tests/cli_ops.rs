//! `rigger jobs list`, `rigger instances list`, `rigger costs` over a real
//! SQLite store, run as the operator runs them.

use std::process::Command;

use rigger::engine::state::{InstanceState, JobState};
use rigger::store::{CostEntry, InstancePatch, JobPatch, NewInstance, NewJob, Store};

async fn seeded(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("rigger-ops-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("rigger.db").display());
    let s = Store::connect(&url).await.unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    for id in [11, 12] {
        s.insert_job(&NewJob {
            job_id: id,
            run_id: 5,
            run_attempt: 1,
            repo: "octo/ml".into(),
            installation_id: 1,
            labels: vec!["cirun-gpu--5".into()],
            head_sha: "abc".into(),
            is_fork: false,
            actor: "octocat".into(),
            queued_at: now - 7_200_000,
        })
        .await
        .unwrap();
    }
    s.transition_job(
        11,
        JobState::Queued,
        JobState::Provisioning,
        now,
        JobPatch {
            runner_def: Some("gpu".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    s.insert_instance(
        &NewInstance {
            id: "i-1".into(),
            job_id: 11,
            label: "rigger:ci:11".into(),
            runner_name: "rigger-ci-11".into(),
            offer_id: Some(900),
            gpu_name: Some("RTX 4090".into()),
            num_gpus: Some(1),
            dph: Some(0.5),
            location: Some("Texas, US".into()),
            expires_at: now + 3_600_000,
            callback_hash: None,
        },
        now - 7_200_000,
    )
    .await
    .unwrap();
    for (from, to, patch) in [
        (
            InstanceState::Requested,
            InstanceState::Creating,
            InstancePatch {
                create_called_at: Some(now - 7_200_000),
                ..Default::default()
            },
        ),
        (
            InstanceState::Creating,
            InstanceState::Booting,
            InstancePatch {
                provider_id: Some("7835610".into()),
                ..Default::default()
            },
        ),
    ] {
        assert!(
            s.transition_instance("i-1", from, to, now, patch)
                .await
                .unwrap()
        );
    }
    s.record_cost(&CostEntry {
        instance_id: "old".into(),
        job_id: 1,
        repo: "octo/ml".into(),
        runner_def: "gpu".into(),
        gpu_name: "RTX 4090".into(),
        dph: 0.5,
        seconds: 1800,
        closed_at: now - 1000,
    })
    .await
    .unwrap();
    s.close().await;
    url
}

fn rigger(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rigger"))
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn jobs_list_shows_live_jobs() {
    let url = seeded("jobs").await;
    let (code, text) = rigger(&["jobs", "list", "--database-url", &url]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("JOB"), "{text}");
    assert!(text.contains("provisioning"), "{text}");
    let (_, text) = rigger(&["jobs", "list", "--json", "--database-url", &url]);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn instances_list_in_every_format() {
    let url = seeded("instances").await;
    let (code, text) = rigger(&["instances", "list", "--database-url", &url]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("1× RTX 4090"), "{text}");
    assert!(text.contains("$0.500/h"), "{text}");
    let (_, text) = rigger(&[
        "instances",
        "list",
        "--format",
        "vast-instances",
        "--database-url",
        &url,
    ]);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let e = &v[0];
    assert_eq!(e["instance_id"], 7835610);
    assert_eq!(e["offer_id"], 900);
    assert_eq!(e["status"], "booting");
    assert_eq!(e["experiment"], "octo/ml#job-11");
    let hours = e["estimated_hours"].as_f64().unwrap();
    assert!((1.99..2.1).contains(&hours), "{hours}");
    let cost = e["estimated_cost"].as_f64().unwrap();
    assert!((cost - hours * 0.5).abs() < 0.01, "{cost}");
    for key in [
        "gpu_name",
        "num_gpus",
        "dph",
        "ssh_url",
        "ssh_host",
        "ssh_port",
        "created_at",
    ] {
        assert!(e.get(key).is_some(), "{key}");
    }
}

#[tokio::test]
async fn costs_by_repository() {
    let url = seeded("costs").await;
    let (code, text) = rigger(&["costs", "--database-url", &url]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("octo/ml"), "{text}");
    assert!(text.contains("Total: $0.25"), "{text}");
    let (code, text) = rigger(&["costs", "--since", "yesterday", "--database-url", &url]);
    assert_eq!(code, 1);
    assert!(text.contains("write a day as YYYY-MM-DD"), "{text}");
}

#[test]
fn a_bad_database_url_is_explained() {
    let (code, text) = rigger(&["jobs", "list", "--database-url", "mysql://u:secret@h/db"]);
    assert_eq!(code, 1);
    assert!(text.contains("sqlite://PATH or postgres://"), "{text}");
    assert!(!text.contains("secret"), "{text}");
}
