//! Vast.ai: the GPU catalog (names, aliases, speed) used to validate and
//! resolve `instance_type`.

pub mod client;
pub mod gpus;
pub mod query;
