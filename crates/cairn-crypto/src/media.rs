//! Media blobs (voice, images): a random AES-256-GCM key per blob, and the STREAM
//! construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015) over 64 KiB chunks so that large
//! blobs stream in constant memory. Chunk `i` is sealed with the nonce
//! `0^7 || be32(i) || last`, where `last` is 1 for the final chunk and 0 otherwise, so a
//! truncated, reordered, swapped or extended stream fails to decrypt. The key is used for
//! one blob only, so the counter needs no random prefix. A blob is addressed by the SHA-256
//! of its ciphertext.

use crate::{CryptoError, random_bytes};
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Tag};
use cairn_proto::MediaHash;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Plaintext bytes per chunk.
pub const CHUNK_SIZE: usize = 64 * 1024;
const TAG_LEN: usize = 16;
/// Ciphertext bytes per full chunk.
pub const SEALED_CHUNK_SIZE: usize = CHUNK_SIZE + TAG_LEN;

/// A blob's key. Travels only inside an encrypted note. Wiped on drop, never printed.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct MediaKey(#[serde(with = "serde_bytes")] [u8; 32]);

impl MediaKey {
    pub fn generate() -> Self {
        MediaKey(*random_bytes::<32>())
    }

    /// From known bytes (known-answer tests, docs/vectors).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        MediaKey(bytes)
    }
}

impl PartialEq for MediaKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for MediaKey {}

impl fmt::Debug for MediaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MediaKey(<redacted>)")
    }
}

fn chunk_nonce(counter: u32, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[7..11].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    n
}

/// Encrypts a blob chunk by chunk and hashes the ciphertext as it goes.
pub struct MediaEncryptor {
    cipher: Aes256Gcm,
    counter: u32,
    hasher: Sha256,
    finished: bool,
}

impl MediaEncryptor {
    pub fn new(key: &MediaKey) -> Self {
        MediaEncryptor {
            cipher: Aes256Gcm::new_from_slice(&key.0).expect("32-byte key"),
            counter: 0,
            hasher: Sha256::new(),
            finished: false,
        }
    }

    /// An encryptor positioned at chunk `index`, to re-create any chunk of a blob (the
    /// construction is deterministic under one key). Its `hash` covers only what it seals.
    pub fn at_chunk(key: &MediaKey, index: u32) -> Self {
        let mut enc = Self::new(key);
        enc.counter = index;
        enc
    }

    /// Seals one chunk, appending the ciphertext to `out`. Every chunk but the last must be
    /// exactly [`CHUNK_SIZE`] bytes; the last may be shorter, even empty.
    pub fn seal_chunk(&mut self, plaintext: &[u8], last: bool, out: &mut Vec<u8>) {
        assert!(!self.finished, "no chunk may follow the last");
        assert!(plaintext.len() <= CHUNK_SIZE && (last || plaintext.len() == CHUNK_SIZE));
        let start = out.len();
        out.extend_from_slice(plaintext);
        let nonce = chunk_nonce(self.counter, last);
        let tag = self
            .cipher
            .encrypt_inout_detached(&nonce.into(), &[], (&mut out[start..]).into())
            .expect("a 64 KiB chunk is within AES-GCM's limits");
        out.extend_from_slice(&tag);
        self.hasher.update(&out[start..]);
        self.counter = self.counter.checked_add(1).expect("over 256 TiB in one blob");
        self.finished = last;
    }

    /// The address of everything sealed so far (the whole blob once the last chunk is in).
    pub fn hash(self) -> MediaHash {
        MediaHash(self.hasher.finalize().into())
    }
}

/// Decrypts a stream of ciphertext as it arrives, in any slicing.
pub struct MediaDecryptor {
    cipher: Aes256Gcm,
    counter: u32,
    pending: Vec<u8>,
}

impl MediaDecryptor {
    pub fn new(key: &MediaKey) -> Self {
        MediaDecryptor {
            cipher: Aes256Gcm::new_from_slice(&key.0).expect("32-byte key"),
            counter: 0,
            pending: Vec::with_capacity(SEALED_CHUNK_SIZE * 2),
        }
    }

    /// Opens the chunk at `pending[start..start + len]`.
    fn open_chunk(
        &mut self,
        start: usize,
        len: usize,
        last: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let (body, tag) = self.pending[start..start + len].split_at_mut(len - TAG_LEN);
        let tag = Tag::try_from(&*tag).map_err(|_| CryptoError::DecryptFailed)?;
        self.cipher
            .decrypt_inout_detached(&chunk_nonce(self.counter, last).into(), &[], body.into(), &tag)
            .map_err(|_| CryptoError::DecryptFailed)?;
        out.extend_from_slice(body);
        self.counter = self.counter.checked_add(1).ok_or(CryptoError::TrailingData)?;
        Ok(())
    }

    /// Takes more ciphertext; appends whatever plaintext is certain to `out`. A full chunk
    /// is held back until more data shows it is not the last.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        self.pending.extend_from_slice(data);
        let mut start = 0;
        while self.pending.len() - start > SEALED_CHUNK_SIZE {
            self.open_chunk(start, SEALED_CHUNK_SIZE, false, out)?;
            start += SEALED_CHUNK_SIZE;
        }
        // One move per push, not one per chunk.
        self.pending.drain(..start);
        Ok(())
    }

    /// The stream ended: the held-back bytes must be the last chunk.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        if self.pending.len() < TAG_LEN {
            return Err(CryptoError::Truncated);
        }
        let len = self.pending.len();
        self.open_chunk(0, len, true, out).map_err(|e| match e {
            // A non-final chunk decrypted as final means the rest was cut off.
            CryptoError::DecryptFailed if len == SEALED_CHUNK_SIZE => CryptoError::Truncated,
            e => e,
        })
    }
}

/// Encrypts a whole blob in memory under a fresh key; returns the key, the ciphertext and
/// its address.
pub fn encrypt_blob(plaintext: &[u8]) -> (MediaKey, Vec<u8>, MediaHash) {
    let key = MediaKey::generate();
    let (ciphertext, hash) = encrypt_blob_with(&key, plaintext);
    (key, ciphertext, hash)
}

/// Encrypts a whole blob under `key`.
pub fn encrypt_blob_with(key: &MediaKey, plaintext: &[u8]) -> (Vec<u8>, MediaHash) {
    let chunks = plaintext.len() / CHUNK_SIZE + 1;
    let mut out = Vec::with_capacity(plaintext.len() + chunks * TAG_LEN);
    let mut enc = MediaEncryptor::new(key);
    let mut rest = plaintext;
    loop {
        let take = rest.len().min(CHUNK_SIZE);
        // A blob whose length is a multiple of CHUNK_SIZE ends with an empty last chunk.
        let last = rest.len() < CHUNK_SIZE;
        enc.seal_chunk(&rest[..take], last, &mut out);
        rest = &rest[take..];
        if last {
            break;
        }
    }
    (out, enc.hash())
}

/// Decrypts a whole blob; checks its address first when `expected` is given.
pub fn decrypt_blob(
    key: &MediaKey,
    ciphertext: &[u8],
    expected: Option<&MediaHash>,
) -> Result<Vec<u8>, CryptoError> {
    if let Some(expected) = expected {
        let actual: [u8; 32] = Sha256::digest(ciphertext).into();
        if actual != expected.0 {
            return Err(CryptoError::malformed("media", "hash does not match its address"));
        }
    }
    let mut out = Vec::with_capacity(ciphertext.len());
    let mut dec = MediaDecryptor::new(key);
    dec.push(ciphertext, &mut out)?;
    dec.finish(&mut out)?;
    Ok(out)
}
