//! Media over HTTP: `PUT /v1/media/{address}` and `GET /v1/media/{address}` (with `Range`)
//! of the *ciphertext* of a blob, content-addressed. Authorization, size limits, hash checks
//! and ranges are done here, the same for every [`MediaStore`](crate::blobs::MediaStore):
//! files for one node, PostgreSQL for several.

use crate::blobs::MediaError;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cairn_proto::{Handle, MediaHash};
use futures_util::StreamExt;
use std::num::NonZeroUsize;
use std::sync::Arc;

/// Why a media request is refused: each is one HTTP answer, with a line of text saying why.
#[derive(Debug)]
pub enum MediaHttpError {
    /// The address is not 64 hex digits.
    BadAddress,
    /// No valid session token, or its device is revoked.
    Unauthorized,
    /// Declared or found larger than the limit.
    TooLarge(String),
    /// The upload's bytes do not hash to its address, or it broke off (or crawled).
    BadUpload(String),
    /// Absent, or not the caller's to read: the two look the same, so the answer reveals
    /// nothing about others' media.
    NotFound,
    /// A range past the blob's end (`size`: the blob's length).
    RangeNotSatisfiable { size: u64 },
    /// Our failure: logged with what was being done; the caller sees only that it failed.
    Internal { doing: &'static str, error: String },
}

impl MediaHttpError {
    fn internal(doing: &'static str, error: impl std::fmt::Display) -> Self {
        MediaHttpError::Internal { doing, error: error.to_string() }
    }
}

fn problem(status: StatusCode, msg: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{msg}\n"))
        .into_response()
}

impl IntoResponse for MediaHttpError {
    fn into_response(self) -> Response {
        match self {
            MediaHttpError::BadAddress => {
                problem(StatusCode::BAD_REQUEST, "the address must be 64 hex digits")
            }
            MediaHttpError::Unauthorized => {
                problem(StatusCode::UNAUTHORIZED, "a valid session token is required")
            }
            MediaHttpError::TooLarge(why) => problem(StatusCode::PAYLOAD_TOO_LARGE, &why),
            MediaHttpError::BadUpload(why) => problem(StatusCode::BAD_REQUEST, &why),
            MediaHttpError::NotFound => problem(StatusCode::NOT_FOUND, "no such blob"),
            MediaHttpError::RangeNotSatisfiable { size } => {
                let mut resp = problem(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    resp.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                resp
            }
            MediaHttpError::Internal { doing, error } => {
                tracing::error!(%error, "{doing}");
                problem(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
        }
    }
}

/// The caller's handle, from `Authorization: Bearer <session token>`.
async fn caller(state: &AppState, headers: &HeaderMap) -> Result<Handle, MediaHttpError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(MediaHttpError::Unauthorized)?;
    let claims = state
        .tokens
        .check(token.trim(), cairn_proto::now_ms())
        .ok_or(MediaHttpError::Unauthorized)?;
    match state.store.device_owner(&claims.device).await {
        Ok(Some(o)) if !o.revoked && o.handle == claims.handle => Ok(claims.handle),
        Ok(_) => Err(MediaHttpError::Unauthorized),
        Err(e) => Err(MediaHttpError::internal("device lookup", e)),
    }
}

fn parse_hash(hex: &str) -> Result<MediaHash, MediaHttpError> {
    MediaHash::from_hex(hex).filter(|_| hex.len() == 64).ok_or(MediaHttpError::BadAddress)
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
) -> Result<StatusCode, MediaHttpError> {
    let hash = parse_hash(&hex)?;
    let handle = caller(&state, &headers).await?;
    let max = state.config.max_media_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(MediaHttpError::TooLarge(format!("the limit is {max} bytes")));
    }
    let body = keep_pace(&state, body.into_data_stream().map(|r| r.map_err(std::io::Error::other)))
        .boxed();
    let size = state.media.put(&hash, body, max).await.map_err(|e| match e {
        MediaError::TooLarge(_) => MediaHttpError::TooLarge(e.to_string()),
        MediaError::HashMismatch | MediaError::Interrupted => {
            MediaHttpError::BadUpload(e.to_string())
        }
        e => MediaHttpError::internal("media write", e),
    })?;
    state
        .store
        .record_media(&hash, &handle, size, cairn_proto::now_ms())
        .await
        .map_err(|e| MediaHttpError::internal("record media", e))?;
    Ok(StatusCode::CREATED)
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(hex): Path<String>,
    req: Request,
) -> Result<Response, MediaHttpError> {
    let hash = parse_hash(&hex)?;
    let handle = caller(&state, req.headers()).await?;
    let readable = state
        .store
        .media_readable_by(&hash, &handle)
        .await
        .map_err(|e| MediaHttpError::internal("media lookup", e))?;
    if !readable {
        return Err(MediaHttpError::NotFound);
    }
    let size = state
        .media
        .size(&hash)
        .await
        .map_err(|e| MediaHttpError::internal("media size", e))?
        .ok_or(MediaHttpError::NotFound)?;
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
        Some(Err(_)) => return Err(MediaHttpError::RangeNotSatisfiable { size }),
    };
    let stream = state
        .media
        .read(&hash, start, end)
        .await
        .map_err(|e| MediaHttpError::internal("media read", e))?;
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
    Ok(resp)
}
