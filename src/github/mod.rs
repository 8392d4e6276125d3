//! GitHub: webhooks, App authentication and the REST client.

pub mod app;
pub mod client;
pub mod contents;
pub mod deliveries;
pub mod groups;
pub mod http;
pub mod pace;
pub mod release;
pub mod runs;
pub mod webhook;
