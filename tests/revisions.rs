//! `--rev`: render the repo as it was at a git revision; rollback by `--rev HEAD~1` equals
//! rollback by `git revert` + apply. The working tree and index are never touched.

use crate::support::project::Project;

/// One local host and a committed history: workers 4, then workers 8.
fn history() -> Project {
    let p = Project::new();
    p.inventory("all:\n  vars:\n    ansible_connection: local\n  hosts:\n    alpha: {deploy_root: roots/alpha}\n")
        .file("hosts/group_vars/all.yml", "workers: 4\n")
        .manifest("groups:\n  all:\n    files:\n      - template: app.conf.j2\n        dest: /etc/app.conf\n")
        .template("app.conf.j2", "workers = {{ workers }}\n")
        .file(".gitignore", "roots/\nhome/\n");
    p.git(&["init", "-q", "-b", "main"]);
    p.git(&["add", "-A"]);
    p.git(&["commit", "-qm", "four workers"]);
    p.file("hosts/group_vars/all.yml", "workers: 8\n");
    p.git(&["commit", "-qam", "eight workers"]);
    p
}

#[test]
fn rev_renders_an_older_commit_without_touching_the_working_tree() {
    let p = history();
    p.run(&["apply", "--yes"]).expect(0);
    assert_eq!(
        p.host_file("alpha", "/etc/app.conf").as_deref(),
        Some("workers = 8\n")
    );
    // Uncommitted work in progress must survive --rev untouched.
    p.file("hosts/group_vars/all.yml", "workers: 16\n");
    let status_before = p.git(&["status", "--porcelain"]);

    let plan = p.run(&["plan", "--rev", "HEAD~1"]).expect(0);
    let short = p.git(&["rev-parse", "--short=12", "HEAD~1"]);
    assert!(
        plan.stdout
            .contains(&format!("Rendered from HEAD~1 ({})", short.trim())),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("-workers = 8\n") && plan.stdout.contains("+workers = 4\n"),
        "{}",
        plan.stdout
    );

    p.run(&["apply", "--yes", "--rev", "HEAD~1"]).expect(0);
    assert_eq!(
        p.host_file("alpha", "/etc/app.conf").as_deref(),
        Some("workers = 4\n")
    );
    assert_eq!(p.git(&["status", "--porcelain"]), status_before);
    assert_eq!(
        std::fs::read_to_string(p.path().join("hosts/group_vars/all.yml")).unwrap(),
        "workers: 16\n"
    );
}

#[test]
fn rollback_by_rev_equals_rollback_by_git_revert() {
    let p = history();
    p.run(&["apply", "--yes", "--rev", "HEAD~1"]).expect(0);
    let by_rev = p.host_file("alpha", "/etc/app.conf");
    p.run(&["apply", "--yes"]).expect(0);
    p.git(&["revert", "--no-edit", "HEAD"]);
    p.run(&["apply", "--yes"]).expect(0);
    assert_eq!(p.host_file("alpha", "/etc/app.conf"), by_rev);
    p.run(&["plan", "--detailed-exitcode", "--rev", "HEAD~2"])
        .expect(0);
}

#[test]
fn an_unknown_revision_is_a_clear_error() {
    let p = history();
    let run = p.run(&["plan", "--rev", "no-such-branch"]).expect(1);
    assert!(
        run.stderr.contains("--rev no-such-branch"),
        "{}",
        run.stderr
    );
    let outside = Project::new();
    outside
        .inventory("all:\n  hosts:\n    h:\n")
        .manifest("groups: {}\n");
    let run = outside.run(&["plan", "--rev", "HEAD"]).expect(1);
    assert!(run.stderr.contains("git repository"), "{}", run.stderr);
}
