//! `hosts/deploy.yml` -> [`Manifest`]: deploy's own part of the inventory, saying which files
//! and handlers each group gets.
//!
//! ```yaml
//! groups:
//!   litellm:
//!     gather_facts: false        # optional; facts are read only for hosts whose templates use them
//!     files:
//!       - template: litellm.config.yaml.j2
//!         dest: "{{ litellm_dir }}/litellm.config.yaml"   # a template too
//!         mode: "0640"                                      # optional; owner, group optional
//!         notify: restart litellm                           # a name or a list
//!         newline: "\r\n"        # optional; else the host's `deploy_newline`, else "\n"
//!       - src: litellm/assets              # files/litellm/assets, copied byte for byte
//!         dest: "{{ litellm_dir }}/assets"  # a folder: every file under it; folders made
//!         delete: true                      # remove files under dest that src lacks
//!       - dest: /etc/litellm/old.yaml
//!         state: absent                     # remove that file (not a directory)
//!     handlers:
//!       - name: restart litellm
//!         run: systemctl restart litellm                    # a template, run by the host's shell
//! ```
//! `settings: {allow_command_lookups: true}` lets templates run commands on the controller
//! with the `pipe` and `lines` lookups (refused otherwise).
//! Unknown keys are errors; a notify that names no declared handler is an error; an entry
//! takes exactly one of `template:` and `src:`, unless it is `state: absent`, which takes
//! neither (nor content settings).

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
    /// Settings of the whole run.
    #[serde(default)]
    pub settings: Settings,
    /// Where this manifest was read from; set after parsing.
    #[serde(skip)]
    pub path: PathBuf,
}

/// `settings:` of deploy.yml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Let templates run commands on the controller through the `pipe` and `lines` lookups
    /// (refused by default).
    #[serde(default)]
    pub allow_command_lookups: bool,
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
    /// Ansible's `gather_facts`: `true` asks the group's hosts for their facts before
    /// rendering, `false` never; unset, only hosts whose templates, dests, handlers,
    /// verify entries or variables refer to facts are asked.
    #[serde(default)]
    pub gather_facts: Option<Spanned<bool>>,
    /// Ansible's `serial`: the group's hosts apply in batches (`1`, `"30%"`, `[1, "50%"]`),
    /// each written, restarted and verified before the next starts.
    #[serde(default)]
    pub serial: Option<Spanned<SerialSpec>>,
    /// Ansible's `max_fail_percentage`: a batch in which more than this share of hosts
    /// failed stops the run (default: only a batch in which all failed).
    #[serde(default)]
    pub max_fail_percentage: Option<Spanned<f64>>,
}

/// `serial:` as written: a number, a percentage, or a list of them.
#[derive(Debug, Clone)]
pub struct SerialSpec(pub crate::rollout::Serial);

// By hand, like `Notify`: untagged enums lose the YAML reader's context in flow mappings.
impl<'de> Deserialize<'de> for SerialSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SerialSpec, D::Error> {
        use crate::rollout::{Serial, Step};
        struct One;
        impl<'de> serde::de::Visitor<'de> for One {
            type Value = Vec<Step>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number of hosts, a percentage such as \"30%\", or a list of them")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Vec<Step>, E> {
                Ok(vec![Step::Count(usize::try_from(v).map_err(E::custom)?)])
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Vec<Step>, E> {
                let n =
                    usize::try_from(v).map_err(|_| E::custom(format!("serial {v} is negative")))?;
                Ok(vec![Step::Count(n)])
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Vec<Step>, E> {
                Serial::parse(v).map(|s| s.0).map_err(E::custom)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Vec<Step>, A::Error> {
                struct Item(Vec<Step>);
                impl<'de> Deserialize<'de> for Item {
                    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Item, D::Error> {
                        d.deserialize_any(One).map(Item)
                    }
                }
                let mut steps = Vec::new();
                while let Some(Item(more)) = seq.next_element::<Item>()? {
                    steps.extend(more);
                }
                if steps.is_empty() {
                    return Err(serde::de::Error::custom("serial is an empty list"));
                }
                Ok(steps)
            }
        }
        d.deserialize_any(One)
            .map(|steps| SerialSpec(Serial(steps)))
    }
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
    #[serde(default)]
    pub template: Option<Spanned<String>>,
    /// A file or folder under `files/`, copied as it is (never templated).
    #[serde(default)]
    pub src: Option<Spanned<String>>,
    /// With a `src:` folder: remove the files under `dest` that the folder does not have.
    #[serde(default)]
    pub delete: Option<Spanned<bool>>,
    /// `absent`: remove `dest` (a file or a symbolic link). Default `present`.
    #[serde(default)]
    pub state: Option<Spanned<FileState>>,
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
    /// Ansible's `validate`: a command (a template) run on the host with `%s` as the new
    /// file's temporary copy, before any of the host's files is replaced; a non-zero exit
    /// replaces nothing.
    #[serde(default)]
    pub validate: Option<Spanned<String>>,
}

/// `state:` of a file entry, as in Ansible's `file` module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileState {
    Present,
    Absent,
}

/// Where an entry's content comes from, once validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content<'a> {
    /// `template:`, relative to `templates/`.
    Template(&'a Spanned<String>),
    /// `src:`, relative to `files/`.
    Src(&'a Spanned<String>),
    /// `state: absent`: no content, dest is removed.
    Absent,
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
    /// What the entry puts at `dest`. Call after [`Manifest::load`] validated it.
    pub fn content(&self) -> Content<'_> {
        match (&self.template, &self.src) {
            _ if self.absent() => Content::Absent,
            (Some(t), _) => Content::Template(t),
            (None, Some(s)) => Content::Src(s),
            // Refused by validation; an entry without content removes nothing either.
            (None, None) => Content::Absent,
        }
    }

    pub fn absent(&self) -> bool {
        self.state.as_ref().map(|s| s.value) == Some(FileState::Absent)
    }

    /// `delete: true` was given.
    pub fn delete(&self) -> bool {
        self.delete.as_ref().is_some_and(|d| d.value)
    }

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
                self.validate_content(file)?;
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

impl Manifest {
    /// Exactly one of `template:` and `src:` (neither with `state: absent`), a `src:` inside
    /// `files/`, `delete:` only with `src:`.
    fn validate_content(&self, file: &FileSpec) -> Result<(), Error> {
        if let Some(v) = &file.validate {
            if !v.value.contains("%s") {
                return Err(Error::config(
                    self.location(v),
                    format!(
                        "`validate:` of {} has no `%s` (where the new file's temporary copy goes)",
                        file.dest.value
                    ),
                )
                .with_hint("e.g. validate: visudo -cf %s"));
            }
            if file.absent() {
                return Err(Error::config(
                    self.location(v),
                    format!(
                        "`state: absent` removes {}; there is nothing to validate",
                        file.dest.value
                    ),
                ));
            }
        }
        if file.absent() {
            let state = file.state.as_ref().map(|s| self.location(s));
            let extra: Option<(&str, Option<Location>)> = if let Some(t) = &file.template {
                Some(("template", Some(self.location(t))))
            } else if let Some(s) = &file.src {
                Some(("src", Some(self.location(s))))
            } else if let Some(m) = &file.mode {
                Some(("mode", Some(self.location(m))))
            } else if let Some(n) = &file.newline {
                Some(("newline", Some(self.location(n))))
            } else if let Some(d) = &file.delete {
                Some(("delete", Some(self.location(d))))
            } else if file.owner.is_some() {
                Some(("owner", None))
            } else if file.group.is_some() {
                Some(("group", None))
            } else {
                None
            };
            if let Some((key, at)) = extra {
                let at = at.or(state).map(|l| l.to_string()).unwrap_or_default();
                return Err(Error::config(
                    at,
                    format!(
                        "`state: absent` removes {}; it takes no `{key}:`",
                        file.dest.value
                    ),
                )
                .with_hint("keep `dest:` (and `notify:`) only, or drop `state: absent`"));
            }
            return Ok(());
        }
        match (&file.template, &file.src) {
            (Some(_), Some(src)) => {
                return Err(Error::config(
                    self.location(src),
                    format!(
                        "the entry for {} has both `template:` and `src:`",
                        file.dest.value
                    ),
                )
                .with_hint("`template:` renders templates/NAME; `src:` copies files/PATH as is"));
            }
            (None, None) => {
                return Err(Error::config(
                    self.location(&file.dest),
                    format!(
                        "the entry for {} has neither `template:` nor `src:`",
                        file.dest.value
                    ),
                )
                .with_hint(
                    "`template:` renders templates/NAME, `src:` copies files/PATH as is, \
                     `state: absent` removes dest",
                ));
            }
            (Some(_), None) => {
                if let Some(d) = &file.delete {
                    return Err(Error::config(
                        self.location(d),
                        "`delete:` applies to a `src:` folder, not to a template",
                    ));
                }
            }
            (None, Some(src)) => {
                crate::files::normalize_src(&src.value)
                    .map_err(|msg| Error::config(self.location(src), msg))?;
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

    /// The error `text` (a deploy.yml) gives, as printed.
    fn error_of(text: &str) -> String {
        let path = std::path::Path::new("hosts/deploy.yml");
        let m: Result<Manifest, _> = crate::yaml::parse(path, text);
        match m {
            Ok(mut m) => {
                m.path = path.into();
                m.validate().expect_err("an invalid manifest").to_string()
            }
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn src_and_state_entries_are_checked_with_their_line() {
        let ok = "groups:\n  web:\n    files:\n      - {src: site/, dest: /srv/site, delete: true}\n      - {src: logo.png, dest: /srv/logo.png, mode: '0644', newline: crlf}\n      - {dest: /etc/old.conf, state: absent, notify: x}\n      - {template: a.j2, dest: /a, state: present}\n    handlers:\n      - {name: x, run: 'true'}\n";
        let m: Manifest = crate::yaml::parse(std::path::Path::new("deploy.yml"), ok).unwrap();
        m.validate().unwrap();
        let files = &m.groups["web"].files;
        assert!(matches!(files[0].content(), super::Content::Src(s) if s.value == "site/"));
        assert!(files[0].delete() && !files[1].delete());
        assert_eq!(files[2].content(), super::Content::Absent);
        assert!(matches!(files[3].content(), super::Content::Template(_)));

        let head = "groups:\n  web:\n    files:\n";
        let cases = [
            (
                "      - template: a.j2\n        src: a\n        dest: /a\n",
                "hosts/deploy.yml:5:14: the entry for /a has both `template:` and `src:`",
            ),
            (
                "      - mode: '0644'\n        dest: /a\n",
                "hosts/deploy.yml:5:15: the entry for /a has neither `template:` nor `src:`",
            ),
            (
                "      - src: ../hosts/inventory.yml\n        dest: /a\n",
                "hosts/deploy.yml:4:14: src `../hosts/inventory.yml` is not inside files/",
            ),
            (
                "      - src: /etc/shadow\n        dest: /a\n",
                "hosts/deploy.yml:4:14: src `/etc/shadow` is not inside files/; write it relative to files/",
            ),
            (
                "      - dest: /a\n        state: absent\n        src: a\n",
                "hosts/deploy.yml:6:14: `state: absent` removes /a; it takes no `src:`",
            ),
            (
                "      - dest: /a\n        state: absent\n        owner: root\n",
                "hosts/deploy.yml:5:16: `state: absent` removes /a; it takes no `owner:`",
            ),
            (
                "      - template: a.j2\n        dest: /a\n        delete: true\n",
                "hosts/deploy.yml:6:17: `delete:` applies to a `src:` folder, not to a template",
            ),
            (
                "      - dest: /a\n        state: gone\n",
                "hosts/deploy.yml:5:16: unknown variant `gone`, expected one of present, absent",
            ),
        ];
        for (entry, want) in cases {
            let got = error_of(&format!("{head}{entry}"));
            assert!(got.starts_with(want), "{entry}\n got: {got}\nwant: {want}");
        }
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
