//! plan -> apply -> handler for a Windows host (`ansible_connection: winrm`) through the real
//! `deploy` binary, against the WS-Man stand-in of `support/winrm_standin.rs` on 127.0.0.1.
//!
//! What is real: deploy end to end (inventory, CRLF rendering, plan, apply, handlers), its
//! WinRM transport and WS-Man client, the HTTP exchange with Basic auth, the envelope size
//! limit, the TimedOut retry. What the stand-in replaces: Windows and PowerShell — the
//! server performs in Rust what deploy's read and write scripts would do, on a temp folder
//! standing in for `C:\`, and judges handler commands by their words (see that module).
//! No PowerShell script of deploy's is executed here.

use std::path::PathBuf;

use crate::support::ntlm_gateway::Gateway;
use crate::support::project::Project;
use crate::support::winrm_replay::test_ca;
use crate::support::winrm_standin::StandIn;

const USER: &str = "deployer";
const PASSWORD: &str = "Winrm-Pa55";

/// A project with one Windows host `wintermute` served by a fresh stand-in. The stand-in
/// announces an 8 KiB envelope limit, so a 30 KB file travels in several Sends.
fn windows_project(handler: &str, password: &str) -> (Project, StandIn, PathBuf) {
    let (p, server, c, _) = build(handler, password, Scheme::Http);
    (p, server, c)
}

/// How the host is reached.
enum Scheme {
    Http,
    /// https, `ansible_winrm_server_cert_validation: ignore`.
    HttpsIgnore,
    /// https, certificate checked against Mozilla's roots (the test one is not among them).
    HttpsValidate,
    /// https, `ansible_winrm_ca_trust_path` naming the test certificate.
    HttpsCaFile,
    /// `ansible_winrm_transport: ntlm` as `user`, through pyspnego's NTLM acceptor in front
    /// of the stand-in (`support/ntlm_gateway.py`): over http every message is sealed; over
    /// https (certificate check ignored) TLS protects them, and the logon must carry the TLS
    /// channel binding (the gateway is as strict as `CbtHardeningLevel=Strict`).
    Ntlm {
        https: bool,
        user: &'static str,
        /// Close each connection after this many messages (0: never).
        close_every: usize,
    },
}

fn build(
    handler: &str,
    password: &str,
    scheme: Scheme,
) -> (Project, StandIn, PathBuf, Option<Gateway>) {
    let p = Project::new();
    let c_drive = p.path().join("wintermute-fs");
    std::fs::create_dir_all(&c_drive).expect("root");
    let mut transport = "basic";
    let mut user = USER;
    let mut gateway = None;
    let (server, scheme_vars) = match scheme {
        Scheme::Http => (
            StandIn::start(&c_drive, USER, PASSWORD, 8),
            "ansible_winrm_scheme: http".to_string(),
        ),
        Scheme::HttpsIgnore => (
            StandIn::start_tls(&c_drive, USER, PASSWORD),
            "ansible_winrm_scheme: https\n        ansible_winrm_server_cert_validation: ignore"
                .to_string(),
        ),
        Scheme::HttpsValidate => (
            StandIn::start_tls(&c_drive, USER, PASSWORD),
            "ansible_winrm_scheme: https".to_string(),
        ),
        Scheme::HttpsCaFile => (
            StandIn::start_tls(&c_drive, USER, PASSWORD),
            format!(
                "ansible_winrm_scheme: https\n        ansible_winrm_ca_trust_path: {}",
                test_ca().display()
            ),
        ),
        Scheme::Ntlm {
            https,
            user: u,
            close_every,
        } => {
            let server = StandIn::start(&c_drive, USER, PASSWORD, 8);
            let g = Gateway::start(
                p.path(),
                server.port(),
                USER,
                PASSWORD,
                &[("", USER, PASSWORD), ("WINTERMUTE", USER, PASSWORD)],
                https,
                close_every,
            );
            transport = "ntlm";
            user = u;
            let vars = if https {
                "ansible_winrm_scheme: https\n        ansible_winrm_server_cert_validation: ignore"
            } else {
                "ansible_winrm_scheme: http"
            };
            gateway = Some(g);
            (server, vars.to_string())
        }
    };
    let port = gateway.as_ref().map_or(server.port(), Gateway::port);
    p.inventory(&format!(
        r#"all:
  children:
    windows:
      vars:
        ansible_connection: winrm
        {scheme_vars}
        ansible_winrm_transport: {transport}
        ansible_host: 127.0.0.1
        ansible_port: {port}
        ansible_user: '{user}'
        ansible_password: "{password}"
        deploy_newline: "\r\n"
      hosts:
        wintermute:
          served_name: llama31-8b
          handler_mode: {handler}
"#
    ))
    .manifest(
        r#"
groups:
  windows:
    files:
      - template: vllm.config.yml.j2
        dest: 'C:\vllm\config.yml'
        # Ignored on Windows: no spurious mode change in plans.
        mode: "0640"
        notify: restart vllm
      - template: big.txt.j2
        dest: 'C:\vllm\data\big.txt'
    handlers:
      - name: restart vllm
        run: "Restart-Stub {{ handler_mode }}"
"#,
    )
    .template(
        "vllm.config.yml.j2",
        "vllm:\n  served_model_name: {{ served_name }}\n  port: 8000\n",
    )
    .template(
        "big.txt.j2",
        "{% for i in range(1500) %}line {{ i }} of a file larger than one envelope\n{% endfor %}",
    );
    (p, server, c_drive, gateway)
}

#[test]
fn windows_host_plan_apply_handler_then_nothing_to_do() {
    let (p, server, c) = windows_project("ok", PASSWORD);

    let plan = p.run(&["plan"]).expect(0);
    assert!(
        plan.stdout.contains(r"C:\vllm\config.yml"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("Plan: 2 to create, 0 to change"),
        "{}",
        plan.stdout
    );
    assert!(
        !plan.stdout.contains("0640"),
        "mode is ignored on Windows: {}",
        plan.stdout
    );
    assert!(!c.join("C").exists(), "plan wrote nothing");

    let run = p.run(&["apply", "--yes"]).expect(0);
    assert!(
        run.stdout.contains("restart vllm"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    // CRLF content arrives byte-exact (UTF-8, no BOM).
    let config = std::fs::read(c.join("C/vllm/config.yml")).expect("config written");
    assert_eq!(
        config,
        b"vllm:\r\n  served_model_name: llama31-8b\r\n  port: 8000\r\n".to_vec()
    );
    let big = std::fs::read_to_string(c.join("C/vllm/data/big.txt")).expect("big written");
    assert_eq!(big.lines().count(), 1500);
    assert!(big.starts_with("line 0 of a file larger than one envelope\r\nline 1 "));
    assert!(big.len() > 30_000);
    assert_eq!(
        std::fs::read_to_string(c.join("handlers.log")).expect("handler ran"),
        "Restart-Stub ok\n"
    );
    // No temporary file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(c.join("C/vllm"))
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The host records the deploy and its lock is released.
    let record = c.join("C/ProgramData/deploy");
    assert!(record.join("state.json").is_file(), "state record written");
    assert!(!record.join("lock.json").exists(), "lock released");

    server.record(|r| {
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        // Content travels on stdin in chunks, never on the command line.
        assert!(r.longest_command_line < 8000, "{}", r.longest_command_line);
        assert!(r.actions.iter().filter(|a| *a == "Send").count() > 4);
        assert!(r.largest_envelope <= 8 * 1024);
        // A handler runs as one encoded script that stops on errors and exits with the
        // last status.
        assert_eq!(r.handler_scripts.len(), 1);
        assert!(
            r.handler_scripts[0].starts_with("$ErrorActionPreference = 'Stop'\n"),
            "{}",
            r.handler_scripts[0]
        );
        assert!(r.handler_scripts[0].ends_with("Restart-Stub ok\nexit $LASTEXITCODE\n"));
        // The shell of each run is deleted when the run ends.
        assert_eq!(r.open_shells, 0);
    });
    // The CLIXML progress record the handler wrote on stderr is not shown as an error.
    assert!(!run.stdout.contains("CLIXML"), "{}", run.stdout);

    let again = p.run(&["apply", "--yes"]).expect(0);
    assert!(
        again.stdout.contains("wintermute: no changes (2 files)"),
        "{}",
        again.stdout
    );
    assert_eq!(
        std::fs::read_to_string(c.join("handlers.log")).expect("log"),
        "Restart-Stub ok\n",
        "no handler on a run without changes"
    );
}

#[test]
fn a_failing_windows_handler_fails_the_host_with_its_error_as_text() {
    let (p, _server, c) = windows_project("fail", PASSWORD);
    let run = p.run(&["apply", "--yes"]).expect(1);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains("wintermute"), "{all}");
    assert!(
        all.contains(
            "handler `restart vllm` failed with status 1: vLLM did not start: port 8000 is in use"
        ),
        "{all}"
    );
    assert!(!all.contains("CLIXML"), "{all}");
    // The files were written before the handler ran.
    assert!(c.join("C/vllm/config.yml").exists());
}

#[test]
fn a_wrong_windows_password_is_an_authentication_error_naming_the_host() {
    let (p, server, _c) = windows_project("ok", "not-the-password");
    let run = p.run(&["plan"]).expect(1);
    assert!(
        run.stdout
            .contains("wintermute: error: authentication failed: deployer@127.0.0.1:"),
        "{}{}",
        run.stdout,
        run.stderr
    );
    assert!(run.stdout.contains("HTTP 401"), "{}", run.stdout);
    assert!(
        !format!("{}{}", run.stdout, run.stderr).contains("not-the-password"),
        "the password is never printed"
    );
    server.record(|r| assert!(r.actions.is_empty(), "{:?}", r.actions));
}

#[test]
fn an_existing_windows_file_with_a_bom_shows_in_the_diff_and_is_replaced_without_it() {
    let (p, _server, c) = windows_project("ok", PASSWORD);
    std::fs::create_dir_all(c.join("C/vllm")).expect("dir");
    let mut old = b"\xEF\xBB\xBF".to_vec();
    old.extend_from_slice(b"vllm:\r\n  served_model_name: old\r\n  port: 8000\r\n");
    std::fs::write(c.join("C/vllm/config.yml"), &old).expect("old");
    let plan = p.run(&["plan"]).expect(0);
    assert!(
        plan.stdout.contains(
            "(the current file is UTF-8 with a BOM; it is written as UTF-8 without a BOM)"
        ),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("-  served_model_name: old"),
        "{}",
        plan.stdout
    );
    p.run(&["apply", "--yes"]).expect(0);
    let now = std::fs::read(c.join("C/vllm/config.yml")).expect("config");
    assert!(now.starts_with(b"vllm:\r\n"), "no BOM is written");
}

#[test]
fn https_with_certificate_validation_ignored() {
    let (p, _server, c, _) = build("ok", PASSWORD, Scheme::HttpsIgnore);
    p.run(&["apply", "--yes"]).expect(0);
    assert!(c.join("C/vllm/config.yml").exists());
    assert_eq!(
        std::fs::read_to_string(c.join("handlers.log")).expect("handler ran"),
        "Restart-Stub ok\n"
    );
}

#[test]
fn https_with_a_trusted_ca_file() {
    let (p, _server, _c, _) = build("ok", PASSWORD, Scheme::HttpsCaFile);
    let plan = p.run(&["plan"]).expect(0);
    assert!(plan.stdout.contains("Plan: 2 to create"), "{}", plan.stdout);
}

#[test]
fn https_refuses_an_unknown_certificate_naming_the_host() {
    let (p, server, _c, _) = build("ok", PASSWORD, Scheme::HttpsValidate);
    let run = p.run(&["plan"]).expect(1);
    assert!(
        run.stdout
            .contains("wintermute: error: cannot connect: deployer@127.0.0.1:"),
        "{}{}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.stdout.to_lowercase().contains("certificate"),
        "{}",
        run.stdout
    );
    server.record(|r| assert!(r.actions.is_empty(), "{:?}", r.actions));
}

/// A project whose host is reached with NTLM as `user` (see [`Scheme::Ntlm`]).
fn ntlm(
    password: &str,
    https: bool,
    user: &'static str,
    close_every: usize,
) -> (Project, StandIn, PathBuf, Gateway) {
    let scheme = Scheme::Ntlm {
        https,
        user,
        close_every,
    };
    let (p, server, c, gateway) = build("ok", password, scheme);
    (
        p,
        server,
        c,
        gateway.expect("an NTLM project has a gateway"),
    )
}

/// The default Windows listener: http with `AllowUnencrypted=false`. deploy authenticates
/// with NTLM against pyspnego's acceptor (an independent implementation, the one pywinrm
/// uses), on one TCP connection per run, and every envelope travels sealed both ways.
#[test]
fn ntlm_over_http_seals_every_message_on_one_connection() {
    let (p, server, c, gateway) = ntlm(PASSWORD, false, USER, 0);
    let plan = p.run(&["plan"]).expect(0);
    assert!(plan.stdout.contains("Plan: 2 to create"), "{}", plan.stdout);
    // One run: one connection, one handshake, every message sealed.
    assert_eq!(gateway.count("connection"), 1, "{:?}", gateway.events());
    assert_eq!(gateway.count("authenticated"), 1, "{:?}", gateway.events());
    let messages: Vec<_> = gateway
        .events()
        .into_iter()
        .filter(|e| e["event"] == "message")
        .collect();
    assert!(messages.len() >= 4, "{messages:?}");
    assert!(
        messages.iter().all(|m| m["encrypted"] == true),
        "{messages:?}"
    );
    assert_eq!(gateway.count("refused"), 0, "{:?}", gateway.events());

    let run = p.run(&["apply", "--yes"]).expect(0);
    assert!(run.stdout.contains("restart vllm"), "{}", run.stdout);
    assert_eq!(
        std::fs::read(c.join("C/vllm/config.yml")).expect("config written"),
        b"vllm:\r\n  served_model_name: llama31-8b\r\n  port: 8000\r\n".to_vec()
    );
    let big = std::fs::read_to_string(c.join("C/vllm/data/big.txt")).expect("big written");
    assert_eq!(big.lines().count(), 1500);
    assert_eq!(
        std::fs::read_to_string(c.join("handlers.log")).expect("handler ran"),
        "Restart-Stub ok\n"
    );
    server.record(|r| {
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert!(r.actions.iter().filter(|a| *a == "Send").count() > 4);
        assert_eq!(r.open_shells, 0);
    });
    assert_eq!(
        gateway.count("connection"),
        2,
        "one more run, one more connection"
    );
    assert_eq!(gateway.count("auth_failed"), 0, "{:?}", gateway.events());
    let again = p.run(&["apply", "--yes"]).expect(0);
    assert!(
        again.stdout.contains("wintermute: no changes (2 files)"),
        "{}",
        again.stdout
    );
}

#[test]
fn ntlm_over_https_and_a_domain_qualified_user() {
    let (p, _server, c, gateway) = ntlm(PASSWORD, true, "WINTERMUTE\\deployer", 0);
    p.run(&["apply", "--yes"]).expect(0);
    assert!(c.join("C/vllm/config.yml").exists());
    let events = gateway.events();
    assert_eq!(gateway.count("authenticated"), 1, "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "authenticated" && e["user"] == "WINTERMUTE\\deployer"),
        "{events:?}"
    );
    // TLS protects the messages: they are not sealed a second time.
    let messages: Vec<_> = events.iter().filter(|e| e["event"] == "message").collect();
    assert!(messages.len() >= 4, "{events:?}");
    assert!(
        messages.iter().all(|e| e["encrypted"] == false),
        "{events:?}"
    );
}

#[test]
fn a_wrong_ntlm_password_is_an_authentication_error_naming_the_host() {
    let (p, server, _c, gateway) = ntlm("not-the-password", false, USER, 0);
    let run = p.run(&["plan"]).expect(1);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("wintermute: error: authentication failed: deployer@127.0.0.1:"),
        "{all}"
    );
    assert!(run.stdout.contains("NTLM, HTTP 401"), "{all}");
    assert!(
        !all.contains("not-the-password"),
        "the password is never printed"
    );
    assert_eq!(gateway.count("auth_failed"), 1, "{:?}", gateway.events());
    server.record(|r| assert!(r.actions.is_empty(), "{:?}", r.actions));
}

/// A server may close a connection between messages (an idle timeout): deploy notices,
/// authenticates a new connection and sends the envelope again, and the run completes.
#[test]
fn ntlm_reauthenticates_when_the_server_closes_the_connection() {
    let (p, server, c, gateway) = ntlm(PASSWORD, false, USER, 3);
    p.run(&["apply", "--yes"]).expect(0);
    assert_eq!(
        std::fs::read_to_string(c.join("handlers.log")).expect("handler ran"),
        "Restart-Stub ok\n"
    );
    let connections = gateway.count("connection");
    assert!(connections > 2, "{:?}", gateway.events());
    assert_eq!(gateway.count("authenticated"), connections);
    assert_eq!(gateway.count("auth_failed"), 0);
    server.record(|r| assert!(r.problems.is_empty(), "{:?}", r.problems));
}

#[test]
fn windows_src_files_a_mirrored_folder_and_an_absent_file() {
    use crate::plain_files::{noise, sha8};
    let (p, server, c) = windows_project("ok", PASSWORD);
    p.manifest(
        r#"
groups:
  windows:
    files:
      - src: bin/tool.exe
        dest: 'C:\vllm\bin\tool.exe'
      - src: scripts
        dest: 'C:\vllm\scripts'
        delete: true
      - dest: 'C:\vllm\old.yml'
        state: absent
        notify: restart vllm
    handlers:
      - name: restart vllm
        run: "Restart-Stub {{ handler_mode }}"
"#,
    )
    .bytes("files/bin/tool.exe", &noise(40_000, 21))
    .file("files/scripts/start.ps1", "Write-Output 'start'\n")
    .file("files/scripts/readme.txt", "read me\n");
    std::fs::create_dir_all(c.join("C/vllm/scripts")).expect("dir");
    std::fs::write(c.join("C/vllm/old.yml"), "retired: true\r\n").expect("old");
    std::fs::write(c.join("C/vllm/scripts/stale.ps1"), "old\r\n").expect("stale");
    // The same name as readme.txt to Windows, which folds case: never removed.
    std::fs::write(c.join("C/vllm/scripts/README.TXT"), "READ ME\r\n").expect("upper");

    let plan = p.run(&["plan"]).expect(0);
    assert!(
        plan.stdout.contains(&format!(
            "  + C:\\vllm\\bin\\tool.exe (mode 0644)\n      binary, 39.1 KiB (sha256 {}…)\n",
            sha8(&noise(40_000, 21))
        )),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("  + C:\\vllm\\scripts\\start.ps1 (mode 0644)\n"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("  - C:\\vllm\\old.yml\n"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("  - C:\\vllm\\scripts\\stale.ps1\n"),
        "{}",
        plan.stdout
    );
    assert!(!plan.stdout.contains("README.TXT"), "{}", plan.stdout);
    assert!(
        plan.stdout
            .contains("Plan: 3 to create, 0 to change, 2 to remove, 0 unchanged"),
        "{}",
        plan.stdout
    );

    p.run(&["apply", "--yes"]).expect(0);
    // Byte for byte: no CRLF conversion although the host's deploy_newline is "\r\n".
    assert_eq!(
        std::fs::read(c.join("C/vllm/bin/tool.exe")).expect("tool"),
        noise(40_000, 21)
    );
    assert_eq!(
        std::fs::read(c.join("C/vllm/scripts/start.ps1")).expect("start"),
        b"Write-Output 'start'\n"
    );
    assert!(!c.join("C/vllm/old.yml").exists());
    assert!(!c.join("C/vllm/scripts/stale.ps1").exists());
    assert!(c.join("C/vllm/scripts/README.TXT").exists());
    assert_eq!(
        std::fs::read_to_string(c.join("handlers.log")).expect("handler ran"),
        "Restart-Stub ok\n"
    );
    server.record(|r| assert!(r.problems.is_empty(), "{:?}", r.problems));

    let again = p.run(&["apply", "--yes"]).expect(0);
    assert!(
        again.stdout.contains("wintermute: no changes (4 files)"),
        "{}",
        again.stdout
    );
}

/// `validate:` on a Windows host: the write script runs the command (with `%s` as the
/// temporary copy's path, single-quoted) in a PowerShell of its own before anything is
/// replaced. The stand-in performs that script's effect: it runs the command's native
/// program (python3 here) on the temporary file it wrote.
#[test]
fn windows_validate_runs_on_the_temporary_copy_and_a_failure_replaces_nothing() {
    let (p, server, c) = windows_project("ok", PASSWORD);
    let validator = r#"python3 -c "import sys; t = open(sys.argv[1]).read(); sys.exit('served name missing in ' + sys.argv[1] if 'served_model_name: llama' not in t else 0)" %s"#;
    p.manifest(&format!(
        r#"
groups:
  windows:
    files:
      - template: vllm.config.yml.j2
        dest: 'C:\vllm\config.yml'
        validate: '{}'
        notify: restart vllm
      - template: big.txt.j2
        dest: 'C:\vllm\data\big.txt'
    handlers:
      - name: restart vllm
        run: "Restart-Stub {{{{ handler_mode }}}}"
"#,
        validator.replace('\'', "''")
    ));
    p.run(&["apply", "--yes"]).expect(0);
    let first = std::fs::read(c.join("C/vllm/config.yml")).expect("written");
    server.record(|r| {
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.validate_scripts.len(), 1, "{:?}", r.validate_scripts);
        let script = &r.validate_scripts[0];
        assert!(
            script.starts_with("$ErrorActionPreference = 'Stop'\n"),
            "{script}"
        );
        // The temporary copy beside its destination (the stand-in names it its own way).
        assert!(script.contains(r" 'C:\vllm\."), "{script}");
        assert!(script.ends_with(".tmp'\nexit $LASTEXITCODE\n"), "{script}");
    });

    // A config the validator refuses: nothing on the host is replaced (the other file of
    // the batch included), no handler runs, the host fails with the command's words.
    p.template(
        "vllm.config.yml.j2",
        "vllm:\n  served_model: qwen\n  port: 8000\n",
    )
    .template("big.txt.j2", "changed too\n");
    let run = p.run(&["apply", "--yes"]).expect(1);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains(r"validate of C:\vllm\config.yml failed on deployer@127.0.0.1"),
        "{all}"
    );
    assert!(all.contains("failed wintermute"), "{all}");
    assert!(all.contains("served name missing in"), "{all}");
    assert!(all.contains("nothing was replaced"), "{all}");
    assert_eq!(
        std::fs::read(c.join("C/vllm/config.yml")).expect("kept"),
        first
    );
    assert!(
        std::fs::read_to_string(c.join("C/vllm/data/big.txt"))
            .expect("kept")
            .starts_with("line 0 "),
        "the batch's other file is not replaced either"
    );
    assert_eq!(
        std::fs::read_to_string(c.join("handlers.log")).expect("log"),
        "Restart-Stub ok\n",
        "no handler ran for the refused change"
    );
    let leftovers: Vec<_> = std::fs::read_dir(c.join("C/vllm"))
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_windows_apply_sweeps_stale_temporaries_and_nothing_else() {
    let (p, _server, c) = windows_project("ok", PASSWORD);
    let dir = c.join("C/vllm");
    std::fs::create_dir_all(dir.join("data")).expect("dirs");
    // What a cut run left: deploy's own temporary names (a file, and one in a subfolder that
    // is written too); next to them what is not deploy's, or not a plain file.
    std::fs::write(dir.join(".config.yml.deploy-0123abcd.tmp"), "partial").expect("stale");
    std::fs::write(dir.join("data/.big.txt.deploy-4567.tmp"), "partial").expect("stale");
    std::fs::write(dir.join("notes.tmp"), "mine").expect("notes");
    std::fs::write(dir.join(".config.yml.bak"), "mine").expect("bak");
    std::fs::create_dir(dir.join(".x.deploy-dir.tmp")).expect("dir");
    std::fs::write(c.join("elsewhere.txt"), "kept").expect("elsewhere");
    std::os::unix::fs::symlink(c.join("elsewhere.txt"), dir.join(".l.deploy-1.tmp")).expect("link");

    let run = p.run(&["apply", "--yes"]).expect(0);
    assert!(
        run.stdout
            .contains("removed 2 temporary files left by an earlier run that died mid-write"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains(r"C:\vllm\data\.big.txt.deploy-4567.tmp")
            && run
                .stdout
                .contains(r"C:\vllm\.config.yml.deploy-0123abcd.tmp"),
        "{}",
        run.stdout
    );
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ".config.yml.bak",
            ".l.deploy-1.tmp",
            ".x.deploy-dir.tmp",
            "config.yml",
            "data",
            "notes.tmp"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(c.join("elsewhere.txt")).expect("kept"),
        "kept"
    );
}

#[test]
fn a_windows_host_that_streams_without_end_fails_that_host_within_the_bound() {
    let (p, server, _c) = windows_project("ok", PASSWORD);
    server.stream_reads_without_end();
    let started = std::time::Instant::now();
    let out = p.run(&["plan", "--max-host-read", "1M"]).expect(1);
    assert!(
        out.stdout.contains("wintermute") && out.stdout.contains("sent more than"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    // The bound is what stopped it, not the 10-minute wait: about 1.4 MiB of 64 KiB answers.
    let receives = server.record(|r| r.endless_receives);
    assert!((10..200).contains(&receives), "{receives} receives");
    assert!(started.elapsed() < std::time::Duration::from_secs(120));
}

#[test]
fn a_windows_file_over_the_limit_and_a_link_at_a_destination() {
    let (p, _server, c) = windows_project("ok", PASSWORD);
    let dir = c.join("C/vllm");
    std::fs::create_dir_all(dir.join("data")).expect("dirs");
    // A sparse 10 GiB file where big.txt goes: refused by its size, never read.
    let big = std::fs::File::create(dir.join("data/big.txt")).expect("big");
    big.set_len(10 << 30).expect("truncate");
    let out = p.run(&["plan"]).expect(1);
    assert!(
        out.stdout.contains(r"C:\vllm\data\big.txt")
            && out.stdout.contains("10 GiB (10737418240 bytes)")
            && out.stdout.contains("--max-file-size"),
        "{}",
        out.stdout
    );
    std::fs::remove_file(dir.join("data/big.txt")).expect("rm");

    // config.yml is a link to a file outside: the plan says so and does not show its text;
    // apply replaces the link, and the file it pointed at keeps its content.
    std::fs::write(c.join("C/secret.txt"), "do not print\r\n").expect("secret");
    std::os::unix::fs::symlink(c.join("C/secret.txt"), dir.join("config.yml")).expect("link");
    let plan = p.run(&["plan"]).expect(0);
    assert!(
        plan.stdout.contains("a symbolic link to ") && plan.stdout.contains("will be replaced"),
        "{}",
        plan.stdout
    );
    assert!(!plan.stdout.contains("do not print"), "{}", plan.stdout);
    p.run(&["apply", "--yes"]).expect(0);
    let meta = std::fs::symlink_metadata(dir.join("config.yml")).expect("config");
    assert!(meta.file_type().is_file());
    assert_eq!(
        std::fs::read_to_string(c.join("C/secret.txt")).expect("secret"),
        "do not print\r\n"
    );
}

/// WS-Man requests per run, as the stand-in received them: (Commands, Creates, all).
fn requests(server: &StandIn, since: usize) -> (usize, usize, usize) {
    server.record(|r| {
        let new = &r.actions[since..];
        (
            new.iter().filter(|a| a.as_str() == "Command").count(),
            new.iter().filter(|a| a.as_str() == "Create").count(),
            new.len(),
        )
    })
}

#[test]
fn windows_round_trips_one_shell_one_command_per_step() {
    let (p, server, c) = windows_project("ok", PASSWORD);
    // Two handlers: the big file notifies a second one.
    let manifest = std::fs::read_to_string(p.path().join("hosts/deploy.yml")).expect("manifest");
    p.manifest(
        &manifest
            .replace(
                "        dest: 'C:\\vllm\\data\\big.txt'\n",
                "        dest: 'C:\\vllm\\data\\big.txt'\n        notify: restart proxy\n",
            )
            .replace(
                "    handlers:\n",
                "    handlers:\n      - name: restart proxy\n        run: \"Restart-Stub proxy\"\n",
            ),
    );
    let count = |args: &[&str]| {
        let since = server.record(|r| r.actions.len());
        let run = p.run(args).expect(0);
        (run, requests(&server, since))
    };
    let (_, (commands, shells, _)) = count(&["plan"]);
    assert_eq!((commands, shells), (1, 1), "plan");

    // Read; lock + re-read; write; both handlers, records and unlock: four commands in one
    // shell, and deploy counts every request the server got but the shell's Delete, sent
    // as it closes, after the report.
    let (run, (commands, shells, all)) = count(&["apply", "--yes", "--json"]);
    assert_eq!((commands, shells), (4, 1), "{}", run.stdout);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(
        doc["hosts"][0]["round_trips"].as_u64(),
        Some(all as u64 - 1)
    );
    assert_eq!(doc["hosts"][0]["handlers"][0]["name"], "restart proxy");
    assert_eq!(doc["hosts"][0]["handlers"][1]["name"], "restart vllm");
    assert_eq!(doc["hosts"][0]["handlers"][1]["stdout"], "restarted\r\n");
    assert_eq!(
        std::fs::read_to_string(c.join("handlers.log")).expect("handlers ran"),
        "Restart-Stub proxy\nRestart-Stub ok\n"
    );
    assert!(!c.join("C/ProgramData/deploy/lock.json").exists());
    let record =
        std::fs::read_to_string(c.join("C/ProgramData/deploy/state.json")).expect("state record");
    let record: serde_json::Value = serde_json::from_str(&record).expect("record is JSON");
    assert!(record.get("pending_handlers").is_none(), "{record}");

    let (_, (commands, shells, _)) = count(&["apply", "--yes"]);
    assert_eq!((commands, shells), (1, 1), "no-change apply");
    assert!(server.record(|r| r.problems.is_empty()));
}
