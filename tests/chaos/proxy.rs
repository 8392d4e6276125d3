//! A load balancer in front of rigger's replicas, for GitHub's webhooks:
//! round robin over the replicas that are up, the next one when one does
//! not answer, and 502 when none does (GitHub records the delivery as
//! failed, as it would behind a real balancer).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};

pub struct Balancer {
    pub url: String,
    down: Arc<Mutex<BTreeSet<u16>>>,
}

impl Balancer {
    pub async fn start(ports: Vec<u16>) -> Balancer {
        let down: Arc<Mutex<BTreeSet<u16>>> = Arc::default();
        let next = Arc::new(AtomicUsize::new(0));
        let http = reqwest::Client::new();
        let d = down.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let (down, next, http, ports) = (d.clone(), next.clone(), http.clone(), ports.clone());
            async move {
                let first = next.fetch_add(1, Ordering::Relaxed);
                for i in 0..ports.len() {
                    let port = ports[(first + i) % ports.len()];
                    if down.lock().unwrap().contains(&port) {
                        continue;
                    }
                    let mut r = http.post(format!("http://127.0.0.1:{port}/webhook"));
                    for (k, v) in &headers {
                        if k != "host" && k != "content-length" {
                            r = r.header(k, v);
                        }
                    }
                    if let Ok(answer) = r.body(body.clone()).send().await {
                        return StatusCode::from_u16(answer.status().as_u16())
                            .unwrap_or(StatusCode::BAD_GATEWAY);
                    }
                }
                StatusCode::BAD_GATEWAY
            }
        });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        Balancer { url, down }
    }

    /// Take a replica out of the rotation (it was killed) or put it back.
    pub fn set_down(&self, port: u16, down: bool) {
        let mut d = self.down.lock().unwrap();
        if down {
            d.insert(port);
        } else {
            d.remove(&port);
        }
    }
}
