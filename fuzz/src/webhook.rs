//! A webhook delivery, without a server: its signature checked with
//! `verify` (against GitHub's own `sign`, a stranger's and the input's
//! header), its body parsed as the handler parses it, and read back as the
//! inbox worker reads it once stored; then matched against runner
//! definitions as the engine matches a job.
//!
//! Input: the first line is the `X-GitHub-Event` header (`workflow_job`,
//! `ping`, …), the second a `X-Hub-Signature-256` to try, the rest the body.

use rigger::config::labels;
use rigger::engine::events::JobEvent;
use rigger::github::webhook::{Event, SignatureError, parse, sign, verify};
use rigger::server::webhook::parse_delivery;
use rigger::settings::Secret;
use rigger::store::Delivery;

use super::script::split_line;

/// The secrets of a rotation: deliveries signed with either verify.
fn secrets() -> [Secret; 2] {
    [
        Secret::new("old-secret"),
        Secret::new("fuzz-webhook-secret"),
    ]
}

pub fn check(data: &[u8]) {
    let (event, rest) = split_line(data);
    let (header, body) = split_line(rest);
    let event = String::from_utf8_lossy(event).into_owned();
    signatures(&String::from_utf8_lossy(header), body);
    let parsed = parse(&event, body);
    // `/webhook` refuses a body that is not UTF-8 (400) and stores nothing.
    let Ok(text) = std::str::from_utf8(body) else {
        return;
    };
    // Stored as sent, then parsed again by the worker.
    let stored = Delivery {
        delivery_id: "fuzz".into(),
        event: event.clone(),
        action: None,
        body: text.to_string(),
        received_at: 0,
        attempts: 0,
        error: None,
    };
    let worker = parse_delivery(&stored);
    match &parsed {
        Ok(Event::WorkflowJob(job)) => {
            assert_eq!(
                worker,
                Ok(Some(job.clone().into())),
                "the worker reads another job"
            );
            matched(job);
        }
        Ok(e) => assert_eq!(
            worker,
            Ok(e.access()
                .map(rigger::engine::installations::InboxEvent::Access)),
            "the worker finds other work in {event:?}"
        ),
        // Unreadable: stored and set aside (a kept event) or refused; either
        // way the worker must not act on it.
        Err(e) => assert!(
            worker.is_err(),
            "the body cannot be read ({e}) but the worker reads {worker:?}"
        ),
    }
}

/// GitHub's signature verifies with each secret of a rotation; a stranger's
/// never does; whatever the header, `verify` answers.
fn signatures(header: &str, body: &[u8]) {
    let secrets = secrets();
    for s in &secrets {
        assert_eq!(verify(&secrets, Some(&sign(s, body)), body), Ok(()));
    }
    let stranger = sign(&Secret::new("not-a-secret-of-ours"), body);
    assert_eq!(
        verify(&secrets, Some(&stranger), body),
        Err(SignatureError::Mismatch)
    );
    let _ = verify(&secrets, Some(header), body);
    let _ = verify(&secrets, None, body);
}

/// What the engine does next with a job's labels.
fn matched(job: &JobEvent) {
    let job_labels = job.job().labels.as_slice();
    let defs = super::labels::example_runners();
    let chosen = labels::select(defs, job_labels);
    if chosen.is_some() {
        assert!(labels::is_rigger_job(job_labels));
    }
    if let Some(def) = chosen {
        let _ = labels::registration_labels(&def.labels, job_labels, "linux", "x64");
    }
    let _ = format!("queued with labels {}", job_labels.join(", "));
}
