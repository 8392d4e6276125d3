//! The job and instance state machines, as transition tables.
//!
//! The store refuses any change of state that is not in these tables
//! (compare-and-set on the current state), so a late or duplicated webhook
//! can never move a job backwards or resurrect a destroyed machine. The only
//! way around them is `Store::force_*`, used by crash recovery alone.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// A job, from GitHub's `queued` to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Known and rigger's; waiting for (another try at) a machine.
    Queued,
    /// A worker holds it and is choosing an offer and renting it.
    Provisioning,
    /// A machine is rented for it; its runner has not taken a job yet.
    WaitingForRunner,
    /// A runner is working on it.
    Running,
    /// GitHub holds it until a reviewer approves its deployment to an
    /// environment (`workflow_job.status` = `waiting`): nothing is rented,
    /// and the reconciler never puts it back in the queue. GitHub's later
    /// `queued` (status `queued`) moves it on; a rejection ends it.
    WaitingForApproval,
    /// GitHub says it is over (whatever its conclusion).
    Completed,
    /// It ended before any runner took it.
    Cancelled,
    /// rigger gave up on it; the reason says why.
    Failed,
}

/// Why a job failed, in a word an operator can count and alert on (the
/// job's `reason` says it in full).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobFailure {
    /// `.cirun.yml` cannot be read, no definition matches `runs-on`, or
    /// rigger's own settings cannot verify the runner.
    ConfigError,
    /// `.access.yml` does not allow it.
    Denied,
    /// Vast.ai refused to rent (the key, or the request).
    CloudRefused,
    /// Nothing could be rented within GitHub's own queue limit.
    NoCapacityTimeout,
    /// rigger panicked while provisioning it: a bug, recorded on the job
    /// instead of stopping the provisioner for every job.
    InternalError,
    /// The App was uninstalled or suspended on the repository's account,
    /// or the repository was taken out of its installation: rigger can no
    /// longer manage the job.
    AccessLost,
}

impl JobFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            JobFailure::ConfigError => "config_error",
            JobFailure::Denied => "denied",
            JobFailure::CloudRefused => "cloud_refused",
            JobFailure::NoCapacityTimeout => "no_capacity_timeout",
            JobFailure::InternalError => "internal_error",
            JobFailure::AccessLost => "access_lost",
        }
    }
}

impl JobState {
    pub const ALL: [JobState; 8] = [
        JobState::Queued,
        JobState::Provisioning,
        JobState::WaitingForRunner,
        JobState::Running,
        JobState::WaitingForApproval,
        JobState::Completed,
        JobState::Cancelled,
        JobState::Failed,
    ];

    /// The states a job may move to from this one.
    pub fn next(self) -> &'static [JobState] {
        use JobState::*;
        match self {
            Queued => &[Provisioning, Running, Completed, Cancelled, Failed],
            // Back to Queued when no offer fits or renting failed: it waits
            // with a backoff. Running when a runner (perhaps another's) took it.
            Provisioning => &[
                Queued,
                WaitingForRunner,
                Running,
                Completed,
                Cancelled,
                Failed,
            ],
            // Back to Queued when its machine died before a runner took it.
            WaitingForRunner => &[Queued, Running, Completed, Cancelled, Failed],
            Running => &[Completed, Failed],
            // Approved: queued at last. Running when a runner took it while
            // the approval's `queued` was lost; ended when it was rejected
            // or cancelled. Nothing moves a job back into it: a late
            // `waiting` delivery for a job already queued is stale.
            WaitingForApproval => &[Queued, Running, Completed, Cancelled],
            Completed | Cancelled | Failed => &[],
        }
    }

    pub fn can_become(self, to: JobState) -> bool {
        self.next().contains(&to)
    }

    pub fn is_terminal(self) -> bool {
        self.next().is_empty()
    }

    /// Where a job goes when GitHub says it is over: completed if a runner
    /// took it (rigger saw it running, or the webhook names the runner),
    /// else cancelled. None once it has ended.
    pub fn ended(self, runner_named: bool) -> Option<JobState> {
        if self.is_terminal() {
            None
        } else if self == JobState::Running || runner_named {
            Some(JobState::Completed)
        } else {
            Some(JobState::Cancelled)
        }
    }

    /// Where a job goes when a runner takes it: running, from any state
    /// that allows it.
    pub fn taken(self) -> Option<JobState> {
        self.can_become(JobState::Running)
            .then_some(JobState::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Provisioning => "provisioning",
            JobState::WaitingForRunner => "waiting_for_runner",
            JobState::Running => "running",
            JobState::WaitingForApproval => "waiting_for_approval",
            JobState::Completed => "completed",
            JobState::Cancelled => "cancelled",
            JobState::Failed => "failed",
        }
    }
}

/// A rented machine, from the row written before renting to its destruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// The row exists (I2: written before any money is spent); no create
    /// call yet. The provisioner now writes its rows straight in `creating`,
    /// once the runner is registered (one commit, not two); rows written in
    /// `requested` by earlier versions are still recovered by the reconciler.
    Requested,
    /// The create call is in flight; its outcome is not known yet.
    Creating,
    /// Vast.ai accepted it; the machine boots and runs the bootstrap script.
    Booting,
    /// Its runner is registered and idle.
    Online,
    /// Its runner took a job.
    Busy,
    /// A destroy call was made or must be retried.
    Destroying,
    /// Confirmed gone; its cost is final.
    Destroyed,
    /// Never came to exist (the create call failed for sure).
    Failed,
}

impl InstanceState {
    pub const ALL: [InstanceState; 8] = [
        InstanceState::Requested,
        InstanceState::Creating,
        InstanceState::Booting,
        InstanceState::Online,
        InstanceState::Busy,
        InstanceState::Destroying,
        InstanceState::Destroyed,
        InstanceState::Failed,
    ];

    pub fn next(self) -> &'static [InstanceState] {
        use InstanceState::*;
        match self {
            Requested => &[Creating, Failed, Destroying],
            Creating => &[Booting, Failed, Destroying],
            // Booting → Busy: a webhook can name the runner before the
            // runner's own "online" is seen.
            Booting => &[Online, Busy, Destroying],
            Online => &[Busy, Destroying],
            Busy => &[Destroying],
            Destroying => &[Destroyed],
            Destroyed | Failed => &[],
        }
    }

    pub fn can_become(self, to: InstanceState) -> bool {
        self.next().contains(&to)
    }

    pub fn is_terminal(self) -> bool {
        self.next().is_empty()
    }

    /// Whether a machine in this state may still run a job that waits: it
    /// is on its way or idle. A busy one runs another job to its end (its
    /// runner is ephemeral: one job, then gone); a destroying one is going.
    pub fn may_still_take_a_job(self) -> bool {
        matches!(
            self,
            InstanceState::Requested
                | InstanceState::Creating
                | InstanceState::Booting
                | InstanceState::Online
        )
    }

    /// Whether a machine may exist (and cost money) in this state.
    pub fn may_exist(self) -> bool {
        !matches!(
            self,
            InstanceState::Requested | InstanceState::Destroyed | InstanceState::Failed
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Requested => "requested",
            InstanceState::Creating => "creating",
            InstanceState::Booting => "booting",
            InstanceState::Online => "online",
            InstanceState::Busy => "busy",
            InstanceState::Destroying => "destroying",
            InstanceState::Destroyed => "destroyed",
            InstanceState::Failed => "failed",
        }
    }
}

/// A state name from the database that no state has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown state `{0}` in the database")]
pub struct UnknownState(pub String);

impl FromStr for JobState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|j| j.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

impl FromStr for InstanceState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        InstanceState::ALL
            .into_iter()
            .find(|j| j.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every (from, to) pair, written out: a change to the machine must
    /// change this table too.
    #[test]
    fn job_transitions_as_a_table() {
        use JobState::*;
        let allowed = [
            (Queued, Provisioning),
            (Queued, Running),
            (Queued, Completed),
            (Queued, Cancelled),
            (Queued, Failed),
            (Provisioning, Queued),
            (Provisioning, WaitingForRunner),
            (Provisioning, Running),
            (Provisioning, Completed),
            (Provisioning, Cancelled),
            (Provisioning, Failed),
            (WaitingForRunner, Queued),
            (WaitingForRunner, Running),
            (WaitingForRunner, Completed),
            (WaitingForRunner, Cancelled),
            (WaitingForRunner, Failed),
            (Running, Completed),
            (Running, Failed),
            (WaitingForApproval, Queued),
            (WaitingForApproval, Running),
            (WaitingForApproval, Completed),
            (WaitingForApproval, Cancelled),
        ];
        for from in JobState::ALL {
            for to in JobState::ALL {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    /// The moves a webhook makes in one statement whatever the job's state
    /// (`Store::advance_job`), written out.
    #[test]
    fn a_job_ends_and_is_taken_from_every_live_state() {
        use JobState::*;
        let ended = [
            (Queued, false, Some(Cancelled)),
            (Queued, true, Some(Completed)),
            (Provisioning, false, Some(Cancelled)),
            (Provisioning, true, Some(Completed)),
            (WaitingForRunner, false, Some(Cancelled)),
            (WaitingForRunner, true, Some(Completed)),
            (Running, false, Some(Completed)),
            (Running, true, Some(Completed)),
            (WaitingForApproval, false, Some(Cancelled)),
            (WaitingForApproval, true, Some(Completed)),
        ];
        for (from, named, to) in ended {
            assert_eq!(from.ended(named), to, "{from} (runner named: {named})");
            assert!(from.can_become(to.unwrap()));
        }
        for from in [Completed, Cancelled, Failed] {
            assert_eq!(from.ended(true), None);
            assert_eq!(from.taken(), None);
        }
        for from in [Queued, Provisioning, WaitingForRunner, WaitingForApproval] {
            assert_eq!(from.taken(), Some(Running));
        }
        assert_eq!(Running.taken(), None);
    }

    #[test]
    fn instance_transitions_as_a_table() {
        use InstanceState::*;
        let allowed = [
            (Requested, Creating),
            (Requested, Failed),
            (Requested, Destroying),
            (Creating, Booting),
            (Creating, Failed),
            (Creating, Destroying),
            (Booting, Online),
            (Booting, Busy),
            (Booting, Destroying),
            (Online, Busy),
            (Online, Destroying),
            (Busy, Destroying),
            (Destroying, Destroyed),
        ];
        for from in InstanceState::ALL {
            for to in InstanceState::ALL {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn terminal_states_lead_nowhere() {
        assert!(JobState::Completed.is_terminal());
        assert!(JobState::Cancelled.is_terminal());
        assert!(JobState::Failed.is_terminal());
        assert!(!JobState::Running.is_terminal());
        assert!(InstanceState::Destroyed.is_terminal());
        assert!(InstanceState::Failed.is_terminal());
        // Nothing comes back from the dead.
        for s in InstanceState::ALL {
            assert!(!InstanceState::Destroyed.can_become(s));
        }
    }

    #[test]
    fn names_round_trip() {
        for s in JobState::ALL {
            assert_eq!(s.as_str().parse::<JobState>().unwrap(), s);
        }
        for s in InstanceState::ALL {
            assert_eq!(s.as_str().parse::<InstanceState>().unwrap(), s);
        }
        assert!("zombie".parse::<InstanceState>().is_err());
    }
}
