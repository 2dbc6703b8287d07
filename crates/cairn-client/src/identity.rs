//! The device identity at rest: in the local store, sealed under a key derived from a
//! passphrase (Argon2id) when the user sets one.

use crate::error::ClientError;
use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit};
use cairn_crypto::DeviceIdentity;
use zeroize::Zeroizing;

const PLAIN: u8 = 0;
const SEALED: u8 = 1;

fn passphrase_key(passphrase: &str, salt: &[u8]) -> Result<Zeroizing<[u8; 32]>, ClientError> {
    let mut key = Zeroizing::new([0u8; 32]);
    argon2::Argon2::default()
        .hash_password_into(passphrase.as_bytes(), salt, key.as_mut())
        .map_err(|e| ClientError::Keys(format!("passphrase: {e}")))?;
    Ok(key)
}

/// Serializes the identity for storage: `0 || keys`, or `1 || salt(16) || nonce(12) || sealed`.
pub fn seal_identity(
    identity: &DeviceIdentity,
    passphrase: Option<&str>,
) -> Result<Vec<u8>, ClientError> {
    let keys = identity.to_bytes();
    let Some(passphrase) = passphrase else {
        let mut out = vec![PLAIN];
        out.extend_from_slice(&keys);
        return Ok(out);
    };
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut salt).map_err(|e| ClientError::Keys(e.to_string()))?;
    getrandom::fill(&mut nonce).map_err(|e| ClientError::Keys(e.to_string()))?;
    let key = passphrase_key(passphrase, &salt)?;
    let cipher = Aes256Gcm::new_from_slice(key.as_slice()).expect("32-byte key");
    let sealed = cipher
        .encrypt(&nonce.into(), keys.as_slice())
        .map_err(|_| ClientError::Keys("sealing keys".into()))?;
    let mut out = vec![SEALED];
    out.extend_from_slice(&salt);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Reverses [`seal_identity`].
pub fn open_identity(
    stored: &[u8],
    passphrase: Option<&str>,
) -> Result<DeviceIdentity, ClientError> {
    match stored.split_first() {
        Some((&PLAIN, keys)) => Ok(DeviceIdentity::from_bytes(keys)?),
        Some((&SEALED, rest)) if rest.len() > 28 => {
            let passphrase = passphrase.ok_or_else(|| ClientError::PassphraseNeeded)?;
            let (salt, rest) = rest.split_at(16);
            let (nonce, sealed) = rest.split_at(12);
            let nonce: [u8; 12] = nonce.try_into().expect("split at 12");
            let key = passphrase_key(passphrase, salt)?;
            let cipher = Aes256Gcm::new_from_slice(key.as_slice()).expect("32-byte key");
            let keys = Zeroizing::new(
                cipher.decrypt(&nonce.into(), sealed).map_err(|_| ClientError::WrongPassphrase)?,
            );
            Ok(DeviceIdentity::from_bytes(&keys)?)
        }
        _ => Err(ClientError::DamagedKeys),
    }
}
