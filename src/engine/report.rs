//! What rigger writes on the check run of a job's head commit (where the
//! user looks when a GPU job waits, fails or finishes), and how it gets
//! there.
//!
//! Each job has a check run of its own, named after the job (`rigger:
//! train (a100)`): GitHub shows only the newest run of a name on a commit,
//! so under one name a matrix job's failure would be hidden by a sibling's
//! success. Its `external_id` is the job's id, its details lead to the job
//! on GitHub.
//!
//! An update is first written to the store as the job's wanted content
//! (`store::checks`), then sent. One GitHub refuses for a while (a rate
//! limit, a bad moment) stays wanted, with a backoff per job, and the
//! reconciler's rule 10 sends it when that has passed; a final one is never
//! replaced by an in-progress one. Every text goes through
//! [`CheckRun::fitted`] on its way (GitHub takes at most 65,535 bytes).

use super::ports::{CHECK_TITLE_CHARS, CheckRun, CheckTarget, Cloud, Github, GithubError, RepoRef};
use super::{Engine, EngineError};

pub const CHECK_NAME: &str = "rigger";

/// How long a wanted update may stay unsent before the reconciler sends it,
/// when its sender neither succeeded nor failed (rigger stopped between).
const SEND_GRACE_MS: i64 = 60_000;
/// An update GitHub has not taken after this long is given up: GitHub
/// itself gives up on a job after 24 hours.
const GIVE_UP_MS: i64 = 24 * 3_600_000;

/// A job's check run's name: `rigger: ` and the job's name, or its
/// `runs-on` labels when no webhook said its name. Set once, when the run
/// is created.
pub fn check_name(job_name: Option<&str>, labels: &[String]) -> String {
    let what = match job_name {
        Some(n) => n.to_string(),
        None => labels.join(", "),
    };
    crate::text::clip(&format!("{CHECK_NAME}: {what}"), CHECK_TITLE_CHARS).into_owned()
}

/// The conclusions rigger gives its check runs, from the store's text.
fn conclusion_of(stored: Option<&str>) -> Option<&'static str> {
    match stored? {
        "success" => Some("success"),
        "failure" => Some("failure"),
        "cancelled" => Some("cancelled"),
        "timed_out" => Some("timed_out"),
        "action_required" => Some("action_required"),
        "skipped" => Some("skipped"),
        _ => Some("neutral"),
    }
}

impl<C: Cloud, G: Github> Engine<C, G> {
    /// The job's check run is to show `run`: kept as wanted, then sent. A
    /// failure here never blocks the job; what GitHub did not take, the
    /// reconciler sends later.
    pub(crate) async fn report(&self, job: &crate::store::JobRow, run: &CheckRun) {
        let run = run.fitted();
        let now = self.now();
        let wanted = self
            .store
            .want_check_run(
                job.job_id,
                &run.title,
                &run.summary,
                run.conclusion,
                now,
                now + SEND_GRACE_MS,
            )
            .await;
        match wanted {
            Ok(Some(_)) => {}
            // Final already: a late in-progress word does not reopen it.
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(job_id = job.job_id, error = %e, "could not keep the check-run update");
                return;
            }
        }
        if let Err(e) = self.send_check_run(job.job_id).await {
            tracing::warn!(job_id = job.job_id, error = %e, "could not update the check run");
        }
    }

    /// Send the job's wanted check-run content GitHub does not have yet
    /// (again if a newer one was wanted while it was on its way). When
    /// GitHub does not take it, try again after the job's backoff (or
    /// GitHub's rate-limit reset, if later); when GitHub refuses it for
    /// good, or after [`GIVE_UP_MS`], not again.
    pub(crate) async fn send_check_run(&self, job_id: i64) -> Result<(), EngineError> {
        for _ in 0..3 {
            let Some(want) = self.store.check_run(job_id).await? else {
                return Ok(());
            };
            let Some(job) = self.store.job(job_id).await? else {
                return Ok(());
            };
            if !want.unsent() {
                return Ok(());
            }
            let repo = RepoRef {
                installation_id: job.installation_id,
                repo: job.repo.clone(),
            };
            let target = CheckTarget {
                head_sha: job.head_sha.clone(),
                name: check_name(want.job_name.as_deref(), &job.labels),
                external_id: job_id.to_string(),
                details_url: want.details_url.clone(),
            };
            let run = CheckRun {
                title: want.title.clone().unwrap_or_default(),
                summary: want.summary.clone().unwrap_or_default(),
                conclusion: conclusion_of(want.conclusion.as_deref()),
            };
            match self
                .github
                .check_run(&repo, &target, job.check_run_id, &run)
                .await
            {
                Ok(id) => {
                    if job.check_run_id != Some(id) {
                        self.store.set_check_run(job_id, id).await?;
                    }
                    self.store.check_run_sent(job_id, want.wanted).await?;
                }
                Err(e) => {
                    self.github_error(&e);
                    let now = self.now();
                    let backoff = super::provision::backoff_ms(want.attempts + 1);
                    let too_old = now - want.wanted_at.unwrap_or(now) >= GIVE_UP_MS;
                    let retry_at = match &e {
                        GithubError::Refused(_) => None,
                        _ if too_old => None,
                        GithubError::RateLimited { retry_after_ms } => {
                            Some(now + backoff.max(*retry_after_ms))
                        }
                        GithubError::Transient(_) => Some(now + backoff),
                    };
                    self.store
                        .check_run_failed(job_id, want.wanted, retry_at)
                        .await?;
                    // Said once per update, and when rigger gives up on it.
                    match retry_at {
                        Some(at) if want.attempts == 0 => {
                            let why = format!(
                                "GitHub did not take the check-run update ({e}); again in {} s",
                                (at - now) / 1000
                            );
                            self.note(Some(job_id), None, "check_run_retry", &why).await;
                        }
                        Some(_) => {}
                        None => {
                            let why = format!(
                                "GitHub did not take the check-run update ({e}); not tried again"
                            );
                            self.note(Some(job_id), None, "check_run_given_up", &why)
                                .await;
                        }
                    }
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

pub fn waiting_for_capacity(def: &str, diagnosis: &str, retry_in_s: i64) -> CheckRun {
    CheckRun {
        title: format!("Waiting for a GPU for `{def}`"),
        summary: format!(
            "No Vast.ai offer fits `{def}` right now.\n\n{diagnosis}\n\nrigger looks again in {retry_in_s} s, until GitHub's 24-hour queue limit."
        ),
        conclusion: None,
    }
}

/// GitHub holds the job for a deployment's approval: nothing is rented (or
/// paid for) until a reviewer approves it.
pub fn waiting_for_approval(environment: Option<&str>) -> CheckRun {
    let what = match environment {
        Some(env) => format!("environment `{env}`"),
        None => "its deployment".to_string(),
    };
    CheckRun {
        title: format!("Waiting for approval of {what}"),
        summary: format!(
            "GitHub holds this job until a reviewer approves {what} (Review deployments, on the workflow run's page). rigger rents no GPU until then, so the wait costs nothing; once it is approved, rigger looks for a GPU. A rejected job ends without one."
        ),
        conclusion: None,
    }
}

pub fn refused(def: &str, why: &str) -> CheckRun {
    CheckRun {
        title: format!("Not renting a GPU for `{def}` yet"),
        summary: format!("{why}.\n\nThe job waits; rigger tries again when this changes."),
        conclusion: None,
    }
}

/// A machine rented for the job cannot start its container (Vast.ai's
/// words in `why`): the job is back in the queue for another.
pub fn boot_failed(why: &str) -> CheckRun {
    CheckRun {
        title: "A machine failed to boot; renting another".to_string(),
        summary: format!("{why}.\n\nThat machine is destroyed; rigger rents another for the job."),
        conclusion: None,
    }
}

pub fn failed(title: &str, why: &str) -> CheckRun {
    CheckRun {
        title: title.to_string(),
        summary: why.to_string(),
        conclusion: Some("failure"),
    }
}

pub fn booting(gpu: &str, location: &str, dph: f64, estimated_cost: f64, hours: f64) -> CheckRun {
    CheckRun {
        title: format!("Booting {gpu} at ${dph:.3}/h"),
        summary: format!(
            "Rented {gpu} in {location} at ${dph:.3}/h. Estimated {hours:.2} h, about ${estimated_cost:.2} in total."
        ),
        conclusion: None,
    }
}

/// The job is over and its machines are gone: what it ran on and what it
/// cost. `machines` counts every machine rented for the job (a failed boot
/// and its replacement both cost money, and both are in the total).
pub fn finished(
    gpu: &str,
    location: &str,
    seconds: i64,
    cost: f64,
    machines: usize,
    job_conclusion: &str,
) -> CheckRun {
    let minutes = seconds as f64 / 60.0;
    let extra = if machines > 1 {
        format!(" across {machines} machines (a boot failed and was replaced)")
    } else {
        String::new()
    };
    CheckRun {
        title: format!("{gpu}: {minutes:.1} min, ${cost:.4}"),
        summary: format!(
            "| GPU | where | machine time | cost |\n|---|---|---|---|\n| {gpu} | {location} | {minutes:.1} min | ${cost:.4} |\n\nMachine time and cost{extra}, from the rent to the confirmed destroy. The machine was destroyed when the job ended ({job_conclusion})."
        ),
        // rigger's own check: it did its part whatever the job's outcome.
        conclusion: Some(if job_conclusion == "cancelled" {
            "cancelled"
        } else {
            "success"
        }),
    }
}

/// The job ended before any machine was rented for it.
pub fn ended_without_machine(job_conclusion: &str) -> CheckRun {
    CheckRun {
        title: format!("Job ended ({job_conclusion}) before a GPU was rented"),
        summary: "No machine was rented for this job, so it cost nothing.".to_string(),
        conclusion: Some(if job_conclusion == "cancelled" {
            "cancelled"
        } else {
            "neutral"
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_carry_the_numbers() {
        let r = finished("RTX 4090", "Texas, US", 600, 0.0667, 1, "success");
        assert_eq!(r.title, "RTX 4090: 10.0 min, $0.0667");
        assert!(
            r.summary
                .contains("| RTX 4090 | Texas, US | 10.0 min | $0.0667 |")
        );
        assert_eq!(r.conclusion, Some("success"));
        let twice = finished("RTX 4090", "Texas, US", 900, 0.1, 2, "cancelled");
        assert!(twice.summary.contains("across 2 machines"));
        assert_eq!(twice.conclusion, Some("cancelled"));
        assert_eq!(
            ended_without_machine("cancelled").conclusion,
            Some("cancelled")
        );
        let w = waiting_for_capacity("gpu", "0 offers: none in US", 60);
        assert!(w.summary.contains("0 offers: none in US"));
        assert_eq!(w.conclusion, None);
    }

    #[test]
    fn a_check_run_is_named_after_its_job() {
        let labels = vec!["cirun-gpu--7".to_string()];
        assert_eq!(
            check_name(Some("train (a100)"), &labels),
            "rigger: train (a100)"
        );
        assert_eq!(check_name(None, &labels), "rigger: cirun-gpu--7");
        let long = "x".repeat(1_000);
        assert_eq!(
            check_name(Some(&long), &labels).chars().count(),
            CHECK_TITLE_CHARS
        );
        assert_eq!(conclusion_of(Some("failure")), Some("failure"));
        assert_eq!(conclusion_of(Some("stale")), Some("neutral"));
        assert_eq!(conclusion_of(None), None);
    }
}
