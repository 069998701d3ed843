//! `validate:` (Ansible's template/copy `validate`): the host checks each new file's
//! temporary copy before any of its files is replaced.

use crate::support::project::Project;

fn site(validate: &str) -> Project {
    let p = Project::new();
    p.local_hosts(&[("app", &["web1"])])
        .manifest(&format!(
            r#"
groups:
  app:
    files:
      - template: app.conf.j2
        dest: /etc/app.conf
        validate: {validate}
        notify: restart app
      - template: other.j2
        dest: /etc/other.conf
        notify: restart app
    handlers:
      - name: restart app
        run: echo restarted >> "$DEPLOY_ROOT/handlers.log"
"#
        ))
        .template("app.conf.j2", "{{ body }}\n")
        .template("other.j2", "other {{ body }}\n")
        .file("hosts/group_vars/app.yml", "body: 'syntax ok'\n");
    p
}

#[test]
fn a_failing_validate_replaces_nothing_runs_no_handler_and_shows_the_output() {
    // The validator sees the new content at %s (a path, shell-quoted).
    let p = site("\"grep -q 'syntax ok' %s || { echo \\\"bad config: $(cat %s)\\\"; exit 3; }\"");
    p.run(&["apply", "--yes"]).expect(0);
    assert_eq!(
        p.host_file("web1", "/etc/app.conf").as_deref(),
        Some("syntax ok\n")
    );
    assert_eq!(
        p.host_file("web1", "/handlers.log").as_deref(),
        Some("restarted\n")
    );

    p.file("hosts/group_vars/app.yml", "body: 'syntax broken'\n");
    let run = p.run(&["apply", "--yes"]).expect(1);
    assert!(
        run.stdout.contains("validate of /etc/app.conf failed"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("bad config: syntax broken"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("nothing was replaced"),
        "{}",
        run.stdout
    );
    // Neither file was replaced (the other one is valid, but the batch is one), no handler
    // ran, and no temporary copy is left.
    assert_eq!(
        p.host_file("web1", "/etc/app.conf").as_deref(),
        Some("syntax ok\n")
    );
    assert_eq!(
        p.host_file("web1", "/etc/other.conf").as_deref(),
        Some("other syntax ok\n")
    );
    assert_eq!(
        p.host_file("web1", "/handlers.log").as_deref(),
        Some("restarted\n")
    );
    let names: Vec<String> = std::fs::read_dir(p.host_root("web1").join("etc"))
        .expect("etc")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn validate_needs_percent_s() {
    let p = site("\"true\"");
    let run = p.run(&["plan"]).expect(1);
    assert!(run.stderr.contains("deploy.yml:7"), "{}", run.stderr);
    assert!(run.stderr.contains("has no `%s`"), "{}", run.stderr);
}
