//! Command-line types (clap) only; `commands/` turns them into operations.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "deploy",
    version,
    about = "Render templates per host, show the diff, apply only what changed"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// The repo holding hosts/, templates/ and secrets/.
    #[arg(long, global = true, default_value = ".", value_name = "DIR")]
    pub inventory: PathBuf,
    /// Hosts in flight at once.
    #[arg(long, global = true, default_value_t = 50, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub forks: u16,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what apply would change on each host, as unified diffs.
    Plan(PlanArgs),
    /// Write what changed, then run the notified handlers.
    Apply(ApplyArgs),
    /// Render every file and run every check, contacting no host (exit 1 when one fails).
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct Selection {
    /// Only this host (repeatable).
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Only the hosts of this group (repeatable).
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// Extra variables, highest precedence: key=value, @file.yml, or a YAML/JSON mapping.
    #[arg(short = 'e', long = "extra-vars", value_name = "VARS")]
    pub extra_vars: Vec<String>,
    /// Add the key of a host not yet in ~/.ssh/known_hosts (OpenSSH's accept-new). A
    /// changed key is refused regardless.
    #[arg(long)]
    pub accept_new_host_keys: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// Exit 2 when there are changes (0: none, 1: error), as Terraform does.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Print the plan as one JSON document.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// Apply without asking (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub selection: Selection,
}
