//! A host is untrusted input: what it can and cannot make deploy do. Real sshd hosts (and
//! local ones) made hostile with real files: a 10 GiB sparse destination, state records and
//! locks that are huge, nested thousands deep or of the wrong types, symbolic links where a
//! file or a folder should be. Each fails only that host, with its path and why.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::ssh_apply::SshFleet;
use crate::support::project::Project;

/// A sparse file of `len` bytes (nothing on disk).
fn sparse(path: &Path, len: u64) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::File::create(path)
        .and_then(|f| f.set_len(len))
        .expect("sparse file");
}

/// The lines of `text` that mention `host`.
fn lines_of<'a>(text: &'a str, host: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(host)).collect()
}

#[test]
fn a_ten_gib_destination_fails_only_that_host_naming_the_path_and_the_limit() {
    let fleet = SshFleet::new(&["alpha", "beta"], true);
    let p = &fleet.project;
    let conf = fleet.root("alpha").join("etc/app/app.conf");
    sparse(&conf, 10 << 30);

    let started = Instant::now();
    let plan = p.run(&["plan"]).expect(1);
    // Nothing of it is streamed: far less time than 10 GiB over loopback would take.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(30), "{took:?}");
    let text = &plan.stdout;
    assert!(
        text.contains(&format!(
            "{}: 10 GiB (10737418240 bytes) on the host",
            conf.display()
        )),
        "{text}"
    );
    assert!(
        text.contains("more than the 64 MiB (67108864 bytes) deploy reads of one file"),
        "{text}"
    );
    assert!(text.contains("--max-file-size"), "{text}");
    assert!(!lines_of(text, "alpha").is_empty(), "{text}");
    // beta is planned as usual.
    assert!(
        text.contains(&format!(
            "+ {}",
            fleet.root("beta").join("etc/app/app.conf").display()
        )),
        "{text}"
    );

    let run = p.run(&["apply", "--yes"]).expect(1);
    assert!(
        fleet.read("beta", "etc/app/app.conf").is_some(),
        "{}",
        run.stdout
    );
    assert_eq!(fs::metadata(&conf).expect("conf").len(), 10 << 30);

    // The limit is a setting: a 2 MiB file is over 1M, and fine under 4M.
    fs::write(&conf, vec![b'x'; 2 << 20]).expect("2 MiB");
    let over = p.run(&["plan", "--max-file-size", "1M"]).expect(1);
    assert!(
        over.stdout
            .contains("2 MiB (2097152 bytes) on the host, more than the 1 MiB"),
        "{}",
        over.stdout
    );
    p.run(&["plan", "--max-file-size", "4M"]).expect(0);
    // And the total per host.
    let total = p.run(&["plan", "--max-host-read", "1M"]).expect(1);
    assert!(
        total
            .stdout
            .contains("more than the 1 MiB (1048576 bytes) deploy reads from one host")
            && total.stdout.contains("--max-host-read"),
        "{}",
        total.stdout
    );
    let bad = p.run(&["plan", "--max-file-size", "lots"]).expect(2);
    assert!(
        bad.stderr.contains("`lots` is not a size"),
        "{}",
        bad.stderr
    );
}

#[test]
fn a_hostile_state_record_fails_only_its_host_with_a_clear_error() {
    let fleet = SshFleet::new(&["alpha", "beta", "gamma", "delta"], true);
    let p = &fleet.project;
    let state = |host: &str| fleet.root(host).join("var/lib/deploy/state.json");
    // Nested 100000 deep; the right shape with the wrong types; 1 GiB claimed.
    fs::create_dir_all(state("alpha").parent().expect("dir")).expect("mkdir");
    fs::write(state("alpha"), "[".repeat(100_000)).expect("nested");
    fs::create_dir_all(state("beta").parent().expect("dir")).expect("mkdir");
    fs::write(
        state("beta"),
        r#"{"version": "one", "commit": 7, "time": [], "by": {}, "files": "all"}"#,
    )
    .expect("types");
    sparse(&state("gamma"), 1 << 30);

    let run = p.run(&["apply", "--yes"]).expect(1);
    let text = &run.stdout;
    for (host, why) in [
        // serde reads no deeper than the first value of the wrong type.
        ("alpha", "not a deploy state record: invalid type: sequence"),
        ("beta", "invalid type: string \"one\", expected u32"),
        ("gamma", "1 GiB (1073741824 bytes) on the host"),
    ] {
        assert!(
            text.contains(&format!("state record {}", state(host).display())) && text.contains(why),
            "{host}: {text}"
        );
    }
    // delta is written; the others are untouched (their records as they were).
    assert!(fleet.read("delta", "etc/app/app.conf").is_some(), "{text}");
    for host in ["alpha", "beta", "gamma"] {
        assert!(
            fleet.read(host, "etc/app/app.conf").is_none(),
            "{host}: {text}"
        );
    }
    assert_eq!(fs::metadata(state("gamma")).expect("gamma").len(), 1 << 30);
    assert!(!text.contains("panicked"), "{}", run.stderr);
}

#[test]
fn a_hostile_lock_fails_only_its_host_and_is_read_only_in_part() {
    let fleet = SshFleet::new(&["alpha", "beta", "gamma"], true);
    let p = &fleet.project;
    let lock = |host: &str| fleet.root(host).join("var/lib/deploy/lock.json");
    // 1 GiB of zeros claimed; nested JSON 100000 deep.
    sparse(&lock("alpha"), 1 << 30);
    fs::create_dir_all(lock("beta").parent().expect("dir")).expect("mkdir");
    fs::write(lock("beta"), "{\"a\":".repeat(100_000)).expect("nested");

    let started = Instant::now();
    let run = p.run(&["apply", "--yes"]).expect(1);
    assert!(started.elapsed() < Duration::from_secs(60));
    let text = &run.stdout;
    for host in ["alpha", "beta"] {
        let lines = lines_of(text, host).join("\n");
        assert!(
            text.contains("locked by an unreadable lock"),
            "{host}: {text}"
        );
        assert!(fleet.read(host, "etc/app/app.conf").is_none(), "{lines}");
    }
    // What is quoted of a lock stays short, whatever it holds.
    assert!(text.len() < 16 << 10, "{} bytes of output", text.len());
    assert!(fleet.read("gamma", "etc/app/app.conf").is_some(), "{text}");
}

/// The fleet's layout with links: on `host`, app.conf is a link to a file outside the
/// managed paths, and `etc/systemd` is a link to another folder.
fn with_links(root: &Path) {
    fs::create_dir_all(root.join("etc/app")).expect("etc/app");
    fs::create_dir_all(root.join("outside")).expect("outside");
    fs::write(root.join("outside/secret.txt"), "not for the plan\n").expect("secret");
    symlink(
        root.join("outside/secret.txt"),
        root.join("etc/app/app.conf"),
    )
    .expect("link");
    fs::create_dir_all(root.join("srv/units/system")).expect("units");
    symlink(root.join("srv/units"), root.join("etc/systemd")).expect("folder link");
}

/// What a plan over [`with_links`] must say, and what apply must leave.
fn check_links(p: &Project, root: &Path) {
    let plan = p.run(&["plan"]).expect(0);
    let text = &plan.stdout;
    let conf = root.join("etc/app/app.conf");
    assert!(
        text.contains(&format!(
            "~ {} (a symbolic link to {}: will be replaced by a file, its target left as it is",
            conf.display(),
            root.join("outside/secret.txt").display()
        )),
        "{text}"
    );
    assert!(!text.contains("not for the plan"), "{text}");
    assert!(
        text.contains(&format!(
            "written through {}, a symbolic link on the host",
            root.join("etc/systemd").display()
        )),
        "{text}"
    );

    p.run(&["apply", "--yes"]).expect(0);
    // The link is replaced by the file; what it pointed at is as it was.
    let meta = fs::symlink_metadata(&conf).expect("conf");
    assert!(meta.file_type().is_file(), "{meta:?}");
    assert_eq!(
        fs::read_to_string(root.join("outside/secret.txt")).expect("secret"),
        "not for the plan\n"
    );
    // The folder link stays a link, and the unit lands where it points (as the OS and
    // Ansible would write it).
    assert!(
        fs::symlink_metadata(root.join("etc/systemd"))
            .expect("systemd")
            .file_type()
            .is_symlink()
    );
    assert!(root.join("srv/units/system/app.service").is_file());
    // Written once, nothing more to do, and no note without a change.
    let again = p.run(&["plan"]).expect(0);
    assert!(!again.stdout.contains("symbolic link"), "{}", again.stdout);
}

#[test]
fn links_at_destinations_over_ssh_are_shown_in_the_plan_and_replaced_not_followed() {
    let fleet = SshFleet::new(&["alpha"], true);
    let root = fleet.root("alpha");
    with_links(&root);
    check_links(&fleet.project, &root);
}

#[test]
fn links_at_destinations_on_a_local_host_are_shown_and_replaced_not_followed() {
    let p = Project::new();
    let root = p.path().join("roots/lab");
    p.inventory(&format!(
        "all:\n  hosts:\n    lab:\n      ansible_connection: local\n      root: {}\n      deploy_state_path: \"{{{{ root }}}}/var/lib/deploy/state.json\"\n",
        root.display()
    ))
    .manifest(
        r#"
groups:
  all:
    files:
      - template: app.conf.j2
        dest: "{{ root }}/etc/app/app.conf"
      - template: unit.j2
        dest: "{{ root }}/etc/systemd/system/app.service"
"#,
    )
    .template("app.conf.j2", "host = {{ inventory_hostname }}\n")
    .template("unit.j2", "[Service]\n");
    with_links(&root);
    check_links(&p, &root);
}
