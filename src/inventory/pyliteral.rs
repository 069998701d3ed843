//! An INI inventory's values, typed as Ansible types them: Python's `ast.literal_eval` of the
//! text, else the text itself (ansible-core's `plugins/inventory/ini.py`, `_parse_value`).
//!
//! What `literal_eval` accepts becomes the JSON value Ansible ends up with: ints, floats,
//! `True`/`False`/`None`, strings (any quoting and prefix but f-strings, escapes, adjacent
//! literals concatenated; bytes decoded as UTF-8), lists, tuples and sets (all lists), dicts,
//! `set()`, and `...` (the string `"..."`). Anything else (a name like `true` or `web01`,
//! `1+1`, `0777`, text with spaces) is the string as written. Kept as the string too, where
//! Ansible would differ: complex numbers (Ansible prints them, e.g. `(1+2j)`), integers beyond
//! 64 bits, `\N{...}` escapes and lone surrogates. A set keeps the order it is written in
//! (Python's is its hash order).

use serde_json::{Map, Number, Value};

/// `text` as Ansible's INI plugin types it: the literal's value, or `text` itself.
pub fn typed(text: &str) -> Value {
    literal_eval(text).unwrap_or_else(|| Value::String(text.to_string()))
}

/// Python's `ast.literal_eval(text)` (with the INI plugin's coercions), or `None` where
/// Python raises.
pub fn literal_eval(text: &str) -> Option<Value> {
    let text = text.trim_start_matches([' ', '\t']);
    let mut p = Parser {
        chars: text.chars().collect(),
        pos: 0,
        depth: 0,
    };
    p.skip_ws();
    let first = p.element()?;
    p.skip_ws();
    let value = if p.peek() == Some(',') {
        // A bare tuple: `1, 2`.
        let mut items = vec![first];
        while p.eat(',') {
            p.skip_ws();
            if p.at_end() {
                break;
            }
            items.push(p.element()?);
            p.skip_ws();
        }
        Literal::List(items)
    } else {
        first
    };
    p.skip_ws();
    if !p.at_end() {
        return None;
    }
    value.into_json()
}

/// A parsed literal before it becomes JSON (dict keys may be any literal).
#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Int(i128),
    Float(f64),
    Bool(bool),
    None,
    Str(String),
    Bytes(Vec<u8>),
    Ellipsis,
    List(Vec<Literal>),
    Set(Vec<Literal>),
    Dict(Vec<(Literal, Literal)>),
}

impl Literal {
    fn into_json(self) -> Option<Value> {
        Some(match self {
            Literal::Int(i) => {
                if let Ok(v) = i64::try_from(i) {
                    Value::from(v)
                } else {
                    Value::from(u64::try_from(i).ok()?)
                }
            }
            Literal::Float(f) => Value::Number(Number::from_f64(f)?),
            Literal::Bool(b) => Value::Bool(b),
            Literal::None => Value::Null,
            Literal::Str(s) => Value::String(s),
            Literal::Bytes(b) => Value::String(String::from_utf8(b).ok()?),
            Literal::Ellipsis => Value::String("...".into()),
            Literal::List(items) => Value::Array(
                items
                    .into_iter()
                    .map(Literal::into_json)
                    .collect::<Option<_>>()?,
            ),
            Literal::Set(items) => {
                let mut unique: Vec<Literal> = Vec::new();
                for item in items {
                    if !unique.contains(&item) {
                        unique.push(item);
                    }
                }
                Literal::List(unique).into_json()?
            }
            Literal::Dict(pairs) => {
                let mut map = Map::new();
                for (k, v) in pairs {
                    map.insert(k.json_key()?, v.into_json()?);
                }
                Value::Object(map)
            }
        })
    }

    /// The key `json.dumps` writes for a dict key.
    fn json_key(&self) -> Option<String> {
        match self {
            Literal::Str(s) => Some(s.clone()),
            Literal::Bytes(b) => String::from_utf8(b.clone()).ok(),
            Literal::Int(i) => Some(i.to_string()),
            Literal::Bool(true) => Some("true".into()),
            Literal::Bool(false) => Some("false".into()),
            Literal::None => Some("null".into()),
            Literal::Ellipsis => Some("...".into()),
            // Float keys print with Python's repr, tuples are no JSON keys: not worth it.
            _ => None,
        }
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    /// Open brackets: inside them a newline is whitespace.
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.pos + n).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Spaces, tabs, form feeds, comments, backslash-newline; newlines inside brackets.
    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\x0c' => self.pos += 1,
                '\n' | '\r' if self.depth > 0 => self.pos += 1,
                '#' => {
                    while self.peek().is_some_and(|c| c != '\n' && c != '\r') {
                        self.pos += 1;
                    }
                }
                '\\' if matches!(self.peek_at(1), Some('\n' | '\r')) => self.pos += 2,
                _ => break,
            }
        }
    }

    /// One element: a literal, optionally signed (`-1`, `+2.5`).
    fn element(&mut self) -> Option<Literal> {
        self.skip_ws();
        let value = match self.peek()? {
            c @ ('-' | '+') => {
                self.pos += 1;
                self.skip_ws();
                // The operand must be a number itself (parentheses are transparent), not
                // a bool or another unary.
                let negative = c == '-';
                match self.atom()? {
                    Literal::Int(i) => Literal::Int(if negative { -i } else { i }),
                    Literal::Float(f) => Literal::Float(if negative { -f } else { f }),
                    _ => return None,
                }
            }
            _ => self.atom()?,
        };
        self.skip_ws();
        // `1 + 2j` is the only binary operation literal_eval allows, and it makes a complex
        // number, which is kept as written.
        if matches!(
            self.peek(),
            Some('+' | '-' | '*' | '/' | '%' | '|' | '&' | '^' | '@')
        ) {
            return None;
        }
        Some(value)
    }

    fn atom(&mut self) -> Option<Literal> {
        let c = self.peek()?;
        match c {
            '(' => {
                self.pos += 1;
                self.depth += 1;
                self.skip_ws();
                if self.eat(')') {
                    self.depth -= 1;
                    return Some(Literal::List(Vec::new()));
                }
                let first = self.element()?;
                self.skip_ws();
                let out = if self.peek() == Some(',') {
                    let mut items = vec![first];
                    self.sequence(')', &mut items)?;
                    Literal::List(items)
                } else if self.eat(')') {
                    first
                } else {
                    return None;
                };
                self.depth -= 1;
                Some(out)
            }
            '[' => {
                self.pos += 1;
                self.depth += 1;
                self.skip_ws();
                let mut items = Vec::new();
                if !self.eat(']') {
                    items.push(self.element()?);
                    self.sequence(']', &mut items)?;
                }
                self.depth -= 1;
                Some(Literal::List(items))
            }
            '{' => {
                self.pos += 1;
                self.depth += 1;
                self.skip_ws();
                if self.eat('}') {
                    self.depth -= 1;
                    return Some(Literal::Dict(Vec::new()));
                }
                let first = self.element()?;
                self.skip_ws();
                let out = if self.eat(':') {
                    let mut pairs = vec![(first, self.element()?)];
                    loop {
                        self.skip_ws();
                        if self.eat('}') {
                            break;
                        }
                        if !self.eat(',') {
                            return None;
                        }
                        self.skip_ws();
                        if self.eat('}') {
                            break;
                        }
                        let k = self.element()?;
                        self.skip_ws();
                        if !self.eat(':') {
                            return None;
                        }
                        pairs.push((k, self.element()?));
                    }
                    Literal::Dict(pairs)
                } else {
                    let mut items = vec![first];
                    self.sequence('}', &mut items)?;
                    Literal::Set(items)
                };
                self.depth -= 1;
                Some(out)
            }
            '.' if self.peek_at(1) == Some('.') && self.peek_at(2) == Some('.') => {
                self.pos += 3;
                Some(Literal::Ellipsis)
            }
            '0'..='9' | '.' => self.number(),
            '\'' | '"' => self.strings(),
            c if c.is_alphabetic() || c == '_' => {
                if self.string_prefix().is_some() {
                    return self.strings();
                }
                let start = self.pos;
                while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    self.pos += 1;
                }
                let name: String = self.chars[start..self.pos].iter().collect();
                match name.as_str() {
                    "True" => Some(Literal::Bool(true)),
                    "False" => Some(Literal::Bool(false)),
                    "None" => Some(Literal::None),
                    "set" => {
                        self.skip_ws();
                        if !self.eat('(') {
                            return None;
                        }
                        self.depth += 1;
                        self.skip_ws();
                        if !self.eat(')') {
                            return None;
                        }
                        self.depth -= 1;
                        Some(Literal::Set(Vec::new()))
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// After the first item: `, item`... up to `close` (a trailing comma allowed).
    fn sequence(&mut self, close: char, items: &mut Vec<Literal>) -> Option<()> {
        loop {
            self.skip_ws();
            if self.eat(close) {
                return Some(());
            }
            if !self.eat(',') {
                return None;
            }
            self.skip_ws();
            if self.eat(close) {
                return Some(());
            }
            items.push(self.element()?);
        }
    }

    /// The length of a string prefix (`r`, `b`, `rb`, `u`, `f`...) followed by a quote.
    fn string_prefix(&self) -> Option<usize> {
        for len in 1..=2 {
            let prefix: String = self.chars[self.pos..]
                .iter()
                .take(len)
                .collect::<String>()
                .to_ascii_lowercase();
            let valid = matches!(
                prefix.as_str(),
                "r" | "u" | "b" | "f" | "br" | "rb" | "fr" | "rf"
            );
            if valid && matches!(self.peek_at(len), Some('\'' | '"')) {
                return Some(len);
            }
        }
        None
    }

    /// One or more adjacent string literals, concatenated (all str or all bytes).
    fn strings(&mut self) -> Option<Literal> {
        let mut text: Option<String> = None;
        let mut bytes: Option<Vec<u8>> = None;
        loop {
            match self.one_string()? {
                Literal::Str(s) if bytes.is_none() => text.get_or_insert_default().push_str(&s),
                Literal::Bytes(b) if text.is_none() => bytes.get_or_insert_default().extend(b),
                _ => return None,
            }
            let save = self.pos;
            self.skip_ws();
            let more = matches!(self.peek(), Some('\'' | '"')) || self.string_prefix().is_some();
            if !more {
                self.pos = save;
                break;
            }
        }
        Some(match (text, bytes) {
            (Some(s), _) => Literal::Str(s),
            (_, Some(b)) => Literal::Bytes(b),
            _ => return None,
        })
    }

    fn one_string(&mut self) -> Option<Literal> {
        let (mut raw, mut is_bytes) = (false, false);
        if let Some(len) = self.string_prefix() {
            for _ in 0..len {
                match self.peek()?.to_ascii_lowercase() {
                    'r' => raw = true,
                    'b' => is_bytes = true,
                    // An f-string is a JoinedStr, which literal_eval refuses.
                    'f' => return None,
                    _ => {}
                }
                self.pos += 1;
            }
        }
        let quote = self.peek()?;
        self.pos += 1;
        let triple = self.peek() == Some(quote) && self.peek_at(1) == Some(quote);
        if triple {
            self.pos += 2;
        }
        let mut out: Vec<u32> = Vec::new();
        loop {
            let c = self.peek()?;
            if c == quote
                && (!triple || (self.peek_at(1) == Some(quote) && self.peek_at(2) == Some(quote)))
            {
                self.pos += if triple { 3 } else { 1 };
                break;
            }
            if !triple && (c == '\n' || c == '\r') {
                return None;
            }
            if is_bytes && !c.is_ascii() {
                return None;
            }
            self.pos += 1;
            if c != '\\' {
                out.push(c as u32);
                continue;
            }
            let e = self.peek()?;
            self.pos += 1;
            if raw {
                // A raw string keeps the backslash; the escaped quote does not close it.
                out.push('\\' as u32);
                out.push(e as u32);
                continue;
            }
            match e {
                '\n' => {}
                '\r' => {
                    self.eat('\n');
                }
                '\\' | '\'' | '"' => out.push(e as u32),
                'a' => out.push(7),
                'b' => out.push(8),
                'f' => out.push(12),
                'n' => out.push(10),
                'r' => out.push(13),
                't' => out.push(9),
                'v' => out.push(11),
                '0'..='7' => {
                    let mut v = e.to_digit(8)?;
                    for _ in 0..2 {
                        match self.peek().and_then(|c| c.to_digit(8)) {
                            Some(d) => {
                                v = v * 8 + d;
                                self.pos += 1;
                            }
                            None => break,
                        }
                    }
                    if is_bytes && v > 0xff {
                        return None;
                    }
                    out.push(v);
                }
                'x' => out.push(self.hex_digits(2)?),
                'u' if !is_bytes => out.push(self.hex_digits(4)?),
                'U' if !is_bytes => out.push(self.hex_digits(8)?),
                // \N{NAME} needs Unicode's name table.
                'N' if !is_bytes => return None,
                other => {
                    out.push('\\' as u32);
                    out.push(other as u32);
                }
            }
        }
        if is_bytes {
            Some(Literal::Bytes(
                out.into_iter()
                    .map(|c| u8::try_from(c).ok())
                    .collect::<Option<_>>()?,
            ))
        } else {
            Some(Literal::Str(
                out.into_iter().map(char::from_u32).collect::<Option<_>>()?,
            ))
        }
    }

    fn hex_digits(&mut self, n: usize) -> Option<u32> {
        let mut v: u32 = 0;
        for _ in 0..n {
            let d = self.peek()?.to_digit(16)?;
            v = v.checked_mul(16)?.checked_add(d)?;
            self.pos += 1;
        }
        Some(v)
    }

    /// Digits with single underscores between them (`1_000`), in `radix`.
    fn digits(&mut self, radix: u32) -> Option<String> {
        let mut s = String::new();
        loop {
            match self.peek() {
                Some(c) if c.is_digit(radix) => {
                    s.push(c);
                    self.pos += 1;
                }
                Some('_')
                    if !s.is_empty() && self.peek_at(1).is_some_and(|c| c.is_digit(radix)) =>
                {
                    self.pos += 1;
                }
                _ => break,
            }
        }
        (!s.is_empty()).then_some(s)
    }

    fn number(&mut self) -> Option<Literal> {
        let start = self.pos;
        if self.peek() == Some('0')
            && let Some(radix) = match self.peek_at(1) {
                Some('x' | 'X') => Some(16),
                Some('o' | 'O') => Some(8),
                Some('b' | 'B') => Some(2),
                _ => None,
            }
        {
            self.pos += 2;
            // An underscore may follow the prefix: 0x_ff.
            if self.peek() == Some('_') {
                self.pos += 1;
            }
            let digits = self.digits(radix)?;
            self.end_of_number()?;
            return Some(Literal::Int(i128::from_str_radix(&digits, radix).ok()?));
        }
        let int_part = self.digits(10);
        let mut is_float = false;
        let mut text = int_part.clone().unwrap_or_default();
        if self.peek() == Some('.') {
            self.pos += 1;
            is_float = true;
            text.push('.');
            if let Some(frac) = self.digits(10) {
                text.push_str(&frac);
            } else if int_part.is_none() {
                return None;
            }
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            let save = self.pos;
            self.pos += 1;
            let mut exp = String::from("e");
            if let Some(sign @ ('+' | '-')) = self.peek() {
                exp.push(sign);
                self.pos += 1;
            }
            match self.digits(10) {
                Some(d) if int_part.is_some() || text.len() > 1 => {
                    exp.push_str(&d);
                    text.push_str(&exp);
                    is_float = true;
                }
                _ => {
                    self.pos = save;
                    return None;
                }
            }
        }
        if int_part.is_none() && !is_float {
            self.pos = start;
            return None;
        }
        // An imaginary number: complex, kept as written.
        if matches!(self.peek(), Some('j' | 'J')) {
            return None;
        }
        self.end_of_number()?;
        if is_float {
            let f: f64 = text.parse().ok()?;
            return f.is_finite().then_some(Literal::Float(f));
        }
        // "leading zeros in decimal integer literals are not permitted" (0 and 00 are fine).
        if text.len() > 1 && text.starts_with('0') && text.chars().any(|c| c != '0') {
            return None;
        }
        Some(Literal::Int(text.parse().ok()?))
    }

    /// A number must not run into a name or another number (`1abc`, `1.2.3`).
    fn end_of_number(&self) -> Option<()> {
        match self.peek() {
            Some(c) if c.is_alphanumeric() || c == '_' || c == '.' => None,
            _ => Some(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn literals_are_typed_as_python_reads_them() {
        let cases: &[(&str, Value)] = &[
            ("80", json!(80)),
            ("-3", json!(-3)),
            ("+ 3", json!(3)),
            ("-(5)", json!(-5)),
            ("0x1F", json!(31)),
            ("0o17", json!(15)),
            ("0b101", json!(5)),
            ("1_000", json!(1000)),
            ("00", json!(0)),
            ("0.5", json!(0.5)),
            (".5", json!(0.5)),
            ("5.", json!(5.0)),
            ("1e3", json!(1000.0)),
            ("09.5", json!(9.5)),
            ("True", json!(true)),
            ("False", json!(false)),
            ("None", Value::Null),
            ("'quoted'", json!("quoted")),
            ("\"a\" 'b'", json!("ab")),
            (r"'tab\there'", json!("tab\there")),
            (r"r'raw\t'", json!("raw\\t")),
            (r"'\x41\u00e9\101'", json!("Aé\u{41}")),
            (r"'\d'", json!("\\d")),
            ("b'bytes'", json!("bytes")),
            ("'''triple ' quote'''", json!("triple ' quote")),
            ("[1, 'a', [None]]", json!([1, "a", [null]])),
            ("(1, 2)", json!([1, 2])),
            ("(1,)", json!([1])),
            ("()", json!([])),
            ("1, 2", json!([1, 2])),
            ("{'k': [1, 2], 2: True}", json!({"k": [1, 2], "2": true})),
            ("{}", json!({})),
            ("{1, 2, 1}", json!([1, 2])),
            ("set()", json!([])),
            ("...", json!("...")),
            ("5 # a comment", json!(5)),
            ("[1,\n 2]", json!([1, 2])),
        ];
        for (text, want) in cases {
            assert_eq!(&typed(text), want, "{text}");
        }
    }

    #[test]
    fn what_python_refuses_stays_the_text() {
        for text in [
            "true",
            "web01",
            "hello world",
            "hello # not a comment here",
            "1+1",
            "0777",
            "1abc",
            "1.2.3",
            "-True",
            "--1",
            "1j",
            "1+2j",
            "f'x'",
            "'a' b'b'",
            "[1, x]",
            "{'a': 1",
            "'unterminated",
            "set(1)",
            "99999999999999999999999",
            "1e400",
            "a=b",
            "",
        ] {
            assert_eq!(typed(text), Value::String(text.to_string()), "{text}");
        }
    }
}
