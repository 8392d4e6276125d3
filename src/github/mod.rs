//! GitHub: webhooks, App authentication and the REST client.

pub mod app;
pub mod client;
pub mod http;
pub mod release;
pub mod webhook;
