//! One WebSocket connection: the handshake (hello, then register, login or resume), then
//! requests answered in order, events pushed as they come, pings while idle, and a close
//! code that says why whenever the server ends it.

use crate::error::ServerError;
use crate::handlers;
use crate::hub::{QUEUE, Queued};
use crate::state::{AppState, Bucket};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use cairn_proto::{
    Challenge, ClientFrame, ErrorCode, Limits, PROTOCOL_VERSION, ProtoError, Request, Response,
    ServerFrame,
};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

/// Close codes (RFC 6455 §7.4.1).
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const UNSUPPORTED: u16 = 1003;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const TRY_AGAIN: u16 = 1013;
}

/// Consecutive rejected requests after which a flooding connection is closed.
const FLOOD_CLOSE_AFTER: u32 = 64;
/// Posts and syncs one connection may have in flight at once (their commits share a
/// group commit). Answers still go out in request order.
const MAX_IN_FLIGHT: usize = 64;

/// Syncs one connection may have in flight. Each answer is a page of up to a frame, held
/// in memory until the peer reads it: a connection that does not read holds at most these.
const MAX_SYNCS_IN_FLIGHT: usize = 4;
/// How long writing to a peer may take before the connection is dropped: a peer that does
/// not read its answers releases what they hold.
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// What an answer holds until it is written: its place among the connection's syncs in
/// flight and its share of the server's budget of unsent pages.
type Budget = Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)>;
type Answer = std::pin::Pin<Box<dyn std::future::Future<Output = (ServerFrame, Budget)> + Send>>;

/// Whether a request may run beside others from the same connection. Everything else
/// waits until those in flight are answered, so that, say, a delete never overtakes the
/// post it deletes.
fn concurrent(request: &Request) -> bool {
    matches!(request, Request::PostNote { .. } | Request::Sync { .. })
}

/// The logged-in identity of a connection.
#[derive(Clone, Debug)]
pub struct Caller {
    pub handle: String,
    pub device: cairn_proto::DeviceId,
    /// `device`'s key, decompressed once for the connection's signature checks.
    pub key: ed25519_dalek::VerifyingKey,
}

type Sink = futures_util::stream::SplitSink<WebSocket, Message>;

async fn send_frame(sink: &mut Sink, frame: &ServerFrame) -> bool {
    let send = sink.send(Message::Binary(cairn_proto::encode(frame).into()));
    matches!(tokio::time::timeout(WRITE_TIMEOUT, send).await, Ok(Ok(())))
}

async fn close_with(sink: &mut Sink, code: u16, reason: &str) {
    let _ = sink
        .send(Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from(reason.to_owned()) })))
        .await;
    let _ = sink.close().await;
    if matches!(code, close::PROTOCOL | close::UNSUPPORTED | close::POLICY | close::TOO_BIG) {
        // The peer may still be sending (the rest of an oversize message, a flood). Dropping
        // the socket with unread input resets it, and the peer loses our close frame and the
        // answers before it; hold the socket briefly so they are read.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

fn error_frame(id: u64, code: ErrorCode, msg: &str) -> ServerFrame {
    ServerFrame::Response { id, result: Err(ProtoError::new(code, msg)) }
}

/// What reading one message produced.
enum Read {
    Frame(ClientFrame),
    /// Nothing to act on (ping, pong).
    Nothing,
    /// Close with this code and reason; `Some(frame)` is sent first.
    Close(u16, &'static str, Option<ServerFrame>),
    /// The peer is gone.
    Gone,
}

fn is_capacity_error(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(tungstenite::Error::Capacity(_)) = err.downcast_ref::<tungstenite::Error>() {
            return true;
        }
        source = err.source();
    }
    false
}

fn read(msg: Option<Result<Message, axum::Error>>, state: &AppState) -> Read {
    match msg {
        None => Read::Gone,
        Some(Err(e)) if is_capacity_error(&e) => {
            state.metrics.frames_rejected.inc();
            Read::Close(close::TOO_BIG, "message too big", None)
        }
        Some(Err(_)) => Read::Gone,
        Some(Ok(Message::Close(_))) => Read::Gone,
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Read::Nothing,
        Some(Ok(Message::Text(_))) => {
            state.metrics.frames_rejected.inc();
            Read::Close(close::UNSUPPORTED, "binary CBOR frames only", None)
        }
        Some(Ok(Message::Binary(bytes))) => {
            if bytes.len() > cairn_proto::MAX_FRAME_BYTES {
                state.metrics.frames_rejected.inc();
                return Read::Close(close::TOO_BIG, "message too big", None);
            }
            match cairn_proto::decode::<ClientFrame>(&bytes) {
                Ok(frame) => Read::Frame(frame),
                Err(e) => {
                    state.metrics.frames_rejected.inc();
                    Read::Close(
                        close::PROTOCOL,
                        "malformed frame",
                        Some(error_frame(0, ErrorCode::Malformed, &e.to_string())),
                    )
                }
            }
        }
    }
}

/// Serves one upgraded socket until it closes.
pub async fn serve(state: Arc<AppState>, socket: WebSocket) {
    state.metrics.connections.inc();
    let (mut sink, mut stream) = socket.split();
    let caller = tokio::select! {
        c = handshake(&state, &mut sink, &mut stream) => c,
        _ = state.shutdown.cancelled() => {
            close_with(&mut sink, close::GOING_AWAY, "server shutting down").await;
            None
        }
    };
    if let Some(caller) = caller {
        run(&state, caller, sink, stream).await;
    }
    state.metrics.connections.dec();
}

/// Most frames a connection may send before it is logged in: hello, a few tries at logging
/// in, and nothing that could keep the server busy for free.
const MAX_FRAMES_BEFORE_LOGIN: usize = 16;

/// Hello, then one of register / login / resume, all within the handshake timeout.
async fn handshake(
    state: &AppState,
    sink: &mut Sink,
    stream: &mut futures_util::stream::SplitStream<WebSocket>,
) -> Option<Caller> {
    let deadline = tokio::time::Instant::now() + state.config.handshake_timeout();
    let challenge = Challenge(crate::auth::random32());
    let mut said_hello = false;
    let mut frames = 0usize;
    loop {
        let msg = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(m) => m,
            Err(_) => {
                close_with(sink, close::POLICY, "handshake timeout").await;
                return None;
            }
        };
        let frame = match read(msg, state) {
            Read::Frame(f) => f,
            Read::Nothing => continue,
            Read::Gone => return None,
            Read::Close(code, reason, first) => {
                if let Some(f) = first {
                    send_frame(sink, &f).await;
                }
                close_with(sink, code, reason).await;
                return None;
            }
        };
        let id = frame.id;
        frames += 1;
        if frames > MAX_FRAMES_BEFORE_LOGIN {
            state.metrics.frames_rejected.inc();
            send_frame(
                sink,
                &error_frame(id, ErrorCode::RateLimited, "too many frames before logging in"),
            )
            .await;
            close_with(sink, close::POLICY, "too many frames before login").await;
            return None;
        }
        match frame.request {
            Request::Hello { versions, .. } if !said_hello => {
                if !versions.contains(&PROTOCOL_VERSION) {
                    send_frame(
                        sink,
                        &error_frame(
                            id,
                            ErrorCode::UnsupportedVersion,
                            &format!("this server speaks protocol version {PROTOCOL_VERSION}"),
                        ),
                    )
                    .await;
                    close_with(sink, close::PROTOCOL, "unsupported protocol version").await;
                    return None;
                }
                said_hello = true;
                let welcome = Response::Welcome {
                    version: PROTOCOL_VERSION,
                    server: format!("cairn-server {}", env!("CARGO_PKG_VERSION")),
                    challenge,
                    limits: Limits {
                        max_frame_bytes: cairn_proto::MAX_FRAME_BYTES as u32,
                        max_note_bytes: cairn_proto::MAX_NOTE_BYTES as u32,
                        max_media_bytes: state.config.max_media_bytes,
                        sync_page: cairn_proto::MAX_SYNC_PAGE,
                    },
                };
                if !send_frame(sink, &ServerFrame::Response { id, result: Ok(welcome) }).await {
                    return None;
                }
            }
            Request::Hello { .. } => {
                send_frame(sink, &error_frame(id, ErrorCode::BadRequest, "hello was already said"))
                    .await;
            }
            _ if !said_hello => {
                send_frame(sink, &error_frame(id, ErrorCode::BadRequest, "say hello first")).await;
                close_with(sink, close::PROTOCOL, "hello must come first").await;
                return None;
            }
            request @ (Request::Register { .. }
            | Request::Login { .. }
            | Request::Resume { .. }) => {
                // Boxed, like the handlers in `run`: it would otherwise size every task.
                match Box::pin(handlers::session::authenticate(state, &challenge, request)).await {
                    Ok((caller, session)) => {
                        let ok =
                            ServerFrame::Response { id, result: Ok(Response::Session(session)) };
                        if !send_frame(sink, &ok).await {
                            return None;
                        }
                        return Some(caller);
                    }
                    Err(e) => {
                        if !send_frame(
                            sink,
                            &ServerFrame::Response { id, result: Err(e.to_proto()) },
                        )
                        .await
                        {
                            return None;
                        }
                    }
                }
            }
            _ => {
                send_frame(sink, &error_frame(id, ErrorCode::Unauthenticated, "log in first"))
                    .await;
            }
        }
    }
}

/// Most frames written together in one flush, so a busy connection still reads.
const WRITE_BATCH: usize = 64;

/// Writes `first` and whatever else is ready to go now (answers in request order, queued
/// events) with one flush, so a burst costs one write to the socket rather than one per
/// frame. False when the peer is gone, or has not taken the bytes within the write timeout.
/// The answers' budgets are released once they are written.
async fn send_ready(
    state: &AppState,
    sink: &mut Sink,
    first: Message,
    in_flight: &mut futures_util::stream::FuturesOrdered<Answer>,
    rx: &mut mpsc::Receiver<Queued>,
) -> bool {
    use futures_util::FutureExt;
    let mut written: Vec<Budget> = Vec::new();
    let write = async {
        sink.feed(first).await?;
        for _ in 1..WRITE_BATCH {
            let next = if let Some(Some((answer, budget))) = in_flight.next().now_or_never() {
                written.push(budget);
                Message::Binary(cairn_proto::encode(&answer).into())
            } else if let Ok(out) = rx.try_recv() {
                state.metrics.delivery_seconds.observe(out.since.elapsed().as_secs_f64());
                Message::Binary(out.bytes.clone())
            } else {
                break;
            };
            sink.feed(next).await?;
        }
        sink.flush().await
    };
    matches!(tokio::time::timeout(WRITE_TIMEOUT, write).await, Ok(Ok(())))
}

async fn run(
    state: &Arc<AppState>,
    caller: Caller,
    mut sink: Sink,
    mut stream: futures_util::stream::SplitStream<WebSocket>,
) {
    let (tx, mut rx) = mpsc::channel::<Queued>(QUEUE);
    let kill = CancellationToken::new();
    let _registration = state.hub.register(&caller.handle, caller.device, tx, kill.clone());
    let idle = state.config.idle_timeout();
    let mut ping = tokio::time::interval(idle / 3);
    ping.tick().await;
    let mut last_heard = Instant::now();
    let mut bucket = Bucket::new(state.config.rate_per_connection);
    let mut rejected_in_a_row = 0u32;
    let mut in_flight: futures_util::stream::FuturesOrdered<Answer> = Default::default();
    let syncs = Arc::new(Semaphore::new(MAX_SYNCS_IN_FLIGHT));
    // A request that must wait for those in flight (see `concurrent`).
    let mut held: Option<ClientFrame> = None;
    loop {
        if in_flight.is_empty()
            && let Some(frame) = held.take()
        {
            // Boxed: a handler's future is large, and held inline it would enlarge every
            // connection's task for its whole life, idle or not.
            let result = Box::pin(handlers::handle(state, &caller, frame.request))
                .await
                .map_err(|e: ServerError| e.to_proto());
            if !send_frame(&mut sink, &ServerFrame::Response { id: frame.id, result }).await {
                return;
            }
        }
        tokio::select! {
            biased;
            _ = state.shutdown.cancelled(), if in_flight.is_empty() => {
                close_with(&mut sink, close::GOING_AWAY, "server shutting down").await;
                return;
            }
            Some((answer, budget)) = in_flight.next(), if !in_flight.is_empty() => {
                let first = Message::Binary(cairn_proto::encode(&answer).into());
                if !send_ready(state, &mut sink, first, &mut in_flight, &mut rx).await {
                    return;
                }
                drop(budget);
            }
            _ = kill.cancelled() => {
                close_with(&mut sink, close::TRY_AGAIN, "disconnected; reconnect and sync").await;
                return;
            }
            out = rx.recv() => {
                let Some(out) = out else { return };
                state.metrics.delivery_seconds.observe(out.since.elapsed().as_secs_f64());
                if !send_ready(state, &mut sink, Message::Binary(out.bytes.clone()), &mut in_flight, &mut rx).await {
                    return;
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() >= idle {
                    close_with(&mut sink, close::NORMAL, "idle timeout").await;
                    return;
                }
                if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
            msg = stream.next(), if held.is_none() && in_flight.len() < MAX_IN_FLIGHT && !state.shutdown.is_cancelled() => {
                last_heard = Instant::now();
                let frame = match read(msg, state) {
                    Read::Frame(f) => f,
                    Read::Nothing => continue,
                    Read::Gone => return,
                    Read::Close(code, reason, first) => {
                        if let Some(f) = first {
                            send_frame(&mut sink, &f).await;
                        }
                        close_with(&mut sink, code, reason).await;
                        return;
                    }
                };
                if !bucket.take(state.config.rate_per_connection) || !state.user_allowed(&caller.handle) {
                    state.metrics.frames_rejected.inc();
                    rejected_in_a_row += 1;
                    if rejected_in_a_row > FLOOD_CLOSE_AFTER {
                        close_with(&mut sink, close::POLICY, "rate limit exceeded").await;
                        return;
                    }
                    // Queued behind what is in flight, so answers keep request order.
                    in_flight.push_back(Box::pin(std::future::ready((error_frame(frame.id, ErrorCode::RateLimited, "slow down"), None))));
                    continue;
                }
                rejected_in_a_row = 0;
                // A sync beyond the connection's share waits, like a request that may not
                // run beside others, until those in flight are written.
                let sync = matches!(frame.request, Request::Sync { .. });
                let mine = if sync { syncs.clone().try_acquire_owned().ok() } else { None };
                if concurrent(&frame.request) && (mine.is_some() || !sync) {
                    let (state, caller) = (state.clone(), caller.clone());
                    in_flight.push_back(Box::pin(async move {
                        // A page is read only with a share of the server's budget of
                        // unsent pages, held until it is written.
                        let budget = match mine {
                            Some(mine) => {
                                let page = state.unsent_pages.clone().acquire_owned().await;
                                Some((mine, page.expect("the page budget is never closed")))
                            }
                            None => None,
                        };
                        let result = handlers::handle(&state, &caller, frame.request).await.map_err(|e: ServerError| e.to_proto());
                        (ServerFrame::Response { id: frame.id, result }, budget)
                    }));
                } else {
                    held = Some(frame);
                }
            }
        }
    }
}
