//! rigger's requests on the wire, as the real Vast.ai documents them, against
//! the simulated Vast.ai that enforces what the documentation says: the
//! environment's limits, the headers, listing, SSH keys, bid prices and
//! compressed answers.

#[macro_use]
mod harness;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use harness::Story;
use rigger::bootstrap::{self, BootstrapSpec};
use rigger::cloud::vast::client::{RetryPolicy, VastClient};
use rigger::cloud::{CloudProvider, InstanceStatus, LaunchSpec, ProviderError};
use rigger::config::model::SetupInfo;
use rigger::engine::ports::ManualClock;
use rigger::engine::state::JobState;
use rigger::settings::Secret;
use rigger::sim::github::NewJob;
use rigger::sim::vast::{Limits, SimConfig, SimVast};

struct Wire {
    sim: SimVast,
    url: String,
    client: VastClient,
}

async fn wire(offers: usize) -> Wire {
    let clock = ManualClock::new(1_700_000_000_000);
    let sim = SimVast::new(
        SimConfig {
            offers,
            boot_delay_ms: 30_000,
            // The client's answer to each kind of reply on a frozen clock,
            // without a limiter: Vast.ai's limits would refuse calls made at
            // one instant. The stories that are about the limits set them.
            limits: Limits::none(),
            ..SimConfig::default()
        },
        Arc::new(clock),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = sim.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = VastClient::with_retry(&url, Secret::new("sim-vast-key"), fast_retry());
    Wire { sim, url, client }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 2,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        timeout: Duration::from_secs(10),
    }
}

/// What rigger renders for a machine, with a JIT config as long as GitHub's.
fn bootstrap_spec(vast_url: &str) -> BootstrapSpec {
    BootstrapSpec {
        vm: false,
        vast_url: vast_url.into(),
        runner_url: "https://github.com/actions/runner/releases/download/v2.330.0/actions-runner-linux-{arch}-2.330.0.tar.gz".into(),
        runner_arch: "x64".into(),
        runner_sha256: Some("ab".repeat(32)),
        allow_unverified: false,
        preinstalled_runner: None,
        gpu_count: 1,
        gpu_models: vec!["RTX 4090".into()],
        idle_timeout_secs: 600,
        jit_config: Secret::new("J".repeat(2_400)),
        setup_info: vec![SetupInfo {
            group: "rigger".into(),
            detail: "1× RTX 4090 in US at $0.400/h".into(),
        }],
        env_vars: BTreeMap::from([("HF_HOME".into(), "/cache".into())]),
        callback: Some(("https://rigger.example/machine".into(), Secret::new("t".repeat(43)))),
    }
}

fn launch(offer_id: i64, env: BTreeMap<String, String>) -> LaunchSpec {
    LaunchSpec {
        offer_id,
        image: "nvidia/cuda:12.4.1-base-ubuntu22.04".into(),
        disk_gb: 30.0,
        vm: false,
        bid_price: None,
        label: "rigger:wire:1:a".into(),
        onstart: bootstrap::loader(),
        env,
    }
}

#[tokio::test]
async fn the_environment_rigger_renders_is_within_vast_ais_limits() {
    let w = wire(200).await;
    let rendered = bootstrap::render(&bootstrap_spec(&w.url)).unwrap();
    let offer = w.sim.offer_ids()[0];
    let id = w
        .client
        .launch(&launch(offer, rendered.env))
        .await
        .expect("Vast.ai takes every variable rigger sends");
    assert!(!id.is_empty());
}

#[tokio::test]
async fn the_simulated_vast_ai_refuses_an_environment_beyond_its_documented_limits() {
    let w = wire(200).await;
    let offers = w.sim.offer_ids();
    // One variable of 257 characters as `KEY=value`.
    let long = BTreeMap::from([("K".to_string(), "v".repeat(255))]);
    match w.client.launch(&launch(offers[0], long)).await {
        Err(ProviderError::Invalid(msg)) => assert!(msg.contains("env variable K"), "{msg}"),
        other => panic!("{other:?}"),
    }
    // 256 is taken.
    let fits = BTreeMap::from([("K".to_string(), "v".repeat(254))]);
    w.client.launch(&launch(offers[1], fits)).await.unwrap();
    // Over 32768 in all, each variable within its limit.
    let many: BTreeMap<String, String> = (0..140)
        .map(|i| (format!("V{i:03}"), "v".repeat(240)))
        .collect();
    match w.client.launch(&launch(offers[2], many)).await {
        Err(ProviderError::Invalid(msg)) => assert!(msg.contains("in all"), "{msg}"),
        other => panic!("{other:?}"),
    }
}

/// A runner whose `env_vars` Vast.ai could never take fails its job with
/// the reason, before a runner is registered or a create is sent.
async fn env_vars_too_large_fail_the_job_without_a_create() {
    let s = Story::begin("envlimit").await;
    let vars: String = (0..150)
        .map(|i| format!("        V{i:03}: {}\n", "w".repeat(200)))
        .collect();
    let cirun = format!(
        "runners:\n  - name: big\n    cloud: vast_ai\n    instance_type: 1xRTX_4090\n    labels: [cirun-big]\n    extra_config:\n      env_vars:\n{vars}"
    );
    s.github.add_repo("acme/big", &[(".cirun.yml", &cirun)]);
    let job = s.github.queue_job(NewJob {
        repo: "acme/big".into(),
        labels: vec!["cirun-big--7".into()],
        head_sha: "8f3c1e2d".into(),
        fork: false,
        actor: "octocat".into(),
        duration_ms: 600_000,
        conclusion: "success".into(),
    });
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(s.job_state(job).await, JobState::Failed);
    assert_eq!(s.vast.requests("PUT /api/v0/asks/:id"), 0, "no create sent");
    assert!(s.github.runners().is_empty(), "no runner registered");
    let checks = s.github.check_runs();
    let said = checks
        .iter()
        .map(|c| format!("{} {} {:?}", c.title, c.summary, c.text))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(said.contains("env_vars"), "{said}");
    s.nothing_leaked().await;
}

/// The rent-time check behind `rigger validate`'s: `validate` leaves room
/// for rigger's own variables at generous sizes, but an operator's setting
/// can take more (here a 4000-character `runner.preinstalled_path`, which
/// settings allow). `env_vars` that pass `validate` then no longer fit
/// Vast.ai's 32768: the job fails with the reason when its machine is
/// rented, its JIT runner is given back, and no create is sent.
async fn an_environment_too_large_only_at_rent_time_fails_without_a_create() {
    let path = format!("/opt/{}", "p".repeat(4_000));
    let s = Story::begin_with(
        "envlimit-rent",
        &[("RIGGER_RUNNER_PREINSTALLED_PATH", path.as_str())],
    )
    .await;
    // Just under what `validate` allows.
    let budget = bootstrap::user_env_budget();
    let mut vars = BTreeMap::new();
    let mut n = 0;
    while bootstrap::env_total(&vars) + 300 < budget {
        vars.insert(format!("V{n:03}"), "w".repeat(200));
        n += 1;
    }
    let lines: String = vars
        .iter()
        .map(|(k, v)| format!("        {k}: {v}\n"))
        .collect();
    let cirun = format!(
        "runners:\n  - name: big\n    cloud: vast_ai\n    instance_type: 1xRTX_4090\n    labels: [cirun-big]\n    extra_config:\n      env_vars:\n{lines}"
    );
    let parsed = rigger::config::parse_file(
        std::path::Path::new(".cirun.yml"),
        &cirun,
        rigger::config::FileKind::Repository,
    );
    assert_eq!(parsed.diagnostics.errors(), 0, "{}", parsed.render());
    s.github.add_repo("acme/big", &[(".cirun.yml", &cirun)]);
    let job = s.github.queue_job(NewJob {
        repo: "acme/big".into(),
        labels: vec!["cirun-big--8".into()],
        head_sha: "8f3c1e2d".into(),
        fork: false,
        actor: "octocat".into(),
        duration_ms: 600_000,
        conclusion: "success".into(),
    });
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(s.job_state(job).await, JobState::Failed);
    assert_eq!(s.vast.requests("PUT /api/v0/asks/:id"), 0, "no create sent");
    assert!(
        s.github.runners().is_empty(),
        "the JIT runner registered for it is deleted"
    );
    let said = s
        .github
        .check_runs()
        .iter()
        .map(|c| format!("{} {} {:?}", c.title, c.summary, c.text))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(said.contains("too large for Vast.ai"), "{said}");
    s.nothing_leaked().await;
}

both_databases!(
    env_vars_too_large_fail_the_job_without_a_create,
    an_environment_too_large_only_at_rent_time_fails_without_a_create,
);

/// `rigger sim vast` as its own process, killed when the test ends.
struct SimProcess {
    child: std::process::Child,
    url: String,
    dir: std::path::PathBuf,
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_sim_process(name: &str, extra: &[&str]) -> SimProcess {
    use std::io::BufRead;
    let dir = std::env::temp_dir().join(format!("rigger-wire-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rigger"))
        .args(["sim", "vast", "--listen", "127.0.0.1:0", "--offers", "50"])
        .args(["--boot-delay", "0s", "--limits", "none", "--sandbox-dir"])
        .arg(&dir)
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start rigger sim vast");
    let out = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(out).lines();
    let first = lines.next().expect("it says where it listens").unwrap();
    let url = first
        .strip_prefix("simulated Vast.ai listening on ")
        .unwrap_or_else(|| panic!("{first}"))
        .to_string();
    // Keep reading its output so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    SimProcess { child, url, dir }
}

#[tokio::test]
async fn a_standalone_simulated_vast_ai_runs_each_instances_real_onstart() {
    let sim = start_sim_process("onstart", &["--run-onstart"]);
    let client = VastClient::with_retry(&sim.url, Secret::new("sim-vast-key"), fast_retry());
    let http = reqwest::Client::new();
    let offers: serde_json::Value = http
        .post(format!("{}/api/v0/bundles/", sim.url))
        .json(&serde_json::json!({"limit": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let offer = offers["offers"][0]["id"].as_i64().expect("an offer");
    let mut spec = launch(
        offer,
        BTreeMap::from([("GREETING".into(), "onstart-ran".into())]),
    );
    // The loader's shape: the `args` run type, `sh -c` the script.
    spec.onstart = "#!/bin/sh\necho \"$GREETING in $CONTAINER_ID\"; exit 3\n".into();
    let id = client.launch(&spec).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let log = loop {
        let log = http
            .get(format!("{}/static/logs/{id}.txt", sim.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if log.contains("exited with status") || std::time::Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(log.contains(&format!("onstart-ran in {id}")), "{log}");
    assert!(log.contains("exited with status 3"), "{log}");
    let status = client.get(&id).await.unwrap().expect("still listed").status;
    assert_eq!(status, InstanceStatus::Exited, "the script's end stops it");
    assert!(
        sim.dir.join(format!("instance-{id}")).is_dir(),
        "its sandbox"
    );
}

fn any_offer() -> rigger::cloud::OfferFilter {
    rigger::cloud::OfferFilter {
        num_gpus: 1,
        gpu_names: vec![],
        min_gpu_ram_mb: None,
        disk_gb: 10.0,
        min_ram_gb: None,
        country: None,
        vm: false,
        min_cuda: None,
        min_reliability: 0.0,
        min_inet_down: 0.0,
        verified: false,
        interruptible: false,
        max_dph: None,
        limit: 20,
        cpu_arch: "amd64".into(),
        gpu_arch: Some("nvidia".into()),
        min_duration_s: None,
    }
}

#[tokio::test]
async fn the_ssh_keys_are_read_from_the_field_vast_ai_documents() {
    let w = wire(50).await;
    w.sim
        .add_ssh_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0 me@laptop");
    assert_eq!(
        w.client.ssh_keys().await.unwrap(),
        vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0 me@laptop".to_string()]
    );
    // So a VM, which needs one, is rented.
    let offers = w.client.search(&any_offer()).await.unwrap();
    let mut spec = launch(offers[0].id, BTreeMap::new());
    spec.vm = true;
    w.client.launch(&spec).await.expect("the account has a key");
}

#[tokio::test]
async fn without_a_key_no_authorization_header_is_sent() {
    let w = wire(50).await;
    let anonymous = VastClient::with_retry(&w.url, Secret::new(""), fast_retry());
    // The search needs no key; an empty `Bearer ` is refused as a bad one.
    let offers = anonymous.search(&any_offer()).await.unwrap();
    assert!(!offers.is_empty());
    assert!(matches!(
        anonymous.list("rigger:").await,
        Err(ProviderError::Unauthorized(_))
    ));
    // The simulated Vast.ai refuses an empty bearer even where none is needed.
    let r = reqwest::Client::new()
        .post(format!("{}/api/v0/bundles/", w.url))
        .header("Authorization", "Bearer ")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn a_label_is_looked_up_by_vast_ai_in_one_request() {
    let w = wire(200).await;
    let offers = w.sim.offer_ids();
    for (n, offer) in offers.iter().take(60).enumerate() {
        let mut spec = launch(*offer, BTreeMap::new());
        spec.label = format!("rigger:wire:{n}:x");
        w.client.launch(&spec).await.unwrap();
    }
    let before = w.sim.requests("GET /api/v1/instances");
    let found = w.client.find_label("rigger:wire:42:x").await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].label, "rigger:wire:42:x");
    assert_eq!(
        w.sim.requests("GET /api/v1/instances") - before,
        1,
        "select_filters, not three pages of 25"
    );
    // A prefix of it is another label: not found.
    assert!(
        w.client
            .find_label("rigger:wire:4")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_bid_is_sent_in_vast_ais_steps() {
    let w = wire(200).await;
    let offers = w
        .client
        .search(&rigger::cloud::OfferFilter {
            interruptible: true,
            ..any_offer()
        })
        .await
        .unwrap();
    let o = &offers[0];
    // What rigger computes: a little above the minimum, with a float's tail.
    let bid = o.min_bid * 1.05 + 1e-9;
    let mut spec = launch(o.id, BTreeMap::new());
    spec.bid_price = Some(bid);
    let id = w.client.launch(&spec).await.unwrap();
    let row: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/api/v0/instances/{id}/", w.url))
        .bearer_auth("sim-vast-key")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sent = row["instances"]["dph_base"].as_f64().unwrap();
    assert_eq!(sent, (bid * 1000.0).ceil() / 1000.0, "bid {bid}");
    assert!(sent >= bid);
}

#[tokio::test]
async fn answers_come_compressed_when_asked_and_rigger_reads_them() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let w = wire(300).await;
    let addr = w.url.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = r#"{"limit": 50}"#;
    tcp.write_all(
        format!(
            "POST /api/v0/bundles/ HTTP/1.1\r\nHost: {addr}\r\nAccept-Encoding: gzip, deflate\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    let head = String::from_utf8_lossy(&answer[..answer.len().min(400)]).to_ascii_lowercase();
    assert!(head.contains("content-encoding: gzip"), "{head}");
    // rigger asks for them: its search says so, and the answer it gets
    // through a relay that keeps what comes back is compressed, and read.
    let (relay, answered) = relay_keeping_answers(addr).await;
    let client = VastClient::with_retry(&relay, Secret::new("sim-vast-key"), fast_retry());
    w.sim.record(true);
    let offers = client.search(&any_offer()).await.unwrap();
    assert!(!offers.is_empty(), "the compressed answer is decoded");
    let recorded = w.sim.take_recorded();
    let search = recorded
        .exchanges
        .iter()
        .find(|e| e.path.starts_with("/api/v0/bundles"))
        .expect("rigger's search reached the simulated Vast.ai");
    let asked = search.header("accept-encoding").unwrap_or_default();
    assert!(
        asked.contains("gzip"),
        "rigger's Accept-Encoding: {asked:?}"
    );
    let head = String::from_utf8_lossy(&answered.lock().unwrap()).to_ascii_lowercase();
    let head = head
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        head.contains("content-encoding: gzip"),
        "the answer rigger got: {head}"
    );
}

/// A TCP relay to `upstream` on an OS-chosen port that keeps the first
/// bytes of what comes back (the answer's head, as sent on the wire).
async fn relay_keeping_answers(upstream: &str) -> (String, Arc<std::sync::Mutex<Vec<u8>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let kept = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (upstream, keep) = (upstream.to_string(), kept.clone());
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = tokio::net::TcpStream::connect(&upstream).await.unwrap();
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            tokio::spawn(async move { tokio::io::copy(&mut cr, &mut sw).await });
            let keep = keep.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                while let Ok(n) = sr.read(&mut buf).await {
                    if n == 0 || cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    let mut k = keep.lock().unwrap();
                    if k.len() < 4096 {
                        k.extend_from_slice(&buf[..n]);
                    }
                }
            });
        }
    });
    (url, kept)
}

/// Each page of a listing counts against the listing's interval (1 s): a
/// client keeping to the limits sends the pages of one listing spaced by it,
/// and none is refused. On the system clock: the pacing is real waiting.
#[tokio::test]
async fn the_pages_of_a_listing_keep_to_its_interval() {
    use rigger::cloud::vast::limit::{Limiter, RateLimits};
    use rigger::engine::ports::SystemClock;
    use rigger::sim::vast::limits::Endpoint;

    let clock = Arc::new(SystemClock);
    let sim = SimVast::new(
        SimConfig {
            offers: 200,
            // The client's answer to each kind of reply on a frozen clock,
            // without a limiter: Vast.ai's limits would refuse calls made at
            // one instant. The stories that are about the limits set them.
            limits: Limits::none(),
            ..SimConfig::default()
        },
        clock.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = sim.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let plain = VastClient::with_retry(&url, Secret::new("sim-vast-key"), fast_retry());
    for (n, offer) in sim.offer_ids().iter().take(60).enumerate() {
        let mut spec = launch(*offer, BTreeMap::new());
        spec.label = format!("rigger:pace:{n}:x");
        plain.launch(&spec).await.unwrap();
    }
    sim.set_limits(Limits::documented());
    let limiter = Limiter::new(RateLimits::documented(), clock);
    let client = VastClient::with_retry(&url, Secret::new("sim-vast-key"), fast_retry())
        .with_limiter(limiter, 0);
    let started = std::time::Instant::now();
    let mine = client.list("rigger:pace:").await.unwrap();
    assert_eq!(mine.len(), 60, "three pages of 25");
    assert_eq!(sim.refused(Endpoint::List), 0, "no page refused");
    assert!(
        started.elapsed() >= Duration::from_millis(1_900),
        "three pages, 1 s apart: {:?}",
        started.elapsed()
    );
}
