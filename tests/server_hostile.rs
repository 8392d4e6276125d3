//! rigger's HTTP server against hostile clients and payloads, over real TCP
//! on port 0, through the real router served by `server::listen`: bodies
//! that cannot be JSON, signed ones that cannot be read, ids and labels out
//! of range, slow-loris clients, idle and silent connections, trickled and
//! large bodies, and shutdown with a request in flight. Timeouts are short
//! so that no test waits long, and every wait for the server is a bounded
//! wait for something the server does, never a sleep.

mod harness;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rigger::engine::inbox::DurableInbox;
use rigger::engine::ports::ManualClock;
use rigger::github::webhook::sign;
use rigger::metrics::Metrics;
use rigger::server::OpsState;
use rigger::server::body::{BodyBudget, BodyLimits};
use rigger::server::listen::{ConnStats, ServeLimits, Server, connection_cap, raise_fd_limit};
use rigger::server::webhook::{
    MAX_BODY_BYTES, QUARANTINED, WebhookState, parse_delivery, webhook_router_with,
};
use rigger::settings::Secret;
use rigger::store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::{Instant, timeout};

const SECRET: &str = "s3cret";

const MIB: usize = 1024 * 1024;

struct Hostile {
    addr: SocketAddr,
    url: String,
    store: Store,
    metrics: Arc<Metrics>,
    conns: ConnStats,
    budget: BodyBudget,
    stop: Option<oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<()>,
}

/// Limits that never fire within a test unless it means them to.
fn patient() -> ServeLimits {
    ServeLimits {
        header_read_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
        max_connections: Some(256),
        max_header_bytes: 16 * 1024,
        shutdown_grace: Duration::from_secs(10),
    }
}

fn bodies() -> BodyLimits {
    BodyLimits {
        max_bytes: MAX_BODY_BYTES,
        read_timeout: Duration::from_secs(30),
        budget_wait: Duration::from_secs(30),
        budget: BodyBudget::new(32 * MIB, 4 * MIB),
    }
}

async fn start(name: &str, limits: ServeLimits, body: BodyLimits) -> Hostile {
    let dir = std::env::temp_dir().join(format!("rigger-hostile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.join("r.db").display()))
        .await
        .unwrap();
    let metrics = Arc::new(Metrics::new());
    let budget = body.budget.clone();
    let router = webhook_router_with(
        WebhookState {
            secrets: Arc::new(vec![Secret::new(SECRET)]),
            inbox: DurableInbox::start(store.clone()),
            clock: Arc::new(ManualClock::new(1_000)),
            metrics: metrics.clone(),
        },
        body,
    )
    .merge(rigger::server::ops_router(OpsState {
        store: store.clone(),
        metrics: metrics.clone(),
        health: rigger::engine::supervise::Health::new(),
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::new(listener, router, limits);
    let conns = server.stats();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Hostile {
        addr,
        url: format!("http://{addr}/webhook"),
        store,
        metrics,
        conns,
        budget,
        stop: Some(stop),
        served,
    }
}

impl Hostile {
    async fn post(&self, event: &str, delivery: &str, body: &[u8]) -> (u16, String) {
        let r = reqwest::Client::new()
            .post(&self.url)
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .header("x-hub-signature-256", sign(&Secret::new(SECRET), body))
            .body(body.to_vec())
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn stored(&self) -> Vec<rigger::store::Delivery> {
        self.store
            .claim_deliveries("w", 2_000, 60_000, 1_000)
            .await
            .unwrap()
    }

    fn counted(&self, event: &'static str, result: &'static str) -> f64 {
        self.metrics.value(
            "rigger_deliveries_total",
            &[("event", event), ("result", result)],
        )
    }
}

/// Wait (10 s at most) until `condition` holds: for what the server does on
/// its own time, such as accepting or closing connections.
async fn until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The head of a signed `POST /webhook` for `body`, as raw bytes.
fn head(delivery: &str, body: &[u8], length: usize) -> Vec<u8> {
    format!(
        "POST /webhook HTTP/1.1\r\nhost: rigger\r\nx-github-event: workflow_job\r\n\
         x-github-delivery: {delivery}\r\nx-hub-signature-256: {}\r\n\
         content-length: {length}\r\n\r\n",
        sign(&Secret::new(SECRET), body)
    )
    .into_bytes()
}

/// Read until the server closes the connection (10 s at most); how long it took.
async fn closed(stream: &mut TcpStream) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Err(_) => panic!("the server kept the connection open for 10 s"),
            Ok(Ok(0)) | Ok(Err(_)) => return (started.elapsed(), seen),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// Read one response's status line and headers (10 s at most).
async fn response_head(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("a response within 10 s")
            .unwrap();
        assert!(
            n > 0,
            "closed before answering: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

fn queued(id: i64) -> String {
    format!(
        r#"{{"action":"queued","workflow_job":{{"id":{id},"run_id":7,"run_attempt":1,"head_sha":"abc","labels":["cirun-gpu--7"],"conclusion":null,"runner_name":null}},"repository":{{"full_name":"acme/ml"}},"sender":{{"login":"octocat"}},"installation":{{"id":5}}}}"#
    )
}

/// `queued` padded with spaces (still JSON) to `size` bytes.
fn padded(id: i64, size: usize) -> Vec<u8> {
    let mut body = queued(id).into_bytes();
    body.resize(size, b' ');
    body
}

#[tokio::test]
async fn a_body_that_is_not_utf8_is_refused_and_not_stored() {
    let s = start("utf8", patient(), bodies()).await;
    let mut body = queued(42).into_bytes();
    body.extend_from_slice(b" \xff\xfe");
    let (code, text) = s.post("workflow_job", "u-1", &body).await;
    assert_eq!(code, 400);
    assert!(
        text.contains("not UTF-8") && text.contains("not stored"),
        "{text}"
    );
    // Even a lone byte cut out of a character.
    let (code, _) = s
        .post("workflow_job", "u-2", "{\"ü\":1}".as_bytes().split_at(3).0)
        .await;
    assert_eq!(code, 400);
    assert!(s.stored().await.is_empty(), "nothing is stored");
    assert_eq!(s.counted("workflow_job", "malformed"), 2.0);
}

#[tokio::test]
async fn a_signed_workflow_job_that_cannot_be_read_is_stored_and_answered_202() {
    let s = start("unreadable", patient(), bodies()).await;
    let long = "l".repeat(257);
    let many: Vec<String> = (0..101).map(|i| format!("\"l{i}\"")).collect();
    let cases: Vec<(String, &str)> = vec![
        (r#"{"action":"queued","workflow_job":"#.to_string(), "EOF"),
        (queued(0), "`workflow_job.id` is 0"),
        (queued(-7), "`workflow_job.id` is -7"),
        (queued(1 << 53), "`workflow_job.id`"),
        (
            queued(1).replace(r#""run_id":7"#, r#""run_id":-1"#),
            "`workflow_job.run_id`",
        ),
        (
            queued(1).replace(r#""run_attempt":1"#, r#""run_attempt":0"#),
            "`workflow_job.run_attempt`",
        ),
        (
            queued(1).replace(r#"{"id":5}"#, r#"{"id":0}"#),
            "`installation.id`",
        ),
        (
            queued(1).replace("cirun-gpu--7", &long),
            "`workflow_job.labels[0]` has 257 characters",
        ),
        (
            queued(1).replace(r#"["cirun-gpu--7"]"#, &format!("[{}]", many.join(","))),
            "more than 100 labels",
        ),
        (
            queued(1).replace("acme/ml", &format!("acme/{}", "m".repeat(101))),
            "`repository.full_name`",
        ),
    ];
    for (i, (body, names)) in cases.iter().enumerate() {
        let (code, text) = s
            .post("workflow_job", &format!("q-{i}"), body.as_bytes())
            .await;
        assert_eq!(code, 202, "{body}: {text}");
        assert!(text.starts_with(QUARANTINED), "{text}");
        assert!(text.contains(names), "{names} not in {text}");
        assert!(
            text.chars().count() < 600,
            "the answer quotes a bounded slice"
        );
    }
    let stored = s.stored().await;
    assert_eq!(stored.len(), cases.len(), "every one is kept");
    for d in &stored {
        let i: usize = d.delivery_id.strip_prefix("q-").unwrap().parse().unwrap();
        let why = parse_delivery(d).unwrap_err();
        assert!(why.contains(cases[i].1), "{why}");
        assert_eq!(d.action, None);
    }
    assert_eq!(s.counted("workflow_job", "unreadable"), cases.len() as f64);
    // An event rigger does not keep is not stored when unreadable: 400.
    // (`installation` events are kept now: the App losing access is acted on.)
    let (code, text) = s.post("ping", "i-1", b"{\"zen\":1}").await;
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("not stored"), "{text}");
    assert!(s.stored().await.is_empty());
}

/// Clients this process can afford to hold open, with the server's side of
/// each in the same process, up to `want`.
fn affordable_clients(want: usize) -> usize {
    let fds = usize::try_from(raise_fd_limit()).unwrap_or(usize::MAX);
    let n = want.min(fds.saturating_sub(256) / 2);
    if n < want {
        eprintln!("only {n} slow clients: the open file limit is {fds}");
    }
    n
}

/// `n` slow-loris clients, connected, each sending a request head one byte
/// at a time, round after round, until `stop` is set or the head is sent;
/// then holding their connections until `stop`.
async fn slow_loris(
    addr: SocketAddr,
    n: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(Some(TcpStream::connect(addr).await.unwrap()));
    }
    let head = b"POST /webhook HTTP/1.1\r\nhost: rigger\r\nx-github-event: workflow_job\r\n";
    tokio::spawn(async move {
        // A round every 20 ms: slow to each server connection, yet 55,000
        // bytes a second to the server in all.
        let mut round = tokio::time::interval(Duration::from_millis(20));
        for byte in head.iter() {
            round.tick().await;
            if stop.load(Ordering::Relaxed) {
                break;
            }
            for client in clients.iter_mut() {
                // A client the server closed is dropped; the rest go on.
                if let Some(stream) = client
                    && stream.write_all(&[*byte]).await.is_err()
                {
                    *client = None;
                }
            }
        }
        // Held open until the test is done with them.
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(clients);
    })
}

/// A real delivery sent while `n` slow clients hold connections: its 202,
/// and how long it took.
async fn a_delivery_among_slow_clients(s: &Hostile, n: usize) -> Duration {
    let stop = Arc::new(AtomicBool::new(false));
    let loris = slow_loris(s.addr, n, stop.clone()).await;
    until("every slow client is accepted", || {
        s.conns.accepted() >= n as u64
    })
    .await;
    let started = Instant::now();
    let (code, text) = s
        .post("workflow_job", "real-1", queued(42).as_bytes())
        .await;
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    loris.await.unwrap();
    assert_eq!((code, text.as_str()), (202, "accepted\n"));
    assert_eq!(s.stored().await.len(), 1);
    eprintln!(
        "{n} slow clients, at most {} connections: the delivery took {took:?}; {} open at most, {} evicted",
        s.conns.cap(),
        s.conns.peak(),
        s.conns.evicted()
    );
    // Well below GitHub's 10 s; loose for a loaded CI machine.
    assert!(took < Duration::from_secs(5), "the delivery took {took:?}");
    took
}

/// At a cap far below the number of slow clients, and with a header
/// timeout (30 s) too long to help, the cap holds and a real delivery still
/// gets its 202 at once: each new connection closes the one that has waited
/// longest for a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_clients_cannot_keep_a_delivery_out_at_the_connection_cap() {
    let n = affordable_clients(1_100);
    let cap = 64;
    let limits = ServeLimits {
        max_connections: Some(cap),
        ..patient()
    };
    let s = start("loris-cap", limits, bodies()).await;
    a_delivery_among_slow_clients(&s, n).await;
    assert!(s.conns.peak() <= cap, "{} open at once", s.conns.peak());
    assert!(
        s.conns.evicted() >= (n - cap) as u64,
        "{} evicted of {n}",
        s.conns.evicted()
    );
}

/// With the limits `rigger serve` uses, the soft file limit raised, 1,100
/// slow clients do not use up the process's files, and a delivery gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_default_limits_slow_loris_clients_leave_room_for_a_delivery() {
    let n = affordable_clients(1_100);
    let s = start("loris-default", ServeLimits::default(), bodies()).await;
    assert_eq!(s.conns.cap(), connection_cap(raise_fd_limit()));
    a_delivery_among_slow_clients(&s, n).await;
    assert!(s.conns.peak() <= s.conns.cap());
}

#[tokio::test]
async fn a_connection_that_sends_nothing_or_trickles_its_head_is_closed_at_the_header_timeout() {
    let s = start(
        "header-timeout",
        ServeLimits {
            header_read_timeout: Duration::from_millis(200),
            ..patient()
        },
        bodies(),
    )
    .await;
    let mut silent = TcpStream::connect(s.addr).await.unwrap();
    let (took, _) = closed(&mut silent).await;
    assert!(took >= Duration::from_millis(150), "closed after {took:?}");

    // A byte every 20 ms does not keep it open: the deadline is for the
    // whole head.
    let mut trickle = TcpStream::connect(s.addr).await.unwrap();
    let started = Instant::now();
    let head = b"POST /webhook HTTP/1.1\r\nhost: rigger\r\nx-github-event: workflow_job\r\n";
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for byte in head.iter() {
        tick.tick().await;
        if trickle.write_all(&[*byte]).await.is_err() {
            break;
        }
    }
    let (_, answer) = closed(&mut trickle).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "closed after {took:?}");
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    until("no connection is open", || s.conns.open() == 0).await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_at_the_idle_timeout() {
    let s = start(
        "idle",
        ServeLimits {
            idle_timeout: Duration::from_millis(200),
            ..patient()
        },
        bodies(),
    )
    .await;
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nhost: rigger\r\n\r\n")
        .await
        .unwrap();
    let head = response_head(&mut conn).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (took, _) = closed(&mut conn).await;
    assert!(took >= Duration::from_millis(150), "closed after {took:?}");
    until("it is counted", || s.conns.idle_closed() == 1).await;
    assert_eq!(s.conns.evicted(), 0);
}

/// Eight 3 MiB deliveries at once, under a budget of 8 MiB (7 for large
/// bodies): all are stored, and the server never held more than its budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_large_bodies_stay_within_the_body_budget() {
    let s = Arc::new(
        start(
            "budget",
            patient(),
            BodyLimits {
                budget: BodyBudget::new(8 * MIB, MIB),
                ..bodies()
            },
        )
        .await,
    );
    let mut sends = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        sends.push(tokio::spawn(async move {
            s.post(
                "workflow_job",
                &format!("big-{i}"),
                &padded(100 + i, 3 * MIB),
            )
            .await
        }));
    }
    for send in sends {
        let (code, text) = send.await.unwrap();
        assert_eq!(code, 202, "{text}");
    }
    assert_eq!(s.stored().await.len(), 8);
    let peak = s.budget.peak();
    assert!((3 * MIB..=7 * MIB).contains(&peak), "peak {peak}");
    assert_eq!(s.budget.in_flight(), 0, "every share is given back");
    assert_eq!(s.budget.refused(), 0);
}

/// A body takes its share of the budget before it is read: while one holds
/// most of it, a large body is told to come back (503, Retry-After), a
/// small one (GitHub's) still gets in.
#[tokio::test]
async fn a_large_body_that_finds_the_budget_taken_is_answered_503_with_retry_after() {
    let s = start(
        "budget-full",
        patient(),
        BodyLimits {
            budget_wait: Duration::from_millis(100),
            budget: BodyBudget::new(4 * MIB, MIB),
            ..bodies()
        },
    )
    .await;
    let held = padded(1, 3 * MIB);
    let mut holder = TcpStream::connect(s.addr).await.unwrap();
    holder
        .write_all(&head("hold-1", &held, held.len()))
        .await
        .unwrap();
    holder.write_all(&held[..1024]).await.unwrap();
    until("the holder's share is taken", || {
        s.budget.in_flight() >= 3 * MIB
    })
    .await;

    let big = padded(2, 2 * MIB);
    let r = reqwest::Client::new()
        .post(&s.url)
        .header("x-github-event", "workflow_job")
        .header("x-github-delivery", "big-1")
        .header("x-hub-signature-256", sign(&Secret::new(SECRET), &big))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    let (code, _) = s
        .post("workflow_job", "small-1", queued(3).as_bytes())
        .await;
    assert_eq!(code, 202, "the reserve lets GitHub's small deliveries in");

    holder.write_all(&held[1024..]).await.unwrap();
    let answer = response_head(&mut holder).await;
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    assert_eq!(s.budget.refused(), 1);
    assert_eq!(s.counted("unverified", "busy"), 1.0);
    until("every share is given back", || s.budget.in_flight() == 0).await;
}

#[tokio::test]
async fn a_trickled_body_is_answered_408_and_an_oversized_one_413_before_it_is_sent() {
    let s = start(
        "slow-body",
        patient(),
        BodyLimits {
            read_timeout: Duration::from_millis(300),
            ..bodies()
        },
    )
    .await;
    let body = queued(9).into_bytes();
    let mut slow = TcpStream::connect(s.addr).await.unwrap();
    slow.write_all(&head("slow-1", &body, body.len()))
        .await
        .unwrap();
    slow.write_all(&body[..10]).await.unwrap();
    let answer = response_head(&mut slow).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(s.counted("unverified", "timeout"), 1.0);
    until("its share is given back", || s.budget.in_flight() == 0).await;

    // Over GitHub's 25 MB: refused on its Content-Length alone.
    let mut big = TcpStream::connect(s.addr).await.unwrap();
    big.write_all(&head("big-1", b"", MAX_BODY_BYTES + 1))
        .await
        .unwrap();
    let answer = response_head(&mut big).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(
        s.budget.peak(),
        body.len(),
        "the oversized one took nothing"
    );
    assert!(s.stored().await.is_empty());
}

/// Shutdown stops accepting, closes a connection that never sent a request,
/// and lets the request in flight finish with its 202.
#[tokio::test]
async fn shutdown_finishes_the_request_in_flight_and_accepts_no_more() {
    let mut s = start("shutdown", patient(), bodies()).await;
    let body = queued(11).into_bytes();
    let mut unused = TcpStream::connect(s.addr).await.unwrap();
    let mut in_flight = TcpStream::connect(s.addr).await.unwrap();
    in_flight
        .write_all(&head("late-1", &body, body.len()))
        .await
        .unwrap();
    in_flight.write_all(&body[..10]).await.unwrap();
    until("its body is being read", || s.budget.in_flight() > 0).await;

    s.stop.take().unwrap().send(()).unwrap();
    let (took, _) = closed(&mut unused).await;
    assert!(
        took < Duration::from_secs(5),
        "the unused one closed after {took:?}"
    );
    let addr = s.addr;
    let refused = || async move { TcpStream::connect(addr).await.is_err() };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !refused().await {
        assert!(Instant::now() < deadline, "still accepting after shutdown");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    in_flight.write_all(&body[10..]).await.unwrap();
    let answer = response_head(&mut in_flight).await;
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    timeout(Duration::from_secs(10), &mut s.served)
        .await
        .expect("the server returns once its last request is done")
        .unwrap();
    assert_eq!(s.stored().await.len(), 1);
}

/// `/callback`, served by rigger as `App` builds it: a body past its bound is
/// 413, and an instance id no machine has is 401 without a look-up.
#[tokio::test]
async fn the_callback_route_bounds_its_body() {
    let story = harness::Story::begin("hostile-callback").await;
    let http = reqwest::Client::new();
    let post = |path: String, body: Vec<u8>| {
        http.post(format!("{}/callback/{path}?exit_code=1", story.app_url))
            .bearer_auth("not-a-token")
            .body(body)
            .send()
    };
    let big = post(
        "i-1".into(),
        vec![b'x'; rigger::server::MAX_CALLBACK_BYTES + 1],
    )
    .await
    .unwrap();
    assert_eq!(big.status(), 413);
    let long = post("i".repeat(500), b"FAILED: x".to_vec()).await.unwrap();
    assert_eq!(long.status(), 401);
    let unknown = post("i-1".into(), b"FAILED: x".to_vec()).await.unwrap();
    assert_eq!(unknown.status(), 401);
}
