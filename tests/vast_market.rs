//! rigger against a market like Vast.ai's: AMD GPUs, hosts whose contract
//! ends within hours, GPU names outside rigger's speed table, two names for
//! the A100 SXM4 module, and `gpu_ram` in MiB as the driver reports it (an
//! L4 is 23034, not 24000). Each story lists the host it is about on the
//! simulated market, cheaper than anything else, and checks what rigger
//! rents for one job.

#[macro_use]
mod harness;

use harness::Story;
use rigger::config::{FileKind, parse_file};
use rigger::engine::ports::Clock;
use serde_json::{Map, Value, json};

/// The repository of these stories, with its own `.cirun.yml`.
const REPO: &str = "acme/market";

const CIRUN: &str = "runners:
  - name: any-24gb
    cloud: vast_ai
    instance_type: 1xANY
    machine_image: ubuntu:22.04
    labels: [cirun-any]
    extra_config:
      min_gpu_ram: 24
  - name: any-24gb-cuda
    cloud: vast_ai
    instance_type: 1xANY
    machine_image: nvidia/cuda:12.4.1-base-ubuntu22.04
    labels: [cirun-any-cuda]
    extra_config:
      min_gpu_ram: 24
  - name: rtx4090-6h
    cloud: vast_ai
    instance_type: 1xRTX_4090
    labels: [cirun-4090]
  - name: rtx4090-1h
    cloud: vast_ai
    instance_type: 1xRTX_4090
    labels: [cirun-4090-short]
    extra_config:
      max_runtime: 60
  - name: rtx5070
    cloud: vast_ai
    instance_type: 1xRTX_5070
    labels: [cirun-5070]
  - name: a100
    cloud: vast_ai
    instance_type: 1xA100
    labels: [cirun-a100]
  - name: grace-hopper
    cloud: vast_ai
    instance_type: 1xGH200_SXM
    labels: [cirun-gh200, ARM64]
";

async fn story(name: &str) -> Story {
    let s = Story::begin(name).await;
    s.github.add_repo(REPO, &[(".cirun.yml", CIRUN)]);
    s
}

fn now_s(s: &Story) -> f64 {
    s.clock.now_ms() as f64 / 1000.0
}

/// A good, cheap host with one GPU of `model`, copied from one of the
/// generated market's and changed by `set`: what a story's point is about.
fn list_host(s: &Story, id: i64, model: &str, set: Value) {
    let template = s
        .vast
        .offer_ids()
        .into_iter()
        .filter_map(|i| s.vast.offer(i))
        .find(|o| o["gpu_name"] == model)
        .unwrap_or_else(|| panic!("the market lists {model}"));
    let mut o = template;
    let gpu_ram = o["gpu_ram"].clone();
    let good = json!({
        "id": id, "ask_contract_id": id, "machine_id": id % 100_000, "num_gpus": 1,
        "gpu_total_ram": gpu_ram, "dph_base": 0.02, "min_bid": 0.01, "storage_cost": 0.0,
        "reliability": 0.999, "reliability2": 0.999, "verification": "verified",
        "inet_down": 2000.0, "disk_space": 1000.0, "cpu_ram": 256_000.0,
        "geolocation": "Texas, US", "end_date": now_s(s) + 30.0 * 86_400.0,
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

/// The offer of the one machine rented so far.
fn rented(s: &Story) -> Map<String, Value> {
    let live = s.vast.live_instances();
    assert_eq!(live.len(), 1, "one machine for one job: {live:?}");
    s.vast
        .rented_offer(live[0].0)
        .expect("rented from an offer")
}

async fn rigger_rents_for(s: &Story, label: &str) -> Map<String, Value> {
    s.a_job_is_queued_in(REPO, label);
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    rented(s)
}

/// An AMD host has no nvidia-smi: a `1xANY` runner rented there fails its
/// GPU check on every attempt. With an image that asks for no CUDA version
/// nothing else keeps AMD hosts out.
#[tokio::test]
async fn a_1x_any_job_never_gets_an_amd_host() {
    let s = story("market-amd").await;
    list_host(&s, 99_000_001, "RX 7900 XTX", json!({"dph_base": 0.01}));
    let o = rigger_rents_for(&s, "cirun-any--1").await;
    println!("1xANY rented {} ({})", o["gpu_name"], o["gpu_arch"]);
    assert_eq!(
        o["gpu_arch"], "nvidia",
        "rented an AMD host ({}) for an NVIDIA runner",
        o["gpu_name"]
    );
    s.nothing_leaked().await;
}

/// A host whose listing ends in 2 hours stops the instance then: a runner
/// that may run 6 hours must not be rented there, one capped at an hour may.
#[tokio::test]
async fn a_6_hour_job_never_gets_a_2_hour_contract() {
    let s = story("market-contract").await;
    let two_hours = json!({"end_date": now_s(&s) + 2.0 * 3600.0, "dph_base": 0.01});
    list_host(&s, 99_000_002, "RTX 4090", two_hours);
    let o = rigger_rents_for(&s, "cirun-4090--1").await;
    let left_h = (o["end_date"].as_f64().unwrap() - now_s(&s)) / 3600.0;
    println!(
        "6-h runner rented offer {} with {left_h:.1} h of contract left",
        o["id"]
    );
    assert_ne!(
        o["id"], 99_000_002,
        "rented the host whose contract ends in 2 h"
    );
    assert!(left_h >= 6.0, "{left_h:.1} h of contract for a 6-h machine");
    s.nothing_leaked().await;

    let s = story("market-contract-short").await;
    let two_hours = json!({"end_date": now_s(&s) + 2.0 * 3600.0, "dph_base": 0.01});
    list_host(&s, 99_000_002, "RTX 4090", two_hours);
    let o = rigger_rents_for(&s, "cirun-4090-short--1").await;
    assert_eq!(o["id"], 99_000_002, "a 1-h machine fits a 2-h contract");
    s.nothing_leaked().await;
}

/// Vast.ai reports `gpu_ram` as the driver does (MiB, ECC's share taken
/// off): an L4 is 23034, an A10 23028. Both are 24 GB cards.
#[tokio::test]
async fn min_gpu_ram_24_can_rent_an_l4() {
    let s = story("market-l4").await;
    list_host(
        &s,
        99_000_003,
        "L4",
        json!({"gpu_ram": 23_034, "dph_base": 0.01}),
    );
    let o = rigger_rents_for(&s, "cirun-any-cuda--1").await;
    println!(
        "min_gpu_ram 24 rented {} with {} MB",
        o["gpu_name"], o["gpu_ram"]
    );
    assert_eq!(
        o["id"], 99_000_003,
        "the cheapest 24 GB card, an L4, was left out"
    );
    s.nothing_leaked().await;
}

/// `RTX 5070` is listed on Vast.ai but has no figure in rigger's speed
/// table: it validates, and a job gets one from the generated market.
#[tokio::test]
async fn an_rtx_5070_validates_and_rents() {
    let parsed = parse_file(
        std::path::Path::new(".cirun.yml"),
        CIRUN,
        FileKind::Repository,
    );
    assert_eq!(parsed.diagnostics.errors(), 0, "{}", parsed.render());
    let s = story("market-5070").await;
    let o = rigger_rents_for(&s, "cirun-5070--1").await;
    assert_eq!(o["gpu_name"], "RTX 5070");
    s.nothing_leaked().await;
}

/// Vast.ai lists the A100 SXM4 module as `A100 SXM` too: `1xA100` rents it
/// when it is the cheapest.
#[tokio::test]
async fn a100_rents_an_a100_sxm_host_when_it_is_the_cheapest() {
    let s = story("market-a100").await;
    list_host(&s, 99_000_005, "A100 SXM", json!({"dph_base": 0.30}));
    let o = rigger_rents_for(&s, "cirun-a100--1").await;
    println!("1xA100 rented {} at {}", o["gpu_name"], o["dph_base"]);
    assert_eq!(
        o["id"], 99_000_005,
        "the cheapest A100 ({}) was not searched",
        "A100 SXM"
    );
    s.nothing_leaked().await;
}

/// `rigger validate`'s words for names it cannot use: a typo gets the
/// nearest listed names (`RTX_5070` is one now); an AMD model is known but
/// refused, saying why.
#[test]
fn validate_suggests_listed_names_and_says_why_amd_is_refused() {
    let render = |instance_type: &str| {
        let yaml = format!(
            "runners:\n  - name: g\n    cloud: vast_ai\n    labels: [cirun-g]\n    instance_type: {instance_type}\n"
        );
        let parsed = parse_file(
            std::path::Path::new(".cirun.yml"),
            &yaml,
            FileKind::Repository,
        );
        assert_eq!(parsed.diagnostics.errors(), 1, "{instance_type}");
        parsed.render()
    };
    let typo = render("1xRTX_5071");
    assert!(
        typo.contains("did you mean") && typo.contains("RTX_5070"),
        "{typo}"
    );
    let typo = render("1xA3O");
    assert!(typo.contains("A30"), "{typo}");
    let amd = render("1xRX_7900_XTX");
    assert!(
        amd.contains("AMD GPU") && amd.contains("nvidia-smi"),
        "{amd}"
    );
    assert!(!amd.contains("unknown GPU model"), "{amd}");
}

/// Grace Hopper hosts are arm64: an x86-64 runner never lands on one, even
/// the cheapest fitting GPU; an `ARM64`-labelled runner rents it.
#[tokio::test]
async fn arm64_hosts_go_only_to_arm64_runners() {
    let s = story("market-arm64").await;
    list_host(&s, 99_000_006, "GH200 SXM", json!({"dph_base": 0.01}));
    let o = rigger_rents_for(&s, "cirun-any-cuda--1").await;
    assert_eq!(o["cpu_arch"], "amd64", "an x64 runner on {}", o["gpu_name"]);
    s.nothing_leaked().await;

    let s = story("market-arm64-runner").await;
    list_host(&s, 99_000_006, "GH200 SXM", json!({"dph_base": 0.01}));
    let o = rigger_rents_for(&s, "cirun-gh200--1").await;
    assert_eq!(
        (&o["id"], &o["cpu_arch"]),
        (&json!(99_000_006), &json!("arm64"))
    );
    s.nothing_leaked().await;
}
