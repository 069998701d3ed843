//! Rendered desired state -> check failures, before any host is contacted.
//!
//! In: every selected host's [`HostDesired`] (rendered files and variables), the other hosts
//! of the inventory rendered too (a route on motoko is checked against what wintermute's
//! vLLM config says), the `checks:` of deploy.yml and the [`Renderer`] to evaluate them.
//! Out: a [`Report`] listing each failure with host, file, key, what is wrong and what it
//! should be. Pure: no I/O; nothing here talks to a host.
//!
//! Built in (one module each):
//! - [`routes`]: a LiteLLM route (a rendered file whose YAML has a `model_list` list) whose
//!   `litellm_params.api_base` names an inventory host (its `ansible_host` or name) with a
//!   rendered vLLM config (a file whose YAML has a `vllm` mapping) agrees with it in scheme,
//!   port, path (`litellm-route-api-base`) and model name (`litellm-route-served-name`, the
//!   seeds' 404). A route to a host without one is left alone, with a note.
//! - [`env`] (`litellm-env`): every `os.environ/NAME` the LiteLLM config reads is defined
//!   for the Docker Compose service that runs it (its rendered `env_file` or `environment:`).
//! - [`router`] (`litellm-router-names`): `model_group_alias`, `fallbacks`,
//!   `context_window_fallbacks`, `content_policy_fallbacks` and `default_fallbacks` name only
//!   `model_name`s, in the shapes LiteLLM's router reads (the seeds' router crash).
//!
//! Operators' own: `checks:` of deploy.yml ([`CheckSpec`]), each a Jinja expression
//! evaluated per host with its variables, `files` and `hostfiles`.

use indexmap::IndexMap;
use minijinja::Value;
use serde_json::Value as Json;

use crate::desired::{FileSource, HostDesired};
use crate::manifest::CheckSpec;
use crate::render::Renderer;

pub mod env;
pub mod router;
pub mod routes;

/// One check that did not hold for one host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Failure {
    /// The check's name.
    pub check: String,
    pub host: String,
    /// The rendered file (its dest on the host), when the check is about one.
    pub file: Option<String>,
    /// Where in that file, e.g. `model_list[1].litellm_params.model`.
    pub key: Option<String>,
    /// What is wrong.
    pub problem: String,
    /// What it should be, when known.
    pub expected: Option<String>,
}

/// What the checks found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    /// How many (check, host or route) pairs were evaluated.
    pub evaluated: usize,
    pub failures: Vec<Failure>,
    /// Hosts the checks ran for.
    pub hosts: usize,
    /// What the checks left alone and why (`--verbose` shows them).
    pub notes: Vec<Note>,
}

/// Something a check did not judge, and why (e.g. a route to a host deploy does not manage).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Note {
    pub check: String,
    pub host: String,
    pub file: String,
    /// Where in the file; empty when about the whole file.
    pub key: String,
    pub text: String,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// A rendered file's content as checks see it: the YAML/JSON value when the text parses as
/// a mapping or a list, else the text itself. [`crate::yaml::fast`] first, which gives the
/// same value in a fraction of the time when it knows it, then serde-saphyr.
pub fn parse_file(content: &[u8]) -> Json {
    // What `from_utf8_lossy` gives, at the cost of a check when the text is UTF-8 (its
    // chunked walk was 2% of a plan's instructions).
    let text = match std::str::from_utf8(content) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(content),
    };
    if let Some(value) = crate::yaml::fast::parse(&text) {
        return value;
    }
    match crate::yaml::try_parse::<Json>(&text) {
        Some(v @ (Json::Object(_) | Json::Array(_))) => v,
        _ => Json::String(text.into_owned()),
    }
}

/// Whether a file is in `files`: every rendered template; a `src:` copy when it is YAML or
/// JSON text (by its name), since a folder of other files would only cost parsing.
fn checked(file: &crate::desired::DesiredFile) -> bool {
    match &file.source {
        FileSource::Template(_) => true,
        FileSource::File(name) => {
            let name = name.to_ascii_lowercase();
            [".yml", ".yaml", ".json"].iter().any(|e| name.ends_with(e))
                && !crate::diff::is_binary(&file.content)
        }
    }
}

/// One host's rendered files, as the checks keep them.
struct Parsed<'a> {
    host: &'a HostDesired,
    /// Every parsed file, kept only for operators' checks (`files`, `hostfiles`).
    files: Vec<(&'a str, Json)>,
    /// Each LiteLLM config of a selected host (a file with a `model_list` list).
    configs: Vec<Config<'a>>,
}

/// One LiteLLM config: its routes (all the route check needs, which waits for every host's
/// vLLM servers) and what the checks that need only this host found.
struct Config<'a> {
    dest: &'a str,
    routes: Vec<routes::Route>,
    /// The `litellm-env` and `litellm-router-names` findings, in that order.
    found: Report,
}

/// Runs every check for `selected`; `others` (the rest of the inventory, rendered) only
/// provide what routes point at.
pub fn run(
    selected: &[HostDesired],
    others: &[HostDesired],
    specs: &[CheckSpec],
    renderer: &Renderer,
) -> Report {
    // Operators' checks see every host's parsed files (`files`, `hostfiles`). The built-in
    // ones need only what each vLLM config serves and the selected hosts' routes, so without
    // an operator check each parsed file is dropped once read, its checks done: every
    // rendered file of the inventory parsed at once was the plan's largest memory peak (24
    // of 70 MB at 300 hosts), and the selected hosts' LiteLLM configs kept whole until the
    // routes were checked were 36 of 200 MB at 1000 hosts.
    let keep_all = specs
        .iter()
        .any(|spec| selected.iter().any(|h| applies(spec.hosts.as_deref(), h)));
    let mut parsed: Vec<Parsed> = Vec::with_capacity(selected.len());
    let mut servers: Vec<routes::VllmServer> = Vec::new();
    let hosts: Vec<(usize, &HostDesired)> = selected.iter().chain(others).enumerate().collect();
    // Parsing every rendered file is most of the checks' time: spread over the cores.
    let each = crate::par::map(&hosts, |&(index, host)| {
        let files: Vec<(&str, Json)> = host
            .files
            .iter()
            .filter(|f| checked(f))
            .map(|f| (f.dest.as_str(), parse_file(&f.content)))
            .collect();
        let servers = routes::vllm_servers(host, &files);
        let mut configs = Vec::new();
        if index < selected.len() {
            let envs = env::service_envs(host, &files);
            for (dest, value) in &files {
                if let Some(list) = value.get("model_list").and_then(Json::as_array) {
                    let mut found = Report::default();
                    if let Some(env) = envs.iter().find(|e| e.config == *dest) {
                        env::check(host, value, env, &mut found);
                    }
                    router::check(host, dest, value, list, &mut found);
                    configs.push(Config {
                        dest,
                        routes: routes::routes(list),
                        found,
                    });
                }
            }
        }
        let p = Parsed {
            host,
            files: if keep_all { files } else { Vec::new() },
            configs,
        };
        ((keep_all || index < selected.len()).then_some(p), servers)
    });
    for (p, host_servers) in each {
        servers.extend(host_servers);
        parsed.extend(p);
    }
    let mut report = Report {
        hosts: selected.len(),
        ..Report::default()
    };
    // `hostfiles` (every host's parsed files as template values) is only built when an
    // operator's check runs: it is a copy of every rendered file of the inventory.
    let mut hostfiles: Option<Value> = None;
    let servers = routes::Servers::new(servers);
    for p in &parsed[..selected.len()] {
        for config in &p.configs {
            routes::check(p.host, config.dest, &config.routes, &servers, &mut report);
            report.evaluated += config.found.evaluated;
            report
                .failures
                .extend(config.found.failures.iter().cloned());
            report.notes.extend(config.found.notes.iter().cloned());
        }
        for spec in specs {
            if applies(spec.hosts.as_deref(), p.host) {
                let hostfiles = hostfiles.get_or_insert_with(|| hostfiles_value(&parsed));
                run_spec(spec, p, hostfiles, renderer, &mut report);
            }
        }
    }
    report
}

/// Whether a check's `hosts:` (group or host names, `:` or `,` separated; none or `all`
/// for every host) covers `host`.
fn applies(pattern: Option<&str>, host: &HostDesired) -> bool {
    let Some(pattern) = pattern else {
        return true;
    };
    let groups: Vec<String> = host
        .vars
        .get_attr("group_names")
        .ok()
        .and_then(|v| {
            v.try_iter()
                .ok()
                .map(|it| it.map(|g| g.to_string()).collect())
        })
        .unwrap_or_default();
    pattern
        .split([':', ','])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .any(|p| p == "all" || p == "*" || p == host.host || groups.iter().any(|g| g == p))
}

fn files_value(p: &Parsed) -> Value {
    let map: IndexMap<&str, Value> = p
        .files
        .iter()
        .map(|(dest, v)| (*dest, Value::from(minijinja::value::Serde(v))))
        .collect();
    Value::from_pairs(map)
}

fn hostfiles_value(parsed: &[Parsed]) -> Value {
    let map: IndexMap<&str, Value> = parsed
        .iter()
        .map(|p| (p.host.host.as_str(), files_value(p)))
        .collect();
    Value::from_pairs(map)
}

fn run_spec(
    spec: &CheckSpec,
    p: &Parsed,
    hostfiles: &Value,
    renderer: &Renderer,
    report: &mut Report,
) {
    report.evaluated += 1;
    let extra = Value::from_pairs(vec![
        ("files", files_value(p)),
        ("hostfiles", hostfiles.clone()),
    ]);
    let ctx = minijinja::value::merge_maps([extra, p.host.vars.clone()]);
    let origin = format!("check `{}`", spec.name.value);
    let render = |text: &Option<String>| -> Option<String> {
        text.as_ref().map(|t| {
            renderer
                .render_str(&origin, t, &ctx)
                .unwrap_or_else(|_| t.clone())
        })
    };
    let problem = match renderer.eval_expression(&origin, &spec.that.value, &ctx) {
        Ok(v) if v.is_true() => return,
        Ok(_) => match &spec.message {
            Some(m) => renderer
                .render_str(&origin, m, &ctx)
                .unwrap_or_else(|e| format!("{m} (message failed to render: {})", e.message)),
            None => format!("`{}` is false", spec.that.value.trim()),
        },
        Err(e) => format!(
            "`{}` could not be evaluated: {}",
            spec.that.value.trim(),
            e.message
        ),
    };
    report.failures.push(Failure {
        check: spec.name.value.clone(),
        host: p.host.host.clone(),
        file: render(&spec.file),
        key: spec.key.clone(),
        problem,
        expected: None,
    });
}
