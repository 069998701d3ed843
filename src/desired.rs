//! Inventory + manifest + templates -> [`HostDesired`]: every file each selected host should
//! have, fully rendered, and the handlers it may run. This is the "render" stage of the
//! pipeline; it does no I/O on hosts, and it runs to completion for every selected host before
//! any host is changed (only the read-only facts read of `facts.rs` comes before it), so one
//! bad template stops the run with nothing touched.

//!
//! When secrets are in play, every file and handler command is rendered a second time with
//! each secret replaced by a canary token (see `mask.rs`): that tells which lines came from a
//! secret, how to show them masked, and which files must be written 0600.

use std::collections::HashMap;
use std::sync::Arc;

use indexmap::IndexMap;
use minijinja::Value;
use serde_json::Value as Json;

use crate::error::Error;
use crate::files::{Files, Loaded};
use crate::inventory::{Host, Inventory, Vars};
use crate::manifest::{Content, FileSpec, Manifest, parse_mode, parse_newline};
use crate::mask::{Canary, MaskedView, Masker, Secret, ShownLine, shown_secret_line};
use crate::render::Renderer;
use crate::transport::Connection;

/// Mode of a file whose rendering used a secret, unless deploy.yml sets one.
pub const SECRET_FILE_MODE: u32 = 0o600;

fn to_value<T: serde::Serialize>(v: T) -> Value {
    Value::from(minijinja::value::Serde(v))
}

/// One file as it should be on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredFile {
    /// Absolute path on the host (rendered from `dest:`).
    pub dest: String,
    /// Shared by every host with the same bytes (a `src:` file is read once per run).
    pub content: Arc<[u8]>,
    /// Mode to enforce; `None` keeps an existing file's mode (0644 for a new file).
    pub mode: Option<u32>,
    pub owner: Option<String>,
    pub group: Option<String>,
    /// Handler names to run when this file changes.
    pub notify: Vec<String>,
    /// Where the content comes from.
    pub source: FileSource,
    /// Group of deploy.yml that gave the host this file.
    pub from_group: String,
    /// How to show the file when its rendering used a secret (`None`: it used none).
    pub view: Option<MaskedView>,
    /// `validate:` rendered: run on the host with `%s` as the temporary copy.
    pub validate: Option<String>,
}

/// What a desired file's content is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSource {
    /// Rendered from this template, relative to `templates/`.
    Template(String),
    /// Copied from this file, relative to `files/` (`/`-separated).
    File(String),
}

impl FileSource {
    /// `templates/x.j2`, `files/x`: for messages.
    pub fn label(&self) -> String {
        match self {
            FileSource::Template(t) => format!("templates/{t}"),
            FileSource::File(f) => format!("{}/{f}", crate::files::FILES_DIR),
        }
    }
}

/// Something deploy removes on a host: `state: absent` (the file or link at `root`) or
/// `delete: true` (every file or link under the folder `root` that the host's files, its
/// state record and its lock do not include).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredRemoval {
    /// The rendered `dest:`.
    pub root: String,
    /// `delete: true` of a `src:` folder (else `state: absent`).
    pub tree: bool,
    /// Handler names to run when something is removed.
    pub notify: Vec<String>,
    pub from_group: String,
}

/// A handler a host may run, its command rendered for that host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredHandler {
    pub name: String,
    /// What runs on the host.
    pub command: String,
    /// The command as it may be printed (secrets masked).
    pub shown: String,
}

/// The secrets of a run as rendering needs them: the masker for every output, and a canary
/// copy of each host's variables with every secret string replaced by a unique token.
#[derive(Debug, Default)]
pub struct SecretRendering {
    pub masker: Masker,
    /// Masks the tokens' forms the way `masker` masks the real values'.
    canary_masker: Masker,
    canaries: Vec<Canary>,
    canary_vars: HashMap<String, Vars>,
}

impl SecretRendering {
    /// Collects every host's secret values (see `Host::secret_keys`).
    pub fn new(inventory: &Inventory) -> SecretRendering {
        let nonce: u32 = rand::random();
        let mut secrets = Vec::new();
        let mut canaries = Vec::new();
        let mut canary_vars = HashMap::new();
        for host in inventory.hosts.values() {
            if host.secret_keys.is_empty() {
                continue;
            }
            let mut vars = host.vars.clone();
            for key in &host.secret_keys {
                if let Some(value) = vars.get_mut(key) {
                    replace_leaves(value, key, &mut |path, leaf| {
                        let text = match leaf {
                            Json::String(s) => s.clone(),
                            Json::Number(n) => n.to_string(),
                            _ => return None,
                        };
                        secrets.push(Secret {
                            key: path.to_string(),
                            value: text.clone(),
                        });
                        // Numbers stay numbers (templates may compute with them); only
                        // strings get a token.
                        let Json::String(_) = leaf else { return None };
                        let token = format!("DEPLOYSECRET{nonce:08x}N{}X", canaries.len());
                        canaries.push(Canary {
                            token: token.clone(),
                            secret: Secret {
                                key: path.to_string(),
                                value: text,
                            },
                        });
                        Some(Json::String(token))
                    });
                }
            }
            canary_vars.insert(host.name.clone(), vars);
        }
        // Longest token first, so that token N1X is never replaced inside N10X.
        canaries.sort_by_key(|c| std::cmp::Reverse(c.token.len()));
        let token_secrets: Vec<Secret> = canaries
            .iter()
            .map(|c| Secret {
                key: c.secret.key.clone(),
                value: c.token.clone(),
            })
            .collect();
        SecretRendering {
            masker: Masker::new(&secrets),
            canary_masker: Masker::new(&token_secrets),
            canaries,
            canary_vars,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.canary_vars.is_empty()
    }

    /// A host's variables with its secrets replaced by tokens.
    fn vars_of<'a>(&'a self, host: &'a Host) -> &'a Vars {
        self.canary_vars.get(&host.name).unwrap_or(&host.vars)
    }

    /// How to print a rendered command: as a line derived from secrets would be shown
    /// (see `mask::shown_secret_line`), or not at all.
    fn show_command(&self, real: &str, canary: &str) -> String {
        match shown_secret_line(
            real,
            canary,
            &self.canaries,
            &self.masker,
            &self.canary_masker,
        ) {
            ShownLine::Text(text) => text,
            ShownLine::Opaque => "<command with secret>".to_string(),
        }
    }
}

/// Calls `f` on every string or number leaf of `value` (path `key`, `key.sub`, `key.0`...),
/// replacing the leaf when `f` returns a new one.
fn replace_leaves(value: &mut Json, path: &str, f: &mut dyn FnMut(&str, &Json) -> Option<Json>) {
    match value {
        Json::Object(map) => {
            for (k, v) in map.iter_mut() {
                replace_leaves(v, &format!("{path}.{k}"), f);
            }
        }
        Json::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                replace_leaves(v, &format!("{path}.{i}"), f);
            }
        }
        leaf => {
            if let Some(new) = f(path, leaf) {
                *leaf = new;
            }
        }
    }
}

/// A `verify:` entry rendered for a host: polled from the controller after its handlers ran.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DesiredVerify {
    pub name: String,
    pub url: String,
    /// Expected HTTP status.
    pub status: u16,
    pub json_path: Option<String>,
    pub contains: Option<String>,
    /// Seconds until it counts as failed.
    pub timeout_secs: f64,
}

/// Default `timeout:` of a verify entry, in seconds.
pub const VERIFY_TIMEOUT_SECS: f64 = 120.0;

/// Everything deploy wants on one host.
#[derive(Debug, Clone)]
pub struct HostDesired {
    pub host: String,
    pub connection: Connection,
    pub files: Vec<DesiredFile>,
    /// What to remove, from `state: absent` and `delete: true`, in deploy.yml's order.
    pub removals: Vec<DesiredRemoval>,
    /// Every handler of the host's groups, in the order deploy.yml declares them.
    pub handlers: Vec<DesiredHandler>,
    /// The host's variables as templates saw them (with `hostvars`), for checks.
    pub vars: Value,
    /// What to poll after apply, from the `verify:` of the host's groups.
    pub verify: Vec<DesiredVerify>,
    /// Where the host's deploy state record lives (`deploy_state_path`, else the default
    /// for its kind of connection); the lock is `lock.json` beside it.
    pub state_path: String,
    /// The deploy.yml group whose `serial:` / `max_fail_percentage:` the host follows.
    pub rollout: Option<HostRollout>,
    /// Notes for the plan (see `facts.rs`: templates whose output differs on every run).
    pub notes: Vec<String>,
}

/// The rolling-restart settings of a host, from one of its groups.
#[derive(Debug, Clone, PartialEq)]
pub struct HostRollout {
    pub group: String,
    pub serial: Option<crate::rollout::Serial>,
    pub max_fail_percentage: Option<f64>,
}

/// Renders every file and handler of every host in `hosts`. The first error stops it.
pub fn render_hosts(
    inventory: &Inventory,
    manifest: &Manifest,
    renderer: &Renderer,
    files: &Files,
    hosts: &[&Host],
    secrets: &SecretRendering,
) -> Result<Vec<HostDesired>, Error> {
    render_each(inventory, manifest, renderer, files, hosts, secrets)?
        .into_iter()
        .collect()
}

/// Renders every host in `hosts`, each on its own: one host's error does not stop the others.
/// The inventory's variables and `hostvars` are built once and shared by every host (a host's
/// `hostvars` is the same value for all), so rendering N hosts costs O(N), not O(N²).
pub fn render_each(
    inventory: &Inventory,
    manifest: &Manifest,
    renderer: &Renderer,
    files: &Files,
    hosts: &[&Host],
    secrets: &SecretRendering,
) -> Result<Vec<Result<HostDesired, Error>>, Error> {
    // Nothing to render: the inventory's variables are not built either (the checks' "other
    // hosts" are none when every host is selected).
    if hosts.is_empty() {
        return Ok(Vec::new());
    }
    let groups = to_value(inventory.groups_var());
    let real_own = own_vars_all(inventory, &groups, None);
    let real_hostvars = hostvars(inventory, renderer, &real_own)?;
    let canary = if secrets.is_empty() {
        None
    } else {
        let own = own_vars_all(inventory, &groups, Some(secrets));
        let hv = hostvars(inventory, renderer, &own)?;
        Some((own, hv))
    };
    // Hosts render independently (the shared values above are read-only): on every core.
    Ok(crate::par::map(hosts, |host| {
        let own = |all: &OwnVars, vars: &Vars| match all.get(host.name.as_str()) {
            Some(own) => own.clone(),
            None => own_vars(host, vars, &groups, &mut Converted::default()),
        };
        let ctx = context(renderer, host, own(&real_own, &host.vars), &real_hostvars)?;
        let canary_ctx = match &canary {
            Some((all, hv)) => Some(context(
                renderer,
                host,
                own(all, secrets.vars_of(host)),
                hv,
            )?),
            None => None,
        };
        let ctxs = Contexts {
            real: &ctx,
            canary: canary_ctx.as_ref(),
            secrets,
        };
        render_host(manifest, renderer, files, host, &ctxs)
    }))
}

/// The variables a host's templates see, real and (with secrets) canary.
struct Contexts<'a> {
    real: &'a Value,
    canary: Option<&'a Value>,
    secrets: &'a SecretRendering,
}

/// Every host of the inventory -> its variables with the magic ones (all but `hostvars`),
/// converted once: both `hostvars` and the host's own context are made from these (cloning
/// a map of `Value`s only clones reference counts).
type OwnVars<'a> = IndexMap<&'a str, IndexMap<String, Value>>;

/// With `canary`, each host's secrets are replaced by their tokens.
fn own_vars_all<'a>(
    inventory: &'a Inventory,
    groups: &Value,
    canary: Option<&'a SecretRendering>,
) -> OwnVars<'a> {
    let mut converted = Converted::default();
    inventory
        .hosts
        .values()
        .map(|h| {
            let vars = canary.map_or(&h.vars, |s| s.vars_of(h));
            (h.name.as_str(), own_vars(h, vars, groups, &mut converted))
        })
        .collect()
}

/// Variables converted to template values, shared between hosts: most of a host's
/// variables come from group_vars and are the same on every host of the group, so each is
/// converted once and every host holds the same (immutable, reference-counted) value
/// instead of its own copy (a copy of every group variable per host was the largest part of
/// rendering's memory).
#[derive(Default)]
struct Converted<'a> {
    /// Per variable name, the first few distinct values met and their conversions (a
    /// variable that differs on every host, such as `ansible_host`, is not kept: only
    /// [`SHARED_PER_NAME`] are compared).
    by_name: HashMap<&'a str, Vec<(&'a Json, Value)>>,
}

const SHARED_PER_NAME: usize = 4;

impl<'a> Converted<'a> {
    fn value(&mut self, name: &'a str, json: &'a Json) -> Value {
        let seen = self.by_name.entry(name).or_default();
        if let Some((_, value)) = seen.iter().find(|(j, _)| same_json(j, json)) {
            return value.clone();
        }
        let value = to_value(json);
        if seen.len() < SHARED_PER_NAME {
            seen.push((json, value.clone()));
        }
        value
    }
}

/// Equal, with maps' keys in the same order (serde_json's `==` ignores the order, which
/// templates see when they iterate a dict).
fn same_json(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Object(a), Json::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|((ka, va), (kb, vb))| ka == kb && same_json(va, vb))
        }
        (Json::Array(a), Json::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same_json(a, b))
        }
        _ => a == b,
    }
}

fn context(
    renderer: &Renderer,
    host: &Host,
    mut ctx: IndexMap<String, Value>,
    hostvars: &Value,
) -> Result<Value, Error> {
    ctx.insert("hostvars".into(), hostvars.clone());
    renderer
        .resolve_vars(&Value::from_pairs(ctx))
        .map_err(|e| render_error(host, e))
}

/// Ansible's `hostvars`: every host of the inventory (selected or not) -> its variables,
/// templated lazily like the host's own.
fn hostvars(inventory: &Inventory, renderer: &Renderer, own: &OwnVars) -> Result<Value, Error> {
    let mut map: IndexMap<&str, Value> = IndexMap::new();
    for h in inventory.hosts.values() {
        let Some(vars) = own.get(h.name.as_str()) else {
            continue;
        };
        let vars = renderer
            .resolve_vars(&Value::from_pairs(vars.clone()))
            .map_err(|e| render_error(h, e))?;
        map.insert(h.name.as_str(), vars);
    }
    Ok(Value::from_pairs(map))
}

/// A host's variables plus Ansible's magic variables (all but `hostvars`).
fn own_vars<'a>(
    host: &Host,
    vars: &'a Vars,
    groups: &Value,
    converted: &mut Converted<'a>,
) -> IndexMap<String, Value> {
    let mut ctx: IndexMap<String, Value> = vars
        .iter()
        .map(|(k, v)| (k.clone(), converted.value(k, v)))
        .collect();
    ctx.insert("inventory_hostname".into(), Value::from(host.name.as_str()));
    let short = host.name.split('.').next().unwrap_or(&host.name);
    ctx.insert("inventory_hostname_short".into(), Value::from(short));
    ctx.insert("group_names".into(), to_value(host.group_names()));
    ctx.insert("groups".into(), groups.clone());
    ctx
}

fn render_error(host: &Host, e: crate::render::RenderError) -> Error {
    let report = e.to_string();
    Error::Render {
        host: host.name.clone(),
        // main prints "error: " once already.
        message: report
            .strip_prefix("error: ")
            .unwrap_or(&report)
            .to_string(),
    }
}

fn render_host(
    manifest: &Manifest,
    renderer: &Renderer,
    sources: &Files,
    host: &Host,
    ctxs: &Contexts,
) -> Result<HostDesired, Error> {
    let ctx = ctxs.real;
    let render_err = |e| render_error(host, e);
    let host_newline = match ctx.get_attr(NEWLINE_VAR) {
        Ok(v) if !v.is_undefined() && !v.is_none() => {
            let text = v
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            parse_newline(&text).map_err(|msg| {
                Error::config(format!("host {}: variable {NEWLINE_VAR}", host.name), msg)
            })?
        }
        _ => "\n",
    };
    let mut files: Vec<DesiredFile> = Vec::new();
    let mut removals: Vec<DesiredRemoval> = Vec::new();
    let mut verify: Vec<DesiredVerify> = Vec::new();
    let mut handlers: Vec<(DesiredHandler, String)> = Vec::new();
    let mut rollout: Option<HostRollout> = None;
    for (group_name, spec) in &manifest.groups {
        if !host.in_group(group_name) {
            continue;
        }
        if spec.serial.is_some() || spec.max_fail_percentage.is_some() {
            if let Some(pct) = &spec.max_fail_percentage
                && !(0.0..=100.0).contains(&pct.value)
            {
                return Err(Error::config(
                    manifest.location(pct),
                    format!("max_fail_percentage {} is not between 0 and 100", pct.value),
                ));
            }
            if let Some(other) = &rollout {
                let at = spec
                    .serial
                    .as_ref()
                    .map(|s| manifest.location(s))
                    .or_else(|| {
                        spec.max_fail_percentage
                            .as_ref()
                            .map(|p| manifest.location(p))
                    });
                return Err(Error::config(
                    at.map_or_else(|| manifest.path.display().to_string(), |l| l.to_string()),
                    format!(
                        "host {} is in groups `{}` and `{group_name}`, which both set serial or \
                         max_fail_percentage; a host follows one rollout",
                        host.name, other.group
                    ),
                )
                .with_hint("set serial on one of the two groups only"));
            }
            rollout = Some(HostRollout {
                group: group_name.clone(),
                serial: spec.serial.as_ref().map(|s| s.value.0.clone()),
                max_fail_percentage: spec.max_fail_percentage.as_ref().map(|p| p.value),
            });
        }
        for h in &spec.handlers {
            let origin = format!("{}: handler `{}`", manifest.location(&h.run), h.name.value);
            let command = renderer
                .render_str(&origin, &h.run.value, ctx)
                .map_err(render_err)?;
            let shown = match ctxs.canary {
                None => command.clone(),
                Some(canary) => match renderer.render_str(&origin, &h.run.value, canary) {
                    Ok(c) if c == command => ctxs.secrets.masker.mask(&command),
                    Ok(c) => ctxs.secrets.show_command(&command, &c),
                    Err(_) => "<command with secret>".to_string(),
                },
            };
            let handler = DesiredHandler {
                name: h.name.value.clone(),
                command,
                shown,
            };
            match handlers
                .iter()
                .find(|(known, _)| known.name == handler.name)
            {
                Some((known, _)) if *known == handler => {}
                Some((_, other_group)) => {
                    return Err(Error::config(
                        manifest.location(&h.name),
                        format!(
                            "handler `{}` of group `{group_name}` runs something else than the one of group `{other_group}` on host {}",
                            handler.name, host.name
                        ),
                    )
                    .with_hint("give one of them another name"));
                }
                None => handlers.push((handler, group_name.clone())),
            }
        }
        for v in &spec.verify {
            let origin = format!("{}: verify `{}`", manifest.location(&v.url), v.name.value);
            let url = renderer
                .render_str(&origin, &v.url.value, ctx)
                .map_err(render_err)?;
            let contains = match &v.contains {
                Some(c) => Some(
                    renderer
                        .render_str(&origin, &c.value, ctx)
                        .map_err(render_err)?,
                ),
                None => None,
            };
            verify.push(DesiredVerify {
                name: v.name.value.clone(),
                url,
                status: v.status.unwrap_or(200),
                json_path: v.json_path.clone(),
                contains,
                timeout_secs: v.timeout.as_ref().map_or(VERIFY_TIMEOUT_SECS, |t| t.value),
            });
        }
        for f in &spec.files {
            let what = match f.content() {
                Content::Template(t) => t.value.clone(),
                Content::Src(src) => format!("src {}", src.value),
                Content::Absent => "state: absent".to_string(),
            };
            let origin = format!("{}: dest of {what}", manifest.location(&f.dest));
            let dest = renderer
                .render_str(&origin, &f.dest.value, ctx)
                .map_err(render_err)?;
            check_dest(&dest).map_err(|msg| {
                Error::config(
                    manifest.location(&f.dest),
                    format!("host {}: {msg}", host.name),
                )
            })?;
            let notify: Vec<String> = f.notify_names().into_iter().map(String::from).collect();
            let newline = match &f.newline {
                Some(n) => Some(
                    parse_newline(&n.value)
                        .map_err(|msg| Error::config(manifest.location(n), msg))?,
                ),
                None => None,
            };
            let mode = match &f.mode {
                Some(m) => Some(
                    parse_mode(&m.value).map_err(|msg| Error::config(manifest.location(m), msg))?,
                ),
                None => None,
            };
            let validate = match &f.validate {
                Some(v) => {
                    let origin = format!("{}: validate", manifest.location(v));
                    Some(
                        renderer
                            .render_str(&origin, &v.value, ctx)
                            .map_err(render_err)?,
                    )
                }
                None => None,
            };
            let template = match f.content() {
                Content::Absent => {
                    removals.push(DesiredRemoval {
                        root: dest,
                        tree: false,
                        notify,
                        from_group: group_name.clone(),
                    });
                    continue;
                }
                Content::Src(src) => {
                    let copies = copied_files(manifest, sources, f, src, &dest, newline)?;
                    if f.delete() {
                        removals.push(DesiredRemoval {
                            root: dest.clone(),
                            tree: true,
                            notify: notify.clone(),
                            from_group: group_name.clone(),
                        });
                    }
                    for copy in copies {
                        let file = DesiredFile {
                            dest: copy.dest,
                            content: copy.content,
                            mode,
                            owner: f.owner.clone(),
                            group: f.group.clone(),
                            notify: notify.clone(),
                            source: FileSource::File(copy.from),
                            from_group: group_name.clone(),
                            view: None,
                            validate: validate.clone(),
                        };
                        add_file(&mut files, file, &host.name)?;
                    }
                    continue;
                }
                Content::Template(t) => &t.value,
            };
            let content = renderer.render_file(template, ctx).map_err(render_err)?;
            // A `#jinja2: newline_sequence:` header already gave the template's own text its
            // line endings (and only that text, as Ansible): kept unless the entry sets one.
            let newline = match (newline, renderer.header_newline(template)) {
                (Some(n), _) => Some(n),
                (None, Some(_)) => None,
                (None, None) => Some(host_newline),
            };
            let line_ends = |text: String| match newline {
                Some(n) => with_newline(&text, n),
                None => text,
            };
            let content = line_ends(content);
            let view = ctxs.canary.and_then(|canary| {
                let secrets = ctxs.secrets;
                match renderer.render_file(template, canary) {
                    Ok(c) => MaskedView::build(
                        &content,
                        &line_ends(c),
                        &secrets.canaries,
                        &secrets.masker,
                        &secrets.canary_masker,
                    ),
                    // A filter choked on a token (e.g. `int` of a secret): the file uses a
                    // secret in a way deploy cannot follow, so none of it is shown.
                    Err(_) => Some(MaskedView::opaque(&content)),
                }
            });
            let mode = match mode {
                None if view.is_some() => Some(SECRET_FILE_MODE),
                mode => mode,
            };
            let file = DesiredFile {
                dest,
                content: content.into_bytes().into(),
                mode,
                owner: f.owner.clone(),
                group: f.group.clone(),
                notify,
                source: FileSource::Template(template.clone()),
                from_group: group_name.clone(),
                view,
                validate,
            };
            add_file(&mut files, file, &host.name)?;
        }
    }
    for r in &removals {
        if let Some(file) = files.iter().find(|f| f.dest == r.root) {
            return Err(Error::config(
                format!("host {}", host.name),
                format!(
                    "{} is written by group `{}` ({}) and removed by `state: absent` of group `{}`",
                    r.root,
                    file.from_group,
                    file.source.label(),
                    r.from_group
                ),
            )
            .with_hint("one destination can have only one owner group"));
        }
    }
    let handlers: Vec<DesiredHandler> = handlers.into_iter().map(|(h, _)| h).collect();
    let notifying = files
        .iter()
        .map(|f| (&f.dest, &f.from_group, &f.notify))
        .chain(removals.iter().map(|r| (&r.root, &r.from_group, &r.notify)));
    for (dest, from_group, notify) in notifying {
        for name in notify {
            if !handlers.iter().any(|h| &h.name == name) {
                return Err(Error::config(
                    manifest.path.display(),
                    format!(
                        "host {}: {} (group `{}`) notifies `{name}`, but none of the host's groups declares that handler",
                        host.name, dest, from_group
                    ),
                )
                .with_hint("declare the handler in a group the host is in"));
            }
        }
    }
    let connection = Connection::from_vars(&host.name, &host.vars)
        .map_err(|msg| Error::config(format!("host {}", host.name), msg))?;
    if !connection.keeps_unix_metadata() {
        // Dropped here rather than shown as a change on every plan (README: Windows hosts).
        for file in &mut files {
            file.mode = None;
            file.owner = None;
            file.group = None;
        }
    }
    let state_var = ctx
        .get_attr(crate::state::STATE_PATH_VAR)
        .ok()
        .filter(|v| !v.is_undefined() && !v.is_none());
    let state_var = match state_var {
        None => None,
        Some(v) => Some(v.as_str().map(str::to_string).ok_or_else(|| {
            Error::config(
                format!("host {}", host.name),
                format!("{} must be a string", crate::state::STATE_PATH_VAR),
            )
        })?),
    };
    Ok(HostDesired {
        host: host.name.clone(),
        state_path: crate::state::state_path(&connection, state_var.as_deref()),
        connection,
        files,
        removals,
        handlers,
        vars: ctx.clone(),
        verify,
        rollout,
        notes: Vec::new(),
    })
}

/// The host variable that sets the line endings of all its files (a file's `newline:` wins).
pub const NEWLINE_VAR: &str = "deploy_newline";

/// Rendered text with every line ending (`\n` or `\r\n`) made `newline`, as Ansible's
/// `newline_sequence` does after rendering.
pub fn with_newline(text: &str, newline: &str) -> String {
    let unix = text.replace("\r\n", "\n");
    if newline == "\n" {
        unix
    } else {
        unix.replace('\n', newline)
    }
}

/// One file a `src:` entry gives a host.
struct Copied {
    dest: String,
    /// Its path under `files/`.
    from: String,
    content: Arc<[u8]>,
}

/// The files a `src:` entry gives a host: one for a
/// file, one per file under a folder (its path under `dest`). `newline`, when the entry sets
/// it, is applied to text files only.
fn copied_files(
    manifest: &Manifest,
    sources: &Files,
    f: &FileSpec,
    src: &serde_saphyr::Spanned<String>,
    dest: &str,
    newline: Option<&'static str>,
) -> Result<Vec<Copied>, Error> {
    let loaded = sources
        .load(&src.value)
        .map_err(|msg| Error::config(manifest.location(src), msg))?;
    let rel = crate::files::normalize_src(&src.value)
        .map_err(|msg| Error::config(manifest.location(src), msg))?;
    let converted = |bytes: &Arc<[u8]>| -> Arc<[u8]> {
        match (newline, std::str::from_utf8(bytes)) {
            (Some(nl), Ok(text)) if !crate::diff::is_binary(bytes) => {
                with_newline(text, nl).into_bytes().into()
            }
            _ => bytes.clone(),
        }
    };
    match &*loaded {
        Loaded::File(bytes) => {
            if let Some(d) = f.delete.as_ref().filter(|d| d.value) {
                return Err(Error::config(
                    manifest.location(d),
                    format!("`delete: true` needs a folder, and files/{rel} is a file"),
                ));
            }
            Ok(vec![Copied {
                dest: dest.to_string(),
                from: rel,
                content: converted(bytes),
            }])
        }
        Loaded::Tree(tree) => Ok(tree
            .iter()
            .map(|(under, bytes)| {
                let from = if rel.is_empty() {
                    under.clone()
                } else {
                    format!("{rel}/{under}")
                };
                Copied {
                    dest: join_dest(dest, under),
                    from,
                    content: converted(bytes),
                }
            })
            .collect()),
    }
}

/// `dest` + a `/`-separated path under it, with the separator `dest` uses (`\` for a
/// Windows path written with backslashes).
pub fn join_dest(dest: &str, rel: &str) -> String {
    if rel.is_empty() {
        return dest.to_string();
    }
    if dest.contains('\\') {
        format!("{dest}\\{}", rel.replace('/', "\\"))
    } else {
        format!("{dest}/{rel}")
    }
}

/// Adds `file`, or merges it with an identical one another group gives the same host.
fn add_file(files: &mut Vec<DesiredFile>, file: DesiredFile, host: &str) -> Result<(), Error> {
    let Some(existing) = files.iter_mut().find(|f| f.dest == file.dest) else {
        files.push(file);
        return Ok(());
    };
    let same = existing.content == file.content
        && existing.mode == file.mode
        && existing.owner == file.owner
        && existing.group == file.group;
    if !same {
        return Err(Error::config(
            format!("host {host}"),
            format!(
                "{} is given by group `{}` ({}) and by group `{}` ({}) with different content or mode",
                file.dest,
                existing.from_group,
                existing.source.label(),
                file.from_group,
                file.source.label()
            ),
        )
        .with_hint("one destination can have only one owner group, or both must render the same"));
    }
    for n in file.notify {
        if !existing.notify.contains(&n) {
            existing.notify.push(n);
        }
    }
    Ok(())
}

fn check_dest(dest: &str) -> Result<(), String> {
    let windows_abs =
        dest.len() > 2 && dest.as_bytes()[1] == b':' && dest.as_bytes()[0].is_ascii_alphabetic();
    if !(dest.starts_with('/') || windows_abs) {
        return Err(format!("dest `{dest}` is not an absolute path"));
    }
    if dest.contains(['\n', '\r', '\0']) {
        return Err(format!("dest {dest:?} contains a line break or NUL"));
    }
    if dest.ends_with('/') || dest.ends_with('\\') {
        return Err(format!("dest `{dest}` names a directory, not a file"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Converted, with_newline};

    /// Hosts share a converted variable only when it is the same value with its keys in
    /// the same order: a dict written in another order iterates in that order.
    #[test]
    fn shared_variables_keep_each_hosts_order() {
        let keys = |v: &minijinja::Value| -> Vec<String> {
            v.try_iter()
                .map(|it| it.map(|k| k.to_string()).collect())
                .unwrap_or_default()
        };
        let a = serde_json::json!({"x": 1, "y": [1, 2]});
        let b = serde_json::json!({"y": [1, 2], "x": 1});
        let a2 = a.clone();
        let mut converted = Converted::default();
        let va = converted.value("d", &a);
        let vb = converted.value("d", &b);
        let va2 = converted.value("d", &a2);
        assert_eq!(keys(&va), ["x", "y"]);
        assert_eq!(keys(&vb), ["y", "x"]);
        assert_eq!(keys(&va2), ["x", "y"]);
        assert_eq!(va, va2);
    }

    #[test]
    fn newlines_are_converted_once() {
        assert_eq!(with_newline("a\nb\r\nc\n", "\r\n"), "a\r\nb\r\nc\r\n");
        assert_eq!(with_newline("a\r\nb\n", "\n"), "a\nb\n");
        assert_eq!(with_newline("no newline", "\r\n"), "no newline");
    }
}
