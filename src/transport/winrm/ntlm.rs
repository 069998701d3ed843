//! NTLMv2 (MS-NLMP): the three handshake messages, key derivation, and message sealing in
//! both directions, checked against the spec's test vectors (section 4.2.4) and, in the
//! end-to-end tests, against pyspnego's NTLM acceptor (the library pywinrm and pypsrp use).
//!
//! In: user, domain, password, the server's CHALLENGE message, randomness. Out: the
//! NEGOTIATE and AUTHENTICATE messages (NTLMv2 response, MIC, encrypted random session
//! key), and a [`Session`] that seals what the client sends and unseals and verifies what
//! the server answers (extended session security, 128-bit RC4, key exchange: what Windows
//! negotiates). A server that does not offer those is refused rather than weakened.

use hmac::{Hmac, KeyInit, Mac};
use md4::{Digest, Md4};
use md5::Md5;
use rc4::{Rc4, StreamCipher};

type HmacMd5 = Hmac<Md5>;

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = <HmacMd5 as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn rc4(key: &[u8]) -> Rc4 {
    // RC4 takes 1 to 256 byte keys; ours are 16.
    <Rc4 as rc4::KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

/// NTOWFv2: HMAC_MD5(MD4(UTF-16LE(password)), UTF-16LE(UPPER(user) + domain)).
pub fn ntowfv2(user: &str, domain: &str, password: &str) -> [u8; 16] {
    let nt_hash: [u8; 16] = Md4::digest(utf16le(password)).into();
    hmac_md5(&nt_hash, &[&utf16le(&(user.to_uppercase() + domain))])
}

/// The NTLMv2 `temp` blob: version, time, client challenge, the server's target info.
pub fn ntlmv2_temp(time: u64, client_challenge: &[u8; 8], target_info: &[u8]) -> Vec<u8> {
    let mut t = vec![1u8, 1, 0, 0, 0, 0, 0, 0];
    t.extend_from_slice(&time.to_le_bytes());
    t.extend_from_slice(client_challenge);
    t.extend_from_slice(&[0; 4]);
    t.extend_from_slice(target_info);
    t.extend_from_slice(&[0; 4]);
    t
}

/// NTProofStr and the session base key of an NTLMv2 response; the NT response itself is
/// NTProofStr followed by `temp`.
pub fn ntlmv2_proof(
    response_key: &[u8; 16],
    server_challenge: &[u8; 8],
    temp: &[u8],
) -> ([u8; 16], [u8; 16]) {
    let proof = hmac_md5(response_key, &[server_challenge, temp]);
    let session_base_key = hmac_md5(response_key, &[&proof]);
    (proof, session_base_key)
}

/// With NTLMSSP_NEGOTIATE_KEY_EXCH: the random session key encrypted with the key exchange
/// key (for NTLMv2, the session base key), as the AUTHENTICATE message carries it.
pub fn encrypted_session_key(
    key_exchange_key: &[u8; 16],
    random_session_key: &[u8; 16],
) -> Vec<u8> {
    let mut out = random_session_key.to_vec();
    rc4(key_exchange_key).apply_keystream(&mut out);
    out
}

fn derive(key: &[u8; 16], magic: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(key);
    h.update(magic);
    h.finalize().into()
}

/// One direction's sealing state (extended session security, 128-bit, key exchange): its
/// signing key, its RC4 handle (which runs on across messages), its sequence number.
pub struct Sealer {
    sign_key: [u8; 16],
    handle: Rc4,
    seq: u32,
}

const CLIENT_SIGN: &[u8] = b"session key to client-to-server signing key magic constant\0";
const CLIENT_SEAL: &[u8] = b"session key to client-to-server sealing key magic constant\0";
const SERVER_SIGN: &[u8] = b"session key to server-to-client signing key magic constant\0";
const SERVER_SEAL: &[u8] = b"session key to server-to-client sealing key magic constant\0";

impl Sealer {
    /// What the client seals with (and the server unseals with).
    pub fn client(exported_session_key: &[u8; 16]) -> Sealer {
        Sealer::new(exported_session_key, CLIENT_SIGN, CLIENT_SEAL)
    }

    /// What the server seals with (and the client unseals with).
    pub fn server(exported_session_key: &[u8; 16]) -> Sealer {
        Sealer::new(exported_session_key, SERVER_SIGN, SERVER_SEAL)
    }

    fn new(key: &[u8; 16], sign_magic: &[u8], seal_magic: &[u8]) -> Sealer {
        Sealer {
            sign_key: derive(key, sign_magic),
            handle: rc4(&derive(key, seal_magic)),
            seq: 0,
        }
    }

    /// The signature of `plain`, whose HMAC is `mac`: version 1, the first 8 bytes of the
    /// HMAC encrypted with the running RC4 handle (after the message itself), the sequence
    /// number.
    fn signature(&mut self, seq: [u8; 4], mac: [u8; 16]) -> [u8; 16] {
        let mut checksum = [0u8; 8];
        checksum.copy_from_slice(&mac[..8]);
        self.handle.apply_keystream(&mut checksum);
        let mut sig = [0u8; 16];
        sig[..4].copy_from_slice(&1u32.to_le_bytes());
        sig[4..12].copy_from_slice(&checksum);
        sig[12..].copy_from_slice(&seq);
        sig
    }

    /// Seals `message` in place and returns its 16-byte signature.
    pub fn seal(&mut self, message: &mut [u8]) -> [u8; 16] {
        let seq = self.seq.to_le_bytes();
        let mac = hmac_md5(&self.sign_key, &[&seq, message]);
        self.handle.apply_keystream(message);
        let sig = self.signature(seq, mac);
        self.seq = self.seq.wrapping_add(1);
        sig
    }

    /// Unseals `message` in place and checks `signature` against it and the expected
    /// sequence number.
    pub fn unseal(&mut self, message: &mut [u8], signature: &[u8]) -> Result<(), String> {
        let seq = self.seq.to_le_bytes();
        self.handle.apply_keystream(message);
        let mac = hmac_md5(&self.sign_key, &[&seq, message]);
        let expected = self.signature(seq, mac);
        self.seq = self.seq.wrapping_add(1);
        if signature != expected {
            return Err(
                "the message's NTLM signature does not match (altered, or out of order)".into(),
            );
        }
        Ok(())
    }
}

/// Negotiate flags (MS-NLMP 2.2.2.5).
pub mod flags {
    pub const UNICODE: u32 = 0x0000_0001;
    pub const REQUEST_TARGET: u32 = 0x0000_0004;
    pub const SIGN: u32 = 0x0000_0010;
    pub const SEAL: u32 = 0x0000_0020;
    pub const NTLM: u32 = 0x0000_0200;
    pub const ALWAYS_SIGN: u32 = 0x0000_8000;
    pub const EXTENDED_SESSION_SECURITY: u32 = 0x0008_0000;
    pub const TARGET_INFO: u32 = 0x0080_0000;
    pub const VERSION: u32 = 0x0200_0000;
    pub const N128: u32 = 0x2000_0000;
    pub const KEY_EXCH: u32 = 0x4000_0000;
    pub const N56: u32 = 0x8000_0000;
}

/// What deploy asks for: NTLMv2 with extended session security, signing and sealing with
/// 128-bit keys and key exchange (what Windows negotiates by default).
pub const CLIENT_FLAGS: u32 = flags::UNICODE
    | flags::REQUEST_TARGET
    | flags::SIGN
    | flags::SEAL
    | flags::NTLM
    | flags::ALWAYS_SIGN
    | flags::EXTENDED_SESSION_SECURITY
    | flags::TARGET_INFO
    | flags::VERSION
    | flags::N128
    | flags::KEY_EXCH
    | flags::N56;

const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";
/// Windows 10 build 19041, NTLMSSP revision 15: what the VERSION field says of us.
const VERSION: [u8; 8] = [10, 0, 0x61, 0x4a, 0, 0, 0, 0x0f];

/// AV pair ids (MS-NLMP 2.2.2.1).
const MSV_AV_EOL: u16 = 0;
const MSV_AV_FLAGS: u16 = 6;
const MSV_AV_TIMESTAMP: u16 = 7;
const MSV_AV_CHANNEL_BINDINGS: u16 = 10;
/// MsvAvFlags bit: the AUTHENTICATE message carries a MIC.
const AV_FLAG_MIC: u32 = 0x2;

/// The NEGOTIATE message: signature, type 1, [`CLIENT_FLAGS`], empty domain and
/// workstation, version.
pub fn negotiate_message() -> Vec<u8> {
    let mut m = Vec::with_capacity(40);
    m.extend_from_slice(SIGNATURE);
    m.extend_from_slice(&1u32.to_le_bytes());
    m.extend_from_slice(&CLIENT_FLAGS.to_le_bytes());
    m.extend_from_slice(&[0; 16]);
    m.extend_from_slice(&VERSION);
    m
}

/// What deploy needs of the server's CHALLENGE message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub flags: u32,
    pub server_challenge: [u8; 8],
    /// The AV pairs, EOL excluded, in the server's order.
    pub target_info: Vec<(u16, Vec<u8>)>,
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The bytes a (length, max length, offset) field at `at` points to.
fn field(b: &[u8], at: usize) -> Option<&[u8]> {
    let len = usize::from(le16(b, at)?);
    let offset = usize::try_from(le32(b, at + 4)?).ok()?;
    b.get(offset..offset.checked_add(len)?)
}

impl Challenge {
    pub fn parse(b: &[u8]) -> Result<Challenge, String> {
        let bad = |what: &str| format!("the server's NTLM CHALLENGE message is malformed ({what})");
        if b.get(..8) != Some(SIGNATURE.as_slice()) || le32(b, 8) != Some(2) {
            return Err(bad("not an NTLMSSP type 2 message"));
        }
        let flags = le32(b, 20).ok_or_else(|| bad("too short"))?;
        let mut server_challenge = [0u8; 8];
        server_challenge.copy_from_slice(b.get(24..32).ok_or_else(|| bad("too short"))?);
        let mut target_info = Vec::new();
        if flags & flags::TARGET_INFO != 0 {
            let mut info = field(b, 40).ok_or_else(|| bad("target info out of bounds"))?;
            loop {
                let id = le16(info, 0).ok_or_else(|| bad("target info ends early"))?;
                let len = usize::from(le16(info, 2).ok_or_else(|| bad("target info ends early"))?);
                if id == MSV_AV_EOL {
                    break;
                }
                let value = info
                    .get(4..4 + len)
                    .ok_or_else(|| bad("AV pair out of bounds"))?;
                target_info.push((id, value.to_vec()));
                info = &info[4 + len..];
            }
        }
        Ok(Challenge {
            flags,
            server_challenge,
            target_info,
        })
    }

    fn timestamp(&self) -> Option<u64> {
        let (_, v) = self
            .target_info
            .iter()
            .find(|(id, _)| *id == MSV_AV_TIMESTAMP)?;
        Some(u64::from_le_bytes(v.as_slice().try_into().ok()?))
    }
}

/// The client's random inputs to one AUTHENTICATE message (fixed in tests).
pub struct Randomness {
    pub client_challenge: [u8; 8],
    pub session_key: [u8; 16],
    /// Now, as a Windows FILETIME; used when the server sent no MsvAvTimestamp.
    pub filetime: u64,
}

impl Randomness {
    pub fn new() -> Randomness {
        const EPOCH_DIFF_S: u64 = 11_644_473_600;
        let since_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Randomness {
            client_challenge: rand::random(),
            session_key: rand::random(),
            filetime: (since_unix.as_secs() + EPOCH_DIFF_S) * 10_000_000
                + u64::from(since_unix.subsec_nanos() / 100),
        }
    }
}

impl Default for Randomness {
    fn default() -> Self {
        Randomness::new()
    }
}

/// An account as NTLM wants it: `DOMAIN\user` splits into its domain and user; `user` and
/// `user@domain.example` go as they are, with no domain (a local account, or a UPN).
pub fn split_user(user: &str) -> (&str, &str) {
    match user.split_once('\\') {
        Some((domain, name)) => (name, domain),
        None => (user, ""),
    }
}

/// The AUTHENTICATE message for `challenge` (which answered `negotiate`), and the session
/// it sets up. Refuses a server that does not offer extended session security with 128-bit
/// keys: sealing weaker than that is not worth having. `channel_binding` is the TLS channel
/// binding data (`tls-server-end-point:` and the certificate's hash) over https; its MD5 in
/// the signed target info ties the logon to this TLS connection, which a listener with
/// `CbtHardeningLevel=Strict` demands.
pub fn authenticate(
    negotiate: &[u8],
    challenge_bytes: &[u8],
    user: &str,
    password: &str,
    channel_binding: Option<&[u8]>,
    random: &Randomness,
) -> Result<(Vec<u8>, Session), String> {
    let challenge = Challenge::parse(challenge_bytes)?;
    let needed = flags::EXTENDED_SESSION_SECURITY | flags::N128 | flags::SIGN | flags::SEAL;
    if challenge.flags & needed != needed {
        return Err(format!(
            "the server does not offer NTLMv2 with extended session security, 128-bit keys, signing and sealing (its flags: {:#010x})",
            challenge.flags
        ));
    }
    let (name, domain) = split_user(user);
    let response_key = ntowfv2(name, domain, password);

    // The target info the client signs: the server's, with MsvAvFlags saying a MIC follows
    // when the server sent a timestamp (then the MIC is required).
    let server_time = challenge.timestamp();
    let mut info = Vec::new();
    let mut has_flags = false;
    for (id, value) in &challenge.target_info {
        let mut value = value.clone();
        if *id == MSV_AV_FLAGS && server_time.is_some() && value.len() == 4 {
            let f = le32(&value, 0).unwrap_or(0) | AV_FLAG_MIC;
            value = f.to_le_bytes().to_vec();
            has_flags = true;
        }
        push_av(&mut info, *id, &value);
    }
    if server_time.is_some() && !has_flags {
        push_av(&mut info, MSV_AV_FLAGS, &AV_FLAG_MIC.to_le_bytes());
    }
    if let Some(data) = channel_binding {
        push_av(
            &mut info,
            MSV_AV_CHANNEL_BINDINGS,
            &channel_bindings_hash(data),
        );
    }
    // MsvAvEOL: `ntlmv2_temp` appends the trailing four zero bytes.
    info.extend_from_slice(&[0; 4]);

    let time = server_time.unwrap_or(random.filetime);
    let temp = ntlmv2_temp(time, &random.client_challenge, &info);
    let (proof, session_base_key) = ntlmv2_proof(&response_key, &challenge.server_challenge, &temp);
    let mut nt_response = proof.to_vec();
    nt_response.extend_from_slice(&temp);
    let lm_response = if server_time.is_some() {
        vec![0u8; 24]
    } else {
        let mut lm = hmac_md5(
            &response_key,
            &[&challenge.server_challenge, &random.client_challenge],
        )
        .to_vec();
        lm.extend_from_slice(&random.client_challenge);
        lm
    };
    let (exported, encrypted_key) = if challenge.flags & flags::KEY_EXCH != 0 {
        (
            random.session_key,
            encrypted_session_key(&session_base_key, &random.session_key),
        )
    } else {
        (session_base_key, Vec::new())
    };
    let flags = challenge.flags & CLIENT_FLAGS;

    const HEADER: usize = 88;
    const MIC_AT: usize = 72;
    let domain = utf16le(domain);
    let name = utf16le(name);
    let payloads: [&[u8]; 6] = [
        &lm_response,
        &nt_response,
        &domain,
        &name,
        &[],
        &encrypted_key,
    ];
    let mut m = Vec::with_capacity(HEADER + payloads.iter().map(|p| p.len()).sum::<usize>());
    m.extend_from_slice(SIGNATURE);
    m.extend_from_slice(&3u32.to_le_bytes());
    let mut offset = HEADER;
    for p in payloads {
        let len = u16::try_from(p.len()).map_err(|_| "an NTLM field is too long".to_string())?;
        m.extend_from_slice(&len.to_le_bytes());
        m.extend_from_slice(&len.to_le_bytes());
        m.extend_from_slice(&(offset as u32).to_le_bytes());
        offset += p.len();
    }
    m.extend_from_slice(&flags.to_le_bytes());
    m.extend_from_slice(&VERSION);
    m.extend_from_slice(&[0; 16]);
    for p in payloads {
        m.extend_from_slice(p);
    }
    let mic = hmac_md5(&exported, &[negotiate, challenge_bytes, &m]);
    m[MIC_AT..MIC_AT + 16].copy_from_slice(&mic);
    Ok((m, Session::client(&exported)))
}

/// MD5 of a `gss_channel_bindings_struct` with no addresses and `application_data`
/// (RFC 2744 3.11, as SSPI packs it).
pub fn channel_bindings_hash(application_data: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update([0u8; 16]);
    h.update((application_data.len() as u32).to_le_bytes());
    h.update(application_data);
    h.finalize().into()
}

fn push_av(out: &mut Vec<u8>, id: u16, value: &[u8]) {
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
}

/// An established NTLM session: what one side seals with and what it unseals with.
pub struct Session {
    pub send: Sealer,
    pub receive: Sealer,
}

impl Session {
    pub fn client(exported_session_key: &[u8; 16]) -> Session {
        Session {
            send: Sealer::client(exported_session_key),
            receive: Sealer::server(exported_session_key),
        }
    }
}

/// WinRM message encryption over http (MS-WSMV 2.2.9.1): the Content-Type of a sealed
/// request or answer.
pub const ENCRYPTED_CONTENT_TYPE: &str = "multipart/encrypted;protocol=\"application/HTTP-SPNEGO-session-encrypted\";boundary=\"Encrypted Boundary\"";

const BOUNDARY: &[u8] = b"--Encrypted Boundary";
const OCTET_STREAM: &[u8] = b"\tContent-Type: application/octet-stream\r\n";

/// Seals a SOAP envelope into the multipart body WinRM expects: the original length, then
/// the signature's length (4 bytes, little-endian), the signature and the sealed bytes.
pub fn wrap_winrm(sealer: &mut Sealer, soap: &[u8]) -> Vec<u8> {
    let mut sealed = soap.to_vec();
    let sig = sealer.seal(&mut sealed);
    let mut out = Vec::with_capacity(soap.len() + 256);
    out.extend_from_slice(BOUNDARY);
    out.extend_from_slice(b"\r\n\tContent-Type: application/HTTP-SPNEGO-session-encrypted\r\n");
    out.extend_from_slice(
        format!(
            "\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length={}\r\n",
            soap.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(BOUNDARY);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(OCTET_STREAM);
    out.extend_from_slice(&(sig.len() as u32).to_le_bytes());
    out.extend_from_slice(&sig);
    out.extend_from_slice(&sealed);
    out.extend_from_slice(BOUNDARY);
    out.extend_from_slice(b"--\r\n");
    out
}

/// Unseals a multipart body made as [`wrap_winrm`] makes it, checking its signature.
pub fn unwrap_winrm(sealer: &mut Sealer, body: &[u8]) -> Result<Vec<u8>, String> {
    let bad = |what: &str| format!("the encrypted answer is malformed ({what})");
    let find = |hay: &[u8], needle: &[u8], from: usize| -> Option<usize> {
        hay.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|i| i + from)
    };
    let at = find(body, b"Length=", 0).ok_or_else(|| bad("no OriginalContent length"))? + 7;
    let end = find(body, b"\r\n", at).ok_or_else(|| bad("no OriginalContent length"))?;
    let length: usize = std::str::from_utf8(&body[at..end])
        .ok()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| bad("bad OriginalContent length"))?;
    let data = find(body, OCTET_STREAM, end).ok_or_else(|| bad("no octet-stream part"))?
        + OCTET_STREAM.len();
    let sig_len = le32(body, data).ok_or_else(|| bad("ends early"))? as usize;
    if sig_len != 16 {
        return Err(bad("the signature is not 16 bytes"));
    }
    let sig = body
        .get(data + 4..data + 20)
        .ok_or_else(|| bad("ends early"))?;
    let end = (data + 20)
        .checked_add(length)
        .ok_or_else(|| bad("bad OriginalContent length"))?;
    let mut message = body
        .get(data + 20..end)
        .ok_or_else(|| bad("shorter than its OriginalContent length"))?
        .to_vec();
    sealer.unseal(&mut message, sig)?;
    Ok(message)
}

#[cfg(test)]
mod tests {
    //! MS-NLMP 4.2.1 common values and 4.2.4 NTLMv2 authentication.
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    const SERVER_CHALLENGE: [u8; 8] = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
    const CLIENT_CHALLENGE: [u8; 8] = [0xaa; 8];
    const RANDOM_SESSION_KEY: [u8; 16] = [0x55; 16];

    /// 4.2.4: AV pairs MsvAvNbDomainName "Domain", MsvAvNbComputerName "Server", MsvAvEOL.
    fn target_info() -> Vec<u8> {
        let mut t = vec![0x02, 0x00, 0x0c, 0x00];
        t.extend(utf16le("Domain"));
        t.extend([0x01, 0x00, 0x0c, 0x00]);
        t.extend(utf16le("Server"));
        t.extend([0x00, 0x00, 0x00, 0x00]);
        t
    }

    #[test]
    fn ntowfv2_matches_ms_nlmp_4_2_4_1_1() {
        assert_eq!(
            hex(&ntowfv2("User", "Domain", "Password")),
            "0c868a403bfd7a93a3001ef22ef02e3f"
        );
    }

    #[test]
    fn ntlmv2_response_and_session_key_match_ms_nlmp_4_2_4() {
        let key = ntowfv2("User", "Domain", "Password");
        let temp = ntlmv2_temp(0, &CLIENT_CHALLENGE, &target_info());
        let (proof, base) = ntlmv2_proof(&key, &SERVER_CHALLENGE, &temp);
        assert_eq!(hex(&proof), "68cd0ab851e51c96aabc927bebef6a1c");
        assert_eq!(hex(&base), "8de40ccadbc14a82f15cb0ad0de95ca3");
        assert_eq!(
            hex(&encrypted_session_key(&base, &RANDOM_SESSION_KEY)),
            "c5dad2544fc9799094ce1ce90bc9d03e"
        );
    }

    /// 4.2.4.3: the CHALLENGE_MESSAGE of the NTLMv2 example.
    const CHALLENGE_4_2_4_3: &str = "4e544c4d53535000020000000c000c003800000033828ae20123456789abcdef00000000000000002400240044000000060070170000000f53006500720076006500720002000c0044006f006d00610069006e0001000c005300650072007600650072000000000000000000";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn challenge_message_of_4_2_4_3_parses() {
        let c = Challenge::parse(&unhex(CHALLENGE_4_2_4_3)).unwrap();
        assert_eq!(c.flags, 0xe28a8233);
        assert_eq!(c.server_challenge, SERVER_CHALLENGE);
        assert_eq!(
            c.target_info,
            vec![(2, utf16le("Domain")), (1, utf16le("Server"))]
        );
        let mut truncated = unhex(CHALLENGE_4_2_4_3);
        truncated.truncate(60);
        let err = Challenge::parse(&truncated).unwrap_err();
        assert!(err.contains("malformed"), "{err}");
    }

    /// The AUTHENTICATE message for the 4.2.4 example carries the spec's LMv2 and NTLMv2
    /// responses, its encrypted session key, the user and domain; its session seals as
    /// 4.2.4.4 does; its MIC is the HMAC of the three messages.
    #[test]
    fn authenticate_message_carries_the_4_2_4_responses() {
        let negotiate = negotiate_message();
        let challenge = unhex(CHALLENGE_4_2_4_3);
        let random = Randomness {
            client_challenge: CLIENT_CHALLENGE,
            session_key: RANDOM_SESSION_KEY,
            filetime: 0,
        };
        let (m, mut session) = authenticate(
            &negotiate,
            &challenge,
            "Domain\\User",
            "Password",
            None,
            &random,
        )
        .unwrap();
        assert_eq!(&m[..12], b"NTLMSSP\0\x03\0\0\0");
        assert_eq!(
            hex(field(&m, 12).unwrap()),
            "86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa"
        );
        let nt = field(&m, 20).unwrap();
        assert_eq!(hex(&nt[..16]), "68cd0ab851e51c96aabc927bebef6a1c");
        assert_eq!(
            nt[16..],
            ntlmv2_temp(0, &CLIENT_CHALLENGE, &target_info())[..]
        );
        assert_eq!(field(&m, 28).unwrap(), utf16le("Domain"));
        assert_eq!(field(&m, 36).unwrap(), utf16le("User"));
        assert_eq!(
            hex(field(&m, 52).unwrap()),
            "c5dad2544fc9799094ce1ce90bc9d03e"
        );
        let mut zeroed = m.clone();
        zeroed[72..88].fill(0);
        assert_eq!(
            m[72..88],
            hmac_md5(&RANDOM_SESSION_KEY, &[&negotiate, &challenge, &zeroed])
        );
        let mut message = utf16le("Plaintext");
        let sig = session.send.seal(&mut message);
        assert_eq!(hex(&message), "54e50165bf1936dc996020c1811b0f06fb5f");
        assert_eq!(hex(&sig), "010000007fb38ec5c55d497600000000");
    }

    #[test]
    fn a_server_timestamp_means_a_mic_flag_and_no_lm_response() {
        let mut challenge = unhex(CHALLENGE_4_2_4_3);
        // Replace the target info with one holding MsvAvTimestamp = 1.
        let mut info = Vec::new();
        push_av(&mut info, MSV_AV_TIMESTAMP, &1u64.to_le_bytes());
        info.extend_from_slice(&[0; 4]);
        challenge.truncate(0x44);
        challenge[40..42].copy_from_slice(&(info.len() as u16).to_le_bytes());
        challenge[42..44].copy_from_slice(&(info.len() as u16).to_le_bytes());
        challenge.extend_from_slice(&info);
        let random = Randomness {
            client_challenge: CLIENT_CHALLENGE,
            session_key: RANDOM_SESSION_KEY,
            filetime: 99,
        };
        let (m, _) = authenticate(
            &negotiate_message(),
            &challenge,
            "User",
            "Password",
            Some(b"tls-server-end-point:abc"),
            &random,
        )
        .unwrap();
        assert_eq!(field(&m, 12).unwrap(), [0u8; 24]);
        let nt = field(&m, 20).unwrap();
        // The server's time, not ours; then MsvAvFlags with the MIC bit.
        assert_eq!(nt[16 + 8..16 + 16], 1u64.to_le_bytes());
        let signed_info = &nt[16 + 28..];
        assert!(
            signed_info
                .windows(8)
                .any(|w| w == [6, 0, 4, 0, 2, 0, 0, 0]),
            "{}",
            hex(signed_info)
        );
        // The channel bindings' MD5 follows.
        let mut cbt = vec![10, 0, 16, 0];
        cbt.extend(channel_bindings_hash(b"tls-server-end-point:abc"));
        assert!(
            signed_info.windows(20).any(|w| w == cbt),
            "{}",
            hex(signed_info)
        );
    }

    #[test]
    fn a_server_without_session_security_is_refused() {
        let mut challenge = unhex(CHALLENGE_4_2_4_3);
        let weak = 0xe28a8233u32 & !flags::EXTENDED_SESSION_SECURITY;
        challenge[20..24].copy_from_slice(&weak.to_le_bytes());
        let err = authenticate(
            &negotiate_message(),
            &challenge,
            "User",
            "Password",
            None,
            &Randomness::new(),
        )
        .err()
        .unwrap();
        assert!(err.contains("extended session security"), "{err}");
    }

    #[test]
    fn server_sealed_messages_unseal_and_tampering_is_caught() {
        let key = [0x55; 16];
        let mut server = Sealer::server(&key);
        let mut client = Session::client(&key);
        for text in ["first answer", "second answer"] {
            let mut m = text.as_bytes().to_vec();
            let sig = server.seal(&mut m);
            assert_ne!(m, text.as_bytes());
            client.receive.unseal(&mut m, &sig).unwrap();
            assert_eq!(m, text.as_bytes());
        }
        let mut m = b"third".to_vec();
        let sig = server.seal(&mut m);
        m[0] ^= 1;
        assert!(client.receive.unseal(&mut m, &sig).is_err());
    }

    #[test]
    fn winrm_framing_round_trips_and_checks_the_signature() {
        let key = [7u8; 16];
        let soap = "<s:Envelope>--Encrypted Boundary inside</s:Envelope>".as_bytes();
        let body = wrap_winrm(&mut Sealer::client(&key), soap);
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with("--Encrypted Boundary\r\n\tContent-Type: application/HTTP-SPNEGO-session-encrypted\r\n\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=52\r\n"), "{text}");
        assert!(text.ends_with("--Encrypted Boundary--\r\n"), "{text}");
        assert!(!text.contains("inside"), "the envelope is sealed: {text}");
        assert_eq!(
            unwrap_winrm(&mut Sealer::client(&key), &body).unwrap(),
            soap
        );
        let err = unwrap_winrm(&mut Sealer::server(&key), &body).unwrap_err();
        assert!(err.contains("signature"), "{err}");
        let err = unwrap_winrm(&mut Sealer::client(&key), &body[..100]).unwrap_err();
        assert!(err.contains("malformed"), "{err}");
    }

    #[test]
    fn domain_and_user_split_like_windows() {
        assert_eq!(split_user("CORP\\mdt"), ("mdt", "CORP"));
        assert_eq!(split_user("mdt"), ("mdt", ""));
        assert_eq!(split_user("mdt@corp.example"), ("mdt@corp.example", ""));
    }

    #[test]
    fn seal_and_sign_match_ms_nlmp_4_2_4_4() {
        let mut sealer = Sealer::client(&RANDOM_SESSION_KEY);
        let mut message = utf16le("Plaintext");
        let sig = sealer.seal(&mut message);
        assert_eq!(hex(&message), "54e50165bf1936dc996020c1811b0f06fb5f");
        assert_eq!(hex(&sig), "010000007fb38ec5c55d497600000000");
    }
}
