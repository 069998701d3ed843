//! plan and apply over real OpenSSH sshd hosts on 127.0.0.1 (no mock of the SSH layer).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::support::project::Project;
use crate::support::sshd::{self, Sshd};

/// A project whose hosts are real sshd servers; each host's files go under its own folder.
pub struct SshFleet {
    pub project: Project,
    pub servers: Vec<(String, Sshd)>,
}

impl SshFleet {
    /// `names` become hosts of group `app`, each with its own sshd. known_hosts in the
    /// project's HOME lists every server unless `trust` is false.
    pub fn new(names: &[&str], trust: bool) -> SshFleet {
        let project = Project::new();
        let servers: Vec<(String, Sshd)> = names
            .iter()
            .map(|n| (n.to_string(), Sshd::start()))
            .collect();
        let mut hosts = String::new();
        for (name, server) in &servers {
            hosts.push_str(&format!(
                "        {name}:\n          ansible_port: {}\n          ansible_ssh_private_key_file: {}\n          root: {}\n          deploy_state_path: \"{{{{ root }}}}/var/lib/deploy/state.json\"\n",
                server.port(),
                server.client_key().display(),
                project.path().join("hosts-fs").join(name).display(),
            ));
        }
        project.inventory(&format!(
            "all:\n  vars:\n    ansible_host: 127.0.0.1\n    ansible_user: {}\n  children:\n    app:\n      hosts:\n{hosts}",
            sshd::current_user()
        ));
        project
            .file("hosts/group_vars/app.yml", "workers: 4\n")
            .manifest(
                r#"
groups:
  app:
    files:
      - template: app.conf.j2
        dest: "{{ root }}/etc/app/app.conf"
        mode: "0640"
        notify: restart app
      - template: unit.j2
        dest: "{{ root }}/etc/systemd/system/app.service"
        notify: [reload systemd, restart app]
    handlers:
      - name: reload systemd
        run: echo reload >> '{{ root }}/handlers.log'
      - name: restart app
        run: echo restart >> '{{ root }}/handlers.log'
"#,
            )
            .template(
                "app.conf.j2",
                "host = {{ inventory_hostname }}\nworkers = {{ workers }}\n",
            )
            .template(
                "unit.j2",
                "[Service]\nExecStart=/usr/bin/app --workers {{ workers }}\n",
            );
        let fleet = SshFleet { project, servers };
        if trust {
            let all: String = fleet
                .servers
                .iter()
                .map(|(_, s)| fs::read_to_string(s.known_hosts()).unwrap())
                .collect();
            fleet.project.file("home/.ssh/known_hosts", &all);
        }
        fleet
    }

    pub fn root(&self, host: &str) -> PathBuf {
        self.project.path().join("hosts-fs").join(host)
    }

    pub fn read(&self, host: &str, rel: &str) -> Option<String> {
        fs::read_to_string(self.root(host).join(rel)).ok()
    }

    pub fn log(&self, host: &str) -> String {
        self.read(host, "handlers.log").unwrap_or_default()
    }

    fn known_hosts(&self) -> PathBuf {
        self.project.path().join("home/.ssh/known_hosts")
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn apply_over_ssh_creates_then_changes_nothing_then_only_what_a_var_changed() {
    let fleet = SshFleet::new(&["alpha", "beta"], true);
    let p = &fleet.project;

    let run = p.run(&["apply", "--yes"]).expect(0);
    assert!(run.stdout.contains("Plan: 4 to create"), "{}", run.stdout);
    // What a_render_error_touches_no_ssh_host looks for does show a real login.
    assert!(
        fleet.servers[0].1.log().contains("Accepted publickey"),
        "{}",
        fleet.servers[0].1.log()
    );
    for host in ["alpha", "beta"] {
        assert_eq!(
            fleet.read(host, "etc/app/app.conf").as_deref(),
            Some(format!("host = {host}\nworkers = 4\n").as_str())
        );
        assert_eq!(mode(&fleet.root(host).join("etc/app/app.conf")), 0o640);
        assert_eq!(
            mode(&fleet.root(host).join("etc/systemd/system/app.service")),
            0o644
        );
        assert_eq!(
            fleet.log(host),
            "reload\nrestart\n",
            "{host}: each handler once, in order"
        );
    }

    let inode = fs::metadata(fleet.root("alpha").join("etc/app/app.conf"))
        .unwrap()
        .ino();
    let run = p.run(&["apply", "--yes"]).expect(0);
    assert!(
        run.stdout
            .contains("Plan: 0 to create, 0 to change, 4 unchanged"),
        "{}",
        run.stdout
    );
    assert_eq!(fleet.log("alpha"), "reload\nrestart\n");
    assert_eq!(
        fs::metadata(fleet.root("alpha").join("etc/app/app.conf"))
            .unwrap()
            .ino(),
        inode
    );

    p.file("hosts/host_vars/beta.yml", "workers: 6\n");
    let plan = p.run(&["plan", "--detailed-exitcode"]).expect(2);
    assert!(
        plan.stdout.contains("alpha: no changes (2 files)"),
        "{}",
        plan.stdout
    );
    assert_eq!(
        plan.stdout.matches("\n      +workers = 6").count(),
        1,
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("Plan: 0 to create, 2 to change, 2 unchanged"),
        "{}",
        plan.stdout
    );

    p.run(&["apply", "--yes"]).expect(0);
    assert_eq!(fleet.log("alpha"), "reload\nrestart\n");
    assert_eq!(fleet.log("beta"), "reload\nrestart\nreload\nrestart\n");
    let replaced = fleet.root("beta").join("etc/app/app.conf");
    assert_eq!(mode(&replaced), 0o640);
    let leftovers: Vec<String> = fs::read_dir(replaced.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "app.conf")
        .collect();
    assert!(
        leftovers.is_empty(),
        "temp files left behind: {leftovers:?}"
    );
}

#[test]
fn host_limits_the_ssh_run() {
    let fleet = SshFleet::new(&["alpha", "beta"], true);
    fleet
        .project
        .run(&["apply", "--yes", "--host", "beta"])
        .expect(0);
    assert!(!fleet.root("alpha").exists());
    assert_eq!(fleet.log("beta"), "reload\nrestart\n");
}

#[test]
fn unknown_host_key_is_refused_unless_accepted() {
    let fleet = SshFleet::new(&["alpha"], false);
    let p = &fleet.project;
    let fingerprint = fleet.servers[0]
        .1
        .host_key_fingerprint(sshd::HostKey::Ed25519);
    let run = p.run(&["plan"]).expect(1);
    assert!(run.stdout.contains(&fingerprint), "{}", run.stdout);
    assert!(
        run.stdout.contains("--accept-new-host-keys"),
        "{}",
        run.stdout
    );

    p.run(&["plan", "--accept-new-host-keys"]).expect(0);
    let known = fs::read_to_string(fleet.known_hosts()).unwrap();
    assert!(
        known.contains(&format!("[127.0.0.1]:{}", fleet.servers[0].1.port())),
        "{known}"
    );
    p.run(&["plan"]).expect(0);
}

#[test]
fn changed_host_key_is_refused_even_with_accept_new() {
    let fleet = SshFleet::new(&["alpha"], false);
    let other = Sshd::start();
    // known_hosts claims alpha's address has the other server's key.
    let line = format!(
        "# comment\n[127.0.0.1]:{} {}\n",
        fleet.servers[0].1.port(),
        other.host_key_line(sshd::HostKey::Ed25519)
    );
    fleet.project.file("home/.ssh/known_hosts", &line);
    let run = fleet
        .project
        .run(&["apply", "--yes", "--accept-new-host-keys"])
        .expect(1);
    let known = fleet.known_hosts().display().to_string();
    assert!(run.stdout.contains(&format!("{known}:2")), "{}", run.stdout);
    assert!(!fleet.root("alpha").exists());
    assert_eq!(fs::read_to_string(fleet.known_hosts()).unwrap(), line);
}

#[test]
fn an_unreachable_host_fails_alone() {
    let fleet = SshFleet::new(&["alpha", "beta"], true);
    let p = &fleet.project;
    p.file(
        "hosts/host_vars/beta.yml",
        &format!("ansible_port: {}\n", sshd::free_port()),
    );
    let run = p.run(&["apply", "--yes"]).expect(1);
    assert!(run.stdout.contains("beta: error:"), "{}", run.stdout);
    assert!(run.stdout.contains("1 host failed"), "{}", run.stdout);
    assert_eq!(fleet.log("alpha"), "reload\nrestart\n");
    assert!(!fleet.root("beta").exists());
}

#[test]
fn a_render_error_touches_no_ssh_host() {
    let fleet = SshFleet::new(&["alpha", "beta"], true);
    let p = &fleet.project;
    p.file(
        "hosts/host_vars/beta.yml",
        "workers: \"{{ undefined_thing }}\"\n",
    );
    let run = p.run(&["apply", "--yes"]).expect(1);
    assert!(run.stderr.contains("undefined_thing"), "{}", run.stderr);
    assert!(!fleet.root("alpha").exists() && !fleet.root("beta").exists());
    for (_, server) in &fleet.servers {
        assert!(
            !server.log().contains("Accepted publickey"),
            "a host was contacted:\n{}",
            server.log()
        );
    }
}

#[test]
fn a_secret_bearing_file_is_0600_on_an_ssh_host_and_never_printed() {
    let fleet = SshFleet::new(&["alpha"], true);
    let p = &fleet.project;
    let (identity, public) = crate::support::age::keygen(p.path(), "identity.txt");
    p.file("secrets/recipients.txt", &format!("{public}\n"));
    crate::support::age::encrypt(
        &p.path().join("secrets/recipients.txt"),
        "db_password: hunter2-over-ssh\n",
        &p.path().join("secrets/app.yml.age"),
    );
    p.template(
        "unit.j2",
        "[Service]\nEnvironment=DB_PASSWORD={{ db_password }}\nExecStart=/usr/bin/app --workers {{ workers }}\n",
    );
    let run = p
        .run(&["apply", "--yes", "--identity", identity.to_str().unwrap()])
        .expect(0);
    let printed = format!("{}{}", run.stdout, run.stderr);
    assert!(!printed.contains("hunter2"), "{printed}");
    assert!(
        printed.contains("+Environment=DB_PASSWORD=<secret:db_password>"),
        "{printed}"
    );
    let unit = fleet.root("alpha").join("etc/systemd/system/app.service");
    assert_eq!(mode(&unit), 0o600);
    assert!(
        fs::read_to_string(&unit)
            .unwrap()
            .contains("DB_PASSWORD=hunter2-over-ssh")
    );
    // The file without a secret keeps its explicit mode.
    assert_eq!(mode(&fleet.root("alpha").join("etc/app/app.conf")), 0o640);
}

#[test]
fn a_saved_plan_applies_exactly_and_a_stale_one_is_refused() {
    let fleet = SshFleet::new(&["alpha"], true);
    let p = &fleet.project;
    let plan_file = p.path().join("release.plan");
    let plan_arg = plan_file.to_str().unwrap();

    // Terraform's spelling, -out, is accepted.
    let run = p.run(&["plan", "-out", plan_arg]).expect(0);
    assert!(run.stdout.contains("Saved the plan"), "{}", run.stdout);
    let saved = fs::read_to_string(&plan_file).unwrap();
    assert!(
        !saved.contains("workers = 4"),
        "no file content in a saved plan: {saved}"
    );

    // Applied as saved, without a prompt.
    p.run(&["apply", plan_arg]).expect(0);
    assert_eq!(fleet.log("alpha"), "reload\nrestart\n");

    // Saved against one state of the host; the host changes behind it: refused whole.
    p.file("hosts/group_vars/app.yml", "workers: 5\n");
    p.run(&["plan", "--out", plan_arg]).expect(0);
    let conf = fleet.root("alpha").join("etc/app/app.conf");
    fs::write(&conf, "edited on the host\n").unwrap();
    let run = p.run(&["apply", plan_arg]).expect(1);
    assert!(run.stderr.contains("is stale"), "{}", run.stderr);
    assert!(
        run.stderr.contains("app.conf changed on the host"),
        "{}",
        run.stderr
    );
    assert_eq!(fs::read_to_string(&conf).unwrap(), "edited on the host\n");
    assert_eq!(fleet.log("alpha"), "reload\nrestart\n", "no handler ran");

    // Inputs that changed after the plan: refused too.
    p.run(&["plan", "--out", plan_arg]).expect(0);
    p.file("hosts/group_vars/app.yml", "workers: 6\n");
    let run = p.run(&["apply", plan_arg]).expect(1);
    assert!(
        run.stderr.contains("would now be written differently"),
        "{}",
        run.stderr
    );
}

#[test]
fn files_and_folders_over_ssh_binary_delete_absent_and_git_revert() {
    use crate::plain_files::{noise, sha8};
    let fleet = SshFleet::new(&["alpha"], true);
    let p = &fleet.project;
    p.manifest(
        r#"
groups:
  app:
    files:
      - src: site/
        dest: "{{ root }}/srv/site"
        delete: true
        notify: restart app
      - src: tool.conf
        dest: "{{ root }}/etc/tool.conf"
        mode: "0600"
        notify: restart app
    handlers:
      - name: restart app
        run: echo restart >> '{{ root }}/handlers.log'
"#,
    )
    .file("files/site/index.html", "{{ not templated }}\n")
    .file("files/site/old.txt", "old\n")
    .bytes("files/site/models/model.bin", &noise(1_258_291, 11))
    .file("files/tool.conf", "tool = 1\n")
    .file(".gitignore", "hosts-fs/\nhome/\n");
    p.git(&["init", "-q", "-b", "main"]);
    p.git(&["add", "-A"]);
    p.git(&["commit", "-qm", "site and tool"]);
    let root = fleet.root("alpha");
    let bytes = |rel: &str| fs::read(root.join(rel)).ok();

    let run = p.run(&["apply", "--yes"]).expect(0);
    assert!(
        run.stdout.contains(&format!(
            "/srv/site/models/model.bin (mode 0644)\n      binary, 1.2 MiB (sha256 {}…)\n",
            sha8(&noise(1_258_291, 11))
        )),
        "{}",
        run.stdout
    );
    assert_eq!(
        bytes("srv/site/models/model.bin"),
        Some(noise(1_258_291, 11))
    );
    assert_eq!(
        bytes("srv/site/index.html").as_deref(),
        Some(&b"{{ not templated }}\n"[..])
    );
    assert_eq!(mode(&root.join("etc/tool.conf")), 0o600);
    assert_eq!(fleet.log("alpha"), "restart\n");
    let run = p.run(&["apply", "--yes"]).expect(0);
    assert!(
        run.stdout
            .contains("Plan: 0 to create, 0 to change, 4 unchanged on 1 host."),
        "{}",
        run.stdout
    );

    // A new model, a file dropped from the repo, a file only the host has.
    p.bytes("files/site/models/model.bin", &noise(1_363_149, 12));
    fs::remove_file(p.path().join("files/site/old.txt")).unwrap();
    fs::write(root.join("srv/site/models/stray.bin"), noise(10, 13)).unwrap();
    let plan = p.run(&["plan"]).expect(0);
    assert!(
        plan.stdout.contains(&format!(
            "/srv/site/models/model.bin\n      binary, 1.2 MiB (sha256 {}…) -> 1.3 MiB (sha256 {}…)\n",
            sha8(&noise(1_258_291, 11)),
            sha8(&noise(1_363_149, 12))
        )),
        "{}",
        plan.stdout
    );
    let gone = |rel: &str| format!("  - {}\n", root.join(rel).display());
    assert!(
        plan.stdout.contains(&gone("srv/site/old.txt")),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains(&gone("srv/site/models/stray.bin")),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("Plan: 0 to create, 1 to change, 2 to remove, 2 unchanged"),
        "{}",
        plan.stdout
    );
    p.run(&["apply", "--yes"]).expect(0);
    assert_eq!(
        bytes("srv/site/models/model.bin"),
        Some(noise(1_363_149, 12))
    );
    assert!(!root.join("srv/site/old.txt").exists());
    assert!(!root.join("srv/site/models/stray.bin").exists());
    assert_eq!(fleet.log("alpha"), "restart\nrestart\n");
    p.git(&["commit", "-qam", "new model"]);

    // Retire tool.conf by a commit...
    p.manifest(
        &fs::read_to_string(p.path().join("hosts/deploy.yml"))
            .unwrap()
            .replace(
                "      - src: tool.conf\n        dest: \"{{ root }}/etc/tool.conf\"\n        mode: \"0600\"\n",
                "      - dest: \"{{ root }}/etc/tool.conf\"\n        state: absent\n",
            ),
    );
    p.git(&["commit", "-qam", "retire tool.conf"]);
    let run = p.run(&["apply", "--yes"]).expect(0);
    assert!(
        run.stdout.contains(&gone("etc/tool.conf")),
        "{}",
        run.stdout
    );
    assert!(!root.join("etc/tool.conf").exists());
    assert_eq!(fleet.log("alpha"), "restart\nrestart\nrestart\n");
    let run = p.run(&["apply", "--yes"]).expect(0);
    assert!(
        run.stdout.contains("alpha: no changes (3 files)"),
        "{}",
        run.stdout
    );

    // ... and bring it back with git revert: the same bytes and mode as before.
    p.git(&["revert", "--no-edit", "HEAD"]);
    let run = p.run(&["apply", "--yes"]).expect(0);
    assert!(
        run.stdout.contains(&format!(
            "  + {} (mode 0600)",
            root.join("etc/tool.conf").display()
        )),
        "{}",
        run.stdout
    );
    assert_eq!(bytes("etc/tool.conf").as_deref(), Some(&b"tool = 1\n"[..]));
    assert_eq!(mode(&root.join("etc/tool.conf")), 0o600);
    let run = p.run(&["apply", "--yes"]).expect(0);
    assert!(
        run.stdout.contains("alpha: no changes (3 files)"),
        "{}",
        run.stdout
    );
    let leftovers: Vec<String> = fs::read_dir(root.join("srv/site/models"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(leftovers, ["model.bin"]);
}
