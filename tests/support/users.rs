//! Real Unix users and sudoers rules for the become tests (Debian's `useradd`, `chpasswd`,
//! `sudo`; `.ci/run` installs sudo). Each test uses users of its own, so tests running in
//! parallel never share a sudoers rule; creating a user that exists is a no-op, so the tests
//! can run again on the same machine.

use std::fs;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// `useradd` and `chpasswd` lock /etc/passwd; the tests' threads take turns.
static ACCOUNTS: Mutex<()> = Mutex::new(());
/// `useradd` retries when another process holds the passwd lock: at most 20 × 100 ms.
const LOCK_TRIES: u32 = 20;

/// Makes sure user `name` exists (shell /bin/sh, home `/`: sshd sets the sessions' HOME) with `password` (or a
/// locked password), and that `/etc/sudoers.d/<name>` holds exactly `sudoers` (checked by
/// `visudo -c` first; `None` removes it). Returns the name.
pub fn user(name: &str, password: Option<&str>, sudoers: Option<&str>) -> String {
    let _turn = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
    let exists = Command::new("id")
        .arg("-u")
        .arg(name)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("id")
        .success();
    if !exists {
        let mut last = String::new();
        let mut made = false;
        for _ in 0..LOCK_TRIES {
            let out = Command::new("useradd")
                .args(["-M", "-d", "/", "-s", "/bin/sh", name])
                .output()
                .expect("useradd (is the passwd package installed?)");
            if out.status.success() {
                made = true;
                break;
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            if last.contains("already exists") {
                made = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(made, "useradd {name}: {last}");
    }
    let line = match password {
        Some(pw) => format!("{name}:{pw}\n"),
        // No password: sudo can never be satisfied by one ("!" would lock the account, and
        // sshd refuses locked accounts even a key).
        None => format!("{name}:*\n"),
    };
    let mut cmd = Command::new("chpasswd");
    if password.is_none() {
        cmd.arg("-e");
    }
    let mut child = cmd.stdin(Stdio::piped()).spawn().expect("chpasswd");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(line.as_bytes()).expect("chpasswd input");
    }
    assert!(child.wait().expect("chpasswd").success(), "chpasswd {name}");

    let path = format!("/etc/sudoers.d/{}", name.replace('.', "_"));
    match sudoers {
        Some(rules) => {
            let tmp = format!("{path}.new");
            fs::write(&tmp, rules).expect("sudoers drop-in");
            let check = Command::new("visudo")
                .args(["-c", "-q", "-f", &tmp])
                .output()
                .expect("visudo (is sudo installed?)");
            assert!(
                check.status.success(),
                "sudoers for {name} invalid: {}",
                String::from_utf8_lossy(&check.stdout)
            );
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o440)).expect("chmod");
            fs::rename(&tmp, &path).expect("install sudoers drop-in");
        }
        None => {
            let _ = fs::remove_file(&path);
        }
    }
    name.to_string()
}

/// `uid` of user `name`.
pub fn uid(name: &str) -> u32 {
    let out = Command::new("id").arg("-u").arg(name).output().expect("id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a uid")
}
