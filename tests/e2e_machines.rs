//! True end to end: the simulated Vast.ai boots each machine by running the
//! real rendered onstart loader and bootstrap script in a sandbox directory;
//! the script downloads the simulated runner release from the simulated
//! GitHub, the runner takes its job, and the machine destroys itself.

mod harness;

use harness::Story;
use rigger::engine::state::JobState;

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
    let ended = s.machines_finish(1).await;
    let log = s.machine_log(instance);
    assert_eq!(ended, vec![(instance, 0)], "{log}");
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
async fn a_vm_runs_the_real_script_too_and_the_machine_dies_while_rigger_is_down() {
    let s = Story::with_real_machines("vm").await;
    s.vast.add_ssh_key("ssh-ed25519 AAAAC3Nz demo@rigger");
    let job = s.a_job_is_queued("cirun-gpu-vm--702");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    let instance = s.vast.live_instances()[0].0;

    // rigger goes down: it hears nothing while the job runs and ends.
    s.clock.advance_ms(30_000);
    s.vast.live_instances();
    for _ in 0..600 {
        if !s.exited.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let log = s.machine_log(instance);
    assert_eq!(
        s.exited.lock().unwrap().clone(),
        vec![(instance, 0)],
        "{log}"
    );
    assert!(log.contains("runner: job"), "{log}");
    assert!(
        s.vast.live_instances().is_empty(),
        "the machine destroyed itself: {log}"
    );

    // rigger comes back: the deliveries GitHub kept arrive, and nothing is left.
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Completed);
    s.nothing_leaked().await;
}
