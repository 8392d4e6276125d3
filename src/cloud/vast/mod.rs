//! Vast.ai: the GPU catalog (names, aliases, speed) used to validate and
//! resolve `instance_type`.

pub mod gpus;
