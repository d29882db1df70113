//! minisign secret key files: read (plain or password-protected, as `minisign -G` writes
//! them) and written (by `audit keygen`).
//!
//! The file is `untrusted comment: …` then `base64("Ed" ‖ kdf ‖ "B2" ‖ salt[32] ‖
//! opslimit u64le ‖ memlimit u64le ‖ keynum[8] ‖ sk[64] ‖ chk[32])`, where `sk` is the
//! Ed25519 seed followed by the public key and `chk = BLAKE2b-256("Ed" ‖ keynum ‖ sk)`.
//! `kdf` is `\0\0` for a key without a password, or `Sc`: then the last 104 bytes are XORed
//! with scrypt(password, salt) output, with scrypt's N, r, p derived from opslimit and
//! memlimit exactly as libsodium's `crypto_pwhash_scryptsalsa208sha256` does.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use blake2::{Blake2b256, Digest};
use ed25519_dalek::SigningKey;

use super::minisign::{KEY_ALG, KeyId, SecretKey};

const KDF_NONE: [u8; 2] = [0, 0];
const KDF_SCRYPT: [u8; 2] = *b"Sc";
const CHK_ALG: [u8; 2] = *b"B2";
const FILE_BYTES: usize = 2 + 2 + 2 + 32 + 8 + 8 + 104;
/// scrypt work a key file may ask for; more is refused rather than attempted (a hostile
/// file could otherwise ask for terabytes). minisign's own default needs 1 GiB.
const MAX_SCRYPT_MEMORY: u64 = 4 << 30;
const MAX_SCRYPT_P: u32 = 64;

/// libsodium's opslimit and memlimit, stored in the key file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// scrypt's operations limit (libsodium `opslimit`).
    pub opslimit: u64,
    /// scrypt's memory limit in bytes (libsodium `memlimit`).
    pub memlimit: u64,
}

impl KdfParams {
    /// What `minisign -G` uses (libsodium's "sensitive" limits: 1 GiB, about 3 s).
    pub const MINISIGN: KdfParams = KdfParams {
        opslimit: 33_554_432,
        memlimit: 1_073_741_824,
    };
}

/// scrypt's (log2 N, r, p) for libsodium's opslimit and memlimit (`pickparams`).
pub fn scrypt_params(kdf: KdfParams) -> Result<(u8, u32, u32)> {
    let ops = kdf.opslimit.max(32_768);
    let r: u64 = 8;
    let log2_above =
        |max_n: u64| -> u8 { (1u8..63).find(|&n| (1u64 << n) > max_n / 2).unwrap_or(63) };
    let (log_n, p) = if ops < kdf.memlimit / 32 {
        (log2_above(ops / (r * 4)), 1u64)
    } else {
        let log_n = log2_above(kdf.memlimit / (r * 128));
        let max_rp = ((ops / 4) >> log_n).min(0x3fff_ffff);
        (log_n, max_rp / r)
    };
    let memory = (128 * r).checked_shl(u32::from(log_n)).unwrap_or(u64::MAX);
    ensure!(
        memory <= MAX_SCRYPT_MEMORY && p >= 1 && p <= u64::from(MAX_SCRYPT_P),
        "secret key file asks for scrypt with N = 2^{log_n}, r = {r}, p = {p} ({memory} bytes): refused"
    );
    Ok((log_n, r as u32, p as u32))
}

fn scrypt_stream(password: &[u8], salt: &[u8; 32], kdf: KdfParams) -> Result<[u8; 104]> {
    let (log_n, r, p) = scrypt_params(kdf)?;
    let params =
        scrypt::Params::new(log_n, r, p).map_err(|e| anyhow::anyhow!("scrypt parameters: {e}"))?;
    let mut out = [0u8; 104];
    scrypt::scrypt(password, salt, &params, &mut out)
        .map_err(|e| anyhow::anyhow!("scrypt: {e}"))?;
    Ok(out)
}

fn checksum(id: &KeyId, sk: &[u8; 64]) -> [u8; 32] {
    let mut h = Blake2b256::new();
    h.update(KEY_ALG);
    h.update(id.0);
    h.update(sk);
    h.finalize().into()
}

fn base64_line(text: &str) -> Result<&str> {
    ensure!(
        text.len() <= 4096,
        "secret key file is {} bytes: too long to be one",
        text.len()
    );
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    match lines.as_slice() {
        [c, key] if c.starts_with("untrusted comment:") => Ok(key),
        [key] => Ok(key),
        _ => bail!("secret key file: expected an untrusted comment and one base64 line"),
    }
}

fn decode_raw(text: &str) -> Result<Vec<u8>> {
    let line = base64_line(text)?;
    let raw = B64
        .decode(line)
        .map_err(|_| anyhow::anyhow!("secret key file: the key line is not valid base64"))?;
    ensure!(
        raw.len() == FILE_BYTES,
        "secret key file: decodes to {} bytes, not {FILE_BYTES}",
        raw.len()
    );
    ensure!(
        raw[..2] == KEY_ALG && raw[4..6] == CHK_ALG,
        "secret key file: not a minisign Ed25519 key"
    );
    Ok(raw)
}

/// Whether a secret key file needs a password.
pub fn is_encrypted(text: &str) -> Result<bool> {
    let raw = decode_raw(text)?;
    match [raw[2], raw[3]] {
        KDF_NONE => Ok(false),
        KDF_SCRYPT => Ok(true),
        _ => bail!("secret key file: unknown key derivation algorithm"),
    }
}

/// Reads a secret key file. A password-protected key needs `password`; a wrong password
/// shows as a checksum mismatch, as in minisign.
pub fn decode(text: &str, password: Option<&[u8]>) -> Result<SecretKey> {
    let mut raw = decode_raw(text)?;
    let salt: [u8; 32] = raw[6..38].try_into().context("salt")?;
    let kdf = KdfParams {
        opslimit: u64::from_le_bytes(raw[38..46].try_into().context("opslimit")?),
        memlimit: u64::from_le_bytes(raw[46..54].try_into().context("memlimit")?),
    };
    let encrypted = match [raw[2], raw[3]] {
        KDF_NONE => false,
        KDF_SCRYPT => {
            let password = password.context(
                "the secret key is password-protected: give the password (--password-file)",
            )?;
            let stream = scrypt_stream(password, &salt, kdf)?;
            for (b, s) in raw[54..].iter_mut().zip(stream) {
                *b ^= s;
            }
            true
        }
        _ => bail!("secret key file: unknown key derivation algorithm"),
    };
    let id = KeyId(raw[54..62].try_into().context("key id")?);
    let mut sk: [u8; 64] = raw[62..126].try_into().context("secret key")?;
    let chk: [u8; 32] = raw[126..158].try_into().context("checksum")?;
    raw.fill(0);
    // minisign 0.11 writes an all-zero checksum for keys without a password (and checks it
    // only after decryption); the public half is still checked against the seed below.
    let unchecked = !encrypted && chk == [0u8; 32];
    let checksum_ok = unchecked || checksum(&id, &sk) == chk;
    let signing = SigningKey::from_keypair_bytes(&sk);
    sk.fill(0);
    if !checksum_ok {
        bail!("secret key checksum mismatch: wrong password, or a damaged key file");
    }
    let signing =
        signing.map_err(|_| anyhow::anyhow!("secret key file: the public half does not match"))?;
    Ok(SecretKey { id, signing })
}

/// The secret key file text; with a password, encrypted as minisign does with `kdf`.
pub fn encode(key: &SecretKey, password: Option<(&[u8], KdfParams)>) -> Result<String> {
    let sk = key.signing.to_keypair_bytes();
    let mut tail = Vec::with_capacity(104);
    tail.extend_from_slice(&key.id.0);
    tail.extend_from_slice(&sk);
    tail.extend_from_slice(&checksum(&key.id, &sk));
    let mut raw = Vec::with_capacity(FILE_BYTES);
    raw.extend_from_slice(&KEY_ALG);
    let comment = match password {
        None => {
            raw.extend_from_slice(&KDF_NONE);
            raw.extend_from_slice(&CHK_ALG);
            raw.extend_from_slice(&[0u8; 48]);
            "minisign secret key (no password)"
        }
        Some((password, kdf)) => {
            let mut salt = [0u8; 32];
            getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("OS random generator: {e}"))?;
            let stream = scrypt_stream(password, &salt, kdf)?;
            for (b, s) in tail.iter_mut().zip(stream) {
                *b ^= s;
            }
            raw.extend_from_slice(&KDF_SCRYPT);
            raw.extend_from_slice(&CHK_ALG);
            raw.extend_from_slice(&salt);
            raw.extend_from_slice(&kdf.opslimit.to_le_bytes());
            raw.extend_from_slice(&kdf.memlimit.to_le_bytes());
            "minisign encrypted secret key"
        }
    };
    raw.extend_from_slice(&tail);
    let text = format!("untrusted comment: {comment}\n{}\n", B64.encode(&raw));
    raw.fill(0);
    tail.fill(0);
    Ok(text)
}

/// The warning due when a key file can be read by its group or others (None: it cannot).
pub fn readable_by_others_warning(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Some(format!(
                "warning: secret key {} is readable by other users (mode {mode:o}); chmod 600 it",
                path.display()
            ));
        }
    }
    let _ = path;
    None
}

/// Prints [`readable_by_others_warning`] on stderr.
pub fn warn_if_readable_by_others(path: &Path) {
    if let Some(w) = readable_by_others_warning(path) {
        eprintln!("{w}");
    }
}

/// The password in a file: its first line (without the line ending).
pub fn read_password_file(path: &Path) -> Result<Vec<u8>> {
    let bytes = crate::files::read_limited(path, crate::files::MAX_KEY_FILE_BYTES)
        .with_context(|| format!("reading password file {}", path.display()))?;
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    ensure!(
        !line.is_empty(),
        "password file {} is empty",
        path.display()
    );
    Ok(line.to_vec())
}

/// Loads a secret key file, warning when others can read it.
pub fn load(path: &Path, password_file: Option<&Path>) -> Result<SecretKey> {
    warn_if_readable_by_others(path);
    let text = crate::files::read_text_limited(path, crate::files::MAX_KEY_FILE_BYTES)
        .with_context(|| format!("reading secret key {}", path.display()))?;
    let mut password = password_file.map(read_password_file).transpose()?;
    let key = decode(&text, password.as_deref());
    if let Some(p) = password.as_mut() {
        p.fill(0);
    }
    key.with_context(|| format!("secret key {}", path.display()))
}

/// Writes `PREFIX.key` (mode 0600, never overwritten) and `PREFIX.pub`.
pub fn write_key_pair(
    key: &SecretKey,
    prefix: &Path,
    password: Option<(&[u8], KdfParams)>,
) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let with = |ext: &str| {
        let mut p = prefix.as_os_str().to_owned();
        p.push(ext);
        std::path::PathBuf::from(p)
    };
    let (key_path, pub_path) = (with(".key"), with(".pub"));
    // `symlink_metadata`: a dangling symlink exists too, and writing through it would create
    // a file wherever it points.
    for p in [&key_path, &pub_path] {
        ensure!(
            std::fs::symlink_metadata(p).is_err(),
            "{} exists (a file or a link): refusing to overwrite or write through it",
            p.display()
        );
    }
    let text = encode(key, password)?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&key_path)
        .with_context(|| format!("creating {}", key_path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", key_path.display()))?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&pub_path)
        .and_then(|mut f| f.write_all(key.public_key().to_file_text().as_bytes()))
        .with_context(|| format!("writing {}", pub_path.display()))?;
    Ok((key_path, pub_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfParams = KdfParams {
        opslimit: 1 << 16,
        memlimit: 1 << 20,
    };

    #[test]
    fn a_dangling_link_at_the_public_key_path_is_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere.pub");
        std::os::unix::fs::symlink(&target, dir.path().join("k.pub")).unwrap();
        let key = SecretKey::generate().unwrap();
        let e = write_key_pair(&key, &dir.path().join("k"), None).unwrap_err();
        assert!(e.to_string().contains("k.pub"), "{e}");
        assert!(!target.exists());
        assert!(!dir.path().join("k.key").exists());
    }

    #[test]
    fn libsodium_parameter_choice() {
        // minisign's defaults: N = 2^20, r = 8, p = 1 (1 GiB).
        assert_eq!(scrypt_params(KdfParams::MINISIGN).unwrap(), (20, 8, 1));
        // Interactive limits (opslimit 524288, memlimit 16 MiB): N = 2^14, r = 8, p = 1.
        let interactive = KdfParams {
            opslimit: 524_288,
            memlimit: 16_777_216,
        };
        assert_eq!(scrypt_params(interactive).unwrap(), (14, 8, 1));
        // A hostile file asking for far too much memory is refused, not attempted.
        let huge = KdfParams {
            opslimit: u64::MAX,
            memlimit: u64::MAX,
        };
        assert!(scrypt_params(huge).is_err());
    }

    #[test]
    fn plain_and_encrypted_keys_round_trip() {
        let k = SecretKey::from_seed(&[3u8; 32], KeyId([1; 8]));
        let plain = encode(&k, None).unwrap();
        assert!(!is_encrypted(&plain).unwrap());
        let back = decode(&plain, None).unwrap();
        assert_eq!(back.public_key(), k.public_key());
        let enc = encode(&k, Some((b"secret", FAST))).unwrap();
        assert!(is_encrypted(&enc).unwrap());
        assert_eq!(
            decode(&enc, Some(b"secret")).unwrap().public_key(),
            k.public_key()
        );
        let e = decode(&enc, Some(b"wrong")).unwrap_err();
        assert!(e.to_string().contains("wrong password"), "{e}");
        assert!(decode(&enc, None).is_err());
        // The key material never shows in Debug output.
        assert_eq!(
            format!("{back:?}"),
            "SecretKey { id: 0101010101010101, .. }"
        );
    }

    #[test]
    fn damaged_key_files_are_errors() {
        let k = SecretKey::from_seed(&[3u8; 32], KeyId([1; 8]));
        let plain = encode(&k, None).unwrap();
        let line = plain.lines().nth(1).unwrap();
        let mut raw = B64.decode(line).unwrap();
        raw[100] ^= 1;
        let damaged = format!("untrusted comment: x\n{}\n", B64.encode(&raw));
        assert!(decode(&damaged, None).is_err());
        for bad in [
            "",
            "untrusted comment: x\n!!!\n",
            "untrusted comment: x\nAAAA\n",
        ] {
            assert!(decode(bad, None).is_err());
        }
    }
}
