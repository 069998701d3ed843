//! A small HTTP server on 127.0.0.1 standing in for vLLM's and LiteLLM's endpoints.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

/// Starts a server answering each GET with `answer(path)` -> (status, JSON body); returns
/// its port. The thread lives as long as the test binary.
pub fn serve(answer: impl Fn(&str) -> (u16, String) + Send + 'static) -> u16 {
    serve_on("127.0.0.1", answer)
}

/// [`serve`] on another loopback address (`127.0.0.x`).
pub fn serve_on(addr: &str, answer: impl Fn(&str) -> (u16, String) + Send + 'static) -> u16 {
    assert!(addr.starts_with("127."), "loopback only: {addr}");
    let listener = TcpListener::bind((addr, 0)).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut first = String::new();
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
            let (status, body) = answer(&path);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}
