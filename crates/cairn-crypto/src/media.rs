//! Media blobs (voice, images): a random AES-256-GCM key per blob, and the STREAM
//! construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015) over 64 KiB chunks so that large
//! blobs stream in constant memory. Chunk `i` is sealed with the nonce
//! `0^7 || be32(i) || last`, where `last` is 1 for the final chunk and 0 otherwise, so a
//! truncated, reordered, swapped or extended stream fails to decrypt. The key is used for
//! one blob only, so the counter needs no random prefix. A blob is addressed by a SHA-256
//! tree over its sealed chunks (`cairn_proto::address`), which lets a large blob be sealed
//! and checked on several cores at once.

use crate::{CryptoError, random_bytes};
use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Tag};
use cairn_proto::{AddressHasher, MediaHash, address_from_leaves, address_leaf};
use serde::{Deserialize, Serialize};
use std::fmt;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Plaintext bytes per chunk.
pub const CHUNK_SIZE: usize = 64 * 1024;
const TAG_LEN: usize = 16;
/// Ciphertext bytes per full chunk.
pub const SEALED_CHUNK_SIZE: usize = CHUNK_SIZE + TAG_LEN;
// A blob's address hashes it in pieces of exactly one sealed chunk.
const _: () = assert!(SEALED_CHUNK_SIZE == cairn_proto::ADDRESS_PIECE);

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
    hasher: AddressHasher,
    finished: bool,
}

impl MediaEncryptor {
    pub fn new(key: &MediaKey) -> Self {
        MediaEncryptor {
            cipher: Aes256Gcm::new_from_slice(&key.0).expect("32-byte key"),
            counter: 0,
            hasher: AddressHasher::new(),
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
        out.resize(start + plaintext.len() + TAG_LEN, 0);
        seal_in_place(&self.cipher, self.counter, last, &mut out[start..]);
        self.hasher.update(&out[start..]);
        self.counter = self.counter.checked_add(1).expect("over 256 TiB in one blob");
        self.finished = last;
    }

    /// The address of everything sealed so far (the whole blob once the last chunk is in).
    pub fn hash(self) -> MediaHash {
        self.hasher.finish()
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
    address: Option<(AddressHasher, MediaHash)>,
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
        MediaDecryptor { address: Some((AddressHasher::new(), expected)), ..Self::new(key) }
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
            && hasher.finish() != expected
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

/// Blobs from this size up are sealed and opened on several threads, each taking the next
/// piece as it is free (a run of chunks when sealing, a chunk when opening: cipher and
/// address leaf); below it the threads cost more than they save.
const PARALLEL_FROM: usize = 1024 * 1024;
/// At most this many threads for one blob.
const MAX_THREADS: usize = 8;
/// Runs of chunks a blob is sealed in per thread: more than one, so that a thread slowed
/// by a busy core leaves its later runs to the others (see [`each_job`]).
const RUNS_PER_THREAD: usize = 4;

/// Seals chunk `index` where it lies: `chunk` is its plaintext followed by [`TAG_LEN`]
/// bytes of room for the tag. (In place: AES-GCM from one buffer into another ran slower.)
fn seal_in_place(cipher: &Aes256Gcm, index: u32, last: bool, chunk: &mut [u8]) {
    let (body, tag) = chunk.split_at_mut(chunk.len() - TAG_LEN);
    let t = cipher
        .encrypt_inout_detached(&chunk_nonce(index, last).into(), &[], body.into())
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

/// How many threads a blob of `total` bytes in `chunks` chunks is worth.
fn threads_for(total: usize, chunks: usize) -> usize {
    if total < PARALLEL_FROM {
        return 1;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_THREADS).min(chunks)
}

/// How many threads [`seal_blob`] seals a blob of `len` plaintext bytes on.
pub fn sealing_threads(len: usize) -> usize {
    threads_for(len, len / CHUNK_SIZE + 1)
}

/// Runs `work` on every job, on `threads` threads (this one and scoped ones), each taking
/// the next job not yet taken until none is left. Handed out one at a time rather than cut
/// into a share per thread: a thread whose core is also busy with something else (the
/// app's renderer, another request) takes fewer jobs instead of holding up the rest.
fn each_job<J: Send>(jobs: &mut [J], threads: usize, work: impl Fn(&mut J) + Sync) {
    if threads <= 1 || jobs.len() <= 1 {
        jobs.iter_mut().for_each(work);
        return;
    }
    let threads = threads.min(jobs.len());
    let queue = std::sync::Mutex::new(jobs.iter_mut());
    let take = || queue.lock().expect("job queue").next();
    let drain = || {
        while let Some(job) = take() {
            work(job);
        }
    };
    std::thread::scope(|scope| {
        for _ in 1..threads {
            scope.spawn(drain);
        }
        drain();
    });
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

/// Encrypts a whole blob under `key`: the same bytes and address as [`MediaEncryptor`]
/// chunk by chunk. Copies the plaintext once into a buffer with room for the tags and seals
/// it there ([`seal_blob`]).
pub fn encrypt_blob_with(key: &MediaKey, plaintext: &[u8]) -> (Vec<u8>, MediaHash) {
    seal_blob(key, sealing_buffer(plaintext))
}

/// `plaintext` copied into a buffer with room for its tags, which [`seal_blob`] seals
/// where it is.
pub fn sealing_buffer(plaintext: &[u8]) -> Vec<u8> {
    let mut blob = Vec::with_capacity(sealed_len(plaintext.len()));
    blob.extend_from_slice(plaintext);
    blob
}

/// Seals a whole blob in its own buffer (give it a capacity of [`sealed_len`] and it is not
/// moved): the same bytes and address as [`MediaEncryptor`] chunk by chunk, with no second
/// buffer. Each chunk's address leaf is hashed right after its cipher, while it is in cache,
/// and a large blob is sealed on several threads, in runs of chunks that each thread takes
/// as it is free ([`RUNS_PER_THREAD`] a thread).
pub fn seal_blob(key: &MediaKey, blob: Vec<u8>) -> (Vec<u8>, MediaHash) {
    let len = blob.len();
    let threads = sealing_threads(len);
    let runs = if threads > 1 { threads * RUNS_PER_THREAD } else { 1 };
    seal_in_runs(key, blob, &run_starts(len / CHUNK_SIZE + 1, runs), threads)
}

/// Where each of `runs` runs of `chunks` chunks starts: runs of even length.
fn run_starts(chunks: usize, runs: usize) -> Vec<usize> {
    let per_run = chunks.div_ceil(runs.max(1));
    (0..chunks).step_by(per_run).collect()
}

/// One thread's share of [`seal_in_runs`]: chunks `first..first + leaves.len()` of the blob.
/// Sealed, they fill `region`. Before, their plaintext lies `head.len()` bytes further left
/// (each chunk before them grows by a tag): its first `head.len()` bytes were copied into
/// `head` (they lie in the run before, which that run overwrites), the rest is at the start
/// of `region`.
struct SealRun<'a> {
    first: usize,
    plain_len: usize,
    head: Vec<u8>,
    region: &'a mut [u8],
    leaves: Vec<[u8; 32]>,
}

impl SealRun<'_> {
    /// Seals the run's chunks from the last to the first: each moves right, onto bytes whose
    /// plaintext has already moved, and never onto the plaintext of a chunk still to come.
    fn seal(&mut self, cipher: &Aes256Gcm, chunks: usize) {
        let h = self.head.len();
        for j in (0..self.leaves.len()).rev() {
            let from = j * CHUNK_SIZE;
            let plain = CHUNK_SIZE.min(self.plain_len - from);
            let to = j * SEALED_CHUNK_SIZE;
            if from >= h {
                self.region.copy_within(from - h..from - h + plain, to);
            } else {
                // Part of this chunk's plaintext is in `head`, the rest (if any) at the start
                // of the region; no chunk before it has any plaintext in the region.
                let in_head = plain.min(h - from);
                self.region.copy_within(0..plain - in_head, to + in_head);
                self.region[to..to + in_head].copy_from_slice(&self.head[from..from + in_head]);
            }
            let index = self.first + j;
            let chunk = &mut self.region[to..to + plain + TAG_LEN];
            let counter = u32::try_from(index).expect("over 256 TiB in one blob");
            seal_in_place(cipher, counter, index + 1 == chunks, chunk);
            self.leaves[j] = address_leaf(chunk);
        }
    }
}

/// [`seal_blob`] with the runs starting at the chunks `starts` (the first is 0), sealed on
/// `threads` threads. Once every run's head is copied out, no run reads or writes another's
/// region, so they may be sealed in any order, side by side.
fn seal_in_runs(
    key: &MediaKey,
    mut blob: Vec<u8>,
    starts: &[usize],
    threads: usize,
) -> (Vec<u8>, MediaHash) {
    let cipher = Aes256Gcm::new_from_slice(&key.0).expect("32-byte key");
    let len = blob.len();
    // Every chunk is CHUNK_SIZE but the last, which is shorter (empty when the length is a
    // multiple of CHUNK_SIZE).
    let chunks = len / CHUNK_SIZE + 1;
    debug_assert!(
        starts.first() == Some(&0) && starts.is_sorted() && starts.iter().all(|&s| s < chunks)
    );
    // The plaintext a run's region will not hold, copied out before any run overwrites it
    // (all of the run's plaintext when there is less of it, which `SealRun::seal` reads
    // from the head alone then).
    let heads: Vec<Vec<u8>> = starts
        .iter()
        .map(|&first| {
            let at = first * CHUNK_SIZE;
            blob[at..(at + first * TAG_LEN).min(len)].to_vec()
        })
        .collect();
    blob.resize(sealed_len(len), 0);
    let mut runs = Vec::with_capacity(starts.len());
    let mut rest: &mut [u8] = &mut blob;
    for (k, (&first, head)) in starts.iter().zip(heads).enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(chunks);
        let region_len = if end == chunks { rest.len() } else { (end - first) * SEALED_CHUNK_SIZE };
        let (region, tail) = std::mem::take(&mut rest).split_at_mut(region_len);
        rest = tail;
        let plain_len = (end * CHUNK_SIZE).min(len) - first * CHUNK_SIZE;
        let leaves = vec![[0; 32]; end - first];
        runs.push(SealRun { first, plain_len, head, region, leaves });
    }
    each_job(&mut runs, threads, |run| run.seal(&cipher, chunks));
    let hash = address_from_leaves(runs.iter().flat_map(|run| &run.leaves));
    drop(runs);
    (blob, hash)
}

/// One chunk to open, its place in the output, its leaf and how it went.
struct OpenJob<'a> {
    index: usize,
    last: bool,
    sealed: &'a [u8],
    out: &'a mut [u8],
    leaf: [u8; 32],
    opened: Result<(), CryptoError>,
}

/// Decrypts a whole blob; checks its address when `expected` is given. No plaintext is
/// returned unless the address and every chunk check out. Large blobs open on several
/// threads, each chunk's leaf hashed beside its cipher.
pub fn decrypt_blob(
    key: &MediaKey,
    ciphertext: &[u8],
    expected: Option<&MediaHash>,
) -> Result<Vec<u8>, CryptoError> {
    // The address first: a blob that is not what its name says is refused as such,
    // whatever else is wrong with it.
    let last_len = ciphertext.len() % SEALED_CHUNK_SIZE;
    if ciphertext.is_empty() || (last_len != 0 && last_len < TAG_LEN) {
        if expected.is_some_and(|e| MediaHash::of(ciphertext) != *e) {
            return Err(CryptoError::WrongAddress);
        }
        return Err(CryptoError::Truncated);
    }
    let cipher = Aes256Gcm::new_from_slice(&key.0).expect("32-byte key");
    // Every chunk but the last is SEALED_CHUNK_SIZE; the last is what remains.
    let chunks = ciphertext.len().div_ceil(SEALED_CHUNK_SIZE);
    let mut out = vec![0u8; ciphertext.len() - chunks * TAG_LEN];
    let mut jobs = Vec::with_capacity(chunks);
    let mut rest: &mut [u8] = &mut out;
    for (index, sealed) in ciphertext.chunks(SEALED_CHUNK_SIZE).enumerate() {
        let (plain, tail) = std::mem::take(&mut rest).split_at_mut(sealed.len() - TAG_LEN);
        rest = tail;
        let last = index + 1 == chunks;
        jobs.push(OpenJob { index, last, sealed, out: plain, leaf: [0; 32], opened: Ok(()) });
    }
    let hashing = expected.is_some();
    each_job(&mut jobs, threads_for(ciphertext.len(), chunks), |job| {
        if hashing {
            job.leaf = address_leaf(job.sealed);
        }
        job.opened = u32::try_from(job.index)
            .map_err(|_| CryptoError::TrailingData)
            .and_then(|index| open_into(&cipher, index, job.last, job.sealed, job.out))
            .map_err(|e| if job.last { cut_off(e, job.sealed.len()) } else { e });
    });
    if let Some(expected) = expected
        && address_from_leaves(jobs.iter().map(|job| &job.leaf)) != *expected
    {
        return Err(CryptoError::WrongAddress);
    }
    let failed = jobs.into_iter().find_map(|job| job.opened.err());
    failed.map_or(Ok(out), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blob sealed chunk by chunk with the streaming encryptor: the reference.
    fn streamed(key: &MediaKey, plaintext: &[u8]) -> (Vec<u8>, MediaHash) {
        let mut enc = MediaEncryptor::new(key);
        let mut out = Vec::new();
        let chunks = plaintext.len() / CHUNK_SIZE + 1;
        for i in 0..chunks {
            let part = &plaintext[i * CHUNK_SIZE..plaintext.len().min((i + 1) * CHUNK_SIZE)];
            enc.seal_chunk(part, i + 1 == chunks, &mut out);
        }
        (out, enc.hash())
    }

    /// Every way of cutting a blob into runs seals it to the same bytes and address: runs of
    /// one chunk, uneven runs, a last run holding only the empty last chunk.
    #[test]
    fn sealing_in_place_in_any_runs_gives_the_streamed_blob() {
        let key = MediaKey::from_bytes([3; 32]);
        let data: Vec<u8> = (0..10 * CHUNK_SIZE + 3).map(|i| (i * 31 % 257) as u8).collect();
        for len in [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE, data.len()] {
            let expected = streamed(&key, &data[..len]);
            let chunks = len / CHUNK_SIZE + 1;
            let mut cuts = vec![vec![0], (0..chunks).collect(), vec![0, chunks - 1]];
            cuts.extend((1..=9).map(|runs| run_starts(chunks, runs)));
            if chunks > 3 {
                cuts.push(vec![0, 1, chunks - 2]);
            }
            for starts in cuts {
                let mut starts = starts;
                starts.dedup();
                // One thread; a thread per run; fewer threads than runs, taking them as
                // they come.
                for threads in [1, starts.len(), 2, 3] {
                    let sealed = seal_in_runs(&key, data[..len].to_vec(), &starts, threads);
                    assert!(
                        sealed == expected,
                        "{len} bytes in runs from {starts:?}, {threads} threads"
                    );
                }
            }
            assert!(encrypt_blob_with(&key, &data[..len]) == expected, "{len} bytes");
            // A buffer with the room already there is sealed where it is.
            let blob = sealing_buffer(&data[..len]);
            let at = blob.as_ptr();
            let (sealed, _) = seal_blob(&key, blob);
            assert_eq!(sealed.as_ptr(), at, "{len} bytes moved");
        }
    }

    /// A run that starts past chunk 4096 has more than a chunk of its plaintext in the run
    /// before (a tag per earlier chunk): a 257 MiB blob in two runs.
    #[test]
    fn a_run_whose_plaintext_starts_over_a_chunk_left_of_its_place() {
        let key = MediaKey::from_bytes([4; 32]);
        let len = 4099 * CHUNK_SIZE + 9;
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let one = seal_in_runs(&key, data.clone(), &[0], 1);
        let two = seal_in_runs(&key, data, &[0, 4097], 2);
        assert!(one == two, "two runs differ from one");
        let opened = decrypt_blob(&key, &two.0, Some(&two.1)).unwrap();
        assert_eq!(opened.len(), len);
        assert!(opened.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    }
}
