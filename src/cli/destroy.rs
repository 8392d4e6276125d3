//! `rigger instances destroy ID` and `rigger instances destroy-all`: an
//! operator's way to stop spending now. Only machines carrying this
//! controller's label are ever touched (I1).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;

use crate::app::App;
use crate::engine::names;
use crate::engine::ports::{Cloud, SystemClock};
use crate::engine::state::InstanceState;
use crate::settings;
use crate::store::InstanceRow;

#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// rigger's instance id (from `rigger instances list`) or the Vast.ai id.
    pub id: String,
    /// Settings file; RIGGER_* variables as for `rigger serve`.
    #[arg(long, env = "RIGGER_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DestroyAllArgs {
    /// Really destroy; without it, only list what would be destroyed.
    #[arg(long)]
    pub yes: bool,
    #[arg(long, env = "RIGGER_CONFIG")]
    pub config: Option<PathBuf>,
}

async fn app(config: Option<&std::path::Path>) -> anyhow::Result<App> {
    let mut s = settings::load(config, &|k| std::env::var(k).ok())?;
    // These commands serve nothing: listen anywhere free.
    s.listen = "127.0.0.1:0".into();
    App::build(s, Arc::new(SystemClock)).await
}

pub async fn destroy(a: DestroyArgs) -> anyhow::Result<()> {
    let app = app(a.config.as_deref()).await?;
    let engine = &app.engine;
    let is = |i: &&InstanceRow| i.id == a.id || i.provider_id.as_deref() == Some(a.id.as_str());
    let live = engine.store.live_instances().await?;
    let Some(row) = live.iter().find(is) else {
        let all = engine.store.instances_in(&InstanceState::ALL).await?;
        if let Some(done) = all.iter().find(is) {
            bail!(
                "instance `{}` is already {} (Vast.ai {}); nothing to destroy",
                a.id,
                done.state,
                done.provider_id.as_deref().unwrap_or("-")
            );
        }
        bail!(
            "`{}` is not an instance controller `{}` rented, so rigger will not destroy it: \
             rigger destroys only its own machines. Give an id from `rigger instances list`; \
             a machine with this controller's label but no record is destroyed by \
             `rigger instances destroy-all`",
            a.id,
            engine.settings.controller_id
        );
    };
    let cost = engine
        .destroy_instance(row, "destroyed by an operator")
        .await
        .context("destroying")?;
    match cost {
        Some(c) => println!(
            "destroyed {} (Vast.ai {}): {} s, ${:.4}",
            row.id,
            row.provider_id.as_deref().unwrap_or("-"),
            c.seconds,
            c.dph * c.seconds as f64 / 3600.0
        ),
        None => println!(
            "{}: the destroy is recorded; Vast.ai will be asked again by the reconciler",
            row.id
        ),
    }
    Ok(())
}

pub async fn destroy_all(a: DestroyAllArgs) -> anyhow::Result<()> {
    let app = app(a.config.as_deref()).await?;
    let engine = &app.engine;
    let rows = engine.store.live_instances().await?;
    let prefix = names::label_prefix(&engine.settings.controller_id);
    let cloud = engine
        .cloud
        .list(&prefix)
        .await
        .context("listing this controller's Vast.ai instances")?;
    // Machines on Vast.ai with our label but no row (a crash, say).
    let orphans: Vec<_> = cloud
        .iter()
        .filter(|c| {
            !rows
                .iter()
                .any(|r| r.provider_id.as_deref() == Some(c.provider_id.as_str()))
        })
        .collect();
    if rows.is_empty() && orphans.is_empty() {
        println!("nothing to destroy: no live instance carries `{prefix}`");
        return Ok(());
    }
    for r in &rows {
        println!(
            "  {} (Vast.ai {}) job {}",
            r.id,
            r.provider_id.as_deref().unwrap_or("-"),
            r.job_id
        );
    }
    for o in &orphans {
        println!("  Vast.ai {} `{}` (no row: orphan)", o.provider_id, o.label);
    }
    if !a.yes {
        bail!(
            "{} instance(s) would be destroyed; run again with --yes to destroy them",
            rows.len() + orphans.len()
        );
    }
    let mut failed = 0;
    for r in &rows {
        if let Err(e) = engine
            .destroy_instance(r, "destroyed by an operator (destroy-all)")
            .await
        {
            eprintln!("  {}: {e}", r.id);
            failed += 1;
        }
    }
    for o in &orphans {
        if let Err(e) = engine.cloud.destroy(&o.provider_id).await {
            eprintln!("  Vast.ai {}: {e}", o.provider_id);
            failed += 1;
        }
    }
    if failed > 0 {
        bail!("{failed} destroy call(s) failed; run it again, or let the reconciler finish");
    }
    println!("destroyed {} instance(s)", rows.len() + orphans.len());
    Ok(())
}
