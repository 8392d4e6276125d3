//! The REST calls rigger makes with an installation token: repositories
//! and their files, runners (JIT, downloads, removal), check runs, jobs and
//! runs, teams and permissions.

use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

use super::http::{gh_error, json_response, paged, strings};
use super::world::{self, CheckRun, Runner, RunnerStatus};
use super::{SimGithub, runner};

pub(super) fn repo_api(
    sim: &SimGithub,
    inst: i64,
    method: &Method,
    seg: &[&str],
    q: &dyn Fn(&str) -> Option<String>,
    body: &Value,
    now: i64,
) -> Response {
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
            if name.is_empty()
                || labels.is_empty()
                || labels.len() > 100
                || body["runner_group_id"].as_i64().is_none()
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
            let mut all_labels = vec!["self-hosted".to_string(), "Linux".into(), "X64".into()];
            all_labels.extend(labels.iter().cloned());
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
            let label_objs = world::runner_labels(&all_labels);
            json_response(
                StatusCode::CREATED,
                json!({"runner": {"id": id, "runner_group_id": body["runner_group_id"], "name": name, "os": "unknown", "status": "offline", "busy": false, "labels": label_objs},
                       "encoded_jit_config": jit}),
            )
        }
        (&Method::GET, ["repos", _, _, "actions", "runners", "downloads"]) => json_response(
            StatusCode::OK,
            runner::downloads(&sim.public_url(), &sim.0.tarball.1),
        ),
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
