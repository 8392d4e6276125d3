//! The REST calls rigger makes with an installation token: repositories
//! and their files (with the contents API's media types and 1 MB limit),
//! runners (JIT, removal; the runner releases are `releases.rs`'s),
//! organization runner groups, check runs, jobs and runs, teams and
//! permissions.

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

use super::http::{gh_error, json_response, paged, paged_with, strings};
use super::world::{self, CheckRun, Runner, RunnerStatus};
use super::{SimGithub, releases, runner};

/// The JIT endpoints' answer when called too often. GitHub documents the
/// 422 as "Validation failed, or the endpoint has been spammed." without
/// publishing the body; this is that sentence.
pub(super) const SPAMMED: &str = "Validation failed, or the endpoint has been spammed.";

#[allow(clippy::too_many_arguments)]
pub(super) fn repo_api(
    sim: &SimGithub,
    inst: i64,
    method: &Method,
    seg: &[&str],
    q: &dyn Fn(&str) -> Option<String>,
    body: &Value,
    now: i64,
    accept: &str,
) -> Response {
    if let Some(answer) = releases::route(sim, inst, method, seg) {
        return answer;
    }
    let api = sim.public_url();
    let mut w = sim.world();
    if let ["repos", o, r, ..] = seg {
        let full = format!("{o}/{r}");
        match w.repos.get(&full) {
            Some(repo)
                if repo.installation == inst
                    && repo.in_installation
                    && !w.removed_repos.contains(&full) => {}
            _ => return gh_error(StatusCode::NOT_FOUND, "Not Found"),
        }
    }
    match (method, seg) {
        (&Method::GET, ["installation", "repositories"]) => {
            let repos: Vec<Value> = w
                .repos
                .values()
                .filter(|r| {
                    r.installation == inst
                        && r.in_installation
                        && !w.removed_repos.contains(&r.full_name)
                })
                .map(|r| world::repo_json(r, &api))
                .collect();
            let selected = w
                .repos
                .values()
                .any(|r| r.installation == inst && !r.in_installation);
            // Whether the installation covers all its account's repositories.
            let selection = if selected { "selected" } else { "all" };
            paged_with(
                &api,
                "/installation/repositories",
                q,
                "repositories",
                repos,
                json!({"repository_selection": selection}),
            )
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
            let p = path.join("/");
            if let Some(left) = w
                .repos
                .get_mut(&full)
                .and_then(|x| x.lagging.get_mut(&p))
                .filter(|n| **n > 0)
            {
                *left -= 1;
                return gh_error(StatusCode::NOT_FOUND, "Not Found");
            }
            let Some(text) = w.file(&full, &p, q("ref").as_deref()) else {
                return gh_error(StatusCode::NOT_FOUND, "Not Found");
            };
            let raw = accept.contains("vnd.github.raw") || accept.contains("vnd.github.v3.raw");
            let object = accept.contains("vnd.github.object");
            if text.len() > world::CONTENTS_MAX_BYTES
                || (text.len() > world::CONTENTS_LIMIT_BYTES && !raw && !object)
            {
                return too_large();
            }
            if raw {
                return (StatusCode::OK, text.clone()).into_response();
            }
            let sha = world::blob_sha(text);
            let url = format!("{api}/repos/{full}/contents/{p}");
            let git = format!("{api}/repos/{full}/git/blobs/{sha}");
            let html = format!(
                "https://github.com/{full}/blob/{}/{p}",
                q("ref").unwrap_or_default()
            );
            // Base64 in 60-character lines, as GitHub sends it; nothing for
            // a file over the limit (the `object` media type).
            let (encoding, content) = if text.len() > world::CONTENTS_LIMIT_BYTES {
                ("none", String::new())
            } else {
                let b64 = base64::engine::general_purpose::STANDARD.encode(text);
                let wrapped: Vec<&str> = b64
                    .as_bytes()
                    .chunks(60)
                    .map(|c| std::str::from_utf8(c).unwrap_or_default())
                    .collect();
                ("base64", wrapped.join("\n") + "\n")
            };
            json_response(
                StatusCode::OK,
                json!({"type": "file", "encoding": encoding, "name": path.last(), "path": p,
                       "sha": sha, "size": text.len(), "url": url, "git_url": git, "html_url": html,
                       "download_url": null, "content": content,
                       "_links": {"self": url, "git": git, "html": html}}),
            )
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
                if w.runner_group(&full, group).is_none() {
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
                    // The JIT endpoints' documented 422: "Validation
                    // failed, or the endpoint has been spammed." No advice.
                    return json_response(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        json!({"message": SPAMMED, "errors": [],
                               "documentation_url": "https://docs.github.com/rest/actions/self-hosted-runners#create-configuration-for-a-just-in-time-runner-for-a-repository"}),
                    );
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
                    registered_ms: now,
                },
            );
            let label_objs = world::runner_labels(&all_labels);
            json_response(
                StatusCode::CREATED,
                json!({"runner": {"id": id, "runner_group_id": body["runner_group_id"], "name": name, "os": "unknown", "status": "offline", "busy": false, "labels": label_objs},
                       "encoded_jit_config": jit}),
            )
        }
        (&Method::GET, ["orgs", org, "actions", "runner-groups", id, rest @ ..])
            if rest.is_empty() || rest == ["repositories"] =>
        {
            if w.org_installations.get(&inst).is_none_or(|o| o != org) {
                return gh_error(StatusCode::NOT_FOUND, "Not Found");
            }
            let Some(group) = id
                .parse::<i64>()
                .ok()
                .and_then(|id| w.runner_group(org, id))
            else {
                return gh_error(StatusCode::NOT_FOUND, "Not Found");
            };
            if rest.is_empty() {
                return json_response(StatusCode::OK, group.json(org, &api));
            }
            let repos: Vec<Value> = group
                .selected
                .iter()
                .filter_map(|r| w.repos.get(r))
                .map(|r| world::repo_json(r, &api))
                .collect();
            paged(
                &api,
                &format!("/orgs/{org}/actions/runner-groups/{id}/repositories"),
                q,
                "repositories",
                repos,
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
                Some(j) => json_response(StatusCode::OK, world::job_json(j, &api)),
                None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        (&Method::GET, ["repos", o, r, "actions", "runs", id]) => {
            let full = format!("{o}/{r}");
            let run = id.parse::<i64>().ok();
            let job = w
                .jobs
                .values()
                .find(|j| Some(j.run_id) == run && j.repo == full);
            match (job, w.repos.get(&full)) {
                (Some(j), Some(repo)) => {
                    json_response(StatusCode::OK, world::workflow_run_json(j, repo, &api))
                }
                _ => gh_error(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        (&Method::POST, ["repos", o, r, "actions", "runs", id, "cancel"]) => {
            // Needs Actions: write (`fail_route` answers 403 to model an App
            // without it). Ends the run's unfinished jobs as cancelled; a run
            // already over is a conflict, as on GitHub.
            let full = format!("{o}/{r}");
            let run = id.parse::<i64>().ok();
            let jobs: Vec<(i64, bool)> = w
                .jobs
                .values()
                .filter(|j| Some(j.run_id) == run && j.repo == full)
                .map(|j| (j.id, j.status == world::JobStatus::Completed))
                .collect();
            if jobs.is_empty() {
                return gh_error(StatusCode::NOT_FOUND, "Not Found");
            }
            if jobs.iter().all(|(_, done)| *done) {
                return gh_error(
                    StatusCode::CONFLICT,
                    "Cannot cancel a workflow run that is completed.",
                );
            }
            for (job, _) in jobs {
                w.complete(job, "cancelled", now);
            }
            json_response(StatusCode::ACCEPTED, json!({}))
        }
        (&Method::POST, ["repos", o, r, "check-runs"]) => {
            let text = |v: &Value| v.as_str().map(str::to_string);
            let output = &body["output"];
            let (head_sha, name) = (text(&body["head_sha"]), text(&body["name"]));
            let (Some(head_sha), Some(name)) = (head_sha, name) else {
                return gh_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid request.\n\n\"name\", \"head_sha\" weren't supplied.",
                );
            };
            if let Some(refusal) = world::output_refusal(output) {
                return json_response(StatusCode::UNPROCESSABLE_ENTITY, refusal);
            }
            let id = w.next_id();
            let conclusion = text(&body["conclusion"]);
            let status = match (&conclusion, body["status"].as_str()) {
                (Some(_), _) => "completed".to_string(),
                (None, s) => s.unwrap_or("queued").to_string(),
            };
            let run = CheckRun {
                id,
                repo: format!("{o}/{r}"),
                head_sha,
                name,
                completed_ms: (status == "completed").then_some(now),
                status,
                conclusion,
                title: text(&output["title"]).unwrap_or_default(),
                summary: text(&output["summary"]).unwrap_or_default(),
                text: text(&output["text"]),
                external_id: text(&body["external_id"]),
                details_url: text(&body["details_url"]),
                started_ms: now,
                updates: 0,
            };
            let answer = world::check_run_json(&run, w.app_id, &api);
            w.check_runs.insert(id, run);
            json_response(StatusCode::CREATED, answer)
        }
        (&Method::PATCH, ["repos", o, r, "check-runs", id]) => {
            let full = format!("{o}/{r}");
            let app_id = w.app_id;
            let Some(run) = id
                .parse::<i64>()
                .ok()
                .and_then(|id| w.check_runs.get_mut(&id))
                .filter(|run| run.repo == full)
            else {
                return gh_error(StatusCode::NOT_FOUND, "Not Found");
            };
            let output = &body["output"];
            if let Some(refusal) = world::output_refusal(output) {
                return json_response(StatusCode::UNPROCESSABLE_ENTITY, refusal);
            }
            let text = |v: &Value| v.as_str().map(str::to_string);
            if let Some(s) = text(&body["status"]) {
                run.status = s;
            }
            if let Some(c) = text(&body["conclusion"]) {
                // A conclusion completes the run, whatever `status` says.
                run.status = "completed".into();
                run.conclusion = Some(c);
            }
            if run.status == "completed" && run.completed_ms.is_none() {
                run.completed_ms = Some(now);
            }
            for (field, slot) in [
                ("name", &mut run.name),
                ("title", &mut run.title),
                ("summary", &mut run.summary),
            ] {
                let v = if field == "name" {
                    &body[field]
                } else {
                    &output[field]
                };
                if let Some(t) = text(v) {
                    *slot = t;
                }
            }
            for (v, slot) in [
                (&output["text"], &mut run.text),
                (&body["external_id"], &mut run.external_id),
                (&body["details_url"], &mut run.details_url),
            ] {
                if let Some(t) = text(v) {
                    *slot = Some(t);
                }
            }
            run.updates += 1;
            let answer = world::check_run_json(run, app_id, &api);
            json_response(StatusCode::OK, answer)
        }
        (&Method::GET, ["orgs", org, "teams", team, "memberships", login]) => {
            let member = w
                .teams
                .get(&format!("{org}/{team}"))
                .is_some_and(|m| m.iter().any(|x| x == login));
            if member {
                json_response(
                    StatusCode::OK,
                    world::team_membership_json(org, team, login, &api),
                )
            } else {
                gh_error(StatusCode::NOT_FOUND, "Not Found")
            }
        }
        // As GitHub: a collaborator's role (`maintain` is `write` and
        // `triage` is `read` in the legacy `permission`); anyone else who
        // exists gets `read` on a public repository (everyone may read it)
        // and `none` on a private one; a login that is no user, 404.
        (&Method::GET, ["repos", o, r, "collaborators", login, "permission"]) => {
            let full = format!("{o}/{r}");
            let exists = w.user_exists(login);
            let Some(repo) = w.repos.get(&full) else {
                return gh_error(StatusCode::NOT_FOUND, "Not Found");
            };
            let (permission, role) = match repo.collaborators.get(*login) {
                Some(role) => (world::legacy_permission(role), role.clone()),
                None if !exists => return gh_error(StatusCode::NOT_FOUND, "Not Found"),
                None if repo.private => ("none", String::new()),
                None => ("read", "read".to_string()),
            };
            json_response(
                StatusCode::OK,
                world::collaborator_permission_json(login, permission, &role, &api),
            )
        }
        // "Check if a user is a repository collaborator": 204, or 404 for
        // anyone not granted a role (a public repository's readers too).
        (&Method::GET, ["repos", o, r, "collaborators", login]) => {
            let granted = w
                .repos
                .get(&format!("{o}/{r}"))
                .is_some_and(|x| x.collaborators.contains_key(*login));
            if granted {
                StatusCode::NO_CONTENT.into_response()
            } else {
                gh_error(StatusCode::NOT_FOUND, "Not Found")
            }
        }
        _ => gh_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// What the contents API answers for a file it does not serve with the
/// media type asked for.
fn too_large() -> Response {
    json_response(
        StatusCode::FORBIDDEN,
        json!({
            "message": "This API returns blobs up to 1 MB in size. The requested blob is too large to fetch via the API, but you can use the Git Data API to request blobs up to 100 MB in size.",
            "errors": [{"resource": "Blob", "field": "data", "code": "too_large"}],
            "documentation_url": "https://docs.github.com/rest/repos/contents#get-repository-content",
            "status": "403",
        }),
    )
}
