//! The Cairn server: it stores and forwards end-to-end encrypted spatial notes that it
//! cannot read. One WebSocket per client at `/v1/ws` (CBOR frames, see `docs/PROTOCOL.md`),
//! media over HTTP at `/v1/media/{address}`, `/healthz` and `/metrics`.
//!
//! It is not a crypto library: it checks the signatures it enforces rules with (logins,
//! device lists, membership ops, deletes, envelopes: forged requests never reach the
//! database) and membership roles, and treats every note, envelope and blob as opaque. A
//! note's own signature is left to its readers (`handlers::notes::post` says why).
//!
//! [`start`] binds a listener and serves until [`RunningServer::shutdown`]; tests bind
//! `127.0.0.1:0`, and the app embeds a server the same way.

pub mod auth;
pub mod blobs;
pub mod config;
pub mod connection;
pub mod error;
pub mod handlers;
pub mod hub;
pub mod listen;
pub mod media;
pub mod metrics;
pub mod relay;
pub mod state;
pub mod storage;
pub mod tls;

pub use config::Config;

/// Whether this build can use PostgreSQL (`--database`): the cargo feature `postgres`.
pub const WITH_POSTGRES: bool = cfg!(feature = "postgres");
/// Whether this build can use NATS (`--nats`): the cargo feature `nats`.
pub const WITH_NATS: bool = cfg!(feature = "nats");

use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use blobs::MediaStore;
use blobs::fs::FsMediaStore;
use cairn_proto::EntryItem;
use state::AppState;
use std::net::SocketAddr;
use std::sync::Arc;
use storage::Store;
use storage::sqlite::SqliteStore;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The server's log filter: `RUST_LOG` (default `info`), except that the libraries that
/// would write frame payloads or headers at their debug and trace levels (tokens,
/// ciphertext) are held at `info` whatever `RUST_LOG` asks: no level of logging writes a
/// token or a payload.
pub fn log_filter() -> tracing_subscriber::EnvFilter {
    let mut filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    for quiet in [
        "tungstenite=info",
        "tokio_tungstenite=info",
        "hyper=info",
        "hyper_util=info",
        "h2=info",
        "axum=info",
        "tokio_postgres=info",
        "async_nats=info",
    ] {
        filter = filter.add_directive(quiet.parse().expect("a valid directive"));
    }
    filter
}

/// Opens the data directory (creating it when absent) and the SQLite store in it. The
/// directory is private to the server's user (0700; looser modes are tightened, with a
/// warning): it holds the session-token secret, and every file in it is 0600 besides.
fn open_sqlite(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    private_dir(&config.data)?;
    let db = config.data.join("cairn.db");
    let store = SqliteStore::open(&db)?;
    // SQLite gives its -wal and -shm files the database file's mode.
    for f in ["cairn.db", "cairn.db-wal", "cairn.db-shm"] {
        let path = config.data.join(f);
        if path.exists() {
            private_file(&path)?;
        }
    }
    Ok(Arc::new(store))
}

/// Creates `dir` (and its parents) mode 0700, or tightens an existing one to 0700.
pub(crate) fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            dir = %dir.display(),
            mode = format!("{mode:o}"),
            "the data directory was readable by other users; it is now 0700"
        );
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "{} is mode {mode:o} and could not be made private (0700): {e}; fix its owner or mode",
                    dir.display()
                ),
            )
        })?;
    }
    Ok(())
}

/// Makes a file private to the server's user (0600).
pub(crate) fn private_file(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

/// The record store and the media store that `config` names: PostgreSQL for both with
/// `--database`, otherwise SQLite and files in `--data`.
pub async fn open_stores(config: &Config) -> anyhow::Result<(Arc<dyn Store>, Arc<dyn MediaStore>)> {
    match &config.database {
        #[cfg(feature = "postgres")]
        Some(url) => {
            let store = storage::postgres::PgStore::connect(url, config.db_pool)
                .await
                .map_err(|e| anyhow::anyhow!("PostgreSQL at {}: {e}", redact_url(url)))?;
            let media = blobs::postgres::PgMediaStore::new(store.pool().clone());
            Ok((Arc::new(store), Arc::new(media)))
        }
        #[cfg(not(feature = "postgres"))]
        Some(_) => anyhow::bail!(
            "this server was built without PostgreSQL (cargo feature `postgres`): --database \
             cannot be used"
        ),
        None => {
            let store = open_sqlite(config)?;
            Ok((store, Arc::new(FsMediaStore::open(config.data.join("media"))?)))
        }
    }
}

/// A database URL fit for a log line: any password replaced.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => {
                    format!("{}{}:***{}", &url[..scheme + 3], &userinfo[..colon], &url[at..])
                }
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Builds the shared state over opened stores; connects to NATS when `config.nats` is set.
pub async fn build_state(
    config: Config,
    store: Arc<dyn Store>,
    media: Arc<dyn MediaStore>,
) -> anyhow::Result<Arc<AppState>> {
    let tokens = auth::TokenKey::new(store.secret("session-tokens").await?);
    let relay = match &config.nats {
        #[cfg(feature = "nats")]
        Some(url) => Some(
            relay::Relay::connect(url).await.map_err(|e| anyhow::anyhow!("NATS at {url}: {e}"))?,
        ),
        #[cfg(not(feature = "nats"))]
        Some(_) => anyhow::bail!(
            "this server was built without NATS (cargo feature `nats`): --nats cannot be used"
        ),
        None => None,
    };
    let config_unsent_mb = config.unsent_answers_mb;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(tls::Tls::load(cert, key)?)),
        (None, None) => None,
        _ => anyhow::bail!("--tls-cert and --tls-key go together"),
    };
    Ok(Arc::new(AppState {
        spaces: state::Spaces::new(config.space_cache),
        config,
        store,
        hub: hub::Hub::default(),
        tokens,
        metrics: metrics::Metrics::new(),
        media,
        relay,
        shutdown: CancellationToken::new(),
        tasks: TaskTracker::new(),
        user_buckets: Default::default(),
        tls,
        unsent_pages: Arc::new(tokio::sync::Semaphore::new(
            (config_unsent_mb * 1024 * 1024 / cairn_proto::MAX_FRAME_BYTES).max(1),
        )),
    }))
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/ws", get(ws_upgrade))
        .route("/v1/media/{hash}", get(media::get).put(media::put))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics_text))
        .with_state(state)
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    state.metrics.spaces_cached.set(state.spaces.len() as i64);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

async fn ws_upgrade(
    State(state): State<Arc<AppState>>,
    place: Option<axum::Extension<listen::Place>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if !state.config.allowed_origins.is_empty()
        && let Some(origin) = headers.get(header::ORIGIN)
    {
        let ok = origin.to_str().is_ok_and(|o| state.config.allowed_origins.iter().any(|a| a == o));
        if !ok {
            return (StatusCode::FORBIDDEN, "origin not allowed\n").into_response();
        }
    }
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    // Leave headroom above the protocol limit so an oversize message is read far enough
    // to be answered with 1009 by our own check, and far beyond it by tungstenite's.
    let limit = cairn_proto::MAX_FRAME_BYTES * 2;
    // Small socket buffers: an idle connection should cost a few kilobytes, not the
    // 128 KiB tungstenite reserves by default. The read buffer grows when a frame needs it.
    // Writes are held until a flush (or 64 KiB), so frames that are ready together leave
    // in one write; every send flushes.
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(1024)
        .write_buffer_size(64 * 1024)
        .on_upgrade(move |socket| {
            let tasks = state.tasks.clone();
            // The connection's place under the caps is held for as long as it is open.
            tasks.track_future(connection::serve(state, socket, place))
        })
}

/// Expired notes become tombstones (and members hear of it); unreferenced media past the
/// grace period are deleted.
async fn sweep(state: &AppState) {
    match state.store.purge_expired(cairn_proto::now_ms()).await {
        Ok(tombstones) => {
            for t in tombstones {
                if let Ok(Some(cached)) = state.spaces.get(state.store.as_ref(), &t.space).await {
                    debug_assert!(matches!(t.entry.item, EntryItem::Tombstone { .. }));
                    handlers::deliver_entry(state, &cached, t.space, t.entry, None);
                }
            }
        }
        Err(e) => tracing::error!(error = %e, "purging expired notes"),
    }
    let before = cairn_proto::now_ms().saturating_sub(state.config.media_grace_s * 1000);
    match state.store.collect_media(before).await {
        Ok(hashes) => {
            if let Err(e) = state.media.delete(&hashes).await {
                tracing::warn!(error = %e, "could not delete collected blobs");
            }
        }
        Err(e) => tracing::error!(error = %e, "collecting media"),
    }
}

/// Serves on `listener` until `state.shutdown` is cancelled, then closes every socket
/// with 1001 after its request in progress, and returns once all are closed.
pub async fn serve(listener: TcpListener, state: Arc<AppState>) -> anyhow::Result<()> {
    let sweeper = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(
                state.config.sweep_interval_s.max(1),
            ));
            loop {
                tokio::select! {
                    _ = tick.tick() => sweep(&state).await,
                    _ = state.shutdown.cancelled() => break,
                }
            }
        })
    };
    #[cfg(feature = "nats")]
    let relay = state.relay.clone().map(|relay| {
        let interval = std::time::Duration::from_millis(state.config.catch_up_ms.max(50));
        tokio::spawn(relay::run(state.clone(), relay, interval))
    });
    #[cfg(not(feature = "nats"))]
    let relay: Option<tokio::task::JoinHandle<()>> = None;
    if let Some(tls) = &state.tls {
        tokio::spawn(tls::reload_on_hangup(tls.clone(), state.shutdown.clone()));
    }
    listen::accept_loop(listener, state.clone(), router(state.clone())).await;
    state.tasks.close();
    state.tasks.wait().await;
    let _ = sweeper.await;
    if let Some(relay) = relay {
        let _ = relay.await;
    }
    Ok(())
}

/// A server running on a background task.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    join: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningServer {
    /// `ws://addr/v1/ws` (`wss://` with TLS).
    pub fn ws_url(&self) -> String {
        let s = if self.state.tls.is_some() { "s" } else { "" };
        format!("ws{s}://{}/v1/ws", self.addr)
    }
    /// `http://addr` (`https://` with TLS).
    pub fn http_url(&self) -> String {
        let s = if self.state.tls.is_some() { "s" } else { "" };
        format!("http{s}://{}", self.addr)
    }
    /// Graceful shutdown; returns when every connection is closed.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.state.shutdown.cancel();
        self.join.await?
    }
}

/// Opens the stores `config` names, binds `config.listen` and serves in the background.
pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
    let (store, media) = open_stores(&config).await?;
    start_with_stores(config, store, media).await
}

/// As [`start`], over given stores.
pub async fn start_with_stores(
    config: Config,
    store: Arc<dyn Store>,
    media: Arc<dyn MediaStore>,
) -> anyhow::Result<RunningServer> {
    let listener = TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let state = build_state(config, store, media).await?;
    let join = tokio::spawn(serve(listener, state.clone()));
    Ok(RunningServer { addr, state, join })
}
