//! latency-proxy: TCP relays on loopback that hold every byte for a fixed one-way delay in each
//! direction (so a round trip through one costs 2 × delay), and count each connection's
//! request-answer turns (see turns.rs). bench/run.sh with LATENCY_MS puts one in front of
//! every sshd of the benchmark's fleet.
//!
//!     latency-proxy --delay-ms D --out FILE [--quiet-ms Q] [--buffer-kib K] [--no-handshake]
//!                   [--trace] --route NAME=LISTEN=UPSTREAM ...
//!
//! - LISTEN and UPSTREAM are `ip:port`, both loopback (127.0.0.0/8 or ::1): anything else is
//!   refused. Port 0 in LISTEN takes a free port; the `ready` line says which.
//! - Bytes keep their order; each direction is read as it arrives (that time stamps it) and
//!   written D later. What is in flight is bounded per direction (K KiB, default 1024): a full
//!   buffer stops the reading, so TCP's own flow control holds the sender back.
//! - The TCP handshake is priced too: the upstream connection is opened 3 × D after the client
//!   connected (when, over a real network, the server would see the handshake's last packet),
//!   so the server's first bytes reach the client 2 RTT after its connect, as they would.
//!   `--no-handshake` connects at once.
//! - A half-close is passed on (after D, like the bytes before it).
//! - Q (default D) is the quiet gap of the turn count (turns.rs).
//! - `--trace` adds each connection's first 2000 reads to its `close` line, as
//!   `[side, ms since the connection opened, bytes, turns so far]` (c = client, s = server).
//!
//! FILE gets one JSON object a line: `ready` once listening (with each route's address),
//! `open` when a client connects, `close` when both directions are done (turns, bytes each
//! way, how it ended), and `exit`. SIGTERM or SIGINT: stop listening, close every open
//! connection (each gets its `close` line, ended "shutdown"), write `exit`, exit 0.

mod turns;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use turns::{Side, Turns};

/// Bytes one read takes at most; a buffer slot holds one read.
const CHUNK: usize = 16 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a shutdown waits for the connections' threads to finish.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);
const MAX_DELAY_MS: f64 = 10_000.0;
const MAX_ROUTES: usize = 4096;
const MAX_TRACE: usize = 2000;

const USAGE: &str = "usage: latency-proxy --delay-ms D --out FILE [--quiet-ms Q] \
[--buffer-kib K] [--no-handshake] [--trace] --route NAME=LISTEN=UPSTREAM ...";

#[derive(Debug)]
struct Route {
    name: String,
    listen: SocketAddr,
    upstream: SocketAddr,
}

#[derive(Debug)]
struct Config {
    delay: Duration,
    quiet: Duration,
    /// Buffer slots per direction (each one read of at most CHUNK bytes).
    slots: usize,
    handshake: bool,
    trace: bool,
    out: String,
    routes: Vec<Route>,
}

fn millis(flag: &str, text: Option<String>) -> Result<Duration, String> {
    let text = text.ok_or_else(|| format!("{flag} needs a value"))?;
    match text.parse::<f64>() {
        Ok(ms) if (0.0..=MAX_DELAY_MS).contains(&ms) => Ok(Duration::from_secs_f64(ms / 1000.0)),
        _ => Err(format!(
            "{flag} {text:?}: expected milliseconds from 0 to {MAX_DELAY_MS}"
        )),
    }
}

fn loopback(text: &str, what: &str, route: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text
        .parse()
        .map_err(|_| format!("route {route:?}: {what} {text:?} is not ip:port"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "route {route:?}: {what} {addr} is not a loopback address (only 127.0.0.0/8 and ::1)"
        ));
    }
    Ok(addr)
}

fn parse_route(text: &str) -> Result<Route, String> {
    let parts: Vec<&str> = text.split('=').collect();
    let [name, listen, upstream] = parts[..] else {
        return Err(format!("--route {text:?}: expected NAME=LISTEN=UPSTREAM"));
    };
    if name.is_empty() {
        return Err(format!("--route {text:?}: the name is empty"));
    }
    Ok(Route {
        name: name.to_string(),
        listen: loopback(listen, "listen address", name)?,
        upstream: loopback(upstream, "upstream address", name)?,
    })
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Config, String> {
    let mut args = args.into_iter();
    let (mut delay, mut quiet, mut out) = (None, None, None);
    let mut buffer_kib = 1024usize;
    let mut handshake = true;
    let mut trace = false;
    let mut routes = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--delay-ms" => delay = Some(millis("--delay-ms", args.next())?),
            "--quiet-ms" => quiet = Some(millis("--quiet-ms", args.next())?),
            "--out" => out = Some(args.next().ok_or("--out needs a file")?),
            "--buffer-kib" => {
                let text = args.next().ok_or("--buffer-kib needs a value")?;
                buffer_kib = match text.parse::<usize>() {
                    Ok(k) if (16..=1 << 20).contains(&k) => k,
                    _ => return Err(format!("--buffer-kib {text:?}: expected 16 to 1048576")),
                };
            }
            "--no-handshake" => handshake = false,
            "--trace" => trace = true,
            "--route" => {
                let text = args.next().ok_or("--route needs NAME=LISTEN=UPSTREAM")?;
                routes.push(parse_route(&text)?);
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let delay = delay.ok_or_else(|| format!("--delay-ms is required\n{USAGE}"))?;
    let out = out.ok_or_else(|| format!("--out is required\n{USAGE}"))?;
    if routes.is_empty() {
        return Err(format!("at least one --route is required\n{USAGE}"));
    }
    if routes.len() > MAX_ROUTES {
        return Err(format!("{} routes; at most {MAX_ROUTES}", routes.len()));
    }
    Ok(Config {
        delay,
        quiet: quiet.unwrap_or(delay),
        slots: (buffer_kib * 1024).div_ceil(CHUNK),
        handshake,
        trace,
        out,
        routes,
    })
}

/// What every thread shares: the configuration, the record file and the open connections.
struct Shared {
    cfg: Config,
    start: Instant,
    out: Mutex<File>,
    stopping: AtomicBool,
    next_id: AtomicU64,
    /// Open connections' sockets (clones), so a shutdown can close them.
    live: Mutex<HashMap<u64, Vec<TcpStream>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn record(&self, line: &str) {
        let mut out = lock(&self.out);
        // One write per line, so a reader never sees half a record.
        if let Err(e) = out.write_all(format!("{line}\n").as_bytes()) {
            eprintln!("latency-proxy: cannot write {}: {e}", self.cfg.out);
        }
    }

    fn since_start_ms(&self, at: Instant) -> f64 {
        ms(at.saturating_duration_since(self.start))
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// With `--trace`: when the connection opened, and per read (side, since then, bytes, turns
/// so far).
type Trace = (Instant, Vec<(Side, Duration, usize, u64)>);

/// One direction's counts, and the connection's turns.
struct Counts {
    turns: Turns,
    bytes: [u64; 2],
    reads: [u64; 2],
    trace: Option<Trace>,
}

fn side_index(side: Side) -> usize {
    match side {
        Side::Client => 0,
        Side::Server => 1,
    }
}

enum Chunk {
    Data(Instant, Vec<u8>),
    Eof(Instant),
}

fn sleep_until(due: Instant) {
    loop {
        let now = Instant::now();
        if now >= due {
            return;
        }
        thread::sleep(due - now);
    }
}

/// Reads `src` as bytes arrive, time-stamps them (and counts them) and queues them to be
/// written `delay` later; the queue's bound stops the reading when it is full.
fn read_side(
    mut src: TcpStream,
    side: Side,
    tx: SyncSender<Chunk>,
    counts: Arc<Mutex<Counts>>,
    delay: Duration,
) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let at = {
            let mut c = lock(&counts);
            let at = Instant::now();
            c.turns.observe(side, at);
            c.bytes[side_index(side)] += n as u64;
            c.reads[side_index(side)] += 1;
            let turns = c.turns.count();
            if let Some((opened, events)) = &mut c.trace
                && events.len() < MAX_TRACE
            {
                events.push((side, at.saturating_duration_since(*opened), n, turns));
            }
            at
        };
        if tx.send(Chunk::Data(at + delay, buf[..n].to_vec())).is_err() {
            return; // the writer gave up and closed both sockets
        }
    }
    let _ = tx.send(Chunk::Eof(Instant::now() + delay));
}

/// Writes what `read_side` queued, each chunk at its time; passes the end on as a half-close.
/// A failed write (the peer is gone) closes both sockets, which ends the other direction too.
fn write_side(rx: Receiver<Chunk>, mut dst: TcpStream, src: TcpStream) {
    for chunk in rx {
        match chunk {
            Chunk::Data(due, bytes) => {
                sleep_until(due);
                if dst.write_all(&bytes).is_err() {
                    let _ = dst.shutdown(Shutdown::Both);
                    let _ = src.shutdown(Shutdown::Both);
                    return;
                }
            }
            Chunk::Eof(due) => {
                sleep_until(due);
                let _ = dst.shutdown(Shutdown::Write);
                return;
            }
        }
    }
}

fn clone(s: &TcpStream) -> Result<TcpStream, String> {
    s.try_clone()
        .map_err(|e| format!("cannot clone a socket: {e}"))
}

/// The connection's bytes both ways, once the upstream connection is open; the client's
/// reader (started at accept, so the client's first bytes are stamped when they came) is
/// already running and feeding `up_rx`.
fn relay(
    shared: &Shared,
    client: &TcpStream,
    upstream: &TcpStream,
    up_rx: Receiver<Chunk>,
    counts: &Arc<Mutex<Counts>>,
) -> Result<[thread::JoinHandle<()>; 3], String> {
    let (down_tx, down_rx) = sync_channel(shared.cfg.slots);
    let delay = shared.cfg.delay;
    let (c1, c2) = (clone(client)?, clone(client)?);
    let (u1, u2, u3) = (clone(upstream)?, clone(upstream)?, clone(upstream)?);
    let k = counts.clone();
    Ok([
        thread::spawn(move || write_side(up_rx, u1, c1)),
        thread::spawn(move || read_side(u2, Side::Server, down_tx, k, delay)),
        thread::spawn(move || write_side(down_rx, c2, u3)),
    ])
}

fn serve(shared: Arc<Shared>, route: usize, client: TcpStream, id: u64) {
    let opened = Instant::now();
    let r = &shared.cfg.routes[route];
    let peer = client
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    shared.record(&format!(
        r#"{{"event":"open","conn":{id},"route":{},"client":{},"t_ms":{}}}"#,
        json_str(&r.name),
        json_str(&peer),
        shared.since_start_ms(opened)
    ));
    let counts = Arc::new(Mutex::new(Counts {
        turns: Turns::new(shared.cfg.delay, shared.cfg.quiet),
        bytes: [0; 2],
        reads: [0; 2],
        trace: shared.cfg.trace.then(|| (opened, Vec::new())),
    }));
    let (up_tx, up_rx) = sync_channel(shared.cfg.slots);
    let mut threads = Vec::new();
    let result = (|| {
        let (c, k, delay) = (clone(&client)?, counts.clone(), shared.cfg.delay);
        threads.push(thread::spawn(move || {
            read_side(c, Side::Client, up_tx, k, delay)
        }));
        if shared.cfg.handshake {
            sleep_until(opened + shared.cfg.delay * 3);
        }
        if shared.stopping.load(Ordering::SeqCst) {
            return Err("shutdown".to_string());
        }
        let upstream = TcpStream::connect_timeout(&r.upstream, CONNECT_TIMEOUT)
            .map_err(|e| format!("upstream {}: {e}", r.upstream))?;
        let _ = upstream.set_nodelay(true);
        lock(&shared.live)
            .entry(id)
            .or_default()
            .push(clone(&upstream)?);
        if shared.stopping.load(Ordering::SeqCst) {
            let _ = upstream.shutdown(Shutdown::Both);
            return Err("shutdown".to_string());
        }
        threads.extend(relay(&shared, &client, &upstream, up_rx, &counts)?);
        Ok(())
    })();
    if result.is_err() {
        // Ends the client's reader, which may wait for bytes that will never be relayed.
        let _ = client.shutdown(Shutdown::Both);
    }
    for t in threads {
        let _ = t.join();
    }
    let end = if shared.stopping.load(Ordering::SeqCst) {
        "shutdown".to_string()
    } else {
        match &result {
            Ok(()) => "closed".to_string(),
            Err(e) => e.clone(),
        }
    };
    let c = lock(&counts);
    let trace = match &c.trace {
        Some((_, events)) => {
            let events: Vec<String> = events
                .iter()
                .map(|(side, at, n, turns)| {
                    let side = if *side == Side::Client { "c" } else { "s" };
                    format!(r#"["{side}",{},{n},{turns}]"#, ms(*at))
                })
                .collect();
            format!(r#","trace":[{}]"#, events.join(","))
        }
        None => String::new(),
    };
    shared.record(&format!(
        concat!(
            r#"{{"event":"close","conn":{},"route":{},"turns":{},"client_bytes":{},"#,
            r#""server_bytes":{},"client_reads":{},"server_reads":{},"t_ms":{},"#,
            r#""duration_ms":{},"end":{}{}}}"#
        ),
        id,
        json_str(&r.name),
        c.turns.count(),
        c.bytes[0],
        c.bytes[1],
        c.reads[0],
        c.reads[1],
        shared.since_start_ms(opened),
        ms(opened.elapsed()),
        json_str(&end),
        trace
    ));
    drop(c);
    lock(&shared.live).remove(&id);
}

fn accept_loop(shared: Arc<Shared>, route: usize, listener: TcpListener) {
    for conn in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = conn else { continue };
        let _ = client.set_nodelay(true);
        let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
        if let Ok(c) = client.try_clone() {
            lock(&shared.live).insert(id, vec![c]);
        }
        let shared = shared.clone();
        let spawned = thread::Builder::new()
            .name(format!("conn-{id}"))
            .spawn(move || serve(shared, route, client, id));
        if let Err(e) = spawned {
            eprintln!("latency-proxy: cannot start a connection's thread: {e}");
        }
    }
}

/// The signals that stop the proxy, blocked in every thread and taken by `sigwait`.
fn stop_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset and sigaddset only write the set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        set
    }
}

fn run(cfg: Config) -> Result<(), String> {
    let out = File::create(&cfg.out).map_err(|e| format!("cannot create {}: {e}", cfg.out))?;
    let signals = stop_signals();
    // SAFETY: blocks the signals in this thread before any other exists, so every thread
    // inherits the mask and only sigwait below receives them.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &signals, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(format!("cannot block SIGTERM/SIGINT (error {rc})"));
    }
    let mut listeners = Vec::new();
    for r in &cfg.routes {
        let l = TcpListener::bind(r.listen)
            .map_err(|e| format!("route {:?}: cannot listen on {}: {e}", r.name, r.listen))?;
        let addr = l
            .local_addr()
            .map_err(|e| format!("route {:?}: {e}", r.name))?;
        listeners.push((l, addr));
    }
    let routes: Vec<String> = cfg
        .routes
        .iter()
        .zip(&listeners)
        .map(|(r, (_, addr))| {
            format!(
                r#"{{"name":{},"listen":{},"upstream":{}}}"#,
                json_str(&r.name),
                json_str(&addr.to_string()),
                json_str(&r.upstream.to_string())
            )
        })
        .collect();
    let ready = format!(
        r#"{{"event":"ready","pid":{},"delay_ms":{},"quiet_ms":{},"handshake":{},"buffer_kib":{},"routes":[{}]}}"#,
        std::process::id(),
        ms(cfg.delay),
        ms(cfg.quiet),
        cfg.handshake,
        cfg.slots * CHUNK / 1024,
        routes.join(",")
    );
    let shared = Arc::new(Shared {
        cfg,
        start: Instant::now(),
        out: Mutex::new(out),
        stopping: AtomicBool::new(false),
        next_id: AtomicU64::new(1),
        live: Mutex::new(HashMap::new()),
    });
    let addrs: Vec<SocketAddr> = listeners.iter().map(|(_, a)| *a).collect();
    for (i, (l, _)) in listeners.into_iter().enumerate() {
        let shared = shared.clone();
        thread::Builder::new()
            .name(format!("accept-{i}"))
            .spawn(move || accept_loop(shared, i, l))
            .map_err(|e| format!("cannot start a listener's thread: {e}"))?;
    }
    shared.record(&ready);
    println!("{ready}");
    let _ = std::io::stdout().flush();

    let mut sig: libc::c_int = 0;
    // SAFETY: waits for one of the blocked signals; both pointers are to our own values.
    let rc = unsafe { libc::sigwait(&signals, &mut sig) };
    if rc != 0 {
        return Err(format!("sigwait failed (error {rc})"));
    }
    shared.stopping.store(true, Ordering::SeqCst);
    for addr in &addrs {
        // Wakes each accept loop, which sees `stopping` and returns.
        let _ = TcpStream::connect_timeout(addr, Duration::from_secs(1));
    }
    for sockets in lock(&shared.live).values() {
        for s in sockets {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
    let deadline = Instant::now() + SHUTDOWN_WAIT + shared.cfg.delay * 4;
    while !lock(&shared.live).is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let left = lock(&shared.live).len();
    shared.record(&format!(
        r#"{{"event":"exit","signal":{sig},"connections_left":{left},"t_ms":{}}}"#,
        shared.since_start_ms(Instant::now())
    ));
    Ok(())
}

fn main() -> ExitCode {
    let cfg = match parse_args(std::env::args().skip(1)) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("latency-proxy: {e}");
            return ExitCode::from(2);
        }
    };
    match run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latency-proxy: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Config, String> {
        parse_args(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn quiet_gap_defaults_to_the_one_way_delay() {
        let cfg = args(&[
            "--delay-ms",
            "10",
            "--out",
            "x",
            "--route",
            "a=127.0.0.1:0=127.0.0.1:1",
        ])
        .unwrap();
        assert_eq!(cfg.delay, Duration::from_millis(10));
        assert_eq!(cfg.quiet, Duration::from_millis(10));
        assert_eq!(cfg.slots, 64);
        assert!(cfg.handshake);
    }

    #[test]
    fn refuses_addresses_off_loopback_and_bad_routes() {
        let err =
            |route: &str| args(&["--delay-ms", "1", "--out", "x", "--route", route]).unwrap_err();
        assert_eq!(
            err("h=127.0.2.1:2201=10.0.0.5:22"),
            "route \"h\": upstream address 10.0.0.5:22 is not a loopback address \
             (only 127.0.0.0/8 and ::1)"
        );
        assert!(err("h=0.0.0.0:2201=127.0.1.1:2201").contains("listen address 0.0.0.0:2201"));
        assert!(err("h=127.0.2.1=127.0.1.1:22").contains("is not ip:port"));
        assert!(err("h=127.0.2.1:1").contains("expected NAME=LISTEN=UPSTREAM"));
        let no_route = args(&["--delay-ms", "1", "--out", "x"]).unwrap_err();
        assert!(no_route.starts_with("at least one --route is required"));
        let bad_delay = args(&["--delay-ms", "-3", "--out", "x"]).unwrap_err();
        assert!(bad_delay.starts_with("--delay-ms \"-3\": expected milliseconds"));
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str("a\"b\\c\n"), r#""a\"b\\c\u000a""#);
    }
}
