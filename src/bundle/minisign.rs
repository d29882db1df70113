//! The minisign formats: public keys, signatures, and signing and verifying with them.
//!
//! A public key file is `untrusted comment: …` then `base64("Ed" ‖ keynum[8] ‖ pk[32])`.
//! A signature file has four lines: an untrusted comment, `base64(alg[2] ‖ keynum[8] ‖
//! sig[64])`, `trusted comment: <text>`, and `base64(global_sig[64])` where the global
//! signature covers `sig ‖ text`, so the trusted comment cannot be changed without the key.
//! `alg` is `ED` (the message signed is BLAKE2b-512 of the file, minisign's default) or the
//! legacy `Ed` (the raw file), refused unless the caller allows it.
//!
//! Everything parsed here may come from an attacker: lengths are checked before decoding,
//! and errors say what is wrong without echoing key material.

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use blake2::{Blake2b512, Digest};
use ed25519_dalek::{Signature as EdSignature, SigningKey, VerifyingKey};

/// The only key algorithm minisign has.
pub const KEY_ALG: [u8; 2] = *b"Ed";
/// Pre-hashed signatures (BLAKE2b-512 of the message): minisign's default.
pub const SIG_ALG_PREHASHED: [u8; 2] = *b"ED";
/// Legacy signatures over the raw message.
pub const SIG_ALG_LEGACY: [u8; 2] = *b"Ed";
/// minisign refuses trusted comments longer than this.
pub const MAX_TRUSTED_COMMENT: usize = 8192;
/// A signature file is four short lines; anything much longer is not one.
const MAX_SIGNATURE_FILE: usize = 2 * MAX_TRUSTED_COMMENT + 1024;
const MAX_PUBLIC_KEY_FILE: usize = 4096;

/// The 8 random bytes naming a key pair, shown as 16 hex digits (little-endian u64, as
/// minisign prints it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyId(pub [u8; 8]);

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016X}", u64::from_le_bytes(self.0))
    }
}

/// A minisign public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    /// The 8-byte key id.
    pub id: KeyId,
    /// The Ed25519 verifying key.
    pub key: VerifyingKey,
}

/// Lines of a text file, without their `\n` or `\r\n`.
fn lines(text: &str) -> Vec<&str> {
    text.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect()
}

fn b64_exact<const N: usize>(line: &str, what: &str) -> Result<[u8; N]> {
    let line = line.trim();
    // Base64 of N bytes is exactly this long; checking first bounds the decoder's work.
    let want = N.div_ceil(3) * 4;
    ensure!(
        line.len() == want,
        "{what}: expected {want} base64 characters, found {}",
        line.len()
    );
    let bytes = B64
        .decode(line)
        .map_err(|e| anyhow::anyhow!("{what}: invalid base64 ({e})"))?;
    bytes
        .try_into()
        .map_err(|v: Vec<u8>| anyhow::anyhow!("{what}: decodes to {} bytes, not {N}", v.len()))
}

impl PublicKey {
    /// Parses the base64 line of a public key (`-P` on minisign's command line).
    pub fn from_base64(line: &str) -> Result<PublicKey> {
        let raw: [u8; 42] = b64_exact(line, "public key")?;
        ensure!(
            raw[..2] == KEY_ALG,
            "public key: unsupported algorithm {:?} (minisign keys start with \"Ed\")",
            String::from_utf8_lossy(&raw[..2])
        );
        let id = KeyId(raw[2..10].try_into().context("key id")?);
        let pk: [u8; 32] = raw[10..].try_into().context("public key bytes")?;
        let key = VerifyingKey::from_bytes(&pk)
            .map_err(|_| anyhow::anyhow!("public key: not a valid Ed25519 point"))?;
        Ok(PublicKey { id, key })
    }

    /// Parses a public key file (an untrusted comment line, then the base64 line). A file
    /// holding only the base64 line is accepted too.
    pub fn parse(text: &str) -> Result<PublicKey> {
        ensure!(
            text.len() <= MAX_PUBLIC_KEY_FILE,
            "public key file is {} bytes: too long to be one",
            text.len()
        );
        let ls: Vec<&str> = lines(text)
            .into_iter()
            .filter(|l| !l.trim().is_empty())
            .collect();
        match ls.as_slice() {
            [key] => PublicKey::from_base64(key),
            [comment, key] => {
                ensure!(
                    comment.starts_with("untrusted comment:"),
                    "public key file: the first line must start with \"untrusted comment:\""
                );
                PublicKey::from_base64(key)
            }
            _ => bail!(
                "public key file: expected an untrusted comment and one base64 line, found {} lines",
                ls.len()
            ),
        }
    }

    /// The key's base64 line, as in a `.pub` file.
    pub fn to_base64(&self) -> String {
        let mut raw = Vec::with_capacity(42);
        raw.extend_from_slice(&KEY_ALG);
        raw.extend_from_slice(&self.id.0);
        raw.extend_from_slice(self.key.as_bytes());
        B64.encode(raw)
    }

    /// The public key file, as minisign writes it.
    pub fn to_file_text(&self) -> String {
        format!(
            "untrusted comment: minisign public key {}\n{}\n",
            self.id,
            self.to_base64()
        )
    }

    /// Checks a signature of `message`: key id, the signature over the (pre-hashed)
    /// message, then the global signature over the trusted comment.
    pub fn verify(&self, message: &[u8], sig: &Signature, allow_legacy: bool) -> Result<()> {
        ensure!(
            sig.key_id == self.id,
            "signature was made by key {} but the public key is {}",
            sig.key_id,
            self.id
        );
        let signed = match sig.alg {
            SIG_ALG_PREHASHED => Blake2b512::digest(message).to_vec(),
            SIG_ALG_LEGACY if allow_legacy => message.to_vec(),
            SIG_ALG_LEGACY => {
                bail!("legacy (non-prehashed) signature refused: re-sign with a current minisign")
            }
            other => bail!(
                "unknown signature algorithm {:?}",
                String::from_utf8_lossy(&other)
            ),
        };
        self.key
            .verify_strict(&signed, &EdSignature::from_bytes(&sig.signature))
            .map_err(|_| anyhow::anyhow!("signature does not match the signed file"))?;
        let mut global = sig.signature.to_vec();
        global.extend_from_slice(sig.trusted_comment.as_bytes());
        self.key
            .verify_strict(&global, &EdSignature::from_bytes(&sig.global_signature))
            .map_err(|_| anyhow::anyhow!("the trusted comment's signature does not match"))?;
        Ok(())
    }
}

/// A parsed `.minisig` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    /// The first line's text after `untrusted comment: ` (not signed).
    pub untrusted_comment: String,
    /// Signature algorithm: `ED` (BLAKE2b-prehashed) or `Ed` (legacy).
    pub alg: [u8; 2],
    /// Id of the key that signed.
    pub key_id: KeyId,
    /// Ed25519 signature of the file (or its hash).
    pub signature: [u8; 64],
    /// The text after `trusted comment: ` (covered by the global signature).
    pub trusted_comment: String,
    /// Ed25519 signature of the signature and the trusted comment.
    pub global_signature: [u8; 64],
}

impl Signature {
    /// Parses a `.minisig` file's text (four lines).
    pub fn parse(text: &str) -> Result<Signature> {
        ensure!(
            text.len() <= MAX_SIGNATURE_FILE,
            "signature file is {} bytes: too long to be one",
            text.len()
        );
        let mut ls = lines(text);
        if ls.last() == Some(&"") {
            ls.pop();
        }
        let [untrusted, sig, trusted, global] = ls.as_slice() else {
            bail!("signature file: expected 4 lines, found {}", ls.len());
        };
        let untrusted_comment = untrusted
            .strip_prefix("untrusted comment:")
            .context("signature file: line 1 must start with \"untrusted comment:\"")?
            .trim_start()
            .to_string();
        let raw: [u8; 74] = b64_exact(sig, "signature")?;
        let trusted_comment = trusted
            .strip_prefix("trusted comment: ")
            .context("signature file: line 3 must start with \"trusted comment: \"")?
            .to_string();
        ensure!(
            trusted_comment.len() <= MAX_TRUSTED_COMMENT,
            "signature file: trusted comment longer than {MAX_TRUSTED_COMMENT} bytes"
        );
        let global_signature: [u8; 64] = b64_exact(global, "global signature")?;
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&raw[10..]);
        let mut id = [0u8; 8];
        id.copy_from_slice(&raw[2..10]);
        Ok(Signature {
            untrusted_comment,
            alg: [raw[0], raw[1]],
            key_id: KeyId(id),
            signature,
            trusted_comment,
            global_signature,
        })
    }

    /// The `.minisig` file's text, four lines.
    pub fn to_file_text(&self) -> String {
        let mut raw = Vec::with_capacity(74);
        raw.extend_from_slice(&self.alg);
        raw.extend_from_slice(&self.key_id.0);
        raw.extend_from_slice(&self.signature);
        format!(
            "untrusted comment: {}\n{}\ntrusted comment: {}\n{}\n",
            self.untrusted_comment,
            B64.encode(raw),
            self.trusted_comment,
            B64.encode(self.global_signature)
        )
    }
}

/// A key pair that signs (the secret half is never printed: `Debug` shows the id only).
pub struct SecretKey {
    /// The 8-byte key id, shared with the public key.
    pub id: KeyId,
    pub(crate) signing: SigningKey,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey {{ id: {}, .. }}", self.id)
    }
}

impl SecretKey {
    /// A key pair from a 32-byte Ed25519 seed and a key id.
    pub fn from_seed(seed: &[u8; 32], id: KeyId) -> SecretKey {
        SecretKey {
            id,
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// A fresh key pair from the operating system's random number generator.
    pub fn generate() -> Result<SecretKey> {
        let mut seed = [0u8; 32];
        let mut id = [0u8; 8];
        getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("OS random generator: {e}"))?;
        getrandom::fill(&mut id).map_err(|e| anyhow::anyhow!("OS random generator: {e}"))?;
        let key = SecretKey::from_seed(&seed, KeyId(id));
        seed.fill(0);
        Ok(key)
    }

    /// The public half, to verify with.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            id: self.id,
            key: self.signing.verifying_key(),
        }
    }

    /// A pre-hashed (`ED`) signature. Ed25519 is deterministic, so the same message,
    /// comments and key give the same bytes.
    pub fn sign(
        &self,
        message: &[u8],
        trusted_comment: &str,
        untrusted_comment: &str,
    ) -> Result<Signature> {
        use ed25519_dalek::Signer;
        ensure!(
            trusted_comment.len() <= MAX_TRUSTED_COMMENT && !trusted_comment.contains(['\n', '\r']),
            "a trusted comment is one line of at most {MAX_TRUSTED_COMMENT} bytes"
        );
        ensure!(
            !untrusted_comment.contains(['\n', '\r']),
            "an untrusted comment is one line"
        );
        let signature = self.signing.sign(&Blake2b512::digest(message)).to_bytes();
        let mut global = signature.to_vec();
        global.extend_from_slice(trusted_comment.as_bytes());
        let global_signature = self.signing.sign(&global).to_bytes();
        Ok(Signature {
            untrusted_comment: untrusted_comment.to_string(),
            alg: SIG_ALG_PREHASHED,
            key_id: self.id,
            signature,
            trusted_comment: trusted_comment.to_string(),
            global_signature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretKey {
        SecretKey::from_seed(&[7u8; 32], KeyId(*b"\x01\x02\x03\x04\x05\x06\x07\x08"))
    }

    #[test]
    fn signatures_round_trip_and_bind_message_and_comment() {
        let k = key();
        let pk = k.public_key();
        let sig = k.sign(b"hello", "file:x", "made in a test").unwrap();
        let parsed = Signature::parse(&sig.to_file_text()).unwrap();
        assert_eq!(parsed, sig);
        pk.verify(b"hello", &parsed, false).unwrap();
        assert!(pk.verify(b"hellO", &parsed, false).is_err());
        let mut edited = parsed.clone();
        edited.trusted_comment = "file:y".into();
        let e = pk.verify(b"hello", &edited, false).unwrap_err();
        assert!(e.to_string().contains("trusted comment"), "{e}");
        // Deterministic: the same inputs give the same file.
        assert_eq!(
            k.sign(b"hello", "file:x", "made in a test")
                .unwrap()
                .to_file_text(),
            sig.to_file_text()
        );
    }

    #[test]
    fn key_id_prints_as_minisign_does() {
        assert_eq!(key().id.to_string(), "0807060504030201");
        let pk = key().public_key();
        assert_eq!(PublicKey::parse(&pk.to_file_text()).unwrap(), pk);
        assert_eq!(PublicKey::parse(&pk.to_base64()).unwrap(), pk);
        assert!(
            pk.to_file_text()
                .starts_with("untrusted comment: minisign public key 0807060504030201\n")
        );
    }

    #[test]
    fn wrong_key_and_legacy_are_refused() {
        let k = key();
        let other = SecretKey::from_seed(&[9u8; 32], KeyId([9; 8]));
        let sig = k.sign(b"m", "c", "u").unwrap();
        let e = other.public_key().verify(b"m", &sig, false).unwrap_err();
        assert!(e.to_string().contains("made by key"), "{e}");
        // Same id, different key: the signature itself fails.
        let impostor = SecretKey::from_seed(&[9u8; 32], k.id);
        assert!(impostor.public_key().verify(b"m", &sig, false).is_err());
        let mut legacy = sig.clone();
        legacy.alg = SIG_ALG_LEGACY;
        let e = k.public_key().verify(b"m", &legacy, false).unwrap_err();
        assert!(e.to_string().contains("legacy"), "{e}");
    }

    #[test]
    fn hostile_files_are_errors() {
        for text in [
            "",
            "untrusted comment: x\n",
            "untrusted comment: x\nAAAA\ntrusted comment: t\nAAAA\n",
            "a\nb\nc\nd\ne\nf\n",
            &"x".repeat(100_000),
        ] {
            assert!(Signature::parse(text).is_err(), "{text:?}");
            assert!(PublicKey::parse(text).is_err(), "{text:?}");
        }
        assert!(PublicKey::from_base64(&"A".repeat(56)).is_err()); // "\0\0" algorithm
    }
}
