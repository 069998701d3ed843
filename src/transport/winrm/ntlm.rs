//! NTLMv2 key derivation and message sealing (MS-NLMP), checked against the spec's test
//! vectors (section 4.2.4). Not wired into the transport yet: the NTLM handshake over HTTP
//! and WinRM's `multipart/encrypted` framing are still to come, so `ansible_winrm_transport:
//! ntlm` is refused at connect. This is the part that must be exactly right, and can be
//! proven without a Windows server.
//!
//! In: user, domain, password, the server's challenge and target info, the client's
//! challenge and random session key. Out: the NTLMv2 response, the session keys, and
//! sealed messages with their signatures (client to server).

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

/// Client-to-server sealing state (extended session security, 128-bit, key exchange).
pub struct Sealer {
    sign_key: [u8; 16],
    handle: Rc4,
    seq: u32,
}

impl Sealer {
    pub fn client(exported_session_key: &[u8; 16]) -> Sealer {
        let sign_key = derive(
            exported_session_key,
            b"session key to client-to-server signing key magic constant\0",
        );
        let seal_key = derive(
            exported_session_key,
            b"session key to client-to-server sealing key magic constant\0",
        );
        Sealer {
            sign_key,
            handle: rc4(&seal_key),
            seq: 0,
        }
    }

    /// Seals `message` in place and returns its 16-byte signature (version 1, the
    /// RC4-encrypted first 8 bytes of the HMAC, the sequence number).
    pub fn seal(&mut self, message: &mut [u8]) -> [u8; 16] {
        let seq = self.seq.to_le_bytes();
        let mac = hmac_md5(&self.sign_key, &[&seq, message]);
        self.handle.apply_keystream(message);
        let mut checksum = [0u8; 8];
        checksum.copy_from_slice(&mac[..8]);
        self.handle.apply_keystream(&mut checksum);
        self.seq = self.seq.wrapping_add(1);
        let mut sig = [0u8; 16];
        sig[..4].copy_from_slice(&1u32.to_le_bytes());
        sig[4..12].copy_from_slice(&checksum);
        sig[12..].copy_from_slice(&seq);
        sig
    }
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

    #[test]
    fn seal_and_sign_match_ms_nlmp_4_2_4_4() {
        let mut sealer = Sealer::client(&RANDOM_SESSION_KEY);
        let mut message = utf16le("Plaintext");
        let sig = sealer.seal(&mut message);
        assert_eq!(hex(&message), "54e50165bf1936dc996020c1811b0f06fb5f");
        assert_eq!(hex(&sig), "010000007fb38ec5c55d497600000000");
    }
}
