//! Rules 6, 12 and 13 against Vast.ai's host states, as a table: for each
//! machine state and what Vast.ai and GitHub say of it, what the
//! reconciler does.

use super::plan::*;
use super::plan_tests::{
    MIN, NOW, cloud, inst, job, octo_ml, planned, queued_on_github, run, runner, snapshot,
};
use crate::engine::state::{InstanceState, JobState};

/// What one row of the table sets up.
#[derive(Debug, Clone, Copy)]
struct Case {
    state: InstanceState,
    cloud: CloudStatus,
    /// Minutes Vast.ai has listed it unreachable (none: never seen so).
    unreachable_for: Option<i64>,
    /// GitHub's runner: `None` not listed, else (online, busy).
    runner: Option<(bool, bool)>,
    /// Whether GitHub's runners could be read where it is.
    runners_known: bool,
}

const BASE: Case = Case {
    state: InstanceState::Online,
    cloud: CloudStatus::Unreachable,
    unreachable_for: Some(11),
    runner: Some((false, false)),
    runners_known: true,
};

fn decide(c: Case) -> Option<Rule> {
    // Online 3 minutes ago: well within the idle timeout.
    let mut i = inst("a", 1, c.state, NOW - 3 * MIN);
    i.runner_id = Some(7);
    let job_state = match c.state {
        InstanceState::Busy => JobState::Running,
        _ => JobState::WaitingForRunner,
    };
    let mut s = snapshot(vec![job(1, job_state, NOW)], vec![i.clone()]);
    s.cloud = vec![CloudView {
        detail: format!("{:?}: host said so", c.cloud),
        ..cloud(&i, c.cloud)
    }];
    if let Some(m) = c.unreachable_for {
        s.unreachable_since.insert(i.id.clone(), NOW - m * MIN);
    }
    if let Some((online, busy)) = c.runner {
        s.runners.push(runner(7, &i.runner_name, online, busy));
    }
    if !c.runners_known {
        s.runners.clear();
        s.runners_unknown.insert(octo_ml());
    }
    let actions = run(&s);
    assert!(actions.len() <= 1, "{c:?}: {actions:?}");
    actions.first().map(|(rule, _)| *rule)
}

#[test]
fn transient_host_states_are_waited_out_and_a_busy_machine_is_never_killed_for_one() {
    use CloudStatus::*;
    use InstanceState::*;
    let table: &[(Case, Option<Rule>, &str)] = &[
        (
            BASE,
            Some(Rule::Unreachable),
            "online, unreachable past the grace, runner offline",
        ),
        (
            Case {
                unreachable_for: Some(9),
                ..BASE
            },
            None,
            "within the grace",
        ),
        (
            Case {
                unreachable_for: None,
                ..BASE
            },
            None,
            "first seen unreachable this pass",
        ),
        (
            Case {
                runner: Some((true, false)),
                ..BASE
            },
            None,
            "GitHub shows its runner online: the host works for us",
        ),
        (
            Case {
                runner: Some((true, true)),
                ..BASE
            },
            None,
            "GitHub shows it busy",
        ),
        (
            Case {
                runners_known: false,
                ..BASE
            },
            None,
            "GitHub's runners unknown there: no proof the runner is down",
        ),
        (
            Case {
                state: Busy,
                unreachable_for: Some(300),
                ..BASE
            },
            None,
            "busy: never, however long",
        ),
        (
            Case {
                state: Booting,
                unreachable_for: None,
                runner: None,
                ..BASE
            },
            Some(Rule::InstanceVanished),
            "booting: Vast.ai says it will never reach running",
        ),
        (
            Case {
                cloud: Exited,
                unreachable_for: None,
                ..BASE
            },
            Some(Rule::InstanceVanished),
            "exited (stopped, outbid) is gone",
        ),
        (
            Case {
                state: Busy,
                cloud: Exited,
                unreachable_for: None,
                runner: Some((true, true)),
                ..BASE
            },
            Some(Rule::InstanceVanished),
            "a busy machine that exited is gone too",
        ),
        (
            Case {
                state: Booting,
                cloud: BootFailed,
                unreachable_for: None,
                runner: None,
                ..BASE
            },
            Some(Rule::BootFailed),
            "booting with a fatal status_msg: at once",
        ),
        (
            Case {
                state: Booting,
                cloud: Loading,
                unreachable_for: None,
                runner: None,
                ..BASE
            },
            None,
            "still loading",
        ),
        (
            Case {
                cloud: Running,
                unreachable_for: None,
                ..BASE
            },
            None,
            "running",
        ),
    ];
    for (case, want, why) in table {
        assert_eq!(decide(*case), *want, "{why}: {case:?}");
    }
}

#[test]
fn a_failed_boot_keeps_its_log_requeues_its_job_and_says_why() {
    let i = inst("a", 1, InstanceState::Booting, NOW - MIN);
    let mut s = snapshot(
        vec![job(1, JobState::WaitingForRunner, NOW)],
        vec![i.clone()],
    );
    s.cloud = vec![CloudView {
        detail: "created: Error response from daemon: manifest unknown".into(),
        ..cloud(&i, CloudStatus::BootFailed)
    }];
    queued_on_github(&mut s, 1);
    match &run(&s)[..] {
        [
            (
                Rule::BootFailed,
                Action::Destroy {
                    keep_logs,
                    requeue_job,
                    reason,
                    ..
                },
            ),
        ] => {
            assert!(*keep_logs);
            assert_eq!(*requeue_job, Some(planned(1)));
            assert!(reason.contains("manifest unknown"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Nothing is decided on a cloud view that could not be read.
    s.cloud_known = false;
    assert_eq!(run(&s), vec![]);
}

#[test]
fn an_unreachable_machine_given_up_is_deregistered_and_its_job_served_again() {
    let mut i = inst("a", 1, InstanceState::Online, NOW - 3 * MIN);
    i.runner_id = Some(7);
    let mut s = snapshot(
        vec![job(1, JobState::WaitingForRunner, NOW)],
        vec![i.clone()],
    );
    s.cloud = vec![cloud(&i, CloudStatus::Unreachable)];
    s.unreachable_since.insert(i.id.clone(), NOW - 10 * MIN);
    queued_on_github(&mut s, 1);
    match &run(&s)[..] {
        [
            (
                Rule::Unreachable,
                Action::Destroy {
                    deregister_runner,
                    requeue_job,
                    ..
                },
            ),
        ] => {
            assert_eq!(*deregister_runner, Some(Deregister::KeepIfRefused(7)));
            assert_eq!(*requeue_job, Some(planned(1)));
        }
        other => panic!("{other:?}"),
    }
    let longer = Limits {
        unreachable_grace_ms: 30 * MIN,
        ..Limits::default()
    };
    assert_eq!(plan(&s, NOW, &longer), vec![], "the grace is a setting");
}
