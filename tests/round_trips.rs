//! Round trips per host, counted, never timed. Every script deploy runs on a host goes
//! through one long-lived channel per connection, a request and its answer each: sshd's own
//! log (LogLevel VERBOSE, one `Starting session: command` line per channel) must show that
//! one channel, and `deploy apply --json` reports the host's `round_trips` (requests
//! answered, plus sudo's password prompt). Targets (issue 15): a plan or a no-change apply 1;
//! an apply with changes and its handlers at most 3 after the plan's read (lock and re-read;
//! write and record; handlers, records and unlock), whatever the number of files and
//! handlers, become on or off. A become password adds sudo's prompt turn once per
//! connection. Real sshd on 127.0.0.1, real sudo. (What a round trip costs on the wire is
//! measured by the benchmark's latency proxy, bench/latency-proxy, which counts turns.)

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use crate::support::project::{Project, Run};
use crate::support::sshd::{self, Sshd};
use crate::support::users;

struct Host {
    project: Project,
    sshd: Sshd,
}

impl Host {
    /// A host logging in as `login` (with `host_vars` added to its inventory entry), whose
    /// files go under the sshd's temp folder: three files notifying two handlers, and one
    /// that notifies none.
    fn new(login: &str, host_vars: &str) -> Host {
        let sshd = Sshd::builder().login_user(login).start();
        let project = Project::new();
        let root = sshd.dir().join("fs");
        fs::create_dir_all(&root).expect("fs");
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).expect("chmod");
        project.ssh_inventory(&sshd, login, &root, host_vars);
        project
            .manifest(
                r#"
groups:
  all:
    files:
      - template: a.j2
        dest: "{{ root }}/etc/app/a.conf"
        notify: restart app
      - template: b.j2
        dest: "{{ root }}/etc/app/b.conf"
        notify: [reload, restart app]
      - template: c.j2
        dest: "{{ root }}/etc/other/c.conf"
        notify: reload
      - template: d.j2
        dest: "{{ root }}/etc/other/d.conf"
    handlers:
      - name: reload
        run: echo "reload $(id -un)" >> '{{ root }}/handlers.log'
      - name: restart app
        run: echo "restart $(id -un)"; echo "restart $(id -un)" >> '{{ root }}/handlers.log'
"#,
            )
            .template("a.j2", "a = 1\n")
            .template("b.j2", "b = 1\n")
            .template("c.j2", "c = 1\n")
            .template("d.j2", "d = 1\n")
            .trust(&sshd);
        Host { project, sshd }
    }

    fn root(&self) -> PathBuf {
        self.sshd.dir().join("fs")
    }

    fn handler_log(&self) -> String {
        fs::read_to_string(self.root().join("handlers.log")).unwrap_or_default()
    }

    /// Runs deploy; returns the run and how many channels sshd started for it.
    fn count(&self, args: &[&str], code: i32) -> (Run, usize) {
        let before = self.sshd.sessions();
        let run = self.project.run(args).expect(code);
        (run, self.sshd.sessions() - before)
    }

    /// `deploy apply --yes --json ARGS` exiting with `code`: the run and the host's
    /// `round_trips` as deploy reports it, once sshd's log showed the run used one channel.
    fn apply_code(&self, args: &[&str], code: i32) -> (Run, u64) {
        let mut all = vec!["apply", "--yes", "--json"];
        all.extend_from_slice(args);
        let (run, sessions) = self.count(&all, code);
        assert_eq!(
            sessions,
            1,
            "one channel for the whole run: {}\n{}",
            run.stdout,
            self.sshd.log()
        );
        let doc: serde_json::Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("apply --json is not JSON ({e}):\n{}", run.stdout));
        let host = &doc["hosts"][0];
        assert_eq!(host["host"], "alpha", "{doc}");
        let trips = host["round_trips"]
            .as_u64()
            .unwrap_or_else(|| panic!("no round_trips: {doc}"));
        (run, trips)
    }

    fn apply(&self, args: &[&str]) -> (Run, u64) {
        self.apply_code(args, 0)
    }
}

/// Plan, the first apply (4 files, 2 handlers), a no-change apply, a change notifying
/// nothing, a change notifying both handlers: one channel each, and deploy's count of
/// requests (`prompt_turns` extra per connection with a become password).
fn scenarios(host: &Host, args: &[&str], prompt_turns: u64, user: &str) {
    let mut plan = vec!["plan"];
    plan.extend_from_slice(args);
    let (_, sessions) = host.count(&plan, 0);
    assert_eq!(sessions, 1, "plan: {}", host.sshd.log());

    // Everything new: read; lock + re-read; write 4 files + record; 2 handlers, each
    // recorded, + unlock.
    let (run, trips) = host.apply(args);
    assert_eq!(trips, 4 + prompt_turns, "first apply: {}", run.stdout);
    assert_eq!(
        host.handler_log(),
        format!("reload {user}\nrestart {user}\n")
    );
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let handlers = &doc["hosts"][0]["handlers"];
    assert_eq!(handlers[0]["name"], "reload", "{doc}");
    assert_eq!(handlers[1]["name"], "restart app", "{doc}");
    // Each handler's own output, apart.
    assert_eq!(handlers[0]["stdout"], "", "{doc}");
    assert_eq!(handlers[1]["stdout"], format!("restart {user}\n"), "{doc}");
    assert_eq!(doc["hosts"][0]["written"].as_array().map(Vec::len), Some(4));
    assert!(!host.root().join("var/lib/deploy/lock.json").exists());
    let status = host.project.run(&[&["status"], args].concat()).expect(0);
    assert!(!status.stdout.contains("pending"), "{}", status.stdout);

    // Nothing to do: the plan's read only.
    let (run, trips) = host.apply(args);
    assert_eq!(trips, 1 + prompt_turns, "no-change apply: {}", run.stdout);

    // One file that notifies nothing: the write batch releases the lock.
    host.project.template("d.j2", "d = 2\n");
    let (run, trips) = host.apply(args);
    assert_eq!(
        trips,
        3 + prompt_turns,
        "a change without handlers: {}",
        run.stdout
    );

    // Three files, both handlers again.
    for t in ["a.j2", "b.j2", "c.j2"] {
        host.project.template(t, "changed\n");
    }
    let (run, trips) = host.apply(args);
    assert_eq!(
        trips,
        4 + prompt_turns,
        "a change with handlers: {}",
        run.stdout
    );
    assert_eq!(
        host.handler_log(),
        format!("reload {user}\nrestart {user}\n").repeat(2)
    );
    assert!(!host.root().join("var/lib/deploy/lock.json").exists());
    host.project.run(&[&["status"], args].concat()).expect(0);
}

#[test]
fn ssh_plan_and_apply_round_trips_per_host() {
    let login = sshd::current_user();
    let host = Host::new(&login, "");
    scenarios(&host, &[], 0, &login);
}

#[test]
fn sudo_without_a_password_takes_the_same_round_trips() {
    let login = users::user(
        "dpl-rt-nopw",
        None,
        Some("dpl-rt-nopw ALL=(ALL) NOPASSWD: ALL\n"),
    );
    let host = Host::new(&login, "");
    scenarios(&host, &["-b"], 0, "root");
}

#[test]
fn sudo_with_a_password_adds_one_prompt_turn_per_connection() {
    let password = "rt-horse-93ac";
    let login = users::user(
        "dpl-rt-pw",
        Some(password),
        Some("dpl-rt-pw ALL=(ALL) ALL\n"),
    );
    let host = Host::new(
        &login,
        &format!("      ansible_become: true\n      ansible_become_password: {password}\n"),
    );
    scenarios(&host, &[], 1, "root");
}

#[test]
fn a_failing_handler_stops_the_later_ones_in_the_same_round_trip() {
    let login = sshd::current_user();
    let host = Host::new(&login, "");
    host.project.file(
        "hosts/deploy.yml",
        &fs::read_to_string(host.project.path().join("hosts/deploy.yml"))
            .expect("manifest")
            .replace(
                "run: echo \"reload $(id -un)\" >> '{{ root }}/handlers.log'",
                "run: echo reload broke >&2; exit 3",
            ),
    );
    let (run, trips) = host.apply_code(&[], 1);
    assert_eq!(trips, 4, "{}", run.stdout);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let failed = &doc["hosts"][0]["handlers"][0];
    assert_eq!(failed["name"], "reload", "{doc}");
    assert_eq!(failed["status"], 3, "{doc}");
    assert_eq!(failed["stderr"], "reload broke\n", "{doc}");
    assert_eq!(host.handler_log(), "");
    assert!(!host.root().join("var/lib/deploy/lock.json").exists());
    let status = host.project.run(&["status"]).expect(2);
    assert!(
        status.stdout.contains("pending handler: reload"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("pending handler: restart app"),
        "{}",
        status.stdout
    );
}
