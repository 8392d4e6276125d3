//! Searches shared by the jobs of a burst.
//!
//! A matrix of 100 jobs asking for the same runner would otherwise send 100
//! identical searches to Vast.ai, each slow (about a second on the real API)
//! and each counted against its rate limit. A ranked list stays in the pool
//! for [`FRESH_MS`] and serves every job of the same definition and estimate;
//! each job claims the offer it tries, so two jobs never race for one offer.
//! A stale list costs little: an offer gone meanwhile is answered `no_such_ask`
//! and the job takes the next one, as it would with a list of its own, and
//! the list is dropped so the next job searches afresh.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::ports::RankedOffer;
use crate::config::model::VastRunner;

/// How long a ranked list is reused: long enough to serve a burst's creates
/// at Vast.ai's pace (one per 4.5 s: some ten of them), and so that one
/// definition's searches stay under two a minute, well within Vast.ai's ten.
pub const FRESH_MS: i64 = 45_000;
/// How long an offer stays claimed by the job that tried it: longer than any
/// list lives, so a fresh search cannot hand an offer being rented to
/// another job.
const CLAIM_MS: i64 = 120_000;

/// What a search was for: the definition's filters and the job's estimate.
pub fn key(runner: &VastRunner, expected_reference_hours: f64) -> String {
    format!("{runner:?}|{}", expected_reference_hours.to_bits())
}

#[derive(Default)]
pub struct OfferPool {
    inner: Mutex<Pool>,
}

/// How long a search that found nothing (and its diagnosis) answers for
/// its definition: Vast.ai's search budget is ten a minute per key, and a
/// definition nothing matches would otherwise spend it once per job.
pub const NO_MATCH_MS: i64 = 60_000;

#[derive(Default)]
struct Pool {
    lists: HashMap<String, (i64, Arc<Vec<RankedOffer>>)>,
    /// Key → when its search found nothing, and the diagnosis.
    no_match: HashMap<String, (i64, String)>,
    /// One search at a time per key.
    searches: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
    /// Offer id → when a job claimed it.
    claimed: HashMap<i64, i64>,
}

impl OfferPool {
    fn pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A list searched less than [`FRESH_MS`] ago that still has an offer
    /// no job has claimed.
    pub fn fresh(&self, key: &str, now: i64) -> Option<Arc<Vec<RankedOffer>>> {
        let pool = self.pool();
        let (at, list) = pool.lists.get(key)?;
        let unclaimed = list.iter().any(|o| !pool.is_claimed(o.offer_id, now));
        (now - at < FRESH_MS && unclaimed).then(|| list.clone())
    }

    /// Held while a job looks for a fresh list and, finding none, searches:
    /// the jobs of a burst wait for the first one's search.
    pub fn search_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut pool = self.pool();
        if pool.searches.len() > 1_000 {
            // Only locks nobody holds or waits for can go.
            pool.searches.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        pool.searches.entry(key.to_string()).or_default().clone()
    }

    /// Keep a new search's list for the jobs that follow.
    pub fn keep(&self, key: String, now: i64, list: Arc<Vec<RankedOffer>>) {
        let mut pool = self.pool();
        pool.lists.retain(|_, (at, _)| now - *at < FRESH_MS);
        pool.lists.insert(key, (now, list));
    }

    /// What a search for `key` less than [`NO_MATCH_MS`] ago said when it
    /// found nothing.
    pub fn no_match(&self, key: &str, now: i64) -> Option<String> {
        let pool = self.pool();
        let (at, diagnosis) = pool.no_match.get(key)?;
        (now - at < NO_MATCH_MS).then(|| diagnosis.clone())
    }

    /// A search for `key` found nothing: the jobs that follow within
    /// [`NO_MATCH_MS`] take its diagnosis instead of searching.
    pub fn keep_no_match(&self, key: String, now: i64, diagnosis: String) {
        let mut pool = self.pool();
        pool.no_match.retain(|_, (at, _)| now - *at < NO_MATCH_MS);
        pool.no_match.insert(key, (now, diagnosis));
    }

    /// Claim an offer for one job; false when another job has it.
    pub fn claim(&self, offer_id: i64, now: i64) -> bool {
        let mut pool = self.pool();
        if pool.is_claimed(offer_id, now) {
            return false;
        }
        if pool.claimed.len() > 10_000 {
            pool.claimed.retain(|_, at| now - *at < CLAIM_MS);
        }
        pool.claimed.insert(offer_id, now);
        true
    }

    /// The job did not rent it after all (not because it is gone): let
    /// other jobs try it.
    pub fn release(&self, offer_id: i64) {
        self.pool().claimed.remove(&offer_id);
    }

    /// The market moved under the list (an offer on it is gone): the next
    /// job searches afresh.
    pub fn forget(&self, key: &str) {
        self.pool().lists.remove(key);
    }
}

impl Pool {
    fn is_claimed(&self, offer_id: i64, now: i64) -> bool {
        self.claimed
            .get(&offer_id)
            .is_some_and(|at| now - at < CLAIM_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(id: i64) -> RankedOffer {
        RankedOffer {
            offer_id: id,
            gpu_name: "RTX 4090".into(),
            num_gpus: 1,
            dph: 0.4,
            estimated_cost: 0.2,
            estimated_hours: 0.5,
            location: "Texas, US".into(),
            reliability: 0.99,
            candidate: 0,
            bid_price: None,
        }
    }

    #[test]
    fn a_list_serves_jobs_until_stale_or_every_offer_is_claimed() {
        let pool = OfferPool::default();
        assert!(pool.fresh("k", 0).is_none());
        pool.keep("k".into(), 1_000, Arc::new(vec![offer(1), offer(2)]));
        assert_eq!(pool.fresh("k", 1_000).unwrap().len(), 2);
        assert!(pool.fresh("other", 1_000).is_none());
        assert!(pool.fresh("k", 1_000 + FRESH_MS).is_none(), "stale");

        assert!(pool.claim(1, 1_100));
        assert!(!pool.claim(1, 1_200), "one job per offer");
        assert!(pool.fresh("k", 1_200).is_some(), "offer 2 is free");
        assert!(pool.claim(2, 1_300));
        assert!(
            pool.fresh("k", 1_300).is_none(),
            "all claimed: search again"
        );

        pool.release(2);
        assert!(pool.claim(2, 1_400), "released for another job");
        assert!(pool.claim(1, 1_100 + CLAIM_MS), "claims lapse");

        pool.keep("k".into(), 2_000, Arc::new(vec![offer(3)]));
        pool.forget("k");
        assert!(pool.fresh("k", 2_000).is_none());
    }

    #[test]
    fn the_key_tells_definitions_and_estimates_apart() {
        let runner = |yaml: &str| {
            let (config, _) =
                crate::config::parse::parse_cirun(yaml, crate::config::model::Origin::Repository);
            config.unwrap().runners[0].vast.clone().unwrap()
        };
        let a = runner(
            "runners:\n  - name: a\n    cloud: vast_ai\n    instance_type: 1xRTX_4090\n    labels: [cirun-a]\n",
        );
        let b = runner(
            "runners:\n  - name: a\n    cloud: vast_ai\n    instance_type: 1xRTX_3090\n    labels: [cirun-a]\n",
        );
        assert_eq!(key(&a, 0.5), key(&a, 0.5));
        assert_ne!(key(&a, 0.5), key(&a, 0.75));
        assert_ne!(key(&a, 0.5), key(&b, 0.5));
    }
}
