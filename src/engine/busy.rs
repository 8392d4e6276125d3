//! I4, decided in one place: never destroy a busy runner before its job
//! ends, except at max lifetime.
//!
//! Every path that wants a machine gone — a job's `completed`, the
//! reconciler's rules, a machine reporting its own end — gathers what it
//! knows of the machine into [`Facts`] and asks [`verdict`]; it then only
//! carries the answer out. Nothing else decides whether a machine may be
//! busy.
//!
//! Why a refused deregistration keeps a machine: GitHub hands a job to any
//! idle runner with the job's labels, and says so by webhook, which may be
//! late or lost. A runner rigger never saw take a job may have taken one a
//! moment ago. Deleting its registration first closes that door (GitHub
//! gives no job to a deleted runner) and asks GitHub at the same time:
//! GitHub refuses to delete a runner that is running a job.

use super::state::InstanceState;

/// Why a machine is wanted gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Nothing can be running on it: it vanished or exited on Vast.ai, its
    /// container cannot start, its runner never came online, or its
    /// bootstrap reported that its runner exited.
    CannotRun,
    /// It lives, but rigger has no use for it: its job ended, its runner
    /// stayed idle, its host stays unreachable.
    Unwanted,
    /// The App lost access to the installation or repository of its job
    /// (uninstalled, suspended, the repository removed). GitHub refuses
    /// rigger's tokens there from then on: its runner cannot be
    /// deregistered nor GitHub asked, and no webhook tells its job's end.
    /// A runner registration is the repository's, not the App's: GitHub
    /// documents only that the App loses access to the account's
    /// resources, not that runners go or their jobs stop. So a runner
    /// that took its job runs it to the end; being just-in-time, it then
    /// exits, and the bootstrap destroys the machine itself, with the max
    /// lifetime as the backstop.
    AccessLost,
}

/// What GitHub's runner list, read this pass, says of its runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed {
    /// Running a job.
    Busy,
    /// Listed and not running a job (online or offline).
    Idle,
    /// Not listed where it is registered.
    Absent,
    /// Not read (no listing on this path, or its place could not be read).
    Unknown,
}

/// What is known about one machine when something wants it gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    pub state: InstanceState,
    /// A live job is bound to its runner's name: in the store, or learned
    /// this very pass from GitHub's view of a job. A job rigger stopped
    /// following when the App lost its repository counts too: it goes on
    /// on GitHub.
    pub serves_live_job: bool,
    /// Its runner is known to have run a job that is over (that job's
    /// `completed`, or GitHub's view of it, names the runner). A runner
    /// rigger saw take a job (state `busy`) with no live job bound to it
    /// has run its job too. rigger's runners are ephemeral: one job each.
    pub ran_ended_job: bool,
    pub listed: Listed,
    /// rigger knows its runner's registration id, so it can deregister it
    /// (unless the App lost access there: see [`Why::AccessLost`]).
    pub registered: bool,
    pub past_max_lifetime: bool,
    pub why: Why,
}

/// What to do with the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Destroy it now.
    Destroy,
    /// Its runner may have just taken a job: deregister it first, and keep
    /// the machine if GitHub refuses (or cannot be asked); destroy it once
    /// the runner is deregistered.
    DeregisterFirst,
    /// It is running a job: leave it alone.
    Keep,
}

/// The one decision of I4. Pure.
pub fn verdict(f: &Facts) -> Verdict {
    // The one exception to I4; and a destroy already begun is finished.
    if f.past_max_lifetime || f.state == InstanceState::Destroying {
        return Verdict::Destroy;
    }
    // A machine not booted yet runs no runner; nor one that cannot run.
    let booted = !matches!(f.state, InstanceState::Requested | InstanceState::Creating);
    if f.why == Why::CannotRun || !booted {
        return Verdict::Destroy;
    }
    if f.serves_live_job {
        return Verdict::Keep;
    }
    // Its one job is over: whatever GitHub's list still says, the runner
    // has nothing more to run.
    if f.state == InstanceState::Busy || f.ran_ended_job {
        return Verdict::Destroy;
    }
    // Never seen taking a job: GitHub may know better, where it can be
    // asked. Where the App lost access it cannot, and the machine can get
    // no job rigger would see: it goes at once.
    let can_deregister = f.registered && f.why != Why::AccessLost;
    match (f.listed, can_deregister) {
        (Listed::Busy, _) => Verdict::Keep,
        (_, true) => Verdict::DeregisterFirst,
        // No registration to delete: none was made, or it is gone, and a
        // runner not registered takes no job.
        (_, false) => Verdict::Destroy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use InstanceState::*;

    const STATES: [InstanceState; 6] = [Requested, Creating, Booting, Online, Busy, Destroying];
    const LISTED: [Listed; 4] = [Listed::Busy, Listed::Idle, Listed::Absent, Listed::Unknown];

    /// Every combination of the facts a machine in a live state can have.
    fn every_machine() -> Vec<Facts> {
        let mut all = Vec::new();
        for state in STATES {
            for listed in LISTED {
                for why in [Why::CannotRun, Why::Unwanted, Why::AccessLost] {
                    for bits in 0..16u8 {
                        all.push(Facts {
                            state,
                            serves_live_job: bits & 1 != 0,
                            ran_ended_job: bits & 2 != 0,
                            listed,
                            registered: bits & 4 != 0,
                            past_max_lifetime: bits & 8 != 0,
                            why,
                        });
                    }
                }
            }
        }
        all
    }

    #[test]
    fn the_table() {
        let m = |state, serves, ran, listed, registered, why| Facts {
            state,
            serves_live_job: serves,
            ran_ended_job: ran,
            listed,
            registered,
            past_max_lifetime: false,
            why,
        };
        use Listed as L;
        use Verdict::*;
        use Why::*;
        let table = [
            // A sibling's job runs on it (store or learned this pass): kept.
            (m(Booting, true, false, L::Unknown, true, Unwanted), Keep),
            (m(Online, true, false, L::Idle, true, Unwanted), Keep),
            (m(Busy, true, false, L::Busy, true, Unwanted), Keep),
            // GitHub lists its runner busy, and rigger never saw it take a job.
            (m(Booting, false, false, L::Busy, true, Unwanted), Keep),
            (m(Online, false, false, L::Busy, false, Unwanted), Keep),
            // Its one job is over.
            (m(Busy, false, false, L::Busy, true, Unwanted), Destroy),
            (m(Booting, false, true, L::Unknown, true, Unwanted), Destroy),
            (m(Online, false, true, L::Busy, true, Unwanted), Destroy),
            // Never seen taking a job: ask GitHub by deregistering first.
            (
                m(Booting, false, false, L::Unknown, true, Unwanted),
                DeregisterFirst,
            ),
            (
                m(Online, false, false, L::Idle, true, Unwanted),
                DeregisterFirst,
            ),
            (
                m(Online, false, false, L::Absent, true, Unwanted),
                DeregisterFirst,
            ),
            // Nothing to deregister, and GitHub does not say busy.
            (m(Online, false, false, L::Idle, false, Unwanted), Destroy),
            (
                m(Booting, false, false, L::Unknown, false, Unwanted),
                Destroy,
            ),
            // Nothing can run on it, whatever it was doing.
            (m(Busy, true, false, L::Busy, true, CannotRun), Destroy),
            (m(Booting, false, false, L::Busy, true, CannotRun), Destroy),
            // Not booted yet: no runner of it runs.
            (
                m(Creating, false, false, L::Unknown, true, Unwanted),
                Destroy,
            ),
            (m(Requested, false, false, L::Idle, true, Unwanted), Destroy),
            // A destroy already begun is finished.
            (m(Destroying, true, false, L::Busy, true, Unwanted), Destroy),
            // The App lost the job's repository: a runner running its job
            // is kept to finish it; one that took none goes at once (it
            // cannot be deregistered, nor GitHub asked).
            (m(Busy, true, false, L::Unknown, true, AccessLost), Keep),
            (m(Online, true, false, L::Unknown, true, AccessLost), Keep),
            (
                m(Booting, false, false, L::Unknown, true, AccessLost),
                Destroy,
            ),
            (
                m(Online, false, false, L::Unknown, true, AccessLost),
                Destroy,
            ),
            (m(Online, false, false, L::Busy, true, AccessLost), Keep),
            (m(Busy, false, false, L::Unknown, true, AccessLost), Destroy),
            (
                m(Creating, false, false, L::Unknown, true, AccessLost),
                Destroy,
            ),
        ];
        for (facts, want) in table {
            assert_eq!(verdict(&facts), want, "{facts:?}");
        }
    }

    #[test]
    fn max_lifetime_ends_every_machine() {
        for f in every_machine().into_iter().filter(|f| f.past_max_lifetime) {
            assert_eq!(verdict(&f), Verdict::Destroy, "{f:?}");
        }
    }

    #[test]
    fn a_machine_that_may_be_busy_is_never_destroyed_outright() {
        for f in every_machine() {
            let alive = f.why != Why::CannotRun
                && !f.past_max_lifetime
                && matches!(f.state, Booting | Online | Busy);
            let job_done = f.state == InstanceState::Busy || f.ran_ended_job;
            // Something says its runner runs a live job: kept.
            if alive && (f.serves_live_job || (!job_done && f.listed == Listed::Busy)) {
                assert_eq!(verdict(&f), Verdict::Keep, "{f:?}");
            }
            // Never seen taking a job, and GitHub can be asked: asked first.
            if alive && !job_done && f.registered && f.why == Why::Unwanted {
                assert_ne!(verdict(&f), Verdict::Destroy, "{f:?}");
            }
        }
    }

    #[test]
    fn where_access_is_lost_only_a_runner_running_a_job_keeps_its_machine() {
        for f in every_machine()
            .into_iter()
            .filter(|f| f.why == Why::AccessLost)
        {
            let booted = matches!(f.state, Booting | Online | Busy);
            let job_done = f.state == InstanceState::Busy || f.ran_ended_job;
            let running = f.serves_live_job || (!job_done && f.listed == Listed::Busy);
            let want = if booted && !f.past_max_lifetime && running {
                Verdict::Keep
            } else {
                Verdict::Destroy
            };
            assert_eq!(verdict(&f), want, "{f:?}");
        }
    }

    #[test]
    fn deregistering_first_needs_a_registration_and_keep_needs_a_reason() {
        for f in every_machine() {
            match verdict(&f) {
                Verdict::DeregisterFirst => {
                    assert!(f.registered && f.why != Why::AccessLost, "{f:?}")
                }
                Verdict::Keep => assert!(
                    f.serves_live_job || f.listed == Listed::Busy,
                    "kept for nothing: {f:?}"
                ),
                Verdict::Destroy => {}
            }
        }
    }
}
