//! `litellm-router-names`: the names and shapes of LiteLLM's router settings, as LiteLLM
//! 1.80's router reads them (`router_settings`, or `litellm_settings`, which it falls back to):
//!
//! - `model_group_alias`: a mapping of alias -> a string (or `{model: string}`) naming a
//!   `model_name`. A list there fails every request to the alias ("list indices must be
//!   integers or slices, not str"; the seeds' router crash).
//! - `fallbacks` and `content_policy_fallbacks`: a list of one-key mappings
//!   `model_name: [model_name, ...]`; anything else makes the router refuse to start
//!   ("is not a dictionary", "must have exactly one key"). `fallbacks` may use `*` for every
//!   model group.
//! - `context_window_fallbacks`: the same shape, but unchecked by LiteLLM: a mapping's keys
//!   after the first are never read, and an item that is no mapping fails every
//!   context-window fallback that reaches it ("'str' object has no attribute 'keys'").
//! - Every fallback target list is a list (a string is walked character by character:
//!   `b`, `e`, `e` for `bee`) of `model_name`s (or `{model: model_name}`), and so is
//!   `default_fallbacks`.

use serde_json::Value as Json;

use super::{Failure, Report};
use crate::desired::HostDesired;

pub const ROUTER_CHECK: &str = "litellm-router-names";

pub(super) fn check(
    host: &HostDesired,
    dest: &str,
    doc: &Json,
    list: &[Json],
    report: &mut Report,
) {
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
                    let name = target_name(target);
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
    let shape = "a list of one-key mappings: `- model_name: [fallback model_names]`";
    for section in ["router_settings", "litellm_settings"] {
        let Some(settings) = doc.get(section) else {
            continue;
        };
        for field in [
            "fallbacks",
            "context_window_fallbacks",
            "content_policy_fallbacks",
        ] {
            // `null` is no list at all: LiteLLM then has no such fallbacks.
            let Some(value) = settings.get(field).filter(|v| !v.is_null()) else {
                continue;
            };
            evaluated += 1;
            // LiteLLM validates these two when the router starts; context windows it does not.
            let validated = field != "context_window_fallbacks";
            // `what`: LiteLLM's validation error, for a value that is walked as a list of
            // strings where mappings belong.
            let broken = |what: Option<&str>| {
                match (validated, what) {
                (true, Some(what)) => format!("LiteLLM's router refuses to start (\"{what}\")"),
                (true, None) => "LiteLLM's router refuses to start".to_string(),
                (false, Some(_)) => "every context-window fallback that reaches it fails (\"... object has no attribute 'keys'\")".to_string(),
                (false, None) => "every context-window fallback fails".to_string(),
            }
            };
            let Some(rules) = value.as_array() else {
                // What LiteLLM meets first when it walks the value as a list.
                let first = match value {
                    Json::Object(m) => m.keys().next().cloned(),
                    Json::String(s) => s.chars().next().map(String::from),
                    _ => None,
                };
                let why = match first {
                    Some(first) => broken(Some(&format!("Item '{first}' is not a dictionary."))),
                    None => broken(None),
                };
                fail(
                    format!("{section}.{field}"),
                    format!("is {}, not a list; {why}", json_kind(value)),
                    shape.into(),
                );
                continue;
            };
            for (i, rule) in rules.iter().enumerate() {
                let Some(rule) = rule.as_object() else {
                    fail(
                        format!("{section}.{field}[{i}]"),
                        format!(
                            "is {}, not a mapping; {}",
                            json_kind(rule),
                            broken(Some(&format!(
                                "Item '{}' is not a dictionary.",
                                json_text(rule)
                            )))
                        ),
                        "`model_name: [fallback model_names]`".into(),
                    );
                    continue;
                };
                if rule.len() != 1 {
                    let keys: Vec<&str> = rule.keys().map(String::as_str).collect();
                    let problem = if validated {
                        format!(
                            "maps {} model groups ({}) in one item; LiteLLM's router refuses to start (\"must have exactly one key, but has {} keys\")",
                            rule.len(),
                            keys.join(", "),
                            rule.len()
                        )
                    } else {
                        format!(
                            "maps {} model groups ({}) in one item; LiteLLM reads only the first: {} never fall back",
                            rule.len(),
                            keys.join(", "),
                            keys.get(1..).unwrap_or_default().join(", ")
                        )
                    };
                    fail(
                        format!("{section}.{field}[{i}]"),
                        problem,
                        "one item per model group: `- model_name: [fallback model_names]`".into(),
                    );
                }
                for (from, to) in rule {
                    let key = format!("{section}.{field}[{i}].{from}");
                    // `*`: the generic fallback, in `fallbacks` only (the context-window and
                    // content-policy lookups match names exactly).
                    let generic = from == "*" && field == "fallbacks";
                    if from == "*" && !generic {
                        fail(
                            key.clone(),
                            format!(
                                "falls back from `*`, which is a wildcard only in `fallbacks`: LiteLLM looks up {field} by exact model_name, so this never applies"
                            ),
                            known(),
                        );
                    } else if !generic && !names.contains(&from.as_str()) {
                        fail(
                            key.clone(),
                            format!(
                                "falls back from `{from}`, which is no model_name of model_list"
                            ),
                            known(),
                        );
                    }
                    let targets = match to {
                        Json::Array(a) => a,
                        Json::String(s) => {
                            fail(
                                key.clone(),
                                format!(
                                    "falls back to the string `{s}`, not a list; LiteLLM walks it character by character (model `{}`, ...), so the fallback fails",
                                    s.chars().next().unwrap_or(' ')
                                ),
                                format!("[{s}]"),
                            );
                            continue;
                        }
                        other => {
                            fail(
                                key.clone(),
                                format!("is {}, not a list of model_names", json_kind(other)),
                                known(),
                            );
                            continue;
                        }
                    };
                    for t in targets {
                        let name = target_name(t);
                        match name {
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
            match value {
                Json::Array(items) => {
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
                other => fail(
                    format!("{section}.default_fallbacks"),
                    format!(
                        "is {}, not a list; LiteLLM walks it as the `*` fallback's list (a string character by character), so the fallback fails",
                        json_kind(other)
                    ),
                    format!("a list of model_names ({})", known()),
                ),
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
        Json::String(s) => format!("a string (`{s}`)"),
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

/// The model group an alias or fallback entry names: a string, or LiteLLM's mapping form
/// (`{model: NAME, ...}`).
fn target_name(target: &Json) -> Option<&str> {
    match target {
        Json::String(s) => Some(s.as_str()),
        Json::Object(o) => o.get("model").and_then(Json::as_str),
        _ => None,
    }
}
