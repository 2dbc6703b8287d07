//! Space epoch keys: a fresh random AES-256 key whenever membership changes, wrapped for each
//! member device with HPKE (RFC 9180, base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//! AES-256-GCM) and signed by the device that made the envelope.

use crate::{CryptoError, DeviceIdentity, random_bytes, verify_signature};
use cairn_proto::{AgreeKey, DeviceId, KeyEnvelope, SpaceId, sign};
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use std::collections::BTreeMap;
use std::fmt;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type HpkeAead = hpke::aead::AesGcm256;

/// Length of an X25519 encapsulated key.
const ENCAPPED_LEN: usize = 32;

/// A space's key for one epoch. Wiped on drop, compared in constant time, never printed.
#[derive(Clone)]
pub struct EpochKey(Zeroizing<[u8; 32]>);

impl EpochKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        EpochKey(random_bytes::<32>())
    }

    /// From stored bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        EpochKey(Zeroizing::new(bytes))
    }

    /// The raw key, for storage by a [`KeyStore`].
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl PartialEq for EpochKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&*other.0).into()
    }
}
impl Eq for EpochKey {}

impl fmt::Debug for EpochKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EpochKey(<redacted>)")
    }
}

fn hpke_info(space: &SpaceId, epoch: u64, recipient: &DeviceId) -> Vec<u8> {
    cairn_proto::encode(&("cairn/epoch-key/v1", space, epoch, recipient))
}

/// Wraps `key` for one recipient device and signs the envelope as `creator`.
pub fn wrap_epoch_key(
    creator: &DeviceIdentity,
    space: SpaceId,
    epoch: u64,
    recipient: &DeviceId,
    recipient_agree: &AgreeKey,
    key: &EpochKey,
) -> Result<KeyEnvelope, CryptoError> {
    let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(&recipient_agree.0)
        .map_err(|_| CryptoError::BadPublicKey)?;
    let info = hpke_info(&space, epoch, recipient);
    let (encapped, sealed) = hpke::single_shot_seal::<HpkeAead, Kdf, Kem>(
        &OpModeS::Base,
        &pk,
        &info,
        key.as_bytes(),
        creator.id().0.as_slice(),
    )
    .map_err(|_| CryptoError::BadPublicKey)?;
    let mut wrapped = encapped.to_bytes().to_vec();
    wrapped.extend_from_slice(&sealed);
    let creator_id = creator.id();
    let signature =
        creator.sign(&sign::envelope_payload(&space, epoch, recipient, &creator_id, &wrapped));
    Ok(KeyEnvelope { space, epoch, recipient: *recipient, creator: creator_id, wrapped, signature })
}

/// Verifies the envelope's signature and unwraps the key with this device's secret. The
/// caller checks that `envelope.creator` is a device it trusts for that space (a member
/// device, by the verified membership log).
pub fn unwrap_epoch_key(
    me: &DeviceIdentity,
    envelope: &KeyEnvelope,
) -> Result<EpochKey, CryptoError> {
    if envelope.recipient != me.id() {
        return Err(CryptoError::malformed("key envelope", "wrapped for another device"));
    }
    verify_signature(
        &envelope.creator,
        &sign::envelope_payload(
            &envelope.space,
            envelope.epoch,
            &envelope.recipient,
            &envelope.creator,
            &envelope.wrapped,
        ),
        &envelope.signature,
    )?;
    if envelope.wrapped.len() < ENCAPPED_LEN {
        return Err(CryptoError::malformed("key envelope", "too short"));
    }
    let (encapped, sealed) = envelope.wrapped.split_at(ENCAPPED_LEN);
    let encapped = <Kem as hpke::Kem>::EncappedKey::from_bytes(encapped)
        .map_err(|_| CryptoError::malformed("key envelope", "bad encapsulated key"))?;
    let sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(me.agree_secret().as_slice())
        .map_err(|_| CryptoError::BadPublicKey)?;
    let info = hpke_info(&envelope.space, envelope.epoch, &envelope.recipient);
    let plain = Zeroizing::new(
        hpke::single_shot_open::<HpkeAead, Kdf, Kem>(
            &OpModeR::Base,
            &sk,
            &encapped,
            &info,
            sealed,
            envelope.creator.0.as_slice(),
        )
        .map_err(|_| CryptoError::DecryptFailed)?,
    );
    let bytes: [u8; 32] = plain
        .as_slice()
        .try_into()
        .map_err(|_| CryptoError::malformed("key envelope", "key is not 32 bytes"))?;
    Ok(EpochKey::from_bytes(bytes))
}

/// Where a device keeps the epoch keys it holds. The client crate stores them in SQLite;
/// [`MemoryKeyStore`] serves tests and short-lived tools.
pub trait KeyStore {
    type Error: std::error::Error + Send + Sync + 'static;
    fn put_epoch_key(
        &mut self,
        space: SpaceId,
        epoch: u64,
        key: &EpochKey,
    ) -> Result<(), Self::Error>;
    fn epoch_key(&self, space: SpaceId, epoch: u64) -> Result<Option<EpochKey>, Self::Error>;
    /// The newest epoch this device holds a key for.
    fn latest_epoch(&self, space: SpaceId) -> Result<Option<u64>, Self::Error>;
}

/// Keys in memory only.
#[derive(Default, Debug)]
pub struct MemoryKeyStore {
    keys: BTreeMap<(SpaceId, u64), EpochKey>,
}

impl KeyStore for MemoryKeyStore {
    type Error = std::convert::Infallible;
    fn put_epoch_key(
        &mut self,
        space: SpaceId,
        epoch: u64,
        key: &EpochKey,
    ) -> Result<(), Self::Error> {
        self.keys.insert((space, epoch), key.clone());
        Ok(())
    }
    fn epoch_key(&self, space: SpaceId, epoch: u64) -> Result<Option<EpochKey>, Self::Error> {
        Ok(self.keys.get(&(space, epoch)).cloned())
    }
    fn latest_epoch(&self, space: SpaceId) -> Result<Option<u64>, Self::Error> {
        Ok(self.keys.range((space, 0)..=(space, u64::MAX)).next_back().map(|((_, e), _)| *e))
    }
}
