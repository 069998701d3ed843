//! The proxy binary between a client and a tiny echo server on loopback: bytes arrive whole
//! and in order through a buffer far smaller than what is sent, turns are counted as the
//! client waited for answers, and SIGTERM closes open connections and writes their records.
//! Counts and bytes are asserted, never times.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

/// An echo server on 127.0.0.1: each connection gets back what it sends, and a half-close
/// when it half-closes.
fn echo_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            thread::spawn(move || {
                let mut back = conn.try_clone().unwrap();
                let mut buf = [0u8; 8192];
                loop {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if back.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = back.shutdown(Shutdown::Write);
            });
        }
    });
    addr
}

struct Proxy {
    child: Child,
    out: PathBuf,
    listen: String,
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = &line[start..];
    let rest = rest.strip_prefix('"').unwrap_or(rest);
    let end = rest.find(['"', ',', '}'])?;
    Some(&rest[..end])
}

impl Proxy {
    fn start(name: &str, upstream: std::net::SocketAddr, extra: &[&str]) -> Proxy {
        let out = std::env::temp_dir().join(format!(
            "latency-proxy-test-{}-{name}.jsonl",
            std::process::id()
        ));
        let mut child = Command::new(env!("CARGO_BIN_EXE_latency-proxy"))
            .args(["--out", out.to_str().unwrap(), "--route"])
            .arg(format!("{name}=127.0.0.1:0={upstream}"))
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        let listen = field(&ready, "listen")
            .unwrap_or_else(|| panic!("no listen address in {ready:?}"))
            .to_string();
        Proxy { child, out, listen }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(&self.listen).unwrap();
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    }

    /// SIGTERM, wait (bounded) for a clean exit, and the record lines.
    fn stop(mut self) -> Vec<String> {
        // SAFETY: signals the child this test started.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0);
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "proxy exited with {status}");
                let text = std::fs::read_to_string(&self.out).unwrap();
                let _ = std::fs::remove_file(&self.out);
                return text.lines().map(str::to_string).collect();
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("the proxy did not exit within 10 s of SIGTERM");
    }
}

fn closes(lines: &[String]) -> Vec<&String> {
    lines
        .iter()
        .filter(|l| l.contains(r#""event":"close""#))
        .collect()
}

fn num(line: &str, key: &str) -> u64 {
    field(line, key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

/// Sends `line` and reads until its echo is back whole.
fn exchange(s: &mut TcpStream, line: &[u8]) {
    s.write_all(line).unwrap();
    let mut back = vec![0u8; line.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, line);
}

#[test]
fn bytes_keep_their_order_through_a_buffer_smaller_than_the_stream() {
    let proxy = Proxy::start(
        "order",
        echo_server(),
        &["--delay-ms", "1", "--buffer-kib", "16"],
    );
    let s = proxy.connect();
    const LEN: usize = 4 << 20;
    // Every 4 bytes a counter, so a reordered, lost or doubled chunk cannot go unseen.
    let data: Vec<u8> = (0..LEN / 4)
        .flat_map(|i| (i as u32).to_le_bytes())
        .collect();
    let mut writer = s.try_clone().unwrap();
    let sent = data.clone();
    let send = thread::spawn(move || {
        // Writes of odd sizes, so chunks straddle the proxy's reads.
        for piece in sent.chunks(7919) {
            writer.write_all(piece).unwrap();
        }
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut back = Vec::with_capacity(LEN);
    (&s).read_to_end(&mut back).unwrap(); // to the echo server's half-close, passed on
    send.join().unwrap();
    assert_eq!(back.len(), LEN);
    assert!(back == data, "bytes came back out of order");
    drop(s);
    thread::sleep(Duration::from_millis(200));
    let lines = proxy.stop();
    let closes = closes(&lines);
    assert_eq!(closes.len(), 1, "{lines:?}");
    assert_eq!(num(closes[0], "client_bytes"), LEN as u64);
    assert_eq!(num(closes[0], "server_bytes"), LEN as u64);
    assert_eq!(field(closes[0], "end"), Some("closed"));
}

#[test]
fn each_answer_the_client_waits_for_is_one_turn() {
    let proxy = Proxy::start("turns", echo_server(), &["--delay-ms", "5"]);
    for exchanges in [1, 7] {
        let mut s = proxy.connect();
        for k in 0..exchanges {
            exchange(&mut s, format!("request {k}\n").as_bytes());
        }
    }
    thread::sleep(Duration::from_millis(300));
    let lines = proxy.stop();
    let turns: Vec<u64> = closes(&lines).iter().map(|l| num(l, "turns")).collect();
    assert_eq!(turns, [1, 7], "{lines:?}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains(r#""event":"open""#))
            .count(),
        2
    );
}

#[test]
fn requests_sent_without_waiting_are_one_turn() {
    // One-way delay 100 ms: ten requests 20 ms apart, their echoes arriving in between them.
    // Counting every change of direction would make ~6 turns; the client waited once.
    let proxy = Proxy::start(
        "pipelined",
        echo_server(),
        &["--delay-ms", "100", "--no-handshake"],
    );
    let mut s = proxy.connect();
    let mut expect = Vec::new();
    for k in 0..10 {
        let line = format!("request {k}\n");
        s.write_all(line.as_bytes()).unwrap();
        expect.extend_from_slice(line.as_bytes());
        thread::sleep(Duration::from_millis(20));
    }
    let mut back = vec![0u8; expect.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, expect);
    drop(s);
    thread::sleep(Duration::from_millis(500));
    let lines = proxy.stop();
    let closes = closes(&lines);
    assert_eq!(closes.len(), 1, "{lines:?}");
    assert_eq!(num(closes[0], "turns"), 1, "{lines:?}");
}

#[test]
fn sigterm_closes_open_connections_and_records_them() {
    let proxy = Proxy::start("stop", echo_server(), &["--delay-ms", "2"]);
    let mut s = proxy.connect();
    exchange(&mut s, b"hello\n");
    exchange(&mut s, b"again\n");
    let lines = proxy.stop();
    let closes = closes(&lines);
    assert_eq!(closes.len(), 1, "{lines:?}");
    assert_eq!(field(closes[0], "end"), Some("shutdown"));
    assert_eq!(num(closes[0], "turns"), 2);
    let exit = lines.last().unwrap();
    assert!(exit.contains(r#""event":"exit""#), "{lines:?}");
    assert_eq!(num(exit, "connections_left"), 0);
    // The client sees its connection end.
    let mut rest = Vec::new();
    assert_eq!(
        (&s).read_to_end(&mut rest).map(|_| rest.len()).unwrap_or(0),
        0
    );
}
