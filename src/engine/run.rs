//! The engine's loops: the inbox worker (deliveries → events), the
//! provisioner, and the reconciler's ticker (which also recovers, once a
//! minute, deliveries GitHub failed to make: `recover.rs`). Each finishes what it is doing
//! when asked to stop; nothing is destroyed because rigger stops.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tracing::Instrument;

use super::events::{JobEvent, JobInfo};
use super::installations::InboxEvent;
use super::isolate::{Loop, isolated, isolated_sync};
use super::ports::{Cloud, Github};
use super::state::InstanceState;
use super::supervise::{Health, supervise};
use super::{Engine, EngineError};
use crate::store::Delivery;

/// How a stored delivery becomes an event: `Ok(None)` for deliveries that
/// need no work (pings, other events), `Err` for a payload that cannot be
/// read (kept with its error, never retried).
pub type ParseDelivery = dyn Fn(&Delivery) -> Result<Option<InboxEvent>, String> + Send + Sync;

const DELIVERY_LEASE_MS: i64 = 60_000;

/// The span a delivery is handled in, alone or in a run of `queued` ones:
/// its GUID (`X-GitHub-Delivery`), its event and, when known, which attempt
/// this is. Ids only: a payload never reaches a span.
pub(super) fn delivery_span(guid: &str, event: &str, attempt: Option<i64>) -> tracing::Span {
    tracing::info_span!(
        "delivery",
        guid = %crate::text::for_log(guid),
        event = %crate::text::for_log(event),
        attempt,
    )
}

/// How many times a delivery is handled before it is set aside
/// (quarantined) for an operator: a failure that three tries, a minute
/// apart, did not get past is not going to pass by itself.
pub const MAX_DELIVERY_ATTEMPTS: i64 = 3;

/// A failed delivery is claimed again after this long.
const DELIVERY_RETRY_MS: i64 = DELIVERY_LEASE_MS;

impl<C: Cloud, G: Github> Engine<C, G> {
    /// Handle the deliveries waiting in the inbox. Returns how many.
    ///
    /// A delivery whose handling failed or never finished (the process died
    /// with it) is a *suspect*: it is claimed again alone, so a poison
    /// delivery can take no batch down with it, and set aside after
    /// [`MAX_DELIVERY_ATTEMPTS`]. Only a store error that leaves rigger
    /// unable to record anything ends the call.
    pub async fn process_deliveries(&self, parse: &ParseDelivery) -> Result<usize, EngineError> {
        if let Some(d) = self
            .store
            .claim_suspect_delivery(&self.worker_id, self.now(), DELIVERY_LEASE_MS)
            .await?
        {
            let parsed = self.parse_isolated(&d, parse);
            self.handle_alone(&d, &parsed).await?;
            return Ok(1);
        }
        let batch = self
            .store
            .claim_deliveries(&self.worker_id, self.now(), DELIVERY_LEASE_MS, 64)
            .await?;
        let n = batch.len();
        let parsed: Vec<_> = batch
            .iter()
            .map(|d| (d, self.parse_isolated(d, parse)))
            .collect();
        let mut rest = parsed.as_slice();
        while !rest.is_empty() {
            // Most of a burst: a run of `queued` deliveries is recorded and
            // finished in one commit (in order: what follows waits for it).
            let run = rest
                .iter()
                .take_while(|(_, p)| matches!(p, Ok(Some(InboxEvent::Job(JobEvent::Queued(_))))))
                .count();
            if run > 0 {
                let (together, after) = rest.split_at(run);
                rest = after;
                if !self.queued_run(together).await {
                    // One of them is the trouble, or the store is: each
                    // on its own, so that only the guilty one is set aside.
                    for (d, p) in together {
                        self.handle_alone(d, p).await?;
                    }
                }
                continue;
            }
            let ((d, p), after) = (&rest[0], &rest[1..]);
            rest = after;
            self.handle_alone(d, p).await?;
        }
        Ok(n)
    }

    /// A delivery's payload read into an event; a panic while reading it
    /// is as permanent as an unreadable payload.
    fn parse_isolated(
        &self,
        d: &Delivery,
        parse: &ParseDelivery,
    ) -> Result<Option<InboxEvent>, String> {
        let what = format!("delivery {}", crate::text::for_log(&d.delivery_id));
        isolated_sync(&self.metrics, Loop::Inbox, &what, || parse(d))
            .unwrap_or_else(|p| Err(p.to_string()))
    }

    /// A run of `queued` deliveries in one commit; whether it committed.
    async fn queued_run(&self, run: &[(&Delivery, Result<Option<InboxEvent>, String>)]) -> bool {
        let queued: Vec<(Option<&str>, &JobInfo)> = run
            .iter()
            .filter_map(|(d, p)| match p {
                Ok(Some(InboxEvent::Job(JobEvent::Queued(job)))) => {
                    Some((Some(d.delivery_id.as_str()), job))
                }
                _ => None,
            })
            .collect();
        let what = format!("{} queued deliveries", queued.len());
        match isolated(
            &self.metrics,
            Loop::Inbox,
            &what,
            self.queued_together(&queued),
        )
        .await
        {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "{what} together: handling each alone");
                false
            }
            Err(_) => false,
        }
    }

    /// Handle one claimed delivery, isolated: done, given back to be tried
    /// again, or set aside — never an error that stops the loop, unless the
    /// store cannot record even that.
    async fn handle_alone(
        &self,
        d: &Delivery,
        parsed: &Result<Option<InboxEvent>, String>,
    ) -> Result<(), EngineError> {
        let span = delivery_span(&d.delivery_id, &d.event, Some(d.attempts));
        self.handle_alone_in_span(d, parsed).instrument(span).await
    }

    async fn handle_alone_in_span(
        &self,
        d: &Delivery,
        parsed: &Result<Option<InboxEvent>, String>,
    ) -> Result<(), EngineError> {
        let id = d.delivery_id.as_str();
        let now = self.now();
        let event = match parsed {
            Ok(None) => {
                self.store
                    .finish_delivery(id, &self.worker_id, now, None)
                    .await?;
                return Ok(());
            }
            Err(why) => {
                // The payload itself is the problem: no retry will read it.
                let why = format!("cannot be read: {why}");
                return self.quarantine(d, &why).await;
            }
            Ok(Some(event)) => event,
        };
        if d.attempts > MAX_DELIVERY_ATTEMPTS {
            let why = format!(
                "handled {} times without finishing; last: {}",
                d.attempts - 1,
                d.error_or_crash()
            );
            return self.quarantine(d, &why).await;
        }
        let what = format!("delivery {}", crate::text::for_log(id));
        let failure = match isolated(
            &self.metrics,
            Loop::Inbox,
            &what,
            self.handle_inbox(event.clone()),
        )
        .await
        {
            Ok(Ok(())) => {
                self.store
                    .finish_delivery(id, &self.worker_id, self.now(), None)
                    .await?;
                return Ok(());
            }
            Ok(Err(e)) => e.to_string(),
            Err(p) => p.to_string(),
        };
        if d.attempts >= MAX_DELIVERY_ATTEMPTS {
            let why = format!("failed {} times; last: {failure}", d.attempts);
            return self.quarantine(d, &why).await;
        }
        tracing::warn!(
            attempt = d.attempts,
            "handling a delivery failed; it is tried again in {} s: {failure}",
            DELIVERY_RETRY_MS / 1000
        );
        self.store
            .retry_delivery(
                id,
                &self.worker_id,
                &failure,
                self.now() + DELIVERY_RETRY_MS,
            )
            .await?;
        Ok(())
    }

    async fn quarantine(&self, d: &Delivery, why: &str) -> Result<(), EngineError> {
        let why = crate::text::clip(why, 2_000);
        tracing::error!(
            "a delivery is set aside (quarantined) and will not be retried until an operator runs `rigger inbox retry {}`: {why}",
            crate::text::for_log(&d.delivery_id)
        );
        self.store
            .quarantine_delivery(&d.delivery_id, &self.worker_id, self.now(), &why)
            .await?;
        Ok(())
    }

    /// Run the loops until `shutdown` turns true. `inbox` is notified by the
    /// webhook handler after each committed delivery. Each loop runs under
    /// [`supervise`]: restarted if it ends unexpectedly, and given up on
    /// (see `health`) if it keeps ending.
    pub async fn run(
        self: Arc<Self>,
        parse: Arc<ParseDelivery>,
        inbox: Arc<Notify>,
        shutdown: watch::Receiver<bool>,
        health: Arc<Health>,
    ) {
        match self.recover_at_start().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                jobs = n,
                "put back in the queue: left mid-provisioning by the last run"
            ),
            Err(e) => tracing::error!(error = %e, "start-up recovery (the reconciler retries)"),
        }
        let supervised = |lp: Loop| {
            supervise(
                lp.as_str(),
                health.clone(),
                self.metrics.clone(),
                shutdown.clone(),
                {
                    let engine = self.clone();
                    let (parse, inbox, stop) = (parse.clone(), inbox.clone(), shutdown.clone());
                    move || {
                        let engine = engine.clone();
                        let (parse, inbox, stop) = (parse.clone(), inbox.clone(), stop.clone());
                        async move {
                            match lp {
                                Loop::Inbox => engine.inbox_loop(parse, inbox, stop).await,
                                Loop::Provisioner => engine.provision_loop(stop).await,
                                Loop::Reconciler | Loop::Callback => {
                                    engine.reconcile_loop(stop).await
                                }
                            }
                        }
                    }
                },
            )
        };
        tokio::join!(
            supervised(Loop::Inbox),
            supervised(Loop::Provisioner),
            supervised(Loop::Reconciler)
        );
    }

    /// Deliveries → events, batch by batch; a stop request is honoured
    /// between batches, not after the last.
    async fn inbox_loop(
        self: Arc<Self>,
        parse: Arc<ParseDelivery>,
        inbox: Arc<Notify>,
        mut stop: watch::Receiver<bool>,
    ) {
        while !*stop.borrow() {
            match self.process_deliveries(parse.as_ref()).await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "inbox worker"),
            }
            tokio::select! {
                _ = inbox.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Provisioning passes, back to back while jobs are due.
    async fn provision_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            match self.provision_due().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "provisioner"),
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// A reconcile pass every interval, or sooner when woken.
    async fn reconcile_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let every = self.settings.timeouts.reconcile_interval;
        while !*stop.borrow() {
            // `reconcile_once` opens the pass's span, with its number.
            if let Err(e) = self.reconcile_once().await {
                tracing::error!(error = %e, "reconciler");
            }
            // Deliveries GitHub failed to make, once a minute (recover.rs).
            let recovery = tracing::info_span!("delivery_recovery");
            if let Err(e) = self.recover_deliveries_if_due().instrument(recovery).await {
                tracing::error!(error = %e, "delivery recovery");
            }
            // Until the next tick, or sooner when a destroy retry is due
            // (one scheduled meanwhile shortens the sleep): a machine whose
            // destroy was refused bills until it is retried.
            let tick = tokio::time::Instant::now() + every;
            loop {
                let until_tick = tick.saturating_duration_since(tokio::time::Instant::now());
                let soonest = self.soonest_destroy_retry().await;
                let wait = super::reconcile::retry::next_pass_in(until_tick, self.now(), soonest);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => break,
                    _ = self.reconcile_wake.notified() => break,
                    _ = self.destroy_retry_wake.notified() => continue,
                    _ = stop.changed() => break,
                }
            }
        }
    }

    /// When the soonest destroy retry is due, if one is waiting.
    async fn soonest_destroy_retry(&self) -> Option<i64> {
        let limits = self.limits();
        match self.store.instances_in(&[InstanceState::Destroying]).await {
            Ok(rows) => rows
                .iter()
                .filter_map(|i| super::reconcile::retry::destroy_due_at(i, &limits))
                .min(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the destroys waiting for a retry");
                None
            }
        }
    }
}
