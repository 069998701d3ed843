//! Privilege escalation (`ansible_become`, `-b`) against a real OpenSSH sshd on 127.0.0.1
//! that logs in a non-root user made for the test, with Debian's real sudo (and su) and
//! sudoers drop-ins per user: NOPASSWD, a password (right and wrong), not allowed,
//! requiretty, sudo missing from PATH.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

use crate::support::project::{Project, Run};
use crate::support::sshd::Sshd;
use crate::support::users;

/// One host `alpha` behind its own sshd, logging in as `login`. Its files go under `fs/`, a
/// root-owned 0755 folder the login user cannot write; `fs/root-only` (0700) is where the
/// handler logs, so only a handler running as root can.
struct BecomeHost {
    project: Project,
    sshd: Sshd,
}

impl BecomeHost {
    fn new(login: &str, sshd: Sshd, host_vars: &str) -> BecomeHost {
        let project = Project::new();
        let fs_root = sshd.dir().join("fs");
        fs::create_dir_all(fs_root.join("root-only")).expect("fs");
        fs::set_permissions(&fs_root, fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::set_permissions(fs_root.join("root-only"), fs::Permissions::from_mode(0o700))
            .expect("chmod");
        project.ssh_inventory(&sshd, login, &fs_root, host_vars);
        project
            .manifest(
                r#"
groups:
  all:
    files:
      - template: app.conf.j2
        dest: "{{ root }}/etc/app/app.conf"
        mode: "0640"
        owner: daemon
        group: daemon
        notify: restart app
    handlers:
      - name: restart app
        run: echo "restart $(id -un)" >> '{{ root }}/root-only/handlers.log'
"#,
            )
            .template("app.conf.j2", "host = {{ inventory_hostname }}\n")
            .trust(&sshd);
        BecomeHost { project, sshd }
    }

    fn root(&self) -> PathBuf {
        self.sshd.dir().join("fs")
    }

    fn conf(&self) -> PathBuf {
        self.root().join("etc/app/app.conf")
    }

    fn handler_log(&self) -> String {
        fs::read_to_string(self.root().join("root-only/handlers.log")).unwrap_or_default()
    }

    fn run(&self, args: &[&str]) -> Run {
        self.project.run(args)
    }
}

fn sshd_for(login: &str) -> Sshd {
    Sshd::builder().login_user(login).start()
}

/// The error line deploy printed for `alpha`.
fn error_line(run: &Run) -> String {
    run.stdout
        .lines()
        .find(|l| l.contains("alpha: error:"))
        .unwrap_or_else(|| panic!("no error line for alpha:\n{}\n{}", run.stdout, run.stderr))
        .to_string()
}

#[test]
fn sudo_without_a_password_writes_root_files_runs_a_root_handler_and_records_state() {
    let login = users::user("dpl-nopw", None, Some("dpl-nopw ALL=(ALL) NOPASSWD: ALL\n"));
    let host = BecomeHost::new(&login, sshd_for(&login), "");

    // As the login user, the root-owned folder refuses the write: nothing is written.
    let run = host.run(&["apply", "--yes"]).expect(1);
    assert!(run.stdout.contains("ermission denied"), "{}", run.stdout);
    assert!(!host.conf().exists());

    // With -b the same plan is applied as root: mode and owner as declared, the root-only
    // handler ran as root, the record is in the root-owned state folder, the lock is gone.
    let run = host.run(&["apply", "--yes", "-b"]).expect(0);
    assert!(run.stdout.contains("Plan: 1 to create"), "{}", run.stdout);
    assert_eq!(
        fs::read_to_string(host.conf()).expect("written"),
        "host = alpha\n"
    );
    let meta = fs::metadata(host.conf()).expect("meta");
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    assert_eq!(meta.uid(), users::uid("daemon"));
    assert_eq!(host.handler_log(), "restart root\n");
    let state = host.root().join("var/lib/deploy/state.json");
    assert_eq!(fs::metadata(&state).expect("state record").uid(), 0);
    assert!(!host.root().join("var/lib/deploy/lock.json").exists());
    let leftovers: Vec<_> = fs::read_dir(host.root().join("etc/app"))
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .filter(|n| n != "app.conf")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A second apply finds nothing to do and runs no handler.
    let run = host.run(&["apply", "--yes", "--become"]).expect(0);
    assert!(
        run.stdout.contains("0 to create, 0 to change, 1 unchanged"),
        "{}",
        run.stdout
    );
    assert_eq!(host.handler_log(), "restart root\n");
    // The plan reads as root too: status sees the record.
    host.run(&["status", "-b"]).expect(0);
}

#[test]
fn sudo_with_a_password_asks_once_takes_it_from_secrets_and_never_prints_it() {
    let password = "correct-horse-7d1f";
    let login = users::user("dpl-pw", Some(password), Some("dpl-pw ALL=(ALL) ALL\n"));
    let host = BecomeHost::new(&login, sshd_for(&login), "      ansible_become: true\n");
    let p = &host.project;

    // No password set: one line that says which variable to set, and where.
    let run = host.run(&["apply", "--yes"]).expect(1);
    let line = error_line(&run);
    assert!(line.contains("asked for dpl-pw's password"), "{line}");
    assert!(
        line.contains("ansible_become_password in secrets/alpha.yml.age"),
        "{line}"
    );
    assert!(!host.conf().exists());

    // A wrong password: refused after one attempt (sudo says so), never printed.
    p.file(
        "hosts/host_vars/alpha.yml",
        "ansible_become_password: wrong-password-51c9\n",
    );
    let run = host.run(&["apply", "--yes"]).expect(1);
    let line = error_line(&run);
    assert!(line.contains("refused the become password"), "{line}");
    assert!(line.contains("1 incorrect password attempt"), "{line}");
    let printed = format!("{}{}", run.stdout, run.stderr);
    assert!(!printed.contains("wrong-password-51c9"), "{printed}");
    assert!(!host.conf().exists());

    // The right one, from secrets/alpha.yml.age.
    fs::remove_file(p.path().join("hosts/host_vars/alpha.yml")).expect("rm");
    let (identity, public) = crate::support::age::keygen(p.path(), "identity.txt");
    p.file("secrets/recipients.txt", &format!("{public}\n"));
    crate::support::age::encrypt(
        &p.path().join("secrets/recipients.txt"),
        &format!("ansible_become_password: {password}\n"),
        &p.path().join("secrets/alpha.yml.age"),
    );
    let id = identity.to_str().expect("utf-8 path");
    let run = host.run(&["apply", "--yes", "--identity", id]).expect(0);
    let printed = format!("{}{}", run.stdout, run.stderr);
    assert!(!printed.contains(password), "{printed}");
    assert_eq!(
        fs::metadata(host.conf()).expect("written").uid(),
        users::uid("daemon")
    );
    assert_eq!(host.handler_log(), "restart root\n");
    let run = host.run(&["apply", "--yes", "--identity", id]).expect(0);
    assert!(run.stdout.contains("1 unchanged"), "{}", run.stdout);
    assert_eq!(host.handler_log(), "restart root\n");
}

#[test]
fn a_user_sudo_does_not_allow_gets_one_clear_line() {
    let login = users::user("dpl-denied", Some("denied-pw-3b"), None);
    let host = BecomeHost::new(
        &login,
        sshd_for(&login),
        "      ansible_become: true\n      ansible_become_password: denied-pw-3b\n",
    );
    let run = host.run(&["apply", "--yes"]).expect(1);
    let line = error_line(&run);
    assert!(
        line.contains("dpl-denied may not run commands as root"),
        "{line}"
    );
    assert!(line.contains("not in the sudoers file"), "{line}");
    assert!(!line.contains("denied-pw-3b"), "{line}");
    assert!(!host.conf().exists());
}

#[test]
fn requiretty_and_a_missing_sudo_are_named() {
    let login = users::user(
        "dpl-tty",
        None,
        Some("Defaults:dpl-tty requiretty\ndpl-tty ALL=(ALL) NOPASSWD: ALL\n"),
    );
    let host = BecomeHost::new(&login, sshd_for(&login), "      ansible_become: yes\n");
    let line = error_line(&host.run(&["plan"]).expect(1));
    assert!(line.contains("requiretty"), "{line}");
    assert!(line.contains("Defaults:dpl-tty !requiretty"), "{line}");

    let login = users::user(
        "dpl-nopath",
        None,
        Some("dpl-nopath ALL=(ALL) NOPASSWD: ALL\n"),
    );
    let sshd = Sshd::builder()
        .login_user(&login)
        .session_path("/nonexistent-bin")
        .start();
    let host = BecomeHost::new(&login, sshd, "      ansible_become: true\n");
    let line = error_line(&host.run(&["plan"]).expect(1));
    assert!(line.contains("sudo is not installed"), "{line}");
}

#[test]
fn su_becomes_another_user_with_that_users_password() {
    let target = users::user("dpl-su-target", Some("su-target-pw-88"), None);
    let login = users::user("dpl-su-login", None, None);
    let host = BecomeHost::new(
        &login,
        sshd_for(&login),
        &format!(
            "      ansible_become: true\n      ansible_become_method: su\n      ansible_become_user: {target}\n      ansible_become_password: su-target-pw-88\n"
        ),
    );
    // The target user's own folder, which only it can write; the handler logs there too.
    let app = host.root().join("app");
    fs::create_dir_all(&app).expect("app dir");
    let status = std::process::Command::new("chown")
        .arg(format!("{target}:"))
        .arg(&app)
        .status()
        .expect("chown");
    assert!(status.success());
    let p = &host.project;
    p.manifest(
        r#"
groups:
  all:
    files:
      - template: app.conf.j2
        dest: "{{ root }}/app/app.conf"
        notify: restart app
    handlers:
      - name: restart app
        run: echo "restart $(id -un)" >> '{{ root }}/app/handlers.log'
"#,
    );
    let state = "deploy_state_path: \"{{ root }}/app/state/state.json\"\n";
    p.file("hosts/host_vars/alpha.yml", state);
    let run = host.run(&["apply", "--yes"]).expect(0);
    assert!(!format!("{}{}", run.stdout, run.stderr).contains("su-target-pw-88"));
    let conf = app.join("app.conf");
    assert_eq!(
        fs::metadata(&conf).expect("written").uid(),
        users::uid(&target)
    );
    assert_eq!(
        fs::read_to_string(app.join("handlers.log")).expect("handler ran"),
        format!("restart {target}\n")
    );
    let run = host.run(&["apply", "--yes"]).expect(0);
    assert!(run.stdout.contains("1 unchanged"), "{}", run.stdout);

    // A wrong su password fails the host in one line, without printing it.
    p.file(
        "hosts/host_vars/alpha.yml",
        &format!("{state}ansible_become_password: not-the-su-pw\n"),
    );
    let run = host.run(&["plan"]).expect(1);
    let line = error_line(&run);
    assert!(line.contains("su refused the become password"), "{line}");
    assert!(!run.stdout.contains("not-the-su-pw"), "{}", run.stdout);
}

/// Copies the folder `from` into `to`, recursively.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("read_dir").filter_map(Result::ok) {
        let path = entry.path();
        let dest = to.join(entry.file_name());
        if path.is_dir() {
            copy_tree(&path, &dest);
        } else {
            fs::copy(&path, &dest).expect("copy");
        }
    }
}

/// The repo's own fleet, with motoko standing in on a local sshd: everything as in hosts/
/// except where motoko is and the folders under its stand-in root. `systemctl` is a shim
/// that logs its arguments and uid (there is no systemd here).
struct StandInMotoko {
    project: Project,
    sshd: Sshd,
}

impl StandInMotoko {
    fn new(sshd: Sshd, litellm_port: u16, extra: &str) -> StandInMotoko {
        let project = Project::new();
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        for dir in ["hosts", "templates", "secrets"] {
            copy_tree(&repo.join(dir), &project.path().join(dir));
        }
        let root = sshd.dir().join("fs");
        fs::create_dir_all(&root).expect("fs");
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).expect("chmod");
        project.file(
            "hosts/host_vars/motoko.yml",
            &format!(
                "ansible_host: 127.0.0.1\nansible_port: {port}\nansible_user: {login}\n\
                 ansible_ssh_private_key_file: {key}\nlitellm_port: {litellm_port}\n\
                 litellm_dir: {root}/opt/litellm\nsystemd_unit_dir: {root}/etc/systemd/system\n\
                 deploy_state_path: {root}/var/lib/deploy/state.json\n{extra}",
                port = sshd.port(),
                login = sshd.login(),
                key = sshd.client_key().display(),
                root = root.display(),
            ),
        );
        project.trust(&sshd);
        StandInMotoko { project, sshd }
    }

    fn run(&self, args: &[&str]) -> Run {
        let identity = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/fleet-demo-identity.txt");
        let mut all = args.to_vec();
        let identity = identity.display().to_string();
        all.extend(["--host", "motoko", "--identity", &identity]);
        self.project.run(&all)
    }

    /// Output with this stand-in's paths and ports replaced, to compare two stand-ins.
    fn normalized(&self, text: &str) -> String {
        self.project
            .filter(text)
            .replace(&self.sshd.dir().display().to_string(), "[HOST]")
            .replace(&format!(":{}", self.sshd.port()), ":[PORT]")
            .replace(self.sshd.login(), "[LOGIN]")
    }

    /// Every file under the stand-in root: path, mode, owner uid, content.
    fn files(&self) -> Vec<(String, u32, u32, String)> {
        let mut out = Vec::new();
        let root = self.sshd.dir().join("fs");
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for e in fs::read_dir(&dir).expect("read_dir").filter_map(Result::ok) {
                let path = e.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let meta = fs::metadata(&path).expect("meta");
                let rel = path
                    .strip_prefix(&root)
                    .expect("under root")
                    .display()
                    .to_string();
                // The record holds times and the controller's user; compare its presence.
                let content = if rel.ends_with("state.json") {
                    String::new()
                } else {
                    self.normalized(&fs::read_to_string(&path).expect("text"))
                };
                out.push((rel, meta.permissions().mode() & 0o7777, meta.uid(), content));
            }
        }
        out.sort();
        out
    }
}

/// A folder holding a `systemctl` that logs its arguments and uid to `systemctl.log` beside
/// it (there is no systemd here).
fn systemctl_shim() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("shim dir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let shim = dir.path().join("systemctl");
    fs::write(
        &shim,
        format!(
            "#!/bin/sh\necho \"systemctl $* uid=$(id -u)\" >> '{}/systemctl.log'\n",
            dir.path().display()
        ),
    )
    .expect("shim");
    fs::set_permissions(&shim, fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

#[test]
fn the_real_fleets_motoko_over_sudo_plans_and_applies_as_a_root_login_does() {
    let litellm = crate::support::http::serve(|path| match path {
        "/health/liveliness" => (200, "\"I'm alive!\"".into()),
        _ => (404, "{}".into()),
    });
    let path_of = |shim: &tempfile::TempDir| {
        format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", shim.path().display())
    };
    // mdt's stand-in: sudo with the stand-in password of secrets/motoko.yml.age; sudo's
    // secure_path starts at the shim.
    let sudo_shim = systemctl_shim();
    let login = users::user(
        "dpl-mdt",
        Some("mdt-sudo-REPLACE_ME"),
        Some(&format!(
            "Defaults:dpl-mdt secure_path=\"{}\"\ndpl-mdt ALL=(ALL) ALL\n",
            path_of(&sudo_shim)
        )),
    );
    let with_sudo = StandInMotoko::new(
        Sshd::builder()
            .login_user(&login)
            .session_path(&path_of(&sudo_shim))
            .start(),
        litellm,
        "",
    );
    // The same host logged in as root, become off.
    let root_shim = systemctl_shim();
    let as_root = StandInMotoko::new(
        Sshd::builder().session_path(&path_of(&root_shim)).start(),
        litellm,
        "ansible_become: false\n",
    );

    let plans: Vec<String> = [&with_sudo, &as_root]
        .iter()
        .map(|m| {
            let run = m.run(&["plan"]).expect(0);
            assert!(run.stdout.contains("Plan: 4 to create"), "{}", run.stdout);
            m.normalized(&run.stdout)
        })
        .collect();
    assert_eq!(plans[0], plans[1], "the plan as mdt with sudo and as root");
    assert!(!plans[0].contains("mdt-sudo-REPLACE_ME"), "{}", plans[0]);

    for m in [&with_sudo, &as_root] {
        let run = m.run(&["apply", "--yes"]).expect(0);
        assert!(run.stdout.contains("litellm is up"), "{}", run.stdout);
        let again = m.run(&["apply", "--yes"]).expect(0);
        assert!(
            again
                .stdout
                .contains("0 to create, 0 to change, 4 unchanged"),
            "{}",
            again.stdout
        );
    }
    let files = with_sudo.files();
    assert_eq!(
        files,
        as_root.files(),
        "the files as mdt with sudo and as root"
    );
    assert!(
        files
            .iter()
            .any(|(p, mode, uid, _)| p == "opt/litellm/.env" && *mode == 0o600 && *uid == 0),
        "{files:?}"
    );
    for shim in [&sudo_shim, &root_shim] {
        assert_eq!(
            fs::read_to_string(shim.path().join("systemctl.log")).expect("handlers ran"),
            "systemctl daemon-reload uid=0\nsystemctl restart litellm uid=0\n"
        );
    }
}

#[test]
fn ask_become_pass_asks_once_on_the_terminal_for_every_session() {
    let password = "correct-horse-7d1f";
    let login = users::user("dpl-pw", Some(password), Some("dpl-pw ALL=(ALL) ALL\n"));
    let host = BecomeHost::new(&login, sshd_for(&login), "");
    // A real terminal for -K (util-linux `script`), the password typed at the prompt.
    let (code, printed) = host.project.run_on_terminal(
        &["apply", "--yes", "-b", "-K"],
        "BECOME password:",
        password,
    );
    assert_eq!(code, 0, "{printed}");
    assert_eq!(printed.matches("BECOME password:").count(), 1, "{printed}");
    assert!(!printed.contains(password), "{printed}");
    assert_eq!(
        fs::read_to_string(host.conf()).expect("written"),
        "host = alpha\n"
    );
    assert_eq!(host.handler_log(), "restart root\n");
}

#[test]
fn validate_runs_as_the_become_user_before_anything_is_replaced() {
    let login = users::user("dpl-nopw", None, Some("dpl-nopw ALL=(ALL) NOPASSWD: ALL\n"));
    let host = BecomeHost::new(&login, sshd_for(&login), "      ansible_become: true\n");
    let manifest = |validate: &str| {
        format!(
            r#"
groups:
  all:
    files:
      - template: app.conf.j2
        dest: "{{{{ root }}}}/etc/app/app.conf"
        validate: {validate}
        notify: restart app
    handlers:
      - name: restart app
        run: echo "restart $(id -un)" >> '{{{{ root }}}}/root-only/handlers.log'
"#
        )
    };
    // Root's validator (only root can read root-only/), given the temporary copy.
    host.project.manifest(&manifest(
        "\"test \\\"$(id -u)\\\" = 0 && grep -q alpha %s && echo checked >> '{{ root }}/root-only/validated'\"",
    ));
    host.run(&["apply", "--yes"]).expect(0);
    assert_eq!(
        fs::read_to_string(host.root().join("root-only/validated")).expect("validator ran"),
        "checked\n"
    );
    assert_eq!(host.handler_log(), "restart root\n");

    // A validator that fails: the old file stays, no handler, its output in the report.
    host.project
        .template("app.conf.j2", "host = {{ inventory_hostname }} (new)\n")
        .manifest(&manifest(
            "\"test -s %s && echo 'refused by the validator' >&2; exit 1\"",
        ));
    let run = host.run(&["apply", "--yes"]).expect(1);
    assert!(
        run.stdout.contains("refused by the validator"),
        "{}",
        run.stdout
    );
    assert_eq!(
        fs::read_to_string(host.conf()).expect("kept"),
        "host = alpha\n"
    );
    assert_eq!(host.handler_log(), "restart root\n");
}
