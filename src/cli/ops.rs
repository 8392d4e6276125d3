//! Operator commands over the store: `rigger jobs list`, `rigger instances
//! list`, `rigger costs`.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use crate::engine::state::{InstanceState, JobState};
use crate::settings::{self, Secret};
use crate::store::{InstanceRow, JobRow, Store, StoreError};

/// Which database to read: `--database-url`, else RIGGER_DATABASE_URL, else
/// `database_url` in the `--config` file, else sqlite://rigger.db. These
/// commands never create a database: a SQLite file that is not there is an
/// error.
#[derive(Debug, Args)]
pub struct DbArgs {
    /// The database `rigger serve` uses (sqlite://PATH or postgres://…).
    /// Without it: database_url from --config, else sqlite://rigger.db in
    /// this directory. A SQLite file that is not there is an error, never
    /// created.
    #[arg(
        long,
        value_name = "URL",
        env = "RIGGER_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// `rigger serve`'s settings file, for its database_url (nothing else in
    /// it is needed: no GitHub or Vast.ai secret is read).
    #[arg(long, value_name = "FILE", env = "RIGGER_CONFIG")]
    pub config: Option<PathBuf>,
}

impl DbArgs {
    /// The database URL and where it came from, in words for an error.
    fn url(&self) -> anyhow::Result<(String, String)> {
        if let Some(url) = self
            .database_url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
        {
            return Ok((
                url.to_string(),
                "--database-url or RIGGER_DATABASE_URL".into(),
            ));
        }
        let url = settings::load_database_url(self.config.as_deref(), &|k| std::env::var(k).ok())?;
        let from = match &self.config {
            Some(file) => format!("database_url in {}", file.display()),
            None => format!("the default, {}", settings::DEFAULT_DATABASE_URL),
        };
        Ok((url, from))
    }
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
    ///
    /// `--format vast-instances` gives each machine's estimated hours and
    /// cost as rigger estimated them when it rented it, and its SSH address
    /// from Vast.ai's view of the instance when a Vast.ai key is given
    /// (--vast-api-key, RIGGER_VAST_API_KEY, RIGGER_VAST_API_KEY_FILE, or
    /// vast.api_key_file in --config); without one the SSH fields are null.
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
        #[command(flatten)]
        vast: VastArgs,
    },
    /// Destroy one machine now (its job's runner goes with it).
    Destroy(super::destroy::DestroyArgs),
    /// Destroy every machine this controller rented, orphans included.
    DestroyAll(super::destroy::DestroyAllArgs),
}

/// Where to ask Vast.ai for what the store does not hold (SSH addresses).
#[derive(Debug, Args)]
pub struct VastArgs {
    /// Vast.ai API key, for the SSH fields of --format vast-instances.
    #[arg(long, env = "RIGGER_VAST_API_KEY", hide_env_values = true)]
    pub vast_api_key: Option<String>,
    /// A file holding the Vast.ai API key.
    #[arg(long, env = "RIGGER_VAST_API_KEY_FILE")]
    pub vast_api_key_file: Option<std::path::PathBuf>,
    /// Vast.ai's API URL [default: vast.api_url from --config, else
    /// https://console.vast.ai].
    #[arg(long, env = "RIGGER_VAST_API_URL")]
    pub vast_api_url: Option<String>,
}

impl VastArgs {
    /// The key and URL: from the flags or RIGGER_VAST_*, else from `[vast]`
    /// in the settings file, as `rigger serve` would use them.
    fn access(&self, config: Option<&std::path::Path>) -> anyhow::Result<(Option<Secret>, String)> {
        let (file_key, file_url) = match config {
            Some(file) => settings::load_vast_access(file)?,
            None => (None, None),
        };
        let key = self.key()?.or(file_key);
        let url = self
            .vast_api_url
            .clone()
            .or(file_url)
            .unwrap_or_else(|| crate::cloud::vast::client::DEFAULT_URL.to_string());
        Ok((key, url))
    }

    fn key(&self) -> anyhow::Result<Option<Secret>> {
        if let Some(k) = self
            .vast_api_key
            .as_deref()
            .filter(|k| !k.trim().is_empty())
        {
            return Ok(Some(Secret::new(k.trim())));
        }
        match &self.vast_api_key_file {
            None => Ok(None),
            Some(path) => std::fs::read_to_string(path)
                .map(|k| Some(Secret::new(k.trim())))
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot read the Vast.ai key file {} ({e}); fix the path or leave it out",
                        path.display()
                    )
                }),
        }
    }
}

/// An instance's SSH address from Vast.ai, through rigger's client and its
/// limiter (Vast.ai shows an instance once per 2 s per key, and a new
/// limiter leaves a command run a moment ago its interval).
async fn vast_ssh(
    client: &crate::cloud::vast::client::VastClient,
    base: &str,
    provider_id: &str,
) -> anyhow::Result<Option<(String, i64)>> {
    if !provider_id.chars().all(|c| c.is_ascii_digit()) {
        return Ok(None);
    }
    client.ssh_address(provider_id).await.map_err(|e| match e {
        crate::cloud::ProviderError::Unauthorized(_) => anyhow::anyhow!(
            "Vast.ai refused the API key showing instance {provider_id}; check the API key (RIGGER_VAST_API_KEY)"
        ),
        e => anyhow::anyhow!("Vast.ai at {base} could not show instance {provider_id}: {e}"),
    })
}

/// The estimate rigger made when it rented the instance, from its row:
/// `(hours, dollars)`.
pub fn rent_estimate(i: &InstanceRow) -> Option<(f64, f64)> {
    i.estimated_hours.zip(i.estimated_cost)
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

pub(super) async fn open(db: &DbArgs) -> anyhow::Result<Store> {
    let (url, from) = db.url()?;
    Store::open_existing(&url).await.map_err(|e| match e {
        StoreError::NoDatabase(path) => anyhow::anyhow!(
            "there is no rigger database at {path} ({from}); pass --config with rigger \
             serve's settings file or --database-url with its database (rigger does not \
             create one here)"
        ),
        e => anyhow::anyhow!(
            "cannot open the database {} ({from}): {e}",
            crate::store::redact_url(&url)
        ),
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
    let set_aside = store.quarantined_count().await?;
    if set_aside > 0 {
        println!(
            "{set_aside} webhook deliveries are set aside (quarantined) and not handled: `rigger inbox list` shows why"
        );
    }
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
        "failure": j.failure,
        "runner_def": j.runner_def,
        "runner_name": j.runner_name,
        "conclusion": j.conclusion,
        "attempts": j.attempts,
        "queued_at": ms_to_rfc3339(j.queued_at),
        "updated_at": ms_to_rfc3339(j.updated_at),
    })
}

pub async fn instances(cmd: InstancesCommand) -> anyhow::Result<()> {
    let (db, json, format, all, vast) = match cmd {
        InstancesCommand::List {
            db,
            json,
            format,
            all,
            vast,
        } => (db, json, format, all, vast),
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
    match format {
        InstanceFormat::Json => {
            let rows: Vec<_> = instances.iter().map(instance_json).collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        InstanceFormat::VastInstances => {
            let (key, vast_url) = vast.access(db.config.as_deref())?;
            let client = key.as_ref().map(|key| {
                use crate::cloud::vast::{client::VastClient, limit};
                let clock = std::sync::Arc::new(crate::engine::ports::SystemClock);
                VastClient::new(&vast_url, key.clone()).with_limiter(
                    limit::Limiter::new(limit::RateLimits::documented(), clock),
                    0,
                )
            });
            let mut rows = Vec::new();
            for i in &instances {
                let repo = store
                    .job(i.job_id)
                    .await?
                    .map(|j| j.repo)
                    .unwrap_or_default();
                let ssh = match (&client, &i.provider_id) {
                    (Some(client), Some(pid)) if !i.state.is_terminal() => {
                        vast_ssh(client, &vast_url, pid).await?
                    }
                    _ => None,
                };
                let estimate = rent_estimate(i);
                rows.push(vast_instances_entry(i, &repo, estimate, ssh));
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
/// runs (`experiment`: repository and job), its SSH address when Vast.ai
/// told us, and rigger's estimate at rent time (`(hours, dollars)`; null
/// when it made none, e.g. for an instance adopted after a crash).
pub fn vast_instances_entry(
    i: &InstanceRow,
    repo: &str,
    estimate: Option<(f64, f64)>,
    ssh: Option<(String, i64)>,
) -> serde_json::Value {
    let (ssh_url, ssh_host, ssh_port) = match ssh {
        Some((host, port)) => (
            Some(format!("ssh://root@{host}:{port}")),
            Some(host),
            Some(port),
        ),
        None => (None, None, None),
    };
    json!({
        "instance_id": i.provider_id.as_deref().and_then(|p| p.parse::<i64>().ok()),
        "offer_id": i.offer_id,
        "gpu_name": i.gpu_name,
        "num_gpus": i.num_gpus,
        "dph": i.dph.unwrap_or(0.0),
        "ssh_url": ssh_url,
        "ssh_host": ssh_host,
        "ssh_port": ssh_port,
        "created_at": ms_to_rfc3339(i.created_at),
        "status": i.state,
        "experiment": format!("{repo}#job-{}", i.job_id),
        "estimated_hours": estimate.map(|(h, _)| h),
        "estimated_cost": estimate.map(|(_, c)| c),
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

pub(super) fn ms_to_rfc3339(ms: i64) -> String {
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
