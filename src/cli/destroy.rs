//! `rigger instances destroy ID` and `rigger instances destroy-all`: an
//! operator's way to stop spending now. Only machines carrying this
//! controller's label are ever touched (I1).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;

use crate::app::{App, RiggerEngine};
use crate::engine::names;
use crate::engine::ports::{Cloud, SystemClock};
use crate::engine::state::InstanceState;
use crate::settings;
use crate::store::{CostEntry, InstanceRow, Store};

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

/// Which database a command needs.
#[derive(Clone, Copy, PartialEq)]
enum Database {
    /// The one `rigger serve` wrote: without it, the command knows nothing.
    Existing,
    /// Any: the command also works from Vast.ai's labels alone (a lost
    /// database is when an operator needs it most).
    AnyOrNew,
}

async fn app(config: Option<&std::path::Path>, database: Database) -> anyhow::Result<App> {
    let mut s = settings::load(config, &|k| std::env::var(k).ok())?;
    // These commands serve nothing: listen anywhere free.
    s.listen = "127.0.0.1:0".into();
    match (database, Store::must_exist(&s.database_url)) {
        (_, Ok(())) => {}
        (Database::Existing, Err(e)) => {
            return Err(e).context(
                "pass --config (or RIGGER_DATABASE_URL) for the database `rigger serve` uses",
            );
        }
        (Database::AnyOrNew, Err(e)) => {
            eprintln!("{e}: looking for machines by their Vast.ai label only");
        }
    }
    App::build(s, Arc::new(SystemClock)).await
}

pub async fn destroy(a: DestroyArgs) -> anyhow::Result<()> {
    let app = app(a.config.as_deref(), Database::Existing).await?;
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
    match destroyed(engine, row, "destroyed by an operator").await? {
        Ok(cost) => {
            println!(
                "destroyed {} (Vast.ai {}){}",
                row.id,
                row.provider_id.as_deref().unwrap_or("-"),
                cost.map(|c| format!(": {} s, ${:.4}", c.seconds, c.cost_usd()))
                    .unwrap_or_default()
            );
            Ok(())
        }
        Err(why) => bail!("{why}"),
    }
}

/// Destroy one row's machine and check that it is gone: `Ok(cost)` when the
/// row is now terminal, `Err(what happened and what to do)` when it is not.
/// The engine answers `Ok(None)` both for a destroy Vast.ai refused (the row
/// stays `destroying`, for the reconciler to retry) and for one that
/// closed no account, so only the row itself tells them apart.
async fn destroyed(
    engine: &RiggerEngine,
    row: &InstanceRow,
    reason: &str,
) -> anyhow::Result<Result<Option<CostEntry>, String>> {
    let since = chrono::Utc::now().timestamp_millis();
    let what = format!(
        "{} (Vast.ai {})",
        row.id,
        row.provider_id.as_deref().unwrap_or("-")
    );
    let again = format!(
        "run `rigger instances destroy {}` again (a running `rigger serve` also retries it)",
        row.id
    );
    let cost = match engine.destroy_instance(row, reason).await {
        Ok(cost) => cost,
        Err(e) => return Ok(Err(format!("{what} was not destroyed: {e}; {again}"))),
    };
    let after = engine
        .store
        .instance(&row.id)
        .await
        .with_context(|| format!("reading back instance {}", row.id))?;
    match after {
        Some(now) if now.state.is_terminal() => Ok(Ok(cost)),
        Some(now) => {
            // The engine notes why it did not destroy it (`destroy_retry`,
            // and whatever other `destroy_…` note it makes; not `destroyed`).
            let note = engine
                .store
                .job_events(row.job_id)
                .await?
                .into_iter()
                .rev()
                .find(|(at, kind, _)| *at >= since && kind.starts_with("destroy_"))
                .map(|(_, _, message)| format!(" ({message})"))
                .unwrap_or_default();
            Ok(Err(format!(
                "{what} is not destroyed: it is still `{}`{note}; {again}",
                now.state
            )))
        }
        None => Ok(Err(format!(
            "{what} is no longer in the database, so rigger cannot tell whether its machine \
             is gone; check `rigger instances destroy-all` for machines left with this \
             controller's label"
        ))),
    }
}

pub async fn destroy_all(a: DestroyAllArgs) -> anyhow::Result<()> {
    let app = app(a.config.as_deref(), Database::AnyOrNew).await?;
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
        if let Err(why) = destroyed(engine, r, "destroyed by an operator (destroy-all)").await? {
            eprintln!("  {why}");
            failed += 1;
        }
    }
    for o in &orphans {
        if let Err(e) = engine.cloud.destroy(&o.provider_id).await {
            eprintln!(
                "  Vast.ai {} (orphan) was not destroyed: {e}",
                o.provider_id
            );
            failed += 1;
        }
    }
    let all = rows.len() + orphans.len();
    if failed > 0 {
        bail!(
            "{failed} of {all} instance(s) are not destroyed and may still cost money; \
             run `rigger instances destroy-all --yes` again (a running `rigger serve` \
             also retries them)"
        );
    }
    println!("destroyed {all} instance(s)");
    Ok(())
}
