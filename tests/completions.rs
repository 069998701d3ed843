//! `deploy completions SHELL`: the bash script loads in a real bash and completes
//! subcommands and flags; the PowerShell one parses with the real grammar (no PowerShell
//! interpreter can be installed here); zsh and fish scripts name every subcommand.

use std::process::Command;

use crate::support::powershell::syntax_errors;

fn completions(shell: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_deploy"))
        .args(["completions", shell])
        .output()
        .expect("deploy");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// What bash completes for the words `line` (the last one being completed).
fn bash_complete(script: &std::path::Path, line: &[&str]) -> Vec<String> {
    let words: Vec<String> = line.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source {}\nCOMP_WORDS=({})\nCOMP_CWORD={}\nCOMP_LINE='{}'\nCOMP_POINT=${{#COMP_LINE}}\n\
         $(complete -p deploy | sed -E 's/.*-F ([^ ]+).*/\\1/') deploy '{}' '{}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
        words.join(" "),
        line.len() - 1,
        line.join(" "),
        line[line.len() - 1],
        line[line.len().saturating_sub(2)],
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn bash_completion_loads_and_completes_commands_and_flags() {
    let dir = tempfile::tempdir().expect("tmp");
    let script = dir.path().join("deploy.bash");
    std::fs::write(&script, completions("bash")).expect("write");

    let commands = bash_complete(&script, &["deploy", ""]);
    for want in [
        "plan",
        "apply",
        "check",
        "status",
        "unlock",
        "secrets",
        "completions",
    ] {
        assert!(commands.iter().any(|c| c == want), "{want}: {commands:?}");
    }
    let flags = bash_complete(&script, &["deploy", "apply", "--"]);
    for want in [
        "--yes",
        "--auto-approve",
        "--limit",
        "--serial",
        "--become",
        "--inventory",
    ] {
        assert!(flags.iter().any(|c| c == want), "{want}: {flags:?}");
    }
    let shells = bash_complete(&script, &["deploy", "completions", ""]);
    assert!(shells.iter().any(|s| s == "zsh"), "{shells:?}");
}

#[test]
fn powershell_zsh_and_fish_completions_cover_every_command() {
    let ps = completions("powershell");
    // clap_complete ends with `$completions.Where{ ... }`, PowerShell 4's method call with
    // a script block and no parentheses; tree-sitter-powershell's grammar lacks that form
    // (it is valid PowerShell), so that one line may be reported, and nothing else.
    let errors = syntax_errors(&ps);
    let lines: Vec<&str> = ps.lines().collect();
    for error in &errors {
        let line: usize = error
            .strip_prefix("line ")
            .and_then(|r| r.split(',').next())
            .and_then(|n| n.parse().ok())
            .expect("line number");
        assert!(
            lines[line - 1].contains(".Where{"),
            "deploy completions powershell does not parse: {error}: {}",
            lines[line - 1]
        );
    }
    for shell in ["powershell", "zsh", "fish"] {
        let text = if shell == "powershell" {
            ps.clone()
        } else {
            completions(shell)
        };
        for command in ["plan", "apply", "check", "status", "unlock", "secrets"] {
            assert!(text.contains(command), "{shell}: {command}");
        }
    }
}
