//! rigger: ephemeral Vast.ai GPU runners for GitHub Actions, driven by a
//! Cirun-compatible `.cirun.yml`.
//!
//! The layout follows the architecture: `config` reads what a repository asks
//! for, `cloud` rents machines, `github` talks to GitHub, `sim` simulates both
//! services for the demo and the tests, and `cli` is the command line.

// The simulated Vast.ai writes its large JSON rows with `json!`.
#![recursion_limit = "256"]

pub mod app;
pub mod bootstrap;
pub mod cli;
pub mod cloud;
pub mod config;
pub mod demo;
pub mod engine;
pub mod github;
pub mod metrics;
pub mod millis;
pub mod server;
pub mod settings;
pub mod sim;
pub mod store;
pub mod text;
