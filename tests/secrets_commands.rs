//! `deploy secrets init | set | view | edit | rekey`, checked with the real `age` CLI.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use crate::support::age;
use crate::support::project::Project;

fn identity_of(p: &Project) -> PathBuf {
    p.path().join("home/.config/deploy/identity.txt")
}

fn initialised() -> Project {
    let p = Project::new();
    p.run(&["secrets", "init"]).expect(0);
    p
}

#[test]
fn init_creates_a_private_identity_and_a_recipient_once() {
    let p = initialised();
    let identity = identity_of(&p);
    let mode = std::fs::metadata(&identity).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let recipients = std::fs::read_to_string(p.path().join("secrets/recipients.txt")).unwrap();
    assert_eq!(
        recipients.lines().filter(|l| l.starts_with("age1")).count(),
        1
    );
    p.run(&["secrets", "init"]).expect(0);
    let again = std::fs::read_to_string(p.path().join("secrets/recipients.txt")).unwrap();
    assert_eq!(again, recipients, "init twice adds nothing");
}

#[test]
fn set_reads_the_value_from_stdin_and_age_can_decrypt_it() {
    let p = initialised();
    p.run_full(
        &["secrets", "set", "motoko", "openai_api_key"],
        &[],
        Some("sk-from-stdin\n"),
    )
    .expect(0);
    p.run_full(
        &["secrets", "set", "motoko", "litellm_bearer_token"],
        &[],
        Some("mkt-2"),
    )
    .expect(0);
    let file = p.path().join("secrets/motoko.yml.age");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
        "armored: {text}"
    );
    let plain = age::decrypt(&identity_of(&p), &file).expect("age decrypts deploy's file");
    assert_eq!(
        plain,
        "openai_api_key: sk-from-stdin\nlitellm_bearer_token: mkt-2\n"
    );
    let view = p.run(&["secrets", "view", "motoko"]).expect(0);
    assert_eq!(view.stdout, plain);
}

#[test]
fn edit_with_a_scripted_editor() {
    let p = initialised();
    p.run_full(&["secrets", "set", "all", "token"], &[], Some("old-value"))
        .expect(0);
    let file = p.path().join("secrets/all.yml.age");
    let runtime = p.path().join("runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    let runtime_env = runtime.to_str().unwrap();

    // An editor that saves nothing new: the file stays byte-identical.
    let before = std::fs::read(&file).unwrap();
    let run = p.run_full(
        &["secrets", "edit", "all"],
        &[("EDITOR", "true"), ("XDG_RUNTIME_DIR", runtime_env)],
        None,
    );
    let run = run.expect(0);
    assert!(run.stdout.contains("unchanged"), "{}", run.stdout);
    assert_eq!(std::fs::read(&file).unwrap(), before);

    // A real change, through $VISUAL (which wins over $EDITOR).
    let env = [
        ("VISUAL", "sed -i s/old-value/new-value/"),
        ("EDITOR", "false"),
        ("XDG_RUNTIME_DIR", runtime_env),
    ];
    p.run_full(&["secrets", "edit", "all"], &env, None)
        .expect(0);
    assert_eq!(
        age::decrypt(&identity_of(&p), &file).unwrap(),
        "token: new-value\n"
    );

    // Invalid YAML: refused, file untouched.
    let before = std::fs::read(&file).unwrap();
    let env = [
        ("EDITOR", "sh -c 'echo \"a: [\" > \"$1\"' sh"),
        ("XDG_RUNTIME_DIR", runtime_env),
    ];
    let run = p
        .run_full(&["secrets", "edit", "all"], &env, None)
        .expect(1);
    assert!(run.stderr.contains("nothing was saved"), "{}", run.stderr);
    assert_eq!(std::fs::read(&file).unwrap(), before);

    // A failing editor: nothing saved either.
    let env = [("EDITOR", "false"), ("XDG_RUNTIME_DIR", runtime_env)];
    p.run_full(&["secrets", "edit", "all"], &env, None)
        .expect(1);
    assert_eq!(std::fs::read(&file).unwrap(), before);

    // Every plaintext copy is gone.
    let left: Vec<_> = std::fs::read_dir(&runtime).unwrap().collect();
    assert!(left.is_empty(), "plaintext copies left behind: {left:?}");

    // A new file is created by edit.
    let env = [
        ("EDITOR", "sh -c 'echo \"k: v\" > \"$1\"' sh"),
        ("XDG_RUNTIME_DIR", runtime_env),
    ];
    p.run_full(&["secrets", "edit", "web"], &env, None)
        .expect(0);
    assert_eq!(
        age::decrypt(&identity_of(&p), &p.path().join("secrets/web.yml.age")).unwrap(),
        "k: v\n"
    );
}

#[test]
fn rekey_after_removing_a_recipient_locks_the_old_key_out() {
    let p = initialised();
    // A second person's key.
    let (bob, bob_public) = age::keygen(p.path(), "bob.txt");
    let recipients = p.path().join("secrets/recipients.txt");
    let mine = std::fs::read_to_string(&recipients).unwrap();
    std::fs::write(&recipients, format!("{mine}# bob\n{bob_public}\n")).unwrap();
    p.run_full(&["secrets", "set", "all", "k"], &[], Some("shared"))
        .expect(0);
    let file = p.path().join("secrets/all.yml.age");
    assert!(
        age::decrypt(&bob, &file).is_some(),
        "bob can read it while a recipient"
    );

    std::fs::write(&recipients, &mine).unwrap();
    let run = p.run(&["secrets", "rekey"]).expect(0);
    assert!(
        run.stdout.contains("all.yml.age: re-encrypted"),
        "{}",
        run.stdout
    );
    assert!(
        age::decrypt(&bob, &file).is_none(),
        "bob's key no longer decrypts"
    );
    assert_eq!(
        age::decrypt(&identity_of(&p), &file).unwrap(),
        "k: shared\n"
    );
}

#[test]
fn ctrl_c_in_the_editor_leaves_no_plaintext_copy() {
    let p = initialised();
    p.run_full(&["secrets", "set", "all", "token"], &[], Some("v1"))
        .expect(0);
    let before = std::fs::read(p.path().join("secrets/all.yml.age")).unwrap();
    let runtime = p.path().join("runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    // The "editor" sends SIGINT to deploy (its parent shell's parent) as a terminal's Ctrl-C
    // would, then fails.
    let editor = "sh -c 'kill -INT $(ps -o ppid= -p $PPID); exit 130' sh";
    let run = p.run_full(
        &["secrets", "edit", "all"],
        &[
            ("EDITOR", editor),
            ("XDG_RUNTIME_DIR", runtime.to_str().unwrap()),
        ],
        None,
    );
    assert_ne!(run.code, 0);
    assert_eq!(
        std::fs::read(p.path().join("secrets/all.yml.age")).unwrap(),
        before
    );
    let left: Vec<_> = std::fs::read_dir(&runtime).unwrap().collect();
    assert!(left.is_empty(), "plaintext copies left behind: {left:?}");
}
