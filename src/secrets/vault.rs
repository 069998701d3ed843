//! Ansible Vault (`$ANSIBLE_VAULT;1.1;AES256`, and `1.2` with a vault id) -> plaintext, in
//! memory, for teams moving their vaulted variables over to `secrets/`.
//!
//! The format, as ansible-core's `parsing/vault/__init__.py` writes it: a header line, then
//! the hex of `hex(salt) \n hex(hmac) \n hex(ciphertext)` in lines of 80. The keys come from
//! PBKDF2-HMAC-SHA256(password, salt, 10000 rounds, 80 bytes): an AES-256 key, an HMAC key
//! and the CTR mode's initial counter. The HMAC-SHA256 of the ciphertext is checked before
//! anything is decrypted; the plaintext is PKCS#7-padded.

use std::fmt;

use std::collections::{BTreeSet, HashMap};

use aes::cipher::{KeyIvInit, StreamCipher};
use hmac::{KeyInit, Mac};
use serde_json::Value;

use crate::error::{Error, Location};
use crate::inventory::{Vars, Vaulted};

/// What every vaulted text starts with.
pub const VAULT_HEADER: &str = "$ANSIBLE_VAULT;";

const ROUNDS: u32 = 10_000;
/// Vaulted texts larger than this are refused (a vars file is far smaller).
const MAX_VAULT_TEXT: usize = 64 * 1024 * 1024;

/// Why a vaulted text could not be opened. Never holds any of the plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultError {
    /// Not a vault text, or one deploy cannot read (the text says why).
    Format(String),
    /// The HMAC did not match: the wrong password (or a corrupted file).
    WrongPassword,
}

impl fmt::Display for VaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VaultError::Format(why) => write!(f, "not a readable Ansible Vault text: {why}"),
            VaultError::WrongPassword => {
                write!(
                    f,
                    "the vault password is wrong (or the vaulted data is corrupted)"
                )
            }
        }
    }
}

/// Whether `text` is a vaulted text (a whole vault file, or an inline `!vault` value).
pub fn is_vaulted(text: &str) -> bool {
    text.trim_start().starts_with(VAULT_HEADER)
}

/// The header's vault id (`1.2` texts), if any.
pub fn vault_id(text: &str) -> Option<String> {
    let header = text.trim_start().lines().next()?;
    let fields: Vec<&str> = header.trim().split(';').collect();
    match fields.as_slice() {
        [_, "1.2", _, id] => Some(id.to_string()),
        _ => None,
    }
}

/// Decrypts a vaulted text with `password`.
pub fn decrypt(text: &str, password: &[u8]) -> Result<Vec<u8>, VaultError> {
    if text.len() > MAX_VAULT_TEXT {
        return Err(VaultError::Format(format!(
            "larger than {} MiB",
            MAX_VAULT_TEXT / (1024 * 1024)
        )));
    }
    let mut lines = text.trim_start().lines();
    let header = lines
        .next()
        .ok_or_else(|| VaultError::Format("empty".into()))?
        .trim();
    let fields: Vec<&str> = header.split(';').collect();
    match fields.as_slice() {
        ["$ANSIBLE_VAULT", "1.1", "AES256"] | ["$ANSIBLE_VAULT", "1.2", "AES256", _] => {}
        ["$ANSIBLE_VAULT", version, cipher, ..] if *cipher != "AES256" => {
            return Err(VaultError::Format(format!(
                "cipher {cipher} (format {version}); only AES256 is supported"
            )));
        }
        ["$ANSIBLE_VAULT", version, ..] => {
            return Err(VaultError::Format(format!(
                "format version {version}; 1.1 and 1.2 are supported"
            )));
        }
        _ => return Err(VaultError::Format("no $ANSIBLE_VAULT header".into())),
    }
    let body: String = lines.flat_map(|l| l.trim().chars()).collect();
    let outer = unhex(&body).ok_or_else(|| VaultError::Format("the body is not hex".into()))?;
    let outer =
        String::from_utf8(outer).map_err(|_| VaultError::Format("the body is not hex".into()))?;
    let mut parts = outer.split('\n');
    let (Some(salt), Some(mac), Some(ciphertext), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(VaultError::Format(
            "expected salt, HMAC and ciphertext".into(),
        ));
    };
    let bad = |what: &str| VaultError::Format(format!("the {what} is not hex"));
    let salt = unhex(salt.trim()).ok_or_else(|| bad("salt"))?;
    let mac = unhex(mac.trim()).ok_or_else(|| bad("HMAC"))?;
    let mut data = unhex(ciphertext.trim()).ok_or_else(|| bad("ciphertext"))?;

    let mut keys = [0u8; 80];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, &salt, ROUNDS, &mut keys);
    let (aes_key, rest) = keys.split_at(32);
    let (hmac_key, iv) = rest.split_at(32);

    let mut check = hmac::Hmac::<sha2::Sha256>::new_from_slice(hmac_key)
        .map_err(|_| VaultError::Format("bad HMAC key".into()))?;
    check.update(&data);
    check
        .verify_slice(&mac)
        .map_err(|_| VaultError::WrongPassword)?;

    let mut cipher = ctr::Ctr128BE::<aes::Aes256>::new_from_slices(aes_key, iv)
        .map_err(|_| VaultError::Format("bad key length".into()))?;
    cipher.apply_keystream(&mut data);
    // PKCS#7: the last byte says how many bytes of padding there are (1 to 16).
    let pad = usize::from(*data.last().ok_or(VaultError::WrongPassword)?);
    if pad == 0
        || pad > 16
        || pad > data.len()
        || !data[data.len() - pad..]
            .iter()
            .all(|b| usize::from(*b) == pad)
    {
        return Err(VaultError::Format("bad padding".into()));
    }
    data.truncate(data.len() - pad);
    Ok(data)
}

/// A vault password; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct VaultPassword(Vec<u8>);

impl fmt::Debug for VaultPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VaultPassword(<set>)")
    }
}

impl VaultPassword {
    pub fn new(bytes: Vec<u8>) -> VaultPassword {
        VaultPassword(bytes)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Reads a password file as Ansible does: an executable is run and its stdout is the
    /// password (line breaks at either end dropped); any other file's text is, with the
    /// white space at either end dropped.
    pub fn from_file(path: &std::path::Path) -> Result<VaultPassword, Error> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if meta.permissions().mode() & 0o111 != 0 {
            let out = std::process::Command::new(path)
                .stdin(std::process::Stdio::inherit())
                .stderr(std::process::Stdio::inherit())
                .output()
                .map_err(|e| Error::io(path, e))?;
            if !out.status.success() {
                return Err(Error::config(
                    path.display(),
                    format!("the vault password script failed ({})", out.status),
                ));
            }
            let trim: &[u8] = b"\r\n";
            let mut bytes = out.stdout;
            while bytes.last().is_some_and(|b| trim.contains(b)) {
                bytes.pop();
            }
            let start = bytes
                .iter()
                .position(|b| !trim.contains(b))
                .unwrap_or(bytes.len());
            return Ok(VaultPassword(bytes[start..].to_vec()));
        }
        let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let start = text
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(text.len());
        let end = text
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(start, |i| i + 1);
        if start >= end {
            return Err(Error::config(
                path.display(),
                "the vault password file is empty",
            ));
        }
        Ok(VaultPassword(text[start..end].to_vec()))
    }
}

/// Opens the vaulted values (and whole vault files) of `group_vars/` and `host_vars/` that
/// belong to `scopes` (the selected hosts' groups and names) with `password`: scope -> the
/// vars they hold, decrypted, to merge as that scope's secrets. Without a password, a value
/// that is needed is an error naming its file, line and variable.
pub fn open(
    vaulted: &[Vaulted],
    scopes: &BTreeSet<String>,
    password: Option<&[u8]>,
) -> Result<HashMap<String, Vars>, Error> {
    let mut out: HashMap<String, Vars> = HashMap::new();
    for v in vaulted.iter().filter(|v| scopes.contains(&v.scope)) {
        let at = Location {
            path: v.path.clone(),
            line: v.line,
            column: 0,
        };
        let what = match &v.key {
            Some(k) => format!("`{k}`"),
            None => "this file".to_string(),
        };
        let Some(password) = password else {
            return Err(Error::config(
                at,
                format!("{what} is encrypted with Ansible Vault and no vault password was given"),
            )
            .with_hint(
                "pass --vault-password-file FILE (or set ANSIBLE_VAULT_PASSWORD_FILE, or \
                 --ask-vault-pass), or move it to secrets/ with `deploy secrets import-vault`",
            ));
        };
        let fail = |e: VaultError| Error::config(at.clone(), format!("cannot decrypt {what}: {e}"));
        let vars = out.entry(v.scope.clone()).or_default();
        match &v.key {
            Some(key) => {
                let value = open_value(&v.value, password).map_err(fail)?;
                vars.insert(key.clone(), value);
            }
            None => {
                let text = v.value.as_str().unwrap_or_default();
                let plain = decrypt(text, password).map_err(fail)?;
                let plain = String::from_utf8(plain).map_err(|_| {
                    Error::config(at.clone(), "the decrypted vault file is not UTF-8 text")
                })?;
                let file = crate::inventory::parse_vars(&v.path, &plain).map_err(|_| {
                    // The parser's excerpt would quote the plaintext: say only where.
                    Error::config(at.clone(), "the decrypted vault file is not a YAML mapping")
                })?;
                vars.extend(file);
            }
        }
    }
    Ok(out)
}

/// `value` with every vaulted string in it decrypted (to a string, as Ansible does).
fn open_value(value: &Value, password: &[u8]) -> Result<Value, VaultError> {
    Ok(match value {
        Value::String(s) if is_vaulted(s) => {
            let plain = decrypt(s, password)?;
            Value::String(
                String::from_utf8(plain)
                    .map_err(|_| VaultError::Format("the plaintext is not UTF-8".into()))?,
            )
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| open_value(i, password))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                out.insert(k.clone(), open_value(v, password)?);
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ansible-vault encrypt_string --vault-password-file <(echo -n pw) 'hello vault'`
    /// with ansible-core 2.19 (the tests in tests/vault.rs run the real CLI as well).
    const HELLO: &str = "$ANSIBLE_VAULT;1.1;AES256
61663036643361356133646165366134383335653662356431346564386135633834333833656533
6233343130323963323462336665646566623536346633640a373039323262396639396439336539
38633635356433316164396138633038383034323336623066353738666335306562393066393665
6131613532653165370a353135336663636237333430376362323333643766613566643363663064
6164
";

    #[test]
    fn opens_what_ansible_vault_wrote_and_refuses_a_wrong_password() {
        assert_eq!(decrypt(HELLO, b"pw").expect("opens"), b"hello vault");
        assert_eq!(decrypt(HELLO, b"other"), Err(VaultError::WrongPassword));
        // One flipped ciphertext digit is caught by the HMAC, before decryption.
        let flipped = HELLO.replacen("6164\n", "6165\n", 1);
        assert!(decrypt(&flipped, b"pw").is_err());
    }

    #[test]
    fn headers_and_garbage_are_refused_with_the_reason() {
        assert!(is_vaulted("  $ANSIBLE_VAULT;1.1;AES256\n00"));
        assert!(!is_vaulted("plain"));
        assert_eq!(
            vault_id("$ANSIBLE_VAULT;1.2;AES256;prod\nab"),
            Some("prod".to_string())
        );
        let err = decrypt("$ANSIBLE_VAULT;1.0;AES\n00", b"pw").expect_err("1.0");
        assert!(err.to_string().contains("AES"), "{err}");
        let err = decrypt("$ANSIBLE_VAULT;1.1;AES256\nzz", b"pw").expect_err("hex");
        assert!(err.to_string().contains("not hex"), "{err}");
        let err = decrypt("nothing", b"pw").expect_err("no header");
        assert!(err.to_string().contains("header"), "{err}");
    }
}
