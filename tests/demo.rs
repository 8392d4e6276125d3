//! `rigger demo` runs the whole lifecycle and leaks nothing; its `--json`
//! has the shape the issue gives; `--keep-running` leaves the services up.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use rigger::demo::{DemoOptions, run};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_every_job_to_its_end_and_leaks_nothing() {
    let report = run(
        DemoOptions {
            jobs: 3,
            seed: 7,
            // Fast, with room for a loaded machine: a simulated minute is half a second.
            speed: 120.0,
            progress: false,
        },
        false,
    )
    .await
    .unwrap();
    assert_eq!(report.leaked_instances, 0);
    assert_eq!(report.instances_created, 3, "{report:#?}");
    assert_eq!(report.instances_destroyed, 3);
    assert_eq!(report.jobs.len(), 5);
    let ran: Vec<_> = report.jobs.iter().filter(|j| j.gpu.is_some()).collect();
    assert_eq!(ran.len(), 3);
    for j in &ran {
        assert_eq!(j.state, "completed", "{j:?}");
        assert_eq!(j.machines, 1, "{j:?}");
        assert!(j.cost_usd > 0.0 && j.seconds.unwrap() > 0.0, "{j:?}");
        assert!(j.offer_id.is_some() && j.dph.unwrap() > 0.0, "{j:?}");
    }
    assert!(
        ran.iter()
            .any(|j| j.conclusion.as_deref() == Some("failure")),
        "a failed job is torn down too"
    );

    // Cancelled while queued: over, and never given a machine.
    let cancelled = report
        .jobs
        .iter()
        .find(|j| j.label == "cirun-gpu (cancelled)")
        .unwrap();
    assert_eq!(cancelled.state, "cancelled", "{cancelled:?}");
    assert_eq!(cancelled.machines, 0, "{cancelled:?}");
    assert!(
        cancelled.gpu.is_none() && cancelled.offer_id.is_none(),
        "{cancelled:?}"
    );
    assert_eq!(cancelled.cost_usd, 0.0);

    // No offer anywhere: it waited with a diagnosis until GitHub (here the
    // demo) gave up on it, and cost nothing.
    let no_offer = report
        .jobs
        .iter()
        .find(|j| j.label == "cirun-h200x8")
        .unwrap();
    assert_eq!(no_offer.state, "cancelled", "{no_offer:?}");
    assert_eq!(no_offer.machines, 0, "{no_offer:?}");
    let reason = no_offer.reason.as_deref().unwrap();
    assert!(reason.starts_with("0 offers: "), "{no_offer:?}");
    assert_eq!(no_offer.cost_usd, 0.0);

    let total: f64 = report.jobs.iter().map(|j| j.cost_usd).sum();
    assert!((report.total_cost_usd - total).abs() < 1e-9);
    check_json_shape(&serde_json::to_value(&report).unwrap());
}

/// The issue's `--json`: `{"jobs":[{"id","state","conclusion","gpu",
/// "offer_id","dph","seconds","cost_usd"}],"instances_created",
/// "instances_destroyed","leaked_instances","total_cost_usd"}`; more keys
/// per job are allowed.
fn check_json_shape(v: &Value) {
    for key in [
        "instances_created",
        "instances_destroyed",
        "leaked_instances",
    ] {
        assert!(v[key].is_u64(), "{key}: {v}");
    }
    assert!(v["total_cost_usd"].is_number(), "{v}");
    let jobs = v["jobs"].as_array().expect("jobs is a list");
    assert!(!jobs.is_empty());
    let string_or_null = |x: &Value| x.is_string() || x.is_null();
    let number_or_null = |x: &Value| x.is_number() || x.is_null();
    for j in jobs {
        assert!(j["id"].is_i64(), "id: {j}");
        assert!(j["state"].is_string(), "state: {j}");
        assert!(string_or_null(&j["conclusion"]), "conclusion: {j}");
        assert!(string_or_null(&j["gpu"]), "gpu: {j}");
        assert!(
            j["offer_id"].is_i64() || j["offer_id"].is_null(),
            "offer_id: {j}"
        );
        assert!(number_or_null(&j["dph"]), "dph: {j}");
        assert!(number_or_null(&j["seconds"]), "seconds: {j}");
        assert!(j["cost_usd"].is_number(), "cost_usd: {j}");
        for key in ["conclusion", "gpu", "offer_id", "dph", "seconds"] {
            assert!(j.get(key).is_some(), "{key} missing (not even null): {j}");
        }
    }
}

#[test]
fn the_binary_prints_one_json_object() {
    let out = Command::new(env!("CARGO_BIN_EXE_rigger"))
        .args(["demo", "--jobs", "3", "--seed", "7", "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    check_json_shape(&v);
    assert_eq!(v["leaked_instances"], 0, "{v}");
    assert_eq!(v["instances_created"], 3, "{v}");
    assert_eq!(v["instances_destroyed"], 3, "{v}");
    assert_eq!(v["jobs"].as_array().unwrap().len(), 5, "{v}");
}

#[test]
fn keep_running_leaves_the_services_up_and_prints_their_urls() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rigger"))
        .args(["demo", "--jobs", "1", "--json", "--keep-running"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut urls = std::collections::BTreeMap::new();
    let mut seen = Vec::new();
    // The URLs come after the demo's end; the read ends if the demo dies.
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        seen.push(line.clone());
        let words: Vec<&str> = line.split_whitespace().collect();
        if let [name, url] = words[..]
            && url.starts_with("http://")
        {
            urls.insert(name.to_string(), url.to_string());
        }
        if urls.len() == 3 {
            break;
        }
    }
    let check = || -> Result<(), String> {
        let rigger = urls
            .get("rigger")
            .ok_or(format!("no rigger URL in {seen:?}"))?;
        for name in ["github", "vast"] {
            urls.get(name).ok_or(format!("no {name} URL in {seen:?}"))?;
        }
        let health = http_status(&format!("{rigger}/healthz"))?;
        if health != 200 {
            return Err(format!("{rigger}/healthz answered {health}"));
        }
        Ok(())
    };
    let outcome = check();
    let _ = child.kill();
    let _ = child.wait();
    outcome.unwrap();
}

/// The status code of a GET, on a runtime of its own (the test is sync).
fn http_status(url: &str) -> Result<u16, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(async {
            reqwest::get(url)
                .await
                .map(|r| r.status().as_u16())
                .map_err(|e| format!("GET {url}: {e}"))
        })
}
