//! `rigger plan`: what each Vast.ai runner of a `.cirun.yml` would rent right
//! now, and what it would cost — the query sent, the best offers by estimated
//! total, and, when nothing fits, which filter emptied the market.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;

use crate::cloud::vast::client::{DEFAULT_URL, VastClient};
use crate::cloud::vast::limit::{Limiter, RateLimits};
use crate::config::{self, FileKind};
use crate::engine::offers::{CandidatePlan, plan_candidate};
use crate::engine::rank::Priced;
use crate::settings::Secret;
use crate::text::clip;

/// Reliability below this is flagged: about one interrupted job in 30.
const LOW_RELIABILITY: f64 = 0.97;

/// How long a search waits for its slot: a minute and a little, so a plan
/// of more candidates than Vast.ai's ten searches a minute finishes at
/// Vast.ai's pace instead of being refused.
const QUEUE_SEARCH_MS: i64 = 61_000;

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The `.cirun.yml` to plan for.
    #[arg(default_value = ".cirun.yml")]
    pub file: PathBuf,
    /// Only this runner definition (by `name`).
    #[arg(long)]
    pub runner: Option<String>,
    /// Vast.ai's API; point it at `rigger sim vast` to rehearse.
    #[arg(long, env = "VAST_URL", default_value = DEFAULT_URL)]
    pub vast_url: String,
    /// Vast.ai API key (searching works without one).
    #[arg(long = "vast-api-key", env = "VAST_API_KEY", hide_env_values = true)]
    pub vast_api_key: Option<String>,
    /// How long the job runs on an RTX 3090; faster GPUs are credited with
    /// finishing sooner. The default is `rigger serve`'s with no history
    /// (`limits.default_job_minutes`' default).
    #[arg(long, default_value_t = crate::engine::estimate::DEFAULT_JOB_MINUTES)]
    pub expected_minutes: u32,
    /// Offers shown per candidate.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
    /// The rate limits kept to, as `[vast] rate_limits` in rigger.toml
    /// (`documented`, or `documented,search_per_minute=5,...`).
    #[arg(long, env = "RIGGER_VAST_RATE_LIMITS", default_value = "documented")]
    pub rate_limits: RateLimits,
}

pub async fn run(args: PlanArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let parsed = config::parse_file(&args.file, &text, FileKind::Repository);
    if parsed.diagnostics.errors() > 0 {
        eprint!("{}", parsed.render());
        bail!(
            "{} has errors; fix them first (`rigger validate {}` lists them all)",
            args.file.display(),
            args.file.display()
        );
    }
    let Some(cfg) = parsed.config else {
        bail!("{} defines no runners", args.file.display());
    };
    let runners: Vec<_> = cfg
        .runners
        .iter()
        .filter(|r| args.runner.as_ref().is_none_or(|n| &r.name == n))
        .filter_map(|r| r.vast.as_ref().map(|v| (r, v)))
        .collect();
    if runners.is_empty() {
        let names: Vec<&str> = cfg.runners.iter().map(|r| r.name.as_str()).collect();
        bail!(
            "no vast_ai runner{} in {} (runners: {})",
            args.runner
                .as_ref()
                .map(|n| format!(" named `{n}`"))
                .unwrap_or_default(),
            args.file.display(),
            names.join(", ")
        );
    }
    // The same limiter as `rigger serve`'s: Vast.ai counts per key, and a
    // refused search would only be retried into more refusals.
    let clock = std::sync::Arc::new(crate::engine::ports::SystemClock);
    let client = VastClient::new(
        &args.vast_url,
        Secret::new(args.vast_api_key.clone().unwrap_or_default()),
    )
    .with_limiter(
        Limiter::new(args.rate_limits.clone(), clock),
        QUEUE_SEARCH_MS,
    );
    let hours = f64::from(args.expected_minutes) / 60.0;
    let mut out = Vec::new();
    for (def, vast) in runners {
        let mut plans = Vec::new();
        for (i, c) in vast.candidates.iter().enumerate() {
            // No settings here: the contract need only outlast `max_runtime`.
            let plan = plan_candidate(&client, i, c, &vast.extra, vast.cpu_arch, hours, None)
                .await
                .with_context(|| format!("searching Vast.ai at {}", client.base_url()))?;
            plans.push(plan);
        }
        out.push((def, plans));
    }
    if args.json {
        let runners: Vec<_> = out
            .iter()
            .map(|(def, plans)| {
                json!({
                    "name": def.name,
                    "labels": def.labels,
                    "candidates": plans.iter().map(|p| candidate_json(p, args.top)).collect::<Vec<_>>(),
                })
            })
            .collect();
        let doc = json!({"expected_reference_hours": hours, "runners": runners});
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!(
        "Estimates assume the job takes {} on an RTX 3090, scaled by GPU speed, plus boot time.",
        minutes(hours)
    );
    for (def, plans) in &out {
        println!();
        println!("runner `{}` (labels {})", def.name, def.labels.join(", "));
        for p in plans {
            print_candidate(p, plans.len(), args.top);
        }
    }
    Ok(())
}

fn minutes(hours: f64) -> String {
    let m = (hours * 60.0).round() as i64;
    if m >= 60 && m % 60 == 0 {
        format!("{} h", m / 60)
    } else if m >= 60 {
        format!("{} h {} min", m / 60, m % 60)
    } else {
        format!("{m} min")
    }
}

fn offer_json(p: &Priced) -> serde_json::Value {
    json!({
        "offer_id": p.offer.id,
        "estimated_total": p.total,
        "dph": p.dph,
        "bid": p.bid,
        "estimated_hours": p.hours,
        "gpu_name": p.offer.gpu_name,
        "num_gpus": p.offer.num_gpus,
        "gpu_ram_gb": f64::from(p.offer.gpu_ram_mb) / 1000.0,
        "reliability": p.offer.reliability,
        "low_reliability": p.offer.reliability < LOW_RELIABILITY,
        "location": p.offer.location,
    })
}

fn candidate_json(p: &CandidatePlan, top: usize) -> serde_json::Value {
    json!({
        "instance_type": p.instance_type,
        "image": p.image,
        "query": p.query,
        "matching": p.offers.len(),
        "offers": p.offers.iter().take(top).map(offer_json).collect::<Vec<_>>(),
        "diagnosis": p.diagnosis,
    })
}

fn print_candidate(p: &CandidatePlan, of: usize, top: usize) {
    let f = &p.filter;
    let mut what = vec![p.instance_type.clone(), p.image.clone()];
    if let Some(c) = &f.country {
        what.push(c.clone());
    }
    if f.interruptible {
        what.push("interruptible".into());
    }
    println!("  candidate {}/{of}: {}", p.index + 1, what.join(" · "));
    println!("    query: {}", p.query);
    if let Some(d) = &p.diagnosis {
        println!("    {d}");
        return;
    }
    println!(
        "    {} matching offer{}; the best {}:",
        p.offers.len(),
        if p.offers.len() == 1 { "" } else { "s" },
        p.offers.len().min(top)
    );
    println!(
        "    {:>3}  {:>8}  {:>8}  {:>6}  {:<16} {:>6}  {:>11}  {:<24} {:>9}",
        "#", "total", "$/hour", "hours", "GPU", "VRAM", "reliability", "location", "offer"
    );
    let mut flagged = false;
    for (n, o) in p.offers.iter().take(top).enumerate() {
        let low = o.offer.reliability < LOW_RELIABILITY;
        flagged |= low;
        println!(
            "    {:>3}  {:>8}  {:>8}  {:>6.2}  {:<16} {:>6}  {:>10.1}%{}  {:<24} {:>9}",
            n + 1,
            format!("${:.2}", o.total),
            format!("${:.3}", o.dph),
            o.hours,
            format!("{}× {}", o.offer.num_gpus, o.offer.gpu_name),
            format!("{:.0} GB", f64::from(o.offer.gpu_ram_mb) / 1000.0),
            o.offer.reliability * 100.0,
            if low { "!" } else { " " },
            clip(&o.offer.location, 24),
            o.offer.id
        );
    }
    if flagged {
        println!(
            "    ! reliability below {:.0}%: such hosts drop jobs more often",
            LOW_RELIABILITY * 100.0
        );
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        plan: super::PlanArgs,
    }

    /// The same offer shows the same estimate in `rigger plan` as in the
    /// log of `rigger serve` with no history.
    #[test]
    fn plan_expects_what_serve_expects_with_no_history() {
        let cli = Cli::try_parse_from(["plan"]).unwrap();
        assert_eq!(
            cli.plan.expected_minutes,
            crate::engine::estimate::DEFAULT_JOB_MINUTES
        );
    }
}
