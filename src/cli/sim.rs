//! `rigger sim`: run a simulated service standalone, to rehearse configs and
//! scripts against it without spending money.

use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::engine::ports::SystemClock;
use crate::settings::parse_duration;
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
    /// steal_rate=0.1,ambiguous_create_rate=0.02,die_rate=0.05,stuck_rate=0.05`.
    #[arg(long, default_value = "")]
    pub faults: String,
    /// The account's API key clients must send.
    #[arg(long, default_value = "sim-vast-key")]
    pub api_key: String,
}

pub async fn run(cmd: SimCommand) -> anyhow::Result<()> {
    match cmd {
        SimCommand::Vast(a) => vast(a).await,
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
            boot_delay_ms: boot.as_millis() as i64,
            faults,
            api_key: a.api_key.clone(),
        },
        Arc::new(SystemClock),
    );
    println!("simulated Vast.ai listening on {url}");
    println!("  API key:   {}", a.api_key);
    println!(
        "  market:    {} offers from seed {}; instances boot in {}",
        a.offers, a.seed, a.boot_delay
    );
    if !a.faults.is_empty() {
        println!("  faults:    {}", a.faults);
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
