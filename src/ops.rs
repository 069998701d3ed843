//! The operations the commands call, each the pipeline's stages chained:
//! inventory -> facts (only hosts that use them) -> render -> read remote -> diff/plan
//! (-> apply -> handlers).
//! Callable from tests without the command line.

use std::path::PathBuf;
use std::time::Duration;

use crate::apply::{self, HostOutcome};
use crate::checks::{self, Report};
use crate::cli::{BecomeArgs, Global, Selection, VaultArgs};
use crate::desired::{self, HostDesired, SecretRendering};
use crate::error::Error;
use crate::facts;
use crate::files::Files;
use crate::inventory::{self, Host, Inventory, Sources, Vars};
use crate::manifest::Manifest;
use crate::mask::Masker;
use crate::mask::Secret;
use crate::output;
use crate::plan::Plan;
use crate::remote::{self, Connected};
use crate::render::{Lookups, Renderer};
use crate::secrets;
use crate::secrets::vault::{self, VaultPassword};
use crate::source::{Commit, Source};
use crate::transport::escalation::Escalation;
use crate::transport::{Connection, SshOptions};

/// What to run on: the repo, the selected hosts, and connection settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// The repo holding hosts/ and templates/.
    pub repo: PathBuf,
    /// `-i`: inventory files or folders (empty: the repo's hosts/).
    pub inventories: Vec<PathBuf>,
    pub hosts: Vec<String>,
    pub groups: Vec<String>,
    /// `-l/--limit`: an Ansible host pattern the selection is narrowed to.
    pub limit: Option<String>,
    pub extra_vars: Vars,
    pub forks: usize,
    pub ssh: SshOptions,
    /// `--identity` files for decrypting secrets (else the default places).
    pub identities: Vec<PathBuf>,
    /// `--rev`: render the repo's inputs as they were at this git revision.
    pub rev: Option<String>,
    /// `-b`, `--become-user`, `-K`: become settings for the SSH hosts whose variables leave
    /// them unset.
    pub escalation: Escalation,
    /// `--vault-password-file`, `--ask-vault-pass`: opens vaulted values of group_vars/ and
    /// host_vars/.
    pub vault_password: Option<VaultPassword>,
    /// `--verbose`: print the checks' notes (what they left alone) on stderr.
    pub verbose: bool,
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
            repo: global.repo.clone(),
            inventories: global.inventories.clone(),
            hosts: sel.hosts.clone(),
            groups: sel.groups.clone(),
            limit: sel.limit.clone(),
            extra_vars: inventory::parse_extra_vars(&sel.extra_vars)?,
            forks: usize::from(global.forks),
            identities: sel.identities.clone(),
            rev: sel.rev.clone(),
            escalation: become_defaults(&sel.escalation)?,
            vault_password: vault_password(&sel.vault)?,
            verbose: false,
            ssh: SshOptions {
                known_hosts_files,
                accept_new_host_keys: sel.accept_new_host_keys,
                home,
                connect_timeout: Duration::from_secs(10),
                known_hosts: Default::default(),
                read_limits: crate::transport::ReadLimits {
                    file: global.max_file_size,
                    host: global.max_host_read,
                },
            },
        })
    }
}

/// The command line's become options; `-K` asks for the password here, once.
fn become_defaults(args: &BecomeArgs) -> Result<Escalation, Error> {
    let password = if args.ask_become_pass {
        Some(ask_on_terminal(
            "-K/--ask-become-pass",
            "BECOME password: ",
            "set ansible_become_password in secrets/<host>.yml.age instead",
        )?)
    } else {
        None
    };
    Ok(Escalation {
        enabled: args.enabled.then_some(true),
        method: None,
        user: args.become_user.clone(),
        password,
        flags: None,
    })
}

/// The vault password from `--vault-password-file` (or `$ANSIBLE_VAULT_PASSWORD_FILE`), or
/// asked for once with `--ask-vault-pass`.
pub fn vault_password(args: &VaultArgs) -> Result<Option<VaultPassword>, Error> {
    if let Some(file) = &args.vault_password_file {
        return VaultPassword::from_file(file).map(Some);
    }
    if !args.ask_vault_pass {
        return Ok(None);
    }
    let pw = ask_on_terminal(
        "--ask-vault-pass",
        "Vault password: ",
        "pass --vault-password-file FILE instead",
    )?;
    Ok(Some(VaultPassword::new(pw.into_bytes())))
}

/// Asks once on the terminal, without echo; `flag` (the option that asked) and `hint` make
/// the error when there is no terminal.
fn ask_on_terminal(flag: &str, prompt: &str, hint: &str) -> Result<String, Error> {
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err(Error::usage(
            format!("{flag} needs a terminal to ask on"),
            Some(hint.into()),
        ));
    }
    let what = prompt.trim_end_matches(": ").to_lowercase();
    rpassword::prompt_password(prompt)
        .map_err(|e| Error::usage(format!("cannot read the {what}: {e}"), None))
}

/// A computed plan with the open connections it was computed over.
pub struct Prepared {
    pub desired: Vec<HostDesired>,
    pub connected: Vec<Connected>,
    pub plan: Plan,
    /// Masks the run's secret values in anything printed.
    pub masker: Masker,
}

/// The rendered desired state and the masker for the secrets it used.
pub struct Rendered {
    pub desired: Vec<HostDesired>,
    pub masker: Masker,
    /// The commit the inputs came from (`--rev`); `None` for the working tree.
    pub commit: Option<Commit>,
}

/// Loads everything for the selected hosts, asks the hosts whose templates use facts for
/// them (one read-only command each), renders every template (no host is changed before all
/// rendered and checked), then reads every host, over the connection its facts came through
/// when there was one, and builds the plan.
pub async fn prepare(opts: &Options) -> Result<Prepared, Error> {
    let (loaded, mut facts) = load_and_gather(opts).await?;
    let Checked {
        rendered: Rendered {
            desired,
            masker,
            commit,
        },
        report,
    } = render_loaded(opts, loaded, &mut facts)?;
    if opts.verbose {
        output::eprint_check_notes(&report, &masker);
    }
    if !report.passed() {
        close_all(facts.open.drain().map(|(_, t)| t)).await;
        return Err(masked_error(
            Error::Checks {
                count: output::count(report.failures.len(), "check"),
                report: output::checks_text(&report),
            },
            &masker,
        ));
    }
    let slots: Vec<remote::Slot> = desired
        .iter()
        .map(|d| {
            if let Some(why) = facts.failed.get(&d.host) {
                remote::Slot::Failed(why.clone())
            } else if let Some(t) = facts.open.remove(&d.host) {
                remote::Slot::Open(t)
            } else {
                remote::Slot::New
            }
        })
        .collect();
    let progress = output::progress(desired.len(), "reading hosts");
    let connected =
        remote::read_all_reusing(&desired, slots, &opts.ssh, opts.forks, &|| progress.inc(1)).await;
    progress.finish_and_clear();
    let reads = connected.iter().map(|c| (&c.current, &c.state));
    let mut plan = Plan::build(&desired, reads, &masker);
    plan.commit = commit;
    for (host, conn) in plan.hosts.iter_mut().zip(&connected) {
        host.round_trips = conn.transport.as_deref().map_or(0, |t| t.round_trips());
    }
    Ok(Prepared {
        desired,
        connected,
        plan,
        masker,
    })
}

async fn close_all(open: impl Iterator<Item = Box<dyn crate::transport::Transport>>) {
    for t in open {
        t.close().await;
    }
}

/// Loads the inputs and gathers the facts of the selected hosts that need them.
async fn load_and_gather(opts: &Options) -> Result<(Loaded, HostFacts), Error> {
    let loaded = load(opts)?;
    let mut facts = HostFacts::decide(&loaded);
    let mut asks = Vec::new();
    for name in &loaded.names {
        if facts.decisions.get(name) != Some(&facts::Decision::Gather) {
            continue;
        }
        let Some(host) = loaded.inventory.hosts.get(name) else {
            continue;
        };
        // A connection the variables do not describe is reported by rendering.
        let Ok(mut connection) = Connection::from_vars(&host.name, &host.vars) else {
            continue;
        };
        connection.fill_become_defaults(&opts.escalation);
        relative_root(opts, &mut connection);
        asks.push((name.clone(), connection));
    }
    if asks.is_empty() {
        return Ok((loaded, facts));
    }
    let progress = output::progress(asks.len(), "gathering facts");
    let answers = remote::gather_facts(&asks, &opts.ssh, opts.forks, &|| progress.inc(1)).await;
    progress.finish_and_clear();
    for (name, answer) in answers {
        match answer {
            Ok((f, transport)) => {
                facts.gathered.insert(name.clone(), f);
                facts.open.insert(name, transport);
            }
            Err(why) => {
                facts.failed.insert(name, why);
            }
        }
    }
    Ok((loaded, facts))
}

/// The facts side of a run: what was decided for each selected host, what came back, the
/// connections they came through (kept for the read), and the hosts that could not answer.
#[derive(Default)]
struct HostFacts {
    decisions: std::collections::HashMap<String, facts::Decision>,
    refs: std::collections::HashMap<String, facts::References>,
    gathered: std::collections::HashMap<String, facts::Facts>,
    open: std::collections::HashMap<String, Box<dyn crate::transport::Transport>>,
    failed: std::collections::BTreeMap<String, String>,
    /// This command does not gather facts (`deploy check`).
    offline: bool,
}

impl HostFacts {
    fn decide(loaded: &Loaded) -> HostFacts {
        let mut templates = facts::TemplateScans::new(&loaded.source.dir.join("templates"));
        let mut out = HostFacts::default();
        for name in &loaded.names {
            let Some(host) = loaded.inventory.hosts.get(name) else {
                continue;
            };
            let (decision, refs) = facts::decide(&loaded.manifest, host, &mut templates);
            out.decisions.insert(name.clone(), decision);
            out.refs.insert(name.clone(), refs);
        }
        // `hostvars[other].ansible_...`: the other selected hosts' facts are needed too.
        if out.refs.values().any(|r| r.via_hostvars) {
            for d in out.decisions.values_mut() {
                if *d == facts::Decision::NotNeeded {
                    *d = facts::Decision::Gather;
                }
            }
        }
        out
    }

    /// Why a host that refers to facts has none, for its render error.
    fn why_none(&self, host: &str) -> Option<String> {
        let refs = self.refs.get(host)?;
        if !refs.any || self.gathered.contains_key(host) {
            return None;
        }
        let first = refs.first.as_deref().unwrap_or("a template");
        Some(match self.decisions.get(host) {
            Some(facts::Decision::Off { group }) => format!(
                "facts are off for this host (gather_facts: false in group `{group}` of deploy.yml), and {first} uses them"
            ),
            _ if self.offline => format!(
                "{first} uses facts, which this command does not gather (it contacts no host); deploy plan does"
            ),
            _ => format!("{first} uses facts, and none were gathered for this host"),
        })
    }
}

/// A relative deploy_root is relative to the repo, not to wherever deploy runs.
fn relative_root(opts: &Options, connection: &mut Connection) {
    if let Connection::Local { root: Some(root) } = connection
        && root.is_relative()
    {
        *root = opts.repo.join(&*root);
    }
}

/// The rendered desired state of the selected hosts and what the checks found.
pub struct Checked {
    pub rendered: Rendered,
    pub report: Report,
}

/// Inventory (+ the secrets the selected hosts use) -> rendered desired state of the selected
/// hosts -> checks; touches no host (so gathers no facts: a template using them is an error
/// saying so). The other hosts of the inventory are rendered too, for what routes point at;
/// one of them failing to render (e.g. it needs a secret this run did not open) only leaves
/// it out of the checks.
pub fn check(opts: &Options) -> Result<Checked, Error> {
    let loaded = load(opts)?;
    let mut facts = HostFacts::decide(&loaded);
    facts.offline = true;
    render_loaded(opts, loaded, &mut facts)
}

/// What rendering starts from: the inputs, the inventory with the selected hosts' secrets
/// merged, the manifest and the selected hosts' names.
struct Loaded {
    source: Source,
    inventory: Inventory,
    manifest: Manifest,
    names: Vec<String>,
}

fn load(opts: &Options) -> Result<Loaded, Error> {
    let source = open_source(opts)?;
    let (sources, manifest_dir) = inventory_sources(&source)?;
    let mut inventory = Inventory::load_sources(&sources, &opts.extra_vars)?;
    let selected = select(opts, &inventory)?;
    let names: Vec<String> = selected.iter().map(|h| h.name.clone()).collect();
    let manifest = Manifest::load(&manifest_dir)?;
    let mut secrets =
        secrets::decrypt_for(&source.dir.join("secrets"), &selected, &opts.identities)?;
    if !inventory.vaulted.is_empty() {
        // Vaulted values still in group_vars/ and host_vars/ are secrets of their group or
        // host too (a key in secrets/ wins over the same key vaulted).
        let scopes: std::collections::BTreeSet<String> = selected
            .iter()
            .flat_map(|h| h.groups.iter().cloned().chain([h.name.clone()]))
            .collect();
        let password = opts.vault_password.as_ref().map(VaultPassword::bytes);
        for (scope, vars) in vault::open(&inventory.vaulted, &scopes, password)? {
            let layer = secrets.entry(scope).or_default();
            for (k, v) in vars {
                layer.entry(k).or_insert(v);
            }
        }
    }
    if !secrets.is_empty() {
        inventory.merge_secrets(&secrets);
    }
    Ok(Loaded {
        source,
        inventory,
        manifest,
        names,
    })
}

/// The loaded inputs (+ the facts gathered) -> rendered desired state -> checks. A host whose
/// facts could not be gathered is not rendered: it stands in the result with no files, and
/// fails when it is read.
fn render_loaded(opts: &Options, loaded: Loaded, facts: &mut HostFacts) -> Result<Checked, Error> {
    let Loaded {
        source,
        mut inventory,
        manifest,
        names,
    } = loaded;
    for (name, f) in &facts.gathered {
        if let Some(host) = inventory.hosts.get_mut(name) {
            // Facts override the inventory's variables; extra vars override facts (Ansible's
            // precedence).
            for (k, v) in facts::as_vars(f) {
                if !opts.extra_vars.contains_key(&k) {
                    host.vars.insert(k, v);
                }
            }
        }
    }
    let selected: Vec<&Host> = names
        .iter()
        .filter_map(|n| inventory.hosts.get(n))
        .filter(|h| !facts.failed.contains_key(&h.name))
        .collect();
    let secret_rendering = SecretRendering::new(&inventory);
    let renderer = Renderer::with_lookups(
        &source.dir.join("templates"),
        Lookups::new(&source.dir)
            .allow_commands(manifest.settings.allow_command_lookups)
            .deny(&secrets::identity_files(&opts.identities)),
    );
    let files = Files::new(&source.dir.join(crate::files::FILES_DIR));
    let mut rendered = render_selected(
        opts,
        &inventory,
        &manifest,
        (&renderer, &files),
        &selected,
        &secret_rendering,
    )
    .map_err(|e| match e {
        Error::Render { host, message } => match facts.why_none(&host) {
            Some(why) => Error::Render {
                message: format!("{message}\nnote: {why}"),
                host,
            },
            None => Error::Render { host, message },
        },
        e => e,
    })?;
    rendered.commit = source.commit.clone();
    for d in &mut rendered.desired {
        if facts.gathered.contains_key(&d.host)
            && let Some(refs) = facts.refs.get(&d.host)
        {
            d.notes = facts::notes(refs);
        }
    }
    if !facts.failed.is_empty() {
        // In the selection's order, the hosts whose facts failed in their places.
        let mut by_name: std::collections::HashMap<String, HostDesired> = rendered
            .desired
            .drain(..)
            .map(|d| (d.host.clone(), d))
            .collect();
        for name in &names {
            if let Some(d) = by_name.remove(name) {
                rendered.desired.push(d);
            } else if facts.failed.contains_key(name)
                && let Some(host) = inventory.hosts.get(name)
                && let Ok(mut connection) = Connection::from_vars(&host.name, &host.vars)
            {
                connection.fill_become_defaults(&opts.escalation);
                relative_root(opts, &mut connection);
                rendered.desired.push(HostDesired {
                    host: name.clone(),
                    state_path: crate::state::state_path(&connection, None),
                    connection,
                    files: Vec::new(),
                    removals: Vec::new(),
                    handlers: Vec::new(),
                    vars: minijinja::Value::UNDEFINED,
                    verify: Vec::new(),
                    rollout: None,
                    notes: Vec::new(),
                });
            }
        }
    }
    let chosen: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
    let others: Vec<&Host> = inventory
        .hosts
        .values()
        .filter(|h| !chosen.contains(h.name.as_str()))
        .collect();
    // All in one call, so the inventory's hostvars are built once, not once per other host.
    let others: Vec<HostDesired> = desired::render_each(
        &inventory,
        &manifest,
        &renderer,
        &files,
        &others,
        &secret_rendering,
    )
    .map(|each| each.into_iter().filter_map(Result::ok).collect())
    .unwrap_or_default();
    let report = checks::run(&rendered.desired, &others, &manifest.checks, &renderer);
    Ok(Checked { rendered, report })
}

/// The selected hosts' names (`--host`, `--group`, `--limit`), in inventory order: what
/// `--list-hosts` prints. Renders nothing, opens no secret, contacts no host.
pub fn list_hosts(opts: &Options) -> Result<Vec<String>, Error> {
    let source = open_source(opts)?;
    let (sources, _) = inventory_sources(&source)?;
    let inventory = Inventory::load_sources(&sources, &opts.extra_vars)?;
    Ok(select(opts, &inventory)?
        .iter()
        .map(|h| h.name.clone())
        .collect())
}

/// The working tree, or the `--rev` snapshot.
fn open_source(opts: &Options) -> Result<Source, Error> {
    match &opts.rev {
        Some(rev) => Source::at_revision(&opts.repo, rev, &opts.inventories),
        None => Ok(Source::working_tree(&opts.repo, &opts.inventories)),
    }
}

/// `-i` (or the repo's hosts/) and the folder of the deploy.yml that goes with it.
fn inventory_sources(source: &Source) -> Result<(Sources, PathBuf), Error> {
    let hosts_dir = source.dir.join("hosts");
    let sources = if source.inventories.is_empty() {
        Sources::repo_hosts(&hosts_dir)
    } else {
        Sources::paths(&source.inventories)?
    };
    let manifest_dir = sources.manifest_dir(&hosts_dir)?;
    Ok((sources, manifest_dir))
}

/// `--host`, `--group` and `--limit`; a limit's names that match nothing are warned about,
/// as Ansible does.
fn select<'a>(opts: &Options, inventory: &'a Inventory) -> Result<Vec<&'a Host>, Error> {
    let (selected, unmatched) =
        inventory.select_limited(&opts.hosts, &opts.groups, opts.limit.as_deref())?;
    for p in unmatched {
        eprintln!("warning: --limit: no group or host matches `{p}`; ignoring it");
    }
    Ok(selected)
}

/// Inventory (+ the secrets the selected hosts use) -> rendered desired state of the selected
/// hosts; touches no host.
pub fn render(opts: &Options) -> Result<Rendered, Error> {
    check(opts).map(|c| c.rendered)
}

/// [`render`] with the facts of the hosts that need them gathered first (their connections
/// closed after).
pub async fn render_gathered(opts: &Options) -> Result<Rendered, Error> {
    let (loaded, mut facts) = load_and_gather(opts).await?;
    let checked = render_loaded(opts, loaded, &mut facts);
    close_all(facts.open.drain().map(|(_, t)| t)).await;
    if let Some((host, why)) = facts.failed.iter().next() {
        return Err(Error::Render {
            host: host.clone(),
            message: why.clone(),
        });
    }
    checked.map(|c| c.rendered)
}

fn render_selected(
    opts: &Options,
    inventory: &Inventory,
    manifest: &Manifest,
    (renderer, files): (&Renderer, &Files),
    selected: &[&Host],
    secret_rendering: &SecretRendering,
) -> Result<Rendered, Error> {
    let masker = secret_rendering.masker.clone();
    let mut desired = desired::render_hosts(
        inventory,
        manifest,
        renderer,
        files,
        selected,
        secret_rendering,
    )
    .map_err(|e| masked_error(e, &masker))?;
    // A become password is secret wherever it came from (-K, plain group_vars, secrets/).
    let mut passwords = Vec::new();
    for host in &mut desired {
        host.connection.fill_become_defaults(&opts.escalation);
        if let Some(pw) = host.connection.become_password() {
            passwords.push(Secret {
                key: "ansible_become_password".into(),
                value: pw.to_string(),
            });
        }
    }
    let masker = if passwords.is_empty() {
        masker
    } else {
        masker.with(&passwords)
    };
    for host in &mut desired {
        relative_root(opts, &mut host.connection);
    }
    Ok(Rendered {
        desired,
        masker,
        commit: None,
    })
}

/// An error whose text may quote a value (e.g. a filter that could not convert it), with
/// every secret masked.
fn masked_error(e: Error, masker: &Masker) -> Error {
    if masker.is_empty() {
        return e;
    }
    let text = e.to_string();
    let masked = masker.mask(&text);
    if masked == text {
        e
    } else {
        Error::usage(masked, None)
    }
}

/// Writes what `prepared.plan` lists and runs the handlers (and those left pending), each
/// host under its lock, recording the deploy on the host.
pub async fn apply(
    opts: &Options,
    prepared: &Prepared,
    settings: &apply::Settings,
) -> Vec<HostOutcome> {
    let progress = output::progress(prepared.plan.hosts.len(), "applying");
    let mut outcomes = apply::apply(
        &prepared.plan,
        &prepared.desired,
        &prepared.connected,
        &prepared.masker,
        settings,
        opts.forks,
        &|| progress.inc(1),
    )
    .await;
    progress.finish_and_clear();
    // Handlers and verify answers print what they like; a secret in them is masked too.
    // So do the paths written, removed or swept: a `dest:` may use a secret.
    for o in &mut outcomes {
        o.error = o.error.as_deref().map(|e| prepared.masker.mask(e));
        for text in o
            .written
            .iter_mut()
            .chain(&mut o.removed)
            .chain(&mut o.notes)
        {
            *text = prepared.masker.mask(text);
        }
        for h in &mut o.handlers {
            h.stdout = prepared.masker.mask(&h.stdout);
            h.stderr = prepared.masker.mask(&h.stderr);
        }
    }
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
