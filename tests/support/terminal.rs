//! A command on a pseudo-terminal (util-linux `script`), for what reads only from a terminal:
//! deploy's passphrase prompts, `age -p`. Prompts are waited for (at most 20 s each), and
//! answered a moment after they show, as a person would.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

pub struct Terminal {
    child: Child,
    stdin: Option<ChildStdin>,
    output: Receiver<Vec<u8>>,
    reader: Option<std::thread::JoinHandle<()>>,
    seen: Vec<u8>,
}

impl Terminal {
    /// Starts `command` (a shell command line) on a new pseudo-terminal, with `env` set.
    pub fn start(command: &str, env: &[(&str, &std::ffi::OsStr)]) -> Terminal {
        let mut cmd = Command::new("script");
        cmd.args(["-q", "-e", "-c", command, "/dev/null"]);
        for (key, value) in env {
            cmd.env(key, value);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("script (bsdutils)");
        let mut stdout = child.stdout.take().expect("stdout");
        let (tx, output) = std::sync::mpsc::channel::<Vec<u8>>();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Terminal {
            child,
            stdin,
            output,
            reader: Some(reader),
            seen: Vec::new(),
        }
    }

    /// Waits until `prompt` has shown `times` times in all, then types `answer` and Enter.
    pub fn answer(&mut self, prompt: &str, times: usize, answer: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while String::from_utf8_lossy(&self.seen).matches(prompt).count() < times {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(chunk) => self.seen.extend(chunk),
                Err(_) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "no `{prompt}` (#{times}) within 20 s: {}",
                        String::from_utf8_lossy(&self.seen)
                    );
                }
            }
        }
        // The prompt is printed just before the reader turns the terminal's echo off; an
        // answer typed within that instant would be echoed.
        std::thread::sleep(Duration::from_millis(300));
        self.stdin
            .as_mut()
            .expect("stdin")
            .write_all(format!("{answer}\n").as_bytes())
            .expect("type the answer");
    }

    /// Waits for the command to end: its exit code and everything the terminal showed.
    pub fn finish(mut self) -> (i32, String) {
        drop(self.stdin.take());
        let status = self.child.wait().expect("wait");
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.seen.extend(self.output.try_iter().flatten());
        (
            status.code().unwrap_or(-1),
            String::from_utf8_lossy(&self.seen).into_owned(),
        )
    }
}
