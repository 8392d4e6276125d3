//! Operator commands over the store: `rigger jobs list`, `rigger instances
//! list`, `rigger costs`.

use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use crate::engine::state::{InstanceState, JobState};
use crate::store::{InstanceRow, JobRow, Store};

#[derive(Debug, Args)]
pub struct DbArgs {
    /// The database rigger serve uses.
    #[arg(
        long,
        env = "RIGGER_DATABASE_URL",
        default_value = "sqlite://rigger.db"
    )]
    pub database_url: String,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Jobs rigger knows, newest first, with their state and why.
    List {
        #[command(flatten)]
        db: DbArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Include finished jobs.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum InstanceFormat {
    Table,
    Json,
    /// The `vast-instances.json` state-file shape other Vast.ai tools read.
    VastInstances,
}

#[derive(Debug, Subcommand)]
pub enum InstancesCommand {
    /// Machines rigger rented that are not destroyed yet.
    List {
        #[command(flatten)]
        db: DbArgs,
        /// Shorthand for --format json.
        #[arg(long)]
        json: bool,
        #[arg(long, value_enum, default_value = "table")]
        format: InstanceFormat,
        /// Include destroyed and failed instances.
        #[arg(long)]
        all: bool,
    },
    /// Destroy one machine now (its job's runner goes with it).
    Destroy(super::destroy::DestroyArgs),
    /// Destroy every machine this controller rented, orphans included.
    DestroyAll(super::destroy::DestroyAllArgs),
}

#[derive(Debug, Args)]
pub struct CostsArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Count from this day (YYYY-MM-DD, UTC); default: the last 30 days.
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub json: bool,
}

async fn open(db: &DbArgs) -> anyhow::Result<Store> {
    Store::connect(&db.database_url).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot open the database {}: {e}",
            crate::store::redact_url(&db.database_url)
        )
    })
}

pub async fn jobs(cmd: JobsCommand) -> anyhow::Result<()> {
    let JobsCommand::List { db, json, all } = cmd;
    let store = open(&db).await?;
    let states: Vec<JobState> = JobState::ALL
        .into_iter()
        .filter(|s| all || !s.is_terminal())
        .collect();
    let mut jobs = store.jobs_in(&states).await?;
    jobs.reverse();
    if json {
        let rows: Vec<_> = jobs.iter().map(job_json).collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            vec![
                j.job_id.to_string(),
                j.repo.clone(),
                j.state.to_string(),
                j.runner_def.clone().unwrap_or_default(),
                j.runner_name.clone().unwrap_or_default(),
                j.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(
        &["JOB", "REPOSITORY", "STATE", "RUNNER DEF", "RUNNER", "WHY"],
        &rows,
        "no jobs",
    );
    Ok(())
}

fn job_json(j: &JobRow) -> serde_json::Value {
    json!({
        "job_id": j.job_id,
        "run_id": j.run_id,
        "run_attempt": j.run_attempt,
        "repo": j.repo,
        "labels": j.labels,
        "state": j.state,
        "reason": j.reason,
        "runner_def": j.runner_def,
        "runner_name": j.runner_name,
        "conclusion": j.conclusion,
        "attempts": j.attempts,
        "queued_at": ms_to_rfc3339(j.queued_at),
        "updated_at": ms_to_rfc3339(j.updated_at),
    })
}

pub async fn instances(cmd: InstancesCommand) -> anyhow::Result<()> {
    let (db, json, format, all) = match cmd {
        InstancesCommand::List {
            db,
            json,
            format,
            all,
        } => (db, json, format, all),
        InstancesCommand::Destroy(a) => return super::destroy::destroy(a).await,
        InstancesCommand::DestroyAll(a) => return super::destroy::destroy_all(a).await,
    };
    let store = open(&db).await?;
    let instances = if all {
        store.instances_in(&InstanceState::ALL).await?
    } else {
        store.live_instances().await?
    };
    let format = if json { InstanceFormat::Json } else { format };
    let now = chrono::Utc::now().timestamp_millis();
    match format {
        InstanceFormat::Json => {
            let rows: Vec<_> = instances.iter().map(instance_json).collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        InstanceFormat::VastInstances => {
            let mut rows = Vec::new();
            for i in &instances {
                let repo = store
                    .job(i.job_id)
                    .await?
                    .map(|j| j.repo)
                    .unwrap_or_default();
                rows.push(vast_instances_entry(i, &repo, now));
            }
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        InstanceFormat::Table => {
            let rows: Vec<Vec<String>> = instances
                .iter()
                .map(|i| {
                    vec![
                        i.id.clone(),
                        i.provider_id.clone().unwrap_or_default(),
                        i.job_id.to_string(),
                        i.state.to_string(),
                        format!(
                            "{}× {}",
                            i.num_gpus.unwrap_or(0),
                            i.gpu_name.clone().unwrap_or_default()
                        ),
                        i.dph.map(|d| format!("${d:.3}/h")).unwrap_or_default(),
                        i.location.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "INSTANCE", "VAST ID", "JOB", "STATE", "GPU", "PRICE", "WHERE",
                ],
                &rows,
                "no instances",
            );
        }
    }
    Ok(())
}

fn instance_json(i: &InstanceRow) -> serde_json::Value {
    json!({
        "id": i.id,
        "provider_id": i.provider_id,
        "job_id": i.job_id,
        "label": i.label,
        "runner_name": i.runner_name,
        "state": i.state,
        "reason": i.reason,
        "offer_id": i.offer_id,
        "gpu_name": i.gpu_name,
        "num_gpus": i.num_gpus,
        "dph": i.dph,
        "location": i.location,
        "created_at": ms_to_rfc3339(i.created_at),
        "expires_at": ms_to_rfc3339(i.expires_at),
    })
}

/// One entry of the `vast-instances.json` state file: the instance, what it
/// runs (`experiment`: repository and job) and what it has cost so far.
pub fn vast_instances_entry(i: &InstanceRow, repo: &str, now: i64) -> serde_json::Value {
    let start = i.create_called_at.unwrap_or(i.created_at);
    let end = i.destroyed_at.unwrap_or(now);
    let hours = (end - start).max(0) as f64 / 3_600_000.0;
    let dph = i.dph.unwrap_or(0.0);
    json!({
        "instance_id": i.provider_id.as_deref().and_then(|p| p.parse::<i64>().ok()),
        "offer_id": i.offer_id,
        "gpu_name": i.gpu_name,
        "num_gpus": i.num_gpus,
        "dph": dph,
        "ssh_url": null,
        "ssh_host": null,
        "ssh_port": null,
        "created_at": ms_to_rfc3339(i.created_at),
        "status": i.state,
        "experiment": format!("{repo}#job-{}", i.job_id),
        "estimated_hours": (hours * 1000.0).round() / 1000.0,
        "estimated_cost": (hours * dph * 10_000.0).round() / 10_000.0,
    })
}

pub async fn costs(args: CostsArgs) -> anyhow::Result<()> {
    let since = match &args.since {
        None => chrono::Utc::now() - chrono::Duration::days(30),
        Some(day) => chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
            .map_err(|_| anyhow::anyhow!("--since {day:?}: write a day as YYYY-MM-DD"))?
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc())
            .ok_or_else(|| anyhow::anyhow!("--since {day:?} is not a day"))?,
    };
    let store = open(&args.db).await?;
    let rows = store.spend_by_repo(since.timestamp_millis()).await?;
    let total: f64 = rows.iter().map(|r| r.cost_usd).sum();
    if args.json {
        let out: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({"repo": r.repo, "runner_def": r.runner_def, "instances": r.instances,
                       "hours": r.seconds as f64 / 3600.0, "cost_usd": r.cost_usd})
            })
            .collect();
        let doc = json!({"since": since.to_rfc3339(), "total_usd": total, "by_repo": out});
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.repo.clone(),
                r.runner_def.clone(),
                r.instances.to_string(),
                format!("{:.2}", r.seconds as f64 / 3600.0),
                format!("${:.2}", r.cost_usd),
            ]
        })
        .collect();
    println!("Spend since {} (UTC):", since.format("%Y-%m-%d"));
    print_table(
        &["REPOSITORY", "RUNNER DEF", "MACHINES", "HOURS", "COST"],
        &table,
        "nothing spent",
    );
    if !rows.is_empty() {
        println!("Total: ${total:.2}");
    }
    Ok(())
}

fn ms_to_rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Columns padded to their widest cell.
pub fn print_table(header: &[&str], rows: &[Vec<String>], empty: &str) {
    if rows.is_empty() {
        println!("({empty})");
        return;
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}
