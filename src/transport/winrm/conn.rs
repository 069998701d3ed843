//! One HTTP/1.1 connection held open for a whole run. NTLM authenticates a TCP connection,
//! not a request, so the handshake and every message after it must travel on the same
//! connection; ureq's pool makes no such promise, so NTLM goes through this instead.
//!
//! In: the endpoint URL, timeouts, the TLS settings (the same choices as Basic over https:
//! Mozilla's roots, a CA file, or no check). Out: [`Conn::request`], one POST and its whole
//! answer; response heads are parsed by `httparse`, bodies by Content-Length, chunked
//! transfer coding, or end of stream. A connection the server closes is reported as closed
//! ([`Conn::is_open`]), never silently replaced: the caller must authenticate a new one.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

/// Most bytes one answer may have (a Receive carries at most one envelope of output).
const MAX_BODY: usize = 64 << 20;
/// Most bytes a response head may have.
const MAX_HEAD: usize = 64 << 10;

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// How https certificates are checked.
#[derive(Clone, Debug, Default)]
pub struct TlsSettings {
    /// `ansible_winrm_server_cert_validation: ignore`.
    pub ignore_cert: bool,
    /// `ansible_winrm_ca_trust_path`: trust only the certificates in this PEM file.
    pub ca_file: Option<std::path::PathBuf>,
}

/// The parts of an endpoint URL a request needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub https: bool,
    /// As written in the URL (an IPv6 address keeps its brackets), for the Host header.
    pub authority: String,
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("{url}: not an http or https URL"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("{url}: bad port {p:?}"))?,
            ),
            _ => (authority, if https { 443 } else { 80 }),
        };
        Ok(Endpoint {
            https,
            authority: authority.to_string(),
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            path: path.to_string(),
        })
    }
}

/// Why an exchange failed.
#[derive(Debug)]
pub struct ConnError {
    pub message: String,
    /// The server closed the connection before answering at all (as it may do to a
    /// connection that sat idle): the request was not processed and may be sent again on a
    /// new connection.
    pub nothing_answered: bool,
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<String> for ConnError {
    fn from(message: String) -> ConnError {
        ConnError {
            message,
            nothing_answered: false,
        }
    }
}

/// One answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct Conn {
    stream: BufReader<Box<dyn Stream>>,
    endpoint: Endpoint,
    open: bool,
    /// The server's certificate (DER), over https.
    server_cert: Option<Vec<u8>>,
}

impl Conn {
    /// Opens a TCP connection (and TLS over it for https).
    pub fn connect(
        endpoint: &Endpoint,
        connect_timeout: Duration,
        io_timeout: Duration,
        tls: &TlsSettings,
    ) -> Result<Conn, String> {
        let target = format!("{}:{}", endpoint.host, endpoint.port);
        let addrs: Vec<_> = (endpoint.host.as_str(), endpoint.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {target}: {e}"))?
            .collect();
        let mut last = format!("{target}: no address");
        let mut tcp = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, connect_timeout) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = format!("cannot connect to {addr}: {e}"),
            }
        }
        let tcp = tcp.ok_or(last)?;
        let set = |r: std::io::Result<()>| r.map_err(|e| format!("{target}: {e}"));
        set(tcp.set_read_timeout(Some(io_timeout)))?;
        set(tcp.set_write_timeout(Some(io_timeout)))?;
        set(tcp.set_nodelay(true))?;
        let mut server_cert = None;
        let stream: Box<dyn Stream> = if endpoint.https {
            let config = tls_config(tls)?;
            let name = rustls::pki_types::ServerName::try_from(endpoint.host.clone())
                .map_err(|e| format!("{}: not a TLS server name: {e}", endpoint.host))?;
            let conn = rustls::ClientConnection::new(config, name)
                .map_err(|e| format!("{target}: TLS: {e}"))?;
            let mut s = rustls::StreamOwned::new(conn, tcp);
            // Finish the handshake now, so a certificate problem is a connect error.
            while s.conn.is_handshaking() {
                s.conn
                    .complete_io(&mut s.sock)
                    .map_err(|e| format!("{target}: TLS handshake: {e}"))?;
            }
            server_cert = s
                .conn
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.as_ref().to_vec());
            Box::new(s)
        } else {
            Box::new(tcp)
        };
        Ok(Conn {
            stream: BufReader::new(stream),
            endpoint: endpoint.clone(),
            open: true,
            server_cert,
        })
    }

    /// RFC 5929 `tls-server-end-point` channel binding data for this connection (https
    /// only): the prefix and the hash of the server's certificate.
    pub fn channel_binding(&self) -> Option<Vec<u8>> {
        let cert = self.server_cert.as_deref()?;
        let mut data = b"tls-server-end-point:".to_vec();
        data.extend(certificate_hash(cert));
        Some(data)
    }

    /// False once the server closed the connection or an exchange failed half-way.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// POSTs `body` with `headers` (Host and Content-Length are added) and reads the whole
    /// answer.
    pub fn post(&mut self, headers: &[(&str, &str)], body: &[u8]) -> Result<Response, ConnError> {
        if !self.open {
            return Err(ConnError {
                message: "the connection was closed".into(),
                nothing_answered: true,
            });
        }
        let result = self.exchange(headers, body);
        match &result {
            Ok(r)
                if r.header("Connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close")) =>
            {
                self.open = false
            }
            Ok(_) => {}
            Err(_) => self.open = false,
        }
        result
    }

    fn exchange(&mut self, headers: &[(&str, &str)], body: &[u8]) -> Result<Response, ConnError> {
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.endpoint.path,
            self.endpoint.authority,
            body.len()
        );
        for (name, value) in headers {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        let w = self.stream.get_mut();
        w.write_all(&request)
            .and_then(|()| w.flush())
            .map_err(|e| ConnError {
                message: format!("sending the request: {e}"),
                nothing_answered: matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                ),
            })?;
        self.read_response()
    }

    fn read_response(&mut self) -> Result<Response, ConnError> {
        let (response, to_end) = read_response(&mut self.stream)?;
        if to_end {
            self.open = false;
        }
        Ok(response)
    }
}

/// Reads one HTTP/1.1 answer from `stream`: (the answer, whether its body ran to the end of
/// the stream, which ends the connection). Every read is bounded: a head over 64 KiB, a
/// body over 64 MiB or a chunk-size line without end is an error, whatever the server sends.
pub fn read_response(stream: &mut impl BufRead) -> Result<(Response, bool), ConnError> {
    let mut head = Vec::new();
    loop {
        // Bounded even when no newline ever comes.
        let room = (MAX_HEAD + 1).saturating_sub(head.len()) as u64;
        let n = stream
            .by_ref()
            .take(room)
            .read_until(b'\n', &mut head)
            .map_err(|e| ConnError {
                message: format!("reading the answer: {e}"),
                nothing_answered: head.is_empty()
                    && e.kind() == std::io::ErrorKind::ConnectionReset,
            })?;
        if head.len() > MAX_HEAD {
            return Err("the answer's head is too long".to_string().into());
        }
        if n == 0 {
            return Err(ConnError {
                message: if head.is_empty() {
                    "the server closed the connection without answering".into()
                } else {
                    "the server closed the connection in the middle of an answer".into()
                },
                nothing_answered: head.is_empty(),
            });
        }
        if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
            break;
        }
    }
    let mut parsed = [httparse::EMPTY_HEADER; 64];
    let mut res = httparse::Response::new(&mut parsed);
    match res.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err("the answer's head is incomplete".to_string().into());
        }
        Err(e) => return Err(format!("the answer is not HTTP: {e}").into()),
    }
    let status = res.code.unwrap_or(0);
    let headers: Vec<(String, String)> = res
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect();
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let mut to_end = false;
    let chunked = response
        .header("Transfer-Encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        response.body = read_chunked(stream)?;
    } else if let Some(len) = response.header("Content-Length") {
        let len: usize = len
            .parse()
            .map_err(|_| format!("bad Content-Length {len:?}"))?;
        if len > MAX_BODY {
            return Err(format!("the answer is too large ({len} bytes)").into());
        }
        response.body = vec![0; len];
        stream
            .read_exact(&mut response.body)
            .map_err(|e| format!("reading the answer's body: {e}"))?;
    } else if !(status < 200 || status == 204 || status == 304) {
        // No length: the body runs to the end of the stream, which ends the connection.
        stream
            .by_ref()
            .take(MAX_BODY as u64 + 1)
            .read_to_end(&mut response.body)
            .map_err(|e| format!("reading the answer's body: {e}"))?;
        if response.body.len() > MAX_BODY {
            return Err("the answer is too large".to_string().into());
        }
        to_end = true;
    }
    Ok((response, to_end))
}

/// Longest chunk-size or trailer line read.
const MAX_CHUNK_LINE: u64 = 4096;

fn read_chunked(stream: &mut impl BufRead) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    let err = |e: std::io::Error| format!("reading the answer's body: {e}");
    let read_line = |stream: &mut dyn BufRead, line: &mut String| {
        line.clear();
        let n = stream.take(MAX_CHUNK_LINE).read_line(line).map_err(err)?;
        if n as u64 == MAX_CHUNK_LINE && !line.ends_with('\n') {
            return Err("a chunk line is too long".to_string());
        }
        Ok(n)
    };
    let mut line = String::new();
    loop {
        if read_line(stream, &mut line)? == 0 {
            return Err(
                "the server closed the connection in the middle of a chunked answer".into(),
            );
        }
        let size = line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| format!("bad chunk size {:?}", line.trim()))?;
        if size == 0 {
            // Trailers, up to the empty line.
            for _ in 0..100 {
                if read_line(stream, &mut line)? == 0 || line.trim().is_empty() {
                    return Ok(body);
                }
            }
            return Err("too many trailers".into());
        }
        if size > MAX_BODY.saturating_sub(body.len()) {
            return Err("the answer is too large".into());
        }
        let start = body.len();
        body.resize(start + size, 0);
        stream.read_exact(&mut body[start..]).map_err(err)?;
        let mut crlf = [0u8; 2];
        stream.read_exact(&mut crlf).map_err(err)?;
    }
}

/// The hash of a DER certificate for `tls-server-end-point` (RFC 5929 4.1): the hash of
/// its signature algorithm, SHA-256 where that is MD5 or SHA-1 (or not recognised).
pub fn certificate_hash(cert: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    match signature_hash(cert) {
        SignatureHash::Sha384 => sha2::Sha384::digest(cert).to_vec(),
        SignatureHash::Sha512 => sha2::Sha512::digest(cert).to_vec(),
        SignatureHash::Sha256 => sha2::Sha256::digest(cert).to_vec(),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum SignatureHash {
    Sha256,
    Sha384,
    Sha512,
}

/// The hash named by a certificate's `signatureAlgorithm` (Certificate ::= SEQUENCE {
/// tbsCertificate, signatureAlgorithm, signature }); for RSASSA-PSS, the hash in its
/// parameters.
fn signature_hash(cert: &[u8]) -> SignatureHash {
    const SHA384: [&[u8]; 3] = [
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c], // sha384WithRSAEncryption
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],       // ecdsa-with-SHA384
        &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02], // id-sha384 (PSS)
    ];
    const SHA512: [&[u8]; 3] = [
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d], // sha512WithRSAEncryption
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],       // ecdsa-with-SHA512
        &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03], // id-sha512 (PSS)
    ];
    const PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
    let Some(algorithm) = der_signature_algorithm(cert) else {
        return SignatureHash::Sha256;
    };
    let Some((oid, params)) = der_take(algorithm, 0x06) else {
        return SignatureHash::Sha256;
    };
    // For PSS the hash OID sits inside the parameters; look for it there.
    let named = |list: &[&[u8]]| {
        list.iter()
            .any(|o| *o == oid || (oid == PSS && params.windows(o.len()).any(|w| w == *o)))
    };
    if named(&SHA384) {
        SignatureHash::Sha384
    } else if named(&SHA512) {
        SignatureHash::Sha512
    } else {
        SignatureHash::Sha256
    }
}

/// The contents of the certificate's signatureAlgorithm SEQUENCE.
fn der_signature_algorithm(cert: &[u8]) -> Option<&[u8]> {
    let (certificate, _) = der_take(cert, 0x30)?;
    let (_, rest) = der_take(certificate, 0x30)?; // tbsCertificate
    let (algorithm, _) = der_take(rest, 0x30)?;
    Some(algorithm)
}

/// Splits one DER element with tag `tag` off `b`: (its contents, what follows it).
fn der_take(b: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    if *b.first()? != tag {
        return None;
    }
    let first = *b.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let len = b
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |acc, x| (acc << 8) | usize::from(*x));
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    Some((b.get(header..end)?, b.get(end..)?))
}

/// The certificates (DER) of an `ansible_winrm_ca_trust_path` PEM file; an error names the
/// file when it cannot be read, is not PEM or holds no certificate.
pub fn read_ca_file(path: &std::path::Path) -> Result<Vec<Vec<u8>>, String> {
    let pem = std::fs::read(path).map_err(|e| {
        format!(
            "cannot read ansible_winrm_ca_trust_path {}: {e}",
            path.display()
        )
    })?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c.der().to_vec()),
            Ok(_) => {}
            Err(e) => return Err(format!("{} is not PEM: {e}", path.display())),
        }
    }
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", path.display()));
    }
    Ok(certs)
}

/// rustls with ring (the build ureq uses): Mozilla's roots, or only `ca_file`'s
/// certificates, or no check at all.
fn tls_config(tls: &TlsSettings) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let config = if tls.ignore_cert {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoCheck(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match &tls.ca_file {
            Some(path) => {
                for der in read_ca_file(path)? {
                    roots
                        .add(rustls::pki_types::CertificateDer::from(der))
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// `ansible_winrm_server_cert_validation: ignore`: any certificate is accepted (signatures
/// are still checked, so the handshake itself is sound).
#[derive(Debug)]
struct NoCheck(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        let e = Endpoint::parse("http://127.0.0.1:5985/wsman").unwrap();
        assert_eq!(
            (e.https, e.host.as_str(), e.port, e.path.as_str()),
            (false, "127.0.0.1", 5985, "/wsman")
        );
        let e = Endpoint::parse("https://[::1]:5986/wsman").unwrap();
        assert_eq!(
            (e.host.as_str(), e.authority.as_str()),
            ("::1", "[::1]:5986")
        );
        assert!(Endpoint::parse("ftp://x/").is_err());
        assert!(Endpoint::parse("http://x:port/").is_err());
    }

    /// A certificate shaped as DER (SEQUENCE { tbs, SEQUENCE { OID, params }, BIT STRING })
    /// with the given algorithm OID and parameters.
    fn cert_with(oid: &[u8], params: &[u8]) -> Vec<u8> {
        fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
            let mut out = vec![tag];
            if content.len() < 0x80 {
                out.push(content.len() as u8);
            } else {
                out.extend([0x82, (content.len() >> 8) as u8, content.len() as u8]);
            }
            out.extend_from_slice(content);
            out
        }
        let tbs = tlv(0x30, &[0x05; 200]);
        let mut alg = tlv(0x06, oid);
        alg.extend_from_slice(params);
        let mut body = tbs;
        body.extend(tlv(0x30, &alg));
        body.extend(tlv(0x03, &[0, 1, 2, 3]));
        tlv(0x30, &body)
    }

    #[test]
    fn the_channel_binding_hash_follows_the_signature_algorithm() {
        let sha256_rsa = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
        let sha1_rsa = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05];
        let sha384_rsa = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
        let ecdsa_512 = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04];
        let pss = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
        let pss_sha384_params = [
            0x30, 0x0f, 0xa0, 0x0d, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03,
            0x04, 0x02, 0x02,
        ];
        assert_eq!(
            signature_hash(&cert_with(&sha256_rsa, &[5, 0])),
            SignatureHash::Sha256
        );
        assert_eq!(
            signature_hash(&cert_with(&sha1_rsa, &[5, 0])),
            SignatureHash::Sha256
        );
        assert_eq!(
            signature_hash(&cert_with(&sha384_rsa, &[5, 0])),
            SignatureHash::Sha384
        );
        assert_eq!(
            signature_hash(&cert_with(&ecdsa_512, &[])),
            SignatureHash::Sha512
        );
        assert_eq!(
            signature_hash(&cert_with(&pss, &pss_sha384_params)),
            SignatureHash::Sha384
        );
        assert_eq!(signature_hash(b"not DER"), SignatureHash::Sha256);
        assert_eq!(certificate_hash(&cert_with(&sha384_rsa, &[5, 0])).len(), 48);
    }
}
