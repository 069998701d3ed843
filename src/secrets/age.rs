//! The age file format (age-encryption.org/v1), as deploy reads and writes it.
//!
//! In: the bytes of an age file (binary or ASCII-armored), the operator's identities (age
//! X25519 keys, SSH ed25519 and RSA keys, an identity file encrypted with a passphrase).
//! Out: the plaintext, or a [`DecryptError`]; and [`encrypt`] to [`Recipient`]s, armored.
//!
//! This is the format of <https://age-encryption.org/v1> (C2SP's age spec), written on the
//! RustCrypto primitives the SSH transport already builds (X25519 on curve25519-dalek,
//! ChaCha20-Poly1305, HKDF/HMAC-SHA-256, scrypt, RSA-OAEP), instead of the `age` crate, whose
//! older copy of the same primitives and localization stack were a third of the first build.
//! The `age` CLI is its interop peer in the tests (tests/secrets_age.rs), both ways, for every
//! recipient type. What is here and what is not:
//! - recipients: `age1...` (X25519), `ssh-ed25519`, `ssh-rsa` (2048 to 4096 bits);
//! - identities: `AGE-SECRET-KEY-1...`, OpenSSH ed25519/RSA keys (passphrase-protected ones
//!   too), PEM `RSA PRIVATE KEY`s, and an identity file encrypted with `age -p`;
//! - not: plugins (`age1yubikey...`, `AGE-PLUGIN-...`), post-quantum recipients; files
//!   encrypted with a passphrase are read only as identity files.

use std::cell::OnceCell;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::montgomery::MontgomeryPoint;
use hmac::Mac;
use rand::Rng as _;
use russh::keys::ssh_key;
use sha2::{Digest, Sha256, Sha512};
use zeroize::Zeroizing;

const INTRO: &[u8] = b"age-encryption.org/v1\n";
const MAGIC: &[u8] = b"age-encryption.org/";
pub const ARMOR_BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";
const ARMOR_END: &str = "-----END AGE ENCRYPTED FILE-----";
const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;

const X25519_LABEL: &[u8] = b"age-encryption.org/v1/X25519";
const SSH_ED25519_LABEL: &[u8] = b"age-encryption.org/v1/ssh-ed25519";
const SSH_RSA_LABEL: &[u8] = b"age-encryption.org/v1/ssh-rsa";
const SCRYPT_LABEL: &[u8] = b"age-encryption.org/v1/scrypt";

const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 4096;

/// The key every stanza wraps: it keys the header's MAC and the payload.
type FileKey = Zeroizing<[u8; 16]>;

/// Why a file could not be decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecryptError {
    /// None of the identities is a recipient of the file.
    NoMatchingKeys,
    /// The file is encrypted with a passphrase (an `scrypt` stanza).
    Passphrase,
    /// Not an age file, or damaged: which part, and what is wrong (never the plaintext).
    Corrupt(Part, String),
    /// An identity could not be used (a passphrase that was not given or is wrong).
    Identity(String),
}

impl fmt::Display for DecryptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecryptError::NoMatchingKeys => {
                f.write_str("no identity matched any of the recipients")
            }
            DecryptError::Passphrase => f.write_str("the file is encrypted with a passphrase"),
            DecryptError::Corrupt(_, why) | DecryptError::Identity(why) => f.write_str(why),
        }
    }
}

/// The part of an age file that is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Armor,
    /// The header's syntax or a stanza's.
    Header,
    /// The header's MAC (a file key unwrapped, but the header was altered).
    Mac,
    Payload,
}

fn corrupt(why: impl Into<String>) -> DecryptError {
    DecryptError::Corrupt(Part::Header, why.into())
}

fn damaged(part: Part, why: impl Into<String>) -> DecryptError {
    DecryptError::Corrupt(part, why.into())
}

// ---------------------------------------------------------------------------------------
// Primitives

fn hkdf(salt: &[u8], info: &[u8], ikm: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is always a valid HKDF-SHA-256 output length.
    let _ = hkdf::Hkdf::<Sha256>::new(Some(salt), ikm).expand(info, &mut out[..]);
    out
}

fn aead_encrypt(key: &[u8; 32], nonce: &[u8; 12], plaintext: &[u8]) -> Vec<u8> {
    let cipher = ChaCha20Poly1305::new(&Key::from(*key));
    // Encryption fails only for plaintexts of gigabytes; deploy's are chunks of 64 KiB.
    cipher
        .encrypt(&Nonce::from(*nonce), plaintext)
        .unwrap_or_default()
}

fn aead_decrypt(key: &[u8; 32], nonce: &[u8; 12], ciphertext: &[u8]) -> Option<Vec<u8>> {
    ChaCha20Poly1305::new(&Key::from(*key))
        .decrypt(&Nonce::from(*nonce), ciphertext)
        .ok()
}

/// A stanza body: the file key wrapped with ChaCha20-Poly1305 under a zero nonce.
fn wrap(key: &[u8; 32], file_key: &FileKey) -> Vec<u8> {
    aead_encrypt(key, &[0; 12], &file_key[..])
}

fn unwrap(key: &[u8; 32], body: &[u8]) -> Option<FileKey> {
    let plain = Zeroizing::new(aead_decrypt(key, &[0; 12], body)?);
    let mut file_key = Zeroizing::new([0u8; 16]);
    if plain.len() != 16 {
        return None;
    }
    file_key.copy_from_slice(&plain);
    Some(file_key)
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

fn x25519(scalar: &[u8; 32], point: &[u8; 32]) -> [u8; 32] {
    MontgomeryPoint(*point).mul_clamped(*scalar).to_bytes()
}

fn x25519_base(scalar: &[u8; 32]) -> [u8; 32] {
    MontgomeryPoint::mul_base_clamped(*scalar).to_bytes()
}

/// The first 4 bytes of SHA-256 of an SSH public key's wire form: which key a stanza is for.
fn ssh_tag(ssh_key: &[u8]) -> String {
    STANDARD_NO_PAD.encode(&Sha256::digest(ssh_key)[..4])
}

/// Canonical unpadded base64 of exactly `N` bytes.
fn b64_exact<const N: usize>(arg: &str) -> Option<[u8; N]> {
    let bytes = STANDARD_NO_PAD.decode(arg).ok()?;
    bytes.try_into().ok()
}

// ---------------------------------------------------------------------------------------
// Bech32 (BIP 173), for age1... and AGE-SECRET-KEY-1...

const BECH32: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";

fn polymod(values: impl Iterator<Item = u8>) -> u32 {
    const GEN: [u32; 5] = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
    let mut chk: u32 = 1;
    for v in values {
        let top = chk >> 25;
        chk = ((chk & 0x1ffffff) << 5) ^ u32::from(v);
        for (i, g) in GEN.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                chk ^= g;
            }
        }
    }
    chk
}

fn hrp_expand(hrp: &str) -> Vec<u8> {
    let mut out: Vec<u8> = hrp.bytes().map(|b| b >> 5).collect();
    out.push(0);
    out.extend(hrp.bytes().map(|b| b & 31));
    out
}

/// `hrp` (lowercase) and `data` -> the lowercase bech32 string.
fn bech32_encode(hrp: &str, data: &[u8]) -> String {
    let mut five = Vec::with_capacity(data.len() * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in data {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            five.push(((acc >> bits) & 31) as u8);
        }
    }
    if bits > 0 {
        five.push(((acc << (5 - bits)) & 31) as u8);
    }
    let values = hrp_expand(hrp)
        .into_iter()
        .chain(five.iter().copied())
        .chain([0; 6]);
    let checksum = polymod(values) ^ 1;
    let mut out = String::with_capacity(hrp.len() + 1 + five.len() + 6);
    out.push_str(hrp);
    out.push('1');
    for v in five {
        out.push(BECH32[usize::from(v)] as char);
    }
    for i in 0..6 {
        out.push(BECH32[((checksum >> (5 * (5 - i))) & 31) as usize] as char);
    }
    out
}

/// A bech32 string -> (lowercase hrp, data), or why not. One case throughout, as BIP 173
/// requires; the checksum is bech32's (not bech32m's); the padding bits must be zero.
fn bech32_decode(text: &str) -> Result<(String, Vec<u8>), &'static str> {
    if !text.is_ascii() {
        return Err("not ASCII");
    }
    let lower = text.to_ascii_lowercase();
    if lower != text && text.to_ascii_uppercase() != text {
        return Err("mixed case");
    }
    let sep = lower.rfind('1').ok_or("no separator")?;
    let (hrp, rest) = (&lower[..sep], &lower[sep + 1..]);
    if hrp.is_empty() || rest.len() < 6 || hrp.bytes().any(|b| !(33..=126).contains(&b)) {
        return Err("malformed");
    }
    let five: Vec<u8> = rest
        .bytes()
        .map(|c| BECH32.iter().position(|&b| b == c).map(|p| p as u8))
        .collect::<Option<_>>()
        .ok_or("invalid character")?;
    if polymod(hrp_expand(hrp).into_iter().chain(five.iter().copied())) != 1 {
        return Err("bad checksum");
    }
    let mut data = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for &v in &five[..five.len() - 6] {
        acc = ((acc << 5) | u32::from(v)) & 0xfff;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            data.push((acc >> bits) as u8);
        }
    }
    if bits >= 5 || (acc & ((1 << bits) - 1)) != 0 {
        return Err("bad padding");
    }
    Ok((hrp.to_string(), data))
}

// ---------------------------------------------------------------------------------------
// Keys

/// An age X25519 identity (`AGE-SECRET-KEY-1...`).
pub struct X25519Identity(Zeroizing<[u8; 32]>);

impl X25519Identity {
    pub fn generate() -> X25519Identity {
        X25519Identity(Zeroizing::new(random()))
    }

    /// An `AGE-SECRET-KEY-1...` line, or why it is not one (never echoing it).
    pub fn parse(text: &str) -> Result<X25519Identity, &'static str> {
        let (hrp, data) = bech32_decode(text.trim())?;
        if hrp != "age-secret-key-" {
            return Err("not an AGE-SECRET-KEY-1 key");
        }
        let key: [u8; 32] = data.try_into().map_err(|_| "wrong key length")?;
        Ok(X25519Identity(Zeroizing::new(key)))
    }

    /// The `AGE-SECRET-KEY-1...` form.
    pub fn secret_string(&self) -> Zeroizing<String> {
        Zeroizing::new(bech32_encode("age-secret-key-", &self.0[..]).to_ascii_uppercase())
    }

    pub fn to_public(&self) -> X25519Recipient {
        X25519Recipient(x25519_base(&self.0))
    }

    fn unwrap_stanza(&self, stanza: &Stanza) -> Option<Result<FileKey, DecryptError>> {
        if stanza.args.first().map(String::as_str) != Some("X25519") {
            return None;
        }
        let Some(share) = stanza.share(2) else {
            return Some(Err(corrupt("malformed X25519 stanza")));
        };
        let shared = Zeroizing::new(x25519(&self.0, &share));
        if shared.iter().all(|&b| b == 0) {
            return Some(Err(corrupt("X25519 stanza with a low-order point")));
        }
        let public = x25519_base(&self.0);
        let salt = [share, public].concat();
        let key = hkdf(&salt, X25519_LABEL, &shared[..]);
        unwrap(&key, &stanza.body).map(Ok)
    }
}

/// An age X25519 recipient (`age1...`).
#[derive(Clone, PartialEq, Eq)]
pub struct X25519Recipient([u8; 32]);

impl fmt::Display for X25519Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bech32_encode("age", &self.0))
    }
}

/// Why a recipients line is not a key age can encrypt to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientError {
    /// An SSH key of a type age has no recipient for (ecdsa, hardware keys...).
    Unsupported(String),
    RsaTooSmall,
    RsaTooLarge,
    Invalid(&'static str),
}

impl fmt::Display for RecipientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecipientError::Unsupported(kind) => write!(f, "unsupported SSH key type {kind}"),
            RecipientError::RsaTooSmall => f.write_str("ssh-rsa key under 2048 bits"),
            RecipientError::RsaTooLarge => f.write_str("ssh-rsa key over 4096 bits"),
            RecipientError::Invalid(why) => f.write_str(why),
        }
    }
}

/// Someone a file is encrypted to.
#[derive(Clone)]
pub enum Recipient {
    X25519(X25519Recipient),
    /// `ssh-ed25519`: the key's wire form and its X25519 (Montgomery) form.
    SshEd25519 {
        ssh_key: Vec<u8>,
        public: [u8; 32],
    },
    SshRsa {
        ssh_key: Vec<u8>,
        public: Box<rsa::RsaPublicKey>,
    },
}

impl Recipient {
    /// One recipients line: `age1...`, or an OpenSSH public key line (`ssh-ed25519 AAAA...
    /// comment`, `ssh-rsa ...`).
    pub fn parse(line: &str) -> Result<Recipient, RecipientError> {
        let line = line.trim();
        if line.starts_with("age1") {
            let (hrp, data) = bech32_decode(line).map_err(RecipientError::Invalid)?;
            if hrp != "age" {
                return Err(RecipientError::Invalid("not an age1 key"));
            }
            let key: [u8; 32] = data
                .try_into()
                .map_err(|_| RecipientError::Invalid("wrong key length"))?;
            return Ok(Recipient::X25519(X25519Recipient(key)));
        }
        let key = ssh_key::PublicKey::from_openssh(line).map_err(|_| {
            match line.split_whitespace().next() {
                Some(kind) if !matches!(kind, "ssh-ed25519" | "ssh-rsa") && kind.len() < 64 => {
                    RecipientError::Unsupported(kind.to_string())
                }
                _ => RecipientError::Invalid("not a valid SSH public key"),
            }
        })?;
        Recipient::from_ssh(key.key_data())
    }

    fn from_ssh(data: &ssh_key::public::KeyData) -> Result<Recipient, RecipientError> {
        let ssh_key = ssh_wire(data)?;
        match data {
            ssh_key::public::KeyData::Ed25519(pk) => {
                let point = CompressedEdwardsY(pk.0)
                    .decompress()
                    .ok_or(RecipientError::Invalid("not a valid ed25519 public key"))?;
                Ok(Recipient::SshEd25519 {
                    ssh_key,
                    public: point.to_montgomery().to_bytes(),
                })
            }
            ssh_key::public::KeyData::Rsa(pk) => {
                let n = pk.n().as_positive_bytes().unwrap_or_default();
                let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
                if bits < RSA_MIN_BITS {
                    return Err(RecipientError::RsaTooSmall);
                }
                if bits > RSA_MAX_BITS {
                    return Err(RecipientError::RsaTooLarge);
                }
                let public = rsa::RsaPublicKey::try_from(pk)
                    .map_err(|_| RecipientError::Invalid("not a valid ssh-rsa public key"))?;
                Ok(Recipient::SshRsa {
                    ssh_key,
                    public: Box::new(public),
                })
            }
            other => Err(RecipientError::Unsupported(other.algorithm().to_string())),
        }
    }

    fn stanza(&self, file_key: &FileKey) -> Result<Stanza, String> {
        Ok(match self {
            Recipient::X25519(X25519Recipient(public)) => {
                let ephemeral = Zeroizing::new(random::<32>());
                let share = x25519_base(&ephemeral);
                let shared = Zeroizing::new(x25519(&ephemeral, public));
                if shared.iter().all(|&b| b == 0) {
                    return Err("the recipient is a low-order point".into());
                }
                let key = hkdf(&[share, *public].concat(), X25519_LABEL, &shared[..]);
                Stanza {
                    args: vec!["X25519".into(), STANDARD_NO_PAD.encode(share)],
                    body: wrap(&key, file_key),
                }
            }
            Recipient::SshEd25519 { ssh_key, public } => {
                let ephemeral = Zeroizing::new(random::<32>());
                let share = x25519_base(&ephemeral);
                let tweak = hkdf(ssh_key, SSH_ED25519_LABEL, &[]);
                let shared = Zeroizing::new(x25519(&tweak, &x25519(&ephemeral, public)));
                let key = hkdf(&[share, *public].concat(), SSH_ED25519_LABEL, &shared[..]);
                Stanza {
                    args: vec![
                        "ssh-ed25519".into(),
                        ssh_tag(ssh_key),
                        STANDARD_NO_PAD.encode(share),
                    ],
                    body: wrap(&key, file_key),
                }
            }
            Recipient::SshRsa { ssh_key, public } => {
                let body = public
                    .encrypt(
                        &mut rand::rng(),
                        rsa::Oaep::<Sha256>::new_with_label(SSH_RSA_LABEL),
                        &file_key[..],
                    )
                    .map_err(|e| format!("RSA-OAEP: {e}"))?;
                Stanza {
                    args: vec!["ssh-rsa".into(), ssh_tag(ssh_key)],
                    body,
                }
            }
        })
    }
}

impl From<X25519Recipient> for Recipient {
    fn from(r: X25519Recipient) -> Recipient {
        Recipient::X25519(r)
    }
}

/// An SSH public key's wire form (what its tag is a hash of).
fn ssh_wire(data: &ssh_key::public::KeyData) -> Result<Vec<u8>, RecipientError> {
    ssh_key::PublicKey::new(data.clone(), "")
        .to_bytes()
        .map_err(|_| RecipientError::Invalid("not a valid SSH public key"))
}

/// Asks for a passphrase (for `what`); `None` when none can be had.
pub type Prompt = Box<dyn Fn(&str) -> Option<Zeroizing<String>>>;

/// An SSH private key usable as an age identity.
enum SshSecret {
    /// The X25519 scalar of an ed25519 key (SHA-512 of its seed, first half).
    Ed25519(Zeroizing<[u8; 32]>),
    Rsa(Box<rsa::RsaPrivateKey>),
}

/// An SSH identity: its public key's wire form, and the private key, decrypted on first use
/// when it is protected by a passphrase.
pub struct SshIdentity {
    ssh_key: Vec<u8>,
    /// The Montgomery form of an ed25519 public key (the stanza's salt).
    ed25519_public: Option<[u8; 32]>,
    secret: OnceCell<Result<SshSecret, DecryptError>>,
    locked: Option<(ssh_key::PrivateKey, String, Prompt)>,
}

/// Why an SSH private key cannot be an age identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshKeyError(pub String);

impl fmt::Display for SshKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl SshIdentity {
    /// A PEM-armored SSH private key: OpenSSH's format (ed25519 or RSA, with or without a
    /// passphrase) or PKCS#1 `RSA PRIVATE KEY`. `name` and `prompt` are for the passphrase.
    pub fn parse(text: &str, name: &str, prompt: Prompt) -> Result<SshIdentity, SshKeyError> {
        let text = text.trim_start();
        if text.starts_with("-----BEGIN RSA PRIVATE KEY-----") {
            if text.contains("Proc-Type:") {
                return Err(SshKeyError(
                    "an encrypted PEM key; convert it with `ssh-keygen -p -f FILE` (OpenSSH's \
                     format) to use it"
                        .into(),
                ));
            }
            use rsa::pkcs1::DecodeRsaPrivateKey as _;
            let key = rsa::RsaPrivateKey::from_pkcs1_pem(text)
                .map_err(|_| SshKeyError("not a valid RSA private key".into()))?;
            return SshIdentity::from_rsa(key);
        }
        if !text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----") {
            return Err(SshKeyError(
                "not an OpenSSH private key or a PEM RSA private key".into(),
            ));
        }
        let key = ssh_key::PrivateKey::from_openssh(text)
            .map_err(|e| SshKeyError(format!("not a valid OpenSSH private key ({e})")))?;
        let public = key.public_key().key_data().clone();
        let recipient = Recipient::from_ssh(&public).map_err(|e| {
            SshKeyError(match e {
                RecipientError::Unsupported(kind) => {
                    format!("{kind} keys cannot be used with age; use an ed25519 or RSA key")
                }
                other => other.to_string(),
            })
        })?;
        let (ssh_key, ed25519_public) = match recipient {
            Recipient::SshEd25519 { ssh_key, public } => (ssh_key, Some(public)),
            Recipient::SshRsa { ssh_key, .. } => (ssh_key, None),
            Recipient::X25519(_) => return Err(SshKeyError("not an SSH key".into())),
        };
        let identity = SshIdentity {
            ssh_key,
            ed25519_public,
            secret: OnceCell::new(),
            locked: None,
        };
        if key.is_encrypted() {
            return Ok(SshIdentity {
                locked: Some((key, name.to_string(), prompt)),
                ..identity
            });
        }
        let secret = ssh_secret(&key).map_err(SshKeyError)?;
        let _ = identity.secret.set(Ok(secret));
        Ok(identity)
    }

    fn from_rsa(key: rsa::RsaPrivateKey) -> Result<SshIdentity, SshKeyError> {
        use rsa::traits::PublicKeyParts as _;
        let public = ssh_key::public::RsaPublicKey::try_from(key.to_public_key())
            .map_err(|_| SshKeyError("not a valid RSA private key".into()))?;
        let data = ssh_key::public::KeyData::Rsa(public);
        let bits = key.n().bits() as usize;
        if bits < RSA_MIN_BITS {
            return Err(SshKeyError(RecipientError::RsaTooSmall.to_string()));
        }
        let ssh_key = ssh_wire(&data).map_err(|e| SshKeyError(e.to_string()))?;
        let identity = SshIdentity {
            ssh_key,
            ed25519_public: None,
            secret: OnceCell::new(),
            locked: None,
        };
        let _ = identity.secret.set(Ok(SshSecret::Rsa(Box::new(key))));
        Ok(identity)
    }

    /// Whether the key needs a passphrase before it can be used.
    pub fn is_locked(&self) -> bool {
        self.locked.is_some()
    }

    fn secret(&self) -> &Result<SshSecret, DecryptError> {
        self.secret.get_or_init(|| {
            let Some((key, name, prompt)) = &self.locked else {
                return Err(DecryptError::Identity("the key is not loaded".into()));
            };
            let passphrase = prompt(name).ok_or_else(|| {
                DecryptError::Identity(format!("no passphrase was given for {name}"))
            })?;
            let key = key
                .decrypt(passphrase.as_bytes())
                .map_err(|_| DecryptError::Identity(format!("wrong passphrase for {name}")))?;
            ssh_secret(&key).map_err(DecryptError::Identity)
        })
    }

    fn unwrap_stanza(&self, stanza: &Stanza) -> Option<Result<FileKey, DecryptError>> {
        let kind = stanza.args.first()?.as_str();
        let expected = if self.ed25519_public.is_some() {
            "ssh-ed25519"
        } else {
            "ssh-rsa"
        };
        if kind != expected || stanza.args.get(1) != Some(&ssh_tag(&self.ssh_key)) {
            return None;
        }
        // The tag matched: from here on a failure is this identity's, not another's (age
        // assumes no 32-bit tag collisions either).
        let secret = match self.secret() {
            Ok(secret) => secret,
            Err(e) => return Some(Err(e.clone())),
        };
        Some(match (secret, self.ed25519_public) {
            (SshSecret::Ed25519(scalar), Some(public)) => {
                let Some(share) = stanza.share(3) else {
                    return Some(Err(corrupt("malformed ssh-ed25519 stanza")));
                };
                let tweak = hkdf(&self.ssh_key, SSH_ED25519_LABEL, &[]);
                let shared = Zeroizing::new(x25519(&tweak, &x25519(scalar, &share)));
                let key = hkdf(&[share, public].concat(), SSH_ED25519_LABEL, &shared[..]);
                unwrap(&key, &stanza.body)
                    .ok_or_else(|| corrupt("the ssh-ed25519 stanza for this key does not decrypt"))
            }
            (SshSecret::Rsa(key), None) => {
                if stanza.args.len() != 2 {
                    return Some(Err(corrupt("malformed ssh-rsa stanza")));
                }
                key.decrypt_blinded(
                    &mut rand::rng(),
                    rsa::Oaep::<Sha256>::new_with_label(SSH_RSA_LABEL),
                    &stanza.body,
                )
                .ok()
                .and_then(|plain| <[u8; 16]>::try_from(plain.as_slice()).ok())
                .map(Zeroizing::new)
                .ok_or_else(|| corrupt("the ssh-rsa stanza for this key does not decrypt"))
            }
            _ => Err(corrupt("key type mismatch")),
        })
    }
}

/// An unencrypted OpenSSH private key -> its age secret.
fn ssh_secret(key: &ssh_key::PrivateKey) -> Result<SshSecret, String> {
    match key.key_data() {
        ssh_key::private::KeypairData::Ed25519(pair) => {
            let seed = Zeroizing::new(pair.private.to_bytes());
            let hash = Zeroizing::new(Sha512::digest(&seed[..]));
            let mut scalar = Zeroizing::new([0u8; 32]);
            scalar.copy_from_slice(&hash[..32]);
            Ok(SshSecret::Ed25519(scalar))
        }
        ssh_key::private::KeypairData::Rsa(pair) => rsa::RsaPrivateKey::try_from(pair)
            .map(|k| SshSecret::Rsa(Box::new(k)))
            .map_err(|_| "not a valid RSA private key".to_string()),
        _ => Err("only ed25519 and RSA keys can be used with age".to_string()),
    }
}

/// An identity file encrypted with a passphrase (`age -p`): decrypted, with the passphrase
/// asked for, the first time a file needs it.
pub struct EncryptedIdentity {
    file: Vec<u8>,
    name: String,
    prompt: Prompt,
    max_log_n: u8,
    inner: OnceCell<Result<Vec<Identity>, DecryptError>>,
}

impl EncryptedIdentity {
    pub fn new(file: Vec<u8>, name: &str, prompt: Prompt, max_log_n: u8) -> EncryptedIdentity {
        EncryptedIdentity {
            file,
            name: name.to_string(),
            prompt,
            max_log_n,
            inner: OnceCell::new(),
        }
    }

    fn identities(&self) -> &Result<Vec<Identity>, DecryptError> {
        self.inner.get_or_init(|| {
            let passphrase = (self.prompt)(&self.name).ok_or_else(|| {
                DecryptError::Identity(format!("no passphrase was given for {}", self.name))
            })?;
            let plain = decrypt_with_passphrase(&self.file, &passphrase, self.max_log_n)?;
            let text = std::str::from_utf8(&plain)
                .map_err(|_| DecryptError::Identity("the identity file is not text".into()))?;
            parse_identity_file(text)
                .map(|keys| keys.into_iter().map(Identity::X25519).collect())
                .map_err(|e| DecryptError::Identity(e.to_string()))
        })
    }
}

/// One key the operator decrypts with.
pub enum Identity {
    X25519(X25519Identity),
    Ssh(Box<SshIdentity>),
    Encrypted(EncryptedIdentity),
}

impl Identity {
    /// What this identity makes of `stanza`: not for it (`None`), the file key, or an error
    /// that ends the decryption (a malformed stanza, a key that cannot be unlocked).
    fn unwrap_stanza(&self, stanza: &Stanza) -> Option<Result<FileKey, DecryptError>> {
        match self {
            Identity::X25519(id) => id.unwrap_stanza(stanza),
            Identity::Ssh(id) => id.unwrap_stanza(stanza),
            Identity::Encrypted(id) => {
                // Only stanzas one of the inner keys could take make it ask for the passphrase.
                if stanza.args.first().map(String::as_str) != Some("X25519") {
                    return None;
                }
                match id.identities() {
                    Ok(inner) => inner.iter().find_map(|i| i.unwrap_stanza(stanza)),
                    Err(e) => Some(Err(e.clone())),
                }
            }
        }
    }
}

/// Why an identity file could not be read: which line (never the line itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityFileError {
    pub line: usize,
    pub why: &'static str,
}

impl fmt::Display for IdentityFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.why)
    }
}

/// An identity file as age-keygen writes it: `AGE-SECRET-KEY-1...` lines; blank lines and `#`
/// comments are skipped.
pub fn parse_identity_file(text: &str) -> Result<Vec<X25519Identity>, IdentityFileError> {
    let mut keys = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let why = if line.starts_with("AGE-PLUGIN-") {
            "age plugin identities are not supported"
        } else {
            match X25519Identity::parse(line) {
                Ok(key) => {
                    keys.push(key);
                    continue;
                }
                Err(_) => "not an AGE-SECRET-KEY-1 identity",
            }
        };
        return Err(IdentityFileError {
            line: index + 1,
            why,
        });
    }
    Ok(keys)
}

// ---------------------------------------------------------------------------------------
// The file

/// One recipient stanza: `-> type args...` and its body.
struct Stanza {
    args: Vec<String>,
    body: Vec<u8>,
}

impl Stanza {
    /// The ephemeral X25519 share of an X25519 or ssh-ed25519 stanza: its last of exactly
    /// `args` arguments, 32 bytes, with a body of one wrapped file key (32 bytes).
    fn share(&self, args: usize) -> Option<[u8; 32]> {
        if self.args.len() != args || self.body.len() != 32 {
            return None;
        }
        b64_exact::<32>(self.args.last()?)
    }
}

/// A parsed header: stanzas, the bytes its MAC covers, the MAC, and where the payload starts.
struct Header<'a> {
    stanzas: Vec<Stanza>,
    covered: &'a [u8],
    mac: [u8; 32],
    payload: &'a [u8],
}

/// The next `\n`-ended line of `bytes` from `at`: (line, position after it).
fn line_at(bytes: &[u8], at: usize) -> Result<(&[u8], usize), DecryptError> {
    let rest = bytes.get(at..).unwrap_or_default();
    let end = rest
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| corrupt("the header ends early"))?;
    Ok((&rest[..end], at + end + 1))
}

fn parse_header(bytes: &[u8]) -> Result<Header<'_>, DecryptError> {
    if !bytes.starts_with(INTRO) {
        return Err(if bytes.starts_with(MAGIC) {
            corrupt("an age format version this deploy does not know")
        } else {
            corrupt("not an age file")
        });
    }
    let mut at = INTRO.len();
    let mut stanzas = Vec::new();
    loop {
        let (line, next) = line_at(bytes, at)?;
        if let Some(mac) = line.strip_prefix(b"--- ") {
            if stanzas.is_empty() {
                return Err(corrupt("a header without recipients"));
            }
            let mac = std::str::from_utf8(mac)
                .ok()
                .and_then(b64_exact::<32>)
                .ok_or_else(|| corrupt("malformed header MAC"))?;
            return Ok(Header {
                stanzas,
                covered: &bytes[..at + 3],
                mac,
                payload: &bytes[next..],
            });
        }
        let args = line
            .strip_prefix(b"-> ")
            .ok_or_else(|| corrupt("malformed header line"))?;
        let args: Vec<String> = args
            .split(|&b| b == b' ')
            .map(|a| {
                (!a.is_empty() && a.iter().all(|b| (33..=126).contains(b)))
                    .then(|| String::from_utf8_lossy(a).into_owned())
            })
            .collect::<Option<_>>()
            .ok_or_else(|| corrupt("malformed stanza arguments"))?;
        at = next;
        let mut body_text = Vec::new();
        loop {
            let (line, next) = line_at(bytes, at)?;
            if line.len() > 64 {
                return Err(corrupt("a stanza body line over 64 columns"));
            }
            body_text.extend_from_slice(line);
            at = next;
            if line.len() < 64 {
                break;
            }
        }
        let body = STANDARD_NO_PAD
            .decode(&body_text)
            .map_err(|_| corrupt("malformed stanza body"))?;
        stanzas.push(Stanza { args, body });
    }
}

fn header_mac(file_key: &FileKey, covered: &[u8]) -> hmac::Hmac<Sha256> {
    let key = hkdf(&[], b"header", &file_key[..]);
    let mut mac =
        <hmac::Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&key[..]).expect("any key length");
    mac.update(covered);
    mac
}

/// The binary age file in `bytes` (armored ones are taken out of their armor first).
fn dearmor(bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, DecryptError> {
    // A binary file starts with the magic; anything else must be armor. (An empty file is
    // an empty header.)
    if bytes.starts_with(MAGIC) || bytes.is_empty() {
        return Ok(std::borrow::Cow::Borrowed(bytes));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| damaged(Part::Armor, "not an age file"))?;
    let text = text.trim_start();
    if !text.starts_with(ARMOR_BEGIN) {
        return Err(damaged(Part::Armor, "not an age file"));
    }
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    lines.next();
    let mut body = String::new();
    let mut last_short = false;
    while let Some(line) = lines.next() {
        if line == ARMOR_END {
            if lines.any(|rest| !rest.trim().is_empty()) {
                return Err(damaged(Part::Armor, "data after the armor's end line"));
            }
            return STANDARD
                .decode(&body)
                .map(std::borrow::Cow::Owned)
                .map_err(|_| damaged(Part::Armor, "malformed armor"));
        }
        if last_short || line.is_empty() || line.len() > 64 {
            return Err(damaged(Part::Armor, "malformed armor lines"));
        }
        last_short = line.len() < 64;
        body.push_str(line);
    }
    Err(damaged(
        Part::Armor,
        "the armor's end line is missing (truncated)",
    ))
}

/// Whether `bytes` is an age file encrypted with a passphrase.
pub fn is_passphrase_file(bytes: &[u8]) -> bool {
    dearmor(bytes)
        .ok()
        .and_then(|b| {
            parse_header(&b)
                .ok()
                .map(|h| h.stanzas.iter().any(|s| s.args[0] == "scrypt"))
        })
        .unwrap_or(false)
}

/// Decrypts an age file (binary or armored) with the first identity that takes a stanza.
pub fn decrypt(bytes: &[u8], identities: &[Identity]) -> Result<Vec<u8>, DecryptError> {
    let bytes = dearmor(bytes)?;
    let header = parse_header(&bytes)?;
    if header.stanzas.iter().any(|s| s.args[0] == "scrypt") {
        return Err(DecryptError::Passphrase);
    }
    let file_key = header
        .stanzas
        .iter()
        .find_map(|s| identities.iter().find_map(|i| i.unwrap_stanza(s)))
        .ok_or(DecryptError::NoMatchingKeys)??;
    open(&header, &file_key)
}

/// Decrypts an age file encrypted with `passphrase` (one `scrypt` stanza), with the work
/// factor at most 2^`max_log_n`.
fn decrypt_with_passphrase(
    bytes: &[u8],
    passphrase: &str,
    max_log_n: u8,
) -> Result<Vec<u8>, DecryptError> {
    let bytes = dearmor(bytes)?;
    let header = parse_header(&bytes)?;
    if !header.stanzas.iter().any(|s| s.args[0] == "scrypt") {
        return Err(DecryptError::NoMatchingKeys);
    }
    // An scrypt stanza is always alone: a passphrase must not open a file also encrypted
    // to keys, or the other way round.
    let [stanza] = &header.stanzas[..] else {
        return Err(corrupt("an scrypt stanza beside other stanzas"));
    };
    let (Some(salt), Some(log_n), 3, 32) = (
        stanza.args.get(1).and_then(|a| b64_exact::<16>(a)),
        stanza.args.get(2),
        stanza.args.len(),
        stanza.body.len(),
    ) else {
        return Err(corrupt("not a file encrypted with a passphrase"));
    };
    // Decimal digits without a leading zero or sign (Rust's parse takes a `+`).
    let digits = !log_n.is_empty() && log_n.bytes().all(|b| b.is_ascii_digit());
    let log_n: u8 = match log_n.parse() {
        Ok(n) if digits && !log_n.starts_with('0') && n > 0 => n,
        _ => return Err(corrupt("malformed scrypt work factor")),
    };
    if log_n > max_log_n {
        return Err(corrupt(format!(
            "the scrypt work factor 2^{log_n} is over the limit 2^{max_log_n}"
        )));
    }
    let key =
        scrypt_key(passphrase, &salt, log_n).ok_or_else(|| corrupt("bad scrypt parameters"))?;
    let file_key = unwrap(&key, &stanza.body)
        .ok_or_else(|| DecryptError::Identity("wrong passphrase".into()))?;
    open(&header, &file_key)
}

/// The key an `scrypt` stanza wraps the file key with.
fn scrypt_key(passphrase: &str, salt: &[u8; 16], log_n: u8) -> Option<Zeroizing<[u8; 32]>> {
    let params = scrypt::Params::new(log_n, 8, 1).ok()?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(
        passphrase.as_bytes(),
        &[SCRYPT_LABEL, &salt[..]].concat(),
        &params,
        &mut key[..],
    )
    .ok()?;
    Some(key)
}

/// Checks the header's MAC and decrypts the payload.
fn open(header: &Header, file_key: &FileKey) -> Result<Vec<u8>, DecryptError> {
    header_mac(file_key, header.covered)
        .verify_slice(&header.mac)
        .map_err(|_| {
            damaged(
                Part::Mac,
                "the header's MAC does not match (the file was altered)",
            )
        })?;
    let payload = header.payload;
    let (nonce, mut rest) = payload
        .split_at_checked(16)
        .ok_or_else(|| corrupt("the payload nonce is truncated"))?;
    let key = hkdf(nonce, b"payload", &file_key[..]);
    let mut plaintext = Vec::with_capacity(rest.len());
    let mut counter: u128 = 0;
    loop {
        let take = rest.len().min(CHUNK + TAG);
        let (chunk, after) = rest.split_at(take);
        let last = after.is_empty();
        if chunk.len() < TAG {
            return Err(damaged(Part::Payload, "the payload is truncated"));
        }
        let plain = aead_decrypt(&key, &chunk_nonce(counter, last), chunk).ok_or_else(|| {
            damaged(
                Part::Payload,
                "the payload does not decrypt (truncated or altered)",
            )
        })?;
        if last && plain.is_empty() && counter > 0 {
            return Err(damaged(
                Part::Payload,
                "the payload ends with an empty chunk",
            ));
        }
        plaintext.extend_from_slice(&plain);
        if last {
            return Ok(plaintext);
        }
        counter += 1;
        if counter >= 1 << 88 {
            return Err(damaged(Part::Payload, "the payload is too long"));
        }
        rest = after;
    }
}

/// Encrypts `plaintext` to every recipient: an ASCII-armored age file.
pub fn encrypt(plaintext: &[u8], recipients: &[Recipient]) -> Result<Vec<u8>, String> {
    if recipients.is_empty() {
        return Err("no recipients".into());
    }
    let file_key: FileKey = Zeroizing::new(random());
    let stanzas = recipients
        .iter()
        .map(|r| r.stanza(&file_key))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(armor(&seal(plaintext, &file_key, &stanzas)))
}

/// An age file encrypted with a passphrase (one `scrypt` stanza, work factor 2^`log_n`), as
/// `age -p` writes: for the tests, which have no terminal to drive `age -p` with.
#[cfg(test)]
pub(crate) fn encrypt_with_passphrase(plaintext: &[u8], passphrase: &str, log_n: u8) -> Vec<u8> {
    let file_key: FileKey = Zeroizing::new(random());
    let salt = random::<16>();
    let key = scrypt_key(passphrase, &salt, log_n).expect("valid scrypt parameters");
    let stanza = Stanza {
        args: vec![
            "scrypt".into(),
            STANDARD_NO_PAD.encode(salt),
            log_n.to_string(),
        ],
        body: wrap(&key, &file_key),
    };
    armor(&seal(plaintext, &file_key, &[stanza]))
}

/// The header (stanzas and MAC) and the payload: a binary age file.
fn seal(plaintext: &[u8], file_key: &FileKey, stanzas: &[Stanza]) -> Vec<u8> {
    let mut header = INTRO.to_vec();
    for stanza in stanzas {
        header.extend_from_slice(b"->");
        for arg in &stanza.args {
            header.push(b' ');
            header.extend_from_slice(arg.as_bytes());
        }
        header.push(b'\n');
        // Wrapped at 64 columns; the last line is always shorter, so possibly empty.
        let body = STANDARD_NO_PAD.encode(&stanza.body);
        for line in body.as_bytes().chunks(64) {
            header.extend_from_slice(line);
            header.push(b'\n');
        }
        if body.len() % 64 == 0 {
            header.push(b'\n');
        }
    }
    header.extend_from_slice(b"---");
    let mac = header_mac(file_key, &header).finalize().into_bytes();
    header.push(b' ');
    header.extend_from_slice(STANDARD_NO_PAD.encode(mac).as_bytes());
    header.push(b'\n');

    let nonce = random::<16>();
    let key = hkdf(&nonce, b"payload", &file_key[..]);
    let mut binary = header;
    binary.extend_from_slice(&nonce);
    // An empty plaintext is one empty last chunk; otherwise no chunk is empty.
    let chunks: Vec<&[u8]> = if plaintext.is_empty() {
        vec![&[][..]]
    } else {
        plaintext.chunks(CHUNK).collect()
    };
    for (counter, chunk) in chunks.iter().enumerate() {
        binary.extend_from_slice(&aead_encrypt(
            &key,
            &chunk_nonce(counter as u128, counter + 1 == chunks.len()),
            chunk,
        ));
    }
    binary
}

/// The nonce of payload chunk `counter`: 11 bytes of counter, big-endian, and the last flag.
fn chunk_nonce(counter: u128, last: bool) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[..11].copy_from_slice(&counter.to_be_bytes()[5..]);
    nonce[11] = u8::from(last);
    nonce
}

/// ASCII armor: base64 in lines of 64 between the BEGIN and END lines.
fn armor(binary: &[u8]) -> Vec<u8> {
    let encoded = STANDARD.encode(binary);
    let mut armored = String::with_capacity(encoded.len() + encoded.len() / 64 + 80);
    armored.push_str(ARMOR_BEGIN);
    armored.push('\n');
    for line in encoded.as_bytes().chunks(64) {
        armored.push_str(&String::from_utf8_lossy(line));
        armored.push('\n');
    }
    armored.push_str(ARMOR_END);
    armored.push('\n');
    armored.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x25519_pair() -> (Identity, Recipient) {
        let id = X25519Identity::generate();
        let public = id.to_public();
        (Identity::X25519(id), public.into())
    }

    #[test]
    fn bech32_round_trips_and_rejects_damage() {
        let id = X25519Identity::generate();
        let text = id.secret_string();
        assert!(text.starts_with("AGE-SECRET-KEY-1"));
        let back = X25519Identity::parse(&text).unwrap();
        assert_eq!(back.to_public().to_string(), id.to_public().to_string());
        let public = id.to_public().to_string();
        assert!(public.starts_with("age1") && public.len() == 62, "{public}");
        // One character changed: the checksum catches it.
        let mut damaged = public.clone().into_bytes();
        damaged[10] = if damaged[10] == b'q' { b'p' } else { b'q' };
        let damaged = String::from_utf8(damaged).unwrap();
        assert!(Recipient::parse(&damaged).is_err());
        // Mixed case is not bech32.
        let mixed = format!("AGE{}", &public[3..]);
        assert!(Recipient::parse(&mixed).is_err());
    }

    #[test]
    fn bech32_known_vector() {
        // BIP 173's valid test vector: hrp "a", no data.
        assert_eq!(bech32_encode("a", &[]), "a12uel5l");
        assert_eq!(
            bech32_decode("A12UEL5L").unwrap(),
            ("a".to_string(), vec![])
        );
    }

    #[test]
    fn round_trip_sizes_across_chunks() {
        let (id, recipient) = x25519_pair();
        for size in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 5] {
            let plain: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let file = encrypt(&plain, std::slice::from_ref(&recipient)).unwrap();
            assert_eq!(
                decrypt(&file, std::slice::from_ref(&id)).unwrap(),
                plain,
                "{size}"
            );
        }
    }

    #[test]
    fn wrong_key_is_no_matching_keys_and_damage_is_corrupt() {
        let (_, recipient) = x25519_pair();
        let (other, _) = x25519_pair();
        let file = encrypt(b"a: 1\n", std::slice::from_ref(&recipient)).unwrap();
        assert_eq!(decrypt(&file, &[other]), Err(DecryptError::NoMatchingKeys));
        let (id, recipient) = x25519_pair();
        let file = encrypt(b"a: 1\n", &[recipient]).unwrap();
        let binary = dearmor(&file).unwrap().into_owned();
        // A flipped payload byte, a flipped MAC-covered byte, a cut file.
        let mut flipped = binary.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(
            decrypt(&flipped, &[id]),
            Err(DecryptError::Corrupt(..))
        ));
        let (id, recipient) = x25519_pair();
        let file = encrypt(b"a: 1\n", &[recipient]).unwrap();
        let mut binary = dearmor(&file).unwrap().into_owned();
        let cut = binary.len() - 3;
        binary.truncate(cut);
        assert!(matches!(
            decrypt(&binary, &[id]),
            Err(DecryptError::Corrupt(..))
        ));
    }

    #[test]
    fn a_chunk_boundary_cut_is_caught() {
        // Dropping whole trailing chunks leaves a file whose new last chunk was written as
        // "not last": its nonce differs, so it does not decrypt.
        let (id, recipient) = x25519_pair();
        let plain = vec![7u8; 2 * CHUNK + 10];
        let file = encrypt(&plain, &[recipient]).unwrap();
        let binary = dearmor(&file).unwrap().into_owned();
        let header_len = binary.len() - 16 - (2 * (CHUNK + TAG) + 10 + TAG);
        let cut = &binary[..header_len + 16 + CHUNK + TAG];
        assert!(matches!(
            decrypt(cut, &[id]),
            Err(DecryptError::Corrupt(Part::Payload, _))
        ));
    }

    #[test]
    fn armor_is_strict_about_its_lines() {
        let (id, recipient) = x25519_pair();
        let file = String::from_utf8(encrypt(b"x", &[recipient]).unwrap()).unwrap();
        // CRLF line ends and surrounding whitespace are fine.
        let crlf = format!("\n  {}\n\n", file.replace('\n', "\r\n"));
        assert_eq!(
            decrypt(crlf.as_bytes(), std::slice::from_ref(&id)).unwrap(),
            b"x"
        );
        // No end line: truncated.
        let cut = &file[..file.find(ARMOR_END).unwrap()];
        assert!(decrypt(cut.as_bytes(), std::slice::from_ref(&id)).is_err());
        // Junk after the end line.
        let junk = format!("{file}junk\n");
        assert!(decrypt(junk.as_bytes(), std::slice::from_ref(&id)).is_err());
    }

    #[test]
    fn passphrase_files_are_told_apart() {
        let file = encrypt_with_passphrase(b"secret", "pw", 10);
        assert!(is_passphrase_file(&file));
        let (id, _) = x25519_pair();
        assert_eq!(decrypt(&file, &[id]), Err(DecryptError::Passphrase));
        assert_eq!(decrypt_with_passphrase(&file, "pw", 18).unwrap(), b"secret");
        assert!(matches!(
            decrypt_with_passphrase(&file, "nope", 18),
            Err(DecryptError::Identity(_))
        ));
        // Over the work-factor limit: refused before any scrypt work.
        assert!(matches!(
            decrypt_with_passphrase(&file, "pw", 9),
            Err(DecryptError::Corrupt(Part::Header, _))
        ));
    }

    #[test]
    fn an_identity_file_encrypted_with_a_passphrase_asks_once_when_needed() {
        let inner = X25519Identity::generate();
        let recipient: Recipient = inner.to_public().into();
        let identity_file = format!("# key\n{}\n", &*inner.secret_string());
        let locked = encrypt_with_passphrase(identity_file.as_bytes(), "pw", 10);
        let asked = std::rc::Rc::new(std::cell::Cell::new(0));
        let counter = asked.clone();
        let prompt: Prompt = Box::new(move |_| {
            counter.set(counter.get() + 1);
            Some(Zeroizing::new("pw".to_string()))
        });
        let ids = [Identity::Encrypted(EncryptedIdentity::new(
            locked, "id.age", prompt, 18,
        ))];
        assert_eq!(asked.get(), 0, "not asked before a file needs it");
        for text in [&b"one"[..], b"two"] {
            let file = encrypt(text, std::slice::from_ref(&recipient)).unwrap();
            assert_eq!(decrypt(&file, &ids).unwrap(), text);
        }
        assert_eq!(asked.get(), 1);
    }

    #[test]
    fn identity_file_errors_name_the_line_only() {
        let key = X25519Identity::generate().secret_string();
        let text = format!("# created\n{}\nnot a key\n", &*key);
        let e = parse_identity_file(&text).err().unwrap();
        assert_eq!(e.line, 3);
        assert!(!e.to_string().contains("not a key"), "{e}");
        assert!(parse_identity_file("AGE-PLUGIN-YUBIKEY-1XYZ\n").is_err());
        assert_eq!(parse_identity_file(&key).unwrap().len(), 1);
    }

    #[test]
    fn malformed_headers_are_corrupt_not_panics() {
        let (id, _) = x25519_pair();
        let ids = [id];
        for bad in [
            &b""[..],
            b"age-encryption.org/v1\n",
            b"age-encryption.org/v2\n-> X25519 AAAA\n\n--- AAAA\n",
            b"age-encryption.org/v1\n--- AAAA\n",
            b"age-encryption.org/v1\n-> X25519\n\n--- AAAA\n",
            b"age-encryption.org/v1\n->  X25519 a\n\n--- AAAA\n",
            b"age-encryption.org/v1\n-> X25519 AAAA\nAAAA=\n--- AAAA\n",
            b"-----BEGIN AGE ENCRYPTED FILE-----\n-----END AGE ENCRYPTED FILE-----\n",
        ] {
            assert!(
                matches!(decrypt(bad, &ids), Err(DecryptError::Corrupt(..))),
                "{bad:?}"
            );
        }
    }

    /// C2SP's age test kit (tests/fixtures/age-testkit, from github.com/C2SP/CCTV): every
    /// vector decrypts, or fails in the part it says, as the reference implementation does.
    #[test]
    fn testkit_vectors() {
        testkit(|name| !name.starts_with("stream_25"));
    }

    /// The kit's three 16 MiB files (a chunk counter past one byte), apart: they are most of
    /// the kit's time with the unoptimized debug build.
    #[test]
    fn testkit_vectors_of_257_chunks() {
        testkit(|name| name.starts_with("stream_25"));
    }

    fn testkit(selected: fn(&str) -> bool) {
        use std::io::Read as _;
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/age-testkit");
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n != "README.md")
            .collect();
        names.sort();
        assert_eq!(names.len(), 143);
        names.retain(|n| selected(n));
        let mut failures = Vec::new();
        for name in &names {
            let raw = std::fs::read(dir.join(name)).unwrap();
            let split = raw.windows(2).position(|w| w == b"\n\n").unwrap();
            let head = std::str::from_utf8(&raw[..split]).unwrap();
            let mut body = raw[split + 2..].to_vec();
            let field = |key: &str| {
                head.lines()
                    .filter_map(move |l| l.strip_prefix(key)?.strip_prefix(": "))
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            };
            let expect = field("expect").remove(0);
            if field("compressed").first().map(String::as_str) == Some("zlib") {
                let mut out = Vec::new();
                flate2::read::ZlibDecoder::new(&body[..])
                    .take(64 << 20)
                    .read_to_end(&mut out)
                    .unwrap();
                body = out;
            }
            let result = if let Some(passphrase) = field("passphrase").first() {
                decrypt_with_passphrase(&body, passphrase, 22).map_err(|e| match e {
                    DecryptError::Identity(_) => DecryptError::NoMatchingKeys,
                    other => other,
                })
            } else {
                let ids: Vec<Identity> = field("identity")
                    .iter()
                    .filter_map(|i| X25519Identity::parse(i).ok().map(Identity::X25519))
                    .collect();
                decrypt(&body, &ids)
            };
            let ok = if name.starts_with("hybrid") || name == "armor_hybrid" {
                // Post-quantum recipients: not taken, so never decrypted.
                result.is_err()
            } else {
                match (expect.as_str(), &result) {
                    ("success", Ok(plain)) => {
                        let hash = crate::state::sha256_hex(plain);
                        field("payload").first() == Some(&hash)
                    }
                    ("no match", Err(DecryptError::NoMatchingKeys)) => true,
                    ("HMAC failure", Err(DecryptError::Corrupt(Part::Mac, _))) => true,
                    ("header failure", Err(DecryptError::Corrupt(Part::Header, _))) => true,
                    ("payload failure", Err(DecryptError::Corrupt(Part::Payload, _))) => true,
                    ("armor failure", Err(DecryptError::Corrupt(Part::Armor, _))) => true,
                    _ => false,
                }
            };
            if !ok {
                let got = match &result {
                    Ok(_) => "success".to_string(),
                    Err(e) => format!("{e:?}"),
                };
                failures.push(format!("{name}: expected {expect}, got {got}"));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} vectors:\n{}",
            failures.len(),
            names.len(),
            failures.join("\n")
        );
    }
}
