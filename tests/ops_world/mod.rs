//! What the operator-command tests share: a SQLite store holding one live
//! instance (with the estimate rigger made when it rented it) and a spent
//! one in the ledger, and a simulated Vast.ai served over HTTP.

#![allow(dead_code)]

use std::process::Command;
use std::sync::Arc;

use rigger::engine::ports::SystemClock;
use rigger::engine::state::{InstanceState, JobState};
use rigger::sim::vast::{Rental, SimConfig, SimVast};
use rigger::store::{CostEntry, InstancePatch, JobPatch, NewInstance, NewJob, Store};

/// rigger's own id for the seeded live instance.
pub const INSTANCE: &str = "i-1";
/// The estimate recorded at rent time: hours, dollars.
pub const ESTIMATE: (f64, f64) = (1.75, 0.875);

pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rigger-ops-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A store with jobs 11 and 12 of octo/ml; job 11 has the live instance
/// `i-1` (Vast.ai `provider_id`, label `label`), rented two hours ago; the
/// ledger holds $0.25 spent on an older machine.
pub async fn seeded(name: &str, provider_id: &str, label: &str) -> String {
    let dir = temp_dir(name);
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
            id: INSTANCE.into(),
            job_id: 11,
            label: label.into(),
            runner_name: "rigger-ci-11".into(),
            offer_id: Some(900),
            gpu_name: Some("RTX 4090".into()),
            num_gpus: Some(1),
            dph: Some(0.5),
            location: Some("Texas, US".into()),
            expires_at: now + 3_600_000,
            callback_hash: None,
            // As the engine records it when it rents.
            estimated_hours: Some(ESTIMATE.0),
            estimated_cost: Some(ESTIMATE.1),
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
                provider_id: Some(provider_id.into()),
                ..Default::default()
            },
        ),
    ] {
        assert!(
            s.transition_instance(INSTANCE, from, to, now, patch)
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

/// A simulated Vast.ai over HTTP: `(sim, url)`.
pub async fn vast() -> (SimVast, String) {
    let vast = SimVast::new(
        SimConfig {
            offers: 50,
            ..SimConfig::default()
        },
        Arc::new(SystemClock),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(vast.clone().serve(listener));
    (vast, url)
}

/// Rent a simulated machine directly, as another tool (or rigger) would.
pub fn rent(vast: &SimVast, nth_offer: usize, label: &str) -> i64 {
    vast.rent(
        vast.offer_ids()[nth_offer],
        Rental {
            image: "ubuntu:22.04".into(),
            disk_gb: 10.0,
            label: Some(label.into()),
            ..Default::default()
        },
    )
    .unwrap()
}

/// Run the rigger binary with no RIGGER_* variable from the caller's
/// environment: `(exit code, stdout, stderr)`.
pub fn rigger(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    rigger_in(None, args, env)
}

/// As [`rigger`], run in `dir` when given.
pub fn rigger_in(
    dir: Option<&std::path::Path>,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rigger"));
    c.args(args);
    if let Some(dir) = dir {
        c.current_dir(dir);
    }
    for (k, _) in std::env::vars() {
        if k.starts_with("RIGGER_") {
            c.env_remove(k);
        }
    }
    let out = c.envs(env.iter().copied()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
