//! Clouds rigger rents machines from. Vast.ai is the one provisioned today.

pub mod vast;
