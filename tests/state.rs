//! The deploy record on each host, `deploy status`, pending handlers, the host lock and
//! `deploy unlock`, over real sshd hosts (see `ssh_apply.rs` for the fleet).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::ssh_apply::SshFleet;
use crate::support::project::{Project, Run};

/// Runs git in the project (throwaway identity, no user config).
fn git(p: &Project, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(p.path())
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.com",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .env("HOME", p.path().join("home"))
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Makes the project a git repo with one commit; the hosts' folders are not part of it.
fn commit_all(p: &Project) -> String {
    p.file(".gitignore", "hosts-fs/\nhome/\n");
    git(p, &["init", "-q"]);
    git(p, &["add", "-A"]);
    git(p, &["commit", "-q", "-m", "first"]);
    git(p, &["rev-parse", "HEAD"])
}

/// `deploy apply --yes ARGS` started in the background.
fn spawn_apply(p: &Project, args: &[&str]) -> Child {
    p.spawn(&[&["apply", "--yes"], args].concat())
}

fn finish(child: Child) -> Run {
    let out = child.wait_with_output().expect("wait for deploy");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "waited for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

const STATE: &str = "var/lib/deploy/state.json";
const LOCK: &str = "var/lib/deploy/lock.json";

/// The app group's manifest with `restart app` replaced by `restart`.
fn manifest_with_restart(p: &Project, restart: &str) {
    p.manifest(&format!(
        r#"
groups:
  app:
    files:
      - template: app.conf.j2
        dest: "{{{{ root }}}}/etc/app/app.conf"
        mode: "0640"
        notify: restart app
      - template: unit.j2
        dest: "{{{{ root }}}}/etc/systemd/system/app.service"
        notify: [reload systemd, restart app]
    handlers:
      - name: reload systemd
        run: echo reload >> '{{{{ root }}}}/handlers.log'
      - name: restart app
        run: {restart}
"#
    ));
}

#[test]
fn status_shows_the_deployed_commit_how_far_behind_and_drift() {
    let fleet = SshFleet::new(&["alpha"], true);
    let p = &fleet.project;
    let head = commit_all(p);
    let short = &head[..7];

    p.run(&["apply", "--yes"]).expect(0);
    let record = fs::read_to_string(fleet.root("alpha").join(STATE)).unwrap();
    assert!(
        record.contains(&format!("\"commit\": \"{head}\"")),
        "{record}"
    );
    assert!(
        !record.contains("workers = 4"),
        "contents in the record: {record}"
    );
    let mode = fs::metadata(fleet.root("alpha").join(STATE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(!fleet.root("alpha").join(LOCK).exists(), "lock left behind");

    let run = p.run(&["status"]).expect(0);
    assert!(
        run.stdout
            .contains(&format!("alpha: deployed {short} (at HEAD)")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("Status: 1 host clean."),
        "{}",
        run.stdout
    );

    p.file("README.md", "a commit that changes no host\n");
    git(p, &["add", "-A"]);
    git(p, &["commit", "-q", "-m", "second"]);
    let run = p.run(&["status"]).expect(0);
    assert!(
        run.stdout
            .contains(&format!("alpha: deployed {short} (1 commit behind HEAD)")),
        "{}",
        run.stdout
    );

    // Someone edits a file on the host behind deploy's back.
    let conf = fleet.root("alpha").join("etc/app/app.conf");
    fs::write(&conf, "edited by hand\n").unwrap();
    let run = p.run(&["status"]).expect(2);
    let path = conf.display().to_string();
    assert!(
        run.stdout.contains(&format!(
            "  drift: {path} changed on the host since that deploy"
        )),
        "{}",
        run.stdout
    );

    // A dirty working tree is recorded as such.
    p.file("README.md", "uncommitted\n");
    p.run(&["apply", "--yes"]).expect(0);
    let record = fs::read_to_string(fleet.root("alpha").join(STATE)).unwrap();
    assert!(record.contains("-dirty\""), "{record}");
}

#[test]
fn a_failing_handler_stays_pending_and_runs_on_the_next_apply() {
    let fleet = SshFleet::new(&["alpha"], true);
    let p = &fleet.project;
    manifest_with_restart(
        p,
        "test -e '{{ root }}/ready' && echo restart >> '{{ root }}/handlers.log'",
    );
    let head = commit_all(p);

    let run = p.run(&["apply", "--yes"]).expect(1);
    assert!(run.stdout.contains("(left pending)"), "{}", run.stdout);
    assert_eq!(fleet.log("alpha"), "reload\n");
    let run = p.run(&["status"]).expect(2);
    assert!(
        run.stdout.contains(&format!(
            "  pending handler: restart app (from {})",
            &head[..7]
        )),
        "{}",
        run.stdout
    );
    let plan = p.run(&["plan", "--detailed-exitcode"]).expect(2);
    assert!(
        plan.stdout
            .contains(&format!("(pending from {})", &head[..7])),
        "{}",
        plan.stdout
    );
    assert!(plan.stdout.contains("0 to change"), "{}", plan.stdout);

    fs::write(fleet.root("alpha").join("ready"), "").unwrap();
    let run = p.run(&["apply", "--yes"]).expect(0);
    assert!(
        run.stdout.contains("Apply: 0 files written, 1 handler run"),
        "{}",
        run.stdout
    );
    assert_eq!(fleet.log("alpha"), "reload\nrestart\n");
    p.run(&["status"]).expect(0);
    // Cleared: nothing more to do.
    let run = p.run(&["apply", "--yes"]).expect(0);
    assert!(!run.stdout.contains("Apply:"), "{}", run.stdout);
    assert_eq!(fleet.log("alpha"), "reload\nrestart\n");
}

#[test]
fn force_handlers_runs_the_handlers_after_a_failing_one() {
    let fleet = SshFleet::new(&["alpha"], true);
    let p = &fleet.project;
    p.manifest(
        r#"
groups:
  app:
    files:
      - template: app.conf.j2
        dest: "{{ root }}/etc/app/app.conf"
        notify: [first, second]
    handlers:
      - name: first
        run: "false"
      - name: second
        run: echo second >> '{{ root }}/handlers.log'
"#,
    );
    p.run(&["apply", "--yes", "--force-handlers"]).expect(1);
    assert_eq!(fleet.log("alpha"), "second\n");
    let run = p.run(&["status"]).expect(2);
    assert!(
        run.stdout.contains("pending handler: first"),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("pending handler: second"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_run_killed_before_its_handlers_leaves_them_pending_and_its_lock_breakable() {
    let fleet = SshFleet::new(&["alpha"], true);
    let p = &fleet.project;
    // The first handler kills deploy itself: the lock names its pid.
    p.manifest(
        r#"
groups:
  app:
    files:
      - template: app.conf.j2
        dest: "{{ root }}/etc/app/app.conf"
        mode: "0640"
        notify: restart app
      - template: unit.j2
        dest: "{{ root }}/etc/systemd/system/app.service"
        notify: [reload systemd, restart app]
    handlers:
      - name: reload systemd
        run: |
          kill -KILL $(sed -n 's/.*"pid": \([0-9]*\).*/\1/p' '{{ root }}/var/lib/deploy/lock.json')
          sleep 1
      - name: restart app
        run: echo restart >> '{{ root }}/handlers.log'
"#,
    );
    let run = p.run(&["apply", "--yes"]);
    assert_eq!(run.code, -1, "deploy was not killed: {run:?}");
    assert!(fleet.read("alpha", "etc/app/app.conf").is_some());
    assert_eq!(fleet.log("alpha"), "");

    // The host's handler script saw its session die (its next output broke the pipe) and
    // released the lock on its way out, running nothing more. (A lock left by a host that
    // could not do so, e.g. one that rebooted, is broken by the next apply: see debris.rs.)
    let lock = fleet.root("alpha").join(LOCK);
    wait_for("the host script to release the lock", || !lock.exists());

    // Both handlers are pending; the next apply runs them though no file changes.
    manifest_with_restart(p, "echo restart >> '{{ root }}/handlers.log'");
    let run = p.run(&["apply", "--yes"]).expect(0);
    assert!(run.stdout.contains("pending from"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("Apply: 0 files written, 2 handlers run"),
        "{}",
        run.stdout
    );
    assert_eq!(fleet.log("alpha"), "reload\nrestart\n");
    p.run(&["status"]).expect(0);
}

#[test]
fn two_applies_to_one_host_refuse_or_wait_and_never_repeat_work() {
    let fleet = SshFleet::new(&["alpha"], true);
    let p = &fleet.project;
    manifest_with_restart(p, "sleep 2; echo restart >> '{{ root }}/handlers.log'");
    let lock = fleet.root("alpha").join(LOCK);

    // The second run refuses at once and names the holder.
    let first = spawn_apply(p, &[]);
    wait_for("the first run's lock", || lock.exists());
    let second = p.run(&["apply", "--yes"]).expect(1);
    assert!(second.stdout.contains("locked by"), "{}", second.stdout);
    let user = crate::support::sshd::current_user();
    assert!(
        second.stdout.contains(&format!("{user}@")),
        "{}",
        second.stdout
    );
    // A live lock is not broken without --force.
    let unlock = p.run(&["unlock", "--host", "alpha"]).expect(1);
    assert!(
        unlock.stdout.contains("still running here"),
        "{}",
        unlock.stdout
    );
    finish(first).expect(0);
    assert_eq!(fleet.log("alpha"), "reload\nrestart\n");
    assert!(!lock.exists());

    // With --lock-timeout the second waits, then finds the work done: nothing written twice,
    // no handler run twice.
    p.file("hosts/host_vars/alpha.yml", "workers: 8\n");
    let first = spawn_apply(p, &[]);
    wait_for("the first run's lock", || lock.exists());
    let second = p.run(&["apply", "--yes", "--lock-timeout", "30"]).expect(0);
    let first = finish(first).expect(0);
    assert!(
        first
            .stdout
            .contains("Apply: 2 files written, 2 handlers run"),
        "{}",
        first.stdout
    );
    // It waited and then had nothing left to do (or, on a slow machine, read the host only
    // after the first run had finished): either way it wrote nothing and ran nothing.
    assert!(
        second
            .stdout
            .contains("Apply: 0 files written, 0 handlers run")
            || !second.stdout.contains("Apply:"),
        "{}",
        second.stdout
    );
    assert_eq!(fleet.log("alpha"), "reload\nrestart\nreload\nrestart\n");
    p.run(&["status"]).expect(0);
}

#[test]
fn a_local_host_keeps_its_record_under_deploy_root() {
    let p = Project::new();
    p.inventory("all:\n  vars:\n    ansible_connection: local\n  hosts:\n    alpha:\n      deploy_root: roots/alpha\n")
        .manifest("groups:\n  all:\n    files:\n      - template: a.j2\n        dest: /etc/a.conf\n")
        .template("a.j2", "a = 1\n");
    p.run(&["apply", "--yes"]).expect(0);
    let record = p.host_file("alpha", "/var/lib/deploy/state.json").unwrap();
    assert!(record.contains("\"commit\": \"unknown\""), "{record}");
    assert!(record.contains("\"/etc/a.conf\""), "{record}");
    let run = p.run(&["status"]).expect(0);
    assert!(
        run.stdout
            .contains("alpha: deployed unknown (not from git)"),
        "{}",
        run.stdout
    );
    p.template("a.j2", "a = 2\n");
    let run = p.run(&["status"]).expect(2);
    assert!(run.stdout.contains("to apply: 1 file"), "{}", run.stdout);
}

#[test]
fn ctrl_c_lets_the_running_handler_finish_leaves_the_rest_pending_and_unlocks() {
    let fleet = SshFleet::new(&["alpha"], true);
    let p = &fleet.project;
    p.manifest(
        r#"
groups:
  app:
    files:
      - template: app.conf.j2
        dest: "{{ root }}/etc/app/app.conf"
        notify: [slow, after]
    handlers:
      - name: slow
        run: touch '{{ root }}/started'; sleep 2; echo slow >> '{{ root }}/handlers.log'
      - name: after
        run: echo after >> '{{ root }}/handlers.log'
"#,
    );
    let child = spawn_apply(p, &[]);
    let started = fleet.root("alpha").join("started");
    wait_for("the slow handler", || started.exists());
    let pid = child.id().to_string();
    let kill = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(kill.success());
    let run = finish(child);
    assert_eq!(run.code, 130, "{run:?}");
    assert_eq!(fleet.log("alpha"), "slow\n");
    assert!(!fleet.root("alpha").join(LOCK).exists(), "lock left behind");
    let status = p.run(&["status"]).expect(2);
    assert!(
        status.stdout.contains("pending handler: after"),
        "{}",
        status.stdout
    );
    assert!(
        !status.stdout.contains("pending handler: slow"),
        "{}",
        status.stdout
    );
    p.run(&["apply", "--yes"]).expect(0);
    assert_eq!(fleet.log("alpha"), "slow\nafter\n");
}
