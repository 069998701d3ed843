//! `-l/--limit PATTERN` -> the hosts it selects, with Ansible's pattern language, evaluated as
//! ansible-core's `inventory/manager.py` evaluates it (`split_host_pattern`, `order_patterns`,
//! `_evaluate_patterns`, `_match_one_pattern`, `subset`):
//!
//! - `a:b` and `a,b` are unions (with commas, `:` does not split); whitespace is ignored;
//! - `&g` intersects, `!x` excludes; whatever order they are written in, the plain patterns
//!   are taken first, then every `&`, then every `!` (only `&`/`!`: `all` first);
//! - a name matches a group (all its hosts, through its children) or a host; `all` and `*`
//!   match every host; `?`, `*` and `[...]` are shell wildcards (Python's `fnmatch`, case
//!   sensitive, the whole name); `~REGEX` is a regular expression matched at the start of the
//!   name (Python's `re.match`);
//! - `group[0]`, `group[-1]`, `group[1:3]` (inclusive), `group[2:]` pick from the group's
//!   hosts in Ansible's order (its own hosts, then its children's, level by level);
//! - `@FILE` reads one pattern per line.
//!
//! A name that matches nothing selects nothing (Ansible warns, so do we); an out-of-range
//! subscript like `web[5]` is an error, as in Ansible. Ansible's implicit `localhost` is not
//! made up: `localhost` matches only a host of that name.

use std::collections::HashSet;
use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;

use super::{Inventory, hostpattern};
use crate::error::Error;

/// The hosts a limit selects, and its names that matched no group or host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matched {
    /// Host names, each once, in the order Ansible's evaluation finds them.
    pub hosts: Vec<String>,
    /// Patterns that matched nothing (Ansible's "Could not match supplied host pattern").
    pub unmatched: Vec<String>,
}

/// Ansible's `split_host_pattern`: `a,b` or `a:b` (when the whole is no address like
/// `host:22` or `web[1:3]`) -> the single patterns, trimmed, empty ones dropped.
pub fn split(pattern: &str) -> Vec<String> {
    static COLON_LIST: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?:[^\s:\[\]]|\[[^\]]*\])+").expect("regex"));
    let parts: Vec<String> = if pattern.contains(',') {
        pattern.split(',').map(str::to_string).collect()
    } else if hostpattern::parse_address(pattern).is_some() {
        vec![pattern.to_string()]
    } else {
        COLON_LIST
            .find_iter(pattern)
            .map(|m| m.as_str().to_string())
            .collect()
    };
    parts
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// `--limit`'s patterns (Ansible's `subset`): `@FILE` becomes the file's lines (relative to
/// the current directory).
pub fn limit_patterns(limit: &str) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    for p in split(limit) {
        let Some(file) = p.strip_prefix('@') else {
            out.push(p);
            continue;
        };
        let path = Path::new(file);
        if !path.exists() {
            return Err(Error::usage(
                format!("--limit {limit}: no limit file {file}"),
                Some("@FILE names a file with one pattern per line".into()),
            ));
        }
        if !path.is_file() {
            return Err(Error::usage(
                format!("--limit {limit}: {file} is a folder, not a file of patterns"),
                None,
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        out.extend(text.split('\n').map(|l| l.trim().to_string()));
    }
    Ok(out)
}

/// The hosts `patterns` (as [`limit_patterns`] returns them) select, Ansible's way.
pub fn evaluate(inv: &Inventory, patterns: &[String], limit: &str) -> Result<Matched, Error> {
    let mut hosts: Vec<String> = Vec::new();
    let mut unmatched = Vec::new();
    for p in order(patterns) {
        // A plain host name is taken as it is (Ansible's shortcut, before any matching).
        if inv.hosts.contains_key(p.as_str()) {
            hosts.push(p);
            continue;
        }
        let that = match_one(inv, &p, limit, &mut unmatched)?;
        if p.starts_with('!') {
            let that: HashSet<&str> = that.iter().map(String::as_str).collect();
            hosts.retain(|h| !that.contains(h.as_str()));
        } else if p.starts_with('&') {
            let that: HashSet<&str> = that.iter().map(String::as_str).collect();
            hosts.retain(|h| that.contains(h.as_str()));
        } else {
            let existing: HashSet<String> = hosts.iter().cloned().collect();
            hosts.extend(that.into_iter().filter(|h| !existing.contains(h)));
        }
    }
    let mut seen = HashSet::new();
    hosts.retain(|h| seen.insert(h.clone()));
    Ok(Matched { hosts, unmatched })
}

/// Ansible's `order_patterns`: plain ones, then `&`, then `!`; `all` when there is no plain one.
fn order(patterns: &[String]) -> Vec<String> {
    let (mut regular, mut and, mut not) = (Vec::new(), Vec::new(), Vec::new());
    for p in patterns.iter().filter(|p| !p.is_empty()) {
        match p.chars().next() {
            Some('!') => not.push(p.clone()),
            Some('&') => and.push(p.clone()),
            _ => regular.push(p.clone()),
        }
    }
    if regular.is_empty() {
        regular.push("all".into());
    }
    regular.extend(and);
    regular.extend(not);
    regular
}

/// One pattern (its `&`/`!` ignored) -> its hosts, duplicates kept (a subscript counts them).
fn match_one(
    inv: &Inventory,
    pattern: &str,
    limit: &str,
    unmatched: &mut Vec<String>,
) -> Result<Vec<String>, Error> {
    let pattern = pattern
        .strip_prefix('&')
        .or_else(|| pattern.strip_prefix('!'))
        .unwrap_or(pattern);
    let (expr, subscript) = split_subscript(pattern)?;
    let hosts = enumerate(inv, expr, limit, unmatched)?;
    apply_subscript(hosts, subscript).ok_or_else(|| {
        Error::usage(
            format!("--limit {limit}: no host matched the subscripted pattern `{pattern}`"),
            Some("the index is past the end of the group's hosts (the first is [0])".into()),
        )
    })
}

/// A subscript: `[i]` (may be negative), or `[start:end]` with `end` inclusive (`None`: to
/// the last one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subscript {
    Index(i64),
    Range(i64, Option<i64>),
}

fn split_subscript(pattern: &str) -> Result<(&str, Option<Subscript>), Error> {
    static SUBSCRIPT: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(.+)\[(?:(-?[0-9]+)|([0-9]+)([:-])([0-9]*))\]$").expect("regex")
    });
    if pattern.starts_with('~') {
        return Ok((pattern, None));
    }
    let Some(c) = SUBSCRIPT.captures(pattern) else {
        return Ok((pattern, None));
    };
    let number = |s: &str| {
        s.parse::<i64>()
            .map_err(|_| Error::usage(format!("`{pattern}`: the subscript is too large"), None))
    };
    let expr = c.get(1).map_or(pattern, |m| m.as_str());
    let subscript = match c.get(2) {
        Some(idx) => Subscript::Index(number(idx.as_str())?),
        None => {
            let start = number(c.get(3).map_or("0", |m| m.as_str()))?;
            let end = match c.get(5).map_or("", |m| m.as_str()) {
                "" => None,
                e => Some(number(e)?),
            };
            Subscript::Range(start, end)
        }
    };
    Ok((expr, Some(subscript)))
}

/// Ansible's `_apply_subscript`, quirks included: `[2:0]` is `[2]` (its end 0 reads as "no
/// end"). `None` where Python raises IndexError.
fn apply_subscript(hosts: Vec<String>, subscript: Option<Subscript>) -> Option<Vec<String>> {
    let Some(subscript) = subscript else {
        return Some(hosts);
    };
    if hosts.is_empty() {
        return Some(hosts);
    }
    let len = hosts.len() as i64;
    let index = |i: i64| -> Option<Vec<String>> {
        let i = if i < 0 { len + i } else { i };
        (0..len)
            .contains(&i)
            .then(|| vec![hosts[i as usize].clone()])
    };
    match subscript {
        Subscript::Index(i) | Subscript::Range(i, Some(0)) => index(i),
        Subscript::Range(start, end) => {
            let end = end.unwrap_or(len - 1);
            let (from, to) = (start.min(len), (end + 1).clamp(0, len));
            Some(if from < to {
                hosts[from as usize..to as usize].to_vec()
            } else {
                Vec::new()
            })
        }
    }
}

/// Ansible's `_enumerate_matches`: the hosts of every group the pattern matches, then (when
/// no group matched, or the pattern has a wildcard, a `.` or is a regex) every host it
/// matches.
fn enumerate(
    inv: &Inventory,
    pattern: &str,
    limit: &str,
    unmatched: &mut Vec<String>,
) -> Result<Vec<String>, Error> {
    let matcher = Matcher::new(pattern, limit)?;
    let groups: Vec<&String> = inv.groups.keys().filter(|g| matcher.is_match(g)).collect();
    let mut results: Vec<String> = Vec::new();
    for g in &groups {
        results.extend(group_hosts(inv, g).into_iter().map(str::to_string));
    }
    let special = pattern.starts_with('~') || pattern.contains(['.', '?', '*', '[']);
    if groups.is_empty() || special {
        results.extend(inv.hosts.keys().filter(|h| matcher.is_match(h)).cloned());
    }
    if results.is_empty()
        && groups.is_empty()
        && pattern != "all"
        && !unmatched.iter().any(|u| u == pattern)
    {
        unmatched.push(pattern.to_string());
    }
    Ok(results)
}

/// A group's hosts in Ansible's order (`Group.get_hosts`): its own, then its children's,
/// then theirs, level by level, each host once.
pub fn group_hosts<'a>(inv: &'a Inventory, group: &str) -> Vec<&'a str> {
    let Some(start) = inv.groups.get(group) else {
        return Vec::new();
    };
    let mut ordered: Vec<&str> = vec![start.name.as_str()];
    ordered.extend(start.children.iter().map(String::as_str));
    let mut seen: HashSet<&str> = ordered.iter().copied().collect();
    let mut level: Vec<&str> = ordered.clone();
    while !level.is_empty() {
        let mut next: Vec<&str> = Vec::new();
        for g in &level {
            for child in inv
                .groups
                .get(*g)
                .map(|g| g.children.as_slice())
                .unwrap_or(&[])
            {
                if !seen.contains(child.as_str()) {
                    ordered.push(child);
                    if !next.contains(&child.as_str()) {
                        next.push(child);
                    }
                }
            }
        }
        seen.extend(next.iter().copied());
        level = next;
    }
    let mut hosts = Vec::new();
    let mut seen_hosts = HashSet::new();
    for g in ordered {
        for h in inv.groups.get(g).map(|g| g.hosts.as_slice()).unwrap_or(&[]) {
            if seen_hosts.insert(h.as_str()) {
                hosts.push(h.as_str());
            }
        }
    }
    hosts
}

/// One pattern's matcher: `~REGEX` (anchored at the start) or an fnmatch glob (whole name).
enum Matcher {
    Regex(Regex),
    Glob(Vec<Glob>),
}

impl Matcher {
    fn new(pattern: &str, limit: &str) -> Result<Matcher, Error> {
        match pattern.strip_prefix('~') {
            Some(re) => Regex::new(&format!(r"\A(?:{re})"))
                .map(Matcher::Regex)
                .map_err(|e| {
                    Error::usage(
                        format!("--limit {limit}: `~{re}` is not a regular expression deploy can use: {e}"),
                        Some("Python's look-around and back-references are not supported".into()),
                    )
                }),
            None => Ok(Matcher::Glob(glob(pattern))),
        }
    }

    fn is_match(&self, name: &str) -> bool {
        match self {
            Matcher::Regex(re) => re.is_match(name),
            Matcher::Glob(g) => {
                let name: Vec<char> = name.chars().collect();
                glob_match(g, &name)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Glob {
    Char(char),
    Any,
    Star,
    /// `[...]`: negated?, single characters and inclusive ranges.
    Set(bool, Vec<(char, char)>),
    /// An empty set (`[z-a]`): matches no character.
    Never,
}

/// Python's `fnmatch.translate`, as tokens instead of a regex.
fn glob(pattern: &str) -> Vec<Glob> {
    let pat: Vec<char> = pattern.chars().collect();
    let n = pat.len();
    let mut out = Vec::new();
    let mut i = 0;
    while i < n {
        let c = pat[i];
        i += 1;
        match c {
            '*' => {
                if out.last() != Some(&Glob::Star) {
                    out.push(Glob::Star);
                }
            }
            '?' => out.push(Glob::Any),
            '[' => {
                let mut j = i;
                if j < n && pat[j] == '!' {
                    j += 1;
                }
                if j < n && pat[j] == ']' {
                    j += 1;
                }
                while j < n && pat[j] != ']' {
                    j += 1;
                }
                if j >= n {
                    out.push(Glob::Char('['));
                    continue;
                }
                out.push(set(&pat, i, j));
                i = j + 1;
            }
            c => out.push(Glob::Char(c)),
        }
    }
    out
}

/// The set between `[` (its content starts at `i`) and `]` at `j`, as fnmatch reads it.
fn set(pat: &[char], mut i: usize, j: usize) -> Glob {
    let stuff = &pat[i..j];
    let chunks: Vec<Vec<char>> = if !stuff.contains(&'-') {
        vec![stuff.to_vec()]
    } else {
        let mut chunks = Vec::new();
        let mut k = if pat[i] == '!' { i + 2 } else { i + 1 };
        while let Some(found) = (k..j).find(|&x| pat[x] == '-') {
            chunks.push(pat[i..found].to_vec());
            i = found + 1;
            k = found + 3;
        }
        let last = pat[i..j].to_vec();
        if last.is_empty() {
            if let Some(prev) = chunks.last_mut() {
                prev.push('-');
            }
        } else {
            chunks.push(last);
        }
        // Empty ranges (`z-a`) are removed with their ends.
        let mut k = chunks.len().saturating_sub(1);
        while k > 0 {
            let (a, b) = (chunks[k - 1].last().copied(), chunks[k].first().copied());
            if let (Some(a), Some(b)) = (a, b)
                && a > b
            {
                let mut merged = chunks[k - 1][..chunks[k - 1].len() - 1].to_vec();
                merged.extend_from_slice(&chunks[k][1..]);
                chunks[k - 1] = merged;
                chunks.remove(k);
            }
            k -= 1;
        }
        chunks
    };
    // Python joins the chunks with range hyphens (the chunks' own `-` escaped) into the
    // content of a regex set; sre then reads `x-y` as a range and anything else as itself.
    // (character, is a range hyphen)
    let mut content: Vec<(char, bool)> = Vec::new();
    for (k, chunk) in chunks.iter().enumerate() {
        if k > 0 {
            content.push(('-', true));
        }
        content.extend(chunk.iter().map(|&c| (c, false)));
    }
    if content.is_empty() {
        return Glob::Never;
    }
    if content.len() == 1 && content[0].0 == '!' {
        return Glob::Any;
    }
    let negated = content[0] == ('!', false);
    if negated {
        content.remove(0);
    }
    let mut items = Vec::new();
    let mut x = 0;
    while x < content.len() {
        let this = content[x].0;
        if x + 2 < content.len() && content[x + 1] == ('-', true) {
            items.push((this, content[x + 2].0));
            x += 3;
        } else {
            items.push((this, this));
            x += 1;
        }
    }
    Glob::Set(negated, items)
}

fn glob_match(g: &[Glob], name: &[char]) -> bool {
    let (mut p, mut s) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while s < name.len() {
        let step = match g.get(p) {
            Some(Glob::Star) => {
                star = Some((p, s));
                p += 1;
                continue;
            }
            Some(Glob::Char(c)) => *c == name[s],
            Some(Glob::Any) => true,
            Some(Glob::Set(negated, items)) => {
                items.iter().any(|(lo, hi)| (*lo..=*hi).contains(&name[s])) != *negated
            }
            Some(Glob::Never) | None => false,
        };
        if step {
            p += 1;
            s += 1;
        } else if let Some((sp, ss)) = star {
            p = sp + 1;
            s = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    g[p..].iter().all(|t| *t == Glob::Star)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, name: &str) -> bool {
        glob_match(&glob(pattern), &name.chars().collect::<Vec<_>>())
    }

    #[test]
    fn globs_follow_fnmatch() {
        assert!(m("web*", "web01"));
        assert!(m("*", ""));
        assert!(!m("web*", "xweb"));
        assert!(m("db-?", "db-a"));
        assert!(!m("db-?", "db-ab"));
        assert!(m("[wd]*", "db"));
        assert!(m("[!w]*", "db"));
        assert!(!m("[!w]*", "web"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[z-a]x", "ax"));
        assert!(m("[a-]", "-"));
        assert!(m("[]]", "]"));
        assert!(m("a[b", "a[b"));
        assert!(m("[!]", "[!]") && !m("[!]", "q"));
        assert!(m("[!z-a]", "q"));
        assert!(m("*a*b", "xxaxxb"));
        assert!(!m("*a*b", "xxaxxbc"));
        assert!(m("[a-c-e]", "-") && m("[a-c-e]", "e") && !m("[a-c-e]", "d"));
    }

    #[test]
    fn patterns_split_as_ansible_splits_them() {
        assert_eq!(split("a:b"), ["a", "b"]);
        assert_eq!(split("web:&prod:!db"), ["web", "&prod", "!db"]);
        assert_eq!(split(" a , b[1:2] "), ["a", "b[1:2]"]);
        assert_eq!(split("web[1:2]"), ["web[1:2]"]);
        assert_eq!(split("g1:g2[0]"), ["g1", "g2[0]"]);
        // `host:22` is an address: one pattern.
        assert_eq!(split("host:22"), ["host:22"]);
        // With a comma, a colon does not split.
        assert_eq!(split("a:b,c"), ["a:b", "c"]);
    }

    #[test]
    fn subscripts_keep_ansible_quirks() {
        let hosts: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let sub = |p: &str| {
            let (_, s) = split_subscript(p).unwrap();
            apply_subscript(hosts.clone(), s)
        };
        assert_eq!(sub("g[0]").unwrap(), ["a"]);
        assert_eq!(sub("g[-1]").unwrap(), ["c"]);
        assert_eq!(sub("g[1:]").unwrap(), ["b", "c"]);
        assert_eq!(sub("g[0:1]").unwrap(), ["a", "b"]);
        assert_eq!(sub("g[2:0]").unwrap(), ["c"]);
        assert_eq!(sub("g[1-2]").unwrap(), ["b", "c"]);
        assert_eq!(sub("g[5:9]").unwrap(), Vec::<String>::new());
        assert!(sub("g[3]").is_none());
        assert_eq!(split_subscript("~g[0]").unwrap(), ("~g[0]", None));
    }
}
