//! Ansible's Jinja tests (`plugins/test/core.py`, `files.py`, `mathstuff.py`, `uri.py`):
//! (value, arguments) -> true or false, as ansible-core 2.19 decides.
//!
//! The file tests look at the controller, relative to deploy's working directory, as
//! Ansible's do. The tests of task results (`failed`, `changed`, `skipped`, ...) are
//! refused: deploy runs no tasks, so no value is a task result.

use std::cmp::Ordering;
use std::sync::LazyLock;

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Value};
use regex::Regex;

use super::pyfmt::{py_repr, py_str};

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

pub fn register(env: &mut Environment<'static>) {
    env.add_test("match", |v: Value, p: String, kw: Kwargs| {
        regex_test(v, p, kw, "match")
    });
    env.add_test("search", |v: Value, p: String, kw: Kwargs| {
        regex_test(v, p, kw, "search")
    });
    env.add_test("regex", |v: Value, p: String, kw: Kwargs| {
        regex_test(v, p, kw, "")
    });
    env.add_test("version", version_compare);
    env.add_test("version_compare", version_compare);
    env.add_test("any", |v: Value| -> Result<bool, Error> {
        Ok(v.try_iter()?.any(|x| x.is_true()))
    });
    env.add_test("all", |v: Value| -> Result<bool, Error> {
        Ok(v.try_iter()?.all(|x| x.is_true()))
    });
    env.add_test("truthy", |v: Value, kw: Kwargs| truthy(v, kw));
    env.add_test("falsy", |v: Value, kw: Kwargs| truthy(v, kw).map(|b| !b));
    env.add_test("vault_encrypted", |_v: Value| false);
    env.add_test("vaulted_file", vaulted_file);
    for name in ["subset", "issubset"] {
        env.add_test(name, |a: Value, b: Value| subset(&a, &b));
    }
    for name in ["superset", "issuperset"] {
        env.add_test(name, |a: Value, b: Value| subset(&b, &a));
    }
    env.add_test("contains", |seq: Value, v: Value| contains(&seq, &v));
    for name in ["nan", "isnan"] {
        env.add_test(name, |v: Value| {
            v.kind() == ValueKind::Number && f64::try_from(v).is_ok_and(f64::is_nan)
        });
    }
    env.add_test("uri", |v: Value, schemes: Option<Vec<String>>| {
        is_uri(&v, schemes.as_deref())
    });
    env.add_test("url", |v: Value, schemes: Option<Vec<String>>| {
        is_uri(&v, schemes.as_deref())
            && url_parts(&v).is_some_and(|(scheme, netloc)| !netloc.is_empty() || scheme == "file")
    });
    env.add_test("urn", |v: Value| is_uri(&v, Some(&["urn".to_string()])));
    register_files(env);
    for name in [
        "failed",
        "failure",
        "succeeded",
        "success",
        "successful",
        "reachable",
        "unreachable",
        "timedout",
        "changed",
        "change",
        "skipped",
        "skip",
        "finished",
        "started",
    ] {
        env.add_test(name, move |_v: Value| -> Result<bool, Error> {
            Err(invalid(format!(
                "the `{name}` test checks a task result; deploy runs no tasks, so it refuses this test"
            )))
        });
    }
}

/// `regex(pattern, ignorecase=False, multiline=False, match_type='search')`.
fn regex_test(v: Value, pattern: String, kwargs: Kwargs, fixed: &str) -> Result<bool, Error> {
    let ignorecase = kwargs.get::<Option<bool>>("ignorecase")?.unwrap_or(false);
    let multiline = kwargs.get::<Option<bool>>("multiline")?.unwrap_or(false);
    let match_type = if fixed.is_empty() {
        kwargs
            .get::<Option<String>>("match_type")?
            .unwrap_or_else(|| "search".into())
    } else {
        fixed.to_string()
    };
    kwargs.assert_all_used()?;
    let anchored = match match_type.as_str() {
        "search" => pattern.clone(),
        "match" => format!(r"\A(?:{pattern})"),
        "fullmatch" => format!(r"\A(?:{pattern})\z"),
        other => {
            return Err(invalid(format!(
                "regex: match_type must be search, match or fullmatch, not {other:?}"
            )));
        }
    };
    let re = super::filters::compile_as(&match_type, &anchored, &pattern, ignorecase, multiline)?;
    Ok(re.is_match(&py_str(&v)))
}

/// `convert_bool`: Ansible's `boolean()`, falling back to the value itself.
fn truthy(v: Value, kwargs: Kwargs) -> Result<bool, Error> {
    let convert = kwargs.get::<Option<bool>>("convert_bool")?.unwrap_or(false);
    kwargs.assert_all_used()?;
    if convert {
        let norm = match v.kind() {
            ValueKind::String => v.as_str().unwrap_or_default().trim().to_lowercase(),
            ValueKind::Bool | ValueKind::Number => py_str(&v).to_lowercase(),
            _ => String::new(),
        };
        match norm.as_str() {
            "y" | "yes" | "on" | "1" | "true" | "t" | "1.0" => return Ok(true),
            "n" | "no" | "off" | "0" | "false" | "f" | "0.0" => return Ok(false),
            _ => {}
        }
    }
    Ok(v.is_true())
}

fn list(v: &Value) -> Result<Vec<Value>, Error> {
    match v.kind() {
        ValueKind::String => Ok(v
            .as_str()
            .unwrap_or_default()
            .chars()
            .map(|c| Value::from(c.to_string()))
            .collect()),
        _ => Ok(v.try_iter()?.collect()),
    }
}

fn subset(a: &Value, b: &Value) -> Result<bool, Error> {
    let b = list(b)?;
    Ok(list(a)?.iter().all(|x| b.contains(x)))
}

/// Python's `value in seq`.
fn contains(seq: &Value, v: &Value) -> Result<bool, Error> {
    match seq.kind() {
        ValueKind::String => Ok(seq.as_str().unwrap_or_default().contains(&*py_str(v))),
        ValueKind::Map => Ok(seq.get_item(v).is_ok_and(|x| !x.is_undefined())),
        _ => Ok(seq.try_iter()?.any(|x| x == *v)),
    }
}

/// Scheme and netloc as `urllib.parse.urlparse` splits them; None where it raises.
fn url_parts(v: &Value) -> Option<(String, String)> {
    let (scheme, netloc, _) = super::filters::split_scheme_netloc(v.as_str()?);
    if netloc.contains('[') != netloc.contains(']') {
        // urlsplit: "Invalid IPv6 URL".
        return None;
    }
    Some((scheme, netloc.to_string()))
}

fn is_uri(v: &Value, schemes: Option<&[String]>) -> bool {
    match url_parts(v) {
        None => false,
        Some((scheme, _)) => schemes.is_none_or(|s| s.is_empty() || s.contains(&scheme)),
    }
}

fn vaulted_file(v: Value) -> Result<bool, Error> {
    let path = py_str(&v);
    let mut head = [0u8; 14];
    use std::io::Read as _;
    let mut f = std::fs::File::open(&path).map_err(|_| {
        invalid(format!(
            "Cannot test if the file {} is a vault.",
            py_repr(&v)
        ))
    })?;
    let n = f.read(&mut head).unwrap_or(0);
    Ok(head[..n].starts_with(b"$ANSIBLE_VAULT"))
}

fn register_files(env: &mut Environment<'static>) {
    use std::path::Path;
    let meta = |v: &Value| std::fs::metadata(py_str(v));
    for name in ["directory", "is_dir"] {
        env.add_test(name, move |v: Value| meta(&v).is_ok_and(|m| m.is_dir()));
    }
    for name in ["file", "is_file"] {
        env.add_test(name, move |v: Value| meta(&v).is_ok_and(|m| m.is_file()));
    }
    for name in ["link", "is_link"] {
        env.add_test(name, |v: Value| {
            std::fs::symlink_metadata(py_str(&v)).is_ok_and(|m| m.file_type().is_symlink())
        });
    }
    env.add_test("exists", move |v: Value| meta(&v).is_ok());
    env.add_test("link_exists", |v: Value| {
        std::fs::symlink_metadata(py_str(&v)).is_ok()
    });
    for name in ["abs", "is_abs"] {
        env.add_test(name, |v: Value| py_str(&v).starts_with('/'));
    }
    for name in ["same_file", "is_same_file"] {
        env.add_test(name, |a: Value, b: Value| -> Result<bool, Error> {
            use std::os::unix::fs::MetadataExt as _;
            let (pa, pb) = (py_str(&a), py_str(&b));
            let ma =
                std::fs::metadata(&pa).map_err(|e| invalid(format!("same_file: {pa}: {e}")))?;
            let mb =
                std::fs::metadata(&pb).map_err(|e| invalid(format!("same_file: {pb}: {e}")))?;
            Ok(ma.dev() == mb.dev() && ma.ino() == mb.ino())
        });
    }
    for name in ["mount", "is_mount"] {
        env.add_test(name, |v: Value| {
            use std::os::unix::fs::MetadataExt as _;
            let p = py_str(&v);
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                return false;
            };
            if m.file_type().is_symlink() {
                return false;
            }
            let parent = Path::new(&p).join("..");
            let Ok(pm) = std::fs::metadata(&parent) else {
                return false;
            };
            m.dev() != pm.dev() || m.ino() == pm.ino()
        });
    }
}

// --- versions --------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Int(u128),
    Str(String),
}

/// LooseVersion's components: digit runs as ints, lowercase runs and whatever lies between
/// as strings, dots dropped.
fn loose(s: &str) -> Vec<Part> {
    let mut out = Vec::new();
    let mut other = String::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let flush = |other: &mut String, out: &mut Vec<Part>| {
        if !other.is_empty() {
            out.push(match other.parse::<u128>() {
                Ok(n) if other.chars().all(|c| c.is_ascii_digit()) => Part::Int(n),
                _ => Part::Str(std::mem::take(other)),
            });
            other.clear();
        }
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() || c.is_ascii_lowercase() {
            flush(&mut other, &mut out);
            let digit = c.is_ascii_digit();
            let start = i;
            while i < chars.len()
                && (if digit {
                    chars[i].is_ascii_digit()
                } else {
                    chars[i].is_ascii_lowercase()
                })
            {
                i += 1;
            }
            let run: String = chars[start..i].iter().collect();
            out.push(if digit {
                run.parse().map(Part::Int).unwrap_or(Part::Str(run))
            } else {
                Part::Str(run)
            });
        } else if c == '.' {
            flush(&mut other, &mut out);
            i += 1;
        } else {
            other.push(c);
            i += 1;
        }
    }
    flush(&mut other, &mut out);
    out
}

/// Python's comparison of two LooseVersion component lists (int vs str raises).
fn cmp_loose(a: &[Part], b: &[Part]) -> Result<Ordering, String> {
    if a == b {
        return Ok(Ordering::Equal);
    }
    for (x, y) in a.iter().zip(b) {
        let o = match (x, y) {
            (Part::Int(p), Part::Int(q)) => p.cmp(q),
            (Part::Str(p), Part::Str(q)) => p.cmp(q),
            (Part::Int(_), Part::Str(_)) => {
                return Err("'<' not supported between instances of 'int' and 'str'".into());
            }
            (Part::Str(_), Part::Int(_)) => {
                return Err("'<' not supported between instances of 'str' and 'int'".into());
            }
        };
        if o != Ordering::Equal {
            return Ok(o);
        }
    }
    Ok(a.len().cmp(&b.len()))
}

static STRICT: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^(\d+)\.(\d+)(\.(\d+))?([ab](\d+))?$").ok());

type StrictKey = ((u128, u128, u128), Option<(String, u128)>);

fn strict(s: &str) -> Result<StrictKey, String> {
    let bad = || format!("invalid version number '{s}'");
    let c = STRICT
        .as_ref()
        .and_then(|re| re.captures(s))
        .ok_or_else(bad)?;
    let n = |i: usize| -> Result<u128, String> {
        c.get(i)
            .map_or(Ok(0), |m| m.as_str().parse().map_err(|_| bad()))
    };
    let pre = match c.get(5) {
        Some(m) => Some((m.as_str()[..1].to_string(), n(6)?)),
        None => None,
    };
    Ok(((n(1)?, n(2)?, n(4)?), pre))
}

fn cmp_strict(a: &StrictKey, b: &StrictKey) -> Ordering {
    a.0.cmp(&b.0).then_with(|| match (&a.1, &b.1) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => x.cmp(y),
    })
}

static SEMVER: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$",
    )
    .ok()
});

type SemverKey = ((u128, u128, u128), Vec<Part>);

fn semver(s: &str) -> Result<SemverKey, String> {
    let bad = || format!("invalid semantic version '{s}'");
    let c = SEMVER
        .as_ref()
        .and_then(|re| re.captures(s))
        .ok_or_else(bad)?;
    let n = |i: usize| -> Result<u128, String> {
        c.get(i)
            .map_or(Ok(0), |m| m.as_str().parse().map_err(|_| bad()))
    };
    let pre = c.get(4).map_or_else(Vec::new, |m| {
        m.as_str()
            .split('.')
            .map(|x| match x.parse::<u128>() {
                Ok(n) if x.chars().all(|c| c.is_ascii_digit()) => Part::Int(n),
                _ => Part::Str(x.to_string()),
            })
            .collect()
    });
    Ok(((n(1)?, n(2)?, n(3)?), pre))
}

/// SemanticVersion's `_cmp`: core first; a release outranks its prereleases; prerelease
/// identifiers numeric < alphanumeric.
fn cmp_semver(a: &SemverKey, b: &SemverKey) -> Ordering {
    if a.0 != b.0 {
        return a.0.cmp(&b.0);
    }
    match (a.1.is_empty(), b.1.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        _ => {}
    }
    for (x, y) in a.1.iter().zip(&b.1) {
        let o = match (x, y) {
            (Part::Int(p), Part::Int(q)) => p.cmp(q),
            (Part::Str(p), Part::Str(q)) => p.cmp(q),
            (Part::Int(_), Part::Str(_)) => Ordering::Less,
            (Part::Str(_), Part::Int(_)) => Ordering::Greater,
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.1.len().cmp(&b.1.len())
}

/// `version(version, operator='eq', strict=None, version_type=None)`.
fn version_compare(
    value: Value,
    version: Value,
    operator: Option<String>,
    kwargs: Kwargs,
) -> Result<bool, Error> {
    let operator = kwargs
        .get::<Option<String>>("operator")?
        .or(operator)
        .unwrap_or_else(|| "eq".into());
    let strict_flag: Option<Value> = kwargs.get("strict")?;
    let version_type: Option<String> = kwargs.get("version_type")?;
    kwargs.assert_all_used()?;
    if strict_flag.is_some() && version_type.is_some() {
        return Err(invalid("Cannot specify both 'strict' and 'version_type'"));
    }
    if !value.is_true() {
        return Err(invalid("Input version value cannot be empty"));
    }
    if !version.is_true() {
        return Err(invalid(
            "Version parameter to compare against cannot be empty",
        ));
    }
    let kind = if strict_flag.is_some_and(|s| s.is_true()) {
        "strict".to_string()
    } else {
        version_type.unwrap_or_else(|| "loose".into())
    };
    let op = match operator.as_str() {
        "==" | "=" | "eq" => "eq",
        "<" | "lt" => "lt",
        "<=" | "le" => "le",
        ">" | "gt" => "gt",
        ">=" | "ge" => "ge",
        "!=" | "<>" | "ne" => "ne",
        _ => {
            return Err(invalid(format!(
                "Invalid operator type ({operator}). Must be one of '==', '=', 'eq', '<', 'lt', '<=', 'le', '>', 'gt', '>=', 'ge', '!=', '<>', 'ne'"
            )));
        }
    };
    let (a, b) = (py_str(&value), py_str(&version));
    let failed = |e: String| invalid(format!("Version comparison failed: {e}"));
    let ord = match kind.as_str() {
        "loose" => match cmp_loose(&loose(&a), &loose(&b)) {
            Ok(o) => o,
            // Python's `==` of two lists never raises; `<` does.
            Err(_) if op == "eq" => Ordering::Less,
            Err(_) if op == "ne" => Ordering::Less,
            Err(e) => return Err(failed(e)),
        },
        "strict" => cmp_strict(&strict(&a).map_err(failed)?, &strict(&b).map_err(failed)?),
        "semver" | "semantic" => {
            cmp_semver(&semver(&a).map_err(failed)?, &semver(&b).map_err(failed)?)
        }
        "pep440" => {
            return Err(invalid(
                "version_type='pep440' is not supported by deploy (use 'loose', 'strict' or 'semver')",
            ));
        }
        other => {
            return Err(invalid(format!(
                "Invalid version type ({other}). Must be one of 'loose', 'strict', 'semver', 'semantic', 'pep440'"
            )));
        }
    };
    Ok(match op {
        "eq" => ord == Ordering::Equal,
        "ne" => ord != Ordering::Equal,
        "lt" => ord == Ordering::Less,
        "le" => ord != Ordering::Greater,
        "gt" => ord == Ordering::Greater,
        _ => ord != Ordering::Less,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loose_components() {
        assert_eq!(
            loose("1.2-RC1"),
            vec![
                Part::Int(1),
                Part::Int(2),
                Part::Str("-RC".into()),
                Part::Int(1)
            ]
        );
        assert_eq!(
            cmp_loose(&loose("1.10"), &loose("1.9")),
            Ok(Ordering::Greater)
        );
        assert!(cmp_loose(&loose("1.a"), &loose("1.1")).is_err());
    }
}
