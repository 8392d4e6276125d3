//! The GitHub REST calls the engine makes, as the engine's `Github` port.
//! Plain requests with rigger's own types: each call reads the few fields it
//! needs, and the token cache runs on the injected clock (octocrab's reads
//! the system clock, which the tests cannot step).

use std::sync::Arc;

use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};

use super::app::AppAuth;
use super::http::{Answer, Auth};
use crate::engine::ports::{CheckRun, ConfigFiles, Github, GithubError, JitRunner, RepoRef};
use crate::engine::reconcile::{GithubJobStatus, GithubJobView, RunnerView};
use crate::settings::Secret;

/// The check run's name on the commit.
pub const CHECK_NAME: &str = "rigger";

#[derive(Debug, Clone)]
pub struct GithubClient {
    auth: Arc<AppAuth>,
}

impl GithubClient {
    pub fn new(auth: Arc<AppAuth>) -> GithubClient {
        GithubClient { auth }
    }

    pub fn auth(&self) -> &AppAuth {
        &self.auth
    }

    async fn call(
        &self,
        installation_id: i64,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Answer, GithubError> {
        let token = self.auth.installation_token(installation_id).await?;
        self.auth
            .api()
            .send(method, path, Auth::Bearer(&token), body)
            .await
    }

    /// A file's text at a ref, `None` when it does not exist there.
    pub async fn file(
        &self,
        installation_id: i64,
        repo: &str,
        path: &str,
        git_ref: Option<&str>,
    ) -> Result<Option<String>, GithubError> {
        let query = git_ref.map(|r| format!("?ref={r}")).unwrap_or_default();
        let answer = self
            .call(
                installation_id,
                Method::GET,
                &format!("/repos/{repo}/contents/{path}{query}"),
                None,
            )
            .await?;
        if answer.is_not_found() {
            return Ok(None);
        }
        let v = answer.body;
        if v.get("type").and_then(Value::as_str) != Some("file") {
            return Ok(None);
        }
        // Base64 with embedded newlines.
        let packed: String = v
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(packed)
            .map_err(|e| {
                GithubError::Transient(format!("{repo}/{path}: unreadable content: {e}"))
            })?;
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| GithubError::Refused(format!("{repo}/{path} is not UTF-8 text")))
    }
}

fn runner_view(v: &Value, installation_id: i64, scope: &str) -> Option<RunnerView> {
    Some(RunnerView {
        id: v.get("id")?.as_i64()?,
        name: v.get("name")?.as_str()?.to_string(),
        online: v.get("status").and_then(Value::as_str) == Some("online"),
        busy: v.get("busy").and_then(Value::as_bool).unwrap_or(false),
        installation_id,
        scope: scope.to_string(),
    })
}

impl Github for GithubClient {
    async fn config_files(
        &self,
        repo: &RepoRef,
        git_ref: Option<&str>,
    ) -> Result<ConfigFiles, GithubError> {
        let i = repo.installation_id;
        let org_repo = format!("{}/.cirun", repo.owner());
        Ok(ConfigFiles {
            repo: self.file(i, &repo.repo, ".cirun.yml", git_ref).await?,
            // The org's files are read from its `.cirun` repository's
            // default branch, whatever the job's commit.
            org: self.file(i, &org_repo, ".cirun.global.yml", None).await?,
            access: self.file(i, &org_repo, ".access.yml", None).await?,
        })
    }

    async fn create_jit_runner(
        &self,
        repo: &RepoRef,
        name: &str,
        labels: &[String],
    ) -> Result<JitRunner, GithubError> {
        let v = self
            .call(
                repo.installation_id,
                Method::POST,
                &format!("/repos/{}/actions/runners/generate-jitconfig", repo.repo),
                Some(json!({
                    "name": name,
                    // Repository runners have only the default group.
                    "runner_group_id": 1,
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
        // A runner that is already gone is deleted.
        self.call(
            repo.installation_id,
            Method::DELETE,
            &format!("/repos/{}/actions/runners/{runner_id}", repo.repo),
            None,
        )
        .await
        .map(|_| ())
    }

    async fn list_runners(&self, prefix: &str) -> Result<Vec<RunnerView>, GithubError> {
        let mut out = Vec::new();
        for (installation, _) in self.auth.installations().await? {
            let repos = self
                .call(
                    installation,
                    Method::GET,
                    "/installation/repositories?per_page=100",
                    None,
                )
                .await?
                .json()?;
            let names: Vec<String> = repos
                .get("repositories")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|r| r.get("full_name")?.as_str().map(str::to_string))
                .collect();
            for repo in names {
                let v = self
                    .call(
                        installation,
                        Method::GET,
                        &format!("/repos/{repo}/actions/runners?per_page=100"),
                        None,
                    )
                    .await?
                    .json()?;
                out.extend(
                    v.get("runners")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|r| runner_view(r, installation, &repo))
                        .filter(|r| r.name.starts_with(prefix)),
                );
            }
        }
        Ok(out)
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
            // queued, waiting, requested, pending: no runner has it yet.
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
        head_sha: &str,
        id: Option<i64>,
        run: &CheckRun,
    ) -> Result<i64, GithubError> {
        let mut body = json!({
            "name": CHECK_NAME,
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
                body["head_sha"] = json!(head_sha);
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

    async fn run_is_from_fork(&self, repo: &RepoRef, run_id: i64) -> Result<bool, GithubError> {
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
            return Ok(true);
        }
        let head = a
            .body
            .pointer("/head_repository/full_name")
            .and_then(Value::as_str);
        Ok(head.is_none_or(|h| !h.eq_ignore_ascii_case(&repo.repo)))
    }

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
        let role = a
            .body
            .get("role_name")
            .or_else(|| a.body.get("permission"))
            .and_then(Value::as_str)
            .filter(|r| *r != "none")
            .map(str::to_string);
        Ok(role)
    }

    async fn runner_download_sha256(
        &self,
        repo: &RepoRef,
        arch: &str,
        filename: &str,
    ) -> Result<Option<String>, GithubError> {
        let v = self
            .call(
                repo.installation_id,
                Method::GET,
                &format!("/repos/{}/actions/runners/downloads", repo.repo),
                None,
            )
            .await?
            .json()?;
        Ok(download_sha256(&v, arch, filename))
    }
}

/// In a runner downloads list, the checksum of the Linux file for `arch`
/// named `filename`. The name carries the version: GitHub lists only its
/// current release, whose checksum says nothing about another one.
fn download_sha256(list: &Value, arch: &str, filename: &str) -> Option<String> {
    list.as_array()?
        .iter()
        .find(|d| {
            d.get("os").and_then(Value::as_str) == Some("linux")
                && d.get("architecture").and_then(Value::as_str) == Some(arch)
                && d.get("filename").and_then(Value::as_str) == Some(filename)
        })?
        .get("sha256_checksum")
        .and_then(Value::as_str)
        .filter(|s| s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase)
}

#[cfg(test)]
mod runner_download_tests {
    use super::*;

    #[test]
    fn the_checksum_is_the_linux_file_of_that_arch_and_version() {
        let sum = "AB".repeat(32);
        let list = json!([
            {"os": "osx", "architecture": "x64", "filename": "actions-runner-osx-x64-2.330.0.tar.gz", "sha256_checksum": "0".repeat(64)},
            {"os": "linux", "architecture": "arm64", "filename": "actions-runner-linux-arm64-2.330.0.tar.gz", "sha256_checksum": "1".repeat(64)},
            {"os": "linux", "architecture": "x64", "filename": "actions-runner-linux-x64-2.330.0.tar.gz", "sha256_checksum": sum},
        ]);
        let f = "actions-runner-linux-x64-2.330.0.tar.gz";
        assert_eq!(download_sha256(&list, "x64", f), Some("ab".repeat(32)));
        assert_eq!(
            download_sha256(&list, "arm64", "actions-runner-linux-arm64-2.330.0.tar.gz"),
            Some("1".repeat(64))
        );
        // Another version's file is not ours: its checksum would be wrong.
        assert_eq!(
            download_sha256(&list, "x64", "actions-runner-linux-x64-2.329.0.tar.gz"),
            None
        );
    }

    #[test]
    fn no_or_malformed_checksum_is_none() {
        // GitHub's documented example has no sha256_checksum at all.
        let list = json!([{"os": "linux", "architecture": "x64", "filename": "a.tar.gz"},
            {"os": "linux", "architecture": "arm64", "filename": "b.tar.gz", "sha256_checksum": "xyz"}]);
        assert_eq!(download_sha256(&list, "x64", "a.tar.gz"), None);
        assert_eq!(download_sha256(&list, "arm64", "b.tar.gz"), None);
        assert_eq!(download_sha256(&json!({"message": "x"}), "x64", "a"), None);
    }
}
