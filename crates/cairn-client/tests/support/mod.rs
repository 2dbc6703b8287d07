//! What the client's integration tests share: a real server on loopback (`World`), an
//! attacker that speaks the wire protocol directly with a member's device keys (`Raw`),
//! and a server that tampers with what it serves (`TamperProxy`: the real server behind a
//! WebSocket proxy that rewrites each frame on its way to the client).
#![allow(dead_code)] // each test binary uses its own part of this

use cairn_client::Client;
use cairn_client::connection::{Auth, Connection};
use cairn_crypto::{DeviceIdentity, EpochKey, KeyStore};
use cairn_proto::*;
use futures_util::{SinkExt, StreamExt};
use std::sync::{Arc, Mutex};
use tokio_tungstenite::tungstenite::Message;

pub struct World {
    pub server: Option<cairn_server::RunningServer>,
    pub server_dir: tempfile::TempDir,
    pub homes: tempfile::TempDir,
    pub port: u16,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl World {
    pub async fn new() -> World {
        let mut w = World {
            server: None,
            server_dir: tempfile::tempdir().unwrap(),
            homes: tempfile::tempdir().unwrap(),
            port: free_port(),
        };
        w.start().await;
        w
    }
    pub async fn start(&mut self) {
        let mut config = cairn_server::Config::for_data_dir(self.server_dir.path());
        config.listen = format!("127.0.0.1:{}", self.port).parse().unwrap();
        self.server = Some(cairn_server::start(config).await.unwrap());
    }
    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.unwrap();
        }
    }
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/v1/ws", self.port)
    }
    pub fn home(&self, who: &str) -> std::path::PathBuf {
        self.homes.path().join(who)
    }
    pub async fn user(&self, who: &str) -> Client {
        Client::init(&self.home(who), &self.url(), &who.parse().unwrap(), None, None).await.unwrap()
    }
}

/// A hostile client: a member's own device keys, and requests built and signed by hand.
pub struct Raw {
    pub conn: Connection,
    pub identity: DeviceIdentity,
}

impl Raw {
    /// Logs in as `client`'s device on a connection of its own.
    pub async fn as_device(url: &str, client: &Client) -> Raw {
        let identity = DeviceIdentity::from_bytes(&client.identity().to_bytes()).unwrap();
        let (conn, _events) = Connection::open(url, &identity, Auth::Login).await.unwrap();
        Raw { conn, identity }
    }

    pub async fn request(&self, request: Request) -> Result<Response, ProtoError> {
        match self.conn.request(request).await {
            Ok(r) => Ok(r),
            Err(cairn_client::ClientError::Server(e)) => Err(e),
            Err(e) => panic!("not an answer from the server: {e}"),
        }
    }
}

/// The key `client` holds for a space's epoch.
pub fn epoch_key(client: &Client, space: SpaceId, epoch: u64) -> EpochKey {
    client.store().epoch_key(space, epoch).unwrap().expect("the client holds that key")
}

/// What a tampering server does to each frame it sends a client.
pub type Rewrite = Box<dyn FnMut(&mut ServerFrame) + Send>;

/// A malicious server: the real one behind a proxy that decodes every frame on its way to
/// the client, lets the test rewrite it, and encodes it again. Requests pass unchanged.
pub struct TamperProxy {
    pub port: u16,
    rewrite: Arc<Mutex<Rewrite>>,
    task: tokio::task::JoinHandle<()>,
}

impl TamperProxy {
    pub async fn start(upstream: String) -> TamperProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let rewrite: Arc<Mutex<Rewrite>> = Arc::new(Mutex::new(Box::new(|_| {})));
        let shared = rewrite.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (upstream, rewrite) = (upstream.clone(), shared.clone());
                tokio::spawn(async move {
                    let Ok(client) = tokio_tungstenite::accept_async(tcp).await else { return };
                    let Ok((server, _)) = tokio_tungstenite::connect_async(&upstream).await else {
                        return;
                    };
                    let (mut to_client, mut from_client) = client.split();
                    let (mut to_server, mut from_server) = server.split();
                    let up = async {
                        while let Some(Ok(m)) = from_client.next().await {
                            if to_server.send(m).await.is_err() {
                                break;
                            }
                        }
                    };
                    let down = async {
                        while let Some(Ok(m)) = from_server.next().await {
                            let m = match m {
                                Message::Binary(bytes) => {
                                    let mut frame: ServerFrame = decode(&bytes).unwrap();
                                    (rewrite.lock().unwrap())(&mut frame);
                                    Message::Binary(encode(&frame).into())
                                }
                                other => other,
                            };
                            if to_client.send(m).await.is_err() {
                                break;
                            }
                        }
                    };
                    tokio::select! { _ = up => {}, _ = down => {} }
                });
            }
        });
        TamperProxy { port, rewrite, task }
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/v1/ws", self.port)
    }

    /// From now on, every frame to a client goes through `f`.
    pub fn set(&self, f: impl FnMut(&mut ServerFrame) + Send + 'static) {
        *self.rewrite.lock().unwrap() = Box::new(f);
    }
}

impl Drop for TamperProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
