//! Space epoch keys: a fresh random AES-256 key whenever membership changes, wrapped for each
//! member device with HPKE (RFC 9180, base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//! AES-256-GCM) and signed by the device that made the envelope.

use crate::{CryptoError, DeviceIdentity, random_bytes, verify_signature};
use cairn_proto::membership::SpaceState;
use cairn_proto::{AgreeKey, DeviceId, KeyConfirm, KeyEnvelope, SpaceId, sign};
use hkdf::Hkdf;
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use sha2::Sha256;
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

/// The confirmation value of an epoch key, carried in the signed op that starts the epoch:
/// `HKDF-SHA256(salt = "cairn/key-confirm/v1", ikm = key, info = space (16) || be64(epoch))`,
/// 32 bytes. It commits to the key without revealing it (HKDF is a PRF), so a reader can tell
/// the epoch's key from one planted in an envelope, whoever wrote the envelope.
pub fn key_confirmation(key: &EpochKey, space: &SpaceId, epoch: u64) -> KeyConfirm {
    let hk = Hkdf::<Sha256>::new(Some(b"cairn/key-confirm/v1"), key.as_bytes());
    let mut info = [0u8; 24];
    info[..16].copy_from_slice(&space.0);
    info[16..].copy_from_slice(&epoch.to_be_bytes());
    let mut out = [0u8; 32];
    hk.expand(&info, &mut out).expect("32 bytes is a valid HKDF-SHA256 length");
    KeyConfirm(out)
}

/// Whether `key` is the key of `epoch` in the verified log: the confirmation in the op that
/// started the epoch must match, compared in constant time.
pub fn check_epoch_key(state: &SpaceState, epoch: u64, key: &EpochKey) -> Result<(), CryptoError> {
    let start = state.epoch_start(epoch).ok_or(CryptoError::NoSuchEpoch(epoch))?;
    let computed = key_confirmation(key, &state.space, epoch);
    if bool::from(computed.0.ct_eq(&start.confirm.0)) {
        Ok(())
    } else {
        Err(CryptoError::KeyNotConfirmed(epoch))
    }
}

/// Opens an envelope wrapped for this device and accepts its key only if it is the key of
/// that epoch in the verified log ([`check_epoch_key`]). This is what a reader trusts: not
/// the envelope's creator, but the confirmation signed into the log.
pub fn accept_envelope(
    me: &DeviceIdentity,
    state: &SpaceState,
    envelope: &KeyEnvelope,
) -> Result<EpochKey, CryptoError> {
    if envelope.space != state.space {
        return Err(CryptoError::malformed("key envelope", "for another space"));
    }
    let key = unwrap_epoch_key(me, envelope)?;
    check_epoch_key(state, envelope.epoch, &key)?;
    Ok(key)
}

/// HPKE's `info` for an envelope: CBOR `["cairn/epoch-key/v1", space, epoch, recipient]`.
pub fn hpke_info(space: &SpaceId, epoch: u64, recipient: &DeviceId) -> Vec<u8> {
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

/// Verifies the envelope's signature and unwraps the key with this device's secret. This
/// alone does not make the key trustworthy: [`accept_envelope`] also checks it against the
/// epoch's confirmation.
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
