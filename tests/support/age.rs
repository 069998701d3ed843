//! The real `age` CLI (Debian package `age`), the interop peer for secrets.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `age-keygen -o DIR/NAME` -> (identity file, public key).
pub fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&path)
        .output()
        .expect("age-keygen (Debian package age) must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&path).expect("identity file");
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("public key line")
        .to_string();
    (path, public)
}

/// `age -e -a -R recipients -o out` with `plaintext` on stdin.
pub fn encrypt(recipients: &Path, plaintext: &str, out: &Path) {
    let mut child = Command::new("age")
        .args(["-e", "-a", "-R"])
        .arg(recipients)
        .arg("-o")
        .arg(out)
        .stdin(Stdio::piped())
        .spawn()
        .expect("age must be installed");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(plaintext.as_bytes())
        .expect("write plaintext");
    assert!(child.wait().expect("age").success());
}

/// `age -d -i identity file`: the plaintext, or None when age cannot decrypt it.
pub fn decrypt(identity: &Path, file: &Path) -> Option<String> {
    let out = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(identity)
        .arg(file)
        .output()
        .expect("age must be installed");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `age -p -a -o out input` with `passphrase` typed at its two prompts: age reads a
/// passphrase only from a terminal, so it runs under a pseudo-terminal (script(1)). Each
/// prompt is waited for (at most 20 s), and answered a moment after it shows.
pub fn encrypt_with_passphrase(input: &Path, out: &Path, passphrase: &str) {
    use std::io::Read;
    use std::time::{Duration, Instant};
    let command = format!("age -p -a -o '{}' '{}'", out.display(), input.display());
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (bsdutils)");
    let mut stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut stdin = child.stdin.take().expect("stdin");
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    for prompts in 1..=2 {
        while seen.to_ascii_lowercase().matches("passphrase").count() < prompts {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(chunk) => seen.push_str(&String::from_utf8_lossy(&chunk)),
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("age -p: no passphrase prompt {prompts} within 20 s: {seen}");
                }
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        stdin
            .write_all(format!("{passphrase}\r").as_bytes())
            .expect("type the passphrase");
    }
    drop(stdin);
    let status = child.wait().expect("age -p");
    assert!(status.success(), "age -p failed: {seen}");
}
