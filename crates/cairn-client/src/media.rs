//! Media over HTTP. Uploads seal the blob once (64 KiB STREAM chunks, each chunk's address
//! leaf hashed beside its cipher, large blobs on several cores) and stream the ciphertext
//! out. Downloads resume with `Range` from what a partial file already holds, open each
//! chunk as it arrives (a player may read the opened part while the rest comes), check the
//! whole ciphertext's address at the end, and keep nothing in the cache unless every chunk
//! and the address check out.

use crate::error::ClientError;
use cairn_crypto::media::sealing_buffer;
use cairn_crypto::{CHUNK_SIZE, CryptoError, MediaDecryptor, MediaKey, MediaRef, seal_blob};
use cairn_proto::MediaHash;
use futures_util::StreamExt;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

/// `ws://host/v1/ws` -> `http://host`, `wss://` -> `https://`.
pub fn http_base(ws_url: &str) -> Result<String, ClientError> {
    let (scheme, rest) = ws_url
        .split_once("://")
        .ok_or_else(|| ClientError::BadServerUrl(format!("not a URL: {ws_url}")))?;
    let scheme = match scheme {
        "ws" => "http",
        "wss" => "https",
        other => {
            return Err(ClientError::BadServerUrl(format!(
                "a server URL starts with ws:// or wss://, not {other}://"
            )));
        }
    };
    let host = rest.split('/').next().unwrap_or(rest);
    Ok(format!("{scheme}://{host}"))
}

/// The server's WebSocket endpoint for a URL a person typed: `ws://host:port`, with no
/// path, means the server's `/v1/ws` (a bare host would otherwise be answered 404).
pub fn ws_endpoint(url: &str) -> Result<String, ClientError> {
    http_base(url)?;
    let rest = url.split_once("://").map_or("", |(_, rest)| rest);
    Ok(match rest.find(['/', '?', '#']) {
        None => format!("{url}/v1/ws"),
        Some(i) if &rest[i..] == "/" => format!("{url}v1/ws"),
        Some(_) => url.to_owned(),
    })
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
    // Copied once into a buffer with room for the tags and sealed there, off the async
    // threads (16 MiB is some milliseconds), then streamed.
    let (sealed, hash) = {
        let (key, blob) = (key.clone(), sealing_buffer(plaintext));
        tokio::task::spawn_blocking(move || seal_blob(&key, blob))
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

/// Where a blob's opened chunks grow while it downloads (renamed into the cache when whole).
pub fn arriving_path(home: &Path, hash: &MediaHash) -> PathBuf {
    home.join("media").join("partial").join(format!("{}.open", hash.to_hex()))
}

/// How much ciphertext is read from a partial download at a time when resuming.
const RESUME_PIECE: usize = 16 * CHUNK_SIZE;

/// Downloads (resuming), verifies and decrypts a blob into the cache.
///
/// Each chunk is opened as it arrives (the STREAM construction authenticates every chunk
/// and its place under the note's key) and its plaintext appended to the blob's
/// [`arriving_path`]; once that file holds the first chunk, `arriving` is given its path, so
/// a player can start before the end. At the end the whole ciphertext must hash to the
/// blob's address; only then is the file renamed into the cache. Anything that fails to
/// open or to match removes both partial files: nothing half-checked is kept.
pub async fn download(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    home: &Path,
    media: &MediaRef,
    arriving: &mut (dyn FnMut(&Path) + Send),
) -> Result<PathBuf, ClientError> {
    let dir = home.join("media");
    tokio::fs::create_dir_all(dir.join("partial")).await?;
    let partial = dir.join("partial").join(media.hash.to_hex());
    let open_path = arriving_path(home, &media.hash);
    let mut blob = Arriving {
        decryptor: MediaDecryptor::addressed(&media.key, media.hash),
        plain: Vec::with_capacity(RESUME_PIECE),
        // Written again from the start on every try: what a reader already took from it is
        // the same bytes (one key, one address), and nothing a broken try left stays.
        file: tokio::fs::File::create(&open_path).await?,
        announced: false,
    };
    let result = async {
        // What an earlier try brought goes through first.
        let mut have = 0u64;
        if let Ok(mut earlier) = tokio::fs::File::open(&partial).await {
            let mut piece = vec![0u8; RESUME_PIECE];
            loop {
                let n = tokio::io::AsyncReadExt::read(&mut earlier, &mut piece).await?;
                if n == 0 {
                    break;
                }
                have += n as u64;
                blob.take(&piece[..n], &open_path, arriving).await?;
            }
        }
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
            if !append && have > 0 {
                // The server sent the whole blob again: start over.
                blob.restart(&media.key, media.hash).await?;
            }
            let mut file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(append)
                .write(true)
                .truncate(!append)
                .open(&partial)
                .await?;
            let mut body = resp.bytes_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                file.write_all(&chunk).await?;
                blob.take(&chunk, &open_path, arriving).await?;
            }
            file.sync_all().await?;
        }
        blob.finish().await
    }
    .await;
    match result {
        Ok(()) => {
            let path = cache_path(home, &media.hash);
            tokio::fs::rename(&open_path, &path).await?;
            tokio::fs::remove_file(&partial).await?;
            Ok(path)
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&open_path).await;
            if matches!(e, ClientError::Crypto(_)) {
                // A ciphertext that does not open or match is not resumed.
                let _ = tokio::fs::remove_file(&partial).await;
            }
            Err(match e {
                ClientError::Crypto(CryptoError::WrongAddress) => ClientError::Http(
                    "the downloaded blob does not match its address; discarded".into(),
                ),
                e => e,
            })
        }
    }
}

/// A blob being opened as it arrives.
struct Arriving {
    decryptor: MediaDecryptor,
    plain: Vec<u8>,
    file: tokio::fs::File,
    announced: bool,
}

impl Arriving {
    /// Opens what `data` completes and appends it to the arriving file.
    async fn take(
        &mut self,
        data: &[u8],
        path: &Path,
        arriving: &mut (dyn FnMut(&Path) + Send),
    ) -> Result<(), ClientError> {
        self.plain.clear();
        self.decryptor.push(data, &mut self.plain)?;
        if !self.plain.is_empty() {
            self.file.write_all(&self.plain).await?;
            self.file.flush().await?;
            if !self.announced {
                self.announced = true;
                arriving(path);
            }
        }
        Ok(())
    }

    async fn restart(&mut self, key: &MediaKey, hash: MediaHash) -> Result<(), ClientError> {
        self.decryptor = MediaDecryptor::addressed(key, hash);
        self.file.set_len(0).await?;
        self.file.seek(std::io::SeekFrom::Start(0)).await?;
        Ok(())
    }

    /// The last chunk, after the address is checked; the file is made durable.
    async fn finish(mut self) -> Result<(), ClientError> {
        self.plain.clear();
        self.decryptor.finish(&mut self.plain)?;
        self.file.write_all(&self.plain).await?;
        self.file.sync_all().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_url_without_a_path_means_its_websocket_endpoint() {
        for (typed, meant) in [
            ("ws://127.0.0.1:7878", "ws://127.0.0.1:7878/v1/ws"),
            ("wss://cairn.example/", "wss://cairn.example/v1/ws"),
            ("ws://127.0.0.1:7878/v1/ws", "ws://127.0.0.1:7878/v1/ws"),
            ("wss://proxy.example/cairn/ws", "wss://proxy.example/cairn/ws"),
            ("ws://host?x=1", "ws://host?x=1"),
        ] {
            assert_eq!(ws_endpoint(typed).unwrap(), meant, "{typed}");
        }
        assert!(matches!(ws_endpoint("http://host"), Err(ClientError::BadServerUrl(_))));
        assert!(matches!(ws_endpoint("host:7878"), Err(ClientError::BadServerUrl(_))));
    }
}
