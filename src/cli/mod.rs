//! The command line. Each command parses its flags here and calls the library.

mod demo;
mod destroy;
mod inbox;
pub(crate) mod ops;
mod plan;
mod serve;
mod sim;
mod validate;
mod webhook;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Ephemeral Vast.ai GPU runners for GitHub Actions, driven by `.cirun.yml`.
#[derive(Debug, Parser)]
#[command(name = "rigger", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Watch rigger work in a simulated world: no account, no set-up.
    ///
    /// Starts a simulated GitHub and Vast.ai and rigger itself, queues GPU
    /// jobs for a repository holding examples/.cirun.yml (one cancelled while
    /// queued, one that finds no offer), shows each job from queued to its
    /// machine destroyed, and ends with a table: GPUs, minutes, cost, and the
    /// machines leaked (0).
    Demo(demo::DemoArgs),
    /// Run rigger: receive GitHub's webhooks, rent and destroy machines,
    /// reconcile.
    ///
    /// Settings come from `--config rigger.toml` and RIGGER_* environment
    /// variables (which win); with the environment alone no file is needed.
    /// Every problem with them is listed at start-up with what to fix.
    Serve(serve::ServeArgs),
    /// Check `.cirun.yml` files and show what each Vast.ai runner would rent.
    ///
    /// Reports every problem at once, each at file:line:column with a hint,
    /// and lists each vast_ai runner's fallback candidates in the order they
    /// are tried. Exit status: 0 no error (warnings allowed), 1 an error,
    /// 2 a file could not be read.
    Validate(validate::ValidateArgs),
    /// Print the JSON Schema of `.cirun.yml` (or `.access.yml`) for editors.
    ///
    /// Generated from the same key tables the parser checks against. Point
    /// your editor's YAML extension at the output, e.g.
    /// `rigger schema > cirun.schema.json`.
    Schema {
        /// Which file's schema.
        #[arg(long, value_enum, default_value = "cirun")]
        file: crate::config::schema::SchemaFile,
    },
    /// Jobs rigger knows and what it did about them.
    #[command(subcommand)]
    Jobs(ops::JobsCommand),
    /// Machines rigger rented.
    #[command(subcommand)]
    Instances(ops::InstancesCommand),
    /// Money spent, by repository and runner definition.
    Costs(ops::CostsArgs),
    /// Deliveries set aside (quarantined) after failing, and retrying them.
    #[command(subcommand)]
    Inbox(inbox::InboxCommand),
    /// Show what each Vast.ai runner would rent now, and what it would cost.
    ///
    /// For every fallback candidate: the query sent to Vast.ai and the best
    /// offers by estimated total cost (a $0.90/h GPU that finishes in 2 h
    /// beats a $0.30/h one that takes 8 h). When nothing matches, it says
    /// which filter emptied the market and what would match. Works against
    /// the real API (`VAST_API_KEY`) or `rigger sim vast` (`--vast-url`).
    Plan(plan::PlanArgs),
    /// Run a simulated Vast.ai or GitHub standalone.
    #[command(subcommand)]
    Sim(sim::SimCommand),
    /// Send a signed delivery to a running rigger (samples in `webhook/`).
    #[command(subcommand)]
    Webhook(webhook::WebhookCommand),
}

/// Run the command line and turn the outcome into the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(args) => run_async(demo::run(args)),
        Command::Serve(args) => run_async(serve::run(args)),
        Command::Validate(args) => ExitCode::from(validate::run(&args)),
        Command::Schema { file } => {
            let schema = crate::config::schema::generate(file);
            println!(
                "{}",
                serde_json::to_string_pretty(&schema).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Command::Jobs(cmd) => run_async(ops::jobs(cmd)),
        Command::Instances(cmd) => run_async(ops::instances(cmd)),
        Command::Costs(args) => run_async(ops::costs(args)),
        Command::Inbox(cmd) => run_async(inbox::run(cmd)),
        Command::Plan(args) => run_async(plan::run(args)),
        Command::Sim(cmd) => run_async(sim::run(cmd)),
        Command::Webhook(cmd) => run_async(webhook::run(cmd)),
    }
}

/// Run an async command on a runtime of its own; an error is printed with
/// its causes and exits 1.
fn run_async(f: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(f) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
