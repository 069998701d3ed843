//! The operations the commands call, each the pipeline's stages chained:
//! inventory -> render -> read remote -> diff/plan (-> apply -> handlers).
//! Callable from tests without the command line.

use std::path::PathBuf;
use std::time::Duration;

use crate::apply::{self, HostOutcome};
use crate::checks::{self, Report};
use crate::cli::{Global, Selection};
use crate::desired::{self, HostDesired};
use crate::error::Error;
use crate::inventory::{self, Inventory, Vars};
use crate::manifest::Manifest;
use crate::output;
use crate::plan::Plan;
use crate::remote::{self, Connected};
use crate::render::Renderer;
use crate::transport::{Connection, SshOptions};

/// What to run on: the repo, the selected hosts, and connection settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// The repo holding hosts/ and templates/.
    pub repo: PathBuf,
    pub hosts: Vec<String>,
    pub groups: Vec<String>,
    pub extra_vars: Vars,
    pub forks: usize,
    pub ssh: SshOptions,
}

impl Options {
    pub fn new(global: &Global, sel: &Selection) -> Result<Options, Error> {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let mut known_hosts_files = Vec::new();
        if let Some(home) = &home {
            known_hosts_files.push(home.join(".ssh/known_hosts"));
        }
        known_hosts_files.push(PathBuf::from("/etc/ssh/ssh_known_hosts"));
        Ok(Options {
            repo: global.inventory.clone(),
            hosts: sel.hosts.clone(),
            groups: sel.groups.clone(),
            extra_vars: inventory::parse_extra_vars(&sel.extra_vars)?,
            forks: usize::from(global.forks),
            ssh: SshOptions {
                known_hosts_files,
                accept_new_host_keys: sel.accept_new_host_keys,
                home,
                connect_timeout: Duration::from_secs(10),
            },
        })
    }
}

/// A computed plan with the open connections it was computed over.
pub struct Prepared {
    pub desired: Vec<HostDesired>,
    pub connected: Vec<Connected>,
    pub plan: Plan,
}

/// Loads and renders everything for the selected hosts and runs the checks (no host
/// contacted until every template rendered and every check passed), then reads every host
/// and builds the plan.
pub async fn prepare(opts: &Options) -> Result<Prepared, Error> {
    let checked = check(opts)?;
    if !checked.report.passed() {
        return Err(Error::Checks {
            count: output::count(checked.report.failures.len(), "check"),
            report: output::checks_text(&checked.report),
        });
    }
    let desired = checked.desired;
    let progress = output::progress(desired.len(), "reading hosts");
    let connected = remote::read_all(&desired, &opts.ssh, opts.forks, &|| progress.inc(1)).await;
    progress.finish_and_clear();
    let current: Vec<Result<_, String>> = connected.iter().map(|c| c.current.clone()).collect();
    let plan = Plan::build(&desired, &current);
    Ok(Prepared {
        desired,
        connected,
        plan,
    })
}

/// The rendered desired state of the selected hosts and what the checks found.
pub struct Checked {
    pub desired: Vec<HostDesired>,
    pub report: Report,
}

/// Inventory -> rendered desired state of the selected hosts -> checks; touches no host.
/// The other hosts of the inventory are rendered too, for what routes point at; one of
/// them failing to render only leaves it out of the checks.
pub fn check(opts: &Options) -> Result<Checked, Error> {
    let hosts_dir = opts.repo.join("hosts");
    let inventory = Inventory::load(&hosts_dir, &opts.extra_vars)?;
    let manifest = Manifest::load(&hosts_dir)?;
    let selected = inventory.select(&opts.hosts, &opts.groups)?;
    let renderer = Renderer::new(&opts.repo.join("templates"));
    let desired = render_selected(opts, &inventory, &manifest, &renderer, &selected)?;
    let others: Vec<HostDesired> = inventory
        .hosts
        .values()
        .filter(|h| !selected.iter().any(|s| s.name == h.name))
        .filter_map(|h| desired::render_hosts(&inventory, &manifest, &renderer, &[h]).ok())
        .flatten()
        .collect();
    let report = checks::run(&desired, &others, &manifest.checks, &renderer);
    Ok(Checked { desired, report })
}

/// Inventory -> rendered desired state of the selected hosts; touches no host.
pub fn render(opts: &Options) -> Result<Vec<HostDesired>, Error> {
    let hosts_dir = opts.repo.join("hosts");
    let inventory = Inventory::load(&hosts_dir, &opts.extra_vars)?;
    let manifest = Manifest::load(&hosts_dir)?;
    let selected = inventory.select(&opts.hosts, &opts.groups)?;
    let renderer = Renderer::new(&opts.repo.join("templates"));
    render_selected(opts, &inventory, &manifest, &renderer, &selected)
}

fn render_selected(
    opts: &Options,
    inventory: &Inventory,
    manifest: &Manifest,
    renderer: &Renderer,
    selected: &[&crate::inventory::Host],
) -> Result<Vec<HostDesired>, Error> {
    let mut desired = desired::render_hosts(inventory, manifest, renderer, selected)?;
    for host in &mut desired {
        // A relative deploy_root is relative to the repo, not to wherever deploy runs.
        if let Connection::Local { root: Some(root) } = &mut host.connection
            && root.is_relative()
        {
            *root = opts.repo.join(&*root);
        }
    }
    Ok(desired)
}

/// Writes what `prepared.plan` lists and runs the handlers.
pub async fn apply(opts: &Options, prepared: &Prepared) -> Vec<HostOutcome> {
    let progress = output::progress(prepared.plan.hosts.len(), "applying");
    let outcomes = apply::apply(&prepared.plan, &prepared.connected, opts.forks, &|| {
        progress.inc(1)
    })
    .await;
    progress.finish_and_clear();
    outcomes
}

/// Closes every open connection.
pub async fn close(connected: &[Connected]) {
    for c in connected {
        if let Some(t) = &c.transport {
            t.close().await;
        }
    }
}
