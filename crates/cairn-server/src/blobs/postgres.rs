//! Blobs in PostgreSQL, so that every node serves every blob: a blob is a row in
//! `media_blobs` and its bytes are rows of `media_chunks` (256 KiB each). An upload is one
//! transaction: chunks go in as they arrive, the `media_blobs` row last, and only a body of
//! the right size and hash commits; anything else rolls back and leaves nothing behind.

use super::{ByteStream, MediaError, MediaStore, Upload};
use async_trait::async_trait;
use bytes::Bytes;
use cairn_proto::MediaHash;
use deadpool_postgres::Pool;
use futures_util::StreamExt;

/// Bytes per stored chunk.
pub const CHUNK: usize = 256 * 1024;

impl From<tokio_postgres::Error> for MediaError {
    fn from(e: tokio_postgres::Error) -> Self {
        MediaError::Backend(e.to_string())
    }
}

impl From<deadpool_postgres::PoolError> for MediaError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        MediaError::Backend(format!("database pool: {e}"))
    }
}

/// Over the same (migrated) pool as the record store.
pub struct PgMediaStore {
    pool: Pool,
}

impl PgMediaStore {
    pub fn new(pool: Pool) -> Self {
        PgMediaStore { pool }
    }
}

#[async_trait]
impl MediaStore for PgMediaStore {
    async fn put(&self, hash: &MediaHash, body: ByteStream, max: u64) -> Result<u64, MediaError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let key = &hash;
        // Already stored: check the body all the same (the uploader gains read access by it),
        // but write nothing.
        let exists =
            tx.query_opt("SELECT 1 FROM media_blobs WHERE hash = $1", &[&key]).await?.is_some();
        let insert = tx
            .prepare_cached(
                "INSERT INTO media_chunks (hash, idx, data) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .await?;
        let mut upload = Upload::new(body, max);
        let mut pending: Vec<u8> = Vec::with_capacity(CHUNK);
        let mut idx: i32 = 0;
        while let Some(piece) = upload.next().await? {
            if exists {
                continue;
            }
            let mut rest = &piece[..];
            while !rest.is_empty() {
                let take = rest.len().min(CHUNK - pending.len());
                pending.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if pending.len() == CHUNK {
                    tx.execute(&insert, &[&key, &idx, &pending]).await?;
                    pending.clear();
                    idx += 1;
                }
            }
        }
        let size = upload.finish(hash)?;
        if !exists {
            if !pending.is_empty() {
                tx.execute(&insert, &[&key, &idx, &pending]).await?;
            }
            tx.execute(
                "INSERT INTO media_blobs (hash, size, chunk) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&key, &(size as i64), &(CHUNK as i32)],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(size)
    }

    async fn size(&self, hash: &MediaHash) -> Result<Option<u64>, MediaError> {
        let client = self.pool.get().await?;
        let row =
            client.query_opt("SELECT size FROM media_blobs WHERE hash = $1", &[&hash]).await?;
        Ok(row.map(|r| r.get::<_, i64>(0) as u64))
    }

    async fn read(&self, hash: &MediaHash, start: u64, end: u64) -> Result<ByteStream, MediaError> {
        let client = self.pool.get().await?;
        let chunk: i32 = client
            .query_opt("SELECT chunk FROM media_blobs WHERE hash = $1", &[&hash])
            .await?
            .ok_or_else(|| MediaError::Backend("blob vanished".into()))?
            .get(0);
        let chunk = chunk.max(1) as u64;
        let stmt = client
            .prepare_cached("SELECT data FROM media_chunks WHERE hash = $1 AND idx = $2")
            .await?;
        let key = hash.0.to_vec();
        // One chunk per round trip: a large blob streams without being held in memory.
        let stream =
            futures_util::stream::unfold((client, stmt, start), move |(client, stmt, at)| {
                let key = key.clone();
                async move {
                    if at >= end {
                        return None;
                    }
                    let idx = (at / chunk) as i32;
                    let row = match client.query_opt(&stmt, &[&key, &idx]).await {
                        Ok(Some(row)) => row,
                        Ok(None) => {
                            let e = std::io::Error::other(format!("chunk {idx} is missing"));
                            return Some((Err(e), (client, stmt, end)));
                        }
                        Err(e) => {
                            return Some((Err(std::io::Error::other(e)), (client, stmt, end)));
                        }
                    };
                    let data: &[u8] = row.get(0);
                    let from = (at - idx as u64 * chunk) as usize;
                    let to = ((end - idx as u64 * chunk) as usize).min(data.len());
                    if from >= to {
                        let e = std::io::Error::other(format!("chunk {idx} is short"));
                        return Some((Err(e), (client, stmt, end)));
                    }
                    let bytes = Bytes::copy_from_slice(&data[from..to]);
                    let next = at + bytes.len() as u64;
                    Some((Ok(bytes), (client, stmt, next)))
                }
            });
        Ok(stream.boxed())
    }

    async fn delete(&self, hashes: &[MediaHash]) -> Result<(), MediaError> {
        let keys: Vec<&[u8]> = hashes.iter().map(|h| &h.0[..]).collect();
        let client = self.pool.get().await?;
        client.execute("DELETE FROM media_blobs WHERE hash = ANY($1)", &[&keys]).await?;
        Ok(())
    }
}
