//! Starts `ntlm_gateway.py` (pyspnego's NTLM acceptor in front of the WS-Man stand-in; see
//! that file) on 127.0.0.1 and reads what it logged. The interpreter is
//! `$DEPLOY_TEST_PYTHON`, else the venv `.ci/run` makes (`target/ci-python`), else
//! `python3`; it needs pyspnego. A missing pyspnego is a test failure that says so, never a
//! skip.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub struct Gateway {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Gateway {
    /// A gateway forwarding to the stand-in on `upstream_port` with Basic
    /// `upstream_user`/`upstream_password`, accepting NTLM logons of `accounts`
    /// (domain, user, password); over https with the test certificate when `tls`; closing
    /// each connection after `close_every` messages when that is not 0.
    pub fn start(
        dir: &Path,
        upstream_port: u16,
        upstream_user: &str,
        upstream_password: &str,
        accounts: &[(&str, &str, &str)],
        tls: bool,
        close_every: usize,
    ) -> Gateway {
        use base64::Engine;
        let users = dir.join("ntlm-users");
        let mut text = String::new();
        for (domain, user, password) in accounts {
            text.push_str(&format!("{domain}:{user}:{password}\n"));
        }
        std::fs::write(&users, text).expect("users file");
        let log = dir.join("ntlm-gateway.log");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/ntlm_gateway.py");
        let python = python();
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{upstream_user}:{upstream_password}"));
        let mut cmd = Command::new(&python);
        cmd.arg(&script)
            .arg("--upstream-port")
            .arg(upstream_port.to_string())
            .arg("--upstream-authorization")
            .arg(format!("Basic {basic}"))
            .arg("--users")
            .arg(&users)
            .arg("--log")
            .arg(&log)
            .arg("--close-every")
            .arg(close_every.to_string());
        if tls {
            let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/winrm-tls");
            cmd.arg("--tls-cert")
                .arg(fixtures.join("cert.pem"))
                .arg("--tls-key")
                .arg(fixtures.join("key.pem"));
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {python}: {e} (.ci/run installs what the tests need)")
            });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let Ok(port) = line.trim().parse::<u16>() else {
            let _ = child.kill();
            let out = child.wait_with_output().expect("gateway output");
            panic!(
                "the NTLM gateway did not start with {python} (it needs pyspnego 0.12.4; .ci/run installs it into target/ci-python):\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        Gateway { child, port, log }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every event logged so far, as (event name, the whole JSON object).
    pub fn events(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("gateway log line"))
            .collect()
    }

    /// How many events called `name`.
    pub fn count(&self, name: &str) -> usize {
        self.events().iter().filter(|e| e["event"] == name).count()
    }
}

/// The interpreter to run the gateway with; see the module's text.
fn python() -> String {
    if let Ok(p) = std::env::var("DEPLOY_TEST_PYTHON") {
        return p;
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ci-python/bin/python");
    if venv.exists() {
        return venv.to_string_lossy().into_owned();
    }
    "python3".into()
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // Closing stdin ends it; kill in case it is stuck.
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.write_all(b"");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
