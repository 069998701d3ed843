//! YAML files -> typed values, the way Ansible reads them.
//!
//! One place sets the parser options (YAML 1.1 booleans such as `enabled: no`, `<<:` merge
//! keys, `mode: 0755` kept as the string "0755") and turns parser errors into
//! [`Error::Yaml`] naming the file, line and column. [`fast`] reads the common shape of
//! rendered configs into JSON values without serde-saphyr, exactly as it would, and says so
//! when it cannot.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::Error;

pub mod fast;

/// The parser options every YAML file of the inventory is read with.
fn options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    // `mode: 0755` must stay "0755", not become 755 or 493.
    options.leading_zero_numbers_as_strings = true;
    // YAML 1.1 booleans (`yes`, `no`, `on`, `off`) as Ansible's PyYAML reads them.
    options.strict_booleans = false;
    options
}

/// Parses `text` (the contents of `path`) as YAML into `T`.
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, Error> {
    serde_saphyr::from_str_with_options(text, options()).map_err(|e| yaml_error(path, text, &e))
}

/// Parses `text` as YAML into `T`, or `None`: for callers that drop the error, which is
/// costly to build (it quotes an excerpt).
pub fn try_parse<T: DeserializeOwned>(text: &str) -> Option<T> {
    // Nothing reads the error, nor comments (no `Commented` value is made from these texts):
    // neither is collected (the checks parse every rendered file with this).
    let mut options = options();
    options.emit_comments = false;
    options.with_snippet = false;
    serde_saphyr::from_str_with_options(text, options).ok()
}

/// Reads and parses the YAML file at `path`.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<T, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse(path, &text)
}

fn yaml_error(path: &Path, text: &str, e: &serde_saphyr::Error) -> Error {
    let (line, column) = match e.location() {
        Some(loc) => (loc.line() as usize, loc.column() as usize),
        None => (0, 0),
    };
    // The library's own message carries a snippet of its own; keep only the first line of
    // it, and show our excerpt so every error in deploy looks the same.
    let full = e.to_string();
    let message = first_meaningful_line(&full);
    Error::Yaml {
        path: path.to_path_buf(),
        line,
        column,
        message,
        excerpt: crate::error::excerpt(text, line, column),
    }
}

/// The library's first line without its own `error: line N column M:` prefix, which our
/// `path:line:column:` already says.
fn first_meaningful_line(s: &str) -> String {
    let line = s
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("invalid YAML");
    let line = line.strip_prefix("error:").unwrap_or(line).trim_start();
    match line
        .strip_prefix("line ")
        .and_then(|rest| rest.split_once(": "))
    {
        Some((position, message)) if position.contains("column") => message.to_string(),
        _ => line.to_string(),
    }
}
