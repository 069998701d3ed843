//! Ansible's path filters: Python's `posixpath` and `ntpath` functions on text, and the
//! few that look at the controller (`expanduser`, `expandvars`, `realpath`, `relpath`,
//! `fileglob`), as Ansible runs them on the controller.

use minijinja::value::{Tuple, ValueKind};
use minijinja::{Error, Value};

use super::invalid;
use crate::render::pyfmt::py_str;

fn text(v: &Value) -> String {
    py_str(v)
}

pub(super) fn basename(v: Value) -> String {
    let p = text(&v);
    p[p.rfind('/').map_or(0, |i| i + 1)..].to_string()
}

fn posix_dirname(p: &str) -> String {
    let head = &p[..p.rfind('/').map_or(0, |i| i + 1)];
    if !head.is_empty() && head.chars().any(|c| c != '/') {
        head.trim_end_matches('/').to_string()
    } else {
        head.to_string()
    }
}

pub(super) fn dirname(v: Value) -> String {
    posix_dirname(&text(&v))
}

/// `os.path.join(*parts)`.
fn join(parts: &[String]) -> String {
    let mut path = String::new();
    for (i, b) in parts.iter().enumerate() {
        if b.starts_with('/') || i == 0 {
            path = b.clone();
        } else if path.is_empty() || path.ends_with('/') {
            path.push_str(b);
        } else {
            path.push('/');
            path.push_str(b);
        }
    }
    path
}

pub(super) fn path_join(v: Value) -> Result<String, Error> {
    match v.kind() {
        ValueKind::String => Ok(text(&v)),
        ValueKind::Seq | ValueKind::Iterable => {
            let parts: Vec<String> = v.try_iter()?.map(|p| text(&p)).collect();
            Ok(join(&parts))
        }
        _ => Err(invalid(format!(
            "|path_join expects string or sequence, got {} instead.",
            super::core::type_name(&v)
        ))),
    }
}

/// `genericpath._splitext`.
fn split_ext<'a>(p: &'a str, seps: &[char]) -> (&'a str, &'a str) {
    let sep_index = p.rfind(seps).map_or(-1, |i| i as i64);
    let Some(dot) = p.rfind('.') else {
        return (p, "");
    };
    if dot as i64 > sep_index {
        let mut i = (sep_index + 1) as usize;
        while i < dot {
            if p.as_bytes()[i] != b'.' {
                return (&p[..dot], &p[dot..]);
            }
            i += 1;
        }
    }
    (p, "")
}

pub(super) fn splitext(v: Value) -> Value {
    let p = text(&v);
    let (a, b) = split_ext(&p, &['/']);
    Value::from(Tuple::from(vec![Value::from(a), Value::from(b)]))
}

/// `ntpath.splitdrive` (Python 3.11).
fn nt_splitdrive(p: &str) -> (String, String) {
    if p.chars().count() >= 2 {
        let normp = p.replace('/', "\\");
        if normp.starts_with("\\\\") && normp.get(2..3) != Some("\\") {
            let Some(index) = normp[2..].find('\\').map(|i| i + 2) else {
                return (String::new(), p.to_string());
            };
            let index2 = match normp[index + 1..].find('\\').map(|i| i + index + 1) {
                Some(i2) if i2 == index + 1 => return (String::new(), p.to_string()),
                Some(i2) => i2,
                None => p.len(),
            };
            return (p[..index2].to_string(), p[index2..].to_string());
        }
        if normp.get(1..2) == Some(":") {
            return (p[..2].to_string(), p[2..].to_string());
        }
    }
    (String::new(), p.to_string())
}

/// `ntpath.split`.
fn nt_split(p: &str) -> (String, String) {
    let (d, p) = nt_splitdrive(p);
    let i = p.rfind(['/', '\\']).map_or(0, |i| i + 1);
    let (head, tail) = (&p[..i], &p[i..]);
    let stripped = head.trim_end_matches(['/', '\\']);
    let head = if stripped.is_empty() { head } else { stripped };
    (format!("{d}{head}"), tail.to_string())
}

pub(super) fn win_basename(v: Value) -> String {
    nt_split(&text(&v)).1
}

pub(super) fn win_dirname(v: Value) -> String {
    nt_split(&text(&v)).0
}

pub(super) fn win_splitdrive(v: Value) -> Value {
    let (a, b) = nt_splitdrive(&text(&v));
    Value::from(Tuple::from(vec![Value::from(a), Value::from(b)]))
}

/// `posixpath.normpath`.
fn normpath(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let initial = if p.starts_with("//") && !p.starts_with("///") {
        2
    } else if p.starts_with('/') {
        1
    } else {
        0
    };
    let mut comps: Vec<&str> = Vec::new();
    for c in p.split('/') {
        if c.is_empty() || c == "." {
            continue;
        }
        if c != ".." || (initial == 0 && comps.is_empty()) || comps.last() == Some(&"..") {
            comps.push(c);
        } else if !comps.is_empty() {
            comps.pop();
        }
    }
    let out = format!("{}{}", "/".repeat(initial), comps.join("/"));
    if out.is_empty() { ".".into() } else { out }
}

pub(super) fn normpath_filter(v: Value) -> String {
    normpath(&text(&v))
}

fn cwd() -> String {
    std::env::current_dir()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "/".into())
}

fn abspath(p: &str) -> String {
    if p.starts_with('/') {
        normpath(p)
    } else {
        normpath(&join(&[cwd(), p.to_string()]))
    }
}

/// `os.path.expanduser` on the controller: `~` and `~/...` from `$HOME`.
pub(super) fn expanduser(v: Value) -> String {
    let p = text(&v);
    let Some(rest) = p.strip_prefix('~') else {
        return p;
    };
    if !(rest.is_empty() || rest.starts_with('/')) {
        // `~user`: deploy does not read the password database; left as it is.
        return p;
    }
    match std::env::var("HOME") {
        Ok(home) => {
            let home = home.trim_end_matches('/');
            let home = if home.is_empty() { "/" } else { home };
            if rest.is_empty() {
                home.to_string()
            } else if home == "/" {
                rest.to_string()
            } else {
                format!("{home}{rest}")
            }
        }
        Err(_) => p,
    }
}

/// `os.path.expandvars` on the controller: `$NAME` and `${NAME}` that are set.
pub(super) fn expandvars(v: Value) -> String {
    let p = text(&v);
    let mut out = String::new();
    let mut rest = p.as_str();
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, consumed) = if let Some(b) = after.strip_prefix('{') {
            match b.find('}') {
                Some(e) => (&b[..e], e + 2),
                None => ("", 0),
            }
        } else {
            let e = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..e], e)
        };
        match std::env::var(name) {
            Ok(val) if !name.is_empty() => {
                out.push_str(&val);
                rest = &after[consumed..];
            }
            _ => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `os.path.realpath` on the controller (non-strict: what does not exist is kept).
pub(super) fn realpath(v: Value) -> String {
    let p = abspath(&text(&v));
    match std::fs::canonicalize(&p) {
        Ok(r) => r.to_string_lossy().into_owned(),
        Err(_) => p,
    }
}

/// `os.path.relpath(path, start=os.curdir)`.
pub(super) fn relpath(
    v: Value,
    start: Option<String>,
    kwargs: minijinja::value::Kwargs,
) -> Result<String, Error> {
    let start = kwargs.get::<Option<String>>("start")?.or(start);
    kwargs.assert_all_used()?;
    let p = text(&v);
    if p.is_empty() {
        return Err(invalid("no path specified"));
    }
    let start = abspath(&start.unwrap_or_else(|| ".".into()));
    let path = abspath(&p);
    let s: Vec<&str> = start.split('/').filter(|c| !c.is_empty()).collect();
    let t: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let common = s.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&str> = vec![".."; s.len() - common];
    parts.extend(&t[common..]);
    Ok(if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    })
}

/// `os.path.commonpath(paths)`.
pub(super) fn commonpath(v: Value) -> Result<String, Error> {
    if !matches!(v.kind(), ValueKind::Seq | ValueKind::Iterable) {
        return Err(invalid(format!(
            "|commonpath expects sequence, got {} instead.",
            super::core::type_name(&v)
        )));
    }
    let paths: Vec<String> = v.try_iter()?.map(|p| text(&p)).collect();
    let Some(first) = paths.first() else {
        return Err(invalid("commonpath() arg is an empty sequence"));
    };
    let abs = first.starts_with('/');
    if paths.iter().any(|p| p.starts_with('/') != abs) {
        return Err(invalid("Can't mix absolute and relative paths"));
    }
    let split: Vec<Vec<&str>> = paths
        .iter()
        .map(|p| {
            p.split('/')
                .filter(|c| !c.is_empty() && *c != ".")
                .collect()
        })
        .collect();
    let mut common: Vec<&str> = split[0].clone();
    for s in &split[1..] {
        let n = common.iter().zip(s).take_while(|(a, b)| a == b).count();
        common.truncate(n);
    }
    Ok(format!(
        "{}{}",
        if abs { "/" } else { "" },
        common.join("/")
    ))
}

/// `fileglob`: the regular files on the controller matching a glob (`*`, `?`, `[...]` in
/// the last component only; deploy's glob does not descend through wildcard folders).
pub(super) fn fileglob(v: Value) -> Result<Value, Error> {
    let pattern = text(&v);
    let (dir, pat) = match pattern.rfind('/') {
        Some(i) => (&pattern[..i.max(1)], &pattern[i + 1..]),
        None => (".", pattern.as_str()),
    };
    if dir.contains(['*', '?', '[']) {
        return Err(invalid(
            "fileglob: deploy matches wildcards in the file name only, not in folders",
        ));
    }
    let glob_re = glob_regex(pat);
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.') || pat.starts_with('.'))
            .filter(|n| glob_re.as_ref().is_some_and(|re| re.is_match(n)))
            .collect();
        names.sort();
        for n in names {
            out.push(Value::from(if pattern.contains('/') {
                join(&[dir.to_string(), n])
            } else {
                n
            }));
        }
    }
    Ok(Value::from(out))
}

/// A shell glob of one name (`*`, `?`, `[...]`, `[!...]`) as an anchored regex.
fn glob_regex(pat: &str) -> Option<regex::Regex> {
    let mut re = String::from("^");
    let mut chars = pat.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            '[' => {
                let mut class = String::new();
                let mut closed = false;
                for d in chars.by_ref() {
                    if d == ']' && !class.is_empty() && class != "!" {
                        closed = true;
                        break;
                    }
                    class.push(d);
                }
                if !closed {
                    re.push_str(&regex::escape(&format!("[{class}")));
                    continue;
                }
                let (neg, body) = match class.strip_prefix('!') {
                    Some(b) => ("^", b.to_string()),
                    None => ("", class),
                };
                let body = body
                    .replace('\\', "\\\\")
                    .replace('[', "\\[")
                    .replace(']', "\\]");
                re.push_str(&format!("[{neg}{body}]"));
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_python() {
        assert_eq!(normpath("/a//b/../c/./d/"), "/a/c/d");
        assert_eq!(normpath("../x/.."), "..");
        assert_eq!(posix_dirname("/etc/nginx/"), "/etc/nginx");
        assert_eq!(posix_dirname("///x"), "///");
        assert_eq!(split_ext(".bashrc", &['/']), (".bashrc", ""));
        assert_eq!(split_ext("a/b.tar.gz", &['/']), ("a/b.tar", ".gz"));
        assert_eq!(
            nt_split("C:\\Users\\x\\f.txt"),
            ("C:\\Users\\x".into(), "f.txt".into())
        );
        assert_eq!(
            nt_splitdrive("\\\\server\\share\\dir"),
            ("\\\\server\\share".into(), "\\dir".into())
        );
        assert_eq!(join(&["a".into(), "/b".into(), "c".into()]), "/b/c");
    }
}
