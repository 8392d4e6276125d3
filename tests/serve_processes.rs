//! `rigger serve` as an operator runs it: three processes — `rigger sim
//! vast`, `rigger sim github` and `rigger serve` — talking over loopback.
//! Queued jobs become machines; each machine dies when its job ends; a
//! stopped rigger destroys nothing, and the next one picks up where it was.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const CIRUN: &str = include_str!("../examples/.cirun.yml");

/// Start a `rigger` subcommand and read its stdout until a line starting
/// with `prefix`; returns the child and the rest of that line.
async fn start(args: &[&str], prefix: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rigger"))
        .args(args)
        .env("VASTAI_NO_UPDATE_CHECK", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.trim().strip_prefix(prefix) {
                return rest.trim().to_string();
            }
        }
        panic!(
            "`rigger {}` ended before printing `{prefix}`",
            args.join(" ")
        );
    })
    .await
    .expect("the simulator prints its URL");
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, found)
}

/// A port the OS says is free now, for rigger's listener: the simulated
/// GitHub must know rigger's webhook URL before rigger starts.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct World {
    dir: std::path::PathBuf,
    vast_url: String,
    github_url: String,
    app_id: String,
    port: u16,
    http: reqwest::Client,
}

impl World {
    fn serve(&self) -> Child {
        Command::new(env!("CARGO_BIN_EXE_rigger"))
            .arg("serve")
            .env("RIGGER_LISTEN", format!("127.0.0.1:{}", self.port))
            .env(
                "RIGGER_DATABASE_URL",
                format!("sqlite://{}", self.dir.join("rigger.db").display()),
            )
            .env("RIGGER_CONTROLLER_ID", "procs")
            .env("RIGGER_WEBHOOK_SECRET", "s3cret")
            .env("RIGGER_GITHUB_APP_ID", &self.app_id)
            .env(
                "RIGGER_GITHUB_PRIVATE_KEY_FILE",
                self.dir.join("app.pem").display().to_string(),
            )
            .env("RIGGER_GITHUB_API_URL", &self.github_url)
            .env("RIGGER_VAST_API_URL", &self.vast_url)
            .env("RIGGER_VAST_API_KEY", "sim-vast-key")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }

    async fn ready(&self) {
        let url = format!("http://127.0.0.1:{}/readyz", self.port);
        for _ in 0..200 {
            if let Ok(r) = self.http.get(&url).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("rigger serve did not become ready within 20 s");
    }

    async fn post(&self, url: String, body: Value) -> Value {
        let r = self.http.post(url).json(&body).send().await.unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        r.json().await.unwrap_or(Value::Null)
    }

    async fn live_machines(&self) -> usize {
        let state: Value = self
            .http
            .get(format!("{}/sim/state", self.vast_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        state["instances"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["phase"] != "destroyed")
            .count()
    }

    /// Wait (the processes run on real time) until `n` machines are alive.
    async fn until_live(&self, n: usize) {
        for _ in 0..300 {
            if self.live_machines().await == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "expected {n} live machines within 30 s, have {}",
            self.live_machines().await
        );
    }

    async fn queue(&self, label: &str) -> i64 {
        let job = self
            .post(
                format!("{}/sim/jobs", self.github_url),
                json!({"repo": "acme/ml", "labels": [label], "head_sha": "8f3c1e2d",
                       "duration_s": 600, "conclusion": "success"}),
            )
            .await;
        job["job_id"].as_i64().unwrap()
    }

    async fn cancel(&self, job: i64) {
        self.post(
            format!("{}/sim/jobs/{job}/cancel", self.github_url),
            json!({}),
        )
        .await;
    }
}

async fn stop(mut rigger: Child) -> std::process::ExitStatus {
    let pid = rigger.id().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    tokio::time::timeout(Duration::from_secs(20), rigger.wait())
        .await
        .expect("rigger stops within 20 s of SIGTERM")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rigger_serve_rents_for_queued_jobs_and_destroys_each_machine_when_its_job_ends() {
    let dir = std::env::temp_dir().join(format!("rigger-procs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let (_vast, vast_url) = start(
        &[
            "sim",
            "vast",
            "--listen",
            "127.0.0.1:0",
            "--offers",
            "400",
            "--seed",
            "5",
        ],
        "simulated Vast.ai listening on",
    )
    .await;
    let key = dir.join("app.pem").display().to_string();
    let webhook = format!("http://127.0.0.1:{port}/webhook");
    let (_github, github_url) = start(
        &[
            "sim",
            "github",
            "--listen",
            "127.0.0.1:0",
            "--webhook-url",
            &webhook,
            "--webhook-secret",
            "s3cret",
            "--key-out",
            &key,
            "--app-id",
            "4242",
        ],
        "simulated GitHub listening on",
    )
    .await;
    let http = reqwest::Client::new();
    let w = World {
        dir,
        vast_url,
        github_url,
        app_id: "4242".into(),
        port,
        http,
    };
    w.post(
        format!("{}/sim/repos", w.github_url),
        json!({"repo": "acme/ml", "files": {".cirun.yml": CIRUN}, "collaborators": {"octocat": "write"}}),
    )
    .await;

    let rigger = w.serve();
    w.ready().await;
    let first = w.queue("cirun-gpu--31").await;
    let second = w.queue("cirun-gpu--32").await;
    w.until_live(2).await;

    w.cancel(first).await;
    w.until_live(1).await;

    // rigger stops: cleanly, and without touching the machine still in use.
    let status = stop(rigger).await;
    assert!(
        status.success(),
        "rigger serve exits 0 on SIGTERM: {status}"
    );
    assert_eq!(w.live_machines().await, 1, "stopping destroys nothing");

    // The next rigger hears that the second job ended and destroys its machine.
    let rigger = w.serve();
    w.ready().await;
    w.cancel(second).await;
    w.until_live(0).await;
    assert!(stop(rigger).await.success());
}
