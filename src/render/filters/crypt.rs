//! `password_hash(hashtype='sha512', salt=...)`: crypt(3) hashes with a given salt, as
//! ansible-core 2.19 writes them through passlib (the only way it hashes: without passlib it
//! fails), with the rounds Ansible passes (`sha512_crypt` 656000, `sha256_crypt` 535000;
//! `md5_crypt` has none).
//!
//! A hash without a salt is refused: Ansible picks a random one, so every run would write a
//! different file. Other algorithms (`bcrypt`, ...) are refused too.

use md5::Md5;
use minijinja::value::{Kwargs, Rest};
use minijinja::{Error, Value};
use sha2::{Digest, Sha256, Sha512};

use super::invalid;
use crate::render::pyfmt::py_str;

const ALPHABET: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Most rounds a template may ask for (crypt's own maximum is 999999999, which would hold a
/// render for minutes).
const MAX_ROUNDS: u64 = 10_000_000;

fn b64_24(out: &mut String, b2: u8, b1: u8, b0: u8, n: usize) {
    let mut w = (u32::from(b2) << 16) | (u32::from(b1) << 8) | u32::from(b0);
    for _ in 0..n {
        out.push(char::from(ALPHABET[(w & 0x3f) as usize]));
        w >>= 6;
    }
}

fn repeat_to(block: &[u8], len: usize) -> Vec<u8> {
    block.iter().copied().cycle().take(len).collect()
}

/// SHA-crypt (Drepper's `$5$`/`$6$`) for digest `D`.
fn sha_crypt<D: Digest>(pw: &[u8], salt: &[u8], rounds: u64) -> Vec<u8> {
    let hlen = <D as Digest>::output_size();
    let b = D::new()
        .chain_update(pw)
        .chain_update(salt)
        .chain_update(pw)
        .finalize();
    let mut a = D::new().chain_update(pw).chain_update(salt);
    a.update(repeat_to(&b, pw.len()));
    let mut n = pw.len();
    while n > 0 {
        if n & 1 == 1 {
            a.update(&b);
        } else {
            a.update(pw);
        }
        n >>= 1;
    }
    let mut a = a.finalize().to_vec();
    let mut dp = D::new();
    for _ in 0..pw.len() {
        dp.update(pw);
    }
    let p = repeat_to(&dp.finalize(), pw.len());
    let mut ds = D::new();
    for _ in 0..16 + usize::from(a[0]) {
        ds.update(salt);
    }
    let s = repeat_to(&ds.finalize(), salt.len());
    for r in 0..rounds {
        let mut c = D::new();
        if r & 1 == 1 {
            c.update(&p);
        } else {
            c.update(&a);
        }
        if r % 3 != 0 {
            c.update(&s);
        }
        if r % 7 != 0 {
            c.update(&p);
        }
        if r & 1 == 1 {
            c.update(&a);
        } else {
            c.update(&p);
        }
        a = c.finalize().to_vec();
    }
    debug_assert_eq!(a.len(), hlen);
    a
}

fn encode_sha512(a: &[u8]) -> String {
    let mut out = String::new();
    let mut i = 0usize;
    for _ in 0..21 {
        let (x, y, z) = (i % 63, (i + 21) % 63, (i + 42) % 63);
        b64_24(&mut out, a[x], a[y], a[z], 4);
        i = (i + 22) % 63;
    }
    b64_24(&mut out, 0, 0, a[63], 2);
    out
}

fn encode_sha256(a: &[u8]) -> String {
    let mut out = String::new();
    let mut i = 0usize;
    for _ in 0..10 {
        let (x, y, z) = (i % 30, (i + 10) % 30, (i + 20) % 30);
        b64_24(&mut out, a[x], a[y], a[z], 4);
        i = (i + 21) % 30;
    }
    b64_24(&mut out, 0, a[31], a[30], 3);
    out
}

/// FreeBSD's MD5-crypt (`$1$`).
fn md5_crypt(pw: &[u8], salt: &[u8]) -> String {
    let alt = Md5::new()
        .chain_update(pw)
        .chain_update(salt)
        .chain_update(pw)
        .finalize();
    let mut ctx = Md5::new()
        .chain_update(pw)
        .chain_update(b"$1$")
        .chain_update(salt);
    let mut i = pw.len();
    while i > 0 {
        ctx.update(&alt[..i.min(16)]);
        i = i.saturating_sub(16);
    }
    let mut i = pw.len();
    while i > 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&pw[..1]);
        }
        i >>= 1;
    }
    let mut f = ctx.finalize().to_vec();
    for r in 0..1000 {
        let mut c = Md5::new();
        if r & 1 == 1 {
            c.update(pw);
        } else {
            c.update(&f);
        }
        if r % 3 != 0 {
            c.update(salt);
        }
        if r % 7 != 0 {
            c.update(pw);
        }
        if r & 1 == 1 {
            c.update(&f);
        } else {
            c.update(pw);
        }
        f = c.finalize().to_vec();
    }
    let mut out = String::new();
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        b64_24(&mut out, f[a], f[b], f[c], 4);
    }
    b64_24(&mut out, 0, 0, f[11], 2);
    out
}

/// `password_hash(hashtype='sha512', salt=None, salt_size=None, rounds=None, ident=None)`.
pub(super) fn password_hash(v: Value, args: Rest<Value>, kwargs: Kwargs) -> Result<String, Error> {
    let mut pos = args.0.into_iter();
    let mut next = |name: &str| -> Result<Option<Value>, Error> {
        let p = pos.next();
        Ok(kwargs
            .get::<Option<Value>>(name)?
            .or(p)
            .filter(|v| !v.is_none()))
    };
    let hashtype = next("hashtype")?.map_or_else(|| "sha512".to_string(), |v| py_str(&v));
    let salt = next("salt")?.map(|v| py_str(&v)).filter(|s| !s.is_empty());
    let _salt_size = next("salt_size")?;
    let rounds = next("rounds")?;
    let ident = next("ident")?;
    kwargs.assert_all_used()?;
    if ident.is_some() {
        return Err(invalid("password_hash: deploy does not support `ident`"));
    }
    let algorithm = match hashtype.as_str() {
        "sha512" | "sha512_crypt" => "sha512_crypt",
        "sha256" | "sha256_crypt" => "sha256_crypt",
        "md5" | "md5_crypt" => "md5_crypt",
        other => {
            return Err(invalid(format!(
                "password_hash: deploy supports sha512_crypt, sha256_crypt and md5_crypt, not {other:?}"
            )));
        }
    };
    let Some(salt) = salt else {
        return Err(invalid(
            "password_hash without a salt is refused: Ansible picks a random salt, so every run \
             would write a different hash; give one, e.g. password_hash('sha512', 'mysalt')",
        ));
    };
    let max_salt = if algorithm == "md5_crypt" { 8 } else { 16 };
    if salt.len() > max_salt || !salt.bytes().all(|b| ALPHABET.contains(&b)) {
        return Err(invalid(format!(
            "password_hash: the {algorithm} salt must be 1 to {max_salt} characters of ./0-9A-Za-z"
        )));
    }
    let pw = py_str(&v);
    let pw = pw.as_bytes();
    if algorithm == "md5_crypt" {
        if rounds.is_some() {
            return Err(invalid("password_hash: md5_crypt takes no rounds"));
        }
        return Ok(format!("$1${salt}${}", md5_crypt(pw, salt.as_bytes())));
    }
    let default = if algorithm == "sha512_crypt" {
        656_000
    } else {
        535_000
    };
    let rounds = match rounds {
        None => default,
        Some(r) => u64::try_from(r)
            .ok()
            .filter(|r| (1000..=MAX_ROUNDS).contains(r))
            .ok_or_else(|| {
                invalid(format!(
                    "password_hash: rounds must be an integer from 1000 to {MAX_ROUNDS}"
                ))
            })?,
    };
    let (id, body) = if algorithm == "sha512_crypt" {
        (
            "6",
            encode_sha512(&sha_crypt::<Sha512>(pw, salt.as_bytes(), rounds)),
        )
    } else {
        (
            "5",
            encode_sha256(&sha_crypt::<Sha256>(pw, salt.as_bytes(), rounds)),
        )
    };
    let rounds_part = if rounds == 5000 {
        String::new()
    } else {
        format!("rounds={rounds}$")
    };
    Ok(format!("${id}${rounds_part}{salt}${body}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values from passlib 1.7.4 (`sha512_crypt.using(salt=..., rounds=...).hash(...)`).
    #[test]
    fn like_passlib() {
        assert_eq!(
            format!(
                "$6$s${}",
                encode_sha512(&sha_crypt::<Sha512>("pässwörd".as_bytes(), b"s", 5000))
            ),
            "$6$s$6.Q1IjFDMXFFsfV/lNgBTvzU8UqKOoHrVC4vwAFCOOuDvnsgFNcjtsGUrdhqzvwc9T3/sYN/pjpd35T0s1ZKF0"
        );
        assert_eq!(
            encode_sha512(&sha_crypt::<Sha512>(b"", b"s", 10000)),
            "uRmnh1xFD/hsDNo/ekfXRoe8JrtucgmXBz4fWUqshJHpypOKtqfdW9g6tsfpzisMXtggmpT0nExhZAy0CSEpQ."
        );
        assert_eq!(md5_crypt(b"secret", b"abcdefgh"), "cHJi5PXp/ki/ktXzqlk6I1");
        // Ansible's default rounds, through the filter.
        let hash = |v: &str, t: &str, s: &str| {
            password_hash(
                Value::from(v),
                Rest(vec![Value::from(t), Value::from(s)]),
                Kwargs::from_iter(Vec::<(&str, Value)>::new()),
            )
            .ok()
        };
        assert_eq!(
            hash("secret", "sha512", "saltsalt").as_deref(),
            Some(
                "$6$rounds=656000$saltsalt$Vg7us3Hcq8rplCTNjwvGRwObM2xyfDZZ.XP2YLQ.ii85wAq/psu28uEfoMveNszsQWMgkWRxbZm2mBBlNn3.J0"
            )
        );
        assert_eq!(
            hash("secret", "sha256", "somesalt").as_deref(),
            Some("$5$rounds=535000$somesalt$4F9zI6qaFX1ii/U5MYVLpLseNM8Unv2sS/OT/F2/iI2")
        );
    }
}
