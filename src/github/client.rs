//! The GitHub REST calls the engine makes, as the engine's `Github` port.
//!
//! Config files are read in `contents.rs`. octocrab carries the calls
//! whose answers it models well: the repository and its default branch
//! (`models::Repository`), and the paginated lists of runners and of an
//! installation's repositories (`Page`, which follows GitHub's `Link`
//! header). Plain requests carry the rest, each reading the few fields it
//! needs: the JIT config (octocrab's `SelfHostedRunnerJitConfig` holds the
//! config as a plain `String` with a derived `Debug`; rigger's lands straight
//! in a [`Secret`]), check runs, jobs, runs, team membership and collaborator
//! permission (octocrab's models for those require fields rigger never reads,
//! so an older GitHub Enterprise Server omitting one would fail the call).
//! The runner release lookup's answers are read in [`super::release`].
//! Both paths share the installation-token cache (on the injected clock) and
//! the rate-limit accounting in [`super::http::Api`]. A check run's output is
//! fitted to GitHub's limits here ([`CheckRun::fitted`]), the one way it
//! takes to GitHub. Runners are listed place by place; a place that cannot
//! be listed (its installation rate-limited, a 5xx) is reported unknown and
//! hides no other place's runners ([`RunnerListing`]).

use std::sync::Arc;

use octocrab::Page;
use octocrab::models::actions::SelfHostedRunner;
use reqwest::Method;
use serde_json::{Value, json};

use super::app::AppAuth;
use super::contents::SelectionCache;
use super::groups::GroupCache;
use super::http::Answer;
use super::release;
use crate::engine::ports::{
    CheckRun, CheckTarget, ConfigFiles, Github, GithubError, GroupAccess, JitRunner, RepoRef,
    RunOrigin, RunnerArch, RunnerListing, RunnerRelease,
};
use crate::engine::reconcile::{GithubJobStatus, GithubJobView, RunnerView};
use crate::settings::{RunnerScope, Secret};

/// Percent-encode a query value (for `contents.rs`).
pub(super) fn query(v: &str) -> String {
    query_value(v)
}

/// Pages read at most from one list (100 items each): a bound, so a
/// misbehaving `Link` header cannot loop forever.
const MAX_PAGES: usize = 100;

/// Where rigger registers its JIT runners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerPlacement {
    pub scope: RunnerScope,
    /// The runner group (organization runners); repository runners have
    /// only the default group, 1.
    pub group_id: i64,
}

impl Default for RunnerPlacement {
    fn default() -> Self {
        RunnerPlacement {
            scope: RunnerScope::Repository,
            group_id: 1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct GithubClient {
    auth: Arc<AppAuth>,
    runners: RunnerPlacement,
    groups: Arc<GroupCache>,
    selection: Arc<SelectionCache>,
}

/// Percent-encode a query value (a branch name may hold `&`, `#`, `+`, …).
fn query_value(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl GithubClient {
    /// Repository-level runners in the default group.
    pub fn new(auth: Arc<AppAuth>) -> GithubClient {
        GithubClient::with_runners(auth, RunnerPlacement::default())
    }

    pub fn with_runners(auth: Arc<AppAuth>, runners: RunnerPlacement) -> GithubClient {
        GithubClient {
            auth,
            runners,
            groups: Arc::default(),
            selection: Arc::default(),
        }
    }

    pub(super) fn selection(&self) -> &SelectionCache {
        &self.selection
    }

    pub(super) fn groups(&self) -> &GroupCache {
        &self.groups
    }

    pub fn auth(&self) -> &AppAuth {
        &self.auth
    }

    /// A request with the installation's token. A 401 means GitHub revoked
    /// the cached token before its expiry: it is dropped, and the call made
    /// once more with a new one (which fails for good if the installation
    /// is gone).
    pub(super) async fn call(
        &self,
        installation_id: i64,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Answer, GithubError> {
        self.auth.send_as(installation_id, method, path, body).await
    }

    /// A GET through octocrab with the installation's token; `None` for
    /// 404. A 401 as in [`GithubClient::call`].
    async fn octo_get<T: octocrab::FromResponse>(
        &self,
        installation_id: i64,
        path: &str,
    ) -> Result<Option<T>, GithubError> {
        self.auth.octo_get_as(installation_id, path).await
    }

    /// Every item of a paginated list, following `Link: rel="next"`.
    pub(super) async fn all_pages<T: serde::de::DeserializeOwned>(
        &self,
        installation_id: i64,
        first: &str,
    ) -> Result<Vec<T>, GithubError> {
        let mut out = Vec::new();
        let mut next = Some(first.to_string());
        for _ in 0..MAX_PAGES {
            let Some(path) = next.take() else { break };
            let Some(mut page) = self.octo_get::<Page<T>>(installation_id, &path).await? else {
                break;
            };
            out.append(&mut page.take_items());
            next = page
                .next
                .as_ref()
                .and_then(|u| self.auth.api().relative_link(&u.to_string()));
        }
        Ok(out)
    }

    /// The repository's default branch (`GET /repos/{o}/{r}`).
    pub async fn default_branch(
        &self,
        installation_id: i64,
        repo: &str,
    ) -> Result<String, GithubError> {
        let r: octocrab::models::Repository = self
            .octo_get(installation_id, &format!("/repos/{repo}"))
            .await?
            .ok_or_else(|| {
                GithubError::Refused(format!(
                    "{repo} is not visible to installation {installation_id}: is the App installed there?"
                ))
            })?;
        r.default_branch
            .ok_or_else(|| GithubError::Transient(format!("{repo}: answer without default_branch")))
    }

    /// The repositories an installation covers (`owner/name`), every page.
    pub async fn installation_repositories(
        &self,
        installation_id: i64,
    ) -> Result<Vec<String>, GithubError> {
        let repos: Vec<octocrab::models::Repository> = self
            .all_pages(installation_id, "/installation/repositories?per_page=100")
            .await?;
        Ok(repos
            .into_iter()
            .map(|r| {
                r.full_name.unwrap_or_else(|| {
                    format!(
                        "{}/{}",
                        r.owner.map(|o| o.login).unwrap_or_default(),
                        r.name
                    )
                })
            })
            .collect())
    }

    /// Runners registered at a scope (`owner/name` or an organization),
    /// every page.
    pub async fn runners_at(
        &self,
        installation_id: i64,
        scope: &str,
    ) -> Result<Vec<RunnerView>, GithubError> {
        let base = if scope.contains('/') {
            format!("/repos/{scope}/actions/runners")
        } else {
            format!("/orgs/{scope}/actions/runners")
        };
        let runners: Vec<SelfHostedRunner> = self
            .all_pages(installation_id, &format!("{base}?per_page=100"))
            .await?;
        Ok(runners
            .into_iter()
            .map(|r| runner_view(r, installation_id, scope))
            .collect())
    }

    /// Where a runner for this repository is registered.
    fn runner_scope<'a>(&self, repo: &'a RepoRef) -> (&'a str, bool) {
        // A scope without a slash is an organization, whatever the setting:
        // the reconciler hands back the scope a runner was listed at.
        let org = self.runners.scope == RunnerScope::Organization || !repo.repo.contains('/');
        if org {
            (repo.owner(), true)
        } else {
            (repo.repo.as_str(), false)
        }
    }
}

fn runner_view(r: SelfHostedRunner, installation_id: i64, scope: &str) -> RunnerView {
    RunnerView {
        id: r.id.0 as i64,
        name: r.name,
        online: r.status == "online",
        busy: r.busy,
        installation_id,
        scope: scope.to_string(),
    }
}

impl Github for GithubClient {
    async fn hook_deliveries(
        &self,
        cursor: Option<&str>,
    ) -> Result<crate::engine::ports::HookDeliveryPage, GithubError> {
        self.list_hook_deliveries(cursor).await
    }

    async fn redeliver(&self, delivery_id: i64) -> Result<(), GithubError> {
        self.redeliver_hook_delivery(delivery_id).await
    }

    async fn cancel_run(
        &self,
        repo: &RepoRef,
        run_id: i64,
    ) -> Result<crate::engine::ports::RunCancel, GithubError> {
        self.cancel_workflow_run(repo, run_id).await
    }

    fn forget_installation(&self, installation_id: i64) {
        self.auth.forget(installation_id);
    }

    async fn config_files(
        &self,
        repo: &RepoRef,
        git_ref: Option<&str>,
    ) -> Result<ConfigFiles, GithubError> {
        self.read_config_files(repo, git_ref).await
    }

    async fn create_jit_runner(
        &self,
        repo: &RepoRef,
        name: &str,
        labels: &[String],
    ) -> Result<JitRunner, GithubError> {
        let (scope, org) = self.runner_scope(repo);
        let (path, group) = if org {
            (
                format!("/orgs/{scope}/actions/runners/generate-jitconfig"),
                self.runners.group_id,
            )
        } else {
            // Repository runners have only the default group.
            (
                format!("/repos/{scope}/actions/runners/generate-jitconfig"),
                1,
            )
        };
        let v = self
            .call(
                repo.installation_id,
                Method::POST,
                &path,
                Some(json!({
                    "name": name,
                    "runner_group_id": group,
                    "labels": labels,
                    "work_folder": "_work",
                })),
            )
            .await?
            .json()?;
        let runner_id = v
            .pointer("/runner/id")
            .and_then(Value::as_i64)
            .ok_or_else(|| GithubError::Transient("JIT answer without runner.id".into()))?;
        let config = v
            .get("encoded_jit_config")
            .and_then(Value::as_str)
            .ok_or_else(|| GithubError::Transient("JIT answer without a config".into()))?;
        Ok(JitRunner {
            runner_id,
            jit_config: Secret::new(config.to_string()),
        })
    }

    async fn delete_runner(&self, repo: &RepoRef, runner_id: i64) -> Result<(), GithubError> {
        let (scope, org) = self.runner_scope(repo);
        let path = if org {
            format!("/orgs/{scope}/actions/runners/{runner_id}")
        } else {
            format!("/repos/{scope}/actions/runners/{runner_id}")
        };
        // A runner that is already gone (404) is deleted.
        self.call(repo.installation_id, Method::DELETE, &path, None)
            .await
            .map(|_| ())
    }

    async fn list_runners(&self, prefix: &str, at: &[RepoRef]) -> RunnerListing {
        // Each place once, however many of its jobs are live; the
        // repositories each place stands for, to say which are unknown.
        let mut places: std::collections::BTreeMap<(i64, String), Vec<&RepoRef>> =
            Default::default();
        for r in at {
            let place = (r.installation_id, self.runner_scope(r).0.to_string());
            places.entry(place).or_default().push(r);
        }
        let mut listing = RunnerListing::default();
        // An installation waiting out a rate limit: its other places are
        // not asked (nothing would go out) and are as unknown.
        let mut limited: Option<(i64, GithubError)> = None;
        for ((installation, scope), repos) in places {
            let answer = match &limited {
                Some((i, e)) if *i == installation => Err(e.clone()),
                _ => self.runners_at(installation, &scope).await,
            };
            // An account that is not an organization has no org runners
            // (its listing is a 404, read as none). A place GitHub refuses
            // for good (the App was uninstalled there) holds no runner rigger
            // could manage: it must not hide the others' runners. Any other
            // error hides this place's runners only.
            match answer {
                Ok(found) => listing
                    .runners
                    .extend(found.into_iter().filter(|r| r.name.starts_with(prefix))),
                Err(GithubError::Refused(why)) => {
                    tracing::warn!(scope = %scope, "cannot list runners there: {why}");
                }
                Err(e) => {
                    if matches!(e, GithubError::RateLimited { .. }) {
                        limited = Some((installation, e.clone()));
                    }
                    listing
                        .unknown
                        .extend(repos.into_iter().map(|r| (r.clone(), e.clone())));
                }
            }
        }
        listing
    }

    async fn get_job(&self, repo: &RepoRef, job_id: i64) -> Result<GithubJobView, GithubError> {
        let v = self
            .call(
                repo.installation_id,
                Method::GET,
                &format!("/repos/{}/actions/jobs/{job_id}", repo.repo),
                None,
            )
            .await?
            .json()?;
        let status = match v.get("status").and_then(Value::as_str) {
            Some("completed") => GithubJobStatus::Completed,
            Some("in_progress") => GithubJobStatus::InProgress,
            // Held for a deployment's approval: no runner may take it yet.
            Some("waiting") => GithubJobStatus::Waiting,
            // queued, requested, pending: a runner may take it.
            _ => GithubJobStatus::Queued,
        };
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        Ok(GithubJobView {
            job_id,
            status,
            conclusion: text("conclusion"),
            runner_name: text("runner_name").filter(|n| !n.is_empty()),
        })
    }

    async fn check_run(
        &self,
        repo: &RepoRef,
        target: &CheckTarget,
        id: Option<i64>,
        run: &CheckRun,
    ) -> Result<i64, GithubError> {
        // Fitted here, the one way to GitHub: it refuses a longer summary
        // (422), and the user would see nothing at all.
        let run = run.fitted();
        let mut body = json!({
            "output": {"title": run.title, "summary": run.summary},
        });
        match run.conclusion {
            Some(c) => {
                body["status"] = json!("completed");
                body["conclusion"] = json!(c);
            }
            None => body["status"] = json!("in_progress"),
        }
        let (method, path) = match id {
            Some(id) => (
                Method::PATCH,
                format!("/repos/{}/check-runs/{id}", repo.repo),
            ),
            None => {
                body["head_sha"] = json!(target.head_sha);
                body["name"] = json!(target.name);
                body["external_id"] = json!(target.external_id);
                if let Some(url) = &target.details_url {
                    body["details_url"] = json!(url);
                }
                (Method::POST, format!("/repos/{}/check-runs", repo.repo))
            }
        };
        let v = self
            .call(repo.installation_id, method, &path, Some(body))
            .await?
            .json()?;
        v.get("id")
            .and_then(Value::as_i64)
            .ok_or_else(|| GithubError::Transient("check run answer without an id".into()))
    }

    async fn teams_of(
        &self,
        repo: &RepoRef,
        login: &str,
        teams: &[String],
    ) -> Result<Vec<String>, GithubError> {
        let mut member_of = Vec::new();
        for team in teams {
            let a = self
                .call(
                    repo.installation_id,
                    Method::GET,
                    &format!("/orgs/{}/teams/{team}/memberships/{login}", repo.owner()),
                    None,
                )
                .await?;
            // A pending invitation is not membership.
            if !a.is_not_found() && a.body.get("state").and_then(Value::as_str) == Some("active") {
                member_of.push(team.clone());
            }
        }
        Ok(member_of)
    }

    async fn run_origin(&self, repo: &RepoRef, run_id: i64) -> Result<RunOrigin, GithubError> {
        let a = self
            .call(
                repo.installation_id,
                Method::GET,
                &format!("/repos/{}/actions/runs/{run_id}", repo.repo),
                None,
            )
            .await?;
        // A run that cannot be seen is treated as the riskier kind.
        if a.is_not_found() {
            return Ok(RunOrigin {
                from_fork: true,
                pull_request: true,
            });
        }
        Ok(run_origin_of(&a.body, &repo.repo))
    }

    /// The role GitHub granted `login` on the repository. The permission
    /// endpoint answers `read` for anyone at all on a public repository
    /// (everyone may read it), so a `read` is confirmed with "check if a
    /// user is a repository collaborator" (204 or 404) before it counts;
    /// `none` and 404 (no such user) are no role.
    async fn role_of(&self, repo: &RepoRef, login: &str) -> Result<Option<String>, GithubError> {
        let a = self
            .call(
                repo.installation_id,
                Method::GET,
                &format!("/repos/{}/collaborators/{login}/permission", repo.repo),
                None,
            )
            .await?;
        if a.is_not_found() {
            return Ok(None);
        }
        let Some(role) = base_role_of(&a.body) else {
            return Ok(None);
        };
        if role != "read" {
            return Ok(Some(role.to_string()));
        }
        let granted = self
            .call(
                repo.installation_id,
                Method::GET,
                &format!("/repos/{}/collaborators/{login}", repo.repo),
                None,
            )
            .await?;
        Ok((granted.status == 204).then(|| role.to_string()))
    }

    async fn runner_group_access(&self, repo: &RepoRef) -> Result<GroupAccess, GithubError> {
        // A repository's runners (its one default group) serve it.
        if self.runners.scope != RunnerScope::Organization {
            return Ok(GroupAccess::Serves);
        }
        self.group_serves(repo, self.runners.group_id).await
    }

    async fn runner_release(
        &self,
        repo: &RepoRef,
        arch: RunnerArch,
        version: Option<&str>,
    ) -> Result<Option<RunnerRelease>, GithubError> {
        let i = repo.installation_id;
        let Some(version) = version else {
            // Where the runners go: an App for organization runners may
            // lack the repository list's Administration permission.
            let (scope, org) = self.runner_scope(repo);
            let list = self
                .call(i, Method::GET, &release::downloads_path(scope, org), None)
                .await?
                .json()?;
            return Ok(release::current_in_downloads(&list, arch));
        };
        let a = self
            .call(i, Method::GET, &release::release_path(version), None)
            .await?;
        if a.is_not_found() {
            return Ok(None);
        }
        Ok(release::asset_in_release(&a.body, version, arch))
    }
}

/// The base role in a `repository-collaborator-permission` answer:
/// `role_name` when it is one of GitHub's five base roles, otherwise (a
/// custom role, or no name) the legacy `permission` it maps to; `None` for
/// `none` or an answer without either.
fn base_role_of(answer: &Value) -> Option<&'static str> {
    const BASE: [&str; 5] = ["admin", "maintain", "write", "triage", "read"];
    let field = |k: &str| answer.get(k).and_then(Value::as_str);
    let legacy = field("permission")?;
    if legacy == "none" {
        return None;
    }
    let named = field("role_name").and_then(|r| BASE.iter().find(|b| **b == r));
    named
        .or_else(|| BASE.iter().find(|b| **b == legacy))
        .copied()
}

/// A workflow run's origin from its REST representation: a head repository
/// other than `repo` (or none) is a fork; `event` names what triggered it.
fn run_origin_of(run: &Value, repo: &str) -> RunOrigin {
    let head = run
        .pointer("/head_repository/full_name")
        .and_then(Value::as_str);
    let from_fork = head.is_none_or(|h| !h.eq_ignore_ascii_case(repo));
    let event = run.get("event").and_then(Value::as_str).unwrap_or("");
    RunOrigin {
        from_fork,
        pull_request: from_fork || event.starts_with("pull_request"),
    }
}

#[cfg(test)]
mod run_origin_tests {
    use super::*;

    #[test]
    fn forks_and_pull_request_events_are_told_apart() {
        let run = |head: &str, event: &str| json!({"event": event, "head_repository": {"full_name": head}});
        let o = |head, event| run_origin_of(&run(head, event), "acme/ml");
        assert_eq!(o("acme/ml", "push"), RunOrigin::default());
        assert_eq!(
            o("ACME/ml", "pull_request"),
            RunOrigin {
                from_fork: false,
                pull_request: true
            },
            "a pull request from a branch of the repository"
        );
        assert_eq!(
            o("outsider/ml", "pull_request_target"),
            RunOrigin {
                from_fork: true,
                pull_request: true
            }
        );
        // No head repository (deleted fork): the riskier reading.
        assert!(run_origin_of(&json!({"event": "push"}), "acme/ml").from_fork);
    }
}
