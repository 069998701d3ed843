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
mod jinja_tests;
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
fn preserve_trailing_newlines(source: &str, mut output: String) -> String {
    let count = |s: &str| s.len() - s.trim_end_matches('\n').len();
    let (want, have) = (count(source), count(&output));
    if want > have {
        output.push_str(&"\n".repeat(want - have));
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
    templates_dir: PathBuf,
}

impl fmt::Debug for Renderer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Renderer")
            .field("templates_dir", &self.templates_dir)
            .finish_non_exhaustive()
    }
}

fn build_env(templates_dir: &Path, ansible_managed: &str) -> Environment<'static> {
    let mut env = Environment::new();
    let load = minijinja::path_loader(templates_dir);
    env.set_loader(move |name| {
        let source = load(name)?;
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
    let mut syntax = minijinja::syntax::SyntaxConfig::builder();
    syntax
        .trim_blocks(true)
        .lstrip_blocks(false)
        // Jinja drops the source's last newline; `preserve_trailing_newlines` adds back
        // what the output lacks, as Ansible does.
        .keep_trailing_newline(false);
    if let Ok(syntax) = syntax.build() {
        env.set_syntax(syntax);
    }
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
    jinja_tests::register(&mut env);
    env.add_global("ansible_managed", ansible_managed.to_string());
    env
}

impl Renderer {
    /// Templates are loaded from `templates_dir` by relative name, on first use, and cached.
    pub fn new(templates_dir: &Path) -> Renderer {
        Renderer::with_ansible_managed(templates_dir, DEFAULT_ANSIBLE_MANAGED)
    }

    /// Like [`Renderer::new`], with the `ansible_managed` global set to `text` (a var of the
    /// same name passed to a render still wins).
    pub fn with_ansible_managed(templates_dir: &Path, text: &str) -> Renderer {
        Renderer {
            env: Arc::new(build_env(templates_dir, text)),
            templates_dir: templates_dir.to_path_buf(),
        }
    }

    /// Render the template file `name` with `vars` (a minijinja Value made from a map).
    pub fn render_file(&self, name: &str, vars: &Value) -> Result<String, RenderError> {
        // Loading runs inside: a template the loader refuses reports through VAR_FAILURE.
        with_var_failures(|| {
            let tmpl = self.env.get_template(name).map_err(|e| {
                if e.kind() == ErrorKind::TemplateNotFound {
                    let mut err = RenderError::plain(name, format!("template not found: {name}"));
                    err.hint = Some(format!(
                        "looked for {}; template names are relative to the templates directory {}",
                        self.templates_dir.join(name).display(),
                        self.templates_dir.display()
                    ));
                    err
                } else {
                    RenderError::from_minijinja(name, None, &e)
                }
            })?;
            tmpl.render(vars)
                .map(|out| preserve_trailing_newlines(tmpl.source(), out))
                .map_err(|e| RenderError::from_minijinja(name, Some(tmpl.source()), &e))
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
        with_var_failures(|| {
            let tmpl = self
                .env
                .template_from_named_str(origin, source)
                .map_err(|e| RenderError::from_minijinja(origin, Some(source), &e))?;
            tmpl.render(vars)
                .map(|out| preserve_trailing_newlines(source, out))
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
        with_var_failures(|| {
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
}

fn with_var_failures<T>(render: impl FnOnce() -> Result<T, RenderError>) -> Result<T, RenderError> {
    VAR_FAILURE.with(|f| f.borrow_mut().take());
    let result = render();
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
        match v.kind() {
            ValueKind::String => {
                let s = v.as_str().unwrap_or_default();
                if s.contains("{{") || s.contains("{%") || s.contains("{#") {
                    self.template_string(name, s)
                } else {
                    Ok(v.clone())
                }
            }
            ValueKind::Seq => {
                let items = v
                    .try_iter()
                    .map_err(|e| RenderError::from_minijinja(name, None, &e))?
                    .map(|item| self.resolve_value(name, &item))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Value::from(items))
            }
            ValueKind::Map if v.downcast_object_ref::<LazyVars>().is_none() => {
                let mut out = indexmap::IndexMap::new();
                for key in v
                    .try_iter()
                    .map_err(|e| RenderError::from_minijinja(name, None, &e))?
                {
                    let item = v
                        .get_item(&key)
                        .map_err(|e| RenderError::from_minijinja(name, None, &e))?;
                    out.insert(key, self.resolve_value(name, &item)?);
                }
                Ok(Value::from_pairs(out))
            }
            _ => Ok(v.clone()),
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
            .map(|out| Value::from(preserve_trailing_newlines(s, out)))
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
