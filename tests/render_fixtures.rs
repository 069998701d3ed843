//! Renders every `tests/fixtures/render/<case>/` (template.j2 + vars.yml, and what its
//! lookups read: files under the case, env.yml for `env`) with [`Renderer`] and compares with
//! `expected.out`, which real Ansible wrote (see regen.sh there); checks that every
//! expected.out still is what ansible-core renders (regen.sh --out, one ansible-playbook
//! run); plus snapshots of the error reports.
//!
//! vars.yml is read with serde-saphyr's YAML 1.1 options (yes/no/on/off are booleans,
//! `0755` is octal), as Ansible's PyYAML reads it. PyYAML differs on a few spellings the
//! fixtures avoid: `y`/`n` are strings and `1e5` (no dot) is a string there.

use std::path::{Path, PathBuf};

use deploy::render::{Lookups, Renderer};
use minijinja::Value;
use minijinja::value::Serde;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/render")
}

fn load_vars(path: &Path) -> serde_json::Map<String, serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut options = serde_saphyr::Options::default();
    options.legacy_octal_numbers = true;
    options.strict_booleans = false;
    let vars: serde_json::Value = serde_saphyr::from_str_with_options(&text, options)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match vars {
        serde_json::Value::Object(map) => map,
        other => panic!("{}: not a map: {other}", path.display()),
    }
}

/// The case's vars plus the magic variables Ansible gives `localhost` in regen.sh.
fn case_vars(renderer: &Renderer, dir: &Path) -> Value {
    let mut vars = serde_json::Map::new();
    vars.insert("inventory_hostname".into(), "localhost".into());
    vars.insert("group_names".into(), serde_json::json!(["ungrouped"]));
    vars.extend(load_vars(&dir.join("vars.yml")));
    let vars = Value::from(Serde(serde_json::Value::Object(vars)));
    renderer
        .resolve_vars(&vars)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

/// The case's env.yml (what its `env` lookups see; regen.sh sets the same for Ansible).
fn case_env(dir: &Path) -> std::collections::HashMap<String, String> {
    let path = dir.join("env.yml");
    if !path.is_file() {
        return Default::default();
    }
    load_vars(&path)
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            (k, v)
        })
        .collect()
}

/// A renderer for the case folder as a repository root: templates and lookups from there.
fn case_renderer(dir: &Path) -> Renderer {
    Renderer::with_lookups(dir, Lookups::new(dir).with_environment(case_env(dir)))
}

fn case_dirs() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("template.j2").is_file())
        .collect();
    cases.sort();
    cases
}

/// Every expected.out is what ansible-core 2.19 (target/ci-ansible) renders today: regen.sh
/// renders all cases with the shared play.yml in one ansible-playbook run into a temp dir,
/// compared byte for byte. A hand-edited fixture fails here.
#[test]
fn expected_outputs_are_ansible_cores() {
    let playbook = crate::support::ansible::bin("ansible-playbook");
    let venv = playbook
        .parent()
        .and_then(Path::parent)
        .expect("venv of ansible-playbook");
    let out = tempfile::tempdir().expect("tempdir");
    let started = std::time::Instant::now();
    let run = std::process::Command::new("bash")
        .arg(fixtures_dir().join("regen.sh"))
        .arg("--out")
        .arg(out.path())
        .env("ANSIBLE_VENV", venv)
        .output()
        .expect("run regen.sh");
    assert!(
        run.status.success(),
        "regen.sh --out failed:\n{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    eprintln!(
        "ansible-core rendered the fixtures in {:?}",
        started.elapsed()
    );
    let cases = case_dirs();
    assert!(
        cases.len() >= 20,
        "expected the fixture cases, found {cases:?}"
    );
    let mut differ = Vec::new();
    for dir in &cases {
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        let rendered = std::fs::read(out.path().join(format!("{name}.out")))
            .unwrap_or_else(|e| panic!("{name}: ansible wrote no output: {e}"));
        let expected = std::fs::read(dir.join("expected.out"))
            .unwrap_or_else(|e| panic!("{name}: expected.out: {e}"));
        if rendered != expected {
            let (expected, rendered) = (
                String::from_utf8_lossy(&expected),
                String::from_utf8_lossy(&rendered),
            );
            let diff = similar::TextDiff::from_lines(expected.as_ref(), rendered.as_ref())
                .unified_diff()
                .header("expected.out", "ansible-core")
                .to_string();
            differ.push(format!("--- {name}:\n{diff}"));
        }
    }
    assert!(
        differ.is_empty(),
        "expected.out differs from what ansible-core renders (run regen.sh):\n{}",
        differ.join("\n")
    );
}

#[test]
fn fixtures_match_ansible() {
    let cases = case_dirs();
    assert!(
        cases.len() >= 10,
        "expected the fixture cases, found {cases:?}"
    );
    let mut failures = Vec::new();
    for dir in &cases {
        let name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let renderer = case_renderer(dir);
        let vars = case_vars(&renderer, dir);
        let expected = std::fs::read_to_string(dir.join("expected.out"))
            .unwrap_or_else(|e| panic!("{name}: expected.out: {e} (run regen.sh)"));
        match renderer.render_file("template.j2", &vars) {
            Ok(actual) if actual == expected => {}
            Ok(actual) => {
                let diff = similar::TextDiff::from_lines(&expected, &actual)
                    .unified_diff()
                    .header("expected (ansible)", "actual (deploy)")
                    .to_string();
                failures.push(format!("--- case {name} differs:\n{diff}"));
            }
            Err(e) => failures.push(format!("--- case {name} failed:\n{e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from Ansible:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

// --- errors ----------------------------------------------------------------------------------

/// Render `source` as the file `name` in a scratch templates dir; the error report.
fn render_error(name: &str, source: &str, vars: serde_json::Value) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(name), source).expect("write template");
    let renderer = Renderer::new(dir.path());
    let vars = renderer
        .resolve_vars(&Value::from(Serde(vars)))
        .expect("vars are a map");
    match renderer.render_file(name, &vars) {
        Ok(out) => panic!("expected an error, rendered {out:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn error_undefined_variable() {
    let report = render_error(
        "litellm.config.yaml.j2",
        "model_list:\n  - model_name: x\n    config: {{ litellm_dir }}/config.yaml\n",
        serde_json::json!({"other": 1}),
    );
    assert!(report.contains("litellm_dir"), "{report}");
    insta::assert_snapshot!(report);
}

#[test]
fn error_undefined_attribute() {
    let report = render_error(
        "vllm.yml.j2",
        "port: {{ vllm.port }}\nmodel: {{ vllm.model }}\n",
        serde_json::json!({"vllm": {"port": 8000}}),
    );
    insta::assert_snapshot!(report);
}

#[test]
fn error_syntax() {
    let report = render_error(
        "broken.j2",
        "a: 1\n{% if enabled %}\nb: {{ value }\n{% endif %}\n",
        serde_json::json!({"enabled": true, "value": 2}),
    );
    insta::assert_snapshot!(report);
}

#[test]
fn error_missing_template() {
    let dir = tempfile::tempdir().expect("tempdir");
    let renderer = Renderer::new(dir.path());
    let err = renderer
        .render_file("nope.j2", &Value::from(Serde(serde_json::json!({}))))
        .expect_err("missing template");
    let report = err
        .to_string()
        .replace(&dir.path().display().to_string(), "[TEMPLATES]");
    assert!(report.contains("nope.j2"), "{report}");
    insta::assert_snapshot!(report);
}

#[test]
fn error_mandatory() {
    let report = render_error(
        "secrets.env.j2",
        "TOKEN={{ api_token | mandatory }}\n",
        serde_json::json!({}),
    );
    assert!(
        report.contains("Mandatory variable 'api_token' not defined."),
        "{report}"
    );
    insta::assert_snapshot!(report);
    let report = render_error(
        "secrets.env.j2",
        "TOKEN={{ api_token | mandatory('set api_token in group_vars') }}\n",
        serde_json::json!({}),
    );
    insta::assert_snapshot!("error_mandatory_msg", report);
}

#[test]
fn error_in_nested_variable() {
    let report = render_error(
        "app.conf.j2",
        "url={{ url }}\n",
        serde_json::json!({"url": "http://{{ host }}:{{ port }}/", "port": 80}),
    );
    assert!(report.contains("variable 'url'"), "{report}");
    insta::assert_snapshot!(report);
}

#[test]
fn error_recursive_variable() {
    let report = render_error(
        "loop.j2",
        "{{ a }}\n",
        serde_json::json!({"a": "{{ b }}", "b": "{{ a }}"}),
    );
    insta::assert_snapshot!(report);
}

#[test]
fn render_str_and_nested_natives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let renderer = Renderer::new(dir.path());
    let vars = renderer
        .resolve_vars(&Value::from(Serde(serde_json::json!({
            "root": "/srv/host01",
            "port": "{{ 8000 + 1 }}",
        }))))
        .expect("vars");
    let dest = renderer
        .render_str(
            "hosts/deploy.yml: dest",
            "{{ root }}/etc/app-{{ port + 1 }}.conf",
            &vars,
        )
        .expect("render_str");
    assert_eq!(dest, "/srv/host01/etc/app-8002.conf");
    let err = renderer
        .render_str("hosts/deploy.yml: dest of app.j2", "{{ root }/x", &vars)
        .expect_err("syntax error");
    insta::assert_snapshot!(err.to_string());
}

#[test]
fn renders_from_many_threads() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("t.j2"), "host={{ h }} n={{ n }}\n").expect("write");
    let renderer = std::sync::Arc::new(Renderer::new(dir.path()));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let r = std::sync::Arc::clone(&renderer);
            std::thread::spawn(move || {
                let vars = r
                    .resolve_vars(&Value::from(Serde(
                        serde_json::json!({"h": format!("host{i}"), "n": "{{ h | upper }}"}),
                    )))
                    .expect("vars");
                r.render_file("t.j2", &vars).expect("render")
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(
            h.join().expect("thread"),
            format!("host=host{i} n=HOST{i}\n")
        );
    }
}

// --- #jinja2: headers and lookups: errors and refusals --------------------------------------

/// Render `source` as `templates/NAME` of a scratch repository holding `files` (relative
/// path, content), with `allow_commands`; the result, the repository's path shown as
/// `[REPO]`.
fn render_in_repo(
    name: &str,
    source: &str,
    files: &[(&str, &str)],
    allow_commands: bool,
) -> Result<String, String> {
    let repo = tempfile::tempdir().expect("tempdir");
    let templates = repo.path().join("templates");
    std::fs::create_dir_all(&templates).expect("templates");
    std::fs::write(templates.join(name), source).expect("write template");
    for (rel, content) in files {
        let path = repo.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
        std::fs::write(path, content).expect("write file");
    }
    let renderer = Renderer::with_lookups(
        &templates,
        Lookups::new(repo.path()).allow_commands(allow_commands),
    );
    let vars = renderer
        .resolve_vars(&Value::from(Serde(serde_json::json!({"port": 8080}))))
        .expect("vars");
    let shown = |s: String| s.replace(&repo.path().display().to_string(), "[REPO]");
    renderer
        .render_file(name, &vars)
        .map(shown)
        .map_err(|e| shown(e.to_string()))
}

fn render_err(name: &str, source: &str, files: &[(&str, &str)]) -> String {
    match render_in_repo(name, source, files, false) {
        Ok(out) => panic!("expected an error, rendered {out:?}"),
        Err(report) => report,
    }
}

#[test]
fn error_bad_header() {
    let report = render_err(
        "nginx.conf.j2",
        "#jinja2: trim_blocks: False, lstrip_blocks: yes\nworker_processes {{ port }};\n",
        &[],
    );
    assert!(report.contains("nginx.conf.j2:1"), "{report}");
    insta::assert_snapshot!(report);
    let report = render_err("a.j2", "#jinja2: trim_block: False\nx\n", &[]);
    assert!(
        report.contains("Invalid '#jinja2:' override key 'trim_block'.")
            && report.contains("a.j2:1"),
        "{report}"
    );
    let report = render_err("a.j2", "#jinja2: block_start_string: '{{'\nx\n", &[]);
    assert!(report.contains("must be different"), "{report}");
    for header in [
        "variable_start_string: ''",
        "comment_end_string: None",
        "trim_blocks: 1",
    ] {
        let report = render_err("a.j2", &format!("#jinja2: {header}\nx {{{{ 1 }}}}\n"), &[]);
        assert!(report.contains("a.j2:1"), "{header}: {report}");
    }
}

#[test]
fn header_templates_report_lines_of_the_file() {
    let report = render_err(
        "a.j2",
        "#jinja2: variable_start_string: '[[', variable_end_string: ']]'\nok {{ literal }}\nport [[ nope ]]\n",
        &[],
    );
    assert!(report.contains("a.j2:3"), "{report}");
    assert!(report.contains("port [[ nope ]]"), "{report}");
}

#[test]
fn error_unknown_lookup() {
    let report = render_err(
        "app.conf.j2",
        "port={{ port }}\nkey={{ lookup('hashi_vault', 'secret/app') }}\n",
        &[],
    );
    assert!(
        report.contains("app.conf.j2:2") && report.contains("no lookup named 'hashi_vault'"),
        "{report}"
    );
    insta::assert_snapshot!(report);
    let report = render_err("a.j2", "{{ lookup('ini', 'x', errors='ignore') }}\n", &[]);
    assert!(report.contains("lookup 'ini' is not supported"), "{report}");
}

#[test]
fn error_refused_pipe() {
    let report = render_err(
        "motd.j2",
        "Welcome\nbuilt {{ lookup('pipe', 'date +%F') }}\n",
        &[],
    );
    assert!(
        report.contains("motd.j2:2") && report.contains("allow_command_lookups"),
        "{report}"
    );
    insta::assert_snapshot!(report);
    // `errors=` does not silence a refusal, and `url`/`password` stay refused when commands
    // are allowed.
    let report = render_err(
        "a.j2",
        "{{ lookup('lines', 'ls', errors='ignore') }}\n",
        &[],
    );
    assert!(report.contains("lookup 'lines' runs a command"), "{report}");
    for (name, why) in [("url", "network"), ("password", "writes files")] {
        let err = render_in_repo(
            "a.j2",
            &format!("{{{{ lookup('{name}', 'x') }}}}\n"),
            &[],
            true,
        )
        .expect_err(name);
        assert!(err.contains(why), "{err}");
    }
}

#[test]
fn allowed_pipe_and_lines_run_in_the_repository() {
    let out = render_in_repo(
        "a.j2",
        "{{ lookup('pipe', 'cat files/x.txt; echo') }}|{{ query('lines', 'printf \"a\\nb\\n\"') }}\n",
        &[("files/x.txt", "from the repo")],
        true,
    )
    .expect("rendered");
    assert_eq!(out, "from the repo|['a', 'b']\n");
    let err = render_in_repo("a.j2", "{{ lookup('pipe', 'exit 3') }}\n", &[], true)
        .expect_err("failing command");
    assert!(err.contains("returned 3"), "{err}");
}

#[test]
fn error_missing_file() {
    let report = render_err(
        "authorized_keys.j2",
        "# managed\n{{ lookup('file', 'keys/' ~ port ~ '.pub') }}\n",
        &[],
    );
    assert!(
        report.contains("authorized_keys.j2:2") && report.contains("8080.pub"),
        "{report}"
    );
    insta::assert_snapshot!(report);
}

#[test]
fn lookups_stay_inside_the_repository() {
    for path in ["/etc/hostname", "~/.ssh/id_ed25519", "../outside.txt"] {
        let err = render_err(
            "a.j2",
            &format!("{{{{ lookup('file', '{path}') }}}}\n"),
            &[],
        );
        assert!(err.contains("outside the repository"), "{path}: {err}");
    }
    // A link inside the repo that points out of it.
    let repo = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::write(outside.path().join("private.key"), "PRIVATE").expect("write");
    std::fs::create_dir_all(repo.path().join("files")).expect("files");
    std::os::unix::fs::symlink(
        outside.path().join("private.key"),
        repo.path().join("files/key"),
    )
    .expect("symlink");
    std::fs::write(repo.path().join("t.j2"), "{{ lookup('file', 'key') }}\n").expect("t.j2");
    let renderer = Renderer::with_lookups(repo.path(), Lookups::new(repo.path()));
    let err = renderer
        .render_file("t.j2", &Value::from(Serde(serde_json::json!({}))))
        .expect_err("link out of the repo");
    assert!(err.to_string().contains("outside the repository"), "{err}");
    assert!(!err.to_string().contains("PRIVATE"), "{err}");
}

#[test]
fn template_lookups_that_recurse_are_bounded() {
    let err = render_err(
        "a.j2",
        "{{ lookup('template', 'loop.j2') }}\n",
        &[(
            "templates/loop.j2",
            "x{{ lookup('template', 'loop.j2') }}\n",
        )],
    );
    assert!(err.contains("nested more than 16 deep"), "{err}");
}

#[test]
fn template_lookups_that_fan_out_are_bounded() {
    let twice = "{{ lookup('template', 'fan.j2') }}{{ lookup('template', 'fan.j2') }}\n";
    let started = std::time::Instant::now();
    let err = render_err(
        "a.j2",
        "{{ lookup('template', 'fan.j2') }}\n",
        &[("templates/fan.j2", twice)],
    );
    assert!(
        err.contains("more than 1000 template lookups") || err.contains("nested more than"),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

#[test]
fn template_lookup_errors_name_both_templates() {
    let err = render_err(
        "a.j2",
        "{{ lookup('template', 'inner.j2') }}\n",
        &[(
            "templates/inner.j2",
            "ok {{ port }}\nbad {{ missing_var }}\n",
        )],
    );
    assert!(
        err.contains("templates/inner.j2:2")
            && err.contains("missing_var")
            && err.contains("a.j2:1"),
        "{err}"
    );
}

/// Odd delimiters a header may name render or fail with a report, never panic.
#[test]
fn odd_header_delimiters_never_panic() {
    let odd = [
        "'{'", "'}'", "'a'", "' '", "'}}'", "'€'", "'\\n'", "'{{{{'", "'%'",
    ];
    for start in odd {
        for end in odd {
            let source = format!(
                "#jinja2: variable_start_string: {start}, variable_end_string: {end}, line_statement_prefix: {start}\nx {{{{ port }}}} € a}}}} %\n"
            );
            let _ = render_in_repo("a.j2", &source, &[], false);
        }
    }
}

/// What deploy does not offer is an error naming the template, the line and the name, never
/// a rendering; what it refuses on purpose says so.
#[test]
fn error_unsupported_filter_test_and_method() {
    let vars = serde_json::json!({"users": ["a"], "conf": {"a": 1}, "pw": "x"});
    let cases = [
        (
            "unknown_filter",
            "a: 1\nb: {{ users | no_such_filter }}\n",
            "no_such_filter",
        ),
        (
            "unknown_test",
            "{% if users is no_such_test %}x{% endif %}\n",
            "no_such_test",
        ),
        (
            "unknown_method",
            "a: 1\nb: {{ 'x'.no_such_method() }}\n",
            "no_such_method",
        ),
        (
            "refused_method",
            "a: 1\n{{ users.append('b') }}\n",
            "append",
        ),
        ("refused_update", "{{ conf.update({'b': 2}) }}\n", "update"),
        (
            "refused_filter",
            "hash: {{ pw | password_hash('sha512') }}\n",
            "password_hash",
        ),
        ("refused_test", "{{ conf is failed }}\n", "failed"),
        (
            "refused_regex",
            "{{ 'ab' | regex_search('(?<=a)b') }}\n",
            "regex_search",
        ),
        ("refused_width", "{{ 'x'.center(100000000) }}\n", "center"),
    ];
    for (snapshot, source, name) in cases {
        let report = render_error("app.conf.j2", source, vars.clone());
        assert!(
            report.contains("app.conf.j2:"),
            "{snapshot}: no template and line: {report}"
        );
        assert!(
            report.contains(name),
            "{snapshot}: {name} not named: {report}"
        );
        insta::assert_snapshot!(format!("error_{snapshot}"), report);
    }
}
