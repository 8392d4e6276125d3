//! GitHub webhook deliveries: the signature check over the raw body, and the
//! parse into rigger's own event types (no GitHub payload type leaks inward).

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

pub use crate::engine::events::{
    Conclusion, Environment, FromFork, HeadSha, InstallationId, JobId, Labels, Repository,
    RunAttempt, RunId, RunnerName,
};
use crate::engine::events::{JobEvent, JobInfo};
pub use crate::engine::installations::{AccessEvent, AccessLoss};
use crate::settings::Secret;
use crate::text::{clip, for_log};

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
    /// Every `workflow_job` action rigger acts on, `waiting` included
    /// (`JobEvent::Waiting`: a job held for a deployment's approval).
    WorkflowJob(JobEvent),
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

// ---- what GitHub sends at most: anything beyond is refused, naming the field ----

/// GitHub's ids (jobs, runs, installations) are positive, and no larger than
/// its own JavaScript clients read exactly: 2^53 − 1.
pub const MAX_ID: i64 = (1 << 53) - 1;
/// GitHub.com allows 50 re-runs of a workflow (attempt 51) since April 2026;
/// the headroom is for GitHub Enterprise Server and runs from before.
pub const MAX_RUN_ATTEMPT: i64 = 1_000;
/// A runner is registered with at most 100 labels (`generate-jitconfig`),
/// and rigger registers a job's runner with all of the job's labels.
pub const MAX_LABELS: usize = 100;
/// GitHub documents no length limit for a runner label: 256 characters is
/// rigger's own bound, far above any label a workflow uses.
pub const MAX_LABEL_CHARS: usize = 256;
/// A user's or an organisation's login. An App's bot, `slug[bot]`, fits too:
/// an App's name has at most 34 characters.
pub const MAX_LOGIN_CHARS: usize = 39;
/// A repository's name, without its owner.
pub const MAX_REPO_NAME_CHARS: usize = 100;
/// A self-hosted runner's name.
pub const MAX_RUNNER_NAME_CHARS: usize = 64;
/// A commit id: 40 hex digits (SHA-1), 64 in a SHA-256 repository.
pub const MAX_SHA_CHARS: usize = 64;
/// An `action` or a `conclusion`: one short word.
pub const MAX_WORD_CHARS: usize = 64;
/// A job's name, as rigger keeps it for its check run (cut, not refused:
/// GitHub documents no limit, and a long matrix name is no reason to drop a job).
pub const MAX_JOB_NAME_CHARS: usize = 200;
/// A job's `html_url` longer than this is not used.
pub const MAX_URL_CHARS: usize = 2_000;
/// An environment's name: GitHub allows at most 255 characters.
pub const MAX_ENVIRONMENT_CHARS: usize = 255;

// ---- the parts of GitHub's payloads rigger reads ----

#[derive(Deserialize)]
struct JobPayload {
    action: String,
    workflow_job: WorkflowJob,
    repository: RepoPayload,
    sender: Option<Account>,
    installation: Option<Installation>,
    /// Sent when the job names an environment (with `queued`; `waiting`
    /// may carry none).
    deployment: Option<Deployment>,
}

#[derive(Deserialize)]
struct Deployment {
    environment: Option<String>,
}

#[derive(Deserialize)]
struct WorkflowJob {
    id: i64,
    run_id: i64,
    #[serde(default = "one")]
    run_attempt: i64,
    head_sha: String,
    #[serde(default, deserialize_with = "bounded_labels")]
    labels: Vec<String>,
    conclusion: Option<String>,
    runner_name: Option<String>,
    /// The job's name (a matrix job's carries its values): its check run's.
    name: Option<String>,
    html_url: Option<String>,
    /// `queued`, `waiting` (held for a deployment's approval), … .
    status: Option<String>,
}

fn one() -> i64 {
    1
}

/// `workflow_job.labels`, refused at the first label past [`MAX_LABELS`] or
/// longer than [`MAX_LABEL_CHARS`]: a body of a million empty labels would
/// otherwise become a million strings before any check could look at them.
fn bounded_labels<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct Labels;
    impl<'de> serde::de::Visitor<'de> for Labels {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "a list of at most {MAX_LABELS} labels")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Vec<String>, A::Error> {
            use serde::de::Error;
            let mut labels = Vec::new();
            while let Some(label) = seq.next_element::<String>()? {
                if labels.len() == MAX_LABELS {
                    return Err(A::Error::custom(format!(
                        "`workflow_job.labels` has more than {MAX_LABELS} labels; a runner takes at most {MAX_LABELS}"
                    )));
                }
                let chars = label.chars().count();
                if chars > MAX_LABEL_CHARS {
                    return Err(A::Error::custom(format!(
                        "`workflow_job.labels[{}]` has {chars} characters; a label has at most {MAX_LABEL_CHARS}",
                        labels.len()
                    )));
                }
                labels.push(label);
            }
            Ok(labels)
        }
    }
    d.deserialize_seq(Labels)
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

/// serde_json's message quotes the input it refused (a 20 MB string where a
/// number belongs, say): it is cut to [`crate::text::LOG_CHARS`] characters,
/// keeping where in the body it was.
fn serde_reason(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let at = format!(" at line {} column {}", e.line(), e.column());
    match full.strip_suffix(&at) {
        Some(message) => format!("{}{at}", for_log(message)),
        None => for_log(&full).into_owned(),
    }
}

fn read<'a, T: Deserialize<'a>>(event: &str, body: &'a [u8]) -> Result<T, ParseError> {
    serde_json::from_slice(body).map_err(|e| ParseError {
        event: event.to_string(),
        reason: serde_reason(&e),
    })
}

/// The checks on one payload's values; each error names the field.
struct Fields<'a> {
    event: &'a str,
}

impl Fields<'_> {
    fn refuse(&self, reason: String) -> ParseError {
        ParseError {
            event: self.event.to_string(),
            reason,
        }
    }

    fn id(&self, field: &str, id: i64) -> Result<i64, ParseError> {
        if (1..=MAX_ID).contains(&id) {
            Ok(id)
        } else {
            Err(self.refuse(format!("`{field}` is {id}: GitHub's ids are 1 to {MAX_ID}")))
        }
    }

    fn attempt(&self, attempt: i64) -> Result<RunAttempt, ParseError> {
        if (1..=MAX_RUN_ATTEMPT).contains(&attempt) {
            Ok(RunAttempt(attempt))
        } else {
            Err(self.refuse(format!(
                "`workflow_job.run_attempt` is {attempt}: a run's attempts count from 1 to at most {MAX_RUN_ATTEMPT}"
            )))
        }
    }

    /// `text`, unless it has more than `max` characters.
    fn text(&self, field: &str, text: String, max: usize) -> Result<String, ParseError> {
        let chars = text.chars().count();
        if chars <= max {
            Ok(text)
        } else {
            Err(self.refuse(format!(
                "`{field}` has {chars} characters; GitHub allows at most {max}"
            )))
        }
    }

    /// `owner/name`, each part within GitHub's limits.
    fn repo(&self, field: &str, full_name: String) -> Result<Repository, ParseError> {
        let Some((owner, name)) = full_name.split_once('/') else {
            return Err(self.refuse(format!(
                "`{field}` is {:?}, not `owner/name`",
                for_log(&full_name)
            )));
        };
        let fits = |part: &str, max: usize| (1..=max).contains(&part.chars().count());
        if !fits(owner, MAX_LOGIN_CHARS) || !fits(name, MAX_REPO_NAME_CHARS) || name.contains('/') {
            return Err(self.refuse(format!(
                "`{field}` is {:?}: GitHub's owners have 1 to {MAX_LOGIN_CHARS} characters, its repository names 1 to {MAX_REPO_NAME_CHARS}",
                for_log(&full_name)
            )));
        }
        Ok(Repository(full_name))
    }

    fn sha(&self, sha: String) -> Result<HeadSha, ParseError> {
        let hex = sha.bytes().all(|b| b.is_ascii_hexdigit());
        if hex && (1..=MAX_SHA_CHARS).contains(&sha.len()) {
            Ok(HeadSha(sha))
        } else {
            Err(self.refuse(format!(
                "`workflow_job.head_sha` is {:?}: a commit id is 1 to {MAX_SHA_CHARS} hex digits",
                for_log(&sha)
            )))
        }
    }

    fn login(&self, field: &str, account: Option<Account>) -> Result<String, ParseError> {
        account.map_or(Ok(String::new()), |a| {
            self.text(field, a.login, MAX_LOGIN_CHARS)
        })
    }

    /// An installation, when the payload names one (a delivery to a plain
    /// webhook, not an App, has none: id 0).
    fn installation(
        &self,
        i: Option<Installation>,
    ) -> Result<(InstallationId, String), ParseError> {
        match i {
            None => Ok((InstallationId(0), String::new())),
            Some(i) => Ok((
                InstallationId(self.id("installation.id", i.id)?),
                self.login("installation.account.login", i.account)?,
            )),
        }
    }
}

/// Parse a delivery whose signature was already verified.
pub fn parse(event: &str, body: &[u8]) -> Result<Event, ParseError> {
    let fields = Fields { event };
    match event {
        "workflow_job" => workflow_job(&fields, read(event, body)?),
        "ping" => {
            let p: PingPayload = read(event, body)?;
            Ok(Event::Ping { zen: p.zen })
        }
        "installation" => {
            let p: InstallationPayload = read(event, body)?;
            let (installation, account) = fields.installation(Some(p.installation))?;
            Ok(Event::Installation {
                action: fields.text("action", p.action, MAX_WORD_CHARS)?,
                installation,
                account,
            })
        }
        "installation_repositories" => {
            let p: InstallationReposPayload = read(event, body)?;
            let (installation, _) = fields.installation(Some(p.installation))?;
            let repos = |field: &str, list: Vec<RepoPayload>| {
                list.into_iter()
                    .map(|r| fields.repo(field, r.full_name))
                    .collect::<Result<Vec<_>, _>>()
            };
            Ok(Event::InstallationRepositories {
                action: fields.text("action", p.action, MAX_WORD_CHARS)?,
                installation,
                added: repos("repositories_added[].full_name", p.repositories_added)?,
                removed: repos("repositories_removed[].full_name", p.repositories_removed)?,
            })
        }
        other => Ok(Event::Ignored(clip(other, MAX_WORD_CHARS).into_owned())),
    }
}

fn workflow_job(fields: &Fields, p: JobPayload) -> Result<Event, ParseError> {
    let w = p.workflow_job;
    let (installation_id, _) = fields.installation(p.installation)?;
    let info = JobInfo {
        job_id: JobId(fields.id("workflow_job.id", w.id)?),
        run_id: RunId(fields.id("workflow_job.run_id", w.run_id)?),
        run_attempt: fields.attempt(w.run_attempt)?,
        repo: fields.repo("repository.full_name", p.repository.full_name)?,
        installation_id,
        labels: Labels(w.labels),
        head_sha: fields.sha(w.head_sha)?,
        // workflow_job says nothing of forks: the engine asks for the run.
        is_fork: FromFork(false),
        actor: fields.login("sender.login", p.sender)?,
        // Shown, never acted on: an odd one is cut or left out, not refused.
        name: w
            .name
            .filter(|n| !n.trim().is_empty())
            .map(|n| clip(&n, MAX_JOB_NAME_CHARS).into_owned()),
        html_url: w
            .html_url
            .filter(|u| u.starts_with("https://") && u.len() <= MAX_URL_CHARS),
    };
    let runner_name = match w.runner_name.filter(|n| !n.is_empty()) {
        Some(n) => Some(RunnerName(fields.text(
            "workflow_job.runner_name",
            n,
            MAX_RUNNER_NAME_CHARS,
        )?)),
        None => None,
    };
    let conclusion = match w.conclusion {
        Some(c) => Some(Conclusion::from(fields.text(
            "workflow_job.conclusion",
            c,
            MAX_WORD_CHARS,
        )?)),
        None => None,
    };
    let action = fields.text("action", p.action, MAX_WORD_CHARS)?;
    let status = match w.status {
        Some(s) => Some(fields.text("workflow_job.status", s, MAX_WORD_CHARS)?),
        None => None,
    };
    let environment = match p.deployment.and_then(|d| d.environment) {
        Some(e) if !e.is_empty() => Some(Environment(fields.text(
            "deployment.environment",
            e,
            MAX_ENVIRONMENT_CHARS,
        )?)),
        _ => None,
    };
    // A job that names an environment with protection rules arrives as
    // `queued` with status `waiting` (and its `deployment`), then
    // `waiting`; once approved, `queued` again with status `queued`.
    // Nothing may be rented for it until then.
    let waiting = action == "waiting" || status.as_deref() == Some("waiting");
    Ok(match action.as_str() {
        "queued" | "waiting" if waiting => Event::WorkflowJob(JobEvent::Waiting {
            job: info,
            environment,
        }),
        "queued" => Event::WorkflowJob(JobEvent::Queued(info)),
        "in_progress" => Event::WorkflowJob(JobEvent::InProgress {
            job: info,
            runner_name,
        }),
        "completed" => Event::WorkflowJob(JobEvent::Completed {
            job: info,
            conclusion,
            runner_name,
        }),
        other => Event::Ignored(format!("workflow_job.{other}")),
    })
}

// ---- installation and installation_repositories: what they mean to the engine ----

impl Event {
    /// What an `installation` or `installation_repositories` event changes
    /// for rigger: `deleted` (the App uninstalled) and `suspend` end the
    /// App's access to the account; `installation_repositories.removed`
    /// ends it for those repositories. `created`, `unsuspend`, `added` and
    /// the others need nothing: rigger learns of a repository from its jobs.
    pub fn access(&self) -> Option<AccessEvent> {
        match self {
            Event::Installation {
                action,
                installation,
                ..
            } => {
                let why = match action.as_str() {
                    "deleted" => AccessLoss::Uninstalled,
                    "suspend" => AccessLoss::Suspended,
                    _ => return None,
                };
                Some(AccessEvent::Lost {
                    installation: *installation,
                    why,
                })
            }
            Event::InstallationRepositories {
                action,
                installation,
                removed,
                ..
            } if action == "removed" && !removed.is_empty() => Some(AccessEvent::ReposRemoved {
                installation: *installation,
                repos: removed.clone(),
            }),
            _ => None,
        }
    }

    /// The `action` of an installation event (what the inbox row keeps).
    pub fn installation_action(&self) -> Option<&str> {
        match self {
            Event::Installation { action, .. } | Event::InstallationRepositories { action, .. } => {
                Some(action)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installation_events_say_what_access_ended() {
        let inst = |action: &str| {
            let body = format!(
                r#"{{"action":"{action}","installation":{{"id":5,"account":{{"login":"acme"}}}},"sender":{{"login":"octocat"}}}}"#
            );
            parse("installation", body.as_bytes()).unwrap().access()
        };
        assert_eq!(
            inst("deleted"),
            Some(AccessEvent::Lost {
                installation: InstallationId(5),
                why: AccessLoss::Uninstalled
            })
        );
        assert_eq!(
            inst("suspend"),
            Some(AccessEvent::Lost {
                installation: InstallationId(5),
                why: AccessLoss::Suspended
            })
        );
        assert_eq!(inst("unsuspend"), None);
        assert_eq!(inst("created"), None);
        let body = br#"{"action":"removed","installation":{"id":5},"repository_selection":"selected","repositories_added":[],"repositories_removed":[{"id":1,"name":"ml","full_name":"acme/ml","private":true}]}"#;
        assert_eq!(
            parse("installation_repositories", body).unwrap().access(),
            Some(AccessEvent::ReposRemoved {
                installation: InstallationId(5),
                repos: vec![Repository::from("acme/ml")]
            })
        );
    }

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
    fn a_queued_job_held_for_an_approval_is_waiting_not_queued() {
        let body = br#"{"action":"queued","workflow_job":{"id":7,"run_id":8,"run_attempt":2,"head_sha":"abc","status":"waiting","labels":["cirun-gpu--8"],"conclusion":null,"runner_id":5,"runner_name":null},"repository":{"full_name":"o/r"},"sender":{"login":"octocat"},"installation":{"id":99},"deployment":{"id":3,"environment":"production"}}"#;
        match parse("workflow_job", body).unwrap() {
            Event::WorkflowJob(JobEvent::Waiting { job, environment }) => {
                assert_eq!(job.job_id, JobId(7));
                assert_eq!(environment.as_deref(), Some("production"));
            }
            e => panic!("{e:?}"),
        }
        // `waiting` itself may name no deployment.
        let mut v: serde_json::Value = serde_json::from_slice(body).unwrap();
        v["action"] = "waiting".into();
        v.as_object_mut().unwrap().remove("deployment");
        match parse("workflow_job", &serde_json::to_vec(&v).unwrap()).unwrap() {
            Event::WorkflowJob(JobEvent::Waiting { environment, .. }) => {
                assert_eq!(environment, None)
            }
            e => panic!("{e:?}"),
        }
        // Approved: `queued` with status `queued` is a job to serve.
        v["action"] = "queued".into();
        v["workflow_job"]["status"] = "queued".into();
        assert!(matches!(
            parse("workflow_job", &serde_json::to_vec(&v).unwrap()).unwrap(),
            Event::WorkflowJob(JobEvent::Queued(_))
        ));
        // An environment's name past GitHub's 255 characters is refused.
        v["deployment"] = serde_json::json!({"environment": "e".repeat(256)});
        v["workflow_job"]["status"] = "waiting".into();
        let e = parse("workflow_job", &serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(e.reason.contains("`deployment.environment`"), "{e}");
    }

    #[test]
    fn action_decides_and_status_only_holds_back() {
        let body = br#"{"action":"queued","workflow_job":{"id":7,"run_id":8,"run_attempt":2,"head_sha":"abc","status":"queued","labels":["cirun-gpu--8"],"conclusion":null,"runner_id":5,"runner_name":null},"repository":{"full_name":"o/r"},"sender":{"login":"octocat"},"installation":{"id":99}}"#;
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

    /// A queued job as GitHub sends it, as JSON to change one field of.
    fn queued() -> serde_json::Value {
        serde_json::json!({
            "action": "queued",
            "workflow_job": {"id": 7, "run_id": 8, "run_attempt": 1, "head_sha": "abc",
                "labels": ["cirun-gpu--8"], "conclusion": null, "runner_name": null},
            "repository": {"full_name": "o/r"},
            "sender": {"login": "octocat"},
            "installation": {"id": 99}
        })
    }

    /// `queued()` with the value at `pointer` replaced, parsed.
    fn with(pointer: &str, value: serde_json::Value) -> Result<Event, ParseError> {
        let mut v = queued();
        *v.pointer_mut(pointer)
            .unwrap_or_else(|| panic!("{pointer}")) = value;
        parse("workflow_job", &serde_json::to_vec(&v).unwrap())
    }

    #[track_caller]
    fn refused(pointer: &str, value: serde_json::Value, names: &str) {
        match with(pointer, value.clone()) {
            Err(e) => assert!(e.reason.contains(names), "{pointer} = {value}: {e}"),
            Ok(ev) => panic!("{pointer} = {value} was read: {ev:?}"),
        }
    }

    #[test]
    fn a_jobs_name_and_page_are_read_and_an_odd_one_is_cut_or_left_out() {
        use serde_json::json;
        let info = |name: serde_json::Value, url: serde_json::Value| {
            let mut v = queued();
            v["workflow_job"]["name"] = name;
            v["workflow_job"]["html_url"] = url;
            match parse("workflow_job", &serde_json::to_vec(&v).unwrap()).unwrap() {
                Event::WorkflowJob(JobEvent::Queued(j)) => (j.name, j.html_url),
                e => panic!("{e:?}"),
            }
        };
        let page = "https://github.com/o/r/actions/runs/8/job/7";
        assert_eq!(
            info(json!("train (a100)"), json!(page)),
            (Some("train (a100)".into()), Some(page.into()))
        );
        let (name, url) = info(json!("m".repeat(1_000)), json!("javascript:alert(1)"));
        assert_eq!(name.unwrap().chars().count(), MAX_JOB_NAME_CHARS);
        assert_eq!(url, None, "only an https page is linked");
        assert_eq!(info(json!("  "), json!(null)), (None, None));
        assert_eq!(info(json!(null), json!(null)), (None, None));
    }

    #[test]
    fn ids_out_of_range_are_refused_naming_the_field() {
        use serde_json::json;
        for bad in [json!(0), json!(-1), json!(MAX_ID + 1), json!(i64::MAX)] {
            refused("/workflow_job/id", bad.clone(), "`workflow_job.id`");
            refused("/workflow_job/run_id", bad.clone(), "`workflow_job.run_id`");
            refused("/installation/id", bad, "`installation.id`");
        }
        for bad in [json!(0), json!(-2), json!(MAX_RUN_ATTEMPT + 1)] {
            refused(
                "/workflow_job/run_attempt",
                bad,
                "`workflow_job.run_attempt`",
            );
        }
        // Past i64, and not integers at all: serde's own words, with where.
        refused("/workflow_job/id", json!(u64::MAX), "at line 1 column");
        refused("/workflow_job/id", json!(1.5), "at line 1 column");
        // The bounds themselves are GitHub's, so they are read.
        assert!(with("/workflow_job/id", json!(MAX_ID)).is_ok());
        assert!(with("/workflow_job/run_attempt", json!(MAX_RUN_ATTEMPT)).is_ok());
        // No installation (a plain webhook, not an App's): 0, as before.
        let mut v = queued();
        v.as_object_mut().unwrap().remove("installation");
        match parse("workflow_job", &serde_json::to_vec(&v).unwrap()).unwrap() {
            Event::WorkflowJob(JobEvent::Queued(j)) => assert_eq!(*j.installation_id, 0),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn labels_past_githubs_limits_are_refused() {
        use serde_json::json;
        let many = |n: usize| json!((0..n).map(|i| format!("l{i}")).collect::<Vec<_>>());
        assert!(with("/workflow_job/labels", many(MAX_LABELS)).is_ok());
        refused(
            "/workflow_job/labels",
            many(MAX_LABELS + 1),
            "more than 100 labels",
        );
        // Counted in characters: 256 of a two-byte letter is a label.
        let long = |n: usize| "ü".repeat(n);
        assert!(with("/workflow_job/labels", json!([long(MAX_LABEL_CHARS)])).is_ok());
        refused(
            "/workflow_job/labels",
            json!(["ok", long(MAX_LABEL_CHARS + 1)]),
            "`workflow_job.labels[1]` has 257 characters",
        );
    }

    #[test]
    fn names_past_githubs_limits_are_refused() {
        use serde_json::json;
        let n = |c: char, len: usize| c.to_string().repeat(len);
        let repo = "/repository/full_name";
        assert!(with(repo, json!(format!("{}/{}", n('o', 39), n('r', 100)))).is_ok());
        refused(
            repo,
            json!(format!("{}/r", n('o', 40))),
            "`repository.full_name`",
        );
        refused(
            repo,
            json!(format!("o/{}", n('r', 101))),
            "`repository.full_name`",
        );
        refused(repo, json!("no-owner"), "not `owner/name`");
        refused(repo, json!("/r"), "`repository.full_name`");
        refused(repo, json!("o/r/x"), "`repository.full_name`");
        refused("/sender/login", json!(n('a', 40)), "`sender.login` has 40");
        assert!(with("/sender/login", json!("dependabot[bot]")).is_ok());
        refused(
            "/workflow_job/runner_name",
            json!(n('r', 65)),
            "`workflow_job.runner_name` has 65",
        );
        refused(
            "/workflow_job/head_sha",
            json!("not-hex"),
            "`workflow_job.head_sha`",
        );
        refused(
            "/workflow_job/head_sha",
            json!(n('a', 65)),
            "`workflow_job.head_sha`",
        );
        refused(
            "/workflow_job/head_sha",
            json!(""),
            "`workflow_job.head_sha`",
        );
        refused("/action", json!(n('q', 65)), "`action` has 65");
        refused(
            "/workflow_job/conclusion",
            json!(n('c', 65)),
            "`workflow_job.conclusion`",
        );
    }

    #[test]
    fn an_error_quotes_at_most_a_bounded_slice_of_the_body() {
        let huge = "9".repeat(100_000);
        let e = with("/workflow_job/id", serde_json::json!(huge)).unwrap_err();
        assert!(
            e.reason.chars().count() < 300,
            "{} characters",
            e.reason.len()
        );
        assert!(e.reason.contains(" at line 1 column "), "{e}");
        assert!(e.reason.contains('…'), "{e}");
        // And no more than that in the message the server answers with.
        assert!(e.to_string().chars().count() < 340);
        // An event name is cut too, wherever it came from.
        match parse(&"x".repeat(10_000), b"{}").unwrap() {
            Event::Ignored(name) => assert!(name.chars().count() <= MAX_WORD_CHARS),
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
