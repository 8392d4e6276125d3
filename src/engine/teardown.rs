//! Destroying a machine and closing its account.

use tracing::Instrument;

use super::ports::{Cloud, Github};
use super::report;
use super::state::{InstanceState, JobState};
use super::{Engine, EngineError};
use crate::store::{CostEntry, InstancePatch, InstanceRow, JobPatch};

impl<C: Cloud, G: Github> Engine<C, G> {
    /// Destroy a machine now. Its row moves to `destroying` first, so that a
    /// failed call is retried by the reconciler (rule 9); once Vast.ai
    /// confirms, the row is `destroyed` and the cost is in the ledger.
    /// Returns the cost entry when this call closed the account. All of it
    /// in the machine's span, `instance{instance_id, job_id, provider_id}`.
    pub async fn destroy_instance(
        &self,
        inst: &InstanceRow,
        reason: &str,
    ) -> Result<Option<CostEntry>, EngineError> {
        let span = tracing::info_span!(
            "instance",
            instance_id = %inst.id,
            job_id = inst.job_id,
            provider_id = inst.provider_id.as_deref(),
        );
        self.destroy_instance_in_span(inst, reason)
            .instrument(span)
            .await
    }

    async fn destroy_instance_in_span(
        &self,
        inst: &InstanceRow,
        reason: &str,
    ) -> Result<Option<CostEntry>, EngineError> {
        let now = self.now();
        let Some(current) = self.store.instance(&inst.id).await? else {
            return Ok(None);
        };
        if current.state.is_terminal() {
            return Ok(None);
        }
        if current.state != InstanceState::Destroying {
            let patch = InstancePatch {
                destroy_called_at: Some(now),
                reason: Some(reason.to_string()),
                ..Default::default()
            };
            let moved = self
                .store
                .transition_instance(
                    &current.id,
                    current.state,
                    InstanceState::Destroying,
                    now,
                    patch,
                )
                .await?;
            if !moved {
                // Someone else changed it first; they (or the reconciler) finish the job.
                return Ok(None);
            }
        }
        // A create call that never answered may still have made a machine:
        // look it up by its label before declaring it never existed.
        let provider_id = match (&current.provider_id, current.create_called_at) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(called)) => {
                match self.cloud.find(&current.label).await {
                    Ok(Some(found)) => Some(found.provider_id),
                    // Its create call may still be on its way: the machine
                    // it makes would have no row left to track it. Stay in
                    // `destroying`; the provisioner destroys it when Vast.ai
                    // answers, or the reconciler (rule 9) when the create
                    // timeout has passed and its label still finds nothing.
                    Ok(None)
                        if crate::millis::since(now, called)
                            < crate::millis::of(self.settings.timeouts.create) =>
                    {
                        self.note(
                            Some(current.job_id),
                            Some(&current.id),
                            "destroy_waits",
                            "its create call has not answered yet: destroyed once it does",
                        )
                        .await;
                        return Ok(None);
                    }
                    Ok(None) => None,
                    Err(e) => {
                        self.cloud_error(&e);
                        self.note(
                            Some(current.job_id),
                            Some(&current.id),
                            "destroy_retry",
                            &format!("cannot look the machine up yet: {e}"),
                        )
                        .await;
                        self.destroy_again_later(&current, &e).await?;
                        return Ok(None);
                    }
                }
            }
            (None, None) => None,
        };
        if let Some(pid) = &provider_id
            && let Err(e) = self.cloud.destroy(pid).await
        {
            self.cloud_error(&e);
            self.note(
                Some(current.job_id),
                Some(&current.id),
                "destroy_retry",
                &format!("destroy failed, will retry: {e}"),
            )
            .await;
            self.destroy_again_later(&current, &e).await?;
            return Ok(None);
        }
        let done = self
            .store
            .transition_instance(
                &current.id,
                InstanceState::Destroying,
                InstanceState::Destroyed,
                now,
                InstancePatch {
                    destroyed_at: Some(now),
                    provider_id: provider_id.clone(),
                    ..Default::default()
                },
            )
            .await?;
        if !done {
            return Ok(None);
        }
        let entry = self.account(&current, now).await?;
        // After the account is closed: nothing here may stop that. What this
        // misses, the reconciler's rule 7 deletes.
        if let Err(e) = self.forget_unused_runner(&current).await {
            tracing::warn!(instance = %current.id, error = %e, "could not check its runner");
        }
        let cost = entry.as_ref().map_or(0.0, CostEntry::cost_usd);
        self.note(
            Some(current.job_id),
            Some(&current.id),
            "destroyed",
            &format!("destroyed ({reason}); cost ${cost:.4}"),
        )
        .await;
        self.close_check_run(current.job_id).await?;
        Ok(entry)
    }

    /// A destroy that did not go through: when to try again (backing off,
    /// or as long as a rate limit says), kept in the row so that a restart
    /// keeps it; the reconcile loop is told, so that it wakes for it.
    async fn destroy_again_later(
        &self,
        inst: &InstanceRow,
        why: &super::ports::CloudError,
    ) -> Result<(), EngineError> {
        let limits = self.limits();
        let refusals = inst.destroy_attempts + 1;
        let wait = super::reconcile::retry::destroy_backoff_ms(refusals, why, &limits);
        self.store
            .destroy_refused(&inst.id, refusals, self.now() + wait)
            .await?;
        self.destroy_retry_wake.notify_one();
        Ok(())
    }

    /// A runner that took a job removes itself when the job ends (it is
    /// ephemeral); one whose machine died before it took any stays
    /// registered, offline, until someone deletes it. Do that now, rather
    /// than leave it to the reconciler's rule 7.
    pub(crate) async fn forget_unused_runner(&self, inst: &InstanceRow) -> Result<(), EngineError> {
        let Some(runner_id) = inst.runner_id else {
            return Ok(());
        };
        // A busy one took a job; otherwise ask the jobs (a retried destroy
        // no longer knows what state it was in).
        if inst.state == InstanceState::Busy
            || self.store.runner_took_a_job(&inst.runner_name).await?
        {
            return Ok(());
        }
        let Some(job) = self.store.job(inst.job_id).await? else {
            return Ok(());
        };
        let repo = super::ports::RepoRef {
            installation_id: job.installation_id,
            repo: job.repo.clone(),
        };
        if let Err(e) = self.github.delete_runner(&repo, runner_id).await {
            self.github_error(&e);
        }
        Ok(())
    }

    /// End the check run of a job that is over once none of its machines is
    /// left: what it ran on, for how long, and what every machine rented
    /// for it cost. Called after each confirmed destroy and when a job ends
    /// with nothing to destroy; until the last machine is gone it waits, so
    /// the figure it shows is final.
    pub(crate) async fn close_check_run(&self, job_id: i64) -> Result<(), EngineError> {
        let Some(job) = self.store.job(job_id).await? else {
            return Ok(());
        };
        // A failed job's check run already says why; a job with none (none
        // made, none wanted) was never shown to the user.
        let over = matches!(job.state, JobState::Completed | JobState::Cancelled);
        let shown = job.check_run_id.is_some()
            || self
                .store
                .check_run(job_id)
                .await?
                .is_some_and(|c| c.wanted > 0);
        if !over || !shown {
            return Ok(());
        }
        let machines = self.store.instances_for_job(job_id).await?;
        if machines.iter().any(|i| !i.state.is_terminal()) {
            return Ok(());
        }
        let conclusion = job
            .conclusion
            .clone()
            .unwrap_or_else(|| job.state.as_str().to_string());
        let costs = self.store.costs_for_job(job_id).await?;
        let run = if costs.is_empty() {
            report::ended_without_machine(&conclusion)
        } else {
            // The machine that ran the job, else the last one rented.
            let ran = machines
                .iter()
                .find(|i| Some(&i.runner_name) == job.runner_name.as_ref())
                .or(machines.last());
            let gpu = ran
                .map(|i| match (i.num_gpus, &i.gpu_name) {
                    (Some(n), Some(g)) => format!("{n}× {g}"),
                    (_, Some(g)) => g.clone(),
                    _ => "GPU".to_string(),
                })
                .unwrap_or_else(|| "GPU".to_string());
            let location = ran
                .and_then(|i| i.location.clone())
                .unwrap_or_else(|| "an unknown location".to_string());
            let seconds = costs.iter().map(|c| c.seconds).sum();
            let cost = costs.iter().map(CostEntry::cost_usd).sum();
            report::finished(&gpu, &location, seconds, cost, costs.len(), &conclusion)
        };
        self.report(&job, &run).await;
        Ok(())
    }

    /// dph × seconds from the create call to the confirmed destroy.
    pub(crate) async fn account(
        &self,
        inst: &InstanceRow,
        destroyed_at: i64,
    ) -> Result<Option<CostEntry>, EngineError> {
        let (Some(dph), Some(created)) = (inst.dph, inst.create_called_at) else {
            return Ok(None);
        };
        let job = self.store.job(inst.job_id).await?;
        let entry = CostEntry {
            instance_id: inst.id.clone(),
            job_id: inst.job_id,
            repo: job.as_ref().map(|j| j.repo.clone()).unwrap_or_default(),
            runner_def: job.and_then(|j| j.runner_def).unwrap_or_default(),
            gpu_name: inst.gpu_name.clone().unwrap_or_default(),
            dph,
            seconds: ((destroyed_at - created) / 1000).max(0),
            closed_at: destroyed_at,
        };
        if self.store.record_cost(&entry).await? == crate::store::Inserted::New {
            self.metrics
                .add("rigger_spend_dollars_total", &[], entry.cost_usd());
        }
        Ok(Some(entry))
    }

    pub(crate) fn cloud_error(&self, e: &super::ports::CloudError) {
        self.metrics
            .inc("rigger_cloud_errors_total", &[("kind", e.kind())]);
    }

    pub(crate) fn github_error(&self, e: &super::ports::GithubError) {
        self.metrics
            .inc("rigger_github_errors_total", &[("kind", e.kind())]);
    }
}

/// What a machine's report of its end led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callback {
    Destroyed,
    /// No such machine, or not its token: the same answer for both.
    Unauthorized,
}

/// The most of a machine's report rigger keeps.
pub const REPORT_LIMIT: usize = 4000;

/// A machine's report as rigger keeps it: its last characters, at most
/// [`REPORT_LIMIT`] bytes of them, printable text and line breaks only (it
/// reaches the event log and the operator's terminal). Only the body's tail
/// is decoded: the route bounds the body, this bounds the work.
pub fn clean_report(raw: &[u8]) -> String {
    // Every kept character is at most 4 bytes: the tail holds all that can be kept.
    let mut start = raw.len().saturating_sub(REPORT_LIMIT * 4);
    // Not from the middle of a character: skip its continuation bytes.
    while raw.get(start).is_some_and(|b| b & 0xC0 == 0x80) {
        start += 1;
    }
    let text = String::from_utf8_lossy(&raw[start..]);
    let mut kept = Vec::new();
    let mut bytes = 0;
    for c in text
        .chars()
        .rev()
        .filter(|c| *c == '\n' || *c == '\t' || !c.is_control())
    {
        bytes += c.len_utf8();
        if bytes > REPORT_LIMIT {
            break;
        }
        kept.push(c);
    }
    kept.iter().rev().collect::<String>().trim().to_string()
}

/// Why a boot failed, from a report: the script's `FAILED:` line, else its last line.
fn failure_line(report: &str) -> Option<&str> {
    report
        .lines()
        .rev()
        .find_map(|l| l.split_once("FAILED: ").map(|(_, why)| why))
        .or_else(|| report.lines().rev().find(|l| !l.trim().is_empty()))
}

impl<C: Cloud, G: Github> Engine<C, G> {
    /// A machine's bootstrap reports that it ended (its runner exited, or
    /// the boot failed), with its log's last lines: rigger keeps them (the
    /// machine, and Vast.ai's log of it, are about to be gone), destroys it
    /// now rather than at the next reconcile, and re-queues a job whose
    /// machine failed before its runner took it.
    pub async fn machine_ended(
        &self,
        instance_id: &str,
        token: &str,
        exit_code: Option<i64>,
        report: &str,
    ) -> Result<Callback, EngineError> {
        let Some(inst) = self.store.instance(instance_id).await? else {
            return Ok(Callback::Unauthorized);
        };
        // Comparing digests, not the token: equal-time comparison of a hash
        // leaks nothing useful about the token itself.
        let presented = super::provision::token_hash(token);
        if inst.callback_hash.as_deref() != Some(presented.as_str()) {
            return Ok(Callback::Unauthorized);
        }
        // Once the token proved the caller is the machine.
        let span = tracing::info_span!(
            "instance",
            instance_id = %inst.id,
            job_id = inst.job_id,
            provider_id = inst.provider_id.as_deref(),
        );
        self.machine_ended_in_span(&inst, exit_code, report)
            .instrument(span)
            .await
    }

    async fn machine_ended_in_span(
        &self,
        inst: &InstanceRow,
        exit_code: Option<i64>,
        report: &str,
    ) -> Result<Callback, EngineError> {
        let code = exit_code.map_or("unknown".to_string(), |c| c.to_string());
        let failed = exit_code != Some(0);
        if !report.is_empty() {
            let kind = if failed {
                "machine_failed"
            } else {
                "machine_log"
            };
            self.note(Some(inst.job_id), Some(&inst.id), kind, report)
                .await;
        }
        let reason = match failed.then(|| failure_line(report)).flatten() {
            Some(why) => format!("its bootstrap failed (code {code}): {why}"),
            None => format!("its runner exited (code {code}), as its bootstrap reported"),
        };
        self.destroy_instance(inst, &reason).await?;
        if failed && inst.state == InstanceState::Booting {
            let patch = JobPatch {
                reason: Some(Some(reason.clone())),
                next_attempt_at: Some(Some(self.now())),
                ..Default::default()
            };
            let now = self.now();
            if self
                .store
                .transition_job(
                    inst.job_id,
                    JobState::WaitingForRunner,
                    JobState::Queued,
                    now,
                    patch,
                )
                .await?
            {
                self.note(Some(inst.job_id), None, "requeued", &reason)
                    .await;
            }
        }
        Ok(Callback::Destroyed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_keeps_its_tail_as_printable_text() {
        let mut raw = "x".repeat(REPORT_LIMIT).into_bytes();
        raw.extend_from_slice(
            "\nrigger-bootstrap: FAILED: expected 1 x RTX 4090\x1b[31m\n".as_bytes(),
        );
        let r = clean_report(&raw);
        assert!(r.len() <= REPORT_LIMIT);
        assert!(r.ends_with("FAILED: expected 1 x RTX 4090[31m"), "{r}");
        assert_eq!(failure_line(&r), Some("expected 1 x RTX 4090[31m"));
        assert_eq!(failure_line("a\nlast line\n"), Some("last line"));
        assert_eq!(
            clean_report("é".repeat(3000).as_bytes()).len() % 2,
            0,
            "char boundary"
        );
        // A long body: only its tail counts, cut between characters.
        let mut long = "日".repeat(100_000).into_bytes();
        long.extend_from_slice(b"\nFAILED: the end\n");
        let r = clean_report(&long);
        assert!(
            r.len() <= REPORT_LIMIT && r.len() > REPORT_LIMIT - 4,
            "{}",
            r.len()
        );
        assert!(r.starts_with('日') && r.ends_with("FAILED: the end"));
        // Where the tail begins inside a character, nothing of it is kept.
        let mut cut = "日".repeat(10).into_bytes();
        cut.extend(std::iter::repeat_n(1u8, REPORT_LIMIT * 4 - 10));
        assert_eq!(clean_report(&cut), "日".repeat(3));
    }
}
