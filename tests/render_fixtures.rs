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
