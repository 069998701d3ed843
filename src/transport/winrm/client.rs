//! A blocking WinRS client: one HTTP endpoint, one user, the shell operations.
//!
//! In: a [`ClientConfig`] (URL, Basic credentials, timeouts). Out: the WinRS operations as
//! methods — read the service config, create a shell, start a command, send stdin, receive
//! output until the command is done, signal, delete — each one POST of one envelope (see
//! [`super::wsman`]). Errors are [`ClientError`]s whose text names the host.
//!
//! ureq is blocking, so callers run these methods on tokio's blocking pool. The agent keeps
//! its HTTP connection alive between requests (one TCP connection for a whole run), and does
//! not take a proxy from the environment (hosts are on the operator's network).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;

use super::wsman::{self, AnswerError, Element, Fault, Header, Received, ShellOptions};

/// How to reach one WinRM endpoint.
#[derive(Clone)]
pub struct ClientConfig {
    /// e.g. `http://host:5985/wsman`.
    pub url: String,
    pub user: String,
    pub password: String,
    /// `user@host:port`, for messages.
    pub label: String,
    /// The server-side wait of one Receive (`wsman:OperationTimeout`).
    pub operation_timeout: Duration,
    /// How long a TCP connect may take.
    pub connect_timeout: Duration,
    /// Skip TLS certificate checks (`ansible_winrm_server_cert_validation: ignore`).
    pub tls_ignore_cert: bool,
    /// Trust only the certificates in this PEM file (`ansible_winrm_ca_trust_path`).
    pub tls_ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

/// Why a WinRS operation failed; the text names the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The endpoint could not be reached (DNS, TCP, TLS, timeout).
    Connect(String),
    /// HTTP 401: the credentials were refused.
    Auth(String),
    /// The server answered with a SOAP fault.
    Fault {
        label: String,
        operation: &'static str,
        fault: Box<Fault>,
    },
    /// Anything else (an HTTP error without a fault, a malformed answer).
    Other(String),
}

impl ClientError {
    pub fn fault(&self) -> Option<&Fault> {
        match self {
            ClientError::Fault { fault, .. } => Some(fault.as_ref()),
            _ => None,
        }
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Connect(m) | ClientError::Auth(m) | ClientError::Other(m) => {
                f.write_str(m)
            }
            ClientError::Fault {
                label,
                operation,
                fault,
            } => write!(f, "{label}: WinRM {operation} failed: {fault}"),
        }
    }
}

/// Most bytes an answer may have: a Receive carries at most one envelope of output, and
/// servers allow up to a few MiB of envelope.
const MAX_ANSWER: u64 = 64 << 20;

pub struct Client {
    agent: ureq::Agent,
    config: ClientConfig,
    authorization: String,
    session_id: String,
    /// The server's `MaxEnvelopeSizekb` in bytes (default until [`Client::read_config`]).
    max_envelope: AtomicUsize,
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Client, ClientError> {
        let mut builder = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_connect(Some(config.connect_timeout))
            // A Receive may legitimately wait the whole OperationTimeout before answering.
            .timeout_recv_response(Some(config.operation_timeout + Duration::from_secs(30)))
            .timeout_send_body(Some(Duration::from_secs(120)))
            .timeout_recv_body(Some(Duration::from_secs(120)));
        if config.url.starts_with("https://") {
            builder = tls(builder, &config)?;
        }
        let credentials = format!("{}:{}", config.user, config.password);
        let authorization = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials.as_bytes())
        );
        Ok(Client {
            agent: builder.build().into(),
            config,
            authorization,
            session_id: wsman::uuid(),
            max_envelope: AtomicUsize::new(wsman::DEFAULT_MAX_ENVELOPE),
        })
    }

    pub fn label(&self) -> &str {
        &self.config.label
    }

    /// The largest envelope the server accepts, in bytes.
    pub fn max_envelope(&self) -> usize {
        self.max_envelope.load(Ordering::SeqCst)
    }

    /// POSTs one envelope and returns the answer's Body.
    fn post(
        &self,
        operation: &'static str,
        action: &str,
        resource_uri: &str,
        options: &[(&str, &str, bool)],
        selectors: &[(&str, &str)],
        body: &str,
    ) -> Result<Element, ClientError> {
        let message_id = wsman::uuid();
        let header = Header {
            to: &self.config.url,
            resource_uri,
            message_id: &message_id,
            session_id: &self.session_id,
            max_envelope: self.max_envelope(),
            operation_timeout_s: self.config.operation_timeout.as_secs().max(1),
        };
        let envelope = wsman::envelope(action, &header, options, selectors, body);
        let label = &self.config.label;
        let mut response = self
            .agent
            .post(&self.config.url)
            .header("Content-Type", "application/soap+xml;charset=UTF-8")
            .header("Authorization", &self.authorization)
            .send(envelope.as_str())
            .map_err(|e| ClientError::Connect(format!("{label}: {operation}: {e}")))?;
        let status = response.status().as_u16();
        if status == 401 {
            return Err(ClientError::Auth(format!(
                "{label}: the server refused the credentials of `{}` (HTTP 401; deploy speaks Basic auth: the listener needs Auth/Basic=true, and AllowUnencrypted=true for plain http)",
                self.config.user
            )));
        }
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_string()
            .map_err(|e| {
                ClientError::Connect(format!("{label}: {operation}: reading the answer: {e}"))
            })?;
        if text.trim().is_empty() {
            return Err(ClientError::Other(format!(
                "{label}: WinRM {operation}: HTTP {status} with an empty body"
            )));
        }
        match wsman::parse_answer(&text) {
            Ok(body) if (200..300).contains(&status) => Ok(body),
            Ok(_) => Err(ClientError::Other(format!(
                "{label}: WinRM {operation}: HTTP {status}"
            ))),
            Err(AnswerError::Fault(fault)) => Err(ClientError::Fault {
                label: label.clone(),
                operation,
                fault,
            }),
            Err(AnswerError::Malformed(m)) => Err(ClientError::Other(format!(
                "{label}: WinRM {operation}: HTTP {status}, {m}"
            ))),
        }
    }

    /// Reads the service's `MaxEnvelopeSizekb` and uses it from now on. A fault (a user who
    /// is not an administrator may not read the config) keeps the default 150 KiB, as pypsrp
    /// does; a connection or authentication failure is an error.
    pub fn read_config(&self) -> Result<usize, ClientError> {
        match self.post(
            "Get config",
            wsman::ACTION_GET,
            wsman::RESOURCE_CONFIG,
            &[],
            &[],
            "",
        ) {
            Ok(body) => {
                if let Some(size) = wsman::max_envelope_size(&body) {
                    self.max_envelope.store(size, Ordering::SeqCst);
                }
            }
            Err(ClientError::Fault { .. }) => {}
            Err(e) => return Err(e),
        }
        Ok(self.max_envelope())
    }

    pub fn create_shell(&self, options: &ShellOptions) -> Result<String, ClientError> {
        let opts = options.options();
        let opts: Vec<(&str, &str, bool)> =
            opts.iter().map(|(k, v, m)| (*k, v.as_str(), *m)).collect();
        let body = self.post(
            "Create shell",
            wsman::ACTION_CREATE,
            wsman::RESOURCE_CMD,
            &opts,
            &[],
            &options.body(),
        )?;
        wsman::shell_id(&body).map_err(|e| self.malformed("Create shell", e))
    }

    /// Starts `command` with `args` in the shell; returns its command id. `skip_cmd_shell`
    /// runs the program directly instead of through cmd.exe.
    pub fn command(
        &self,
        shell_id: &str,
        command: &str,
        args: &[&str],
        skip_cmd_shell: bool,
    ) -> Result<String, ClientError> {
        let skip = if skip_cmd_shell { "True" } else { "False" };
        let body = self.post(
            "Command",
            wsman::ACTION_COMMAND,
            wsman::RESOURCE_CMD,
            &[("WINRS_SKIP_CMD_SHELL", skip, false)],
            &[("ShellId", shell_id)],
            &wsman::command_body(command, args),
        )?;
        wsman::command_id(&body).map_err(|e| self.malformed("Command", e))
    }

    /// Sends one stdin chunk as is (it must fit one envelope; see [`Client::send_all`]).
    pub fn send(
        &self,
        shell_id: &str,
        command_id: &str,
        data: &[u8],
        end: bool,
    ) -> Result<(), ClientError> {
        self.post(
            "Send",
            wsman::ACTION_SEND,
            wsman::RESOURCE_CMD,
            &[],
            &[("ShellId", shell_id)],
            &wsman::send_body(command_id, data, end),
        )?;
        Ok(())
    }

    /// How many stdin bytes one Send carries, from the envelope size limit.
    pub fn send_chunk_size(&self, shell_id: &str, command_id: &str) -> usize {
        let header = Header {
            to: &self.config.url,
            resource_uri: wsman::RESOURCE_CMD,
            message_id: "00000000-0000-0000-0000-000000000000",
            session_id: &self.session_id,
            max_envelope: self.max_envelope(),
            operation_timeout_s: self.config.operation_timeout.as_secs().max(1),
        };
        let empty = wsman::envelope(
            wsman::ACTION_SEND,
            &header,
            &[],
            &[("ShellId", shell_id)],
            &wsman::send_body(command_id, b"", true),
        );
        wsman::send_chunk_size(self.max_envelope(), empty.len())
    }

    /// Sends all of `data` on stdin in chunks that fit the envelope limit, the last one with
    /// `End="True"`.
    pub fn send_all(
        &self,
        shell_id: &str,
        command_id: &str,
        data: &[u8],
    ) -> Result<(), ClientError> {
        let size = self.send_chunk_size(shell_id, command_id);
        if data.is_empty() {
            return self.send(shell_id, command_id, b"", true);
        }
        let chunks: Vec<&[u8]> = data.chunks(size).collect();
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            self.send(shell_id, command_id, chunk, i == last)?;
        }
        Ok(())
    }

    /// One Receive. A `w:TimedOut` fault comes back as an error like any fault; see
    /// [`Client::receive_all`] for the loop that retries it.
    pub fn receive(
        &self,
        shell_id: &str,
        command_id: Option<&str>,
    ) -> Result<Received, ClientError> {
        let body = self.post(
            "Receive",
            wsman::ACTION_RECEIVE,
            wsman::RESOURCE_CMD,
            &[("WSMAN_CMDSHELL_OPTION_KEEPALIVE", "True", false)],
            &[("ShellId", shell_id)],
            &wsman::receive_body(command_id),
        )?;
        wsman::received(&body).map_err(|e| self.malformed("Receive", e))
    }

    /// Receives until the command is done, retrying `w:TimedOut` (the command was quiet for
    /// an OperationTimeout). Gives up after `max_wait` in all.
    pub fn receive_all(
        &self,
        shell_id: &str,
        command_id: &str,
        max_wait: Duration,
    ) -> Result<Received, ClientError> {
        let start = Instant::now();
        let mut all = Received::default();
        loop {
            match self.receive(shell_id, Some(command_id)) {
                Ok(r) => {
                    all.stdout.extend_from_slice(&r.stdout);
                    all.stderr.extend_from_slice(&r.stderr);
                    if r.done {
                        all.done = true;
                        all.exit_code = r.exit_code;
                        return Ok(all);
                    }
                }
                Err(e) if e.fault().is_some_and(Fault::is_timeout) => {}
                Err(e) => return Err(e),
            }
            if start.elapsed() > max_wait {
                return Err(ClientError::Other(format!(
                    "{}: the command did not finish within {} s",
                    self.config.label,
                    max_wait.as_secs()
                )));
            }
        }
    }

    pub fn signal(&self, shell_id: &str, command_id: &str, code: &str) -> Result<(), ClientError> {
        self.post(
            "Signal",
            wsman::ACTION_SIGNAL,
            wsman::RESOURCE_CMD,
            &[],
            &[("ShellId", shell_id)],
            &wsman::signal_body(command_id, code),
        )?;
        Ok(())
    }

    pub fn delete_shell(&self, shell_id: &str) -> Result<(), ClientError> {
        self.post(
            "Delete shell",
            wsman::ACTION_DELETE,
            wsman::RESOURCE_CMD,
            &[],
            &[("ShellId", shell_id)],
            "",
        )?;
        Ok(())
    }

    /// Runs `command args` in the shell with `stdin` (closed after; none sent when empty),
    /// waits for it, then signals it terminated (which frees it on the server).
    pub fn run(
        &self,
        shell_id: &str,
        command: &str,
        args: &[&str],
        stdin: &[u8],
        max_wait: Duration,
    ) -> Result<Received, ClientError> {
        let command_id = self.command(shell_id, command, args, false)?;
        let result = (|| {
            if !stdin.is_empty() {
                self.send_all(shell_id, &command_id, stdin)?;
            }
            self.receive_all(shell_id, &command_id, max_wait)
        })();
        // Best effort: the command has ended or failed; the answer changes nothing.
        let _ = self.signal(shell_id, &command_id, wsman::SIGNAL_TERMINATE);
        result
    }

    fn malformed(&self, operation: &str, e: AnswerError) -> ClientError {
        match e {
            AnswerError::Fault(fault) => ClientError::Fault {
                label: self.config.label.clone(),
                operation: "answer",
                fault,
            },
            AnswerError::Malformed(m) => {
                ClientError::Other(format!("{}: WinRM {operation}: {m}", self.config.label))
            }
        }
    }
}

/// https through rustls: Mozilla's roots, or only the certificates of `tls_ca_file`
/// (`ansible_winrm_ca_trust_path`), or no check at all for
/// `ansible_winrm_server_cert_validation: ignore` (the self-signed certificate a WinRM
/// https listener usually has).
fn tls(
    builder: ureq::config::ConfigBuilder<ureq::typestate::AgentScope>,
    config: &ClientConfig,
) -> Result<ureq::config::ConfigBuilder<ureq::typestate::AgentScope>, ClientError> {
    use ureq::tls::{PemItem, RootCerts, TlsConfig, TlsProvider};
    let mut tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .disable_verification(config.tls_ignore_cert);
    if let Some(path) = &config.tls_ca_file {
        let label = &config.label;
        let pem = std::fs::read(path).map_err(|e| {
            ClientError::Connect(format!(
                "{label}: cannot read ansible_winrm_ca_trust_path {}: {e}",
                path.display()
            ))
        })?;
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            match item {
                Ok(PemItem::Certificate(c)) => certs.push(c),
                Ok(_) => {}
                Err(e) => {
                    return Err(ClientError::Connect(format!(
                        "{label}: {} is not PEM: {e}",
                        path.display()
                    )));
                }
            }
        }
        if certs.is_empty() {
            return Err(ClientError::Connect(format!(
                "{label}: {} holds no certificate",
                path.display()
            )));
        }
        tls = tls.root_certs(RootCerts::new_with_certs(&certs));
    }
    Ok(builder.tls_config(tls.build()))
}
