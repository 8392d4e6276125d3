//! The reconciler: `plan` decides (pure, tested rule by rule); `apply`
//! carries the decisions out against the store, Vast.ai and GitHub.

mod apply;
pub mod plan;
pub mod retry;

#[cfg(test)]
mod plan_hosts_tests;
#[cfg(test)]
mod plan_stranded_tests;
#[cfg(test)]
mod plan_tests;

pub(crate) use apply::Memory;
pub use plan::{
    Action, CloudStatus, CloudView, Deregister, GithubJobStatus, GithubJobView, Limits, PlannedJob,
    Rule, RunnerView, Snapshot, UnsentCheckRun, plan, quiet_jobs, to_confirm, unowned_runners,
};
