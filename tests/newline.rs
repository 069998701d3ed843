//! Line endings: a host's `deploy_newline` var or a file's `newline:` converts the rendered
//! text (Windows hosts get CRLF, as Ansible's win_template writes).

use crate::support::project::Project;

fn project() -> Project {
    let p = Project::new();
    p.inventory(
        r#"
all:
  vars:
    ansible_connection: local
  children:
    linux:
      hosts:
        tux:
          deploy_root: roots/tux
    windows:
      vars:
        deploy_newline: "\r\n"
      hosts:
        win:
          deploy_root: roots/win
"#,
    )
    .manifest(
        r#"
groups:
  all:
    files:
      - template: two.j2
        dest: /etc/two.txt
      - template: two.j2
        dest: /etc/unix.txt
        newline: '\n'
  linux:
    files:
      - template: two.j2
        dest: /etc/dos.txt
        newline: crlf
"#,
    )
    .template("two.j2", "one {{ inventory_hostname }}\ntwo\n");
    p
}

#[test]
fn host_var_and_file_setting_choose_the_line_endings() {
    let p = project();
    p.run(&["apply", "--yes"]).expect(0);
    assert_eq!(
        p.host_file("tux", "/etc/two.txt").as_deref(),
        Some("one tux\ntwo\n")
    );
    assert_eq!(
        p.host_file("tux", "/etc/dos.txt").as_deref(),
        Some("one tux\r\ntwo\r\n")
    );
    assert_eq!(
        p.host_file("win", "/etc/two.txt").as_deref(),
        Some("one win\r\ntwo\r\n")
    );
    // The file's own setting wins over the host's var.
    assert_eq!(
        p.host_file("win", "/etc/unix.txt").as_deref(),
        Some("one win\ntwo\n")
    );
    // Converted once: a second run finds nothing to change.
    p.run(&["plan", "--detailed-exitcode"]).expect(0);
}

#[test]
fn unknown_newline_is_refused_with_its_location() {
    let p = project();
    p.manifest("groups:\n  all:\n    files:\n      - template: two.j2\n        dest: /etc/two.txt\n        newline: windows\n");
    let run = p.run(&["plan"]).expect(1);
    assert!(
        run.stderr.contains("deploy.yml:6:18") && run.stderr.contains("not a line ending"),
        "{}",
        run.stderr
    );
}

/// A template's `#jinja2: newline_sequence:` header gives its own text those line endings
/// (a value's newlines stay as they are, as Ansible writes them) and wins over the host's
/// `deploy_newline`; a file's `newline:` still converts everything.
#[test]
fn a_header_newline_sequence_is_kept_unless_the_file_sets_one() {
    let p = Project::new();
    p.inventory(
        "all:\n  vars:\n    ansible_connection: local\n    note: \"a\\nb\"\n  hosts:\n    tux: {deploy_root: roots/tux}\n    win: {deploy_root: roots/win, deploy_newline: \"\\n\"}\n",
    )
    .manifest(
        "groups:\n  all:\n    files:\n      - template: dos.j2\n        dest: /etc/dos.txt\n      - template: dos.j2\n        dest: /etc/unix.txt\n        newline: '\\n'\n",
    )
    .template(
        "dos.j2",
        "#jinja2: newline_sequence: '\\r\\n'\n[{{ inventory_hostname }}]\nnote={{ note }}\n",
    );
    p.run(&["apply", "--yes"]).expect(0);
    for host in ["tux", "win"] {
        assert_eq!(
            p.host_file(host, "/etc/dos.txt"),
            Some(format!("[{host}]\r\nnote=a\nb\r\n")),
            "{host}"
        );
        assert_eq!(
            p.host_file(host, "/etc/unix.txt"),
            Some(format!("[{host}]\nnote=a\nb\n")),
            "{host}"
        );
    }
    p.run(&["plan", "--detailed-exitcode"]).expect(0);
}
