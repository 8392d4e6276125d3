//! GitHub's answers, through rigger's real client over HTTP (the engine's
//! `Github` port, the App's installation tokens, octocrab's pages):
//! statuses, rate-limit headers, `Link` pages, bodies. Whatever GitHub
//! answers, rigger returns a result or an error with no token, JWT or key
//! in it, a JIT config only inside its `Secret`, and stops paginating.
//!
//! Input: a [`super::script`]; its first line is the call (`config_files
//! [REF]`, `jit`, `delete`, `runners PREFIX`, `job`, `check [ID]`, `teams`,
//! `origin`, `role`, `sha256`, `default_branch`, `repositories`,
//! `installation`, `installations`). With ` +token` at its end the
//! installation token is minted first, from the script's first answer;
//! otherwise a token minted earlier is used.

use std::sync::{Arc, OnceLock};

use rigger::engine::ports::{CheckRun, CheckTarget, Github, JitRunner, ManualClock, RepoRef};
use rigger::github::app::AppAuth;
use rigger::github::client::GithubClient;
use rigger::github::http::Api;
use rigger::settings::Secret;
use rigger::sim::github::{SimGithub, SimGithubConfig};

use super::runtime::{NOW_MS, block_on};
use super::script::{Answer, Script, Service, after_call};

const TOKEN: &str = "ghs_fuzzTokenSeCrEt0123456789";
/// Every JWT rigger signs starts with this (its header, base64).
const JWT_HEAD: &str = "eyJ0eXAiOiJKV1Qi";
/// Two scopes of 100 pages for `runners`, 50 for `installations`, a token.
const MOST_REQUESTS: usize = 2 * 100 + 60;

struct World {
    service: Service,
    clock: ManualClock,
    pem: Secret,
    /// Its token for installation 1 is minted once and then cached.
    shared: GithubClient,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let service = Service::start(Answer::json(404, r#"{"message": "Not Found"}"#));
        let clock = ManualClock::new(NOW_MS);
        let pem = SimGithub::new(SimGithubConfig::default(), Arc::new(clock.clone()))
            .expect("an RSA key")
            .private_key_pem()
            .clone();
        let shared = client(&service, &clock, &pem);
        World {
            service,
            clock,
            pem,
            shared,
        }
    })
}

fn client(service: &Service, clock: &ManualClock, pem: &Secret) -> GithubClient {
    let clock = Arc::new(clock.clone());
    let api = Api::new(&service.base, clock.clone());
    let auth = AppAuth::new(812_345, pem, api, clock).expect("the App's key reads");
    GithubClient::new(Arc::new(auth))
}

fn minted() -> Answer {
    Answer::json(
        201,
        &format!(r#"{{"token": "{TOKEN}", "expires_at": "2099-01-01T00:00:00Z"}}"#),
    )
}

pub fn check(data: &[u8]) {
    let mut script = Script::parse(data);
    let w = world();
    let fresh = script.call.ends_with(" +token");
    if fresh {
        script.call.truncate(script.call.len() - " +token".len());
    }
    let client = if fresh {
        w.service.load(&script, Vec::new());
        client(&w.service, &w.clock, &w.pem)
    } else {
        let tokens = ("/app/installations/".to_string(), minted());
        w.service.load(&script, vec![tokens]);
        w.shared.clone()
    };
    let outcome = block_on(call(client, script.call.clone()));
    let secrets = [TOKEN, JWT_HEAD, "PRIVATE KEY"];
    after_call(
        &w.service,
        data,
        &script.call,
        &outcome,
        &secrets,
        MOST_REQUESTS,
    );
}

fn repo() -> RepoRef {
    RepoRef {
        installation_id: 1,
        repo: "octo/ml".into(),
    }
}

/// The call, and what it returned as text (for the secret check).
async fn call(client: GithubClient, line: String) -> String {
    let (verb, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
    let arg = arg.to_string();
    let r = repo();
    match verb {
        "config_files" => {
            let git_ref = (!arg.is_empty()).then_some(arg.as_str());
            format!("{:?}", client.config_files(&r, git_ref).await)
        }
        "jit" => jit(&client, &r).await,
        "delete" => format!("{:?}", client.delete_runner(&r, 7).await),
        "runners" => {
            let at = [
                r.clone(),
                RepoRef {
                    installation_id: 1,
                    repo: "octo".into(),
                },
            ];
            let listed = client.list_runners(&arg, &at).await;
            for runner in &listed.runners {
                assert!(
                    runner.name.starts_with(&arg),
                    "{:?} is not {arg:?}…",
                    runner.name
                );
            }
            format!("{listed:?}")
        }
        "job" => format!("{:?}", client.get_job(&r, 42).await),
        "check" => {
            let id = arg.parse::<i64>().ok();
            let run = CheckRun {
                title: "fuzz".into(),
                summary: "fuzz".into(),
                conclusion: None,
            };
            let target = CheckTarget {
                head_sha: "abc".into(),
                name: "rigger: fuzz".into(),
                external_id: "42".into(),
                details_url: None,
            };
            format!("{:?}", client.check_run(&r, &target, id, &run).await)
        }
        "teams" => {
            let teams = ["gpu-users".to_string(), "admins".to_string()];
            format!("{:?}", client.teams_of(&r, "octocat", &teams).await)
        }
        "origin" => format!("{:?}", client.run_origin(&r, 9).await),
        "role" => format!("{:?}", client.role_of(&r, "octocat").await),
        "sha256" => {
            let x64 = rigger::engine::ports::RunnerArch::X64;
            let current = client.runner_release(&r, x64, None).await;
            let pinned = client.runner_release(&r, x64, Some("2.330.0")).await;
            format!("{current:?} {pinned:?}")
        }
        "default_branch" => format!("{:?}", client.default_branch(1, "octo/ml").await),
        "repositories" => format!("{:?}", client.installation_repositories(1).await),
        "installation" => format!("{:?}", client.auth().installation_for("octo/ml").await),
        _ => format!("{:?}", client.auth().installations().await),
    }
}

/// A JIT config is a secret: only its `Secret` holds it.
async fn jit(client: &GithubClient, r: &RepoRef) -> String {
    let labels = ["cirun-gpu--1".to_string()];
    match client
        .create_jit_runner(r, "rigger-fuzz-1-a1b2c3d4e5", &labels)
        .await
    {
        Ok(j) => {
            // Shown the same whatever the config holds.
            let empty = JitRunner {
                runner_id: j.runner_id,
                jit_config: Secret::new(""),
            };
            let shown = format!("{j:?}");
            assert_eq!(shown, format!("{empty:?}"), "the JIT config shows");
            shown
        }
        Err(e) => format!("{e:?}"),
    }
}
