//! The "what would match" diagnosis of a job that finds no offer names the
//! filters rigger sends because of the runner itself, as it names the
//! others: the GPU maker (`gpu_arch`: a `1xANY` runner needs NVIDIA) and
//! the host's contract (`duration`: it must outlast the machine's
//! `max_runtime`). Each story lists, on an otherwise empty simulated
//! market, good hosts that fail only that filter, and reads what the job
//! waits with: the diagnosis must count them, within the searches the
//! limits allow (a candidate's search and one diagnosis search).

#[macro_use]
mod harness;

use harness::Story;
use rigger::engine::ports::Clock;
use rigger::engine::state::JobState;
use serde_json::{Map, Value, json};

const REPO: &str = "acme/diagnosis";

const CIRUN: &str = "runners:
  - name: any-24gb
    cloud: vast_ai
    instance_type: 1xANY
    machine_image: ubuntu:22.04
    labels: [cirun-any]
    extra_config:
      min_gpu_ram: 24
  - name: rtx4090-6h
    cloud: vast_ai
    instance_type: 1xRTX_4090
    labels: [cirun-4090]
    extra_config:
      max_runtime: 360
";

async fn story(name: &str) -> Story {
    let s = Story::with_market(name, 0).await;
    s.github.add_repo(REPO, &[(".cirun.yml", CIRUN)]);
    s
}

fn now_s(s: &Story) -> f64 {
    s.clock.now_ms() as f64 / 1000.0
}

/// A good host with one GPU of `model` (its figures from the simulator's
/// own market), changed by `set`.
fn list_host(s: &Story, id: i64, model: &str, set: Value) {
    let mut o: Map<String, Value> = rigger::sim::vast::market::generate(7, 3_000, now_s(s))
        .into_iter()
        .find(|o| o["gpu_name"] == model)
        .unwrap_or_else(|| panic!("the simulated market lists {model}"));
    let good = json!({
        "id": id, "ask_contract_id": id, "machine_id": id % 100_000, "num_gpus": 1,
        "gpu_total_ram": o["gpu_ram"].clone(), "dph_base": 0.05, "min_bid": 0.02,
        "storage_cost": 0.0, "reliability": 0.999, "reliability2": 0.999,
        "verification": "verified", "inet_down": 2000.0, "disk_space": 1000.0,
        "cpu_ram": 256_000.0, "geolocation": "Texas, US", "rentable": true, "rented": false,
        "end_date": now_s(s) + 30.0 * 86_400.0,
    });
    for (k, v) in good
        .as_object()
        .unwrap()
        .iter()
        .chain(set.as_object().unwrap())
    {
        o.insert(k.clone(), v.clone());
    }
    if o["gpu_arch"] == "nvidia" {
        o.insert("cuda_max_good".into(), json!(12.8));
    }
    s.vast.list_offer(o);
}

/// The job's first attempt: what it waits with, and the searches it made.
async fn waits_with(s: &Story, label: &str) -> (String, u64) {
    let job = s.a_job_is_queued_in(REPO, label);
    s.webhooks_arrive().await;
    s.rigger_provisions_once().await;
    assert_eq!(s.job_state(job).await, JobState::Queued, "it waits");
    assert!(s.vast.live_instances().is_empty(), "nothing rented");
    let row = s.engine.store.job(job).await.unwrap().unwrap();
    let why = row.reason.expect("a diagnosis");
    let run = &s.github.check_runs()[0];
    assert!(
        run.summary.contains(&why),
        "the check run shows it: {run:?}"
    );
    (why, s.vast.requests("POST /api/v0/bundles"))
}

/// Only AMD cards have the memory a `1xANY` runner asks for: the runner
/// checks its GPUs with nvidia-smi, so none is rented, and the diagnosis
/// says that AMD GPUs are all there is, rather than that no GPU is listed.
#[tokio::test]
async fn only_amd_gpus_matching_is_said_so() {
    let s = story("diagnosis-gpu-arch").await;
    list_host(&s, 99_100_001, "RX 7900 XTX", json!({"dph_base": 0.04}));
    list_host(&s, 99_100_002, "RX 7900 XTX", json!({}));
    let (why, searches) = waits_with(&s, "cirun-any--1").await;
    println!("1xANY among AMD hosts waits with: {why}");
    assert!(
        why.contains("none with NVIDIA GPUs (gpu_arch)"),
        "the maker's filter is not named: {why}"
    );
    assert!(
        why.contains("only AMD GPUs (gpu_arch) would match: 2, from $0.04/h"),
        "the AMD hosts are not counted: {why}"
    );
    assert_eq!(searches, 2, "the candidate's search and one diagnosis");
    s.nothing_leaked().await;
}

/// The only RTX 4090 hosts end their contract in two hours: a runner that
/// may run six is not rented there, and the diagnosis counts them.
#[tokio::test]
async fn hosts_whose_contract_ends_too_soon_are_counted() {
    let s = story("diagnosis-duration").await;
    let two_hours = json!({"end_date": now_s(&s) + 2.0 * 3_600.0});
    list_host(&s, 99_200_001, "RTX 4090", two_hours.clone());
    list_host(&s, 99_200_002, "RTX 4090", two_hours);
    // And one whose contract is long enough but whose disk is too small:
    // not a host to suggest, it fails another filter.
    list_host(&s, 99_200_003, "RTX 4090", json!({"disk_space": 10.0}));
    let (why, searches) = waits_with(&s, "cirun-4090--1").await;
    println!("6-h runner among short contracts waits with: {why}");
    assert!(
        why.contains("whose host's contract lasts ≥ 6 h (duration)"),
        "the contract's filter is not named: {why}"
    );
    assert!(
        why.contains(
            "2 would match except that their host's contract ends within 6 h, \
             before the machine's max_runtime is up (duration), from $0.05/h"
        ),
        "the short contracts are not counted: {why}"
    );
    assert_eq!(searches, 2, "the candidate's search and one diagnosis");
    s.nothing_leaked().await;
}
