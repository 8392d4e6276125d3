//! Recovering deliveries GitHub failed to make. GitHub does not retry a
//! failed delivery: a `queued` that never reached rigger (a network blip,
//! rigger restarting) would strand its job, queued on GitHub for 24 h with
//! no machine. So rigger reads the App's delivery log (`GET
//! /app/hook/deliveries`, App JWT, 100 a page, newest first) and asks GitHub
//! to send again (`POST /app/hook/deliveries/{id}/attempts`) each event it
//! acts on whose attempts all failed and that is not in its inbox — a
//! delivery GitHub records as failed may still have reached rigger (it
//! answered after GitHub stopped waiting), and a redelivery keeps the GUID
//! the inbox deduplicates on, so a duplicate is never acted on twice.
//!
//! Budget: one pass a minute ([`SCAN_EVERY_MS`], shared by the replicas
//! of one database); a quiet App reads one
//! page a pass, 60 calls an hour, 1.2 % of the 5,000 an hour GitHub
//! documents as an App's least primary limit, whatever the number of
//! repositories. Listing the queued runs of each repository rigger serves
//! instead would cost one call per repository per pass (50 repositories:
//! 3,000 an hour, 60 % of an installation's budget) and still not see
//! `installation` events. A pass reads at most [`PAGES_PER_PASS`] pages;
//! a sweep (newest down to where the last one ended, the watermark) longer
//! than that goes on next pass from the cursor kept in the store, so a
//! restart neither skips nor rescans. A rate limit ends the pass and the
//! next waits as GitHub says. Each event is redelivered at most
//! [`TRIES_PER_EVENT`] times by one process.

use std::collections::{HashMap, HashSet};

use super::ports::{Cloud, Github, GithubError, HookDelivery};
use super::{Engine, EngineError};
use crate::store::DeliveryScan;

/// How often the delivery log is read.
pub const SCAN_EVERY_MS: i64 = 60_000;
/// Pages of 100 deliveries read at most in one pass.
pub const PAGES_PER_PASS: usize = 5;
/// Redeliveries of one event at most (per process): one that keeps failing
/// is rigger's own trouble (its database, say), and an operator's.
pub const TRIES_PER_EVENT: u32 = 3;
/// GitHub.com redelivers only deliveries of the past 3 days.
pub const REDELIVERABLE_MS: i64 = 3 * 24 * 3_600_000;
/// The events rigger acts on: only these are worth redelivering.
const EVENTS: &[&str] = &["workflow_job", "installation", "installation_repositories"];

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoverPass {
    pub pages: usize,
    /// Failed events (by GUID) that reached rigger anyway.
    pub already_here: usize,
    pub redelivered: usize,
    /// The sweep reached the watermark: the whole log since is looked at.
    pub swept: bool,
}

/// What the recovery remembers between passes (in memory: the scan's
/// position is in the store).
#[derive(Debug, Default)]
pub(crate) struct Memory {
    tries: HashMap<String, u32>,
    not_before_ms: i64,
}

impl<C: Cloud, G: Github> Engine<C, G> {
    fn recover_memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.recover_memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// A pass if no replica made one within [`SCAN_EVERY_MS`] (the
    /// reconciler's loop calls this after each of its passes; the store
    /// decides whose turn it is, so replicas share one budget).
    pub async fn recover_deliveries_if_due(&self) -> Result<Option<RecoverPass>, EngineError> {
        if !self
            .store
            .claim_delivery_scan(self.now(), SCAN_EVERY_MS)
            .await?
        {
            return Ok(None);
        }
        self.recover_deliveries_once().await.map(Some)
    }

    /// One pass: read the log from where the sweep is, redeliver what never
    /// arrived, remember where it got to.
    pub async fn recover_deliveries_once(&self) -> Result<RecoverPass, EngineError> {
        let now = self.now();
        let mut pass = RecoverPass::default();
        if now < self.recover_memory().not_before_ms {
            return Ok(pass);
        }
        let look_back = crate::millis::of(self.settings.timeouts.queue).min(REDELIVERABLE_MS);
        let mut scan = self.store.delivery_scan().await?;
        let mut cursor = scan.cursor.clone();
        let mut failed: Vec<HookDelivery> = Vec::new();
        let mut ok: HashSet<String> = HashSet::new();
        let mut swept = false;
        while pass.pages < PAGES_PER_PASS && !swept {
            let page = match self.github.hook_deliveries(cursor.as_deref()).await {
                Ok(p) => p,
                Err(e) => return Ok(self.recover_stopped(&e, pass)),
            };
            pass.pages += 1;
            self.metrics.inc("rigger_delivery_scan_pages_total", &[]);
            if scan.sweep_top.is_none() {
                scan.sweep_top = Some(page.deliveries.first().map_or(scan.watermark, |d| d.id));
            }
            for d in page.deliveries {
                if d.id <= scan.watermark || now - d.delivered_at_ms > look_back {
                    swept = true;
                    break;
                }
                if d.ok {
                    ok.insert(d.guid);
                } else if EVENTS.contains(&d.event.as_str()) {
                    failed.push(d);
                }
            }
            match page.next_cursor {
                Some(c) if !swept => cursor = Some(c),
                _ => swept = true,
            }
        }
        // Newest first: an event's later deliveries (a job's `completed`)
        // reach rigger before its lost `queued`, which then finds the job
        // over instead of renting for it.
        let mut seen = HashSet::new();
        for d in failed {
            if !seen.insert(d.guid.clone()) || ok.contains(&d.guid) {
                continue;
            }
            if self.store.has_delivery(&d.guid).await? {
                pass.already_here += 1;
                continue;
            }
            {
                let mut memory = self.recover_memory();
                if memory.tries.len() > 10_000 {
                    memory.tries.clear();
                }
                let tries = memory.tries.entry(d.guid.clone()).or_default();
                if *tries >= TRIES_PER_EVENT {
                    continue;
                }
                *tries += 1;
            }
            match self.github.redeliver(d.id).await {
                Ok(()) => {
                    pass.redelivered += 1;
                    let event = EVENTS
                        .iter()
                        .copied()
                        .find(|e| *e == d.event)
                        .unwrap_or("other");
                    self.metrics
                        .inc("rigger_deliveries_redelivered_total", &[("event", event)]);
                    tracing::info!(
                        guid = %crate::text::for_log(&d.guid),
                        event = event,
                        "asked GitHub to redeliver a delivery that never reached rigger"
                    );
                }
                Err(e) => {
                    if matches!(e, GithubError::RateLimited { .. }) {
                        return Ok(self.recover_stopped(&e, pass));
                    }
                    self.github_error(&e);
                    tracing::warn!(error = %e, "could not ask GitHub to redeliver a delivery");
                }
            }
        }
        scan = if swept {
            DeliveryScan {
                watermark: scan.sweep_top.unwrap_or(0).max(scan.watermark),
                sweep_top: None,
                cursor: None,
            }
        } else {
            DeliveryScan { cursor, ..scan }
        };
        pass.swept = swept;
        self.store.save_delivery_scan(&scan, now).await?;
        Ok(pass)
    }

    /// GitHub failed a call: the pass ends where it is, its progress not
    /// saved (the next pass does it again; the inbox deduplicates what it
    /// redelivered), and after a rate limit the next waits as advised.
    fn recover_stopped(&self, e: &GithubError, pass: RecoverPass) -> RecoverPass {
        self.github_error(e);
        if let GithubError::RateLimited { retry_after_ms } = e {
            // A wait, not a fault: said once, and no pass runs before it ends.
            self.recover_memory().not_before_ms = self.now() + retry_after_ms;
            tracing::info!(error = %e, "reading GitHub's delivery log waits out the App's rate limit");
            return pass;
        }
        tracing::warn!(error = %e, "reading GitHub's delivery log stopped; the next pass goes on");
        pass
    }
}
