//! `rigger jobs list`, `rigger instances list`, `rigger costs` over a real
//! SQLite store, run as the operator runs them.

mod ops_world;

use ops_world::{ESTIMATE, rent, rigger, rigger_in, seeded, temp_dir, vast};

fn all(code_out_err: (i32, String, String)) -> (i32, String) {
    let (code, out, err) = code_out_err;
    (code, out + &err)
}

#[tokio::test]
async fn jobs_list_shows_live_jobs() {
    let url = seeded("jobs", "7835610", "rigger:ci:11").await;
    let (code, text) = all(rigger(&["jobs", "list", "--database-url", &url], &[]));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("JOB"), "{text}");
    assert!(text.contains("provisioning"), "{text}");
    let (_, text, _) = rigger(&["jobs", "list", "--json", "--database-url", &url], &[]);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn instances_list_as_a_table_and_as_json() {
    let url = seeded("instances", "7835610", "rigger:ci:11").await;
    let (code, text) = all(rigger(&["instances", "list", "--database-url", &url], &[]));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("1× RTX 4090"), "{text}");
    assert!(text.contains("$0.500/h"), "{text}");

    let (code, text, err) = rigger(
        &["instances", "list", "--json", "--database-url", &url],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v}");
    let i = &rows[0];
    assert_eq!(i["id"], "i-1");
    assert_eq!(i["provider_id"], "7835610");
    assert_eq!(i["job_id"], 11);
    assert_eq!(i["state"], "booting");
    assert_eq!(i["offer_id"], 900);
    assert_eq!(i["gpu_name"], "RTX 4090");
    assert_eq!(i["num_gpus"], 1);
    assert_eq!(i["dph"], 0.5);
    assert_eq!(i["location"], "Texas, US");
    assert_eq!(i["label"], "rigger:ci:11");
    assert!(
        chrono::DateTime::parse_from_rfc3339(i["created_at"].as_str().unwrap()).is_ok(),
        "{i}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vast_instances_carry_the_rent_time_estimate_and_ssh_from_vast() {
    let (sim, vast_url) = vast().await;
    let provider = rent(&sim, 0, "rigger:ci:11:abcdef0123");
    let url = seeded(
        "vast-instances",
        &provider.to_string(),
        "rigger:ci:11:abcdef0123",
    )
    .await;
    let args = [
        "instances",
        "list",
        "--format",
        "vast-instances",
        "--database-url",
        &url,
    ];

    // Without a Vast.ai key: what the store knows, SSH unknown.
    let (code, text, err) = rigger(&args, &[]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let e = &v[0];
    assert_eq!(e["instance_id"], provider);
    assert_eq!(e["offer_id"], 900);
    assert_eq!(e["gpu_name"], "RTX 4090");
    assert_eq!(e["num_gpus"], 1);
    assert_eq!(e["dph"], 0.5);
    assert_eq!(e["status"], "booting");
    assert_eq!(e["experiment"], "octo/ml#job-11");
    assert!(e["created_at"].is_string(), "{e}");
    // The estimate made at rent time, not the two hours it has been up.
    assert_eq!(e["estimated_hours"], ESTIMATE.0, "{e}");
    assert_eq!(e["estimated_cost"], ESTIMATE.1, "{e}");
    for key in ["ssh_url", "ssh_host", "ssh_port"] {
        assert!(e[key].is_null(), "{key}: {e}");
    }

    // With one: Vast.ai's view of the instance gives its SSH address.
    let (code, text, err) = rigger(
        &args,
        &[
            ("RIGGER_VAST_API_KEY", "sim-vast-key"),
            ("RIGGER_VAST_API_URL", &vast_url),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let e = &v[0];
    let host = e["ssh_host"].as_str().expect("ssh_host");
    let port = e["ssh_port"].as_i64().expect("ssh_port");
    assert!(!host.is_empty() && port > 0, "{e}");
    assert_eq!(e["ssh_url"], format!("ssh://root@{host}:{port}"));

    // A wrong key is an error that says what to check, not silent nulls.
    let (code, _, err) = rigger(
        &args,
        &[
            ("RIGGER_VAST_API_KEY", "wrong-key"),
            ("RIGGER_VAST_API_URL", &vast_url),
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("check the API key"), "{err}");

    // Or from `[vast]` in serve's settings file, as `rigger serve` reads it.
    let dir = temp_dir("vast-instances-config");
    let key_file = dir.join("vast.key");
    std::fs::write(&key_file, "sim-vast-key\n").unwrap();
    let config = dir.join("rigger.toml");
    std::fs::write(
        &config,
        format!("[vast]\napi_key_file = {key_file:?}\napi_url = {vast_url:?}\n"),
    )
    .unwrap();
    let mut with_config = args.to_vec();
    with_config.extend(["--config", config.to_str().unwrap()]);
    let (code, text, err) = rigger(&with_config, &[]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(v[0]["ssh_host"].is_string(), "{v}");
}

#[tokio::test]
async fn costs_by_repository_since_a_day() {
    let url = seeded("costs", "7835610", "rigger:ci:11").await;
    let (code, text) = all(rigger(&["costs", "--database-url", &url], &[]));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("octo/ml"), "{text}");
    assert!(text.contains("Total: $0.25"), "{text}");

    let today = chrono::Utc::now().date_naive();
    let since = |day: chrono::NaiveDate| {
        let day = day.format("%Y-%m-%d").to_string();
        let (code, text, err) = rigger(
            &["costs", "--since", &day, "--json", "--database-url", &url],
            &[],
        );
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(v["since"].as_str().unwrap().starts_with(&day), "{v}");
        v
    };
    let v = since(today - chrono::Duration::days(1));
    assert_eq!(v["total_usd"], 0.25, "{v}");
    assert_eq!(v["by_repo"][0]["repo"], "octo/ml");
    assert_eq!(v["by_repo"][0]["instances"], 1);
    let v = since(today + chrono::Duration::days(1));
    assert_eq!(v["total_usd"], 0.0, "spent before the day: {v}");
    assert!(v["by_repo"].as_array().unwrap().is_empty(), "{v}");

    for bad in ["yesterday", "2025-13-01"] {
        let (code, _, err) = rigger(&["costs", "--since", bad, "--database-url", &url], &[]);
        assert_eq!(code, 1);
        assert!(err.contains("write a day as YYYY-MM-DD"), "{bad}: {err}");
    }
}

#[test]
fn a_bad_database_url_is_explained() {
    let (code, text) = all(rigger(
        &["jobs", "list", "--database-url", "mysql://u:secret@h/db"],
        &[],
    ));
    assert_eq!(code, 1);
    assert!(text.contains("sqlite://PATH or postgres://"), "{text}");
    assert!(!text.contains("secret"), "{text}");
}

/// The Vast.ai id of the one live instance `instances list` finds.
fn listed_provider(dir: Option<&std::path::Path>, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut all = vec!["instances", "list", "--json"];
    all.extend_from_slice(args);
    let (code, out, err) = rigger_in(dir, &all, env);
    assert_eq!(code, 0, "{args:?} {env:?}: {out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["provider_id"].as_str().unwrap().to_string()
}

/// Each command finds the database where `rigger serve` keeps it: the flag,
/// else RIGGER_DATABASE_URL, else `database_url` in --config (a file with
/// none of the secrets serve needs), else sqlite://rigger.db here.
#[tokio::test]
async fn the_database_comes_from_the_flag_the_environment_the_config_or_the_default() {
    let from_flag = seeded("from-flag", "1001", "rigger:ci:11").await;
    let from_env = seeded("from-env", "1002", "rigger:ci:11").await;
    let from_config = seeded("from-config", "1003", "rigger:ci:11").await;
    let from_default = seeded("from-default", "1004", "rigger:ci:11").await;
    let here = std::path::Path::new(from_default.trim_start_matches("sqlite://"))
        .parent()
        .unwrap()
        .to_path_buf();
    let config = temp_dir("config").join("rigger.toml");
    std::fs::write(
        &config,
        format!(
            "database_url = {from_config:?}\ncontroller_id = \"ci\"\n[github]\napp_id = 5\n[limits]\nmax_dph = 2.5\n"
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let elsewhere = temp_dir("elsewhere");
    let at = Some(elsewhere.as_path());

    assert_eq!(listed_provider(at, &["--config", config], &[]), "1003");
    assert_eq!(
        listed_provider(at, &[], &[("RIGGER_CONFIG", config)]),
        "1003"
    );
    assert_eq!(
        listed_provider(
            at,
            &["--config", config],
            &[("RIGGER_DATABASE_URL", &from_env)]
        ),
        "1002"
    );
    assert_eq!(
        listed_provider(
            at,
            &["--config", config, "--database-url", &from_flag],
            &[("RIGGER_DATABASE_URL", &from_env)]
        ),
        "1001"
    );
    assert_eq!(listed_provider(Some(&here), &[], &[]), "1004");

    // The other two commands read the same way.
    let (code, out, err) = rigger_in(at, &["jobs", "list", "--config", config], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("provisioning"), "{out}");
    let (code, out, err) = rigger_in(at, &["costs", "--config", config], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Total: $0.25"), "{out}");

    // A config file serve would refuse to read is refused here too.
    let bad = temp_dir("bad-config").join("rigger.toml");
    std::fs::write(&bad, "database_url = \"mysql://u:secret@h/db\"\n").unwrap();
    let (code, _, err) = rigger_in(
        at,
        &["jobs", "list", "--config", bad.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 1);
    assert!(err.contains("neither sqlite://PATH nor postgres"), "{err}");
    assert!(!err.contains("secret"), "{err}");
}

/// Run where there is no database, the commands say so and where they
/// looked, and create nothing: an empty table would say all is well.
#[test]
fn a_missing_database_is_an_error_and_is_not_created() {
    let here = temp_dir("no-database");
    let missing = here.join("rigger.db");
    let other = here.join("other.db");
    let other_url = format!("sqlite://{}", other.display());
    let config = here.join("rigger.toml");
    std::fs::write(&config, format!("database_url = {other_url:?}\n")).unwrap();
    let config = config.to_str().unwrap();
    for (args, path) in [
        (vec!["jobs", "list"], &missing),
        (vec!["instances", "list"], &missing),
        (vec!["costs"], &missing),
        (vec!["jobs", "list", "--database-url", &other_url], &other),
        (vec!["costs", "--config", config], &other),
    ] {
        let (code, out, err) = rigger_in(Some(&here), &args, &[]);
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert!(
            err.contains(&format!(
                "there is no rigger database at {}",
                path.display()
            )),
            "{args:?}: {err}"
        );
        assert!(
            err.contains("--config") && err.contains("--database-url"),
            "{args:?}: {err}"
        );
        assert!(out.is_empty(), "{args:?}: no table: {out}");
        assert!(!path.exists(), "{args:?} created {}", path.display());
    }
}
