//! WinRM transport: Windows hosts over WS-Management (WinRS shells): Basic auth over http or
//! https (rustls); NTLM over https, or over http with every message sealed (the default
//! Windows listener's `AllowUnencrypted=false`), on one connection held for the run.
//!
//! In: a [`WinRmTarget`] (address, port, scheme, user, password, auth kind, certificate
//! check). Out: a [`WinRmTransport`] that implements [`Transport`] over one WinRS shell kept
//! for the whole run (deleted on `close`):
//!
//! - `read`: one PowerShell command for all paths and trees; for each path, whether it is a
//!   file, a directory or missing, and for a file its SHA-256 and bytes (base64, in a JSON
//!   answer); the controller checks each hash against the bytes it got. Each tree is walked
//!   without entering reparse points (a file link is reported as a link, a directory link
//!   as something else), with each regular file's size and SHA-256.
//! - `write_batch`: one PowerShell command for the whole batch; every file's bytes travel
//!   on stdin (base64, in Send chunks sized to the server's `MaxEnvelopeSizekb`, never on the
//!   command line, which Windows caps near 8 KB), go to a temporary file in the
//!   destination's directory, whose SHA-256 is checked against the controller's; only when
//!   every temporary file is in place (and no path to remove is a directory) are the ops
//!   carried out in order: a move over the destination (`[System.IO.File]::Replace`, or
//!   `Move` for a new file) or a `Delete`. Bytes are written as rendered.
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

use super::{
    CommandOutput, EntryKind, FileOp, FileState, HandlerBatch, HandlersDone, LockRead,
    MAX_HELD_LOCK, MAX_TREE_ENTRIES, ReadLimits, ReadResult, RemoteFile, StepDone, Swept,
    Transport, TransportError, TreeEntry,
};
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

/// The most stdout deploy takes from one command (a handler, a write script's report); a
/// read takes what its limits allow instead.
const MAX_OUTPUT: usize = 64 << 20;
/// What a tree listing may take (20001 entries in JSON, with their hashes).
const MAX_LISTING_BYTES: usize = 128 << 20;

/// `cmd.exe` refuses command lines longer than this (8191 with the terminator); WinRS
/// passes ours through it.
const MAX_COMMAND_LINE: usize = 8000;

/// The write script's exit status when a `validate` command failed (nothing replaced).
const VALIDATE_FAILED: i32 = 3;

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
pub const READ_MARKER: &str = "# deploy:read-files v3";
pub const WRITE_MARKER: &str = "# deploy:write-files v3";
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
  # At most 64 KiB + 1 of whatever is there (a lock deploy writes is a few hundred bytes).
  $buf = New-Object byte[] 65537
  $held = [IO.File]::OpenRead($p)
  try { $n = $held.Read($buf, 0, $buf.Length) } finally { $held.Dispose() }
  [Console]::Out.Write('held ' + [Convert]::ToBase64String($buf, 0, $n))
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

/// stdin line 1: base64 of a JSON object `{paths, trees, cap, maxFile, maxHost}`. stdout: a
/// JSON object: `files`, one object per path (`state` `file` with `sha256`, `content` base64;
/// `missing`; `link` with `target`, a file link, never read through; `toobig` with `size`, a
/// file over `maxFile`, not read; `skipped` with `size`, not read because the files read
/// would add up to more than `maxHost`; or `other` with `what`), and `trees`, one object per tree: `entries` (each `rel`, `kind`
/// `file` with `size` and `sha256`, `unreadable`, `link` with `target`, `dir`, or `other`
/// with `what`) or `error` (a folder or entry it could not look at: a partial listing would
/// let `delete: true` miss files). A tree is walked by attributes, never into a reparse
/// point.
/// (No `@(...)` around ConvertFrom-Json: Windows PowerShell 5.1 emits a JSON array as one
/// object, and `@()` would nest it; a plain assignment gives the array on 5.1 and 7.)
pub const READ_SCRIPT: &str = r#"# deploy:read-files v3
param($lines)
$ErrorActionPreference = 'Stop'
$ask = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($lines[1])) | ConvertFrom-Json
$sha = [Security.Cryptography.SHA256]::Create()
$files = New-Object System.Collections.ArrayList
$total = 0
foreach ($p in $ask.paths) {
  $r = [ordered]@{ path = $p }
  try {
    $attr = $null
    try { $attr = [IO.File]::GetAttributes($p) } catch [IO.FileNotFoundException], [IO.DirectoryNotFoundException] { }
    if ($null -eq $attr) {
      $r.state = 'missing'
    } elseif ($attr -band [IO.FileAttributes]::Directory) {
      if ($attr -band [IO.FileAttributes]::ReparsePoint) { $r.state = 'other'; $r.what = 'a directory link' }
      else { $r.state = 'other'; $r.what = 'a directory' }
    } elseif (($attr -band [IO.FileAttributes]::ReparsePoint) -and ((Get-Item -LiteralPath $p -Force).LinkType -eq 'SymbolicLink')) {
      # Only a symbolic link: other reparse points (deduplicated or cloud files) are files.
      $r.state = 'link'; $r.target = [string](Get-Item -LiteralPath $p -Force).Target
    } else {
      $size = (New-Object IO.FileInfo $p).Length
      if ($size -gt $ask.maxFile) {
        $r.state = 'toobig'; $r.size = $size
      } elseif (($total + $size) -gt $ask.maxHost) {
        $total += $size
        $r.state = 'skipped'; $r.size = $size
      } else {
        $bytes = [IO.File]::ReadAllBytes($p)
        $total += $bytes.Length
        $r.state = 'file'
        $r.sha256 = -join ($sha.ComputeHash($bytes) | ForEach-Object { $_.ToString('x2') })
        $r.content = [Convert]::ToBase64String($bytes)
      }
    }
  } catch {
    $r.state = 'other'; $r.what = "unreadable: $($_.Exception.Message)"
  }
  [void]$files.Add([pscustomobject]$r)
}
$trees = New-Object System.Collections.ArrayList
$count = 0
foreach ($root in $ask.trees) {
  $entries = New-Object System.Collections.ArrayList
  $failed = $null
  $stack = New-Object System.Collections.Stack
  $stack.Push(@($root, ''))
  while ($stack.Count -gt 0) {
    $item = $stack.Pop()
    $p = $item[0]
    $e = [ordered]@{ rel = $item[1] }
    try {
      $attr = [IO.File]::GetAttributes($p)
    } catch [IO.FileNotFoundException], [IO.DirectoryNotFoundException] {
      continue
    } catch {
      $failed = "${p}: $($_.Exception.Message)"
      break
    }
    $count++
    if ($count -gt $ask.cap) { break }
    if ($attr -band [IO.FileAttributes]::ReparsePoint) {
      if ($attr -band [IO.FileAttributes]::Directory) {
        $e.kind = 'other'; $e.what = 'a directory link'
      } else {
        $e.kind = 'link'; $e.target = [string](Get-Item -LiteralPath $p -Force).Target
      }
    } elseif ($attr -band [IO.FileAttributes]::Directory) {
      $e.kind = 'dir'
      try {
        $children = [IO.Directory]::GetFileSystemEntries($p)
      } catch {
        $failed = "${p}: $($_.Exception.Message)"
        break
      }
      foreach ($child in $children) {
        $name = [IO.Path]::GetFileName($child)
        if ($item[1]) { $rel = $item[1] + '/' + $name } else { $rel = $name }
        $stack.Push(@($child, $rel))
      }
    } else {
      try {
        $fs = [IO.File]::OpenRead($p)
        try {
          $e.sha256 = -join ($sha.ComputeHash($fs) | ForEach-Object { $_.ToString('x2') })
          $e.size = $fs.Length
        } finally { $fs.Dispose() }
        $e.kind = 'file'
      } catch {
        $e.kind = 'unreadable'
      }
    }
    [void]$entries.Add([pscustomobject]$e)
  }
  if ($failed) {
    [void]$trees.Add([pscustomobject]@{ error = $failed })
  } else {
    [void]$trees.Add([pscustomobject]@{ entries = $entries.ToArray() })
  }
}
if ($count -gt $ask.cap) {
  $why = "more than $($ask.cap) entries under $(@($ask.trees) -join ', ')"
  $trees = @($ask.trees | ForEach-Object { [pscustomobject]@{ error = $why } })
}
$answer = [pscustomobject]@{ files = $files.ToArray(); trees = @($trees) }
[Console]::Out.Write((ConvertTo-Json -InputObject $answer -Compress -Depth 6))
exit 0
"#;

/// stdin line 1: base64 of a JSON array of ops, `{op: write, path, sha256, validate}` or
/// `{op: remove, path}`; then one line per write, in order: `b64:` and its bytes in base64.
/// Before staging, deploy's own stale temporary files in the folders it writes are deleted.
/// Writes every temporary file and checks its hash, refuses a directory where a path is to
/// be removed, runs each `validate` script (a [`handler_script`] whose `%s` becomes the
/// temporary file's path, single-quoted) in a PowerShell of its own and stops with exit
/// status 3 and its output on stderr when one fails, then carries out the ops in order:
/// replace (or move) and delete. stdout is one `swept <path>` line for each stale file
/// removed, then `replaced <n>`.
pub const WRITE_SCRIPT: &str = r#"# deploy:write-files v3
param($lines)
$ErrorActionPreference = 'Stop'
$ops = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($lines[1])) | ConvertFrom-Json
$sha = [Security.Cryptography.SHA256]::Create()
$temps = New-Object System.Collections.ArrayList
# What a run that died mid-write left in these folders: only deploy's own temporary names,
# only plain files (never a link or a folder). The host lock is held: no other run writes.
$swept = New-Object System.Collections.ArrayList
$dirs = @($ops | Where-Object { $_.op -ne 'remove' } | ForEach-Object { [IO.Path]::GetDirectoryName($_.path) } | Select-Object -Unique)
foreach ($dir in $dirs) {
  if (-not [IO.Directory]::Exists($dir)) { continue }
  foreach ($stale in [IO.Directory]::GetFiles($dir, '.*.deploy-*.tmp')) {
    if (-not ([IO.Path]::GetFileName($stale) -like '.*.deploy-*.tmp')) { continue }
    $a = [IO.File]::GetAttributes($stale)
    if ($a -band ([IO.FileAttributes]::ReparsePoint -bor [IO.FileAttributes]::Directory)) { continue }
    try { [IO.File]::Delete($stale); [void]$swept.Add($stale) } catch { }
  }
}
try {
  $i = 2
  foreach ($f in $ops) {
    if ($f.op -eq 'remove') {
      if ([IO.Directory]::Exists($f.path)) { throw "$($f.path) is a directory (deploy removes only files and symbolic links)" }
      continue
    }
    $dir = [IO.Path]::GetDirectoryName($f.path)
    [void][IO.Directory]::CreateDirectory($dir)
    $tmp = [IO.Path]::Combine($dir, '.' + [IO.Path]::GetFileName($f.path) + '.deploy-' + [Guid]::NewGuid().ToString('N') + '.tmp')
    $bytes = [Convert]::FromBase64String(([string]$lines[$i]).Substring(4))
    $i++
    $fs = [IO.File]::Open($tmp, [IO.FileMode]::CreateNew, [IO.FileAccess]::Write, [IO.FileShare]::None)
    try { $fs.Write($bytes, 0, $bytes.Length); $fs.Flush($true) } finally { $fs.Dispose() }
    [void]$temps.Add($tmp)
    $got = -join ($sha.ComputeHash([IO.File]::ReadAllBytes($tmp)) | ForEach-Object { $_.ToString('x2') })
    if ($got -ne $f.sha256) { throw "$($f.path): the temporary file's SHA-256 is $got, expected $($f.sha256)" }
  }
} catch {
  foreach ($t in $temps) { Remove-Item -LiteralPath $t -Force -ErrorAction SilentlyContinue }
  [Console]::Error.WriteLine("writing temporary files: $($_.Exception.Message)")
  exit 1
}
# Ansible's validate: each new copy is checked where it lies, before anything is replaced,
# by a PowerShell of its own (so the command's own `exit` cannot end this script).
$next = 0
foreach ($f in $ops) {
  if ($f.op -eq 'remove') { continue }
  $tmp = $temps[$next]
  $next++
  if (-not $f.validate) { continue }
  $script = ([string]$f.validate).Replace('%s', "'" + $tmp.Replace("'", "''") + "'")
  $encoded = [Convert]::ToBase64String([Text.Encoding]::Unicode.GetBytes($script))
  $ErrorActionPreference = 'Continue'
  $out = & powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -OutputFormat Text -EncodedCommand $encoded 2>&1 | Out-String
  $code = $LASTEXITCODE
  $ErrorActionPreference = 'Stop'
  if ($code -ne 0) {
    foreach ($t in $temps) { Remove-Item -LiteralPath $t -Force -ErrorAction SilentlyContinue }
    [Console]::Error.WriteLine($f.path)
    [Console]::Error.Write($out.Trim())
    exit 3
  }
}
$done = 0
$next = 0
try {
  foreach ($f in $ops) {
    if ($f.op -eq 'remove') {
      $attr = $null
      try { $attr = [IO.File]::GetAttributes($f.path) } catch [IO.FileNotFoundException], [IO.DirectoryNotFoundException] { }
      # A file link is deleted itself, never its target.
      if ($null -ne $attr) { [IO.File]::Delete($f.path) }
    } else {
      $tmp = $temps[$next]
      $next++
      $attr = $null
      try { $attr = [IO.File]::GetAttributes($f.path) } catch [IO.FileNotFoundException], [IO.DirectoryNotFoundException] { }
      if ($null -eq $attr) {
        [IO.File]::Move($tmp, $f.path)
      } elseif (($attr -band [IO.FileAttributes]::ReparsePoint) -and ((Get-Item -LiteralPath $f.path -Force).LinkType -eq 'SymbolicLink')) {
        # A file link is replaced by the file (its target left alone), as on Linux.
        [IO.File]::Delete($f.path); [IO.File]::Move($tmp, $f.path)
      } else {
        [IO.File]::Replace($tmp, $f.path, $null)
      }
    }
    $done++
  }
} catch {
  foreach ($t in $temps) { Remove-Item -LiteralPath $t -Force -ErrorAction SilentlyContinue }
  [Console]::Error.WriteLine("replacing $(@($ops)[$done].path) ($done of $(@($ops).Count) done): $($_.Exception.Message)")
  exit 1
}
foreach ($t in $swept) { [Console]::Out.Write("swept $t`n") }
[Console]::Out.Write("replaced $done")
exit 0
"#;

pub const LOCK_READ_MARKER: &str = "# deploy:lock-read v1";
pub const HANDLERS_MARKER: &str = "# deploy:handlers v1";
pub const STOP_MARKER: &str = "# deploy:stop v1";

/// stdin line 1: base64 of the lock's path, line 2: base64 of its content, line 3: the
/// read request of [`READ_SCRIPT`]. Creates the lock only if nothing is there (`CreateNew`)
/// and then reads as [`READ_SCRIPT`] does, holding it: stdout `created`, a newline and the
/// read's JSON; or `held ` and the existing lock's bytes in base64, nothing read.
pub fn lock_read_script() -> String {
    format!(
        r#"{LOCK_READ_MARKER}
param($lines)
$ErrorActionPreference = 'Stop'
$p = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($lines[1]))
$bytes = [Convert]::FromBase64String($lines[2])
$dir = [IO.Path]::GetDirectoryName($p)
if ($dir) {{ [void][IO.Directory]::CreateDirectory($dir) }}
try {{
  $fs = [IO.File]::Open($p, [IO.FileMode]::CreateNew, [IO.FileAccess]::Write, [IO.FileShare]::None)
  try {{ $fs.Write($bytes, 0, $bytes.Length); $fs.Flush($true) }} finally {{ $fs.Dispose() }}
}} catch [IO.IOException] {{
  if (-not [IO.File]::Exists($p)) {{ throw }}
  [Console]::Out.Write('held ' + [Convert]::ToBase64String([IO.File]::ReadAllBytes($p)))
  exit 0
}}
$stop = $p + '.stop'
if ([IO.File]::Exists($stop)) {{ [IO.File]::Delete($stop) }}
[Console]::Out.Write("created`n")
$read = {{
{READ_SCRIPT}
}}
& $read @($lines[0], $lines[3])
"#
    )
}

/// stdin line 1: base64 of a JSON object: `lock`, `record` (`path`, `head`, `pending` (a
/// list), `tail`, each base64), `steps` (each `command`: the handler's [`handler_script`] in
/// `-EncodedCommand` form, `pending`: its entry or null) and `keep_going`. Runs each handler
/// in its own powershell (stdin closed, output captured), prints `H <i> <status> <stdout
/// base64> <stderr base64>`; after a success writes the record without the entries of the
/// handlers that succeeded so far (temporary file, `File.Replace`) and prints `R <i> OK` (or
/// `R <i> FAIL` and ends). A failure ends it unless `keep_going`; a stop file (`<lock>.stop`)
/// ends it before the next handler (`STOPPED`); else `END`. The lock and the stop file are
/// deleted on the way out, whatever happened.
pub const HANDLERS_SCRIPT: &str = r#"# deploy:handlers v1
param($lines)
$ErrorActionPreference = 'Stop'
$b = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($lines[1])) | ConvertFrom-Json
$stop = $b.lock + '.stop'
$rec = $b.record
$left = New-Object System.Collections.ArrayList
for ($k = 0; $k -lt @($rec.pending).Count; $k++) { [void]$left.Add($k) }
$failed = $false
try {
  $i = 0
  foreach ($step in @($b.steps)) {
    if ($i -gt 0 -and [IO.File]::Exists($stop)) { [Console]::Out.Write("STOPPED`n"); exit 0 }
    $psi = New-Object Diagnostics.ProcessStartInfo 'powershell.exe'
    $psi.Arguments = '-NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand ' + $step.command
    $psi.UseShellExecute = $false
    $psi.RedirectStandardInput = $true
    $psi.RedirectStandardOutput = $true
    $psi.RedirectStandardError = $true
    $proc = [Diagnostics.Process]::Start($psi)
    $proc.StandardInput.Close()
    $out = $proc.StandardOutput.ReadToEndAsync()
    $err = $proc.StandardError.ReadToEndAsync()
    $proc.WaitForExit()
    $status = $proc.ExitCode
    $o = [Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes($out.Result))
    $e = [Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes($err.Result))
    [Console]::Out.Write("H $i $status $o $e`n")
    if ($status -eq 0) {
      if ($null -ne $step.pending) { $left.Remove([int]$step.pending) }
      try {
        $ms = New-Object IO.MemoryStream
        $part = [Convert]::FromBase64String($rec.head); $ms.Write($part, 0, $part.Length)
        if ($left.Count -gt 0) {
          $part = [Text.Encoding]::UTF8.GetBytes(",`n  ""pending_handlers"": ["); $ms.Write($part, 0, $part.Length)
          $sep = $false
          foreach ($k in $left) {
            if ($sep) { $ms.WriteByte(44) }
            $part = [Convert]::FromBase64String(@($rec.pending)[$k]); $ms.Write($part, 0, $part.Length)
            $sep = $true
          }
          $ms.WriteByte(93)
        }
        $part = [Convert]::FromBase64String($rec.tail); $ms.Write($part, 0, $part.Length)
        $bytes = $ms.ToArray()
        $dir = [IO.Path]::GetDirectoryName($rec.path)
        $tmp = [IO.Path]::Combine($dir, '.' + [IO.Path]::GetFileName($rec.path) + '.deploy-' + [Guid]::NewGuid().ToString('N') + '.tmp')
        $fs = [IO.File]::Open($tmp, [IO.FileMode]::CreateNew, [IO.FileAccess]::Write, [IO.FileShare]::None)
        try { $fs.Write($bytes, 0, $bytes.Length); $fs.Flush($true) } finally { $fs.Dispose() }
        if ([IO.File]::Exists($rec.path)) { [IO.File]::Replace($tmp, $rec.path, $null) } else { [IO.File]::Move($tmp, $rec.path) }
        [Console]::Out.Write("R $i OK`n")
      } catch {
        if ($tmp -and [IO.File]::Exists($tmp)) { [IO.File]::Delete($tmp) }
        [Console]::Error.WriteLine("recording handler ${i}: $($_.Exception.Message)")
        [Console]::Out.Write("R $i FAIL`n")
        exit 0
      }
    } elseif (-not $b.keep_going) {
      [Console]::Out.Write("END`n")
      exit 0
    }
    $i++
  }
  [Console]::Out.Write("END`n")
} finally {
  if ([IO.File]::Exists($stop)) { [IO.File]::Delete($stop) }
  if ([IO.File]::Exists($b.lock)) { [IO.File]::Delete($b.lock) }
}
exit 0
"#;

/// stdin line 1: base64 of the lock's path. Creates `<lock>.stop` when the lock is there
/// (asks a running [`HANDLERS_SCRIPT`] to stop before its next handler).
pub const STOP_SCRIPT: &str = r#"# deploy:stop v1
param($lines)
$ErrorActionPreference = 'Stop'
$p = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($lines[1]))
if ([IO.File]::Exists($p)) { [IO.File]::WriteAllBytes($p + '.stop', [byte[]]@()) }
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
    /// What a read takes from the host at most.
    limits: ReadLimits,
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
            limits: ReadLimits::default(),
        })
    }

    /// The same transport reading at most `limits`.
    pub fn with_limits(self, limits: ReadLimits) -> WinRmTransport {
        WinRmTransport { limits, ..self }
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
        max_stdout: usize,
    ) -> Result<CommandOutput, TransportError> {
        let shell = self.shell_id()?;
        let client = self.client.clone();
        let received = blocking(move || {
            let encoded = encode_command(&script);
            let mut args = PS_ARGS;
            args[5] = &encoded;
            client.run(&shell, POWERSHELL, &args, &stdin, max_wait, max_stdout)
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
        self.script_capped(script, lines, MAX_OUTPUT).await
    }

    /// [`WinRmTransport::script`] taking at most `max_stdout` bytes of its output.
    async fn script_capped(
        &self,
        script: &str,
        lines: Vec<String>,
        max_stdout: usize,
    ) -> Result<CommandOutput, TransportError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut stdin = b64.encode(script.as_bytes());
        for line in lines {
            stdin.push('\n');
            stdin.push_str(&line);
        }
        stdin.push('\n');
        self.powershell(
            BOOTSTRAP.to_string(),
            stdin.into_bytes(),
            MAX_SCRIPT,
            max_stdout,
        )
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
    #[serde(default, deserialize_with = "one_or_many")]
    files: Vec<FileAnswer>,
    #[serde(default, deserialize_with = "one_or_many")]
    trees: Vec<TreeAnswer>,
}

#[derive(serde::Deserialize)]
struct FileAnswer {
    path: String,
    state: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    what: Option<String>,
}

#[derive(serde::Deserialize)]
struct TreeAnswer {
    #[serde(default, deserialize_with = "one_or_many")]
    entries: Vec<EntryAnswer>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(serde::Deserialize)]
struct EntryAnswer {
    rel: String,
    kind: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    what: Option<String>,
}

/// A JSON list, or the one object Windows PowerShell 5.1 writes for a list of one (and
/// `null` for none).
fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    use serde::Deserialize;
    match Option::<serde_json::Value>::deserialize(d)? {
        None => Ok(Vec::new()),
        Some(serde_json::Value::Array(items)) => items
            .into_iter()
            .map(|v| serde_json::from_value(v).map_err(serde::de::Error::custom))
            .collect(),
        Some(one) => serde_json::from_value(one)
            .map(|v| vec![v])
            .map_err(serde::de::Error::custom),
    }
}

/// How deploy shows Windows files' metadata: no Unix mode or owner exists there.
pub const WINDOWS_MODE: u32 = 0o644;

#[async_trait]
impl Transport for WinRmTransport {
    async fn read(&self, paths: &[String], trees: &[String]) -> Result<ReadResult, TransportError> {
        if paths.is_empty() && trees.is_empty() {
            return Ok(ReadResult::default());
        }
        let out = self
            .script_capped(
                READ_SCRIPT,
                vec![read_ask(paths, trees, &self.limits)],
                read_cap(paths, trees, &self.limits),
            )
            .await?;
        self.parse_read(paths, trees, &out, &out.stdout)
    }

    async fn lock_and_read(
        &self,
        lock: &str,
        content: &[u8],
        paths: &[String],
        trees: &[String],
    ) -> Result<LockRead, TransportError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let lines = vec![
            b64.encode(lock.as_bytes()),
            b64.encode(content),
            read_ask(paths, trees, &self.limits),
        ];
        let cap = read_cap(paths, trees, &self.limits).saturating_add(2 * MAX_HELD_LOCK + 64);
        let out = self.script_capped(&lock_read_script(), lines, cap).await?;
        if out.success()
            && let Some(held) = out.stdout.strip_prefix(b"held ")
        {
            let held = String::from_utf8_lossy(held);
            return b64.decode(held.trim()).map(LockRead::Held).map_err(|e| {
                TransportError::Io(format!("{}: unreadable lock {lock}: {e}", self.label))
            });
        }
        match out.stdout.strip_prefix(b"created\n") {
            Some(rest) => Ok(LockRead::Taken(self.parse_read(paths, trees, &out, rest))),
            None if !out.success() => Err(self.failed("creating the lock", &out)),
            None => Err(TransportError::Io(format!(
                "{}: the lock script answered something unexpected",
                self.label
            ))),
        }
    }

    async fn run_handlers(
        &self,
        run: &HandlerBatch,
        _stop: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<HandlersDone, TransportError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let rec = &run.record;
        let header = serde_json::json!({
            "lock": run.lock,
            "keep_going": run.keep_going,
            "record": {
                "path": rec.path,
                "head": b64.encode(&rec.head),
                "pending": rec.pending.iter().map(|p| b64.encode(p)).collect::<Vec<_>>(),
                "tail": b64.encode(&rec.tail),
            },
            "steps": run.steps.iter().map(|s| serde_json::json!({
                "command": encode_command(&handler_script(&s.command)),
                "pending": s.pending,
            })).collect::<Vec<_>>(),
        });
        let out = self
            .script(
                HANDLERS_SCRIPT,
                vec![b64.encode(header.to_string().as_bytes())],
            )
            .await?;
        if !out.success() {
            return Err(self.failed("running handlers", &out));
        }
        parse_handlers_output(&out.stdout)
            .map_err(|e| TransportError::Io(format!("{}: running handlers: {e}", self.label)))
    }

    async fn request_stop(&self, lock: &str) -> Result<(), TransportError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let out = self
            .script(STOP_SCRIPT, vec![b64.encode(lock.as_bytes())])
            .await?;
        if out.success() {
            Ok(())
        } else {
            Err(self.failed("asking the handlers to stop", &out))
        }
    }

    fn round_trips(&self) -> u64 {
        self.client.requests()
    }

    async fn facts(&self) -> Result<crate::facts::Facts, TransportError> {
        let out = self.script(crate::facts::PS_SCRIPT, Vec::new()).await?;
        if !out.success() {
            return Err(self.failed("gathering facts", &out));
        }
        super::facts_answer(&out, crate::facts::parse_windows)
    }

    async fn write_batch(&self, ops: &[FileOp]) -> Result<Swept, TransportError> {
        self.write_batch_now(ops).await
    }

    async fn run(&self, command: &str) -> Result<CommandOutput, TransportError> {
        self.run_now(command).await
    }

    async fn create_exclusive(
        &self,
        path: &str,
        content: &[u8],
    ) -> Result<Option<Vec<u8>>, TransportError> {
        self.create_exclusive_now(path, content).await
    }

    async fn remove(&self, path: &str) -> Result<(), TransportError> {
        self.remove_now(path).await
    }

    async fn close(&self) {
        self.close_now().await
    }
}

impl WinRmTransport {
    /// The read script's answer (`stdout` from the JSON on) -> what each path and tree holds.
    fn parse_read(
        &self,
        paths: &[String],
        trees: &[String],
        out: &CommandOutput,
        stdout: &[u8],
    ) -> Result<ReadResult, TransportError> {
        if !out.success() {
            return Err(self.failed("reading files", out));
        }
        parse_read_answer(paths, trees.len(), stdout, &self.limits)
            .map_err(|e| TransportError::Io(format!("{}: {e}", self.label)))
    }

    async fn write_batch_now(&self, ops: &[FileOp]) -> Result<Swept, TransportError> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let header: Vec<serde_json::Value> = ops
            .iter()
            .map(|op| match op {
                FileOp::Write(f) => serde_json::json!({
                    "op": "write",
                    "path": f.path,
                    "sha256": hex(&Sha256::digest(&f.content)),
                    "validate": f.validate.as_deref().map(handler_script),
                }),
                FileOp::Remove(path) => serde_json::json!({"op": "remove", "path": path}),
            })
            .collect();
        let header = serde_json::to_string(&header)
            .map_err(|e| TransportError::Io(format!("encoding the file list: {e}")))?;
        let mut lines = vec![b64.encode(header.as_bytes())];
        for op in ops {
            if let FileOp::Write(f) = op {
                lines.push(format!("b64:{}", b64.encode(&f.content)));
            }
        }
        let out = self.script(WRITE_SCRIPT, lines).await?;
        if out.status == Some(VALIDATE_FAILED) {
            // stderr: the file's path on the first line, then the command's output.
            let text = String::from_utf8_lossy(&out.stderr).into_owned();
            let (path, output) = text.split_once('\n').unwrap_or((text.as_str(), ""));
            let output = output.trim();
            return Err(TransportError::Io(format!(
                "validate of {} failed on {}: {} (nothing was replaced)",
                path.trim(),
                self.label,
                if output.is_empty() { "failed" } else { output }
            )));
        }
        if !out.success() {
            return Err(self.failed("writing files", &out));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text
            .lines()
            .filter_map(|l| l.strip_prefix("swept "))
            .map(|p| p.trim_end().to_string())
            .collect())
    }

    async fn run_now(&self, command: &str) -> Result<CommandOutput, TransportError> {
        let script = handler_script(command);
        let line_len = encode_command(&script).len() + 80;
        if line_len <= MAX_COMMAND_LINE {
            self.powershell(script, Vec::new(), MAX_COMMAND, MAX_OUTPUT)
                .await
        } else {
            // Too long for a command line: the bootstrap reads it from stdin instead.
            let b64 = base64::engine::general_purpose::STANDARD;
            let stdin = format!("{}\n", b64.encode(script.as_bytes()));
            self.powershell(
                BOOTSTRAP.to_string(),
                stdin.into_bytes(),
                MAX_COMMAND,
                MAX_OUTPUT,
            )
            .await
        }
    }

    async fn create_exclusive_now(
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

    async fn remove_now(&self, path: &str) -> Result<(), TransportError> {
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

    async fn close_now(&self) {
        let shell = self.shell.lock().ok().and_then(|mut s| s.take());
        if let Some(shell) = shell {
            let client = self.client.clone();
            // Best effort: an undeleted shell ends at the server's idle timeout anyway.
            let _ = blocking(move || client.delete_shell(&shell)).await;
        }
    }
}

/// The read script's answer (see [`READ_SCRIPT`]) -> one [`RemoteFile`] per path and one
/// listing per tree (public for the property tests: the host writes every byte of it). Sizes
/// are checked against `limits` before anything is decoded.
pub fn parse_read_answer(
    paths: &[String],
    trees: usize,
    stdout: &[u8],
    limits: &ReadLimits,
) -> Result<ReadResult, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let text = String::from_utf8_lossy(stdout);
    let answer: ReadAnswer = serde_json::from_str(text.trim())
        .map_err(|e| format!("the file-reading script answered something unexpected: {e}"))?;
    if answer.files.len() != paths.len() || answer.trees.len() != trees {
        return Err(format!(
            "asked for {} files and {trees} trees, the host answered for {} and {}",
            paths.len(),
            answer.files.len(),
            answer.trees.len()
        ));
    }
    // Sizes first, before anything is decoded: over the host total fails the read.
    let total = answer
        .files
        .iter()
        .filter(|a| a.state == "skipped" || a.state == "file")
        .map(|a| match a.state.as_str() {
            "file" => a.content.as_ref().map_or(0, |c| c.len() as u64 / 4 * 3),
            _ => a.size.unwrap_or(0),
        })
        .fold(0u64, u64::saturating_add);
    if answer.files.iter().any(|a| a.state == "skipped") || total > limits.host {
        return Err(limits.host_too_much(total));
    }
    let mut files = Vec::with_capacity(paths.len());
    for (path, a) in paths.iter().zip(answer.files) {
        if &a.path != path {
            return Err(format!(
                "asked for {path}, the host answered for {}",
                a.path
            ));
        }
        let file = match a.state.as_str() {
            "missing" => RemoteFile::Missing,
            "link" => RemoteFile::Symlink(a.target.unwrap_or_default()),
            "toobig" => RemoteFile::Unusable(limits.file_too_big(a.size.unwrap_or(0))),
            "file"
                if a.content.as_ref().map_or(0, |c| c.len() as u64 / 4 * 3)
                    > limits.file.saturating_add(3) =>
            {
                let size = a.content.as_ref().map_or(0, |c| c.len() as u64 / 4 * 3);
                RemoteFile::Unusable(limits.file_too_big(size))
            }
            "file" => {
                let content = b64
                    .decode(a.content.unwrap_or_default().as_bytes())
                    .map_err(|e| format!("{path}: bad base64: {e}"))?;
                let sha = hex(&Sha256::digest(&content));
                if a.sha256.as_deref().map(str::to_ascii_lowercase) != Some(sha.clone()) {
                    return Err(format!(
                        "{path}: the content read does not match the SHA-256 the host computed"
                    ));
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
    let trees = answer
        .trees
        .into_iter()
        .map(|t| match t.error {
            Some(why) => Err(why),
            None => Ok(t.entries.into_iter().map(tree_entry).collect()),
        })
        .collect();
    Ok(ReadResult {
        files,
        trees,
        through: Vec::new(),
    })
}

/// The read request line of [`READ_SCRIPT`].
fn read_ask(paths: &[String], trees: &[String], limits: &ReadLimits) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let ask = serde_json::json!({
        "paths": paths, "trees": trees, "cap": MAX_TREE_ENTRIES,
        "maxFile": limits.file, "maxHost": limits.host,
    });
    b64.encode(ask.to_string().as_bytes())
}

/// What the host may send for a read: the files within the limit in base64, JSON around
/// them, the listing; a server that streams past it fails the read.
fn read_cap(paths: &[String], trees: &[String], limits: &ReadLimits) -> usize {
    let listing = if trees.is_empty() {
        0
    } else {
        MAX_LISTING_BYTES
    };
    usize::try_from(limits.host / 3 * 4 + 4)
        .unwrap_or(usize::MAX)
        .saturating_add(paths.len().saturating_mul(16 << 10))
        .saturating_add(listing)
}

/// [`HANDLERS_SCRIPT`]'s output -> what each handler did (public for the property tests:
/// the host writes every byte of it). A complete answer means the lock is gone.
pub fn parse_handlers_output(stdout: &[u8]) -> Result<HandlersDone, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut done = HandlersDone {
        ran: Vec::new(),
        stopped: false,
        unlocked: Ok(()),
    };
    let text = String::from_utf8_lossy(stdout);
    for line in text.lines() {
        let fields: Vec<&str> = line.trim_end_matches('\r').split(' ').collect();
        match fields.as_slice() {
            ["END"] => return Ok(done),
            ["STOPPED"] => {
                done.stopped = true;
                return Ok(done);
            }
            ["H", i, status, out, err] => {
                if i.parse::<usize>().ok() != Some(done.ran.len()) {
                    return Err(format!("handler {i} answered out of order"));
                }
                let decode = |t: &str| b64.decode(t).map_err(|e| format!("bad base64: {e}"));
                let stderr = decode(err)?;
                done.ran.push(StepDone {
                    output: CommandOutput {
                        status: status.parse::<i32>().ok(),
                        stdout: decode(out)?,
                        stderr: clixml::decode_stderr(&stderr),
                    },
                    recorded: Ok(false),
                });
            }
            ["R", i, verdict] => {
                if !done.record_line(line, i, verdict)? {
                    return Ok(done);
                }
            }
            _ => return Err(format!("unexpected line {line:?}")),
        }
    }
    Err(format!(
        "the host's answer ended after {} handler(s)",
        done.ran.len()
    ))
}

fn tree_entry(e: EntryAnswer) -> TreeEntry {
    let kind = match e.kind.as_str() {
        "file" => match e.sha256 {
            Some(sha) => EntryKind::File {
                size: e.size.unwrap_or_default(),
                sha256: sha.to_ascii_lowercase(),
            },
            None => EntryKind::Unreadable,
        },
        "unreadable" => EntryKind::Unreadable,
        "link" => EntryKind::Symlink {
            target: e.target.unwrap_or_default(),
        },
        "dir" => EntryKind::Dir,
        _ => EntryKind::Other(e.what.unwrap_or_else(|| "not a regular file".into())),
    };
    TreeEntry { rel: e.rel, kind }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_answers_are_bounded_by_the_limits_and_by_nesting() {
        let paths = vec![r"C:\a".to_string(), r"C:\b".to_string()];
        let limits = ReadLimits { file: 4, host: 6 };
        // A file over the limit, reported by its size; a link, not read through.
        let answer = br#"{"files":[{"path":"C:\\a","state":"toobig","size":10737418240},{"path":"C:\\b","state":"link","target":"C:\\secret"}],"trees":[]}"#;
        let read = parse_read_answer(&paths, 0, answer, &limits).expect("read");
        assert!(
            matches!(&read.files[0], RemoteFile::Unusable(w) if w.contains("10 GiB")),
            "{:?}",
            read.files
        );
        assert_eq!(read.files[1], RemoteFile::Symlink(r"C:\secret".into()));
        // A host that skipped files over the total, or sent more than the total, fails.
        let skipped = br#"{"files":[{"path":"C:\\a","state":"file","sha256":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad","content":"YWJj"},{"path":"C:\\b","state":"skipped","size":5}],"trees":[]}"#;
        let err = parse_read_answer(&paths, 0, skipped, &limits).expect_err("over");
        assert!(err.contains("add up to 8 bytes"), "{err}");
        let lied = br#"{"files":[{"path":"C:\\a","state":"file","sha256":"00","content":"YWJjZGVmZ2hp"},{"path":"C:\\b","state":"missing"}],"trees":[]}"#;
        let err = parse_read_answer(&paths, 0, lied, &limits).expect_err("over");
        assert!(err.contains("deploy reads from one host"), "{err}");
        // Nested 20000 deep, on a worker-sized stack: an error, no overflow.
        let deep = format!("{{\"files\":{}}}", "[".repeat(20000));
        let err = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || parse_read_answer(&paths, 0, deep.as_bytes(), &limits))
            .expect("thread")
            .join()
            .expect("no panic")
            .expect_err("nested");
        assert!(err.contains("recursion limit"), "{err}");
    }

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
