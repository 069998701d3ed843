//! Ansible's lookups in templates: `lookup('NAME', terms..., wantlist=, errors=, options...)`,
//! `query`/`q` (always a list), run on the controller against the repository (ansible-core
//! 2.19's `_invoke_lookup` in `_internal/_templating/_jinja_plugins.py` and the plugins of
//! `plugins/lookup/`).
//!
//! Files are found as Ansible finds them for a playbook at the repository's root (its
//! `path_dwim_relative_stack` with the search path `[root]`): `file` and `fileglob` look in
//! `ROOT/files/NAME`, then `ROOT/NAME`; `template` in `ROOT/templates/NAME`, then
//! `ROOT/NAME`; `first_found` (called from a template, Ansible gives it no subdirectory) in
//! `ROOT/NAME`. A path that is absolute, starts with `~` or resolves (links included) outside
//! the repository is refused: a rendered file must not carry the controller's own files. So is
//! anything under `secrets/` and the run's age identities: secrets reach templates only as
//! variables, which deploy masks.
//!
//! `pipe` and `lines` run `sh -c TERM` in the repository only when deploy.yml allows it
//! (`settings: {allow_command_lookups: true}`); `url`, `password` and the other builtin
//! lookups are refused, an unknown name too. Those refusals ignore `errors=`.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use minijinja::value::{Kwargs, Rest, ValueKind};
use minijinja::{Error, ErrorKind, Value};

use super::{py_repr, py_str};

/// The lookups deploy runs, for messages.
pub const SUPPORTED: &[&str] = &[
    "dict",
    "env",
    "file",
    "fileglob",
    "first_found",
    "indexed_items",
    "items",
    "list",
    "nested",
    "sequence",
    "template",
    "together",
    "vars",
];

/// ansible-core's other builtin lookups, refused by name.
const UNSUPPORTED: &[&str] = &[
    "config",
    "csvfile",
    "ini",
    "inventory_hostnames",
    "random_choice",
    "subelements",
    "unvault",
    "varnames",
];

/// Most bytes a `pipe`/`lines` command may print, and a looked-up file may hold.
const MAX_READ: u64 = 64 << 20;

/// Deepest nesting of `template` lookups (a template that looks itself up).
const MAX_TEMPLATE_DEPTH: usize = 16;

/// Where and how lookups run: the repository they read, whether commands may run, and the
/// environment `env` reads.
pub struct Lookups {
    root: PathBuf,
    /// `root` with links resolved.
    real_root: PathBuf,
    /// Files lookups never read (the age identities of the run), links resolved.
    denied: Vec<PathBuf>,
    allow_commands: bool,
    environ: Option<HashMap<String, String>>,
    /// Files read so far (every host's render reads the same ones).
    cache: Mutex<HashMap<PathBuf, Result<Arc<str>, String>>>,
}

impl std::fmt::Debug for Lookups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lookups")
            .field("root", &self.root)
            .field("allow_commands", &self.allow_commands)
            .finish_non_exhaustive()
    }
}

impl Lookups {
    /// Lookups reading the repository at `root`, commands refused, `env` reading this
    /// process's environment.
    pub fn new(root: &Path) -> Lookups {
        let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
        Lookups {
            real_root: root.canonicalize().unwrap_or_else(|_| root.clone()),
            root,
            denied: Vec::new(),
            allow_commands: false,
            environ: None,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Let `pipe` and `lines` run their command on the controller.
    pub fn allow_commands(mut self, yes: bool) -> Lookups {
        self.allow_commands = yes;
        self
    }

    /// Never read these files (the identities secrets are decrypted with), wherever they are.
    pub fn deny(mut self, paths: &[PathBuf]) -> Lookups {
        self.denied
            .extend(paths.iter().filter_map(|p| p.canonicalize().ok()));
        self
    }

    /// `env` reads these variables instead of the process's environment (tests).
    pub fn with_environment(mut self, vars: HashMap<String, String>) -> Lookups {
        self.environ = Some(vars);
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn env_var(&self, name: &str) -> Option<String> {
        match &self.environ {
            Some(map) => map.get(name).cloned(),
            None => std::env::var(name).ok(),
        }
    }

    /// `needle` looked up as Ansible's `find_file_in_search_path(vars, subdir, needle)` does
    /// for a playbook at the root: the first existing candidate, or the candidates tried.
    fn find(
        &self,
        subdir: Option<&str>,
        needle: &str,
    ) -> Result<Result<PathBuf, Vec<PathBuf>>, String> {
        if needle.starts_with('/') || needle.starts_with('~') {
            return Err(format!(
                "{} is outside the repository; lookups read only files under {}",
                q(needle),
                self.root.display()
            ));
        }
        let mut candidates = Vec::new();
        if let Some(d) = subdir
            && needle.split('/').next() != Some(d)
        {
            candidates.push(normalize(&self.root.join(d).join(needle)));
        }
        candidates.push(normalize(&self.root.join(needle)));
        if candidates.iter().any(|c| !c.starts_with(&self.root)) {
            return Err(format!(
                "{} is outside the repository; lookups read only files under {}",
                q(needle),
                self.root.display()
            ));
        }
        for c in &candidates {
            if c.exists() {
                self.check_inside(needle, c)?;
                return Ok(Ok(c.clone()));
            }
        }
        Ok(Err(candidates))
    }

    /// Refuse `path` (found for `needle`) when it, or a link on the way, leaves the root,
    /// or is a secret: under `secrets/`, or an age identity of the run.
    fn check_inside(&self, needle: &str, path: &Path) -> Result<(), String> {
        let real = path
            .canonicalize()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if !real.starts_with(&self.real_root) {
            return Err(format!(
                "{} resolves to {}, outside the repository; lookups read only files under {}",
                q(needle),
                real.display(),
                self.root.display()
            ));
        }
        if real.starts_with(self.real_root.join("secrets")) {
            return Err(format!(
                "{} is under secrets/; lookups do not read secret files (templates use the variables they hold)",
                q(needle)
            ));
        }
        if self.denied.contains(&real) {
            return Err(format!(
                "{} is an age identity this run decrypts secrets with; lookups do not read it",
                q(needle)
            ));
        }
        Ok(())
    }

    /// The text of the file at `path` (UTF-8, at most [`MAX_READ`] bytes), read once.
    fn read_text(&self, path: &Path) -> Result<Arc<str>, String> {
        if let Ok(cache) = self.cache.lock()
            && let Some(hit) = cache.get(path)
        {
            return hit.clone();
        }
        let read = || -> Result<Arc<str>, String> {
            let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let mut bytes = Vec::new();
            file.take(MAX_READ + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if bytes.len() as u64 > MAX_READ {
                return Err(format!("{}: larger than {MAX_READ} bytes", path.display()));
            }
            String::from_utf8(bytes)
                .map(Arc::from)
                .map_err(|_| format!("{}: not UTF-8 text", path.display()))
        };
        let result = read();
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(path.to_path_buf(), result.clone());
        }
        result
    }
}

/// `path` without `.` and with `..` applied (Python's `normpath`, which `unfrackpath` uses).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `s` quoted as Python's `repr` (Ansible's messages).
fn q(s: &str) -> String {
    py_repr(&Value::from(s))
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

/// Register `lookup`, `query` and `q` in `env`.
pub(super) fn register(env: &mut minijinja::Environment<'static>, shared: &Arc<super::Shared>) {
    let s = Arc::clone(shared);
    env.add_function(
        "lookup",
        move |name: String, terms: Rest<Value>, kwargs: Kwargs| {
            invoke(&s, &name, terms.0, &kwargs, false)
        },
    );
    for alias in ["query", "q"] {
        let s = Arc::clone(shared);
        env.add_function(
            alias,
            move |name: String, terms: Rest<Value>, kwargs: Kwargs| {
                invoke(&s, &name, terms.0, &kwargs, true)
            },
        );
    }
}

fn invalid(msg: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg)
}

/// One lookup call, as `_invoke_lookup` handles it: `wantlist` and `errors` taken out, the
/// plugin run, its failure handled by `errors`, its list munged unless a list was wanted.
fn invoke(
    shared: &Arc<super::Shared>,
    name: &str,
    terms: Vec<Value>,
    kwargs: &Kwargs,
    query: bool,
) -> Result<Value, Error> {
    let short = name
        .strip_prefix("ansible.builtin.")
        .or_else(|| name.strip_prefix("ansible.legacy."))
        .unwrap_or(name);
    let wantlist = query
        || match kwargs.get::<Option<Value>>("wantlist")? {
            Some(v) => v.is_true(),
            None => false,
        };
    let errors: Option<String> = kwargs.get("errors")?;
    refuse(shared, short)?;
    let result = run(shared, short, &terms, kwargs).and_then(|r| {
        kwargs
            .assert_all_used()
            .map(|()| r)
            .map_err(|e| e.detail().unwrap_or("unknown option").to_string())
    });
    let list = match result {
        Ok(list) => list,
        Err(msg) => {
            return match errors.as_deref() {
                // Ansible logs (`warn`: displays) the failure; deploy has no warning channel
                // in rendering, so both leave the value empty silently.
                Some("warn" | "ignore") => Ok(if wantlist {
                    Value::from(Vec::<Value>::new())
                } else {
                    Value::from(())
                }),
                _ => Err(invalid(format!("The lookup plugin '{name}' failed: {msg}"))),
            };
        }
    };
    if wantlist || list.is_empty() {
        return Ok(Value::from(list));
    }
    if list.len() == 1 {
        return Ok(list.into_iter().next().unwrap_or_default());
    }
    if list.iter().all(|v| v.kind() == ValueKind::String) {
        let joined: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
        return Ok(Value::from(joined.join(",")));
    }
    Ok(Value::from(list))
}

/// The lookups deploy will not run at all (whatever `errors=` says).
fn refuse(shared: &super::Shared, short: &str) -> Result<(), Error> {
    let mut kind = ErrorKind::InvalidOperation;
    let msg = match short {
        _ if SUPPORTED.contains(&short) => return Ok(()),
        "pipe" | "lines" if shared.lookups.allow_commands => return Ok(()),
        "pipe" | "lines" => format!(
            "lookup '{short}' runs a command on the controller; deploy refuses it unless deploy.yml sets `settings: {{allow_command_lookups: true}}`"
        ),
        "url" => "lookup 'url' reaches the network from the controller; deploy does not run it"
            .to_string(),
        "password" => "lookup 'password' writes files on the controller; deploy does not run it (keep the value in secrets/)".to_string(),
        _ if UNSUPPORTED.contains(&short) => format!(
            "lookup '{short}' is not supported by deploy; it offers {}",
            SUPPORTED.join(", ")
        ),
        _ => {
            kind = ErrorKind::UnknownFunction;
            format!(
                "no lookup named '{}'; deploy offers {}",
                crate::text::prefix(short, 80),
                SUPPORTED.join(", ")
            )
        }
    };
    Err(Error::new(kind, msg))
}

type Plugin = Result<Vec<Value>, String>;

fn run(shared: &Arc<super::Shared>, name: &str, terms: &[Value], kw: &Kwargs) -> Plugin {
    let lookups = &shared.lookups;
    let opt = |key: &str| -> Result<Option<Value>, String> {
        kw.get::<Option<Value>>(key)
            .map_err(|e| e.detail().unwrap_or("bad option").to_string())
    };
    match name {
        "env" => {
            let default = opt("default")?.unwrap_or_else(|| Value::from(""));
            terms
                .iter()
                .map(|t| {
                    let t = term_str(t)?;
                    let var = t
                        .split_whitespace()
                        .next()
                        .ok_or("an empty environment variable name")?;
                    Ok(lookups
                        .env_var(var)
                        .map(Value::from)
                        .unwrap_or_else(|| default.clone()))
                })
                .collect()
        }
        "file" => {
            let lstrip = opt("lstrip")?.is_some_and(|v| v.is_true());
            let rstrip = opt("rstrip")?.is_none_or(|v| v.is_true());
            terms
                .iter()
                .map(|t| {
                    let t = term_str(t)?;
                    let fail = |why: String| format!("Unable to access the file {}: {why}", q(&t));
                    let path = match lookups.find(Some("files"), &t).map_err(fail)? {
                        Ok(p) => p,
                        Err(tried) => return Err(fail(not_found(&tried))),
                    };
                    let text = lookups.read_text(&path).map_err(fail)?;
                    let mut s: &str = &text;
                    if lstrip {
                        s = s.trim_start();
                    }
                    if rstrip {
                        s = s.trim_end();
                    }
                    Ok(Value::from(s))
                })
                .collect()
        }
        "template" => template(shared, terms, &opt),
        "vars" => {
            let default = opt("default")?;
            let root = super::root_vars().unwrap_or_default();
            terms
                .iter()
                .map(|t| {
                    let Some(t) = t.as_str() else {
                        return Err(format!(
                            "Variable name must be 'str' not '{}'.",
                            super::filters::type_name(t)
                        ));
                    };
                    match root.get_attr(t) {
                        Ok(v) if !v.is_undefined() => Ok(v),
                        _ => match &default {
                            Some(d) if !d.is_none() => Ok(d.clone()),
                            _ => Err(format!("No variable named {} was found.", q(t))),
                        },
                    }
                })
                .collect()
        }
        "first_found" => first_found(lookups, terms, &opt),
        "fileglob" => terms
            .iter()
            .map(|t| fileglob(lookups, &term_str(t)?))
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.into_iter().flatten().collect()),
        "items" => Ok(flatten(terms)),
        "indexed_items" => Ok(flatten(terms)
            .into_iter()
            .enumerate()
            .map(|(i, v)| Value::from(vec![Value::from(i), v]))
            .collect()),
        "list" => Ok(terms.to_vec()),
        "dict" => {
            let mut out = Vec::new();
            for t in terms {
                if t.kind() != ValueKind::Map {
                    return Err(format!(
                        "the 'dict' lookup plugin expects a dictionary, got '{}' of type {}",
                        py_str(t),
                        super::filters::type_name(t)
                    ));
                }
                for key in t.try_iter().map_err(|e| e.to_string())? {
                    let value = t.get_item(&key).map_err(|e| e.to_string())?;
                    out.push(Value::from_pairs([
                        (Value::from("key"), key),
                        (Value::from("value"), value),
                    ]));
                }
            }
            Ok(out)
        }
        "nested" => {
            let mut lists = terms.iter().map(items_of);
            let Some(first) = lists.next() else {
                return Err("with_nested requires at least one element in the nested list".into());
            };
            let mut result: Vec<Value> = first?;
            for next in lists {
                let next = next?;
                let mut combined = Vec::new();
                for x in &result {
                    for y in &next {
                        combined.push(Value::from(flatten(&[x.clone(), y.clone()])));
                    }
                }
                result = combined;
            }
            Ok(result
                .into_iter()
                .map(|x| Value::from(flatten(std::slice::from_ref(&x))))
                .collect())
        }
        "together" => {
            if terms.is_empty() {
                return Err("with_together requires at least one element in each list".into());
            }
            let lists: Vec<Vec<Value>> = terms.iter().map(items_of).collect::<Result<_, _>>()?;
            let longest = lists.iter().map(Vec::len).max().unwrap_or(0);
            Ok((0..longest)
                .map(|i| {
                    let row: Vec<Value> = lists
                        .iter()
                        .map(|l| l.get(i).cloned().unwrap_or_else(|| Value::from(())))
                        .collect();
                    Value::from(flatten(&row))
                })
                .collect())
        }
        "sequence" => sequence(terms, &opt),
        "pipe" | "lines" => terms
            .iter()
            .map(|t| {
                let t = term_str(t)?;
                let out = command(lookups, &t)?;
                Ok(if name == "pipe" {
                    vec![Value::from(out.trim_end())]
                } else {
                    crate::text::python_splitlines(&out)
                        .into_iter()
                        .map(Value::from)
                        .collect()
                })
            })
            .collect::<Result<Vec<Vec<Value>>, String>>()
            .map(|v| v.into_iter().flatten().collect()),
        other => Err(format!("lookup '{other}' is not supported")),
    }
}

fn term_str(t: &Value) -> Result<String, String> {
    match t.as_str() {
        Some(s) => Ok(s.to_string()),
        None if t.is_undefined() => Err("a term is undefined".into()),
        None => Ok(py_str(t)),
    }
}

fn not_found(tried: &[PathBuf]) -> String {
    let tried: Vec<String> = tried.iter().map(|p| shown(p)).collect();
    format!("not found (looked in {})", tried.join(", "))
}

/// `LookupBase._flatten`: lists among `terms` spliced in, one level.
fn flatten(terms: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    for t in terms {
        if t.kind() == ValueKind::Seq {
            if let Ok(items) = t.try_iter() {
                out.extend(items);
            }
        } else {
            out.push(t.clone());
        }
    }
    out
}

fn items_of(t: &Value) -> Result<Vec<Value>, String> {
    match t.kind() {
        ValueKind::Seq | ValueKind::Map | ValueKind::String => t
            .try_iter()
            .map(Iterator::collect)
            .map_err(|e| e.to_string()),
        _ => Err(format!("{} is not a list", py_str(t))),
    }
}

type Opt<'a> = dyn Fn(&str) -> Result<Option<Value>, String> + 'a;

/// The `template` lookup: each term found under `templates/` (then the root), rendered with
/// the render's variables plus `template_vars`, its own `#jinja2:` header applied over the
/// lookup's options.
fn template(shared: &Arc<super::Shared>, terms: &[Value], opt: &Opt) -> Plugin {
    let mut base = super::header::Header::default();
    let text_opt =
        |key: &str| -> Result<Option<String>, String> { Ok(opt(key)?.map(|v| py_str(&v))) };
    if let Some(v) = text_opt("variable_start_string")? {
        base.variable.0 = v;
    }
    if let Some(v) = text_opt("variable_end_string")? {
        base.variable.1 = v;
    }
    if let Some(v) = text_opt("comment_start_string")? {
        base.comment.0 = v;
    }
    if let Some(v) = text_opt("comment_end_string")? {
        base.comment.1 = v;
    }
    if let Some(v) = opt("trim_blocks")? {
        base.trim_blocks = v.is_true();
    }
    // Deprecated and without effect in 2.19.
    let _ = (opt("convert_data")?, opt("jinja2_native")?);
    let extra = opt("template_vars")?;
    let root = super::root_vars().unwrap_or_default();
    let vars = match extra {
        Some(extra) if extra.kind() == ValueKind::Map => {
            minijinja::value::merge_maps([extra, root])
        }
        Some(other) if !other.is_none() => {
            return Err(format!(
                "template_vars must be a dict, not {}",
                super::filters::type_name(&other)
            ));
        }
        _ => root,
    };
    let mut out = Vec::new();
    for t in terms {
        let t = term_str(t)?;
        let path = match shared.lookups.find(Some("templates"), &t)? {
            Ok(p) => p,
            Err(tried) => {
                return Err(format!(
                    "the template file {t} could not be found for the lookup: {}",
                    not_found(&tried)
                ));
            }
        };
        let source = shared.lookups.read_text(&path)?;
        let origin = path
            .strip_prefix(shared.lookups.root())
            .map(shown)
            .unwrap_or_else(|_| shown(&path));
        let value = super::render_lookup_template(
            shared,
            &origin,
            &source,
            &base,
            &vars,
            MAX_TEMPLATE_DEPTH,
        )
        .map_err(|e| match e.line {
            Some(line) => format!("{}:{line}: {}", e.template, e.message),
            None => format!("{}: {}", e.template, e.message),
        })?;
        out.push(value);
    }
    Ok(out)
}

fn first_found(lookups: &Lookups, terms: &[Value], opt: &Opt) -> Plugin {
    let skip_opt = opt("skip")?.is_some_and(|v| v.is_true());
    let files_opt = opt("files")?;
    let paths_opt = opt("paths")?;
    let mut skip = skip_opt;
    let mut search: Vec<String> = Vec::new();
    let terms: Vec<Value> = if terms.is_empty() {
        files_opt.iter().cloned().collect()
    } else {
        terms.to_vec()
    };
    fn collect(
        term: &Value,
        paths_opt: &Option<Value>,
        skip: &mut bool,
        out: &mut Vec<String>,
    ) -> Result<(), String> {
        let (files, paths) = match term.kind() {
            ValueKind::Map => {
                if let Ok(s) = term.get_attr("skip")
                    && !s.is_undefined()
                {
                    *skip = s.is_true();
                }
                let f = term.get_attr("files").unwrap_or_default();
                let p = term.get_attr("paths").unwrap_or_default();
                (strings(&f, ",;")?, strings(&p, ",:;")?)
            }
            ValueKind::String => (
                strings(term, ",;")?,
                match paths_opt {
                    Some(p) => strings(p, ",:;")?,
                    None => Vec::new(),
                },
            ),
            ValueKind::Seq => {
                for t in term.try_iter().map_err(|e| e.to_string())? {
                    collect(&t, paths_opt, skip, out)?;
                }
                return Ok(());
            }
            _ => {
                return Err(format!(
                    "Invalid term supplied. A string, dict or list is required, not '{}').",
                    super::filters::type_name(term)
                ));
            }
        };
        if paths.is_empty() {
            out.extend(files);
        } else {
            for p in &paths {
                for f in &files {
                    out.push(if f.starts_with('/') {
                        f.clone()
                    } else {
                        format!("{}/{f}", p.trim_end_matches('/'))
                    });
                }
            }
        }
        Ok(())
    }
    for t in &terms {
        collect(t, &paths_opt, &mut skip, &mut search)?;
    }
    for f in &search {
        // From a template Ansible passes no subdirectory (it looks in `ROOT/None/NAME`).
        if let Ok(p) = lookups.find(None, f)? {
            return Ok(vec![Value::from(shown(&p))]);
        }
    }
    if skip {
        return Ok(Vec::new());
    }
    Err("No file was found when using first_found.".into())
}

/// A string or list of strings, each split on any of `seps` (Ansible's `_split_on`).
fn strings(v: &Value, seps: &str) -> Result<Vec<String>, String> {
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => Ok(Vec::new()),
        ValueKind::String => Ok(v
            .as_str()
            .unwrap_or_default()
            .split(|c| seps.contains(c))
            .map(str::to_string)
            .collect()),
        ValueKind::Seq => {
            let mut out = Vec::new();
            for item in v.try_iter().map_err(|e| e.to_string())? {
                out.extend(strings(&item, seps)?);
            }
            Ok(out)
        }
        _ => Err(format!("{} is not a string or a list", py_str(v))),
    }
}

/// `fileglob`: the files matching the term's last part, in its folder found as `file` finds
/// one (or in `ROOT/files`, then `ROOT`), sorted (Python's `glob` gives listing order).
fn fileglob(lookups: &Lookups, term: &str) -> Result<Vec<Value>, String> {
    let (dir, pattern) = match term.rsplit_once('/') {
        Some((d, p)) => (Some(d), p),
        None => (None, term),
    };
    let dirs: Vec<PathBuf> = match dir {
        Some(d) => match lookups.find(Some("files"), if d.is_empty() { "/" } else { d })? {
            Ok(p) => vec![p],
            Err(_) => Vec::new(),
        },
        None => vec![lookups.root.join("files"), lookups.root.clone()],
    };
    let re = glob_regex(pattern)?;
    for d in dirs {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut found: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().is_file())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| re.is_match(n))
            .collect();
        if !found.is_empty() {
            found.sort();
            let mut out = Vec::new();
            for n in found {
                let p = d.join(&n);
                lookups.check_inside(term, &p)?;
                out.push(Value::from(shown(&p)));
            }
            return Ok(out);
        }
    }
    Ok(Vec::new())
}

/// Python's `fnmatch` for one path part, as `glob` uses it: a name starting with `.` is
/// matched only by a pattern starting with `.`.
struct Glob {
    re: regex::Regex,
    hidden: bool,
}

impl Glob {
    fn is_match(&self, name: &str) -> bool {
        (self.hidden || !name.starts_with('.')) && self.re.is_match(name)
    }
}

fn glob_regex(pattern: &str) -> Result<Glob, String> {
    let mut re = String::from("^(?s:");
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            '[' => {
                // `[` ... `]`, where a `]` right after `[` or `[!` belongs to the set.
                let mut j = i + 1;
                if chars.get(j) == Some(&'!') {
                    j += 1;
                }
                if chars.get(j) == Some(&']') {
                    j += 1;
                }
                match chars[j.min(chars.len())..].iter().position(|&c| c == ']') {
                    Some(off) => {
                        let end = j + off;
                        let inner: String = chars[i + 1..end].iter().collect();
                        let (neg, inner) = match inner.strip_prefix('!') {
                            Some(rest) => (true, rest.to_string()),
                            None => (false, inner),
                        };
                        let escaped: String = inner
                            .chars()
                            .map(|c| match c {
                                '\\' | '[' | ']' | '^' | '&' | '~' => format!("\\{c}"),
                                c => c.to_string(),
                            })
                            .collect();
                        re.push('[');
                        if neg {
                            re.push('^');
                        }
                        re.push_str(&escaped);
                        re.push(']');
                        i = end;
                    }
                    None => re.push_str("\\["),
                }
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    re.push_str(")$");
    let re = regex::Regex::new(&re).map_err(|e| format!("bad glob {pattern:?}: {e}"))?;
    Ok(Glob {
        re,
        hidden: pattern.starts_with('.'),
    })
}

/// Most items one `sequence` term may give.
const MAX_SEQUENCE: i64 = 100_000;

fn too_long(start: i64, count: i64, stride: i64) -> String {
    format!(
        "a sequence of {count} items from {start} by {stride} is longer than {MAX_SEQUENCE} items"
    )
}

/// The options of `sequence`.
const SEQUENCE_FIELDS: [&str; 5] = ["start", "end", "count", "stride", "format"];

/// `sequence`: `[start-]end[/stride][:format]` or `start= end= count= stride= format=`.
fn sequence(terms: &[Value], opt: &Opt) -> Plugin {
    let mut results = Vec::new();
    let kw: Vec<(&str, Option<Value>)> = SEQUENCE_FIELDS
        .iter()
        .map(|k| opt(k).map(|v| (*k, v)))
        .collect::<Result<_, _>>()?;
    let terms: Vec<String> = if terms.is_empty() && kw.iter().any(|(_, v)| v.is_some()) {
        vec![String::new()]
    } else {
        terms.iter().map(term_str).collect::<Result<_, _>>()?
    };
    for term in terms {
        let mut fields: HashMap<&str, String> = HashMap::new();
        for (k, v) in &kw {
            if let Some(v) = v {
                fields.insert(k, py_str(v));
            }
        }
        if !shortcut(&term, &mut fields) {
            let mut unknown = Vec::new();
            for part in term.split_whitespace() {
                match part.split_once('=') {
                    Some((k, v)) => match SEQUENCE_FIELDS.iter().find(|f| **f == k) {
                        Some(key) => {
                            fields.insert(key, v.to_string());
                        }
                        None => unknown.push(q(k)),
                    },
                    None => unknown.push("'_raw_params'".to_string()),
                }
            }
            if !unknown.is_empty() {
                return Err(format!(
                    "unrecognized arguments to with_sequence: [{}]",
                    unknown.join(", ")
                ));
            }
        }
        let int = |k: &str| -> Result<Option<i64>, String> {
            fields
                .get(k)
                .map(|v| {
                    parse_int(v).ok_or_else(|| {
                        format!("Invalid value provided for 'integer' in '{k}': {v:?}")
                    })
                })
                .transpose()
        };
        let start = int("start")?.unwrap_or(1);
        let stride = int("stride")?.unwrap_or(1);
        let count = int("count")?;
        let mut end = int("end")?;
        let format = fields.get("format").cloned().unwrap_or_else(|| "%d".into());
        match (count, end) {
            (None, None) => return Err("must specify count or end in with_sequence".into()),
            (Some(_), Some(_)) => {
                return Err("can't specify both count and end in with_sequence".into());
            }
            (Some(0), None) => continue,
            (Some(c), None) => {
                end = Some(
                    c.checked_mul(stride)
                        .and_then(|n| n.checked_add(start))
                        .and_then(|n| n.checked_sub(1))
                        .ok_or_else(|| too_long(start, c, stride))?,
                );
            }
            _ => {}
        }
        let end = end.unwrap_or(start);
        if stride > 0 && end < start {
            return Err("to count backwards make stride negative".into());
        }
        if stride < 0 && end > start {
            return Err("to count forward don't make stride negative".into());
        }
        if stride == 0 {
            continue;
        }
        if format.matches('%').count() != 1 {
            return Err(format!("bad formatting string: {format}"));
        }
        if end
            .checked_sub(start)
            .and_then(|d| d.checked_div(stride))
            .is_none_or(|n| n > MAX_SEQUENCE)
        {
            return Err(format!(
                "a sequence from {start} to {end} is longer than {MAX_SEQUENCE} items"
            ));
        }
        let mut i = start;
        while (stride > 0 && i <= end) || (stride < 0 && i >= end) {
            results
                .push(Value::from(percent_format(&format, i).ok_or_else(
                    || format!("problem formatting {i} with {format:?}"),
                )?));
            match i.checked_add(stride) {
                Some(next) => i = next,
                None => break,
            }
        }
    }
    Ok(results)
}

/// The shortcut form `[start-]end[/stride][:format]` (case-insensitive hex digits).
fn shortcut(term: &str, fields: &mut HashMap<&str, String>) -> bool {
    static RE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?i)^((0?x?[0-9a-f]+)-)?(0?x?[0-9a-f]+)(/(0?x?[0-9a-f]+))?(:(.+))?$")
            .expect("regex")
    });
    let Some(c) = RE.captures(term) else {
        return false;
    };
    for (key, group) in [("start", 2), ("end", 3), ("stride", 5), ("format", 7)] {
        if let Some(m) = c.get(group) {
            fields.insert(key, m.as_str().to_string());
        }
    }
    true
}

/// An integer option as ansible-core 2.19's `ensure_type(value, 'integer')` converts a
/// string: Python's `Decimal(value)`, when it is a whole number (`10`, `010`, ` 7 `, `1_000`,
/// `1e3`, `5.0`; not `0x10` or `5.5`).
fn parse_int(s: &str) -> Option<i64> {
    let t = s.trim().replace('_', "");
    if let Ok(v) = t.parse::<i64>() {
        return Some(v);
    }
    let f: f64 = t.parse().ok()?;
    (f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}

/// Python's `format % i` for a format holding one conversion (`%d`, `%05x`, `host%02d`, ...).
fn percent_format(format: &str, i: i64) -> Option<String> {
    let at = format.find('%')?;
    let (before, rest) = (&format[..at], &format[at + 1..]);
    let mut chars = rest.char_indices().peekable();
    let mut flags = String::new();
    while let Some(&(_, c)) = chars.peek() {
        if "-+ 0#".contains(c) {
            flags.push(c);
            chars.next();
        } else {
            break;
        }
    }
    let mut width = String::new();
    while let Some(&(_, c)) = chars.peek() {
        if c.is_ascii_digit() {
            width.push(c);
            chars.next();
        } else {
            break;
        }
    }
    let mut precision: Option<usize> = None;
    if let Some(&(_, '.')) = chars.peek() {
        chars.next();
        let mut p = String::new();
        while let Some(&(_, c)) = chars.peek() {
            if c.is_ascii_digit() {
                p.push(c);
                chars.next();
            } else {
                break;
            }
        }
        // Bounded: `%.99999999f` must not allocate what Python would.
        precision = Some(p.parse::<usize>().unwrap_or(4096).min(4096));
    }
    let (idx, conv) = chars.next()?;
    let after = &rest[idx + conv.len_utf8()..];
    let alt = flags.contains('#');
    let digits = match conv {
        'd' | 'i' | 'u' => i.unsigned_abs().to_string(),
        'x' => format!("{}{:x}", if alt { "0x" } else { "" }, i.unsigned_abs()),
        'X' => format!("{}{:X}", if alt { "0X" } else { "" }, i.unsigned_abs()),
        'o' => format!("{}{:o}", if alt { "0o" } else { "" }, i.unsigned_abs()),
        's' | 'r' => i.to_string(),
        'f' | 'F' => format!("{:.*}", precision.unwrap_or(6), i.unsigned_abs() as f64),
        _ => return None,
    };
    let digits = match (conv, precision) {
        ('d' | 'i' | 'u' | 'x' | 'X' | 'o', Some(p)) if digits.len() < p => {
            format!("{}{digits}", "0".repeat(p - digits.len()))
        }
        _ => digits,
    };
    let sign = if conv == 's' || conv == 'r' {
        ""
    } else if i < 0 {
        "-"
    } else if flags.contains('+') {
        "+"
    } else if flags.contains(' ') {
        " "
    } else {
        ""
    };
    let body = format!("{sign}{digits}");
    let width: usize = width.parse().unwrap_or(0).min(4096);
    let padded = if body.chars().count() >= width {
        body
    } else if flags.contains('-') {
        format!("{body:<width$}")
    } else if flags.contains('0') && conv != 's' && conv != 'r' {
        let pad = "0".repeat(width - body.chars().count());
        format!("{sign}{pad}{digits}")
    } else {
        format!("{body:>width$}")
    };
    Some(format!("{before}{padded}{after}"))
}

/// `sh -c CMD` in the repository, its stdout (at most [`MAX_READ`] bytes); a failure is an
/// error naming the command and its exit status, as Ansible's `pipe` reports it.
fn command(lookups: &Lookups, cmd: &str) -> Result<String, String> {
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(&lookups.root)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run sh -c {cmd:?}: {e}"))?;
    let mut out = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        stdout
            .take(MAX_READ + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("reading the output of {cmd:?}: {e}"))?;
    }
    if out.len() as u64 > MAX_READ {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("{cmd:?} printed more than {MAX_READ} bytes"));
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for {cmd:?}: {e}"))?;
    if !status.success() {
        return Err(format!(
            "lookup_plugin.pipe({cmd}) returned {}",
            status.code().unwrap_or(-1)
        ));
    }
    String::from_utf8(out).map_err(|_| format!("the output of {cmd:?} is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_formats_like_python() {
        assert_eq!(percent_format("%d", 5).as_deref(), Some("5"));
        assert_eq!(percent_format("host%02d", 3).as_deref(), Some("host03"));
        assert_eq!(percent_format("0x%02x", 10).as_deref(), Some("0x0a"));
        assert_eq!(percent_format("%04x", 0xf00).as_deref(), Some("0f00"));
        assert_eq!(percent_format("%-3d|", 7).as_deref(), Some("7  |"));
        assert_eq!(percent_format("%+d", 7).as_deref(), Some("+7"));
        assert_eq!(percent_format("%q", 7), None);
        let wide = percent_format("%.99999999999999999999d", 1).unwrap_or_default();
        assert!(wide.len() <= 4096, "{}", wide.len());
    }

    #[test]
    fn globs_follow_python() {
        let m = |p: &str, n: &str| glob_regex(p).expect("glob").is_match(n);
        assert!(m("*.conf", "a.conf"));
        assert!(!m("*.conf", ".a.conf"));
        assert!(m(".*", ".hidden"));
        assert!(m("a?[0-9]", "ab7"));
        assert!(!m("a[!0-9]", "a7"));
        assert!(!m("*.conf", "a.conf.bak"));
    }

    #[test]
    fn huge_sequences_are_refused_without_overflow() {
        let opt = |_: &str| -> Result<Option<Value>, String> { Ok(None) };
        for term in [
            "count=9223372036854775807 stride=9223372036854775807",
            "start=-9223372036854775807 end=9223372036854775807",
            "start=0 end=200000",
        ] {
            let err = sequence(&[Value::from(term)], &opt).expect_err(term);
            assert!(err.contains("longer than"), "{term}: {err}");
        }
        let ok = sequence(
            &[Value::from(
                "start=9223372036854775806 end=9223372036854775807",
            )],
            &opt,
        );
        assert_eq!(ok.map(|v| v.len()), Ok(2));
    }

    #[test]
    fn ints_parse_as_ansible_options() {
        assert_eq!(parse_int("0x0f00"), None);
        assert_eq!(parse_int("010"), Some(10));
        assert_eq!(parse_int("1e3"), Some(1000));
        assert_eq!(parse_int("5.5"), None);
        assert_eq!(parse_int("10"), Some(10));
        assert_eq!(parse_int("-2"), Some(-2));
        assert_eq!(parse_int("x"), None);
    }
}
