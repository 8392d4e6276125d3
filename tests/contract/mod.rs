//! Checking traffic against a service's published contract: the OpenAPI
//! validator (`openapi.rs`, its schemas in `schema.rs`) and what a test
//! found less the exceptions it accepts (`findings.rs`), used by
//! `tests/github_contract.rs` and `tests/vast_contract.rs`.

pub mod findings;
pub mod openapi;
mod schema;
