//! Cairn's end-to-end encryption: device identities, signed device lists, membership-log
//! verification, space epoch keys wrapped per device with HPKE, sealed notes and chunked
//! media encryption. It does no I/O: callers hand it bytes and get bytes back. It uses only
//! vetted RustCrypto primitives; `docs/SECURITY.md` explains the scheme and its limits.

mod error;
pub mod identity;
pub mod keys;
pub mod media;
pub mod membership;
pub mod note;

pub use error::CryptoError;
pub use identity::{DeviceIdentity, safety_code, verify_device_list, verify_signature};
pub use keys::{
    EpochKey, KeyStore, MemoryKeyStore, accept_envelope, check_epoch_key, hpke_info,
    key_confirmation, unwrap_epoch_key, wrap_epoch_key,
};
pub use media::{
    CHUNK_SIZE, MediaDecryptor, MediaEncryptor, MediaKey, decrypt_blob, encrypt_blob,
    encrypt_blob_with, seal_blob,
};
pub use membership::{MembershipLog, sign_op};
pub use note::{
    MediaRef, NoteBody, PlaceMark, PlacePose, PlaceRecord, Pose, SpatialAnchor, associated_data,
    note_key, open_note, seal_note, seal_note_with_nonce,
};

/// Fills `buf` from the operating system's random number generator.
pub(crate) fn random_bytes<const N: usize>() -> zeroize::Zeroizing<[u8; N]> {
    let mut out = zeroize::Zeroizing::new([0u8; N]);
    getrandom::fill(out.as_mut()).expect("the operating system's RNG is unavailable");
    out
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}
