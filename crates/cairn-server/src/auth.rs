//! Signature checks and session tokens. Tokens are `hex(payload).hex(tag)` where payload is
//! CBOR `[handle, device, expires_at]` and tag is HMAC-SHA256 under a secret kept in the
//! database, so every node sharing the database accepts them and no session table is written.

use crate::error::{Result, ServerError};
use cairn_proto::{DeviceId, ErrorCode, Handle, Signature};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Verifies an Ed25519 signature strictly.
pub fn verify(device: &DeviceId, payload: &[u8], signature: &Signature) -> Result<()> {
    verify_with(&device_key(device)?, payload, signature)
}

/// A device's public key, decompressed (a connection keeps its caller's, so that each post
/// it signs is checked without decompressing the key again).
pub fn device_key(device: &DeviceId) -> Result<ed25519_dalek::VerifyingKey> {
    ed25519_dalek::VerifyingKey::from_bytes(&device.0)
        .map_err(|_| ServerError::code(ErrorCode::BadSignature, "invalid device key"))
}

/// Verifies an Ed25519 signature strictly under a decompressed key.
pub fn verify_with(
    key: &ed25519_dalek::VerifyingKey,
    payload: &[u8],
    signature: &Signature,
) -> Result<()> {
    key.verify_strict(payload, &ed25519_dalek::Signature::from_bytes(&signature.0))
        .map_err(|_| ServerError::code(ErrorCode::BadSignature, "signature does not verify"))
}

/// What a valid token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenClaims {
    pub handle: Handle,
    pub device: DeviceId,
    pub expires_at: u64,
}

pub struct TokenKey([u8; 32]);

impl TokenKey {
    pub fn new(secret: [u8; 32]) -> Self {
        TokenKey(secret)
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length")
    }

    pub fn issue(&self, claims: &TokenClaims) -> String {
        let payload = cairn_proto::encode(&(&claims.handle, &claims.device, claims.expires_at));
        let mut mac = self.mac();
        mac.update(&payload);
        let tag = mac.finalize().into_bytes();
        format!("{}.{}", hex::encode(&payload), hex::encode(tag))
    }

    /// Checks the tag (in constant time) and the expiry.
    pub fn check(&self, token: &str, now: u64) -> Option<TokenClaims> {
        let (payload, tag) = token.split_once('.')?;
        if payload.len() > 512 {
            return None;
        }
        let payload = hex::decode(payload).ok()?;
        let tag = hex::decode(tag).ok()?;
        let mut mac = self.mac();
        mac.update(&payload);
        mac.verify_slice(&tag).ok()?;
        let (handle, device, expires_at): (Handle, DeviceId, u64) =
            cairn_proto::decode(&payload).ok()?;
        (expires_at > now).then_some(TokenClaims { handle, device, expires_at })
    }
}

/// A fresh random 32-byte value.
pub fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the operating system's RNG is unavailable");
    b
}
