//! Each reconciler rule on its own, then the rules together.

use super::plan::*;
use crate::engine::ports::RepoRef;
use crate::engine::state::{InstanceState, JobState};
use crate::store::{InstanceRow, JobRow};

pub(super) const MIN: i64 = 60_000;
pub(super) const NOW: i64 = 1_000 * MIN;

pub(super) fn job(id: i64, state: JobState, updated_at: i64) -> JobRow {
    JobRow {
        job_id: id,
        run_id: 1,
        run_attempt: 1,
        repo: "octo/ml".into(),
        installation_id: 1,
        labels: vec!["cirun-gpu".into()],
        head_sha: "abc".into(),
        is_fork: false,
        actor: "octocat".into(),
        state,
        reason: None,
        runner_def: Some("gpu".into()),
        runner_name: None,
        conclusion: None,
        check_run_id: None,
        attempts: 1,
        next_attempt_at: None,
        queued_at: 0,
        started_at: None,
        completed_at: None,
        gpu_name: None,
        failure: None,
        updated_at,
        lease_until: None,
    }
}

pub(super) fn inst(id: &str, job_id: i64, state: InstanceState, since: i64) -> InstanceRow {
    InstanceRow {
        id: id.into(),
        job_id,
        label: format!("rigger-ctl-{id}"),
        runner_name: format!("rigger-{id}"),
        runner_id: None,
        provider_id: (!matches!(state, InstanceState::Requested | InstanceState::Creating))
            .then(|| format!("p-{id}")),
        offer_id: Some(1),
        gpu_name: Some("RTX 4090".into()),
        num_gpus: Some(1),
        dph: Some(0.4),
        location: None,
        state,
        reason: None,
        created_at: since,
        create_called_at: Some(since),
        online_at: (state == InstanceState::Online).then_some(since),
        destroy_called_at: (state == InstanceState::Destroying).then_some(since),
        destroyed_at: None,
        expires_at: NOW + 60 * MIN,
        callback_hash: None,
        updated_at: since,
        destroy_attempts: 0,
        destroy_due_at: None,
        estimated_hours: None,
        estimated_cost: None,
    }
}

pub(super) fn cloud(i: &InstanceRow, status: CloudStatus) -> CloudView {
    CloudView {
        provider_id: i
            .provider_id
            .clone()
            .unwrap_or_else(|| format!("p-{}", i.id)),
        label: i.label.clone(),
        status,
        detail: String::new(),
    }
}

pub(super) fn snapshot(jobs: Vec<JobRow>, instances: Vec<InstanceRow>) -> Snapshot {
    let cloud = instances
        .iter()
        .filter(|i| i.provider_id.is_some())
        .map(|i| cloud(i, CloudStatus::Running))
        .collect();
    Snapshot {
        jobs,
        late_instances: instances.clone(),
        instances,
        cloud,
        cloud_known: true,
        runners: Vec::new(),
        runners_unknown: Default::default(),
        github_jobs: Vec::new(),
        unowned_runners_since: Default::default(),
        unsent_check_runs: Vec::new(),
        unreachable_since: Default::default(),
        access_lost_runners: Default::default(),
    }
}

pub(super) fn runner(id: i64, name: &str, online: bool, busy: bool) -> RunnerView {
    RunnerView {
        id,
        name: name.into(),
        online,
        busy,
        installation_id: 1,
        scope: "octo/ml".into(),
    }
}

/// Where [`job`]'s runners are: `octo/ml` of installation 1.
pub(super) fn octo_ml() -> RepoRef {
    RepoRef {
        installation_id: 1,
        repo: "octo/ml".into(),
    }
}

/// What a re-queue of [`job`] `id`, waiting for a runner, is planned from.
pub(super) fn planned(id: i64) -> PlannedJob {
    PlannedJob {
        job_id: id,
        state: JobState::WaitingForRunner,
        attempts: 1,
    }
}

/// GitHub, asked this pass, says the job still waits for a runner.
pub(super) fn queued_on_github(s: &mut Snapshot, job_id: i64) {
    s.github_jobs.push(GithubJobView {
        job_id,
        status: GithubJobStatus::Queued,
        conclusion: None,
        runner_name: None,
    });
}

pub(super) fn run(s: &Snapshot) -> Vec<(Rule, Action)> {
    plan(s, NOW, &Limits::default())
}

#[test]
fn a_healthy_world_needs_nothing() {
    let mut s = snapshot(
        vec![job(1, JobState::Running, NOW)],
        vec![inst("a", 1, InstanceState::Busy, NOW - 5 * MIN)],
    );
    s.runners.push(RunnerView {
        id: 9,
        name: "rigger-a".into(),
        online: true,
        busy: true,
        installation_id: 1,
        scope: "octo/ml".into(),
    });
    assert_eq!(run(&s), vec![]);
}

#[test]
fn rule_1_orphans_are_destroyed() {
    let mut s = snapshot(vec![], vec![]);
    s.cloud.push(CloudView {
        provider_id: "77".into(),
        label: "rigger-ctl-x".into(),
        status: CloudStatus::Exited,
        detail: String::new(),
    });
    assert_eq!(
        run(&s),
        vec![(
            Rule::Orphan,
            Action::DestroyOrphan {
                provider_id: "77".into(),
                label: "rigger-ctl-x".into()
            }
        )]
    );
    // Not when Vast.ai could not be read: absence of evidence is not evidence.
    s.cloud_known = false;
    assert_eq!(run(&s), vec![]);
}

#[test]
fn rule_1_a_machine_whose_row_was_written_while_vast_was_listed_is_not_an_orphan() {
    // The first read of the rows missed it; the read after the listing has it.
    let i = inst("new", 1, InstanceState::Booting, NOW);
    let mut s = snapshot(vec![job(1, JobState::WaitingForRunner, NOW)], vec![i]);
    s.instances.clear();
    assert_eq!(run(&s), vec![]);
    s.late_instances.clear();
    assert!(matches!(run(&s)[..], [(Rule::Orphan, _)]));
}

#[test]
fn rule_1_a_row_still_creating_is_not_an_orphan() {
    let i = inst("a", 1, InstanceState::Creating, NOW - MIN);
    let mut s = snapshot(vec![job(1, JobState::Provisioning, NOW)], vec![i.clone()]);
    s.cloud.push(cloud(&i, CloudStatus::Loading));
    assert_eq!(run(&s), vec![]);
}

#[test]
fn rule_2_stuck_create_is_adopted_when_found_by_label() {
    let i = inst("a", 1, InstanceState::Creating, NOW - 6 * MIN);
    let mut s = snapshot(vec![job(1, JobState::Provisioning, NOW)], vec![i.clone()]);
    s.cloud.push(CloudView {
        provider_id: "555".into(),
        label: i.label.clone(),
        status: CloudStatus::Loading,
        detail: String::new(),
    });
    assert_eq!(
        run(&s),
        vec![(
            Rule::StuckCreate,
            Action::Adopt {
                instance_id: "a".into(),
                provider_id: "555".into()
            }
        )]
    );
}

#[test]
fn rule_2_stuck_create_fails_and_requeues_when_nothing_exists() {
    // A crash between writing the row and the create call.
    let i = inst("a", 1, InstanceState::Requested, NOW - 6 * MIN);
    let mut s = snapshot(vec![job(1, JobState::WaitingForRunner, NOW)], vec![i]);
    queued_on_github(&mut s, 1);
    assert_eq!(
        run(&s),
        vec![(
            Rule::StuckCreate,
            Action::MarkFailed {
                instance_id: "a".into(),
                from: InstanceState::Requested,
                requeue_job: Some(planned(1))
            }
        )]
    );
    // Not yet past the create timeout: wait.
    let i = inst("a", 1, InstanceState::Requested, NOW - MIN);
    let s = snapshot(vec![job(1, JobState::WaitingForRunner, NOW)], vec![i]);
    assert_eq!(run(&s), vec![]);
}

#[test]
fn rule_3_boot_timeout_keeps_logs_destroys_and_requeues() {
    let i = inst("a", 1, InstanceState::Booting, NOW - 21 * MIN);
    let mut s = snapshot(vec![job(1, JobState::WaitingForRunner, NOW)], vec![i]);
    queued_on_github(&mut s, 1);
    let actions = run(&s);
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].0, Rule::BootTimeout);
    match &actions[0].1 {
        Action::Destroy {
            keep_logs,
            requeue_job,
            ..
        } => {
            assert!(*keep_logs);
            assert_eq!(*requeue_job, Some(planned(1)));
        }
        a => panic!("{a:?}"),
    }
}

#[test]
fn rule_3_not_when_the_runner_is_online() {
    let i = inst("a", 1, InstanceState::Booting, NOW - 21 * MIN);
    let mut s = snapshot(vec![job(1, JobState::WaitingForRunner, NOW)], vec![i]);
    s.runners_unknown.insert(octo_ml());
    assert_eq!(run(&s), vec![], "GitHub's runners could not be read");
    s.runners_unknown.clear();
    s.runners.push(runner(3, "rigger-a", true, false));
    // Not a boot timeout: the runner came online, so rule 4 takes it on.
    assert!(matches!(
        run(&s)[..],
        [(Rule::IdleTimeout, Action::MarkOnline { .. })]
    ));
}

#[test]
fn rule_3_does_not_requeue_a_job_github_already_gave_away() {
    let i = inst("a", 1, InstanceState::Booting, NOW - 21 * MIN);
    let mut s = snapshot(vec![job(1, JobState::WaitingForRunner, NOW)], vec![i]);
    s.github_jobs.push(GithubJobView {
        job_id: 1,
        status: GithubJobStatus::InProgress,
        conclusion: None,
        runner_name: Some("someone-else".into()),
    });
    let actions = run(&s);
    // Rule 5 notes the job is running elsewhere; rule 3 still destroys the machine, without re-queueing.
    assert!(actions.contains(&(
        Rule::JobCompletedElsewhere,
        Action::MarkRunning {
            job_id: 1,
            runner_name: "someone-else".into()
        }
    )));
    let destroy = actions
        .iter()
        .find(|(r, _)| *r == Rule::BootTimeout)
        .expect("destroy");
    assert!(matches!(
        &destroy.1,
        Action::Destroy {
            requeue_job: None,
            ..
        }
    ));
}

#[test]
fn rule_4_idle_runner_is_deregistered_then_destroyed() {
    let mut i = inst("a", 1, InstanceState::Online, NOW - 11 * MIN);
    i.runner_id = Some(44);
    let s = snapshot(vec![job(1, JobState::WaitingForRunner, NOW)], vec![i]);
    let actions = run(&s);
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].0, Rule::IdleTimeout);
    assert!(matches!(
        &actions[0].1,
        Action::Destroy {
            deregister_runner: Some(Deregister::KeepIfRefused(44)),
            ..
        }
    ));
}

#[test]
fn rule_4_a_booting_machine_whose_runner_is_online_and_idle_is_marked_online() {
    let i = inst("a", 1, InstanceState::Booting, NOW - 3 * MIN);
    let mut s = snapshot(vec![job(1, JobState::WaitingForRunner, NOW)], vec![i]);
    assert_eq!(run(&s), vec![], "not online yet");
    s.runners.push(runner(44, "rigger-a", true, false));
    assert_eq!(
        run(&s),
        vec![(
            Rule::IdleTimeout,
            Action::MarkOnline {
                instance_id: "a".into()
            }
        )]
    );
    // Busy already: the in_progress webhook makes it busy, not this rule.
    s.runners[0].busy = true;
    assert_eq!(run(&s), vec![]);
}

#[test]
fn rule_4_never_kills_a_busy_runner() {
    let i = inst("a", 1, InstanceState::Online, NOW - 11 * MIN);
    let mut s = snapshot(vec![job(1, JobState::WaitingForRunner, NOW)], vec![i]);
    s.runners.push(RunnerView {
        id: 44,
        name: "rigger-a".into(),
        online: true,
        busy: true,
        installation_id: 1,
        scope: "octo/ml".into(),
    });
    assert_eq!(run(&s), vec![]);
    let busy = inst("b", 2, InstanceState::Busy, NOW - 300 * MIN);
    let s = snapshot(vec![job(2, JobState::Running, NOW)], vec![busy]);
    assert_eq!(run(&s), vec![]);
}

#[test]
fn rule_5_a_lost_completed_webhook_is_recovered() {
    let s = {
        let mut s = snapshot(
            vec![job(1, JobState::Running, NOW - 30 * MIN)],
            vec![inst("a", 1, InstanceState::Busy, NOW - 40 * MIN)],
        );
        s.github_jobs.push(GithubJobView {
            job_id: 1,
            status: GithubJobStatus::Completed,
            conclusion: Some("success".into()),
            runner_name: Some("rigger-a".into()),
        });
        s
    };
    assert_eq!(
        run(&s),
        vec![(
            Rule::JobCompletedElsewhere,
            Action::CompleteJob {
                job_id: 1,
                conclusion: Some("success".into()),
                runner_name: Some("rigger-a".into())
            }
        )]
    );
}

#[test]
fn rule_11_a_job_waiting_for_approval_is_released_only_when_github_queued_it() {
    let view = |status| GithubJobView {
        job_id: 1,
        status,
        conclusion: None,
        runner_name: None,
    };
    let mut s = snapshot(
        vec![job(1, JobState::WaitingForApproval, NOW - 600 * MIN)],
        vec![],
    );
    // Hours of waiting: nothing to do, however long.
    assert_eq!(run(&s), vec![]);
    s.github_jobs.push(view(GithubJobStatus::Waiting));
    assert_eq!(run(&s), vec![]);
    // Approved, its `queued` lost: released into the queue.
    s.github_jobs = vec![view(GithubJobStatus::Queued)];
    assert_eq!(
        run(&s),
        vec![(Rule::Approved, Action::ReleaseJob { job_id: 1 })]
    );
    // A job in any other state is never released (nor held back).
    for state in [JobState::Queued, JobState::WaitingForRunner] {
        s.jobs = vec![job(1, state, NOW - 600 * MIN)];
        assert!(
            !run(&s).iter().any(|(r, _)| *r == Rule::Approved),
            "{state}"
        );
    }
}

#[test]
fn rule_5_instances_of_finished_jobs_are_destroyed() {
    // The job is terminal (not among live jobs) but its machine still runs.
    let s = snapshot(vec![], vec![inst("a", 1, InstanceState::Busy, NOW - MIN)]);
    let actions = run(&s);
    assert_eq!(actions.len(), 1);
    assert!(matches!(&actions[0].1, Action::Destroy { instance_id, .. } if instance_id == "a"));
}

#[test]
fn rule_5_a_machine_running_another_live_job_outlives_the_job_it_was_rented_for() {
    // Machine `a` was rented for job 1, and GitHub gave it job 2 instead.
    let mut two = job(2, JobState::Running, NOW);
    two.runner_name = Some("rigger-a".into());
    let a = inst("a", 1, InstanceState::Busy, NOW - MIN);
    let s = snapshot(vec![two.clone()], vec![a.clone()]);
    assert_eq!(run(&s), vec![], "job 1 is over, job 2 runs on `a` (I4)");
    // Once job 2 is over too, `a` has nothing left to do.
    let s = snapshot(vec![], vec![a]);
    assert!(matches!(
        run(&s)[..],
        [(Rule::JobCompletedElsewhere, Action::Destroy { .. })]
    ));
}

#[test]
fn rule_5_a_machine_learned_busy_in_this_pass_is_not_destroyed_in_it() {
    // Machine `a` was rented for job 1, which is over; GitHub gave its
    // runner job 2, whose `in_progress` was lost. This pass asked GitHub
    // about job 2 and learned it runs on `a`: job 2 is bound, `a` is kept.
    let two = job(2, JobState::WaitingForRunner, NOW - 11 * MIN);
    let mut a = inst("a", 1, InstanceState::Booting, NOW - 12 * MIN);
    a.runner_id = Some(9);
    let mut s = snapshot(vec![two], vec![a.clone()]);
    s.github_jobs.push(GithubJobView {
        job_id: 2,
        status: GithubJobStatus::InProgress,
        conclusion: None,
        runner_name: Some(a.runner_name.clone()),
    });
    assert_eq!(
        run(&s),
        vec![(
            Rule::JobCompletedElsewhere,
            Action::MarkRunning {
                job_id: 2,
                runner_name: a.runner_name.clone()
            }
        )],
        "I4"
    );
    // Without that news, `a` goes only if GitHub lets its runner go.
    s.github_jobs.clear();
    assert!(matches!(
        &run(&s)[..],
        [(
            Rule::JobCompletedElsewhere,
            Action::Destroy {
                deregister_runner: Some(Deregister::KeepIfRefused(9)),
                ..
            }
        )]
    ));
}

#[test]
fn a_busy_machine_whose_job_rigger_lost_access_to_is_kept_until_it_ends() {
    // Its job was failed here when the App lost the repository; on GitHub
    // it goes on, on this machine.
    let mut i = inst("a", 1, InstanceState::Busy, NOW - 30 * MIN);
    i.runner_id = Some(9);
    let mut s = snapshot(vec![], vec![i.clone()]);
    s.access_lost_runners.insert(i.runner_name.clone());
    assert_eq!(run(&s), vec![], "I4");
    // It ends (the bootstrap destroys it): its row is closed.
    s.cloud.clear();
    assert!(matches!(
        &run(&s)[..],
        [(Rule::InstanceVanished, Action::Destroy { .. })]
    ));
    // Or its max lifetime does.
    let mut s = snapshot(vec![], vec![i.clone()]);
    s.access_lost_runners.insert(i.runner_name.clone());
    s.instances[0].expires_at = NOW;
    assert!(matches!(
        &run(&s)[..],
        [(Rule::MaxLifetime, Action::Destroy { .. })]
    ));
    // Without it, a busy machine with no live job has run its job.
    s.access_lost_runners.clear();
    s.instances[0].expires_at = NOW + 60 * MIN;
    assert!(matches!(
        &run(&s)[..],
        [(Rule::JobCompletedElsewhere, Action::Destroy { .. })]
    ));
}

#[test]
fn quiet_jobs_are_the_ones_to_check_once_per_quiet_period() {
    let jobs = vec![
        job(1, JobState::Running, NOW - 11 * MIN),
        job(2, JobState::Running, NOW - MIN),
        job(3, JobState::Queued, NOW - 60 * MIN),
    ];
    let limits = Limits::default();
    let none = Default::default();
    assert_eq!(quiet_jobs(&jobs, NOW, &limits, &none), vec![1, 3]);
    // Asked about 3 two minutes ago: not again until it is quiet again.
    let checked = [(3, NOW - 2 * MIN), (1, NOW - 10 * MIN)].into();
    assert_eq!(quiet_jobs(&jobs, NOW, &limits, &checked), vec![1]);
}

#[test]
fn rule_6_a_vanished_instance_is_cleaned_up_and_its_job_requeued() {
    let i = inst("a", 1, InstanceState::Booting, NOW - 2 * MIN);
    let mut s = snapshot(
        vec![job(1, JobState::WaitingForRunner, NOW)],
        vec![i.clone()],
    );
    s.cloud.clear();
    queued_on_github(&mut s, 1);
    let actions = run(&s);
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].0, Rule::InstanceVanished);
    assert!(matches!(
        &actions[0].1,
        Action::Destroy {
            requeue_job: Some(PlannedJob { job_id: 1, .. }),
            ..
        }
    ));
    // An exited host (interrupted bid) counts as vanished too.
    s.cloud.push(cloud(&i, CloudStatus::Exited));
    assert_eq!(run(&s)[0].0, Rule::InstanceVanished);
}

#[test]
fn rule_7_stale_runner_registrations_are_deleted_after_the_grace() {
    let mut s = snapshot(vec![], vec![]);
    s.runners.push(runner(5, "rigger-gone", false, false));
    assert_eq!(unowned_runners(&s), vec![5]);
    assert_eq!(run(&s), vec![], "never seen unowned before");
    s.unowned_runners_since.insert(5, NOW - MIN);
    assert_eq!(run(&s), vec![], "registered just before its row is written");
    s.unowned_runners_since.insert(5, NOW - 2 * MIN);
    assert_eq!(
        run(&s),
        vec![(
            Rule::StaleRunner,
            Action::DeleteRunner {
                runner_id: 5,
                name: "rigger-gone".into(),
                installation_id: 1,
                scope: "octo/ml".into(),
            }
        )]
    );
    // Its place could not be listed this pass: it is not in the list.
    s.runners.clear();
    s.runners_unknown.insert(octo_ml());
    assert_eq!(run(&s), vec![]);
}

#[test]
fn rule_7_a_runner_whose_row_was_written_while_github_was_listed_is_owned() {
    let i = inst("new", 1, InstanceState::Creating, NOW);
    let mut s = snapshot(vec![job(1, JobState::Provisioning, NOW)], vec![i]);
    s.instances.clear();
    s.runners.push(runner(5, "rigger-new", false, false));
    assert_eq!(unowned_runners(&s), Vec::<i64>::new());
}

/// A job of installation 2, whose runners are in `beta/cv`.
fn beta_job(id: i64, state: JobState, updated_at: i64) -> JobRow {
    JobRow {
        repo: "beta/cv".into(),
        installation_id: 2,
        ..job(id, state, updated_at)
    }
}

#[test]
fn rules_3_and_4_act_where_runners_were_listed_and_nowhere_else() {
    // Job 1 is octo/ml's (installation 1), job 2 beta/cv's (installation 2).
    let jobs = || {
        vec![
            job(1, JobState::WaitingForRunner, NOW),
            beta_job(2, JobState::WaitingForRunner, NOW),
        ]
    };
    let booting = |id, job| inst(id, job, InstanceState::Booting, NOW - 21 * MIN);
    let idle = |id, job| inst(id, job, InstanceState::Online, NOW - 11 * MIN);
    let beta = RepoRef {
        installation_id: 2,
        repo: "beta/cv".into(),
    };
    /// Machines, the places not listed, and the machines destroyed and why.
    type Row = (Vec<InstanceRow>, Vec<RepoRef>, Vec<(&'static str, Rule)>);
    let table: Vec<Row> = vec![
        (
            vec![booting("a", 1), booting("b", 2)],
            vec![],
            vec![("a", Rule::BootTimeout), ("b", Rule::BootTimeout)],
        ),
        (
            vec![booting("a", 1), booting("b", 2)],
            vec![octo_ml()],
            vec![("b", Rule::BootTimeout)],
        ),
        (
            vec![booting("a", 1), booting("b", 2)],
            vec![octo_ml(), beta.clone()],
            vec![],
        ),
        (
            vec![idle("a", 1), idle("b", 2)],
            vec![],
            vec![("a", Rule::IdleTimeout), ("b", Rule::IdleTimeout)],
        ),
        (
            vec![idle("a", 1), idle("b", 2)],
            vec![beta.clone()],
            vec![("a", Rule::IdleTimeout)],
        ),
        (
            vec![idle("a", 1), idle("b", 2)],
            vec![octo_ml()],
            vec![("b", Rule::IdleTimeout)],
        ),
        (
            vec![idle("a", 1), booting("b", 2)],
            vec![octo_ml(), beta.clone()],
            vec![],
        ),
    ];
    for (machines, unknown, want) in table {
        let mut s = snapshot(jobs(), machines.clone());
        s.runners_unknown = unknown.iter().cloned().collect();
        let got: Vec<(&str, Rule)> = run(&s)
            .iter()
            .filter_map(|(rule, a)| match a {
                Action::Destroy { instance_id, .. } => Some((
                    machines
                        .iter()
                        .find(|m| &m.id == instance_id)
                        .map(|m| m.id.as_str())
                        .unwrap(),
                    *rule,
                )),
                _ => None,
            })
            .collect();
        assert_eq!(
            got,
            want,
            "machines {:?} with {unknown:?} unlisted",
            machines
                .iter()
                .map(|m| (&m.id, m.state))
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn a_machine_whose_job_is_not_live_is_known_only_when_every_place_was_listed() {
    let s = snapshot(vec![], vec![inst("a", 9, InstanceState::Online, NOW)]);
    assert!(runners_known_for(&s, &s.instances[0]));
    let mut s = s;
    s.runners_unknown.insert(octo_ml());
    assert!(!runners_known_for(&s, &s.instances[0]));
}

#[test]
fn rule_8_max_lifetime_wins_even_over_a_busy_runner() {
    let mut i = inst("a", 1, InstanceState::Busy, NOW - 400 * MIN);
    i.expires_at = NOW - 1;
    let s = snapshot(vec![job(1, JobState::Running, NOW)], vec![i]);
    let actions = run(&s);
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].0, Rule::MaxLifetime);
}

#[test]
fn rule_9_recovery_requeues_orphaned_provisioning_and_retries_destroys() {
    let s = snapshot(
        vec![job(1, JobState::Provisioning, NOW - 6 * MIN)],
        vec![inst("a", 2, InstanceState::Destroying, NOW - 2 * MIN)],
    );
    let actions = run(&s);
    assert!(actions.contains(&(
        Rule::Recovery,
        Action::TakeOverJob {
            job_id: 1,
            attempt: 1
        }
    )));
    assert!(actions.iter().any(|(r, a)| *r == Rule::Recovery
        && matches!(a, Action::Destroy { instance_id, .. } if instance_id == "a")));
}

#[test]
fn rule_9_takes_a_job_over_when_its_lease_runs_out_and_never_before() {
    // (lease until, last change, taken over): a lease decides alone; a row
    // with none waits out the provisioning timeout.
    let table = [
        (Some(NOW + 1), NOW - 60 * MIN, false),
        (Some(NOW), NOW - MIN, true),
        (Some(NOW - 1), NOW - MIN, true),
        (None, NOW - 4 * MIN, false),
        (None, NOW - 5 * MIN, true),
    ];
    for (lease_until, updated_at, taken) in table {
        let mut j = job(1, JobState::Provisioning, updated_at);
        j.lease_until = lease_until;
        j.attempts = 3;
        let actions = run(&snapshot(vec![j], vec![]));
        let took = actions.contains(&(
            Rule::Recovery,
            Action::TakeOverJob {
                job_id: 1,
                attempt: 3,
            },
        ));
        assert_eq!(took, taken, "lease {lease_until:?}, updated {updated_at}");
    }
}

#[test]
fn rule_10_an_unsent_check_run_is_sent_once_its_backoff_has_passed() {
    // Job 1's update is due; job 2's waits for GitHub's reset; job 3's
    // job is over (its row is not among the live jobs): its run is sent too.
    let mut s = snapshot(vec![job(1, JobState::Queued, NOW)], Vec::new());
    s.unsent_check_runs = vec![
        UnsentCheckRun {
            job_id: 1,
            due_at: NOW - MIN,
        },
        UnsentCheckRun {
            job_id: 3,
            due_at: NOW,
        },
        UnsentCheckRun {
            job_id: 2,
            due_at: NOW + MIN,
        },
    ];
    let sent: Vec<_> = run(&s)
        .into_iter()
        .filter(|(r, _)| *r == Rule::CheckRunUnsent)
        .map(|(_, a)| a)
        .collect();
    assert_eq!(
        sent,
        vec![
            Action::SendCheckRun { job_id: 1 },
            Action::SendCheckRun { job_id: 3 }
        ]
    );
}

#[test]
fn rule_10_sends_a_bounded_number_a_pass() {
    let mut s = snapshot(Vec::new(), Vec::new());
    s.unsent_check_runs = (0..100)
        .map(|job_id| UnsentCheckRun {
            job_id,
            due_at: NOW - MIN,
        })
        .collect();
    let actions = run(&s);
    assert_eq!(actions.len(), CHECK_RUNS_PER_PASS);
    // A check run is its own target: it does not stop a job's action.
    let mut s = snapshot(
        vec![job(1, JobState::Provisioning, NOW - 6 * MIN)],
        Vec::new(),
    );
    s.unsent_check_runs = vec![UnsentCheckRun {
        job_id: 1,
        due_at: NOW,
    }];
    assert_eq!(run(&s).len(), 2);
}

#[test]
fn one_action_per_target() {
    // Expired and vanished and idle at once: max lifetime alone acts.
    let mut i = inst("a", 1, InstanceState::Online, NOW - 100 * MIN);
    i.expires_at = NOW;
    let mut s = snapshot(vec![job(1, JobState::WaitingForRunner, NOW)], vec![i]);
    s.cloud.clear();
    let actions = run(&s);
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].0, Rule::MaxLifetime);
}

#[test]
fn plan_is_pure() {
    let s = snapshot(
        vec![job(1, JobState::Provisioning, NOW - 6 * MIN)],
        vec![inst("a", 1, InstanceState::Booting, NOW - 30 * MIN)],
    );
    assert_eq!(run(&s), run(&s));
}

/// The simulators' seeded generator, so random worlds are the same on every run.
struct Rng(crate::sim::Rng);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0.below(n as usize) as u64
    }
    fn coin(&mut self) -> bool {
        self.below(2) == 0
    }
}

fn random_world(rng: &mut Rng) -> Snapshot {
    let mut jobs = Vec::new();
    let mut instances = Vec::new();
    for id in 1..=rng.below(6) as i64 {
        let state = JobState::ALL[rng.below(4) as usize];
        let at = NOW - rng.below(30) as i64 * MIN;
        jobs.push(if rng.coin() {
            job(id, state, at)
        } else {
            beta_job(id, state, at)
        });
    }
    for n in 0..rng.below(6) {
        let state = InstanceState::ALL[rng.below(6) as usize];
        let mut i = inst(
            &format!("i{n}"),
            1 + rng.below(7) as i64,
            state,
            NOW - rng.below(40) as i64 * MIN,
        );
        if rng.below(4) == 0 {
            i.expires_at = NOW - 1;
        }
        if rng.coin() {
            i.runner_id = Some(n as i64 + 100);
        }
        instances.push(i);
    }
    for j in &mut jobs {
        if rng.below(3) == 0 {
            j.runner_name = Some(format!("rigger-i{}", rng.below(6)));
        }
    }
    let mut s = snapshot(jobs, instances.clone());
    // Rows written between the two reads exist only in the later one.
    s.instances.retain(|_| rng.below(6) != 0);
    s.cloud.retain(|_| rng.below(4) != 0);
    if rng.coin() {
        s.cloud.push(CloudView {
            provider_id: format!("stray-{}", rng.below(100)),
            label: "rigger-ctl-stray".into(),
            status: CloudStatus::Running,
            detail: String::new(),
        });
    }
    for i in &instances {
        if rng.coin() {
            let place = s
                .jobs
                .iter()
                .find(|j| j.job_id == i.job_id)
                .map_or_else(octo_ml, |j| RepoRef {
                    installation_id: j.installation_id,
                    repo: j.repo.clone(),
                });
            s.runners.push(RunnerView {
                id: rng.below(1000) as i64,
                name: i.runner_name.clone(),
                online: rng.coin(),
                busy: rng.coin(),
                installation_id: place.installation_id,
                scope: place.repo,
            });
        }
    }
    for j in &s.jobs.clone() {
        if rng.below(3) == 0 {
            s.github_jobs.push(GithubJobView {
                job_id: j.job_id,
                status: [
                    GithubJobStatus::Queued,
                    GithubJobStatus::InProgress,
                    GithubJobStatus::Completed,
                ][rng.below(3) as usize],
                conclusion: Some("success".into()),
                runner_name: Some(format!("rigger-i{}", rng.below(6))),
            });
        }
    }
    s.cloud_known = rng.below(5) != 0;
    // A place not listed has no runner in the list.
    for place in [
        octo_ml(),
        RepoRef {
            installation_id: 2,
            repo: "beta/cv".into(),
        },
    ] {
        if rng.below(4) == 0 {
            s.runners
                .retain(|r| !(r.installation_id == place.installation_id && r.scope == place.repo));
            s.runners_unknown.insert(place);
        }
    }
    for r in &s.runners {
        if rng.coin() {
            s.unowned_runners_since
                .insert(r.id, NOW - rng.below(4) as i64 * MIN);
        }
    }
    s
}

#[test]
fn invariants_hold_on_random_worlds() {
    let mut rng = Rng(crate::sim::Rng::new(20261122));
    for round in 0..5000 {
        let s = random_world(&mut rng);
        let actions = run(&s);
        let mut targets = std::collections::HashSet::new();
        for (rule, action) in &actions {
            assert!(
                targets.insert(target_of(action)),
                "round {round}: two actions on one target: {actions:#?}"
            );
            match action {
                // I4: a busy runner is destroyed before its job ends only at max lifetime.
                Action::Destroy { instance_id, .. } => {
                    let i = s
                        .instances
                        .iter()
                        .find(|i| &i.id == instance_id)
                        .expect("a known row");
                    // Its own job, or another one GitHub gave its runner.
                    let job_live = s.jobs.iter().any(|j| {
                        j.job_id == i.job_id || j.runner_name.as_deref() == Some(&i.runner_name)
                    });
                    let runner_busy = s.runners.iter().any(|r| r.name == i.runner_name && r.busy);
                    if i.state == InstanceState::Busy && job_live && NOW < i.expires_at {
                        assert!(
                            matches!(rule, Rule::InstanceVanished | Rule::Recovery),
                            "round {round}: {rule:?} destroyed a busy machine: {s:#?}"
                        );
                    }
                    if *rule == Rule::IdleTimeout {
                        assert!(!runner_busy, "round {round}: idle timeout on a busy runner");
                    }
                    // Nor one this very pass learned runs a live job.
                    let learned_busy = s.github_jobs.iter().any(|g| {
                        g.status == GithubJobStatus::InProgress
                            && g.runner_name.as_deref() == Some(&i.runner_name)
                            && s.jobs.iter().any(|j| j.job_id == g.job_id)
                    });
                    if learned_busy && NOW < i.expires_at && i.state != InstanceState::Destroying {
                        assert!(
                            matches!(
                                rule,
                                Rule::InstanceVanished | Rule::BootFailed | Rule::BootTimeout
                            ),
                            "round {round}: {rule:?} destroyed a machine GitHub says is busy: {s:#?}"
                        );
                    }
                    // Never on a runner's absence from a list not read.
                    if matches!(rule, Rule::IdleTimeout | Rule::BootTimeout) {
                        let place = s
                            .jobs
                            .iter()
                            .find(|j| j.job_id == i.job_id)
                            .map(|j| RepoRef {
                                installation_id: j.installation_id,
                                repo: j.repo.clone(),
                            });
                        assert!(
                            place.map_or(s.runners_unknown.is_empty(), |p| !s
                                .runners_unknown
                                .contains(&p)),
                            "round {round}: {rule:?} where runners were not listed: {s:#?}"
                        );
                    }
                }
                // Absence on an unreadable Vast.ai proves nothing.
                Action::MarkFailed { .. } | Action::Adopt { .. } => {
                    assert!(
                        s.cloud_known,
                        "round {round}: acted on an unknown cloud view"
                    )
                }
                Action::DeleteRunner { name, .. } => {
                    assert!(
                        s.runners.iter().any(|r| &r.name == name),
                        "round {round}: deleted a runner that was not listed"
                    );
                    // Never a runner a live machine still runs, in either read.
                    assert!(
                        !s.instances
                            .iter()
                            .chain(&s.late_instances)
                            .any(|i| &i.runner_name == name && i.state.may_exist()),
                        "round {round}: deleted a live machine's runner"
                    );
                }
                Action::DestroyOrphan { label, .. } => {
                    assert!(s.cloud_known);
                    assert!(
                        !s.instances
                            .iter()
                            .chain(&s.late_instances)
                            .any(|i| &i.label == label),
                        "round {round}: destroyed a machine a row knows"
                    );
                }
                _ => {}
            }
            if *rule == Rule::InstanceVanished {
                assert!(
                    s.cloud_known,
                    "round {round}: vanished on an unknown cloud view"
                );
            }
        }
        assert_eq!(actions, run(&s), "round {round}: plan is not pure");
    }
}

fn target_of(a: &Action) -> String {
    match a {
        Action::DestroyOrphan { provider_id, .. } => format!("cloud:{provider_id}"),
        Action::Adopt { instance_id, .. }
        | Action::MarkFailed { instance_id, .. }
        | Action::Destroy { instance_id, .. }
        | Action::MarkOnline { instance_id } => format!("instance:{instance_id}"),
        Action::CompleteJob { job_id, .. }
        | Action::MarkRunning { job_id, .. }
        | Action::RequeueJob {
            job: PlannedJob { job_id, .. },
            ..
        }
        | Action::TakeOverJob { job_id, .. }
        | Action::ReleaseJob { job_id } => {
            format!("job:{job_id}")
        }
        Action::DeleteRunner { runner_id, .. } => format!("runner:{runner_id}"),
        Action::SendCheckRun { job_id } => format!("check_run:{job_id}"),
    }
}
