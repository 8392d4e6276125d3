//! The GPU models Vast.ai lists, and how a `.cirun.yml` `instance_type` names them.
//!
//! Vast.ai stores display names with spaces (`RTX 4090`, `A100 SXM4`); Cirun's
//! `instance_type` writes them with underscores (`1xRTX_4090`) and also uses
//! family names that are not Vast names at all (`H100`, `A100_SXM`,
//! `A100_SXM4_80GB`). This table is the one place that knows both.

use crate::config::suggest::nearest;

/// One GPU model as Vast.ai names it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuModel {
    /// The exact `gpu_name` Vast.ai reports and filters on.
    pub vast_name: &'static str,
    /// Nominal memory per GPU in MB, as Vast.ai counts it (1 GB = 1000 MB).
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
/// others are estimates placed between those anchors by each card's dense
/// FP16 tensor throughput and memory bandwidth in NVIDIA's published
/// datasheets and architecture whitepapers (Turing, Ampere GA102/GA100, Ada
/// AD102, Hopper), rounded to 0.05; where a datasheet ratio and the anchors
/// disagree the anchors win, because training is rarely compute-bound. They
/// only order offers by estimated duration; a model without a figure (`None`)
/// is ranked by the offer's `dlperf` instead.
pub const CATALOG: &[GpuModel] = &[
    gpu("GTX 1080 Ti", 11, Some(0.35)),
    gpu("RTX 2080 Ti", 11, Some(0.6)),
    gpu("RTX 3060", 12, Some(0.5)),
    gpu("RTX 3060 Ti", 8, Some(0.55)),
    gpu("RTX 3070", 8, Some(0.6)),
    gpu("RTX 3080", 10, Some(0.8)),
    gpu("RTX 3080 Ti", 12, Some(0.9)),
    gpu("RTX 3090", 24, Some(1.0)),
    gpu("RTX 3090 Ti", 24, Some(1.1)),
    gpu("RTX 4060 Ti", 16, Some(0.6)),
    gpu("RTX 4070", 12, Some(0.8)),
    gpu("RTX 4070 Ti", 12, Some(0.95)),
    gpu("RTX 4080", 16, Some(1.2)),
    gpu("RTX 4080S", 16, Some(1.25)),
    gpu("RTX 4090", 24, Some(1.6)),
    gpu("RTX 4090D", 24, Some(1.45)),
    gpu("RTX 5080", 16, None),
    gpu("RTX 5090", 32, Some(2.2)),
    gpu("RTX A4000", 16, Some(0.55)),
    gpu("RTX A4500", 20, Some(0.7)),
    gpu("RTX A5000", 24, Some(0.9)),
    gpu("RTX A6000", 48, Some(1.1)),
    gpu("RTX 4000Ada", 20, Some(0.6)),
    gpu("RTX 5000Ada", 32, Some(1.1)),
    gpu("RTX 6000Ada", 48, Some(1.6)),
    gpu("RTX PRO 6000", 96, None),
    gpu("Q RTX 8000", 48, Some(0.6)),
    gpu("Tesla T4", 16, Some(0.3)),
    gpu("Tesla V100", 16, Some(0.85)),
    gpu("Tesla P100", 16, Some(0.4)),
    gpu("A10", 24, Some(0.7)),
    gpu("A40", 48, Some(1.05)),
    gpu("L4", 24, Some(0.45)),
    gpu("L40", 48, Some(1.4)),
    gpu("L40S", 48, Some(1.5)),
    gpu("A100 PCIE", 40, Some(1.8)),
    gpu("A100 SXM4", 40, Some(2.0)),
    gpu("A100X", 80, Some(2.0)),
    gpu("H100 PCIE", 80, Some(2.6)),
    gpu("H100 SXM", 80, Some(3.3)),
    gpu("H100 NVL", 94, Some(3.0)),
    gpu("H200", 141, Some(3.6)),
    gpu("B200", 180, None),
];

/// Family names Cirun users write that are not Vast.ai names, and the Vast.ai
/// models each one stands for. Keys are normalised (see [`normalise`]).
const ALIASES: &[(&str, &[&str])] = &[
    ("H100", &["H100 SXM", "H100 PCIE", "H100 NVL"]),
    ("A100", &["A100 PCIE", "A100 SXM4"]),
    ("A100SXM", &["A100 SXM4"]),
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
    /// optionally with a minimum memory per GPU from a `_80GB` suffix.
    Models {
        vast_names: Vec<&'static str>,
        min_vram_mb: Option<u32>,
    },
    /// `ANY`: no model named; the job states its memory need in
    /// `extra_config.min_gpu_ram` and the cheapest fitting model wins.
    Any,
}

/// Why a GPU model could not be resolved: the nearest names that do exist.
#[derive(Debug, Clone, PartialEq)]
pub struct UnknownGpu {
    pub suggestions: Vec<String>,
}

/// Uppercase with spaces, underscores and hyphens removed, so that
/// `RTX_4090`, `rtx 4090` and `RTX-4090` compare equal.
pub fn normalise(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-'))
        .flat_map(char::to_uppercase)
        .collect()
}

/// Resolve the model part of `instance_type` (after `Nx`): `RTX_4090`, `H100`,
/// `A100_SXM4_80GB`, `ANY`.
pub fn resolve(model: &str) -> Result<GpuChoice, UnknownGpu> {
    let (base, min_vram_mb) = split_memory_suffix(model);
    let key = normalise(base);
    if key == "ANY" && min_vram_mb.is_none() {
        return Ok(GpuChoice::Any);
    }
    let vast_names: Vec<&'static str> =
        if let Some((_, names)) = ALIASES.iter().find(|(alias, _)| *alias == key) {
            names.to_vec()
        } else if let Some(found) = CATALOG.iter().find(|g| normalise(g.vast_name) == key) {
            vec![found.vast_name]
        } else {
            return Err(UnknownGpu {
                suggestions: suggestions_for(base),
            });
        };
    Ok(GpuChoice::Models {
        vast_names,
        min_vram_mb,
    })
}

/// Look a model up by its exact Vast.ai name.
pub fn by_vast_name(name: &str) -> Option<&'static GpuModel> {
    CATALOG.iter().find(|g| g.vast_name == name)
}

/// `A100_SXM4_80GB` → (`A100_SXM4`, Some(80000)). Vast.ai reports a little
/// less than the nominal size (an 80 GB card shows ~81920 MB or ~79600 MB
/// depending on the host), so the floor is 97% of nominal.
fn split_memory_suffix(model: &str) -> (&str, Option<u32>) {
    let Some((base, suffix)) = model.rsplit_once(['_', '-', ' ']) else {
        return (model, None);
    };
    let upper = suffix.to_ascii_uppercase();
    match upper.strip_suffix("GB").and_then(|n| n.parse::<u32>().ok()) {
        Some(gb) if gb > 0 => (base, Some(gb * 1000 * 97 / 100)),
        _ => (model, None),
    }
}

/// The names a user most likely meant, written the way `instance_type` wants them.
fn suggestions_for(model: &str) -> Vec<String> {
    let spellings: Vec<String> = CATALOG
        .iter()
        .map(|g| g.vast_name.replace(' ', "_"))
        .chain(ALIASES.iter().map(|(alias, _)| alias.to_string()))
        .collect();
    let candidates: Vec<&str> = spellings.iter().map(String::as_str).collect();
    let mut found = nearest(&normalise(model), &candidates, 3, normalise);
    if found.is_empty() {
        // Nothing close: offer the models whose name shares the number, if any
        // (`RTX_4091` → `RTX_4090`, `RTX_4090D`).
        let digits: String = model.chars().filter(char::is_ascii_digit).collect();
        if digits.len() >= 3 {
            found = candidates
                .iter()
                .filter(|c| c.contains(&digits[..3]))
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
                min_vram_mb,
            } => (vast_names, min_vram_mb),
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
        assert_eq!(models(resolve("A100_SXM").unwrap()).0, vec!["A100 SXM4"]);
    }

    #[test]
    fn memory_suffix_sets_a_floor() {
        let (names, vram) = models(resolve("A100_SXM4_80GB").unwrap());
        assert_eq!(names, vec!["A100 SXM4"]);
        assert_eq!(vram, Some(77_600));
    }

    #[test]
    fn any_is_its_own_choice() {
        assert_eq!(resolve("ANY").unwrap(), GpuChoice::Any);
        assert_eq!(resolve("any").unwrap(), GpuChoice::Any);
    }

    #[test]
    fn unknown_models_get_suggestions() {
        let err = resolve("RTX_4091").unwrap_err();
        assert!(err.suggestions.contains(&"RTX_4090".to_string()), "{err:?}");
        let err = resolve("H1OO").unwrap_err();
        assert!(err.suggestions.contains(&"H100".to_string()), "{err:?}");
    }

    #[test]
    fn every_catalog_name_resolves_to_itself() {
        for g in CATALOG {
            let (names, _) = models(resolve(&g.vast_name.replace(' ', "_")).unwrap());
            assert_eq!(names, vec![g.vast_name]);
        }
    }
}
