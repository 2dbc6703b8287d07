//! One WebSocket connection: the handshake (hello, then register, login or resume), then
//! requests answered in order, events pushed as they come, pings while idle, and a close
//! code that says why whenever the server ends it.

use crate::error::ServerError;
use crate::handlers;
use crate::hub::{QUEUE, Queued};
use crate::state::{AppState, Bucket};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use cairn_proto::{
    Challenge, ClientFrame, ErrorCode, Handle, Limits, PROTOCOL_VERSION, ProtoError, Request,
    Response, ServerFrame,
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
    pub handle: Handle,
    pub device: cairn_proto::DeviceId,
    /// `device`'s key, decompressed once for the connection's signature checks.
    pub key: ed25519_dalek::VerifyingKey,
    /// This connection's number in the hub: what it posts is not sent back to it.
    pub conn: u64,
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

/// Sends `first` if there is one, then closes with `code` and `reason`.
async fn close_after(sink: &mut Sink, code: u16, reason: &str, first: Option<ServerFrame>) {
    if let Some(f) = first {
        send_frame(sink, &f).await;
    }
    close_with(sink, code, reason).await;
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

/// Serves one upgraded socket until it closes: [`Handshake`], then a [`Conversation`].
///
/// `place` (its place under the server's caps) is held until it closes.
///
/// The future returned is the connection's task, allocated once and held for as long as
/// the connection is open, idle or not: its size is most of what an idle connection costs,
/// so it holds nothing twice and nothing it no longer needs. The handshake, whose future is
/// as large as the conversation's and is done at login, runs in a box of its own (the
/// socket goes into it at once); the conversation is run by reference (a future that owned
/// it would hold it twice), and the parts it is made of go out of scope before it runs.
pub fn serve<P: Send + 'static>(
    state: Arc<AppState>,
    socket: WebSocket,
    place: P,
) -> impl std::future::Future<Output = ()> + Send {
    let handshake = Box::pin(handshake(state.clone(), socket));
    async move {
        let _place = place;
        state.metrics.connections.inc();
        let mut conversation = handshake
            .await
            .map(|(caller, sink, stream)| Conversation::new(&state, caller, sink, stream));
        if let Some(c) = &mut conversation {
            c.run().await;
        }
        drop(conversation);
        state.metrics.connections.dec();
    }
}

/// The [`Handshake`] on `socket`: the caller and the two halves of the socket once the peer
/// is logged in.
async fn handshake(state: Arc<AppState>, socket: WebSocket) -> Option<(Caller, Sink, Stream)> {
    let (mut sink, mut stream) = socket.split();
    let caller = tokio::select! {
        c = Handshake::new(&state).run(&mut sink, &mut stream) => c,
        _ = state.shutdown.cancelled() => {
            close_with(&mut sink, close::GOING_AWAY, "server shutting down").await;
            None
        }
    };
    Some((caller?, sink, stream))
}

/// Most frames a connection may send before it is logged in: hello, a few tries at logging
/// in, and nothing that could keep the server busy for free.
const MAX_FRAMES_BEFORE_LOGIN: usize = 16;

type Stream = futures_util::stream::SplitStream<WebSocket>;

/// Where a connection is before it is logged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Greeting {
    /// Only `hello` is accepted.
    AwaitingHello,
    /// Said hello: `register`, `login` or `resume` next (another hello is refused).
    AwaitingLogin,
}

/// What one frame of the handshake leads to.
// Returned once per frame and matched at once: boxing the caller would only add an
// allocation.
#[allow(clippy::large_enum_variant)]
enum Next {
    Continue,
    LoggedIn(Caller),
    /// The connection is over (closed with its reason, or the peer is gone).
    End,
}

/// Hello, then one of register / login / resume, all within the handshake timeout.
struct Handshake<'a> {
    state: &'a AppState,
    challenge: Challenge,
    deadline: tokio::time::Instant,
    greeting: Greeting,
    frames: usize,
}

impl<'a> Handshake<'a> {
    fn new(state: &'a AppState) -> Self {
        Handshake {
            state,
            challenge: Challenge(crate::auth::random32()),
            deadline: tokio::time::Instant::now() + state.config.handshake_timeout(),
            greeting: Greeting::AwaitingHello,
            frames: 0,
        }
    }

    /// The caller, once logged in; `None` when the connection ended first.
    async fn run(mut self, sink: &mut Sink, stream: &mut Stream) -> Option<Caller> {
        loop {
            let msg = match tokio::time::timeout_at(self.deadline, stream.next()).await {
                Ok(m) => m,
                Err(_) => {
                    close_with(sink, close::POLICY, "handshake timeout").await;
                    return None;
                }
            };
            let frame = match read(msg, self.state) {
                Read::Frame(f) => f,
                Read::Nothing => continue,
                Read::Gone => return None,
                Read::Close(code, reason, first) => {
                    close_after(sink, code, reason, first).await;
                    return None;
                }
            };
            match self.on_frame(sink, frame).await {
                Next::Continue => {}
                Next::LoggedIn(caller) => return Some(caller),
                Next::End => return None,
            }
        }
    }

    async fn on_frame(&mut self, sink: &mut Sink, frame: ClientFrame) -> Next {
        let id = frame.id;
        self.frames += 1;
        if self.frames > MAX_FRAMES_BEFORE_LOGIN {
            self.state.metrics.frames_rejected.inc();
            let refusal =
                error_frame(id, ErrorCode::RateLimited, "too many frames before logging in");
            send_frame(sink, &refusal).await;
            close_with(sink, close::POLICY, "too many frames before login").await;
            return Next::End;
        }
        match (self.greeting, frame.request) {
            (Greeting::AwaitingHello, Request::Hello { versions, .. }) => {
                self.hello(sink, id, &versions).await
            }
            (Greeting::AwaitingHello, _) => {
                send_frame(sink, &error_frame(id, ErrorCode::BadRequest, "say hello first")).await;
                close_with(sink, close::PROTOCOL, "hello must come first").await;
                Next::End
            }
            (Greeting::AwaitingLogin, Request::Hello { .. }) => {
                let refusal = error_frame(id, ErrorCode::BadRequest, "hello was already said");
                send_frame(sink, &refusal).await;
                Next::Continue
            }
            (
                Greeting::AwaitingLogin,
                request @ (Request::Register { .. }
                | Request::Login { .. }
                | Request::Resume { .. }),
            ) => self.log_in(sink, id, request).await,
            (Greeting::AwaitingLogin, _) => {
                send_frame(sink, &error_frame(id, ErrorCode::Unauthenticated, "log in first"))
                    .await;
                Next::Continue
            }
        }
    }

    async fn hello(&mut self, sink: &mut Sink, id: u64, versions: &[u16]) -> Next {
        if !versions.contains(&PROTOCOL_VERSION) {
            let refusal = error_frame(
                id,
                ErrorCode::UnsupportedVersion,
                &format!("this server speaks protocol version {PROTOCOL_VERSION}"),
            );
            send_frame(sink, &refusal).await;
            close_with(sink, close::PROTOCOL, "unsupported protocol version").await;
            return Next::End;
        }
        self.greeting = Greeting::AwaitingLogin;
        let welcome = Response::Welcome {
            version: PROTOCOL_VERSION,
            server: format!("cairn-server {}", env!("CARGO_PKG_VERSION")),
            challenge: self.challenge,
            limits: Limits {
                max_frame_bytes: cairn_proto::MAX_FRAME_BYTES as u32,
                max_note_bytes: cairn_proto::MAX_NOTE_BYTES as u32,
                max_media_bytes: self.state.config.max_media_bytes,
                sync_page: cairn_proto::MAX_SYNC_PAGE,
            },
        };
        if send_frame(sink, &ServerFrame::Response { id, result: Ok(welcome) }).await {
            Next::Continue
        } else {
            Next::End
        }
    }

    async fn log_in(&mut self, sink: &mut Sink, id: u64, request: Request) -> Next {
        // Boxed, like the handlers of a conversation: it would otherwise size every task.
        let result =
            Box::pin(handlers::session::authenticate(self.state, &self.challenge, request)).await;
        let (answer, next) = match result {
            Ok((caller, session)) => (Ok(Response::Session(session)), Next::LoggedIn(caller)),
            Err(e) => (Err(e.to_proto()), Next::Continue),
        };
        if send_frame(sink, &ServerFrame::Response { id, result: answer }).await {
            next
        } else {
            Next::End
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

/// What woke a conversation.
// Made once per wake-up and matched at once: boxing the answer would add an allocation
// per frame on the hot path.
#[allow(clippy::large_enum_variant)]
enum Wake {
    /// The server is shutting down (looked at only with no answer in flight).
    Shutdown,
    /// The next answer in request order is ready.
    Answered(ServerFrame, Budget),
    /// The hub disconnected this device (revoked, or its queue overflowed).
    Kicked,
    /// An event for the caller (`None`: the hub let go of the queue).
    Queued(Option<Queued>),
    /// Time to ping, or to give up on a silent peer.
    Tick,
    /// A message from the peer.
    Heard(Option<Result<Message, axum::Error>>),
}

/// A logged-in connection: requests answered in order (posts and syncs run side by side,
/// see [`concurrent`]), events pushed as they come, pings while idle, and its limits.
struct Conversation<'a> {
    // (Fields drop in this order: what is in flight first, then the hub's registration,
    // and the socket last.)
    /// Answers in request order, each with what it holds until it is written.
    in_flight: futures_util::stream::FuturesOrdered<Answer>,
    /// A request that must wait for those in flight (see `concurrent`).
    /// (Boxed: the conversation lives as long as the connection, and a request is seldom
    /// held.)
    held: Option<Box<ClientFrame>>,
    syncs: Arc<Semaphore>,
    bucket: Bucket,
    rejected_in_a_row: u32,
    idle: std::time::Duration,
    ping: tokio::time::Interval,
    last_heard: Instant,
    /// Keeps the device registered with the hub while the conversation lasts.
    _registration: crate::hub::Registration<'a>,
    kill: CancellationToken,
    /// Events for the caller, from the hub.
    events: mpsc::Receiver<Queued>,
    state: &'a Arc<AppState>,
    /// Shared with the requests in flight (a clone per post would copy its key).
    caller: Arc<Caller>,
    sink: Sink,
    stream: Stream,
}

impl<'a> Conversation<'a> {
    fn new(state: &'a Arc<AppState>, caller: Caller, sink: Sink, stream: Stream) -> Self {
        let (tx, events) = mpsc::channel::<Queued>(QUEUE);
        let kill = CancellationToken::new();
        let registration =
            state.hub.register(&caller.handle, caller.device, caller.conn, tx, kill.clone());
        let idle = state.config.idle_timeout();
        Conversation {
            state,
            caller: Arc::new(caller),
            sink,
            stream,
            events,
            kill,
            _registration: registration,
            idle,
            ping: tokio::time::interval(idle / 3),
            last_heard: Instant::now(),
            bucket: Bucket::new(state.config.rate_per_connection),
            rejected_in_a_row: 0,
            in_flight: Default::default(),
            syncs: Arc::new(Semaphore::new(MAX_SYNCS_IN_FLIGHT)),
            held: None,
        }
    }

    async fn run(&mut self) {
        self.ping.tick().await;
        loop {
            if self.in_flight.is_empty()
                && let Some(frame) = self.held.take()
                // Boxed, like the other rare awaits here: inline, the largest of them would
                // size every connection's task for its whole life.
                && !Box::pin(self.answer_now(*frame)).await
            {
                return;
            }
            let reading = self.held.is_none()
                && self.in_flight.len() < MAX_IN_FLIGHT
                && !self.state.shutdown.is_cancelled();
            let wake = tokio::select! {
                biased;
                _ = self.state.shutdown.cancelled(), if self.in_flight.is_empty() => Wake::Shutdown,
                Some((answer, budget)) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    Wake::Answered(answer, budget)
                }
                _ = self.kill.cancelled() => Wake::Kicked,
                out = self.events.recv() => Wake::Queued(out),
                _ = self.ping.tick() => Wake::Tick,
                msg = self.stream.next(), if reading => Wake::Heard(msg),
            };
            let go_on = match wake {
                Wake::Shutdown => {
                    close_with(&mut self.sink, close::GOING_AWAY, "server shutting down").await;
                    false
                }
                Wake::Answered(answer, budget) => {
                    let first = Message::Binary(cairn_proto::encode(&answer).into());
                    let sent = self.send_ready(first).await;
                    drop(budget);
                    sent
                }
                Wake::Kicked => {
                    let reason = "disconnected; reconnect and sync";
                    close_with(&mut self.sink, close::TRY_AGAIN, reason).await;
                    false
                }
                Wake::Queued(None) => false,
                Wake::Queued(Some(out)) => {
                    let since = out.since.elapsed().as_secs_f64();
                    self.state.metrics.delivery_seconds.observe(since);
                    self.send_ready(Message::Binary(out.bytes.clone())).await
                }
                Wake::Tick => self.tick().await,
                Wake::Heard(msg) => match self.heard(msg) {
                    Heard::GoOn => true,
                    Heard::Gone => false,
                    Heard::Close(code, reason, first) => {
                        Box::pin(close_after(&mut self.sink, code, reason, first)).await;
                        false
                    }
                },
            };
            if !go_on {
                return;
            }
        }
    }

    /// Runs a request that may not run beside others, now that none is in flight, and
    /// writes its answer. False when the peer is gone.
    async fn answer_now(&mut self, frame: ClientFrame) -> bool {
        // (Its caller boxes this future, handler and all.)
        let result = handlers::handle(self.state, &self.caller, frame.request)
            .await
            .map_err(|e: ServerError| e.to_proto());
        send_frame(&mut self.sink, &ServerFrame::Response { id: frame.id, result }).await
    }

    /// Writes `first` and whatever else is ready (see [`send_ready`]).
    async fn send_ready(&mut self, first: Message) -> bool {
        send_ready(self.state, &mut self.sink, first, &mut self.in_flight, &mut self.events).await
    }

    /// Pings, or closes a connection silent for the idle timeout.
    async fn tick(&mut self) -> bool {
        if self.last_heard.elapsed() >= self.idle {
            close_with(&mut self.sink, close::NORMAL, "idle timeout").await;
            return false;
        }
        self.sink.send(Message::Ping(Vec::new().into())).await.is_ok()
    }

    /// A message from the peer: a request is refused (rate), started (posts and syncs, in
    /// flight beside others) or held until those in flight are answered. Nothing here
    /// waits: what is to be written goes behind the answers in flight.
    fn heard(&mut self, msg: Option<Result<Message, axum::Error>>) -> Heard {
        self.last_heard = Instant::now();
        let frame = match read(msg, self.state) {
            Read::Frame(f) => f,
            Read::Nothing => return Heard::GoOn,
            Read::Gone => return Heard::Gone,
            Read::Close(code, reason, first) => return Heard::Close(code, reason, first),
        };
        let rate = self.state.config.rate_per_connection;
        if !self.bucket.take(rate) || !self.state.user_allowed(&self.caller.handle) {
            self.state.metrics.frames_rejected.inc();
            self.rejected_in_a_row += 1;
            if self.rejected_in_a_row > FLOOD_CLOSE_AFTER {
                return Heard::Close(close::POLICY, "rate limit exceeded", None);
            }
            // Queued behind what is in flight, so answers keep request order.
            let refusal = error_frame(frame.id, ErrorCode::RateLimited, "slow down");
            self.in_flight.push_back(Box::pin(std::future::ready((refusal, None))));
            return Heard::GoOn;
        }
        self.rejected_in_a_row = 0;
        // A sync beyond the connection's share waits, like a request that may not run
        // beside others, until those in flight are written.
        let sync = matches!(frame.request, Request::Sync { .. });
        let mine = if sync { self.syncs.clone().try_acquire_owned().ok() } else { None };
        if concurrent(&frame.request) && (mine.is_some() || !sync) {
            let (state, caller) = (self.state.clone(), self.caller.clone());
            self.in_flight.push_back(Box::pin(async move {
                // A page is read only with a share of the server's budget of unsent pages,
                // held until it is written.
                let budget = match mine {
                    Some(mine) => {
                        let page = state.unsent_pages.clone().acquire_owned().await;
                        Some((mine, page.expect("the page budget is never closed")))
                    }
                    None => None,
                };
                let result = handlers::handle(&state, &caller, frame.request)
                    .await
                    .map_err(|e: ServerError| e.to_proto());
                (ServerFrame::Response { id: frame.id, result }, budget)
            }));
        } else {
            self.held = Some(Box::new(frame));
        }
        Heard::GoOn
    }
}

/// What a message from the peer leads to (see [`Conversation::heard`]).
// Made once per message and matched at once: boxing the frame would add an allocation.
#[allow(clippy::large_enum_variant)]
enum Heard {
    GoOn,
    /// The peer is gone.
    Gone,
    /// Close with this code and reason; `Some(frame)` is sent first.
    Close(u16, &'static str, Option<ServerFrame>),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns, without calling it.
    fn size_of_output<F, Fut>(_: F) -> usize
    where
        F: FnOnce(Arc<AppState>, WebSocket, ()) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// What an idle connection costs is mostly its task (see [`serve`]): 4,456 bytes before
    /// it was taken apart, 1,384 in a release build after. A change that sizes something
    /// large into it again fails here.
    #[test]
    fn a_connections_task_stays_small() {
        let size = size_of_output(serve::<()>);
        assert!(size <= 1_600, "a connection's task is {size} bytes");
    }
}
