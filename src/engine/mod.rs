//! The engine: turns workflow_job events into rented machines and destroys
//! each machine the moment its job is done; the reconciler repairs whatever
//! webhooks missed (design §1–§4).
//!
//! - `events.rs`: queued / in_progress / completed, as recorded facts;
//! - `provision/`: a pass over the due jobs (`mod.rs`), one attempt per job
//!   (`attempt.rs`: config → policy → offers → limits), renting one offer
//!   (`rent.rs`: JIT runner → row → create), `config.rs`, `admission.rs`;
//! - `offer_pool.rs`: one search serves the jobs of a burst;
//! - `busy.rs`: I4 decided once: whether a machine wanted gone may be destroyed;
//! - `teardown.rs`: destroy and account for a machine;
//! - `installations.rs`: the App uninstalled, suspended, or repositories
//!   removed: end what rigger ran there;
//! - `recover.rs`: find deliveries GitHub failed to make and redeliver them;
//! - `cancel.rs`: cancel the workflow run of a job rigger gave up on (a setting);
//! - `reconcile/`: `plan` (pure) and `apply`.

pub mod busy;
pub mod cancel;
pub mod estimate;
pub mod events;
pub mod inbox;
pub mod installations;
pub mod isolate;
pub mod names;
pub mod offer_pool;
pub mod offers;
pub mod policy;
pub mod ports;
pub mod provision;
pub mod rank;
pub mod reconcile;
pub mod recover;
pub mod report;
pub mod run;
pub mod state;
pub mod supervise;
pub mod teardown;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::store::Store;
use ports::{Clock, Cloud, Github};

/// The engine and everything it works with.
pub struct Engine<C: Cloud, G: Github> {
    pub store: Store,
    pub cloud: C,
    pub github: G,
    pub settings: Arc<Settings>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// This replica's name in leases.
    pub worker_id: String,
    /// Wakes the provisioner when a job is queued.
    pub wake: Notify,
    /// Wakes the reconciler before its next tick, when something happened
    /// that only it can sort out (a create whose answer was lost).
    pub reconcile_wake: Notify,
    /// Tells the reconcile loop that a destroy retry was scheduled, so that
    /// it sleeps no longer than until it is due.
    pub destroy_retry_wake: Notify,
    /// Config files per (repository, commit), parsed.
    config_cache: Mutex<ConfigCache>,
    /// What GitHub said about runner releases (`provision::RunnerReleases`).
    runner_releases: provision::RunnerReleases,
    /// Ranked offers shared by the jobs of a burst, and who tries which.
    offer_pool: offer_pool::OfferPool,
    /// What the reconciler remembers from one pass to the next.
    reconcile_memory: Mutex<reconcile::Memory>,
    /// What delivery recovery remembers between passes.
    recover_memory: Mutex<recover::Memory>,
    /// Whether the missing Actions: write permission was logged already.
    cancel_denied_logged: std::sync::atomic::AtomicBool,
}

/// (repository, commit or "" for the default branch) → (read at, config).
type ConfigCache = HashMap<(String, String), (i64, Arc<provision::LoadedConfig>)>;

impl<C: Cloud, G: Github> Engine<C, G> {
    pub fn new(
        store: Store,
        cloud: C,
        github: G,
        settings: Arc<Settings>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Engine<C, G> {
        Engine {
            store,
            cloud,
            github,
            worker_id: format!("{}-{}", settings.controller_id, names::new_instance_id()),
            settings,
            clock,
            metrics,
            wake: Notify::new(),
            reconcile_wake: Notify::new(),
            destroy_retry_wake: Notify::new(),
            config_cache: Mutex::new(HashMap::new()),
            runner_releases: provision::RunnerReleases::default(),
            offer_pool: offer_pool::OfferPool::default(),
            reconcile_memory: Mutex::default(),
            recover_memory: Mutex::default(),
            cancel_denied_logged: Default::default(),
        }
    }

    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Record what happened to a job or machine, for `rigger jobs` and logs.
    async fn note(
        &self,
        job_id: Option<i64>,
        instance_id: Option<&str>,
        kind: &str,
        message: &str,
    ) {
        tracing::info!(job_id, instance_id, kind, "{message}");
        if let Err(e) = self
            .store
            .log_event(self.now(), job_id, instance_id, kind, message)
            .await
        {
            tracing::warn!(error = %e, "could not record an event");
        }
    }

    /// As [`Engine::note`], as part of writes that commit together: the
    /// event lands with them or not at all.
    async fn note_in(
        &self,
        tx: &mut crate::store::StoreTx,
        job_id: Option<i64>,
        instance_id: Option<&str>,
        kind: &str,
        message: &str,
    ) -> Result<(), EngineError> {
        tracing::info!(job_id, instance_id, kind, "{message}");
        tx.log_event(self.now(), job_id, instance_id, kind, message)
            .await?;
        Ok(())
    }
}

/// An engine error: the store failed (everything else is handled in place).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}
