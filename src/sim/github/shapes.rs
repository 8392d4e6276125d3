//! The shapes of what the simulated GitHub answers and sends (`*_json`,
//! `job_payload`), each with every field GitHub's OpenAPI description
//! requires of its schema (named in its doc); `tests/github_contract.rs`
//! checks them. `world.rs` holds the state they are made from.

use serde_json::{Value, json};

use super::world::{CheckRun, Job, JobStatus, Repo, Runner, RunnerStatus, World};

pub(super) fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Where the `url`s of a webhook's payload point, as GitHub's do (REST
/// answers point at the simulator's own address instead).
pub const WEBHOOK_API: &str = "https://api.github.com";

/// When every simulated repository was created and last pushed to.
pub(super) const CREATED: &str = "2024-01-15T09:30:00Z";

pub(super) fn job_status(job: &Job) -> &'static str {
    match job.status {
        JobStatus::Queued => "queued",
        JobStatus::Waiting => "waiting",
        JobStatus::InProgress => "in_progress",
        JobStatus::Completed => "completed",
    }
}

/// A job as `GET /repos/{o}/{r}/actions/jobs/{id}` answers (schema `job`),
/// and as the `workflow_job` of its webhooks.
pub fn job_json(job: &Job, api: &str) -> Value {
    let repo_api = format!("{api}/repos/{}", job.repo);
    json!({
        "id": job.id,
        "run_id": job.run_id,
        "run_attempt": job.run_attempt,
        "node_id": format!("CR_kwDO{:08x}", job.id),
        "workflow_name": "gpu-tests",
        "head_branch": job.head_branch,
        "head_sha": job.head_sha,
        "run_url": format!("{repo_api}/actions/runs/{}", job.run_id),
        "url": format!("{repo_api}/actions/jobs/{}", job.id),
        "html_url": format!("https://github.com/{}/actions/runs/{}/job/{}", job.repo, job.run_id, job.id),
        "check_run_url": format!("{repo_api}/check-runs/{}", job.id),
        "status": job_status(job),
        "conclusion": job.conclusion,
        "created_at": iso(job.created_ms),
        "started_at": iso(job.started_ms.unwrap_or(job.created_ms)),
        "completed_at": job.completed_ms.map(iso),
        "name": job.name,
        "steps": [],
        "labels": job.labels,
        "runner_id": job.runner_id,
        "runner_name": job.runner_name,
        "runner_group_id": job.runner_id.map(|_| 1),
        "runner_group_name": job.runner_id.map(|_| "Default"),
    })
}

/// A `workflow_job` payload shaped like GitHub's (schema
/// `webhook-workflow-job-<action>` of `@octokit/openapi-webhooks`).
pub fn job_payload(job: &Job, action: &str, repo: Option<&Repo>) -> Value {
    let owner = job.repo.split('/').next().unwrap_or_default();
    let unknown;
    let repo = match repo {
        Some(r) => r,
        None => {
            unknown = Repo {
                id: 0,
                full_name: job.repo.clone(),
                installation: 0,
                default_branch: "main".into(),
                private: true,
                files: Default::default(),
                collaborators: Default::default(),
                in_installation: true,
                lagging: Default::default(),
            };
            &unknown
        }
    };
    let mut payload = json!({
        "action": action,
        "workflow_job": job_json(job, WEBHOOK_API),
        "repository": repo_json(repo, WEBHOOK_API),
        "organization": org_json(owner, repo.installation, WEBHOOK_API),
        "sender": user_json(&job.actor, WEBHOOK_API),
        "installation": {"id": repo.installation, "node_id": format!("MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9u{}", repo.installation)},
    });
    // A job naming an environment: its `queued` deliveries carry the
    // deployment GitHub made for it; GitHub's `waiting` example has none.
    if let (Some(env), Some(id), "queued") = (&job.environment, job.deployment_id, action) {
        payload["deployment"] =
            deployment_json(job, env, id, &format!("{WEBHOOK_API}/repos/{}", job.repo));
    }
    payload
}

/// The deployment of a job that names an environment, as webhooks carry it.
pub(super) fn deployment_json(job: &Job, env: &str, id: i64, api: &str) -> Value {
    let mut creator = account_json(&job.actor, 1, "https://api.github.com");
    creator["type"] = "User".into();
    json!({
        "url": format!("{api}/deployments/{id}"),
        "id": id,
        "node_id": format!("DE_{id}"),
        "task": "deploy",
        "original_environment": env,
        "environment": env,
        "description": null,
        "created_at": iso(job.created_ms),
        "updated_at": iso(job.created_ms),
        "statuses_url": format!("{api}/deployments/{id}/statuses"),
        "repository_url": api,
        "creator": creator,
        "sha": job.head_sha,
        "ref": job.head_branch,
        "payload": {},
        "transient_environment": false,
        "production_environment": false,
        "performed_via_github_app": null,
    })
}

/// A repository with every field GitHub always sends (schemas
/// `full-repository`, `repository`, `minimal-repository` and the webhooks'
/// `repository-webhooks`); `api` is where its `url`s point.
pub fn repo_json(r: &Repo, api: &str) -> Value {
    let (owner, name) = r.full_name.split_once('/').unwrap_or_default();
    let url = format!("{api}/repos/{}", r.full_name);
    let html = format!("https://github.com/{}", r.full_name);
    let mut v = json!({
        "id": r.id,
        "node_id": format!("R_kgDO{:08x}", r.id),
        "name": name,
        "full_name": r.full_name,
        "private": r.private,
        "visibility": if r.private { "private" } else { "public" },
        "fork": false,
        "owner": account_json(owner, r.installation, api),
        "url": url,
        "html_url": html,
        "description": null,
        "homepage": null,
        "language": null,
        "mirror_url": null,
        "license": null,
        "default_branch": r.default_branch,
        "clone_url": format!("{html}.git"),
        "git_url": format!("git://github.com/{}.git", r.full_name),
        "ssh_url": format!("git@github.com:{}.git", r.full_name),
        "svn_url": html,
        "archived": false,
        "disabled": false,
        "is_template": false,
        "has_issues": true,
        "has_projects": true,
        "has_wiki": true,
        "has_pages": false,
        "has_downloads": true,
        "has_discussions": false,
        "forks": 0,
        "forks_count": 0,
        "open_issues": 0,
        "open_issues_count": 0,
        "stargazers_count": 0,
        "watchers": 0,
        "watchers_count": 0,
        "network_count": 0,
        "subscribers_count": 0,
        "size": 0,
        "topics": [],
        "created_at": CREATED,
        "updated_at": CREATED,
        "pushed_at": CREATED,
    });
    // The API's URLs of a repository's parts, as GitHub lists them.
    for (key, tail) in [
        ("archive_url", "/{archive_format}{/ref}"),
        ("assignees_url", "/assignees{/user}"),
        ("blobs_url", "/git/blobs{/sha}"),
        ("branches_url", "/branches{/branch}"),
        ("collaborators_url", "/collaborators{/collaborator}"),
        ("comments_url", "/comments{/number}"),
        ("commits_url", "/commits{/sha}"),
        ("compare_url", "/compare/{base}...{head}"),
        ("contents_url", "/contents/{+path}"),
        ("contributors_url", "/contributors"),
        ("deployments_url", "/deployments"),
        ("downloads_url", "/downloads"),
        ("events_url", "/events"),
        ("forks_url", "/forks"),
        ("git_commits_url", "/git/commits{/sha}"),
        ("git_refs_url", "/git/refs{/sha}"),
        ("git_tags_url", "/git/tags{/sha}"),
        ("hooks_url", "/hooks"),
        ("issue_comment_url", "/issues/comments{/number}"),
        ("issue_events_url", "/issues/events{/number}"),
        ("issues_url", "/issues{/number}"),
        ("keys_url", "/keys{/key_id}"),
        ("labels_url", "/labels{/name}"),
        ("languages_url", "/languages"),
        ("merges_url", "/merges"),
        ("milestones_url", "/milestones{/number}"),
        (
            "notifications_url",
            "/notifications{?since,all,participating}",
        ),
        ("pulls_url", "/pulls{/number}"),
        ("releases_url", "/releases{/id}"),
        ("stargazers_url", "/stargazers"),
        ("statuses_url", "/statuses/{sha}"),
        ("subscribers_url", "/subscribers"),
        ("subscription_url", "/subscription"),
        ("tags_url", "/tags"),
        ("teams_url", "/teams"),
        ("trees_url", "/git/trees{/sha}"),
    ] {
        v[key] = Value::String(format!("{url}{tail}"));
    }
    v
}

pub(super) fn account(login: &str, id: i64, kind: &str, api: &str) -> Value {
    let user = format!("{api}/users/{login}");
    json!({
        "login": login, "id": id, "node_id": format!("{}_kgDO{id:08x}", if kind == "User" { "U" } else { "O" }),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
        "gravatar_id": "", "url": user, "html_url": format!("https://github.com/{login}"),
        "followers_url": format!("{user}/followers"),
        "following_url": format!("{user}/following{{/other_user}}"),
        "gists_url": format!("{user}/gists{{/gist_id}}"),
        "starred_url": format!("{user}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{user}/subscriptions"),
        "organizations_url": format!("{user}/orgs"),
        "repos_url": format!("{user}/repos"),
        "events_url": format!("{user}/events{{/privacy}}"),
        "received_events_url": format!("{user}/received_events"),
        "type": kind, "user_view_type": "public", "site_admin": false,
    })
}

/// An organization as an account (a repository's owner; schema `simple-user`).
pub fn account_json(login: &str, id: i64, api: &str) -> Value {
    account(login, id, "Organization", api)
}

/// A person (a sender, an actor; schema `simple-user`), with an id of its
/// own derived from the login.
pub fn user_json(login: &str, api: &str) -> Value {
    // FNV-1a: the same login is the same id in every run.
    let id = login.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) % 90_000_000
        + 10_000_000;
    account(login, id as i64, "User", api)
}

/// An organization as webhooks carry it (schema `organization-simple`).
pub fn org_json(login: &str, id: i64, api: &str) -> Value {
    let org = format!("{api}/orgs/{login}");
    json!({
        "login": login, "id": id, "node_id": format!("O_kgDO{id:08x}"),
        "url": org, "repos_url": format!("{org}/repos"), "events_url": format!("{org}/events"),
        "hooks_url": format!("{org}/hooks"), "issues_url": format!("{org}/issues"),
        "members_url": format!("{org}/members{{/member}}"),
        "public_members_url": format!("{org}/public_members{{/member}}"),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
        "description": null,
    })
}

/// An App installation on an account (schema `installation`), as the App
/// API answers it.
pub fn installation_json(id: i64, login: &str, app_id: u64, api: &str) -> Value {
    json!({
        "id": id,
        "client_id": format!("Iv23li{app_id:014x}"),
        "account": account_json(login, id, api),
        "repository_selection": "all",
        "access_tokens_url": format!("{api}/app/installations/{id}/access_tokens"),
        "repositories_url": format!("{api}/installation/repositories"),
        "html_url": format!("https://github.com/organizations/{login}/settings/installations/{id}"),
        "app_id": app_id,
        "app_slug": "rigger",
        "target_id": id,
        "target_type": "Organization",
        "permissions": {"actions": "read", "checks": "write", "contents": "read", "metadata": "read",
                        "organization_self_hosted_runners": "write", "administration": "write", "members": "read"},
        "events": ["workflow_job"],
        "created_at": CREATED,
        "updated_at": CREATED,
        "single_file_name": null,
        "has_multiple_single_files": false,
        "single_file_paths": [],
        "suspended_by": null,
        "suspended_at": null,
    })
}

/// The App as check runs name it (schema `integration`).
pub(super) fn app_json(app_id: u64, api: &str) -> Value {
    json!({
        "id": app_id, "slug": "rigger", "node_id": format!("A_kwDO{app_id:08x}"),
        "client_id": format!("Iv23li{app_id:014x}"),
        "owner": account_json("rigger-dev", 1, api),
        "name": "rigger", "description": "GPU runners rented on Vast.ai",
        "external_url": "https://github.com/apps/rigger", "html_url": "https://github.com/apps/rigger",
        "created_at": CREATED, "updated_at": CREATED,
        "permissions": {"checks": "write", "metadata": "read"},
        "events": ["workflow_job"],
    })
}

/// A check run as `POST`/`PATCH …/check-runs` answer (schema `check-run`).
pub fn check_run_json(c: &CheckRun, app_id: u64, api: &str) -> Value {
    let url = format!("{api}/repos/{}/check-runs/{}", c.repo, c.id);
    json!({
        "id": c.id,
        "node_id": format!("CR_kwDO{:08x}", c.id),
        "head_sha": c.head_sha,
        "name": c.name,
        "external_id": c.external_id,
        "url": url,
        "html_url": format!("https://github.com/{}/runs/{}", c.repo, c.id),
        "details_url": c.details_url,
        "status": c.status,
        "conclusion": c.conclusion,
        "started_at": iso(c.started_ms),
        "completed_at": c.completed_ms.map(iso),
        "output": {
            "title": c.title, "summary": c.summary, "text": c.text,
            "annotations_count": 0, "annotations_url": format!("{url}/annotations"),
        },
        "check_suite": {"id": c.id / 2},
        "app": app_json(app_id, api),
        "pull_requests": [],
    })
}

/// A job's workflow run as `GET /repos/{o}/{r}/actions/runs/{id}` answers
/// (schema `workflow-run`): a fork's run has the fork as its head repository.
pub fn workflow_run_json(job: &Job, repo: &Repo, api: &str) -> Value {
    let repo_api = format!("{api}/repos/{}", job.repo);
    let run = format!("{repo_api}/actions/runs/{}", job.run_id);
    let head = if job.fork {
        let name = job.repo.split('/').nth(1).unwrap_or_default();
        let mut fork = repo_json(
            &Repo {
                id: repo.id + 1,
                full_name: format!("{}-fork/{name}", job.actor),
                installation: 0,
                default_branch: repo.default_branch.clone(),
                private: repo.private,
                files: Default::default(),
                collaborators: Default::default(),
                in_installation: false,
                lagging: Default::default(),
            },
            api,
        );
        fork["fork"] = Value::Bool(true);
        fork["owner"] = user_json(&format!("{}-fork", job.actor), api);
        fork
    } else {
        repo_json(repo, api)
    };
    let actor = user_json(&job.actor, api);
    json!({
        "id": job.run_id,
        "name": "gpu-tests",
        "node_id": format!("WFR_kwLO{:08x}", job.run_id),
        "check_suite_id": job.run_id + 1,
        "check_suite_node_id": format!("CS_kwDO{:08x}", job.run_id + 1),
        "head_branch": job.head_branch,
        "head_sha": job.head_sha,
        "path": ".github/workflows/gpu-tests.yml",
        "display_title": "gpu-tests",
        "run_number": 1,
        "run_attempt": job.run_attempt,
        "event": job.event,
        "status": job_status(job),
        "conclusion": job.conclusion,
        "workflow_id": 161_335,
        "url": run,
        "html_url": format!("https://github.com/{}/actions/runs/{}", job.repo, job.run_id),
        "pull_requests": [],
        "created_at": iso(job.created_ms),
        "updated_at": iso(job.completed_ms.or(job.started_ms).unwrap_or(job.created_ms)),
        "run_started_at": iso(job.created_ms),
        "actor": actor,
        "triggering_actor": actor,
        "jobs_url": format!("{run}/jobs"),
        "logs_url": format!("{run}/logs"),
        "check_suite_url": format!("{repo_api}/check-suites/{}", job.run_id + 1),
        "artifacts_url": format!("{run}/artifacts"),
        "cancel_url": format!("{run}/cancel"),
        "rerun_url": format!("{run}/rerun"),
        "previous_attempt_url": null,
        "workflow_url": format!("{repo_api}/actions/workflows/161335"),
        "head_commit": {
            "id": job.head_sha, "tree_id": job.head_sha, "message": "Train on GPUs",
            "timestamp": iso(job.created_ms),
            "author": {"name": job.actor, "email": format!("{}@users.noreply.github.com", job.actor)},
            "committer": {"name": job.actor, "email": format!("{}@users.noreply.github.com", job.actor)},
        },
        "repository": repo_json(repo, api),
        "head_repository": head,
        "head_repository_id": head["id"],
    })
}

/// A team membership as `GET /orgs/{org}/teams/{team}/memberships/{login}`
/// answers (schema `team-membership`).
pub fn team_membership_json(org: &str, team: &str, login: &str, api: &str) -> Value {
    json!({
        "url": format!("{api}/orgs/{org}/teams/{team}/memberships/{login}"),
        "role": "member",
        "state": "active",
    })
}

/// The legacy base permission of a role, as the permission endpoint's
/// `permission` gives it: `maintain` is `write`, `triage` is `read`.
pub fn legacy_permission(role: &str) -> &'static str {
    match role {
        "admin" => "admin",
        "maintain" | "write" => "write",
        "triage" | "read" => "read",
        _ => "none",
    }
}

/// A user's permission as `GET /repos/{o}/{r}/collaborators/{login}/permission`
/// answers (schema `repository-collaborator-permission`): `permission` the
/// legacy level (`admin`, `write`, `read`, `none`), `role_name` the role
/// (`read` for anyone on a public repository; for `none` GitHub's docs do
/// not say, and the simulator sends an empty name).
pub fn collaborator_permission_json(login: &str, permission: &str, role: &str, api: &str) -> Value {
    let mut user = user_json(login, api);
    user["role_name"] = Value::String(role.to_string());
    let rank = ["none", "read", "triage", "write", "maintain", "admin"]
        .iter()
        .position(|r| *r == role)
        .unwrap_or(match permission {
            "admin" => 5,
            "write" => 3,
            "read" => 1,
            _ => 0,
        });
    user["permissions"] = json!({
        "admin": rank >= 5,
        "maintain": rank >= 4,
        "push": rank >= 3,
        "triage": rank >= 2,
        "pull": rank >= 1,
    });
    json!({"permission": permission, "role_name": role, "user": user})
}

/// Who changes an account's App installation (installs, suspends,
/// removes repositories from it, uninstalls): the account's owner, a
/// person, as a webhook's `sender` and `suspended_by` name them.
pub fn installation_admin(account: &str) -> String {
    format!("{account}-owner")
}

/// An installation as its webhook events carry it: the App API's shape,
/// with who suspended it (a user) and when.
pub fn installation_event_json(w: &World, id: i64, now_ms: i64, api: &str) -> Value {
    let login = w.org_installations.get(&id).cloned().unwrap_or_default();
    let mut v = installation_json(id, &login, w.app_id, api);
    if w.suspended.contains(&id) {
        v["suspended_by"] = user_json(&installation_admin(&login), api);
        v["suspended_at"] = json!(iso(now_ms));
    }
    v
}

/// A repository as `installation_repositories` lists it.
pub fn repo_lite_json(r: &Repo) -> Value {
    let name = r.full_name.split('/').nth(1).unwrap_or_default();
    json!({
        "id": r.id,
        "node_id": format!("R_{}", r.id),
        "name": name,
        "full_name": r.full_name,
        "private": r.private,
    })
}

/// A runner as the runner endpoints answer (schema `runner`: labels with
/// ids and types).
pub fn runner_json(x: &Runner) -> Value {
    json!({
        "id": x.id,
        "runner_group_id": x.group_id,
        "name": x.name,
        "os": "Linux",
        "status": if x.status == RunnerStatus::Online { "online" } else { "offline" },
        "busy": x.busy,
        "ephemeral": true,
        "labels": runner_labels(&x.labels),
    })
}

/// A runner's labels: the three GitHub gives it (`read-only`), then the
/// ones it was registered with (`custom`).
pub fn runner_labels(labels: &[String]) -> Vec<Value> {
    labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            json!({
                "id": i + 1,
                "name": l,
                "type": super::runner::label_type(l),
            })
        })
        .collect()
}

/// A git blob id for a file's text (`sha1("blob {len}\0{text}")`, hex).
pub fn blob_sha(text: &str) -> String {
    use aws_lc_rs::digest;
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(format!("blob {}\0", text.len()).as_bytes());
    ctx.update(text.as_bytes());
    hex::encode(ctx.finish().as_ref())
}
