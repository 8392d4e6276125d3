//! `rigger webhook send`: sign a delivery the way GitHub does and post it, to
//! try a running rigger by hand (samples in `webhook/`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::github::webhook::sign;
use crate::settings::Secret;

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Sign a JSON delivery with the webhook secret and POST it, with the
    /// headers GitHub sends (`X-GitHub-Event`, `X-GitHub-Delivery`,
    /// `X-Hub-Signature-256`). Exits 0 on a 2xx answer, 1 otherwise.
    Send(SendArgs),
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// The JSON body to send (see `webhook/` for samples).
    pub file: PathBuf,
    /// rigger's webhook URL.
    #[arg(long, default_value = "http://127.0.0.1:8080/webhook")]
    pub url: String,
    /// The webhook secret. Prefer the environment variable: a command line
    /// is visible to other users of the machine.
    #[arg(long, env = "RIGGER_WEBHOOK_SECRET", hide_env_values = true)]
    pub secret: String,
    /// The event name; read from the body when not given.
    #[arg(long)]
    pub event: Option<String>,
    /// The delivery id; a fresh one when not given.
    #[arg(long)]
    pub delivery: Option<String>,
}

pub async fn run(cmd: WebhookCommand) -> anyhow::Result<()> {
    match cmd {
        WebhookCommand::Send(a) => send(a).await,
    }
}

/// The event a body is, by the keys only that event has.
fn guess_event(body: &serde_json::Value) -> Option<&'static str> {
    let has = |k: &str| body.get(k).is_some();
    if has("workflow_job") {
        Some("workflow_job")
    } else if has("zen") && has("hook_id") {
        Some("ping")
    } else if has("repositories_added") || has("repositories_removed") {
        Some("installation_repositories")
    } else if has("installation") && body.get("action").is_some() && !has("repository") {
        Some("installation")
    } else {
        None
    }
}

fn fresh_delivery_id() -> String {
    let mut b = [0u8; 16];
    // Not a secret: any unique id will do, and a clock fallback is unique enough.
    if getrandom::fill(&mut b).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        b = nanos.to_le_bytes();
    }
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

async fn send(a: SendArgs) -> anyhow::Result<()> {
    let body =
        std::fs::read(&a.file).with_context(|| format!("cannot read {}", a.file.display()))?;
    let json: serde_json::Value = serde_json::from_slice(&body)
        .with_context(|| format!("{} is not JSON", a.file.display()))?;
    let event = match (&a.event, guess_event(&json)) {
        (Some(e), _) => e.clone(),
        (None, Some(e)) => e.to_string(),
        (None, None) => bail!(
            "cannot tell which event {} is; say it with --event (e.g. --event workflow_job)",
            a.file.display()
        ),
    };
    let delivery = a.delivery.clone().unwrap_or_else(fresh_delivery_id);
    let signature = sign(&Secret::new(a.secret.clone()), &body);
    let resp = reqwest::Client::new()
        .post(&a.url)
        .header("content-type", "application/json")
        .header("user-agent", "GitHub-Hookshot/rigger-webhook-send")
        .header("x-github-event", &event)
        .header("x-github-delivery", &delivery)
        .header("x-hub-signature-256", signature)
        .body(body)
        .send()
        .await
        .with_context(|| format!("cannot reach {}", a.url))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    println!("{event} delivery {delivery} → {status}: {}", text.trim());
    if !status.is_success() {
        bail!("rigger refused the delivery ({status})");
    }
    Ok(())
}
