//! A template's `#jinja2:` first line -> the Jinja settings it overrides, as ansible-core
//! 2.19 reads it (`TemplateOverrides._extract_template_overrides` in
//! `_internal/_templating/_jinja_bits.py`).
//!
//! The line is `#jinja2:` then `key: value` pairs split on `,`; each value is a Python
//! literal (`True`, `'<<'`, `"\r\n"`). The header line, newline included, is not part of the
//! template: it is never copied into the output. Keys are the fields of `TemplateOverrides`;
//! values are checked as its dataclass validation checks them (bools are bools, delimiters
//! strings, `newline_sequence` one of `\n`, `\r\n`, `\r`, the three start strings differ).

use minijinja::syntax::SyntaxConfig;

use crate::inventory::pyliteral::literal_eval;

/// `s` as Python's `repr` writes a string, as Ansible's messages quote.
fn quoted(s: &str) -> String {
    super::py_repr(&minijinja::Value::from(s))
}

/// The prefix Ansible recognises, at the very start of a template.
pub const PREFIX: &str = "#jinja2:";

/// The settings of one template: Ansible's defaults for the `template` module, with what a
/// header changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub block: (String, String),
    pub variable: (String, String),
    pub comment: (String, String),
    pub line_statement_prefix: Option<String>,
    pub line_comment_prefix: Option<String>,
    pub trim_blocks: bool,
    pub lstrip_blocks: bool,
    pub keep_trailing_newline: bool,
    /// What every newline of the template's own text becomes.
    pub newline_sequence: &'static str,
}

impl Default for Header {
    fn default() -> Header {
        Header {
            block: ("{%".into(), "%}".into()),
            variable: ("{{".into(), "}}".into()),
            comment: ("{#".into(), "#}".into()),
            line_statement_prefix: None,
            line_comment_prefix: None,
            trim_blocks: true,
            lstrip_blocks: false,
            keep_trailing_newline: false,
            newline_sequence: "\n",
        }
    }
}

/// `source` split into its header's settings and the template after the header line, or
/// `None` when it has no header. Errors say what is wrong with the header (it is line 1).
pub fn split(source: &str) -> Result<Option<(Header, &str)>, String> {
    split_over(source, Header::default())
}

/// [`split`], the header's settings applied over `base` (the `template` lookup's options).
pub fn split_over(source: &str, base: Header) -> Result<Option<(Header, &str)>, String> {
    let Some(rest) = source.strip_prefix(PREFIX) else {
        return Ok(None);
    };
    let Some(eol) = rest.find('\n') else {
        return Err("Missing newline after '#jinja2:' override.".to_string());
    };
    let (line, body) = (&rest[..eol], &rest[eol + 1..]);
    let mut header = base;
    for pair in line.split(',') {
        if pair.trim().is_empty() {
            return Err("Empty '#jinja2:' override pair not allowed.".to_string());
        }
        let Some((key, value)) = pair.split_once(':') else {
            return Err(format!(
                "Missing key-value separator `:` in '#jinja2:' override pair {}.",
                quoted(crate::text::prefix(pair, 80))
            ));
        };
        set(&mut header, key.trim(), value)?;
    }
    let (b, v, c) = (&header.block.0, &header.variable.0, &header.comment.0);
    if b == v || v == c || c == b {
        return Err("Block, variable and comment start strings must be different.".into());
    }
    Ok(Some((header, body)))
}

/// What Python's `ast.literal_eval` makes of a header value.
enum Literal {
    Str(String),
    Bool(bool),
    None,
    Other(&'static str),
}

fn literal(key: &str, text: &str) -> Result<Literal, String> {
    let value = literal_eval(text.trim_end()).ok_or_else(|| {
        format!(
            "'#jinja2:' override {key}: {} is not a Python literal (write True or False; quote strings: '<<')",
            quoted(crate::text::prefix(text.trim(), 80))
        )
    })?;
    Ok(match value {
        serde_json::Value::String(s) => Literal::Str(s),
        serde_json::Value::Bool(b) => Literal::Bool(b),
        serde_json::Value::Null => Literal::None,
        serde_json::Value::Number(_) => Literal::Other("int"),
        serde_json::Value::Array(_) => Literal::Other("list"),
        serde_json::Value::Object(_) => Literal::Other("dict"),
    })
}

fn type_name(l: &Literal) -> &'static str {
    match l {
        Literal::Str(_) => "str",
        Literal::Bool(_) => "bool",
        Literal::None => "NoneType",
        Literal::Other(name) => name,
    }
}

fn set(header: &mut Header, key: &str, text: &str) -> Result<(), String> {
    let value = literal(key, text)?;
    let wrong = |want: &str| {
        format!(
            "'#jinja2:' override {key} must be {want}, not {}",
            type_name(&value)
        )
    };
    let string = |v: &Literal| match v {
        Literal::Str(s) => Ok(s.clone()),
        _ => Err(wrong("a str")),
    };
    let optional = |v: &Literal| match v {
        Literal::Str(s) => Ok(Some(s.clone())),
        Literal::None => Ok(None),
        _ => Err(wrong("a str or None")),
    };
    let boolean = |v: &Literal| match v {
        Literal::Bool(b) => Ok(*b),
        _ => Err(wrong("a bool (True or False)")),
    };
    match key {
        "block_start_string" => header.block.0 = string(&value)?,
        "block_end_string" => header.block.1 = string(&value)?,
        "variable_start_string" => header.variable.0 = string(&value)?,
        "variable_end_string" => header.variable.1 = string(&value)?,
        "comment_start_string" => header.comment.0 = string(&value)?,
        "comment_end_string" => header.comment.1 = string(&value)?,
        "line_statement_prefix" => header.line_statement_prefix = optional(&value)?,
        "line_comment_prefix" => header.line_comment_prefix = optional(&value)?,
        "trim_blocks" => header.trim_blocks = boolean(&value)?,
        "lstrip_blocks" => header.lstrip_blocks = boolean(&value)?,
        "keep_trailing_newline" => header.keep_trailing_newline = boolean(&value)?,
        "newline_sequence" => {
            header.newline_sequence = match string(&value)?.as_str() {
                "\n" => "\n",
                "\r\n" => "\r\n",
                "\r" => "\r",
                other => {
                    return Err(format!(
                        "'#jinja2:' override newline_sequence must be '\\n', '\\r\\n' or '\\r', not {}",
                        quoted(other)
                    ));
                }
            }
        }
        _ => {
            return Err(format!(
                "Invalid '#jinja2:' override key {}.",
                quoted(crate::text::prefix(key, 80))
            ));
        }
    }
    Ok(())
}

impl Header {
    /// minijinja's syntax for these settings; an error when minijinja cannot use the
    /// delimiters (e.g. an empty one).
    pub fn syntax(&self) -> Result<SyntaxConfig, String> {
        let mut b = SyntaxConfig::builder();
        b.block_delimiters(self.block.0.clone(), self.block.1.clone())
            .variable_delimiters(self.variable.0.clone(), self.variable.1.clone())
            .comment_delimiters(self.comment.0.clone(), self.comment.1.clone())
            .trim_blocks(self.trim_blocks)
            .lstrip_blocks(self.lstrip_blocks)
            .keep_trailing_newline(self.keep_trailing_newline);
        if let Some(p) = &self.line_statement_prefix {
            b.line_statement_prefix(p.clone());
        }
        if let Some(p) = &self.line_comment_prefix {
            b.line_comment_prefix(p.clone());
        }
        b.build()
            .map_err(|e| format!("'#jinja2:' override: these delimiters cannot be used: {e}"))
    }

    /// `source` with its newlines made `newline_sequence`, as Jinja's lexer turns every
    /// newline (`\r\n`, `\r`, `\n`) of the template's text into it. Only needed when the
    /// header sets a sequence other than `\n`.
    pub fn normalize_newlines(&self, source: &str) -> String {
        let unix = source.replace("\r\n", "\n").replace('\r', "\n");
        if self.newline_sequence == "\n" {
            unix
        } else {
            unix.replace('\n', self.newline_sequence)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_parsed_as_ansible_does() {
        let (h, body) = split("#jinja2: trim_blocks: False, variable_start_string: '[['\nx")
            .expect("valid")
            .expect("a header");
        assert_eq!(body, "x");
        assert!(!h.trim_blocks);
        assert_eq!(h.variable.0, "[[");
        assert_eq!(split("# jinja2: x\n"), Ok(None));
        assert_eq!(split("plain {{ x }}\n"), Ok(None));
        let (h, _) = split("#jinja2:newline_sequence:'\\r\\n'\n")
            .expect("valid")
            .expect("a header");
        assert_eq!(h.newline_sequence, "\r\n");
    }

    #[test]
    fn bad_headers_are_refused() {
        let err = |s: &str| split(s).expect_err(s);
        assert!(err("#jinja2: trim_blocks: False").contains("Missing newline"));
        assert!(err("#jinja2: trim_blocks: False,\n").contains("Empty"));
        assert!(err("#jinja2: trim_blocks\n").contains("separator"));
        assert!(err("#jinja2: trim: True\n").contains("Invalid '#jinja2:' override key 'trim'"));
        assert!(err("#jinja2: trim_blocks: yes\n").contains("not a Python literal"));
        assert!(err("#jinja2: trim_blocks: 'no'\n").contains("must be a bool"));
        assert!(err("#jinja2: newline_sequence: 'x'\n").contains("newline_sequence"));
        assert!(err("#jinja2: variable_start_string: '{%'\n").contains("must be different"));
    }

    #[test]
    fn newlines_become_the_sequence() {
        let h = Header {
            newline_sequence: "\r\n",
            ..Header::default()
        };
        assert_eq!(h.normalize_newlines("a\nb\r\nc\rd"), "a\r\nb\r\nc\r\nd");
    }
}
