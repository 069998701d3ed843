//! `src:` files and folders (copied byte for byte, never templated), `delete: true` and
//! `state: absent`, end to end through the real binary on local stand-in hosts; `--rev` and
//! saved plans over `files/`. (The same over real sshd hosts is in `ssh_apply.rs`, over the
//! WinRM stand-in in `winrm_e2e.rs`.)

use std::fs;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::support::project::Project;

/// Deterministic bytes that are not text (NULs and invalid UTF-8 included).
pub fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// The first 8 hex digits of the SHA-256, as plans show them.
pub fn sha8(bytes: &[u8]) -> String {
    let full: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    full[..8].to_string()
}

const SITE_MANIFEST: &str = r#"
groups:
  web:
    files:
      - src: site/
        dest: /srv/site
        delete: true
        notify: reload site
      - src: motd
        dest: "/etc/motd.{{ inventory_hostname }}"
      - template: app.conf.j2
        dest: /srv/site/app.conf
    handlers:
      - name: reload site
        run: echo reload >> "$DEPLOY_ROOT/handlers.log"
"#;

fn site() -> Project {
    let p = Project::new();
    p.local_hosts(&[("web", &["alpha"])])
        .manifest(SITE_MANIFEST)
        .file("files/site/index.html", "<h1>{{ not a variable }}</h1>\n")
        .file("files/site/old.html", "old\n")
        .bytes("files/site/img/logo.png", &noise(1_258_291, 1))
        .file("files/motd", "plain {% raw %} text\r\n")
        .template("app.conf.j2", "name = {{ inventory_hostname }}\n");
    p
}

fn host_bytes(p: &Project, path: &str) -> Option<Vec<u8>> {
    fs::read(p.host_root("alpha").join(path.trim_start_matches('/'))).ok()
}

fn exists(p: &Project, path: &str) -> bool {
    fs::symlink_metadata(p.host_root("alpha").join(path.trim_start_matches('/'))).is_ok()
}

#[test]
fn a_folder_is_copied_byte_for_byte_then_changed_and_mirrored_with_delete() {
    let p = site();
    let logo = noise(1_258_291, 1);
    let run = p.run(&["apply", "--yes"]).expect(0);
    assert!(
        run.stdout.contains(&format!(
            "  + /srv/site/img/logo.png (mode 0644)\n      binary, 1.2 MiB (sha256 {}…)\n",
            sha8(&logo)
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("Plan: 5 to create, 0 to change, 0 unchanged"),
        "{}",
        run.stdout
    );
    // Byte for byte: no templating, no newline conversion, binary intact.
    assert_eq!(host_bytes(&p, "/srv/site/img/logo.png"), Some(logo.clone()));
    assert_eq!(
        host_bytes(&p, "/srv/site/index.html").as_deref(),
        Some(&b"<h1>{{ not a variable }}</h1>\n"[..])
    );
    assert_eq!(
        host_bytes(&p, "/etc/motd.alpha").as_deref(),
        Some(&b"plain {% raw %} text\r\n"[..])
    );
    assert_eq!(
        p.host_file("alpha", "/srv/site/app.conf").as_deref(),
        Some("name = alpha\n")
    );
    assert_eq!(
        p.host_file("alpha", "/handlers.log").as_deref(),
        Some("reload\n")
    );

    let run = p.run(&["apply", "--yes"]).expect(0);
    assert!(
        run.stdout.contains("alpha: no changes (5 files)"),
        "{}",
        run.stdout
    );

    // The repo changes the binary and drops a file; the host gained files deploy did not
    // put there, a link, and a folder.
    let new_logo = noise(1_363_149, 2);
    p.bytes("files/site/img/logo.png", &new_logo);
    fs::remove_file(p.path().join("files/site/old.html")).expect("rm");
    let root = p.host_root("alpha");
    fs::write(root.join("srv/site/stray.txt"), "stray\n").expect("stray");
    std::os::unix::fs::symlink("../../etc/motd.alpha", root.join("srv/site/link")).expect("ln");
    fs::create_dir_all(root.join("srv/site/cache/empty")).expect("cache");
    fs::write(root.join("srv/site/cache/x"), "x").expect("x");

    // status counts what a delete would still remove as work to apply.
    let status = p.run(&["status"]).expect(2);
    assert!(
        status
            .stdout
            .contains("to apply: 5 files (see deploy plan)"),
        "{}",
        status.stdout
    );
    let plan = p.run(&["plan", "--detailed-exitcode"]).expect(2);
    assert!(
        plan.stdout.contains(&format!(
            "  ~ /srv/site/img/logo.png\n      binary, 1.2 MiB (sha256 {}…) -> 1.3 MiB (sha256 {}…)\n",
            sha8(&logo),
            sha8(&new_logo)
        )),
        "{}",
        plan.stdout
    );
    for gone in ["cache/x", "link", "old.html", "stray.txt"] {
        assert!(
            plan.stdout.contains(&format!("\n  - /srv/site/{gone}\n")),
            "{gone}: {}",
            plan.stdout
        );
    }
    assert!(
        plan.stdout.contains(
            "Plan: 0 to create, 1 to change, 4 to remove, 3 unchanged on 1 host; 1 handler to run."
        ),
        "{}",
        plan.stdout
    );
    assert!(!plan.stdout.contains("app.conf"), "kept: {}", plan.stdout);

    let run = p.run(&["apply", "--yes"]).expect(0);
    assert!(
        run.stdout
            .contains("alpha: wrote 1 file, removed 4; ran reload site"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("Apply: 1 file written, 4 removed, 1 handler run on 1 host."),
        "{}",
        run.stdout
    );
    assert_eq!(host_bytes(&p, "/srv/site/img/logo.png"), Some(new_logo));
    for gone in ["old.html", "stray.txt", "link", "cache/x"] {
        assert!(!exists(&p, &format!("/srv/site/{gone}")), "{gone}");
    }
    // Folders stay; a link is unlinked, never followed; a file another entry gives is kept.
    assert!(root.join("srv/site/cache/empty").is_dir());
    assert!(p.host_file("alpha", "/etc/motd.alpha").is_some());
    assert!(p.host_file("alpha", "/srv/site/app.conf").is_some());
    assert_eq!(
        p.host_file("alpha", "/handlers.log").as_deref(),
        Some("reload\nreload\n")
    );
    // The record lists what is there, not what was removed.
    let record = p
        .host_file("alpha", "/var/lib/deploy/state.json")
        .expect("record");
    assert!(!record.contains("old.html"), "{record}");
    assert!(record.contains("/srv/site/img/logo.png"), "{record}");

    let run = p.run(&["apply", "--yes"]).expect(0);
    assert!(
        run.stdout.contains("alpha: no changes (4 files)"),
        "{}",
        run.stdout
    );
}

#[test]
fn state_absent_removes_a_file_or_a_link_notifies_and_never_touches_a_directory() {
    let p = Project::new();
    p.local_hosts(&[("web", &["alpha"])]).manifest(
        r#"
groups:
  web:
    files:
      - dest: /etc/old.conf
        state: absent
        notify: reload
      - dest: /etc/never-there.conf
        state: absent
      - dest: /etc/a-link
        state: absent
    handlers:
      - name: reload
        run: echo reload >> "$DEPLOY_ROOT/handlers.log"
"#,
    );
    let root = p.host_root("alpha");
    fs::create_dir_all(root.join("etc")).expect("etc");
    fs::write(root.join("etc/old.conf"), "retired\n").expect("old");
    fs::write(root.join("etc/target"), "target\n").expect("target");
    std::os::unix::fs::symlink("target", root.join("etc/a-link")).expect("ln");

    let run = p.run(&["apply", "--yes"]).expect(0);
    assert!(run.stdout.contains("  - /etc/old.conf\n"), "{}", run.stdout);
    assert!(run.stdout.contains("  - /etc/a-link\n"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("Plan: 0 to create, 0 to change, 2 to remove, 1 unchanged"),
        "{}",
        run.stdout
    );
    assert!(!exists(&p, "/etc/old.conf") && !exists(&p, "/etc/a-link"));
    assert_eq!(
        p.host_file("alpha", "/etc/target").as_deref(),
        Some("target\n")
    );
    assert_eq!(
        p.host_file("alpha", "/handlers.log").as_deref(),
        Some("reload\n")
    );

    // Nothing there any more: unchanged, no handler.
    let run = p.run(&["apply", "--yes"]).expect(0);
    assert!(
        run.stdout.contains("alpha: no changes (3 files)"),
        "{}",
        run.stdout
    );

    // A directory where a file is to be removed: the host is refused, nothing changes.
    fs::create_dir_all(root.join("etc/old.conf/inside")).expect("dir");
    let run = p.run(&["apply", "--yes"]).expect(1);
    assert!(
        run.stdout.contains(
            "/etc/old.conf is a directory; `state: absent` removes only files and symbolic links"
        ),
        "{}",
        run.stdout
    );
    assert!(root.join("etc/old.conf/inside").is_dir());
}

#[test]
fn newline_applies_to_src_text_only_when_the_entry_sets_it() {
    let p = Project::new();
    p.local_hosts(&[("win", &["alpha"])])
        .file("hosts/group_vars/win.yml", "deploy_newline: \"\\r\\n\"\n")
        .manifest(
            r#"
groups:
  win:
    files:
      - src: as-is.txt
        dest: /a/as-is.txt
      - src: tree
        dest: /a/tree
        newline: crlf
"#,
        )
        .file("files/as-is.txt", "one\ntwo\n")
        .file("files/tree/text.txt", "one\ntwo\n")
        .bytes("files/tree/blob.bin", b"one\ntwo\n\0");
    p.run(&["apply", "--yes"]).expect(0);
    // The host's deploy_newline is for templates; a src file keeps its bytes.
    assert_eq!(
        host_bytes(&p, "/a/as-is.txt").as_deref(),
        Some(&b"one\ntwo\n"[..])
    );
    assert_eq!(
        host_bytes(&p, "/a/tree/text.txt").as_deref(),
        Some(&b"one\r\ntwo\r\n"[..])
    );
    // Binary content is never converted.
    assert_eq!(
        host_bytes(&p, "/a/tree/blob.bin").as_deref(),
        Some(&b"one\ntwo\n\0"[..])
    );
}

/// The error `plan` gives for `manifest` with these files/ (no host touched).
fn manifest_error(manifest: &str, setup: impl Fn(&Project)) -> String {
    let p = Project::new();
    p.local_hosts(&[("web", &["alpha"])]).manifest(manifest);
    setup(&p);
    let run = p.run(&["plan"]).expect(1);
    assert!(!p.path().join("roots").exists(), "a host was touched");
    p.filter(&run.stderr)
}

#[test]
fn bad_src_entries_are_config_errors_naming_the_line() {
    let head = "groups:\n  web:\n    files:\n";
    let err = manifest_error(
        &format!("{head}      - src: nope\n        dest: /a\n"),
        |_| {},
    );
    assert_eq!(
        err,
        "error: [REPO]/hosts/deploy.yml:4:14: files/nope does not exist\n"
    );
    let err = manifest_error(
        &format!("{head}      - src: one.txt\n        dest: /a\n        delete: true\n"),
        |p| {
            p.file("files/one.txt", "1\n");
        },
    );
    assert_eq!(
        err,
        "error: [REPO]/hosts/deploy.yml:6:17: `delete: true` needs a folder, and files/one.txt is a file\n"
    );
    let err = manifest_error(
        &format!("{head}      - src: tree\n        dest: /a\n"),
        |p| {
            p.file("files/tree/ok.txt", "1\n");
            std::os::unix::fs::symlink("/etc/passwd", p.path().join("files/tree/passwd"))
                .expect("ln");
        },
    );
    assert!(
        err.contains("deploy.yml:4:14: files/tree/passwd is a symbolic link; deploy copies regular files and folders only"),
        "{err}"
    );
    let err = manifest_error(
        &format!(
            "{head}      - src: one.txt\n        dest: /a\n      - dest: /a\n        state: absent\n"
        ),
        |p| {
            p.file("files/one.txt", "1\n");
        },
    );
    assert!(
        err.contains("/a is written by group `web` (files/one.txt) and removed by `state: absent` of group `web`"),
        "{err}"
    );
}

#[test]
fn too_many_entries_under_a_delete_dest_is_a_clear_error() {
    let p = Project::new();
    p.local_hosts(&[("web", &["alpha"])])
        .manifest("groups:\n  web:\n    files:\n      - src: tree\n        dest: /big\n        delete: true\n")
        .file("files/tree/a.txt", "a\n");
    let big = p.host_root("alpha").join("big/many");
    fs::create_dir_all(&big).expect("mkdir");
    for i in 0..deploy::transport::MAX_TREE_ENTRIES {
        fs::write(big.join(i.to_string()), "").expect("write");
    }
    let run = p.run(&["plan"]).expect(1);
    assert!(
        run.stdout.contains(&format!(
            "/big: more than {} entries under /big",
            deploy::transport::MAX_TREE_ENTRIES
        )),
        "{}",
        run.stdout
    );
}

#[test]
fn rev_reads_files_of_that_commit() {
    let p = Project::new();
    p.local_hosts(&[("web", &["alpha"])])
        .manifest("groups:\n  web:\n    files:\n      - src: site\n        dest: /srv/site\n        delete: true\n")
        .file("files/site/a.txt", "version one\n")
        .bytes("files/site/b.bin", &noise(3000, 7))
        .file(".gitignore", "roots/\nhome/\n");
    p.git(&["init", "-q", "-b", "main"]);
    p.git(&["add", "-A"]);
    p.git(&["commit", "-qm", "one"]);
    p.file("files/site/a.txt", "version two\n");
    fs::remove_file(p.path().join("files/site/b.bin")).expect("rm");
    p.git(&["commit", "-qam", "two"]);

    p.run(&["apply", "--yes"]).expect(0);
    assert!(!exists(&p, "/srv/site/b.bin"));
    // Work in progress in files/ is not what --rev renders.
    p.file("files/site/a.txt", "uncommitted\n");
    let plan = p.run(&["plan", "--rev", "HEAD~1"]).expect(0);
    assert!(
        plan.stdout.contains("-version two\n") && plan.stdout.contains("+version one\n"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("  + /srv/site/b.bin (mode 0644)\n      binary, 2.9 KiB"),
        "{}",
        plan.stdout
    );
    p.run(&["apply", "--yes", "--rev", "HEAD~1"]).expect(0);
    assert_eq!(
        p.host_file("alpha", "/srv/site/a.txt").as_deref(),
        Some("version one\n")
    );
    assert_eq!(host_bytes(&p, "/srv/site/b.bin"), Some(noise(3000, 7)));
    assert_eq!(
        fs::read_to_string(p.path().join("files/site/a.txt")).expect("wip"),
        "uncommitted\n"
    );
    // Back to HEAD: b.bin is removed again, as the working tree at HEAD says.
    p.run(&["apply", "--yes", "--rev", "HEAD"]).expect(0);
    assert!(!exists(&p, "/srv/site/b.bin"));
}

#[test]
fn a_saved_plan_with_a_removal_is_refused_when_that_file_changed_or_vanished() {
    let p = Project::new();
    p.local_hosts(&[("web", &["alpha"])])
        .manifest("groups:\n  web:\n    files:\n      - src: site\n        dest: /srv/site\n        delete: true\n      - dest: /etc/old\n        state: absent\n")
        .file("files/site/a.txt", "a\n");
    p.run(&["apply", "--yes"]).expect(0);
    let root = p.host_root("alpha");
    let plan_file = p.path().join("cleanup.plan");
    let plan_arg = plan_file.to_str().expect("utf-8");
    let stray = root.join("srv/site/stray.txt");

    // Saved while stray.txt holds one thing; it changes before apply: refused, kept.
    fs::write(&stray, "one\n").expect("stray");
    p.run(&["plan", "--out", plan_arg]).expect(0);
    let saved = fs::read_to_string(&plan_file).expect("plan");
    assert!(saved.contains("/srv/site/stray.txt"), "{saved}");
    assert!(
        !saved.contains("one\\n"),
        "no content in a saved plan: {saved}"
    );
    fs::write(&stray, "two\n").expect("stray");
    let run = p.run(&["apply", plan_arg]).expect(1);
    assert!(
        run.stderr.contains(
            "/srv/site/stray.txt, to be removed, changed on the host since the plan was made"
        ),
        "{}",
        run.stderr
    );
    assert!(stray.exists());

    // Saved, then the file vanishes and another appears where state: absent looks.
    p.run(&["plan", "--out", plan_arg]).expect(0);
    fs::remove_file(&stray).expect("rm");
    fs::create_dir_all(root.join("etc")).expect("etc");
    fs::write(root.join("etc/old"), "old\n").expect("old");
    let run = p.run(&["apply", plan_arg]).expect(1);
    assert!(
        run.stderr
            .contains("/srv/site/stray.txt was to be removed, and is no longer"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("/etc/old is now to be removed"),
        "{}",
        run.stderr
    );
    assert!(root.join("etc/old").exists());

    // A fresh plan applies as saved.
    p.run(&["plan", "--out", plan_arg]).expect(0);
    p.run(&["apply", plan_arg]).expect(0);
    assert!(!root.join("etc/old").exists());
}

#[test]
fn check_sees_yaml_src_files() {
    let p = Project::new();
    p.local_hosts(&[("web", &["alpha"])])
        .manifest(
            r#"
checks:
  - name: the copied config keeps two workers
    that: files['/etc/app.yaml'].workers == 2
    message: "workers is {{ files['/etc/app.yaml'].workers }}"
groups:
  web:
    files:
      - src: app.yaml
        dest: /etc/app.yaml
      - src: blob.bin
        dest: /etc/blob.bin
"#,
        )
        .file("files/app.yaml", "workers: 3\n")
        .bytes("files/blob.bin", &noise(100, 3));
    let run = p.run(&["check"]).expect(1);
    assert!(run.stdout.contains("workers is 3"), "{}", run.stdout);
    p.file("files/app.yaml", "workers: 2\n");
    p.run(&["check"]).expect(0);
    assert!(!Path::new(&p.host_root("alpha")).exists());
}

#[test]
fn delete_true_never_removes_the_hosts_state_record_or_lock() {
    let p = Project::new();
    p.local_hosts(&[("web", &["alpha"])])
        .file(
            "hosts/group_vars/web.yml",
            "deploy_state_path: /srv/app/.deploy/state.json\n",
        )
        .manifest("groups:\n  web:\n    files:\n      - src: app\n        dest: /srv/app\n        delete: true\n")
        .file("files/app/run.sh", "#!/bin/sh\n");
    p.run(&["apply", "--yes"]).expect(0);
    assert!(exists(&p, "/srv/app/.deploy/state.json"));
    // A lock left by a crashed run stays for `deploy unlock` to judge.
    fs::write(p.host_root("alpha").join("srv/app/.deploy/lock.json"), "{}").expect("lock");
    let plan = p.run(&["plan"]).expect(0);
    assert!(
        plan.stdout.contains("alpha: no changes (1 file)"),
        "{}",
        plan.stdout
    );
}
