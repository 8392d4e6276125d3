//! Deliveries through `POST /webhook` over real HTTP into the durable inbox
//! (a fresh in-memory SQLite store each input), then the engine's inbox
//! worker, a provisioning pass and a reconciler pass over what was stored:
//! whatever arrives, every stored delivery is finished (kept with its error
//! if unreadable, never left to block the ones after it), the engine never
//! fails, and nothing is rented.
//!
//! Input: deliveries, each a `=== ` line then its body:
//!
//! ```text
//! === workflow_job d-1      <- event, delivery id (default: its number),
//! {"action": "queued", …}      then `unsigned` or `stranger` to sign it
//! === ping d-2 unsigned        without a secret or with someone else's
//! ```

use std::sync::{Arc, OnceLock};

use rigger::engine::inbox::DurableInbox;
use rigger::engine::ports::ManualClock;
use rigger::github::webhook::sign;
use rigger::metrics::Metrics;
use rigger::server::webhook::{WebhookState, parse_delivery, webhook_router};
use rigger::settings::Secret;

use super::runtime::{NOW_MS, block_on};
use super::script::{split_line, split_marked};
use super::stub;

/// Most deliveries one input sends (each is an HTTP request and a commit).
const MAX_DELIVERIES: usize = 16;

#[derive(Debug, Clone)]
struct Delivery {
    event: String,
    id: String,
    signing: Signing,
    body: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Signing {
    Ours,
    Unsigned,
    Stranger,
}

fn deliveries(data: &[u8]) -> Vec<Delivery> {
    split_marked(data)
        .into_iter()
        .skip(1)
        .take(MAX_DELIVERIES)
        .enumerate()
        .map(|(i, part)| {
            let (head, body) = split_line(part);
            let head = String::from_utf8_lossy(head);
            let mut words = head.split(' ');
            let event = words.next().unwrap_or_default().to_string();
            let id = words
                .next()
                .filter(|w| !w.is_empty())
                .map_or_else(|| format!("d-{i}"), str::to_string);
            let signing = match words.next() {
                Some("unsigned") => Signing::Unsigned,
                Some("stranger") => Signing::Stranger,
                _ => Signing::Ours,
            };
            Delivery {
                event,
                id,
                signing,
                body: body.to_vec(),
            }
        })
        .collect()
}

fn http() -> &'static reqwest::Client {
    static HTTP: OnceLock<reqwest::Client> = OnceLock::new();
    HTTP.get_or_init(reqwest::Client::new)
}

pub fn check(data: &[u8]) {
    let deliveries = deliveries(data);
    if deliveries.is_empty() {
        return;
    }
    block_on(run(deliveries));
}

async fn run(deliveries: Vec<Delivery>) {
    let clock = ManualClock::new(NOW_MS);
    let (engine, removed) = stub::engine(clock.clone()).await;
    let secret = Secret::new("fuzz-webhook-secret");
    let app = webhook_router(WebhookState {
        secrets: Arc::new(vec![secret.clone()]),
        inbox: DurableInbox::start(engine.store.clone()),
        clock: Arc::new(clock.clone()),
        metrics: Arc::new(Metrics::new()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let url = format!(
        "http://{}/webhook",
        listener.local_addr().expect("its address")
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    for d in &deliveries {
        let status = post(&url, &secret, d).await;
        let expected: &[u16] = match d.signing {
            Signing::Ours => &[200, 202, 400],
            _ => &[401],
        };
        assert!(
            expected.contains(&status),
            "{:?} delivery {:?} answered {status}",
            d.signing,
            d.id
        );
    }
    server.abort();
    let parse = Arc::new(parse_delivery);
    // Each pass claims at most 64: enough passes for all of them, and one more.
    for _ in 0..=deliveries.len() {
        let handled = engine
            .process_deliveries(parse.as_ref())
            .await
            .expect("the inbox worker handles whatever was stored");
        if handled == 0 {
            break;
        }
    }
    let pending = engine.store.pending_deliveries().await.expect("a count");
    assert_eq!(pending, 0, "deliveries left unfinished in the inbox");
    engine
        .provision_due()
        .await
        .expect("a provisioning pass over the stored jobs");
    clock.advance_ms(60_000);
    engine
        .reconcile_once()
        .await
        .expect("a reconciler pass over the stored jobs");
    assert!(
        removed.list().is_empty(),
        "nothing was rented, yet rigger removed {:?}",
        removed.list()
    );
    engine.store.close().await;
}

async fn post(url: &str, secret: &Secret, d: &Delivery) -> u16 {
    let mut request = http()
        .post(url)
        .header("content-type", "application/json")
        .body(d.body.clone());
    // A header value rigger could never be sent is not a delivery at all.
    if !d.event.is_empty() && d.event.bytes().all(|b| b.is_ascii_graphic()) {
        request = request.header("x-github-event", &d.event);
    }
    if d.id.bytes().all(|b| b.is_ascii_graphic()) {
        request = request.header("x-github-delivery", &d.id);
    }
    let signature = match d.signing {
        Signing::Ours => Some(sign(secret, &d.body)),
        Signing::Stranger => Some(sign(&Secret::new("a stranger's secret"), &d.body)),
        Signing::Unsigned => None,
    };
    if let Some(s) = signature {
        request = request.header("x-hub-signature-256", s);
    }
    let response = request.send().await.expect("rigger's server answers");
    response.status().as_u16()
}
