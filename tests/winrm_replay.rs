//! The WinRS client against recorded exchanges with real Windows servers: pypsrp's
//! recordings served in order by a replay server on 127.0.0.1 (see
//! `support/winrm_replay.rs` for what is compared), and WinRb's single answers parsed.
//!
//! pypsrp signals a finished command with `ctrl_c`, so these tests pass that code; deploy's
//! transport itself signals `terminate` (as pywinrm does) — the code is the only difference.

use std::time::Duration;

use deploy::transport::winrm::client::{Client, ClientConfig, ClientError};
use deploy::transport::winrm::wsman::{self, SIGNAL_CTRL_C, ShellOptions};

use crate::support::winrm_replay::{Replay, fixtures, recording};

const WAIT: Duration = Duration::from_secs(20);

fn client(replay: &Replay) -> Client {
    Client::new(ClientConfig {
        url: replay.url(),
        user: "vagrant".into(),
        password: "vagrant".into(),
        label: "vagrant@win-replay".into(),
        operation_timeout: Duration::from_secs(20),
        connect_timeout: Duration::from_secs(5),
        tls: Default::default(),
        auth: deploy::transport::winrm::AuthKind::Basic,
    })
    .expect("client")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("utf-8 output")
}

/// Create, one command, its output to the end, signal, delete: what most recordings hold.
fn one_command(name: &str, options: ShellOptions, command: &str, args: &[&str]) -> wsman::Received {
    let replay = Replay::start(recording(name));
    let c = client(&replay);
    let shell = c.create_shell(&options).expect("create");
    let id = c.command(&shell, command, args, false).expect("command");
    let out = c.receive_all(&shell, &id, WAIT, 1 << 20).expect("receive");
    c.signal(&shell, &id, SIGNAL_CTRL_C).expect("signal");
    c.delete_shell(&shell).expect("delete");
    replay.assert_all_served();
    out
}

#[test]
fn winrs_standard_command() {
    let out = one_command(
        "test_winrs_standard",
        ShellOptions::default(),
        "cmd.exe",
        &["/c", "echo", "hi"],
    );
    assert_eq!(text(&out.stdout), "hi\r\n");
    assert_eq!(out.exit_code, Some(0));
    assert!(out.done);
}

#[test]
fn winrs_stdin_in_two_sends_the_second_ending_it() {
    let replay = Replay::start(recording("test_winrs_send"));
    let c = client(&replay);
    let shell = c.create_shell(&ShellOptions::default()).expect("create");
    let id = c
        .command(&shell, "powershell.exe", &["-"], false)
        .expect("command");
    c.send(&shell, &id, b"Write-Host \"output 1\";", false)
        .expect("send 1");
    c.send(&shell, &id, b"Write-Host \"output 2\";", true)
        .expect("send 2");
    let out = c.receive_all(&shell, &id, WAIT, 1 << 20).expect("receive");
    c.signal(&shell, &id, SIGNAL_CTRL_C).expect("signal");
    c.delete_shell(&shell).expect("delete");
    replay.assert_all_served();
    assert_eq!(text(&out.stdout), "output 1\noutput 2\n");
}

#[test]
fn winrs_stderr_and_exit_code() {
    let out = one_command(
        "test_winrs_stderr_rc",
        ShellOptions::default(),
        "cmd.exe",
        &["/c echo out && echo err>&2 && exit 1"],
    );
    assert_eq!(text(&out.stdout), "out \r\n");
    assert_eq!(text(&out.stderr), "err \r\n");
    assert_eq!(out.exit_code, Some(1));
}

#[test]
fn winrs_utf8_codepage() {
    let out = one_command(
        "test_winrs_unicode",
        ShellOptions {
            codepage: Some(65001),
            ..ShellOptions::default()
        },
        "powershell.exe",
        &["Write-Host こんにちは"],
    );
    assert_eq!(text(&out.stdout), "こんにちは\n");
}

#[test]
fn winrs_operation_timeout_is_retried() {
    // The command is quiet for 30 s; the server answers two Receives with w:TimedOut (HTTP
    // 500) before the output. That is not an error.
    let out = one_command(
        "test_winrs_operation_timeout",
        ShellOptions::default(),
        "powershell.exe",
        &["Write-Host hi; Start-Sleep 30; Write-Host hi again"],
    );
    assert_eq!(text(&out.stdout), "hi\nhi again\n");
    assert_eq!(out.exit_code, Some(0));
}

#[test]
fn winrs_bad_command_id_is_a_fault_naming_the_host() {
    let replay = Replay::start(recording("test_winrs_bad_cmd_id"));
    let c = client(&replay);
    let shell = c.create_shell(&ShellOptions::default()).expect("create");
    let id = c
        .command(&shell, "cmd.exe", &["/c", "echo", "hi"], false)
        .expect("command");
    let err = c
        .receive(&shell, Some("87E77BEB-6761-4C48-9D70-A00266B8459A"))
        .expect_err("a bad command id is refused");
    let msg = err.to_string();
    assert!(
        msg.starts_with("vagrant@win-replay: WinRM Receive failed: SOAP fault w:InvalidSelectors"),
        "{msg}"
    );
    assert!(msg.contains("invalid selectors"), "{msg}");
    // receive_all gives up at once on such a fault (only TimedOut is retried).
    c.signal(&shell, &id, SIGNAL_CTRL_C).expect("signal");
    c.delete_shell(&shell).expect("delete");
    replay.assert_all_served();
}

#[test]
fn winrs_failed_poll_is_a_fault() {
    let replay = Replay::start(recording("test_winrs_fail_poll_process"));
    let c = client(&replay);
    let shell = c.create_shell(&ShellOptions::default()).expect("create");
    let err = c.receive(&shell, None).expect_err("no command to poll");
    let fault = err.fault().expect("a SOAP fault");
    assert_eq!(fault.subcode, "w:InvalidParameter");
    assert_eq!(fault.wsman_code.as_deref(), Some("87"));
    assert!(
        err.to_string().contains("The parameter is incorrect."),
        "{err}"
    );
    c.delete_shell(&shell).expect("delete");
    replay.assert_all_served();
}

#[test]
fn winrs_missing_program_without_cmd_shell() {
    let replay = Replay::start(recording("test_winrs_no_cmd_shell"));
    let c = client(&replay);
    let shell = c.create_shell(&ShellOptions::default()).expect("create");
    let err = c
        .command(&shell, "powershell.exe", &["Write-Host", "hi"], true)
        .expect_err("not found without cmd.exe's PATH search");
    let msg = err.to_string();
    assert!(msg.contains("w:InternalError"), "{msg}");
    assert!(
        msg.contains("The system cannot find the file specified."),
        "{msg}"
    );
    assert!(msg.contains("WS-Man code 2147942402"), "{msg}");
    let id = c
        .command(
            &shell,
            r"C:\Windows\system32\WindowsPowerShell\v1.0\powershell.exe",
            &["Write-Host", "hi"],
            true,
        )
        .expect("command by full path");
    let out = c.receive_all(&shell, &id, WAIT, 1 << 20).expect("receive");
    assert_eq!(text(&out.stdout), "hi\n");
    c.signal(&shell, &id, SIGNAL_CTRL_C).expect("signal");
    c.delete_shell(&shell).expect("delete");
    replay.assert_all_served();
}

#[test]
fn wsman_envelope_size_from_the_server_config() {
    let mut sizes = Vec::new();
    for kb in [150usize, 500, 4096] {
        let replay = Replay::start(recording(&format!("test_wsman_update_envelope_size_{kb}")));
        let c = client(&replay);
        assert_eq!(c.max_envelope(), 150 * 1024, "the default before asking");
        assert_eq!(c.read_config().expect("config"), kb * 1024);
        assert_eq!(c.max_envelope(), kb * 1024);
        replay.assert_all_served();
        let chunk = c.send_chunk_size(
            "4283CBDC-3706-415B-88BD-B385F3E51A53",
            "CF84C20A-0A35-43FA-AF78-0B4711DA5F30",
        );
        // The base64 of a chunk plus the envelope around it fits the limit.
        assert!(chunk.div_ceil(3) * 4 + 2048 < kb * 1024, "{kb}: {chunk}");
        sizes.push(chunk);
    }
    assert!(sizes[0] < sizes[1] && sizes[1] < sizes[2], "{sizes:?}");
}

#[test]
fn winrs_shell_without_profile() {
    let out = one_command(
        "test_winrs_noprofile",
        ShellOptions {
            no_profile: true,
            ..ShellOptions::default()
        },
        "cmd.exe",
        &["/c", "set"],
    );
    assert!(text(&out.stdout).contains("ALLUSERSPROFILE=C:\\ProgramData"));
}

#[test]
fn winrs_shell_with_extra_options() {
    let out = one_command(
        "test_winrs_extra_opts",
        ShellOptions {
            idle_timeout_s: Some(60),
            lifetime_s: Some(60),
            name: Some("shell 1".into()),
            working_directory: Some(r"C:\Windows".into()),
            ..ShellOptions::default()
        },
        "powershell.exe",
        &["(pwd).Path"],
    );
    assert_eq!(text(&out.stdout), "C:\\Windows\r\n");
}

#[test]
fn winrs_shell_environment_with_awkward_names() {
    let odd = r#"_-(){}[]<>*+-/\?"!@#$^&|;:i,.`~0"#;
    let out = one_command(
        "test_winrs_environment",
        ShellOptions {
            environment: vec![
                ("env1".into(), "var1".into()),
                ("1234".into(), "5678".into()),
                (odd.into(), odd.into()),
            ],
            ..ShellOptions::default()
        },
        "cmd.exe",
        &["/c", "set"],
    );
    assert!(text(&out.stdout).contains("1234=5678\r\n"));
}

#[test]
fn winrs_open_and_delete_only() {
    let replay = Replay::start(recording("test_winrs_open_already_opened"));
    let c = client(&replay);
    let shell = c.create_shell(&ShellOptions::default()).expect("create");
    assert_eq!(shell, "ED7FD87E-E041-4BC2-A22F-B58FF7833094");
    c.delete_shell(&shell).expect("delete");
    replay.assert_all_served();
}

#[test]
fn client_execute_cmd_two_shells_in_a_row() {
    let replay = Replay::start(recording("test_client_execute_cmd"));
    let c = client(&replay);
    let mut outputs = Vec::new();
    for command in ["dir", "echo abc"] {
        let shell = c.create_shell(&ShellOptions::default()).expect("create");
        let id = c.command(&shell, command, &[], false).expect("command");
        let out = c.receive_all(&shell, &id, WAIT, 1 << 20).expect("receive");
        c.signal(&shell, &id, SIGNAL_CTRL_C).expect("signal");
        c.delete_shell(&shell).expect("delete");
        outputs.push(text(&out.stdout));
    }
    replay.assert_all_served();
    assert!(
        outputs[0].contains("Directory of C:\\Users\\vagrant"),
        "{}",
        outputs[0]
    );
    assert_eq!(outputs[1], "abc\r\n");
}

#[test]
fn client_execute_cmd_with_environment() {
    let env: Vec<(String, String)> = [
        ("string", "string value"),
        ("int", "1234"),
        ("bool", "True"),
        ("double_quote", "double \" quote"),
        ("single_quote", "single ' quote"),
        ("hyphen - var", "abc @ 123"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let out = one_command(
        "test_client_execute_cmd_environment",
        ShellOptions {
            environment: env,
            ..ShellOptions::default()
        },
        "set",
        &[],
    );
    assert!(text(&out.stdout).contains("string=string value\r\n"));
}

fn winrb(name: &str) -> String {
    std::fs::read_to_string(fixtures().join("winrb").join(name)).expect("read winrb answer")
}

#[test]
fn winrb_open_shell_answers() {
    let body = wsman::parse_answer(&winrb("open_shell_v1.xml")).expect("v1");
    assert_eq!(
        wsman::shell_id(&body).expect("v1 id"),
        "uuid:739990FF-1492-4CDD-80BB-6E07ADB06D85"
    );
    let body = wsman::parse_answer(&winrb("open_shell_v2.xml")).expect("v2");
    assert_eq!(
        wsman::shell_id(&body).expect("v2 id"),
        "62DE33F0-8674-43D9-B6A5-3298012CC4CD"
    );
}

#[test]
fn winrb_soap_faults() {
    for name in ["soap_fault_v1.xml", "soap_fault_v2.xml"] {
        let err = wsman::parse_answer(&winrb(name)).expect_err(name);
        let wsman::AnswerError::Fault(fault) = err else {
            panic!("{name}: not a fault: {err}");
        };
        assert_eq!(fault.code, "s:Sender");
        assert_eq!(fault.subcode, "n:CannotProcessFilter");
        assert_eq!(fault.wsman_code.as_deref(), Some("2150858778"));
        assert_eq!(
            fault.detail.as_deref(),
            Some("The specified class does not exist in the given namespace.")
        );
        let shown = fault.to_string();
        assert!(
            shown.starts_with("SOAP fault n:CannotProcessFilter (WS-Man code 2150858778): The data source could not process the filter. The filter might be missing"),
            "{shown}"
        );
        assert!(!fault.is_timeout());
    }
}

#[test]
fn winrb_quota_limit_fails_shell_creation_naming_the_host() {
    // Served as the answer to Create (HTTP 500), as a server at its shell quota does.
    let replay = Replay::start(vec![crate::support::winrm_replay::Exchange {
        request: recording("test_winrs_open_already_opened")[0]
            .request
            .clone(),
        response: winrb("wmi_error_v2.xml"),
        status: 500,
    }]);
    let c = client(&replay);
    let err = c
        .create_shell(&ShellOptions::default())
        .expect_err("quota exceeded");
    assert!(matches!(err, ClientError::Fault { .. }));
    let msg = err.to_string();
    assert!(
        msg.starts_with("vagrant@win-replay: WinRM Create shell failed: SOAP fault w:QuotaLimit"),
        "{msg}"
    );
    assert!(
        msg.contains("maximum number of 30 concurrent shells"),
        "{msg}"
    );
    replay.assert_all_served();
}

#[test]
fn the_replay_server_notices_a_request_that_differs() {
    // The recording ran `cmd.exe /c echo hi`; asking for something else must not pass.
    let replay = Replay::start(recording("test_winrs_standard"));
    let c = client(&replay);
    let shell = c.create_shell(&ShellOptions::default()).expect("create");
    let _ = c.command(&shell, "cmd.exe", &["/c", "echo", "bye"], false);
    let mismatches = replay.mismatches();
    assert_eq!(mismatches.len(), 1, "{mismatches:?}");
    assert!(mismatches[0].contains("bye"), "{mismatches:?}");
}
