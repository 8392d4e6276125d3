//! From a `.cirun.yml` candidate to Vast.ai's search body
//! (`POST /api/v0/bundles/`), with the units the API uses: GPU and host RAM
//! in MB, disk in GB, bandwidth in Mbit/s; JSON numbers and booleans, never
//! the numeric strings the CLI sends.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::cloud::OfferFilter;
use crate::cloud::vast::gpus::{GpuChoice, memory_floor_mb};
use crate::config::model::{VastCandidate, VastExtra};

/// Offers asked for per search of one model: Vast.ai sorts them by price,
/// and within one model the cheapest are the cheapest in total too. Enough to
/// survive a few being rented by someone else.
pub const SEARCH_LIMIT: u32 = 64;
/// For several models (or any model) the cheapest per hour are not the
/// cheapest in total, as a faster GPU finishes sooner: ask for more, rank all.
pub const SEARCH_LIMIT_MANY_MODELS: u32 = 1000;

/// rigger's filter for one fallback candidate of a runner definition.
/// `max_lifetime` is the controller's `timeouts.max_lifetime` (none for
/// `rigger plan`, which has no settings): with `max_runtime` it sets how
/// long the host's contract must last.
pub fn filter_for(
    candidate: &VastCandidate,
    extra: &VastExtra,
    cpu_arch: &str,
    max_lifetime: Option<Duration>,
) -> OfferFilter {
    let (gpu_names, suffix_gb): (Vec<String>, _) = match &candidate.gpu {
        GpuChoice::Any => (Vec::new(), None),
        GpuChoice::Models {
            vast_names,
            min_vram_gb,
        } => (
            vast_names.iter().map(|n| n.to_string()).collect(),
            *min_vram_gb,
        ),
    };
    // `NxANY` states the memory it needs; a named model may add to it. Both
    // are GB as sold, and get the same allowance for what hosts report.
    let min_gb = [suffix_gb.map(f64::from), extra.min_gpu_ram_gb]
        .into_iter()
        .flatten()
        .reduce(f64::max);
    let min_gpu_ram_mb = min_gb.map(memory_floor_mb);
    let lifetime = extra.machine_lifetime(max_lifetime);
    let min_cuda = [candidate.min_cuda, extra.min_cuda]
        .into_iter()
        .flatten()
        .max();
    let limit = if gpu_names.len() == 1 {
        SEARCH_LIMIT
    } else {
        SEARCH_LIMIT_MANY_MODELS
    };
    OfferFilter {
        num_gpus: candidate.gpu_count,
        gpu_names,
        min_gpu_ram_mb,
        disk_gb: extra.disk_space_gb,
        min_ram_gb: extra.min_ram_gb,
        country: candidate.region.clone(),
        vm: extra.vm,
        min_cuda,
        min_reliability: extra.min_reliability,
        min_inet_down: extra.min_inet_down,
        verified: extra.verified,
        interruptible: candidate.preemptible,
        max_dph: extra.max_dph,
        limit,
        cpu_arch: cpu_arch.to_string(),
        gpu_arch: candidate.gpu.vendor().map(|v| v.gpu_arch().to_string()),
        min_duration_s: Some(lifetime.as_secs()),
    }
}

/// The search body. Keys are the API's column names (reference §3.3).
pub fn search_body(f: &OfferFilter) -> Value {
    let mut q = Map::new();
    let mut put = |k: &str, v: Value| {
        q.insert(k.to_string(), v);
    };
    put("rentable", json!({"eq": true}));
    put("rented", json!({"eq": false}));
    put("external", json!({"eq": false}));
    if f.verified {
        put("verified", json!({"eq": true}));
    }
    put("num_gpus", json!({"eq": f.num_gpus}));
    put("cpu_arch", json!({"eq": f.cpu_arch}));
    if let Some(arch) = &f.gpu_arch {
        put("gpu_arch", json!({"eq": arch}));
    }
    match f.gpu_names.as_slice() {
        [] => {}
        [one] => put("gpu_name", json!({"eq": one})),
        many => put("gpu_name", json!({"in": many})),
    }
    if let Some(mb) = f.min_gpu_ram_mb {
        put("gpu_ram", json!({"gte": mb}));
    }
    put("disk_space", json!({"gte": f.disk_gb}));
    // Prices include this much storage, and the server also reads it as a
    // disk filter.
    put("allocated_storage", json!(f.disk_gb));
    if let Some(gb) = f.min_ram_gb {
        put("cpu_ram", json!({"gte": (gb * 1000.0).round()}));
    }
    if let Some(cc) = &f.country {
        put("geolocation", json!({"eq": cc}));
    }
    if f.vm {
        // VMs are reachable only on hosts with direct ports (reference §4.4).
        put("vms_enabled", json!({"eq": true}));
        put("direct_port_count", json!({"gte": 1}));
    }
    if let Some(v) = f.min_cuda {
        // A float, as the API compares it; the encoding keeps the order of
        // (major, minor), so 12.10 is not sent as 12.1.
        put("cuda_max_good", json!({"gte": v.to_vast()}));
    }
    if let Some(s) = f.min_duration_s {
        // Seconds from now until the host's listing ends (the CLI's input
        // is days; the API's unit is seconds).
        put("duration", json!({"gte": s}));
    }
    put("reliability", json!({"gte": f.min_reliability}));
    put("inet_down", json!({"gte": f.min_inet_down}));
    // For bids the cap applies to the bid, which rigger sets; `dph_total` is
    // the on-demand price and would wrongly hide cheap interruptible hosts.
    if let (Some(max), false) = (f.max_dph, f.interruptible) {
        put("dph_total", json!({"lte": max}));
    }
    put("order", json!([["dph_total", "asc"]]));
    put(
        "type",
        json!(if f.interruptible { "bid" } else { "on-demand" }),
    );
    put("limit", json!(f.limit));
    Value::Object(q)
}

/// A wider search for the no-match diagnosis: the same GPU models and CPU
/// architecture, none of the other filters, so rigger can tell which filter
/// emptied the market. The GPU maker and the contract's length are left out
/// too, so that the diagnosis can count the AMD hosts or the short
/// contracts that were all there was; it still suggests only hosts that
/// pass both (`engine::offers::diagnose`).
pub fn broad_filter(f: &OfferFilter) -> OfferFilter {
    OfferFilter {
        gpu_arch: None,
        min_duration_s: None,
        min_gpu_ram_mb: None,
        disk_gb: 0.0,
        min_ram_gb: None,
        country: None,
        vm: false,
        min_cuda: None,
        min_reliability: 0.0,
        min_inet_down: 0.0,
        verified: false,
        max_dph: None,
        limit: 1000,
        ..f.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FileKind, parse_file};

    fn filters(yaml: &str) -> Vec<OfferFilter> {
        let parsed = parse_file(
            std::path::Path::new(".cirun.yml"),
            yaml,
            FileKind::Repository,
        );
        let runner = parsed
            .config
            .as_ref()
            .expect("parses")
            .runners
            .iter()
            .find_map(|r| r.vast.clone())
            .expect("a vast runner");
        runner
            .candidates
            .iter()
            .map(|c| filter_for(c, &runner.extra, runner.cpu_arch, None))
            .collect()
    }

    /// The first candidate's filter, or `None` where the file has errors.
    fn candidates(yaml: &str) -> Option<OfferFilter> {
        let parsed = parse_file(
            std::path::Path::new(".cirun.yml"),
            yaml,
            FileKind::Repository,
        );
        if parsed.diagnostics.errors() > 0 {
            return None;
        }
        Some(filters(yaml).remove(0))
    }

    fn body(yaml: &str) -> Value {
        search_body(&filters(yaml)[0])
    }

    const BASE: &str = "runners:\n  - name: g\n    cloud: vast_ai\n    labels: [cirun-g]\n";

    #[test]
    fn a_plain_runner_gets_every_default_as_json_numbers() {
        let b = body(&format!("{BASE}    instance_type: 1xRTX_4090\n"));
        assert_eq!(
            b,
            json!({
                "rentable": {"eq": true}, "rented": {"eq": false}, "external": {"eq": false},
                "verified": {"eq": true}, "num_gpus": {"eq": 1}, "gpu_name": {"eq": "RTX 4090"},
                "cpu_arch": {"eq": "amd64"}, "gpu_arch": {"eq": "nvidia"},
                "duration": {"gte": 21_600},
                "disk_space": {"gte": 30.0}, "allocated_storage": 30.0,
                "cuda_max_good": {"gte": 12.4},
                "reliability": {"gte": 0.95}, "inet_down": {"gte": 100.0},
                "order": [["dph_total", "asc"]], "type": "on-demand", "limit": SEARCH_LIMIT
            })
        );
    }

    #[test]
    fn an_arm64_label_asks_for_arm64_hosts() {
        let arm = "runners:\n  - name: g\n    cloud: vast_ai\n    labels: [cirun-g, ARM64]\n    instance_type: 1xH100\n";
        assert_eq!(body(arm)["cpu_arch"], json!({"eq": "arm64"}));
        let aarch = arm.replace("ARM64", "aarch64");
        assert_eq!(body(&aarch)["cpu_arch"], json!({"eq": "arm64"}));
    }

    #[test]
    fn aliases_expand_to_vast_names() {
        let b = body(&format!("{BASE}    instance_type: 2xH100\n"));
        assert_eq!(b["num_gpus"], json!({"eq": 2}));
        assert_eq!(
            b["gpu_name"],
            json!({"in": ["H100 SXM", "H100 PCIE", "H100 NVL"]})
        );
        let b = body(&format!("{BASE}    instance_type: 4xA100_SXM\n"));
        assert_eq!(b["gpu_name"], json!({"in": ["A100 SXM4", "A100 SXM"]}));
        let b = body(&format!("{BASE}    instance_type: 8xA100_SXM4_80GB\n"));
        assert_eq!(b["gpu_name"], json!({"eq": "A100 SXM4"}));
        // Hosts report MiB less ECC and the driver's share: 93% of 80 × 1024.
        assert_eq!(b["gpu_ram"], json!({"gte": 76185}));
    }

    #[test]
    fn every_alias_and_every_model_becomes_its_vast_names() {
        use crate::cloud::vast::gpus::{ALIASES, CATALOG, GpuVendor, VAST_GPU_NAMES};
        for (alias, names) in ALIASES {
            let b = body(&format!("{BASE}    instance_type: 2x{alias}\n"));
            let expected = match names {
                [one] => json!({"eq": one}),
                many => json!({"in": many}),
            };
            assert_eq!(b["gpu_name"], expected, "{alias}");
            assert_eq!(b["num_gpus"], json!({"eq": 2}), "{alias}");
            assert!(b.get("gpu_ram").is_none(), "{alias}: no memory floor");
            assert_eq!(b["gpu_arch"], json!({"eq": "nvidia"}), "{alias}");
        }
        for (name, vendor) in VAST_GPU_NAMES {
            let written = name.replace(' ', "_");
            let Some(c) = candidates(&format!("{BASE}    instance_type: 1x{written}\n")) else {
                assert_eq!(*vendor, GpuVendor::Amd, "{written} refused");
                continue;
            };
            let b = search_body(&c);
            let listed = match &b["gpu_name"] {
                Value::Object(o) if o.contains_key("eq") => vec![o["eq"].clone()],
                Value::Object(o) => o["in"].as_array().cloned().unwrap_or_default(),
                _ => Vec::new(),
            };
            assert!(listed.contains(&json!(name)), "{written}: {listed:?}");
            assert_eq!(b["gpu_arch"], json!({"eq": vendor.gpu_arch()}), "{written}");
        }
        assert!(
            CATALOG
                .iter()
                .all(|g| VAST_GPU_NAMES.iter().any(|(n, _)| *n == g.vast_name))
        );
    }

    #[test]
    fn any_gpu_is_no_name_and_a_memory_floor() {
        let b = body(&format!(
            "{BASE}    instance_type: 1xANY\n    extra_config:\n      min_gpu_ram: 24\n"
        ));
        assert!(b.get("gpu_name").is_none());
        // An A10 reports 23028 MB, an L4 23034: both are 24 GB cards.
        assert_eq!(b["gpu_ram"], json!({"gte": 22855}));
        assert_eq!(b["gpu_arch"], json!({"eq": "nvidia"}), "never an AMD host");
    }

    /// The suffix and `min_gpu_ram` are one allowance: the larger need wins.
    #[test]
    fn a_suffix_and_min_gpu_ram_share_one_floor() {
        let b = body(&format!(
            "{BASE}    instance_type: 1xA100_40GB\n    extra_config:\n      min_gpu_ram: 80\n"
        ));
        assert_eq!(b["gpu_ram"], json!({"gte": memory_floor_mb(80.0)}));
        let b = body(&format!("{BASE}    instance_type: 1xA100_80GB\n"));
        assert_eq!(b["gpu_ram"], json!({"gte": memory_floor_mb(80.0)}));
    }

    /// The contract must outlast the machine: `max_runtime` minutes, or the
    /// controller's `max_lifetime` when that is shorter; in seconds.
    #[test]
    fn the_host_contract_outlasts_the_machine() {
        let yaml = format!(
            "{BASE}    instance_type: 1xRTX_4090\n    extra_config:\n      max_runtime: 120\n"
        );
        assert_eq!(body(&yaml)["duration"], json!({"gte": 7_200}));
        let parsed = parse_file(
            std::path::Path::new(".cirun.yml"),
            &yaml,
            FileKind::Repository,
        );
        let runner = parsed.config.unwrap().runners[0].vast.clone().unwrap();
        let one_hour = Some(Duration::from_secs(3_600));
        let f = filter_for(&runner.candidates[0], &runner.extra, "amd64", one_hour);
        assert_eq!(search_body(&f)["duration"], json!({"gte": 3_600}));
    }

    #[test]
    fn extra_config_keys_map_with_their_units() {
        let b = body(&format!(
            "{BASE}    instance_type: 1xRTX_3090\n    region: us\n    extra_config:\n      disk_space: 200\n      min_ram: 32\n      max_dph: 0.8\n      min_reliability: 0.99\n      min_inet_down: 500\n      verified: false\n      min_cuda: \"12.6\"\n"
        ));
        assert_eq!(b["disk_space"], json!({"gte": 200.0}));
        assert_eq!(b["allocated_storage"], json!(200.0));
        assert_eq!(b["cpu_ram"], json!({"gte": 32000.0}));
        assert_eq!(b["geolocation"], json!({"eq": "US"}));
        assert_eq!(b["dph_total"], json!({"lte": 0.8}));
        assert_eq!(b["reliability"], json!({"gte": 0.99}));
        assert_eq!(b["inet_down"], json!({"gte": 500.0}));
        assert!(
            b.get("verified").is_none(),
            "verified: false drops the filter"
        );
        assert_eq!(b["cuda_max_good"], json!({"gte": 12.6}));
    }

    #[test]
    fn cuda_comes_from_the_image_tag() {
        let b = body(&format!(
            "{BASE}    instance_type: 1xRTX_4090\n    machine_image: nvidia/cuda:12.1.0-devel-ubuntu22.04\n"
        ));
        assert_eq!(b["cuda_max_good"], json!({"gte": 12.1}));
        let b = body(&format!(
            "{BASE}    instance_type: 1xRTX_4090\n    machine_image: ubuntu:22.04\n"
        ));
        assert!(b.get("cuda_max_good").is_none());
    }

    #[test]
    fn cuda_12_10_is_above_12_9_not_12_1() {
        let cuda = |v: &str| {
            body(&format!(
                "{BASE}    instance_type: 1xRTX_4090\n    machine_image: ubuntu:22.04\n    extra_config:\n      min_cuda: \"{v}\"\n"
            ))["cuda_max_good"]["gte"]
                .as_f64()
                .unwrap()
        };
        let (v1, v9, v10) = (cuda("12.1"), cuda("12.9"), cuda("12.10"));
        assert_eq!((v1, v9), (12.1, 12.9), "the floats Vast.ai uses");
        assert!(v10 > v9 && v10 < 13.0, "12.10 sent as {v10}");
        // A host reporting 12.9 does not pass for 12.10; one at 13.0 does.
        let f = &filters(&format!(
            "{BASE}    instance_type: 1xRTX_4090\n    extra_config:\n      min_cuda: \"12.10\"\n"
        ))[0];
        let need = f.min_cuda.unwrap();
        let host = |v: f64| crate::cloud::Offer {
            cuda_max_good: v,
            ..Default::default()
        };
        assert!(host(12.9).cuda() < need && host(12.1).cuda() < need);
        assert!(host(13.0).cuda() >= need);
    }

    #[test]
    fn vm_mode_needs_vm_hosts_with_direct_ports() {
        let b = body(&format!(
            "{BASE}    instance_type: 1xRTX_3090\n    machine_image: vastai/kvm:ubuntu_cli_22.04-2025-11-21\n    extra_config:\n      vm: true\n"
        ));
        assert_eq!(b["vms_enabled"], json!({"eq": true}));
        assert_eq!(b["direct_port_count"], json!({"gte": 1}));
    }

    #[test]
    fn preemptible_searches_bids_without_the_on_demand_price_cap() {
        let b = body(&format!(
            "{BASE}    instance_type: 1xRTX_4090\n    preemptible: true\n    extra_config:\n      max_dph: 0.5\n"
        ));
        assert_eq!(b["type"], json!("bid"));
        assert!(b.get("dph_total").is_none());
    }

    /// The diagnosis's search keeps the models and the CPU architecture and
    /// drops every filter it can tell about, the maker and contract included.
    #[test]
    fn the_broad_search_leaves_out_the_filters_the_diagnosis_counts() {
        let f = &filters(&format!(
            "{BASE}    instance_type: 1xANY\n    region: US\n    extra_config:\n      min_gpu_ram: 24\n      disk_space: 200\n"
        ))[0];
        let b = search_body(&broad_filter(f));
        for gone in [
            "gpu_arch",
            "duration",
            "gpu_ram",
            "geolocation",
            "cuda_max_good",
        ] {
            assert!(b.get(gone).is_none(), "{gone} in {b}");
        }
        assert_eq!(b["cpu_arch"], json!({"eq": "amd64"}));
        assert_eq!(b["num_gpus"], json!({"eq": 1}));
        assert_eq!(b["limit"], json!(1000));
    }

    #[test]
    fn fallback_candidates_each_get_their_own_query() {
        let f = filters(&format!(
            "{BASE}    instance_type: [1xRTX_4090, 2xRTX_3090]\n    region: [US, CA]\n"
        ));
        assert_eq!(f.len(), 2);
        assert_eq!((f[0].num_gpus, f[0].country.as_deref()), (1, Some("US")));
        assert_eq!((f[1].num_gpus, f[1].country.as_deref()), (2, Some("CA")));
    }
}
