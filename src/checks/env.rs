//! `litellm-env`: every `os.environ/NAME` a LiteLLM config reads is defined, with a value,
//! for the service that runs it. LiteLLM starts without it and reads it as unset: a route's
//! `api_key` then fails every request ("Missing credentials"), an unset `master_key` lets
//! every client in. An `openai/` route without `api_key` reads `OPENAI_API_KEY` the same way.
//!
//! The service is the Docker Compose service (a rendered file of the same host whose YAML has
//! `services:`) that bind-mounts the config, else one whose image is LiteLLM's. It gets its
//! environment from its `env_file:` (files deploy renders for that host, read as Compose's
//! dotenv: `NAME=value`, quotes, `export`, comments) and its `environment:`, which wins.
//! A name given without a value (`- NAME`, `NAME:` with nothing, a bare line) comes from the
//! shell `docker compose` runs in, which deploy does not render: it counts as undefined. So
//! does anything an env_file deploy does not render would define. The config's own
//! `environment_variables:` defines names too.

use indexmap::IndexMap;
use serde_json::Value as Json;

use super::{Failure, Note, Report};
use crate::desired::HostDesired;

pub const ENV_CHECK: &str = "litellm-env";

/// Where one name of a service's environment comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// A value (empty or not) in an env_file or `environment:`.
    Value { from: String, empty: bool },
    /// Named without a value: taken from the shell `docker compose` runs in.
    Passed { from: String },
}

/// The Compose service that runs one LiteLLM config, and the environment it gets.
#[derive(Debug)]
pub(super) struct ServiceEnv {
    compose: String,
    service: String,
    names: IndexMap<String, Source>,
    /// env_files of the service that deploy does not render for this host.
    unrendered: Vec<String>,
    /// The rendered ones, in order.
    env_files: Vec<String>,
}

/// A LiteLLM config of a host (its dest) and the service found to run it.
pub(super) struct ConfigEnv {
    pub config: String,
    pub service: Option<ServiceEnv>,
}

/// For each LiteLLM config among a host's parsed files, the Compose service (from the same
/// host's files) that runs it. Reads the raw env_files, which the parsed view does not keep.
pub(super) fn service_envs(host: &HostDesired, files: &[(&str, Json)]) -> Vec<ConfigEnv> {
    files
        .iter()
        .filter(|(_, v)| v.get("model_list").and_then(Json::as_array).is_some())
        .map(|(config, _)| ConfigEnv {
            config: config.to_string(),
            service: find_service(host, files, config),
        })
        .collect()
}

fn find_service(host: &HostDesired, files: &[(&str, Json)], config: &str) -> Option<ServiceEnv> {
    let composes: Vec<(&str, &serde_json::Map<String, Json>)> = files
        .iter()
        .filter_map(|(dest, v)| Some((*dest, v.get("services")?.as_object()?)))
        .collect();
    let mounting = composes.iter().find_map(|(dest, services)| {
        let dir = parent(dest);
        services
            .iter()
            .find(|(_, s)| mounts(s, &dir, config))
            .map(|(name, s)| (*dest, name, s))
    });
    let (compose, name, service) = mounting.or_else(|| {
        composes.iter().find_map(|(dest, services)| {
            services
                .iter()
                .find(|(_, s)| {
                    s.get("image")
                        .and_then(Json::as_str)
                        .is_some_and(|i| i.to_ascii_lowercase().contains("litellm"))
                })
                .map(|(name, s)| (*dest, name, s))
        })
    })?;
    let dir = parent(compose);
    let mut env = ServiceEnv {
        compose: compose.to_string(),
        service: name.clone(),
        names: IndexMap::new(),
        unrendered: Vec::new(),
        env_files: Vec::new(),
    };
    let env_files: Vec<&Json> = match service.get("env_file") {
        Some(Json::Array(a)) => a.iter().collect(),
        Some(one) => vec![one],
        None => Vec::new(),
    };
    for entry in env_files {
        let path = match entry {
            Json::String(s) => s.as_str(),
            Json::Object(o) => match o.get("path").and_then(Json::as_str) {
                Some(p) => p,
                None => continue,
            },
            _ => continue,
        };
        let path = resolve(&dir, path);
        match host.files.iter().find(|f| f.dest == path) {
            Some(file) => {
                for (name, source) in dotenv(&String::from_utf8_lossy(&file.content), &path) {
                    define(&mut env.names, name, source);
                }
                env.env_files.push(path);
            }
            None => env.unrendered.push(path),
        }
    }
    let from = "environment:".to_string();
    match service.get("environment") {
        Some(Json::Object(map)) => {
            for (name, value) in map {
                let source = match value {
                    Json::Null => Source::Passed { from: from.clone() },
                    Json::String(s) => Source::Value {
                        from: from.clone(),
                        empty: s.is_empty(),
                    },
                    _ => Source::Value {
                        from: from.clone(),
                        empty: false,
                    },
                };
                define(&mut env.names, name.clone(), source);
            }
        }
        Some(Json::Array(items)) => {
            for item in items.iter().filter_map(Json::as_str) {
                let source = match item.split_once('=') {
                    Some((name, value)) => (
                        name,
                        Source::Value {
                            from: from.clone(),
                            empty: value.is_empty(),
                        },
                    ),
                    None => (item, Source::Passed { from: from.clone() }),
                };
                define(&mut env.names, source.0.trim().to_string(), source.1);
            }
        }
        _ => {}
    }
    Some(env)
}

/// Later definitions win, as in Compose (env_files in order, then `environment:`), except
/// that a name passed through from the shell never hides a value.
fn define(names: &mut IndexMap<String, Source>, name: String, source: Source) {
    if matches!(source, Source::Passed { .. })
        && matches!(names.get(&name), Some(Source::Value { .. }))
    {
        return;
    }
    names.insert(name, source);
}

/// Whether a Compose service bind-mounts `config` (short `./src:/dst[:ro]` or long syntax).
fn mounts(service: &Json, dir: &str, config: &str) -> bool {
    let Some(volumes) = service.get("volumes").and_then(Json::as_array) else {
        return false;
    };
    volumes.iter().any(|v| {
        let source = match v {
            Json::String(s) => s.split(':').next().unwrap_or_default(),
            Json::Object(o) => o.get("source").and_then(Json::as_str).unwrap_or_default(),
            _ => "",
        };
        // A short-syntax source not starting with `.` or `/` is a named volume.
        (source.starts_with('.') || source.starts_with('/')) && resolve(dir, source) == config
    })
}

/// The folder of a Unix path ("" for a bare name).
fn parent(path: &str) -> String {
    match path.rsplit_once('/') {
        Some((dir, _)) => dir.to_string(),
        None => String::new(),
    }
}

/// `path` relative to `dir` (unless absolute), with `.` and `..` worked out.
fn resolve(dir: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{dir}/{path}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Compose's dotenv reading of an env_file: `NAME=value` (optionally `export `-prefixed,
/// the value optionally quoted, an unquoted value's ` #` starting a comment), blank and `#`
/// lines skipped, a bare `NAME` taken from the shell.
fn dotenv(text: &str, path: &str) -> Vec<(String, Source)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let (name, source) = match line.split_once('=') {
            Some((name, value)) => {
                let value = value.trim();
                let value = if let Some(q) = value.strip_prefix('"') {
                    q.split('"').next().unwrap_or_default()
                } else if let Some(q) = value.strip_prefix('\'') {
                    q.split('\'').next().unwrap_or_default()
                } else {
                    value.split(" #").next().unwrap_or_default().trim()
                };
                (
                    name.trim(),
                    Source::Value {
                        from: path.to_string(),
                        empty: value.is_empty(),
                    },
                )
            }
            None => (
                line,
                Source::Passed {
                    from: path.to_string(),
                },
            ),
        };
        if !name.is_empty() && !name.contains(char::is_whitespace) {
            out.push((name.to_string(), source));
        }
    }
    out
}

/// One place a config reads a variable of its environment.
struct Read {
    /// Where in the config, e.g. `model_list[3].litellm_params.api_key`.
    key: String,
    name: String,
    /// The route's `model_name`, when the read is inside a `model_list` entry.
    route: Option<String>,
    /// An `openai/` route without `api_key`: LiteLLM reads OPENAI_API_KEY itself.
    implicit: bool,
    /// The route's model starts with `openai/` (its client refuses to call without a key).
    openai: bool,
}

fn reads(doc: &Json) -> Vec<Read> {
    let mut out = Vec::new();
    walk(doc, String::new(), &mut out);
    let list = doc.get("model_list").and_then(Json::as_array);
    for read in &mut out {
        let Some(i) = read
            .key
            .strip_prefix("model_list[")
            .and_then(|r| r.split(']').next())
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        let entry = list.and_then(|l| l.get(i));
        read.route = entry
            .and_then(|e| e.get("model_name"))
            .and_then(Json::as_str)
            .map(str::to_string);
        read.openai = is_openai(entry);
    }
    for (i, entry) in list.into_iter().flatten().enumerate() {
        let params = entry.get("litellm_params");
        if is_openai(Some(entry)) && params.and_then(|p| p.get("api_key")).is_none() {
            out.push(Read {
                key: format!("model_list[{i}].litellm_params"),
                name: "OPENAI_API_KEY".into(),
                route: entry
                    .get("model_name")
                    .and_then(Json::as_str)
                    .map(str::to_string),
                implicit: true,
                openai: true,
            });
        }
    }
    out
}

fn is_openai(entry: Option<&Json>) -> bool {
    entry
        .and_then(|e| e.get("litellm_params"))
        .and_then(|p| p.get("model"))
        .and_then(Json::as_str)
        .is_some_and(|m| m.starts_with("openai/"))
}

fn walk(value: &Json, key: String, out: &mut Vec<Read>) {
    match value {
        Json::String(s) => {
            if let Some(name) = s.strip_prefix("os.environ/") {
                out.push(Read {
                    key,
                    name: name.to_string(),
                    route: None,
                    implicit: false,
                    openai: false,
                });
            }
        }
        Json::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, format!("{key}[{i}]"), out);
            }
        }
        Json::Object(map) => {
            for (k, v) in map {
                let key = if key.is_empty() {
                    k.clone()
                } else {
                    format!("{key}.{k}")
                };
                walk(v, key, out);
            }
        }
        _ => {}
    }
}

/// What goes wrong at run time when `read` finds nothing.
fn consequence(read: &Read) -> String {
    let route = read.route.as_deref().unwrap_or("?");
    if read.implicit || (read.key.ends_with(".litellm_params.api_key") && read.openai) {
        format!(
            "LiteLLM starts without it, then fails every request to route `{route}` (500 \"Missing credentials\")"
        )
    } else if read.key.ends_with(".litellm_params.api_key") {
        format!(
            "LiteLLM starts without it, then calls route `{route}` without a key, which a server that requires one (vLLM's --api-key) refuses"
        )
    } else if let Some(field) = read.key.split(".litellm_params.").nth(1) {
        format!("LiteLLM starts without it: route `{route}`'s {field} is unset")
    } else if read.key == "general_settings.master_key" {
        "LiteLLM then starts with no master key and lets every client in without one".into()
    } else {
        "LiteLLM starts without it and reads it as unset".into()
    }
}

pub(super) fn check(host: &HostDesired, doc: &Json, env: &ConfigEnv, report: &mut Report) {
    let reads = reads(doc);
    if reads.is_empty() {
        return;
    }
    let Some(service) = &env.service else {
        report.notes.push(Note {
            check: ENV_CHECK.into(),
            host: host.host.clone(),
            file: env.config.clone(),
            key: String::new(),
            text: format!(
                "no Docker Compose service among {}'s rendered files mounts {} (or runs a litellm image): the environment variables it reads ({}) are not checked",
                host.host,
                env.config,
                names(&reads)
            ),
        });
        return;
    };
    // The config's own `environment_variables:` are set by LiteLLM before it reads the rest.
    let own: Vec<&str> = doc
        .get("environment_variables")
        .and_then(Json::as_object)
        .map(|m| {
            m.iter()
                .filter(|(_, v)| !matches!(v, Json::Null) && v.as_str() != Some(""))
                .map(|(k, _)| k.as_str())
                .collect()
        })
        .unwrap_or_default();
    let of = format!("service `{}` of {}", service.service, service.compose);
    let where_to = match service.env_files.first() {
        Some(file) => format!("in {file} (env_file of {of})"),
        None => format!("under the environment: of {of}"),
    };
    for read in &reads {
        report.evaluated += 1;
        if own.contains(&read.name.as_str()) {
            continue;
        }
        let reading = if read.implicit {
            format!(
                "route `{}` has no api_key, so LiteLLM's openai provider reads OPENAI_API_KEY",
                read.route.as_deref().unwrap_or("?")
            )
        } else {
            format!("reads os.environ/{}", read.name)
        };
        let (problem, expected) = match service.names.get(&read.name) {
            Some(Source::Value { empty: false, .. }) => continue,
            Some(Source::Value { from, empty: true }) => (
                format!(
                    "{reading}, which is empty in {from} for {of}: LiteLLM reads an empty value as none; {}",
                    consequence(read)
                ),
                format!("a value for {} {where_to}", read.name),
            ),
            Some(Source::Passed { from }) => (
                format!(
                    "{reading}, which {from} of {of} names without a value: it would come from the shell `docker compose` runs in, which deploy does not render; {}",
                    consequence(read)
                ),
                format!("{}=<value> {where_to}", read.name),
            ),
            None => {
                let mut has = Vec::new();
                for file in &service.env_files {
                    let defined: Vec<&str> = service
                        .names
                        .iter()
                        .filter(|(_, s)| matches!(s, Source::Value { from, .. } if from == file))
                        .map(|(n, _)| n.as_str())
                        .collect();
                    has.push(format!("env_file {file}: {}", list_or_none(&defined)));
                }
                let environment: Vec<&str> = service
                    .names
                    .iter()
                    .filter(
                        |(_, s)| matches!(s, Source::Value { from, .. } if from == "environment:"),
                    )
                    .map(|(n, _)| n.as_str())
                    .collect();
                has.push(format!("environment: {}", list_or_none(&environment)));
                for file in &service.unrendered {
                    has.push(format!(
                        "env_file {file}: not rendered by deploy for {}, so unknown",
                        host.host
                    ));
                }
                (
                    format!(
                        "{reading}, which {of} does not define ({}); {}",
                        has.join("; "),
                        consequence(read)
                    ),
                    if read.implicit {
                        format!(
                            "api_key: os.environ/NAME with NAME defined {where_to} (\"none\" for a server that needs no key), or OPENAI_API_KEY=<value> {where_to}"
                        )
                    } else {
                        format!("{}=<value> {where_to}", read.name)
                    },
                )
            }
        };
        report.failures.push(Failure {
            check: ENV_CHECK.into(),
            host: host.host.clone(),
            file: Some(env.config.clone()),
            key: Some(read.key.clone()),
            problem,
            expected: Some(expected),
        });
    }
}

fn names(reads: &[Read]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for read in reads {
        if !names.contains(&read.name.as_str()) {
            names.push(&read.name);
        }
    }
    names.join(", ")
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "nothing".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::{Source, dotenv, resolve};

    #[test]
    fn dotenv_as_compose_reads_it() {
        let text = "# c\n\nA=1\nexport B = \"two words\" \nC=\nD=''\nE=x # note\nF\nbad name=1\r\nG=\"\"\n";
        let got: Vec<(String, bool)> = dotenv(text, "/e")
            .into_iter()
            .map(|(n, s)| (n, matches!(s, Source::Value { empty: false, .. })))
            .collect();
        let want: Vec<(String, bool)> = [
            ("A", true),
            ("B", true),
            ("C", false),
            ("D", false),
            ("E", true),
            ("F", false),
            ("G", false),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), *v))
        .collect();
        assert_eq!(got, want);
        assert!(matches!(&dotenv("F\n", "/e")[0].1, Source::Passed { .. }));
    }

    #[test]
    fn paths() {
        assert_eq!(resolve("/opt/litellm", ".env"), "/opt/litellm/.env");
        assert_eq!(
            resolve("/opt/litellm", "./a/../b.yaml"),
            "/opt/litellm/b.yaml"
        );
        assert_eq!(resolve("/opt/litellm", "/etc/x"), "/etc/x");
        assert_eq!(resolve("/opt/litellm", "../x"), "/opt/x");
    }
}
