//! An INI inventory file -> groups, hosts and their vars, read as ansible-core's
//! `plugins/inventory/ini.py` reads it:
//!
//! - `#` and `;` at the start of a line are comments; hosts before any section are ungrouped;
//! - `[group]` lists hosts, one per line: a name or range (`web[01:10]`, `db-[a:c]`), an
//!   optional `:port`, then `key=value` host vars split like a shell line (`#` starts a
//!   comment); `[group:vars]` holds `key = value` lines; `[group:children]` names groups;
//! - every value (host line or `:vars`) is typed by Python's `ast.literal_eval` (`80` is an
//!   int, `True` a bool, `'80'` a string), else kept as the text ([`pyliteral`]). On a host
//!   line the shell-style split has already removed one level of quotes: `x='5'` is the int
//!   5, `x="'5'"` the string;
//! - a group named in `:children` or `:vars` must be declared by its own `[group]` or
//!   `[group:children]` section somewhere in the file.

use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;

use super::{Parsed, hostpattern, pyliteral};
use crate::error::Error;

static SECTION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$").expect("regex"));
static GROUP_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([^:\]\s]+)\s*(?:#.*)?$").expect("regex"));

#[derive(PartialEq, Eq, Clone, Copy)]
enum State {
    Hosts,
    Children,
    Vars,
}

/// A group named before it is declared: where, and (for `:children`) under which parents.
struct Pending {
    line: usize,
    state: State,
    parents: Vec<String>,
}

/// Adds the INI inventory `text` (read from `path`) to `parsed`.
pub fn parse(path: &Path, text: &str, parsed: &mut Parsed) -> Result<(), Error> {
    // Messages quote the line: a line of 40 KB is quoted in part.
    let at = |line: usize, msg: String| {
        Error::config(
            format!("{}:{line}", path.display()),
            crate::text::shorten(&msg, 300),
        )
    };
    let mut pending: indexmap::IndexMap<String, Pending> = indexmap::IndexMap::new();
    let mut group = "ungrouped".to_string();
    let mut state = State::Hosts;
    for (n, raw) in crate::text::python_splitlines(text).into_iter().enumerate() {
        let lineno = n + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(c) = SECTION.captures(line) {
            group = c[1].to_string();
            state = match c.get(2).map(|m| m.as_str()) {
                None | Some("hosts") => State::Hosts,
                Some("children") => State::Children,
                Some("vars") => State::Vars,
                Some(other) => {
                    return Err(at(
                        lineno,
                        format!("section [{group}:{other}] has unknown type `{other}`"),
                    )
                    .with_hint("a section is [group], [group:vars] or [group:children]"));
                }
            };
            if !parsed.groups.contains_key(&group) {
                // [group] or [group:children] declares a group; [group:vars] alone does not.
                if state == State::Vars && !pending.contains_key(&group) {
                    pending.insert(
                        group.clone(),
                        Pending {
                            line: lineno,
                            state,
                            parents: Vec::new(),
                        },
                    );
                }
                parsed.add_group(&group);
            }
            if state != State::Vars
                && let Some(p) = pending.get(&group)
            {
                if p.state == State::Children {
                    add_pending_children(path, &group, &mut pending, parsed)?;
                } else {
                    pending.shift_remove(&group);
                }
            }
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            return Err(at(lineno, format!("invalid section entry `{line}`"))
                .with_hint("a section has no spaces: [group], [group:vars] or [group:children]"));
        }
        match state {
            State::Hosts => {
                let tokens = shlex_split(line)
                    .map_err(|e| at(lineno, format!("cannot split the host line `{line}`: {e}")))?;
                let Some(pattern) = tokens.first() else {
                    continue;
                };
                if pattern.trim() == "---" {
                    return Err(at(
                        lineno,
                        format!(
                            "invalid host pattern `{pattern}`: `---` is normally a sign this is a YAML file"
                        ),
                    ));
                }
                let (hosts, port) = hostpattern::expand(pattern).map_err(|e| at(lineno, e))?;
                if pattern.trim().ends_with(':') && port.is_none() {
                    return Err(at(
                        lineno,
                        format!(
                            "invalid host pattern `{pattern}`: it ends in `:`, which introduces a port"
                        ),
                    ));
                }
                let mut vars = Vec::new();
                for t in &tokens[1..] {
                    let Some((k, v)) = t.split_once('=') else {
                        return Err(at(
                            lineno,
                            format!("expected key=value host variable assignment, got `{t}`"),
                        ));
                    };
                    vars.push((k.to_string(), pyliteral::typed(v)));
                }
                for host in hosts {
                    if host.is_empty() {
                        return Err(at(lineno, "an empty host name".into()));
                    }
                    parsed.add_host(&host, Some(&group), port);
                    for (k, v) in &vars {
                        parsed.set_host_var(&host, k, v.clone());
                    }
                }
            }
            State::Vars => {
                let Some((k, v)) = line.split_once('=') else {
                    return Err(at(lineno, format!("expected key=value, got `{line}`")));
                };
                parsed.set_group_var(&group, k.trim(), pyliteral::typed(v.trim()));
            }
            State::Children => {
                let Some(c) = GROUP_NAME.captures(line) else {
                    return Err(at(lineno, format!("expected a group name, got `{line}`")));
                };
                let child = c[1].to_string();
                if parsed.groups.contains_key(&child) {
                    parsed
                        .add_child(&group, &child)
                        .map_err(|e| at(lineno, e))?;
                } else {
                    pending
                        .entry(child)
                        .or_insert_with(|| Pending {
                            line: lineno,
                            state: State::Children,
                            parents: Vec::new(),
                        })
                        .parents
                        .push(group.clone());
                }
            }
        }
    }
    if let Some((name, p)) = pending.first() {
        let msg = match p.state {
            State::Vars => format!("section [{name}:vars] is for a group declared nowhere"),
            _ => format!(
                "section [{}:children] includes `{name}`, a group declared nowhere",
                p.parents.last().map_or("?", String::as_str)
            ),
        };
        return Err(at(p.line, msg).with_hint(format!(
            "declare it with a [{name}] or [{name}:children] section"
        )));
    }
    Ok(())
}

fn add_pending_children(
    path: &Path,
    group: &str,
    pending: &mut indexmap::IndexMap<String, Pending>,
    parsed: &mut Parsed,
) -> Result<(), Error> {
    let Some(p) = pending.shift_remove(group) else {
        return Ok(());
    };
    for parent in &p.parents {
        parsed
            .add_child(parent, group)
            .map_err(|e| Error::config(format!("{}:{}", path.display(), p.line), e))?;
        if pending
            .get(parent)
            .is_some_and(|pp| pp.state == State::Children)
        {
            add_pending_children(path, parent, pending, parsed)?;
        }
    }
    Ok(())
}

/// Python's `shlex.split(line, comments=True)` (POSIX mode): whitespace separates words,
/// quotes group, a backslash escapes (inside `"` only `\"` and `\\`), `#` starts a comment.
pub fn shlex_split(line: &str) -> Result<Vec<String>, String> {
    #[derive(PartialEq, Clone, Copy)]
    enum S {
        Space,
        Word,
        Quote(char),
        Escape(char),
    }
    let mut out = Vec::new();
    let mut token = String::new();
    let mut quoted = false;
    let mut state = S::Space;
    let mut chars = line.chars();
    loop {
        let next = chars.next();
        match state {
            S::Space | S::Word => match next {
                None => break,
                Some(' ' | '\t' | '\r' | '\n') => {
                    if !token.is_empty() || quoted {
                        out.push(std::mem::take(&mut token));
                        quoted = false;
                    }
                    state = S::Space;
                }
                Some('#') => {
                    // The rest of the line is a comment.
                    break;
                }
                Some(q @ ('\'' | '"')) => state = S::Quote(q),
                Some('\\') => state = S::Escape('a'),
                Some(c) => {
                    token.push(c);
                    state = S::Word;
                }
            },
            S::Quote(q) => {
                quoted = true;
                match next {
                    None => return Err("no closing quotation".into()),
                    Some(c) if c == q => state = S::Word,
                    Some('\\') if q == '"' => state = S::Escape(q),
                    Some(c) => token.push(c),
                }
            }
            S::Escape(from) => {
                let Some(c) = next else {
                    return Err("no escaped character".into());
                };
                // Inside double quotes only the quote and the backslash can be escaped.
                if from == '"' && c != '"' && c != '\\' {
                    token.push('\\');
                }
                token.push(c);
                state = if from == 'a' { S::Word } else { S::Quote(from) };
            }
        }
    }
    if !token.is_empty() || quoted {
        out.push(token);
    }
    Ok(out)
}

/// The vars written on a host line, by key (for tests).
#[cfg(test)]
fn host_line_vars(line: &str) -> std::collections::HashMap<String, serde_json::Value> {
    shlex_split(line).unwrap()[1..]
        .iter()
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| (k.to_string(), pyliteral::typed(v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn host_lines_split_like_a_shell() {
        assert_eq!(
            shlex_split(r#"web01 a="hello world" b='x y' c=d\ e # comment"#).unwrap(),
            ["web01", "a=hello world", "b=x y", "c=d e"]
        );
        assert_eq!(shlex_split("h a=b#c").unwrap(), ["h", "a=b"]);
        assert_eq!(shlex_split(r#"h x="a\"b\n""#).unwrap(), ["h", r#"x=a"b\n"#]);
        assert_eq!(shlex_split("h ''").unwrap(), ["h", ""]);
        assert!(shlex_split("h a='open").is_err());
        let vars = host_line_vars(r#"h port=80 s="'80'" q='80' flag=True t=true"#);
        assert_eq!(vars["port"], json!(80));
        assert_eq!(vars["s"], json!("80"));
        assert_eq!(vars["q"], json!(80));
        assert_eq!(vars["flag"], json!(true));
        assert_eq!(vars["t"], json!("true"));
    }
}
