//! One authenticated WebSocket to the server: requests with ids and timeouts, responses
//! routed back to their callers, events handed out on a channel.

use crate::error::ClientError;
use cairn_crypto::DeviceIdentity;
use cairn_proto::*;
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// How long a request may wait for its response.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Response, ProtoError>>>>>;

pub struct Connection {
    out: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next_id: AtomicU64,
    /// The session the server gave at login (none while the handshake runs).
    pub session: Option<Session>,
    pub limits: Limits,
    /// Resolves when the socket is gone.
    closed: tokio::sync::watch::Receiver<bool>,
}

/// How to log in once connected.
pub enum Auth<'a> {
    Register { handle: &'a Handle, invite: Option<&'a str> },
    Login,
}

impl Connection {
    /// Connects to `url` (`ws://` or `wss://`), says hello, and registers or logs in as
    /// `identity`. Events arrive on the returned receiver.
    pub async fn open(
        url: &str,
        identity: &DeviceIdentity,
        auth: Auth<'_>,
    ) -> Result<(Connection, mpsc::UnboundedReceiver<Event>), ClientError> {
        // Nagle off (the last argument): requests are small frames that must leave at once.
        let tls = url
            .starts_with("wss:")
            .then(|| tokio_tungstenite::Connector::Rustls(crate::tls::client_config()));
        // A 16 KiB read buffer, not tungstenite's 128 KiB: it zero-fills the buffer's free
        // room before every read, which for a small frame cost more than the frame (a
        // quarter of a fan-out's CPU at the receiving clients). Larger frames still grow it.
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(16 * 1024);
        let connect =
            tokio_tungstenite::connect_async_tls_with_config(url, Some(config), true, tls);
        let (ws, _) = tokio::time::timeout(REQUEST_TIMEOUT, connect)
            .await
            .map_err(|_| ClientError::Offline("connection timed out".into()))?
            .map_err(|e| match e {
                // Something answered, but not Cairn's WebSocket endpoint.
                tokio_tungstenite::tungstenite::Error::Http(response)
                    if response.status() == 404 =>
                {
                    ClientError::Offline(format!(
                        "{url} answered 404 Not Found: a Cairn server's address ends in /v1/ws \
                         (or give the host alone, as ws://HOST:PORT)"
                    ))
                }
                e => ClientError::Offline(e.to_string()),
            })?;
        let (mut sink, mut stream) = ws.split();
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let pending: Pending = Default::default();
        let (closed_tx, closed_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            // Requests queued together leave in one write: feed each, flush once.
            'writing: while let Some(m) = out_rx.recv().await {
                if sink.feed(m).await.is_err() {
                    break;
                }
                while let Ok(m) = out_rx.try_recv() {
                    if sink.feed(m).await.is_err() {
                        break 'writing;
                    }
                }
                if sink.flush().await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let reader_pending = pending.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Binary(bytes) = msg else {
                    if matches!(msg, Message::Close(_)) {
                        break;
                    }
                    continue;
                };
                match decode::<ServerFrame>(&bytes) {
                    Ok(ServerFrame::Response { id, result }) => {
                        if let Some(tx) = reader_pending.lock().expect("pending lock").remove(&id) {
                            let _ = tx.send(result);
                        }
                    }
                    Ok(ServerFrame::Event(e)) => {
                        let _ = ev_tx.send(e);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "undecodable frame from the server");
                        break;
                    }
                }
            }
            // Fail everything still waiting.
            reader_pending.lock().expect("pending lock").clear();
            let _ = closed_tx.send(true);
        });
        let mut conn = Connection {
            out: out_tx,
            pending,
            next_id: AtomicU64::new(1),
            session: None,
            limits: Limits {
                max_frame_bytes: 0,
                max_note_bytes: 0,
                max_media_bytes: 0,
                sync_page: 100,
            },
            closed: closed_rx,
        };
        let hello = Request::Hello {
            versions: vec![PROTOCOL_VERSION],
            client: format!("cairn-client {}", env!("CARGO_PKG_VERSION")),
        };
        let Response::Welcome { challenge, limits, .. } = conn.request(hello).await? else {
            return Err(ClientError::Protocol("expected welcome".into()));
        };
        conn.limits = limits;
        let keys = identity.keys();
        let request = match auth {
            Auth::Register { handle, invite } => Request::Register {
                handle: handle.clone(),
                device: keys,
                invite: invite.map(str::to_owned),
                signature: identity.sign(&sign::register_payload(&challenge, handle, &keys)),
                self_signature: identity.sign(&sign::add_device_payload(handle, &keys)),
            },
            Auth::Login => Request::Login {
                device: keys.sign,
                signature: identity.sign(&sign::login_payload(&challenge, &keys.sign)),
            },
        };
        let Response::Session(session) = conn.request(request).await? else {
            return Err(ClientError::Protocol("expected a session".into()));
        };
        conn.session = Some(session);
        Ok((conn, ev_rx))
    }

    /// Sends a request and waits for its response (at most [`REQUEST_TIMEOUT`]).
    pub async fn request(&self, request: Request) -> Result<Response, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending lock").insert(id, tx);
        let bytes = encode(&ClientFrame { id, request });
        if self.out.send(Message::Binary(bytes.into())).is_err() {
            return Err(ClientError::Offline("connection closed".into()));
        }
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(result)) => result.map_err(ClientError::Server),
            Ok(Err(_)) => Err(ClientError::Offline("connection closed".into())),
            Err(_) => {
                self.pending.lock().expect("pending lock").remove(&id);
                Err(ClientError::Offline("request timed out".into()))
            }
        }
    }

    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Resolves once the socket has closed.
    pub async fn closed(&self) {
        let mut rx = self.closed.clone();
        while !*rx.borrow() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Closes the socket politely.
    pub fn close(&self) {
        let _ = self.out.send(Message::Close(None));
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.close();
    }
}
