//! Facts about the controller a run stamps into the hosts' records: the git commit of the
//! repo (through the `git` command), the user and the controller's hostname.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::state::Provenance;

/// Commit recorded when the repo is not a git work tree (or git is missing).
pub const UNKNOWN_COMMIT: &str = "unknown";

/// Who runs deploy, where, from which commit of `repo`.
pub fn provenance(repo: &Path) -> Provenance {
    Provenance {
        commit: commit(repo),
        user: user(),
        controller: hostname(),
    }
}

/// What `command` prints, trimmed, when it runs and succeeds.
fn stdout_of(command: &mut Command) -> Option<String> {
    let out = command
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn git(repo: &Path, args: &[&str]) -> Option<String> {
    stdout_of(Command::new("git").arg("-C").arg(repo).args(args))
}

/// `git rev-parse HEAD`, with `-dirty` when `git status --porcelain` lists anything;
/// [`UNKNOWN_COMMIT`] outside git.
pub fn commit(repo: &Path) -> String {
    let Some(head) = head(repo) else {
        return UNKNOWN_COMMIT.to_string();
    };
    match git(repo, &["status", "--porcelain"]) {
        Some(status) if status.is_empty() => head,
        _ => format!("{head}-dirty"),
    }
}

/// The full id of HEAD, when `repo` is in a git work tree with a commit.
pub fn head(repo: &Path) -> Option<String> {
    git(repo, &["rev-parse", "--verify", "-q", "HEAD"]).filter(|h| !h.is_empty())
}

/// How many commits HEAD has that `commit` (a recorded commit, `-dirty` mark ignored) does
/// not; `None` when the repo does not know that commit.
pub fn commits_behind(repo: &Path, commit: &str) -> Option<u64> {
    let id = commit.strip_suffix("-dirty").unwrap_or(commit);
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    git(repo, &["rev-list", "--count", &format!("{id}..HEAD")])?
        .parse()
        .ok()
}

/// `$USER` (else `$LOGNAME`, else `id -un`, else `unknown`).
pub fn user() -> String {
    let from_id = || stdout_of(Command::new("id").arg("-un"));
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(from_id)
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// The controller's hostname (the kernel's, else `hostname`, else `unknown`).
pub fn hostname() -> String {
    let from_file = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok();
    let from_cmd = || stdout_of(&mut Command::new("hostname"));
    from_file
        .or_else(from_cmd)
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Whether process `pid` is gone from this machine (Linux: no `/proc/PID`).
pub fn process_gone(pid: u32) -> bool {
    Path::new("/proc/self").exists() && !Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether the process `pid` that took a lock at `since` (Unix seconds) is gone: no such
/// process, or the one with that pid now started after the lock was taken (the pid was
/// reused). Linux only: anything it cannot read counts as alive.
pub fn process_gone_since(pid: u32, since: u64) -> bool {
    if process_gone(pid) {
        return true;
    }
    match process_start_unix(pid) {
        // One second of slack: the lock records whole seconds, boot time too.
        Some(start) => start > since + 1,
        None => false,
    }
}

/// When process `pid` started, in Unix seconds: its start in clock ticks after boot
/// (`/proc/PID/stat`, field 22) plus the boot time (`btime` in `/proc/stat`).
fn process_start_unix(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    let rest = &stat[stat.rfind(')')? + 1..];
    let ticks: u64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    let boot: u64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // USER_HZ is 100 on every Linux deploy runs on.
    Some(boot + ticks / 100)
}
