//! Ansible's filters, for minijinja: (input value, arguments) -> the value Ansible's filter
//! (ansible-core 2.19, `plugins/filter/core.py`, and Jinja2's own where Ansible uses those)
//! would return.
//!
//! Registered by [`register`]. Jinja2 builtins whose minijinja version prints values the
//! Rust way (`string`, `join`, `lower`, `upper`, `trim`, `indent`, `int`, `bool`, `format`)
//! are replaced, because Python's `str()` of `True` is `True`, not `true`.
//!
//! - this file: printing, JSON/YAML out, base64, `regex_replace`, `quote`, `mandatory`;
//! - [`core`]: text, regex, hashes, uuids, parsing, `urlsplit`, math, sizes, random;
//! - [`data`]: `combine`, set operations, `flatten`, `zip`, combinatorics, dict/list shapes;
//! - [`paths`]: `posixpath`/`ntpath` filters and the controller-side ones;
//! - [`pyrandom`]: Python's Mersenne Twister, for seeded `random`/`shuffle`.
//!
//! - [`crypt`]: `password_hash` with a given salt (sha512/sha256/md5 crypt, as passlib).
//!
//! Refused with an error that says so: `to_datetime`, `strftime`, `vault`/`unvault`.

mod core;
mod crypt;
mod data;

pub(super) use core::{compile_as, split_scheme_netloc};
pub(crate) use core::{py_rsplit, py_split, type_name};
mod paths;
mod pyrandom;

use std::sync::LazyLock;

use base64::Engine as _;
use minijinja::value::{Kwargs, Rest, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Value};
use regex::Regex;

use super::pyfmt::{as_float, float_repr, py_str};
use super::yaml::{self, YamlOptions, py_cmp};

/// The message of the error `mandatory` raises; the renderer adds the variable's name
/// (taken from the template source), as Ansible does.
pub(crate) const MANDATORY_MSG: &str = "Mandatory variable not defined.";

pub fn register(env: &mut Environment<'static>) {
    env.add_filter("bool", bool_filter);
    env.add_filter("int", int_filter);
    env.add_filter("string", |v: Value| py_str(&v));
    env.add_filter("lower", |v: Value| py_str(&v).to_lowercase());
    env.add_filter("upper", |v: Value| py_str(&v).to_uppercase());
    env.add_filter("trim", trim);
    env.add_filter("join", join);
    env.add_filter("indent", indent);
    env.add_filter("to_json", to_json);
    env.add_filter("to_nice_json", to_nice_json);
    env.add_filter("to_yaml", to_yaml);
    env.add_filter("to_nice_yaml", to_nice_yaml);
    env.add_filter("b64encode", b64encode);
    env.add_filter("b64decode", b64decode);
    env.add_filter("regex_replace", regex_replace);
    env.add_filter("mandatory", mandatory);
    env.add_filter("ternary", ternary);
    env.add_filter("quote", quote);
    env.add_filter("dict2items", dict2items);

    env.add_filter("comment", core::comment);
    env.add_filter("type_debug", core::type_debug);
    env.add_filter("regex_search", core::regex_search);
    env.add_filter("regex_findall", core::regex_findall);
    env.add_filter("regex_escape", core::regex_escape);
    env.add_filter("split", core::split);
    env.add_filter("center", core::center);
    env.add_filter("replace", core::replace);
    env.add_filter("truncate", core::truncate);
    env.add_filter("filesizeformat", core::filesizeformat);
    env.add_filter("wordcount", core::wordcount);
    env.add_filter("format", core::format);
    env.add_filter("hash", core::hash);
    env.add_filter("md5", core::md5);
    env.add_filter("sha1", core::sha1);
    env.add_filter("checksum", core::sha1);
    env.add_filter("to_uuid", core::to_uuid);
    env.add_filter("password_hash", crypt::password_hash);
    env.add_filter("from_json", core::from_json);
    env.add_filter("from_yaml", core::from_yaml);
    env.add_filter("from_yaml_all", core::from_yaml_all);
    env.add_filter("urlsplit", core::urlsplit);
    env.add_filter("log", core::log);
    env.add_filter("pow", core::pow);
    env.add_filter("root", core::root);
    env.add_filter("human_readable", core::human_readable);
    env.add_filter("human_to_bytes", core::human_to_bytes);
    env.add_filter("random", core::random);
    env.add_filter("urlencode", core::urlencode);
    env.add_filter("urldecode", core::urldecode);
    env.add_filter("shuffle", core::shuffle);

    env.add_filter("unique", data::unique);
    env.add_filter("union", data::union);
    env.add_filter("intersect", data::intersect);
    env.add_filter("difference", data::difference);
    env.add_filter("symmetric_difference", data::symmetric_difference);
    env.add_filter("flatten", data::flatten);
    env.add_filter("combine", data::combine);
    env.add_filter("items2dict", data::items2dict);
    env.add_filter("subelements", data::subelements);
    env.add_filter("extract", data::extract);
    env.add_filter("rekey_on_member", data::rekey_on_member);
    env.add_filter("zip", data::zip);
    env.add_filter("zip_longest", data::zip_longest);
    env.add_filter("product", data::product);
    env.add_filter("permutations", data::permutations);
    env.add_filter("combinations", data::combinations);
    env.add_filter("min", data::min);
    env.add_filter("max", data::max);
    env.add_function("dict", data::dict);
    env.add_filter("map", data::map);

    env.add_filter("basename", paths::basename);
    env.add_filter("dirname", paths::dirname);
    env.add_filter("path_join", paths::path_join);
    env.add_filter("splitext", paths::splitext);
    env.add_filter("win_basename", paths::win_basename);
    env.add_filter("win_dirname", paths::win_dirname);
    env.add_filter("win_splitdrive", paths::win_splitdrive);
    env.add_filter("normpath", paths::normpath_filter);
    env.add_filter("commonpath", paths::commonpath);
    env.add_filter("expanduser", paths::expanduser);
    env.add_filter("expandvars", paths::expandvars);
    env.add_filter("realpath", paths::realpath);
    env.add_filter("relpath", paths::relpath);
    env.add_filter("fileglob", paths::fileglob);

    for (name, why) in [
        ("to_datetime", "deploy has no datetime values"),
        (
            "strftime",
            "deploy does not format times (a render would differ every run)",
        ),
        (
            "vault",
            "deploy keeps secrets in secrets/*.yml.age, not in Ansible Vault",
        ),
        (
            "unvault",
            "deploy keeps secrets in secrets/*.yml.age, not in Ansible Vault",
        ),
    ] {
        env.add_filter(
            name,
            move |_v: Value, _args: Rest<Value>, _kwargs: Kwargs| -> Result<Value, Error> {
                Err(invalid(format!(
                    "the `{name}` filter is not supported: {why}"
                )))
            },
        );
    }
}

/// Widest padding and most repetitions a filter or method builds (`center(n)`, `'%*s'`,
/// `comment(prefix_count=n)`): beyond it a template is refused rather than filling memory.
pub(crate) const MAX_WIDTH: usize = 1 << 20;

/// `n`, or an error when it is beyond [`MAX_WIDTH`].
pub(crate) fn bounded(what: &str, n: usize) -> Result<usize, Error> {
    if n > MAX_WIDTH {
        return Err(invalid(format!(
            "{what} {n} is more than deploy builds ({MAX_WIDTH})"
        )));
    }
    Ok(n)
}

pub(super) fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

/// Ansible's `to_bool`: yes/on/true/1 and no/off/false/0 (any case, or the ints/bools
/// themselves); anything else is `value == 1` (Ansible warns that this is deprecated).
fn bool_filter(v: Value) -> bool {
    let text = match v.kind() {
        ValueKind::String => v.as_str().unwrap_or_default().to_lowercase(),
        ValueKind::Bool => py_str(&v).to_lowercase(),
        ValueKind::Number if v.is_integer() => v.to_string(),
        ValueKind::Number => return as_float(&v) == Some(1.0),
        _ => return false,
    };
    match text.as_str() {
        "yes" | "on" | "true" | "1" => true,
        "no" | "off" | "false" | "0" => false,
        _ => false,
    }
}

/// Jinja2's `int(value, default=0, base=10)`: strings are parsed as ints (in `base`, with
/// Python's optional prefix, sign, surrounding whitespace and `_` separators), then as floats
/// and truncated; anything that does not parse gives `default`.
fn int_filter(v: Value, default: Option<Value>, base: Option<u32>) -> Result<Value, Error> {
    let default = default.unwrap_or(Value::from(0));
    let base = base.unwrap_or(10);
    match v.kind() {
        ValueKind::Bool => Ok(Value::from(i64::from(v.is_true()))),
        ValueKind::Number => match as_float(&v) {
            Some(f) if f.is_finite() => Ok(Value::from(f.trunc() as i64)),
            Some(_) => Err(invalid("cannot convert float infinity or NaN to integer")),
            None => Ok(v),
        },
        ValueKind::String => {
            let s = v.as_str().unwrap_or_default().trim();
            if let Some(n) = parse_py_int(s, base) {
                return Ok(Value::from(n));
            }
            match s.replace('_', "").parse::<f64>() {
                Ok(f) if f.is_finite() && !s.is_empty() => Ok(Value::from(f.trunc() as i64)),
                _ => Ok(default),
            }
        }
        _ => Ok(default),
    }
}

fn parse_py_int(s: &str, base: u32) -> Option<i128> {
    let (neg, rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let lower = rest.to_ascii_lowercase();
    let digits = match base {
        16 => lower.strip_prefix("0x").unwrap_or(&lower),
        8 => lower.strip_prefix("0o").unwrap_or(&lower),
        2 => lower.strip_prefix("0b").unwrap_or(&lower),
        _ => &lower,
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let n = i128::from_str_radix(&digits.replace('_', ""), base).ok()?;
    Some(if neg { -n } else { n })
}

/// Jinja2's `trim(value, chars=None)`: Python's `str.strip`.
fn trim(v: Value, chars: Option<String>) -> String {
    let s = py_str(&v);
    match chars {
        Some(chars) => s.trim_matches(|c| chars.contains(c)).to_string(),
        None => s.trim().to_string(),
    }
}

/// Jinja2's `join(value, d='', attribute=None)`, with Python's `str()` of each item.
fn join(v: Value, sep: Option<String>, kwargs: Kwargs) -> Result<String, Error> {
    let attribute: Option<String> = kwargs.get("attribute")?;
    kwargs.assert_all_used()?;
    let sep = sep.unwrap_or_default();
    if v.kind() == ValueKind::String {
        // Jinja iterates a string character by character.
        let s = v.as_str().unwrap_or_default();
        return Ok(s.chars().map(String::from).collect::<Vec<_>>().join(&sep));
    }
    check_defined(&v)?;
    let iter = v.try_iter()?;
    let mut parts = Vec::new();
    for item in iter {
        let item = match &attribute {
            Some(attr) => attr.split('.').try_fold(item, |it, a| it.get_attr(a))?,
            None => item,
        };
        parts.push(py_str(&item));
    }
    Ok(parts.join(&sep))
}

/// Jinja2's `indent(s, width=4, first=False, blank=False)`, including its quirk of adding a
/// newline before `splitlines()` (so a trailing newline is dropped).
fn indent(
    v: Value,
    width: Option<Value>,
    first: Option<bool>,
    blank: Option<bool>,
    kwargs: Kwargs,
) -> Result<String, Error> {
    let width = kwargs.get::<Option<Value>>("width")?.or(width);
    let first = kwargs
        .get::<Option<bool>>("first")?
        .or(first)
        .unwrap_or(false);
    let blank = kwargs
        .get::<Option<bool>>("blank")?
        .or(blank)
        .unwrap_or(false);
    kwargs.assert_all_used()?;
    let indention = match width {
        None => "    ".to_string(),
        Some(w) if w.kind() == ValueKind::String => w.as_str().unwrap_or_default().to_string(),
        Some(w) => " ".repeat(usize::try_from(w).unwrap_or(0)),
    };
    let s = py_str(&v) + "\n";
    let lines = crate::text::python_splitlines(&s);
    let mut rv = if blank {
        lines.join(&format!("\n{indention}"))
    } else {
        let mut it = lines.iter();
        let mut rv = it.next().map(|l| l.to_string()).unwrap_or_default();
        let rest: Vec<String> = it
            .map(|l| {
                if l.is_empty() {
                    String::new()
                } else {
                    format!("{indention}{l}")
                }
            })
            .collect();
        if !rest.is_empty() {
            rv.push('\n');
            rv.push_str(&rest.join("\n"));
        }
        rv
    };
    if first {
        rv = format!("{indention}{rv}");
    }
    Ok(rv)
}

// --- JSON ----------------------------------------------------------------------------------

/// Options of Python's `json.dumps` that Ansible's filters use.
struct JsonOpts {
    indent: Option<String>,
    sort_keys: bool,
    ensure_ascii: bool,
    item_sep: String,
    key_sep: String,
}

fn json_opts(
    kwargs: &Kwargs,
    indent_default: Option<usize>,
    sort_default: bool,
) -> Result<JsonOpts, Error> {
    let indent = match kwargs.get::<Option<Value>>("indent")? {
        Some(v) if v.kind() == ValueKind::String => {
            Some(v.as_str().unwrap_or_default().to_string())
        }
        Some(v) if v.is_none() => None,
        Some(v) => Some(" ".repeat(usize::try_from(v).unwrap_or(0))),
        None => indent_default.map(|n| " ".repeat(n)),
    };
    let sort_keys = kwargs
        .get::<Option<bool>>("sort_keys")?
        .unwrap_or(sort_default);
    let ensure_ascii = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(true);
    // json.dumps: ", " between items unless an indent is given (then ","); to_nice_json
    // always passes (",", ": ").
    let item_sep = if indent.is_some() { "," } else { ", " }.to_string();
    let mut opts = JsonOpts {
        indent,
        sort_keys,
        ensure_ascii,
        item_sep,
        key_sep: ": ".into(),
    };
    if let Some(seps) = kwargs.get::<Option<Vec<String>>>("separators")?
        && let [item, key] = seps.as_slice()
    {
        opts.item_sep = item.clone();
        opts.key_sep = key.clone();
    }
    Ok(opts)
}

fn to_json(v: Value, kwargs: Kwargs) -> Result<String, Error> {
    let opts = json_opts(&kwargs, None, false)?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write_json(&mut out, &v, &opts, 0)?;
    Ok(out)
}

fn to_nice_json(v: Value, indent: Option<usize>, kwargs: Kwargs) -> Result<String, Error> {
    let mut opts = json_opts(&kwargs, Some(indent.unwrap_or(4)), true)?;
    kwargs.assert_all_used()?;
    opts.item_sep = ",".into();
    opts.key_sep = ": ".into();
    let mut out = String::new();
    write_json(&mut out, &v, &opts, 0)?;
    Ok(out)
}

fn json_str(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ensure_ascii && (c as u32) > 0x7e) => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        }
    } else {
        float_repr(f)
    }
}

/// A dict key as `json.dumps` writes it: strings as they are, numbers/bools/None converted.
fn json_key(k: &Value) -> Result<String, Error> {
    Ok(match k.kind() {
        ValueKind::String => k.as_str().unwrap_or_default().to_string(),
        ValueKind::Bool => if k.is_true() { "true" } else { "false" }.to_string(),
        ValueKind::None => "null".into(),
        ValueKind::Number => match as_float(k) {
            Some(f) => json_float(f),
            None => k.to_string(),
        },
        kind => {
            return Err(invalid(format!(
                "keys must be str, int, float, bool or None, not {kind}"
            )));
        }
    })
}

fn write_json(out: &mut String, v: &Value, o: &JsonOpts, level: usize) -> Result<(), Error> {
    let newline = |out: &mut String, level: usize| {
        if let Some(ind) = &o.indent {
            out.push('\n');
            out.push_str(&ind.repeat(level));
        }
    };
    match v.kind() {
        ValueKind::Undefined => return Err(Error::from(ErrorKind::UndefinedError)),
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => match as_float(v) {
            Some(f) => out.push_str(&json_float(f)),
            None => out.push_str(&v.to_string()),
        },
        ValueKind::String => json_str(out, v.as_str().unwrap_or_default(), o.ensure_ascii),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&o.item_sep);
                }
                newline(out, level + 1);
                write_json(out, item, o, level + 1)?;
            }
            newline(out, level);
            out.push(']');
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            if o.sort_keys {
                keys.sort_by(py_cmp);
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(&o.item_sep);
                }
                newline(out, level + 1);
                json_str(out, &json_key(k)?, o.ensure_ascii);
                out.push_str(&o.key_sep);
                write_json(out, &v.get_item(k)?, o, level + 1)?;
            }
            newline(out, level);
            out.push('}');
        }
        kind => {
            return Err(invalid(format!(
                "Object of type {kind} is not JSON serializable"
            )));
        }
    }
    Ok(())
}

// --- YAML ----------------------------------------------------------------------------------

fn yaml_opts(kwargs: &Kwargs, indent: usize, flow: Option<bool>) -> Result<YamlOptions, Error> {
    let indent = kwargs.get::<Option<usize>>("indent")?.unwrap_or(indent);
    let flow = match kwargs.get::<Option<Value>>("default_flow_style")? {
        Some(v) if v.is_none() => None,
        Some(v) => Some(v.is_true()),
        None => flow,
    };
    let width = kwargs.get::<Option<usize>>("width")?;
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(true);
    Ok(YamlOptions {
        indent,
        flow,
        width,
        sort_keys,
    })
}

fn check_defined(v: &Value) -> Result<(), Error> {
    if v.is_undefined() {
        return Err(Error::from(ErrorKind::UndefinedError));
    }
    Ok(())
}

/// `to_yaml`: `yaml.dump(a, allow_unicode=True, default_flow_style=None)`.
fn to_yaml(v: Value, kwargs: Kwargs) -> Result<String, Error> {
    check_defined(&v)?;
    let opts = yaml_opts(&kwargs, 2, None)?;
    kwargs.assert_all_used()?;
    Ok(yaml::dump(&v, opts))
}

/// `to_nice_yaml(a, indent=4)`: block style everywhere.
fn to_nice_yaml(v: Value, indent: Option<usize>, kwargs: Kwargs) -> Result<String, Error> {
    check_defined(&v)?;
    let opts = yaml_opts(&kwargs, indent.unwrap_or(4), Some(false))?;
    kwargs.assert_all_used()?;
    Ok(yaml::dump(&v, opts))
}

// --- the rest --------------------------------------------------------------------------------

fn b64encode(v: Value, kwargs: Kwargs) -> Result<String, Error> {
    let urlsafe = kwargs.get::<Option<bool>>("urlsafe")?.unwrap_or(false);
    let _: Option<String> = kwargs.get("encoding")?;
    kwargs.assert_all_used()?;
    let s = py_str(&v);
    Ok(if urlsafe {
        base64::engine::general_purpose::URL_SAFE.encode(s)
    } else {
        base64::engine::general_purpose::STANDARD.encode(s)
    })
}

/// Python's `base64.b64decode` (not validating: characters outside the alphabet are
/// dropped first), then UTF-8.
fn b64decode(v: Value, kwargs: Kwargs) -> Result<String, Error> {
    let urlsafe = kwargs.get::<Option<bool>>("urlsafe")?.unwrap_or(false);
    let _: Option<String> = kwargs.get("encoding")?;
    kwargs.assert_all_used()?;
    let s = py_str(&v);
    let (extra_a, extra_b) = if urlsafe { ('-', '_') } else { ('+', '/') };
    let cleaned: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == extra_a || *c == extra_b || *c == '=')
        .collect();
    let engine = if urlsafe {
        base64::engine::general_purpose::URL_SAFE
    } else {
        base64::engine::general_purpose::STANDARD
    };
    let bytes = engine
        .decode(cleaned.as_bytes())
        .map_err(|e| invalid(format!("b64decode: {e}")))?;
    String::from_utf8(bytes).map_err(|e| invalid(format!("b64decode: result is not UTF-8: {e}")))
}

/// Python `re.sub` replacement syntax -> the `regex` crate's: `\1`, `\g<1>`, `\g<name>` become
/// `${1}` / `${name}`, `$` is escaped, and Python's string escapes (`\n`, `\\`, ...) apply.
fn translate_replacement(repl: &str) -> Result<String, Error> {
    let mut out = String::new();
    let mut chars = repl.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.next() {
                Some(d) if d.is_ascii_digit() => {
                    let mut num = d.to_string();
                    if let Some(&d2) = chars.peek()
                        && d2.is_ascii_digit()
                    {
                        num.push(d2);
                        chars.next();
                    }
                    out.push_str(&format!("${{{num}}}"));
                }
                Some('g') => {
                    if chars.next() != Some('<') {
                        return Err(invalid("regex_replace: missing < after \\g"));
                    }
                    let name: String = chars.by_ref().take_while(|c| *c != '>').collect();
                    out.push_str(&format!("${{{name}}}"));
                }
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('f') => out.push('\x0c'),
                Some('v') => out.push('\x0b'),
                Some('a') => out.push('\x07'),
                Some('b') => out.push('\x08'),
                Some('\\') => out.push('\\'),
                Some(d) if d.is_ascii_alphabetic() => {
                    return Err(invalid(format!(
                        "regex_replace: bad escape \\{d} in replacement"
                    )));
                }
                Some(d) => {
                    out.push('\\');
                    if d == '$' {
                        out.push_str("$$");
                    } else {
                        out.push(d);
                    }
                }
                None => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    Ok(out)
}

fn regex_replace(
    v: Value,
    pattern: Option<String>,
    replacement: Option<String>,
    kwargs: Kwargs,
) -> Result<String, Error> {
    let ignorecase = kwargs.get::<Option<bool>>("ignorecase")?.unwrap_or(false);
    let multiline = kwargs.get::<Option<bool>>("multiline")?.unwrap_or(false);
    let count = kwargs.get::<Option<usize>>("count")?.unwrap_or(0);
    let mandatory_count = kwargs.get::<Option<usize>>("mandatory_count")?.unwrap_or(0);
    kwargs.assert_all_used()?;
    let value = if v.is_none() {
        String::new()
    } else {
        py_str(&v)
    };
    let pattern = pattern.unwrap_or_default();
    let re = regex::RegexBuilder::new(&pattern)
        .case_insensitive(ignorecase)
        .multi_line(multiline)
        .build()
        .map_err(|e| invalid(format!("regex_replace: invalid pattern {pattern:?}: {e}")))?;
    let repl = translate_replacement(&replacement.unwrap_or_default())?;
    let subs = re.find_iter(&value).count();
    let subs = if count > 0 { subs.min(count) } else { subs };
    if mandatory_count > 0 && mandatory_count != subs {
        return Err(invalid(format!(
            "'{pattern}' should match {mandatory_count} times, but matches {count} times in '{value}'"
        )));
    }
    Ok(re.replacen(&value, count, repl.as_str()).into_owned())
}

fn mandatory(v: Value, msg: Option<String>) -> Result<Value, Error> {
    if v.is_undefined() {
        return Err(invalid(msg.unwrap_or_else(|| MANDATORY_MSG.to_string())));
    }
    Ok(v)
}

fn ternary(v: Value, true_val: Value, false_val: Value, none_val: Option<Value>) -> Value {
    match none_val {
        Some(n) if v.is_none() && !n.is_none() => n,
        _ if v.is_true() => true_val,
        _ => false_val,
    }
}

/// Ansible's `dict2items(key_name='key', value_name='value')`: a list of one-entry maps.
fn dict2items(v: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let key_name = kwargs
        .get::<Option<String>>("key_name")?
        .unwrap_or("key".into());
    let value_name = kwargs
        .get::<Option<String>>("value_name")?
        .unwrap_or("value".into());
    kwargs.assert_all_used()?;
    if v.kind() != ValueKind::Map {
        return Err(invalid(format!(
            "dict2items requires a dictionary, got {} instead.",
            v.kind()
        )));
    }
    let mut out = Vec::new();
    for k in v.try_iter()? {
        let val = v.get_item(&k)?;
        out.push(Value::from_pairs([
            (Value::from(key_name.as_str()), k),
            (Value::from(value_name.as_str()), val),
        ]));
    }
    Ok(Value::from(out))
}

static SHELL_UNSAFE: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"[^a-zA-Z0-9_@%+=:,./-]").ok());

/// Python's `shlex.quote` (None quotes as the empty string).
fn quote(v: Value) -> String {
    let s = if v.is_none() {
        String::new()
    } else {
        py_str(&v)
    };
    if s.is_empty() {
        return "''".into();
    }
    let unsafe_char = match SHELL_UNSAFE.as_ref() {
        Some(re) => re.is_match(&s),
        None => true,
    };
    if !unsafe_char {
        return s;
    }
    format!("'{}'", s.replace('\'', "'\"'\"'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacement_translation() {
        assert_eq!(
            translate_replacement(r"\1-\g<2>$x").ok(),
            Some("${1}-${2}$$x".into())
        );
    }

    #[test]
    fn shlex_quote() {
        assert_eq!(quote(Value::from("abc")), "abc");
        assert_eq!(quote(Value::from("a b")), "'a b'");
        assert_eq!(quote(Value::from("it's")), "'it'\"'\"'s'");
        assert_eq!(quote(Value::from("é")), "'é'");
        assert_eq!(quote(Value::from("")), "''");
    }

    #[test]
    fn splitlines() {}
}
