//! A stand-in for vLLM's OpenAI server, for LiteLLM to route to: plain HTTP on a 127.0.0.x
//! address, `/v1/models` and `/v1/chat/completions` in OpenAI's shapes for exactly its served
//! name, vLLM's 404 error for any other model, FastAPI's 404 for any other path, and with an
//! api key (vLLM's `--api-key`) 401 `{"error":"Unauthorized"}` without `Bearer <key>`. With
//! `short_context`, a chat whose messages contain `LONG` gets vLLM's 400 "maximum context
//! length" error (what LiteLLM's `context_window_fallbacks` react to). Every request is
//! recorded for the test to look at.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

/// What the stand-in serves.
#[derive(Clone, Debug, Default)]
pub struct Serve {
    pub name: String,
    pub api_key: Option<String>,
    pub short_context: bool,
}

/// One request the stand-in got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// `GET`, `POST`, ...; `TLS` for a TLS handshake (refused: this server speaks plain HTTP).
    pub method: String,
    pub path: String,
    /// The body's `model`, for a chat.
    pub model: Option<String>,
    pub authorization: Option<String>,
}

pub struct StandIn {
    pub ip: String,
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl StandIn {
    /// Listens on `ip` (a 127.0.0.x address), on a port the system picks.
    pub fn start(ip: &str, serve: Serve) -> StandIn {
        assert!(ip.starts_with("127."), "stand-ins bind to loopback only");
        let listener = TcpListener::bind((ip, 0)).expect("bind the stand-in vLLM");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let serve = Arc::new(serve);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (log, serve) = (Arc::clone(&log), Arc::clone(&serve));
                std::thread::spawn(move || handle(stream, &serve, &log));
            }
        });
        StandIn {
            ip: ip.to_string(),
            port,
            seen,
        }
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Forgets the requests so far.
    pub fn clear(&self) {
        if let Ok(mut s) = self.seen.lock() {
            s.clear();
        }
    }
}

/// A port on `ip` that nothing listens on (bound, then closed).
pub fn closed_port(ip: &str) -> u16 {
    let listener = TcpListener::bind((ip, 0)).expect("bind");
    listener.local_addr().expect("addr").port()
}

fn handle(mut stream: TcpStream, serve: &Serve, log: &Mutex<Vec<Seen>>) {
    // A stuck client must not hold a thread forever.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut first = [0u8; 1];
    if stream.peek(&mut first).is_err() {
        return;
    }
    let record = |seen: Seen| {
        if let Ok(mut l) = log.lock() {
            l.push(seen);
        }
    };
    if first[0] == 0x16 {
        // A TLS ClientHello: vLLM's plain-HTTP server cannot answer it either.
        record(Seen {
            method: "TLS".into(),
            path: String::new(),
            model: None,
            authorization: None,
        });
        return;
    }
    let Ok(clone) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(clone);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut length = 0usize;
    let mut authorization = None;
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "authorization" => authorization = Some(value.trim().to_string()),
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; length.min(1 << 20)];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .map(str::to_string);
    record(Seen {
        method: method.clone(),
        path: path.clone(),
        model: model.clone(),
        authorization: authorization.clone(),
    });
    let (status, answer) = answer(
        serve,
        &method,
        &path,
        model.as_deref(),
        &body,
        authorization,
    );
    let text = answer.to_string();
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        match status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            _ => "Not Found",
        },
        text.len()
    );
}

fn answer(
    serve: &Serve,
    method: &str,
    path: &str,
    model: Option<&str>,
    body: &Value,
    authorization: Option<String>,
) -> (u16, Value) {
    if let Some(key) = &serve.api_key
        && authorization.as_deref() != Some(&format!("Bearer {key}"))
    {
        return (401, json!({"error": "Unauthorized"}));
    }
    let name = serve.name.as_str();
    match (method, path) {
        ("GET", "/v1/models") => (
            200,
            json!({"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "vllm", "root": name, "parent": null}]}),
        ),
        ("POST", "/v1/chat/completions") => {
            if model != Some(name) {
                return (
                    404,
                    json!({"object": "error", "message": format!("The model `{}` does not exist.", model.unwrap_or_default()), "type": "NotFoundError", "param": null, "code": 404}),
                );
            }
            if serve.short_context && body["messages"].to_string().contains("LONG") {
                return (
                    400,
                    json!({"object": "error", "message": "This model's maximum context length is 16 tokens. However, you requested 100 tokens (100 in the messages, 0 in the completion). Please reduce the length of the messages or completion.", "type": "BadRequestError", "param": null, "code": 400}),
                );
            }
            (
                200,
                json!({"id": "chatcmpl-standin", "object": "chat.completion", "created": 0, "model": name,
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("answered by {name}")}, "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}}),
            )
        }
        _ => (404, json!({"detail": "Not Found"})),
    }
}
