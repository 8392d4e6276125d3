//! The REST calls rigger makes with an installation token: repositories
//! and their files, runners (JIT, removal; the runner releases are
//! `releases.rs`'s), check runs, jobs and runs, teams and permissions.

use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

use super::http::{gh_error, json_response, paged, strings};
use super::world::{self, CheckRun, Runner, RunnerStatus};
use super::{SimGithub, releases, runner};

pub(super) fn repo_api(
    sim: &SimGithub,
    inst: i64,
    method: &Method,
    seg: &[&str],
    q: &dyn Fn(&str) -> Option<String>,
    body: &Value,
    now: i64,
) -> Response {
    if let Some(answer) = releases::route(sim, inst, method, seg) {
        return answer;
    }
    let api = sim.public_url();
    let mut w = sim.world();
    if let ["repos", o, r, ..] = seg {
        let full = format!("{o}/{r}");
        match w.repos.get(&full) {
            Some(repo) if repo.installation == inst => {}
            _ => return gh_error(StatusCode::NOT_FOUND, "Not Found"),
        }
    }
    match (method, seg) {
        (&Method::GET, ["installation", "repositories"]) => {
            let repos: Vec<Value> = w
                .repos
                .values()
                .filter(|r| r.installation == inst)
                .map(|r| world::repo_json(r, &api))
                .collect();
            paged(&api, "/installation/repositories", q, "repositories", repos)
        }
        (&Method::GET, ["repos", o, r]) => {
            let full = format!("{o}/{r}");
            match w.repos.get(&full) {
                Some(repo) => json_response(StatusCode::OK, world::repo_json(repo, &api)),
                None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        (&Method::GET, ["repos", o, r, "contents", path @ ..]) => {
            let full = format!("{o}/{r}");
            match w.file(&full, &path.join("/"), q("ref").as_deref()) {
                Some(text) => {
                    // Base64 in 60-character lines, as GitHub sends it.
                    let b64 = base64::engine::general_purpose::STANDARD.encode(text);
                    let wrapped: Vec<&str> = b64
                        .as_bytes()
                        .chunks(60)
                        .map(|c| std::str::from_utf8(c).unwrap_or_default())
                        .collect();
                    let p = path.join("/");
                    let sha = world::blob_sha(text);
                    let url = format!("{api}/repos/{full}/contents/{p}");
                    let git = format!("{api}/repos/{full}/git/blobs/{sha}");
                    let html = format!(
                        "https://github.com/{full}/blob/{}/{p}",
                        q("ref").unwrap_or_default()
                    );
                    json_response(
                        StatusCode::OK,
                        json!({"type": "file", "encoding": "base64", "name": path.last(), "path": p,
                               "sha": sha, "size": text.len(), "url": url, "git_url": git, "html_url": html,
                               "download_url": null, "content": wrapped.join("\n") + "\n",
                               "_links": {"self": url, "git": git, "html": html}}),
                    )
                }
                None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        (
            &Method::POST,
            [
                kind @ ("repos" | "orgs"),
                scope @ ..,
                "actions",
                "runners",
                "generate-jitconfig",
            ],
        ) if scope.len() == if *kind == "repos" { 2 } else { 1 } => {
            let name = body["name"].as_str().unwrap_or_default().to_string();
            let labels = strings(&body["labels"]);
            if let Some(why) = runner::name_problem(&name) {
                return json_response(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({"message": "Validation Failed", "errors": [why],
                           "documentation_url": "https://docs.github.com/rest/actions/self-hosted-runners#create-configuration-for-a-just-in-time-runner-for-a-repository"}),
                );
            }
            if labels.is_empty() || labels.len() > 100 || body["runner_group_id"].as_i64().is_none()
            {
                return gh_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Validation failed: name, runner_group_id and 1-100 labels are required",
                );
            }
            let full = scope.join("/");
            if *kind == "orgs" {
                if w.org_installations.get(&inst).is_none_or(|o| o != &full) {
                    return gh_error(StatusCode::NOT_FOUND, "Not Found");
                }
                // Organizations have the default group (1) and those made
                // with `POST /sim/runner-groups`.
                let group = body["runner_group_id"].as_i64().unwrap_or(0);
                if group != 1 && !w.runner_groups.contains(&(full.clone(), group)) {
                    return gh_error(StatusCode::NOT_FOUND, "Runner group not found");
                }
            } else if body["runner_group_id"].as_i64() != Some(1) {
                return gh_error(
                    StatusCode::NOT_FOUND,
                    "Runner group not found: a repository has only the default group (1)",
                );
            }
            if w.runners.values().any(|x| x.name == name && x.repo == full) {
                return gh_error(
                    StatusCode::CONFLICT,
                    "A runner with this name already exists",
                );
            }
            if let Some(limit) = w.jit_per_minute {
                w.jit_window.retain(|t| now - t < 60_000);
                if w.jit_window.len() as u32 >= limit {
                    let mut r = gh_error(
                        StatusCode::TOO_MANY_REQUESTS,
                        "You have exceeded a secondary rate limit.",
                    );
                    r.headers_mut()
                        .insert("retry-after", HeaderValue::from_static("60"));
                    return r;
                }
                w.jit_window.push(now);
            }
            let id = w.next_id();
            let token = w.token("jit_");
            let jit = base64::engine::general_purpose::STANDARD
                .encode(json!({"url": sim.public_url(), "token": token}).to_string());
            let all_labels = runner::jit_labels(&labels);
            w.secrets_issued.push(jit.clone());
            w.runners.insert(
                id,
                Runner {
                    id,
                    name: name.clone(),
                    repo: full,
                    labels: all_labels.clone(),
                    status: RunnerStatus::Offline,
                    busy: false,
                    jit_config: jit.clone(),
                    redeemed: false,
                    job: None,
                    group_id: body["runner_group_id"].as_i64().unwrap_or(1),
                },
            );
            let label_objs: Vec<Value> = all_labels
                .iter()
                .enumerate()
                .map(|(i, l)| json!({"id": i + 1, "name": l, "type": runner::label_type(l)}))
                .collect();
            json_response(
                StatusCode::CREATED,
                json!({"runner": {"id": id, "runner_group_id": body["runner_group_id"], "name": name, "os": "unknown", "status": "offline", "busy": false, "labels": label_objs},
                       "encoded_jit_config": jit}),
            )
        }
        (&Method::GET, [kind @ ("repos" | "orgs"), scope @ .., "actions", "runners"])
            if scope.len() == if *kind == "repos" { 2 } else { 1 } =>
        {
            let full = scope.join("/");
            if *kind == "orgs" && w.org_installations.get(&inst).is_none_or(|o| o != &full) {
                return gh_error(StatusCode::NOT_FOUND, "Not Found");
            }
            let name = q("name");
            let list: Vec<Value> = w
                .runners
                .values()
                .filter(|x| x.repo == full && name.as_ref().is_none_or(|n| &x.name == n))
                .map(world::runner_json)
                .collect();
            paged(
                &api,
                &format!("/{kind}/{full}/actions/runners"),
                q,
                "runners",
                list,
            )
        }
        (
            &Method::DELETE,
            [
                kind @ ("repos" | "orgs"),
                scope @ ..,
                "actions",
                "runners",
                id,
            ],
        ) if scope.len() == if *kind == "repos" { 2 } else { 1 } => {
            let full = scope.join("/");
            let id = id.parse::<i64>().unwrap_or(-1);
            match w.runners.get(&id).filter(|x| x.repo == full) {
                None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
                Some(x) if x.busy => gh_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Bad request - Runner is still running a job",
                ),
                Some(_) => {
                    w.runners.remove(&id);
                    StatusCode::NO_CONTENT.into_response()
                }
            }
        }
        (&Method::GET, ["repos", o, r, "actions", "jobs", id]) => {
            let full = format!("{o}/{r}");
            match id
                .parse::<i64>()
                .ok()
                .and_then(|id| w.jobs.get(&id))
                .filter(|j| j.repo == full)
            {
                Some(j) => {
                    let p = world::job_payload(j, "", w.repos.get(&full));
                    json_response(StatusCode::OK, p["workflow_job"].clone())
                }
                None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        (&Method::GET, ["repos", o, r, "actions", "runs", id]) => {
            let full = format!("{o}/{r}");
            let run = id.parse::<i64>().ok();
            match w
                .jobs
                .values()
                .find(|j| Some(j.run_id) == run && j.repo == full)
            {
                Some(j) => {
                    let head = if j.fork {
                        format!("{}-fork/{r}", j.actor)
                    } else {
                        full.clone()
                    };
                    json_response(
                        StatusCode::OK,
                        json!({"id": j.run_id, "event": j.event,
                               "head_sha": j.head_sha, "head_repository": {"full_name": head, "fork": j.fork},
                               "repository": {"full_name": full}}),
                    )
                }
                None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        (&Method::POST, ["repos", o, r, "check-runs"]) => {
            let id = w.next_id();
            let run = CheckRun {
                id,
                repo: format!("{o}/{r}"),
                head_sha: body["head_sha"].as_str().unwrap_or_default().to_string(),
                name: body["name"].as_str().unwrap_or_default().to_string(),
                status: body["status"].as_str().unwrap_or("queued").to_string(),
                conclusion: body["conclusion"].as_str().map(str::to_string),
                title: body["output"]["title"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                summary: body["output"]["summary"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                updates: 0,
            };
            if run.head_sha.is_empty() || run.name.is_empty() {
                return gh_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Validation failed: name and head_sha are required",
                );
            }
            w.check_runs.insert(id, run);
            json_response(StatusCode::CREATED, json!({"id": id}))
        }
        (&Method::PATCH, ["repos", _, _, "check-runs", id]) => {
            let Some(run) = id
                .parse::<i64>()
                .ok()
                .and_then(|id| w.check_runs.get_mut(&id))
            else {
                return gh_error(StatusCode::NOT_FOUND, "Not Found");
            };
            if let Some(s) = body["status"].as_str() {
                run.status = s.to_string();
            }
            if let Some(c) = body["conclusion"].as_str() {
                run.conclusion = Some(c.to_string());
            }
            if let Some(t) = body["output"]["title"].as_str() {
                run.title = t.to_string();
            }
            if let Some(s) = body["output"]["summary"].as_str() {
                run.summary = s.to_string();
            }
            run.updates += 1;
            json_response(StatusCode::OK, json!({"id": run.id}))
        }
        (&Method::GET, ["orgs", org, "teams", team, "memberships", login]) => {
            let member = w
                .teams
                .get(&format!("{org}/{team}"))
                .is_some_and(|m| m.iter().any(|x| x == login));
            if member {
                json_response(StatusCode::OK, json!({"state": "active", "role": "member"}))
            } else {
                gh_error(StatusCode::NOT_FOUND, "Not Found")
            }
        }
        (&Method::GET, ["repos", o, r, "collaborators", login, "permission"]) => {
            let role = w
                .repos
                .get(&format!("{o}/{r}"))
                .and_then(|x| x.collaborators.get(*login))
                .cloned();
            match role {
                Some(role) => {
                    let permission = match role.as_str() {
                        "maintain" | "write" => "write",
                        "triage" | "read" => "read",
                        other => other,
                    };
                    json_response(
                        StatusCode::OK,
                        json!({"permission": permission, "role_name": role}),
                    )
                }
                None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        _ => gh_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}
