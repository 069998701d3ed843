//! A small HTTP/1.1 server on 127.0.0.1 for the WinRM tests, and a replay server built on it
//! that serves pypsrp's recorded WinRM exchanges (`tests/fixtures/winrm/pypsrp/*.yml`, copied
//! from `shared/winrm-fixtures`) in order.
//!
//! The replay server checks each request against the recorded one where it matters: the
//! WS-Addressing Action, the ResourceURI, the selectors (ShellId), the options
//! (`WINRS_CODEPAGE`, `WINRS_SKIP_CMD_SHELL`, ...) and the whole Body (command line, stdin
//! data and `End`, `CommandId` attributes, signal code, shell options), compared as parsed
//! XML. Message ids, the session id, `wsa:To`, locales, MaxEnvelopeSize and OperationTimeout
//! differ from client to client and are not compared. A recorded `transport_error` becomes
//! that HTTP status with the recorded (fault) body.
//!
//! Bounds: the acceptor stops when the server is finished or after 60 s; each connection
//! gives up after 10 s without a request; a request body is capped at 16 MiB.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use deploy::transport::winrm::wsman::Element;

/// One HTTP request as the handler sees it.
#[derive(Debug, Clone)]
pub struct Request {
    pub authorization: Option<String>,
    pub body: String,
}

/// What the handler answers: status and body (sent as `application/soap+xml`).
pub type Handler = Arc<dyn Fn(Request) -> (u16, String) + Send + Sync>;

pub struct HttpServer {
    port: u16,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

const ACCEPT_FOR: Duration = Duration::from_secs(60);
const IDLE_CONNECTION: Duration = Duration::from_secs(10);
const MAX_BODY: usize = 16 << 20;

impl HttpServer {
    pub fn start(handler: Handler) -> HttpServer {
        Self::start_with(handler, None)
    }

    /// https with the test certificate for 127.0.0.1 (`tests/fixtures/winrm-tls/`).
    pub fn start_tls(handler: Handler) -> HttpServer {
        Self::start_with(handler, Some(tls_config()))
    }

    fn start_with(handler: Handler, tls: Option<Arc<rustls::ServerConfig>>) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let acceptor = std::thread::spawn(move || {
            let start = Instant::now();
            while !stop2.load(Ordering::SeqCst) && start.elapsed() < ACCEPT_FOR {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let handler = handler.clone();
                        let tls = tls.clone();
                        std::thread::spawn(move || {
                            let _ = stream.set_nonblocking(false);
                            let _ = stream.set_read_timeout(Some(IDLE_CONNECTION));
                            match tls {
                                None => serve_connection(stream, handler),
                                Some(config) => {
                                    let Ok(conn) = rustls::ServerConnection::new(config) else {
                                        return;
                                    };
                                    serve_connection(
                                        rustls::StreamOwned::new(conn, stream),
                                        handler,
                                    )
                                }
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        HttpServer {
            port,
            stop,
            acceptor: Some(acceptor),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/wsman", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

/// The server side of the test certificate (a self-signed one for IP 127.0.0.1).
fn tls_config() -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/winrm-tls");
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("cert.pem"))
        .expect("cert.pem")
        .collect::<Result<_, _>>()
        .expect("certificate");
    let key = PrivateKeyDer::from_pem_file(dir.join("key.pem")).expect("key.pem");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    Arc::new(config)
}

/// The test certificate's PEM file, for `ansible_winrm_ca_trust_path`.
pub fn test_ca() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/winrm-tls/cert.pem")
}

fn serve_connection<S: Read + Write>(stream: S, handler: Handler) {
    let mut reader = BufReader::new(stream);
    // Keep-alive: one request after another until the client closes or goes quiet.
    for _ in 0..10_000 {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.trim().is_empty() {
            continue;
        }
        let mut length = 0usize;
        let mut authorization = None;
        loop {
            let mut h = String::new();
            match reader.read_line(&mut h) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let k = k.trim().to_ascii_lowercase();
                if k == "content-length" {
                    length = v.trim().parse().unwrap_or(0);
                } else if k == "authorization" {
                    authorization = Some(v.trim().to_string());
                }
            }
        }
        if length > MAX_BODY {
            return;
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let request = Request {
            authorization,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        let (status, answer) = handler(request);
        let reason = match status {
            200 => "OK",
            401 => "Unauthorized",
            500 => "Internal Server Error",
            _ => "Other",
        };
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/soap+xml;charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
            answer.len()
        );
        let writer = reader.get_mut();
        if writer.write_all(head.as_bytes()).is_err()
            || writer.write_all(answer.as_bytes()).is_err()
            || writer.flush().is_err()
        {
            return;
        }
    }
}

/// The folder of the recorded exchanges.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/winrm")
}

/// One recorded request and the answer to give.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub request: String,
    pub response: String,
    pub status: u16,
}

#[derive(serde::Deserialize)]
struct Recording {
    messages: Vec<RecordedMessage>,
}

#[derive(serde::Deserialize)]
struct RecordedMessage {
    request: String,
    response: String,
    #[serde(default)]
    transport_error: Option<TransportErrorSpec>,
}

#[derive(serde::Deserialize)]
struct TransportErrorSpec {
    code: u16,
}

/// Loads `pypsrp/<name>.yml`.
pub fn recording(name: &str) -> Vec<Exchange> {
    let path = fixtures().join("pypsrp").join(format!("{name}.yml"));
    let text = std::fs::read_to_string(&path).expect("read recording");
    let rec: Recording = serde_saphyr::from_str(&text).expect("parse recording");
    rec.messages
        .into_iter()
        .map(|m| Exchange {
            request: m.request,
            response: m.response,
            status: m.transport_error.map_or(200, |t| t.code),
        })
        .collect()
}

/// The parts of a request that must match the recording, as comparable text.
fn essentials(xml: &str) -> Result<Vec<String>, String> {
    let root = Element::parse(xml)?;
    let header = root.child("Header").ok_or("no Header")?;
    let mut out = Vec::new();
    for name in ["Action", "ResourceURI"] {
        let text = header.child(name).map(|e| e.text.trim().to_string());
        out.push(format!("{name}={}", text.unwrap_or_default()));
    }
    for set in ["SelectorSet", "OptionSet"] {
        let mut items: Vec<String> = header
            .child(set)
            .map(|s| s.children.iter().map(canonical).collect())
            .unwrap_or_default();
        items.sort();
        out.push(format!("{set}={}", items.join(",")));
    }
    let body = root.child("Body").ok_or("no Body")?;
    out.push(format!("Body={}", canonical(body)));
    Ok(out)
}

/// An element as text: name, sorted attributes, trimmed text, children in order.
fn canonical(e: &Element) -> String {
    let mut attrs: Vec<String> = e
        .attrs
        .iter()
        .filter(|(k, _)| k != "mustUnderstand" && k != "lang")
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    attrs.sort();
    let children: Vec<String> = e.children.iter().map(canonical).collect();
    format!(
        "<{} {}>{:?}[{}]",
        e.name,
        attrs.join(" "),
        e.text.trim(),
        children.join("")
    )
}

/// Serves recorded exchanges in order and remembers every mismatch.
pub struct Replay {
    server: HttpServer,
    state: Arc<Mutex<ReplayState>>,
}

#[derive(Default)]
struct ReplayState {
    exchanges: Vec<Exchange>,
    next: usize,
    mismatches: Vec<String>,
}

impl Replay {
    pub fn start(exchanges: Vec<Exchange>) -> Replay {
        let state = Arc::new(Mutex::new(ReplayState {
            exchanges,
            ..ReplayState::default()
        }));
        let s = state.clone();
        let server = HttpServer::start(Arc::new(move |req: Request| {
            let mut st = s.lock().expect("replay state");
            if req
                .authorization
                .as_deref()
                .is_none_or(|a| !a.starts_with("Basic "))
            {
                st.mismatches
                    .push("a request without Basic authorization".into());
                return (401, String::new());
            }
            let i = st.next;
            let Some(ex) = st.exchanges.get(i).cloned() else {
                st.mismatches.push(format!(
                    "request {i} is one more than recorded: {}",
                    req.body
                ));
                return (400, String::new());
            };
            st.next += 1;
            match (essentials(&ex.request), essentials(&req.body)) {
                (Ok(want), Ok(got)) => {
                    for (w, g) in want.iter().zip(&got) {
                        if w != g {
                            st.mismatches
                                .push(format!("request {i}: expected {w}\n  got {g}"));
                        }
                    }
                }
                (Err(e), _) => st.mismatches.push(format!("recording {i} unreadable: {e}")),
                (_, Err(e)) => st.mismatches.push(format!("request {i} is not XML: {e}")),
            }
            (ex.status, ex.response)
        }));
        Replay { server, state }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The differences found so far between requests and the recording.
    pub fn mismatches(&self) -> Vec<String> {
        self.state.lock().expect("replay state").mismatches.clone()
    }

    /// Asserts that every recorded exchange was asked for, and each as recorded.
    #[track_caller]
    pub fn assert_all_served(&self) {
        let st = self.state.lock().expect("replay state");
        assert!(
            st.mismatches.is_empty(),
            "requests differ from the recording:\n{}",
            st.mismatches.join("\n")
        );
        assert_eq!(
            st.next,
            st.exchanges.len(),
            "served {} of {} recorded exchanges",
            st.next,
            st.exchanges.len()
        );
    }
}
