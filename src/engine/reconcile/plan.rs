//! The reconciler's decisions: a pure function from three views of the world
//! (the store, Vast.ai, GitHub) and the time to the actions that make them
//! agree. Webhooks are hints; this is the truth (design §4).
//!
//! Every rule is a named function, so each is tested on its own, and every
//! action says which rule asked for it (for metrics and the event log).
//! Rules 1–9 are design §4's; rule 10 sends the check-run updates GitHub
//! did not take (`engine::report`); rule 11 releases a job held for an
//! environment's approval once GitHub has queued it. Rules 12 and 13
//! are Vast.ai's host states: a machine whose container cannot start is given up at once (13);
//! one whose host is unreachable for a while (`unknown`, `offline`,
//! `frozen`, which hosts come back from) is given up only after a grace,
//! and never while busy (12). Rule 14 holds that every job waiting for a
//! runner has a machine that can still run it, or gets one: GitHub gives a
//! job to any idle runner with its labels, so a sibling may take the
//! machine rented for it.
//!
//! Nothing is rented again on a guess: a job goes back to the queue only
//! on GitHub's word that it is still queued, asked this pass
//! ([`to_confirm`] picks whom to ask). And every re-queue names the state
//! and attempt it was planned from ([`PlannedJob`]): a replica whose
//! snapshot another replica's pass overtook leaves the job alone.
//!
//! No rule decides I4 (never destroy a busy runner before its job ends,
//! except at max lifetime) by itself: each says why it wants a machine gone
//! and `guarded` asks [`busy::verdict`], with what this snapshot knows —
//! including a job GitHub said, this very pass, runs on the machine.
//!
//! GitHub's runner view is known place by place ([`Snapshot::runners_unknown`]):
//! one installation waiting out a rate limit for an hour must not stop the
//! rules that need the view (3, 4, 7) for every other installation, whose
//! idle machines would bill meanwhile. [`runners_known_for`] decides, for
//! each machine, whether its place was read; where it was not, nothing is
//! destroyed on the strength of a runner's absence.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::engine::busy::{self, Facts, Listed, Verdict, Why};
use crate::engine::ports::RepoRef;
use crate::engine::state::{InstanceState, JobState};
use crate::store::{InstanceRow, JobRow};

/// A Vast.ai instance that carries our controller label.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudView {
    pub provider_id: String,
    pub label: String,
    pub status: CloudStatus,
    /// Vast.ai's own words for the state (`created: manifest unknown …`).
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloudStatus {
    Loading,
    Running,
    /// Stopped or exited: it no longer runs a job but may still bill storage.
    Exited,
    /// Its host is not heard from, disconnected or frozen: it may come back,
    /// and a job may be running there all along.
    Unreachable,
    /// Its container will never start (the detail says why).
    BootFailed,
}

/// A GitHub runner whose name carries our prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerView {
    pub id: i64,
    pub name: String,
    pub online: bool,
    pub busy: bool,
    /// Where it is registered, to delete it there.
    pub installation_id: i64,
    /// `owner/name` for a repository runner, `owner` for an org runner.
    pub scope: String,
}

/// What GitHub says of a job rigger asked about.
#[derive(Debug, Clone, PartialEq)]
pub struct GithubJobView {
    pub job_id: i64,
    pub status: GithubJobStatus,
    pub conclusion: Option<String>,
    pub runner_name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GithubJobStatus {
    Queued,
    /// Held for a deployment's approval: no runner may take it yet.
    Waiting,
    InProgress,
    Completed,
}

/// Everything `plan` looks at, read at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Jobs not in a terminal state.
    pub jobs: Vec<JobRow>,
    /// Instances not destroyed or failed, read before Vast.ai and GitHub.
    pub instances: Vec<InstanceRow>,
    /// The same, read again after Vast.ai and GitHub were listed. A machine
    /// created (or a runner registered) while they were being listed has
    /// its row only here: it is nobody's orphan. Rules that act on a row's
    /// absence from Vast.ai use the earlier read, whose machines Vast.ai
    /// already had when it was listed.
    pub late_instances: Vec<InstanceRow>,
    /// Vast.ai's instances with our controller label.
    pub cloud: Vec<CloudView>,
    /// Whether `cloud` could be read; when not, no rule acts on its absence.
    pub cloud_known: bool,
    /// GitHub runners with our name prefix, where they could be listed.
    pub runners: Vec<RunnerView>,
    /// The repositories whose runners could not be listed (their
    /// installation rate-limited, GitHub failing there): no rule acts on
    /// the absence of a runner of theirs. Every other place is known.
    pub runners_unknown: HashSet<RepoRef>,
    /// GitHub's view of the jobs [`quiet_jobs`] picked.
    pub github_jobs: Vec<GithubJobView>,
    /// Since when each runner in [`unowned_runners`] has been seen with no
    /// row (kept by the caller from one pass to the next).
    pub unowned_runners_since: HashMap<i64, i64>,
    /// Check runs with content GitHub has not taken yet, soonest first.
    pub unsent_check_runs: Vec<UnsentCheckRun>,
    /// Since when each instance (by row id) has been seen unreachable on
    /// Vast.ai, pass after pass (kept by the caller).
    pub unreachable_since: HashMap<String, i64>,
    /// Runners of live machines running a job rigger stopped following
    /// when the App lost its repository: the job goes on on GitHub, so
    /// the machine is busy (see [`busy::Why::AccessLost`]).
    pub access_lost_runners: HashSet<String>,
}

/// A job's check run whose wanted content GitHub does not have yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsentCheckRun {
    pub job_id: i64,
    /// Not before: the job's backoff, or GitHub's rate-limit reset.
    pub due_at: i64,
}

/// Most check-run updates one pass sends: each is a GitHub call.
pub const CHECK_RUNS_PER_PASS: usize = 20;

/// Timeouts, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Limits {
    /// A create call with no answer for this long is looked up by label.
    pub create_timeout_ms: i64,
    /// From create to the runner coming online.
    pub bootstrap_timeout_ms: i64,
    /// Online with no job for this long: its job went elsewhere or was cancelled.
    pub idle_timeout_ms: i64,
    /// A job with no news for this long is checked on GitHub.
    pub job_quiet_ms: i64,
    /// A destroy not confirmed is tried again after this long, doubling
    /// with each refusal (`retry::destroy_backoff_ms`)…
    pub destroy_retry_ms: i64,
    /// …up to this.
    pub destroy_retry_max_ms: i64,
    /// A job left in `provisioning` this long lost its worker.
    pub provisioning_timeout_ms: i64,
    /// A runner registration with no row is deleted after this long: it is
    /// registered just before its row is written, and costs nothing.
    pub stale_runner_grace_ms: i64,
    /// An online (idle) machine whose host is unreachable this long is
    /// given up; hosts often come back from a lost heartbeat.
    pub unreachable_grace_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        const MIN: i64 = 60_000;
        Limits {
            create_timeout_ms: 5 * MIN,
            bootstrap_timeout_ms: 20 * MIN,
            idle_timeout_ms: 10 * MIN,
            job_quiet_ms: 10 * MIN,
            destroy_retry_ms: 5_000,
            destroy_retry_max_ms: 30_000,
            provisioning_timeout_ms: 5 * MIN,
            stale_runner_grace_ms: 2 * MIN,
            unreachable_grace_ms: 10 * MIN,
        }
    }
}

/// Which rule of design §4 asked for an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    Orphan,
    StuckCreate,
    BootTimeout,
    IdleTimeout,
    JobCompletedElsewhere,
    InstanceVanished,
    StaleRunner,
    MaxLifetime,
    Recovery,
    CheckRunUnsent,
    Approved,
    Unreachable,
    BootFailed,
    Stranded,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Orphan => "orphan",
            Rule::StuckCreate => "stuck_create",
            Rule::BootTimeout => "boot_timeout",
            Rule::IdleTimeout => "idle_timeout",
            Rule::JobCompletedElsewhere => "job_completed_elsewhere",
            Rule::InstanceVanished => "instance_vanished",
            Rule::StaleRunner => "stale_runner",
            Rule::MaxLifetime => "max_lifetime",
            Rule::Recovery => "recovery",
            Rule::CheckRunUnsent => "check_run_unsent",
            Rule::Approved => "approved",
            Rule::Unreachable => "unreachable",
            Rule::BootFailed => "boot_failed",
            Rule::Stranded => "stranded",
        }
    }
}

/// A job to put back in the queue, as the snapshot showed it: the re-queue
/// happens only if the job is still so (see `Store::requeue_job_as_planned`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedJob {
    pub job_id: i64,
    pub state: JobState,
    pub attempts: i64,
}

impl PlannedJob {
    pub fn of(j: &JobRow) -> PlannedJob {
        PlannedJob {
            job_id: j.job_id,
            state: j.state,
            attempts: j.attempts,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Destroy a Vast.ai instance no live row owns (rule 1).
    DestroyOrphan { provider_id: String, label: String },
    /// The create call's instance exists after all: take it (rule 2).
    Adopt {
        instance_id: String,
        provider_id: String,
    },
    /// The create call never produced an instance: mark it failed and give
    /// the job back to the queue if it is still waiting (rule 2).
    MarkFailed {
        instance_id: String,
        /// The state it was planned from: a row that moved since (its
        /// create answered, another replica adopted or failed it) is left
        /// alone, and its job with it.
        from: InstanceState,
        requeue_job: Option<PlannedJob>,
    },
    /// Keep the instance's logs, destroy it, and re-queue its job if GitHub
    /// still waits for it (rules 3, 4, 6, 8 and teardown after the job).
    Destroy {
        instance_id: String,
        /// The state it was planned from: I4 was decided for that state, so
        /// a machine that moved since (its runner took a job meanwhile) is
        /// left to the next pass.
        from: InstanceState,
        /// Collect the boot log first (rule 3).
        keep_logs: bool,
        /// Deregister this runner first, and what a refusal means.
        deregister_runner: Option<Deregister>,
        requeue_job: Option<PlannedJob>,
        reason: String,
    },
    /// GitHub says the job is over (rule 5).
    CompleteJob {
        job_id: i64,
        conclusion: Option<String>,
        runner_name: Option<String>,
    },
    /// GitHub says another runner took the job (rule 5).
    MarkRunning { job_id: i64, runner_name: String },
    /// Its runner is online and idle: from now it counts toward the idle
    /// timeout (rule 4).
    MarkOnline { instance_id: String },
    /// Delete a runner registration no live instance has (rule 7).
    DeleteRunner {
        runner_id: i64,
        name: String,
        installation_id: i64,
        scope: String,
    },
    /// Put a job whose worker died (rule 9), or that has no machine left
    /// to run it (rule 14), back in the queue.
    RequeueJob { job: PlannedJob, reason: String },
    /// Take a job from a provisioning worker whose lease ran out (rule 9):
    /// back in the queue, if it is still at this attempt and its lease
    /// still out when this is carried out.
    TakeOverJob { job_id: i64, attempt: i64 },
    /// Send the job's check-run content GitHub did not take (rule 10).
    SendCheckRun { job_id: i64 },
    /// GitHub queued a job rigger holds as waiting for an approval: the
    /// approval's `queued` never arrived (rule 11).
    ReleaseJob { job_id: i64 },
}

/// A runner to deregister before its machine is destroyed, and whether
/// GitHub's refusal keeps the machine: decided here by [`busy::verdict`],
/// never again by `apply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deregister {
    /// Its runner may have just taken a job: if GitHub refuses (it is busy)
    /// or cannot be asked, the machine is kept (I4).
    KeepIfRefused(i64),
    /// Deregistered on the way out, whatever GitHub answers.
    Anyway(i64),
}

impl Deregister {
    pub fn runner_id(self) -> i64 {
        match self {
            Deregister::KeepIfRefused(id) | Deregister::Anyway(id) => id,
        }
    }
}

impl Action {
    /// The job it acts on, where it names one (for its span).
    pub fn job_id(&self) -> Option<i64> {
        match self {
            Action::CompleteJob { job_id, .. }
            | Action::MarkRunning { job_id, .. }
            | Action::SendCheckRun { job_id }
            | Action::TakeOverJob { job_id, .. }
            | Action::ReleaseJob { job_id } => Some(*job_id),
            Action::RequeueJob { job, .. } => Some(job.job_id),
            Action::MarkFailed { requeue_job, .. } | Action::Destroy { requeue_job, .. } => {
                requeue_job.map(|j| j.job_id)
            }
            Action::DestroyOrphan { .. }
            | Action::Adopt { .. }
            | Action::MarkOnline { .. }
            | Action::DeleteRunner { .. } => None,
        }
    }

    /// The instance row it acts on, where there is one (for its span).
    pub fn instance_id(&self) -> Option<&str> {
        match self {
            Action::Adopt { instance_id, .. }
            | Action::MarkFailed { instance_id, .. }
            | Action::Destroy { instance_id, .. }
            | Action::MarkOnline { instance_id } => Some(instance_id),
            _ => None,
        }
    }

    /// What the action is about, so at most one action targets it.
    fn target(&self) -> String {
        match self {
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
            | Action::ReleaseJob { job_id } => format!("job:{job_id}"),
            Action::DeleteRunner { runner_id, .. } => format!("runner:{runner_id}"),
            Action::SendCheckRun { job_id } => format!("check_run:{job_id}"),
        }
    }
}

/// The jobs to ask GitHub about before planning: live jobs with no news
/// for `job_quiet_ms` (a lost webhook looks exactly like this), each at most
/// once per `job_quiet_ms` (`checked_at`: when GitHub was last asked), so
/// that long jobs do not spend the installation's API budget every pass.
pub fn quiet_jobs(
    jobs: &[JobRow],
    now: i64,
    limits: &Limits,
    checked_at: &HashMap<i64, i64>,
) -> Vec<i64> {
    jobs.iter()
        .filter(|j| {
            let news = checked_at
                .get(&j.job_id)
                .map_or(j.updated_at, |&c| c.max(j.updated_at));
            !j.state.is_terminal() && now - news >= limits.job_quiet_ms
        })
        .map(|j| j.job_id)
        .collect()
}

/// Whether GitHub's runners were listed where this instance's runner is
/// registered, so that what the list lacks is truly absent. The one place
/// that decides it, for every rule that acts on the runner view: a machine
/// whose job is no longer live is known only when every place was.
pub fn runners_known_for(s: &Snapshot, i: &InstanceRow) -> bool {
    match job_of(s, i.job_id) {
        Some(j) => !s.runners_unknown.contains(&RepoRef {
            installation_id: j.installation_id,
            repo: j.repo.clone(),
        }),
        None => s.runners_unknown.is_empty(),
    }
}

/// Runners with our name and no row in either read, and not busy: rule 7
/// deletes them once they have been so for `stale_runner_grace_ms`. A
/// runner listed is in a known place; one of an unknown place is not
/// listed, so never here.
pub fn unowned_runners(s: &Snapshot) -> Vec<i64> {
    let names: HashSet<&str> = s
        .instances
        .iter()
        .chain(&s.late_instances)
        .filter(|i| i.state.may_exist() || i.state == InstanceState::Requested)
        .map(|i| i.runner_name.as_str())
        .collect();
    s.runners
        .iter()
        .filter(|r| !names.contains(r.name.as_str()) && !r.busy)
        .map(|r| r.id)
        .collect()
}

/// Decide what to do. Pure: the same snapshot and time give the same actions.
pub fn plan(s: &Snapshot, now: i64, limits: &Limits) -> Vec<(Rule, Action)> {
    let mut actions: Vec<(Rule, Action)> = Vec::new();
    // Order is priority: the first action on a target wins.
    actions.extend(
        max_lifetime(s, now)
            .into_iter()
            .map(|a| (Rule::MaxLifetime, a)),
    );
    actions.extend(
        completed_elsewhere(s, now)
            .into_iter()
            .map(|a| (Rule::JobCompletedElsewhere, a)),
    );
    actions.extend(orphans(s).into_iter().map(|a| (Rule::Orphan, a)));
    actions.extend(
        stuck_creates(s, now, limits)
            .into_iter()
            .map(|a| (Rule::StuckCreate, a)),
    );
    actions.extend(
        vanished(s, now)
            .into_iter()
            .map(|a| (Rule::InstanceVanished, a)),
    );
    actions.extend(
        boot_failed(s, now)
            .into_iter()
            .map(|a| (Rule::BootFailed, a)),
    );
    actions.extend(
        unreachable(s, now, limits)
            .into_iter()
            .map(|a| (Rule::Unreachable, a)),
    );
    actions.extend(
        boot_timeouts(s, now, limits)
            .into_iter()
            .map(|a| (Rule::BootTimeout, a)),
    );
    actions.extend(
        idle_timeouts(s, now, limits)
            .into_iter()
            .map(|a| (Rule::IdleTimeout, a)),
    );
    actions.extend(
        stale_runners(s, now, limits)
            .into_iter()
            .map(|a| (Rule::StaleRunner, a)),
    );
    actions.extend(
        recovery(s, now, limits)
            .into_iter()
            .map(|a| (Rule::Recovery, a)),
    );
    actions.extend(
        unsent_check_runs(s, now)
            .into_iter()
            .map(|a| (Rule::CheckRunUnsent, a)),
    );
    actions.extend(approved(s).into_iter().map(|a| (Rule::Approved, a)));
    actions.extend(stranded(s).into_iter().map(|a| (Rule::Stranded, a)));
    let mut seen = HashSet::new();
    actions.retain(|(_, a)| seen.insert(a.target()));
    actions
}

fn job_of(s: &Snapshot, job_id: i64) -> Option<&JobRow> {
    s.jobs.iter().find(|j| j.job_id == job_id)
}

/// Whether GitHub, asked this pass, says the job is still queued. Not
/// asked (rate-limited, failing) is not "queued": a job GitHub already runs
/// or has finished must not be rented for again. Such a job waits for the
/// next pass, where rule 14 asks again.
fn github_says_queued(s: &Snapshot, job_id: i64) -> bool {
    s.github_jobs
        .iter()
        .any(|g| g.job_id == job_id && g.status == GithubJobStatus::Queued)
}

/// Whether another machine than `except` could still run the job: one
/// bound to it that is on its way or idle (a busy one runs a sibling). The
/// one place that decides it, for rule 14 and every re-queue. Both reads
/// of the rows count: a machine rented while the views were read is one.
fn served_by_another(s: &Snapshot, job_id: i64, except: Option<&str>) -> bool {
    s.instances
        .iter()
        .chain(&s.late_instances)
        .filter(|o| Some(o.id.as_str()) != except)
        .any(|o| o.job_id == job_id && o.state.may_still_take_a_job())
}

/// The job to re-queue when an instance dies: one still waiting for a
/// runner, that no other machine can run, and that GitHub says is queued.
fn requeue_for(s: &Snapshot, i: &InstanceRow) -> Option<PlannedJob> {
    let job = job_of(s, i.job_id)?;
    let waiting = matches!(
        job.state,
        JobState::WaitingForRunner | JobState::Provisioning
    );
    let wanted = waiting && !served_by_another(s, job.job_id, Some(&i.id));
    (wanted && github_says_queued(s, job.job_id)).then(|| PlannedJob::of(job))
}

/// Rule 14: a job waiting for a runner with no machine that can still run
/// it — its machine was taken by a sibling (GitHub gives a job to any idle
/// runner with its labels) whose own machine never existed, died, or was
/// taken in turn; or its machine was destroyed before GitHub could be
/// asked. Once GitHub says it is still queued, it goes back to the queue.
fn stranded(s: &Snapshot) -> Vec<Action> {
    stranded_jobs(s)
        .filter(|j| github_says_queued(s, j.job_id))
        .map(|j| Action::RequeueJob {
            job: PlannedJob::of(j),
            reason: "no machine is left to run it: another job took the one rented for it".into(),
        })
        .collect()
}

fn stranded_jobs(s: &Snapshot) -> impl Iterator<Item = &JobRow> {
    s.jobs
        .iter()
        .filter(|j| j.state == JobState::WaitingForRunner)
        .filter(|j| !served_by_another(s, j.job_id, None))
}

/// The jobs to ask GitHub about this pass so that `plan` may re-queue
/// them: those it would put back in the queue if GitHub said "queued" (a
/// machine gone or going, rule 14's stranded jobs), minus those asked
/// already. Found by planning as if GitHub said so of every job not
/// asked, so this list and `plan` cannot disagree. Each job once a pass.
pub fn to_confirm(s: &Snapshot, now: i64, limits: &Limits) -> Vec<i64> {
    let asked: HashSet<i64> = s.github_jobs.iter().map(|g| g.job_id).collect();
    let mut all_queued = s.clone();
    all_queued.github_jobs.extend(
        s.jobs
            .iter()
            .filter(|j| !asked.contains(&j.job_id))
            .map(|j| GithubJobView {
                job_id: j.job_id,
                status: GithubJobStatus::Queued,
                conclusion: None,
                runner_name: None,
            }),
    );
    let mut ids: Vec<i64> = plan(&all_queued, now, limits)
        .into_iter()
        .filter_map(|(rule, a)| match a {
            Action::Destroy { requeue_job, .. } | Action::MarkFailed { requeue_job, .. } => {
                requeue_job
            }
            // Rule 9 takes over a job whose worker died without asking.
            Action::RequeueJob { job, .. } if rule == Rule::Stranded => Some(job),
            _ => None,
        })
        .map(|j| j.job_id)
        .filter(|id| !asked.contains(id))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// A machine nothing can run on any more, destroyed (I4 has nothing to
/// keep: see [`busy::verdict`]).
fn destroy(s: &Snapshot, i: &InstanceRow, now: i64, reason: &str) -> Option<Action> {
    let teardown = Teardown {
        keep_logs: false,
        deregister: false,
        requeue_job: requeue_for(s, i),
        reason: reason.to_string(),
    };
    guarded(s, i, now, Why::CannotRun, teardown)
}

/// How a rule would destroy a machine, before I4 has its say.
struct Teardown {
    keep_logs: bool,
    /// Deregister its runner on the way (if its registration is known).
    deregister: bool,
    requeue_job: Option<PlannedJob>,
    reason: String,
}

/// The destroy a rule asks for, as [`busy::verdict`] allows it: none when
/// the machine is busy; its runner deregistered first, the machine kept if
/// GitHub refuses, when the runner may have just taken a job.
fn guarded(s: &Snapshot, i: &InstanceRow, now: i64, why: Why, t: Teardown) -> Option<Action> {
    let runner_id = registration_of(s, i);
    let facts = facts_of(s, i, now, why, runner_id.is_some());
    let deregister_runner = match busy::verdict(&facts) {
        Verdict::Keep => return None,
        Verdict::DeregisterFirst => runner_id.map(Deregister::KeepIfRefused),
        Verdict::Destroy => runner_id.filter(|_| t.deregister).map(Deregister::Anyway),
    };
    Some(Action::Destroy {
        instance_id: i.id.clone(),
        from: i.state,
        keep_logs: t.keep_logs,
        deregister_runner,
        requeue_job: t.requeue_job,
        reason: t.reason,
    })
}

/// Its runner's registration id: from its row, else from GitHub's list.
fn registration_of(s: &Snapshot, i: &InstanceRow) -> Option<i64> {
    i.runner_id.or_else(|| {
        s.runners
            .iter()
            .find(|r| r.name == i.runner_name)
            .map(|r| r.id)
    })
}

/// What this snapshot knows of a machine, for [`busy::verdict`]. A live job
/// is bound to its runner in the store, or GitHub said so of a quiet job
/// in this very pass (its `in_progress` lost): GitHub gives a job to any
/// idle runner with its labels, so a machine rented for one job may run
/// another.
fn facts_of(s: &Snapshot, i: &InstanceRow, now: i64, why: Why, registered: bool) -> Facts {
    let name = i.runner_name.as_str();
    let live_in_store = s
        .jobs
        .iter()
        .any(|j| j.runner_name.as_deref() == Some(name))
        || s.access_lost_runners.contains(name);
    let learned_in_progress = s.github_jobs.iter().any(|g| {
        g.status == GithubJobStatus::InProgress
            && g.runner_name.as_deref() == Some(name)
            && job_of(s, g.job_id).is_some()
    });
    let listed = if !runners_known_for(s, i) {
        Listed::Unknown
    } else {
        match s.runners.iter().find(|r| r.name == name) {
            Some(r) if r.busy => Listed::Busy,
            Some(_) => Listed::Idle,
            None => Listed::Absent,
        }
    };
    Facts {
        state: i.state,
        serves_live_job: live_in_store || learned_in_progress,
        // A job GitHub says ended on it is ended by rule 5's `CompleteJob`,
        // whose `completed` names the runner; here, GitHub's list of it counts.
        ran_ended_job: false,
        listed,
        registered,
        past_max_lifetime: now >= i.expires_at,
        why,
    }
}

/// Rule 8: past its max lifetime, whatever it is doing (the one exception to I4).
fn max_lifetime(s: &Snapshot, now: i64) -> Vec<Action> {
    // `guarded` knows the exception: past its lifetime, busy or not.
    s.instances
        .iter()
        .filter(|i| {
            i.state.may_exist() && i.state != InstanceState::Destroying && now >= i.expires_at
        })
        .filter_map(|i| {
            let teardown = Teardown {
                keep_logs: i.state == InstanceState::Booting,
                deregister: true,
                requeue_job: None,
                reason: "max lifetime reached".into(),
            };
            guarded(s, i, now, Why::Unwanted, teardown)
        })
        .collect()
}

/// Rule 5: the job is over on GitHub (or a runner took it) but the store
/// never heard. Also: an instance whose job is over is destroyed.
fn completed_elsewhere(s: &Snapshot, now: i64) -> Vec<Action> {
    let mut out = Vec::new();
    for g in &s.github_jobs {
        let Some(job) = job_of(s, g.job_id) else {
            continue;
        };
        match g.status {
            GithubJobStatus::Completed => out.push(Action::CompleteJob {
                job_id: job.job_id,
                conclusion: g.conclusion.clone(),
                runner_name: g.runner_name.clone(),
            }),
            GithubJobStatus::InProgress if job.state != JobState::Running => {
                if let Some(name) = &g.runner_name {
                    out.push(Action::MarkRunning {
                        job_id: job.job_id,
                        runner_name: name.clone(),
                    });
                }
            }
            _ => {}
        }
    }
    let live_jobs: HashSet<i64> = s.jobs.iter().map(|j| j.job_id).collect();
    // A machine whose job ended (done, cancelled, taken elsewhere) has
    // nothing to do, unless its runner took another job: `guarded` decides.
    for i in &s.instances {
        let job_over = !live_jobs.contains(&i.job_id);
        let busy_or_online = matches!(
            i.state,
            InstanceState::Busy | InstanceState::Online | InstanceState::Booting
        );
        if !(job_over && busy_or_online) {
            continue;
        }
        let teardown = Teardown {
            keep_logs: false,
            deregister: true,
            requeue_job: None,
            reason: "its job is over".into(),
        };
        out.extend(guarded(s, i, now, Why::Unwanted, teardown));
    }
    out
}

/// Rule 1: ours by label, but no live row knows it.
fn orphans(s: &Snapshot) -> Vec<Action> {
    if !s.cloud_known {
        return Vec::new();
    }
    let rows = || s.instances.iter().chain(&s.late_instances);
    let labels: HashSet<&str> = rows().map(|i| i.label.as_str()).collect();
    let ids: HashSet<&str> = rows().filter_map(|i| i.provider_id.as_deref()).collect();
    s.cloud
        .iter()
        .filter(|c| !labels.contains(c.label.as_str()) && !ids.contains(c.provider_id.as_str()))
        .map(|c| Action::DestroyOrphan {
            provider_id: c.provider_id.clone(),
            label: c.label.clone(),
        })
        .collect()
}

/// Rule 2: a row written, the create call made (or not) and no answer.
fn stuck_creates(s: &Snapshot, now: i64, limits: &Limits) -> Vec<Action> {
    if !s.cloud_known {
        return Vec::new();
    }
    s.instances
        .iter()
        .filter(|i| matches!(i.state, InstanceState::Requested | InstanceState::Creating))
        .filter(|i| now - i.updated_at >= limits.create_timeout_ms)
        .map(|i| match s.cloud.iter().find(|c| c.label == i.label) {
            Some(c) => Action::Adopt {
                instance_id: i.id.clone(),
                provider_id: c.provider_id.clone(),
            },
            None => Action::MarkFailed {
                instance_id: i.id.clone(),
                from: i.state,
                requeue_job: requeue_for(s, i),
            },
        })
        .collect()
}

/// The instance as Vast.ai lists it, by id or label.
fn cloud_of<'a>(s: &'a Snapshot, i: &InstanceRow) -> Option<&'a CloudView> {
    s.cloud
        .iter()
        .find(|c| Some(c.provider_id.as_str()) == i.provider_id.as_deref() || c.label == i.label)
}

/// Rule 6: a machine we think runs is gone or exited on Vast.ai (interrupted
/// bid, contract over, stopped). Destroy what is left and re-queue its job
/// if GitHub still waits for it. A booting machine whose host became
/// unreachable is as good as gone: Vast.ai's API description says such an
/// instance "will never reach `running` -- destroy and retry".
fn vanished(s: &Snapshot, now: i64) -> Vec<Action> {
    if !s.cloud_known {
        return Vec::new();
    }
    s.instances
        .iter()
        .filter(|i| {
            matches!(
                i.state,
                InstanceState::Booting | InstanceState::Online | InstanceState::Busy
            )
        })
        .filter_map(|i| match cloud_of(s, i) {
            None => Some((i, "the machine vanished on Vast.ai".to_string())),
            Some(c) if c.status == CloudStatus::Exited => {
                Some((i, format!("the machine exited on Vast.ai ({})", c.detail)))
            }
            Some(c)
                if c.status == CloudStatus::Unreachable && i.state == InstanceState::Booting =>
            {
                Some((
                    i,
                    format!("its host became unreachable while it booted ({})", c.detail),
                ))
            }
            Some(_) => None,
        })
        .filter_map(|(i, why)| destroy(s, i, now, &why))
        .collect()
}

/// Rule 13: a booting machine whose container will never start (its image
/// cannot be pulled, the runtime fails) is given up now, not at the boot
/// timeout, with Vast.ai's message for the job.
fn boot_failed(s: &Snapshot, now: i64) -> Vec<Action> {
    if !s.cloud_known {
        return Vec::new();
    }
    s.instances
        .iter()
        .filter(|i| i.state == InstanceState::Booting)
        .filter_map(|i| Some((i, cloud_of(s, i)?)))
        .filter(|(_, c)| c.status == CloudStatus::BootFailed)
        .filter_map(|(i, c)| {
            let teardown = Teardown {
                keep_logs: true,
                deregister: false,
                requeue_job: requeue_for(s, i),
                reason: format!("its container cannot start: {}", c.detail),
            };
            guarded(s, i, now, Why::CannotRun, teardown)
        })
        .collect()
}

/// Rule 12: an online machine whose host has been unreachable for the
/// grace, and whose runner GitHub does not show online either, is given
/// up. A busy one never is (I4): its job may be running all along, and its
/// end (or the max lifetime) ends the machine. Only where GitHub's runners
/// could be read.
fn unreachable(s: &Snapshot, now: i64, limits: &Limits) -> Vec<Action> {
    if !s.cloud_known {
        return Vec::new();
    }
    s.instances
        .iter()
        .filter(|i| i.state == InstanceState::Online)
        .filter(|i| cloud_of(s, i).is_some_and(|c| c.status == CloudStatus::Unreachable))
        .filter(|i| {
            s.unreachable_since
                .get(&i.id)
                .is_some_and(|since| now - since >= limits.unreachable_grace_ms)
        })
        .filter(|i| runners_known_for(s, i))
        // A runner GitHub hears from is not lost with its host.
        .filter(|i| {
            !s.runners
                .iter()
                .any(|r| r.name == i.runner_name && r.online)
        })
        .filter_map(|i| {
            let teardown = Teardown {
                keep_logs: false,
                deregister: true,
                requeue_job: requeue_for(s, i),
                reason: format!(
                    "its host stayed unreachable for {} min",
                    limits.unreachable_grace_ms / 60_000
                ),
            };
            guarded(s, i, now, Why::Unwanted, teardown)
        })
        .collect()
}

/// Rule 3: booting too long and its runner never came online. Only where
/// GitHub's runners could be read: absence from an unread list proves nothing.
fn boot_timeouts(s: &Snapshot, now: i64, limits: &Limits) -> Vec<Action> {
    s.instances
        .iter()
        .filter(|i| i.state == InstanceState::Booting)
        .filter(|i| runners_known_for(s, i))
        .filter(|i| {
            let since = i.create_called_at.unwrap_or(i.created_at);
            now - since >= limits.bootstrap_timeout_ms
        })
        .filter(|i| {
            !s.runners
                .iter()
                .any(|r| r.name == i.runner_name && r.online)
        })
        .filter_map(|i| {
            let teardown = Teardown {
                keep_logs: true,
                deregister: false,
                requeue_job: requeue_for(s, i),
                reason: "the runner did not come online before the bootstrap timeout".into(),
            };
            guarded(s, i, now, Why::CannotRun, teardown)
        })
        .collect()
}

/// Rule 4: online with no job for too long (its job was cancelled or taken
/// by another runner). Never a busy one (I4). A booting machine whose
/// runner GitHub lists as online and idle is marked online first: the
/// webhooks say when a runner takes a job, not when it comes online.
/// Only where GitHub's runners could be read: an unread list cannot say
/// the runner is not busy.
fn idle_timeouts(s: &Snapshot, now: i64, limits: &Limits) -> Vec<Action> {
    let came_online = s
        .instances
        .iter()
        .filter(|i| i.state == InstanceState::Booting)
        .filter(|i| {
            s.runners
                .iter()
                .any(|r| r.name == i.runner_name && r.online && !r.busy)
        })
        .map(|i| Action::MarkOnline {
            instance_id: i.id.clone(),
        });
    let idle = s
        .instances
        .iter()
        .filter(|i| i.state == InstanceState::Online)
        .filter(|i| runners_known_for(s, i))
        .filter(|i| now - i.online_at.unwrap_or(i.updated_at) >= limits.idle_timeout_ms)
        // GitHub may say it is busy before our webhook arrived: `guarded` asks.
        .filter_map(|i| {
            let teardown = Teardown {
                keep_logs: false,
                deregister: true,
                requeue_job: requeue_for(s, i),
                reason: "its runner stayed idle past the idle timeout".into(),
            };
            guarded(s, i, now, Why::Unwanted, teardown)
        });
    came_online.chain(idle).collect()
}

/// Rule 7: a registration with our name and no live instance, for longer
/// than the grace (a runner is registered just before its row is written).
fn stale_runners(s: &Snapshot, now: i64, limits: &Limits) -> Vec<Action> {
    let unowned: HashSet<i64> = unowned_runners(s).into_iter().collect();
    s.runners
        .iter()
        .filter(|r| unowned.contains(&r.id))
        .filter(|r| {
            s.unowned_runners_since
                .get(&r.id)
                .is_some_and(|since| now - since >= limits.stale_runner_grace_ms)
        })
        .map(|r| Action::DeleteRunner {
            runner_id: r.id,
            name: r.name.clone(),
            installation_id: r.installation_id,
            scope: r.scope.clone(),
        })
        .collect()
}

/// Rule 11: a job held for a deployment's approval that GitHub has queued
/// since (its `queued` delivery was lost or came before the `waiting`).
/// The only way out of waiting besides its webhooks: nothing here, nor
/// any other rule, ever puts a job back into it or rents for it.
fn approved(s: &Snapshot) -> Vec<Action> {
    s.github_jobs
        .iter()
        .filter(|g| g.status == GithubJobStatus::Queued)
        .filter_map(|g| job_of(s, g.job_id))
        .filter(|j| j.state == JobState::WaitingForApproval)
        .map(|j| Action::ReleaseJob { job_id: j.job_id })
        .collect()
}

/// Rule 9: what a crash left half done — a job whose worker died while
/// provisioning, a destroy never confirmed.
fn recovery(s: &Snapshot, now: i64, limits: &Limits) -> Vec<Action> {
    let mut out = Vec::new();
    for j in &s.jobs {
        if j.state == JobState::Provisioning && worker_lost(j, now, limits) {
            out.push(Action::TakeOverJob {
                job_id: j.job_id,
                attempt: j.attempts,
            });
        }
    }
    for i in &s.instances {
        if super::retry::destroy_due_at(i, limits).is_some_and(|due| now >= due) {
            out.push(Action::Destroy {
                instance_id: i.id.clone(),
                from: i.state,
                keep_logs: false,
                deregister_runner: i.runner_id.map(Deregister::Anyway),
                requeue_job: None,
                reason: "retrying a destroy that was not confirmed".into(),
            });
        }
    }
    out
}

/// Whether a provisioning job's worker is gone: its lease ran out (a live
/// worker renews it well inside the lease), or, for a row with no lease,
/// it has been provisioning longer than any attempt takes.
fn worker_lost(j: &JobRow, now: i64, limits: &Limits) -> bool {
    match j.lease_until {
        Some(until) => now >= until,
        None => now - j.updated_at >= limits.provisioning_timeout_ms,
    }
}

/// Rule 10: a check-run update GitHub did not take (a rate limit, a bad
/// moment, rigger stopping before it was sent) is sent once its backoff
/// has passed, at most [`CHECK_RUNS_PER_PASS`] a pass: a run left "in
/// progress" after its job ended tells the user something false for good.
fn unsent_check_runs(s: &Snapshot, now: i64) -> Vec<Action> {
    s.unsent_check_runs
        .iter()
        .filter(|c| c.due_at <= now)
        .take(CHECK_RUNS_PER_PASS)
        .map(|c| Action::SendCheckRun { job_id: c.job_id })
        .collect()
}
