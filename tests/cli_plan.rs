//! `rigger plan` against the simulated Vast.ai, as a user runs it.

use std::process::Output;
use std::sync::Arc;

use rigger::engine::ports::ManualClock;
use rigger::sim::vast::limits::Endpoint;
use rigger::sim::vast::{SimConfig, SimVast};
use serde_json::Value;

async fn sim() -> String {
    let sim = SimVast::new(SimConfig::default(), Arc::new(ManualClock::new(0)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = sim.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

async fn plan(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_rigger"))
        .arg("plan")
        .args(args)
        .env_remove("VAST_URL")
        .env_remove("VAST_API_KEY")
        .output()
        .await
        .unwrap()
}

fn write(name: &str, yaml: &str) -> String {
    let dir = std::env::temp_dir().join(format!("rigger-plan-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(".cirun.yml");
    std::fs::write(&p, yaml).unwrap();
    p.display().to_string()
}

#[tokio::test]
async fn the_example_shows_ranked_offers_with_totals() {
    let url = sim().await;
    let out = plan(&["examples/.cirun.yml", "--vast-url", &url]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("runner `gpu-container`"), "{text}");
    assert!(text.contains("query: {"), "{text}");
    assert!(text.contains("matching offers; the best 5"), "{text}");
    assert!(text.contains("1× RTX 4090"), "{text}");
}

#[tokio::test]
async fn json_lists_offers_cheapest_total_first() {
    let url = sim().await;
    let out = plan(&[
        "examples/.cirun.yml",
        "--vast-url",
        &url,
        "--json",
        "--runner",
        "gpu-any-24gb",
        "--expected-minutes",
        "240",
        "--top",
        "10",
    ])
    .await;
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["expected_reference_hours"], 4.0);
    let runners = v["runners"].as_array().unwrap();
    assert_eq!(runners.len(), 1);
    let offers = runners[0]["candidates"][0]["offers"].as_array().unwrap();
    assert_eq!(offers.len(), 10);
    let totals: Vec<f64> = offers
        .iter()
        .map(|o| o["estimated_total"].as_f64().unwrap())
        .collect();
    assert!(totals.windows(2).all(|w| w[0] <= w[1]), "{totals:?}");
    for o in offers {
        let (dph, hours, total) = (
            o["dph"].as_f64().unwrap(),
            o["estimated_hours"].as_f64().unwrap(),
            o["estimated_total"].as_f64().unwrap(),
        );
        // total = $/h × (hours on this GPU + 5 min of boot).
        assert!((total - dph * (hours + 5.0 / 60.0)).abs() < 1e-9);
        assert!(o["gpu_ram_gb"].as_f64().unwrap() >= 24.0);
    }
}

#[tokio::test]
async fn when_nothing_matches_it_names_the_filter_and_what_would() {
    let url = sim().await;
    let file = write(
        "nomatch",
        "runners:\n  - name: big\n    cloud: vast_ai\n    instance_type: 1xRTX_4090\n    region: US\n    labels: [cirun-big]\n    extra_config:\n      disk_space: 1990\n",
    );
    let out = plan(&[&file, "--vast-url", &url, "--json"]).await;
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = v["runners"][0]["candidates"][0]["diagnosis"]
        .as_str()
        .unwrap();
    assert!(d.starts_with("0 offers: "), "{d}");
    assert!(
        d.contains("1× RTX 4090 listed, none in US, with disk ≥ 1990 GB"),
        "{d}"
    );
}

#[tokio::test]
async fn broken_configs_and_unreachable_apis_say_what_to_do() {
    let file = write(
        "broken",
        "runners:\n  - name: x\n    cloud: vast_ai\n    instance_typ: 1xRTX_4090\n",
    );
    let out = plan(&[&file, "--vast-url", "http://127.0.0.1:9"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("instance_type") && err.contains("rigger validate"),
        "{err}"
    );

    let out = plan(&["examples/.cirun.yml", "--vast-url", "http://127.0.0.1:9"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("searching Vast.ai at http://127.0.0.1:9"),
        "{err}"
    );
}

/// Offers under 97% reliability are flagged: `!` after the percentage in
/// the table, `low_reliability` in JSON; the others are not.
#[tokio::test]
async fn low_reliability_hosts_are_flagged_in_text_and_json() {
    let url = sim().await;
    let file = write(
        "flaky",
        "runners:\n  - name: any\n    cloud: vast_ai\n    instance_type: 1xANY\n    labels: [cirun-any]\n    extra_config:\n      min_gpu_ram: 8\n      min_reliability: 0.9\n",
    );
    let out = plan(&[&file, "--vast-url", &url, "--json", "--top", "60"]).await;
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let offers = v["runners"][0]["candidates"][0]["offers"]
        .as_array()
        .unwrap();
    let mut flagged = 0;
    for o in offers {
        let low = o["reliability"].as_f64().unwrap() < 0.97;
        assert_eq!(o["low_reliability"], low, "{o}");
        flagged += usize::from(low);
    }
    assert!(
        flagged > 0 && flagged < offers.len(),
        "{flagged} of {}",
        offers.len()
    );

    let out = plan(&[&file, "--vast-url", &url, "--top", "60"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.contains('%') && l.contains('$'))
        .collect();
    assert_eq!(rows.len(), offers.len(), "{text}");
    for row in rows {
        let id = row.split_whitespace().last().unwrap();
        let o = offers
            .iter()
            .find(|o| o["offer_id"].as_i64() == id.parse().ok())
            .unwrap_or_else(|| panic!("{row}"));
        let (_, after) = row.split_once('%').unwrap();
        assert_eq!(
            after.starts_with('!'),
            o["low_reliability"] == true,
            "{row}"
        );
    }
    assert!(text.contains("! reliability below 97%"), "{text}");
}

/// Someone else on the same key has spent the minute's ten searches (the
/// simulated Vast.ai's clock stands still, so the minute never passes):
/// `rigger plan` keeps to Vast.ai's limits through the same limiter as
/// `rigger serve`. Vast.ai refuses its first search once; it sends no
/// more into the refusal and says when to try again.
#[tokio::test]
async fn plan_keeps_to_vasts_search_limit_and_says_when_to_try_again() {
    let sim = SimVast::new(SimConfig::default(), Arc::new(ManualClock::new(0)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = sim.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let other = reqwest::Client::new();
    for _ in 0..10 {
        let r = other
            .post(format!("{url}/api/v0/bundles/"))
            .bearer_auth("sim-vast-key")
            .json(&serde_json::json!({"limit": 1}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "the other tool's search: {r:?}");
    }
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rigger"))
        .args(["plan", "examples/.cirun.yml", "--vast-url", &url])
        .env_remove("VAST_URL")
        .env_remove("RIGGER_VAST_RATE_LIMITS")
        .env("VAST_API_KEY", "sim-vast-key")
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert_eq!(
        sim.refused(Endpoint::Search),
        1,
        "one search refused, none sent into the refusal: {err}"
    );
    assert!(err.contains("rate limit"), "says why: {err}");
}
