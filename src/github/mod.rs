//! GitHub: webhooks, App authentication and the REST client.

pub mod app;
pub mod client;
pub mod deliveries;
pub mod contents;
pub mod groups;
pub mod http;
pub mod runs;
pub mod release;
pub mod webhook;
