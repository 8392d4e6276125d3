//! What a `.cirun.yml` means once parsed: runner definitions, their fallback
//! candidates, and the Vast.ai options rigger provisions with.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::cloud::vast::gpus::GpuChoice;

/// Where a definition came from: the repository's own file or the org's
/// `.cirun/.cirun.global.yml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Repository,
    Organization,
}

/// A parsed `.cirun.yml` (or `.cirun.global.yml`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CirunConfig {
    pub runners: Vec<RunnerDef>,
    /// Groups shown in the job's "Set up job" step (the runner's `.setup_info`).
    pub setup_info: Vec<SetupInfo>,
    /// Removed Cirun key, kept so the engine can explain why it is ignored.
    pub run_only_when_triggered_by: Option<String>,
}

/// One `{group, detail}` entry of `setup_info`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SetupInfo {
    pub group: String,
    pub detail: String,
}

/// The clouds Cirun knows. rigger provisions `VastAi`; the others are read,
/// checked as far as their documented keys go, and left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cloud {
    Aws,
    Gcp,
    Azure,
    DigitalOcean,
    OpenStack,
    Oracle,
    VastAi,
    OnPrem,
}

impl Cloud {
    /// Every spelling Cirun accepts, with the cloud it means.
    pub const SPELLINGS: &'static [(&'static str, Cloud)] = &[
        ("aws", Cloud::Aws),
        ("gcp", Cloud::Gcp),
        ("azure", Cloud::Azure),
        ("do", Cloud::DigitalOcean),
        ("digitalocean", Cloud::DigitalOcean),
        ("openstack", Cloud::OpenStack),
        ("oracle", Cloud::Oracle),
        ("vast_ai", Cloud::VastAi),
        ("on_prem", Cloud::OnPrem),
    ];

    pub fn parse(text: &str) -> Option<Cloud> {
        let lower = text.to_ascii_lowercase();
        Self::SPELLINGS
            .iter()
            .find(|(s, _)| *s == lower)
            .map(|(_, c)| *c)
    }

    /// The canonical spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Aws => "aws",
            Cloud::Gcp => "gcp",
            Cloud::Azure => "azure",
            Cloud::DigitalOcean => "digitalocean",
            Cloud::OpenStack => "openstack",
            Cloud::Oracle => "oracle",
            Cloud::VastAi => "vast_ai",
            Cloud::OnPrem => "on_prem",
        }
    }

    /// Whether rigger rents machines for runners on this cloud.
    pub fn is_provisioned(self) -> bool {
        self == Cloud::VastAi
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `machine_image` entry: a string, or Azure's object form.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MachineImage {
    Name(String),
    Azure {
        publisher: String,
        offer: String,
        sku: String,
        version: String,
    },
}

impl fmt::Display for MachineImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MachineImage::Name(n) => f.write_str(n),
            MachineImage::Azure {
                publisher,
                offer,
                sku,
                version,
            } => write!(f, "{publisher}:{offer}:{sku}:{version}"),
        }
    }
}

/// Position of something in a config file, 1-based, for messages that point
/// back at the definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// One entry of `runners:`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunnerDef {
    pub name: String,
    pub cloud: Cloud,
    pub origin: Origin,
    pub location: Location,
    /// Labels a job's `runs-on` must match (a subset of these).
    pub labels: Vec<String>,
    /// The ordered fallback candidates: `instance_type`, `machine_image`,
    /// `region` and `preemptible` expanded by the rule in `fallback.rs`.
    pub candidates: Vec<Candidate>,
    /// GCP accelerator / DigitalOcean GPU slug; ignored on Vast.ai.
    pub gpu: Option<String>,
    pub idle: Option<Idle>,
    /// `extra_config` as written, for the clouds rigger passes through.
    #[serde(skip)]
    pub extra_config: Option<serde_yaml::Value>,
    /// Present exactly when `cloud` is `vast_ai` and the definition is valid.
    pub vast: Option<VastRunner>,
}

/// One fallback candidate in the cloud's own words.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub instance_type: Option<String>,
    pub machine_image: Option<MachineImage>,
    pub region: Option<String>,
    pub preemptible: bool,
}

/// A `vast_ai` runner, resolved: what to search for and what limits apply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VastRunner {
    /// In the order they are tried.
    pub candidates: Vec<VastCandidate>,
    pub extra: VastExtra,
    /// The host CPU architecture, as Vast.ai names it (`amd64`, `arm64`):
    /// `arm64` when the runner's labels say `arm64` (or `aarch64`), else
    /// `amd64`. The runner release and its labels follow it.
    pub cpu_arch: &'static str,
}

/// The CPU architecture a runner definition asks for, from its labels.
pub fn cpu_arch_for(labels: &[String]) -> &'static str {
    let arm = |l: &String| l.eq_ignore_ascii_case("arm64") || l.eq_ignore_ascii_case("aarch64");
    if labels.iter().any(arm) {
        "arm64"
    } else {
        "amd64"
    }
}

/// One fallback candidate of a `vast_ai` runner.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VastCandidate {
    /// As written (`1xRTX_4090`).
    pub instance_type: String,
    pub gpu_count: u32,
    #[serde(serialize_with = "serialize_gpu_choice")]
    pub gpu: GpuChoice,
    /// The image to run: a Docker image (container mode) or a
    /// `docker.io/vastai/kvm:…` image (VM mode), fully qualified for VMs.
    pub image: String,
    /// Whether `image` was rigger's default because none was given.
    pub image_is_default: bool,
    /// ISO 3166-1 alpha-2 country code, upper case.
    pub region: Option<String>,
    /// Bid (interruptible) instead of on-demand.
    pub preemptible: bool,
    /// The CUDA version the image needs (from an `nvidia/cuda:X.Y…` tag or
    /// `extra_config.min_cuda`, whichever is higher).
    pub min_cuda: Option<CudaVersion>,
}

fn serialize_gpu_choice<S: serde::Serializer>(g: &GpuChoice, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let mut st = s.serialize_struct("GpuChoice", 2)?;
    match g {
        GpuChoice::Any => {
            st.serialize_field("models", &Vec::<&str>::new())?;
            st.serialize_field("min_vram_gb", &None::<u32>)?;
        }
        GpuChoice::Models {
            vast_names,
            min_vram_gb,
        } => {
            st.serialize_field("models", vast_names)?;
            st.serialize_field("min_vram_gb", min_vram_gb)?;
        }
    }
    st.end()
}

/// A CUDA version such as 12.4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct CudaVersion {
    pub major: u32,
    pub minor: u32,
}

impl CudaVersion {
    /// `12`, `12.4`, `12.4.1` → 12.4 (patch is irrelevant to driver support).
    pub fn parse(text: &str) -> Option<CudaVersion> {
        let mut parts = text.trim().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = match parts.next() {
            Some(m) => m.parse().ok()?,
            None => 0,
        };
        if parts.any(|p| p.parse::<u32>().is_err()) {
            return None;
        }
        Some(CudaVersion { major, minor })
    }

    /// The CUDA version an image needs, read from its tag:
    /// `nvidia/cuda:12.0.0-base-ubuntu22.04` → 12.0, and tags that spell it
    /// out such as `pytorch/pytorch:2.4.0-cuda12.4-cudnn9-runtime` → 12.4.
    pub fn from_image(image: &str) -> Option<CudaVersion> {
        let without_registry = image
            .strip_prefix("docker.io/")
            .or_else(|| image.strip_prefix("nvcr.io/"))
            .unwrap_or(image);
        if let Some(tag) = without_registry.strip_prefix("nvidia/cuda:") {
            return CudaVersion::parse(tag.split('-').next()?);
        }
        let (_, tag) = without_registry.rsplit_once(':')?;
        tag.split(['-', '_']).find_map(|part| {
            let digits = part.strip_prefix("cuda")?.trim_start_matches(['-', '.']);
            digits.contains('.').then(|| CudaVersion::parse(digits))?
        })
    }

    /// The float Vast.ai's `cuda_max_good` uses for this version.
    ///
    /// Vast.ai reports the driver's CUDA version as a float (`12.4`, `12.8`,
    /// `13.0`), which reads `12.10` as `12.1`. rigger compares versions as
    /// (major, minor) integers and converts only at the wire, with an
    /// encoding that keeps the order: a minor of 0–9 is the float Vast.ai
    /// writes (`12.4` → 12.4, exactly the literal), and a minor of 10 or more,
    /// which no CUDA release has used so far, goes between `major.9` and the
    /// next major (`12.10` → 12.91, `12.11` → 12.92, … capped at 12.99), so
    /// that `cuda_max_good ≥` never lets a 12.9 host pass for 12.10.
    pub fn to_vast(self) -> f64 {
        let minor = if self.minor <= 9 {
            self.minor.to_string()
        } else {
            (90 + (self.minor - 9).min(9)).to_string()
        };
        format!("{}.{minor}", self.major)
            .parse()
            .unwrap_or(f64::from(self.major))
    }

    /// The version a Vast.ai `cuda_max_good` float stands for: the inverse
    /// of [`CudaVersion::to_vast`] (`12.1` → 12.1, `12.91` → 12.10).
    pub fn from_vast(value: f64) -> CudaVersion {
        if !value.is_finite() || value <= 0.0 {
            return CudaVersion { major: 0, minor: 0 };
        }
        let major = value.floor();
        let hundredths = ((value - major) * 100.0).round() as u32;
        let minor = if hundredths <= 90 {
            // 12.1 is 12.0999…: round to the tenth.
            (hundredths + 5) / 10
        } else {
            hundredths - 81
        };
        CudaVersion {
            major: major as u32,
            minor: minor.min(18),
        }
    }
}

impl fmt::Display for CudaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// `extra_config` of a `vast_ai` runner: Cirun's keys plus rigger's own, with
/// the defaults documented in the README.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VastExtra {
    /// Minimum disk on the offer, and the disk allocated at create time (GB).
    pub disk_space_gb: f64,
    /// Minimum RAM of the whole host (GB), as Vast.ai's `cpu_ram` counts
    /// it; an instance gets a share in proportion to its GPUs.
    pub min_ram_gb: Option<f64>,
    /// VM mode instead of container mode.
    pub vm: bool,
    /// Highest acceptable price, $/hour for the whole instance.
    pub max_dph: Option<f64>,
    /// Highest acceptable estimated total cost of one job, $.
    pub max_cost: Option<f64>,
    /// Lowest acceptable host reliability, 0..1.
    pub min_reliability: f64,
    /// Lowest acceptable download bandwidth, Mbit/s.
    pub min_inet_down: f64,
    /// Only hosts Vast.ai has verified.
    pub verified: bool,
    /// Environment variables for the runner (not for secrets).
    pub env_vars: BTreeMap<String, String>,
    /// Hard cap on an instance's life, minutes.
    pub max_runtime_minutes: u32,
    /// Minimum memory per GPU (GB); required with `NxANY`.
    pub min_gpu_ram_gb: Option<f64>,
    /// Minimum CUDA version the host driver must support.
    pub min_cuda: Option<CudaVersion>,
}

impl VastExtra {
    pub const DEFAULT_DISK_GB: f64 = 30.0;
    pub const DEFAULT_MIN_RELIABILITY: f64 = 0.95;
    pub const DEFAULT_MIN_INET_DOWN: f64 = 100.0;
    pub const DEFAULT_MAX_RUNTIME_MINUTES: u32 = 360;

    /// How long a machine of this runner may live: `max_runtime`, cut to
    /// the controller's `timeouts.max_lifetime` where there is one. The one
    /// place that decides: the machine's expiry and the search's contract
    /// length (`duration`) both come from here.
    pub fn machine_lifetime(
        &self,
        max_lifetime: Option<std::time::Duration>,
    ) -> std::time::Duration {
        let runtime = std::time::Duration::from_secs(u64::from(self.max_runtime_minutes) * 60);
        max_lifetime.map_or(runtime, |cap| runtime.min(cap))
    }
}

impl Default for VastExtra {
    fn default() -> Self {
        VastExtra {
            disk_space_gb: Self::DEFAULT_DISK_GB,
            min_ram_gb: None,
            vm: false,
            max_dph: None,
            max_cost: None,
            min_reliability: Self::DEFAULT_MIN_RELIABILITY,
            min_inet_down: Self::DEFAULT_MIN_INET_DOWN,
            verified: true,
            env_vars: BTreeMap::new(),
            max_runtime_minutes: Self::DEFAULT_MAX_RUNTIME_MINUTES,
            min_gpu_ram_gb: None,
            min_cuda: None,
        }
    }
}

/// The container image a `vast_ai` runner gets when it names none: CUDA's
/// base image, small and with the libraries the runner needs.
pub const DEFAULT_VAST_IMAGE: &str = "nvidia/cuda:12.4.1-base-ubuntu22.04";

/// Warm pool settings (`idle:`). Parsed and checked; not provisioned yet.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Idle {
    Schedule(Vec<IdleWindow>),
    UsageBased {
        replicas: u32,
        duration_minutes: u32,
    },
    /// on_prem's bare `idle: {replicas: N}`.
    Replicas(u32),
}

/// One `idle.schedule` entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdleWindow {
    pub day: String,
    pub time: String,
    pub timezone: String,
    pub replicas: u32,
}

impl VastCandidate {
    /// The candidate in plain words: `1× RTX 4090, container nvidia/cuda:…,
    /// region US, disk ≥ 30 GB, RAM ≥ 8 GB`.
    pub fn describe(&self, extra: &VastExtra) -> String {
        let gpu = match &self.gpu {
            GpuChoice::Any => format!(
                "any GPU with ≥ {} GB",
                extra.min_gpu_ram_gb.unwrap_or_default()
            ),
            GpuChoice::Models {
                vast_names,
                min_vram_gb,
            } => {
                let names = vast_names.join(" | ");
                match min_vram_gb {
                    Some(gb) => format!("{names} (≥ {gb} GB)"),
                    None => names,
                }
            }
        };
        let mut parts = vec![format!("{}× {gpu}", self.gpu_count)];
        let mode = if extra.vm { "VM" } else { "container" };
        let default = if self.image_is_default {
            " (default)"
        } else {
            ""
        };
        parts.push(format!("{mode} {}{default}", self.image));
        parts.push(match &self.region {
            Some(r) => format!("region {r}"),
            None => "any region".to_string(),
        });
        parts.push(format!("disk ≥ {} GB", extra.disk_space_gb));
        if let Some(ram) = extra.min_ram_gb {
            parts.push(format!("RAM ≥ {ram} GB"));
        }
        if let (Some(gb), GpuChoice::Models { .. }) = (extra.min_gpu_ram_gb, &self.gpu) {
            parts.push(format!("GPU RAM ≥ {gb} GB"));
        }
        if let Some(cuda) = self.min_cuda {
            parts.push(format!("CUDA ≥ {cuda}"));
        }
        if self.preemptible {
            parts.push("interruptible (bid)".to_string());
        }
        if let Some(max) = extra.max_dph {
            parts.push(format!("≤ ${max:.2}/h"));
        }
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_versions_compare_as_integers_and_keep_their_order_on_the_wire() {
        let v = |s: &str| CudaVersion::parse(s).unwrap();
        // 12.1 < 12.9 < 12.10 < 13.0, though 12.10 reads as the float 12.1.
        let ordered = [v("12.1"), v("12.9"), v("12.10"), v("12.11"), v("13.0")];
        assert!(ordered.windows(2).all(|p| p[0] < p[1]));
        assert_eq!(v("12.10").to_string(), "12.10");
        let wire: Vec<f64> = ordered.iter().map(|c| c.to_vast()).collect();
        assert_eq!(wire, [12.1, 12.9, 12.91, 12.92, 13.0]);
        for c in ordered {
            assert_eq!(CudaVersion::from_vast(c.to_vast()), c, "{c}");
        }
        // The floats Vast.ai sends read as the versions they name.
        assert_eq!(CudaVersion::from_vast(12.1), v("12.1"));
        assert_eq!(CudaVersion::from_vast(12.8), v("12.8"));
        assert_eq!(CudaVersion::from_vast(11.0), v("11.0"));
        assert_eq!(CudaVersion::from_vast(0.0), v("0.0"));
    }

    #[test]
    fn cuda_from_image_tags() {
        let v = |s| CudaVersion::from_image(s).map(|v| v.to_string());
        assert_eq!(
            v("nvidia/cuda:12.0.0-base-ubuntu22.04").as_deref(),
            Some("12.0")
        );
        assert_eq!(
            v("docker.io/nvidia/cuda:11.8.0-runtime-ubuntu20.04").as_deref(),
            Some("11.8")
        );
        assert_eq!(v("nvidia/cuda:12.4.1-devel").as_deref(), Some("12.4"));
        assert_eq!(v("pytorch/pytorch:latest"), None);
        assert_eq!(
            v("pytorch/pytorch:2.4.0-cuda12.4-cudnn9-runtime").as_deref(),
            Some("12.4")
        );
        assert_eq!(v("ghcr.io/x/cuda:1.0"), None);
        assert_eq!(v("localhost:5000/img"), None);
        assert_eq!(v("nvidia/cuda:latest"), None);
    }

    #[test]
    fn cloud_spellings() {
        assert_eq!(Cloud::parse("do"), Some(Cloud::DigitalOcean));
        assert_eq!(Cloud::parse("digitalocean"), Some(Cloud::DigitalOcean));
        assert_eq!(Cloud::parse("VAST_AI"), Some(Cloud::VastAi));
        assert_eq!(Cloud::parse("nvidia"), None);
    }
}
