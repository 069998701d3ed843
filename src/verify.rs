//! After a host's handlers ran: its `verify:` entries ([`DesiredVerify`]), each an HTTP GET
//! polled from the controller (through [`crate::transport::http`]) every
//! [`INTERVAL`] until the answer is as expected or the entry's timeout passes. Out: the names
//! that passed, or why the first one failed (what was expected, what came back last).
//!
//! An answer passes when its status is the expected one and, with `json_path`, the body is
//! JSON and the path finds a value (with `contains`: a value equal to it, or a string or
//! list containing it); without `json_path`, `contains` must be in the body's text.
//! `json_path` is dotted keys with `[N]` indexes and `[*]` for every element:
//! `data[*].id`, `models[0].name`, `status`.

use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::desired::DesiredVerify;
use crate::transport::http::{self, HttpResponse};

/// Time between two attempts.
pub const INTERVAL: Duration = Duration::from_millis(500);

/// Longest single request (shorter when the deadline is nearer).
const MAX_REQUEST: Duration = Duration::from_secs(10);

/// Polls each entry in order. Returns the names that passed and, when one did not, why
/// (the ones after it are not polled).
pub async fn run(entries: &[DesiredVerify]) -> (Vec<String>, Option<String>) {
    let mut passed = Vec::new();
    for v in entries {
        match poll(v).await {
            Ok(()) => passed.push(v.name.clone()),
            Err(why) => return (passed, Some(why)),
        }
    }
    (passed, None)
}

/// Polls one entry until it passes or its deadline passes.
pub async fn poll(v: &DesiredVerify) -> Result<(), String> {
    let timeout = Duration::from_secs_f64(v.timeout_secs.max(0.0));
    let started = Instant::now();
    let deadline = started + timeout;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let request_timeout = left.clamp(Duration::from_millis(200), MAX_REQUEST);
        let got = match http::get(&v.url, request_timeout).await {
            Ok(response) => match judge(v, &response) {
                Ok(()) => return Ok(()),
                Err(got) => got,
            },
            Err(e) => e.to_string(),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "verify `{}` failed after {attempts} attempt{} in {:.1}s: GET {} expected {}; got {got}",
                v.name,
                if attempts == 1 { "" } else { "s" },
                started.elapsed().as_secs_f64(),
                v.url,
                expected(v),
            ));
        }
        tokio::time::sleep(INTERVAL.min(left)).await;
    }
}

/// What a passing answer looks like, for messages.
pub fn expected(v: &DesiredVerify) -> String {
    let mut text = format!("status {}", v.status);
    match (&v.json_path, &v.contains) {
        (Some(path), Some(c)) => text.push_str(&format!(", {path} containing `{c}`")),
        (Some(path), None) => text.push_str(&format!(", a value at {path}")),
        (None, Some(c)) => text.push_str(&format!(", a body containing `{c}`")),
        (None, None) => {}
    }
    text
}

/// Ok when `response` is what `v` expects, else a description of what came back.
pub fn judge(v: &DesiredVerify, response: &HttpResponse) -> Result<(), String> {
    let status = format!("status {}", response.status);
    if response.status != v.status {
        return Err(format!("{status}, body {}", snippet(&response.body)));
    }
    let Some(path) = &v.json_path else {
        return match &v.contains {
            Some(c) if !response.body.contains(c.as_str()) => {
                Err(format!("{status}, body {}", snippet(&response.body)))
            }
            _ => Ok(()),
        };
    };
    let doc: Json = serde_json::from_str(&response.body).map_err(|e| {
        format!(
            "{status}, a body that is not JSON ({e}): {}",
            snippet(&response.body)
        )
    })?;
    let found = json_path(&doc, path)?;
    let ok = match &v.contains {
        None => found.iter().any(|f| !f.is_null()),
        Some(c) => found.iter().any(|f| value_contains(f, c)),
    };
    if ok {
        Ok(())
    } else {
        let values: Vec<&Json> = found;
        Err(format!(
            "{status}, {path} = {}",
            serde_json::to_string(&values).unwrap_or_default()
        ))
    }
}

fn value_contains(value: &Json, wanted: &str) -> bool {
    match value {
        Json::String(s) => s == wanted,
        Json::Array(items) => items.iter().any(|i| value_contains(i, wanted)),
        Json::Number(n) => n.to_string() == wanted,
        Json::Bool(b) => b.to_string() == wanted,
        _ => false,
    }
}

fn snippet(body: &str) -> String {
    let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        return "(empty)".into();
    }
    let cut: String = one_line.chars().take(200).collect();
    if cut.len() < one_line.len() {
        format!("`{cut}...`")
    } else {
        format!("`{cut}`")
    }
}

/// One step of a json_path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
    All,
}

/// `data[*].id` -> [Key data, All, Key id]. Errors say what is wrong with the path.
pub fn parse_json_path(path: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if key.is_empty() && rest.is_empty() {
            return Err(format!("json_path `{path}` has an empty key"));
        }
        if !key.is_empty() {
            steps.push(Step::Key(key.to_string()));
        }
        while !rest.is_empty() {
            let Some(close) = rest.find(']') else {
                return Err(format!("json_path `{path}`: `[` without `]`"));
            };
            let inside = &rest[1..close];
            steps.push(if inside == "*" {
                Step::All
            } else {
                Step::Index(inside.parse().map_err(|_| {
                    format!("json_path `{path}`: `[{inside}]` is neither an index nor `[*]`")
                })?)
            });
            rest = &rest[close + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return Err(format!("json_path `{path}`: `{rest}` after `]`"));
            }
        }
    }
    Ok(steps)
}

/// Every value `path` finds in `doc` (none when a key or index is missing).
pub fn json_path<'a>(doc: &'a Json, path: &str) -> Result<Vec<&'a Json>, String> {
    let mut current = vec![doc];
    for step in parse_json_path(path)? {
        current = current
            .into_iter()
            .flat_map(|v| -> Vec<&Json> {
                match (&step, v) {
                    (Step::Key(k), Json::Object(m)) => m.get(k).into_iter().collect(),
                    (Step::Index(i), Json::Array(a)) => a.get(*i).into_iter().collect(),
                    (Step::All, Json::Array(a)) => a.iter().collect(),
                    (Step::All, Json::Object(m)) => m.values().collect(),
                    _ => Vec::new(),
                }
            })
            .collect();
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(json_path: Option<&str>, contains: Option<&str>) -> DesiredVerify {
        DesiredVerify {
            name: "v".into(),
            url: "http://h/".into(),
            status: 200,
            json_path: json_path.map(String::from),
            contains: contains.map(String::from),
            timeout_secs: 1.0,
        }
    }

    fn answer(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            body: body.into(),
        }
    }

    #[test]
    fn paths() {
        let doc: Json = serde_json::json!({"data": [{"id": "a"}, {"id": "b"}], "n": {"x": [1, 2]}});
        let ids: Vec<&Json> = json_path(&doc, "data[*].id").unwrap();
        assert_eq!(ids, [&Json::from("a"), &Json::from("b")]);
        assert_eq!(json_path(&doc, "data[1].id").unwrap(), [&Json::from("b")]);
        assert_eq!(json_path(&doc, "n.x[0]").unwrap(), [&Json::from(1)]);
        assert!(json_path(&doc, "missing.key").unwrap().is_empty());
        assert!(parse_json_path("data[x]").is_err());
        assert!(parse_json_path("data[0").is_err());
        assert!(parse_json_path("a..b").is_err());
    }

    #[test]
    fn judging_answers() {
        let models = r#"{"object":"list","data":[{"id":"casperhansen/llama-3-8b-instruct-awq"}]}"#;
        let v = entry(Some("data[*].id"), Some("llama31-8b-wintermute"));
        assert_eq!(
            judge(&v, &answer(200, models)),
            Err(r#"status 200, data[*].id = ["casperhansen/llama-3-8b-instruct-awq"]"#.into())
        );
        let right = r#"{"data":[{"id":"llama31-8b-wintermute"}]}"#;
        assert_eq!(judge(&v, &answer(200, right)), Ok(()));
        assert!(
            judge(&v, &answer(503, "loading"))
                .unwrap_err()
                .contains("status 503")
        );
        assert!(judge(&entry(None, None), &answer(200, "")).is_ok());
        assert!(judge(&entry(None, Some("ok")), &answer(200, "not here")).is_err());
    }
}
