//! Error reports on text with multi-byte characters where deploy cuts it: the real binary
//! names the file and line and exits 1 (never a panic, exit 101). Each case is an input that
//! made deploy panic before excerpts were cut on character boundaries (`src/text.rs`).

use crate::support::project::Project;

fn local_alpha() -> Project {
    let p = Project::new();
    p.inventory("all:\n  vars:\n    ansible_connection: local\n  hosts:\n    alpha:\n      deploy_root: roots/alpha\n")
        .manifest("groups:\n  all:\n    files:\n      - template: a.j2\n        dest: /etc/a\n");
    p
}

/// Runs `plan`, expects exit 1 with no host touched, and returns stderr.
fn plan_error(p: &Project) -> String {
    let run = p.run(&["plan"]);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let run = run.expect(1);
    assert!(!p.path().join("roots").exists(), "a host was touched");
    p.filter(&run.stderr)
}

#[test]
fn a_character_the_template_lexer_rejects_is_shown_whole() {
    // minijinja marks one byte past the start of `€`: the middle of the character.
    let p = local_alpha();
    p.template("a.j2", "x = 1\n{{ 1 € }}\n");
    let err = plan_error(&p);
    assert!(
        err.starts_with("error: host alpha: syntax error: unexpected character (a.j2:2)"),
        "{err}"
    );
    assert!(err.contains("2 | {{ 1 € }}"), "{err}");
}

#[test]
fn crlf_and_an_error_on_the_last_line_without_a_newline() {
    let p = local_alpha();
    p.template("a.j2", "first\r\nsecond é\r\n{{ x | é }}");
    let err = plan_error(&p);
    assert!(err.contains("(a.j2:3)"), "{err}");
    assert!(err.contains("3 | {{ x | é }}"), "{err}");
}

#[test]
fn an_error_in_an_included_file_names_that_file() {
    let p = local_alpha();
    p.template("a.j2", "a\n{% include 'inc.j2' %}\n")
        .template("inc.j2", "ok\n\t{{ 2 ∞ 3 }}\n");
    let err = plan_error(&p);
    assert!(err.contains("(inc.j2:2)"), "{err}");
    assert!(err.contains("∞ 3 }}"), "{err}");
}

#[test]
fn an_error_in_a_macro_names_the_macro_file() {
    let p = local_alpha();
    p.template("a.j2", "{% from 'm.j2' import f %}{{ f() }}\n")
        .template("m.j2", "{% macro f() %}é{{ nope }}€{% endmacro %}");
    let err = plan_error(&p);
    assert!(err.contains("(m.j2:1)"), "{err}");
    assert!(err.contains("1 | {% macro f() %}é{{ nope }}€"), "{err}");
}

#[test]
fn an_error_span_crossing_lines() {
    let p = local_alpha();
    p.template("a.j2", "{{ 'é' ~\n 1 ⊕ }}\n");
    let err = plan_error(&p);
    assert!(err.contains("(a.j2:2)"), "{err}");
    assert!(err.contains("1 ⊕ }}"), "{err}");
}

#[test]
fn a_dest_template_in_deploy_yml() {
    let p = local_alpha();
    p.manifest(
        "groups:\n  all:\n    files:\n      - template: a.j2\n        dest: \"/etc/{{ 1 € }}\"\n",
    )
    .template("a.j2", "a\n");
    let err = plan_error(&p);
    assert!(err.contains("hosts/deploy.yml:5:15: dest of a.j2"), "{err}");
    assert!(err.contains("syntax error: unexpected character"), "{err}");
    assert!(err.contains("1 | /etc/{{ 1 € }}"), "{err}");
}

#[test]
fn a_check_expression_in_deploy_yml() {
    let p = local_alpha();
    p.manifest("checks:\n  - name: é check\n    that: files['/etc/a'] € 1\ngroups:\n  all:\n    files:\n      - template: a.j2\n        dest: /etc/a\n")
        .template("a.j2", "a: 1\n");
    let run = p.run(&["plan"]).expect(1);
    assert!(
        run.stderr.contains("check failed: é check"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(
            "`files['/etc/a'] € 1` could not be evaluated: syntax error: unexpected character"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn a_yaml_error_on_a_long_line_of_multibyte_characters() {
    let p = local_alpha();
    let long = "é".repeat(3000);
    p.inventory(&format!(
        "all:\n  vars:\n    note: {long}\n    bad: [{long}\n"
    ));
    let err = plan_error(&p);
    assert!(
        err.starts_with("error: [REPO]/hosts/inventory.yml:"),
        "{err}"
    );
    // The excerpt shows a window of the line, not all 3000 characters of it.
    assert!(err.len() < 2000, "{} bytes: {err}", err.len());
}

#[test]
fn a_state_record_with_a_multibyte_commit_is_shown_cut_on_a_character() {
    let p = local_alpha();
    p.template("a.j2", "a\n");
    // A record whose commit is not git's hex (another tool, a hand edit): byte 12 is inside
    // the sixth `é`.
    p.file(
        "roots/alpha/var/lib/deploy/state.json",
        r#"{"version":1,"commit":"aéééééééé","time":"t","by":"b","files":{}}"#,
    );
    let run = p.run(&["plan"]);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let run = run.expect(0);
    assert!(
        run.stdout.contains("commit aééééé -> working tree"),
        "{}",
        run.stdout
    );
}

#[test]
fn an_unreadable_lock_is_quoted_shortened() {
    let p = local_alpha();
    p.template("a.j2", "a\n");
    let junk = "é".repeat(100_000);
    p.file("roots/alpha/var/lib/deploy/lock.json", &junk);
    let run = p.run(&["apply", "--yes"]);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let run = run.expect(1);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(out.contains("an unreadable lock: ééé"), "{out}");
    assert!(out.len() < 5000, "{} bytes printed", out.len());
    assert_eq!(
        p.host_file("alpha", "/etc/a"),
        None,
        "written despite the lock"
    );
}
