//! True end to end: the simulated Vast.ai boots each machine by running the
//! real rendered onstart loader and bootstrap script in a sandbox directory;
//! the script downloads the simulated runner release from the simulated
//! GitHub (verified against the checksum GitHub's downloads list gives), the
//! runner takes its job, and the machine destroys itself. The scripts are
//! real processes: the stories wait on what they do with bounded loops.

mod harness;

use harness::Story;
use rigger::engine::state::JobState;

/// A shim that behaves as `first` on the first machine of a story and as
/// `then` on every later one (the marker is per story).
fn first_machine(story: &str, first: &str, then: &str) -> String {
    let marker = std::env::temp_dir().join(format!(
        "rigger-e2e-{}-{story}-first-machine",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&marker);
    format!(
        "#!/bin/sh\nif mkdir '{}' 2>/dev/null; then {first}; else {then}; fi\n",
        marker.display()
    )
}

const GOOD_GPU: &str = "printf 'NVIDIA RTX 4090\\n'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_bootstrap_script_runs_the_job_and_the_machine_destroys_itself() {
    let s = Story::with_real_machines("real").await;
    let job = s.a_job_is_queued("cirun-gpu--701");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    let instance = s.vast.live_instances()[0].0;

    // The machine boots: the onstart loader runs the bootstrap script, which
    // checks the GPU, downloads and verifies the runner from the simulated
    // GitHub, and starts it with the JIT config; the runner takes the job.
    s.clock.advance_ms(30_000);
    s.vast.live_instances();
    // rigger's own destroy on `completed` would race the script's: hold the
    // webhooks back, so that what is seen is the machine destroying itself.
    let ended = s.machines_finish_unheard(1).await;
    let log = s.machine_log(instance);
    // Its own destroy may kill the script before it exits, as destroying a
    // container does.
    assert_eq!(ended.len(), 1, "{log}");
    assert_eq!(ended[0].0, instance, "{log}");
    for line in [
        "GPUs ok: NVIDIA RTX 4090",
        "downloading http://",
        "runner: connected as runner",
        "runner: job",
        "the runner exited with 0",
        "destroying this machine",
    ] {
        assert!(log.contains(line), "missing `{line}` in:\n{log}");
    }
    // The script destroyed its own machine with the per-instance key.
    assert!(s.vast.live_instances().is_empty(), "{log}");
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Completed, "{log}");
    // rigger's own destroy on `completed` found it gone: harmless.
    s.nothing_leaked().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_has_no_per_instance_key_so_it_calls_rigger_back() {
    let s = Story::with_real_machines_calling_back("vm", &[]).await;
    s.vast.add_ssh_key("ssh-ed25519 AAAAC3Nz demo@rigger");
    let job = s.a_job_is_queued("cirun-gpu-vm--702");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    let instance = s.vast.live_instances()[0].0;

    // No webhook is delivered while the job runs and ends: the machine's
    // report to /callback/{instance} alone gets it destroyed.
    s.clock.advance_ms(30_000);
    // rigger destroys the instance and then writes the event: wait for the
    // event, which comes last, not for the instance to vanish.
    let events = s.event_arrives(job, "destroyed").await;
    let log = s.machine_log(instance);
    assert!(log.contains("runner: job"), "{log}");
    assert!(
        s.vast.live_instances().is_empty(),
        "rigger destroyed it on its report: {log}"
    );
    assert!(
        events
            .iter()
            .any(|(k, m)| k == "destroyed" && m.contains("as its bootstrap reported")),
        "{events:?}"
    );

    // The deliveries GitHub kept arrive, and nothing is left.
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Completed);
    s.nothing_leaked().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_that_never_comes_online_is_destroyed_at_the_bootstrap_timeout_its_log_kept() {
    // The first host's driver hangs: nvidia-smi never answers.
    let hang = first_machine("hung", "exec sleep 60", GOOD_GPU);
    let s = Story::with_real_machines_calling_back("hung", &[("nvidia-smi", &hang)]).await;
    let job = s.a_job_is_queued("cirun-gpu--703");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    let first = s.vast.live_instances()[0].0;
    s.clock.advance_ms(30_000);
    s.vast.live_instances();
    // Vast.ai's log shows how far it got while it hangs (streamed, not at exit).
    s.machine_log_shows(first, "starting on").await;

    s.clock.advance_ms(20 * 60_000);
    s.engine.reconcile_once().await.unwrap();
    let events = s.events(job).await;
    let kept = events
        .iter()
        .find(|(k, _)| k == "boot_log")
        .map(|(_, m)| m.clone())
        .unwrap_or_else(|| panic!("no boot log kept: {events:?}"));
    assert!(kept.contains("rigger-bootstrap:"), "{kept}");
    assert!(kept.contains("starting on"), "{kept}");
    assert!(
        !s.vast
            .live_instances()
            .iter()
            .any(|(id, _, _)| *id == first),
        "destroyed"
    );
    // Destroying it killed the hung machine.
    let ended = s.machines_finish(1).await;
    assert_eq!(ended[0].0, first);

    // Re-provisioned on another machine, which works.
    assert_eq!(s.job_state(job).await, JobState::Queued, "{events:?}");
    s.rigger_provisions().await;
    assert_eq!(s.instances_created(), 2);
    s.clock.advance_ms(30_000);
    s.vast.live_instances();
    s.machines_finish(2).await;
    s.job_reaches(job, JobState::Completed).await;
    s.nothing_leaked().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gpu_mismatch_fails_fast_the_machine_dies_and_rigger_learns_why() {
    // The first host says RTX 4090 on Vast.ai but has an RTX 3090.
    let lie = first_machine("gpu-lie", "printf 'NVIDIA GeForce RTX 3090\\n'", GOOD_GPU);
    let s = Story::with_real_machines_calling_back("gpu-lie", &[("nvidia-smi", &lie)]).await;
    let job = s.a_job_is_queued("cirun-gpu--704");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    let first = s.vast.live_instances()[0].0;
    s.clock.advance_ms(30_000);
    s.vast.live_instances();

    // It fails before downloading anything, reports why, and rigger,
    // destroying it, re-queues the job.
    s.job_reaches(job, JobState::Queued).await;
    let log = s.machine_log(first);
    assert!(!log.contains("downloading"), "{log}");
    let events = s.events(job).await;
    let why = "expected 1 x RTX 4090, found 1: NVIDIA GeForce RTX 3090";
    assert!(
        events
            .iter()
            .any(|(k, m)| k == "machine_failed" && m.contains(&format!("FAILED: {why}"))),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|(k, m)| k == "destroyed" && m.contains("its bootstrap failed (code 1)")),
        "{events:?}"
    );
    assert!(
        !s.vast
            .live_instances()
            .iter()
            .any(|(id, _, _)| *id == first),
        "the machine died"
    );

    s.rigger_provisions().await;
    s.clock.advance_ms(30_000);
    s.vast.live_instances();
    s.job_reaches(job, JobState::Completed).await;
    assert_eq!(s.instances_created(), 2);
    s.nothing_leaked().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_jobs_of_one_run_with_the_same_label_each_get_a_machine() {
    let s = Story::with_real_machines("same-label").await;
    let a = s.a_job_is_queued("cirun-gpu--705");
    let b = s.a_job_is_queued("cirun-gpu--705");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    let live = s.vast.live_instances();
    assert_eq!(live.len(), 2, "one machine each: {live:?}");
    assert_ne!(live[0].0, live[1].0);
    // Each runner is registered with the job's suffixed label, so GitHub
    // gives these jobs to these runners only.
    let runners = s.github.runners();
    assert_eq!(runners.len(), 2, "{runners:?}");
    for r in &runners {
        assert!(
            r.labels.iter().any(|l| l == "cirun-gpu--705"),
            "{:?}",
            r.labels
        );
    }

    s.clock.advance_ms(30_000);
    s.vast.live_instances();
    let ended = s.machines_finish(2).await;
    assert_eq!(ended.len(), 2);
    s.job_reaches(a, JobState::Completed).await;
    s.job_reaches(b, JobState::Completed).await;
    assert!(s.vast.live_instances().is_empty());
    assert_eq!(s.instances_created(), 2);
    s.nothing_leaked().await;
}

/// An `id` that says a user `runner` exists on the first machine of a story
/// (decided once per machine, by its own shims directory), and none on
/// later ones.
fn runner_user_on_first_machine(story: &str) -> String {
    let marker = std::env::temp_dir().join(format!(
        "rigger-e2e-{}-{story}-first-machine",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&marker);
    format!(
        "#!/bin/sh\nd=$(dirname \"$0\")\n[ -e \"$d/decided\" ] || {{ if mkdir '{}' 2>/dev/null; then echo first; else echo later; fi > \"$d/decided\"; }}\nif [ \"$1\" = runner ]; then [ \"$(cat \"$d/decided\")\" = first ]; exit; fi\nexec /usr/bin/id \"$@\"\n",
        marker.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_that_refuses_to_run_exits_0_and_the_job_is_requeued_at_once() {
    // The first machine's image has a `runner` user, but what should drop
    // to it keeps root: the runner refuses to run as root, and run.sh, as
    // the real one does, exits 0 all the same.
    let id = runner_user_on_first_machine("refuses");
    let keep_root = "#!/bin/sh\nshift 3\nexec \"$@\"\n";
    let s = Story::with_real_machines_calling_back(
        "refuses",
        &[
            ("id", &id),
            ("runuser", keep_root),
            ("chown", "#!/bin/sh\n"),
        ],
    )
    .await;
    let job = s.a_job_is_queued("cirun-gpu--706");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    let first = s.vast.live_instances()[0].0;
    s.clock.advance_ms(30_000);
    s.vast.live_instances();

    // The machine reports that its runner ended without a job: rigger
    // re-queues the job now, not at the bootstrap timeout.
    s.job_reaches(job, JobState::Queued).await;
    let log = s.machine_log(first);
    assert!(
        log.contains("Must not run interactively with sudo"),
        "{log}"
    );
    let events = s.events(job).await;
    assert!(
        events.iter().any(|(k, m)| k == "requeued"
            && m.contains("the runner exited (code 0) without taking a job")),
        "{events:?}"
    );

    // The next machine runs the job.
    s.rigger_provisions().await;
    s.clock.advance_ms(30_000);
    s.vast.live_instances();
    s.job_reaches(job, JobState::Completed).await;
    assert_eq!(s.instances_created(), 2);
    s.nothing_leaked().await;
}
