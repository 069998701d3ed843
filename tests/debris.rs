//! Nothing left behind: a write cut mid-way (the SSH session killed, or deploy itself killed
//! with SIGKILL) leaves the old file, and the next apply removes deploy's own stale temporary
//! files and breaks the dead run's lock by itself, so the folders hold exactly the managed
//! files again. Real sshd hosts.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::ssh_apply::SshFleet;

/// 64 MiB of bytes that do not compress, so the upload takes a while even on loopback.
fn big_file(p: &crate::support::project::Project) {
    let mut bytes = vec![0u8; 64 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in bytes.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let path = p.path().join("files/big.bin");
    fs::create_dir_all(path.parent().expect("parent")).expect("files/");
    fs::write(path, bytes).expect("big.bin");
}

fn fleet() -> SshFleet {
    let fleet = SshFleet::new(&["alpha"], true);
    big_file(&fleet.project);
    fleet.project.manifest(
        r#"
groups:
  app:
    files:
      - template: app.conf.j2
        dest: "{{ root }}/etc/app/app.conf"
      - src: big.bin
        dest: "{{ root }}/etc/app/big.bin"
"#,
    );
    fleet
}

/// Names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Starts `deploy apply --yes` and returns once its temporary copy of big.bin is being
/// written (at most 400 × 25 ms).
fn apply_until_mid_write(fleet: &SshFleet) -> std::process::Child {
    let mut child = fleet.project.spawn(&["apply", "--yes"]);
    let dir = fleet.root("alpha").join("etc/app");
    for _ in 0..400 {
        if names(&dir)
            .iter()
            .any(|n| n.starts_with(".big.bin.deploy-"))
        {
            return child;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("no temporary copy of big.bin appeared in {}", dir.display());
}

fn assert_only_managed_files(fleet: &SshFleet) {
    assert_eq!(
        names(&fleet.root("alpha").join("etc/app")),
        ["app.conf", "big.bin"]
    );
    assert_eq!(
        names(&fleet.root("alpha").join("var/lib/deploy")),
        ["state.json"]
    );
}

#[test]
fn a_killed_ssh_session_leaves_nothing_the_next_apply_does_not_clear() {
    let fleet = fleet();
    let sshd = &fleet.servers[0].1;
    let child = apply_until_mid_write(&fleet);
    // Kill every session process of that sshd (its children): the connection is cut.
    let sessions = Command::new("pgrep")
        .args(["-P", &sshd.pid().to_string()])
        .output()
        .expect("pgrep");
    for pid in String::from_utf8_lossy(&sessions.stdout).split_whitespace() {
        let _ = Command::new("kill").args(["-KILL", pid]).status();
    }
    let out = child.wait_with_output().expect("deploy");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        !fleet.root("alpha").join("etc/app/big.bin").exists(),
        "no partial file"
    );

    let run = fleet.project.run(&["apply", "--yes"]).expect(0);
    assert!(run.stdout.contains("broke the lock of"), "{}", run.stdout);
    assert_only_managed_files(&fleet);
    assert_eq!(
        fs::metadata(fleet.root("alpha").join("etc/app/big.bin"))
            .expect("big.bin")
            .len(),
        64 << 20
    );
}

#[test]
fn a_deploy_killed_mid_write_is_cleaned_up_by_the_next_apply() {
    let fleet = fleet();
    let mut child = apply_until_mid_write(&fleet);
    child.kill().expect("SIGKILL deploy");
    let _ = child.wait();

    let run = fleet.project.run(&["apply", "--yes"]).expect(0);
    assert!(run.stdout.contains("broke the lock of"), "{}", run.stdout);
    assert_only_managed_files(&fleet);
}

#[test]
fn stale_temporary_files_of_deploy_are_swept_and_nothing_else() {
    let fleet = SshFleet::new(&["alpha"], true);
    let p = &fleet.project;
    p.run(&["apply", "--yes"]).expect(0);
    let dir = fleet.root("alpha").join("etc/app");
    // What a run that died harder than a cut session left, and files that only look alike.
    fs::write(dir.join(".app.conf.deploy-0123456789abcdef.tmp"), "partial").expect("stale");
    fs::write(dir.join(".app.conf.keep.tmp"), "not deploy's").expect("other");
    fs::write(dir.join("notes.deploy-1.tmp"), "not hidden").expect("other");
    fs::create_dir(dir.join(".x.deploy-1.tmp")).expect("a folder");
    p.file("hosts/group_vars/app.yml", "workers: 9\n");
    let run = p.run(&["apply", "--yes"]).expect(0);
    assert!(
        run.stdout
            .contains("removed a temporary file left by an earlier run that died mid-write"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(".app.conf.deploy-0123456789abcdef.tmp"),
        "{}",
        run.stdout
    );
    assert_eq!(
        names(&dir),
        [
            ".app.conf.keep.tmp",
            ".x.deploy-1.tmp",
            "app.conf",
            "notes.deploy-1.tmp"
        ]
    );
}
