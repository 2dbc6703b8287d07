//! Command-line flags; each can also come from an environment variable.

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Cairn server: stores and forwards end-to-end encrypted spatial notes.
#[derive(Parser, Debug, Clone)]
#[command(name = "cairn-server", version, about)]
pub struct Config {
    /// Directory for the SQLite database and media files; created when absent.
    #[arg(long, env = "CAIRN_DATA", default_value = "cairn-data")]
    pub data: PathBuf,

    /// PostgreSQL URL (`postgres://user@host:5432/db`): keep records and media there
    /// instead of in `--data`, so that several nodes can share them. Migrations run at start.
    #[arg(long, env = "CAIRN_DATABASE")]
    pub database: Option<String>,

    /// Connections in this node's PostgreSQL pool.
    #[arg(long, env = "CAIRN_DB_POOL", default_value_t = 16)]
    pub db_pool: usize,

    /// NATS URL (`nats://127.0.0.1:4222`): tell the other nodes sharing `--database` when
    /// something new is stored, so that their clients hear of it at once.
    #[arg(long, env = "CAIRN_NATS", requires = "database")]
    pub nats: Option<String>,

    /// Milliseconds between a node's checks of the database for what it was not told
    /// about (a lost NATS message, NATS down). Only with `--nats`.
    #[arg(long, env = "CAIRN_CATCH_UP_MS", default_value_t = 2000)]
    pub catch_up_ms: u64,

    /// Address to listen on (HTTP and WebSocket on one port).
    #[arg(long, env = "CAIRN_LISTEN", default_value = "127.0.0.1:7878")]
    pub listen: SocketAddr,

    /// Require an invite token to register (mint them with the `invite` command).
    #[arg(long, env = "CAIRN_INVITE_ONLY")]
    pub invite_only: bool,

    /// Largest media blob accepted, in bytes.
    #[arg(long, env = "CAIRN_MAX_MEDIA_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_media_bytes: u64,

    /// Seconds a client has to say hello and log in after connecting.
    #[arg(long, env = "CAIRN_HANDSHAKE_TIMEOUT", default_value_t = 10)]
    pub handshake_timeout_s: u64,

    /// Seconds of silence (no frame, no pong) after which a connection is closed. A ping
    /// goes out after a third of it.
    #[arg(long, env = "CAIRN_IDLE_TIMEOUT", default_value_t = 60)]
    pub idle_timeout_s: u64,

    /// Requests per second allowed on one connection (burst: twice as many).
    #[arg(long, env = "CAIRN_RATE_PER_CONNECTION", default_value_t = 200)]
    pub rate_per_connection: u32,

    /// Requests per second allowed to one user across all connections (burst: twice).
    #[arg(long, env = "CAIRN_RATE_PER_USER", default_value_t = 500)]
    pub rate_per_user: u32,

    /// Lifetime of a session token, in seconds.
    #[arg(long, env = "CAIRN_SESSION_TTL", default_value_t = 3600)]
    pub session_ttl_s: u64,

    /// Seconds an uploaded blob may stay unreferenced by any note before it is collected.
    #[arg(long, env = "CAIRN_MEDIA_GRACE", default_value_t = 24 * 3600)]
    pub media_grace_s: u64,

    /// Seconds between sweeps for expired notes and unreferenced media.
    #[arg(long, env = "CAIRN_SWEEP_INTERVAL", default_value_t = 30)]
    pub sweep_interval_s: u64,

    /// Memory, in MiB, for sync answers computed but not yet written to their peers, across
    /// all connections (each connection may hold 4 pages of up to 512 KiB). Past it, syncs
    /// wait for others' answers to be written.
    #[arg(long, env = "CAIRN_UNSENT_ANSWERS_MB", default_value_t = 256)]
    pub unsent_answers_mb: usize,

    /// Serve TLS (`wss://`, `https://`) on the listening port with this certificate chain
    /// (PEM); with `--tls-key`. Both files are read again on SIGHUP.
    #[arg(long, env = "CAIRN_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The certificate's private key (PEM).
    #[arg(long, env = "CAIRN_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Most connections open at once (HTTP and WebSocket); past it, new ones are closed at
    /// once. Keep it below the open-file limit (the server raises its soft limit to the
    /// hard one at start-up, and lowers this cap to fit).
    #[arg(long, env = "CAIRN_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Most connections open at once from one IP address.
    #[arg(long, env = "CAIRN_MAX_CONNECTIONS_PER_IP", default_value_t = 256)]
    pub max_connections_per_ip: usize,

    /// Seconds a client has to send a request's headers (slow-header attacks).
    #[arg(long, env = "CAIRN_HEADER_TIMEOUT", default_value_t = 10)]
    pub header_timeout_s: u64,

    /// Most spaces whose membership is kept in memory; beyond it, spaces not in use are
    /// dropped (and replayed from the store when next used).
    #[arg(long, env = "CAIRN_SPACE_CACHE", default_value_t = 10_000)]
    pub space_cache: usize,

    /// Allowed values of the WebSocket `Origin` header, comma-separated. Empty: any origin
    /// (native clients send none).
    #[arg(long, env = "CAIRN_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Mint an invite token for invite-only registration, print it, and exit.
    Invite,
}

impl Config {
    /// Defaults for an embedded or test server keeping its data in `data`.
    pub fn for_data_dir(data: impl Into<PathBuf>) -> Self {
        let mut c = Config::parse_from(["cairn-server"]);
        c.data = data.into();
        c.listen = "127.0.0.1:0".parse().expect("literal address");
        c
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_s)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_s)
    }
}
