//! `rigger sim`: run a simulated service standalone, to rehearse configs and
//! scripts against it without spending money.

use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::engine::ports::SystemClock;
use crate::settings::Secret;
use crate::settings::parse_duration;
use crate::sim::github::{SimGithub, SimGithubConfig};
use crate::sim::machine::Machines;
use crate::sim::vast::{Faults, SimConfig, SimVast};

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// A simulated Vast.ai: a seeded market, instances that boot on a clock,
    /// per-second billing, and injectable faults.
    ///
    /// Point rigger (`--vast-url`, `cloud.vast_url`) or the `vastai` CLI
    /// (`VAST_URL=… vastai --url … --api-key …`) at the printed URL. Its own
    /// state is at `GET /sim/state`; faults can be changed at run time with
    /// `POST /sim/faults` and a body such as `error_rate=0.1`.
    Vast(SimVastArgs),
    /// A simulated GitHub: an App with installations, repositories and their
    /// files, JIT runners, jobs, check runs, and a webhook sender.
    ///
    /// Writes the App's private key to `--key-out` for rigger's
    /// `github.private_key_file`. Script it through its control API:
    /// `POST /sim/repos`, `POST /sim/jobs`, `POST /sim/jobs/{id}/cancel`,
    /// `POST /sim/webhooks`, `POST /sim/limits`, `POST
    /// /sim/installations/{id}/suspend` (and `unsuspend`, `delete`),
    /// `GET /sim/state` (see the README).
    Github(SimGithubArgs),
}

#[derive(Debug, Args)]
pub struct SimGithubArgs {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:8766")]
    pub listen: String,
    /// Where to deliver webhooks (rigger's `/webhook`).
    #[arg(long)]
    pub webhook_url: Option<String>,
    /// The secret deliveries are signed with (rigger's webhook secret).
    #[arg(long, env = "RIGGER_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: String,
    /// Where to write the App's private key (PEM, mode 0600).
    #[arg(long, default_value = "sim-github-app.pem")]
    pub key_out: std::path::PathBuf,
    #[arg(long, default_value_t = 812_345)]
    pub app_id: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct SimVastArgs {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:8765")]
    pub listen: String,
    /// Offers in the market.
    #[arg(long, default_value_t = 2000)]
    pub offers: usize,
    /// Seed of the market and of the faults: the same seed, the same world.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How long an instance stays `loading` before it runs (e.g. 20s, 2m).
    #[arg(long, default_value = "20s")]
    pub boot_delay: String,
    /// Faults, e.g. `error_rate=0.05,rate_limit_burst=3,latency_ms=200,
    /// steal_rate=0.1,ambiguous_create_rate=0.02,die_rate=0.05,stuck_rate=0.05,
    /// refuse_destroys=2`.
    #[arg(long, default_value = "")]
    pub faults: String,
    /// The account's API key clients must send.
    #[arg(long, default_value = "sim-vast-key")]
    pub api_key: String,
    /// Vast.ai's rate limits: `documented` (its published figures: search 10
    /// a minute, create every 4.5 s, show 2 s, list 1 s, destroy 3 s), `none`,
    /// or changes such as `documented,search_per_minute=20,search_quota_per_day=500`.
    #[arg(long, default_value = "documented")]
    pub limits: String,
    /// Run each instance's real onstart script when it boots, as the demo
    /// does: by `sh`, in a sandbox directory of its own, with the instance's
    /// environment; only `nvidia-smi`, user creation and package managers
    /// are shimmed. With `rigger serve` pointed here, runners boot end to end.
    /// The scripts run on this computer: rehearse only configs you trust.
    #[arg(long)]
    pub run_onstart: bool,
    /// Where the sandboxes go (with `--run-onstart`).
    #[arg(long, default_value_os_t = std::env::temp_dir().join("rigger-sim-vast"))]
    pub sandbox_dir: std::path::PathBuf,
}

pub async fn run(cmd: SimCommand) -> anyhow::Result<()> {
    match cmd {
        SimCommand::Vast(a) => vast(a).await,
        SimCommand::Github(a) => github(a).await,
    }
}

async fn vast(a: SimVastArgs) -> anyhow::Result<()> {
    let faults: Faults = a.faults.parse().map_err(anyhow::Error::msg)?;
    let boot = parse_duration(&a.boot_delay).with_context(|| {
        format!(
            "--boot-delay `{}` is not a duration such as 20s or 2m",
            a.boot_delay
        )
    })?;
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .with_context(|| format!("cannot listen on {}", a.listen))?;
    let url = format!("http://{}", listener.local_addr()?);
    let sim = SimVast::new(
        SimConfig {
            seed: a.seed,
            offers: a.offers,
            boot_delay_ms: crate::millis::of(boot),
            faults,
            api_key: a.api_key.clone(),
            limits: a.limits.parse().map_err(anyhow::Error::msg)?,
        },
        Arc::new(SystemClock),
    );
    if a.run_onstart {
        std::fs::create_dir_all(&a.sandbox_dir).with_context(|| {
            format!(
                "cannot make the sandbox directory {}",
                a.sandbox_dir.display()
            )
        })?;
        Machines::new(a.sandbox_dir.clone(), sim.clone()).install();
    }
    println!("simulated Vast.ai listening on {url}");
    println!("  API key:   {}", a.api_key);
    println!(
        "  market:    {} offers from seed {}; instances boot in {}",
        a.offers, a.seed, a.boot_delay
    );
    if !a.faults.is_empty() {
        println!("  faults:    {}", a.faults);
    }
    println!("  limits:    {} (change with POST /sim/limits)", a.limits);
    if a.run_onstart {
        println!(
            "  machines:  each instance's onstart runs in {}/instance-<id>",
            a.sandbox_dir.display()
        );
    }
    println!("  state:     {url}/sim/state");
    println!("try:");
    println!("  rigger plan examples/.cirun.yml --vast-url {url}");
    println!(
        "  VAST_URL={url} vastai --url {url} --api-key {} search offers 'gpu_name=RTX_4090 num_gpus=1'",
        a.api_key
    );
    sim.serve(listener)
        .await
        .context("the simulated Vast.ai stopped")
}

async fn github(a: SimGithubArgs) -> anyhow::Result<()> {
    let sim = SimGithub::new(
        SimGithubConfig {
            app_id: a.app_id,
            seed: a.seed,
            webhook_url: a.webhook_url.clone(),
            webhook_secret: Secret::new(a.webhook_secret.clone()),
            ..SimGithubConfig::default()
        },
        Arc::new(SystemClock),
    )?;
    write_private(&a.key_out, sim.private_key_pem().expose())
        .with_context(|| format!("cannot write the App key to {}", a.key_out.display()))?;
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .with_context(|| format!("cannot listen on {}", a.listen))?;
    let url = format!("http://{}", listener.local_addr()?);
    println!("simulated GitHub listening on {url}");
    println!("  App id:      {}", a.app_id);
    println!("  private key: {}", a.key_out.display());
    match &a.webhook_url {
        Some(w) => println!("  webhooks to: {w}"),
        None => println!("  webhooks:    not sent (no --webhook-url)"),
    }
    println!("  state:       {url}/sim/state");
    println!(
        "for rigger: RIGGER_GITHUB_API_URL={url} RIGGER_GITHUB_APP_ID={} RIGGER_GITHUB_PRIVATE_KEY_FILE={}",
        a.app_id,
        a.key_out.display()
    );
    sim.serve(listener)
        .await
        .context("the simulated GitHub stopped")
}

/// Write a file only its owner can read.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}
