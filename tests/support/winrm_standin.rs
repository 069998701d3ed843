//! A WS-Management stand-in for a Windows host, on 127.0.0.1, for end-to-end tests of the
//! WinRM transport through the real `deploy` binary. There is no Windows here, so:
//!
//! - REAL: the HTTP exchange and Basic auth, the WS-Man envelopes deploy sends (Get config,
//!   Create, Command, Send, Receive, Signal, Delete), stdin arriving in Send chunks that must
//!   fit the `MaxEnvelopeSizekb` this server announces (a larger envelope gets a SOAP
//!   fault), a `w:TimedOut` fault on every command's first Receive (as a real server gives
//!   a quiet command), and the answers' format.
//! - STAND-IN: no PowerShell runs. The server decodes the `-EncodedCommand` deploy sends;
//!   for deploy's bootstrap it takes the real script from stdin's first line and, by its
//!   marker line (`# deploy:read-files v3`, `# deploy:write-files v3`), performs in Rust what
//!   that script does, on a temp folder standing in for `C:\` (`C:\x\y` is `<root>/C/x/y`):
//!   report each path's state, SHA-256 and base64 bytes (a link as a link, never read
//!   through; a file over the asked `maxFile` by its size only; none past `maxHost`), and list each tree (without
//!   following links; a Unix symlink stands in for a file link) with each file's size and
//!   SHA-256; delete deploy's own stale temporary files (`.NAME.deploy-*.tmp`, plain files)
//!   in the folders a batch writes and report them; write each file to a temporary file in its destination's folder, check its
//!   SHA-256, refuse a directory where a path is to be removed, then carry out the ops in
//!   order (rename over the destination, or delete). A handler script (anything else) is recorded; its command is judged by
//!   words: `Restart-Stub fail` fails (stderr as CLIXML, exit 1), any other appends the
//!   command to `<root>/handlers.log` and succeeds (with a CLIXML progress record on stderr,
//!   which is not an error).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine;
use deploy::transport::winrm::wsman::{self, Element};
use deploy::transport::winrm::{
    BOOTSTRAP, CREATE_MARKER, HANDLERS_MARKER, LOCK_READ_MARKER, READ_MARKER, REMOVE_MARKER,
    STOP_MARKER, WRITE_MARKER,
};
use sha2::{Digest, Sha256};

use super::winrm_replay::{HttpServer, Request};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Default)]
struct Command {
    program: String,
    args: Vec<String>,
    stdin: Vec<u8>,
    receives: usize,
}

#[derive(Default)]
pub struct Record {
    /// Every action received, in order (`Create`, `Command`, `Send`, ...).
    pub actions: Vec<String>,
    /// Decoded handler scripts, in order.
    pub handler_scripts: Vec<String>,
    /// Each `validate` a write script ran: the PowerShell script with `%s` replaced, as the
    /// write script hands it to a PowerShell of its own.
    pub validate_scripts: Vec<String>,
    /// Longest command line (program and arguments joined) seen.
    pub longest_command_line: usize,
    /// Largest request body seen.
    pub largest_envelope: usize,
    pub open_shells: usize,
    /// Receives answered with more of an endless read.
    pub endless_receives: usize,
    /// Problems found in what deploy sent.
    pub problems: Vec<String>,
    /// How many times deploy's facts script was run.
    pub facts_calls: usize,
}

struct State {
    root: PathBuf,
    authorization: String,
    max_envelope: usize,
    shells: Vec<String>,
    commands: HashMap<String, Command>,
    record: Record,
    /// A hostile host: every Receive of a read answers more output and never ends.
    endless_reads: bool,
}

pub struct StandIn {
    server: HttpServer,
    state: Arc<Mutex<State>>,
}

impl StandIn {
    /// A host with user `user`/`password`, its `C:\` in `root`, announcing
    /// `max_envelope_kb` as its envelope limit.
    pub fn start(root: &Path, user: &str, password: &str, max_envelope_kb: usize) -> StandIn {
        Self::start_with(root, user, password, max_envelope_kb, false)
    }

    /// The same over https, with the test certificate for 127.0.0.1.
    pub fn start_tls(root: &Path, user: &str, password: &str) -> StandIn {
        Self::start_with(root, user, password, 150, true)
    }

    fn start_with(
        root: &Path,
        user: &str,
        password: &str,
        max_envelope_kb: usize,
        tls: bool,
    ) -> StandIn {
        let state = Arc::new(Mutex::new(State {
            root: root.to_path_buf(),
            authorization: format!("Basic {}", B64.encode(format!("{user}:{password}"))),
            max_envelope: max_envelope_kb * 1024,
            shells: Vec::new(),
            commands: HashMap::new(),
            record: Record::default(),
            endless_reads: false,
        }));
        let s = state.clone();
        let handler: super::winrm_replay::Handler = Arc::new(move |req: Request| {
            let mut st = s.lock().expect("stand-in state");
            handle(&mut st, &req)
        });
        let server = if tls {
            HttpServer::start_tls(handler)
        } else {
            HttpServer::start(handler)
        };
        StandIn { server, state }
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// From now on the host answers every file read with output that never ends (64 KiB
    /// more in each Receive, the command never done).
    pub fn stream_reads_without_end(&self) {
        self.state.lock().expect("stand-in state").endless_reads = true;
    }

    /// Looks at what the server recorded.
    pub fn record<T>(&self, f: impl FnOnce(&Record) -> T) -> T {
        let st = self.state.lock().expect("stand-in state");
        f(&st.record)
    }
}

fn envelope(action: &str, body: &str) -> String {
    format!(
        r#"<s:Envelope xml:lang="en-US" xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell"><s:Header><a:Action>{action}</a:Action><a:MessageID>uuid:{}</a:MessageID></s:Header><s:Body>{body}</s:Body></s:Envelope>"#,
        wsman::uuid()
    )
}

fn fault(subcode: &str, code: &str, reason: &str) -> (u16, String) {
    let body = format!(
        r#"<s:Fault><s:Code><s:Value>s:Sender</s:Value><s:Subcode><s:Value>{subcode}</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">{}</s:Text></s:Reason><s:Detail><f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" Code="{code}" Machine="127.0.0.1"><f:Message>{}</f:Message></f:WSManFault></s:Detail></s:Fault>"#,
        wsman::escape(reason),
        wsman::escape(reason)
    );
    (
        500,
        envelope("http://schemas.dmtf.org/wbem/wsman/1/wsman/fault", &body),
    )
}

fn handle(st: &mut State, req: &Request) -> (u16, String) {
    if req.authorization.as_deref() != Some(st.authorization.as_str()) {
        return (401, String::new());
    }
    st.record.largest_envelope = st.record.largest_envelope.max(req.body.len());
    if req.body.len() > st.max_envelope {
        st.record
            .problems
            .push(format!("an envelope of {} bytes", req.body.len()));
        return fault(
            "w:EncodingLimit",
            "2150858817",
            "The request exceeds the MaxEnvelopeSize",
        );
    }
    let root = match Element::parse(&req.body) {
        Ok(r) => r,
        Err(e) => return fault("w:InvalidMessage", "1", &format!("not XML: {e}")),
    };
    let header = root.child("Header").cloned().unwrap_or_default();
    let body = root.child("Body").cloned().unwrap_or_default();
    let action = header
        .child("Action")
        .map(|a| a.text.trim().rsplit('/').next().unwrap_or("").to_string())
        .unwrap_or_default();
    st.record.actions.push(action.clone());
    let shell_selector = header
        .find("Selector")
        .map(|s| s.text.trim().to_string())
        .unwrap_or_default();
    if !matches!(action.as_str(), "Get" | "Create") && !st.shells.contains(&shell_selector) {
        return fault("w:InvalidSelectors", "2150858843", "unknown shell");
    }
    match action.as_str() {
        "Get" => (
            200,
            envelope(
                "http://schemas.xmlsoap.org/ws/2004/09/transfer/GetResponse",
                &format!(
                    r#"<cfg:Config xmlns:cfg="http://schemas.microsoft.com/wbem/wsman/1/config"><cfg:MaxEnvelopeSizekb>{}</cfg:MaxEnvelopeSizekb></cfg:Config>"#,
                    st.max_envelope / 1024
                ),
            ),
        ),
        "Create" => {
            let id = wsman::uuid();
            st.shells.push(id.clone());
            st.record.open_shells = st.shells.len();
            (
                200,
                envelope(
                    "http://schemas.xmlsoap.org/ws/2004/09/transfer/CreateResponse",
                    &format!(
                        r#"<x:ResourceCreated><a:ReferenceParameters><w:SelectorSet><w:Selector Name="ShellId">{id}</w:Selector></w:SelectorSet></a:ReferenceParameters></x:ResourceCreated>"#
                    ),
                ),
            )
        }
        "Command" => {
            let line = body.child("CommandLine").cloned().unwrap_or_default();
            let program = line
                .child("Command")
                .map(|c| c.text.clone())
                .unwrap_or_default();
            let args: Vec<String> = line
                .children
                .iter()
                .filter(|c| c.name == "Arguments")
                .map(|c| c.text.clone())
                .collect();
            let length = program.len() + args.iter().map(|a| a.len() + 1).sum::<usize>();
            st.record.longest_command_line = st.record.longest_command_line.max(length);
            let id = wsman::uuid();
            st.commands.insert(
                id.clone(),
                Command {
                    program,
                    args,
                    ..Command::default()
                },
            );
            (
                200,
                envelope(
                    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandResponse",
                    &format!(
                        "<rsp:CommandResponse><rsp:CommandId>{id}</rsp:CommandId></rsp:CommandResponse>"
                    ),
                ),
            )
        }
        "Send" => {
            let Some(stream) = body.find("Stream") else {
                return fault("w:InvalidParameter", "87", "no stream");
            };
            let id = stream.attr("CommandId").unwrap_or_default().to_string();
            let Some(cmd) = st.commands.get_mut(&id) else {
                return fault("w:InvalidSelectors", "2150858843", "unknown command");
            };
            match B64.decode(stream.text.trim()) {
                Ok(bytes) => cmd.stdin.extend_from_slice(&bytes),
                Err(e) => return fault("w:InvalidParameter", "87", &format!("base64: {e}")),
            }
            (
                200,
                envelope(
                    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/SendResponse",
                    "<rsp:SendResponse/>",
                ),
            )
        }
        "Receive" => {
            let id = body
                .find("DesiredStream")
                .and_then(|d| d.attr("CommandId"))
                .unwrap_or_default()
                .to_string();
            let Some(cmd) = st.commands.get_mut(&id) else {
                return fault("w:InvalidSelectors", "2150858843", "unknown command");
            };
            cmd.receives += 1;
            if cmd.receives == 1 {
                return fault(
                    "w:TimedOut",
                    "2150858793",
                    "The WS-Management service cannot complete the operation within the time specified in OperationTimeout.",
                );
            }
            if st.endless_reads && is_read(cmd) {
                st.record.endless_receives += 1;
                let chunk = B64.encode(vec![b'x'; 64 << 10]);
                return (
                    200,
                    envelope(
                        "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/ReceiveResponse",
                        &format!(
                            r#"<rsp:ReceiveResponse><rsp:Stream Name="stdout" CommandId="{id}">{chunk}</rsp:Stream><rsp:CommandState CommandId="{id}" State="http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Running"></rsp:CommandState></rsp:ReceiveResponse>"#
                        ),
                    ),
                );
            }
            let cmd = std::mem::take(cmd);
            let (stdout, stderr, code) = execute(st, &cmd);
            let stream = |name: &str, data: &[u8]| {
                format!(
                    r#"<rsp:Stream Name="{name}" CommandId="{id}">{}</rsp:Stream><rsp:Stream Name="{name}" CommandId="{id}" End="true"></rsp:Stream>"#,
                    B64.encode(data)
                )
            };
            (
                200,
                envelope(
                    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/ReceiveResponse",
                    &format!(
                        r#"<rsp:ReceiveResponse>{}{}<rsp:CommandState CommandId="{id}" State="http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done"><rsp:ExitCode>{code}</rsp:ExitCode></rsp:CommandState></rsp:ReceiveResponse>"#,
                        stream("stdout", &stdout),
                        stream("stderr", &stderr)
                    ),
                ),
            )
        }
        "Signal" => {
            if let Some(id) = body.child("Signal").and_then(|s| s.attr("CommandId")) {
                st.commands.remove(id);
            }
            (
                200,
                envelope(
                    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/SignalResponse",
                    "<rsp:SignalResponse/>",
                ),
            )
        }
        "Delete" => {
            st.shells.retain(|s| s != &shell_selector);
            st.record.open_shells = st.shells.len();
            (
                200,
                envelope(
                    "http://schemas.xmlsoap.org/ws/2004/09/transfer/DeleteResponse",
                    "",
                ),
            )
        }
        other => fault(
            "w:ActionNotSupported",
            "1",
            &format!("action {other} is not supported"),
        ),
    }
}

/// Whether `cmd` is deploy's file-reading script (through the bootstrap).
fn is_read(cmd: &Command) -> bool {
    let stdin = String::from_utf8_lossy(&cmd.stdin);
    stdin
        .lines()
        .next()
        .and_then(|l| B64.decode(l).ok())
        .is_some_and(|b| b.starts_with(READ_MARKER.as_bytes()))
}

/// What a command "printed" and its exit code.
fn execute(st: &mut State, cmd: &Command) -> (Vec<u8>, Vec<u8>, i32) {
    let expected = [
        "-NoProfile",
        "-NonInteractive",
        "-ExecutionPolicy",
        "Bypass",
        "-EncodedCommand",
    ];
    if cmd.program != "powershell.exe"
        || cmd.args.len() != 6
        || cmd.args[..5] != expected.map(String::from)
    {
        let problem = format!("unexpected command {} {:?}", cmd.program, cmd.args);
        st.record.problems.push(problem.clone());
        return (Vec::new(), problem.into_bytes(), 1);
    }
    let Some(script) = decode_utf16_b64(&cmd.args[5]) else {
        st.record.problems.push("bad -EncodedCommand".into());
        return (Vec::new(), b"bad -EncodedCommand".to_vec(), 1);
    };
    if script != BOOTSTRAP {
        return handler(st, &script);
    }
    let stdin = String::from_utf8_lossy(&cmd.stdin).into_owned();
    let lines: Vec<&str> = stdin.lines().collect();
    let Some(real) = lines
        .first()
        .and_then(|l| B64.decode(l).ok())
        .and_then(|b| String::from_utf8(b).ok())
    else {
        st.record.problems.push("no script on stdin".into());
        return (Vec::new(), b"no script on stdin".to_vec(), 1);
    };
    if real.starts_with(LOCK_READ_MARKER) {
        lock_read(st, &lines)
    } else if real.starts_with(HANDLERS_MARKER) {
        handlers(st, &lines)
    } else if real.starts_with(STOP_MARKER) {
        stop(st, &lines)
    } else if real.starts_with(READ_MARKER) {
        read_files(st, &lines)
    } else if real.starts_with(WRITE_MARKER) {
        write_files(st, &lines)
    } else if real.starts_with(CREATE_MARKER) {
        create_exclusive(st, &lines)
    } else if real.starts_with(REMOVE_MARKER) {
        remove(st, &lines)
    } else if real.starts_with(deploy::facts::PS_MARKER) {
        facts(st)
    } else {
        handler(st, &real)
    }
}

/// The lock script: `CreateNew` semantics on the folder standing in for `C:\`.
fn create_exclusive(st: &mut State, lines: &[&str]) -> (Vec<u8>, Vec<u8>, i32) {
    let path = lines
        .get(1)
        .and_then(|l| B64.decode(l).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let content = lines.get(2).and_then(|l| B64.decode(l).ok());
    let (Some(path), Some(content)) = (path, content) else {
        return (Vec::new(), b"bad lock request".to_vec(), 1);
    };
    let Some(local) = host_path(&st.root, &path) else {
        return (Vec::new(), b"bad path".to_vec(), 1);
    };
    if let Some(dir) = local.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&local);
    match created {
        Ok(mut f) => {
            use std::io::Write;
            let _ = f.write_all(&content);
            (b"created".to_vec(), Vec::new(), 0)
        }
        Err(_) => {
            // As the script: at most 64 KiB + 1 of what is there.
            let mut held = std::fs::read(&local).unwrap_or_default();
            held.truncate(65537);
            (
                format!("held {}", B64.encode(held)).into_bytes(),
                Vec::new(),
                0,
            )
        }
    }
}

/// The lock-and-read script: the lock script, then (only when it created the lock) the
/// stop file removed and the read script's answer after `created` and a newline.
fn lock_read(st: &mut State, lines: &[&str]) -> (Vec<u8>, Vec<u8>, i32) {
    let (out, err, code) = create_exclusive(st, lines);
    if out != b"created" || code != 0 {
        return (out, err, code);
    }
    if let Some(lock) =
        b64_text(lines.get(1)).and_then(|p| host_path(&st.root, &format!("{p}.stop")))
    {
        let _ = std::fs::remove_file(lock);
    }
    let first = lines.first().copied().unwrap_or_default();
    let (read, err, code) = read_files(st, &[first, lines.get(3).copied().unwrap_or_default()]);
    let mut answer = b"created\n".to_vec();
    answer.extend_from_slice(&read);
    (answer, err, code)
}

fn b64_text(line: Option<&&str>) -> Option<String> {
    line.and_then(|l| B64.decode(l).ok())
        .and_then(|b| String::from_utf8(b).ok())
}

/// The stop script: `<lock>.stop` created when the lock is there.
fn stop(st: &mut State, lines: &[&str]) -> (Vec<u8>, Vec<u8>, i32) {
    match b64_text(lines.get(1)).and_then(|p| host_path(&st.root, &p)) {
        Some(lock) => {
            if lock.is_file() {
                let mut stop = lock.into_os_string();
                stop.push(".stop");
                let _ = std::fs::write(stop, b"");
            }
            (Vec::new(), Vec::new(), 0)
        }
        None => (Vec::new(), b"bad path".to_vec(), 1),
    }
}

/// The handlers script: each step's handler as `handler` judges it (its script decoded
/// from the `-EncodedCommand` form), the record without the entries that succeeded so far
/// written after each success, a failure ending it unless `keep_going`, the stop file
/// checked before each handler after the first, the lock and stop file deleted at the end.
fn handlers(st: &mut State, lines: &[&str]) -> (Vec<u8>, Vec<u8>, i32) {
    let Some(b) = json_line(lines.get(1)) else {
        return (Vec::new(), b"bad handlers request".to_vec(), 1);
    };
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let bytes = |v: &serde_json::Value| B64.decode(text(v)).unwrap_or_default();
    let (Some(lock), Some(record)) = (
        host_path(&st.root, &text(&b["lock"])),
        host_path(&st.root, &text(&b["record"]["path"])),
    ) else {
        return (Vec::new(), b"bad path".to_vec(), 1);
    };
    let mut stop = lock.clone().into_os_string();
    stop.push(".stop");
    let stop = PathBuf::from(stop);
    let pending: Vec<Vec<u8>> = b["record"]["pending"]
        .as_array()
        .map(|a| a.iter().map(bytes).collect())
        .unwrap_or_default();
    let mut left: Vec<usize> = (0..pending.len()).collect();
    let keep_going = b["keep_going"].as_bool().unwrap_or(false);
    let mut out = String::new();
    let mut end = "END";
    for (i, step) in b["steps"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if i > 0 && stop.exists() {
            end = "STOPPED";
            break;
        }
        let Some(script) = decode_utf16_b64(&text(&step["command"])) else {
            st.record.problems.push("bad handler command".into());
            return (Vec::new(), b"bad handler command".to_vec(), 1);
        };
        let (o, e, code) = handler(st, &script);
        out.push_str(&format!(
            "H {i} {code} {} {}\n",
            B64.encode(&o),
            B64.encode(&e)
        ));
        if code == 0 {
            if let Some(k) = step["pending"].as_u64() {
                left.retain(|&x| x as u64 != k);
            }
            let mut rec = bytes(&b["record"]["head"]);
            if !left.is_empty() {
                rec.extend_from_slice(b",\n  \"pending_handlers\": [");
                let entries: Vec<&[u8]> = left.iter().map(|&k| pending[k].as_slice()).collect();
                rec.extend_from_slice(&entries.join(&b","[..]));
                rec.push(b']');
            }
            rec.extend_from_slice(&bytes(&b["record"]["tail"]));
            let _ = std::fs::write(&record, rec);
            out.push_str(&format!("R {i} OK\n"));
        } else if !keep_going {
            break;
        }
    }
    out.push_str(end);
    out.push('\n');
    let _ = std::fs::remove_file(&stop);
    let _ = std::fs::remove_file(&lock);
    (out.into_bytes(), Vec::new(), 0)
}

fn remove(st: &mut State, lines: &[&str]) -> (Vec<u8>, Vec<u8>, i32) {
    let path = lines
        .get(1)
        .and_then(|l| B64.decode(l).ok())
        .and_then(|b| String::from_utf8(b).ok());
    match path.and_then(|p| host_path(&st.root, &p)) {
        Some(local) => {
            let _ = std::fs::remove_file(local);
            (Vec::new(), Vec::new(), 0)
        }
        None => (Vec::new(), b"bad path".to_vec(), 1),
    }
}

fn decode_utf16_b64(text: &str) -> Option<String> {
    let bytes = B64.decode(text).ok()?;
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).ok()
}

/// `C:\x\y` -> `<root>/C/x/y`.
fn host_path(root: &Path, path: &str) -> Option<PathBuf> {
    let (drive, rest) = path.split_once(':')?;
    let mut p = root.join(drive);
    for part in rest.split(['\\', '/']).filter(|s| !s.is_empty()) {
        if part == ".." {
            return None;
        }
        p.push(part);
    }
    Some(p)
}

fn json_line(line: Option<&&str>) -> Option<serde_json::Value> {
    let bytes = B64.decode(line?).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn read_files(st: &mut State, lines: &[&str]) -> (Vec<u8>, Vec<u8>, i32) {
    let Some(ask) = json_line(lines.get(1)) else {
        return (Vec::new(), b"bad read request".to_vec(), 1);
    };
    let (Some(paths), Some(trees), Some(cap)) = (
        ask["paths"].as_array(),
        ask["trees"].as_array(),
        ask["cap"].as_u64(),
    ) else {
        return (Vec::new(), b"bad read request".to_vec(), 1);
    };
    let (Some(max_file), Some(max_host)) = (ask["maxFile"].as_u64(), ask["maxHost"].as_u64())
    else {
        return (Vec::new(), b"bad read request (no limits)".to_vec(), 1);
    };
    let mut files = Vec::new();
    let mut total = 0u64;
    for p in paths {
        let p = p.as_str().unwrap_or_default().to_string();
        let local = host_path(&st.root, &p);
        let link = local
            .as_ref()
            .and_then(|l| std::fs::symlink_metadata(l).ok())
            .filter(|m| m.file_type().is_symlink());
        let size = local
            .as_ref()
            .filter(|l| l.is_file())
            .and_then(|l| std::fs::metadata(l).ok())
            .map(|m| m.len());
        let answer = match (link, size, local) {
            (Some(_), _, Some(local)) if local.is_dir() => {
                serde_json::json!({"path": p, "state": "other", "what": "a directory link"})
            }
            (Some(_), _, Some(local)) => {
                let target = std::fs::read_link(&local).unwrap_or_default();
                serde_json::json!({"path": p, "state": "link", "target": target.to_string_lossy()})
            }
            (None, Some(size), _) if size > max_file => {
                serde_json::json!({"path": p, "state": "toobig", "size": size})
            }
            (None, Some(size), _) if total + size > max_host => {
                total += size;
                serde_json::json!({"path": p, "state": "skipped", "size": size})
            }
            (None, Some(size), Some(local)) => match std::fs::read(&local) {
                Ok(bytes) => {
                    total += size;
                    serde_json::json!({
                        "path": p, "state": "file", "sha256": sha256_hex(&bytes),
                        "content": B64.encode(&bytes),
                    })
                }
                Err(e) => {
                    serde_json::json!({"path": p, "state": "other", "what": format!("unreadable: {e}")})
                }
            },
            (_, _, Some(local)) if local.is_dir() => {
                serde_json::json!({"path": p, "state": "other", "what": "a directory"})
            }
            _ => serde_json::json!({"path": p, "state": "missing"}),
        };
        files.push(answer);
    }
    // As the script: a stack walk by attributes, links reported and not entered, one count
    // for all trees.
    let mut count = 0u64;
    let mut listed = Vec::new();
    for root in trees {
        let root = root.as_str().unwrap_or_default();
        let Some(local) = host_path(&st.root, root) else {
            return (Vec::new(), format!("bad path {root}").into_bytes(), 1);
        };
        let mut entries = Vec::new();
        let mut failed = None;
        let mut stack = vec![(local, String::new())];
        while let Some((path, rel)) = stack.pop() {
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    failed = Some(format!("{}: {e}", path.display()));
                    break;
                }
            };
            count += 1;
            if count > cap {
                break;
            }
            let entry = if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap_or_default();
                if path.is_dir() {
                    serde_json::json!({"rel": rel, "kind": "other", "what": "a directory link"})
                } else {
                    serde_json::json!({"rel": rel, "kind": "link", "target": target.to_string_lossy()})
                }
            } else if meta.is_dir() {
                let children = match std::fs::read_dir(&path) {
                    Ok(children) => children,
                    Err(e) => {
                        failed = Some(format!("{}: {e}", path.display()));
                        break;
                    }
                };
                for child in children.flatten() {
                    let name = child.file_name().to_string_lossy().into_owned();
                    let child_rel = if rel.is_empty() {
                        name
                    } else {
                        format!("{rel}/{name}")
                    };
                    stack.push((child.path(), child_rel));
                }
                serde_json::json!({"rel": rel, "kind": "dir"})
            } else {
                match std::fs::read(&path) {
                    Ok(bytes) => serde_json::json!({
                        "rel": rel, "kind": "file", "size": bytes.len(), "sha256": sha256_hex(&bytes),
                    }),
                    Err(_) => serde_json::json!({"rel": rel, "kind": "unreadable"}),
                }
            };
            entries.push(entry);
        }
        // Windows PowerShell 5.1 writes a list of one as that one object.
        let entries = match entries.len() {
            1 => entries.remove(0),
            _ => serde_json::Value::Array(entries),
        };
        listed.push(match failed {
            Some(why) => serde_json::json!({ "error": why }),
            None => serde_json::json!({ "entries": entries }),
        });
    }
    if count > cap {
        let why = format!("more than {cap} entries");
        listed = trees
            .iter()
            .map(|_| serde_json::json!({"error": why}))
            .collect();
    }
    let answer = serde_json::json!({"files": files, "trees": listed});
    (
        serde_json::to_vec(&answer).unwrap_or_default(),
        Vec::new(),
        0,
    )
}

fn write_files(st: &mut State, lines: &[&str]) -> (Vec<u8>, Vec<u8>, i32) {
    let Some(serde_json::Value::Array(ops)) = json_line(lines.get(1)) else {
        return (Vec::new(), b"bad file list".to_vec(), 1);
    };
    // As the script: deploy's own stale temporaries in the folders written, plain files only.
    let mut swept: Vec<String> = Vec::new();
    let mut dirs: Vec<String> = Vec::new();
    for f in ops.iter().filter(|f| f["op"].as_str() == Some("write")) {
        let path = f["path"].as_str().unwrap_or_default();
        if let Some((dir, _)) = path.rsplit_once('\\')
            && !dirs.iter().any(|d| d == dir)
        {
            dirs.push(dir.to_string());
        }
    }
    for dir in &dirs {
        let Some(local) = host_path(&st.root, dir) else {
            continue;
        };
        for entry in std::fs::read_dir(&local).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = name.starts_with('.') && name.ends_with(".tmp") && name.contains(".deploy-");
            let plain = entry.file_type().is_ok_and(|t| t.is_file());
            if ours && plain && std::fs::remove_file(entry.path()).is_ok() {
                swept.push(format!("{dir}\\{name}"));
            }
        }
    }
    // Every op's local path, and for a write its temporary file.
    let mut staged: Vec<(PathBuf, Option<PathBuf>)> = Vec::new();
    let mut line = 2;
    let cleanup = |staged: &[(PathBuf, Option<PathBuf>)]| {
        for (_, tmp) in staged {
            if let Some(tmp) = tmp {
                let _ = std::fs::remove_file(tmp);
            }
        }
    };
    for (i, f) in ops.iter().enumerate() {
        let path = f["path"].as_str().unwrap_or_default();
        let Some(dest) = host_path(&st.root, path) else {
            cleanup(&staged);
            return (Vec::new(), format!("bad path {path}").into_bytes(), 1);
        };
        match f["op"].as_str() {
            Some("remove") => {
                if dest.is_dir() {
                    cleanup(&staged);
                    return (
                        Vec::new(),
                        format!(
                            "{path} is a directory (deploy removes only files and symbolic links)"
                        )
                        .into_bytes(),
                        1,
                    );
                }
                staged.push((dest, None));
                continue;
            }
            Some("write") => {}
            other => {
                cleanup(&staged);
                st.record.problems.push(format!("op {other:?}"));
                return (Vec::new(), b"unknown op".to_vec(), 1);
            }
        }
        let want = f["sha256"].as_str().unwrap_or_default();
        let Some(bytes) = lines
            .get(line)
            .and_then(|l| l.strip_prefix("b64:"))
            .and_then(|l| B64.decode(l).ok())
        else {
            cleanup(&staged);
            return (Vec::new(), format!("no content for {path}").into_bytes(), 1);
        };
        line += 1;
        let dir = dest.parent().expect("parent").to_path_buf();
        if std::fs::create_dir_all(&dir).is_err() {
            cleanup(&staged);
            return (Vec::new(), b"mkdir failed".to_vec(), 1);
        }
        let tmp = dir.join(format!(".{}.deploy-{}.tmp", i, wsman::uuid()));
        if std::fs::write(&tmp, &bytes).is_err() {
            cleanup(&staged);
            return (Vec::new(), b"write failed".to_vec(), 1);
        }
        if sha256_hex(&std::fs::read(&tmp).unwrap_or_default()) != want {
            let _ = std::fs::remove_file(&tmp);
            cleanup(&staged);
            return (
                Vec::new(),
                format!("{path}: SHA-256 mismatch").into_bytes(),
                1,
            );
        }
        staged.push((dest, Some(tmp)));
    }
    // The write script's validate phase: for each write with a `validate` script, `%s`
    // becomes the temporary file's path in single quotes, and the script runs in a
    // PowerShell of its own; exit status 3 with the path and the output on stderr when it
    // fails. The stand-in runs the script's one native command line (see `run_native`).
    let mut writes = staged.iter().filter_map(|(_, tmp)| tmp.as_ref());
    for f in ops.iter() {
        if f["op"].as_str() != Some("write") {
            continue;
        }
        let Some(tmp) = writes.next() else { break };
        let Some(script) = f["validate"].as_str() else {
            continue;
        };
        let path = f["path"].as_str().unwrap_or_default();
        let win_dir = path.rsplit_once('\\').map_or("", |(dir, _)| dir);
        let win_tmp = format!(
            "{win_dir}\\{}",
            tmp.file_name().unwrap_or_default().to_string_lossy()
        );
        let script = script.replace("%s", &format!("'{}'", win_tmp.replace('\'', "''")));
        st.record.validate_scripts.push(script.clone());
        let lines: Vec<&str> = script.lines().collect();
        let command = lines
            .get(2..lines.len().saturating_sub(1))
            .unwrap_or_default()
            .join("\n");
        let (ok, output) = run_native(&st.root, &command);
        if !ok {
            cleanup(&staged);
            return (Vec::new(), format!("{path}\n{output}").into_bytes(), 3);
        }
    }
    if line != lines.len() {
        st.record.problems.push(format!(
            "{} content lines for {} writes",
            lines.len() - 2,
            line - 2
        ));
    }
    let mut done = 0;
    for (dest, tmp) in &staged {
        let result = match tmp {
            Some(tmp) => std::fs::rename(tmp, dest),
            // `[IO.File]::Delete` of a file link deletes the link.
            None => match std::fs::remove_file(dest) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            },
        };
        if result.is_err() {
            cleanup(&staged);
            return (Vec::new(), b"replace failed".to_vec(), 1);
        }
        done += 1;
    }
    let mut out: String = swept.iter().map(|p| format!("swept {p}\n")).collect();
    out.push_str(&format!("replaced {done}"));
    (out.into_bytes(), Vec::new(), 0)
}

/// The facts script's answer as a Windows 11 host (`WINTERMUTE`, in the `lab.example`
/// domain, 8 cores and 16 logical processors on one socket, 32 GiB) would print it: the JSON
/// ConvertTo-Json writes (a one-address list written as that address, as it does), with
/// the real time of this machine. The values stand in for the CIM queries no PowerShell runs
/// here.
fn facts(st: &mut State) -> (Vec<u8>, Vec<u8>, i32) {
    st.record.facts_calls += 1;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let answer = serde_json::json!({
        "hostname": "WINTERMUTE",
        "fqdn": "WINTERMUTE.lab.example",
        "nodename": "WINTERMUTE.lab.example",
        "domain": "lab.example",
        "distribution": "Microsoft Windows 11 Pro",
        "distribution_version": "10.0.22631.0",
        "distribution_major_version": "10",
        "os_family": "Windows",
        "system": "Win32NT",
        "kernel": "10.0.22631.0",
        "architecture": "64-bit",
        "processor_count": 1,
        "processor_vcpus": 16,
        "processor_cores": 8,
        "processor_threads_per_core": 2,
        "memtotal_mb": 32768,
        "ip_addresses": "10.0.0.7",
        "env": {"COMPUTERNAME": "WINTERMUTE", "USERNAME": "mdt", "USERPROFILE": "C:\\Users\\mdt"},
        "user_id": "mdt",
        "date_time": {
            "date": "2026-12-01", "day": "01", "epoch": now.to_string(), "epoch_local": now.to_string(),
            "epoch_int": now, "hour": "12", "iso8601": "2026-12-01T12:00:00Z",
            "iso8601_basic": "20261201T120000000000", "iso8601_basic_short": "20261201T120000",
            "iso8601_micro": "2026-12-01T12:00:00.000000Z", "minute": "00", "month": "12",
            "second": "00", "time": "12:00:00", "tz": "W. Europe Standard Time",
            "tz_offset": "+01:00", "weekday": "Tuesday", "weekday_number": "2",
            "weeknumber": "48", "year": "2026"
        }
    });
    (answer.to_string().into_bytes(), Vec::new(), 0)
}

const PROGRESS: &str = "#< CLIXML\r\n<Objs Version=\"1.1.0.1\" xmlns=\"http://schemas.microsoft.com/powershell/2004/04\"><Obj S=\"progress\" RefId=\"0\"><TN RefId=\"0\"><T>System.Management.Automation.PSCustomObject</T><T>System.Object</T></TN><MS><I64 N=\"SourceId\">1</I64><PR N=\"Record\"><AV>Preparing modules for first use.</AV><AI>0</AI><Nil /><PI>-1</PI><PC>-1</PC><T>Completed</T><SR>-1</SR><SD> </SD></PR></MS></Obj></Objs>";

fn handler(st: &mut State, script: &str) -> (Vec<u8>, Vec<u8>, i32) {
    st.record.handler_scripts.push(script.to_string());
    let lines: Vec<&str> = script.lines().collect();
    if lines.first() != Some(&"$ErrorActionPreference = 'Stop'")
        || lines.last() != Some(&"exit $LASTEXITCODE")
    {
        st.record
            .problems
            .push(format!("handler script without Stop/exit: {script}"));
    }
    let command = lines
        .get(2..lines.len().saturating_sub(1))
        .unwrap_or_default()
        .join("\n");
    if command.contains("Restart-Stub fail") {
        let err = "#< CLIXML\r\n<Objs Version=\"1.1.0.1\" xmlns=\"http://schemas.microsoft.com/powershell/2004/04\"><S S=\"Error\">vLLM did not start: port 8000 is in use_x000D__x000A_</S></Objs>";
        return (Vec::new(), err.as_bytes().to_vec(), 1);
    }
    let log = st.root.join("handlers.log");
    let mut text = std::fs::read_to_string(&log).unwrap_or_default();
    text.push_str(&command);
    text.push('\n');
    let _ = std::fs::write(&log, text);
    (b"restarted\r\n".to_vec(), PROGRESS.as_bytes().to_vec(), 0)
}

/// Runs one native command line as PowerShell would: words split on blanks, `'...'` (with
/// `''` for a quote) and `"..."` (no `$` expansion here) as single arguments; arguments
/// that are `C:\...` paths are mapped into the folder standing in for `C:\`. Whether it
/// exited 0, and its output (stdout then stderr).
fn run_native(root: &Path, line: &str) -> (bool, String) {
    let mut words = Vec::new();
    let mut chars = line.trim().chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            chars.next();
            match c {
                '\'' => loop {
                    match chars.next() {
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            word.push('\'');
                        }
                        Some('\'') | None => break,
                        Some(other) => word.push(other),
                    }
                },
                '"' => {
                    for c in chars.by_ref() {
                        if c == '"' {
                            break;
                        }
                        word.push(c);
                    }
                }
                other => word.push(other),
            }
        }
        words.push(word);
    }
    let Some((program, args)) = words.split_first() else {
        return (false, "empty validate command".into());
    };
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            if a.len() > 2 && a.as_bytes()[1] == b':' && a.as_bytes()[0].is_ascii_alphabetic() {
                host_path(root, a).map_or_else(|| a.clone(), |p| p.display().to_string())
            } else {
                a.clone()
            }
        })
        .collect();
    match std::process::Command::new(program)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(out) => (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ),
        Err(e) => (
            false,
            format!("The term '{program}' is not recognized ({e})"),
        ),
    }
}
