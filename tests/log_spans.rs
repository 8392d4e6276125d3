//! One job's story can be read from rigger's log by its ids: every line
//! rigger writes while it handles a delivery, provisions a job, rents,
//! boots or destroys a machine, or runs a reconcile pass carries the ids of
//! that unit of work in its spans (`delivery{guid, event}`, `job{job_id, …}`,
//! `instance{instance_id, …}`, `reconcile_pass{pass}`,
//! `reconcile_action{rule, …}`), down to the HTTP clients' own lines. Its own
//! test binary, so that its log-capturing subscriber is the process's only
//! one.

mod harness;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use harness::Story;
use rigger::engine::state::JobState;
use rigger::github::webhook::sign;
use rigger::settings::Secret;
use serde_json::Value;

/// Every line of this process, as JSON, with the spans it was written in.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn capture() -> Buffer {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn,rigger=debug"))
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        buffer
    }

    /// rigger's own lines (not its simulators'), from the `from`th on.
    fn lines_from(&self, from: usize) -> Vec<Line> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .skip(from)
            .map(|l| Line(serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))))
            .filter(|l| {
                let target = l.0["target"].as_str().unwrap_or_default();
                target.starts_with("rigger") && !target.starts_with("rigger::sim")
            })
            .collect()
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().split(|&b| b == b'\n').count() - 1
    }
}

struct Line(Value);

impl Line {
    fn message(&self) -> &str {
        self.0["fields"]["message"].as_str().unwrap_or_default()
    }

    fn field(&self, name: &str) -> Option<&Value> {
        self.0["fields"].get(name)
    }

    /// The span named `name` this line was written in (the innermost).
    fn span(&self, name: &str) -> Option<&Value> {
        self.0["spans"]
            .as_array()?
            .iter()
            .rev()
            .find(|s| s["name"] == name)
    }

    /// Its fields and its spans' fields, the innermost winning: what an
    /// operator's grep sees on the line.
    fn context(&self) -> BTreeMap<String, Value> {
        let mut all = BTreeMap::new();
        for s in self.0["spans"].as_array().into_iter().flatten() {
            for (k, v) in s.as_object().into_iter().flatten() {
                all.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in self.0["fields"].as_object().into_iter().flatten() {
            all.insert(k.clone(), v.clone());
        }
        all
    }
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The one line matching `what`.
fn the<'a>(lines: &'a [Line], what: &str, pick: impl Fn(&Line) -> bool) -> &'a Line {
    let found: Vec<_> = lines.iter().filter(|l| pick(l)).collect();
    assert!(
        !found.is_empty(),
        "no line for {what} in:\n{}",
        lines
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    found[0]
}

/// The GUID of the delivery of `job`'s `action`, as GitHub sent it.
fn guid_of(s: &Story, job: i64, action: &str) -> String {
    let found: Vec<_> = s
        .github
        .delivery_attempts()
        .into_iter()
        .filter(|a| a.action.as_deref() == Some(action) && a.body["workflow_job"]["id"] == job)
        .map(|a| a.guid)
        .collect();
    assert_eq!(found.len(), 1, "one {action} delivery of {job}: {found:?}");
    found[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_story_reads_from_the_log_by_its_ids() {
    let log = Buffer::capture();
    let s = Story::begin("spans").await;
    // A signed delivery whose payload cannot be read: kept by the receiver
    // and set aside by the inbox worker, both in its span.
    let garbled = br#"{"action": "queued", "workflow_job": 5}"#;
    let answer = reqwest::Client::new()
        .post(format!("{}/webhook", s.app_url))
        .header("x-github-event", "workflow_job")
        .header("x-github-delivery", "spans-garbled-1")
        .header(
            "x-hub-signature-256",
            sign(&Secret::new("hook-secret"), garbled),
        )
        .header("content-type", "application/json")
        .body(garbled.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    // J ends by its webhook; K's `completed` is lost, and a reconcile pass
    // learns it from GitHub.
    let j = s.a_job_is_queued("cirun-gpu--901");
    let k = s.a_job_is_queued("cirun-gpu--902");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    let taken = s.machines_boot();
    assert_eq!(taken.len(), 2, "{taken:?}");
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(j).await, JobState::Running);
    assert_eq!(s.job_state(k).await, JobState::Running);
    s.clock.advance_ms(600_000);
    s.github.finish_job(j, "success");
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(j).await, JobState::Completed);
    let (j_machine, j_provider) = machine_of_job(&s, j).await;
    let (k_machine, _) = machine_of_job(&s, k).await;

    s.hold_webhooks();
    s.github.finish_job(k, "success");
    s.github.flush().await;
    s.clock.advance_ms(11 * 60_000);
    let before_pass = log.len();
    s.engine.reconcile_once().await.unwrap();
    let after_pass = log.len();
    assert_eq!(s.job_state(k).await, JobState::Completed);
    assert!(
        s.vast.live_instances().is_empty(),
        "both machines destroyed"
    );
    s.release_webhooks();
    s.nothing_leaked().await;

    let lines = log.lines_from(0);
    let (queued, in_progress, completed) = (
        guid_of(&s, j, "queued"),
        guid_of(&s, j, "in_progress"),
        guid_of(&s, j, "completed"),
    );

    // The garbled delivery, received and set aside.
    for (what, text) in [
        ("its receipt", "stored a delivery that cannot be read"),
        ("its quarantine", "a delivery is set aside"),
    ] {
        let line = the(&lines, what, |l| l.message().starts_with(text));
        assert!(
            line.span("delivery")
                .is_some_and(|d| d["guid"] == "spans-garbled-1" && d["event"] == "workflow_job"),
            "{line}"
        );
    }

    // Each of J's deliveries: its lines carry its GUID and the job.
    let delivery_of = |l: &Line, guid: &str| {
        l.span("delivery")
            .is_some_and(|d| d["guid"] == guid && d["event"] == "workflow_job")
    };
    let job_of = |l: &Line| l.span("job").is_some_and(|s| s["job_id"] == j);
    let line = the(&lines, "J queued", |l| {
        l.field("kind") == Some(&"queued".into()) && l.field("job_id") == Some(&j.into())
    });
    assert!(delivery_of(line, &queued) && job_of(line), "{line}");
    assert_eq!(line.span("job").unwrap()["repo"], "acme/ml", "{line}");
    let line = the(&lines, "J taken", |l| {
        l.message().starts_with("taken by") && l.field("job_id") == Some(&j.into())
    });
    assert!(delivery_of(line, &in_progress) && job_of(line), "{line}");
    for guid in [&queued, &in_progress, &completed] {
        for l in lines.iter().filter(|l| delivery_of(l, guid)) {
            assert!(job_of(l), "a line of J's delivery {guid} without J: {l}");
        }
    }

    // J's provisioning attempt, its machine's create (GitHub's own lines
    // too: the JIT runner's registration), and its machine's end.
    let machine_of =
        |l: &Line, id: &str| l.span("instance").is_some_and(|i| i["instance_id"] == id);
    let line = the(&lines, "J's JIT registration", |l| {
        l.message() == "GitHub answered"
            && l.field("path")
                .and_then(Value::as_str)
                .is_some_and(|p| p.ends_with("/generate-jitconfig"))
            && job_of(l)
    });
    assert!(machine_of(line, &j_machine), "{line}");
    assert!(line.span("job").unwrap()["attempt"].is_number(), "{line}");
    let line = the(&lines, "J's machine rented", |l| {
        l.field("kind") == Some(&"rented".into()) && l.field("job_id") == Some(&j.into())
    });
    assert!(job_of(line) && machine_of(line, &j_machine), "{line}");
    assert_eq!(
        line.span("instance").unwrap()["provider_id"],
        j_provider,
        "{line}"
    );
    let line = the(&lines, "J's machine destroyed", |l| {
        l.field("kind") == Some(&"destroyed".into())
            && l.field("instance_id") == Some(&j_machine.clone().into())
    });
    assert!(
        delivery_of(line, &completed) && machine_of(line, &j_machine),
        "{line}"
    );
    assert_eq!(line.span("instance").unwrap()["job_id"], j, "{line}");

    // Whatever is said about a machine says whose it is.
    for (machine, job) in [(&j_machine, j), (&k_machine, k)] {
        for l in &lines {
            let ctx = l.context();
            if ctx.get("instance_id") == Some(&machine.as_str().into()) {
                assert_eq!(ctx.get("job_id"), Some(&job.into()), "{l}");
            }
        }
    }

    // The pass that learnt K was over: every line of it carries the pass,
    // and K's machine's destroy its job, its machine and the rule.
    let pass: Vec<_> = log.lines_from(before_pass);
    let pass = &pass[..pass.len() - log.lines_from(after_pass).len()];
    assert!(!pass.is_empty());
    // (The server's own lines, a connection's end, are no part of it.)
    let server = |l: &Line| {
        l.0["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("rigger::server"))
    };
    for l in pass.iter().filter(|l| !server(l)) {
        assert!(
            l.span("reconcile_pass")
                .is_some_and(|p| p["pass"].is_number()),
            "a line of the pass without it: {l}"
        );
    }
    let line = the(pass, "K's machine destroyed", |l| {
        l.field("kind") == Some(&"destroyed".into())
            && l.field("instance_id") == Some(&k_machine.clone().into())
    });
    assert!(
        line.span("reconcile_action")
            .is_some_and(|a| a["rule"].is_string()),
        "{line}"
    );
    assert!(machine_of(line, &k_machine), "{line}");
    assert_eq!(line.span("instance").unwrap()["job_id"], k, "{line}");

    drop(s);

    // A machine that reports its end (a failed boot): what rigger does
    // about it, in the machine's span.
    let s = Story::calling_back("spans-callback").await;
    let job = s.a_job_is_queued("cirun-gpu--903");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    s.clock.advance_ms(30_000);
    s.vast.live_instances(); // steps the simulated Vast.ai: it boots
    let (machine, _) = machine_of_job(&s, job).await;
    let booted = s.booted.lock().unwrap().pop().expect("the machine booted");
    let env: BTreeMap<String, String> = booted.env.into_iter().collect();
    let token: String = (0..)
        .map_while(|i| env.get(&format!("RIGGER_CALLBACK_TOKEN_{i}")).cloned())
        .collect();
    let from = log.len();
    let answer = reqwest::Client::new()
        .post(format!("{}?exit_code=1", env["RIGGER_CALLBACK_URL"]))
        .bearer_auth(token)
        .header("content-type", "text/plain")
        .body("rigger-bootstrap: 12:00:00 FAILED: expected 1 x RTX 4090, found 0\n")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 204);
    let lines = log.lines_from(from);
    for kind in ["machine_failed", "destroyed"] {
        let line = the(&lines, kind, |l| l.field("kind") == Some(&kind.into()));
        let span = line.span("instance");
        assert!(
            span.is_some_and(|i| i["instance_id"] == machine.as_str() && i["job_id"] == job),
            "{line}"
        );
    }
    s.nothing_leaked().await;
}

/// The one machine rented for `job`: rigger's id and Vast.ai's.
async fn machine_of_job(s: &Story, job: i64) -> (String, String) {
    let rows = s.engine.store.instances_for_job(job).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    (rows[0].id.clone(), rows[0].provider_id.clone().unwrap())
}
