//! GitHub webhook deliveries: the signature check over the raw body, and the
//! parse into rigger's own event types (no GitHub payload type leaks inward).

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

pub use crate::engine::events::{
    Conclusion, FromFork, HeadSha, InstallationId, JobId, Labels, Repository, RunAttempt, RunId,
    RunnerName,
};
use crate::engine::events::{JobEvent, JobInfo};
use crate::settings::Secret;

/// Why a delivery's signature was refused (all answered with 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no X-Hub-Signature-256 header")]
    Missing,
    #[error("X-Hub-Signature-256 is not `sha256=` and 64 hex digits")]
    Malformed,
    #[error("the signature does not match any webhook secret")]
    Mismatch,
}

/// Check `X-Hub-Signature-256` against every configured secret (several
/// during a rotation). The comparison is constant-time (`verify_slice`).
pub fn verify(secrets: &[Secret], header: Option<&str>, body: &[u8]) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_sig = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    let expected = hex::decode(hex_sig).map_err(|_| SignatureError::Malformed)?;
    if expected.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    for secret in secrets {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) else {
            continue;
        };
        mac.update(body);
        if mac.verify_slice(&expected).is_ok() {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

/// The `sha256=…` header value for a body (for `rigger webhook send` and the
/// simulated GitHub).
pub fn sign(secret: &Secret, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A delivery, in rigger's words.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    WorkflowJob(JobEvent),
    /// `waiting`: the job waits for a deployment approval; nothing to rent yet.
    WorkflowJobWaiting {
        job_id: JobId,
    },
    Ping {
        zen: String,
    },
    Installation {
        action: String,
        installation: InstallationId,
        account: String,
    },
    InstallationRepositories {
        action: String,
        installation: InstallationId,
        added: Vec<Repository>,
        removed: Vec<Repository>,
    },
    /// Any other event: acknowledged and ignored.
    Ignored(String),
}

/// A body that is not what its event says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed `{event}` payload: {reason}")]
pub struct ParseError {
    pub event: String,
    pub reason: String,
}

// ---- the parts of GitHub's payloads rigger reads ----

#[derive(Deserialize)]
struct JobPayload {
    action: String,
    workflow_job: WorkflowJob,
    repository: RepoPayload,
    sender: Option<Account>,
    installation: Option<Installation>,
}

#[derive(Deserialize)]
struct WorkflowJob {
    id: i64,
    run_id: i64,
    #[serde(default = "one")]
    run_attempt: i64,
    head_sha: String,
    #[serde(default)]
    labels: Vec<String>,
    conclusion: Option<String>,
    runner_name: Option<String>,
}

fn one() -> i64 {
    1
}

#[derive(Deserialize)]
struct RepoPayload {
    full_name: String,
}

#[derive(Deserialize)]
struct Account {
    login: String,
}

#[derive(Deserialize)]
struct Installation {
    id: i64,
    account: Option<Account>,
}

#[derive(Deserialize)]
struct PingPayload {
    #[serde(default)]
    zen: String,
}

#[derive(Deserialize)]
struct InstallationPayload {
    action: String,
    installation: Installation,
}

#[derive(Deserialize)]
struct InstallationReposPayload {
    action: String,
    installation: Installation,
    #[serde(default)]
    repositories_added: Vec<RepoPayload>,
    #[serde(default)]
    repositories_removed: Vec<RepoPayload>,
}

fn malformed(event: &str, e: impl std::fmt::Display) -> ParseError {
    ParseError {
        event: event.to_string(),
        reason: e.to_string(),
    }
}

/// Parse a delivery whose signature was already verified.
pub fn parse(event: &str, body: &[u8]) -> Result<Event, ParseError> {
    match event {
        "workflow_job" => {
            let p: JobPayload = serde_json::from_slice(body).map_err(|e| malformed(event, e))?;
            let w = p.workflow_job;
            let info = JobInfo {
                job_id: JobId(w.id),
                run_id: RunId(w.run_id),
                run_attempt: RunAttempt(w.run_attempt),
                repo: Repository(p.repository.full_name),
                installation_id: InstallationId(p.installation.map_or(0, |i| i.id)),
                labels: Labels(w.labels),
                head_sha: HeadSha(w.head_sha),
                // workflow_job says nothing of forks: the engine asks for the run.
                is_fork: FromFork(false),
                actor: p.sender.map(|s| s.login).unwrap_or_default(),
            };
            let runner_name = w.runner_name.filter(|n| !n.is_empty()).map(RunnerName);
            // Act on `action`, not `status`: a `queued` delivery may carry
            // status `waiting` (deployments), and new actions appear over time.
            Ok(match p.action.as_str() {
                "queued" => Event::WorkflowJob(JobEvent::Queued(info)),
                "waiting" => Event::WorkflowJobWaiting {
                    job_id: info.job_id,
                },
                "in_progress" => Event::WorkflowJob(JobEvent::InProgress {
                    job: info,
                    runner_name,
                }),
                "completed" => Event::WorkflowJob(JobEvent::Completed {
                    job: info,
                    conclusion: w.conclusion.map(Conclusion::from),
                    runner_name,
                }),
                other => Event::Ignored(format!("workflow_job.{other}")),
            })
        }
        "ping" => {
            let p: PingPayload = serde_json::from_slice(body).map_err(|e| malformed(event, e))?;
            Ok(Event::Ping { zen: p.zen })
        }
        "installation" => {
            let p: InstallationPayload =
                serde_json::from_slice(body).map_err(|e| malformed(event, e))?;
            Ok(Event::Installation {
                action: p.action,
                installation: InstallationId(p.installation.id),
                account: p.installation.account.map(|a| a.login).unwrap_or_default(),
            })
        }
        "installation_repositories" => {
            let p: InstallationReposPayload =
                serde_json::from_slice(body).map_err(|e| malformed(event, e))?;
            Ok(Event::InstallationRepositories {
                action: p.action,
                installation: InstallationId(p.installation.id),
                added: p
                    .repositories_added
                    .into_iter()
                    .map(|r| Repository(r.full_name))
                    .collect(),
                removed: p
                    .repositories_removed
                    .into_iter()
                    .map(|r| Repository(r.full_name))
                    .collect(),
            })
        }
        other => Ok(Event::Ignored(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn githubs_documented_test_vector() {
        let secret = Secret::new("It's a Secret to Everybody");
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign(&secret, b"Hello, World!"), header);
        assert_eq!(verify(&[secret], Some(header), b"Hello, World!"), Ok(()));
    }

    #[test]
    fn bad_signatures_are_refused() {
        let s = vec![Secret::new("old"), Secret::new("new")];
        let body = b"{}";
        let good = sign(&s[1], body);
        assert_eq!(verify(&s, Some(&good), body), Ok(()), "either secret works");
        assert_eq!(verify(&s, None, body), Err(SignatureError::Missing));
        assert_eq!(
            verify(&s, Some("sha1=abc"), body),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(&s, Some(&good[..40]), body),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(&s, Some("sha256=zz"), body),
            Err(SignatureError::Malformed)
        );
        let other = sign(&Secret::new("wrong"), body);
        assert_eq!(
            verify(&s, Some(&other), body),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&s, Some(&good), b"{} "),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn action_decides_not_status() {
        let body = br#"{"action":"queued","workflow_job":{"id":7,"run_id":8,"run_attempt":2,"head_sha":"abc","status":"waiting","labels":["cirun-gpu--8"],"conclusion":null,"runner_id":5,"runner_name":null},"repository":{"full_name":"o/r"},"sender":{"login":"octocat"},"installation":{"id":99}}"#;
        match parse("workflow_job", body).unwrap() {
            Event::WorkflowJob(JobEvent::Queued(j)) => {
                assert_eq!(j.job_id, JobId(7));
                assert_eq!(j.run_id, RunId(8));
                assert_eq!(j.run_attempt, RunAttempt(2));
                assert_eq!(j.installation_id, InstallationId(99));
                assert_eq!(j.head_sha, "abc");
                assert_eq!(j.actor, "octocat");
                assert_eq!(j.labels, vec!["cirun-gpu--8"]);
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn malformed_known_events_are_errors_others_ignored() {
        assert!(parse("workflow_job", b"{\"action\":\"queued\"}").is_err());
        assert!(parse("workflow_job", b"not json").is_err());
        assert_eq!(
            parse("star", b"anything").unwrap(),
            Event::Ignored("star".into())
        );
    }
}
