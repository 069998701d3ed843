//! Lookups through the deploy binary: read from the repository (`files/`, `templates/`),
//! secrets a `template` lookup renders stay masked, and `pipe` runs only when deploy.yml
//! allows it.

use crate::support::age;
use crate::support::project::Project;

const API_KEY: &str = "sk-live-lookup-5a4b3c2d1e";

fn project(settings: &str) -> (Project, std::path::PathBuf) {
    let p = Project::new();
    let (identity, public) = age::keygen(p.path(), "identity.txt");
    p.file("secrets/recipients.txt", &format!("{public}\n"));
    age::encrypt(
        &p.path().join("secrets/recipients.txt"),
        &format!("api_key: {API_KEY}\n"),
        &p.path().join("secrets/web.yml.age"),
    );
    p.inventory(
        "all:\n  vars:\n    ansible_connection: local\n  children:\n    web:\n      hosts:\n        alpha: {deploy_root: roots/alpha}\n",
    )
    .manifest(&format!(
        "{settings}groups:\n  web:\n    files:\n      - template: app.conf.j2\n        dest: /etc/app.conf\n"
    ))
    .file("files/motd.txt", "Welcome to the fleet\n")
    .template("secret.part.j2", "key = {{ api_key }}\n")
    .template(
        "app.conf.j2",
        "motd: {{ lookup('file', 'motd.txt') }}\n{{ lookup('template', 'secret.part.j2') }}host: {{ inventory_hostname }}\n",
    );
    (p, identity)
}

#[test]
fn lookups_read_the_repo_and_keep_secrets_masked() {
    let (p, identity) = project("");
    let id = identity.to_str().expect("utf-8 path");
    let plan = p.run(&["plan", "--identity", id]).expect(0);
    assert!(
        plan.stdout.contains("+motd: Welcome to the fleet"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("+key = <secret:api_key>"),
        "{}",
        plan.stdout
    );
    assert!(!plan.stdout.contains(API_KEY), "{}", plan.stdout);
    assert!(!plan.stderr.contains(API_KEY), "{}", plan.stderr);
    let apply = p.run(&["apply", "--yes", "--identity", id]).expect(0);
    assert!(!apply.stdout.contains(API_KEY), "{}", apply.stdout);
    assert_eq!(
        p.host_file("alpha", "/etc/app.conf").as_deref(),
        Some(format!("motd: Welcome to the fleet\nkey = {API_KEY}\nhost: alpha\n").as_str())
    );
    assert_eq!(p.host_mode("alpha", "/etc/app.conf"), 0o600);
}

#[test]
fn pipe_runs_only_when_deploy_yml_allows_it() {
    let (p, identity) = project("");
    let id = identity.to_str().expect("utf-8 path");
    p.template(
        "app.conf.j2",
        "rev: {{ lookup('pipe', 'cat files/motd.txt') }}\n",
    );
    let refused = p.run(&["plan", "--identity", id]).expect(1);
    let text = refused.stdout + &refused.stderr;
    assert!(
        text.contains("app.conf.j2:1") && text.contains("allow_command_lookups"),
        "{text}"
    );
    let (p, identity) = project("settings:\n  allow_command_lookups: true\n");
    let id = identity.to_str().expect("utf-8 path");
    p.template(
        "app.conf.j2",
        "rev: {{ lookup('pipe', 'cat files/motd.txt') }}\n",
    );
    let plan = p.run(&["plan", "--identity", id]).expect(0);
    assert!(
        plan.stdout.contains("+rev: Welcome to the fleet"),
        "{}",
        plan.stdout
    );
    p.manifest("settings:\n  allow_comand_lookups: true\ngroups: {}\n");
    let typo = p.run(&["plan", "--identity", id]).expect(1);
    let text = typo.stdout + &typo.stderr;
    assert!(text.contains("allow_comand_lookups"), "{text}");
}

#[test]
fn lookups_do_not_read_secret_files_or_identities() {
    let (p, identity) = project("");
    let id = identity.to_str().expect("utf-8 path");
    for (needle, why) in [
        ("secrets/web.yml.age", "under secrets/"),
        ("identity.txt", "age identity"),
    ] {
        p.template(
            "app.conf.j2",
            &format!("x: {{{{ lookup('file', '{needle}') }}}}\n"),
        );
        let run = p.run(&["plan", "--identity", id]).expect(1);
        let text = run.stdout + &run.stderr;
        assert!(text.contains(why), "{needle}: {text}");
        assert!(!text.contains("AGE-SECRET-KEY"), "{text}");
    }
}
