//! Media over HTTP: `PUT /v1/media/{sha256}` and `GET /v1/media/{sha256}` (with `Range`)
//! of the *ciphertext* of a blob, content-addressed. Authorization, size limits, hash checks
//! and ranges are done here, the same for every [`MediaStore`](crate::blobs::MediaStore):
//! files for one node, PostgreSQL for several.

// Handlers answer with an HTTP response on every path, errors included; boxing them would
// only add an allocation.
#![allow(clippy::result_large_err)]

use crate::blobs::MediaError;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cairn_proto::MediaHash;
use futures_util::StreamExt;
use std::num::NonZeroUsize;
use std::sync::Arc;

fn problem(status: StatusCode, msg: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{msg}\n"))
        .into_response()
}

fn internal(what: &str, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "{what}");
    problem(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
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

/// An upload must keep moving: no gap of more than [`UPLOAD_IDLE`] between chunks, and at
/// least [`UPLOAD_MIN_BYTES`] in every [`UPLOAD_IDLE`] window, or it is cut off (and its
/// temporary file removed), so that a trickle cannot hold a connection and a file forever.
pub const UPLOAD_IDLE: std::time::Duration = std::time::Duration::from_secs(10);
pub const UPLOAD_MIN_BYTES: usize = 16 * 1024;

fn keep_pace<S>(
    state: &Arc<AppState>,
    body: S,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static
where
    S: futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + Unpin + 'static,
{
    let state = state.clone();
    let window = (tokio::time::Instant::now(), 0usize);
    futures_util::stream::unfold((body, window, false), move |(mut body, (start, got), done)| {
        let state = state.clone();
        async move {
            if done {
                return None;
            }
            let slow = || {
                state.metrics.slow_uploads.inc();
                std::io::Error::new(std::io::ErrorKind::TimedOut, "the upload is too slow")
            };
            match tokio::time::timeout(UPLOAD_IDLE, body.next()).await {
                Err(_) => Some((Err(slow()), (body, (start, got), true))),
                Ok(None) => None,
                Ok(Some(Err(e))) => Some((Err(e), (body, (start, got), true))),
                Ok(Some(Ok(chunk))) => {
                    let got = got + chunk.len();
                    if start.elapsed() < UPLOAD_IDLE {
                        Some((Ok(chunk), (body, (start, got), false)))
                    } else if got < UPLOAD_MIN_BYTES {
                        Some((Err(slow()), (body, (start, got), true)))
                    } else {
                        Some((Ok(chunk), (body, (tokio::time::Instant::now(), 0), false)))
                    }
                }
            }
        }
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
    let body = keep_pace(&state, body.into_data_stream().map(|r| r.map_err(std::io::Error::other)))
        .boxed();
    let size = match state.media.put(&hash, body, max).await {
        Ok(size) => size,
        Err(e @ MediaError::TooLarge(_)) => {
            return problem(StatusCode::PAYLOAD_TOO_LARGE, &e.to_string());
        }
        Err(e @ (MediaError::HashMismatch | MediaError::Interrupted)) => {
            return problem(StatusCode::BAD_REQUEST, &e.to_string());
        }
        Err(e) => return internal("media write", e),
    };
    match state.store.record_media(&hash, &handle, size, cairn_proto::now_ms()).await {
        Ok(()) => StatusCode::CREATED.into_response(),
        Err(e) => internal("record media", e),
    }
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
    let not_found = || problem(StatusCode::NOT_FOUND, "no such blob");
    match state.store.media_readable_by(&hash, &handle).await {
        Ok(true) => {}
        Ok(false) => return not_found(),
        Err(e) => return internal("media lookup", e),
    }
    let size = match state.media.size(&hash).await {
        Ok(Some(size)) => size,
        Ok(None) => return not_found(),
        Err(e) => return internal("media size", e),
    };
    // One range at most; a header we cannot use is ignored (RFC 9110 allows it) and the
    // whole blob is sent.
    let one = NonZeroUsize::new(1).expect("1 is not zero");
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| http_range_header::parse_range_header_with_max_ranges(v, one).ok())
        .map(|ranges| ranges.validate(size));
    let (status, start, end) = match range {
        None => (StatusCode::OK, 0, size),
        Some(Ok(r)) if r.len() == 1 => (StatusCode::PARTIAL_CONTENT, *r[0].start(), r[0].end() + 1),
        Some(Ok(_)) => (StatusCode::OK, 0, size),
        Some(Err(_)) => {
            let mut resp = problem(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return resp;
        }
    };
    let stream = match state.media.read(&hash, start, end).await {
        Ok(s) => s,
        Err(e) => return internal("media read", e),
    };
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    // Content-addressed: the bytes at an address never change.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", hash.to_hex())) {
        h.insert(header::ETAG, v);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    resp
}
