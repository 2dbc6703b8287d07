//! Media over HTTP: `PUT /v1/media/{sha256}` and `GET /v1/media/{sha256}` (with `Range`)
//! of the *ciphertext* of a blob, on the local filesystem, content-addressed.
//!
//! An upload streams to a temporary file while hashing, is checked against its address,
//! fsynced and renamed into place (and the directory fsynced) before it is answered, so an
//! acknowledged blob survives a crash and a half-written one is never served.

// Handlers answer with an HTTP response on every path, errors included; boxing them would
// only add an allocation.
#![allow(clippy::result_large_err)]

use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cairn_proto::MediaHash;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tower::ServiceExt;

fn problem(status: StatusCode, msg: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{msg}\n"))
        .into_response()
}

/// Where a blob's bytes live.
pub fn blob_path(state: &AppState, hash: &MediaHash) -> PathBuf {
    let hex = hash.to_hex();
    state.media_dir.join(&hex[..2]).join(hex)
}

/// The caller's handle, from `Authorization: Bearer <session token>`.
async fn caller(state: &AppState, headers: &HeaderMap) -> Result<String, Response> {
    let unauthorized = || problem(StatusCode::UNAUTHORIZED, "a valid session token is required");
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(unauthorized)?;
    let claims =
        state.tokens.check(token.trim(), cairn_proto::now_ms()).ok_or_else(unauthorized)?;
    match state.store.device_owner(&claims.device).await {
        Ok(Some(o)) if !o.revoked && o.handle == claims.handle => Ok(claims.handle),
        Ok(_) => Err(unauthorized()),
        Err(e) => {
            tracing::error!(error = %e, "device lookup");
            Err(problem(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))
        }
    }
}

fn parse_hash(hex: &str) -> Result<MediaHash, Response> {
    MediaHash::from_hex(hex).filter(|_| hex.len() == 64).ok_or_else(|| {
        problem(StatusCode::BAD_REQUEST, "the address must be 64 hex digits of SHA-256")
    })
}

pub async fn put(
    State(state): State<Arc<AppState>>,
    Path(hex): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let hash = match parse_hash(&hex) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let handle = match caller(&state, &headers).await {
        Ok(h) => h,
        Err(r) => return r,
    };
    let max = state.config.max_media_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return problem(StatusCode::PAYLOAD_TOO_LARGE, &format!("the limit is {max} bytes"));
    }
    match store_upload(&state, &hash, body, max).await {
        Ok(size) => {
            match state.store.record_media(&hash, &handle, size, cairn_proto::now_ms()).await {
                Ok(()) => StatusCode::CREATED.into_response(),
                Err(e) => {
                    tracing::error!(error = %e, "record media");
                    problem(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
                }
            }
        }
        Err(r) => r,
    }
}

/// Streams the body to a temporary file, checks size and hash, and moves it into place.
async fn store_upload(
    state: &AppState,
    hash: &MediaHash,
    body: Body,
    max: u64,
) -> Result<u64, Response> {
    let internal = |e: std::io::Error| {
        tracing::error!(error = %e, "media write");
        problem(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    };
    let tmp_dir = state.media_dir.join("tmp");
    let tmp = tmp_dir.join(format!("{}.part", hex::encode(crate::auth::random32())));
    let mut file = tokio::fs::File::create(&tmp).await.map_err(internal)?;
    let result: Result<u64, Response> = async {
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|_| problem(StatusCode::BAD_REQUEST, "upload interrupted"))?;
            size += chunk.len() as u64;
            if size > max {
                return Err(problem(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("the limit is {max} bytes"),
                ));
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(internal)?;
        }
        if <[u8; 32]>::from(hasher.finalize()) != hash.0 {
            return Err(problem(
                StatusCode::BAD_REQUEST,
                "the body's SHA-256 does not match its address",
            ));
        }
        file.sync_all().await.map_err(internal)?;
        Ok(size)
    }
    .await;
    drop(file);
    let size = match result {
        Ok(size) => size,
        Err(r) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(r);
        }
    };
    let dest = blob_path(state, hash);
    let dir = dest.parent().expect("blob paths have a parent").to_path_buf();
    tokio::fs::create_dir_all(&dir).await.map_err(internal)?;
    if tokio::fs::try_exists(&dest).await.unwrap_or(false) {
        // Deduplicated: the same bytes are already durable.
        let _ = tokio::fs::remove_file(&tmp).await;
    } else {
        tokio::fs::rename(&tmp, &dest).await.map_err(internal)?;
        let dir = tokio::fs::File::open(&dir).await.map_err(internal)?;
        dir.sync_all().await.map_err(internal)?;
    }
    Ok(size)
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(hex): Path<String>,
    req: Request,
) -> Response {
    let hash = match parse_hash(&hex) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let handle = match caller(&state, req.headers()).await {
        Ok(h) => h,
        Err(r) => return r,
    };
    // Absent and not allowed look the same, so the answer reveals nothing about others' media.
    match state.store.media_readable_by(&hash, &handle).await {
        Ok(true) => {}
        Ok(false) => return problem(StatusCode::NOT_FOUND, "no such blob"),
        Err(e) => {
            tracing::error!(error = %e, "media lookup");
            return problem(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
    }
    match tower_http::services::ServeFile::new(blob_path(&state, &hash)).oneshot(req).await {
        Ok(resp) => resp.map(Body::new).into_response(),
        Err(never) => match never {},
    }
}

/// Deletes the bytes of collected blobs.
pub async fn delete_blobs(state: &AppState, hashes: &[MediaHash]) {
    for h in hashes {
        if let Err(e) = tokio::fs::remove_file(blob_path(state, h)).await {
            tracing::warn!(error = %e, hash = %h, "could not delete a collected blob");
        }
    }
}
