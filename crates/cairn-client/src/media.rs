//! Media over HTTP. Uploads seal the blob once (64 KiB STREAM chunks, hashed beside the
//! cipher for the address) and stream the ciphertext out. Downloads resume with `Range`
//! from what a partial file already holds, then check the SHA-256 of the whole ciphertext
//! while they decrypt it, and keep nothing unless both check out.

use crate::error::ClientError;
use cairn_crypto::{CHUNK_SIZE, CryptoError, MediaKey, MediaRef, decrypt_blob, encrypt_blob_with};
use cairn_proto::MediaHash;
use futures_util::StreamExt;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// `ws://host/v1/ws` -> `http://host`, `wss://` -> `https://`.
pub fn http_base(ws_url: &str) -> Result<String, ClientError> {
    let (scheme, rest) = ws_url
        .split_once("://")
        .ok_or_else(|| ClientError::Invalid(format!("not a URL: {ws_url}")))?;
    let scheme = match scheme {
        "ws" => "http",
        "wss" => "https",
        other => {
            return Err(ClientError::Invalid(format!(
                "a server URL starts with ws:// or wss://, not {other}://"
            )));
        }
    };
    let host = rest.split('/').next().unwrap_or(rest);
    Ok(format!("{scheme}://{host}"))
}

pub fn cache_path(home: &Path, hash: &MediaHash) -> PathBuf {
    home.join("media").join(hash.to_hex())
}

pub fn cache_put(home: &Path, hash: &MediaHash, plaintext: &[u8]) -> Result<(), ClientError> {
    let path = cache_path(home, hash);
    std::fs::create_dir_all(path.parent().expect("has a parent"))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, plaintext)?;
    std::fs::rename(tmp, path)?;
    Ok(())
}

/// How much of a blob goes into one piece of the upload's body.
const UPLOAD_PIECE: usize = 4 * CHUNK_SIZE;

/// Encrypts and uploads a blob under a fresh key.
pub async fn upload(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    plaintext: &[u8],
    mime: &str,
) -> Result<MediaRef, ClientError> {
    let key = MediaKey::generate();
    // Sealed once, off the async threads (16 MiB is some milliseconds), then streamed.
    let (sealed, hash) = {
        let (key, plaintext) = (key.clone(), plaintext.to_vec());
        tokio::task::spawn_blocking(move || encrypt_blob_with(&key, &plaintext))
            .await
            .map_err(|e| ClientError::Protocol(format!("sealing a blob: {e}")))?
    };
    let len = sealed.len() as u64;
    let sealed = bytes::Bytes::from(sealed);
    let pieces = (0..sealed.len().div_ceil(UPLOAD_PIECE)).map(move |i| {
        let end = ((i + 1) * UPLOAD_PIECE).min(sealed.len());
        Ok::<_, std::io::Error>(sealed.slice(i * UPLOAD_PIECE..end))
    });
    let chunks = futures_util::stream::iter(pieces);
    let resp = http
        .put(format!("{base}/v1/media/{hash}"))
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_LENGTH, len)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await?;
    if !resp.status().is_success() {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        return Err(ClientError::Http(format!("upload refused ({status}): {}", text.trim())));
    }
    Ok(MediaRef { hash, key, size: plaintext.len() as u64, mime: mime.to_owned() })
}

/// Downloads (resuming), verifies and decrypts a blob into the cache.
pub async fn download(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    home: &Path,
    media: &MediaRef,
) -> Result<PathBuf, ClientError> {
    let dir = home.join("media");
    tokio::fs::create_dir_all(dir.join("partial")).await?;
    let partial = dir.join("partial").join(media.hash.to_hex());
    let have = tokio::fs::metadata(&partial).await.map(|m| m.len()).unwrap_or(0);
    let mut req = http.get(format!("{base}/v1/media/{}", media.hash)).bearer_auth(token);
    if have > 0 {
        req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let resp = req.send().await?;
    let status = resp.status();
    let append = status == reqwest::StatusCode::PARTIAL_CONTENT;
    if !(status.is_success() || status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE) {
        return Err(ClientError::Http(format!("download refused ({status})")));
    }
    if status != reqwest::StatusCode::RANGE_NOT_SATISFIABLE {
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(append)
            .write(true)
            .truncate(!append)
            .open(&partial)
            .await?;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            file.write_all(&chunk?).await?;
        }
        file.sync_all().await?;
    }
    // Checked against its address (hashed beside the decryption) and decrypted in one pass.
    let ciphertext = tokio::fs::read(&partial).await?;
    let (key, hash) = (media.key.clone(), media.hash);
    let opened = tokio::task::spawn_blocking(move || decrypt_blob(&key, &ciphertext, Some(&hash)))
        .await
        .map_err(|e| ClientError::Protocol(format!("opening a blob: {e}")))?;
    let plain = match opened {
        Ok(plain) => plain,
        Err(CryptoError::WrongAddress) => {
            tokio::fs::remove_file(&partial).await?;
            return Err(ClientError::Http(
                "the downloaded blob does not match its address; discarded".into(),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    cache_put(home, &media.hash, &plain)?;
    tokio::fs::remove_file(&partial).await?;
    Ok(cache_path(home, &media.hash))
}
