//! `rigger instances destroy ID` and `rigger instances destroy-all`: they
//! destroy only this controller's machines, record what each cost, and
//! destroy-all lists first and destroys with `--yes`.

mod ops_world;

use std::sync::Arc;

use rigger::engine::ports::{ManualClock, SystemClock};
use rigger::engine::state::InstanceState;
use rigger::sim::github::{SimGithub, SimGithubConfig};
use rigger::sim::vast::{Faults, SimConfig, SimVast};

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_all_takes_ours_and_only_ours() {
    let clock = ManualClock::new(1_763_800_000_000);
    let vast = SimVast::new(
        SimConfig {
            offers: 50,
            ..SimConfig::default()
        },
        Arc::new(clock.clone()),
    );
    let github = SimGithub::new(SimGithubConfig::default(), Arc::new(clock.clone())).unwrap();
    let vast_url = serve(vast.router()).await;
    let github_url = serve(github.router()).await;
    let ours = ops_world::rent(&vast, 0, "rigger:ops:77:abcdef0123");
    let theirs = ops_world::rent(&vast, 1, "rigger:other:77:abcdef0123");
    let dir = std::env::temp_dir().join(format!("rigger-destroy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    let run = |yes: bool| {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_rigger"));
        c.args(["instances", "destroy-all"]);
        if yes {
            c.arg("--yes");
        }
        c.env(
            "RIGGER_DATABASE_URL",
            format!("sqlite://{}", dir.join("r.db").display()),
        )
        .env("RIGGER_CONTROLLER_ID", "ops")
        .env("RIGGER_WEBHOOK_SECRET", "s")
        .env("RIGGER_GITHUB_APP_ID", github.app_id().to_string())
        .env(
            "RIGGER_GITHUB_PRIVATE_KEY",
            github.private_key_pem().expose(),
        )
        .env("RIGGER_GITHUB_API_URL", &github_url)
        .env("RIGGER_VAST_API_KEY", "sim-vast-key")
        .env("RIGGER_VAST_API_URL", &vast_url)
        .env_remove("RIGGER_CONFIG");
        c.output()
    };
    let out = run(false).await.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(&ours.to_string()) && text.contains("--yes"),
        "{text}"
    );
    assert!(!text.contains(&theirs.to_string()), "{text}");
    assert_eq!(
        vast.live_instances().len(),
        2,
        "nothing destroyed without --yes"
    );

    // The operator's second run comes later than the first (the simulated
    // Vast.ai's clock is frozen otherwise, and it lists once a second).
    clock.advance_ms(5_000);
    let out = run(true).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let live: Vec<i64> = vast
        .live_instances()
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    assert_eq!(
        live,
        vec![theirs],
        "ours destroyed, the other controller's untouched"
    );
}

/// The settings `rigger serve` would need, for controller `ci`, as RIGGER_*
/// variables.
fn settings_env(
    db: &str,
    vast_url: &str,
    github: &SimGithub,
    github_url: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("RIGGER_DATABASE_URL", db.to_string()),
        ("RIGGER_CONTROLLER_ID", "ci".into()),
        ("RIGGER_WEBHOOK_SECRET", "s".into()),
        ("RIGGER_GITHUB_APP_ID", github.app_id().to_string()),
        (
            "RIGGER_GITHUB_PRIVATE_KEY",
            github.private_key_pem().expose().to_string(),
        ),
        ("RIGGER_GITHUB_API_URL", github_url.to_string()),
        ("RIGGER_VAST_API_KEY", "sim-vast-key".into()),
        ("RIGGER_VAST_API_URL", vast_url.to_string()),
    ]
}

/// `rigger ARGS…` with `env`: `(exit code, stdout, stderr)`. The simulators
/// answer on the runtime's other thread meanwhile.
fn run(env: &[(&'static str, String)], args: &[&str]) -> (i32, String, String) {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    tokio::task::block_in_place(|| ops_world::rigger(args, &env))
}

/// Vast.ai refusing a destroy leaves the row `destroying` (the engine's
/// retry state) and the machine running: both commands say which instance
/// was not destroyed and what to do, and exit non-zero, until a later run
/// destroys it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destroy_vast_ai_refuses_is_reported_as_a_failure() {
    let (vast, vast_url) = ops_world::vast().await;
    let github = SimGithub::new(SimGithubConfig::default(), Arc::new(SystemClock)).unwrap();
    let github_url = serve(github.router()).await;
    let ours = ops_world::rent(&vast, 0, "rigger:ci:11:abcdef0123");
    let orphan = ops_world::rent(&vast, 1, "rigger:ci:12:0123abcdef");
    let db = ops_world::seeded(
        "destroy-refused",
        &ours.to_string(),
        "rigger:ci:11:abcdef0123",
    )
    .await;
    let env = settings_env(&db, &vast_url, &github, &github_url);
    let live = || -> Vec<i64> {
        vast.live_instances()
            .into_iter()
            .map(|(id, _, _)| id)
            .collect()
    };
    let refuse_one = || {
        vast.set_faults(Faults {
            refuse_destroys: 1,
            ..Faults::default()
        })
    };
    let state = || async {
        let store = rigger::store::Store::connect(&db).await.unwrap();
        let row = store.instance(ops_world::INSTANCE).await.unwrap().unwrap();
        store.close().await;
        row.state
    };
    let not_destroyed = format!(
        "{} (Vast.ai {ours}) is not destroyed: it is still `destroying`",
        ops_world::INSTANCE
    );

    // One machine, refused once.
    refuse_one();
    let (code, out, err) = run(&env, &["instances", "destroy", ops_world::INSTANCE]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains(&not_destroyed), "{err}");
    assert!(
        err.contains("injected fault"),
        "Vast.ai's answer is shown: {err}"
    );
    assert!(
        err.contains("run `rigger instances destroy i-1` again"),
        "{err}"
    );
    assert!(!out.contains("destroyed"), "{out}");
    assert_eq!(live(), vec![ours, orphan]);
    assert_eq!(state().await, InstanceState::Destroying);

    // All of them: the orphan goes, the row's destroy is refused again.
    refuse_one();
    let (code, out, err) = run(&env, &["instances", "destroy-all", "--yes"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains(&not_destroyed), "{err}");
    assert!(
        err.contains("1 of 2 instance(s) are not destroyed"),
        "{err}"
    );
    assert!(
        err.contains("`rigger instances destroy-all --yes` again"),
        "{err}"
    );
    assert_eq!(live(), vec![ours]);
    assert_eq!(state().await, InstanceState::Destroying);

    // Run again as told: Vast.ai destroys it, and the command says so.
    let (code, out, err) = run(&env, &["instances", "destroy-all", "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("destroyed 1 instance(s)"), "{out}");
    assert!(live().is_empty());
    assert_eq!(state().await, InstanceState::Destroyed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_one_records_its_cost_and_refuses_what_is_not_ours() {
    let (vast, vast_url) = ops_world::vast().await;
    let github = SimGithub::new(SimGithubConfig::default(), Arc::new(SystemClock)).unwrap();
    let github_url = serve(github.router()).await;
    let ours = ops_world::rent(&vast, 0, "rigger:ci:11:abcdef0123");
    let theirs = ops_world::rent(&vast, 1, "rigger:other:5:abcdef0123");
    let db = ops_world::seeded("destroy-one", &ours.to_string(), "rigger:ci:11:abcdef0123").await;
    let env = settings_env(&db, &vast_url, &github, &github_url);
    let destroy = |id: String| run(&env, &["instances", "destroy", &id]);

    // By rigger's id: gone from Vast.ai, its cost in the ledger.
    let (code, out, err) = destroy(ops_world::INSTANCE.into());
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "destroyed {} (Vast.ai {ours})",
            ops_world::INSTANCE
        )),
        "{out}"
    );
    let live: Vec<i64> = vast
        .live_instances()
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    assert_eq!(live, vec![theirs], "ours destroyed, theirs untouched");
    let store = rigger::store::Store::connect(&db).await.unwrap();
    let row = store.instance(ops_world::INSTANCE).await.unwrap().unwrap();
    assert_eq!(row.state, InstanceState::Destroyed, "{row:?}");
    let spend = store.spend_by_repo(0).await.unwrap();
    assert_eq!(
        spend[0].instances, 2,
        "the seeded entry and this one: {spend:?}"
    );
    // Up two hours at $0.50/h, on top of the $0.25 already spent.
    let cost = spend[0].cost_usd - 0.25;
    assert!((0.99..1.01).contains(&cost), "{spend:?}");
    store.close().await;

    // Again: already destroyed, said so.
    let (code, _, err) = destroy(ours.to_string());
    assert_eq!(code, 1);
    assert!(err.contains("is already destroyed"), "{err}");

    // Another controller's machine: refused, and left alone.
    let (code, _, err) = destroy(theirs.to_string());
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "`{theirs}` is not an instance controller `ci` rented"
        )),
        "{err}"
    );
    assert!(err.contains("rigger instances list"), "{err}");
    assert_eq!(vast.live_instances().len(), 1);
}

/// Pointed at a database that is not there, `destroy ID` says so and
/// creates nothing, rather than start an empty database that knows no
/// machine; `destroy-all` goes on by label (a lost database is when it is
/// needed most) and says that it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_database_is_an_error_and_is_not_created() {
    let (_vast, vast_url) = ops_world::vast().await;
    let github = SimGithub::new(SimGithubConfig::default(), Arc::new(SystemClock)).unwrap();
    let github_url = serve(github.router()).await;
    let missing = ops_world::temp_dir("destroy-no-db").join("rigger.db");
    let db = format!("sqlite://{}", missing.display());
    let env = settings_env(&db, &vast_url, &github, &github_url);
    let (code, out, err) = run(&env, &["instances", "destroy", "abc"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains(&missing.display().to_string()), "{err}");
    assert!(err.contains("--config"), "{err}");
    assert!(!missing.exists(), "created {}", missing.display());
    let (_, _, err) = run(&env, &["instances", "destroy-all"]);
    assert!(err.contains("by their Vast.ai label only"), "{err}");
}
