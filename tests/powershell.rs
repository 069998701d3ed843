//! Every PowerShell text deploy sends to a Windows host or ships to one parses with a real
//! PowerShell grammar (tree-sitter-powershell, through `support::powershell`): the WinRM
//! transport's scripts and bootstrap, handler scripts (the real fleet's `restart vllm`
//! included), and `files/Start-VLLM.ps1`; and Start-VLLM.ps1 reads every key
//! `templates/vllm.config.yml.j2` writes.
//!
//! No PowerShell interpreter can be installed here: these scripts are parsed, not run. What
//! they do to a host is performed in Rust by the WS-Man stand-in
//! (`tests/support/winrm_standin.rs`) in the end-to-end tests (`winrm_e2e.rs`).

use std::collections::BTreeSet;
use std::path::Path;

use deploy::transport::winrm::{
    BOOTSTRAP, CREATE_SCRIPT, HANDLERS_SCRIPT, READ_SCRIPT, REMOVE_SCRIPT, STOP_SCRIPT,
    WRITE_SCRIPT, handler_script, lock_read_script,
};
use regex::Regex;
use serde_json::Value;

use crate::fleet::render_fleet;
use crate::support::powershell::{assert_parses, syntax_errors};

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

fn start_vllm() -> String {
    repo_file("files/Start-VLLM.ps1")
}

#[test]
fn the_winrm_transports_scripts_parse() {
    for (name, text) in [
        ("BOOTSTRAP", BOOTSTRAP),
        ("READ_SCRIPT", READ_SCRIPT),
        ("WRITE_SCRIPT", WRITE_SCRIPT),
        ("CREATE_SCRIPT", CREATE_SCRIPT),
        ("REMOVE_SCRIPT", REMOVE_SCRIPT),
        ("facts::PS_SCRIPT", deploy::facts::PS_SCRIPT),
        ("HANDLERS_SCRIPT", HANDLERS_SCRIPT),
        ("STOP_SCRIPT", STOP_SCRIPT),
    ] {
        assert_parses(name, text);
    }
    assert_parses("lock_read_script()", &lock_read_script());
}

#[test]
fn handler_scripts_parse_with_the_real_fleets_restart_vllm() {
    let fleet = render_fleet();
    let mut commands = vec![
        // The forms the docs and tests use.
        "Restart-Service -Name vllm".to_string(),
        r"& 'C:\Users\mdt\dev\wintermute\scripts\Start-VLLM.ps1' -Action Restart".to_string(),
        "Restart-Stub ok".to_string(),
        "docker restart vllm-wintermute; if ($LASTEXITCODE -ne 0) { exit 2 }".to_string(),
    ];
    let mut restarts = 0;
    for host in ["wintermute", "armitage"] {
        let h = fleet.iter().find(|h| h.host == host).expect("host");
        for handler in &h.handlers {
            if handler.name == "restart vllm" {
                restarts += 1;
                assert!(
                    handler
                        .command
                        .contains(&format!(r"C:\Users\mdt\dev\{host}\scripts\Start-VLLM.ps1")),
                    "{}",
                    handler.command
                );
            }
            commands.push(handler.command.clone());
        }
    }
    assert_eq!(restarts, 2, "both Windows hosts have `restart vllm`");
    for command in &commands {
        assert_parses(
            &format!("handler_script({command:?})"),
            &handler_script(command),
        );
    }
}

#[test]
fn start_vllm_parses_and_is_ascii() {
    let script = start_vllm();
    assert_parses("files/Start-VLLM.ps1", &script);
    // Windows PowerShell 5.1 reads a script without a byte order mark in the ANSI code
    // page: a non-ASCII character would arrive mangled.
    for (i, line) in script.lines().enumerate() {
        assert!(
            line.is_ascii(),
            "files/Start-VLLM.ps1 line {}: not ASCII",
            i + 1
        );
    }
}

#[test]
fn the_check_fails_on_broken_powershell() {
    // The closing brace of the function is missing: the parse must say so, with its place.
    let broken = "function Restart-It {\n    if ($x) { exit 1 }\n    exit 0\n";
    let errors = syntax_errors(broken);
    assert!(!errors.is_empty(), "a missing brace passed");
    assert!(errors.iter().all(|e| e.starts_with("line ")), "{errors:?}");
    let panic = std::panic::catch_unwind(|| assert_parses("broken.ps1", broken))
        .expect_err("assert_parses passed a broken script");
    let message = panic
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert!(
        message.starts_with("broken.ps1 does not parse as PowerShell") && message.contains("line "),
        "{message}"
    );
    // An unclosed string, an unclosed param block and a stray operator are caught too, and
    // the valid text is not.
    for broken in [
        "Write-Host 'unclosed\n",
        "function F { param([string]$x }\n",
        "$a = 1 +* 2\n",
    ] {
        assert!(!syntax_errors(broken).is_empty(), "{broken:?} passed");
    }
    // (The param block ends its line: the grammar rejects `function F { param($x) $x }`,
    // valid PowerShell, that deploy's scripts do not use.)
    assert!(
        syntax_errors("function F {\n  param([string]$x)\n  if ($x) { exit 1 }\n}\n").is_empty()
    );
}

/// The keys under `vllm:` in `templates/vllm.config.yml.j2`'s source, each with whether it
/// sits inside `{% if %}` (written only when the host sets it).
fn template_keys() -> Vec<(String, bool)> {
    let template = repo_file("templates/vllm.config.yml.j2");
    let key = Regex::new(r"^  ([a-z_]+):").expect("regex");
    let mut depth = 0usize;
    let mut keys = Vec::new();
    for line in template.lines() {
        let tag = line.trim();
        if tag.starts_with("{% if ") {
            depth += 1;
        } else if tag.starts_with("{% endif") {
            depth -= 1;
        } else if let Some(c) = key.captures(line) {
            keys.push((c[1].to_string(), depth > 0));
        }
    }
    keys
}

/// The rows of Start-VLLM.ps1's `$VllmKeys` table: name -> (optional, vLLM flag).
fn script_rows(script: &str) -> Vec<(String, bool, String)> {
    let row = Regex::new(
        r"(?m)^\s*@\{ Name = '([a-z_]+)'; Type = '[a-z]+'; Optional = \$(true|false);[^\n]*? Flag = '([^']*)';",
    )
    .expect("regex");
    row.captures_iter(script)
        .map(|c| (c[1].to_string(), &c[2] == "true", c[3].to_string()))
        .collect()
}

/// Dotted paths of every key of a mapping (`vllm`, `vllm.model`, ...).
fn key_paths(prefix: &str, value: &Value, out: &mut BTreeSet<String>) {
    if let Value::Object(map) = value {
        for (k, v) in map {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            key_paths(&path, v, out);
            out.insert(path);
        }
    }
}

#[test]
fn start_vllm_reads_every_key_the_vllm_template_writes() {
    let script = start_vllm();
    let rows = script_rows(&script);
    let row = |key: &str| rows.iter().find(|(name, _, _)| name == key);
    assert!(
        rows.len() >= 10,
        "the $VllmKeys table was not found: {rows:?}"
    );

    // What the template really writes for the fleet's two vLLM hosts.
    let fleet = render_fleet();
    let mut rendered = BTreeSet::new();
    for host in ["wintermute", "armitage"] {
        let h = fleet.iter().find(|h| h.host == host).expect("host");
        let dest = format!(r"C:\Users\mdt\dev\{host}\config.yml");
        let file = h.files.iter().find(|f| f.dest == dest).expect("config.yml");
        let text = std::str::from_utf8(&file.content).expect("utf-8");
        let yaml: Value = serde_saphyr::from_str(text).expect("YAML");
        key_paths("", &yaml, &mut rendered);
    }
    assert!(rendered.contains("vllm.served_model_name"), "{rendered:?}");
    for path in &rendered {
        match path.split('.').collect::<Vec<_>>().as_slice() {
            [top] => assert!(
                *top == "vllm" && script.contains("$yaml.Root['vllm']"),
                "Start-VLLM.ps1 does not read the top-level key {top}"
            ),
            ["vllm", key] => assert!(
                row(key).is_some(),
                "config.yml has vllm.{key}, which Start-VLLM.ps1's $VllmKeys does not read"
            ),
            _ => panic!("config.yml nests {path} deeper than Start-VLLM.ps1 reads"),
        }
    }

    // Keys the template writes only for some hosts (neither may set them yet) are read too,
    // optional exactly when the template writes them under `{% if %}`; and the script reads
    // no key the template has dropped.
    let template = template_keys();
    for (key, conditional) in &template {
        let (_, optional, _) = row(key).unwrap_or_else(|| {
            panic!("vllm.config.yml.j2 writes vllm.{key}, which Start-VLLM.ps1 does not read")
        });
        assert_eq!(
            optional, conditional,
            "vllm.{key}: Optional in Start-VLLM.ps1 must match whether the template writes it under {{% if %}}"
        );
    }
    for (name, _, _) in &rows {
        assert!(
            template.iter().any(|(k, _)| k == name),
            "Start-VLLM.ps1 reads vllm.{name}, which the template no longer writes"
        );
    }

    // Seed 000's fix: the served name becomes --served-model-name, and only when it is set.
    assert_eq!(
        row("served_model_name"),
        Some(&(
            "served_model_name".to_string(),
            true,
            "--served-model-name".to_string()
        ))
    );
    assert_eq!(row("model").map(|r| r.2.as_str()), Some("--model"));
}

#[test]
fn rendered_vllm_configs_stay_inside_the_yaml_start_vllm_reads() {
    // The line and value patterns of the script's parser, applied here to what the template
    // renders: a template change that writes YAML the script would refuse (a list, an
    // unquoted string, a trailing comment) fails here instead of at the next restart.
    let script = start_vllm();
    let patterns = [
        r"^ *(#.*)?$",
        r"^( *)([A-Za-z_][A-Za-z0-9_]*):( .*)?$",
        r#"^"([^"\\]*)"$"#,
        r"^-?(0|[1-9][0-9]*)$",
        r"^-?(0|[1-9][0-9]*)\.[0-9]+$",
    ];
    for p in patterns {
        assert!(
            script.contains(&format!("'{p}'")),
            "Start-VLLM.ps1 no longer has the pattern '{p}'; update this test with it"
        );
    }
    let [blank, entry, quoted, int, decimal] = patterns.map(|p| Regex::new(p).expect("regex"));
    let fleet = render_fleet();
    for host in ["wintermute", "armitage"] {
        let h = fleet.iter().find(|h| h.host == host).expect("host");
        let dest = format!(r"C:\Users\mdt\dev\{host}\config.yml");
        let file = h.files.iter().find(|f| f.dest == dest).expect("config.yml");
        let text = std::str::from_utf8(&file.content).expect("utf-8");
        for (i, line) in text.split("\r\n").enumerate() {
            assert!(!line.contains(['\t', '\n']), "{host} line {}", i + 1);
            if blank.is_match(line) {
                continue;
            }
            let c = entry
                .captures(line)
                .unwrap_or_else(|| panic!("{host} line {}: {line:?}", i + 1));
            let value = c.get(3).map_or("", |m| m.as_str().trim());
            assert!(
                value.is_empty()
                    || value == "true"
                    || value == "false"
                    || quoted.is_match(value)
                    || int.is_match(value)
                    || decimal.is_match(value),
                "{host} line {}: Start-VLLM.ps1 cannot read the value {value:?}",
                i + 1
            );
        }
    }
}
