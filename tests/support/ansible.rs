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

/// `ansible-inventory -i INVENTORY --list`: the JSON document (groups with their direct
/// hosts and children, `_meta.hostvars` with every host's merged variables).
pub fn inventory_list(inventory: &Path) -> serde_json::Value {
    let out = Command::new(bin("ansible-inventory"))
        .arg("-i")
        .arg(inventory)
        .arg("--list")
        .output()
        .expect("ansible-inventory");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ansible-inventory prints JSON")
}

/// What `ansible -i INVENTORY all --list-hosts -l LIMIT` selects for each case (one
/// process for all of them, see `ansible_hosts.py`): the host names, or Ansible's error.
pub fn limit_hosts(cases: &[(PathBuf, String)]) -> Vec<Result<Vec<String>, String>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/ansible_hosts.py");
    let mut child = Command::new(bin("python"))
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python");
    let mut input = String::new();
    for (inventory, limit) in cases {
        let line = serde_json::json!({"inventory": inventory, "limit": limit});
        input.push_str(&format!("{line}\n"));
    }
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("cases");
    let out = child.wait_with_output().expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(answers.len(), cases.len(), "one answer per case");
    answers
        .into_iter()
        .map(|a| match a.get("hosts") {
            Some(hosts) => Ok(serde_json::from_value(hosts.clone()).expect("names")),
            None => Err(a["error"].as_str().unwrap_or_default().to_string()),
        })
        .collect()
}

/// `ansible -i INVENTORY all --list-hosts -l LIMIT` itself: the names it prints under
/// `hosts (N):`, or its error.
pub fn cli_limit_hosts(inventory: &Path, limit: &str) -> Result<Vec<String>, String> {
    let out = Command::new(bin("ansible"))
        .arg("-i")
        .arg(inventory)
        .args(["all", "--list-hosts", "-l", limit])
        .output()
        .expect("ansible");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let mut lines = stdout
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("hosts ("));
    let header = lines.next().expect("a `hosts (N):` line");
    let hosts: Vec<String> = lines.map(|l| l.trim().to_string()).collect();
    assert!(header.contains(&format!("({})", hosts.len())), "{stdout}");
    Ok(hosts)
}
