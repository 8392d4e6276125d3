//! Checking traffic against a service's published contract: the OpenAPI
//! validator (`openapi.rs`, its schemas in `schema.rs`), used by
//! `tests/github_contract.rs` and `tests/vast_contract.rs`.

pub mod openapi;
mod schema;
