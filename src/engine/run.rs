//! The engine's loops: the inbox worker (deliveries → events), the
//! provisioner, and the reconciler's ticker. Each finishes what it is doing
//! when asked to stop; nothing is destroyed because rigger stops.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use super::events::{JobEvent, JobInfo};
use super::ports::{Cloud, Github};
use super::{Engine, EngineError};
use crate::store::Delivery;

/// How a stored delivery becomes an event: `Ok(None)` for deliveries that
/// need no work (pings, other events), `Err` for a payload that cannot be
/// read (kept with its error, never retried).
pub type ParseDelivery = dyn Fn(&Delivery) -> Result<Option<JobEvent>, String> + Send + Sync;

const DELIVERY_LEASE_MS: i64 = 60_000;

impl<C: Cloud, G: Github> Engine<C, G> {
    /// Handle the deliveries waiting in the inbox. Returns how many.
    pub async fn process_deliveries(&self, parse: &ParseDelivery) -> Result<usize, EngineError> {
        let batch = self
            .store
            .claim_deliveries(&self.worker_id, self.now(), DELIVERY_LEASE_MS, 64)
            .await?;
        let n = batch.len();
        let parsed: Vec<_> = batch.iter().map(|d| (d, parse(d))).collect();
        let mut rest = parsed.as_slice();
        while !rest.is_empty() {
            // Most of a burst: a run of `queued` deliveries is recorded and
            // finished in one commit (in order: what follows waits for it).
            let queued: Vec<(Option<&str>, &JobInfo)> = rest
                .iter()
                .map_while(|(d, p)| match p {
                    Ok(Some(JobEvent::Queued(job))) => Some((Some(d.delivery_id.as_str()), job)),
                    _ => None,
                })
                .collect();
            if !queued.is_empty() {
                self.queued_together(&queued).await?;
                rest = &rest[queued.len()..];
                continue;
            }
            let ((d, parsed), after) = (&rest[0], &rest[1..]);
            rest = after;
            let error = match parsed {
                Ok(Some(event)) => {
                    // A store error leaves the lease to run out: retried later.
                    self.handle(event.clone()).await?;
                    None
                }
                Ok(None) => None,
                Err(why) => {
                    tracing::warn!(delivery = %d.delivery_id, event = %d.event, "unreadable delivery: {why}");
                    Some(why.as_str())
                }
            };
            self.store
                .finish_delivery(&d.delivery_id, &self.worker_id, self.now(), error)
                .await?;
        }
        Ok(n)
    }

    /// Run the loops until `shutdown` turns true. `inbox` is notified by the
    /// webhook handler after each committed delivery.
    pub async fn run(
        self: Arc<Self>,
        parse: Arc<ParseDelivery>,
        inbox: Arc<Notify>,
        shutdown: watch::Receiver<bool>,
    ) {
        match self.recover_at_start().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                jobs = n,
                "put back in the queue: left mid-provisioning by the last run"
            ),
            Err(e) => tracing::error!(error = %e, "start-up recovery (the reconciler retries)"),
        }
        let mut tasks = JoinSet::new();
        {
            let engine = self.clone();
            let mut stop = shutdown.clone();
            tasks.spawn(async move {
                loop {
                    // A backlog is worked through batch by batch, but a stop
                    // request is honoured between batches, not after the last.
                    if *stop.borrow() {
                        break;
                    }
                    match engine.process_deliveries(parse.as_ref()).await {
                        Ok(n) if n > 0 => continue,
                        Ok(_) => {}
                        Err(e) => tracing::error!(error = %e, "inbox worker"),
                    }
                    tokio::select! {
                        _ = inbox.notified() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => {}
                    }
                    if *stop.borrow() {
                        break;
                    }
                }
            });
        }
        {
            let engine = self.clone();
            let mut stop = shutdown.clone();
            tasks.spawn(async move {
                loop {
                    // A backlog is worked through batch by batch, but a stop
                    // request is honoured between batches, not after the last.
                    if *stop.borrow() {
                        break;
                    }
                    match engine.provision_due().await {
                        Ok(n) if n > 0 => continue,
                        Ok(_) => {}
                        Err(e) => tracing::error!(error = %e, "provisioner"),
                    }
                    tokio::select! {
                        _ = engine.wake.notified() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => {}
                    }
                    if *stop.borrow() {
                        break;
                    }
                }
            });
        }
        {
            let engine = self.clone();
            let mut stop = shutdown.clone();
            let every = self.settings.timeouts.reconcile_interval;
            tasks.spawn(async move {
                loop {
                    if *stop.borrow() {
                        break;
                    }
                    if let Err(e) = engine.reconcile_once().await {
                        tracing::error!(error = %e, "reconciler");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(every) => {}
                        _ = engine.reconcile_wake.notified() => {}
                        _ = stop.changed() => {}
                    }
                    if *stop.borrow() {
                        break;
                    }
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r {
                tracing::error!(error = %e, "an engine loop stopped");
            }
        }
    }
}
