//! The SSH transport against a real OpenSSH sshd on 127.0.0.1 (see `support::sshd`): reads,
//! writes, commands, host key checking and authentication failures.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use deploy::transport::ssh::SshTransport;
use deploy::transport::{RemoteFile, Transport, TransportError, WriteFile};

use crate::support::sshd::{self, HostKey, Sshd};

async fn connect(sshd: &Sshd) -> SshTransport {
    match SshTransport::connect(&sshd.target(), &sshd.options()).await {
        Ok(t) => t,
        Err(e) => panic!("connect failed: {e}\nsshd log:\n{}", sshd.log()),
    }
}

fn path_str(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn wf(path: &Path, content: &[u8], mode: u32) -> WriteFile {
    WriteFile {
        path: path_str(path),
        content: content.to_vec().into(),
        mode,
        owner: None,
        group: None,
        validate: None,
    }
}

fn mode_of(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Names in `dir` that look like our temporary files.
fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".deploy-"))
        .collect()
}

#[tokio::test]
async fn read_reports_every_kind_of_path_in_one_call() {
    let sshd = Sshd::start();
    let d = sshd.dir().join("data");
    fs::create_dir_all(d.join("subdir")).unwrap();
    fs::write(d.join("a.conf"), b"hello\n").unwrap();
    fs::set_permissions(d.join("a.conf"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::write(d.join("empty"), b"").unwrap();
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    fs::write(d.join("bin"), &binary).unwrap();
    fs::set_permissions(d.join("bin"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(d.join("nowhere"), d.join("dangling")).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(d.join("fifo"))
        .status()
        .unwrap();
    assert!(status.success());

    let t = connect(&sshd).await;
    let paths: Vec<String> = [
        "a.conf", "missing", "subdir", "bin", "empty", "fifo", "dangling",
    ]
    .iter()
    .map(|n| path_str(&d.join(n)))
    .collect();
    let files = t.read_files(&paths).await.unwrap();
    assert_eq!(files.len(), paths.len());

    let meta = fs::metadata(d.join("a.conf")).unwrap();
    let RemoteFile::Present(a) = &files[0] else {
        panic!("{:?}", files[0])
    };
    assert_eq!(a.content, b"hello\n");
    assert_eq!(a.mode, 0o640);
    assert_eq!((a.uid, a.gid), (meta.uid(), meta.gid()));
    assert_eq!(a.owner.as_deref(), Some(sshd::current_user().as_str()));
    assert!(a.group.is_some());

    assert_eq!(files[1], RemoteFile::Missing);
    assert_eq!(files[2], RemoteFile::Unusable("a directory".into()));
    let RemoteFile::Present(b) = &files[3] else {
        panic!("{:?}", files[3])
    };
    assert_eq!(b.content, binary);
    assert_eq!(b.mode, 0o600);
    let RemoteFile::Present(e) = &files[4] else {
        panic!("{:?}", files[4])
    };
    assert!(e.content.is_empty());
    assert!(matches!(&files[5], RemoteFile::Unusable(t) if t.contains("not a regular file")));
    // A link is reported as one, never read through.
    assert_eq!(files[6], RemoteFile::Symlink(path_str(&d.join("nowhere"))));

    assert_eq!(t.read_files(&[]).await.unwrap(), vec![]);
    t.close().await;
}

#[tokio::test]
async fn binary_content_round_trips() {
    let sshd = Sshd::start();
    let t = connect(&sshd).await;
    let p = sshd.dir().join("out/blob");
    // Every byte value, NULs and newlines included, and more than one SSH window's worth.
    let mut content: Vec<u8> = (0..=255u8).collect();
    let mut x: u32 = 1;
    for _ in 0..3_000_000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        content.push((x >> 16) as u8);
    }
    t.write_files(&[wf(&p, &content, 0o644)]).await.unwrap();
    assert_eq!(fs::read(&p).unwrap(), content);
    let back = t.read_files(&[path_str(&p)]).await.unwrap();
    let RemoteFile::Present(state) = &back[0] else {
        panic!("{:?}", back[0])
    };
    assert_eq!(state.content, content);
    t.close().await;
}

#[tokio::test]
async fn write_creates_parents_and_sets_modes_exactly() {
    let sshd = Sshd::start();
    let t = connect(&sshd).await;
    let d = sshd.dir().join("w");
    let a = d.join("x/y/z/a.conf");
    let b = d.join("x/b.env");
    let c = d.join("c");
    t.write_files(&[
        wf(&a, b"alpha\n", 0o640),
        wf(&b, b"SECRET=1\n", 0o600),
        wf(&c, b"", 0o755),
    ])
    .await
    .unwrap();
    assert_eq!(fs::read(&a).unwrap(), b"alpha\n");
    assert_eq!(mode_of(&a), 0o640);
    assert_eq!(fs::read(&b).unwrap(), b"SECRET=1\n");
    assert_eq!(mode_of(&b), 0o600);
    assert_eq!(fs::read(&c).unwrap(), b"");
    assert_eq!(mode_of(&c), 0o755);
    for dir in [d.clone(), d.join("x"), d.join("x/y/z")] {
        assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
    }

    // Owner and group by name and by number (we are the owner already, so this must work).
    let user = sshd::current_user();
    let mut f = wf(&c, b"owned\n", 0o644);
    f.owner = Some(user);
    f.group = Some(fs::metadata(&c).unwrap().gid().to_string());
    t.write_files(&[f]).await.unwrap();
    assert_eq!(fs::read(&c).unwrap(), b"owned\n");
    assert_eq!(mode_of(&c), 0o644);
    t.close().await;
}

#[tokio::test]
async fn write_replaces_atomically_and_leaves_no_temp_files() {
    let sshd = Sshd::start();
    let t = connect(&sshd).await;
    let d = sshd.dir().join("r");
    fs::create_dir_all(&d).unwrap();
    let p = d.join("config.yml");
    fs::write(&p, b"old\n").unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    let old_inode = fs::metadata(&p).unwrap().ino();
    // A hard link keeps the old inode alive: it must still hold the old bytes afterwards,
    // which shows the new content went to a new file that was renamed over the path.
    fs::hard_link(&p, d.join("old-link")).unwrap();

    t.write_files(&[wf(&p, b"new\n", 0o600)]).await.unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"new\n");
    assert_ne!(fs::metadata(&p).unwrap().ino(), old_inode);
    assert_eq!(fs::read(d.join("old-link")).unwrap(), b"old\n");
    assert_eq!(mode_of(&p), 0o600);
    let mut names: Vec<String> = fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["config.yml", "old-link"]);
    t.close().await;
}

#[tokio::test]
async fn write_and_read_paths_with_spaces_quotes_and_shell_characters() {
    let sshd = Sshd::start();
    let t = connect(&sshd).await;
    let d = sshd.dir().join("dir with space/it's \"quoted\"");
    let p = d.join("a $HOME `id` ; b'c\\d *.txt");
    let q = d.join("-starts-with-dash");
    t.write_files(&[wf(&p, b"spaces\n", 0o640), wf(&q, b"dash\n", 0o644)])
        .await
        .unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"spaces\n");
    assert_eq!(fs::read(&q).unwrap(), b"dash\n");
    let got = t.read_files(&[path_str(&p), path_str(&q)]).await.unwrap();
    assert!(matches!(&got[0], RemoteFile::Present(s) if s.content == b"spaces\n"));
    assert!(matches!(&got[1], RemoteFile::Present(s) if s.content == b"dash\n"));
    assert!(leftovers(&d).is_empty());
    t.close().await;
}

#[tokio::test]
async fn failed_write_replaces_nothing_and_names_the_path() {
    let sshd = Sshd::start();
    let t = connect(&sshd).await;
    let d = sshd.dir().join("f");
    fs::create_dir_all(&d).unwrap();
    let good = d.join("good");
    fs::write(&good, b"before\n").unwrap();
    // The second file's parent is a regular file, so its directory cannot be made.
    fs::write(d.join("plain"), b"").unwrap();
    let bad = d.join("plain/sub/file");
    let dir_dest = d.join("adir");
    fs::create_dir_all(&dir_dest).unwrap();

    let err = t
        .write_files(&[wf(&good, b"after\n", 0o644), wf(&bad, b"x", 0o644)])
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&path_str(&bad)), "{text}");
    assert!(
        text.contains("Not a directory") || text.contains("File exists"),
        "{text}"
    );
    assert_eq!(fs::read(&good).unwrap(), b"before\n");
    assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));

    // A directory in the way of a destination is refused, not written into.
    let err = t
        .write_files(&[wf(&good, b"after\n", 0o644), wf(&dir_dest, b"x", 0o644)])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is a directory"), "{err}");
    assert_eq!(fs::read(&good).unwrap(), b"before\n");
    assert!(fs::read_dir(&dir_dest).unwrap().next().is_none());
    assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));

    // The connection is still usable after a failed batch.
    t.write_files(&[wf(&good, b"after\n", 0o644)])
        .await
        .unwrap();
    assert_eq!(fs::read(&good).unwrap(), b"after\n");
    t.close().await;
}

#[tokio::test]
async fn run_returns_stdout_stderr_and_status() {
    let sshd = Sshd::start();
    let t = connect(&sshd).await;
    let out = t.run("echo out; echo err >&2; exit 3").await.unwrap();
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    assert_eq!(out.status, Some(3));
    assert!(!out.success());

    // The sessions' HOME is the fixture's, and stdin is at EOF (cat returns at once).
    let out = t.run("printf %s \"$HOME\"; cat").await.unwrap();
    assert!(out.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), path_str(&sshd.home()));

    // Channels are multiplexed on the one connection: several at once.
    let commands: Vec<String> = (0..8).map(|i| format!("sleep 0.2; echo {i}")).collect();
    let outs = futures::future::join_all(commands.iter().map(|c| t.run(c))).await;
    for (i, out) in outs.into_iter().enumerate() {
        assert_eq!(out.unwrap().stdout, format!("{i}\n").into_bytes());
    }

    t.close().await;
    assert!(t.run("true").await.is_err());
}

#[tokio::test]
async fn unknown_host_key_is_refused_with_its_fingerprint() {
    let sshd = Sshd::start();
    fs::write(sshd.known_hosts(), "").unwrap();
    let err = SshTransport::connect(&sshd.target(), &sshd.options())
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::HostKey(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&sshd.host_key_fingerprint(HostKey::Ed25519)),
        "{text}"
    );
    assert!(text.contains("--accept-new-host-keys"), "{text}");
    assert!(
        text.contains(&format!("[127.0.0.1]:{}", sshd.port())),
        "{text}"
    );
}

#[tokio::test]
async fn accept_new_records_the_key_and_the_next_connect_works() {
    let sshd = Sshd::start();
    let file = sshd.home().join(".ssh/known_hosts");
    let mut opts = sshd.options();
    opts.known_hosts_files = vec![file.clone(), sshd.dir().join("absent")];
    opts.accept_new_host_keys = true;
    let t = SshTransport::connect(&sshd.target(), &opts).await.unwrap();
    assert!(t.run("true").await.unwrap().success());
    t.close().await;

    let text = fs::read_to_string(&file).unwrap();
    assert_eq!(
        text,
        format!(
            "[127.0.0.1]:{} {}\n",
            sshd.port(),
            sshd.host_key_line(HostKey::Ed25519)
        )
    );
    assert_eq!(mode_of(file.parent().unwrap()), 0o700);

    opts.accept_new_host_keys = false;
    let t = SshTransport::connect(&sshd.target(), &opts).await.unwrap();
    assert!(t.run("true").await.unwrap().success());
    t.close().await;
    // Known now: nothing appended a second time.
    assert_eq!(fs::read_to_string(&file).unwrap(), text);
}

#[tokio::test]
async fn changed_host_key_is_refused_naming_file_and_line() {
    let sshd = Sshd::start();
    let other = sshd.dir().join("other_key");
    sshd::keygen(&other, &["-t", "ed25519"]);
    let other_line = fs::read_to_string(other.with_extension("pub")).unwrap();
    fs::write(
        sshd.known_hosts(),
        format!(
            "# the test's known_hosts\n[127.0.0.1]:{} {other_line}",
            sshd.port()
        ),
    )
    .unwrap();
    let mut opts = sshd.options();
    // Even accept-new does not let a changed key through.
    opts.accept_new_host_keys = true;
    let err = SshTransport::connect(&sshd.target(), &opts)
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::HostKey(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("{}:2", sshd.known_hosts().display())),
        "{text}"
    );
    assert!(text.contains("CHANGED"), "{text}");
    assert!(
        text.contains(&format!("[127.0.0.1]:{}", sshd.port())),
        "{text}"
    );
}

#[tokio::test]
async fn revoked_host_key_is_refused() {
    let sshd = Sshd::start();
    let line = sshd.host_key_line(HostKey::Ed25519);
    fs::write(
        sshd.known_hosts(),
        format!("[127.0.0.1]:{} {line}\n@revoked * {line}\n", sshd.port()),
    )
    .unwrap();
    let err = SshTransport::connect(&sshd.target(), &sshd.options())
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::HostKey(_)), "{err}");
    assert!(err.to_string().contains("revoked"), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("{}:2", sshd.known_hosts().display())),
        "{err}"
    );
}

#[tokio::test]
async fn hashed_known_hosts_entry_is_accepted() {
    let sshd = Sshd::start();
    let status = std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(sshd.known_hosts())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        fs::read_to_string(sshd.known_hosts())
            .unwrap()
            .starts_with("|1|")
    );
    let t = connect(&sshd).await;
    assert!(t.run("true").await.unwrap().success());
    t.close().await;
}

#[tokio::test]
async fn rsa_only_known_hosts_with_a_server_that_has_rsa_and_ed25519() {
    let sshd = Sshd::builder()
        .host_keys(&[HostKey::Ed25519, HostKey::Rsa])
        .known_hosts_keys(&[HostKey::Rsa])
        .start();
    let t = connect(&sshd).await;
    assert!(t.run("true").await.unwrap().success());
    t.close().await;
}

#[tokio::test]
async fn nothing_listening_fails_fast_with_a_clear_error() {
    let sshd = Sshd::start();
    let mut target = sshd.target();
    target.port = sshd::free_port();
    let started = Instant::now();
    let err = SshTransport::connect(&target, &sshd.options())
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(matches!(err, TransportError::Connect(_)), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "cannot connect: 127.0.0.1:{}: Connection refused",
            target.port
        )
    );
}

#[tokio::test]
async fn wrong_client_key_fails_authentication_clearly() {
    let sshd = Sshd::start();
    let wrong = sshd.dir().join("wrong_key");
    sshd::keygen(&wrong, &["-t", "ed25519"]);
    let mut target = sshd.target();
    target.private_key_file = Some(wrong.clone());
    let err = SshTransport::connect(&target, &sshd.options())
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Auth(_)), "{err}");
    let text = err.to_string();
    assert!(text.contains("refused the key"), "{text}");
    assert!(text.contains(&path_str(&wrong)), "{text}");

    // A key file that does not exist is named too.
    target.private_key_file = Some(sshd.dir().join("no_such_key"));
    let err = SshTransport::connect(&target, &sshd.options())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no_such_key"), "{err}");
}

#[tokio::test]
async fn default_key_files_are_used_without_a_key_file() {
    let sshd = Sshd::start();
    let ssh_dir = sshd.home().join(".ssh");
    fs::create_dir_all(&ssh_dir).unwrap();
    fs::copy(sshd.client_key(), ssh_dir.join("id_ed25519")).unwrap();
    let mut target = sshd.target();
    target.private_key_file = None;
    // If SSH_AUTH_SOCK is set, the agent's keys are tried (and refused) first; the default
    // key file must still get us in.
    let t = SshTransport::connect(&target, &sshd.options())
        .await
        .unwrap();
    assert!(t.run("true").await.unwrap().success());
    t.close().await;
}

/// A private ssh-agent holding `key`; killed on drop.
struct Agent {
    socket: std::path::PathBuf,
    child: std::process::Child,
}

impl Agent {
    /// `name`: the socket's file name in `dir` (a killed agent leaves its socket behind).
    fn start(dir: &Path, name: &str, key: Option<&Path>) -> Agent {
        let socket = dir.join(name);
        // -D: stay in the foreground as our child, so we can kill exactly it.
        let child = std::process::Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let agent = Agent { socket, child };
        for _ in 0..100 {
            if agent.socket.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(key) = key {
            let status = std::process::Command::new("ssh-add")
                .arg(key)
                .env("SSH_AUTH_SOCK", &agent.socket)
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(status.success());
        }
        agent
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn ssh_agent_keys_are_used_before_default_files() {
    let sshd = Sshd::start();
    let mut target = sshd.target();
    target.private_key_file = None;

    let agent = Agent::start(sshd.dir(), "agent1.sock", Some(&sshd.client_key()));
    let t = SshTransport::connect_with_agent(&target, &sshd.options(), Some(&agent.socket))
        .await
        .unwrap();
    assert!(t.run("true").await.unwrap().success());
    t.close().await;
    drop(agent);

    // An agent with only a wrong key: refused, and the message says what was tried.
    let wrong = sshd.dir().join("wrong_key");
    sshd::keygen(&wrong, &["-t", "ed25519"]);
    let agent = Agent::start(sshd.dir(), "agent2.sock", Some(&wrong));
    let err = SshTransport::connect_with_agent(&target, &sshd.options(), Some(&agent.socket))
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Auth(_)), "{err}");
    assert!(err.to_string().contains("agent key"), "{err}");
}

#[tokio::test]
async fn rsa_client_key_signs_with_sha2() {
    // OpenSSH 8.8+ refuses ssh-rsa (SHA-1) signatures, so getting in shows rsa-sha2-* was used.
    let sshd = Sshd::start();
    let rsa = sshd.dir().join("client_rsa");
    sshd::keygen(&rsa, &["-t", "rsa", "-b", "2048"]);
    let mut authorized = fs::read_to_string(sshd.dir().join("authorized_keys")).unwrap();
    authorized.push_str(&fs::read_to_string(rsa.with_extension("pub")).unwrap());
    fs::write(sshd.dir().join("authorized_keys"), authorized).unwrap();
    let mut target = sshd.target();
    target.private_key_file = Some(rsa);
    let t = SshTransport::connect(&target, &sshd.options())
        .await
        .unwrap();
    assert!(t.run("true").await.unwrap().success());
    t.close().await;
}
