//! A rendered file's text -> its `serde_json::Value`, without serde-saphyr, for the common
//! shape of rendered configs (the checks parse every rendered file of the inventory: with
//! serde-saphyr that was more than half of `deploy plan`'s CPU at 1000 hosts).
//!
//! Exact or nothing: [`parse`] answers only for a text it is sure of, and then with the value
//! [`super::try_parse`] gives; for anything else it answers `None` and the caller asks
//! serde-saphyr. What it takes: block mappings and sequences (compact `- key: value` items
//! too), single-line flow sequences and mappings, single-line quoted scalars without escapes,
//! single-line plain scalars resolved as serde-saphyr resolves them with [`super::options`]
//! (YAML 1.1 booleans, `0755` kept as a string, 64-bit integers, finite floats), comments,
//! an anchor on a mapping's value (`key: &name`) and aliases to it after it (at most 50,
//! their copies counted as nodes). Anything else gives `None`: a byte that is not printable
//! ASCII (tabs, CR, Unicode), a document marker or directive, an anchor elsewhere (on a
//! sequence entry, a key, a flow node), an alias to an unknown or repeated anchor, tags,
//! merge keys (`<<`), block scalars,
//! multi-line scalars or flow collections, escapes, explicit keys, a key that is not a plain
//! string or is written twice, a scalar whose resolution is not certain here (`0x1F`,
//! `1_000`, `.inf`, an integer past 64 bits), an indentation it does not expect, a
//! top-level scalar. tests/ in this file compare it with serde-saphyr.

use serde_json::{Map, Value as Json};

/// Nesting depth past which the answer is `None` (serde-saphyr's budget allows 64).
const MAX_DEPTH: usize = 40;
/// Nodes past which the answer is `None` (serde-saphyr's budget allows 250 000).
const MAX_NODES: usize = 100_000;
/// Longest implicit key taken (serde-saphyr's scanner looks 1024 characters ahead for `:`).
const MAX_KEY: usize = 512;
/// Aliases past which the answer is `None` (serde-saphyr checks the ratio of aliases to
/// anchors past 100).
const MAX_ALIASES: usize = 50;
/// Longest text taken.
const MAX_TEXT: usize = 16 << 20;

/// `text` parsed as YAML into a mapping or a list, when this parser is sure of the value;
/// else `None` (including for a text whose value is a scalar or that does not parse).
pub fn parse(text: &str) -> Option<Json> {
    if text.len() > MAX_TEXT
        || text
            .bytes()
            .any(|b| !(b == b'\n' || (0x20..0x7f).contains(&b)))
    {
        return None;
    }
    let mut lines = Vec::new();
    for line in text.split('\n') {
        let rest = line.trim_start_matches(' ');
        if rest.is_empty() || rest.starts_with('#') {
            continue;
        }
        let indent = line.len() - rest.len();
        if indent == 0
            && (rest.starts_with("---") || rest.starts_with("...") || rest.starts_with('%'))
        {
            return None;
        }
        lines.push(Line { indent, text: rest });
    }
    let mut p = Parser {
        lines,
        pos: 0,
        nodes: 0,
        anchors: Vec::new(),
        aliases: 0,
    };
    let first = *p.lines.first()?;
    let value = if is_entry(first.text) {
        p.block_seq(first.indent, 0)?
    } else {
        p.block_map(first.indent, 0)?
    };
    (p.pos == p.lines.len()).then_some(value)
}

/// One line with content (blank and comment lines are dropped: neither can end or continue
/// anything this parser takes).
#[derive(Clone, Copy)]
struct Line<'a> {
    indent: usize,
    /// From the first non-space character, with the trailing spaces still on.
    text: &'a str,
}

struct Parser<'a> {
    lines: Vec<Line<'a>>,
    pos: usize,
    nodes: usize,
    /// Each `&name` and its node's value, once the node is complete.
    anchors: Vec<(&'a str, Json)>,
    /// `*name` read so far.
    aliases: usize,
}

/// Whether a line's content starts a block sequence entry.
fn is_entry(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

impl<'a> Parser<'a> {
    fn node(&mut self) -> Option<()> {
        self.nodes += 1;
        (self.nodes <= MAX_NODES).then_some(())
    }

    /// The block mapping whose keys are at column `indent`, from the current line.
    fn block_map(&mut self, indent: usize, depth: usize) -> Option<Json> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.node()?;
        let mut map = Map::new();
        while let Some(line) = self.lines.get(self.pos).copied() {
            if line.indent < indent {
                break;
            }
            if line.indent > indent || is_entry(line.text) {
                return None;
            }
            let (key, rest) = split_key(line.text)?;
            self.pos += 1;
            let value = self.value_after(rest, indent, true, depth + 1)?;
            if map.insert(key, value).is_some() {
                return None;
            }
        }
        Some(Json::Object(map))
    }

    /// The block sequence whose `-` are at column `indent`, from the current line.
    fn block_seq(&mut self, indent: usize, depth: usize) -> Option<Json> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.node()?;
        let mut items = Vec::new();
        while let Some(line) = self.lines.get(self.pos).copied() {
            if line.indent < indent {
                break;
            }
            if line.indent > indent {
                return None;
            }
            if !is_entry(line.text) {
                // The mapping this sequence is the value of (at the same column) goes on.
                break;
            }
            let after = &line.text[1..];
            let content = after.trim_start_matches(' ');
            if content.starts_with('&') {
                return None;
            }
            if content.is_empty() || content.starts_with('#') {
                self.pos += 1;
                items.push(self.value_after("", indent, false, depth + 1)?);
            } else if is_entry(content) {
                return None;
            } else if split_key(content).is_some() {
                // `- key: value`: a mapping whose keys are at the column of `key`.
                let column = indent + 1 + (after.len() - content.len());
                self.lines[self.pos] = Line {
                    indent: column,
                    text: content,
                };
                items.push(self.block_map(column, depth + 1)?);
            } else {
                self.pos += 1;
                items.push(self.inline(content, indent, depth + 1)?);
            }
        }
        Some(Json::Array(items))
    }

    /// The value of a key or entry owned by column `owner`, `rest` being what follows its
    /// `:` or `-` on the line. `same_column_seq`: a mapping's value may be a sequence whose
    /// `-` are at the key's column.
    fn value_after(
        &mut self,
        rest: &'a str,
        owner: usize,
        same_column_seq: bool,
        depth: usize,
    ) -> Option<Json> {
        let rest = rest.trim_start_matches(' ');
        if let Some(anchored) = rest.strip_prefix('&') {
            // `key: &name` then its node: recorded for the `*name` after it.
            let end = anchored.find(' ').unwrap_or(anchored.len());
            let name = &anchored[..end];
            if name.is_empty()
                || name.contains(['[', ']', '{', '}', ','])
                || self.anchors.iter().any(|(n, _)| *n == name)
            {
                return None;
            }
            let after = anchored[end..].trim_start_matches(' ');
            if after.starts_with(['&', '*']) {
                return None;
            }
            let value = self.value_after(after, owner, same_column_seq, depth)?;
            // The copy kept counts too, so anchors nested in anchors stay bounded.
            self.nodes += value_nodes(&value);
            if self.nodes > MAX_NODES {
                return None;
            }
            self.anchors.push((name, value.clone()));
            return Some(value);
        }
        if !(rest.is_empty() || rest.starts_with('#')) {
            return self.inline(rest, owner, depth);
        }
        match self.lines.get(self.pos).copied() {
            Some(next) if next.indent > owner => {
                if is_entry(next.text) {
                    self.block_seq(next.indent, depth)
                } else {
                    self.block_map(next.indent, depth)
                }
            }
            Some(next) if same_column_seq && next.indent == owner && is_entry(next.text) => {
                self.block_seq(owner, depth)
            }
            _ => {
                self.node()?;
                Some(Json::Null)
            }
        }
    }

    /// A value written on its line (`text` from its first character), owned by column
    /// `owner`: the next line must not be deeper, which would continue it (a multi-line
    /// plain scalar) or be an error.
    fn inline(&mut self, text: &'a str, owner: usize, depth: usize) -> Option<Json> {
        if depth > MAX_DEPTH {
            return None;
        }
        let value = match text.as_bytes()[0] {
            b'"' | b'\'' => {
                let (s, after) = quoted(text)?;
                line_end(after)?;
                Json::String(s)
            }
            b'*' => {
                // An alias: the anchored node's value again (serde-saphyr replays its
                // events). Few, so that no alias budget of serde-saphyr's comes near.
                let name = &text[1..text.find(' ').unwrap_or(text.len())];
                line_end(&text[1 + name.len()..])?;
                self.aliases += 1;
                if self.aliases > MAX_ALIASES {
                    return None;
                }
                let kept = &self.anchors.iter().find(|(n, _)| *n == name)?.1;
                self.nodes += value_nodes(kept);
                if self.nodes > MAX_NODES {
                    return None;
                }
                kept.clone()
            }
            b'[' | b'{' => {
                let mut flow = Flow {
                    text,
                    at: 0,
                    parser: self,
                };
                let v = flow.value(depth)?;
                line_end(&text[flow.at..])?;
                v
            }
            _ => {
                let s = match find_pair(text, b' ', b'#') {
                    Some(i) => &text[..i],
                    None => text,
                };
                let s = s.trim_end_matches(' ');
                if !plain_start(s) || find_pair(s, b':', b' ').is_some() || s.ends_with(':') {
                    return None;
                }
                resolve(s)?
            }
        };
        self.node()?;
        match self.lines.get(self.pos) {
            Some(next) if next.indent > owner => None,
            _ => Some(value),
        }
    }
}

/// How many nodes a value is.
fn value_nodes(value: &Json) -> usize {
    1 + match value {
        Json::Array(items) => items.iter().map(value_nodes).sum(),
        Json::Object(map) => map.values().map(value_nodes).sum(),
        _ => 0,
    }
}

/// What may follow a scalar or flow collection on its line: spaces, then a comment or nothing.
fn line_end(after: &str) -> Option<()> {
    let rest = after.trim_start_matches(' ');
    (rest.is_empty() || (rest.starts_with('#') && rest.len() < after.len())).then_some(())
}

/// A block mapping entry's key and what follows its `:`; `None` when the line is not one
/// this parser takes.
fn split_key(text: &str) -> Option<(String, &str)> {
    let (key, rest) = if text.starts_with(['"', '\'']) {
        let (key, after) = quoted(text)?;
        let rest = after.strip_prefix(':')?;
        if text.len() - after.len() > MAX_KEY {
            return None;
        }
        (key, rest)
    } else {
        let end = find_pair(text, b':', b' ').or_else(|| {
            let t = text.trim_end_matches(' ');
            t.ends_with(':').then(|| t.len() - 1)
        })?;
        let key = &text[..end];
        if end > MAX_KEY
            || find_pair(key, b' ', b'#').is_some()
            || key.ends_with(' ')
            || key.contains(['[', ']', '{', '}', ','])
            || !plain_start(key)
        {
            return None;
        }
        match resolve(key)? {
            Json::String(s) => (s, &text[end + 1..]),
            _ => return None,
        }
    };
    (rest.is_empty() || rest.starts_with(' ')).then_some((key, rest))
}

/// Where `a` followed by `b` first is in `s` (`str::find` with a `&str` pattern sets up a
/// searcher each time, which was most of this parser's time).
fn find_pair(s: &str, a: u8, b: u8) -> Option<usize> {
    s.as_bytes().windows(2).position(|w| w[0] == a && w[1] == b)
}

/// Whether a plain scalar may start so (and this parser knows how the scanner reads it).
fn plain_start(s: &str) -> bool {
    let b = s.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_alphanumeric() || b"/._$(~".contains(c) => true,
        Some(b'-') => b
            .get(1)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'.'),
        _ => false,
    }
}

/// A quoted scalar at the start of `text` (one line, no escapes), and what follows it.
fn quoted(text: &str) -> Option<(String, &str)> {
    let quote = text.as_bytes()[0];
    let body = &text[1..];
    if quote == b'"' {
        let end = body.find('"')?;
        let s = &body[..end];
        if s.contains('\\') {
            return None;
        }
        return Some((s.to_string(), &body[end + 1..]));
    }
    let mut s = String::new();
    let mut rest = body;
    loop {
        let end = rest.find('\'')?;
        s.push_str(&rest[..end]);
        rest = &rest[end + 1..];
        match rest.strip_prefix('\'') {
            Some(more) => {
                s.push('\'');
                rest = more;
            }
            None => return Some((s, rest)),
        }
    }
}

/// YAML 1.1 booleans, ASCII case ignored (`parse_yaml11_bool` of serde-saphyr).
const BOOLEANS: [(&str, bool); 8] = [
    ("true", true),
    ("yes", true),
    ("y", true),
    ("on", true),
    ("false", false),
    ("no", false),
    ("n", false),
    ("off", false),
];

/// A plain scalar's value as serde-saphyr's `deserialize_any` gives it with
/// [`super::options`], or `None` when this parser is not sure.
fn resolve(s: &str) -> Option<Json> {
    if matches!(s, "~" | "null" | "Null" | "NULL") {
        return Some(Json::Null);
    }
    for (word, b) in if s.len() > 5 { &[][..] } else { &BOOLEANS[..] } {
        if s.eq_ignore_ascii_case(word) {
            return Some(Json::Bool(*b));
        }
    }
    let (negative, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let bytes = body.as_bytes();
    if !bytes
        .first()
        .is_some_and(|c| c.is_ascii_digit() || *c == b'.')
    {
        // Not a number's shape: no integer or float parse takes it.
        return Some(Json::String(s.to_string()));
    }
    if body.contains('_') || (bytes.len() > 1 && bytes[0] == b'0' && b"xXoObB".contains(&bytes[1]))
    {
        return None;
    }
    let lower = body.to_ascii_lowercase();
    if lower.contains("inf") || lower.contains("nan") {
        return None;
    }
    if bytes.iter().all(u8::is_ascii_digit) {
        if bytes.len() > 1 && bytes[0] == b'0' {
            // `0755`: kept as written (`leading_zero_numbers_as_strings`).
            return Some(Json::String(s.to_string()));
        }
        return if negative {
            s.parse::<i64>().ok().map(Json::from)
        } else {
            body.parse::<u64>().ok().map(Json::from)
        };
    }
    if bytes
        .iter()
        .all(|c| c.is_ascii_digit() || b".eE+-".contains(c))
    {
        return match s.parse::<f64>() {
            Ok(v) if v.is_finite() => serde_json::Number::from_f64(v).map(Json::Number),
            Ok(_) => None,
            Err(_) => Some(Json::String(s.to_string())),
        };
    }
    // A letter other than an exponent's `e`: neither an integer nor a float.
    Some(Json::String(s.to_string()))
}

/// A flow collection on one line.
struct Flow<'t, 'p, 'a> {
    text: &'t str,
    at: usize,
    parser: &'p mut Parser<'a>,
}

impl Flow<'_, '_, '_> {
    fn skip_spaces(&mut self) {
        while self.text.as_bytes().get(self.at) == Some(&b' ') {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    /// A value inside a flow collection (or the collection itself).
    fn value(&mut self, depth: usize) -> Option<Json> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.parser.node()?;
        match self.peek()? {
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                self.skip_spaces();
                if self.peek()? == b']' {
                    self.at += 1;
                    return Some(Json::Array(items));
                }
                loop {
                    self.skip_spaces();
                    items.push(self.value(depth + 1)?);
                    self.skip_spaces();
                    match self.peek()? {
                        b',' => self.at += 1,
                        b']' => {
                            self.at += 1;
                            return Some(Json::Array(items));
                        }
                        _ => return None,
                    }
                }
            }
            b'{' => {
                self.at += 1;
                let mut map = Map::new();
                self.skip_spaces();
                if self.peek()? == b'}' {
                    self.at += 1;
                    return Some(Json::Object(map));
                }
                loop {
                    self.skip_spaces();
                    let key = self.key()?;
                    self.skip_spaces();
                    let value = self.value(depth + 1)?;
                    if map.insert(key, value).is_some() {
                        return None;
                    }
                    self.skip_spaces();
                    match self.peek()? {
                        b',' => self.at += 1,
                        b'}' => {
                            self.at += 1;
                            return Some(Json::Object(map));
                        }
                        _ => return None,
                    }
                }
            }
            b'"' | b'\'' => {
                let rest = &self.text[self.at..];
                let (s, after) = quoted(rest)?;
                self.at += rest.len() - after.len();
                Some(Json::String(s))
            }
            _ => {
                let s = self.plain()?;
                resolve(s)
            }
        }
    }

    /// A flow plain scalar: up to the next flow indicator; `None` for one with `:` or `#`.
    fn plain(&mut self) -> Option<&str> {
        let rest = &self.text[self.at..];
        let end = rest.find([',', '[', ']', '{', '}'])?;
        let s = rest[..end].trim_end_matches(' ');
        if !plain_start(s) || s.contains([':', '#', '"', '\'']) {
            return None;
        }
        self.at += end;
        Some(s)
    }

    /// A flow mapping's key and its `:`.
    fn key(&mut self) -> Option<String> {
        let start = self.at;
        let key = match self.peek()? {
            b'"' | b'\'' => {
                let rest = &self.text[self.at..];
                let (s, after) = quoted(rest)?;
                self.at += rest.len() - after.len();
                self.skip_spaces();
                if self.peek()? != b':' {
                    return None;
                }
                self.at += 1;
                s
            }
            _ => {
                let rest = &self.text[self.at..];
                let end = find_pair(rest, b':', b' ')?;
                let s = &rest[..end];
                if !plain_start(s)
                    || s.ends_with(' ')
                    || s.contains([',', '[', ']', '{', '}', '#', ':', '"', '\''])
                {
                    return None;
                }
                self.at += end + 1;
                match resolve(s)? {
                    Json::String(s) => s,
                    _ => return None,
                }
            }
        };
        (self.at - start <= MAX_KEY).then_some(key)
    }
}

#[cfg(test)]
mod tests;
