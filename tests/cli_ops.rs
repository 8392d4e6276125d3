//! `rigger jobs list`, `rigger instances list`, `rigger costs` over a real
//! SQLite store, run as the operator runs them.

mod ops_world;

use ops_world::{ESTIMATE, rent, rigger, seeded, vast};

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
