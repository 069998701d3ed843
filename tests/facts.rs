//! Facts (`ansible_*`, `ansible_facts`) gathered by deploy compared value for value with what
//! ansible-core's own `setup` module (PyPI, `target/ci-ansible`) reports for the same host: a
//! real OpenSSH sshd on 127.0.0.1, and the controller itself (`-c local`). Also: no facts
//! round trip for hosts that use none, `gather_facts: false`, the `ansible_date_time` note.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::ansible;
use crate::support::project::Project;
use crate::support::sshd::{self, Sshd};

/// The facts deploy offers a Unix host that must equal ansible-core's exactly: all of them
/// but `env` and `date_time` (which differ by nature between two runs and are compared on
/// what must agree) and the Windows-only `ip_addresses`.
fn exact() -> Vec<&'static str> {
    deploy::facts::NAMES
        .iter()
        .copied()
        .filter(|n| !["env", "date_time", "ip_addresses"].contains(n))
        .collect()
}

/// A template writing every fact deploy offers as one JSON object, read both as
/// `ansible_<name>` and as `ansible_facts['<name>']`.
fn facts_template() -> String {
    let mut names: Vec<&str> = exact();
    names.extend(["env", "date_time"]);
    let mut t = String::from("{\n");
    for (i, n) in names.iter().enumerate() {
        let comma = if i + 1 < names.len() { "," } else { "" };
        t.push_str(&format!(
            "\"{n}\": {{{{ ansible_{n} | to_json }}}},\n\"facts.{n}\": {{{{ ansible_facts['{n}'] | to_json }}}}{comma}\n"
        ));
    }
    t.push_str("}\n");
    t
}

/// `ansible HOST -m setup` with the inventory line `host_line`: its `ansible_facts`.
fn ansible_setup(dir: &Path, host_line: &str, extra: &[&str]) -> serde_json::Map<String, Value> {
    let inv = dir.join("ansible-inventory.ini");
    std::fs::write(&inv, format!("{host_line}\n")).expect("inventory");
    let out = Command::new(ansible::bin("ansible"))
        .arg("all")
        .arg("-i")
        .arg(&inv)
        .args(["-m", "setup", "-o"])
        .args(extra)
        .env("HOME", dir.join("home"))
        .env("ANSIBLE_LOCAL_TEMP", dir.join("ansible-local"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .expect("ansible");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ansible -m setup failed\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = stdout
        .find('{')
        .map(|at| &stdout[at..])
        .expect("a JSON answer");
    let v: Value = serde_json::from_str(json.trim()).expect("setup's JSON");
    let Some(Value::Object(facts)) = v.get("ansible_facts").cloned() else {
        panic!("no ansible_facts in {json}")
    };
    facts
}

/// Compares deploy's rendered facts with ansible's, every fact deploy offers; `env_keys`
/// are the `ansible_env` keys that must be equal (the environments differ in the rest).
fn compare(deploy: &Value, ansible: &serde_json::Map<String, Value>, env_keys: &[&str]) {
    let mut checked = 0;
    for n in exact() {
        let ours = &deploy[n];
        let theirs = ansible
            .get(&format!("ansible_{n}"))
            .unwrap_or_else(|| panic!("ansible gives no ansible_{n}"));
        assert_eq!(ours, theirs, "ansible_{n}: deploy vs ansible-core setup");
        assert_eq!(&deploy[format!("facts.{n}")], ours, "ansible_facts['{n}']");
        checked += 1;
    }
    assert_eq!(checked, exact().len());
    let env = &deploy["env"];
    let their_env = &ansible["ansible_env"];
    for k in env_keys {
        assert!(their_env.get(*k).is_some(), "ansible's env has no {k}");
        assert_eq!(env[*k], their_env[*k], "ansible_env.{k}");
    }
    // date_time: every key Ansible gives, the stable ones equal, the rest in its format.
    let ours = deploy["date_time"].as_object().expect("date_time");
    let theirs = ansible["ansible_date_time"].as_object().expect("date_time");
    let mut our_keys: Vec<&String> = ours.keys().collect();
    let mut their_keys: Vec<&String> = theirs.keys().collect();
    our_keys.sort();
    their_keys.sort();
    assert_eq!(our_keys, their_keys, "ansible_date_time's keys");
    for k in [
        "tz",
        "tz_dst",
        "tz_offset",
        "year",
        "month",
        "weekday",
        "weeknumber",
    ] {
        assert_eq!(ours[k], theirs[k], "ansible_date_time.{k}");
    }
    let epoch = |m: &serde_json::Map<String, Value>| -> i64 {
        m["epoch"]
            .as_str()
            .and_then(|e| e.parse().ok())
            .expect("epoch")
    };
    assert!(
        (epoch(ours) - epoch(theirs)).abs() < 600,
        "ansible_date_time.epoch {} vs {}",
        epoch(ours),
        epoch(theirs)
    );
    for (k, v) in ours {
        let (a, b) = (v.as_str().expect("text"), theirs[k].as_str().expect("text"));
        let shape = |s: &str| -> String {
            s.chars()
                .map(|c| if c.is_ascii_digit() { '9' } else { c })
                .collect()
        };
        if k != "weekday" && !k.starts_with("tz") {
            assert_eq!(shape(a), shape(b), "ansible_date_time.{k}: {a} vs {b}");
        }
    }
}

/// The sessions sshd started so far (`LogLevel VERBOSE`: one line per command).
fn sessions(server: &Sshd) -> usize {
    server.log().matches("Starting session: command").count()
}

/// `deploy plan --json` of the one host: its JSON text and the requests the plan made of it
/// (facts, read), once sshd's log showed they went over one channel.
fn plan_trips(p: &Project, server: &Sshd) -> (String, u64) {
    let before = sessions(server);
    let run = p.run(&["plan", "--json"]).expect(0);
    assert_eq!(sessions(server) - before, 1, "{}", server.log());
    let doc: Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}\n{}", run.stdout));
    let trips = doc["hosts"][0]["round_trips"]
        .as_u64()
        .unwrap_or_else(|| panic!("no round_trips: {doc}"));
    (run.stdout, trips)
}

fn ssh_project(server: &Sshd, manifest: &str) -> Project {
    let p = Project::new();
    p.inventory(&format!(
        "all:\n  hosts:\n    box:\n      ansible_host: 127.0.0.1\n      ansible_port: {}\n      ansible_user: {}\n      ansible_ssh_private_key_file: {}\n      root: {}\n      deploy_state_path: \"{{{{ root }}}}/state.json\"\n",
        server.port(),
        server.login(),
        server.client_key().display(),
        p.path().join("box").display(),
    ))
    .manifest(manifest)
    .trust(server);
    p
}

const FACTS_MANIFEST: &str = r#"
groups:
  all:
    files:
      - template: facts.json.j2
        dest: "{{ root }}/facts.json"
"#;

#[test]
fn ssh_facts_equal_ansible_setup_on_the_same_sshd_host() {
    let server = Sshd::start();
    let p = ssh_project(&server, FACTS_MANIFEST);
    p.template("facts.json.j2", &facts_template());
    let before = sessions(&server);
    let run = p.run(&["apply", "--yes"]).expect(0);
    // The facts, then the read, the lock, the write: one channel.
    assert_eq!(sessions(&server) - before, 1, "{}", server.log());
    assert!(
        run.stdout
            .contains("templates/facts.json.j2 uses ansible_date_time"),
        "the plan notes the file that differs on every run:\n{}",
        run.stdout
    );
    let text = std::fs::read_to_string(p.path().join("box/facts.json")).expect("facts.json");
    let deploy: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));

    let dir = tempfile::tempdir().expect("temp");
    std::fs::create_dir_all(dir.path().join("home")).expect("home");
    let known = server.known_hosts();
    let line = format!(
        "box ansible_host=127.0.0.1 ansible_port={} ansible_user={} ansible_ssh_private_key_file={} ansible_python_interpreter=/usr/bin/python3 ansible_ssh_common_args='-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes'",
        server.port(),
        server.login(),
        server.client_key().display(),
        known.display()
    );
    let theirs = ansible_setup(dir.path(), &line, &[]);
    compare(
        &deploy,
        &theirs,
        &["HOME", "USER", "LOGNAME", "PATH", "SHELL"],
    );
}

#[test]
fn local_facts_equal_ansible_setup_with_the_local_connection() {
    let p = Project::new();
    p.inventory("all:\n  hosts:\n    here:\n      ansible_connection: local\n      deploy_root: roots/here\n")
        .manifest("groups:\n  all:\n    files:\n      - template: facts.json.j2\n        dest: /facts.json\n")
        .template("facts.json.j2", &facts_template());
    p.run(&["apply", "--yes"]).expect(0);
    let text = p.host_file("here", "facts.json").expect("facts.json");
    let deploy: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let theirs = ansible_setup(
        p.path(),
        "localhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3",
        &[],
    );
    compare(&deploy, &theirs, &["HOME", "PATH"]);
}

#[test]
fn a_host_whose_templates_use_no_facts_gets_no_facts_command() {
    let server = Sshd::start();
    let p = ssh_project(&server, FACTS_MANIFEST);
    p.template(
        "facts.json.j2",
        "{{ inventory_hostname }} {{ ansible_managed | default('x') }} {{ ansible_host }}\n",
    );
    let run = p.run(&["plan"]).expect(0);
    assert!(!run.stdout.contains("note:"), "{}", run.stdout);
    let (json, trips) = plan_trips(&p, &server);
    assert_eq!(
        trips, 1,
        "plan without facts is one request (the read):\n{json}"
    );

    // The same host, its template using one fact: one more command, the facts.
    p.template("facts.json.j2", "{{ ansible_hostname }}\n");
    let (json, trips) = plan_trips(&p, &server);
    assert_eq!(trips, 2, "{json}");
    let hostname = String::from_utf8(
        Command::new("uname")
            .arg("-n")
            .output()
            .expect("uname")
            .stdout,
    )
    .expect("utf-8");
    let short = hostname
        .trim()
        .split('.')
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(json.contains(&format!("+{short}")), "{json}");

    // A variable that templates to a fact counts too.
    p.file(
        "hosts/group_vars/all.yml",
        "where: \"{{ ansible_nodename }}\"\n",
    );
    p.template("facts.json.j2", "{{ where }}\n");
    let (json, trips) = plan_trips(&p, &server);
    assert_eq!(trips, 2, "{json}");
    assert!(json.contains(&format!("+{}", hostname.trim())), "{json}");
}

#[test]
fn gather_facts_false_turns_them_off_and_the_error_says_so() {
    let server = Sshd::start();
    let p = ssh_project(
        &server,
        r#"
groups:
  all:
    gather_facts: false
    files:
      - template: motd.j2
        dest: "{{ root }}/motd"
"#,
    );
    p.template(
        "motd.j2",
        "welcome\n{{ ansible_distribution }} on {{ inventory_hostname }}\n",
    );
    let before = sessions(&server);
    let run = p.run(&["plan"]).expect(1);
    assert_eq!(
        sessions(&server),
        before,
        "no host contacted:\n{}",
        server.log()
    );
    let err = p.filter(&run.stderr);
    assert!(err.contains("motd.j2"), "{err}");
    assert!(err.contains("motd.j2:2"), "{err}");
    assert!(err.contains("ansible_distribution"), "{err}");
    assert!(
        err.contains(
            "facts are off for this host (gather_facts: false in group `all` of deploy.yml)"
        ),
        "{err}"
    );

    // gather_facts: true asks for them even when nothing refers to them.
    p.manifest(
        "groups:\n  all:\n    gather_facts: true\n    files:\n      - template: motd.j2\n        dest: \"{{ root }}/motd\"\n",
    );
    p.template("motd.j2", "welcome\n");
    let (json, trips) = plan_trips(&p, &server);
    assert_eq!(trips, 2, "{json}");
}

#[test]
fn deploy_check_contacts_no_host_and_says_facts_are_not_gathered() {
    let server = Sshd::start();
    let p = ssh_project(&server, FACTS_MANIFEST);
    p.template("facts.json.j2", "{{ ansible_hostname }}\n");
    let before = sessions(&server);
    let run = p.run(&["check"]).expect(1);
    assert_eq!(sessions(&server), before);
    assert!(
        run.stderr
            .contains("templates/facts.json.j2 uses facts, which this command does not gather"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_unreachable_host_fails_alone_before_anything_is_written() {
    let server = Sshd::start();
    let p = ssh_project(&server, FACTS_MANIFEST);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    p.inventory(&format!(
        "all:\n  vars:\n    ansible_host: 127.0.0.1\n    ansible_user: {user}\n    ansible_ssh_private_key_file: {key}\n  hosts:\n    box:\n      ansible_port: {ok}\n      root: {root}/box\n    gone:\n      ansible_port: {port}\n      root: {root}/gone\n",
        user = server.login(),
        key = server.client_key().display(),
        ok = server.port(),
        root = p.path().display(),
    ));
    p.template("facts.json.j2", "{{ ansible_kernel }}\n");
    let run = p.run(&["apply", "--yes"]).expect(1);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(out.contains("gone"), "{out}");
    assert!(out.contains("gathering facts"), "{out}");
    assert!(!p.path().join("gone/facts.json").exists());
    let kernel = String::from_utf8(
        Command::new("uname")
            .arg("-r")
            .output()
            .expect("uname")
            .stdout,
    )
    .expect("utf-8");
    assert_eq!(
        std::fs::read_to_string(p.path().join("box/facts.json")).expect("box written"),
        kernel
    );
    let _ = sshd::current_user();
}

/// A Windows host (the WinRM stand-in, which answers deploy's facts script with the values a
/// Windows 11 host gives; no PowerShell runs here, the script itself is parsed by
/// tests/powershell.rs): a template using Windows facts renders in the plan, and the
/// connection the facts came through serves the read (one shell).
#[test]
fn winrm_plan_renders_a_template_using_windows_facts() {
    use crate::support::winrm_standin::StandIn;
    let p = Project::new();
    let c_drive = p.path().join("c");
    std::fs::create_dir_all(&c_drive).expect("c");
    let server = StandIn::start(&c_drive, "deployer", "Winrm-Pa55", 8);
    p.inventory(&format!(
        "all:\n  hosts:\n    wintermute:\n      ansible_connection: winrm\n      ansible_winrm_scheme: http\n      ansible_host: 127.0.0.1\n      ansible_port: {}\n      ansible_user: deployer\n      ansible_password: Winrm-Pa55\n",
        server.port()
    ))
    .manifest("groups:\n  all:\n    files:\n      - template: host.txt.j2\n        dest: 'C:\\host.txt'\n")
    .template(
        "host.txt.j2",
        "{{ ansible_hostname }} {{ ansible_facts['os_family'] }} {{ ansible_distribution }} {{ ansible_distribution_major_version }}\n\
         cores={{ ansible_processor_cores }} vcpus={{ ansible_processor_vcpus }} mem={{ ansible_memtotal_mb }}\n\
         ip={{ ansible_ip_addresses | first }} user={{ ansible_user_id }} fqdn={{ ansible_fqdn }}\n",
    );
    let run = p.run(&["plan"]).expect(0);
    assert!(
        run.stdout
            .contains("+WINTERMUTE Windows Microsoft Windows 11 Pro 10"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("+cores=8 vcpus=16 mem=32768"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("+ip=10.0.0.7 user=mdt fqdn=WINTERMUTE.lab.example"),
        "{}",
        run.stdout
    );
    let (calls, shells) = server.record(|r| {
        (
            r.facts_calls,
            r.actions.iter().filter(|a| a.as_str() == "Create").count(),
        )
    });
    assert_eq!(
        (calls, shells),
        (1, 1),
        "one facts script, one shell for facts and read"
    );
}

/// With become on, the facts command runs under sudo like every script of the session: the
/// user facts are the become user's, as ansible-core's `setup -b` reports them (compared
/// with it, logged in as a non-root user of this machine, with and without become).
#[test]
fn with_become_the_facts_are_the_become_users_as_ansible_setup_b_reports() {
    use crate::support::users;
    let login = users::user(
        "dpl-facts",
        None,
        Some("dpl-facts ALL=(ALL) NOPASSWD: ALL\n"),
    );
    let server = Sshd::builder().login_user(&login).start();
    let p = ssh_project(&server, FACTS_MANIFEST);
    p.template(
        "facts.json.j2",
        "{{ {'user_id': ansible_user_id, 'user_uid': ansible_user_uid, 'user_gid': ansible_user_gid, 'home': ansible_env.HOME} | to_json }}\n",
    );
    let dir = tempfile::tempdir().expect("temp");
    std::fs::create_dir_all(dir.path().join("home")).expect("home");
    let line = format!(
        "box ansible_host=127.0.0.1 ansible_port={} ansible_user={login} ansible_ssh_private_key_file={} ansible_python_interpreter=/usr/bin/python3 ansible_remote_tmp=/tmp/.ansible-dpl-facts ansible_ssh_common_args='-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes'",
        server.port(),
        server.client_key().display(),
        server.known_hosts().display()
    );
    for become_flag in [None, Some("-b")] {
        let mut args = vec!["plan"];
        args.extend(become_flag);
        let run = p.run(&args).expect(0);
        let json = run
            .stdout
            .lines()
            .find_map(|l| l.trim_start().strip_prefix("+{"))
            .map(|rest| format!("{{{rest}"))
            .unwrap_or_else(|| panic!("no rendered line:\n{}", run.stdout));
        let ours: Value = serde_json::from_str(&json).expect("json");
        let theirs = ansible_setup(dir.path(), &line, &become_flag.map_or(vec![], |b| vec![b]));
        for k in ["user_id", "user_uid", "user_gid"] {
            assert_eq!(
                ours[k],
                theirs[&format!("ansible_{k}")],
                "{k} ({become_flag:?})"
            );
        }
        assert_eq!(
            ours["home"], theirs["ansible_env"]["HOME"],
            "HOME ({become_flag:?})"
        );
        let expected = if become_flag.is_some() {
            "root"
        } else {
            login.as_str()
        };
        assert_eq!(ours["user_id"], expected);
    }
}

/// `hostvars[other].ansible_...` in one host's template: every selected host is asked, so
/// the other host's facts are there (as in an Ansible play over both).
#[test]
fn facts_read_through_hostvars_are_gathered_for_the_other_host_too() {
    let p = Project::new();
    p.inventory("all:\n  vars:\n    ansible_connection: local\n  children:\n    web:\n      hosts:\n        web:\n          deploy_root: roots/web\n    db:\n      hosts:\n        db:\n          deploy_root: roots/db\n")
        .manifest("groups:\n  all:\n    files:\n      - template: peer.j2\n        dest: /peer\n  web:\n    files:\n      - template: web.j2\n        dest: /web\n")
        .template("peer.j2", "static\n")
        .template("web.j2", "db runs {{ hostvars['db'].ansible_system }} / {{ hostvars['db']['ansible_facts']['machine'] }}\n");
    let run = p.run(&["plan"]).expect(0);
    let machine = String::from_utf8(
        Command::new("uname")
            .arg("-m")
            .output()
            .expect("uname")
            .stdout,
    )
    .expect("utf-8");
    assert!(
        run.stdout
            .contains(&format!("+db runs Linux / {}", machine.trim())),
        "{}",
        run.stdout
    );
}
