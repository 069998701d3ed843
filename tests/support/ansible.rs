//! Real ansible-core (PyPI), the reference for what Ansible does: `.ci/run` installs it into
//! the venv `target/ci-ansible`; `$DEPLOY_TEST_ANSIBLE` names another venv.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The path of an ansible-core command (`ansible-vault`, `ansible-inventory`, ...).
pub fn bin(name: &str) -> PathBuf {
    let venv = std::env::var_os("DEPLOY_TEST_ANSIBLE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ci-ansible"));
    let path = venv.join("bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: .ci/run installs ansible-core into target/ci-ansible \
         (or set DEPLOY_TEST_ANSIBLE to a venv that has it)",
        path.display()
    );
    path
}

/// `ansible-vault encrypt_string --vault-id ID@PASSWORD_FILE --name NAME` of `value`: the
/// YAML line `NAME: !vault |` and its indented block, as Ansible prints it. `id` "default"
/// writes format 1.1, any other id 1.2.
pub fn encrypt_string(password_file: &Path, id: &str, name: &str, value: &str) -> String {
    let mut child = Command::new(bin("ansible-vault"))
        .arg("encrypt_string")
        .arg("--vault-id")
        .arg(format!("{id}@{}", password_file.display()))
        .args([
            "--encrypt-vault-id",
            id,
            "--name",
            name,
            "--stdin-name",
            name,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ansible-vault");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(value.as_bytes())
        .expect("value");
    let out = child.wait_with_output().expect("ansible-vault");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// `ansible-vault encrypt --vault-password-file FILE PATH` (in place, format 1.1).
pub fn encrypt_file(password_file: &Path, path: &Path) {
    let out = Command::new(bin("ansible-vault"))
        .arg("encrypt")
        .arg("--vault-password-file")
        .arg(password_file)
        .arg(path)
        .output()
        .expect("ansible-vault");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
