//! plan and apply end to end on stand-in hosts (local connection, each host a folder).

use std::os::unix::fs::MetadataExt;

use crate::support::project::Project;

/// Two web hosts and a db host, each a folder under roots/.
fn fleet() -> Project {
    let p = Project::new();
    p.inventory(
        r#"
all:
  vars:
    ansible_connection: local
    app_port: 8080
  children:
    web:
      hosts:
        alpha:
          deploy_root: roots/alpha
        beta:
          deploy_root: roots/beta
    db:
      hosts:
        gamma:
          deploy_root: roots/gamma
"#,
    )
    .file("hosts/group_vars/web.yml", "app_name: shop\nworkers: 4\n")
    .file("hosts/host_vars/beta.yml", "workers: 8\n")
    .manifest(
        r#"
groups:
  all:
    files:
      - template: motd.j2
        dest: /etc/motd
  web:
    files:
      - template: app.conf.j2
        dest: "/etc/{{ app_name }}/app.conf"
        mode: "0640"
        notify: restart app
      - template: env.j2
        dest: "/etc/{{ app_name }}/env"
        notify: [reload units, restart app]
    handlers:
      - name: reload units
        run: echo "reload units" >> "$DEPLOY_ROOT/handlers.log"
      - name: restart app
        run: echo "restart {{ app_name }}" >> "$DEPLOY_ROOT/handlers.log"
"#,
    )
    .template("motd.j2", "Welcome to {{ inventory_hostname }} ({{ group_names | join(', ') }})\n")
    .template(
        "app.conf.j2",
        "[server]\nname = {{ app_name }}\nport = {{ app_port }}\nworkers = {{ workers }}\n{% if workers > 4 %}\nmode = big\n{% endif %}\n",
    )
    .template("env.j2", "APP={{ app_name }}\n");
    p
}

fn handler_log(p: &Project, host: &str) -> String {
    p.host_file(host, "/handlers.log").unwrap_or_default()
}

#[test]
fn first_apply_creates_everything_and_runs_each_handler_once() {
    let p = fleet();
    let run = p.run(&["apply", "--yes"]).expect(0);
    assert!(
        run.stdout.contains("Plan: 7 to create, 0 to change"),
        "{}",
        run.stdout
    );
    assert_eq!(
        p.host_file("beta", "/etc/shop/app.conf").as_deref(),
        Some("[server]\nname = shop\nport = 8080\nworkers = 8\nmode = big\n")
    );
    assert_eq!(
        p.host_file("gamma", "/etc/motd").as_deref(),
        Some("Welcome to gamma (db)\n")
    );
    assert_eq!(p.host_file("gamma", "/etc/shop/app.conf"), None);
    assert_eq!(p.host_mode("alpha", "/etc/shop/app.conf"), 0o640);
    assert_eq!(p.host_mode("alpha", "/etc/shop/env"), 0o644);
    // Both handlers once, in declared order (not notify order), on each web host.
    for host in ["alpha", "beta"] {
        assert_eq!(
            handler_log(&p, host),
            "reload units\nrestart shop\n",
            "{host}"
        );
    }
    assert_eq!(handler_log(&p, "gamma"), "");
}

#[test]
fn second_apply_changes_nothing_and_runs_no_handler() {
    let p = fleet();
    p.run(&["apply", "--yes"]).expect(0);
    let inode = |h: &str| {
        std::fs::metadata(p.host_root(h).join("etc/shop/app.conf"))
            .unwrap()
            .ino()
    };
    let before = inode("alpha");
    let run = p.run(&["apply", "--yes"]).expect(0);
    assert!(
        run.stdout.contains("alpha: no changes (3 files)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("Plan: 0 to create, 0 to change, 7 unchanged"),
        "{}",
        run.stdout
    );
    assert_eq!(
        inode("alpha"),
        before,
        "an unchanged file must not be rewritten"
    );
    assert_eq!(handler_log(&p, "alpha"), "reload units\nrestart shop\n");
}

#[test]
fn one_variable_change_shows_one_diff_and_restarts_only_that_host() {
    let p = fleet();
    p.run(&["apply", "--yes"]).expect(0);
    p.file("hosts/host_vars/beta.yml", "workers: 16\n");
    let plan = p.run(&["plan", "--detailed-exitcode"]).expect(2);
    insta::assert_snapshot!(p.filter(&plan.stdout), @r#"
    alpha: no changes (3 files)

    beta
      ~ /etc/shop/app.conf
          --- /etc/shop/app.conf
          +++ /etc/shop/app.conf
          @@ -1,5 +1,5 @@
           [server]
           name = shop
           port = 8080
          -workers = 8
          +workers = 16
           mode = big
      = 2 unchanged
      handler restart app: echo "restart shop" >> "$DEPLOY_ROOT/handlers.log"

    gamma: no changes (1 file)

    Plan: 0 to create, 1 to change, 6 unchanged on 3 hosts; 1 handler to run.
    "#);
    p.run(&["apply", "--yes"]).expect(0);
    assert_eq!(handler_log(&p, "alpha"), "reload units\nrestart shop\n");
    assert_eq!(
        handler_log(&p, "beta"),
        "reload units\nrestart shop\nrestart shop\n"
    );
    p.run(&["plan", "--detailed-exitcode"]).expect(0);
}

#[test]
fn host_and_group_limit_the_run() {
    let p = fleet();
    p.run(&["apply", "--yes", "--host", "alpha"]).expect(0);
    assert!(p.host_file("alpha", "/etc/motd").is_some());
    assert!(!p.host_root("beta").exists());
    assert!(!p.host_root("gamma").exists());
    let run = p.run(&["plan", "--group", "db"]).expect(0);
    assert!(run.stdout.contains("gamma"), "{}", run.stdout);
    assert!(!run.stdout.contains("beta"), "{}", run.stdout);
}

#[test]
fn mode_is_enforced_and_files_are_replaced_not_rewritten() {
    let p = fleet();
    p.run(&["apply", "--yes", "--host", "alpha"]).expect(0);
    let conf = p.host_root("alpha").join("etc/shop/app.conf");
    let env = p.host_root("alpha").join("etc/shop/env");
    std::fs::set_permissions(&conf, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    std::fs::set_permissions(&env, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::write(&conf, "edited by hand\n").unwrap();
    let before = std::fs::metadata(&conf).unwrap().ino();
    let run = p.run(&["apply", "--yes", "--host", "alpha"]).expect(0);
    assert!(
        run.stdout
            .contains("~ /etc/shop/app.conf (mode 0666 -> 0640)"),
        "{}",
        run.stdout
    );
    assert_eq!(p.host_mode("alpha", "/etc/shop/app.conf"), 0o640);
    // No mode given: the existing file's mode is kept.
    assert_eq!(p.host_mode("alpha", "/etc/shop/env"), 0o600);
    assert_ne!(
        std::fs::metadata(&conf).unwrap().ino(),
        before,
        "replaced by rename"
    );
    let leftovers: Vec<_> = std::fs::read_dir(conf.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn undefined_variable_fails_before_any_host_is_touched() {
    let p = fleet();
    p.file("hosts/host_vars/gamma.yml", "");
    p.template("motd.j2", "Welcome\n{{ missing_var }}\n");
    let run = p.run(&["apply", "--yes"]).expect(1);
    assert!(run.stderr.contains("missing_var"), "{}", run.stderr);
    assert!(run.stderr.contains("motd.j2"), "{}", run.stderr);
    assert!(run.stderr.contains("alpha"), "{}", run.stderr);
    assert!(!p.path().join("roots").exists(), "no host may be touched");
}

#[test]
fn apply_refuses_without_yes_when_stdin_is_not_a_terminal() {
    let p = fleet();
    let run = p.run(&["apply"]).expect(1);
    assert!(run.stderr.contains("pass --yes"), "{}", run.stderr);
    assert!(!p.path().join("roots").exists());
}

#[test]
fn a_failing_handler_fails_its_host_only() {
    let p = fleet();
    p.file("hosts/host_vars/alpha.yml", "app_name: broken\n");
    p.manifest(
        r#"
groups:
  web:
    files:
      - template: env.j2
        dest: "/etc/{{ app_name }}/env"
        notify: restart app
    handlers:
      - name: restart app
        run: "{% if app_name == 'broken' %}echo cannot restart >&2; exit 3{% else %}echo ok >> \"$DEPLOY_ROOT/handlers.log\"{% endif %}"
"#,
    );
    let run = p.run(&["apply", "--yes"]).expect(1);
    assert!(
        run.stdout
            .contains("failed alpha: handler `restart app` failed with status 3: cannot restart"),
        "{}",
        run.stdout
    );
    assert_eq!(
        p.host_file("beta", "/etc/shop/env").as_deref(),
        Some("APP=shop\n")
    );
    assert_eq!(handler_log(&p, "beta"), "ok\n");
}

#[test]
fn json_plan_is_one_document() {
    let p = fleet();
    let run = p.run(&["plan", "--json"]).expect(0);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(doc["summary"]["create"], 7);
    assert_eq!(doc["hosts"][0]["host"], "alpha");
    assert_eq!(doc["hosts"][0]["files"][1]["path"], "/etc/shop/app.conf");
    assert_eq!(doc["hosts"][0]["files"][1]["action"], "create");
    assert_eq!(doc["hosts"][0]["handlers"][1]["name"], "restart app");
}
