//! Privilege escalation, as Ansible's `become`: which user a host's scripts run as, and how
//! deploy gets there (sudo or su).
//!
//! In: the host's `ansible_become*` variables and the command line's `-b`, `--become-user`,
//! `-K` ([`Escalation`]). Out: a resolved [`Become`] that wraps one script in one `sudo` (or
//! `su`) command line, and turns what sudo printed when it refused into one clear line.
//!
//! The password never travels on a command line, in the environment or in a file: the
//! transport writes it on the command's stdin once, when sudo's prompt (a random text of this
//! run, [`Become::prompt`]) shows up on stderr, and sends the script's own input only after the
//! wrapped shell printed [`Become::marker`]. A second prompt means a wrong password: the
//! transport closes stdin then, so sudo counts one failed attempt, never three. Without a
//! password, sudo runs with `-n` and fails at once instead of asking.

use std::fmt;

/// How a host becomes another user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BecomeMethod {
    Sudo,
    Su,
}

impl BecomeMethod {
    pub fn name(self) -> &'static str {
        match self {
            BecomeMethod::Sudo => "sudo",
            BecomeMethod::Su => "su",
        }
    }
}

/// The become settings of one host as given (each `None` when not set), before the command
/// line's defaults are filled in. `Debug` never shows the password.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Escalation {
    /// `ansible_become` / `-b`.
    pub enabled: Option<bool>,
    /// `ansible_become_method`.
    pub method: Option<BecomeMethod>,
    /// `ansible_become_user` / `--become-user`.
    pub user: Option<String>,
    /// `ansible_become_password` (also `ansible_become_pass`, `ansible_sudo_pass`) / `-K`.
    pub password: Option<String>,
    /// `ansible_become_flags`.
    pub flags: Option<String>,
}

impl fmt::Debug for Escalation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Escalation")
            .field("enabled", &self.enabled)
            .field("method", &self.method)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("flags", &self.flags)
            .finish()
    }
}

/// The variables that hold the become password, in Ansible's order of preference.
pub const PASSWORD_VARS: [&str; 3] = [
    "ansible_become_password",
    "ansible_become_pass",
    "ansible_sudo_pass",
];

impl Escalation {
    /// Reads the `ansible_become*` variables. The error names the variable and the value.
    pub fn from_vars(vars: &serde_json::Map<String, serde_json::Value>) -> Result<Self, String> {
        let text = |key: &str| super::var_text(vars, key);
        let enabled = match vars.get("ansible_become") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(ansible_bool(v).ok_or_else(|| {
                format!("ansible_become must be a boolean (true/false, yes/no), not {v}")
            })?),
        };
        let method = match text("ansible_become_method")? {
            None => None,
            Some(m) => Some(match m.as_str() {
                "sudo" => BecomeMethod::Sudo,
                "su" => BecomeMethod::Su,
                other => {
                    return Err(format!(
                        "ansible_become_method `{other}` is not supported (use sudo or su)"
                    ));
                }
            }),
        };
        let mut password = None;
        for key in PASSWORD_VARS {
            if let Some(p) = text(key)? {
                password = Some(p);
                break;
            }
        }
        Ok(Escalation {
            enabled,
            method,
            user: text("ansible_become_user")?,
            password,
            flags: text("ansible_become_flags")?,
        })
    }

    /// Whether the host's own variables turn become on.
    pub fn requested(&self) -> bool {
        self.enabled == Some(true)
    }

    /// Fills what the host's variables leave unset from `defaults` (the command line's
    /// `-b`, `--become-user`, `-K`): as in Ansible, a host's variables win over the command
    /// line.
    pub fn fill_defaults(&mut self, defaults: &Escalation) {
        if self.enabled.is_none() {
            self.enabled = defaults.enabled;
        }
        if self.method.is_none() {
            self.method = defaults.method;
        }
        if self.user.is_none() {
            self.user.clone_from(&defaults.user);
        }
        if self.password.is_none() {
            self.password.clone_from(&defaults.password);
        }
        if self.flags.is_none() {
            self.flags.clone_from(&defaults.flags);
        }
    }

    /// What the host runs as: `None` when become is off.
    pub fn resolve(&self) -> Option<Become> {
        if self.enabled != Some(true) {
            return None;
        }
        Some(Become::new(
            self.method.unwrap_or(BecomeMethod::Sudo),
            self.user.clone().unwrap_or_else(|| "root".to_string()),
            self.password.clone(),
            self.flags.clone(),
        ))
    }
}

/// Ansible's boolean reading of a variable (`true`, `yes`, `on`, `1`, ... any case).
fn ansible_bool(v: &serde_json::Value) -> Option<bool> {
    match v {
        serde_json::Value::Bool(b) => Some(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        serde_json::Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" | "y" | "t" => Some(true),
            "false" | "no" | "off" | "0" | "n" | "f" | "" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Become resolved for one host: who to run as, how, and this connection's prompt and marker.
#[derive(Clone, PartialEq, Eq)]
pub struct Become {
    pub method: BecomeMethod,
    pub user: String,
    password: Option<String>,
    flags: Option<String>,
    /// sudo's prompt (`-p`), unique to this connection, so it cannot be mistaken for output.
    prompt: String,
    /// Printed by the wrapped shell once it runs as the become user.
    marker: String,
}

impl fmt::Debug for Become {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Become")
            .field("method", &self.method)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("flags", &self.flags)
            .finish_non_exhaustive()
    }
}

/// How a wrapped command ended before its script ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// sudo wants a password and none is set (or the user may not use sudo without one).
    NeedsPassword,
    /// The password was refused (one attempt).
    WrongPassword,
    /// The user may not run commands as the become user.
    NotAllowed,
    /// `sudo` (or `su`) is not on the host.
    NotInstalled,
    /// sudoers says `requiretty`.
    NeedsTty,
    /// Anything else; the text is the tool's own.
    Other,
}

impl Become {
    pub fn new(
        method: BecomeMethod,
        user: String,
        password: Option<String>,
        flags: Option<String>,
    ) -> Become {
        let nonce = format!("{:016x}", rand::random::<u64>());
        Become {
            method,
            user,
            password,
            flags,
            prompt: format!("[deploy-become-password-{nonce}]"),
            marker: format!("DEPLOY-BECOME-{nonce}"),
        }
    }

    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// sudo's prompt: the transport sends the password when it shows up on stderr.
    pub fn prompt(&self) -> &str {
        &self.prompt
    }

    /// The line the wrapped shell prints on stdout first, before any of the script's output.
    pub fn marker(&self) -> &str {
        &self.marker
    }

    /// Whether the transport must wait for the prompt or the marker before sending the
    /// script's input: with a password (it goes first), and always with su, which reads its
    /// password from stdin whenever it wants one (sudo without a password runs with `-n`,
    /// which never reads stdin, so the input can go at once).
    pub fn handshake(&self) -> bool {
        self.password.is_some() || self.method == BecomeMethod::Su
    }

    /// Whether stderr so far holds a password prompt, and how many.
    pub fn prompts_in(&self, stderr: &str) -> usize {
        match self.method {
            BecomeMethod::Sudo => stderr.matches(self.prompt.as_str()).count(),
            // su's prompt is its own (`Password: ` under LC_ALL=C).
            BecomeMethod::Su => stderr.matches("assword:").count(),
        }
    }

    /// The command line that runs `body` (a POSIX sh script) as the become user under
    /// `/bin/sh`, printing the marker first.
    pub fn wrap(&self, body: &str) -> String {
        use super::ssh::sh_quote as quote;
        let inner = format!(
            "printf '%s\\n' {marker}; LC_ALL=C; export LC_ALL; {body}",
            marker = self.marker
        );
        let user = quote(&self.user);
        match self.method {
            BecomeMethod::Sudo => {
                // Ansible's defaults are `-H -S -n`; -S/-n are deploy's to choose (with a
                // password -n would refuse it, without one -S would read the script's input).
                let flags: Vec<&str> = self
                    .flags
                    .as_deref()
                    .unwrap_or("-H")
                    .split_whitespace()
                    .filter(|f| *f != "-n" && *f != "-S")
                    .collect();
                let auth = if self.password.is_some() {
                    format!("-S -p {}", quote(&self.prompt))
                } else {
                    "-n".to_string()
                };
                let flags = if flags.is_empty() {
                    String::new()
                } else {
                    format!("{} ", flags.join(" "))
                };
                format!(
                    "LC_ALL=C sudo {flags}{auth} -u {user} -- /bin/sh -c {}",
                    quote(&inner)
                )
            }
            BecomeMethod::Su => {
                let flags = match self.flags.as_deref().map(str::trim) {
                    Some(f) if !f.is_empty() => format!("{f} "),
                    _ => String::new(),
                };
                format!("LC_ALL=C su {flags}-s /bin/sh -c {} {user}", quote(&inner))
            }
        }
    }

    /// What went wrong, from what sudo or su printed and its exit status, when the wrapped
    /// shell never printed the marker.
    pub fn refusal(&self, stderr: &str, status: Option<i32>, answered_prompt: bool) -> Refusal {
        let lower = stderr.to_ascii_lowercase();
        let tool = self.method.name();
        if status == Some(127)
            || lower.contains(&format!("{tool}: not found"))
            || lower.contains(&format!("{tool}: command not found"))
        {
            return Refusal::NotInstalled;
        }
        if lower.contains("must have a tty") || lower.contains("no tty present") {
            return Refusal::NeedsTty;
        }
        if lower.contains("incorrect password")
            || lower.contains("authentication failure")
            || self.prompts_in(stderr) > 1
        {
            return Refusal::WrongPassword;
        }
        if lower.contains("not in the sudoers")
            || lower.contains("not allowed to")
            || lower.contains("may not run sudo")
        {
            return Refusal::NotAllowed;
        }
        if lower.contains("a password is required")
            || (self.prompts_in(stderr) == 1 && !answered_prompt)
        {
            return Refusal::NeedsPassword;
        }
        Refusal::Other
    }

    /// One line for the operator: what happened and what to change. `host` is the inventory
    /// name, `login` the user deploy logs in as, `place` where (`user@address:port`).
    pub fn explain(&self, refusal: Refusal, host: &str, login: &str, stderr: &str) -> String {
        let tool = self.method.name();
        let target = &self.user;
        let said = last_lines(stderr, &[&self.prompt]);
        match refusal {
            Refusal::NeedsPassword => format!(
                "{tool} asked for {login}'s password to become {target} and none is set: put \
                 ansible_become_password in secrets/{host}.yml.age (or pass -K), or let {login} \
                 use {tool} without a password"
            ),
            Refusal::WrongPassword => format!(
                "{tool} refused the become password for {login} (one attempt made, not \
                 retried): check ansible_become_password for {host}{}",
                if said.is_empty() {
                    String::new()
                } else {
                    format!(" ({tool} said: {said})")
                }
            ),
            Refusal::NotAllowed => {
                format!("{login} may not run commands as {target} with {tool}: {said}")
            }
            Refusal::NotInstalled => {
                format!("{tool} is not installed on the host (or not on {login}'s PATH)")
            }
            Refusal::NeedsTty => format!(
                "sudoers requires a terminal (requiretty) for {login}; deploy runs without one: \
                 add `Defaults:{login} !requiretty` to sudoers"
            ),
            Refusal::Other => {
                if said.is_empty() {
                    format!("{tool} to {target} failed before running anything")
                } else {
                    format!("{tool} to {target} failed: {said}")
                }
            }
        }
    }
}

/// The last few lines of `text`, joined, with the given prompts removed.
fn last_lines(text: &str, prompts: &[&str]) -> String {
    let mut cleaned = text.to_string();
    for p in prompts {
        cleaned = cleaned.replace(p, "");
    }
    let lines: Vec<&str> = cleaned
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let start = lines.len().saturating_sub(2);
    lines[start..].join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(json: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        match json {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        }
    }

    #[test]
    fn reads_ansible_variables_and_refuses_unknown_methods() {
        let e = Escalation::from_vars(&vars(serde_json::json!({
            "ansible_become": "yes",
            "ansible_become_user": "litellm",
            "ansible_become_pass": "pw",
        })))
        .expect("vars");
        assert_eq!(e.enabled, Some(true));
        let b = e.resolve().expect("on");
        assert_eq!(
            (b.method, b.user.as_str(), b.password()),
            (BecomeMethod::Sudo, "litellm", Some("pw"))
        );
        assert!(!format!("{e:?}{b:?}").contains("\"pw\""));

        let err =
            Escalation::from_vars(&vars(serde_json::json!({"ansible_become_method": "doas"})))
                .expect_err("doas");
        assert!(err.contains("ansible_become_method `doas`"), "{err}");
        let err = Escalation::from_vars(&vars(serde_json::json!({"ansible_become": "maybe"})))
            .expect_err("maybe");
        assert!(err.contains("ansible_become"), "{err}");
        // Off unless asked for; root by default.
        assert!(Escalation::default().resolve().is_none());
        let mut e = Escalation::default();
        e.fill_defaults(&Escalation {
            enabled: Some(true),
            ..Default::default()
        });
        assert_eq!(e.resolve().expect("on").user, "root");
    }

    #[test]
    fn host_variables_win_over_the_command_line() {
        let mut e = Escalation::from_vars(&vars(serde_json::json!({
            "ansible_become": false, "ansible_become_user": "svc"
        })))
        .expect("vars");
        e.fill_defaults(&Escalation {
            enabled: Some(true),
            user: Some("root".into()),
            password: Some("typed".into()),
            ..Default::default()
        });
        assert_eq!(e.enabled, Some(false));
        assert_eq!(e.user.as_deref(), Some("svc"));
        assert_eq!(e.password.as_deref(), Some("typed"));
    }

    #[test]
    fn the_password_is_never_on_the_command_line() {
        let b = Become::new(
            BecomeMethod::Sudo,
            "root".into(),
            Some("hunter2".into()),
            Some("-H -S -n -E".into()),
        );
        let cmd = b.wrap("echo hi");
        assert!(!cmd.contains("hunter2"), "{cmd}");
        assert!(
            cmd.starts_with("LC_ALL=C sudo -H -E -S -p '[deploy-become-password-"),
            "{cmd}"
        );
        assert!(!cmd.contains(" -n "), "{cmd}");
        let b = Become::new(BecomeMethod::Sudo, "root".into(), None, None);
        let cmd = b.wrap("echo hi");
        assert!(
            cmd.starts_with("LC_ALL=C sudo -H -n -u 'root' -- /bin/sh -c "),
            "{cmd}"
        );
        assert!(!b.handshake());
        let b = Become::new(BecomeMethod::Su, "svc".into(), None, None);
        assert!(b.handshake());
        assert!(b.wrap("true").starts_with("LC_ALL=C su -s /bin/sh -c "));
    }

    #[test]
    fn refusals_are_told_apart() {
        let b = Become::new(BecomeMethod::Sudo, "root".into(), None, None);
        assert_eq!(
            b.refusal("sudo: a password is required\n", Some(1), false),
            Refusal::NeedsPassword
        );
        assert_eq!(
            b.refusal(
                "sudo: sorry, you must have a tty to run sudo\n",
                Some(1),
                false
            ),
            Refusal::NeedsTty
        );
        assert_eq!(
            b.refusal("sh: 1: sudo: not found\n", Some(127), false),
            Refusal::NotInstalled
        );
        let p = b.prompt().to_string();
        assert_eq!(
            b.refusal(
                &format!("{p}mdt is not in the sudoers file.\n"),
                Some(1),
                true
            ),
            Refusal::NotAllowed
        );
        assert_eq!(
            b.refusal(
                &format!("{p}Sorry, try again.\n{p}sudo: 1 incorrect password attempt\n"),
                Some(1),
                true
            ),
            Refusal::WrongPassword
        );
        let text = b.explain(Refusal::NeedsPassword, "motoko", "mdt", "");
        assert!(
            text.contains("ansible_become_password in secrets/motoko.yml.age"),
            "{text}"
        );
    }
}
