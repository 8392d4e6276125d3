//! Checking traffic against GitHub's published contract: the validator
//! (`openapi.rs`), used by `tests/github_contract.rs`.

pub mod openapi;
