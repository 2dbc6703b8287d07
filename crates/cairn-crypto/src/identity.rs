//! A device's two key pairs, its stable serialization, signatures and safety codes.

use crate::{CryptoError, random_bytes, sha256};
use cairn_proto::{AgreeKey, DeviceId, DeviceKeys, DeviceRecord, Handle, Signature, sign};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::fmt;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, Zeroizing};

/// A device's secret keys: Ed25519 for signing, X25519 for receiving wrapped space keys.
/// Both are wiped from memory on drop (the dalek types zeroize themselves).
pub struct DeviceIdentity {
    signing: SigningKey,
    agree: StaticSecret,
}

impl fmt::Debug for DeviceIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceIdentity").field("device", &self.id()).finish_non_exhaustive()
    }
}

/// The stable serialized form: CBOR `{"v": 1, "sign": bytes(32), "agree": bytes(32)}`.
#[derive(Serialize, Deserialize, Zeroize)]
#[zeroize(drop)]
struct StoredIdentity {
    v: u8,
    #[serde(with = "serde_bytes")]
    sign: [u8; 32],
    #[serde(with = "serde_bytes")]
    agree: [u8; 32],
}

impl DeviceIdentity {
    /// Fresh keys from the operating system's RNG.
    pub fn generate() -> Self {
        Self::from_secrets(&random_bytes::<32>(), &random_bytes::<32>())
    }

    /// From the two secret keys: an Ed25519 seed and an X25519 secret (known-answer tests,
    /// docs/vectors).
    pub fn from_secrets(sign: &[u8; 32], agree: &[u8; 32]) -> Self {
        DeviceIdentity { signing: SigningKey::from_bytes(sign), agree: StaticSecret::from(*agree) }
    }

    /// Serializes both secret keys (for the client's key store, which protects them).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let stored =
            StoredIdentity { v: 1, sign: self.signing.to_bytes(), agree: self.agree.to_bytes() };
        Zeroizing::new(cairn_proto::encode(&stored))
    }

    /// Reverses [`DeviceIdentity::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let stored: StoredIdentity =
            cairn_proto::decode(bytes).map_err(|e| CryptoError::malformed("identity", e))?;
        if stored.v != 1 {
            return Err(CryptoError::malformed("identity", "unknown version"));
        }
        Ok(Self::from_secrets(&stored.sign, &stored.agree))
    }

    /// The device id (Ed25519 public key).
    pub fn id(&self) -> DeviceId {
        DeviceId(self.signing.verifying_key().to_bytes())
    }

    /// Both public keys.
    pub fn keys(&self) -> DeviceKeys {
        DeviceKeys { sign: self.id(), agree: AgreeKey(PublicKey::from(&self.agree).to_bytes()) }
    }

    /// Signs `payload` (one of `cairn_proto::sign`'s payloads).
    pub fn sign(&self, payload: &[u8]) -> Signature {
        Signature(self.signing.sign(payload).to_bytes())
    }

    /// The X25519 secret, as bytes for HPKE.
    pub(crate) fn agree_secret(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.agree.to_bytes())
    }
}

/// Verifies an Ed25519 signature strictly (no malleable or small-order keys/signatures).
pub fn verify_signature(
    device: &DeviceId,
    payload: &[u8],
    signature: &Signature,
) -> Result<(), CryptoError> {
    let key = VerifyingKey::from_bytes(&device.0).map_err(|_| CryptoError::BadPublicKey)?;
    let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
    key.verify_strict(payload, &sig).map_err(|_| CryptoError::BadSignature)
}

/// Checks a user's device list as the server returned it: the first device signed itself,
/// each later one was signed by a device listed before it. Returns the devices that are
/// not revoked.
pub fn verify_device_list(
    handle: &Handle,
    records: &[DeviceRecord],
) -> Result<Vec<DeviceKeys>, CryptoError> {
    let first = records.first().ok_or(CryptoError::DeviceList("empty"))?;
    if first.added_by.is_some() {
        return Err(CryptoError::DeviceList("the first device must sign itself"));
    }
    for (i, record) in records.iter().enumerate() {
        let signer = match record.added_by {
            None if i == 0 => record.keys.sign,
            None => return Err(CryptoError::DeviceList("only the first device signs itself")),
            Some(by) => {
                if !records[..i].iter().any(|r| r.keys.sign == by) {
                    return Err(CryptoError::DeviceList("signed by a device not listed before"));
                }
                by
            }
        };
        verify_signature(
            &signer,
            &sign::add_device_payload(handle, &record.keys),
            &record.signature,
        )?;
    }
    Ok(records.iter().filter(|r| !r.revoked).map(|r| r.keys).collect())
}

/// A short code two people compare out of band to be sure they see the same devices for
/// a user: SHA-256 over the sorted public keys, shown as six groups of five digits.
pub fn safety_code(handle: &Handle, devices: &[DeviceKeys]) -> String {
    let mut keys: Vec<&DeviceKeys> = devices.iter().collect();
    keys.sort_by_key(|k| k.sign);
    let mut input = b"cairn/safety-code/v1".to_vec();
    input.extend_from_slice(handle.as_bytes());
    input.push(0);
    for k in keys {
        input.extend_from_slice(&k.sign.0);
        input.extend_from_slice(&k.agree.0);
    }
    let digest = sha256(&input);
    digest
        .chunks(5)
        .take(6)
        .map(|c| {
            let n = c.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            format!("{:05}", n % 100_000)
        })
        .collect::<Vec<_>>()
        .join(" ")
}
