//! GitHub: webhooks, App authentication and the REST client.
pub mod webhook;
