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
