//! Blobs as files, content-addressed: `ab/abcdef…`. An upload streams to `tmp/` while it
//! is hashed, is fsynced, renamed into place and the directory fsynced before it counts,
//! so an acknowledged blob survives a crash and a half-written one is never served.

use super::{ByteStream, MediaError, MediaStore, Upload};
use async_trait::async_trait;
use cairn_proto::MediaHash;
use futures_util::StreamExt;
use std::path::PathBuf;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

pub struct FsMediaStore {
    dir: PathBuf,
}

impl FsMediaStore {
    /// Opens (creating) `dir`; uploads left in `tmp/` by a stopped process are removed,
    /// since none of them was acknowledged.
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        crate::private_dir(&dir.join("tmp"))?;
        crate::private_dir(&dir)?;
        for entry in std::fs::read_dir(dir.join("tmp"))? {
            let _ = std::fs::remove_file(entry?.path());
        }
        Ok(FsMediaStore { dir })
    }

    /// Where a blob's bytes live.
    pub fn blob_path(&self, hash: &MediaHash) -> PathBuf {
        let hex = hash.to_hex();
        self.dir.join(&hex[..2]).join(hex)
    }
}

#[async_trait]
impl MediaStore for FsMediaStore {
    async fn put(&self, hash: &MediaHash, body: ByteStream, max: u64) -> Result<u64, MediaError> {
        let tmp =
            self.dir.join("tmp").join(format!("{}.part", hex::encode(crate::auth::random32())));
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .await?;
        let written: Result<u64, MediaError> = async {
            let mut upload = Upload::new(body, max);
            while let Some(chunk) = upload.next().await? {
                file.write_all(&chunk).await?;
            }
            let size = upload.finish(hash)?;
            file.sync_all().await?;
            Ok(size)
        }
        .await;
        drop(file);
        let size = match written {
            Ok(size) => size,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        let dest = self.blob_path(hash);
        let dir = dest.parent().expect("blob paths have a parent").to_path_buf();
        tokio::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).await?;
        if tokio::fs::try_exists(&dest).await.unwrap_or(false) {
            // Deduplicated: the same bytes are already durable.
            let _ = tokio::fs::remove_file(&tmp).await;
        } else {
            tokio::fs::rename(&tmp, &dest).await?;
            tokio::fs::File::open(&dir).await?.sync_all().await?;
        }
        Ok(size)
    }

    async fn size(&self, hash: &MediaHash) -> Result<Option<u64>, MediaError> {
        match tokio::fs::metadata(self.blob_path(hash)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn read(&self, hash: &MediaHash, start: u64, end: u64) -> Result<ByteStream, MediaError> {
        let mut file = tokio::fs::File::open(self.blob_path(hash)).await?;
        file.seek(std::io::SeekFrom::Start(start)).await?;
        let limited = file.take(end.saturating_sub(start));
        Ok(tokio_util::io::ReaderStream::with_capacity(limited, 64 * 1024).boxed())
    }

    async fn delete(&self, hashes: &[MediaHash]) -> Result<(), MediaError> {
        for h in hashes {
            match tokio::fs::remove_file(self.blob_path(h)).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}
