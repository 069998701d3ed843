//! Rendered desired state -> check failures, before any host is contacted.
//!
//! In: every selected host's [`HostDesired`] (rendered files and variables), the other hosts
//! of the inventory rendered too (a route on motoko is checked against what wintermute's
//! vLLM config says), the `checks:` of deploy.yml and the [`Renderer`] to evaluate them.
//! Out: a [`Report`] listing each failure with host, file, key, what is wrong and what it
//! should be. Pure: no I/O; nothing here talks to a host.
//!
//! Built in:
//! - `litellm-route-served-name`: a LiteLLM route (a rendered file whose YAML has a
//!   `model_list` list) whose `litellm_params.api_base` points at a host of the inventory
//!   (URL host = its `ansible_host` or name, port = the `port` of its rendered vLLM config,
//!   the file whose YAML has a `vllm` mapping) must ask for `openai/<served name>`, the
//!   served name being the vLLM config's `served_model_name`, else its `model` (what vLLM
//!   serves without `--served-model-name`). The seeds' 404.
//! - `litellm-router-names`: `router_settings.model_group_alias` maps each alias to a string
//!   (or `{model: string}`) naming a `model_name` of the file's `model_list` (a list there
//!   crashed LiteLLM's router: "list indices must be integers or slices, not str"); every
//!   name in `fallbacks`, `context_window_fallbacks`, `content_policy_fallbacks` and
//!   `default_fallbacks` (in `router_settings` or `litellm_settings`) is a `model_name`.
//!
//! Operators' own: `checks:` of deploy.yml ([`CheckSpec`]), each a Jinja expression
//! evaluated per host with its variables, `files` and `hostfiles`.

use indexmap::IndexMap;
use minijinja::Value;
use serde_json::Value as Json;

use crate::desired::{FileSource, HostDesired};
use crate::manifest::CheckSpec;
use crate::render::Renderer;

pub const ROUTE_CHECK: &str = "litellm-route-served-name";
pub const ROUTER_CHECK: &str = "litellm-router-names";

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
}

impl Report {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// A rendered file's content as checks see it: the YAML/JSON value when the text parses as
/// a mapping or a list, else the text itself.
pub fn parse_file(content: &[u8]) -> Json {
    let text = String::from_utf8_lossy(content);
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

/// One host's rendered files, parsed.
struct Parsed<'a> {
    host: &'a HostDesired,
    files: Vec<(&'a str, Json)>,
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
    // ones need only what each vLLM config serves and the selected hosts' LiteLLM routes, so
    // without an operator check each parsed file is dropped once read: every rendered file
    // of the inventory parsed at once was the plan's largest memory peak (24 of 70 MB at
    // 300 hosts).
    let keep_all = specs
        .iter()
        .any(|spec| selected.iter().any(|h| applies(spec.hosts.as_deref(), h)));
    let mut parsed: Vec<Parsed> = Vec::with_capacity(selected.len());
    let mut servers: Vec<VllmServer> = Vec::new();
    let hosts: Vec<(usize, &HostDesired)> = selected.iter().chain(others).enumerate().collect();
    // Parsing every rendered file is most of the checks' time: spread over the cores.
    let each = crate::par::map(&hosts, |&(index, host)| {
        let mut p = Parsed {
            host,
            files: host
                .files
                .iter()
                .filter(|f| checked(f))
                .map(|f| (f.dest.as_str(), parse_file(&f.content)))
                .collect(),
        };
        let servers = vllm_servers(&p);
        if !keep_all {
            if index >= selected.len() {
                return (None, servers);
            }
            p.files.retain(|(_, value)| has_model_list(value));
        }
        (Some(p), servers)
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
    for p in &parsed[..selected.len()] {
        for (dest, value) in &p.files {
            if let Some(list) = value.get("model_list").and_then(Json::as_array) {
                check_routes(p.host, dest, list, &servers, &mut report);
                check_router(p.host, dest, value, list, &mut report);
            }
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

fn has_model_list(value: &Json) -> bool {
    value.get("model_list").and_then(Json::as_array).is_some()
}

/// What a host's rendered vLLM config says it serves.
struct VllmServer {
    host: String,
    address: String,
    file: String,
    port: Option<u16>,
    served: String,
    /// `vllm.served_model_name`, or `vllm.model` when no served name is set.
    served_key: &'static str,
}

fn vllm_servers(p: &Parsed) -> Vec<VllmServer> {
    let address = match p.host.vars.get_attr("ansible_host") {
        Ok(v) if v.as_str().is_some() => v.as_str().unwrap_or_default().to_string(),
        _ => p.host.host.clone(),
    };
    p.files
        .iter()
        .filter_map(|(dest, value)| {
            let vllm = value.get("vllm")?.as_object()?;
            let (served, served_key) = match vllm.get("served_model_name").and_then(Json::as_str) {
                Some(s) if !s.is_empty() => (s, "vllm.served_model_name"),
                _ => (vllm.get("model")?.as_str()?, "vllm.model"),
            };
            let port = match vllm.get("port") {
                Some(Json::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
                Some(Json::String(s)) => s.parse().ok(),
                _ => None,
            };
            Some(VllmServer {
                host: p.host.host.clone(),
                address: address.clone(),
                file: dest.to_string(),
                port,
                served: served.to_string(),
                served_key,
            })
        })
        .collect()
}

/// (host, port) of an `http://` or `https://` URL.
pub fn url_host_port(url: &str) -> Option<(String, u16)> {
    let (rest, default_port) = if let Some(r) = url.strip_prefix("http://") {
        (r, 80)
    } else if let Some(r) = url.strip_prefix("https://") {
        (r, 443)
    } else {
        return None;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default_port,
    };
    Some((host.to_ascii_lowercase(), port))
}

fn check_routes(
    host: &HostDesired,
    dest: &str,
    list: &[Json],
    servers: &[VllmServer],
    report: &mut Report,
) {
    for (i, entry) in list.iter().enumerate() {
        let params = entry.get("litellm_params");
        let Some(api_base) = params
            .and_then(|p| p.get("api_base"))
            .and_then(Json::as_str)
        else {
            continue;
        };
        let Some((url_host, url_port)) = url_host_port(api_base) else {
            continue;
        };
        let Some(server) = servers.iter().find(|s| {
            (s.address.eq_ignore_ascii_case(&url_host) || s.host.eq_ignore_ascii_case(&url_host))
                && s.port.is_none_or(|p| p == url_port)
        }) else {
            continue;
        };
        report.evaluated += 1;
        let route = entry
            .get("model_name")
            .and_then(Json::as_str)
            .unwrap_or("?");
        let expected = format!("openai/{}", server.served);
        let model = params.and_then(|p| p.get("model")).and_then(Json::as_str);
        if model == Some(expected.as_str()) {
            continue;
        }
        let asks = match model {
            Some(m) => format!("asks for `{}`", m.strip_prefix("openai/").unwrap_or(m)),
            None => "has no `model`".to_string(),
        };
        let mut problem = format!(
            "route `{route}` {asks} at {url_host}:{url_port}, but {}'s vLLM serves `{}` ({}: {})",
            server.host, server.served, server.file, server.served_key
        );
        if server.served_key == "vllm.model" {
            problem.push_str(
                "; without served_model_name vLLM serves the model's path, so requests 404",
            );
            if let Some(m) = model.and_then(|m| m.strip_prefix("openai/")) {
                problem.push_str(&format!(
                    " (or set served_model_name: {m} in {}'s vLLM config)",
                    server.host
                ));
            }
        }
        report.failures.push(Failure {
            check: ROUTE_CHECK.into(),
            host: host.host.clone(),
            file: Some(dest.to_string()),
            key: Some(format!("model_list[{i}].litellm_params.model")),
            problem,
            expected: Some(expected),
        });
    }
}

fn check_router(host: &HostDesired, dest: &str, doc: &Json, list: &[Json], report: &mut Report) {
    let names: Vec<&str> = list
        .iter()
        .filter_map(|m| m.get("model_name").and_then(Json::as_str))
        .collect();
    let known = || format!("one of: {}", names.join(", "));
    let mut fail = |key: String, problem: String, expected: String| {
        report.failures.push(Failure {
            check: ROUTER_CHECK.into(),
            host: host.host.clone(),
            file: Some(dest.to_string()),
            key: Some(key),
            problem,
            expected: Some(expected),
        });
    };
    let mut evaluated = 0;
    if let Some(aliases) = doc
        .get("router_settings")
        .and_then(|r| r.get("model_group_alias"))
    {
        evaluated += 1;
        match aliases {
            Json::Object(map) => {
                for (alias, target) in map {
                    let key = format!("router_settings.model_group_alias.{alias}");
                    let name = match target {
                        Json::String(s) => Some(s.as_str()),
                        Json::Object(o) => o.get("model").and_then(Json::as_str),
                        _ => None,
                    };
                    match name {
                        Some(n) if names.contains(&n) => {}
                        Some(n) => fail(
                            key,
                            format!(
                                "alias `{alias}` names `{n}`, which is no model_name of model_list"
                            ),
                            known(),
                        ),
                        None => fail(
                            key,
                            format!(
                                "alias `{alias}` maps to {}, not a string; LiteLLM's router fails every request to it with \"list indices must be integers or slices, not str\"",
                                json_kind(target)
                            ),
                            format!(
                                "a string naming one model_name ({}), or no alias at all: a model_name is already a name clients can use",
                                known()
                            ),
                        ),
                    }
                }
            }
            other => fail(
                "router_settings.model_group_alias".into(),
                format!(
                    "is {}, not a mapping of alias -> model_name",
                    json_kind(other)
                ),
                "a mapping: alias: model_name".into(),
            ),
        }
    }
    for section in ["router_settings", "litellm_settings"] {
        let Some(settings) = doc.get(section) else {
            continue;
        };
        for field in [
            "fallbacks",
            "context_window_fallbacks",
            "content_policy_fallbacks",
        ] {
            let Some(value) = settings.get(field) else {
                continue;
            };
            evaluated += 1;
            let Some(rules) = value.as_array() else {
                fail(
                    format!("{section}.{field}"),
                    format!("is {}, not a list", json_kind(value)),
                    "a list of `model_name: [fallback model_names]`".into(),
                );
                continue;
            };
            for (i, rule) in rules.iter().enumerate() {
                let Some(rule) = rule.as_object() else {
                    fail(
                        format!("{section}.{field}[{i}]"),
                        format!("is {}, not a mapping", json_kind(rule)),
                        "`model_name: [fallback model_names]`".into(),
                    );
                    continue;
                };
                for (from, to) in rule {
                    let key = format!("{section}.{field}[{i}].{from}");
                    if !names.contains(&from.as_str()) {
                        fail(
                            key.clone(),
                            format!(
                                "falls back from `{from}`, which is no model_name of model_list"
                            ),
                            known(),
                        );
                    }
                    let targets: Vec<&Json> = match to {
                        Json::Array(a) => a.iter().collect(),
                        one => vec![one],
                    };
                    for t in targets {
                        match t.as_str() {
                            Some(n) if names.contains(&n) => {}
                            Some(n) => fail(
                                key.clone(),
                                format!(
                                    "falls back to `{n}`, which is no model_name of model_list"
                                ),
                                known(),
                            ),
                            None => fail(
                                key.clone(),
                                format!("lists {}, not a model_name", json_kind(t)),
                                known(),
                            ),
                        }
                    }
                }
            }
        }
        if let Some(value) = settings.get("default_fallbacks") {
            evaluated += 1;
            let items: Vec<&Json> = match value {
                Json::Array(a) => a.iter().collect(),
                one => vec![one],
            };
            for t in items {
                if !t.as_str().is_some_and(|n| names.contains(&n)) {
                    fail(
                        format!("{section}.default_fallbacks"),
                        format!(
                            "lists `{}`, which is no model_name of model_list",
                            json_text(t)
                        ),
                        known(),
                    );
                }
            }
        }
    }
    report.evaluated += evaluated;
}

fn json_kind(v: &Json) -> String {
    match v {
        Json::Null => "null".into(),
        Json::Bool(_) => "a boolean".into(),
        Json::Number(_) => "a number".into(),
        Json::String(_) => "a string".into(),
        Json::Array(_) => format!("a list ({})", json_text(v)),
        Json::Object(_) => "a mapping".into(),
    }
}

fn json_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
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

#[cfg(test)]
mod tests {
    use super::url_host_port;

    #[test]
    fn urls() {
        assert_eq!(
            url_host_port("http://Wintermute:8000/v1"),
            Some(("wintermute".into(), 8000))
        );
        assert_eq!(url_host_port("https://x/v1"), Some(("x".into(), 443)));
        assert_eq!(url_host_port("http://[::1]:9/"), Some(("::1".into(), 9)));
        assert_eq!(url_host_port("http://u:p@h:1"), Some(("h".into(), 1)));
        assert_eq!(url_host_port("os.environ/X"), None);
        assert_eq!(url_host_port("http://h:notaport/"), None);
    }
}
