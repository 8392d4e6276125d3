//! The Vast.ai client against the simulated Vast.ai, over real HTTP: every
//! endpoint rigger uses and every error kind callers branch on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rigger::cloud::vast::client::{RetryPolicy, VastClient};
use rigger::cloud::{CloudProvider, InstanceStatus, LaunchSpec, OfferFilter, ProviderError};
use rigger::engine::ports::ManualClock;
use rigger::settings::Secret;
use rigger::sim::vast::{Booted, Faults, SimConfig, SimVast};
use serde_json::json;

struct World {
    sim: SimVast,
    clock: ManualClock,
    client: VastClient,
    url: String,
}

async fn world(offers: usize) -> World {
    let clock = ManualClock::new(1_700_000_000_000);
    let sim = SimVast::new(
        SimConfig {
            offers,
            boot_delay_ms: 30_000,
            // The client's answer to each kind of reply, on a frozen clock
            // and without a limiter: Vast.ai's rate limits would refuse its
            // calls made at one instant. tests/vast_limits.rs keeps them.
            limits: rigger::sim::vast::Limits::none(),
            ..SimConfig::default()
        },
        Arc::new(clock.clone()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = sim.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = VastClient::with_retry(&url, Secret::new("sim-vast-key"), fast_retry());
    World {
        sim,
        clock,
        client,
        url,
    }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        timeout: Duration::from_secs(10),
    }
}

fn filter() -> OfferFilter {
    OfferFilter {
        num_gpus: 1,
        gpu_names: vec!["RTX 4090".into()],
        min_gpu_ram_mb: Some(24_000),
        disk_gb: 50.0,
        min_ram_gb: Some(16.0),
        country: Some("US".into()),
        vm: false,
        min_cuda: rigger::cloud::CudaVersion::parse("12.0"),
        min_reliability: 0.95,
        min_inet_down: 100.0,
        verified: true,
        interruptible: false,
        max_dph: Some(0.6),
        limit: 20,
        cpu_arch: "amd64".into(),
        gpu_arch: Some("nvidia".into()),
        min_duration_s: Some(6 * 3600),
    }
}

fn spec(offer_id: i64, label: &str) -> LaunchSpec {
    LaunchSpec {
        offer_id,
        image: "nvidia/cuda:12.4.1-base-ubuntu22.04".into(),
        disk_gb: 50.0,
        vm: false,
        bid_price: None,
        label: label.into(),
        onstart: "#!/bin/sh\necho hello".into(),
        env: [("RIGGER_SCRIPT_0".to_string(), "ZWNobyBoaQ==".to_string())].into(),
    }
}

#[tokio::test]
async fn search_returns_only_offers_that_match_cheapest_first() {
    let w = world(2000).await;
    let offers = w.client.search(&filter()).await.unwrap();
    assert!(!offers.is_empty(), "a 2,000-offer market has US RTX 4090s");
    for o in &offers {
        assert_eq!(
            (o.gpu_name.as_str(), o.num_gpus, o.country()),
            ("RTX 4090", 1, "US")
        );
        assert!(o.gpu_ram_mb >= 24_000 && o.cpu_ram_mb >= 16_000 && o.disk_gb >= 50.0);
        assert!(o.cuda_max_good >= 12.0 && o.reliability >= 0.95 && o.inet_down >= 100.0);
        assert!(o.verified && o.dph_total <= 0.6);
    }
    assert!(offers.windows(2).all(|p| p[0].dph_total <= p[1].dph_total));
    // Interruptible search prices offers at their minimum bid.
    let bids = w
        .client
        .search(&OfferFilter {
            interruptible: true,
            max_dph: None,
            ..filter()
        })
        .await
        .unwrap();
    assert!(bids.iter().all(|o| o.dph_total < o.min_bid + 0.1));
}

#[tokio::test]
async fn an_instance_from_rent_to_destroy() {
    let w = world(300).await;
    let booted: Arc<Mutex<Vec<Booted>>> = Arc::default();
    let seen = booted.clone();
    w.sim
        .on_boot(Arc::new(move |b| seen.lock().unwrap().push(b)));

    let offer = w.sim.offer_ids()[0];
    let id = w
        .client
        .launch(&spec(offer, "rigger:test:1:abc"))
        .await
        .unwrap();
    assert!(
        !w.sim.offer_ids().contains(&offer),
        "a rented offer leaves the market"
    );

    let i = w.client.get(&id).await.unwrap().expect("it exists");
    assert_eq!(
        (i.status, i.label.as_str()),
        (InstanceStatus::Loading, "rigger:test:1:abc")
    );

    w.clock.advance_ms(30_000);
    let i = w.client.get(&id).await.unwrap().unwrap();
    assert_eq!(i.status, InstanceStatus::Running);
    {
        let b = booted.lock().unwrap();
        assert_eq!(b.len(), 1, "the boot seam ran once");
        // Container mode: the `args` run type, the loader as `sh -c`.
        assert_eq!(b[0].runtype, "args");
        assert_eq!(b[0].onstart.as_deref(), Some("/bin/sh"));
        assert_eq!(b[0].args, vec!["-c", "#!/bin/sh\necho hello"]);
        let env: std::collections::HashMap<_, _> = b[0].env.iter().cloned().collect();
        assert_eq!(env["CONTAINER_ID"], id);
        assert_eq!(env["RIGGER_SCRIPT_0"], "ZWNobyBoaQ==");
        assert!(env["CONTAINER_API_KEY"].len() >= 32);
    }

    let mine = w.client.list("rigger:test:").await.unwrap();
    assert_eq!(
        mine.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        vec![id.as_str()]
    );
    assert!(w.client.list("rigger:other:").await.unwrap().is_empty());

    w.sim.append_log(id.parse().unwrap(), "runner registered\n");
    let log = w.client.logs(&id).await.unwrap();
    assert!(
        log.contains("container started") && log.contains("runner registered"),
        "{log}"
    );

    w.client.label(&id, "rigger:test:1:renamed").await.unwrap();
    assert_eq!(
        w.client.get(&id).await.unwrap().unwrap().label,
        "rigger:test:1:renamed"
    );

    w.clock.advance_ms(3_600_000);
    w.client.destroy(&id).await.unwrap();
    assert_eq!(
        w.client.get(&id).await.unwrap(),
        None,
        "instances: null once destroyed"
    );
    w.client
        .destroy(&id)
        .await
        .expect("destroying twice is not an error");
    let ledger = w.sim.ledger();
    assert_eq!(ledger.len(), 1);
    assert!(ledger[0].dollars > 0.0 && ledger[0].seconds_alive == 3630.0);
}

#[tokio::test]
async fn an_offer_rents_once_and_the_second_rent_is_offer_gone() {
    let w = world(50).await;
    let offer = w.sim.offer_ids()[3];
    w.client.launch(&spec(offer, "a")).await.unwrap();
    assert_eq!(
        w.client.launch(&spec(offer, "b")).await,
        Err(ProviderError::OfferGone)
    );
    // Taken by someone else between search and rent: the same answer.
    w.sim.set_faults(Faults {
        steal_rate: 1.0,
        ..Faults::default()
    });
    let other = w.sim.offer_ids()[0];
    assert_eq!(
        w.client.launch(&spec(other, "c")).await,
        Err(ProviderError::OfferGone)
    );
}

#[tokio::test]
async fn vm_mode_says_an_ssh_key_is_needed_before_renting() {
    let w = world(300).await;
    let vm_offer = w
        .client
        .search_raw(&json!({"vms_enabled": {"eq": true}, "limit": 1}))
        .await
        .unwrap()[0]
        .id;
    let mut s = spec(vm_offer, "vm");
    s.vm = true;
    s.image = "docker.io/vastai/kvm:ubuntu_cli_22.04-2025-11-21".into();
    match w.client.launch(&s).await {
        Err(ProviderError::Invalid(m)) => assert!(m.contains("SSH key"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(w.sim.offer_ids().contains(&vm_offer), "nothing was rented");
    w.sim.add_ssh_key("ssh-ed25519 AAAAC3Nz rigger@test");
    let id = w.client.launch(&s).await.unwrap();
    assert_eq!(
        w.client.get(&id).await.unwrap().unwrap().status,
        InstanceStatus::Loading
    );
}

#[tokio::test]
async fn a_wrong_key_is_unauthorized() {
    let w = world(10).await;
    let bad = VastClient::with_retry(&w.url, Secret::new("wrong"), fast_retry());
    match bad.list("").await {
        Err(ProviderError::Unauthorized(m)) => assert!(m.contains("Invalid user key")),
        other => panic!("{other:?}"),
    }
    // The message never carries the key.
    let e = bad.get("1").await.unwrap_err().to_string();
    assert!(!e.contains("wrong"), "{e}");
}

#[tokio::test]
async fn rate_limits_are_waited_out_within_bounds_then_reported() {
    let w = world(100).await;
    w.sim.set_faults(Faults {
        rate_limit_burst: 2,
        ..Faults::default()
    });
    assert!(
        !w.client
            .search(&OfferFilter {
                country: None,
                ..filter()
            })
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        w.sim.requests("POST /api/v0/bundles"),
        3,
        "two 429s, then the answer"
    );
    w.sim.set_faults(Faults {
        rate_limit_burst: 10,
        ..Faults::default()
    });
    match w.client.search(&filter()).await {
        Err(ProviderError::RateLimited { retry_after_ms }) => assert!(retry_after_ms > 0),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn server_errors_are_transient_but_an_unanswered_create_is_ambiguous() {
    let w = world(100).await;
    w.sim.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    assert!(matches!(
        w.client.list("").await,
        Err(ProviderError::Transient(_))
    ));
    assert_eq!(
        w.sim.requests("GET /api/v1/instances"),
        3,
        "retried within bounds"
    );
    let offer = w.sim.offer_ids()[0];
    assert!(matches!(
        w.client.launch(&spec(offer, "x")).await,
        Err(ProviderError::Ambiguous(_))
    ));
    assert_eq!(
        w.sim.requests("PUT /api/v0/asks/:id"),
        1,
        "a create is never repeated blindly"
    );

    // The create happened but the answer was lost: the label finds it.
    w.sim.set_faults(Faults {
        ambiguous_create_rate: 1.0,
        ..Faults::default()
    });
    let offer = w.sim.offer_ids()[1];
    assert!(matches!(
        w.client.launch(&spec(offer, "rigger:t:9:lost")).await,
        Err(ProviderError::Ambiguous(_))
    ));
    let found = w.client.list("rigger:t:9:lost").await.unwrap();
    assert_eq!(found.len(), 1);
}

#[tokio::test]
async fn listing_follows_every_page() {
    let w = world(200).await;
    let offers = w.sim.offer_ids();
    for (n, offer) in offers.iter().take(60).enumerate() {
        w.client
            .launch(&spec(*offer, &format!("rigger:p:{n}:x")))
            .await
            .unwrap();
    }
    w.sim
        .rent(
            offers[100],
            rigger::sim::vast::Rental {
                image: "ubuntu:22.04".into(),
                disk_gb: 10.0,
                label: Some("someone-else".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let mine = w.client.list("rigger:p:").await.unwrap();
    assert_eq!(mine.len(), 60, "three pages of 25, and not the stranger's");
}

#[tokio::test]
async fn unknown_things_are_not_found_and_bad_queries_invalid() {
    let w = world(10).await;
    assert_eq!(w.client.get("424242").await.unwrap(), None);
    assert!(matches!(
        w.client.label("424242", "x").await,
        Err(ProviderError::NotFound(_))
    ));
    assert!(matches!(
        w.client.get("not-a-number").await,
        Err(ProviderError::Invalid(_))
    ));
    assert!(matches!(
        w.client.search_raw(&json!({"num_gpus": 1})).await,
        Err(ProviderError::Invalid(_))
    ));
    assert!(w.client.ssh_keys().await.unwrap().is_empty());
}

/// A create whose answer is lost after Vast.ai may have rented: ambiguous,
/// sent once, and the label finds the instance.
async fn assert_create_is_ambiguous_and_found(faults: Faults, label: &str, why_has: &str) {
    let w = world(50).await;
    w.sim.set_faults(faults);
    let offer = w.sim.offer_ids()[0];
    match w.client.launch(&spec(offer, label)).await {
        Err(ProviderError::Ambiguous(why)) => assert!(why.contains(why_has), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(w.sim.requests("PUT /api/v0/asks/:id"), 1, "never repeated");
    w.sim.set_faults(Faults::default());
    let found = w.client.list(label).await.unwrap();
    assert_eq!(found.len(), 1, "the rental happened and the label finds it");
}

#[tokio::test]
async fn a_create_answer_cut_off_mid_body_is_ambiguous() {
    assert_create_is_ambiguous_and_found(
        Faults {
            cut_create_rate: 1.0,
            ..Faults::default()
        },
        "rigger:t:1:cut",
        "cut off",
    )
    .await;
}

#[tokio::test]
async fn a_create_answered_200_with_a_body_that_is_not_json_is_ambiguous() {
    assert_create_is_ambiguous_and_found(
        Faults {
            garbled_create_rate: 1.0,
            ..Faults::default()
        },
        "rigger:t:1:garbled",
        "not JSON",
    )
    .await;
}

#[tokio::test]
async fn a_create_that_times_out_is_ambiguous_and_a_timed_out_read_is_retried() {
    let mut w = world(50).await;
    w.client = VastClient::with_retry(
        &w.url,
        Secret::new("sim-vast-key"),
        RetryPolicy {
            timeout: Duration::from_millis(150),
            ..fast_retry()
        },
    );
    // Each answer takes far longer than the client waits.
    w.sim.set_faults(Faults {
        latency_ms: 2_000,
        ..Faults::default()
    });
    match w.client.list("").await {
        Err(ProviderError::Transient(why)) => assert!(why.contains("timed out"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(w.sim.requests("GET /api/v1/instances"), 3, "every attempt");
    let offer = w.sim.offer_ids()[0];
    assert!(matches!(
        w.client.launch(&spec(offer, "rigger:t:2:slow")).await,
        Err(ProviderError::Ambiguous(_))
    ));
    assert_eq!(w.sim.requests("PUT /api/v0/asks/:id"), 1, "never repeated");
}

#[tokio::test]
async fn latency_delays_every_answer() {
    let w = world(20).await;
    w.sim.set_faults(Faults {
        latency_ms: 300,
        ..Faults::default()
    });
    let start = std::time::Instant::now();
    w.client.list("").await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn a_retry_after_longer_than_the_clients_cap_is_reported_not_cut_short() {
    let w = world(50).await;
    w.sim.set_faults(Faults {
        rate_limit_burst: 5,
        retry_after_s: 30,
        ..Faults::default()
    });
    assert_eq!(
        w.client.list("").await,
        Err(ProviderError::RateLimited {
            retry_after_ms: 30_000
        })
    );
    assert_eq!(
        w.sim.requests("GET /api/v1/instances"),
        1,
        "not retried before Vast.ai said to"
    );
}

#[tokio::test]
async fn a_retry_after_within_the_cap_is_waited_out() {
    let mut w = world(50).await;
    w.client = VastClient::with_retry(
        &w.url,
        Secret::new("sim-vast-key"),
        RetryPolicy {
            max_delay: Duration::from_secs(2),
            ..fast_retry()
        },
    );
    w.sim.set_faults(Faults {
        rate_limit_burst: 1,
        retry_after_s: 1,
        ..Faults::default()
    });
    let start = std::time::Instant::now();
    w.client.list("").await.unwrap();
    assert!(start.elapsed() >= Duration::from_secs(1), "it waited");
    assert_eq!(w.sim.requests("GET /api/v1/instances"), 2);
}

#[tokio::test]
async fn a_dying_host_goes_offline_and_a_stuck_instance_never_runs() {
    let w = world(100).await;
    let offers = w.sim.offer_ids();
    w.sim.set_faults(Faults {
        die_rate: 1.0,
        ..Faults::default()
    });
    let dies = w
        .client
        .launch(&spec(offers[0], "rigger:t:3:dies"))
        .await
        .unwrap();
    w.sim.set_faults(Faults {
        stuck_rate: 1.0,
        ..Faults::default()
    });
    let stuck = w
        .client
        .launch(&spec(offers[1], "rigger:t:3:stuck"))
        .await
        .unwrap();
    w.sim.set_faults(Faults::default());
    let status = |id: String| {
        let c = w.client.clone();
        async move { c.get(&id).await.unwrap().unwrap() }
    };

    w.clock.advance_ms(30_000);
    assert_eq!(status(dies.clone()).await.status, InstanceStatus::Running);
    assert_eq!(status(stuck.clone()).await.status, InstanceStatus::Loading);

    w.clock.advance_ms(30_000);
    let dead = status(dies.clone()).await;
    // `offline` is a state hosts come back from: unreachable, not exited.
    assert_eq!(dead.status, InstanceStatus::Unreachable);
    assert!(
        dead.status_detail.contains("offline"),
        "{}",
        dead.status_detail
    );

    w.clock.advance_ms(24 * 3_600_000);
    assert_eq!(
        status(stuck).await.status,
        InstanceStatus::Loading,
        "still loading a day later"
    );
}

#[tokio::test]
async fn the_key_may_come_as_an_api_key_query_parameter() {
    let w = world(10).await;
    let http = reqwest::Client::new();
    let get = |key: Option<&str>| {
        let mut url = format!("{}/api/v0/instances/", w.url);
        if let Some(k) = key {
            url.push_str(&format!("?api_key={k}"));
        }
        http.get(url).send()
    };
    let ok = get(Some("sim-vast-key")).await.unwrap();
    assert_eq!(ok.status(), 200);
    let body: serde_json::Value = ok.json().await.unwrap();
    assert_eq!(body["instances"], json!([]));
    for key in [Some("wrong"), None] {
        let r = get(key).await.unwrap();
        assert_eq!(r.status(), 401, "{key:?}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "auth_error");
    }
}

#[tokio::test]
async fn a_missing_offer_answers_as_vast_ai_does_and_is_offer_gone() {
    let w = world(10).await;
    // Without `cancel_unavail` (as the CLI sends it): 404 `invalid_args`.
    let r = reqwest::Client::new()
        .put(format!("{}/api/v0/asks/424242/", w.url))
        .bearer_auth("sim-vast-key")
        .json(&json!({"client_id": "me", "image": "ubuntu:22.04", "disk": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_args");
    assert!(
        body["msg"].as_str().unwrap().contains("no_such_ask"),
        "{body}"
    );
    // rigger's create (with `cancel_unavail`) gets the 410 form; both are
    // offer-gone (the 404 form is checked in the client's unit tests).
    assert_eq!(
        w.client.launch(&spec(424242, "x")).await,
        Err(ProviderError::OfferGone)
    );
}

/// `rigger sim vast` itself: started on a port the OS picks, it prints its
/// URL and key, serves the market its seed makes, and applies its flags.
#[tokio::test]
async fn the_rigger_sim_vast_binary_serves_what_it_prints() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rigger"))
        .args([
            "sim",
            "vast",
            "--listen",
            "127.0.0.1:0",
            "--offers",
            "120",
            "--seed",
            "7",
            "--boot-delay",
            "1h",
            "--faults",
            "rate_limit_burst=1",
            "--api-key",
            "bin-key",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("rigger runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut url, mut key) = (None, None);
    while url.is_none() || key.is_none() {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("it prints its URL and key before serving");
        if let Some(u) = line.strip_prefix("simulated Vast.ai listening on ") {
            url = Some(u.trim().to_string());
        }
        if let Some(k) = line.trim().strip_prefix("API key:") {
            key = Some(k.trim().to_string());
        }
    }
    let (url, key) = (url.unwrap(), key.unwrap());
    assert!(!url.ends_with(":0"), "the bound port, not 0: {url}");
    assert_eq!(key, "bin-key");

    let client = VastClient::with_retry(&url, Secret::new(&key), fast_retry());
    // The one injected 429 is ridden out; then the seed's whole market.
    let offers = client.search_raw(&json!({"limit": 1000})).await.unwrap();
    let mut ids: Vec<i64> = offers.iter().map(|o| o.id).collect();
    ids.sort();
    let same_seed = SimVast::new(
        SimConfig {
            seed: 7,
            offers: 120,
            ..SimConfig::default()
        },
        Arc::new(ManualClock::new(0)),
    );
    assert_eq!(ids, same_seed.offer_ids(), "--seed 7 --offers 120");

    let state: serde_json::Value = reqwest::get(format!("{url}/sim/state"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        state["requests"]["POST /api/v0/bundles"], 2,
        "a 429, then the answer"
    );

    // --boot-delay 1h: a new instance is still loading.
    let id = client
        .launch(&spec(ids[0], "rigger:bin:1:x"))
        .await
        .unwrap();
    assert_eq!(
        client.get(&id).await.unwrap().unwrap().status,
        InstanceStatus::Loading
    );
    // The wrong key is refused.
    let bad = VastClient::with_retry(&url, Secret::new("sim-vast-key"), fast_retry());
    assert!(matches!(
        bad.list("").await,
        Err(ProviderError::Unauthorized(_))
    ));

    child.kill().await.unwrap();
}
