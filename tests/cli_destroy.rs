//! `rigger instances destroy-all`: lists first, destroys with `--yes`, and
//! never touches a machine without this controller's label.

use std::sync::Arc;

use rigger::engine::ports::ManualClock;
use rigger::sim::github::{SimGithub, SimGithubConfig};
use rigger::sim::vast::{Rental, SimConfig, SimVast};

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_all_takes_ours_and_only_ours() {
    let clock = ManualClock::new(1_763_800_000_000);
    let vast = SimVast::new(
        SimConfig {
            offers: 50,
            ..SimConfig::default()
        },
        Arc::new(clock.clone()),
    );
    let github = SimGithub::new(SimGithubConfig::default(), Arc::new(clock.clone())).unwrap();
    let vast_url = serve(vast.router()).await;
    let github_url = serve(github.router()).await;
    let offers = vast.offer_ids();
    let rent = |offer: i64, label: &str| {
        vast.rent(
            offer,
            Rental {
                image: "ubuntu:22.04".into(),
                disk_gb: 10.0,
                label: Some(label.into()),
                ..Default::default()
            },
        )
        .unwrap()
    };
    let ours = rent(offers[0], "rigger:ops:77:abcdef0123");
    let theirs = rent(offers[1], "rigger:other:77:abcdef0123");
    let dir = std::env::temp_dir().join(format!("rigger-destroy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    let run = |yes: bool| {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_rigger"));
        c.args(["instances", "destroy-all"]);
        if yes {
            c.arg("--yes");
        }
        c.env(
            "RIGGER_DATABASE_URL",
            format!("sqlite://{}", dir.join("r.db").display()),
        )
        .env("RIGGER_CONTROLLER_ID", "ops")
        .env("RIGGER_WEBHOOK_SECRET", "s")
        .env("RIGGER_GITHUB_APP_ID", github.app_id().to_string())
        .env(
            "RIGGER_GITHUB_PRIVATE_KEY",
            github.private_key_pem().expose(),
        )
        .env("RIGGER_GITHUB_API_URL", &github_url)
        .env("RIGGER_VAST_API_KEY", "sim-vast-key")
        .env("RIGGER_VAST_API_URL", &vast_url)
        .env_remove("RIGGER_CONFIG");
        c.output()
    };
    let out = run(false).await.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(&ours.to_string()) && text.contains("--yes"),
        "{text}"
    );
    assert!(!text.contains(&theirs.to_string()), "{text}");
    assert_eq!(
        vast.live_instances().len(),
        2,
        "nothing destroyed without --yes"
    );

    let out = run(true).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let live: Vec<i64> = vast
        .live_instances()
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    assert_eq!(
        live,
        vec![theirs],
        "ours destroyed, the other controller's untouched"
    );
}
