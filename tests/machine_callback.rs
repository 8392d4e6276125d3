//! The server side of `POST /callback/{instance}`: a machine's valid token
//! destroys it and its report is kept; a wrong token or an unknown machine is
//! 401 and destroys nothing; no token reaches a log line. Its own test
//! binary, so that its log-capturing subscriber is the process's only one.

mod harness;

use std::collections::BTreeMap;
use std::sync::Mutex;

use harness::Story;
use rigger::engine::state::JobState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_machines_own_token_destroys_it_and_no_token_is_logged() {
    // Every log line of this process, at trace level, into a file.
    let log_file = std::env::temp_dir().join(format!("rigger-callback-{}.log", std::process::id()));
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(Mutex::new(std::fs::File::create(&log_file).unwrap()))
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let s = Story::calling_back("callback").await;
    let job = s.a_job_is_queued("cirun-gpu--801");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    s.clock.advance_ms(30_000);
    let instance = s.vast.live_instances()[0].0;
    let booted = s.booted.lock().unwrap().pop().expect("the machine booted");
    let env: BTreeMap<String, String> = booted.env.into_iter().collect();
    let url = env["RIGGER_CALLBACK_URL"].clone();
    let token: String = (0..)
        .map_while(|i| env.get(&format!("RIGGER_CALLBACK_TOKEN_{i}")).cloned())
        .collect();
    assert!(token.len() >= 32, "a real token");
    let http = reqwest::Client::new();
    let post = |url: String, token: String| {
        http.post(format!("{url}?exit_code=1"))
            .bearer_auth(token)
            .header("content-type", "text/plain")
            .body("rigger-bootstrap: 12:00:00 FAILED: expected 1 x RTX 4090, found 0: \n")
            .send()
    };

    // Someone else's token, or none: refused, and the machine lives.
    let wrong = format!("{}x", &token[..token.len() - 1]);
    assert_eq!(
        post(url.clone(), wrong.clone()).await.unwrap().status(),
        401
    );
    let other = url.rsplit_once('/').unwrap().0.to_string() + "/i-no-such-machine";
    assert_eq!(post(other, token.clone()).await.unwrap().status(), 401);
    assert!(
        s.vast
            .live_instances()
            .iter()
            .any(|(id, _, _)| *id == instance),
        "a refused callback destroys nothing"
    );
    assert!(
        s.events(job)
            .await
            .iter()
            .all(|(k, _)| k != "machine_failed")
    );

    // Its own token: destroyed, the reason kept, the job re-queued.
    assert_eq!(
        post(url.clone(), token.clone()).await.unwrap().status(),
        204
    );
    assert!(s.vast.live_instances().is_empty());
    let events = s.events(job).await;
    assert!(
        events
            .iter()
            .any(|(k, m)| k == "machine_failed"
                && m.contains("FAILED: expected 1 x RTX 4090, found 0:")),
        "{events:?}"
    );
    assert_eq!(s.job_state(job).await, JobState::Queued);

    let logs = std::fs::read_to_string(&log_file).unwrap();
    assert!(logs.contains("machine_failed"), "the capture works: {logs}");
    assert!(!logs.contains(&token), "the token was logged");
    assert!(!logs.contains(&wrong), "a presented token was logged");
    s.nothing_leaked().await;
}
