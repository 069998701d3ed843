//! HTTP GET from the controller, for `verify:` after apply: (URL, timeout) -> status and
//! body. Plain HTTP (no TLS built in: an `https://` URL is an error saying so), no proxy
//! from the environment (hosts are on the operator's network), redirects followed, bodies
//! read up to 1 MiB. ureq is blocking; each request runs on tokio's blocking pool.

use std::time::Duration;

use super::TransportError;

/// What a GET answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

const MAX_BODY: u64 = 1 << 20;

/// GETs `url`, giving up after `timeout` (connect, send and read together).
pub async fn get(url: &str, timeout: Duration) -> Result<HttpResponse, TransportError> {
    if url.starts_with("https://") {
        return Err(TransportError::Unsupported(format!(
            "{url}: https is not built in; verify over http"
        )));
    }
    let url = url.to_string();
    tokio::task::spawn_blocking(move || get_blocking(&url, timeout))
        .await
        .map_err(|e| TransportError::Io(format!("HTTP request task: {e}")))?
}

fn get_blocking(url: &str, timeout: Duration) -> Result<HttpResponse, TransportError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into();
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| TransportError::Connect(format!("GET {url}: {e}")))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_string()
        .map_err(|e| TransportError::Io(format!("GET {url}: reading the body: {e}")))?;
    Ok(HttpResponse { status, body })
}
