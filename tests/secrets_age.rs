//! Secret files are plain age: the real `age` CLI reads what deploy writes and deploy reads
//! what `age -e -R recipients.txt -a` writes, with X25519 and SSH-key recipients. The CLIs
//! are required (CI installs them): a missing tool fails the test rather than skipping it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use deploy::secrets::{Recipients, decrypt_file, encrypt, load_identities};
use tempfile::TempDir;

/// Runs a tool and returns its stdout, failing the test with its stderr otherwise.
fn run(program: &str, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} must be installed (CI installs it): {e}"));
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A fresh age X25519 key made by `age-keygen`: (key file, public key).
fn age_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    run("age-keygen", &["-o", key.to_str().expect("utf-8")], None);
    let public = run("age-keygen", &["-y", key.to_str().expect("utf-8")], None);
    (
        key,
        String::from_utf8(public).expect("utf-8").trim().to_string(),
    )
}

/// A fresh unencrypted ed25519 SSH key made by `ssh-keygen`: (private key file, public line).
fn ssh_key(dir: &Path, name: &str) -> (PathBuf, String) {
    ssh_keygen(dir, name, &["-t", "ed25519"])
}

/// A fresh unencrypted SSH key made by `ssh-keygen` with `args` (type, size, format):
/// (private key file, public line).
fn ssh_keygen(dir: &Path, name: &str, args: &[&str]) -> (PathBuf, String) {
    let key = dir.join(name);
    let mut all = vec!["-q", "-N", "", "-C", "ops@example", "-f"];
    all.push(key.to_str().expect("utf-8"));
    all.extend_from_slice(args);
    run("ssh-keygen", &all, None);
    let public = fs::read_to_string(key.with_extension("pub")).expect("public key");
    (key, public.trim().to_string())
}

/// `age -d -i key file`: the plaintext.
fn age_decrypt(key: &Path, file: &Path) -> Vec<u8> {
    run(
        "age",
        &[
            "-d",
            "-i",
            key.to_str().expect("utf-8"),
            file.to_str().expect("utf-8"),
        ],
        None,
    )
}

/// `age -e -R recipients -a` on `plaintext`, written to `dest`.
fn age_encrypt(recipients: &Path, plaintext: &str, dest: &Path) {
    let out = run(
        "age",
        &["-e", "-a", "-R", recipients.to_str().expect("utf-8")],
        Some(plaintext.as_bytes()),
    );
    fs::write(dest, out).expect("write");
}

fn setup() -> TempDir {
    tempfile::tempdir().expect("temp dir")
}

#[test]
fn age_cli_decrypts_what_deploy_encrypts() {
    let dir = setup();
    let (key, public) = age_key(dir.path(), "key.txt");
    let recipients_path = dir.path().join("recipients.txt");
    fs::write(&recipients_path, format!("# ops\n{public}\n")).expect("write");
    let recipients = Recipients::load(&recipients_path).expect("recipients");

    let plaintext = b"openai_api_key: sk-test-123\nlitellm_bearer_token: \"t0k3n\"\n";
    let armored = encrypt(plaintext, &recipients).expect("encrypt");
    let file = dir.path().join("all.yml.age");
    fs::write(&file, &armored).expect("write");

    assert_eq!(age_decrypt(&key, &file), plaintext);

    // And deploy reads its own file back.
    let ids = load_identities(&[key]).expect("identities");
    let vars = decrypt_file(&file, &ids).expect("decrypt");
    assert_eq!(vars["openai_api_key"], "sk-test-123");
    assert_eq!(vars["litellm_bearer_token"], "t0k3n");
}

/// Every kind of key deploy encrypts to, each opened by the `age` CLI with its private key:
/// X25519, ssh-ed25519, ssh-rsa (OpenSSH's format and PEM).
#[test]
fn age_cli_decrypts_what_deploy_encrypts_to_every_key_type() {
    let dir = setup();
    let keys = [
        age_key(dir.path(), "key.txt"),
        ssh_key(dir.path(), "id_ed25519"),
        ssh_keygen(dir.path(), "id_rsa", &["-t", "rsa", "-b", "2048"]),
        ssh_keygen(
            dir.path(),
            "id_rsa_pem",
            &["-t", "rsa", "-b", "3072", "-m", "PEM"],
        ),
    ];
    let pem = fs::read_to_string(&keys[3].0).expect("pem key");
    assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"), "{pem}");
    let recipients_path = dir.path().join("recipients.txt");
    let lines: Vec<&str> = keys.iter().map(|(_, public)| public.as_str()).collect();
    fs::write(&recipients_path, lines.join("\n")).expect("write");
    let recipients = Recipients::load(&recipients_path).expect("recipients");
    // Over one 64 KiB chunk, so the payload's chunking is checked by the CLI too.
    let plaintext = format!("big: \"{}\"\n", "x".repeat(70_000));
    let file = dir.path().join("all.yml.age");
    fs::write(
        &file,
        encrypt(plaintext.as_bytes(), &recipients).expect("encrypt"),
    )
    .expect("write");
    for (key, _) in &keys {
        assert_eq!(
            age_decrypt(key, &file),
            plaintext.as_bytes(),
            "{}",
            key.display()
        );
        // And deploy opens it with the same key.
        let ids = load_identities(std::slice::from_ref(key)).expect("identities");
        let vars = decrypt_file(&file, &ids).expect("decrypt");
        assert_eq!(vars["big"].as_str().map(str::len), Some(70_000));
    }
}

/// What the `age` CLI encrypts to ssh-rsa keys, deploy opens with the private key, in
/// OpenSSH's format and in PEM.
#[test]
fn deploy_reads_what_age_cli_encrypts_to_ssh_rsa() {
    let dir = setup();
    for (name, args) in [
        ("id_rsa", &["-t", "rsa", "-b", "2048"][..]),
        ("id_rsa_pem", &["-t", "rsa", "-b", "2048", "-m", "PEM"][..]),
    ] {
        let (key, public) = ssh_keygen(dir.path(), name, args);
        let recipients = dir.path().join(format!("{name}.recipients"));
        fs::write(&recipients, format!("{public}\n")).expect("write");
        let file = dir.path().join(format!("{name}.yml.age"));
        age_encrypt(&recipients, "token: t0k3n\n", &file);
        let ids = load_identities(std::slice::from_ref(&key)).expect("identities");
        let vars = decrypt_file(&file, &ids).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(vars["token"], "t0k3n");
    }
}

/// An ecdsa key is named as a key age has no recipient for, in recipients.txt and as an
/// identity, never quoted.
#[test]
fn ecdsa_keys_are_refused_by_name() {
    let dir = setup();
    let (key, public) = ssh_keygen(dir.path(), "id_ecdsa", &["-t", "ecdsa"]);
    let recipients = dir.path().join("recipients.txt");
    fs::write(&recipients, format!("{public}\n")).expect("write");
    let e = Recipients::load(&recipients)
        .expect_err("ecdsa")
        .to_string();
    assert!(e.contains("recipients.txt:1:"), "{e}");
    assert!(
        e.contains("ecdsa-sha2-nistp256 is not supported by age"),
        "{e}"
    );
    let e = load_identities(std::slice::from_ref(&key))
        .expect_err("ecdsa identity")
        .to_string();
    assert!(e.contains("not a usable SSH private key"), "{e}");
    assert!(e.contains("ecdsa"), "{e}");
    assert!(!e.contains("PRIVATE KEY"), "{e}");
}

#[test]
fn deploy_reads_what_age_cli_encrypts_to_x25519_and_ssh_recipients() {
    let dir = setup();
    let (age_id, age_public) = age_key(dir.path(), "key.txt");
    let (ssh_id, ssh_public) = ssh_key(dir.path(), "id_ed25519");
    let recipients = dir.path().join("recipients.txt");
    fs::write(
        &recipients,
        format!("# alice\n{age_public}\n\n# bob's ssh key\n{ssh_public}\n"),
    )
    .expect("write");
    // deploy accepts the same recipients file the CLI does.
    assert_eq!(
        Recipients::load(&recipients)
            .expect("recipients")
            .lines()
            .len(),
        2
    );

    let file = dir.path().join("web.yml.age");
    age_encrypt(&recipients, "db_password: hunter2\nport: 5432\n", &file);

    for identity in [age_id, ssh_id] {
        let ids = load_identities(std::slice::from_ref(&identity)).expect("identities");
        let vars = decrypt_file(&file, &ids)
            .unwrap_or_else(|e| panic!("{} cannot decrypt: {e}", identity.display()));
        assert_eq!(vars["db_password"], "hunter2");
        assert_eq!(vars["port"], 5432);
    }
}

#[test]
fn deploy_reads_binary_age_files_too() {
    let dir = setup();
    let (key, public) = age_key(dir.path(), "key.txt");
    let file = dir.path().join("host.yml.age");
    let out = run("age", &["-e", "-r", &public], Some(b"a: 1\n"));
    fs::write(&file, out).expect("write");
    let vars = decrypt_file(&file, &load_identities(&[key]).expect("ids")).expect("decrypt");
    assert_eq!(vars["a"], 1);
}

#[test]
fn wrong_identity_is_one_clear_error() {
    let dir = setup();
    let (_, public) = age_key(dir.path(), "theirs.txt");
    let (mine, _) = age_key(dir.path(), "mine.txt");
    let recipients = dir.path().join("recipients.txt");
    fs::write(&recipients, format!("{public}\n")).expect("write");
    let file = dir.path().join("x.yml.age");
    age_encrypt(&recipients, "a: 1\n", &file);

    let ids = load_identities(std::slice::from_ref(&mine)).expect("identities");
    let e = decrypt_file(&file, &ids)
        .expect_err("must fail")
        .to_string();
    assert!(
        e.starts_with(&format!(
            "no identity can decrypt {}; tried: {}",
            file.display(),
            mine.display()
        )),
        "{e}"
    );
}

#[test]
fn truncated_file_is_an_error_naming_it() {
    let dir = setup();
    let (key, public) = age_key(dir.path(), "key.txt");
    let recipients = dir.path().join("recipients.txt");
    fs::write(&recipients, format!("{public}\n")).expect("write");
    let file = dir.path().join("x.yml.age");
    age_encrypt(&recipients, "a: 1\n", &file);
    let ids = load_identities(&[key]).expect("identities");

    let full = fs::read_to_string(&file).expect("read");
    // Cut inside the armored body, and also drop just the armor's footer: both are broken.
    for cut in [
        &full[..full.len() / 2],
        full.trim_end()
            .trim_end_matches("-----END AGE ENCRYPTED FILE-----"),
    ] {
        fs::write(&file, cut).expect("write");
        let e = decrypt_file(&file, &ids)
            .expect_err("must fail")
            .to_string();
        assert!(
            e.starts_with(&format!("{}: not a valid age file", file.display())),
            "{e}"
        );
    }
    // And a file that is not age at all.
    fs::write(&file, "db_password: oops-plaintext\n").expect("write");
    let e = decrypt_file(&file, &ids)
        .expect_err("must fail")
        .to_string();
    assert!(
        e.starts_with(&format!("{}: not a valid age file", file.display())),
        "{e}"
    );
    assert!(!e.contains("oops-plaintext"), "{e}");
}

#[test]
fn plaintext_that_is_not_a_mapping_is_an_error_naming_the_file() {
    let dir = setup();
    let (key, public) = age_key(dir.path(), "key.txt");
    let recipients = dir.path().join("recipients.txt");
    fs::write(&recipients, format!("{public}\n")).expect("write");
    let ids = load_identities(&[key]).expect("identities");

    let file = dir.path().join("list.yml.age");
    age_encrypt(&recipients, "- hunter2\n- swordfish\n", &file);
    let e = decrypt_file(&file, &ids)
        .expect_err("must fail")
        .to_string();
    assert!(
        e.starts_with(&format!(
            "{}: a secret file must decrypt to a mapping",
            file.display()
        )),
        "{e}"
    );

    // Broken YAML: line and column, but never the secret line itself.
    let file = dir.path().join("broken.yml.age");
    age_encrypt(&recipients, "ok: 1\npassword: [hunter2\n", &file);
    let e = decrypt_file(&file, &ids)
        .expect_err("must fail")
        .to_string();
    assert!(e.starts_with(&format!("{}:", file.display())), "{e}");
    assert!(!e.contains("hunter2"), "{e}");

    // An empty secret file is no variables, like an empty vars file.
    let file = dir.path().join("empty.yml.age");
    age_encrypt(&recipients, "", &file);
    assert!(decrypt_file(&file, &ids).expect("empty").is_empty());
}

#[test]
fn recipients_bad_line_names_file_and_line() {
    let dir = setup();
    let (_, public) = age_key(dir.path(), "key.txt");
    let (_, ssh_public) = ssh_key(dir.path(), "id_ed25519");
    let path = dir.path().join("recipients.txt");
    fs::write(
        &path,
        format!("# team\n{public}\n{ssh_public}\n\nssh-ed25519 AAAAnotbase64!!\n"),
    )
    .expect("write");
    let e = Recipients::load(&path).expect_err("must fail").to_string();
    assert!(
        e.starts_with(&format!("{}:5: not a valid SSH public key", path.display())),
        "{e}"
    );
}
