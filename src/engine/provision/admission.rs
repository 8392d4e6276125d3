//! The limits among the jobs of one provisioning pass.

use std::sync::Mutex;

use crate::engine::policy::Usage;
use crate::engine::ports::{Cloud, Github, RankedOffer};
use crate::engine::{Engine, EngineError};
use crate::store::LiveUsage;

impl<C: Cloud, G: Github> Engine<C, G> {
    /// What a provisioning pass starts from: the machines alive now and
    /// what was spent today.
    pub(super) async fn admission(&self) -> Result<Admission, EngineError> {
        let now = self.now();
        let day_start = now - now.rem_euclid(86_400_000);
        Ok(Admission(Mutex::new(Places {
            live: self.store.live_usage(day_start, now).await?,
            spent_today: self.store.spend_since(day_start).await?,
        })))
    }
}

/// The places one provisioning pass may fill: the live machines counted
/// when it began, plus those its jobs have taken since. Kept in memory and
/// taken under a plain mutex, so the limits hold among jobs worked on side
/// by side without a lock held across database writes. Replicas take turns
/// to run passes (`Store::provisioning_turn`), so each counts what the
/// others rented.
pub(super) struct Admission(Mutex<Places>);

struct Places {
    live: LiveUsage,
    spent_today: f64,
}

impl Admission {
    fn places(&self) -> std::sync::MutexGuard<'_, Places> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take a place for the first of `offers` that `allowed` accepts given
    /// the usage so far, in one step: jobs worked on side by side cannot
    /// both take the last place.
    pub(super) fn admit<'a>(
        &self,
        repo: &str,
        offers: &mut impl Iterator<Item = &'a RankedOffer>,
        mut allowed: impl FnMut(&RankedOffer, &Usage) -> bool,
    ) -> Option<&'a RankedOffer> {
        let mut places = self.places();
        let usage = Usage {
            live_instances: places.live.live,
            live_instances_for_repo: places.live.by_repo.get(repo).copied().unwrap_or(0),
            spent_today: places.spent_today,
            running_today: places.live.dollars_since,
        };
        let offer = offers.find(|o| allowed(o, &usage))?;
        places.live.live += 1;
        *places.live.by_repo.entry(repo.to_string()).or_default() += 1;
        Some(offer)
    }

    /// The machine was not rented after all.
    pub(super) fn give_back(&self, repo: &str) {
        let mut places = self.places();
        places.live.live = places.live.live.saturating_sub(1);
        if let Some(n) = places.live.by_repo.get_mut(repo) {
            *n = n.saturating_sub(1);
        }
    }
}

#[cfg(test)]
impl Admission {
    /// A pass that starts with nothing live.
    pub(super) fn empty() -> Admission {
        Admission(Mutex::new(Places {
            live: LiveUsage::default(),
            spent_today: 0.0,
        }))
    }

    /// The places taken so far: in all, and by `repo`.
    pub(super) fn taken(&self, repo: &str) -> (u32, u32) {
        let places = self.places();
        let by_repo = places.live.by_repo.get(repo).copied().unwrap_or(0);
        (places.live.live, by_repo)
    }
}
