//! Renders every `tests/fixtures/render/<case>/` (template.j2 + vars.yml) with [`Renderer`]
//! and compares with `expected.out`, which real Ansible wrote (see regen.sh there); plus
//! snapshots of the error reports.
//!
//! vars.yml is read with serde-saphyr's YAML 1.1 options (yes/no/on/off are booleans,
//! `0755` is octal), as Ansible's PyYAML reads it. PyYAML differs on a few spellings the
//! fixtures avoid: `y`/`n` are strings and `1e5` (no dot) is a string there.

use std::path::{Path, PathBuf};

use deploy::render::Renderer;
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

#[test]
fn fixtures_match_ansible() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("template.j2").is_file())
        .collect();
    cases.sort();
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
        let renderer = Renderer::new(dir);
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
