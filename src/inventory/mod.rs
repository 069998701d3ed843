//! Inventory sources -> [`Inventory`]: the hosts, their groups, and each host's variables
//! merged with Ansible's precedence. Files are read unchanged from an Ansible repo: YAML and
//! INI inventories (`yaml.rs`, `ini.rs`), one file or a folder of them (`sources.rs`; without
//! `-i`, the repo's `hosts/inventory.yml`), and `group_vars/` and `host_vars/` next to each
//! source. `pattern.rs` evaluates `--limit` patterns against the result.
//!
//! Every source adds to one inventory, as Ansible's `InventoryData` does: a group or host
//! named again is the same one (vars merged, later files winning); once all are read, every
//! group without a parent becomes a child of `all`, and hosts in no group but `all` are
//! `ungrouped` (hosts an INI file lists before any section are `ungrouped` until another
//! group has them).
//!
//! Precedence, lowest first (Ansible's, for what deploy supports; top-level keys replace,
//! as with Ansible's default `hash_behaviour = replace`):
//! 1. inventory-file group vars (YAML `vars:`, INI `[group:vars]`), `all` first, then groups
//!    by depth (parents before children) and name;
//! 2. `group_vars/all.yml` (or `group_vars/all/*.yml`);
//! 3. `group_vars/<group>.yml` of the host's other groups, in the same order as 1;
//! 4. host vars written in the inventory file (YAML host vars, INI host-line `key=value`);
//! 5. `host_vars/<host>.yml` (or `host_vars/<host>/*.yml`);
//! 6. extra vars (`-e`).
//!
//! Secrets (`secrets/<group>.yml.age`, `secrets/<host>.yml.age`) merge right after the
//! `group_vars/` or `host_vars/` file of the same name; [`Inventory::merge_secrets`] adds them
//! once they are decrypted, and each host remembers which of its vars came from a secret.
//!
//! This is Ansible's real order: any `group_vars/` file beats any group var written in the
//! inventory file, which is what an operator who moves a var between the two expects.

mod hostpattern;
mod ini;
pub mod pattern;
pub(crate) mod pyliteral;
pub mod sources;
mod yaml;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::Value;

use crate::error::Error;

pub use sources::Sources;

/// Variables: name -> value, in the order they were first defined.
pub type Vars = serde_json::Map<String, Value>;

/// One group of the inventory.
#[derive(Debug, Clone, Default)]
pub struct Group {
    pub name: String,
    /// Groups this group is a child of (`all` for top-level groups).
    pub parents: Vec<String>,
    /// Child groups, in the order they were added (Ansible's order for `group[N]`).
    pub children: Vec<String>,
    /// Hosts listed directly under this group, in inventory order.
    pub hosts: Vec<String>,
    /// Vars written in the inventory file under this group.
    pub vars: Vars,
    /// Distance from `all` along the longest parent chain (`all` is 0).
    pub depth: usize,
}

/// One host with its variables already merged.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    /// Every group the host is in, ancestors and `all` included, ordered by depth then name.
    pub groups: Vec<String>,
    /// The merged variables (see the module doc for the order); no magic variables.
    pub vars: Vars,
    /// Top-level vars whose value came from a secret file (not overridden by a later layer).
    pub secret_keys: BTreeSet<String>,
    /// The layers `vars` is merged from, kept to merge again with secrets.
    layers: Layers,
}

/// A host's variables before merging, lowest precedence first.
#[derive(Debug, Clone, Default)]
struct Layers {
    /// Inventory-file group vars, merged over the host's groups.
    inventory_groups: Vars,
    /// `group_vars/` of each of the host's groups, in order (`all` first); shared by every
    /// host of the group, not copied into each.
    group_files: Vec<(String, Arc<Vars>)>,
    /// Host vars written in the inventory file.
    inline: Vars,
    /// `host_vars/<host>`.
    host_files: Vars,
}

impl Layers {
    /// Merges the layers, each secret file's vars right after its group's or host's file,
    /// and `extra` last. Returns the vars and which of them came from a secret.
    fn merge(
        &self,
        host: &str,
        secrets: &HashMap<String, Vars>,
        extra: &Vars,
    ) -> (Vars, BTreeSet<String>) {
        let mut vars = self.inventory_groups.clone();
        let mut secret = BTreeSet::new();
        let plain = |vars: &mut Vars, secret: &mut BTreeSet<String>, layer: &Vars| {
            merge(vars, layer);
            for k in layer.keys() {
                secret.remove(k);
            }
        };
        let with_secret = |vars: &mut Vars, secret: &mut BTreeSet<String>, name: &str| {
            if let Some(layer) = secrets.get(name) {
                merge(vars, layer);
                secret.extend(layer.keys().cloned());
            }
        };
        for (group, layer) in &self.group_files {
            plain(&mut vars, &mut secret, layer);
            with_secret(&mut vars, &mut secret, group);
        }
        plain(&mut vars, &mut secret, &self.inline);
        plain(&mut vars, &mut secret, &self.host_files);
        with_secret(&mut vars, &mut secret, host);
        plain(&mut vars, &mut secret, extra);
        (vars, secret)
    }
}

impl Host {
    /// Ansible's `group_names`: the host's groups, sorted, without `all`.
    pub fn group_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .groups
            .iter()
            .filter(|g| *g != "all")
            .cloned()
            .collect();
        names.sort();
        names
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// Hosts, groups and merged variables, as read from the inventory sources.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// The folder of the (first) inventory source: the one whose group_vars/ and host_vars/
    /// come first.
    pub dir: PathBuf,
    /// Hosts in the order the inventory first names them.
    pub hosts: IndexMap<String, Host>,
    /// Groups in the order the inventory first names them; `all` and `ungrouped` first.
    pub groups: IndexMap<String, Group>,
    /// `-e` vars, kept to merge again with secrets.
    extra: Vars,
    /// Values (and whole files) of `group_vars/` and `host_vars/` encrypted with Ansible
    /// Vault; opened by `secrets::vault::open` when a vault password is given, and merged
    /// as secrets of their group or host.
    pub vaulted: Vec<Vaulted>,
}

/// A `group_vars/` or `host_vars/` value encrypted with Ansible Vault (an inline `!vault`
/// value, or a whole vault file).
#[derive(Debug, Clone)]
pub struct Vaulted {
    pub path: PathBuf,
    /// The line of its key (1-based), 0 for a whole file.
    pub line: usize,
    /// The group or host whose vars file holds it.
    pub scope: String,
    /// The top-level variable, or `None` for a whole vault file.
    pub key: Option<String>,
    /// The variable's value as read (vaulted strings inside), or the whole file's text.
    pub value: Value,
}

impl Inventory {
    /// Reads the repo's `hosts/` folder (`dir`: its first inventory file, group_vars/ and
    /// host_vars/) and merges every host's variables, with `extra` (`-e`) on top.
    pub fn load(dir: &Path, extra: &Vars) -> Result<Inventory, Error> {
        Inventory::load_sources(&Sources::repo_hosts(dir), extra)
    }

    /// Reads every source (in order, into one inventory), then the group_vars/ and
    /// host_vars/ next to them, and merges every host's variables, with `extra` on top.
    pub fn load_sources(sources: &Sources, extra: &Vars) -> Result<Inventory, Error> {
        let mut parsed = Parsed::new();
        sources.read_into(&mut parsed)?;
        parsed.reconcile();

        let var_dirs = sources.var_dirs();
        let dir = var_dirs
            .first()
            .cloned()
            .unwrap_or_else(|| PathBuf::from("."));
        let mut groups = parsed.groups;
        compute_depths(&dir, &mut groups)?;

        let mut vaulted = Vec::new();
        let mut group_files: HashMap<String, Arc<Vars>> = HashMap::new();
        for g in groups.keys() {
            let mut vars = Vars::new();
            for d in &var_dirs {
                merge(
                    &mut vars,
                    &load_vars_dir(&d.join("group_vars"), g, &mut vaulted)?,
                );
            }
            group_files.insert(g.clone(), Arc::new(vars));
        }
        let no_secrets = HashMap::new();
        let mut hosts = IndexMap::new();
        // Each host's direct groups, found in one pass (not one pass over every group's
        // hosts per host: that is quadratic in a large inventory).
        let mut direct: HashMap<&str, Vec<String>> = HashMap::new();
        for g in groups.values() {
            for h in &g.hosts {
                direct.entry(h.as_str()).or_default().push(g.name.clone());
            }
        }
        for name in &parsed.host_order {
            let host_groups = groups_of(
                &groups,
                direct.get(name.as_str()).map_or(&[], Vec::as_slice),
            );
            let mut layers = Layers::default();
            for g in &host_groups {
                merge(&mut layers.inventory_groups, &groups[g].vars);
                let file = group_files.get(g).cloned().unwrap_or_default();
                layers.group_files.push((g.clone(), file));
            }
            layers.inline = parsed.host_vars.get(name).cloned().unwrap_or_default();
            for d in &var_dirs {
                let file = load_vars_dir(&d.join("host_vars"), name, &mut vaulted)?;
                merge(&mut layers.host_files, &file);
            }
            let (vars, secret_keys) = layers.merge(name, &no_secrets, extra);
            hosts.insert(
                name.clone(),
                Host {
                    name: name.clone(),
                    groups: host_groups,
                    vars,
                    secret_keys,
                    layers,
                },
            );
        }
        Ok(Inventory {
            dir,
            hosts,
            groups,
            extra: extra.clone(),
            vaulted,
        })
    }

    /// Merges decrypted secret files (file name without `.yml.age` -> its vars) into every
    /// host they apply to, at their precedence.
    pub fn merge_secrets(&mut self, secrets: &HashMap<String, Vars>) {
        for host in self.hosts.values_mut() {
            let (vars, keys) = host.layers.merge(&host.name, secrets, &self.extra);
            host.vars = vars;
            host.secret_keys = keys;
        }
    }

    /// Ansible's `groups`: every group name -> its hosts (through child groups too), in
    /// inventory order.
    pub fn groups_var(&self) -> IndexMap<String, Vec<String>> {
        self.groups
            .keys()
            .map(|g| {
                let members = self
                    .hosts
                    .values()
                    .filter(|h| h.in_group(g))
                    .map(|h| h.name.clone())
                    .collect();
                (g.clone(), members)
            })
            .collect()
    }

    /// The hosts named by `--host` and `--group` (all hosts when both are empty), in
    /// inventory order. An unknown name is an error with a hint.
    pub fn select(&self, hosts: &[String], groups: &[String]) -> Result<Vec<&Host>, Error> {
        for h in hosts {
            if !self.hosts.contains_key(h) {
                return Err(Error::usage(
                    format!("host `{h}` is not in the inventory"),
                    Some(suggest("hosts", h, self.hosts.keys())),
                ));
            }
        }
        for g in groups {
            if !self.groups.contains_key(g) {
                return Err(Error::usage(
                    format!("group `{g}` is not in the inventory"),
                    Some(suggest("groups", g, self.groups.keys())),
                ));
            }
        }
        Ok(self
            .hosts
            .values()
            .filter(|h| {
                (hosts.is_empty() && groups.is_empty())
                    || hosts.contains(&h.name)
                    || groups.iter().any(|g| h.in_group(g))
            })
            .collect())
    }

    /// `--host`/`--group` (as [`Inventory::select`]) intersected with `--limit PATTERN`
    /// (Ansible's pattern language, see [`pattern`]), in inventory order, and the limit's
    /// names that matched nothing (to warn about). A limit that leaves no host is an error
    /// naming it.
    pub fn select_limited(
        &self,
        hosts: &[String],
        groups: &[String],
        limit: Option<&str>,
    ) -> Result<(Vec<&Host>, Vec<String>), Error> {
        let selected = self.select(hosts, groups)?;
        let Some(limit) = limit else {
            return Ok((selected, Vec::new()));
        };
        let patterns = pattern::limit_patterns(limit)?;
        let matched = pattern::evaluate(self, &patterns, limit)?;
        let chosen: BTreeSet<&str> = matched.hosts.iter().map(String::as_str).collect();
        let limited: Vec<&Host> = selected
            .into_iter()
            .filter(|h| chosen.contains(h.name.as_str()))
            .collect();
        if limited.is_empty() {
            let also = if hosts.is_empty() && groups.is_empty() {
                String::new()
            } else {
                " among the hosts of --host/--group".to_string()
            };
            return Err(Error::usage(
                format!("--limit {limit} matches no host{also}"),
                Some(if matched.unmatched.is_empty() {
                    "deploy check --list-hosts lists the hosts a selection has".into()
                } else {
                    let names: Vec<&String> = self
                        .groups
                        .keys()
                        .filter(|g| *g != "all" && *g != "ungrouped")
                        .chain(self.hosts.keys())
                        .collect();
                    format!(
                        "no group or host matches {}; {}",
                        matched.unmatched.join(", "),
                        suggest("groups and hosts", &matched.unmatched[0], names.into_iter())
                    )
                }),
            ));
        }
        Ok((limited, matched.unmatched))
    }
}

fn suggest<'a>(what: &str, wanted: &str, known: impl Iterator<Item = &'a String>) -> String {
    let known: Vec<&String> = known.collect();
    let close: Vec<&&String> = known
        .iter()
        .filter(|k| k.contains(wanted) || wanted.contains(k.as_str()))
        .collect();
    match close.first() {
        Some(k) => format!("did you mean `{k}`?"),
        None => {
            let list: Vec<&str> = known.iter().take(12).map(|s| s.as_str()).collect();
            format!("known {what}: {}", list.join(", "))
        }
    }
}

/// Overlays `top` on `base`, replacing top-level keys.
pub fn merge(base: &mut Vars, top: &Vars) {
    for (k, v) in top {
        base.insert(k.clone(), v.clone());
    }
}

/// The inventory as its files build it, before any variable is merged: Ansible's
/// `InventoryData` (groups and hosts in the order first named, vars as set).
#[derive(Debug, Clone)]
pub struct Parsed {
    groups: IndexMap<String, Group>,
    host_order: Vec<String>,
    host_vars: HashMap<String, Vars>,
    /// (group, host) pairs already listed, so adding a host stays O(1).
    members: std::collections::HashSet<(String, String)>,
}

impl Parsed {
    /// `all` and its child `ungrouped`, as Ansible starts.
    fn new() -> Parsed {
        let mut p = Parsed {
            groups: IndexMap::new(),
            host_order: Vec::new(),
            host_vars: HashMap::new(),
            members: std::collections::HashSet::new(),
        };
        p.add_group("all");
        p.add_group("ungrouped");
        p.link("all", "ungrouped");
        p
    }

    fn add_group(&mut self, name: &str) {
        if !self.groups.contains_key(name) {
            self.groups.insert(
                name.to_string(),
                Group {
                    name: name.to_string(),
                    ..Group::default()
                },
            );
        }
    }

    /// Adds `host` (once; a new host's `port` becomes its `ansible_port`) to `group`.
    fn add_host(&mut self, host: &str, group: Option<&str>, port: Option<u64>) {
        if !self.host_vars.contains_key(host) {
            self.host_order.push(host.to_string());
            let mut vars = Vars::new();
            if let Some(port) = port {
                vars.insert("ansible_port".into(), Value::from(port));
            }
            self.host_vars.insert(host.to_string(), vars);
        }
        if let Some(group) = group {
            self.add_group(group);
            if let Some(g) = self.groups.get_mut(group)
                && self.members.insert((group.to_string(), host.to_string()))
            {
                g.hosts.push(host.to_string());
            }
        }
    }

    fn set_host_var(&mut self, host: &str, key: &str, value: Value) {
        self.host_vars
            .entry(host.to_string())
            .or_default()
            .insert(key.to_string(), value);
    }

    fn set_group_var(&mut self, group: &str, key: &str, value: Value) {
        self.add_group(group);
        if let Some(g) = self.groups.get_mut(group) {
            g.vars.insert(key.to_string(), value);
        }
    }

    /// Makes `child` a child group of `parent` (both exist); a loop is an error.
    fn add_child(&mut self, parent: &str, child: &str) -> Result<(), String> {
        self.add_group(parent);
        self.add_group(child);
        if parent == child {
            return Err(format!("group `{child}` cannot be a child of itself"));
        }
        if self.groups[parent].children.iter().any(|c| c == child) {
            return Ok(());
        }
        if self.ancestors(parent).contains(child) {
            return Err(format!(
                "groups form a cycle: `{child}` cannot be a child of `{parent}`, which is in it"
            ));
        }
        self.link(parent, child);
        Ok(())
    }

    fn link(&mut self, parent: &str, child: &str) {
        if let Some(p) = self.groups.get_mut(parent)
            && !p.children.iter().any(|c| c == child)
        {
            p.children.push(child.to_string());
        }
        if let Some(c) = self.groups.get_mut(child)
            && !c.parents.iter().any(|p| p == parent)
        {
            c.parents.push(parent.to_string());
        }
    }

    fn ancestors(&self, group: &str) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        let mut todo = vec![group.to_string()];
        while let Some(g) = todo.pop() {
            for p in self
                .groups
                .get(&g)
                .map(|g| g.parents.clone())
                .unwrap_or_default()
            {
                if found.insert(p.clone()) {
                    todo.push(p);
                }
            }
        }
        found
    }

    /// Ansible's `reconcile_inventory`, once every source is read: groups without a parent
    /// become children of `all`; a host in `ungrouped` and another group leaves `ungrouped`,
    /// a host in no group but `all` joins it.
    fn reconcile(&mut self) {
        let orphans: Vec<String> = self
            .groups
            .values()
            .filter(|g| g.name != "all" && g.parents.is_empty())
            .map(|g| g.name.clone())
            .collect();
        for g in orphans {
            self.link("all", &g);
        }
        let mut direct: HashMap<&str, Vec<&str>> = HashMap::new();
        for g in self.groups.values() {
            for h in &g.hosts {
                direct.entry(h.as_str()).or_default().push(g.name.as_str());
            }
        }
        let mut ancestors: HashMap<&str, BTreeSet<String>> = HashMap::new();
        let (mut leave, mut join) = (std::collections::HashSet::new(), Vec::new());
        for host in &self.host_order {
            let mut mine: BTreeSet<String> = BTreeSet::new();
            for g in direct.get(host.as_str()).map(Vec::as_slice).unwrap_or(&[]) {
                mine.insert(g.to_string());
                let up = ancestors.entry(g).or_insert_with(|| self.ancestors(g));
                mine.extend(up.iter().cloned());
            }
            let others = mine.iter().any(|g| g != "all" && g != "ungrouped");
            if mine.contains("ungrouped") {
                if others {
                    leave.insert(host.clone());
                }
            } else if !others {
                join.push(host.clone());
            }
        }
        if let Some(u) = self.groups.get_mut("ungrouped") {
            u.hosts.retain(|h| !leave.contains(h));
        }
        self.members
            .retain(|(g, h)| !(g == "ungrouped" && leave.contains(h)));
        for host in join {
            self.add_host(&host, Some("ungrouped"), None);
        }
    }
}

fn check_name(file: &Path, path: &str, name: &str) -> Result<(), Error> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || c == '/' || c == '\\')
    {
        return Err(Error::config(
            format!("{}: {path}", file.display()),
            format!("`{name}` is not a usable host or group name"),
        ));
    }
    Ok(())
}

fn as_vars(file: &Path, path: &str, value: &Value) -> Result<Vars, Error> {
    match value {
        Value::Null => Ok(Vars::new()),
        Value::Object(map) => Ok(map.clone()),
        _ => Err(Error::config(
            format!("{}: {path}", file.display()),
            "expected a mapping of variables",
        )),
    }
}

/// Longest distance from `all`; a cycle in `children` is an error.
fn compute_depths(dir: &Path, groups: &mut IndexMap<String, Group>) -> Result<(), Error> {
    let names: Vec<String> = groups.keys().cloned().collect();
    let mut depth: HashMap<String, usize> = HashMap::new();
    for name in &names {
        let mut stack = Vec::new();
        let d = depth_of(groups, name, &mut depth, &mut stack).ok_or_else(|| {
            Error::config(
                dir.display(),
                format!("groups form a cycle: {}", stack.join(" -> ")),
            )
        })?;
        if let Some(g) = groups.get_mut(name) {
            g.depth = d;
        }
    }
    Ok(())
}

fn depth_of(
    groups: &IndexMap<String, Group>,
    name: &str,
    memo: &mut HashMap<String, usize>,
    stack: &mut Vec<String>,
) -> Option<usize> {
    if let Some(d) = memo.get(name) {
        return Some(*d);
    }
    if stack.iter().any(|s| s == name) {
        stack.push(name.to_string());
        return None;
    }
    stack.push(name.to_string());
    let mut d = 0;
    for p in groups
        .get(name)
        .map(|g| g.parents.clone())
        .unwrap_or_default()
    {
        d = d.max(depth_of(groups, &p, memo, stack)? + 1);
    }
    stack.pop();
    memo.insert(name.to_string(), d);
    Some(d)
}

/// Every group a host is in, from the groups that list it (`direct`) and their ancestors,
/// sorted by depth then name.
fn groups_of(groups: &IndexMap<String, Group>, direct: &[String]) -> Vec<String> {
    let mut found: BTreeSet<(usize, String)> = BTreeSet::new();
    let mut todo: Vec<String> = direct.to_vec();
    todo.push("all".to_string());
    while let Some(name) = todo.pop() {
        let Some(g) = groups.get(&name) else { continue };
        if found.insert((g.depth, name.clone())) {
            todo.extend(g.parents.iter().cloned());
        }
    }
    found.into_iter().map(|(_, n)| n).collect()
}

/// The vars of `<dir>/<name>.yml` (`.yaml`, `.json`, or no extension) and of every file in
/// `<dir>/<name>/` (sorted by name), merged in that order. Nothing there is no vars. Values
/// encrypted with Ansible Vault (and whole vault files) are added to `vaulted`.
fn load_vars_dir(dir: &Path, name: &str, vaulted: &mut Vec<Vaulted>) -> Result<Vars, Error> {
    let mut vars = Vars::new();
    let mut add = |vars: &mut Vars, path: &Path| -> Result<(), Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        if crate::secrets::vault::is_vaulted(&text) {
            vaulted.push(Vaulted {
                path: path.to_path_buf(),
                line: 0,
                scope: name.to_string(),
                key: None,
                value: Value::String(text),
            });
            return Ok(());
        }
        let file = parse_vars(path, &text)?;
        for (key, value) in &file {
            if holds_vaulted(value) {
                vaulted.push(Vaulted {
                    path: path.to_path_buf(),
                    line: key_line(&text, key),
                    scope: name.to_string(),
                    key: Some(key.clone()),
                    value: value.clone(),
                });
            }
        }
        merge(vars, &file);
        Ok(())
    };
    for ext in ["", ".yml", ".yaml", ".json"] {
        let path = dir.join(format!("{name}{ext}"));
        if path.is_file() {
            add(&mut vars, &path)?;
        }
    }
    let sub = dir.join(name);
    if sub.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&sub)
            .map_err(|e| Error::io(&sub, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("yml" | "yaml" | "json")
                    )
            })
            .collect();
        files.sort();
        for path in files {
            add(&mut vars, &path)?;
        }
    }
    Ok(vars)
}

/// Whether a value holds a string encrypted with Ansible Vault (YAML's `!vault` tag is
/// dropped by the parser; the text itself says what it is).
fn holds_vaulted(value: &Value) -> bool {
    match value {
        Value::String(s) => crate::secrets::vault::is_vaulted(s),
        Value::Array(items) => items.iter().any(holds_vaulted),
        Value::Object(map) => map.values().any(holds_vaulted),
        _ => false,
    }
}

/// The 1-based line where top-level `key:` is written in `text` (0 when not found).
fn key_line(text: &str, key: &str) -> usize {
    let plain = format!("{key}:");
    let quoted = [format!("\"{key}\":"), format!("'{key}':")];
    text.lines()
        .position(|l| l.starts_with(&plain) || quoted.iter().any(|q| l.starts_with(q.as_str())))
        .map_or(0, |i| i + 1)
}

/// One vars file: a YAML mapping (an empty file is no vars). A vault file is refused here
/// (`-e @file`); `group_vars/` and `host_vars/` read them through `load_vars_dir`.
pub fn load_vars_file(path: &Path) -> Result<Vars, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    if text.starts_with("$ANSIBLE_VAULT") {
        return Err(
            Error::config(path.display(), "this file is encrypted with Ansible Vault")
                .with_hint("deploy keeps secrets in age-encrypted files under secrets/ (deploy secrets import-vault moves them there)"),
        );
    }
    parse_vars(path, &text)
}

/// The text of a vars file -> its mapping (an empty file is no vars).
pub fn parse_vars(path: &Path, text: &str) -> Result<Vars, Error> {
    match crate::yaml::parse::<Value>(path, text)? {
        Value::Null => Ok(Vars::new()),
        Value::Object(map) => Ok(map),
        _ => Err(Error::config(
            path.display(),
            "a vars file must be a mapping of variables",
        )),
    }
}

/// Parses `-e` arguments: `key=value` pairs (several per argument, space-separated, as
/// Ansible allows), `@file.yml`, or an inline YAML/JSON mapping.
pub fn parse_extra_vars(args: &[String]) -> Result<Vars, Error> {
    let mut vars = Vars::new();
    for arg in args {
        if let Some(file) = arg.strip_prefix('@') {
            merge(&mut vars, &load_vars_file(Path::new(file))?);
        } else if arg.trim_start().starts_with('{') {
            let v: Value = crate::yaml::parse(Path::new("--extra-vars"), arg)?;
            match v {
                Value::Object(map) => merge(&mut vars, &map),
                _ => return Err(Error::usage(format!("-e {arg}: not a mapping"), None)),
            }
        } else {
            for pair in arg.split_whitespace() {
                let Some((k, v)) = pair.split_once('=') else {
                    return Err(Error::usage(
                        format!("-e {pair}: expected key=value"),
                        Some("or -e @vars.yml, or -e '{\"key\": \"value\"}'".into()),
                    ));
                };
                // Ansible keeps key=value extra vars as strings.
                vars.insert(k.to_string(), Value::String(v.to_string()));
            }
        }
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn var<'a>(inv: &'a Inventory, host: &str, key: &str) -> &'a Value {
        &inv.hosts[host].vars[key]
    }

    #[test]
    fn precedence_follows_ansible() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(
            d,
            "inventory.yml",
            "all:\n  vars: {a: inv_all, b: inv_all, c: inv_all, d: inv_all}\n  children:\n    app:\n      vars: {a: inv_app, b: inv_app}\n      children:\n        web:\n          vars: {a: inv_web}\n          hosts:\n            alpha: {d: inv_host}\n            beta:\n",
        );
        write(d, "group_vars/all.yml", "b: gv_all\nc: gv_all\ne: gv_all\n");
        write(d, "group_vars/app/10.yml", "e: gv_app\n");
        write(d, "host_vars/alpha.yml", "f: hv_alpha\nd: hv_alpha\n");
        let mut extra = Vars::new();
        extra.insert("f".into(), Value::String("extra".into()));
        let inv = Inventory::load(d, &extra).unwrap();
        // Inventory-file group vars: children over parents.
        assert_eq!(var(&inv, "beta", "a"), "inv_web");
        // Any group_vars/ file beats any inventory-file group var.
        assert_eq!(var(&inv, "beta", "b"), "gv_all");
        assert_eq!(var(&inv, "beta", "e"), "gv_app");
        // Host vars: inventory < host_vars/ < -e.
        assert_eq!(var(&inv, "alpha", "d"), "hv_alpha");
        assert_eq!(var(&inv, "beta", "d"), "inv_all");
        assert_eq!(var(&inv, "alpha", "f"), "extra");
        assert_eq!(inv.hosts["alpha"].groups, ["all", "app", "web"]);
        assert_eq!(inv.hosts["alpha"].group_names(), ["app", "web"]);
        assert_eq!(inv.groups_var()["app"], ["alpha", "beta"]);
    }

    #[test]
    fn ungrouped_hosts_and_cycles() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "inventory.yml", "all:\n  hosts:\n    lonely:\n");
        let inv = Inventory::load(dir.path(), &Vars::new()).unwrap();
        assert_eq!(inv.hosts["lonely"].group_names(), ["ungrouped"]);

        write(
            dir.path(),
            "inventory.yml",
            "all:\n  children:\n    a:\n      children:\n        b:\n          children:\n            a:\n",
        );
        let err = Inventory::load(dir.path(), &Vars::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("cycle"), "{err}");
    }

    #[test]
    fn vaulted_files_and_values_are_kept_for_the_vault_password_and_out_of_extra_vars() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "inventory.yml", "all:\n  hosts:\n    h:\n");
        write(
            dir.path(),
            "group_vars/all.yml",
            "$ANSIBLE_VAULT;1.1;AES256\n6162\n",
        );
        write(
            dir.path(),
            "host_vars/h.yml",
            "plain: 1\ntoken: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  6162\n",
        );
        let inv = Inventory::load(dir.path(), &Vars::new()).unwrap();
        let found: Vec<(String, usize, Option<String>)> = inv
            .vaulted
            .iter()
            .map(|v| (v.scope.clone(), v.line, v.key.clone()))
            .collect();
        assert_eq!(
            found,
            [
                ("all".into(), 0, None),
                ("h".into(), 2, Some("token".into()))
            ]
        );
        let err = load_vars_file(&dir.path().join("group_vars/all.yml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Ansible Vault") && err.contains("import-vault"),
            "{err}"
        );
    }

    #[test]
    fn extra_vars_forms() {
        let vars = parse_extra_vars(&["a=1 b=two".into(), "{\"c\": [1, 2]}".into()]).unwrap();
        assert_eq!(vars["a"], "1");
        assert_eq!(vars["b"], "two");
        assert_eq!(vars["c"], serde_json::json!([1, 2]));
        assert!(parse_extra_vars(&["novalue".into()]).is_err());
    }
}
