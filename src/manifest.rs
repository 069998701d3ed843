//! `hosts/deploy.yml` -> [`Manifest`]: deploy's own part of the inventory, saying which files
//! and handlers each group gets.
//!
//! ```yaml
//! groups:
//!   litellm:
//!     files:
//!       - template: litellm.config.yaml.j2
//!         dest: "{{ litellm_dir }}/litellm.config.yaml"   # a template too
//!         mode: "0640"                                      # optional; owner, group optional
//!         notify: restart litellm                           # a name or a list
//!         newline: "\r\n"        # optional; else the host's `deploy_newline`, else "\n"
//!     handlers:
//!       - name: restart litellm
//!         run: systemctl restart litellm                    # a template, run by the host's shell
//! ```
//! Unknown keys are errors; a notify that names no declared handler is an error.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::error::{Error, Location};
use crate::yaml;

pub const MANIFEST_FILE: &str = "deploy.yml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Group name -> what it gets, in file order.
    #[serde(default)]
    pub groups: IndexMap<String, GroupSpec>,
    /// Operators' own checks, run after rendering and before any host is contacted.
    #[serde(default)]
    pub checks: Vec<CheckSpec>,
    /// Where this manifest was read from; set after parsing.
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    #[serde(default)]
    pub files: Vec<FileSpec>,
    #[serde(default)]
    pub handlers: Vec<HandlerSpec>,
    /// Polled from the controller after the host's handlers ran.
    #[serde(default)]
    pub verify: Vec<VerifySpec>,
}

/// One entry of a group's `verify:`: an HTTP GET that must answer as expected before the
/// deadline, after the host's files were written and its handlers ran.
///
/// ```yaml
/// verify:
///   - name: vLLM serves its name
///     url: "http://{{ inventory_hostname }}:{{ vllm.port }}/v1/models"   # a template
///     status: 200                  # default 200
///     json_path: "data[*].id"      # optional: where in the JSON body to look
///     contains: "{{ vllm.served_model_name }}"  # optional, a template
///     timeout: 300                 # seconds, default 120
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySpec {
    pub name: Spanned<String>,
    pub url: Spanned<String>,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub json_path: Option<String>,
    #[serde(default)]
    pub contains: Option<Spanned<String>>,
    #[serde(default)]
    pub timeout: Option<Spanned<f64>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Template file, relative to `templates/`.
    pub template: Spanned<String>,
    /// Destination path on the host; a template.
    pub dest: Spanned<String>,
    /// Octal permission bits as a string, e.g. "0640".
    #[serde(default)]
    pub mode: Option<Spanned<ModeSpec>>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    /// Handlers to run when this file changes.
    #[serde(default)]
    pub notify: Option<Spanned<Notify>>,
    /// Line endings of the written file: "\n" (default) or "\r\n" (as Ansible's
    /// win_template); wins over the host's `deploy_newline` var.
    #[serde(default)]
    pub newline: Option<Spanned<String>>,
}

/// `mode:` as written: a quoted octal string ("0640") or, when unquoted with a leading zero,
/// the string the YAML reader keeps it as. A bare integer is refused because Ansible would
/// read `mode: 644` as decimal 644, a classic mistake.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ModeSpec {
    Text(String),
    Number(i64),
}

/// `notify:` as written: one handler name or a list of them.
#[derive(Debug, Clone)]
pub enum Notify {
    One(String),
    Many(Vec<String>),
}

// By hand rather than `#[serde(untagged)]`: untagged buffering loses the YAML reader's
// context inside flow mappings (`{notify: [a, b]}` failed to match any variant).
impl<'de> Deserialize<'de> for Notify {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Notify, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Notify;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a handler name or a list of handler names")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Notify, E> {
                Ok(Notify::One(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Notify, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                Ok(Notify::Many(names))
            }
        }
        d.deserialize_any(V)
    }
}

impl FileSpec {
    /// The handler names this file notifies, in the order written.
    pub fn notify_names(&self) -> Vec<&str> {
        match self.notify.as_ref().map(|n| &n.value) {
            None => Vec::new(),
            Some(Notify::One(n)) => vec![n.as_str()],
            Some(Notify::Many(v)) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// One entry of `checks:`: an expression that must be true for every host it applies to.
///
/// ```yaml
/// checks:
///   - name: vllm leaves GPU headroom
///     hosts: vllm                       # optional: group or host names, `:` or `,` separated
///     that: files[vllm_config].vllm.gpu_memory_utilization <= 0.95
///     message: "gpu_memory_utilization is {{ files[vllm_config].vllm.gpu_memory_utilization }}"
///     file: "{{ vllm_config }}"         # optional, a template: the file to name
///     key: vllm.gpu_memory_utilization  # optional: the key to name
/// ```
/// `that` sees the host's variables (with `hostvars`), `files` (each of the host's rendered
/// dests -> its YAML/JSON value, or its text when it does not parse as a mapping or list)
/// and `hostfiles` (host -> its `files`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    pub name: Spanned<String>,
    #[serde(default)]
    pub hosts: Option<String>,
    pub that: Spanned<String>,
    /// What is wrong, a template; default: the expression that was false.
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlerSpec {
    pub name: Spanned<String>,
    /// Command line, a template; run by the host's shell.
    pub run: Spanned<String>,
}

impl Manifest {
    /// Reads `<hosts_dir>/deploy.yml` and checks that every notify names a declared handler.
    pub fn load(hosts_dir: &Path) -> Result<Manifest, Error> {
        let path = hosts_dir.join(MANIFEST_FILE);
        if !path.is_file() {
            return Err(Error::usage(
                format!("no {} in {}", MANIFEST_FILE, hosts_dir.display()),
                Some("deploy.yml says which files and handlers each group gets".into()),
            ));
        }
        let mut manifest: Manifest = yaml::read(&path)?;
        manifest.path = path;
        manifest.validate()?;
        Ok(manifest)
    }

    pub fn location<T>(&self, span: &Spanned<T>) -> Location {
        Location {
            path: self.path.clone(),
            line: span.referenced.line() as usize,
            column: span.referenced.column() as usize,
        }
    }

    fn validate(&self) -> Result<(), Error> {
        let declared: Vec<&str> = self
            .groups
            .values()
            .flat_map(|g| g.handlers.iter().map(|h| h.name.value.as_str()))
            .collect();
        for group in self.groups.values() {
            for v in &group.verify {
                if let Some(t) = &v.timeout
                    && !(t.value > 0.0 && t.value <= 86400.0)
                {
                    return Err(Error::config(
                        self.location(t),
                        format!(
                            "verify timeout {} is not a number of seconds between 0 and 86400",
                            t.value
                        ),
                    ));
                }
                if let Some(path) = &v.json_path {
                    crate::verify::parse_json_path(path).map_err(|msg| {
                        Error::config(
                            self.location(&v.name),
                            format!("verify `{}`: {msg}", v.name.value),
                        )
                    })?;
                }
            }
            for file in &group.files {
                for name in file.notify_names() {
                    if !declared.contains(&name) {
                        let hint = if declared.is_empty() {
                            "declare it under `handlers:` of a group".to_string()
                        } else {
                            format!("declared handlers: {}", declared.join(", "))
                        };
                        let at = file.notify.as_ref().map(|n| self.location(n));
                        return Err(Error::config(
                            at.map(|l| l.to_string()).unwrap_or_default(),
                            format!("`{name}` is notified but no handler has that name"),
                        )
                        .with_hint(hint));
                    }
                }
                if let Some(newline) = &file.newline {
                    parse_newline(&newline.value)
                        .map_err(|msg| Error::config(self.location(newline), msg))?;
                }
                if let Some(mode) = &file.mode {
                    parse_mode(&mode.value).map_err(|msg| {
                        Error::config(self.location(mode), msg)
                            .with_hint("write the mode as a quoted octal string: mode: \"0640\"")
                    })?;
                }
            }
        }
        Ok(())
    }
}

/// A line-ending setting (`newline:` of a file, or the `deploy_newline` host var) -> the
/// sequence itself. Takes the characters ("\r\n" in double quotes) or their escaped
/// spelling ('\r\n' in single quotes), and `lf` / `crlf`.
pub fn parse_newline(text: &str) -> Result<&'static str, String> {
    match text {
        "\n" | "\\n" | "lf" | "LF" => Ok("\n"),
        "\r\n" | "\\r\\n" | "crlf" | "CRLF" => Ok("\r\n"),
        "\r" | "\\r" | "cr" | "CR" => Ok("\r"),
        other => Err(format!(
            "newline {other:?} is not a line ending; use \"\\n\" or \"\\r\\n\""
        )),
    }
}

/// Permission bits from `mode:`.
pub fn parse_mode(mode: &ModeSpec) -> Result<u32, String> {
    match mode {
        ModeSpec::Text(s) => {
            let digits = s.trim().trim_start_matches("0o");
            if digits.is_empty() || digits.len() > 4 {
                return Err(format!("mode `{s}` is not an octal mode"));
            }
            u32::from_str_radix(digits, 8).map_err(|_| format!("mode `{s}` is not an octal mode"))
        }
        ModeSpec::Number(n) => Err(format!(
            "mode {n} is a bare number, which Ansible reads as decimal"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::{Manifest, ModeSpec, parse_mode};

    #[test]
    fn unquoted_mode_and_notify_forms() {
        let text = "groups:\n  web:\n    files:\n      - {template: a.j2, dest: /a, mode: 0755, notify: x}\n      - {template: b.j2, dest: /b, notify: [x, y]}\n    handlers:\n      - {name: x, run: 'true'}\n      - {name: y, run: 'true'}\n";
        let m: Manifest = crate::yaml::parse(std::path::Path::new("deploy.yml"), text).unwrap();
        let files = &m.groups["web"].files;
        let mode = files[0].mode.as_ref().unwrap();
        assert_eq!(parse_mode(&mode.value), Ok(0o755));
        assert_eq!(files[0].notify_names(), ["x"]);
        assert_eq!(files[1].notify_names(), ["x", "y"]);
        m.validate().unwrap();
    }

    #[test]
    fn newlines() {
        assert_eq!(super::parse_newline("\r\n"), Ok("\r\n"));
        assert_eq!(super::parse_newline("\\r\\n"), Ok("\r\n"));
        assert_eq!(super::parse_newline("crlf"), Ok("\r\n"));
        assert_eq!(super::parse_newline("\n"), Ok("\n"));
        assert!(super::parse_newline("windows").is_err());
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode(&ModeSpec::Text("0640".into())), Ok(0o640));
        assert_eq!(parse_mode(&ModeSpec::Text("755".into())), Ok(0o755));
        assert!(parse_mode(&ModeSpec::Text("0999".into())).is_err());
        assert!(parse_mode(&ModeSpec::Number(644)).is_err());
    }
}
