//! Ansible's text, hashing, parsing, math and random filters (`core.py`, `mathstuff.py`,
//! `urlsplit.py`), and the Jinja2 builtins minijinja lacks or prints differently (`center`,
//! `wordcount`, `format`): (value, arguments) -> what ansible-core 2.19 returns.

use std::sync::LazyLock;

use md5::Md5;
use minijinja::value::{Kwargs, Rest, Tuple, ValueKind};
use minijinja::{Error, ErrorKind, Value};
use regex::Regex;
use sha1::Sha1;
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

use super::data::items;
use super::invalid;
use super::pyrandom::PyRandom;
use crate::render::pyfmt::{as_float, float_repr, py_repr, py_str};

/// Python's type name of a value (`type_debug`, error messages).
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v.kind() {
        ValueKind::Undefined => "Undefined",
        ValueKind::None => "NoneType",
        ValueKind::Bool => "bool",
        ValueKind::Number if v.is_integer() => "int",
        ValueKind::Number => "float",
        ValueKind::String => "str",
        ValueKind::Bytes => "bytes",
        ValueKind::Seq if v.is_tuple() => "tuple",
        ValueKind::Seq => "list",
        ValueKind::Map => "dict",
        ValueKind::Iterable => "generator",
        _ => "object",
    }
}

pub(super) fn type_debug(v: Value) -> String {
    type_name(&v).to_string()
}

/// The string a text filter works on: Ansible's `to_text(nonstring='simplerepr')`.
fn text(v: &Value) -> String {
    py_str(v)
}

// --- comment ---------------------------------------------------------------------------------

/// `comment(style='plain', **kw)`, Ansible's port line for line.
pub(super) fn comment(v: Value, style: Option<String>, kwargs: Kwargs) -> Result<String, Error> {
    let style = style.unwrap_or_else(|| "plain".into());
    let (beginning, decoration, end) = match style.as_str() {
        "plain" => ("", "# ", ""),
        "erlang" => ("", "% ", ""),
        "c" => ("", "// ", ""),
        "cblock" => ("/*", " * ", " */"),
        "xml" => ("<!--", " - ", "-->"),
        _ => {
            return Err(invalid(format!(
                "Invalid style {}. Available styles: plain, erlang, c, cblock, xml",
                py_repr(&Value::from(style))
            )));
        }
    };
    let get = |name: &str| -> Result<Option<String>, Error> {
        Ok(kwargs.get::<Option<Value>>(name)?.map(|v| py_str(&v)))
    };
    let count = |name: &str| -> Result<usize, Error> {
        match kwargs.get::<Option<Value>>(name)? {
            None => Ok(1),
            Some(v) => {
                let n = i64::try_from(v.clone())
                    .ok()
                    .or_else(|| py_str(&v).trim().parse().ok())
                    .ok_or_else(|| invalid(format!("comment: {name} must be an integer")))?;
                Ok(usize::try_from(n).unwrap_or(0))
            }
        }
    };
    let prepostfix = get("decoration")?.unwrap_or_else(|| decoration.to_string());
    let newline = get("newline")?.unwrap_or_else(|| "\n".into());
    let beginning = get("beginning")?.unwrap_or_else(|| beginning.to_string());
    let prefix = get("prefix")?.unwrap_or_else(|| prepostfix.trim_end().to_string());
    let prefix_count = super::bounded("prefix_count", count("prefix_count")?)?;
    // The style's decoration applies unless `decoration` is given.
    let decoration = get("decoration")?.unwrap_or_else(|| decoration.to_string());
    let postfix = get("postfix")?.unwrap_or_else(|| prepostfix.trim_end().to_string());
    let postfix_count = super::bounded("postfix_count", count("postfix_count")?)?;
    let end = get("end")?.unwrap_or_else(|| end.to_string());
    kwargs.assert_all_used()?;
    let text = text(&v);

    let mut out = String::new();
    if !beginning.is_empty() {
        out.push_str(&beginning);
        out.push_str(&newline);
    }
    if !prefix.is_empty() {
        let one = if prefix != newline {
            format!("{prefix}{newline}")
        } else {
            newline.clone()
        };
        out.push_str(&one.repeat(prefix_count));
    }
    let body = format!(
        "{decoration}{}",
        if newline.is_empty() {
            text.clone()
        } else {
            text.replace(&newline, &format!("{newline}{decoration}"))
        }
    );
    let body = body.replace(
        &format!("{decoration}{newline}"),
        &format!("{}{newline}", decoration.trim_end()),
    );
    out.push_str(&body);
    for _ in 0..postfix_count {
        out.push_str(&newline);
        out.push_str(&postfix);
    }
    if !end.is_empty() {
        out.push_str(&newline);
        out.push_str(&end);
    }
    Ok(out)
}

// --- regular expressions ---------------------------------------------------------------------

fn compile(filter: &str, pattern: &str, ignorecase: bool, multiline: bool) -> Result<Regex, Error> {
    compile_as(filter, pattern, pattern, ignorecase, multiline)
}

/// `source` compiled for `name` (a filter or test); an error quotes `shown`, the pattern as
/// the template wrote it (`source` may wrap it in anchors).
pub(in crate::render) fn compile_as(
    name: &str,
    source: &str,
    shown: &str,
    ignorecase: bool,
    multiline: bool,
) -> Result<Regex, Error> {
    regex::RegexBuilder::new(source)
        .case_insensitive(ignorecase)
        .multi_line(multiline)
        .build()
        .map_err(|e| {
            let e = e.to_string();
            let e = e
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
                .trim_start_matches("error: ");
            invalid(format!(
                "{name}: cannot use the pattern {shown:?}: {e} (deploy's regular expressions \
                 have no look-around or backreferences)"
            ))
        })
}

fn flag(kwargs: &Kwargs, name: &str) -> Result<bool, Error> {
    Ok(kwargs
        .get::<Option<Value>>(name)?
        .is_some_and(|v| v.is_true()))
}

/// `regex_search(regex, *groups, ignorecase=, multiline=)`: the match, the listed groups, or
/// None.
pub(super) fn regex_search(
    v: Value,
    pattern: String,
    groups: Rest<String>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let re = compile(
        "regex_search",
        &pattern,
        flag(&kwargs, "ignorecase")?,
        flag(&kwargs, "multiline")?,
    )?;
    kwargs.assert_all_used()?;
    enum G {
        Num(usize),
        Name(String),
    }
    let mut wanted = Vec::new();
    for g in groups.iter() {
        if let Some(name) = g.strip_prefix("\\g<").and_then(|r| r.strip_suffix('>')) {
            wanted.push(G::Name(name.to_string()));
        } else if let Some(n) = g.strip_prefix('\\').and_then(|d| d.parse().ok()) {
            wanted.push(G::Num(n));
        } else {
            return Err(invalid("Unknown argument"));
        }
    }
    let s = text(&v);
    let Some(caps) = re.captures(&s) else {
        return Ok(Value::from(()));
    };
    if wanted.is_empty() {
        return Ok(Value::from(caps.get(0).map_or("", |m| m.as_str())));
    }
    let mut out = Vec::new();
    for g in wanted {
        let m = match &g {
            G::Num(n) if *n < caps.len() => caps.get(*n),
            G::Name(name) if re.capture_names().flatten().any(|c| c == name) => caps.name(name),
            _ => return Err(invalid("regex_search: no such group")),
        };
        out.push(m.map_or(Value::from(()), |m| Value::from(m.as_str())));
    }
    Ok(Value::from(out))
}

/// `regex_findall(regex, multiline=False, ignorecase=False)`: Python's `re.findall`.
pub(super) fn regex_findall(
    v: Value,
    pattern: String,
    multiline: Option<bool>,
    ignorecase: Option<bool>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let multiline = multiline.unwrap_or(false) || flag(&kwargs, "multiline")?;
    let ignorecase = ignorecase.unwrap_or(false) || flag(&kwargs, "ignorecase")?;
    kwargs.assert_all_used()?;
    let re = compile("regex_findall", &pattern, ignorecase, multiline)?;
    let s = text(&v);
    let groups = re.captures_len() - 1;
    let group = |c: &regex::Captures, i: usize| Value::from(c.get(i).map_or("", |m| m.as_str()));
    let out: Vec<Value> = re
        .captures_iter(&s)
        .map(|c| match groups {
            0 => group(&c, 0),
            1 => group(&c, 1),
            n => Value::from(Tuple::from(
                (1..=n).map(|i| group(&c, i)).collect::<Vec<_>>(),
            )),
        })
        .collect();
    Ok(Value::from(out))
}

/// `regex_escape(re_type='python')`: Python's `re.escape`, or POSIX basic.
pub(super) fn regex_escape(
    v: Value,
    re_type: Option<String>,
    kwargs: Kwargs,
) -> Result<String, Error> {
    let re_type = kwargs.get::<Option<String>>("re_type")?.or(re_type);
    kwargs.assert_all_used()?;
    let s = text(&v);
    let special: &str = match re_type.as_deref().unwrap_or("python") {
        "python" => "()[]{}?*+-|^$\\.&~# \t\n\r\x0b\x0c",
        "posix_basic" => "].[^$*\\",
        "posix_extended" => {
            return Err(invalid("Regex type (posix_extended) not yet implemented"));
        }
        other => return Err(invalid(format!("Invalid regex type ({other})"))),
    };
    let mut out = String::new();
    for c in s.chars() {
        if special.contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    Ok(out)
}

// --- strings ---------------------------------------------------------------------------------

/// Python's `str.split(sep=None, maxsplit=-1)`.
pub(crate) fn py_split(s: &str, sep: Option<&str>, maxsplit: i64) -> Result<Vec<String>, Error> {
    let limit = usize::try_from(maxsplit).ok();
    match sep {
        Some("") => Err(invalid("empty separator")),
        Some(sep) => Ok(match limit {
            Some(n) => s.splitn(n + 1, sep).map(String::from).collect(),
            None => s.split(sep).map(String::from).collect(),
        }),
        None => {
            let mut out = Vec::new();
            let mut rest = s.trim_start();
            while !rest.is_empty() {
                if limit.is_some_and(|n| out.len() >= n) {
                    out.push(rest.to_string());
                    break;
                }
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                out.push(rest[..end].to_string());
                rest = rest[end..].trim_start();
            }
            Ok(out)
        }
    }
}

/// Python's `str.rsplit(sep=None, maxsplit=-1)`.
pub(crate) fn py_rsplit(s: &str, sep: Option<&str>, maxsplit: i64) -> Result<Vec<String>, Error> {
    let Ok(limit) = usize::try_from(maxsplit) else {
        return py_split(s, sep, -1);
    };
    match sep {
        Some("") => Err(invalid("empty separator")),
        Some(sep) => {
            let mut v: Vec<String> = s.rsplitn(limit + 1, sep).map(String::from).collect();
            v.reverse();
            Ok(v)
        }
        None => {
            let mut out = Vec::new();
            let mut rest = s.trim_end();
            while !rest.is_empty() {
                if out.len() >= limit {
                    out.push(rest.to_string());
                    break;
                }
                let start = rest
                    .char_indices()
                    .rev()
                    .find(|(_, c)| c.is_whitespace())
                    .map_or(0, |(i, c)| i + c.len_utf8());
                out.push(rest[start..].to_string());
                rest = rest[..start].trim_end();
            }
            out.reverse();
            Ok(out)
        }
    }
}

/// `split(sep=None, maxsplit=-1)` (Python's `str.split`).
pub(super) fn split(
    v: Value,
    sep: Option<Value>,
    maxsplit: Option<i64>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let sep = kwargs.get::<Option<Value>>("sep")?.or(sep);
    let maxsplit = kwargs.get::<Option<i64>>("maxsplit")?.or(maxsplit);
    kwargs.assert_all_used()?;
    let sep = sep.filter(|s| !s.is_none()).map(|s| py_str(&s));
    let parts = py_split(&text(&v), sep.as_deref(), maxsplit.unwrap_or(-1))?;
    Ok(Value::from(parts))
}

/// Jinja2's `center(width=80)`: Python's `str.center`.
pub(super) fn center(v: Value, width: Option<usize>, kwargs: Kwargs) -> Result<String, Error> {
    let width = kwargs.get::<Option<usize>>("width")?.or(width);
    kwargs.assert_all_used()?;
    if let Some(w) = width {
        super::bounded("center width", w)?;
    }
    Ok(center_text(v, width))
}

fn center_text(v: Value, width: Option<usize>) -> String {
    let s = text(&v);
    let width = width.unwrap_or(80);
    let len = s.chars().count();
    if width <= len {
        return s;
    }
    let marg = width - len;
    let left = marg / 2 + (marg & width & 1);
    format!("{}{s}{}", " ".repeat(left), " ".repeat(marg - left))
}

/// Jinja2's `replace(old, new, count=None)`: Python's `str.replace`.
pub(super) fn replace(
    v: Value,
    old: String,
    new: String,
    count: Option<i64>,
    kwargs: Kwargs,
) -> Result<String, Error> {
    let count = kwargs.get::<Option<i64>>("count")?.or(count);
    kwargs.assert_all_used()?;
    let s = text(&v);
    Ok(match count.and_then(|c| usize::try_from(c).ok()) {
        Some(n) => s.replacen(&old, &new, n),
        None => s.replace(&old, &new),
    })
}

/// Jinja2's `truncate(length=255, killwords=False, end='...', leeway=5)`.
pub(super) fn truncate(v: Value, args: Rest<Value>, kwargs: Kwargs) -> Result<String, Error> {
    let mut pos = args.0.into_iter();
    let mut next = |name: &str| -> Result<Option<Value>, Error> {
        let p = pos.next();
        Ok(kwargs.get::<Option<Value>>(name)?.or(p))
    };
    let num = |v: Option<Value>, d: usize| -> Result<usize, Error> {
        v.map_or(Ok(d), |v| {
            usize::try_from(v).map_err(|_| invalid("truncate: expected a length"))
        })
    };
    let length = num(next("length")?, 255)?;
    let killwords = next("killwords")?.is_some_and(|v| v.is_true());
    let end = next("end")?.map_or_else(|| "...".to_string(), |v| py_str(&v));
    let leeway = num(next("leeway")?, 5)?;
    kwargs.assert_all_used()?;
    let s = text(&v);
    let chars: Vec<char> = s.chars().collect();
    let end_len = end.chars().count();
    if length < end_len {
        return Err(invalid(format!(
            "expected length >= {end_len}, got {length}"
        )));
    }
    if chars.len() <= length + leeway {
        return Ok(s);
    }
    let head: String = chars[..length - end_len].iter().collect();
    if killwords {
        return Ok(format!("{head}{end}"));
    }
    let head = match head.rsplit_once(' ') {
        Some((h, _)) => h.to_string(),
        None => head,
    };
    Ok(format!("{head}{end}"))
}

/// Jinja2's `filesizeformat(binary=False)`.
pub(super) fn filesizeformat(v: Value, binary: Option<bool>) -> Result<String, Error> {
    let bytes = match v.kind() {
        ValueKind::Number | ValueKind::Bool => f64::try_from(v.clone()).unwrap_or(0.0),
        _ => text(&v)
            .trim()
            .parse::<f64>()
            .map_err(|_| invalid("filesizeformat: not a number"))?,
    };
    let binary = binary.unwrap_or(false);
    let base: f64 = if binary { 1024.0 } else { 1000.0 };
    let prefixes = if binary {
        ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"]
    } else {
        ["kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
    };
    if bytes == 1.0 {
        return Ok("1 Byte".into());
    }
    if bytes < base {
        return Ok(format!("{} Bytes", bytes.trunc() as i64));
    }
    let mut unit = base;
    for (i, prefix) in prefixes.iter().enumerate() {
        unit = base.powi(i as i32 + 2);
        if bytes < unit || i == prefixes.len() - 1 {
            return Ok(format!("{:.1} {prefix}", base * bytes / unit));
        }
    }
    Ok(format!("{:.1} YB", base * bytes / unit))
}

static WORD: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"\w+").ok());

/// Jinja2's `wordcount`: runs of word characters.
pub(super) fn wordcount(v: Value) -> usize {
    let s = text(&v);
    WORD.as_ref().map_or(0, |re| re.find_iter(&s).count())
}

// --- hashes and uuids ------------------------------------------------------------------------

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `hash(hashtype='sha1')` with the algorithms of Python's `hashlib` deploy carries.
pub(super) fn hash(v: Value, hashtype: Option<String>, kwargs: Kwargs) -> Result<String, Error> {
    let hashtype = kwargs.get::<Option<String>>("hashtype")?.or(hashtype);
    kwargs.assert_all_used()?;
    let data = text(&v);
    let data = data.as_bytes();
    let kind = hashtype.unwrap_or_else(|| "sha1".into());
    Ok(match kind.to_lowercase().as_str() {
        "md5" => hex(&Md5::digest(data)),
        "sha1" => hex(&Sha1::digest(data)),
        "sha224" => hex(&Sha224::digest(data)),
        "sha256" => hex(&Sha256::digest(data)),
        "sha384" => hex(&Sha384::digest(data)),
        "sha512" => hex(&Sha512::digest(data)),
        _ => {
            return Err(invalid(format!(
                "unsupported hash type {kind} (deploy supports md5, sha1, sha224, sha256, sha384, sha512)"
            )));
        }
    })
}

pub(super) fn md5(v: Value) -> String {
    hex(&Md5::digest(text(&v).as_bytes()))
}

pub(super) fn sha1(v: Value) -> String {
    hex(&Sha1::digest(text(&v).as_bytes()))
}

/// Ansible's namespace for `to_uuid`.
const UUID_NAMESPACE_ANSIBLE: &str = "361e6d51-faec-444a-9079-341386da8e2e";

/// Python's `uuid.UUID(text)`: braces, `urn:uuid:` and hyphens dropped, 32 hex digits.
fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let t = s.replace("urn:", "").replace("uuid:", "");
    let t = t.trim_matches(['{', '}']).replace('-', "");
    if t.len() != 32 || !t.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(t.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// `to_uuid(namespace=...)`: `uuid.uuid5`.
pub(super) fn to_uuid(v: Value, namespace: Option<Value>, kwargs: Kwargs) -> Result<String, Error> {
    let namespace = kwargs.get::<Option<Value>>("namespace")?.or(namespace);
    kwargs.assert_all_used()?;
    let ns_text = namespace.map_or_else(|| UUID_NAMESPACE_ANSIBLE.to_string(), |n| py_str(&n));
    let ns = parse_uuid(&ns_text).ok_or_else(|| {
        invalid(format!(
            "Invalid value '{ns_text}' for 'namespace': badly formed hexadecimal UUID string"
        ))
    })?;
    let mut h = Sha1::new();
    h.update(ns);
    h.update(text(&v).as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex(&b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..]
    ))
}

// --- parsing ---------------------------------------------------------------------------------

/// `from_json`: Python's `json.loads` (NaN and Infinity included).
pub(super) fn from_json(v: Value) -> Result<Value, Error> {
    let s = text(&v);
    let parsed: serde_json::Value =
        serde_json::from_str(&s).map_err(|e| invalid(format!("from_json: not valid JSON: {e}")))?;
    Ok(Value::from(minijinja::value::Serde(parsed)))
}

fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    // PyYAML (YAML 1.1): yes/no/on/off are booleans, 0755 is octal.
    options.strict_booleans = false;
    options.legacy_octal_numbers = true;
    options
}

/// `from_yaml`: one YAML document (None stays None).
pub(super) fn from_yaml(v: Value) -> Result<Value, Error> {
    if v.is_none() {
        return Ok(v);
    }
    if v.kind() != ValueKind::String {
        return Ok(v);
    }
    let s = v.as_str().unwrap_or_default();
    serde_saphyr::from_str_with_options::<Value>(s, yaml_options()).map_err(|e| {
        invalid(format!(
            "from_yaml: not valid YAML: {}",
            first_line(&e.to_string())
        ))
    })
}

/// `from_yaml_all`: every document, as a list.
pub(super) fn from_yaml_all(v: Value) -> Result<Value, Error> {
    if v.is_none() {
        return Ok(Value::from(Vec::<Value>::new()));
    }
    if v.kind() != ValueKind::String {
        return Ok(v);
    }
    let s = v.as_str().unwrap_or_default();
    let docs: Vec<Value> =
        serde_saphyr::from_multiple_with_options(s, yaml_options()).map_err(|e| {
            invalid(format!(
                "from_yaml_all: not valid YAML: {}",
                first_line(&e.to_string())
            ))
        })?;
    Ok(Value::from(docs))
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// `url` cut as `urllib.parse.urlsplit` cuts it first: the scheme (lowercased; empty when
/// there is none), the netloc after `//`, and the rest (path, query, fragment).
pub(in crate::render) fn split_scheme_netloc(url: &str) -> (String, &str, &str) {
    let mut rest = url;
    let mut scheme = String::new();
    if let Some(i) = rest.find(':')
        && i > 0
        && rest[..i].starts_with(|c: char| c.is_ascii_alphabetic())
        && rest[..i]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        scheme = rest[..i].to_ascii_lowercase();
        rest = &rest[i + 1..];
    }
    let mut netloc = "";
    if let Some(after) = rest.strip_prefix("//") {
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        netloc = &after[..end];
        rest = &after[end..];
    }
    (scheme, netloc, rest)
}

/// Python's `urllib.parse.urlsplit` -> Ansible's `urlsplit` dict (keys in `dir()` order), or
/// one component.
pub(super) fn urlsplit(v: Value, query: Option<String>, kwargs: Kwargs) -> Result<Value, Error> {
    let query = kwargs.get::<Option<String>>("query")?.or(query);
    kwargs.assert_all_used()?;
    let url = text(&v);
    let (scheme, netloc, rest) = split_scheme_netloc(&url);
    let (rest, fragment) = rest.split_once('#').unwrap_or((rest, ""));
    let (path, query_part) = rest.split_once('?').unwrap_or((rest, ""));
    let (userinfo, hostport) = match netloc.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, netloc),
    };
    let (username, password) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((a, b)) => (Value::from(a), Value::from(b)),
            None => (Value::from(u), Value::from(())),
        },
        None => (Value::from(()), Value::from(())),
    };
    let (host, port) = if let Some(r) = hostport.strip_prefix('[') {
        match r.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => (r, None),
        }
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let hostname = if host.is_empty() {
        Value::from(())
    } else {
        Value::from(host.to_lowercase())
    };
    let port = match port {
        None | Some("") => Value::from(()),
        Some(p) => match p.parse::<u32>() {
            Ok(n) if n <= 65535 && p.chars().all(|c| c.is_ascii_digit()) => Value::from(n),
            _ => {
                return Err(invalid(format!(
                    "Port could not be cast to integer value as {p:?}"
                )));
            }
        },
    };
    let parts = [
        ("fragment", Value::from(fragment)),
        ("hostname", hostname),
        ("netloc", Value::from(netloc)),
        ("password", password),
        ("path", Value::from(path)),
        ("port", port),
        ("query", Value::from(query_part)),
        ("scheme", Value::from(scheme)),
        ("username", username),
    ];
    match query.filter(|q| !q.is_empty()) {
        Some(q) => parts
            .iter()
            .find(|(k, _)| *k == q)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| invalid(format!("urlsplit: unknown URL component: {q}"))),
        None => Ok(Value::from_pairs(parts)),
    }
}

// --- numbers ---------------------------------------------------------------------------------

fn number(v: &Value, filter: &str) -> Result<f64, Error> {
    match v.kind() {
        ValueKind::Number | ValueKind::Bool => f64::try_from(v.clone())
            .map_err(|_| invalid(format!("{filter}() can only be used on numbers"))),
        _ => Err(invalid(format!("{filter}() can only be used on numbers"))),
    }
}

fn domain(filter: &str) -> Error {
    invalid(format!("{filter}(): math domain error"))
}

/// `log(base=e)`.
pub(super) fn log(v: Value, base: Option<Value>, kwargs: Kwargs) -> Result<f64, Error> {
    let base = kwargs.get::<Option<Value>>("base")?.or(base);
    kwargs.assert_all_used()?;
    let x = number(&v, "log")?;
    if x <= 0.0 {
        return Err(domain("log"));
    }
    match base {
        Some(b) if number(&b, "log")? == 10.0 => Ok(x.log10()),
        Some(b) => {
            let b = number(&b, "log")?;
            if b <= 0.0 || b == 1.0 {
                return Err(domain("log"));
            }
            Ok(x.ln() / b.ln())
        }
        None => Ok(x.ln()),
    }
}

/// `pow(y)`: Python's `math.pow`, always a float.
pub(super) fn pow(v: Value, y: Value) -> Result<f64, Error> {
    let r = number(&v, "pow")?.powf(number(&y, "pow")?);
    if r.is_nan() {
        return Err(domain("pow"));
    }
    Ok(r)
}

/// `root(base=2)`.
pub(super) fn root(v: Value, base: Option<Value>, kwargs: Kwargs) -> Result<f64, Error> {
    let base = kwargs.get::<Option<Value>>("base")?.or(base);
    kwargs.assert_all_used()?;
    let x = number(&v, "root")?;
    let base = match base {
        Some(b) => number(&b, "root")?,
        None => 2.0,
    };
    let r = if base == 2.0 {
        x.sqrt()
    } else {
        x.powf(1.0 / base)
    };
    if r.is_nan() {
        return Err(invalid("root() can only be used on numbers"));
    }
    Ok(r)
}

const SIZES: [(char, u128); 9] = [
    ('Y', 1 << 80),
    ('Z', 1 << 70),
    ('E', 1 << 60),
    ('P', 1 << 50),
    ('T', 1 << 40),
    ('G', 1 << 30),
    ('M', 1 << 20),
    ('K', 1 << 10),
    ('B', 1),
];

/// `human_readable(isbits=False, unit=None)`: `'%.2f %s'`.
pub(super) fn human_readable(
    v: Value,
    isbits: Option<bool>,
    unit: Option<String>,
    kwargs: Kwargs,
) -> Result<String, Error> {
    let isbits = kwargs
        .get::<Option<bool>>("isbits")?
        .or(isbits)
        .unwrap_or(false);
    let unit = kwargs.get::<Option<String>>("unit")?.or(unit);
    kwargs.assert_all_used()?;
    let size = match v.kind() {
        ValueKind::Number | ValueKind::Bool => number(&v, "human_readable")?,
        _ => return Err(invalid("human_readable() failed on bad input")),
    };
    let base = if isbits { "bits" } else { "Bytes" };
    let mut chosen = SIZES[SIZES.len() - 1];
    for s in SIZES {
        let hit = match &unit {
            None => size >= s.1 as f64,
            Some(u) => u.to_uppercase().starts_with(s.0),
        };
        chosen = s;
        if hit {
            break;
        }
    }
    let suffix = if chosen.1 != 1 {
        format!("{}{}", chosen.0, &base[..1])
    } else {
        base.to_string()
    };
    Ok(format!("{:.2} {suffix}", size / chosen.1 as f64))
}

/// Python's `round()` of a float to an int: half to even.
fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 {
        2.0 * (x / 2.0).round()
    } else {
        r
    }
}

static HUMAN: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^([0-9]*\.?[0-9]+)(?:\s*([A-Za-z]+))?\s*$").ok());

/// `human_to_bytes(default_unit=None, isbits=False)`.
pub(super) fn human_to_bytes(
    v: Value,
    default_unit: Option<String>,
    isbits: Option<bool>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let default_unit = kwargs
        .get::<Option<String>>("default_unit")?
        .or(default_unit);
    let isbits = kwargs
        .get::<Option<bool>>("isbits")?
        .or(isbits)
        .unwrap_or(false);
    kwargs.assert_all_used()?;
    let s = text(&v);
    let bad = || {
        invalid(format!(
            "human_to_bytes() can't interpret following string: {s}"
        ))
    };
    let caps = HUMAN
        .as_ref()
        .and_then(|re| re.captures(&s))
        .ok_or_else(bad)?;
    let num: f64 = caps
        .get(1)
        .and_then(|m| m.as_str().parse().ok())
        .ok_or_else(bad)?;
    let Some(unit) = caps.get(2).map(|m| m.as_str().to_string()).or(default_unit) else {
        return Ok(Value::from(round_half_even(num) as i128));
    };
    let key = unit
        .chars()
        .next()
        .map(|c| c.to_ascii_uppercase())
        .unwrap_or('?');
    let Some(&(_, limit)) = SIZES.iter().find(|(c, _)| *c == key) else {
        return Err(invalid(format!(
            "human_to_bytes() failed to convert {s} (unit = {unit}). The suffix must be one of Y, Z, E, P, T, G, M, K, B"
        )));
    };
    if unit.chars().count() > 1 {
        let names = [
            ('B', "byte", "bit"),
            ('K', "kilobyte", "kilobit"),
            ('M', "megabyte", "megabit"),
            ('G', "gigabyte", "gigabit"),
            ('T', "terabyte", "terabit"),
            ('P', "petabyte", "petabit"),
            ('E', "exabyte", "exabit"),
            ('Z', "zetabyte", "zetabit"),
            ('Y', "yottabyte", "yottabit"),
        ];
        let (_, byte_name, bit_name) = names
            .iter()
            .find(|(c, _, _)| *c == key)
            .copied()
            .unwrap_or(('B', "byte", "bit"));
        let (name, short) = if isbits {
            (bit_name, format!("{key}b"))
        } else {
            (byte_name, format!("{key}B"))
        };
        if unit.to_lowercase() != name && unit != short {
            let class = if isbits { "b" } else { "B" };
            let expect = if key == 'B' {
                format!("expect {class} or {}", if isbits { "bit" } else { "byte" })
            } else {
                format!("expect {key}{class} or {key}")
            };
            return Err(invalid(format!(
                "human_to_bytes() failed to convert {s}. Value is not a valid string ({expect})"
            )));
        }
    }
    Ok(Value::from(round_half_even(num * limit as f64) as i128))
}

// --- random ----------------------------------------------------------------------------------

fn seeded(seed: &Value) -> Result<PyRandom, Error> {
    match seed.kind() {
        ValueKind::String => Ok(PyRandom::from_str(seed.as_str().unwrap_or_default())),
        ValueKind::Number if seed.is_integer() => Ok(PyRandom::from_int(
            i128::try_from(seed.clone()).unwrap_or(0),
        )),
        ValueKind::Bool => Ok(PyRandom::from_int(i128::from(seed.is_true()))),
        _ => Err(invalid(format!(
            "random: deploy accepts a string or an integer as seed, not {}",
            type_name(seed)
        ))),
    }
}

fn system_below(n: u64) -> u64 {
    use rand::RngExt as _;
    if n == 0 {
        return 0;
    }
    rand::rng().random_range(0..n)
}

/// `random(start=None, step=None, seed=None)`: an int below `end`, or one item.
pub(super) fn random(v: Value, args: Rest<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let mut pos = args.0.into_iter();
    let start = kwargs.get::<Option<Value>>("start")?.or_else(|| pos.next());
    let step = kwargs.get::<Option<Value>>("step")?.or_else(|| pos.next());
    let seed = kwargs.get::<Option<Value>>("seed")?.or_else(|| pos.next());
    kwargs.assert_all_used()?;
    let mut rng = seed
        .filter(|s| !s.is_none())
        .map(|s| seeded(&s))
        .transpose()?;
    let mut below = |n: u64| match rng.as_mut() {
        Some(r) => r.randbelow(n),
        None => system_below(n),
    };
    let as_int = |v: &Option<Value>| -> Result<i64, Error> {
        match v {
            None => Ok(0),
            Some(v) if v.is_none() || !v.is_true() => Ok(0),
            Some(v) => i64::try_from(v.clone())
                .map_err(|_| invalid("random: start and step must be integers")),
        }
    };
    if v.is_integer() {
        let end = i64::try_from(v.clone()).map_err(|_| invalid("random: end is too large"))?;
        let start = as_int(&start)?;
        let step = match as_int(&step)? {
            0 => 1,
            s => s,
        };
        let width = end - start;
        let n = if step > 0 {
            (width + step - 1).div_euclid(step)
        } else {
            (width + step + 1).div_euclid(step)
        };
        if n <= 0 {
            return Err(invalid(format!(
                "empty range in randrange({start}, {end}, {step})"
            )));
        }
        let k = below(n as u64) as i64;
        return Ok(Value::from(start + step * k));
    }
    if matches!(
        v.kind(),
        ValueKind::Seq | ValueKind::String | ValueKind::Map | ValueKind::Iterable
    ) {
        if as_int(&start)? != 0 || as_int(&step)? != 0 {
            return Err(invalid(
                "start and step can only be used with integer values",
            ));
        }
        let list = items(&v, "random")?;
        if list.is_empty() {
            return Err(invalid("Cannot choose from an empty sequence"));
        }
        let i = below(list.len() as u64) as usize;
        return Ok(list[i].clone());
    }
    Err(invalid("random can only be used on sequences and integers"))
}

/// `shuffle(seed=None)`.
pub(super) fn shuffle(v: Value, seed: Option<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let seed = kwargs.get::<Option<Value>>("seed")?.or(seed);
    kwargs.assert_all_used()?;
    let Ok(mut list) = items(&v, "shuffle") else {
        return Ok(v);
    };
    match seed.filter(|s| s.is_true()) {
        Some(s) => seeded(&s)?.shuffle(&mut list),
        None => {
            for i in (1..list.len()).rev() {
                let j = system_below(i as u64 + 1) as usize;
                list.swap(i, j);
            }
        }
    }
    Ok(Value::from(list))
}

// --- Python %-formatting (Jinja2's `format` filter) ------------------------------------------

/// Jinja2's `format(*args, **kwargs)`: `value % args` with Python's printf-style rules for
/// `%s %r %d %i %f %F %e %E %g %x %X %o %c %%`, flags `-+ 0#`, width and precision.
pub(super) fn format(v: Value, args: Rest<Value>, kwargs: Kwargs) -> Result<String, Error> {
    let fmt = text(&v);
    let mapping = kwargs.args().next().is_some();
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    let mut next = args.0.iter();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut key = None;
        if chars.peek() == Some(&'(') {
            chars.next();
            key = Some(chars.by_ref().take_while(|c| *c != ')').collect::<String>());
        }
        let mut flags = String::new();
        while let Some(&f) = chars.peek() {
            if "-+ 0#".contains(f) {
                flags.push(f);
                chars.next();
            } else {
                break;
            }
        }
        let mut width = String::new();
        while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            chars.next();
        }
        let mut precision: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                chars.next();
            }
            precision = Some(super::bounded("format precision", p.parse().unwrap_or(0))?);
        }
        let conv = chars
            .next()
            .ok_or_else(|| invalid("format: incomplete format"))?;
        if conv == '%' {
            out.push('%');
            continue;
        }
        let arg = match &key {
            Some(k) if mapping => kwargs.get::<Value>(k.as_str())?,
            Some(k) => args
                .0
                .first()
                .map(|m| m.get_item(&Value::from(k.as_str())))
                .transpose()?
                .filter(|v| !v.is_undefined())
                .ok_or_else(|| invalid(format!("format: no value for key {k:?}")))?,
            None => next
                .next()
                .cloned()
                .ok_or_else(|| invalid("format: not enough arguments for format string"))?,
        };
        let body = convert(conv, &arg, &flags, precision)?;
        let width: usize = super::bounded("format width", width.parse().unwrap_or(0))?;
        let len = body.chars().count();
        if len >= width {
            out.push_str(&body);
        } else if flags.contains('-') {
            out.push_str(&body);
            out.push_str(&" ".repeat(width - len));
        } else if flags.contains('0') && "diouxXeEfFgG".contains(conv) {
            let (sign, digits) = match body.strip_prefix(['-', '+', ' ']) {
                Some(d) => (&body[..1], d),
                None => ("", body.as_str()),
            };
            out.push_str(sign);
            out.push_str(&"0".repeat(width - len));
            out.push_str(digits);
        } else {
            out.push_str(&" ".repeat(width - len));
            out.push_str(&body);
        }
    }
    if key_unused(&next) && !mapping && args.0.len() > 1 {
        return Err(invalid(
            "format: not all arguments converted during string formatting",
        ));
    }
    kwargs.assert_all_used().ok();
    Ok(out)
}

fn key_unused(rest: &std::slice::Iter<'_, Value>) -> bool {
    rest.len() > 0
}

fn convert(
    conv: char,
    arg: &Value,
    flags: &str,
    precision: Option<usize>,
) -> Result<String, Error> {
    let sign = |neg: bool| {
        if neg {
            "-"
        } else if flags.contains('+') {
            "+"
        } else if flags.contains(' ') {
            " "
        } else {
            ""
        }
    };
    let as_f = |v: &Value| -> Result<f64, Error> {
        match v.kind() {
            ValueKind::Number | ValueKind::Bool => {
                f64::try_from(v.clone()).map_err(|_| needs_number(conv))
            }
            _ => Err(needs_number(conv)),
        }
    };
    let as_i = |v: &Value| -> Result<i128, Error> {
        match v.kind() {
            ValueKind::Bool => Ok(i128::from(v.is_true())),
            ValueKind::Number if v.is_integer() => {
                i128::try_from(v.clone()).map_err(|_| needs_number(conv))
            }
            ValueKind::Number => Ok(as_float(v).unwrap_or(0.0).trunc() as i128),
            _ => Err(needs_number(conv)),
        }
    };
    Ok(match conv {
        's' => {
            let s = py_str(arg);
            match precision {
                Some(p) => s.chars().take(p).collect(),
                None => s,
            }
        }
        'r' | 'a' => py_repr(arg),
        'd' | 'i' | 'u' => {
            let n = as_i(arg)?;
            format!("{}{}", sign(n < 0), n.unsigned_abs())
        }
        'x' | 'X' | 'o' => {
            let n = as_i(arg)?;
            let digits = match conv {
                'x' => format!("{:x}", n.unsigned_abs()),
                'X' => format!("{:X}", n.unsigned_abs()),
                _ => format!("{:o}", n.unsigned_abs()),
            };
            let alt = if flags.contains('#') {
                match conv {
                    'x' => "0x",
                    'X' => "0X",
                    _ => "0o",
                }
            } else {
                ""
            };
            format!("{}{alt}{digits}", sign(n < 0))
        }
        'f' | 'F' => {
            let f = as_f(arg)?;
            let p = precision.unwrap_or(6);
            format!(
                "{}{:.*}",
                sign(f.is_sign_negative() && f != 0.0),
                p,
                f.abs()
            )
        }
        'e' | 'E' => {
            let f = as_f(arg)?;
            let p = precision.unwrap_or(6);
            let s = format!("{:.*e}", p, f.abs());
            let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
            let e: i32 = e.parse().unwrap_or(0);
            let body = format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
            let body = if conv == 'E' {
                body.to_uppercase()
            } else {
                body
            };
            format!("{}{body}", sign(f.is_sign_negative() && f != 0.0))
        }
        'g' | 'G' => {
            let f = as_f(arg)?;
            let s = general(f, precision.unwrap_or(6).max(1), flags.contains('#'));
            let s = format!("{}{s}", sign(f.is_sign_negative() && f != 0.0));
            if conv == 'G' { s.to_uppercase() } else { s }
        }
        'c' => match arg.kind() {
            ValueKind::String => py_str(arg),
            _ => char::from_u32(u32::try_from(as_i(arg)?).unwrap_or(0xfffd))
                .unwrap_or('\u{fffd}')
                .to_string(),
        },
        other => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("format: unsupported format character '{other}'"),
            ));
        }
    })
}

fn needs_number(conv: char) -> Error {
    invalid(format!("format: %{conv} format: a real number is required"))
}

/// `%g`: fixed or scientific by the exponent, `p` significant digits, trailing zeros dropped
/// (unless `#`).
fn general(f: f64, p: usize, keep_zeros: bool) -> String {
    let f = f.abs();
    if !f.is_finite() {
        return float_repr(f);
    }
    let sci = format!("{:.*e}", p - 1, f);
    let (m, e) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i64 = e.parse().unwrap_or(0);
    let strip = |s: String| {
        if keep_zeros || !s.contains('.') {
            s
        } else {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        }
    };
    if exp < -4 || exp >= p as i64 {
        let m = strip(m.to_string());
        format!("{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    } else {
        let decimals = usize::try_from(p as i64 - 1 - exp).unwrap_or(0);
        strip(format!("{:.*}", decimals, f))
    }
}

// --- URL encoding ----------------------------------------------------------------------------

/// Python's `urllib.parse.quote(text, safe)`: UTF-8 bytes, `%XX` for all but letters, digits,
/// `_.-~` and `safe`.
fn url_quote(s: &str, safe: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"_.-~".contains(&b) || safe.as_bytes().contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Jinja2's `urlencode`: a string keeps `/`; a dict or list of pairs becomes a query string
/// (`+` for spaces).
pub(super) fn urlencode(v: Value) -> Result<String, Error> {
    let qs = |x: &Value| url_quote(&py_str(x), "").replace("%20", "+");
    let pairs: Vec<(Value, Value)> = match v.kind() {
        ValueKind::String => return Ok(url_quote(v.as_str().unwrap_or_default(), "/")),
        ValueKind::Map => {
            let mut out = Vec::new();
            for k in v.try_iter()? {
                let val = v.get_item(&k)?;
                out.push((k, val));
            }
            out
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let mut out = Vec::new();
            for item in v.try_iter()? {
                let kv = items(&item, "urlencode")?;
                let [k, val] = kv.as_slice() else {
                    return Err(invalid("urlencode: expected a list of pairs"));
                };
                out.push((k.clone(), val.clone()));
            }
            out
        }
        _ => return Ok(url_quote(&py_str(&v), "/")),
    };
    Ok(pairs
        .iter()
        .map(|(k, val)| format!("{}={}", qs(k), qs(val)))
        .collect::<Vec<_>>()
        .join("&"))
}

/// Ansible's `urldecode`: Python's `unquote_plus` (`+` is a space; bad UTF-8 replaced).
pub(super) fn urldecode(v: Value) -> String {
    let s = py_str(&v).replace('+', " ");
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(h) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(h, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
