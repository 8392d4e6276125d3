//! The command line. Each command parses its flags here and calls the library.

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
pub enum Command {}

/// Run the command line and turn the outcome into the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {}
}
