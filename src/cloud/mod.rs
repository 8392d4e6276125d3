//! Clouds rigger rents machines from, behind one narrow trait. Vast.ai is the
//! one provisioned today; the engine never sees a Vast.ai type.

pub mod vast;

use std::collections::BTreeMap;
use std::future::Future;

use serde::Serialize;

pub use crate::config::model::CudaVersion;

/// What a search asks for, in rigger's words. Each cloud translates it into
/// its own query (`vast::query`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OfferFilter {
    pub num_gpus: u32,
    /// Any of these models; empty means any model.
    pub gpu_names: Vec<String>,
    /// Memory per GPU, MB.
    pub min_gpu_ram_mb: Option<u32>,
    /// Disk the offer must have, GB; also what the instance is given.
    pub disk_gb: f64,
    /// Host RAM, GB.
    pub min_ram_gb: Option<f64>,
    /// ISO country code.
    pub country: Option<String>,
    pub vm: bool,
    /// CUDA version the host driver must support, compared as (major, minor).
    pub min_cuda: Option<CudaVersion>,
    pub min_reliability: f64,
    /// Mbit/s.
    pub min_inet_down: f64,
    pub verified: bool,
    /// Interruptible (bid) instead of on-demand.
    pub interruptible: bool,
    /// $/hour cap, applied by the cloud where it can.
    pub max_dph: Option<f64>,
    /// How many offers to return.
    pub limit: u32,
    /// Host CPU architecture (`amd64`, `arm64`): a runner built for one
    /// cannot start on the other.
    pub cpu_arch: String,
    /// GPU maker (`nvidia`, `amd`): a runner checks its GPUs with the
    /// maker's tool. `None` leaves it open.
    pub gpu_arch: Option<String>,
    /// Seconds the host's contract must still run: a machine on a host
    /// whose listing ends sooner is stopped in the middle of a job.
    pub min_duration_s: Option<u64>,
}

/// One rentable offer.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Offer {
    pub id: i64,
    pub gpu_name: String,
    pub num_gpus: u32,
    /// Per GPU, MB.
    pub gpu_ram_mb: u32,
    /// Whole machine, MB.
    pub cpu_ram_mb: u32,
    pub disk_gb: f64,
    /// $/hour, everything included (GPU and the requested storage).
    pub dph_total: f64,
    /// Lowest bid accepted for an interruptible rental, $/hour.
    pub min_bid: f64,
    pub reliability: f64,
    /// Mbit/s.
    pub inet_down: f64,
    /// Free text ending in the country code, e.g. `Texas, US`.
    pub location: String,
    pub cuda_max_good: f64,
    pub verified: bool,
    pub vms_enabled: bool,
    /// Vast.ai's deep-learning performance score (used for GPUs whose speed
    /// rigger does not know).
    pub dlperf: f64,
    /// GPU maker as the cloud names it (`nvidia`, `amd`), when it says.
    pub gpu_arch: Option<String>,
    /// Seconds until the host's contract ends, when the cloud says: a
    /// machine there is stopped then, whatever it runs.
    pub duration_s: Option<f64>,
}

impl Offer {
    /// The highest CUDA version the host's driver supports, read from
    /// Vast.ai's float (`12.1` is 12.1; see [`CudaVersion::to_vast`]).
    pub fn cuda(&self) -> CudaVersion {
        CudaVersion::from_vast(self.cuda_max_good)
    }

    /// The trailing two-letter country code of `location`.
    pub fn country(&self) -> &str {
        let t = self.location.trim();
        t.get(t.len().saturating_sub(2)..).unwrap_or("")
    }
}

/// Everything a create call needs.
#[derive(Clone)]
pub struct LaunchSpec {
    pub offer_id: i64,
    pub image: String,
    pub disk_gb: f64,
    pub vm: bool,
    pub bid_price: Option<f64>,
    /// Our controller label (I1): how we find the instance again.
    pub label: String,
    pub onstart: String,
    /// Holds the JIT config: never logged.
    pub env: BTreeMap<String, String>,
}

impl std::fmt::Debug for LaunchSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaunchSpec")
            .field("offer_id", &self.offer_id)
            .field("image", &self.image)
            .field("label", &self.label)
            .field("env_keys", &self.env.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Where an instance is in its life, as the engine needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceStatus {
    /// Created, pulling its image or booting.
    Loading,
    Running,
    /// Stopped, exited, or its host is gone: it runs nothing but may still bill.
    Exited,
    /// Its host is not heard from (`unknown`), disconnected (`offline`) or
    /// frozen: what runs there may go on, and the host may come back.
    Unreachable,
    /// Its container cannot start (the image cannot be pulled, the runtime
    /// fails): it never will; `status_detail` says why.
    BootFailed,
}

/// An instance as the cloud reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderInstance {
    pub id: String,
    pub label: String,
    pub status: InstanceStatus,
    /// The cloud's own words for the state, for people.
    pub status_detail: String,
    pub gpu_name: String,
    pub num_gpus: u32,
    pub dph_total: f64,
    /// Unix seconds.
    pub started_at: f64,
    pub location: String,
}

/// Why a cloud call failed, as callers branch on it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// Rented by someone else between search and create: try the next offer.
    #[error("the offer is no longer available")]
    OfferGone,
    /// A create whose outcome is unknown: look the instance up by its label.
    #[error("the create call's outcome is unknown: {0}")]
    Ambiguous(String),
    #[error("rate limited; retry in {retry_after_ms} ms")]
    RateLimited { retry_after_ms: i64 },
    /// 5xx, timeouts, connection errors (already retried within bounds).
    #[error("temporary failure: {0}")]
    Transient(String),
    #[error("the API key was refused: {0}")]
    Unauthorized(String),
    #[error("the request was refused: {0}")]
    Invalid(String),
    #[error("not found: {0}")]
    NotFound(String),
}

impl ProviderError {
    /// A short word for metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderError::OfferGone => "offer_gone",
            ProviderError::Ambiguous(_) => "ambiguous",
            ProviderError::RateLimited { .. } => "rate_limited",
            ProviderError::Transient(_) => "transient",
            ProviderError::Unauthorized(_) => "unauthorized",
            ProviderError::Invalid(_) => "invalid",
            ProviderError::NotFound(_) => "not_found",
        }
    }

    /// Whether trying again later can help.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ProviderError::RateLimited { .. }
                | ProviderError::Transient(_)
                | ProviderError::Ambiguous(_)
        )
    }
}

/// A cloud that rents GPU machines.
pub trait CloudProvider: Send + Sync + 'static {
    /// Offers matching the filter, in the cloud's order.
    fn search(
        &self,
        filter: &OfferFilter,
    ) -> impl Future<Output = Result<Vec<Offer>, ProviderError>> + Send;

    /// Take the next create's slot in the cloud's rate limit, before anything
    /// is prepared for it; `RateLimited` with the wait when it is not free.
    /// The next `launch` uses it.
    fn create_slot(&self) -> Result<(), ProviderError> {
        Ok(())
    }

    /// A slot from `create_slot` that no launch will use: give it back.
    fn release_create_slot(&self) {}

    /// Rent an offer; returns the instance id. Not idempotent: after
    /// `Ambiguous`, look the label up with `list`.
    fn launch(
        &self,
        spec: &LaunchSpec,
    ) -> impl Future<Output = Result<String, ProviderError>> + Send;

    /// One instance; `None` once it is destroyed.
    fn get(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<ProviderInstance>, ProviderError>> + Send;

    /// Every instance we own whose label starts with `label_prefix`.
    fn list(
        &self,
        label_prefix: &str,
    ) -> impl Future<Output = Result<Vec<ProviderInstance>, ProviderError>> + Send;

    /// Our instances labelled exactly `label` (a create's outcome looked up).
    /// By default a listing by prefix, filtered here.
    fn find_label(
        &self,
        label: &str,
    ) -> impl Future<Output = Result<Vec<ProviderInstance>, ProviderError>> + Send {
        async move {
            let all = self.list(label).await?;
            Ok(all.into_iter().filter(|i| i.label == label).collect())
        }
    }

    /// Destroy an instance; one already gone is not an error.
    fn destroy(&self, id: &str) -> impl Future<Output = Result<(), ProviderError>> + Send;

    /// The instance's log.
    fn logs(&self, id: &str) -> impl Future<Output = Result<String, ProviderError>> + Send;
}
