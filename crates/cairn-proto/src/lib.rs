//! Cairn's wire protocol: every message as serde types, and the CBOR codec that puts one
//! message in each binary WebSocket frame. It does no I/O and no encryption; it says which
//! bytes a signature covers (`sign`) and how a media blob's address is hashed (`address`),
//! the one hash the server computes too. The prose specification is `docs/PROTOCOL.md`.

pub mod address;
pub mod ids;
pub mod membership;
pub mod messages;
pub mod sign;

pub use address::{ADDRESS_PIECE, AddressHasher, address_from_leaves, address_leaf};
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
    encode_sized(value, 128)
}

/// [`encode`] into a buffer of `capacity` bytes to start with: a frame carrying a note is
/// encoded without growing its buffer three or four times.
pub fn encode_sized<T: Serialize>(value: &T, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
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
    definite_lengths_only(bytes)?;
    let mut reader = bytes;
    let value = ciborium::de::from_reader_with_recursion_limit(&mut reader, MAX_DEPTH)
        .map_err(|e| DecodeError::Invalid(for_people(e)))?;
    if !reader.is_empty() {
        return Err(DecodeError::Trailing(reader.len()));
    }
    Ok(value)
}

/// The decoder's error as a sentence for people (not its Rust form).
fn for_people(e: ciborium::de::Error<std::io::Error>) -> String {
    use ciborium::de::Error;
    match e {
        Error::Io(_) => "the message is cut short".into(),
        Error::Syntax(at) => format!("not valid CBOR (at byte {at})"),
        Error::Semantic(_, why) => why,
        Error::RecursionLimitExceeded => "the message is nested too deeply".into(),
    }
}

/// Refuses indefinite-length items (byte and text strings, arrays and maps of unknown
/// length, and the "break" that ends them) and reserved headers: the protocol's CBOR has
/// definite lengths only (docs/PROTOCOL.md §2). Walks the item headers without decoding.
fn definite_lengths_only(bytes: &[u8]) -> Result<(), DecodeError> {
    let bad = |why: String| Err(DecodeError::Invalid(why));
    let mut at = 0usize;
    // Items still to read; one top-level item.
    let mut pending: u64 = 1;
    while pending > 0 {
        pending -= 1;
        let Some(&first) = bytes.get(at) else { return bad("the message is cut short".into()) };
        let (major, info) = (first >> 5, first & 0x1f);
        at += 1;
        let value: u64 = match info {
            0..=23 => u64::from(info),
            24..=27 => {
                let n = 1usize << (info - 24);
                let Some(arg) = bytes.get(at..at + n) else {
                    return bad("the message is cut short".into());
                };
                at += n;
                arg.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b))
            }
            31 => {
                return bad(format!(
                    "indefinite-length CBOR (at byte {}): definite lengths only",
                    at - 1
                ));
            }
            _ => return bad(format!("a reserved CBOR header (at byte {})", at - 1)),
        };
        match major {
            2 | 3 => {
                let end = usize::try_from(value).ok().and_then(|v| at.checked_add(v));
                match end {
                    Some(end) if end <= bytes.len() => at = end,
                    _ => return bad("the message is cut short".into()),
                }
            }
            4 => pending = pending.saturating_add(value),
            5 => pending = pending.saturating_add(value.saturating_mul(2)),
            6 => pending = pending.saturating_add(1),
            _ => {}
        }
        // Every item takes at least a byte: more pending items than bytes left is a lie.
        if pending > (bytes.len() - at) as u64 {
            return bad("the message is cut short".into());
        }
    }
    Ok(())
}

/// Unix time in milliseconds, from a `SystemTime`.
pub fn unix_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Now, in unix milliseconds.
pub fn now_ms() -> u64 {
    unix_ms(std::time::SystemTime::now())
}
