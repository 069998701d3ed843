//! Ansible Vault, for teams moving over: vaulted values still in group_vars/ and host_vars/
//! are opened in memory with the vault password and masked like every secret, and
//! `deploy secrets import-vault` moves them into secrets/*.yml.age. The vault files are
//! made by the real `ansible-vault` (ansible-core from PyPI).

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::support::ansible;
use crate::support::project::Project;

const DB_PASSWORD: &str = "S3cr3t-vault-db-5e1";
const API_TOKEN: &str = "tok-vault-host-9f2";

/// One local host `web1` in group `app`: `db_password` is an inline `!vault` value (format
/// 1.2, vault id `prod`) in group_vars/app.yml, `api_token` a whole vault file in
/// host_vars/web1/vault.yml. The vault password is in `vault-pw.txt`.
fn vaulted_project() -> Project {
    let p = Project::new();
    p.local_hosts(&[("app", &["web1"])])
        .manifest(
            "groups:\n  app:\n    files:\n      - template: app.env.j2\n        dest: /etc/app.env\n",
        )
        .template(
            "app.env.j2",
            "DB_USER={{ db_user }}\nDB_PASSWORD={{ db_password }}\nAPI_TOKEN={{ api_token }}\n",
        )
        .file("vault-pw.txt", "correct-vault-pw\n");
    let pw = p.path().join("vault-pw.txt");
    let inline = ansible::encrypt_string(&pw, "prod", "db_password", DB_PASSWORD);
    p.file(
        "hosts/group_vars/app.yml",
        &format!("db_user: app\n{inline}"),
    );
    p.file(
        "hosts/host_vars/web1/vault.yml",
        &format!("api_token: {API_TOKEN}\n"),
    );
    ansible::encrypt_file(&pw, &p.path().join("hosts/host_vars/web1/vault.yml"));
    p
}

#[test]
fn vaulted_values_render_with_the_password_masked_and_are_refused_without_it() {
    let p = vaulted_project();
    let env_file = "roots/web1/etc/app.env";

    // No password: the file, the line and the variable, and nothing is written.
    let run = p.run(&["plan"]).expect(1);
    assert!(
        run.stderr.contains("group_vars/app.yml:2"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("`db_password` is encrypted with Ansible Vault"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("--vault-password-file"),
        "{}",
        run.stderr
    );

    // A wrong password: one clear error.
    p.file("wrong-pw.txt", "not-it\n");
    let wrong = p.path().join("wrong-pw.txt");
    let wrong = wrong.to_str().expect("utf-8");
    let run = p.run(&["apply", "--yes", "--vault-password-file", wrong]);
    let run = run.expect(1);
    assert!(
        run.stderr.contains("the vault password is wrong"),
        "{}",
        run.stderr
    );
    assert!(!p.path().join(env_file).exists());

    // The right one: rendered, masked in the plan, the file 0600 since it holds secrets.
    let pw = p.path().join("vault-pw.txt");
    let pw = pw.to_str().expect("utf-8");
    let run = p
        .run(&["apply", "--yes", "--vault-password-file", pw])
        .expect(0);
    let printed = format!("{}{}", run.stdout, run.stderr);
    assert!(
        !printed.contains(DB_PASSWORD) && !printed.contains(API_TOKEN),
        "{printed}"
    );
    assert!(
        printed.contains("+DB_PASSWORD=<secret:db_password>"),
        "{printed}"
    );
    assert!(
        printed.contains("+API_TOKEN=<secret:api_token>"),
        "{printed}"
    );
    assert_eq!(
        p.host_file("web1", "/etc/app.env").as_deref(),
        Some(format!("DB_USER=app\nDB_PASSWORD={DB_PASSWORD}\nAPI_TOKEN={API_TOKEN}\n").as_str())
    );
    assert_eq!(p.host_mode("web1", "/etc/app.env"), 0o600);

    // An executable password file is run, as Ansible does; $ANSIBLE_VAULT_PASSWORD_FILE too.
    p.file("vault-pw.sh", "#!/bin/sh\necho correct-vault-pw\n");
    let script = p.path().join("vault-pw.sh");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
    let run = p
        .run_with_env(
            &["plan"],
            &[(
                "ANSIBLE_VAULT_PASSWORD_FILE",
                script.to_str().expect("utf-8"),
            )],
        )
        .expect(0);
    assert!(run.stdout.contains("no changes"), "{}", run.stdout);
}

#[test]
fn import_vault_moves_the_values_into_age_secrets_and_refuses_a_clash() {
    let p = vaulted_project();
    let (identity, public) = crate::support::age::keygen(p.path(), "identity.txt");
    p.file("secrets/recipients.txt", &format!("{public}\n"));
    let pw = p.path().join("vault-pw.txt");
    let pw = pw.to_str().expect("utf-8");
    let id = identity.to_str().expect("utf-8");
    let group_file = p.path().join("hosts/group_vars/app.yml");
    let host_file = p.path().join("hosts/host_vars/web1/vault.yml");
    let (g, h) = (
        group_file.to_str().expect("utf-8"),
        host_file.to_str().expect("utf-8"),
    );

    let run = p
        .run(&["secrets", "import-vault", g, h, "--vault-password-file", pw])
        .expect(0);
    let printed = format!("{}{}", run.stdout, run.stderr);
    assert!(
        !printed.contains(DB_PASSWORD) && !printed.contains(API_TOKEN),
        "{printed}"
    );
    assert!(printed.contains("imported db_password into"), "{printed}");
    assert!(printed.contains("imported api_token into"), "{printed}");
    // Only age files and the recipients in secrets/: no plaintext was written.
    let mut names: Vec<String> = fs::read_dir(p.path().join("secrets"))
        .expect("secrets")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["app.yml.age", "recipients.txt", "web1.yml.age"]);
    let view = p
        .run(&["secrets", "view", "app", "--identity", id])
        .expect(0);
    assert!(
        view.stdout.contains(&format!("db_password: {DB_PASSWORD}")),
        "{}",
        view.stdout
    );
    // The plain value stays in group_vars; only vaulted ones move.
    assert!(!view.stdout.contains("db_user"), "{}", view.stdout);

    // Again: every variable is there already, so nothing is touched.
    let before = fs::read(p.path().join("secrets/app.yml.age")).expect("age file");
    let run = p.run(&[
        "secrets",
        "import-vault",
        g,
        "--vault-password-file",
        pw,
        "--identity",
        id,
    ]);
    let run = run.expect(1);
    assert!(run.stderr.contains("`db_password`"), "{}", run.stderr);
    assert!(
        run.stderr.contains("nothing was imported"),
        "{}",
        run.stderr
    );
    assert_eq!(
        fs::read(p.path().join("secrets/app.yml.age")).expect("age"),
        before
    );

    // With the vault values gone from the vars files, the age secrets render the same.
    p.file("hosts/group_vars/app.yml", "db_user: app\n");
    fs::remove_file(&host_file).expect("rm vault file");
    p.run(&["apply", "--yes", "--identity", id]).expect(0);
    assert_eq!(
        p.host_file("web1", "/etc/app.env").as_deref(),
        Some(format!("DB_USER=app\nDB_PASSWORD={DB_PASSWORD}\nAPI_TOKEN={API_TOKEN}\n").as_str())
    );
}
