//! `Project`: a deploy repo in a temp dir (hosts/, templates/), the `deploy` binary run on it,
//! and the stand-in hosts' folders to look at afterwards.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

pub struct Project {
    dir: TempDir,
}

/// What a run of the binary printed and how it exited.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts the exit code, showing the output when it differs.
    #[track_caller]
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

impl Project {
    pub fn new() -> Project {
        let dir = tempfile::Builder::new()
            .prefix("deploy-test-")
            .tempdir()
            .expect("temp dir");
        fs::create_dir_all(dir.path().join("home")).expect("home");
        Project { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `content` at `rel` (parents created).
    pub fn file(&self, rel: &str, content: &str) -> &Project {
        let path = self.dir.path().join(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(&path, content).expect("write");
        self
    }

    /// Trusts `sshd`'s host key: its known_hosts becomes the project home's
    /// `~/.ssh/known_hosts`, where deploy looks by default.
    pub fn trust(&self, sshd: &crate::support::sshd::Sshd) -> &Project {
        let known = fs::read_to_string(sshd.known_hosts()).expect("the sshd's known_hosts");
        self.file("home/.ssh/known_hosts", &known)
    }

    /// An inventory of one host, `alpha`, on `sshd`: logging in as `login` with the sshd's
    /// client key, its files under `root` (the `root` variable) and its state record in
    /// `root/var/lib/deploy`; `host_vars`: more lines of its entry (indented as such).
    pub fn ssh_inventory(
        &self,
        sshd: &crate::support::sshd::Sshd,
        login: &str,
        root: &Path,
        host_vars: &str,
    ) -> &Project {
        self.inventory(&format!(
            "all:\n  hosts:\n    alpha:\n      ansible_host: 127.0.0.1\n      ansible_port: {port}\n      ansible_user: {login}\n      ansible_ssh_private_key_file: {key}\n      root: {root}\n      deploy_state_path: \"{{{{ root }}}}/var/lib/deploy/state.json\"\n{host_vars}",
            port = sshd.port(),
            key = sshd.client_key().display(),
            root = root.display(),
        ))
    }

    /// Writes `content` (any bytes) at `rel` (parents created).
    pub fn bytes(&self, rel: &str, content: &[u8]) -> &Project {
        let path = self.dir.path().join(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(&path, content).expect("write");
        self
    }

    /// Runs `git ARGS` in the repo (a fixed author) and returns its stdout.
    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(self.dir.path())
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
            .output()
            .expect("git must be installed");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn inventory(&self, yaml: &str) -> &Project {
        self.file("hosts/inventory.yml", yaml)
    }

    /// An inventory of local stand-in hosts: each group's hosts get
    /// `deploy_root: roots/<host>`.
    pub fn local_hosts(&self, groups: &[(&str, &[&str])]) -> &Project {
        let mut yaml = String::from("all:\n  vars:\n    ansible_connection: local\n  children:\n");
        for (group, hosts) in groups {
            yaml.push_str(&format!("    {group}:\n      hosts:\n"));
            for host in *hosts {
                yaml.push_str(&format!(
                    "        {host}:\n          deploy_root: roots/{host}\n"
                ));
            }
        }
        self.inventory(&yaml)
    }

    pub fn manifest(&self, yaml: &str) -> &Project {
        self.file("hosts/deploy.yml", yaml)
    }

    pub fn template(&self, name: &str, content: &str) -> &Project {
        self.file(&format!("templates/{name}"), content)
    }

    /// The folder that stands in for local host `name`'s `/` (its `deploy_root`).
    pub fn host_root(&self, name: &str) -> PathBuf {
        self.dir.path().join("roots").join(name)
    }

    /// A file on local host `name`, or None when missing.
    pub fn host_file(&self, name: &str, path: &str) -> Option<String> {
        fs::read_to_string(self.host_root(name).join(path.trim_start_matches('/'))).ok()
    }

    pub fn host_mode(&self, name: &str, path: &str) -> u32 {
        let meta = fs::metadata(self.host_root(name).join(path.trim_start_matches('/')))
            .expect("metadata");
        meta.permissions().mode() & 0o7777
    }

    /// Runs `deploy --repo <repo> ARGS` with NO_COLOR and HOME inside the project.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with_env(args, &[])
    }

    pub fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        self.run_full(args, env, None)
    }

    /// Runs with `env` added and `stdin` fed to the process (or no stdin).
    pub fn run_full(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
        self.run_from(None, args, env, stdin)
    }

    /// Runs `deploy ARGS` in the folder `rel` of the repo, without `--repo`: as an operator
    /// types it after `cd`-ing there (relative paths such as `-i inventories/hosts.ini` are
    /// relative to it).
    pub fn run_in(&self, rel: &str, args: &[&str]) -> Run {
        self.run_from(Some(rel), args, &[], None)
    }

    fn run_from(
        &self,
        cwd: Option<&str>,
        args: &[&str],
        env: &[(&str, &str)],
        stdin: Option<&str>,
    ) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_deploy"));
        match cwd {
            Some(rel) => {
                cmd.current_dir(self.dir.path().join(rel));
            }
            None => {
                cmd.arg("--repo").arg(self.dir.path());
            }
        }
        cmd.args(args)
            .env("NO_COLOR", "1")
            .env("HOME", self.dir.path().join("home"))
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("DEPLOY_AGE_IDENTITY")
            .env_remove("VISUAL")
            .env_remove("EDITOR")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("run deploy");
        if let Some(input) = stdin {
            use std::io::Write;
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(input.as_bytes()).expect("write stdin");
        }
        let out = child.wait_with_output().expect("wait for deploy");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Replaces the temp dir's path with `[REPO]` so snapshots are stable.
    pub fn filter(&self, text: &str) -> String {
        text.replace(&self.dir.path().display().to_string(), "[REPO]")
    }
}

impl Project {
    /// `deploy --repo <repo> ARGS` started in the background (stdout and stderr piped).
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        Command::new(env!("CARGO_BIN_EXE_deploy"))
            .arg("--repo")
            .arg(self.dir.path())
            .args(args)
            .env("NO_COLOR", "1")
            .env("HOME", self.dir.path().join("home"))
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn deploy")
    }

    /// Runs `deploy --repo <repo> ARGS` on a pseudo-terminal (util-linux `script`) and types
    /// `answer` and a newline once `prompt` shows (waiting at most 20 s), as a person would.
    /// Returns the exit code and everything the terminal showed.
    pub fn run_on_terminal(&self, args: &[&str], prompt: &str, answer: &str) -> (i32, String) {
        let command = format!(
            "{} --repo {} {}",
            env!("CARGO_BIN_EXE_deploy"),
            self.dir.path().display(),
            args.join(" ")
        );
        let home = self.dir.path().join("home");
        let mut terminal = super::terminal::Terminal::start(
            &command,
            &[
                ("HOME", home.as_os_str()),
                ("NO_COLOR", std::ffi::OsStr::new("1")),
            ],
        );
        terminal.answer(prompt, 1, answer);
        terminal.finish()
    }
}
