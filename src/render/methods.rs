//! The Python methods templates call on strings, lists and dicts (`s.split(',')`,
//! `l.index(x)`, `d.get(k)`): (value, method, arguments) -> what Python returns.
//!
//! minijinja-contrib's pycompat covers most; the ones it lacks or answers differently from
//! Python are here, asked first. Methods that change a value in place (`append`, `extend`,
//! `insert`, `pop`, `remove`, `sort`, `reverse`, `clear`, `update`, `setdefault`,
//! `popitem`) work in ansible-core 2.19, where a variable's list or dict can be changed in a
//! template; deploy's values are read-only, so they are refused with an error that says so.

use minijinja::value::{Tuple, ValueKind, from_args};
use minijinja::{Error, ErrorKind, State, Value};

use super::filters::{bounded, py_rsplit, py_split};
use super::pyfmt::{py_repr, py_str};

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

const MUTATING: [&str; 11] = [
    "append",
    "extend",
    "insert",
    "pop",
    "remove",
    "sort",
    "reverse",
    "clear",
    "update",
    "setdefault",
    "popitem",
];

/// The unknown-method callback of deploy's environment.
pub fn unknown_method_callback(
    state: &mut State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    let ours = match value.kind() {
        ValueKind::String => string_method(value.as_str().unwrap_or_default(), method, args)?,
        ValueKind::Seq | ValueKind::Map | ValueKind::Iterable => {
            if MUTATING.contains(&method) {
                let kind = if value.kind() == ValueKind::Map {
                    "dict"
                } else {
                    "list"
                };
                return Err(invalid(format!(
                    "{kind}.{method}() changes a value in place; deploy's template values are \
                     read-only, so it refuses this method (build a new value instead, e.g. with \
                     `+` or the `combine` filter)"
                )));
            }
            container_method(value, method, args)?
        }
        _ => None,
    };
    if let Some(v) = ours {
        return Ok(v);
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args).map_err(|e| {
        if e.kind() == ErrorKind::UnknownMethod {
            Error::new(
                ErrorKind::UnknownMethod,
                format!(
                    "{} has no method {method}() that deploy supports",
                    super::filters::type_name(value)
                ),
            )
        } else {
            e
        }
    })
}

fn pad(n: usize) -> impl Fn(char) -> String {
    move |c| c.to_string().repeat(n)
}

fn fill_char(c: Option<String>) -> Result<char, Error> {
    match c {
        None => Ok(' '),
        Some(s) if s.chars().count() == 1 => Ok(s.chars().next().unwrap_or(' ')),
        Some(_) => Err(invalid(
            "The fill character must be exactly one character long",
        )),
    }
}

fn string_method(s: &str, method: &str, args: &[Value]) -> Result<Option<Value>, Error> {
    let strings = |v: Vec<String>| Value::from(v);
    Ok(Some(match method {
        "split" | "rsplit" => {
            let (sep, maxsplit): (Option<Value>, Option<i64>) = from_args(args)?;
            let sep = sep.filter(|s| !s.is_none()).map(|s| py_str(&s));
            let f = if method == "split" {
                py_split
            } else {
                py_rsplit
            };
            strings(f(s, sep.as_deref(), maxsplit.unwrap_or(-1))?)
        }
        "index" | "rindex" => {
            let (sub,): (String,) = from_args(args)?;
            let found = if method == "index" {
                s.find(&sub)
            } else {
                s.rfind(&sub)
            };
            match found {
                Some(i) => Value::from(s[..i].chars().count()),
                None => return Err(invalid("substring not found")),
            }
        }
        "partition" | "rpartition" => {
            let (sep,): (String,) = from_args(args)?;
            if sep.is_empty() {
                return Err(invalid("empty separator"));
            }
            let found = if method == "partition" {
                s.find(&sep)
            } else {
                s.rfind(&sep)
            };
            let parts = match found {
                Some(i) => [&s[..i], sep.as_str(), &s[i + sep.len()..]],
                None if method == "partition" => [s, "", ""],
                None => ["", "", s],
            };
            Value::from(Tuple::from(parts.map(Value::from)))
        }
        "center" | "ljust" | "rjust" => {
            let (width, fill): (usize, Option<String>) = from_args(args)?;
            let width = bounded(method, width)?;
            let fill = fill_char(fill)?;
            let len = s.chars().count();
            if width <= len {
                return Ok(Some(Value::from(s)));
            }
            let marg = width - len;
            let (left, right) = match method {
                "ljust" => (0, marg),
                "rjust" => (marg, 0),
                _ => {
                    let left = marg / 2 + (marg & width & 1);
                    (left, marg - left)
                }
            };
            Value::from(format!("{}{s}{}", pad(left)(fill), pad(right)(fill)))
        }
        "zfill" => {
            let (width,): (usize,) = from_args(args)?;
            let width = bounded("zfill", width)?;
            let len = s.chars().count();
            if width <= len {
                return Ok(Some(Value::from(s)));
            }
            let zeros = "0".repeat(width - len);
            match s.strip_prefix(['-', '+']) {
                Some(rest) => Value::from(format!("{}{zeros}{rest}", &s[..1])),
                None => Value::from(format!("{zeros}{s}")),
            }
        }
        "swapcase" => {
            let () = from_args(args)?;
            Value::from(
                s.chars()
                    .flat_map(|c| {
                        if c.is_uppercase() {
                            c.to_lowercase().collect::<Vec<_>>()
                        } else {
                            c.to_uppercase().collect()
                        }
                    })
                    .collect::<String>(),
            )
        }
        "casefold" => {
            let () = from_args(args)?;
            Value::from(s.to_lowercase())
        }
        "removeprefix" => {
            let (p,): (String,) = from_args(args)?;
            Value::from(s.strip_prefix(p.as_str()).unwrap_or(s))
        }
        "removesuffix" => {
            let (p,): (String,) = from_args(args)?;
            Value::from(s.strip_suffix(p.as_str()).unwrap_or(s))
        }
        "format" => return str_format(s, args).map(Some),
        _ => return Ok(None),
    }))
}

fn container_method(v: &Value, method: &str, args: &[Value]) -> Result<Option<Value>, Error> {
    Ok(Some(match (v.kind(), method) {
        (ValueKind::Seq | ValueKind::Iterable, "index") => {
            let (x,): (Value,) = from_args(args)?;
            match v.try_iter()?.position(|item| item == x) {
                Some(i) => Value::from(i),
                None => return Err(invalid(format!("{} is not in list", py_repr(&x)))),
            }
        }
        (_, "copy") => {
            let () = from_args(args)?;
            v.clone()
        }
        _ => return Ok(None),
    }))
}

/// Python's `str.format` for `{}`, `{0}`, `{name}`, `{0[key]}`/`{0.attr}`, `!r`/`!s`, and
/// format specs `[[fill]align][sign][0][width][.precision][type]` with types `s d f`.
fn str_format(s: &str, args: &[Value]) -> Result<Value, Error> {
    let (positional, named): (Vec<&Value>, Option<&Value>) = match args.last() {
        Some(last) if last.is_kwargs() => (args[..args.len() - 1].iter().collect(), Some(last)),
        _ => (args.iter().collect(), None),
    };
    let mut out = String::new();
    let mut auto = 0usize;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '}' => return Err(invalid("Single '}' encountered in format string")),
            '{' => {
                let mut field = String::new();
                let mut closed = false;
                for d in chars.by_ref() {
                    if d == '}' {
                        closed = true;
                        break;
                    }
                    field.push(d);
                }
                if !closed {
                    return Err(invalid("Single '{' encountered in format string"));
                }
                let (field, spec) = match field.split_once(':') {
                    Some((f, sp)) => (f.to_string(), sp.to_string()),
                    None => (field, String::new()),
                };
                let (field, conv) = match field.split_once('!') {
                    Some((f, c)) => (f.to_string(), Some(c.to_string())),
                    None => (field, None),
                };
                let end = field.find(['.', '[']).unwrap_or(field.len());
                let (head, tail) = field.split_at(end);
                let mut value = if head.is_empty() {
                    let v = positional.get(auto).copied().cloned().ok_or_else(|| {
                        invalid(format!(
                            "Replacement index {auto} out of range for positional args tuple"
                        ))
                    })?;
                    auto += 1;
                    v
                } else if let Ok(i) = head.parse::<usize>() {
                    positional.get(i).copied().cloned().ok_or_else(|| {
                        invalid(format!(
                            "Replacement index {i} out of range for positional args tuple"
                        ))
                    })?
                } else {
                    named
                        .map(|n| n.get_attr(head))
                        .transpose()?
                        .filter(|v| !v.is_undefined())
                        .ok_or_else(|| invalid(format!("format: no argument named {head:?}")))?
                };
                let mut rest = tail;
                while !rest.is_empty() {
                    if let Some(r) = rest.strip_prefix('.') {
                        let e = r.find(['.', '[']).unwrap_or(r.len());
                        value = value.get_attr(&r[..e])?;
                        rest = &r[e..];
                    } else if let Some(r) = rest.strip_prefix('[') {
                        let e = r
                            .find(']')
                            .ok_or_else(|| invalid("Missing ']' in format string"))?;
                        let key = &r[..e];
                        value = match key.parse::<i64>() {
                            Ok(i) => value.get_item(&Value::from(i))?,
                            Err(_) => value.get_item(&Value::from(key))?,
                        };
                        rest = &r[e + 1..];
                    } else {
                        break;
                    }
                }
                let text = match conv.as_deref() {
                    Some("r") | Some("a") => Value::from(py_repr(&value)),
                    Some("s") => Value::from(py_str(&value)),
                    None => value,
                    Some(c) => return Err(invalid(format!("Unknown conversion specifier {c}"))),
                };
                out.push_str(&apply_spec(&text, &spec)?);
            }
            c => out.push(c),
        }
    }
    Ok(Value::from(out))
}

/// A `format()` spec applied to one value.
fn apply_spec(v: &Value, spec: &str) -> Result<String, Error> {
    if spec.is_empty() {
        return Ok(py_str(v));
    }
    let chars: Vec<char> = spec.chars().collect();
    let mut i = 0;
    let (mut fill, mut align) = (' ', None);
    if chars.len() >= 2 && "<>^=".contains(chars[1]) {
        fill = chars[0];
        align = Some(chars[1]);
        i = 2;
    } else if !chars.is_empty() && "<>^=".contains(chars[0]) {
        align = Some(chars[0]);
        i = 1;
    }
    let mut sign = None;
    if i < chars.len() && "+- ".contains(chars[i]) {
        sign = Some(chars[i]);
        i += 1;
    }
    if i < chars.len() && chars[i] == '0' {
        fill = '0';
        align = align.or(Some('='));
        i += 1;
    }
    let mut width = String::new();
    while i < chars.len() && chars[i].is_ascii_digit() {
        width.push(chars[i]);
        i += 1;
    }
    let mut precision = None;
    if i < chars.len() && chars[i] == '.' {
        i += 1;
        let mut p = String::new();
        while i < chars.len() && chars[i].is_ascii_digit() {
            p.push(chars[i]);
            i += 1;
        }
        precision = p
            .parse::<usize>()
            .ok()
            .map(|p| p.min(super::filters::MAX_WIDTH));
    }
    let ty = chars.get(i).copied();
    if i + usize::from(ty.is_some()) != chars.len() {
        return Err(invalid(format!("Invalid format specifier '{spec}'")));
    }
    let is_num = v.kind() == ValueKind::Number;
    let body = match ty {
        None | Some('s') if !is_num || ty == Some('s') => {
            let s = py_str(v);
            match precision {
                Some(p) => s.chars().take(p).collect(),
                None => s,
            }
        }
        Some('f') | Some('F') | Some('%') | None
            if is_num && (ty.is_some() || precision.is_some()) =>
        {
            let f = f64::try_from(v.clone()).map_err(|_| invalid("format: not a number"))?;
            let (f, pct) = if ty == Some('%') {
                (f * 100.0, "%")
            } else {
                (f, "")
            };
            let p = precision.unwrap_or(6);
            let mut s = format!("{:.*}{pct}", p, f.abs());
            if f.is_sign_negative() && f != 0.0 {
                s.insert(0, '-');
            } else if let Some(sg @ ('+' | ' ')) = sign {
                s.insert(0, sg);
            }
            s
        }
        Some('d') | None if is_num => {
            let n =
                i128::try_from(v.clone()).map_err(|_| invalid("format: 'd' needs an integer"))?;
            let mut s = n.unsigned_abs().to_string();
            if n < 0 {
                s.insert(0, '-');
            } else if let Some(sg @ ('+' | ' ')) = sign {
                s.insert(0, sg);
            }
            s
        }
        _ => {
            return Err(invalid(format!(
                "format spec '{spec}' is not supported by deploy for {}",
                super::filters::type_name(v)
            )));
        }
    };
    let width: usize = bounded("format width", width.parse().unwrap_or(0))?;
    let len = body.chars().count();
    if len >= width {
        return Ok(body);
    }
    let n = width - len;
    let align = align.unwrap_or(if is_num { '>' } else { '<' });
    Ok(match align {
        '<' => format!("{body}{}", pad(n)(fill)),
        '>' => format!("{}{body}", pad(n)(fill)),
        '^' => format!("{}{body}{}", pad(n / 2)(fill), pad(n - n / 2)(fill)),
        _ => match body.strip_prefix(['-', '+', ' ']) {
            Some(rest) => format!("{}{}{rest}", &body[..1], pad(n)(fill)),
            None => format!("{}{body}", pad(n)(fill)),
        },
    })
}
