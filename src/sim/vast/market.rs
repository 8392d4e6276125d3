//! A Vast.ai market generated from a seed: GPU models in realistic
//! proportions and at realistic prices, hosts in many countries, with the
//! fields and units of the real search API (reference §3.3).

use serde_json::{Map, Value, json};

use super::super::Rng;

/// Which GPU maker's driver a host runs (`gpu_arch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arch {
    Nvidia,
    Amd,
}

/// One GPU model on the market.
struct Model {
    name: &'static str,
    /// Memory per GPU as the host reports it: MiB, as `nvidia-smi` (or
    /// `rocm-smi`) shows it, which Vast.ai's API calls MB. An RTX 4090 is
    /// 24564, an A10 23028 (ECC on): less than "24 GB" × 1000.
    vram_mib: u32,
    /// Typical $/hour for one GPU on demand.
    price: f64,
    /// How common it is.
    share: f64,
    /// Vast.ai `dlperf` of one GPU, roughly.
    dlperf: f64,
    compute_cap: u32,
    arch: Arch,
    /// Grace Hopper hosts are arm64; every other model here sits in an
    /// x86-64 host.
    cpu_arch: &'static str,
}

const fn m(
    name: &'static str,
    vram_mib: u32,
    price: f64,
    share: f64,
    dlperf: f64,
    cc: u32,
) -> Model {
    Model {
        name,
        vram_mib,
        price,
        share,
        dlperf,
        compute_cap: cc,
        arch: Arch::Nvidia,
        cpu_arch: "amd64",
    }
}

/// An AMD model: no CUDA, no compute capability.
const fn amd(name: &'static str, vram_mib: u32, price: f64, share: f64, dlperf: f64) -> Model {
    Model {
        arch: Arch::Amd,
        ..m(name, vram_mib, price, share, dlperf, 0)
    }
}

/// An NVIDIA model in an arm64 host.
const fn arm(
    name: &'static str,
    vram_mib: u32,
    price: f64,
    share: f64,
    dlperf: f64,
    cc: u32,
) -> Model {
    Model {
        cpu_arch: "arm64",
        ..m(name, vram_mib, price, share, dlperf, cc)
    }
}

/// About forty models with the names Vast.ai lists (the `vastai` SDK's
/// `data/query.py`), including some without a figure in rigger's speed
/// table (`RTX 5070`, `A30`, `A100 SXM`), AMD GPUs (`RX 7900 XTX`,
/// `InstinctMI250X`, `PRO W7900`: Vast.ai writes the Instinct names without
/// a space) and arm64 Grace Hopper hosts (`GH200 SXM`). Prices are typical
/// on-demand $/GPU-hour; memory is the MiB figure the driver reports.
const MODELS: &[Model] = &[
    m("RTX 3060", 12288, 0.06, 4.0, 15.0, 860),
    m("RTX 3070", 8192, 0.07, 3.0, 18.0, 860),
    m("RTX 3080", 10240, 0.09, 4.0, 24.0, 860),
    m("RTX 3080 Ti", 12288, 0.11, 2.0, 27.0, 860),
    m("RTX 3090", 24576, 0.18, 10.0, 30.0, 860),
    m("RTX 3090 Ti", 24564, 0.21, 1.5, 33.0, 860),
    m("RTX 4060 Ti", 16380, 0.10, 2.0, 18.0, 890),
    m("RTX 4070", 12282, 0.11, 2.0, 24.0, 890),
    m("RTX 4070 Ti", 12282, 0.13, 2.0, 28.0, 890),
    m("RTX 4080", 16376, 0.17, 3.0, 36.0, 890),
    m("RTX 4080S", 16376, 0.18, 2.0, 38.0, 890),
    m("RTX 4090", 24564, 0.35, 14.0, 48.0, 890),
    m("RTX 5070", 12227, 0.12, 1.5, 30.0, 1200),
    m("RTX 5080", 16303, 0.25, 2.0, 45.0, 1200),
    m("RTX 5090", 32607, 0.60, 5.0, 66.0, 1200),
    m("RTX A4000", 16376, 0.10, 2.0, 16.0, 860),
    m("RTX A4500", 20470, 0.15, 1.0, 21.0, 860),
    m("RTX A5000", 24564, 0.20, 3.0, 27.0, 860),
    m("RTX A6000", 49140, 0.45, 4.0, 33.0, 860),
    m("RTX 6000Ada", 49140, 0.75, 2.0, 48.0, 890),
    m("Q RTX 8000", 49152, 0.30, 1.0, 18.0, 750),
    m("Tesla T4", 15360, 0.10, 1.5, 9.0, 750),
    m("Tesla V100", 16384, 0.20, 2.0, 25.0, 700),
    m("A10", 23028, 0.20, 1.0, 21.0, 860),
    m("A30", 24576, 0.22, 0.8, 24.0, 800),
    m("A40", 46068, 0.40, 1.5, 31.0, 860),
    m("L4", 23034, 0.25, 1.0, 13.0, 890),
    m("L40", 46068, 0.70, 1.0, 42.0, 890),
    m("L40S", 46068, 0.80, 2.0, 45.0, 890),
    m("A100 PCIE", 40960, 0.90, 2.0, 54.0, 800),
    m("A100 SXM4", 81920, 1.10, 3.0, 60.0, 800),
    m("A100 SXM", 81920, 1.05, 1.0, 60.0, 800),
    m("H100 PCIE", 81559, 1.90, 2.0, 78.0, 900),
    m("H100 SXM", 81559, 2.20, 4.0, 99.0, 900),
    m("H100 NVL", 95830, 2.30, 1.0, 90.0, 900),
    m("H200", 143771, 3.00, 1.0, 108.0, 900),
    arm("GH200 SXM", 97871, 1.60, 0.8, 100.0, 900),
    amd("RX 7900 XTX", 24560, 0.14, 3.0, 40.0),
    amd("PRO W7900", 49136, 0.35, 0.8, 40.0),
    amd("InstinctMI250X", 65520, 0.90, 0.6, 70.0),
];

/// Share of hosts whose contract ends within hours (hosts set an end date
/// on their listing; an instance is stopped when it passes).
const SHORT_CONTRACT_SHARE: f64 = 0.12;

/// Every model name, as `GET /api/v0/gpu_names/unique/` lists them.
pub fn gpu_names() -> Vec<&'static str> {
    MODELS.iter().map(|m| m.name).collect()
}

/// Countries with a host, their share, and some places in them.
const COUNTRIES: &[(&str, f64, &[&str])] = &[
    (
        "US",
        30.0,
        &[
            "Texas",
            "California",
            "Oregon",
            "Virginia",
            "New York",
            "Utah",
            "",
        ],
    ),
    ("CA", 6.0, &["Quebec", "Ontario", "British Columbia"]),
    ("DE", 6.0, &["Bavaria", "Hesse", "Berlin"]),
    ("GB", 4.0, &["England", "Scotland"]),
    ("FR", 3.0, &["Ile-de-France", "Occitanie"]),
    ("NL", 3.0, &["North Holland"]),
    ("SE", 3.0, &["Stockholm County"]),
    ("NO", 2.0, &["Oslo"]),
    ("PL", 3.0, &["Masovia"]),
    ("CZ", 2.0, &["Prague"]),
    ("ES", 2.0, &["Madrid"]),
    ("FI", 2.0, &["Uusimaa"]),
    ("JP", 4.0, &["Tokyo"]),
    ("KR", 3.0, &["Seoul"]),
    ("TW", 4.0, &["Taipei"]),
    ("SG", 2.0, &["Singapore"]),
    ("AU", 2.0, &["New South Wales"]),
    ("IN", 2.0, &["Maharashtra"]),
    ("BR", 2.0, &["Sao Paulo"]),
    ("VN", 4.0, &["Hanoi", "Ho Chi Minh City"]),
    ("CN", 5.0, &["Guangdong", "Shanghai"]),
    ("HK", 2.0, &["Hong Kong"]),
];

const CUDA: &[f64] = &[11.8, 12.0, 12.2, 12.4, 12.6, 12.8, 13.0];
const DRIVERS: &[&str] = &[
    "520.61.05",
    "525.147.05",
    "535.183.01",
    "550.127.05",
    "560.35.03",
    "570.124.04",
    "580.65.06",
];

/// `n` offers drawn from `seed`. Offer ids are unique and stable per seed.
pub fn generate(seed: u64, n: usize, now_s: f64) -> Vec<Map<String, Value>> {
    let mut rng = Rng::new(seed);
    let shares: Vec<f64> = MODELS.iter().map(|m| m.share).collect();
    let country_shares: Vec<f64> = COUNTRIES.iter().map(|c| c.1).collect();
    let mut next_id: i64 = 3_000_000 + (seed % 1000) as i64 * 10_000;
    (0..n)
        .map(|i| {
            let model = &MODELS[rng.weighted(&shares)];
            let num_gpus = [1u32, 1, 1, 1, 2, 2, 4, 8][rng.below(8)];
            let (cc, _, places) = COUNTRIES[rng.weighted(&country_shares)];
            let place = places[rng.below(places.len())];
            let geolocation = format!("{place}, {cc}");
            let machine_id = 10_000 + rng.below(90_000) as i64;
            next_id += 1 + rng.below(50) as i64;
            let price_factor = rng.range(0.7, 1.45);
            let dph_base = round4(model.price * f64::from(num_gpus) * price_factor);
            let storage_cost = round4(rng.range(0.05, 0.30)); // $/GB/month
            // Reliability is mostly high; new hosts start around 0.6.
            let reliability = round4(if rng.chance(0.1) {
                rng.range(0.6, 0.95)
            } else {
                rng.range(0.95, 0.9995)
            });
            let cuda_i = rng.below(CUDA.len());
            // An AMD host has no CUDA driver: its driver is ROCm's amdgpu.
            let (cuda_max_good, driver) = match model.arch {
                Arch::Nvidia => (CUDA[cuda_i], DRIVERS[cuda_i]),
                Arch::Amd => (0.0, "6.10.5"),
            };
            // Seconds until the host's listing ends (`duration`).
            let contract_s = if rng.chance(SHORT_CONTRACT_SHARE) {
                rng.range(0.5, 12.0) * 3600.0
            } else {
                rng.range(7.0, 120.0) * 86_400.0
            };
            let vms_enabled = rng.chance(0.3);
            let direct_ports = if vms_enabled || rng.chance(0.7) {
                rng.below(200) as i64 + 1
            } else {
                0
            };
            let cpu_cores = [8u32, 16, 24, 32, 64, 128][rng.below(6)];
            let vram_mb = model.vram_mib;
            let disk = (rng.range(40.0, 2000.0)).round();
            let verified = rng.chance(0.85);
            let dlperf = round4(model.dlperf * f64::from(num_gpus) * rng.range(0.85, 1.1));
            let mut o = json!({
                "id": next_id,
                "ask_contract_id": next_id,
                "bundle_id": 900_000 + i as i64,
                "machine_id": machine_id,
                "host_id": 100 + machine_id % 5000,
                "gpu_name": model.name,
                "num_gpus": num_gpus,
                "gpu_ram": vram_mb,
                "gpu_total_ram": vram_mb * num_gpus,
                "gpu_frac": 1.0,
                "gpu_arch": match model.arch {
                    Arch::Nvidia => "nvidia",
                    Arch::Amd => "amd",
                },
                "compute_cap": model.compute_cap,
                "cpu_arch": model.cpu_arch,
                "cpu_cores": cpu_cores,
                "cpu_cores_effective": f64::from(cpu_cores) * f64::from(num_gpus) / 8.0_f64.max(f64::from(num_gpus)),
                "cpu_ram": (rng.range(16.0, 512.0) * 1000.0).round(),
                "cpu_name": if model.cpu_arch == "arm64" { "NVIDIA Grace" } else { "AMD EPYC 7543" },
                "disk_space": disk,
                "disk_name": "Samsung SSD 990",
                "dph_base": dph_base,
                "storage_cost": storage_cost,
                "min_bid": round4(dph_base * rng.range(0.35, 0.7)),
                "inet_down": (rng.range(50.0, 5000.0)).round(),
                "inet_up": (rng.range(50.0, 3000.0)).round(),
                "inet_down_cost": round4(rng.range(0.0, 0.02)),
                "inet_up_cost": round4(rng.range(0.0, 0.02)),
                "reliability": reliability,
                "reliability2": reliability,
                "cuda_max_good": cuda_max_good,
                "driver_version": driver,
                "driver_vers": driver_number(driver),
                "geolocation": geolocation,
                "verification": if verified { "verified" } else { "unverified" },
                "vms_enabled": vms_enabled,
                "direct_port_count": direct_ports,
                "hosting_type": i64::from(rng.chance(0.2)),
                "rentable": true,
                "rented": false,
                "external": false,
                "dlperf": dlperf,
                "score": dlperf,
                "total_flops": round4(dlperf * 1.3),
                "os_version": "22.04",
                "pci_gen": 4.0,
                "public_ipaddr": format!("203.0.113.{}", 1 + rng.below(254)),
                "static_ip": rng.chance(0.5),
                "end_date": (now_s + contract_s).round(),
            });
            let map = o.as_object_mut().expect("an object");
            std::mem::take(map)
        })
        .collect()
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// `535.86.05` → 535086005, as the API compares driver versions.
pub fn driver_number(v: &str) -> i64 {
    let mut parts = v.split('.').map(|p| p.parse::<i64>().unwrap_or(0));
    let a = parts.next().unwrap_or(0);
    let b = parts.next().unwrap_or(0);
    let c = parts.next().unwrap_or(0);
    a * 1_000_000 + b * 1000 + c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_market() {
        assert_eq!(generate(7, 50, 0.0), generate(7, 50, 0.0));
        assert_ne!(generate(7, 50, 0.0), generate(8, 50, 0.0));
    }

    #[test]
    fn a_default_market_is_varied() {
        let offers = generate(1, 2000, 0.0);
        let mut models: Vec<&str> = offers
            .iter()
            .map(|o| o["gpu_name"].as_str().unwrap())
            .collect();
        models.sort_unstable();
        models.dedup();
        assert!(models.len() >= 36, "{}", models.len());
        let mut ids: Vec<i64> = offers.iter().map(|o| o["id"].as_i64().unwrap()).collect();
        ids.dedup();
        assert_eq!(ids.len(), 2000, "ids are unique and increasing");
        assert!(offers.iter().any(|o| o["vms_enabled"] == true));
        assert!(
            offers
                .iter()
                .any(|o| o["geolocation"].as_str().unwrap().ends_with("DE"))
        );
    }

    /// What the issue says the market lacked: AMD GPUs, arm64 hosts,
    /// contracts ending within hours, names outside rigger's speed table,
    /// memory in MiB as the driver reports it.
    #[test]
    fn the_market_has_what_vast_ai_has() {
        let offers = generate(1, 2000, 1_000.0);
        let has = |f: &dyn Fn(&Map<String, Value>) -> bool| offers.iter().any(f);
        let s = |o: &Map<String, Value>, k: &str| o[k].as_str().unwrap_or_default().to_string();
        assert!(has(
            &|o| s(o, "gpu_arch") == "amd" && s(o, "gpu_name") == "RX 7900 XTX"
        ));
        assert!(has(
            &|o| s(o, "gpu_name") == "InstinctMI250X" && o["cuda_max_good"] == 0.0
        ));
        assert!(has(
            &|o| s(o, "cpu_arch") == "arm64" && s(o, "gpu_name") == "GH200 SXM"
        ));
        assert!(
            offers
                .iter()
                .all(|o| (s(o, "cpu_arch") == "arm64") == (s(o, "gpu_name") == "GH200 SXM"))
        );
        let hours = |o: &Map<String, Value>| (o["end_date"].as_f64().unwrap() - 1_000.0) / 3600.0;
        assert!(has(&|o| hours(o) < 6.0), "some contracts end within hours");
        assert!(has(&|o| hours(o) > 24.0 * 7.0));
        for name in ["RTX 5070", "A30", "A100 SXM"] {
            assert!(has(&|o| s(o, "gpu_name") == name), "{name}");
        }
        let ram = |name: &str| {
            offers
                .iter()
                .find(|o| s(o, "gpu_name") == name)
                .map(|o| o["gpu_ram"].as_u64().unwrap())
        };
        assert_eq!(ram("RTX 4090"), Some(24564));
        assert_eq!(ram("A10"), Some(23028));
        assert_eq!(ram("L4"), Some(23034));
        assert_eq!(ram("A100 SXM4"), Some(81920));
    }
}
