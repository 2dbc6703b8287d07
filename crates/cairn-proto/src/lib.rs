//! Cairn's wire protocol: every message as serde types, and the CBOR codec that puts one
//! message in each binary WebSocket frame. It does no I/O and no cryptography; it only
//! says which bytes a signature covers (`sign`). The prose specification is
//! `docs/PROTOCOL.md`.

pub mod ids;
pub mod membership;
pub mod messages;
pub mod sign;

pub use ids::*;
pub use messages::*;

use serde::{Serialize, de::DeserializeOwned};

/// The protocol version this crate speaks. Bump it on any incompatible change.
pub const PROTOCOL_VERSION: u16 = 2;

/// Largest WebSocket message a peer must accept.
pub const MAX_FRAME_BYTES: usize = 512 * 1024;
/// Largest note ciphertext (a thumbnail travels inside it).
pub const MAX_NOTE_BYTES: usize = 384 * 1024;
/// Largest number of entries in one `Sync` page.
pub const MAX_SYNC_PAGE: u32 = 500;
/// Most bytes of entries in one `Sync` page: the rest of [`MAX_FRAME_BYTES`] is room for
/// the frame around them. A page holds at least one entry (a note is at most
/// [`MAX_NOTE_BYTES`] of ciphertext plus its header), so every page fits in a frame.
pub const MAX_PAGE_BYTES: usize = MAX_FRAME_BYTES - 16 * 1024;
/// What an entry costs on the wire besides its item: `seq`, `stored_at`, the map's keys.
pub const ENTRY_OVERHEAD_BYTES: usize = 64;
/// Nesting deeper than this is rejected while decoding; our messages need less than 10.
const MAX_DEPTH: usize = 32;

/// Why bytes did not decode.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message is {0} bytes; the limit is {1}")]
    TooLarge(usize, usize),
    #[error("not a valid message: {0}")]
    Invalid(String),
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
}

/// Encodes a value as CBOR. Encoding into memory cannot fail for our types.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    ciborium::into_writer(value, &mut out).expect("CBOR encoding into a Vec cannot fail");
    out
}

/// Decodes exactly one CBOR value of type `T` from `bytes`, rejecting trailing bytes and
/// anything over [`MAX_FRAME_BYTES`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    decode_limited(bytes, MAX_FRAME_BYTES)
}

/// As [`decode`], with an explicit size limit.
pub fn decode_limited<T: DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<T, DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge(bytes.len(), limit));
    }
    let mut reader = bytes;
    let value = ciborium::de::from_reader_with_recursion_limit(&mut reader, MAX_DEPTH)
        .map_err(|e| DecodeError::Invalid(e.to_string()))?;
    if !reader.is_empty() {
        return Err(DecodeError::Trailing(reader.len()));
    }
    Ok(value)
}

/// Unix time in milliseconds, from a `SystemTime`.
pub fn unix_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Now, in unix milliseconds.
pub fn now_ms() -> u64 {
    unix_ms(std::time::SystemTime::now())
}
