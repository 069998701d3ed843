//! Secrets: `secrets/*.yml.age` files (plain age, ASCII-armored) -> variables, in memory only.
//!
//! In: `secrets/recipients.txt` (the public keys every secret file is encrypted to), the
//! operator's identity files (age X25519 identities, SSH private keys, `age -p` identity
//! files; [`age`] has the format and the key types), and the
//! `secrets/all.yml.age`, `secrets/<group>.yml.age`, `secrets/<host>.yml.age` files.
//! Out: [`Recipients`] to [`encrypt`] to, [`Identities`] to [`decrypt_file`] with, the
//! decrypted [`Vars`] of one file, and [`SecretFiles`]: which files apply to a host and at
//! which precedence slot (right after the matching `group_vars`/`host_vars` file).
//!
//! The files are what the `age` CLI reads and writes (`age -d -i key file`,
//! `age -e -R recipients.txt -a`), so an operator can always get at a secret without deploy.
//! Plaintext never touches the disk here: decryption is into a buffer, and errors about a
//! secret file never quote its contents.

pub mod age;
pub mod files;
pub mod vault;

use std::collections::BTreeSet;
use std::fmt;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Location};
use crate::inventory::Vars;

/// The suffix of every secret file; the part before it names `all`, a group or a host.
pub const SECRET_SUFFIX: &str = ".yml.age";

/// Where `deploy secrets` and the hints point an operator without an identity.
const HINT_NO_IDENTITY: &str = "pass --identity FILE, set DEPLOY_AGE_IDENTITY to a key file, or \
     create ~/.config/deploy/identity.txt with `age-keygen -o ~/.config/deploy/identity.txt`";

/// The public keys of `secrets/recipients.txt`: everyone who can decrypt the secret files.
pub struct Recipients {
    /// One per key line, in file order.
    keys: Vec<age::Recipient>,
    /// The key lines as written (without comments), for messages and re-encryption reports.
    lines: Vec<String>,
}

impl fmt::Debug for Recipients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recipients")
            .field("keys", &self.lines)
            .finish()
    }
}

impl Recipients {
    /// Reads a recipients file: one public key per line (`age1...`, `ssh-ed25519 ...`,
    /// `ssh-rsa ...`); blank lines and `#` comments are skipped. A line that is not a key is
    /// an error naming `file:line`, and so is a file without any key (encrypting to nobody
    /// would lock everyone out).
    pub fn load(path: &Path) -> Result<Recipients, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Recipients::parse(path, &text)
    }

    /// [`Recipients::load`] on text already read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Recipients, Error> {
        let mut keys: Vec<age::Recipient> = Vec::new();
        let mut lines = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let location = Location {
                path: path.to_path_buf(),
                line: index + 1,
                column: 0,
            };
            keys.push(parse_recipient(line).map_err(|message| {
                Error::config(&location, message).with_hint(
                    "one public key per line: an age key (age1...) or an SSH public key \
                     (ssh-ed25519 ... or ssh-rsa ...); # starts a comment",
                )
            })?);
            lines.push(line.to_string());
        }
        if keys.is_empty() {
            return Err(Error::config(path.display(), "no public keys in this file")
                .with_hint("add a line with your age public key (age-keygen -y KEYFILE)"));
        }
        Ok(Recipients { keys, lines })
    }

    /// The key lines, in file order.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }
}

/// One recipients line -> a key, or why it is not one.
fn parse_recipient(line: &str) -> Result<age::Recipient, String> {
    if line.starts_with("age1") {
        return age::Recipient::parse(line).map_err(|e| format!("not a valid age public key: {e}"));
    }
    if line.starts_with("ssh-") || line.starts_with("ecdsa-") || line.starts_with("sk-") {
        use age::RecipientError as E;
        return age::Recipient::parse(line).map_err(|e| match e {
            E::Unsupported(kind) => {
                format!("SSH key type {kind} is not supported by age (use ssh-ed25519 or ssh-rsa)")
            }
            E::RsaTooSmall => "ssh-rsa key is too small (under 2048 bits)".into(),
            E::RsaTooLarge => "ssh-rsa key is too large (over 4096 bits)".into(),
            E::Invalid(_) => "not a valid SSH public key".into(),
        });
    }
    if line.starts_with("AGE-SECRET-KEY-") {
        // Someone pasted their private key; say so without repeating it.
        return Err("this is a private key; recipients.txt takes public keys (age1...)".into());
    }
    Err("not a public key (expected age1..., ssh-ed25519 ... or ssh-rsa ...)".into())
}

/// The identity files to try, in the order the operator can override them: the `--identity`
/// files if any were given, else `$DEPLOY_AGE_IDENTITY`, else the first of
/// `~/.config/deploy/identity.txt` and `~/.ssh/id_ed25519` that exists. Empty when none
/// applies ([`load_identities`] then says where it looked).
pub fn identity_files(explicit: &[PathBuf]) -> Vec<PathBuf> {
    identity_files_from(
        explicit,
        std::env::var_os("DEPLOY_AGE_IDENTITY").map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
}

/// [`identity_files`] with the environment passed in (tests cannot safely set variables of
/// a multi-threaded process).
fn identity_files_from(
    explicit: &[PathBuf],
    env: Option<PathBuf>,
    home: Option<PathBuf>,
) -> Vec<PathBuf> {
    if !explicit.is_empty() {
        return explicit.to_vec();
    }
    // An empty DEPLOY_AGE_IDENTITY= is "not set", as shells make it easy to clear that way.
    if let Some(path) = env.filter(|p| !p.as_os_str().is_empty()) {
        return vec![path];
    }
    default_identity_paths(home.as_deref())
        .into_iter()
        .find(|p| p.is_file())
        .into_iter()
        .collect()
}

/// The identities the operator chose (see [`identity_files`]), loaded. A chosen file that
/// does not exist is named as the age identity, with where its path came from and how to
/// make one.
pub fn open_identities(explicit: &[PathBuf]) -> Result<Identities, Error> {
    let files = identity_files(explicit);
    check_identity_files(explicit, &files)?;
    load_identities(&files)
}

/// The error for a chosen identity file that is not there (the defaults are only chosen
/// when they exist).
fn check_identity_files(explicit: &[PathBuf], files: &[PathBuf]) -> Result<(), Error> {
    let Some(missing) = files.iter().find(|f| !f.exists()) else {
        return Ok(());
    };
    let (origin, hint) = if explicit.is_empty() {
        (
            "$DEPLOY_AGE_IDENTITY names it",
            "create it with `deploy secrets init` (it writes a new identity there and adds \
             its public key to secrets/recipients.txt), or set DEPLOY_AGE_IDENTITY to an \
             existing key file",
        )
    } else {
        (
            "--identity names it",
            "pass an existing key file, or create one with `deploy secrets init` (it writes \
             ~/.config/deploy/identity.txt, or $DEPLOY_AGE_IDENTITY, and adds its public key \
             to secrets/recipients.txt)",
        )
    };
    Err(Error::usage(
        format!(
            "the age identity file {} does not exist ({origin})",
            missing.display()
        ),
        Some(hint.to_string()),
    ))
}

/// The default identity locations, most specific first.
fn default_identity_paths(home: Option<&Path>) -> Vec<PathBuf> {
    match home {
        Some(home) => vec![
            home.join(".config/deploy/identity.txt"),
            home.join(".ssh/id_ed25519"),
        ],
        None => Vec::new(),
    }
}

/// The operator's private keys, loaded from their files.
pub struct Identities {
    keys: Vec<age::Identity>,
    /// The files they came from, for "tried: ..." when none decrypts a file.
    files: Vec<PathBuf>,
}

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the keys themselves.
        f.debug_struct("Identities")
            .field("files", &self.files)
            .finish()
    }
}

impl Identities {
    /// The files the identities were read from.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

/// "no age identity found", saying where deploy looked, after `prefix`.
fn no_identity(prefix: &str) -> Error {
    let looked: Vec<String> =
        default_identity_paths(std::env::var_os("HOME").map(PathBuf::from).as_deref())
            .iter()
            .map(|p| p.display().to_string())
            .collect();
    let message = if looked.is_empty() {
        format!("{prefix}no age identity found (HOME is not set)")
    } else {
        format!(
            "{prefix}no age identity found; looked at {}",
            looked.join(", ")
        )
    };
    Error::usage(message, Some(HINT_NO_IDENTITY.to_string()))
}

/// Reads identity files: age identity files (`AGE-SECRET-KEY-1...` lines, `#` comments),
/// OpenSSH ed25519 and RSA private keys and PEM RSA keys, and identity files encrypted with
/// `age -p`. A passphrase is asked for on the terminal the first time a file needs the key,
/// and with no terminal a protected key is an error at once. No files at all is an error
/// saying where deploy looked.
pub fn load_identities(files: &[PathBuf]) -> Result<Identities, Error> {
    if files.is_empty() {
        return Err(no_identity(""));
    }
    let mut keys = Vec::new();
    for file in files {
        keys.extend(load_identity_file(file)?);
    }
    Ok(Identities {
        keys,
        files: files.to_vec(),
    })
}

/// The largest scrypt work factor (log2 N) accepted for a passphrase-protected identity: age's
/// own default is about 18; 22 is already several seconds, and more would let a hostile file
/// stall deploy.
const MAX_SCRYPT_LOG_N: u8 = 22;

/// Whether there is a terminal to ask a passphrase on.
fn has_terminal() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .is_ok()
}

/// Asks for an identity's passphrase on the terminal (`/dev/tty`, without echo), when a
/// file first needs that identity.
fn tty_prompt() -> age::Prompt {
    Box::new(|file: &str| {
        rpassword::prompt_password(format!("Passphrase for {file}: "))
            .ok()
            .map(zeroize::Zeroizing::new)
    })
}

fn no_terminal(path: &Path) -> Error {
    Error::config(
        path.display(),
        "this identity is protected by a passphrase and there is no terminal to ask for it",
    )
    .with_hint("run deploy from a terminal, or use an identity without a passphrase (e.g. from an agent-less CI key)")
}

fn load_identity_file(path: &Path) -> Result<Vec<age::Identity>, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let first = bytes
        .lines()
        .map_while(Result::ok)
        .map(|l| l.trim().to_string())
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or_default();
    let name = path.display().to_string();
    if first == age::ARMOR_BEGIN || first.starts_with("age-encryption.org/") {
        // An identity file encrypted with a passphrase (age -p), as `age -d -i` accepts. The
        // passphrase is asked for on the terminal; the scrypt work is bounded.
        if !has_terminal() {
            return Err(no_terminal(path));
        }
        if !age::is_passphrase_file(&bytes) {
            return Err(Error::config(
                path.display(),
                "not a passphrase-protected identity",
            ));
        }
        return Ok(vec![age::Identity::Encrypted(age::EncryptedIdentity::new(
            bytes,
            &name,
            tty_prompt(),
            MAX_SCRYPT_LOG_N,
        ))]);
    }
    if first.starts_with("-----BEGIN") {
        let text = String::from_utf8_lossy(&bytes);
        let identity = age::SshIdentity::parse(&text, &name, tty_prompt()).map_err(|e| {
            Error::config(path.display(), format!("not a usable SSH private key: {e}"))
        })?;
        if identity.is_locked() && !has_terminal() {
            return Err(no_terminal(path));
        }
        return Ok(vec![age::Identity::Ssh(Box::new(identity))]);
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        Error::config(
            path.display(),
            "not an age identity file: it is not UTF-8 text",
        )
    })?;
    let keys = age::parse_identity_file(text).map_err(|e| {
        // The message gives a line number and never the line itself.
        Error::config(path.display(), format!("not an age identity file: {e}"))
            .with_hint("an identity file holds AGE-SECRET-KEY-1... lines, as age-keygen writes")
    })?;
    if keys.is_empty() {
        return Err(Error::config(path.display(), "no identities in this file"));
    }
    Ok(keys.into_iter().map(age::Identity::X25519).collect())
}

/// Decrypts the age file at `path` (ASCII-armored or binary) in memory and reads the
/// plaintext as a YAML mapping of variables (an empty file is no variables). Every error
/// names the file; none quotes the plaintext.
pub fn decrypt_file(path: &Path, identities: &Identities) -> Result<Vars, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let plaintext = decrypt_bytes(path, &bytes, identities)?;
    let text = String::from_utf8(plaintext).map_err(|_| {
        Error::config(
            path.display(),
            "the decrypted secret file is not UTF-8 text",
        )
    })?;
    let value = crate::yaml::parse::<Value>(path, &text).map_err(|e| match e {
        // The excerpt would print a line of the secret file: keep only line and column.
        Error::Yaml {
            path,
            line,
            column,
            message,
            ..
        } => Error::Yaml {
            path,
            line,
            column,
            message: format!("{message} (in the decrypted secret file)"),
            excerpt: String::new(),
        },
        other => other,
    })?;
    match value {
        Value::Null => Ok(Vars::new()),
        Value::Object(map) => Ok(map),
        _ => Err(Error::config(
            path.display(),
            "a secret file must decrypt to a mapping of variables (key: value)",
        )
        .with_hint("edit it to hold `name: value` lines")),
    }
}

/// Decrypts the age file at `path` in memory and returns its plaintext (for `deploy secrets
/// view` and `edit`).
pub fn decrypt_plaintext(path: &Path, identities: &Identities) -> Result<Vec<u8>, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decrypt_bytes(path, &bytes, identities)
}

/// The decryption proper: age file bytes -> plaintext bytes.
fn decrypt_bytes(path: &Path, bytes: &[u8], identities: &Identities) -> Result<Vec<u8>, Error> {
    let corrupt = |detail: String| {
        Error::config(
            path.display(),
            format!("not a valid age file (corrupt or truncated): {detail}"),
        )
        .with_hint("restore it from version control, or re-create it with `age -e -R secrets/recipients.txt -a`")
    };
    let tried = || {
        identities
            .files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    // Both forms are read: ASCII-armored and binary.
    age::decrypt(bytes, &identities.keys).map_err(|e| match e {
        // Refusing passphrase files outright also bounds the scrypt work: a hostile file
        // cannot make deploy spend minutes deriving a key.
        age::DecryptError::Passphrase => Error::config(
            path.display(),
            "this file is encrypted with a passphrase; deploy reads only files encrypted to the keys of secrets/recipients.txt",
        )
        .with_hint("re-encrypt it: age -d FILE | age -e -R secrets/recipients.txt -a -o FILE.new"),
        // The message names the file itself, so no `path:` location in front of it.
        age::DecryptError::NoMatchingKeys => Error::usage(
            format!(
                "no identity can decrypt {}; tried: {}",
                path.display(),
                tried()
            ),
            None,
        )
        .with_hint(
            "the file is encrypted to the keys in secrets/recipients.txt; ask someone who \
             can decrypt it to add your public key there and re-encrypt",
        ),
        age::DecryptError::Identity(why) => {
            Error::usage(format!("cannot decrypt {}: {why}", path.display()), None)
        }
        age::DecryptError::Corrupt(_, why) => corrupt(why),
    })
}

/// Encrypts `plaintext` to every recipient, ASCII-armored (so git diffs show a change and a
/// conflicting merge fails loudly instead of producing a broken file).
pub fn encrypt(plaintext: &[u8], recipients: &Recipients) -> Result<Vec<u8>, Error> {
    age::encrypt(plaintext, &recipients.keys)
        .map_err(|e| Error::usage(format!("age encryption failed: {e}"), None))
}

/// Where a secret file merges into a host's variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// Right after `group_vars/<group>` (`all` included), so the secret wins at that level.
    AfterGroupVars(String),
    /// Right after `host_vars/<host>`.
    AfterHostVars,
}

/// One secret file that applies to a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applicable {
    pub slot: Slot,
    pub path: PathBuf,
}

/// The secret files present in `secrets/`, by name (`all`, a group or a host).
#[derive(Debug, Clone, Default)]
pub struct SecretFiles {
    dir: PathBuf,
    names: BTreeSet<String>,
}

impl SecretFiles {
    /// Lists the `*.yml.age` files of `secrets_dir` (no directory: no secrets). Other files
    /// (`recipients.txt`, a README) are not secrets and are left alone.
    pub fn discover(secrets_dir: &Path) -> Result<SecretFiles, Error> {
        let mut names = BTreeSet::new();
        let entries = match std::fs::read_dir(secrets_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(SecretFiles {
                    dir: secrets_dir.to_path_buf(),
                    names,
                });
            }
            Err(e) => return Err(Error::io(secrets_dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(secrets_dir, e))?;
            let file_name = entry.file_name();
            let Some(name) = file_name
                .to_str()
                .and_then(|n| n.strip_suffix(SECRET_SUFFIX))
            else {
                continue;
            };
            if !name.is_empty() && entry.path().is_file() {
                names.insert(name.to_string());
            }
        }
        Ok(SecretFiles {
            dir: secrets_dir.to_path_buf(),
            names,
        })
    }

    /// The names (`all`, groups, hosts) that have a secret file, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    /// The path of the secret file for `name` (whether or not it exists).
    pub fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}{SECRET_SUFFIX}"))
    }

    /// The secret files that apply to host `host` in `groups` (its groups in group_vars
    /// order, `all` first), in merge order: each group's file at that group's slot, then the
    /// host's file. Only this list is decrypted, so a host that uses no secret needs no key.
    pub fn for_host(&self, groups: &[String], host: &str) -> Vec<Applicable> {
        let mut out: Vec<Applicable> = groups
            .iter()
            .filter(|g| self.names.contains(g.as_str()))
            .map(|g| Applicable {
                slot: Slot::AfterGroupVars(g.clone()),
                path: self.path_of(g),
            })
            .collect();
        if self.names.contains(host) {
            // A name that is both a group of this host and the host itself (Ansible warns
            // about those) applies at both slots, as group_vars and host_vars would.
            out.push(Applicable {
                slot: Slot::AfterHostVars,
                path: self.path_of(host),
            });
        }
        out
    }
}

/// Decrypts, in memory, the secret files that apply to any host in `selected` (each file
/// once) and returns them by name (`all`, a group or a host). A run whose hosts use no secret
/// file asks for no identity.
pub fn decrypt_for(
    secrets_dir: &Path,
    selected: &[&crate::inventory::Host],
    identity_args: &[PathBuf],
) -> Result<std::collections::HashMap<String, Vars>, Error> {
    let files = SecretFiles::discover(secrets_dir)?;
    let mut needed: Vec<String> = Vec::new();
    for host in selected {
        for applicable in files.for_host(&host.groups, &host.name) {
            let name = match applicable.slot {
                Slot::AfterGroupVars(group) => group,
                Slot::AfterHostVars => host.name.clone(),
            };
            if !needed.contains(&name) {
                needed.push(name);
            }
        }
    }
    let mut out = std::collections::HashMap::new();
    if needed.is_empty() {
        return Ok(out);
    }
    let identity_paths = identity_files(identity_args);
    if identity_paths.is_empty() {
        // Say which files need a key before where none was found.
        let wanted: Vec<String> = needed
            .iter()
            .map(|n| files.path_of(n).display().to_string())
            .collect();
        return Err(no_identity(&format!(
            "{} need an age identity: ",
            wanted.join(", ")
        )));
    }
    check_identity_files(identity_args, &identity_paths)?;
    let identities = load_identities(&identity_paths)?;
    // Files that only unselected hosts use stay closed; the selected hosts' templates see
    // other hosts' vars through `hostvars` with the files decrypted here.
    for name in needed {
        let vars = decrypt_file(&files.path_of(&name), &identities)?;
        out.insert(name, vars);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x25519_pair() -> (age::X25519Identity, String) {
        let id = age::X25519Identity::generate();
        let public = id.to_public().to_string();
        (id, public)
    }

    fn identities_of(id: age::X25519Identity, file: &str) -> Identities {
        Identities {
            keys: vec![age::Identity::X25519(id)],
            files: vec![PathBuf::from(file)],
        }
    }

    #[test]
    fn recipients_skip_comments_and_blank_lines() {
        let (_, public) = x25519_pair();
        let text = format!("# the team\n\n  {public}  \n# end\n");
        let r = Recipients::parse(Path::new("secrets/recipients.txt"), &text).unwrap();
        assert_eq!(r.lines(), [public]);
    }

    #[test]
    fn recipients_bad_line_names_file_and_line() {
        let (_, public) = x25519_pair();
        let text = format!("{public}\n# ok\nage1notakey\n");
        let e = Recipients::parse(Path::new("secrets/recipients.txt"), &text).unwrap_err();
        let shown = e.to_string();
        assert!(
            shown.starts_with("secrets/recipients.txt:3: not a valid age public key"),
            "{shown}"
        );
        let e = Recipients::parse(Path::new("r.txt"), "hello\n").unwrap_err();
        assert!(
            e.to_string().starts_with("r.txt:1: not a public key"),
            "{e}"
        );
    }

    #[test]
    fn recipients_refuse_a_private_key_without_echoing_it() {
        let id = age::X25519Identity::generate();
        let secret = id.secret_string().to_string();
        let e = Recipients::parse(Path::new("r.txt"), &secret)
            .unwrap_err()
            .to_string();
        assert!(e.contains("r.txt:1: this is a private key"), "{e}");
        assert!(!e.contains(&secret));
    }

    #[test]
    fn recipients_unsupported_ssh_key_type() {
        let line = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBNbl9p0bG3NiiAuc4MuO7DwOYn8fmsplmUzvjr5ZmmFgzy0jjYMJX+WJ3yFLcRwIeb3HJvjnHaPFDUA3bptvTls=";
        let e = Recipients::parse(Path::new("r.txt"), line)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("r.txt:1:"), "{e}");
    }

    #[test]
    fn recipients_without_keys_is_an_error() {
        let e = Recipients::parse(Path::new("r.txt"), "# nobody\n").unwrap_err();
        assert!(e.to_string().starts_with("r.txt: no public keys"), "{e}");
    }

    #[test]
    fn encrypt_then_decrypt_in_memory() {
        let (id, public) = x25519_pair();
        let r = Recipients::parse(Path::new("r.txt"), &public).unwrap();
        let armored = encrypt(b"db_password: hunter2\n", &r).unwrap();
        let text = String::from_utf8(armored.clone()).unwrap();
        assert!(
            text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
            "{text}"
        );
        assert!(
            text.trim_end()
                .ends_with("-----END AGE ENCRYPTED FILE-----"),
            "{text}"
        );
        let plain = decrypt_bytes(Path::new("x"), &armored, &identities_of(id, "k")).unwrap();
        assert_eq!(plain, b"db_password: hunter2\n");
    }

    #[test]
    fn wrong_identity_names_file_and_identity_files() {
        let (_, public) = x25519_pair();
        let (other, _) = x25519_pair();
        let r = Recipients::parse(Path::new("r.txt"), &public).unwrap();
        let armored = encrypt(b"a: 1\n", &r).unwrap();
        let e = decrypt_bytes(
            Path::new("secrets/x.yml.age"),
            &armored,
            &identities_of(other, "/home/me/key.txt"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("no identity can decrypt secrets/x.yml.age; tried: /home/me/key.txt"),
            "{e}"
        );
    }

    #[test]
    fn passphrase_files_are_refused() {
        // Cheap work factor: the test is about refusing, not about scrypt.
        let bytes = age::encrypt_with_passphrase(b"a: 1\n", "pw", 2);
        let (id, _) = x25519_pair();
        let e = decrypt_bytes(Path::new("s.yml.age"), &bytes, &identities_of(id, "k"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("s.yml.age: this file is encrypted with a passphrase"),
            "{e}"
        );
    }

    #[test]
    fn identity_order() {
        let explicit = vec![PathBuf::from("a"), PathBuf::from("b")];
        assert_eq!(
            identity_files_from(&explicit, Some("env".into()), None),
            explicit
        );
        assert_eq!(
            identity_files_from(&[], Some("env".into()), None),
            [PathBuf::from("env")]
        );
        let home = tempfile::tempdir().unwrap();
        let h = home.path().to_path_buf();
        assert!(identity_files_from(&[], Some("".into()), Some(h.clone())).is_empty());
        std::fs::create_dir_all(h.join(".ssh")).unwrap();
        std::fs::write(h.join(".ssh/id_ed25519"), "").unwrap();
        assert_eq!(
            identity_files_from(&[], None, Some(h.clone())),
            [h.join(".ssh/id_ed25519")]
        );
        std::fs::create_dir_all(h.join(".config/deploy")).unwrap();
        std::fs::write(h.join(".config/deploy/identity.txt"), "").unwrap();
        assert_eq!(
            identity_files_from(&[], None, Some(h.clone())),
            [h.join(".config/deploy/identity.txt")]
        );
    }

    #[test]
    fn no_identity_files_is_a_clear_error() {
        let e = load_identities(&[]).unwrap_err().to_string();
        assert!(e.starts_with("no age identity found"), "{e}");
        assert!(e.contains("hint: pass --identity FILE"), "{e}");
    }

    #[test]
    fn identity_file_with_junk_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id.txt");
        std::fs::write(&path, "# key\nnot a key\n").unwrap();
        let e = load_identities(std::slice::from_ref(&path))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("{}: not an age identity file", path.display())),
            "{e}"
        );
        assert!(e.contains("line 2"), "{e}");
        assert!(!e.contains("not a key\n"), "{e}");
    }

    #[test]
    fn secret_files_apply_in_precedence_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path();
        for name in [
            "all.yml.age",
            "web.yml.age",
            "alpha.yml.age",
            "recipients.txt",
            "db.yml",
        ] {
            std::fs::write(s.join(name), "").unwrap();
        }
        let files = SecretFiles::discover(s).unwrap();
        assert_eq!(files.names().collect::<Vec<_>>(), ["all", "alpha", "web"]);
        let groups = ["all", "app", "web"].map(String::from);
        assert_eq!(
            files.for_host(&groups, "alpha"),
            [
                Applicable {
                    slot: Slot::AfterGroupVars("all".into()),
                    path: s.join("all.yml.age")
                },
                Applicable {
                    slot: Slot::AfterGroupVars("web".into()),
                    path: s.join("web.yml.age")
                },
                Applicable {
                    slot: Slot::AfterHostVars,
                    path: s.join("alpha.yml.age")
                },
            ]
        );
        // A host in no group with a secret, and no host file: only `all`.
        assert_eq!(files.for_host(&["all".into()], "beta").len(), 1);
    }

    #[test]
    fn missing_secrets_dir_is_no_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let files = SecretFiles::discover(&dir.path().join("secrets")).unwrap();
        assert!(files.for_host(&["all".into()], "a").is_empty());
    }
}
