//! A real OpenSSH `sshd` on 127.0.0.1 for integration tests.
//!
//! In: what host keys the server has and which of them `known_hosts` lists ([`SshdBuilder`]).
//! Out: a running [`Sshd`] on a free loopback port, with everything it needs in one
//! [`tempfile::TempDir`]: throwaway host keys, a client key in `authorized_keys`, a
//! `known_hosts` file in `[127.0.0.1]:PORT` form, and `home/` (the sessions' `HOME`, so the
//! machine's own `~/.bashrc` is not sourced). The server logs in the current user, is killed
//! when the [`Sshd`] is dropped, and its log is `sshd.log` in the folder.
//!
//! ```ignore
//! let sshd = Sshd::start();                  // ed25519 host key, listed in known_hosts
//! let t = SshTransport::connect(&sshd.target(), &sshd.options()).await?;
//! ```

#![allow(dead_code)] // Not every test binary module uses every accessor.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use deploy::transport::{SshOptions, SshTarget};
use tempfile::TempDir;

/// The absolute path sshd insists on being started by (it re-executes itself).
const SSHD: &str = "/usr/sbin/sshd";
/// Wait for the port to accept: at most 100 × 50 ms.
const READY_TRIES: u32 = 100;
const READY_PAUSE: Duration = Duration::from_millis(50);
/// Another process can take the free port between our probe and sshd's bind; retry that.
const START_ATTEMPTS: u32 = 5;

/// A host key type the test server can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKey {
    Ed25519,
    Rsa,
}

impl HostKey {
    fn file_name(self) -> &'static str {
        match self {
            HostKey::Ed25519 => "ssh_host_ed25519_key",
            HostKey::Rsa => "ssh_host_rsa_key",
        }
    }

    fn keygen_args(self) -> &'static [&'static str] {
        match self {
            HostKey::Ed25519 => &["-t", "ed25519"],
            // 2048 bits: enough for a throwaway key and quicker to make than the default.
            HostKey::Rsa => &["-t", "rsa", "-b", "2048"],
        }
    }
}

/// Options for [`Sshd`]; [`Sshd::builder`] makes one.
#[derive(Debug, Clone)]
pub struct SshdBuilder {
    host_keys: Vec<HostKey>,
    known: Option<Vec<HostKey>>,
    login: Option<String>,
    path: Option<String>,
}

impl SshdBuilder {
    /// The server's host keys, in the order sshd is told about them. Default: ed25519 only.
    pub fn host_keys(mut self, keys: &[HostKey]) -> Self {
        self.host_keys = keys.to_vec();
        self
    }

    /// Which host keys `known_hosts` lists. Default: all of them.
    pub fn known_hosts_keys(mut self, keys: &[HostKey]) -> Self {
        self.known = Some(keys.to_vec());
        self
    }

    /// The user the client key logs in as (default: the one running the tests). The folder
    /// is made readable for that user, and `home/` its own.
    pub fn login_user(mut self, user: &str) -> Self {
        self.login = Some(user.to_string());
        self
    }

    /// The sessions' `PATH` (sshd's `SetEnv`), e.g. one without sudo on it.
    pub fn session_path(mut self, path: &str) -> Self {
        self.path = Some(path.to_string());
        self
    }

    /// Makes the keys and files and starts sshd; panics (it is a test fixture) with sshd's
    /// log if it does not come up.
    pub fn start(self) -> Sshd {
        assert!(!self.host_keys.is_empty(), "sshd needs a host key");
        let dir = tempfile::Builder::new()
            .prefix("deploy-sshd-")
            .tempdir()
            .expect("temp dir");
        let root = dir.path().to_path_buf();
        fs::create_dir_all(root.join("home")).expect("home dir");
        for kind in &self.host_keys {
            keygen(&root.join(kind.file_name()), kind.keygen_args());
        }
        let client_key = root.join("client_ed25519");
        keygen(&client_key, &["-t", "ed25519"]);
        fs::copy(
            root.join("client_ed25519.pub"),
            root.join("authorized_keys"),
        )
        .expect("authorized_keys");
        if let Some(user) = &self.login {
            // sshd reads authorized_keys as the user; the sessions' HOME is theirs.
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).expect("chmod dir");
            fs::set_permissions(
                root.join("authorized_keys"),
                fs::Permissions::from_mode(0o644),
            )
            .expect("chmod authorized_keys");
            let status = Command::new("chown")
                .arg(format!("{user}:"))
                .arg(root.join("home"))
                .status()
                .expect("chown");
            assert!(status.success(), "chown home to {user}");
        }

        // sshd refuses to start without its privilege separation folder, normally made by the
        // system service's unit.
        fs::create_dir_all("/run/sshd").expect("/run/sshd");

        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let config = root.join("sshd_config");
            let mut text = sshd_config(&root, port, &self.host_keys);
            if let Some(path) = &self.path {
                text = text.replace("SetEnv HOME=", &format!("SetEnv PATH={path} HOME="));
            }
            fs::write(&config, text).expect("sshd_config");
            let log = fs::File::create(root.join("sshd.log")).expect("sshd.log");
            let mut child = Command::new(SSHD)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("cannot start /usr/sbin/sshd (is openssh-server installed?)");
            match wait_ready(&mut child, port, &root.join("sshd.log")) {
                Ok(()) => {
                    let sshd = Sshd {
                        port,
                        child,
                        host_keys: self.host_keys.clone(),
                        login: self.login.clone().unwrap_or_else(current_user),
                        dir,
                    };
                    let known = self.known.unwrap_or(self.host_keys);
                    let text: String = known
                        .iter()
                        .map(|k| format!("[127.0.0.1]:{port} {}\n", sshd.host_key_line(*k)))
                        .collect();
                    fs::write(sshd.known_hosts(), text).expect("known_hosts");
                    return sshd;
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = fs::read_to_string(root.join("sshd.log")).unwrap_or_default();
                    last_error = format!("{e}\nsshd.log:\n{log}");
                }
            }
        }
        panic!("sshd did not start after {START_ATTEMPTS} attempts: {last_error}");
    }
}

/// A running sshd; killed on drop.
#[derive(Debug)]
pub struct Sshd {
    port: u16,
    child: Child,
    host_keys: Vec<HostKey>,
    login: String,
    // Declared last: dropped after the child is killed.
    dir: TempDir,
}

impl Sshd {
    /// Starts with the default options (ed25519 host key, listed in known_hosts).
    pub fn start() -> Sshd {
        Sshd::builder().start()
    }

    pub fn builder() -> SshdBuilder {
        SshdBuilder {
            host_keys: vec![HostKey::Ed25519],
            known: None,
            login: None,
            path: None,
        }
    }

    /// sshd's own process id (its sessions are its children).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The folder holding everything; the tests' files can go here too.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `HOME` of the sessions (and a good `SshOptions::home`: it has no `~/.ssh/id_*`).
    pub fn home(&self) -> PathBuf {
        self.dir().join("home")
    }

    /// The client's private key (ed25519, no passphrase), authorized for the current user.
    pub fn client_key(&self) -> PathBuf {
        self.dir().join("client_ed25519")
    }

    /// known_hosts listing the chosen host keys as `[127.0.0.1]:PORT type base64`.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir().join("known_hosts")
    }

    /// Public host key file (`.pub`) of `kind`; panics if the server does not have one.
    pub fn host_key_pub(&self, kind: HostKey) -> PathBuf {
        assert!(self.host_keys.contains(&kind), "no {kind:?} host key");
        self.dir().join(format!("{}.pub", kind.file_name()))
    }

    /// `type base64` of a host key, as known_hosts lists it.
    pub fn host_key_line(&self, kind: HostKey) -> String {
        let text = fs::read_to_string(self.host_key_pub(kind)).expect("host key .pub");
        text.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `SHA256:...` fingerprint of a host key, as `ssh-keygen -l` prints it.
    pub fn host_key_fingerprint(&self, kind: HostKey) -> String {
        let out = Command::new("ssh-keygen")
            .arg("-l")
            .arg("-E")
            .arg("sha256")
            .arg("-f")
            .arg(self.host_key_pub(kind))
            .output()
            .expect("ssh-keygen -l");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.split_whitespace()
            .nth(1)
            .expect("fingerprint")
            .to_string()
    }

    /// The user the client key logs in as.
    pub fn login(&self) -> &str {
        &self.login
    }

    /// A target for this server: 127.0.0.1, its port, the login user, the client key.
    pub fn target(&self) -> SshTarget {
        SshTarget {
            name: "testhost".to_string(),
            address: "127.0.0.1".to_string(),
            port: self.port,
            user: self.login.clone(),
            private_key_file: Some(self.client_key()),
            escalation: Default::default(),
        }
    }

    /// Options that trust exactly this server's known_hosts, with a 10 s connect timeout.
    pub fn options(&self) -> SshOptions {
        SshOptions {
            known_hosts_files: vec![self.known_hosts()],
            accept_new_host_keys: false,
            home: Some(self.home()),
            connect_timeout: Duration::from_secs(10),
            known_hosts: Default::default(),
            read_limits: Default::default(),
        }
    }

    /// sshd's log so far (for assertion messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir().join("sshd.log")).unwrap_or_default()
    }

    /// How many exec sessions sshd has started so far, by its own log.
    pub fn sessions(&self) -> usize {
        self.log().matches("Starting session: command").count()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes a key pair with no passphrase and no comment at `path` (`path.pub`).
pub fn keygen(path: &Path, type_args: &[&str]) {
    let status = Command::new("ssh-keygen")
        .arg("-q")
        .args(type_args)
        .args(["-N", "", "-C", "", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("ssh-keygen");
    assert!(status.success(), "ssh-keygen failed for {}", path.display());
}

/// The user tests log in as: the one running them.
pub fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Ready when sshd has logged that it listens on `port` (proof that it is ours, not another
/// test's server that won the same port) and the port accepts connections.
fn wait_ready(child: &mut Child, port: u16, log: &Path) -> Result<(), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listening = format!("Server listening on 127.0.0.1 port {port}.");
    for _ in 0..READY_TRIES {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("sshd exited: {status}"));
        }
        let logged = fs::read_to_string(log).is_ok_and(|l| l.contains(&listening));
        if logged && TcpStream::connect_timeout(&addr, READY_PAUSE).is_ok() {
            return Ok(());
        }
        std::thread::sleep(READY_PAUSE);
    }
    Err(format!("port {port} did not accept connections in time"))
}

fn sshd_config(root: &Path, port: u16, host_keys: &[HostKey]) -> String {
    let mut s = format!("# Throwaway test sshd. Loopback only.\nListenAddress 127.0.0.1:{port}\n");
    for kind in host_keys {
        s.push_str(&format!(
            "HostKey {}\n",
            root.join(kind.file_name()).display()
        ));
    }
    s.push_str(&format!(
        "PidFile none\n\
         AuthorizedKeysFile {root}/authorized_keys\n\
         PermitRootLogin prohibit-password\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         UsePAM no\n\
         # The temp dir's parents are not ours to fix.\n\
         StrictModes no\n\
         # Keeps the machine's ~/.bashrc (slow) out of every session.\n\
         SetEnv HOME={root}/home\n\
         PrintMotd no\n\
         PrintLastLog no\n\
         UseDNS no\n\
         X11Forwarding no\n\
         AllowAgentForwarding no\n\
         AllowTcpForwarding no\n\
         PermitTunnel no\n\
         # VERBOSE logs one `Starting session: command` line per exec, which the facts and\n\
         # round-trip tests count.\n\
         LogLevel VERBOSE\n",
        root = root.display()
    ));
    s
}
