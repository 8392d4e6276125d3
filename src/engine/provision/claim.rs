//! What one job holds while it rents one offer: the pool's claim on the
//! offer (no other job of the burst tries it), its place within the limits
//! (`admission`), and, once taken, Vast.ai's create slot. [`Claim`] holds
//! all three and gives them back by itself on every way out of the attempt
//! — an error returned with `?`, the next offer, a refusal, a panic, the
//! attempt dropped midway — unless the attempt says it keeps them (a
//! machine rented, or perhaps rented) or that the offer is gone.

use super::admission::Admission;
use crate::engine::offer_pool::OfferPool;
use crate::engine::ports::{Cloud, CloudError};

pub(super) struct Claim<'a, C: Cloud> {
    cloud: &'a C,
    pool: &'a OfferPool,
    admission: &'a Admission,
    repo: &'a str,
    offer_id: i64,
    /// A create slot taken and not yet used by a create call.
    slot: bool,
    end: End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Nothing rented: everything goes back.
    Open,
    /// The offer is gone: the place goes back, the claim stays so that no
    /// other job of the burst tries the offer again.
    Gone,
    /// A machine is rented (or may be): it keeps its place and its offer.
    Kept,
}

impl<'a, C: Cloud> Claim<'a, C> {
    /// Hold the claim on `offer_id` and the admission place that
    /// [`Admission::admit`] has just taken for this job.
    pub(super) fn new(
        cloud: &'a C,
        pool: &'a OfferPool,
        admission: &'a Admission,
        repo: &'a str,
        offer_id: i64,
    ) -> Claim<'a, C> {
        Claim {
            cloud,
            pool,
            admission,
            repo,
            offer_id,
            slot: false,
            end: End::Open,
        }
    }

    /// Take Vast.ai's create slot for this offer's create.
    pub(super) fn take_create_slot(&mut self) -> Result<(), CloudError> {
        self.cloud.create_slot()?;
        self.slot = true;
        Ok(())
    }

    /// The create call is being made: it uses the slot.
    pub(super) fn create_slot_used(&mut self) {
        self.slot = false;
    }

    /// The offer is gone (Vast.ai said so, or the create made nothing).
    pub(super) fn offer_gone(mut self) {
        self.end = End::Gone;
    }

    /// A machine holds the offer and the place now.
    pub(super) fn keep(mut self) {
        self.end = End::Kept;
    }
}

impl<C: Cloud> Drop for Claim<'_, C> {
    fn drop(&mut self) {
        if self.slot {
            self.cloud.release_create_slot();
        }
        match self.end {
            End::Open => {
                self.pool.release(self.offer_id);
                self.admission.give_back(self.repo);
            }
            End::Gone => self.admission.give_back(self.repo),
            End::Kept => {}
        }
    }
}

#[cfg(test)]
mod tests {
    //! Each way out of an attempt, with a cloud that counts the create
    //! slots it has handed out and not had back: what the guard gives back
    //! is seen in the pool (can another job claim the offer?), the
    //! admission (places taken) and the cloud (slots held).

    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;
    use crate::cloud::LaunchSpec;
    use crate::config::model::VastRunner;
    use crate::engine::ports::{OfferSearch, RankedOffer};
    use crate::engine::reconcile::CloudView;

    const REPO: &str = "acme/ml";
    const OFFER: i64 = 7;
    const NOW: i64 = 1_000;

    #[derive(Default)]
    struct Slots {
        held: AtomicI64,
        /// Refuse the next slot, as Vast.ai's limit does when it is taken.
        refuse: std::sync::atomic::AtomicBool,
    }

    impl Cloud for Slots {
        async fn search(&self, _: &VastRunner, _: f64) -> Result<OfferSearch, CloudError> {
            unreachable!("no search in these tests")
        }
        fn create_slot(&self) -> Result<(), CloudError> {
            if self.refuse.swap(false, Ordering::SeqCst) {
                return Err(CloudError::RateLimited {
                    retry_after_ms: 4_500,
                });
            }
            self.held.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn release_create_slot(&self) {
            self.held.fetch_sub(1, Ordering::SeqCst);
        }
        async fn create(&self, _: &LaunchSpec) -> Result<String, CloudError> {
            // A create sent uses its slot: Vast.ai counts it.
            self.held.fetch_sub(1, Ordering::SeqCst);
            Err(CloudError::RateLimited {
                retry_after_ms: 12_000,
            })
        }
        async fn find(&self, _: &str) -> Result<Option<CloudView>, CloudError> {
            Ok(None)
        }
        async fn list(&self, _: &str) -> Result<Vec<CloudView>, CloudError> {
            Ok(Vec::new())
        }
        async fn destroy(&self, _: &str) -> Result<(), CloudError> {
            Ok(())
        }
        async fn logs(&self, _: &str) -> Result<String, CloudError> {
            Ok(String::new())
        }
    }

    struct World {
        cloud: Slots,
        pool: OfferPool,
        admission: Admission,
    }

    fn offer() -> RankedOffer {
        RankedOffer {
            offer_id: OFFER,
            gpu_name: "RTX 4090".into(),
            num_gpus: 1,
            dph: 0.4,
            estimated_cost: 0.4,
            estimated_hours: 1.0,
            location: "Texas, US".into(),
            reliability: 0.99,
            candidate: 0,
            bid_price: None,
        }
    }

    impl World {
        fn new() -> World {
            World {
                cloud: Slots::default(),
                pool: OfferPool::default(),
                admission: Admission::empty(),
            }
        }

        /// What the attempt does first: a place for the offer, and the
        /// pool's claim on it, then the guard over both.
        fn claim(&self) -> Claim<'_, Slots> {
            let offers = [offer()];
            let admitted = self.admission.admit(REPO, &mut offers.iter(), |o, _| {
                self.pool.claim(o.offer_id, NOW)
            });
            assert!(admitted.is_some(), "admitted");
            Claim::new(&self.cloud, &self.pool, &self.admission, REPO, OFFER)
        }

        /// The create call, sent with the slot the claim holds (the fake
        /// answers 429).
        fn create(&self, c: &mut Claim<'_, Slots>) -> Result<String, CloudError> {
            c.create_slot_used();
            let spec = LaunchSpec {
                offer_id: OFFER,
                image: "ubuntu:22.04".into(),
                disk_gb: 10.0,
                vm: false,
                bid_price: None,
                label: String::new(),
                onstart: String::new(),
                env: Default::default(),
            };
            futures_util::FutureExt::now_or_never(self.cloud.create(&spec)).expect("answered")
        }

        /// (places taken, offer still claimed, create slots held)
        fn held(&self) -> (u32, bool, i64) {
            let (live, by_repo) = self.admission.taken(REPO);
            assert_eq!(live, by_repo);
            let claimed = !self.pool.claim(OFFER, NOW);
            if !claimed {
                self.pool.release(OFFER);
            }
            (live, claimed, self.cloud.held.load(Ordering::SeqCst))
        }
    }

    const NOTHING: (u32, bool, i64) = (0, false, 0);

    #[test]
    fn while_it_is_held_the_offer_the_place_and_the_slot_are_taken() {
        let w = World::new();
        let mut c = w.claim();
        c.take_create_slot().unwrap();
        assert_eq!(w.held(), (1, true, 1));
        drop(c);
        assert_eq!(w.held(), NOTHING);
    }

    /// Cancelled before the slot, or the slot refused (Vast.ai's create
    /// limit, a 429's wait): nothing is kept, and no slot was taken.
    #[test]
    fn an_attempt_that_gets_no_slot_gives_everything_back() {
        let w = World::new();
        drop(w.claim());
        assert_eq!(w.held(), NOTHING, "cancelled before its slot");

        let w = World::new();
        w.cloud.refuse.store(true, Ordering::SeqCst);
        let mut c = w.claim();
        assert!(c.take_create_slot().is_err());
        drop(c);
        assert_eq!(w.held(), NOTHING, "its slot refused");
    }

    /// The registration refused, the environment too large, the job
    /// cancelled while its runner was registered, a store error returned
    /// with `?`: the slot was taken and no create used it.
    #[test]
    fn an_attempt_that_ends_before_its_create_gives_the_slot_back() {
        fn attempt(c: &mut Claim<'_, Slots>) -> Result<(), CloudError> {
            c.take_create_slot()?;
            Err(CloudError::Transient("GitHub answered 502".into()))?;
            unreachable!()
        }
        let w = World::new();
        let mut c = w.claim();
        assert!(attempt(&mut c).is_err());
        assert_eq!(w.held(), (1, true, 1), "held until the attempt is over");
        drop(c);
        assert_eq!(w.held(), NOTHING);
    }

    /// A create sent and refused (429, a refusal): its slot is Vast.ai's
    /// now, the offer and the place go back.
    #[test]
    fn a_refused_create_gives_back_the_offer_and_the_place() {
        let w = World::new();
        let mut c = w.claim();
        c.take_create_slot().unwrap();
        assert!(matches!(
            w.create(&mut c),
            Err(CloudError::RateLimited { .. })
        ));
        drop(c);
        assert_eq!(w.held(), NOTHING);
    }

    /// The offer is gone: the place goes back, the claim stays (no other
    /// job of the burst tries it again).
    #[test]
    fn a_gone_offer_keeps_its_claim_and_gives_back_the_place() {
        let w = World::new();
        let mut c = w.claim();
        c.take_create_slot().unwrap();
        let _ = w.create(&mut c);
        c.offer_gone();
        assert_eq!(w.held(), (0, true, 0));
    }

    #[test]
    fn a_rented_machine_keeps_its_offer_and_its_place() {
        let w = World::new();
        let mut c = w.claim();
        c.take_create_slot().unwrap();
        let _ = w.create(&mut c);
        c.keep();
        assert_eq!(w.held(), (1, true, 0));
    }

    /// A panic in the middle of an attempt (the provisioner catches it and
    /// fails the job): the guard gives everything back as it unwinds.
    #[test]
    fn a_panic_gives_everything_back() {
        let w = World::new();
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut c = w.claim();
            c.take_create_slot().unwrap();
            panic!("a bug in the middle of an attempt");
        }));
        assert!(unwound.is_err());
        assert_eq!(w.held(), NOTHING);
    }

    /// The attempt's future dropped while it waits (its task aborted, a
    /// timeout around it): the guard is dropped with it.
    #[test]
    fn a_dropped_attempt_gives_everything_back() {
        let w = World::new();
        let attempt = async {
            let mut c = w.claim();
            c.take_create_slot().unwrap();
            // GitHub's answer to the registration, never coming.
            std::future::pending::<()>().await;
            c.keep();
        };
        assert!(futures_util::FutureExt::now_or_never(attempt).is_none());
        assert_eq!(w.held(), NOTHING);
    }
}
