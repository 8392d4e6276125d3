//! The simulator's own endpoints: `/sim`, the control API that scripts
//! repositories, jobs, faults, limits and installations, and `/_runner`, what simulated
//! runners call.

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::http::{gh_error, json_response, strings};
use super::{NewJob, RunnerGroup, SecondaryLimit, SimGithub, WebhookFaults, releases};

pub(super) fn runner_side(
    sim: &SimGithub,
    method: &Method,
    seg: &[&str],
    body: &Value,
) -> Response {
    match (method, seg) {
        (&Method::GET, ["download", file]) => releases::download(sim, file),
        (&Method::POST, ["connect"]) => {
            match sim.connect_runner(body["jit_config"].as_str().unwrap_or_default()) {
                Some(id) => {
                    let r = sim.world().runners.get(&id).cloned();
                    json_response(
                        StatusCode::OK,
                        json!({"runner_id": id, "name": r.as_ref().map(|r| r.name.clone()), "labels": r.map(|r| r.labels)}),
                    )
                }
                None => gh_error(
                    StatusCode::UNAUTHORIZED,
                    "the JIT configuration is unknown or was already used",
                ),
            }
        }
        (&Method::POST, [id, "next"]) => {
            let Ok(id) = id.parse::<i64>() else {
                return gh_error(StatusCode::NOT_FOUND, "Not Found");
            };
            let job = sim.take_job(id).and_then(|j| sim.job(j));
            let scale = *sim
                .0
                .runner_time_scale
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            json_response(
                StatusCode::OK,
                json!({"job": job.map(|j| json!({"id": j.id, "duration_ms": j.duration_ms,
                    "run_seconds": run_seconds(j.duration_ms, scale),
                    "conclusion": j.planned_conclusion}))}),
            )
        }
        // The runner renews its job's lock (actions/runner does every 60 s).
        (&Method::POST, [id, "renew"]) => match id.parse::<i64>() {
            Ok(id) if sim.runner_heartbeat(id) => {
                json_response(StatusCode::OK, json!({"ok": true}))
            }
            _ => gh_error(StatusCode::NOT_FOUND, "no such runner: its job has ended"),
        },
        (&Method::POST, [_, "finish"]) => {
            let job = body["job_id"].as_i64().unwrap_or(-1);
            let conclusion = body["conclusion"].as_str().unwrap_or("success");
            if sim.finish_job(job, conclusion) {
                json_response(StatusCode::OK, json!({"ok": true}))
            } else {
                gh_error(StatusCode::NOT_FOUND, "no such running job")
            }
        }
        _ => gh_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// Real seconds a runner spends on a job of `duration_ms` at `scale`, to
/// the millisecond: a job of 1.5 simulated seconds is not rounded to 2 (or
/// a short one to 0), so what GitHub records as its run is its duration.
pub(super) fn run_seconds(duration_ms: i64, scale: f64) -> f64 {
    (duration_ms as f64 * scale).round() / 1000.0
}

pub(super) fn control(sim: &SimGithub, method: &Method, seg: &[&str], body: &Value) -> Response {
    match (method, seg) {
        (&Method::POST, ["repos"]) => {
            let Some(repo) = body["repo"].as_str().filter(|r| r.contains('/')) else {
                return gh_error(StatusCode::BAD_REQUEST, "`repo` (owner/name) is required");
            };
            let files: Vec<(String, String)> = body["files"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let refs: Vec<(&str, &str)> = files
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect();
            sim.add_repo(repo, &refs);
            if let Some(private) = body["private"].as_bool() {
                sim.set_private(repo, private);
            }
            if let Some(included) = body["in_installation"].as_bool() {
                sim.set_in_installation(repo, included);
            }
            for (path, reads) in body["lag_reads"].as_object().into_iter().flatten() {
                sim.lag_file(repo, path, reads.as_u64().unwrap_or(1) as u32);
            }
            if let Some(b) = body["default_branch"].as_str() {
                sim.set_default_branch(repo, b);
            }
            for (login, role) in body["collaborators"].as_object().into_iter().flatten() {
                sim.set_role(repo, login, role.as_str().unwrap_or("read"));
            }
            json_response(
                StatusCode::CREATED,
                json!({"repo": repo, "installation": sim.installation_of(repo.split('/').next().unwrap_or_default())}),
            )
        }
        (&Method::POST, ["jobs"]) => {
            let Some(repo) = body["repo"].as_str() else {
                return gh_error(StatusCode::BAD_REQUEST, "`repo` is required");
            };
            let labels = strings(&body["labels"]);
            let job = NewJob {
                repo: repo.to_string(),
                labels,
                head_sha: body["head_sha"]
                    .as_str()
                    .unwrap_or("0000000000000000000000000000000000000000")
                    .to_string(),
                fork: body["fork"].as_bool().unwrap_or(false),
                actor: body["actor"].as_str().unwrap_or("octocat").to_string(),
                duration_ms: (body["duration_s"].as_f64().unwrap_or(60.0) * 1000.0) as i64,
                conclusion: body["conclusion"].as_str().unwrap_or("success").to_string(),
            };
            let id = match body["environment"].as_str() {
                Some(env) => sim.queue_job_for_environment(job, env),
                None => sim.queue_job(job),
            };
            if let Some(event) = body["event"].as_str() {
                sim.set_event(id, event);
            }
            json_response(StatusCode::CREATED, json!({"job_id": id}))
        }
        (&Method::POST, ["jobs", id, "cancel"]) => match id.parse::<i64>() {
            Ok(id) if sim.cancel_job(id) => json_response(StatusCode::OK, json!({"ok": true})),
            _ => gh_error(StatusCode::NOT_FOUND, "no such open job"),
        },
        (&Method::POST, ["jobs", id, verb @ ("approve" | "reject")]) => {
            let done = id.parse::<i64>().is_ok_and(|id| match *verb {
                "approve" => sim.approve(id),
                _ => sim.reject(id),
            });
            if done {
                json_response(StatusCode::OK, json!({"ok": true}))
            } else {
                gh_error(StatusCode::NOT_FOUND, "no such job waiting for approval")
            }
        }
        (&Method::POST, ["webhooks"]) => {
            sim.set_webhook_faults(WebhookFaults {
                loss_rate: body["loss_rate"].as_f64().unwrap_or(0.0),
                duplicate_rate: body["duplicate_rate"].as_f64().unwrap_or(0.0),
                reorder: body["reorder"].as_bool().unwrap_or(false),
                late_rate: body["late_rate"].as_f64().unwrap_or(0.0),
            });
            json_response(StatusCode::OK, json!({"ok": true}))
        }
        (
            &Method::POST,
            [
                "installations",
                id,
                verb @ ("suspend" | "unsuspend" | "delete"),
            ],
        ) => {
            let id = id.parse::<i64>().unwrap_or(-1);
            let done = match *verb {
                "suspend" => sim.suspend_installation(id),
                "unsuspend" => sim.unsuspend_installation(id),
                _ => sim.delete_installation(id),
            };
            if done {
                json_response(StatusCode::OK, json!({"ok": true}))
            } else {
                gh_error(StatusCode::NOT_FOUND, "no such installation")
            }
        }
        (&Method::POST, ["repos", o, r, "remove-from-installation"]) => {
            if sim.remove_repo_from_installation(&format!("{o}/{r}")) {
                json_response(StatusCode::OK, json!({"ok": true}))
            } else {
                gh_error(
                    StatusCode::NOT_FOUND,
                    "no such repository in an installation",
                )
            }
        }
        (&Method::POST, ["runner-groups"]) => {
            let (Some(org), Some(id)) = (body["org"].as_str(), body["id"].as_i64()) else {
                return gh_error(StatusCode::BAD_REQUEST, "`org` and `id` are required");
            };
            let mut group = sim
                .runner_group(org, id)
                .unwrap_or_else(|| RunnerGroup::new(id));
            if let Some(v) = body["visibility"].as_str() {
                if !matches!(v, "all" | "selected" | "private") {
                    return gh_error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "`visibility` is one of all, selected, private",
                    );
                }
                group.visibility = v.to_string();
            }
            if let Some(p) = body["allows_public_repositories"].as_bool() {
                group.allows_public_repositories = p;
            }
            if let Some(n) = body["name"].as_str() {
                group.name = n.to_string();
            }
            if body["repositories"].is_array() {
                group.selected = strings(&body["repositories"]).into_iter().collect();
            }
            sim.set_runner_group(org, group.clone());
            json_response(StatusCode::CREATED, json!({"org": org, "group": group}))
        }
        (&Method::POST, ["limits"]) => {
            if let Some(v) = body.get("jit_per_minute") {
                sim.set_jit_per_minute(v.as_u64().map(|n| n as u32));
            }
            if let Some(s) = body["rate_limit_for_s"].as_f64() {
                sim.rate_limit_for((s * 1000.0) as i64);
            }
            if let Some(s) = body["secondary_limit_for_s"].as_f64() {
                let advice = body["retry_after_s"].as_u64().unwrap_or(60) as u32;
                sim.secondary_limit_for((s * 1000.0) as i64, advice);
            }
            if let Some(l) = body.get("secondary").filter(|l| l.is_object()) {
                let status = l["status"].as_u64().unwrap_or(403) as u16;
                if status != 403 && status != 429 {
                    return gh_error(
                        StatusCode::BAD_REQUEST,
                        "`secondary.status` is 403 or 429, as GitHub answers",
                    );
                }
                sim.secondary_limit(SecondaryLimit {
                    installation: l["installation"].as_i64(),
                    after_route: l["after_route"].as_str().map(str::to_string),
                    for_ms: (l["for_s"].as_f64().unwrap_or(60.0) * 1000.0) as i64,
                    retry_after_s: l["retry_after_s"].as_u64().map(|s| s as u32),
                    status,
                    until_ms: None,
                });
            }
            if let Some(on) = body["content_limits"].as_bool() {
                sim.set_content_limits(on);
            }
            if let Some(n) = body["hourly_limit"].as_u64() {
                sim.set_hourly_limit(body["installation"].as_i64(), n);
            }
            if let Some(i) = body["use_up_budget"].as_i64() {
                let reset = sim.use_up_budget(i);
                return json_response(StatusCode::OK, json!({"ok": true, "reset_ms": reset}));
            }
            json_response(StatusCode::OK, json!({"ok": true}))
        }
        (&Method::POST, ["installations", id, "revoke-tokens"]) => match id.parse::<i64>() {
            Ok(id) => {
                sim.revoke_tokens(id);
                json_response(StatusCode::OK, json!({"ok": true}))
            }
            Err(_) => gh_error(StatusCode::NOT_FOUND, "no such installation"),
        },
        (&Method::GET, ["seen"]) => json_response(StatusCode::OK, json!(sim.seen())),
        (&Method::GET, ["state"]) => {
            let w = sim.world();
            json_response(
                StatusCode::OK,
                json!({"jobs": w.jobs.values().collect::<Vec<_>>(), "runners": w.runners.values().collect::<Vec<_>>(),
                       "check_runs": w.check_runs.values().collect::<Vec<_>>(), "repos": w.repos.values().collect::<Vec<_>>(),
                       "requests": w.requests, "webhook_faults": w.webhook_faults,
                       // What was handed out, so a soak can look for each in logs and databases.
                       "secrets_issued": w.secrets_issued, "liveness": w.liveness,
                       "delivery_attempts": w.attempts, "suspended": w.suspended, "deleted": w.deleted,
                       "removed_repos": w.removed_repos}),
            )
        }
        _ => gh_error(StatusCode::NOT_FOUND, "unknown /sim endpoint"),
    }
}

#[cfg(test)]
mod tests {
    use super::run_seconds;

    #[test]
    fn a_runner_runs_a_job_for_its_duration_to_the_millisecond() {
        assert_eq!(run_seconds(1_500, 1.0), 1.5);
        assert_eq!(run_seconds(400, 1.0), 0.4);
        assert_eq!(run_seconds(600_000, 1.0 / 120.0), 5.0);
        assert_eq!(run_seconds(600_000, 0.0), 0.0);
    }
}
