//! Organization runner groups: whether the group rigger registers its
//! organization runners in will ever be given a repository's jobs.
//!
//! GitHub gives a job only to a runner whose group serves the job's
//! repository. A group serves the org's repositories (`visibility: all`),
//! its private ones (`private`), or a list (`selected`); and, whatever its
//! visibility, no public repository unless `allows_public_repositories` is
//! set — off by default, the default group (1) included. A runner in a group
//! that does not serve the repository idles until rigger's idle timeout, and
//! its machine is paid for all that time: rigger asks before renting.
//!
//! Calls (`GET /orgs/{org}/actions/runner-groups/{id}`, `GET /repos/{o}/{r}`
//! for its visibility, `.../runner-groups/{id}/repositories` for a
//! `selected` group) need the App's "Self-hosted runners" organization
//! permission (read; registering org runners needs write already) and
//! "Metadata" (read). Each verdict is kept [`TTL_MS`] per repository: a
//! burst of jobs asks once, and a fix in the org's settings is seen within
//! a minute.

use std::collections::HashMap;
use std::sync::Mutex;

use reqwest::Method;
use serde_json::Value;

use super::client::GithubClient;
use crate::engine::ports::{GithubError, GroupAccess, RepoRef};

/// How long a verdict is reused.
pub const TTL_MS: i64 = 60_000;

/// (installation, org, group, repository).
type Key = (i64, String, i64, String);

/// Verdicts by [`Key`], with when each was reached.
#[derive(Debug, Default)]
pub struct GroupCache {
    verdicts: Mutex<HashMap<Key, (i64, GroupAccess)>>,
}

impl GroupCache {
    fn get(&self, key: &Key, now: i64) -> Option<GroupAccess> {
        let map = self.verdicts.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .filter(|(at, _)| now - at < TTL_MS)
            .map(|(_, v)| v.clone())
    }

    fn put(&self, key: Key, now: i64, verdict: GroupAccess) {
        let mut map = self.verdicts.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, (at, _)| now - *at < TTL_MS);
        }
        map.insert(key, (now, verdict));
    }
}

/// What a group's answer says, as far as rigger reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub name: String,
    pub visibility: String,
    pub allows_public_repositories: bool,
}

impl Group {
    pub fn from_json(v: &Value) -> Group {
        Group {
            name: v["name"].as_str().unwrap_or("(unnamed)").to_string(),
            visibility: v["visibility"].as_str().unwrap_or("all").to_string(),
            allows_public_repositories: v["allows_public_repositories"].as_bool().unwrap_or(false),
        }
    }
}

/// Where an org's owner changes a group's repository access.
fn settings(org: &str, group: &Group, id: i64) -> String {
    format!(
        "in the organization's settings (https://github.com/organizations/{org}/settings/actions/runner-groups/{id}): Actions → Runner groups → `{}` → Repository access",
        group.name
    )
}

/// The verdict for a repository, from the group and what is known of the
/// repository: whether it is public, and (for a `selected` group) whether
/// it is on the group's list.
pub fn verdict(
    org: &str,
    id: i64,
    group: &Group,
    repo: &str,
    public: bool,
    listed: Option<bool>,
) -> GroupAccess {
    let place = settings(org, group, id);
    if public && !group.allows_public_repositories {
        return GroupAccess::Refuses(format!(
            "{repo} is public and runner group `{}` ({id}) of {org}, where rigger registers its runners, does not serve public repositories, so GitHub would never give this job to rigger's runner; tick \"Allow public repositories\" {place}",
            group.name
        ));
    }
    if public && group.visibility == "private" {
        return GroupAccess::Refuses(format!(
            "{repo} is public and runner group `{}` ({id}) of {org} serves private repositories only; choose \"All repositories\" or add {repo} under \"Selected repositories\" {place}",
            group.name
        ));
    }
    if group.visibility == "selected" && listed != Some(true) {
        return GroupAccess::Refuses(format!(
            "runner group `{}` ({id}) of {org}, where rigger registers its runners, serves selected repositories only and {repo} is not one of them, so GitHub would never give this job to rigger's runner; add {repo} under \"Selected repositories\" {place}",
            group.name
        ));
    }
    GroupAccess::Serves
}

impl GithubClient {
    /// Whether organization runner group `group_id` serves `repo` (cached).
    pub(super) async fn group_serves(
        &self,
        repo: &RepoRef,
        group_id: i64,
    ) -> Result<GroupAccess, GithubError> {
        let org = repo.owner().to_string();
        let key = (
            repo.installation_id,
            org.clone(),
            group_id,
            repo.repo.clone(),
        );
        let now = self.auth().now_ms();
        if let Some(v) = self.groups().get(&key, now) {
            return Ok(v);
        }
        let i = repo.installation_id;
        let path = format!("/orgs/{org}/actions/runner-groups/{group_id}");
        let answer = self.call(i, Method::GET, &path, None).await?;
        if answer.is_not_found() {
            return Err(GithubError::Refused(format!(
                "runner group {group_id} does not exist in {org} (or the App cannot see it): set github.runner_group_id to one of the org's runner groups (Settings → Actions → Runner groups), and give the App the \"Self-hosted runners\" organization permission"
            )));
        }
        let group = Group::from_json(&answer.body);
        let r = self
            .call(i, Method::GET, &format!("/repos/{}", repo.repo), None)
            .await?
            .json()?;
        // `private` is false for public repositories only (internal ones
        // are private to the enterprise).
        let public = r["visibility"]
            .as_str()
            .map_or_else(|| r["private"].as_bool() == Some(false), |v| v == "public");
        let listed = if group.visibility == "selected" {
            let repos: Vec<Value> = self
                .all_pages(i, &format!("{path}/repositories?per_page=100"))
                .await?;
            Some(
                repos
                    .iter()
                    .any(|x| x["full_name"].as_str() == Some(repo.repo.as_str())),
            )
        } else {
            None
        };
        let v = verdict(&org, group_id, &group, &repo.repo, public, listed);
        self.groups().put(key, now, v.clone());
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(visibility: &str, public_ok: bool) -> Group {
        Group {
            name: "Default".into(),
            visibility: visibility.into(),
            allows_public_repositories: public_ok,
        }
    }

    #[test]
    fn a_group_serves_as_its_access_settings_say() {
        let v = |g: &Group, public, listed| verdict("acme", 1, g, "acme/ml", public, listed);
        // GitHub's defaults: every private repository, no public one.
        assert_eq!(v(&group("all", false), false, None), GroupAccess::Serves);
        match v(&group("all", false), true, None) {
            GroupAccess::Refuses(why) => {
                assert!(why.contains("Allow public repositories"), "{why}");
                assert!(why.contains("Runner groups → `Default`"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(v(&group("all", true), true, None), GroupAccess::Serves);
        assert!(matches!(
            v(&group("private", true), true, None),
            GroupAccess::Refuses(_)
        ));
        // Selected repositories: only those listed.
        assert_eq!(
            v(&group("selected", false), false, Some(true)),
            GroupAccess::Serves
        );
        match v(&group("selected", false), false, Some(false)) {
            GroupAccess::Refuses(why) => assert!(why.contains("Selected repositories"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
