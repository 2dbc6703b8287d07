//! Media blobs (voice, images): a random AES-256-GCM key per blob, and the STREAM
//! construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015) over 64 KiB chunks so that large
//! blobs stream in constant memory. Chunk `i` is sealed with the nonce
//! `0^7 || be32(i) || last`, where `last` is 1 for the final chunk and 0 otherwise, so a
//! truncated, reordered, swapped or extended stream fails to decrypt. The key is used for
//! one blob only, so the counter needs no random prefix. A blob is addressed by the SHA-256
//! of its ciphertext.

use crate::{CryptoError, random_bytes};
use aes_gcm::aead::inout::InOutBuf;
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
        out.resize(start + plaintext.len() + TAG_LEN, 0);
        seal_into(&self.cipher, self.counter, last, plaintext, &mut out[start..]);
        self.hasher.update(&out[start..]);
        self.counter = self.counter.checked_add(1).expect("over 256 TiB in one blob");
        self.finished = last;
    }

    /// The address of everything sealed so far (the whole blob once the last chunk is in).
    pub fn hash(self) -> MediaHash {
        MediaHash(self.hasher.finalize().into())
    }
}

/// Decrypts a stream of ciphertext as it arrives, in any slicing. Every chunk it gives out
/// has opened under the key (so it is what the key's holder sealed, in its place: the counter
/// and the last-chunk flag are in the nonce); [`MediaDecryptor::addressed`] also checks the
/// whole stream against its address at the end.
pub struct MediaDecryptor {
    cipher: Aes256Gcm,
    counter: u32,
    pending: Vec<u8>,
    /// The ciphertext's hash so far, and the address it must come to.
    address: Option<(Sha256, MediaHash)>,
}

impl MediaDecryptor {
    pub fn new(key: &MediaKey) -> Self {
        MediaDecryptor {
            cipher: Aes256Gcm::new_from_slice(&key.0).expect("32-byte key"),
            counter: 0,
            pending: Vec::with_capacity(SEALED_CHUNK_SIZE * 2),
            address: None,
        }
    }

    /// A decryptor that also hashes what it takes, and whose [`finish`](Self::finish) refuses
    /// a stream that is not `expected` ([`CryptoError::WrongAddress`]).
    pub fn addressed(key: &MediaKey, expected: MediaHash) -> Self {
        MediaDecryptor { address: Some((Sha256::new(), expected)), ..Self::new(key) }
    }

    /// Opens the chunk at `pending[start..start + len]`.
    fn open_chunk(
        &mut self,
        start: usize,
        len: usize,
        last: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let at = out.len();
        out.resize(at + len - TAG_LEN, 0);
        let sealed = &self.pending[start..start + len];
        if let Err(e) = open_into(&self.cipher, self.counter, last, sealed, &mut out[at..]) {
            out.truncate(at);
            return Err(e);
        }
        self.counter = self.counter.checked_add(1).ok_or(CryptoError::TrailingData)?;
        Ok(())
    }

    /// Takes more ciphertext; appends whatever plaintext is certain to `out`. A full chunk
    /// is held back until more data shows it is not the last.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        if let Some((hasher, _)) = &mut self.address {
            hasher.update(data);
        }
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

    /// The stream ended: the held-back bytes must be the last chunk, and an addressed
    /// stream must be what its address says (checked first, as [`decrypt_blob`] does).
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        if let Some((hasher, expected)) = self.address.take()
            && <[u8; 32]>::from(hasher.finalize()) != expected.0
        {
            return Err(CryptoError::WrongAddress);
        }
        if self.pending.len() < TAG_LEN {
            return Err(CryptoError::Truncated);
        }
        let len = self.pending.len();
        self.open_chunk(0, len, true, out).map_err(|e| cut_off(e, len))
    }
}

/// A last chunk of full size that does not open as the last one is a stream cut off at a
/// chunk boundary: say so rather than "decryption failed".
fn cut_off(e: CryptoError, last_len: usize) -> CryptoError {
    match e {
        CryptoError::DecryptFailed if last_len == SEALED_CHUNK_SIZE => CryptoError::Truncated,
        e => e,
    }
}

/// Blobs from this size up are hashed on a second thread while they are encrypted or
/// decrypted; below it the thread costs more than it saves.
const PARALLEL_FROM: usize = 1024 * 1024;

/// Seals chunk `index` of `plaintext` straight into `out` (its sealed size), no copy.
fn seal_into(cipher: &Aes256Gcm, index: u32, last: bool, plaintext: &[u8], out: &mut [u8]) {
    let (body, tag) = out.split_at_mut(plaintext.len());
    let buf = InOutBuf::new(plaintext, body).expect("same lengths");
    let t = cipher
        .encrypt_inout_detached(&chunk_nonce(index, last).into(), &[], buf)
        .expect("a 64 KiB chunk is within AES-GCM's limits");
    tag.copy_from_slice(&t);
}

/// Opens sealed chunk `index` straight into `out` (its plaintext size), no copy.
fn open_into(
    cipher: &Aes256Gcm,
    index: u32,
    last: bool,
    sealed: &[u8],
    out: &mut [u8],
) -> Result<(), CryptoError> {
    let (body, tag) = sealed.split_at(sealed.len() - TAG_LEN);
    let tag = Tag::try_from(tag).map_err(|_| CryptoError::DecryptFailed)?;
    let buf = InOutBuf::new(body, out).expect("same lengths");
    cipher
        .decrypt_inout_detached(&chunk_nonce(index, last).into(), &[], buf, &tag)
        .map_err(|_| CryptoError::DecryptFailed)
}

/// SHA-256 of `parts` in order; on a second thread for large blobs, fed chunk by chunk
/// as `work` finishes them, so hashing (slower than AES-GCM on CPUs with both in
/// hardware) overlaps the cipher instead of following it. `work` gets a sender for the
/// finished parts.
fn hashing_beside<'a, T>(
    total: usize,
    work: impl FnOnce(&mut dyn FnMut(&'a [u8])) -> T,
) -> (T, [u8; 32]) {
    if total < PARALLEL_FROM {
        let mut hasher = Sha256::new();
        let out = work(&mut |part| hasher.update(part));
        return (out, hasher.finalize().into());
    }
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel::<&'a [u8]>();
        let hasher = scope.spawn(move || {
            let mut hasher = Sha256::new();
            for part in rx {
                hasher.update(part);
            }
            <[u8; 32]>::from(hasher.finalize())
        });
        let out = work(&mut |part| {
            let _ = tx.send(part);
        });
        drop(tx);
        (out, hasher.join().expect("the hashing thread does not panic"))
    })
}

/// Encrypts a whole blob in memory under a fresh key; returns the key, the ciphertext and
/// its address.
pub fn encrypt_blob(plaintext: &[u8]) -> (MediaKey, Vec<u8>, MediaHash) {
    let key = MediaKey::generate();
    let (ciphertext, hash) = encrypt_blob_with(&key, plaintext);
    (key, ciphertext, hash)
}

/// The sealed size of a blob of `len` bytes (a multiple of [`CHUNK_SIZE`] ends with an
/// empty last chunk).
pub fn sealed_len(len: usize) -> usize {
    len + (len / CHUNK_SIZE + 1) * TAG_LEN
}

/// Seals `plaintext` chunk by chunk into `out` (its sealed size), handing each sealed chunk
/// to `done` as it is finished.
fn seal_chunks<'o>(
    cipher: &Aes256Gcm,
    plaintext: &[u8],
    out: &'o mut [u8],
    done: &mut dyn FnMut(&'o [u8]),
) {
    // `chunks` yields nothing for an empty blob, and no short last chunk for one whose
    // length is a multiple of CHUNK_SIZE: that one's empty last chunk comes after.
    let full = plaintext.len() / CHUNK_SIZE;
    let mut rest = out;
    for (i, part) in plaintext.chunks(CHUNK_SIZE).enumerate() {
        let (chunk, tail) = std::mem::take(&mut rest).split_at_mut(part.len() + TAG_LEN);
        seal_into(cipher, i as u32, i == full, part, chunk);
        done(chunk);
        rest = tail;
    }
    if plaintext.len().is_multiple_of(CHUNK_SIZE) {
        seal_into(cipher, full as u32, true, &[], rest);
        done(rest);
    }
}

/// Opens `ciphertext` chunk by chunk into `out` (its plaintext size), handing every sealed
/// chunk to `done`, also those after a failure (so that a hash beside sees the whole blob).
fn open_chunks<'c>(
    cipher: &Aes256Gcm,
    ciphertext: &'c [u8],
    out: &mut [u8],
    done: &mut dyn FnMut(&'c [u8]),
) -> Result<(), CryptoError> {
    // Every chunk but the last is SEALED_CHUNK_SIZE; the last is what remains.
    let chunks = ciphertext.len().div_ceil(SEALED_CHUNK_SIZE);
    let mut result = Ok(());
    let mut rest = out;
    for (i, sealed) in ciphertext.chunks(SEALED_CHUNK_SIZE).enumerate() {
        let (plain, tail) = std::mem::take(&mut rest).split_at_mut(sealed.len() - TAG_LEN);
        rest = tail;
        if result.is_ok() {
            let last = i + 1 == chunks;
            result = u32::try_from(i)
                .map_err(|_| CryptoError::TrailingData)
                .and_then(|index| open_into(cipher, index, last, sealed, plain))
                .map_err(|e| if last { cut_off(e, sealed.len()) } else { e });
        }
        done(sealed);
    }
    result
}

/// Encrypts a whole blob under `key`: the same bytes and address as [`MediaEncryptor`]
/// chunk by chunk, written straight into the output and hashed beside the cipher.
pub fn encrypt_blob_with(key: &MediaKey, plaintext: &[u8]) -> (Vec<u8>, MediaHash) {
    let cipher = Aes256Gcm::new_from_slice(&key.0).expect("32-byte key");
    let mut out = vec![0u8; sealed_len(plaintext.len())];
    let total = out.len();
    let out_ref: &mut [u8] = &mut out;
    let ((), hash) = hashing_beside(total, |done| seal_chunks(&cipher, plaintext, out_ref, done));
    (out, MediaHash(hash))
}

/// Decrypts a whole blob; checks its address when `expected` is given (hashing beside the
/// cipher). No plaintext is returned unless the address and every chunk check out.
pub fn decrypt_blob(
    key: &MediaKey,
    ciphertext: &[u8],
    expected: Option<&MediaHash>,
) -> Result<Vec<u8>, CryptoError> {
    let cipher = Aes256Gcm::new_from_slice(&key.0).expect("32-byte key");
    let chunks = ciphertext.len().div_ceil(SEALED_CHUNK_SIZE);
    let whole = ciphertext.len().saturating_sub(chunks * TAG_LEN);
    let mut out = vec![0u8; whole];
    let out_ref: &mut [u8] = &mut out;
    let opened = match expected {
        None => open_checked(&cipher, ciphertext, out_ref, &mut |_| {}),
        Some(expected) => {
            let (opened, actual) = hashing_beside(ciphertext.len(), |done| {
                open_checked(&cipher, ciphertext, out_ref, done)
            });
            // The address first: a blob that is not what its name says is refused as such,
            // whatever else is wrong with it.
            if actual != expected.0 {
                return Err(CryptoError::WrongAddress);
            }
            opened
        }
    };
    opened.map(|()| out)
}

/// [`open_chunks`], after checking that the blob is long enough to hold its last tag.
fn open_checked<'c>(
    cipher: &Aes256Gcm,
    ciphertext: &'c [u8],
    out: &mut [u8],
    done: &mut dyn FnMut(&'c [u8]),
) -> Result<(), CryptoError> {
    let last_len = ciphertext.len() % SEALED_CHUNK_SIZE;
    if ciphertext.is_empty() || (last_len != 0 && last_len < TAG_LEN) {
        done(ciphertext);
        return Err(CryptoError::Truncated);
    }
    open_chunks(cipher, ciphertext, out, done)
}
