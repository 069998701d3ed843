//! WinRM transport: Windows hosts over WS-Management (WinRS shells): Basic auth over http or
//! https (rustls); NTLM over https, or over http with every message sealed (the default
//! Windows listener's `AllowUnencrypted=false`), on one connection held for the run.
//!
//! In: a [`WinRmTarget`] (address, port, scheme, user, password, auth kind, certificate
//! check). Out: a [`WinRmTransport`] that implements [`Transport`] over one WinRS shell kept
//! for the whole run (deleted on `close`):
//!
//! - `read_files`: one PowerShell command for all paths; for each, whether it is a file, a
//!   directory or missing, and for a file its SHA-256 and bytes (base64, in a JSON answer).
//!   The controller checks each hash against the bytes it got.
//! - `write_files`: one PowerShell command for the whole batch; every file's bytes travel
//!   on stdin (base64, in Send chunks sized to the server's `MaxEnvelopeSizekb`, never on the
//!   command line, which Windows caps near 8 KB), go to a temporary file in the
//!   destination's directory, whose SHA-256 is checked against the controller's; only when
//!   every temporary file is in place are they moved over their destinations
//!   (`[System.IO.File]::Replace`, or `Move` for a new file). Bytes are written as rendered.
//! - `run`: `powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass
//!   -EncodedCommand` with `$ErrorActionPreference='Stop'` and an explicit
//!   `exit $LASTEXITCODE`; stderr that arrives as CLIXML is decoded to plain text.
//!
//! The read and write scripts are too long for a command line, so a short bootstrap goes in
//! `-EncodedCommand` and reads the real script from the first line of stdin (Ansible's
//! winrm plugin does the same). Windows has no Unix mode or owner: files are reported as
//! mode 0644 owned by uid 0, and `mode:`/`owner:`/`group:` are not applied (see
//! `desired.rs`).

pub mod client;
pub mod clixml;
pub mod conn;
pub mod ntlm;
pub mod wsman;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::{CommandOutput, FileState, RemoteFile, Transport, TransportError, WriteFile};
use client::{Client, ClientConfig, ClientError};
use wsman::ShellOptions;

/// `ansible_winrm_transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    Basic,
    Ntlm,
}

/// How to reach a Windows host; built from the Ansible connection variables.
#[derive(Clone, PartialEq, Eq)]
pub struct WinRmTarget {
    /// Inventory name, used in messages.
    pub name: String,
    /// `ansible_host`, else the inventory name.
    pub address: String,
    /// `ansible_port`; default 5986 for https, 5985 for http.
    pub port: u16,
    /// `ansible_winrm_scheme`: `http` or `https`.
    pub scheme: String,
    /// `ansible_user`.
    pub user: String,
    /// `ansible_password` (normally from a secret file). Never shown by `Debug`.
    pub password: Option<String>,
    /// `ansible_winrm_transport`.
    pub auth: AuthKind,
    /// `ansible_winrm_server_cert_validation: ignore`.
    pub ignore_cert: bool,
    /// `ansible_winrm_path`, default `/wsman`.
    pub path: String,
    /// `ansible_winrm_ca_trust_path`: a PEM file of the certificates to trust for https.
    pub ca_trust_path: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for WinRmTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WinRmTarget")
            .field("name", &self.name)
            .field("address", &self.address)
            .field("port", &self.port)
            .field("scheme", &self.scheme)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("auth", &self.auth)
            .field("ignore_cert", &self.ignore_cert)
            .field("ca_trust_path", &self.ca_trust_path)
            .finish()
    }
}

impl WinRmTarget {
    pub fn url(&self) -> String {
        let host = if self.address.contains(':') {
            format!("[{}]", self.address)
        } else {
            self.address.clone()
        };
        format!("{}://{host}:{}{}", self.scheme, self.port, self.path)
    }

    /// `user@address:port`.
    pub fn label(&self) -> String {
        format!("{}@{}:{}", self.user, self.address, self.port)
    }
}

/// The WinRS server-side wait of one Receive; a quiet command is asked again after it.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest one command (a handler) may run.
const MAX_COMMAND: Duration = Duration::from_secs(60 * 60);
/// The longest a read or write script may run.
const MAX_SCRIPT: Duration = Duration::from_secs(10 * 60);

/// `cmd.exe` refuses command lines longer than this (8191 with the terminator); WinRS
/// passes ours through it.
const MAX_COMMAND_LINE: usize = 8000;

const POWERSHELL: &str = "powershell.exe";
const PS_ARGS: [&str; 6] = [
    "-NoProfile",
    "-NonInteractive",
    "-ExecutionPolicy",
    "Bypass",
    "-EncodedCommand",
    "",
];

/// Reads the real script (base64 UTF-8) from stdin's first line and runs it with all of
/// stdin's lines as its argument.
pub const BOOTSTRAP: &str = "$ErrorActionPreference='Stop';$l=@($input);& ([ScriptBlock]::Create([Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($l[0])))) $l";

/// Marker first lines of the scripts (a WS-Man stand-in in the tests recognises them).
pub const READ_MARKER: &str = "# deploy:read-files v1";
pub const WRITE_MARKER: &str = "# deploy:write-files v1";
pub const CREATE_MARKER: &str = "# deploy:create-exclusive v1";
pub const REMOVE_MARKER: &str = "# deploy:remove v1";

/// stdin line 1: base64 of the path, line 2: base64 of the content. Creates the file only if
/// nothing is there (`CreateNew` is atomic on NTFS); stdout `created`, or `held ` and the
/// existing file's bytes in base64.
pub const CREATE_SCRIPT: &str = r#"# deploy:create-exclusive v1
param($lines)
$ErrorActionPreference = 'Stop'
$p = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($lines[1]))
$bytes = [Convert]::FromBase64String($lines[2])
$dir = [IO.Path]::GetDirectoryName($p)
if ($dir) { [void][IO.Directory]::CreateDirectory($dir) }
try {
  $fs = [IO.File]::Open($p, [IO.FileMode]::CreateNew, [IO.FileAccess]::Write, [IO.FileShare]::None)
  try { $fs.Write($bytes, 0, $bytes.Length); $fs.Flush($true) } finally { $fs.Dispose() }
  [Console]::Out.Write('created')
} catch [IO.IOException] {
  if (-not [IO.File]::Exists($p)) { throw }
  [Console]::Out.Write('held ' + [Convert]::ToBase64String([IO.File]::ReadAllBytes($p)))
}
exit 0
"#;

/// stdin line 1: base64 of the path. Deletes it; a missing file is fine.
pub const REMOVE_SCRIPT: &str = r#"# deploy:remove v1
param($lines)
$ErrorActionPreference = 'Stop'
$p = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($lines[1]))
if ([IO.File]::Exists($p)) { [IO.File]::Delete($p) }
exit 0
"#;

/// stdin line 1: base64 of a JSON array of paths. stdout: a JSON array, one object per
/// path: `state` `file` (with `sha256`, `content` base64), `missing`, or `other` (`what`).
/// (No `@(...)` around ConvertFrom-Json: Windows PowerShell 5.1 emits a JSON array as one
/// object, and `@()` would nest it; a plain assignment gives the array on 5.1 and 7.)
pub const READ_SCRIPT: &str = r#"# deploy:read-files v1
param($lines)
$ErrorActionPreference = 'Stop'
$paths = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($lines[1])) | ConvertFrom-Json
$sha = [Security.Cryptography.SHA256]::Create()
$out = foreach ($p in $paths) {
  $r = [ordered]@{ path = $p }
  try {
    if ([IO.File]::Exists($p)) {
      $bytes = [IO.File]::ReadAllBytes($p)
      $r.state = 'file'
      $r.sha256 = -join ($sha.ComputeHash($bytes) | ForEach-Object { $_.ToString('x2') })
      $r.content = [Convert]::ToBase64String($bytes)
    } elseif ([IO.Directory]::Exists($p)) {
      $r.state = 'other'; $r.what = 'a directory'
    } else {
      $r.state = 'missing'
    }
  } catch {
    $r.state = 'other'; $r.what = "unreadable: $($_.Exception.Message)"
  }
  [pscustomobject]$r
}
[Console]::Out.Write((ConvertTo-Json -InputObject @($out) -Compress -Depth 3))
exit 0
"#;

/// stdin line 1: base64 of a JSON array of `{path, sha256}`; line 2+i: `b64:` and file i's
/// bytes in base64. Writes every temporary file and checks its hash, then replaces.
pub const WRITE_SCRIPT: &str = r#"# deploy:write-files v1
param($lines)
$ErrorActionPreference = 'Stop'
$files = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($lines[1])) | ConvertFrom-Json
$sha = [Security.Cryptography.SHA256]::Create()
$temps = New-Object System.Collections.ArrayList
try {
  $i = 2
  foreach ($f in $files) {
    $dir = [IO.Path]::GetDirectoryName($f.path)
    [void][IO.Directory]::CreateDirectory($dir)
    $tmp = [IO.Path]::Combine($dir, '.' + [IO.Path]::GetFileName($f.path) + '.deploy-' + [Guid]::NewGuid().ToString('N') + '.tmp')
    $bytes = [Convert]::FromBase64String(([string]$lines[$i]).Substring(4))
    $i++
    $fs = [IO.File]::Open($tmp, [IO.FileMode]::CreateNew, [IO.FileAccess]::Write, [IO.FileShare]::None)
    try { $fs.Write($bytes, 0, $bytes.Length); $fs.Flush($true) } finally { $fs.Dispose() }
    [void]$temps.Add(@($tmp, $f.path))
    $got = -join ($sha.ComputeHash([IO.File]::ReadAllBytes($tmp)) | ForEach-Object { $_.ToString('x2') })
    if ($got -ne $f.sha256) { throw "$($f.path): the temporary file's SHA-256 is $got, expected $($f.sha256)" }
  }
} catch {
  foreach ($t in $temps) { Remove-Item -LiteralPath $t[0] -Force -ErrorAction SilentlyContinue }
  [Console]::Error.WriteLine("writing temporary files: $($_.Exception.Message)")
  exit 1
}
$done = 0
try {
  foreach ($t in $temps) {
    if ([IO.File]::Exists($t[1])) { [IO.File]::Replace($t[0], $t[1], $null) } else { [IO.File]::Move($t[0], $t[1]) }
    $done++
  }
} catch {
  [Console]::Error.WriteLine("replacing $($temps[$done][1]) ($done of $($temps.Count) replaced): $($_.Exception.Message)")
  exit 1
}
[Console]::Out.Write("replaced $done")
exit 0
"#;

/// The script a handler command runs as: stop at the first error, and exit with the last
/// native command's status so a failing script fails the host.
pub fn handler_script(command: &str) -> String {
    format!(
        "$ErrorActionPreference = 'Stop'\n$ProgressPreference = 'SilentlyContinue'\n{command}\nexit $LASTEXITCODE\n"
    )
}

/// PowerShell's `-EncodedCommand` form: base64 of the UTF-16LE text.
pub fn encode_command(script: &str) -> String {
    let utf16: Vec<u8> = script.encode_utf16().flat_map(u16::to_le_bytes).collect();
    base64::engine::general_purpose::STANDARD.encode(utf16)
}

/// One connection (one WinRS shell) to one Windows host.
pub struct WinRmTransport {
    client: Arc<Client>,
    shell: Mutex<Option<String>>,
    label: String,
}

impl std::fmt::Debug for WinRmTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WinRmTransport")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

fn transport_error(e: ClientError) -> TransportError {
    match e {
        ClientError::Connect(m) => TransportError::Connect(m),
        ClientError::Auth(m) => TransportError::Auth(m),
        other => TransportError::Io(other.to_string()),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ClientError> + Send + 'static,
) -> Result<T, TransportError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| TransportError::Io(format!("WinRM task: {e}")))?
        .map_err(transport_error)
}

impl WinRmTransport {
    /// Reads the server's envelope limit, then opens the shell the run will use.
    pub async fn connect(
        target: &WinRmTarget,
        connect_timeout: Duration,
    ) -> Result<WinRmTransport, TransportError> {
        let label = target.label();
        let Some(password) = target.password.clone() else {
            return Err(TransportError::Auth(format!(
                "{label}: no ansible_password (put it in secrets/{}.yml.age)",
                target.name
            )));
        };
        let config = ClientConfig {
            url: target.url(),
            user: target.user.clone(),
            password,
            label: label.clone(),
            operation_timeout: OPERATION_TIMEOUT,
            connect_timeout,
            tls: conn::TlsSettings {
                ignore_cert: target.ignore_cert,
                ca_file: target.ca_trust_path.clone(),
            },
            auth: target.auth,
        };
        let client = Arc::new(Client::new(config).map_err(transport_error)?);
        let c = client.clone();
        let shell = blocking(move || {
            c.read_config()?;
            c.create_shell(&ShellOptions {
                codepage: Some(65001),
                no_profile: true,
                ..ShellOptions::default()
            })
        })
        .await?;
        Ok(WinRmTransport {
            client,
            shell: Mutex::new(Some(shell)),
            label,
        })
    }

    fn shell_id(&self) -> Result<String, TransportError> {
        self.shell
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .ok_or_else(|| {
                TransportError::Io(format!("the connection to {} is closed", self.label))
            })
    }

    /// Runs powershell with `-EncodedCommand <script>` and `stdin`.
    async fn powershell(
        &self,
        script: String,
        stdin: Vec<u8>,
        max_wait: Duration,
    ) -> Result<CommandOutput, TransportError> {
        let shell = self.shell_id()?;
        let client = self.client.clone();
        let received = blocking(move || {
            let encoded = encode_command(&script);
            let mut args = PS_ARGS;
            args[5] = &encoded;
            client.run(&shell, POWERSHELL, &args, &stdin, max_wait)
        })
        .await?;
        Ok(CommandOutput {
            status: received.exit_code,
            stdout: received.stdout,
            stderr: clixml::decode_stderr(&received.stderr),
        })
    }

    /// Runs a long script through [`BOOTSTRAP`]: the script is stdin's first line, `lines`
    /// follow it.
    async fn script(
        &self,
        script: &str,
        lines: Vec<String>,
    ) -> Result<CommandOutput, TransportError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut stdin = b64.encode(script.as_bytes());
        for line in lines {
            stdin.push('\n');
            stdin.push_str(&line);
        }
        stdin.push('\n');
        self.powershell(BOOTSTRAP.to_string(), stdin.into_bytes(), MAX_SCRIPT)
            .await
    }

    fn failed(&self, what: &str, out: &CommandOutput) -> TransportError {
        let status = out
            .status
            .map_or("no exit status".to_string(), |s| format!("status {s}"));
        let detail = String::from_utf8_lossy(&out.stderr).trim().to_string();
        TransportError::Io(format!(
            "{}: {what} failed ({status}): {detail}",
            self.label
        ))
    }
}

#[derive(serde::Deserialize)]
struct ReadAnswer {
    path: String,
    state: String,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    what: Option<String>,
}

/// How deploy shows Windows files' metadata: no Unix mode or owner exists there.
pub const WINDOWS_MODE: u32 = 0o644;

#[async_trait]
impl Transport for WinRmTransport {
    async fn read_files(&self, paths: &[String]) -> Result<Vec<RemoteFile>, TransportError> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let list = serde_json::to_string(paths)
            .map_err(|e| TransportError::Io(format!("encoding paths: {e}")))?;
        let out = self
            .script(READ_SCRIPT, vec![b64.encode(list.as_bytes())])
            .await?;
        if !out.success() {
            return Err(self.failed("reading files", &out));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let answers: Vec<ReadAnswer> = serde_json::from_str(text.trim()).map_err(|e| {
            TransportError::Io(format!(
                "{}: the file-reading script answered something unexpected: {e}",
                self.label
            ))
        })?;
        if answers.len() != paths.len() {
            return Err(TransportError::Io(format!(
                "{}: asked for {} files, the host answered for {}",
                self.label,
                paths.len(),
                answers.len()
            )));
        }
        let mut files = Vec::with_capacity(paths.len());
        for (path, a) in paths.iter().zip(answers) {
            if &a.path != path {
                return Err(TransportError::Io(format!(
                    "{}: asked for {path}, the host answered for {}",
                    self.label, a.path
                )));
            }
            let file = match a.state.as_str() {
                "missing" => RemoteFile::Missing,
                "file" => {
                    let content = b64
                        .decode(a.content.unwrap_or_default().as_bytes())
                        .map_err(|e| {
                            TransportError::Io(format!("{}: {path}: bad base64: {e}", self.label))
                        })?;
                    let sha = hex(&Sha256::digest(&content));
                    if a.sha256.as_deref().map(str::to_ascii_lowercase) != Some(sha.clone()) {
                        return Err(TransportError::Io(format!(
                            "{}: {path}: the content read does not match the SHA-256 the host computed",
                            self.label
                        )));
                    }
                    RemoteFile::Present(FileState {
                        content,
                        mode: WINDOWS_MODE,
                        uid: 0,
                        gid: 0,
                        owner: None,
                        group: None,
                    })
                }
                _ => RemoteFile::Unusable(a.what.unwrap_or_else(|| "not a regular file".into())),
            };
            files.push(file);
        }
        Ok(files)
    }

    async fn write_files(&self, files: &[WriteFile]) -> Result<(), TransportError> {
        if files.is_empty() {
            return Ok(());
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let header: Vec<serde_json::Value> = files
            .iter()
            .map(|f| {
                serde_json::json!({
                    "path": f.path,
                    "sha256": hex(&Sha256::digest(&f.content)),
                })
            })
            .collect();
        let header = serde_json::to_string(&header)
            .map_err(|e| TransportError::Io(format!("encoding the file list: {e}")))?;
        let mut lines = vec![b64.encode(header.as_bytes())];
        for f in files {
            lines.push(format!("b64:{}", b64.encode(&f.content)));
        }
        let out = self.script(WRITE_SCRIPT, lines).await?;
        if !out.success() {
            return Err(self.failed("writing files", &out));
        }
        Ok(())
    }

    async fn run(&self, command: &str) -> Result<CommandOutput, TransportError> {
        let script = handler_script(command);
        let line_len = encode_command(&script).len() + 80;
        if line_len <= MAX_COMMAND_LINE {
            self.powershell(script, Vec::new(), MAX_COMMAND).await
        } else {
            // Too long for a command line: the bootstrap reads it from stdin instead.
            let b64 = base64::engine::general_purpose::STANDARD;
            let stdin = format!("{}\n", b64.encode(script.as_bytes()));
            self.powershell(BOOTSTRAP.to_string(), stdin.into_bytes(), MAX_COMMAND)
                .await
        }
    }

    async fn create_exclusive(
        &self,
        path: &str,
        content: &[u8],
    ) -> Result<Option<Vec<u8>>, TransportError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let out = self
            .script(
                CREATE_SCRIPT,
                vec![b64.encode(path.as_bytes()), b64.encode(content)],
            )
            .await?;
        if !out.success() {
            return Err(self.failed("creating the lock", &out));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let text = text.trim();
        if text == "created" {
            return Ok(None);
        }
        match text.strip_prefix("held ") {
            Some(held) => b64.decode(held.trim()).map(Some).map_err(|e| {
                TransportError::Io(format!("{}: unreadable lock {path}: {e}", self.label))
            }),
            None => Err(TransportError::Io(format!(
                "{}: the lock script answered something unexpected",
                self.label
            ))),
        }
    }

    async fn remove(&self, path: &str) -> Result<(), TransportError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let out = self
            .script(REMOVE_SCRIPT, vec![b64.encode(path.as_bytes())])
            .await?;
        if out.success() {
            Ok(())
        } else {
            Err(self.failed("removing a file", &out))
        }
    }

    async fn close(&self) {
        let shell = self.shell.lock().ok().and_then(|mut s| s.take());
        if let Some(shell) = shell {
            let client = self.client.clone();
            // Best effort: an undeleted shell ends at the server's idle timeout anyway.
            let _ = blocking(move || client.delete_shell(&shell)).await;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_command_is_utf16le_base64() {
        // `powershell -EncodedCommand` of "dir" (documented example form).
        assert_eq!(encode_command("dir"), "ZABpAHIA");
    }

    #[test]
    fn password_is_not_in_debug() {
        let t = WinRmTarget {
            name: "w".into(),
            address: "w".into(),
            port: 5985,
            scheme: "http".into(),
            user: "u".into(),
            password: Some("hunter2".into()),
            auth: AuthKind::Basic,
            ignore_cert: false,
            path: "/wsman".into(),
            ca_trust_path: None,
        };
        let shown = format!("{t:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(t.url(), "http://w:5985/wsman");
    }

    #[test]
    fn handler_script_stops_on_errors_and_exits_with_the_status() {
        let s = handler_script("& C:\\x.ps1");
        assert!(s.starts_with("$ErrorActionPreference = 'Stop'"));
        assert!(s.trim_end().ends_with("exit $LASTEXITCODE"));
    }
}
