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
    /// The repo holding hosts/ (deploy.yml, the default inventory), templates/ and secrets/.
    #[arg(long, global = true, default_value = ".", value_name = "DIR")]
    pub repo: PathBuf,
    /// An inventory file (YAML or INI) or a folder of them, as Ansible's -i, relative to the
    /// current directory (repeatable; default: the repo's hosts/inventory.yml). Its
    /// group_vars/ and host_vars/ are the ones beside it.
    #[arg(short = 'i', long = "inventory", global = true, value_name = "PATH")]
    pub inventories: Vec<PathBuf>,
    /// Hosts in flight at once (Ansible's -f/--forks).
    #[arg(short = 'f', long, global = true, default_value_t = 50, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub forks: u16,
    /// The largest current file deploy reads from a host (a larger one fails that host,
    /// naming it); binary units: 64M, 1G.
    #[arg(long, global = true, default_value = "64M", value_name = "SIZE",
          value_parser = crate::transport::parse_size)]
    pub max_file_size: u64,
    /// The most deploy reads from one host in one read (its current files together).
    #[arg(long, global = true, default_value = "512M", value_name = "SIZE",
          value_parser = crate::transport::parse_size)]
    pub max_host_read: u64,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what apply would change on each host, as unified diffs.
    Plan(PlanArgs),
    /// Write what changed, then run the notified handlers.
    Apply(ApplyArgs),
    /// Render every file and run every check, contacting no host (exit 1 when one fails).
    Check(CheckArgs),
    /// Per host: the deployed commit, files changed behind deploy's back, files not yet
    /// recorded, pending handlers (exit 2 when any host has drift or pending work).
    Status(StatusArgs),
    /// Break a host's apply lock left by a run that is gone (older than 1 h, or its process
    /// is gone from this controller); --force breaks any lock.
    Unlock(UnlockArgs),
    /// Manage the age-encrypted files in secrets/.
    Secrets(SecretsArgs),
    /// Print a shell completion script: `deploy completions bash > /etc/bash_completion.d/deploy`.
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct SecretsArgs {
    #[command(subcommand)]
    pub command: SecretsCommand,
    /// Identity file for decrypting (repeatable; default: $DEPLOY_AGE_IDENTITY,
    /// ~/.config/deploy/identity.txt, ~/.ssh/id_ed25519).
    #[arg(long = "identity", value_name = "FILE", global = true)]
    pub identities: Vec<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Create an identity (~/.config/deploy/identity.txt) if none exists and add its public
    /// key to secrets/recipients.txt.
    Init,
    /// Edit a secret file in $VISUAL/$EDITOR (created if missing), re-encrypted on save.
    Edit {
        /// A group or host name (secrets/NAME.yml.age).
        name: String,
    },
    /// Print a secret file's plaintext.
    View { name: String },
    /// Set KEY in a secret file to the value read from stdin (never from the command line).
    Set { name: String, key: String },
    /// Re-encrypt every secret file to the current secrets/recipients.txt.
    Rekey,
    /// Move Ansible Vault files (or the inline `!vault` values of vars files) into
    /// secrets/NAME.yml.age; NAME comes from where each file sits in group_vars/ or
    /// host_vars/, or --name. Prints no value and writes no plaintext.
    ImportVault {
        /// Vault files, or vars files with `!vault` values.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// The group or host (secrets/NAME.yml.age) for every PATH.
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        #[command(flatten)]
        vault: VaultArgs,
    },
}

#[derive(Debug, Args)]
pub struct Selection {
    /// Only this host (repeatable).
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Only the hosts of this group (repeatable).
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// Only the hosts this Ansible pattern selects (as `ansible-playbook --limit`): `a:b` or
    /// `a,b`, `&group`, `!host`, wildcards, `~regex`, `group[0]`/`group[1:3]`, `@file`.
    /// With --host/--group, the hosts in both.
    #[arg(short = 'l', long = "limit", value_name = "PATTERN")]
    pub limit: Option<String>,
    /// Extra variables, highest precedence: key=value, @file.yml, or a YAML/JSON mapping.
    #[arg(short = 'e', long = "extra-vars", value_name = "VARS")]
    pub extra_vars: Vec<String>,
    /// Add the key of a host not yet in ~/.ssh/known_hosts (OpenSSH's accept-new). A
    /// changed key is refused regardless.
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// Identity file for decrypting secrets/ (repeatable; default: $DEPLOY_AGE_IDENTITY,
    /// ~/.config/deploy/identity.txt, ~/.ssh/id_ed25519).
    #[arg(long = "identity", value_name = "FILE")]
    pub identities: Vec<std::path::PathBuf>,
    /// Render hosts/, templates/ and secrets/ (and the -i inventory, when git tracks it) as
    /// they were at this git revision (e.g. HEAD~1); the working tree and index are not
    /// touched.
    #[arg(long, value_name = "REV")]
    pub rev: Option<String>,
    #[command(flatten)]
    pub escalation: BecomeArgs,
    #[command(flatten)]
    pub vault: VaultArgs,
}

/// Ansible Vault passwords, for vaulted values still in group_vars/ and host_vars/.
#[derive(Debug, Args, Clone, Default)]
pub struct VaultArgs {
    /// The vault password: a file holding it, or an executable that prints it (as Ansible).
    #[arg(
        long = "vault-password-file",
        value_name = "FILE",
        env = "ANSIBLE_VAULT_PASSWORD_FILE"
    )]
    pub vault_password_file: Option<PathBuf>,
    /// Ask once, on the terminal, for the vault password.
    #[arg(short = 'J', long = "ask-vault-pass")]
    pub ask_vault_pass: bool,
}

/// Ansible's become options. A host's own `ansible_become*` variables win over them, as in
/// Ansible; they apply to SSH hosts (local and WinRM hosts cannot become another user).
#[derive(Debug, Args, Clone, Default)]
pub struct BecomeArgs {
    /// Run everything on SSH hosts as another user (sudo by default), like `ansible_become`.
    #[arg(short = 'b', long = "become")]
    pub enabled: bool,
    /// The user to become (default root), like `ansible_become_user`.
    #[arg(long = "become-user", value_name = "USER")]
    pub become_user: Option<String>,
    /// Ask once, on the terminal, for the become password (used where no
    /// `ansible_become_password` is set).
    #[arg(short = 'K', long = "ask-become-pass")]
    pub ask_become_pass: bool,
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
    /// Save the plan (hashes only, no contents) for `deploy apply FILE` (Terraform's
    /// `-out`, which is accepted too).
    #[arg(long, value_name = "FILE")]
    pub out: Option<std::path::PathBuf>,
    /// Also print what the checks left alone and why (e.g. a LiteLLM route to a host that
    /// renders no vLLM config).
    #[arg(long, short = 'v')]
    pub verbose: bool,
    /// Print the selected hosts, one per line, and stop: nothing is rendered and no host is
    /// contacted (as `ansible-playbook --list-hosts`).
    #[arg(long)]
    pub list_hosts: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan saved by `deploy plan --out FILE`: apply exactly it, or refuse when stale.
    #[arg(value_name = "PLAN")]
    pub plan_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub selection: Selection,
    /// Apply without asking (required when stdin is not a terminal); Terraform's
    /// `-auto-approve` is accepted as `--auto-approve`.
    #[arg(long, short = 'y', visible_alias = "auto-approve")]
    pub yes: bool,
    /// Wait up to this long for a host another run has locked, then fail that host
    /// (0: refuse at once).
    #[arg(long, default_value_t = 0, value_name = "SECONDS")]
    pub lock_timeout: u64,
    /// Run every handler due even when a step before it failed on that host: a failing
    /// handler does not stop the later ones, and handlers left pending by an earlier run run
    /// even when this run's file writes failed. Failed handlers stay pending.
    #[arg(long)]
    pub force_handlers: bool,
    /// Rolling restart over every selected host, as Ansible's serial: N hosts, N%, or a
    /// list (`1,50%`: a canary of one, then halves); each batch is written, restarted and
    /// verified before the next starts. Wins over deploy.yml's `serial:`.
    #[arg(long, value_name = "N|N%[,...]", value_parser = parse_serial)]
    pub serial: Option<crate::rollout::Serial>,
    /// Stop when more than this percentage of a batch failed (default: only when the whole
    /// batch failed). Wins over deploy.yml's `max_fail_percentage:`.
    #[arg(long, value_name = "PERCENT", value_parser = parse_percent)]
    pub max_fail_percentage: Option<f64>,
    /// Print what was done as one JSON document on stdout (per host: files written and
    /// removed, handlers and their output, errors, round trips); the plan goes to stderr.
    #[arg(long)]
    pub json: bool,
    /// Also print what the checks left alone and why (e.g. a LiteLLM route to a host that
    /// renders no vLLM config).
    #[arg(long, short = 'v')]
    pub verbose: bool,
}

fn parse_serial(text: &str) -> Result<crate::rollout::Serial, String> {
    crate::rollout::Serial::parse(text)
}

fn parse_percent(text: &str) -> Result<f64, String> {
    let p: f64 = text
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("`{text}` is not a percentage"))?;
    if (0.0..=100.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("`{text}` is not between 0 and 100"))
    }
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub selection: Selection,
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// Break the lock whoever holds it and however young it is.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// Also print what the checks left alone and why (e.g. a LiteLLM route to a host that
    /// renders no vLLM config).
    #[arg(long, short = 'v')]
    pub verbose: bool,
    /// Print the selected hosts, one per line, and stop: nothing is rendered and no host is
    /// contacted (as `ansible --list-hosts`).
    #[arg(long)]
    pub list_hosts: bool,
}
