//! What deploy records on each host, as plain data: the deploy state (`state.json`: the
//! commit deployed, when, by whom, the SHA-256 of every managed file, handlers still to run)
//! and the host lock (`lock.json`: who is applying right now). Serialization and the pure
//! judgements over them (drift, how old a lock is) live here; reading and writing go through
//! the transport (`remote.rs`, `apply.rs`, `ops.rs`). Neither record holds file contents or
//! secrets: files are known by their SHA-256 only.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::transport::{Connection, RemoteFile};

/// The host variable that sets where a host's state file lives.
pub const STATE_PATH_VAR: &str = "deploy_state_path";
/// Default state file on Linux (and local stand-in hosts, under their `deploy_root`).
pub const UNIX_STATE_PATH: &str = "/var/lib/deploy/state.json";
/// Default state file on Windows hosts.
pub const WINDOWS_STATE_PATH: &str = r"C:\ProgramData\deploy\state.json";
/// The lock's file name, next to the state file.
pub const LOCK_FILE: &str = "lock.json";
/// A lock older than this may be broken by `deploy unlock` without `--force`.
pub const STALE_LOCK: Duration = Duration::from_secs(3600);

/// The format version written in every state file.
pub const VERSION: u32 = 1;

/// `state.json` on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostState {
    pub version: u32,
    /// `git rev-parse HEAD` of the repo that deployed, with `-dirty` when its working tree
    /// had uncommitted changes; `unknown` outside git.
    pub commit: String,
    /// RFC 3339, UTC.
    pub time: String,
    /// `user@controller-hostname`.
    pub by: String,
    /// Every managed path -> SHA-256 (hex) of the content deploy wrote there.
    pub files: BTreeMap<String, String>,
    /// Handlers notified by a deploy that have not succeeded yet, in declared order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_handlers: Vec<PendingHandler>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingHandler {
    pub name: String,
    /// The commit whose deploy notified it.
    pub since: String,
}

/// Who is running deploy and on what: stamped into state and lock records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub commit: String,
    pub user: String,
    pub controller: String,
}

impl Provenance {
    pub fn by(&self) -> String {
        format!("{}@{}", self.user, self.controller)
    }
}

/// `lock.json` on a host while an apply runs there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub run_id: String,
    pub user: String,
    /// Hostname of the controller that holds the lock.
    pub controller: String,
    /// deploy's process id on that controller.
    pub pid: u32,
    /// RFC 3339, UTC.
    pub started: String,
    /// Seconds since the Unix epoch (for judging age without parsing `started`).
    pub started_unix: u64,
}

impl Lock {
    pub fn new(run_id: &str, who: &Provenance, now: SystemTime) -> Lock {
        Lock {
            run_id: run_id.to_string(),
            user: who.user.clone(),
            controller: who.controller.clone(),
            pid: std::process::id(),
            started: rfc3339(now),
            started_unix: unix_secs(now),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// How long ago the lock was taken (zero when its clock is ahead of ours).
    pub fn age(&self, now: SystemTime) -> Duration {
        Duration::from_secs(unix_secs(now).saturating_sub(self.started_unix))
    }

    /// For messages: "alice@ctl (pid 42, run 1a2b..., since 2025-01-01T00:00:00Z)".
    pub fn describe(&self) -> String {
        format!(
            "{}@{} (pid {}, run {}, since {})",
            self.user, self.controller, self.pid, self.run_id, self.started
        )
    }
}

/// What an existing lock file's bytes say about its holder, for messages.
pub fn describe_holder(bytes: &[u8]) -> String {
    match serde_json::from_slice::<Lock>(bytes) {
        Ok(lock) => lock.describe(),
        Err(_) if bytes.is_empty() => "another deploy (its lock is being written)".into(),
        Err(_) => format!(
            "an unreadable lock: {}",
            crate::text::shorten(String::from_utf8_lossy(bytes).trim(), 200)
        ),
    }
}

impl HostState {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// The record read from a host: `None` when there is none yet; `Err` when the file is
    /// there but not a state record deploy understands.
    pub fn from_remote(file: &RemoteFile) -> Result<Option<HostState>, String> {
        match file {
            RemoteFile::Missing => Ok(None),
            RemoteFile::Unusable(why) => Err(why.clone()),
            RemoteFile::Symlink(target) => Err(format!(
                "a symbolic link to {target}, not the file deploy writes (not followed)"
            )),
            RemoteFile::Present(f) => serde_json::from_slice(&f.content)
                .map(Some)
                .map_err(|e| format!("not a deploy state record: {e}")),
        }
    }
}

/// What `deploy status` says about one host: its record against what it has now and what
/// the inventory renders for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostStatus {
    pub host: String,
    /// The record, when the host has one.
    pub record: Option<HostState>,
    /// Recorded files whose content on the host differs from the record (or that are gone).
    pub drifted: Vec<String>,
    /// Files the inventory manages that the record does not know.
    pub unrecorded: Vec<String>,
    /// Files the inventory now renders differently from what the host has (`deploy plan`
    /// shows how).
    pub to_apply: Vec<String>,
}

impl HostStatus {
    /// Judges a host: `desired` are (path, rendered content), `current` what the host has at
    /// each of those paths, in the same order.
    pub fn judge(
        host: &str,
        record: Option<HostState>,
        desired: &[(String, &[u8])],
        current: &[RemoteFile],
    ) -> HostStatus {
        let content = |f: &RemoteFile| match f {
            RemoteFile::Present(s) => Some(sha256_hex(&s.content)),
            _ => None,
        };
        let mut status = HostStatus {
            host: host.to_string(),
            ..HostStatus::default()
        };
        for ((path, want), have) in desired.iter().zip(current) {
            let have = content(have);
            if have.as_deref() != Some(sha256_hex(want).as_str()) {
                status.to_apply.push(path.clone());
            }
            match record.as_ref().map(|r| r.files.get(path)) {
                Some(Some(recorded)) if have.as_deref() != Some(recorded.as_str()) => {
                    status.drifted.push(path.clone());
                }
                Some(None) => status.unrecorded.push(path.clone()),
                _ => {}
            }
        }
        status.record = record;
        status
    }

    /// Drift, unknown files, pending handlers, files to apply, or no record at all.
    pub fn needs_attention(&self) -> bool {
        self.record
            .as_ref()
            .is_none_or(|r| !r.pending_handlers.is_empty())
            || !self.drifted.is_empty()
            || !self.unrecorded.is_empty()
            || !self.to_apply.is_empty()
    }
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The state file of a host: `deploy_state_path` when set, else the default for its kind of
/// connection.
pub fn state_path(connection: &Connection, var: Option<&str>) -> String {
    match var {
        Some(p) if !p.is_empty() => p.to_string(),
        _ => connection.default_state_path().to_string(),
    }
}

/// The lock file: `lock.json` in the state file's directory.
pub fn lock_path(state_path: &str) -> String {
    match state_path.rfind(['/', '\\']) {
        Some(i) => format!("{}{LOCK_FILE}", &state_path[..=i]),
        None => LOCK_FILE.to_string(),
    }
}

/// The first 7 characters of a commit (keeping a `-dirty` mark), or the text as is.
pub fn short_commit(commit: &str) -> String {
    let (id, dirty) = match commit.strip_suffix("-dirty") {
        Some(id) => (id, "-dirty"),
        None => (commit, ""),
    };
    if id.len() > 7 && id.chars().all(|c| c.is_ascii_hexdigit()) {
        format!("{}{dirty}", &id[..7])
    } else {
        commit.to_string()
    }
}

pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `t` as RFC 3339 in UTC, to the second: `2025-01-31T23:59:59Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = unix_secs(t);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400 + 86_399);
        assert_eq!(rfc3339(t), "2000-02-29T23:59:59Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_735_689_600);
        assert_eq!(rfc3339(t), "2025-01-01T00:00:00Z");
    }

    #[test]
    fn paths() {
        assert_eq!(
            lock_path("/var/lib/deploy/state.json"),
            "/var/lib/deploy/lock.json"
        );
        assert_eq!(
            lock_path(r"C:\ProgramData\deploy\state.json"),
            r"C:\ProgramData\deploy\lock.json"
        );
        let vars = serde_json::json!({"ansible_connection": "winrm", "ansible_user": "u"});
        let winrm = Connection::from_vars("w", vars.as_object().unwrap()).unwrap();
        assert_eq!(state_path(&winrm, None), WINDOWS_STATE_PATH);
        assert_eq!(
            state_path(&Connection::Local { root: None }, Some("/srv/s.json")),
            "/srv/s.json"
        );
    }

    #[test]
    fn records_round_trip_and_hold_hashes_only() {
        let state = HostState {
            version: VERSION,
            commit: "0123456789abcdef-dirty".into(),
            time: rfc3339(UNIX_EPOCH),
            by: "me@ctl".into(),
            files: [("/etc/a".to_string(), sha256_hex(b"secret-value"))].into(),
            pending_handlers: vec![PendingHandler {
                name: "restart".into(),
                since: "0123456".into(),
            }],
        };
        let bytes = state.to_bytes();
        assert!(!String::from_utf8_lossy(&bytes).contains("secret-value"));
        let file = RemoteFile::Present(crate::transport::FileState {
            content: bytes,
            mode: 0o600,
            uid: 0,
            gid: 0,
            owner: None,
            group: None,
        });
        assert_eq!(HostState::from_remote(&file), Ok(Some(state)));
        assert_eq!(HostState::from_remote(&RemoteFile::Missing), Ok(None));
        assert_eq!(short_commit("0123456789abcdef-dirty"), "0123456-dirty");
        assert_eq!(short_commit("unknown"), "unknown");
    }

    #[test]
    fn status_judges_drift_and_unknown_files() {
        let file = |c: &[u8]| {
            RemoteFile::Present(crate::transport::FileState {
                content: c.to_vec(),
                mode: 0o644,
                uid: 0,
                gid: 0,
                owner: None,
                group: None,
            })
        };
        let record = HostState {
            version: VERSION,
            commit: "c".into(),
            time: "t".into(),
            by: "b".into(),
            files: [
                ("/a".to_string(), sha256_hex(b"a")),
                ("/b".to_string(), sha256_hex(b"b")),
            ]
            .into(),
            pending_handlers: Vec::new(),
        };
        let desired: Vec<(String, &[u8])> = vec![
            ("/a".into(), b"a"),
            ("/b".into(), b"b"),
            ("/c".into(), b"c"),
        ];
        let current = [file(b"a"), file(b"edited"), file(b"c")];
        let st = HostStatus::judge("h", Some(record.clone()), &desired, &current);
        assert_eq!(st.drifted, ["/b"]);
        assert_eq!(st.unrecorded, ["/c"]);
        assert_eq!(st.to_apply, ["/b"]);
        assert!(st.needs_attention());
        let clean = HostStatus::judge("h", Some(record), &desired[..1], &current[..1]);
        assert!(!clean.needs_attention());
        let none = HostStatus::judge("h", None, &desired[..1], &current[..1]);
        assert!(none.needs_attention() && none.drifted.is_empty());
    }

    #[test]
    fn lock_holder_is_described() {
        let who = Provenance {
            commit: "c".into(),
            user: "alice".into(),
            controller: "ctl".into(),
        };
        let lock = Lock::new("run1", &who, UNIX_EPOCH + Duration::from_secs(10));
        assert_eq!(lock.age(UNIX_EPOCH + Duration::from_secs(70)).as_secs(), 60);
        let text = describe_holder(&lock.to_bytes());
        assert!(text.starts_with("alice@ctl (pid "), "{text}");
        assert!(describe_holder(b"").contains("being written"));
    }
}
