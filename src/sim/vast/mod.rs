//! The simulated Vast.ai: the endpoints the `vastai` 1.9.1 CLI and rigger
//! call, with the real API's quirks (reference §13), over real HTTP.
//!
//! The boot seam: when an instance starts running, the hook set with
//! [`SimVast::on_boot`] receives its image, onstart, args and environment
//! (a container's with `CONTAINER_ID` and `CONTAINER_API_KEY`), and may run them; it reports
//! the end with [`SimVast::exit`] and adds output with [`SimVast::append_log`].
//!
//! Rate limits (`limits.rs`): Vast.ai's documented per-endpoint, per-key
//! limits — search 10 a minute, create one per 4.5 s (a refusal blocks 12 s),
//! show one instance per 2 s, list per 1 s, destroy per 3 s, change bid per
//! 5.5 s — answered 429
//! with a plain-text body `API requests too frequent endpoint threshold=…`
//! and no `Retry-After`; an optional daily search quota answered
//! `429 {"error":"search_quota_exceeded"}` with `X-RateLimit-Reset`.
//! `SimConfig::limits` sets them (the documented figures in
//! `SimConfig::default()`, which the story harness, the demo and
//! `rigger sim vast` build on; `Limits::none()` only where a caller says
//! why, `rigger sim vast --limits none`); at run time `POST /sim/limits` with a
//! body such as `documented,search_per_minute=20` or `none` changes them, and
//! `GET /sim/state` shows them and the 429s answered per endpoint
//! (`refused`).
//!
//! Here: the simulator and the calls tests make on it; `http.rs` routes,
//! checks keys, applies the limits and injects faults; `search.rs`, `instances.rs` and
//! `control.rs` (`/sim`) answer; `world.rs`, `market.rs` and `book.rs` hold
//! the state; `filter.rs` reads search queries; `record.rs` keeps the
//! traffic, when asked, for the contract test.

pub mod book;
mod control;
pub mod filter;
pub mod hosts;
mod http;
mod instances;
pub mod limits;
pub mod market;
pub mod record;
mod search;
pub mod world;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use serde_json::Value;

use crate::engine::ports::Clock;
pub use hosts::HostStatus;
pub use limits::Limits;
use world::World;
pub use world::{Booted, Charge, Faults, Phase, Rental};

/// How to build a simulated Vast.ai.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub offers: usize,
    pub boot_delay_ms: i64,
    pub faults: Faults,
    /// The account's API key.
    pub api_key: String,
    /// Vast.ai's rate limits ([`Limits::documented`] by default: the real figures).
    pub limits: Limits,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            offers: 2000,
            boot_delay_ms: 20_000,
            faults: Faults::default(),
            api_key: "sim-vast-key".to_string(),
            limits: Limits::documented(),
        }
    }
}

pub type BootHook = Arc<dyn Fn(Booted) + Send + Sync>;

struct Inner {
    world: Mutex<World>,
    clock: Arc<dyn Clock>,
    api_key: String,
    boot: Mutex<Option<BootHook>>,
    /// Create calls to leave unanswered, next first.
    holds: Mutex<std::collections::VecDeque<CreateHold>>,
    /// How many create calls have been left unanswered.
    held: tokio::sync::watch::Sender<usize>,
    /// Raised to answer every create call held so far.
    releases: tokio::sync::watch::Sender<u64>,
    /// Traffic kept for the contract test, when on (`record.rs`).
    recorder: record::Recorder,
}

/// A create call left without an answer until [`SimVast::release_held_creates`]
/// (or for good): how tests stop rigger in the middle of a create, or let
/// something happen while it waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateHold {
    /// Before the machine is rented: nothing exists.
    BeforeRenting,
    /// After: the machine exists, and only the answer is missing.
    AfterRenting,
}

/// A handle on the simulated Vast.ai (cheap to clone).
#[derive(Clone)]
pub struct SimVast(Arc<Inner>);

impl SimVast {
    pub fn new(config: SimConfig, clock: Arc<dyn Clock>) -> SimVast {
        let now_s = clock.now_ms() as f64 / 1000.0;
        let offers = market::generate(config.seed, config.offers, now_s);
        SimVast(Arc::new(Inner {
            world: Mutex::new(World::new(
                offers,
                config.seed,
                config.boot_delay_ms,
                config.faults,
                config.limits,
            )),
            clock,
            api_key: config.api_key,
            boot: Mutex::new(None),
            holds: Mutex::default(),
            held: tokio::sync::watch::Sender::new(0),
            releases: tokio::sync::watch::Sender::new(0),
            recorder: record::Recorder::default(),
        }))
    }

    /// The next create calls, one per entry, are left without an answer.
    pub fn hold_next_creates(&self, holds: &[CreateHold]) {
        let mut queue = self.0.holds.lock().unwrap_or_else(|p| p.into_inner());
        queue.extend(holds.iter().copied());
    }

    /// Wait until `n` create calls in all have been left without an answer.
    pub async fn creates_held(&self, n: usize) {
        let mut held = self.0.held.subscribe();
        // The sender lives as long as `self`: waiting cannot fail.
        let _ = held.wait_for(|&count| count >= n).await;
    }

    /// Whether to hold this create call, and how.
    fn next_hold(&self) -> Option<CreateHold> {
        self.0
            .holds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
    }

    /// Answer every create call held so far.
    pub fn release_held_creates(&self) {
        self.0.releases.send_modify(|r| *r += 1);
    }

    /// Count a held call and wait for its release.
    async fn hold(&self) {
        let mut releases = self.0.releases.subscribe();
        let now = *releases.borrow_and_update();
        self.0.held.send_modify(|n| *n += 1);
        // The sender lives as long as `self`: waiting cannot fail.
        let _ = releases.wait_for(|&r| r > now).await;
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        // A panic while holding the lock would be a bug in the simulator;
        // keep serving rather than poison every later request.
        self.0.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> i64 {
        self.0.clock.now_ms()
    }

    /// Set the boot seam.
    pub fn on_boot(&self, hook: BootHook) {
        *self.0.boot.lock().unwrap_or_else(|p| p.into_inner()) = Some(hook);
    }

    /// Advance instances to the clock's time and run the boot seam for the
    /// ones that started. Every request does this first; a standalone
    /// simulator also does it on a ticker.
    pub fn tick(&self) {
        let now = self.now();
        let booted = self.world().tick(now);
        if booted.is_empty() {
            return;
        }
        let hook = self
            .0
            .boot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(hook) = hook {
            for b in booted {
                hook(b);
            }
        }
    }

    /// The instance's process ended with `code`.
    pub fn exit(&self, id: i64, code: i32) -> bool {
        let now = self.now();
        self.world().exit(id, code, now)
    }

    /// When each instance was created (ms on the simulator's clock).
    pub fn created_at_ms(&self) -> Vec<i64> {
        self.world()
            .instances
            .values()
            .map(|i| i.created_ms)
            .collect()
    }

    /// An instance's log so far (what `logs` returns).
    pub fn log(&self, id: i64) -> Option<String> {
        self.world().instances.get(&id).map(|i| i.log.clone())
    }

    pub fn append_log(&self, id: i64, text: &str) {
        if let Some(i) = self.world().instances.get_mut(&id) {
            i.log.push_str(text);
        }
    }

    pub fn set_faults(&self, faults: Faults) {
        self.world().faults = faults;
    }

    /// Change the rate limits in force.
    pub fn set_limits(&self, limits: Limits) {
        self.world().limits = limits;
    }

    /// Every request answered (the `/sim` surface and logs aside).
    pub fn requests_total(&self) -> u64 {
        self.world().requests.values().sum()
    }

    /// 429s answered for the rate limits, on all endpoints.
    pub fn refused_total(&self) -> u64 {
        self.world().limiter.refused.values().sum()
    }

    /// 429s answered for the rate limits, on one endpoint.
    pub fn refused(&self, endpoint: limits::Endpoint) -> u64 {
        self.world()
            .limiter
            .refused
            .get(&endpoint)
            .copied()
            .unwrap_or(0)
    }

    pub fn add_ssh_key(&self, key: &str) -> i64 {
        let now = self.now();
        self.world().add_ssh_key(key.to_string(), now)
    }

    /// Instances not destroyed: `(id, label, phase)`.
    pub fn live_instances(&self) -> Vec<(i64, Option<String>, Phase)> {
        self.tick();
        self.world()
            .instances
            .values()
            .filter(|i| i.phase != Phase::Destroyed)
            .map(|i| (i.id, i.label.clone(), i.phase))
            .collect()
    }

    /// The instance's host goes into `status` for `for_ms` (for good when
    /// `None`), then comes back.
    pub fn host_goes(&self, id: i64, status: HostStatus, for_ms: Option<i64>) -> bool {
        let now = self.now();
        self.world().host_goes(id, status, for_ms, now)
    }

    /// Someone bids `price` for the machine an interruptible instance runs on.
    pub fn outbid(&self, id: i64, price: f64) -> bool {
        let now = self.now();
        self.world().outbid(id, price, now)
    }

    pub fn phase(&self, id: i64) -> Option<Phase> {
        self.tick();
        self.world().instances.get(&id).map(|i| i.phase)
    }

    /// Rent directly (for tests that need an instance rigger did not make).
    pub fn rent(&self, offer_id: i64, rental: Rental) -> Result<i64, String> {
        let now = self.now();
        self.world()
            .rent(offer_id, rental, now)
            .map(|(id, _)| id)
            .map_err(|e| format!("{e:?}"))
    }

    /// Offers still on the market.
    pub fn offer_ids(&self) -> Vec<i64> {
        self.world()
            .offers
            .iter()
            .filter_map(|o| o.get("id").and_then(Value::as_i64))
            .collect()
    }

    /// An offer still on the market, as listed.
    pub fn offer(&self, id: i64) -> Option<serde_json::Map<String, Value>> {
        self.world().offers.get(id).cloned()
    }

    /// List an offer (one with the same id is replaced): how a story puts
    /// the host it is about on the market.
    pub fn list_offer(&self, offer: serde_json::Map<String, Value>) {
        self.world().offers.put(offer);
    }

    /// The offer an instance was rented from.
    pub fn rented_offer(&self, instance: i64) -> Option<serde_json::Map<String, Value>> {
        self.world()
            .instances
            .get(&instance)
            .map(|i| i.offer.clone())
    }

    pub fn ledger(&self) -> Vec<Charge> {
        self.world().ledger.clone()
    }

    pub fn spend(&self) -> f64 {
        let now = self.now();
        self.world().spend(now)
    }

    /// How many times `METHOD /path` was called (path without ids normalised).
    pub fn requests(&self, key: &str) -> u64 {
        self.world().requests.get(key).copied().unwrap_or(0)
    }

    /// The HTTP API. Paths are matched with or without their trailing slash.
    pub fn router(&self) -> Router {
        Router::new()
            .fallback(record::recorded)
            .with_state(self.clone())
            // Compressed answers to a client that accepts them
            // (`Accept-Encoding: gzip`, as the CLI sends).
            .layer(tower_http::compression::CompressionLayer::new().gzip(true))
    }

    /// Serve on `listener` until the process ends, ticking with the clock.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        let ticker = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                ticker.tick();
            }
        });
        axum::serve(listener, self.router()).await
    }
}
