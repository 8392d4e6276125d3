//! `App::build`: the one place that wires settings, store, clients, the
//! engine and the HTTP server together. `rigger serve`, `rigger demo` and the
//! end-to-end tests all start rigger through it.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;

use crate::cloud::vast::client::VastClient;
use crate::cloud::vast::limit::Limiter;
use crate::engine::Engine;
use crate::engine::inbox::DurableInbox;
use crate::engine::offers::{Diagnoses, Market};
use crate::engine::ports::Clock;
use crate::engine::supervise::Health;
use crate::github::app::AppAuth;
use crate::github::client::GithubClient;
use crate::github::http::Api;
use crate::metrics::Metrics;
use crate::server::webhook::{WebhookState, parse_delivery, webhook_router};
use crate::server::{OpsState, callback_router, ops_router};
use crate::settings::Settings;
use crate::store::{Store, redact_url};

/// The engine as rigger runs it: Vast.ai and GitHub over HTTP.
pub type RiggerEngine = Engine<Market<VastClient>, GithubClient>;

/// A built rigger, listening, its loops not yet started.
pub struct App {
    pub engine: Arc<RiggerEngine>,
    pub inbox: DurableInbox,
    /// What `/readyz` reports of the loops; rigger exits when it gives up.
    pub health: Arc<Health>,
    pub addr: SocketAddr,
    listener: tokio::net::TcpListener,
    router: axum::Router,
}

impl App {
    pub async fn build(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<App> {
        let settings = Arc::new(settings);
        let store = Store::connect(&settings.database_url)
            .await
            .with_context(|| {
                format!(
                    "cannot open the database {}",
                    redact_url(&settings.database_url)
                )
            })?;
        let metrics = Arc::new(Metrics::new());
        let auth = AppAuth::new(
            settings.github.app_id,
            &settings.github.private_key,
            Api::new(&settings.github.api_url, clock.clone())
                .with_metrics(metrics.clone())
                .with_pace(crate::github::pace::Caps::share_of(
                    settings.github.pace_percent,
                    settings.github.content_per_minute,
                    settings.github.content_per_hour,
                )),
            clock.clone(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let github = GithubClient::with_runners(
            Arc::new(auth),
            crate::github::client::RunnerPlacement {
                scope: settings.github.runner_scope,
                group_id: settings.github.runner_group_id,
            },
        );
        let vast = Market {
            // One limiter for the process, on the engine's clock.
            provider: VastClient::new(&settings.vast.api_url, settings.vast.api_key.clone())
                .with_limiter(
                    Limiter::new(settings.vast.rate_limits.clone(), clock.clone()),
                    0,
                ),
            max_lifetime: Some(settings.timeouts.max_lifetime),
            diagnoses: Diagnoses::new(clock.clone()),
        };
        let engine = Arc::new(Engine::new(
            store.clone(),
            vast,
            github,
            settings.clone(),
            clock.clone(),
            metrics.clone(),
        ));
        let inbox = DurableInbox::start(store.clone());
        let health = Health::new();
        {
            let inbox = inbox.clone();
            health.watch("inbox committer", move || inbox.is_open());
        }
        let router = webhook_router(WebhookState {
            secrets: Arc::new(settings.github.webhook_secrets.clone()),
            inbox: inbox.clone(),
            clock,
            metrics: metrics.clone(),
        })
        .merge(ops_router(OpsState {
            store,
            metrics,
            health: health.clone(),
        }))
        .merge(callback_router(engine.clone()));
        let listener = tokio::net::TcpListener::bind(&settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let addr = listener.local_addr()?;
        Ok(App {
            engine,
            inbox,
            health,
            addr,
            listener,
            router,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serve HTTP only; the caller drives the engine (tests step it with
    /// `process_deliveries`, `provision_due` and `reconcile_once`).
    pub fn serve_http(self) -> (Arc<RiggerEngine>, DurableInbox) {
        let App {
            engine,
            inbox,
            listener,
            router,
            ..
        } = self;
        let server = crate::server::listen::Server::new(listener, router, Default::default());
        tokio::spawn(server.run(std::future::pending()));
        (engine, inbox)
    }

    /// Serve HTTP and run the engine's loops until `stop` resolves; then stop
    /// accepting, let in-flight work finish, and return. Machines are never
    /// destroyed because rigger stops: the reconciler picks them up again.
    /// An error when rigger gave up on a loop (see `engine::supervise`): the
    /// process should exit non-zero.
    pub async fn run(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let App {
            engine,
            inbox,
            health,
            listener,
            router,
            ..
        } = self;
        let (tx, rx) = watch::channel(false);
        let loops = tokio::spawn(engine.clone().run(
            Arc::new(parse_delivery),
            inbox.committed.clone(),
            rx,
            health.clone(),
        ));
        let mut given_up = health.given_up();
        let fatal: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
        let fatal_in = fatal.clone();
        let server = crate::server::listen::Server::new(listener, router, Default::default());
        server
            .run(async move {
                tokio::select! {
                    _ = stop => {}
                    why = given_up.wait_for(|w| w.is_some()) => {
                        if let Ok(why) = why {
                            *fatal_in.lock().unwrap_or_else(|e| e.into_inner()) = why.clone();
                        }
                    }
                }
                tracing::info!("stopping: no new deliveries; finishing what is in flight");
                let _ = tx.send(true);
            })
            .await;
        let _ = loops.await;
        engine.store.close().await;
        if let Some(why) = fatal.lock().unwrap_or_else(|e| e.into_inner()).take() {
            anyhow::bail!("{why}");
        }
        Ok(())
    }
}
