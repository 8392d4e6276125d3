//! `rigger inbox`: the deliveries rigger set aside (quarantined) because
//! they could not be read or kept failing, and putting them back once the
//! cause is fixed.

use clap::Subcommand;

use super::ops::{DbArgs, ms_to_rfc3339, open, print_table};
use crate::text::clip;

#[derive(Debug, Subcommand)]
pub enum InboxCommand {
    /// Deliveries set aside, oldest first, with why.
    ///
    /// A delivery is set aside when its payload cannot be read, or when
    /// handling it failed 3 times (a panic, or an error that did not pass).
    /// Nothing set aside is retried by itself; every other delivery goes on
    /// being handled.
    List {
        #[command(flatten)]
        db: DbArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Put set-aside deliveries back in the queue, with a fresh count of
    /// attempts: after upgrading rigger or fixing what they tripped on.
    ///
    /// A running `rigger serve` picks them up within a second.
    Retry {
        #[command(flatten)]
        db: DbArgs,
        /// The X-GitHub-Delivery id, as `rigger inbox list` shows it.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        delivery: Option<String>,
        /// Every delivery set aside.
        #[arg(long)]
        all: bool,
    },
}

pub async fn run(cmd: InboxCommand) -> anyhow::Result<()> {
    match cmd {
        InboxCommand::List { db, json } => list(&db, json).await,
        InboxCommand::Retry { db, delivery, all } => {
            let store = open(&db).await?;
            let which = if all { None } else { delivery.as_deref() };
            let n = store.release_quarantined(which).await?;
            match (which, n) {
                (Some(id), 0) => anyhow::bail!(
                    "no delivery {id} is set aside; `rigger inbox list` shows those that are"
                ),
                (Some(id), _) => println!("delivery {id} is back in the queue"),
                (None, n) => println!("{n} deliveries are back in the queue"),
            }
            Ok(())
        }
    }
}

async fn list(db: &DbArgs, json: bool) -> anyhow::Result<()> {
    let store = open(db).await?;
    let set_aside = store.quarantined_deliveries().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&set_aside)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = set_aside
        .iter()
        .map(|d| {
            vec![
                d.delivery_id.clone(),
                match &d.action {
                    Some(a) => format!("{}.{a}", d.event),
                    None => d.event.clone(),
                },
                ms_to_rfc3339(d.received_at),
                d.attempts.to_string(),
                clip(&d.error, 160).into_owned(),
            ]
        })
        .collect();
    print_table(
        &["DELIVERY", "EVENT", "RECEIVED", "ATTEMPTS", "WHY"],
        &rows,
        "no delivery is set aside",
    );
    if !rows.is_empty() {
        println!("`rigger inbox retry ID` (or --all) puts them back once the cause is fixed");
    }
    Ok(())
}
