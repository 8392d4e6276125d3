//! Every parser of what a client or a service sends answers a hostile input
//! of at most 64 KB within a time and a memory bound, on a worker's stack
//! (the config files have their own suite, `config_hostile.rs`; settings
//! theirs, `settings_hostile.rs`): webhook deliveries as `/webhook` and the
//! inbox worker read them, Vast.ai's offer lists, and a machine's callback.

#[path = "support/bounded.rs"]
mod bounded;

use bounded::bounded;
use rigger::cloud::vast::client::parse_offers_bytes;
use rigger::engine::teardown::clean_report;
use rigger::github::webhook::{parse, sign, verify};
use rigger::server::webhook::parse_delivery;
use rigger::settings::Secret;
use rigger::store::Delivery;

const MAX_INPUT: usize = 64 * 1024;

/// JSON texts of at most 64 KB that a parser must answer without trouble.
fn hostile_json() -> Vec<(&'static str, String)> {
    let fill = |unit: &str, open: &str, close: &str| {
        let n = (MAX_INPUT - open.len() - close.len()) / unit.len();
        format!("{open}{}{close}", unit.repeat(n))
    };
    let deep = |o: &str, c: &str| {
        let n = MAX_INPUT / (o.len() + c.len());
        format!("{}{}", o.repeat(n), c.repeat(n))
    };
    let job = |labels: String| {
        format!(
            r#"{{"action":"queued","workflow_job":{{"id":1,"run_id":2,"run_attempt":1,"head_sha":"ab12","labels":{labels}}},"repository":{{"full_name":"o/r"}},"installation":{{"id":3}}}}"#
        )
    };
    let labels = |unit: &str| {
        let n = (MAX_INPUT - 300) / unit.len();
        format!("[{}\"x\"]", unit.repeat(n))
    };
    vec![
        ("deep arrays", deep("[", "]")),
        ("deep objects", deep("{\"a\":", "}")),
        ("unclosed arrays", "[".repeat(MAX_INPUT)),
        (
            "one long string",
            format!("\"{}\"", "ü".repeat(MAX_INPUT / 2 - 2)),
        ),
        (
            "many escapes",
            format!("\"{}\"", "\\u00fc".repeat(MAX_INPUT / 6 - 1)),
        ),
        ("many small numbers", fill("1,", "[", "1]")),
        ("huge numbers", fill("9", "[", "]")),
        ("many keys", fill("\"k\":1,", "{", "\"k\":1}")),
        ("many empty labels", job(labels("\"\","))),
        (
            "many long labels",
            job(labels(&format!("\"{}\",", "cirun-".repeat(40)))),
        ),
        (
            "labels of objects",
            job(fill("{},", "[", "{}]")[..MAX_INPUT - 300].to_string() + "]"),
        ),
        (
            "nested labels",
            job(deep("[", "]")[..MAX_INPUT - 300].to_string()),
        ),
        ("not json", "\u{0}\u{1}".repeat(MAX_INPUT / 2)),
    ]
    .into_iter()
    .map(|(n, t)| (n, t.chars().take(MAX_INPUT).collect()))
    .collect()
}

#[test]
fn webhook_deliveries_are_read_within_bounds() {
    let secret = Secret::new("hook-secret");
    for (name, body) in hostile_json() {
        assert!(body.len() <= MAX_INPUT + 4, "{name}: {} bytes", body.len());
        for event in [
            "workflow_job",
            "ping",
            "installation",
            "installation_repositories",
        ] {
            let (body, secret) = (body.clone(), secret.clone());
            let what = format!("{event} / {name}");
            bounded(&what, move || {
                let signature = sign(&secret, body.as_bytes());
                assert_eq!(verify(&[secret], Some(&signature), body.as_bytes()), Ok(()));
                let handler = parse(event, body.as_bytes())
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                let worker = parse_delivery(&Delivery {
                    delivery_id: "d".into(),
                    event: event.into(),
                    action: None,
                    body,
                    received_at: 0,
                    attempts: 1,
                    error: None,
                });
                // What the log and `rigger inbox` would show stays short.
                if let Err(e) = &handler {
                    assert!(e.chars().count() < 600, "{e}");
                }
                if let Err(e) = &worker {
                    assert!(e.chars().count() < 600, "{e}");
                }
            });
        }
    }
}

#[test]
fn vast_offer_lists_are_read_within_bounds() {
    let mut inputs = hostile_json();
    let offer = r#"{"id":1,"gpu_name":"RTX 4090","num_gpus":1,"dph_total":0.5,"gpu_ram":24564,"reliability2":0.99},"#;
    let n = (MAX_INPUT - 20) / offer.len();
    inputs.push((
        "many offers",
        format!("{{\"offers\":[{}{}]}}", offer.repeat(n), "{}"),
    ));
    inputs.push((
        "offers of nulls",
        format!(
            "{{\"offers\":[{}null]}}",
            "null,".repeat((MAX_INPUT - 20) / 5)
        ),
    ));
    for (name, body) in inputs {
        bounded(&format!("offers / {name}"), move || {
            let _ = parse_offers_bytes(body.as_bytes());
        });
    }
}

#[test]
fn a_machines_callback_report_is_cut_within_bounds() {
    let garbage: Vec<u8> = (0..MAX_INPUT).map(|i| (i * 7919 % 256) as u8).collect();
    let long_line = "█".repeat(MAX_INPUT / 3).into_bytes();
    let many_lines = "x\n".repeat(MAX_INPUT / 2).into_bytes();
    let escapes = "\u{1b}[31m\r".repeat(MAX_INPUT / 7).into_bytes();
    for (name, body) in [
        ("binary", garbage),
        ("one long line", long_line),
        ("many lines", many_lines),
        ("terminal escapes", escapes),
    ] {
        let report = bounded(&format!("callback / {name}"), move || clean_report(&body));
        assert!(report.len() <= 4_000, "{name}: {} bytes kept", report.len());
        assert!(!report.contains('\u{1b}'), "{name}: escapes kept");
    }
}
