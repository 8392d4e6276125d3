//! Vast.ai: the REST client (`client`, with its retry policy in `retry`, its
//! rate limiter in `limit`, its listings in `list` and the JSON it reads in `wire`), the offer
//! search it sends (`query`), and
//! the GPU catalog (names, aliases, speed) used to validate and resolve
//! `instance_type` (`gpus`, with every name Vast.ai lists in `gpu_names`).

pub mod client;
pub mod gpu_names;
pub mod gpus;
pub mod limit;
mod list;
pub mod query;
mod retry;
mod wire;
