//! `audit keygen --out PREFIX (--password-file FILE | --no-password)`: a minisign-compatible
//! key pair. `PREFIX.key` is written with mode 0600 and never overwritten; the secret key
//! is never printed.

use anyhow::Result;

use crate::cli::KeygenArgs;
use weight_audit::bundle::SecretKey;
use weight_audit::bundle::seckey::{self, KdfParams};

pub fn run(args: &KeygenArgs) -> Result<()> {
    let password: Option<Vec<u8>> = args
        .password_file
        .as_deref()
        .map(seckey::read_password_file)
        .transpose()?;
    let key = SecretKey::generate()?;
    let (key_path, pub_path) = seckey::write_key_pair(
        &key,
        &args.out,
        password.as_deref().map(|p| (p, KdfParams::MINISIGN)),
    )?;
    if let Some(mut p) = password {
        p.fill(0);
    }
    let pk = key.public_key();
    println!(
        "secret key: {} ({}; keep it private)",
        key_path.display(),
        if args.password_file.is_some() {
            "password-protected"
        } else {
            "no password"
        }
    );
    println!("public key: {} (key id {})", pub_path.display(), pk.id);
    println!("publish the public key, e.g. as: {}", pk.to_base64());
    Ok(())
}
