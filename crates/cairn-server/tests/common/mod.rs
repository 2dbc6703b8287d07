//! A raw protocol client for the server's tests: real WebSocket, real signatures, no
//! cairn-crypto (the server must not need it, and neither do its tests).
#![allow(dead_code)]

use cairn_proto::*;
use cairn_server::{Config, RunningServer};
use ed25519_dalek::{Signer, SigningKey};
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct TestServer {
    pub server: RunningServer,
    pub dir: tempfile::TempDir,
}

pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_data_dir(dir.path());
    tweak(&mut config);
    let server = cairn_server::start(config).await.unwrap();
    TestServer { server, dir }
}

pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

pub struct Device {
    pub key: SigningKey,
    pub agree: AgreeKey,
}

impl Device {
    pub fn new() -> Self {
        Device {
            key: SigningKey::from_bytes(&cairn_server::auth::random32()),
            agree: AgreeKey(cairn_server::auth::random32()),
        }
    }
    pub fn id(&self) -> DeviceId {
        DeviceId(self.key.verifying_key().to_bytes())
    }
    pub fn keys(&self) -> DeviceKeys {
        DeviceKeys { sign: self.id(), agree: self.agree }
    }
    pub fn sign(&self, payload: &[u8]) -> Signature {
        Signature(self.key.sign(payload).to_bytes())
    }
}

pub struct Client {
    pub ws: Ws,
    next_id: u64,
    pub events: VecDeque<Event>,
    pub challenge: Challenge,
    pub session: Option<Session>,
    pub handle: String,
}

pub async fn raw_connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        let ws = raw_connect(url).await;
        let mut c = Client {
            ws,
            next_id: 1,
            events: VecDeque::new(),
            challenge: Challenge::default(),
            session: None,
            handle: String::new(),
        };
        match c
            .request(Request::Hello { versions: vec![PROTOCOL_VERSION], client: "test".into() })
            .await
            .unwrap()
        {
            Response::Welcome { challenge, .. } => c.challenge = challenge,
            other => panic!("expected welcome, got {other:?}"),
        }
        c
    }

    pub async fn send(&mut self, request: Request) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let bytes = encode(&ClientFrame { id, request });
        self.ws.send(Message::Binary(bytes.into())).await.unwrap();
        id
    }

    /// Reads one server frame (None when the socket closed).
    pub async fn read_frame(&mut self) -> Option<ServerFrame> {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("server answered within 10 s")
            {
                Some(Ok(Message::Binary(b))) => {
                    return Some(decode(&b).expect("server frames decode"));
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// As `request`, but `None` when the connection fails instead of panicking.
    pub async fn try_request(&mut self, request: Request) -> Option<Result<Response, ProtoError>> {
        let id = self.next_id;
        self.next_id += 1;
        let bytes = encode(&ClientFrame { id, request });
        self.ws.send(Message::Binary(bytes.into())).await.ok()?;
        loop {
            let msg =
                tokio::time::timeout(Duration::from_secs(10), self.ws.next()).await.ok()??.ok()?;
            let Message::Binary(b) = msg else { continue };
            match decode::<ServerFrame>(&b).ok()? {
                ServerFrame::Response { id: rid, result } if rid == id => return Some(result),
                ServerFrame::Response { .. } => return None,
                ServerFrame::Event(e) => self.events.push_back(e),
            }
        }
    }

    /// Connects and logs in; `None` while the server is unreachable.
    pub async fn try_login(url: &str, device: &Device) -> Option<Client> {
        let ws = tokio_tungstenite::connect_async(url).await.ok()?.0;
        let mut c = Client {
            ws,
            next_id: 1,
            events: VecDeque::new(),
            challenge: Challenge::default(),
            session: None,
            handle: String::new(),
        };
        let Ok(Response::Welcome { challenge, .. }) = c
            .try_request(Request::Hello { versions: vec![PROTOCOL_VERSION], client: "test".into() })
            .await?
        else {
            return None;
        };
        c.challenge = challenge;
        let signature = device.sign(&sign::login_payload(&c.challenge, &device.id()));
        let Ok(Response::Session(s)) =
            c.try_request(Request::Login { device: device.id(), signature }).await?
        else {
            return None;
        };
        c.handle = s.handle.to_string();
        c.session = Some(s);
        Some(c)
    }

    pub async fn request(&mut self, request: Request) -> Result<Response, ProtoError> {
        let id = self.send(request).await;
        loop {
            match self.read_frame().await.expect("connection open while awaiting a response") {
                ServerFrame::Response { id: rid, result } if rid == id => return result,
                ServerFrame::Response { id: rid, .. } => {
                    panic!("response to {rid} while awaiting {id}")
                }
                ServerFrame::Event(e) => self.events.push_back(e),
            }
        }
    }

    pub async fn next_event(&mut self, wait: Duration) -> Option<Event> {
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        loop {
            let msg = tokio::time::timeout(wait, self.ws.next()).await.ok()??;
            if let Ok(Message::Binary(b)) = msg
                && let ServerFrame::Event(e) = decode(&b).unwrap()
            {
                return Some(e);
            }
        }
    }

    pub async fn register(url: &str, handle: &str, device: &Device) -> Client {
        Self::try_register(url, handle, device, None).await.unwrap()
    }

    pub async fn try_register(
        url: &str,
        handle: &str,
        device: &Device,
        invite: Option<String>,
    ) -> Result<Client, ProtoError> {
        let mut c = Client::connect(url).await;
        let keys = device.keys();
        let handle: Handle = handle.parse().expect("a test handle");
        let r = c
            .request(Request::Register {
                handle: handle.clone(),
                device: keys,
                invite,
                signature: device.sign(&sign::register_payload(&c.challenge, &handle, &keys)),
                self_signature: device.sign(&sign::add_device_payload(&handle, &keys)),
            })
            .await?;
        let Response::Session(s) = r else { panic!("expected a session") };
        c.session = Some(s);
        c.handle = handle.to_string();
        Ok(c)
    }

    pub async fn login(url: &str, device: &Device) -> Result<Client, ProtoError> {
        let mut c = Client::connect(url).await;
        let signature = device.sign(&sign::login_payload(&c.challenge, &device.id()));
        let Response::Session(s) =
            c.request(Request::Login { device: device.id(), signature }).await?
        else {
            panic!()
        };
        c.handle = s.handle.to_string();
        c.session = Some(s);
        Ok(c)
    }

    /// Expects the server to close the connection; returns the close code.
    pub async fn expect_close(ws: &mut Ws) -> Option<CloseCode> {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .expect("closed within 10 s")
            {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
                Some(Ok(_)) => continue,
                None | Some(Err(_)) => return None,
            }
        }
    }
}

/// A space owned by `owner`, with its ops so far.
pub struct TestSpace {
    pub id: SpaceId,
    pub ops: Vec<(OpHash, u64)>,
    pub head: OpHash,
    pub len: u64,
    pub epoch: u64,
}

pub fn op_hash(body: &[u8]) -> OpHash {
    use sha2::Digest;
    OpHash(sha2::Sha256::digest(body).into())
}

pub fn signed_op(actor: &Device, op: &MembershipOp) -> SignedOp {
    let body = encode(op);
    SignedOp { signature: actor.sign(&sign::op_payload(&body)), body }
}

impl TestSpace {
    pub async fn create(client: &mut Client, owner: &Device, policy: Policy) -> TestSpace {
        let id = SpaceId(cairn_server::auth::random32()[..16].try_into().unwrap());
        let op = MembershipOp {
            space: id,
            index: 0,
            prev: OpHash::default(),
            actor: owner.id(),
            at: now_ms(),
            action: Action::Create {
                name: "test space".into(),
                owner: Member {
                    handle: client.handle.parse().unwrap(),
                    role: Role::Owner,
                    devices: vec![owner.keys()],
                },
                policy,
            },
            key_confirm: Some(KeyConfirm([0xC0; 32])),
        };
        let signed = signed_op(owner, &op);
        client.request(Request::CreateSpace { op: signed.clone() }).await.unwrap();
        TestSpace { id, ops: vec![], head: op_hash(&signed.body), len: 1, epoch: 0 }
    }

    pub fn op(&self, actor: &Device, action: Action) -> SignedOp {
        signed_op(
            actor,
            &MembershipOp {
                space: self.id,
                index: self.len,
                prev: self.head,
                actor: actor.id(),
                at: now_ms(),
                // The server cannot check a confirmation (it never holds a key): any value
                // of the right shape will do here.
                key_confirm: action.starts_epoch().then_some(KeyConfirm([0xC1; 32])),
                action,
            },
        )
    }

    pub async fn act(
        &mut self,
        client: &mut Client,
        actor: &Device,
        action: Action,
    ) -> Result<(), ProtoError> {
        let signed = self.op(actor, action);
        match client.request(Request::ChangeMembership { op: signed.clone() }).await? {
            Response::OpAccepted { epoch, .. } => {
                self.epoch = epoch;
                self.head = op_hash(&signed.body);
                self.len += 1;
                Ok(())
            }
            other => panic!("{other:?}"),
        }
    }

    pub async fn add(
        &mut self,
        owner_client: &mut Client,
        owner: &Device,
        handle: &str,
        device: &Device,
        role: Role,
    ) {
        self.act(
            owner_client,
            owner,
            Action::Add {
                member: Member {
                    handle: handle.parse().unwrap(),
                    role,
                    devices: vec![device.keys()],
                },
            },
        )
        .await
        .unwrap();
    }
}

/// A note whose "ciphertext" is arbitrary bytes (the server cannot tell).
pub fn note(sender: &Device, space: SpaceId, epoch: u64, body: &[u8]) -> SealedNote {
    let note_id = NoteId(cairn_server::auth::random32()[..16].try_into().unwrap());
    note_with(sender, space, epoch, note_id, body, None, vec![])
}

pub fn note_with(
    sender: &Device,
    space: SpaceId,
    epoch: u64,
    note_id: NoteId,
    body: &[u8],
    expires_at: Option<u64>,
    media: Vec<MediaHash>,
) -> SealedNote {
    let header = NoteHeader {
        space,
        epoch,
        sender: sender.id(),
        note_id,
        kind: NoteKind::Text,
        expires_at,
        media,
    };
    let signature = sender.sign(&sign::note_payload(&header, body));
    SealedNote { header, ciphertext: body.to_vec(), signature }
}

pub async fn post(client: &mut Client, note: &SealedNote) -> Result<(u64, bool), ProtoError> {
    match client.request(Request::PostNote { note: note.clone() }).await? {
        Response::Posted { seq, duplicate } => Ok((seq, duplicate)),
        other => panic!("{other:?}"),
    }
}

pub async fn sync_all(
    client: &mut Client,
    space: SpaceId,
    after: u64,
) -> Result<Vec<SpaceEntry>, ProtoError> {
    let mut out = Vec::new();
    let mut cursor = after;
    loop {
        let Response::Entries { entries, more, .. } =
            client.request(Request::Sync { space, after: cursor, limit: 500 }).await?
        else {
            panic!()
        };
        if let Some(last) = entries.last() {
            cursor = last.seq;
        }
        out.extend(entries);
        if !more {
            return Ok(out);
        }
    }
}

/// A key envelope from `creator` to `to` (the wrapped key is filler: the server never opens
/// it), signed as the protocol says.
pub fn envelope(creator: &Device, space: SpaceId, epoch: u64, to: &Device) -> KeyEnvelope {
    let wrapped = vec![7u8; 80];
    let signature =
        creator.sign(&sign::envelope_payload(&space, epoch, &to.id(), &creator.id(), &wrapped));
    KeyEnvelope { space, epoch, recipient: to.id(), creator: creator.id(), signature, wrapped }
}
