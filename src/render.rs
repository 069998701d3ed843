//! (template, variables) -> rendered text, with Ansible's template dialect.
//!
//! In: Jinja2 templates (files under a templates directory, or inline strings such as a
//! `dest:`), and a host's variables as a minijinja [`Value`] map. Out: the text Ansible's
//! `template` module (ansible-core 2.19) would write, byte for byte, or a [`RenderError`]
//! that names the template, the line, and shows the offending source line.
//!
//! What makes this Ansible's dialect rather than plain minijinja:
//! - `trim_blocks = true`, `lstrip_blocks = false`, trailing newlines restored to the
//!   source's count (Ansible's `preserve_trailing_newlines`); undefined
//!   variables are errors (Ansible's strict undefined).
//! - `{{ value }}` prints like Python's `str()`: `True`, `['a', 1]`, `{'a': 1}`, `1e-05`;
//!   a bare `None` prints as the empty string (2.19 behaviour).
//! - Ansible's builtin filters ([`filters`]), its Jinja tests ([`jinja_tests`]) and the
//!   Python methods templates call on strings, lists and dicts ([`methods`], over
//!   minijinja-contrib's pycompat); the `ansible_managed` global (`Ansible managed` unless
//!   set).
//! - Variables are templated recursively and lazily ([`Renderer::resolve_vars`]).
//! - A `#jinja2:` first line sets that template's Jinja settings and is not output
//!   ([`header`]); a header's `newline_sequence` applies to the template's own text only.
//! - `lookup`/`query`/`q` run Ansible's lookups against the repository ([`lookups`]).
//!
//! Known differences from Ansible (no fixture covers them; see also [`filters`], [`yaml`]):
//! - minijinja builtins that deploy does not replace print values the minijinja way; `{{ }}`,
//!   `~`, `string`, `join`, `lower`, `upper`, `trim`, `indent` and `format` use Python's
//!   `str()`.
//! - `foo.bar | default(x)` with `foo` itself undefined is an error here (minijinja's strict
//!   mode); Ansible returns `x`.
//! - The `template_*` variables the `template` module adds (`template_host`,
//!   `template_path`, ...) are not provided.
//! - A variable that itself templates to a value is resolved as a whole when first used;
//!   a container's elements are all resolved then, not one by one.
//! - Lookups: `errors='warn'` shows no warning (it behaves as `ignore`); `fileglob` returns
//!   its matches sorted (Python's `glob` gives directory order); `vars` of a missing variable
//!   without `default` fails at once (Ansible returns an undefined value that fails when
//!   used, so `| default(...)` after it works there); paths outside the repository (absolute,
//!   `~`, `..`, links leading out) are refused where Ansible reads them; `pipe` has no timeout,
//!   as in Ansible, and its output is capped at 64 MiB.
//! - A `#jinja2:` header in a template that is `include`d is not read (as in Ansible, whose
//!   overlay applies only to the template rendered), so it is output as text.

//! - `union`, `intersect`, `difference` and `symmetric_difference` keep first-appearance
//!   order; Ansible lists a Python `set`, whose order for strings changes from run to run.
//! - Regular expressions (`regex_*`, `match`, `search`) are the `regex` crate's: no
//!   look-around or backreferences (refused with an error saying so); `\d`, `\w` match
//!   Unicode as Python's do.
//! - Refused, with an error that says so: methods that change a value in place (`append`,
//!   `update`, `pop`, ...; ansible-core 2.19 lets a template change a variable), the tests
//!   of task results (`failed`, `changed`, ...), `password_hash` without a salt,
//!   `to_datetime`, `strftime`, `vault`/`unvault`, `version_type='pep440'`.
//! - `from_json` rejects `NaN`/`Infinity`, which Python's `json.loads` accepts.
//! - Tuples (`zip`, `splitext`, `dict.items()`) print as lists, as ansible-core 2.19 prints
//!   them; `type_debug` still says `tuple`.

mod filters;
mod header;
mod jinja_tests;
mod lookups;
mod methods;
mod pyfmt;
mod yaml;

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use annotate_snippets::renderer::DecorStyle;
use annotate_snippets::{AnnotationKind, Level, Snippet};
use minijinja::value::{Enumerator, Object, ObjectRepr, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior, Value};

pub use lookups::Lookups;
pub use pyfmt::{py_repr, py_str};

/// Ansible's default `ansible_managed` string (`DEFAULT_MANAGED_STR`).
pub const DEFAULT_ANSIBLE_MANAGED: &str = "Ansible managed";

/// How deep variables may refer to templated variables before giving up (Ansible stops
/// at a loop; this also bounds long non-looping chains).
const MAX_VAR_DEPTH: usize = 64;

/// A template failed to load, parse or render.
///
/// `Display` gives the message, then (when the source is known) an excerpt with the
/// offending line marked. The caller adds the host.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", self.report())]
pub struct RenderError {
    /// The template file name, or the `origin` given to [`Renderer::render_str`], or
    /// `variable 'name'` for a variable's own template.
    pub template: String,
    /// 1-based line in that template, when known.
    pub line: Option<usize>,
    /// What went wrong, e.g. "undefined value: `litellm_dir` is undefined".
    pub message: String,
    /// The template's source and the offending byte range, for the excerpt (boxed: errors
    /// travel in `Result`s and should stay small).
    excerpt: Option<Box<Excerpt>>,
    /// Further explanation (e.g. where a missing template was looked for).
    pub hint: Option<String>,
}

#[derive(Debug, Clone)]
struct Excerpt {
    source: String,
    range: Option<std::ops::Range<usize>>,
}

impl RenderError {
    fn plain(template: &str, message: String) -> RenderError {
        RenderError {
            template: template.to_string(),
            line: None,
            message,
            excerpt: None,
            hint: None,
        }
    }

    fn from_minijinja(template: &str, source: Option<&str>, err: &Error) -> RenderError {
        let mut message = match err.detail() {
            Some(detail) => format!("{}: {detail}", err.kind()),
            None => err.kind().to_string(),
        };
        // Nested failures (e.g. an error inside a filter) keep their cause.
        let mut cause = std::error::Error::source(err);
        while let Some(c) = cause {
            message.push_str(&format!(": {c}"));
            cause = c.source();
        }
        let source_text = err.template_source().or(source).map(|s| s.to_string());
        let range = err.range();
        if message.ends_with(filters::MANDATORY_MSG)
            && let (Some(src), Some(r)) = (&source_text, &range)
            && let Some(name) = mandatory_subject(src, r.start)
        {
            // Ansible: "Mandatory variable 'name' not defined."
            message = message.replace(
                filters::MANDATORY_MSG,
                &format!("Mandatory variable '{name}' not defined."),
            );
        }
        RenderError {
            template: err.name().unwrap_or(template).to_string(),
            line: err.line(),
            message,
            excerpt: source_text.map(|source| Box::new(Excerpt { source, range })),
            hint: None,
        }
    }

    /// The full report: message, excerpt with a marker, hint.
    pub fn report(&self) -> String {
        let location = match self.line {
            Some(line) => format!("{}:{line}", self.template),
            None => self.template.clone(),
        };
        let title = format!("{} ({location})", self.message);
        let mut text = match (&self.excerpt, self.line) {
            (Some(ex), Some(line)) => {
                let src = &ex.source;
                // minijinja's spans are bytes and may end inside a character (its lexer
                // marks one byte past an unexpected `€`): widen them to whole characters.
                let range = match ex.range.clone() {
                    Some(r) if r.end <= src.len() => crate::text::char_range(src, r),
                    _ => line_range(src, line),
                };
                let report = &[Level::ERROR.primary_title(&title).element(
                    Snippet::source(src.as_str())
                        .line_start(1)
                        .path(self.template.as_str())
                        .annotation(AnnotationKind::Primary.span(range)),
                )];
                annotate_snippets::Renderer::plain()
                    .decor_style(DecorStyle::Ascii)
                    .render(report)
                    .to_string()
            }
            _ => format!("error: {title}"),
        };
        if let Some(hint) = &self.hint {
            text.push_str(&format!("\nhint: {hint}"));
        }
        text
    }
}

/// The variable a failing `x | mandatory` filtered: the expression just before the `|`
/// that precedes `filter_start` (the span minijinja reports covers the filter only).
fn mandatory_subject(src: &str, filter_start: usize) -> Option<&str> {
    let before = src
        .get(..filter_start)?
        .trim_end()
        .strip_suffix('|')?
        .trim_end();
    let start = before
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_alphanumeric() || "_.[]'\"".contains(*c))
        .last()
        .map(|(i, _)| i)?;
    Some(&before[start..])
}

/// Ansible's `_post_render_mutation`: when the output ends in fewer newlines than the
/// template source, add the missing ones. (Not the same as keeping the trailing newline:
/// a template ending in `{{ x | to_nice_yaml }}\n` gets no blank line.)
fn preserve_trailing_newlines(source: &str, mut output: String, newline: &str) -> String {
    let count = |s: &str| s.len() - s.trim_end_matches('\n').len();
    let (want, have) = (count(source), count(&output));
    if want > have {
        output.push_str(&newline.repeat(want - have));
    }
    output
}

/// Byte range of 1-based `line` in `src` (without its newline).
fn line_range(src: &str, line: usize) -> std::ops::Range<usize> {
    let mut start = 0;
    for (i, l) in src.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            let trimmed = l.trim_end_matches(['\n', '\r']).len();
            return start..start + trimmed;
        }
        start += l.len();
    }
    src.len()..src.len()
}

/// Most chained operators (`-`, `not`, `+`, `~`, `.`, `[`, `(`, `|`, `and`, `if`...) one tag
/// or expression may hold. minijinja bounds nested brackets and blocks, but parses, compiles
/// and drops a chain like `- - - 1`, `1 + 1 + ...` or `a.b.c...` recursively without a limit,
/// and some 8000 of them overflow a 2 MiB thread stack (deploy renders on such threads). No
/// template needs a thousand in one tag.
const MAX_TAG_OPERATORS: usize = 1000;

/// Where the first tag of `source` (or, for an `expression`, the whole text) holding more
/// than [`MAX_TAG_OPERATORS`] chained operators starts, as a byte offset. Strings and
/// comments are skipped; the count is a cheap over-estimate of minijinja's nesting.
fn overlong_tag(source: &str, expression: bool) -> Option<usize> {
    let bytes = source.as_bytes();
    let mut i = 0;
    let mut tag: Option<usize> = expression.then_some(0);
    let mut count = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        let Some(start) = tag else {
            if rest.starts_with(b"{#") {
                i = source[i..].find("#}").map_or(bytes.len(), |e| i + e + 2);
            } else if rest.starts_with(b"{{") || rest.starts_with(b"{%") {
                tag = Some(i);
                count = 0;
                i += 2;
            } else {
                i += 1;
            }
            continue;
        };
        match bytes[i] {
            q @ (b'\'' | b'"') => {
                // Skip the string literal, escapes included.
                i += 1;
                while i < bytes.len() && bytes[i] != q {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                continue;
            }
            b'}' | b'%' if !expression && rest.get(1) == Some(&b'}') => {
                tag = None;
                i += 2;
                continue;
            }
            b'-' | b'+' | b'*' | b'/' | b'%' | b'~' | b'|' | b'.' | b'[' | b'(' | b'=' | b'!'
            | b'<' | b'>' => count += 1,
            c if c.is_ascii_alphabetic() => {
                let end = rest
                    .iter()
                    .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
                    .unwrap_or(rest.len());
                if matches!(
                    &rest[..end],
                    b"not" | b"and" | b"or" | b"if" | b"else" | b"is" | b"in"
                ) {
                    count += 1;
                }
                i += end;
                if count > MAX_TAG_OPERATORS {
                    return Some(start);
                }
                continue;
            }
            _ => {}
        }
        if count > MAX_TAG_OPERATORS {
            return Some(start);
        }
        i += 1;
    }
    None
}

impl RenderError {
    /// `source` (named `template`) has a tag at byte `at` too long for minijinja to parse
    /// safely.
    fn overlong(template: &str, source: &str, at: usize) -> RenderError {
        let line = source.get(..at).map_or(0, |b| b.matches('\n').count()) + 1;
        RenderError {
            template: template.to_string(),
            line: Some(line),
            message: format!(
                "syntax error: this tag chains more than {MAX_TAG_OPERATORS} operators"
            ),
            excerpt: Some(Box::new(Excerpt {
                source: source.to_string(),
                range: Some(at..at + 2),
            })),
            hint: Some("split the expression with {% set %}".into()),
        }
    }
}

/// Renders templates the way Ansible's `template` module does. Cheap to share between
/// threads (`Send + Sync`); templates are loaded once and cached.
pub struct Renderer {
    env: Arc<Environment<'static>>,
    shared: Arc<Shared>,
    /// Per template file: its `#jinja2:` header and the environment made for it, or `None`
    /// when it has none (it renders in `env`).
    headed: Mutex<HashMap<String, Option<Arc<Headed>>>>,
}

/// What every environment of a renderer is built from.
pub(crate) struct Shared {
    templates_dir: PathBuf,
    ansible_managed: String,
    lookups: Lookups,
}

/// A template with a `#jinja2:` header: its settings and the environment that applies them
/// (includes from it use them too, as Ansible's overlay environment does).
struct Headed {
    env: Arc<Environment<'static>>,
    header: header::Header,
    /// The file as written, header line included (for excerpts and the newline count).
    source: String,
    /// Bytes of the header line, newline included.
    header_len: usize,
}

impl fmt::Debug for Renderer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Renderer")
            .field("templates_dir", &self.shared.templates_dir)
            .field("lookups", &self.shared.lookups)
            .finish_non_exhaustive()
    }
}

/// The environment templates render in, with `syntax` (Ansible's settings, or a header's).
/// `top` is a template given by source (a header template without its header line), served
/// before the loader is asked.
fn build_env(
    shared: &Arc<Shared>,
    syntax: minijinja::syntax::SyntaxConfig,
    top: Option<(String, String)>,
) -> Environment<'static> {
    let mut env = Environment::new();
    let load = minijinja::path_loader(&shared.templates_dir);
    env.set_loader(move |name| {
        let source = match &top {
            Some((top_name, body)) if top_name == name => Some(body.as_str().into()),
            _ => load(name)?,
        };
        let text = source.as_ref().map_or("", |s| s.source());
        if let Some(at) = overlong_tag(text, false) {
            // The report, with its excerpt, replaces the render's error (as a variable's does).
            let err = RenderError::overlong(name, text, at);
            VAR_FAILURE.with(|f| {
                f.borrow_mut().get_or_insert(err);
            });
            return Err(Error::new(ErrorKind::SyntaxError, "template refused"));
        }
        Ok(source)
    });
    // Loaded once and kept, as the API promises; a deploy run does not edit its templates.
    env.set_auto_reload(false);
    env.set_syntax(syntax);
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Config files are not HTML: never escape, whatever the file extension.
    env.set_auto_escape_callback(|_| AutoEscape::None);
    // Debug info makes undefined errors name the expression ("`x` is undefined").
    env.set_debug(true);
    env.set_formatter(|out, state, value| {
        match value.kind() {
            // Ansible 2.19 writes nothing for a bare None.
            ValueKind::None => Ok(()),
            ValueKind::String | ValueKind::Undefined | ValueKind::Invalid => {
                minijinja::escape_formatter(out, state, value)
            }
            _ => out.write_str(&py_str(value)).map_err(Error::from),
        }
    });
    env.set_unknown_method_callback(methods::unknown_method_callback);
    filters::register(&mut env);
    lookups::register(&mut env, shared);
    jinja_tests::register(&mut env);
    env.add_global("ansible_managed", shared.ansible_managed.clone());
    env
}

/// Ansible's settings for the `template` module (`trim_blocks` on; Jinja drops the source's
/// last newline and `preserve_trailing_newlines` adds back what the output lacks).
fn default_syntax() -> minijinja::syntax::SyntaxConfig {
    header::Header::default().syntax().unwrap_or_default()
}

impl Renderer {
    /// Templates are loaded from `templates_dir` by relative name, on first use, and cached.
    /// Lookups read files under `templates_dir` itself (see [`Renderer::with_lookups`]).
    pub fn new(templates_dir: &Path) -> Renderer {
        Renderer::build(
            templates_dir,
            DEFAULT_ANSIBLE_MANAGED,
            Lookups::new(templates_dir),
        )
    }

    /// Like [`Renderer::new`], with the `ansible_managed` global set to `text` (a var of the
    /// same name passed to a render still wins).
    pub fn with_ansible_managed(templates_dir: &Path, text: &str) -> Renderer {
        Renderer::build(templates_dir, text, Lookups::new(templates_dir))
    }

    /// Like [`Renderer::new`], with lookups reading the repository `lookups` names.
    pub fn with_lookups(templates_dir: &Path, lookups: Lookups) -> Renderer {
        Renderer::build(templates_dir, DEFAULT_ANSIBLE_MANAGED, lookups)
    }

    fn build(templates_dir: &Path, ansible_managed: &str, lookups: Lookups) -> Renderer {
        let shared = Arc::new(Shared {
            templates_dir: templates_dir.to_path_buf(),
            ansible_managed: ansible_managed.to_string(),
            lookups,
        });
        Renderer {
            env: Arc::new(build_env(&shared, default_syntax(), None)),
            shared,
            headed: Mutex::new(HashMap::new()),
        }
    }

    /// The template file `name`'s header, when it has one (read on first use and kept).
    fn headed(&self, name: &str) -> Result<Option<Arc<Headed>>, RenderError> {
        if let Ok(map) = self.headed.lock()
            && let Some(hit) = map.get(name)
        {
            return Ok(hit.clone());
        }
        let load = minijinja::path_loader(&self.shared.templates_dir);
        // A template that is missing or unreadable is reported by the render that follows.
        let source = match load(name) {
            Ok(Some(s)) => s.source().to_string(),
            _ => return Ok(None),
        };
        let headed = match header::split(&source) {
            Ok(None) => None,
            Ok(Some((header, body))) => {
                let header_len = source.len() - body.len();
                let syntax = header
                    .syntax()
                    .map_err(|msg| header_error(name, &source, msg))?;
                let body = if header.newline_sequence == "\n" {
                    body.to_string()
                } else {
                    header.normalize_newlines(body)
                };
                let env = build_env(&self.shared, syntax, Some((name.to_string(), body)));
                Some(Arc::new(Headed {
                    env: Arc::new(env),
                    header,
                    source: source.clone(),
                    header_len,
                }))
            }
            Err(msg) => return Err(header_error(name, &source, msg)),
        };
        if let Ok(mut map) = self.headed.lock() {
            map.insert(name.to_string(), headed.clone());
        }
        Ok(headed)
    }

    /// The line ending the template file `name`'s `#jinja2:` header asks for, when it sets
    /// `newline_sequence` (its output then already has them; an error is left to the render).
    pub fn header_newline(&self, name: &str) -> Option<&'static str> {
        match self.headed(name) {
            Ok(Some(h)) if h.header.newline_sequence != "\n" => Some(h.header.newline_sequence),
            _ => None,
        }
    }

    /// Render the template file `name` with `vars` (a minijinja Value made from a map).
    pub fn render_file(&self, name: &str, vars: &Value) -> Result<String, RenderError> {
        // Loading runs inside: a template the loader refuses reports through VAR_FAILURE.
        with_var_failures(vars, || {
            let headed = self.headed(name)?;
            let env = headed.as_ref().map_or(&self.env, |h| &h.env);
            let tmpl = env.get_template(name).map_err(|e| {
                if e.kind() == ErrorKind::TemplateNotFound {
                    let mut err = RenderError::plain(name, format!("template not found: {name}"));
                    err.hint = Some(format!(
                        "looked for {}; template names are relative to the templates directory {}",
                        self.shared.templates_dir.join(name).display(),
                        self.shared.templates_dir.display()
                    ));
                    err
                } else {
                    RenderError::from_minijinja(name, None, &e)
                }
            });
            let tmpl = match (tmpl, &headed) {
                (Ok(t), _) => t,
                (Err(e), Some(h)) => return Err(h.shift(name, e)),
                (Err(e), None) => return Err(e),
            };
            match &headed {
                None => tmpl
                    .render(vars)
                    .map(|out| preserve_trailing_newlines(tmpl.source(), out, "\n"))
                    .map_err(|e| RenderError::from_minijinja(name, Some(tmpl.source()), &e)),
                Some(h) => tmpl
                    .render(vars)
                    .map(|out| {
                        preserve_trailing_newlines(&h.source, out, h.header.newline_sequence)
                    })
                    .map_err(|e| {
                        h.shift(
                            name,
                            RenderError::from_minijinja(name, Some(tmpl.source()), &e),
                        )
                    }),
            }
        })
    }

    /// Render an inline template string (used for `dest:` and handler commands); `origin`
    /// names where it came from for errors, e.g. "hosts/deploy.yml: dest of
    /// litellm.config.yaml.j2".
    pub fn render_str(
        &self,
        origin: &str,
        source: &str,
        vars: &Value,
    ) -> Result<String, RenderError> {
        if let Some(at) = overlong_tag(source, false) {
            return Err(RenderError::overlong(origin, source, at));
        }
        with_var_failures(vars, || {
            let tmpl = self
                .env
                .template_from_named_str(origin, source)
                .map_err(|e| RenderError::from_minijinja(origin, Some(source), &e))?;
            tmpl.render(vars)
                .map(|out| preserve_trailing_newlines(source, out, "\n"))
                .map_err(|e| RenderError::from_minijinja(origin, Some(source), &e))
        })
    }

    /// Evaluate one Jinja expression (no `{{ }}`), e.g. a check's `that:`, with `vars`, in
    /// the same environment as templates (Ansible's filters and tests, strict undefined).
    /// `origin` names where it came from for errors. An expression whose value is undefined
    /// is an error.
    pub fn eval_expression(
        &self,
        origin: &str,
        expr: &str,
        vars: &Value,
    ) -> Result<Value, RenderError> {
        if let Some(at) = overlong_tag(expr, true) {
            return Err(RenderError::overlong(origin, expr, at));
        }
        with_var_failures(vars, || {
            let compiled = self
                .env
                .compile_expression(expr)
                .map_err(|e| RenderError::from_minijinja(origin, Some(expr), &e))?;
            let value = compiled
                .eval(vars)
                .map_err(|e| RenderError::from_minijinja(origin, Some(expr), &e))?;
            if value.is_undefined() {
                return Err(RenderError::plain(
                    origin,
                    format!("undefined value: `{}` is undefined", expr.trim()),
                ));
            }
            Ok(value)
        })
    }

    /// Wrap a host's variables (a map) so that string values containing `{{` / `{%` are
    /// templated when first looked up, against the same variables, as Ansible does.
    ///
    /// - A value that is exactly one `{{ expr }}` becomes the expression's native value
    ///   (`"{{ 8000 }}"` -> int 8000, `"{{ [1, 2] }}"` -> a list, `"{{ '123' }}"` stays
    ///   the string `123`), like ansible-core 2.19; anything else renders to a string.
    /// - Strings inside lists and dicts are templated too (the whole top-level value is
    ///   resolved on its first use). Results are not templated again.
    /// - A variable that refers to itself, directly or through others, or a chain deeper
    ///   than 64, is an error naming the variables; so is any failure inside a variable's
    ///   template, reported for the variable (`variable 'name'`) with its own excerpt.
    /// - Unused variables are never templated, so one that could not be is harmless.
    ///
    /// Pass the returned value to [`Renderer::render_file`] / [`Renderer::render_str`]. It
    /// caches what it resolved; make one per host. A value in `vars` that is itself a
    /// resolved-vars value (e.g. another host's, under `hostvars`) is left alone.
    /// Errors when `vars` is not a map.
    pub fn resolve_vars(&self, vars: &Value) -> Result<Value, RenderError> {
        if vars.kind() != ValueKind::Map {
            return Err(RenderError::plain(
                "variables",
                format!("variables must be a map, not {}", vars.kind()),
            ));
        }
        let mut raw = indexmap::IndexMap::new();
        for key in vars
            .try_iter()
            .map_err(|e| RenderError::from_minijinja("variables", None, &e))?
        {
            let value = vars
                .get_item(&key)
                .map_err(|e| RenderError::from_minijinja("variables", None, &e))?;
            raw.insert(py_str(&key), value);
        }
        Ok(Value::from_object(LazyVars {
            env: Arc::clone(&self.env),
            raw,
            cache: Mutex::new(HashMap::new()),
        }))
    }
}

thread_local! {
    /// Variables being resolved on this thread, innermost last (cycle detection).
    static RESOLVING: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    /// The first variable failure met by the render running on this thread (or a template
    /// the loader refused): minijinja's lookups cannot fail with our errors, so the failure
    /// travels here and replaces the render's error.
    static VAR_FAILURE: RefCell<Option<RenderError>> = const { RefCell::new(None) };
    /// The variables of the renders running on this thread, innermost last (for lookups).
    static ROOT_VARS: RefCell<Vec<Value>> = const { RefCell::new(Vec::new()) };
}

/// Run one render of `vars`: its variables' failures replace its error, and lookups see
/// `vars` as the render's variables.
fn with_var_failures<T>(
    vars: &Value,
    render: impl FnOnce() -> Result<T, RenderError>,
) -> Result<T, RenderError> {
    VAR_FAILURE.with(|f| f.borrow_mut().take());
    ROOT_VARS.with(|r| {
        let mut r = r.borrow_mut();
        if r.is_empty() {
            LOOKUP_RENDERS.with(|n| n.set(0));
        }
        r.push(vars.clone());
    });
    let result = render();
    ROOT_VARS.with(|r| r.borrow_mut().pop());
    match VAR_FAILURE.with(|f| f.borrow_mut().take()) {
        Some(mut var_err) => {
            if let Err(outer) = &result
                && outer.template != var_err.template
            {
                var_err.message = format!(
                    "{} (used by {}{})",
                    var_err.message,
                    outer.template,
                    outer.line.map(|l| format!(":{l}")).unwrap_or_default()
                );
            }
            Err(var_err)
        }
        None => result,
    }
}

/// The variables of the render running on this thread (what Ansible passes lookups as
/// `variables`), when one is running.
fn root_vars() -> Option<Value> {
    ROOT_VARS.with(|r| r.borrow().last().cloned())
}

/// A bad `#jinja2:` header of `name`: an error on line 1.
fn header_error(name: &str, source: &str, msg: String) -> RenderError {
    RenderError {
        template: name.to_string(),
        line: Some(1),
        message: format!("syntax error: {msg}"),
        excerpt: Some(Box::new(Excerpt {
            source: source.to_string(),
            range: Some(line_range(source, 1)),
        })),
        hint: Some(
            "the first line `#jinja2: key: value, ...` takes Python literals for Jinja's settings, e.g. `#jinja2: trim_blocks: False, variable_start_string: '[['`".into(),
        ),
    }
}

impl Headed {
    /// `err` (about the template without its header line) as a place in the file: one line
    /// further down, its excerpt from the file as written.
    fn shift(&self, name: &str, mut err: RenderError) -> RenderError {
        if err.template != name || self.header_len == 0 {
            return err;
        }
        err.line = err.line.map(|l| l + 1);
        if let Some(ex) = &mut err.excerpt {
            ex.range = ex
                .range
                .clone()
                .map(|r| r.start + self.header_len..r.end + self.header_len);
            ex.source = self.source.clone();
        }
        err
    }
}

thread_local! {
    /// Nesting of `template` lookups on this thread.
    static LOOKUP_DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// `template` lookups rendered by the current top-level render on this thread.
    static LOOKUP_RENDERS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Most `template` lookups one render may make (nested ones included): a template that
/// looks itself up twice would otherwise render 2^16 times before the depth limit.
const MAX_LOOKUP_RENDERS: usize = 1000;

/// The `template` lookup's render of `source` (found at `origin`, under the repository) with
/// `vars`: `base` (the lookup's options) with the template's own header over them; a template
/// that is one `{{ expression }}` gives the expression's value (Ansible's native result).
fn render_lookup_template(
    shared: &Arc<Shared>,
    origin: &str,
    source: &str,
    base: &header::Header,
    vars: &Value,
    max_depth: usize,
) -> Result<Value, RenderError> {
    let renders = LOOKUP_RENDERS.with(|n| {
        n.set(n.get() + 1);
        n.get()
    });
    if renders > MAX_LOOKUP_RENDERS {
        return Err(RenderError::plain(
            origin,
            format!("more than {MAX_LOOKUP_RENDERS} template lookups in one render"),
        ));
    }
    let depth = LOOKUP_DEPTH.with(|d| d.get());
    if depth >= max_depth {
        return Err(RenderError::plain(
            origin,
            format!(
                "template lookups nested more than {max_depth} deep (does a template look itself up?)"
            ),
        ));
    }
    let (settings, body, header_len) = match header::split_over(source, base.clone()) {
        Ok(Some((h, body))) => {
            let len = source.len() - body.len();
            (h, body, len)
        }
        Ok(None) => (base.clone(), source, 0),
        Err(msg) => return Err(header_error(origin, source, msg)),
    };
    let syntax = settings
        .syntax()
        .map_err(|msg| header_error(origin, source, msg))?;
    let body = if settings.newline_sequence == "\n" {
        body.to_string()
    } else {
        settings.normalize_newlines(body)
    };
    let headed = Headed {
        env: Arc::new(build_env(
            shared,
            syntax,
            Some((origin.to_string(), body.clone())),
        )),
        header: settings,
        source: source.to_string(),
        header_len,
    };
    if let Some(at) = overlong_tag(&body, false) {
        return Err(headed.shift(origin, RenderError::overlong(origin, &body, at)));
    }
    LOOKUP_DEPTH.with(|d| d.set(depth + 1));
    let result = (|| {
        if headed.header == header::Header::default()
            && let Some(expr) = single_expression(&body)
        {
            let compiled = headed
                .env
                .compile_expression(expr)
                .map_err(|e| RenderError::from_minijinja(origin, Some(&body), &e))?;
            return compiled
                .eval(vars)
                .map_err(|e| RenderError::from_minijinja(origin, Some(&body), &e));
        }
        let tmpl = headed
            .env
            .get_template(origin)
            .map_err(|e| RenderError::from_minijinja(origin, Some(&body), &e))?;
        tmpl.render(vars)
            .map(|out| {
                Value::from(preserve_trailing_newlines(
                    source,
                    out,
                    headed.header.newline_sequence,
                ))
            })
            .map_err(|e| RenderError::from_minijinja(origin, Some(&body), &e))
    })();
    LOOKUP_DEPTH.with(|d| d.set(depth));
    result.map_err(|e| headed.shift(origin, e))
}

/// A host's variables, templated on first lookup (see [`Renderer::resolve_vars`]).
struct LazyVars {
    env: Arc<Environment<'static>>,
    raw: indexmap::IndexMap<String, Value>,
    cache: Mutex<HashMap<String, Result<Value, RenderError>>>,
}

impl fmt::Debug for LazyVars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.raw.iter()).finish()
    }
}

impl Object for LazyVars {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let name = key.as_str()?;
        let raw = self.raw.get(name)?;
        if let Some(hit) = self.cache.lock().ok()?.get(name).cloned() {
            return Some(self.deliver(hit));
        }
        let result = self.resolve_named(name, raw);
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(name.to_string(), result.clone());
        }
        Some(self.deliver(result))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let keys: Vec<Value> = self.raw.keys().map(|k| Value::from(k.as_str())).collect();
        Enumerator::Values(keys)
    }
}

impl LazyVars {
    /// Hand a resolved value to minijinja; a failure becomes an invalid value (so using it
    /// fails) and is remembered for the render to report.
    fn deliver(&self, result: Result<Value, RenderError>) -> Value {
        match result {
            Ok(v) => v,
            Err(e) => {
                let msg = e.message.clone();
                VAR_FAILURE.with(|f| {
                    let mut f = f.borrow_mut();
                    if f.is_none() {
                        *f = Some(e);
                    }
                });
                Value::from(Error::new(ErrorKind::InvalidOperation, msg))
            }
        }
    }

    fn resolve_named(self: &Arc<Self>, name: &str, raw: &Value) -> Result<Value, RenderError> {
        let chain = RESOLVING.with(|r| r.borrow().clone());
        if chain.iter().any(|n| n == name) || chain.len() >= MAX_VAR_DEPTH {
            let mut path = chain.clone();
            path.push(name.to_string());
            return Err(RenderError::plain(
                &format!("variable '{name}'"),
                format!("recursive loop detected in template: {}", path.join(" -> ")),
            ));
        }
        RESOLVING.with(|r| r.borrow_mut().push(name.to_string()));
        let result = self.resolve_value(name, raw);
        RESOLVING.with(|r| r.borrow_mut().pop());
        result
    }

    fn resolve_value(self: &Arc<Self>, name: &str, v: &Value) -> Result<Value, RenderError> {
        Ok(self.templated(name, v)?.unwrap_or_else(|| v.clone()))
    }

    /// `v` with its template strings rendered (inside lists and dicts too, not inside
    /// another host's variables), or `None` when it has none: a list or dict with nothing to
    /// template is shared as it is, not rebuilt for every host that reads it (`groups` and
    /// `hostvars` hold the whole inventory). One walk, which rebuilds only what changed.
    fn templated(self: &Arc<Self>, name: &str, v: &Value) -> Result<Option<Value>, RenderError> {
        let walk_error = |e: minijinja::Error| RenderError::from_minijinja(name, None, &e);
        match v.kind() {
            ValueKind::String => {
                let s = v.as_str().unwrap_or_default();
                if s.contains("{{") || s.contains("{%") || s.contains("{#") {
                    self.template_string(name, s).map(Some)
                } else {
                    Ok(None)
                }
            }
            ValueKind::Seq => {
                let mut items: Vec<Value> = v.try_iter().map_err(walk_error)?.collect();
                let mut changed = false;
                for item in &mut items {
                    if let Some(new) = self.templated(name, item)? {
                        *item = new;
                        changed = true;
                    }
                }
                Ok(changed.then(|| Value::from(items)))
            }
            ValueKind::Map if v.downcast_object_ref::<LazyVars>().is_none() => {
                let mut pairs = indexmap::IndexMap::new();
                let mut changed = false;
                for key in v.try_iter().map_err(walk_error)? {
                    let item = v.get_item(&key).map_err(walk_error)?;
                    let new = self.templated(name, &item)?;
                    changed |= new.is_some();
                    pairs.insert(key, new.unwrap_or(item));
                }
                Ok(changed.then(|| Value::from_pairs(pairs)))
            }
            _ => Ok(None),
        }
    }

    /// Template one string value of variable `name`.
    fn template_string(self: &Arc<Self>, name: &str, s: &str) -> Result<Value, RenderError> {
        let origin = format!("variable '{name}'");
        let ctx = Value::from_dyn_object(Arc::clone(self));
        if let Some(at) = overlong_tag(s, false) {
            return Err(RenderError::overlong(&origin, s, at));
        }
        if let Some(expr) = single_expression(s) {
            let compiled = self
                .env
                .compile_expression(expr)
                .map_err(|e| RenderError::from_minijinja(&origin, Some(s), &e))?;
            let value = compiled
                .eval(ctx)
                .map_err(|e| RenderError::from_minijinja(&origin, Some(s), &e))?;
            if value.is_undefined() {
                let mut err = RenderError::plain(
                    &origin,
                    format!("undefined value: `{}` is undefined", expr.trim()),
                );
                err.excerpt = Some(Box::new(Excerpt {
                    source: s.to_string(),
                    range: None,
                }));
                err.line = Some(1);
                return Err(err);
            }
            return Ok(value);
        }
        let tmpl = self
            .env
            .template_from_named_str(&origin, s)
            .map_err(|e| RenderError::from_minijinja(&origin, Some(s), &e))?;
        tmpl.render(ctx)
            .map(|out| Value::from(preserve_trailing_newlines(s, out, "\n")))
            .map_err(|e| RenderError::from_minijinja(&origin, Some(s), &e))
    }
}

/// The expression of a template that is exactly one `{{ expr }}` (Ansible 2.19 returns its
/// native value), else None.
fn single_expression(s: &str) -> Option<&str> {
    let inner = s.strip_prefix("{{")?.strip_suffix("}}")?;
    if ["{{", "}}", "{%", "{#"].iter().any(|m| inner.contains(m)) {
        return None;
    }
    let inner = inner.strip_prefix(['-', '+']).unwrap_or(inner);
    let inner = inner.strip_suffix(['-', '+']).unwrap_or(inner);
    Some(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn renderer_is_send_sync() {
        assert_send_sync::<Renderer>();
    }

    #[test]
    fn overlong_tags_are_found_and_strings_and_comments_skipped() {
        let chain = "-".repeat(MAX_TAG_OPERATORS + 1);
        assert_eq!(
            overlong_tag(&format!("a\n{{{{ 1 }}}} {{{{ {chain}1 }}}}"), false),
            Some(10)
        );
        assert_eq!(overlong_tag(&format!("{{{{ '{chain}' }}}}"), false), None);
        assert_eq!(overlong_tag(&format!("{{# {chain} #}}"), false), None);
        assert_eq!(overlong_tag(&format!("text {chain}"), false), None);
        assert_eq!(overlong_tag(&format!("x{chain}1"), true), Some(0));
        let nots = "not ".repeat(MAX_TAG_OPERATORS + 1);
        assert_eq!(overlong_tag(&format!("{{% if {nots}x %}}"), false), Some(0));
        let fine = "a.b | default(1) + 2 if x else -3 ".repeat(50);
        assert_eq!(overlong_tag(&format!("{{{{ {fine} }}}}"), false), None);
    }

    #[test]
    fn single_expressions() {
        assert_eq!(single_expression("{{ a }}"), Some(" a "));
        assert_eq!(single_expression("{{ a }}{{ b }}"), None);
        assert_eq!(single_expression("x{{ a }}"), None);
    }
}
