//! Bad input: one clear error naming the file and line (or host), exit 1, no host touched.

use crate::support::project::Project;

fn minimal() -> Project {
    let p = Project::new();
    p.inventory("all:\n  vars:\n    ansible_connection: local\n  hosts:\n    alpha:\n      deploy_root: roots/alpha\n")
        .manifest("groups:\n  all:\n    files:\n      - template: a.j2\n        dest: /etc/a\n")
        .template("a.j2", "a = {{ inventory_hostname }}\n");
    p
}

fn error_of(p: &Project, args: &[&str]) -> String {
    let run = p.run(args).expect(1);
    assert!(!p.path().join("roots").exists(), "a host was touched");
    p.filter(&run.stderr)
}

#[test]
fn unknown_key_in_deploy_yml_names_file_line_and_column() {
    let p = minimal();
    p.manifest("groups:\n  all:\n    files:\n      - templat: a.j2\n        dest: /etc/a\n");
    insta::assert_snapshot!(error_of(&p, &["plan"]), @r"
    error: [REPO]/hosts/deploy.yml:4:9: unknown field `templat`, expected one of template, src, delete, state, dest, mode, owner, group, notify, newline, validate
      |
    4 |       - templat: a.j2
      |         ^
    ");
}

#[test]
fn malformed_inventory_names_file_line_and_column() {
    let p = minimal();
    p.inventory("all:\n  hosts:\n    alpha: {deploy_root: [\n");
    let err = error_of(&p, &["plan"]);
    assert!(
        err.starts_with("error: [REPO]/hosts/inventory.yml:3:"),
        "{err}"
    );
}

#[test]
fn notify_of_an_undeclared_handler() {
    let p = minimal();
    p.manifest("groups:\n  all:\n    files:\n      - template: a.j2\n        dest: /etc/a\n        notify: restart nothing\n");
    insta::assert_snapshot!(error_of(&p, &["plan"]), @r"
    error: [REPO]/hosts/deploy.yml:6:17: `restart nothing` is notified but no handler has that name
      hint: declare it under `handlers:` of a group
    ");
}

#[test]
fn missing_template() {
    let p = minimal();
    p.manifest("groups:\n  all:\n    files:\n      - template: nope.j2\n        dest: /etc/a\n");
    let err = error_of(&p, &["plan"]);
    assert!(err.contains("alpha") && err.contains("nope.j2"), "{err}");
}

#[test]
fn unknown_host_and_group_on_the_command_line() {
    let p = minimal();
    insta::assert_snapshot!(error_of(&p, &["plan", "--host", "alpah"]), @r"
    error: host `alpah` is not in the inventory
      hint: known hosts: alpha
    ");
    let err = error_of(&p, &["plan", "--group", "web"]);
    assert!(err.contains("group `web` is not in the inventory"), "{err}");
}

#[test]
fn two_groups_giving_one_dest_different_content() {
    let p = minimal();
    p.inventory("all:\n  vars:\n    ansible_connection: local\n  children:\n    web:\n      hosts:\n        alpha:\n          deploy_root: roots/alpha\n");
    p.manifest("groups:\n  all:\n    files:\n      - template: a.j2\n        dest: /etc/a\n  web:\n    files:\n      - template: b.j2\n        dest: /etc/a\n");
    p.template("b.j2", "b\n");
    insta::assert_snapshot!(error_of(&p, &["plan"]), @r"
    error: host alpha: /etc/a is given by group `all` (templates/a.j2) and by group `web` (templates/b.j2) with different content or mode
      hint: one destination can have only one owner group, or both must render the same
    ");
}

#[test]
fn bare_number_mode_is_refused() {
    let p = minimal();
    p.manifest("groups:\n  all:\n    files:\n      - template: a.j2\n        dest: /etc/a\n        mode: 644\n");
    let err = error_of(&p, &["plan"]);
    assert!(
        err.contains("deploy.yml:6:15") && err.contains("decimal"),
        "{err}"
    );
}

#[test]
fn relative_dest_is_refused() {
    let p = minimal();
    p.manifest("groups:\n  all:\n    files:\n      - template: a.j2\n        dest: etc/a\n");
    let err = error_of(&p, &["plan"]);
    assert!(
        err.contains("deploy.yml:5:15") && err.contains("not an absolute path"),
        "{err}"
    );
}
