//! The real `vastai` 1.9.1 CLI against the simulated Vast.ai: every command
//! rigger's users would rehearse with. `.ci/run` installs the CLI into a
//! virtual environment and sets `RIGGER_VASTAI_CLI` to it; without it the
//! test says so and skips. The CLI exits 0 even on errors, so the checks
//! read its output.

use std::path::PathBuf;
use std::sync::Arc;

use rigger::engine::ports::ManualClock;
use rigger::sim::vast::{Limits, SimConfig, SimVast};
use serde_json::Value;

#[path = "support/vastai.rs"]
mod vastai;
use vastai::Cli;

fn offers_of(v: &Value) -> Vec<Value> {
    v.as_array()
        .cloned()
        .unwrap_or_else(|| panic!("a list of offers: {v}"))
}

#[tokio::test]
async fn the_real_vastai_cli_works_against_rigger_sim_vast() {
    let Some(bin) = std::env::var_os("RIGGER_VASTAI_CLI").map(PathBuf::from) else {
        eprintln!(
            "skipped: set RIGGER_VASTAI_CLI to a vastai 1.9.1 executable (.ci/run installs one)"
        );
        return;
    };
    let clock = ManualClock::new(1_700_000_000_000);
    let sim = SimVast::new(
        SimConfig {
            boot_delay_ms: 60_000,
            // Vast.ai's documented rate limits, as the real CLI meets them.
            limits: Limits::documented(),
            ..SimConfig::default()
        },
        Arc::new(clock.clone()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = sim.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let home = std::env::temp_dir().join(format!("rigger-vastai-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    let cli = Cli {
        bin,
        url,
        home,
        clock: clock.clone(),
    };

    // Underscored names, a GPU-RAM floor in GB, an `in` list, reliability and
    // an order, as users write them.
    let offers = offers_of(
        &cli.json(&[
            "search", "offers",
            "gpu_name=RTX_4090 num_gpus=1 gpu_ram>=24 cpu_ram>=8 disk_space>=30 geolocation in [US,CA] reliability>0.98",
            "-o", "dph_total", "--limit", "10", "--storage", "30", "--raw",
        ])
        .await,
    );
    assert!(!offers.is_empty() && offers.len() <= 10, "{}", offers.len());
    for o in &offers {
        assert_eq!(o["gpu_name"], "RTX 4090");
        assert_eq!(o["num_gpus"], 1);
        assert!(o["gpu_ram"].as_f64().unwrap() >= 24_000.0);
        assert!(o["reliability"].as_f64().unwrap() > 0.98);
        let g = o["geolocation"].as_str().unwrap();
        assert!(g.ends_with("US") || g.ends_with("CA"), "{g}");
    }
    let prices: Vec<f64> = offers
        .iter()
        .map(|o| o["dph_total"].as_f64().unwrap())
        .collect();
    assert!(prices.windows(2).all(|w| w[0] <= w[1]), "{prices:?}");

    let two_models = offers_of(
        &cli.json(&[
            "search",
            "offers",
            "gpu_name in [RTX_4090,A100_SXM4] num_gpus=1",
            "--raw",
        ])
        .await,
    );
    assert!(two_models.iter().any(|o| o["gpu_name"] == "A100 SXM4"));
    assert!(
        two_models
            .iter()
            .all(|o| o["gpu_name"] == "RTX 4090" || o["gpu_name"] == "A100 SXM4")
    );

    let desc = offers_of(
        &cli.json(&[
            "search",
            "offers",
            "gpu_ram>=80 geolocation=US",
            "-o",
            "dph_total-",
            "--limit",
            "20",
            "--raw",
        ])
        .await,
    );
    let prices: Vec<f64> = desc
        .iter()
        .map(|o| o["dph_total"].as_f64().unwrap())
        .collect();
    assert!(
        !prices.is_empty() && prices.windows(2).all(|w| w[0] >= w[1]),
        "{prices:?}"
    );
    assert!(
        desc.iter()
            .all(|o| o["geolocation"].as_str().unwrap().ends_with("US"))
    );

    let bids = offers_of(
        &cli.json(&[
            "search",
            "offers",
            "-i",
            "num_gpus=1 gpu_name=RTX_3090",
            "-o",
            "min_bid",
            "--raw",
        ])
        .await,
    );
    assert!(bids.iter().all(|o| o["gpu_name"] == "RTX 3090"));

    // Rent the cheapest, as a user would.
    let offer = offers[0]["id"].as_i64().unwrap().to_string();
    let created = cli
        .json(&[
            "create",
            "instance",
            &offer,
            "--image",
            "nvidia/cuda:12.0.0-base-ubuntu22.04",
            "--disk",
            "30",
            "--label",
            "ci-runner-42",
            "--env",
            "-e RUNNER_TOKEN=abc123 -p 8080:8080",
            "--onstart-cmd",
            "echo boot",
            "--ssh",
            "--direct",
            "--cancel-unavail",
            "--raw",
        ])
        .await;
    assert_eq!(created["success"], true, "{created}");
    let id = created["new_contract"].as_i64().unwrap().to_string();

    // The same offer again: rented once only. The CLI reports and exits 0.
    let (_, err) = cli
        .run(&[
            "create",
            "instance",
            &offer,
            "--image",
            "ubuntu:22.04",
            "--disk",
            "10",
            "--cancel-unavail",
        ])
        .await;
    assert!(
        err.contains("Failed with error 410") && err.contains("no longer available"),
        "{err}"
    );

    let shown = cli.json(&["show", "instance", &id, "--raw"]).await;
    assert_eq!(shown["label"], "ci-runner-42");
    assert_eq!(shown["actual_status"], "loading");
    assert_eq!(shown["extra_env"]["RUNNER_TOKEN"], "abc123", "{shown}");

    clock.advance_ms(60_000);
    let all = cli.json(&["show", "instances", "--raw"]).await;
    let row = all
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"].as_i64().map(|n| n.to_string()).as_deref() == Some(id.as_str()))
        .expect("listed")
        .clone();
    assert_eq!(row["actual_status"], "running");
    let (ids, _) = cli.run(&["show", "instances", "-q"]).await;
    assert_eq!(ids.trim(), id);

    let (out, err) = cli.run(&["label", "instance", &id, "ci-runner-done"]).await;
    assert_eq!(
        out.trim(),
        format!("label for {id} set to ci-runner-done."),
        "{err}"
    );

    sim.append_log(id.parse().unwrap(), "\nrunner registered\n\n");
    let (log, err) = cli.run(&["logs", &id, "--tail", "100"]).await;
    assert!(
        log.contains("container started") && log.contains("runner registered"),
        "{log}{err}"
    );

    let (out, err) = cli.run(&["destroy", "instance", &id, "-y"]).await;
    assert_eq!(out.trim(), format!("destroying instance {id}."), "{err}");
    let gone = cli.json(&["show", "instance", &id, "--raw"]).await;
    assert_eq!(gone, serde_json::json!({"instances": null}));
    assert_eq!(sim.ledger().len(), 1, "billed once, at destroy");
}
