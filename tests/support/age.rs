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
/// passphrase only from a terminal, so it runs on a pseudo-terminal.
pub fn encrypt_with_passphrase(input: &Path, out: &Path, passphrase: &str) {
    let command = format!("age -p -a -o '{}' '{}'", out.display(), input.display());
    let mut terminal = super::terminal::Terminal::start(&command, &[]);
    terminal.answer("passphrase", 1, passphrase);
    terminal.answer("passphrase", 2, passphrase);
    let (code, seen) = terminal.finish();
    assert_eq!(code, 0, "age -p failed: {seen}");
}
