//! The store, run against SQLite and (when `RIGGER_TEST_POSTGRES_URL` is set,
//! as `.ci/run` does) PostgreSQL: the same suite on both.

use rigger::engine::estimate::PastRun;
use rigger::engine::state::{InstanceState, JobState};
use rigger::store::{
    CostEntry, Inserted, InstancePatch, JobPatch, NewDelivery, NewInstance, NewJob, Store,
    StoreError,
};

/// A fresh store per database for one test.
async fn stores(test: &str) -> Vec<Store> {
    let dir = std::env::temp_dir().join(format!("rigger-store-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = format!("sqlite://{}", dir.join("rigger.db").display());
    let mut out = vec![Store::connect(&sqlite).await.expect("sqlite store")];
    match std::env::var("RIGGER_TEST_POSTGRES_URL") {
        Ok(url) => {
            let schema = format!("rigger_test_{test}");
            drop_schema(&url, &schema).await;
            out.push(
                Store::connect_in_schema(&url, Some(&schema))
                    .await
                    .expect("postgres store"),
            );
        }
        Err(_) => {
            eprintln!("PostgreSQL skipped: RIGGER_TEST_POSTGRES_URL is not set (.ci/run sets it)")
        }
    }
    out
}

async fn drop_schema(url: &str, schema: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.expect("postgres");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
}

fn delivery(id: &str, at: i64) -> NewDelivery {
    NewDelivery {
        delivery_id: id.to_string(),
        event: "workflow_job".into(),
        action: Some("queued".into()),
        body: format!("{{\"n\":\"{id}\"}}"),
        received_at: at,
    }
}

fn job(id: i64) -> NewJob {
    NewJob {
        job_id: id,
        run_id: 100,
        run_attempt: 1,
        repo: "octo/ml".into(),
        installation_id: 7,
        labels: vec!["self-hosted".into(), format!("cirun-gpu--{id}")],
        head_sha: "abc".into(),
        is_fork: false,
        actor: "octocat".into(),
        queued_at: 1_000 + id,
    }
}

fn instance(id: &str, job_id: i64) -> NewInstance {
    NewInstance {
        id: id.to_string(),
        job_id,
        label: format!("rigger:test:{job_id}:{id}"),
        runner_name: format!("rigger-{id}"),
        offer_id: Some(42),
        gpu_name: Some("RTX 4090".into()),
        num_gpus: Some(1),
        dph: Some(0.5),
        location: Some("Texas, US".into()),
        expires_at: 1_000_000,
        callback_hash: None,
        estimated_hours: Some(1.25),
        estimated_cost: Some(0.625),
    }
}

#[tokio::test]
async fn migrations_are_applied_once() {
    let dir = std::env::temp_dir().join(format!("rigger-store-mig-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("new/../rigger.db").display());
    let first = Store::connect(&url).await.unwrap();
    first.insert_job(&job(1)).await.unwrap();
    first.close().await;
    let again = Store::connect(&url).await.unwrap();
    assert!(
        again.job(1).await.unwrap().is_some(),
        "data survives a restart"
    );
    again.ping().await.unwrap();
}

#[tokio::test]
async fn unsupported_urls_say_what_to_use_and_hide_passwords() {
    let err = Store::connect("mysql://root:hunter2@db/x")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("sqlite://PATH or postgres://"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(matches!(err, StoreError::UnsupportedUrl(_)));
}

#[tokio::test]
async fn deliveries_are_unique_and_leased() {
    for s in stores("deliveries").await {
        assert_eq!(
            s.insert_delivery(&delivery("a", 1)).await.unwrap(),
            Inserted::New
        );
        assert_eq!(
            s.insert_delivery(&delivery("a", 2)).await.unwrap(),
            Inserted::Duplicate
        );
        let batch = s
            .insert_deliveries(&[delivery("b", 2), delivery("a", 3), delivery("c", 3)])
            .await
            .unwrap();
        assert_eq!(
            batch,
            vec![Inserted::New, Inserted::Duplicate, Inserted::New]
        );
        assert_eq!(s.pending_deliveries().await.unwrap(), 3);

        let got = s.claim_deliveries("w1", 10, 1_000, 2).await.unwrap();
        let ids: Vec<_> = got.iter().map(|d| d.delivery_id.as_str()).collect();
        assert_eq!(ids, vec!["a", "b"], "oldest first");
        assert_eq!(got[0].attempts, 1);
        assert_eq!(got[0].body, "{\"n\":\"a\"}");

        // While leased, another worker gets only the rest.
        let other = s.claim_deliveries("w2", 20, 1_000, 10).await.unwrap();
        assert_eq!(other.len(), 1);
        assert_eq!(other[0].delivery_id, "c");

        // Only the lease holder finishes.
        assert!(!s.finish_delivery("a", "w2", 30, None).await.unwrap());
        assert!(s.finish_delivery("a", "w1", 30, None).await.unwrap());
        assert!(
            !s.finish_delivery("a", "w1", 31, None).await.unwrap(),
            "once"
        );

        // w1 died holding `b` (leased until 1010), w2 holding `c` (until
        // 1020): once the leases run out, both are claimable again.
        assert!(
            s.claim_deliveries("w3", 500, 1_000, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let retry = s.claim_deliveries("w3", 1_020, 1_000, 10).await.unwrap();
        let ids: Vec<_> = retry.iter().map(|d| d.delivery_id.as_str()).collect();
        assert_eq!(ids, vec!["b", "c"]);
        assert_eq!(retry[0].attempts, 2);
        assert!(
            s.finish_delivery("b", "w3", 1_020, Some("bad payload"))
                .await
                .unwrap()
        );
        assert_eq!(s.pending_deliveries().await.unwrap(), 1);
    }
}

#[tokio::test]
async fn suspects_are_claimed_alone_and_quarantine_holds_until_released() {
    for s in stores("quarantine").await {
        s.insert_deliveries(&[delivery("x", 1), delivery("y", 2), delivery("z", 3)])
            .await
            .unwrap();
        // Nothing was tried yet: no suspect.
        assert!(
            s.claim_suspect_delivery("w", 10, 100)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(s.claim_deliveries("w", 10, 100, 10).await.unwrap().len(), 3);
        // Their worker died: after the lease, each comes back alone.
        let x = s
            .claim_suspect_delivery("w2", 200, 100)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((x.delivery_id.as_str(), x.attempts), ("x", 2));
        assert_eq!(x.error, None);
        let y = s
            .claim_suspect_delivery("w2", 200, 100)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(y.delivery_id, "y");
        // A failure is kept and the delivery given back for later.
        assert!(
            s.retry_delivery("x", "w2", "store said no", 1_000)
                .await
                .unwrap()
        );
        assert!(
            !s.retry_delivery("x", "w2", "twice", 1_000).await.unwrap(),
            "no longer leased"
        );
        assert!(
            s.claim_suspect_delivery("w3", 999, 100)
                .await
                .unwrap()
                .map(|d| d.delivery_id)
                != Some("x".into())
        );
        let again = s.claim_deliveries("w3", 1_000, 100, 10).await.unwrap();
        let x = again
            .iter()
            .find(|d| d.delivery_id == "x")
            .expect("x again");
        assert_eq!(x.error.as_deref(), Some("store said no"));
        // Set aside: never claimed, not pending, listed with why.
        assert!(
            s.quarantine_delivery("x", "w3", 1_001, "failed 3 times")
                .await
                .unwrap()
        );
        assert!(
            s.claim_deliveries("w4", 99_999, 100, 10)
                .await
                .unwrap()
                .iter()
                .all(|d| d.delivery_id != "x")
        );
        assert!(
            s.claim_suspect_delivery("w4", 999_999, 100)
                .await
                .unwrap()
                .is_none_or(|d| d.delivery_id != "x")
        );
        let listed = s.quarantined_deliveries().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].delivery_id, "x");
        assert_eq!(listed[0].error, "failed 3 times");
        assert_eq!(listed[0].quarantined_at, 1_001);
        assert_eq!(s.quarantined_count().await.unwrap(), 1);
        // Released, by name or all: back in the queue, attempts afresh.
        assert_eq!(s.release_quarantined(Some("nope")).await.unwrap(), 0);
        assert_eq!(s.release_quarantined(Some("x")).await.unwrap(), 1);
        assert_eq!(s.quarantined_count().await.unwrap(), 0);
        let x = s
            .claim_deliveries("w5", 9_999_999, 100, 10)
            .await
            .unwrap()
            .into_iter()
            .find(|d| d.delivery_id == "x")
            .expect("x is claimable again");
        assert_eq!(x.attempts, 1);
        assert!(s.quarantine_delivery("x", "w5", 1, "again").await.unwrap());
        assert_eq!(s.release_quarantined(None).await.unwrap(), 1);
    }
}

#[tokio::test]
async fn concurrent_claims_never_share_a_delivery() {
    for s in stores("concurrent").await {
        let all: Vec<_> = (0..40).map(|i| delivery(&format!("d{i:02}"), i)).collect();
        s.insert_deliveries(&all).await.unwrap();
        let (a, b) = tokio::join!(
            s.claim_deliveries("a", 100, 10_000, 25),
            s.claim_deliveries("b", 100, 10_000, 25)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.len() + b.len(), 40);
        for d in &a {
            assert!(b.iter().all(|e| e.delivery_id != d.delivery_id));
        }
    }
}

#[tokio::test]
async fn jobs_move_by_compare_and_set() {
    for s in stores("jobs").await {
        assert_eq!(s.insert_job(&job(1)).await.unwrap(), Inserted::New);
        assert_eq!(s.insert_job(&job(1)).await.unwrap(), Inserted::Duplicate);
        let j = s.job(1).await.unwrap().unwrap();
        assert_eq!(j.state, JobState::Queued);
        assert_eq!(j.labels, vec!["self-hosted", "cirun-gpu--1"]);
        assert!(!j.is_fork);

        let patch = JobPatch {
            runner_def: Some("gpu".into()),
            count_attempt: true,
            ..Default::default()
        };
        assert!(
            s.transition_job(1, JobState::Queued, JobState::Provisioning, 50, patch)
                .await
                .unwrap()
        );
        // A second worker with a stale view loses.
        assert!(
            !s.transition_job(
                1,
                JobState::Queued,
                JobState::Provisioning,
                51,
                JobPatch::default()
            )
            .await
            .unwrap()
        );
        // Back to queued with a backoff and a diagnosis.
        let patch = JobPatch {
            reason: Some(Some("0 offers: none in US".into())),
            next_attempt_at: Some(Some(5_000)),
            ..Default::default()
        };
        assert!(
            s.transition_job(1, JobState::Provisioning, JobState::Queued, 60, patch)
                .await
                .unwrap()
        );
        let j = s.job(1).await.unwrap().unwrap();
        assert_eq!(j.state, JobState::Queued);
        assert_eq!(j.runner_def.as_deref(), Some("gpu"));
        assert_eq!(j.attempts, 1);
        assert_eq!(j.reason.as_deref(), Some("0 offers: none in US"));
        assert_eq!(j.next_attempt_at, Some(5_000));
        assert_eq!(j.updated_at, 60);

        // The table forbids going backwards from a terminal state.
        let err = s
            .transition_job(
                1,
                JobState::Completed,
                JobState::Queued,
                70,
                JobPatch::default(),
            )
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot go from completed to queued")
        );

        // Crash recovery can force.
        assert!(
            s.force_job_state(1, JobState::Failed, 80, "recovered")
                .await
                .unwrap()
        );
        assert_eq!(s.job(1).await.unwrap().unwrap().state, JobState::Failed);
    }
}

/// What a webhook does to a job it finds in any state: one statement, so a
/// worker moving the job at the same moment cannot make the webhook's
/// change fail (as a read, then a compare-and-set on what was read, could).
#[tokio::test]
async fn a_webhook_moves_a_job_from_whatever_state_it_is_in() {
    for s in stores("advance").await {
        let ended = |named| move |st: JobState| st.ended(named);
        // Queued, never taken: cancelled.
        s.insert_job(&job(1)).await.unwrap();
        let row = s.advance_job(1, ended(false), 10, JobPatch::default());
        assert_eq!(row.await.unwrap().unwrap().state, JobState::Cancelled);
        assert!(
            s.advance_job(1, ended(false), 11, JobPatch::default())
                .await
                .unwrap()
                .is_none(),
            "an ended job stays as it is"
        );

        // Provisioning (its worker mid-rent) when the job ends: cancelled;
        // back in queued (its worker retried) it would be the same.
        s.insert_job(&job(2)).await.unwrap();
        let provisioning = JobPatch {
            count_attempt: true,
            ..Default::default()
        };
        s.transition_job(
            2,
            JobState::Queued,
            JobState::Provisioning,
            20,
            provisioning,
        )
        .await
        .unwrap();
        let patch = JobPatch {
            conclusion: Some("cancelled".into()),
            ..Default::default()
        };
        let row = s
            .advance_job(2, ended(false), 21, patch)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.state, JobState::Cancelled);
        assert_eq!(row.conclusion.as_deref(), Some("cancelled"));
        assert_eq!(
            row.attempts, 1,
            "counted by the store, not read and rewritten"
        );
        assert_eq!(row.updated_at, 21);

        // Taken while waiting for its runner, then completed.
        s.insert_job(&job(3)).await.unwrap();
        s.transition_job(
            3,
            JobState::Queued,
            JobState::Provisioning,
            30,
            JobPatch::default(),
        )
        .await
        .unwrap();
        s.transition_job(
            3,
            JobState::Provisioning,
            JobState::WaitingForRunner,
            31,
            JobPatch::default(),
        )
        .await
        .unwrap();
        let taken = JobPatch {
            runner_name: Some("rigger-x".into()),
            started_at: Some(32),
            ..Default::default()
        };
        let row = s
            .advance_job(3, JobState::taken, 32, taken)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.state, JobState::Running);
        assert_eq!(row.started_at, Some(32));
        assert!(
            s.advance_job(3, JobState::taken, 33, JobPatch::default())
                .await
                .unwrap()
                .is_none()
        );
        let row = s.advance_job(3, ended(false), 34, JobPatch::default());
        assert_eq!(row.await.unwrap().unwrap().state, JobState::Completed);
        // An unknown job: nothing.
        assert!(
            s.advance_job(99, ended(true), 35, JobPatch::default())
                .await
                .unwrap()
                .is_none()
        );
    }
}

/// Writes that must land together: all of them, or none.
#[tokio::test]
async fn writes_in_a_transaction_land_together_or_not_at_all() {
    for s in stores("tx").await {
        s.insert_delivery(&delivery("d1", 1)).await.unwrap();
        s.claim_deliveries("w", 2, 1_000, 10).await.unwrap();

        // Dropped before its commit: nothing was written.
        {
            let mut tx = s.begin().await.unwrap();
            assert_eq!(tx.insert_job(&job(1)).await.unwrap(), Inserted::New);
            tx.log_event(3, Some(1), None, "queued", "q").await.unwrap();
            assert!(tx.finish_delivery("d1", "w", 3, None).await.unwrap());
        }
        assert!(s.job(1).await.unwrap().is_none());
        assert!(s.job_events(1).await.unwrap().is_empty());
        assert_eq!(s.pending_deliveries().await.unwrap(), 1);

        // Committed: all of it.
        let mut tx = s.begin().await.unwrap();
        assert_eq!(tx.insert_job(&job(1)).await.unwrap(), Inserted::New);
        tx.log_event(4, Some(1), None, "queued", "q").await.unwrap();
        assert!(tx.finish_delivery("d1", "w", 4, None).await.unwrap());
        assert!(
            tx.transition_job(
                1,
                JobState::Queued,
                JobState::Provisioning,
                4,
                JobPatch::default()
            )
            .await
            .unwrap()
        );
        tx.commit().await.unwrap();
        assert_eq!(
            s.job(1).await.unwrap().unwrap().state,
            JobState::Provisioning
        );
        assert_eq!(s.job_events(1).await.unwrap().len(), 1);
        assert_eq!(s.pending_deliveries().await.unwrap(), 0);

        // The transition table holds inside a transaction too.
        let mut tx = s.begin().await.unwrap();
        let err = tx
            .transition_instance(
                "i",
                InstanceState::Destroyed,
                InstanceState::Busy,
                5,
                InstancePatch::default(),
            )
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("cannot go from destroyed to busy"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn due_jobs_are_claimed_once_and_after_their_backoff() {
    for s in stores("due").await {
        for id in 1..=3 {
            s.insert_job(&job(id)).await.unwrap();
        }
        s.transition_job(
            2,
            JobState::Queued,
            JobState::Provisioning,
            0,
            JobPatch::default(),
        )
        .await
        .unwrap();
        s.transition_job(
            2,
            JobState::Provisioning,
            JobState::Queued,
            0,
            JobPatch {
                next_attempt_at: Some(Some(10_000)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let got: Vec<i64> = s
            .claim_due_jobs("w1", 1_000, 30_000, 10)
            .await
            .unwrap()
            .iter()
            .map(|j| j.job_id)
            .collect();
        assert_eq!(got, vec![1, 3], "job 2 waits for its backoff");
        // Claimed is provisioning, with an attempt counted.
        let one = s.job(1).await.unwrap().unwrap();
        assert_eq!(one.state, JobState::Provisioning);
        assert_eq!(one.attempts, 1);
        assert_eq!(one.updated_at, 1_000);
        assert!(
            s.claim_due_jobs("w2", 2_000, 30_000, 10)
                .await
                .unwrap()
                .is_empty(),
            "no job is claimed twice"
        );
        // Its worker gives job 1 back to wait; job 2's backoff passes.
        let back = JobPatch {
            next_attempt_at: Some(Some(15_000)),
            ..Default::default()
        };
        s.transition_job(1, JobState::Provisioning, JobState::Queued, 3_000, back)
            .await
            .unwrap();
        let got: Vec<i64> = s
            .claim_due_jobs("w2", 20_000, 30_000, 10)
            .await
            .unwrap()
            .iter()
            .map(|j| j.job_id)
            .collect();
        assert_eq!(got, vec![1, 2]);
        assert_eq!(s.job(1).await.unwrap().unwrap().attempts, 2);
        assert!(s.jobs_in(&[JobState::Queued]).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn instances_move_by_compare_and_set() {
    for s in stores("instances").await {
        s.insert_job(&job(9)).await.unwrap();
        s.insert_instance(&instance("i1", 9), 100).await.unwrap();
        let i = s.instance("i1").await.unwrap().unwrap();
        assert_eq!(i.state, InstanceState::Requested);
        assert_eq!(i.dph, Some(0.5));
        // The rent-time estimate is the row's, not an event's prose.
        assert_eq!(
            (i.estimated_hours, i.estimated_cost),
            (Some(1.25), Some(0.625))
        );
        assert_eq!(
            s.instance_by_runner_name("rigger-i1")
                .await
                .unwrap()
                .unwrap()
                .id,
            "i1"
        );
        assert_eq!(
            s.instance_by_label("rigger:test:9:i1")
                .await
                .unwrap()
                .unwrap()
                .id,
            "i1"
        );

        let ok = s
            .transition_instance(
                "i1",
                InstanceState::Requested,
                InstanceState::Creating,
                110,
                InstancePatch {
                    create_called_at: Some(110),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(ok);
        let ok = s
            .transition_instance(
                "i1",
                InstanceState::Creating,
                InstanceState::Booting,
                120,
                InstancePatch {
                    provider_id: Some("7835610".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(ok);
        // A stale writer loses the race.
        assert!(
            !s.transition_instance(
                "i1",
                InstanceState::Creating,
                InstanceState::Failed,
                121,
                InstancePatch::default()
            )
            .await
            .unwrap()
        );
        let i = s.instance("i1").await.unwrap().unwrap();
        assert_eq!(i.state, InstanceState::Booting);
        assert_eq!(i.provider_id.as_deref(), Some("7835610"));
        assert_eq!(i.create_called_at, Some(110));
        assert_eq!(s.live_instances().await.unwrap().len(), 1);

        for (from, to) in [
            (InstanceState::Booting, InstanceState::Destroying),
            (InstanceState::Destroying, InstanceState::Destroyed),
        ] {
            assert!(
                s.transition_instance("i1", from, to, 200, InstancePatch::default())
                    .await
                    .unwrap()
            );
        }
        assert!(s.live_instances().await.unwrap().is_empty());
        let err = s
            .transition_instance(
                "i1",
                InstanceState::Destroyed,
                InstanceState::Booting,
                300,
                InstancePatch::default(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Transition(_)));
        assert_eq!(s.instances_for_job(9).await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn the_ledger_counts_each_instance_once() {
    for s in stores("ledger").await {
        let entry = |id: &str, repo: &str, seconds: i64, at: i64| CostEntry {
            instance_id: id.into(),
            job_id: 1,
            repo: repo.into(),
            runner_def: "gpu".into(),
            gpu_name: "RTX 4090".into(),
            dph: 0.36,
            seconds,
            closed_at: at,
        };
        assert_eq!(
            s.record_cost(&entry("a", "octo/ml", 3600, 10))
                .await
                .unwrap(),
            Inserted::New
        );
        assert_eq!(
            s.record_cost(&entry("a", "octo/ml", 3600, 10))
                .await
                .unwrap(),
            Inserted::Duplicate
        );
        s.record_cost(&entry("b", "octo/ml", 1800, 20))
            .await
            .unwrap();
        s.record_cost(&entry("c", "octo/web", 600, 30))
            .await
            .unwrap();
        let total = s.spend_since(0).await.unwrap();
        assert!((total - (0.36 + 0.18 + 0.06)).abs() < 1e-9, "{total}");
        assert!((s.spend_since(25).await.unwrap() - 0.06).abs() < 1e-9);
        let by = s.spend_by_repo(0).await.unwrap();
        assert_eq!(by[0].repo, "octo/ml");
        assert_eq!(by[0].instances, 2);
        assert_eq!(by[0].seconds, 5400);
        assert_eq!(by[1].repo, "octo/web");
    }
}

#[tokio::test]
async fn events_are_kept_in_order() {
    for s in stores("events").await {
        s.log_event(1, Some(5), None, "queued", "job queued")
            .await
            .unwrap();
        s.log_event(2, Some(5), Some("i1"), "rented", "RTX 4090 at $0.36/h")
            .await
            .unwrap();
        s.log_event(3, Some(6), None, "queued", "other")
            .await
            .unwrap();
        let ev = s.job_events(5).await.unwrap();
        assert_eq!(ev.len(), 2);
        assert_eq!(
            ev[1],
            (2, "rented".to_string(), "RTX 4090 at $0.36/h".to_string())
        );
    }
}

#[tokio::test]
async fn recent_durations_feed_the_estimate() {
    for s in stores("durations").await {
        for (id, secs, gpu) in [
            (1, 3600, "RTX 4090"),
            (2, 1800, "RTX 3090"),
            (3, 600, "RTX 3090"),
        ] {
            s.insert_job(&job(id)).await.unwrap();
            let start = 10_000 * id;
            let steps = [
                (
                    JobState::Queued,
                    JobState::Provisioning,
                    JobPatch {
                        runner_def: Some("gpu".into()),
                        ..Default::default()
                    },
                ),
                (
                    JobState::Provisioning,
                    JobState::WaitingForRunner,
                    JobPatch::default(),
                ),
                (
                    JobState::WaitingForRunner,
                    JobState::Running,
                    JobPatch {
                        started_at: Some(start),
                        gpu_name: Some(gpu.into()),
                        ..Default::default()
                    },
                ),
                (
                    JobState::Running,
                    JobState::Completed,
                    JobPatch {
                        completed_at: Some(start + secs * 1000),
                        conclusion: Some("success".into()),
                        ..Default::default()
                    },
                ),
            ];
            for (from, to, patch) in steps {
                assert!(s.transition_job(id, from, to, start, patch).await.unwrap());
            }
        }
        // Newest completion first (job 1 finished last), at most `limit`.
        let got = s.recent_durations("octo/ml", "gpu", 2).await.unwrap();
        assert_eq!(
            got,
            vec![
                PastRun {
                    seconds: 3600,
                    gpu_name: "RTX 4090".into(),
                    succeeded: true
                },
                PastRun {
                    seconds: 1800,
                    gpu_name: "RTX 3090".into(),
                    succeeded: true
                },
            ]
        );
        assert!(
            s.recent_durations("octo/ml", "cpu", 5)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test]
async fn live_usage_sums_the_live_instances_in_one_query() {
    for s in stores("live_usage").await {
        let empty = s.live_usage(0, 10_000).await.unwrap();
        assert_eq!(empty, rigger::store::LiveUsage::default());

        let mut other = job(2);
        other.repo = "octo/web".into();
        s.insert_job(&job(1)).await.unwrap();
        s.insert_job(&other).await.unwrap();
        s.insert_job(&job(3)).await.unwrap();
        s.insert_job(&job(4)).await.unwrap();
        // $0.50/h each. i1 was created before the window, i2 in it, i3 has
        // no create call yet, i4 is destroyed (not live).
        let called = |at| InstancePatch {
            create_called_at: Some(at),
            ..Default::default()
        };
        for (id, job_id) in [("i1", 1), ("i2", 2), ("i3", 3), ("i4", 4)] {
            s.insert_instance(&instance(id, job_id), 0).await.unwrap();
        }
        for (id, at) in [("i1", 1_000), ("i2", 3_601_000), ("i4", 1_000)] {
            s.transition_instance(
                id,
                InstanceState::Requested,
                InstanceState::Creating,
                at,
                called(at),
            )
            .await
            .unwrap();
        }
        for (from, to) in [
            (InstanceState::Creating, InstanceState::Destroying),
            (InstanceState::Destroying, InstanceState::Destroyed),
        ] {
            s.transition_instance("i4", from, to, 2_000, InstancePatch::default())
                .await
                .unwrap();
        }

        // Window: from 1,801,000 ms to 7,201,000 ms (1.5 h).
        let u = s.live_usage(1_801_000, 7_201_000).await.unwrap();
        assert_eq!(u.live, 3, "i1, i2, i3");
        let by_repo: Vec<(&str, u32)> = u.by_repo.iter().map(|(r, n)| (r.as_str(), *n)).collect();
        assert_eq!(
            by_repo,
            [("octo/ml", 2), ("octo/web", 1)],
            "i1 and i3 are octo/ml's"
        );
        // i1: the whole 1.5 h; i2: 1 h; i3: nothing yet.
        assert!((u.dollars_since - 1.25).abs() < 1e-9, "{u:?}");
    }
}
