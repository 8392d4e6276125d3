//! The GPU models Vast.ai lists, and how a `.cirun.yml` `instance_type` names them.
//!
//! Vast.ai stores display names with spaces (`RTX 4090`, `A100 SXM4`); Cirun's
//! `instance_type` writes them with underscores (`1xRTX_4090`) and also uses
//! family names that are not Vast names at all (`H100`, `A100_SXM`,
//! `A100_SXM4_80GB`). This table is the one place that knows both.
//!
//! Every name Vast.ai lists is accepted ([`VAST_GPU_NAMES`]); the speed
//! table ([`CATALOG`]) covers the common ones, and a model without a figure
//! is ranked by its offers' `dlperf`.

pub use super::gpu_names::VAST_GPU_NAMES;
use crate::config::suggest::nearest;

/// Who makes a GPU: Vast.ai's `gpu_arch` column (`nvidia`, `amd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuVendor {
    Nvidia,
    Amd,
}

impl GpuVendor {
    /// The value of Vast.ai's `gpu_arch` for this maker.
    pub fn gpu_arch(self) -> &'static str {
        match self {
            GpuVendor::Nvidia => "nvidia",
            GpuVendor::Amd => "amd",
        }
    }
}

/// The maker of a model, by its exact Vast.ai name.
pub fn vendor_of(vast_name: &str) -> Option<GpuVendor> {
    VAST_GPU_NAMES
        .iter()
        .find(|(n, _)| *n == vast_name)
        .map(|(_, v)| *v)
}

/// One GPU model as Vast.ai names it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuModel {
    /// The exact `gpu_name` Vast.ai reports and filters on.
    pub vast_name: &'static str,
    /// Memory per GPU as sold, GB × 1000. Hosts report less, in MiB (see
    /// [`memory_floor_mb`]); searches never compare with this figure.
    pub vram_mb: u32,
    /// Relative FP16 training speed, RTX 3090 = 1.0. `None` where no figure
    /// is recorded yet; callers fall back to the offer's `dlperf`.
    pub relative_speed: Option<f64>,
}

const fn gpu(vast_name: &'static str, vram_gb: u32, speed: Option<f64>) -> GpuModel {
    GpuModel {
        vast_name,
        vram_mb: vram_gb * 1000,
        relative_speed: speed,
    }
}

/// GPU models commonly listed on Vast.ai.
///
/// Relative speeds: the eight anchors (RTX 3060 0.5, RTX 3090 1.0, RTX 4090
/// 1.6, RTX A5000 0.9, RTX A6000 1.1, L40S 1.5, A100 SXM4 2.0, H100 SXM 3.3)
/// are the figures rigger's specification gives for FP16 training. The
/// others are placed between those anchors from each card's public figures,
/// given on its line: dense FP16 tensor throughput (TFLOPS, without
/// sparsity; for GeForce cards the FP16-accumulate figure of NVIDIA's
/// architecture whitepapers, which halves with FP32 accumulate) and memory
/// bandwidth (GB/s) from NVIDIA's datasheets, and where published, the
/// per-GPU ratios of Lambda's PyTorch training benchmarks and MLPerf
/// Training. Rounded to 0.05. The anchors grow far slower than the tensor
/// figures (A100 → H100 is 3.2× in TFLOPS, 1.65× in the anchors), because
/// training is rarely compute-bound, so an estimate follows bandwidth and
/// the benchmarks more than TFLOPS. They only order offers by estimated
/// duration; a model without a figure (`None`) is ranked by `dlperf`.
pub const CATALOG: &[GpuModel] = &[
    // Pascal, no tensor cores: 11.3 TFLOPS FP32 (FP16 runs at 1/64), 484 GB/s;
    // Lambda: ~0.35–0.4× an RTX 3090.
    gpu("GTX 1080 Ti", 11, Some(0.35)),
    // Turing: 107 FP16 tensor, 616 GB/s; Lambda: ~0.6× an RTX 3090.
    gpu("RTX 2080 Ti", 11, Some(0.6)),
    // Anchor. GA106: 51 FP16 tensor, 360 GB/s.
    gpu("RTX 3060", 12, Some(0.5)),
    // GA104: 65 FP16 tensor, 448 GB/s.
    gpu("RTX 3060 Ti", 8, Some(0.55)),
    // GA104: 81 FP16 tensor, 448 GB/s.
    gpu("RTX 3070", 8, Some(0.6)),
    // GA102: 119 FP16 tensor, 760 GB/s.
    gpu("RTX 3080", 10, Some(0.8)),
    // GA102: 136 FP16 tensor, 912 GB/s.
    gpu("RTX 3080 Ti", 12, Some(0.9)),
    // The reference. GA102: 142 FP16 tensor, 936 GB/s.
    gpu("RTX 3090", 24, Some(1.0)),
    // GA102: 160 FP16 tensor, 1,008 GB/s.
    gpu("RTX 3090 Ti", 24, Some(1.1)),
    // AD106: 88 FP16 tensor, but 288 GB/s: bandwidth-bound.
    gpu("RTX 4060 Ti", 16, Some(0.6)),
    // AD104: 117 FP16 tensor, 504 GB/s.
    gpu("RTX 4070", 12, Some(0.8)),
    // AD104: 160 FP16 tensor, 504 GB/s.
    gpu("RTX 4070 Ti", 12, Some(0.95)),
    // AD103: 195 FP16 tensor, 717 GB/s.
    gpu("RTX 4080", 16, Some(1.2)),
    // AD103: 209 FP16 tensor, 736 GB/s.
    gpu("RTX 4080S", 16, Some(1.25)),
    // Anchor. AD102: 330 FP16 tensor, 1,008 GB/s.
    gpu("RTX 4090", 24, Some(1.6)),
    // AD102 cut down: 294 FP16 tensor, 1,008 GB/s.
    gpu("RTX 4090D", 24, Some(1.45)),
    // Blackwell GB203: ~225 FP16 tensor (1,801 "AI TOPS" is sparse FP4),
    // 960 GB/s: a little above an RTX 4080S.
    gpu("RTX 5080", 16, Some(1.4)),
    // GB202: ~419 FP16 tensor, 1,792 GB/s.
    gpu("RTX 5090", 32, Some(2.2)),
    // GA104: 77 FP16 tensor, 448 GB/s.
    gpu("RTX A4000", 16, Some(0.55)),
    // GA102: 95 FP16 tensor, 640 GB/s.
    gpu("RTX A4500", 20, Some(0.7)),
    // Anchor. GA102: 111 FP16 tensor, 768 GB/s.
    gpu("RTX A5000", 24, Some(0.9)),
    // Anchor. GA102: 155 FP16 tensor, 768 GB/s.
    gpu("RTX A6000", 48, Some(1.1)),
    // AD104: ~107 FP16 tensor, 360 GB/s.
    gpu("RTX 4000Ada", 20, Some(0.6)),
    // AD102: ~261 FP16 tensor, 576 GB/s.
    gpu("RTX 5000Ada", 32, Some(1.1)),
    // AD102: ~364 FP16 tensor, 960 GB/s: about an RTX 4090.
    gpu("RTX 6000Ada", 48, Some(1.6)),
    // Blackwell GB202 workstation, 600 W: ~500 FP16 tensor (4,000 "AI TOPS"
    // sparse FP4), 1,792 GB/s: a little above an RTX 5090.
    gpu("RTX PRO 6000", 96, Some(2.3)),
    // The same chip at 300 W: ~3,511 "AI TOPS", about 0.88× the 600 W card.
    gpu("RTX PRO 6000 Max-Q", 96, Some(2.0)),
    // Turing: 130 FP16 tensor, 672 GB/s; Lambda: about an RTX 2080 Ti.
    gpu("Q RTX 8000", 48, Some(0.6)),
    // Turing, 70 W: 65 FP16 tensor, 320 GB/s.
    gpu("Tesla T4", 16, Some(0.3)),
    // Volta: 125 FP16 tensor (SXM2), 900 GB/s; Lambda: ~0.85× an RTX 3090.
    gpu("Tesla V100", 16, Some(0.85)),
    // Pascal, no tensor cores: 19 TFLOPS FP16, 732 GB/s.
    gpu("Tesla P100", 16, Some(0.4)),
    // GA102, 150 W: 125 FP16 tensor, 600 GB/s.
    gpu("A10", 24, Some(0.7)),
    // GA102: 150 FP16 tensor, 696 GB/s.
    gpu("A40", 48, Some(1.05)),
    // AD104, 72 W: 121 FP16 tensor, 300 GB/s.
    gpu("L4", 24, Some(0.45)),
    // AD102: 181 FP16 tensor, 864 GB/s.
    gpu("L40", 48, Some(1.4)),
    // Anchor. AD102: 362 FP16 tensor, 864 GB/s.
    gpu("L40S", 48, Some(1.5)),
    // GA100: 312 FP16 tensor, 1,555–1,935 GB/s, lower clocks than the SXM4.
    gpu("A100 PCIE", 40, Some(1.8)),
    // Anchor. GA100: 312 FP16 tensor, 1,555–2,039 GB/s.
    gpu("A100 SXM4", 40, Some(2.0)),
    // The same SXM4 module; some hosts list it under this name.
    gpu("A100 SXM", 40, Some(2.0)),
    // A100 80 GB PCIe with a DPU: 312 FP16 tensor, 2,039 GB/s.
    gpu("A100X", 80, Some(2.0)),
    // GH100 PCIe: 756 FP16 tensor, 2,000 GB/s.
    gpu("H100 PCIE", 80, Some(2.6)),
    // Anchor. GH100: 989 FP16 tensor, 3,350 GB/s.
    gpu("H100 SXM", 80, Some(3.3)),
    // GH100 NVL: ~835 FP16 tensor, 3,900 GB/s.
    gpu("H100 NVL", 94, Some(3.0)),
    // GH100 with HBM3e: 989 FP16 tensor, 4,800 GB/s; MLPerf: ~1.1–1.4× H100.
    gpu("H200", 141, Some(3.6)),
    // Blackwell: ~2,250 FP16 tensor, 8,000 GB/s; MLPerf Training v4.1/v5.0:
    // ~2× an H100 per GPU on LLM pre-training, discounted as the anchors are.
    gpu("B200", 180, Some(5.5)),
];

/// Family names Cirun users write that are not Vast.ai names, and the Vast.ai
/// models each one stands for. Keys are normalised (see [`normalise`]).
pub const ALIASES: &[(&str, &[&str])] = &[
    ("H100", &["H100 SXM", "H100 PCIE", "H100 NVL"]),
    // Vast.ai lists the SXM4 module under two names.
    ("A100", &["A100 PCIE", "A100 SXM4", "A100 SXM"]),
    ("A100SXM", &["A100 SXM4", "A100 SXM"]),
    ("A100PCI", &["A100 PCIE"]),
    ("T4", &["Tesla T4"]),
    ("V100", &["Tesla V100"]),
    ("P100", &["Tesla P100"]),
    ("A4000", &["RTX A4000"]),
    ("A4500", &["RTX A4500"]),
    ("A5000", &["RTX A5000"]),
    ("A6000", &["RTX A6000"]),
    ("RTX6000ADA", &["RTX 6000Ada"]),
    ("RTX5000ADA", &["RTX 5000Ada"]),
    ("RTX4000ADA", &["RTX 4000Ada"]),
    ("QUADRORTX8000", &["Q RTX 8000"]),
    ("RTX8000", &["Q RTX 8000"]),
];

/// What an `instance_type` GPU model resolves to.
#[derive(Debug, Clone, PartialEq)]
pub enum GpuChoice {
    /// One or more Vast.ai models (several for a family alias such as `H100`),
    /// optionally with a minimum memory per GPU from a `_80GB` suffix (GB,
    /// as written; [`memory_floor_mb`] turns it into what hosts report).
    Models {
        vast_names: Vec<&'static str>,
        min_vram_gb: Option<u32>,
    },
    /// `ANY`: no model named; the job states its memory need in
    /// `extra_config.min_gpu_ram` and the cheapest fitting model wins.
    Any,
}

impl GpuChoice {
    /// The maker whose GPUs the search must ask for: NVIDIA for `ANY` (a
    /// runner checks its GPUs with `nvidia-smi`, which an AMD host lacks),
    /// otherwise the maker of the models named (`None` if they were mixed).
    pub fn vendor(&self) -> Option<GpuVendor> {
        match self {
            GpuChoice::Any => Some(GpuVendor::Nvidia),
            GpuChoice::Models { vast_names, .. } => {
                let mut vendors = vast_names.iter().map(|n| vendor_of(n));
                let first = vendors.next().flatten()?;
                vendors.all(|v| v == Some(first)).then_some(first)
            }
        }
    }
}

/// The least `gpu_ram` (MB, as Vast.ai reports it) a host may show for a
/// GPU sold as `gb` GB. Hosts report what the driver does (`nvidia-smi`'s
/// MiB): an RTX 4090 24564, an A100 80 GB 81920, but a card with ECC on
/// loses a sixteenth, and the driver keeps some more (A10 23028, L4 23034,
/// A40 46068 for 48 GB). 93% of the size in MiB (GB × 1024) admits all of
/// them and still tells a 40 GB card from an 80 GB one. The one place that
/// turns a GB figure into a `gpu_ram` floor: the `_80GB` suffix and
/// `min_gpu_ram` both come here.
pub fn memory_floor_mb(gb: f64) -> u32 {
    // gb ≤ MAX_GPU_MEMORY_GB (the parsers check), so this fits a u32.
    (gb * 1024.0 * 0.93).floor() as u32
}

/// Most memory per GPU an `instance_type` may ask for, GB. The largest GPU
/// in [`CATALOG`] has 180 GB (B200); 1 TB leaves room for the next ones,
/// and keeps the MB figure ([`memory_floor_mb`]) far inside a `u32`.
pub const MAX_GPU_MEMORY_GB: u32 = 1024;

/// Most GPUs an `instance_type` may ask for. The largest Vast.ai hosts
/// carry 8 to 16; no host has 64.
pub const MAX_GPU_COUNT: u32 = 64;

/// Why a GPU model could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuError {
    /// Neither a Vast.ai model nor a family alias; [`suggestions`] names
    /// the nearest ones.
    #[error("unknown GPU model")]
    Unknown,
    /// A memory suffix (`_80GB`) above [`MAX_GPU_MEMORY_GB`].
    #[error("`{written}` is more memory than any GPU has: at most {MAX_GPU_MEMORY_GB} GB per GPU")]
    TooMuchMemory {
        /// The suffix as written, cut to a readable length.
        written: String,
    },
}

/// Uppercase with spaces, underscores and hyphens removed, so that
/// `RTX_4090`, `rtx 4090` and `RTX-4090` compare equal.
pub fn normalise(name: &str) -> String {
    normalised(name).collect()
}

/// [`normalise`] without collecting: comparing a name with every model of
/// the catalog allocates nothing.
fn normalised(name: &str) -> impl Iterator<Item = char> + '_ {
    name.chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-'))
        .flat_map(char::to_uppercase)
}

/// Resolve the model part of `instance_type` (after `Nx`): `RTX_4090`, `H100`,
/// `A100_SXM4_80GB`, `ANY`.
pub fn resolve(model: &str) -> Result<GpuChoice, GpuError> {
    let (base, min_vram_gb) = split_memory_suffix(model)?;
    let key = normalise(base);
    if key == "ANY" && min_vram_gb.is_none() {
        return Ok(GpuChoice::Any);
    }
    let vast_names: Vec<&'static str> =
        if let Some((_, names)) = ALIASES.iter().find(|(alias, _)| *alias == key) {
            names.to_vec()
        } else if let Some((found, _)) = VAST_GPU_NAMES
            .iter()
            .find(|(name, _)| normalised(name).eq(key.chars()))
        {
            vec![*found]
        } else {
            return Err(GpuError::Unknown);
        };
    Ok(GpuChoice::Models {
        vast_names,
        min_vram_gb,
    })
}

/// Look a model up by its exact Vast.ai name.
pub fn by_vast_name(name: &str) -> Option<&'static GpuModel> {
    CATALOG.iter().find(|g| g.vast_name == name)
}

/// `A100_SXM4_80GB` → (`A100_SXM4`, Some(80)).
fn split_memory_suffix(model: &str) -> Result<(&str, Option<u32>), GpuError> {
    let Some((base, suffix)) = model.rsplit_once(['_', '-', ' ']) else {
        return Ok((model, None));
    };
    let digits = match suffix.get(suffix.len().saturating_sub(2)..) {
        Some(unit) if unit.eq_ignore_ascii_case("GB") => &suffix[..suffix.len() - 2],
        _ => return Ok((model, None)),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Ok((model, None));
    }
    // All digits: too many of them for a u32 is too much memory, not a name.
    match digits.parse::<u32>() {
        Ok(0) => Ok((model, None)),
        Ok(gb) if gb <= MAX_GPU_MEMORY_GB => Ok((base, Some(gb))),
        _ => Err(GpuError::TooMuchMemory {
            written: crate::text::for_log(suffix).into_owned(),
        }),
    }
}

/// Most characters of a model name worth comparing with the known ones: the
/// longest known name has 19; comparing a longer one costs work for a
/// suggestion nobody can use.
const MAX_SUGGEST_CHARS: usize = 40;

/// The names a user most likely meant, written the way `instance_type`
/// wants them: at most three, from a fixed table, for a name of at most
/// [`MAX_SUGGEST_CHARS`] characters (none for a longer one).
pub fn suggestions(model: &str) -> Vec<String> {
    if model.chars().nth(MAX_SUGGEST_CHARS).is_some() {
        return Vec::new();
    }
    let spellings: Vec<String> = VAST_GPU_NAMES
        .iter()
        .map(|(name, _)| name.replace(' ', "_"))
        .chain(ALIASES.iter().map(|(alias, _)| alias.to_string()))
        .collect();
    let candidates: Vec<&str> = spellings.iter().map(String::as_str).collect();
    let mut found = nearest(&normalise(model), &candidates, 3, normalise);
    if found.is_empty() {
        // Nothing close: offer the models whose name shares the number, if any
        // (`RTX_4091` → `RTX_4090`, `RTX_4090D`). The digits are ASCII, so
        // the first three are three bytes.
        let digits: String = model.chars().filter(char::is_ascii_digit).collect();
        if let Some(head) = digits.get(..3) {
            found = candidates
                .iter()
                .filter(|c| c.contains(head))
                .take(3)
                .map(|c| c.to_string())
                .collect();
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models(choice: GpuChoice) -> (Vec<&'static str>, Option<u32>) {
        match choice {
            GpuChoice::Models {
                vast_names,
                min_vram_gb,
            } => (vast_names, min_vram_gb),
            GpuChoice::Any => panic!("expected models"),
        }
    }

    #[test]
    fn underscores_become_vast_names() {
        assert_eq!(
            models(resolve("RTX_4090").unwrap()),
            (vec!["RTX 4090"], None)
        );
        assert_eq!(
            models(resolve("RTX_3060").unwrap()),
            (vec!["RTX 3060"], None)
        );
        assert_eq!(
            models(resolve("rtx_a6000").unwrap()),
            (vec!["RTX A6000"], None)
        );
    }

    #[test]
    fn family_aliases_expand() {
        assert_eq!(
            models(resolve("H100").unwrap()).0,
            vec!["H100 SXM", "H100 PCIE", "H100 NVL"]
        );
        assert_eq!(
            models(resolve("A100_SXM").unwrap()).0,
            vec!["A100 SXM4", "A100 SXM"]
        );
        assert_eq!(
            models(resolve("A100").unwrap()).0,
            vec!["A100 PCIE", "A100 SXM4", "A100 SXM"]
        );
        assert_eq!(models(resolve("A100_SXM4").unwrap()).0, vec!["A100 SXM4"]);
    }

    #[test]
    fn memory_suffix_sets_a_floor() {
        let (names, vram) = models(resolve("A100_SXM4_80GB").unwrap());
        assert_eq!(names, vec!["A100 SXM4"]);
        assert_eq!(vram, Some(80));
    }

    #[test]
    fn any_is_its_own_choice() {
        assert_eq!(resolve("ANY").unwrap(), GpuChoice::Any);
        assert_eq!(resolve("any").unwrap(), GpuChoice::Any);
    }

    #[test]
    fn unknown_models_get_suggestions() {
        assert_eq!(resolve("RTX_4091"), Err(GpuError::Unknown));
        let near = suggestions("RTX_4091");
        assert!(near.contains(&"RTX_4090".to_string()), "{near:?}");
        let near = suggestions("H1OO");
        assert!(near.contains(&"H100".to_string()), "{near:?}");
        // A name longer than any known one gets no comparison at all.
        assert!(suggestions(&"RTX_4090".repeat(1000)).is_empty());
        // Multi-byte characters around the digits are skipped, not cut.
        assert!(suggestions("ü4ü0ü9ü").contains(&"RTX_4090".to_string()));
    }

    #[test]
    fn memory_suffixes_are_bounded() {
        // 4294968 × 1000 × 97 once overflowed a u32 (a panic in a debug
        // build, "≥ 1 GB" in a release build).
        for model in [
            "A100_4294968GB",
            "A100_99999999999999999999GB",
            "A100_1025GB",
        ] {
            let err = resolve(model).unwrap_err();
            assert!(matches!(err, GpuError::TooMuchMemory { .. }), "{model}");
            assert!(err.to_string().contains("at most 1024 GB"), "{err}");
        }
        assert_eq!(models(resolve("A100_1024GB").unwrap()).1, Some(1024));
        // Not a memory suffix: part of the (unknown) name.
        assert_eq!(resolve("A100_0GB"), Err(GpuError::Unknown));
        assert_eq!(resolve("A100_GB"), Err(GpuError::Unknown));
        assert_eq!(resolve("A100_ü0GB"), Err(GpuError::Unknown));
        assert_eq!(resolve("A100_üGB"), Err(GpuError::Unknown));
    }

    #[test]
    fn every_model_has_a_speed_and_the_anchors_hold() {
        for g in CATALOG {
            assert!(g.relative_speed.is_some_and(|s| s > 0.0), "{}", g.vast_name);
        }
        let speed = |n| by_vast_name(n).and_then(|g| g.relative_speed);
        for (name, anchor) in [
            ("RTX 3060", 0.5),
            ("RTX 3090", 1.0),
            ("RTX 4090", 1.6),
            ("RTX A5000", 0.9),
            ("RTX A6000", 1.1),
            ("L40S", 1.5),
            ("A100 SXM4", 2.0),
            ("H100 SXM", 3.3),
        ] {
            assert_eq!(speed(name), Some(anchor), "{name}");
        }
        // The Vast.ai name of the 300 W card resolves on its own.
        assert_eq!(
            models(resolve("RTX_PRO_6000_Max-Q").unwrap()).0,
            vec!["RTX PRO 6000 Max-Q"]
        );
    }

    #[test]
    fn every_catalog_name_resolves_to_itself() {
        for g in CATALOG {
            let (names, _) = models(resolve(&g.vast_name.replace(' ', "_")).unwrap());
            // `A100_SXM` is also the family of both SXM4 spellings.
            if g.vast_name == "A100 SXM" {
                assert_eq!(names, vec!["A100 SXM4", "A100 SXM"]);
            } else {
                assert_eq!(names, vec![g.vast_name]);
            }
        }
    }

    #[test]
    fn every_name_vast_ai_lists_resolves_to_itself() {
        for (name, _) in VAST_GPU_NAMES {
            let written = name.replace(' ', "_");
            let (names, _) = models(resolve(&written).unwrap());
            assert!(names.contains(name), "{written} → {names:?}");
        }
        // Names outside the speed table (refused before).
        for (written, name) in [
            ("RTX_5070", "RTX 5070"),
            ("A30", "A30"),
            ("GH200_SXM", "GH200 SXM"),
        ] {
            assert_eq!(models(resolve(written).unwrap()).0, vec![name]);
            assert!(by_vast_name(name).is_none_or(|g| g.vast_name == name));
        }
    }

    #[test]
    fn the_speed_table_and_the_aliases_name_only_listed_models() {
        for g in CATALOG {
            assert!(
                vendor_of(g.vast_name).is_some(),
                "{} is not a Vast.ai name",
                g.vast_name
            );
        }
        for (alias, names) in ALIASES {
            for n in *names {
                assert!(vendor_of(n).is_some(), "{alias}: {n}");
            }
            // An alias spelled like a Vast.ai name must include that name.
            if let Some((same, _)) = VAST_GPU_NAMES.iter().find(|(n, _)| normalise(n) == *alias) {
                assert!(names.contains(same), "{alias} hides {same}");
            }
        }
        let mut keys: Vec<String> = VAST_GPU_NAMES.iter().map(|(n, _)| normalise(n)).collect();
        keys.sort();
        let before = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), before, "two names that read the same");
    }

    #[test]
    fn makers_decide_gpu_arch() {
        assert_eq!(resolve("ANY").unwrap().vendor(), Some(GpuVendor::Nvidia));
        assert_eq!(resolve("H100").unwrap().vendor(), Some(GpuVendor::Nvidia));
        assert_eq!(
            resolve("RX_7900_XTX").unwrap().vendor(),
            Some(GpuVendor::Amd)
        );
        assert_eq!(
            resolve("InstinctMI250X").unwrap().vendor(),
            Some(GpuVendor::Amd)
        );
        assert_eq!(GpuVendor::Amd.gpu_arch(), "amd");
    }

    /// Hosts report MiB with ECC and the driver's share taken off: the
    /// floor for "24 GB" admits an A10 and an L4, the one for "80 GB" an
    /// A100 80 GB and an H100 but no 40 GB card.
    #[test]
    fn the_memory_floor_admits_what_hosts_report() {
        let floor = memory_floor_mb;
        for reported in [23_028, 23_034, 24_564, 24_576] {
            assert!(reported >= floor(24.0), "{reported}");
        }
        assert!(floor(24.0) > 20_470, "a 20 GB card is not 24 GB");
        for reported in [81_920, 81_559] {
            assert!(reported >= floor(80.0));
        }
        assert!(40_960 < floor(80.0) && 46_068 >= floor(48.0) && 15_360 >= floor(16.0));
    }
}
