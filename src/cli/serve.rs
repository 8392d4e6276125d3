//! `rigger serve`: run rigger — the webhook receiver, the engine's loops and
//! the reconciler — until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use crate::app::App;
use crate::engine::ports::SystemClock;
use crate::settings;
use crate::store::redact_url;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Settings file (every setting is documented in examples/rigger.toml).
    /// Without it, settings come from RIGGER_* environment variables alone;
    /// with it, the environment still wins.
    #[arg(long, env = "RIGGER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log as JSON lines (for log collectors) instead of text.
    #[arg(long)]
    pub log_json: bool,
}

fn init_logging(json: bool) {
    // RUST_LOG overrides; rigger's own lines at info by default.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Panics are logged as one bounded line through the log, not printed
/// whole to stderr: a panic's message may quote input from outside (a
/// label, a file), and rigger goes on after it (`engine::isolate`).
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let message = crate::engine::isolate::Panicked::from_payload(info.payload()).message;
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(at = %at, "panic: {message}");
    }));
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(args.log_json);
    log_panics();
    let settings = settings::load(args.config.as_deref(), &|k| std::env::var(k).ok())?;
    let database = redact_url(&settings.database_url);
    let controller = settings.controller_id.clone();
    let app = App::build(settings, Arc::new(SystemClock))
        .await
        .context("rigger could not start")?;
    tracing::info!(
        url = %app.url(),
        database = %database,
        controller = %controller,
        "rigger is serving: POST /webhook, GET /healthz /readyz /metrics"
    );
    app.run(shutdown_signal()).await?;
    tracing::info!("rigger stopped");
    Ok(())
}
