//! Where the bytes of media blobs live, behind one trait: the filesystem for a single node,
//! PostgreSQL (chunked) when several nodes share the work. The HTTP layer (`media.rs`)
//! does authorization, limits and `Range` the same way for both.

pub mod fs;
#[cfg(feature = "postgres")]
pub mod postgres;

use async_trait::async_trait;
use bytes::Bytes;
use cairn_proto::{AddressHasher, MediaHash};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

/// A body going in or coming out.
pub type ByteStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("the limit is {0} bytes")]
    TooLarge(u64),
    #[error("the body's hash does not match its address")]
    HashMismatch,
    #[error("upload interrupted")]
    Interrupted,
    #[error("media backend: {0}")]
    Backend(String),
}

impl From<std::io::Error> for MediaError {
    fn from(e: std::io::Error) -> Self {
        MediaError::Backend(e.to_string())
    }
}

#[async_trait]
pub trait MediaStore: Send + Sync + 'static {
    /// Streams `body` in and keeps it only if it is at most `max` bytes and its address
    /// (`cairn_proto::address`) is `hash`; returns its size once it is durable. Storing a
    /// blob that is already there checks the body all the same and keeps one copy.
    async fn put(&self, hash: &MediaHash, body: ByteStream, max: u64) -> Result<u64, MediaError>;
    /// The size of a stored blob.
    async fn size(&self, hash: &MediaHash) -> Result<Option<u64>, MediaError>;
    /// Bytes `start..end` of a stored blob (`end` at most its size).
    async fn read(&self, hash: &MediaHash, start: u64, end: u64) -> Result<ByteStream, MediaError>;
    /// Forgets blobs (collected by the store once nothing references them).
    async fn delete(&self, hashes: &[MediaHash]) -> Result<(), MediaError>;
}

/// An upload's body as it arrives: each piece is counted against the limit and hashed
/// before the store sees it.
pub struct Upload {
    body: ByteStream,
    hasher: AddressHasher,
    size: u64,
    max: u64,
}

impl Upload {
    pub fn new(body: ByteStream, max: u64) -> Self {
        Upload { body, hasher: AddressHasher::new(), size: 0, max }
    }

    /// The next piece; `Interrupted` if the body broke off, `TooLarge` as soon as the limit
    /// is passed.
    pub async fn next(&mut self) -> Result<Option<Bytes>, MediaError> {
        let Some(piece) = self.body.next().await else { return Ok(None) };
        let piece = piece.map_err(|_| MediaError::Interrupted)?;
        self.size += piece.len() as u64;
        if self.size > self.max {
            return Err(MediaError::TooLarge(self.max));
        }
        self.hasher.update(&piece);
        Ok(Some(piece))
    }

    /// The size, if the whole body hashed to `hash`.
    pub fn finish(self, hash: &MediaHash) -> Result<u64, MediaError> {
        if self.hasher.finish() == *hash { Ok(self.size) } else { Err(MediaError::HashMismatch) }
    }
}
