//! Inventories and host patterns as Ansible reads them, checked against real ansible-core
//! (`target/ci-ansible`): an INI inventory, a YAML one and a folder holding both give the
//! same groups, hosts and variables as `ansible-inventory -i INV --list`, and `--limit
//! PATTERN` selects the hosts `ansible -i INV all --list-hosts -l PATTERN` selects. Then the
//! seeds' command lines (`-i inventories/hosts.ini`, `-i inventory/hosts.yml`, `--limit`)
//! run end to end on local hosts.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use deploy::inventory::{Inventory, Sources, Vars};
use serde_json::{Map, Value, json};

use crate::support::ansible;
use crate::support::project::Project;

/// Comments of both kinds, ranges, a port, `:children` before and after the groups they
/// name, `:vars` sections, and inline host vars of every type Ansible's INI reading gives.
const INI: &str = r#"# The fleet as an INI inventory.
; a comment in the other style
bastion ansible_host=192.0.2.10 ansible_port=2222

[web]
web[01:04] http_port=8080 tier=frontend
web-canary:2201 canary=True weight=0.25 tags="['blue', 'green']" limits="{'cpu': 2, 'mem': '4g'}"

[web:vars]
proxy = nginx
workers = 4
debug = False
motd = "hello, world"
path = /srv/www # for Python this is no comment
empty =

[db]
db-[a:c] role=replica
db-a role=primary # the later line wins

[db:vars]
port=5432

[prod:children]
web
db

[staging]
stage[1:2] ansible_user=deploy

[staging:vars]
joined = 'it' "s"
nothing = None

[monitoring:children]
prod

[monitoring]
mon1 plain=hello spaced="two words" hex=0x1F octal=0777 sci=1e3 neg=-5 tup="(1, 'two')" nested="[{'k': None}]" lower=true quoted="'80'" bare='80'

[dc:children]
east
west

[east]
e[1:2]
web01

[west]
w[a:b]

[all:vars]
ntp = pool.ntp.org
retries = 3
"#;

/// The same shape in YAML: ranges and a port in host keys, a `hosts:` written as a string,
/// top-level groups besides `all`.
const YAML: &str = r#"# The fleet as a YAML inventory.
all:
  vars:
    ntp: pool.ntp.org
  hosts:
    bastion:
      ansible_port: 2222
  children:
    prod:
      children:
        web:
          hosts:
            web[01:04]:
              http_port: 8080
            "web-canary:2201":
              canary: true
          vars:
            workers: 4
        db:
          hosts:
            db-[a:c]:
              role: replica
    monitoring:
      hosts:
        mon1:
      children:
        prod:
staging:
  hosts:
    stage[1:2]:
dc:
  children:
    east:
      hosts:
        e[1:2]:
        web01:
    west:
      hosts: w[a:b]
"#;

/// A second file of the folder inventory: adds hosts to groups of the YAML file, overrides
/// one of its group vars, adds a child group to one of its groups.
const MORE_INI: &str = "[web]\nweb05 http_port=8081\nweb01 extra=1\n\n[db:vars]\nport = 5433\n\n[cache]\nredis[1:2]\n\n[prod:children]\ncache\n";

/// Writes the three inventories (each with group_vars/ and host_vars/ beside it, as Ansible
/// reads them) and returns their paths: the INI file, the YAML file, the folder.
fn inventories(p: &Project) -> [PathBuf; 3] {
    p.file("ini/hosts.ini", INI)
        .file("ini/group_vars/web.yml", "workers: 8\n")
        .file("ini/group_vars/all.yml", "retries: 5\n")
        .file("ini/host_vars/web01.yml", "http_port: 9090\n")
        .file("yaml/hosts.yml", YAML)
        .file("yaml/group_vars/db.yml", "backup: true\n")
        .file("mixed/10-base.yml", YAML)
        .file("mixed/20-more.ini", MORE_INI)
        .file(
            "mixed/sub/30-edge.yml",
            "all:\n  children:\n    edge:\n      hosts:\n        edge1:\n",
        )
        // Ansible skips these; read as INI, either would be an error.
        .file("mixed/notes.md", "not an inventory\n")
        .file("mixed/.hidden.ini", "not an inventory\n")
        .file("mixed/group_vars/web.yml", "workers: 16\n")
        .file("mixed/host_vars/web05.yml", "http_port: 9000\n");
    ["ini/hosts.ini", "yaml/hosts.yml", "mixed"].map(|rel| p.path().join(rel))
}

fn load(path: &Path) -> Inventory {
    let sources = Sources::paths(&[path.to_path_buf()]).expect("sources");
    Inventory::load_sources(&sources, &Vars::new()).expect("inventory")
}

/// deploy's inventory printed as `ansible-inventory --list` prints one: from `all`, each
/// group's direct hosts (not for `all`) and children, empty ones left out.
fn as_ansible_lists(inv: &Inventory) -> Map<String, Value> {
    fn group(
        inv: &Inventory,
        name: &str,
        out: &mut Map<String, Value>,
        seen: &mut BTreeSet<String>,
    ) {
        let g = &inv.groups[name];
        let mut entry = Map::new();
        if name != "all" && !g.hosts.is_empty() {
            entry.insert("hosts".into(), json!(g.hosts));
        }
        if !g.children.is_empty() {
            entry.insert("children".into(), json!(g.children));
        }
        for child in &g.children {
            if seen.insert(child.clone()) {
                group(inv, child, out, seen);
            }
        }
        if !entry.is_empty() {
            out.insert(name.to_string(), Value::Object(entry));
        }
    }
    let mut out = Map::new();
    group(inv, "all", &mut out, &mut BTreeSet::new());
    out
}

#[test]
fn ini_yaml_and_folder_inventories_read_as_ansible_inventory_lists_them() {
    let p = Project::new();
    for path in inventories(&p) {
        let want = ansible::inventory_list(&path);
        let inv = load(&path);
        let mut groups = want.as_object().expect("a mapping").clone();
        let meta = groups.remove("_meta").expect("_meta");
        assert_eq!(
            Value::Object(as_ansible_lists(&inv)),
            Value::Object(groups),
            "{}: groups, their hosts and children",
            path.display()
        );
        let hostvars = meta["hostvars"].as_object().expect("hostvars");
        let names: Vec<&String> = inv.hosts.keys().collect();
        assert!(names.len() >= 15, "{names:?}");
        for (name, host) in &inv.hosts {
            let want = hostvars.get(name).cloned().unwrap_or(json!({}));
            assert_eq!(
                Value::Object(host.vars.clone()),
                want,
                "{}: the vars of {name}",
                path.display()
            );
        }
        assert!(
            hostvars.keys().all(|h| inv.hosts.contains_key(h)),
            "{}: hosts only Ansible has: {:?}",
            path.display(),
            hostvars.keys().collect::<Vec<_>>()
        );
    }
    // What the comparison covered, spelled out for the INI file: typed inline vars, string
    // and typed :vars, and group_vars/ and host_vars/ beside the file over both.
    let ini = load(&p.path().join("ini/hosts.ini"));
    let vars = |h: &str| Value::Object(ini.hosts[h].vars.clone());
    assert_eq!(vars("web01")["http_port"], json!(9090));
    assert_eq!(vars("web02")["http_port"], json!(8080));
    assert_eq!(vars("web02")["workers"], json!(8));
    assert_eq!(vars("web02")["debug"], json!(false));
    assert_eq!(vars("web02")["motd"], json!("hello, world"));
    assert_eq!(vars("web02")["empty"], json!(""));
    assert_eq!(vars("web-canary")["ansible_port"], json!(2201));
    assert_eq!(vars("web-canary")["limits"], json!({"cpu": 2, "mem": "4g"}));
    assert_eq!(vars("db-a")["role"], json!("primary"));
    assert_eq!(vars("stage1")["joined"], json!("its"));
    assert_eq!(vars("mon1")["lower"], json!("true"));
    assert_eq!(vars("mon1")["octal"], json!("0777"));
    assert_eq!(vars("mon1")["quoted"], json!("80"));
    assert_eq!(vars("mon1")["bare"], json!(80));
    assert_eq!(vars("bastion")["retries"], json!(5));
}

/// Patterns of every kind Ansible's `--limit` knows, with its quirks: `[2:0]` is `[2]`,
/// `host:22` is one pattern, an out-of-range index is an error, `&`/`!` apply after the
/// plain patterns whatever their place.
const PATTERNS: &[&str] = &[
    "all",
    "*",
    "web",
    "web:db",
    "web,db",
    " web , db ",
    "prod:&db",
    "prod:!db",
    "!db-b:prod:&db",
    "!web",
    "&web",
    "!web:!db",
    "web*",
    "db-?",
    "*-canary",
    "[wd]*",
    "web0[!1]",
    "db-[a-b]",
    "~web0[1-3]",
    "~(db|stage)",
    "~eb",
    "~.*[0-9]$",
    "web[0]",
    "web[-1]",
    "web[1:3]",
    "web[2:]",
    "web[1-2]",
    "web[0:0]",
    "web[3:1]",
    "web[9]",
    "prod[0]",
    "prod[1:2]",
    "monitoring[0:2]",
    "all[0]",
    "all[1:2]",
    "bastion:2222",
    "nosuch",
    "nosuch:web",
    "web01,nosuch",
    "monitoring:!prod",
    "stage*:bastion",
    "ungrouped",
    "all:!ungrouped",
    "dc:&web",
    "east:west:&dc",
    "web01",
    "web01:web01",
    "cache:edge",
];

fn deploy_hosts(p: &Project, inventory: &Path, args: &[&str]) -> Result<BTreeSet<String>, String> {
    let inventory = inventory.display().to_string();
    let mut all = vec!["-i", inventory.as_str(), "check", "--list-hosts"];
    all.extend(args);
    let run = p.run(&all);
    match run.code {
        0 => Ok(run.stdout.lines().map(str::to_string).collect()),
        _ => Err(run.stderr),
    }
}

#[test]
fn limit_selects_the_hosts_ansible_selects() {
    let p = Project::new();
    let invs = inventories(&p);
    p.file("limit.txt", "web\n\n  !web02  \n&prod\nstage1\n");
    let at_file = format!("@{}", p.path().join("limit.txt").display());
    let mut limits: Vec<String> = PATTERNS.iter().map(|s| s.to_string()).collect();
    limits.push(at_file);
    let cases: Vec<(PathBuf, String)> = invs
        .iter()
        .flat_map(|inv| limits.iter().map(move |l| (inv.clone(), l.clone())))
        .collect();
    let answers = ansible::limit_hosts(&cases);
    let mut compared = 0;
    for ((inv, limit), want) in cases.iter().zip(answers) {
        let got = deploy_hosts(&p, inv, &["-l", limit]);
        match (&want, &got) {
            (Ok(want), Ok(got)) => {
                let want: BTreeSet<String> = want.iter().cloned().collect();
                assert_eq!(got, &want, "{}: -l '{limit}'", inv.display());
                compared += 1;
            }
            (Err(_), Err(err)) => assert!(err.contains("--limit"), "{err}"),
            _ => panic!(
                "{}: -l '{limit}': Ansible {want:?}, deploy {got:?}",
                inv.display()
            ),
        }
    }
    assert!(compared > 100, "{compared} host sets compared");

    // The pattern evaluation above is ansible-core's own, run in one process; the `ansible`
    // command itself agrees with it.
    for inv in &invs {
        let limit = "prod:!db-b:&web*:stage1";
        let cli = ansible::cli_limit_hosts(inv, limit).expect("ansible --list-hosts");
        let batch = ansible::limit_hosts(&[(inv.clone(), limit.to_string())]);
        assert_eq!(batch[0].as_ref().expect("hosts"), &cli);
    }
}

#[test]
fn limit_narrows_host_and_group_and_warns_about_names_it_cannot_match() {
    let p = Project::new();
    let [ini, ..] = inventories(&p);
    let cases = [
        (ini.clone(), "prod:!web02".to_string()),
        (ini.clone(), "web".to_string()),
    ];
    let answers = ansible::limit_hosts(&cases);
    let set = |r: &Result<Vec<String>, String>| -> BTreeSet<String> {
        r.as_ref().expect("hosts").iter().cloned().collect()
    };
    let both: BTreeSet<String> = set(&answers[0])
        .intersection(&set(&answers[1]))
        .cloned()
        .collect();
    assert_eq!(
        deploy_hosts(&p, &ini, &["--group", "web", "-l", "prod:!web02"]),
        Ok(both)
    );
    assert_eq!(
        deploy_hosts(
            &p,
            &ini,
            &["--host", "mon1", "--host", "db-a", "--limit", "db"]
        ),
        Ok(BTreeSet::from(["db-a".to_string()]))
    );

    let run = p.run(&[
        "-i",
        &ini.display().to_string(),
        "check",
        "--list-hosts",
        "-l",
        "nosuch:mon1",
    ]);
    let run = run.expect(0);
    assert_eq!(run.stdout, "mon1\n");
    assert!(
        run.stderr.contains("no group or host matches `nosuch`"),
        "{}",
        run.stderr
    );

    let run = p
        .run(&[
            "-i",
            &ini.display().to_string(),
            "plan",
            "--group",
            "staging",
            "-l",
            "web",
        ])
        .expect(1);
    assert!(
        run.stderr
            .contains("--limit web matches no host among the hosts of --host/--group"),
        "{}",
        run.stderr
    );
    let run = p
        .run(&["-i", &ini.display().to_string(), "check", "-l", "wbe*"])
        .expect(1);
    assert!(
        run.stderr.contains("--limit wbe* matches no host"),
        "{}",
        run.stderr
    );
    let run = p
        .run(&["-i", &ini.display().to_string(), "check", "-l", "web[7]"])
        .expect(1);
    assert!(
        run.stderr
            .contains("no host matched the subscripted pattern `web[7]`"),
        "{}",
        run.stderr
    );
}

#[test]
fn ini_mistakes_name_the_file_and_line() {
    let p = Project::new();
    for (text, line, what) in [
        (
            "[web]\nweb01\n[web:vars]\nnovalue\n",
            4,
            "expected key=value, got `novalue`",
        ),
        (
            "[web]\nweb01 port\n",
            2,
            "expected key=value host variable assignment",
        ),
        (
            "[prod:children]\nweb\n",
            2,
            "includes `web`, a group declared nowhere",
        ),
        (
            "[web:vars]\na=1\n",
            1,
            "[web:vars] is for a group declared nowhere",
        ),
        (
            "[web:hosts]\nok\n[web:other]\n",
            3,
            "has unknown type `other`",
        ),
        ("[web ]\n", 1, "invalid section entry"),
        ("[web]\nw[01:1]\n", 2, "equal-length"),
        ("[web]\nweb01 a='open\n", 2, "no closing quotation"),
    ] {
        p.file("bad/hosts.ini", text);
        let run = p
            .run(&[
                "-i",
                &p.path().join("bad/hosts.ini").display().to_string(),
                "check",
                "--list-hosts",
            ])
            .expect(1);
        let at = format!("bad/hosts.ini:{line}: ");
        assert!(
            run.stderr.contains(&at) && run.stderr.contains(what),
            "{text:?}: want `{at}` and `{what}`:\n{}",
            run.stderr
        );
    }
}

/// The repo layout of the seeds' second setup (`ansible/inventories/hosts.ini`, run from
/// `ansible/`): local stand-ins for motoko and wintermute.
fn seed_repo(p: &Project) {
    p.file(
        "inventories/hosts.ini",
        "[litellm]\nmotoko ansible_connection=local deploy_root=roots/motoko\n\n\
         [vllm]\nwintermute ansible_connection=local deploy_root=roots/wintermute\n",
    )
    .file("inventories/group_vars/litellm.yml", "litellm_port: 4000\n")
    .file("inventories/group_vars/vllm.yml", "vllm_port: 8000\n")
    .manifest(
        "groups:\n  litellm:\n    files:\n      - template: litellm.j2\n        dest: /opt/litellm/config\n\
         \x20 vllm:\n    files:\n      - template: vllm.j2\n        dest: /opt/vllm/config\n",
    )
    .template("litellm.j2", "port: {{ litellm_port }}\n")
    .template("vllm.j2", "port: {{ vllm_port }}\n");
}

#[test]
fn the_seeds_command_lines_work_from_inside_the_repo() {
    let p = Project::new();
    seed_repo(&p);
    // ansible-playbook -i inventories/hosts.ini deploy-litellm.yml --limit motoko
    p.run_in(
        ".",
        &[
            "-i",
            "inventories/hosts.ini",
            "apply",
            "--yes",
            "--limit",
            "motoko",
        ],
    )
    .expect(0);
    assert_eq!(
        p.host_file("motoko", "/opt/litellm/config").as_deref(),
        Some("port: 4000\n")
    );
    assert_eq!(p.host_file("wintermute", "/opt/vllm/config"), None);

    // ansible-playbook -i inventory/hosts.yml playbooks/windows-vllm-deploy.yml --limit wintermute
    p.file(
        "inventory/hosts.yml",
        "all:\n  children:\n    vllm:\n      hosts:\n        wintermute:\n          ansible_connection: local\n          deploy_root: roots/wintermute\n",
    )
    .file("inventory/host_vars/wintermute.yml", "vllm_port: 8001\n");
    let run = p
        .run_in(
            ".",
            &["-i", "inventory/hosts.yml", "plan", "--limit", "wintermute"],
        )
        .expect(0);
    assert!(run.stdout.contains("+ /opt/vllm/config"), "{}", run.stdout);
    p.run_in(
        ".",
        &[
            "-i",
            "inventory/hosts.yml",
            "apply",
            "--yes",
            "-l",
            "wintermute",
        ],
    )
    .expect(0);
    assert_eq!(
        p.host_file("wintermute", "/opt/vllm/config").as_deref(),
        Some("port: 8001\n")
    );

    // -i is relative to the current directory, not to the repo.
    p.run_in(
        "inventories",
        &[
            "--repo",
            "..",
            "-i",
            "hosts.ini",
            "check",
            "--list-hosts",
            "-l",
            "vllm",
        ],
    )
    .expect(0);
    let run = p.run_in(".", &["-i", "hosts.ini", "check"]).expect(1);
    assert!(
        run.stderr
            .contains("-i hosts.ini: no such inventory file or folder"),
        "{}",
        run.stderr
    );
}

#[test]
fn inventory_naming_the_repo_says_it_is_repo_now() {
    let p = Project::new();
    seed_repo(&p);
    p.inventory("all:\n  hosts:\n    a:\n");
    let repo = p.path().display().to_string();
    let run = p.run_in(".", &["--inventory", &repo, "plan"]).expect(1);
    assert!(
        run.stderr.contains("is a deploy repo") && run.stderr.contains(&format!("--repo {repo}")),
        "{}",
        run.stderr
    );
}

#[test]
fn a_folder_inventory_brings_its_own_deploy_yml_and_vars() {
    let p = Project::new();
    seed_repo(&p);
    // The repo's hosts/ is not read when -i names another inventory.
    p.file("hosts/group_vars/litellm.yml", "litellm_port: 1\n");
    p.file(
        "staging/hosts.ini",
        "[litellm]\nmotoko ansible_connection=local deploy_root=roots/motoko\n",
    )
    .file("staging/group_vars/litellm.yml", "litellm_port: 4001\n")
    .file(
        "staging/deploy.yml",
        "groups:\n  litellm:\n    files:\n      - template: litellm.j2\n        dest: /opt/litellm/staging\n",
    );
    p.run_in(".", &["-i", "staging", "apply", "--yes"])
        .expect(0);
    assert_eq!(
        p.host_file("motoko", "/opt/litellm/staging").as_deref(),
        Some("port: 4001\n")
    );
    assert_eq!(p.host_file("motoko", "/opt/litellm/config"), None);
}

#[test]
fn a_saved_plan_keeps_its_inventory_and_limit() {
    let p = Project::new();
    seed_repo(&p);
    p.run_in(
        ".",
        &[
            "-i",
            "inventories/hosts.ini",
            "plan",
            "-l",
            "vllm",
            "--out",
            "plan.json",
        ],
    )
    .expect(0);
    let run = p
        .run_in(".", &["apply", "plan.json", "-l", "litellm"])
        .expect(1);
    assert!(run.stderr.contains("carries its own -i"), "{}", run.stderr);
    p.run_in(".", &["apply", "plan.json"]).expect(0);
    assert_eq!(
        p.host_file("wintermute", "/opt/vllm/config").as_deref(),
        Some("port: 8000\n")
    );
    assert_eq!(p.host_file("motoko", "/opt/litellm/config"), None);
}

#[test]
fn rev_reads_the_inventory_file_and_its_vars_at_that_commit() {
    let p = Project::new();
    seed_repo(&p);
    p.file(".gitignore", "roots/\nhome/\n");
    p.git(&["init", "-q", "-b", "main"]);
    p.git(&["add", "-A"]);
    p.git(&["commit", "-qm", "litellm on 4000"]);
    // Work in progress: another port, another host.
    p.file("inventories/group_vars/litellm.yml", "litellm_port: 4999\n");
    p.file(
        "inventories/hosts.ini",
        "[litellm]\nmotoko ansible_connection=local deploy_root=roots/motoko\nextra ansible_connection=local deploy_root=roots/extra\n",
    );
    let run = p
        .run_in(
            ".",
            &[
                "-i",
                "inventories/hosts.ini",
                "check",
                "--list-hosts",
                "--rev",
                "HEAD",
            ],
        )
        .expect(0);
    assert_eq!(run.stdout, "motoko\nwintermute\n");
    p.run_in(
        ".",
        &[
            "-i",
            "inventories/hosts.ini",
            "apply",
            "--yes",
            "-l",
            "motoko",
            "--rev",
            "HEAD",
        ],
    )
    .expect(0);
    assert_eq!(
        p.host_file("motoko", "/opt/litellm/config").as_deref(),
        Some("port: 4000\n")
    );

    // An inventory git does not track at that commit, or outside the repository: refused.
    p.file("later/hosts.ini", "[litellm]\nmotoko\n");
    let run = p
        .run_in(".", &["-i", "later/hosts.ini", "check", "--rev", "HEAD"])
        .expect(1);
    assert!(
        run.stderr.contains("is not in that commit"),
        "{}",
        run.stderr
    );
    let outside = tempfile::tempdir().expect("tmp");
    std::fs::write(outside.path().join("hosts.ini"), "[litellm]\nmotoko\n").expect("write");
    let outside = outside.path().join("hosts.ini").display().to_string();
    let run = p
        .run_in(".", &["-i", &outside, "check", "--rev", "HEAD"])
        .expect(1);
    assert!(
        run.stderr.contains("is outside the git repository")
            && run.stderr.contains("--rev reads only what git tracks"),
        "{}",
        run.stderr
    );
}
