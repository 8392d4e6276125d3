//! `rigger demo`: watch rigger rent GPUs for jobs and destroy them, in the
//! simulated world (see `src/demo.rs`).

use clap::Args;

use crate::demo::{self, DemoOptions};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// GPU jobs that run, besides one cancelled while queued and one that
    /// finds no offer.
    #[arg(long, default_value_t = 3)]
    pub jobs: usize,
    /// Seed of the simulated market.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How much faster simulated time runs than real time.
    #[arg(long, default_value_t = 60.0)]
    pub speed: f64,
    /// Leave the simulated services and rigger running, and print their URLs.
    #[arg(long)]
    pub keep_running: bool,
    /// Print one JSON object instead of progress and a table.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(a: DemoArgs) -> anyhow::Result<()> {
    if !(a.speed > 0.0 && a.speed <= 10_000.0) {
        anyhow::bail!("--speed must be between 0 and 10000 (times faster than real time)");
    }
    let report = demo::run(
        DemoOptions {
            jobs: a.jobs,
            seed: a.seed,
            speed: a.speed,
            progress: !a.json,
        },
        a.keep_running,
    )
    .await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!();
        println!(
            "{:<14} {:<22} {:<11} {:<10} {:<16} {:>9} {:>8}",
            "job", "runs-on", "state", "result", "GPU", "minutes", "cost"
        );
        for j in &report.jobs {
            println!(
                "{:<14} {:<22} {:<11} {:<10} {:<16} {:>9} {:>8}",
                j.id,
                j.label,
                j.state,
                j.conclusion.clone().unwrap_or_default(),
                j.gpu.clone().unwrap_or_else(|| "-".into()),
                j.seconds.map_or("-".into(), |s| format!("{:.1}", s / 60.0)),
                format!("${:.3}", j.cost_usd)
            );
            if let Some(r) = &j.reason {
                println!("{:<14} └ {r}", "");
            }
        }
        println!();
        println!(
            "instances created: {}   destroyed: {}   leaked: {}   total cost: ${:.3}",
            report.instances_created,
            report.instances_destroyed,
            report.leaked_instances,
            report.total_cost_usd
        );
    }
    if a.keep_running {
        eprintln!("still running (Ctrl-C to stop):");
        for (name, url) in &report.urls {
            eprintln!("  {name:<7} {url}");
        }
        let _ = tokio::signal::ctrl_c().await;
    }
    if report.leaked_instances > 0 {
        anyhow::bail!("{} instance(s) leaked", report.leaked_instances);
    }
    Ok(())
}
