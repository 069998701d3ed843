//! HTTP GET from the controller, for `verify:` after apply: (URL, timeout) -> status and
//! body. http or https (rustls, the same build the WinRM transport uses; certificates
//! checked against the Mozilla roots), no proxy from the environment (hosts are on the operator's network), redirects followed, bodies
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

#[cfg(test)]
mod tests {
    use super::get;
    use std::time::Duration;

    #[tokio::test]
    async fn https_is_attempted_not_refused() {
        // Nothing listens on this loopback port: the answer is a connection error, which
        // shows the https request was made (it used to be refused as "not built in").
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = get(
            &format!("https://127.0.0.1:{port}/health"),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("cannot connect: GET https://127.0.0.1:"),
            "{err}"
        );
        assert!(!err.contains("not built in"), "{err}");
    }
}
