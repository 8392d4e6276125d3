//! Rule 14 (a waiting job with no machine that can run it), re-queues only
//! on GitHub's word, and whom `to_confirm` asks.

use super::plan::*;
use super::plan_tests::{MIN, NOW, cloud, inst, job, planned, queued_on_github, run, snapshot};
use crate::engine::state::{InstanceState, JobState};

fn github_says(s: &mut Snapshot, job_id: i64, status: GithubJobStatus) {
    s.github_jobs.push(GithubJobView {
        job_id,
        status,
        conclusion: (status == GithubJobStatus::Completed).then(|| "success".into()),
        runner_name: (status != GithubJobStatus::Queued).then(|| "elsewhere".into()),
    });
}

fn stranded_requeue() -> (Rule, Action) {
    (
        Rule::Stranded,
        Action::RequeueJob {
            job: planned(1),
            reason: "no machine is left to run it: another job took the one rented for it".into(),
        },
    )
}

/// Job 1 waits; its machine `a` runs job 2, a sibling GitHub gave it.
fn machine_taken_by_a_sibling() -> Snapshot {
    snapshot(
        vec![
            job(1, JobState::WaitingForRunner, NOW - MIN),
            job(2, JobState::Running, NOW - MIN),
        ],
        vec![inst("a", 1, InstanceState::Busy, NOW - MIN)],
    )
}

#[test]
fn rule_14_a_waiting_job_whose_machine_runs_a_sibling_is_requeued_once_github_says_queued() {
    let mut s = machine_taken_by_a_sibling();
    assert_eq!(run(&s), vec![], "not without GitHub's word");
    assert_eq!(to_confirm(&s, NOW, &Limits::default()), vec![1]);
    queued_on_github(&mut s, 1);
    assert_eq!(run(&s), vec![stranded_requeue()]);
    assert_eq!(
        to_confirm(&s, NOW, &Limits::default()),
        Vec::<i64>::new(),
        "asked once a pass"
    );
}

#[test]
fn rule_14_not_when_github_runs_or_finished_the_job() {
    for status in [GithubJobStatus::InProgress, GithubJobStatus::Completed] {
        let mut s = machine_taken_by_a_sibling();
        github_says(&mut s, 1, status);
        let actions = run(&s);
        assert!(
            !actions
                .iter()
                .any(|(_, a)| matches!(a, Action::RequeueJob { .. })),
            "{status:?}: {actions:?}"
        );
    }
}

#[test]
fn rule_14_not_while_a_machine_on_its_way_or_idle_can_run_it() {
    for state in [
        InstanceState::Requested,
        InstanceState::Creating,
        InstanceState::Booting,
        InstanceState::Online,
    ] {
        let mut s = machine_taken_by_a_sibling();
        let b = inst("b", 1, state, NOW - MIN);
        if b.provider_id.is_some() {
            s.cloud.push(cloud(&b, CloudStatus::Running));
        }
        s.instances.push(b);
        s.late_instances = s.instances.clone();
        queued_on_github(&mut s, 1);
        assert_eq!(run(&s), vec![], "{state:?}");
        assert_eq!(to_confirm(&s, NOW, &Limits::default()), Vec::<i64>::new());
    }
    // A dying machine will not run it.
    let mut s = machine_taken_by_a_sibling();
    s.instances
        .push(inst("b", 1, InstanceState::Destroying, NOW - 10));
    s.late_instances = s.instances.clone();
    queued_on_github(&mut s, 1);
    assert!(run(&s).contains(&stranded_requeue()));
}

#[test]
fn rule_14_a_machine_rented_while_the_views_were_read_counts() {
    let mut s = machine_taken_by_a_sibling();
    s.late_instances
        .push(inst("b", 1, InstanceState::Booting, NOW));
    queued_on_github(&mut s, 1);
    assert_eq!(run(&s), vec![]);
}

#[test]
fn rule_14_leaves_provisioning_and_queued_jobs_to_their_worker() {
    for state in [JobState::Queued, JobState::Provisioning] {
        let mut s = snapshot(vec![job(1, state, NOW)], vec![]);
        queued_on_github(&mut s, 1);
        assert_eq!(run(&s), vec![], "{state:?}");
    }
}

#[test]
fn a_vanished_machines_job_is_requeued_only_on_githubs_word() {
    let i = inst("a", 1, InstanceState::Booting, NOW - 2 * MIN);
    let mut s = snapshot(vec![job(1, JobState::WaitingForRunner, NOW)], vec![i]);
    s.cloud.clear();
    let limits = Limits::default();
    assert_eq!(
        to_confirm(&s, NOW, &limits),
        vec![1],
        "asked before renting"
    );
    // Not asked (rate-limited): destroyed, not re-queued.
    let actions = run(&s);
    assert!(matches!(
        &actions[..],
        [(
            Rule::InstanceVanished,
            Action::Destroy {
                requeue_job: None,
                ..
            }
        )]
    ));
    // GitHub runs it, or finished it: no second machine.
    for status in [GithubJobStatus::InProgress, GithubJobStatus::Completed] {
        let mut s = s.clone();
        github_says(&mut s, 1, status);
        assert!(
            run(&s).iter().all(|(_, a)| !matches!(
                a,
                Action::Destroy {
                    requeue_job: Some(_),
                    ..
                } | Action::RequeueJob { .. }
            )),
            "{status:?}"
        );
    }
}

#[test]
fn to_confirm_asks_nothing_of_a_healthy_world_nor_of_a_worker_that_died() {
    let s = snapshot(
        vec![
            job(1, JobState::WaitingForRunner, NOW),
            job(2, JobState::Running, NOW),
        ],
        vec![
            inst("a", 1, InstanceState::Booting, NOW - MIN),
            inst("b", 2, InstanceState::Busy, NOW - MIN),
        ],
    );
    assert_eq!(to_confirm(&s, NOW, &Limits::default()), Vec::<i64>::new());
    // Rule 9 takes over a job whose worker died without asking GitHub.
    let s = snapshot(vec![job(1, JobState::Provisioning, NOW - 6 * MIN)], vec![]);
    assert_eq!(to_confirm(&s, NOW, &Limits::default()), Vec::<i64>::new());
    assert!(matches!(
        &run(&s)[..],
        [(Rule::Recovery, Action::TakeOverJob { .. })]
    ));
}

#[test]
fn a_requeue_names_the_state_and_attempt_it_was_planned_from() {
    let mut s = machine_taken_by_a_sibling();
    s.jobs[0].attempts = 3;
    queued_on_github(&mut s, 1);
    match &run(&s)[..] {
        [(Rule::Stranded, Action::RequeueJob { job, .. })] => assert_eq!(
            *job,
            PlannedJob {
                job_id: 1,
                state: JobState::WaitingForRunner,
                attempts: 3
            }
        ),
        other => panic!("{other:?}"),
    }
}
