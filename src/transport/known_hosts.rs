//! OpenSSH known_hosts checking, written by hand so that deploy trusts exactly what `ssh` would.
//!
//! In: one or more known_hosts files (missing ones are skipped), a host name or address, a port
//! and the public key the server presented. Out: a [`Verdict`] (the key matches, is revoked,
//! differs from the one on file, or the host is unknown), the host key algorithms known for a
//! host (so the SSH client asks the server for a key it can check), and [`KnownHosts::append`]
//! to record a new host's key (`StrictHostKeyChecking=accept-new`).
//!
//! Supported line syntax: `[@marker] patterns keytype base64 [comment]`, fields separated by
//! spaces or tabs; `#` comments and blank lines; plain patterns (comma-separated, `*` and `?`
//! wildcards, `!` negation, case-insensitive) and hashed names (`|1|salt|hash`, HMAC-SHA1 keyed
//! by the salt over the host string). The host string is `host` for port 22 and `[host]:port`
//! otherwise, as OpenSSH writes it.
//!
//! Not supported: `@cert-authority` lines are ignored (deploy does not ask servers for host
//! certificates, so a CA line can never vouch for a host here), and lines whose key cannot be
//! parsed (unknown key types, damaged base64) are skipped, as OpenSSH does.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::ssh_key::{Algorithm, HashAlg, PublicKey};
use sha1::Sha1;

/// A known_hosts file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct KnownHostsError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// What the known_hosts files say about a host's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A line for this host holds exactly this key.
    Match { file: PathBuf, line: usize },
    /// The host is known, but with another key: possibly a man-in-the-middle. `file` and `line`
    /// name the entry that holds the other key (one of the same type when there is one).
    Changed {
        file: PathBuf,
        line: usize,
        /// The key type of that entry, e.g. `ssh-ed25519`.
        known_type: String,
    },
    /// An `@revoked` line for this host holds this key. Wins over any line that accepts it.
    Revoked { file: PathBuf, line: usize },
    /// No line is about this host.
    Unknown,
}

/// Where to look for known hosts by default: `~/.ssh/known_hosts` (when the home is known)
/// then `/etc/ssh/ssh_known_hosts`.
pub fn default_files(home: Option<&Path>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(home) = home {
        files.push(home.join(".ssh").join("known_hosts"));
    }
    files.push(PathBuf::from("/etc/ssh/ssh_known_hosts"));
    files
}

/// known_hosts as loaded for a run's connections, shared by all of them: each connection
/// used to read and parse every file itself, so a fleet of N hosts parsed N × N lines and
/// held N copies for as long as its connections stayed open (26 MB at 254 hosts). The files
/// are read again when one's size or modification time changed since they were loaded.
#[derive(Debug, Clone, Default)]
pub struct SharedKnownHosts(Arc<Mutex<Option<Loaded>>>);

#[derive(Debug)]
struct Loaded {
    files: Vec<PathBuf>,
    stamps: Vec<Option<(u64, Option<SystemTime>)>>,
    known: Arc<KnownHosts>,
}

impl SharedKnownHosts {
    /// The parsed `files` (see [`KnownHosts::load`]), loaded again only when they changed.
    pub fn get(&self, files: &[PathBuf]) -> Result<Arc<KnownHosts>, KnownHostsError> {
        // Taken before reading: a change while reading makes the next call read again.
        let stamps: Vec<_> = files
            .iter()
            .map(|f| fs::metadata(f).ok().map(|m| (m.len(), m.modified().ok())))
            .collect();
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(loaded) = slot.as_ref()
            && loaded.files == files
            && loaded.stamps == stamps
        {
            return Ok(loaded.known.clone());
        }
        let known = Arc::new(KnownHosts::load(files)?);
        *slot = Some(Loaded {
            files: files.to_vec(),
            stamps,
            known: known.clone(),
        });
        Ok(known)
    }
}

/// The host string known_hosts stores for a host and port: `host` for 22, else `[host]:port`.
pub fn host_string(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
}

#[derive(Debug, Clone)]
enum Hosts {
    /// `|1|salt|hash`: HMAC-SHA1(key = salt, message = host string).
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
    /// Comma-separated patterns, as written.
    Patterns(Vec<String>),
}

#[derive(Debug, Clone)]
struct Entry {
    file: PathBuf,
    line: usize,
    marker: Marker,
    hosts: Hosts,
    key: PublicKey,
}

/// The parsed content of some known_hosts files.
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    entries: Vec<Entry>,
}

impl KnownHosts {
    /// Reads `files` in order. A file that does not exist is skipped (like `ssh`); one that
    /// exists but cannot be read is an error, since silently ignoring it could turn a changed
    /// key into an "unknown" one.
    pub fn load<P: AsRef<Path>>(files: &[P]) -> Result<KnownHosts, KnownHostsError> {
        let mut known = KnownHosts::default();
        for file in files {
            let file = file.as_ref();
            match fs::read(file) {
                Ok(bytes) => known.add_text(file, &String::from_utf8_lossy(&bytes)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(KnownHostsError {
                        path: file.to_path_buf(),
                        source,
                    });
                }
            }
        }
        Ok(known)
    }

    /// Parses known_hosts text as if read from `file` (used in messages).
    pub fn parse(file: &Path, text: &str) -> KnownHosts {
        let mut known = KnownHosts::default();
        known.add_text(file, text);
        known
    }

    fn add_text(&mut self, file: &Path, text: &str) {
        for (index, line) in text.lines().enumerate() {
            if let Some(entry) = parse_line(file, index + 1, line) {
                self.entries.push(entry);
            }
        }
    }

    /// Checks the key `host` presented on `port`.
    pub fn check(&self, host: &str, port: u16, key: &PublicKey) -> Verdict {
        let name = host_string(host, port);
        let matching: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| e.hosts.matches(&name))
            .collect();

        // A revoked key is refused whatever else the files say about it.
        if let Some(e) = matching
            .iter()
            .find(|e| e.marker == Marker::Revoked && e.key.key_data() == key.key_data())
        {
            return Verdict::Revoked {
                file: e.file.clone(),
                line: e.line,
            };
        }
        let accepted: Vec<&&Entry> = matching
            .iter()
            .filter(|e| e.marker == Marker::None)
            .collect();
        if let Some(e) = accepted.iter().find(|e| e.key.key_data() == key.key_data()) {
            return Verdict::Match {
                file: e.file.clone(),
                line: e.line,
            };
        }
        // Any other key on file for this host makes this one a change, not a new host: the
        // client asks for the known key types first (`known_algorithms`), so a server that
        // still has its old key would have shown it.
        let family = key_family(&key.algorithm());
        let other = accepted
            .iter()
            .find(|e| key_family(&e.key.algorithm()) == family)
            .or_else(|| accepted.first());
        match other {
            Some(e) => Verdict::Changed {
                file: e.file.clone(),
                line: e.line,
                known_type: e.key.algorithm().as_str().to_string(),
            },
            None => Verdict::Unknown,
        }
    }

    /// The host key algorithms of the keys on file for `host`:`port`, in file order, for the
    /// client's preference list. RSA keys give `rsa-sha2-512`, `rsa-sha2-256` then `ssh-rsa`
    /// (the key is the same, only the signature hash differs); without this the client would
    /// negotiate ed25519 with a server that has both and call a host known by its RSA key
    /// unknown.
    pub fn known_algorithms(&self, host: &str, port: u16) -> Vec<Algorithm> {
        let name = host_string(host, port);
        let mut out: Vec<Algorithm> = Vec::new();
        for e in self
            .entries
            .iter()
            .filter(|e| e.marker == Marker::None && e.hosts.matches(&name))
        {
            let algs = match e.key.algorithm() {
                Algorithm::Rsa { .. } => vec![
                    Algorithm::Rsa {
                        hash: Some(HashAlg::Sha512),
                    },
                    Algorithm::Rsa {
                        hash: Some(HashAlg::Sha256),
                    },
                    Algorithm::Rsa { hash: None },
                ],
                other => vec![other],
            };
            for a in algs {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
        out
    }

    /// Appends `key` for `host`:`port` to `file` (`[host]:port` form unless the port is 22),
    /// creating the file (mode 0600) and its directory (mode 0700, like `~/.ssh`) if missing.
    pub fn append(
        file: &Path,
        host: &str,
        port: u16,
        key: &PublicKey,
    ) -> Result<(), KnownHostsError> {
        let err = |source: io::Error| KnownHostsError {
            path: file.to_path_buf(),
            source,
        };
        let encoded = key
            .to_bytes()
            .map_err(|e| err(io::Error::other(e.to_string())))?;
        let line = format!(
            "{} {} {}\n",
            host_string(host, port),
            key.algorithm().as_str(),
            BASE64.encode(encoded)
        );
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            create_private_dir(dir).map_err(err)?;
        }
        // A file that does not end in a newline would glue our line onto its last one.
        let needs_newline = match fs::read(file) {
            Ok(bytes) => bytes.last().is_some_and(|b| *b != b'\n'),
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(err(e)),
        };
        let mut options = fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(file).map_err(err)?;
        let mut text = String::new();
        if needs_newline {
            text.push('\n');
        }
        text.push_str(&line);
        f.write_all(text.as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)?;
        Ok(())
    }
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Key types that are "the same kind of key" for deciding which entry a new key replaces.
fn key_family(alg: &Algorithm) -> String {
    match alg {
        Algorithm::Rsa { .. } => "ssh-rsa".to_string(),
        other => other.as_str().to_string(),
    }
}

impl Hosts {
    fn matches(&self, name: &str) -> bool {
        match self {
            Hosts::Hashed { salt, hash } => {
                let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(salt) else {
                    return false;
                };
                mac.update(name.as_bytes());
                mac.verify_slice(hash).is_ok()
            }
            Hosts::Patterns(patterns) => match_pattern_list(name, patterns),
        }
    }
}

/// OpenSSH's `match_hostname`: a negated pattern that matches rejects the host outright;
/// otherwise any positive match accepts it. Case-insensitive.
fn match_pattern_list(name: &str, patterns: &[String]) -> bool {
    let name = name.to_ascii_lowercase();
    let mut matched = false;
    for pattern in patterns {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, pattern.as_str()),
        };
        if wildcard_match(name.as_bytes(), pattern.to_ascii_lowercase().as_bytes()) {
            if negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

/// `*` matches any run of characters (also none), `?` exactly one.
fn wildcard_match(text: &[u8], pattern: &[u8]) -> bool {
    // Iterative matcher with backtracking to the last `*`: linear enough for host names.
    let (mut t, mut p) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(c) if *c == b'?' || *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|c| *c == b'*')
}

/// Splits on runs of spaces and tabs.
fn fields(line: &str) -> impl Iterator<Item = &str> {
    line.split([' ', '\t']).filter(|f| !f.is_empty())
}

fn parse_line(file: &Path, number: usize, line: &str) -> Option<Entry> {
    let trimmed = line.trim_start_matches([' ', '\t']);
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return None;
    }
    let mut it = fields(trimmed).peekable();
    let mut marker = Marker::None;
    if let Some(first) = it.peek()
        && first.starts_with('@')
    {
        marker = match *first {
            "@revoked" => Marker::Revoked,
            // `@cert-authority` and unknown markers: not a key for a host, see the module doc.
            _ => return None,
        };
        it.next();
    }
    let hosts = parse_hosts(it.next()?)?;
    let key_type = it.next()?;
    let blob = BASE64.decode(it.next()?).ok()?;
    let key = PublicKey::from_bytes(&blob).ok()?;
    // A line whose type field disagrees with its key blob is damaged; OpenSSH skips it too.
    if key_family(&key.algorithm()) != key_family(&Algorithm::new(key_type).ok()?) {
        return None;
    }
    Some(Entry {
        file: file.to_path_buf(),
        line: number,
        marker,
        hosts,
        key,
    })
}

fn parse_hosts(field: &str) -> Option<Hosts> {
    if let Some(rest) = field.strip_prefix("|1|") {
        let (salt, hash) = rest.split_once('|')?;
        return Some(Hosts::Hashed {
            salt: BASE64.decode(salt).ok()?,
            hash: BASE64.decode(hash).ok()?,
        });
    }
    Some(Hosts::Patterns(
        field
            .split(',')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect(),
    ))
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Match { file, line } => write!(f, "matches {}:{line}", file.display()),
            Verdict::Changed {
                file,
                line,
                known_type,
            } => write!(
                f,
                "differs from the {known_type} key in {}:{line}",
                file.display()
            ),
            Verdict::Revoked { file, line } => {
                write!(f, "is revoked in {}:{line}", file.display())
            }
            Verdict::Unknown => write!(f, "is not in known_hosts"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBpgMDYqsd5iuC7WIv9a82axcLAapLjelIm3nhJ6Kkxv";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKq6UF4QU5lqUjH6meQ+o388Kv/Kn9URNdguzPDMaAnK";
    const KEY_RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC9rfgt5s1h4IrPa0GzAZtDGJ2g4PkdPKwq44RxREnvGCFWY9RjCB8Au0jkDK+NAw350CVfkPy1DKEtnni5ZWRDN+l4KWggE0XoXKKjngkzANrBLpc8pPv6e3+GVBOuKlMHmAxVxoEuO71MK1zVBK2Rnn98A+ylcWT5Fpg+VS7Ujw==";
    const KEY_ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBAiF4L57AY0Zp/0TpFcTRP/4Ccgh4WChUcj4z/7KeC0JrC9KPPgw75l4Ze5CyghDZwUp+hsCbAAuEPyW1u+hVak=";

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).unwrap()
    }

    fn kh(text: &str) -> KnownHosts {
        KnownHosts::parse(Path::new("/kh"), text)
    }

    fn at(line: usize) -> Verdict {
        Verdict::Match {
            file: PathBuf::from("/kh"),
            line,
        }
    }

    #[test]
    fn plain_host_port_22_and_other_port() {
        let k = kh(&format!(
            "example.com {KEY_A}\n[10.0.0.1]:2222 {KEY_A} comment here\n"
        ));
        assert_eq!(k.check("example.com", 22, &key(KEY_A)), at(1));
        assert_eq!(k.check("EXAMPLE.com", 22, &key(KEY_A)), at(1));
        assert_eq!(k.check("example.com", 2222, &key(KEY_A)), Verdict::Unknown);
        assert_eq!(k.check("10.0.0.1", 2222, &key(KEY_A)), at(2));
        assert_eq!(k.check("10.0.0.1", 22, &key(KEY_A)), Verdict::Unknown);
    }

    #[test]
    fn comments_blank_lines_tabs_and_junk() {
        let text = format!(
            "# a comment\n\n   \n  # indented comment\nnot a valid line\nhost ssh-ed25519 !!!notbase64\nhost\t \tssh-ed25519\t{}\n",
            KEY_A.split(' ').nth(1).unwrap()
        );
        assert_eq!(kh(&text).check("host", 22, &key(KEY_A)), at(7));
    }

    #[test]
    fn type_field_must_agree_with_the_key() {
        let blob = KEY_A.split(' ').nth(1).unwrap();
        let k = kh(&format!("host ssh-rsa {blob}\n"));
        assert_eq!(k.check("host", 22, &key(KEY_A)), Verdict::Unknown);
    }

    #[test]
    fn comma_lists_wildcards_and_negation() {
        let k = kh(&format!(
            "alpha,beta {KEY_A}\n*.example.com,!bad.example.com {KEY_A}\nweb?? {KEY_A}\n[10.1.*]:2200 {KEY_A}\n"
        ));
        let a = key(KEY_A);
        assert_eq!(k.check("beta", 22, &a), at(1));
        assert_eq!(k.check("x.y.example.com", 22, &a), at(2));
        assert_eq!(k.check("bad.example.com", 22, &a), Verdict::Unknown);
        assert_eq!(k.check("web01", 22, &a), at(3));
        assert_eq!(k.check("web1", 22, &a), Verdict::Unknown);
        assert_eq!(k.check("10.1.2.3", 2200, &a), at(4));
        assert!(wildcard_match(b"abc", b"*"));
        assert!(wildcard_match(b"", b"*"));
        assert!(wildcard_match(b"aXbXc", b"a*b*c"));
        assert!(!wildcard_match(b"aXbXd", b"a*b*c"));
        assert!(!wildcard_match(b"ab", b"abc"));
    }

    #[test]
    fn hashed_entries_from_ssh_keygen() {
        // Made with `ssh-keygen -H` from "[127.0.0.1]:2222 KEY_A" and "example.com KEY_A".
        let k = kh(&format!(
            "|1|pwxNGbE6mP4U0NLlI/fkJAllz9k=|26NeDE98vgT9FeC70V7NwpOQaPM= {KEY_A}\n\
             |1|VwJFTJx436/ikxken+0g34S9OrI=|XnqXIKfJYnOZLEtBt7f9hK7XJag= {KEY_A}\n"
        ));
        let a = key(KEY_A);
        assert_eq!(k.check("127.0.0.1", 2222, &a), at(1));
        assert_eq!(k.check("example.com", 22, &a), at(2));
        assert_eq!(k.check("127.0.0.1", 2223, &a), Verdict::Unknown);
        assert_eq!(k.check("example.org", 22, &a), Verdict::Unknown);
        assert!(matches!(
            k.check("example.com", 22, &key(KEY_B)),
            Verdict::Changed { line: 2, .. }
        ));
    }

    #[test]
    fn hashed_entry_made_by_ssh_keygen_now() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_hosts");
        fs::write(&file, format!("[127.0.0.1]:2200 {KEY_B}\n")).unwrap();
        let status = std::process::Command::new("ssh-keygen")
            .arg("-H")
            .arg("-f")
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let Ok(status) = status else {
            eprintln!("ssh-keygen not available; skipped");
            return;
        };
        assert!(status.success());
        let text = fs::read_to_string(&file).unwrap();
        assert!(text.starts_with("|1|"), "{text}");
        let k = KnownHosts::load(&[&file]).unwrap();
        assert!(matches!(
            k.check("127.0.0.1", 2200, &key(KEY_B)),
            Verdict::Match { line: 1, .. }
        ));
    }

    #[test]
    fn changed_key_names_the_entry() {
        let k = kh(&format!("other {KEY_B}\nhost {KEY_ECDSA}\nhost {KEY_A}\n"));
        // Same type on line 3 is preferred over the first entry of another type.
        assert_eq!(
            k.check("host", 22, &key(KEY_B)),
            Verdict::Changed {
                file: PathBuf::from("/kh"),
                line: 3,
                known_type: "ssh-ed25519".into()
            }
        );
        // Only another type on file: still a change (never silently "new").
        let k = kh(&format!("host {KEY_RSA}\n"));
        assert!(matches!(
            k.check("host", 22, &key(KEY_A)),
            Verdict::Changed { line: 1, .. }
        ));
    }

    #[test]
    fn revoked_wins_over_an_accepting_line() {
        let k = kh(&format!("host {KEY_A}\n@revoked * {KEY_A}\nhost {KEY_B}\n"));
        assert_eq!(
            k.check("host", 22, &key(KEY_A)),
            Verdict::Revoked {
                file: PathBuf::from("/kh"),
                line: 2
            }
        );
        assert_eq!(k.check("host", 22, &key(KEY_B)), at(3));
    }

    #[test]
    fn cert_authority_lines_are_ignored() {
        let k = kh(&format!("@cert-authority * {KEY_A}\n"));
        assert_eq!(k.check("host", 22, &key(KEY_A)), Verdict::Unknown);
        assert!(k.known_algorithms("host", 22).is_empty());
    }

    #[test]
    fn known_algorithms_for_rsa_prefer_sha2() {
        let k = kh(&format!(
            "[h]:2200 {KEY_RSA}\n[h]:2200 {KEY_A}\n@revoked [h]:2200 {KEY_ECDSA}\n"
        ));
        assert_eq!(
            k.known_algorithms("h", 2200),
            vec![
                Algorithm::Rsa {
                    hash: Some(HashAlg::Sha512)
                },
                Algorithm::Rsa {
                    hash: Some(HashAlg::Sha256)
                },
                Algorithm::Rsa { hash: None },
                Algorithm::Ed25519,
            ]
        );
        assert!(k.known_algorithms("h", 22).is_empty());
    }

    #[test]
    fn append_creates_dir_and_file_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("home/.ssh/known_hosts");
        KnownHosts::append(&file, "127.0.0.1", 2222, &key(KEY_A)).unwrap();
        KnownHosts::append(&file, "example.com", 22, &key(KEY_RSA)).unwrap();
        let text = fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with(&format!("[127.0.0.1]:2222 {KEY_A}\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("\nexample.com {KEY_RSA}\n")),
            "{text}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&file), 0o600);
            assert_eq!(mode(file.parent().unwrap()), 0o700);
        }
        let k = KnownHosts::load(&[&file]).unwrap();
        assert!(matches!(
            k.check("127.0.0.1", 2222, &key(KEY_A)),
            Verdict::Match { line: 1, .. }
        ));
        assert!(matches!(
            k.check("example.com", 22, &key(KEY_RSA)),
            Verdict::Match { line: 2, .. }
        ));
    }

    #[test]
    fn append_after_a_line_without_newline() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_hosts");
        fs::write(&file, format!("a {KEY_B}")).unwrap();
        KnownHosts::append(&file, "b", 22, &key(KEY_A)).unwrap();
        let k = KnownHosts::load(&[&file]).unwrap();
        assert!(matches!(
            k.check("a", 22, &key(KEY_B)),
            Verdict::Match { line: 1, .. }
        ));
        assert!(matches!(
            k.check("b", 22, &key(KEY_A)),
            Verdict::Match { line: 2, .. }
        ));
    }

    #[test]
    fn several_files_missing_ones_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let f1 = dir.path().join("one");
        let f2 = dir.path().join("two");
        fs::write(&f2, format!("\nhost {KEY_A}\n")).unwrap();
        let k = KnownHosts::load(&[f1, f2.clone()]).unwrap();
        assert_eq!(
            k.check("host", 22, &key(KEY_A)),
            Verdict::Match { file: f2, line: 2 }
        );
        assert_eq!(
            default_files(Some(Path::new("/home/u"))),
            vec![
                PathBuf::from("/home/u/.ssh/known_hosts"),
                PathBuf::from("/etc/ssh/ssh_known_hosts")
            ]
        );
    }
}
