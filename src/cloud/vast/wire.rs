//! Vast.ai's JSON as rigger reads it: offers and instances, typed, with
//! the fields the API may leave out.

use serde::Deserialize;
use serde_json::Value;

use crate::cloud::{InstanceStatus, Offer, ProviderError, ProviderInstance};

#[derive(Deserialize)]
struct WireOffer {
    id: i64,
    #[serde(default)]
    gpu_name: Option<String>,
    #[serde(default)]
    num_gpus: Option<f64>,
    #[serde(default)]
    gpu_ram: Option<f64>,
    #[serde(default)]
    cpu_ram: Option<f64>,
    #[serde(default)]
    disk_space: Option<f64>,
    #[serde(default)]
    dph_total: Option<f64>,
    #[serde(default)]
    min_bid: Option<f64>,
    #[serde(default)]
    reliability: Option<f64>,
    #[serde(default)]
    reliability2: Option<f64>,
    #[serde(default)]
    inet_down: Option<f64>,
    #[serde(default)]
    geolocation: Option<String>,
    #[serde(default)]
    cuda_max_good: Option<f64>,
    #[serde(default)]
    verification: Option<String>,
    #[serde(default)]
    vms_enabled: Option<bool>,
    #[serde(default)]
    dlperf: Option<f64>,
    #[serde(default)]
    gpu_arch: Option<String>,
    /// Seconds from now until the host's listing ends.
    #[serde(default)]
    duration: Option<f64>,
}

impl From<WireOffer> for Offer {
    fn from(w: WireOffer) -> Offer {
        Offer {
            id: w.id,
            gpu_name: w.gpu_name.unwrap_or_default(),
            num_gpus: w.num_gpus.unwrap_or(1.0) as u32,
            gpu_ram_mb: w.gpu_ram.unwrap_or(0.0) as u32,
            cpu_ram_mb: w.cpu_ram.unwrap_or(0.0) as u32,
            disk_gb: w.disk_space.unwrap_or(0.0),
            dph_total: w.dph_total.unwrap_or(f64::INFINITY),
            min_bid: w.min_bid.unwrap_or(f64::INFINITY),
            reliability: w.reliability.or(w.reliability2).unwrap_or(0.0),
            inet_down: w.inet_down.unwrap_or(0.0),
            location: w.geolocation.unwrap_or_default(),
            cuda_max_good: w.cuda_max_good.unwrap_or(0.0),
            verified: w.verification.as_deref() == Some("verified"),
            vms_enabled: w.vms_enabled.unwrap_or(false),
            dlperf: w.dlperf.unwrap_or(0.0),
            gpu_arch: w.gpu_arch.filter(|a| !a.is_empty()),
            duration_s: w.duration.filter(|d| d.is_finite()),
        }
    }
}

/// The offers of a search response's body: what `VastClient::search_raw`
/// runs on every answer, and what `benches/offers.rs` times.
pub fn parse_offers_bytes(body: &[u8]) -> Result<Vec<Offer>, ProviderError> {
    #[derive(Deserialize)]
    struct Resp {
        #[serde(default)]
        success: Option<bool>,
        #[serde(default)]
        msg: Option<String>,
        #[serde(default)]
        offers: Option<Vec<WireOffer>>,
    }
    let r: Resp = serde_json::from_slice(body).map_err(|e| {
        ProviderError::Transient(format!("Vast.ai sent offers rigger cannot read: {e}"))
    })?;
    if r.success == Some(false) {
        return Err(ProviderError::Invalid(
            r.msg.unwrap_or_else(|| "(no detail given)".to_string()),
        ));
    }
    let offers = r.offers.ok_or_else(|| {
        ProviderError::Transient("Vast.ai answered a search without `offers`".to_string())
    })?;
    Ok(offers.into_iter().map(Offer::from).collect())
}

#[derive(Deserialize)]
struct WireInstance {
    id: i64,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    actual_status: Option<String>,
    #[serde(default)]
    intended_status: Option<String>,
    #[serde(default)]
    status_msg: Option<String>,
    #[serde(default)]
    gpu_name: Option<String>,
    #[serde(default)]
    num_gpus: Option<f64>,
    #[serde(default)]
    dph_total: Option<f64>,
    #[serde(default)]
    start_date: Option<f64>,
    #[serde(default)]
    geolocation: Option<String>,
}

impl From<WireInstance> for ProviderInstance {
    fn from(w: WireInstance) -> ProviderInstance {
        let actual = w.actual_status.unwrap_or_default();
        let status = status_of(&actual, w.status_msg.as_deref().unwrap_or_default());
        let detail = match (actual.as_str(), w.status_msg.as_deref()) {
            ("", _) => "provisioning".to_string(),
            (a, Some(m)) if !m.trim().is_empty() => format!("{a}: {}", m.trim()),
            (a, _) => match w.intended_status.as_deref() {
                Some(i) if i != a => format!("{a} (intended {i})"),
                _ => a.to_string(),
            },
        };
        ProviderInstance {
            id: w.id.to_string(),
            label: w.label.unwrap_or_default(),
            status,
            status_detail: detail,
            gpu_name: w.gpu_name.unwrap_or_default(),
            num_gpus: w.num_gpus.unwrap_or(0.0) as u32,
            dph_total: w.dph_total.unwrap_or(0.0),
            started_at: w.start_date.unwrap_or(0.0),
            location: w.geolocation.unwrap_or_default(),
        }
    }
}

/// What Vast.ai's `actual_status` (and, before the container runs, its
/// `status_msg`) means for rigger: the one place that reads them.
fn status_of(actual: &str, status_msg: &str) -> InstanceStatus {
    match actual {
        "" | "created" | "loading" if is_fatal_boot(status_msg) => InstanceStatus::BootFailed,
        "" | "created" | "loading" | "scheduling" | "rebooting" => InstanceStatus::Loading,
        "running" => InstanceStatus::Running,
        // The host is not heard from, disconnected or paused: states it
        // comes back from (reference §10; snakemake gives them a grace).
        "unknown" | "offline" | "frozen" => InstanceStatus::Unreachable,
        // exited, stopped (and anything Vast.ai adds): it runs no job.
        _ => InstanceStatus::Exited,
    }
}

/// Docker's words for a container that will never start, as Vast.ai passes
/// them on in `status_msg`: an image that does not exist or may not be
/// pulled, a full disk, a runtime that cannot start the container. A
/// pull merely slow or retried (`toomanyrequests`) is not among them.
const FATAL_BOOT: &[&str] = &[
    "manifest unknown",
    "pull access denied",
    "repository does not exist",
    "invalid reference format",
    "no space left on device",
    "oci runtime create failed",
    "oci runtime exec failed",
    "unable to start container process",
    "unknown or invalid runtime name",
];

fn is_fatal_boot(status_msg: &str) -> bool {
    let m = status_msg.to_ascii_lowercase();
    FATAL_BOOT.iter().any(|f| m.contains(f))
}

pub(super) fn parse_instance(v: Value) -> Result<ProviderInstance, ProviderError> {
    serde_json::from_value::<WireInstance>(v)
        .map(ProviderInstance::from)
        .map_err(|e| {
            ProviderError::Transient(format!("Vast.ai sent an instance rigger cannot read: {e}"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_states_and_fatal_boot_messages_are_read_as_vast_ai_means_them() {
        use InstanceStatus::*;
        let pull = "Error response from daemon: manifest for nvidia/cuda:99 not found: \
                    manifest unknown: manifest unknown";
        let oci = "failed to create shim task: OCI runtime create failed: runc create failed";
        for (actual, msg, want) in [
            ("loading", "Pulling fs layer", Loading),
            ("created", "", Loading),
            ("created", pull, BootFailed),
            ("loading", oci, BootFailed),
            ("", "pull access denied for acme/private", BootFailed),
            // A slow registry is retried by the host: not fatal.
            (
                "loading",
                "toomanyrequests: You have reached your pull rate limit",
                Loading,
            ),
            // A running container's old message does not make it fail.
            ("running", pull, Running),
            ("unknown", "", Unreachable),
            ("offline", "host offline", Unreachable),
            ("frozen", "", Unreachable),
            ("exited", "", Exited),
            ("stopped", "", Exited),
            ("something_new", "", Exited),
        ] {
            assert_eq!(status_of(actual, msg), want, "{actual} / {msg}");
        }
    }

    #[test]
    fn search_answers_are_read_in_one_pass() {
        let offers = parse_offers_bytes(
            br#"{"offers": [{"id": 5, "gpu_name": "RTX 4090", "dph_total": 0.4, "cuda_max_good": 12.8, "extra": [1, 2]}]}"#,
        )
        .unwrap();
        assert_eq!(
            (
                offers[0].id,
                offers[0].gpu_name.as_str(),
                offers[0].dph_total
            ),
            (5, "RTX 4090", 0.4)
        );
        assert_eq!(
            parse_offers_bytes(br#"{"success": false, "msg": "bad query"}"#),
            Err(ProviderError::Invalid("bad query".into()))
        );
        assert!(matches!(
            parse_offers_bytes(b"{}"),
            Err(ProviderError::Transient(_))
        ));
    }

    /// The maker and the contract's end, read as the API names them (its
    /// offer example: `gpu_arch: nvidia`, `duration: 1234567.89`).
    #[test]
    fn an_offer_says_its_gpu_maker_and_how_long_its_host_contract_lasts() {
        let offers = parse_offers_bytes(
            br#"{"offers": [{"id": 1, "gpu_arch": "amd", "duration": 7200.5}, {"id": 2}]}"#,
        )
        .unwrap();
        assert_eq!(offers[0].gpu_arch.as_deref(), Some("amd"));
        assert_eq!(offers[0].duration_s, Some(7200.5));
        assert_eq!(
            (offers[1].gpu_arch.as_deref(), offers[1].duration_s),
            (None, None)
        );
    }
}
