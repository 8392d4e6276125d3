//! The engine: job and instance state machines, provisioning, teardown and
//! the reconciler.

pub mod estimate;
pub mod names;
pub mod policy;
pub mod reconcile;
pub mod state;
