//! Secrets through a whole plan/apply run: decrypted with the real `age` CLI's files, merged
//! at their precedence, masked everywhere deploy prints, and written 0600.

use std::path::PathBuf;

use crate::support::age;
use crate::support::project::Project;

const API_KEY: &str = "sk-live-9f8e7d6c5b4a";
const TOKEN: &str = "mkt-bearer-0123456789abcdef";

/// Hosts alpha (group web, which has a secret file) and beta (no secret).
fn project() -> (Project, PathBuf) {
    let p = Project::new();
    let (identity, public) = age::keygen(p.path(), "identity.txt");
    p.file("secrets/recipients.txt", &format!("# ops\n{public}\n"));
    p.inventory(
        "all:\n  vars:\n    ansible_connection: local\n  children:\n    web:\n      hosts:\n        alpha: {deploy_root: roots/alpha}\n    other:\n      hosts:\n        beta: {deploy_root: roots/beta}\n",
    )
    .file("hosts/group_vars/web.yml", "api_key: plain-value-overridden\nport: 8000\n")
    .manifest(
        r#"
groups:
  web:
    files:
      - template: env.j2
        dest: /opt/app/.env
        notify: restart
      - template: config.j2
        dest: /opt/app/config.yml
        notify: restart
    handlers:
      - name: restart
        run: echo restarting with {{ api_key | quote }} >/dev/null; echo "key {{ api_key }} in output"
  other:
    files:
      - template: plain.j2
        dest: /etc/plain
"#,
    )
    .template("env.j2", "OPENAI_API_KEY={{ api_key }}\nLITELLM_MASTER_KEY={{ bearer }}\nPORT={{ port }}\n")
    .template(
        "config.j2",
        "port: {{ port }}\nkey_json: {{ api_key | to_json }}\nkey_b64: {{ api_key | b64encode }}\nkey_upper: {{ api_key | upper }}\n",
    )
    .template("plain.j2", "nothing secret on {{ inventory_hostname }}\n");
    write_secret(&p, API_KEY, TOKEN);
    (p, identity)
}

fn write_secret(p: &Project, api_key: &str, token: &str) {
    age::encrypt(
        &p.path().join("secrets/recipients.txt"),
        &format!("api_key: {api_key}\nbearer: {token}\n"),
        &p.path().join("secrets/web.yml.age"),
    );
}

fn assert_no_secret(text: &str) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(API_KEY);
    for raw in [API_KEY, TOKEN, &b64, &API_KEY.to_uppercase()] {
        assert!(!text.contains(raw), "secret form {raw:?} leaked:\n{text}");
    }
}

#[test]
fn secrets_are_used_masked_everywhere_and_written_0600() {
    let (p, identity) = project();
    let id = identity.to_str().unwrap();
    let mut all_output = String::new();

    let plan = p.run(&["plan", "--identity", id]).expect(0);
    all_output += &plan.stdout;
    all_output += &plan.stderr;
    assert!(
        plan.stdout.contains("+OPENAI_API_KEY=<secret:api_key>"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("+LITELLM_MASTER_KEY=<secret:bearer>"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("+key_json: \"<secret:api_key>\""),
        "{}",
        plan.stdout
    );
    // Transformed beyond what deploy can name: the line is hidden, not leaked.
    assert!(
        plan.stdout.contains("+<line with secret changed>"),
        "{}",
        plan.stdout
    );
    assert!(plan.stdout.contains("+port: 8000"), "{}", plan.stdout);
    assert!(
        plan.stdout.contains("/opt/app/.env (mode 0600)"),
        "{}",
        plan.stdout
    );

    let json = p.run(&["plan", "--json", "--identity", id]).expect(0);
    all_output += &json.stdout;
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert!(
        doc["hosts"][0]["handlers"][0]["command"]
            .as_str()
            .unwrap()
            .contains("<secret:api_key>")
    );

    let apply = p.run(&["apply", "--yes", "--identity", id]).expect(0);
    all_output += &apply.stdout;
    all_output += &apply.stderr;
    // The secret was really used: the files hold the plaintext, readable by the owner only.
    assert_eq!(
        p.host_file("alpha", "/opt/app/.env").as_deref(),
        Some(format!("OPENAI_API_KEY={API_KEY}\nLITELLM_MASTER_KEY={TOKEN}\nPORT=8000\n").as_str())
    );
    assert_eq!(p.host_mode("alpha", "/opt/app/.env"), 0o600);
    assert_eq!(p.host_mode("alpha", "/opt/app/config.yml"), 0o600);
    assert_eq!(p.host_mode("beta", "/etc/plain"), 0o644);

    // Rotate the key: the plan says the line changed without showing either value.
    write_secret(&p, "sk-live-rotated-000111", TOKEN);
    let plan = p.run(&["plan", "--identity", id]).expect(0);
    all_output += &plan.stdout;
    assert!(
        plan.stdout.contains("-OPENAI_API_KEY=<secret:api_key>"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("+OPENAI_API_KEY=<secret:api_key>"),
        "{}",
        plan.stdout
    );
    assert!(!plan.stdout.contains("sk-live-rotated"), "{}", plan.stdout);
    assert_no_secret(&all_output);
}

#[test]
fn a_host_that_uses_no_secret_needs_no_identity() {
    let (p, _) = project();
    // HOME has no identity and none is given: beta alone still plans.
    p.run(&["plan", "--host", "beta"]).expect(0);
    let run = p.run(&["plan", "--host", "alpha"]).expect(1);
    assert!(run.stderr.contains("identity"), "{}", run.stderr);
    assert!(!p.path().join("roots").exists());
}

#[test]
fn a_wrong_identity_names_the_file_and_touches_nothing() {
    let (p, _) = project();
    let other = tempfile::tempdir().unwrap();
    let (wrong, _) = age::keygen(other.path(), "identity.txt");
    let run = p
        .run(&["apply", "--yes", "--identity", wrong.to_str().unwrap()])
        .expect(1);
    assert!(run.stderr.contains("web.yml.age"), "{}", run.stderr);
    assert!(!p.path().join("roots").exists());
}

#[test]
fn a_secret_beats_a_plain_var_of_the_same_level_and_loses_to_host_vars() {
    let (p, identity) = project();
    let id = identity.to_str().unwrap();
    p.run(&["apply", "--yes", "--identity", id]).expect(0);
    assert!(
        p.host_file("alpha", "/opt/app/.env")
            .unwrap()
            .contains(API_KEY)
    );
    p.file("hosts/host_vars/alpha.yml", "api_key: host-level-key\n");
    p.run(&["apply", "--yes", "--identity", id]).expect(0);
    assert!(
        p.host_file("alpha", "/opt/app/.env")
            .unwrap()
            .starts_with("OPENAI_API_KEY=host-level-key\n")
    );
}

/// A project whose secret is encrypted to an SSH key protected by a passphrase.
fn locked_project() -> (Project, PathBuf) {
    let (p, _) = project();
    let key = p.path().join("id_locked");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "correct horse", "-C", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(status.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    p.file("secrets/recipients.txt", &public);
    write_secret(&p, API_KEY, TOKEN);
    (p, key)
}

#[test]
fn a_passphrase_protected_identity_without_a_terminal_is_a_clear_error() {
    let (p, key) = locked_project();
    // setsid: no controlling terminal, as under CI or cron.
    let out = std::process::Command::new("setsid")
        .arg("-w")
        .arg(env!("CARGO_BIN_EXE_deploy"))
        .arg("--repo")
        .arg(p.path())
        .args(["plan", "--identity"])
        .arg(&key)
        .env("HOME", p.path().join("home"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no terminal to ask for it"), "{stderr}");
}

#[test]
fn a_passphrase_protected_identity_is_asked_for_on_the_terminal() {
    let (p, key) = locked_project();
    // A pseudo-terminal (script(1)); the passphrase is typed once the prompt is up. (Whether
    // the terminal echoes it is rpassword's business and racy to observe, so not asserted.)
    let id = key.display().to_string();
    let (code, text) = p.run_on_terminal(
        &["plan", "--identity", &id],
        "Passphrase for",
        "correct horse",
    );
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("Passphrase for"), "{text}");
    assert!(text.contains("+OPENAI_API_KEY=<secret:api_key>"), "{text}");
    assert_no_secret(&text);
}

/// An identity file encrypted with a passphrase by `age -p` (as `age -d -i` accepts it):
/// deploy asks for the passphrase on the terminal and decrypts the secrets with the key in it.
#[test]
fn an_identity_file_encrypted_by_age_p_is_opened_with_its_passphrase() {
    let (p, _) = project();
    let (plain_id, public) = age::keygen(p.path(), "inner.txt");
    p.file("secrets/recipients.txt", &public);
    write_secret(&p, API_KEY, TOKEN);
    let locked = p.path().join("identity.age");
    age::encrypt_with_passphrase(&plain_id, &locked, "battery staple");
    std::fs::remove_file(&plain_id).unwrap();
    let text = std::fs::read_to_string(&locked).unwrap();
    assert!(
        text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
        "{text}"
    );
    let id = locked.display().to_string();
    let (code, text) = p.run_on_terminal(
        &["plan", "--identity", &id],
        "Passphrase for",
        "battery staple",
    );
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("+OPENAI_API_KEY=<secret:api_key>"), "{text}");
    assert_no_secret(&text);
    // A wrong passphrase: a clear error, nothing decrypted.
    let (code, text) = p.run_on_terminal(&["plan", "--identity", &id], "Passphrase for", "nope");
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("wrong passphrase"), "{text}");
}

#[test]
fn a_failing_handler_that_prints_the_secret_is_masked() {
    let (p, identity) = project();
    p.manifest(
        r#"
groups:
  web:
    files:
      - template: env.j2
        dest: /opt/app/.env
        notify: restart
    handlers:
      - name: restart
        run: echo "auth failed for {{ api_key }}" >&2; exit 4
checks:
  - name: key looks like an OpenAI key
    hosts: web
    that: "api_key.startswith('sk-')"
    message: "{{ api_key }} does not start with sk-"
"#,
    );
    let run = p
        .run(&["apply", "--yes", "--identity", identity.to_str().unwrap()])
        .expect(1);
    let text = format!("{}{}", run.stdout, run.stderr);
    assert!(text.contains("auth failed for <secret:api_key>"), "{text}");
    assert_no_secret(&text);

    // A check whose message quotes the secret: masked in the refusal too.
    write_secret(&p, "pk-not-openai-123456", TOKEN);
    let run = p
        .run(&["plan", "--identity", identity.to_str().unwrap()])
        .expect(1);
    let text = format!("{}{}", run.stdout, run.stderr);
    assert!(
        text.contains("<secret:api_key> does not start with sk-"),
        "{text}"
    );
    assert!(!text.contains("pk-not-openai"), "{text}");
    let run = p
        .run(&["check", "--identity", identity.to_str().unwrap()])
        .expect(1);
    assert!(!run.stdout.contains("pk-not-openai"), "{}", run.stdout);
}

#[test]
fn a_handler_command_with_a_transformed_secret_is_hidden_not_garbled() {
    let (p, identity) = project();
    p.manifest(
        "groups:\n  web:\n    files:\n      - template: env.j2\n        dest: /opt/app/.env\n        notify: restart\n    handlers:\n      - name: restart\n        run: echo {{ api_key | upper }} > /dev/null\n",
    );
    let run = p
        .run(&["plan", "--identity", identity.to_str().unwrap()])
        .expect(0);
    assert!(
        run.stdout
            .contains("handler restart: <command with secret>"),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("DEPLOYSECRET"),
        "canary tokens leak into output: {}",
        run.stdout
    );
    assert_no_secret(&run.stdout);
}

#[test]
fn a_secret_in_a_dest_path_is_masked_in_the_plan_and_its_json() {
    let (p, identity) = project();
    p.manifest(
        "groups:\n  web:\n    files:\n      - template: plain.j2\n        dest: \"/etc/app/{{ bearer }}.conf\"\n        notify: restart\n    handlers:\n      - name: restart\n        run: \"true\"\n",
    );
    let id = identity.to_str().expect("utf-8");
    for args in [
        vec!["plan", "--host", "alpha", "--identity", id],
        vec!["plan", "--host", "alpha", "--identity", id, "--json"],
    ] {
        let run = p.run(&args).expect(0);
        let printed = format!("{}{}", run.stdout, run.stderr);
        assert!(!printed.contains(TOKEN), "{printed}");
        assert!(
            printed.contains("/etc/app/<secret:bearer>.conf"),
            "{printed}"
        );
    }
    // The host still gets the real name.
    p.run(&["apply", "--yes", "--host", "alpha", "--identity", id])
        .expect(0);
    assert!(
        p.host_file("alpha", &format!("/etc/app/{TOKEN}.conf"))
            .is_some()
    );
}

#[test]
fn a_secret_in_a_dest_path_is_masked_in_a_saved_plan_and_in_why_it_is_stale() {
    let (p, identity) = project();
    p.manifest(
        "groups:\n  web:\n    files:\n      - template: plain.j2\n        dest: \"/etc/app/{{ bearer }}.conf\"\n",
    );
    let id = identity.to_str().expect("utf-8");
    let saved = p.path().join("plan.json");
    let out = saved.to_str().expect("utf-8");
    p.run(&["plan", "--host", "alpha", "--identity", id, "--out", out])
        .expect(0);
    let text = std::fs::read_to_string(&saved).expect("saved plan");
    assert!(!text.contains(TOKEN), "{text}");
    assert!(text.contains("/etc/app/<secret:bearer>.conf"), "{text}");

    // The host's file changes behind the plan's back: stale, and the reason is masked.
    p.file(&format!("roots/alpha/etc/app/{TOKEN}.conf"), "edited\n");
    let stale = p.run(&["apply", out, "--identity", id]).expect(1);
    let printed = format!("{}{}", stale.stdout, stale.stderr);
    assert!(
        printed.contains("/etc/app/<secret:bearer>.conf changed on the host"),
        "{printed}"
    );
    assert!(!printed.contains(TOKEN), "{printed}");

    // A new secret value: the same masked text, another path; still stale, still masked.
    std::fs::remove_file(p.path().join(format!("roots/alpha/etc/app/{TOKEN}.conf"))).expect("rm");
    write_secret(&p, API_KEY, "mkt-bearer-fedcba9876543210");
    let moved = p.run(&["apply", out, "--identity", id]).expect(1);
    let printed = format!("{}{}", moved.stdout, moved.stderr);
    assert!(printed.contains("is no longer managed"), "{printed}");
    assert!(printed.contains("is newly managed"), "{printed}");
    assert!(
        !printed.contains("fedcba") && !printed.contains(TOKEN),
        "{printed}"
    );
}

#[test]
fn a_missing_identity_file_is_named_as_the_age_identity_with_where_its_path_came_from() {
    let (p, _) = project();
    let gone = p.path().join("nowhere/identity.txt");
    let gone_text = gone.to_str().expect("utf-8");

    let run = p.run_with_env(&["plan"], &[("DEPLOY_AGE_IDENTITY", gone_text)]);
    let run = run.expect(1);
    assert!(
        run.stderr.contains(&format!(
            "the age identity file {gone_text} does not exist ($DEPLOY_AGE_IDENTITY names it)"
        )),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("deploy secrets init"), "{}", run.stderr);

    let run = p.run(&["plan", "--identity", gone_text]).expect(1);
    assert!(
        run.stderr.contains(&format!(
            "the age identity file {gone_text} does not exist (--identity names it)"
        )),
        "{}",
        run.stderr
    );
    // The secrets commands say the same.
    let run = p
        .run(&["secrets", "view", "web", "--identity", gone_text])
        .expect(1);
    assert!(
        run.stderr.contains("(--identity names it)"),
        "{}",
        run.stderr
    );
    assert!(!p.path().join("roots").exists());
}

#[test]
fn a_swept_temporary_file_named_after_a_secret_dest_is_reported_masked() {
    let (p, identity) = project();
    p.manifest(
        "groups:\n  web:\n    files:\n      - template: plain.j2\n        dest: \"/etc/app/{{ bearer }}.conf\"\n",
    );
    // What a run cut mid-write would have left beside that file.
    p.file(
        &format!("roots/alpha/etc/app/.{TOKEN}.conf.deploy-0123456789abcdef.tmp"),
        "partial",
    );
    let id = identity.to_str().expect("utf-8");
    let run = p
        .run(&["apply", "--yes", "--host", "alpha", "--identity", id])
        .expect(0);
    let printed = format!("{}{}", run.stdout, run.stderr);
    assert!(
        printed.contains("/etc/app/.<secret:bearer>.conf.deploy-0123456789abcdef.tmp"),
        "{printed}"
    );
    assert!(!printed.contains(TOKEN), "{printed}");
}
