//! Every PowerShell text deploy sends to a Windows host or ships to one parses with a real
//! PowerShell grammar (tree-sitter-powershell, through `support::powershell`): the WinRM
//! transport's scripts and bootstrap, handler scripts (the real fleet's `restart vllm`
//! included), and `files/Start-VLLM.ps1`.
//!
//! No PowerShell interpreter can be installed here: these scripts are parsed, not run. What
//! they do to a host is performed in Rust by the WS-Man stand-in
//! (`tests/support/winrm_standin.rs`) in the end-to-end tests (`winrm_e2e.rs`).

use std::path::Path;

use deploy::transport::winrm::{
    BOOTSTRAP, CREATE_SCRIPT, READ_SCRIPT, REMOVE_SCRIPT, WRITE_SCRIPT, handler_script,
};

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
    ] {
        assert_parses(name, text);
    }
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
