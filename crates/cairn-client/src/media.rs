//! Media over HTTP. Uploads encrypt in 64 KiB chunks as the body streams out (a first pass
//! computes the address: the chunk nonces are deterministic under the blob's fresh key, so
//! both passes produce the same bytes). Downloads resume with `Range` from what a partial
//! file already holds, check the SHA-256 of the whole ciphertext, and decrypt in chunks.

use crate::error::ClientError;
use cairn_crypto::{CHUNK_SIZE, MediaDecryptor, MediaEncryptor, MediaKey, MediaRef};
use cairn_proto::MediaHash;
use futures_util::StreamExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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

/// Seals every chunk in turn, handing each to `each`; returns the blob's address.
fn encrypt_chunks(key: &MediaKey, plaintext: &[u8], mut each: impl FnMut(&[u8])) -> MediaHash {
    let mut enc = MediaEncryptor::new(key);
    let mut rest = plaintext;
    let mut buf = Vec::with_capacity(CHUNK_SIZE + 16);
    loop {
        let take = rest.len().min(CHUNK_SIZE);
        let last = rest.len() < CHUNK_SIZE;
        buf.clear();
        enc.seal_chunk(&rest[..take], last, &mut buf);
        each(&buf);
        rest = &rest[take..];
        if last {
            break;
        }
    }
    enc.hash()
}

/// Encrypts and uploads a blob under a fresh key.
pub async fn upload(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    plaintext: &[u8],
    mime: &str,
) -> Result<MediaRef, ClientError> {
    let key = MediaKey::generate();
    let mut len = 0u64;
    let hash = encrypt_chunks(&key, plaintext, |c| len += c.len() as u64);
    let data: Arc<Vec<u8>> = Arc::new(plaintext.to_vec());
    let stream_key = key.clone();
    let chunks = futures_util::stream::iter(0..=data.len() / CHUNK_SIZE).map(move |i| {
        let mut enc_out = Vec::new();
        // Re-derive chunk i: STREAM is deterministic under one key.
        let start = i * CHUNK_SIZE;
        let end = (start + CHUNK_SIZE).min(data.len());
        let last = data.len() - start < CHUNK_SIZE;
        let mut enc = MediaEncryptor::at_chunk(&stream_key, i as u32);
        enc.seal_chunk(&data[start..end], last, &mut enc_out);
        Ok::<_, std::io::Error>(enc_out)
    });
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
    // Verify the whole ciphertext against its address, then decrypt chunk by chunk.
    let ciphertext = tokio::fs::read(&partial).await?;
    if cairn_crypto::sha256(&ciphertext) != media.hash.0 {
        tokio::fs::remove_file(&partial).await?;
        return Err(ClientError::Http(
            "the downloaded blob does not match its address; discarded".into(),
        ));
    }
    let mut plain = Vec::with_capacity(ciphertext.len());
    let mut dec = MediaDecryptor::new(&media.key);
    for part in ciphertext.chunks(CHUNK_SIZE + 16) {
        dec.push(part, &mut plain)?;
    }
    dec.finish(&mut plain)?;
    cache_put(home, &media.hash, &plain)?;
    tokio::fs::remove_file(&partial).await?;
    Ok(cache_path(home, &media.hash))
}
